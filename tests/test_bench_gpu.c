/*
 * test_bench_gpu.c - the GPU half of `amk bench` and `amk audit --rerun`.
 *
 * Everywhere: the interleaved A/B driver and its speedup CI with fake timing sources, the
 * per-step gate with its near-tie rule, the claim a re-run turns into and its audit, the JSON
 * report's shape, device-to-target names, the roofline chart with a baseline point, and the
 * command lines' usage errors and refusals. With a GPU (else skipped with the reason, or failed
 * under AMK_REQUIRE_GPU=1): `amk bench` times the megakernel and the cuBLAS graph baseline on
 * the HF fixture, and `amk audit --rerun` measures two proved plans of it.
 */
#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cjson/cJSON.h>

#include "bench/bench_run.h"
#include "lower/lower.h"
#include "megakernel/megakernel.h"
#include "refvm/refvm.h"
#include "tools/cmd.h"
#include "tests/capture.h"
#include "verify/verify.h"

#define FIXTURE "tests/fixtures/llama_gqa2_f32/"

/* ---------------------------------------------------------------- helpers */

static bool have_gpu(void)
{
    return bench_gpu_available(NULL, 0, NULL, 0);
}

static void need_gpu(void)
{
    char why[256];
    if (bench_gpu_available(NULL, 0, why, sizeof why))
        return;
    const char *req = getenv("AMK_REQUIRE_GPU");
    if (req && !strcmp(req, "1"))
        cr_assert_fail("AMK_REQUIRE_GPU=1 but %s", why);
    cr_skip_test("GPU test skipped: %s", why);
}

/* Lower the fixture (f32, h100) with a GEMV N_tile (0: default config) to prog; with cert,
 * prove it and write the certificate there. */
static void lower_fixture(const char *prog, const char *cert, int64_t n_tile)
{
    lower_model m;
    ir_error err = {0};
    cr_assert_eq(lower_model_from_hf_config(FIXTURE "config.json", &m, &err), IR_OK, "%s",
                 err.why);
    ir_config c;
    ir_config_default(&c);
    ir_tiling tile[1] = {{"gemv", "N_tile", n_tile}};
    if (n_tile) {
        c.tiling = tile;
        c.n_tiling = 1;
    }
    lower_opts o;
    lower_opts_default(&o);
    o.dtype = IR_F32;
    o.max_seq = 64;
    ir_program *p = NULL;
    cr_assert_eq(lower_program(&m, &c, ir_target_builtin("h100"), &o, &p, &err), IR_OK, "%s",
                 err.why);
    cr_assert_eq(ir_write_file(p, prog, &err), IR_OK);
    if (cert) {
        verify_opts vo;
        verify_result vr;
        verify_opts_default(&vo);
        cr_assert_eq(verify_program(p, &vo, &vr, &err), IR_OK);
        cr_assert_eq(vr.verdict, VERIFY_PROVED);
        FILE *f = fopen(cert, "w");
        fputs(vr.certificate_json, f);
        fclose(f);
        verify_result_free(&vr);
    }
    ir_program_free(p);
}

/* A fake source: latency us * (1 + jitter[run % 5]) per token, a fixed gate verdict, an optional
 * bandwidth, and a shared log of which source ran in which order. */
typedef struct {
    char tag;
    double us;
    bool pass;
    double bw;
    int runs;
    char *log;           /* shared; each run appends tag */
} fake_source;

static const double JITTER[5] = {0.00, 0.02, -0.01, 0.03, 0.01};

static ir_status fake_run(void *ctx, int64_t steps, double *us, bench_gate *g, ir_error *err)
{
    fake_source *f = ctx;
    size_t n = strlen(f->log);
    f->log[n] = f->tag;
    f->log[n + 1] = 0;
    memset(g, 0, sizeof *g);
    g->pass = f->pass;
    g->compared = steps;
    g->top1_agree = steps;
    g->tol_rel = 1e-4;
    if (!f->pass)
        snprintf(g->why, sizeof g->why, "fake mismatch of %c", f->tag);
    *us = f->us * (1.0 + JITTER[f->runs % 5]);
    f->runs++;
    return IR_OK;
}

static ir_status fake_bw(void *ctx, double *gbs, ir_error *err)
{
    *gbs = ((fake_source *)ctx)->bw;
    return IR_OK;
}

static bench_timing_source fake(fake_source *f)
{
    bench_timing_source s = {.label = f->tag == 'B' ? "fake-baseline" : "fake-candidate",
                             .is_gpu = true, .ctx = f, .run = fake_run,
                             .measure_bandwidth = f->bw > 0 ? fake_bw : NULL};
    return s;
}

/* 3.35e9 bytes at 3350 GB/s: a 1000 us spec floor. */
static bench_ab_opts ab_opts(int repeats, int warmup)
{
    bench_ab_opts o;
    bench_ab_opts_default(&o);
    o.run.steps = 4;
    o.run.repeats = repeats;
    o.run.warmup = warmup;
    o.run.weight_bytes = 3350000000;
    o.run.spec_bandwidth_gbs = 3350.0;
    return o;
}

static double median_of(const double *x, int n)
{
    bench_summary s;
    ir_error err = {0};
    cr_assert_eq(bench_summarize(x, n, &s, &err), IR_OK);
    return s.median;
}

/* ---------------------------------------------------------------- the A/B driver */

