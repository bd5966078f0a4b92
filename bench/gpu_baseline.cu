/*
 * gpu_baseline.cu - the same-run baseline of `amk bench`: one Llama decode step as separate
 * kernels, the projections as cuBLAS GEMMs, the whole step captured once in a CUDA graph.
 *
 * This is the conventional way to run decode, so the megakernel's speedup is measured against
 * it on the same device, weights and positions in the same process. The graph reads the input
 * token and the position from device memory, so one capture serves every position: attention
 * loops to the position it reads, RoPE computes its angles from it, KV append writes its row.
 *
 * Numerics: activations are fp32 between kernels; a projection's input vector is converted to
 * the weight dtype (cuBLAS multiplies matching types), accumulation and output are fp32
 * (CUBLAS_COMPUTE_32F). With bf16 weights that rounding of the activations is why the baseline
 * has its own tolerance (BENCH_BASELINE_REL_TOL).
 *
 * cuBLAS is loaded with dlopen on first use: the binaries link the static CUDA runtime and must
 * start on machines without the cuBLAS shared library, where only this baseline is missing.
 */
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>
#include <cublas_api.h>
#include <dlfcn.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

extern "C" {
#include "bench/gpu_baseline.h"
}

#define BBL_WORKSPACE ((size_t)32 << 20)   /* cuBLAS workspace: no allocation during capture */
#define BBL_NORM_THREADS 1024
#define BBL_ATT_THREADS 256

/* ---------------------------------------------------------------- cuBLAS, loaded at run time */

typedef cublasStatus_t (*create_fn)(cublasHandle_t *);
typedef cublasStatus_t (*destroy_fn)(cublasHandle_t);
typedef cublasStatus_t (*set_stream_fn)(cublasHandle_t, cudaStream_t);
typedef cublasStatus_t (*set_workspace_fn)(cublasHandle_t, void *, size_t);
typedef cublasStatus_t (*get_version_fn)(cublasHandle_t, int *);
typedef cublasStatus_t (*gemm_ex_fn)(cublasHandle_t, cublasOperation_t, cublasOperation_t, int, int,
                                     int, const void *, const void *, cudaDataType, int,
                                     const void *, cudaDataType, int, const void *, void *,
                                     cudaDataType, int, cublasComputeType_t, cublasGemmAlgo_t);

static struct {
    void *lib;
    char name[256];
    create_fn create;
    destroy_fn destroy;
    set_stream_fn set_stream;
    set_workspace_fn set_workspace;
    get_version_fn get_version;
    gemm_ex_fn gemm_ex;
    char why[384];
} blas;
static pthread_once_t blas_once = PTHREAD_ONCE_INIT;

/* Find and bind the library once per process; it stays loaded for the process's life. */
static void blas_load(void)
{
    const char *env = getenv("AMK_CUBLAS");
    const char *names[] = {env, "libcublas.so.13", "libcublas.so.12", "libcublas.so",
                           "/usr/local/cuda/lib64/libcublas.so.13",
                           "/usr/local/cuda/lib64/libcublas.so.12",
                           "/usr/local/cuda/lib64/libcublas.so"};
    for (size_t i = 0; i < sizeof names / sizeof names[0] && !blas.lib; i++) {
        if (!names[i] || !*names[i])
            continue;
        blas.lib = dlopen(names[i], RTLD_NOW | RTLD_LOCAL);
        if (blas.lib)
            snprintf(blas.name, sizeof blas.name, "%s", names[i]);
    }
    if (!blas.lib) {
        snprintf(blas.why, sizeof blas.why, "cannot load cuBLAS (tried $AMK_CUBLAS, "
                 "libcublas.so.13, libcublas.so.12, libcublas.so, and under /usr/local/cuda/lib64)");
        return;
    }
    blas.create = (create_fn)dlsym(blas.lib, "cublasCreate_v2");
    blas.destroy = (destroy_fn)dlsym(blas.lib, "cublasDestroy_v2");
    blas.set_stream = (set_stream_fn)dlsym(blas.lib, "cublasSetStream_v2");
    blas.set_workspace = (set_workspace_fn)dlsym(blas.lib, "cublasSetWorkspace_v2");
    blas.get_version = (get_version_fn)dlsym(blas.lib, "cublasGetVersion_v2");
    blas.gemm_ex = (gemm_ex_fn)dlsym(blas.lib, "cublasGemmEx");
    if (!blas.create || !blas.destroy || !blas.set_stream || !blas.set_workspace ||
        !blas.get_version || !blas.gemm_ex) {
        snprintf(blas.why, sizeof blas.why, "%.200s lacks a cuBLAS entry point this baseline "
                 "needs (cublasCreate_v2, cublasSetStream_v2, cublasSetWorkspace_v2, "
                 "cublasGemmEx)", blas.name);
        blas.gemm_ex = NULL;
    }
}

