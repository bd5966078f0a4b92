/*
 * mk_load.c - the host half of the megakernel: the gate in front of the GPU (certificate, live
 * residency, ops the kernel runs), the flattening of a program into the tables the kernel reads,
 * the one-time weight upload, and one launch per decoded token (SPEC.md section 15).
 *
 * Everything up to the device checks is plain C and runs without CUDA, so the refusals can be
 * tested on any machine; a build without nvcc answers MK_NO_CUDA after them.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/base.h"
#include "megakernel/mk_internal.h"
#include "refvm/refvm.h"
#include "verify/verify.h"

struct mk_handle {
    const ir_program *p;
    mk_options o;
    char device_name[256];
    int num_sms, blocks_per_sm;
    void **allocs;                 /* every device allocation, freed by mk_free */
    int n_allocs, cap_allocs;
    mk_buf *bufs;                  /* host copy of the buffer table */
    mk_launch L;
    int32_t tokens_buf, logits_buf, next_token_buf;
    int64_t vocab, embed_rows, max_seq, weight_bytes;
    int64_t stream_tasks;          /* tasks marked MK_F_STREAM */
    int64_t amax_tiles;            /* tasks marked MK_F_AMAX_PART */
};

const char *mk_op_label(int32_t code)
{
    if (code >= 0 && code < IR_OP_COUNT)
        return ir_op_name((ir_op)code);
    switch (code) {
#define MK_OWN_LABEL(c, label) case c: return label;
    MK_OWN_CODES(MK_OWN_LABEL)
#undef MK_OWN_LABEL
    default: return "?";
    }
}

const char *mk_status_name(mk_status s)
{
    switch (s) {
    case MK_OK: return "OK";
    case MK_REFUSED: return "REFUSED";
    case MK_MALFORMED: return "MALFORMED";
    case MK_UNSUPPORTED: return "UNSUPPORTED";
    case MK_NO_CUDA: return "NO_CUDA";
    case MK_NO_DEVICE: return "NO_DEVICE";
    case MK_TIMEOUT: return "TIMEOUT";
    case MK_CUDA_ERROR: return "CUDA_ERROR";
    case MK_NOMEM: return "NOMEM";
    }
    return "?";
}

void mk_options_default(mk_options *o)
{
    memset(o, 0, sizeof *o);
    o->spin_budget = MK_DEFAULT_SPIN_BUDGET;
}

bool mk_have_cuda(void)
{
#ifdef AMK_HAVE_CUDA
    return true;
#else
    return false;
#endif
}

int mk_device_count(char *name, size_t name_len)
{
    if (name && name_len)
        name[0] = 0;
#ifdef AMK_HAVE_CUDA
    return mkd_device_count(name, name_len);
#else
    return 0;
#endif
}

/* ---------------------------------------------------------------- flattening (no GPU) */

static mk_status fail(ir_error *err, mk_status s, ir_status is, const char *where,
                      const char *why)
{
    ir_fail(err, is, where, "%s", why);
    return s;
}

static int int_slot(const char *key)
{
    static const char *names[MK_NI] = {"K", "N_tile", "n_off", "hidden", "head_dim", "pos",
                                       "kv_start", "kv_len", "n_heads", "n_kv_heads", "m_off",
                                       "rope_orig_max", "kv_head_off", "kv_heads"};
    for (int i = 0; i < MK_NI; i++)
        if (!strcmp(key, names[i]))
            return i;
    return -1;
}

static int real_slot(const char *key)
{
    static const char *names[MK_NR] = {"eps", "theta", "scale", "rope_factor", "rope_low_freq",
                                       "rope_high_freq"};
    for (int i = 0; i < MK_NR; i++)
        if (!strcmp(key, names[i]))
            return i;
    return -1;
}

static bool weight_dtype_ok(ir_dtype d) { return d == IR_F32 || d == IR_BF16 || d == IR_F16; }

