/*
 * verify.c - the amk-verify driver: builds the verification context (queues, graph, footprints),
 * runs the five obligations in order, combines their verdicts, and writes the certificate of a
 * PROVED program. Also the small helpers the obligations share (text buffers, Z3 sessions,
 * boxes).
 */
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "verify/verify_internal.h"

/* ---------------------------------------------------------------- text buffers */

void vb_qstr(vbuf *b, const char *s)
{
    vb_put(b, "\"");
    for (; *s; s++) {
        unsigned char u = (unsigned char)*s;
        if (u == '"' || u == '\\')
            vb_fmt(b, "\\%c", u);
        else if (u < 0x20)
            vb_fmt(b, "\\u%04x", u);
        else {
            char t[2] = {(char)u, 0};
            vb_put(b, t);
        }
    }
    vb_put(b, "\"");
}

void vb_ids(vbuf *b, const int32_t *ids, int64_t n)
{
    vb_put(b, "[");
    for (int64_t i = 0; i < n; i++)
        vb_fmt(b, i ? ", %d" : "%d", ids[i]);
    vb_put(b, "]");
}

/* ---------------------------------------------------------------- verdict helpers */

void vset(vctx *c, verify_obligation ob, verify_verdict v, const char *fmt, ...)
{
    c->r->ob[ob].status = v;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(c->r->ob[ob].detail, sizeof c->r->ob[ob].detail, fmt, ap);
    va_end(ap);
}

bool vwitness_begin(vctx *c, const char *kind)
{
    if (c->witness.n)
        return false;
    snprintf(c->r->witness_kind, sizeof c->r->witness_kind, "%s", kind);
    vb_put(&c->witness, "{\"kind\": ");
    vb_qstr(&c->witness, kind);
    vb_fmt(&c->witness, ", \"program_sha256\": \"%s\"", c->r->program_sha256);
    return true;
}

const char *verify_verdict_name(verify_verdict v)
{
    switch (v) {
    case VERIFY_PROVED: return "PROVED";
    case VERIFY_REFUTED: return "REFUTED";
    case VERIFY_MALFORMED: return "MALFORMED";
    case VERIFY_UNKNOWN: return "UNKNOWN";
    case VERIFY_SKIPPED: return "SKIPPED";
    }
    return "?";
}

const char *verify_obligation_name(verify_obligation ob)
{
    static const char *const N[] = {"wellformed", "deadlock", "race", "resident", "complete"};
    return (unsigned)ob < VERIFY_N_OBLIGATIONS ? N[ob] : "?";
}

void verify_opts_default(verify_opts *o)
{
    memset(o, 0, sizeof *o);
    o->queue_order = IR_ORDER_LIST;
    o->timeout_ms = 30000;
    o->rlimit = 50000000;
}

/* ---------------------------------------------------------------- Z3 sessions */

bool vdeadline(const vctx *c) { return c->t_end > 0 && base_now_s() > c->t_end; }

void vprogress(vctx *c, bool force, const char *fmt, ...)
{
    if (!c->o->progress)
        return;
    double t = base_now_s();
    if (!force && t - c->t_progress < 1.0)
        return;
    c->t_progress = t;
    char line[300];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    c->o->progress(c->o->progress_arg, line);
}

/* The Z3 timeout of the next query: the per-query limit, cut to what is left before the
 * deadline (at least 1 ms, so a query past it gives up at once). */
static int64_t query_timeout_ms(const vctx *c)
{
    int64_t ms = c->o->timeout_ms;
    if (c->t_end > 0) {
        double left = (c->t_end - base_now_s()) * 1000.0;
        if (left < (double)ms)
            ms = left < 1 ? 1 : (int64_t)left;
    }
    return ms;
}

