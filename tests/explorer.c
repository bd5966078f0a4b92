/*
 * explorer.c - the oracle the verifier is tested against: deadlock and races of a small program
 * decided by definition, by visiting every reachable state, the two page defects (clobber,
 * alias), plus a seeded generator of random small programs. Independent of verify/ on purpose;
 * keep it simple enough to be obviously right.
 *
 * The definitions (SPEC.md section 11 says the same):
 *
 *   Execution. One launch runs the Q queues of the launch plan (without a plan: one queue per
 *   distinct sm value, in task-list order, and one queue per task whose sm is null). Every
 *   counter starts at 0. Queue q runs its tasks in order. Two kinds of
 *   event exist, each one step of one queue:
 *     START(q)   the head task of queue q is not running and every wait (counter >= threshold)
 *                of it holds; it becomes RUNNING;
 *     FINISH(q)  the running task of queue q adds 1 to its out_counter and the queue advances.
 *   A state is, per queue, the index of its head and whether the head is running; counter
 *   values follow from it (a counter's value is the number of finished tasks producing it).
 *   Every interleaving of events is explored from the initial state; states are memoized.
 *
 *   Deadlock. A reachable state in which no event is possible and some task has not finished.
 *
 *   Conflict. Tasks a != b conflict when some access of a and some access of b, at least one of
 *   them a write, touch overlapping data:
 *     - the same buffer, and their element boxes (ir_task_footprint at the program's decode
 *       position, or 0) intersect in every dimension; or
 *     - different buffers mapped to the same page (pages.buffer_to_page), and their byte spans
 *       intersect; an access's byte span is [first byte, last byte + 1) of its box in the
 *       buffer's row-major layout, the buffer starting at byte 0 of the page.
 *   Reads of WEIGHT, CONST and IO_INPUT buffers are not accesses: nothing may write them. An
 *   empty box touches nothing. A task never conflicts with itself.
 *
 *   Race. Two conflicting tasks are both RUNNING in some reachable state. Races are looked for
 *   in every reachable state, including those of a program that also deadlocks.
 *
 *   Page bytes. An access touches, on its buffer's page, the bytes of the elements of its box
 *   (row-major, the buffer at byte 0): exactly those bytes, gaps between the rows of a tile
 *   excluded, unlike the span of a conflict.
 *
 *   Clobber (decided only when there is no race). A task reads a byte of buffer A whose last
 *   writer, in execution order, wrote it through another buffer B of the page: B overwrote A's
 *   data, or B's data is read as A. A task reads before it writes; a byte nobody wrote is not a
 *   clobber. Without a race every two tasks touching one byte, one of them writing, conflict and
 *   so have one order in every execution, and every maximal execution runs the same tasks: one
 *   greedy run decides it (explore_naive checks that every event sequence agrees).
 *
 *   Alias. A task that runs (in the greedy run, so in every maximal execution) has accesses to two
 *   different buffers of one page, at least one a write, whose byte spans intersect (as in a
 *   conflict). Order plays no part: it is a defect even when nothing runs beside the task.
 *
 * The state space has prod_q (2 * len_q + 1) states; each event adds 1 to one queue's digit,
 * so a state is a mixed-radix number and the visited set a flat array.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tests/explorer.h"

/* ---------------------------------------------------------------- the model */

typedef struct {
    int32_t buffer;
    bool write;
    int rank;
    int64_t lo[IR_MAX_RANK], hi[IR_MAX_RANK];
} explore_access;

/* What every decision procedure here shares: the queues, the mixed radix of the state number,
 * and the conflict relation. */
typedef struct {
    const ir_program *p;
    int32_t n_queues;
    int32_t *start;        /* queue q holds tasks[start[q] .. start[q+1]) */
    int32_t *tasks;
    int64_t mult[EXPLORE_MAX_QUEUES]; /* place value of queue q's digit */
    int64_t n_codes;       /* number of state numbers */
    explore_access *acc;   /* task t's accesses: acc[t * EXPLORE_SLOTS ..], n_acc[t] of them */
    int *n_acc;
    int32_t *page_of;      /* per buffer: its page, -1 when none */
    int64_t *byte_base;    /* per buffer: where its page starts in the page bytes, -1 when none */
    int64_t n_page_bytes;  /* bytes of every page together */
    bool *conflict;        /* n_tasks * n_tasks */
} explore_model;

#define EXPLORE_SLOTS (IR_MAX_INPUTS + IR_MAX_OUTPUTS)

static void model_free(explore_model *m)
{
    free(m->start);
    free(m->tasks);
    free(m->acc);
    free(m->n_acc);
    free(m->page_of);
    free(m->byte_base);
    free(m->conflict);
    memset(m, 0, sizeof *m);
}

static int32_t queue_len(const explore_model *m, int32_t q) { return m->start[q + 1] - m->start[q]; }

/* The queues of p into m: the launch plan's, checked to list every task exactly once. */
static ir_status load_queues(const ir_program *p, explore_model *m, ir_error *err)
{
    if (!p->has_plan) {
        /* one queue per distinct sm value, in increasing sm order, each in task-list order; then
         * one queue per task whose sm is null */
        m->start = malloc(((size_t)p->n_tasks + 1) * sizeof *m->start);
        m->tasks = malloc(((size_t)p->n_tasks + 1) * sizeof *m->tasks);
        if (!m->start || !m->tasks)
            return ir_fail(err, IR_ERR_NOMEM, "explorer", "out of memory");
        int32_t k = 0, sm = -1;
        for (;;) {
            int32_t next = INT32_MAX;        /* the smallest sm value above sm */
            for (int32_t t = 0; t < p->n_tasks; t++)
                if (p->tasks[t].sm > sm && p->tasks[t].sm < next)
                    next = p->tasks[t].sm;
            if (next == INT32_MAX)
                break;
            sm = next;
            if (m->n_queues == EXPLORE_MAX_QUEUES)
                return ir_fail(err, IR_ERR_UNSUPPORTED, "tasks", "explorer handles at most %d queues",
                               EXPLORE_MAX_QUEUES);
            m->start[m->n_queues++] = k;
            for (int32_t t = 0; t < p->n_tasks; t++)
                if (p->tasks[t].sm == sm)
                    m->tasks[k++] = t;
        }
        for (int32_t t = 0; t < p->n_tasks; t++)
            if (p->tasks[t].sm < 0) {
                if (m->n_queues == EXPLORE_MAX_QUEUES)
                    return ir_fail(err, IR_ERR_UNSUPPORTED, "tasks", "explorer handles at most %d queues",
                                   EXPLORE_MAX_QUEUES);
                m->start[m->n_queues++] = k;
                m->tasks[k++] = t;
            }
        m->start[m->n_queues] = k;
    } else {
        const ir_plan *pl = &p->plan;
        if (pl->grid < 0 || pl->grid > EXPLORE_MAX_QUEUES)
            return ir_fail(err, IR_ERR_UNSUPPORTED, "launch_plan.grid",
                           "explorer handles 0..%d queues, got %lld", EXPLORE_MAX_QUEUES,
                           (long long)pl->grid);
        m->n_queues = (int32_t)pl->grid;
        if (pl->queue_start[0] != 0 || pl->queue_start[m->n_queues] != p->n_tasks)
            return ir_fail(err, IR_ERR_MALFORMED, "launch_plan.queues",
                           "queues hold %d entries for %d tasks",
                           pl->queue_start[m->n_queues] - pl->queue_start[0], p->n_tasks);
        for (int32_t q = 0; q < m->n_queues; q++)
            if (pl->queue_start[q + 1] < pl->queue_start[q])
                return ir_fail(err, IR_ERR_MALFORMED, "launch_plan.queues", "queue %d ends before it starts", q);
        m->start = malloc(((size_t)m->n_queues + 1) * sizeof *m->start);
        m->tasks = malloc(((size_t)p->n_tasks + 1) * sizeof *m->tasks);
        if (!m->start || !m->tasks)
            return ir_fail(err, IR_ERR_NOMEM, "explorer", "out of memory");
        memcpy(m->start, pl->queue_start, ((size_t)m->n_queues + 1) * sizeof *m->start);
        memcpy(m->tasks, pl->queue_tasks, (size_t)p->n_tasks * sizeof *m->tasks);
    }
    bool *listed = calloc((size_t)p->n_tasks + 1, sizeof *listed);
    if (!listed)
        return ir_fail(err, IR_ERR_NOMEM, "explorer", "out of memory");
    for (int32_t i = 0; i < p->n_tasks; i++) {
        int32_t t = m->tasks[i];
        if (t < 0 || t >= p->n_tasks || listed[t]) {
            free(listed);
            return ir_fail(err, IR_ERR_MALFORMED, "launch_plan.queues",
                           "entry %d: task %d is out of range or listed twice", i, t);
        }
        listed[t] = true;
    }
    free(listed);
    return IR_OK;
}

