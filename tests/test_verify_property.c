/*
 * test_verify_property.c - the verifier against an independent oracle. tests/explorer.c decides
 * deadlock, races and the two page defects (clobber, alias) of small programs; here it is first
 * checked on hand-made programs and against two other decision procedures, then random programs
 * are verified and each deadlock and race verdict must equal the explorer's, in both directions.
 * The race obligation covers all three defects: it must be REFUTED exactly when the explorer
 * found a race, a clobber or an alias, with a witness kind naming one of those it found.
 *
 * AMK_PROPERTY_SEEDS sets how many random programs (default 300; `make property` runs 10,000),
 * AMK_PROPERTY_SEED_BASE the first seed (default 1). A mismatching program is written to
 * build/property_mismatch_<seed>.json; the smallest of each kind of mismatch is shrunk (tasks,
 * waits, pages deleted while it persists) into build/property_minimal_<kind>_<seed>.json.
 * AMK_PROPERTY_REPLAY=FILE compares one saved program.
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "tests/explorer.c"
#include "verify/verify.h"

/* ---------------------------------------------------------------- hand-made programs */

static ir_program *hand_program(int n_counters)
{
    ir_program *p = ir_program_new();
    cr_assert_not_null(p);
    p->has_target = true;
    p->target = *ir_target_builtin("h100");
    p->has_decode = true;
    p->decode.max_seq = 1;
    for (int c = 0; c < n_counters; c++)
        cr_assert_eq(ir_add_counter(p, ""), c);
    return p;
}

static int32_t hand_buffer(ir_program *p, const char *name, ir_kind kind, int64_t rows, int64_t cols)
{
    int32_t b = ir_add_buffer(p, name, kind, IR_F32, 2, (int64_t[]){rows, cols},
                              kind == IR_ACTIVATION ? IR_GLOBAL_SCRATCH : IR_HBM,
                              kind == IR_WEIGHT ? name : NULL);
    cr_assert_geq(b, 0);
    return b;
}

static ir_task *hand_nop(ir_program *p, int32_t counter)
{
    ir_task *t = ir_add_task(p, IR_OP_NOP, counter, "");
    cr_assert_not_null(t);
    return t;
}

static ir_task *hand_copy(ir_program *p, int32_t in, int32_t out, int32_t counter)
{
    ir_task *t = ir_add_task(p, IR_OP_COPY, counter, "");
    cr_assert_not_null(t);
    cr_assert_eq(ir_task_add_input(t, in), IR_OK);
    cr_assert_eq(ir_task_add_output(t, out), IR_OK);
    return t;
}

/* y[n_off, n_off + n_tile) = W x, with x [1, K] and W [N, K]. */
static ir_task *hand_gemv(ir_program *p, int32_t x, int32_t w, int32_t y, int64_t n_tile, int64_t n_off,
                          int32_t counter)
{
    ir_task *t = ir_add_task(p, IR_OP_GEMV_TILE, counter, "");
    cr_assert_not_null(t);
    cr_assert_eq(ir_task_add_input(t, x), IR_OK);
    cr_assert_eq(ir_task_add_input(t, w), IR_OK);
    cr_assert_eq(ir_task_add_output(t, y), IR_OK);
    cr_assert_eq(ir_task_set_int(t, "K", p->buffers[x].shape[1]), IR_OK);
    cr_assert_eq(ir_task_set_int(t, "N_tile", n_tile), IR_OK);
    cr_assert_eq(ir_task_set_int(t, "n_off", n_off), IR_OK);
    return t;
}

static void hand_wait(ir_program *p, int32_t task, int32_t counter, int64_t threshold)
{
    cr_assert_eq(ir_task_add_wait(&p->tasks[task], counter, threshold), IR_OK);
}

/* The launch plan: queue_of[t] for every task, each queue in task-id order. */
static void hand_plan(ir_program *p, int n_queues, const int32_t *queue_of)
{
    cr_assert_eq(ir_plan_alloc(&p->plan, n_queues, p->n_tasks), IR_OK);
    p->has_plan = true;
    p->plan.threads_per_block = 128;
    p->plan.regs_per_thread = 32;
    p->plan.pipelining_depth = 1;
    int k = 0;
    for (int q = 0; q < n_queues; q++) {
        p->plan.queue_start[q] = k;
        for (int t = 0; t < p->n_tasks; t++)
            if (queue_of[t] == q) {
                p->plan.queue_tasks[k++] = t;
                p->tasks[t].sm = q;
            }
    }
    p->plan.queue_start[n_queues] = k;
    cr_assert_eq(k, p->n_tasks);
}

/* Map each listed buffer to page 0. */
static void hand_page(ir_program *p, int n, const int32_t *buffers)
{
    p->has_pages = true;
    p->pages.n_map = n;
    p->pages.map_buffer = malloc((size_t)n * sizeof(int32_t));
    p->pages.map_page = malloc((size_t)n * sizeof(int32_t));
    p->pages.n_pages = 1;
    p->pages.pages = calloc(1, sizeof(ir_page));
    cr_assert(p->pages.map_buffer && p->pages.map_page && p->pages.pages);
    p->pages.pages[0] = (ir_page){.id = 0, .space = IR_GLOBAL_SCRATCH, .live_start = -1, .live_end = -1};
    for (int i = 0; i < n; i++) {
        p->pages.map_buffer[i] = buffers[i];
        p->pages.map_page[i] = 0;
        if (ir_buffer_nbytes(&p->buffers[buffers[i]]) > p->pages.pages[0].nbytes)
            p->pages.pages[0].nbytes = ir_buffer_nbytes(&p->buffers[buffers[i]]);
    }
}

static explore_result explored(const ir_program *p)
{
    explore_result r;
    ir_error err = {0};
    ir_status st = explore_program(p, &r, &err);
    cr_assert_eq(st, IR_OK, "explore_program: %s at %s: %s", ir_status_name(st), err.where, err.why);
    return r;
}

static bool conflict(const ir_program *p, int32_t a, int32_t b)
{
    bool c = false;
    ir_error err = {0};
    cr_assert_eq(explore_tasks_conflict(p, a, b, &c, &err), IR_OK, "%s", err.why);
    return c;
}

/* Queue 0 runs T0 (waits for T2) then T1; queue 1 runs T2 (waits for T1). The waits alone are
 * acyclic (T0 after T2 after T1); with queue 0's order they form a cycle. */
static ir_program *cross_wait(bool fixed)
{
    ir_program *p = hand_program(3);
    if (fixed) {   /* queue 0 runs T1 first: T1, then T2, then T0 */
        hand_nop(p, 2);
        hand_nop(p, 0);
        hand_nop(p, 1);
        hand_wait(p, 1, 1, 1);
    } else {
        hand_nop(p, 0);
        hand_nop(p, 2);
        hand_nop(p, 1);
        hand_wait(p, 0, 1, 1);
    }
    hand_wait(p, 2, 2, 1);
    hand_plan(p, 2, (int32_t[]){0, 0, 1});
    return p;
}