/* ---------------------------------------------------------------- kernels */

__device__ __forceinline__ float load_elem(const void *p, int dt, int64_t i)
{
    if (dt == IR_BF16)
        return __bfloat162float(((const __nv_bfloat16 *)p)[i]);
    if (dt == IR_F16)
        return __half2float(((const __half *)p)[i]);
    return ((const float *)p)[i];
}

__device__ __forceinline__ void store_elem(void *p, int dt, int64_t i, float v)
{
    if (dt == IR_BF16)
        ((__nv_bfloat16 *)p)[i] = __float2bfloat16_rn(v);
    else if (dt == IR_F16)
        ((__half *)p)[i] = __float2half_rn(v);
    else
        ((float *)p)[i] = v;
}

__device__ __forceinline__ float warp_sum(float v)
{
    for (int o = 16; o > 0; o >>= 1)
        v += __shfl_xor_sync(0xffffffffu, v, o);
    return v;
}

/* Sum (max when is_max) over the block; every thread gets the result. red holds 32 values. */
template <typename T>
__device__ T block_reduce(T v, T *red, bool is_max)
{
    int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, nw = (blockDim.x + 31) >> 5;
    for (int o = 16; o > 0; o >>= 1) {
        T u = __shfl_xor_sync(0xffffffffu, v, o);
        v = is_max ? (u > v ? u : v) : v + u;
    }
    __syncthreads();          /* red may still be read from a previous reduction */
    if (lane == 0)
        red[warp] = v;
    __syncthreads();
    T r = red[0];
    for (int w = 1; w < nw; w++)
        r = is_max ? (red[w] > r ? red[w] : r) : r + red[w];
    return r;
}

/* x = embed[token] (tp = {token, pos} in device memory). */
__global__ void bbl_embed(const int *tp, const void *embed, int dt, int64_t H, float *x)
{
    int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i < H)
        x[i] = load_elem(embed, dt, (int64_t)tp[0] * H + i);
}

/* x += add (when add is not NULL), then out = x * rsqrt(mean(x^2) + eps) * w in dtype odt. */
__global__ void bbl_add_rmsnorm(float *x, const float *add, const float *w, int64_t H, double eps,
                                void *out, int odt)
{
    __shared__ double red[32];
    double ss = 0;
    for (int64_t i = threadIdx.x; i < H; i += blockDim.x) {
        float v = x[i] + (add ? add[i] : 0.0f);
        if (add)
            x[i] = v;
        ss += (double)v * v;
    }
    ss = block_reduce<double>(ss, red, false);
    float r = (float)(1.0 / sqrt(ss / (double)H + eps));
    for (int64_t i = threadIdx.x; i < H; i += blockDim.x)
        store_elem(out, odt, i, x[i] * r * w[i]);
}

/* From qkv = [q (Q) | k (KV) | v (KV)]: block b < nh rotates query head b into q; the next nkv
 * blocks rotate key heads into the cache row pos, the last nkv copy value heads there. Angles
 * in double, as the reference forward computes them. */