Test(ab, runs_baseline_and_candidate_interleaved_and_gives_the_ratio_with_a_seeded_ci)
{
    char log[64] = "";
    fake_source b = {.tag = 'B', .us = 4000, .pass = true, .log = log};
    fake_source c = {.tag = 'C', .us = 2000, .pass = true, .log = log, .bw = 3000};
    bench_timing_source sb = fake(&b), sc = fake(&c);
    bench_ab_opts o = ab_opts(6, 2);
    bench_ab_result r;
    ir_error err = {0};
    cr_assert_eq(bench_ab_run(&sb, &sc, &o, &r, &err), IR_OK, "%s", err.why);
    cr_assert_str_eq(log, "BCBCBCBCBCBCBCBC", "two warm-up pairs, then six timed pairs, in order");
    cr_assert_eq(r.baseline.n_samples, 6);
    cr_assert_eq(r.candidate.n_samples, 6);
    cr_assert_str_eq(r.baseline.label, "fake-baseline");
    cr_assert(r.baseline.has_latency && r.candidate.has_latency);
    cr_assert(r.has_speedup, "%s", r.speedup_withheld);
    double want = median_of(r.baseline.samples_us, 6) / median_of(r.candidate.samples_us, 6);
    cr_assert_float_eq(r.speedup.estimate, want, 1e-12);
    cr_assert_float_eq(r.speedup.estimate, 2.0, 0.05);
    cr_assert(r.speedup.lo <= r.speedup.estimate && r.speedup.estimate <= r.speedup.hi);
    cr_assert(r.speedup.lo > 1.5 && r.speedup.hi < 2.5, "[%g, %g]", r.speedup.lo, r.speedup.hi);
    cr_assert_float_eq(r.speedup.level, 0.95, 0);
    cr_assert_eq(r.speedup.seed, BENCH_BOOTSTRAP_SEED);
    cr_assert_eq(r.speedup.resamples, BENCH_BOOTSTRAP_RESAMPLES);
    /* the candidate's bandwidth was measured once and serves both sides */
    cr_assert(r.baseline.has_measured_bw && r.candidate.has_measured_bw);
    cr_assert_float_eq(r.baseline.measured_bw_gbs, 3000, 0);
    cr_assert_float_eq(r.baseline.measured_floor_us, 3350000000.0 / 3e6, 1e-9);
    /* same data and seed: same interval; the seed is the one asked for */
    log[0] = 0;
    b.runs = c.runs = 0;
    bench_ab_result r2;
    cr_assert_eq(bench_ab_run(&sb, &sc, &o, &r2, &err), IR_OK);
    cr_assert_float_eq(r2.speedup.lo, r.speedup.lo, 0);
    cr_assert_float_eq(r2.speedup.hi, r.speedup.hi, 0);
    bench_ab_result_free(&r2);
    log[0] = 0;
    b.runs = c.runs = 0;
    o.seed = 7;
    cr_assert_eq(bench_ab_run(&sb, &sc, &o, &r2, &err), IR_OK);
    cr_assert_eq(r2.speedup.seed, 7);
    cr_assert_float_eq(r2.speedup.estimate, r.speedup.estimate, 0, "the data decide the estimate");
    bench_ab_result_free(&r2);
    bench_ab_result_free(&r);
}

Test(ab, a_side_without_pass_has_no_latency_and_there_is_no_speedup)
{
    char log[64] = "";
    fake_source b = {.tag = 'B', .us = 4000, .pass = false, .log = log};
    fake_source c = {.tag = 'C', .us = 2000, .pass = true, .log = log};
    bench_timing_source sb = fake(&b), sc = fake(&c);
    bench_ab_opts o = ab_opts(5, 1);
    bench_ab_result r;
    ir_error err = {0};
    cr_assert_eq(bench_ab_run(&sb, &sc, &o, &r, &err), IR_OK);
    cr_assert_not(r.baseline.has_latency);
    cr_assert_float_eq(r.baseline.latency.s.median, 0, 0, "no number for a FAIL");
    cr_assert(strstr(r.baseline.withheld_why, "fake mismatch of B"), "%s", r.baseline.withheld_why);
    cr_assert(r.candidate.has_latency, "the other side keeps its own latency");
    cr_assert_not(r.has_speedup);
    cr_assert(strstr(r.speedup_withheld, "baseline"), "%s", r.speedup_withheld);
    bench_ab_result_free(&r);
}

Test(ab, a_side_below_the_measured_floor_is_withheld_and_there_is_no_speedup)
{
    /* measured 2000 GB/s: floor 1675 us; the baseline's 1500 us are impossible */
    char log[64] = "";
    fake_source b = {.tag = 'B', .us = 1500, .pass = true, .log = log};
    fake_source c = {.tag = 'C', .us = 2500, .pass = true, .log = log, .bw = 2000};
    bench_timing_source sb = fake(&b), sc = fake(&c);
    bench_ab_opts o = ab_opts(5, 0);
    bench_ab_result r;
    ir_error err = {0};
    cr_assert_eq(bench_ab_run(&sb, &sc, &o, &r, &err), IR_OK);
    cr_assert_float_eq(r.baseline.measured_floor_us, 1675.0, 1e-9);
    cr_assert_not(r.baseline.has_latency);
    cr_assert(strstr(r.baseline.withheld_why, "floor"), "%s", r.baseline.withheld_why);
    cr_assert(r.candidate.has_latency);
    cr_assert_not(r.has_speedup);
    bench_ab_result_free(&r);
}

