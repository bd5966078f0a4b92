/*
 * explorer.h - the test oracle for amk-verify: an explicit-state explorer that decides deadlock
 * and data races of small programs by enumerating every interleaving, the two page defects
 * (clobber and alias), and a seeded generator of random small programs to compare the verifier
 * against. It shares no code with verify/; it uses
 * only the IR (construction, queues of the launch plan, footprints). tests/explorer.c holds the
 * definitions that the explorer decides; SPEC.md section 11 restates them.
 *
 * Not a library: a test includes tests/explorer.c directly.
 */
#ifndef AMK_TESTS_EXPLORER_H
#define AMK_TESTS_EXPLORER_H

#include <stdbool.h>
#include <stdint.h>

#include "ir/amk_ir.h"

#ifndef EXPLORE_MAX_STATES
#define EXPLORE_MAX_STATES ((int64_t)1 << 24)  /* larger state spaces are UNSUPPORTED */
#endif
#ifndef EXPLORE_MAX_QUEUES
#define EXPLORE_MAX_QUEUES 16
#endif

/* What the explorer decided about one program. */
typedef struct {
    bool deadlock;          /* a reachable state with no possible event and an unfinished task */
    bool race;              /* two conflicting tasks RUNNING together in a reachable state */
    int64_t states;         /* distinct reachable states visited */
    int32_t race_a, race_b; /* a racing pair (task ids, race_a < race_b); -1 when none */
    bool clobber;           /* race-free, and a task reads a page byte of buffer A whose last
                               writer was another buffer; false (not decided) when race */
    int32_t clobber_task;   /* the first such reading task of the greedy run; -1 when none */
    bool alias;             /* a task that runs accesses two buffers of one page at overlapping
                               bytes, one access a write */
    int32_t alias_task;     /* the lowest such task id; -1 when none */
    int32_t n_queues;
    int32_t stuck_head[EXPLORE_MAX_QUEUES]; /* in a stuck state: each queue's head task, -1 when
                                               that queue has finished; all -1 when no deadlock */
} explore_result;

/* Decide deadlock and races of p by exhaustive exploration of its launch plan's queues (without
 * a plan: one queue per distinct sm value in task-list order, one per task whose sm is null),
 * then alias and, when race-free, clobber over the tasks of one greedy run (definitions in
 * explorer.c). Returns IR_OK with *r filled; IR_ERR_MALFORMED
 * (err says why) when the queues do not list every task once, a counter's init is not 0, or a
 * footprint cannot be computed; IR_ERR_UNSUPPORTED beyond EXPLORE_MAX_STATES or
 * EXPLORE_MAX_QUEUES; IR_ERR_NOMEM. */
ir_status explore_program(const ir_program *p, explore_result *r, ir_error *err);

/* Whether tasks a and b of p conflict by the definition in explorer.c (ignoring the order the
 * program imposes on them). *out is set; same return codes as explore_program. */
ir_status explore_tasks_conflict(const ir_program *p, int32_t a, int32_t b, bool *out,
                                 ir_error *err);

/* Second and third decision procedures, for testing the explorer itself on small programs:
 * explore_naive walks every event sequence recursively without memoizing states (deadlock,
 * race, and clobber on ANY sequence, each task's accesses applied when it starts; equal to
 * explore_program's clobber when race-free, which is what makes one run enough);
 * explore_greedy runs queue heads to completion in any enabled order until none is enabled
 * (deadlock only; exact because the system is persistent). Same return codes. */
ir_status explore_naive(const ir_program *p, bool *deadlock, bool *race, bool *clobber,
                        ir_error *err);
ir_status explore_greedy(const ir_program *p, bool *deadlock, ir_error *err);

/* A random small program from seed: 2-12 tasks (GEMV_TILE, ADD, COPY, NOP) on 1-3 queues of a
 * launch plan, wired at random over 1-6 shared counters (partial waits, unreachable thresholds,
 * own-counter waits), in stages as a lowering makes them, or (a fifth of the seeds) as an
 * ordered chain over the tenants of one page that clobbers or aliases them or not; F32
 * activations [1, N] with N in 4..16, sometimes several sharing one page; target h100, decode
 * pos 0. Meant to be well-formed.
 * NULL when out of memory. The caller frees it with ir_program_free. */
ir_program *explore_gen_program(uint64_t seed);

#endif /* AMK_TESTS_EXPLORER_H */
