/*
 * mk_kernel.cu - the device half of the megakernel: one persistent cooperative launch in which
 * block b runs queue b of the launch plan (SPEC.md 3.3 and 15), the ops of SPEC.md 5 in fp32
 * with weights read as f32, bf16 or f16, and the watchdog that ends a launch whose wait never
 * comes true. Also the few CUDA calls the host half (mk_load.c) needs, behind plain C wrappers.
 *
 * Ordering: a finished task's writes are published by a block barrier, then a release add on
 * its counter by thread 0; a waiting block's pollers (lane 0 of its first warps) read the
 * counters with acquire loads (never hoisted: inline PTX with a memory clobber), the first to see
 * every wait hold records the verdict in SMEM, and a block barrier releases the block.
 * Activations written in this launch are read with ordinary loads; only weights, read-only for
 * the whole launch, use the non-coherent path.
 */
#include <cuda_fp16.h>
#include <cuda_runtime.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

extern "C" {
#include "base/base.h"
#include "megakernel/mk_internal.h"
}

#define MK_MAX_THREADS 512             /* register budget: 128 per thread; plans above are refused at load */
#define MK_MAX_HD BASE_MAX_KERNEL_HEAD_DIM  /* attention head_dim held in registers (8 per lane) */

/* ---------------------------------------------------------------- memory-model helpers */

__device__ __forceinline__ unsigned ld_acquire_u32(const unsigned *p)
{
    unsigned v;
    asm volatile("ld.acquire.gpu.global.u32 %0, [%1];" : "=r"(v) : "l"(p) : "memory");
    return v;
}

__device__ __forceinline__ void red_release_add(unsigned *p, unsigned v)
{
    asm volatile("red.release.gpu.global.add.u32 [%0], %1;" ::"l"(p), "r"(v) : "memory");
}

__device__ __forceinline__ uint4 ld_weight16(const void *p)
{
    uint4 r;
    asm("ld.global.nc.L1::no_allocate.v4.u32 {%0, %1, %2, %3}, [%4];"
        : "=r"(r.x), "=r"(r.y), "=r"(r.z), "=r"(r.w)
        : "l"(p));
    return r;
}

__device__ __forceinline__ unsigned long long global_ns()
{
    unsigned long long t;
    asm volatile("mov.u64 %0, %%globaltimer;" : "=l"(t));
    return t;
}

__device__ __forceinline__ int64_t pexpr_eval(const mk_pexpr &e, int64_t pos)
{
    __int128 v = (__int128)e.mul * pos + e.add;
    if (v < e.lo)
        v = e.lo;
    if (v > e.hi)
        v = e.hi;
    return (int64_t)v;
}

/* ---------------------------------------------------------------- number formats */

__device__ __forceinline__ float bf16_lo(unsigned u) { return __uint_as_float(u << 16); }
__device__ __forceinline__ float bf16_hi(unsigned u) { return __uint_as_float(u & 0xffff0000u); }
__device__ __forceinline__ float f16_lo(unsigned u)
{
    return __half2float(__ushort_as_half((unsigned short)(u & 0xffffu)));
}
__device__ __forceinline__ float f16_hi(unsigned u)
{
    return __half2float(__ushort_as_half((unsigned short)(u >> 16)));
}

/* Element i of a weight (or any) buffer of dtype dt, as fp32. */
__device__ __forceinline__ float load_elem(const void *p, int dt, int64_t i)
{
    switch (dt) {
    case IR_BF16: return __uint_as_float((unsigned)((const unsigned short *)p)[i] << 16);
    case IR_F16: return __half2float(((const __half *)p)[i]);
    case IR_I32: return (float)((const int *)p)[i];
    default: return ((const float *)p)[i];                                            /* F32 */
    }
}

/* ---------------------------------------------------------------- block reductions */

__device__ __forceinline__ float warp_sum(float v)
{
    for (int o = 16; o; o >>= 1)
        v += __shfl_xor_sync(0xffffffffu, v, o);
    return v;
}

__device__ __forceinline__ float warp_max(float v)
{
    for (int o = 16; o; o >>= 1)
        v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
    return v;
}

__device__ __forceinline__ double warp_sum_d(double v)
{
    for (int o = 16; o; o >>= 1)
        v += __shfl_xor_sync(0xffffffffu, v, o);
    return v;
}

__device__ double block_sum_d(double v, double *red)
{
    v = warp_sum_d(v);
    int w = threadIdx.x >> 5, nw = blockDim.x >> 5;
    __syncthreads();
    if ((threadIdx.x & 31) == 0)
        red[w] = v;
    __syncthreads();
    double t = 0;
    for (int i = 0; i < nw; i++)
        t += red[i];
    return t;
}

/* silu(a) * b of SILU_MUL and FUSED recipe 4. */
__device__ __forceinline__ float silu_mul(float a, float b) { return a / (1.f + expf(-a)) * b; }
/* The same with the fast exponential and division (a few ulp): recipe 4's GEMV computes it for
 * every weight vector inside its load loop, where the exact division and expf cost 3% of a
 * token (H200). Large negative a: the division by inf gives 0, silu's limit. */
__device__ __forceinline__ float silu_mul_fast(float a, float b)
{
    return __fdividef(a, 1.f + __expf(-a)) * b;
}

/* ---------------------------------------------------------------- ops */

struct mk_stream;

struct op_env {
    const mk_task *t;
    const mk_buf *bufs;         /* SMEM: the task's inputs (0-7), then its outputs (8-11) */
    int64_t pos;
    double *red_d;
    float *red_f;
    int *red_i;
    float *part;
    float *xs;                  /* MK_XS floats: a fused GEMV's prepared input */
    const double *rope_cs;      /* the launch's RoPE table (MK_F_ROPE_TABLE tasks), or NULL */
    const mk_launch *L;
    mk_stream *ws;              /* the block's weight stream (MK_F_STREAM tasks) */
    float *xa;                  /* a streamed tile's input vector (dynamic SMEM) */
    unsigned char *ring;        /* the stream's slots (dynamic SMEM) */
    int qi;                     /* this task's queue index */
    __device__ int64_t ip(int k) const { return pexpr_eval(t->ip[k], pos); }
    __device__ const mk_buf &in(int k) const { return bufs[k]; }
    __device__ const mk_buf &out(int k) const { return bufs[8 + k]; }
};

/* One 16-byte weight vector (element type DT) times its x elements, fp32: a holds the first
 * four, b the next four (16-bit weights only), summed in element order. */
template <int DT>
__device__ __forceinline__ float vec_dot(const uint4 &w, const float4 &a, const float4 &b)
{
    const unsigned u[4] = {w.x, w.y, w.z, w.w};
    const float xv[8] = {a.x, a.y, a.z, a.w, b.x, b.y, b.z, b.w};
    float s = 0.f;
#pragma unroll
    for (int i = 0; i < 4; i++) {
        if (DT == 0)
            s += __uint_as_float(u[i]) * xv[i];
        else if (DT == 2)
            s += bf16_lo(u[i]) * xv[2 * i] + bf16_hi(u[i]) * xv[2 * i + 1];
        else
            s += f16_lo(u[i]) * xv[2 * i] + f16_hi(u[i]) * xv[2 * i + 1];
    }
    return s;
}

/* Where a GEMV reads its input vector x: element k (at), and the 4 (f32 weights, EPV 4) or 8
 * (16-bit weights, EPV 8) elements of 16-byte weight vector c (vec; a holds the first four, b
 * the next four), used only when ok() (16-byte aligned). */
struct x_plain {                       /* x as it is in memory */
    const float *x;
    __device__ bool ok() const { return ((uintptr_t)x & 15) == 0; }
    __device__ float at(int64_t k) const { return x[k]; }
    template <int EPV>
    __device__ void vec(int64_t c, float4 &a, float4 &b) const
    {
        const float4 *p = (const float4 *)(x + c * EPV);
        a = p[0];
        b = EPV == 4 ? a : p[1];
    }
};

/* silu(a) * b, computed as it is read (FUSED recipe 4): no prepared copy, no barrier. */
struct x_silu {
    const float *a, *b;
    __device__ bool ok() const { return (((uintptr_t)a | (uintptr_t)b) & 15) == 0; }
    __device__ float at(int64_t k) const { return silu_mul_fast(a[k], b[k]); }
    template <int EPV>
    __device__ void vec(int64_t c, float4 &x0, float4 &x1) const
    {
        const float4 *pa = (const float4 *)(a + c * EPV), *pb = (const float4 *)(b + c * EPV);
        auto f = [](const float4 &u, const float4 &v) {
            return make_float4(silu_mul_fast(u.x, v.x), silu_mul_fast(u.y, v.y),
                               silu_mul_fast(u.z, v.z), silu_mul_fast(u.w, v.w));
        };
        x0 = f(pa[0], pb[0]);
        x1 = EPV == 4 ? x0 : f(pa[1], pb[1]);
    }
};

/* a[k] * g[k] (FUSED recipes 2, 3: RMS norm without its scale, which multiplies the finished
 * dot products), the gain g of element type GT, the weights' own: 16 bytes of g per weight
 * vector. Read as the tile reads it: no prepared copy, no barrier before the first weight. */
template <int GT>
struct x_norm {
    const float *a;
    const void *g;
    __device__ bool ok() const { return (((uintptr_t)a | (uintptr_t)g) & 15) == 0; }
    __device__ float at(int64_t k) const { return a[k] * load_elem(g, GT, k); }
    template <int EPV>
    __device__ void vec(int64_t c, float4 &x0, float4 &x1) const
    {
        const float4 *pa = (const float4 *)(a + c * EPV);
        const uint4 gv = __ldg((const uint4 *)g + c);
        if (EPV == 4) {                    /* f32 gain */
            x0 = pa[0];
            x0.x *= __uint_as_float(gv.x);
            x0.y *= __uint_as_float(gv.y);
            x0.z *= __uint_as_float(gv.z);
            x0.w *= __uint_as_float(gv.w);
            x1 = x0;
            return;
        }
        auto lo = [](unsigned u) { return GT == 2 ? bf16_lo(u) : f16_lo(u); };
        auto hi = [](unsigned u) { return GT == 2 ? bf16_hi(u) : f16_hi(u); };
        const float4 u = pa[0], v = pa[1];
        x0 = make_float4(u.x * lo(gv.x), u.y * hi(gv.x), u.z * lo(gv.y), u.w * hi(gv.y));
        x1 = make_float4(v.x * lo(gv.z), v.y * hi(gv.z), v.z * lo(gv.w), v.w * hi(gv.w));
    }
};

/* Dot products of R rows of W (element type DT) with x over 16-byte vectors [c0, c1). Each lane
 * keeps 2*R independent 16-byte weight loads in flight. */
