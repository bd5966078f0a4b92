/*
 * refvm.h - the CPU side of the correctness gate: safetensors weights, deterministic random
 * weights, the reference VM that executes a program's queues in fp32, and an independent eager
 * Llama forward that the VM is compared against.
 *
 * The VM and the eager forward share no op code: the VM knows only the IR (SPEC.md section 5),
 * the eager forward knows only the model shape (lower_model) and the Hugging Face tensor names.
 * When both agree with each other and with Hugging Face's goldens, a program computes the model.
 *
 * Conventions: nothing here prints, exits or aborts; every function that can fail returns an
 * ir_status and fills an ir_error naming the tensor, buffer or task at fault.
 */
#ifndef AMK_REFVM_H
#define AMK_REFVM_H

#include <stdbool.h>
#include <stdint.h>

#include "ir/amk_ir.h"
#include "lower/lower.h"

#ifndef REFVM_ST_MAX_HEADER
#define REFVM_ST_MAX_HEADER ((uint64_t)100 << 20)  /* largest safetensors JSON header we read */
#endif
#define REFVM_ST_MAX_RANK 8

/* ---------------------------------------------------------------- number formats */

float refvm_bf16_to_f32(uint16_t h);
float refvm_f16_to_f32(uint16_t h);
/* Round to nearest even; NaN stays NaN. */
uint16_t refvm_f32_to_bf16(float f);
uint16_t refvm_f32_to_f16(float f);

/* ---------------------------------------------------------------- safetensors */

/* One tensor of an open file. dtype is IR_F32/IR_F16/IR_BF16 for tensors we can read;
 * supported is false for any other safetensors dtype (its name is kept in st_dtype). */
typedef struct {
    char *name;                      /* owned */
    char st_dtype[16];               /* dtype string as in the file, e.g. "BF16" */
    bool supported;
    ir_dtype dtype;
    int rank;
    int64_t shape[REFVM_ST_MAX_RANK];
    int64_t numel;
    uint64_t begin, end;             /* data_offsets, relative to the data section */
    const unsigned char *data;       /* inside the mapping */
} refvm_tensor;

/* An mmap'd safetensors file. Every tensor's offsets were checked against the file size, its
 * shape and dtype, and against every other tensor (no overlap) before open returned. */
typedef struct {
    char *path;                      /* owned copy */
    void *map;
    size_t map_len;
    int n;
    refvm_tensor *tensors;           /* owned, file header order */
} refvm_st;

/* Open and validate path. On success *out is a new handle the caller closes with
 * refvm_st_close. Malformed or truncated files are IR_ERR_MALFORMED with err->where naming the
 * file and tensor; an unreadable file is IR_ERR_IO. */
ir_status refvm_st_open(const char *path, refvm_st **out, ir_error *err);
/* Unmap and free; NULL is fine. */
void refvm_st_close(refvm_st *st);
/* The tensor called name, or NULL. */
const refvm_tensor *refvm_st_find(const refvm_st *st, const char *name);
/* Convert a whole tensor to fp32 into dst (t->numel floats). IR_ERR_UNSUPPORTED naming the
 * tensor when its dtype is not F32/F16/BF16. */
ir_status refvm_st_to_f32(const refvm_st *st, const refvm_tensor *t, float *dst, ir_error *err);
/* Convert elements [first, first + n) of an F32, F16 or BF16 tensor (t->supported) to fp32 into
 * dst; the caller keeps the range inside t->numel. For reading a large tensor a row at a time. */
void refvm_st_slice_to_f32(const refvm_tensor *t, int64_t first, int64_t n, float *dst);
/* Convert an I8 or U8 tensor (quantized weights, packed int4 nibbles) to exact fp32 integers
 * into dst (t->numel floats). IR_ERR_UNSUPPORTED naming the tensor for any other dtype. */
ir_status refvm_st_ints_to_f32(const refvm_st *st, const refvm_tensor *t, float *dst,
                               ir_error *err);

