/*
 * test_audit.c - the honesty machinery of bench/: every audit rule both ways on hand-made
 * claims (tests/data/audit/), strict claim parsing, the bootstrap against known lognormal
 * distributions, the floor guard with fake timing sources, the roofline chart, and `amk bench`
 * on the HF fixture (cpu-reference latency with a PASS, refusals without a valid certificate).
 */
#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cjson/cJSON.h>

#include "bench/bench.h"
#include "lower/lower.h"
#include "tools/cmd.h"
#include "tests/capture.h"
#include "verify/verify.h"

#define AUDIT_DATA "tests/data/audit/"
#define FIXTURE "tests/fixtures/llama_gqa2_f32/"

/* ---------------------------------------------------------------- helpers */

/* Parse and audit a claim file with the default options; the claim must parse. */
static bench_audit_result audit_file(const char *name)
{
    char path[256];
    snprintf(path, sizeof path, AUDIT_DATA "%s.json", name);
    bench_claim c;
    bench_audit_result r;
    ir_error err = {0};
    cr_assert_eq(bench_claim_read_file(path, &c, &err), IR_OK, "%s: %s: %s", path, err.where,
                 err.why);
    cr_assert_eq(bench_audit(&c, NULL, &r, &err), IR_OK, "%s", err.why);
    bench_claim_free(&c);
    return r;
}

static bool has_reason(const bench_audit_result *r, bench_audit_reason id)
{
    for (int i = 0; i < r->n_reasons; i++)
        if (r->reasons[i].id == id)
            return true;
    return false;
}

/* The claim file must be refused as MALFORMED at `where`. */
static void assert_malformed_at(const char *name, const char *where)
{
    char path[256];
    snprintf(path, sizeof path, AUDIT_DATA "%s.json", name);
    bench_claim c;
    ir_error err = {0};
    cr_assert_eq(bench_claim_read_file(path, &c, &err), IR_ERR_MALFORMED, "%s parsed", name);
    cr_assert_str_eq(err.where, where, "%s: refused at %s (%s)", name, err.where, err.why);
}

static ir_status parse_text(const char *text, bench_claim *c, ir_error *err)
{
    return bench_claim_parse(text, strlen(text), c, err);
}

/* ---------------------------------------------------------------- audit rules */

Test(audit, confirms_a_claim_inside_its_ci_with_pass_and_matching_shapes)
{
    bench_audit_result r = audit_file("confirmed");
    cr_assert_eq(r.verdict, BENCH_AUDIT_CONFIRMED, "got %s", bench_audit_verdict_name(r.verdict));
    cr_assert(r.has_ci);
    cr_assert_float_eq(r.ci.estimate, 1201.0 / 802.0, 1e-12);
    cr_assert(r.ci.lo <= 1.5 && 1.5 <= r.ci.hi, "CI [%g, %g]", r.ci.lo, r.ci.hi);
    cr_assert(r.ci.lo > 1.0, "a clear speedup: the CI excludes 1");
    cr_assert(has_reason(&r, BENCH_REASON_CLAIM_WITHIN_CI));
    cr_assert_not(has_reason(&r, BENCH_REASON_NO_SIGNIFICANT_SPEEDUP));
    for (int i = 0; i < r.n_reasons; i++)
        cr_assert_eq(r.reasons[i].effect, BENCH_EFFECT_NOTE, "%s",
                     bench_audit_reason_id(r.reasons[i].id));
    cr_assert_float_eq(r.floor_us, 2e9 / 3350e3, 1e-9, "floor from the h100 spec bandwidth");
    cr_assert(r.candidate.reported && r.baseline.reported);
}

Test(audit, correctness_fail_or_null_is_unsupported)
{
    const char *names[] = {"correctness_fail", "correctness_null"};
    for (int i = 0; i < 2; i++) {
        bench_audit_result r = audit_file(names[i]);
        cr_assert_eq(r.verdict, BENCH_AUDIT_UNSUPPORTED, "%s: %s", names[i],
                     bench_audit_verdict_name(r.verdict));
        cr_assert(has_reason(&r, BENCH_REASON_CORRECTNESS_NOT_PASS), "%s", names[i]);
    }
    bench_audit_result ok = audit_file("confirmed");
    cr_assert_not(has_reason(&ok, BENCH_REASON_CORRECTNESS_NOT_PASS), "PASS raises no reason");
}

Test(audit, a_candidate_sample_below_the_floor_is_refuted_and_withheld)
{
    bench_audit_result r = audit_file("candidate_below_floor");
    cr_assert_eq(r.verdict, BENCH_AUDIT_REFUTED);
    cr_assert(has_reason(&r, BENCH_REASON_CANDIDATE_BELOW_FLOOR));
    cr_assert_eq(r.candidate.n_below_floor, 1);
    cr_assert_not(r.candidate.reported, "an impossible latency is withheld");
    cr_assert_float_eq(r.candidate.s.median, 0.0, 0.0);
    cr_assert_not(r.has_ci, "no speedup figure from impossible data");
    cr_assert_float_eq(r.candidate.lowest_us, 590.0, 0.0);
}

