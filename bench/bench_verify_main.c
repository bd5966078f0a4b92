/*
 * bench_verify_main.c - `make bench-verify`: lowers each preset with the default ScheduleConfig,
 * then times the full verification (read the JSON, all five obligations) in a child process per
 * repeat, so the peak resident memory reported is that of the verification alone.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "base/base.h"
#include "lower/lower.h"
#include "verify/verify.h"

/* Child: read and verify; exit code is the verdict. */
static int child(const char *path)
{
    ir_program *p;
    ir_error err = {0};
    if (ir_read_file(path, NULL, &p, &err) != IR_OK)
        return 2;
    verify_result r;
    if (verify_program(p, NULL, &r, &err) != IR_OK)
        return 2;
    int v = (int)r.verdict;
    verify_result_free(&r);
    ir_program_free(p);
    return v;
}

#define MAX_REPEATS 50   /* the per-preset sample array holds this many */

static int usage(const char *why, const char *arg)
{
    fprintf(stderr, "bench_verify: %s%s\nusage: bench_verify [--dir DIR] [--repeats N]   "
            "(N in [1, %d], default 3)\n", why, arg, MAX_REPEATS);
    return 2;
}

int main(int argc, char **argv)
{
    const char *dir = "build/bench-verify";
    int repeats = 3;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--dir") && i + 1 < argc)
            dir = argv[++i];
        else if (!strcmp(argv[i], "--repeats") && i + 1 < argc) {
            if (!base_parse_int(argv[++i], 1, MAX_REPEATS, &repeats))
                return usage("bad --repeats value: ", argv[i]);
        } else {
            return usage("unknown or incomplete argument ", argv[i]);
        }
    }
    mkdir(dir, 0755);
    const char *presets[] = {"toy", "smollm2-135m", "llama-3.2-1b", "llama-3-8b", "llama-3-70b"};
    printf("bench-verify: full amk-verify (parse + 5 obligations) per lowered preset, h100, "
           "default config, %d repeats, median wall seconds, peak RSS of the verifying process\n",
           repeats);
    printf("%-14s %8s %9s %10s %10s %9s\n", "preset", "tasks", "verdict", "median_s", "min_s",
           "peak_MB");
    int bad = 0;
    for (size_t k = 0; k < sizeof presets / sizeof presets[0]; k++) {
        lower_model m;
        ir_config c;
        lower_opts o;
        ir_error err = {0};
        ir_program *p;
        ir_config_default(&c);
        lower_opts_default(&o);
        if (lower_model_preset(presets[k], &m, &err) != IR_OK ||
            lower_program(&m, &c, ir_target_builtin("h100"), &o, &p, &err) != IR_OK) {
            printf("%-14s lowering failed: %s\n", presets[k], err.why);
            bad = 1;
            continue;
        }
        char path[512];
        snprintf(path, sizeof path, "%s/%s.json", dir, presets[k]);
        int ntasks = p->n_tasks;
        if (ir_write_file(p, path, &err) != IR_OK) {
            printf("%-14s write failed: %s\n", presets[k], err.why);
            ir_program_free(p);
            bad = 1;
            continue;
        }
        ir_program_free(p);
        ir_config_free(&c);
        double t[MAX_REPEATS];
        long peak_kb = 0;
        int verdict = -1;
        for (int r = 0; r < repeats; r++) {
            fflush(stdout);
            double t0 = base_now_s();
            pid_t pid = fork();
            if (pid == 0)
                _exit(child(path));
            int status;
            struct rusage ru;
            if (pid < 0 || wait4(pid, &status, 0, &ru) < 0) {
                perror("bench-verify");
                return 2;
            }
            t[r] = base_now_s() - t0;
            if (ru.ru_maxrss > peak_kb)
                peak_kb = ru.ru_maxrss;
            verdict = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
        }
        qsort(t, (size_t)repeats, sizeof t[0], base_cmp_double);
        printf("%-14s %8d %9s %10.3f %10.3f %9.1f\n", presets[k], ntasks,
               verdict >= 0 && verdict <= 3 ? verify_verdict_name((verify_verdict)verdict) : "CRASH",
               t[repeats / 2], t[0], (double)peak_kb / 1024.0);
        bad |= verdict != 0;
    }
    verify_release_memory();
    return bad;
}
