/*
 * ir_core.c - the IR's plain data: enum names, errors, position expressions, construction and
 * destruction of programs, params, configs and plans, and the op table.
 */
#include <cjson/cJSON.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/base.h"
#include "ir/amk_ir.h"

/* ---------------------------------------------------------------- errors */

ir_status ir_fail(ir_error *err, ir_status status, const char *where, const char *fmt, ...)
{
    if (!err)
        return status;
    err->status = status;
    snprintf(err->where, sizeof err->where, "%s", where ? where : "");
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err->why, sizeof err->why, fmt, ap);
    va_end(ap);
    return status;
}

const char *ir_status_name(ir_status s)
{
    switch (s) {
    case IR_OK: return "OK";
    case IR_ERR_MALFORMED: return "MALFORMED";
    case IR_ERR_IO: return "IO";
    case IR_ERR_NOMEM: return "NOMEM";
    case IR_ERR_UNSUPPORTED: return "UNSUPPORTED";
    }
    return "?";
}

/* ---------------------------------------------------------------- enum names */

static const char *const DTYPE_NAMES[IR_DTYPE_COUNT] = {
    "F32", "F16", "BF16", "F8E4M3", "F8E5M2", "I32", "I8", "I4", "U8", "BOOL"};
static const int DTYPE_BITS[IR_DTYPE_COUNT] = {32, 16, 16, 8, 8, 32, 8, 4, 8, 8};
static const char *const SPACE_NAMES[IR_SPACE_COUNT] = {"HBM", "GLOBAL_SCRATCH", "SMEM", "REGISTER"};
static const char *const KIND_NAMES[IR_KIND_COUNT] = {
    "WEIGHT", "ACTIVATION", "KV_CACHE", "IO_INPUT", "IO_OUTPUT", "CONST"};
static const char *const OP_NAMES[IR_OP_COUNT] = {
    "NOP", "COPY", "EMBED", "RMSNORM", "LAYERNORM", "GEMV_TILE", "GEMM_TILE", "ATTENTION_TILE",
    "ROPE", "SILU_MUL", "GELU", "ADD", "MUL", "DEQUANT", "SOFTMAX", "ALLREDUCE_SHARD",
    "KV_APPEND", "SAMPLE_ARGMAX", "ATTENTION_COMBINE", "FUSED"};

static bool parse_name(const char *s, const char *const *names, int n, int *out)
{
    if (!s)
        return false;
    for (int i = 0; i < n; i++)
        if (!strcmp(s, names[i])) {
            *out = i;
            return true;
        }
    return false;
}

const char *ir_dtype_name(ir_dtype d) { return (unsigned)d < IR_DTYPE_COUNT ? DTYPE_NAMES[d] : "?"; }
const char *ir_space_name(ir_space s) { return (unsigned)s < IR_SPACE_COUNT ? SPACE_NAMES[s] : "?"; }
const char *ir_kind_name(ir_kind k) { return (unsigned)k < IR_KIND_COUNT ? KIND_NAMES[k] : "?"; }
const char *ir_op_name(ir_op op) { return (unsigned)op < IR_OP_COUNT ? OP_NAMES[op] : "?"; }

bool ir_dtype_parse(const char *s, ir_dtype *out)
{
    int v;
    if (!parse_name(s, DTYPE_NAMES, IR_DTYPE_COUNT, &v))
        return false;
    *out = (ir_dtype)v;
    return true;
}
bool ir_space_parse(const char *s, ir_space *out)
{
    int v;
    if (!parse_name(s, SPACE_NAMES, IR_SPACE_COUNT, &v))
        return false;
    *out = (ir_space)v;
    return true;
}
bool ir_kind_parse(const char *s, ir_kind *out)
{
    int v;
    if (!parse_name(s, KIND_NAMES, IR_KIND_COUNT, &v))
        return false;
    *out = (ir_kind)v;
    return true;
}
bool ir_op_parse(const char *s, ir_op *out)
{
    int v;
    if (!parse_name(s, OP_NAMES, IR_OP_COUNT, &v))
        return false;
    *out = (ir_op)v;
    return true;
}

