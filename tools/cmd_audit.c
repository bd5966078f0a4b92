/*
 * cmd_audit.c - `amk audit CLAIM.json`: audit a speedup claim against its own numbers
 * (SPEC.md section 14). Exit 0 CONFIRMED, 1 REFUTED, 3 UNSUPPORTED (cannot decide), 2 for a
 * malformed claim or bad usage.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "bench/bench.h"
#include "tools/cmd.h"

static void usage(FILE *f)
{
    fprintf(f,
            "usage: amk audit CLAIM.json [--json] [--seed N] [--resamples N]\n"
            "       amk audit --rerun PROGRAM_A PROGRAM_B ...   (needs a GPU megakernel build)\n"
            "\n"
            "Audit a speedup claim (format: SPEC.md 14.2) against its own measurements. Every\n"
            "rule runs and every reason is reported by id:\n"
            "  correctness_not_pass    correctness.status is not PASS            -> UNSUPPORTED\n"
            "  candidate_below_floor   a candidate sample < weight_bytes/bandwidth -> REFUTED\n"
            "  baseline_below_floor    a baseline sample below that floor         -> REFUTED\n"
            "  shapes_differ           benchmark shapes != verification shapes    -> UNSUPPORTED\n"
            "  too_few_samples         fewer than %d samples on a side             -> UNSUPPORTED\n"
            "  claim_outside_ci        claimed speedup outside the bootstrap 95%% CI\n"
            "                          of median(baseline)/median(candidate)      -> REFUTED\n"
            "  claim_within_ci, no_significant_speedup (CI includes 1.0): notes\n"
            "REFUTED beats UNSUPPORTED; no reason that refutes or unsupports: CONFIRMED.\n"
            "\n"
            "  --json          one JSON object on stdout\n"
            "  --seed N        bootstrap seed (default %u)\n"
            "  --resamples N   bootstrap resamples (default %d)\n"
            "\n"
            "exit: 0 CONFIRMED, 1 REFUTED, 3 UNSUPPORTED, 2 malformed claim or bad usage.\n",
            BENCH_AUDIT_MIN_SAMPLES, (unsigned)BENCH_BOOTSTRAP_SEED, BENCH_BOOTSTRAP_RESAMPLES);
}

static cJSON *side_json(const bench_latency *l, int n)
{
    cJSON *o = cJSON_CreateObject();
    cJSON_AddNumberToObject(o, "n", n);
    cJSON_AddNumberToObject(o, "below_floor", l->n_below_floor);
    if (l->reported) {
        cJSON_AddNumberToObject(o, "median_us", l->s.median);
        cJSON_AddNumberToObject(o, "p10_us", l->s.p10);
        cJSON_AddNumberToObject(o, "p90_us", l->s.p90);
        cJSON_AddNullToObject(o, "withheld");
    } else {
        cJSON_AddNullToObject(o, "median_us");
        cJSON_AddStringToObject(o, "withheld", n ? l->why : "no samples");
    }
    return o;
}

static void print_json(const bench_claim *c, const bench_audit_result *r)
{
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "verdict", bench_audit_verdict_name(r->verdict));
    cJSON_AddStringToObject(o, "name", c->name);
    cJSON_AddStringToObject(o, "device", c->device);
    cJSON_AddNumberToObject(o, "weight_bytes", (double)c->weight_bytes);
    cJSON_AddNumberToObject(o, "bandwidth_gbs", r->bandwidth_gbs);
    cJSON_AddStringToObject(o, "bandwidth_source", c->has_bandwidth ? "claim" : "target spec");
    cJSON_AddNumberToObject(o, "floor_us", r->floor_us);
    cJSON_AddItemToObject(o, "baseline", side_json(&r->baseline, c->n_baseline));
    cJSON_AddItemToObject(o, "candidate", side_json(&r->candidate, c->n_candidate));
    cJSON_AddNumberToObject(o, "claimed_speedup", c->claimed_speedup);
    if (r->has_ci) {
        cJSON_AddNumberToObject(o, "measured_speedup", r->ci.estimate);
        cJSON *ci = cJSON_CreateObject();
        cJSON_AddNumberToObject(ci, "level", r->ci.level);
        cJSON_AddNumberToObject(ci, "lo", r->ci.lo);
        cJSON_AddNumberToObject(ci, "hi", r->ci.hi);
        cJSON_AddNumberToObject(ci, "resamples", r->ci.resamples);
        cJSON_AddNumberToObject(ci, "seed", (double)r->ci.seed);
        cJSON_AddItemToObject(o, "ci", ci);
    } else {
        cJSON_AddNullToObject(o, "measured_speedup");
        cJSON_AddNullToObject(o, "ci");
    }
    cJSON *rs = cJSON_AddArrayToObject(o, "reasons");
    for (int i = 0; i < r->n_reasons; i++) {
        cJSON *x = cJSON_CreateObject();
        cJSON_AddStringToObject(x, "id", bench_audit_reason_id(r->reasons[i].id));
        cJSON_AddStringToObject(x, "effect", bench_audit_effect_name(r->reasons[i].effect));
        cJSON_AddStringToObject(x, "message", r->reasons[i].message);
        cJSON_AddItemToArray(rs, x);
    }
    char *s = cJSON_Print(o);
    if (s)
        printf("%s\n", s);
    cJSON_free(s);
    cJSON_Delete(o);
}

static void print_side(const char *what, const bench_latency *l, int n)
{
    if (!n)
        printf("%-10s no samples\n", what);
    else if (l->reported)
        printf("%-10s %d samples, median %.6g us (p10 %.6g, p90 %.6g)\n", what, n, l->s.median,
               l->s.p10, l->s.p90);
    else
        printf("%-10s %d samples, %s\n", what, n, l->why);
}

static void print_text(const bench_claim *c, const bench_audit_result *r)
{
    printf("claim: %s on %s\n", c->name, c->device);
    printf("floor: %.6g us = %lld weight bytes / %.6g GB/s (%s)\n", r->floor_us,
           (long long)c->weight_bytes, r->bandwidth_gbs,
           c->has_bandwidth ? "bandwidth from the claim" : "target spec bandwidth");
    print_side("baseline:", &r->baseline, c->n_baseline);
    print_side("candidate:", &r->candidate, c->n_candidate);
    if (r->has_ci)
        printf("speedup: measured %.4gx, %g%% CI [%.4g, %.4g] (%d resamples, seed %llu); "
               "claimed %.4gx\n", r->ci.estimate, 100 * r->ci.level, r->ci.lo, r->ci.hi,
               r->ci.resamples, (unsigned long long)r->ci.seed, c->claimed_speedup);
    else
        printf("speedup: no interval (see reasons); claimed %.4gx\n", c->claimed_speedup);
    printf("reasons:\n");
    for (int i = 0; i < r->n_reasons; i++)
        printf("  [%s] %s: %s\n", bench_audit_effect_name(r->reasons[i].effect),
               bench_audit_reason_id(r->reasons[i].id), r->reasons[i].message);
    if (!r->n_reasons)
        printf("  (none)\n");
    printf("verdict: %s\n", bench_audit_verdict_name(r->verdict));
}

int cmd_audit(int argc, char **argv)
{
    const char *path = NULL;
    bool json = false;
    bench_audit_opts o;
    bench_audit_opts_default(&o);
    for (int i = 1; i < argc; i++) {
        const char *k = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        char *end;
        if (!strcmp(k, "--help") || !strcmp(k, "-h")) {
            usage(stdout);
            return AMK_EXIT_OK;
        } else if (!strcmp(k, "--rerun")) {
            fprintf(stderr, "amk audit: --rerun needs a GPU megakernel build: it re-measures "
                    "both programs side by side on a GPU, and this build has no megakernel "
                    "launcher (megakernel/ was not built with nvcc)\n");
            return AMK_EXIT_MALFORMED;
        } else if (!strcmp(k, "--json")) {
            json = true;
        } else if (!strcmp(k, "--seed") && v) {
            o.seed = strtoull(v, &end, 0);
            if (*end || !*v || *v == '-') {
                fprintf(stderr, "amk audit: --seed takes a non-negative integer\n");
                return AMK_EXIT_MALFORMED;
            }
            i++;
        } else if (!strcmp(k, "--resamples") && v) {
            long n = strtol(v, &end, 10);
            if (*end || !*v || n < 100 || n > 10000000) {
                fprintf(stderr, "amk audit: --resamples must be an integer in [100, 10000000]\n");
                return AMK_EXIT_MALFORMED;
            }
            o.resamples = (int)n;
            i++;
        } else if (k[0] != '-' && !path) {
            path = k;
        } else {
            fprintf(stderr, "amk audit: unknown or incomplete argument '%s'\n", k);
            usage(stderr);
            return AMK_EXIT_MALFORMED;
        }
    }
    if (!path) {
        fprintf(stderr, "amk audit: CLAIM.json is required\n");
        usage(stderr);
        return AMK_EXIT_MALFORMED;
    }
    ir_error err = {0};
    bench_claim c;
    bench_audit_result r;
    ir_status s = bench_claim_read_file(path, &c, &err);
    if (s == IR_OK)
        s = bench_audit(&c, &o, &r, &err);
    if (s != IR_OK) {
        if (json)
            cmd_print_error_json(&err);
        else
            cmd_print_error("amk audit", &err);
        bench_claim_free(&c);
        return cmd_exit_for(s);
    }
    if (json)
        print_json(&c, &r);
    else
        print_text(&c, &r);
    bench_claim_free(&c);
    return r.verdict == BENCH_AUDIT_CONFIRMED ? AMK_EXIT_OK
         : r.verdict == BENCH_AUDIT_REFUTED   ? AMK_EXIT_REFUTED : AMK_EXIT_UNKNOWN;
}