Test(explorer, finds_two_queue_cross_wait_deadlock)
{
    ir_program *p = cross_wait(false);
    explore_result r = explored(p);
    cr_assert(r.deadlock);
    cr_assert_not(r.race);
    cr_assert_eq(r.n_queues, 2);
    cr_assert_eq(r.stuck_head[0], 0);
    cr_assert_eq(r.stuck_head[1], 2);
    /* stuck at once: only the initial state is reachable */
    cr_assert_eq(r.states, 1);
    ir_program_free(p);

    p = cross_wait(true);
    r = explored(p);
    cr_assert_not(r.deadlock);
    cr_assert_eq(r.stuck_head[0], -1);
    /* T1 start, finish; T2 start, finish; T0 start, finish: a single path of 7 states */
    cr_assert_eq(r.states, 7);
    ir_program_free(p);
}

Test(explorer, takes_queues_from_sm_values_without_a_plan)
{
    ir_program *p = cross_wait(false);
    ir_plan_free(&p->plan);
    p->has_plan = false;
    p->tasks[0].sm = p->tasks[1].sm = 7;   /* queue 1: T0, T1 */
    p->tasks[2].sm = 3;                    /* queue 0: T2 */
    explore_result r = explored(p);
    cr_assert(r.deadlock);
    cr_assert_eq(r.n_queues, 2);
    cr_assert_eq(r.stuck_head[0], 2);
    cr_assert_eq(r.stuck_head[1], 0);
    p->tasks[1].sm = -1;                   /* T1 alone on a third queue: nothing blocks it */
    r = explored(p);
    cr_assert_not(r.deadlock);
    cr_assert_eq(r.n_queues, 3);
    ir_program_free(p);
}

Test(explorer, finds_deadlock_on_unreachable_threshold_and_own_counter)
{
    for (int variant = 0; variant < 3; variant++) {
        ir_program *p = hand_program(2);
        hand_nop(p, 0);
        hand_nop(p, 0);
        if (variant == 0)
            hand_wait(p, 1, 0, 3);      /* two producers can never reach 3 */
        else if (variant == 1)
            hand_wait(p, 1, 1, 1);      /* nobody produces counter 1 */
        else
            hand_wait(p, 1, 0, 2);      /* needs its own increment */
        hand_plan(p, 2, (int32_t[]){0, 1});
        explore_result r = explored(p);
        cr_assert(r.deadlock, "variant %d", variant);
        cr_assert_eq(r.stuck_head[0], -1, "variant %d", variant);
        cr_assert_eq(r.stuck_head[1], 1, "variant %d", variant);
        ir_program_free(p);
    }
    /* a wait on its own counter that another producer satisfies is fine */
    ir_program *p = hand_program(1);
    hand_nop(p, 0);
    hand_nop(p, 0);
    hand_wait(p, 1, 0, 1);
    hand_plan(p, 2, (int32_t[]){0, 1});
    cr_assert_not(explored(p).deadlock);
    ir_program_free(p);
}

/* P1 (queue 0) and P2 (queue 1) write the two halves of y and both count on counter 0; R
 * (queue 2) copies y once counter 0 reaches `threshold`. With p2_after_r, P2 also waits for R, so
 * the count R sees can only come from P1. */
static ir_program *partial_wait(int64_t threshold, bool p2_after_r)
{
    ir_program *p = hand_program(2);
    int32_t in = hand_buffer(p, "in", IR_IO_INPUT, 1, 8);
    int32_t w = hand_buffer(p, "w", IR_WEIGHT, 8, 8);
    int32_t y = hand_buffer(p, "y", IR_ACTIVATION, 1, 8);
    int32_t z = hand_buffer(p, "z", IR_ACTIVATION, 1, 8);
    hand_gemv(p, in, w, y, 4, 0, 0);    /* P1 = task 0 */
    hand_gemv(p, in, w, y, 4, 4, 0);    /* P2 = task 1 */
    hand_copy(p, y, z, 1);              /* R = task 2 */
    hand_wait(p, 2, 0, threshold);
    if (p2_after_r)
        hand_wait(p, 1, 1, 1);
    hand_plan(p, 3, (int32_t[]){0, 1, 2});
    return p;
}

Test(explorer, decides_partial_waits_exactly)
{
    ir_program *p = partial_wait(1, true);   /* partial, but only P1 can have counted */
    explore_result r = explored(p);
    cr_assert_not(r.race);
    cr_assert_not(r.deadlock);
    cr_assert(conflict(p, 1, 2));            /* P2 and R conflict; the waits order them */
    cr_assert_not(conflict(p, 0, 1));        /* disjoint halves */
    ir_program_free(p);

    p = partial_wait(1, false);              /* either producer may have counted */
    r = explored(p);
    cr_assert(r.race);
    cr_assert_not(r.deadlock);
    cr_assert_eq(r.race_b, 2);
    cr_assert(r.race_a == 0 || r.race_a == 1);
    ir_program_free(p);

    p = partial_wait(2, false);              /* a full join */
    r = explored(p);
    cr_assert_not(r.race);
    cr_assert_not(r.deadlock);
    ir_program_free(p);

    p = partial_wait(2, true);               /* R waits for P2, P2 waits for R */
    r = explored(p);
    cr_assert(r.deadlock);
    cr_assert_not(r.race);
    ir_program_free(p);
}

/* Two GEMV tiles of y [1, 16] on two queues; with `ordered`, the second waits for the first. */
static ir_program *two_tiles(int64_t off_a, int64_t tile_a, int64_t off_b, int64_t tile_b, bool ordered)
{
    ir_program *p = hand_program(2);
    int32_t in = hand_buffer(p, "in", IR_IO_INPUT, 1, 4);
    int32_t w = hand_buffer(p, "w", IR_WEIGHT, 16, 4);
    int32_t y = hand_buffer(p, "y", IR_ACTIVATION, 1, 16);
    hand_gemv(p, in, w, y, tile_a, off_a, 0);
    hand_gemv(p, in, w, y, tile_b, off_b, 1);
    if (ordered)
        hand_wait(p, 1, 0, 1);
    hand_plan(p, 2, (int32_t[]){0, 1});
    return p;
}

Test(explorer, finds_race_of_overlapping_gemv_tiles)
{
    ir_program *p = two_tiles(0, 8, 4, 8, false);
    explore_result r = explored(p);
    cr_assert(r.race);
    cr_assert_eq(r.race_a, 0);
    cr_assert_eq(r.race_b, 1);
    cr_assert_not(r.deadlock);
    /* both unordered queues: 3 x 3 digit combinations, all reachable */
    cr_assert_eq(r.states, 9);
    ir_program_free(p);

    p = two_tiles(0, 8, 7, 1, false);    /* a single shared element still races */
    cr_assert(explored(p).race);
    ir_program_free(p);

    p = two_tiles(0, 8, 8, 8, false);    /* adjacent, disjoint */
    cr_assert_not(explored(p).race);
    cr_assert_not(conflict(p, 0, 1));
    ir_program_free(p);

    p = two_tiles(0, 8, 4, 8, true);     /* overlapping but ordered */
    r = explored(p);
    cr_assert_not(r.race);
    cr_assert(conflict(p, 0, 1));
    ir_program_free(p);
}

