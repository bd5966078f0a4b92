/*
 * search.h - the schedule search: propose a ScheduleConfig, evaluate it (lower, prove with Z3,
 * gate on the reference VM, predict or measure its latency), keep it only when it is valid,
 * correct and at least SEARCH_MIN_GAIN faster than the incumbent, and log every trial.
 *
 * The space is the lowering's own knob table (lower_knob_at, lower_fusion_group): what the
 * search tries is what the config reader accepts, nothing more. A candidate that the verifier
 * does not PROVE is never run, on the VM or on a GPU.
 *
 * Conventions as in ir/amk_ir.h: nothing here prints or exits; functions that can fail return
 * an ir_status and fill an ir_error; the loop reports through callbacks.
 */
#ifndef AMK_SEARCH_H
#define AMK_SEARCH_H

#include <stdbool.h>
#include <stdint.h>

#include "ir/amk_ir.h"
#include "lower/lower.h"
#include "verify/verify.h"

#define SEARCH_MIN_GAIN 0.01        /* a kept candidate is at least this much faster (1%) */
#define SEARCH_TIE_REL 1e-9         /* latencies this close (relative) are equal */
#define SEARCH_ID_LEN 16            /* hex digits of a schedule_id */
#define SEARCH_MAX_KNOBS 16         /* at least lower_knob_count() */
#define SEARCH_GATE_STEPS 2         /* default positions the VM is checked at */

/* ---------------------------------------------------------------- identity */

/* The canonical form of c: tiling entries sorted by (op, key) with those equal to their knob's
 * default dropped, each fusion group's names sorted and the groups sorted, the explicit map
 * sorted by task id, written by ir_config_write_json. The caller frees *json with free(). */
ir_status search_config_canonical(const ir_config *c, char **json, ir_error *err);

/* schedule_id: the first SEARCH_ID_LEN hex digits of the SHA-256 of the canonical form. Two
 * configs that lower alike by construction (entry order, defaults spelled out) share it. */
ir_status search_schedule_id(const ir_config *c, char id[SEARCH_ID_LEN + 1], ir_error *err);

/* Simplicity score: how many knobs differ from the default config (each tiling key set to a
 * value other than its default, each fusion group, and each scalar knob). 0 is the default. */
int search_simplicity(const ir_config *c);

/* ---------------------------------------------------------------- points and the generator */

/* The searchable part of a config: one value per knob of lower_knob_at (INT: the value, 0 =
 * absent for an optional tiling key; ENUM: the choice index; GROUPS: unused) and the fusion
 * groups as a bit set over lower_fusion_group. An explicit sm_assignment map is not a point. */
typedef struct {
    int64_t value[SEARCH_MAX_KNOBS];
    uint32_t fusion;
} search_point;

/* The default config as a point. */
void search_point_default(search_point *pt);
/* The config of pt. On success the caller frees c with ir_config_free. IR_ERR_NOMEM. */
ir_status search_point_config(const search_point *pt, ir_config *c, ir_error *err);
/* "default", or the knobs that differ from it, e.g. "N_tile=64 kv_block=128 fuse=gate+up". */
void search_point_summary(const search_point *pt, char *out, size_t len);

/* splitmix64: the whole search draws from one of these, so a seed fixes every candidate. */
typedef struct {
    uint64_t state;
} search_rng;
void search_rng_seed(search_rng *r, uint64_t seed);
uint64_t search_rng_next(search_rng *r);
/* Uniform in [0, n), n >= 1. */
uint64_t search_rng_below(search_rng *r, uint64_t n);

/* The values the search tries for INT knob k on a target of num_sms SMs (0: no target): the
 * knob's own search values, and for tiling.gemv.stage_tiles also num_sms and 2 * num_sms (one or
 * two tiles per SM per stage, the scale that knob is meant for). Writes at most cap values to
 * out (0 means absent); returns how many. */
int search_knob_values(const lower_knob *k, int64_t num_sms, int64_t *out, int cap);

/* A random point: every knob drawn from its search values (search_knob_values; ENUM: its
 * choices), each fusion group in with probability 1/2 unless it overlaps one already in;
 * redrawn until lower_config_check accepts it. IR_ERR_UNSUPPORTED if no draw is accepted in
 * 64 tries. */
