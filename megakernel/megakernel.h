/*
 * megakernel.h - the CUDA megakernel: runs a proved program's launch plan on the GPU, one
 * persistent cooperative launch per decoded token (SPEC.md section 15).
 *
 * A program is loaded only with a certificate that `verify_cert_check` accepts (PROVED, bound to
 * the program's hash), and only when the live device can hold the plan's grid at once. Weights
 * are uploaded once at load; the KV caches live on the device for the handle's lifetime; each
 * mk_step is one launch with every counter zeroed first.
 *
 * Every wait of the kernel has a spin budget: when one runs out, the kernel raises a global abort
 * flag, every block leaves, and mk_step reports MK_TIMEOUT. The device stays usable.
 *
 * This header is plain C; the library builds without nvcc too, and then mk_load answers
 * MK_NO_CUDA after its certificate checks (so refusals are testable on any machine).
 * Nothing here prints, exits or aborts.
 */
#ifndef AMK_MEGAKERNEL_H
#define AMK_MEGAKERNEL_H

#include <assert.h>
#include <stdbool.h>
#include <stdint.h>

#include "ir/amk_ir.h"

#define MK_VERSION "0.1.0"

/* ---------------------------------------------------------------- op codes
 *
 * What crosses the C/CUDA boundary: the kernel runs the IR's ops under their ir_op codes
 * (IR_OP_*), and FUSED recipes 2-6 under codes of its own past the IR's (recipe 1, a GEMV
 * pair, keeps IR_OP_FUSED). mk_profile keeps one slot per code below MK_PROF_SLOTS; the last
 * three slots are no op's: parts of streamed tasks' run time, and each block's span. */
enum {
    MK_OP_NORM_GEMV = 20,      /* FUSED recipe 2: RMSNorm, then one GEMV tile */
    MK_OP_NORM_GEMV_PAIR = 21, /* FUSED recipe 3: RMSNorm, then two GEMV tiles */
    MK_OP_SILU_GEMV = 22,      /* FUSED recipe 4: silu(a) * b, then one GEMV tile */
    MK_OP_ROPE_APPEND = 23,    /* FUSED recipe 5: RoPE of k, then KV append */
    MK_OP_ROPE_ATTENTION = 24, /* FUSED recipe 6: RoPE of q, then attention */
    MK_OP_END                  /* one past the kernel's last code */
};
enum {
    MK_PROF_STREAM_PREP = 29,  /* a streamed task preparing its input vector */
    MK_PROF_CHUNK_WAIT = 30,   /* thread 0 of a streamed task waiting for weight chunks */
    MK_PROF_SPAN = 31,         /* the block's first task start to last task end */
    MK_PROF_SLOTS = 32         /* slots per block (a power of two: the kernel masks codes) */
};

/* The IR ops the kernel runs, as X(code, IR name, the value the kernel was written for). */
#define MK_IR_OPS(X)                                                                       \
    X(IR_OP_NOP, "NOP", 0) X(IR_OP_COPY, "COPY", 1) X(IR_OP_EMBED, "EMBED", 2)             \
    X(IR_OP_RMSNORM, "RMSNORM", 3) X(IR_OP_GEMV_TILE, "GEMV_TILE", 5)                      \
    X(IR_OP_ATTENTION_TILE, "ATTENTION_TILE", 7) X(IR_OP_ROPE, "ROPE", 8)                  \
    X(IR_OP_SILU_MUL, "SILU_MUL", 9) X(IR_OP_GELU, "GELU", 10) X(IR_OP_ADD, "ADD", 11)     \
    X(IR_OP_MUL, "MUL", 12) X(IR_OP_KV_APPEND, "KV_APPEND", 16)                            \
    X(IR_OP_SAMPLE_ARGMAX, "SAMPLE_ARGMAX", 17)                                            \
    X(IR_OP_ATTENTION_COMBINE, "ATTENTION_COMBINE", 18) X(IR_OP_FUSED, "FUSED", 19)