bool vz3_open(vz3 *z, vctx *c, verify_obligation ob, bool arith)
{
    memset(z, 0, sizeof *z);
    z->c = c;
    z->ob = ob;
    Z3_config cfg = Z3_mk_config();
    if (!cfg)
        return false;
    int64_t tmo = query_timeout_ms(c);
    char buf[32];
    snprintf(buf, sizeof buf, "%lld", (long long)tmo);
    Z3_set_param_value(cfg, "timeout", buf);
    z->ctx = Z3_mk_context(cfg);
    Z3_del_config(cfg);
    if (!z->ctx)
        return false;
    Z3_set_error_handler(z->ctx, NULL);
    /* Queries over Booleans and cardinalities only (stuck cuts, race windows without ranks)
       go to the SAT-based finite-domain solver, which internalizes them in about half the
       time of the SMT core; anything with integers to the SMT core. */
    z->solver = arith ? Z3_mk_simple_solver(z->ctx)
                      : Z3_mk_solver_for_logic(z->ctx, Z3_mk_string_symbol(z->ctx, "QF_FD"));
    Z3_solver_inc_ref(z->ctx, z->solver);
    Z3_params prm = Z3_mk_params(z->ctx);
    Z3_params_inc_ref(z->ctx, prm);
    Z3_params_set_uint(z->ctx, prm, Z3_mk_string_symbol(z->ctx, "timeout"),
                       (unsigned)(tmo > 0 && tmo < 4000000000LL ? tmo : 4000000000U));
    Z3_params_set_uint(z->ctx, prm, Z3_mk_string_symbol(z->ctx, "rlimit"),
                       (unsigned)(c->o->rlimit > 0 && c->o->rlimit < 4000000000LL
                                      ? c->o->rlimit : 4000000000U));
    if (arith)
        Z3_params_set_uint(z->ctx, prm, Z3_mk_string_symbol(z->ctx, "arith.solver"), 2);
    Z3_solver_set_params(z->ctx, z->solver, prm);
    Z3_params_dec_ref(z->ctx, prm);
    return Z3_get_error_code(z->ctx) == Z3_OK;
}

Z3_lbool vz3_check(vz3 *z)
{
    Z3_lbool res = Z3_solver_check(z->ctx, z->solver);
    if (Z3_get_error_code(z->ctx) != Z3_OK)
        res = Z3_L_UNDEF;
    verify_ob_result *o = &z->c->r->ob[z->ob];
    o->solver_queries++;
    Z3_stats st = Z3_solver_get_statistics(z->ctx, z->solver);
    Z3_stats_inc_ref(z->ctx, st);
    for (unsigned i = 0; i < Z3_stats_size(z->ctx, st); i++) {
        const char *k = Z3_stats_get_key(z->ctx, st, i);
        if (strstr(k, "conflicts") && Z3_stats_is_uint(z->ctx, st, i))
            o->solver_conflicts += Z3_stats_get_uint_value(z->ctx, st, i);
    }
    Z3_stats_dec_ref(z->ctx, st);
    return res;
}

void vz3_close(vz3 *z)
{
    if (!z->ctx)
        return;
    if (z->solver)
        Z3_solver_dec_ref(z->ctx, z->solver);
    Z3_del_context(z->ctx);
    z->ctx = NULL;
}

Z3_ast vz3_bool(vz3 *z, const char *prefix, int64_t i)
{
    char name[64];
    snprintf(name, sizeof name, "%s%lld", prefix, (long long)i);
    return Z3_mk_const(z->ctx, Z3_mk_string_symbol(z->ctx, name), Z3_mk_bool_sort(z->ctx));
}

Z3_ast vz3_int(vz3 *z, const char *prefix, int64_t i)
{
    char name[64];
    snprintf(name, sizeof name, "%s%lld", prefix, (long long)i);
    return Z3_mk_const(z->ctx, Z3_mk_string_symbol(z->ctx, name), Z3_mk_int_sort(z->ctx));
}

Z3_ast vz3_num(vz3 *z, int64_t v) { return Z3_mk_int64(z->ctx, v, Z3_mk_int_sort(z->ctx)); }

Z3_ast vz3_and(vz3 *z, int n, const Z3_ast *a)
{
    return n == 0 ? Z3_mk_true(z->ctx) : n == 1 ? a[0] : Z3_mk_and(z->ctx, (unsigned)n, a);
}