template <int DT, int R, class XL>
__device__ __forceinline__ void dot_rows(const char *const *row, const XL &xl, int64_t c0,
                                         int64_t c1, float *acc)
{
    auto ldw = [&](int r, int64_t off) { return ld_weight16(row[r] + off); };
    constexpr int EPV = DT == 0 ? 4 : 8;
    auto fma_vec = [&](const uint4 &w, const float4 *xv) { return vec_dot<DT>(w, xv[0], xv[1]); };
    int64_t c = c0;
    for (; c + 32 < c1; c += 64) {
        uint4 w0[R], w1[R];
#pragma unroll
        for (int r = 0; r < R; r++) {
            w0[r] = ldw(r, c * 16);
            w1[r] = ldw(r, (c + 32) * 16);
        }
        float4 x0[2], x1[2];
        xl.template vec<EPV>(c, x0[0], x0[1]);
        xl.template vec<EPV>(c + 32, x1[0], x1[1]);
#pragma unroll
        for (int r = 0; r < R; r++)
            acc[r] += fma_vec(w0[r], x0) + fma_vec(w1[r], x1);
    }
    if (c < c1) {
        float4 x0[2];
        xl.template vec<EPV>(c, x0[0], x0[1]);
#pragma unroll
        for (int r = 0; r < R; r++)
            acc[r] += fma_vec(ldw(r, c * 16), x0);
    }
}

#define MK_PART 4608   /* floats of SMEM scratch: split-K sums, attention states, RoPE table */

/* rsqrt(mean(x[0..n)^2) + eps) as RMSNORM computes it (sum of squares in double), for the
 * whole block. */
__device__ float rms_scale(const op_env &e, const float *x, int64_t n)
{
    double ss = 0;
    for (int64_t i = threadIdx.x; i < n; i += blockDim.x)
        ss += (double)x[i] * x[i];
    ss = block_sum_d(ss, e.red_d);
    return (float)(1.0 / sqrt(ss / (double)n + e.t->rp[MK_R_EPS]));
}

/* x[at(i)] = a[i] * r * g[i] for i < K, r = rsqrt(mean(a^2) + eps) as RMSNORM computes it (sum
 * of squares in double, in rms_scale's order), a and g loaded once in one pass: K is at most
 * four elements per thread. */
template <class At>
__device__ void norm_prep(const op_env &e, const float *a, const mk_buf &g, int64_t K, float *x,
                          At at)
{
    constexpr int E = 4;
    float av[E], gv[E];
    double ss = 0;
#pragma unroll
    for (int k = 0; k < E; k++) {
        const int64_t i = threadIdx.x + (int64_t)k * blockDim.x;
        av[k] = i < K ? a[i] : 0.f;
        gv[k] = i < K ? load_elem(g.ptr, g.dtype, i) : 0.f;
    }
#pragma unroll
    for (int k = 0; k < E; k++)
        if (threadIdx.x + (int64_t)k * blockDim.x < K)
            ss += (double)av[k] * av[k];
    ss = block_sum_d(ss, e.red_d);
    /* double rsqrt (not 1 / sqrt: two slow-path calls on the critical path), then fp32 */
    const float r = (float)rsqrt(ss / (double)K + e.t->rp[MK_R_EPS]);
#pragma unroll
    for (int k = 0; k < E; k++) {
        const int64_t i = threadIdx.x + (int64_t)k * blockDim.x;
        if (i < K)
            x[at(i)] = av[k] * r * gv[k];
    }
}

#define MK_GEMV_R 4   /* rows per warp work item */

/* K slices per row group of a tile of nt rows: a tile with fewer row groups than warps splits
 * K so that every warp streams, as far as the slices' partial sums fit in cap floats. The
 * divisions here and in gemv_rows are 32-bit (ksplit > 1 only when groups < nw <= 32): a
 * 64-bit one is a called routine on the path of every tile. */
__device__ __forceinline__ int64_t gemv_ksplit(int64_t nt, int nw, int64_t cap)
{
    const int64_t groups = (nt + MK_GEMV_R - 1) / MK_GEMV_R;
    int64_t ksplit = 1;
    if (groups < nw) {
        ksplit = nw / (int)groups;
        while (ksplit > 1 && ksplit * groups * MK_GEMV_R > cap)
            ksplit--;
    }
    return ksplit;
}

/* Row i's sum over the ksplit K slices of a split tile, slice ks's partial at p[ks * stride + i],
 * added in slice order (deterministic). */
__device__ __forceinline__ float slice_sum(const float *p, int64_t stride, int64_t ksplit,
                                           int64_t i)
{
    float s = 0.f;
    for (int64_t ks = 0; ks < ksplit; ks++)
        s += p[ks * stride + i];
    return s;
}

/* y[n] = x . W[n, :] (+ bias[n]) for n in [n0, n1), x read through xl (added to y when
 * accum). Work items are (group of R rows, slice of K): a tile with fewer row groups than warps
 * splits K so that every warp streams; the slices' partial sums meet in SMEM and are added in a
 * fixed order (deterministic). DEFER: every work item's sum goes to part (slice ks, row i at
 * ks * groups * R + i, gemv_ksplit(nt, nwarps, cap) slices) and the caller adds them up after a
 * barrier; y, bias and accum are unused. */
template <int DT, bool DEFER = false, class XL>
__device__ void gemv_rows(const void *Wv, const XL &xl, float *y, int64_t K, int64_t ld,
                          int64_t n0, int64_t n1, const mk_buf *bias, float *part, bool accum,
                          int64_t cap = MK_PART)
{
    constexpr int ES = DT == 0 ? 4 : 2;
    constexpr int EPV = 16 / ES;
    constexpr int R = MK_GEMV_R;
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, nw = blockDim.x >> 5;
    const char *W = (const char *)Wv;
    const bool vec = (K % EPV) == 0 && (ld % EPV) == 0 && ((uintptr_t)W & 15) == 0 && xl.ok();
    const int64_t nt = n1 - n0, groups = (nt + R - 1) / R;
    const int64_t units = vec ? K / EPV : K;
    const int64_t ksplit = gemv_ksplit(nt, nw, cap);
    const int ks32 = (int)ksplit;
    const int64_t chunk = ks32 == 1               ? units
                          : units <= 0x7fffff00 ? (int)(units + ks32 - 1) / ks32
                                                : (units + ks32 - 1) / ks32;
    /* The bias (e.g. the residual) of the row this thread adds up, read before the dot loops:
     * its latency overlaps theirs instead of following the slices' barrier. */
    float bv = 0.f;
    if (!DEFER && ksplit > 1 && bias && threadIdx.x < nt)
        bv = load_elem(bias->ptr, bias->dtype, n0 + threadIdx.x);
    for (int64_t w = warp; w < groups * ksplit; w += nw) {
        /* ksplit > 1: fewer items than 32 * 32 */
        const int64_t g = ks32 == 1 ? w : (int)w / ks32, ks = ks32 == 1 ? 0 : (int)w % ks32;
        const int64_t r0 = n0 + g * R;
        const int64_t c0 = ks * chunk, c1 = c0 + chunk < units ? c0 + chunk : units;
        float acc[R];
        const char *row[R];
#pragma unroll
        for (int r = 0; r < R; r++) {
            acc[r] = 0.f;
            int64_t n = r0 + r < n1 ? r0 + r : n1 - 1;
            row[r] = W + n * ld * ES;
        }
        if (vec) {
            dot_rows<DT, R>(row, xl, c0 + lane, c1, acc);
        } else {
            for (int64_t k = c0 + lane; k < c1; k += 32) {
                float xk = xl.at(k);
#pragma unroll
                for (int r = 0; r < R; r++)
                    acc[r] += load_elem(row[r], DT, k) * xk;
            }
        }
#pragma unroll
        for (int r = 0; r < R; r++) {
            float s = warp_sum(acc[r]);
            if (lane == 0 && r0 + r < n1) {
                if (DEFER || ksplit > 1)
                    part[ks * groups * R + g * R + r] = s;
                else
                    y[r0 + r] = (accum ? y[r0 + r] : 0.f) +
                                (bias ? s + load_elem(bias->ptr, bias->dtype, r0 + r) : s);
            }
        }
    }
    if (!DEFER && ksplit > 1) {
        __syncthreads();
        for (int64_t i = threadIdx.x; i < nt; i += blockDim.x) {
            const float s = slice_sum(part, groups * R, ksplit, i);
            const float b = !bias ? 0.f
                            : i == threadIdx.x ? bv
                                               : load_elem(bias->ptr, bias->dtype, n0 + i);
            y[n0 + i] = (accum ? y[n0 + i] : 0.f) + (bias ? s + b : s);
        }
        __syncthreads();   /* part is reused by the next tile (FUSED runs two) */
    }
}

/* Columns [c0, c0 + len) of weight tile W (row stride ld, rows [n0, n1)) against the input
 * that xl reads (x[0, len)), by the weights' element type; added to y when accum. */
template <class XL>
__device__ void gemv_any(const mk_buf &W, const XL &xl, float *y, int64_t c0, int64_t len,
                         int64_t ld, int64_t n0, int64_t n1, const mk_buf *bias, float *part,
                         bool accum)
{
    const char *Wc = (const char *)W.ptr + c0 * (W.dtype == 0 ? 4 : 2);
    switch (W.dtype) {
    case 2: gemv_rows<2>(Wc, xl, y, len, ld, n0, n1, bias, part, accum); break;
    case 1: gemv_rows<1>(Wc, xl, y, len, ld, n0, n1, bias, part, accum); break;
    default: gemv_rows<0>(Wc, xl, y, len, ld, n0, n1, bias, part, accum); break;
    }
}

__device__ void gemv_tile(const op_env &e, int k, const float *x, float *y, const mk_buf *bias)
{
    int64_t K = e.ip(MK_P_K), nt = e.ip(MK_P_NTILE), off = e.ip(MK_P_NOFF);
    gemv_any(e.in(1 + k), x_plain{x}, y, 0, K, K, off, off + nt, bias, e.part, false);
}

/* ---------------------------------------------------------------- weight stream
 *
 * With the stream on (mk_load sets MK_F_STREAM on the GEMV-shaped tasks it can serve), a
 * block's weight tiles flow through a ring of SMEM slots filled by bulk asynchronous copies
 * (cp.async.bulk, completion counted in bytes on one mbarrier per slot). Thread 0 requests
 * chunks, whole rows of one tile per slot, in queue order and up to pipelining_depth tasks past
 * the running one, whenever a slot is free: before a task waits for its inputs and after each
 * consumed chunk. So while a block waits for a dependency its next tiles' weights are already on
 * their way. Weights are read-only for the whole launch (the proof's write_to_weight), so
 * reading them early is safe. */