/* Translate task t into the kernel's form, refusing what the kernel does not run. */
static mk_status flatten_task(const ir_program *p, const ir_task *t, int64_t threads,
                              mk_task *out, ir_error *err)
{
    char where[64];
    snprintf(where, sizeof where, "task %d", t->id);
    memset(out, 0, sizeof *out);
    for (int k = 0; k < MK_NI; k++)
        out->ip[k] = (mk_pexpr){0, 0, INT64_MIN, INT64_MAX};
    out->op = (int32_t)t->op;
    out->out_counter = t->out_counter;
    out->n_waits = t->n_waits;
    out->n_in = t->n_inputs;
    out->n_out = t->n_outputs;
    for (int k = 0; k < t->n_waits; k++) {
        if (t->waits[k].threshold > INT32_MAX || t->waits[k].threshold < 0) {
            ir_fail(err, IR_ERR_UNSUPPORTED, where, "wait threshold %lld does not fit the "
                    "kernel's 32-bit counters", (long long)t->waits[k].threshold);
            return MK_UNSUPPORTED;
        }
        out->wait_counter[k] = t->waits[k].counter;
        out->wait_threshold[k] = (int32_t)t->waits[k].threshold;
    }
    for (int k = 0; k < t->n_inputs; k++)
        out->in[k] = t->inputs[k];
    for (int k = 0; k < t->n_outputs; k++)
        out->out[k] = t->outputs[k];
    for (int k = 0; k < t->n_params; k++) {
        const ir_param *q = &t->params[k];
        int s = int_slot(q->key), r = real_slot(q->key);
        if (s >= 0 && q->type == IR_PARAM_INT) {
            out->ip[s] = q->has_pexpr ? (mk_pexpr){q->pexpr.mul, q->pexpr.add, q->pexpr.lo,
                                                   q->pexpr.hi}
                                      : (mk_pexpr){0, q->i, INT64_MIN, INT64_MAX};
            if (s == MK_P_MOFF)
                out->flags |= MK_F_PARTIAL;
        }
        if (r >= 0 && (q->type == IR_PARAM_INT || q->type == IR_PARAM_REAL))
            out->rp[r] = q->type == IR_PARAM_INT ? (double)q->i : q->r;
        if (!strcmp(q->key, "rope_factor"))
            out->flags |= MK_F_LLAMA3;
    }
    /* Arity and dtypes: activations are F32, weights F32/BF16/F16 (SPEC 5). */
    int ni = 0, no = 0;
    switch (t->op) {
    case IR_OP_NOP: break;
    case IR_OP_EMBED: case IR_OP_RMSNORM: case IR_OP_ADD: case IR_OP_SILU_MUL: case IR_OP_MUL:
        ni = 2; no = 1; break;
    case IR_OP_COPY: case IR_OP_GELU: case IR_OP_ROPE: case IR_OP_KV_APPEND:
    case IR_OP_SAMPLE_ARGMAX: case IR_OP_ATTENTION_COMBINE:
        ni = 1; no = 1; break;
    case IR_OP_GEMV_TILE: ni = 2; no = 1; break;
    case IR_OP_ATTENTION_TILE: ni = 3; no = 1; break;
    case IR_OP_FUSED: {
        int64_t recipe = 0;
        ir_task_int(t, "recipe", &recipe);
        switch (recipe) {
        case IR_RECIPE_GEMV_PAIR: ni = 3; no = 2; break;
        case IR_RECIPE_NORM_GEMV: ni = 3; no = 1; out->op = MK_OP_NORM_GEMV; break;
        case IR_RECIPE_NORM_GEMV_PAIR: ni = 4; no = 2; out->op = MK_OP_NORM_GEMV_PAIR; break;
        case IR_RECIPE_SILU_GEMV: ni = 3; no = 1; out->op = MK_OP_SILU_GEMV; break;
        case IR_RECIPE_ROPE_APPEND: ni = 1; no = 1; out->op = MK_OP_ROPE_APPEND; break;
        case IR_RECIPE_ROPE_ATTENTION: ni = 5; no = 1; out->op = MK_OP_ROPE_ATTENTION; break;
        default:
            ir_fail(err, IR_ERR_UNSUPPORTED, where, "FUSED recipe %lld is not run by the "
                    "megakernel (it runs recipes 1-6)", (long long)recipe);
            return MK_UNSUPPORTED;
        }
        break;
    }
    default:
        ir_fail(err, IR_ERR_UNSUPPORTED, where, "op %s is not run by the megakernel",
                ir_op_name(t->op));
        return MK_UNSUPPORTED;
    }
    if (t->n_inputs < ni || t->n_outputs < no) {
        ir_fail(err, IR_ERR_MALFORMED, where, "%s needs %d inputs and %d outputs",
                ir_op_name(t->op), ni, no);
        return MK_MALFORMED;
    }
    if ((t->op == IR_OP_GEMV_TILE && t->n_inputs > 2) ||
        ((out->op == MK_OP_NORM_GEMV || out->op == MK_OP_SILU_GEMV) && t->n_inputs > 3))
        out->flags |= MK_F_BIAS;
    for (int k = 0; k < t->n_inputs; k++) {
        const ir_buffer *b = &p->buffers[t->inputs[k]];
        bool weight = b->kind == IR_WEIGHT || b->kind == IR_CONST;
        bool ok = weight ? weight_dtype_ok(b->dtype)
                         : b->dtype == IR_F32 || (t->op == IR_OP_EMBED && k == 0 && b->dtype == IR_I32);
        if (!ok) {
            ir_fail(err, IR_ERR_UNSUPPORTED, where, "input %d (%s) has dtype %s", k, b->name,
                    ir_dtype_name(b->dtype));
            return MK_UNSUPPORTED;
        }
    }
    for (int k = 0; k < t->n_outputs; k++) {
        const ir_buffer *b = &p->buffers[t->outputs[k]];
        if (b->dtype != IR_F32 && !(t->op == IR_OP_SAMPLE_ARGMAX && b->dtype == IR_I32)) {
            ir_fail(err, IR_ERR_UNSUPPORTED, where, "output %d (%s) has dtype %s", k, b->name,
                    ir_dtype_name(b->dtype));
            return MK_UNSUPPORTED;
        }
    }
    bool attn = t->op == IR_OP_ATTENTION_TILE || out->op == MK_OP_ROPE_ATTENTION;
    if (attn || t->op == IR_OP_ATTENTION_COMBINE) {
        int64_t hd = 0, nh = 0, nkv = 0, g0 = 0, gn = 0;
        ir_task_int(t, "head_dim", &hd);
        if (hd > BASE_MAX_KERNEL_HEAD_DIM) {
            ir_fail(err, IR_ERR_UNSUPPORTED, where, "head_dim %lld: the kernel holds at most %d "
                    "per head in registers", (long long)hd, BASE_MAX_KERNEL_HEAD_DIM);
            return MK_UNSUPPORTED;
        }
        ir_task_int(t, "n_heads", &nh);
        ir_task_int(t, "n_kv_heads", &nkv);
        if (attn && (hd < 1 || nh < 1 || nkv < 1 || nh % nkv ||
                     !ir_attention_heads(t, nkv, &g0, &gn) || g0 < 0 || gn < 1 || g0 > nkv - gn)) {
            ir_fail(err, IR_ERR_MALFORMED, where, "attention heads %lld/%lld or KV head range "
                    "[%lld, +%lld) do not fit", (long long)nh, (long long)nkv, (long long)g0,
                    (long long)gn);
            return MK_MALFORMED;
        }
        /* The head range, defaults filled in (the kernel reads both slots). */
        out->ip[MK_P_KVHOFF] = (mk_pexpr){0, g0, INT64_MIN, INT64_MAX};
        out->ip[MK_P_KVHEADS] = (mk_pexpr){0, gn, INT64_MIN, INT64_MAX};
        if (out->op == MK_OP_ROPE_ATTENTION && (gn * (nh / nkv) + gn) * hd > MK_XS) {
            ir_fail(err, IR_ERR_UNSUPPORTED, where, "FUSED recipe 6 over %lld KV heads needs "
                    "%lld floats of rotated q and k; the kernel holds %d (lower with a smaller "
                    "config.tiling.attention.kv_heads)", (long long)gn,
                    (long long)((gn * (nh / nkv) + gn) * hd), MK_XS);
            return MK_UNSUPPORTED;
        }
    }
    if ((t->op == IR_OP_EMBED && p->buffers[t->inputs[1]].rank != 2) ||
        ((t->op == IR_OP_KV_APPEND || out->op == MK_OP_ROPE_APPEND) &&
         p->buffers[t->outputs[0]].rank != 2) ||
        (out->op == MK_OP_ROPE_ATTENTION &&
         (p->buffers[t->inputs[3]].rank != 2 || p->buffers[t->inputs[4]].rank != 2)) ||
        (t->op == IR_OP_ATTENTION_COMBINE && p->buffers[t->inputs[0]].rank != 2)) {
        ir_fail(err, IR_ERR_MALFORMED, where, "%s needs a rank-2 table, cache or partials buffer",
                ir_op_name(t->op));
        return MK_MALFORMED;
    }
    (void)threads;
    return MK_OK;
}