int ir_dtype_bits(ir_dtype d) { return (unsigned)d < IR_DTYPE_COUNT ? DTYPE_BITS[d] : 0; }

int64_t ir_dtype_nbytes(ir_dtype d, int64_t n) { return (n * ir_dtype_bits(d) + 7) / 8; }

bool ir_kind_is_readonly(ir_kind k) { return k == IR_WEIGHT || k == IR_CONST || k == IR_IO_INPUT; }

/* ---------------------------------------------------------------- position expressions */

ir_pexpr ir_pexpr_const(int64_t c) { return (ir_pexpr){0, c, INT64_MIN, INT64_MAX}; }

int64_t ir_pexpr_eval(ir_pexpr e, int64_t pos)
{
    /* Saturating so that hostile coefficients cannot overflow. */
    __int128 v = (__int128)e.mul * pos + e.add;
    if (v < e.lo)
        v = e.lo;
    if (v > e.hi)
        v = e.hi;
    return (int64_t)v;
}

bool ir_pexpr_is_const(ir_pexpr e) { return e.mul == 0; }

/* ---------------------------------------------------------------- program construction */

ir_program *ir_program_new(void)
{
    ir_program *p = calloc(1, sizeof *p);
    if (!p)
        return NULL;
    snprintf(p->ir_version, sizeof p->ir_version, "%s", AMK_IR_VERSION);
    snprintf(p->abi_version, sizeof p->abi_version, "%s", AMK_ABI_VERSION);
    p->meta_json = strdup("{}");
    if (!p->meta_json) {
        free(p);
        return NULL;
    }
    return p;
}

void ir_config_free(ir_config *c)
{
    if (!c)
        return;
    free(c->tiling);
    for (int i = 0; i < c->n_groups; i++)
        free(c->groups[i].names);
    free(c->groups);
    free(c->explicit_task);
    free(c->explicit_queue);
    c->tiling = NULL;
    c->groups = NULL;
    c->explicit_task = c->explicit_queue = NULL;
    c->n_tiling = c->n_groups = c->n_explicit = 0;
}

void ir_plan_free(ir_plan *plan)
{
    if (!plan)
        return;
    free(plan->queue_start);
    free(plan->queue_tasks);
    plan->queue_start = plan->queue_tasks = NULL;
}

static void free_task(ir_task *t)
{
    for (int i = 0; i < t->n_params; i++)
        free(t->params[i].raw);
    free(t->params);
    free(t->label);
}

void ir_program_free(ir_program *p)
{
    if (!p)
        return;
    free(p->meta_json);
    for (int i = 0; i < p->n_buffers; i++) {
        free(p->buffers[i].name);
        free(p->buffers[i].source);
    }
    free(p->buffers);
    for (int i = 0; i < p->n_counters; i++)
        free(p->counters[i].note);
    free(p->counters);
    for (int i = 0; i < p->n_tasks; i++)
        free_task(&p->tasks[i]);
    free(p->tasks);
    free(p->pages.map_buffer);
    free(p->pages.map_page);
    free(p->pages.pages);
    ir_config_free(&p->config);
    ir_plan_free(&p->plan);
    for (int i = 0; i < p->warnings.n; i++)
        free(p->warnings.items[i]);
    free(p->warnings.items);
    free(p);
}

/* Grow *arr (of *cap elements of size sz) to hold at least need elements. */
static bool grow(void **arr, int *cap, int need, size_t sz)
{
    if (need <= *cap)
        return true;
    int nc = *cap ? *cap : 16;
    while (nc < need) {
        if (nc > (1 << 29))
            return false;
        nc *= 2;
    }
    void *n = realloc(*arr, (size_t)nc * sz);
    if (!n)
        return false;
    *arr = n;
    *cap = nc;
    return true;
}

