/*
 * audit.c - `amk audit`: read a speedup claim and decide whether its own numbers support it.
 *
 * Every rule runs and every reason that applies is kept; only then is the verdict decided.
 * REFUTED (the numbers contradict the claim: an impossible sample, or a claimed speedup
 * outside the bootstrap interval of the measured one) beats UNSUPPORTED (the evidence cannot
 * back any claim: no correctness PASS, too few samples, speed measured on other shapes than
 * were verified), because a contradiction stays a contradiction whatever else is missing.
 */
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "bench/bench.h"

/* ---------------------------------------------------------------- parsing */

/* Keys of an object must be among allowed[] (n of them) and appear once. */
static ir_status only_keys(const cJSON *obj, const char *path, const char *const *allowed,
                           int n, ir_error *err)
{
    for (const cJSON *k = obj->child; k; k = k->next) {
        bool known = false;
        for (int i = 0; i < n && !known; i++)
            known = !strcmp(k->string, allowed[i]);
        char where[160];
        snprintf(where, sizeof where, "%s%s%s", path, *path ? "." : "", k->string);
        if (!known)
            return ir_fail(err, IR_ERR_MALFORMED, where, "unknown key '%s'", k->string);
        for (const cJSON *j = obj->child; j != k; j = j->next)
            if (!strcmp(j->string, k->string))
                return ir_fail(err, IR_ERR_MALFORMED, where, "duplicate key '%s'", k->string);
    }
    return IR_OK;
}

static const cJSON *need(const cJSON *obj, const char *key, const char *path, ir_error *err)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, key);
    if (!v) {
        char where[160];
        snprintf(where, sizeof where, "%s%s%s", path, *path ? "." : "", key);
        ir_fail(err, IR_ERR_MALFORMED, where, "missing");
    }
    return v;
}

/* A finite number > 0. */
static ir_status positive(const cJSON *v, const char *where, double *out, ir_error *err)
{
    if (!cJSON_IsNumber(v) || !isfinite(v->valuedouble) || v->valuedouble <= 0)
        return ir_fail(err, IR_ERR_MALFORMED, where, "must be a finite number > 0");
    *out = v->valuedouble;
    return IR_OK;
}

/* {"latency_us": [numbers > 0]} */
static ir_status read_side(const cJSON *root, const char *key, double **out, int *n, ir_error *err)
{
    static const char *const keys[] = {"latency_us"};
    const cJSON *side = need(root, key, "", err);
    if (!side)
        return IR_ERR_MALFORMED;
    if (!cJSON_IsObject(side))
        return ir_fail(err, IR_ERR_MALFORMED, key, "must be an object {\"latency_us\": [...]}");
    ir_status s = only_keys(side, key, keys, 1, err);
    if (s != IR_OK)
        return s;
    const cJSON *lat = need(side, "latency_us", key, err);
    char where[160];
    snprintf(where, sizeof where, "%s.latency_us", key);
    if (!lat)
        return IR_ERR_MALFORMED;
    if (!cJSON_IsArray(lat))
        return ir_fail(err, IR_ERR_MALFORMED, where, "must be an array of numbers");
    int len = cJSON_GetArraySize(lat);
    if (len > BENCH_CLAIM_MAX_SAMPLES)
        return ir_fail(err, IR_ERR_MALFORMED, where, "%d samples: at most %d", len,
                       BENCH_CLAIM_MAX_SAMPLES);
    *out = malloc(sizeof **out * (size_t)(len ? len : 1));
    if (!*out)
        return ir_fail(err, IR_ERR_NOMEM, where, "out of memory");
    *n = 0;
    for (const cJSON *v = lat->child; v; v = v->next) {
        char w[192];
        snprintf(w, sizeof w, "%s[%d]", where, *n);
        if ((s = positive(v, w, &(*out)[*n], err)) != IR_OK)
            return s;
        (*n)++;
    }
    return IR_OK;
}

