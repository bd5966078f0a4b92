/*
 * ir_graph.c - derived structure of a program: producers and waiters per counter, writers and
 * readers per buffer, dependency edges, a topological order, the queues a program runs, and the
 * element footprint of each task access (SPEC.md section 5).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ir/amk_ir.h"

/* Build CSR rows from (row, value) pairs given as a callback-free pair of arrays. */
static ir_status csr_build(ir_csr *c, int32_t nrows, int64_t npairs, const int32_t *row,
                           const int32_t *val)
{
    c->n = nrows;
    c->start = calloc((size_t)nrows + 1, sizeof *c->start);
    c->idx = malloc(((size_t)npairs + 1) * sizeof *c->idx);
    if (!c->start || !c->idx)
        return IR_ERR_NOMEM;
    for (int64_t i = 0; i < npairs; i++)
        c->start[row[i] + 1]++;
    for (int32_t r = 0; r < nrows; r++)
        c->start[r + 1] += c->start[r];
    int32_t *fill = malloc(((size_t)nrows + 1) * sizeof *fill);
    if (!fill)
        return IR_ERR_NOMEM;
    memcpy(fill, c->start, ((size_t)nrows + 1) * sizeof *fill);
    for (int64_t i = 0; i < npairs; i++)
        c->idx[fill[row[i]]++] = val[i];
    free(fill);
    return IR_OK;
}

static void csr_free(ir_csr *c)
{
    free(c->start);
    free(c->idx);
    c->start = c->idx = NULL;
}

void ir_graph_free(ir_graph *g)
{
    csr_free(&g->producers);
    csr_free(&g->waiters);
    csr_free(&g->writers);
    csr_free(&g->readers);
    csr_free(&g->succ);
    csr_free(&g->pred);
    free(g->topo);
    g->topo = NULL;
}