__global__ void bbl_rope_append(const float *qkv, const int *tp, const float *inv_freq,
                                int64_t nh, int64_t nkv, int64_t hd, float *q, float *kc,
                                float *vc)
{
    int64_t pos = tp[1], half = hd / 2, KV = nkv * hd, b = blockIdx.x;
    const float *src;
    float *dst;
    bool rotate = true;
    if (b < nh) {
        src = qkv + b * hd;
        dst = q + b * hd;
    } else if (b < nh + nkv) {
        src = qkv + nh * hd + (b - nh) * hd;
        dst = kc + pos * KV + (b - nh) * hd;
    } else {
        src = qkv + nh * hd + KV + (b - nh - nkv) * hd;
        dst = vc + pos * KV + (b - nh - nkv) * hd;
        rotate = false;
    }
    for (int64_t i = threadIdx.x; i < half; i += blockDim.x) {
        float a = src[i], c = src[i + half];
        if (rotate) {
            double ang = (double)pos * (double)inv_freq[i], cs = cos(ang), sn = sin(ang);
            dst[i] = (float)(a * cs - c * sn);
            dst[i + half] = (float)(c * cs + a * sn);
        } else {
            dst[i] = a;
            dst[i + half] = c;
        }
    }
}

/* Attention of query head blockIdx.x over cache rows 0..pos: scores into the head's row of
 * scratch (S floats), softmax, then the weighted sum of value rows, written in dtype odt. */
__global__ void bbl_attention(const float *q, const float *kc, const float *vc, const int *tp,
                              int64_t nh, int64_t nkv, int64_t hd, float *scratch, int64_t S,
                              void *out, int odt)
{
    __shared__ float red[32];
    int64_t h = blockIdx.x, pos = tp[1], KV = nkv * hd, kvh = h / (nh / nkv);
    const float *qh = q + h * hd;
    float *sc = scratch + h * S;
    int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, nw = blockDim.x >> 5;
    float scale = (float)(1.0 / sqrt((double)hd)), mx = -INFINITY;
    for (int64_t t = warp; t <= pos; t += nw) {
        const float *kt = kc + t * KV + kvh * hd;
        float dot = 0;
        for (int64_t i = lane; i < hd; i += 32)
            dot += qh[i] * kt[i];
        dot = warp_sum(dot) * scale;
        if (lane == 0)
            sc[t] = dot;
        mx = fmaxf(mx, dot);
    }
    mx = block_reduce<float>(mx, red, true);
    float sum = 0;
    for (int64_t t = threadIdx.x; t <= pos; t += blockDim.x) {
        float p = expf(sc[t] - mx);
        sc[t] = p;
        sum += p;
    }
    sum = block_reduce<float>(sum, red, false);   /* its barriers publish sc to the block */
    for (int64_t i = threadIdx.x; i < hd; i += blockDim.x) {
        const float *v = vc + kvh * hd + i;
        float acc = 0;
        for (int64_t t = 0; t <= pos; t++)
            acc += sc[t] * v[t * KV];
        store_elem(out, odt, h * hd + i, acc / sum);
    }
}

/* out = silu(gu[0:I]) * gu[I:2I] in dtype odt. */
__global__ void bbl_silu_mul(const float *gu, int64_t I, void *out, int odt)
{
    int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i < I) {
        float g = gu[i];
        store_elem(out, odt, i, g / (1.0f + expf(-g)) * gu[I + i]);
    }
}

/* ---------------------------------------------------------------- the handle */

typedef struct {
    const float *attn_norm, *mlp_norm;
    void *wqkv, *wo, *wgu, *wd;
} dev_layer;

struct bbl {
    bbl_desc d;                  /* shapes (pointers in it are not kept) */
    int device;
    size_t esz;                  /* bytes per weight element */
    cudaDataType ctype;          /* cuBLAS type of weights and GEMM inputs */
    cudaStream_t stream;
    cudaEvent_t ev0, ev1;
    cublasHandle_t blas;
    cudaGraph_t graph;
    cudaGraphExec_t exec;
    void **allocs;
    int n_allocs, cap_allocs;
    int *tp;                     /* device {token, pos} */
    int *tp_host;                /* pinned */
    const void *embed, *lm_head;
    float *final_norm, *inv_freq;
    dev_layer *layers;
    float *x, *qkv, *q, *proj, *gu, *logits, *kc, *vc, *scratch;
    void *xn, *att, *hbuf;       /* GEMM inputs, weight dtype */
    char library[320];
};

static ir_status cuda_fail(cudaError_t e, const char *what, ir_error *err)
{
    return ir_fail(err, IR_ERR_IO, "cuda", "baseline: %s: %s (%s)", what, cudaGetErrorName(e),
                   cudaGetErrorString(e));
}

