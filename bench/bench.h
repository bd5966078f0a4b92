/*
 * bench.h - the bench/ part, GPU-free half: honest latency (SPEC.md section 14).
 *
 * Everything here is arithmetic on numbers already measured; nothing needs a GPU, a model, the
 * reference VM or the megakernel, so `amk audit` of a claim file builds on this header alone.
 *   - statistics (bench/stats.c): median and percentiles, and a seeded bootstrap confidence
 *     interval of a ratio of medians;
 *   - the roofline floor guard (bench/roofline.c): floor = weight bytes / bandwidth; a latency
 *     sample below it is physically impossible, so the whole summary is withheld and explained,
 *     never returned as a result; plus the SVG roofline chart;
 *   - the claim audit (bench/audit.c): CONFIRMED, REFUTED or UNSUPPORTED with every reason;
 *   - the timing harness (bench/cpu_bench.c): bench_run() drives any bench_timing_source,
 *     bench_ab_run() two of them interleaved, each repeat paired with its correctness gate;
 *   - the bench report (bench/report.c): what `amk bench --json` prints.
 * The sources that actually run programs (the reference VM, the megakernel, the cuBLAS
 * baseline) are in bench/bench_run.h.
 *
 * Conventions as in ir/amk_ir.h: every function that can fail returns an ir_status and fills an
 * ir_error when given one; nothing here prints, exits or aborts; "the caller frees" always names
 * the matching free function.
 */
#ifndef AMK_BENCH_H
#define AMK_BENCH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "ir/amk_ir.h"

#ifndef BENCH_BOOTSTRAP_RESAMPLES
#define BENCH_BOOTSTRAP_RESAMPLES 10000    /* default resamples of the bootstrap */
#endif
#ifndef BENCH_BOOTSTRAP_SEED
#define BENCH_BOOTSTRAP_SEED 20240607u     /* default seed: the same claim gives the same CI */
#endif
#define BENCH_AUDIT_MIN_SAMPLES 3          /* fewer samples on either side: UNSUPPORTED */
#ifndef BENCH_CLAIM_MAX_SAMPLES
#define BENCH_CLAIM_MAX_SAMPLES 1000000    /* longer latency lists are refused (MALFORMED) */
#endif
/* The sources' labels (bench/bench_run.h), here because reports, charts and claims name them. */
#define BENCH_CPU_LABEL "cpu-reference"    /* label of every figure timed on the reference VM */
#define BENCH_GPU_LABEL "gpu-megakernel"   /* label of the megakernel timed on a GPU */
#define BENCH_BASELINE_LABEL "gpu-cublas-graph"  /* label of the separate-kernel baseline */

/* ---------------------------------------------------------------- statistics */

/* Quantile q in [0, 1] of n >= 1 values sorted ascending, interpolating linearly between the
 * closest ranks (q = 0.5 is the usual median: the mean of the middle two when n is even). */
double bench_quantile_sorted(const double *sorted, int n, double q);

typedef struct {
    int n;
    double min, p10, median, p90, max;
} bench_summary;

/* Summary of n >= 1 values (x is not modified). IR_ERR_MALFORMED when n < 1, IR_ERR_NOMEM. */
ir_status bench_summarize(const double *x, int n, bench_summary *out, ir_error *err);

/* A bootstrap confidence interval of median(a) / median(b). */
typedef struct {
    double estimate;          /* median(a) / median(b) of the data itself */
    double lo, hi;            /* percentile interval of the resampled ratios */
    double level;             /* e.g. 0.95 */
    int resamples;
    uint64_t seed;
} bench_ci;

/* Resample a (na values) and b (nb values) independently with replacement, `resamples` times,
 * from a splitmix64 stream seeded with seed, and take the (1-level)/2 and (1+level)/2
 * quantiles of the ratios of medians. Every value must be finite and > 0. Deterministic: the
 * same inputs and seed give the same interval. IR_ERR_MALFORMED on empty or non-positive input,
 * resamples < 1 or level outside (0, 1); IR_ERR_NOMEM. */
ir_status bench_bootstrap_ratio(const double *a, int na, const double *b, int nb, int resamples,
                                uint64_t seed, double level, bench_ci *out, ir_error *err);