struct mk_stream {
    unsigned long long full[MK_STREAM_MAX_SLOTS];   /* mbarrier per slot: its bytes landed */
    unsigned long long policy;                      /* L2 evict-first for streamed weights */
    int32_t issued, done;       /* chunks requested; chunks consumed and their slots freed */
    int32_t pslot;              /* producer: the slot of the next request */
    int32_t cslot, cphase, cpar;/* consumer: the slot of chunk `done`, its phase parity, and
                                   which half of the partial-sum scratch it uses */
    __align__(16) mk_sdesc next;/* producer: the next tile (cp.async from L.sdesc[di]) */
    int32_t di, dend;           /* that tile's index in L.sdesc, the block's end */
    const char *src;            /* next byte of the current tile */
    int32_t rb, rows_left, rpc; /* row bytes, rows still to request, rows per slot */
};

__device__ __forceinline__ unsigned smem_u32(const void *p)
{
    return (unsigned)__cvta_generic_to_shared(p);
}

__device__ __forceinline__ void mbar_wait(unsigned long long *b, unsigned parity)
{
    unsigned ok;
    do {
        asm volatile("{\n\t.reg .pred p;\n\t"
                     "mbarrier.try_wait.parity.shared::cta.b64 p, [%1], %2;\n\t"
                     "selp.u32 %0, 1, 0, p;\n\t}"
                     : "=r"(ok)
                     : "r"(smem_u32(b)), "r"(parity)
                     : "memory");
    } while (!ok);
}

/* Thread 0: fetch descriptor di of the block's tile list into s.next without waiting for it
 * (cp.async: no register holds the load, so nothing stalls until the next tile begins). */
__device__ __forceinline__ void stream_next_desc(const mk_launch &L, mk_stream &s)
{
    if (s.di >= s.dend)
        return;
    const char *g = (const char *)(L.sdesc + s.di);
    const unsigned d = smem_u32(&s.next);
    asm volatile("cp.async.ca.shared.global [%0], [%1], 16;" ::"r"(d), "l"(g) : "memory");
    asm volatile("cp.async.ca.shared.global [%0], [%1], 16;" ::"r"(d + 16), "l"(g + 16)
                 : "memory");
    asm volatile("cp.async.commit_group;" ::: "memory");
}

/* Thread 0: request chunks into free slots, tile after tile of the block's list (built by
 * mk_load in queue order), for tasks of queue index up to `upto`. The per-chunk path is plain
 * 32-bit arithmetic; the next tile's descriptor is already on its way. */
__device__ void stream_fill(const mk_launch &L, mk_stream &s, unsigned char *ring, int upto)
{
    const int NS = L.stream_slots;
    bool fenced = false;
    while (s.issued - s.done < NS) {
        if (s.rows_left == 0) {            /* the next tile */
            if (s.di >= s.dend)
                return;
            asm volatile("cp.async.wait_all;" ::: "memory");
            if (s.next.qi > upto)
                return;                    /* past the pipelining depth: later */
            s.src = s.next.src;
            s.rb = s.next.rb;
            s.rows_left = s.next.rows;
            s.rpc = (int32_t)L.stream_slot_bytes / s.rb;
            s.di++;
            stream_next_desc(L, s);
        }
        const int rows = s.rows_left < s.rpc ? s.rows_left : s.rpc;
        const unsigned bytes = (unsigned)(rows * s.rb);
        if (!fenced) {       /* the consumers' reads of freed slots before the async writes */
            asm volatile("fence.proxy.async.shared::cta;" ::: "memory");
            fenced = true;
        }
        const unsigned bar = smem_u32(&s.full[s.pslot]);
        asm volatile("mbarrier.arrive.expect_tx.shared::cta.b64 _, [%0], %1;" ::"r"(bar),
                     "r"(bytes)
                     : "memory");
        asm volatile("cp.async.bulk.shared::cluster.global.mbarrier::complete_tx::bytes"
                     ".L2::cache_hint [%0], [%1], %2, [%3], %4;" ::"r"(
                         smem_u32(ring + (size_t)s.pslot * L.stream_slot_bytes)),
                     "l"(s.src), "r"(bytes), "r"(bar), "l"(s.policy)
                     : "memory");
        s.src += bytes;
        s.rows_left -= rows;
        s.issued++;
        s.pslot = s.pslot + 1 == NS ? 0 : s.pslot + 1;
    }
}

/* A streamed tile's input vector in SMEM. With 16-bit weights a lane's 16-byte weight vector c
 * holds elements 8c..8c+7, so x is stored in two planes, elements 8c..8c+3 at float4 c of the
 * first and 8c+4..8c+7 at float4 c of the second (K/2 floats later): lanes then read
 * consecutive float4s, free of bank conflicts. With f32 weights x is stored as is. */
__device__ __forceinline__ int64_t xa_index(int64_t i, int64_t K, bool planar)
{
    return planar ? (i & 4 ? K / 2 : 0) + (i >> 3) * 4 + (i & 3) : i;
}

/* Warp-wide dot product of one SMEM row (16-byte vectors [v0, v1)) with x (SMEM, xa_index
 * layout for K = 8 * row vectors when DT is 16-bit); each lane keeps two vectors in flight. */
template <int DT>
__device__ __forceinline__ float stream_dot(const char *w, const float *x, int V, int v0, int v1)
{
    const uint4 *wv = (const uint4 *)w;
    const float4 *xa = (const float4 *)x, *xb = (const float4 *)x + V;
    auto dot = [&](const uint4 &u, int c) {
        const float4 a = xa[c];
        return vec_dot<DT>(u, a, DT == 0 ? a : xb[c]);
    };
    float acc = 0.f;
    int c = v0 + (int)(threadIdx.x & 31);
    for (; c + 32 < v1; c += 64) {
        const uint4 u0 = wv[c], u1 = wv[c + 32];
        acc += dot(u0, c) + dot(u1, c + 32);
    }
    if (c < v1)
        acc += dot(wv[c], c);
    return warp_sum(acc);
}

/* The running task's tiles, chunk by chunk in the order stream_fill requested them, against the
 * input vector x already in SMEM. A chunk holds `rows` whole rows. With at least as many rows as
 * warps, warp w takes rows w, w + nwarps, ...; with fewer, each row is split into ksplit K
 * slices, one per warp, whose sums land in SMEM and are added in a fixed order (deterministic)
 * while the next chunk runs. A chunk's work split is computed once per tile (the last chunk may
 * differ), so the per-chunk path has no division. A bias goes to the first tile. */
template <int DT>
__device__ void stream_tile(const op_env &e, const float *x, float *y, int64_t off, int nt,
                            int rb, const mk_buf *b, int &slot, int &phase, int &par)
{
    const mk_launch &L = *e.L;
    mk_stream &s = *e.ws;
    const int NS = L.stream_slots, nwarps = blockDim.x >> 5, warp = threadIdx.x >> 5;
    const int S = (int)L.stream_slot_bytes, rpc = S / rb, V = rb / 16;
    int geo = -1, ksplit = 1, rw = 0, ks = 0, v0 = 0, v1 = 0;
    for (int r0 = 0; r0 < nt; r0 += rpc) {
        const int rows = nt - r0 < rpc ? nt - r0 : rpc;
        if (rows != geo) {
            geo = rows;
            ksplit = rows < nwarps ? nwarps / rows : 1;
            rw = warp / ksplit;
            ks = warp - rw * ksplit;
            v0 = ks * V / ksplit;
            v1 = (ks + 1) * V / ksplit;
        }
        float *pp = e.part + par * 64;     /* alternate halves: the previous chunk's sums */
        /* The bias of the row this thread will finish, loaded before the wait. */
        float bv = 0.f;
        if (b && ksplit > 1 && (int)threadIdx.x < rows)
            bv = load_elem(b->ptr, b->dtype, off + r0 + threadIdx.x);
        if (L.prof && threadIdx.x == 0) {   /* profile: time spent waiting for chunks */
            const unsigned long long t = global_ns();
            mbar_wait(&s.full[slot], (unsigned)phase);
            L.prof[((size_t)blockIdx.x * MK_PROF_SLOTS + MK_PROF_CHUNK_WAIT) * 2] +=
                global_ns() - t;
        } else {
            mbar_wait(&s.full[slot], (unsigned)phase);
        }
        const char *w = (const char *)e.ring + (size_t)slot * S;
        if (ksplit > 1) {
            if (rw < rows) {
                const float sum = stream_dot<DT>(w + rw * rb, x, V, v0, v1);
                if ((threadIdx.x & 31) == 0)
                    pp[ks * rows + rw] = sum;
            }
        } else {
            for (int r = warp; r < rows; r += nwarps) {
                const float sum = stream_dot<DT>(w + r * rb, x, V, 0, V);
                if ((threadIdx.x & 31) == 0)
                    y[off + r0 + r] = b ? sum + load_elem(b->ptr, b->dtype, off + r0 + r) : sum;
            }
        }
        __syncthreads();                   /* the slot is free, pp complete */
        if (threadIdx.x == 0) {
            s.done++;
            stream_fill(L, s, e.ring, e.qi + L.pipelining_depth);
        }
        if (ksplit > 1 && (int)threadIdx.x < rows) {
            const float v = slice_sum(pp, rows, ksplit, threadIdx.x);
            y[off + r0 + threadIdx.x] = b ? v + bv : v;
        }
        if (++slot == NS) {
            slot = 0;
            phase ^= 1;
        }
        par ^= 1;
    }
}

__device__ void stream_gemv(const op_env &e, const float *x, const mk_buf *bias)
{
    mk_stream &s = *e.ws;
    int first;
    const int ntiles = mk_weight_tiles(e.t->op, &first);
    const int K = (int)e.ip(MK_P_K), nt = (int)e.ip(MK_P_NTILE);
    const int64_t off = e.ip(MK_P_NOFF);
    /* stable: thread 0 last wrote them before a block barrier */
    int slot = s.cslot, phase = s.cphase, par = s.cpar;
    for (int k = 0; k < ntiles; k++) {
        const mk_buf &W = e.in(first + k);
        float *y = (float *)e.out(k).ptr;
        const mk_buf *b = k == 0 ? bias : nullptr;
        switch (W.dtype) {
        case 2: stream_tile<2>(e, x, y, off, nt, K * 2, b, slot, phase, par); break;
        case 1: stream_tile<1>(e, x, y, off, nt, K * 2, b, slot, phase, par); break;
        default: stream_tile<0>(e, x, y, off, nt, K * 4, b, slot, phase, par); break;
        }
    }
    if (threadIdx.x == 0) {
        s.cslot = slot;
        s.cphase = phase;
        s.cpar = par;
    }
}

