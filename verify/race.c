/*
 * race.c - obligation 3: any two accesses to overlapping elements (same buffer), or overlapping
 * bytes of one physical page (different buffers), at least one a write, are ordered in every
 * execution.
 *
 * Exact criterion (persistence): tasks a and b can run at the same time iff both are enabled
 * after the maximal run in which neither a nor b is allowed to start (M_ab). Only tasks of the
 * unconstrained maximal run F can ever start, so races are decided among them.
 *
 * The C side: partial waits are normalized first (a wait on th of N producers at task w, where
 * exactly th producers can finish before w starts, is a join over those th); sound
 * happens-before edges (queue order and joins) give windowed ancestor bitsets over the greedy
 * order plus "barrier" tasks for far pairs; a conflicting pair not shown ordered this way is
 * decided exactly with M_ab. Z3 re-decides the whole question: a Bool per task "finished", a
 * consistent cut (prefix-closed queues, joins satisfied), and the disjunction over conflicting
 * resources of two enabled conflicting accessors; when a partial wait stays ambiguous, integer
 * ranks make the cut reachable by construction. Z3 and C must agree, else UNKNOWN.
 */
#include <stdlib.h>
#include <string.h>

#include "verify/verify_internal.h"

#define WINDOW 4096 /* positions of ancestor history kept per task */
#define WORDS (WINDOW / 64 + 1)
#define ZSPAN 1024  /* greedy positions covered by one Z3 race window */

typedef struct {
    vctx *c;
    int32_t nt;
    /* join set of each wait: for wait (t, w) the producers that all run before t, or ambiguous */
    uint8_t *ambiguous;            /* per task: some wait of it is an ambiguous partial wait */
    int32_t *jstart, *jidx;        /* per task: producers it joins (all waits together), those
                                      of its full-join waits first */
    int32_t *nfull;                /* per task: how many jidx entries come from full joins */
    int32_t *fcstart, *fcidx;      /* per task: the counters of its full-join waits */
    Z3_ast *dvar;                  /* per counter, within one window: "all producers in the cut" */
    uint64_t *anc;                 /* nt * WORDS */
    int64_t *base;                 /* per task: first word index of its window */
    int32_t *lab;                  /* per task: latest barrier that is an ancestor, or -1 */
    uint8_t *barrier;
    int64_t n_ambiguous;
} race_ctx;

/* ---------------------------------------------------------------- normalization */

/* Producers of counter ctr that can finish before task w starts (in M_w). */
static ir_status normalize(race_ctx *rc)
{
    vctx *c = rc->c;
    const ir_program *p = c->p;
    int32_t nt = rc->nt;
    int64_t cap = 0;
    for (int32_t t = 0; t < nt; t++)
        for (int w = 0; w < p->tasks[t].n_waits; w++)
            cap += c->nprod[p->tasks[t].waits[w].counter];
    rc->jstart = calloc((size_t)nt + 1, sizeof *rc->jstart);
    rc->jidx = malloc(((size_t)cap + 1) * sizeof *rc->jidx);
    rc->ambiguous = calloc((size_t)nt + 1, 1);
    rc->nfull = calloc((size_t)nt + 1, sizeof *rc->nfull);
    rc->fcstart = calloc((size_t)nt + 1, sizeof *rc->fcstart);
    int64_t nw_all = 0;
    for (int32_t t = 0; t < nt; t++)
        nw_all += p->tasks[t].n_waits;
    rc->fcidx = malloc(((size_t)nw_all + 1) * sizeof *rc->fcidx);
    rc->dvar = calloc((size_t)p->n_counters + 1, sizeof *rc->dvar);
    if (!rc->jstart || !rc->jidx || !rc->ambiguous || !rc->nfull || !rc->fcstart || !rc->fcidx ||
        !rc->dvar)
        return IR_ERR_NOMEM;
    int64_t k = 0, kc = 0;
    for (int32_t t = 0; t < nt; t++) {
        rc->jstart[t] = (int32_t)k;
        rc->fcstart[t] = (int32_t)kc;
        if (c->pi[t] < 0)
            continue;
        const ir_task *tk = &p->tasks[t];
        vrun mw = {0};
        bool have_mw = false;
        for (int w = 0; w < tk->n_waits; w++) {       /* full joins first */
            int32_t ctr = tk->waits[w].counter;
            int64_t np = c->nprod[ctr];
            const int32_t *prod = c->g.producers.idx + c->g.producers.start[ctr];
            if (tk->waits[w].threshold != np)
                continue;
            for (int64_t j = 0; j < np; j++)
                rc->jidx[k++] = prod[j];
            rc->fcidx[kc++] = ctr;
        }
        rc->nfull[t] = (int32_t)(k - rc->jstart[t]);
        for (int w = 0; w < tk->n_waits; w++) {
            int32_t ctr = tk->waits[w].counter;
            int64_t th = tk->waits[w].threshold, np = c->nprod[ctr];
            const int32_t *prod = c->g.producers.idx + c->g.producers.start[ctr];
            if (th == np)
                continue;
            if (!have_mw) {
                if (!vrun_exec(c, t, -1, &mw))
                    return IR_ERR_NOMEM;
                have_mw = true;
            }
            int64_t ne = 0;
            for (int64_t j = 0; j < np; j++)
                ne += mw.done[prod[j]];
            if (ne == th) {
                for (int64_t j = 0; j < np; j++)
                    if (mw.done[prod[j]])
                        rc->jidx[k++] = prod[j];
            } else {
                rc->ambiguous[t] = 1;
                rc->n_ambiguous++;
            }
        }
        if (have_mw)
            vrun_free(&mw);
    }
    rc->jstart[nt] = (int32_t)k;
    rc->fcstart[nt] = (int32_t)kc;
    return IR_OK;
}

/* ---------------------------------------------------------------- ancestor windows */

static int32_t queue_pred(const vctx *c, int32_t t)
{
    return c->qpos[t] > 0 ? c->qtasks[c->qstart[c->queue_of[t]] + c->qpos[t] - 1] : -1;
}

static bool anc_has(const race_ctx *rc, int32_t t, int32_t a)
{
    int64_t pos = rc->c->pi[a], w = pos >> 6;
    if (w < rc->base[t] || w >= rc->base[t] + WORDS)
        return false;
    return (rc->anc[(int64_t)t * WORDS + (w - rc->base[t])] >> (pos & 63)) & 1;
}