Test(ab, fewer_than_three_repeats_give_no_interval)
{
    char log[64] = "";
    fake_source b = {.tag = 'B', .us = 4000, .pass = true, .log = log};
    fake_source c = {.tag = 'C', .us = 2000, .pass = true, .log = log};
    bench_timing_source sb = fake(&b), sc = fake(&c);
    bench_ab_opts o = ab_opts(2, 0);
    bench_ab_result r;
    ir_error err = {0};
    cr_assert_eq(bench_ab_run(&sb, &sc, &o, &r, &err), IR_OK);
    cr_assert(r.baseline.has_latency && r.candidate.has_latency);
    cr_assert_not(r.has_speedup);
    cr_assert(strstr(r.speedup_withheld, "at least 3"), "%s", r.speedup_withheld);
    bench_ab_result_free(&r);
    o.run.repeats = 0;
    cr_assert_eq(bench_ab_run(&sb, &sc, &o, &r, &err), IR_ERR_MALFORMED);
    bench_ab_result_free(&r);
}

/* ---------------------------------------------------------------- the per-step gate */

Test(gate, a_different_top1_passes_only_as_a_near_tie_where_allowed)
{
    /* reference: index 0 is the max (10.0), index 1 is 0.05 below it */
    float ref[4] = {10.0f, 9.95f, 1.0f, -3.0f};
    float cand[4] = {9.97f, 9.98f, 1.0f, -3.0f};   /* picks index 1, error 0.03 */
    bench_gate g = {.pass = true};
    bench_gate_step(&g, cand, ref, 4, 1e-2, true, 5);
    cr_assert(g.pass, "%s", g.why);
    cr_assert_eq(g.compared, 1);
    cr_assert_eq(g.top1_agree, 0);
    cr_assert_eq(g.top1_near_tie, 1);
    cr_assert_float_eq(g.max_abs_err, 0.03, 1e-6);
    cr_assert_float_eq(g.max_rel_err, 0.003, 1e-6);
    cr_assert_float_eq(g.tol_rel, 1e-2, 0);

    bench_gate strict = {.pass = true};
    bench_gate_step(&strict, cand, ref, 4, 1e-2, false, 5);
    cr_assert_not(strict.pass, "without the near-tie rule the top-1 must be equal");
    cr_assert(strstr(strict.why, "pos 5: top-1 token 1, the reference's 0"), "%s", strict.why);

    /* a margin of 0.15 is more than tol * max |ref| = 0.1: not a tie, though every error is
     * within the tolerance */
    float ref2[4] = {10.0f, 9.85f, 1.0f, -3.0f};
    float cand2[4] = {9.92f, 9.93f, 1.0f, -3.0f};
    bench_gate g2 = {.pass = true};
    bench_gate_step(&g2, cand2, ref2, 4, 1e-2, true, 2);
    cr_assert_not(g2.pass);
    cr_assert(strstr(g2.why, "not a near tie"), "%s", g2.why);
    cr_assert_eq(g2.top1_near_tie, 0);

    /* too large an error fails whatever the top-1 says; the first failure is kept */
    float cand3[4] = {10.0f, 9.95f, 1.5f, -3.0f};
    bench_gate_step(&g2, cand3, ref, 4, 1e-2, true, 3);
    cr_assert_eq(g2.compared, 2);
    cr_assert(strstr(g2.why, "pos 2"), "%s", g2.why);
    bench_gate g3 = {.pass = true};
    bench_gate_step(&g3, cand3, ref, 4, 1e-2, true, 3);
    cr_assert_not(g3.pass);
    cr_assert(strstr(g3.why, "pos 3: max |error| 0.5"), "%s", g3.why);
}

/* ---------------------------------------------------------------- claims from a re-run */

static bench_ab_result fake_ab(bool pass_b, bool pass_c, double bw)
{
    static char log[64];
    log[0] = 0;
    static fake_source b, c;
    b = (fake_source){.tag = 'B', .us = 4000, .pass = pass_b, .log = log};
    c = (fake_source){.tag = 'C', .us = 2000, .pass = pass_c, .log = log, .bw = bw};
    bench_timing_source sb = fake(&b), sc = fake(&c);
    bench_ab_opts o = ab_opts(6, 1);
    bench_ab_result r;
    ir_error err = {0};
    cr_assert_eq(bench_ab_run(&sb, &sc, &o, &r, &err), IR_OK);
    return r;
}

static bench_audit_verdict audit_of(const bench_ab_result *r, double claimed, double bw_spec,
                                    bench_claim *c, bench_audit_result *a)
{
    int rank[1] = {3};
    int64_t d[3] = {2, 64, 128};
    const int64_t *dims[1] = {d};
    ir_error err = {0};
    cr_assert_eq(bench_claim_from_ab(r, "A vs B", "h100", 3350000000, bw_spec, claimed, 1, rank,
                                     dims, c, &err), IR_OK, "%s", err.why);
    cr_assert_eq(bench_audit(c, NULL, a, &err), IR_OK, "%s", err.why);
    return a->verdict;
}

static bool has_reason(const bench_audit_result *r, bench_audit_reason id)
{
    for (int i = 0; i < r->n_reasons; i++)
        if (r->reasons[i].id == id)
            return true;
    return false;
}