ir_status ir_graph_build(const ir_program *p, ir_graph *g)
{
    memset(g, 0, sizeof *g);
    int32_t nt = p->n_tasks;
    int64_t nw = 0, nin = 0, nout = 0;
    for (int32_t i = 0; i < nt; i++) {
        nw += p->tasks[i].n_waits;
        nin += p->tasks[i].n_inputs;
        nout += p->tasks[i].n_outputs;
    }
    int64_t cap = nt + nw + nin + nout + 1;
    int32_t *row = calloc((size_t)cap, sizeof *row), *val = calloc((size_t)cap, sizeof *val);
    ir_status s = IR_ERR_NOMEM;
    if (!row || !val)
        goto out;
    /* producers: counter -> task */
    for (int32_t i = 0; i < nt; i++) {
        row[i] = p->tasks[i].out_counter;
        val[i] = i;
    }
    if ((s = csr_build(&g->producers, p->n_counters, nt, row, val)) != IR_OK)
        goto out;
    int64_t k = 0;
    for (int32_t i = 0; i < nt; i++)
        for (int j = 0; j < p->tasks[i].n_waits; j++) {
            row[k] = p->tasks[i].waits[j].counter;
            val[k++] = i;
        }
    if ((s = csr_build(&g->waiters, p->n_counters, k, row, val)) != IR_OK)
        goto out;
    k = 0;
    for (int32_t i = 0; i < nt; i++)
        for (int j = 0; j < p->tasks[i].n_outputs; j++) {
            row[k] = p->tasks[i].outputs[j];
            val[k++] = i;
        }
    if ((s = csr_build(&g->writers, p->n_buffers, k, row, val)) != IR_OK)
        goto out;
    k = 0;
    for (int32_t i = 0; i < nt; i++)
        for (int j = 0; j < p->tasks[i].n_inputs; j++) {
            row[k] = p->tasks[i].inputs[j];
            val[k++] = i;
        }
    if ((s = csr_build(&g->readers, p->n_buffers, k, row, val)) != IR_OK)
        goto out;
    /* Dependency edges: every producer of a waited counter precedes the waiter. Count first;
       the pair count can exceed the arrays above, so allocate afresh. */
    int64_t ne = 0;
    for (int32_t i = 0; i < nt; i++)
        for (int j = 0; j < p->tasks[i].n_waits; j++) {
            int32_t c = p->tasks[i].waits[j].counter;
            ne += g->producers.start[c + 1] - g->producers.start[c];
        }
    if (ne > ((int64_t)1 << 31) - 2) {
        s = IR_ERR_NOMEM;
        goto out;
    }
    free(row);
    free(val);
    row = calloc((size_t)ne + 1, sizeof *row);
    val = calloc((size_t)ne + 1, sizeof *val);
    if (!row || !val) {
        s = IR_ERR_NOMEM;
        goto out;
    }
    k = 0;
    for (int32_t i = 0; i < nt; i++)
        for (int j = 0; j < p->tasks[i].n_waits; j++) {
            int32_t c = p->tasks[i].waits[j].counter;
            for (int32_t e = g->producers.start[c]; e < g->producers.start[c + 1]; e++) {
                row[k] = g->producers.idx[e];
                val[k++] = i;
            }
        }
    if ((s = csr_build(&g->succ, nt, k, row, val)) != IR_OK)
        goto out;
    if ((s = csr_build(&g->pred, nt, k, val, row)) != IR_OK)
        goto out;
    /* Kahn's algorithm, smallest id first among ready tasks for determinism is not needed:
       FIFO over increasing ids is deterministic already. */
    int32_t *indeg = calloc((size_t)nt + 1, sizeof *indeg);
    int32_t *order = malloc(((size_t)nt + 1) * sizeof *order);
    if (!indeg || !order) {
        free(indeg);
        free(order);
        s = IR_ERR_NOMEM;
        goto out;
    }
    for (int64_t e = 0; e < k; e++)
        indeg[val[e]]++;
    int32_t head = 0, tail = 0;
    for (int32_t i = 0; i < nt; i++)
        if (!indeg[i])
            order[tail++] = i;
    while (head < tail) {
        int32_t u = order[head++];
        for (int32_t e = g->succ.start[u]; e < g->succ.start[u + 1]; e++)
            if (--indeg[g->succ.idx[e]] == 0)
                order[tail++] = g->succ.idx[e];
    }
    free(indeg);
    if (tail == nt)
        g->topo = order;
    else
        free(order);
    s = IR_OK;
out:
    free(row);
    free(val);
    if (s != IR_OK)
        ir_graph_free(g);
    return s;
}

/* ---------------------------------------------------------------- queues */

static int cmp_i32(const void *a, const void *b)
{
    int32_t x = *(const int32_t *)a, y = *(const int32_t *)b;
    return (x > y) - (x < y);
}