/* ---------------------------------------------------------------- roofline floor guard */

/* The least time one step can take: weight_bytes streamed once at bandwidth_gbs (1e9 B/s),
 * in microseconds. Returns 0 when either argument is not positive. */
double bench_floor_us(int64_t weight_bytes, double bandwidth_gbs);

/* A latency summary that went through the floor guard. When `reported` is false the numbers
 * are zero and must not be shown; `why` explains. */
typedef struct {
    bool reported;
    bench_summary s;          /* microseconds; zeroed when withheld */
    double floor_us;          /* the floor it was checked against */
    int n_below_floor;        /* samples below the floor */
    double lowest_us;         /* the smallest sample (kept even when withheld, for the reason) */
    char why[320];            /* "" when reported */
} bench_latency;

/* The floor guard: summarize n latency samples (microseconds) and withhold the summary when
 * any sample is below floor_us (a floor of 0 checks nothing). Every sample must be finite and
 * > 0. IR_ERR_MALFORMED on bad input, IR_ERR_NOMEM. */
ir_status bench_guard_latency(const double *us, int n, double floor_us, bench_latency *out,
                              ir_error *err);

/* The built-in target (section 6 of SPEC.md) whose spec numbers describe a device called name
 * (e.g. "NVIDIA H100 80GB HBM3" -> "h100"), or NULL when none does. */
const char *bench_target_for_device(const char *name);

/* ---------------------------------------------------------------- claims and the audit */

typedef enum {
    BENCH_CORRECTNESS_NULL = 0,   /* "status": null: not checked */
    BENCH_CORRECTNESS_PASS,
    BENCH_CORRECTNESS_FAIL
} bench_correctness;

typedef struct {
    int n;                        /* number of shapes */
    int *rank;                    /* owned, n entries */
    int64_t **dims;               /* owned, n arrays of rank[i] entries */
} bench_shape_list;

/* A speedup claim as read from JSON (SPEC.md 14.2). */
typedef struct {
    char *name;                   /* owned */
    char device[IR_MAX_NAME];     /* a built-in target name */
    int64_t weight_bytes;         /* bytes one step must stream at least once */
    bool has_bandwidth;           /* the claim's bandwidth_gbs sets the floor (it is below the
                                     target's spec; a higher one is capped at the spec) */
    double bandwidth_gbs;         /* the claim's, else the target's spec hbm_bandwidth_gbs */
    double *baseline_us;          /* owned */
    int n_baseline;
    double *candidate_us;         /* owned */
    int n_candidate;
    double claimed_speedup;       /* baseline / candidate */
    bench_correctness correctness;
    bool has_max_abs_err;
    double max_abs_err;
    bench_shape_list bench_shapes, verify_shapes;
} bench_claim;

/* Parse a claim from len bytes of JSON. Exactly the keys of SPEC.md 14.2 are accepted; an
 * unknown or duplicate key, a missing key, a wrong type or an out-of-range value is
 * IR_ERR_MALFORMED with err->where the JSON path (e.g. "candidate.latency_us[3]"). On success
 * the caller frees *out with bench_claim_free; on failure *out owns nothing. */
ir_status bench_claim_parse(const char *text, size_t len, bench_claim *out, ir_error *err);
/* Same, from a file (IR_ERR_IO when it cannot be read). */
ir_status bench_claim_read_file(const char *path, bench_claim *out, ir_error *err);
/* Release what c owns and zero it; NULL is fine. */
void bench_claim_free(bench_claim *c);

typedef enum {
    BENCH_AUDIT_CONFIRMED = 0,
    BENCH_AUDIT_REFUTED,
    BENCH_AUDIT_UNSUPPORTED
} bench_audit_verdict;

