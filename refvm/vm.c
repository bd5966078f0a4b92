/*
 * vm.c - the reference VM: runs a program's per-block queues on the CPU in fp32, one launch per
 * decoded token, exactly as SPEC.md section 3.3 describes the megakernel: a queue's head runs
 * once every (counter >= threshold) wait holds, then adds 1 to its out_counter.
 *
 * It is also a dynamic checker. Every storage element carries a stamp naming the buffer that
 * last wrote it and the step it was written in; before a task runs, every element of its input
 * footprints must carry this step's stamp of that buffer (KV cache rows below pos, weights,
 * constants and inputs are valid from the start). So a read that races its producer, a read of
 * a page another buffer has since overwritten, and a deadlock of the actual queues all stop the
 * run with a precise report instead of producing wrong numbers.
 *
 * Storage is fp32 for every buffer (weights converted on bind). I32 buffers (token ids) hold
 * exact integers in fp32, which is exact below 2^24; so do quantized weights (I8 values, I4
 * nibbles unpacked to one element each).
 *
 * Ops come in two forms where our dialect and AMK's differ (SPEC 8.8, 10.2): the VM tells them
 * apart by their inputs and shapes (ROPE with a pos input, KV_APPEND naming its cache, rank-3 and
 * rank-4 KV caches, several partial inputs of ATTENTION_COMBINE), never by a flag.
 */
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/base.h"
#include "refvm/refvm.h"

typedef struct {
    float *data;             /* numel floats; may be shared (page, or weights of one source) */
    uint32_t *stamp;         /* per element; NULL for read-only kinds; shared with data's owner */
    int64_t numel;
    bool owns;               /* data and stamp are freed with this buffer */
    int32_t page;            /* page whose storage it uses, or -1 */
    const refvm_tensor *raw; /* a streamed weight: its tensor in the VM's own mapping, read a
                                row at a time (data stays NULL until an op needs it whole) */
} vm_buf;

struct refvm {
    const ir_program *p;
    refvm_opts o;
    int32_t n_queues;
    int32_t *qstart, *qtasks;   /* queue q runs qtasks[qstart[q] .. qstart[q+1]) */
    int32_t *head;              /* per queue: next position in its list */
    int32_t *queue_of;          /* per task: its queue (a forced schedule finds it at once) */
    int32_t *enabled;           /* scratch: enabled queue indices */
    int64_t *counters;
    vm_buf *buf;
    float **page_data;
    uint32_t **page_stamp;
    ir_box (*in_box)[IR_MAX_INPUTS];
    ir_box (*out_box)[IR_MAX_OUTPUTS];
    int32_t tokens_buf, logits_buf, next_token_buf;
    int32_t pos_buf;            /* AMK's pos input, or -1 */
    bool bound;
    bool last_done;
    int64_t max_seq;
    int64_t pos;                /* position of the step being run */
    uint32_t stamp_base;        /* this step's stamps are stamp_base + buffer id + 1 */
    uint64_t rng;
    float *scores;              /* attention scratch */
    int64_t scores_cap;
    float *wrow;                /* one streamed weight row, converted to fp32 */
    int64_t wrow_cap;
    refvm_st *st;               /* the VM's own mapping of the bound weights file */
};

/* ---------------------------------------------------------------- small helpers */

void refvm_opts_default(refvm_opts *o)
{
    memset(o, 0, sizeof *o);
    o->order = IR_ORDER_LIST;
    o->stream_min_numel = 65536;
}

const char *refvm_outcome_name(refvm_outcome o)
{
    switch (o) {
    case REFVM_DONE: return "DONE";
    case REFVM_DEADLOCK: return "DEADLOCK";
    case REFVM_UNWRITTEN_READ: return "UNWRITTEN_READ";
    case REFVM_OUTPUT_INCOMPLETE: return "OUTPUT_INCOMPLETE";
    }
    return "?";
}

void refvm_result_free(refvm_result *r)
{
    if (!r)
        return;
    free(r->detail);
    r->detail = NULL;
}