/* The accesses of task t that can conflict: every output, and inputs not of a read-only kind. */
static ir_status task_accesses(const ir_program *p, const ir_task *t, explore_access *out, int *n,
                               ir_error *err)
{
    int64_t pos = p->has_decode ? p->decode.pos : 0;
    *n = 0;
    for (int is_output = 0; is_output <= 1; is_output++) {
        int slots = is_output ? t->n_outputs : t->n_inputs;
        for (int s = 0; s < slots; s++) {
            int32_t b = is_output ? t->outputs[s] : t->inputs[s];
            if (b < 0 || b >= p->n_buffers)
                return ir_fail(err, IR_ERR_MALFORMED, "explorer", "task %d: buffer %d out of range", t->id, b);
            if (!is_output && ir_kind_is_readonly(p->buffers[b].kind))
                continue;
            ir_box box;
            ir_status st = ir_task_footprint(p, t, is_output, s, &box, err);
            if (st != IR_OK)
                return st;
            if (box.rank != p->buffers[b].rank)
                return ir_fail(err, IR_ERR_MALFORMED, "explorer", "task %d: footprint of rank %d on buffer %d of rank %d",
                               t->id, box.rank, b, p->buffers[b].rank);
            explore_access *a = &out[(*n)++];
            a->buffer = b;
            a->write = is_output;
            a->rank = box.rank;
            ir_box_eval(&box, pos, a->lo, a->hi);
        }
    }
    return IR_OK;
}

static bool access_empty(const explore_access *a)
{
    for (int d = 0; d < a->rank; d++)
        if (a->hi[d] <= a->lo[d])
            return true;
    return false;
}

/* [*first, *end): the bytes from the first to the last element of a's box, row-major. */
static void access_byte_span(const ir_buffer *b, const explore_access *a, int64_t *first, int64_t *end)
{
    int64_t lin_first = 0, lin_last = 0, stride = 1;
    for (int d = a->rank - 1; d >= 0; d--) {
        lin_first += a->lo[d] * stride;
        lin_last += (a->hi[d] - 1) * stride;
        stride *= b->shape[d];
    }
    int64_t bits = ir_dtype_bits(b->dtype);
    *first = lin_first * bits / 8;
    *end = ((lin_last + 1) * bits + 7) / 8;
}

static bool accesses_conflict(const ir_program *p, const int32_t *page_of, const explore_access *x,
                              const explore_access *y)
{
    if (!x->write && !y->write)
        return false;
    if (access_empty(x) || access_empty(y))
        return false;
    if (x->buffer == y->buffer) {
        for (int d = 0; d < x->rank; d++) {
            int64_t lo = x->lo[d] > y->lo[d] ? x->lo[d] : y->lo[d];
            int64_t hi = x->hi[d] < y->hi[d] ? x->hi[d] : y->hi[d];
            if (lo >= hi)
                return false;
        }
        return true;
    }
    if (page_of[x->buffer] < 0 || page_of[x->buffer] != page_of[y->buffer])
        return false;
    int64_t xf, xe, yf, ye;
    access_byte_span(&p->buffers[x->buffer], x, &xf, &xe);
    access_byte_span(&p->buffers[y->buffer], y, &yf, &ye);
    return xf < ye && yf < xe;
}

/* page_of[b]: the page buffer b is mapped to, -1 when none. */
static void pages_of_buffers(const ir_program *p, int32_t *page_of)
{
    for (int32_t b = 0; b < p->n_buffers; b++)
        page_of[b] = -1;
    if (p->has_pages)
        for (int i = 0; i < p->pages.n_map; i++)
            if (p->pages.map_buffer[i] >= 0 && p->pages.map_buffer[i] < p->n_buffers)
                page_of[p->pages.map_buffer[i]] = p->pages.map_page[i];
}

/* byte_base[b]: where b's page starts in one array of every page's bytes, each page as large as
 * its largest buffer; -1 for a buffer on no page. Returns the bytes of every page together. */
static int64_t page_byte_layout(const ir_program *p, const int32_t *page_of, int64_t *byte_base)
{
    int64_t total = 0;
    for (int32_t b = 0; b < p->n_buffers; b++)
        byte_base[b] = -1;
    for (int32_t b = 0; b < p->n_buffers; b++) {
        if (page_of[b] < 0 || byte_base[b] >= 0)
            continue;
        int64_t size = 0;
        for (int32_t o = b; o < p->n_buffers; o++)
            if (page_of[o] == page_of[b]) {
                byte_base[o] = total;
                if (ir_buffer_nbytes(&p->buffers[o]) > size)
                    size = ir_buffer_nbytes(&p->buffers[o]);
            }
        total += size;
    }
    return total;
}

/* The accesses of every task, the pages and their bytes, and conflict[a * n + b] for every pair
 * of tasks, into m (m->p set, the rest zero or already built). */
static ir_status model_accesses(explore_model *m, ir_error *err)
{
    const ir_program *p = m->p;
    int32_t n = p->n_tasks;
    m->acc = malloc(((size_t)n + 1) * EXPLORE_SLOTS * sizeof *m->acc);
    m->n_acc = calloc((size_t)n + 1, sizeof *m->n_acc);
    m->page_of = malloc(((size_t)p->n_buffers + 1) * sizeof *m->page_of);
    m->byte_base = malloc(((size_t)p->n_buffers + 1) * sizeof *m->byte_base);
    m->conflict = calloc((size_t)n * n + 1, sizeof *m->conflict);
    if (!m->acc || !m->n_acc || !m->page_of || !m->byte_base || !m->conflict)
        return ir_fail(err, IR_ERR_NOMEM, "explorer", "out of memory");
    pages_of_buffers(p, m->page_of);
    m->n_page_bytes = page_byte_layout(p, m->page_of, m->byte_base);
    for (int32_t t = 0; t < n; t++) {
        ir_status st = task_accesses(p, &p->tasks[t], &m->acc[(size_t)t * EXPLORE_SLOTS], &m->n_acc[t], err);
        if (st != IR_OK)
            return st;
    }
    for (int32_t a = 0; a < n; a++)
        for (int32_t b = 0; b < n; b++) {
            bool c = false;
            const explore_access *xa = &m->acc[(size_t)a * EXPLORE_SLOTS];
            const explore_access *xb = &m->acc[(size_t)b * EXPLORE_SLOTS];
            for (int i = 0; a != b && i < m->n_acc[a] && !c; i++)
                for (int j = 0; j < m->n_acc[b] && !c; j++)
                    c = accesses_conflict(p, m->page_of, &xa[i], &xb[j]);
            m->conflict[(size_t)a * n + b] = c;
        }
    return IR_OK;
}

