/*
 * mutate.c - reproducible single-defect mutations of a program. Each family breaks one safety
 * obligation in one way; the seed picks the site among the candidates, so a (program, family,
 * seed) triple always yields the same mutant. Programs without a launch plan (AMK's dialect)
 * run in the queues amk-verify gives them (one per sm value in task-list order, one per task
 * whose sm is null); the families that edit the plan itself need one.
 */
#include <stdlib.h>
#include <string.h>

#include "proofs/proofs.h"

static const proofs_mutation FAMILIES[] = {
    {"cross_queue_deadlock", "deadlock",
     "two consumers move to the heads of two queues, each ahead of the other's producer"},
    {"self_wait", "deadlock", "a task waits for every producer of its own out counter, itself "
                              "included"},
    {"threshold_above_producers", "deadlock", "a wait threshold exceeds the producer count"},
    {"dropped_wait", "race", "a consumer loses the wait that ordered it after its producer"},
    {"overlapping_tiles", "race", "a GEMV tile widens into its neighbour's columns"},
    {"smem_over_cap", "smem_cap", "the plan asks for more dynamic SMEM than the opt-in cap"},
    {"grid_over_residency", "occupancy", "the grid exceeds what can be co-resident"},
    {"write_to_weight", "readonly_write", "a task writes a weight buffer"},
    {"output_never_written", "output_unwritten", "the tile writing the last output columns is "
                                                 "narrowed"},
    {"partial_wait_racing", "race", "a consumer waits for one producer fewer than it reads "
                                    "from, and that one can still be running"},
    {"partial_wait_harmless", "", "a tile also waits for all its sibling tiles but itself: a "
                                  "partial wait that is a join, still safe (PROVED)"},
    {"page_shared_across_live_ranges", "page_race", "two buffers written at the same time "
                                                    "are put on one page"},
    {"kv_read_before_append", "kv_read_before_append", "the KV append runs after the attention "
                                                       "that reads its row"},
    {"tile_oob_last_position", "bounds", "an attention tile reads one KV row more, past the "
                                         "cache at the last position only"},
    {"wrong_kv_slot", "kv_read_before_append", "a KV append of a program lowered for one "
                                               "position writes the slot after its own"},
};

#define N_FAMILIES ((int)(sizeof FAMILIES / sizeof FAMILIES[0]))

const proofs_mutation *proofs_mutation_at(int i) { return i >= 0 && i < N_FAMILIES ? &FAMILIES[i] : NULL; }
int proofs_mutation_count(void) { return N_FAMILIES; }

const proofs_mutation *proofs_mutation_find(const char *name)
{
    for (int i = 0; i < N_FAMILIES; i++)
        if (!strcmp(FAMILIES[i].name, name))
            return &FAMILIES[i];
    return NULL;
}

static uint64_t mix(uint64_t x)
{
    x += 0x9e3779b97f4a7c15ULL;
    x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
    x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
    return x ^ (x >> 31);
}

/* The first producer of the counter t waits on first, or -1. */
static int32_t first_producer(const ir_program *p, const ir_task *t)
{
    if (!t->n_waits)
        return -1;
    for (int32_t i = 0; i < p->n_tasks; i++)
        if (p->tasks[i].out_counter == t->waits[0].counter)
            return i;
    return -1;
}

/* The position the program was lowered for: the decode extension's, else AMK's meta.pos. */
static int64_t prog_pos(const ir_program *p)
{
    int64_t pos = 0;
    if (p->has_decode)
        return p->decode.pos;
    return ir_meta_int(p, "pos", &pos) && pos >= 0 ? pos : 0;
}

/* Move task t to position `at` of queue q (removing it from wherever it is). */
static void move_task(ir_program *p, int32_t t, int32_t q, int32_t at)
{
    ir_plan *pl = &p->plan;
    int32_t n = pl->queue_start[pl->grid];
    int32_t from = -1;
    for (int32_t i = 0; i < n; i++)
        if (pl->queue_tasks[i] == t)
            from = i;
    int32_t oq = 0;
    while (pl->queue_start[oq + 1] <= from)
        oq++;
    memmove(pl->queue_tasks + from, pl->queue_tasks + from + 1, (size_t)(n - from - 1) * sizeof(int32_t));
    for (int64_t k = oq + 1; k <= pl->grid; k++)
        pl->queue_start[k]--;
    int32_t dest = pl->queue_start[q] + at;
    memmove(pl->queue_tasks + dest + 1, pl->queue_tasks + dest, (size_t)(n - 1 - dest) * sizeof(int32_t));
    pl->queue_tasks[dest] = t;
    for (int64_t k = q + 1; k <= pl->grid; k++)
        pl->queue_start[k]++;
    p->tasks[t].sm = q;
}

/* Candidate tasks satisfying pred, then the seed's pick; -1 when none. */
static int32_t pick(const ir_program *p, uint64_t seed, bool (*pred)(const ir_program *, int32_t))
{
    int32_t n = 0;
    for (int32_t i = 0; i < p->n_tasks; i++)
        n += pred(p, i);
    if (!n)
        return -1;
    int32_t k = (int32_t)(mix(seed) % (uint64_t)n);
    for (int32_t i = 0; i < p->n_tasks; i++)
        if (pred(p, i) && k-- == 0)
            return i;
    return -1;
}