int32_t ir_add_buffer(ir_program *p, const char *name, ir_kind kind, ir_dtype dtype, int rank,
                      const int64_t *shape, ir_space space, const char *source)
{
    if (rank < 0 || rank > IR_MAX_RANK)
        return -1;
    if (!grow((void **)&p->buffers, &p->cap_buffers, p->n_buffers + 1, sizeof *p->buffers))
        return -1;
    ir_buffer *b = &p->buffers[p->n_buffers];
    memset(b, 0, sizeof *b);
    b->id = p->n_buffers;
    b->name = strdup(name ? name : "");
    b->source = source ? strdup(source) : NULL;
    if (!b->name || (source && !b->source)) {
        free(b->name);
        free(b->source);
        return -1;
    }
    b->kind = kind;
    b->dtype = dtype;
    b->rank = rank;
    for (int i = 0; i < rank; i++)
        b->shape[i] = shape[i];
    b->space = space;
    return p->n_buffers++;
}

int32_t ir_add_counter(ir_program *p, const char *note)
{
    if (!grow((void **)&p->counters, &p->cap_counters, p->n_counters + 1, sizeof *p->counters))
        return -1;
    ir_counter *c = &p->counters[p->n_counters];
    c->id = p->n_counters;
    c->init = 0;
    c->note = strdup(note ? note : "");
    if (!c->note)
        return -1;
    return p->n_counters++;
}

ir_task *ir_add_task(ir_program *p, ir_op op, int32_t out_counter, const char *label)
{
    if (!grow((void **)&p->tasks, &p->cap_tasks, p->n_tasks + 1, sizeof *p->tasks))
        return NULL;
    ir_task *t = &p->tasks[p->n_tasks];
    memset(t, 0, sizeof *t);
    t->id = p->n_tasks;
    t->op = op;
    t->out_counter = out_counter;
    t->sm = -1;
    t->label = strdup(label ? label : "");
    if (!t->label)
        return NULL;
    p->n_tasks++;
    return t;
}

ir_status ir_task_add_input(ir_task *t, int32_t buffer)
{
    if (t->n_inputs >= IR_MAX_INPUTS)
        return IR_ERR_MALFORMED;
    t->inputs[t->n_inputs++] = buffer;
    return IR_OK;
}

ir_status ir_task_add_output(ir_task *t, int32_t buffer)
{
    if (t->n_outputs >= IR_MAX_OUTPUTS)
        return IR_ERR_MALFORMED;
    t->outputs[t->n_outputs++] = buffer;
    return IR_OK;
}

ir_status ir_task_add_wait(ir_task *t, int32_t counter, int64_t threshold)
{
    if (t->n_waits >= IR_MAX_WAITS)
        return IR_ERR_MALFORMED;
    t->waits[t->n_waits++] = (ir_wait){counter, threshold};
    return IR_OK;
}

/* The param slot for key: the existing one, or a new zeroed one; NULL on failure. */
static ir_param *param_slot(ir_task *t, const char *key)
{
    if (strlen(key) >= IR_MAX_NAME)
        return NULL;
    for (int i = 0; i < t->n_params; i++)
        if (!strcmp(t->params[i].key, key)) {
            free(t->params[i].raw);
            t->params[i].raw = NULL;
            return &t->params[i];
        }
    if (t->n_params >= IR_MAX_PARAMS)
        return NULL;
    ir_param *n = realloc(t->params, (size_t)(t->n_params + 1) * sizeof *n);
    if (!n)
        return NULL;
    t->params = n;
    ir_param *q = &t->params[t->n_params++];
    memset(q, 0, sizeof *q);
    snprintf(q->key, sizeof q->key, "%s", key);
    return q;
}

ir_status ir_task_set_int(ir_task *t, const char *key, int64_t v)
{
    ir_param *q = param_slot(t, key);
    if (!q)
        return IR_ERR_MALFORMED;
    q->type = IR_PARAM_INT;
    q->i = v;
    q->r = (double)v;
    q->has_pexpr = false;
    return IR_OK;
}

