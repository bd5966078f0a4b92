/*
 * lower_pages.c - binds every ACTIVATION buffer to a physical page (scratch slot).
 *
 * Positions are task ids, which are a topological order. A buffer's live range is
 * [first task touching it, last task touching it]. Two buffers may share a page only when every
 * access of the earlier one happens before every access of the later one through dependency
 * edges alone (queue order is not relied on, so the rule holds for any queue assignment). The
 * test is cheap because of barrier tasks: task T is a barrier when every earlier task is one of
 * its ancestors and every later task one of its descendants. If a barrier T lies in
 * [last(A), first(B)] and last(A) < first(B), every access of A is ordered before every access
 * of B. So a buffer frees its page at free_at(A) = the first barrier at or after last(A) (plus
 * one when that barrier is last(A) itself), and B may take the page when first(B) >= free_at(A).
 *
 * Barriers are found in linear time: T at position p has all earlier tasks as ancestors iff it
 * is the only sink of the prefix [0, p], i.e. every u < p has a successor at a position <= p;
 * and all later tasks as descendants iff every v > p has a predecessor at a position >= p.
 *
 * Layer window: the buffers of one page are all touched within two adjacent layers (the caller
 * says which layer each task belongs to), so conflicts through a page stay within two adjacent
 * layers, which keeps the verifier's windowed race check applicable.
 *
 * SMEM: a buffer goes to SMEM only when every task touching it runs on one queue and the SMEM
 * pages of that queue whose live ranges overlap never sum above smem_bytes_per_block; otherwise
 * it goes to GLOBAL_SCRATCH. Pages of different spaces or queues are never shared.
 */
#include <stdlib.h>
#include <string.h>

#include "lower/lower_internal.h"

#define NEVER INT32_MAX

typedef struct {
    int32_t first, last, free_at;
} span;

typedef struct {
    ir_space space;
    int32_t queue;          /* SMEM pages: the queue owning them; -1 for GLOBAL_SCRATCH */
    int32_t layer_lo, layer_hi; /* layers its buffers' accesses span */
    int64_t nbytes;
    int32_t live_start, live_end;
    int32_t n_occ, cap_occ;
    span *occ;              /* occupants sorted by first (graph_color); last one (linear) */
} page;

typedef struct {
    const ir_program *p;
    int64_t smem_budget;
    bool limit_layers;      /* a page's accesses may span two adjacent layers at most */
    int32_t n_pages, cap_pages;
    page *pages;
    int32_t *buf_page;      /* per buffer: page id or -1 */
} allocator;

/* ---------------------------------------------------------------- barriers and spans */

/* free_at of every task position p (as the last access of some buffer): the first barrier
 * at or after p, plus one when it is p itself; NEVER when no barrier follows. */
static int32_t *compute_free_at(const ir_program *p)
{
    int32_t n = p->n_tasks, nc = p->n_counters;
    int32_t *last_prod = malloc((size_t)(nc ? nc : 1) * sizeof *last_prod);
    int32_t *first_wait = malloc((size_t)(nc ? nc : 1) * sizeof *first_wait);
    int32_t *suf = malloc((size_t)(n + 1) * sizeof *suf);
    int32_t *free_at = malloc((size_t)(n + 1) * sizeof *free_at);
    char *barrier = calloc((size_t)n + 1, 1);
    if (!last_prod || !first_wait || !suf || !free_at || !barrier) {
        free(free_at);
        free_at = NULL;
        goto done;
    }
    for (int32_t c = 0; c < nc; c++) {
        last_prod[c] = -1;
        first_wait[c] = NEVER;
    }
    for (int32_t i = 0; i < n; i++) {
        const ir_task *t = &p->tasks[i];
        if (t->out_counter >= 0 && t->out_counter < nc && last_prod[t->out_counter] < i)
            last_prod[t->out_counter] = i;
        for (int w = 0; w < t->n_waits; w++) {
            int32_t c = t->waits[w].counter;
            if (c >= 0 && c < nc && first_wait[c] > i)
                first_wait[c] = i;
        }
    }
    /* suf[v] = min over positions > v of (latest predecessor of that task), -1 for a task
     * without waits; NEVER past the end. */
    int32_t run = NEVER;
    for (int32_t v = n - 1; v >= 0; v--) {
        suf[v] = run;
        int32_t mx = -1;
        const ir_task *t = &p->tasks[v];
        for (int w = 0; w < t->n_waits; w++) {
            int32_t c = t->waits[w].counter;
            if (c >= 0 && c < nc && last_prod[c] > mx)
                mx = last_prod[c];
        }
        if (mx < run)
            run = mx;
    }
    int32_t pre = -1; /* max over u < p of (earliest successor of u) */
    for (int32_t i = 0; i < n; i++) {
        if (pre <= i && suf[i] >= i)
            barrier[i] = 1;
        const ir_task *t = &p->tasks[i];
        int32_t ms = t->out_counter >= 0 && t->out_counter < nc ? first_wait[t->out_counter] : NEVER;
        if (ms > pre)
            pre = ms;
    }
    int32_t next = NEVER;
    free_at[n] = NEVER;
    for (int32_t i = n - 1; i >= 0; i--) {
        if (barrier[i])
            next = i;
        free_at[i] = next == NEVER ? NEVER : next == i ? i + 1 : next;
    }
done:
    free(last_prod);
    free(first_wait);
    free(suf);
    free(barrier);
    return free_at;
}