static ir_status build_ancestors(race_ctx *rc)
{
    vctx *c = rc->c;
    int32_t nt = rc->nt, nf = c->run.n_done;
    rc->anc = calloc((size_t)nt * WORDS + 1, sizeof *rc->anc);
    rc->base = calloc((size_t)nt + 1, sizeof *rc->base);
    rc->lab = malloc(((size_t)nt + 1) * sizeof *rc->lab);
    rc->barrier = calloc((size_t)nt + 1, 1);
    if (!rc->anc || !rc->base || !rc->lab || !rc->barrier)
        return IR_ERR_NOMEM;
    int32_t prev_barrier = -1;
    for (int32_t i = 0; i < nf; i++) {
        int32_t t = c->run.order[i];
        int64_t b = ((int64_t)i - WINDOW) >> 6;
        if ((int64_t)i - WINDOW < 0)
            b = 0;
        rc->base[t] = b;
        rc->lab[t] = -1;
        uint64_t *mine = rc->anc + (int64_t)t * WORDS;
        int32_t qp = queue_pred(c, t);
        int32_t preds_n = rc->jstart[t + 1] - rc->jstart[t];
        for (int32_t e = -1; e < preds_n; e++) {
            int32_t p = e < 0 ? qp : rc->jidx[rc->jstart[t] + e];
            if (p < 0)
                continue;
            int64_t pp = c->pi[p];
            int64_t pw = pp >> 6;
            if (pw >= b && pw < b + WORDS)
                mine[pw - b] |= 1ULL << (pp & 63);
            /* OR in p's window where it overlaps mine. */
            int64_t lo = rc->base[p] > b ? rc->base[p] : b;
            int64_t hi = rc->base[p] + WORDS < b + WORDS ? rc->base[p] + WORDS : b + WORDS;
            const uint64_t *theirs = rc->anc + (int64_t)p * WORDS;
            for (int64_t w = lo; w < hi; w++)
                mine[w - b] |= theirs[w - rc->base[p]];
            int32_t cand = rc->barrier[p] ? p : rc->lab[p];
            if (cand >= 0 && (rc->lab[t] < 0 || c->pi[cand] > c->pi[rc->lab[t]]))
                rc->lab[t] = cand;
        }
        /* Barrier: every earlier task is an ancestor. */
        int64_t from = prev_barrier < 0 ? 0 : c->pi[prev_barrier];
        if (i - from <= WINDOW - 64 && (prev_barrier < 0 || anc_has(rc, t, prev_barrier))) {
            bool all = true;
            for (int64_t x = from + (prev_barrier >= 0); x < i && all; x++)
                all = anc_has(rc, t, c->run.order[x]);
            if (all) {
                rc->barrier[t] = 1;
                prev_barrier = t;
            }
        }
    }
    return IR_OK;
}

/* Sound: true only when a finishes before b starts in every execution. */
static bool ordered(const race_ctx *rc, int32_t a, int32_t b)
{
    const vctx *c = rc->c;
    if (c->pi[a] > c->pi[b]) {
        int32_t x = a;
        a = b;
        b = x;
    }
    if (c->queue_of[a] == c->queue_of[b])
        return true;
    if (anc_has(rc, b, a))
        return true;
    int32_t s = rc->lab[b];
    return s >= 0 && c->pi[s] >= c->pi[a] && (s == a || rc->barrier[s]);
}

/* ---------------------------------------------------------------- conflicts */

typedef struct {
    int64_t key[18];
    bool overlap;
} overlap_memo;

typedef struct {
    overlap_memo *m;
    int n, cap;
} memo_list;

static bool box_is_const(const ir_box *b)
{
    for (int d = 0; d < b->rank; d++)
        if (!ir_pexpr_is_const(b->lo[d]) || !ir_pexpr_is_const(b->hi[d]))
            return false;
    return true;
}

/* Whether two boxes of the same buffer overlap at some position in [0, S). Constant boxes are
 * compared directly; position-dependent ones by a Z3 query, memoized by structure. Returns -1
 * when Z3 gives up. */
static int boxes_overlap(race_ctx *rc, memo_list *memo, const ir_box *x, const ir_box *y)
{
    vctx *c = rc->c;
    int64_t xl[IR_MAX_RANK], xh[IR_MAX_RANK], yl[IR_MAX_RANK], yh[IR_MAX_RANK];
    if (box_is_const(x) && box_is_const(y)) {
        ir_box_eval(x, 0, xl, xh);
        ir_box_eval(y, 0, yl, yh);
        return vbox_overlap(x->rank, xl, xh, yl, yh);
    }
    /* Dimensions with constant, disjoint ranges settle it without a solver. */
    for (int d = 0; d < x->rank; d++)
        if (ir_pexpr_is_const(x->lo[d]) && ir_pexpr_is_const(x->hi[d]) &&
            ir_pexpr_is_const(y->lo[d]) && ir_pexpr_is_const(y->hi[d]) &&
            !(x->lo[d].add < y->hi[d].add && y->lo[d].add < x->hi[d].add))
            return 0;
    overlap_memo om = {{0}, false};
    int k = 0;
    for (int d = 0; d < x->rank && d < 2; d++) {
        const ir_pexpr *e[4] = {&x->lo[d], &x->hi[d], &y->lo[d], &y->hi[d]};
        for (int j = 0; j < 4; j++) {
            om.key[k++] = e[j]->mul;
            om.key[k++] = e[j]->add;
        }
    }
    om.key[16] = x->rank;
    om.key[17] = c->max_seq * 4096 + c->pos_lo;
    if (x->rank <= 2)
        for (int i = 0; i < memo->n; i++)
            if (!memcmp(memo->m[i].key, om.key, sizeof om.key))
                return memo->m[i].overlap;
    vz3 z;
    if (!vz3_open(&z, c, VERIFY_RACE, true))
        return -1;
    Z3_ast pos = vz3_int(&z, "pos", 0);
    Z3_ast cl[2 + 2 * IR_MAX_RANK];
    int n = 0;
    cl[n++] = Z3_mk_ge(z.ctx, pos, vz3_num(&z, c->pos_lo));
    cl[n++] = Z3_mk_lt(z.ctx, pos, vz3_num(&z, c->max_seq));
    for (int d = 0; d < x->rank; d++) {
        cl[n++] = Z3_mk_lt(z.ctx, vz3_pexpr(&z, x->lo[d], pos), vz3_pexpr(&z, y->hi[d], pos));
        cl[n++] = Z3_mk_lt(z.ctx, vz3_pexpr(&z, y->lo[d], pos), vz3_pexpr(&z, x->hi[d], pos));
    }
    Z3_solver_assert(z.ctx, z.solver, vz3_and(&z, n, cl));
    Z3_lbool res = vz3_check(&z);
    vz3_close(&z);
    if (res == Z3_L_UNDEF)
        return -1;
    om.overlap = res == Z3_L_TRUE;
    if (x->rank <= 2 && (memo->n < memo->cap || memo->cap < 4096)) {
        if (memo->n == memo->cap) {
            int nc = memo->cap ? memo->cap * 2 : 64;
            overlap_memo *nm = realloc(memo->m, (size_t)nc * sizeof *nm);
            if (nm) {
                memo->m = nm;
                memo->cap = nc;
            }
        }
        if (memo->n < memo->cap)
            memo->m[memo->n++] = om;
    }
    return om.overlap;
}

/* Byte span of an access within its page, at the program's position. */
static void access_span(const vctx *c, const vaccess *a, int64_t *first, int64_t *end)
{
    int64_t lo[IR_MAX_RANK], hi[IR_MAX_RANK];
    ir_box_eval(&a->box, c->pos, lo, hi);
    vbox_byte_span(&c->p->buffers[a->buffer], lo, hi, first, end);
}

/* ---------------------------------------------------------------- enumeration */

/* Accesses of tasks that run, grouped by buffer (CSR). */
typedef struct {
    int64_t *start;
    int64_t *idx;
} by_buffer;

