/*
 * loop.c - the keep/revert rule and the loop that drives trials: the default first, then random
 * points, then one-knob mutations of the running best. Every trial is a row; nothing here
 * prints (the callbacks do).
 */
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "search/search.h"

/* Say why in the caller's buffer and answer keep. */
#define say(why, len, keep, ...) (base_say(why, len, __VA_ARGS__), (keep))

/* A tie (equal latency, or a CI holding 1): measured over predicted, then the simpler. */
static bool tie_break(const search_verdict *inc, const search_verdict *cand, char *why,
                      size_t len, const char *what)
{
    if (cand->latency_kind == SEARCH_MEASURED_GPU && inc->latency_kind == SEARCH_PREDICTED)
        return say(why, len, true, "%s; measured outranks predicted", what);
    if (cand->latency_kind == SEARCH_PREDICTED && inc->latency_kind == SEARCH_MEASURED_GPU)
        return say(why, len, false, "%s; the incumbent's latency is measured", what);
    if (cand->simplicity < inc->simplicity)
        return say(why, len, true, "%s; simpler (%d knobs off default vs %d)", what,
                   cand->simplicity, inc->simplicity);
    return say(why, len, false, "%s; not simpler (%d knobs off default vs %d)", what,
               cand->simplicity, inc->simplicity);
}

bool search_keep(const search_verdict *inc, const search_verdict *cand, const search_paired *ab,
                 char *why, size_t why_len)
{
    if (!cand->valid)
        return say(why, why_len, false, "not valid: %s", cand->rejected_reason);
    if (!cand->checked || !cand->correct)
        return say(why, why_len, false, "not correct: %s", cand->why_incorrect);
    if (!cand->has_latency)
        return say(why, why_len, false, "no latency");
    if (!inc || !inc->has_latency)
        return say(why, why_len, true, "first valid and correct plan");
    if (ab && ab->has) {
        if (ab->estimate >= 1 + SEARCH_MIN_GAIN && ab->lo > 1)
            return say(why, why_len, true, "paired A/B speedup %.4fx, CI [%.4f, %.4f]",
                       ab->estimate, ab->lo, ab->hi);
        char what[160];
        snprintf(what, sizeof what, "paired A/B speedup %.4fx, CI [%.4f, %.4f]", ab->estimate,
                 ab->lo, ab->hi);
        if (ab->lo <= 1 && ab->hi >= 1)
            return tie_break(inc, cand, why, why_len, what);
        return say(why, why_len, false, "%s: below the %g%% gain", what, SEARCH_MIN_GAIN * 100);
    }
    double a = inc->latency_us, b = cand->latency_us;
    double gain = a / b - 1;
    if (b * (1 + SEARCH_MIN_GAIN) <= a * (1 + SEARCH_TIE_REL))
        return say(why, why_len, true, "%.2f%% faster (%.6g vs %.6g us)", gain * 100, b, a);
    if (fabs(a - b) <= SEARCH_TIE_REL * fmax(a, b)) {
        char what[96];
        snprintf(what, sizeof what, "equal latency %.6g us", b);
        return tie_break(inc, cand, why, why_len, what);
    }
    return say(why, why_len, false, "%.2f%% %s (%.6g vs %.6g us), needs >= %g%%",
               fabs(gain) * 100, gain >= 0 ? "faster" : "slower", b, a, SEARCH_MIN_GAIN * 100);
}

/* ---------------------------------------------------------------- the loop */

void search_loop_opts_default(search_loop_opts *o)
{
    o->budget = 20;
    o->seed = 1;
    o->random_share = 0.3;
}

void search_result_free(search_result *r)
{
    if (!r)
        return;
    for (int i = 0; i < r->n_rows; i++)
        free(r->rows[i].config_json);
    free(r->rows);
    memset(r, 0, sizeof *r);
}

