/*
 * mutate.c - reproducible single-defect mutations of a program with a launch plan. Each family
 * breaks one safety obligation in one way; the seed picks the site among the candidates, so a
 * (program, family, seed) triple always yields the same mutant.
 */
#include <stdlib.h>
#include <string.h>

#include "proofs/proofs.h"

static const proofs_mutation FAMILIES[] = {
    {"cross_queue_deadlock", "deadlock",
     "two consumers move to the heads of two queues, each ahead of the other's producer"},
    {"self_wait", "deadlock", "a task waits on its own out counter"},
    {"threshold_above_producers", "deadlock", "a wait threshold exceeds the producer count"},
    {"dropped_wait", "race", "a consumer loses the wait that ordered it after its producer"},
    {"overlapping_tiles", "race", "a GEMV tile widens into its neighbour's columns"},
    {"smem_over_cap", "smem_cap", "the plan asks for more dynamic SMEM than the opt-in cap"},
    {"grid_over_residency", "occupancy", "the grid exceeds what can be co-resident"},
    {"write_to_weight", "readonly_write", "a task writes a weight buffer"},
    {"output_never_written", "output_unwritten", "the tile writing the last output columns is "
                                                 "narrowed"},
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
    return p->tasks[i].op == IR_OP_GEMV_TILE && ir_task_int(&p->tasks[i], "N_tile", &v);
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
            p->tasks[j].sm != p->tasks[i].sm)
            return true;
    }
    return false;
}

ir_status proofs_mutate(ir_program *p, const char *name, uint64_t seed, ir_error *err)
{
    if (!proofs_mutation_find(name))
        return ir_fail(err, IR_ERR_MALFORMED, "--kind", "unknown mutation '%s'", name);
    if (!p->has_plan)
        return ir_fail(err, IR_ERR_UNSUPPORTED, "launch_plan", "mutations need a launch plan");
    const ir_target *t = p->has_target ? &p->target : NULL;
    if (!strcmp(name, "cross_queue_deadlock")) {
        int32_t w1 = pick(p, seed, has_wait), p1 = w1 >= 0 ? first_producer(p, &p->tasks[w1]) : -1;
        int32_t w2 = -1, p2 = -1;
        for (uint64_t k = 1; k < 64 && w2 < 0; k++) {
            int32_t c = pick(p, seed + k, has_wait), cp = c >= 0 ? first_producer(p, &p->tasks[c]) : -1;
            if (c >= 0 && cp >= 0 && c != w1 && c != p1 && cp != w1 && cp != p1)
                w2 = c, p2 = cp;
        }
        if (w1 < 0 || p1 < 0 || w2 < 0 || p->plan.grid < 2)
            return ir_fail(err, IR_ERR_UNSUPPORTED, "tasks", "no two independent waiting tasks");
        int32_t qa = 0, qb = 1;
        move_task(p, p2, qa, 0);
        move_task(p, w1, qa, 0);
        move_task(p, p1, qb, 0);
        move_task(p, w2, qb, 0);
        return IR_OK;
    }
    if (!strcmp(name, "self_wait") || !strcmp(name, "threshold_above_producers") ||
        !strcmp(name, "dropped_wait")) {
        int32_t i = pick(p, seed, has_wait);
        if (i < 0)
            return ir_fail(err, IR_ERR_UNSUPPORTED, "tasks", "no task waits on anything");
        ir_task *k = &p->tasks[i];
        if (!strcmp(name, "self_wait")) {
            if (k->n_waits < IR_MAX_WAITS)
                k->waits[k->n_waits++] = (ir_wait){k->out_counter, 1};
            else
                k->waits[0] = (ir_wait){k->out_counter, 1};
        } else if (!strcmp(name, "threshold_above_producers")) {
            int64_t np = 0;
            for (int32_t j = 0; j < p->n_tasks; j++)
                np += p->tasks[j].out_counter == k->waits[0].counter;
            k->waits[0].threshold = np + 1;
        } else {
            /* Drop every wait: the task no longer waits for the producer of its input. */
            k->n_waits = 0;
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