Test(explorer, compares_gemm_boxes_in_every_dimension)
{
    /* y [4, 8]: task 0 writes rows [0, 2) cols [0, 4); task 1 reads rows [2, 4) of y as x; task
     * 2 writes rows [1, 3) cols [4, 8) */
    ir_program *p = hand_program(3);
    int32_t in = hand_buffer(p, "in", IR_IO_INPUT, 4, 8);
    int32_t w = hand_buffer(p, "w", IR_WEIGHT, 8, 8);
    int32_t y = hand_buffer(p, "y", IR_ACTIVATION, 4, 8);
    int32_t z = hand_buffer(p, "z", IR_ACTIVATION, 4, 8);
    int64_t box[3][5] = {{2, 0, 4, 0, in}, {2, 2, 8, 0, y}, {2, 1, 4, 4, in}}; /* M_tile m_off N_tile n_off x */
    for (int i = 0; i < 3; i++) {
        ir_task *t = ir_add_task(p, IR_OP_GEMM_TILE, i, "");
        cr_assert_not_null(t);
        cr_assert_eq(ir_task_add_input(t, (int32_t)box[i][4]), IR_OK);
        cr_assert_eq(ir_task_add_input(t, w), IR_OK);
        cr_assert_eq(ir_task_add_output(t, i == 1 ? z : y), IR_OK);
        cr_assert_eq(ir_task_set_int(t, "K", 8), IR_OK);
        cr_assert_eq(ir_task_set_int(t, "M_tile", box[i][0]), IR_OK);
        cr_assert_eq(ir_task_set_int(t, "m_off", box[i][1]), IR_OK);
        cr_assert_eq(ir_task_set_int(t, "N_tile", box[i][2]), IR_OK);
        cr_assert_eq(ir_task_set_int(t, "n_off", box[i][3]), IR_OK);
    }
    hand_plan(p, 3, (int32_t[]){0, 1, 2});
    cr_assert_not(conflict(p, 0, 1));   /* rows apart */
    cr_assert_not(conflict(p, 0, 2));   /* rows meet at 1, columns apart */
    cr_assert(conflict(p, 1, 2));       /* rows meet at 2, the read takes every column */
    explore_result r = explored(p);
    cr_assert(r.race);
    cr_assert_eq(r.race_a, 1);
    cr_assert_eq(r.race_b, 2);
    ir_program_free(p);

    /* y and z [4, 8] on one page. Task 0 writes y rows [1, 3) cols [4, 8): elements at bytes
     * [48, 64) and [80, 96), span [48, 96). Task 1 writes z row 2 cols [0, 4): bytes [64, 80),
     * inside that span though between its elements: a conflict, since spans decide. Task 2
     * writes z row 3: bytes [96, 128), past the span. */
    p = hand_program(3);
    in = hand_buffer(p, "in", IR_IO_INPUT, 4, 8);
    w = hand_buffer(p, "w", IR_WEIGHT, 8, 8);
    y = hand_buffer(p, "y", IR_ACTIVATION, 4, 8);
    z = hand_buffer(p, "z", IR_ACTIVATION, 4, 8);
    int64_t tile[3][5] = {{2, 1, 4, 4, y}, {1, 2, 4, 0, z}, {1, 3, 8, 0, z}}; /* M_tile m_off N_tile n_off y */
    for (int i = 0; i < 3; i++) {
        ir_task *t = ir_add_task(p, IR_OP_GEMM_TILE, i, "");
        cr_assert_not_null(t);
        cr_assert_eq(ir_task_add_input(t, in), IR_OK);
        cr_assert_eq(ir_task_add_input(t, w), IR_OK);
        cr_assert_eq(ir_task_add_output(t, (int32_t)tile[i][4]), IR_OK);
        cr_assert_eq(ir_task_set_int(t, "K", 8), IR_OK);
        cr_assert_eq(ir_task_set_int(t, "M_tile", tile[i][0]), IR_OK);
        cr_assert_eq(ir_task_set_int(t, "m_off", tile[i][1]), IR_OK);
        cr_assert_eq(ir_task_set_int(t, "N_tile", tile[i][2]), IR_OK);
        cr_assert_eq(ir_task_set_int(t, "n_off", tile[i][3]), IR_OK);
    }
    hand_plan(p, 3, (int32_t[]){0, 1, 2});
    cr_assert_not(explored(p).race);    /* separate buffers, no page */
    hand_page(p, 2, (int32_t[]){y, z});
    cr_assert(conflict(p, 0, 1));
    cr_assert_not(conflict(p, 0, 2));
    cr_assert_not(conflict(p, 1, 2));
    r = explored(p);
    cr_assert(r.race);
    cr_assert_eq(r.race_a, 0);
    cr_assert_eq(r.race_b, 1);
    ir_program_free(p);
}

/* Buffers a [1, 8] and b [1, width] on one page, written by two unordered tasks: a whole by a
 * copy, b by a GEMV tile [off, off + tile). */
static ir_program *paged(int64_t width, int64_t off, int64_t tile, bool share_page)
{
    ir_program *p = hand_program(2);
    int32_t in = hand_buffer(p, "in", IR_IO_INPUT, 1, 8);
    int32_t w = hand_buffer(p, "w", IR_WEIGHT, width, 8);
    int32_t a = hand_buffer(p, "a", IR_ACTIVATION, 1, 8);
    int32_t b = hand_buffer(p, "b", IR_ACTIVATION, 1, width);
    hand_copy(p, in, a, 0);
    hand_gemv(p, in, w, b, tile, off, 1);
    if (share_page)
        hand_page(p, 2, (int32_t[]){a, b});
    hand_plan(p, 2, (int32_t[]){0, 1});
    return p;
}

Test(explorer, finds_race_of_buffers_sharing_a_page)
{
    ir_program *p = paged(8, 0, 8, true);      /* same bytes [0, 32) */
    cr_assert(explored(p).race);
    ir_program_free(p);

    p = paged(8, 0, 8, false);                 /* separate memory */
    cr_assert_not(explored(p).race);
    ir_program_free(p);

    p = paged(16, 8, 8, true);                 /* b's tile is bytes [32, 64), a is [0, 32) */
    cr_assert_not(explored(p).race);
    ir_program_free(p);

    p = paged(16, 7, 8, true);                 /* bytes [28, 60) meet a's last element */
    cr_assert(explored(p).race);
    ir_program_free(p);
}

/* Tenants A [1, 8] and B [1, b_width] of page 0 used in turn by a chain of tasks on two queues
 * (task i on queue i % 2), each waiting for the one before it when `ordered`. A step 'A' writes A
 * whole from the input, 'B' writes B's columns [b_off, b_width) from it; 'a' and 'b' copy the
 * tenant into an output. */