static void progress(const search_callbacks *cb, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
static void progress(const search_callbacks *cb, const char *fmt, ...)
{
    if (!cb || !cb->progress)
        return;
    char line[600];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    cb->progress(cb->arg, line);
}

/* Whether id is the schedule_id of an earlier row. */
static bool tried(const search_result *r, const ir_config *c)
{
    char id[SEARCH_ID_LEN + 1];
    ir_error e = {0};
    if (search_schedule_id(c, id, &e) != IR_OK)
        return false;
    for (int i = 0; i < r->n_rows; i++)
        if (!strcmp(r->rows[i].verdict.schedule_id, id))
            return true;
    return false;
}

/* The point of trial i: the default, a random point, or a mutation of best, never one tried
 * before (up to 64 redraws; then the last draw is tried again). */
static ir_status next_point(search_rng *rng, int64_t num_sms, int i, int n_random,
                            const search_point *best,
                            const search_result *r, search_point *pt, const char **origin,
                            ir_error *err)
{
    *origin = i == 0 ? "default" : i <= n_random ? "random" : "mutation";
    if (i == 0) {
        search_point_default(pt);
        return IR_OK;
    }
    for (int attempt = 0; attempt < 64; attempt++) {
        ir_status s = i <= n_random ? search_random_point(rng, num_sms, pt, err)
                                    : search_mutate_point(rng, num_sms, best, pt, err);
        if (s != IR_OK)
            return s;
        ir_config c;
        if ((s = search_point_config(pt, &c, err)) != IR_OK)
            return s;
        bool seen = tried(r, &c);
        ir_config_free(&c);
        if (!seen)
            return IR_OK;
    }
    return IR_OK;
}

/* Append a row for trial i of point pt with verdict v. */
static ir_status add_row(search_result *r, int i, const char *origin, const search_point *pt,
                         const ir_config *c, const search_verdict *v, ir_error *err)
{
    search_row *rows = realloc(r->rows, (size_t)(r->n_rows + 1) * sizeof *rows);
    if (!rows)
        return ir_fail(err, IR_ERR_NOMEM, "search", "out of memory");
    r->rows = rows;
    search_row *row = &rows[r->n_rows];
    memset(row, 0, sizeof *row);
    row->trial = i;
    row->origin = origin;
    search_point_summary(pt, row->summary, sizeof row->summary);
    row->verdict = *v;
    ir_status s = search_config_canonical(c, &row->config_json, err);
    if (s == IR_OK)
        r->n_rows++;
    r->n_valid += v->valid;
    r->n_correct += v->valid && v->checked && v->correct;
    r->n_rejected += !v->valid;
    return s;
}

/* Decide row against the incumbent (the best row, or none) and adopt it when kept. */
static ir_status decide(search_ctx *ctx, search_result *r, search_plan *best_plan,
                        search_plan *plan, ir_error *err)
{
    search_row *row = &r->rows[r->n_rows - 1];
    const search_verdict *inc = r->best >= 0 ? &r->rows[r->best].verdict : NULL;
    search_paired ab = {0};
    bool paired = inc && best_plan->program && plan->program && search_verdict_ok(&row->verdict)
                  && row->verdict.has_latency && row->verdict.latency_kind == SEARCH_MEASURED_GPU;
    if (paired) {
        ir_status s = search_paired_ab(ctx, best_plan, plan, &ab, err);
        if (s != IR_OK)
            return s;
    }
    row->kept = search_keep(inc, &row->verdict, paired ? &ab : NULL, row->reason,
                            sizeof row->reason);
    if (row->kept) {
        r->best = r->n_rows - 1;
        r->n_kept++;
        search_plan_free(best_plan);
        *best_plan = *plan;
        memset(plan, 0, sizeof *plan);
    }
    return IR_OK;
}

ir_status search_loop(search_ctx *ctx, const search_loop_opts *o, const search_callbacks *cb,
                      search_result *out, ir_error *err)
{
    memset(out, 0, sizeof *out);
    out->best = -1;
    if (o->budget < 1)
        return ir_fail(err, IR_ERR_MALFORMED, "budget", "must be at least 1");
    search_rng rng;
    search_rng_seed(&rng, o->seed);
    int n_random = (int)lround(o->random_share * (o->budget - 1));
    search_point best_pt, pt;
    search_point_default(&best_pt);
    search_plan best_plan = {0}, plan = {0};
    ir_status s = IR_OK;
    for (int i = 0; i < o->budget && s == IR_OK; i++) {
        const char *origin;
        ir_config c;
        search_verdict v;
        if ((s = next_point(&rng, search_ctx_target(ctx)->num_sms, i, n_random, &best_pt, out,
                            &pt, &origin, err)) != IR_OK)
            break;
        if ((s = search_point_config(&pt, &c, err)) != IR_OK)
            break;
        progress(cb, "trial %d/%d (%s): evaluating", i, o->budget, origin);
        s = search_eval(ctx, &c, &v, &plan, err);
        if (s == IR_OK)
            s = add_row(out, i, origin, &pt, &c, &v, err);
        ir_config_free(&c);
        if (s == IR_OK)
            s = decide(ctx, out, &best_plan, &plan, err);
        search_plan_free(&plan);
        if (s != IR_OK)
            break;
        const search_row *row = &out->rows[out->n_rows - 1];
        if (row->kept)
            best_pt = pt;
        progress(cb, "trial %d/%d %s %s: %s", i, o->budget, row->verdict.schedule_id,
                 row->kept ? "KEPT" : "reverted", row->reason);
        if (cb && cb->row)
            cb->row(cb->arg, row);
    }
    search_plan_free(&best_plan);
    return s;
}