/* A streamed GEMV_TILE, FUSED recipe 1-4: the input vector into SMEM (copied, RMS-normalized
 * as RMSNORM computes it, or silu(a) * b), then the tiles. */
__device__ void op_stream(const op_env &e)
{
    const int op = e.t->op;
    const int64_t K = e.ip(MK_P_K);
    const float *a = (const float *)e.in(0).ptr;
    float *xa = e.xa;
    const unsigned long long t0 = e.L->prof && threadIdx.x == 0 ? global_ns() : 0;
    int first;
    mk_weight_tiles(op, &first);
    const bool planar = e.in(first).dtype != 0;   /* every tile of the task has this dtype */
    const mk_buf *bias = nullptr;
    if (op == IR_OP_GEMV_TILE || op == IR_OP_FUSED) {
        for (int64_t i = threadIdx.x; i < K; i += blockDim.x)
            xa[xa_index(i, K, planar)] = a[i];
        if (op == IR_OP_GEMV_TILE && (e.t->flags & MK_F_BIAS))
            bias = &e.in(2);
    } else if (op == MK_OP_SILU_GEMV) {
        const float *b = (const float *)e.in(1).ptr;
        for (int64_t i = threadIdx.x; i < K; i += blockDim.x)
            xa[xa_index(i, K, planar)] = silu_mul(a[i], b[i]);
    } else if (K <= 4 * (int64_t)blockDim.x) {   /* recipes 2, 3: a and g loaded once */
        norm_prep(e, a, e.in(1), K, xa, [&](int64_t i) { return xa_index(i, K, planar); });
    } else {                               /* recipes 2, 3: one pass for the sum of squares */
        const mk_buf &g = e.in(1);
        double ss = 0;
        for (int64_t i = threadIdx.x; i < K; i += blockDim.x) {
            const float v = a[i];
            xa[xa_index(i, K, planar)] = v;
            ss += (double)v * v;
        }
        ss = block_sum_d(ss, e.red_d);
        const float r = (float)(1.0 / sqrt(ss / (double)K + e.t->rp[MK_R_EPS]));
        for (int64_t i = threadIdx.x; i < K; i += blockDim.x)
            xa[xa_index(i, K, planar)] = xa[xa_index(i, K, planar)] * r * load_elem(g.ptr, g.dtype, i);
    }
    if (op != IR_OP_GEMV_TILE && op != IR_OP_FUSED && op != MK_OP_NORM_GEMV_PAIR &&
        (e.t->flags & MK_F_BIAS))
        bias = &e.in(3);
    __syncthreads();
    if (e.L->prof && threadIdx.x == 0)   /* profile: preparing the input vector */
        e.L->prof[((size_t)blockIdx.x * MK_PROF_SLOTS + MK_PROF_STREAM_PREP) * 2] +=
            global_ns() - t0;
    stream_gemv(e, xa, bias);
}

/* The ntw tiles of a FUSED recipe 2/3 task over a * g, every work item's sum left in part (tile
 * k's from part + k * cap). */
template <int DT>
__device__ void norm_tiles(const op_env &e, int ntw, int64_t K, int64_t nt, int64_t off,
                           int64_t cap)
{
    const x_norm<DT> xl = {(const float *)e.in(0).ptr, e.in(1).ptr};
    for (int k = 0; k < ntw; k++)
        gemv_rows<DT, true>(e.in(2 + k).ptr, xl, nullptr, K, K, off, off + nt, nullptr,
                            e.part + k * cap, false, cap);
}

/* FUSED recipes 2, 3 when the gain has the weights' element type (f32, f16 or bf16) and the
 * slices' sums of every tile fit in part: the tile (or pair) reads a * g as it streams (x_norm),
 * so its first weights are requested at once, not after a prepared input and its barriers.
 * Each warp then adds up its share of sum(a^2) (double, a fixed order), and after one barrier
 * y = (a * g) . W * rsqrt(mean(a^2) + eps) (+ bias on the first tile). False, with nothing
 * done, when it does not apply. */
__device__ bool norm_gemv_direct(const op_env &e, int ntw, int64_t K, int64_t nt, int64_t off,
                                 const mk_buf *bias)
{
    const int dt = e.in(1).dtype, nwarps = blockDim.x >> 5;
    if ((dt != 0 && dt != 1 && dt != 2) || e.in(2).dtype != dt ||
        (ntw == 2 && e.in(3).dtype != dt))
        return false;
    const int64_t cap = MK_PART / ntw, rows = (nt + MK_GEMV_R - 1) / MK_GEMV_R * MK_GEMV_R;
    const int64_t ksplit = gemv_ksplit(nt, nwarps, cap);
    if (ksplit * rows > cap)
        return false;
    switch (dt) {
    case 2: norm_tiles<2>(e, ntw, K, nt, off, cap); break;
    case 1: norm_tiles<1>(e, ntw, K, nt, off, cap); break;
    default: norm_tiles<0>(e, ntw, K, nt, off, cap); break;
    }
    /* this warp's share of the sum of squares, then every share in warp order */
    const float *a = (const float *)e.in(0).ptr;
    const int warp = threadIdx.x >> 5;
    double ss = 0;
    for (int64_t i = K * warp / nwarps + (threadIdx.x & 31); i < K * (warp + 1) / nwarps; i += 32)
        ss += (double)a[i] * a[i];
    ss = warp_sum_d(ss);
    if ((threadIdx.x & 31) == 0)
        e.red_d[warp] = ss;
    __syncthreads();
    ss = 0;
    for (int w = 0; w < nwarps; w++)
        ss += e.red_d[w];
    const float r = (float)rsqrt(ss / (double)K + e.t->rp[MK_R_EPS]);
    for (int k = 0; k < ntw; k++) {
        float *y = (float *)e.out(k).ptr + off;
        const float *pk = e.part + k * cap;
        const mk_buf *b = k == 0 ? bias : nullptr;
        for (int64_t i = threadIdx.x; i < nt; i += blockDim.x) {
            const float v = slice_sum(pk, rows, ksplit, i);
            y[i] = b ? v * r + load_elem(b->ptr, b->dtype, off + i) : v * r;
        }
    }
    return true;
}

/* FUSED recipes 2-4. Recipe 4 computes silu(a) * b as the tile reads it (no prepared copy, no
 * barrier). Recipes 2, 3 prepare the RMS-normalized input (y = x * rsqrt(mean(x^2) + eps) * g,
 * the sum of squares in double as RMSNORM does) in SMEM (xs), MK_XS floats at a time, the tile
 * (or tile pair) running over each chunk, later chunks adding to y. A bias goes to the first
 * tile, once. */
__device__ void op_fused_gemv(const op_env &e, int op, float *xs)
{
    const int64_t K = e.ip(MK_P_K), nt = e.ip(MK_P_NTILE), off = e.ip(MK_P_NOFF);
    const float *a = (const float *)e.in(0).ptr;
    const mk_buf &vb = e.in(1);
    const int nw = op == MK_OP_NORM_GEMV_PAIR ? 2 : 1;
    const mk_buf *bias = (e.t->flags & MK_F_BIAS) ? &e.in(3) : nullptr;
    if (op == MK_OP_SILU_GEMV) {
        gemv_any(e.in(2), x_silu{a, (const float *)vb.ptr}, (float *)e.out(0).ptr, 0, K, K, off,
                 off + nt, bias, e.part, false);
        return;
    }
    if (norm_gemv_direct(e, nw, K, nt, off, bias))
        return;
    const x_plain xp = {xs};
    if (K <= MK_XS && K <= 4 * (int64_t)blockDim.x) {   /* a and g loaded once */
        __syncthreads();                   /* the previous task is done with xs */
        norm_prep(e, a, vb, K, xs, [](int64_t i) { return i; });
        __syncthreads();
        for (int k = 0; k < nw; k++)
            gemv_any(e.in(2 + k), xp, (float *)e.out(k).ptr, 0, K, K, off, off + nt, bias,
                     e.part, false);
        return;
    }
    const float r = rms_scale(e, a, K);
    const int64_t nch = (K + MK_XS - 1) / MK_XS;
    const int64_t chunk = ((K + nch - 1) / nch + 7) / 8 * 8;
    for (int64_t c0 = 0; c0 < K; c0 += chunk) {
        const int64_t len = K - c0 < chunk ? K - c0 : chunk;
        __syncthreads();                   /* the previous chunk (or task) is done with xs */
        for (int64_t i = threadIdx.x; i < len; i += blockDim.x)
            xs[i] = a[c0 + i] * r * load_elem(vb.ptr, vb.dtype, c0 + i);
        __syncthreads();
        for (int k = 0; k < nw; k++)
            gemv_any(e.in(2 + k), xp, (float *)e.out(k).ptr, c0, len, K, off, off + nt,
                     c0 == 0 ? bias : nullptr, e.part, c0 > 0);
    }
}

__device__ void op_rmsnorm(const op_env &e)
{
    const mk_buf &xb = e.in(0), &wb = e.in(1);
    int64_t H = e.ip(MK_P_HIDDEN);
    const float *x = (const float *)xb.ptr;
    float *y = (float *)e.out(0).ptr;
    float r = rms_scale(e, x, H);
    for (int64_t i = threadIdx.x; i < H; i += blockDim.x)
        y[i] = x[i] * r * load_elem(wb.ptr, wb.dtype, i);
}

__device__ void op_embed(const op_env &e)
{
    const mk_buf &tb = e.in(1);
    int64_t H = tb.shape[1], V = tb.shape[0];
    int64_t id = (int64_t)load_elem(e.in(0).ptr, e.in(0).dtype, 0);
    if (id < 0 || id >= V)
        id = 0;   /* the host refuses such tokens before the launch */
    float *y = (float *)e.out(0).ptr;
    for (int64_t i = threadIdx.x; i < H; i += blockDim.x)
        y[i] = load_elem(tb.ptr, tb.dtype, id * H + i);
}

/* Frequency of pair i (SPEC 8.7, llama3 bands when present), rounded to fp32 as the VM does. */
__device__ double rope_freq(const mk_task *t, int64_t i, int64_t hd, double orig)
{
    double freq = pow(t->rp[MK_R_THETA], -2.0 * (double)i / (double)hd);
    if (t->flags & MK_F_LLAMA3) {
        double factor = t->rp[MK_R_FACTOR], lowf = t->rp[MK_R_LOW], highf = t->rp[MK_R_HIGH];
        double wl = 2.0 * M_PI / freq, ratio = orig / wl;
        if (ratio < lowf)
            freq /= factor;
        else if (ratio <= highf) {
            double s = (ratio - lowf) / (highf - lowf);
            freq = freq * s + freq / factor * (1.0 - s);
        }
    }
    return (double)(float)freq;
}