Test(audit, a_candidate_sample_just_above_the_floor_is_not_refuted)
{
    bench_audit_result r = audit_file("candidate_just_above_floor");
    cr_assert_not(has_reason(&r, BENCH_REASON_CANDIDATE_BELOW_FLOOR));
    cr_assert_eq(r.candidate.n_below_floor, 0);
    cr_assert(r.candidate.reported);
    cr_assert_eq(r.verdict, BENCH_AUDIT_CONFIRMED, "got %s", bench_audit_verdict_name(r.verdict));
}

Test(audit, a_baseline_sample_below_the_floor_is_refuted)
{
    bench_audit_result r = audit_file("baseline_below_floor");
    cr_assert_eq(r.verdict, BENCH_AUDIT_REFUTED);
    cr_assert(has_reason(&r, BENCH_REASON_BASELINE_BELOW_FLOOR));
    cr_assert_not(has_reason(&r, BENCH_REASON_CANDIDATE_BELOW_FLOOR));
}

Test(audit, bandwidth_in_the_claim_sets_the_floor)
{
    /* 2e9 B at 2000 GB/s: a 1000 us floor that every ~800 us candidate sample breaks */
    bench_audit_result r = audit_file("bandwidth_from_claim");
    cr_assert_float_eq(r.floor_us, 1000.0, 1e-9);
    cr_assert_float_eq(r.bandwidth_gbs, 2000.0, 0.0);
    cr_assert_eq(r.verdict, BENCH_AUDIT_REFUTED);
    cr_assert_eq(r.candidate.n_below_floor, 7);
}

/* A claim's own bandwidth can only lower the ceiling: 1e308 GB/s would put the floor at 0 and
 * let the impossible 590 us sample through; the target's spec bandwidth bounds it. */
Test(audit, a_claimed_bandwidth_above_the_targets_spec_cannot_lower_the_floor)
{
    bench_audit_result r = audit_file("bandwidth_above_spec");
    cr_assert_float_eq(r.bandwidth_gbs, ir_target_builtin("h100")->hbm_bandwidth_gbs, 0.0);
    cr_assert_gt(r.floor_us, 590.0);
    cr_assert_eq(r.verdict, BENCH_AUDIT_REFUTED, "got %s", bench_audit_verdict_name(r.verdict));
    cr_assert(has_reason(&r, BENCH_REASON_CANDIDATE_BELOW_FLOOR));
}

Test(audit, benchmark_shapes_differing_from_verification_shapes_are_unsupported)
{
    const char *names[] = {"shapes_differ", "shapes_verified_not_benchmarked"};
    for (int i = 0; i < 2; i++) {
        bench_audit_result r = audit_file(names[i]);
        cr_assert_eq(r.verdict, BENCH_AUDIT_UNSUPPORTED, "%s", names[i]);
        cr_assert(has_reason(&r, BENCH_REASON_SHAPES_DIFFER), "%s", names[i]);
    }
    bench_audit_result same = audit_file("shapes_reordered");
    cr_assert_not(has_reason(&same, BENCH_REASON_SHAPES_DIFFER), "the same set in another order");
    cr_assert_eq(same.verdict, BENCH_AUDIT_CONFIRMED);
}

Test(audit, fewer_than_three_samples_are_unsupported_and_three_are_enough)
{
    bench_audit_result r = audit_file("too_few_samples");
    cr_assert_eq(r.verdict, BENCH_AUDIT_UNSUPPORTED);
    cr_assert(has_reason(&r, BENCH_REASON_TOO_FEW_SAMPLES));
    cr_assert_not(r.has_ci);
    bench_audit_result three = audit_file("three_samples");
    cr_assert_not(has_reason(&three, BENCH_REASON_TOO_FEW_SAMPLES));
    cr_assert(three.has_ci);
    cr_assert_eq(three.verdict, BENCH_AUDIT_CONFIRMED, "got %s",
                 bench_audit_verdict_name(three.verdict));
}

Test(audit, a_claimed_speedup_outside_the_ci_is_refuted)
{
    bench_audit_result r = audit_file("claim_outside_ci");
    cr_assert_eq(r.verdict, BENCH_AUDIT_REFUTED);
    cr_assert(has_reason(&r, BENCH_REASON_CLAIM_OUTSIDE_CI));
    cr_assert_not(has_reason(&r, BENCH_REASON_CLAIM_WITHIN_CI));
    cr_assert(r.ci.hi < 3.0);
}

Test(audit, a_ci_including_one_says_no_significant_speedup)
{
    bench_audit_result r = audit_file("no_significant_speedup");
    cr_assert(r.ci.lo <= 1.0 && r.ci.hi >= 1.0, "CI [%g, %g]", r.ci.lo, r.ci.hi);
    cr_assert(has_reason(&r, BENCH_REASON_NO_SIGNIFICANT_SPEEDUP));
    cr_assert_eq(r.verdict, BENCH_AUDIT_CONFIRMED, "a claim of 1.0x is confirmed");
    bool said = false;
    for (int i = 0; i < r.n_reasons; i++)
        said |= strstr(r.reasons[i].message, "no significant speedup") != NULL;
    cr_assert(said);
}