/* The reasons, in report order. bench_audit_reason_id() gives the stable string id. */
typedef enum {
    BENCH_REASON_CORRECTNESS_NOT_PASS = 0, /* correctness.status is not PASS: UNSUPPORTED */
    BENCH_REASON_CANDIDATE_BELOW_FLOOR,    /* a candidate sample below the floor: REFUTED */
    BENCH_REASON_BASELINE_BELOW_FLOOR,     /* a baseline sample below the floor: REFUTED */
    BENCH_REASON_SHAPES_DIFFER,            /* benchmark shapes != verification shapes: UNSUPPORTED */
    BENCH_REASON_TOO_FEW_SAMPLES,          /* < BENCH_AUDIT_MIN_SAMPLES on a side: UNSUPPORTED */
    BENCH_REASON_CLAIM_OUTSIDE_CI,         /* the claimed speedup is outside the CI: REFUTED */
    BENCH_REASON_CLAIM_WITHIN_CI,          /* the claimed speedup is inside the CI (note) */
    BENCH_REASON_NO_SIGNIFICANT_SPEEDUP,   /* the CI includes 1.0 (note) */
    BENCH_AUDIT_N_REASONS
} bench_audit_reason;

typedef enum {
    BENCH_EFFECT_NOTE = 0,        /* informs, decides nothing */
    BENCH_EFFECT_UNSUPPORTED,     /* the evidence cannot support the claim */
    BENCH_EFFECT_REFUTED          /* the evidence contradicts the claim */
} bench_audit_effect;

typedef struct {
    bench_audit_reason id;
    bench_audit_effect effect;
    char message[384];
} bench_audit_finding;

typedef struct {
    int resamples;                /* <= 0: BENCH_BOOTSTRAP_RESAMPLES */
    uint64_t seed;                /* bootstrap seed */
    double level;                 /* <= 0 or >= 1: 0.95 */
} bench_audit_opts;

/* Defaults: BENCH_BOOTSTRAP_RESAMPLES resamples, BENCH_BOOTSTRAP_SEED, level 0.95. */
void bench_audit_opts_default(bench_audit_opts *o);

typedef struct {
    bench_audit_verdict verdict;  /* REFUTED if any reason refutes, else UNSUPPORTED if any
                                     reason says so, else CONFIRMED */
    double bandwidth_gbs;         /* the bandwidth the floor was taken at */
    double floor_us;
    bench_latency baseline, candidate;   /* through the floor guard */
    bool has_ci;                  /* the bootstrap ran: >= 3 samples a side, none below floor */
    bench_ci ci;                  /* baseline / candidate */
    bench_audit_finding reasons[BENCH_AUDIT_N_REASONS];
    int n_reasons;
} bench_audit_result;

/* Apply every rule of SPEC.md 14.3 to c, collecting every reason that applies, then decide.
 * opts NULL: the defaults. Returns IR_OK with the verdict in *out, IR_ERR_NOMEM, or
 * IR_ERR_MALFORMED for a claim that bench_claim_parse would not have produced. */
ir_status bench_audit(const bench_claim *c, const bench_audit_opts *opts, bench_audit_result *out,
                      ir_error *err);

/* "CONFIRMED", "REFUTED", "UNSUPPORTED". */
const char *bench_audit_verdict_name(bench_audit_verdict v);
/* Stable id such as "candidate_below_floor"; "unknown" out of range. */
const char *bench_audit_reason_id(bench_audit_reason r);
/* "note", "unsupported", "refuted". */
const char *bench_audit_effect_name(bench_audit_effect e);

/* ---------------------------------------------------------------- timing sources and bench */

/* Correctness of the steps a source just timed, from the same run. */
typedef struct {
    bool pass;
    int64_t compared;             /* steps compared */
    int64_t top1_agree;           /* steps whose top-1 token equals the reference's */
    int64_t top1_near_tie;        /* steps whose top-1 differs but is a near tie (see
                                     bench_gate_step); counted only where that is allowed */
    double max_abs_err, max_rel_err;
    double tol_rel;               /* the tolerance the steps were held to (0: not set) */
    char why[256];                /* "" on PASS; else what failed */
} bench_gate;

/* Fold one step's comparison into g: candidate logits cand against reference ref (n each),
 * relative error max |cand - ref| / max |ref| at most tol. The top-1 token must be equal;
 * with near_tie_ok a different top-1 also passes when the reference logit of the candidate's
 * pick is within tol * max |ref| of the reference maximum (the two are tied within the
 * tolerance, so the pick cannot tell them apart). The first failure's reason names pos.
 * g must start zeroed with pass true. */