static ir_program *tenant_chain(const char *steps, int64_t b_width, int64_t b_off, bool ordered)
{
    int n = (int)strlen(steps);
    ir_program *p = hand_program(n);
    int32_t in = hand_buffer(p, "in", IR_IO_INPUT, 1, 8);
    int32_t wa = hand_buffer(p, "wa", IR_WEIGHT, 8, 8);
    int32_t wb = hand_buffer(p, "wb", IR_WEIGHT, b_width, 8);
    int32_t a = hand_buffer(p, "a", IR_ACTIVATION, 1, 8);
    int32_t b = hand_buffer(p, "b", IR_ACTIVATION, 1, b_width);
    int32_t out_a = hand_buffer(p, "out_a", IR_IO_OUTPUT, 1, 8);
    int32_t out_b = hand_buffer(p, "out_b", IR_IO_OUTPUT, 1, b_width);
    int32_t queue_of[16];
    cr_assert_leq(n, 16);
    for (int i = 0; i < n; i++) {
        if (steps[i] == 'A')
            hand_gemv(p, in, wa, a, 8, 0, i);
        else if (steps[i] == 'B')
            hand_gemv(p, in, wb, b, b_width - b_off, b_off, i);
        else
            hand_copy(p, steps[i] == 'a' ? a : b, steps[i] == 'a' ? out_a : out_b, i);
        if (i > 0 && ordered)
            hand_wait(p, i, i - 1, 1);
        queue_of[i] = i % 2;
    }
    hand_page(p, 2, (int32_t[]){a, b});
    hand_plan(p, n > 1 ? 2 : 1, queue_of);
    return p;
}

/* The clobber the explorer finds, and that every event sequence agrees with it (explore_naive). */
static explore_result explored_chain(const char *steps, int64_t b_width, int64_t b_off, bool ordered)
{
    ir_program *p = tenant_chain(steps, b_width, b_off, ordered);
    explore_result r = explored(p);
    bool dead, race, clobber;
    ir_error err = {0};
    cr_assert_eq(explore_naive(p, &dead, &race, &clobber, &err), IR_OK, "%s", err.why);
    cr_assert_eq(race, r.race, "%s", steps);
    if (!r.race)
        cr_assert_eq(clobber, r.clobber, "%s", steps);
    ir_program_free(p);
    return r;
}

Test(explorer, finds_page_clobber_of_an_ordered_chain)
{
    explore_result r = explored_chain("ABa", 8, 0, true);    /* B overwrites A, then A is read */
    cr_assert(r.clobber);
    cr_assert_eq(r.clobber_task, 2);
    cr_assert_not(r.race);
    cr_assert_not(r.alias);
    cr_assert_not(r.deadlock);

    r = explored_chain("ABa", 8, 4, true);                   /* B's half [16, 32) is enough */
    cr_assert(r.clobber);
    cr_assert_eq(r.clobber_task, 2);

    r = explored_chain("BAab", 8, 0, true);                  /* b reads what A overwrote */
    cr_assert(r.clobber);
    cr_assert_eq(r.clobber_task, 3);

    r = explored_chain("Ba", 8, 0, true);                    /* B's data read as A */
    cr_assert(r.clobber);
    cr_assert_eq(r.clobber_task, 1);
}

Test(explorer, does_not_flag_clean_or_disjoint_page_chains)
{
    explore_result r = explored_chain("AaBb", 8, 0, true);   /* each tenant read before the next */
    cr_assert_not(r.clobber);
    cr_assert_eq(r.clobber_task, -1);
    cr_assert_not(r.race);
    cr_assert_not(r.alias);

    r = explored_chain("BAa", 8, 0, true);                   /* A rewrites every byte B wrote */
    cr_assert_not(r.clobber);
    r = explored_chain("ABAa", 8, 4, true);
    cr_assert_not(r.clobber);

    r = explored_chain("ABa", 16, 8, true);                  /* B's bytes [32, 64) clear of A's */
    cr_assert_not(r.clobber);
    cr_assert_not(r.race);

    r = explored_chain("a", 8, 0, true);                     /* bytes nobody wrote */
    cr_assert_not(r.clobber);

    /* unordered, the chain races and clobber is not decided (though the greedy run, B then a on
     * queue 0 before A on queue 1, would read B's bytes as A) */
    r = explored_chain("BAa", 8, 0, false);
    cr_assert(r.race);
    cr_assert_not(r.clobber);
    cr_assert_eq(r.clobber_task, -1);
}

/* A and B [2, 8] share page 0. In order: task 0 writes B whole; task 1 writes A's columns
 * [0, a_cols) of both rows; task 2 reads row 0 of A (a GEMM tile's x). */
static ir_program *gemm_gap(int64_t a_cols)
{
    ir_program *p = hand_program(3);
    int32_t in = hand_buffer(p, "in", IR_IO_INPUT, 2, 8);
    int32_t w = hand_buffer(p, "w", IR_WEIGHT, 8, 8);
    int32_t a = hand_buffer(p, "a", IR_ACTIVATION, 2, 8);
    int32_t b = hand_buffer(p, "b", IR_ACTIVATION, 2, 8);
    int32_t out = hand_buffer(p, "out", IR_IO_OUTPUT, 2, 8);
    int64_t tile[3][5] = {{in, b, 2, 0, 8}, {in, a, 2, 0, a_cols}, {a, out, 1, 0, 8}}; /* x y M_tile m_off N_tile */
    for (int i = 0; i < 3; i++) {
        ir_task *t = ir_add_task(p, IR_OP_GEMM_TILE, i, "");
        cr_assert_not_null(t);
        cr_assert_eq(ir_task_add_input(t, (int32_t)tile[i][0]), IR_OK);
        cr_assert_eq(ir_task_add_input(t, w), IR_OK);
        cr_assert_eq(ir_task_add_output(t, (int32_t)tile[i][1]), IR_OK);
        cr_assert_eq(ir_task_set_int(t, "K", 8), IR_OK);
        cr_assert_eq(ir_task_set_int(t, "M_tile", tile[i][2]), IR_OK);
        cr_assert_eq(ir_task_set_int(t, "m_off", tile[i][3]), IR_OK);
        cr_assert_eq(ir_task_set_int(t, "N_tile", tile[i][4]), IR_OK);
        cr_assert_eq(ir_task_set_int(t, "n_off", 0), IR_OK);
        if (i > 0)
            hand_wait(p, i, i - 1, 1);
    }
    hand_page(p, 2, (int32_t[]){a, b});
    hand_plan(p, 2, (int32_t[]){0, 1, 0});
    return p;
}

Test(explorer, tracks_the_bytes_of_elements_not_spans_for_clobber)
{
    /* A's tile writes bytes [0, 16) and [32, 48): its span [0, 48) covers the gap [16, 32), which
     * still holds B's data when task 2 reads A's row 0, bytes [0, 32) */
    ir_program *p = gemm_gap(4);
    explore_result r = explored(p);
    cr_assert_not(r.race);
    cr_assert(r.clobber);
    cr_assert_eq(r.clobber_task, 2);
    ir_program_free(p);

    p = gemm_gap(8);                                         /* A written whole */
    r = explored(p);
    cr_assert_not(r.race);
    cr_assert_not(r.clobber);
    ir_program_free(p);
}

/* Task 0 writes A [1, 8] from the input; task 1, after it, writes the GEMV tile [off, off + tile)
 * of B [1, 16] from A (reading A whole). A and B share page 0 when `paged`; with `stuck`, task 1
 * also waits for a counter nobody produces, so it never runs. */