ir_status ir_task_set_real(ir_task *t, const char *key, double v)
{
    ir_param *q = param_slot(t, key);
    if (!q)
        return IR_ERR_MALFORMED;
    q->type = IR_PARAM_REAL;
    q->r = v;
    q->i = 0;
    q->has_pexpr = false;
    return IR_OK;
}

ir_status ir_task_set_pexpr(ir_task *t, const char *key, ir_pexpr e, int64_t pos)
{
    ir_status s = ir_task_set_int(t, key, ir_pexpr_eval(e, pos));
    if (s != IR_OK)
        return s;
    ir_param *q = (ir_param *)ir_task_param(t, key);
    q->has_pexpr = true;
    q->pexpr = e;
    return IR_OK;
}

const ir_param *ir_task_param(const ir_task *t, const char *key)
{
    for (int i = 0; i < t->n_params; i++)
        if (!strcmp(t->params[i].key, key))
            return &t->params[i];
    return NULL;
}

bool ir_task_int(const ir_task *t, const char *key, int64_t *out)
{
    const ir_param *q = ir_task_param(t, key);
    if (!q || q->type != IR_PARAM_INT)
        return false;
    *out = q->i;
    return true;
}

bool ir_task_real(const ir_task *t, const char *key, double *out)
{
    const ir_param *q = ir_task_param(t, key);
    if (!q || q->type == IR_PARAM_RAW)
        return false;
    *out = q->type == IR_PARAM_INT ? (double)q->i : q->r;
    return true;
}

bool ir_task_pexpr(const ir_task *t, const char *key, ir_pexpr *out)
{
    const ir_param *q = ir_task_param(t, key);
    if (!q || q->type != IR_PARAM_INT)
        return false;
    *out = q->has_pexpr ? q->pexpr : ir_pexpr_const(q->i);
    return true;
}