/* Rotate-half RoPE of the whole heads x1[0, n1) into y1 and x2[0, n2) into y2; cos and sin
 * of each of the hd/2 angles are computed once per task into SMEM (every head shares them). */
__device__ void rope_rows(const op_env &e, const float *x1, float *y1, int64_t n1,
                          const float *x2 = nullptr, float *y2 = nullptr, int64_t n2 = 0)
{
    int64_t hd = e.ip(MK_P_HEADDIM), pos = e.ip(MK_P_POS), half = hd / 2;
    double orig = (double)e.ip(MK_P_ORIGMAX);
    /* the host's table row for pos (SPEC 15.2), else one computed here into SMEM */
    const bool host = e.rope_cs && (e.t->flags & MK_F_ROPE_TABLE);
    const double *cs = host ? e.rope_cs + pos * hd : (const double *)e.part;
    const bool table = host || 2 * half <= MK_PART / 2;
    if (table && !host) {
        double *w = (double *)e.part;
        for (int64_t i = threadIdx.x; i < half; i += blockDim.x) {
            double ang = (double)pos * rope_freq(e.t, i, hd, orig);
            w[2 * i] = cos(ang);
            w[2 * i + 1] = sin(ang);
        }
        __syncthreads();
    }
    for (int64_t idx = threadIdx.x; idx < (n1 + n2) / 2; idx += blockDim.x) {
        const bool first = idx < n1 / 2;
        const int64_t r = first ? idx : idx - n1 / 2;
        const float *x = first ? x1 : x2;
        float *y = first ? y1 : y2;
        const int ri = (int)r, hf = (int)half;   /* 32-bit: a 64-bit division is a call */
        int64_t head = ri / hf, i = ri % hf, base = head * hd;
        double c, s;
        if (table) {
            c = cs[2 * i];
            s = cs[2 * i + 1];
        } else {
            double ang = (double)pos * rope_freq(e.t, i, hd, orig);
            c = cos(ang);
            s = sin(ang);
        }
        double lo = x[base + i], hi = x[base + half + i];
        y[base + i] = (float)(lo * c - hi * s);
        y[base + half + i] = (float)(hi * c + lo * s);
    }
    if (table && !host)
        __syncthreads();                     /* part is scratch for the next task */
}

__device__ void op_rope(const op_env &e)
{
    rope_rows(e, (const float *)e.in(0).ptr, (float *)e.out(0).ptr, e.in(0).numel);
}

/* FUSED recipe 5: the rotated row goes to cache row pos. */
__device__ void op_rope_append(const op_env &e)
{
    const mk_buf &cb = e.out(0);
    rope_rows(e, (const float *)e.in(0).ptr, (float *)cb.ptr + e.ip(MK_P_POS) * cb.shape[1],
              e.in(0).numel);
}

__device__ void op_kv_append(const op_env &e)
{
    const mk_buf &cb = e.out(0);
    int64_t W = cb.shape[1], pos = e.ip(MK_P_POS);
    const float *src = (const float *)e.in(0).ptr;
    float *dst = (float *)cb.ptr + pos * W;
    for (int64_t i = threadIdx.x; i < W; i += blockDim.x)
        dst[i] = src[i];
}

/* Where one attention window reads: q of query head h at q + (h - qh0) * hd, cache rows of
 * nkv*hd floats, and (FUSED recipe 6) the window's last row replaced by kn (KV head g at
 * kn + (g - g0) * hd) and vn (at vn + g * hd). */
struct attn_src {
    const float *q, *K, *V, *kn, *vn;
    int64_t qh0, g0, gn;
};

/* The end of one pass of attention_heads: the wpg warps' states of each of ngp KV heads x nhc
 * query heads (in sm, stride floats each, hg per warp) merged like flash-decoding partials
 * into o (query head (gp + gi) * group + hoff + hh for the pass's KV head gi): normalized
 * rows, or with partial the unnormalized row followed by its M and L. */
__device__ __forceinline__ void attention_merge(const float *sm, float *cw, float *ML, int64_t hd,
                                                int hdi, int64_t stride, int64_t hg, int64_t wpg,
                                                int64_t ngp, int64_t nhc, int64_t gp,
                                                int64_t group, int64_t hoff, bool partial, float *o)
{
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, nw = blockDim.x >> 5;
    /* One warp per (KV head, query head): its lanes hold the wpg warps' (m, l); M is
     * their max over non-empty states, c = exp(m - M) each one's weight, L = sum c*l. */
    for (int pr = warp; pr < (int)(ngp * nhc); pr += nw) {
        const int gi2 = pr / (int)nhc, hh = pr % (int)nhc, w = gi2 * (int)wpg + lane;
        float mw = -INFINITY, lw = 0.f;
        if (lane < wpg) {
            const float *ws = sm + ((int64_t)w * hg + hh) * stride;
            lw = ws[hd + 1];
            mw = lw > 0.f ? ws[hd] : -INFINITY;
        }
        const float M = warp_max(mw);
        const float c = M != -INFINITY && lw > 0.f ? expf(mw - M) : 0.f;
        const float L = warp_sum(c * lw);
        if (lane < wpg)
            cw[(int64_t)w * hg + hh] = c;
        if (lane == 0) {
            ML[2 * pr] = M;
            ML[2 * pr + 1] = L;
        }
    }
    __syncthreads();
    const int nhd = (int)(nhc * hd);
    for (int t = threadIdx.x; t < (int)ngp * nhd; t += blockDim.x) {
        const int gi2 = t / nhd, hh = (t % nhd) / hdi, i = t % hdi;
        const int pr = gi2 * (int)nhc + hh;
        const float M = ML[2 * pr], L = ML[2 * pr + 1];
        float sum = 0.f;
        for (int w = gi2 * (int)wpg; w < (gi2 + 1) * (int)wpg; w++)
            sum += cw[w * hg + hh] * sm[(w * hg + hh) * stride + i];
        int64_t h = (gp + gi2) * group + hoff + hh;
        if (partial) {
            float *oh = o + h * stride;
            oh[i] = sum;
            if (i == 0) {
                oh[hd] = M;          /* -inf and 0 for an empty window */
                oh[hd + 1] = L;
            }
        } else {
            o[h * hd + i] = L > 0.f ? sum / L : 0.f;
        }
    }
}

/* Attention of KV heads [g0, g0 + gn) over rows [start, start + len). Warps are dealt out to
 * KV heads (all of them at once when there are at least as many warps), and a KV head's warps
 * split its rows; each K/V row is loaded once for the HG query heads sharing it (GQA), U rows at
 * a time so that their loads are in flight together; their U x HG scores are reduced together
 * (independent shuffles) and each query head takes one online-softmax step for the U rows. Every
 * warp keeps that online softmax (running max m, sum l, unnormalized output) per query head in
 * registers; the states meet in SMEM and are merged like flash-decoding partials. KPL = head_dim
 * / 32 rounded up. */
template <int KPL>
__device__ __noinline__ void attention_heads(float *sm, const attn_src src, int64_t hd,
                                             int64_t start, int64_t len, int64_t nh, int64_t nkv,
                                             float scale, bool partial, float *o)
{
    constexpr int HG = KPL >= 8 ? 1 : 8 / KPL;   /* query heads per pass, in registers */
    constexpr int U = KPL >= 4 ? 2 : 4;          /* rows whose loads are in flight together */
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, nw = blockDim.x >> 5;
    const float *q = src.q, *K = src.K, *V = src.V;
    /* indices below are 32-bit where they divide: a 64-bit division is a called routine */
    const int64_t row = nkv * hd, group = (int)nh / (int)nkv, stride = hd + 2;
    const int64_t ga = src.g0, gb = src.g0 + src.gn;
    const int64_t gpp = src.gn < nw ? src.gn : nw;   /* KV heads per pass */
    const int64_t wpg = nw / (int)gpp;               /* warps per KV head */
    int64_t hg = HG < group ? HG : group;
    while (hg > 1 && (int64_t)nw * hg * (stride + 2) > MK_PART)
        hg--;
    /* after the warps' states: per (warp, head) merge weights, per (KV head, head) M and L */
    float *cw = sm + (int64_t)nw * hg * stride, *ML = cw + (int64_t)nw * hg;
    for (int64_t gp = ga; gp < gb; gp += gpp)
        for (int64_t hoff = 0; hoff < group; hoff += hg) {
            const int64_t gi = warp / (int)wpg, slice = warp % (int)wpg, g = gp + gi;
            const bool active = gi < gpp && g < gb;
            const int64_t h0 = g * group + hoff;
            const int64_t nhc = group - hoff < hg ? group - hoff : hg;
            float qv[HG][KPL], acc[HG][KPL], m[HG], l[HG];
#pragma unroll
            for (int hh = 0; hh < HG; hh++) {
                m[hh] = -INFINITY;
                l[hh] = 0.f;
#pragma unroll
                for (int k = 0; k < KPL; k++) {
                    int64_t i = lane + 32 * k;
                    qv[hh][k] = active && hh < nhc && i < hd ? q[(h0 + hh - src.qh0) * hd + i] : 0.f;
                    acc[hh][k] = 0.f;
                }
            }
            /* rows and columns as 32-bit ints (a window is at most 2^31 rows), which keeps the
             * row loop within the register budget */
            const int n = (int)len, hdi = (int)hd, step = (int)(wpg * U);
            const float *Kg = K + start * row + g * hd, *Vg = V + start * row + g * hd;
            for (int j0 = active ? (int)slice : n; j0 < n; j0 += step) {
                float kv[U][KPL], vv[U][KPL];
#pragma unroll
                for (int u = 0; u < U; u++) {
                    const int j = j0 + u * (int)wpg;
                    const bool fresh = src.kn && j == n - 1;
                    const float *kr = fresh ? src.kn + (g - src.g0) * hd : Kg + (int64_t)j * row;
                    const float *vr = fresh ? src.vn + g * hd : Vg + (int64_t)j * row;
#pragma unroll
                    for (int k = 0; k < KPL; k++) {
                        const int i = lane + 32 * k;
                        bool in = j < n && i < hdi;
                        kv[u][k] = in ? kr[i] : 0.f;
                        vv[u][k] = in ? vr[i] : 0.f;
                    }
                }
                /* the U x HG scores reduced together (independent shuffles in flight), then
                 * one online-softmax step per head for the U rows */
                float sc[U][HG];
#pragma unroll
                for (int u = 0; u < U; u++)
#pragma unroll
                    for (int hh = 0; hh < HG; hh++) {
                        float d = 0.f;
#pragma unroll
                        for (int k = 0; k < KPL; k++)
                            d += qv[hh][k] * kv[u][k];
                        sc[u][hh] = d;
                    }
#pragma unroll
                for (int off = 16; off; off >>= 1)
#pragma unroll
                    for (int u = 0; u < U; u++)
#pragma unroll
                        for (int hh = 0; hh < HG; hh++)
                            sc[u][hh] += __shfl_xor_sync(0xffffffffu, sc[u][hh], off);
#pragma unroll
                for (int hh = 0; hh < HG; hh++) {
                    float mn = m[hh];
#pragma unroll
                    for (int u = 0; u < U; u++) {
                        sc[u][hh] = j0 + u * (int)wpg < n ? scale * sc[u][hh] : -INFINITY;
                        mn = fmaxf(mn, sc[u][hh]);
                    }
                    const float c = __expf(m[hh] - mn);   /* m = -inf: 0 (mn is finite) */
                    float ls = l[hh] * c;
#pragma unroll
                    for (int k = 0; k < KPL; k++)
                        acc[hh][k] *= c;
#pragma unroll
                    for (int u = 0; u < U; u++) {
                        const float p = __expf(sc[u][hh] - mn);   /* a row past n: 0 */
                        ls += p;
#pragma unroll
                        for (int k = 0; k < KPL; k++)
                            acc[hh][k] += p * vv[u][k];
                    }
                    l[hh] = ls;
                    m[hh] = mn;
                }
            }
            __syncthreads();                 /* sm may hold the previous pass */
            if (active)
                for (int hh = 0; hh < nhc; hh++) {
                    float *w = sm + ((int64_t)warp * hg + hh) * stride;
#pragma unroll
                    for (int k = 0; k < KPL; k++) {
                        int64_t i = lane + 32 * k;
                        if (i < hd)
                            w[i] = acc[hh][k];
                    }
                    if (lane == 0) {
                        w[hd] = m[hh];
                        w[hd + 1] = l[hh];
                    }
                }
            __syncthreads();
            const int64_t ngp = gb - gp < gpp ? gb - gp : gpp;
            attention_merge(sm, cw, ML, hd, hdi, stride, hg, wpg, ngp, nhc, gp, group, hoff,
                            partial, o);
        }
}