static bool has_wait(const ir_program *p, int32_t i) { return p->tasks[i].n_waits > 0; }

static bool is_tile(const ir_program *p, int32_t i)
{
    int64_t v;
    return (p->tasks[i].op == IR_OP_GEMV_TILE || p->tasks[i].op == IR_OP_GEMM_TILE) &&
           ir_task_int(&p->tasks[i], "N_tile", &v);
}

static bool writes_output(const ir_program *p, int32_t i)
{
    return is_tile(p, i) && p->buffers[p->tasks[i].outputs[0]].kind == IR_IO_OUTPUT;
}

/* A tile whose output has another tile starting right at its end. */
static bool has_right_neighbour(const ir_program *p, int32_t i)
{
    if (!is_tile(p, i))
        return false;
    int64_t off, n;
    ir_task_int(&p->tasks[i], "n_off", &off);
    ir_task_int(&p->tasks[i], "N_tile", &n);
    for (int32_t j = 0; j < p->n_tasks; j++) {
        int64_t o2;
        if (j != i && is_tile(p, j) && p->tasks[j].outputs[0] == p->tasks[i].outputs[0] &&
            ir_task_int(&p->tasks[j], "n_off", &o2) && o2 == off + n &&
            (p->tasks[j].sm != p->tasks[i].sm || p->tasks[i].sm < 0))
            return true;
    }
    return false;
}

/*
 * The families below pick sites by what the schedule allows, not only by shape: a defect that
 * the queues happen to hide (the producer already ordered before the consumer through another
 * path) is not a defect. `anc` is the backward closure over both kinds of order the launch
 * has: a task's queue predecessor and every producer of every counter it waits on.
 */
typedef struct {
    const ir_program *p;
    int32_t nq;
    int32_t *qstart, *qtasks; /* the queues: the plan's, or those amk-verify gives a program
                                 without one (list order) */
    int32_t *queue_of;      /* task -> its queue */
    int32_t *slot_of;       /* task -> its index in qtasks */
    int32_t *prod_start;    /* counter -> producers prod[prod_start[c] .. prod_start[c+1]) */
    int32_t *prod;
    unsigned char *anc;     /* marks of the last closure */
    int32_t *stack;
    int32_t *seeds;         /* scratch for the seeds of a closure, n_tasks + 1 entries */
} mut_ctx;

static void ctx_free(mut_ctx *c)
{
    free(c->qstart);
    free(c->qtasks);
    free(c->queue_of);
    free(c->slot_of);
    free(c->prod_start);
    free(c->prod);
    free(c->anc);
    free(c->stack);
    free(c->seeds);
}

/* Index p's queues and producers. The plan lists every task once (ir_read_json checks it). */
static ir_status ctx_build(mut_ctx *c, const ir_program *p, ir_error *err)
{
    size_t nt = (size_t)p->n_tasks + 1, nc = (size_t)p->n_counters + 1;
    *c = (mut_ctx){p, 0, NULL, NULL, malloc(nt * sizeof(int32_t)), malloc(nt * sizeof(int32_t)),
                   calloc(nc + 1, sizeof(int32_t)), malloc(nt * sizeof(int32_t)), calloc(nt, 1),
                   malloc(nt * sizeof(int32_t)), malloc(nt * sizeof(int32_t))};
    ir_status s = ir_program_queues(p, IR_ORDER_LIST, &c->nq, &c->qstart, &c->qtasks, err);
    if (s != IR_OK) {
        ctx_free(c);
        return s;
    }
    if (!c->queue_of || !c->slot_of || !c->prod_start || !c->prod || !c->anc || !c->stack ||
        !c->seeds) {
        ctx_free(c);
        return ir_fail(err, IR_ERR_NOMEM, "", "out of memory");
    }
    for (int32_t i = 0; i < p->n_tasks; i++)
        c->queue_of[i] = c->slot_of[i] = -1;
    for (int32_t q = 0; q < c->nq; q++)
        for (int32_t k = c->qstart[q]; k < c->qstart[q + 1]; k++) {
            int32_t t = c->qtasks[k];
            if (t >= 0 && t < p->n_tasks) {
                c->queue_of[t] = (int32_t)q;
                c->slot_of[t] = k;
            }
        }
    for (int32_t i = 0; i < p->n_tasks; i++)
        c->prod_start[p->tasks[i].out_counter + 1]++;
    for (int32_t k = 0; k < p->n_counters; k++)
        c->prod_start[k + 1] += c->prod_start[k];
    int32_t *fill = calloc(nc, sizeof(int32_t));
    if (!fill) {
        ctx_free(c);
        return ir_fail(err, IR_ERR_NOMEM, "", "out of memory");
    }
    for (int32_t i = 0; i < p->n_tasks; i++) {
        int32_t k = p->tasks[i].out_counter;
        c->prod[c->prod_start[k] + fill[k]++] = i;
    }
    free(fill);
    return IR_OK;
}

static int32_t n_producers(const mut_ctx *c, int32_t counter)
{
    return c->prod_start[counter + 1] - c->prod_start[counter];
}