Test(rerun_claim, a_measured_speedup_is_confirmed_and_a_far_claim_refuted)
{
    bench_ab_result r = fake_ab(true, true, 0);
    bench_claim c;
    bench_audit_result a;
    cr_assert_eq(audit_of(&r, 0, 3350, &c, &a), BENCH_AUDIT_CONFIRMED);
    cr_assert_float_eq(c.claimed_speedup, r.speedup.estimate, 0, "no claim: the measured ratio");
    cr_assert_eq(c.correctness, BENCH_CORRECTNESS_PASS);
    cr_assert_eq(c.n_baseline, 6);
    cr_assert_eq(c.n_candidate, 6);
    cr_assert_float_eq(c.baseline_us[0], r.baseline.samples_us[0], 0);
    cr_assert_not(c.has_bandwidth, "nothing measured: the spec floor");
    cr_assert_str_eq(c.device, "h100");
    cr_assert_eq(c.bench_shapes.n, 1);
    cr_assert_eq(c.verify_shapes.dims[0][1], 64);
    cr_assert(has_reason(&a, BENCH_REASON_CLAIM_WITHIN_CI));
    bench_claim_free(&c);
    cr_assert_eq(audit_of(&r, 10.0, 3350, &c, &a), BENCH_AUDIT_REFUTED);
    cr_assert(has_reason(&a, BENCH_REASON_CLAIM_OUTSIDE_CI));
    bench_claim_free(&c);
    bench_ab_result_free(&r);
}

Test(rerun_claim, a_failed_gate_drops_that_sides_samples_and_is_unsupported)
{
    bench_ab_result r = fake_ab(true, false, 0);
    bench_claim c;
    bench_audit_result a;
    cr_assert_eq(audit_of(&r, 2.0, 3350, &c, &a), BENCH_AUDIT_UNSUPPORTED);
    cr_assert_eq(c.correctness, BENCH_CORRECTNESS_FAIL);
    cr_assert_eq(c.n_candidate, 0, "no PASS, no latency");
    cr_assert_eq(c.n_baseline, 6);
    cr_assert(has_reason(&a, BENCH_REASON_CORRECTNESS_NOT_PASS));
    cr_assert_not(a.has_ci);
    bench_claim_free(&c);
    bench_ab_result_free(&r);
}

Test(rerun_claim, the_floor_is_taken_at_the_lower_of_spec_and_measured_bandwidth)
{
    /* measured 1000 GB/s: floor 3350 us, above both sides' samples: REFUTED as impossible */
    bench_ab_result r = fake_ab(true, true, 1000);
    bench_claim c;
    bench_audit_result a;
    cr_assert_eq(audit_of(&r, 0, 3350, &c, &a), BENCH_AUDIT_REFUTED);
    cr_assert(c.has_bandwidth);
    cr_assert_float_eq(c.bandwidth_gbs, 1000, 0);
    cr_assert(has_reason(&a, BENCH_REASON_CANDIDATE_BELOW_FLOOR));
    bench_claim_free(&c);
    bench_ab_result_free(&r);
    /* measured above spec: the spec floor stays */
    r = fake_ab(true, true, 5000);
    cr_assert_eq(audit_of(&r, 0, 3350, &c, &a), BENCH_AUDIT_CONFIRMED);
    cr_assert_not(c.has_bandwidth);
    cr_assert_float_eq(c.bandwidth_gbs, 3350, 0);
    bench_claim_free(&c);
    bench_ab_result_free(&r);
    ir_error err = {0};
    cr_assert_eq(bench_claim_from_ab(&r, "x", "no-such-gpu", 1, 1, 1, 1, (int[]){1},
                                     (const int64_t *const[]){(int64_t[]){1}}, &c, &err),
                 IR_ERR_MALFORMED);
    cr_assert_str_eq(err.where, "device");
}

/* ---------------------------------------------------------------- reference logits */

Test(reference, vm_logits_are_computed_once_greedily_and_replayed_with_given_tokens)
{
    const char *prog = "/tmp/amk_test_bgpu_ref.json";
    lower_fixture(prog, NULL, 0);
    ir_program *p = NULL;
    refvm_st *st = NULL;
    ir_error err = {0};
    cr_assert_eq(ir_read_file(prog, NULL, &p, &err), IR_OK);
    cr_assert_eq(refvm_st_open(FIXTURE "model.safetensors", &st, &err), IR_OK);
    lower_model m;
    cr_assert_eq(lower_model_from_meta(p, &m, &err), IR_OK);
    bench_reference r;
    cr_assert_eq(bench_reference_compute(p, st, m.tie_embeddings, 5, NULL, &r, &err), IR_OK, "%s",
                 err.why);
    cr_assert_eq(r.steps, 5);
    cr_assert_eq(r.vocab, m.vocab);
    cr_assert_eq(r.tokens[0], 0, "greedy decode starts from token 0");
    /* each next token is the previous step's argmax, and the logits match the eager forward */
    refvm_eager *e = NULL;
    cr_assert_eq(refvm_eager_new(&m, st, 64, &e, &err), IR_OK);
    for (int64_t pos = 0; pos < 5; pos++) {
        const float *lg = r.logits + pos * r.vocab, *ref;
        if (pos + 1 < 5)
            cr_assert_eq(r.tokens[pos + 1], refvm_argmax(lg, r.vocab));
        cr_assert_eq(refvm_eager_forward(e, r.tokens[pos], pos, &ref, &err), IR_OK);
        cr_assert(refvm_gate_compare(lg, ref, r.vocab, REFVM_GATE_REL_TOL).pass, "pos %lld",
                  (long long)pos);
    }
    refvm_eager_free(e);
    /* fed the same tokens, another computation gives the very same logits */
    bench_reference r2;
    cr_assert_eq(bench_reference_compute(p, st, m.tie_embeddings, 5, r.tokens, &r2, &err), IR_OK);
    cr_assert_eq(memcmp(r2.tokens, r.tokens, 5 * sizeof *r.tokens), 0);
    cr_assert_eq(memcmp(r2.logits, r.logits, (size_t)(5 * r.vocab) * sizeof *r.logits), 0);
    bench_reference_free(&r2);
    bench_reference_free(&r);
    cr_assert_eq(bench_reference_compute(p, st, m.tie_embeddings, 65, NULL, &r, &err),
                 IR_ERR_MALFORMED, "beyond max_seq 64");
    cr_assert_str_eq(err.where, "--steps");
    cr_assert_null(r.logits);
    refvm_st_close(st);
    ir_program_free(p);
    unlink(prog);
}