Z3_ast vz3_or(vz3 *z, int n, const Z3_ast *a)
{
    return n == 0 ? Z3_mk_false(z->ctx) : n == 1 ? a[0] : Z3_mk_or(z->ctx, (unsigned)n, a);
}

Z3_ast vz3_pexpr(vz3 *z, ir_pexpr e, Z3_ast pos)
{
    Z3_ast terms[2] = {Z3_mk_mul(z->ctx, 2, (Z3_ast[]){vz3_num(z, e.mul), pos}), vz3_num(z, e.add)};
    Z3_ast v = Z3_mk_add(z->ctx, 2, terms);
    if (e.lo != INT64_MIN) {
        Z3_ast lo = vz3_num(z, e.lo);
        v = Z3_mk_ite(z->ctx, Z3_mk_lt(z->ctx, v, lo), lo, v);
    }
    if (e.hi != INT64_MAX) {
        Z3_ast hi = vz3_num(z, e.hi);
        v = Z3_mk_ite(z->ctx, Z3_mk_gt(z->ctx, v, hi), hi, v);
    }
    return v;
}

bool vz3_model_int(vz3 *z, Z3_ast a, int64_t *v)
{
    Z3_model m = Z3_solver_get_model(z->ctx, z->solver);
    if (!m)
        return false;
    Z3_model_inc_ref(z->ctx, m);
    Z3_ast out = NULL;
    bool ok = Z3_model_eval(z->ctx, m, a, true, &out) && out &&
              Z3_get_numeral_int64(z->ctx, out, v);
    Z3_model_dec_ref(z->ctx, m);
    return ok;
}

bool vz3_model_bool(vz3 *z, Z3_ast a)
{
    Z3_model m = Z3_solver_get_model(z->ctx, z->solver);
    if (!m)
        return false;
    Z3_model_inc_ref(z->ctx, m);
    Z3_ast out = NULL;
    bool ok = Z3_model_eval(z->ctx, m, a, true, &out) && out &&
              Z3_get_bool_value(z->ctx, out) == Z3_L_TRUE;
    Z3_model_dec_ref(z->ctx, m);
    return ok;
}

/* ---------------------------------------------------------------- boxes and pages */

bool vbox_overlap(int rank, const int64_t *alo, const int64_t *ahi, const int64_t *blo,
                  const int64_t *bhi)
{
    for (int d = 0; d < rank; d++)
        if (!(alo[d] < bhi[d] && blo[d] < ahi[d]))
            return false;
    return true;
}

void vbox_byte_span(const ir_buffer *b, const int64_t *lo, const int64_t *hi, int64_t *first,
                    int64_t *end)
{
    int64_t f = 0, l = 0, stride = 1;
    bool empty = false;
    for (int d = b->rank - 1; d >= 0; d--) {
        if (hi[d] <= lo[d])
            empty = true;
        f += lo[d] * stride;
        l += (hi[d] - 1) * stride;
        stride *= b->shape[d];
    }
    if (empty) {
        *first = *end = 0;
        return;
    }
    *first = ir_dtype_nbytes(b->dtype, f) - (ir_dtype_bits(b->dtype) < 8 ? 1 : 0);
    if (*first < 0)
        *first = 0;
    *end = ir_dtype_nbytes(b->dtype, l + 1);
}

/* ---------------------------------------------------------------- context */

static void ctx_free(vctx *c)
{
    free(c->qstart);
    free(c->qtasks);
    free(c->queue_of);
    free(c->qpos);
    ir_graph_free(&c->g);
    free(c->nprod);
    free(c->acc);
    free(c->acc_start);
    free(c->page_of);
    vrun_free(&c->run);
    free(c->pi);
    free(c->witness.s);
    free(c->evidence.s);
}

