/*
 * lower.h - the lower/ part: Llama-family model shapes (built-in presets and Hugging Face
 * config.json) and the lowering of such a decoder plus a ScheduleConfig and a GPU target into
 * a program with an explicit launch plan (one decode step at position pos, persistent KV
 * cache, pages and queues), in our dialect or AMK's (SPEC.md section 8).
 *
 * The model description (lower_model) is shared with the reference forward in refvm/, which
 * must not depend on the IR: it is plain numbers read from a preset or a Hugging Face
 * config.json.
 */
#ifndef AMK_LOWER_H
#define AMK_LOWER_H

#include "ir/amk_ir.h"

/* A Llama-family decoder's shape, as in a Hugging Face LlamaConfig. */
typedef struct {
    char name[IR_MAX_NAME];      /* preset name or "hf" */
    int64_t hidden;              /* hidden_size */
    int64_t n_layers;            /* num_hidden_layers */
    int64_t n_heads;             /* num_attention_heads */
    int64_t n_kv_heads;          /* num_key_value_heads */
    int64_t head_dim;            /* explicit or hidden / n_heads */
    int64_t intermediate;        /* intermediate_size */
    int64_t vocab;               /* vocab_size */
    int64_t max_pos;             /* max_position_embeddings */
    double rms_eps;              /* rms_norm_eps */
    double rope_theta;           /* rope_theta */
    bool tie_embeddings;         /* tie_word_embeddings: lm_head reads the embedding table */
    bool rope_llama3;            /* rope_scaling with rope_type "llama3" */
    double rope_factor, rope_low_freq, rope_high_freq;
    int64_t rope_orig_max;       /* original_max_position_embeddings of llama3 scaling */
} lower_model;

/* Fill m with a built-in preset ("toy", "smollm2-135m", "llama-3.2-1b", "llama-3-8b",
 * "llama-3-70b"). IR_ERR_UNSUPPORTED naming the preset when unknown. */
ir_status lower_model_preset(const char *name, lower_model *m, ir_error *err);

/* Read a Hugging Face config.json. Anything that cannot be lowered faithfully (MoE, MLA,
 * attention or MLP biases, unknown rope_scaling types, inconsistent dims, non-Llama
 * architectures) is IR_ERR_UNSUPPORTED with the exact reason; bad JSON is IR_ERR_MALFORMED. */
ir_status lower_model_from_hf_config(const char *path, lower_model *m, ir_error *err);

/* A preset name or a path to config.json. */
ir_status lower_model_load(const char *name_or_path, lower_model *m, ir_error *err);

/* The model a program was lowered from, read back from its meta.model_config (every
 * lower_model field, as lower_program writes them). IR_ERR_MALFORMED naming the field when it
 * is absent or of the wrong type. */
ir_status lower_model_from_meta(const ir_program *p, lower_model *m, ir_error *err);

/* The form of the IR a lowering writes (SPEC 8.8). Both compute the same decode step. */
typedef enum {
    LOWER_DIALECT_OURS = 0,      /* flat [1, n] vectors, one-input ROPE and KV_APPEND taking pos
                                    from a param, rank-2 KV caches, FUSED recipes, one partials
                                    buffer per split attention */
    LOWER_DIALECT_AMK            /* what AMK's validate() and reference ops accept: token_id, pos
                                    and reshape_id0 inputs, head-shaped q/k reshaped by EMBED,
                                    ROPE [x, pos], KV_APPEND [src, cache], rank-3 KV caches, one
                                    partial buffer per split tile (flags 2), no FUSED tasks */
} lower_dialect;

/* Name of a dialect ("ours", "amk"); "?" out of range. */
const char *lower_dialect_name(lower_dialect d);
/* Parse "ours" or "amk"; false for anything else. */
bool lower_dialect_parse(const char *s, lower_dialect *out);

/* Largest number of split-attention partials one AMK ATTENTION_COMBINE merges (its inputs). */
#define LOWER_AMK_MAX_PARTIALS IR_MAX_INPUTS