/* The codes of the kernel's own, as X(code, label printed by the profile). */
#define MK_OWN_CODES(X)                                                                    \
    X(MK_OP_NORM_GEMV, "FUSED norm+gemv") X(MK_OP_NORM_GEMV_PAIR, "FUSED norm+gemv2")      \
    X(MK_OP_SILU_GEMV, "FUSED silu+gemv") X(MK_OP_ROPE_APPEND, "FUSED rope+append")        \
    X(MK_OP_ROPE_ATTENTION, "FUSED rope+attention")                                        \
    X(MK_PROF_STREAM_PREP, "(stream: x prep)") X(MK_PROF_CHUNK_WAIT, "(stream: chunk wait)")

#define MK_ASSERT_IR_OP(op, name, v) \
    static_assert((int)(op) == (v), "IR op " name " moved: the megakernel assumes code " #v);
MK_IR_OPS(MK_ASSERT_IR_OP)
#undef MK_ASSERT_IR_OP
static_assert((int)MK_OP_NORM_GEMV >= (int)IR_OP_COUNT,
              "the megakernel's own op codes must start past the IR's last op code");
static_assert((int)MK_OP_END <= (int)MK_PROF_STREAM_PREP,
              "the megakernel's op codes must stay below its profile-only slots");
static_assert(MK_PROF_SPAN == MK_PROF_SLOTS - 1 && (MK_PROF_SLOTS & (MK_PROF_SLOTS - 1)) == 0,
              "profile slots: a power of two, the span in the last");

/* A short name for a kernel op code or profile slot: the IR's name for an IR op, the labels
 * of MK_OWN_CODES for the kernel's own, "?" for any other (static strings). */
const char *mk_op_label(int32_t code);

#ifndef MK_DEFAULT_SPIN_BUDGET
#define MK_DEFAULT_SPIN_BUDGET 2000000  /* polls per wait, each followed by a sleep of <= 1 us */
#endif

/* Outcome of a megakernel call. */
typedef enum {
    MK_OK = 0,
    MK_REFUSED,          /* no certificate, not PROVED, hash mismatch, or the device cannot hold
                            the grid: the plan is not launched */
    MK_MALFORMED,        /* bad program, weights or arguments (err says where) */
    MK_UNSUPPORTED,      /* an op, dtype or shape this kernel does not run */
    MK_NO_CUDA,          /* this build has no CUDA support */
    MK_NO_DEVICE,        /* CUDA support, but no usable GPU */
    MK_TIMEOUT,          /* a wait ran out of its spin budget; the launch was abandoned */
    MK_CUDA_ERROR,       /* a CUDA call failed (err names it) */
    MK_NOMEM
} mk_status;

const char *mk_status_name(mk_status s);

typedef struct {
    int64_t spin_budget;   /* polls per wait before the watchdog fires (default above) */
    bool unverified;       /* TEST ONLY: skip the certificate (to show the watchdog on a plan
                              that deadlocks); residency is still checked */
    int device;            /* CUDA device ordinal (default 0) */
    bool profile;          /* time every task (run and wait, per op) for mk_profile_read */
    int64_t stream_slot_bytes; /* weight stream slot size, a multiple of 16 (0: the larger of
                              64 KiB and the longest streamed row); rows longer do not stream */
} mk_options;

void mk_options_default(mk_options *o);

/* Result of one launch. */
typedef struct {
    mk_status status;
    double ms;             /* wall time of the launch on the GPU (CUDA events) */
    int32_t next_token;    /* SAMPLE_ARGMAX output, else argmax of the logits */
    /* filled on MK_TIMEOUT: the first wait that ran out */
    int32_t block, task, counter;
    int64_t threshold, counter_value;
    int64_t tasks_done;    /* counter increments seen at the end of the launch */
} mk_step_status;

typedef struct mk_handle mk_handle;

/* True when this build has CUDA support. */
bool mk_have_cuda(void);
/* Number of CUDA devices usable by this process (0 without CUDA support or driver), with the
 * first device's name in name (may be NULL). */
int mk_device_count(char *name, size_t name_len);

/* Load p for execution. cert_json (len bytes) is the certificate amk-verify wrote for p; it must
 * be present, PROVED and bound to p's hash (verify_cert_check), unless o->unverified. Then the
 * device is checked against the plan (SM count, blocks per SM for the plan's block size and
 * dynamic SMEM, cooperative launch), the ops against what the kernel runs, the weights file is
 * bound by each WEIGHT buffer's source key (shape and dtype must match; a tied lm_head falls back
 * to model.embed_tokens.weight when tie_embeddings) and uploaded once. p must outlive the handle.
 * On MK_OK the caller frees *out with mk_free. */
mk_status mk_load(const ir_program *p, const char *cert_json, size_t cert_len,
                  const char *weights_path, bool tie_embeddings, const mk_options *o,
                  mk_handle **out, ir_error *err);

/* One launch at position pos (0 <= pos < max_seq) with input token `token`. The logits
 * (vocab floats) are copied to logits_out when it is not NULL. Positions must be fed in order
 * for the KV cache to be meaningful (as for the reference VM). Returns st->status. */
mk_status mk_step(mk_handle *h, int32_t token, int64_t pos, float *logits_out,
                  mk_step_status *st, ir_error *err);

/* Number of logits a step writes, and the position range of the handle's program. */
int64_t mk_vocab(const mk_handle *h);
int64_t mk_max_seq(const mk_handle *h);
/* Bytes of weights uploaded (what one step must stream at least once). */
int64_t mk_weight_bytes(const mk_handle *h);
/* The device's name and SM count, as seen at load. */
const char *mk_device_name(const mk_handle *h);
/* The weight stream as mk_load planned it (SPEC 15.2): SMEM slots and their size, and the number
 * of tasks whose weight tiles come through it (0 when the stream is off: pipelining_depth 0, or
 * too little dynamic SMEM for the input vector and two slots). Any pointer may be NULL. */
void mk_stream_info(const mk_handle *h, int *slots, int64_t *slot_bytes, int64_t *tasks);

/* Tiles whose largest logit SAMPLE_ARGMAX reads instead of every logit (SPEC 15.2); 0 when
 * it reads the logits (the plan's tiles do not qualify, or the handle was loaded unverified). */
int64_t mk_argmax_tiles(const mk_handle *h);

/* Per-op timing of the last launch of a handle loaded with o->profile (nanosecond GPU timer
 * read by each block's first thread): for each op code, the run time and the time spent
 * waiting before its tasks, summed over blocks, and the largest per-block run sum. Two slots
 * past the op codes count parts of streamed tasks' run time (SPEC 15.2):
 * run_ms[MK_PROF_STREAM_PREP] preparing the input vector, run_ms[MK_PROF_CHUNK_WAIT] waiting
 * for weight chunks to land. */
typedef struct {
    double run_ms[MK_PROF_SLOTS], wait_ms[MK_PROF_SLOTS], run_ms_max_block[MK_PROF_SLOTS];
    double span_ms_max;    /* longest block, first task start to last task end */
} mk_profile;

mk_status mk_profile_read(mk_handle *h, mk_profile *out, ir_error *err);

/* The timeline of the last launch of a handle loaded with o->profile: for task i (program
 * order), us[3i] when its block reached it, us[3i+1] when its waits held, us[3i+2] when it
 * released its counter, in microseconds from the launch's earliest stamp (-1: not reached, as
 * after a TIMEOUT). us holds 3 * the program's task count. */
mk_status mk_trace_read(mk_handle *h, double *us, ir_error *err);

/* Release the device memory and the handle; NULL is fine. */
void mk_free(mk_handle *h);

/* Median device read bandwidth in GB/s of a plain streaming-read kernel over `bytes` bytes
 * (repeats runs), the ceiling a bandwidth-bound decode step is measured against. */
mk_status mk_read_bandwidth(int device, int64_t bytes, int repeats, double *gbs, ir_error *err);

#endif /* AMK_MEGAKERNEL_H */