/* ---------------------------------------------------------------- device side of loading */

#ifdef AMK_HAVE_CUDA
static mk_status dev_alloc(mk_handle *h, void **d, size_t bytes, ir_error *err)
{
    if (h->n_allocs == h->cap_allocs) {
        int cap = h->cap_allocs ? 2 * h->cap_allocs : 64;
        void **a = realloc(h->allocs, (size_t)cap * sizeof *a);
        if (!a)
            return fail(err, MK_NOMEM, IR_ERR_NOMEM, "megakernel", "out of memory");
        h->allocs = a;
        h->cap_allocs = cap;
    }
    mk_status s = mkd_alloc(d, bytes, err);
    if (s == MK_OK)
        h->allocs[h->n_allocs++] = *d;
    return s;
}

static const refvm_tensor *tensor_for(const refvm_st *st, const ir_buffer *b, bool tie)
{
    const refvm_tensor *t = refvm_st_find(st, b->source);
    if (!t && tie && !strcmp(b->source, "lm_head.weight"))
        t = refvm_st_find(st, "model.embed_tokens.weight");
    return t;
}

/* Bind every WEIGHT/CONST buffer by its source key (same checks as refvm_bind) and upload each
 * tensor once; buffers naming one tensor share its device copy. */
static mk_status upload_weights(mk_handle *h, const char *path, bool tie, ir_error *err)
{
    const ir_program *p = h->p;
    refvm_st *st = NULL;
    ir_status is = refvm_st_open(path, &st, err);
    if (is != IR_OK)
        return MK_MALFORMED;
    const refvm_tensor **bound = calloc((size_t)p->n_buffers + 1, sizeof *bound);
    mk_status s = bound ? MK_OK : fail(err, MK_NOMEM, IR_ERR_NOMEM, "megakernel", "out of memory");
    char where[64];
    for (int32_t i = 0; i < p->n_buffers && s == MK_OK; i++) {
        const ir_buffer *b = &p->buffers[i];
        if (b->kind != IR_WEIGHT && b->kind != IR_CONST)
            continue;
        snprintf(where, sizeof where, "buffers[%d]", i);
        const refvm_tensor *t = b->source ? tensor_for(st, b, tie) : NULL;
        if (!t) {
            ir_fail(err, IR_ERR_MALFORMED, where, "tensor '%.100s' (for %.60s) is not in %s",
                    b->source ? b->source : "(no source)", b->name, path);
            s = MK_MALFORMED;
            break;
        }
        bool same = t->supported && t->dtype == b->dtype && t->rank == b->rank;
        for (int k = 0; same && k < b->rank; k++)
            same = t->shape[k] == b->shape[k];
        if (!same) {
            ir_fail(err, IR_ERR_MALFORMED, where, "tensor '%.100s' is %s of rank %d, %s needs %s "
                    "of the buffer's shape", t->name, t->st_dtype, t->rank, b->name,
                    ir_dtype_name(b->dtype));
            s = MK_MALFORMED;
            break;
        }
        bound[i] = t;
        for (int32_t j = 0; j < i; j++)
            if (bound[j] == t) {
                h->bufs[i].ptr = h->bufs[j].ptr;
                break;
            }
        if (h->bufs[i].ptr)
            continue;
        size_t bytes = (size_t)(t->end - t->begin);
        if ((s = dev_alloc(h, &h->bufs[i].ptr, bytes, err)) == MK_OK)
            s = mkd_upload(h->bufs[i].ptr, t->data, bytes, err);
        h->weight_bytes += (int64_t)bytes;
    }
    free(bound);
    refvm_st_close(st);
    return s;
}

/* Storage: one allocation per page (its buffers share it from byte 0), one per other buffer;
 * everything zeroed once, so KV rows start at 0 and persist across launches. */
static mk_status alloc_storage(mk_handle *h, ir_error *err)
{
    const ir_program *p = h->p;
    int32_t np = p->has_pages ? p->pages.n_pages : 0;
    int32_t *page_of = malloc(sizeof *page_of * ((size_t)p->n_buffers + 1));
    int64_t *need = calloc((size_t)np + 1, sizeof *need);
    void **page_ptr = calloc((size_t)np + 1, sizeof *page_ptr);
    mk_status s = page_of && need && page_ptr ? MK_OK
                  : fail(err, MK_NOMEM, IR_ERR_NOMEM, "megakernel", "out of memory");
    for (int32_t i = 0; s == MK_OK && i < p->n_buffers; i++)
        page_of[i] = -1;
    for (int i = 0; s == MK_OK && p->has_pages && i < p->pages.n_map; i++) {
        int32_t b = p->pages.map_buffer[i], g = p->pages.map_page[i];
        if (b < 0 || b >= p->n_buffers || g < 0 || g >= np) {
            s = fail(err, MK_MALFORMED, IR_ERR_MALFORMED, "pages.buffer_to_page",
                     "entry names a buffer or page out of range");
            break;
        }
        const ir_buffer *bb = &p->buffers[b];
        if (ir_kind_is_readonly(bb->kind) || bb->kind == IR_KV_CACHE)
            continue;
        page_of[b] = g;
        if (ir_buffer_nbytes(bb) > need[g])
            need[g] = ir_buffer_nbytes(bb);
    }
    for (int32_t g = 0; s == MK_OK && g < np; g++)
        if (need[g] && (s = dev_alloc(h, &page_ptr[g], (size_t)need[g], err)) == MK_OK)
            s = mkd_zero(page_ptr[g], (size_t)need[g], err);
    for (int32_t i = 0; s == MK_OK && i < p->n_buffers; i++) {
        const ir_buffer *bb = &p->buffers[i];
        if (bb->kind == IR_WEIGHT || bb->kind == IR_CONST)
            continue;
        size_t bytes = (size_t)ir_buffer_nbytes(bb);
        if (page_of[i] >= 0) {
            h->bufs[i].ptr = page_ptr[page_of[i]];
        } else if ((s = dev_alloc(h, &h->bufs[i].ptr, bytes, err)) == MK_OK) {
            s = mkd_zero(h->bufs[i].ptr, bytes, err);
        }
    }
    free(page_of);
    free(need);
    free(page_ptr);
    return s;
}

