/*
 * ir_json_write.c - writes an ir_program as canonical JSON: AMK v0.2.x keys in AMK's order, our
 * extension keys after them, one buffer/counter/task/page per line, reals in the shortest form
 * that reads back to the same double. Reading the output and writing again gives the same bytes.
 */
#include <cjson/cJSON.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/base.h"
#include "ir/amk_ir.h"

static void sb_int(base_sb *b, int64_t v)
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
    base_sb_put(b, q, (size_t)(e - q));
}

/* Shortest %.Ng that reads back exactly; always with a '.' or exponent so that it stays a real
 * for readers that distinguish ints from floats. */
static void sb_real(base_sb *b, double d)
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
    base_sb_str(b, tmp);
}

static void sb_qstr(base_sb *b, const char *s)
{
    base_sb_put(b, "\"", 1);
    const char *run = s;
    for (const char *c = s; *c; c++) {
        unsigned char u = (unsigned char)*c;
        if (u >= 0x20 && u != '"' && u != '\\')
            continue;
        base_sb_put(b, run, (size_t)(c - run));
        switch (u) {
        case '"': base_sb_str(b, "\\\""); break;
        case '\\': base_sb_str(b, "\\\\"); break;
        case '\n': base_sb_str(b, "\\n"); break;
        case '\t': base_sb_str(b, "\\t"); break;
        case '\r': base_sb_str(b, "\\r"); break;
        case '\b': base_sb_str(b, "\\b"); break;
        case '\f': base_sb_str(b, "\\f"); break;
        default: base_sb_fmt(b, "\\u%04x", u); break;
        }
        run = c + 1;
    }
    base_sb_str(b, run);
    base_sb_put(b, "\"", 1);
}

/* A JSON number from a parsed tree: integral values print as ints, others as reals. */
static void sb_number(base_sb *b, double d)
{
    if (d == floor(d) && fabs(d) < 9007199254740992.0)
        sb_int(b, (int64_t)d);
    else
        sb_real(b, d);
}

/* Compact, deterministic rendering of an arbitrary JSON value (meta, raw params). */
static void sb_tree(base_sb *b, const cJSON *v)
{
    if (cJSON_IsNull(v))
        base_sb_str(b, "null");
    else if (cJSON_IsTrue(v))
        base_sb_str(b, "true");
    else if (cJSON_IsFalse(v))
        base_sb_str(b, "false");
    else if (cJSON_IsNumber(v))
        sb_number(b, v->valuedouble);
    else if (cJSON_IsString(v))
        sb_qstr(b, v->valuestring);
    else if (cJSON_IsArray(v) || cJSON_IsObject(v)) {
        bool obj = cJSON_IsObject(v);
        base_sb_str(b, obj ? "{" : "[");
        for (const cJSON *c = v->child; c; c = c->next) {
            if (obj) {
                sb_qstr(b, c->string ? c->string : "");
                base_sb_str(b, ": ");
            }
            sb_tree(b, c);
            if (c->next)
                base_sb_str(b, ", ");
        }
        base_sb_str(b, obj ? "}" : "]");
    } else
        base_sb_str(b, "null");
}

static void sb_raw_json(base_sb *b, const char *text)
{
    cJSON *v = cJSON_Parse(text ? text : "null");
    if (!v) {
        base_sb_str(b, "null");
        return;
    }
    sb_tree(b, v);
    cJSON_Delete(v);
}

/* ---------------------------------------------------------------- sections */