static ir_status model_build(const ir_program *p, explore_model *m, ir_error *err)
{
    memset(m, 0, sizeof *m);
    m->p = p;
    for (int32_t c = 0; c < p->n_counters; c++)
        if (p->counters[c].init != 0)
            return ir_fail(err, IR_ERR_MALFORMED, "explorer", "counter %d starts at %lld, not 0", c,
                           (long long)p->counters[c].init);
    for (int32_t t = 0; t < p->n_tasks; t++) {
        const ir_task *task = &p->tasks[t];
        if (task->out_counter < 0 || task->out_counter >= p->n_counters)
            return ir_fail(err, IR_ERR_MALFORMED, "explorer", "task %d: out_counter %d out of range", t,
                           task->out_counter);
        for (int w = 0; w < task->n_waits; w++)
            if (task->waits[w].counter < 0 || task->waits[w].counter >= p->n_counters)
                return ir_fail(err, IR_ERR_MALFORMED, "explorer", "task %d: wait on counter %d out of range",
                               t, task->waits[w].counter);
    }
    ir_status st = load_queues(p, m, err);
    if (st != IR_OK)
        return st;
    m->n_codes = 1;
    for (int32_t q = 0; q < m->n_queues; q++) {
        int64_t radix = 2 * (int64_t)queue_len(m, q) + 1;
        m->mult[q] = m->n_codes;
        if (m->n_codes > EXPLORE_MAX_STATES / radix)
            return ir_fail(err, IR_ERR_UNSUPPORTED, "explorer", "more than %lld states",
                           (long long)EXPLORE_MAX_STATES);
        m->n_codes *= radix;
    }
    return model_accesses(m, err);
}

/* Digit of queue q: 2 * (index of its head) + (1 if the head is running). */
static void state_digits(const explore_model *m, int64_t code, int32_t *digit)
{
    for (int32_t q = 0; q < m->n_queues; q++)
        digit[q] = (int32_t)(code / m->mult[q] % (2 * (int64_t)queue_len(m, q) + 1));
}

/* value[c]: how many finished tasks produce counter c. */
static void state_counters(const explore_model *m, const int32_t *digit, int64_t *value)
{
    for (int32_t c = 0; c < m->p->n_counters; c++)
        value[c] = 0;
    for (int32_t q = 0; q < m->n_queues; q++)
        for (int32_t i = 0; i < digit[q] / 2; i++)
            value[m->p->tasks[m->tasks[m->start[q] + i]].out_counter]++;
}

static bool task_ready(const ir_task *t, const int64_t *value)
{
    for (int w = 0; w < t->n_waits; w++)
        if (value[t->waits[w].counter] < t->waits[w].threshold)
            return false;
    return true;
}

/* The task at the head of queue q in a state with that digit. */
static int32_t head_task(const explore_model *m, int32_t q, int32_t digit)
{
    return m->tasks[m->start[q] + digit / 2];
}

/* One maximal run: ready queue heads run to completion, queue by queue, until none is ready.
 * order[] gets the tasks in the order they ran and done[q] how many of queue q's tasks ran (both
 * sized by the caller); value[] (n_counters) ends with the counters. Returns how many ran. The
 * tasks that run are those of every maximal execution (the system is persistent). */
static int32_t greedy_run(const explore_model *m, int64_t *value, int32_t *done, int32_t *order)
{
    const ir_program *p = m->p;
    int32_t n_run = 0;
    for (int32_t c = 0; c < p->n_counters; c++)
        value[c] = 0;
    for (int32_t q = 0; q < m->n_queues; q++)
        done[q] = 0;
    bool progress = true;
    while (progress) {
        progress = false;
        for (int32_t q = 0; q < m->n_queues; q++)
            while (done[q] < queue_len(m, q) && task_ready(&p->tasks[m->tasks[m->start[q] + done[q]]], value)) {
                int32_t t = m->tasks[m->start[q] + done[q]++];
                value[p->tasks[t].out_counter]++;
                order[n_run++] = t;
                progress = true;
            }
    }
    return n_run;
}

/* ---------------------------------------------------------------- page bytes */

/* Access a on the page bytes, last_writer[] holding per byte the buffer that last wrote it (-1:
 * nobody). A write becomes the last writer of every byte of its elements; a read returns whether
 * one of them was last written through another buffer. Elements outside the buffer touch
 * nothing. */
static bool access_touch_bytes(const explore_model *m, const explore_access *a, int32_t *last_writer)
{
    const ir_buffer *b = &m->p->buffers[a->buffer];
    int64_t base = m->byte_base[a->buffer];
    if (base < 0)
        return false;
    int64_t lo[IR_MAX_RANK], hi[IR_MAX_RANK], idx[IR_MAX_RANK];
    for (int d = 0; d < a->rank; d++) {
        lo[d] = a->lo[d] > 0 ? a->lo[d] : 0;
        hi[d] = a->hi[d] < b->shape[d] ? a->hi[d] : b->shape[d];
        if (hi[d] <= lo[d])
            return false;
        idx[d] = lo[d];
    }
    int64_t bits = ir_dtype_bits(b->dtype);
    bool other = false;
    for (;;) {
        int64_t lin = 0;
        for (int d = 0; d < a->rank; d++)
            lin = lin * b->shape[d] + idx[d];
        for (int64_t x = base + lin * bits / 8; x < base + ((lin + 1) * bits + 7) / 8; x++) {
            if (a->write)
                last_writer[x] = a->buffer;
            else if (last_writer[x] >= 0 && last_writer[x] != a->buffer)
                other = true;
        }
        int d = a->rank - 1;           /* the next element, row-major */
        while (d >= 0 && ++idx[d] == hi[d]) {
            idx[d] = lo[d];
            d--;
        }
        if (d < 0)
            return other;
    }
}

/* Task t runs on the page bytes: every read, then every write. Returns whether a read met a byte
 * last written through another buffer. */
static bool task_touch_bytes(const explore_model *m, int32_t t, int32_t *last_writer)
{
    const explore_access *acc = &m->acc[(size_t)t * EXPLORE_SLOTS];
    bool clobbered = false;
    for (int i = 0; i < m->n_acc[t]; i++)
        if (!acc[i].write && access_touch_bytes(m, &acc[i], last_writer))
            clobbered = true;
    for (int i = 0; i < m->n_acc[t]; i++)
        if (acc[i].write)
            access_touch_bytes(m, &acc[i], last_writer);
    return clobbered;
}

