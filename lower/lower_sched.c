/*
 * lower_sched.c - the ScheduleConfig side of lowering: semantic checks of the knobs, which
 * queue (block) runs each task, and the launch plan. Queues are the one global topological
 * order (task-id order: the graph builder emits every task after the producers it waits on)
 * filtered per queue, which makes a lowered program deadlock-free by construction: the unfinished
 * task with the smallest id is always at the head of its queue and all it waits for is done.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/base.h"
#include "lower/lower_internal.h"

#define MAX_SMEM_BYTES BASE_MAX_SMEM_BYTES
#define MAX_TILE BASE_MAX_TILE

/* ---------------------------------------------------------------- config checks */

/* The fusion groups the lowering knows, each a set of names (any order). A name may appear in
 * one group of a config only. */
typedef struct {
    const char *names[4];
    bool gate_up, mlp_norm, attn_norm, final_norm, o_resid, silu_down, down_resid, rope_append,
        rope_attn;
} fusion_kind;

static const fusion_kind FUSIONS[] = {
    {{"gate", "up"}, .gate_up = true},
    {{"mlp_norm", "gate", "up"}, .gate_up = true, .mlp_norm = true},
    {{"attn_norm", "q", "k", "v"}, .attn_norm = true},
    {{"final_norm", "lm_head"}, .final_norm = true},
    {{"o", "resid_attn"}, .o_resid = true},
    {{"silu_mul", "down"}, .silu_down = true},
    {{"down", "resid_mlp"}, .down_resid = true},
    {{"silu_mul", "down", "resid_mlp"}, .silu_down = true, .down_resid = true},
    {{"rope_k", "kv_append_k"}, .rope_append = true},
    {{"rope_q", "attention"}, .rope_attn = true},
};

static bool group_has(const ir_fusion_group *g, const char *name)
{
    for (int j = 0; j < g->n; j++)
        if (!strcmp(g->names[j], name))
            return true;
    return false;
}

/* The known group equal to g as a set, or NULL. */
static const fusion_kind *fusion_lookup(const ir_fusion_group *g)
{
    for (size_t i = 0; i < sizeof FUSIONS / sizeof FUSIONS[0]; i++) {
        const fusion_kind *f = &FUSIONS[i];
        int n = 0;
        while (n < 4 && f->names[n])
            n++;
        bool same = g->n == n;
        for (int j = 0; same && j < n; j++)
            same = group_has(g, f->names[j]);
        for (int j = 0; same && j < g->n; j++)       /* no duplicates inside g */
            for (int k = j + 1; k < g->n; k++)
                same = same && strcmp(g->names[j], g->names[k]);
        if (same)
            return f;
    }
    return NULL;
}

int lower_fusion_count(void)
{
    return (int)(sizeof FUSIONS / sizeof FUSIONS[0]);
}

int lower_fusion_group(int i, const char *names[4])
{
    if (i < 0 || i >= lower_fusion_count())
        return 0;
    int n = 0;
    while (n < 4 && FUSIONS[i].names[n]) {
        names[n] = FUSIONS[i].names[n];
        n++;
    }
    return n;
}

/* The knobs (lower.h). The ranges are the checker's: values no GPU could mean are refused;
 * a value a given target cannot hold (SMEM over its cap) is left to the verifier. */
static const char *const SM_POLICIES[] = {"load_balance", "round_robin", NULL};
static const char *const PAGE_POLICIES[] = {"graph_color", "linear", "none", NULL};
static const int64_t N_TILE_TRY[] = {16, 32, 64, 128, 256, 512, 1024};
static const int64_t STAGE_TRY[] = {0, 1, 2, 4, 8};
static const int64_t KV_BLOCK_TRY[] = {0, 32, 64, 128, 256, 512};
static const int64_t KV_HEADS_TRY[] = {0, 1, 2, 4};
static const int64_t DEPTH_TRY[] = {0, 1, 2, 4, 8};
static const int64_t THREADS_TRY[] = {128, 256, 512, 1024};
static const int64_t SMEM_TRY[] = {0, 16384, 49152, 98304, 196608};
#define VALUES(a) a, (int)(sizeof a / sizeof a[0])