__device__ void attention_window(const op_env &e, const attn_src &src, int64_t start,
                                 int64_t len, bool partial, float *o)
{
    int64_t hd = e.ip(MK_P_HEADDIM), nh = e.ip(MK_P_NHEADS), nkv = e.ip(MK_P_NKV);
    float scale = (float)e.t->rp[MK_R_SCALE];
    if (hd <= 32)
        attention_heads<1>(e.part, src, hd, start, len, nh, nkv, scale, partial, o);
    else if (hd <= 64)
        attention_heads<2>(e.part, src, hd, start, len, nh, nkv, scale, partial, o);
    else if (hd <= 128)
        attention_heads<4>(e.part, src, hd, start, len, nh, nkv, scale, partial, o);
    else
        attention_heads<8>(e.part, src, hd, start, len, nh, nkv, scale, partial, o);
}

__device__ void op_attention(const op_env &e)
{
    int64_t hd = e.ip(MK_P_HEADDIM), nh = e.ip(MK_P_NHEADS);
    bool partial = e.t->flags & MK_F_PARTIAL;
    int64_t moff = partial ? e.ip(MK_P_MOFF) : 0;
    float *o = (float *)e.out(0).ptr + (partial ? moff * nh * (hd + 2) : 0);
    attn_src src = {(const float *)e.in(0).ptr, (const float *)e.in(1).ptr,
                    (const float *)e.in(2).ptr, nullptr, nullptr, 0, e.ip(MK_P_KVHOFF),
                    e.ip(MK_P_KVHEADS)};
    attention_window(e, src, e.ip(MK_P_KVSTART), e.ip(MK_P_KVLEN), partial, o);
}

/* FUSED recipe 6: the range's query heads and keys rotated into xs, then attention over cache
 * rows [0, pos) with row pos taken from xs (keys) and v. */
__device__ void op_rope_attention(const op_env &e, float *xs)
{
    int64_t hd = e.ip(MK_P_HEADDIM), nh = e.ip(MK_P_NHEADS), nkv = e.ip(MK_P_NKV);
    int64_t g0 = e.ip(MK_P_KVHOFF), gn = e.ip(MK_P_KVHEADS), group = nh / nkv;
    int64_t qh0 = g0 * group, nq = gn * group * hd;
    rope_rows(e, (const float *)e.in(0).ptr + qh0 * hd, xs, nq,
              (const float *)e.in(1).ptr + g0 * hd, xs + nq, gn * hd);
    __syncthreads();                         /* without a table rope_rows ends unsynchronized */
    attn_src src = {xs, (const float *)e.in(3).ptr, (const float *)e.in(4).ptr, xs + nq,
                    (const float *)e.in(2).ptr, qh0, g0, gn};
    attention_window(e, src, 0, e.ip(MK_P_POS) + 1, false, (float *)e.out(0).ptr);
    __syncthreads();                         /* xs is the next task's */
}

/* Flash-decoding merge of the partial rows (SPEC 5): one warp per head. */
__device__ void op_attention_combine(const op_env &e)
{
    int64_t hd = e.ip(MK_P_HEADDIM), nh = e.ip(MK_P_NHEADS);
    const mk_buf &pb = e.in(0);
    int64_t nb = pb.shape[0], rw = nh * (hd + 2);
    const float *P = (const float *)pb.ptr;
    float *o = (float *)e.out(0).ptr;
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, nw = blockDim.x >> 5;
    for (int64_t h = warp; h < nh; h += nw) {
        float M = -INFINITY;
        for (int64_t b = lane; b < nb; b += 32) {
            const float *r = P + b * rw + h * (hd + 2);
            if (r[hd + 1] > 0.f)
                M = fmaxf(M, r[hd]);
        }
        M = warp_max(M);
        if (M == -INFINITY) {
            for (int64_t i = lane; i < hd; i += 32)
                o[h * hd + i] = 0.f;
            continue;
        }
        float L = 0.f;
        for (int64_t b = lane; b < nb; b += 32) {
            const float *r = P + b * rw + h * (hd + 2);
            if (r[hd + 1] > 0.f)
                L += expf(r[hd] - M) * r[hd + 1];
        }
        L = warp_sum(L);
        for (int64_t i = lane; i < hd; i += 32) {
            float s = 0.f;
            for (int64_t b = 0; b < nb; b++) {
                const float *r = P + b * rw + h * (hd + 2);
                if (r[hd + 1] > 0.f)
                    s += expf(r[hd] - M) * r[i];
            }
            o[h * hd + i] = s / L;
        }
    }
}

__device__ void op_elementwise(const op_env &e, int op)
{
    int64_t n = e.out(0).numel;
    const float *a = (const float *)e.in(0).ptr;
    const float *b = e.t->n_in > 1 ? (const float *)e.in(1).ptr : a;
    float *y = (float *)e.out(0).ptr;
    for (int64_t i = threadIdx.x; i < n; i += blockDim.x) {
        float av = a[i], r;
        switch (op) {
        case IR_OP_COPY: r = av; break;
        case IR_OP_GELU: r = (float)(0.5 * av * (1.0 + erf(av / sqrt(2.0)))); break;
        case IR_OP_ADD: r = av + b[i]; break;
        case IR_OP_MUL: r = av * b[i]; break;
        default: r = silu_mul(av, b[i]); break;                                 /* SILU_MUL */
        }
        y[i] = r;
    }
}

/* The largest value and its index over the whole block, lowest index on ties, NaN never taken
 * (bi stays 0x7fffffff when every value was NaN): each thread's (bv, bi), then warps, then thread
 * 0, which alone holds the answer. */
struct amax_acc {
    float bv = -INFINITY;
    int bi = 0x7fffffff;
    __device__ void take(float v, int64_t i)
    {
        if (v > bv || (v == bv && i < bi)) {
            bv = v;
            bi = (int)i;
        }
    }
    __device__ void block_reduce(float *red_f, int *red_i)
    {
        for (int o = 16; o; o >>= 1) {
            const float ov = __shfl_xor_sync(0xffffffffu, bv, o);
            const int oi = __shfl_xor_sync(0xffffffffu, bi, o);
            take(ov, oi);
        }
        const int w = threadIdx.x >> 5, nw = blockDim.x >> 5;
        __syncthreads();                   /* red_f, red_i may be in use */
        if ((threadIdx.x & 31) == 0) {
            red_f[w] = bv;
            red_i[w] = bi;
        }
        __syncthreads();
        if (threadIdx.x == 0)
            for (int i = 1; i < nw; i++)
                take(red_f[i], red_i[i]);
    }
};

/* MK_F_AMAX_PART: after a GEMV-shaped tile wrote rows [off, off + nt) of the logits y, the
 * largest of them and its index into the tile's slot (read back once the block's writes are
 * done; before the release, so the argmax sees the slot with the logits). Out of line, its
 * arguments by value: it runs once a token per tile and leaves the other ops' code as it was. */
__device__ __noinline__ void amax_partial(const float *y, int64_t off, int64_t nt, mk_amax *slot,
                                          float *red_f, int *red_i)
{
    amax_acc m;
    __syncthreads();                       /* every row of the tile written */
    for (int64_t i = threadIdx.x; i < nt; i += blockDim.x)
        m.take(y[off + i], off + i);
    m.block_reduce(red_f, red_i);
    if (threadIdx.x == 0)
        *slot = mk_amax{m.bv, m.bi};
}

/* Index of the largest logit, lowest index on ties (NaN never taken; 0 when every logit is
 * NaN, as the VM answers). MK_F_AMAX_FROM: over the tiles' slots instead of the logits. */
__device__ void op_argmax(const op_env &e)
{
    const mk_buf &lb = e.in(0);
    const float *x = (const float *)lb.ptr;
    int64_t n = lb.numel;
    amax_acc m;
    if (e.t->flags & MK_F_AMAX_FROM) {
        const mk_amax *sl = e.L->amax + e.t->amax_slot;
        for (int i = threadIdx.x; i < e.t->amax_n; i += blockDim.x) {
            const mk_amax a = sl[i];
            m.take(a.v, a.i);
        }
        n = 0;
    }
    /* Each thread visits its elements in increasing index order; with 16-byte vectors, four of
     * them in flight at once (a single thread's dependent loads would take tens of us). */
    constexpr int U = 4;
    const int64_t n4 = ((uintptr_t)x & 15) == 0 ? n / 4 : 0, bd = blockDim.x;
    for (int64_t c = threadIdx.x; c < n4; c += U * bd) {
        float4 v[U];
#pragma unroll
        for (int u = 0; u < U; u++)
            v[u] = c + u * bd < n4 ? ((const float4 *)x)[c + u * bd]
                                   : make_float4(NAN, NAN, NAN, NAN);
#pragma unroll
        for (int u = 0; u < U; u++) {
            const int64_t i = 4 * (c + u * bd);
            m.take(v[u].x, i);
            m.take(v[u].y, i + 1);
            m.take(v[u].z, i + 2);
            m.take(v[u].w, i + 3);
        }
    }
    for (int64_t i = 4 * n4 + threadIdx.x; i < n; i += bd)
        m.take(x[i], i);
    m.block_reduce(e.red_f, e.red_i);
    if (threadIdx.x == 0) {
        const int bi = m.bi == 0x7fffffff ? 0 : m.bi;   /* every logit NaN: the VM answers 0 */
        const mk_buf &ob = e.out(0);
        if (ob.dtype == IR_I32)
            *(int *)ob.ptr = bi;
        else
            *(float *)ob.ptr = (float)bi;
    }
}