/* Build queues, graph, producer counts and accesses. IR_ERR_MALFORMED leaves the reason in err. */
static ir_status ctx_build(vctx *c, ir_error *err)
{
    const ir_program *p = c->p;
    ir_status s = ir_program_queues(p, c->o->queue_order, &c->nq, &c->qstart, &c->qtasks, err);
    if (s != IR_OK)
        return s;
    int32_t nt = p->n_tasks;
    c->queue_of = malloc(((size_t)nt + 1) * sizeof *c->queue_of);
    c->qpos = malloc(((size_t)nt + 1) * sizeof *c->qpos);
    c->nprod = calloc((size_t)p->n_counters + 1, sizeof *c->nprod);
    c->acc_start = calloc((size_t)nt + 1, sizeof *c->acc_start);
    c->page_of = malloc(((size_t)p->n_buffers + 1) * sizeof *c->page_of);
    if (!c->queue_of || !c->qpos || !c->nprod || !c->acc_start || !c->page_of)
        return ir_fail(err, IR_ERR_NOMEM, "", "out of memory");
    for (int32_t q = 0; q < c->nq; q++)
        for (int32_t i = c->qstart[q]; i < c->qstart[q + 1]; i++) {
            c->queue_of[c->qtasks[i]] = q;
            c->qpos[c->qtasks[i]] = i - c->qstart[q];
        }
    for (int32_t i = 0; i < nt; i++)
        c->nprod[p->tasks[i].out_counter]++;
    for (int32_t b = 0; b < p->n_buffers; b++)
        c->page_of[b] = -1;
    if (p->has_pages)
        for (int i = 0; i < p->pages.n_map; i++)
            c->page_of[p->pages.map_buffer[i]] = p->pages.map_page[i];
    if (ir_graph_build(p, &c->g) != IR_OK)
        return ir_fail(err, IR_ERR_NOMEM, "", "out of memory");
    int64_t na = 0;
    for (int32_t i = 0; i < nt; i++)
        na += p->tasks[i].n_inputs + p->tasks[i].n_outputs;
    c->acc = calloc((size_t)na + 1, sizeof *c->acc);
    if (!c->acc)
        return ir_fail(err, IR_ERR_NOMEM, "", "out of memory");
    for (int32_t i = 0; i < nt; i++) {
        const ir_task *t = &p->tasks[i];
        c->acc_start[i] = c->n_acc;
        for (int w = 0; w < 2; w++) {
            int n = w ? t->n_outputs : t->n_inputs;
            for (int k = 0; k < n; k++) {
                vaccess *a = &c->acc[c->n_acc];
                a->task = i;
                a->write = w;
                a->slot = k;
                a->buffer = w ? t->outputs[k] : t->inputs[k];
                s = ir_task_footprint(p, t, w, k, &a->box, err);
                if (s != IR_OK)
                    return s;
                c->n_acc++;
            }
        }
    }
    c->acc_start[nt] = c->n_acc;
    return IR_OK;
}

static verify_verdict worst(const verify_result *r)
{
    bool refuted = false, unknown = false, malformed = false;
    for (int i = 0; i < VERIFY_N_OBLIGATIONS; i++) {
        refuted |= r->ob[i].status == VERIFY_REFUTED;
        unknown |= r->ob[i].status == VERIFY_UNKNOWN;
        malformed |= r->ob[i].status == VERIFY_MALFORMED;
    }
    return malformed ? VERIFY_MALFORMED : refuted ? VERIFY_REFUTED
         : unknown ? VERIFY_UNKNOWN : VERIFY_PROVED;
}