static ir_status read_shapes(const cJSON *arr, const char *where, bench_shape_list *out,
                             ir_error *err)
{
    if (!cJSON_IsArray(arr))
        return ir_fail(err, IR_ERR_MALFORMED, where, "must be an array of shapes [[int, ...], ...]");
    int n = cJSON_GetArraySize(arr);
    if (n < 1)
        return ir_fail(err, IR_ERR_MALFORMED, where, "must list at least one shape");
    out->rank = calloc((size_t)n, sizeof *out->rank);
    out->dims = calloc((size_t)n, sizeof *out->dims);
    if (!out->rank || !out->dims)
        return ir_fail(err, IR_ERR_NOMEM, where, "out of memory");
    for (const cJSON *sh = arr->child; sh; sh = sh->next) {
        int i = out->n;
        char w[192];
        snprintf(w, sizeof w, "%s[%d]", where, i);
        if (!cJSON_IsArray(sh))
            return ir_fail(err, IR_ERR_MALFORMED, w, "must be an array of integers");
        int r = cJSON_GetArraySize(sh);
        out->dims[i] = malloc(sizeof **out->dims * (size_t)(r ? r : 1));
        if (!out->dims[i])
            return ir_fail(err, IR_ERR_NOMEM, w, "out of memory");
        out->n++;
        int d = 0;
        for (const cJSON *v = sh->child; v; v = v->next, d++) {
            char wd[224];
            snprintf(wd, sizeof wd, "%s[%d]", w, d);
            double x = cJSON_IsNumber(v) ? v->valuedouble : -1;
            if (!cJSON_IsNumber(v) || x < 0 || x > 9007199254740992.0 || x != floor(x))
                return ir_fail(err, IR_ERR_MALFORMED, wd, "must be an integer >= 0");
            out->dims[i][d] = (int64_t)x;
        }
        out->rank[i] = r;
    }
    return IR_OK;
}