static const lower_knob KNOBS[] = {
    {"tiling.gemv.N_tile", LOWER_KNOB_INT, "output rows per GEMV tile task",
     1, MAX_TILE, 1, LOWER_DEFAULT_N_TILE, true, NULL, VALUES(N_TILE_TRY)},
    {"tiling.gemv.stage_tiles", LOWER_KNOB_INT, "tiles per projection stage (q+k+v, gate+up); "
     "absent: N_tile alone decides", 1, MAX_TILE, 1, 0, true, NULL, VALUES(STAGE_TRY)},
    {"tiling.attention.kv_block", LOWER_KNOB_INT, "KV rows per split-attention tile, combined "
     "after; absent: one attention task over the window", 1, MAX_TILE, 1, 0, true, NULL,
     VALUES(KV_BLOCK_TRY)},
    {"tiling.attention.kv_heads", LOWER_KNOB_INT, "KV heads per attention task; absent: all",
     1, MAX_TILE, 1, 0, true, NULL, VALUES(KV_HEADS_TRY)},
    {"fusion_grouping", LOWER_KNOB_GROUPS, "op sequences lowered as one task; each op in one "
     "group; [rope_q, attention] excludes kv_block", 0, 0, 1, 0, false, NULL, NULL, 0},
    {"sm_assignment", LOWER_KNOB_ENUM, "which queue runs each task (or an explicit {task id: "
     "queue} map, not searched)", 0, 0, 1, 0, false, SM_POLICIES, NULL, 0},
    {"pipelining_depth", LOWER_KNOB_INT, "launch-plan pipelining depth", 0,
     BASE_MAX_PIPELINING_DEPTH, 1, 2, false, NULL, VALUES(DEPTH_TRY)},
    {"page_allocation", LOWER_KNOB_ENUM, "how activations share scratch pages", 0, 0, 1, 0,
     false, PAGE_POLICIES, NULL, 0},
    {"threads_per_block", LOWER_KNOB_INT, "threads of each megakernel block", 32,
     BASE_MAX_THREADS_PER_BLOCK, 32, 256, false, NULL, VALUES(THREADS_TRY)},
    {"smem_bytes_per_block", LOWER_KNOB_INT, "dynamic SMEM per block, also the budget of SMEM "
     "pages; over the target's opt-in cap the verifier refutes it", 0, MAX_SMEM_BYTES, 1, 0,
     false, NULL, VALUES(SMEM_TRY)},
};

int lower_knob_count(void)
{
    return (int)(sizeof KNOBS / sizeof KNOBS[0]);
}

const lower_knob *lower_knob_at(int i)
{
    return i >= 0 && i < lower_knob_count() ? &KNOBS[i] : NULL;
}

const lower_knob *lower_knob_find(const char *name)
{
    for (int i = 0; i < lower_knob_count(); i++)
        if (!strcmp(KNOBS[i].name, name))
            return &KNOBS[i];
    return NULL;
}

/* v against an INT knob's range: IR_OK or IR_ERR_MALFORMED at where. */
static ir_status knob_range(const lower_knob *k, int64_t v, const char *where, ir_error *err)
{
    if (v >= k->lo && v <= k->hi && v % k->multiple_of == 0)
        return IR_OK;
    char lo[32], hi[32];
    base_bound_text(k->lo, lo, sizeof lo);
    base_bound_text(k->hi, hi, sizeof hi);
    if (k->multiple_of > 1)
        return ir_fail(err, IR_ERR_MALFORMED, where, "must be a multiple of %lld in [%s, %s], "
                       "got %lld", (long long)k->multiple_of, lo, hi, (long long)v);
    return ir_fail(err, IR_ERR_MALFORMED, where, "must be in [%s, %s], got %lld", lo, hi,
                   (long long)v);
}

/* The scalar knob called name checked against its table entry. */
static ir_status scalar_range(const char *name, int64_t v, ir_error *err)
{
    char where[96];
    snprintf(where, sizeof where, "config.%s", name);
    return knob_range(lower_knob_find(name), v, where, err);
}

/* "[\"gate\", \"up\"], ..." for error messages: every group of FUSIONS. */
static void supported_groups(char *out, size_t len)
{
    out[0] = 0;
    for (size_t i = 0; i < sizeof FUSIONS / sizeof FUSIONS[0]; i++) {
        strncat(out, i ? ", [" : "[", len - strlen(out) - 1);
        for (int j = 0; j < 4 && FUSIONS[i].names[j]; j++) {
            strncat(out, j ? ", \"" : "\"", len - strlen(out) - 1);
            strncat(out, FUSIONS[i].names[j], len - strlen(out) - 1);
            strncat(out, "\"", len - strlen(out) - 1);
        }
        strncat(out, "]", len - strlen(out) - 1);
    }
}