/* Streaming writer: declare every tensor first, then write their data in declaration order, in
 * as many chunks as the caller likes, so no tensor needs to be held in memory at once. The
 * file is written to path.tmp and renamed by refvm_st_writer_finish. */
typedef struct refvm_st_writer refvm_st_writer;

/* A writer for n tensors. The caller owns nothing until refvm_st_writer_finish or
 * refvm_st_writer_abort, one of which must be called. */
ir_status refvm_st_writer_new(const char *path, int n, refvm_st_writer **out, ir_error *err);
/* Declare tensor i (0..n-1, in order): name is copied; dtype F32/F16/BF16. */
ir_status refvm_st_writer_declare(refvm_st_writer *w, const char *name, ir_dtype dtype, int rank,
                                  const int64_t *shape, ir_error *err);
/* Append count values (converted to the current tensor's dtype). The header is written on the
 * first call; data flows into the tensors in declaration order. */
ir_status refvm_st_writer_put(refvm_st_writer *w, const float *vals, int64_t count,
                              ir_error *err);
/* Check that every declared byte was written, close and rename; frees w in every case. */
ir_status refvm_st_writer_finish(refvm_st_writer *w, ir_error *err);
/* Remove the temporary file and free w; NULL is fine. */
void refvm_st_writer_abort(refvm_st_writer *w);

/* ---------------------------------------------------------------- random weights */

/* Write a safetensors file with every tensor of model m under its Hugging Face name
 * (lm_head.weight omitted when m ties embeddings), in dtype F32, F16 or BF16. Values are a
 * pure function of (seed, tensor name, index): projections and embeddings uniform with std
 * 0.02, norm weights uniform in [0.9, 1.1]. Streams, so memory use is independent of the model
 * size. */
ir_status refvm_weights_random(const lower_model *m, uint64_t seed, ir_dtype dtype,
                               const char *path, ir_error *err);
/* The same, calling progress(arg, tensors written, tensors in all) after each tensor (progress
 * may be NULL). */
ir_status refvm_weights_random_progress(const lower_model *m, uint64_t seed, ir_dtype dtype,
                                        const char *path,
                                        void (*progress)(void *arg, int done, int total),
                                        void *arg, ir_error *err);

/* ---------------------------------------------------------------- eager reference forward */

typedef struct refvm_eager refvm_eager;

/* Build the eager forward of m from the Hugging Face tensors of the file st was opened from
 * (every tensor's shape is checked against m; F32, F16 or BF16), with a KV cache of max_seq
 * positions. The eager maps the file itself and reads weight matrices a row at a time (norm
 * vectors are converted once), so it holds no fp32 copy of the model. lm_head.weight falls back
 * to model.embed_tokens.weight when m ties embeddings. The caller frees *out with
 * refvm_eager_free; st may be closed afterwards. */
ir_status refvm_eager_new(const lower_model *m, const refvm_st *st, int64_t max_seq,
                          refvm_eager **out, ir_error *err);
void refvm_eager_free(refvm_eager *e);
/* Decode token at pos (0 <= pos < max_seq; positions before pos must have been fed). On success
 * *logits points at vocab floats owned by e, valid until the next call. */
ir_status refvm_eager_forward(refvm_eager *e, int32_t token, int64_t pos, const float **logits,
                              ir_error *err);
/* The rotary inverse frequencies of m, head_dim / 2 of them into inv_freq, as Hugging Face
 * computes them (the llama3 band adjustment of SPEC.md 8.7 included): what the eager forward
 * and the GPU baseline rotate with. Cannot fail. */
void refvm_rope_inv_freq(const lower_model *m, float *inv_freq);

/* ---------------------------------------------------------------- reference VM */

typedef struct refvm refvm;

