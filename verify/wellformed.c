/*
 * wellformed.c - obligation 1. Structural checks in C (everything AMK's validate() checks that is
 * not a deadlock, race or completeness question, plus what it misses), and the bounds proof: every
 * footprint of every task lies inside its buffer for every decode position in [0, max_seq),
 * proved by Z3 over a symbolic position and cross-checked by exact evaluation at every breakpoint
 * of the piecewise-linear position expressions.
 */
#include <cjson/cJSON.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "verify/verify_internal.h"

/* Params that must be integers (int32) and params that must be numbers, as AMK marshals them. */
static const char *const INT_PARAMS[] = {"K", "N", "M", "N_tile", "M_tile", "n_off", "m_off",
                                         "hidden", "vocab", "head_dim", "n_heads", "n_kv_heads",
                                         "kv_start", "kv_len", "pos", "qdtype", "flags", "group",
                                         "dim", "recipe", "kv_head_off", "kv_heads", NULL};
static const char *const REAL_PARAMS[] = {"eps", "scale", "theta", NULL};

static bool in_list(const char *k, const char *const *l)
{
    for (int i = 0; l[i]; i++)
        if (!strcmp(k, l[i]))
            return true;
    return false;
}

/* Refute with a witness naming the task (or -1) and a message. */
static void refute(vctx *c, const char *kind, int32_t task, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

static void refute(vctx *c, const char *kind, int32_t task, const char *fmt, ...)
{
    char msg[400];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    if (c->r->ob[VERIFY_WELLFORMED].status != VERIFY_REFUTED)
        vset(c, VERIFY_WELLFORMED, VERIFY_REFUTED, "%s", msg);
    if (vwitness_begin(c, kind)) {
        if (task >= 0) {
            vb_fmt(&c->witness, ", \"task\": %d, \"label\": ", task);
            vb_qstr(&c->witness, c->p->tasks[task].label);
        }
        vb_put(&c->witness, ", \"message\": ");
        vb_qstr(&c->witness, msg);
    }
}

static int64_t numel(const ir_program *p, int32_t b) { return ir_buffer_numel(&p->buffers[b]); }
static int64_t dim(const ir_program *p, int32_t b, int d)
{
    const ir_buffer *x = &p->buffers[b];
    if (d < 0)
        d += x->rank;
    return d >= 0 && d < x->rank ? x->shape[d] : 1;
}

/* The head range of an attention task lies in [0, nkv) and is not empty; refutes if not. */
static bool check_head_range(vctx *c, const ir_task *t, const char *what, int64_t nkv)
{
    int64_t off, n;
    if (!ir_attention_heads(t, nkv, &off, &n) || off < 0 || n < 1 || off > nkv - n) {
        refute(c, "shape", t->id, "task %d: %s KV head range kv_head_off/kv_heads must be a "
               "non-empty range inside [0, n_kv_heads=%lld)", t->id, what, (long long)nkv);
        return false;
    }
    return true;
}

/* FUSED recipe 6: q [nh*hd], k and v [nkv*hd], caches [S, nkv*hd], o [nh*hd], RoPE and
 * attention params. */
static bool check_rope_attention(vctx *c, const ir_task *t)
{
    const ir_program *p = c->p;
    int64_t hd = 0, nh = 0, nkv = 0;
    double theta = 0, scale = 0;
    ir_pexpr pos;
    ir_task_int(t, "head_dim", &hd);
    ir_task_int(t, "n_heads", &nh);
    ir_task_int(t, "n_kv_heads", &nkv);
    bool ok = t->n_inputs == 5 && t->n_outputs == 1 && hd > 0 && hd % 2 == 0 && nh > 0 &&
              nkv > 0 && nh % nkv == 0 && ir_task_real(t, "theta", &theta) && theta > 1 &&
              ir_task_real(t, "scale", &scale) && ir_task_pexpr(t, "pos", &pos);
    if (ok) {
        int64_t kvd = nkv * hd;
        ok = numel(p, t->inputs[0]) == nh * hd && numel(p, t->inputs[1]) == kvd &&
             numel(p, t->inputs[2]) == kvd && numel(p, t->outputs[0]) == nh * hd;
        for (int i = 3; ok && i < 5; i++)
            ok = p->buffers[t->inputs[i]].rank == 2 && dim(p, t->inputs[i], 1) == kvd &&
                 dim(p, t->inputs[i], 0) == dim(p, t->inputs[3], 0);
    }
    if (!ok) {
        refute(c, "shape", t->id, "task %d: FUSED recipe 6 (rope_attention) takes q [n_heads * "
               "head_dim], k, v [n_kv_heads * head_dim] and two [S, n_kv_heads * head_dim] "
               "caches to o [n_heads * head_dim], with an even head_dim, theta > 1, scale and pos",
               t->id);
        return false;
    }
    return check_head_range(c, t, "FUSED recipe 6", nkv);
}

/* Weight-only quantized GEMV tile: x [K], qW [N, K] of I8/I4, scales (and zeros) [N, groups]
 * of ceil(K / group) groups, y [.., N]; slot 2 is scales, not a bias. */
static bool check_quantized(vctx *c, const ir_task *t)
{
    const ir_program *p = c->p;
    int64_t K = 0, q = 0, group = 0;
    ir_task_int(t, "K", &K);
    ir_task_int(t, "qdtype", &q);
    bool ok = ir_task_int(t, "group", &group) && group >= 1 && K >= 1 && t->n_outputs == 1;
    int32_t w = t->inputs[1];
    int64_t N = dim(p, w, 0), groups = group >= 1 ? (K + group - 1) / group : 0;
    ok = ok && p->buffers[w].rank == 2 && dim(p, w, 1) == K && (int64_t)p->buffers[w].dtype == q &&
         numel(p, t->inputs[0]) == K && dim(p, t->outputs[0], -1) == N;
    for (int i = 2; ok && i < t->n_inputs; i++)
        ok = p->buffers[t->inputs[i]].rank == 2 && dim(p, t->inputs[i], 0) == N &&
             dim(p, t->inputs[i], 1) == groups;
    if (!ok) {
        refute(c, "shape", t->id, "task %d: a quantized GEMV_TILE (qdtype %lld) takes x [K=%lld], "
               "qW [N, K] of that dtype, scales (and zeros) [N, ceil(K / group)] to y [.., N]",
               t->id, (long long)q, (long long)K);
        return false;
    }
    return true;
}

/* AMK's FUSED recipe object {"steps": [{"op", "args": [{"in": k} | {"s": j}], "out": j |
 * "final", ...}]}: checked step by step as AMK's reference interprets it (known non-FUSED ops,
 * inputs in range, scratch read only after an earlier step wrote it, a final output). Its
 * footprints stay whole buffers. Returns false after refuting. */
static bool check_recipe_object(vctx *c, const ir_task *t, const char *raw)
{
    cJSON *r = cJSON_Parse(raw);
    const cJSON *steps = cJSON_GetObjectItemCaseSensitive(r, "steps");
    char why[200] = "";
    bool final = false;
    int64_t made[64];
    int nmade = 0, i = 0;
    if (!cJSON_IsObject(r) || !cJSON_IsArray(steps) || !steps->child)
        snprintf(why, sizeof why, "recipe must be an object with a non-empty list \"steps\"");
    for (const cJSON *st = steps ? steps->child : NULL; st && !*why; st = st->next, i++) {
        const cJSON *op = cJSON_GetObjectItemCaseSensitive(st, "op");
        const cJSON *args = cJSON_GetObjectItemCaseSensitive(st, "args");
        const cJSON *out = cJSON_GetObjectItemCaseSensitive(st, "out");
        if (!cJSON_IsNumber(op) || op->valuedouble != floor(op->valuedouble) ||
            op->valuedouble < 0 || op->valuedouble >= IR_OP_FUSED) {
            snprintf(why, sizeof why, "step %d: op must be a non-FUSED opcode", i);
            break;
        }
        for (const cJSON *a = args ? args->child : NULL; a && !*why; a = a->next) {
            const cJSON *in = cJSON_GetObjectItemCaseSensitive(a, "in");
            const cJSON *sc = cJSON_GetObjectItemCaseSensitive(a, "s");
            bool known = false;
            for (int k = 0; sc && k < nmade; k++)
                known |= cJSON_IsNumber(sc) && made[k] == (int64_t)sc->valuedouble;
            if (!(cJSON_IsObject(a) && cJSON_GetArraySize(a) == 1 &&
                  ((cJSON_IsNumber(in) && in->valuedouble >= 0 && in->valuedouble < t->n_inputs &&
                    in->valuedouble == floor(in->valuedouble)) || known)))
                snprintf(why, sizeof why, "step %d: an argument is neither an input in [0, %d) "
                         "nor scratch written by an earlier step", i, t->n_inputs);
        }
        if (*why)
            break;
        if (args && !cJSON_IsArray(args))
            snprintf(why, sizeof why, "step %d: args must be a list", i);
        else if ((cJSON_IsString(out) && !strcmp(out->valuestring, "final")) ||
                 (cJSON_IsNumber(out) && out->valuedouble == -1))
            final = true;
        else if (cJSON_IsNumber(out) && out->valuedouble == floor(out->valuedouble) && nmade < 64)
            made[nmade++] = (int64_t)out->valuedouble;
        else
            snprintf(why, sizeof why, "step %d: out must be \"final\" or a scratch index", i);
    }
    if (!*why && !final)
        snprintf(why, sizeof why, "no step writes the final output");
    cJSON_Delete(r);
    if (*why) {
        refute(c, "params", t->id, "task %d: FUSED recipe %s", t->id, why);
        return false;
    }
    if (t->n_outputs != 1) {
        refute(c, "arity", t->id, "task %d: a FUSED recipe object writes exactly one output", t->id);
        return false;
    }
    return true;
}

/* Shapes of the GEMV-shaped tasks (GEMV_TILE, FUSED recipes): x (or the two silu operands, or x
 * plus the norm weight), 1 or 2 weights [N, K], an optional bias [N], one output [.., N] per
 * weight. Returns false after refuting. */
static bool check_gemv_shapes(vctx *c, const ir_task *t)
{
    const ir_program *p = c->p;
    int64_t K, hd;
    int64_t recipe = 0;
    int w0 = 1, nw = 1, nx = 1;
    if (t->op == IR_OP_FUSED) {
        const ir_param *rp = ir_task_param(t, "recipe");
        if (rp && rp->type == IR_PARAM_RAW)
            return check_recipe_object(c, t, rp->raw);
        if (!ir_task_int(t, "recipe", &recipe))
            return true;
        if (recipe == IR_RECIPE_ROPE_APPEND) {
            ir_task_int(t, "head_dim", &hd);
            double theta;
            if (t->n_inputs != 1 || t->n_outputs != 1 || hd <= 0 || hd % 2 ||
                !ir_task_real(t, "theta", &theta) ||
                p->buffers[t->outputs[0]].rank != 2 || numel(p, t->inputs[0]) % hd ||
                numel(p, t->inputs[0]) != dim(p, t->outputs[0], 1)) {
                refute(c, "shape", t->id, "task %d: FUSED recipe 5 (rope_append) takes one "
                       "input of whole heads (even head_dim) filling one row of a [S, D] cache",
                       t->id);
                return false;
            }
            return true;
        }
        if (recipe == IR_RECIPE_ROPE_ATTENTION)
            return check_rope_attention(c, t);
        if (!ir_recipe_weights(recipe, &w0, &nw))
            return true;                  /* opaque recipe: whole-buffer footprints */
        nx = w0;
        double eps;
        bool norm = recipe == IR_RECIPE_NORM_GEMV || recipe == IR_RECIPE_NORM_GEMV_PAIR;
        if (norm && (!ir_task_real(t, "eps", &eps) || !(eps >= 0) || !isfinite(eps))) {
            refute(c, "shape", t->id, "task %d: FUSED recipe %lld needs a finite param eps >= 0",
                   t->id, (long long)recipe);
            return false;
        }
    }
    if (t->op == IR_OP_GEMV_TILE && ir_gemv_quantized(t))
        return check_quantized(c, t);
    int max_in = w0 + nw + (nw == 1 ? 1 : 0);
    if (t->n_inputs < w0 + nw || t->n_inputs > max_in || t->n_outputs != nw) {
        char what[48];
        if (t->op == IR_OP_FUSED)
            snprintf(what, sizeof what, "FUSED recipe %lld", (long long)recipe);
        else
            snprintf(what, sizeof what, "%s", ir_op_name(t->op));
        refute(c, "shape", t->id, "task %d: %s takes %d to %d inputs and %d output(s)", t->id,
               what, w0 + nw, max_in, nw);
        return false;
    }
    ir_task_int(t, "K", &K);
    if (t->op == IR_OP_FUSED && !ir_task_param(t, "K"))
        return true;                      /* a recipe object (AMK's steps): opaque */
    int64_t N = dim(p, t->inputs[w0], 0);
    for (int i = w0; i < w0 + nw; i++) {
        int32_t w = t->inputs[i];
        if (p->buffers[w].rank != 2 || dim(p, w, 1) != K || dim(p, w, 0) != N) {
            refute(c, "shape", t->id, "task %d: weight buffer %d must be [N=%lld, K=%lld]",
                   t->id, w, (long long)N, (long long)K);
            return false;
        }
    }
    for (int i = 0; i < nx; i++) {
        /* x, or both silu operands; the norm weight (slot 1 of recipes 2, 3) has K too */
        if (dim(p, t->inputs[i], -1) != K || numel(p, t->inputs[i]) != K) {
            refute(c, "shape", t->id, "task %d: input buffer %d must hold K=%lld elements",
                   t->id, t->inputs[i], (long long)K);
            return false;
        }
    }
    if (t->n_inputs > w0 + nw && dim(p, t->inputs[w0 + nw], -1) != N) {
        refute(c, "shape", t->id, "task %d: bias buffer %d last dim must equal the weight's "
               "N=%lld", t->id, t->inputs[w0 + nw], (long long)N);
        return false;
    }
    for (int i = 0; i < t->n_outputs; i++)
        if (dim(p, t->outputs[i], -1) != N) {
            refute(c, "shape", t->id, "task %d: output buffer %d last dim must equal the "
                   "weight's N=%lld", t->id, t->outputs[i], (long long)N);
            return false;
        }
    return true;
}

/* ATTENTION_TILE: heads and head_dim agree with q and the KV caches (ours [S, n_kv * head_dim],
 * AMK's [(B,) S, n_kv, head_dim]), and its head range is inside them. */
static bool check_attention_shapes(vctx *c, const ir_task *t)
{
    const ir_program *p = c->p;
    int64_t hd, nh, nkv;
    ir_task_int(t, "head_dim", &hd);
    ir_task_int(t, "n_heads", &nh);
    ir_task_int(t, "n_kv_heads", &nkv);
    const ir_buffer *kc = &p->buffers[t->inputs[1]], *vc = &p->buffers[t->inputs[2]];
    bool ok = hd > 0 && nh > 0 && nkv > 0 && nh % nkv == 0 && kc->rank == vc->rank;
    for (int d = 0; ok && d < kc->rank; d++)
        ok = kc->shape[d] == vc->shape[d];
    int64_t B = kc->rank == 4 ? kc->shape[0] : 1, flags = 0;
    if (ok && kc->rank == 2)          /* ours: [S, n_kv * head_dim] */
        ok = kc->shape[1] == nkv * hd;
    else if (ok && kc->rank >= 3)     /* AMK: [(B,) S, n_kv, head_dim] */
        ok = kc->shape[kc->rank - 2] == nkv && kc->shape[kc->rank - 1] == hd;
    else
        ok = false;
    ok = ok && numel(p, t->inputs[0]) == B * nh * hd;
    if (ok && ir_task_int(t, "flags", &flags) && (flags & 2))
        /* a split-KV partial: [n_heads, head_dim + 2] = acc | running max | denominator */
        ok = B == 1 && numel(p, t->outputs[0]) == nh * (hd + 2);
    if (!ok) {
        refute(c, "shape", t->id, "task %d: ATTENTION_TILE heads/head_dim disagree with its "
               "q and KV buffers", t->id);
        return false;
    }
    return check_head_range(c, t, "ATTENTION_TILE", nkv);
}

/* Op-specific shape agreement; returns false after refuting. */
static bool check_shapes(vctx *c, const ir_task *t)
{
    const ir_program *p = c->p;
    int64_t K, hidden, hd;
    switch (t->op) {
    case IR_OP_GEMV_TILE:
    case IR_OP_FUSED:
        return check_gemv_shapes(c, t);
    case IR_OP_GEMM_TILE: {
        /* x [M, K] -> y [M, N]: rows [m_off, m_off + M_tile), columns of the weight's rows */
        ir_task_int(t, "K", &K);
        int32_t w = t->inputs[1];
        if (t->n_inputs > 2 || p->buffers[w].rank != 2 || dim(p, w, 1) != K ||
            dim(p, t->inputs[0], -1) != K || dim(p, t->outputs[0], -1) != dim(p, w, 0) ||
            numel(p, t->inputs[0]) / K != numel(p, t->outputs[0]) / dim(p, w, 0)) {
            refute(c, "shape", t->id, "task %d: GEMM_TILE takes x [M, K=%lld] and a weight [N, K] "
                   "to y [M, N]", t->id, (long long)K);
            return false;
        }
        break;
    }
    case IR_OP_RMSNORM:
        /* each row of hidden elements is normalized on its own: [hidden] or [B, hidden] */
        ir_task_int(t, "hidden", &hidden);
        if (hidden < 1 || dim(p, t->inputs[0], -1) != hidden || numel(p, t->inputs[1]) != hidden ||
            numel(p, t->outputs[0]) != numel(p, t->inputs[0])) {
            refute(c, "shape", t->id, "task %d: RMSNORM needs rows of hidden=%lld elements, a "
                   "hidden-sized weight and an output the size of its input", t->id,
                   (long long)hidden);
            return false;
        }
        break;
    case IR_OP_EMBED: {
        /* A gather then a reshape: out = table.index_select(0, ids).view_as(out), one table
           row (numel / shape[0] elements) per id. The ids are data; any row may be read. */
        const ir_buffer *ids = &p->buffers[t->inputs[0]], *tab = &p->buffers[t->inputs[1]];
        int64_t rows = tab->rank ? tab->shape[0] : 1, row = numel(p, t->inputs[1]) / rows;
        ir_task_int(t, "hidden", &hidden);
        if ((ids->dtype != IR_I32 && ids->dtype != IR_I8 && ids->dtype != IR_U8) ||
            numel(p, t->outputs[0]) != numel(p, t->inputs[0]) * row ||
            hidden != dim(p, t->outputs[0], -1)) {
            refute(c, "shape", t->id, "task %d: EMBED gathers one %lld-element row of its table "
                   "per integer id: the output must hold %lld ids x %lld elements, its last "
                   "dimension hidden=%lld", t->id, (long long)row,
                   (long long)numel(p, t->inputs[0]), (long long)row, (long long)hidden);
            return false;
        }
        break;
    }
    case IR_OP_ADD:
    case IR_OP_SILU_MUL:
        if (numel(p, t->inputs[0]) != numel(p, t->outputs[0]) ||
            numel(p, t->inputs[1]) != numel(p, t->outputs[0])) {
            refute(c, "shape", t->id, "task %d: %s operands must have equal sizes", t->id,
                   ir_op_name(t->op));
            return false;
        }
        break;
    case IR_OP_ROPE:
        /* [x] at the param pos, or AMK's [x, positions]: one position per row of a rank-3
           [B, heads, head_dim] x, one for all heads of a rank-2 x */
        ir_task_int(t, "head_dim", &hd);
        if (hd <= 0 || hd % 2 || numel(p, t->inputs[0]) % hd ||
            numel(p, t->inputs[0]) != numel(p, t->outputs[0]) ||
            (t->n_inputs == 2 &&
             (p->buffers[t->inputs[1]].dtype != IR_I32 ||
              numel(p, t->inputs[1]) < (p->buffers[t->inputs[0]].rank == 3 ? dim(p, t->inputs[0], 0)
                                                                         : 1)))) {
            refute(c, "shape", t->id, "task %d: ROPE needs an even head_dim dividing the input, "
                   "and an I32 positions input with one position per sequence", t->id);
            return false;
        }
        break;
    case IR_OP_KV_APPEND: {
        /* caches [S, D] (ours), [S, n_kv, head_dim] or [B, S, n_kv, head_dim] (AMK); the source
           fills one slot of every sequence; AMK passes the cache as a second input (a binding) */
        const ir_buffer *kc = &p->buffers[t->outputs[0]];
        int64_t slot = kc->rank == 4 ? kc->shape[0] * kc->shape[2] * kc->shape[3]
                     : kc->rank >= 2 ? numel(p, t->outputs[0]) / kc->shape[0] : 0;
        if (kc->rank < 2 || numel(p, t->inputs[0]) != slot ||
            (t->n_inputs == 2 && t->inputs[1] != t->outputs[0])) {
            refute(c, "shape", t->id, "task %d: KV_APPEND source must fill one position slot of "
                   "its cache ([S, D], [S, n_kv, head_dim] or [B, S, n_kv, head_dim]), and a "
                   "second input must be that cache", t->id);
            return false;
        }
        break;
    }
    case IR_OP_ATTENTION_TILE:
        return check_attention_shapes(c, t);
    default:
        break;
    }
    return true;
}

/* Exact C evaluation: a violation of lo >= 0, hi <= size, lo <= hi for some position in
 * [L, S) happens at a breakpoint of the piecewise-linear bounds; returns the position or -1. */
static void add_breaks(ir_pexpr e, int64_t L, int64_t S, int64_t *pts, int *n)
{
    if (e.mul == 0)
        return;
    int64_t bounds[2] = {e.lo, e.hi};
    for (int k = 0; k < 2; k++) {
        if (bounds[k] == INT64_MIN || bounds[k] == INT64_MAX)
            continue;
        double x = ((double)bounds[k] - (double)e.add) / (double)e.mul;
        for (int d = -1; d <= 1; d++) {
            double v = floor(x) + d;
            if (v >= (double)L && v < (double)S && *n < 30)
                pts[(*n)++] = (int64_t)v;
        }
    }
}

static int64_t bound_violation_pos(ir_pexpr lo, ir_pexpr hi, int64_t size, int64_t L, int64_t S)
{
    int64_t pts[32];
    int n = 0;
    pts[n++] = L;
    pts[n++] = S - 1;
    add_breaks(lo, L, S, pts, &n);
    add_breaks(hi, L, S, pts, &n);
    for (int i = 0; i < n; i++) {
        int64_t a = ir_pexpr_eval(lo, pts[i]), b = ir_pexpr_eval(hi, pts[i]);
        if (a < 0 || b > size || a > b)
            return pts[i];
    }
    return -1;
}

typedef struct {
    ir_pexpr lo, hi;
    int64_t size;
    int64_t acc;      /* an access with this bound, for the witness */
    int dim;
} bound_check;

/* Z3: exists pos in [pos_lo, S) violating one of the distinct bound checks. */
static void prove_bounds(vctx *c, bound_check *bc, int64_t nb)
{
    const ir_program *p = c->p;
    int64_t S = c->max_seq;
    /* C decision first. */
    int64_t bad = -1, bad_pos = -1;
    for (int64_t i = 0; i < nb && bad < 0; i++) {
        int64_t ps = bound_violation_pos(bc[i].lo, bc[i].hi, bc[i].size, c->pos_lo, S);
        if (ps >= 0) {
            bad = i;
            bad_pos = ps;
        }
    }
    vz3 z;
    if (!vz3_open(&z, c, VERIFY_WELLFORMED, true)) {
        vset(c, VERIFY_WELLFORMED, VERIFY_UNKNOWN, "could not start Z3");
        return;
    }
    Z3_ast pos = vz3_int(&z, "pos", 0);
    Z3_ast range[2] = {Z3_mk_ge(z.ctx, pos, vz3_num(&z, c->pos_lo)),
                       Z3_mk_lt(z.ctx, pos, vz3_num(&z, S))};
    Z3_solver_assert(z.ctx, z.solver, vz3_and(&z, 2, range));
    Z3_ast *viol = malloc(((size_t)nb + 1) * sizeof *viol);
    if (!viol) {
        vz3_close(&z);
        vset(c, VERIFY_WELLFORMED, VERIFY_UNKNOWN, "out of memory");
        return;
    }
    for (int64_t i = 0; i < nb; i++) {
        Z3_ast lo = vz3_pexpr(&z, bc[i].lo, pos), hi = vz3_pexpr(&z, bc[i].hi, pos);
        Z3_ast v[3] = {Z3_mk_lt(z.ctx, lo, vz3_num(&z, 0)),
                       Z3_mk_gt(z.ctx, hi, vz3_num(&z, bc[i].size)), Z3_mk_gt(z.ctx, lo, hi)};
        viol[i] = vz3_or(&z, 3, v);
    }
    Z3_solver_assert(z.ctx, z.solver, vz3_or(&z, (int)(nb > 1000000 ? 1000000 : nb), viol));
    Z3_lbool res = vz3_check(&z);
    if (res == Z3_L_UNDEF) {
        vset(c, VERIFY_WELLFORMED, VERIFY_UNKNOWN, "Z3 gave up on the bounds query (%s)",
             Z3_solver_get_reason_unknown(z.ctx, z.solver));
    } else if ((res == Z3_L_TRUE) != (bad >= 0)) {
        vset(c, VERIFY_WELLFORMED, VERIFY_UNKNOWN,
             "internal disagreement on bounds: Z3 says %s, exact evaluation says %s",
             res == Z3_L_TRUE ? "violated" : "inside", bad >= 0 ? "violated" : "inside");
    } else if (res == Z3_L_TRUE) {
        const vaccess *a = &c->acc[bc[bad].acc];
        const ir_task *t = &p->tasks[a->task];
        int64_t zpos = -1;
        vz3_model_int(&z, pos, &zpos);
        char msg[400];
        snprintf(msg, sizeof msg, "task %d (%s) %s buffer %d '%s' dim %d range [%lld, %lld) "
                 "outside [0, %lld) at pos %lld", t->id, ir_op_name(t->op),
                 a->write ? "writes" : "reads", a->buffer, p->buffers[a->buffer].name, bc[bad].dim,
                 (long long)ir_pexpr_eval(bc[bad].lo, bad_pos),
                 (long long)ir_pexpr_eval(bc[bad].hi, bad_pos), (long long)bc[bad].size,
                 (long long)bad_pos);
        vset(c, VERIFY_WELLFORMED, VERIFY_REFUTED, "%s", msg);
        if (vwitness_begin(c, "bounds")) {
            vb_fmt(&c->witness, ", \"task\": %d, \"buffer\": %d, \"access\": \"%s\", \"dim\": %d, "
                   "\"pos\": %lld, \"range\": [%lld, %lld], \"size\": %lld, \"z3_pos\": %lld, "
                   "\"message\": ", t->id, a->buffer, a->write ? "write" : "read", bc[bad].dim,
                   (long long)bad_pos, (long long)ir_pexpr_eval(bc[bad].lo, bad_pos),
                   (long long)ir_pexpr_eval(bc[bad].hi, bad_pos), (long long)bc[bad].size,
                   (long long)zpos);
            vb_qstr(&c->witness, msg);
        }
    } else {
        vset(c, VERIFY_WELLFORMED, VERIFY_PROVED, "structure checked; %lld distinct footprint "
             "bounds proved for every pos in [%lld, %lld)", (long long)nb, (long long)c->pos_lo,
             (long long)S);
    }
    free(viol);
    vz3_close(&z);
}

void verify_wellformed(vctx *c)
{
    const ir_program *p = c->p;
    const ir_target *tg = c->t;
    vset(c, VERIFY_WELLFORMED, VERIFY_PROVED, "structure checked");
    for (int32_t i = 0; i < p->n_counters; i++)
        if (p->counters[i].init != 0) {
            refute(c, "counter_init", -1, "counter %d starts at %lld; every counter must start "
                   "at 0 at each launch", i, (long long)p->counters[i].init);
            return;
        }
    for (int32_t i = 0; i < p->n_tasks; i++) {
        const ir_task *t = &p->tasks[i];
        const ir_op_info *spec = ir_op_spec(t->op);
        int maxin = spec->max_inputs < 0 ? IR_MAX_INPUTS : spec->max_inputs;
        if (t->n_inputs < spec->min_inputs || t->n_inputs > maxin || t->n_outputs < spec->min_outputs ||
            t->n_outputs > spec->max_outputs) {
            refute(c, "arity", i, "task %d (%s) has %d inputs and %d outputs; expected %d..%d "
                   "inputs and %d..%d outputs", i, ir_op_name(t->op), t->n_inputs, t->n_outputs,
                   spec->min_inputs, maxin, spec->min_outputs, spec->max_outputs);
            return;
        }
        for (int k = 0; spec->required[k]; k++)
            if (!ir_task_param(t, spec->required[k])) {
                refute(c, "params", i, "task %d (%s) lacks required param '%s'", i,
                       ir_op_name(t->op), spec->required[k]);
                return;
            }
        for (int k = 0; k < t->n_params; k++) {
            const ir_param *q = &t->params[k];
            bool recipe_object = t->op == IR_OP_FUSED && !strcmp(q->key, "recipe") &&
                                 q->type == IR_PARAM_RAW;   /* AMK's, checked by its steps */
            if (in_list(q->key, INT_PARAMS) && !recipe_object &&
                (q->type != IR_PARAM_INT || q->i < INT32_MIN || q->i > INT32_MAX)) {
                refute(c, "params", i, "task %d param '%s' must be an int32", i, q->key);
                return;
            }
            if (in_list(q->key, REAL_PARAMS) && q->type == IR_PARAM_RAW) {
                refute(c, "params", i, "task %d param '%s' must be a number", i, q->key);
                return;
            }
            if (q->type == IR_PARAM_REAL && !isfinite(q->r)) {
                refute(c, "params", i, "task %d param '%s' is not finite", i, q->key);
                return;
            }
        }
        int64_t v;
        if ((ir_task_int(t, "N_tile", &v) && v < 1) || (ir_task_int(t, "K", &v) && v < 1) ||
            (ir_task_int(t, "M_tile", &v) && v < 1)) {
            refute(c, "params", i, "task %d: tile sizes K, N_tile, M_tile must be >= 1", i);
            return;
        }
        for (int k = 0; k < t->n_outputs; k++)
            if (ir_kind_is_readonly(p->buffers[t->outputs[k]].kind)) {
                refute(c, "readonly_write", i, "task %d (%s) writes buffer %d '%s' of kind %s, "
                       "which is read-only", i, ir_op_name(t->op), t->outputs[k],
                       p->buffers[t->outputs[k]].name,
                       ir_kind_name(p->buffers[t->outputs[k]].kind));
                return;
            }
        if (p->has_plan) {
            if (t->sm >= 0 && t->sm != c->queue_of[i]) {
                refute(c, "queue", i, "task %d has sm %d but the launch plan runs it on queue %d",
                       i, t->sm, c->queue_of[i]);
                return;
            }
        } else if (t->sm >= tg->num_sms) {
            refute(c, "queue", i, "task %d has sm %d, outside the %lld SMs of target %s", i, t->sm,
                   (long long)tg->num_sms, tg->name);
            return;
        }
        if (!check_shapes(c, t))
            return;
    }
    if (p->has_pages)
        for (int i = 0; i < p->pages.n_map; i++) {
            int32_t b = p->pages.map_buffer[i];
            const ir_page *pg = &p->pages.pages[p->pages.map_page[i]];
            const ir_buffer *x = &p->buffers[b];
            if (x->kind != IR_ACTIVATION) {
                refute(c, "page", -1, "buffer %d '%s' of kind %s is mapped to page %d; only "
                       "activations live in pages", b, x->name, ir_kind_name(x->kind), pg->id);
                return;
            }
            if (ir_buffer_nbytes(x) > pg->nbytes) {
                refute(c, "page", -1, "buffer %d '%s' needs %lld bytes but page %d has %lld", b,
                       x->name, (long long)ir_buffer_nbytes(x), pg->id, (long long)pg->nbytes);
                return;
            }
            if (x->space != pg->space) {
                refute(c, "page", -1, "buffer %d '%s' is in %s but its page %d is in %s", b,
                       x->name, ir_space_name(x->space), pg->id, ir_space_name(pg->space));
                return;
            }
        }
    /* Bounds: collect distinct (lo, hi, size) per dimension of every access. */
    vkeyset seen = {.width = 9};
    bound_check *bc = NULL;
    int64_t nb = 0, cap = 0;
    for (int64_t a = 0; a < c->n_acc; a++) {
        const vaccess *x = &c->acc[a];
        const ir_buffer *b = &p->buffers[x->buffer];
        for (int d = 0; d < x->box.rank; d++) {
            int64_t key[9] = {x->box.lo[d].mul, x->box.lo[d].add, x->box.lo[d].lo,
                              x->box.lo[d].hi, x->box.hi[d].mul, x->box.hi[d].add,
                              x->box.hi[d].lo, x->box.hi[d].hi, b->shape[d]};
            int added = vkeyset_add(&seen, key);
            if (added < 0)
                goto nomem;
            if (!added)
                continue;
            if (nb == cap) {
                cap = cap ? cap * 2 : 256;
                bound_check *n = realloc(bc, (size_t)cap * sizeof *n);
                if (!n)
                    goto nomem;
                bc = n;
            }
            bc[nb++] = (bound_check){x->box.lo[d], x->box.hi[d], b->shape[d], a, d};
        }
    }
    vkeyset_free(&seen);
    prove_bounds(c, bc, nb);
    free(bc);
    return;
nomem:
    vkeyset_free(&seen);
    free(bc);
    vset(c, VERIFY_WELLFORMED, VERIFY_UNKNOWN, "out of memory");
}