static ir_status parse_root(const cJSON *root, bench_claim *c, ir_error *err)
{
    static const char *const keys[] = {"name", "device", "weight_bytes", "bandwidth_gbs",
                                       "baseline", "candidate", "claimed_speedup",
                                       "correctness", "shapes"};
    static const char *const corr_keys[] = {"status", "max_abs_err"};
    static const char *const shape_keys[] = {"benchmark", "verification"};
    if (!cJSON_IsObject(root))
        return ir_fail(err, IR_ERR_MALFORMED, "$", "a claim is a JSON object");
    ir_status s = only_keys(root, "", keys, (int)(sizeof keys / sizeof keys[0]), err);
    if (s != IR_OK)
        return s;
    const cJSON *v;
    if (!(v = need(root, "name", "", err)))
        return IR_ERR_MALFORMED;
    if (!cJSON_IsString(v))
        return ir_fail(err, IR_ERR_MALFORMED, "name", "must be a string");
    if (!(c->name = strdup(v->valuestring)))
        return ir_fail(err, IR_ERR_NOMEM, "name", "out of memory");
    if (!(v = need(root, "device", "", err)))
        return IR_ERR_MALFORMED;
    const ir_target *t = cJSON_IsString(v) ? ir_target_builtin(v->valuestring) : NULL;
    if (!t) {
        char known[256] = "";
        for (int i = 0; i < ir_target_count(); i++)
            snprintf(known + strlen(known), sizeof known - strlen(known), "%s%s", i ? ", " : "",
                     ir_target_at(i)->name);
        return ir_fail(err, IR_ERR_MALFORMED, "device", "must name a built-in target (%s)%s%.60s",
                       known, cJSON_IsString(v) ? ", got " : "",
                       cJSON_IsString(v) ? v->valuestring : "");
    }
    snprintf(c->device, sizeof c->device, "%s", t->name);
    if (!(v = need(root, "weight_bytes", "", err)))
        return IR_ERR_MALFORMED;
    if (!cJSON_IsNumber(v) || v->valuedouble < 1 || v->valuedouble > 9007199254740992.0 ||
        v->valuedouble != floor(v->valuedouble))
        return ir_fail(err, IR_ERR_MALFORMED, "weight_bytes", "must be an integer >= 1");
    c->weight_bytes = (int64_t)v->valuedouble;
    c->bandwidth_gbs = t->hbm_bandwidth_gbs;
    if ((v = cJSON_GetObjectItemCaseSensitive(root, "bandwidth_gbs"))) {
        if ((s = positive(v, "bandwidth_gbs", &c->bandwidth_gbs, err)) != IR_OK)
            return s;
        c->has_bandwidth = true;
        /* A claim may only make the floor stricter: a bandwidth above the target's spec peak
           would lower the floor below what the hardware allows (1e308 would make it 0). */
        if (c->bandwidth_gbs > t->hbm_bandwidth_gbs) {
            c->bandwidth_gbs = t->hbm_bandwidth_gbs;
            c->has_bandwidth = false;          /* the target's spec is what sets the floor */
        }
    }
    if ((s = read_side(root, "baseline", &c->baseline_us, &c->n_baseline, err)) != IR_OK ||
        (s = read_side(root, "candidate", &c->candidate_us, &c->n_candidate, err)) != IR_OK)
        return s;
    if (!(v = need(root, "claimed_speedup", "", err)))
        return IR_ERR_MALFORMED;
    if ((s = positive(v, "claimed_speedup", &c->claimed_speedup, err)) != IR_OK)
        return s;

    const cJSON *corr = need(root, "correctness", "", err);
    if (!corr)
        return IR_ERR_MALFORMED;
    if (!cJSON_IsObject(corr))
        return ir_fail(err, IR_ERR_MALFORMED, "correctness", "must be an object");
    if ((s = only_keys(corr, "correctness", corr_keys, 2, err)) != IR_OK)
        return s;
    if (!(v = need(corr, "status", "correctness", err)))
        return IR_ERR_MALFORMED;
    if (cJSON_IsNull(v))
        c->correctness = BENCH_CORRECTNESS_NULL;
    else if (cJSON_IsString(v) && !strcmp(v->valuestring, "PASS"))
        c->correctness = BENCH_CORRECTNESS_PASS;
    else if (cJSON_IsString(v) && !strcmp(v->valuestring, "FAIL"))
        c->correctness = BENCH_CORRECTNESS_FAIL;
    else
        return ir_fail(err, IR_ERR_MALFORMED, "correctness.status",
                       "must be \"PASS\", \"FAIL\" or null");
    if ((v = cJSON_GetObjectItemCaseSensitive(corr, "max_abs_err"))) {
        if (!cJSON_IsNumber(v) || !isfinite(v->valuedouble) || v->valuedouble < 0)
            return ir_fail(err, IR_ERR_MALFORMED, "correctness.max_abs_err",
                           "must be a finite number >= 0");
        c->has_max_abs_err = true;
        c->max_abs_err = v->valuedouble;
    }

    const cJSON *sh = need(root, "shapes", "", err);
    if (!sh)
        return IR_ERR_MALFORMED;
    if (!cJSON_IsObject(sh))
        return ir_fail(err, IR_ERR_MALFORMED, "shapes", "must be an object");
    if ((s = only_keys(sh, "shapes", shape_keys, 2, err)) != IR_OK)
        return s;
    if (!(v = need(sh, "benchmark", "shapes", err)))
        return IR_ERR_MALFORMED;
    if ((s = read_shapes(v, "shapes.benchmark", &c->bench_shapes, err)) != IR_OK)
        return s;
    if (!(v = need(sh, "verification", "shapes", err)))
        return IR_ERR_MALFORMED;
    return read_shapes(v, "shapes.verification", &c->verify_shapes, err);
}