static mk_status upload_table(mk_handle *h, void **d, const void *src, size_t bytes,
                              ir_error *err)
{
    mk_status s = dev_alloc(h, d, bytes, err);
    return s == MK_OK && bytes ? mkd_upload(*d, src, bytes, err) : s;
}

/* RoPE tables: when every RoPE-using task (ROPE, FUSED recipes 5 and 6) has the same params,
 * cos and sin of every position in [0, max_seq) are computed here once, by the reference VM's
 * own function, and those tasks read them instead of computing double pow, cos and sin in every
 * launch. Past MK_ROPE_TABLE_MAX bytes, or with differing params, the kernel computes them. */
#define MK_ROPE_TABLE_MAX ((int64_t)64 << 20)

static bool rope_task(const mk_task *t)
{
    return t->op == IR_OP_ROPE || t->op == MK_OP_ROPE_APPEND || t->op == MK_OP_ROPE_ATTENTION;
}

static refvm_rope rope_of(const mk_task *t)
{
    refvm_rope r = {t->ip[MK_P_HEADDIM].add, t->rp[MK_R_THETA], (t->flags & MK_F_LLAMA3) != 0,
                    t->rp[MK_R_FACTOR], t->rp[MK_R_LOW], t->rp[MK_R_HIGH], t->ip[MK_P_ORIGMAX].add};
    return r;
}

static mk_status rope_table(mk_handle *h, mk_task *tasks, int32_t n, ir_error *err)
{
    const mk_task *first = NULL;
    for (int32_t i = 0; i < n; i++) {
        if (!rope_task(&tasks[i]))
            continue;
        if (tasks[i].ip[MK_P_HEADDIM].mul || tasks[i].ip[MK_P_ORIGMAX].mul)
            return MK_OK;                  /* position-dependent: not tabulated */
        refvm_rope a = rope_of(&tasks[i]), b = first ? rope_of(first) : a;
        if (memcmp(&a, &b, sizeof a))
            return MK_OK;
        first = first ? first : &tasks[i];
    }
    if (!first)
        return MK_OK;
    refvm_rope r = rope_of(first);
    if (r.head_dim < 2 || r.head_dim % 2 || r.head_dim > BASE_MAX_HEAD_DIM ||
        h->max_seq > MK_ROPE_TABLE_MAX / 8 / r.head_dim)
        return MK_OK;
    size_t per = (size_t)r.head_dim, bytes = (size_t)h->max_seq * per * sizeof(double);
    double *cs = malloc(bytes);
    if (!cs)
        return fail(err, MK_NOMEM, IR_ERR_NOMEM, "megakernel", "out of memory");
    for (int64_t pos = 0; pos < h->max_seq; pos++)
        refvm_rope_angles(&r, pos, cs + (size_t)pos * per);
    void *d = NULL;
    mk_status s = upload_table(h, &d, cs, bytes, err);
    free(cs);
    if (s != MK_OK)
        return s;
    h->L.rope_cs = d;
    for (int32_t i = 0; i < n; i++)
        if (rope_task(&tasks[i]))
            tasks[i].flags |= MK_F_ROPE_TABLE;
    return MK_OK;
}

/* The weight stream (SPEC 15.2): with pipelining_depth >= 1, the GEMV-shaped tasks whose tiles
 * can come through the SMEM ring are marked MK_F_STREAM: position-independent geometry, rows of
 * a 16-byte multiple at 16-byte aligned addresses inside their weight buffer, no longer than a
 * slot, and a K whose input vector leaves room for two slots. The plan's dynamic SMEM holds the
 * longest streamed input vector and then the slots. */
static int64_t round_up(int64_t v, int64_t m) { return (v + m - 1) / m * m; }

/* Row bytes of task t's weight tiles when they can stream, else 0. */
static int64_t stream_row_bytes(const mk_handle *h, const mk_task *t)
{
    int first, nw = mk_weight_tiles(t->op, &first);
    if (!nw || t->ip[MK_P_K].mul || t->ip[MK_P_NTILE].mul || t->ip[MK_P_NOFF].mul)
        return 0;
    const mk_pexpr *k = &t->ip[MK_P_K], *n = &t->ip[MK_P_NTILE], *o = &t->ip[MK_P_NOFF];
    if (k->add < 1 || k->add > (1 << 24) || n->add < 1 || n->add > (1 << 24) || o->add < 0 ||
        o->add > ((int64_t)1 << 32) || k->add < k->lo || k->add > k->hi || n->add < n->lo ||
        n->add > n->hi || o->add < o->lo || o->add > o->hi)
        return 0;
    int64_t rb = 0;
    for (int i = 0; i < nw; i++) {
        const mk_buf *w = &h->bufs[t->in[first + i]];
        if (w->dtype != h->bufs[t->in[first]].dtype)
            return 0;                      /* one x layout serves every tile of the task */
        int64_t r = k->add * (w->dtype == IR_F32 ? 4 : 2);
        if (r % 16 || (uintptr_t)w->ptr % 16 || (o->add + n->add) * k->add > w->numel)
            return 0;
        rb = r > rb ? r : rb;
    }
    return rb;
}