ir_status search_random_point(search_rng *r, int64_t num_sms, search_point *out, ir_error *err);
/* from with exactly one knob changed (a scalar to another of its values, or one fusion group
 * toggled), accepted by lower_config_check. IR_ERR_UNSUPPORTED after 64 refused draws. */
ir_status search_mutate_point(search_rng *r, int64_t num_sms, const search_point *from,
                              search_point *out, ir_error *err);

/* ---------------------------------------------------------------- the verdict */

typedef enum {
    SEARCH_PREDICTED = 0,           /* the analytic model of search_predict_us: never measured */
    SEARCH_MEASURED_GPU             /* the median of timed megakernel launches */
} search_latency_kind;

/* "predicted" or "measured-gpu". */
const char *search_latency_kind_name(search_latency_kind k);

typedef struct {
    char schedule_id[SEARCH_ID_LEN + 1];
    int simplicity;
    bool valid;                     /* lowered and PROVED */
    char rejected_obligation[32];   /* "" when valid; an obligation name, or "lower" */
    char witness_kind[32];          /* the verifier's witness kind, "" when none */
    char rejected_reason[640];      /* "" when valid */
    bool checked;                   /* the correctness gate ran (only when valid) */
    bool correct;                   /* VM vs eager passed (and GPU vs VM on a GPU) */
    double max_abs_err;             /* max |vm - eager| over the gate steps */
    double top1_agreement;          /* fraction of gate steps with the same top-1 token */
    int64_t gate_steps;
    bool gpu_checked, gpu_correct;  /* GPU vs VM, when a GPU was used */
    char why_incorrect[320];
    bool has_latency;               /* only when valid and correct */
    double latency_us;
    search_latency_kind latency_kind;
    double bound_us;                /* roofline floor: weight bytes / spec bandwidth */
    double pct_of_roofline;         /* bound_us / latency_us * 100 */
    int64_t tasks;
    double weight_mb;               /* weight bytes / 1e6 */
    verify_verdict proof[VERIFY_N_OBLIGATIONS];
    double proof_s[VERIFY_N_OBLIGATIONS];
    char certificate[512];          /* path of the PROVED certificate written, "" when none */
} search_verdict;

/* Exit code of `amk eval`: 0 iff valid and correct. */
static inline bool search_verdict_ok(const search_verdict *v)
{
    return v->valid && v->checked && v->correct;
}

/* Predicted time of one launch of p (a program with a launch plan) on t, in microseconds: the
 * queues are simulated in time, each task taking est_bytes at the block's share of the spec
 * bandwidth (t->hbm_bandwidth_gbs / grid), starting when its queue predecessor is done and its
 * waits hold. Deterministic; never below weight bytes / bandwidth when tasks read their
 * weights. IR_ERR_MALFORMED when p has no plan or the queues cannot finish. */
ir_status search_predict_us(const ir_program *p, const ir_target *t, double *us, ir_error *err);

/* ---------------------------------------------------------------- evaluation */

typedef struct {
    const lower_model *model;       /* must outlive the context */
    const ir_target *target;        /* must outlive the context */
    lower_opts lower;               /* dtype, max_seq, ... (lower_opts_default) */
    const char *weights;            /* safetensors file of model, in lower.dtype */
    int64_t gate_steps;             /* VM positions checked (default SEARCH_GATE_STEPS) */
    bool gpu;                       /* measure on GPU device `device` */
    int device;
    int64_t bench_steps;            /* GPU: tokens per timed repeat, at most gate_steps (0, the
                                       default: gate_steps); the gate's VM logits of these
                                       positions are the megakernel's reference */
    int repeats, warmup;            /* GPU: timed and untimed repeats (default 10, 1) */
    const char *cert_dir;           /* write PROGRAM and certificate of each PROVED candidate
                                       here as ID.program.json, ID.cert.json; NULL: none */
} search_opts;

void search_opts_default(search_opts *o);

/* Everything trials share: the weights and the eager reference (greedy from token 0 over
 * gate_steps positions, computed once; every VM gate, GPU
 * measurement and A/B feeds these tokens). The caller frees *out with search_ctx_free. With
 * o->gpu and no usable GPU: IR_ERR_UNSUPPORTED saying why. */
typedef struct search_ctx search_ctx;
ir_status search_ctx_new(const search_opts *o, search_ctx **out, ir_error *err);
/* The target the context evaluates for. */
const ir_target *search_ctx_target(const search_ctx *ctx);
void search_ctx_free(search_ctx *ctx);