static ir_program *tenant_move(int64_t off, int64_t tile, bool paged, bool stuck)
{
    ir_program *p = hand_program(3);
    int32_t in = hand_buffer(p, "in", IR_IO_INPUT, 1, 8);
    int32_t wa = hand_buffer(p, "wa", IR_WEIGHT, 8, 8);
    int32_t wb = hand_buffer(p, "wb", IR_WEIGHT, 16, 8);
    int32_t a = hand_buffer(p, "a", IR_ACTIVATION, 1, 8);
    int32_t b = hand_buffer(p, "b", IR_ACTIVATION, 1, 16);
    hand_gemv(p, in, wa, a, 8, 0, 0);
    hand_gemv(p, a, wb, b, tile, off, 1);
    hand_wait(p, 1, 0, 1);
    if (stuck)
        hand_wait(p, 1, 2, 1);
    if (paged)
        hand_page(p, 2, (int32_t[]){a, b});
    hand_plan(p, 2, (int32_t[]){0, 1});
    return p;
}

Test(explorer, finds_page_alias_of_one_task)
{
    ir_program *p = tenant_move(0, 8, true, false);          /* reads [0, 32), writes [0, 32) */
    explore_result r = explored(p);
    cr_assert(r.alias);
    cr_assert_eq(r.alias_task, 1);
    cr_assert_not(r.race);
    cr_assert_not(r.clobber);                                /* nothing reads after the write */
    ir_program_free(p);

    p = tenant_move(7, 8, true, false);                      /* writes [28, 60): A's last element */
    r = explored(p);
    cr_assert(r.alias);
    cr_assert_eq(r.alias_task, 1);
    ir_program_free(p);
}

Test(explorer, does_not_flag_disjoint_or_unpaged_or_unrun_alias)
{
    ir_program *p = tenant_move(8, 8, true, false);          /* writes [32, 64), A is [0, 32) */
    explore_result r = explored(p);
    cr_assert_not(r.alias);
    cr_assert_eq(r.alias_task, -1);
    ir_program_free(p);

    p = tenant_move(0, 8, false, false);                     /* separate memory */
    cr_assert_not(explored(p).alias);
    ir_program_free(p);

    p = tenant_move(0, 8, true, true);                       /* the aliasing task never runs */
    r = explored(p);
    cr_assert(r.deadlock);
    cr_assert_not(r.alias);
    ir_program_free(p);
}

Test(explorer, ignores_read_read_and_read_only_buffers_and_sees_races_before_a_deadlock)
{
    /* two copies of the same activation into different buffers, and a third copy of the input */
    ir_program *p = hand_program(2);
    int32_t in = hand_buffer(p, "in", IR_IO_INPUT, 1, 8);
    int32_t x = hand_buffer(p, "x", IR_ACTIVATION, 1, 8);
    int32_t y = hand_buffer(p, "y", IR_ACTIVATION, 1, 8);
    int32_t z = hand_buffer(p, "z", IR_ACTIVATION, 1, 8);
    int32_t v = hand_buffer(p, "v", IR_ACTIVATION, 1, 8);
    hand_copy(p, x, y, 0);
    hand_copy(p, x, z, 0);
    hand_copy(p, in, v, 1);
    hand_plan(p, 3, (int32_t[]){0, 1, 2});
    explore_result r = explored(p);
    cr_assert_not(r.race);
    cr_assert_not(r.deadlock);
    cr_assert_eq(r.states, 27);
    ir_program_free(p);

    /* T0 and T1 write y unordered; T2 (after T1 on queue 1) waits for a counter nobody makes */
    p = hand_program(2);
    in = hand_buffer(p, "in", IR_IO_INPUT, 1, 8);
    y = hand_buffer(p, "y", IR_ACTIVATION, 1, 8);
    hand_copy(p, in, y, 0);
    hand_copy(p, in, y, 0);
    hand_nop(p, 0);
    hand_wait(p, 2, 1, 1);
    hand_plan(p, 2, (int32_t[]){0, 1, 1});
    r = explored(p);
    cr_assert(r.race);
    cr_assert(r.deadlock);
    cr_assert_eq(r.stuck_head[1], 2);
    ir_program_free(p);
}

/* The exhaustive explorer against the greedy run (deadlock) and, on programs small enough, the
 * memo-free walk over every event sequence (deadlock and race); and the generator's mix. */
Test(explorer, agrees_with_greedy_and_naive_walks_on_random_programs)
{
    int n = 0, deadlocks = 0, races = 0, clobbers = 0, aliases = 0, naive_checked = 0, naive_clobbers = 0;
    for (uint64_t seed = 1; seed <= 3000; seed++) {
        ir_program *p = explore_gen_program(seed);
        cr_assert_not_null(p);
        explore_result r = explored(p);
        ir_error err = {0};
        bool greedy_dead = !r.deadlock;
        cr_assert_eq(explore_greedy(p, &greedy_dead, &err), IR_OK, "%s", err.why);
        cr_assert_eq(greedy_dead, r.deadlock, "seed %llu", (unsigned long long)seed);
        if (p->n_tasks <= 7) {
            bool dead = !r.deadlock, race = !r.race, clobber = !r.clobber;
            cr_assert_eq(explore_naive(p, &dead, &race, &clobber, &err), IR_OK, "seed %llu: %s",
                         (unsigned long long)seed, err.why);
            cr_assert_eq(dead, r.deadlock, "seed %llu", (unsigned long long)seed);
            cr_assert_eq(race, r.race, "seed %llu", (unsigned long long)seed);
            /* without a race, every event sequence clobbers iff the greedy run does */
            if (!r.race) {
                cr_assert_eq(clobber, r.clobber, "seed %llu", (unsigned long long)seed);
                naive_clobbers += clobber;
            }
            naive_checked++;
        }
        if (seed <= 300)
            for (int32_t a = 0; a < p->n_tasks; a++)
                for (int32_t b = 0; b < p->n_tasks; b++)
                    cr_assert_eq(conflict(p, a, b), a != b && conflict(p, b, a), "seed %llu: %d, %d",
                                 (unsigned long long)seed, a, b);
        n++;
        deadlocks += r.deadlock;
        races += r.race;
        clobbers += r.clobber;
        aliases += r.alias;
        ir_program_free(p);
    }
    cr_log_info("explorer self-check: %d programs, %d naive-checked (%d clobber), %d deadlock, %d "
                "race, %d clobber, %d alias", n, naive_checked, naive_clobbers, deadlocks, races,
                clobbers, aliases);
    cr_assert_gt(naive_checked, n / 4);
    cr_assert_gt(naive_clobbers, n / 50);
    /* both verdicts of both obligations must be common, or the comparison proves little */
    cr_assert(deadlocks > n / 5 && deadlocks < n * 4 / 5, "%d deadlocks of %d", deadlocks, n);
    cr_assert(races > n / 5 && races < n * 4 / 5, "%d races of %d", races, n);
    cr_assert(clobbers > n / 20 && clobbers < n / 4, "%d clobbers of %d", clobbers, n);
    cr_assert(aliases > n / 20 && aliases < n / 3, "%d aliases of %d", aliases, n);
}