static ir_status group_accesses(const vctx *c, by_buffer *g)
{
    int32_t nb = c->p->n_buffers;
    g->start = calloc((size_t)nb + 2, sizeof *g->start);
    g->idx = malloc(((size_t)c->n_acc + 1) * sizeof *g->idx);
    if (!g->start || !g->idx)
        return IR_ERR_NOMEM;
    for (int64_t a = 0; a < c->n_acc; a++)
        if (c->pi[c->acc[a].task] >= 0 && !ir_kind_is_readonly(c->p->buffers[c->acc[a].buffer].kind))
            g->start[c->acc[a].buffer + 1]++;
    for (int32_t b = 0; b < nb; b++)
        g->start[b + 1] += g->start[b];
    int64_t *fill = malloc(((size_t)nb + 1) * sizeof *fill);
    if (!fill)
        return IR_ERR_NOMEM;
    memcpy(fill, g->start, (size_t)nb * sizeof *fill);
    for (int64_t a = 0; a < c->n_acc; a++)
        if (c->pi[c->acc[a].task] >= 0 && !ir_kind_is_readonly(c->p->buffers[c->acc[a].buffer].kind))
            g->idx[fill[c->acc[a].buffer]++] = a;
    free(fill);
    return IR_OK;
}

/* Decide a conflicting pair exactly: both enabled after the run with both disabled. */
static int exact_race(race_ctx *rc, int32_t a, int32_t b, vrun *out)
{
    vctx *c = rc->c;
    vrun m;
    if (!vrun_exec(c, a, b, &m))
        return -1;
    bool race = vrun_enabled(c, &m, a) && vrun_enabled(c, &m, b);
    if (race && out)
        *out = m;
    else
        vrun_free(&m);
    return race;
}

/* ---------------------------------------------------------------- Z3 cross-check */

/* D_ctr: every producer of counter ctr is in the cut (one implication per producer, shared by
 * every task that joins ctr instead of repeated per task: same constraints, far fewer clauses).
 * Only without ranks; the window resets dvar. */
static Z3_ast join_term(race_ctx *rc, vz3 *z, Z3_ast *s, int32_t ctr)
{
    if (rc->dvar[ctr])
        return rc->dvar[ctr];
    vctx *c = rc->c;
    Z3_context x = z->ctx;
    Z3_ast d = vz3_bool(z, "d", ctr);
    const int32_t *prod = c->g.producers.idx + c->g.producers.start[ctr];
    for (int64_t j = 0; j < c->nprod[ctr]; j++)
        Z3_solver_assert(x, z->solver, Z3_mk_implies(x, d, s[prod[j]]));
    return rc->dvar[ctr] = d;
}

/* t joins its producers: through the D terms of its full joins, directly for the rest. */
static void assert_joins(race_ctx *rc, vz3 *z, Z3_ast *s, Z3_ast lhs, int32_t t)
{
    Z3_context x = z->ctx;
    for (int32_t j = rc->fcstart[t]; j < rc->fcstart[t + 1]; j++)
        Z3_solver_assert(x, z->solver, Z3_mk_implies(x, lhs, join_term(rc, z, s, rc->fcidx[j])));
    for (int32_t j = rc->jstart[t] + rc->nfull[t]; j < rc->jstart[t + 1]; j++)
        Z3_solver_assert(x, z->solver, Z3_mk_implies(x, lhs, s[rc->jidx[j]]));
}

/* Under lhs, each wait of t (a partial wait that is ambiguous) counts: at least threshold
 * producers of its counter are in the cut, and with ranks r (NULL for none) ranked before t. */
static void assert_wait_counts(race_ctx *rc, vz3 *z, Z3_ast *s, Z3_ast *r, Z3_ast lhs, int32_t t)
{
    vctx *c = rc->c;
    Z3_context x = z->ctx;
    const ir_task *tk = &c->p->tasks[t];
    for (int w = 0; w < tk->n_waits; w++) {
        int32_t ctr = tk->waits[w].counter;
        int64_t np = c->nprod[ctr];
        const int32_t *prod = c->g.producers.idx + c->g.producers.start[ctr];
        Z3_ast *v = malloc(((size_t)np + 1) * sizeof *v);
        if (!v)
            continue;
        for (int64_t j = 0; j < np; j++) {
            v[j] = s[prod[j]];
            if (r) {
                Z3_ast both[2] = {v[j], Z3_mk_lt(x, r[prod[j]], r[t])};
                v[j] = vz3_and(z, 2, both);
            }
        }
        Z3_solver_assert(x, z->solver,
                         Z3_mk_implies(x, lhs, Z3_mk_atleast(x, (unsigned)np, v,
                                                             (unsigned)tk->waits[w].threshold)));
        free(v);
    }
}

/* e_t: task t is enabled and unfinished at the cut. */
static Z3_ast enabled_term(race_ctx *rc, vz3 *z, Z3_ast *s, Z3_ast *e, int32_t t)
{
    if (e[t])
        return e[t];
    vctx *c = rc->c;
    Z3_context x = z->ctx;
    e[t] = vz3_bool(z, "e", t);
    Z3_solver_assert(x, z->solver, Z3_mk_implies(x, e[t], Z3_mk_not(x, s[t])));
    int32_t qp = queue_pred(c, t);
    if (qp >= 0)
        Z3_solver_assert(x, z->solver, Z3_mk_implies(x, e[t], s[qp]));
    if (!rc->ambiguous[t] && rc->n_ambiguous == 0) {
        assert_joins(rc, z, s, e[t], t);
    } else if (!rc->ambiguous[t]) {
        for (int32_t j = rc->jstart[t]; j < rc->jstart[t + 1]; j++)
            Z3_solver_assert(x, z->solver, Z3_mk_implies(x, e[t], s[rc->jidx[j]]));
    } else {
        assert_wait_counts(rc, z, s, NULL, e[t], t);
    }
    return e[t];
}

/* The cut over the tasks at greedy positions (lo, hi]: prefix-closed queues, and every finished
 * task's waits satisfied (with ranks when a partial wait is ambiguous). Tasks at positions up to
 * lo are in the cut (s is the constant true), tasks after hi and tasks that never run are out
 * (false); the caller fills s that way. */
static void assert_cut(race_ctx *rc, vz3 *z, Z3_ast *s, Z3_ast *r, int32_t lo, int32_t hi)
{
    vctx *c = rc->c;
    Z3_context x = z->ctx;
    bool ranks = rc->n_ambiguous > 0;
    for (int32_t i = lo + 1; i <= hi; i++) {
        int32_t t = c->run.order[i];
        int32_t qp = queue_pred(c, t);
        if (qp >= 0) {
            Z3_solver_assert(x, z->solver, Z3_mk_implies(x, s[t], s[qp]));
            if (ranks)
                Z3_solver_assert(x, z->solver, Z3_mk_implies(x, s[t], Z3_mk_lt(x, r[qp], r[t])));
        }
        if (!ranks) {
            assert_joins(rc, z, s, s[t], t);
            continue;
        }
        if (!rc->ambiguous[t]) {
            for (int32_t j = rc->jstart[t]; j < rc->jstart[t + 1]; j++) {
                int32_t pr = rc->jidx[j];
                Z3_solver_assert(x, z->solver, Z3_mk_implies(x, s[t], s[pr]));
                if (ranks)
                    Z3_solver_assert(x, z->solver, Z3_mk_implies(x, s[t], Z3_mk_lt(x, r[pr], r[t])));
            }
            continue;
        }
        assert_wait_counts(rc, z, s, r, s[t], t);
    }
}

/* ---------------------------------------------------------------- obligation */

