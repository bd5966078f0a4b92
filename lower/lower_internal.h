/*
 * lower_internal.h - what the lowering's own files share and nothing else includes: the
 * scheduling passes that run after the task graph is built (config checks, queue assignment,
 * page allocation, launch plan). All of them work on the task list as emitted, whose id order is
 * the one global topological order (every wait names a counter whose producers have lower ids).
 */
#ifndef AMK_LOWER_INTERNAL_H
#define AMK_LOWER_INTERNAL_H

#include "lower/lower.h"

/* The ScheduleConfig after semantic checks, with defaults filled in. */
typedef struct {
    int64_t n_tile;          /* GEMV tile width */
    int64_t kv_block;        /* 0: one attention task per layer */
    int64_t kv_heads;        /* tiling.attention.kv_heads: KV heads per attention task; 0 all */
    int64_t stage_tiles;     /* tiling.gemv.stage_tiles: tiles per projection stage; 0 off */
    /* fusion_grouping (SPEC 8.5): which op sequences become one task */
    bool fuse_gate_up;       /* ["gate","up"] or ["mlp_norm","gate","up"] */
    bool fuse_mlp_norm;      /* ["mlp_norm","gate","up"]: FUSED recipe 3 */
    bool fuse_attn_norm;     /* ["attn_norm","q","k","v"]: FUSED recipe 2 tiles */
    bool fuse_final_norm;    /* ["final_norm","lm_head"]: FUSED recipe 2 tiles */
    bool fuse_o_resid;       /* ["o","resid_attn"]: o tiles with the residual as bias */
    bool fuse_silu_down;     /* ["silu_mul","down"] (+"resid_mlp"): FUSED recipe 4 */
    bool fuse_down_resid;    /* ["down","resid_mlp"] (+"silu_mul"): residual as bias */
    bool fuse_rope_append;   /* ["rope_k","kv_append_k"]: FUSED recipe 5 */
    bool fuse_rope_attn;     /* ["rope_q","attention"]: FUSED recipe 6 */
} lower_knobs;

/* Default GEMV tile width when tiling.gemv.N_tile is absent. */
#define LOWER_DEFAULT_N_TILE 256
/* Largest program the lowering emits; a config asking for more tasks is refused. */
#define LOWER_MAX_TASKS ((int64_t)1 << 22)

/* Check c's semantics (tiling archetypes and keys, fusion groups, ranges of the scalar knobs)
 * and fill k. IR_ERR_UNSUPPORTED / IR_ERR_MALFORMED naming the config field on refusal. */
ir_status lower_config_knobs(const ir_config *c, lower_knobs *k, ir_error *err);

/* Deep copy of a config into dst (which is overwritten, not freed). IR_ERR_NOMEM on failure,
 * leaving dst empty. */
ir_status lower_config_copy(ir_config *dst, const ir_config *src);

/* Set every task's sm from c's policy over grid queues, in task-id (topological) order. An
 * explicit map must name every task once and only queues in [0, grid). */
ir_status lower_assign_sms(ir_program *p, const ir_config *c, int64_t grid, ir_error *err);

/* Bind every ACTIVATION buffer to a page per c->page_policy and set the buffer's space; fills
 * p->pages. Requires sms assigned (SMEM needs all of a buffer's tasks on one queue).
 * task_layer (one entry per task, non-decreasing in id order) limits sharing: the buffers of
 * one page all start in two adjacent layers at most; NULL: no limit. */
ir_status lower_alloc_pages(ir_program *p, const ir_config *c, const int32_t *task_layer,
                            ir_error *err);

/* Fill p->plan from c and t: grid = t->num_sms, queues = task-id order filtered by sm. */
ir_status lower_build_plan(ir_program *p, const ir_config *c, const ir_target *t, ir_error *err);

#endif /* AMK_LOWER_INTERNAL_H */