/* Inline: out of line, the op environment goes through local memory and every op slows. */
__device__ __forceinline__ void run_op(const op_env &e)
{
    const mk_task *t = e.t;
    if (t->flags & MK_F_STREAM) {
        op_stream(e);
        return;
    }
    switch (t->op) {
    case IR_OP_NOP: break;
    case IR_OP_EMBED: op_embed(e); break;
    case IR_OP_RMSNORM: op_rmsnorm(e); break;
    case IR_OP_GEMV_TILE:
        gemv_tile(e, 0, (const float *)e.in(0).ptr, (float *)e.out(0).ptr,
                  (t->flags & MK_F_BIAS) ? &e.in(2) : nullptr);
        break;
    case IR_OP_FUSED:                                                       /* FUSED recipe 1 */
        gemv_tile(e, 0, (const float *)e.in(0).ptr, (float *)e.out(0).ptr, nullptr);
        gemv_tile(e, 1, (const float *)e.in(0).ptr, (float *)e.out(1).ptr, nullptr);
        break;
    case MK_OP_NORM_GEMV:
    case MK_OP_NORM_GEMV_PAIR:
    case MK_OP_SILU_GEMV: op_fused_gemv(e, t->op, e.xs); break;
    case MK_OP_ROPE_APPEND: op_rope_append(e); break;
    case MK_OP_ROPE_ATTENTION: op_rope_attention(e, e.xs); break;
    case IR_OP_ATTENTION_TILE: op_attention(e); break;
    case IR_OP_ROPE: op_rope(e); break;
    case IR_OP_KV_APPEND: op_kv_append(e); break;
    case IR_OP_SAMPLE_ARGMAX: op_argmax(e); break;
    case IR_OP_ATTENTION_COMBINE: op_attention_combine(e); break;
    default: op_elementwise(e, t->op); break;           /* COPY, SILU_MUL, GELU, ADD, MUL */
    }
}

/* ---------------------------------------------------------------- the megakernel */

/* Thread 0 of block b sets up the weight stream: the slots' barriers, the L2 policy, the
 * first of the block's streamed tiles. */
__device__ __forceinline__ void stream_init(const mk_launch &L, mk_stream &ws, int b)
{
    for (int i = 0; i < L.stream_slots; i++)
        asm volatile("mbarrier.init.shared::cta.b64 [%0], 1;" ::"r"(smem_u32(&ws.full[i]))
                     : "memory");
    asm volatile("fence.mbarrier_init.release.cluster;" ::: "memory");
    asm volatile("createpolicy.fractional.L2::evict_first.b64 %0, 1.0;" : "=l"(ws.policy));
    ws.issued = ws.done = ws.pslot = 0;
    ws.cslot = ws.cphase = ws.cpar = 0;
    ws.src = nullptr;
    ws.rb = ws.rows_left = ws.rpc = 0;
    ws.di = L.sdesc_start[b];
    ws.dend = L.sdesc_start[b + 1];
    stream_next_desc(L, ws);
}

/* Poller pk (lane 0 of warp pk) of block b on the waits of st, the task at queue index qi (see
 * the comment at its call): sets s_go to 1 when they hold, 2 on abort, unless another poller
 * decided first; poller 0 with profiling stamps the trace (t0, and t1 now). */
__device__ __forceinline__ void poll_waits(const mk_launch &L, const mk_task &st, int &s_go,
                                           int b, int qi, int pk, unsigned long long t0,
                                           unsigned long long &t1)
{
    int ok = 1, decided = 0;
    if (pk) {   /* its turn, unless the waits are decided before */
        const unsigned long long until = global_ns() + pk * MK_POLL_STAGGER_NS;
        while (!(decided = *(volatile int *)&s_go) && global_ns() < until)
            ;
    }
    for (int w = 0; w < st.n_waits && ok && !decided; w++) {
        const int c = st.wait_counter[w];
        const unsigned thr = (unsigned)st.wait_threshold[w];
        long long spins = 0;
        unsigned ns = 0;
        unsigned v;
        while ((v = ld_acquire_u32(&L.counters[c])) < thr) {
            if (*(volatile int *)&s_go) {
                decided = 1;
                break;
            }
            if (pk) {
                __nanosleep(32);
                continue;
            }
            if (*(volatile unsigned *)&L.ctrl->abort) {
                ok = 0;
                break;
            }
            if (++spins > L.spin_budget) {
                if (atomicCAS(&L.ctrl->abort, 0u, 1u) == 0u) {
                    L.ctrl->block = b;
                    L.ctrl->task = L.qtasks[qi];
                    L.ctrl->counter = c;
                    L.ctrl->threshold = thr;
                    L.ctrl->value = v;
                    __threadfence();
                }
                ok = 0;
                break;
            }
            if (spins > 32) {           /* short waits spin; long ones back off */
                __nanosleep(ns);
                ns = ns ? (ns < 256 ? 2 * ns : 256) : 32;
            }
        }
    }
    if (!decided)
        atomicCAS(&s_go, 0, ok ? 1 : 2);
    if (L.prof && pk == 0) {
        t1 = global_ns();
        L.trace[(size_t)L.qtasks[qi] * 3] = t0;
        L.trace[(size_t)L.qtasks[qi] * 3 + 1] = t1;
    }
}

__global__ void __launch_bounds__(MK_MAX_THREADS, 1)
mk_megakernel(const __grid_constant__ mk_launch L)
{
    __shared__ __align__(16) mk_entry ent[2];        /* the running queue entry and the next */
    __shared__ double red_d[32];
    __shared__ float red_f[32];
    __shared__ int red_i[32];
    __shared__ int s_go;                            /* the waits: 0 pending, 1 hold, 2 abort */
    __shared__ __align__(16) float part[MK_PART];   /* also read as doubles (RoPE table) */
    __shared__ __align__(16) float xs[MK_XS];
    __shared__ __align__(16) mk_stream ws;
    extern __shared__ __align__(128) unsigned char dsm[];
    const int b = blockIdx.x;
    const int q0 = L.qstart[b], q1 = L.qstart[b + 1];
    /* The weight stream: the input vector of a streamed tile, then the ring's slots. */
    const bool streaming = L.stream_slots > 0;
    float *xa = (float *)dsm;
    unsigned char *ring = dsm + ((L.stream_x_floats * 4 + 127) & ~(int64_t)127);
    if (streaming && threadIdx.x == 0)
        stream_init(L, ws, b);
    unsigned long long t_begin = L.prof ? global_ns() : 0, t0 = 0, t1 = 0;
    /* Entry qi + 1 is copied (asynchronously, 16 bytes per thread) while entry qi waits and
     * runs, so no task waits for its own descriptors. */
    static_assert(sizeof(mk_entry) % 16 == 0, "copied in 16-byte pieces");
    auto fetch_entry = [&](int qi, int slot) {
        const char *src = (const char *)&L.entries[qi];
        const unsigned dst = smem_u32(&ent[slot]);
        for (int i = threadIdx.x; i < (int)(sizeof(mk_entry) / 16); i += blockDim.x)
            asm volatile("cp.async.cg.shared.global [%0], [%1], 16;" ::"r"(dst + 16 * i),
                         "l"(src + 16 * i)
                         : "memory");
        asm volatile("cp.async.commit_group;" ::: "memory");
    };
    if (q0 < q1)
        fetch_entry(q0, 0);
    for (int qi = q0; qi < q1; qi++) {
        const int cur = (qi - q0) & 1;
        const mk_task &st = ent[cur].t;
        if (L.prof && threadIdx.x == 0)
            t0 = global_ns();
        /* Weights do not depend on anything: request what fits before waiting. */
        if (streaming && threadIdx.x == 0)
            stream_fill(L, ws, ring, qi + L.pipelining_depth);
        if (threadIdx.x == 0)
            s_go = 0;                      /* every thread read the last task's verdict */
        asm volatile("cp.async.wait_all;" ::: "memory");
        __syncthreads();                   /* entry qi landed; the previous task is done */
        if (qi + 1 < q1)
            fetch_entry(qi + 1, cur ^ 1);
        /* The waits: lane 0 of the first MK_POLLERS warps polls (one, thread 0, by default: see
         * mk_internal.h), each starting MK_POLL_STAGGER_NS after the one before. The first poller
         * to see every wait hold (its own acquire loads) decides; the others stop when s_go is
         * set. Only poller 0 keeps the spin budget and watches the abort flag (the watchdog's
         * TIMEOUT). With one poller this is more general than it needs to be, but the plain
         * thread-0 loop it grew from compiles to a slower kernel (SPEC 15.5): keep it. */
        const int pk = threadIdx.x >> 5;
        if ((threadIdx.x & 31) == 0 && pk < MK_POLLERS)
            poll_waits(L, st, s_go, b, qi, pk, t0, t1);
        /* Acquire: the deciding poller's acquire loads saw the producers' release adds; the
         * barrier orders every thread's reads of their outputs after them (no separate fence). */
        __syncthreads();
        if (s_go != 1) {
            /* Every block leaves (the host reports TIMEOUT), once no copy is still landing. */
            asm volatile("cp.async.wait_all;" ::: "memory");
            for (int q = 0, sl = ws.cslot, ph = ws.cphase; streaming && q < ws.issued - ws.done;
                 q++) {
                mbar_wait(&ws.full[sl], (unsigned)ph);
                if (++sl == L.stream_slots) {
                    sl = 0;
                    ph ^= 1;
                }
            }
            return;
        }
        op_env e = {&st, ent[cur].b, L.pos, red_d, red_f, red_i, part, xs, L.rope_cs,
                    &L, &ws, xa, ring, qi};
        run_op(e);
        if (st.flags & MK_F_AMAX_PART)
            amax_partial((const float *)e.out(0).ptr, e.ip(MK_P_NOFF), e.ip(MK_P_NTILE),
                         L.amax + st.amax_slot, red_f, red_i);
        /* Release: the barrier orders every thread's writes before thread 0's release add, which
         * is cumulative at GPU scope: it publishes them with the count (no separate fence). */
        __syncthreads();
        if (threadIdx.x == 0) {
            red_release_add(&L.counters[st.out_counter], 1u);
            if (L.prof && qi == q1 - 1)
                L.prof[((size_t)b * MK_PROF_SLOTS + MK_PROF_SPAN) * 2] = global_ns() - t_begin;
            if (L.prof) {
                unsigned long long *pp =
                    L.prof + ((size_t)b * MK_PROF_SLOTS + (st.op & (MK_PROF_SLOTS - 1))) * 2;
                const unsigned long long t2 = global_ns();
                pp[0] += t2 - t1;
                pp[1] += t1 - t0;
                L.trace[(size_t)L.qtasks[qi] * 3 + 2] = t2;
            }
        }
    }
}

