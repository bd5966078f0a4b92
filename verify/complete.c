/*
 * complete.c - obligation 5: every element a task reads is written earlier in the same launch
 * (by a writer ordered before it) or is persistent state (read-only kinds; KV cache rows before
 * the position), and every IO_OUTPUT element is written.
 *
 * Runs after the race obligation proved every overlapping writer/reader pair ordered, so "before"
 * is the greedy order. Each read becomes the question "is there an element of the read box, at
 * some position, outside every earlier writer's box and outside the persistent rows?"; identical
 * questions (the same boxes, as across layers) are asked once. Z3 answers the disjunction of all
 * distinct questions over a symbolic position; C answers each by coordinate compression at every
 * position (or at the breakpoints when max_seq is very large); they must agree.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "verify/verify_internal.h"

#define C_SCAN_LIMIT 65536   /* positions scanned exhaustively by the C check */
#define CELL_LIMIT 4000000   /* cells of one coordinate-compressed coverage check */

typedef struct {
    int32_t task;         /* reader task, or -1 for an output check */
    int32_t buffer;
    int64_t access;       /* reader access index, or -1 */
    bool kv;              /* rows below pos are persistent */
    ir_box need;
    int nw;
    ir_box *w;            /* writer boxes, owned */
} cover_q;

typedef struct {
    cover_q *v;
    int64_t n, cap;
    /* dedupe: hash -> index, open addressing */
    uint64_t *hash;
    int64_t *slot;
    int64_t hcap;
} cover_set;

static void box_key(uint64_t *h, const ir_box *b)
{
    for (int d = 0; d < b->rank; d++) {
        const ir_pexpr *e[2] = {&b->lo[d], &b->hi[d]};
        for (int k = 0; k < 2; k++) {
            int64_t v[4] = {e[k]->mul, e[k]->add, e[k]->lo, e[k]->hi};
            for (int j = 0; j < 4; j++) {
                *h ^= (uint64_t)v[j] + 0x9e3779b97f4a7c15ULL + (*h << 6) + (*h >> 2);
                *h *= 0xbf58476d1ce4e5b9ULL;
            }
        }
    }
}

static bool box_eq(const ir_box *a, const ir_box *b)
{
    if (a->rank != b->rank)
        return false;
    for (int d = 0; d < a->rank; d++)
        if (memcmp(&a->lo[d], &b->lo[d], sizeof a->lo[d]) || memcmp(&a->hi[d], &b->hi[d], sizeof a->hi[d]))
            return false;
    return true;
}

static bool q_eq(const cover_q *a, const cover_q *b)
{
    if (a->kv != b->kv || a->nw != b->nw || !box_eq(&a->need, &b->need) ||
        (a->task < 0) != (b->task < 0))
        return false;
    for (int i = 0; i < a->nw; i++)
        if (!box_eq(&a->w[i], &b->w[i]))
            return false;
    return true;
}

/* Add q unless an equal question exists; takes ownership of q->w. False on allocation failure. */
static bool add_q(cover_set *s, cover_q *q)
{
    uint64_t h = 0x12345678ULL + (uint64_t)q->kv * 7 + (uint64_t)(q->task < 0) * 13;
    box_key(&h, &q->need);
    for (int i = 0; i < q->nw; i++)
        box_key(&h, &q->w[i]);
    if (s->n * 2 >= s->hcap) {
        int64_t nc = s->hcap ? s->hcap * 2 : 1024;
        uint64_t *nh = calloc((size_t)nc, sizeof *nh);
        int64_t *ns = malloc((size_t)nc * sizeof *ns);
        if (!nh || !ns) {
            free(nh);
            free(ns);
            free(q->w);
            return false;
        }
        for (int64_t i = 0; i < nc; i++)
            ns[i] = -1;
        for (int64_t i = 0; i < s->hcap; i++)
            if (s->slot[i] >= 0) {
                int64_t k = (int64_t)(s->hash[i] & (uint64_t)(nc - 1));
                while (ns[k] >= 0)
                    k = (k + 1) & (nc - 1);
                ns[k] = s->slot[i];
                nh[k] = s->hash[i];
            }
        free(s->hash);
        free(s->slot);
        s->hash = nh;
        s->slot = ns;
        s->hcap = nc;
    }
    int64_t k = (int64_t)(h & (uint64_t)(s->hcap - 1));
    while (s->slot[k] >= 0) {
        if (s->hash[k] == h && q_eq(&s->v[s->slot[k]], q)) {
            free(q->w);
            return true;
        }
        k = (k + 1) & (s->hcap - 1);
    }
    if (s->n == s->cap) {
        int64_t nc = s->cap ? s->cap * 2 : 256;
        cover_q *nv = realloc(s->v, (size_t)nc * sizeof *nv);
        if (!nv) {
            free(q->w);
            return false;
        }
        s->v = nv;
        s->cap = nc;
    }
    s->slot[k] = s->n;
    s->hash[k] = h;
    s->v[s->n++] = *q;
    return true;
}

