/*
 * ir_json_write.c - writes an ir_program as canonical JSON: AMK v0.2.x keys in AMK's order, our
 * extension keys after them, one buffer/counter/task/page per line, reals in the shortest form
 * that reads back to the same double. Reading the output and writing again gives the same bytes.
 */
#include <cjson/cJSON.h>
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ir/amk_ir.h"

typedef struct {
    char *s;
    size_t n, cap;
    bool oom;
} sbuf;

static void sb_reserve(sbuf *b, size_t more)
{
    if (b->oom || b->n + more + 1 <= b->cap)
        return;
    size_t nc = b->cap ? b->cap : 1 << 16;
    while (nc < b->n + more + 1)
        nc *= 2;
    char *ns = realloc(b->s, nc);
    if (!ns) {
        b->oom = true;
        return;
    }
    b->s = ns;
    b->cap = nc;
}

static void sb_put(sbuf *b, const char *s, size_t n)
{
    sb_reserve(b, n);
    if (b->oom)
        return;
    memcpy(b->s + b->n, s, n);
    b->n += n;
    b->s[b->n] = 0;
}

static void sb_str(sbuf *b, const char *s) { sb_put(b, s, strlen(s)); }

static void sb_fmt(sbuf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void sb_fmt(sbuf *b, const char *fmt, ...)
{
    char tmp[128];
    va_list ap;
    va_start(ap, fmt);
    int k = vsnprintf(tmp, sizeof tmp, fmt, ap);
    va_end(ap);
    if (k >= 0 && (size_t)k < sizeof tmp) {
        sb_put(b, tmp, (size_t)k);
        return;
    }
    sb_reserve(b, (size_t)k + 1);
    if (b->oom)
        return;
    va_start(ap, fmt);
    vsnprintf(b->s + b->n, (size_t)k + 1, fmt, ap);
    va_end(ap);
    b->n += (size_t)k;
}

static void sb_int(sbuf *b, int64_t v)
{
    char tmp[24];
    char *e = tmp + sizeof tmp, *q = e;
    uint64_t u = v < 0 ? (uint64_t)0 - (uint64_t)v : (uint64_t)v;
    do {
        *--q = (char)('0' + u % 10);
        u /= 10;
    } while (u);
    if (v < 0)
        *--q = '-';
    sb_put(b, q, (size_t)(e - q));
}

/* Shortest %.Ng that reads back exactly; always with a '.' or exponent so that it stays a real
 * for readers that distinguish ints from floats. */
static void sb_real(sbuf *b, double d)
{
    char tmp[40];
    for (int prec = 1; prec <= 17; prec++) {
        snprintf(tmp, sizeof tmp, "%.*g", prec, d);
        if (strtod(tmp, NULL) == d)
            break;
    }
    /* Prefer positional notation in the everyday range (3350.0, not 3.35e+03). */
    if (strchr(tmp, 'e') && fabs(d) >= 1e-4 && fabs(d) < 1e16) {
        for (int k = 0; k <= 20; k++) {
            snprintf(tmp, sizeof tmp, "%.*f", k, d);
            if (strtod(tmp, NULL) == d)
                break;
        }
    }
    if (!strpbrk(tmp, ".eEn"))
        strcat(tmp, ".0");
    sb_str(b, tmp);
}

static void sb_qstr(sbuf *b, const char *s)
{
    sb_reserve(b, strlen(s) + 2);
    sb_put(b, "\"", 1);
    const char *run = s;
    for (const char *c = s; *c; c++) {
        unsigned char u = (unsigned char)*c;
        if (u >= 0x20 && u != '"' && u != '\\')
            continue;
        sb_put(b, run, (size_t)(c - run));
        switch (u) {
        case '"': sb_str(b, "\\\""); break;
        case '\\': sb_str(b, "\\\\"); break;
        case '\n': sb_str(b, "\\n"); break;
        case '\t': sb_str(b, "\\t"); break;
        case '\r': sb_str(b, "\\r"); break;
        case '\b': sb_str(b, "\\b"); break;
        case '\f': sb_str(b, "\\f"); break;
        default: sb_fmt(b, "\\u%04x", u); break;
        }
        run = c + 1;
    }
    sb_str(b, run);
    sb_put(b, "\"", 1);
}

/* A JSON number from a parsed tree: integral values print as ints, others as reals. */
static void sb_number(sbuf *b, double d)
{
    if (d == floor(d) && fabs(d) < 9007199254740992.0)
        sb_int(b, (int64_t)d);
    else
        sb_real(b, d);
}

/* Compact, deterministic rendering of an arbitrary JSON value (meta, raw params). */
static void sb_tree(sbuf *b, const cJSON *v)
{
    if (cJSON_IsNull(v))
        sb_str(b, "null");
    else if (cJSON_IsTrue(v))
        sb_str(b, "true");
    else if (cJSON_IsFalse(v))
        sb_str(b, "false");
    else if (cJSON_IsNumber(v))
        sb_number(b, v->valuedouble);
    else if (cJSON_IsString(v))
        sb_qstr(b, v->valuestring);
    else if (cJSON_IsArray(v) || cJSON_IsObject(v)) {
        bool obj = cJSON_IsObject(v);
        sb_str(b, obj ? "{" : "[");
        for (const cJSON *c = v->child; c; c = c->next) {
            if (obj) {
                sb_qstr(b, c->string ? c->string : "");
                sb_str(b, ": ");
            }
            sb_tree(b, c);
            if (c->next)
                sb_str(b, ", ");
        }
        sb_str(b, obj ? "}" : "]");
    } else
        sb_str(b, "null");
}

static void sb_raw_json(sbuf *b, const char *text)
{
    cJSON *v = cJSON_Parse(text ? text : "null");
    if (!v) {
        sb_str(b, "null");
        return;
    }
    sb_tree(b, v);
    cJSON_Delete(v);
}

/* ---------------------------------------------------------------- sections */

static void write_target(sbuf *b, const ir_target *t)
{
    sb_str(b, "{\"name\": ");
    sb_qstr(b, t->name);
    sb_str(b, ", \"sm_arch\": "); sb_int(b, t->sm_arch);
    sb_str(b, ", \"num_sms\": "); sb_int(b, t->num_sms);
    sb_str(b, ", \"smem_bytes_per_sm\": "); sb_int(b, t->smem_bytes_per_sm);
    sb_str(b, ", \"smem_bytes_per_block_optin\": "); sb_int(b, t->smem_bytes_per_block_optin);
    sb_str(b, ", \"regs_per_sm\": "); sb_int(b, t->regs_per_sm);
    sb_str(b, ", \"max_threads_per_sm\": "); sb_int(b, t->max_threads_per_sm);
    sb_str(b, ", \"max_regs_per_thread\": "); sb_int(b, t->max_regs_per_thread);
    sb_str(b, ", \"l2_bytes\": "); sb_int(b, t->l2_bytes);
    sb_str(b, ", \"hbm_bytes\": "); sb_int(b, t->hbm_bytes);
    sb_str(b, ", \"hbm_bandwidth_gbs\": "); sb_real(b, t->hbm_bandwidth_gbs);
    sb_str(b, ", \"fp16_tflops\": "); sb_real(b, t->fp16_tflops);
    sb_str(b, ", \"clock_ghz\": "); sb_real(b, t->clock_ghz);
    sb_str(b, ", \"supports_cooperative\": "); sb_str(b, t->supports_cooperative ? "true" : "false");
    sb_str(b, ", \"wddm_tdr\": "); sb_str(b, t->wddm_tdr ? "true" : "false");
    sb_str(b, ", \"measured_bw_gbs\": "); sb_real(b, t->measured_bw_gbs);
    sb_str(b, ", \"note\": "); sb_qstr(b, t->note);
    sb_str(b, ", \"max_threads_per_block\": "); sb_int(b, t->max_threads_per_block);
    sb_str(b, ", \"max_blocks_per_sm\": "); sb_int(b, t->max_blocks_per_sm);
    sb_str(b, ", \"smem_reserved_per_block\": "); sb_int(b, t->smem_reserved_per_block);
    sb_str(b, ", \"reg_alloc_unit\": "); sb_int(b, t->reg_alloc_unit);
    sb_str(b, "}");
}

static void write_ids(sbuf *b, const int32_t *ids, int n)
{
    sb_str(b, "[");
    for (int i = 0; i < n; i++) {
        if (i)
            sb_str(b, ", ");
        sb_int(b, ids[i]);
    }
    sb_str(b, "]");
}

static void write_task(sbuf *b, const ir_task *t)
{
    sb_str(b, "{\"id\": "); sb_int(b, t->id);
    sb_str(b, ", \"op\": \""); sb_str(b, ir_op_name(t->op));
    sb_str(b, "\", \"inputs\": "); write_ids(b, t->inputs, t->n_inputs);
    sb_str(b, ", \"outputs\": "); write_ids(b, t->outputs, t->n_outputs);
    sb_str(b, ", \"out_counter\": "); sb_int(b, t->out_counter);
    sb_str(b, ", \"waits\": [");
    for (int i = 0; i < t->n_waits; i++) {
        if (i)
            sb_str(b, ", ");
        sb_str(b, "{\"counter\": "); sb_int(b, t->waits[i].counter);
        sb_str(b, ", \"threshold\": "); sb_int(b, t->waits[i].threshold);
        sb_str(b, "}");
    }
    sb_str(b, "], \"params\": {");
    bool any_pexpr = false;
    for (int i = 0; i < t->n_params; i++) {
        const ir_param *q = &t->params[i];
        if (i)
            sb_str(b, ", ");
        sb_qstr(b, q->key);
        sb_str(b, ": ");
        if (q->type == IR_PARAM_INT)
            sb_int(b, q->i);
        else if (q->type == IR_PARAM_REAL)
            sb_real(b, q->r);
        else
            sb_raw_json(b, q->raw);
        any_pexpr |= q->has_pexpr;
    }
    sb_str(b, "}, \"sm\": ");
    if (t->sm < 0)
        sb_str(b, "null");
    else
        sb_int(b, t->sm);
    sb_str(b, ", \"est_bytes\": "); sb_int(b, t->est_bytes);
    sb_str(b, ", \"est_flops\": "); sb_int(b, t->est_flops);
    sb_str(b, ", \"label\": "); sb_qstr(b, t->label ? t->label : "");
    if (any_pexpr) {
        sb_str(b, ", \"pos_params\": {");
        bool first = true;
        for (int i = 0; i < t->n_params; i++) {
            const ir_param *q = &t->params[i];
            if (!q->has_pexpr)
                continue;
            if (!first)
                sb_str(b, ", ");
            first = false;
            sb_qstr(b, q->key);
            sb_str(b, ": [");
            sb_int(b, q->pexpr.mul); sb_str(b, ", ");
            sb_int(b, q->pexpr.add); sb_str(b, ", ");
            sb_int(b, q->pexpr.lo); sb_str(b, ", ");
            sb_int(b, q->pexpr.hi); sb_str(b, "]");
        }
        sb_str(b, "}");
    }
    sb_str(b, "}");
}

static void write_config(sbuf *b, const ir_config *c)
{
    static const char *const SM[] = {"load_balance", "round_robin"};
    static const char *const PG[] = {"graph_color", "linear", "none"};
    sb_str(b, "{\"tiling\": {");
    /* Group entries by op in first-appearance order. */
    bool first_op = true;
    for (int i = 0; i < c->n_tiling; i++) {
        bool seen = false;
        for (int k = 0; k < i; k++)
            if (!strcmp(c->tiling[k].op, c->tiling[i].op))
                seen = true;
        if (seen)
            continue;
        if (!first_op)
            sb_str(b, ", ");
        first_op = false;
        sb_qstr(b, c->tiling[i].op);
        sb_str(b, ": {");
        bool first = true;
        for (int k = i; k < c->n_tiling; k++) {
            if (strcmp(c->tiling[k].op, c->tiling[i].op))
                continue;
            if (!first)
                sb_str(b, ", ");
            first = false;
            sb_qstr(b, c->tiling[k].key);
            sb_str(b, ": ");
            sb_int(b, c->tiling[k].value);
        }
        sb_str(b, "}");
    }
    sb_str(b, "}, \"fusion_grouping\": [");
    for (int i = 0; i < c->n_groups; i++) {
        if (i)
            sb_str(b, ", ");
        sb_str(b, "[");
        for (int j = 0; j < c->groups[i].n; j++) {
            if (j)
                sb_str(b, ", ");
            sb_qstr(b, c->groups[i].names[j]);
        }
        sb_str(b, "]");
    }
    sb_str(b, "], \"sm_assignment\": ");
    if (c->sm_policy == IR_SM_EXPLICIT) {
        sb_str(b, "{");
        for (int i = 0; i < c->n_explicit; i++) {
            if (i)
                sb_str(b, ", ");
            sb_fmt(b, "\"%d\": ", c->explicit_task[i]);
            sb_int(b, c->explicit_queue[i]);
        }
        sb_str(b, "}");
    } else {
        sb_fmt(b, "\"%s\"", SM[c->sm_policy == IR_SM_ROUND_ROBIN]);
    }
    sb_str(b, ", \"pipelining_depth\": "); sb_int(b, c->pipelining_depth);
    sb_fmt(b, ", \"page_allocation\": \"%s\"", PG[(unsigned)c->page_policy < 3 ? c->page_policy : 0]);
    sb_str(b, ", \"threads_per_block\": "); sb_int(b, c->threads_per_block);
    sb_str(b, ", \"smem_bytes_per_block\": "); sb_int(b, c->smem_bytes_per_block);
    sb_str(b, "}");
}

static void write_program(sbuf *b, const ir_program *p)
{
    sb_str(b, "{\n  \"ir_version\": ");
    sb_qstr(b, p->ir_version);
    sb_str(b, ",\n  \"abi_version\": ");
    sb_qstr(b, p->abi_version);
    sb_str(b, ",\n  \"meta\": ");
    sb_raw_json(b, p->meta_json ? p->meta_json : "{}");
    sb_str(b, ",\n  \"target\": ");
    if (p->has_target)
        write_target(b, &p->target);
    else
        sb_str(b, "null");
    sb_str(b, ",\n  \"buffers\": [");
    for (int i = 0; i < p->n_buffers; i++) {
        const ir_buffer *x = &p->buffers[i];
        sb_str(b, i ? ",\n    " : "\n    ");
        sb_str(b, "{\"id\": "); sb_int(b, x->id);
        sb_str(b, ", \"name\": "); sb_qstr(b, x->name ? x->name : "");
        sb_fmt(b, ", \"kind\": \"%s\", \"dtype\": \"%s\", \"shape\": [", ir_kind_name(x->kind),
               ir_dtype_name(x->dtype));
        for (int j = 0; j < x->rank; j++) {
            if (j)
                sb_str(b, ", ");
            sb_int(b, x->shape[j]);
        }
        sb_fmt(b, "], \"space\": \"%s\", \"source\": ", ir_space_name(x->space));
        if (x->source)
            sb_qstr(b, x->source);
        else
            sb_str(b, "null");
        sb_str(b, "}");
    }
    sb_str(b, p->n_buffers ? "\n  ],\n  \"counters\": [" : "],\n  \"counters\": [");
    for (int i = 0; i < p->n_counters; i++) {
        const ir_counter *c = &p->counters[i];
        sb_str(b, i ? ",\n    " : "\n    ");
        sb_str(b, "{\"id\": "); sb_int(b, c->id);
        sb_str(b, ", \"init\": "); sb_int(b, c->init);
        sb_str(b, ", \"note\": "); sb_qstr(b, c->note ? c->note : "");
        sb_str(b, "}");
    }
    sb_str(b, p->n_counters ? "\n  ],\n  \"tasks\": [" : "],\n  \"tasks\": [");
    for (int i = 0; i < p->n_tasks; i++) {
        sb_str(b, i ? ",\n    " : "\n    ");
        write_task(b, &p->tasks[i]);
    }
    sb_str(b, p->n_tasks ? "\n  ],\n  \"pages\": " : "],\n  \"pages\": ");
    if (p->has_pages) {
        const ir_pages *pg = &p->pages;
        sb_str(b, "{\"buffer_to_page\": {");
        for (int i = 0; i < pg->n_map; i++) {
            if (i)
                sb_str(b, ", ");
            sb_fmt(b, "\"%d\": ", pg->map_buffer[i]);
            sb_int(b, pg->map_page[i]);
        }
        sb_str(b, "}, \"pages\": [");
        for (int i = 0; i < pg->n_pages; i++) {
            const ir_page *x = &pg->pages[i];
            sb_str(b, i ? ",\n    " : "\n    ");
            sb_str(b, "{\"id\": "); sb_int(b, x->id);
            sb_fmt(b, ", \"space\": \"%s\", \"nbytes\": ", ir_space_name(x->space));
            sb_int(b, x->nbytes);
            sb_str(b, ", \"live_start\": "); sb_int(b, x->live_start);
            sb_str(b, ", \"live_end\": "); sb_int(b, x->live_end);
            sb_str(b, "}");
        }
        sb_str(b, pg->n_pages ? "\n  ]}" : "]}");
    } else {
        sb_str(b, "null");
    }
    sb_str(b, ",\n  \"config\": ");
    if (p->has_config)
        write_config(b, &p->config);
    else
        sb_str(b, "null");
    if (p->has_decode) {
        sb_str(b, ",\n  \"decode\": {\"pos\": "); sb_int(b, p->decode.pos);
        sb_str(b, ", \"max_seq\": "); sb_int(b, p->decode.max_seq);
        sb_str(b, "}");
    }
    if (p->has_plan) {
        const ir_plan *pl = &p->plan;
        sb_str(b, ",\n  \"launch_plan\": {\"grid\": "); sb_int(b, pl->grid);
        sb_str(b, ", \"threads_per_block\": "); sb_int(b, pl->threads_per_block);
        sb_str(b, ", \"dynamic_smem_bytes\": "); sb_int(b, pl->dynamic_smem_bytes);
        sb_str(b, ", \"static_smem_bytes\": "); sb_int(b, pl->static_smem_bytes);
        sb_str(b, ", \"regs_per_thread\": "); sb_int(b, pl->regs_per_thread);
        sb_str(b, ", \"pipelining_depth\": "); sb_int(b, pl->pipelining_depth);
        sb_str(b, ", \"queues\": [");
        for (int64_t q = 0; q < pl->grid; q++) {
            sb_str(b, q ? ",\n    " : "\n    ");
            write_ids(b, pl->queue_tasks + pl->queue_start[q],
                      pl->queue_start[q + 1] - pl->queue_start[q]);
        }
        sb_str(b, pl->grid ? "\n  ]}" : "]}");
    }
    sb_str(b, "\n}\n");
}

ir_status ir_write_json(const ir_program *p, char **out, size_t *len, ir_error *err)
{
    sbuf b = {0};
    sb_reserve(&b, (size_t)p->n_tasks * 256 + 4096);
    write_program(&b, p);
    if (b.oom) {
        free(b.s);
        return ir_fail(err, IR_ERR_NOMEM, "", "out of memory while writing JSON");
    }
    *out = b.s;
    if (len)
        *len = b.n;
    return IR_OK;
}

ir_status ir_config_write_json(const ir_config *c, char **out, size_t *len, ir_error *err)
{
    sbuf b = {0};
    write_config(&b, c);
    if (b.oom) {
        free(b.s);
        return ir_fail(err, IR_ERR_NOMEM, "", "out of memory while writing JSON");
    }
    *out = b.s;
    if (len)
        *len = b.n;
    return IR_OK;
}

ir_status ir_write_file(const ir_program *p, const char *path, ir_error *err)
{
    char *s;
    size_t n;
    ir_status st = ir_write_json(p, &s, &n, err);
    if (st != IR_OK)
        return st;
    st = ir_out_write(path, s, n, err);
    free(s);
    return st;
}