/* Start a witness of kind naming the two accesses: tasks, labels, accesses, buffers. False when
 * a witness was already started. */
static bool witness_pair(vctx *c, const char *kind, const vaccess *x, const vaccess *y)
{
    const ir_program *p = c->p;
    if (!vwitness_begin(c, kind))
        return false;
    vbuf *w = &c->witness;
    vb_fmt(w, ", \"tasks\": [%d, %d], \"labels\": [", x->task, y->task);
    vb_qstr(w, p->tasks[x->task].label);
    vb_put(w, ", ");
    vb_qstr(w, p->tasks[y->task].label);
    vb_fmt(w, "], \"accesses\": [\"%s\", \"%s\"], \"buffers\": [%d, %d]",
           x->write ? "write" : "read", y->write ? "write" : "read", x->buffer, y->buffer);
    return true;
}

static void write_witness(vctx *c, const vaccess *x, const vaccess *y, int32_t page,
                          const vrun *m)
{
    const ir_program *p = c->p;
    const char *kind = page >= 0 && x->buffer != y->buffer ? "page_race"
                     : p->buffers[x->buffer].kind == IR_KV_CACHE ? "kv_race" : "race";
    if (!witness_pair(c, kind, x, y))
        return;
    vbuf *w = &c->witness;
    vb_put(w, ", \"page\": ");
    if (page >= 0)
        vb_fmt(w, "%d", page);
    else
        vb_put(w, "null");
    int64_t xl[IR_MAX_RANK], xh[IR_MAX_RANK], yl[IR_MAX_RANK], yh[IR_MAX_RANK];
    ir_box_eval(&x->box, c->pos, xl, xh);
    ir_box_eval(&y->box, c->pos, yl, yh);
    if (x->buffer == y->buffer) {
        vb_put(w, ", \"overlap\": {\"lo\": [");
        for (int d = 0; d < x->box.rank; d++)
            vb_fmt(w, d ? ", %lld" : "%lld", (long long)(xl[d] > yl[d] ? xl[d] : yl[d]));
        vb_put(w, "], \"hi\": [");
        for (int d = 0; d < x->box.rank; d++)
            vb_fmt(w, d ? ", %lld" : "%lld", (long long)(xh[d] < yh[d] ? xh[d] : yh[d]));
        vb_fmt(w, "], \"at_pos\": %lld}", (long long)c->pos);
    } else {
        int64_t f1, e1, f2, e2;
        vbox_byte_span(&p->buffers[x->buffer], xl, xh, &f1, &e1);
        vbox_byte_span(&p->buffers[y->buffer], yl, yh, &f2, &e2);
        vb_fmt(w, ", \"overlap_bytes\": [%lld, %lld]", (long long)(f1 > f2 ? f1 : f2),
               (long long)(e1 < e2 ? e1 : e2));
    }
    vb_put(w, ", \"interleaving\": {\"run\": ");
    vb_ids(w, m->order, m->n_done);
    vb_fmt(w, ", \"then_start\": [%d, %d]}", x->task, y->task);
}


/* ---------------------------------------------------------------- the combined query */

/* Conflict classes for Z3: "some task of A and some task of B enabled together". */
typedef struct {
    int64_t a, na, b, nb;      /* offsets into the task pool */
    int32_t lo, hi;            /* greedy positions: common barrier ancestor (or -1), last task */
} zclass;

typedef struct {
    race_ctx *rc;
    Z3_ast *s, *e;             /* per task, NULL outside the window being solved */
    zclass *v;
    int64_t n, cap;
    int32_t *pool;
    int64_t npool, pcap;
    bool oom;
} zquery;

static void zq_sets(zquery *q, const int32_t *A, int64_t na, const int32_t *B, int64_t nb)
{
    const vctx *c = q->rc->c;
    if (q->n == q->cap) {
        int64_t nc = q->cap ? q->cap * 2 : 1024;
        zclass *nv = realloc(q->v, (size_t)nc * sizeof *nv);
        if (!nv) {
            q->oom = true;
            return;
        }
        q->v = nv;
        q->cap = nc;
    }
    while (q->npool + na + nb > q->pcap) {
        int64_t nc = q->pcap ? q->pcap * 2 : 4096;
        int32_t *np = realloc(q->pool, (size_t)nc * sizeof *np);
        if (!np) {
            q->oom = true;
            return;
        }
        q->pool = np;
        q->pcap = nc;
    }
    zclass k = {q->npool, na, q->npool + na, nb, INT32_MAX, -1};
    memcpy(q->pool + q->npool, A, (size_t)na * sizeof *A);
    memcpy(q->pool + q->npool + na, B, (size_t)nb * sizeof *B);
    q->npool += na + nb;
    for (int64_t i = 0; i < na + nb; i++) {
        int32_t t = q->pool[k.a + i];
        int32_t l = q->rc->lab[t] >= 0 ? c->pi[q->rc->lab[t]] : -1;
        if (l < k.lo)
            k.lo = l;
        if (c->pi[t] > k.hi)
            k.hi = c->pi[t];
    }
    q->v[q->n++] = k;
}

static void zq_pair(zquery *q, int32_t a, int32_t b) { zq_sets(q, &a, 1, &b, 1); }

static int cmp_zclass(const void *x, const void *y)
{
    const zclass *a = x, *b = y;
    return (a->lo > b->lo) - (a->lo < b->lo);
}

/* Solve the classes v[0..n) that share the window (lo, hi]: every task at a position up to lo
 * is an ancestor of all their tasks, so it is in any cut that enables them; tasks after hi
 * cannot be needed. Z3_L_TRUE when some class can be enabled. */
