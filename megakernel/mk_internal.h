/*
 * mk_internal.h - what the host half (mk_load.c, C11) and the device half (mk_kernel.cu) of the
 * megakernel share: the flattened task and buffer tables the kernel reads, and the few CUDA
 * wrappers the host half calls. Private to megakernel/.
 */
#ifndef AMK_MK_INTERNAL_H
#define AMK_MK_INTERNAL_H

#include <stddef.h>
#include <stdint.h>

#include "megakernel/megakernel.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Int params, resolved by name on the host into fixed slots; each is a position expression
 * clamp(mul*pos + add, lo, hi) evaluated by the kernel at the launch's pos (SPEC 3.4). */
enum {
    MK_P_K, MK_P_NTILE, MK_P_NOFF, MK_P_HIDDEN, MK_P_HEADDIM, MK_P_POS, MK_P_KVSTART,
    MK_P_KVLEN, MK_P_NHEADS, MK_P_NKV, MK_P_MOFF, MK_P_ORIGMAX, MK_P_KVHOFF, MK_P_KVHEADS, MK_NI
};
/* Real params. */
enum { MK_R_EPS, MK_R_THETA, MK_R_SCALE, MK_R_FACTOR, MK_R_LOW, MK_R_HIGH, MK_NR };

/* The element types the kernel reads by number (load_elem, the gemv templates' DT). */
static_assert(IR_F32 == 0 && IR_F16 == 1 && IR_BF16 == 2 && IR_I32 == 5,
              "ir_dtype codes moved: the megakernel's dtype dispatch assumes F32 0, F16 1, BF16 2, "
              "I32 5");

/* Floats of the kernel's SMEM vector xs: a fused GEMV's prepared input (per chunk), or the
 * rotated query heads and keys of a FUSED recipe 6 task (which must fit). */
#define MK_XS 6144

#define MK_F_PARTIAL 1     /* ATTENTION_TILE writes a partial row at m_off */
#define MK_F_LLAMA3 2      /* ROPE with llama3 frequency scaling */
#define MK_F_BIAS 4        /* GEMV_TILE, FUSED recipe 2 or 4 with a bias input */
#define MK_F_ROPE_TABLE 8  /* RoPE (ROPE, recipes 5, 6) reads cos/sin from the launch's table */
#define MK_F_STREAM 16     /* GEMV_TILE, FUSED 1-4: weights arrive through the launch's SMEM ring */
/* SAMPLE_ARGMAX over the tiles' maxima (SPEC 15.2): a GEMV_TILE or FUSED 2, 4 task that also
 * leaves its rows' largest logit in slot amax_slot; the SAMPLE_ARGMAX that reads slots
 * [amax_slot, amax_slot + amax_n) instead of the logits. */
#define MK_F_AMAX_PART 32
#define MK_F_AMAX_FROM 64

/* Threads that poll a task's waits (lane 0 of the first warps), each starting this many ns after
 * the one before. One is the fastest on an H200 (SPEC 15.2): the barrier after the waits also
 * waits for the other pollers' acquire loads still in flight. */
#define MK_POLLERS 1
#define MK_POLL_STAGGER_NS 150

/* The weight stream (pipelining_depth >= 1 and enough dynamic SMEM; SPEC 15.2): slots of the
 * ring, and the smallest slot. */
#define MK_STREAM_MAX_SLOTS 16
#ifndef MK_STREAM_SLOT_MIN
#define MK_STREAM_SLOT_MIN (64 * 1024)
#endif

typedef struct {
    int64_t mul, add, lo, hi;
} mk_pexpr;

#ifdef __CUDACC__
#define MK_HD __host__ __device__
#else
#define MK_HD
#endif

/* The weight tiles of a GEMV-shaped kernel op: how many (0: none) and the input slot of the
 * first; the others follow it. GEMV_TILE and FUSED recipe 1 read x from input 0, recipes 2-4
 * prepare it from inputs 0 and 1. */
static inline MK_HD int mk_weight_tiles(int32_t op, int *first)
{
    switch (op) {
    case IR_OP_GEMV_TILE: *first = 1; return 1;
    case IR_OP_FUSED: *first = 1; return 2;
    case MK_OP_NORM_GEMV: case MK_OP_SILU_GEMV: *first = 2; return 1;
    case MK_OP_NORM_GEMV_PAIR: *first = 2; return 2;
    default: *first = 0; return 0;
    }
}

