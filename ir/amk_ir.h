/*
 * amk_ir.h - the megakernel IR: data model, JSON reader/writer, GPU targets and the graph
 * helpers every other part of amk-verify builds on.
 *
 * A program is a list of buffers, counters and tasks (one task = one op run by one block of a
 * persistent cooperative launch), optionally with a page allocation, the ScheduleConfig that
 * produced it, the GPU target, and our launch-plan extension (grid size, block size, dynamic
 * SMEM and the exact per-block task queues). The JSON format is AutoMegaKernel IR v0.2.x plus
 * extra top-level keys that AMK readers ignore; SPEC.md is the normative description.
 *
 * Conventions:
 *   - every function that can fail returns an ir_status and fills an ir_error when given one;
 *   - nothing here prints, exits or aborts;
 *   - "the caller frees" always names the matching free function.
 */
#ifndef AMK_IR_H
#define AMK_IR_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "base/base.h"

#define AMK_TOOL_VERSION "0.1.0"
#define AMK_IR_VERSION "0.2.0"  /* on-disk format written; major 0 is accepted on read */
#define AMK_ABI_VERSION "0.2"

/* ABI caps of one task, as in AMK's vm/abi.h. */
#define IR_MAX_INPUTS 8
#define IR_MAX_OUTPUTS 4
#define IR_MAX_WAITS 8
#define IR_MAX_RANK 4

#ifndef IR_MAX_PARAMS
#define IR_MAX_PARAMS 32        /* params per task */
#endif
#ifndef IR_MAX_NAME
#define IR_MAX_NAME 64          /* param keys, target names, tiling keys, fusion op names */
#endif
#ifndef IR_MAX_ELEMS
#define IR_MAX_ELEMS ((int64_t)1 << 48)  /* largest element count of one buffer */
#endif
#ifndef IR_MAX_DIM
#define IR_MAX_DIM ((int64_t)1 << 40)    /* largest single dimension */
#endif

/* ---------------------------------------------------------------- status and errors */

typedef enum {
    IR_OK = 0,
    IR_ERR_MALFORMED,   /* input does not describe a valid program (exit 2) */
    IR_ERR_IO,          /* file could not be read or written (exit 2) */
    IR_ERR_NOMEM,       /* allocation failed */
    IR_ERR_UNSUPPORTED  /* valid input that this tool refuses to handle (exit 2) */
} ir_status;

/* One error record: what went wrong, where (a JSON path such as "tasks[17].waits[0].threshold",
 * a task id, or a file name) and why. */
typedef struct {
    ir_status status;
    char where[256];
    char why[512];
} ir_error;

