/*
 * lower_program.c - builds the task graph of one Llama decode step and runs the scheduling
 * passes over it (lower_sched.c, lower_pages.c).
 *
 * Shapes, named once: H hidden, nh query heads, nkv KV heads, hd head dim, I intermediate,
 * V vocab, S max_seq (KV cache rows), B kv_block, nb = ceil(S/B).
 *
 * The builder emits tasks in dependency order, so task-id order is a topological order; the
 * queues are cut from it. One counter per op instance (all tiles of a projection share it and
 * every consumer joins all of them); nothing is shared across layers and every wait names a
 * counter of the same or an earlier layer.
 */
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "base/base.h"
#include "lower/lower_internal.h"

/* What a consumer must wait for to read a tensor: counter >= threshold. counter -1: nothing
 * (read-only inputs). */
typedef struct {
    int32_t counter;
    int64_t threshold;
} dep;

static const dep NO_DEP = {-1, 0};

typedef struct {
    const lower_model *m;
    const lower_opts *o;
    lower_knobs k;
    ir_program *p;
    ir_error *err;
    int32_t *layer_first;    /* per layer (and one past the last): id of its first task */
    ir_status st;            /* first failure; IR_OK while building goes well */
    int64_t S;               /* KV rows */
    int64_t wbytes;          /* bytes per weight element */
    bool amk;                /* LOWER_DIALECT_AMK (SPEC 8.8) */
    int32_t pos_in;          /* amk: the I32 IO_INPUT holding pos */
    int32_t reshape_in;      /* amk: the I32 IO_INPUT holding 0, the row EMBED reshapes take */
} builder;

#define CHECK(b)                                                                                \
    do {                                                                                        \
        if ((b)->st != IR_OK)                                                                   \
            return (b)->st;                                                                     \
    } while (0)

static void fail_nomem(builder *b)
{
    if (b->st == IR_OK)
        b->st = ir_fail(b->err, IR_ERR_NOMEM, "lower", "out of memory");
}

/* ---------------------------------------------------------------- buffers and counters */

/* A buffer of any rank (activations start in GLOBAL_SCRATCH, the rest in HBM). */
static int32_t shaped(builder *b, ir_kind kind, ir_dtype dt, int rank, const int64_t *shape,
                      const char *source, const char *name)
{
    if (b->st != IR_OK)
        return -1;
    ir_space space = kind == IR_ACTIVATION ? IR_GLOBAL_SCRATCH : IR_HBM;
    int32_t id = ir_add_buffer(b->p, name, kind, dt, rank, shape, space, source);
    if (id < 0)
        fail_nomem(b);
    return id;
}

static int32_t buffer(builder *b, ir_kind kind, ir_dtype dt, int rank, int64_t d0, int64_t d1,
                      const char *source, const char *fmt, ...) __attribute__((format(printf, 8, 9)));

static int32_t buffer(builder *b, ir_kind kind, ir_dtype dt, int rank, int64_t d0, int64_t d1,
                      const char *source, const char *fmt, ...)
{
    char name[160];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(name, sizeof name, fmt, ap);
    va_end(ap);
    int64_t shape[2] = {d0, d1};
    return shaped(b, kind, dt, rank, shape, source, name);
}

/* An F32 buffer of rank 3 [d0, d1, d2]. */
static int32_t buffer3(builder *b, ir_kind kind, int64_t d0, int64_t d1, int64_t d2,
                       const char *fmt, ...) __attribute__((format(printf, 6, 7)));

static int32_t buffer3(builder *b, ir_kind kind, int64_t d0, int64_t d1, int64_t d2,
                       const char *fmt, ...)
{
    char name[160];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(name, sizeof name, fmt, ap);
    va_end(ap);
    int64_t shape[3] = {d0, d1, d2};
    return shaped(b, kind, IR_F32, 3, shape, NULL, name);
}

/* A weight buffer named after its safetensors key. */
static int32_t weight(builder *b, int rank, int64_t d0, int64_t d1, const char *fmt, ...)
    __attribute__((format(printf, 5, 6)));

static int32_t weight(builder *b, int rank, int64_t d0, int64_t d1, const char *fmt, ...)
{
    char key[160];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(key, sizeof key, fmt, ap);
    va_end(ap);
    return buffer(b, IR_WEIGHT, b->o->dtype, rank, d0, d1, key, "%s", key);
}