/* A candidate's lowered program and certificate, kept for a paired A/B on a GPU. */
typedef struct {
    ir_program *program;            /* owned */
    char *cert_json;                /* owned */
    size_t cert_len;
    void *reference;                /* owned bench_reference of the GPU measurement (the VM's
                                       logits at the context's tokens), NULL on the CPU */
} search_plan;
void search_plan_free(search_plan *p);

/* Evaluate c: lower, verify (not PROVED: valid false, nothing run), gate the VM against the
 * eager reference, then measure on the GPU or predict. v is filled in every case that returns
 * IR_OK, including refusals by the lowering (rejected_obligation "lower"). plan (NULL: not
 * wanted) receives the program, certificate and GPU reference of a valid candidate. Errors: bad weights,
 * I/O of cert_dir, allocation, a GPU call failing. */
ir_status search_eval(search_ctx *ctx, const ir_config *c, search_verdict *v, search_plan *plan,
                      ir_error *err);

/* ---------------------------------------------------------------- keep or revert */

/* A paired A/B of incumbent (baseline) against candidate on the GPU, judged by the audit code:
 * speedup = median(incumbent) / median(candidate) with its bootstrap CI. */
typedef struct {
    bool has;                       /* the audit CONFIRMED the measured ratio (gates, floors, samples) */
    double estimate, lo, hi;
    char why[320];                  /* why has is false */
} search_paired;

/* Interleave incumbent and candidate on the GPU (bench_ab_run) and audit the ratio
 * (bench_claim_from_ab, bench_audit). IR_ERR_UNSUPPORTED without a GPU context. */
ir_status search_paired_ab(search_ctx *ctx, const search_plan *incumbent,
                           const search_plan *candidate, search_paired *out, ir_error *err);

/* The keep rule, a pure function. The candidate is kept when it is valid, correct, has a
 * latency, and:
 *   - with a paired A/B (ab && ab->has): the estimate >= 1 + SEARCH_MIN_GAIN and the CI's lower
 *     end > 1; a CI holding 1 is a tie;
 *   - else: cand * (1 + SEARCH_MIN_GAIN) <= inc (exactly 1% faster is kept; SEARCH_TIE_REL
 *     slack for rounding); latencies equal within SEARCH_TIE_REL are a tie.
 * A tie keeps a measured candidate over a predicted incumbent, else the strictly simpler one
 * (search_simplicity). An incumbent without a latency loses to any correct candidate with one.
 * why (may be NULL) gets one line. */
bool search_keep(const search_verdict *inc, const search_verdict *cand, const search_paired *ab,
                 char *why, size_t why_len);

/* ---------------------------------------------------------------- the loop */

typedef struct {
    int budget;                     /* trials, trial 0 included (>= 1) */
    uint64_t seed;
    double random_share;            /* share of trials 1.. drawn at random (default 0.3) */
} search_loop_opts;

void search_loop_opts_default(search_loop_opts *o);

/* One trial: one TSV row. */
typedef struct {
    int trial;
    const char *origin;             /* "default", "random" or "mutation" (static) */
    char summary[256];              /* search_point_summary */
    char *config_json;              /* owned: the canonical config */
    search_verdict verdict;
    bool kept;
    char reason[400];               /* why kept or reverted */
} search_row;

typedef struct {
    void (*row)(void *arg, const search_row *r);     /* after each trial; NULL: none */
    void (*progress)(void *arg, const char *line);   /* a line of progress; NULL: none */
    void *arg;
} search_callbacks;

typedef struct {
    int n_rows;
    search_row *rows;               /* owned */
    int best;                       /* row of the best config (-1 when none was valid+correct) */
    int n_valid, n_correct, n_kept, n_rejected;
} search_result;

/* Run the loop: trial 0 the default, then random points, then one-knob mutations of the
 * running best, never a schedule_id twice. On a GPU context the keep decision is the paired
 * A/B; on the CPU it is the predicted latency, so a seeded loop is reproducible row for row.
 * On success the caller frees out with search_result_free (also after an error). */
ir_status search_loop(search_ctx *ctx, const search_loop_opts *o, const search_callbacks *cb,
                      search_result *out, ir_error *err);
void search_result_free(search_result *r);

#endif /* AMK_SEARCH_H */