ir_status ir_program_queues(const ir_program *p, ir_queue_order order, int32_t *n_queues,
                            int32_t **start, int32_t **tasks, ir_error *err)
{
    *start = *tasks = NULL;
    *n_queues = 0;
    int32_t nt = p->n_tasks;
    if (p->has_plan) {
        const ir_plan *pl = &p->plan;
        if (pl->queue_start[pl->grid] != nt)
            return ir_fail(err, IR_ERR_MALFORMED, "launch_plan.queues",
                           "plan lists %d tasks, program has %d", pl->queue_start[pl->grid], nt);
        *start = malloc(((size_t)pl->grid + 1) * sizeof **start);
        *tasks = malloc(((size_t)nt + 1) * sizeof **tasks);
        if (!*start || !*tasks)
            goto nomem;
        memcpy(*start, pl->queue_start, ((size_t)pl->grid + 1) * sizeof **start);
        memcpy(*tasks, pl->queue_tasks, (size_t)nt * sizeof **tasks);
        *n_queues = (int32_t)pl->grid;
        return IR_OK;
    }
    /* Rank of each task in the chosen order. */
    int32_t *rank = malloc(((size_t)nt + 1) * sizeof *rank);
    if (!rank)
        goto nomem;
    if (order == IR_ORDER_TOPO) {
        ir_graph g;
        if (ir_graph_build(p, &g) != IR_OK) {
            free(rank);
            goto nomem;
        }
        if (!g.topo) {
            ir_graph_free(&g);
            free(rank);
            return ir_fail(err, IR_ERR_MALFORMED, "tasks", "the dependency graph has a cycle, "
                           "so there is no topological queue order (AMK's loader refuses to "
                           "load such a program)");
        }
        for (int32_t i = 0; i < nt; i++)
            rank[g.topo[i]] = i;
        ir_graph_free(&g);
    } else {
        for (int32_t i = 0; i < nt; i++)
            rank[i] = i;
    }
    /* Distinct sm values, sorted; then one queue per unassigned task. */
    int32_t *sms = malloc(((size_t)nt + 1) * sizeof *sms);
    int32_t ns = 0, nnull = 0;
    if (!sms) {
        free(rank);
        goto nomem;
    }
    for (int32_t i = 0; i < nt; i++) {
        if (p->tasks[i].sm >= 0)
            sms[ns++] = p->tasks[i].sm;
        else
            nnull++;
    }
    qsort(sms, (size_t)ns, sizeof *sms, cmp_i32);
    int32_t nd = 0;
    for (int32_t i = 0; i < ns; i++)
        if (!nd || sms[nd - 1] != sms[i])
            sms[nd++] = sms[i];
    int32_t nq = nd + nnull;
    int32_t *qof = malloc(((size_t)nt + 1) * sizeof *qof);
    int32_t *by_rank = malloc(((size_t)nt + 1) * sizeof *by_rank);
    int32_t *fill = calloc((size_t)nq + 1, sizeof *fill);
    *start = calloc((size_t)nq + 1, sizeof **start);
    *tasks = malloc(((size_t)nt + 1) * sizeof **tasks);
    if (!qof || !by_rank || !fill || !*start || !*tasks) {
        free(qof);
        free(by_rank);
        free(fill);
        free(sms);
        free(rank);
        goto nomem;
    }
    int32_t next_null = nd;
    for (int32_t i = 0; i < nt; i++) {
        if (p->tasks[i].sm >= 0) {
            int32_t *f = bsearch(&p->tasks[i].sm, sms, (size_t)nd, sizeof *sms, cmp_i32);
            qof[i] = (int32_t)(f - sms);
        } else {
            qof[i] = next_null++;
        }
        (*start)[qof[i] + 1]++;
        by_rank[rank[i]] = i;
    }
    for (int32_t q = 0; q < nq; q++)
        (*start)[q + 1] += (*start)[q];
    memcpy(fill, *start, (size_t)nq * sizeof *fill);
    for (int32_t r = 0; r < nt; r++) {
        int32_t t = by_rank[r];
        (*tasks)[fill[qof[t]]++] = t;
    }
    *n_queues = nq;
    free(qof);
    free(by_rank);
    free(fill);
    free(sms);
    free(rank);
    return IR_OK;
nomem:
    free(*start);
    free(*tasks);
    *start = *tasks = NULL;
    return ir_fail(err, IR_ERR_NOMEM, "", "out of memory");
}

/* ---------------------------------------------------------------- footprints */

/* a + b, saturated to the int64 range (hostile params must not overflow). */
static int64_t sat_add(int64_t a, int64_t b)
{
    __int128 v = (__int128)a + b;
    return v > INT64_MAX ? INT64_MAX : v < INT64_MIN ? INT64_MIN : (int64_t)v;
}

/* a * b, saturated likewise. */
static int64_t sat_mul(int64_t a, int64_t b)
{
    __int128 v = (__int128)a * b;
    return v > INT64_MAX ? INT64_MAX : v < INT64_MIN ? INT64_MIN : (int64_t)v;
}