/* Fill err (if not NULL) with status, where and a printf-style message; returns status. */
ir_status ir_fail(ir_error *err, ir_status status, const char *where, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

/* Name of a status: "OK", "MALFORMED", "IO", "NOMEM", "UNSUPPORTED". */
const char *ir_status_name(ir_status s);

/* ---------------------------------------------------------------- enums (AMK codes) */

typedef enum {
    IR_F32 = 0, IR_F16 = 1, IR_BF16 = 2, IR_F8E4M3 = 3, IR_F8E5M2 = 4,
    IR_I32 = 5, IR_I8 = 6, IR_I4 = 7, IR_U8 = 8, IR_BOOL = 9,
    IR_DTYPE_COUNT
} ir_dtype;

typedef enum { IR_HBM = 0, IR_GLOBAL_SCRATCH = 1, IR_SMEM = 2, IR_REGISTER = 3, IR_SPACE_COUNT } ir_space;

typedef enum {
    IR_WEIGHT = 0, IR_ACTIVATION = 1, IR_KV_CACHE = 2, IR_IO_INPUT = 3, IR_IO_OUTPUT = 4,
    IR_CONST = 5, IR_KIND_COUNT
} ir_kind;

typedef enum {
    IR_OP_NOP = 0, IR_OP_COPY = 1, IR_OP_EMBED = 2, IR_OP_RMSNORM = 3, IR_OP_LAYERNORM = 4,
    IR_OP_GEMV_TILE = 5, IR_OP_GEMM_TILE = 6, IR_OP_ATTENTION_TILE = 7, IR_OP_ROPE = 8,
    IR_OP_SILU_MUL = 9, IR_OP_GELU = 10, IR_OP_ADD = 11, IR_OP_MUL = 12, IR_OP_DEQUANT = 13,
    IR_OP_SOFTMAX = 14, IR_OP_ALLREDUCE_SHARD = 15, IR_OP_KV_APPEND = 16,
    IR_OP_SAMPLE_ARGMAX = 17, IR_OP_ATTENTION_COMBINE = 18, IR_OP_FUSED = 19,
    IR_OP_COUNT
} ir_op;

/* FUSED recipes (param "recipe"; SPEC.md section 5). Inputs and outputs, in slot order:
 *   1 GEMV_PAIR       x, Wa, Wb -> ya, yb           two GEMV tiles over one n range
 *   2 NORM_GEMV       x, g, W (, bias) -> y         RMSNORM of x (eps) feeding one GEMV tile
 *   3 NORM_GEMV_PAIR  x, g, Wa, Wb -> ya, yb        RMSNORM of x feeding a GEMV pair
 *   4 SILU_GEMV       a, b, W (, bias) -> y         silu(a) * b feeding one GEMV tile
 *   5 ROPE_APPEND     x -> cache                    ROPE of x written to cache row pos
 *   6 ROPE_ATTENTION  q, k, v, kc, vc -> o          ROPE of q and k at pos, then attention of
 *                                                   KV heads [kv_head_off, +kv_heads) over cache
 *                                                   rows [0, pos) plus the row (ROPE(k), v)
 * Any other recipe is opaque: its footprints are whole buffers. */
typedef enum {
    IR_RECIPE_GEMV_PAIR = 1, IR_RECIPE_NORM_GEMV = 2, IR_RECIPE_NORM_GEMV_PAIR = 3,
    IR_RECIPE_SILU_GEMV = 4, IR_RECIPE_ROPE_APPEND = 5, IR_RECIPE_ROPE_ATTENTION = 6
} ir_recipe;

/* Where a GEMV-shaped recipe keeps its weights: first weight input slot and how many (1 or 2);
 * false for recipes that are not GEMV-shaped (and unknown ones). */
bool ir_recipe_weights(int64_t recipe, int *first_slot, int *n_weights);

/* Name <-> enum. The *_name functions return "?" for out-of-range values; the *_parse
 * functions return false when the name is unknown. */
const char *ir_dtype_name(ir_dtype d);
const char *ir_space_name(ir_space s);
const char *ir_kind_name(ir_kind k);
const char *ir_op_name(ir_op op);
bool ir_dtype_parse(const char *s, ir_dtype *out);
bool ir_space_parse(const char *s, ir_space *out);
bool ir_kind_parse(const char *s, ir_kind *out);
bool ir_op_parse(const char *s, ir_op *out);

/* Bits per element (4 for I4). */
int ir_dtype_bits(ir_dtype d);
/* Bytes for n elements, rounded up for packed types. */
int64_t ir_dtype_nbytes(ir_dtype d, int64_t n);
/* Kinds a task may never write and that are valid before the launch starts. */
bool ir_kind_is_readonly(ir_kind k);

/* ---------------------------------------------------------------- position-dependent values */

/* An integer that depends on the decode position: clamp(mul * pos + add, lo, hi).
 * A constant c is {0, c, INT64_MIN, INT64_MAX}. */
typedef struct {
    int64_t mul, add, lo, hi;
} ir_pexpr;

ir_pexpr ir_pexpr_const(int64_t c);
/* Value at position pos. */
int64_t ir_pexpr_eval(ir_pexpr e, int64_t pos);
bool ir_pexpr_is_const(ir_pexpr e);

/* ---------------------------------------------------------------- records */

typedef struct {
    int32_t id;
    char *name;              /* owned */
    ir_kind kind;
    ir_dtype dtype;
    int rank;                /* 0..IR_MAX_RANK */
    int64_t shape[IR_MAX_RANK];
    ir_space space;
    char *source;            /* safetensors key for WEIGHT/CONST; NULL when JSON null */
} ir_buffer;

typedef struct {
    int32_t id;
    int64_t init;            /* must be 0 for a launchable program (checked by the verifier) */
    char *note;              /* owned, may be "" */
} ir_counter;

typedef struct {
    int32_t counter;
    int64_t threshold;       /* run only once counters[counter] >= threshold */
} ir_wait;

typedef enum { IR_PARAM_INT, IR_PARAM_REAL, IR_PARAM_RAW } ir_param_type;

/* One op parameter. AMK params are flat ints and reals; anything else (e.g. a FUSED recipe
 * list) is kept verbatim as compact JSON text in raw so it round-trips. A param may also depend
 * on the decode position (has_pexpr); then i holds its value at the program's own position. */
typedef struct {
    char key[IR_MAX_NAME];
    ir_param_type type;
    int64_t i;
    double r;
    char *raw;               /* owned, only for IR_PARAM_RAW */
    bool has_pexpr;
    ir_pexpr pexpr;
} ir_param;

typedef struct {
    int32_t id;
    ir_op op;
    int n_inputs, n_outputs, n_waits, n_params;
    int32_t inputs[IR_MAX_INPUTS];     /* buffer ids read */
    int32_t outputs[IR_MAX_OUTPUTS];   /* buffer ids written */
    int32_t out_counter;               /* incremented by 1 when the task is done */
    ir_wait waits[IR_MAX_WAITS];
    ir_param *params;                  /* owned array of n_params */
    int32_t sm;                        /* queue / block; -1 when JSON null */
    int64_t est_bytes, est_flops;
    char *label;                       /* owned, may be "" */
} ir_task;

/* Whether t is a weight-only quantized GEMV/GEMM tile: param qdtype I8 or I4 and inputs
 * [x, qW, scales(, zeros)], where slot 2 holds scales (not a bias). */
bool ir_gemv_quantized(const ir_task *t);

/* The KV heads [*off, *off + *n) an attention task (ATTENTION_TILE, FUSED recipe 6) covers:
 * its params kv_head_off (default 0) and kv_heads (default nkv - kv_head_off). False when one
 * of them is present but not an int. Nothing is range-checked here (the verifier does). */
bool ir_attention_heads(const ir_task *t, int64_t nkv, int64_t *off, int64_t *n);

typedef struct {
    int32_t id;
    ir_space space;
    int64_t nbytes;
    int64_t live_start, live_end;      /* task-order interval, -1 when unknown */
} ir_page;

typedef struct {
    int n_map;
    int32_t *map_buffer;               /* buffer_to_page keys, in file order */
    int32_t *map_page;                 /* matching page ids */
    int n_pages;
    ir_page *pages;
} ir_pages;

typedef enum { IR_SM_LOAD_BALANCE = 0, IR_SM_ROUND_ROBIN, IR_SM_EXPLICIT } ir_sm_policy;
typedef enum { IR_PAGES_GRAPH_COLOR = 0, IR_PAGES_LINEAR, IR_PAGES_NONE } ir_page_policy;

typedef struct {
    char op[IR_MAX_NAME];              /* archetype, e.g. "gemv", "attention" */
    char key[IR_MAX_NAME];             /* e.g. "N_tile", "kv_block" */
    int64_t value;
} ir_tiling;

typedef struct {
    int n;
    char (*names)[IR_MAX_NAME];        /* owned array of n op names */
} ir_fusion_group;

/* AMK's ScheduleConfig. Defaults (ir_config_default): load_balance, depth 2, graph_color,
 * 256 threads, 0 dynamic SMEM, no tiling, no fusion. */
typedef struct {
    int n_tiling;
    ir_tiling *tiling;                 /* owned */
    int n_groups;
    ir_fusion_group *groups;           /* owned */
    ir_sm_policy sm_policy;
    int n_explicit;
    int32_t *explicit_task;            /* owned; explicit {task id: queue} map, file order */
    int32_t *explicit_queue;
    int64_t pipelining_depth;
    ir_page_policy page_policy;
    int64_t threads_per_block;
    int64_t smem_bytes_per_block;
} ir_config;

/* A GPU as data. The first block of fields is AMK's GpuTarget; the second block is ours
 * (written as extra keys; derived from sm_arch when a file lacks them). */
typedef struct {
    char name[IR_MAX_NAME];
    int64_t sm_arch;                   /* compute capability * 10 */
    int64_t num_sms;
    int64_t smem_bytes_per_sm;
    int64_t smem_bytes_per_block_optin;
    int64_t regs_per_sm;
    int64_t max_threads_per_sm;
    int64_t max_regs_per_thread;
    int64_t l2_bytes;
    int64_t hbm_bytes;
    double hbm_bandwidth_gbs;
    double fp16_tflops;
    double clock_ghz;
    bool supports_cooperative;
    bool wddm_tdr;
    double measured_bw_gbs;            /* 0 = not measured */
    char note[256];
    /* ours */
    int64_t max_threads_per_block;
    int64_t max_blocks_per_sm;
    int64_t smem_reserved_per_block;   /* driver-reserved SMEM per resident block */
    int64_t reg_alloc_unit;            /* registers are allocated per warp in units of this */
} ir_target;

/* Our launch-plan extension: exactly what the megakernel launches. Queue q (block q) runs
 * queue_tasks[queue_start[q] .. queue_start[q+1]) in order. */
typedef struct {
    int64_t grid;
    int64_t threads_per_block;
    int64_t dynamic_smem_bytes;
    int64_t static_smem_bytes;
    int64_t regs_per_thread;
    int64_t pipelining_depth;
    int32_t *queue_start;              /* owned, grid + 1 entries */
    int32_t *queue_tasks;              /* owned, queue_start[grid] entries */
} ir_plan;

/* Decode-loop extension: the position this program was lowered for and the largest position
 * plus one the decode loop may reach (KV cache length). */
typedef struct {
    int64_t pos;
    int64_t max_seq;
} ir_decode;

typedef struct {
    int n;
    char **items;                      /* owned strings */
} ir_warnings;

typedef struct {
    char ir_version[32];
    char abi_version[32];
    char *meta_json;                   /* compact JSON object text, owned; "{}" when absent */
    bool has_target;
    ir_target target;
    int n_buffers, n_counters, n_tasks;
    int cap_buffers, cap_counters, cap_tasks;
    ir_buffer *buffers;                /* owned; buffers[i].id == i once validated */
    ir_counter *counters;
    ir_task *tasks;
    bool has_pages;
    ir_pages pages;
    bool has_config;
    ir_config config;
    bool has_plan;
    ir_plan plan;
    bool has_decode;
    ir_decode decode;
    ir_warnings warnings;              /* unknown keys met while reading, and similar notes */
} ir_program;

/* ---------------------------------------------------------------- construction */

/* An integer field of the program's meta object (e.g. AMK's "pos"); false when absent or not an
 * integer. */
bool ir_meta_int(const ir_program *p, const char *key, int64_t *out);


/* A new empty program (ir_version/abi_version set, meta "{}"). NULL when out of memory.
 * The caller frees it with ir_program_free. */
ir_program *ir_program_new(void);
/* Frees p and everything it owns; NULL is fine. */
void ir_program_free(ir_program *p);

/* Append a buffer; returns its id (== index), or -1 on allocation failure or rank > 4.
 * name and source are copied; source may be NULL. */
int32_t ir_add_buffer(ir_program *p, const char *name, ir_kind kind, ir_dtype dtype, int rank,
                      const int64_t *shape, ir_space space, const char *source);
/* Append a counter with init 0; returns its id or -1 on allocation failure. */
int32_t ir_add_counter(ir_program *p, const char *note);
/* Append an empty task (no inputs, outputs, waits, params; sm -1); returns a pointer to it
 * (valid until the next ir_add_task) or NULL on allocation failure. label is copied. */
ir_task *ir_add_task(ir_program *p, ir_op op, int32_t out_counter, const char *label);

/* Task editing; each returns IR_OK or IR_ERR_MALFORMED when a cap is exceeded, IR_ERR_NOMEM. */
ir_status ir_task_add_input(ir_task *t, int32_t buffer);
ir_status ir_task_add_output(ir_task *t, int32_t buffer);
ir_status ir_task_add_wait(ir_task *t, int32_t counter, int64_t threshold);
/* Set (or replace) an int / real param. */
ir_status ir_task_set_int(ir_task *t, const char *key, int64_t v);
ir_status ir_task_set_real(ir_task *t, const char *key, double v);
/* Set an int param that depends on the position; its value is e evaluated at pos. */
ir_status ir_task_set_pexpr(ir_task *t, const char *key, ir_pexpr e, int64_t pos);

/* Lookup: the param, or NULL. */
const ir_param *ir_task_param(const ir_task *t, const char *key);
/* Integer value of param key into *out; false if absent or not an int. */
bool ir_task_int(const ir_task *t, const char *key, int64_t *out);
/* Numeric value (int or real) of param key; false if absent or not numeric. */
bool ir_task_real(const ir_task *t, const char *key, double *out);
/* The param as a position expression (a constant for a plain int); false if absent/not int. */
bool ir_task_pexpr(const ir_task *t, const char *key, ir_pexpr *out);

/* Add a warning (copied). Returns IR_OK or IR_ERR_NOMEM. */
ir_status ir_warn(ir_warnings *w, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Numbers of elements and bytes of a buffer (0 for rank 0 means a scalar: 1 element). */
int64_t ir_buffer_numel(const ir_buffer *b);
int64_t ir_buffer_nbytes(const ir_buffer *b);
/* Sum of bytes over WEIGHT buffers: what one decode step must stream at least once. */
int64_t ir_weight_bytes(const ir_program *p);
/* The buffer of kind and dtype named name, else the first buffer of that kind and dtype (how
 * the VM and the megakernel find "tokens", "logits" and "next_token"); -1 when there is none. */
int32_t ir_find_io(const ir_program *p, ir_kind kind, ir_dtype dtype, const char *name);

/* Config defaults and ownership. ir_config_free frees what c owns (not c itself). */
void ir_config_default(ir_config *c);
void ir_config_free(ir_config *c);
/* Look up tiling[op][key]; false when absent. */
bool ir_config_tiling(const ir_config *c, const char *op, const char *key, int64_t *out);

/* Allocate an empty plan for grid queues holding n_entries task slots in total. */
ir_status ir_plan_alloc(ir_plan *plan, int64_t grid, int64_t n_entries);
void ir_plan_free(ir_plan *plan);

/* ---------------------------------------------------------------- JSON */

/* Read options. */
typedef struct {
    bool strict_config;       /* unknown config keys are errors instead of warnings */
} ir_read_opts;

/* Parse a program from JSON text (len bytes, need not be NUL-terminated). On success *out is a
 * new program the caller frees with ir_program_free. Never crashes on any input: malformed text
 * gives IR_ERR_MALFORMED with err->where set to the JSON path at fault. Structural checks done
 * here: types, ranges, enum names, caps, ids dense and equal to position, references to
 * existing buffers/counters/pages/tasks, shapes positive and not overflowing, major version. */
ir_status ir_read_json(const char *text, size_t len, const ir_read_opts *opts, ir_program **out,
                       ir_error *err);
/* Same, from a file. */
ir_status ir_read_file(const char *path, const ir_read_opts *opts, ir_program **out,
                       ir_error *err);

/* The one cap on a file read whole (programs, configs, certificates, claims, goldens): the base
 * layer's BASE_MAX_FILE_BYTES. */
#define IR_MAX_FILE_BYTES BASE_MAX_FILE_BYTES

/* base_read_file with IR errors: read a whole regular file of at most max_bytes (IR_MAX_FILE_BYTES unless a caller needs less)
 * into a NUL-terminated buffer; a gzip file is read decompressed. On success *text (the caller
 * frees it with free()) holds *len bytes. IR_ERR_IO when the file cannot be opened or read or is
 * not a regular file (a device, FIFO or directory: refused before reading), IR_ERR_MALFORMED
 * when it (or its decompressed text) is larger than max_bytes, checked before allocating. */
ir_status ir_read_text_file(const char *path, size_t max_bytes, char **text, size_t *len,
                            ir_error *err);

/* Serialize p as canonical JSON (2-space indent, AMK key order, our keys after AMK's). On
 * success *out is a NUL-terminated string of *len bytes that the caller frees with free(). */
ir_status ir_write_json(const ir_program *p, char **out, size_t *len, ir_error *err);
/* Same, to a file, through ir_out ("-" is standard output; a failure leaves no half file). */
ir_status ir_write_file(const ir_program *p, const char *path, ir_error *err);

/* An output file written without losing what was there (ir_out.c). A regular file, or no file,
 * is replaced atomically: the bytes go to a temporary file beside it (same mode as the old file)
 * that is renamed over it on commit, so a failure leaves the old file intact. A device, FIFO or
 * other non-regular file is written through, never replaced (-o /dev/null stays a device); a
 * symlink is followed and its target replaced; "-" is standard output; a directory is refused.
 * Write to o.f between open and commit; abort discards the temporary file. */
typedef struct {
    FILE *f;
    char *path;               /* what is written (a symlink's target); NULL for stdout */
    char *tmp;                /* the temporary file, NULL when written through */
    bool is_stdout;
} ir_out;

ir_status ir_out_open(ir_out *o, const char *path, ir_error *err);
/* Flush and close, then rename the temporary file into place. IR_ERR_IO on any write error. */
ir_status ir_out_commit(ir_out *o, ir_error *err);
void ir_out_abort(ir_out *o);
/* Write n bytes to path through ir_out: open, write, commit. */
ir_status ir_out_write(const char *path, const void *data, size_t n, ir_error *err);

/* Parse a ScheduleConfig object from JSON text. strict: unknown keys and bad values are errors
 * naming the field (for `amk lower --config`). Caller frees with ir_config_free. */
ir_status ir_config_read_json(const char *text, size_t len, bool strict, ir_config *out,
                              ir_error *err);

/* Serialize a ScheduleConfig as the one-line JSON object a program's "config" holds (tiling in
 * entry order, every scalar written). ir_config_read_json reads it back to an equal config. On
 * success *out (NUL-terminated, *len bytes) is freed by the caller with free(). */
ir_status ir_config_write_json(const ir_config *c, char **out, size_t *len, ir_error *err);

/* ---------------------------------------------------------------- targets */

/* Built-in target by name ("h100", "h200", "a100", "b200", "rtx5090", "l4", "l40s", "a10g",
 * "t4"); NULL when unknown. The pointer is to static data. */
const ir_target *ir_target_builtin(const char *name);
/* Number of built-in targets and the i-th one. */
int ir_target_count(void);
const ir_target *ir_target_at(int i);
/* Read a target from a JSON file holding one target object (AMK field names). */
ir_status ir_target_read_file(const char *path, ir_target *out, ir_error *err);
/* A cJSON number (passed as const void *, so this header needs no cJSON) that is an integer in
 * [lo, hi]: true and *out set; false for anything else, with no out-of-range float-to-int
 * conversion ever made. */
bool ir_json_int(const void *json_number, int64_t lo, int64_t hi, int64_t *out);
/* The same from JSON text; where names the source in errors. */
ir_status ir_target_read_json(const char *text, size_t len, const char *where, ir_target *out,
                              ir_error *err);
/* Fill our extra fields from sm_arch when a target lacks them. */
void ir_target_fill_derived(ir_target *t);

/* ---------------------------------------------------------------- op table */

typedef struct {
    ir_op op;
    int min_inputs, max_inputs;    /* max -1: up to IR_MAX_INPUTS */
    int min_outputs, max_outputs;
    const char *required[8];       /* NULL-terminated list of required param keys */
} ir_op_info;

/* Static arity and required params of op (NULL when op is out of range). */
const ir_op_info *ir_op_spec(ir_op op);

/* ---------------------------------------------------------------- graph helpers */

/* Compressed adjacency: row r holds idx[start[r] .. start[r+1]). */
typedef struct {
    int32_t n;
    int32_t *start;
    int32_t *idx;
} ir_csr;

/* Derived structure of a program, all owned; ir_graph_free releases it. Requires ids to be
 * valid (as ir_read_json guarantees). */
typedef struct {
    ir_csr producers;      /* counter -> tasks whose out_counter it is (task-list order) */
    ir_csr waiters;        /* counter -> tasks that wait on it */
    ir_csr writers;        /* buffer -> tasks that write it */
    ir_csr readers;        /* buffer -> tasks that read it */
    ir_csr succ;           /* task -> tasks that wait on its out_counter (dependency edges) */
    ir_csr pred;           /* task -> producers of the counters it waits on */
    int32_t *topo;         /* a topological order of the dependency edges (n_tasks), or NULL
                              when there is a cycle */
} ir_graph;

/* Build g from p. Returns IR_OK (a cycle is not an error: g->topo is NULL) or IR_ERR_NOMEM. */
ir_status ir_graph_build(const ir_program *p, ir_graph *g);
void ir_graph_free(ir_graph *g);

typedef enum {
    IR_ORDER_LIST = 0,        /* queues of a plan-less program run in task-list order */
    IR_ORDER_TOPO             /* ... or in one global topological order */
} ir_queue_order;

/* The queues a program runs: its launch plan's, or (without a plan) one queue per distinct sm
 * value in increasing sm order followed by one queue per task whose sm is null, each ordered
 * per `order`. On success *start (n_queues + 1 entries) and *tasks (n_tasks entries) are
 * malloc'd arrays the caller frees with free(). IR_ERR_MALFORMED when the plan does not list
 * every task exactly once, or order is TOPO and the dependency graph has a cycle. */
ir_status ir_program_queues(const ir_program *p, ir_queue_order order, int32_t *n_queues,
                            int32_t **start, int32_t **tasks, ir_error *err);

/* AMK's loader (vm/loader.py), for programs AMK runs without a launch plan of ours. */

/* The dynamic SMEM per block AMK's loader opts into: the config's, raised to what its attention
 * (two floats of head_dim per warp) and quantized GEMV (K floats, at most 16384) need. */
int64_t ir_amk_loader_smem(const ir_program *p, int64_t threads);

/* Replace p's launch plan (if any) by the one AMK's loader builds on target t: its topological
 * order (Kahn, sources and successors in increasing id, first in first out); when some task has
 * an sm and all are inside the grid, those SMs and SM 0 for the rest, otherwise each task in
 * that order on the least loaded SM by (est_bytes, est_flops, tasks, SM number); every queue in
 * the topological order. The grid is t's SM count (the loader launches min(SMs, co-resident
 * blocks); the resident obligation then checks that a block fits per SM). Threads and SMEM as
 * the loader sets them; registers unknown (0: the worst case is assumed). Each task's sm is set
 * to its queue. IR_ERR_MALFORMED when the dependency graph has a cycle (the loader refuses). */
ir_status ir_amk_loader_plan(ir_program *p, const ir_target *t, ir_error *err);

/* A box of elements: per dimension the half-open range [lo, hi) of a buffer of rank dims,
 * each bound a position expression. */
typedef struct {
    int rank;
    ir_pexpr lo[IR_MAX_RANK], hi[IR_MAX_RANK];
} ir_box;

/* The elements task t touches in its slot-th input (is_output false) or output (true), by the
 * footprint rules of SPEC.md ("Op semantics"): GEMV/GEMM tiles, KV rows, attention windows;
 * everything else is the whole buffer. Returns IR_ERR_MALFORMED (err names the task and param)
 * when a param the rule needs is missing or not an int. */
ir_status ir_task_footprint(const ir_program *p, const ir_task *t, bool is_output, int slot,
                            ir_box *out, ir_error *err);
/* The box evaluated at pos, as concrete [lo, hi) per dimension. */
void ir_box_eval(const ir_box *b, int64_t pos, int64_t *lo, int64_t *hi);

/* ---------------------------------------------------------------- hashing */

/* SHA-256 of len bytes as 64 lowercase hex digits plus NUL. */
void ir_sha256_hex(const void *data, size_t len, char out[65]);
/* SHA-256 of p's canonical JSON (ir_write_json), the identity certificates bind to. */
ir_status ir_program_sha256(const ir_program *p, char out[65], ir_error *err);

#endif /* AMK_IR_H */
