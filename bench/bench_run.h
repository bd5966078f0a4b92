/*
 * bench_run.h - the side of bench/ that runs programs: the timing sources that decode real
 * steps and the reference each is checked against.
 *
 *   - the reference VM gate: reference VM logits of the very positions a source times
 *     (bench_reference), and the reference VM itself as a timing source (bench_cpu, label
 *     BENCH_CPU_LABEL), which runs everywhere;
 *   - the megakernel on a GPU (bench_gpu, label BENCH_GPU_LABEL), loaded with mk_load;
 *   - the cuBLAS CUDA-graph baseline (bench_baseline, label BENCH_BASELINE_LABEL,
 *     bench/gpu_baseline.cu).
 * Each is a bench_timing_source that bench_run() and bench_ab_run() of bench/bench.h drive; the
 * statistics, the floor guard, the audit and the report live there and need none of this.
 * This is the only bench/ header that depends on lower/, refvm/ and megakernel/.
 *
 * Conventions as in bench/bench.h: status codes and error records, nothing printed; "free with"
 * names the matching free function.
 */
#ifndef AMK_BENCH_RUN_H
#define AMK_BENCH_RUN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "bench/bench.h"
#include "ir/amk_ir.h"
#include "lower/lower.h"
#include "megakernel/megakernel.h"
#include "refvm/refvm.h"

/* The baseline's own tolerance. It multiplies bf16 (or f16) activations with the weights in
 * cuBLAS, so its logits are further from the fp32 reference than the megakernel's
 * (REFVM_GATE_REL_TOL); SPEC.md 14.4 says why this bound and not the gate's. */
#ifndef BENCH_BASELINE_REL_TOL
#define BENCH_BASELINE_REL_TOL 2e-2
#endif
#ifndef BENCH_BW_PROBE_BYTES
#define BENCH_BW_PROBE_BYTES ((int64_t)4 << 30)  /* streaming-read probe size (1 GiB if it fails) */
#endif
#define BENCH_BW_PROBE_REPEATS 20          /* passes of the probe; the median is taken */

/* ---------------------------------------------------------------- the reference VM as a source */

/* The reference VM as a timing source: the VM and the eager forward built once from p, the
 * weights st and model m; each run decodes greedily from token 0 at positions 0 .. steps-1,
 * timing only the VM steps and comparing every step's logits with the eager forward
 * (REFVM_GATE_REL_TOL). p, st and m must outlive the source; free it with bench_cpu_free. */
typedef struct bench_cpu bench_cpu;
ir_status bench_cpu_new(const ir_program *p, const refvm_st *st, const lower_model *m,
                        bench_cpu **out, ir_error *err);
void bench_cpu_free(bench_cpu *c);
/* The timing-source view of c (label BENCH_CPU_LABEL, no bandwidth measurement). */
bench_timing_source bench_cpu_source(bench_cpu *c);
/* Largest `steps` the program can decode (its max_seq). */
int64_t bench_cpu_max_steps(const bench_cpu *c);

/* ---------------------------------------------------------------- GPU timing sources
 *
 * The GPU sources never time anything they have not checked: every step's logits are compared
 * with reference VM logits of the same position and input token. The VM is slow on real
 * models, so those logits are computed once per program (bench_reference) and every repeat is
 * compared against them (teacher forcing: each repeat feeds the reference's tokens). Without
 * CUDA support or a device every constructor here answers IR_ERR_UNSUPPORTED with the reason.
 */

/* Reference VM logits of positions 0 .. steps-1. */
typedef struct {
    int64_t steps, vocab;
    int32_t *tokens;              /* owned, [steps]: the input token of each position */
    float *logits;                /* owned, [steps * vocab] */
    double seconds;               /* VM time taken (binding included) */
} bench_reference;

/* Run the reference VM over p bound to st for `steps` positions. tokens NULL: decode greedily
 * from token 0 (the VM's own picks become the tokens); else feed those `steps` tokens. The VM
 * must finish every step (REFVM_DONE) and write vocab logits, else IR_ERR_MALFORMED naming the
 * position. On success the caller frees *out with bench_reference_free. */
ir_status bench_reference_compute(const ir_program *p, const refvm_st *st, bool tie_embeddings,
                                  int64_t steps, const int32_t *tokens, bench_reference *out,
                                  ir_error *err);
void bench_reference_free(bench_reference *r);

/* Whether GPU sources can run: true with the first device's name in name; false with the
 * reason in why ("this build has no CUDA support ..." or "no CUDA device found ..."). */
bool bench_gpu_available(char *name, size_t name_len, char *why, size_t why_len);

/* The megakernel as a timing source: p loaded with mk_load (certificate checked there, then
 * residency, ops, weights). Each run decodes positions 0 .. steps-1 with ref's tokens, times
 * every launch with CUDA events (mk_step_status.ms) and gates its logits against ref with
 * REFVM_GATE_REL_TOL (top-1 equal); a watchdog TIMEOUT is a gate failure. measure_bandwidth
 * times a streaming read of BENCH_BW_PROBE_BYTES. label NULL: BENCH_GPU_LABEL (static string
 * expected). p, ref must outlive the source. On failure *load_status (may be NULL) says what
 * mk_load answered. Free with bench_gpu_free. */
typedef struct bench_gpu bench_gpu;
ir_status bench_gpu_new(const ir_program *p, const char *cert_json, size_t cert_len,
                        const char *weights, bool tie_embeddings, int device,
                        const bench_reference *ref, const char *label, bench_gpu **out,
                        mk_status *load_status, ir_error *err);
void bench_gpu_free(bench_gpu *g);
bench_timing_source bench_gpu_source(bench_gpu *g);
const char *bench_gpu_device_name(const bench_gpu *g);
int64_t bench_gpu_max_steps(const bench_gpu *g);

/* The same decode as separate kernels, built from the model shape m and the Hugging Face
 * tensors of st (not from a program): the projections are cuBLAS GEMMs (cublasGemmEx, weights
 * in their file dtype, activations converted to it, fp32 output and accumulation; q/k/v and
 * gate/up each one GEMM over rows stored together), RMSNorm, RoPE (llama3 bands included), KV
 * append, attention and SiLU as small kernels, the whole step captured once in a CUDA graph
 * that reads the token and position from device memory. Each run decodes positions
 * 0 .. steps-1 with ref's tokens, times each graph launch with CUDA events and gates the logits
 * against ref with BENCH_BASELINE_REL_TOL, a different top-1 passing only as a near tie
 * (bench_gate_step). cuBLAS is loaded at run time (libcublas.so.13, .12, or the path in
 * $AMK_CUBLAS); when it cannot be, IR_ERR_UNSUPPORTED says so. st and ref must outlive the
 * source. Free with bench_baseline_free. */
typedef struct bench_baseline bench_baseline;
ir_status bench_baseline_new(const lower_model *m, const refvm_st *st, int device,
                             const bench_reference *ref, bench_baseline **out, ir_error *err);
void bench_baseline_free(bench_baseline *b);
bench_timing_source bench_baseline_source(bench_baseline *b);
/* "cuBLAS 13.0.2"-style description of the library loaded (static string while b lives). */
const char *bench_baseline_library(const bench_baseline *b);

#endif /* AMK_BENCH_RUN_H */