static void write_target(base_sb *b, const ir_target *t)
{
    base_sb_str(b, "{\"name\": ");
    sb_qstr(b, t->name);
    base_sb_str(b, ", \"sm_arch\": "); sb_int(b, t->sm_arch);
    base_sb_str(b, ", \"num_sms\": "); sb_int(b, t->num_sms);
    base_sb_str(b, ", \"smem_bytes_per_sm\": "); sb_int(b, t->smem_bytes_per_sm);
    base_sb_str(b, ", \"smem_bytes_per_block_optin\": "); sb_int(b, t->smem_bytes_per_block_optin);
    base_sb_str(b, ", \"regs_per_sm\": "); sb_int(b, t->regs_per_sm);
    base_sb_str(b, ", \"max_threads_per_sm\": "); sb_int(b, t->max_threads_per_sm);
    base_sb_str(b, ", \"max_regs_per_thread\": "); sb_int(b, t->max_regs_per_thread);
    base_sb_str(b, ", \"l2_bytes\": "); sb_int(b, t->l2_bytes);
    base_sb_str(b, ", \"hbm_bytes\": "); sb_int(b, t->hbm_bytes);
    base_sb_str(b, ", \"hbm_bandwidth_gbs\": "); sb_real(b, t->hbm_bandwidth_gbs);
    base_sb_str(b, ", \"fp16_tflops\": "); sb_real(b, t->fp16_tflops);
    base_sb_str(b, ", \"clock_ghz\": "); sb_real(b, t->clock_ghz);
    base_sb_str(b, ", \"supports_cooperative\": "); base_sb_str(b, t->supports_cooperative ? "true" : "false");
    base_sb_str(b, ", \"wddm_tdr\": "); base_sb_str(b, t->wddm_tdr ? "true" : "false");
    base_sb_str(b, ", \"measured_bw_gbs\": "); sb_real(b, t->measured_bw_gbs);
    base_sb_str(b, ", \"note\": "); sb_qstr(b, t->note);
    base_sb_str(b, ", \"max_threads_per_block\": "); sb_int(b, t->max_threads_per_block);
    base_sb_str(b, ", \"max_blocks_per_sm\": "); sb_int(b, t->max_blocks_per_sm);
    base_sb_str(b, ", \"smem_reserved_per_block\": "); sb_int(b, t->smem_reserved_per_block);
    base_sb_str(b, ", \"reg_alloc_unit\": "); sb_int(b, t->reg_alloc_unit);
    base_sb_str(b, "}");
}

static void write_ids(base_sb *b, const int32_t *ids, int n)
{
    base_sb_str(b, "[");
    for (int i = 0; i < n; i++) {
        if (i)
            base_sb_str(b, ", ");
        sb_int(b, ids[i]);
    }
    base_sb_str(b, "]");
}

static void write_task(base_sb *b, const ir_task *t)
{
    base_sb_str(b, "{\"id\": "); sb_int(b, t->id);
    base_sb_str(b, ", \"op\": \""); base_sb_str(b, ir_op_name(t->op));
    base_sb_str(b, "\", \"inputs\": "); write_ids(b, t->inputs, t->n_inputs);
    base_sb_str(b, ", \"outputs\": "); write_ids(b, t->outputs, t->n_outputs);
    base_sb_str(b, ", \"out_counter\": "); sb_int(b, t->out_counter);
    base_sb_str(b, ", \"waits\": [");
    for (int i = 0; i < t->n_waits; i++) {
        if (i)
            base_sb_str(b, ", ");
        base_sb_str(b, "{\"counter\": "); sb_int(b, t->waits[i].counter);
        base_sb_str(b, ", \"threshold\": "); sb_int(b, t->waits[i].threshold);
        base_sb_str(b, "}");
    }
    base_sb_str(b, "], \"params\": {");
    bool any_pexpr = false;
    for (int i = 0; i < t->n_params; i++) {
        const ir_param *q = &t->params[i];
        if (i)
            base_sb_str(b, ", ");
        sb_qstr(b, q->key);
        base_sb_str(b, ": ");
        if (q->type == IR_PARAM_INT)
            sb_int(b, q->i);
        else if (q->type == IR_PARAM_REAL)
            sb_real(b, q->r);
        else
            sb_raw_json(b, q->raw);
        any_pexpr |= q->has_pexpr;
    }
    base_sb_str(b, "}, \"sm\": ");
    if (t->sm < 0)
        base_sb_str(b, "null");
    else
        sb_int(b, t->sm);
    base_sb_str(b, ", \"est_bytes\": "); sb_int(b, t->est_bytes);
    base_sb_str(b, ", \"est_flops\": "); sb_int(b, t->est_flops);
    base_sb_str(b, ", \"label\": "); sb_qstr(b, t->label ? t->label : "");
    if (any_pexpr) {
        base_sb_str(b, ", \"pos_params\": {");
        bool first = true;
        for (int i = 0; i < t->n_params; i++) {
            const ir_param *q = &t->params[i];
            if (!q->has_pexpr)
                continue;
            if (!first)
                base_sb_str(b, ", ");
            first = false;
            sb_qstr(b, q->key);
            base_sb_str(b, ": [");
            sb_int(b, q->pexpr.mul); base_sb_str(b, ", ");
            sb_int(b, q->pexpr.add); base_sb_str(b, ", ");
            sb_int(b, q->pexpr.lo); base_sb_str(b, ", ");
            sb_int(b, q->pexpr.hi); base_sb_str(b, "]");
        }
        base_sb_str(b, "}");
    }
    base_sb_str(b, "}");
}