static mk_status stream_plan(mk_handle *h, mk_task *tasks, int32_t n, const ir_plan *plan,
                             ir_error *err)
{
    const int64_t dyn_smem = plan->dynamic_smem_bytes;
    h->L.stream_slots = 0;
    h->stream_tasks = 0;
    if (h->L.pipelining_depth < 1)
        return MK_OK;
    int64_t *rbs = malloc(sizeof *rbs * (size_t)(n ? n : 1));
    if (!rbs)
        return fail(err, MK_NOMEM, IR_ERR_NOMEM, "megakernel", "out of memory");
    int64_t slot = h->o.stream_slot_bytes, kmax = 0, rbmax = 0;
    for (int32_t i = 0; i < n; i++) {
        rbs[i] = stream_row_bytes(h, &tasks[i]);
        rbmax = rbs[i] > rbmax ? rbs[i] : rbmax;
    }
    if (!slot)
        slot = round_up(rbmax > MK_STREAM_SLOT_MIN ? rbmax : MK_STREAM_SLOT_MIN, 128);
    /* The longest input vector that still leaves two slots: tasks with a longer K run without
     * the stream (e.g. a down projection whose K is several times the hidden size). */
    for (int32_t i = 0; i < n; i++) {
        int64_t K = tasks[i].ip[MK_P_K].add;
        if (rbs[i] && rbs[i] <= slot && K > kmax && dyn_smem - round_up(K * 4, 128) >= 2 * slot)
            kmax = K;
    }
    int64_t slots = kmax ? (dyn_smem - round_up(kmax * 4, 128)) / slot : 0;
    int64_t nd = 0;
    for (int32_t i = 0; i < n && slots >= 2; i++) {
        if (rbs[i] && rbs[i] <= slot && tasks[i].ip[MK_P_K].add <= kmax) {
            tasks[i].flags |= MK_F_STREAM;
            h->stream_tasks++;
            int first;
            nd += mk_weight_tiles(tasks[i].op, &first);
        }
    }
    if (slots < 2) {
        free(rbs);
        return MK_OK;
    }
    /* The producer's list: every streamed tile in queue order, per block. */
    mk_sdesc *d = calloc((size_t)(nd ? nd : 1), sizeof *d);
    int32_t *start = malloc(sizeof *start * (size_t)(plan->grid + 1));
    if (!d || !start) {
        free(d);
        free(start);
        free(rbs);
        return fail(err, MK_NOMEM, IR_ERR_NOMEM, "megakernel", "out of memory");
    }
    int64_t k = 0;
    for (int64_t b = 0; b < plan->grid; b++) {
        start[b] = (int32_t)k;
        for (int32_t qi = plan->queue_start[b]; qi < plan->queue_start[b + 1]; qi++) {
            const mk_task *t = &tasks[plan->queue_tasks[qi]];
            if (!(t->flags & MK_F_STREAM))
                continue;
            int first, nw = mk_weight_tiles(t->op, &first);
            const int64_t rb = rbs[plan->queue_tasks[qi]];   /* every tile's: one dtype */
            for (int i = 0; i < nw; i++) {
                const mk_buf *w = &h->bufs[t->in[first + i]];
                d[k].src = (const char *)w->ptr + t->ip[MK_P_NOFF].add * rb;
                d[k].rb = (int32_t)rb;
                d[k].rows = (int32_t)t->ip[MK_P_NTILE].add;
                d[k].qi = qi;
                k++;
            }
        }
    }
    start[plan->grid] = (int32_t)k;
    free(rbs);
    void *dd = NULL, *ds = NULL;
    mk_status s = upload_table(h, &dd, d, sizeof *d * (size_t)(k ? k : 1), err);
    if (s == MK_OK)
        s = upload_table(h, &ds, start, sizeof *start * (size_t)(plan->grid + 1), err);
    free(d);
    free(start);
    if (s != MK_OK)
        return s;
    h->L.sdesc = dd;
    h->L.sdesc_start = ds;
    h->L.stream_slots = (int32_t)(slots < MK_STREAM_MAX_SLOTS ? slots : MK_STREAM_MAX_SLOTS);
    h->L.stream_slot_bytes = slot;
    h->L.stream_x_floats = kmax;
    return MK_OK;
}

/* SAMPLE_ARGMAX over the tiles' maxima (SPEC 15.2). When the logits an argmax reads are
 * written, and that memory by nothing else, by GEMV_TILE or FUSED recipe 2 or 4 tasks with one
 * output each, position-independent row ranges that cover the logits exactly once, each of
 * those tiles also leaves the (value, index) of its largest logit in a slot, and the argmax
 * reads the slots instead of every logit: one block reading the 128,256 logits of a llama-3
 * vocabulary took about 13 us. The answer is the same (the largest value, lowest index on ties,
 * NaN never taken). Only for a proved plan: the proof orders every writer of the logits before
 * the argmax, and each tile writes its slot before its release. */
static int64_t pexpr_const(const mk_pexpr *e, bool *ok)
{
    if (e->mul || e->lo > e->hi)
        *ok = false;
    return e->add < e->lo ? e->lo : e->add > e->hi ? e->hi : e->add;
}

static int cmp_row_off(const void *a, const void *b)
{
    const int64_t *x = a, *y = b;
    return (x[0] > y[0]) - (x[0] < y[0]);
}

static bool overlaps(const mk_buf *a, const mk_buf *b)
{
    const char *a0 = a->ptr, *b0 = b->ptr;
    const char *a1 = a0 + ir_dtype_nbytes((ir_dtype)a->dtype, a->numel);
    const char *b1 = b0 + ir_dtype_nbytes((ir_dtype)b->dtype, b->numel);
    return a0 < b1 && b0 < a1;
}

static mk_status amax_plan(mk_handle *h, mk_task *tasks, int32_t n, ir_error *err)
{
    h->amax_tiles = 0;
    if (h->o.unverified)
        return MK_OK;
    int64_t *rows = malloc(sizeof *rows * 3 * (size_t)(n ? n : 1));   /* off, count, task */
    if (!rows)
        return fail(err, MK_NOMEM, IR_ERR_NOMEM, "megakernel", "out of memory");
    int64_t slots = 0;
    for (int32_t a = 0; a < n; a++) {
        if (tasks[a].op != IR_OP_SAMPLE_ARGMAX || tasks[a].n_in < 1)
            continue;
        const mk_buf *lb = &h->bufs[tasks[a].in[0]];
        if (lb->dtype != IR_F32 || lb->numel < 1 || lb->numel > INT32_MAX)
            continue;
        bool ok = true;
        int64_t nw = 0;
        for (int32_t i = 0; i < n && ok; i++)
            for (int k = 0; k < tasks[i].n_out && ok; k++) {
                const mk_task *t = &tasks[i];
                const mk_buf *ob = &h->bufs[t->out[k]];
                if (!overlaps(ob, lb))
                    continue;
                ok = (t->op == IR_OP_GEMV_TILE || t->op == MK_OP_NORM_GEMV || t->op == MK_OP_SILU_GEMV) &&
                     t->n_out == 1 && ob->ptr == lb->ptr && ob->numel == lb->numel &&
                     ob->dtype == IR_F32 && !(t->flags & MK_F_AMAX_PART);
                int64_t off = pexpr_const(&t->ip[MK_P_NOFF], &ok);
                int64_t cnt = pexpr_const(&t->ip[MK_P_NTILE], &ok);
                ok = ok && off >= 0 && cnt >= 1 && cnt <= lb->numel - off;
                rows[3 * nw] = off;
                rows[3 * nw + 1] = cnt;
                rows[3 * nw + 2] = i;
                nw++;
            }
        if (!ok || !nw || slots + nw > INT32_MAX)
            continue;
        qsort(rows, (size_t)nw, sizeof *rows * 3, cmp_row_off);
        int64_t next = 0;
        for (int64_t j = 0; j < nw && ok; j++) {
            ok = rows[3 * j] == next;
            next += rows[3 * j + 1];
        }
        if (!ok || next != lb->numel)
            continue;
        for (int64_t j = 0; j < nw; j++) {
            mk_task *t = &tasks[rows[3 * j + 2]];
            t->flags |= MK_F_AMAX_PART;
            t->amax_slot = (int32_t)(slots + j);
        }
        tasks[a].flags |= MK_F_AMAX_FROM;
        tasks[a].amax_slot = (int32_t)slots;
        tasks[a].amax_n = (int32_t)nw;
        slots += nw;
        h->amax_tiles += nw;
    }
    free(rows);
    void *d = NULL;
    mk_status s = MK_OK;
    if (slots && (s = dev_alloc(h, &d, sizeof(mk_amax) * (size_t)slots, err)) == MK_OK)
        h->L.amax = d;
    return s;
}

