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

typedef struct {
    vctx *c;
    int32_t nt;
    /* join set of each wait: for wait (t, w) the producers that all run before t, or ambiguous */
    uint8_t *ambiguous;            /* per task: some wait of it is an ambiguous partial wait */
    int32_t *jstart, *jidx;        /* per task: producers it joins (all waits together) */
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
    if (!rc->jstart || !rc->jidx || !rc->ambiguous)
        return IR_ERR_NOMEM;
    int64_t k = 0;
    for (int32_t t = 0; t < nt; t++) {
        rc->jstart[t] = (int32_t)k;
        if (c->pi[t] < 0)
            continue;
        const ir_task *tk = &p->tasks[t];
        vrun mw = {0};
        bool have_mw = false;
        for (int w = 0; w < tk->n_waits; w++) {
            int32_t ctr = tk->waits[w].counter;
            int64_t th = tk->waits[w].threshold, np = c->nprod[ctr];
            const int32_t *prod = c->g.producers.idx + c->g.producers.start[ctr];
            if (th == np) {
                for (int64_t j = 0; j < np; j++)
                    rc->jidx[k++] = prod[j];
                continue;
            }
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
    int64_t a, b;   /* access indices */
} conflict;

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
    om.key[17] = c->max_seq;
    if (x->rank <= 2)
        for (int i = 0; i < memo->n; i++)
            if (!memcmp(memo->m[i].key, om.key, sizeof om.key))
                return memo->m[i].overlap;
    vz3 z;
    if (!vz3_open(&z, c, VERIFY_RACE, true)) {
        vz3_close(&z);
        return -1;
    }
    Z3_ast pos = vz3_int(&z, "pos", 0);
    Z3_ast cl[2 + 2 * IR_MAX_RANK];
    int n = 0;
    cl[n++] = Z3_mk_ge(z.ctx, pos, vz3_num(&z, 0));
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

typedef struct {
    conflict *v;
    int64_t n, cap;
} conflict_list;

static bool push_conflict(conflict_list *l, int64_t a, int64_t b)
{
    if (l->n == l->cap) {
        int64_t nc = l->cap ? l->cap * 2 : 1024;
        conflict *nv = realloc(l->v, (size_t)nc * sizeof *nv);
        if (!nv)
            return false;
        l->v = nv;
        l->cap = nc;
    }
    l->v[l->n++] = (conflict){a, b};
    return true;
}

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

/* e_t: task t is enabled and unfinished at the cut. */
static Z3_ast enabled_term(race_ctx *rc, vz3 *z, Z3_ast *s, Z3_ast *e, int32_t t)
{
    if (e[t])
        return e[t];
    vctx *c = rc->c;
    const ir_program *p = c->p;
    Z3_context x = z->ctx;
    e[t] = vz3_bool(z, "e", t);
    Z3_solver_assert(x, z->solver, Z3_mk_implies(x, e[t], Z3_mk_not(x, s[t])));
    int32_t qp = queue_pred(c, t);
    if (qp >= 0)
        Z3_solver_assert(x, z->solver, Z3_mk_implies(x, e[t], s[qp]));
    if (!rc->ambiguous[t]) {
        for (int32_t j = rc->jstart[t]; j < rc->jstart[t + 1]; j++)
            Z3_solver_assert(x, z->solver, Z3_mk_implies(x, e[t], s[rc->jidx[j]]));
    } else {
        const ir_task *tk = &p->tasks[t];
        for (int w = 0; w < tk->n_waits; w++) {
            int32_t ctr = tk->waits[w].counter;
            int64_t np = c->nprod[ctr];
            const int32_t *prod = c->g.producers.idx + c->g.producers.start[ctr];
            Z3_ast *v = malloc(((size_t)np + 1) * sizeof *v);
            if (!v)
                continue;
            for (int64_t j = 0; j < np; j++)
                v[j] = s[prod[j]];
            Z3_solver_assert(x, z->solver,
                             Z3_mk_implies(x, e[t], Z3_mk_atleast(x, (unsigned)np, v,
                                                                  (unsigned)tk->waits[w].threshold)));
            free(v);
        }
    }
    return e[t];
}

/* The cut: prefix-closed queues, and every finished task's waits satisfied (with ranks when a
 * partial wait is ambiguous). Tasks outside F never run and stay out of the cut. */
static void assert_cut(race_ctx *rc, vz3 *z, Z3_ast *s, Z3_ast *r)
{
    vctx *c = rc->c;
    const ir_program *p = c->p;
    Z3_context x = z->ctx;
    bool ranks = rc->n_ambiguous > 0;
    for (int32_t t = 0; t < rc->nt; t++) {
        if (c->pi[t] < 0) {
            Z3_solver_assert(x, z->solver, Z3_mk_not(x, s[t]));
            continue;
        }
        int32_t qp = queue_pred(c, t);
        if (qp >= 0) {
            Z3_solver_assert(x, z->solver, Z3_mk_implies(x, s[t], s[qp]));
            if (ranks)
                Z3_solver_assert(x, z->solver, Z3_mk_implies(x, s[t], Z3_mk_lt(x, r[qp], r[t])));
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
        const ir_task *tk = &p->tasks[t];
        for (int w = 0; w < tk->n_waits; w++) {
            int32_t ctr = tk->waits[w].counter;
            int64_t np = c->nprod[ctr];
            const int32_t *prod = c->g.producers.idx + c->g.producers.start[ctr];
            Z3_ast *v = malloc(((size_t)np + 1) * sizeof *v);
            if (!v)
                continue;
            for (int64_t j = 0; j < np; j++) {
                Z3_ast both[2] = {s[prod[j]], Z3_mk_lt(x, r[prod[j]], r[t])};
                v[j] = vz3_and(z, 2, both);
            }
            Z3_solver_assert(x, z->solver,
                             Z3_mk_implies(x, s[t], Z3_mk_atleast(x, (unsigned)np, v,
                                                                  (unsigned)tk->waits[w].threshold)));
            free(v);
        }
    }
}

/* Z3: exists a reachable cut at which some conflicting pair is enabled. */
static Z3_lbool z3_races(race_ctx *rc, const conflict_list *cl, int64_t *za, int64_t *zb)
{
    vctx *c = rc->c;
    int32_t nt = rc->nt;
    vz3 z;
    if (!vz3_open(&z, c, VERIFY_RACE, rc->n_ambiguous > 0)) {
        vz3_close(&z);
        return Z3_L_UNDEF;
    }
    Z3_context x = z.ctx;
    Z3_ast *s = malloc(((size_t)nt + 1) * sizeof *s);
    Z3_ast *r = rc->n_ambiguous ? malloc(((size_t)nt + 1) * sizeof *r) : NULL;
    Z3_ast *e = calloc((size_t)nt + 1, sizeof *e);
    Z3_ast *terms = malloc(((size_t)cl->n + 1) * sizeof *terms);
    Z3_lbool res = Z3_L_UNDEF;
    if (!s || !e || !terms || (rc->n_ambiguous && !r))
        goto out;
    for (int32_t t = 0; t < nt; t++) {
        s[t] = vz3_bool(&z, "s", t);
        if (r)
            r[t] = vz3_int(&z, "r", t);
    }
    assert_cut(rc, &z, s, r);
    /* One disjunct per distinct conflicting task pair. */
    int64_t nterm = 0;
    vkeyset seen = {.width = 2};
    for (int64_t i = 0; i < cl->n; i++) {
        int32_t a = c->acc[cl->v[i].a].task, b = c->acc[cl->v[i].b].task;
        int64_t key[2] = {a < b ? a : b, a < b ? b : a};
        int added = vkeyset_add(&seen, key);
        if (added <= 0) {
            if (added < 0)
                goto out;
            continue;
        }
        Z3_ast both[2] = {enabled_term(rc, &z, s, e, a), enabled_term(rc, &z, s, e, b)};
        terms[nterm++] = vz3_and(&z, 2, both);
    }
    vkeyset_free(&seen);
    Z3_solver_assert(x, z.solver, vz3_or(&z, (int)nterm, terms));
    res = vz3_check(&z);
    if (res == Z3_L_TRUE) {
        *za = *zb = -1;
        for (int32_t t = 0; t < nt && *zb < 0; t++)
            if (e[t] && vz3_model_bool(&z, e[t]))
                *(*za < 0 ? za : zb) = t;
    }
out:
    free(s);
    free(r);
    free(e);
    free(terms);
    vz3_close(&z);
    return res;
}

/* ---------------------------------------------------------------- obligation */

static void write_witness(vctx *c, const vaccess *x, const vaccess *y, int32_t page,
                          const vrun *m)
{
    const ir_program *p = c->p;
    const char *kind = page >= 0 && x->buffer != y->buffer ? "page_race"
                     : p->buffers[x->buffer].kind == IR_KV_CACHE ? "kv_race" : "race";
    if (!vwitness_begin(c, kind))
        return;
    vbuf *w = &c->witness;
    vb_fmt(w, ", \"tasks\": [%d, %d], \"labels\": [", x->task, y->task);
    vb_qstr(w, p->tasks[x->task].label);
    vb_put(w, ", ");
    vb_qstr(w, p->tasks[y->task].label);
    vb_fmt(w, "], \"accesses\": [\"%s\", \"%s\"], \"buffers\": [%d, %d], \"page\": ",
           x->write ? "write" : "read", y->write ? "write" : "read", x->buffer, y->buffer);
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

void verify_race(vctx *c)
{
    race_ctx rc = {.c = c, .nt = c->p->n_tasks};
    by_buffer g = {0};
    conflict_list cl = {0};
    memo_list memo = {0};
    const ir_program *p = c->p;
    int64_t n_pairs = 0, n_residual = 0;
    int64_t race_a = -1, race_b = -1;
    int32_t race_page = -1;
    vrun race_run = {0};
    bool undecided = false;
    if (normalize(&rc) != IR_OK || build_ancestors(&rc) != IR_OK || group_accesses(c, &g) != IR_OK)
        goto nomem;
    /* Same buffer: every unordered pair of accesses with a write, overlapping boxes. */
    for (int32_t b = 0; b < p->n_buffers && race_a < 0 && !undecided; b++) {
        for (int64_t i = g.start[b]; i < g.start[b + 1] && race_a < 0 && !undecided; i++) {
            const vaccess *x = &c->acc[g.idx[i]];
            for (int64_t j = i + 1; j < g.start[b + 1]; j++) {
                const vaccess *y = &c->acc[g.idx[j]];
                if (x->task == y->task || !(x->write || y->write))
                    continue;
                int ov = boxes_overlap(&rc, &memo, &x->box, &y->box);
                if (ov < 0) {
                    undecided = true;
                    break;
                }
                if (!ov)
                    continue;
                n_pairs++;
                if (!push_conflict(&cl, g.idx[i], g.idx[j]))
                    goto nomem;
                if (ordered(&rc, x->task, y->task))
                    continue;
                n_residual++;
                int er = exact_race(&rc, x->task, y->task, &race_run);
                if (er < 0)
                    goto nomem;
                if (er) {
                    race_a = g.idx[i];
                    race_b = g.idx[j];
                    break;
                }
            }
        }
    }
    /* Same page, different buffers: overlapping byte spans. */
    if (p->has_pages && race_a < 0 && !undecided) {
        int32_t np = p->pages.n_pages;
        for (int32_t pg = 0; pg < np && race_a < 0; pg++) {
            for (int mi = 0; mi < p->pages.n_map && race_a < 0; mi++) {
                if (p->pages.map_page[mi] != pg)
                    continue;
                int32_t b1 = p->pages.map_buffer[mi];
                for (int mj = mi + 1; mj < p->pages.n_map && race_a < 0; mj++) {
                    if (p->pages.map_page[mj] != pg)
                        continue;
                    int32_t b2 = p->pages.map_buffer[mj];
                    if (b1 == b2)
                        continue;
                    for (int64_t i = g.start[b1]; i < g.start[b1 + 1] && race_a < 0; i++) {
                        const vaccess *x = &c->acc[g.idx[i]];
                        int64_t f1, e1;
                        access_span(c, x, &f1, &e1);
                        for (int64_t j = g.start[b2]; j < g.start[b2 + 1]; j++) {
                            const vaccess *y = &c->acc[g.idx[j]];
                            if (x->task == y->task || !(x->write || y->write))
                                continue;
                            int64_t f2, e2;
                            access_span(c, y, &f2, &e2);
                            if (!(f1 < e2 && f2 < e1))
                                continue;
                            n_pairs++;
                            if (!push_conflict(&cl, g.idx[i], g.idx[j]))
                                goto nomem;
                            if (ordered(&rc, x->task, y->task))
                                continue;
                            n_residual++;
                            int er = exact_race(&rc, x->task, y->task, &race_run);
                            if (er < 0)
                                goto nomem;
                            if (er) {
                                race_a = g.idx[i];
                                race_b = g.idx[j];
                                race_page = pg;
                                break;
                            }
                        }
                    }
                }
            }
        }
    }
    if (undecided) {
        vset(c, VERIFY_RACE, VERIFY_UNKNOWN, "Z3 gave up on a position-dependent overlap query");
        goto out;
    }
    int64_t za = -1, zb = -1;
    Z3_lbool zr = z3_races(&rc, &cl, &za, &zb);
    bool c_race = race_a >= 0;
    if (zr == Z3_L_UNDEF) {
        vset(c, VERIFY_RACE, VERIFY_UNKNOWN, "Z3 gave up on the race query");
    } else if ((zr == Z3_L_TRUE) != c_race) {
        vset(c, VERIFY_RACE, VERIFY_UNKNOWN,
             "internal disagreement: Z3 says %s, the exact run says %s (Z3 pair %lld/%lld)",
             zr == Z3_L_TRUE ? "a conflicting pair can be enabled together" : "no race",
             c_race ? "race" : "no race", (long long)za, (long long)zb);
    } else if (c_race) {
        const vaccess *x = &c->acc[race_a], *y = &c->acc[race_b];
        vset(c, VERIFY_RACE, VERIFY_REFUTED, "tasks %d and %d can run at once: %s %s buffer %d, "
             "%s %s buffer %d%s", x->task, y->task, x->write ? "write" : "read",
             x->write ? "to" : "of", x->buffer, y->write ? "write" : "read",
             y->write ? "to" : "of", y->buffer, race_page >= 0 ? " on a shared page" : "");
        write_witness(c, x, y, race_page, &race_run);
    } else {
        vset(c, VERIFY_RACE, VERIFY_PROVED, "%lld conflicting access pairs, all ordered "
             "(%lld needed the exact run, %lld ambiguous partial waits)", (long long)n_pairs,
             (long long)n_residual, (long long)rc.n_ambiguous);
        vb_fmt(&c->evidence, "\"race_pairs\": %lld", (long long)n_pairs);
    }
out:
    vrun_free(&race_run);
    free(rc.jstart);
    free(rc.jidx);
    free(rc.ambiguous);
    free(rc.anc);
    free(rc.base);
    free(rc.lab);
    free(rc.barrier);
    free(g.start);
    free(g.idx);
    free(cl.v);
    free(memo.m);
    return;
nomem:
    vset(c, VERIFY_RACE, VERIFY_UNKNOWN, "out of memory");
    goto out;
}