/* The task just before t on its queue, or -1 at the head. */
static int32_t queue_pred(const mut_ctx *c, int32_t t)
{
    int32_t k = c->slot_of[t];
    return k > c->qstart[c->queue_of[t]] ? c->qtasks[k - 1] : -1;
}

/* Mark in c->anc every task that must finish before all of seeds[0..n) can finish (the seeds
 * included); negative seeds are ignored. */
static void ancestors(mut_ctx *c, const int32_t *seeds, int n)
{
    const ir_program *p = c->p;
    memset(c->anc, 0, (size_t)p->n_tasks);
    int32_t top = 0;
    for (int i = 0; i < n; i++)
        if (seeds[i] >= 0 && !c->anc[seeds[i]]) {
            c->anc[seeds[i]] = 1;
            c->stack[top++] = seeds[i];
        }
    while (top) {
        int32_t t = c->stack[--top];
        int32_t qp = queue_pred(c, t);
        if (qp >= 0 && !c->anc[qp]) {
            c->anc[qp] = 1;
            c->stack[top++] = qp;
        }
        for (int w = 0; w < p->tasks[t].n_waits; w++) {
            int32_t k = p->tasks[t].waits[w].counter;
            for (int32_t j = c->prod_start[k]; j < c->prod_start[k + 1]; j++)
                if (!c->anc[c->prod[j]]) {
                    c->anc[c->prod[j]] = 1;
                    c->stack[top++] = c->prod[j];
                }
        }
    }
}

/* The elements a task touches in one slot, evaluated at the program's position. */
static bool slot_range(const ir_program *p, const ir_task *t, bool out, int slot, int64_t *lo,
                       int64_t *hi)
{
    ir_box b;
    if (ir_task_footprint(p, t, out, slot, &b, NULL) != IR_OK)
        return false;
    ir_box_eval(&b, prog_pos(p), lo, hi);
    for (int d = 0; d < b.rank; d++)
        if (lo[d] >= hi[d])
            return false;
    return true;
}

/* Does writer w write elements of a buffer that reader r reads (one common box element)? */
static bool feeds(const ir_program *p, int32_t w, int32_t r)
{
    const ir_task *tw = &p->tasks[w], *tr = &p->tasks[r];
    for (int o = 0; o < tw->n_outputs; o++)
        for (int i = 0; i < tr->n_inputs; i++) {
            int64_t wl[IR_MAX_RANK], wh[IR_MAX_RANK], rl[IR_MAX_RANK], rh[IR_MAX_RANK];
            if (tw->outputs[o] != tr->inputs[i] || !slot_range(p, tw, true, o, wl, wh) ||
                !slot_range(p, tr, false, i, rl, rh))
                continue;
            bool overlap = true;
            for (int d = 0; d < p->buffers[tw->outputs[o]].rank; d++)
                overlap = overlap && wl[d] < rh[d] && rl[d] < wh[d];
            if (overlap)
                return true;
        }
    return false;
}

/* Byte span [lo, hi) of the first output box of t: first to last byte, as pages are checked. */
static bool out_bytes(const ir_program *p, const ir_task *t, int64_t *lo, int64_t *hi)
{
    int64_t bl[IR_MAX_RANK], bh[IR_MAX_RANK];
    if (t->n_outputs < 1 || !slot_range(p, t, true, 0, bl, bh))
        return false;
    const ir_buffer *b = &p->buffers[t->outputs[0]];
    int64_t first = 0, last = 0;
    for (int d = 0; d < b->rank; d++) {
        first = first * b->shape[d] + bl[d];
        last = last * b->shape[d] + bh[d] - 1;
    }
    *lo = ir_dtype_nbytes(b->dtype, first);
    *hi = ir_dtype_nbytes(b->dtype, last + 1);
    return true;
}

/* Index of buffer b in the page map, or -1. */
static int page_slot(const ir_program *p, int32_t b)
{
    for (int i = 0; p->has_pages && i < p->pages.n_map; i++)
        if (p->pages.map_buffer[i] == b)
            return i;
    return -1;
}

/* Scan from the seed's start task, cyclically, for the first task site() accepts. */
static int32_t scan(mut_ctx *c, uint64_t seed, bool (*site)(mut_ctx *, int32_t, int32_t *),
                    int32_t *aux)
{
    int32_t n = c->p->n_tasks;
    if (n <= 0)
        return -1;
    int32_t start = (int32_t)(mix(seed) % (uint64_t)n);
    for (int32_t k = 0; k < n; k++) {
        int32_t t = (start + k) % n;
        if (site(c, t, aux))
            return t;
    }
    return -1;
}

/* dropped_wait: w loses its waits, and some producer it read from, on another queue, is not
 * ordered before w's queue predecessor; so once that predecessor is done both can run. */
static bool dropped_wait_site(mut_ctx *c, int32_t w, int32_t *aux)
{
    const ir_program *p = c->p;
    const ir_task *t = &p->tasks[w];
    if (!t->n_waits)
        return false;
    /* A reader of a KV cache would race on the cache row first (kv_race, its own kind). */
    for (int i = 0; i < t->n_inputs; i++)
        if (p->buffers[t->inputs[i]].kind == IR_KV_CACHE)
            return false;
    int32_t qp = queue_pred(c, w);
    ancestors(c, &qp, 1);
    for (int k = 0; k < t->n_waits; k++) {
        int32_t ctr = t->waits[k].counter;
        for (int32_t j = c->prod_start[ctr]; j < c->prod_start[ctr + 1]; j++) {
            int32_t pr = c->prod[j];
            if (!c->anc[pr] && c->queue_of[pr] != c->queue_of[w] && feeds(p, pr, w)) {
                *aux = pr;
                return true;
            }
        }
    }
    return false;
}

