/*
 * cmd_audit.c - `amk audit CLAIM.json`: audit a speedup claim against its own numbers, and
 * `amk audit --rerun A B ...`: measure the claim "B is faster than A" on the GPU here, then audit
 * that (SPEC.md section 14). Exit 0 CONFIRMED, 1 REFUTED (or a program refused), 3 UNSUPPORTED
 * (cannot decide), 2 for a malformed claim, bad usage or (--rerun) no GPU megakernel.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "bench/bench_run.h"
#include "tools/cmd.h"
#include "verify/verify.h"

static int cmd_audit_rerun(int argc, char **argv);

static void usage(FILE *f)
{
    fprintf(f,
            "usage: amk audit CLAIM.json [--json] [--seed N] [--resamples N]\n"
            "       amk audit --rerun A.json B.json --cert-a CA --cert-b CB --weights W [options]\n"
            "       (--rerun needs a GPU megakernel build and a GPU; amk audit --rerun --help)\n"
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

static cJSON *audit_json(const bench_claim *c, const bench_audit_result *r)
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
    return o;
}

static void print_json(const bench_claim *c, const bench_audit_result *r)
{
    cJSON *o = audit_json(c, r);
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

/* ---------------------------------------------------------------- --rerun */

static void rerun_usage(FILE *f)
{
    fprintf(f,
            "usage: amk audit --rerun A.json B.json --cert-a CA --cert-b CB --weights W\n"
            "                 [--steps N] [--repeats R] [--warmup W] [--claimed-speedup X]\n"
            "                 [--name S] [--device D] [--seed N] [--resamples N] [--json]\n"
            "\n"
            "Measure the claim \"B is X times faster than A\" here and audit it. Both programs must\n"
            "come with certificates that check (amk cert check). On the GPU each is run by the\n"
            "megakernel, interleaved A B A B (warm-up pairs first), every timed step of both\n"
            "checked against reference VM logits of its own program (computed once, same input\n"
            "tokens for both; tolerance %g). The samples become a claim: baseline = A,\n"
            "candidate = B, device = the GPU's built-in target (else A's target), weight bytes =\n"
            "the smaller of the two programs', floor bandwidth = min(spec, measured streaming\n"
            "read), correctness PASS only when both sides passed (a side that failed contributes\n"
            "no samples), shapes = each program's model shape. The audit rules of amk audit\n"
            "decide; without --claimed-speedup the claim is the measured median ratio itself.\n"
            "\n"
            "  --cert-a CA, --cert-b CB   certificates of A and B (required)\n"
            "  --weights W        safetensors weights both programs bind\n"
            "  --steps N          tokens per repeat, positions 0..N-1 (default 16)\n"
            "  --repeats R        timed repeats per side (default 10)\n"
            "  --warmup W         untimed (still gated) pairs first (default 1)\n"
            "  --claimed-speedup X  the claim to audit, median(A) / median(B)\n"
            "  --name S           name of the claim (default \"A vs B\")\n"
            "  --device D         CUDA device ordinal (default 0)\n"
            "  --seed N, --resamples N  bootstrap settings (defaults %u, %d)\n"
            "  --json             the amk audit JSON object plus a \"rerun\" object\n"
            "\n"
            "exit: 0 CONFIRMED, 1 REFUTED or a program refused (certificate, residency, CUDA\n"
            "error), 3 UNSUPPORTED, 2 bad usage, malformed input, or no GPU megakernel here\n"
            "(a build without CUDA, or no device).\n",
            REFVM_GATE_REL_TOL, (unsigned)BENCH_BOOTSTRAP_SEED, BENCH_BOOTSTRAP_RESAMPLES);
}

typedef struct {
    const char *prog[2], *cert[2], *weights, *name;
    int64_t steps;
    int repeats, warmup, device, resamples;
    uint64_t seed;
    double claimed;
    bool json;
} rerun_args;