/* Alias: whether two accesses of task t, to different buffers, conflict through a page. */
static bool task_aliases(const explore_model *m, int32_t t)
{
    const explore_access *acc = &m->acc[(size_t)t * EXPLORE_SLOTS];
    for (int i = 0; i < m->n_acc[t]; i++)
        for (int j = i + 1; j < m->n_acc[t]; j++)
            if (acc[i].buffer != acc[j].buffer && accesses_conflict(m->p, m->page_of, &acc[i], &acc[j]))
                return true;
    return false;
}

/* Alias and, unless r->race, clobber, both over the tasks of one greedy run: the tasks that run in
 * every maximal execution, in an order that is the order of every execution wherever it matters
 * to clobber (see the definition above). */
static ir_status find_page_defects(const explore_model *m, explore_result *r, ir_error *err)
{
    const ir_program *p = m->p;
    int64_t *value = malloc(((size_t)p->n_counters + 1) * sizeof *value);
    int32_t *order = malloc(((size_t)p->n_tasks + 1) * sizeof *order);
    int32_t *last_writer = malloc(((size_t)m->n_page_bytes + 1) * sizeof *last_writer);
    ir_status st = IR_OK;
    if (!value || !order || !last_writer) {
        st = ir_fail(err, IR_ERR_NOMEM, "explorer", "out of memory");
        goto done;
    }
    int32_t ran_of_queue[EXPLORE_MAX_QUEUES];
    int32_t n_run = greedy_run(m, value, ran_of_queue, order);
    for (int32_t i = 0; i < n_run; i++)
        if (task_aliases(m, order[i]) && (!r->alias || order[i] < r->alias_task)) {
            r->alias = true;
            r->alias_task = order[i];
        }
    for (int64_t x = 0; x < m->n_page_bytes; x++)
        last_writer[x] = -1;
    for (int32_t i = 0; i < n_run && !r->race && !r->clobber; i++)
        if (task_touch_bytes(m, order[i], last_writer)) {
            r->clobber = true;
            r->clobber_task = order[i];
        }
done:
    free(value);
    free(order);
    free(last_writer);
    return st;
}

/* ---------------------------------------------------------------- exhaustive exploration */

ir_status explore_program(const ir_program *p, explore_result *r, ir_error *err)
{
    memset(r, 0, sizeof *r);
    r->race_a = r->race_b = -1;
    r->clobber_task = r->alias_task = -1;
    for (int q = 0; q < EXPLORE_MAX_QUEUES; q++)
        r->stuck_head[q] = -1;
    explore_model m;
    ir_status st = model_build(p, &m, err);
    uint8_t *seen = NULL;
    int64_t *stack = NULL;
    int64_t *value = NULL;
    if (st != IR_OK)
        goto done;
    r->n_queues = m.n_queues;
    seen = calloc((size_t)m.n_codes, 1);
    stack = malloc((size_t)m.n_codes * sizeof *stack);
    value = malloc(((size_t)p->n_counters + 1) * sizeof *value);
    if (!seen || !stack || !value) {
        st = ir_fail(err, IR_ERR_NOMEM, "explorer", "out of memory");
        goto done;
    }
    int64_t top = 0;
    stack[top++] = 0;  /* every queue at its first task, nothing running */
    seen[0] = 1;
    while (top > 0) {
        int64_t code = stack[--top];
        int32_t digit[EXPLORE_MAX_QUEUES];
        state_digits(&m, code, digit);
        state_counters(&m, digit, value);
        r->states++;
        for (int32_t qa = 0; qa < m.n_queues; qa++)
            for (int32_t qb = qa + 1; qb < m.n_queues; qb++) {
                if (digit[qa] % 2 == 0 || digit[qb] % 2 == 0)
                    continue;
                int32_t a = head_task(&m, qa, digit[qa]), b = head_task(&m, qb, digit[qb]);
                if (m.conflict[(size_t)a * p->n_tasks + b] && !r->race) {
                    r->race = true;
                    r->race_a = a < b ? a : b;
                    r->race_b = a < b ? b : a;
                }
            }
        bool any_event = false, unfinished = false;
        for (int32_t q = 0; q < m.n_queues; q++) {
            if (digit[q] == 2 * queue_len(&m, q))
                continue;
            unfinished = true;
            bool can = digit[q] % 2 == 1 || task_ready(&p->tasks[head_task(&m, q, digit[q])], value);
            if (!can)
                continue;
            any_event = true;
            int64_t next = code + m.mult[q];
            if (!seen[next]) {
                seen[next] = 1;
                stack[top++] = next;
            }
        }
        if (!any_event && unfinished && !r->deadlock) {
            r->deadlock = true;
            for (int32_t q = 0; q < m.n_queues; q++)
                r->stuck_head[q] = digit[q] == 2 * queue_len(&m, q) ? -1 : head_task(&m, q, digit[q]);
        }
    }
    st = find_page_defects(&m, r, err);
done:
    free(seen);
    free(stack);
    free(value);
    model_free(&m);
    return st;
}

ir_status explore_tasks_conflict(const ir_program *p, int32_t a, int32_t b, bool *out, ir_error *err)
{
    if (a < 0 || b < 0 || a >= p->n_tasks || b >= p->n_tasks)
        return ir_fail(err, IR_ERR_MALFORMED, "explorer", "task %d or %d out of range", a, b);
    explore_model m = {.p = p};
    ir_status st = model_accesses(&m, err);
    if (st == IR_OK)
        *out = m.conflict[(size_t)a * p->n_tasks + b];
    model_free(&m);
    return st;
}

/* ---------------------------------------------------------------- checks of the explorer */

#define EXPLORE_NAIVE_MAX_NODES 50000000

typedef struct {
    const explore_model *m;
    int32_t digit[EXPLORE_MAX_QUEUES];
    int64_t *value;        /* counters, updated as events happen */
    int32_t *last_writer;  /* page bytes (access_touch_bytes), updated as tasks start */
    int32_t *saved;        /* page bytes before the k-th task started, k = started */
    int32_t started;
    bool deadlock, race, clobber;
    int64_t nodes;
} naive_walk;

/* Every event sequence from the current state, depth first, undoing each event afterwards. */
static void naive_visit(naive_walk *w)
{
    const explore_model *m = w->m;
    const ir_program *p = m->p;
    if (++w->nodes > EXPLORE_NAIVE_MAX_NODES)
        return;
    for (int32_t qa = 0; qa < m->n_queues; qa++)
        for (int32_t qb = 0; qb < m->n_queues; qb++)
            if (qa != qb && w->digit[qa] % 2 == 1 && w->digit[qb] % 2 == 1 &&
                m->conflict[(size_t)head_task(m, qa, w->digit[qa]) * p->n_tasks + head_task(m, qb, w->digit[qb])])
                w->race = true;
    bool any_event = false, unfinished = false;
    for (int32_t q = 0; q < m->n_queues; q++) {
        if (w->digit[q] == 2 * queue_len(m, q))
            continue;
        unfinished = true;
        const ir_task *t = &p->tasks[head_task(m, q, w->digit[q])];
        if (w->digit[q] % 2 == 1) {
            any_event = true;
            w->value[t->out_counter]++;
            w->digit[q]++;
            naive_visit(w);
            w->digit[q]--;
            w->value[t->out_counter]--;
        } else if (task_ready(t, w->value)) {
            any_event = true;
            size_t n_bytes = (size_t)m->n_page_bytes * sizeof *w->last_writer;
            int32_t *saved = w->saved + (size_t)w->started * (size_t)m->n_page_bytes;
            memcpy(saved, w->last_writer, n_bytes);
            if (task_touch_bytes(m, head_task(m, q, w->digit[q]), w->last_writer))
                w->clobber = true;
            w->digit[q]++;
            w->started++;
            naive_visit(w);
            w->started--;
            w->digit[q]--;
            memcpy(w->last_writer, saved, n_bytes);
        }
    }
    if (!any_event && unfinished)
        w->deadlock = true;
}