ir_status bench_claim_parse(const char *text, size_t len, bench_claim *out, ir_error *err)
{
    memset(out, 0, sizeof *out);
    cJSON *root = cJSON_ParseWithLength(text, len);
    if (!root) {
        const char *at = cJSON_GetErrorPtr();
        long off = at && at >= text && at <= text + len ? (long)(at - text) : -1;
        return ir_fail(err, IR_ERR_MALFORMED, "$", "not valid JSON (near byte %ld)", off);
    }
    ir_status s = parse_root(root, out, err);
    cJSON_Delete(root);
    if (s != IR_OK)
        bench_claim_free(out);
    return s;
}

ir_status bench_claim_read_file(const char *path, bench_claim *out, ir_error *err)
{
    memset(out, 0, sizeof *out);
    char *text = NULL;
    size_t len = 0;
    ir_status rs = ir_read_text_file(path, IR_MAX_FILE_BYTES, &text, &len, err);
    if (rs != IR_OK)
        return rs;
    ir_status s = bench_claim_parse(text, len, out, err);
    free(text);
    return s;
}

static void shapes_free(bench_shape_list *l)
{
    for (int i = 0; l->dims && i < l->n; i++)
        free(l->dims[i]);
    free(l->dims);
    free(l->rank);
    memset(l, 0, sizeof *l);
}

void bench_claim_free(bench_claim *c)
{
    if (!c)
        return;
    free(c->name);
    free(c->baseline_us);
    free(c->candidate_us);
    shapes_free(&c->bench_shapes);
    shapes_free(&c->verify_shapes);
    memset(c, 0, sizeof *c);
}

/* ---------------------------------------------------------------- claims from a re-run */

/* n shapes copied into l (l zeroed first). */
static ir_status shapes_copy(bench_shape_list *l, int n, const int *rank,
                             const int64_t *const *dims, ir_error *err)
{
    memset(l, 0, sizeof *l);
    l->rank = calloc((size_t)(n > 0 ? n : 1), sizeof *l->rank);
    l->dims = calloc((size_t)(n > 0 ? n : 1), sizeof *l->dims);
    if (!l->rank || !l->dims)
        return ir_fail(err, IR_ERR_NOMEM, "shapes", "out of memory");
    for (int i = 0; i < n; i++) {
        if (!(l->dims[i] = malloc(sizeof **l->dims * (size_t)(rank[i] > 0 ? rank[i] : 1))))
            return ir_fail(err, IR_ERR_NOMEM, "shapes", "out of memory");
        l->n++;
        l->rank[i] = rank[i];
        if (rank[i] > 0)
            memcpy(l->dims[i], dims[i], sizeof **l->dims * (size_t)rank[i]);
    }
    return IR_OK;
}

/* A side's samples, only when its gate passed: no PASS, no latency. */
static ir_status side_copy(const bench_run_result *r, double **out, int *n, ir_error *err)
{
    *out = NULL;
    *n = 0;
    if (!r->gate.pass || r->n_samples < 1)
        return IR_OK;
    if (!(*out = malloc(sizeof **out * (size_t)r->n_samples)))
        return ir_fail(err, IR_ERR_NOMEM, "claim", "out of memory");
    memcpy(*out, r->samples_us, sizeof **out * (size_t)r->n_samples);
    *n = r->n_samples;
    return IR_OK;
}