/* ---------------------------------------------------------------- page bookkeeping */

static int32_t new_page(allocator *a, ir_space space, int32_t queue)
{
    if (a->n_pages == a->cap_pages) {
        int32_t cap = a->cap_pages ? 2 * a->cap_pages : 64;
        page *n = realloc(a->pages, (size_t)cap * sizeof *n);
        if (!n)
            return -1;
        a->pages = n;
        a->cap_pages = cap;
    }
    page *g = &a->pages[a->n_pages];
    memset(g, 0, sizeof *g);
    g->space = space;
    g->queue = queue;
    g->live_start = NEVER;
    g->live_end = -1;
    g->layer_lo = INT32_MAX;
    g->layer_hi = INT32_MIN;
    return a->n_pages++;
}

/* Insert s into page g's occupants at index at (keeps them sorted by first). */
static bool add_occupant(page *g, int at, span s, int64_t nbytes, int32_t lo, int32_t hi)
{
    if (lo < g->layer_lo)
        g->layer_lo = lo;
    if (hi > g->layer_hi)
        g->layer_hi = hi;
    if (g->n_occ == g->cap_occ) {
        int32_t cap = g->cap_occ ? 2 * g->cap_occ : 4;
        span *n = realloc(g->occ, (size_t)cap * sizeof *n);
        if (!n)
            return false;
        g->occ = n;
        g->cap_occ = cap;
    }
    memmove(&g->occ[at + 1], &g->occ[at], (size_t)(g->n_occ - at) * sizeof *g->occ);
    g->occ[at] = s;
    g->n_occ++;
    if (nbytes > g->nbytes)
        g->nbytes = nbytes;
    if (s.first < g->live_start)
        g->live_start = s.first;
    if (s.last > g->live_end)
        g->live_end = s.last;
    return true;
}

/* Where s would go among g's occupants, or -1 when it is not separated from its neighbours.
 * Occupants are pairwise separated and sorted, so checking the neighbours is enough. */
static int fit_index(const page *g, span s)
{
    int lo = 0, hi = g->n_occ;
    while (lo < hi) {
        int mid = (lo + hi) / 2;
        if (g->occ[mid].first < s.first)
            lo = mid + 1;
        else
            hi = mid;
    }
    if (lo > 0 && g->occ[lo - 1].free_at > s.first)
        return -1;
    if (lo < g->n_occ && (s.free_at > g->occ[lo].first))
        return -1;
    return lo;
}

/* Would queue q's SMEM pages still fit if page j (or a new page when j < 0) took span s of
 * nbytes? Peak of the summed sizes of pages whose live ranges overlap. */