static Z3_lbool solve_window(zquery *q, const zclass *v, int64_t n, int32_t lo, int32_t hi)
{
    race_ctx *rc = q->rc;
    vctx *c = rc->c;
    int32_t nt = rc->nt;
    vz3 z;
    if (!vz3_open(&z, c, VERIFY_RACE, rc->n_ambiguous > 0))
        return Z3_L_UNDEF;
    Z3_lbool res = Z3_L_UNDEF;
    bool global = rc->n_ambiguous > 0;
    /* Windows touch few tasks: s and e are shared arrays reset after use, not filled. */
    Z3_ast *s = q->s, *e = q->e;
    Z3_ast *r = global ? malloc(((size_t)nt + 1) * sizeof *r) : NULL;
    Z3_ast *terms = malloc(((size_t)n + 1) * sizeof *terms);
    int64_t need = 1;
    for (int32_t i = lo + 1; !global && i <= hi; i++) {
        int32_t t = c->run.order[i];
        need += 2 + rc->jstart[t + 1] - rc->jstart[t];
    }
    int32_t *touched = malloc((size_t)need * sizeof *touched);
    int64_t ntouch = 0;
    Z3_ast *tmp = NULL;
    if (!terms || !touched || (global && !r))
        goto out;
    Z3_ast T = Z3_mk_true(z.ctx), F = Z3_mk_false(z.ctx);
    if (global) {
        for (int32_t t = 0; t < nt; t++) {
            int32_t ps = c->pi[t];
            s[t] = ps < 0 || ps > hi ? F : ps <= lo ? T : vz3_bool(&z, "s", t);
            r[t] = ps >= 0 && ps <= lo ? vz3_num(&z, -1) : vz3_int(&z, "r", t);
        }
    } else {
        for (int32_t i = lo + 1; i <= hi; i++) {
            int32_t t = c->run.order[i];
            s[t] = vz3_bool(&z, "s", t);
            touched[ntouch++] = t;
        }
        /* Predecessors outside the window come earlier: they are in every relevant cut. */
        for (int32_t i = lo + 1; i <= hi; i++) {
            int32_t t = c->run.order[i], qp = queue_pred(c, t);
            if (qp >= 0 && !s[qp]) {
                s[qp] = T;
                touched[ntouch++] = qp;
            }
            for (int32_t j = rc->jstart[t]; j < rc->jstart[t + 1]; j++)
                if (!s[rc->jidx[j]]) {
                    s[rc->jidx[j]] = T;
                    touched[ntouch++] = rc->jidx[j];
                }
        }
    }
    assert_cut(rc, &z, s, r, lo, hi);
    for (int64_t i = 0; i < n; i++) {
        int64_t m = v[i].na > v[i].nb ? v[i].na : v[i].nb;
        Z3_ast *nt2 = realloc(tmp, ((size_t)m + 1) * sizeof *tmp);
        if (!nt2)
            goto out;
        tmp = nt2;
        Z3_ast both[2];
        for (int64_t k = 0; k < v[i].na; k++)
            tmp[k] = enabled_term(rc, &z, s, e, q->pool[v[i].a + k]);
        both[0] = vz3_or(&z, (int)v[i].na, tmp);
        for (int64_t k = 0; k < v[i].nb; k++)
            tmp[k] = enabled_term(rc, &z, s, e, q->pool[v[i].b + k]);
        both[1] = vz3_or(&z, (int)v[i].nb, tmp);
        terms[i] = vz3_and(&z, 2, both);
    }
    Z3_solver_assert(z.ctx, z.solver, vz3_or(&z, (int)n, terms));
    res = vz3_check(&z);
out:
    memset(rc->dvar, 0, ((size_t)c->p->n_counters + 1) * sizeof *rc->dvar);
    if (global) {
        memset(s, 0, ((size_t)nt + 1) * sizeof *s);
        memset(e, 0, ((size_t)nt + 1) * sizeof *e);
    } else {
        for (int64_t i = 0; i < ntouch; i++)
            s[touched[i]] = e[touched[i]] = NULL;
    }
    free(r);
    free(terms);
    free(touched);
    free(tmp);
    vz3_close(&z);
    return res;
}

/* Z3 over every class: windows by common barrier ancestor when no partial wait is ambiguous
 * (exact, see solve_window), else one query over the whole run. */
static Z3_lbool zq_solve(zquery *q, int64_t *windows)
{
    const vctx *c = q->rc->c;
    int32_t last = c->run.n_done - 1;
    *windows = 0;
    if (q->n == 0)
        return Z3_L_FALSE;
    q->s = calloc((size_t)q->rc->nt + 1, sizeof *q->s);
    q->e = calloc((size_t)q->rc->nt + 1, sizeof *q->e);
    if (!q->s || !q->e)
        return Z3_L_UNDEF;
    if (q->rc->n_ambiguous > 0) {
        *windows = 1;
        return solve_window(q, q->v, q->n, -1, last);
    }
    qsort(q->v, (size_t)q->n, sizeof *q->v, cmp_zclass);
    Z3_lbool res = Z3_L_FALSE;
    for (int64_t i = 0; i < q->n && res == Z3_L_FALSE;) {
        int64_t j = i;
        int32_t hi = -1;
        /* Classes with later barriers join the window while it stays short: the window's
           lower end is the earliest barrier, an ancestor of every class in it. */
        while (j < q->n && (j == i || (q->v[j].hi > hi ? q->v[j].hi : hi) - q->v[i].lo <= ZSPAN)) {
            if (q->v[j].hi > hi)
                hi = q->v[j].hi;
            j++;
        }
        res = solve_window(q, q->v + i, j - i, q->v[i].lo, hi);
        (*windows)++;
        i = j;
    }
    return res;
}

/* ---------------------------------------------------------------- obligation */

typedef struct {
    int64_t a, b;          /* racing accesses, or -1 */
    int32_t page;
    vrun run;
    int64_t pairs, residual;
    bool undecided, oom;
    bool deadline;              /* stopped at the run's deadline (undecided is set too) */
    int64_t alias_a, alias_b;   /* one task's accesses to two tenants of a page that overlap */
    int32_t alias_page;
    bool interleaved;           /* some page's tenants are not chain-separated (clobber check) */
} finding;

/* C side for one conflicting access pair: ordered, or decided exactly. */
static void check_pair(race_ctx *rc, finding *f, int64_t ia, int64_t ib, int32_t page)
{
    vctx *c = rc->c;
    f->pairs++;
    if (f->a >= 0)
        return;
    int32_t a = c->acc[ia].task, b = c->acc[ib].task;
    if (ordered(rc, a, b))
        return;
    if (vdeadline(c)) {
        f->deadline = f->undecided = true;
        return;
    }
    vprogress(c, false, "race: %lld conflicting pairs so far, %lld decided by an exact run",
              (long long)f->pairs, (long long)f->residual);
    f->residual++;
    int er = exact_race(rc, a, b, &f->run);
    if (er < 0)
        f->oom = true;
    else if (er) {
        f->a = ia;
        f->b = ib;
        f->page = page;
    }
}

typedef struct {
    int32_t ta, tb;        /* tasks, ta in the lower group */
    int32_t ga, gb;        /* groups (out counters), ga <= gb */
} tpair;

static int cmp_tpair(const void *x, const void *y)
{
    const tpair *a = x, *b = y;
    if (a->ga != b->ga)
        return a->ga < b->ga ? -1 : 1;
    if (a->gb != b->gb)
        return a->gb < b->gb ? -1 : 1;
    if (a->ta != b->ta)
        return a->ta < b->ta ? -1 : 1;
    return (a->tb > b->tb) - (a->tb < b->tb);
}

static int cmp_i32r(const void *a, const void *b)
{
    int32_t x = *(const int32_t *)a, y = *(const int32_t *)b;
    return (x > y) - (x < y);
}

/* Conflicts inside one buffer: C checks every pair; Z3 gets one disjunct per pair of op
 * instances (tasks sharing an out counter) whose every cross pair conflicts, else per pair. */
