/*
 * bench_lower_main.c - `make bench-lower`: wall time and peak memory of lowering each preset.
 *
 * Each case runs in a child process so that its peak RSS (ru_maxrss from wait4) is its own.
 * The time covers lower_program (graph, queues, pages, plan) and, separately, that plus
 * ir_write_json into memory, which is what `amk lower` does besides the file write.
 * Exit 1 when the llama-3-70b preset with the default config takes 2 s or more, or 1 GB or more
 * peak memory.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include "base/base.h"
#include "lower/lower.h"

typedef struct {
    const char *model;
    const char *config;      /* ScheduleConfig JSON, NULL for the defaults */
    const char *what;
} bench_case;

static const bench_case CASES[] = {
    {"toy", NULL, "default config"},
    {"smollm2-135m", NULL, "default config"},
    {"llama-3.2-1b", NULL, "default config"},
    {"llama-3-8b", NULL, "default config"},
    {"llama-3-70b", NULL, "default config"},
    {"llama-3-70b",
     "{\"tiling\": {\"gemv\": {\"N_tile\": 64}, \"attention\": {\"kv_block\": 256}}, "
     "\"fusion_grouping\": [[\"gate\", \"up\"]], \"smem_bytes_per_block\": 65536}",
     "N_tile 64, kv_block 256, gate/up fused"},
};

typedef struct {
    int ok;
    int n_tasks;
    double lower_s, total_s;
    size_t json_bytes;
    char why[1024];
} bench_result;

static bench_result run_case(const bench_case *bc)
{
    bench_result r = {0};
    ir_error err = {0};
    lower_model m;
    ir_config c;
    lower_opts o;
    ir_program *p = NULL;
    char *json = NULL;
    size_t len = 0;
    lower_opts_default(&o);
    if (lower_model_preset(bc->model, &m, &err) != IR_OK)
        goto fail;
    if (bc->config) {
        if (ir_config_read_json(bc->config, strlen(bc->config), true, &c, &err) != IR_OK)
            goto fail;
    } else {
        ir_config_default(&c);
    }
    double t0 = base_now_s();
    ir_status s = lower_program(&m, &c, ir_target_builtin("h100"), &o, &p, &err);
    double t1 = base_now_s();
    ir_config_free(&c);
    if (s != IR_OK)
        goto fail;
    if (ir_write_json(p, &json, &len, &err) != IR_OK)
        goto fail;
    double t2 = base_now_s();
    r.ok = 1;
    r.n_tasks = p->n_tasks;
    r.lower_s = t1 - t0;
    r.total_s = t2 - t0;
    r.json_bytes = len;
    free(json);
    ir_program_free(p);
    return r;
fail:
    ir_program_free(p);
    snprintf(r.why, sizeof r.why, "%s at %s: %s", ir_status_name(err.status), err.where, err.why);
    return r;
}

int main(void)
{
    int failed = 0;
    long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
    printf("bench-lower: target h100, bf16 weights, pos 0, max_seq min(max_pos, 4096); %ld CPUs\n",
           ncpu);
    printf("%-14s %-38s %7s %9s %12s %9s %9s\n", "model", "config", "tasks", "lower s",
           "lower+json s", "JSON MB", "peak MB");
    for (size_t i = 0; i < sizeof CASES / sizeof CASES[0]; i++) {
        int fd[2];
        if (pipe(fd) != 0) {
            perror("pipe");
            return 2;
        }
        pid_t pid = fork();
        if (pid < 0) {
            perror("fork");
            return 2;
        }
        if (pid == 0) {
            close(fd[0]);
            bench_result r = run_case(&CASES[i]);
            ssize_t w = write(fd[1], &r, sizeof r);
            _exit(w == (ssize_t)sizeof r ? 0 : 1);
        }
        close(fd[1]);
        bench_result r = {0};
        ssize_t got = read(fd[0], &r, sizeof r);
        close(fd[0]);
        int status = 0;
        struct rusage ru;
        if (wait4(pid, &status, 0, &ru) < 0 || got != (ssize_t)sizeof r || !r.ok) {
            printf("%-14s %-38s FAILED %s\n", CASES[i].model, CASES[i].what,
                   got == (ssize_t)sizeof r ? r.why : "child died");
            failed = 1;
            continue;
        }
        double peak_mb = (double)ru.ru_maxrss / 1024.0; /* ru_maxrss is in KiB on Linux */
        printf("%-14s %-38s %7d %9.3f %12.3f %9.1f %9.1f\n", CASES[i].model, CASES[i].what,
               r.n_tasks, r.lower_s, r.total_s, (double)r.json_bytes / 1e6, peak_mb);
        if (i == 4 && (r.total_s >= 2.0 || peak_mb >= 1024.0)) {
            printf("  llama-3-70b exceeds the budget (< 2 s and < 1 GB)\n");
            failed = 1;
        }
    }
    printf(failed ? "bench-lower: FAIL\n" : "bench-lower: llama-3-70b within 2 s and 1 GB\n");
    return failed;
}