static ir_pexpr pe_add(ir_pexpr e, int64_t c)
{
    /* e + c, keeping the unbounded sentinels unbounded. */
    ir_pexpr r = e;
    r.add = sat_add(e.add, c);
    if (e.lo != INT64_MIN)
        r.lo = sat_add(e.lo, c);
    if (e.hi != INT64_MAX)
        r.hi = sat_add(e.hi, c);
    return r;
}

static ir_status need_int(const ir_task *t, const char *key, int64_t *v, ir_error *err)
{
    if (ir_task_int(t, key, v))
        return IR_OK;
    char where[64];
    snprintf(where, sizeof where, "tasks[%d].params.%s", t->id, key);
    return ir_fail(err, IR_ERR_MALFORMED, where, "%s needs integer param '%s' for its footprint",
                   ir_op_name(t->op), key);
}

static ir_status need_pexpr(const ir_task *t, const char *key, ir_pexpr *v, ir_error *err)
{
    if (ir_task_pexpr(t, key, v))
        return IR_OK;
    char where[64];
    snprintf(where, sizeof where, "tasks[%d].params.%s", t->id, key);
    return ir_fail(err, IR_ERR_MALFORMED, where, "%s needs integer param '%s' for its footprint",
                   ir_op_name(t->op), key);
}

/* Restrict dimension d of box to [lo, lo + len). */
static void restrict_dim(ir_box *b, int d, ir_pexpr lo, ir_pexpr hi)
{
    if (d < 0 || d >= b->rank)
        return;
    b->lo[d] = lo;
    b->hi[d] = hi;
}

/* The position axis of a KV cache: rows of [S, D] and [S, n_kv, head_dim], axis 1 of the batched
 * [B, S, n_kv, head_dim]. */
static int cache_axis(const ir_buffer *cache) { return cache->rank == 4 ? 1 : 0; }

/* The cache slot [pos, pos+1) that KV_APPEND and FUSED recipe 5 write. */
static ir_status cache_row(const ir_program *p, const ir_task *t, ir_box *out, ir_error *err)
{
    ir_pexpr pos;
    ir_status s = need_pexpr(t, "pos", &pos, err);
    if (s == IR_OK)
        restrict_dim(out, cache_axis(&p->buffers[t->outputs[0]]), pos, pe_add(pos, 1));
    return s;
}

bool ir_gemv_quantized(const ir_task *t)
{
    int64_t q;
    return (t->op == IR_OP_GEMV_TILE || t->op == IR_OP_GEMM_TILE) && ir_task_int(t, "qdtype", &q) &&
           (q == IR_I8 || q == IR_I4) && t->n_inputs >= 3;
}

bool ir_recipe_weights(int64_t recipe, int *first_slot, int *n_weights)
{
    switch (recipe) {
    case IR_RECIPE_GEMV_PAIR: *first_slot = 1, *n_weights = 2; return true;
    case IR_RECIPE_NORM_GEMV: *first_slot = 2, *n_weights = 1; return true;
    case IR_RECIPE_NORM_GEMV_PAIR: *first_slot = 2, *n_weights = 2; return true;
    case IR_RECIPE_SILU_GEMV: *first_slot = 2, *n_weights = 1; return true;
    default: return false;
    }
}

bool ir_attention_heads(const ir_task *t, int64_t nkv, int64_t *off, int64_t *n)
{
    *off = 0;
    if (ir_task_param(t, "kv_head_off") && !ir_task_int(t, "kv_head_off", off))
        return false;
    *n = nkv - *off;
    return !ir_task_param(t, "kv_heads") || ir_task_int(t, "kv_heads", n);
}

/* The head geometry of an attention task: head_dim, query heads per KV head, and its KV head
 * range [g0, g0 + gn). */
typedef struct {
    int64_t hd, group, g0, gn;
} head_span;

