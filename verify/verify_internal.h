/*
 * verify_internal.h - what the obligations of amk-verify share: the verification context (queues,
 * graph, footprints, the greedy execution), the witness/detail writers and the Z3 session
 * helpers. Private to verify/. The helpers are defined in vctx.c (text buffers, verdicts,
 * witnesses, deadline and progress, boxes, key sets), vz3.c (Z3 sessions) and vsim.c (greedy runs).
 */
#ifndef AMK_VERIFY_INTERNAL_H
#define AMK_VERIFY_INTERNAL_H

#include <z3.h>

#include "base/base.h"
#include "verify/verify.h"

/* Witness and certificate JSON are built on the base/ string builder: vb_put and vb_fmt are its
 * appends under the names the obligations use; vb_qstr and vb_ids write a JSON string and an id
 * list. */
typedef base_sb vbuf;

static inline void vb_put(vbuf *b, const char *s) { base_sb_str(b, s); }
#define vb_fmt base_sb_fmt
void vb_qstr(vbuf *b, const char *s);
void vb_ids(vbuf *b, const int32_t *ids, int64_t n);

/* One access of a task to a buffer: its element box at the program's position and, through
 * pages, its byte span within the page. */
typedef struct {
    int32_t task;
    int32_t buffer;
    bool write;
    int slot;
    ir_box box;
} vaccess;

/* A greedy run of the queues: finish order, and where it stopped. */
typedef struct {
    int32_t n_done;
    int32_t *order;          /* finish order (n_done entries) */
    uint8_t *done;           /* per task */
    int64_t *count;          /* final counter values */
    int32_t *head;           /* final head index per queue (== queue length when empty) */
} vrun;

typedef struct {
    const ir_program *p;
    const ir_target *t;
    const verify_opts *o;
    verify_result *r;
    int64_t pos, max_seq;         /* the program's position; positions are proved over
                                     [pos_lo, max_seq) */
    int64_t pos_lo;               /* 0 for a decode-loop program (ours, with "decode"); the
                                     program's own position for one lowered for one position
                                     (AMK's meta.pos, constants everywhere) */
    int32_t nq;
    int32_t *qstart, *qtasks;     /* queues */
    int32_t *queue_of, *qpos;     /* per task: its queue and position in it */
    ir_graph g;
    int64_t *nprod;               /* producers per counter */
    int32_t *page_of;             /* per buffer: its page or -1 */
    vaccess *acc;                 /* every access, grouped by task */
    int64_t n_acc;
    int64_t *acc_start;           /* per task: first access index (n_tasks + 1 entries) */
    vrun run;                     /* the unconstrained greedy run (deadlock obligation) */
    bool deadlock_free;
    int32_t *pi;                  /* per task: position in run.order, -1 when it never runs */
    double t_end;                 /* deadline (monotonic seconds), 0 for none */
    double t_progress;            /* when progress was last reported */
    double t_progress_start;      /* when the run started */
    vbuf witness;                 /* REFUTED/MALFORMED witness object */
    verify_cert cert;             /* the certificate: evidence from the obligations that prove;
                                     the driver fills the rest (finish_order borrows run.order) */
} vctx;

/* Greedy run with up to two tasks disabled (-1 for none): repeatedly runs enabled queue heads
 * until none is enabled. By persistence the result does not depend on the choice order. Returns
 * false on allocation failure. run is zeroed first; vrun_free releases it. */
bool vrun_exec(const vctx *c, int32_t off_a, int32_t off_b, vrun *run);
void vrun_free(vrun *run);
/* Whether task t is its queue's head in run and every wait of t holds. */
bool vrun_enabled(const vctx *c, const vrun *run, int32_t t);
/* Index of the first wait of t that does not hold in run, or -1. */
int vrun_blocking_wait(const vctx *c, const vrun *run, int32_t t);

/* Whether the run's deadline has passed. */
bool vdeadline(const vctx *c);
/* Report progress (printf-style) if the caller asked for it and a second has passed since the
 * last report (always when force). */
void vprogress(vctx *c, bool force, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

/* Obligations. Each fills c->r->ob[...] and, when refuted, c->witness. */
void verify_wellformed(vctx *c);
void verify_deadlock(vctx *c);
void verify_race(vctx *c);
void verify_resident(vctx *c);
void verify_complete(vctx *c);

/* Set an obligation's verdict with a printf detail. */
void vset(vctx *c, verify_obligation ob, verify_verdict v, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
/* Start a witness object of the given kind (only the first refutation's witness is kept);
 * returns false when one was already started, so callers skip writing a second. */
bool vwitness_begin(vctx *c, const char *kind);

/* ---- Z3 sessions: one context and one fresh solver per obligation query. */
typedef struct {
    Z3_context ctx;
    Z3_solver solver;
    vctx *c;
    verify_obligation ob;
} vz3;

/* Open a session for obligation ob (arith: integer terms; otherwise Booleans and cardinalities
 * only). False when Z3 could not start; then nothing is left to close. */
bool vz3_open(vz3 *z, vctx *c, verify_obligation ob, bool arith);
/* Check; adds the query's statistics to the obligation. Z3_L_UNDEF on timeout/limits. */
Z3_lbool vz3_check(vz3 *z);
void vz3_close(vz3 *z);
Z3_ast vz3_bool(vz3 *z, const char *prefix, int64_t i);
Z3_ast vz3_int(vz3 *z, const char *prefix, int64_t i);
Z3_ast vz3_num(vz3 *z, int64_t v);
Z3_ast vz3_and(vz3 *z, int n, const Z3_ast *a);
Z3_ast vz3_or(vz3 *z, int n, const Z3_ast *a);
/* clamp(mul * pos + add, lo, hi) as a Z3 integer term. */
Z3_ast vz3_pexpr(vz3 *z, ir_pexpr e, Z3_ast pos);
/* Value of an integer term in the last model. */
bool vz3_model_int(vz3 *z, Z3_ast a, int64_t *v);
bool vz3_model_bool(vz3 *z, Z3_ast a);

/* Overlap of two concrete boxes; ranks must match. */
bool vbox_overlap(int rank, const int64_t *alo, const int64_t *ahi, const int64_t *blo,
                  const int64_t *bhi);
/* First and one-past-last byte of a concrete box in a row-major buffer. */
void vbox_byte_span(const ir_buffer *b, const int64_t *lo, const int64_t *hi, int64_t *first,
                    int64_t *end);
/* A set of fixed-length int64 keys, for solving each distinct sub-problem once. */
typedef struct {
    int width;
    int64_t n, cap;
    int64_t *keys;
    uint8_t *used;
} vkeyset;

/* Insert key (width values); returns 1 when new, 0 when present, -1 on allocation failure. */
int vkeyset_add(vkeyset *s, const int64_t *key);
void vkeyset_free(vkeyset *s);

#endif