/* An F32 activation [1, n]. */
static int32_t act(builder *b, int64_t n, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

static int32_t act(builder *b, int64_t n, const char *fmt, ...)
{
    char name[160];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(name, sizeof name, fmt, ap);
    va_end(ap);
    return buffer(b, IR_ACTIVATION, IR_F32, 2, 1, n, NULL, "%s", name);
}

static int32_t counter(builder *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static int32_t counter(builder *b, const char *fmt, ...)
{
    if (b->st != IR_OK)
        return -1;
    char note[160];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(note, sizeof note, fmt, ap);
    va_end(ap);
    int32_t id = ir_add_counter(b->p, note);
    if (id < 0)
        fail_nomem(b);
    return id;
}

/* ---------------------------------------------------------------- tasks */

/* Append a task reading in[], writing out[], waiting for deps[] (entries with counter -1 are
 * skipped). Returns the task (valid until the next emit) or NULL once anything failed. */
static ir_task *emit(builder *b, ir_op op, int32_t ctr, const int32_t *in, int nin,
                     const int32_t *out, int nout, const dep *deps, int ndeps, int64_t est_bytes,
                     int64_t est_flops, const char *fmt, ...) __attribute__((format(printf, 12, 13)));

static ir_task *emit(builder *b, ir_op op, int32_t ctr, const int32_t *in, int nin,
                     const int32_t *out, int nout, const dep *deps, int ndeps, int64_t est_bytes,
                     int64_t est_flops, const char *fmt, ...)
{
    if (b->st != IR_OK)
        return NULL;
    char label[160];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(label, sizeof label, fmt, ap);
    va_end(ap);
    ir_task *t = ir_add_task(b->p, op, ctr, label);
    if (!t) {
        fail_nomem(b);
        return NULL;
    }
    ir_status s = IR_OK;
    for (int i = 0; i < nin && s == IR_OK; i++)
        s = ir_task_add_input(t, in[i]);
    for (int i = 0; i < nout && s == IR_OK; i++)
        s = ir_task_add_output(t, out[i]);
    for (int i = 0; i < ndeps && s == IR_OK; i++)
        if (deps[i].counter >= 0)
            s = ir_task_add_wait(t, deps[i].counter, deps[i].threshold);
    if (s != IR_OK) {
        b->st = ir_fail(b->err, s, label, "task exceeds an ABI cap");
        return NULL;
    }
    t->est_bytes = est_bytes;
    t->est_flops = est_flops;
    return t;
}

static void set_int(builder *b, ir_task *t, const char *key, int64_t v)
{
    if (b->st == IR_OK && t && ir_task_set_int(t, key, v) != IR_OK)
        fail_nomem(b);
}

static void set_real(builder *b, ir_task *t, const char *key, double v)
{
    if (b->st == IR_OK && t && ir_task_set_real(t, key, v) != IR_OK)
        fail_nomem(b);
}

static void set_pexpr(builder *b, ir_task *t, const char *key, ir_pexpr e)
{
    if (b->st == IR_OK && t && ir_task_set_pexpr(t, key, e, b->o->pos) != IR_OK)
        fail_nomem(b);
}

/* One single-task op whose consumers wait for (its counter, 1). */
static dep single(builder *b, ir_op op, const int32_t *in, int nin, int32_t out, const dep *deps,
                  int ndeps, int64_t est_bytes, int64_t est_flops, ir_task **tp, const char *name)
{
    int32_t c = counter(b, "%s", name);
    *tp = emit(b, op, c, in, nin, &out, 1, deps, ndeps, est_bytes, est_flops, "%s", name);
    return (dep){c, 1};
}

/* Tile width of a projection stage of `rows` output rows (all the projections reading one
 * input, e.g. q + k + v): tiling.gemv.stage_tiles T cuts the stage into about T tiles of a
 * width rounded up to a multiple of 4; otherwise N_tile. */
static int64_t stage_width(const lower_knobs *k, int64_t rows)
{
    if (!k->stage_tiles)
        return k->n_tile;
    int64_t w = (rows + k->stage_tiles - 1) / k->stage_tiles;
    w = (w + 3) / 4 * 4;
    return w < 1 ? 1 : w;
}

/* Tiles of one projection, ceil(N / nt) tasks sharing one counter: GEMV_TILE (recipe 0) or
 * FUSED `recipe`, with the inputs in[] (weights at the recipe's slots, nw of them) and the
 * outputs out[]. The last tile is shorter when nt does not divide N; its N_tile param is its own
 * width. vec_bytes: activation bytes the task reads besides its weight rows. */
static dep tiles(builder *b, int recipe, const int32_t *in, int nin, const int32_t *out, int nout,
                 const dep *deps, int ndeps, int64_t K, int64_t N, int64_t nt, int nw,
                 int64_t vec_bytes, const char *name)
{
    nt = nt < N ? nt : N;
    int64_t n_tiles = (N + nt - 1) / nt;
    int32_t c = counter(b, "%s (%lld tiles)", name, (long long)n_tiles);
    ir_op op = recipe ? IR_OP_FUSED : IR_OP_GEMV_TILE;
    bool norm = recipe == IR_RECIPE_NORM_GEMV || recipe == IR_RECIPE_NORM_GEMV_PAIR;
    for (int64_t i = 0; i < n_tiles; i++) {
        int64_t off = i * nt, width = N - off < nt ? N - off : nt;
        ir_task *t = emit(b, op, c, in, nin, out, nout, deps, ndeps,
                          nw * width * K * b->wbytes + vec_bytes + 4 * width * nout,
                          2 * nw * width * K, "%s[%lld]", name, (long long)i);
        if (recipe)
            set_int(b, t, "recipe", recipe);
        set_int(b, t, "K", K);
        set_int(b, t, "N_tile", width);
        set_int(b, t, "n_off", off);
        if (norm)
            set_real(b, t, "eps", b->m->rms_eps);
    }
    return (dep){c, n_tiles};
}

/* y[1,N] = x[1,K] W[N,K]^T in tiles of width nt. */
static dep gemv(builder *b, int32_t x, dep xdep, int32_t w, int32_t y, int64_t K, int64_t N,
                int64_t nt, const char *name)
{
    int32_t in[2] = {x, w};
    return tiles(b, 0, in, 2, &y, 1, &xdep, 1, K, N, nt, 1, 4 * K, name);
}

static dep rmsnorm(builder *b, int32_t x, dep xdep, int32_t w, int32_t y, const char *name)
{
    int64_t H = b->m->hidden;
    int32_t in[2] = {x, w};
    ir_task *t;
    dep d = single(b, IR_OP_RMSNORM, in, 2, y, &xdep, 1, 8 * H + H * b->wbytes, 4 * H, &t, name);
    set_real(b, t, "eps", b->m->rms_eps);
    set_int(b, t, "hidden", H);
    return d;
}

/* Position p as a position expression: clamp(pos, 0, inf). */
static ir_pexpr pos_expr(void) { return (ir_pexpr){1, 0, 0, INT64_MAX}; }

/* The RoPE params: head_dim, theta, pos (a position expression) unless the position comes from
 * an input (AMK's ROPE [x, pos]), and the llama3 scaling. */
static void rope_freqs(builder *b, ir_task *t, bool pos_param)
{
    const lower_model *m = b->m;
    set_int(b, t, "head_dim", m->head_dim);
    set_real(b, t, "theta", m->rope_theta);
    if (pos_param)
        set_pexpr(b, t, "pos", pos_expr());
    if (m->rope_llama3) {
        set_real(b, t, "rope_factor", m->rope_factor);
        set_real(b, t, "rope_low_freq", m->rope_low_freq);
        set_real(b, t, "rope_high_freq", m->rope_high_freq);
        set_int(b, t, "rope_orig_max", m->rope_orig_max);
    }
}

static void rope_params(builder *b, ir_task *t) { rope_freqs(b, t, true); }

static dep rope(builder *b, int32_t x, dep xdep, int32_t y, int64_t heads, const char *name)
{
    int64_t n = heads * b->m->head_dim;
    ir_task *t;
    dep d = single(b, IR_OP_ROPE, &x, 1, y, &xdep, 1, 8 * n, 6 * n, &t, name);
    rope_params(b, t);
    return d;
}

/* amk dialect (SPEC 8.8): AMK's ROPE rotates the last dimension of head-shaped rows, so the flat
 * [1, heads*hd] projection x is first viewed as heads: an EMBED whose ids input is reshape_id0
 * (holding 0) gathers row 0 of x into L{li}.{which}_heads, shaped [heads, hd] for q and
 * [1, heads, hd] for k (the one-row form KV_APPEND of a rank-3 cache takes). ROPE [x_heads, pos]
 * then writes *y, L{li}.{which}_rope, of the same shape, taking pos from the pos input. */
static dep rope_amk(builder *b, int li, int32_t x, dep xdep, int64_t heads, const char *which,
                    int32_t *y)
{
    int64_t hd = b->m->head_dim, n = heads * hd;
    bool row = !strcmp(which, "k");
    int32_t xh = row ? buffer3(b, IR_ACTIVATION, 1, heads, hd, "L%d.%s_heads", li, which)
                     : buffer(b, IR_ACTIVATION, IR_F32, 2, heads, hd, NULL, "L%d.%s_heads", li, which);
    *y = row ? buffer3(b, IR_ACTIVATION, 1, heads, hd, "L%d.%s_rope", li, which)
             : buffer(b, IR_ACTIVATION, IR_F32, 2, heads, hd, NULL, "L%d.%s_rope", li, which);
    char name[64];
    snprintf(name, sizeof name, "L%d.reshape_%s", li, which);
    int32_t in[2] = {b->reshape_in, x};
    ir_task *t;
    dep d = single(b, IR_OP_EMBED, in, 2, xh, &xdep, 1, 8 * n + 4, 0, &t, name);
    set_int(b, t, "hidden", hd);     /* as AMK: the last dimension of the head-shaped output */
    snprintf(name, sizeof name, "L%d.rope_%s", li, which);
    in[0] = xh;
    in[1] = b->pos_in;
    d = single(b, IR_OP_ROPE, in, 2, *y, &d, 1, 8 * n + 4, 6 * n, &t, name);
    rope_freqs(b, t, false);
    return d;
}

/* KV_APPEND of src into row pos of cache: inputs [src], or in the amk dialect [src, cache] (AMK
 * writes the cache in place and names it as an input too). */
static dep kv_append(builder *b, int32_t src, dep sdep, int32_t cache, int64_t n, const char *name)
{
    int32_t in[2] = {src, cache};
    ir_task *t;
    int32_t c = counter(b, "%s", name);
    t = emit(b, IR_OP_KV_APPEND, c, in, b->amk ? 2 : 1, &cache, 1, &sdep, 1, 8 * n, 0, "%s", name);
    set_pexpr(b, t, "pos", pos_expr());
    return (dep){c, 1};
}

static dep binary(builder *b, ir_op op, int32_t a, dep adep, int32_t c2, dep cdep, int32_t y,
                  int64_t n, const char *name)
{
    int32_t in[2] = {a, c2};
    dep deps[2] = {adep, cdep};
    ir_task *t;
    return single(b, op, in, 2, y, deps, 2, 12 * n, 4 * n, &t, name);
}

static void attention_params(builder *b, ir_task *t)
{
    const lower_model *m = b->m;
    set_int(b, t, "head_dim", m->head_dim);
    set_real(b, t, "scale", 1.0 / sqrt((double)m->head_dim));
    set_int(b, t, "n_heads", m->n_heads);
    set_int(b, t, "n_kv_heads", m->n_kv_heads);
}

/* KV heads per attention task (tiling.attention.kv_heads, default all) and the task count. */
static int64_t heads_per_task(const lower_knobs *k, int64_t nkv)
{
    return k->kv_heads && k->kv_heads < nkv ? k->kv_heads : nkv;
}

/* Head range [g0, g0 + gn) on an attention task, omitted when it covers every KV head. */
static void head_range(builder *b, ir_task *t, int64_t g0, int64_t gn)
{
    if (gn == b->m->n_kv_heads)
        return;
    set_int(b, t, "kv_head_off", g0);
    set_int(b, t, "kv_heads", gn);
}

/* Attention of one layer: ATTENTION_TILE over rows [0, pos+1), or with kv_block B one tile
 * per block of B cache rows writing a partials row, then ATTENTION_COMBINE. With
 * tiling.attention.kv_heads G every window is split into ceil(nkv / G) tasks by KV head. With
 * rope (["rope_q","attention"]) the tasks are FUSED recipe 6 on the unrotated q, k and v
 * (in[] = q, k, v, kc, vc), which attend over the cache rows [0, pos) plus the new row and do not
 * wait for the appends. The task graph is the same for every pos; only kv_len / pos change. */
static dep attention(builder *b, int li, bool rope, const int32_t *in, const dep *deps,
                     int32_t out)
{
    const lower_model *m = b->m;
    int64_t S = b->S, hd = m->head_dim, nh = m->n_heads, nkv = m->n_kv_heads;
    int64_t G = heads_per_task(&b->k, nkv), ng = (nkv + G - 1) / G, grp = nh / nkv;
    int64_t B = b->k.kv_block ? b->k.kv_block : S, nb = (S + B - 1) / B;
    bool split = b->k.kv_block != 0;
    int32_t part = -1, parts[LOWER_AMK_MAX_PARTIALS];
    if (split && !b->amk)
        part = buffer(b, IR_ACTIVATION, IR_F32, 2, nb, nh * (hd + 2), NULL, "L%d.attn_partials",
                      li);
    /* amk: one [nh, hd+2] buffer per tile, as AMK's ATTENTION_COMBINE takes them (2..8) */
    for (int64_t blk = 0; split && b->amk && blk < nb; blk++)
        parts[blk] = buffer(b, IR_ACTIVATION, IR_F32, 2, nh, hd + 2, NULL, "L%d.attn_part%lld", li,
                            (long long)blk);
    int32_t c = !split && ng == 1 ? counter(b, "L%d.attention", li)
                : ng == 1 ? counter(b, "L%d.attention (%lld blocks)", li, (long long)nb)
                          : counter(b, "L%d.attention (%lld tasks)", li, (long long)(nb * ng));
    for (int64_t blk = 0; blk < nb; blk++)
        for (int64_t gi = 0; gi < ng; gi++) {
            int64_t start = blk * B, rows = S - start < B ? S - start : B;
            int64_t g0 = gi * G, gn = nkv - g0 < G ? nkv - g0 : G, qh = gn * grp;
            char label[64];
            if (!split && ng == 1)
                snprintf(label, sizeof label, "L%d.attention", li);
            else if (!split)
                snprintf(label, sizeof label, "L%d.attention[%lld]", li, (long long)gi);
            else if (ng == 1)
                snprintf(label, sizeof label, "L%d.attention[%lld]", li, (long long)blk);
            else
                snprintf(label, sizeof label, "L%d.attention[%lld.%lld]", li, (long long)blk,
                         (long long)gi);
            int32_t dst = !split ? out : b->amk ? parts[blk] : part;
            int64_t bytes = 4 * qh * hd + 8 * rows * gn * hd +
                            (split ? 4 * qh * (hd + 2) : 4 * qh * hd) + (rope ? 8 * gn * hd : 0);
            ir_task *t = emit(b, rope ? IR_OP_FUSED : IR_OP_ATTENTION_TILE, c, in, rope ? 5 : 3,
                              &dst, 1, deps, 3, bytes, 4 * rows * qh * hd, "%s", label);
            if (rope) {
                set_int(b, t, "recipe", IR_RECIPE_ROPE_ATTENTION);
                rope_params(b, t);
            }
            attention_params(b, t);
            if (!rope) {
                set_int(b, t, "kv_start", start);
                set_pexpr(b, t, "kv_len", split ? (ir_pexpr){1, 1 - start, 0, rows}
                                                : (ir_pexpr){1, 1, 0, S});
            }
            if (split && b->amk)
                set_int(b, t, "flags", 2);      /* AMK's PARTIAL_WRITE bit */
            else if (split)
                set_int(b, t, "m_off", blk);
            head_range(b, t, g0, gn);
        }
    if (!split)
        return (dep){c, nb * ng};
    char name[64];
    snprintf(name, sizeof name, "L%d.attention_combine", li);
    dep pdep = {c, nb * ng};
    ir_task *t;
    dep d = single(b, IR_OP_ATTENTION_COMBINE, b->amk ? parts : &part, b->amk ? (int)nb : 1, out,
                   &pdep, 1, 4 * nb * nh * (hd + 2) + 4 * nh * hd, 4 * nb * nh * hd, &t, name);
    set_int(b, t, "head_dim", hd);
    set_int(b, t, "n_heads", nh);
    return d;
}

/* One decoder layer; x is its input residual stream, returns its output's dep in *out_dep. */
static int32_t layer(builder *b, int li, int32_t x, dep xdep, dep *out_dep)
{
    const lower_model *m = b->m;
    int64_t H = m->hidden, hd = m->head_dim, qd = m->n_heads * hd, kvd = m->n_kv_heads * hd;
    int64_t I = m->intermediate, S = b->S;
    char name[64];
#define NAME(s) (snprintf(name, sizeof name, "L%d." s, li), name)
    const char *pre = "model.layers";

    int32_t w_in = weight(b, 1, H, 0, "%s.%d.input_layernorm.weight", pre, li);
    int32_t wq = weight(b, 2, qd, H, "%s.%d.self_attn.q_proj.weight", pre, li);
    int32_t wk = weight(b, 2, kvd, H, "%s.%d.self_attn.k_proj.weight", pre, li);
    int32_t wv = weight(b, 2, kvd, H, "%s.%d.self_attn.v_proj.weight", pre, li);
    int32_t wo = weight(b, 2, H, qd, "%s.%d.self_attn.o_proj.weight", pre, li);
    int32_t w_post = weight(b, 1, H, 0, "%s.%d.post_attention_layernorm.weight", pre, li);
    int32_t wg = weight(b, 2, I, H, "%s.%d.mlp.gate_proj.weight", pre, li);
    int32_t wu = weight(b, 2, I, H, "%s.%d.mlp.up_proj.weight", pre, li);
    int32_t wd = weight(b, 2, H, I, "%s.%d.mlp.down_proj.weight", pre, li);
    int32_t kc, vc;
    if (b->amk) {
        kc = buffer3(b, IR_KV_CACHE, S, m->n_kv_heads, hd, "L%d.k_cache", li);
        vc = buffer3(b, IR_KV_CACHE, S, m->n_kv_heads, hd, "L%d.v_cache", li);
    } else {
        kc = buffer(b, IR_KV_CACHE, IR_F32, 2, S, kvd, NULL, "L%d.k_cache", li);
        vc = buffer(b, IR_KV_CACHE, IR_F32, 2, S, kvd, NULL, "L%d.v_cache", li);
    }

    const lower_knobs *k = &b->k;
    int64_t nt_qkv = stage_width(k, qd + 2 * kvd);
    int32_t q = act(b, qd, "L%d.q", li), kk = act(b, kvd, "L%d.k", li), v = act(b, kvd, "L%d.v", li);
    dep d_q, d_k, d_v;
    if (k->fuse_attn_norm) {
        /* FUSED recipe 2: every q/k/v tile normalizes x itself */
        int32_t in[3] = {x, w_in, wq};
        d_q = tiles(b, IR_RECIPE_NORM_GEMV, in, 3, &q, 1, &xdep, 1, H, qd, nt_qkv, 1,
                    4 * H + H * b->wbytes, NAME("q_proj"));
        in[2] = wk;
        d_k = tiles(b, IR_RECIPE_NORM_GEMV, in, 3, &kk, 1, &xdep, 1, H, kvd, nt_qkv, 1,
                    4 * H + H * b->wbytes, NAME("k_proj"));
        in[2] = wv;
        d_v = tiles(b, IR_RECIPE_NORM_GEMV, in, 3, &v, 1, &xdep, 1, H, kvd, nt_qkv, 1,
                    4 * H + H * b->wbytes, NAME("v_proj"));
    } else {
        int32_t xn = act(b, H, "L%d.attn_norm", li);
        dep d_xn = rmsnorm(b, x, xdep, w_in, xn, NAME("attn_norm"));
        d_q = gemv(b, xn, d_xn, wq, q, H, qd, nt_qkv, NAME("q_proj"));
        d_k = gemv(b, xn, d_xn, wk, kk, H, kvd, nt_qkv, NAME("k_proj"));
        d_v = gemv(b, xn, d_xn, wv, v, H, kvd, nt_qkv, NAME("v_proj"));
    }
    int32_t qr = -1;
    dep d_qr = NO_DEP;
    if (b->amk) {
        d_qr = rope_amk(b, li, q, d_q, m->n_heads, "q", &qr);
    } else if (!k->fuse_rope_attn) {
        qr = act(b, qd, "L%d.q_rope", li);
        d_qr = rope(b, q, d_q, qr, m->n_heads, NAME("rope_q"));
    }
    ir_task *t;
    dep d_kc;
    if (k->fuse_rope_append) {
        /* FUSED recipe 5: the rotated keys go straight to the cache row */
        d_kc = single(b, IR_OP_FUSED, &kk, 1, kc, &d_k, 1, 8 * kvd, 6 * kvd, &t,
                      NAME("rope_append_k"));
        set_int(b, t, "recipe", IR_RECIPE_ROPE_APPEND);
        rope_params(b, t);
    } else {
        int32_t kr;
        dep d_kr;
        if (b->amk) {
            d_kr = rope_amk(b, li, kk, d_k, m->n_kv_heads, "k", &kr);
        } else {
            kr = act(b, kvd, "L%d.k_rope", li);
            d_kr = rope(b, kk, d_k, kr, m->n_kv_heads, NAME("rope_k"));
        }
        d_kc = kv_append(b, kr, d_kr, kc, kvd, NAME("kv_append_k"));
    }
    dep d_vc = kv_append(b, v, d_v, vc, kvd, NAME("kv_append_v"));
    int32_t at = act(b, qd, "L%d.attn", li);
    dep d_at;
    if (k->fuse_rope_attn) {
        /* FUSED recipe 6: rotate q and k in the attention tasks, read the new row from k and v;
         * the appends above only feed the next launches */
        int32_t in[5] = {q, kk, v, kc, vc};
        dep deps[3] = {d_q, d_k, d_v};
        d_at = attention(b, li, true, in, deps, at);
    } else {
        int32_t in[3] = {qr, kc, vc};
        dep deps[3] = {d_qr, d_kc, d_vc};
        d_at = attention(b, li, false, in, deps, at);
    }
    int32_t h = act(b, H, "L%d.resid_attn", li);
    dep d_h;
    if (k->fuse_o_resid) {
        /* o tiles add the residual stream as their bias: h = x + attn o^T */
        int32_t in[3] = {at, wo, x};
        dep deps[2] = {d_at, xdep};
        d_h = tiles(b, 0, in, 3, &h, 1, deps, 2, qd, H, stage_width(k, H), 1, 4 * qd,
                    NAME("o_proj"));
    } else {
        int32_t o = act(b, H, "L%d.o", li);
        dep d_o = gemv(b, at, d_at, wo, o, qd, H, stage_width(k, H), NAME("o_proj"));
        d_h = binary(b, IR_OP_ADD, x, xdep, o, d_o, h, H, NAME("resid_attn"));
    }
    int32_t g = act(b, I, "L%d.gate", li), u = act(b, I, "L%d.up", li);
    dep d_g, d_u = NO_DEP;
    if (k->fuse_mlp_norm) {
        /* FUSED recipe 3: every gate/up tile pair normalizes h itself */
        int32_t in[4] = {h, w_post, wg, wu}, out[2] = {g, u};
        d_g = tiles(b, IR_RECIPE_NORM_GEMV_PAIR, in, 4, out, 2, &d_h, 1, H, I, stage_width(k, I),
                    2, 4 * H + H * b->wbytes, NAME("gate_up_proj"));
    } else {
        int32_t hn = act(b, H, "L%d.mlp_norm", li);
        dep d_hn = rmsnorm(b, h, d_h, w_post, hn, NAME("mlp_norm"));
        if (k->fuse_gate_up) {
            int32_t in[3] = {hn, wg, wu}, out[2] = {g, u};
            d_g = tiles(b, IR_RECIPE_GEMV_PAIR, in, 3, out, 2, &d_hn, 1, H, I,
                        stage_width(k, I), 2, 4 * H, NAME("gate_up_proj"));
        } else {
            int64_t nt = stage_width(k, 2 * I);
            d_g = gemv(b, hn, d_hn, wg, g, H, I, nt, NAME("gate_proj"));
            d_u = gemv(b, hn, d_hn, wu, u, H, I, nt, NAME("up_proj"));
        }
    }
    int32_t y = act(b, H, "L%d.out", li);
    int64_t nt_down = stage_width(k, H);
    if (k->fuse_silu_down) {
        /* FUSED recipe 4: every down tile computes silu(gate) * up itself (+ the residual) */
        int32_t in[4] = {g, u, wd, h};
        dep deps[3] = {d_g, d_u, d_h};
        int32_t dst = k->fuse_down_resid ? y : act(b, H, "L%d.down", li);
        dep d = tiles(b, IR_RECIPE_SILU_GEMV, in, k->fuse_down_resid ? 4 : 3, &dst, 1, deps,
                      k->fuse_down_resid ? 3 : 2, I, H, nt_down, 1, 8 * I, NAME("down_proj"));
        *out_dep = k->fuse_down_resid ? d : binary(b, IR_OP_ADD, h, d_h, dst, d, y, H,
                                                   NAME("resid_mlp"));
    } else {
        int32_t a = act(b, I, "L%d.act", li);
        dep d_a = binary(b, IR_OP_SILU_MUL, g, d_g, u, d_u, a, I, NAME("silu_mul"));
        if (k->fuse_down_resid) {
            int32_t in[3] = {a, wd, h};
            dep deps[2] = {d_a, d_h};
            *out_dep = tiles(b, 0, in, 3, &y, 1, deps, 2, I, H, nt_down, 1, 4 * I,
                             NAME("down_proj"));
        } else {
            int32_t dn = act(b, H, "L%d.down", li);
            dep d_dn = gemv(b, a, d_a, wd, dn, I, H, nt_down, NAME("down_proj"));
            *out_dep = binary(b, IR_OP_ADD, h, d_h, dn, d_dn, y, H, NAME("resid_mlp"));
        }
    }
#undef NAME
    return y;
}

/* ---------------------------------------------------------------- checks */

static ir_status check_model(const lower_model *m, ir_error *err)
{
    struct {
        const char *f;
        int64_t v, lo, hi;
    } f[] = {
        {"model.hidden", m->hidden, 1, 1 << 20},
        {"model.n_layers", m->n_layers, 1, 1 << 12},
        {"model.n_heads", m->n_heads, 1, 1 << 12},
        {"model.n_kv_heads", m->n_kv_heads, 1, 1 << 12},
        {"model.head_dim", m->head_dim, 2, BASE_MAX_HEAD_DIM},
        {"model.intermediate", m->intermediate, 1, 1 << 22},
        {"model.vocab", m->vocab, 1, 1 << 24},
        {"model.max_pos", m->max_pos, 1, (int64_t)1 << 31},
    };
    for (size_t i = 0; i < sizeof f / sizeof f[0]; i++)
        if (f[i].v < f[i].lo || f[i].v > f[i].hi)
            return ir_fail(err, IR_ERR_MALFORMED, f[i].f, "must be in [%lld, %lld], got %lld",
                           (long long)f[i].lo, (long long)f[i].hi, (long long)f[i].v);
    if (m->n_heads % m->n_kv_heads)
        return ir_fail(err, IR_ERR_UNSUPPORTED, "model.n_kv_heads",
                       "n_heads (%lld) is not a multiple of n_kv_heads (%lld)",
                       (long long)m->n_heads, (long long)m->n_kv_heads);
    if (m->head_dim % 2)
        return ir_fail(err, IR_ERR_UNSUPPORTED, "model.head_dim",
                       "must be even for rotate-half RoPE, got %lld", (long long)m->head_dim);
    if (!(m->rms_eps > 0) || !isfinite(m->rms_eps))
        return ir_fail(err, IR_ERR_MALFORMED, "model.rms_eps", "must be a finite number > 0");
    if (!(m->rope_theta > 1) || !isfinite(m->rope_theta))
        return ir_fail(err, IR_ERR_MALFORMED, "model.rope_theta", "must be a finite number > 1");
    if (m->rope_llama3
        && !(m->rope_factor > 0 && m->rope_low_freq > 0 && m->rope_high_freq > m->rope_low_freq
             && m->rope_orig_max > 0))
        return ir_fail(err, IR_ERR_MALFORMED, "model.rope_scaling",
                       "llama3 scaling needs factor > 0, 0 < low_freq < high_freq, "
                       "original_max_position_embeddings > 0");
    return IR_OK;
}

/* The amk dialect (SPEC 8.8) on top of the config's knobs: fusion groups are lowered unfused
 * (AMK's FUSED allows one output, needs a recipe of steps, and several tiles writing one buffer
 * fail its write-after-write proof unless they are GEMV/GEMM tiles); a kv_block giving one tile
 * is the whole-window form. Refused: a kv_block giving more tiles than one ATTENTION_COMBINE
 * merges, and KV-head-ranged attention (no such param in AMK, and the tasks would be several
 * whole-buffer writers of one output). */
static ir_status amk_knobs(lower_knobs *k, const lower_model *m, int64_t S, ir_error *err)
{
    k->fuse_gate_up = k->fuse_mlp_norm = k->fuse_attn_norm = k->fuse_final_norm = false;
    k->fuse_o_resid = k->fuse_silu_down = k->fuse_down_resid = false;
    k->fuse_rope_append = k->fuse_rope_attn = false;
    if (k->kv_heads && k->kv_heads < m->n_kv_heads)
        return ir_fail(err, IR_ERR_UNSUPPORTED, "config.tiling.attention.kv_heads",
                       "the amk dialect has no KV-head-ranged attention (AMK's ATTENTION_TILE "
                       "covers every head and its validate() refuses several whole-buffer writers "
                       "of one output); use kv_heads >= n_kv_heads = %lld or --dialect ours",
                       (long long)m->n_kv_heads);
    k->kv_heads = 0;
    if (k->kv_block) {
        int64_t nb = (S + k->kv_block - 1) / k->kv_block;
        if (nb > LOWER_AMK_MAX_PARTIALS)
            return ir_fail(err, IR_ERR_UNSUPPORTED, "config.tiling.attention.kv_block",
                           "kv_block %lld gives %lld attention tiles over max_seq %lld, but AMK's "
                           "ATTENTION_COMBINE merges at most %d partials; use kv_block >= %lld",
                           (long long)k->kv_block, (long long)nb, (long long)S,
                           LOWER_AMK_MAX_PARTIALS,
                           (long long)((S + LOWER_AMK_MAX_PARTIALS - 1) / LOWER_AMK_MAX_PARTIALS));
        if (nb == 1)
            k->kv_block = 0;
    }
    return IR_OK;
}

/* Tasks the config asks for, computed before anything is built so a tiny N_tile on a huge model
 * is refused instead of exhausting memory. */
static int64_t count_tasks(const lower_model *m, const lower_knobs *k, int64_t S, bool argmax,
                           bool amk)
{
    int64_t H = m->hidden, qd = m->n_heads * m->head_dim, kvd = m->n_kv_heads * m->head_dim;
    int64_t I = m->intermediate;
#define TILES(N, W) (((N) + (W) - 1) / (W))
    int64_t w_qkv = stage_width(k, qd + 2 * kvd), w_h = stage_width(k, H);
    int64_t w_gu = stage_width(k, k->fuse_gate_up ? I : 2 * I);
    int64_t ng = TILES(m->n_kv_heads, heads_per_task(k, m->n_kv_heads));
    int64_t attn = k->kv_block ? TILES(S, k->kv_block) * ng + 1 : ng;
    int64_t per_layer = (k->fuse_attn_norm ? 0 : 1) + TILES(qd, w_qkv) + 2 * TILES(kvd, w_qkv)
                        + (k->fuse_rope_attn ? 0 : 1) + (k->fuse_rope_append ? 1 : 2) + 1 + attn
                        + TILES(H, w_h) + (k->fuse_o_resid ? 0 : 1)
                        + (k->fuse_mlp_norm ? 0 : 1) + (k->fuse_gate_up ? 1 : 2) * TILES(I, w_gu)
                        + (k->fuse_silu_down ? 0 : 1) + TILES(H, w_h)
                        + (k->fuse_down_resid ? 0 : 1) + (amk ? 2 : 0);  /* amk: q, k reshapes */
    return 1 + m->n_layers * per_layer + (k->fuse_final_norm ? 0 : 1)
           + TILES(m->vocab, stage_width(k, m->vocab)) + (argmax ? 1 : 0);
#undef TILES
}

/* meta: {"model", "gpu", "dtype", "model_config": every lower_model field}, and in the amk
 * dialect "dialect": "amk" plus "unfused": the config's fusion groups, lowered unfused. */
static char *meta_json(const lower_model *m, const ir_target *t, const lower_opts *o,
                       const ir_config *c)
{
    cJSON *meta = cJSON_CreateObject();
    cJSON *mc = cJSON_CreateObject();
    if (!meta || !mc) {
        cJSON_Delete(meta);
        cJSON_Delete(mc);
        return NULL;
    }
    cJSON_AddStringToObject(meta, "model", m->name);
    cJSON_AddStringToObject(meta, "gpu", t->name);
    cJSON_AddStringToObject(meta, "dtype", ir_dtype_name(o->dtype));
    cJSON_AddStringToObject(meta, "regime", "decode");
    cJSON_AddItemToObject(meta, "model_config", mc);
    cJSON_AddStringToObject(mc, "name", m->name);
    cJSON_AddNumberToObject(mc, "hidden", (double)m->hidden);
    cJSON_AddNumberToObject(mc, "n_layers", (double)m->n_layers);
    cJSON_AddNumberToObject(mc, "n_heads", (double)m->n_heads);
    cJSON_AddNumberToObject(mc, "n_kv_heads", (double)m->n_kv_heads);
    cJSON_AddNumberToObject(mc, "head_dim", (double)m->head_dim);
    cJSON_AddNumberToObject(mc, "intermediate", (double)m->intermediate);
    cJSON_AddNumberToObject(mc, "vocab", (double)m->vocab);
    cJSON_AddNumberToObject(mc, "max_pos", (double)m->max_pos);
    cJSON_AddNumberToObject(mc, "rms_eps", m->rms_eps);
    cJSON_AddNumberToObject(mc, "rope_theta", m->rope_theta);
    cJSON_AddBoolToObject(mc, "tie_embeddings", m->tie_embeddings);
    cJSON_AddBoolToObject(mc, "rope_llama3", m->rope_llama3);
    cJSON_AddNumberToObject(mc, "rope_factor", m->rope_factor);
    cJSON_AddNumberToObject(mc, "rope_low_freq", m->rope_low_freq);
    cJSON_AddNumberToObject(mc, "rope_high_freq", m->rope_high_freq);
    cJSON_AddNumberToObject(mc, "rope_orig_max", (double)m->rope_orig_max);
    if (o->dialect == LOWER_DIALECT_AMK) {
        cJSON_AddStringToObject(meta, "dialect", lower_dialect_name(o->dialect));
        cJSON *groups = c->n_groups ? cJSON_AddArrayToObject(meta, "unfused") : NULL;
        for (int i = 0; groups && i < c->n_groups; i++) {
            cJSON *g = cJSON_CreateArray();
            cJSON_AddItemToArray(groups, g);
            for (int j = 0; g && j < c->groups[i].n; j++)
                cJSON_AddItemToArray(g, cJSON_CreateString(c->groups[i].names[j]));
        }
    }
    char *s = cJSON_PrintUnformatted(meta);
    cJSON_Delete(meta);
    return s;
}

/* ---------------------------------------------------------------- the whole step */

static ir_status build_graph(builder *b)
{
    const lower_model *m = b->m;
    int64_t H = m->hidden, V = m->vocab;

    int32_t tokens = buffer(b, IR_IO_INPUT, IR_I32, 1, 1, 0, NULL, b->amk ? "token_id" : "tokens");
    if (b->amk) {
        b->pos_in = buffer(b, IR_IO_INPUT, IR_I32, 1, 1, 0, NULL, "pos");
        b->reshape_in = buffer(b, IR_IO_INPUT, IR_I32, 1, 1, 0, NULL, "reshape_id0");
    }
    int32_t table = weight(b, 2, V, H, "model.embed_tokens.weight");
    int32_t x = act(b, H, "embed");
    int32_t in[2] = {tokens, table};
    ir_task *t;
    dep xdep = single(b, IR_OP_EMBED, in, 2, x, NULL, 0, H * b->wbytes + 4 + 4 * H, 0, &t, "embed");
    set_int(b, t, "hidden", H);
    CHECK(b);
    for (int li = 0; li < m->n_layers; li++) {
        b->layer_first[li] = b->p->n_tasks;
        dep d;
        x = layer(b, li, x, xdep, &d);
        xdep = d;
        CHECK(b);
    }
    b->layer_first[m->n_layers] = b->p->n_tasks;
    int32_t w_norm = weight(b, 1, H, 0, "model.norm.weight");
    int32_t w_lm = m->tie_embeddings ? table : weight(b, 2, V, H, "lm_head.weight");
    int32_t logits = buffer(b, IR_IO_OUTPUT, IR_F32, 2, 1, V, NULL, "logits");
    dep d_lg;
    if (b->k.fuse_final_norm) {
        int32_t in3[3] = {x, w_norm, w_lm};
        d_lg = tiles(b, IR_RECIPE_NORM_GEMV, in3, 3, &logits, 1, &xdep, 1, H, V,
                     stage_width(&b->k, V), 1, 4 * H + H * b->wbytes, "lm_head");
    } else {
        int32_t xf = act(b, H, "final_norm");
        dep d_xf = rmsnorm(b, x, xdep, w_norm, xf, "final_norm");
        d_lg = gemv(b, xf, d_xf, w_lm, logits, H, V, stage_width(&b->k, V), "lm_head");
    }
    if (b->o->sample_argmax) {
        int32_t tok = buffer(b, IR_IO_OUTPUT, IR_I32, 1, 1, 0, NULL, "next_token");
        single(b, IR_OP_SAMPLE_ARGMAX, &logits, 1, tok, &d_lg, 1, 4 * V + 4, V, &t, "argmax");
    }
    return b->st;
}

ir_status lower_program(const lower_model *m, const ir_config *c, const ir_target *t,
                        const lower_opts *o, ir_program **out, ir_error *err)
{
    *out = NULL;
    builder b = {.m = m, .o = o, .err = err, .st = IR_OK};
    ir_status s = check_model(m, err);
    if (s != IR_OK)
        return s;
    if ((s = lower_config_knobs(c, &b.k, err)) != IR_OK)
        return s;
    if (o->dtype != IR_F32 && o->dtype != IR_F16 && o->dtype != IR_BF16)
        return ir_fail(err, IR_ERR_UNSUPPORTED, "dtype", "weight dtype must be F32, F16 or BF16, "
                       "got %s", ir_dtype_name(o->dtype));
    b.S = o->max_seq ? o->max_seq : (m->max_pos < 4096 ? m->max_pos : 4096);
    if (b.S < 1 || b.S > m->max_pos)
        return ir_fail(err, IR_ERR_MALFORMED, "max_seq",
                       "must be in [1, max_position_embeddings = %lld], got %lld",
                       (long long)m->max_pos, (long long)b.S);
    if (o->dialect != LOWER_DIALECT_OURS && o->dialect != LOWER_DIALECT_AMK)
        return ir_fail(err, IR_ERR_MALFORMED, "dialect", "must be ours or amk, got %d",
                       (int)o->dialect);
    b.amk = o->dialect == LOWER_DIALECT_AMK;
    if (b.amk && (s = amk_knobs(&b.k, m, b.S, err)) != IR_OK)
        return s;
    if (o->pos < 0 || o->pos >= b.S)
        return ir_fail(err, IR_ERR_MALFORMED, "pos", "must be in [0, max_seq = %lld), got %lld",
                       (long long)b.S, (long long)o->pos);
    if (t->num_sms < 1 || t->num_sms > BASE_MAX_GRID)
        return ir_fail(err, IR_ERR_MALFORMED, "target.num_sms", "must be in [1, 2^24], got %lld",
                       (long long)t->num_sms);
    int64_t n = count_tasks(m, &b.k, b.S, o->sample_argmax, b.amk);
    if (n > LOWER_MAX_TASKS)
        return ir_fail(err, IR_ERR_UNSUPPORTED,
                       b.k.kv_block && (b.S + b.k.kv_block - 1) / b.k.kv_block > n / 4
                           ? "config.tiling.attention.kv_block"
                           : "config.tiling.gemv.N_tile",
                       "the program would have %lld tasks, more than the limit %lld", (long long)n,
                       (long long)LOWER_MAX_TASKS);
    b.wbytes = ir_dtype_nbytes(o->dtype, 1);

    ir_program *p = ir_program_new();
    int32_t *task_layer = NULL;
    b.layer_first = malloc((size_t)(m->n_layers + 1) * sizeof *b.layer_first);
    if (!p || !b.layer_first) {
        ir_program_free(p);
        free(b.layer_first);
        return ir_fail(err, IR_ERR_NOMEM, "lower", "out of memory");
    }
    b.p = p;
    if ((s = build_graph(&b)) != IR_OK)
        goto fail;
    /* Layer of each task: embed counts as layer 0, the final norm and lm_head as one layer
     * after the last. */
    task_layer = malloc((size_t)(p->n_tasks ? p->n_tasks : 1) * sizeof *task_layer);
    if (!task_layer) {
        s = ir_fail(err, IR_ERR_NOMEM, "lower", "out of memory");
        goto fail;
    }
    for (int32_t i = 0, l = 0; i < p->n_tasks; i++) {
        while (l < m->n_layers && i >= b.layer_first[l + 1])
            l++;
        task_layer[i] = l;
    }
    char *meta = meta_json(m, t, o, c);
    if (!meta) {
        s = ir_fail(err, IR_ERR_NOMEM, "meta", "out of memory");
        goto fail;
    }
    free(p->meta_json);
    p->meta_json = meta;
    p->target = *t;
    p->has_target = true;
    if (lower_config_copy(&p->config, c) != IR_OK) {
        s = ir_fail(err, IR_ERR_NOMEM, "config", "out of memory");
        goto fail;
    }
    p->has_config = true;
    p->decode.pos = o->pos;
    p->decode.max_seq = b.S;
    p->has_decode = true;
    if ((s = lower_assign_sms(p, c, t->num_sms, err)) != IR_OK)
        goto fail;
    if ((s = lower_alloc_pages(p, c, task_layer, err)) != IR_OK)
        goto fail;
    if ((s = lower_build_plan(p, c, t, err)) != IR_OK)
        goto fail;
    free(task_layer);
    free(b.layer_first);
    *out = p;
    return IR_OK;
fail:
    free(task_layer);
    free(b.layer_first);
    ir_program_free(p);
    return s;
}