/* ---------------------------------------------------------------- the JSON report */

Test(report, json_has_both_sides_the_speedup_and_both_floors)
{
    bench_ab_result r = fake_ab(true, true, 3000);
    bench_report rep = {.program = "p.json", .certificate = "p.cert.json", .target = "h100",
                        .device = "NVIDIA H100 80GB HBM3", .against = "reference VM",
                        .weight_bytes = 3350000000, .spec_bandwidth_gbs = 3350, .warmup = 1,
                        .run = &r.candidate, .ab = &r, .baseline_library = "cuBLAS 130000"};
    char *js = NULL;
    ir_error err = {0};
    cr_assert_eq(bench_report_json(&rep, &js, &err), IR_OK);
    cJSON *o = cJSON_Parse(js);
    cr_assert_not_null(o, "%s", js);
    cr_assert_str_eq(cJSON_GetObjectItem(o, "source")->valuestring, "fake-candidate");
    cr_assert(cJSON_IsTrue(cJSON_GetObjectItem(o, "gpu")));
    cr_assert_str_eq(cJSON_GetObjectItem(o, "device")->valuestring, "NVIDIA H100 80GB HBM3");
    cr_assert_eq(cJSON_GetArraySize(cJSON_GetObjectItem(o, "samples_us")), 6);
    const cJSON *rf = cJSON_GetObjectItem(o, "roofline");
    cr_assert_float_eq(cJSON_GetObjectItem(rf, "spec_floor_us")->valuedouble, 1000.0, 1e-9);
    cr_assert_float_eq(cJSON_GetObjectItem(rf, "measured_bandwidth_gbs")->valuedouble, 3000, 0);
    cr_assert_float_eq(cJSON_GetObjectItem(rf, "measured_floor_us")->valuedouble,
                       3350000000.0 / 3e6, 1e-6);
    const cJSON *b = cJSON_GetObjectItem(o, "baseline");
    cr_assert(cJSON_IsObject(b));
    cr_assert_str_eq(cJSON_GetObjectItem(b, "source")->valuestring, "fake-baseline");
    cr_assert_str_eq(cJSON_GetObjectItem(b, "library")->valuestring, "cuBLAS 130000");
    cr_assert_str_eq(cJSON_GetObjectItem(cJSON_GetObjectItem(b, "correctness"), "verdict")
                         ->valuestring, "PASS");
    cr_assert(cJSON_IsObject(cJSON_GetObjectItem(b, "latency_us_per_token")));
    const cJSON *sp = cJSON_GetObjectItem(o, "speedup");
    cr_assert(cJSON_IsObject(sp), "%s", js);
    cr_assert_float_eq(cJSON_GetObjectItem(sp, "estimate")->valuedouble, r.speedup.estimate, 0);
    const cJSON *ci = cJSON_GetObjectItem(sp, "ci");
    cr_assert_float_eq(cJSON_GetObjectItem(ci, "lo")->valuedouble, r.speedup.lo, 0);
    cr_assert_float_eq(cJSON_GetObjectItem(ci, "hi")->valuedouble, r.speedup.hi, 0);
    cr_assert_float_eq(cJSON_GetObjectItem(ci, "level")->valuedouble, 0.95, 0);
    cr_assert(cJSON_IsNull(cJSON_GetObjectItem(o, "speedup_withheld")));
    cJSON_Delete(o);
    free(js);
    bench_ab_result_free(&r);

    /* a failed side: its latency is null, no samples, no speedup, reasons instead */
    r = fake_ab(false, true, 3000);
    rep.run = &r.candidate;
    rep.ab = &r;
    cr_assert_eq(bench_report_json(&rep, &js, &err), IR_OK);
    o = cJSON_Parse(js);
    b = cJSON_GetObjectItem(o, "baseline");
    cr_assert(cJSON_IsNull(cJSON_GetObjectItem(b, "latency_us_per_token")));
    cr_assert_null(cJSON_GetObjectItem(b, "samples_us"));
    cr_assert(strstr(cJSON_GetObjectItem(b, "withheld")->valuestring, "correctness"));
    cr_assert(strstr(cJSON_GetObjectItem(cJSON_GetObjectItem(b, "correctness"), "why")
                         ->valuestring, "fake mismatch"));
    cr_assert(cJSON_IsNull(cJSON_GetObjectItem(o, "speedup")));
    cr_assert(cJSON_IsString(cJSON_GetObjectItem(o, "speedup_withheld")));
    cJSON_Delete(o);
    free(js);
    bench_ab_result_free(&r);
}