/* partial_wait_racing: a full wait (threshold == producers >= 2) of w whose threshold drops by
 * one, where one producer pr that w reads from can be left unstarted: pr is not ordered before
 * w's queue predecessor, the producers of w's other waits, or the other producers. aux[0] is
 * the wait index. */
static bool partial_racing_site(mut_ctx *c, int32_t w, int32_t *aux)
{
    const ir_program *p = c->p;
    const ir_task *t = &p->tasks[w];
    for (int k = 0; k < t->n_waits; k++) {
        int32_t ctr = t->waits[k].counter, np = n_producers(c, ctr);
        if (np < 2 || t->waits[k].threshold != np)
            continue;
        for (int32_t j = c->prod_start[ctr]; j < c->prod_start[ctr + 1]; j++) {
            int32_t pr = c->prod[j];
            if (c->queue_of[pr] == c->queue_of[w] || !feeds(p, pr, w))
                continue;
            /* Seeds: every producer of every wait of w except pr, and w's queue predecessor. */
            int32_t ns = 0, *buf = c->seeds;
            buf[ns++] = queue_pred(c, w);
            for (int k2 = 0; k2 < t->n_waits; k2++) {
                int32_t c2 = t->waits[k2].counter;
                for (int32_t j2 = c->prod_start[c2]; j2 < c->prod_start[c2 + 1] && ns < p->n_tasks + 1; j2++)
                    if (c->prod[j2] != pr)
                        buf[ns++] = c->prod[j2];
            }
            ancestors(c, buf, ns);
            if (!c->anc[pr]) {
                aux[0] = k;
                return true;
            }
        }
    }
    return false;
}

/* partial_wait_harmless: t, one of n >= 2 producers of its own out counter, also waits for
 * n - 1 of them. Only its siblings can finish before it starts (none of them is ordered after
 * t), so the partial wait is a join over exactly them: nothing can go wrong. */
static bool partial_harmless_site(mut_ctx *c, int32_t t, int32_t *aux)
{
    const ir_program *p = c->p;
    const ir_task *k = &p->tasks[t];
    int32_t ctr = k->out_counter, np = n_producers(c, ctr);
    if (np < 2 || k->n_waits >= IR_MAX_WAITS)
        return false;
    for (int w = 0; w < k->n_waits; w++)
        if (k->waits[w].counter == ctr)
            return false;
    int32_t *sib = c->seeds;
    int ns = 0;
    for (int32_t j = c->prod_start[ctr]; j < c->prod_start[ctr + 1]; j++)
        if (c->prod[j] != t)
            sib[ns++] = c->prod[j];
    ancestors(c, sib, ns);
    *aux = np - 1;
    return !c->anc[t];
}

/* Whether neither of tasks t and u must finish before the other (no order the launch imposes). */
static bool unordered(mut_ctx *c, int32_t t, int32_t u)
{
    int32_t one[1] = {u};
    ancestors(c, one, 1);
    if (c->anc[t])
        return false;
    one[0] = t;
    ancestors(c, one, 1);
    return !c->anc[u];
}

/* The same for a program without pages (AMK writes none): t and a sibling u (same waits,
 * another queue, unordered) write overlapping bytes of two activations of one memory space,
 * which the mutant puts on one new page. aux[0] is u. */
static bool page_new_site(mut_ctx *c, int32_t t, int32_t *aux)
{
    const ir_program *p = c->p;
    const ir_task *a = &p->tasks[t];
    int64_t alo, ahi;
    if (!a->n_waits || a->n_outputs < 1 || p->buffers[a->outputs[0]].kind != IR_ACTIVATION ||
        !out_bytes(p, a, &alo, &ahi))
        return false;
    for (int32_t u = t + 1; u < p->n_tasks && u <= t + 256; u++) {
        const ir_task *b = &p->tasks[u];
        int64_t blo, bhi;
        if (b->n_waits != a->n_waits || b->n_outputs < 1 || b->outputs[0] == a->outputs[0] ||
            c->queue_of[u] == c->queue_of[t] ||
            memcmp(b->waits, a->waits, (size_t)a->n_waits * sizeof(ir_wait)) ||
            p->buffers[b->outputs[0]].kind != IR_ACTIVATION ||
            p->buffers[b->outputs[0]].space != p->buffers[a->outputs[0]].space ||
            !out_bytes(p, b, &blo, &bhi) || !(alo < bhi && blo < ahi) || !unordered(c, t, u))
            continue;
        aux[0] = u;
        return true;
    }
    return false;
}

/* wrong_kv_slot: a KV append of a program lowered for one position (constant slot pos, no
 * decode loop) that some attention reads: its slot moves to pos + 1, still inside the cache,
 * so the attention reads the row pos that nothing wrote. */