static void write_config(base_sb *b, const ir_config *c)
{
    static const char *const SM[] = {"load_balance", "round_robin"};
    static const char *const PG[] = {"graph_color", "linear", "none"};
    base_sb_str(b, "{\"tiling\": {");
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
            base_sb_str(b, ", ");
        first_op = false;
        sb_qstr(b, c->tiling[i].op);
        base_sb_str(b, ": {");
        bool first = true;
        for (int k = i; k < c->n_tiling; k++) {
            if (strcmp(c->tiling[k].op, c->tiling[i].op))
                continue;
            if (!first)
                base_sb_str(b, ", ");
            first = false;
            sb_qstr(b, c->tiling[k].key);
            base_sb_str(b, ": ");
            sb_int(b, c->tiling[k].value);
        }
        base_sb_str(b, "}");
    }
    base_sb_str(b, "}, \"fusion_grouping\": [");
    for (int i = 0; i < c->n_groups; i++) {
        if (i)
            base_sb_str(b, ", ");
        base_sb_str(b, "[");
        for (int j = 0; j < c->groups[i].n; j++) {
            if (j)
                base_sb_str(b, ", ");
            sb_qstr(b, c->groups[i].names[j]);
        }
        base_sb_str(b, "]");
    }
    base_sb_str(b, "], \"sm_assignment\": ");
    if (c->sm_policy == IR_SM_EXPLICIT) {
        base_sb_str(b, "{");
        for (int i = 0; i < c->n_explicit; i++) {
            if (i)
                base_sb_str(b, ", ");
            base_sb_fmt(b, "\"%d\": ", c->explicit_task[i]);
            sb_int(b, c->explicit_queue[i]);
        }
        base_sb_str(b, "}");
    } else {
        base_sb_fmt(b, "\"%s\"", SM[c->sm_policy == IR_SM_ROUND_ROBIN]);
    }
    base_sb_str(b, ", \"pipelining_depth\": "); sb_int(b, c->pipelining_depth);
    base_sb_fmt(b, ", \"page_allocation\": \"%s\"", PG[(unsigned)c->page_policy < 3 ? c->page_policy : 0]);
    base_sb_str(b, ", \"threads_per_block\": "); sb_int(b, c->threads_per_block);
    base_sb_str(b, ", \"smem_bytes_per_block\": "); sb_int(b, c->smem_bytes_per_block);
    base_sb_str(b, "}");
}