ir_status ir_warn(ir_warnings *w, const char *fmt, ...)
{
    char buf[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    /* Capacity doubles (8, 16, 32, ...; full exactly when n is such a power of two) so that
       a file with many unknown keys does not cost one copy of the list per warning. */
    if (w->n == 0 || (w->n >= 8 && (w->n & (w->n - 1)) == 0)) {
        char **n = realloc(w->items, (size_t)(w->n ? 2 * w->n : 8) * sizeof *n);
        if (!n)
            return IR_ERR_NOMEM;
        w->items = n;
    }
    w->items[w->n] = strdup(buf);
    if (!w->items[w->n])
        return IR_ERR_NOMEM;
    w->n++;
    return IR_OK;
}

int64_t ir_buffer_numel(const ir_buffer *b)
{
    int64_t n = 1;
    for (int i = 0; i < b->rank; i++)
        n *= b->shape[i];
    return n;
}

int64_t ir_buffer_nbytes(const ir_buffer *b) { return ir_dtype_nbytes(b->dtype, ir_buffer_numel(b)); }

int64_t ir_weight_bytes(const ir_program *p)
{
    int64_t s = 0;
    for (int i = 0; i < p->n_buffers; i++)
        if (p->buffers[i].kind == IR_WEIGHT)
            s += ir_buffer_nbytes(&p->buffers[i]);
    return s;
}

int32_t ir_find_io(const ir_program *p, ir_kind kind, ir_dtype dtype, const char *name)
{
    int32_t found = -1;
    for (int32_t i = 0; i < p->n_buffers; i++) {
        const ir_buffer *b = &p->buffers[i];
        if (b->kind != kind || b->dtype != dtype)
            continue;
        if (!strcmp(b->name, name))
            return i;
        if (found < 0)
            found = i;
    }
    return found;
}

/* ---------------------------------------------------------------- config and plan */

void ir_config_default(ir_config *c)
{
    memset(c, 0, sizeof *c);
    c->sm_policy = IR_SM_LOAD_BALANCE;
    c->pipelining_depth = 2;
    c->page_policy = IR_PAGES_GRAPH_COLOR;
    c->threads_per_block = 256;
    c->smem_bytes_per_block = 0;
}

bool ir_config_tiling(const ir_config *c, const char *op, const char *key, int64_t *out)
{
    for (int i = 0; i < c->n_tiling; i++)
        if (!strcmp(c->tiling[i].op, op) && !strcmp(c->tiling[i].key, key)) {
            *out = c->tiling[i].value;
            return true;
        }
    return false;
}

ir_status ir_plan_alloc(ir_plan *plan, int64_t grid, int64_t n_entries)
{
    if (grid < 0 || grid > BASE_MAX_GRID || n_entries < 0 || n_entries > (1LL << 30))
        return IR_ERR_MALFORMED;
    plan->queue_start = calloc((size_t)grid + 1, sizeof *plan->queue_start);
    plan->queue_tasks = calloc((size_t)n_entries + 1, sizeof *plan->queue_tasks);
    if (!plan->queue_start || !plan->queue_tasks) {
        ir_plan_free(plan);
        return IR_ERR_NOMEM;
    }
    plan->grid = grid;
    return IR_OK;
}

/* ---------------------------------------------------------------- op table */

static const ir_op_info OP_TABLE[IR_OP_COUNT] = {
    {IR_OP_NOP, 0, 0, 0, 0, {NULL}},
    {IR_OP_COPY, 1, 1, 1, 1, {NULL}},
    {IR_OP_EMBED, 2, 2, 1, 1, {"hidden", NULL}},
    {IR_OP_RMSNORM, 2, 2, 1, 1, {"eps", "hidden", NULL}},
    {IR_OP_LAYERNORM, 2, 3, 1, 1, {"eps", "hidden", NULL}},
    {IR_OP_GEMV_TILE, 2, 4, 1, 1, {"K", "N_tile", "n_off", NULL}},
    {IR_OP_GEMM_TILE, 2, 3, 1, 1, {"M_tile", "K", "N_tile", "n_off", NULL}},
    {IR_OP_ATTENTION_TILE, 3, 4, 1, 1,
     {"head_dim", "kv_start", "kv_len", "scale", "n_heads", "n_kv_heads", NULL}},
    {IR_OP_ROPE, 1, 2, 1, 1, {"head_dim", "theta", NULL}},
    {IR_OP_SILU_MUL, 2, 2, 1, 1, {NULL}},
    {IR_OP_GELU, 1, 1, 1, 1, {NULL}},
    {IR_OP_ADD, 2, 2, 1, 1, {NULL}},
    {IR_OP_MUL, 1, 2, 1, 1, {NULL}},
    {IR_OP_DEQUANT, 2, 3, 1, 1, {"qdtype", "group", NULL}},
    {IR_OP_SOFTMAX, 1, 1, 1, 1, {NULL}},
    {IR_OP_ALLREDUCE_SHARD, 1, 8, 1, 1, {NULL}},
    {IR_OP_KV_APPEND, 1, 2, 1, 1, {"pos", NULL}},
    {IR_OP_SAMPLE_ARGMAX, 1, 1, 1, 1, {NULL}},
    {IR_OP_ATTENTION_COMBINE, 1, 8, 1, 1, {NULL}},
    {IR_OP_FUSED, 1, -1, 1, IR_MAX_OUTPUTS, {"recipe", NULL}},
};

const ir_op_info *ir_op_spec(ir_op op) { return (unsigned)op < IR_OP_COUNT ? &OP_TABLE[op] : NULL; }

bool ir_meta_int(const ir_program *p, const char *key, int64_t *out)
{
    cJSON *m = p->meta_json ? cJSON_Parse(p->meta_json) : NULL;
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(m, key);
    bool ok = cJSON_IsNumber(v) && v->valuedouble == floor(v->valuedouble) &&
              fabs(v->valuedouble) < 9007199254740992.0;
    if (ok)
        *out = (int64_t)v->valuedouble;
    cJSON_Delete(m);
    return ok;
}