/* ---------------------------------------------------------------- bandwidth probe */

__global__ void mk_stream_read(const uint4 *p, size_t n, unsigned *sink)
{
    unsigned acc = 0;
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n;
         i += (size_t)gridDim.x * blockDim.x) {
        uint4 v = ld_weight16(p + i);
        acc ^= v.x ^ v.y ^ v.z ^ v.w;
    }
    if (acc == 0x9e3779b9u)
        *sink = acc;   /* practically never: keeps the loads alive */
}

/* ---------------------------------------------------------------- host wrappers */

static mk_status cuda_fail(cudaError_t e, const char *what, ir_error *err)
{
    ir_fail(err, IR_ERR_IO, "cuda", "%s: %s (%s)", what, cudaGetErrorName(e), cudaGetErrorString(e));
    return MK_CUDA_ERROR;
}

extern "C" int mkd_device_count(char *name, size_t name_len)
{
    int n = 0;
    if (cudaGetDeviceCount(&n) != cudaSuccess) {
        cudaGetLastError();
        return 0;
    }
    if (n > 0 && name && name_len) {
        cudaDeviceProp pr;
        if (cudaGetDeviceProperties(&pr, 0) == cudaSuccess)
            snprintf(name, name_len, "%s", pr.name);
    }
    return n;
}

extern "C" mk_status mkd_open(int device, int64_t grid, int64_t threads, int64_t dyn_smem,
                              char *name, size_t name_len, int *num_sms, int *blocks_per_sm,
                              ir_error *err)
{
    int n = mkd_device_count(NULL, 0);
    if (n <= 0) {
        ir_fail(err, IR_ERR_UNSUPPORTED, "device", "no CUDA device is available");
        return MK_NO_DEVICE;
    }
    if (device < 0 || device >= n) {
        ir_fail(err, IR_ERR_MALFORMED, "device", "device %d outside [0, %d)", device, n);
        return MK_MALFORMED;
    }
    cudaError_t e = cudaSetDevice(device);
    if (e != cudaSuccess)
        return cuda_fail(e, "cudaSetDevice", err);
    cudaDeviceProp pr;
    if ((e = cudaGetDeviceProperties(&pr, device)) != cudaSuccess)
        return cuda_fail(e, "cudaGetDeviceProperties", err);
    snprintf(name, name_len, "%s", pr.name);
    *num_sms = pr.multiProcessorCount;
    *blocks_per_sm = 0;
    if (!pr.cooperativeLaunch) {
        ir_fail(err, IR_ERR_UNSUPPORTED, "device", "%s does not support cooperative launches",
                pr.name);
        return MK_REFUSED;
    }
    if (dyn_smem > 48 * 1024 &&
        (e = cudaFuncSetAttribute(mk_megakernel, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                  (int)dyn_smem)) != cudaSuccess) {
        cudaGetLastError();
        ir_fail(err, IR_ERR_UNSUPPORTED, "launch_plan.dynamic_smem_bytes",
                "%lld bytes of dynamic SMEM refused by %s: %s", (long long)dyn_smem, pr.name,
                cudaGetErrorString(e));
        return MK_REFUSED;
    }
    int bps = 0;
    e = cudaOccupancyMaxActiveBlocksPerMultiprocessor(&bps, mk_megakernel, (int)threads,
                                                      (size_t)dyn_smem);
    if (e != cudaSuccess) {   /* say why, instead of reporting 0 blocks */
        cudaGetLastError();
        return cuda_fail(e, "cudaOccupancyMaxActiveBlocksPerMultiprocessor", err);
    }
    *blocks_per_sm = bps;
    if ((int64_t)bps * pr.multiProcessorCount < grid) {
        ir_fail(err, IR_ERR_UNSUPPORTED, "launch_plan.grid",
                "%s holds %d block(s) of %lld threads and %lld B dynamic SMEM per SM x %d SMs = "
                "%lld at once, the plan needs %lld", pr.name, bps, (long long)threads,
                (long long)dyn_smem, pr.multiProcessorCount,
                (long long)bps * pr.multiProcessorCount, (long long)grid);
        return MK_REFUSED;
    }
    return MK_OK;
}

extern "C" mk_status mkd_alloc(void **dptr, size_t bytes, ir_error *err)
{
    cudaError_t e = cudaMalloc(dptr, bytes ? bytes : 16);
    if (e != cudaSuccess) {
        *dptr = NULL;
        return cuda_fail(e, "cudaMalloc", err);
    }
    return MK_OK;
}

extern "C" mk_status mkd_upload(void *dst, const void *src, size_t bytes, ir_error *err)
{
    cudaError_t e = cudaMemcpy(dst, src, bytes, cudaMemcpyHostToDevice);
    return e == cudaSuccess ? MK_OK : cuda_fail(e, "cudaMemcpy to the device", err);
}

extern "C" mk_status mkd_download(void *dst, const void *src, size_t bytes, ir_error *err)
{
    cudaError_t e = cudaMemcpy(dst, src, bytes, cudaMemcpyDeviceToHost);
    return e == cudaSuccess ? MK_OK : cuda_fail(e, "cudaMemcpy from the device", err);
}

extern "C" mk_status mkd_zero(void *dst, size_t bytes, ir_error *err)
{
    cudaError_t e = cudaMemset(dst, 0, bytes);
    return e == cudaSuccess ? MK_OK : cuda_fail(e, "cudaMemset", err);
}

extern "C" void mkd_free(void *p)
{
    if (p)
        cudaFree(p);
}

extern "C" mk_status mkd_launch(const mk_launch *l, double *ms, mk_ctrl *ctrl_out, ir_error *err)
{
    cudaError_t e;
    if ((e = cudaMemsetAsync(l->counters, 0, (size_t)l->n_counters * sizeof(unsigned))) != cudaSuccess)
        return cuda_fail(e, "zeroing the counters", err);
    if ((e = cudaMemsetAsync(l->ctrl, 0, sizeof(mk_ctrl))) != cudaSuccess)
        return cuda_fail(e, "zeroing the watchdog", err);
    if (l->prof &&
        (e = cudaMemsetAsync(l->prof, 0, (size_t)l->grid * MK_PROF_SLOTS * 2 * 8)) != cudaSuccess)
        return cuda_fail(e, "zeroing the profile", err);
    if (l->trace && (e = cudaMemsetAsync(l->trace, 0, (size_t)l->n_tasks * 3 * 8)) != cudaSuccess)
        return cuda_fail(e, "zeroing the timeline", err);
    cudaEvent_t a, b;
    cudaEventCreate(&a);
    cudaEventCreate(&b);
    mk_launch arg = *l;
    void *args[] = {&arg};
    cudaEventRecord(a, 0);
    e = cudaLaunchCooperativeKernel((const void *)mk_megakernel, dim3((unsigned)l->grid),
                                    dim3((unsigned)l->threads), args, (size_t)l->dyn_smem, 0);
    cudaEventRecord(b, 0);
    if (e == cudaSuccess)
        e = cudaEventSynchronize(b);
    if (e == cudaSuccess)
        e = cudaGetLastError();
    float t = 0;
    if (e == cudaSuccess)
        cudaEventElapsedTime(&t, a, b);
    cudaEventDestroy(a);
    cudaEventDestroy(b);
    if (e != cudaSuccess)
        return cuda_fail(e, "the megakernel launch", err);
    *ms = t;
    if ((e = cudaMemcpy(ctrl_out, l->ctrl, sizeof *ctrl_out, cudaMemcpyDeviceToHost)) != cudaSuccess)
        return cuda_fail(e, "reading the watchdog", err);
    return MK_OK;
}

extern "C" mk_status mkd_read_bandwidth(int device, int64_t bytes, int repeats, double *gbs,
                                        ir_error *err)
{
    cudaError_t e = cudaSetDevice(device);
    if (e != cudaSuccess)
        return cuda_fail(e, "cudaSetDevice", err);
    cudaDeviceProp pr;
    if ((e = cudaGetDeviceProperties(&pr, device)) != cudaSuccess)
        return cuda_fail(e, "cudaGetDeviceProperties", err);
    size_t n = (size_t)bytes / 16;
    uint4 *buf = NULL;
    unsigned *sink = NULL;
    if ((e = cudaMalloc(&buf, n * 16)) != cudaSuccess)
        return cuda_fail(e, "cudaMalloc", err);
    if ((e = cudaMalloc(&sink, sizeof *sink)) != cudaSuccess) {
        cudaFree(buf);
        return cuda_fail(e, "cudaMalloc", err);
    }
    cudaMemset(buf, 1, n * 16);
    cudaEvent_t a, b;
    cudaEventCreate(&a);
    cudaEventCreate(&b);
    double t[64];
    if (repeats > 64)
        repeats = 64;
    if (repeats < 1)
        repeats = 1;
    int grid = pr.multiProcessorCount * 4;
    mk_stream_read<<<grid, 512>>>(buf, n, sink);   /* warm-up */
    for (int r = 0; r < repeats; r++) {
        cudaEventRecord(a);
        mk_stream_read<<<grid, 512>>>(buf, n, sink);
        cudaEventRecord(b);
        cudaEventSynchronize(b);
        float ms = 0;
        cudaEventElapsedTime(&ms, a, b);
        t[r] = ms;
    }
    e = cudaGetLastError();
    cudaEventDestroy(a);
    cudaEventDestroy(b);
    cudaFree(buf);
    cudaFree(sink);
    if (e != cudaSuccess)
        return cuda_fail(e, "the bandwidth probe", err);
    for (int i = 1; i < repeats; i++)         /* insertion sort for the median */
        for (int j = i; j > 0 && t[j] < t[j - 1]; j--) {
            double x = t[j];
            t[j] = t[j - 1];
            t[j - 1] = x;
        }
    double med = t[repeats / 2];
    *gbs = (double)(n * 16) / (med * 1e-3) / 1e9;
    return MK_OK;
}