static ir_status blas_fail(cublasStatus_t s, const char *what, ir_error *err)
{
    return ir_fail(err, IR_ERR_IO, "cublas", "baseline: %s failed with cuBLAS status %d", what,
                   (int)s);
}

/* cudaMalloc tracked for bbl_free; zeroed. */
static ir_status dev_alloc(bbl *b, size_t bytes, void **out, ir_error *err)
{
    *out = NULL;
    if (b->n_allocs == b->cap_allocs) {
        int cap = b->cap_allocs ? 2 * b->cap_allocs : 64;
        void **a = (void **)realloc(b->allocs, sizeof *a * (size_t)cap);
        if (!a)
            return ir_fail(err, IR_ERR_NOMEM, "baseline", "out of memory");
        b->allocs = a;
        b->cap_allocs = cap;
    }
    cudaError_t e = cudaMalloc(out, bytes ? bytes : 16);
    if (e != cudaSuccess)
        return cuda_fail(e, "cudaMalloc", err);
    b->allocs[b->n_allocs++] = *out;
    if ((e = cudaMemset(*out, 0, bytes ? bytes : 16)) != cudaSuccess)
        return cuda_fail(e, "cudaMemset", err);
    return IR_OK;
}

/* Allocate and fill with the host bytes src. */
static ir_status upload(bbl *b, const void *src, size_t bytes, void **out, ir_error *err)
{
    ir_status s = dev_alloc(b, bytes, out, err);
    if (s != IR_OK)
        return s;
    cudaError_t e = cudaMemcpy(*out, src, bytes, cudaMemcpyHostToDevice);
    return e == cudaSuccess ? IR_OK : cuda_fail(e, "uploading weights", err);
}

/* Several host tensors stored back to back in one device allocation (fused projections). */
static ir_status upload_rows(bbl *b, const void *const *src, const size_t *bytes, int n,
                             void **out, ir_error *err)
{
    size_t total = 0;
    for (int i = 0; i < n; i++)
        total += bytes[i];
    ir_status s = dev_alloc(b, total, out, err);
    if (s != IR_OK)
        return s;
    size_t off = 0;
    for (int i = 0; i < n; i++) {
        cudaError_t e = cudaMemcpy((char *)*out + off, src[i], bytes[i], cudaMemcpyHostToDevice);
        if (e != cudaSuccess)
            return cuda_fail(e, "uploading weights", err);
        off += bytes[i];
    }
    return IR_OK;
}

/* y[rows] (fp32) = W[rows, cols] x[cols], W row major in the weight dtype, x in the same. */
static cublasStatus_t gemv(bbl *b, const void *W, int64_t rows, int64_t cols, const void *x,
                           float *y)
{
    const float one = 1.0f, zero = 0.0f;
    return blas.gemm_ex(b->blas, CUBLAS_OP_T, CUBLAS_OP_N, (int)rows, 1, (int)cols, &one, W,
                        b->ctype, (int)cols, x, b->ctype, (int)cols, &zero, y, CUDA_R_32F,
                        (int)rows, CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT);
}