static bool kv_slot_site(mut_ctx *c, int32_t t, int32_t *aux)
{
    const ir_program *p = c->p;
    const ir_task *a = &p->tasks[t];
    const ir_param *pos = ir_task_param(a, "pos");
    (void)aux;
    if (p->has_decode || a->op != IR_OP_KV_APPEND || !pos || pos->type != IR_PARAM_INT ||
        pos->has_pexpr)
        return false;
    const ir_buffer *kc = &p->buffers[a->outputs[0]];
    int ax = kc->rank == 4 ? 1 : 0;
    if (pos->i + 1 >= kc->shape[ax])
        return false;
    for (int32_t i = 0; i < p->n_tasks; i++)
        for (int k = 0; k < p->tasks[i].n_inputs; k++)
            if (p->tasks[i].op == IR_OP_ATTENTION_TILE && p->tasks[i].inputs[k] == a->outputs[0])
                return true;
    return false;
}

/* page_shared_across_live_ranges: t and a sibling u (same waits, another queue, neither
 * ordered before the other) write overlapping byte spans of two paged buffers; u's buffer
 * moves onto t's page. aux[0] is u. */
static bool page_shared_site(mut_ctx *c, int32_t t, int32_t *aux)
{
    const ir_program *p = c->p;
    const ir_task *a = &p->tasks[t];
    if (!p->has_pages)
        return page_new_site(c, t, aux);
    if (!a->n_waits || a->n_outputs < 1)
        return false;
    int sa = page_slot(p, a->outputs[0]);
    int64_t alo, ahi;
    if (sa < 0 || !out_bytes(p, a, &alo, &ahi))
        return false;
    for (int32_t u = t + 1; u < p->n_tasks && u <= t + 256; u++) {
        const ir_task *b = &p->tasks[u];
        if (b->n_waits != a->n_waits || b->n_outputs < 1 || b->outputs[0] == a->outputs[0] ||
            c->queue_of[u] == c->queue_of[t] || memcmp(b->waits, a->waits, (size_t)a->n_waits * sizeof(ir_wait)))
            continue;
        int sb = page_slot(p, b->outputs[0]);
        int64_t blo, bhi;
        if (sb < 0 || p->pages.map_page[sb] == p->pages.map_page[sa] || !out_bytes(p, b, &blo, &bhi) ||
            !(alo < bhi && blo < ahi) ||
            p->pages.pages[p->pages.map_page[sb]].space != p->pages.pages[p->pages.map_page[sa]].space)
            continue;
        int32_t pair[1] = {u};
        ancestors(c, pair, 1);
        if (c->anc[t])
            continue;
        pair[0] = t;
        ancestors(c, pair, 1);
        if (c->anc[u])
            continue;
        aux[0] = u;
        return true;
    }
    return false;
}

/* kv_read_before_append: a KV append whose counter only the tiles of one attention instance
 * wait on. aux[0] is one of those tiles (a moves right behind it on its queue), aux[1]
 * the attention's out counter. The append's source page must not be handed to a buffer first
 * touched between the append and the attention's consumers, or the mutant would race on that
 * page before it ever reads the cache early. */
static bool kv_site(mut_ctx *c, int32_t t, int32_t *aux)
{
    const ir_program *p = c->p;
    const ir_task *a = &p->tasks[t];
    if (a->op != IR_OP_KV_APPEND || n_producers(c, a->out_counter) != 1 || a->n_waits >= IR_MAX_WAITS)
        return false;
    int32_t first = -1, att = -1; /* the first waiter, the attention's out counter */
    for (int32_t i = 0; i < p->n_tasks; i++)
        for (int w = 0; w < p->tasks[i].n_waits; w++)
            if (p->tasks[i].waits[w].counter == a->out_counter) {
                if (p->tasks[i].op != IR_OP_ATTENTION_TILE ||
                    (att >= 0 && p->tasks[i].out_counter != att) ||
                    p->tasks[i].n_waits - 1 + a->n_waits > IR_MAX_WAITS)
                    return false;
                att = p->tasks[i].out_counter;
                if (first < 0)
                    first = i;
            }
    if (first < 0)
        return false;
    int32_t last_use = first;
    for (int32_t i = 0; i < p->n_tasks; i++)
        for (int w = 0; w < p->tasks[i].n_waits; w++)
            if (p->tasks[i].waits[w].counter == att) {
                if (p->tasks[i].n_waits >= IR_MAX_WAITS)
                    return false;
                if (i > last_use)
                    last_use = i;
            }
    for (int in = 0; in < a->n_inputs; in++) {
        int s = page_slot(p, a->inputs[in]);
        if (s < 0)
            continue;
        for (int m = 0; m < p->pages.n_map; m++) {
            if (m == s || p->pages.map_page[m] != p->pages.map_page[s])
                continue;
            for (int32_t i = t + 1; i <= last_use; i++) {
                const ir_task *k = &p->tasks[i];
                for (int x = 0; x < k->n_inputs + k->n_outputs; x++)
                    if ((x < k->n_inputs ? k->inputs[x] : k->outputs[x - k->n_inputs]) ==
                        p->pages.map_buffer[m])
                        return false;
            }
        }
    }
    /* Anchor: a tile whose queue successor (the append aside) is no ancestor of any tile, so
     * the append, blocking that queue until every tile is done, blocks none of them. */
    int32_t *tiles = c->seeds, nt = 0;
    for (int32_t i = 0; i < p->n_tasks; i++)
        if (p->tasks[i].out_counter == att)
            tiles[nt++] = i;
    ancestors(c, tiles, nt);
    for (int32_t k = 0; k < nt; k++) {
        int32_t q = c->queue_of[tiles[k]], next = c->slot_of[tiles[k]] + 1;
        if (next < c->qstart[q + 1] && c->qtasks[next] == t)
            next++;
        if (next >= c->qstart[q + 1] || !c->anc[c->qtasks[next]]) {
            aux[0] = tiles[k];
            aux[1] = att;
            return true;
        }
    }
    return false;
}