Test(audit, every_applicable_reason_is_listed_and_refuted_beats_unsupported)
{
    bench_audit_result r = audit_file("every_reason");
    cr_assert_eq(r.verdict, BENCH_AUDIT_REFUTED);
    cr_assert(has_reason(&r, BENCH_REASON_CORRECTNESS_NOT_PASS));
    cr_assert(has_reason(&r, BENCH_REASON_CANDIDATE_BELOW_FLOOR));
    cr_assert(has_reason(&r, BENCH_REASON_SHAPES_DIFFER));
    cr_assert(has_reason(&r, BENCH_REASON_TOO_FEW_SAMPLES));
    cr_assert_eq(r.n_reasons, 4);
}

Test(audit, the_same_claim_gives_the_same_ci)
{
    bench_claim c;
    ir_error err = {0};
    cr_assert_eq(bench_claim_read_file(AUDIT_DATA "confirmed.json", &c, &err), IR_OK);
    bench_audit_result a, b;
    cr_assert_eq(bench_audit(&c, NULL, &a, &err), IR_OK);
    cr_assert_eq(bench_audit(&c, NULL, &b, &err), IR_OK);
    cr_assert(a.ci.lo == b.ci.lo && a.ci.hi == b.ci.hi);
    cr_assert_eq(a.ci.seed, BENCH_BOOTSTRAP_SEED);
    cr_assert_eq(a.ci.resamples, BENCH_BOOTSTRAP_RESAMPLES);
    bench_claim_free(&c);
}

/* ---------------------------------------------------------------- claim parsing */

Test(claim, an_unknown_key_is_refused_naming_it)
{
    assert_malformed_at("unknown_key", "notes");
    assert_malformed_at("unknown_nested_key", "candidate.latency_ms");
    bench_claim c;
    ir_error err = {0};
    cr_assert_eq(bench_claim_read_file(AUDIT_DATA "unknown_key.json", &c, &err), IR_ERR_MALFORMED);
    cr_assert(strstr(err.why, "unknown key 'notes'"), "%s", err.why);
}

Test(claim, bad_values_are_refused_at_their_json_path)
{
    assert_malformed_at("bad_sample", "candidate.latency_us[2]");
    assert_malformed_at("unknown_device", "device");
    bench_claim c;
    ir_error err = {0};
    cr_assert_eq(parse_text("{\"name\": \"x\"", &c, &err), IR_ERR_MALFORMED, "bad JSON");
    cr_assert_eq(parse_text("[1]", &c, &err), IR_ERR_MALFORMED);
    cr_assert_eq(parse_text("{\"name\": \"x\", \"name\": \"y\"}", &c, &err), IR_ERR_MALFORMED);
    cr_assert_str_eq(err.where, "name");
    cr_assert(strstr(err.why, "duplicate"));
    cr_assert_eq(parse_text("{\"name\": \"x\", \"device\": \"h100\"}", &c, &err),
                 IR_ERR_MALFORMED);
    cr_assert_str_eq(err.where, "weight_bytes", "the first missing key is named");
    cr_assert(strstr(err.why, "missing"));
}

Test(claim, every_field_is_read)
{
    bench_claim c;
    ir_error err = {0};
    cr_assert_eq(bench_claim_read_file(AUDIT_DATA "confirmed.json", &c, &err), IR_OK, "%s",
                 err.why);
    cr_assert_str_eq(c.name, "fused-decode");
    cr_assert_str_eq(c.device, "h100");
    cr_assert_eq(c.weight_bytes, 2000000000);
    cr_assert_not(c.has_bandwidth);
    cr_assert_float_eq(c.bandwidth_gbs, ir_target_builtin("h100")->hbm_bandwidth_gbs, 0.0);
    cr_assert_eq(c.n_baseline, 7);
    cr_assert_eq(c.n_candidate, 7);
    cr_assert_float_eq(c.candidate_us[6], 806.0, 0.0);
    cr_assert_float_eq(c.claimed_speedup, 1.5, 0.0);
    cr_assert_eq(c.correctness, BENCH_CORRECTNESS_PASS);
    cr_assert(c.has_max_abs_err);
    cr_assert_eq(c.bench_shapes.n, 2);
    cr_assert_eq(c.bench_shapes.rank[1], 2);
    cr_assert_eq(c.bench_shapes.dims[1][1], 8192);
    bench_claim_free(&c);
}

/* ---------------------------------------------------------------- statistics */