/* Enqueue one decode step on b->stream (captured into the graph, or run once to warm up). */
static ir_status enqueue_step(bbl *b, ir_error *err)
{
    const bbl_desc *d = &b->d;
    int64_t H = d->H, Q = d->nh * d->hd, KV = d->nkv * d->hd, I = d->I, S = d->S;
    int wdt = d->wdtype;
    cudaStream_t st = b->stream;
    cublasStatus_t bs;
#define GEMV(W, rows, cols, x, y, what)                                               \
    if ((bs = gemv(b, W, rows, cols, x, y)) != CUBLAS_STATUS_SUCCESS)                 \
        return blas_fail(bs, "cublasGemmEx (" what ")", err)

    bbl_embed<<<(unsigned)((H + 255) / 256), 256, 0, st>>>(b->tp, b->embed, d->embed_dtype, H, b->x);
    for (int64_t l = 0; l < d->L; l++) {
        const dev_layer *w = &b->layers[l];
        bbl_add_rmsnorm<<<1, BBL_NORM_THREADS, 0, st>>>(b->x, l ? b->proj : NULL, w->attn_norm, H,
                                                        d->eps, b->xn, wdt);
        GEMV(w->wqkv, Q + 2 * KV, H, b->xn, b->qkv, "q/k/v");
        bbl_rope_append<<<(unsigned)(d->nh + 2 * d->nkv), 64, 0, st>>>(
            b->qkv, b->tp, b->inv_freq, d->nh, d->nkv, d->hd, b->q, b->kc + l * S * KV,
            b->vc + l * S * KV);
        bbl_attention<<<(unsigned)d->nh, BBL_ATT_THREADS, 0, st>>>(
            b->q, b->kc + l * S * KV, b->vc + l * S * KV, b->tp, d->nh, d->nkv, d->hd, b->scratch,
            S, b->att, wdt);
        GEMV(w->wo, H, Q, b->att, b->proj, "o");
        bbl_add_rmsnorm<<<1, BBL_NORM_THREADS, 0, st>>>(b->x, b->proj, w->mlp_norm, H, d->eps,
                                                        b->xn, wdt);
        GEMV(w->wgu, 2 * I, H, b->xn, b->gu, "gate/up");
        bbl_silu_mul<<<(unsigned)((I + 255) / 256), 256, 0, st>>>(b->gu, I, b->hbuf, wdt);
        GEMV(w->wd, H, I, b->hbuf, b->proj, "down");
    }
    bbl_add_rmsnorm<<<1, BBL_NORM_THREADS, 0, st>>>(b->x, d->L ? b->proj : NULL, b->final_norm, H,
                                                    d->eps, b->xn, wdt);
    GEMV(b->lm_head, d->V, H, b->xn, b->logits, "lm_head");
#undef GEMV
    cudaError_t e = cudaGetLastError();
    return e == cudaSuccess ? IR_OK : cuda_fail(e, "a baseline kernel launch", err);
}

static size_t dtype_size(int dt)
{
    return dt == IR_F32 ? 4 : dt == IR_F16 || dt == IR_BF16 ? 2 : 0;
}

extern "C" void bbl_free(bbl *b)
{
    if (!b)
        return;
    if (b->exec)
        cudaGraphExecDestroy(b->exec);
    if (b->graph)
        cudaGraphDestroy(b->graph);
    if (b->blas && blas.destroy)
        blas.destroy(b->blas);
    for (int i = 0; i < b->n_allocs; i++)
        cudaFree(b->allocs[i]);
    if (b->tp_host)
        cudaFreeHost(b->tp_host);
    if (b->ev0)
        cudaEventDestroy(b->ev0);
    if (b->ev1)
        cudaEventDestroy(b->ev1);
    if (b->stream)
        cudaStreamDestroy(b->stream);
    free(b->allocs);
    free(b->layers);
    free(b);
}

extern "C" const char *bbl_library(const bbl *b)
{
    return b->library;
}