/* ---------------------------------------------------------------- exact writer-box merging */

/* Tiles, head ranges and partial rows write boxes that abut: merging them before a question is
 * asked keeps the Z3 disjunction small. Two boxes merge along dimension d only when every other
 * dimension has the same bounds and, in d, all four bounds are constants with a.lo <= a.hi ==
 * b.lo <= b.hi: then the merged box is exactly their union, so both checks stay exact. */

static bool pe_const(ir_pexpr e, int64_t *v)
{
    if (e.mul)
        return false;
    *v = e.add < e.lo ? e.lo : e.add > e.hi ? e.hi : e.add;
    return true;
}

static int merge_dim;      /* the dimension qsort's comparator leaves last */

static int cmp_pexpr(const ir_pexpr *a, const ir_pexpr *b)
{
    const int64_t x[4] = {a->mul, a->add, a->lo, a->hi}, y[4] = {b->mul, b->add, b->lo, b->hi};
    for (int i = 0; i < 4; i++)
        if (x[i] != y[i])
            return x[i] < y[i] ? -1 : 1;
    return 0;
}

/* Order: the other dimensions' bounds, then lo in merge_dim. */
static int cmp_box(const void *pa, const void *pb)
{
    const ir_box *a = pa, *b = pb;
    for (int d = 0; d < a->rank; d++) {
        if (d == merge_dim)
            continue;
        int c = cmp_pexpr(&a->lo[d], &b->lo[d]);
        if (!c)
            c = cmp_pexpr(&a->hi[d], &b->hi[d]);
        if (c)
            return c;
    }
    return cmp_pexpr(&a->lo[merge_dim], &b->lo[merge_dim]);
}

static bool same_but(const ir_box *a, const ir_box *b, int dim)
{
    for (int d = 0; d < a->rank; d++)
        if (d != dim && (cmp_pexpr(&a->lo[d], &b->lo[d]) || cmp_pexpr(&a->hi[d], &b->hi[d])))
            return false;
    return true;
}

/* Merge the n boxes of w (one rank) in place; returns the new count. */
static int merge_boxes(ir_box *w, int n)
{
    if (n < 2)
        return n;
    bool changed = true;
    while (changed) {
        changed = false;
        for (int d = 0; d < w[0].rank && n > 1; d++) {
            merge_dim = d;
            qsort(w, (size_t)n, sizeof *w, cmp_box);
            int out = 0;
            for (int i = 0; i < n; i++) {
                ir_box *a = &w[out - (out > 0)];
                int64_t alo, ahi, blo, bhi;
                if (out > 0 && same_but(a, &w[i], d) && pe_const(a->lo[d], &alo) &&
                    pe_const(a->hi[d], &ahi) && pe_const(w[i].lo[d], &blo) &&
                    pe_const(w[i].hi[d], &bhi) && alo <= ahi && ahi == blo && blo <= bhi) {
                    a->hi[d] = w[i].hi[d];
                    changed = true;
                } else {
                    w[out++] = w[i];
                }
            }
            n = out;
        }
    }
    return n;
}

static int cmp64(const void *a, const void *b)
{
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return (x > y) - (x < y);
}

/* C: an uncovered element of q at position pos into pt; true when one exists. -1 when the
 * compressed grid is too large to scan. */