void bench_gate_step(bench_gate *g, const float *cand, const float *ref, int64_t n, double tol,
                     bool near_tie_ok, int64_t pos);

/* Something that can time decode steps: the CPU reference VM (bench_cpu_source), the GPU
 * megakernel (bench_gpu_source: label "gpu-megakernel", is_gpu true, a measure_bandwidth that
 * times a streaming-read kernel in the same run) and the cuBLAS graph baseline
 * (bench_baseline_source). */
typedef struct {
    const char *label;            /* printed next to every figure, e.g. BENCH_CPU_LABEL */
    bool is_gpu;                  /* only a GPU source may call its figures GPU figures */
    void *ctx;
    /* Decode `steps` tokens (positions 0 .. steps-1) once; return the mean time per token in
     * microseconds, and the correctness of exactly those steps in *gate. */
    ir_status (*run)(void *ctx, int64_t steps, double *us_per_token, bench_gate *gate,
                     ir_error *err);
    /* Device read bandwidth measured now, in GB/s; NULL when the source cannot measure it. */
    ir_status (*measure_bandwidth)(void *ctx, double *gbs, ir_error *err);
} bench_timing_source;

typedef struct {
    int64_t steps;                /* tokens per repeat (>= 1) */
    int repeats;                  /* timed repeats (>= 1) */
    int warmup;                   /* untimed repeats first (>= 0) */
    int64_t weight_bytes;         /* bytes per step, for the floors */
    double spec_bandwidth_gbs;    /* the target's spec bandwidth */
} bench_run_opts;

typedef struct {
    const char *label;            /* the source's label (static) */
    bool is_gpu;
    int64_t steps;
    int repeats;
    double *samples_us;           /* owned: per-token latency of each repeat */
    int n_samples;
    bench_gate gate;              /* every repeat's gate together: PASS only if all passed */
    bool has_latency;             /* gate PASS and nothing below either floor */
    char withheld_why[384];       /* why there is no latency, when has_latency is false */
    bench_latency latency;        /* guarded against the spec floor (and the measured one) */
    double spec_floor_us;
    bool has_measured_bw;
    double measured_bw_gbs;
    double measured_floor_us;
    double pct_of_spec_floor;     /* median / spec floor * 100, when has_latency */
    double achieved_gbs;          /* weight bytes / median, when has_latency */
} bench_run_result;

/* Time a source: warm-up runs, then `repeats` timed runs of `steps` tokens each, each paired
 * with its own correctness gate. No latency is returned without a PASS from the same runs, and
 * none below the floor. Returns IR_OK whenever the runs happened (has_latency says whether a
 * figure may be shown), the source's error otherwise. Free *out with bench_run_result_free. */
ir_status bench_run(const bench_timing_source *src, const bench_run_opts *o, bench_run_result *out,
                    ir_error *err);
void bench_run_result_free(bench_run_result *r);

/* Two sources interleaved: every repeat runs the baseline, then the candidate (B C B C ...),
 * warm-up pairs first, so drift in clocks or temperature hits both sides alike. */
typedef struct {
    bench_run_opts run;           /* steps, repeats, warm-up, weight bytes, spec bandwidth */
    int resamples;                /* bootstrap resamples (<= 0: BENCH_BOOTSTRAP_RESAMPLES) */
    uint64_t seed;                /* bootstrap seed */
    double level;                 /* CI level (outside (0, 1): 0.95) */
} bench_ab_opts;

/* Defaults: 16 steps, 10 repeats, 1 warm-up, BENCH_BOOTSTRAP_RESAMPLES, BENCH_BOOTSTRAP_SEED,
 * level 0.95; weight bytes and spec bandwidth 0 (the caller sets them). */
void bench_ab_opts_default(bench_ab_opts *o);

typedef struct {
    bench_run_result baseline, candidate;   /* each side as bench_run would give it; the one
                                               measured bandwidth is shared by both */
    bool has_speedup;             /* both sides have a latency and >= BENCH_AUDIT_MIN_SAMPLES
                                     samples */
    bench_ci speedup;             /* median(baseline) / median(candidate), bootstrap CI */
    char speedup_withheld[384];   /* why there is no speedup, when has_speedup is false */
} bench_ab_result;