static void write_program(base_sb *b, const ir_program *p)
{
    base_sb_str(b, "{\n  \"ir_version\": ");
    sb_qstr(b, p->ir_version);
    base_sb_str(b, ",\n  \"abi_version\": ");
    sb_qstr(b, p->abi_version);
    base_sb_str(b, ",\n  \"meta\": ");
    sb_raw_json(b, p->meta_json ? p->meta_json : "{}");
    base_sb_str(b, ",\n  \"target\": ");
    if (p->has_target)
        write_target(b, &p->target);
    else
        base_sb_str(b, "null");
    base_sb_str(b, ",\n  \"buffers\": [");
    for (int i = 0; i < p->n_buffers; i++) {
        const ir_buffer *x = &p->buffers[i];
        base_sb_str(b, i ? ",\n    " : "\n    ");
        base_sb_str(b, "{\"id\": "); sb_int(b, x->id);
        base_sb_str(b, ", \"name\": "); sb_qstr(b, x->name ? x->name : "");
        base_sb_fmt(b, ", \"kind\": \"%s\", \"dtype\": \"%s\", \"shape\": [", ir_kind_name(x->kind),
               ir_dtype_name(x->dtype));
        for (int j = 0; j < x->rank; j++) {
            if (j)
                base_sb_str(b, ", ");
            sb_int(b, x->shape[j]);
        }
        base_sb_fmt(b, "], \"space\": \"%s\", \"source\": ", ir_space_name(x->space));
        if (x->source)
            sb_qstr(b, x->source);
        else
            base_sb_str(b, "null");
        base_sb_str(b, "}");
    }
    base_sb_str(b, p->n_buffers ? "\n  ],\n  \"counters\": [" : "],\n  \"counters\": [");
    for (int i = 0; i < p->n_counters; i++) {
        const ir_counter *c = &p->counters[i];
        base_sb_str(b, i ? ",\n    " : "\n    ");
        base_sb_str(b, "{\"id\": "); sb_int(b, c->id);
        base_sb_str(b, ", \"init\": "); sb_int(b, c->init);
        base_sb_str(b, ", \"note\": "); sb_qstr(b, c->note ? c->note : "");
        base_sb_str(b, "}");
    }
    base_sb_str(b, p->n_counters ? "\n  ],\n  \"tasks\": [" : "],\n  \"tasks\": [");
    for (int i = 0; i < p->n_tasks; i++) {
        base_sb_str(b, i ? ",\n    " : "\n    ");
        write_task(b, &p->tasks[i]);
    }
    base_sb_str(b, p->n_tasks ? "\n  ],\n  \"pages\": " : "],\n  \"pages\": ");
    if (p->has_pages) {
        const ir_pages *pg = &p->pages;
        base_sb_str(b, "{\"buffer_to_page\": {");
        for (int i = 0; i < pg->n_map; i++) {
            if (i)
                base_sb_str(b, ", ");
            base_sb_fmt(b, "\"%d\": ", pg->map_buffer[i]);
            sb_int(b, pg->map_page[i]);
        }
        base_sb_str(b, "}, \"pages\": [");
        for (int i = 0; i < pg->n_pages; i++) {
            const ir_page *x = &pg->pages[i];
            base_sb_str(b, i ? ",\n    " : "\n    ");
            base_sb_str(b, "{\"id\": "); sb_int(b, x->id);
            base_sb_fmt(b, ", \"space\": \"%s\", \"nbytes\": ", ir_space_name(x->space));
            sb_int(b, x->nbytes);
            base_sb_str(b, ", \"live_start\": "); sb_int(b, x->live_start);
            base_sb_str(b, ", \"live_end\": "); sb_int(b, x->live_end);
            base_sb_str(b, "}");
        }
        base_sb_str(b, pg->n_pages ? "\n  ]}" : "]}");
    } else {
        base_sb_str(b, "null");
    }
    base_sb_str(b, ",\n  \"config\": ");
    if (p->has_config)
        write_config(b, &p->config);
    else
        base_sb_str(b, "null");
    if (p->has_decode) {
        base_sb_str(b, ",\n  \"decode\": {\"pos\": "); sb_int(b, p->decode.pos);
        base_sb_str(b, ", \"max_seq\": "); sb_int(b, p->decode.max_seq);
        base_sb_str(b, "}");
    }
    if (p->has_plan) {
        const ir_plan *pl = &p->plan;
        base_sb_str(b, ",\n  \"launch_plan\": {\"grid\": "); sb_int(b, pl->grid);
        base_sb_str(b, ", \"threads_per_block\": "); sb_int(b, pl->threads_per_block);
        base_sb_str(b, ", \"dynamic_smem_bytes\": "); sb_int(b, pl->dynamic_smem_bytes);
        base_sb_str(b, ", \"static_smem_bytes\": "); sb_int(b, pl->static_smem_bytes);
        base_sb_str(b, ", \"regs_per_thread\": "); sb_int(b, pl->regs_per_thread);
        base_sb_str(b, ", \"pipelining_depth\": "); sb_int(b, pl->pipelining_depth);
        base_sb_str(b, ", \"queues\": [");
        for (int64_t q = 0; q < pl->grid; q++) {
            base_sb_str(b, q ? ",\n    " : "\n    ");
            write_ids(b, pl->queue_tasks + pl->queue_start[q],
                      pl->queue_start[q + 1] - pl->queue_start[q]);
        }
        base_sb_str(b, pl->grid ? "\n  ]}" : "]}");
    }
    base_sb_str(b, "\n}\n");
}

ir_status ir_write_json(const ir_program *p, char **out, size_t *len, ir_error *err)
{
    base_sb b = {0};
    write_program(&b, p);
    char *s = base_sb_take(&b, len);
    if (!s)
        return ir_fail(err, IR_ERR_NOMEM, "", "out of memory while writing JSON");
    *out = s;
    return IR_OK;
}

ir_status ir_config_write_json(const ir_config *c, char **out, size_t *len, ir_error *err)
{
    base_sb b = {0};
    write_config(&b, c);
    char *s = base_sb_take(&b, len);
    if (!s)
        return ir_fail(err, IR_ERR_NOMEM, "", "out of memory while writing JSON");
    *out = s;
    return IR_OK;
}

ir_status ir_write_file(const ir_program *p, const char *path, ir_error *err)
{
    char *s = NULL;
    size_t n = 0;
    ir_status st = ir_write_json(p, &s, &n, err);
    if (st != IR_OK)
        return st;
    st = ir_out_write(path, s, n, err);
    free(s);
    return st;
}
