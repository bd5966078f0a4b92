/*
 * bench_ir_main.c - `make bench-ir`: how fast the IR JSON reader and writer are on a program of
 * the size a large model lowers to (30,000 tasks, about 15 MB of JSON).
 *
 * The program is synthetic but shaped like a lowered one: tiles of four tasks share a counter,
 * every task reads three buffers (activation, weight, bias or residual), writes one, waits on
 * two earlier counters and carries six params (one of them a real), and a launch plan spreads
 * the tasks over 132 queues. Each measurement is the median of 5 runs on the in-memory text, so
 * disk speed does not count. Exit 1 when reading plus writing takes a second or more, or when
 * the text read back does not write the same bytes.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/base.h"
#include "ir/amk_ir.h"

#define N_TASKS 30000
#define TILE 4            /* tasks per counter */
#define N_WEIGHTS 12000
#define N_ACTS 4000
#define N_QUEUES 132
#define REPEATS 5

static double median(double *v, int n)
{
    qsort(v, (size_t)n, sizeof *v, base_cmp_double);
    return v[n / 2];
}

/* The synthetic program; NULL when out of memory. The caller frees it with ir_program_free. */
static ir_program *build_program(void)
{
    static const ir_op OPS[] = {IR_OP_GEMV_TILE, IR_OP_RMSNORM, IR_OP_ADD, IR_OP_SILU_MUL};
    ir_program *p = ir_program_new();
    if (!p)
        return NULL;
    char name[96], source[96];
    for (int i = 0; i < N_WEIGHTS; i++) {
        int64_t shape[2] = {4096, 4096};
        snprintf(name, sizeof name, "layers.%d.mlp.w%d", i / 8, i % 8);
        snprintf(source, sizeof source, "model.layers.%d.mlp.proj_%d.weight", i / 8, i % 8);
        if (ir_add_buffer(p, name, IR_WEIGHT, IR_BF16, 2, shape, IR_HBM, source) < 0)
            goto fail;
    }
    for (int i = 0; i < N_ACTS; i++) {
        int64_t shape[2] = {1, 4096};
        snprintf(name, sizeof name, "act.%d", i);
        if (ir_add_buffer(p, name, IR_ACTIVATION, IR_F32, 2, shape, IR_GLOBAL_SCRATCH, NULL) < 0)
            goto fail;
    }
    for (int c = 0; c < N_TASKS / TILE; c++) {
        snprintf(name, sizeof name, "stage %d done", c);
        if (ir_add_counter(p, name) < 0)
            goto fail;
    }
    for (int i = 0; i < N_TASKS; i++) {
        int32_t c = i / TILE;
        snprintf(name, sizeof name, "model.layers.%d.stage%02d.%s[%d/%d]", c / 64, c % 64,
                 ir_op_name(OPS[c % 4]), i % TILE, TILE);
        ir_task *t = ir_add_task(p, OPS[c % 4], c, name);
        if (!t)
            goto fail;
        int32_t act = N_WEIGHTS + c % N_ACTS;
        int32_t prev = N_WEIGHTS + (c + N_ACTS - 1) % N_ACTS;
        if (ir_task_add_input(t, prev) || ir_task_add_input(t, (c * 7 + i % TILE) % N_WEIGHTS) ||
            ir_task_add_input(t, N_WEIGHTS + (c + 17) % N_ACTS) || ir_task_add_output(t, act))
            goto fail;
        /* two waits on earlier stages (the first stages wait on nothing) */
        for (int k = 1; k <= 2; k++)
            if (c - k >= 0 && ir_task_add_wait(t, c - k, TILE))
                goto fail;
        if (ir_task_set_int(t, "K", 4096) || ir_task_set_int(t, "N_tile", 1024) ||
            ir_task_set_int(t, "n_off", (int64_t)(i % TILE) * 1024) ||
            ir_task_set_int(t, "hidden", 4096) || ir_task_set_int(t, "layer", c / 64) ||
            ir_task_set_real(t, "eps", 1e-05))
            goto fail;
        t->sm = i % N_QUEUES;
        t->est_bytes = 8388608 + i;
        t->est_flops = 8388608;
    }
    /* The launch plan: queue q runs the tasks with sm q in list order. */
    if (ir_plan_alloc(&p->plan, N_QUEUES, N_TASKS) != IR_OK)
        goto fail;
    p->has_plan = true;
    p->plan.threads_per_block = 256;
    p->plan.dynamic_smem_bytes = 65536;
    p->plan.regs_per_thread = 96;
    p->plan.pipelining_depth = 2;
    int k = 0;
    for (int q = 0; q < N_QUEUES; q++) {
        p->plan.queue_start[q] = k;
        for (int i = q; i < N_TASKS; i += N_QUEUES)
            p->plan.queue_tasks[k++] = i;
    }
    p->plan.queue_start[N_QUEUES] = k;
    p->has_decode = true;
    p->decode.pos = 0;
    p->decode.max_seq = 4096;
    return p;
fail:
    ir_program_free(p);
    return NULL;
}

int main(void)
{
    ir_error err = {0};
    ir_program *p = build_program();
    if (!p) {
        fprintf(stderr, "bench-ir: out of memory building the program\n");
        return 1;
    }
    char *text = NULL;
    size_t len = 0;
    if (ir_write_json(p, &text, &len, &err) != IR_OK) {
        fprintf(stderr, "bench-ir: write failed: %s\n", err.why);
        ir_program_free(p);
        return 1;
    }
    double t_read[REPEATS], t_write[REPEATS];
    int rc = 0;
    for (int r = 0; r < REPEATS && !rc; r++) {
        ir_program *q = NULL;
        double t0 = base_now_s();
        ir_status s = ir_read_json(text, len, NULL, &q, &err);
        t_read[r] = base_now_s() - t0;
        if (s != IR_OK) {
            fprintf(stderr, "bench-ir: read failed: %s at %s: %s\n", ir_status_name(s),
                    err.where, err.why);
            rc = 1;
            break;
        }
        char *again = NULL;
        size_t n2 = 0;
        t0 = base_now_s();
        s = ir_write_json(q, &again, &n2, &err);
        t_write[r] = base_now_s() - t0;
        if (s != IR_OK || n2 != len || memcmp(again, text, len) != 0) {
            fprintf(stderr, "bench-ir: the program read back does not write the same bytes\n");
            rc = 1;
        }
        free(again);
        ir_program_free(q);
    }
    if (!rc) {
        double mr = median(t_read, REPEATS), mw = median(t_write, REPEATS);
        double mb = (double)len / 1e6;
        printf("bench-ir: synthetic program: %d tasks, %d buffers, %d counters, %d queues\n",
               p->n_tasks, p->n_buffers, p->n_counters, N_QUEUES);
        printf("bench-ir: JSON size          %.2f MB (%zu bytes)\n", mb, len);
        printf("bench-ir: read  ir_read_json  median %.3f s of %d runs (%.0f MB/s)\n", mr, REPEATS,
               mb / mr);
        printf("bench-ir: write ir_write_json median %.3f s of %d runs (%.0f MB/s)\n", mw, REPEATS,
               mb / mw);
        printf("bench-ir: read + write        %.3f s (limit 1 s): %s\n", mr + mw,
               mr + mw < 1.0 ? "OK" : "TOO SLOW");
        rc = mr + mw < 1.0 ? 0 : 1;
    }
    free(text);
    ir_program_free(p);
    return rc;
}