/* Lowering options besides the ScheduleConfig. */
typedef struct {
    int64_t pos;                 /* decode position of this step (default 0) */
    int64_t max_seq;             /* KV cache length; default min(max_pos, 4096) */
    ir_dtype dtype;              /* weight dtype: IR_F32, IR_F16 or IR_BF16 (default BF16) */
    bool sample_argmax;          /* append SAMPLE_ARGMAX after the logits */
    lower_dialect dialect;       /* default LOWER_DIALECT_OURS */
} lower_opts;

void lower_opts_default(lower_opts *o);

/* Lower model m under config c for target t. On success *out is a new program (with meta,
 * target, config, pages, decode and launch_plan set) that the caller frees with
 * ir_program_free. Refused configs are IR_ERR_UNSUPPORTED or IR_ERR_MALFORMED naming the
 * config field. Deterministic: the same inputs give a program with byte-identical JSON.
 * With o->dialect LOWER_DIALECT_AMK every fusion group is lowered unfused (meta.unfused lists
 * them), and a config AMK cannot express (attention.kv_heads below n_kv_heads, a kv_block giving
 * more than LOWER_AMK_MAX_PARTIALS tiles) is IR_ERR_UNSUPPORTED naming the tiling key. */
ir_status lower_program(const lower_model *m, const ir_config *c, const ir_target *t,
                        const lower_opts *o, ir_program **out, ir_error *err);

/* ---------------------------------------------------------------- additions */

/* lower_opts.max_seq 0 (what lower_opts_default sets) selects min(max_pos, 4096); an explicit
 * value must be in [1, max_pos]. lower_opts.pos must be in [0, max_seq). */

/* Number of built-in presets and the i-th preset's name (NULL when out of range). */
int lower_preset_count(void);
const char *lower_preset_at(int i);

/* Same as lower_model_from_hf_config, from the text of a config.json (len bytes). */
ir_status lower_model_from_hf_json(const char *text, size_t len, lower_model *m, ir_error *err);

/* Check a ScheduleConfig's semantics without lowering: tiling archetypes and keys (gemv.N_tile,
 * attention.kv_block), supported fusion groups, ranges of threads_per_block, pipelining_depth,
 * smem_bytes_per_block. IR_OK, or the refusal naming the config field. */
ir_status lower_config_check(const ir_config *c, ir_error *err);

/* The ScheduleConfig's knobs as data: the one table lower_config_check takes its ranges from
 * and that `amk propose` lists as the search space (SPEC.md sections 8.5 and 16). */
typedef enum {
    LOWER_KNOB_INT = 0,          /* an integer in [lo, hi], a multiple of multiple_of */
    LOWER_KNOB_ENUM,             /* one of choices[] (index == the ir_ enum value) */
    LOWER_KNOB_GROUPS            /* fusion_grouping: a set of the groups lower_fusion_group lists */
} lower_knob_type;

typedef struct {
    const char *name;            /* config path, e.g. "tiling.gemv.N_tile", "pipelining_depth" */
    lower_knob_type type;
    const char *meaning;         /* one line */
    int64_t lo, hi;              /* INT: the accepted range */
    int64_t multiple_of;         /* INT: accepted values are multiples of this (1: any) */
    int64_t dflt;                /* INT: the value when absent; 0 below lo means "absent: off" */
    bool optional;               /* INT: a tiling key, absent unless the config sets it */
    const char *const *choices;  /* ENUM: the accepted names, NULL-terminated, default first */
    const int64_t *search;       /* INT: values the schedule search tries (0 = absent) */
    int n_search;
} lower_knob;

/* Number of knobs, the i-th one (NULL out of range), the one called name (NULL when none). */
int lower_knob_count(void);
const lower_knob *lower_knob_at(int i);
const lower_knob *lower_knob_find(const char *name);

/* Number of fusion groups the lowering knows, and the i-th one's op names (any order in a
 * config): returns how many names it filled into names (0 when i is out of range). */
int lower_fusion_count(void);
int lower_fusion_group(int i, const char *names[4]);

/* Read a ScheduleConfig file strictly (unknown keys and bad values refused naming the field)
 * and check it with lower_config_check. On success the caller frees c with ir_config_free; on
 * failure c owns nothing. */
ir_status lower_config_read_file(const char *path, ir_config *c, ir_error *err);

#endif /* AMK_LOWER_H */
