/*
 * cpu_bench.c - timing sources and the bench driver.
 *
 * bench_run() knows nothing about what it times: it asks a bench_timing_source for repeated
 * runs, each with the correctness gate of that very run, and applies the honesty rules (no
 * latency without PASS, none below the floor). The source kept here is the CPU reference VM,
 * checked step by step against the eager forward; its figures are labelled
 * "cpu-reference" and never called GPU figures. The GPU sources (bench/gpu_bench.c) plug into
 * the same struct; bench_ab_run() interleaves two sources and gives their speedup.
 */
#include <math.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "base/base.h"
#include "bench/bench_run.h"

/* ---------------------------------------------------------------- the driver */

void bench_run_result_free(bench_run_result *r)
{
    if (!r)
        return;
    free(r->samples_us);
    memset(r, 0, sizeof *r);
}

void bench_ab_result_free(bench_ab_result *r)
{
    if (!r)
        return;
    bench_run_result_free(&r->baseline);
    bench_run_result_free(&r->candidate);
    memset(r, 0, sizeof *r);
}

void bench_ab_opts_default(bench_ab_opts *o)
{
    memset(o, 0, sizeof *o);
    o->run.steps = 16;
    o->run.repeats = 10;
    o->run.warmup = 1;
    o->resamples = BENCH_BOOTSTRAP_RESAMPLES;
    o->seed = BENCH_BOOTSTRAP_SEED;
    o->level = 0.95;
}

/* Fold one run's gate into the total: PASS only while every run passed; the first failure's
 * reason is kept. */
static void gate_merge(bench_gate *total, const bench_gate *g, int run)
{
    total->compared += g->compared;
    total->top1_agree += g->top1_agree;
    total->top1_near_tie += g->top1_near_tie;
    total->max_abs_err = fmax(total->max_abs_err, g->max_abs_err);
    if (g->max_rel_err > total->max_rel_err || g->max_rel_err != g->max_rel_err)
        total->max_rel_err = g->max_rel_err;
    if (g->tol_rel > 0)
        total->tol_rel = g->tol_rel;
    if (!g->pass && total->pass) {
        total->pass = false;
        snprintf(total->why, sizeof total->why, "run %d: %.230s", run,
                 g->why[0] ? g->why : "the correctness gate failed");
    }
}

void bench_gate_step(bench_gate *g, const float *cand, const float *ref, int64_t n, double tol,
                     bool near_tie_ok, int64_t pos)
{
    refvm_gate_cmp cmp = refvm_gate_compare(cand, ref, n, tol);
    double rel = cmp.max_abs_ref > 0 ? cmp.max_abs_err / cmp.max_abs_ref : cmp.max_abs_err;
    bool err_ok = cmp.max_abs_err <= tol * cmp.max_abs_ref;
    bool top_ok = cmp.top_a == cmp.top_b;
    g->tol_rel = tol;
    g->compared++;
    g->top1_agree += top_ok;
    if (!top_ok && near_tie_ok && cmp.top_a >= 0 && cmp.top_b >= 0 &&
        (double)ref[cmp.top_b] - (double)ref[cmp.top_a] <= tol * cmp.max_abs_ref) {
        top_ok = true;
        g->top1_near_tie++;
    }
    g->max_abs_err = fmax(g->max_abs_err, cmp.max_abs_err);
    if (rel > g->max_rel_err || rel != rel)
        g->max_rel_err = rel;
    if ((!err_ok || !top_ok) && g->pass) {
        g->pass = false;
        if (!err_ok)
            snprintf(g->why, sizeof g->why, "pos %lld: max |error| %.3g is %.3g of max |logit| "
                     "(tolerance %g)", (long long)pos, cmp.max_abs_err, rel, tol);
        else
            snprintf(g->why, sizeof g->why, "pos %lld: top-1 token %d, the reference's %d%s",
                     (long long)pos, cmp.top_a, cmp.top_b,
                     near_tie_ok ? " (not a near tie within the tolerance)" : "");
    }
}

/* Apply the honesty rules to one side's samples: no latency without PASS, none below the
 * higher of the two floors. */