/* The queues' entries (mk_entry) in queue order: each task with its buffers' descriptors. */
static mk_status upload_entries(mk_handle *h, const mk_task *tasks, const ir_plan *plan,
                                ir_error *err)
{
    const int32_t n = h->p->n_tasks;
    mk_entry *en = calloc((size_t)n + 1, sizeof *en);
    if (!en)
        return fail(err, MK_NOMEM, IR_ERR_NOMEM, "megakernel", "out of memory");
    for (int32_t qi = 0; qi < n; qi++) {
        const mk_task *t = &tasks[plan->queue_tasks[qi]];
        en[qi].t = *t;
        for (int k = 0; k < t->n_in; k++)
            en[qi].b[k] = h->bufs[t->in[k]];
        for (int k = 0; k < t->n_out; k++)
            en[qi].b[8 + k] = h->bufs[t->out[k]];
    }
    void *d = NULL;
    mk_status s = upload_table(h, &d, en, sizeof *en * (size_t)n, err);
    if (s == MK_OK)
        h->L.entries = d;
    free(en);
    return s;
}
#endif

/* ---------------------------------------------------------------- public API */

mk_status mk_load(const ir_program *p, const char *cert_json, size_t cert_len,
                  const char *weights_path, bool tie_embeddings, const mk_options *o,
                  mk_handle **out, ir_error *err)
{
    *out = NULL;
    mk_options opts;
    if (o)
        opts = *o;
    else
        mk_options_default(&opts);
    if (!p)
        return fail(err, MK_MALFORMED, IR_ERR_MALFORMED, "program", "no program");
    if (opts.stream_slot_bytes < 0 || opts.stream_slot_bytes % 16 ||
        opts.stream_slot_bytes > ((int64_t)1 << 30))
        return fail(err, MK_MALFORMED, IR_ERR_MALFORMED, "options.stream_slot_bytes",
                    "a multiple of 16 in [16, 2^30], or 0 for the default");
    /* 1. The proof: only a plan whose PROVED certificate matches it is launched. */
    if (!opts.unverified) {
        if (!cert_json || !cert_len)
            return fail(err, MK_REFUSED, IR_ERR_MALFORMED, "certificate",
                        "no certificate: the megakernel launches only a plan amk-verify proved "
                        "(amk-verify PROGRAM --cert CERT)");
        ir_error ce = {0};
        if (verify_cert_check(cert_json, cert_len, p, &ce) != IR_OK) {
            ir_fail(err, IR_ERR_MALFORMED, ce.where, "certificate refused: %s", ce.why);
            return MK_REFUSED;
        }
    }
    if (!p->has_plan || p->plan.grid < 1)
        return fail(err, MK_MALFORMED, IR_ERR_MALFORMED, "launch_plan",
                    "the program has no launch plan");
    const ir_plan *plan = &p->plan;
    if (plan->threads_per_block < 32 || plan->threads_per_block > BASE_MAX_THREADS_PER_BLOCK ||
        plan->threads_per_block % 32) {
        ir_fail(err, IR_ERR_UNSUPPORTED, "launch_plan.threads_per_block", "the kernel runs whole "
                "warps: threads per block must be a multiple of 32 in [32, %d]",
                BASE_MAX_THREADS_PER_BLOCK);
        return MK_UNSUPPORTED;
    }
    if (plan->grid > INT32_MAX || plan->dynamic_smem_bytes < 0 ||
        plan->dynamic_smem_bytes > INT32_MAX || plan->queue_start[plan->grid] != p->n_tasks)
        return fail(err, MK_MALFORMED, IR_ERR_MALFORMED, "launch_plan",
                    "grid, SMEM or queues out of range");
    if (opts.spin_budget < 1)
        return fail(err, MK_MALFORMED, IR_ERR_MALFORMED, "spin_budget", "must be >= 1");
    if (!weights_path)
        return fail(err, MK_MALFORMED, IR_ERR_MALFORMED, "weights", "no weights file");
    for (int32_t i = 0; i < p->n_counters; i++)
        if (p->counters[i].init != 0)
            return fail(err, MK_UNSUPPORTED, IR_ERR_UNSUPPORTED, "counters",
                        "every counter must start at 0");

    mk_handle *h = calloc(1, sizeof *h);
    mk_task *tasks = calloc((size_t)p->n_tasks + 1, sizeof *tasks);
    if (h)
        h->bufs = calloc((size_t)p->n_buffers + 1, sizeof *h->bufs);
    if (!h || !tasks || !h->bufs) {
        free(tasks);
        if (h)
            free(h->bufs);
        free(h);
        return fail(err, MK_NOMEM, IR_ERR_NOMEM, "megakernel", "out of memory");
    }
    h->p = p;
    h->o = opts;
    mk_status s = MK_OK;
    /* 2. What the kernel runs: every op, dtype and arity, before touching the device. */
    for (int32_t i = 0; i < p->n_tasks && s == MK_OK; i++)
        s = flatten_task(p, &p->tasks[i], plan->threads_per_block, &tasks[i], err);
    for (int32_t i = 0; i < p->n_buffers && s == MK_OK; i++) {
        const ir_buffer *b = &p->buffers[i];
        h->bufs[i].numel = ir_buffer_numel(b);
        h->bufs[i].rank = b->rank;
        h->bufs[i].dtype = (int32_t)b->dtype;
        for (int k = 0; k < b->rank; k++)
            h->bufs[i].shape[k] = b->shape[k];
    }
    h->tokens_buf = ir_find_io(p, IR_IO_INPUT, IR_I32, "tokens");
    h->logits_buf = ir_find_io(p, IR_IO_OUTPUT, IR_F32, "logits");
    h->next_token_buf = ir_find_io(p, IR_IO_OUTPUT, IR_I32, "next_token");
    h->vocab = h->logits_buf >= 0 ? ir_buffer_numel(&p->buffers[h->logits_buf]) : 0;
    h->max_seq = p->has_decode ? p->decode.max_seq : 1;
    h->embed_rows = -1;
    for (int32_t i = 0; i < p->n_tasks; i++)
        if (p->tasks[i].op == IR_OP_EMBED && p->tasks[i].n_inputs >= 2)
            h->embed_rows = p->buffers[p->tasks[i].inputs[1]].shape[0];
    if (s == MK_OK && (h->tokens_buf < 0 || h->logits_buf < 0))
        s = fail(err, MK_MALFORMED, IR_ERR_MALFORMED, "buffers",
                 "needs an I32 IO_INPUT (tokens) and an F32 IO_OUTPUT (logits)");
#ifndef AMK_HAVE_CUDA
    if (s == MK_OK)
        s = fail(err, MK_NO_CUDA, IR_ERR_UNSUPPORTED, "megakernel",
                 "this build has no CUDA support (nvcc was not found when it was built)");
#else
    /* 3. The device the proof assumed: all grid blocks resident at once. */
    if (s == MK_OK)
        s = mkd_open(opts.device, plan->grid, plan->threads_per_block, plan->dynamic_smem_bytes,
                     h->device_name, sizeof h->device_name, &h->num_sms, &h->blocks_per_sm, err);
    /* 4. Storage, weights, tables. */
    if (s == MK_OK)
        s = alloc_storage(h, err);
    if (s == MK_OK)
        s = upload_weights(h, weights_path, tie_embeddings, err);
    if (s == MK_OK)
        s = rope_table(h, tasks, p->n_tasks, err);
    h->L.pipelining_depth = (int32_t)(plan->pipelining_depth > BASE_MAX_PIPELINING_DEPTH
                                      ? BASE_MAX_PIPELINING_DEPTH : plan->pipelining_depth);
    if (s == MK_OK)
        s = stream_plan(h, tasks, p->n_tasks, plan, err);
    if (s == MK_OK)
        s = amax_plan(h, tasks, p->n_tasks, err);
    void *d = NULL;
    if (s == MK_OK)
        s = upload_entries(h, tasks, plan, err);
    if (s == MK_OK && (s = upload_table(h, &d, plan->queue_start,
                                        sizeof(int32_t) * (size_t)(plan->grid + 1), err)) == MK_OK)
        h->L.qstart = d;
    if (s == MK_OK && (s = upload_table(h, &d, plan->queue_tasks,
                                        sizeof(int32_t) * (size_t)p->n_tasks, err)) == MK_OK)
        h->L.qtasks = d;
    if (s == MK_OK && (s = dev_alloc(h, &d, sizeof(unsigned) * (size_t)(p->n_counters + 1), err)) == MK_OK)
        h->L.counters = d;
    if (s == MK_OK && (s = dev_alloc(h, &d, sizeof(mk_ctrl), err)) == MK_OK)
        h->L.ctrl = d;
    if (s == MK_OK && opts.profile &&
        (s = dev_alloc(h, &d, sizeof(unsigned long long) * 2 * MK_PROF_SLOTS * (size_t)plan->grid, err)) == MK_OK)
        h->L.prof = d;
    if (s == MK_OK && opts.profile &&
        (s = dev_alloc(h, &d, sizeof(unsigned long long) * 3 * (size_t)p->n_tasks, err)) == MK_OK)
        h->L.trace = d;
    h->L.n_counters = p->n_counters;
    h->L.n_tasks = p->n_tasks;
    h->L.grid = (int32_t)plan->grid;
    h->L.threads = (int32_t)plan->threads_per_block;
    h->L.dyn_smem = plan->dynamic_smem_bytes;
    h->L.spin_budget = opts.spin_budget;
#endif
    free(tasks);
    if (s != MK_OK) {
        mk_free(h);
        return s;
    }
    *out = h;
    return MK_OK;
}