ir_status lower_config_knobs(const ir_config *c, lower_knobs *k, ir_error *err)
{
    char where[160];
    memset(k, 0, sizeof *k);
    k->n_tile = LOWER_DEFAULT_N_TILE;
    for (int i = 0; i < c->n_tiling; i++) {
        const ir_tiling *t = &c->tiling[i];
        snprintf(where, sizeof where, "config.tiling.%s.%s", t->op, t->key);
        bool gemv = !strcmp(t->op, "gemv"), attn = !strcmp(t->op, "attention");
        if (!gemv && !attn) {
            snprintf(where, sizeof where, "config.tiling.%s", t->op);
            return ir_fail(err, IR_ERR_UNSUPPORTED, where,
                           "unknown tiling archetype \"%s\" (supported: gemv, attention)", t->op);
        }
        bool stage = gemv && !strcmp(t->key, "stage_tiles");
        if (gemv && strcmp(t->key, "N_tile") && !stage)
            return ir_fail(err, IR_ERR_UNSUPPORTED, where,
                           "unknown gemv tiling key \"%s\" (supported: N_tile, stage_tiles)",
                           t->key);
        bool heads = attn && !strcmp(t->key, "kv_heads");
        if (attn && strcmp(t->key, "kv_block") && !heads)
            return ir_fail(err, IR_ERR_UNSUPPORTED, where,
                           "unknown attention tiling key \"%s\" (supported: kv_block, kv_heads)",
                           t->key);
        char name[2 * IR_MAX_NAME + 16];
        snprintf(name, sizeof name, "tiling.%s.%s", t->op, t->key);
        ir_status s = knob_range(lower_knob_find(name), t->value, where, err);
        if (s != IR_OK)
            return s;
        if (stage)
            k->stage_tiles = t->value;
        else if (heads)
            k->kv_heads = t->value;
        else if (gemv)
            k->n_tile = t->value;
        else
            k->kv_block = t->value;
    }
    for (int i = 0; i < c->n_groups; i++) {
        snprintf(where, sizeof where, "config.fusion_grouping[%d]", i);
        const ir_fusion_group *g = &c->groups[i];
        const fusion_kind *f = fusion_lookup(g);
        if (!f) {
            char names[256] = "";
            for (int j = 0; j < g->n; j++) {
                strncat(names, j ? "\", \"" : "\"", sizeof names - strlen(names) - 1);
                strncat(names, g->names[j], sizeof names - strlen(names) - 1);
            }
            if (g->n)
                strncat(names, "\"", sizeof names - strlen(names) - 1);
            char known[512];
            supported_groups(known, sizeof known);
            return ir_fail(err, IR_ERR_UNSUPPORTED, where,
                           "unsupported fusion group [%s] (supported: %s)", names, known);
        }
        for (int j = 0; j < g->n; j++)
            for (int e = 0; e < i; e++)
                if (group_has(&c->groups[e], g->names[j]))
                    return ir_fail(err, IR_ERR_MALFORMED, where,
                                   "\"%s\" is already fused by config.fusion_grouping[%d]; "
                                   "list each op in one group", g->names[j], e);
        k->fuse_gate_up |= f->gate_up;
        k->fuse_mlp_norm |= f->mlp_norm;
        k->fuse_attn_norm |= f->attn_norm;
        k->fuse_final_norm |= f->final_norm;
        k->fuse_o_resid |= f->o_resid;
        k->fuse_silu_down |= f->silu_down;
        k->fuse_down_resid |= f->down_resid;
        k->fuse_rope_append |= f->rope_append;
        k->fuse_rope_attn |= f->rope_attn;
        if (f->rope_attn && k->kv_block)
            return ir_fail(err, IR_ERR_UNSUPPORTED, where,
                           "[\"rope_q\", \"attention\"] (FUSED recipe 6) attends over the whole "
                           "window; it cannot be combined with config.tiling.attention.kv_block");
    }
    ir_status s = scalar_range("pipelining_depth", c->pipelining_depth, err);
    if (s == IR_OK)
        s = scalar_range("threads_per_block", c->threads_per_block, err);
    /* Over the target's opt-in cap is accepted on purpose: the verifier refutes it with a
     * residency witness. Only values no GPU could mean are refused here. */
    if (s == IR_OK)
        s = scalar_range("smem_bytes_per_block", c->smem_bytes_per_block, err);
    if (s != IR_OK)
        return s;
    if ((unsigned)c->page_policy > IR_PAGES_NONE)
        return ir_fail(err, IR_ERR_MALFORMED, "config.page_allocation", "unknown policy");
    if ((unsigned)c->sm_policy > IR_SM_EXPLICIT)
        return ir_fail(err, IR_ERR_MALFORMED, "config.sm_assignment", "unknown policy");
    return IR_OK;
}