static bool smem_fits(const allocator *a, int32_t q, int32_t j, span s, int64_t nbytes)
{
    /* Candidate ranges: every SMEM page of q, with page j (or the new one) widened. */
    int32_t k = 0;
    for (int32_t i = 0; i < a->n_pages; i++)
        if (a->pages[i].space == IR_SMEM && a->pages[i].queue == q)
            k++;
    int32_t *st = malloc((size_t)(k + 1) * sizeof *st), *en = malloc((size_t)(k + 1) * sizeof *en);
    int64_t *sz = malloc((size_t)(k + 1) * sizeof *sz);
    if (!st || !en || !sz) {
        free(st);
        free(en);
        free(sz);
        return false;
    }
    int32_t m = 0;
    for (int32_t i = 0; i < a->n_pages; i++) {
        const page *g = &a->pages[i];
        if (g->space != IR_SMEM || g->queue != q)
            continue;
        st[m] = g->live_start;
        en[m] = g->live_end;
        sz[m] = g->nbytes;
        if (i == j) {
            if (s.first < st[m])
                st[m] = s.first;
            if (s.last > en[m])
                en[m] = s.last;
            if (nbytes > sz[m])
                sz[m] = nbytes;
        }
        m++;
    }
    if (j < 0) {
        st[m] = s.first;
        en[m] = s.last;
        sz[m] = nbytes;
        m++;
    }
    bool ok = true;
    for (int32_t i = 0; i < m && ok; i++) {
        int64_t sum = 0;
        for (int32_t l = 0; l < m; l++)
            if (st[l] <= st[i] && st[i] <= en[l])
                sum += sz[l];
        ok = sum <= a->smem_budget;
    }
    free(st);
    free(en);
    free(sz);
    return ok;
}

/* Place buffer b (span s, nbytes) under policy pol in the class (space, queue). Returns the
 * page id, -1 when an SMEM placement does not fit, -2 on allocation failure. */
static int32_t place(allocator *a, ir_page_policy pol, ir_space space, int32_t q, span s,
                     int64_t nbytes, int32_t lo, int32_t hi)
{
    bool smem = space == IR_SMEM;
    if (pol != IR_PAGES_NONE) {
        for (int32_t i = 0; i < a->n_pages; i++) {
            page *g = &a->pages[i];
            if (g->space != space || g->queue != q)
                continue;
            if (a->limit_layers
                && (hi > g->layer_hi ? hi : g->layer_hi) - (lo < g->layer_lo ? lo : g->layer_lo) > 1)
                continue;
            int at;
            if (pol == IR_PAGES_LINEAR) {
                /* First fit on a free page already big enough; pages never grow. */
                if (g->nbytes < nbytes || g->occ[g->n_occ - 1].free_at > s.first)
                    continue;
                at = g->n_occ;
            } else {
                at = fit_index(g, s);
                if (at < 0)
                    continue;
            }
            if (smem && !smem_fits(a, q, i, s, nbytes))
                continue;
            return add_occupant(g, at, s, nbytes, lo, hi) ? i : -2;
        }
    }
    if (smem && !smem_fits(a, q, -1, s, nbytes))
        return -1;
    int32_t id = new_page(a, space, q);
    if (id < 0 || !add_occupant(&a->pages[id], 0, s, nbytes, lo, hi))
        return -2;
    return id;
}

/* ---------------------------------------------------------------- the pass */

typedef struct {
    int32_t buf;
    span s;
    int32_t queue;          /* the one queue of all its tasks, -1 when several */
    int32_t layer_lo, layer_hi; /* layers of its first and last access */
    int64_t nbytes;
} item;

/* none: buffer-id order; linear: by first access; graph_color: largest first, then by first
 * access, so pages are sized by the big buffers and the small ones fill the gaps. */
static int cmp_by_id(const void *x, const void *y)
{
    const item *a = x, *b = y;
    return a->buf < b->buf ? -1 : a->buf > b->buf;
}

static int cmp_by_first(const void *x, const void *y)
{
    const item *a = x, *b = y;
    if (a->s.first != b->s.first)
        return a->s.first < b->s.first ? -1 : 1;
    return cmp_by_id(x, y);
}

static int cmp_by_size(const void *x, const void *y)
{
    const item *a = x, *b = y;
    if (a->nbytes != b->nbytes)
        return a->nbytes > b->nbytes ? -1 : 1;
    return cmp_by_first(x, y);
}