static int uncovered_at(const cover_q *q, int64_t pos, int64_t *pt)
{
    int r = q->need.rank;
    int64_t nlo[IR_MAX_RANK], nhi[IR_MAX_RANK];
    ir_box_eval(&q->need, pos, nlo, nhi);
    int ax = r == 4 ? 1 : 0;      /* the position axis of a KV cache */
    if (q->kv && r >= 1 && nlo[ax] < pos)
        nlo[ax] = pos < nhi[ax] ? pos : nhi[ax];
    for (int d = 0; d < r; d++)
        if (nlo[d] >= nhi[d])
            return 0;
    int64_t *coord[IR_MAX_RANK] = {0};
    int nc[IR_MAX_RANK] = {0};
    int64_t (*wl)[IR_MAX_RANK] = malloc(((size_t)q->nw + 1) * sizeof *wl);
    int64_t (*wh)[IR_MAX_RANK] = malloc(((size_t)q->nw + 1) * sizeof *wh);
    int res = 0;
    double cells = 1;
    if (!wl || !wh) {
        res = -1;
        goto out;
    }
    for (int i = 0; i < q->nw; i++)
        ir_box_eval(&q->w[i], pos, wl[i], wh[i]);
    for (int d = 0; d < r; d++) {
        coord[d] = malloc(((size_t)q->nw * 2 + 2) * sizeof *coord[d]);
        if (!coord[d]) {
            res = -1;
            goto out;
        }
        coord[d][nc[d]++] = nlo[d];
        coord[d][nc[d]++] = nhi[d];
        for (int i = 0; i < q->nw; i++) {
            if (wl[i][d] > nlo[d] && wl[i][d] < nhi[d])
                coord[d][nc[d]++] = wl[i][d];
            if (wh[i][d] > nlo[d] && wh[i][d] < nhi[d])
                coord[d][nc[d]++] = wh[i][d];
        }
        qsort(coord[d], (size_t)nc[d], sizeof *coord[d], cmp64);
        int u = 0;
        for (int i = 0; i < nc[d]; i++)
            if (!u || coord[d][u - 1] != coord[d][i])
                coord[d][u++] = coord[d][i];
        nc[d] = u;
        cells *= (u - 1);
    }
    if (cells > CELL_LIMIT) {
        res = -1;
        goto out;
    }
    int idx[IR_MAX_RANK] = {0};
    for (;;) {
        int64_t p0[IR_MAX_RANK];
        for (int d = 0; d < r; d++)
            p0[d] = coord[d][idx[d]];
        bool cov = false;
        for (int i = 0; i < q->nw && !cov; i++) {
            bool in = true;
            for (int d = 0; d < r && in; d++)
                in = wl[i][d] <= p0[d] && p0[d] < wh[i][d];
            cov = in;
        }
        if (!cov) {
            memcpy(pt, p0, (size_t)r * sizeof *pt);
            res = 1;
            goto out;
        }
        int d = r - 1;
        while (d >= 0 && ++idx[d] >= nc[d] - 1) {
            idx[d] = 0;
            d--;
        }
        if (d < 0)
            break;
    }
out:
    for (int d = 0; d < r; d++)
        free(coord[d]);
    free(wl);
    free(wh);
    return res;
}

static bool q_is_const(const cover_q *q)
{
    if (q->kv)
        return false;
    for (int d = 0; d < q->need.rank; d++)
        if (!ir_pexpr_is_const(q->need.lo[d]) || !ir_pexpr_is_const(q->need.hi[d]))
            return false;
    for (int i = 0; i < q->nw; i++)
        for (int d = 0; d < q->w[i].rank; d++)
            if (!ir_pexpr_is_const(q->w[i].lo[d]) || !ir_pexpr_is_const(q->w[i].hi[d]))
                return false;
    return true;
}

/* C decision for one question over all positions: the first uncovered (pos, point). Returns
 * 1 found, 0 covered, -1 could not decide. */