static ir_status need_heads(const ir_task *t, head_span *h, ir_error *err)
{
    int64_t nh, nkv;
    ir_status s;
    if ((s = need_int(t, "head_dim", &h->hd, err)) || (s = need_int(t, "n_heads", &nh, err)) ||
        (s = need_int(t, "n_kv_heads", &nkv, err)))
        return s;
    if (!ir_attention_heads(t, nkv, &h->g0, &h->gn)) {
        /* one of the two is present but not an int: name it */
        int64_t unused;
        const char *bad = ir_task_int(t, "kv_head_off", &unused) ? "kv_heads" : "kv_head_off";
        return need_int(t, bad, &unused, err);
    }
    h->group = nkv > 0 && nh % nkv == 0 ? nh / nkv : 1;
    return IR_OK;
}

/* Columns [g0 * w, (g0 + gn) * w) of the last dimension: w elements per KV head. */
static void restrict_heads(ir_box *out, const head_span *h, int64_t w)
{
    int64_t lo = sat_mul(h->g0, w), hi = sat_mul(sat_add(h->g0, h->gn), w);
    restrict_dim(out, out->rank - 1, ir_pexpr_const(lo), ir_pexpr_const(hi));
}

ir_status ir_task_footprint(const ir_program *p, const ir_task *t, bool is_output, int slot,
                            ir_box *out, ir_error *err)
{
    int32_t bid = is_output ? t->outputs[slot] : t->inputs[slot];
    const ir_buffer *b = &p->buffers[bid];
    out->rank = b->rank;
    for (int d = 0; d < b->rank; d++) {
        out->lo[d] = ir_pexpr_const(0);
        out->hi[d] = ir_pexpr_const(b->shape[d]);
    }
    int last = b->rank - 1;
    int64_t n_off, n_tile, m_off, m_tile, recipe;
    ir_status s;
    switch (t->op) {
    case IR_OP_GEMV_TILE:
    case IR_OP_GEMM_TILE:
        if ((s = need_int(t, "n_off", &n_off, err)) || (s = need_int(t, "N_tile", &n_tile, err)))
            return s;
        if (t->op == IR_OP_GEMM_TILE) {
            if ((s = need_int(t, "M_tile", &m_tile, err)))
                return s;
            if (!ir_task_int(t, "m_off", &m_off))
                m_off = 0;
        }
        if (is_output) {
            restrict_dim(out, last, ir_pexpr_const(n_off), ir_pexpr_const(sat_add(n_off, n_tile)));
            if (t->op == IR_OP_GEMM_TILE && b->rank >= 2)
                restrict_dim(out, 0, ir_pexpr_const(m_off), ir_pexpr_const(sat_add(m_off, m_tile)));
        } else if (slot == 1 || (slot >= 2 && ir_gemv_quantized(t))) {
            /* weight rows; quantized: the scales and zeros rows of those output columns too */
            restrict_dim(out, 0, ir_pexpr_const(n_off), ir_pexpr_const(sat_add(n_off, n_tile)));
        } else if (slot == 2) {
            restrict_dim(out, last, ir_pexpr_const(n_off), ir_pexpr_const(sat_add(n_off, n_tile)));
        } else if (slot == 0 && t->op == IR_OP_GEMM_TILE && b->rank >= 2) {
            restrict_dim(out, 0, ir_pexpr_const(m_off), ir_pexpr_const(sat_add(m_off, m_tile)));
        }
        return IR_OK;
    case IR_OP_FUSED: {
        if (!ir_task_int(t, "recipe", &recipe))
            return IR_OK; /* unknown recipes touch whole buffers */
        if (recipe == IR_RECIPE_ROPE_APPEND)
            return is_output ? cache_row(p, t, out, err) : IR_OK;
        if (recipe == IR_RECIPE_ROPE_ATTENTION) {
            head_span h;
            ir_pexpr pos;
            if ((s = need_heads(t, &h, err)))
                return s;
            if (is_output || slot == 0) {
                restrict_heads(out, &h, sat_mul(h.group, h.hd));    /* o, q: its query heads */
            } else if (slot <= 4) {
                restrict_heads(out, &h, h.hd);                      /* k, v, kc, vc */
                if (slot >= 3) {
                    if ((s = need_pexpr(t, "pos", &pos, err)))
                        return s;
                    restrict_dim(out, 0, ir_pexpr_const(0), pos);   /* rows [0, pos) */
                }
            }
            return IR_OK;
        }
        int w0, nw;
        if (!ir_recipe_weights(recipe, &w0, &nw))
            return IR_OK;
        if ((s = need_int(t, "n_off", &n_off, err)) || (s = need_int(t, "N_tile", &n_tile, err)))
            return s;
        ir_pexpr lo = ir_pexpr_const(n_off), hi = ir_pexpr_const(sat_add(n_off, n_tile));
        if (is_output)
            restrict_dim(out, last, lo, hi);            /* y (ya, yb) */
        else if (slot >= w0 && slot < w0 + nw)
            restrict_dim(out, 0, lo, hi);               /* weight rows */
        else if (slot == w0 + nw)
            restrict_dim(out, last, lo, hi);            /* bias */
        return IR_OK;
    }
    case IR_OP_KV_APPEND:
        if (is_output)
            return cache_row(p, t, out, err);
        if (slot == 1)     /* AMK's [src, cache]: the cache is bound, not read */
            restrict_dim(out, 0, ir_pexpr_const(0), ir_pexpr_const(0));
        return IR_OK;
    case IR_OP_ATTENTION_TILE: {
        /* A head range (kv_head_off / kv_heads) narrows every slot to its heads' columns. */
        head_span h;
        bool ranged = ir_task_param(t, "kv_head_off") || ir_task_param(t, "kv_heads");
        if (ranged && (s = need_heads(t, &h, err)))
            return s;
        bool partial = ir_task_int(t, "m_off", &m_off);
        if (!is_output && (slot == 1 || slot == 2)) {
            int64_t start;
            ir_pexpr len;
            if ((s = need_int(t, "kv_start", &start, err)) || (s = need_pexpr(t, "kv_len", &len, err)))
                return s;
            restrict_dim(out, cache_axis(b), ir_pexpr_const(start), pe_add(len, start));
            if (ranged && b->rank >= 3)     /* [.., n_kv, head_dim]: the heads axis */
                restrict_dim(out, b->rank - 2, ir_pexpr_const(h.g0),
                             ir_pexpr_const(sat_add(h.g0, h.gn)));
            else if (ranged)
                restrict_heads(out, &h, h.hd);
        } else if (is_output && partial) {
            restrict_dim(out, 0, ir_pexpr_const(m_off), ir_pexpr_const(sat_add(m_off, 1)));
            if (ranged)
                restrict_heads(out, &h, sat_mul(h.group, sat_add(h.hd, 2)));
        } else if (ranged && (is_output || slot == 0)) {
            restrict_heads(out, &h, sat_mul(h.group, h.hd));
        }
        return IR_OK;
    }
    default:
        return IR_OK;
    }
}