/* tile_oob_last_position: an attention tile's kv_len grows by one row (its clamp too); that
 * stays inside the cache up to the second-to-last position and leaves it at the last. */
static bool oob_site(mut_ctx *c, int32_t t, int32_t *aux)
{
    const ir_program *p = c->p;
    const ir_task *k = &p->tasks[t];
    const ir_param *len = ir_task_param(k, "kv_len");
    ir_pexpr start;
    if (k->op != IR_OP_ATTENTION_TILE || !p->has_decode || p->decode.max_seq < 2 || !len ||
        !len->has_pexpr || !ir_task_pexpr(k, "kv_start", &start) || k->n_inputs < 2 ||
        len->pexpr.add == INT64_MAX || len->pexpr.hi == INT64_MAX)
        return false;
    ir_pexpr e = len->pexpr;
    e.add++;
    e.hi++;
    int64_t rows = p->buffers[k->inputs[1]].shape[0], s = p->decode.max_seq;
    (void)aux;
    return ir_pexpr_eval(start, s - 1) + ir_pexpr_eval(e, s - 1) > rows &&
           ir_pexpr_eval(start, s - 2) + ir_pexpr_eval(e, s - 2) <= rows;
}

/* The families that need the schedule's order: find the site, then apply the defect. */
static ir_status mutate_ordered(ir_program *p, const char *name, uint64_t seed, ir_error *err)
{
    mut_ctx c;
    ir_status s = ctx_build(&c, p, err);
    if (s != IR_OK)
        return s;
    int32_t aux[2] = {-1, -1}, t;
    if (!strcmp(name, "dropped_wait")) {
        t = scan(&c, seed, dropped_wait_site, aux);
        if (t >= 0)
            p->tasks[t].n_waits = 0;
    } else if (!strcmp(name, "partial_wait_racing")) {
        t = scan(&c, seed, partial_racing_site, aux);
        if (t >= 0)
            p->tasks[t].waits[aux[0]].threshold--;
    } else if (!strcmp(name, "partial_wait_harmless")) {
        t = scan(&c, seed, partial_harmless_site, aux);
        if (t >= 0)
            p->tasks[t].waits[p->tasks[t].n_waits++] = (ir_wait){p->tasks[t].out_counter, aux[0]};
    } else if (!strcmp(name, "wrong_kv_slot")) {
        t = scan(&c, seed, kv_slot_site, aux);
        if (t >= 0) {
            int64_t pos;
            ir_task_int(&p->tasks[t], "pos", &pos);
            s = ir_task_set_int(&p->tasks[t], "pos", pos + 1);
        }
    } else if (!strcmp(name, "page_shared_across_live_ranges") && !p->has_pages) {
        t = scan(&c, seed, page_shared_site, aux);
        if (t >= 0) {
            int32_t ba = p->tasks[t].outputs[0], bb = p->tasks[aux[0]].outputs[0];
            int64_t na = ir_buffer_nbytes(&p->buffers[ba]), nb = ir_buffer_nbytes(&p->buffers[bb]);
            p->pages.pages = calloc(1, sizeof *p->pages.pages);
            p->pages.map_buffer = malloc(2 * sizeof *p->pages.map_buffer);
            p->pages.map_page = calloc(2, sizeof *p->pages.map_page);
            if (!p->pages.pages || !p->pages.map_buffer || !p->pages.map_page) {
                s = IR_ERR_NOMEM;
            } else {
                p->has_pages = true;
                p->pages.n_pages = 1;
                p->pages.pages[0] = (ir_page){0, p->buffers[ba].space, na > nb ? na : nb, -1, -1};
                p->pages.n_map = 2;
                p->pages.map_buffer[0] = ba;
                p->pages.map_buffer[1] = bb;
            }
        }
    } else if (!strcmp(name, "page_shared_across_live_ranges")) {
        t = scan(&c, seed, page_shared_site, aux);
        if (t >= 0) {
            int sa = page_slot(p, p->tasks[t].outputs[0]), sb = page_slot(p, p->tasks[aux[0]].outputs[0]);
            ir_page *pg = &p->pages.pages[p->pages.map_page[sa]];
            const ir_page *old = &p->pages.pages[p->pages.map_page[sb]];
            int64_t nb = ir_buffer_nbytes(&p->buffers[p->pages.map_buffer[sb]]);
            pg->nbytes = nb > pg->nbytes ? nb : pg->nbytes;
            if (old->live_start >= 0 && (pg->live_start < 0 || old->live_start < pg->live_start))
                pg->live_start = old->live_start;
            if (old->live_end > pg->live_end)
                pg->live_end = old->live_end;
            p->pages.map_page[sb] = p->pages.map_page[sa];
        }
    } else if (!strcmp(name, "kv_read_before_append")) {
        t = scan(&c, seed, kv_site, aux);
        if (t >= 0) {
            ir_task *a = &p->tasks[t];
            int32_t np = n_producers(&c, aux[1]);
            for (int32_t i = 0; i < p->n_tasks; i++) {
                ir_task *k = &p->tasks[i];
                bool waits_att = false, waited_append = false;
                for (int w = 0; w < k->n_waits; w++) {
                    if (k->waits[w].counter == a->out_counter) {
                        /* The attention no longer waits for the append... */
                        memmove(k->waits + w, k->waits + w + 1, (size_t)(k->n_waits - w - 1) * sizeof(ir_wait));
                        k->n_waits--;
                        w--;
                        waited_append = true;
                    } else if (k->waits[w].counter == aux[1]) {
                        waits_att = true;
                    }
                }
                /* ...but still for what the append waited for, so that nothing but the append
                 * itself leaves the attention's ancestors (kv_site checked the room). */
                for (int w = 0; waited_append && w < a->n_waits; w++)
                    k->waits[k->n_waits++] = a->waits[w];
                /* ...and the attention's readers wait for the append instead, so it stays an
                 * ancestor of everything after the attention, as before. */
                if (waits_att && k->n_waits < IR_MAX_WAITS)
                    k->waits[k->n_waits++] = (ir_wait){a->out_counter, 1};
            }
            /* The append now runs after every attention tile, right behind the anchor. */
            a->waits[a->n_waits++] = (ir_wait){aux[1], np};
            int32_t q = c.queue_of[aux[0]];
            int32_t at = c.slot_of[aux[0]] - p->plan.queue_start[q] + 1;
            if (c.queue_of[t] == q && c.slot_of[t] < c.slot_of[aux[0]])
                at--;
            move_task(p, t, q, at);
        }
    } else { /* tile_oob_last_position */
        t = scan(&c, seed, oob_site, aux);
        if (t >= 0) {
            ir_pexpr e = ir_task_param(&p->tasks[t], "kv_len")->pexpr;
            e.add++;
            e.hi++;
            s = ir_task_set_pexpr(&p->tasks[t], "kv_len", e, p->has_decode ? p->decode.pos : 0);
        }
    }
    ctx_free(&c);
    if (t < 0)
        return ir_fail(err, IR_ERR_UNSUPPORTED, "tasks", "no site for %s in this program", name);
    if (s != IR_OK)
        return ir_fail(err, s, "tasks", "cannot apply %s", name);
    return IR_OK;
}