ir_status explore_naive(const ir_program *p, bool *deadlock, bool *race, bool *clobber, ir_error *err)
{
    explore_model m;
    ir_status st = model_build(p, &m, err);
    naive_walk w = {.m = &m};
    if (st == IR_OK) {
        w.value = calloc((size_t)p->n_counters + 1, sizeof *w.value);
        w.last_writer = malloc(((size_t)m.n_page_bytes + 1) * sizeof *w.last_writer);
        w.saved = malloc(((size_t)p->n_tasks + 1) * ((size_t)m.n_page_bytes + 1) * sizeof *w.saved);
        if (!w.value || !w.last_writer || !w.saved)
            st = ir_fail(err, IR_ERR_NOMEM, "explorer", "out of memory");
    }
    if (st == IR_OK) {
        for (int64_t x = 0; x < m.n_page_bytes; x++)
            w.last_writer[x] = -1;
        naive_visit(&w);
        if (w.nodes > EXPLORE_NAIVE_MAX_NODES)
            st = ir_fail(err, IR_ERR_UNSUPPORTED, "explorer", "more than %d event sequences",
                         EXPLORE_NAIVE_MAX_NODES);
        *deadlock = w.deadlock;
        *race = w.race;
        *clobber = w.clobber;
    }
    free(w.value);
    free(w.last_writer);
    free(w.saved);
    model_free(&m);
    return st;
}

ir_status explore_greedy(const ir_program *p, bool *deadlock, ir_error *err)
{
    explore_model m;
    ir_status st = model_build(p, &m, err);
    int64_t *value = NULL;
    int32_t *order = NULL;
    if (st == IR_OK) {
        value = calloc((size_t)p->n_counters + 1, sizeof *value);
        order = malloc(((size_t)p->n_tasks + 1) * sizeof *order);
        if (!value || !order)
            st = ir_fail(err, IR_ERR_NOMEM, "explorer", "out of memory");
    }
    if (st == IR_OK) {
        int32_t done[EXPLORE_MAX_QUEUES];
        greedy_run(&m, value, done, order);
        *deadlock = false;
        for (int32_t q = 0; q < m.n_queues; q++)
            if (done[q] < queue_len(&m, q))
                *deadlock = true;
    }
    free(value);
    free(order);
    model_free(&m);
    return st;
}

/* ---------------------------------------------------------------- random programs */