/* ---------------------------------------------------------------- devices, chart */

Test(device, gpu_names_map_to_built_in_targets_by_whole_words)
{
    cr_assert_str_eq(bench_target_for_device("NVIDIA H100 80GB HBM3"), "h100");
    cr_assert_str_eq(bench_target_for_device("NVIDIA H200"), "h200");
    cr_assert_str_eq(bench_target_for_device("NVIDIA L40S"), "l40s");
    cr_assert_str_eq(bench_target_for_device("NVIDIA L4"), "l4");
    cr_assert_str_eq(bench_target_for_device("Tesla T4"), "t4");
    cr_assert_str_eq(bench_target_for_device("NVIDIA GeForce RTX 5090"), "rtx5090");
    cr_assert_str_eq(bench_target_for_device("NVIDIA A100-SXM4-80GB"), "a100");
    cr_assert_null(bench_target_for_device("NVIDIA GH200 480GB"), "a Grace Hopper is no H200");
    cr_assert_null(bench_target_for_device("NVIDIA GeForce RTX 4090"));
    cr_assert_null(bench_target_for_device(NULL));
    const char *names[] = {"h100", "h200", "l40s", "l4", "t4", "rtx5090", "a100", "b200", "a10g"};
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++)
        cr_assert_not_null(ir_target_builtin(names[i]), "%s is a built-in target", names[i]);
}

Test(plot, the_baseline_is_a_second_marker_or_its_reason)
{
    bench_plot pl = {.title = "p", .label = BENCH_GPU_LABEL, .weight_bytes = 2472000000,
                     .spec_bandwidth_gbs = 3350, .spec_name = "h100 spec",
                     .measured_bandwidth_gbs = 3000, .has_latency = true, .median_us = 2600,
                     .p10_us = 2550, .p90_us = 2700, .baseline_label = BENCH_BASELINE_LABEL,
                     .baseline_has_latency = true, .baseline_median_us = 1100,
                     .baseline_p10_us = 1050, .baseline_p90_us = 1200};
    char *svg = NULL;
    ir_error err = {0};
    cr_assert_eq(bench_roofline_svg(&pl, &svg, &err), IR_OK);
    cr_assert(strstr(svg, "<circle"), "the megakernel's point");
    cr_assert(strstr(svg, "fill=\"#7d3c98\""), "the baseline's marker");
    cr_assert(strstr(svg, "baseline gpu-cublas-graph median 1100 us"), "%s", svg);
    cr_assert(strstr(svg, "measured bandwidth 3000 GB/s"));
    free(svg);
    pl.baseline_has_latency = false;
    pl.baseline_withheld_why = "no latency: the correctness gate did not PASS";
    cr_assert_eq(bench_roofline_svg(&pl, &svg, &err), IR_OK);
    cr_assert(strstr(svg, "baseline gpu-cublas-graph: no latency shown: no latency: the "
                          "correctness gate did not PASS"));
    cr_assert_null(strstr(svg, "median 1100"));
    free(svg);
}

/* ---------------------------------------------------------------- command lines */