/* Time baseline and candidate interleaved (see above), gate and guard each side as bench_run
 * does, and when both have a latency, the speedup with its seeded bootstrap CI. Returns IR_OK
 * whenever the runs happened; a source's error otherwise. Free *out with
 * bench_ab_result_free (also after an error). */
ir_status bench_ab_run(const bench_timing_source *baseline, const bench_timing_source *candidate,
                       const bench_ab_opts *o, bench_ab_result *out, ir_error *err);
void bench_ab_result_free(bench_ab_result *r);

/* ---------------------------------------------------------------- claims from a re-run */

/* Turn an interleaved measurement of program A (baseline) against program B (candidate) into
 * a claim for bench_audit: name and device (a built-in target name) copied, weight_bytes, the
 * floor bandwidth min(spec, measured) when the run measured one (the stricter floor, as
 * bench_run guards with), baseline = A's samples and candidate = B's, each only when its side
 * passed its gate (no PASS, no latency), correctness PASS when both passed else FAIL with the
 * larger max |error|, claimed_speedup as given, or when <= 0 the measured median ratio (1 when
 * there is none), and both shape lists copies of `shapes` (n shapes of rank[i] dims). On
 * success the caller frees *out with bench_claim_free. */
ir_status bench_claim_from_ab(const bench_ab_result *r, const char *name, const char *device,
                              int64_t weight_bytes, double spec_bandwidth_gbs,
                              double claimed_speedup, int n_shapes, const int *rank,
                              const int64_t *const *dims, bench_claim *out, ir_error *err);

/* ---------------------------------------------------------------- the bench report */

/* What `amk bench --json` prints (SPEC.md 14.4). */
typedef struct {
    const char *program, *certificate, *target;
    const char *device;           /* GPU name; NULL for a CPU run */
    const char *gpu_note;         /* why the run is not on a GPU (CPU runs), else NULL */
    const char *against;          /* what the program's logits were compared with */
    const char *plot;             /* the chart written, or NULL */
    int64_t weight_bytes;
    double spec_bandwidth_gbs;
    int warmup;
    const bench_run_result *run;  /* the program's figures */
    const bench_ab_result *ab;    /* the interleaved baseline comparison, or NULL */
    const char *baseline_note;    /* why there is no baseline when ab is NULL */
    const char *baseline_library; /* e.g. the cuBLAS version, or NULL */
} bench_report;

/* The report as one JSON document. On success *json is NUL-terminated and the caller frees it
 * with free(). IR_ERR_NOMEM. */
ir_status bench_report_json(const bench_report *rep, char **json, ir_error *err);

/* ---------------------------------------------------------------- roofline chart */

typedef struct {
    const char *title;            /* program name */
    const char *label;            /* source label, e.g. BENCH_CPU_LABEL */
    int64_t weight_bytes;
    double spec_bandwidth_gbs;    /* > 0 */
    const char *spec_name;        /* e.g. "h100 spec" */
    double measured_bandwidth_gbs;/* 0: not measured (the chart says so) */
    bool has_latency;             /* draw the measured point */
    double median_us, p10_us, p90_us;
    const char *withheld_why;     /* shown when !has_latency */
    /* an optional second point: the same-run baseline */
    const char *baseline_label;   /* NULL: no baseline in this run */
    bool baseline_has_latency;
    double baseline_median_us, baseline_p10_us, baseline_p90_us;
    const char *baseline_withheld_why;
} bench_plot;

/* An SVG roofline chart: latency per step against bytes streamed per step, both log scale,
 * with the floor line of each bandwidth and the measured median (p10-p90 bar), and the
 * baseline's median as a second marker when there is one. On success *svg
 * is a NUL-terminated document the caller frees with free(). IR_ERR_MALFORMED on a
 * non-positive weight_bytes or spec bandwidth, IR_ERR_NOMEM. */
ir_status bench_roofline_svg(const bench_plot *pl, char **svg, ir_error *err);

#endif