static uint64_t next_random(uint64_t *s)
{
    uint64_t z = (*s += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

static uint32_t stamp_of(const refvm *vm, int32_t b)
{
    return vm->stamp_base + (uint32_t)b + 1;
}

static bool is_readonly(const ir_buffer *b)
{
    return b->kind == IR_WEIGHT || b->kind == IR_CONST || b->kind == IR_IO_INPUT;
}

static const char *task_where(const ir_task *t, char *buf, size_t n)
{
    snprintf(buf, n, "task %d", t->id);
    return buf;
}

/* ---------------------------------------------------------------- building */

void refvm_free(refvm *vm)
{
    if (!vm)
        return;
    if (vm->buf) {
        for (int32_t i = 0; i < vm->p->n_buffers; i++)
            if (vm->buf[i].owns) {
                free(vm->buf[i].data);
                free(vm->buf[i].stamp);
            }
    }
    if (vm->page_data) {
        for (int32_t i = 0; i < vm->p->pages.n_pages; i++) {
            free(vm->page_data[i]);
            free(vm->page_stamp[i]);
        }
    }
    free(vm->page_data);
    free(vm->page_stamp);
    free(vm->buf);
    free(vm->qstart);
    free(vm->qtasks);
    free(vm->head);
    free(vm->queue_of);
    free(vm->enabled);
    free(vm->counters);
    free(vm->in_box);
    free(vm->out_box);
    free(vm->scores);
    free(vm->wrow);
    refvm_st_close(vm->st);
    free(vm);
}

static bool op_supported(const ir_task *t)
{
    switch (t->op) {
    case IR_OP_NOP: case IR_OP_COPY: case IR_OP_EMBED: case IR_OP_RMSNORM:
    case IR_OP_GEMV_TILE: case IR_OP_ATTENTION_TILE: case IR_OP_ROPE: case IR_OP_SILU_MUL:
    case IR_OP_GELU: case IR_OP_ADD: case IR_OP_MUL: case IR_OP_KV_APPEND:
    case IR_OP_SAMPLE_ARGMAX: case IR_OP_ATTENTION_COMBINE: case IR_OP_FUSED:
    case IR_OP_GEMM_TILE: case IR_OP_LAYERNORM: case IR_OP_SOFTMAX:
        return true;
    default:
        return false;
    }
}

/* Storage of activations: a buffer mapped to a page uses the page's storage from offset 0, so
 * two buffers sharing a page really overwrite each other here, as they do on the GPU. */
static ir_status alloc_storage(refvm *vm, ir_error *err)
{
    const ir_program *p = vm->p;
    char where[64];
    if (p->has_pages && p->pages.n_pages > 0) {
        int32_t np = p->pages.n_pages;
        vm->page_data = calloc((size_t)np, sizeof *vm->page_data);
        vm->page_stamp = calloc((size_t)np, sizeof *vm->page_stamp);
        int64_t *need = calloc((size_t)np, sizeof *need);
        if (!vm->page_data || !vm->page_stamp || !need) {
            free(need);
            return ir_fail(err, IR_ERR_NOMEM, "refvm", "out of memory");
        }
        for (int i = 0; i < p->pages.n_map; i++) {
            int32_t b = p->pages.map_buffer[i], g = p->pages.map_page[i];
            if (b < 0 || b >= p->n_buffers || g < 0 || g >= np) {
                free(need);
                return ir_fail(err, IR_ERR_MALFORMED, "pages.buffer_to_page",
                               "entry %d names buffer %d / page %d out of range", i, b, g);
            }
            const ir_buffer *bb = &p->buffers[b];
            if (is_readonly(bb) || bb->kind == IR_KV_CACHE)
                continue;   /* only scratch lives on pages; persistent state keeps its own */
            if (ir_buffer_nbytes(bb) > p->pages.pages[g].nbytes) {
                free(need);
                snprintf(where, sizeof where, "buffers[%d]", b);
                return ir_fail(err, IR_ERR_MALFORMED, where, "%s needs %lld bytes but page %d "
                               "has %lld", bb->name, (long long)ir_buffer_nbytes(bb), g,
                               (long long)p->pages.pages[g].nbytes);
            }
            vm->buf[b].page = g;
            if (ir_buffer_numel(bb) > need[g])
                need[g] = ir_buffer_numel(bb);
        }
        for (int32_t g = 0; g < np; g++) {
            if (!need[g])
                continue;
            vm->page_data[g] = calloc((size_t)need[g], sizeof(float));
            vm->page_stamp[g] = calloc((size_t)need[g], sizeof(uint32_t));
            if (!vm->page_data[g] || !vm->page_stamp[g]) {
                free(need);
                return ir_fail(err, IR_ERR_NOMEM, "refvm", "out of memory for page %d", g);
            }
        }
        free(need);
    }
    for (int32_t i = 0; i < p->n_buffers; i++) {
        const ir_buffer *bb = &p->buffers[i];
        vm_buf *v = &vm->buf[i];
        v->numel = ir_buffer_numel(bb);
        if (v->page >= 0) {
            v->data = vm->page_data[v->page];
            v->stamp = vm->page_stamp[v->page];
            continue;
        }
        if (bb->kind == IR_WEIGHT || bb->kind == IR_CONST)
            continue;                          /* storage comes with refvm_bind */
        if (v->numel > ((int64_t)1 << 34)) {
            snprintf(where, sizeof where, "buffers[%d]", i);
            return ir_fail(err, IR_ERR_UNSUPPORTED, where, "%s is too large for the CPU VM",
                           bb->name);
        }
        v->owns = true;
        v->data = calloc((size_t)v->numel, sizeof(float));
        if (!is_readonly(bb))
            v->stamp = calloc((size_t)v->numel, sizeof(uint32_t));
        if (!v->data || (!is_readonly(bb) && !v->stamp)) {
            snprintf(where, sizeof where, "buffers[%d]", i);
            return ir_fail(err, IR_ERR_NOMEM, where, "out of memory for %s (%lld elements)",
                           bb->name, (long long)v->numel);
        }
    }
    return IR_OK;
}

/* The token input: "tokens" (ours), "token_id" (AMK), else the first I32 IO_INPUT that is not
 * the position or a reshape-ids input. */
static int32_t find_token_input(const ir_program *p)
{
    int32_t first = -1;
    for (int32_t i = 0; i < p->n_buffers; i++) {
        const ir_buffer *b = &p->buffers[i];
        if (b->kind != IR_IO_INPUT || b->dtype != IR_I32)
            continue;
        if (!strcmp(b->name, "tokens") || !strcmp(b->name, "token_id"))
            return i;
        if (first < 0 && strcmp(b->name, "pos") && strncmp(b->name, "reshape", 7))
            first = i;
    }
    return first;
}

/* Prepare p. See refvm.h. */
ir_status refvm_new(const ir_program *p, const refvm_opts *o, refvm **out, ir_error *err)
{
    *out = NULL;
    refvm *vm = calloc(1, sizeof *vm);
    if (!vm)
        return ir_fail(err, IR_ERR_NOMEM, "refvm", "out of memory");
    vm->p = p;
    if (o)
        vm->o = *o;
    else
        refvm_opts_default(&vm->o);
    vm->rng = vm->o.interleave_seed;
    ir_status s = ir_program_queues(p, vm->o.order, &vm->n_queues, &vm->qstart, &vm->qtasks, err);
    if (s != IR_OK)
        goto fail;
    size_t nb = (size_t)(p->n_buffers ? p->n_buffers : 1), nt = (size_t)(p->n_tasks ? p->n_tasks : 1);
    vm->head = calloc((size_t)vm->n_queues + 1, sizeof *vm->head);
    vm->enabled = calloc((size_t)vm->n_queues + 1, sizeof *vm->enabled);
    vm->queue_of = malloc(nt * sizeof *vm->queue_of);
    if (vm->queue_of)
        for (int32_t q = 0; q < vm->n_queues; q++)
            for (int32_t i = vm->qstart[q]; i < vm->qstart[q + 1]; i++)
                vm->queue_of[vm->qtasks[i]] = q;
    vm->counters = calloc((size_t)(p->n_counters ? p->n_counters : 1), sizeof *vm->counters);
    vm->buf = calloc(nb, sizeof *vm->buf);
    vm->in_box = calloc(nt, sizeof *vm->in_box);
    vm->out_box = calloc(nt, sizeof *vm->out_box);
    if (!vm->head || !vm->enabled || !vm->queue_of || !vm->counters || !vm->buf || !vm->in_box ||
        !vm->out_box) {
        s = ir_fail(err, IR_ERR_NOMEM, "refvm", "out of memory");
        goto fail;
    }
    for (int32_t i = 0; i < p->n_buffers; i++)
        vm->buf[i].page = -1;
    char where[64];
    for (int32_t i = 0; i < p->n_tasks; i++) {
        const ir_task *t = &p->tasks[i];
        if (!op_supported(t)) {
            s = ir_fail(err, IR_ERR_UNSUPPORTED, task_where(t, where, sizeof where),
                        "op %s is not executed by the reference VM", ir_op_name(t->op));
            goto fail;
        }
        for (int k = 0; k < t->n_inputs && s == IR_OK; k++)
            s = ir_task_footprint(p, t, false, k, &vm->in_box[i][k], err);
        for (int k = 0; k < t->n_outputs && s == IR_OK; k++)
            s = ir_task_footprint(p, t, true, k, &vm->out_box[i][k], err);
        for (int k = 0; k < t->n_outputs && s == IR_OK; k++)
            if (is_readonly(&p->buffers[t->outputs[k]]))
                s = ir_fail(err, IR_ERR_MALFORMED, task_where(t, where, sizeof where),
                            "writes read-only buffer %s", p->buffers[t->outputs[k]].name);
        if (s != IR_OK)
            goto fail;
    }
    if ((s = alloc_storage(vm, err)) != IR_OK)
        goto fail;
    vm->tokens_buf = find_token_input(p);
    vm->pos_buf = -1;
    for (int32_t i = 0; i < p->n_buffers; i++)
        if (p->buffers[i].kind == IR_IO_INPUT && p->buffers[i].dtype == IR_I32 &&
            !strcmp(p->buffers[i].name, "pos"))
            vm->pos_buf = i;
    vm->logits_buf = ir_find_io(p, IR_IO_OUTPUT, IR_F32, "logits");
    vm->next_token_buf = ir_find_io(p, IR_IO_OUTPUT, IR_I32, "next_token");
    vm->max_seq = p->has_decode ? p->decode.max_seq : 0;
    if (!p->has_decode)
        for (int32_t i = 0; i < p->n_buffers; i++) {
            const ir_buffer *b = &p->buffers[i];
            int64_t rows = b->rank == 4 ? b->shape[1] : b->rank >= 1 ? b->shape[0] : 0;
            if (b->kind == IR_KV_CACHE && b->rank >= 1 && (vm->max_seq == 0 || rows < vm->max_seq))
                vm->max_seq = rows;
        }
    if (vm->max_seq < 1)
        vm->max_seq = 1;
    vm->bound = true;
    for (int32_t i = 0; i < p->n_buffers; i++)
        if (p->buffers[i].kind == IR_WEIGHT || p->buffers[i].kind == IR_CONST)
            vm->bound = false;
    *out = vm;
    return IR_OK;
fail:
    refvm_free(vm);
    return s;
}

/* ---------------------------------------------------------------- weights */

/* The tensor for buffer b: its source key, or the embedding table for a tied lm_head. */
static const refvm_tensor *tensor_for(const refvm *vm, const refvm_st *st, const ir_buffer *b)
{
    const refvm_tensor *t = refvm_st_find(st, b->source);
    if (!t && vm->o.tie_embeddings && !strcmp(b->source, "lm_head.weight"))
        t = refvm_st_find(st, "model.embed_tokens.weight");
    return t;
}

/* The safetensors dtype an integer weight buffer binds, or NULL for F32/F16/BF16 buffers (which
 * bind their own dtype): I8 an I8 tensor, U8 a U8 tensor, and I4 AMK's packed storage, a U8
 * tensor whose last dimension holds two nibbles per byte (SPEC 10.1). */
static const char *int_weight_dtype(ir_dtype d)
{
    return d == IR_I8 ? "I8" : d == IR_I4 || d == IR_U8 ? "U8" : NULL;
}

/* Unpack AMK's int4 storage: byte j of a row holds column 2j in its low nibble and 2j+1 in its
 * high nibble. dst gets rows x K nibble values (0..15). */
static void unpack_nibbles(const refvm_tensor *t, int64_t K, float *dst)
{
    int64_t kp = t->rank ? t->shape[t->rank - 1] : 1, rows = kp ? t->numel / kp : 0;
    for (int64_t r = 0; r < rows; r++)
        for (int64_t k = 0; k < K; k++) {
            unsigned char byte = t->data[r * kp + k / 2];
            dst[r * K + k] = (float)(k % 2 ? byte >> 4 : byte & 0xF);
        }
}

/* Weights read from the mapping a row at a time: floating-point matrices of at least
 * stream_min_numel elements (projections, embeddings, lm_head). Small tensors are converted once. */
static bool streamed(const refvm *vm, const ir_buffer *b, const refvm_tensor *t)
{
    int64_t min = vm->o.stream_min_numel > 0 ? vm->o.stream_min_numel : 65536;
    return b->kind == IR_WEIGHT && b->rank >= 2 && t->numel >= min &&
           t->supported &&
           (t->dtype == IR_F32 || t->dtype == IR_F16 || t->dtype == IR_BF16);
}

/* Convert a streamed weight whole, for an op that reads it other than by rows. */
static ir_status materialize(refvm *vm, int32_t b, ir_error *err)
{
    vm_buf *v = &vm->buf[b];
    if (!v->raw || v->data)
        return IR_OK;
    float *d = malloc((size_t)v->raw->numel * sizeof(float));
    if (!d)
        return ir_fail(err, IR_ERR_NOMEM, vm->p->buffers[b].name, "out of memory for %lld weights",
                       (long long)v->raw->numel);
    refvm_st_slice_to_f32(v->raw, 0, v->raw->numel, d);
    v->data = d;
    v->owns = true;
    return IR_OK;
}

/* Bind weights. Every buffer is checked against the file before any tensor is converted, so a
 * mismatch is refused before the (possibly long) conversion starts. See refvm.h. */
ir_status refvm_bind(refvm *vm, const refvm_st *st, ir_error *err)
{
    const ir_program *p = vm->p;
    char where[64];
    for (int32_t i = 0; i < p->n_buffers; i++) {
        const ir_buffer *b = &p->buffers[i];
        if (b->kind != IR_WEIGHT && b->kind != IR_CONST)
            continue;
        snprintf(where, sizeof where, "buffers[%d]", i);
        if (!b->source || !*b->source)
            return ir_fail(err, IR_ERR_MALFORMED, where, "%s has no source key", b->name);
        const refvm_tensor *t = tensor_for(vm, st, b);
        if (!t)
            return ir_fail(err, IR_ERR_MALFORMED, where, "tensor '%.100s' (for %.60s) is not in %s",
                           b->source, b->name, st->path);
        const char *want = int_weight_dtype(b->dtype);
        if (want ? strcmp(t->st_dtype, want) != 0 : !t->supported || t->dtype != b->dtype)
            return ir_fail(err, IR_ERR_MALFORMED, where,
                           "dtype mismatch: program says %s, tensor '%.100s' in the file is %s",
                           ir_dtype_name(b->dtype), t->name, t->st_dtype);
        int rank = b->rank;
        bool same = t->rank == rank;
        for (int k = 0; same && k < rank; k++)   /* I4: two nibbles per byte of the last dim */
            same = t->shape[k] == (b->dtype == IR_I4 && k == rank - 1 ? (b->shape[k] + 1) / 2
                                                                       : b->shape[k]);
        if (rank == 0)
            same = t->numel == 1;
        if (!same) {
            char ps[96] = "", fs[96] = "";
            for (int k = 0; k < rank; k++)
                snprintf(ps + strlen(ps), sizeof ps - strlen(ps), "%s%lld", k ? "," : "",
                         (long long)b->shape[k]);
            for (int k = 0; k < t->rank; k++)
                snprintf(fs + strlen(fs), sizeof fs - strlen(fs), "%s%lld", k ? "," : "",
                         (long long)t->shape[k]);
            return ir_fail(err, IR_ERR_MALFORMED, where,
                           "shape mismatch: program says [%s], tensor '%.100s' in the file is [%s]",
                           ps, t->name, fs);
        }
    }
    /* The VM maps the file itself, so the caller may close st at once; large floating-point
       weights are then read from the mapping a row at a time instead of converted up front
       (an 8B model's bf16 weights would take 32 GB as fp32). */
    refvm_st *own = NULL;
    ir_status os = refvm_st_open(st->path, &own, err);
    if (os != IR_OK)
        return os;
    for (int32_t i = 0; i < p->n_buffers; i++) {
        vm_buf *v = &vm->buf[i];
        if (v->owns && (p->buffers[i].kind == IR_WEIGHT || p->buffers[i].kind == IR_CONST)) {
            free(v->data);
            v->owns = false;
        }
        if (p->buffers[i].kind == IR_WEIGHT || p->buffers[i].kind == IR_CONST) {
            v->data = NULL;
            v->raw = NULL;
        }
    }
    refvm_st_close(vm->st);
    vm->st = own;
    st = own;
    for (int32_t i = 0; i < p->n_buffers; i++) {
        const ir_buffer *b = &p->buffers[i];
        vm_buf *v = &vm->buf[i];
        if (b->kind != IR_WEIGHT && b->kind != IR_CONST)
            continue;
        const refvm_tensor *t = tensor_for(vm, st, b);
        if (streamed(vm, b, t)) {
            v->raw = t;
            continue;
        }
        /* Buffers bound to one tensor share its storage (e.g. a tied lm_head). */
        for (int32_t j = 0; j < i && !v->data; j++) {
            const ir_buffer *o = &p->buffers[j];
            if ((o->kind == IR_WEIGHT || o->kind == IR_CONST) && o->dtype == b->dtype &&
                tensor_for(vm, st, o) == t)
                v->data = vm->buf[j].data;
        }
        if (v->data)
            continue;
        int64_t n = b->dtype == IR_I4 ? ir_buffer_numel(b) : t->numel;
        v->data = malloc((size_t)(n ? n : 1) * sizeof(float));
        if (!v->data)
            return ir_fail(err, IR_ERR_NOMEM, b->name, "out of memory for %lld weights",
                           (long long)n);
        v->owns = true;
        ir_status s = IR_OK;
        if (b->dtype == IR_I4)
            unpack_nibbles(t, b->rank ? b->shape[b->rank - 1] : 1, v->data);
        else if (int_weight_dtype(b->dtype))
            s = refvm_st_ints_to_f32(st, t, v->data, err);
        else
            s = refvm_st_to_f32(st, t, v->data, err);
        if (s != IR_OK)
            return s;
    }
    vm->bound = true;
    return IR_OK;
}

/* ---------------------------------------------------------------- op semantics (SPEC 5) */

/* Everything an op needs: the task, the position, and its buffers. */
typedef struct {
    refvm *vm;
    const ir_task *t;
    ir_error *err;
} op_ctx;

static ir_status op_fail(op_ctx *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static ir_status op_fail(op_ctx *c, const char *fmt, ...)
{
    char where[64], why[400];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(why, sizeof why, fmt, ap);
    va_end(ap);
    return ir_fail(c->err, IR_ERR_MALFORMED, task_where(c->t, where, sizeof where), "%s (%s %s)",
                   why, ir_op_name(c->t->op), c->t->label);
}

/* Int param key at the step's position (position expressions re-evaluated, SPEC 3.4). */
static ir_status iparam(op_ctx *c, const char *key, int64_t *v)
{
    ir_pexpr e;
    if (!ir_task_pexpr(c->t, key, &e))
        return op_fail(c, "needs int param '%s'", key);
    *v = ir_pexpr_eval(e, c->vm->pos);
    return IR_OK;
}

static ir_status rparam(op_ctx *c, const char *key, double *v)
{
    if (!ir_task_real(c->t, key, v))
        return op_fail(c, "needs numeric param '%s'", key);
    return IR_OK;
}

/* An input's fp32 storage. A streamed weight has none until materialized: run_task converts
 * every streamed input an op does not read by rows (see reads_rows) before the op runs. */
static ir_status materialize(refvm *vm, int32_t b, ir_error *err);
static const float *wrow(op_ctx *c, int32_t w, int64_t n, int64_t K);
static float *in(op_ctx *c, int k)
{
    vm_buf *v = &c->vm->buf[c->t->inputs[k]];
    if (!v->data && v->raw)   /* not expected (run_op converted it), but never a NULL read */
        materialize(c->vm, c->t->inputs[k], c->err);
    return v->data;
}
static float *outp(op_ctx *c, int k) { return c->vm->buf[c->t->outputs[k]].data; }
static int64_t in_n(op_ctx *c, int k) { return c->vm->buf[c->t->inputs[k]].numel; }
static int64_t out_n(op_ctx *c, int k) { return c->vm->buf[c->t->outputs[k]].numel; }
static const ir_buffer *in_b(op_ctx *c, int k) { return &c->vm->p->buffers[c->t->inputs[k]]; }
static const ir_buffer *out_b(op_ctx *c, int k) { return &c->vm->p->buffers[c->t->outputs[k]]; }

static ir_status need_arity(op_ctx *c, int ni, int no)
{
    if (c->t->n_inputs < ni || c->t->n_outputs < no)
        return op_fail(c, "needs %d inputs and %d outputs, has %d and %d", ni, no,
                       c->t->n_inputs, c->t->n_outputs);
    return IR_OK;
}

/* Dot product in fp32 lanes, summed in double every 64 elements: fast and stable. */
static double dot(const float *a, const float *b, int64_t n)
{
    double total = 0;
    int64_t i = 0;
    for (; i + 64 <= n; i += 64) {
        float s[8] = {0};
        for (int64_t j = 0; j < 64; j += 8)
            for (int k = 0; k < 8; k++)
                s[k] += a[i + j + k] * b[i + j + k];
        total += (double)((s[0] + s[1]) + (s[2] + s[3])) + (double)((s[4] + s[5]) + (s[6] + s[7]));
    }
    for (; i < n; i++)
        total += (double)a[i] * b[i];
    return total;
}

#define TRY(x) do { ir_status s_ = (x); if (s_ != IR_OK) return s_; } while (0)

/* EMBED gathers table rows by id and views them as the output, as AMK's index_select + view_as:
 * rows of R = numel(table) / rows(table) elements, numel(ids) of them. Our embedding (ids [1],
 * table [V, H], out [1, H]) and AMK's reshape (ids reshape_id0 = [0], table a flat [1, n]
 * activation, out head-shaped) are both this. hidden, when given, must divide R (AMK's reshapes
 * set it to head_dim). */
static ir_status op_embed(op_ctx *c)
{
    TRY(need_arity(c, 2, 1));
    const ir_buffer *tb = in_b(c, 1);
    if (tb->rank < 1)
        return op_fail(c, "table must have rank >= 1");
    int64_t V = tb->shape[0], R = in_n(c, 1) / V, n_ids = in_n(c, 0), hidden = R;
    if (ir_task_param(c->t, "hidden"))
        TRY(iparam(c, "hidden", &hidden));
    if (hidden < 1 || R % hidden || n_ids < 1 || out_n(c, 0) != n_ids * R)
        return op_fail(c, "hidden %lld, %lld ids and table rows of %lld do not fit output %lld",
                       (long long)hidden, (long long)n_ids, (long long)R, (long long)out_n(c, 0));
    for (int64_t i = 0; i < n_ids; i++) {
        float id = in(c, 0)[i];
        if (!(id >= 0 && id < (float)V) || id != floorf(id))
            return op_fail(c, "token id %g outside the table's %lld rows", (double)id, (long long)V);
        const float *row = wrow(c, c->t->inputs[1], (int64_t)id, R);
        if (!row)
            return ir_fail(c->err, IR_ERR_NOMEM, "refvm", "out of memory");
        memcpy(outp(c, 0) + i * R, row, (size_t)R * sizeof(float));
    }
    return IR_OK;
}

/* silu(a) * b of SILU_MUL (and FUSED recipe 4). */
static float silu_mul(float a, float b) { return (float)(a / (1.0 + exp(-(double)a))) * b; }

/* y = x * rsqrt(mean(x^2) + eps) * w over H elements. */
static void rms_apply(const float *x, const float *w, int64_t H, double eps, float *y)
{
    double ss = dot(x, x, H);
    float r = (float)(1.0 / sqrt(ss / (double)H + eps));
    for (int64_t i = 0; i < H; i++)
        y[i] = x[i] * r * w[i];
}

/* The params RMSNORM and LAYERNORM share: eps, and hidden (the row length; the whole first
 * input when absent); both need at least x, w and one output. */
static ir_status norm_params(op_ctx *c, double *eps, int64_t *H)
{
    TRY(need_arity(c, 2, 1));
    *eps = 0;
    *H = in_n(c, 0);
    TRY(rparam(c, "eps", eps));
    if (ir_task_param(c->t, "hidden"))
        TRY(iparam(c, "hidden", H));
    return IR_OK;
}

static ir_status op_rmsnorm(op_ctx *c)
{
    double eps;
    int64_t H;
    TRY(norm_params(c, &eps, &H));
    /* every row of hidden elements on its own: [1, H] here, [B, H] in AMK's batched decode */
    if (H < 1 || in_n(c, 0) % H || in_n(c, 1) < H || out_n(c, 0) < in_n(c, 0))
        return op_fail(c, "hidden %lld does not fit its buffers", (long long)H);
    for (int64_t r = 0; r < in_n(c, 0) / H; r++)
        rms_apply(in(c, 0) + r * H, in(c, 1), H, eps, outp(c, 0) + r * H);
    return IR_OK;
}

/* Row n of the [rows, K] weight buffer w as fp32: in its storage, or converted from the mapping
 * into the VM's row scratch (valid until the next call). NULL when memory runs out. */
static const float *wrow(op_ctx *c, int32_t w, int64_t n, int64_t K)
{
    vm_buf *v = &c->vm->buf[w];
    if (v->data)
        return v->data + n * K;
    if (K > c->vm->wrow_cap) {
        float *r = realloc(c->vm->wrow, (size_t)K * sizeof(float));
        if (!r)
            return NULL;
        c->vm->wrow = r;
        c->vm->wrow_cap = K;
    }
    refvm_st_slice_to_f32(v->raw, n * K, K, c->vm->wrow);
    return c->vm->wrow;
}

/* y[n] = x . W[n, :] (+ bias[n]) for n in [n_off, n_off + N_tile). */
static ir_status gemv_tile(op_ctx *c, const float *x, int32_t wbuf, const float *bias,
                           int64_t bias_n, float *y, int64_t y_n)
{
    int64_t K = 0, nt = 0, off = 0;
    TRY(iparam(c, "K", &K));
    TRY(iparam(c, "N_tile", &nt));
    TRY(iparam(c, "n_off", &off));
    const ir_buffer *wb = &c->vm->p->buffers[wbuf];
    if (wb->rank != 2 || wb->shape[1] != K)
        return op_fail(c, "weight %s is not [N, K=%lld]", wb->name, (long long)K);
    if (nt < 0 || off < 0 || nt > wb->shape[0] || off > wb->shape[0] - nt || off + nt > y_n ||
        (bias && off + nt > bias_n) || in_n(c, 0) < K)
        return op_fail(c, "tile [%lld, %lld) x K %lld outside its buffers", (long long)off,
                       (long long)(off + nt), (long long)K);
    for (int64_t n = off; n < off + nt; n++) {
        const float *W = wrow(c, wbuf, n, K);
        if (!W)
            return ir_fail(c->err, IR_ERR_NOMEM, "refvm", "out of memory");
        y[n] = (float)(dot(x, W, K) + (bias ? bias[n] : 0.0f));
    }
    return IR_OK;
}

static ir_status scores_reserve(refvm *vm, int64_t n);

/* AMK's weight-only quantized GEMV tile: inputs [x, qW, scales (, zeros)], params qdtype (I8 or
 * I4) and group (default K). qW [N, K] holds I8 values or I4 nibbles; scales and zeros are
 * [N, n_groups]. W[n, k] = (q - (8 for I4) - zero[n, g]) * scale[n, g] with
 * g = min(k / group, n_groups - 1), the last group covering a ragged tail. */
static ir_status gemv_quant(op_ctx *c, int64_t qdtype)
{
    int64_t K = 0, nt = 0, off = 0, group = 0;
    TRY(iparam(c, "K", &K));
    TRY(iparam(c, "N_tile", &nt));
    TRY(iparam(c, "n_off", &off));
    group = K;
    if (ir_task_param(c->t, "group"))
        TRY(iparam(c, "group", &group));
    const ir_buffer *wb = in_b(c, 1), *sb = in_b(c, 2);
    const ir_buffer *zb = c->t->n_inputs > 3 ? in_b(c, 3) : NULL;
    if (wb->rank != 2 || wb->shape[1] != K || (int64_t)wb->dtype != qdtype || K < 1 || group < 1)
        return op_fail(c, "quantized weight %s must be %s [N, K=%lld], group >= 1", wb->name,
                       ir_dtype_name((ir_dtype)qdtype), (long long)K);
    int64_t N = wb->shape[0], G = sb->rank == 2 ? sb->shape[1] : 0;
    if (sb->rank != 2 || sb->shape[0] != N || G < 1 ||
        (zb && (zb->rank != 2 || zb->shape[0] != N || zb->shape[1] != G)))
        return op_fail(c, "scales %s (and zeros) must be [N=%lld, n_groups]", sb->name,
                       (long long)N);
    if (nt < 0 || off < 0 || nt > N || off > N - nt || off + nt > out_n(c, 0) || in_n(c, 0) < K)
        return op_fail(c, "tile [%lld, %lld) x K %lld outside its buffers", (long long)off,
                       (long long)(off + nt), (long long)K);
    if (scores_reserve(c->vm, K) != IR_OK)
        return ir_fail(c->err, IR_ERR_NOMEM, "refvm", "out of memory");
    const float *x = in(c, 0), *q = in(c, 1), *sc = in(c, 2), *z = zb ? in(c, 3) : NULL;
    float *w = c->vm->scores, *y = outp(c, 0);
    float shift = qdtype == IR_I4 ? 8.0f : 0.0f;   /* symmetric int4 stores q + 8 */
    for (int64_t n = off; n < off + nt; n++) {
        for (int64_t k = 0; k < K; k++) {
            int64_t g = k / group < G ? k / group : G - 1;
            w[k] = (q[n * K + k] - shift - (z ? z[n * G + g] : 0.0f)) * sc[n * G + g];
        }
        y[n] = (float)dot(x, w, K);
    }
    return IR_OK;
}

static ir_status op_gemv(op_ctx *c)
{
    TRY(need_arity(c, 2, 1));
    int64_t qdtype = 0;
    if (ir_task_param(c->t, "qdtype"))
        TRY(iparam(c, "qdtype", &qdtype));
    if ((qdtype == IR_I8 || qdtype == IR_I4) && c->t->n_inputs >= 3)
        return gemv_quant(c, qdtype);
    const float *bias = c->t->n_inputs > 2 ? in(c, 2) : NULL;
    return gemv_tile(c, in(c, 0), c->t->inputs[1], bias, bias ? in_n(c, 2) : 0, outp(c, 0),
                     out_n(c, 0));
}

/* y[m, n] = x[m, :] . W[n, :] (+ bias[n]) for m in [m_off, m_off + M_tile), n in
 * [n_off, n_off + N_tile); x [M, K], W [N, K], y [M, N]. */
static ir_status op_gemm(op_ctx *c)
{
    TRY(need_arity(c, 2, 1));
    int64_t K = 0, nt = 0, off = 0, mt = 0, moff = 0;
    TRY(iparam(c, "K", &K));
    TRY(iparam(c, "N_tile", &nt));
    TRY(iparam(c, "n_off", &off));
    TRY(iparam(c, "M_tile", &mt));
    if (ir_task_param(c->t, "qdtype"))
        return op_fail(c, "quantized GEMM_TILE is not executed by the reference VM");
    if (ir_task_param(c->t, "m_off"))
        TRY(iparam(c, "m_off", &moff));
    const ir_buffer *xb = in_b(c, 0), *wb = in_b(c, 1), *yb = out_b(c, 0);
    const ir_buffer *bb = c->t->n_inputs > 2 ? in_b(c, 2) : NULL;
    if (xb->rank != 2 || wb->rank != 2 || yb->rank != 2 || xb->shape[1] != K || wb->shape[1] != K ||
        yb->shape[1] != wb->shape[0] || yb->shape[0] != xb->shape[0])
        return op_fail(c, "needs x [M, K=%lld], W [N, K], y [M, N]", (long long)K);
    if (nt < 0 || off < 0 || nt > wb->shape[0] || off > wb->shape[0] - nt || mt < 0 || moff < 0 ||
        mt > xb->shape[0] || moff > xb->shape[0] - mt || (bb && ir_buffer_numel(bb) < off + nt))
        return op_fail(c, "tile rows [%lld, +%lld) x cols [%lld, +%lld) outside its buffers",
                       (long long)moff, (long long)mt, (long long)off, (long long)nt);
    const float *x = in(c, 0), *bias = bb ? in(c, 2) : NULL;
    float *y = outp(c, 0);
    int64_t N = wb->shape[0];
    for (int64_t n = off; n < off + nt; n++) {   /* each weight row read once */
        const float *W = wrow(c, c->t->inputs[1], n, K);
        if (!W)
            return ir_fail(c->err, IR_ERR_NOMEM, "refvm", "out of memory");
        for (int64_t m = moff; m < moff + mt; m++)
            y[m * N + n] = (float)(dot(x + m * K, W, K) + (bias ? bias[n] : 0.0f));
    }
    return IR_OK;
}

/* y = (x - mean) / sqrt(var + eps) * w (+ b), over the first `hidden` elements. */
static ir_status op_layernorm(op_ctx *c)
{
    double eps;
    int64_t H;
    TRY(norm_params(c, &eps, &H));
    bool has_b = c->t->n_inputs > 2;
    if (H < 1 || in_n(c, 0) < H || in_n(c, 1) < H || out_n(c, 0) < H || (has_b && in_n(c, 2) < H))
        return op_fail(c, "hidden %lld does not fit its buffers", (long long)H);
    const float *x = in(c, 0), *w = in(c, 1), *b = has_b ? in(c, 2) : NULL;
    float *y = outp(c, 0);
    double mean = 0, var = 0;
    for (int64_t i = 0; i < H; i++)
        mean += x[i];
    mean /= (double)H;
    for (int64_t i = 0; i < H; i++)
        var += (x[i] - mean) * (x[i] - mean);
    double r = 1.0 / sqrt(var / (double)H + eps);
    for (int64_t i = 0; i < H; i++)
        y[i] = (float)((x[i] - mean) * r * w[i] + (b ? b[i] : 0.0f));
    return IR_OK;
}

/* Softmax over the last dimension of every row. */
static ir_status op_softmax(op_ctx *c)
{
    TRY(need_arity(c, 1, 1));
    const ir_buffer *xb = in_b(c, 0);
    int64_t n = in_n(c, 0), w = xb->rank ? xb->shape[xb->rank - 1] : 1;
    if (out_n(c, 0) != n)
        return op_fail(c, "output of %lld elements for an input of %lld", (long long)out_n(c, 0),
                       (long long)n);
    const float *x = in(c, 0);
    float *y = outp(c, 0);
    for (int64_t r = 0; r < n; r += w) {
        double m = -INFINITY, sum = 0;
        for (int64_t i = 0; i < w; i++)
            if (x[r + i] > m)
                m = x[r + i];
        for (int64_t i = 0; i < w; i++)
            sum += exp(x[r + i] - m);
        for (int64_t i = 0; i < w; i++)
            y[r + i] = (float)(exp(x[r + i] - m) / sum);
    }
    return IR_OK;
}

static ir_status rope_into(op_ctx *c, const float *x, int64_t n, float *y);
static ir_status op_rope_attention(op_ctx *c);

/* FUSED recipes (SPEC 5): the fused ops computed exactly as their unfused sequence would, the
 * intermediate vector (normalized x, or silu(a) * b) held in VM scratch instead of a buffer. */
static ir_status op_fused(op_ctx *c)
{
    int64_t recipe = 0, K = 0;
    TRY(iparam(c, "recipe", &recipe));
    const ir_task *t = c->t;
    switch (recipe) {
    case IR_RECIPE_GEMV_PAIR:
        TRY(need_arity(c, 3, 2));
        TRY(gemv_tile(c, in(c, 0), t->inputs[1], NULL, 0, outp(c, 0), out_n(c, 0)));
        return gemv_tile(c, in(c, 0), t->inputs[2], NULL, 0, outp(c, 1), out_n(c, 1));
    case IR_RECIPE_NORM_GEMV:
    case IR_RECIPE_NORM_GEMV_PAIR:
    case IR_RECIPE_SILU_GEMV: {
        bool pair = recipe == IR_RECIPE_NORM_GEMV_PAIR;
        TRY(need_arity(c, pair ? 4 : 3, pair ? 2 : 1));
        TRY(iparam(c, "K", &K));
        if (K < 1 || in_n(c, 0) < K || in_n(c, 1) < K)
            return op_fail(c, "K %lld does not fit its input vectors", (long long)K);
        TRY(scores_reserve(c->vm, K));
        float *xs = c->vm->scores;
        if (recipe == IR_RECIPE_SILU_GEMV) {
            const float *a = in(c, 0), *b = in(c, 1);
            for (int64_t i = 0; i < K; i++)
                xs[i] = silu_mul(a[i], b[i]);
        } else {
            double eps = 0;
            TRY(rparam(c, "eps", &eps));
            rms_apply(in(c, 0), in(c, 1), K, eps, xs);
        }
        const float *bias = !pair && t->n_inputs > 3 ? in(c, 3) : NULL;
        TRY(gemv_tile(c, xs, t->inputs[2], bias, bias ? in_n(c, 3) : 0, outp(c, 0), out_n(c, 0)));
        if (pair)
            TRY(gemv_tile(c, xs, t->inputs[3], NULL, 0, outp(c, 1), out_n(c, 1)));
        return IR_OK;
    }
    case IR_RECIPE_ROPE_APPEND: {
        TRY(need_arity(c, 1, 1));
        int64_t pos = 0;
        TRY(iparam(c, "pos", &pos));
        const ir_buffer *cb = out_b(c, 0);
        if (cb->rank != 2 || pos < 0 || pos >= cb->shape[0] || in_n(c, 0) != cb->shape[1])
            return op_fail(c, "row %lld outside cache %s or source not one row", (long long)pos,
                           cb->name);
        return rope_into(c, in(c, 0), in_n(c, 0), outp(c, 0) + pos * cb->shape[1]);
    }
    case IR_RECIPE_ROPE_ATTENTION:
        return op_rope_attention(c);
    default:
        return op_fail(c, "FUSED recipe %lld is not executed by the reference VM",
                       (long long)recipe);
    }
}

void refvm_rope_angles(const refvm_rope *r, int64_t pos, double *cs)
{
    int64_t hd = r->head_dim;
    for (int64_t i = 0; i < hd / 2; i++) {
        double freq = pow(r->theta, -2.0 * (double)i / (double)hd);
        if (r->llama3) {
            /* Bands by wavelength against the original context: long waves are slowed by
             * factor, short ones kept, the ones between blended linearly in orig/wavelen. */
            double wl = 2.0 * M_PI / freq, ratio = (double)r->orig_max / wl;
            if (ratio < r->low_freq)
                freq /= r->factor;
            else if (ratio <= r->high_freq) {
                double t = (ratio - r->low_freq) / (r->high_freq - r->low_freq);
                freq = freq * t + freq / r->factor * (1.0 - t);
            }
        }
        double ang = (double)pos * (double)(float)freq;
        cs[2 * i] = cos(ang);
        cs[2 * i + 1] = sin(ang);
    }
}

static ir_status rope_at(op_ctx *c, const float *x, int64_t n, float *y, int64_t pos);

/* Rotate-half RoPE of every head. ROPE [x] (ours) rotates x as consecutive heads at the param
 * pos. ROPE [x, pos] (AMK) takes the position from the pos input and rotates the last dimension,
 * which must be head_dim: x [n_heads, head_dim] at pos[0], or x [B, n_heads, head_dim] with row
 * b at pos[b] (AMK's batched decode). */
static ir_status op_rope(op_ctx *c)
{
    TRY(need_arity(c, 1, 1));
    if (out_n(c, 0) < in_n(c, 0))
        return op_fail(c, "output shorter than its input");
    if (c->t->n_inputs < 2)
        return rope_into(c, in(c, 0), in_n(c, 0), outp(c, 0));
    const ir_buffer *xb = in_b(c, 0);
    int64_t hd = 0;
    TRY(iparam(c, "head_dim", &hd));
    if ((xb->rank != 2 && xb->rank != 3) || xb->shape[xb->rank - 1] != hd)
        return op_fail(c, "ROPE [x, pos] needs x [n_heads, head_dim=%lld] or [B, n_heads, "
                       "head_dim]: AMK rotates the last dimension", (long long)hd);
    int64_t rows = xb->rank == 3 ? xb->shape[0] : 1, per = in_n(c, 0) / rows;
    if (xb->rank == 3 ? in_n(c, 1) != rows : in_n(c, 1) < 1)
        return op_fail(c, "pos input %s holds %lld positions for %lld rows", in_b(c, 1)->name,
                       (long long)in_n(c, 1), (long long)rows);
    for (int64_t r = 0; r < rows; r++) {
        float pos = in(c, 1)[r];
        if (!(pos >= 0 && pos < 2147483648.0f) || pos != floorf(pos))
            return op_fail(c, "position %g is not an integer in [0, 2^31)", (double)pos);
        TRY(rope_at(c, in(c, 0) + r * per, per, outp(c, 0) + r * per, (int64_t)pos));
    }
    return IR_OK;
}

/* RoPE of the n elements of x (whole heads) into y, at the task's pos param. */
static ir_status rope_into(op_ctx *c, const float *x, int64_t n, float *y)
{
    int64_t pos = 0;
    TRY(iparam(c, "pos", &pos));
    return rope_at(c, x, n, y, pos);
}

/* RoPE of the n elements of x (whole heads) into y at position pos, with c's task params. */
static ir_status rope_at(op_ctx *c, const float *x, int64_t n, float *y, int64_t pos)
{
    int64_t hd = 0;
    double theta = 0;
    TRY(iparam(c, "head_dim", &hd));
    TRY(rparam(c, "theta", &theta));
    if (hd < 2 || hd % 2 || n % hd || hd > BASE_MAX_HEAD_DIM)
        return op_fail(c, "head_dim %lld does not divide %lld elements", (long long)hd,
                       (long long)n);
    bool llama3 = ir_task_param(c->t, "rope_factor") != NULL;
    double factor = 1, lowf = 1, highf = 1;
    int64_t orig = 0;
    if (llama3) {
        TRY(rparam(c, "rope_factor", &factor));
        TRY(rparam(c, "rope_low_freq", &lowf));
        TRY(rparam(c, "rope_high_freq", &highf));
        TRY(iparam(c, "rope_orig_max", &orig));
        if (!(factor > 0) || !(highf > lowf) || !(lowf > 0) || orig < 1)
            return op_fail(c, "bad llama3 rope scaling params");
    }
    int64_t half = hd / 2;
    double cs[BASE_MAX_HEAD_DIM];   /* cos, sin per frequency; hd <= BASE_MAX_HEAD_DIM */
    refvm_rope r = {hd, theta, llama3, factor, lowf, highf, orig};
    refvm_rope_angles(&r, pos, cs);
    for (int64_t base = 0; base < n; base += hd)
        for (int64_t i = 0; i < half; i++) {
            double lo = x[base + i], hi = x[base + half + i];
            y[base + i] = (float)(lo * cs[2 * i] - hi * cs[2 * i + 1]);
            y[base + half + i] = (float)(hi * cs[2 * i] + lo * cs[2 * i + 1]);
        }
    return IR_OK;
}

/* KV_APPEND writes the source into position pos of the cache: KV_APPEND [src] (ours) row pos of
 * a [S, D] cache; KV_APPEND [src, cache] (AMK, the cache written in place) row pos of a [S, D] or
 * [S, nkv, hd] cache from a one-row source [1, ...], or slot pos of every sequence of a
 * [B, S, nkv, hd] cache from a source [B, ...]. */
static ir_status op_kv_append(op_ctx *c)
{
    TRY(need_arity(c, 1, 1));
    int64_t pos = 0;
    TRY(iparam(c, "pos", &pos));
    const ir_buffer *cb = out_b(c, 0), *sb = in_b(c, 0);
    bool amk = c->t->n_inputs > 1, batched = cb->rank == 4;
    int64_t B = batched ? cb->shape[0] : 1, S = cb->rank >= 2 ? cb->shape[batched ? 1 : 0] : 0;
    int64_t W = S ? out_n(c, 0) / (B * S) : 0;    /* elements per row */
    if (cb->rank < 2 || (!amk && cb->rank != 2) || pos < 0 || pos >= S)
        return op_fail(c, "row %lld outside cache %s or source too short", (long long)pos,
                       cb->name);
    if (!amk ? in_n(c, 0) < W : sb->rank < 2 || sb->shape[0] != B || in_n(c, 0) != B * W)
        return op_fail(c, "source %s must be %s row%s of %lld elements of cache %s", sb->name,
                       B > 1 ? "B" : "one", B > 1 ? "s" : "", (long long)W, cb->name);
    for (int64_t b = 0; b < B; b++)
        memcpy(outp(c, 0) + (b * S + pos) * W, in(c, 0) + b * W, (size_t)W * sizeof(float));
    return IR_OK;
}

static ir_status scores_reserve(refvm *vm, int64_t n)
{
    if (n <= vm->scores_cap)
        return IR_OK;
    float *s = realloc(vm->scores, (size_t)n * sizeof(float));
    if (!s)
        return IR_ERR_NOMEM;
    vm->scores = s;
    vm->scores_cap = n;
    return IR_OK;
}

/* One attention window: query heads of KV heads [g0, g0 + gn) over rows [start, start + len) of
 * the caches K, V (rows of nkv*hd), the last row taken from knew, vnew (one such row each)
 * instead when they are given. Writes the normalized output at o + h*hd, or with partial the
 * row acc, m, l of SPEC 5 at o + h*(hd+2). sc: len floats of scratch. */
typedef struct {
    const float *q, *K, *V, *knew, *vnew;
    int64_t hd, group, nkv, start, len, g0, gn;
    double scale;
} attn_window;

static void attend(const attn_window *a, float *sc, bool partial, float *o)
{
    int64_t hd = a->hd, row = a->nkv * hd;
    for (int64_t h = a->g0 * a->group; h < (a->g0 + a->gn) * a->group; h++) {
        const float *qh = a->q + h * hd;
        int64_t kvo = (h / a->group) * hd;
        float *oh = partial ? o + h * (hd + 2) : o + h * hd;
        double m = -INFINITY, l = 0;
        for (int64_t j = 0; j < a->len; j++) {
            bool fresh = a->knew && j == a->len - 1;
            const float *kj = fresh ? a->knew + kvo : a->K + (a->start + j) * row + kvo;
            sc[j] = (float)(a->scale * dot(qh, kj, hd));
            if (sc[j] > m)
                m = sc[j];
        }
        for (int64_t i = 0; i < hd; i++)
            oh[i] = 0;
        for (int64_t j = 0; j < a->len; j++) {
            float pj = (float)exp(sc[j] - m);
            l += pj;
            bool fresh = a->vnew && j == a->len - 1;
            const float *vj = fresh ? a->vnew + kvo : a->V + (a->start + j) * row + kvo;
            for (int64_t i = 0; i < hd; i++)
                oh[i] += pj * vj[i];
        }
        if (partial) {
            oh[hd] = (float)m;
            oh[hd + 1] = (float)l;
        } else {
            for (int64_t i = 0; i < hd; i++)
                oh[i] = a->len ? (float)(oh[i] / l) : 0.0f;
        }
    }
}

/* Sequences and rows of a KV cache: [S, nkv*hd] (ours), [S, nkv, hd] (AMK) or [B, S, nkv, hd]
 * (AMK's batched decode, one history per sequence); a row is nkv*hd contiguous elements, KV head
 * g at [g*hd, (g+1)*hd) in each. False for any other shape. */
static bool cache_layout(const ir_buffer *b, int64_t nkv, int64_t hd, int64_t *batch, int64_t *S)
{
    const int64_t *d = b->shape;
    *batch = b->rank == 4 ? d[0] : 1;
    *S = b->rank == 4 ? d[1] : d[0];
    switch (b->rank) {
    case 2: return d[1] == nkv * hd;
    case 3: return d[1] == nkv && d[2] == hd;
    case 4: return d[2] == nkv && d[3] == hd;
    default: return false;
    }
}

/* Head geometry shared by ATTENTION_TILE and FUSED recipe 6: head_dim, n_heads, n_kv_heads and
 * the KV head range, checked against q (nq elements) and the caches; *batch sequences of *S rows
 * each (cache_layout). */
static ir_status attn_geometry(op_ctx *c, attn_window *a, int64_t nq, const ir_buffer *kb,
                               const ir_buffer *vb, int64_t *batch, int64_t *S)
{
    int64_t nh = 0;
    TRY(iparam(c, "head_dim", &a->hd));
    TRY(iparam(c, "n_heads", &nh));
    TRY(iparam(c, "n_kv_heads", &a->nkv));
    TRY(rparam(c, "scale", &a->scale));
    int64_t hd = a->hd, nkv = a->nkv, vbatch, vS;
    if (hd < 1 || nh < 1 || nkv < 1 || hd > (1 << 20) || nh > (1 << 20) || nh % nkv)
        return op_fail(c, "heads %lld/%lld x head_dim %lld do not fit q", (long long)nh,
                       (long long)nkv, (long long)hd);
    if (!cache_layout(kb, nkv, hd, batch, S) || !cache_layout(vb, nkv, hd, &vbatch, &vS) ||
        vbatch != *batch || vS != *S)
        return op_fail(c, "caches must be [S, n_kv_heads * head_dim], [S, n_kv_heads, head_dim] "
                       "or [B, S, n_kv_heads, head_dim], both alike");
    if (nq < *batch * nh * hd)
        return op_fail(c, "heads %lld/%lld x head_dim %lld do not fit q", (long long)nh,
                       (long long)nkv, (long long)hd);
    if (!ir_attention_heads(c->t, nkv, &a->g0, &a->gn) || a->g0 < 0 || a->gn < 1 ||
        a->g0 > nkv - a->gn)
        return op_fail(c, "KV head range [%lld, +%lld) outside [0, %lld)", (long long)a->g0,
                       (long long)a->gn, (long long)nkv);
    a->group = nh / nkv;
    return IR_OK;
}

/* Attention of the task's query heads over cache rows [kv_start, kv_start + kv_len): the
 * normalized output, or a flash partial acc | m | l per head (SPEC 5) for a later combine: with
 * m_off (ours) row m_off of a [nb, n_heads*(head_dim+2)] buffer, with flags bit 2 (AMK's
 * PARTIAL_WRITE) the whole [n_heads, head_dim+2] output. Over [B, S, nkv, hd] caches each of the
 * B sequences attends with its own query rows and writes its own output rows. */
static ir_status op_attention(op_ctx *c)
{
    TRY(need_arity(c, 3, 1));
    attn_window a = {in(c, 0), in(c, 1), in(c, 2), NULL, NULL, 0, 0, 0, 0, 0, 0, 0, 0};
    int64_t moff = -1, flags = 0, batch = 1, S = 0;
    const ir_buffer *kb = in_b(c, 1), *ob = out_b(c, 0);
    TRY(attn_geometry(c, &a, in_n(c, 0), kb, in_b(c, 2), &batch, &S));
    TRY(iparam(c, "kv_start", &a.start));
    TRY(iparam(c, "kv_len", &a.len));
    if (ir_task_param(c->t, "flags"))
        TRY(iparam(c, "flags", &flags));
    bool by_row = ir_task_param(c->t, "m_off") != NULL, partial = by_row || (flags & 2);
    if (by_row)
        TRY(iparam(c, "m_off", &moff));
    int64_t nh = a.group * a.nkv, hd = a.hd, row = a.nkv * hd;
    if (a.start < 0 || a.len < 0 || a.start > S || a.len > S - a.start)
        return op_fail(c, "window [%lld, %lld) outside the %lld cache rows", (long long)a.start,
                       (long long)(a.start + a.len), (long long)S);
    if (partial && kb->rank == 4)
        return op_fail(c, "attention over [B, S, n_kv_heads, head_dim] caches writes no partials");
    if (by_row ? (ob->rank != 2 || moff < 0 || moff >= ob->shape[0] || ob->shape[1] != nh * (hd + 2))
        : partial ? out_n(c, 0) != nh * (hd + 2) : out_n(c, 0) < batch * nh * hd)
        return op_fail(c, "output %s does not fit %s", ob->name,
                       by_row ? "a partials row [nb, n_heads*(head_dim+2)]"
                       : partial ? "a partial [n_heads, head_dim+2]" : "n_heads*head_dim");
    if (scores_reserve(c->vm, a.len + 1) != IR_OK)
        return ir_fail(c->err, IR_ERR_NOMEM, "refvm", "out of memory");
    for (int64_t b = 0; b < batch; b++) {
        attn_window ab = a;
        ab.q = a.q + b * nh * hd;
        ab.K = a.K + b * S * row;
        ab.V = a.V + b * S * row;
        float *o = by_row ? outp(c, 0) + moff * nh * (hd + 2) : outp(c, 0) + b * nh * hd;
        attend(&ab, c->vm->scores, partial, o);
    }
    return IR_OK;
}

/* FUSED recipe 6: RoPE of the range's query heads and keys at pos, then attention over cache
 * rows [0, pos) plus the row (ROPE(k), v), exactly as ROPE, KV_APPEND and ATTENTION_TILE over
 * [0, pos + 1) compute it; the caches are only read. */
static ir_status op_rope_attention(op_ctx *c)
{
    TRY(need_arity(c, 5, 1));
    attn_window a = {NULL, in(c, 3), in(c, 4), NULL, in(c, 2), 0, 0, 0, 0, 0, 0, 0, 0};
    int64_t pos = 0;
    const ir_buffer *kb = in_b(c, 3);
    int64_t batch, S;
    TRY(attn_geometry(c, &a, in_n(c, 0), kb, in_b(c, 4), &batch, &S));
    if (kb->rank != 2)
        return op_fail(c, "FUSED recipe 6 needs caches [S, n_kv_heads * head_dim]");
    TRY(iparam(c, "pos", &pos));
    int64_t hd = a.hd, nh = a.group * a.nkv, kvd = a.nkv * hd;
    if (pos < 0 || pos >= kb->shape[0] || in_n(c, 1) != kvd || in_n(c, 2) != kvd ||
        out_n(c, 0) < nh * hd)
        return op_fail(c, "pos %lld outside the %lld cache rows, or k, v, o do not fit the heads",
                       (long long)pos, (long long)kb->shape[0]);
    a.len = pos + 1;
    float *qr = malloc((size_t)(nh + a.nkv) * (size_t)hd * sizeof *qr);
    if (!qr || scores_reserve(c->vm, a.len + 1) != IR_OK) {
        free(qr);
        return ir_fail(c->err, IR_ERR_NOMEM, "refvm", "out of memory");
    }
    float *kr = qr + nh * hd;
    int64_t q0 = a.g0 * a.group * hd, k0 = a.g0 * hd;
    ir_status s = rope_into(c, in(c, 0) + q0, a.gn * a.group * hd, qr + q0);
    if (s == IR_OK)
        s = rope_into(c, in(c, 1) + k0, a.gn * hd, kr + k0);
    if (s == IR_OK) {
        a.q = qr;
        a.knew = kr;
        attend(&a, c->vm->scores, false, outp(c, 0));
    }
    free(qr);
    return s;
}

/* Partial row r (of n_heads*(head_dim+2) elements) of a combine's inputs, taken in order. */
static const float *partial_row(op_ctx *c, int64_t rw, int64_t r)
{
    for (int k = 0; k < c->t->n_inputs; k++) {
        int64_t rows = in_n(c, k) / rw;
        if (r < rows)
            return in(c, k) + r * rw;
        r -= rows;
    }
    return NULL;
}

/* Flash-decoding merge: rescale each partial to the global max, sum, normalize. The partials
 * are the rows of the inputs in order: one [nb, n_heads*(head_dim+2)] buffer (ours) or 2..8
 * [n_heads, head_dim+2] buffers (AMK). n_heads defaults, as in AMK, to the first input's
 * numel / (head_dim+2). */
static ir_status op_attention_combine(op_ctx *c)
{
    TRY(need_arity(c, 1, 1));
    int64_t hd = 0, nh = 0, nb = 0;
    TRY(iparam(c, "head_dim", &hd));
    if (ir_task_param(c->t, "n_heads"))
        TRY(iparam(c, "n_heads", &nh));
    else if (hd >= 1)
        nh = in_n(c, 0) / (hd + 2);
    if (hd < 1 || nh < 1 || hd > (1 << 20) || nh > (1 << 20) || out_n(c, 0) < nh * hd)
        return op_fail(c, "head_dim %lld, n_heads %lld do not fit output n_heads*head_dim",
                       (long long)hd, (long long)nh);
    int64_t rw = nh * (hd + 2);
    for (int k = 0; k < c->t->n_inputs; k++) {
        if (in_n(c, k) % rw)
            return op_fail(c, "partials %s must be rows of n_heads*(head_dim+2) = %lld elements",
                           in_b(c, k)->name, (long long)rw);
        nb += in_n(c, k) / rw;
    }
    float *o = outp(c, 0);
    for (int64_t h = 0; h < nh; h++) {
        double M = -INFINITY;
        for (int64_t b = 0; b < nb; b++) {
            const float *r = partial_row(c, rw, b) + h * (hd + 2);
            if (r[hd + 1] > 0 && r[hd] > M)
                M = r[hd];
        }
        double L = 0;
        for (int64_t i = 0; i < hd; i++)
            o[h * hd + i] = 0;
        if (M == -INFINITY)
            continue;                       /* every block empty: o = 0 */
        for (int64_t b = 0; b < nb; b++) {
            const float *r = partial_row(c, rw, b) + h * (hd + 2);
            if (!(r[hd + 1] > 0))
                continue;
            double w = exp(r[hd] - M);
            L += w * r[hd + 1];
            for (int64_t i = 0; i < hd; i++)
                o[h * hd + i] += (float)(w * r[i]);
        }
        for (int64_t i = 0; i < hd; i++)
            o[h * hd + i] = (float)(o[h * hd + i] / L);
    }
    return IR_OK;
}

static ir_status op_elementwise(op_ctx *c)
{
    bool unary = c->t->op == IR_OP_COPY || c->t->op == IR_OP_GELU;
    TRY(need_arity(c, unary ? 1 : 2, 1));
    int64_t n = out_n(c, 0);
    if (in_n(c, 0) != n || (!unary && in_n(c, 1) != n))
        return op_fail(c, "operands of %lld and %lld elements for an output of %lld",
                       (long long)in_n(c, 0), (long long)(unary ? n : in_n(c, 1)), (long long)n);
    const float *a = in(c, 0), *b = unary ? NULL : in(c, 1);
    float *y = outp(c, 0);
    for (int64_t i = 0; i < n; i++) {
        switch (c->t->op) {
        case IR_OP_COPY: y[i] = a[i]; break;
        case IR_OP_GELU: y[i] = (float)(0.5 * a[i] * (1.0 + erf(a[i] / sqrt(2.0)))); break;
        case IR_OP_ADD: y[i] = a[i] + b[i]; break;
        case IR_OP_MUL: y[i] = a[i] * b[i]; break;
        default: y[i] = silu_mul(a[i], b[i]); break;                            /* SILU_MUL */
        }
    }
    return IR_OK;
}

static ir_status op_argmax(op_ctx *c)
{
    TRY(need_arity(c, 1, 1));
    int64_t rows = out_n(c, 0);    /* one token per logits row: [B, V] -> [B] */
    if (rows < 1 || in_n(c, 0) < rows || in_n(c, 0) % rows)
        return op_fail(c, "%lld logits do not split into %lld rows", (long long)in_n(c, 0),
                       (long long)rows);
    int64_t V = in_n(c, 0) / rows;
    for (int64_t r = 0; r < rows; r++)
        outp(c, 0)[r] = (float)refvm_argmax(in(c, 0) + r * V, V);
    return IR_OK;
}

/* Whether op reads input slot k by rows through wrow (so a streamed weight stays streamed):
 * the weight of a plain GEMV or GEMM tile, the table of EMBED, the GEMV weights of FUSED. */
static bool reads_rows(const ir_task *t, int k)
{
    switch (t->op) {
    case IR_OP_GEMV_TILE: return k == 1 && !ir_task_param(t, "qdtype");
    case IR_OP_GEMM_TILE: case IR_OP_EMBED: return k == 1;
    case IR_OP_FUSED: return k >= 1;
    default: return false;
    }
}

static ir_status run_op(op_ctx *c)
{
    for (int k = 0; k < c->t->n_inputs; k++)
        if (!reads_rows(c->t, k))
            TRY(materialize(c->vm, c->t->inputs[k], c->err));
    switch (c->t->op) {
    case IR_OP_NOP: return IR_OK;
    case IR_OP_EMBED: return op_embed(c);
    case IR_OP_RMSNORM: return op_rmsnorm(c);
    case IR_OP_GEMV_TILE: return op_gemv(c);
    case IR_OP_FUSED: return op_fused(c);
    case IR_OP_GEMM_TILE: return op_gemm(c);
    case IR_OP_LAYERNORM: return op_layernorm(c);
    case IR_OP_SOFTMAX: return op_softmax(c);
    case IR_OP_ROPE: return op_rope(c);
    case IR_OP_KV_APPEND: return op_kv_append(c);
    case IR_OP_ATTENTION_TILE: return op_attention(c);
    case IR_OP_ATTENTION_COMBINE: return op_attention_combine(c);
    case IR_OP_COPY: case IR_OP_GELU: case IR_OP_ADD: case IR_OP_MUL: case IR_OP_SILU_MUL:
        return op_elementwise(c);
    case IR_OP_SAMPLE_ARGMAX: return op_argmax(c);
    default: return op_fail(c, "op not executed by the reference VM");
    }
}

/* ---------------------------------------------------------------- stamps and footprints */

/* Concrete box of a footprint at the current position, checked to lie inside the buffer. */
static ir_status concrete_box(refvm *vm, const ir_task *t, const ir_box *box, int32_t b,
                              bool is_out, int slot, int64_t *lo, int64_t *hi, ir_error *err)
{
    const ir_buffer *bb = &vm->p->buffers[b];
    ir_box_eval(box, vm->pos, lo, hi);
    char where[64];
    if (box->rank != bb->rank)
        return ir_fail(err, IR_ERR_MALFORMED, task_where(t, where, sizeof where),
                       "%s %d footprint has rank %d, buffer %s rank %d", is_out ? "output" : "input",
                       slot, box->rank, bb->name, bb->rank);
    for (int d = 0; d < box->rank; d++)
        if (lo[d] < 0 || hi[d] > bb->shape[d] || lo[d] > hi[d])
            return ir_fail(err, IR_ERR_MALFORMED, task_where(t, where, sizeof where),
                           "%s %d footprint [%lld, %lld) of dim %d outside buffer %s (%lld) at pos"
                           " %lld", is_out ? "output" : "input", slot, (long long)lo[d],
                           (long long)hi[d], d, bb->name, (long long)bb->shape[d],
                           (long long)vm->pos);
    return IR_OK;
}

/* Visit every flat index of box [lo, hi) of a buffer of the given shape; fn returns false to
 * stop, and visit returns the index where it stopped (or -1). */
typedef bool (*elem_fn)(refvm *vm, int32_t b, int64_t idx);

static int64_t visit_box(refvm *vm, int32_t b, const int64_t *lo, const int64_t *hi, elem_fn fn)
{
    const ir_buffer *bb = &vm->p->buffers[b];
    int r = bb->rank;
    if (r == 0)
        return fn(vm, b, 0) ? -1 : 0;
    int64_t inner = 1;                    /* elements per step of dim 0 */
    for (int d = 1; d < r; d++)
        inner *= bb->shape[d];
    int64_t idx[IR_MAX_RANK];
    for (int64_t row = lo[0]; row < hi[0]; row++) {
        for (int d = 1; d < r; d++) {
            idx[d] = lo[d];
            if (lo[d] >= hi[d])
                return -1;
        }
        for (;;) {
            int64_t flat = 0;
            for (int d = 1; d < r; d++)
                flat = flat * bb->shape[d] + idx[d];
            flat += row * inner;
            if (!fn(vm, b, flat))
                return flat;
            int d = r - 1;
            while (d >= 1 && ++idx[d] == hi[d]) {
                idx[d] = lo[d];
                d--;
            }
            if (d < 1)
                break;
        }
    }
    return -1;
}

static bool elem_written(refvm *vm, int32_t b, int64_t i)
{
    return vm->buf[b].stamp[i] == stamp_of(vm, b);
}

static bool elem_mark(refvm *vm, int32_t b, int64_t i)
{
    vm->buf[b].stamp[i] = stamp_of(vm, b);
    return true;
}

/* Describe the element i of buffer b that was found unwritten. */
static char *describe_unwritten(refvm *vm, const ir_task *t, int slot, int32_t b, int64_t i)
{
    const ir_buffer *bb = &vm->p->buffers[b];
    uint32_t st = vm->buf[b].stamp[i];
    char other[200] = "no task wrote it earlier in this step";
    if (st > vm->stamp_base && st - vm->stamp_base - 1 < (uint32_t)vm->p->n_buffers &&
        (int32_t)(st - vm->stamp_base - 1) != b) {
        int32_t ob = (int32_t)(st - vm->stamp_base - 1);
        snprintf(other, sizeof other, "it was overwritten by buffer %d (%s) sharing page %d",
                 ob, vm->p->buffers[ob].name, vm->buf[b].page);
    }
    int64_t idx[IR_MAX_RANK] = {0}, rem = i;
    for (int d = bb->rank - 1; d >= 0; d--) {
        idx[d] = rem % bb->shape[d];
        rem /= bb->shape[d];
    }
    char coords[IR_MAX_RANK * 24] = "";
    size_t used = 0;
    for (int d = 0; d < bb->rank; d++)
        used += (size_t)snprintf(coords + used, sizeof coords - used, "%s%lld", d ? "," : "",
                                 (long long)idx[d]);
    char *s = NULL;
    if (asprintf(&s, "task %d (%s, %s) reads input %d, buffer %d (%s) element %lld [%s] at pos "
                 "%lld, but %s", t->id, t->label, ir_op_name(t->op), slot, b, bb->name,
                 (long long)i, coords, (long long)vm->pos, other) < 0)
        return NULL;
    return s;
}

/* ---------------------------------------------------------------- the step */

/* First unsatisfied wait of task t, or -1. */
static int first_blocking_wait(const refvm *vm, const ir_task *t)
{
    for (int k = 0; k < t->n_waits; k++)
        if (vm->counters[t->waits[k].counter] < t->waits[k].threshold)
            return k;
    return -1;
}

/* The queue whose head is task id and enabled, or -1. */
static int32_t forced_queue(const refvm *vm, int32_t id)
{
    const ir_program *p = vm->p;
    if (id < 0 || id >= p->n_tasks)
        return -1;
    int32_t q = vm->queue_of[id], at = vm->qstart[q] + vm->head[q];
    if (at < vm->qstart[q + 1] && vm->qtasks[at] == id)
        return first_blocking_wait(vm, &p->tasks[id]) < 0 ? q : -1;
    return -1;
}

static char *describe_deadlock(const refvm *vm, int64_t ran)
{
    const ir_program *p = vm->p;
    char *text = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&text, &len);
    if (!f)
        return NULL;
    fprintf(f, "deadlock at pos %lld after %lld of %d tasks; blocked queues:\n",
            (long long)vm->pos, (long long)ran, p->n_tasks);
    for (int32_t q = 0; q < vm->n_queues; q++) {
        int32_t at = vm->qstart[q] + vm->head[q];
        if (at >= vm->qstart[q + 1])
            continue;
        const ir_task *t = &p->tasks[vm->qtasks[at]];
        int k = first_blocking_wait(vm, t);
        if (k < 0)
            continue;
        const ir_wait *w = &t->waits[k];
        fprintf(f, "  queue %d: head task %d (%s) waits counter %d (%s) >= %lld, value %lld\n",
                q, t->id, t->label, w->counter, p->counters[w->counter].note,
                (long long)w->threshold, (long long)vm->counters[w->counter]);
    }
    if (fclose(f) != 0) {
        free(text);
        return NULL;
    }
    return text;
}

static ir_status set_detail(refvm_result *r, char *text)
{
    r->detail = text;
    return text ? IR_OK : IR_ERR_NOMEM;
}

/* Run one launch. See refvm.h. */
ir_status refvm_step(refvm *vm, int32_t token, int64_t pos, refvm_result *r, ir_error *err)
{
    const ir_program *p = vm->p;
    memset(r, 0, sizeof *r);
    r->task = r->buffer = -1;
    r->element = -1;
    vm->last_done = false;
    if (!vm->bound)
        return ir_fail(err, IR_ERR_MALFORMED, "weights", "the program's weights are not bound");
    if (pos < 0 || pos >= vm->max_seq)
        return ir_fail(err, IR_ERR_MALFORMED, "pos", "%lld outside [0, max_seq = %lld)",
                       (long long)pos, (long long)vm->max_seq);
    vm->pos = pos;
    /* New stamps for this step: everything written before now reads as unwritten. When the
     * 32-bit stamps would wrap, clear every stamp and start again. */
    uint64_t next = (uint64_t)vm->stamp_base + (uint64_t)p->n_buffers + 1;
    if (next + (uint64_t)p->n_buffers + 1 >= UINT32_MAX) {
        for (int32_t i = 0; i < p->n_buffers; i++)
            if (vm->buf[i].stamp && vm->buf[i].owns)
                memset(vm->buf[i].stamp, 0, (size_t)vm->buf[i].numel * sizeof(uint32_t));
        for (int32_t g = 0; vm->page_stamp && g < p->pages.n_pages; g++)
            if (vm->page_stamp[g]) {
                int64_t n = 0;
                for (int32_t i = 0; i < p->n_buffers; i++)
                    if (vm->buf[i].page == g && vm->buf[i].numel > n)
                        n = vm->buf[i].numel;
                memset(vm->page_stamp[g], 0, (size_t)n * sizeof(uint32_t));
            }
        next = 1;
    }
    vm->stamp_base = (uint32_t)next;
    /* Inputs: the token (every entry of a batch decodes it), AMK's pos (every entry), and any
     * other I32 input, AMK's reshape ids, 0, 1, 2, ... (row b of a [B, n] projection). */
    for (int32_t b = 0; b < p->n_buffers; b++) {
        if (p->buffers[b].kind != IR_IO_INPUT || p->buffers[b].dtype != IR_I32)
            continue;
        vm_buf *ib = &vm->buf[b];
        for (int64_t i = 0; i < ib->numel; i++)
            ib->data[i] = b == vm->tokens_buf ? (float)token : b == vm->pos_buf ? (float)pos
                                                                               : (float)i;
    }
    for (int32_t i = 0; i < p->n_counters; i++)
        vm->counters[i] = p->counters[i].init;
    for (int32_t q = 0; q < vm->n_queues; q++)
        vm->head[q] = 0;

    int64_t ran = 0;
    int64_t lo[IR_MAX_RANK], hi[IR_MAX_RANK];
    for (;;) {
        int32_t n_en = 0;
        /* a forced schedule names the task: no scan of every queue (quadratic in long runs) */
        for (int32_t q = 0; ran >= vm->o.n_schedule && q < vm->n_queues; q++) {
            int32_t at = vm->qstart[q] + vm->head[q];
            if (at < vm->qstart[q + 1] && first_blocking_wait(vm, &p->tasks[vm->qtasks[at]]) < 0) {
                vm->enabled[n_en++] = q;
                if (!vm->o.interleave)
                    break;                 /* default order: the lowest enabled queue */
            }
        }
        int32_t q;
        if (ran < vm->o.n_schedule) {
            q = forced_queue(vm, vm->o.schedule[ran]);
            if (q < 0) {
                char where[64];
                snprintf(where, sizeof where, "schedule[%lld]", (long long)ran);
                return ir_fail(err, IR_ERR_MALFORMED, where, "task %d is not an enabled queue head"
                               " after %lld tasks at pos %lld", vm->o.schedule[ran],
                               (long long)ran, (long long)pos);
            }
        } else if (n_en == 0) {
            break;
        } else {
            q = vm->enabled[vm->o.interleave ? (int32_t)(next_random(&vm->rng) % (uint64_t)n_en) : 0];
        }
        const ir_task *t = &p->tasks[vm->qtasks[vm->qstart[q] + vm->head[q]]];

        for (int k = 0; k < t->n_inputs; k++) {
            int32_t b = t->inputs[k];
            ir_status s = concrete_box(vm, t, &vm->in_box[t->id][k], b, false, k, lo, hi, err);
            if (s != IR_OK)
                return s;
            if (!vm->buf[b].stamp)
                continue;                  /* weights, constants, inputs: valid from the start */
            /* KV positions below pos persist from earlier launches: axis 0, or axis 1 of a
             * [B, S, nkv, hd] cache */
            int ax = p->buffers[b].rank == 4 ? 1 : 0;
            if (p->buffers[b].kind == IR_KV_CACHE && lo[ax] < pos)
                lo[ax] = pos < hi[ax] ? pos : hi[ax];
            int64_t bad = visit_box(vm, b, lo, hi, elem_written);
            if (bad >= 0) {
                r->outcome = REFVM_UNWRITTEN_READ;
                r->tasks_run = ran;
                r->task = t->id;
                r->buffer = b;
                r->element = bad;
                return set_detail(r, describe_unwritten(vm, t, k, b, bad)) == IR_OK
                           ? IR_OK : ir_fail(err, IR_ERR_NOMEM, "refvm", "out of memory");
            }
        }
        for (int k = 0; k < t->n_outputs; k++) {
            ir_status s = concrete_box(vm, t, &vm->out_box[t->id][k], t->outputs[k], true, k, lo,
                                       hi, err);
            if (s != IR_OK)
                return s;
        }
        op_ctx c = {vm, t, err};
        ir_status s = run_op(&c);
        if (s != IR_OK)
            return s;
        for (int k = 0; k < t->n_outputs; k++) {
            concrete_box(vm, t, &vm->out_box[t->id][k], t->outputs[k], true, k, lo, hi, err);
            visit_box(vm, t->outputs[k], lo, hi, elem_mark);
        }
        vm->counters[t->out_counter]++;
        vm->head[q]++;
        ran++;
    }
    r->tasks_run = ran;
    if (ran < p->n_tasks) {
        r->outcome = REFVM_DEADLOCK;
        return set_detail(r, describe_deadlock(vm, ran)) == IR_OK
                   ? IR_OK : ir_fail(err, IR_ERR_NOMEM, "refvm", "out of memory");
    }
    /* Completeness: every output element must have been written in this step. */
    for (int32_t b = 0; b < p->n_buffers; b++) {
        if (p->buffers[b].kind != IR_IO_OUTPUT)
            continue;
        for (int64_t i = 0; i < vm->buf[b].numel; i++)
            if (!elem_written(vm, b, i)) {
                r->outcome = REFVM_OUTPUT_INCOMPLETE;
                r->buffer = b;
                r->element = i;
                char *s = NULL;
                if (asprintf(&s, "output %s element %lld was not written at pos %lld",
                             p->buffers[b].name, (long long)i, (long long)pos) < 0)
                    s = NULL;
                return set_detail(r, s) == IR_OK
                           ? IR_OK : ir_fail(err, IR_ERR_NOMEM, "refvm", "out of memory");
            }
    }
    r->outcome = REFVM_DONE;
    vm->last_done = true;
    return IR_OK;
}

/* ---------------------------------------------------------------- results */

const float *refvm_logits(const refvm *vm, int64_t *n)
{
    if (!vm->last_done || vm->logits_buf < 0) {
        if (n)
            *n = 0;
        return NULL;
    }
    if (n)
        *n = vm->buf[vm->logits_buf].numel;
    return vm->buf[vm->logits_buf].data;
}

int32_t refvm_next_token(const refvm *vm)
{
    if (!vm->last_done)
        return -1;
    if (vm->next_token_buf >= 0)
        return (int32_t)vm->buf[vm->next_token_buf].data[0];
    int64_t n;
    const float *l = refvm_logits(vm, &n);
    return l ? refvm_argmax(l, n) : -1;
}

const float *refvm_buffer(const refvm *vm, int32_t b, int64_t *n)
{
    ir_error err;
    if (b >= 0 && b < vm->p->n_buffers && vm->buf[b].raw)   /* storage is a cache of the file */
        materialize((refvm *)vm, b, &err);
    if (b < 0 || b >= vm->p->n_buffers || !vm->buf[b].data) {
        if (n)
            *n = 0;
        return NULL;
    }
    if (n)
        *n = vm->buf[b].numel;
    return vm->buf[b].data;
}

int64_t refvm_max_seq(const refvm *vm)
{
    return vm->max_seq;
}

/* Copy persistent state between VMs. See refvm.h. */
ir_status refvm_kv_copy(refvm *dst, const refvm *src, ir_error *err)
{
    const ir_program *dp = dst->p, *sp = src->p;
    char where[64];
    for (int32_t i = 0; i < dp->n_buffers; i++) {
        const ir_buffer *db = &dp->buffers[i];
        if (db->kind != IR_KV_CACHE)
            continue;
        int32_t j = 0;
        while (j < sp->n_buffers &&
               (sp->buffers[j].kind != IR_KV_CACHE || strcmp(sp->buffers[j].name, db->name)))
            j++;
        snprintf(where, sizeof where, "buffers[%d]", i);
        if (j == sp->n_buffers)
            return ir_fail(err, IR_ERR_MALFORMED, where, "KV cache %s has no namesake in the "
                           "source program", db->name);
        const ir_buffer *sb = &sp->buffers[j];
        bool same = sb->rank == db->rank;
        for (int d = 0; same && d < db->rank; d++)
            same = sb->shape[d] == db->shape[d];
        if (!same)
            return ir_fail(err, IR_ERR_MALFORMED, where, "KV cache %s has another shape in the "
                           "source program", db->name);
        memcpy(dst->buf[i].data, src->buf[j].data, (size_t)dst->buf[i].numel * sizeof(float));
    }
    return IR_OK;
}