static void buffer_conflicts(race_ctx *rc, finding *f, zquery *q, zquery *qc, const int64_t *L,
                             int64_t n, memo_list *memo)
{
    vctx *c = rc->c;
    const ir_program *p = c->p;
    tpair *tp = NULL;
    int64_t ntp = 0, cap = 0;
    for (int64_t i = 0; i < n && !f->undecided && !f->oom; i++) {
        if (vdeadline(c)) {
            f->deadline = f->undecided = true;
            break;
        }
        const vaccess *x = &c->acc[L[i]];
        for (int64_t j = i + 1; j < n && !f->undecided; j++) {
            const vaccess *y = &c->acc[L[j]];
            if (x->task == y->task || !(x->write || y->write))
                continue;
            if ((j & 1023) == 0 && vdeadline(c)) {
                f->deadline = f->undecided = true;
                break;
            }
            int ov = boxes_overlap(rc, memo, &x->box, &y->box);
            if (ov < 0) {
                f->undecided = true;
                break;
            }
            if (!ov)
                continue;
            check_pair(rc, f, L[i], L[j], -1);
            if (ntp == cap) {
                cap = cap ? cap * 2 : 64;
                tpair *nt = realloc(tp, (size_t)cap * sizeof *nt);
                if (!nt) {
                    f->oom = true;
                    break;
                }
                tp = nt;
            }
            int32_t a = x->task, b = y->task;
            int32_t ga = p->tasks[a].out_counter, gb = p->tasks[b].out_counter;
            if (ga > gb || (ga == gb && a > b)) {
                int32_t t = a; a = b; b = t;
                t = ga; ga = gb; gb = t;
            }
            tp[ntp++] = (tpair){a, b, ga, gb};
        }
    }
    if (f->oom || f->undecided) {
        free(tp);
        return;
    }
    if (ntp)
        qsort(tp, (size_t)ntp, sizeof *tp, cmp_tpair);
    /* Distinct tasks of this buffer per group, for the completeness test of a group pair. */
    int32_t *tasks = malloc(((size_t)n + 1) * sizeof *tasks);
    int32_t *A = malloc(((size_t)n + 1) * sizeof *A), *B = malloc(((size_t)n + 1) * sizeof *B);
    if (!tasks || !A || !B) {
        f->oom = true;
        goto out;
    }
    for (int64_t i = 0; i < n; i++)
        tasks[i] = c->acc[L[i]].task;
    qsort(tasks, (size_t)n, sizeof *tasks, cmp_i32r);
    int64_t nd = 0;
    for (int64_t i = 0; i < n; i++)
        if (!nd || tasks[nd - 1] != tasks[i])
            tasks[nd++] = tasks[i];
    for (int64_t i = 0; i < ntp;) {
        int64_t j = i, distinct = 0;
        while (j < ntp && tp[j].ga == tp[i].ga && tp[j].gb == tp[i].gb) {
            if (j == i || tp[j].ta != tp[j - 1].ta || tp[j].tb != tp[j - 1].tb)
                distinct++;
            j++;
        }
        int64_t na = 0, nb = 0;
        if (tp[i].ga != tp[i].gb)
            for (int64_t k = 0; k < nd; k++) {
                int32_t g = p->tasks[tasks[k]].out_counter;
                if (g == tp[i].ga)
                    A[na++] = tasks[k];
                else if (g == tp[i].gb)
                    B[nb++] = tasks[k];
            }
        if (tp[i].ga != tp[i].gb && distinct == na * nb) {
            zq_sets(q, A, na, B, nb);
            zq_sets(qc, A, na, B, nb);
        } else {
            for (int64_t k = i; k < j; k++)
                if (k == i || tp[k].ta != tp[k - 1].ta || tp[k].tb != tp[k - 1].tb) {
                    zq_pair(q, tp[k].ta, tp[k].tb);
                    if (tp[i].ga == tp[i].gb)
                        zq_pair(qc, tp[k].ta, tp[k].tb);
                }
            /* The coarse query asks for any task of one instance enabled with any task of the
               other: a superset of these pairs (tile-aligned instances, e.g. o tiles reading the
               residual tiles the down tiles wrote, give one class instead of one per tile). */
            if (tp[i].ga != tp[i].gb)
                zq_sets(qc, A, na, B, nb);
        }
        i = j;
    }
out:
    free(tasks);
    free(A);
    free(B);
    free(tp);
}

typedef struct {
    int32_t buffer;
    int32_t lo, hi;        /* first and last position of its accesses in the greedy order */
} tenant;

static int cmp_tenant(const void *a, const void *b)
{
    const tenant *x = a, *y = b;
    return (x->lo > y->lo) - (x->lo < y->lo);
}

/* Conflicts between different buffers on one page. When the tenants' lifetimes are separated
 * in the greedy order, every access of a tenant must be ordered before every access of the next
 * one (checked pairwise in C, one disjunct per link for Z3), and ordering carries over to later
 * tenants. Otherwise every overlapping pair is checked on its own. */
static void page_conflicts(race_ctx *rc, finding *f, zquery *q, zquery *qc, const by_buffer *g,
                           int32_t pg)
{
    vctx *c = rc->c;
    const ir_program *p = c->p;
    int nt = 0;
    tenant *tn = malloc(((size_t)p->pages.n_map + 1) * sizeof *tn);
    if (!tn) {
        f->oom = true;
        return;
    }
    for (int mi = 0; mi < p->pages.n_map; mi++) {
        if (p->pages.map_page[mi] != pg)
            continue;
        int32_t b = p->pages.map_buffer[mi];
        if (g->start[b] == g->start[b + 1])
            continue;
        tenant t = {b, INT32_MAX, -1};
        for (int64_t i = g->start[b]; i < g->start[b + 1]; i++) {
            int32_t pos = c->pi[c->acc[g->idx[i]].task];
            if (pos < t.lo)
                t.lo = pos;
            if (pos > t.hi)
                t.hi = pos;
        }
        tn[nt++] = t;
    }
    qsort(tn, (size_t)nt, sizeof *tn, cmp_tenant);
    bool chain = true;
    for (int i = 0; i + 1 < nt && chain; i++) {
        chain = tn[i].hi < tn[i + 1].lo;
        int32_t b1 = tn[i].buffer, b2 = tn[i + 1].buffer;
        for (int64_t y = g->start[b2]; y < g->start[b2 + 1] && chain; y++) {
            int32_t ty = c->acc[g->idx[y]].task;
            /* A barrier ancestor of ty no earlier than the tenant's last access orders every
               access of the tenant before ty; otherwise check each access. */
            int32_t s = rc->lab[ty];
            if (s >= 0 && c->pi[s] >= tn[i].hi)
                continue;
            for (int64_t x = g->start[b1]; x < g->start[b1 + 1] && chain; x++)
                chain = ordered(rc, c->acc[g->idx[x]].task, ty);
        }
    }
    if (chain) {
        int32_t *A = NULL, *B = NULL;
        for (int i = 0; i + 1 < nt && !f->oom; i++) {
            int32_t b1 = tn[i].buffer, b2 = tn[i + 1].buffer;
            int64_t na = g->start[b1 + 1] - g->start[b1], nb = g->start[b2 + 1] - g->start[b2];
            A = realloc(A, ((size_t)na + 1) * sizeof *A);
            B = realloc(B, ((size_t)nb + 1) * sizeof *B);
            if (!A || !B) {
                f->oom = true;
                break;
            }
            for (int64_t k = 0; k < na; k++)
                A[k] = c->acc[g->idx[g->start[b1] + k]].task;
            for (int64_t k = 0; k < nb; k++)
                B[k] = c->acc[g->idx[g->start[b2] + k]].task;
            f->pairs += na * nb;
            zq_sets(q, A, na, B, nb);
        }
        free(A);
        free(B);
        free(tn);
        return;
    }
    /* Interleaved tenants: every overlapping pair with a write; the order of the pairs is
       settled later by the clobber check, once they are known to be ordered. */
    f->interleaved = true;
    for (int i = 0; i < nt && !f->oom; i++)
        for (int j = i + 1; j < nt && !f->oom; j++) {
            int32_t b1 = tn[i].buffer, b2 = tn[j].buffer;
            for (int64_t x = g->start[b1]; x < g->start[b1 + 1]; x++) {
                const vaccess *ax = &c->acc[g->idx[x]];
                int64_t f1, e1;
                access_span(c, ax, &f1, &e1);
                for (int64_t y = g->start[b2]; y < g->start[b2 + 1]; y++) {
                    const vaccess *ay = &c->acc[g->idx[y]];
                    if (!(ax->write || ay->write))
                        continue;
                    int64_t f2, e2;
                    access_span(c, ay, &f2, &e2);
                    if (!(f1 < e2 && f2 < e1))
                        continue;
                    if (ax->task == ay->task) {
                        if (f->alias_a < 0) {
                            f->alias_a = g->idx[x];
                            f->alias_b = g->idx[y];
                            f->alias_page = pg;
                        }
                        continue;
                    }
                    check_pair(rc, f, g->idx[x], g->idx[y], pg);
                    zq_pair(q, ax->task, ay->task);
                    zq_pair(qc, ax->task, ay->task);
                }
            }
        }
    free(tn);
}