/* One task as the kernel sees it (plain data, 8-byte aligned, copied to SMEM per task). */
typedef struct {
    mk_pexpr ip[MK_NI];
    double rp[MK_NR];
    int32_t op, out_counter, n_waits, n_in, n_out, flags;
    int32_t amax_slot, amax_n;   /* MK_F_AMAX_PART, MK_F_AMAX_FROM */
    int32_t wait_counter[8];
    int32_t wait_threshold[8];
    int32_t in[8];
    int32_t out[4];
} mk_task;

/* One streamed weight tile, in its block's queue order: rows whole rows of rb bytes from src,
 * for the task at queue index qi (the stream's producer reads these, one per tile). */
typedef struct {
    const char *src;
    int32_t rb, rows, qi, pad[3];
} mk_sdesc;

/* One buffer: device address (pages share one), dtype and shape. */
typedef struct {
    void *ptr;
    int64_t numel;
    int64_t shape[4];
    int32_t rank, dtype;     /* ir_dtype */
} mk_buf;

/* One queue entry as a block copies it to SMEM: the task and its buffers' descriptors (inputs
 * in slots 0-7, outputs in 8-11, unused slots zero), stored in queue order so that the copy of
 * a block's next entry depends on no other load. 16-byte multiple (copied in 16-byte pieces). */
typedef struct {
    mk_task t;
    mk_buf b[12];
} mk_entry;

/* A tile's largest logit and its index (lowest on ties), for SAMPLE_ARGMAX over the tiles. */
typedef struct {
    float v;
    int32_t i;
} mk_amax;

/* Watchdog state, written by the kernel. */
typedef struct {
    unsigned int abort;      /* raised by the first wait whose budget runs out */
    int32_t block, task, counter;
    long long threshold, value;
} mk_ctrl;

/* Everything one launch needs (device pointers). */
typedef struct {
    const mk_entry *entries;   /* queue order: block b's from qstart[b] */
    const int32_t *qstart, *qtasks;
    unsigned int *counters;
    mk_ctrl *ctrl;
    unsigned long long *prof;  /* NULL, or [grid][MK_PROF_SLOTS][2] ns: run, wait time per code */
    int64_t pos;
    long long spin_budget;
    int32_t n_counters, pipelining_depth;
    int32_t grid, threads;
    int64_t dyn_smem;
    const double *rope_cs;     /* [max_seq][head_dim/2][cos, sin] for MK_F_ROPE_TABLE tasks, or NULL */
    /* Weight stream (0 slots: off). Dynamic SMEM holds the input vector of a streamed tile
     * (stream_x_floats, rounded up to 128 bytes) and then stream_slots slots of
     * stream_slot_bytes. */
    int32_t stream_slots;
    int64_t stream_slot_bytes, stream_x_floats;
    const mk_sdesc *sdesc;     /* every block's streamed tiles, block b's from sdesc_start[b] */
    const int32_t *sdesc_start;
    unsigned long long *trace; /* NULL, or [task][3] ns: reached, waits held, released */
    mk_amax *amax;             /* the MK_F_AMAX_PART tiles' slots, or NULL */
    int32_t n_tasks;
} mk_launch;

/* CUDA wrappers (mk_kernel.cu). Each returns MK_OK or fills err. */
int mkd_device_count(char *name, size_t name_len);
/* Check that `grid` blocks of `threads` threads with dyn_smem bytes of dynamic SMEM fit the device
 * at once for this kernel, and that it supports cooperative launches. */
mk_status mkd_open(int device, int64_t grid, int64_t threads, int64_t dyn_smem, char *name,
                   size_t name_len, int *num_sms, int *blocks_per_sm, ir_error *err);
mk_status mkd_alloc(void **dptr, size_t bytes, ir_error *err);
mk_status mkd_upload(void *dst, const void *src, size_t bytes, ir_error *err);
mk_status mkd_download(void *dst, const void *src, size_t bytes, ir_error *err);
mk_status mkd_zero(void *dst, size_t bytes, ir_error *err);
void mkd_free(void *p);
/* One cooperative launch; zeroes counters and the watchdog first, waits for the end, reports
 * the watchdog's record and the elapsed GPU time. */
mk_status mkd_launch(const mk_launch *l, double *ms, mk_ctrl *ctrl_out, ir_error *err);
mk_status mkd_read_bandwidth(int device, int64_t bytes, int repeats, double *gbs, ir_error *err);

#ifdef __cplusplus
}
#endif

#endif /* AMK_MK_INTERNAL_H */