ir_status bench_claim_from_ab(const bench_ab_result *r, const char *name, const char *device,
                              int64_t weight_bytes, double spec_bandwidth_gbs,
                              double claimed_speedup, int n_shapes, const int *rank,
                              const int64_t *const *dims, bench_claim *out, ir_error *err)
{
    memset(out, 0, sizeof *out);
    if (!ir_target_builtin(device))
        return ir_fail(err, IR_ERR_MALFORMED, "device", "'%s' is not a built-in target", device);
    if (weight_bytes < 1 || !(spec_bandwidth_gbs > 0) || n_shapes < 1)
        return ir_fail(err, IR_ERR_MALFORMED, "claim", "needs weight bytes >= 1, a spec "
                       "bandwidth > 0 and at least one shape");
    ir_status s;
    if (!(out->name = strdup(name ? name : "re-run")))
        return ir_fail(err, IR_ERR_NOMEM, "name", "out of memory");
    snprintf(out->device, sizeof out->device, "%s", device);
    out->weight_bytes = weight_bytes;
    out->bandwidth_gbs = spec_bandwidth_gbs;
    double meas = r->candidate.has_measured_bw ? r->candidate.measured_bw_gbs
                : r->baseline.has_measured_bw ? r->baseline.measured_bw_gbs : 0;
    if (meas > 0 && meas < spec_bandwidth_gbs) {
        out->has_bandwidth = true;    /* the stricter floor, as bench_run guards with */
        out->bandwidth_gbs = meas;
    }
    if ((s = side_copy(&r->baseline, &out->baseline_us, &out->n_baseline, err)) != IR_OK ||
        (s = side_copy(&r->candidate, &out->candidate_us, &out->n_candidate, err)) != IR_OK)
        goto fail;
    out->claimed_speedup = claimed_speedup > 0 ? claimed_speedup
                         : r->has_speedup ? r->speedup.estimate : 1.0;
    out->correctness = r->baseline.gate.pass && r->candidate.gate.pass ? BENCH_CORRECTNESS_PASS
                                                                       : BENCH_CORRECTNESS_FAIL;
    out->has_max_abs_err = true;
    out->max_abs_err = fmax(r->baseline.gate.max_abs_err, r->candidate.gate.max_abs_err);
    if (!isfinite(out->max_abs_err))
        out->has_max_abs_err = false;
    if ((s = shapes_copy(&out->bench_shapes, n_shapes, rank, dims, err)) != IR_OK ||
        (s = shapes_copy(&out->verify_shapes, n_shapes, rank, dims, err)) != IR_OK)
        goto fail;
    return IR_OK;
fail:
    bench_claim_free(out);
    return s;
}

/* ---------------------------------------------------------------- the rules */

static const struct {
    const char *id;
    bench_audit_effect effect;
} REASONS[BENCH_AUDIT_N_REASONS] = {
    [BENCH_REASON_CORRECTNESS_NOT_PASS] = {"correctness_not_pass", BENCH_EFFECT_UNSUPPORTED},
    [BENCH_REASON_CANDIDATE_BELOW_FLOOR] = {"candidate_below_floor", BENCH_EFFECT_REFUTED},
    [BENCH_REASON_BASELINE_BELOW_FLOOR] = {"baseline_below_floor", BENCH_EFFECT_REFUTED},
    [BENCH_REASON_SHAPES_DIFFER] = {"shapes_differ", BENCH_EFFECT_UNSUPPORTED},
    [BENCH_REASON_TOO_FEW_SAMPLES] = {"too_few_samples", BENCH_EFFECT_UNSUPPORTED},
    [BENCH_REASON_CLAIM_OUTSIDE_CI] = {"claim_outside_ci", BENCH_EFFECT_REFUTED},
    [BENCH_REASON_CLAIM_WITHIN_CI] = {"claim_within_ci", BENCH_EFFECT_NOTE},
    [BENCH_REASON_NO_SIGNIFICANT_SPEEDUP] = {"no_significant_speedup", BENCH_EFFECT_NOTE},
};

const char *bench_audit_reason_id(bench_audit_reason r)
{
    return (unsigned)r < BENCH_AUDIT_N_REASONS ? REASONS[r].id : "unknown";
}

const char *bench_audit_verdict_name(bench_audit_verdict v)
{
    switch (v) {
    case BENCH_AUDIT_CONFIRMED: return "CONFIRMED";
    case BENCH_AUDIT_REFUTED: return "REFUTED";
    case BENCH_AUDIT_UNSUPPORTED: return "UNSUPPORTED";
    }
    return "?";
}