static int rerun_parse(int argc, char **argv, rerun_args *a)
{
    memset(a, 0, sizeof *a);
    a->steps = 16;
    a->repeats = 10;
    a->warmup = 1;
    a->seed = BENCH_BOOTSTRAP_SEED;
    a->resamples = BENCH_BOOTSTRAP_RESAMPLES;
    int n_prog = 0;
    static const struct {
        const char *flag;
        long long lo, hi;
    } ints[] = {{"--steps", 1, 1000000}, {"--repeats", 1, 100000}, {"--warmup", 0, 100000},
                {"--device", 0, 1023},   {"--resamples", 100, 10000000},
                {"--seed", 0, 0x7fffffffffffffffLL}};
    for (int i = 1; i < argc; i++) {
        const char *k = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        int which = -1;
        for (int j = 0; j < (int)(sizeof ints / sizeof ints[0]); j++)
            if (!strcmp(k, ints[j].flag))
                which = j;
        if (!strcmp(k, "--help") || !strcmp(k, "-h")) {
            rerun_usage(stdout);
            return -1;
        } else if (!strcmp(k, "--rerun")) {
            continue;
        } else if (!strcmp(k, "--json")) {
            a->json = true;
        } else if (!strcmp(k, "--cert-a") && v) {
            a->cert[0] = argv[++i];
        } else if (!strcmp(k, "--cert-b") && v) {
            a->cert[1] = argv[++i];
        } else if (!strcmp(k, "--weights") && v) {
            a->weights = argv[++i];
        } else if (!strcmp(k, "--name") && v) {
            a->name = argv[++i];
        } else if (!strcmp(k, "--claimed-speedup") && v) {
            char *end;
            a->claimed = strtod(argv[++i], &end);
            if (*end || !*argv[i] || !(a->claimed > 0) || a->claimed > 1e9) {
                fprintf(stderr, "amk audit: --claimed-speedup must be a number > 0\n");
                return AMK_EXIT_MALFORMED;
            }
        } else if (which >= 0 && v) {
            char *end;
            long long x = strtoll(argv[++i], &end, 10);
            if (*end || !*argv[i] || x < ints[which].lo || x > ints[which].hi) {
                fprintf(stderr, "amk audit: %s must be an integer in [%lld, %lld]\n", k,
                        ints[which].lo, ints[which].hi);
                return AMK_EXIT_MALFORMED;
            }
            switch (which) {
            case 0: a->steps = x; break;
            case 1: a->repeats = (int)x; break;
            case 2: a->warmup = (int)x; break;
            case 3: a->device = (int)x; break;
            case 4: a->resamples = (int)x; break;
            default: a->seed = (uint64_t)x; break;
            }
        } else if (k[0] != '-' && n_prog < 2) {
            a->prog[n_prog++] = k;
        } else {
            fprintf(stderr, "amk audit: unknown or incomplete argument '%s'\n", k);
            rerun_usage(stderr);
            return AMK_EXIT_MALFORMED;
        }
    }
    if (n_prog != 2 || !a->cert[0] || !a->cert[1] || !a->weights) {
        fprintf(stderr, "amk audit: --rerun needs PROGRAM_A PROGRAM_B, --cert-a, --cert-b and "
                "--weights\n");
        rerun_usage(stderr);
        return AMK_EXIT_MALFORMED;
    }
    return 0;
}

/* The whole file as a NUL-terminated malloc'd string (*len bytes), or NULL with err filled. */
static char *read_whole(const char *path, size_t *len, ir_error *err)
{
    char *t = NULL;
    return ir_read_text_file(path, IR_MAX_FILE_BYTES, &t, len, err) == IR_OK ? t : NULL;
}

static void rerun_side_text(const char *side, const char *prog, const bench_run_result *r)
{
    const bench_gate *g = &r->gate;
    printf("%s %s: correctness %s (%lld steps compared with its reference VM, top-1 %lld/%lld, "
           "max rel err %.3g, tolerance %g)", side, prog, g->pass ? "PASS" : "FAIL",
           (long long)g->compared, (long long)g->top1_agree, (long long)g->compared,
           g->max_rel_err, g->tol_rel > 0 ? g->tol_rel : REFVM_GATE_REL_TOL);
    if (r->has_latency)
        printf("; median %.4g us/token (p10 %.4g, p90 %.4g)\n", r->latency.s.median,
               r->latency.s.p10, r->latency.s.p90);
    else
        printf("; %s\n", r->withheld_why);
}

static cJSON *rerun_side_json(const char *prog, const bench_run_result *r)
{
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "program", prog);
    cJSON_AddStringToObject(o, "source", r->label);
    cJSON_AddStringToObject(o, "verdict", r->gate.pass ? "PASS" : "FAIL");
    cJSON_AddNumberToObject(o, "compared", (double)r->gate.compared);
    cJSON_AddNumberToObject(o, "top1_agree", (double)r->gate.top1_agree);
    cJSON_AddNumberToObject(o, "max_abs_err", r->gate.max_abs_err);
    cJSON_AddNumberToObject(o, "max_rel_err", r->gate.max_rel_err);
    cJSON_AddNumberToObject(o, "tol_rel", r->gate.tol_rel);
    if (!r->gate.pass)
        cJSON_AddStringToObject(o, "why", r->gate.why);
    if (r->has_latency)
        cJSON_AddNumberToObject(o, "median_us", r->latency.s.median);
    else
        cJSON_AddNullToObject(o, "median_us");
    return o;
}

/* Print a refusal (text on stderr, JSON on stdout) and give its exit code. */
static int rerun_refuse(bool json, const char *status, const char *fmt, const char *a,
                        const char *b, int code)
{
    char why[2048];
    snprintf(why, sizeof why, fmt, a, b);
    fprintf(stderr, "amk audit: %s\n", why);
    if (json) {
        printf("{\"verdict\": null, \"status\": \"%s\", \"why\": ", status);
        cmd_put_json_string(stdout, why);
        printf("}\n");
    }
    return code;
}