static void write_certificate(vctx *c)
{
    vbuf b = {0};
    const verify_result *r = c->r;
    vb_put(&b, "{\"kind\": \"amk-verify-certificate\", \"format\": 1, \"verdict\": \"PROVED\"");
    vb_fmt(&b, ", \"program_sha256\": \"%s\", \"tool\": \"amk-verify %s\", \"z3_version\": ",
           r->program_sha256, AMK_TOOL_VERSION);
    vb_qstr(&b, r->z3_version);
    vb_fmt(&b, ", \"limits\": {\"timeout_ms\": %lld, \"rlimit\": %lld}",
           (long long)c->o->timeout_ms, (long long)c->o->rlimit);
    vb_put(&b, ", \"target\": ");
    vb_qstr(&b, c->t->name);
    vb_fmt(&b, ", \"queue_order\": \"%s\"", c->o->queue_order == IR_ORDER_TOPO ? "topo" : "list");
    vb_fmt(&b, ", \"positions\": [%lld, %lld]", (long long)c->pos_lo, (long long)c->max_seq);
    vb_put(&b, ", \"obligations\": [");
    for (int i = 0; i < VERIFY_N_OBLIGATIONS; i++) {
        vb_fmt(&b, "%s{\"name\": \"%s\", \"status\": \"%s\", \"seconds\": %.6f, "
               "\"solver_queries\": %lld, \"detail\": ", i ? ", " : "",
               verify_obligation_name((verify_obligation)i),
               verify_verdict_name(r->ob[i].status), r->ob[i].seconds,
               (long long)r->ob[i].solver_queries);
        vb_qstr(&b, r->ob[i].detail);
        vb_put(&b, "}");
    }
    vb_put(&b, "], \"evidence\": {\"finish_order\": ");
    vb_ids(&b, c->run.order, c->run.n_done);
    if (c->evidence.n) {
        vb_put(&b, ", ");
        vb_put(&b, c->evidence.s);
    }
    vb_put(&b, "}}");
    if (b.oom) {
        free(b.s);
        return;
    }
    c->r->certificate_json = b.s;
}

void verify_release_memory(void) { Z3_finalize_memory(); }

void verify_z3_version(char out[64])
{
    unsigned major, minor, build, rev;
    Z3_get_version(&major, &minor, &build, &rev);
    snprintf(out, 64, "%u.%u.%u.%u", major, minor, build, rev);
}

void verify_result_free(verify_result *r)
{
    if (!r)
        return;
    free(r->witness_json);
    free(r->certificate_json);
    r->witness_json = r->certificate_json = NULL;
}

typedef void (*obligation_fn)(vctx *);

static void run_obligation(vctx *c, verify_obligation ob, obligation_fn fn)
{
    double t0 = base_now_s();
    if (vdeadline(c)) {
        vset(c, ob, VERIFY_UNKNOWN, "not decided: the deadline of %.0f s passed first",
             c->o->deadline_s);
        return;
    }
    vprogress(c, true, "%s: %d tasks, %.1f s so far", verify_obligation_name(ob), c->p->n_tasks,
              t0 - c->t_progress_start);
    fn(c);
    c->r->ob[ob].seconds = base_now_s() - t0;
}