/* cross_queue_deadlock without a plan: the SMs are assigned. w1 and p2 go to one SM, w2 and p1
 * to another (SMs no other task uses), and w1, w2 move to the front of the task list (ids
 * renumbered; nothing else names a task of a plan-less program), so each consumer heads the
 * queue its own producer waits behind. */
static ir_status cross_queue_planless(ir_program *p, int32_t w1, int32_t p1, int32_t w2,
                                      int32_t p2, ir_error *err)
{
    int32_t used_max = -1;
    for (int32_t i = 0; i < p->n_tasks; i++)
        if (p->tasks[i].sm > used_max)
            used_max = p->tasks[i].sm;
    int64_t sms = p->has_target ? p->target.num_sms : 0;
    if (used_max + 2 >= sms)
        return ir_fail(err, IR_ERR_UNSUPPORTED, "tasks", "no two free SMs on the target");
    p->tasks[w1].sm = p->tasks[p2].sm = used_max + 1;
    p->tasks[w2].sm = p->tasks[p1].sm = used_max + 2;
    ir_task *moved = malloc((size_t)p->n_tasks * sizeof *moved);
    if (!moved)
        return ir_fail(err, IR_ERR_NOMEM, "", "out of memory");
    int32_t n = 0;
    moved[n++] = p->tasks[w1];
    moved[n++] = p->tasks[w2];
    for (int32_t i = 0; i < p->n_tasks; i++)
        if (i != w1 && i != w2)
            moved[n++] = p->tasks[i];
    for (int32_t i = 0; i < n; i++) {
        moved[i].id = i;
        p->tasks[i] = moved[i];
    }
    free(moved);
    return IR_OK;
}