static int cmd_audit_rerun(int argc, char **argv)
{
    rerun_args a;
    int rc = rerun_parse(argc, argv, &a);
    if (rc)
        return rc < 0 ? AMK_EXIT_OK : rc;
    ir_error err = {0};
    ir_program *p[2] = {NULL, NULL};
    char *cert[2] = {NULL, NULL};
    size_t cert_len[2] = {0, 0};
    lower_model m[2];
    refvm_st *st = NULL;
    bench_reference ref[2];
    memset(ref, 0, sizeof ref);
    bench_gpu *g[2] = {NULL, NULL};
    bench_ab_result ab;
    memset(&ab, 0, sizeof ab);
    bench_claim claim;
    memset(&claim, 0, sizeof claim);
    int exit_code = AMK_EXIT_OK;
    ir_status s = IR_OK;
    static const char *const label[2] = {"gpu-megakernel A", "gpu-megakernel B"};
    char device[256] = "", why[256] = "", name[600];

    for (int i = 0; i < 2; i++) {
        if ((s = ir_read_file(a.prog[i], NULL, &p[i], &err)) != IR_OK)
            goto fail;
        if (!(cert[i] = read_whole(a.cert[i], &cert_len[i], &err))) {
            s = err.status;
            goto fail;
        }
        ir_status cs = verify_cert_check(cert[i], cert_len[i], p[i], &err);
        if (cs != IR_OK && cs != IR_ERR_MALFORMED) {
            cmd_error_in_file(&err, a.cert[i]);   /* not a certificate at all: exit 2 */
            s = cs;
            goto fail;
        }
        if (cs != IR_OK) {
            char what[700];
            snprintf(what, sizeof what, "%.200s: %.400s", err.where, err.why);
            exit_code = rerun_refuse(a.json, "REFUSED", "refusing to measure %s: its "
                                     "certificate does not check (%s)", a.prog[i], what,
                                     AMK_EXIT_REFUTED);
            goto done;
        }
    }
    if (!bench_gpu_available(device, sizeof device, why, sizeof why)) {
        exit_code = rerun_refuse(a.json, mk_have_cuda() ? "NO_DEVICE" : "NO_CUDA",
                                 mk_have_cuda() ? "--rerun needs a GPU: %s; nothing was measured%s"
                                 : "--rerun needs a GPU megakernel build: %s; nothing was "
                                   "measured%s", why, "", AMK_EXIT_MALFORMED);
        goto done;
    }
    for (int i = 0; i < 2; i++)
        if ((s = lower_model_from_meta(p[i], &m[i], &err)) != IR_OK)
            goto fail;
    if ((s = refvm_st_open(a.weights, &st, &err)) != IR_OK)
        goto fail;
    /* B's reference is fed A's tokens, so both sides decode the very same inputs */
    for (int i = 0; i < 2; i++)
        if ((s = bench_reference_compute(p[i], st, m[i].tie_embeddings, a.steps,
                                         i ? ref[0].tokens : NULL, &ref[i], &err)) != IR_OK)
            goto fail;
    for (int i = 0; i < 2; i++) {
        mk_status ls = MK_OK;
        if ((s = bench_gpu_new(p[i], cert[i], cert_len[i], a.weights, m[i].tie_embeddings,
                               a.device, &ref[i], label[i], &g[i], &ls, &err)) != IR_OK) {
            if (ls == MK_OK)
                goto fail;
            char what[900];
            snprintf(what, sizeof what, "%s at %.200s: %.400s", mk_status_name(ls), err.where,
                     err.why);
            exit_code = rerun_refuse(a.json, mk_status_name(ls), "the megakernel did not load "
                                     "%s: %s", a.prog[i], what,
                                     ls == MK_REFUSED || ls == MK_CUDA_ERROR ? AMK_EXIT_REFUTED
                                                                             : AMK_EXIT_MALFORMED);
            goto done;
        }
    }
    const char *own = bench_target_for_device(device);
    const ir_target *t = own ? ir_target_builtin(own) : p[0]->has_target ? &p[0]->target : NULL;
    if (!t || !ir_target_builtin(t->name) || !(t->hbm_bandwidth_gbs > 0)) {
        s = ir_fail(&err, IR_ERR_UNSUPPORTED, "device", "%s is not a built-in target and "
                    "program A names none with a spec bandwidth", device);
        goto fail;
    }
    int64_t wb = ir_weight_bytes(p[0]) < ir_weight_bytes(p[1]) ? ir_weight_bytes(p[0])
                                                               : ir_weight_bytes(p[1]);
    bench_timing_source src[2] = {bench_gpu_source(g[0]), bench_gpu_source(g[1])};
    bench_ab_opts o;
    bench_ab_opts_default(&o);
    o.run = (bench_run_opts){.steps = a.steps, .repeats = a.repeats, .warmup = a.warmup,
                             .weight_bytes = wb, .spec_bandwidth_gbs = t->hbm_bandwidth_gbs};
    o.resamples = a.resamples;
    o.seed = a.seed;
    if ((s = bench_ab_run(&src[0], &src[1], &o, &ab, &err)) != IR_OK)
        goto fail;
    int rank[2] = {7, 7};
    int64_t dims[2][7];
    for (int i = 0; i < 2; i++) {
        int64_t d[7] = {m[i].n_layers, m[i].hidden, m[i].intermediate, m[i].n_heads,
                        m[i].n_kv_heads, m[i].head_dim, m[i].vocab};
        memcpy(dims[i], d, sizeof d);
    }
    const int64_t *dimp[2] = {dims[0], dims[1]};
    snprintf(name, sizeof name, "%.280s vs %.280s", a.prog[0], a.prog[1]);
    if ((s = bench_claim_from_ab(&ab, a.name ? a.name : name, t->name, wb, t->hbm_bandwidth_gbs,
                                 a.claimed, 2, rank, dimp, &claim, &err)) != IR_OK)
        goto fail;
    bench_audit_opts ao;
    bench_audit_opts_default(&ao);
    ao.seed = a.seed;
    ao.resamples = a.resamples;
    bench_audit_result r;
    if ((s = bench_audit(&claim, &ao, &r, &err)) != IR_OK)
        goto fail;
    const bench_run_result *ra = &ab.baseline, *rb = &ab.candidate;
    if (a.json) {
        cJSON *o = audit_json(&claim, &r);
        cJSON *x = cJSON_AddObjectToObject(o, "rerun");
        cJSON_AddStringToObject(x, "gpu", device);
        cJSON_AddStringToObject(x, "target", t->name);
        cJSON_AddNumberToObject(x, "steps", (double)a.steps);
        cJSON_AddNumberToObject(x, "repeats", a.repeats);
        cJSON_AddNumberToObject(x, "warmup", a.warmup);
        cJSON_AddStringToObject(x, "order", "interleaved: A, B, A, B, ...");
        cJSON_AddNumberToObject(x, "spec_bandwidth_gbs", t->hbm_bandwidth_gbs);
        if (ra->has_measured_bw)
            cJSON_AddNumberToObject(x, "measured_bandwidth_gbs", ra->measured_bw_gbs);
        else
            cJSON_AddNullToObject(x, "measured_bandwidth_gbs");
        cJSON_AddBoolToObject(x, "claimed_speedup_given", a.claimed > 0);
        cJSON_AddItemToObject(x, "a", rerun_side_json(a.prog[0], ra));
        cJSON_AddItemToObject(x, "b", rerun_side_json(a.prog[1], rb));
        char *js = cJSON_Print(o);
        if (js)
            printf("%s\n", js);
        cJSON_free(js);
        cJSON_Delete(o);
    } else {
        printf("rerun: %s (A, baseline) vs %s (B, candidate) on %s (target %s), %lld steps x %d "
               "repeats, interleaved A B A B after %d warm-up pair(s)\n", a.prog[0], a.prog[1],
               device, t->name, (long long)a.steps, a.repeats, a.warmup);
        if (ra->has_measured_bw)
            printf("bandwidth: measured %.6g GB/s (streaming read in this run), %s spec %.6g "
                   "GB/s\n", ra->measured_bw_gbs, t->name, t->hbm_bandwidth_gbs);
        rerun_side_text("A", a.prog[0], ra);
        rerun_side_text("B", a.prog[1], rb);
        if (a.claimed <= 0)
            printf("claimed speedup: none given; auditing the measured median ratio\n");
        print_text(&claim, &r);
    }
    exit_code = r.verdict == BENCH_AUDIT_CONFIRMED ? AMK_EXIT_OK
              : r.verdict == BENCH_AUDIT_REFUTED   ? AMK_EXIT_REFUTED : AMK_EXIT_UNKNOWN;
    goto done;
fail:
    if (a.json)
        cmd_print_error_json(&err);
    else
        cmd_print_error("amk audit", &err);
    exit_code = cmd_exit_for(s);
    if (!strcmp(err.where, "cuda"))
        exit_code = AMK_EXIT_REFUTED;
done:
    bench_claim_free(&claim);
    bench_ab_result_free(&ab);
    for (int i = 0; i < 2; i++) {
        bench_gpu_free(g[i]);
        bench_reference_free(&ref[i]);
        ir_program_free(p[i]);
        free(cert[i]);
    }
    refvm_st_close(st);
    return exit_code;
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
            return cmd_audit_rerun(argc, argv);
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