static int c_decide(const cover_q *q, int64_t lo, int64_t S, int64_t *pos_out, int64_t *pt)
{
    if (q_is_const(q)) {
        *pos_out = lo;
        return uncovered_at(q, lo, pt);
    }
    int undecided = 0;
    int64_t step = S - lo <= C_SCAN_LIMIT ? 1 : (S - lo) / C_SCAN_LIMIT;
    for (int64_t pos = lo; pos < S; pos += step) {
        int u = uncovered_at(q, pos, pt);
        if (u == 1) {
            *pos_out = pos;
            return 1;
        }
        undecided |= u < 0;
    }
    if (step > 1) {
        int u = uncovered_at(q, S - 1, pt);
        if (u == 1) {
            *pos_out = S - 1;
            return 1;
        }
        return -1; /* sampled only */
    }
    return undecided ? -1 : 0;
}

/* Z3 term: some element of q at some position is uncovered. */
static Z3_ast z3_question(vz3 *z, const cover_q *q, int64_t idx, int64_t lo, int64_t S,
                          Z3_ast *pos_out)
{
    Z3_context x = z->ctx;
    int r = q->need.rank;
    Z3_ast pos = vz3_int(z, "pos", idx);
    *pos_out = pos;
    Z3_ast *cl = malloc(((size_t)q->nw + 3 * (size_t)r + 4) * sizeof *cl);
    if (!cl)
        return Z3_mk_false(x);
    int n = 0;
    cl[n++] = Z3_mk_ge(x, pos, vz3_num(z, lo));
    cl[n++] = Z3_mk_lt(x, pos, vz3_num(z, S));
    Z3_ast pt[IR_MAX_RANK];
    for (int d = 0; d < r; d++) {
        char nm[16];
        snprintf(nm, sizeof nm, "x%d_", d);
        pt[d] = vz3_int(z, nm, idx);
        cl[n++] = Z3_mk_le(x, vz3_pexpr(z, q->need.lo[d], pos), pt[d]);
        cl[n++] = Z3_mk_lt(x, pt[d], vz3_pexpr(z, q->need.hi[d], pos));
    }
    if (q->kv && r >= 1)
        cl[n++] = Z3_mk_ge(x, pt[r == 4 ? 1 : 0], pos);
    for (int i = 0; i < q->nw; i++) {
        Z3_ast in[2 * IR_MAX_RANK];
        int m = 0;
        for (int d = 0; d < r; d++) {
            in[m++] = Z3_mk_le(x, vz3_pexpr(z, q->w[i].lo[d], pos), pt[d]);
            in[m++] = Z3_mk_lt(x, pt[d], vz3_pexpr(z, q->w[i].hi[d], pos));
        }
        cl[n++] = Z3_mk_not(x, vz3_and(z, m, in));
    }
    Z3_ast t = vz3_and(z, n, cl);
    free(cl);
    return t;
}

/* Writers of each buffer among tasks that run, as access indices: widx[wstart[b], wstart[b + 1])
 * for buffer b. False on allocation failure. */
static bool index_writers(const vctx *c, int64_t **wstart_out, int64_t **widx_out)
{
    const ir_program *p = c->p;
    int64_t *wstart = calloc((size_t)p->n_buffers + 2, sizeof *wstart);
    int64_t *widx = malloc(((size_t)c->n_acc + 1) * sizeof *widx);
    int64_t *fill = malloc(((size_t)p->n_buffers + 1) * sizeof *fill);
    *wstart_out = wstart;
    *widx_out = widx;
    if (!wstart || !widx || !fill) {
        free(fill);
        return false;
    }
    for (int64_t a = 0; a < c->n_acc; a++)
        if (c->acc[a].write && c->pi[c->acc[a].task] >= 0)
            wstart[c->acc[a].buffer + 1]++;
    for (int32_t b = 0; b < p->n_buffers; b++)
        wstart[b + 1] += wstart[b];
    memcpy(fill, wstart, (size_t)p->n_buffers * sizeof *fill);
    for (int64_t a = 0; a < c->n_acc; a++)
        if (c->acc[a].write && c->pi[c->acc[a].task] >= 0)
            widx[fill[c->acc[a].buffer]++] = a;
    free(fill);
    return true;
}

/* The distinct coverage questions: one per read of a non-read-only buffer by a task that runs
 * (its writers: those finished before the reader), one per IO_OUTPUT buffer (all its writers).
 * False on allocation failure. */