/* ---------------------------------------------------------------- page clobber */

#define MAX_RUNS 4096 /* contiguous byte runs of one access considered exactly */

typedef struct {
    int64_t *f, *e;
    int64_t n, cap;
} runs;

static bool runs_push(runs *r, int64_t f, int64_t e)
{
    if (r->n == r->cap) {
        int64_t nc = r->cap ? r->cap * 2 : 16;
        int64_t *nf = realloc(r->f, (size_t)nc * sizeof *nf);
        if (!nf)
            return false;
        r->f = nf;
        int64_t *ne = realloc(r->e, (size_t)nc * sizeof *ne);
        if (!ne)
            return false;
        r->e = ne;
        r->cap = nc;
    }
    r->f[r->n] = f;
    r->e[r->n++] = e;
    return true;
}

/* The bytes an access touches within its page as contiguous runs, exactly (a tile of a row-major
 * buffer is one run per row it spans, not the hull from its first to its last byte). 0 on
 * success, 1 when the access has more than MAX_RUNS runs, -1 when out of memory. */
static int access_runs(const vctx *c, const vaccess *a, runs *out)
{
    const ir_buffer *b = &c->p->buffers[a->buffer];
    int64_t lo[IR_MAX_RANK], hi[IR_MAX_RANK];
    ir_box_eval(&a->box, c->pos, lo, hi);
    out->n = 0;
    int rank = b->rank;
    for (int d = 0; d < rank; d++)
        if (hi[d] <= lo[d])
            return 0;
    /* d0: the outermost dimension from which the box is contiguous (inner dims whole). */
    int d0 = rank - 1;
    while (d0 > 0 && lo[d0] == 0 && hi[d0] == b->shape[d0])
        d0--;
    int64_t inner = 1;
    for (int d = d0 + 1; d < rank; d++)
        inner *= b->shape[d];
    int64_t nrun = 1;
    for (int d = 0; d < d0; d++) {
        nrun *= hi[d] - lo[d];
        if (nrun > MAX_RUNS)
            return 1;
    }
    int bits = ir_dtype_bits(b->dtype);
    int64_t idx[IR_MAX_RANK];
    for (int d = 0; d < rank; d++)
        idx[d] = lo[d];
    for (int64_t k = 0; k < nrun; k++) {
        int64_t e0 = 0;
        for (int d = 0; d < rank; d++)
            e0 = e0 * b->shape[d] + (d < d0 ? idx[d] : d == d0 ? lo[d] : 0);
        int64_t e1 = e0 + (rank ? (hi[d0] - lo[d0]) * inner : 1);
        if (!runs_push(out, e0 * bits / 8, ir_dtype_nbytes(b->dtype, e1)))
            return -1;
        for (int d = d0 - 1; d >= 0; d--) {
            if (++idx[d] < hi[d])
                break;
            idx[d] = lo[d];
        }
    }
    return 0;
}

static int cmp_by_pi_desc(const void *x, const void *y, void *arg)
{
    const vctx *c = arg;
    int32_t a = c->pi[c->acc[*(const int64_t *)x].task], b = c->pi[c->acc[*(const int64_t *)y].task];
    return (a < b) - (a > b);
}

typedef struct {
    int64_t read, write;   /* the clobbered read and the other tenant's write, or -1 */
    int32_t page;
    int64_t first, end;    /* bytes of the read whose last writer is the other tenant */
    bool unknown, oom;
} clobber;

/* Once every conflicting pair is ordered, each byte has one last writer before each read, the
 * same in every execution, and the greedy order shows it. A read of tenant A on a page whose
 * bytes were last written through another tenant B reads B's data as A's: refuted. Per read,
 * the page's earlier writes are walked from the latest back, each removing the bytes it covers
 * from the read's still-unexplained bytes, until none is left. */
static void find_clobber(vctx *c, const by_buffer *g, int32_t pg, clobber *cl)
{
    const ir_program *p = c->p;
    int64_t nw = 0, nr = 0;
    for (int32_t b = 0; b < p->n_buffers; b++) {
        if (c->page_of[b] != pg)
            continue;
        for (int64_t i = g->start[b]; i < g->start[b + 1]; i++) {
            if (c->acc[g->idx[i]].write)
                nw++;
            else
                nr++;
        }
    }
    if (!nw || !nr)
        return;
    int64_t *W = malloc((size_t)nw * sizeof *W), *R = malloc((size_t)nr * sizeof *R);
    runs un = {0}, wr = {0}, keep = {0};
    if (!W || !R) {
        cl->oom = true;
        goto out;
    }
    nw = nr = 0;
    for (int32_t b = 0; b < p->n_buffers; b++)
        if (c->page_of[b] == pg)
            for (int64_t i = g->start[b]; i < g->start[b + 1]; i++) {
                int64_t a = g->idx[i];
                if (c->acc[a].write)
                    W[nw++] = a;
                else
                    R[nr++] = a;
            }
    qsort_r(W, (size_t)nw, sizeof *W, cmp_by_pi_desc, c);
    for (int64_t r = 0; r < nr && cl->read < 0; r++) {
        const vaccess *x = &c->acc[R[r]];
        int32_t px = c->pi[x->task];
        int st = access_runs(c, x, &un);
        if (st) {
            cl->oom |= st < 0;
            cl->unknown |= st > 0;
            goto out;
        }
        for (int64_t k = 0; k < nw && un.n && cl->read < 0; k++) {
            const vaccess *w = &c->acc[W[k]];
            if (c->pi[w->task] >= px)
                continue;              /* later, or the reading task's own write */
            if ((st = access_runs(c, w, &wr))) {
                cl->oom |= st < 0;
                cl->unknown |= st > 0;
                goto out;
            }
            keep.n = 0;
            for (int64_t u = 0; u < un.n; u++) {
                int64_t uf = un.f[u], ue = un.e[u];
                for (int64_t v = 0; v < wr.n && uf < ue; v++) {
                    int64_t lo = wr.f[v] > uf ? wr.f[v] : uf, hi = wr.e[v] < ue ? wr.e[v] : ue;
                    if (lo >= hi)
                        continue;
                    if (w->buffer != x->buffer) {
                        cl->read = R[r];
                        cl->write = W[k];
                        cl->page = pg;
                        cl->first = lo;
                        cl->end = hi;
                        break;
                    }
                    /* covered by A's own write: keep what lies outside */
                    if (uf < lo && !runs_push(&keep, uf, lo))
                        cl->oom = true;
                    uf = hi;
                }
                if (cl->read >= 0)
                    break;
                if (uf < ue && !runs_push(&keep, uf, ue))
                    cl->oom = true;
            }
            if (cl->oom)
                goto out;
            runs t = un;
            un = keep;
            keep = t;
        }
    }
out:
    free(W);
    free(R);
    free(un.f);
    free(un.e);
    free(wr.f);
    free(wr.e);
    free(keep.f);
    free(keep.e);
}