const char *bench_audit_effect_name(bench_audit_effect e)
{
    switch (e) {
    case BENCH_EFFECT_NOTE: return "note";
    case BENCH_EFFECT_UNSUPPORTED: return "unsupported";
    case BENCH_EFFECT_REFUTED: return "refuted";
    }
    return "?";
}

void bench_audit_opts_default(bench_audit_opts *o)
{
    o->resamples = BENCH_BOOTSTRAP_RESAMPLES;
    o->seed = BENCH_BOOTSTRAP_SEED;
    o->level = 0.95;
}

static void add_reason(bench_audit_result *r, bench_audit_reason id, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void add_reason(bench_audit_result *r, bench_audit_reason id, const char *fmt, ...)
{
    bench_audit_finding *f = &r->reasons[r->n_reasons++];
    f->id = id;
    f->effect = REASONS[id].effect;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(f->message, sizeof f->message, fmt, ap);
    va_end(ap);
}

static bool shape_in(const bench_shape_list *l, int rank, const int64_t *dims)
{
    for (int i = 0; i < l->n; i++)
        if (l->rank[i] == rank && !memcmp(l->dims[i], dims, sizeof *dims * (size_t)rank))
            return true;
    return false;
}

/* First shape of a that b lacks, or -1: shapes compare as sets (order and repeats ignored). */
static int shape_missing(const bench_shape_list *a, const bench_shape_list *b)
{
    for (int i = 0; i < a->n; i++)
        if (!shape_in(b, a->rank[i], a->dims[i]))
            return i;
    return -1;
}

static void shape_text(const bench_shape_list *l, int i, char *buf, size_t cap)
{
    size_t n = (size_t)snprintf(buf, cap, "[");
    for (int d = 0; d < l->rank[i] && n < cap; d++)
        n += (size_t)snprintf(buf + n, cap - n, "%s%lld", d ? ", " : "", (long long)l->dims[i][d]);
    if (n < cap)
        snprintf(buf + n, cap - n, "]");
}

ir_status bench_audit(const bench_claim *c, const bench_audit_opts *opts, bench_audit_result *out,
                      ir_error *err)
{
    bench_audit_opts o;
    if (opts)
        o = *opts;
    else
        bench_audit_opts_default(&o);
    if (o.resamples <= 0)
        o.resamples = BENCH_BOOTSTRAP_RESAMPLES;
    if (!(o.level > 0 && o.level < 1))
        o.level = 0.95;
    memset(out, 0, sizeof *out);
    out->bandwidth_gbs = c->bandwidth_gbs;
    out->floor_us = bench_floor_us(c->weight_bytes, c->bandwidth_gbs);
    ir_status s;

    if (c->correctness != BENCH_CORRECTNESS_PASS)
        add_reason(out, BENCH_REASON_CORRECTNESS_NOT_PASS, "correctness status is %s, not PASS: "
                   "a speedup of a result not shown correct supports nothing",
                   c->correctness == BENCH_CORRECTNESS_FAIL ? "FAIL" : "null (not checked)");

    if (c->n_candidate > 0) {
        if ((s = bench_guard_latency(c->candidate_us, c->n_candidate, out->floor_us,
                                     &out->candidate, err)) != IR_OK)
            return s;
        if (out->candidate.n_below_floor)
            add_reason(out, BENCH_REASON_CANDIDATE_BELOW_FLOOR, "%d of %d candidate samples are "
                       "below the roofline floor %.6g us (%lld weight bytes at %.6g GB/s); lowest "
                       "%.6g us: physically impossible", out->candidate.n_below_floor,
                       c->n_candidate, out->floor_us, (long long)c->weight_bytes,
                       c->bandwidth_gbs, out->candidate.lowest_us);
    }
    if (c->n_baseline > 0) {
        if ((s = bench_guard_latency(c->baseline_us, c->n_baseline, out->floor_us,
                                     &out->baseline, err)) != IR_OK)
            return s;
        if (out->baseline.n_below_floor)
            add_reason(out, BENCH_REASON_BASELINE_BELOW_FLOOR, "%d of %d baseline samples are "
                       "below the roofline floor %.6g us; lowest %.6g us: physically impossible",
                       out->baseline.n_below_floor, c->n_baseline, out->floor_us,
                       out->baseline.lowest_us);
    }

    int miss = shape_missing(&c->bench_shapes, &c->verify_shapes);
    int extra = miss < 0 ? shape_missing(&c->verify_shapes, &c->bench_shapes) : -1;
    if (miss >= 0 || extra >= 0) {
        char sh[160];
        if (miss >= 0) {
            shape_text(&c->bench_shapes, miss, sh, sizeof sh);
            add_reason(out, BENCH_REASON_SHAPES_DIFFER, "benchmark shape %s (shapes.benchmark[%d])"
                       " was never verified: the speedup was not measured on what was verified",
                       sh, miss);
        } else {
            shape_text(&c->verify_shapes, extra, sh, sizeof sh);
            add_reason(out, BENCH_REASON_SHAPES_DIFFER, "verified shape %s "
                       "(shapes.verification[%d]) was never benchmarked: the speedup was not "
                       "measured on what was verified", sh, extra);
        }
    }

    bool enough = c->n_baseline >= BENCH_AUDIT_MIN_SAMPLES &&
                  c->n_candidate >= BENCH_AUDIT_MIN_SAMPLES;
    if (!enough)
        add_reason(out, BENCH_REASON_TOO_FEW_SAMPLES, "%d baseline and %d candidate samples: at "
                   "least %d a side are needed for a confidence interval", c->n_baseline,
                   c->n_candidate, BENCH_AUDIT_MIN_SAMPLES);

    /* The interval is only meaningful for possible data. */
    if (enough && out->baseline.reported && out->candidate.reported) {
        if ((s = bench_bootstrap_ratio(c->baseline_us, c->n_baseline, c->candidate_us,
                                       c->n_candidate, o.resamples, o.seed, o.level, &out->ci,
                                       err)) != IR_OK)
            return s;
        out->has_ci = true;
        const bench_ci *ci = &out->ci;
        if (c->claimed_speedup < ci->lo || c->claimed_speedup > ci->hi)
            add_reason(out, BENCH_REASON_CLAIM_OUTSIDE_CI, "claimed speedup %.4gx is outside the "
                       "%g%% bootstrap CI [%.4g, %.4g] of the measured %.4gx (median baseline / "
                       "median candidate, %d resamples, seed %llu)", c->claimed_speedup,
                       100 * ci->level, ci->lo, ci->hi, ci->estimate, ci->resamples,
                       (unsigned long long)ci->seed);
        else
            add_reason(out, BENCH_REASON_CLAIM_WITHIN_CI, "claimed speedup %.4gx is inside the %g%%"
                       " bootstrap CI [%.4g, %.4g]; measured %.4gx", c->claimed_speedup,
                       100 * ci->level, ci->lo, ci->hi, ci->estimate);
        if (ci->lo <= 1.0 && ci->hi >= 1.0)
            add_reason(out, BENCH_REASON_NO_SIGNIFICANT_SPEEDUP, "no significant speedup: the "
                       "%g%% CI [%.4g, %.4g] includes 1.0", 100 * ci->level, ci->lo, ci->hi);
    }

    bool refuted = false, unsupported = false;
    for (int i = 0; i < out->n_reasons; i++) {
        refuted |= out->reasons[i].effect == BENCH_EFFECT_REFUTED;
        unsupported |= out->reasons[i].effect == BENCH_EFFECT_UNSUPPORTED;
    }
    out->verdict = refuted ? BENCH_AUDIT_REFUTED
                 : unsupported ? BENCH_AUDIT_UNSUPPORTED : BENCH_AUDIT_CONFIRMED;
    return IR_OK;
}