Test(explorer, generator_is_deterministic_and_varied)
{
    char *a = NULL, *b = NULL, *c = NULL;
    size_t la, lb, lc;
    ir_program *p = explore_gen_program(42), *q = explore_gen_program(42), *s = explore_gen_program(43);
    cr_assert(p && q && s);
    cr_assert_eq(ir_write_json(p, &a, &la, NULL), IR_OK);
    cr_assert_eq(ir_write_json(q, &b, &lb, NULL), IR_OK);
    cr_assert_eq(ir_write_json(s, &c, &lc, NULL), IR_OK);
    cr_assert_str_eq(a, b);
    cr_assert_str_neq(a, c);
    /* what a mismatch report writes must reproduce the program's verdicts */
    ir_program *back = NULL;
    ir_error err = {0};
    cr_assert_eq(ir_read_json(a, la, NULL, &back, &err), IR_OK, "%s: %s", err.where, err.why);
    explore_result r1 = explored(p), r2 = explored(back);
    cr_assert_eq(r1.deadlock, r2.deadlock);
    cr_assert_eq(r1.race, r2.race);
    cr_assert_eq(r1.clobber, r2.clobber);
    cr_assert_eq(r1.alias, r2.alias);
    cr_assert_eq(r1.states, r2.states);
    ir_program_free(back);
    free(a);
    free(b);
    free(c);
    ir_program_free(p);
    ir_program_free(q);
    ir_program_free(s);
}

/* ---------------------------------------------------------------- the verifier against it */

typedef struct {
    int64_t count;
    uint64_t smallest_seed;   /* of the mismatch with the fewest tasks */
    int smallest_tasks;
} mismatch_class;

enum { MM_DEADLOCK_FALSE_ACCEPT, MM_DEADLOCK_FALSE_REJECT, MM_DEADLOCK_OTHER,
       MM_RACE_FALSE_ACCEPT, MM_RACE_FALSE_REJECT, MM_RACE_OTHER, MM_RACE_WRONG_KIND, MM_COUNT };
static const char *const MM_NAMES[MM_COUNT] = {
    "deadlock false accept", "deadlock false reject", "deadlock not decided",
    "race false accept", "race false reject", "race not decided",
    "race witness of a defect the explorer did not find"};

/* The race obligation covers plain races and both page defects. */
static bool race_defect(const explore_result *ex) { return ex->race || ex->clobber || ex->alias; }

/* Whether a race-obligation witness kind names a defect the explorer found. */
static bool race_kind_found(const explore_result *ex, const char *kind)
{
    bool plain = !strcmp(kind, "race") || !strcmp(kind, "page_race") || !strcmp(kind, "kv_race");
    return (ex->race && plain) || (ex->clobber && !strcmp(kind, "page_clobber")) ||
           (ex->alias && !strcmp(kind, "page_alias"));
}

/* The mismatch class of one obligation's verdict, -1 when it is the expected one: base + 0 the
 * explorer found the defect and the verifier proved it absent, + 1 the reverse, + 2 neither
 * PROVED nor REFUTED. */
static int verdict_class(int base, bool expected, verify_verdict got)
{
    if (got == (expected ? VERIFY_REFUTED : VERIFY_PROVED))
        return -1;
    return got == VERIFY_PROVED ? base : got == VERIFY_REFUTED ? base + 1 : base + 2;
}

static int deadlock_class(const explore_result *ex, const verify_result *vr)
{
    return verdict_class(MM_DEADLOCK_FALSE_ACCEPT, ex->deadlock, vr->ob[VERIFY_DEADLOCK].status);
}

/* The race obligation's verdict class, or MM_RACE_WRONG_KIND when it is rightly REFUTED but its
 * witness names a defect the explorer did not find. The witness is the race obligation's only
 * when the deadlock obligation (decided before it) was not refuted. */
static int race_class(const explore_result *ex, const verify_result *vr)
{
    int k = verdict_class(MM_RACE_FALSE_ACCEPT, race_defect(ex), vr->ob[VERIFY_RACE].status);
    if (k < 0 && race_defect(ex) && vr->ob[VERIFY_DEADLOCK].status != VERIFY_REFUTED &&
        !race_kind_found(ex, vr->witness_kind))
        k = MM_RACE_WRONG_KIND;
    return k;
}