void ir_box_eval(const ir_box *b, int64_t pos, int64_t *lo, int64_t *hi)
{
    for (int d = 0; d < b->rank; d++) {
        lo[d] = ir_pexpr_eval(b->lo[d], pos);
        hi[d] = ir_pexpr_eval(b->hi[d], pos);
    }
}

/* ---------------------------------------------------------------- AMK's loader */

int64_t ir_amk_loader_smem(const ir_program *p, int64_t threads)
{
    int64_t dyn = p->has_config ? p->config.smem_bytes_per_block : 0, warps = (threads + 31) / 32;
    for (int32_t i = 0; i < p->n_tasks; i++) {
        const ir_task *t = &p->tasks[i];
        int64_t v;
        if (t->op == IR_OP_ATTENTION_TILE && ir_task_int(t, "head_dim", &v) && v > 0 &&
            v < (1 << 20) && warps * 2 * v * 4 > dyn)
            dyn = warps * 2 * v * 4;            /* q and acc, head_dim floats each, per warp */
        if (t->op == IR_OP_GEMV_TILE && ir_gemv_quantized(t) && ir_task_int(t, "K", &v) && v > 0 &&
            (v < 16384 ? v : 16384) * 4 > dyn)
            dyn = (v < 16384 ? v : 16384) * 4;  /* x cached as floats, K up to 16384 */
    }
    return dyn;
}

