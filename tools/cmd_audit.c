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

static const char AUDIT_ABOUT[] =
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
    "REFUTED beats UNSUPPORTED; no reason that refutes or unsupports: CONFIRMED.\n";

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

#define STRINGIFY_(x) #x
#define STRINGIFY(x) STRINGIFY_(x)
#define RERUN_TOL STRINGIFY(REFVM_GATE_REL_TOL)

static const char RERUN_ABOUT[] =
    "Measure the claim \"B is X times faster than A\" here and audit it. Both programs must\n"
    "come with certificates that check (amk cert check). On the GPU each is run by the\n"
    "megakernel, interleaved A B A B (warm-up pairs first), every timed step of both\n"
    "checked against reference VM logits of its own program (computed once, same input\n"
    "tokens for both; tolerance " RERUN_TOL "). The samples become a claim: baseline = A,\n"
    "candidate = B, device = the GPU's built-in target (else A's target), weight bytes =\n"
    "the smaller of the two programs', floor bandwidth = min(spec, measured streaming\n"
    "read), correctness PASS only when both sides passed (a side that failed contributes\n"
    "no samples), shapes = each program's model shape. The audit rules of amk audit\n"
    "decide; without --claimed-speedup the claim is the measured median ratio itself.\n";

typedef struct {
    const char *prog[2], *cert[2], *weights, *name;
    int64_t steps;
    int repeats, warmup, device, resamples, n_prog;
    uint64_t seed;
    double claimed;
    bool json, rerun;
} rerun_args;