ir_status lower_alloc_pages(ir_program *p, const ir_config *c, const int32_t *task_layer,
                            ir_error *err)
{
    int32_t nb = p->n_buffers;
    ir_status st = IR_OK;
    allocator a = {.p = p, .smem_budget = c->smem_bytes_per_block, .limit_layers = task_layer != NULL};
    int32_t *first = malloc((size_t)nb * sizeof *first), *last = malloc((size_t)nb * sizeof *last);
    int32_t *queue = malloc((size_t)nb * sizeof *queue);
    item *items = malloc((size_t)nb * sizeof *items);
    int32_t *free_at = compute_free_at(p);
    a.buf_page = malloc((size_t)nb * sizeof *a.buf_page);
    if (!first || !last || !queue || !items || !free_at || !a.buf_page) {
        st = ir_fail(err, IR_ERR_NOMEM, "pages", "out of memory");
        goto done;
    }
    for (int32_t b = 0; b < nb; b++) {
        first[b] = last[b] = -1;
        queue[b] = -1;
        a.buf_page[b] = -1;
    }
    for (int32_t i = 0; i < p->n_tasks; i++) {
        const ir_task *t = &p->tasks[i];
        for (int k = 0; k < t->n_inputs + t->n_outputs; k++) {
            int32_t b = k < t->n_inputs ? t->inputs[k] : t->outputs[k - t->n_inputs];
            if (first[b] < 0) {
                first[b] = i;
                queue[b] = t->sm;
            } else if (queue[b] != t->sm) {
                queue[b] = -1;
            }
            last[b] = i;
        }
    }
    int32_t n_items = 0;
    for (int32_t b = 0; b < nb; b++) {
        if (p->buffers[b].kind != IR_ACTIVATION)
            continue;
        item *it = &items[n_items++];
        it->buf = b;
        it->nbytes = ir_buffer_nbytes(&p->buffers[b]);
        it->layer_lo = it->layer_hi = 0;
        if (first[b] < 0) { /* untouched: a page of its own, never shared */
            it->s = (span){0, p->n_tasks, NEVER};
        } else {
            it->s = (span){first[b], last[b], free_at[last[b]]};
            if (task_layer) {
                it->layer_lo = task_layer[first[b]];
                it->layer_hi = task_layer[last[b]];
            }
        }
        it->queue = queue[b];
    }
    qsort(items, (size_t)n_items, sizeof *items,
          c->page_policy == IR_PAGES_GRAPH_COLOR ? cmp_by_size
          : c->page_policy == IR_PAGES_LINEAR    ? cmp_by_first
                                                 : cmp_by_id);
    for (int32_t i = 0; i < n_items; i++) {
        const item *it = &items[i];
        int32_t id = -1;
        if (a.smem_budget > 0 && it->queue >= 0 && it->nbytes <= a.smem_budget)
            id = place(&a, c->page_policy, IR_SMEM, it->queue, it->s, it->nbytes, it->layer_lo,
                       it->layer_hi);
        if (id == -1)
            id = place(&a, c->page_policy, IR_GLOBAL_SCRATCH, -1, it->s, it->nbytes,
                       it->layer_lo, it->layer_hi);
        if (id < 0) {
            st = ir_fail(err, IR_ERR_NOMEM, "pages", "out of memory");
            goto done;
        }
        a.buf_page[it->buf] = id;
    }

    /* Write the allocation: map in buffer-id order, pages in creation order. */
    ir_pages *pg = &p->pages;
    memset(pg, 0, sizeof *pg);
    pg->map_buffer = malloc((size_t)(n_items ? n_items : 1) * sizeof *pg->map_buffer);
    pg->map_page = malloc((size_t)(n_items ? n_items : 1) * sizeof *pg->map_page);
    pg->pages = malloc((size_t)(a.n_pages ? a.n_pages : 1) * sizeof *pg->pages);
    if (!pg->map_buffer || !pg->map_page || !pg->pages) {
        st = ir_fail(err, IR_ERR_NOMEM, "pages", "out of memory");
        goto done;
    }
    for (int32_t b = 0; b < nb; b++) {
        if (a.buf_page[b] < 0)
            continue;
        pg->map_buffer[pg->n_map] = b;
        pg->map_page[pg->n_map++] = a.buf_page[b];
        p->buffers[b].space = a.pages[a.buf_page[b]].space;
    }
    for (int32_t i = 0; i < a.n_pages; i++) {
        const page *g = &a.pages[i];
        pg->pages[i] = (ir_page){i, g->space, g->nbytes, g->live_start, g->live_end};
    }
    pg->n_pages = a.n_pages;
    p->has_pages = true;
done:
    for (int32_t i = 0; i < a.n_pages; i++)
        free(a.pages[i].occ);
    free(a.pages);
    free(a.buf_page);
    free(first);
    free(last);
    free(queue);
    free(items);
    free(free_at);
    return st;
}