ir_status lower_config_check(const ir_config *c, ir_error *err)
{
    lower_knobs k;
    return lower_config_knobs(c, &k, err);
}

ir_status lower_config_copy(ir_config *dst, const ir_config *src)
{
    *dst = *src;
    dst->tiling = NULL;
    dst->groups = NULL;
    dst->explicit_task = dst->explicit_queue = NULL;
    dst->n_tiling = dst->n_groups = dst->n_explicit = 0;
    if (src->n_tiling) {
        dst->tiling = malloc((size_t)src->n_tiling * sizeof *dst->tiling);
        if (!dst->tiling)
            goto nomem;
        memcpy(dst->tiling, src->tiling, (size_t)src->n_tiling * sizeof *dst->tiling);
        dst->n_tiling = src->n_tiling;
    }
    if (src->n_groups) {
        dst->groups = calloc((size_t)src->n_groups, sizeof *dst->groups);
        if (!dst->groups)
            goto nomem;
        dst->n_groups = src->n_groups;
        for (int i = 0; i < src->n_groups; i++) {
            int n = src->groups[i].n;
            if (n) {
                dst->groups[i].names = malloc((size_t)n * sizeof *dst->groups[i].names);
                if (!dst->groups[i].names)
                    goto nomem;
                memcpy(dst->groups[i].names, src->groups[i].names,
                       (size_t)n * sizeof *dst->groups[i].names);
            }
            dst->groups[i].n = n;
        }
    }
    if (src->n_explicit) {
        dst->explicit_task = malloc((size_t)src->n_explicit * sizeof *dst->explicit_task);
        dst->explicit_queue = malloc((size_t)src->n_explicit * sizeof *dst->explicit_queue);
        if (!dst->explicit_task || !dst->explicit_queue)
            goto nomem;
        memcpy(dst->explicit_task, src->explicit_task,
               (size_t)src->n_explicit * sizeof *dst->explicit_task);
        memcpy(dst->explicit_queue, src->explicit_queue,
               (size_t)src->n_explicit * sizeof *dst->explicit_queue);
        dst->n_explicit = src->n_explicit;
    }
    return IR_OK;
nomem:
    ir_config_free(dst);
    return IR_ERR_NOMEM;
}

/* ---------------------------------------------------------------- queue assignment */

/* Min-heap of queues keyed by (load, queue index): the least-loaded queue, lowest index on
 * ties, in O(log grid). */
typedef struct {
    int64_t load;
    int32_t q;
} heap_item;

static bool heap_less(heap_item a, heap_item b)
{
    return a.load < b.load || (a.load == b.load && a.q < b.q);
}

static void heap_sift_down(heap_item *h, int32_t n, int32_t i)
{
    for (;;) {
        int32_t l = 2 * i + 1, r = l + 1, m = i;
        if (l < n && heap_less(h[l], h[m]))
            m = l;
        if (r < n && heap_less(h[r], h[m]))
            m = r;
        if (m == i)
            return;
        heap_item t = h[i];
        h[i] = h[m];
        h[m] = t;
        i = m;
    }
}

/* Longest-processing-time over the topological order: each task, in id order, goes to the
 * queue with the least est_bytes so far. */
static ir_status assign_load_balance(ir_program *p, int64_t grid)
{
    heap_item *h = malloc((size_t)grid * sizeof *h);
    if (!h)
        return IR_ERR_NOMEM;
    for (int32_t q = 0; q < grid; q++)
        h[q] = (heap_item){0, q};
    for (int32_t i = 0; i < p->n_tasks; i++) {
        p->tasks[i].sm = h[0].q;
        /* A zero-cost task still advances its queue a little, so that a run of free tasks is
         * spread instead of piling onto one queue. */
        int64_t cost = p->tasks[i].est_bytes > 0 ? p->tasks[i].est_bytes : 1;
        h[0].load += cost;
        heap_sift_down(h, (int32_t)grid, 0);
    }
    free(h);
    return IR_OK;
}