static int cmp_i64(const void *a, const void *b)
{
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return (x > y) - (x < y);
}

/* AMK's topological order: Kahn's algorithm over the distinct producer -> waiter edges, each
 * task's successors in increasing id, a FIFO seeded with the sources in increasing id. */
static ir_status amk_topo(const ir_program *p, int32_t *order, ir_error *err)
{
    int32_t nt = p->n_tasks;
    ir_graph g;
    if (ir_graph_build(p, &g) != IR_OK)
        return ir_fail(err, IR_ERR_NOMEM, "", "out of memory");
    int64_t ne = 0;
    for (int32_t t = 0; t < nt; t++)
        ne += g.pred.start[t + 1] - g.pred.start[t];
    int64_t *e = malloc(((size_t)ne + 1) * sizeof *e);
    int32_t *indeg = calloc((size_t)nt + 1, sizeof *indeg), *start = calloc((size_t)nt + 2, sizeof *start);
    int32_t *succ = malloc(((size_t)ne + 1) * sizeof *succ);
    if (!e || !indeg || !start || !succ) {
        free(e), free(indeg), free(start), free(succ);
        ir_graph_free(&g);
        return ir_fail(err, IR_ERR_NOMEM, "", "out of memory");
    }
    ne = 0;
    for (int32_t t = 0; t < nt; t++)
        for (int32_t k = g.pred.start[t]; k < g.pred.start[t + 1]; k++)
            e[ne++] = (int64_t)g.pred.idx[k] * nt + t;
    ir_graph_free(&g);
    qsort(e, (size_t)ne, sizeof *e, cmp_i64);
    int64_t nu = 0;
    for (int64_t i = 0; i < ne; i++)
        if (!nu || e[nu - 1] != e[i])
            e[nu++] = e[i];
    for (int64_t i = 0; i < nu; i++) {
        start[e[i] / nt + 1]++;
        indeg[e[i] % nt]++;
    }
    for (int32_t t = 0; t < nt; t++)
        start[t + 1] += start[t];
    for (int64_t i = 0; i < nu; i++)
        succ[i] = (int32_t)(e[i] % nt);   /* sorted by (from, to): already grouped by from */
    int32_t head = 0, tail = 0;
    for (int32_t t = 0; t < nt; t++)
        if (!indeg[t])
            order[tail++] = t;
    while (head < tail) {
        int32_t t = order[head++];
        for (int32_t k = start[t]; k < start[t + 1]; k++)
            if (--indeg[succ[k]] == 0)
                order[tail++] = succ[k];
    }
    free(e), free(indeg), free(start), free(succ);
    if (tail < nt)
        return ir_fail(err, IR_ERR_MALFORMED, "tasks", "the dependency graph has a cycle, so "
                       "there is no topological order: AMK's loader refuses to load it");
    return IR_OK;
}

/* A min-heap of SM loads, ordered like AMK's (bytes, flops, count, sm) tuples. */
typedef struct {
    int64_t k[4];
} sm_load;

static bool load_less(const sm_load *a, const sm_load *b)
{
    for (int i = 0; i < 4; i++)
        if (a->k[i] != b->k[i])
            return a->k[i] < b->k[i];
    return false;
}

static void heap_down(sm_load *h, int64_t n, int64_t i)
{
    for (;;) {
        int64_t l = 2 * i + 1, r = l + 1, m = i;
        if (l < n && load_less(&h[l], &h[m]))
            m = l;
        if (r < n && load_less(&h[r], &h[m]))
            m = r;
        if (m == i)
            return;
        sm_load t = h[i];
        h[i] = h[m];
        h[m] = t;
        i = m;
    }
}