extern "C" ir_status bbl_new(const bbl_desc *d, int device, bbl **out, ir_error *err)
{
    *out = NULL;
    pthread_once(&blas_once, blas_load);
    if (!blas.gemm_ex)
        return ir_fail(err, IR_ERR_UNSUPPORTED, "cublas", "%s", blas.why);
    size_t esz = dtype_size(d->wdtype);
    if (!esz || !dtype_size(d->embed_dtype))
        return ir_fail(err, IR_ERR_UNSUPPORTED, "baseline", "weights must be F32, F16 or BF16 "
                       "(projections %s, embedding %s)", ir_dtype_name((ir_dtype)d->wdtype),
                       ir_dtype_name((ir_dtype)d->embed_dtype));
    if (d->nh % d->nkv || d->hd % 2 || d->S < 1 || d->H * 4 > ((int64_t)1 << 31) ||
        d->V > INT32_MAX || d->I * 2 > INT32_MAX || d->nh * d->hd + 2 * d->nkv * d->hd > INT32_MAX)
        return ir_fail(err, IR_ERR_UNSUPPORTED, "baseline", "shape outside what the baseline "
                       "runs (GQA groups, even head_dim, dims that fit int)");
    bbl *b = (bbl *)calloc(1, sizeof *b);
    if (!b)
        return ir_fail(err, IR_ERR_NOMEM, "baseline", "out of memory");
    b->d = *d;
    b->device = device;
    b->esz = esz;
    b->ctype = d->wdtype == IR_BF16 ? CUDA_R_16BF : d->wdtype == IR_F16 ? CUDA_R_16F : CUDA_R_32F;
    int64_t H = d->H, Q = d->nh * d->hd, KV = d->nkv * d->hd, I = d->I, V = d->V, S = d->S;
    int64_t L = d->L;
    ir_status s = IR_OK;
    cudaError_t e;
    cublasStatus_t bs;
    void *p;
#define TRY(x) do { if ((s = (x)) != IR_OK) goto fail; } while (0)
#define CU(x, what) do { if ((e = (x)) != cudaSuccess) { s = cuda_fail(e, what, err); goto fail; } } while (0)
    CU(cudaSetDevice(device), "cudaSetDevice");
    CU(cudaStreamCreateWithFlags(&b->stream, cudaStreamNonBlocking), "cudaStreamCreate");
    CU(cudaEventCreate(&b->ev0), "cudaEventCreate");
    CU(cudaEventCreate(&b->ev1), "cudaEventCreate");
    CU(cudaMallocHost((void **)&b->tp_host, 2 * sizeof(int)), "cudaMallocHost");
    if ((bs = blas.create(&b->blas)) != CUBLAS_STATUS_SUCCESS) {
        b->blas = NULL;
        s = blas_fail(bs, "cublasCreate", err);
        goto fail;
    }
    {
        int ver = 0;
        blas.get_version(b->blas, &ver);
        snprintf(b->library, sizeof b->library, "cuBLAS %d (%s)", ver, blas.name);
    }
    if ((bs = blas.set_stream(b->blas, b->stream)) != CUBLAS_STATUS_SUCCESS) {
        s = blas_fail(bs, "cublasSetStream", err);
        goto fail;
    }
    TRY(dev_alloc(b, BBL_WORKSPACE, &p, err));
    if ((bs = blas.set_workspace(b->blas, p, BBL_WORKSPACE)) != CUBLAS_STATUS_SUCCESS) {
        s = blas_fail(bs, "cublasSetWorkspace", err);
        goto fail;
    }

    /* weights: one copy of each tensor; q/k/v and gate/up stored back to back */
    TRY(upload(b, d->embed, (size_t)(V * H) * dtype_size(d->embed_dtype), &p, err));
    b->embed = p;
    if (d->lm_head == d->embed && d->wdtype == d->embed_dtype) {
        b->lm_head = b->embed;
    } else {
        TRY(upload(b, d->lm_head, (size_t)(V * H) * esz, &p, err));
        b->lm_head = p;
    }
    TRY(upload(b, d->final_norm, (size_t)H * 4, &p, err));
    b->final_norm = (float *)p;
    TRY(upload(b, d->inv_freq, (size_t)(d->hd / 2) * 4, &p, err));
    b->inv_freq = (float *)p;
    if (!(b->layers = (dev_layer *)calloc((size_t)(L ? L : 1), sizeof *b->layers))) {
        s = ir_fail(err, IR_ERR_NOMEM, "baseline", "out of memory");
        goto fail;
    }
    for (int64_t l = 0; l < L; l++) {
        const bbl_layer *h = &d->layers[l];
        dev_layer *w = &b->layers[l];
        TRY(upload(b, h->attn_norm, (size_t)H * 4, &p, err));
        w->attn_norm = (float *)p;
        TRY(upload(b, h->mlp_norm, (size_t)H * 4, &p, err));
        w->mlp_norm = (float *)p;
        const void *qkv[3] = {h->wq, h->wk, h->wv};
        size_t qkv_b[3] = {(size_t)(Q * H) * esz, (size_t)(KV * H) * esz, (size_t)(KV * H) * esz};
        TRY(upload_rows(b, qkv, qkv_b, 3, &w->wqkv, err));
        TRY(upload(b, h->wo, (size_t)(H * Q) * esz, &w->wo, err));
        const void *gu[2] = {h->wg, h->wu};
        size_t gu_b[2] = {(size_t)(I * H) * esz, (size_t)(I * H) * esz};
        TRY(upload_rows(b, gu, gu_b, 2, &w->wgu, err));
        TRY(upload(b, h->wd, (size_t)(H * I) * esz, &w->wd, err));
    }

    /* activations, KV caches, attention scratch */
    TRY(dev_alloc(b, 2 * sizeof(int), &p, err));
    b->tp = (int *)p;
    TRY(dev_alloc(b, (size_t)H * 4, &p, err));
    b->x = (float *)p;
    TRY(dev_alloc(b, (size_t)H * esz, &b->xn, err));
    TRY(dev_alloc(b, (size_t)(Q + 2 * KV) * 4, &p, err));
    b->qkv = (float *)p;
    TRY(dev_alloc(b, (size_t)Q * 4, &p, err));
    b->q = (float *)p;
    TRY(dev_alloc(b, (size_t)Q * esz, &b->att, err));
    TRY(dev_alloc(b, (size_t)H * 4, &p, err));
    b->proj = (float *)p;
    TRY(dev_alloc(b, (size_t)(2 * I) * 4, &p, err));
    b->gu = (float *)p;
    TRY(dev_alloc(b, (size_t)I * esz, &b->hbuf, err));
    TRY(dev_alloc(b, (size_t)V * 4, &p, err));
    b->logits = (float *)p;
    TRY(dev_alloc(b, (size_t)(L * S * KV) * 4, &p, err));
    b->kc = (float *)p;
    TRY(dev_alloc(b, (size_t)(L * S * KV) * 4, &p, err));
    b->vc = (float *)p;
    TRY(dev_alloc(b, (size_t)(d->nh * S) * 4, &p, err));
    b->scratch = (float *)p;

    /* one step outside the graph (token 0, pos 0: rewritten by the first real step), so cuBLAS
     * has picked and loaded its kernels before the capture, then the capture itself */
    TRY(enqueue_step(b, err));
    CU(cudaStreamSynchronize(b->stream), "the warm-up step");
    CU(cudaStreamBeginCapture(b->stream, cudaStreamCaptureModeThreadLocal), "cudaStreamBeginCapture");
    s = enqueue_step(b, err);
    e = cudaStreamEndCapture(b->stream, &b->graph);
    if (s != IR_OK)
        goto fail;
    if (e != cudaSuccess) {
        s = cuda_fail(e, "cudaStreamEndCapture", err);
        goto fail;
    }
    CU(cudaGraphInstantiate(&b->exec, b->graph, 0), "cudaGraphInstantiate");
#undef TRY
#undef CU
    *out = b;
    return IR_OK;
fail:
    cudaGetLastError();
    bbl_free(b);
    return s;
}