static bool collect_questions(const vctx *c, cover_set *s)
{
    const ir_program *p = c->p;
    int64_t *wstart, *widx;
    bool ok = index_writers(c, &wstart, &widx);
    for (int64_t a = 0; ok && a < c->n_acc; a++) {
        const vaccess *y = &c->acc[a];
        const ir_buffer *b = &p->buffers[y->buffer];
        if (y->write || c->pi[y->task] < 0 || ir_kind_is_readonly(b->kind))
            continue;
        cover_q q = {y->task, y->buffer, a, b->kind == IR_KV_CACHE, y->box, 0, NULL};
        int64_t nw = wstart[y->buffer + 1] - wstart[y->buffer];
        q.w = malloc(((size_t)nw + 1) * sizeof *q.w);
        if (!q.w) {
            ok = false;
            break;
        }
        for (int64_t i = wstart[y->buffer]; i < wstart[y->buffer + 1]; i++) {
            const vaccess *x = &c->acc[widx[i]];
            if (x->task != y->task && c->pi[x->task] < c->pi[y->task])
                q.w[q.nw++] = x->box;
        }
        q.nw = merge_boxes(q.w, q.nw);
        ok = add_q(s, &q);
    }
    for (int32_t bi = 0; ok && bi < p->n_buffers; bi++) {
        const ir_buffer *b = &p->buffers[bi];
        if (b->kind != IR_IO_OUTPUT)
            continue;
        cover_q q = {-1, bi, -1, false, {0}, 0, NULL};
        q.need.rank = b->rank;
        for (int d = 0; d < b->rank; d++) {
            q.need.lo[d] = ir_pexpr_const(0);
            q.need.hi[d] = ir_pexpr_const(b->shape[d]);
        }
        int64_t nw = wstart[bi + 1] - wstart[bi];
        q.w = malloc(((size_t)nw + 1) * sizeof *q.w);
        if (!q.w) {
            ok = false;
            break;
        }
        for (int64_t i = wstart[bi]; i < wstart[bi + 1]; i++)
            q.w[q.nw++] = c->acc[widx[i]].box;
        q.nw = merge_boxes(q.w, q.nw);
        ok = add_q(s, &q);
    }
    free(wstart);
    free(widx);
    return ok;
}

/* The first question C finds open (its position and element), or -1; *undecided when C could
 * not decide one. False when the deadline passed first (the obligation is then UNKNOWN). */
static bool c_decide_all(vctx *c, const cover_set *s, int64_t *bad, int64_t *bad_pos,
                         int64_t bad_pt[IR_MAX_RANK], bool *undecided)
{
    *bad = -1;
    *undecided = false;
    for (int64_t i = 0; i < s->n && *bad < 0; i++) {
        if (vdeadline(c)) {
            vset(c, VERIFY_COMPLETE, VERIFY_UNKNOWN, "not decided: the deadline of %.0f s "
                 "passed after %lld of %lld coverage questions", c->o->deadline_s, (long long)i,
                 (long long)s->n);
            return false;
        }
        int64_t pos, pt[IR_MAX_RANK];
        int u = c_decide(&s->v[i], c->pos_lo, c->max_seq, &pos, pt);
        if (u == 1) {
            *bad = i;
            *bad_pos = pos;
            memcpy(bad_pt, pt, sizeof pt);
        }
        *undecided |= u < 0;
    }
    return true;
}

/* Z3 on the disjunction of every distinct question: *res, and *zq the first question true in its
 * model (-1 for none). False when Z3 did not run: it could not start (the obligation is then
 * UNKNOWN) or memory ran out (*nomem). */
static bool z3_decide_all(vctx *c, const cover_set *s, Z3_lbool *res, int64_t *zq, bool *nomem)
{
    vz3 z;
    *zq = -1;
    if (!vz3_open(&z, c, VERIFY_COMPLETE, true)) {
        vset(c, VERIFY_COMPLETE, VERIFY_UNKNOWN, "could not start Z3");
        return false;
    }
    Z3_ast *terms = malloc(((size_t)s->n + 1) * sizeof *terms);
    Z3_ast *poss = malloc(((size_t)s->n + 1) * sizeof *poss);
    if (!terms || !poss) {
        free(terms);
        free(poss);
        vz3_close(&z);
        *nomem = true;
        return false;
    }
    for (int64_t i = 0; i < s->n; i++)
        terms[i] = z3_question(&z, &s->v[i], i, c->pos_lo, c->max_seq, &poss[i]);
    Z3_solver_assert(z.ctx, z.solver, vz3_or(&z, (int)s->n, terms));
    *res = vz3_check(&z);
    if (*res == Z3_L_TRUE)
        for (int64_t i = 0; i < s->n && *zq < 0; i++)
            if (vz3_model_bool(&z, terms[i]))
                *zq = i;
    free(terms);
    free(poss);
    vz3_close(&z);
    return true;
}