ir_status ir_amk_loader_plan(ir_program *p, const ir_target *t, ir_error *err)
{
    int32_t nt = p->n_tasks;
    int64_t g = t->num_sms;
    if (g < 1 || g > (1 << 20))
        return ir_fail(err, IR_ERR_MALFORMED, "target.num_sms", "must be in [1, 2^20]");
    if (p->has_config && (p->config.threads_per_block < 1 || p->config.threads_per_block > 256))
        return ir_fail(err, IR_ERR_UNSUPPORTED, "config.threads_per_block", "%lld: AMK's loader "
                       "refuses more than 256 threads per block",
                       (long long)p->config.threads_per_block);
    int32_t *order = malloc(((size_t)nt + 1) * sizeof *order);
    int32_t *sm_of = malloc(((size_t)nt + 1) * sizeof *sm_of);
    sm_load *h = malloc((size_t)g * sizeof *h);
    if (!order || !sm_of || !h) {
        free(order), free(sm_of), free(h);
        return ir_fail(err, IR_ERR_NOMEM, "", "out of memory");
    }
    ir_status s = amk_topo(p, order, err);
    bool has_sm = false, in_range = true;
    for (int32_t i = 0; i < nt; i++) {
        has_sm |= p->tasks[i].sm >= 0;
        in_range &= p->tasks[i].sm < g;
    }
    if (s == IR_OK && has_sm && in_range) {
        /* the tasks' own SMs, the unassigned ones on SM 0 */
        for (int32_t i = 0; i < nt; i++)
            sm_of[i] = p->tasks[i].sm >= 0 ? p->tasks[i].sm : 0;
    } else if (s == IR_OK) {
        /* least-loaded SM first (est_bytes, then est_flops, then count, then SM number) */
        for (int64_t q = 0; q < g; q++)
            h[q] = (sm_load){{0, 0, 0, q}};
        for (int32_t k = 0; k < nt; k++) {
            const ir_task *x = &p->tasks[order[k]];
            sm_of[order[k]] = (int32_t)h[0].k[3];
            h[0].k[0] += x->est_bytes;
            h[0].k[1] += x->est_flops;
            h[0].k[2]++;
            heap_down(h, g, 0);
        }
    }
    if (s == IR_OK) {
        ir_plan plan = {0};
        s = ir_plan_alloc(&plan, g, nt);
        if (s != IR_OK) {
            s = ir_fail(err, IR_ERR_NOMEM, "", "out of memory");
        } else {
            for (int32_t i = 0; i < nt; i++)
                plan.queue_start[sm_of[i] + 1]++;
            for (int64_t q = 0; q < g; q++)
                plan.queue_start[q + 1] += plan.queue_start[q];
            int32_t *fill = malloc((size_t)g * sizeof *fill);
            if (!fill) {
                ir_plan_free(&plan);
                s = ir_fail(err, IR_ERR_NOMEM, "", "out of memory");
            } else {
                memcpy(fill, plan.queue_start, (size_t)g * sizeof *fill);
                for (int32_t k = 0; k < nt; k++)   /* each queue in the topological order */
                    plan.queue_tasks[fill[sm_of[order[k]]]++] = order[k];
                free(fill);
                plan.threads_per_block = p->has_config ? p->config.threads_per_block : 256;
                plan.dynamic_smem_bytes = ir_amk_loader_smem(p, plan.threads_per_block);
                plan.pipelining_depth = p->has_config ? p->config.pipelining_depth : 0;
                if (p->has_plan)
                    ir_plan_free(&p->plan);
                p->plan = plan;
                p->has_plan = true;
                for (int32_t i = 0; i < nt; i++)
                    p->tasks[i].sm = sm_of[i];
            }
        }
    }
    free(order), free(sm_of), free(h);
    return s;
}