mk_status mk_step(mk_handle *h, int32_t token, int64_t pos, float *logits_out,
                  mk_step_status *st, ir_error *err)
{
    memset(st, 0, sizeof *st);
    st->block = st->task = st->counter = -1;
    st->next_token = -1;
    if (pos < 0 || pos >= h->max_seq)
        return st->status = fail(err, MK_MALFORMED, IR_ERR_MALFORMED, "pos",
                                 "outside [0, max_seq)");
    if (token < 0 || (h->embed_rows >= 0 && token >= h->embed_rows))
        return st->status = fail(err, MK_MALFORMED, IR_ERR_MALFORMED, "token",
                                 "outside the embedding table");
#ifndef AMK_HAVE_CUDA
    (void)logits_out;
    return st->status = fail(err, MK_NO_CUDA, IR_ERR_UNSUPPORTED, "megakernel",
                             "this build has no CUDA support");
#else
    mk_buf *tb = &h->bufs[h->tokens_buf];
    int32_t tok[64];
    int64_t n = tb->numel < 64 ? tb->numel : 64;
    for (int64_t i = 0; i < n; i++)
        tok[i] = token;
    mk_status s = mkd_upload(tb->ptr, tok, sizeof(int32_t) * (size_t)n, err);
    if (s != MK_OK)
        return st->status = s;
    h->L.pos = pos;
    mk_ctrl ctrl;
    if ((s = mkd_launch(&h->L, &st->ms, &ctrl, err)) != MK_OK)
        return st->status = s;
    unsigned *cv = malloc(sizeof *cv * (size_t)(h->p->n_counters + 1));
    if (!cv)
        return st->status = fail(err, MK_NOMEM, IR_ERR_NOMEM, "megakernel", "out of memory");
    s = mkd_download(cv, h->L.counters, sizeof *cv * (size_t)h->p->n_counters, err);
    for (int32_t i = 0; s == MK_OK && i < h->p->n_counters; i++)
        st->tasks_done += cv[i];
    free(cv);
    if (s != MK_OK)
        return st->status = s;
    if (ctrl.abort) {
        st->block = ctrl.block;
        st->task = ctrl.task;
        st->counter = ctrl.counter;
        st->threshold = ctrl.threshold;
        st->counter_value = ctrl.value;
        ir_fail(err, IR_ERR_IO, "watchdog", "block %d, task %d (%s) waited for counter %d >= "
                "%lld past its spin budget of %lld polls (value %lld); %lld of %d tasks finished",
                ctrl.block, ctrl.task, h->p->tasks[ctrl.task].label, ctrl.counter,
                (long long)ctrl.threshold, (long long)h->o.spin_budget, (long long)ctrl.value,
                (long long)st->tasks_done, h->p->n_tasks);
        return st->status = MK_TIMEOUT;
    }
    float *logits = logits_out;
    if (!logits && !(logits = malloc(sizeof(float) * (size_t)h->vocab)))
        return st->status = fail(err, MK_NOMEM, IR_ERR_NOMEM, "megakernel", "out of memory");
    s = mkd_download(logits, h->bufs[h->logits_buf].ptr, sizeof(float) * (size_t)h->vocab, err);
    if (s == MK_OK) {
        int32_t nt = -1;
        if (h->next_token_buf >= 0)
            s = mkd_download(&nt, h->bufs[h->next_token_buf].ptr, sizeof nt, err);
        st->next_token = h->next_token_buf >= 0 ? nt : refvm_argmax(logits, h->vocab);
    }
    if (logits != logits_out)
        free(logits);
    return st->status = s;
#endif
}