Test(bench_cli, usage_errors_exit_2_and_help_names_the_gpu_sources)
{
    const char *bad[][8] = {
        {"bench", "p.json", "--cert", "c", "--weights", "w", "--steps", "0"},
        {"bench", "p.json", "--cert", "c", "--weights", "w", "--device", "-1"},
        {"bench", "p.json", "--cert", "c", "--weights", "w", "--resamples", "5"},
        {"bench", "p.json", "--cert", "c", "--weights", "w", "--bogus", "1"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        cr_assert_eq(run_captured(cmd_bench, bad[i], 8, NULL), AMK_EXIT_MALFORMED, "case %zu", i);
    const char *help[] = {"bench", "--help"};
    char *out = NULL;
    cr_assert_eq(run_captured(cmd_bench, help, 2, &out), AMK_EXIT_OK);
    cr_assert(strstr(out, "gpu-megakernel") && strstr(out, "gpu-cublas-graph"), "%s", out);
    cr_assert(strstr(out, "--no-baseline") && strstr(out, "--cpu"), "%s", out);
    free(out);
}

Test(bench_cli, cpu_flag_times_the_reference_vm_and_says_why_no_baseline)
{
    const char *prog = "/tmp/amk_test_bgpu_cpu.json", *cert = "/tmp/amk_test_bgpu_cpu.cert.json";
    lower_fixture(prog, cert, 0);
    const char *args[] = {"bench", prog, "--cert", cert, "--weights", FIXTURE "model.safetensors",
                          "--steps", "3", "--repeats", "3", "--cpu", "--json"};
    char *out = NULL;
    cr_assert_eq(run_captured(cmd_bench, args, 12, &out), AMK_EXIT_OK, "%s", out);
    cJSON *o = cJSON_Parse(out);
    cr_assert_not_null(o, "%s", out);
    cr_assert_str_eq(cJSON_GetObjectItem(o, "source")->valuestring, BENCH_CPU_LABEL);
    cr_assert(cJSON_IsFalse(cJSON_GetObjectItem(o, "gpu")));
    cr_assert(cJSON_IsNull(cJSON_GetObjectItem(o, "device")));
    cr_assert(strstr(cJSON_GetObjectItem(o, "gpu_note")->valuestring, "--cpu"));
    cr_assert(cJSON_IsNull(cJSON_GetObjectItem(o, "baseline")));
    cr_assert(strstr(cJSON_GetObjectItem(o, "baseline_unavailable")->valuestring, "needs a GPU"));
    cr_assert(cJSON_IsNull(cJSON_GetObjectItem(o, "speedup")));
    cJSON_Delete(o);
    free(out);
    unlink(prog);
    unlink(cert);
}

Test(audit_rerun_cli, usage_errors_and_refused_certificates)
{
    const char *help[] = {"audit", "--rerun", "--help"};
    char *out = NULL;
    cr_assert_eq(run_captured(cmd_audit, help, 3, &out), AMK_EXIT_OK);
    cr_assert(strstr(out, "--cert-a") && strstr(out, "--claimed-speedup"), "%s", out);
    free(out);
    const char *no_certs[] = {"audit", "--rerun", "a.json", "b.json", "--weights", "w"};
    cr_assert_eq(run_captured(cmd_audit, no_certs, 6, NULL), AMK_EXIT_MALFORMED);
    const char *one_prog[] = {"audit", "--rerun", "a.json", "--cert-a", "x", "--cert-b", "y",
                              "--weights", "w"};
    cr_assert_eq(run_captured(cmd_audit, one_prog, 9, NULL), AMK_EXIT_MALFORMED);
    const char *bad_claim[] = {"audit", "--rerun", "a.json", "b.json", "--cert-a", "x",
                               "--cert-b", "y", "--weights", "w", "--claimed-speedup", "-2"};
    cr_assert_eq(run_captured(cmd_audit, bad_claim, 12, NULL), AMK_EXIT_MALFORMED);
    const char *missing[] = {"audit", "--rerun", "/tmp/amk_no_such_a.json", "b.json",
                             "--cert-a", "x", "--cert-b", "y", "--weights", "w"};
    cr_assert_eq(run_captured(cmd_audit, missing, 10, NULL), AMK_EXIT_MALFORMED);

    /* B with A's certificate: refused before anything is measured */
    const char *a = "/tmp/amk_test_rerun_a.json", *ca = "/tmp/amk_test_rerun_a.cert.json",
               *b = "/tmp/amk_test_rerun_b.json", *cb = "/tmp/amk_test_rerun_b.cert.json";
    lower_fixture(a, ca, 0);
    lower_fixture(b, cb, 16);
    const char *wrong[] = {"audit", "--rerun", a, b, "--cert-a", ca, "--cert-b", ca,
                           "--weights", FIXTURE "model.safetensors", "--json"};
    cr_assert_eq(run_captured(cmd_audit, wrong, 11, &out), AMK_EXIT_REFUTED, "%s", out);
    cJSON *o = cJSON_Parse(out);
    cr_assert_not_null(o, "%s", out);
    cr_assert_str_eq(cJSON_GetObjectItem(o, "status")->valuestring, "REFUSED");
    cr_assert(strstr(cJSON_GetObjectItem(o, "why")->valuestring, b), "names B");
    cJSON_Delete(o);
    free(out);
    unlink(a);
    unlink(ca);
    unlink(b);
    unlink(cb);
}

Test(audit_rerun_cli, without_a_gpu_nothing_is_measured_and_the_exit_is_2)
{
    if (have_gpu())
        cr_skip_test("a GPU is present: the re-run would measure");
    const char *a = "/tmp/amk_test_rerun_nogpu_a.json", *ca = "/tmp/amk_test_rerun_nogpu_a.cert.json";
    lower_fixture(a, ca, 0);
    const char *args[] = {"audit", "--rerun", a, a, "--cert-a", ca, "--cert-b", ca,
                          "--weights", FIXTURE "model.safetensors", "--json"};
    char *out = NULL;
    cr_assert_eq(run_captured(cmd_audit, args, 11, &out), AMK_EXIT_MALFORMED, "%s", out);
    cJSON *o = cJSON_Parse(out);
    cr_assert_not_null(o, "%s", out);
    const char *st = cJSON_GetObjectItem(o, "status")->valuestring;
    const char *why = cJSON_GetObjectItem(o, "why")->valuestring;
    if (mk_have_cuda()) {
        cr_assert_str_eq(st, "NO_DEVICE");
        cr_assert(strstr(why, "needs a GPU: no CUDA device found"), "%s", why);
    } else {
        cr_assert_str_eq(st, "NO_CUDA");
        cr_assert(strstr(why, "needs a GPU megakernel build"), "%s", why);
    }
    cr_assert(cJSON_IsNull(cJSON_GetObjectItem(o, "verdict")));
    cJSON_Delete(o);
    free(out);
    unlink(a);
    unlink(ca);
}

/* ---------------------------------------------------------------- on a GPU */

Test(gpu, bench_times_the_megakernel_and_the_cublas_baseline_with_pass, .timeout = 300)
{
    need_gpu();
    const char *prog = "/tmp/amk_test_bgpu.json", *cert = "/tmp/amk_test_bgpu.cert.json",
               *svg = "/tmp/amk_test_bgpu.svg";
    lower_fixture(prog, cert, 0);
    const char *args[] = {"bench", prog, "--cert", cert, "--weights", FIXTURE "model.safetensors",
                          "--steps", "8", "--repeats", "5", "--json", "--plot", svg};
    char *out = NULL;
    cr_assert_eq(run_captured(cmd_bench, args, 13, &out), AMK_EXIT_OK, "%s", out);
    cJSON *o = cJSON_Parse(out);
    cr_assert_not_null(o, "%s", out);
    cr_assert_str_eq(cJSON_GetObjectItem(o, "source")->valuestring, BENCH_GPU_LABEL);
    cr_assert(cJSON_IsTrue(cJSON_GetObjectItem(o, "gpu")));
    const cJSON *g = cJSON_GetObjectItem(o, "correctness");
    cr_assert_str_eq(cJSON_GetObjectItem(g, "verdict")->valuestring, "PASS");
    cr_assert_eq((int)cJSON_GetObjectItem(g, "compared")->valuedouble, 8 * 6);
    cr_assert_eq((int)cJSON_GetObjectItem(g, "top1_agree")->valuedouble, 8 * 6);
    const cJSON *rf = cJSON_GetObjectItem(o, "roofline");
    double meas = cJSON_GetObjectItem(rf, "measured_bandwidth_gbs")->valuedouble;
    cr_assert(meas > 100, "a streaming read of a GPU: %g GB/s", meas);
    double med = cJSON_GetObjectItem(cJSON_GetObjectItem(o, "latency_us_per_token"), "median")
                     ->valuedouble;
    cr_assert(med > cJSON_GetObjectItem(rf, "measured_floor_us")->valuedouble);
    const cJSON *b = cJSON_GetObjectItem(o, "baseline");
    cr_assert(cJSON_IsObject(b), "baseline: %s",
              cJSON_IsString(cJSON_GetObjectItem(o, "baseline_unavailable"))
                  ? cJSON_GetObjectItem(o, "baseline_unavailable")->valuestring : "?");
    const cJSON *bg = cJSON_GetObjectItem(b, "correctness");
    cr_assert_str_eq(cJSON_GetObjectItem(bg, "verdict")->valuestring, "PASS", "%s", out);
    cr_assert(cJSON_GetObjectItem(bg, "max_rel_err")->valuedouble < 1e-3,
              "f32 weights: cuBLAS in fp32 is close to the VM");
    const cJSON *sp = cJSON_GetObjectItem(o, "speedup");
    cr_assert(cJSON_IsObject(sp), "%s", out);
    const cJSON *ci = cJSON_GetObjectItem(sp, "ci");
    double est = cJSON_GetObjectItem(sp, "estimate")->valuedouble;
    cr_assert(cJSON_GetObjectItem(ci, "lo")->valuedouble <= est &&
              est <= cJSON_GetObjectItem(ci, "hi")->valuedouble);
    cr_assert_eq(access(svg, R_OK), 0);
    cJSON_Delete(o);
    free(out);
    unlink(prog);
    unlink(cert);
    unlink(svg);
}

Test(gpu, audit_rerun_measures_two_proved_plans_and_decides, .timeout = 300)
{
    need_gpu();
    const char *a = "/tmp/amk_test_rerun_gpu_a.json", *ca = "/tmp/amk_test_rerun_gpu_a.cert.json",
               *b = "/tmp/amk_test_rerun_gpu_b.json", *cb = "/tmp/amk_test_rerun_gpu_b.cert.json";
    lower_fixture(a, ca, 0);
    lower_fixture(b, cb, 16);
    const char *args[] = {"audit", "--rerun", a, b, "--cert-a", ca, "--cert-b", cb, "--weights",
                          FIXTURE "model.safetensors", "--steps", "6", "--repeats", "5",
                          "--claimed-speedup", "1000", "--json"};
    char *out = NULL;
    int rc = run_captured(cmd_audit, args, 17, &out);
    cJSON *o = cJSON_Parse(out);
    cr_assert_not_null(o, "%s", out);
    const cJSON *x = cJSON_GetObjectItem(o, "rerun");
    cr_assert(cJSON_IsObject(x), "%s", out);
    cr_assert_str_eq(cJSON_GetObjectItem(cJSON_GetObjectItem(x, "a"), "verdict")->valuestring,
                     "PASS");
    cr_assert_str_eq(cJSON_GetObjectItem(cJSON_GetObjectItem(x, "b"), "verdict")->valuestring,
                     "PASS");
    cr_assert(cJSON_GetObjectItem(x, "measured_bandwidth_gbs")->valuedouble > 100);
    /* a 1000x claim between two plans of one model is outside any honest interval */
    cr_assert_eq(rc, AMK_EXIT_REFUTED, "%s", out);
    cr_assert_str_eq(cJSON_GetObjectItem(o, "verdict")->valuestring, "REFUTED");
    cr_assert(cJSON_IsObject(cJSON_GetObjectItem(o, "ci")));
    cJSON_Delete(o);
    free(out);
    unlink(a);
    unlink(ca);
    unlink(b);
    unlink(cb);
}
