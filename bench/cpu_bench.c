/*
 * cpu_bench.c - timing sources and the bench driver.
 *
 * bench_run() knows nothing about what it times: it asks a bench_timing_source for repeated
 * runs, each with the correctness gate of that very run, and applies the honesty rules (no
 * latency without PASS, none below the floor). The one source that exists here is the CPU
 * reference VM, checked step by step against the eager forward; its figures are labelled
 * "cpu-reference" and never called GPU figures. A GPU megakernel source plugs into the same
 * struct.
 */
#include <math.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cjson/cJSON.h>

#include "bench/bench.h"

/* ---------------------------------------------------------------- the driver */

void bench_run_result_free(bench_run_result *r)
{
    if (!r)
        return;
    free(r->samples_us);
    memset(r, 0, sizeof *r);
}

/* Fold one run's gate into the total: PASS only while every run passed; the first failure's
 * reason is kept. */
static void gate_merge(bench_gate *total, const bench_gate *g, int run)
{
    total->compared += g->compared;
    total->top1_agree += g->top1_agree;
    total->max_abs_err = fmax(total->max_abs_err, g->max_abs_err);
    if (g->max_rel_err > total->max_rel_err || g->max_rel_err != g->max_rel_err)
        total->max_rel_err = g->max_rel_err;
    if (!g->pass && total->pass) {
        total->pass = false;
        snprintf(total->why, sizeof total->why, "run %d: %.230s", run,
                 g->why[0] ? g->why : "the correctness gate failed");
    }
}

ir_status bench_run(const bench_timing_source *src, const bench_run_opts *o, bench_run_result *out,
                    ir_error *err)
{
    memset(out, 0, sizeof *out);
    out->label = src->label;
    out->is_gpu = src->is_gpu;
    out->steps = o->steps;
    out->repeats = o->repeats;
    if (o->steps < 1 || o->repeats < 1 || o->warmup < 0)
        return ir_fail(err, IR_ERR_MALFORMED, "bench", "steps and repeats must be >= 1, warmup "
                       ">= 0");
    out->samples_us = malloc(sizeof *out->samples_us * (size_t)o->repeats);
    if (!out->samples_us)
        return ir_fail(err, IR_ERR_NOMEM, "bench", "out of memory");
    out->gate.pass = true;
    ir_status s;
    for (int r = 0; r < o->warmup + o->repeats; r++) {
        double us = 0;
        bench_gate g;
        memset(&g, 0, sizeof g);
        if ((s = src->run(src->ctx, o->steps, &us, &g, err)) != IR_OK)
            return s;
        gate_merge(&out->gate, &g, r);   /* warm-up runs are checked too: same program */
        if (r >= o->warmup)
            out->samples_us[out->n_samples++] = us;
    }
    if (src->measure_bandwidth) {
        if ((s = src->measure_bandwidth(src->ctx, &out->measured_bw_gbs, err)) != IR_OK)
            return s;
        out->has_measured_bw = out->measured_bw_gbs > 0;
    }
    out->spec_floor_us = bench_floor_us(o->weight_bytes, o->spec_bandwidth_gbs);
    if (out->has_measured_bw)
        out->measured_floor_us = bench_floor_us(o->weight_bytes, out->measured_bw_gbs);
    if (!out->gate.pass) {
        snprintf(out->withheld_why, sizeof out->withheld_why, "no latency: the correctness gate "
                 "did not PASS in this run (%.300s)", out->gate.why);
        return IR_OK;
    }
    /* the guard runs against the higher of the two floors: both are hard limits */
    double floor = fmax(out->spec_floor_us, out->measured_floor_us);
    if ((s = bench_guard_latency(out->samples_us, out->n_samples, floor, &out->latency, err))
        != IR_OK)
        return s;
    if (!out->latency.reported) {
        snprintf(out->withheld_why, sizeof out->withheld_why, "no latency: %.360s", out->latency.why);
        return IR_OK;
    }
    out->has_latency = true;
    out->pct_of_spec_floor = out->spec_floor_us > 0
                           ? 100.0 * out->latency.s.median / out->spec_floor_us : 0;
    out->achieved_gbs = (double)o->weight_bytes / (out->latency.s.median * 1e3);
    return IR_OK;
}

/* ---------------------------------------------------------------- the reference VM source */

struct bench_cpu {
    const ir_program *p;
    const lower_model *m;
    refvm *vm;
    refvm_eager *eager;
};

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