Test(stats, quantiles_and_summary_of_known_values)
{
    double s[] = {1, 2, 3, 4};
    cr_assert_float_eq(bench_quantile_sorted(s, 4, 0.5), 2.5, 1e-12);
    cr_assert_float_eq(bench_quantile_sorted(s, 4, 0.0), 1.0, 0.0);
    cr_assert_float_eq(bench_quantile_sorted(s, 4, 1.0), 4.0, 0.0);
    cr_assert_float_eq(bench_quantile_sorted(s, 4, 0.10), 1.3, 1e-12);
    double x[] = {9, 1, 5, 3, 7};
    bench_summary m;
    ir_error err = {0};
    cr_assert_eq(bench_summarize(x, 5, &m, &err), IR_OK);
    cr_assert_float_eq(m.median, 5.0, 0.0);
    cr_assert_float_eq(m.p10, 1.8, 1e-12);
    cr_assert_float_eq(m.p90, 8.2, 1e-12);
    cr_assert_float_eq(x[0], 9.0, 0.0, "input untouched");
}

static uint64_t rng_state;
static double uniform01(void)
{
    uint64_t z = (rng_state += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    z ^= z >> 31;
    return ((double)(z >> 11) + 0.5) / 9007199254740992.0;
}

/* n draws of a lognormal with median m and log-sd sigma (Box-Muller). */
static void lognormal(double *x, int n, double m, double sigma)
{
    for (int i = 0; i < n; i++) {
        double z = sqrt(-2 * log(uniform01())) * cos(2 * M_PI * uniform01());
        x[i] = m * exp(sigma * z);
    }
}

Test(stats, bootstrap_is_reproducible_per_seed)
{
    enum { N = 25 };
    double a[N], b[N];
    rng_state = 99;
    lognormal(a, N, 200.0, 0.3);
    lognormal(b, N, 100.0, 0.3);
    bench_ci x, y, z;
    ir_error err = {0};
    cr_assert_eq(bench_bootstrap_ratio(a, N, b, N, 2000, 5, 0.95, &x, &err), IR_OK);
    cr_assert_eq(bench_bootstrap_ratio(a, N, b, N, 2000, 5, 0.95, &y, &err), IR_OK);
    cr_assert_eq(bench_bootstrap_ratio(a, N, b, N, 2000, 6, 0.95, &z, &err), IR_OK);
    cr_assert(x.lo == y.lo && x.hi == y.hi, "same seed, same interval");
    cr_assert(x.lo != z.lo || x.hi != z.hi, "the seed drives the resampling");
}

Test(stats, identical_inputs_give_the_ci_one_to_one)
{
    double a[] = {5, 5, 5, 5, 5}, b[] = {3, 4, 5, 6, 7};
    bench_ci ci;
    ir_error err = {0};
    cr_assert_eq(bench_bootstrap_ratio(a, 5, a, 5, 2000, 1, 0.95, &ci, &err), IR_OK);
    cr_assert(ci.lo == 1.0 && ci.hi == 1.0 && ci.estimate == 1.0);
    double c2[] = {10, 10, 10}, d2[] = {5, 5, 5, 5};
    cr_assert_eq(bench_bootstrap_ratio(c2, 3, d2, 4, 2000, 1, 0.95, &ci, &err), IR_OK);
    cr_assert(ci.lo == 2.0 && ci.hi == 2.0);
    cr_assert_eq(bench_bootstrap_ratio(b, 5, b, 5, 2000, 1, 0.95, &ci, &err), IR_OK);
    cr_assert(ci.lo < 1.0 && ci.hi > 1.0 && ci.estimate == 1.0, "[%g, %g]", ci.lo, ci.hi);
}

Test(stats, bootstrap_ci_contains_the_true_ratio_of_lognormal_medians)
{
    enum { N = 60 };
    double a[N], b[N];
    rng_state = 42;
    lognormal(a, N, 300.0, 0.2);
    lognormal(b, N, 150.0, 0.2);
    bench_ci ci;
    ir_error err = {0};
    cr_assert_eq(bench_bootstrap_ratio(a, N, b, N, 10000, 7, 0.95, &ci, &err), IR_OK);
    cr_assert(ci.lo <= 2.0 && 2.0 <= ci.hi, "true ratio 2, CI [%g, %g]", ci.lo, ci.hi);
    cr_assert(ci.lo <= ci.estimate && ci.estimate <= ci.hi);
    cr_assert(ci.hi - ci.lo < 0.5, "width %g", ci.hi - ci.lo);
}

Test(stats, bootstrap_ci_shrinks_with_more_samples)
{
    static double a[2000], b[2000];
    double width[3];
    int ns[3] = {20, 200, 2000};
    for (int k = 0; k < 3; k++) {
        rng_state = 1000 + (uint64_t)k;
        lognormal(a, ns[k], 120.0, 0.25);
        lognormal(b, ns[k], 100.0, 0.25);
        bench_ci ci;
        ir_error err = {0};
        cr_assert_eq(bench_bootstrap_ratio(a, ns[k], b, ns[k], 2000, 3, 0.95, &ci, &err), IR_OK);
        cr_assert(ci.lo <= 1.2 && 1.2 <= ci.hi, "n %d: CI [%g, %g]", ns[k], ci.lo, ci.hi);
        width[k] = ci.hi - ci.lo;
    }
    /* the median's spread falls like 1/sqrt(n): a tenfold n at least halves the width */
    cr_assert(width[1] < 0.5 * width[0], "%g vs %g", width[1], width[0]);
    cr_assert(width[2] < 0.5 * width[1], "%g vs %g", width[2], width[1]);
}

Test(stats, bootstrap_95_percent_ci_covers_the_true_ratio_about_95_percent_of_the_time)
{
    enum { N = 41, TRIALS = 200 };
    double a[N], b[N];
    int covered = 0;
    rng_state = 7;
    for (int t = 0; t < TRIALS; t++) {
        lognormal(a, N, 80.0, 0.3);
        lognormal(b, N, 50.0, 0.3);
        bench_ci ci;
        ir_error err = {0};
        cr_assert_eq(bench_bootstrap_ratio(a, N, b, N, 1000, (uint64_t)t, 0.95, &ci, &err), IR_OK);
        covered += ci.lo <= 1.6 && 1.6 <= ci.hi;
    }
    /* 95% nominal; the percentile bootstrap of a median is slightly off at small n */
    cr_assert(covered >= (int)(0.86 * TRIALS) && covered <= (int)(0.995 * TRIALS),
              "covered %d of %d", covered, TRIALS);
}

Test(stats, bootstrap_refuses_bad_input)
{
    double ok[] = {1, 2, 3}, bad[] = {1, 0, 3}, nan[] = {1, NAN, 3};
    bench_ci ci;
    ir_error err = {0};
    cr_assert_eq(bench_bootstrap_ratio(ok, 3, bad, 3, 100, 1, 0.95, &ci, &err), IR_ERR_MALFORMED);
    cr_assert_eq(bench_bootstrap_ratio(nan, 3, ok, 3, 100, 1, 0.95, &ci, &err), IR_ERR_MALFORMED);
    cr_assert_eq(bench_bootstrap_ratio(ok, 0, ok, 3, 100, 1, 0.95, &ci, &err), IR_ERR_MALFORMED);
    cr_assert_eq(bench_bootstrap_ratio(ok, 3, ok, 3, 0, 1, 0.95, &ci, &err), IR_ERR_MALFORMED);
    cr_assert_eq(bench_bootstrap_ratio(ok, 3, ok, 3, 100, 1, 1.0, &ci, &err), IR_ERR_MALFORMED);
}

/* ---------------------------------------------------------------- the floor guard */

Test(floor, floor_is_weight_bytes_over_bandwidth)
{
    cr_assert_float_eq(bench_floor_us(3350000000, 3350.0), 1000.0, 1e-9);
    cr_assert_float_eq(bench_floor_us(2000000000, 2000.0), 1000.0, 1e-9);
    cr_assert_float_eq(bench_floor_us(0, 3350.0), 0.0, 0.0);
    cr_assert_float_eq(bench_floor_us(100, 0.0), 0.0, 0.0);
}

Test(floor, guard_withholds_a_summary_with_a_sample_below_the_floor)
{
    double us[] = {120, 110, 95, 130};
    bench_latency l;
    ir_error err = {0};
    cr_assert_eq(bench_guard_latency(us, 4, 100.0, &l, &err), IR_OK);
    cr_assert_not(l.reported);
    cr_assert_eq(l.n_below_floor, 1);
    cr_assert_float_eq(l.s.median, 0.0, 0.0, "no number leaks out");
    cr_assert(strstr(l.why, "floor"), "%s", l.why);
    cr_assert_eq(bench_guard_latency(us, 4, 90.0, &l, &err), IR_OK);
    cr_assert(l.reported);
    cr_assert_float_eq(l.s.median, 115.0, 1e-12);
}

/* A timing source that reports a fixed latency and a fixed gate. */
typedef struct {
    double us;
    bool pass;
    double bw;          /* measured bandwidth; 0: none */
    int runs;
} fake_source;

static ir_status fake_run(void *ctx, int64_t steps, double *us, bench_gate *g, ir_error *err)
{
    fake_source *f = ctx;
    f->runs++;
    memset(g, 0, sizeof *g);
    g->pass = f->pass;
    g->compared = steps;
    g->top1_agree = f->pass ? steps : 0;
    if (!f->pass)
        snprintf(g->why, sizeof g->why, "fake mismatch");
    *us = f->us * (1.0 + 0.01 * (f->runs % 3));
    return IR_OK;
}

static ir_status fake_bw(void *ctx, double *gbs, ir_error *err)
{
    *gbs = ((fake_source *)ctx)->bw;
    return IR_OK;
}

static bench_run_result run_fake(fake_source *f)
{
    bench_timing_source src = {.label = "fake-gpu", .is_gpu = true, .ctx = f, .run = fake_run,
                               .measure_bandwidth = f->bw > 0 ? fake_bw : NULL};
    /* 3.35e9 bytes at 3350 GB/s: a 1000 us spec floor */
    bench_run_opts o = {.steps = 4, .repeats = 5, .warmup = 1, .weight_bytes = 3350000000,
                        .spec_bandwidth_gbs = 3350.0};
    bench_run_result r;
    ir_error err = {0};
    cr_assert_eq(bench_run(&src, &o, &r, &err), IR_OK, "%s", err.why);
    return r;
}

Test(floor, a_fake_timing_source_below_the_floor_is_withheld)
{
    fake_source f = {.us = 400.0, .pass = true};
    bench_run_result r = run_fake(&f);
    cr_assert_eq(f.runs, 6, "one warm-up and five repeats");
    cr_assert(r.gate.pass);
    cr_assert_not(r.has_latency, "below the floor must not be returned");
    cr_assert_not(r.latency.reported);
    cr_assert_float_eq(r.latency.s.median, 0.0, 0.0);
    cr_assert(strstr(r.withheld_why, "floor"), "%s", r.withheld_why);
    bench_run_result_free(&r);
}

Test(floor, a_fake_timing_source_without_pass_gets_no_latency)
{
    fake_source f = {.us = 2000.0, .pass = false};
    bench_run_result r = run_fake(&f);
    cr_assert_not(r.gate.pass);
    cr_assert_not(r.has_latency);
    cr_assert(strstr(r.withheld_why, "correctness"), "%s", r.withheld_why);
    cr_assert(strstr(r.withheld_why, "fake mismatch"), "%s", r.withheld_why);
    bench_run_result_free(&r);
}

Test(floor, a_fake_timing_source_above_the_floor_with_pass_is_reported)
{
    fake_source f = {.us = 2000.0, .pass = true};
    bench_run_result r = run_fake(&f);
    cr_assert(r.has_latency);
    cr_assert_str_eq(r.label, "fake-gpu");
    cr_assert_eq(r.n_samples, 5);
    cr_assert_float_eq(r.latency.s.median, 2020.0, 1e-9);
    cr_assert_float_eq(r.spec_floor_us, 1000.0, 1e-9);
    cr_assert_float_eq(r.pct_of_spec_floor, 202.0, 1e-9);
    cr_assert_float_eq(r.achieved_gbs, 3350.0 / 2.02, 1e-9);
    cr_assert_not(r.has_measured_bw);
    bench_run_result_free(&r);
}

Test(floor, the_measured_bandwidth_floor_also_guards)
{
    /* measured 1000 GB/s: floor 3350 us, above the 2000 us samples */
    fake_source f = {.us = 2000.0, .pass = true, .bw = 1000.0};
    bench_run_result r = run_fake(&f);
    cr_assert(r.has_measured_bw);
    cr_assert_float_eq(r.measured_floor_us, 3350.0, 1e-9);
    cr_assert_not(r.has_latency);
    bench_run_result_free(&r);
}

/* ---------------------------------------------------------------- roofline chart */

static bool python_xml_ok(const char *path)
{
    if (system("python3 -c 'import xml.dom.minidom' >/dev/null 2>&1") != 0)
        return true;   /* no parser to ask: the structural asserts still ran */
    char cmd[512];
    snprintf(cmd, sizeof cmd, "python3 -c \"import sys, xml.dom.minidom as m; "
             "d = m.parse(sys.argv[1]); sys.exit(d.documentElement.tagName != 'svg')\" %s", path);
    return system(cmd) == 0;
}

Test(plot, roofline_svg_is_well_formed_and_escapes_text)
{
    bench_plot pl = {.title = "a<b>&\"c\"", .label = BENCH_CPU_LABEL, .weight_bytes = 427264,
                     .spec_bandwidth_gbs = 3350, .spec_name = "h100 spec", .has_latency = true,
                     .median_us = 29, .p10_us = 28, .p90_us = 35};
    char *svg = NULL;
    ir_error err = {0};
    cr_assert_eq(bench_roofline_svg(&pl, &svg, &err), IR_OK);
    cr_assert(strstr(svg, "a&lt;b&gt;&amp;&quot;c&quot;"));
    cr_assert(strstr(svg, "<circle"), "the measured point is drawn");
    cr_assert(strstr(svg, "cpu-reference"));
    cr_assert(strstr(svg, "needs a GPU"), "the measured floor says it is missing");
    const char *path = "/tmp/amk_test_roofline.svg";
    FILE *f = fopen(path, "w");
    fputs(svg, f);
    fclose(f);
    cr_assert(python_xml_ok(path));
    free(svg);
    pl.has_latency = false;
    pl.withheld_why = "withheld: below the floor";
    pl.measured_bandwidth_gbs = 2900;
    cr_assert_eq(bench_roofline_svg(&pl, &svg, &err), IR_OK);
    cr_assert_null(strstr(svg, "<circle"), "no point for a withheld latency");
    cr_assert(strstr(svg, "withheld: below the floor"));
    cr_assert(strstr(svg, "measured bandwidth 2900"));
    free(svg);
    unlink(path);
    pl.weight_bytes = 0;
    cr_assert_eq(bench_roofline_svg(&pl, &svg, &err), IR_ERR_MALFORMED);
}

/* ---------------------------------------------------------------- amk audit CLI */

Test(audit_cli, exit_codes_follow_the_verdict)
{
    struct {
        const char *file;
        int rc;
    } cases[] = {
        {AUDIT_DATA "confirmed.json", AMK_EXIT_OK},
        {AUDIT_DATA "claim_outside_ci.json", AMK_EXIT_REFUTED},
        {AUDIT_DATA "candidate_below_floor.json", AMK_EXIT_REFUTED},
        {AUDIT_DATA "shapes_differ.json", AMK_EXIT_UNKNOWN},
        {AUDIT_DATA "unknown_key.json", AMK_EXIT_MALFORMED},
        {AUDIT_DATA "does_not_exist.json", AMK_EXIT_MALFORMED},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        const char *args[] = {"audit", cases[i].file};
        cr_assert_eq(run_captured(cmd_audit, args, 2, NULL), cases[i].rc, "%s", cases[i].file);
    }
    const char *rerun[] = {"audit", "--rerun", "a.json", "b.json"};
    cr_assert_eq(run_captured(cmd_audit, rerun, 4, NULL), AMK_EXIT_MALFORMED);
}

Test(audit_cli, json_output_names_every_reason)
{
    const char *args[] = {"audit", AUDIT_DATA "every_reason.json", "--json"};
    char *out = NULL;
    cr_assert_eq(run_captured(cmd_audit, args, 3, &out), AMK_EXIT_REFUTED);
    cJSON *o = cJSON_Parse(out);
    cr_assert_not_null(o, "%s", out);
    cr_assert_str_eq(cJSON_GetObjectItem(o, "verdict")->valuestring, "REFUTED");
    const cJSON *rs = cJSON_GetObjectItem(o, "reasons");
    cr_assert_eq(cJSON_GetArraySize(rs), 4);
    cr_assert_str_eq(cJSON_GetObjectItem(cJSON_GetArrayItem(rs, 1), "id")->valuestring,
                     "candidate_below_floor");
    cr_assert(cJSON_IsNull(cJSON_GetObjectItem(cJSON_GetObjectItem(o, "candidate"), "median_us")),
              "an impossible latency is not printed");
    cJSON_Delete(o);
    free(out);
}

/* ---------------------------------------------------------------- amk bench on the fixture */

static lower_model fixture_model(void)
{
    lower_model m;
    ir_error err = {0};
    cr_assert_eq(lower_model_from_hf_config(FIXTURE "config.json", &m, &err), IR_OK, "%s",
                 err.why);
    return m;
}

/* Lower the fixture (f32, default config, h100) to prog; with cert, prove it and write the
 * certificate there. */
static void lower_fixture(const char *prog, const char *cert, bool argmax)
{
    lower_model m = fixture_model();
    ir_config c;
    ir_config_default(&c);
    lower_opts o;
    lower_opts_default(&o);
    o.dtype = IR_F32;
    o.sample_argmax = argmax;
    ir_program *p = NULL;
    ir_error err = {0};
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

Test(bench_cli, times_the_fixture_on_the_reference_vm_as_cpu_reference_with_pass)
{
    const char *prog = "/tmp/amk_test_bench_fx.json", *cert = "/tmp/amk_test_bench_fx.cert.json",
               *svg = "/tmp/amk_test_bench_fx.svg";
    lower_fixture(prog, cert, false);
    const char *args[] = {"bench", prog, "--cert", cert, "--weights", FIXTURE "model.safetensors",
                          "--steps", "8", "--repeats", "5", "--json", "--plot", svg, "--cpu"};
    char *out = NULL;
    cr_assert_eq(run_captured(cmd_bench, args, 14, &out), AMK_EXIT_OK, "%s", out);
    cJSON *o = cJSON_Parse(out);
    cr_assert_not_null(o, "%s", out);
    cr_assert_str_eq(cJSON_GetObjectItem(o, "source")->valuestring, "cpu-reference");
    cr_assert(cJSON_IsFalse(cJSON_GetObjectItem(o, "gpu")), "never a GPU figure");
    const cJSON *g = cJSON_GetObjectItem(o, "correctness");
    cr_assert_str_eq(cJSON_GetObjectItem(g, "verdict")->valuestring, "PASS");
    cr_assert_eq((int)cJSON_GetObjectItem(g, "compared")->valuedouble, 8 * 6,
                 "every step of the warm-up and the five repeats was gated");
    const cJSON *l = cJSON_GetObjectItem(o, "latency_us_per_token");
    double med = cJSON_GetObjectItem(l, "median")->valuedouble;
    const cJSON *rf = cJSON_GetObjectItem(o, "roofline");
    double floor = cJSON_GetObjectItem(rf, "spec_floor_us")->valuedouble;
    cr_assert(med > 0 && med > floor, "median %g, floor %g", med, floor);
    cr_assert(cJSON_GetObjectItem(l, "p10")->valuedouble <= med);
    cr_assert(cJSON_GetObjectItem(l, "p90")->valuedouble >= med);
    cr_assert(cJSON_IsString(cJSON_GetObjectItem(rf, "measured_floor")), "needs a GPU, said");
    cr_assert_eq(access(svg, R_OK), 0, "the plot was written");
    cr_assert(python_xml_ok(svg));
    cJSON_Delete(o);
    free(out);
    /* text form: labelled, never called a GPU figure */
    const char *text[] = {"bench", prog, "--cert", cert, "--weights", FIXTURE "model.safetensors",
                          "--steps", "4", "--repeats", "3", "--cpu"};
    cr_assert_eq(run_captured(cmd_bench, text, 11, &out), AMK_EXIT_OK);
    cr_assert(strstr(out, "latency per token [cpu-reference]: median"), "%s", out);
    cr_assert(strstr(out, "not a GPU figure"), "%s", out);
    cr_assert(strstr(out, "correctness: PASS"), "%s", out);
    free(out);
    unlink(prog);
    unlink(cert);
    unlink(svg);
}

Test(bench_cli, refuses_a_missing_or_mismatched_certificate)
{
    const char *prog = "/tmp/amk_test_bench_cert.json", *cert = "/tmp/amk_test_bench_cert.cert.json",
               *other = "/tmp/amk_test_bench_other.json";
    lower_fixture(prog, cert, false);
    lower_fixture(other, NULL, true);   /* another program: SAMPLE_ARGMAX appended */
    const char *none[] = {"bench", prog, "--weights", FIXTURE "model.safetensors"};
    char *out = NULL;
    cr_assert_eq(run_captured(cmd_bench, none, 4, &out), AMK_EXIT_MALFORMED);
    cr_assert_null(strstr(out, "latency"), "nothing timed: %s", out);
    free(out);
    const char *gone[] = {"bench", prog, "--cert", "/tmp/amk_no_such_cert.json", "--weights",
                          FIXTURE "model.safetensors"};
    cr_assert_eq(run_captured(cmd_bench, gone, 6, NULL), AMK_EXIT_MALFORMED);
    const char *wrong[] = {"bench", other, "--cert", cert, "--weights",
                           FIXTURE "model.safetensors", "--json"};
    cr_assert_eq(run_captured(cmd_bench, wrong, 7, &out), AMK_EXIT_REFUTED);
    cr_assert(strstr(out, "REFUSED"), "%s", out);
    cr_assert_null(strstr(out, "latency"), "%s", out);
    free(out);
    /* a truncated certificate is unreadable input (exit 2), not a certificate that fails */
    const char *trunc = "/tmp/amk_test_bench_trunc.cert.json";
    FILE *f = fopen(trunc, "w");
    fputs("{\"kind\": \"amk-verify-certif", f);
    fclose(f);
    const char *cut[] = {"bench", prog, "--cert", trunc, "--weights", FIXTURE "model.safetensors"};
    cr_assert_eq(run_captured(cmd_bench, cut, 6, NULL), AMK_EXIT_MALFORMED);
    unlink(trunc);
    unlink(prog);
    unlink(cert);
    unlink(other);
}

/* The eager side from a different model (rms_norm_eps 0.5): the gate FAILs, so no latency is
 * printed, only the reason. */
Test(bench_cli, no_pass_means_no_latency)
{
    const char *prog = "/tmp/amk_test_bench_fail.json", *cert = "/tmp/amk_test_bench_fail.cert.json",
               *cfg = "/tmp/amk_test_bench_fail_config.json";
    lower_fixture(prog, cert, false);
    FILE *in = fopen(FIXTURE "config.json", "r");
    cr_assert_not_null(in);
    char text[8192];
    size_t n = fread(text, 1, sizeof text - 1, in);
    fclose(in);
    text[n] = 0;
    char *at = strstr(text, "\"rms_norm_eps\": 1e-05");
    cr_assert_not_null(at);
    FILE *f = fopen(cfg, "w");
    fwrite(text, 1, (size_t)(at - text), f);
    fputs("\"rms_norm_eps\": 0.5", f);
    fputs(at + strlen("\"rms_norm_eps\": 1e-05"), f);
    fclose(f);
    const char *args[] = {"bench", prog, "--cert", cert, "--weights", FIXTURE "model.safetensors",
                          "--steps", "4", "--repeats", "3", "--model", cfg, "--json", "--cpu"};
    char *out = NULL;
    cr_assert_eq(run_captured(cmd_bench, args, 14, &out), AMK_EXIT_REFUTED, "%s", out);
    cJSON *o = cJSON_Parse(out);
    cr_assert_not_null(o, "%s", out);
    cr_assert(cJSON_IsNull(cJSON_GetObjectItem(o, "latency_us_per_token")));
    cr_assert_null(cJSON_GetObjectItem(o, "samples_us"));
    cr_assert(strstr(cJSON_GetObjectItem(o, "withheld")->valuestring, "correctness"));
    cr_assert_str_eq(cJSON_GetObjectItem(cJSON_GetObjectItem(o, "correctness"), "verdict")
                         ->valuestring, "FAIL");
    cJSON_Delete(o);
    free(out);
    unlink(prog);
    unlink(cert);
    unlink(cfg);
}