mk_status mk_profile_read(mk_handle *h, mk_profile *out, ir_error *err)
{
    memset(out, 0, sizeof *out);
#ifdef AMK_HAVE_CUDA
    if (!h->L.prof)
        return fail(err, MK_MALFORMED, IR_ERR_MALFORMED, "profile",
                    "the handle was not loaded with profiling");
    size_t n = (size_t)h->L.grid * MK_PROF_SLOTS * 2;
    unsigned long long *v = malloc(n * sizeof *v);
    if (!v)
        return fail(err, MK_NOMEM, IR_ERR_NOMEM, "megakernel", "out of memory");
    mk_status s = mkd_download(v, h->L.prof, n * sizeof *v, err);
    for (int32_t b = 0; s == MK_OK && b < h->L.grid; b++) {
        for (int op = 0; op < MK_PROF_SPAN; op++) {
            double run = (double)v[((size_t)b * MK_PROF_SLOTS + op) * 2] * 1e-6;
            out->run_ms[op] += run;
            out->wait_ms[op] += (double)v[((size_t)b * MK_PROF_SLOTS + op) * 2 + 1] * 1e-6;
            if (run > out->run_ms_max_block[op])
                out->run_ms_max_block[op] = run;
        }
        double span = (double)v[((size_t)b * MK_PROF_SLOTS + MK_PROF_SPAN) * 2] * 1e-6;
        if (span > out->span_ms_max)
            out->span_ms_max = span;
    }
    free(v);
    return s;
#else
    (void)h;
    return fail(err, MK_NO_CUDA, IR_ERR_UNSUPPORTED, "megakernel", "this build has no CUDA support");
#endif
}

mk_status mk_trace_read(mk_handle *h, double *us, ir_error *err)
{
#ifdef AMK_HAVE_CUDA
    if (!h->L.trace)
        return fail(err, MK_MALFORMED, IR_ERR_MALFORMED, "profile",
                    "the handle was not loaded with profiling");
    size_t n = (size_t)h->p->n_tasks * 3;
    unsigned long long *v = malloc((n ? n : 1) * sizeof *v), t0 = ~0ull;
    if (!v)
        return fail(err, MK_NOMEM, IR_ERR_NOMEM, "megakernel", "out of memory");
    mk_status s = mkd_download(v, h->L.trace, n * sizeof *v, err);
    for (size_t i = 0; s == MK_OK && i < n; i++)
        if (v[i] && v[i] < t0)
            t0 = v[i];
    for (size_t i = 0; s == MK_OK && i < n; i++)
        us[i] = v[i] ? (double)(v[i] - t0) * 1e-3 : -1;
    free(v);
    return s;
#else
    (void)h;
    (void)us;
    return fail(err, MK_NO_CUDA, IR_ERR_UNSUPPORTED, "megakernel", "this build has no CUDA support");
#endif
}

int64_t mk_vocab(const mk_handle *h) { return h->vocab; }
int64_t mk_max_seq(const mk_handle *h) { return h->max_seq; }
int64_t mk_weight_bytes(const mk_handle *h) { return h->weight_bytes; }
const char *mk_device_name(const mk_handle *h) { return h->device_name; }

void mk_free(mk_handle *h)
{
    if (!h)
        return;
#ifdef AMK_HAVE_CUDA
    for (int i = 0; i < h->n_allocs; i++)
        mkd_free(h->allocs[i]);
#endif
    free(h->allocs);
    free(h->bufs);
    free(h);
}

void mk_stream_info(const mk_handle *h, int *slots, int64_t *slot_bytes, int64_t *tasks)
{
    if (slots)
        *slots = h->L.stream_slots;
    if (slot_bytes)
        *slot_bytes = h->L.stream_slots ? h->L.stream_slot_bytes : 0;
    if (tasks)
        *tasks = h->stream_tasks;
}

int64_t mk_argmax_tiles(const mk_handle *h) { return h->amax_tiles; }

mk_status mk_read_bandwidth(int device, int64_t bytes, int repeats, double *gbs, ir_error *err)
{
    *gbs = 0;
#ifdef AMK_HAVE_CUDA
    if (mkd_device_count(NULL, 0) <= 0)
        return fail(err, MK_NO_DEVICE, IR_ERR_UNSUPPORTED, "device", "no CUDA device is available");
    return mkd_read_bandwidth(device, bytes, repeats, gbs, err);
#else
    (void)device;
    (void)bytes;
    (void)repeats;
    return fail(err, MK_NO_CUDA, IR_ERR_UNSUPPORTED, "megakernel", "this build has no CUDA support");
#endif
}