static int rerun_parse(int argc, char **argv, rerun_args *a)
{
    *a = (rerun_args){.steps = 16, .repeats = 10, .warmup = 1, .seed = BENCH_BOOTSTRAP_SEED,
                      .resamples = BENCH_BOOTSTRAP_RESAMPLES};
    const base_option opts[] = {
        BASE_FLAG("--rerun", &a->rerun, "measure the claim here (this form)"),
        BASE_STR("--cert-a", &a->cert[0], "CA", "certificate of A", .required = true),
        BASE_STR("--cert-b", &a->cert[1], "CB", "certificate of B", .required = true),
        BASE_STR("--weights", &a->weights, "W", "safetensors weights both programs bind",
                 .required = true),
        BASE_I64("--steps", &a->steps, "N", 1, 1000000, "tokens per repeat, positions 0..N-1",
                 .show_default = true),
        BASE_INT("--repeats", &a->repeats, "R", 1, 100000, "timed repeats per side",
                 .show_default = true),
        BASE_INT("--warmup", &a->warmup, "W", 0, 100000, "untimed (still gated) pairs first",
                 .show_default = true),
        BASE_DOUBLE("--claimed-speedup", &a->claimed, "X", 1e-9, 1e9, "the claim to audit, "
                    "median(A) / median(B)"),
        BASE_STR("--name", &a->name, "S", "name of the claim (default \"A vs B\")"),
        BASE_INT("--device", &a->device, "D", 0, 1023, "CUDA device ordinal",
                 .show_default = true),
        BASE_U64("--seed", &a->seed, "N", "bootstrap seed", .show_default = true),
        BASE_INT("--resamples", &a->resamples, "N", 100, 10000000, "bootstrap resamples",
                 .show_default = true),
        BASE_FLAG("--json", &a->json, "the amk audit JSON object plus a \"rerun\" object"),
    };
    const base_cmdline cl = {
        .prog = "amk audit",
        .synopsis = "usage: amk audit --rerun A.json B.json --cert-a CA --cert-b CB --weights W\n"
                    "                 [--steps N] [--repeats R] [--warmup W] "
                    "[--claimed-speedup X]\n"
                    "                 [--name S] [--device D] [--seed N] [--resamples N] "
                    "[--json]\n",
        .about = RERUN_ABOUT, .opts = opts, .n_opts = sizeof opts / sizeof opts[0],
        .pos_name = "PROGRAM_A PROGRAM_B", .min_pos = 2, .max_pos = 2, .pos = a->prog,
        .n_pos = &a->n_prog,
        .epilog = "exit: 0 CONFIRMED, 1 REFUTED or a program refused (certificate, residency, "
                  "CUDA\nerror), 3 UNSUPPORTED, 2 bad usage, malformed input, or no GPU "
                  "megakernel here\n(a build without CUDA, or no device).\n",
    };
    return cmd_parse_options(&cl, argc, argv);
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

/* Everything a rerun holds: both programs with their certificates, models, references and
 * loaded megakernels, the shared weights, the A/B measurement and the claim made of it. */
typedef struct {
    rerun_args a;
    ir_program *p[2];
    char *cert[2];
    size_t cert_len[2];
    lower_model m[2];
    refvm_st *st;
    bench_reference ref[2];
    bench_gpu *g[2];
    bench_ab_result ab;
    bench_claim claim;
    bench_audit_result r;
    const ir_target *t;
    char device[256];
} rerun_state;

static void rerun_free(rerun_state *x)
{
    bench_claim_free(&x->claim);
    bench_ab_result_free(&x->ab);
    for (int i = 0; i < 2; i++) {
        bench_gpu_free(x->g[i]);
        bench_reference_free(&x->ref[i]);
        ir_program_free(x->p[i]);
        free(x->cert[i]);
    }
    refvm_st_close(x->st);
}

/* Both programs and their certificates. CMD_CONTINUE, or the exit code of a refusal (printed);
 * *s an error status for the caller to report. */
static int rerun_load(rerun_state *x, ir_status *s, ir_error *err)
{
    for (int i = 0; i < 2; i++) {
        if ((*s = ir_read_file(x->a.prog[i], NULL, &x->p[i], err)) != IR_OK)
            return CMD_CONTINUE;
        cmd_cert_status cs = cmd_check_cert(x->a.cert[i], x->p[i], &x->cert[i], &x->cert_len[i],
                                            err);
        if (cs == CMD_CERT_UNREADABLE) {
            *s = err->status;
            return CMD_CONTINUE;
        }
        if (cs == CMD_CERT_INVALID) {
            char what[700];
            snprintf(what, sizeof what, "%.200s: %.400s", err->where, err->why);
            return rerun_refuse(x->a.json, "REFUSED", "refusing to measure %s: its certificate "
                                "does not check (%s)", x->a.prog[i], what, AMK_EXIT_REFUTED);
        }
    }
    return CMD_CONTINUE;
}

/* References (B fed A's tokens, so both sides decode the very same inputs) and both
 * megakernels. CMD_CONTINUE, or the exit code of a refusal (printed); *s as rerun_load. */
static int rerun_prepare(rerun_state *x, ir_status *s, ir_error *err)
{
    static const char *const label[2] = {"gpu-megakernel A", "gpu-megakernel B"};
    for (int i = 0; i < 2; i++)
        if ((*s = lower_model_from_meta(x->p[i], &x->m[i], err)) != IR_OK)
            return CMD_CONTINUE;
    if ((*s = refvm_st_open(x->a.weights, &x->st, err)) != IR_OK)
        return CMD_CONTINUE;
    for (int i = 0; i < 2; i++)
        if ((*s = bench_reference_compute(x->p[i], x->st, x->m[i].tie_embeddings, x->a.steps,
                                          i ? x->ref[0].tokens : NULL, &x->ref[i], err)) != IR_OK)
            return CMD_CONTINUE;
    for (int i = 0; i < 2; i++) {
        mk_status ls = MK_OK;
        *s = bench_gpu_new(x->p[i], x->cert[i], x->cert_len[i], x->a.weights,
                           x->m[i].tie_embeddings, x->a.device, &x->ref[i], label[i], &x->g[i],
                           &ls, err);
        if (*s != IR_OK && ls != MK_OK) {
            char what[900];
            snprintf(what, sizeof what, "%s at %.200s: %.400s", mk_status_name(ls), err->where,
                     err->why);
            *s = IR_OK;
            return rerun_refuse(x->a.json, mk_status_name(ls), "the megakernel did not load "
                                "%s: %s", x->a.prog[i], what,
                                ls == MK_REFUSED || ls == MK_CUDA_ERROR ? AMK_EXIT_REFUTED
                                                                        : AMK_EXIT_MALFORMED);
        }
        if (*s != IR_OK)
            return CMD_CONTINUE;
    }
    return CMD_CONTINUE;
}

/* Measure A and B interleaved, make the claim of it and audit that. */
static ir_status rerun_measure(rerun_state *x, ir_error *err)
{
    const rerun_args *a = &x->a;
    const char *own = bench_target_for_device(x->device);
    x->t = own ? ir_target_builtin(own) : x->p[0]->has_target ? &x->p[0]->target : NULL;
    if (!x->t || !ir_target_builtin(x->t->name) || !(x->t->hbm_bandwidth_gbs > 0))
        return ir_fail(err, IR_ERR_UNSUPPORTED, "device", "%s is not a built-in target and "
                       "program A names none with a spec bandwidth", x->device);
    int64_t wa = ir_weight_bytes(x->p[0]), wb = ir_weight_bytes(x->p[1]);
    int64_t w = wa < wb ? wa : wb;
    bench_timing_source src[2] = {bench_gpu_source(x->g[0]), bench_gpu_source(x->g[1])};
    bench_ab_opts o;
    bench_ab_opts_default(&o);
    o.run = (bench_run_opts){.steps = a->steps, .repeats = a->repeats, .warmup = a->warmup,
                             .weight_bytes = w, .spec_bandwidth_gbs = x->t->hbm_bandwidth_gbs};
    o.resamples = a->resamples;
    o.seed = a->seed;
    ir_status s = bench_ab_run(&src[0], &src[1], &o, &x->ab, err);
    if (s != IR_OK)
        return s;
    int rank[2] = {7, 7};
    int64_t dims[2][7];
    for (int i = 0; i < 2; i++) {
        const lower_model *m = &x->m[i];
        int64_t d[7] = {m->n_layers, m->hidden, m->intermediate, m->n_heads, m->n_kv_heads,
                        m->head_dim, m->vocab};
        memcpy(dims[i], d, sizeof d);
    }
    const int64_t *dimp[2] = {dims[0], dims[1]};
    char name[600];
    snprintf(name, sizeof name, "%.280s vs %.280s", a->prog[0], a->prog[1]);
    if ((s = bench_claim_from_ab(&x->ab, a->name ? a->name : name, x->t->name, w,
                                 x->t->hbm_bandwidth_gbs, a->claimed, 2, rank, dimp, &x->claim,
                                 err)) != IR_OK)
        return s;
    bench_audit_opts ao;
    bench_audit_opts_default(&ao);
    ao.seed = a->seed;
    ao.resamples = a->resamples;
    return bench_audit(&x->claim, &ao, &x->r, err);
}

static void rerun_print_json(const rerun_state *x)
{
    const bench_run_result *ra = &x->ab.baseline, *rb = &x->ab.candidate;
    cJSON *o = audit_json(&x->claim, &x->r);
    cJSON *j = cJSON_AddObjectToObject(o, "rerun");
    cJSON_AddStringToObject(j, "gpu", x->device);
    cJSON_AddStringToObject(j, "target", x->t->name);
    cJSON_AddNumberToObject(j, "steps", (double)x->a.steps);
    cJSON_AddNumberToObject(j, "repeats", x->a.repeats);
    cJSON_AddNumberToObject(j, "warmup", x->a.warmup);
    cJSON_AddStringToObject(j, "order", "interleaved: A, B, A, B, ...");
    cJSON_AddNumberToObject(j, "spec_bandwidth_gbs", x->t->hbm_bandwidth_gbs);
    if (ra->has_measured_bw)
        cJSON_AddNumberToObject(j, "measured_bandwidth_gbs", ra->measured_bw_gbs);
    else
        cJSON_AddNullToObject(j, "measured_bandwidth_gbs");
    cJSON_AddBoolToObject(j, "claimed_speedup_given", x->a.claimed > 0);
    cJSON_AddItemToObject(j, "a", rerun_side_json(x->a.prog[0], ra));
    cJSON_AddItemToObject(j, "b", rerun_side_json(x->a.prog[1], rb));
    char *js = cJSON_Print(o);
    if (js)
        printf("%s\n", js);
    cJSON_free(js);
    cJSON_Delete(o);
}

static void rerun_print_text(const rerun_state *x)
{
    const rerun_args *a = &x->a;
    const bench_run_result *ra = &x->ab.baseline, *rb = &x->ab.candidate;
    printf("rerun: %s (A, baseline) vs %s (B, candidate) on %s (target %s), %lld steps x %d "
           "repeats, interleaved A B A B after %d warm-up pair(s)\n", a->prog[0], a->prog[1],
           x->device, x->t->name, (long long)a->steps, a->repeats, a->warmup);
    if (ra->has_measured_bw)
        printf("bandwidth: measured %.6g GB/s (streaming read in this run), %s spec %.6g "
               "GB/s\n", ra->measured_bw_gbs, x->t->name, x->t->hbm_bandwidth_gbs);
    rerun_side_text("A", a->prog[0], ra);
    rerun_side_text("B", a->prog[1], rb);
    if (a->claimed <= 0)
        printf("claimed speedup: none given; auditing the measured median ratio\n");
    print_text(&x->claim, &x->r);
}

static int exit_for_verdict(bench_audit_verdict v)
{
    return v == BENCH_AUDIT_CONFIRMED ? AMK_EXIT_OK
         : v == BENCH_AUDIT_REFUTED   ? AMK_EXIT_REFUTED : AMK_EXIT_UNKNOWN;
}

/* The steps of a rerun; CMD_CONTINUE with *s set when an error is left to report. */
static int rerun_steps(rerun_state *x, ir_status *s, ir_error *err)
{
    char why[256] = "";
    int rc = rerun_load(x, s, err);
    if (rc != CMD_CONTINUE || *s != IR_OK)
        return rc;
    if (!bench_gpu_available(x->device, sizeof x->device, why, sizeof why))
        return rerun_refuse(x->a.json, mk_have_cuda() ? "NO_DEVICE" : "NO_CUDA",
                            mk_have_cuda() ? "--rerun needs a GPU: %s; nothing was measured%s"
                            : "--rerun needs a GPU megakernel build: %s; nothing was "
                              "measured%s", why, "", AMK_EXIT_MALFORMED);
    rc = rerun_prepare(x, s, err);
    if (rc != CMD_CONTINUE || *s != IR_OK)
        return rc;
    if ((*s = rerun_measure(x, err)) != IR_OK)
        return CMD_CONTINUE;
    if (x->a.json)
        rerun_print_json(x);
    else
        rerun_print_text(x);
    return exit_for_verdict(x->r.verdict);
}

static int cmd_audit_rerun(int argc, char **argv)
{
    rerun_state x;
    memset(&x, 0, sizeof x);
    int rc = rerun_parse(argc, argv, &x.a);
    if (rc != CMD_CONTINUE)
        return rc;
    ir_error err = {0};
    ir_status s = IR_OK;
    rc = rerun_steps(&x, &s, &err);
    if (rc == CMD_CONTINUE) {
        cmd_report_error("amk audit", x.a.json, &err);
        rc = strcmp(err.where, "cuda") ? cmd_exit_for(s) : AMK_EXIT_REFUTED;
    }
    rerun_free(&x);
    return rc;
}

int cmd_audit(int argc, char **argv)
{
    for (int i = 1; i < argc; i++)
        if (!strcmp(argv[i], "--rerun"))
            return cmd_audit_rerun(argc, argv);
    const char *path = NULL;
    bool json = false, rerun = false;
    bench_audit_opts o;
    bench_audit_opts_default(&o);
    char about[1600];
    snprintf(about, sizeof about, AUDIT_ABOUT, BENCH_AUDIT_MIN_SAMPLES);
    const base_option opts[] = {
        BASE_FLAG("--json", &json, "one JSON object on stdout"),
        BASE_U64("--seed", &o.seed, "N", "bootstrap seed", .show_default = true),
        BASE_INT("--resamples", &o.resamples, "N", 100, 10000000, "bootstrap resamples",
                 .show_default = true),
        BASE_FLAG("--rerun", &rerun, "measure a claim here (amk audit --rerun --help)"),
    };
    const base_cmdline cl = {
        .prog = "amk audit",
        .synopsis = "usage: amk audit CLAIM.json [--json] [--seed N] [--resamples N]\n"
                    "       amk audit --rerun A.json B.json --cert-a CA --cert-b CB --weights W "
                    "[options]\n"
                    "       (--rerun needs a GPU megakernel build and a GPU; amk audit --rerun "
                    "--help)\n",
        .about = about, .opts = opts, .n_opts = sizeof opts / sizeof opts[0],
        .pos_name = "CLAIM.json", .min_pos = 1, .max_pos = 1, .pos = &path,
        .epilog = "exit: 0 CONFIRMED, 1 REFUTED, 3 UNSUPPORTED, 2 malformed claim or bad usage.\n",
    };
    int rc = cmd_parse_options(&cl, argc, argv);
    if (rc != CMD_CONTINUE)
        return rc;
    ir_error err = {0};
    bench_claim c;
    bench_audit_result r;
    ir_status s = bench_claim_read_file(path, &c, &err);
    if (s == IR_OK)
        s = bench_audit(&c, &o, &r, &err);
    if (s != IR_OK) {
        cmd_report_error("amk audit", json, &err);
        bench_claim_free(&c);
        return cmd_exit_for(s);
    }
    if (json)
        print_json(&c, &r);
    else
        print_text(&c, &r);
    bench_claim_free(&c);
    return exit_for_verdict(r.verdict);
}