/* Refute with question q: the element C found open (bad_pt, at bad_pos) when C found one. */
static void refute_coverage(vctx *c, const cover_q *q, bool c_found, int64_t bad_pos,
                            const int64_t bad_pt[IR_MAX_RANK])
{
    const ir_program *p = c->p;
    bool out = q->task < 0;
    const ir_buffer *b = &p->buffers[q->buffer];
    char el[128] = "";
    size_t k = 0;
    for (int d = 0; d < q->need.rank && c_found; d++)
        k += (size_t)snprintf(el + k, sizeof el - k, d ? ", %lld" : "%lld", (long long)bad_pt[d]);
    if (out)
        vset(c, VERIFY_COMPLETE, VERIFY_REFUTED, "output buffer %d '%s' element [%s] is never "
             "written", q->buffer, b->name, el);
    else
        vset(c, VERIFY_COMPLETE, VERIFY_REFUTED, "task %d (%s) reads buffer %d '%s' element "
             "[%s] at pos %lld before anything writes it", q->task,
             ir_op_name(p->tasks[q->task].op), q->buffer, b->name, el, (long long)bad_pos);
    if (vwitness_begin(c, out ? "output_unwritten" : b->kind == IR_KV_CACHE
                              ? "kv_read_before_append" : "uninitialized_read")) {
        vb_fmt(&c->witness, ", \"task\": %d, \"buffer\": %d, \"pos\": %lld, \"element\": [%s], "
               "\"message\": ", q->task, q->buffer, (long long)bad_pos, el);
        vb_qstr(&c->witness, c->r->ob[VERIFY_COMPLETE].detail);
        vb_put(&c->witness, ", \"prefix\": ");
        vb_ids(&c->witness, c->run.order, q->task >= 0 ? c->pi[q->task] : c->run.n_done);
    }
}

void verify_complete(vctx *c)
{
    cover_set s = {0};
    int64_t bad = -1, bad_pos = 0, bad_pt[IR_MAX_RANK] = {0}, zq = -1;
    bool c_undecided = false, nomem = false;
    Z3_lbool res = Z3_L_UNDEF;
    if (!collect_questions(c, &s)) {
        nomem = true;
        goto out;
    }
    /* C decides every question, then Z3 their disjunction; they must agree. */
    if (!c_decide_all(c, &s, &bad, &bad_pos, bad_pt, &c_undecided) ||
        !z3_decide_all(c, &s, &res, &zq, &nomem))
        goto out;
    if (res == Z3_L_UNDEF) {
        vset(c, VERIFY_COMPLETE, VERIFY_UNKNOWN, "Z3 gave up on the coverage query");
    } else if ((res == Z3_L_TRUE) != (bad >= 0) && !(c_undecided && res == Z3_L_TRUE)) {
        vset(c, VERIFY_COMPLETE, VERIFY_UNKNOWN, "internal disagreement on coverage: Z3 says %s, "
             "C says %s", res == Z3_L_TRUE ? "incomplete" : "complete",
             bad >= 0 ? "incomplete" : "complete");
    } else if (res == Z3_L_TRUE) {
        refute_coverage(c, &s.v[bad >= 0 ? bad : zq], bad >= 0, bad_pos, bad_pt);
    } else {
        vset(c, VERIFY_COMPLETE, VERIFY_PROVED, "%lld distinct read/output coverage questions "
             "(every read and output element is written first)", (long long)s.n);
    }
out:
    if (nomem)
        vset(c, VERIFY_COMPLETE, VERIFY_UNKNOWN, "out of memory");
    for (int64_t i = 0; i < s.n; i++)
        free(s.v[i].w);
    free(s.v);
    free(s.hash);
    free(s.slot);
}