ir_status verify_program(const ir_program *p, const verify_opts *o, verify_result *r,
                         ir_error *err)
{
    verify_opts dflt;
    if (!o) {
        verify_opts_default(&dflt);
        o = &dflt;
    }
    memset(r, 0, sizeof *r);
    double t0 = base_now_s();
    verify_z3_version(r->z3_version);
    for (int i = 0; i < VERIFY_N_OBLIGATIONS; i++)
        r->ob[i].status = VERIFY_SKIPPED;
    ir_status s = ir_program_sha256(p, r->program_sha256, err);
    if (s != IR_OK)
        return s;
    vctx c = {0};
    c.p = p;
    c.o = o;
    c.r = r;
    c.t = o->target ? o->target : p->has_target ? &p->target : NULL;
    c.t_progress = c.t_progress_start = t0;
    c.t_end = o->deadline_s > 0 ? t0 + o->deadline_s : 0;
    /* A program without the decode extension was lowered for one position (AMK writes it as
       meta.pos, with kv_len = pos + 1 and the KV slot pos as constants): it is proved at that
       position, rows below it being the state of earlier steps. */
    c.pos = 0;
    if (p->has_decode)
        c.pos = p->decode.pos;
    else if (!ir_meta_int(p, "pos", &c.pos) || c.pos < 0 || c.pos > INT32_MAX)
        c.pos = 0;
    c.pos_lo = p->has_decode ? 0 : c.pos;
    c.max_seq = p->has_decode ? p->decode.max_seq : c.pos + 1;
    ir_error e = {0};
    if (!c.t) {
        vset(&c, VERIFY_WELLFORMED, VERIFY_MALFORMED,
             "no GPU target: the program has none and no --target was given");
        vwitness_begin(&c, "no_target");
    } else if ((s = ctx_build(&c, &e)) != IR_OK) {
        if (s == IR_ERR_NOMEM) {
            ctx_free(&c);
            return ir_fail(err, s, "", "out of memory");
        }
        vset(&c, VERIFY_WELLFORMED, VERIFY_MALFORMED, "%s: %s", e.where, e.why);
        if (vwitness_begin(&c, "malformed")) {
            vb_put(&c.witness, ", \"where\": ");
            vb_qstr(&c.witness, e.where);
            vb_put(&c.witness, ", \"why\": ");
            vb_qstr(&c.witness, e.why);
        }
    } else {
        run_obligation(&c, VERIFY_WELLFORMED, verify_wellformed);
        bool wf = r->ob[VERIFY_WELLFORMED].status == VERIFY_PROVED;
        run_obligation(&c, VERIFY_DEADLOCK, verify_deadlock);
        if (wf && c.run.order)
            run_obligation(&c, VERIFY_RACE, verify_race);
        run_obligation(&c, VERIFY_RESIDENT, verify_resident);
        if (wf && r->ob[VERIFY_RACE].status == VERIFY_PROVED &&
            r->ob[VERIFY_DEADLOCK].status != VERIFY_UNKNOWN)
            run_obligation(&c, VERIFY_COMPLETE, verify_complete);
    }
    r->verdict = worst(r);
    if (c.witness.n) {
        vb_put(&c.witness, "}");
        if (!c.witness.oom) {
            r->witness_json = c.witness.s;
            c.witness.s = NULL;
        }
    }
    if (r->verdict == VERIFY_PROVED)
        write_certificate(&c);
    ctx_free(&c);
    r->seconds = base_now_s() - t0;
    return IR_OK;
}

/* ---------------------------------------------------------------- key sets */

static uint64_t key_hash(const int64_t *k, int w)
{
    uint64_t h = 0x9e3779b97f4a7c15ULL;
    for (int i = 0; i < w; i++) {
        h ^= (uint64_t)k[i] + 0x9e3779b97f4a7c15ULL + (h << 6) + (h >> 2);
        h *= 0xbf58476d1ce4e5b9ULL;
    }
    return h ^ (h >> 31);
}

int vkeyset_add(vkeyset *s, const int64_t *key)
{
    if (s->n * 2 >= s->cap) {
        int64_t nc = s->cap ? s->cap * 2 : 1024;
        int64_t *nk = malloc((size_t)nc * (size_t)s->width * sizeof *nk);
        uint8_t *nu = calloc((size_t)nc, 1);
        if (!nk || !nu) {
            free(nk);
            free(nu);
            return -1;
        }
        for (int64_t i = 0; i < s->cap; i++) {
            if (!s->used[i])
                continue;
            uint64_t h = key_hash(s->keys + i * s->width, s->width) & (uint64_t)(nc - 1);
            while (nu[h])
                h = (h + 1) & (uint64_t)(nc - 1);
            nu[h] = 1;
            memcpy(nk + (int64_t)h * s->width, s->keys + i * s->width, (size_t)s->width * sizeof *nk);
        }
        free(s->keys);
        free(s->used);
        s->keys = nk;
        s->used = nu;
        s->cap = nc;
    }
    uint64_t h = key_hash(key, s->width) & (uint64_t)(s->cap - 1);
    while (s->used[h]) {
        if (!memcmp(s->keys + (int64_t)h * s->width, key, (size_t)s->width * sizeof *key))
            return 0;
        h = (h + 1) & (uint64_t)(s->cap - 1);
    }
    s->used[h] = 1;
    memcpy(s->keys + (int64_t)h * s->width, key, (size_t)s->width * sizeof *key);
    s->n++;
    return 1;
}

void vkeyset_free(vkeyset *s)
{
    free(s->keys);
    free(s->used);
    memset(s, 0, sizeof *s);
}