extern "C" ir_status bbl_step(bbl *b, int32_t token, int64_t pos, float *logits, double *ms,
                              ir_error *err)
{
    *ms = 0;
    if (pos < 0 || pos >= b->d.S)
        return ir_fail(err, IR_ERR_MALFORMED, "pos", "%lld outside the baseline's cache [0, %lld)",
                       (long long)pos, (long long)b->d.S);
    if (token < 0 || token >= b->d.V)
        return ir_fail(err, IR_ERR_MALFORMED, "token", "%d outside the vocabulary [0, %lld)",
                       token, (long long)b->d.V);
    cudaError_t e;
    b->tp_host[0] = token;
    b->tp_host[1] = (int)pos;
    if ((e = cudaMemcpyAsync(b->tp, b->tp_host, 2 * sizeof(int), cudaMemcpyHostToDevice,
                             b->stream)) != cudaSuccess)
        return cuda_fail(e, "writing token and position", err);
    if ((e = cudaEventRecord(b->ev0, b->stream)) != cudaSuccess ||
        (e = cudaGraphLaunch(b->exec, b->stream)) != cudaSuccess ||
        (e = cudaEventRecord(b->ev1, b->stream)) != cudaSuccess)
        return cuda_fail(e, "the graph launch", err);
    if (logits && (e = cudaMemcpyAsync(logits, b->logits, (size_t)b->d.V * sizeof(float),
                                       cudaMemcpyDeviceToHost, b->stream)) != cudaSuccess)
        return cuda_fail(e, "reading the logits", err);
    if ((e = cudaStreamSynchronize(b->stream)) != cudaSuccess)
        return cuda_fail(e, "the baseline step", err);
    float t = 0;
    if ((e = cudaEventElapsedTime(&t, b->ev0, b->ev1)) != cudaSuccess)
        return cuda_fail(e, "cudaEventElapsedTime", err);
    *ms = t;
    return IR_OK;
}