typedef struct {
    ir_queue_order order;          /* queue order for programs without a launch plan */
    bool interleave;               /* pick among enabled queue heads pseudo-randomly ... */
    uint64_t interleave_seed;      /* ... from this seed (else: the lowest enabled queue) */
    bool tie_embeddings;           /* lm_head.weight may bind to model.embed_tokens.weight */
    const int32_t *schedule;       /* replay: the first n_schedule picks of every launch run */
    int32_t n_schedule;            /* these task ids, each of which must be an enabled queue
                                      head when its turn comes; then the usual policy goes on.
                                      The array must outlive the VM. */
    int64_t stream_min_numel;      /* floating-point weight matrices with at least this many
                                      elements are read from the file a row at a time instead of
                                      converted to fp32 on bind (0 or the default: 65536;
                                      INT64_MAX: none).
                                      Results are identical either way. */
} refvm_opts;

void refvm_opts_default(refvm_opts *o);

/* How a step ended when it did not fail on bad input. */
typedef enum {
    REFVM_DONE = 0,                /* every task ran and every output element was written */
    REFVM_DEADLOCK,                /* no queue head enabled while tasks remain */
    REFVM_UNWRITTEN_READ,          /* a task read an element not written earlier in the step */
    REFVM_OUTPUT_INCOMPLETE        /* an IO_OUTPUT element was never written */
} refvm_outcome;

typedef struct {
    refvm_outcome outcome;
    int64_t tasks_run;
    int32_t task;                  /* faulting task (UNWRITTEN_READ), else -1 */
    int32_t buffer;                /* buffer at fault, else -1 */
    int64_t element;               /* flat element index at fault, else -1 */
    char *detail;                  /* owned text: the fault, or the stuck state of a deadlock
                                      (one line per blocked queue); NULL when DONE */
} refvm_result;

void refvm_result_free(refvm_result *r);
const char *refvm_outcome_name(refvm_outcome o);

/* Prepare p for execution: computes its queues, allocates fp32 storage (activations that share
 * a page share storage), checks the ops are ones the VM runs. p must outlive the VM. The caller
 * frees *out with refvm_free. */
ir_status refvm_new(const ir_program *p, const refvm_opts *o, refvm **out, ir_error *err);
void refvm_free(refvm *vm);

/* Bind every WEIGHT and CONST buffer to the tensor named by its source key. The VM maps the file
 * again itself (st may be closed right after); floating-point weight matrices of at least
 * opts.stream_min_numel elements are read from that mapping a row at a time, everything else is
 * converted to fp32 once.
 * Refused before anything runs: a missing tensor, a shape different from the buffer's, a file
 * dtype different from the buffer's dtype. */
ir_status refvm_bind(refvm *vm, const refvm_st *st, ir_error *err);

/* Run one launch at position pos with input token `token` (the I32 inputs are filled as SPEC
 * 10.2 says: the token input with token, AMK's pos input with pos, any other with 0, 1, 2, ...):
 * every queue head is run when its waits hold, params that depend on the position are evaluated
 * at pos, reads are checked against this step's writes. Returns IR_OK when the step reached a verdict (r->outcome), or an
 * error when the program or the input is bad (a task's params outside its buffers, a token
 * outside the vocabulary, unbound weights). r is overwritten; free it with refvm_result_free. */
ir_status refvm_step(refvm *vm, int32_t token, int64_t pos, refvm_result *r, ir_error *err);

/* After a DONE step: the logits (the F32 IO_OUTPUT buffer) and their count, or NULL. */
const float *refvm_logits(const refvm *vm, int64_t *n);
/* After a DONE step: the SAMPLE_ARGMAX token when the program has one, else the argmax of the
 * logits (lowest index on ties). */
int32_t refvm_next_token(const refvm *vm);
/* The fp32 contents of buffer b (n elements; I32 buffers hold exact integers), or NULL when b
 * is out of range or an unbound weight. Owned by the VM; meaningful after a step. */