static ir_status assign_explicit(ir_program *p, const ir_config *c, int64_t grid, ir_error *err)
{
    char where[96];
    for (int32_t i = 0; i < p->n_tasks; i++)
        p->tasks[i].sm = -1;
    for (int e = 0; e < c->n_explicit; e++) {
        int32_t id = c->explicit_task[e], q = c->explicit_queue[e];
        snprintf(where, sizeof where, "config.sm_assignment.%d", id);
        if (id < 0 || id >= p->n_tasks)
            return ir_fail(err, IR_ERR_MALFORMED, where,
                           "names task %d but the program has tasks 0..%d", id, p->n_tasks - 1);
        if (q < 0 || q >= grid)
            return ir_fail(err, IR_ERR_MALFORMED, where,
                           "queue %d is out of range [0, %lld) (grid = target num_sms)", q,
                           (long long)grid);
        if (p->tasks[id].sm != -1)
            return ir_fail(err, IR_ERR_MALFORMED, where, "task %d is assigned twice", id);
        p->tasks[id].sm = q;
    }
    for (int32_t i = 0; i < p->n_tasks; i++)
        if (p->tasks[i].sm == -1)
            return ir_fail(err, IR_ERR_MALFORMED, "config.sm_assignment",
                           "task %d (%s) has no queue; an explicit map must cover all %d tasks", i,
                           p->tasks[i].label, p->n_tasks);
    return IR_OK;
}

ir_status lower_assign_sms(ir_program *p, const ir_config *c, int64_t grid, ir_error *err)
{
    if (grid < 1 || grid > BASE_MAX_GRID)
        return ir_fail(err, IR_ERR_MALFORMED, "target.num_sms", "must be in [1, 2^24], got %lld",
                       (long long)grid);
    switch (c->sm_policy) {
    case IR_SM_ROUND_ROBIN:
        for (int32_t i = 0; i < p->n_tasks; i++)
            p->tasks[i].sm = (int32_t)(i % grid);
        return IR_OK;
    case IR_SM_EXPLICIT:
        return assign_explicit(p, c, grid, err);
    case IR_SM_LOAD_BALANCE:
        if (assign_load_balance(p, grid) != IR_OK)
            return ir_fail(err, IR_ERR_NOMEM, "lower", "out of memory");
        return IR_OK;
    }
    return ir_fail(err, IR_ERR_MALFORMED, "config.sm_assignment", "unknown policy");
}

/* ---------------------------------------------------------------- launch plan */

ir_status lower_build_plan(ir_program *p, const ir_config *c, const ir_target *t, ir_error *err)
{
    int64_t grid = t->num_sms;
    ir_plan *pl = &p->plan;
    if (ir_plan_alloc(pl, grid, p->n_tasks) != IR_OK)
        return ir_fail(err, IR_ERR_NOMEM, "launch_plan", "out of memory");
    pl->grid = grid;
    pl->threads_per_block = c->threads_per_block;
    pl->dynamic_smem_bytes = c->smem_bytes_per_block;
    pl->static_smem_bytes = 0;
    int64_t regs = t->max_regs_per_thread;
    if (c->threads_per_block > 0 && t->regs_per_sm / c->threads_per_block < regs)
        regs = t->regs_per_sm / c->threads_per_block;
    pl->regs_per_thread = regs / 8 * 8;
    pl->pipelining_depth = c->pipelining_depth;
    /* Counting sort by queue, stable in task-id order. */
    for (int32_t i = 0; i < p->n_tasks; i++)
        pl->queue_start[p->tasks[i].sm + 1]++;
    for (int64_t q = 0; q < grid; q++)
        pl->queue_start[q + 1] += pl->queue_start[q];
    int32_t *fill = malloc((size_t)grid * sizeof *fill);
    if (!fill) {
        ir_plan_free(pl);
        return ir_fail(err, IR_ERR_NOMEM, "launch_plan", "out of memory");
    }
    memcpy(fill, pl->queue_start, (size_t)grid * sizeof *fill);
    for (int32_t i = 0; i < p->n_tasks; i++)
        pl->queue_tasks[fill[p->tasks[i].sm]++] = i;
    free(fill);
    p->has_plan = true;
    return IR_OK;
}