static ir_status run_finish(bench_run_result *out, const bench_run_opts *o, ir_error *err)
{
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
    ir_status s = bench_guard_latency(out->samples_us, out->n_samples, floor, &out->latency, err);
    if (s != IR_OK)
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

/* Drive n sources round by round (source 0, 1, ..., n-1 in every round; warm-up rounds first),
 * then measure the bandwidth once with the first source that can, and finish every side. */
static ir_status drive(const bench_timing_source *const *src, int n, const bench_run_opts *o,
                       bench_run_result *out, ir_error *err)
{
    for (int i = 0; i < n; i++) {
        memset(&out[i], 0, sizeof out[i]);
        out[i].label = src[i]->label;
        out[i].is_gpu = src[i]->is_gpu;
        out[i].steps = o->steps;
        out[i].repeats = o->repeats;
        out[i].gate.pass = true;
    }
    if (o->steps < 1 || o->repeats < 1 || o->warmup < 0)
        return ir_fail(err, IR_ERR_MALFORMED, "bench", "steps and repeats must be >= 1, warmup "
                       ">= 0");
    for (int i = 0; i < n; i++)
        if (!(out[i].samples_us = malloc(sizeof *out[i].samples_us * (size_t)o->repeats)))
            return ir_fail(err, IR_ERR_NOMEM, "bench", "out of memory");
    ir_status s;
    for (int r = 0; r < o->warmup + o->repeats; r++) {
        for (int i = 0; i < n; i++) {
            double us = 0;
            bench_gate g;
            memset(&g, 0, sizeof g);
            if ((s = src[i]->run(src[i]->ctx, o->steps, &us, &g, err)) != IR_OK)
                return s;
            gate_merge(&out[i].gate, &g, r);   /* warm-up runs are checked too: same program */
            if (r >= o->warmup)
                out[i].samples_us[out[i].n_samples++] = us;
        }
    }
    double gbs = 0;
    for (int i = 0; i < n; i++) {
        if (src[i]->measure_bandwidth) {
            if ((s = src[i]->measure_bandwidth(src[i]->ctx, &gbs, err)) != IR_OK)
                return s;
            break;
        }
    }
    for (int i = 0; i < n; i++) {
        out[i].has_measured_bw = gbs > 0;
        out[i].measured_bw_gbs = gbs > 0 ? gbs : 0;
        if ((s = run_finish(&out[i], o, err)) != IR_OK)
            return s;
    }
    return IR_OK;
}

ir_status bench_run(const bench_timing_source *src, const bench_run_opts *o, bench_run_result *out,
                    ir_error *err)
{
    const bench_timing_source *one[1] = {src};
    return drive(one, 1, o, out, err);
}

ir_status bench_ab_run(const bench_timing_source *baseline, const bench_timing_source *candidate,
                       const bench_ab_opts *o, bench_ab_result *out, ir_error *err)
{
    memset(out, 0, sizeof *out);
    bench_run_result two[2];
    const bench_timing_source *src[2] = {baseline, candidate};
    ir_status s = drive(src, 2, &o->run, two, err);
    out->baseline = two[0];
    out->candidate = two[1];
    if (s != IR_OK)
        return s;
    const bench_run_result *b = &out->baseline, *c = &out->candidate;
    if (!b->has_latency || !c->has_latency) {
        snprintf(out->speedup_withheld, sizeof out->speedup_withheld, "no speedup: %s has no "
                 "latency (%.300s)", !b->has_latency ? "the baseline" : "the candidate",
                 !b->has_latency ? b->withheld_why : c->withheld_why);
        return IR_OK;
    }
    if (b->n_samples < BENCH_AUDIT_MIN_SAMPLES || c->n_samples < BENCH_AUDIT_MIN_SAMPLES) {
        snprintf(out->speedup_withheld, sizeof out->speedup_withheld, "no speedup: %d repeats, at "
                 "least %d a side are needed for a confidence interval", b->n_samples,
                 BENCH_AUDIT_MIN_SAMPLES);
        return IR_OK;
    }
    int resamples = o->resamples > 0 ? o->resamples : BENCH_BOOTSTRAP_RESAMPLES;
    double level = o->level > 0 && o->level < 1 ? o->level : 0.95;
    if ((s = bench_bootstrap_ratio(b->samples_us, b->n_samples, c->samples_us, c->n_samples,
                                   resamples, o->seed, level, &out->speedup, err)) != IR_OK)
        return s;
    out->has_speedup = true;
    return IR_OK;
}

/* ---------------------------------------------------------------- the reference VM source */

struct bench_cpu {
    const ir_program *p;
    const lower_model *m;
    refvm *vm;
    refvm_eager *eager;
};

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
    g->tol_rel = REFVM_GATE_REL_TOL;
    if (steps > refvm_max_seq(c->vm))
        return ir_fail(err, IR_ERR_MALFORMED, "--steps", "%lld steps exceed the program's "
                       "max_seq %lld", (long long)steps, (long long)refvm_max_seq(c->vm));
    double seconds = 0;
    int32_t tok = 0;
    refvm_result res = {0};
    ir_status s = IR_OK;
    for (int64_t pos = 0; pos < steps; pos++) {
        double t0 = base_now_s();
        s = refvm_step(c->vm, tok, pos, &res, err);
        seconds += base_now_s() - t0;
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