static void write_page_witness(vctx *c, const char *kind, const vaccess *x, const vaccess *y,
                               int32_t page, int64_t first, int64_t end)
{
    if (!witness_pair(c, kind, x, y))
        return;
    vbuf *w = &c->witness;
    vb_fmt(w, ", \"page\": %d, \"overlap_bytes\": [%lld, %lld]", page, (long long)first,
           (long long)end);
    if (c->pi[x->task] >= 0) {
        /* the greedy run up to the read: the other tenant's write is its last write there */
        vb_put(w, ", \"interleaving\": {\"run\": ");
        vb_ids(w, c->run.order, c->pi[x->task]);
        vb_fmt(w, ", \"then_start\": [%d]}", x->task);
    }
}

void verify_race(vctx *c)
{
    race_ctx rc = {.c = c, .nt = c->p->n_tasks};
    by_buffer g = {0};
    memo_list memo = {0};
    finding f = {.a = -1, .b = -1, .page = -1, .alias_a = -1, .alias_b = -1, .alias_page = -1};
    zquery q = {.rc = &rc}, qc = {.rc = &rc};
    const ir_program *p = c->p;
    if (normalize(&rc) != IR_OK || build_ancestors(&rc) != IR_OK || group_accesses(c, &g) != IR_OK)
        goto nomem;
    for (int32_t b = 0; b < p->n_buffers && !f.undecided && !f.oom; b++)
        buffer_conflicts(&rc, &f, &q, &qc, g.idx + g.start[b], g.start[b + 1] - g.start[b],
                         &memo);
    for (int32_t pg = 0; p->has_pages && pg < p->pages.n_pages && !f.oom && !f.undecided; pg++)
        page_conflicts(&rc, &f, &q, &qc, &g, pg);
    if (f.oom || q.oom || qc.oom)
        goto nomem;
    if (f.undecided) {
        if (f.deadline)
            vset(c, VERIFY_RACE, VERIFY_UNKNOWN, "not decided: the deadline of %.0f s passed "
                 "after %lld conflicting pairs", c->o->deadline_s, (long long)f.pairs);
        else
            vset(c, VERIFY_RACE, VERIFY_UNKNOWN, "Z3 gave up on a position-dependent overlap "
                 "query");
        goto out;
    }
    /* The coarse query first: UNSAT there is UNSAT for every pair (each of its classes is a
       superset of the exact ones); anything else is settled by the exact classes. */
    int64_t windows;
    zquery *used = &qc;
    Z3_lbool zr = zq_solve(&qc, &windows);
    if (zr != Z3_L_FALSE) {
        used = &q;
        zr = zq_solve(&q, &windows);
    }
    bool c_race = f.a >= 0;
    clobber cl = {.read = -1, .write = -1, .page = -1};
    if (zr == Z3_L_FALSE && !c_race && f.alias_a < 0)
        for (int32_t pg = 0; p->has_pages && pg < p->pages.n_pages && cl.read < 0 &&
                             !cl.oom && !cl.unknown; pg++)
            find_clobber(c, &g, pg, &cl);
    if (cl.oom)
        goto nomem;
    if (f.alias_a >= 0) {
        const vaccess *x = &c->acc[f.alias_a], *y = &c->acc[f.alias_b];
        int64_t f1, e1, f2, e2;
        access_span(c, x, &f1, &e1);
        access_span(c, y, &f2, &e2);
        vset(c, VERIFY_RACE, VERIFY_REFUTED, "task %d %s buffer %d and %s buffer %d, which share "
             "bytes of page %d", x->task, x->write ? "writes" : "reads", x->buffer,
             y->write ? "writes" : "reads", y->buffer, f.alias_page);
        write_page_witness(c, "page_alias", x, y, f.alias_page, f1 > f2 ? f1 : f2,
                           e1 < e2 ? e1 : e2);
    } else if (zr == Z3_L_UNDEF) {
        vset(c, VERIFY_RACE, VERIFY_UNKNOWN, "Z3 gave up on a race window query");
    } else if ((zr == Z3_L_TRUE) != c_race) {
        vset(c, VERIFY_RACE, VERIFY_UNKNOWN,
             "internal disagreement: Z3 says %s, the exact run says %s",
             zr == Z3_L_TRUE ? "two conflicting tasks can be enabled together" : "no race",
             c_race ? "race" : "no race");
    } else if (c_race) {
        const vaccess *x = &c->acc[f.a], *y = &c->acc[f.b];
        vset(c, VERIFY_RACE, VERIFY_REFUTED, "tasks %d and %d can run at once: %s %s buffer %d, "
             "%s %s buffer %d%s", x->task, y->task, x->write ? "write" : "read",
             x->write ? "to" : "of", x->buffer, y->write ? "write" : "read",
             y->write ? "to" : "of", y->buffer, f.page >= 0 ? " on a shared page" : "");
        write_witness(c, x, y, f.page, &f.run);
    } else if (cl.read >= 0) {
        const vaccess *x = &c->acc[cl.read], *y = &c->acc[cl.write];
        vset(c, VERIFY_RACE, VERIFY_REFUTED, "task %d reads buffer %d bytes [%lld, %lld) of page "
             "%d last written through buffer %d by task %d (page clobber)", x->task, x->buffer,
             (long long)cl.first, (long long)cl.end, cl.page, y->buffer, y->task);
        write_page_witness(c, "page_clobber", x, y, cl.page, cl.first, cl.end);
    } else if (cl.unknown) {
        vset(c, VERIFY_RACE, VERIFY_UNKNOWN, "a page access spans more than %d separate byte "
             "runs; the clobber check does not decide it", MAX_RUNS);
    } else {
        vset(c, VERIFY_RACE, VERIFY_PROVED, "%lld conflicting access pairs in %lld conflict "
             "classes over %lld Z3 windows, all ordered (%lld needed the exact run, %lld "
             "ambiguous partial waits)", (long long)f.pairs, (long long)used->n, (long long)windows,
             (long long)f.residual, (long long)rc.n_ambiguous);
        c->cert.has_race_pairs = true;
        c->cert.race_pairs = f.pairs;
    }
out:
    free(q.v);
    free(q.pool);
    free(q.s);
    free(q.e);
    free(qc.v);
    free(qc.pool);
    free(qc.s);
    free(qc.e);
    vrun_free(&f.run);
    free(rc.jstart);
    free(rc.jidx);
    free(rc.nfull);
    free(rc.fcstart);
    free(rc.fcidx);
    free(rc.dvar);
    free(rc.ambiguous);
    free(rc.anc);
    free(rc.base);
    free(rc.lab);
    free(rc.barrier);
    free(g.start);
    free(g.idx);
    free(memo.m);
    return;
nomem:
    vset(c, VERIFY_RACE, VERIFY_UNKNOWN, "out of memory");
    goto out;
}