const float *refvm_buffer(const refvm *vm, int32_t b, int64_t *n);
/* Position range a program can decode: decode.max_seq (or the KV cache rows). */
int64_t refvm_max_seq(const refvm *vm);
/* Continue a decode in another program: copy every KV cache of src into dst's KV cache of the
 * same name, e.g. from a program AMK lowered for position p to the one for p + 1 (AMK's programs
 * hold their position as constants). IR_ERR_MALFORMED naming the buffer when a cache of dst has
 * no namesake of the same shape in src; then dst's caches are partly copied. */
ir_status refvm_kv_copy(refvm *dst, const refvm *src, ir_error *err);

/* ---------------------------------------------------------------- replay and golden inputs */

/* The task order an amk-verify witness gives to replay (refvm_opts.schedule) and its position:
 * a deadlock or unwritten-read witness's "prefix"; a race's "interleaving.run" and then the
 * racing pair in the order that shows the race. */
typedef struct {
    int32_t *order;                /* owned */
    int32_t n;
    int64_t pos;
    char program_sha256[65];       /* the witness's program hash, "" when it has none */
} refvm_replay;

/* Read the witness object (or a verdict object holding it under "witness") from JSON text;
 * where names the source in errors. IR_ERR_UNSUPPORTED for a witness kind without a task order
 * (e.g. occupancy), IR_ERR_MALFORMED for anything else that is not a witness. The caller frees
 * r with refvm_replay_free (also safe after a failure). */
ir_status refvm_replay_from_witness(const char *text, size_t len, const char *where,
                                    refvm_replay *r, ir_error *err);
void refvm_replay_free(refvm_replay *r);

/* A Hugging Face fixture's golden.json: prompt, greedy tokens, and one logits row per fed
 * position, every row of one width, every value a finite float. */
typedef struct {
    int32_t *prompt, *tokens;      /* owned */
    int n_prompt, n_tokens, n_rows;
    int64_t width;
    float *logits;                 /* owned, n_rows x width */
} refvm_golden;

/* Read golden JSON text (where names the source in errors). The caller frees g with
 * refvm_golden_free (also safe after a failure). */
ir_status refvm_golden_read(const char *text, size_t len, const char *where, refvm_golden *g,
                            ir_error *err);
void refvm_golden_free(refvm_golden *g);

/* ---------------------------------------------------------------- the correctness gate */

/* Tolerance of the VM-vs-eager comparison: max |vm - eager| <= rel * max |eager|.
 * Both compute in fp32 from the same fp32 weights, so this does not depend on the file dtype;
 * see SPEC.md section 10. */
#define REFVM_GATE_REL_TOL 1e-4

typedef struct {
    double max_abs_err;            /* max over the vocabulary of |a - b| */
    double max_abs_ref;            /* max |b| */
    int32_t top_a, top_b;          /* argmax of each (lowest index on ties) */
    bool pass;                     /* max_abs_err <= tol * max_abs_ref and top_a == top_b */
} refvm_gate_cmp;

/* Compare logits a (candidate) against b (reference) with relative tolerance tol. */
refvm_gate_cmp refvm_gate_compare(const float *a, const float *b, int64_t n, double tol);
/* argmax, lowest index on ties, NaN never taken (0 when every element is NaN); -1 when
 * n <= 0. SAMPLE_ARGMAX's semantics, as the megakernel computes it too. */
int32_t refvm_argmax(const float *x, int64_t n);

/* RoPE frequencies of SPEC 5 and 8.7: inv_freq[i] = theta^(-2i/hd), with llama3 bands when
 * llama3 is set, rounded to fp32. */
typedef struct {
    int64_t head_dim;
    double theta;
    bool llama3;
    double factor, low_freq, high_freq;
    int64_t orig_max;
} refvm_rope;

/* cos and sin of the head_dim/2 angles pos * inv_freq[i] into cs[2i], cs[2i+1] (double), as
 * the reference VM's ROPE computes them; the megakernel's RoPE tables come from here too. */
void refvm_rope_angles(const refvm_rope *r, int64_t pos, double *cs);

#endif /* AMK_REFVM_H */
