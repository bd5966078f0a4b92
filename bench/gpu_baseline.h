/*
 * gpu_baseline.h - what the host half of the cuBLAS baseline (bench/gpu_bench.c, C11) and its
 * device half (bench/gpu_baseline.cu) share. Private to bench/.
 *
 * The host half reads the safetensors file and the model shape and hands the device half plain
 * pointers into the mapped file; the device half uploads them, captures one decode step in a
 * CUDA graph and replays it. Built only with nvcc; gpu_bench.c answers "no CUDA" otherwise.
 *
 * Shapes, named once: H hidden, L layers, nh query heads, nkv KV heads, hd head dim,
 * Q = nh*hd, KV = nkv*hd, I intermediate, V vocab, S positions the KV cache holds.
 */
#ifndef AMK_BENCH_GPU_BASELINE_H
#define AMK_BENCH_GPU_BASELINE_H

#include <stddef.h>
#include <stdint.h>

#include "ir/amk_ir.h"

#ifdef __cplusplus
extern "C" {
#endif

/* One layer's tensors as stored in the file: projections in the model's weight dtype, row
 * major [out, in] as Hugging Face stores a Linear; norms already converted to fp32. */
typedef struct {
    const float *attn_norm, *mlp_norm;   /* [H] */
    const void *wq, *wk, *wv;            /* [Q,H] [KV,H] [KV,H] */
    const void *wo;                      /* [H,Q] */
    const void *wg, *wu, *wd;            /* [I,H] [I,H] [H,I] */
} bbl_layer;

typedef struct {
    int64_t H, L, nh, nkv, hd, I, V, S;
    double eps;
    const float *inv_freq;               /* [hd/2], llama3 bands applied */
    int32_t wdtype;                      /* ir_dtype of every projection and of lm_head */
    const void *embed;                   /* [V,H] in embed_dtype */
    int32_t embed_dtype;
    const void *lm_head;                 /* [V,H] in wdtype; == embed when tied (one copy) */
    const float *final_norm;             /* [H] */
    const bbl_layer *layers;             /* [L] */
} bbl_desc;

typedef struct bbl bbl;

/* Load cuBLAS, upload d's tensors to device `device`, run one step outside any graph (cuBLAS
 * initializes lazily), then capture the step in a CUDA graph. d's pointers are read only during
 * the call. IR_ERR_UNSUPPORTED when cuBLAS cannot be loaded or a dtype is not F32/F16/BF16;
 * IR_ERR_IO naming the CUDA or cuBLAS call that failed; IR_ERR_NOMEM. On IR_OK the caller frees
 * *out with bbl_free. */
ir_status bbl_new(const bbl_desc *d, int device, bbl **out, ir_error *err);

/* One step: write token and pos to the device, replay the graph between two CUDA events (*ms
 * is their elapsed time), copy the V logits to logits. pos in [0, S). */
ir_status bbl_step(bbl *b, int32_t token, int64_t pos, float *logits, double *ms, ir_error *err);

/* The cuBLAS library loaded, e.g. "cuBLAS 130002 (libcublas.so.13)". */
const char *bbl_library(const bbl *b);

/* Release device memory, the graph, the stream and the cuBLAS handle; NULL is fine. */
void bbl_free(bbl *b);

#ifdef __cplusplus
}
#endif

#endif /* AMK_BENCH_GPU_BASELINE_H */