static double now_seconds(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

static int64_t env_int(const char *name, int64_t dflt)
{
    const char *s = getenv(name);
    if (!s || !*s)
        return dflt;
    char *end;
    long long v = strtoll(s, &end, 10);
    return *end == '\0' && v >= 0 ? (int64_t)v : dflt;
}

/* Count mismatch class k (-1: none) of the program from seed. */
static void count_mismatch(mismatch_class *mm, int k, uint64_t seed, int n_tasks, bool *mismatch)
{
    if (k < 0)
        return;
    *mismatch = true;
    if (mm[k].count++ == 0 || n_tasks < mm[k].smallest_tasks) {
        mm[k].smallest_seed = seed;
        mm[k].smallest_tasks = n_tasks;
    }
}

/* A copy of p without task drop_task (-1: none), without wait drop_wait of task wait_task, and
 * without pages when drop_pages. Later tasks are renumbered, emptied queues removed. Generated
 * programs only, whose params are all ints. The caller frees it with ir_program_free. */
static ir_program *copy_without(const ir_program *p, int32_t drop_task, int32_t wait_task, int drop_wait,
                                bool drop_pages)
{
    ir_program *c = ir_program_new();
    cr_assert_not_null(c);
    c->has_target = p->has_target;
    c->target = p->target;
    c->has_decode = p->has_decode;
    c->decode = p->decode;
    for (int32_t b = 0; b < p->n_buffers; b++) {
        const ir_buffer *x = &p->buffers[b];
        cr_assert_eq(ir_add_buffer(c, x->name, x->kind, x->dtype, x->rank, x->shape, x->space, x->source), b);
    }
    for (int32_t k = 0; k < p->n_counters; k++)
        cr_assert_eq(ir_add_counter(c, p->counters[k].note), k);
    for (int32_t t = 0; t < p->n_tasks; t++) {
        if (t == drop_task)
            continue;
        const ir_task *x = &p->tasks[t];
        ir_task *y = ir_add_task(c, x->op, x->out_counter, x->label);
        cr_assert_not_null(y);
        y->sm = x->sm;
        for (int i = 0; i < x->n_inputs; i++)
            cr_assert_eq(ir_task_add_input(y, x->inputs[i]), IR_OK);
        for (int i = 0; i < x->n_outputs; i++)
            cr_assert_eq(ir_task_add_output(y, x->outputs[i]), IR_OK);
        for (int i = 0; i < x->n_waits; i++)
            if (!(t == wait_task && i == drop_wait))
                cr_assert_eq(ir_task_add_wait(y, x->waits[i].counter, x->waits[i].threshold), IR_OK);
        for (int i = 0; i < x->n_params; i++) {
            cr_assert_eq(x->params[i].type, IR_PARAM_INT);
            cr_assert_eq(ir_task_set_int(y, x->params[i].key, x->params[i].i), IR_OK);
        }
    }
    if (p->has_pages && !drop_pages) {
        c->has_pages = true;
        c->pages.n_map = p->pages.n_map;
        c->pages.n_pages = p->pages.n_pages;
        c->pages.map_buffer = malloc(((size_t)p->pages.n_map + 1) * sizeof(int32_t));
        c->pages.map_page = malloc(((size_t)p->pages.n_map + 1) * sizeof(int32_t));
        c->pages.pages = malloc(((size_t)p->pages.n_pages + 1) * sizeof(ir_page));
        cr_assert(c->pages.map_buffer && c->pages.map_page && c->pages.pages);
        memcpy(c->pages.map_buffer, p->pages.map_buffer, (size_t)p->pages.n_map * sizeof(int32_t));
        memcpy(c->pages.map_page, p->pages.map_page, (size_t)p->pages.n_map * sizeof(int32_t));
        memcpy(c->pages.pages, p->pages.pages, (size_t)p->pages.n_pages * sizeof(ir_page));
    }
    if (p->has_plan) {
        int32_t grid = 0;
        for (int64_t q = 0; q < p->plan.grid; q++) {
            int32_t len = p->plan.queue_start[q + 1] - p->plan.queue_start[q];
            bool only_dropped = len == 1 && p->plan.queue_tasks[p->plan.queue_start[q]] == drop_task;
            grid += len > 0 && !only_dropped;
        }
        cr_assert_eq(ir_plan_alloc(&c->plan, grid, c->n_tasks), IR_OK);
        c->has_plan = true;
        c->plan.threads_per_block = p->plan.threads_per_block;
        c->plan.regs_per_thread = p->plan.regs_per_thread;
        c->plan.pipelining_depth = p->plan.pipelining_depth;
        c->plan.dynamic_smem_bytes = p->plan.dynamic_smem_bytes;
        c->plan.static_smem_bytes = p->plan.static_smem_bytes;
        int32_t k = 0, nq = 0;
        for (int64_t q = 0; q < p->plan.grid; q++) {
            int32_t first = k;
            c->plan.queue_start[nq] = k;
            for (int32_t i = p->plan.queue_start[q]; i < p->plan.queue_start[q + 1]; i++) {
                int32_t t = p->plan.queue_tasks[i];
                if (t == drop_task)
                    continue;
                int32_t nt = drop_task >= 0 && t > drop_task ? t - 1 : t;
                c->plan.queue_tasks[k++] = nt;
                c->tasks[nt].sm = nq;
            }
            nq += k > first;
        }
        c->plan.queue_start[nq] = k;
        cr_assert_eq(nq, grid);
    }
    return c;
}

/* Whether p still shows mismatch class k (see verdict_class, race_class). */
static bool mismatch_of(const ir_program *p, int k)
{
    explore_result ex;
    ir_error err = {0};
    if (explore_program(p, &ex, &err) != IR_OK)
        return false;
    verify_opts opts;
    verify_opts_default(&opts);
    verify_result vr;
    if (verify_program(p, &opts, &vr, &err) != IR_OK)
        return false;
    int cls = k < MM_RACE_FALSE_ACCEPT ? deadlock_class(&ex, &vr) : race_class(&ex, &vr);
    verify_result_free(&vr);
    return cls == k;
}

/* Delete tasks, waits and pages from p while mismatch class k persists; p is consumed and the
 * smaller program returned. */
static ir_program *shrink(ir_program *p, int k)
{
    bool progress = true;
    while (progress) {
        progress = false;
        for (int32_t t = p->n_tasks - 1; t >= 0 && p->n_tasks > 1; t--) {
            ir_program *c = copy_without(p, t, -1, -1, false);
            if (mismatch_of(c, k)) {
                ir_program_free(p);
                p = c;
                progress = true;
            } else {
                ir_program_free(c);
            }
        }
        for (int32_t t = 0; t < p->n_tasks; t++)
            for (int w = p->tasks[t].n_waits - 1; w >= 0; w--) {
                ir_program *c = copy_without(p, -1, t, w, false);
                if (mismatch_of(c, k)) {
                    ir_program_free(p);
                    p = c;
                    progress = true;
                } else {
                    ir_program_free(c);
                }
            }
        if (p->has_pages) {
            ir_program *c = copy_without(p, -1, -1, -1, true);
            if (mismatch_of(c, k)) {
                ir_program_free(p);
                p = c;
                progress = true;
            } else {
                ir_program_free(c);
            }
        }
    }
    return p;
}

static void save_program(const ir_program *p, uint64_t seed)
{
    if (mkdir("build", 0777) != 0 && errno != EEXIST)
        return;
    char path[128];
    snprintf(path, sizeof path, "build/property_mismatch_%llu.json", (unsigned long long)seed);
    ir_error err = {0};
    if (ir_write_file(p, path, &err) != IR_OK)
        fprintf(stderr, "property: cannot write %s: %s\n", path, err.why);
}

Test(verify_property, verifier_verdicts_equal_the_explorers, .timeout = 0)
{
    int64_t n = env_int("AMK_PROPERTY_SEEDS", 300);
    uint64_t base = (uint64_t)env_int("AMK_PROPERTY_SEED_BASE", 1);
    verify_opts opts;
    verify_opts_default(&opts);
    mismatch_class mm[MM_COUNT];
    memset(mm, 0, sizeof mm);
    int64_t deadlocks = 0, races = 0, both = 0, safe = 0, clobbers = 0, aliases = 0, mismatched = 0,
            max_states = 0;
    double t_explore = 0, t_verify = 0, t_start = now_seconds();
    for (int64_t i = 0; i < n; i++) {
        uint64_t seed = base + (uint64_t)i;
        ir_program *p = explore_gen_program(seed);
        cr_assert_not_null(p);
        double t0 = now_seconds();
        explore_result ex = explored(p);
        double t1 = now_seconds();
        verify_result vr;
        ir_error err = {0};
        ir_status st = verify_program(p, &opts, &vr, &err);
        t_explore += t1 - t0;
        t_verify += now_seconds() - t1;
        cr_assert_eq(st, IR_OK, "seed %llu: verify_program: %s: %s", (unsigned long long)seed,
                     ir_status_name(st), err.why);
        deadlocks += ex.deadlock;
        races += ex.race;
        both += ex.deadlock && ex.race;
        safe += !ex.deadlock && !race_defect(&ex);
        clobbers += ex.clobber;
        aliases += ex.alias;
        if (ex.states > max_states)
            max_states = ex.states;
        bool mismatch = false;
        verify_verdict vd = vr.ob[VERIFY_DEADLOCK].status, vrace = vr.ob[VERIFY_RACE].status;
        count_mismatch(mm, deadlock_class(&ex, &vr), seed, p->n_tasks, &mismatch);
        count_mismatch(mm, race_class(&ex, &vr), seed, p->n_tasks, &mismatch);
        if (mismatch) {
            mismatched++;
            save_program(p, seed);
            fprintf(stderr,
                    "property: seed %llu (%d tasks, %d queues): explorer deadlock=%d race=%d "
                    "(pair %d,%d) clobber=%d (task %d) alias=%d (task %d); verifier deadlock=%s "
                    "race=%s (witness %s) wellformed=%s\n"
                    "  deadlock: %s\n  race: %s\n  wellformed: %s\n",
                    (unsigned long long)seed, p->n_tasks, ex.n_queues, ex.deadlock, ex.race,
                    ex.race_a, ex.race_b, ex.clobber, ex.clobber_task, ex.alias, ex.alias_task,
                    verify_verdict_name(vd), verify_verdict_name(vrace), vr.witness_kind,
                    verify_verdict_name(vr.ob[VERIFY_WELLFORMED].status), vr.ob[VERIFY_DEADLOCK].detail,
                    vr.ob[VERIFY_RACE].detail, vr.ob[VERIFY_WELLFORMED].detail);
        }
        verify_result_free(&vr);
        ir_program_free(p);
    }
    double total = now_seconds() - t_start;
    fprintf(stderr,
            "property: %lld programs (seeds %llu..%llu): %lld deadlock, %lld race (%lld both), %lld "
            "page clobber, %lld page alias, %lld safe; largest state space %lld\n"
            "property: %lld mismatched; %.2f s total, explorer %.3f s, verifier %.2f s (%.2f ms per program)\n",
            (long long)n, (unsigned long long)base, (unsigned long long)(base + (uint64_t)n - 1),
            (long long)deadlocks, (long long)races, (long long)both, (long long)clobbers,
            (long long)aliases, (long long)safe, (long long)max_states, (long long)mismatched, total, t_explore, t_verify,
            n > 0 ? 1000.0 * t_verify / (double)n : 0.0);
    for (int k = 0; k < MM_COUNT; k++) {
        if (mm[k].count == 0)
            continue;
        fprintf(stderr, "property: %s: %lld, smallest seed %llu (%d tasks)\n", MM_NAMES[k],
                (long long)mm[k].count, (unsigned long long)mm[k].smallest_seed, mm[k].smallest_tasks);
        ir_program *p = shrink(explore_gen_program(mm[k].smallest_seed), k);
        char path[128], *json = NULL;
        size_t len = 0;
        snprintf(path, sizeof path, "build/property_minimal_%d_%llu.json", k,
                 (unsigned long long)mm[k].smallest_seed);
        ir_error err = {0};
        if (ir_write_file(p, path, &err) == IR_OK && ir_write_json(p, &json, &len, &err) == IR_OK)
            fprintf(stderr, "property: shrunk to %d tasks, written to %s:\n%s\n", p->n_tasks, path, json);
        free(json);
        ir_program_free(p);
    }
    cr_assert_eq(mismatched, 0, "%lld of %lld programs: verifier and explorer disagree (see stderr)",
                 (long long)mismatched, (long long)n);
}

/* The hand-made programs above, verified: each verdict must equal the explorer's. */
Test(verify_property, verifier_agrees_on_hand_made_programs)
{
    ir_program *progs[24];
    int n = 0;
    progs[n++] = cross_wait(false);
    progs[n++] = cross_wait(true);
    progs[n++] = partial_wait(1, true);
    progs[n++] = partial_wait(1, false);
    progs[n++] = partial_wait(2, false);
    progs[n++] = partial_wait(2, true);
    progs[n++] = two_tiles(0, 8, 4, 8, false);
    progs[n++] = two_tiles(0, 8, 7, 1, false);
    progs[n++] = two_tiles(0, 8, 8, 8, false);
    progs[n++] = two_tiles(0, 8, 4, 8, true);
    progs[n++] = paged(8, 0, 8, true);
    progs[n++] = paged(8, 0, 8, false);
    progs[n++] = paged(16, 8, 8, true);
    progs[n++] = paged(16, 7, 8, true);
    progs[n++] = tenant_chain("ABa", 8, 0, true);
    progs[n++] = tenant_chain("Ba", 8, 0, true);
    progs[n++] = tenant_chain("AaBb", 8, 0, true);
    progs[n++] = tenant_chain("ABa", 16, 8, true);
    progs[n++] = tenant_chain("ABa", 8, 0, false);
    progs[n++] = tenant_move(0, 8, true, false);
    progs[n++] = tenant_move(8, 8, true, false);
    progs[n++] = tenant_move(0, 8, true, true);
    progs[n++] = gemm_gap(4);
    progs[n++] = gemm_gap(8);
    verify_opts opts;
    verify_opts_default(&opts);
    int wrong = 0;
    for (int i = 0; i < n; i++) {
        explore_result ex = explored(progs[i]);
        verify_result vr;
        ir_error err = {0};
        cr_assert_eq(verify_program(progs[i], &opts, &vr, &err), IR_OK, "%s", err.why);
        if (deadlock_class(&ex, &vr) >= 0 || race_class(&ex, &vr) >= 0) {
            wrong++;
            fprintf(stderr, "hand-made program %d: explorer deadlock=%d race=%d clobber=%d alias=%d; verifier "
                    "deadlock=%s race=%s (witness %s; wellformed %s: %s)\n", i, ex.deadlock, ex.race,
                    ex.clobber, ex.alias, verify_verdict_name(vr.ob[VERIFY_DEADLOCK].status),
                    verify_verdict_name(vr.ob[VERIFY_RACE].status), vr.witness_kind,
                    verify_verdict_name(vr.ob[VERIFY_WELLFORMED].status), vr.ob[VERIFY_WELLFORMED].detail);
        }
        verify_result_free(&vr);
        ir_program_free(progs[i]);
    }
    cr_assert_eq(wrong, 0, "%d of %d hand-made programs disagree", wrong, n);
}

/* AMK_PROPERTY_REPLAY=FILE: explore and verify one saved program and compare, for reproducing a
 * reported mismatch. Skipped without it. */
Test(verify_property, replay_one_program)
{
    const char *path = getenv("AMK_PROPERTY_REPLAY");
    if (!path || !*path)
        cr_skip_test("AMK_PROPERTY_REPLAY not set");
    ir_program *p = NULL;
    ir_error err = {0};
    cr_assert_eq(ir_read_file(path, NULL, &p, &err), IR_OK, "%s: %s at %s: %s", path,
                 ir_status_name(err.status), err.where, err.why);
    explore_result ex = explored(p);
    verify_opts opts;
    verify_opts_default(&opts);
    verify_result vr;
    cr_assert_eq(verify_program(p, &opts, &vr, &err), IR_OK, "%s", err.why);
    fprintf(stderr, "replay %s: explorer deadlock=%d race=%d (pair %d,%d, %lld states) clobber=%d "
            "(task %d) alias=%d (task %d); verifier deadlock=%s race=%s (witness %s)\n  deadlock: %s\n"
            "  race: %s\n", path, ex.deadlock, ex.race, ex.race_a, ex.race_b, (long long)ex.states,
            ex.clobber, ex.clobber_task, ex.alias, ex.alias_task,
            verify_verdict_name(vr.ob[VERIFY_DEADLOCK].status), verify_verdict_name(vr.ob[VERIFY_RACE].status),
            vr.witness_kind, vr.ob[VERIFY_DEADLOCK].detail, vr.ob[VERIFY_RACE].detail);
    int deadlock_k = deadlock_class(&ex, &vr), race_k = race_class(&ex, &vr);
    verify_result_free(&vr);
    ir_program_free(p);
    cr_assert_eq(deadlock_k, -1, "%s", MM_NAMES[deadlock_k < 0 ? 0 : deadlock_k]);
    cr_assert_eq(race_k, -1, "%s", MM_NAMES[race_k < 0 ? 0 : race_k]);
}