ir_status proofs_mutate(ir_program *p, const char *name, uint64_t seed, ir_error *err)
{
    if (!proofs_mutation_find(name))
        return ir_fail(err, IR_ERR_MALFORMED, "--kind", "unknown mutation '%s'", name);
    if (!p->has_plan && (!strcmp(name, "smem_over_cap") || !strcmp(name, "grid_over_residency") ||
                         !strcmp(name, "kv_read_before_append")))
        return ir_fail(err, IR_ERR_UNSUPPORTED, "launch_plan", "%s edits the launch plan; the "
                       "program has none", name);
    const ir_target *t = p->has_target ? &p->target : NULL;
    if (!strcmp(name, "cross_queue_deadlock")) {
        int32_t w1 = pick(p, seed, has_wait), p1 = w1 >= 0 ? first_producer(p, &p->tasks[w1]) : -1;
        int32_t w2 = -1, p2 = -1;
        for (uint64_t k = 1; k < 64 && w2 < 0; k++) {
            int32_t c = pick(p, seed + k, has_wait), cp = c >= 0 ? first_producer(p, &p->tasks[c]) : -1;
            if (c >= 0 && cp >= 0 && c != w1 && c != p1 && cp != w1 && cp != p1)
                w2 = c, p2 = cp;
        }
        if (w1 < 0 || p1 < 0 || w2 < 0 || (p->has_plan && p->plan.grid < 2))
            return ir_fail(err, IR_ERR_UNSUPPORTED, "tasks", "no two independent waiting tasks");
        if (!p->has_plan)
            return cross_queue_planless(p, w1, p1, w2, p2, err);
        int32_t qa = 0, qb = 1;
        move_task(p, p2, qa, 0);
        move_task(p, w1, qa, 0);
        move_task(p, p1, qb, 0);
        move_task(p, w2, qb, 0);
        return IR_OK;
    }
    if (!strcmp(name, "dropped_wait") || !strcmp(name, "partial_wait_racing") ||
        !strcmp(name, "partial_wait_harmless") || !strcmp(name, "page_shared_across_live_ranges") ||
        !strcmp(name, "kv_read_before_append") || !strcmp(name, "tile_oob_last_position") ||
        !strcmp(name, "wrong_kv_slot"))
        return mutate_ordered(p, name, seed, err);
    if (!strcmp(name, "self_wait") || !strcmp(name, "threshold_above_producers")) {
        int32_t i = pick(p, seed, has_wait);
        if (i < 0)
            return ir_fail(err, IR_ERR_UNSUPPORTED, "tasks", "no task waits on anything");
        ir_task *k = &p->tasks[i];
        if (!strcmp(name, "self_wait")) {
            /* Waiting for all producers of its own counter, itself among them, can never hold;
             * a threshold of 1 would be met by a sibling tile sharing the counter. */
            int64_t np = 0;
            for (int32_t j = 0; j < p->n_tasks; j++)
                np += p->tasks[j].out_counter == k->out_counter;
            if (k->n_waits < IR_MAX_WAITS)
                k->waits[k->n_waits++] = (ir_wait){k->out_counter, np};
            else
                k->waits[0] = (ir_wait){k->out_counter, np};
        } else {
            int64_t np = 0;
            for (int32_t j = 0; j < p->n_tasks; j++)
                np += p->tasks[j].out_counter == k->waits[0].counter;
            k->waits[0].threshold = np + 1;
        }
        return IR_OK;
    }
    if (!strcmp(name, "overlapping_tiles")) {
        int32_t i = pick(p, seed, has_right_neighbour);
        if (i < 0)
            return ir_fail(err, IR_ERR_UNSUPPORTED, "tasks", "no GEMV tile with a neighbour");
        int64_t n;
        ir_task_int(&p->tasks[i], "N_tile", &n);
        ir_task_set_int(&p->tasks[i], "N_tile", n + 1);
        return IR_OK;
    }
    if (!strcmp(name, "smem_over_cap")) {
        p->plan.dynamic_smem_bytes = (t ? t->smem_bytes_per_block_optin : 232448) + 1024;
        return IR_OK;
    }
    if (!strcmp(name, "grid_over_residency")) {
        if (!t)
            return ir_fail(err, IR_ERR_UNSUPPORTED, "target", "the program has no target");
        int64_t extra = t->num_sms * t->max_blocks_per_sm + 1 - p->plan.grid;
        int32_t *qs = realloc(p->plan.queue_start, ((size_t)(p->plan.grid + extra) + 1) * sizeof *qs);
        if (!qs)
            return ir_fail(err, IR_ERR_NOMEM, "", "out of memory");
        p->plan.queue_start = qs;
        for (int64_t q = p->plan.grid + 1; q <= p->plan.grid + extra; q++)
            qs[q] = qs[p->plan.grid];
        p->plan.grid += extra;
        return IR_OK;
    }
    if (!strcmp(name, "write_to_weight")) {
        int32_t i = pick(p, seed, is_tile);
        if (i < 0)
            return ir_fail(err, IR_ERR_UNSUPPORTED, "tasks", "no GEMV tile");
        p->tasks[i].outputs[0] = p->tasks[i].inputs[1];
        return IR_OK;
    }
    /* output_never_written: narrow the tile that ends at the output's last column. */
    for (int32_t i = 0; i < p->n_tasks; i++) {
        if (!writes_output(p, i))
            continue;
        int64_t off, n;
        ir_task_int(&p->tasks[i], "n_off", &off);
        ir_task_int(&p->tasks[i], "N_tile", &n);
        const ir_buffer *b = &p->buffers[p->tasks[i].outputs[0]];
        if (off + n == b->shape[b->rank - 1] && n > 1) {
            ir_task_set_int(&p->tasks[i], "N_tile", n - 1);
            return IR_OK;
        }
    }
    return ir_fail(err, IR_ERR_UNSUPPORTED, "tasks", "no tile writes the end of an output");
}