/* splitmix64: a tiny, well-mixed generator whose whole state is one seed. */
static uint64_t gen_next(uint64_t *s)
{
    uint64_t z = (*s += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

/* Uniform in [0, n), n >= 1. */
static int64_t gen_below(uint64_t *s, int64_t n) { return (int64_t)(gen_next(s) % (uint64_t)n); }
static bool gen_chance(uint64_t *s, int percent) { return gen_below(s, 100) < percent; }

#define GEN_MAX_TASKS 12
#define GEN_MAX_COUNTERS 6
#define GEN_MAX_ACTS 4
#define GEN_MAX_N 16

typedef struct {
    ir_program *p;
    uint64_t rng;
    int64_t rows;                                /* M of every activation and IO input [M, N] */
    int n_act;
    int32_t act[GEN_MAX_ACTS];                   /* activation buffers [1, N] */
    int32_t input_of[GEN_MAX_N + 1];             /* IO_INPUT [1, N] by N, -1 until made */
    int32_t output_of[GEN_MAX_N + 1];            /* IO_OUTPUT [1, N] by N, -1 until made */
    int32_t weight_of[GEN_MAX_N + 1][GEN_MAX_N + 1]; /* WEIGHT [N, K] by N, K; -1 until made */
} gen_state;

static int64_t gen_width(const gen_state *g, int32_t buffer) { return g->p->buffers[buffer].shape[1]; }

static int32_t gen_input(gen_state *g, int64_t n)
{
    if (g->input_of[n] < 0) {
        char name[32];
        snprintf(name, sizeof name, "in%lld", (long long)n);
        g->input_of[n] = ir_add_buffer(g->p, name, IR_IO_INPUT, IR_F32, 2, (int64_t[]){g->rows, n}, IR_HBM, NULL);
    }
    return g->input_of[n];
}

static int32_t gen_output(gen_state *g, int64_t n)
{
    if (g->output_of[n] < 0) {
        char name[32];
        snprintf(name, sizeof name, "out%lld", (long long)n);
        g->output_of[n] = ir_add_buffer(g->p, name, IR_IO_OUTPUT, IR_F32, 2, (int64_t[]){g->rows, n}, IR_HBM, NULL);
    }
    return g->output_of[n];
}

static int32_t gen_weight(gen_state *g, int64_t n, int64_t k)
{
    if (g->weight_of[n][k] < 0) {
        char name[32];
        snprintf(name, sizeof name, "w%lldx%lld", (long long)n, (long long)k);
        g->weight_of[n][k] = ir_add_buffer(g->p, name, IR_WEIGHT, IR_F32, 2, (int64_t[]){n, k}, IR_HBM, name);
    }
    return g->weight_of[n][k];
}

/* An operand of width n other than `not`: an activation of that width, or the IO input of it. */
static int32_t gen_operand(gen_state *g, int64_t n, int32_t not)
{
    int32_t pick[GEN_MAX_ACTS];
    int k = 0;
    for (int i = 0; i < g->n_act; i++)
        if (g->act[i] != not && gen_width(g, g->act[i]) == n)
            pick[k++] = g->act[i];
    if (k > 0 && gen_chance(&g->rng, 70))
        return pick[gen_below(&g->rng, k)];
    return gen_input(g, n);
}

/* One task writing a random activation (or a NOP); returns false when out of memory. */
static bool gen_task(gen_state *g, int32_t out_counter, int index)
{
    uint64_t *s = &g->rng;
    int roll = (int)gen_below(s, 100);
    ir_op tile_op = g->rows > 1 ? IR_OP_GEMM_TILE : IR_OP_GEMV_TILE;
    ir_op op = roll < 45 ? tile_op : roll < 65 ? IR_OP_ADD : roll < 90 ? IR_OP_COPY : IR_OP_NOP;
    int32_t y = g->act[gen_below(s, g->n_act)];
    int64_t n = gen_width(g, y);
    int32_t in[2] = {-1, -1};
    int n_in = 0;
    int64_t k = 0, n_tile = 0, n_off = 0, m_tile = g->rows, m_off = 0;
    if (op == tile_op) {
        int32_t others[GEN_MAX_ACTS];
        int n_others = 0;
        for (int i = 0; i < g->n_act; i++)
            if (g->act[i] != y)
                others[n_others++] = g->act[i];
        if (n_others > 0 && gen_chance(s, 50)) {
            in[0] = others[gen_below(s, n_others)];
            k = gen_width(g, in[0]);
        } else {
            k = gen_chance(s, 50) ? 4 : 8;
            in[0] = gen_input(g, k);
        }
        in[1] = gen_weight(g, n, k);
        n_in = 2;
        if (gen_chance(s, 60)) {            /* a tile of an even split */
            static const int64_t parts[] = {1, 2, 4};
            int64_t d = parts[gen_below(s, 3)];
            n_tile = n / d;
            n_off = gen_below(s, d) * n_tile;
        } else {                            /* any tile */
            n_tile = 1 + gen_below(s, n);
            n_off = gen_below(s, n - n_tile + 1);
        }
        if (op == IR_OP_GEMM_TILE && gen_chance(s, 50)) {   /* some rows only */
            m_tile = 1 + gen_below(s, g->rows);
            m_off = gen_below(s, g->rows - m_tile + 1);
        }
    } else if (op == IR_OP_ADD) {
        in[0] = gen_operand(g, n, y);
        in[1] = gen_operand(g, n, y);
        n_in = 2;
    } else if (op == IR_OP_COPY) {
        in[0] = gen_operand(g, n, y);
        n_in = 1;
    }
    for (int i = 0; i < n_in; i++)
        if (in[i] < 0)
            return false;
    char label[32];
    snprintf(label, sizeof label, "t%d", index);
    ir_task *t = ir_add_task(g->p, op, out_counter, label);
    if (!t)
        return false;
    bool ok = true;
    for (int i = 0; i < n_in; i++)
        ok = ok && ir_task_add_input(t, in[i]) == IR_OK;
    if (op != IR_OP_NOP)
        ok = ok && ir_task_add_output(t, y) == IR_OK;
    if (op == tile_op)
        ok = ok && ir_task_set_int(t, "K", k) == IR_OK && ir_task_set_int(t, "N_tile", n_tile) == IR_OK &&
             ir_task_set_int(t, "n_off", n_off) == IR_OK;
    if (op == IR_OP_GEMM_TILE)
        ok = ok && ir_task_set_int(t, "M_tile", m_tile) == IR_OK && ir_task_set_int(t, "m_off", m_off) == IR_OK;
    return ok;
}

/* Waits of task i. With probability safe_pct a wait is on producers that come earlier in task
 * order (which every queue follows unless shuffled), so it cannot block forever; otherwise it is
 * a partial wait on any counter, a threshold above the producer count, a counter nobody
 * produces, or the task's own counter. */
static bool gen_waits(gen_state *g, int i, int safe_pct, const int *producers)
{
    uint64_t *s = &g->rng;
    ir_program *p = g->p;
    int earlier[GEN_MAX_COUNTERS] = {0};
    for (int j = 0; j < i; j++)
        earlier[p->tasks[j].out_counter]++;
    int n_waits = (int)gen_below(s, 4);
    for (int w = 0; w < n_waits; w++) {
        int32_t c = -1;
        int64_t threshold = 1;
        if (gen_chance(s, safe_pct)) {
            int cands[GEN_MAX_COUNTERS], k = 0;
            for (int32_t x = 0; x < p->n_counters; x++)
                if (earlier[x] > 0)
                    cands[k++] = x;
            if (k == 0)
                continue;
            c = cands[gen_below(s, k)];
            threshold = gen_chance(s, 60) ? earlier[c] : 1 + gen_below(s, earlier[c]);
        } else {
            int kind = (int)gen_below(s, 100);
            c = (int32_t)gen_below(s, p->n_counters);
            if (kind < 40) {                      /* partial or full wait, any producers */
                threshold = 1 + gen_below(s, producers[c] > 0 ? producers[c] : 1);
            } else if (kind < 60) {               /* more than can ever be produced */
                threshold = producers[c] + 1 + gen_below(s, 2);
            } else if (kind < 75) {               /* a counter nobody produces, if any */
                for (int32_t x = 0; x < p->n_counters; x++)
                    if (producers[x] == 0)
                        c = x;
                threshold = producers[c] + 1;
            } else {                              /* its own counter */
                c = p->tasks[i].out_counter;
                threshold = 1 + gen_below(s, producers[c]);
            }
        }
        bool dup = false;
        for (int x = 0; x < p->tasks[i].n_waits; x++)
            dup = dup || p->tasks[i].waits[x].counter == c;
        if (dup && !gen_chance(s, 15))    /* a second wait on one counter: the larger one rules */
            continue;
        if (ir_task_add_wait(&p->tasks[i], c, threshold) != IR_OK)
            return false;
    }
    return true;
}

/* Map 2 or more activations to one page (two pages sometimes). */
static bool gen_pages(gen_state *g)
{
    uint64_t *s = &g->rng;
    ir_program *p = g->p;
    int n_pages = g->n_act >= 4 && gen_chance(s, 30) ? 2 : 1;
    int32_t order[GEN_MAX_ACTS];
    for (int i = 0; i < g->n_act; i++)
        order[i] = g->act[i];
    for (int i = g->n_act - 1; i > 0; i--) {
        int j = (int)gen_below(s, i + 1);
        int32_t tmp = order[i];
        order[i] = order[j];
        order[j] = tmp;
    }
    p->pages.map_buffer = malloc(GEN_MAX_ACTS * sizeof *p->pages.map_buffer);
    p->pages.map_page = malloc(GEN_MAX_ACTS * sizeof *p->pages.map_page);
    p->pages.pages = calloc((size_t)n_pages, sizeof *p->pages.pages);
    if (!p->pages.map_buffer || !p->pages.map_page || !p->pages.pages)
        return false;
    p->has_pages = true;
    p->pages.n_pages = n_pages;
    int next = 0;
    for (int32_t pg = 0; pg < n_pages; pg++) {
        /* page 0 takes 2..(n_act - 2*(n_pages-1)) buffers, page 1 (if any) two of the rest */
        int room = g->n_act - next - 2 * (n_pages - 1 - pg);
        int take = pg == n_pages - 1 && pg > 0 ? 2 : 2 + (int)gen_below(s, room - 1);
        ir_page *page = &p->pages.pages[pg];
        page->id = pg;
        page->space = IR_GLOBAL_SCRATCH;
        page->live_start = page->live_end = -1;
        for (int i = 0; i < take; i++) {
            int32_t b = order[next++];
            p->pages.map_buffer[p->pages.n_map] = b;
            p->pages.map_page[p->pages.n_map++] = pg;
            if (ir_buffer_nbytes(&p->buffers[b]) > page->nbytes)
                page->nbytes = ir_buffer_nbytes(&p->buffers[b]);
        }
    }
    return true;
}

/* The queues: tasks spread over n_queues (each gets one), each queue in task-id order. Mostly a
 * launch plan, one queue of which is sometimes shuffled and which sometimes has an extra empty
 * queue; otherwise no plan, only sm values (not contiguous, one task sometimes null). */
static bool gen_plan(gen_state *g, int n_queues)
{
    uint64_t *s = &g->rng;
    ir_program *p = g->p;
    int n = p->n_tasks;
    int32_t queue_of[GEN_MAX_TASKS], perm[GEN_MAX_TASKS];
    for (int i = 0; i < n; i++)
        perm[i] = i;
    for (int i = n - 1; i > 0; i--) {
        int j = (int)gen_below(s, i + 1);
        int32_t tmp = perm[i];
        perm[i] = perm[j];
        perm[j] = tmp;
    }
    for (int i = 0; i < n; i++)
        queue_of[perm[i]] = i < n_queues ? i : (int32_t)gen_below(s, n_queues);
    if (gen_chance(s, 20)) {
        int32_t sm_of[GEN_MAX_TASKS];
        bool used[8] = {false};
        for (int q = 0; q < n_queues; q++) {
            int32_t v;
            do
                v = (int32_t)gen_below(s, 8);
            while (used[v]);
            used[v] = true;
            sm_of[q] = v;
        }
        for (int i = 0; i < n; i++)
            p->tasks[i].sm = sm_of[queue_of[i]];
        if (gen_chance(s, 15))
            p->tasks[gen_below(s, n)].sm = -1;
        return true;
    }
    int empty = gen_chance(s, 5) ? (int)gen_below(s, n_queues + 1) : -1;
    int grid = n_queues + (empty >= 0);
    if (ir_plan_alloc(&p->plan, grid, n) != IR_OK)
        return false;
    p->has_plan = true;
    p->plan.threads_per_block = 128;
    p->plan.regs_per_thread = 32;
    p->plan.pipelining_depth = 1;
    int k = 0;
    for (int32_t slot = 0; slot < grid; slot++) {
        p->plan.queue_start[slot] = k;
        if (slot == empty)
            continue;
        int32_t q = empty >= 0 && slot > empty ? slot - 1 : slot;
        for (int i = 0; i < n; i++)
            if (queue_of[i] == q) {
                p->plan.queue_tasks[k++] = i;
                p->tasks[i].sm = slot;
            }
        int len = k - p->plan.queue_start[slot];
        if (len > 1 && gen_chance(s, 12)) {
            int32_t *qt = &p->plan.queue_tasks[p->plan.queue_start[slot]];
            for (int i = len - 1; i > 0; i--) {
                int j = (int)gen_below(s, i + 1);
                int32_t tmp = qt[i];
                qt[i] = qt[j];
                qt[j] = tmp;
            }
        }
    }
    p->plan.queue_start[grid] = k;
    return true;
}

/* Tasks wired at random: each produces a random counter of n_counters, and waits per gen_waits. */
static bool gen_random_wiring(gen_state *g, int n_tasks)
{
    uint64_t *s = &g->rng;
    int n_counters = 1 + (int)gen_below(s, GEN_MAX_COUNTERS);
    static const int safe_pcts[] = {100, 92, 75};
    int safe_pct = safe_pcts[gen_below(s, 3)];
    for (int c = 0; c < n_counters; c++)
        if (ir_add_counter(g->p, "") < 0)
            return false;
    int producers[GEN_MAX_COUNTERS] = {0};
    for (int i = 0; i < n_tasks; i++) {
        int32_t c = (int32_t)gen_below(s, n_counters);
        producers[c]++;
        if (!gen_task(g, c, i))
            return false;
    }
    for (int i = 0; i < n_tasks; i++)
        if (!gen_waits(g, i, safe_pct, producers))
            return false;
    return true;
}

/* Tasks in stages, as a lowering makes them: stage s is 1, 2 or 4 tiles of one GEMV (or one ADD
 * or COPY) writing one activation, every task of it counting on counter s; a stage's tasks wait
 * for the previous stage, usually for all of its tasks, sometimes for only some or not at all.
 * Activations are reused across stages, so later stages overwrite what earlier ones read. */
static bool gen_stages(gen_state *g)
{
    uint64_t *s = &g->rng;
    ir_program *p = g->p;
    int n_stages = 2 + (int)gen_below(s, GEN_MAX_COUNTERS - 1);
    int32_t out[GEN_MAX_COUNTERS];
    int tiles[GEN_MAX_COUNTERS];
    int made = 0;
    for (int st = 0; st < n_stages && made < GEN_MAX_TASKS; st++) {
        if (ir_add_counter(p, "") != st)
            return false;
        int32_t y = gen_chance(s, 70) ? g->act[st % g->n_act] : g->act[gen_below(s, g->n_act)];
        int64_t n = gen_width(g, y);
        int32_t prev = st > 0 ? out[st - 1] : -1, prev2 = st > 1 ? out[st - 2] : -1;
        static const int splits[] = {1, 2, 4};
        int k = splits[gen_below(s, 3)];
        if (made + k > GEN_MAX_TASKS)
            k = 1;
        ir_op tile_op = g->rows > 1 ? IR_OP_GEMM_TILE : IR_OP_GEMV_TILE;
        ir_op op = k > 1 || gen_chance(s, 50) ? tile_op : gen_chance(s, 50) ? IR_OP_ADD : IR_OP_COPY;
        int32_t in[2] = {-1, -1};
        int n_in = 1;
        int64_t kdim = 0;
        if (op == tile_op) {
            in[0] = prev >= 0 && prev != y ? prev : gen_input(g, 8);
            if (in[0] < 0)
                return false;
            kdim = gen_width(g, in[0]);
            in[1] = gen_weight(g, n, kdim);
            n_in = 2;
        } else {
            in[0] = prev >= 0 && prev != y && gen_width(g, prev) == n ? prev : gen_input(g, n);
            if (op == IR_OP_ADD) {
                in[1] = prev2 >= 0 && prev2 != y && gen_width(g, prev2) == n ? prev2 : gen_input(g, n);
                n_in = 2;
            }
        }
        for (int i = 0; i < n_in; i++)
            if (in[i] < 0)
                return false;
        bool overlap = k > 1 && gen_chance(s, 15);   /* the last tile shifted onto its neighbour */
        for (int i = 0; i < k; i++) {
            char label[32];
            snprintf(label, sizeof label, "s%d.%d", st, i);
            ir_task *t = ir_add_task(p, op, st, label);
            if (!t)
                return false;
            bool ok = true;
            for (int j = 0; j < n_in; j++)
                ok = ok && ir_task_add_input(t, in[j]) == IR_OK;
            ok = ok && ir_task_add_output(t, y) == IR_OK;
            if (op == tile_op) {
                int64_t n_tile = n / k, n_off = i * n_tile - (overlap && i == k - 1 ? 1 : 0);
                ok = ok && ir_task_set_int(t, "K", kdim) == IR_OK && ir_task_set_int(t, "N_tile", n_tile) == IR_OK &&
                     ir_task_set_int(t, "n_off", n_off) == IR_OK;
            }
            if (op == IR_OP_GEMM_TILE)
                ok = ok && ir_task_set_int(t, "M_tile", g->rows) == IR_OK && ir_task_set_int(t, "m_off", 0) == IR_OK;
            if (st > 0) {
                int roll = (int)gen_below(s, 100);
                if (roll < 78)
                    ok = ok && ir_task_add_wait(t, st - 1, tiles[st - 1]) == IR_OK;
                else if (roll < 90)
                    ok = ok && ir_task_add_wait(t, st - 1, 1 + gen_below(s, tiles[st - 1])) == IR_OK;
            }
            if (st > 1 && gen_chance(s, 25))
                ok = ok && ir_task_add_wait(t, st - 2, tiles[st - 2]) == IR_OK;
            if (!ok)
                return false;
        }
        out[st] = y;
        tiles[st] = k;
        made += k;
    }
    return true;
}

/* Step i of a tenants chain: a COPY or ADD of x (with an input) into y, or a tile of y's columns
 * [n_off, n_off + n_tile) (every row) computed from x; waiting in full for step i - 1, now and
 * then for step i - 2 only or for nothing. */
static bool gen_chain_task(gen_state *g, int i, ir_op op, int32_t x, int32_t y, int64_t n_tile, int64_t n_off)
{
    uint64_t *s = &g->rng;
    char label[32];
    snprintf(label, sizeof label, "c%d", i);
    if (ir_add_counter(g->p, "") != i)
        return false;
    ir_task *t = ir_add_task(g->p, op, i, label);
    if (!t)
        return false;
    int64_t n = gen_width(g, y), k = gen_width(g, x);
    int32_t in1 = op == IR_OP_ADD ? gen_input(g, n) : op == IR_OP_COPY ? -1 : gen_weight(g, n, k);
    if (op != IR_OP_COPY && in1 < 0)
        return false;
    bool ok = ir_task_add_input(t, x) == IR_OK && (in1 < 0 || ir_task_add_input(t, in1) == IR_OK) &&
              ir_task_add_output(t, y) == IR_OK;
    if (op == IR_OP_GEMV_TILE || op == IR_OP_GEMM_TILE)
        ok = ok && ir_task_set_int(t, "K", k) == IR_OK && ir_task_set_int(t, "N_tile", n_tile) == IR_OK &&
             ir_task_set_int(t, "n_off", n_off) == IR_OK;
    if (op == IR_OP_GEMM_TILE)
        ok = ok && ir_task_set_int(t, "M_tile", g->rows) == IR_OK && ir_task_set_int(t, "m_off", 0) == IR_OK;
    int roll = (int)gen_below(s, 100);
    if (i > 0 && roll < 94)
        ok = ok && ir_task_add_wait(t, i - 1, 1) == IR_OK;
    else if (i > 1 && roll < 97)
        ok = ok && ir_task_add_wait(t, i - 2, 1) == IR_OK;
    return ok;
}

/* Tenants of one page used in turn: a chain of 3-8 steps, each one task ordered after the one
 * before it (gen_chain_task), that writes a tenant from an input (whole, or a tile that may stay
 * clear of the other tenants' bytes), reads one into an output, or reads one tenant and writes
 * another (an alias when both share the page). Reads mostly take the tenant written last, so that
 * clean chains (write A; read A; write B; read B) are about as common as clobbering ones (write A;
 * write B; read A). The caller maps the tenants to pages. */
static bool gen_tenants(gen_state *g)
{
    uint64_t *s = &g->rng;
    ir_op tile_op = g->rows > 1 ? IR_OP_GEMM_TILE : IR_OP_GEMV_TILE;
    int n_steps = 3 + (int)gen_below(s, 6);
    int32_t last = -1;                           /* the tenant written last */
    for (int i = 0; i < n_steps; i++) {
        int roll = (int)gen_below(s, 100);
        int32_t x, y = g->act[gen_below(s, g->n_act)];
        if (roll >= 45 && last >= 0 && gen_chance(s, 70))
            x = last;
        else
            x = g->act[gen_below(s, g->n_act)];
        if (roll < 45) {                         /* write y from an input */
            x = gen_input(g, gen_chance(s, 50) ? 4 : 8);
        } else if (roll < 93) {                  /* read x */
            y = gen_output(g, gen_width(g, x));
        } else if (x == y) {                     /* read x, write another tenant */
            for (int j = 0; j < g->n_act; j++)
                if (g->act[j] != x)
                    y = g->act[j];
        }
        if (x < 0 || y < 0)
            return false;
        int64_t n = gen_width(g, y), n_tile = n, n_off = 0;
        ir_op op = tile_op;
        if (gen_width(g, x) == n && gen_chance(s, 40)) {
            op = gen_chance(s, 50) ? IR_OP_COPY : IR_OP_ADD;
        } else if (g->rows == 1 && gen_chance(s, 35)) {   /* clear of a narrower tenant: x or any */
            int64_t w = gen_width(g, roll < 45 ? g->act[gen_below(s, g->n_act)] : x);
            if (w < n) {
                n_off = w;
                n_tile = n - w;
            }
        } else if (gen_chance(s, 30)) {          /* the upper half */
            n_off = n / 2;
            n_tile = n - n_off;
        } else if (gen_chance(s, 40)) {          /* any tile */
            n_tile = 1 + gen_below(s, n);
            n_off = gen_below(s, n - n_tile + 1);
        }
        if (!gen_chain_task(g, i, op, x, y, n_tile, n_off))
            return false;
        if (g->p->buffers[y].kind == IR_ACTIVATION)
            last = y;
    }
    return true;
}

/* Whether seed makes a tenants chain: a fifth of the seeds, drawn apart from the program's own
 * stream so that every other seed makes the program it made before the chains existed. */
static bool gen_is_tenants(uint64_t seed)
{
    uint64_t s = seed ^ 0x5a17e4a9c3b1d2f7ULL;
    return gen_chance(&s, 20);
}

ir_program *explore_gen_program(uint64_t seed)
{
    gen_state g;
    memset(&g, 0, sizeof g);
    memset(g.input_of, -1, sizeof g.input_of);
    memset(g.output_of, -1, sizeof g.output_of);
    memset(g.weight_of, -1, sizeof g.weight_of);
    g.rng = seed;
    uint64_t *s = &g.rng;
    const ir_target *h100 = ir_target_builtin("h100");
    g.p = ir_program_new();
    if (!g.p || !h100)
        goto fail;
    ir_program *p = g.p;
    p->has_target = true;
    p->target = *h100;
    p->has_decode = true;
    p->decode.pos = 0;
    p->decode.max_seq = 1;

    bool tenants = gen_is_tenants(seed);
    g.rows = gen_chance(s, 25) ? 2 + gen_below(s, 2) : 1;   /* GEMM tiles instead of GEMV */
    g.n_act = tenants ? 2 + (int)gen_below(s, GEN_MAX_ACTS - 1) : 1 + (int)gen_below(s, GEN_MAX_ACTS);
    static const int64_t widths[] = {4, 8, 12, 16};
    int64_t common = widths[gen_below(s, 4)];
    bool same_width = gen_chance(s, 50) && !tenants;   /* tenants of mixed widths */
    for (int i = 0; i < g.n_act; i++) {
        char name[32];
        snprintf(name, sizeof name, "x%d", i);
        int64_t n = same_width ? common : widths[gen_below(s, 4)];
        g.act[i] = ir_add_buffer(p, name, IR_ACTIVATION, IR_F32, 2, (int64_t[]){g.rows, n}, IR_GLOBAL_SCRATCH, NULL);
        if (g.act[i] < 0)
            goto fail;
    }
    if (tenants) {
        if (!gen_tenants(&g) || !gen_pages(&g))
            goto fail;
    } else {
        bool staged = gen_chance(s, 40);
        if (!(staged ? gen_stages(&g) : gen_random_wiring(&g, 2 + (int)gen_below(s, GEN_MAX_TASKS - 1))))
            goto fail;
        if (g.n_act >= 2 && gen_chance(s, 35) && !gen_pages(&g))
            goto fail;
    }
    int n_queues = gen_chance(s, 15) ? 1 : 2 + (int)gen_below(s, 2);
    if (n_queues > p->n_tasks)
        n_queues = p->n_tasks;
    if (!gen_plan(&g, n_queues))
        goto fail;
    return p;
fail:
    ir_program_free(g.p);
    return NULL;
}