ir_status bench_cpu_new(const ir_program *p, const refvm_st *st, const lower_model *m,
                        bench_cpu **out, ir_error *err)
{
    *out = NULL;
    bench_cpu *c = calloc(1, sizeof *c);
    if (!c)
        return ir_fail(err, IR_ERR_NOMEM, "bench", "out of memory");
    c->p = p;
    c->m = m;
    refvm_opts o;
    refvm_opts_default(&o);
    o.tie_embeddings = m->tie_embeddings;
    ir_status s;
    if ((s = refvm_new(p, &o, &c->vm, err)) != IR_OK ||
        (s = refvm_bind(c->vm, st, err)) != IR_OK ||
        (s = refvm_eager_new(m, st, refvm_max_seq(c->vm), &c->eager, err)) != IR_OK) {
        bench_cpu_free(c);
        return s;
    }
    *out = c;
    return IR_OK;
}

void bench_cpu_free(bench_cpu *c)
{
    if (!c)
        return;
    refvm_eager_free(c->eager);
    refvm_free(c->vm);
    free(c);
}

int64_t bench_cpu_max_steps(const bench_cpu *c)
{
    return refvm_max_seq(c->vm);
}

/* One greedy decode from token 0, timing only the VM's steps; the eager forward runs in
 * lockstep outside the timed region and every step's logits go through the gate. */
static ir_status cpu_run(void *ctx, int64_t steps, double *us_per_token, bench_gate *g,
                         ir_error *err)
{
    bench_cpu *c = ctx;
    memset(g, 0, sizeof *g);
    g->pass = true;
    if (steps > refvm_max_seq(c->vm))
        return ir_fail(err, IR_ERR_MALFORMED, "--steps", "%lld steps exceed the program's "
                       "max_seq %lld", (long long)steps, (long long)refvm_max_seq(c->vm));
    double seconds = 0;
    int32_t tok = 0;
    refvm_result res = {0};
    ir_status s = IR_OK;
    for (int64_t pos = 0; pos < steps; pos++) {
        double t0 = now_s();
        s = refvm_step(c->vm, tok, pos, &res, err);
        seconds += now_s() - t0;
        if (s != IR_OK)
            break;
        if (res.outcome != REFVM_DONE) {
            g->pass = false;
            snprintf(g->why, sizeof g->why, "the VM ended pos %lld with %s", (long long)pos,
                     refvm_outcome_name(res.outcome));
            break;
        }
        int64_t nl;
        const float *logits = refvm_logits(c->vm, &nl), *ref;
        if ((s = refvm_eager_forward(c->eager, tok, pos, &ref, err)) != IR_OK)
            break;
        if (!logits || nl != c->m->vocab) {
            g->pass = false;
            snprintf(g->why, sizeof g->why, "the program has %lld logits, the model %lld",
                     (long long)(logits ? nl : 0), (long long)c->m->vocab);
            break;
        }
        refvm_gate_cmp cmp = refvm_gate_compare(logits, ref, nl, REFVM_GATE_REL_TOL);
        double rel = cmp.max_abs_ref > 0 ? cmp.max_abs_err / cmp.max_abs_ref : cmp.max_abs_err;
        g->compared++;
        g->top1_agree += cmp.top_a == cmp.top_b;
        g->max_abs_err = fmax(g->max_abs_err, cmp.max_abs_err);
        if (rel > g->max_rel_err || rel != rel)
            g->max_rel_err = rel;
        if (!cmp.pass && g->pass) {
            g->pass = false;
            snprintf(g->why, sizeof g->why, "VM vs eager at pos %lld: max |error| %.3g (%.3g of "
                     "max |logit|, tolerance %g), top-1 %d vs %d", (long long)pos,
                     cmp.max_abs_err, rel, REFVM_GATE_REL_TOL, cmp.top_a, cmp.top_b);
        }
        tok = refvm_next_token(c->vm);
    }
    refvm_result_free(&res);
    *us_per_token = g->compared > 0 ? 1e6 * seconds / (double)g->compared : 0;
    return s;
}

bench_timing_source bench_cpu_source(bench_cpu *c)
{
    bench_timing_source src = {
        .label = BENCH_CPU_LABEL,
        .is_gpu = false,
        .ctx = c,
        .run = cpu_run,
        .measure_bandwidth = NULL,   /* a streaming-read bandwidth needs a GPU */
    };
    return src;
}

