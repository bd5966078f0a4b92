/*
 * test_lower.c - pins what `amk lower` emits: the task graph of each preset, the effect of every
 * ScheduleConfig knob on the emitted tasks, the launch plan, page sharing only between buffers
 * ordered by dependencies, every refusal of a model or config, and byte-identical output.
 */
#include <criterion/criterion.h>
#include <criterion/redirect.h>
#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "lower/lower.h"
#include "refvm/refvm.h"
#include "tools/cmd.h"
#include "verify/verify.h"

#define DATA "tests/data/lower/"

/* ---------------------------------------------------------------- helpers */

static ir_config config_from(const char *json)
{
    ir_config c;
    ir_error err = {0};
    if (!json) {
        ir_config_default(&c);
        return c;
    }
    ir_status s = ir_config_read_json(json, strlen(json), true, &c, &err);
    cr_assert_eq(s, IR_OK, "config %s: %s at %s: %s", json, ir_status_name(s), err.where, err.why);
    return c;
}

/* A copy of the h100 target with num_sms queues. */
static ir_target target_with_sms(int64_t num_sms)
{
    ir_target t = *ir_target_builtin("h100");
    t.num_sms = num_sms;
    return t;
}

/* Lower model under config_json (NULL: defaults) in one dialect; asserts success. */
static ir_program *lower_in(const char *model, const char *config_json, const ir_target *t,
                            int64_t pos, int64_t max_seq, bool argmax, lower_dialect dialect)
{
    lower_model m;
    ir_error err = {0};
    cr_assert_eq(lower_model_load(model, &m, &err), IR_OK, "%s: %s", err.where, err.why);
    ir_config c = config_from(config_json);
    lower_opts o;
    lower_opts_default(&o);
    o.pos = pos;
    o.max_seq = max_seq;
    o.sample_argmax = argmax;
    o.dialect = dialect;
    ir_program *p = NULL;
    ir_status s = lower_program(&m, &c, t, &o, &p, &err);
    ir_config_free(&c);
    cr_assert_eq(s, IR_OK, "lowering %s (%s): %s at %s: %s", model, lower_dialect_name(dialect),
                 ir_status_name(s), err.where, err.why);
    return p;
}

static ir_program *lower_full(const char *model, const char *config_json, const ir_target *t,
                              int64_t pos, int64_t max_seq, bool argmax)
{
    return lower_in(model, config_json, t, pos, max_seq, argmax, LOWER_DIALECT_OURS);
}

static ir_program *lower_simple(const char *model, const char *config_json)
{
    return lower_full(model, config_json, ir_target_builtin("h100"), 0, 0, false);
}

/* Lowering that must fail; returns the error. */
static ir_error lower_refused(const char *model, const char *config_json, const ir_target *t,
                              int64_t pos, int64_t max_seq, ir_status expect)
{
    lower_model m;
    ir_error err = {0};
    cr_assert_eq(lower_model_load(model, &m, &err), IR_OK);
    ir_config c = config_from(config_json);
    lower_opts o;
    lower_opts_default(&o);
    o.pos = pos;
    o.max_seq = max_seq;
    ir_program *p = NULL;
    ir_status s = lower_program(&m, &c, t ? t : ir_target_builtin("h100"), &o, &p, &err);
    ir_config_free(&c);
    cr_assert_eq(s, expect, "expected %s, got %s (%s: %s)", ir_status_name(expect),
                 ir_status_name(s), err.where, err.why);
    cr_assert_null(p);
    return err;
}

static bool has_prefix(const char *s, const char *prefix)
{
    return !strncmp(s, prefix, strlen(prefix));
}

/* Tasks whose label starts with prefix and whose op is op (IR_OP_COUNT: any op). */
static int count_tasks(const ir_program *p, const char *prefix, ir_op op)
{
    int n = 0;
    for (int i = 0; i < p->n_tasks; i++)
        if (has_prefix(p->tasks[i].label, prefix) && (op == IR_OP_COUNT || p->tasks[i].op == op))
            n++;
    return n;
}

static const ir_task *find_task(const ir_program *p, const char *label)
{
    for (int i = 0; i < p->n_tasks; i++)
        if (!strcmp(p->tasks[i].label, label))
            return &p->tasks[i];
    return NULL;
}

static int64_t int_param(const ir_task *t, const char *key)
{
    int64_t v;
    cr_assert(ir_task_int(t, key, &v), "task %s has no int param %s", t->label, key);
    return v;
}

static int find_buffer(const ir_program *p, const char *name)
{
    for (int i = 0; i < p->n_buffers; i++)
        if (!strcmp(p->buffers[i].name, name))
            return i;
    return -1;
}

static char *to_json(const ir_program *p, size_t *len)
{
    char *s;
    ir_error err = {0};
    cr_assert_eq(ir_write_json(p, &s, len, &err), IR_OK, "%s: %s", err.where, err.why);
    return s;
}

/* Ancestor sets over dependency edges (a producer of a waited counter precedes the waiter);
 * bitsets, one row of n bits per task. */
static uint64_t *ancestors(const ir_program *p)
{
    int n = p->n_tasks, words = (n + 63) / 64;
    uint64_t *a = calloc((size_t)n * (size_t)words, sizeof *a);
    cr_assert_not_null(a);
    for (int v = 0; v < n; v++) {
        const ir_task *t = &p->tasks[v];
        for (int w = 0; w < t->n_waits; w++)
            for (int u = 0; u < n; u++)
                if (p->tasks[u].out_counter == t->waits[w].counter) {
                    cr_assert_lt(u, v, "task %d waits for a later task %d", v, u);
                    for (int k = 0; k < words; k++)
                        a[(size_t)v * words + k] |= a[(size_t)u * words + k];
                    a[(size_t)v * words + u / 64] |= 1ull << (u % 64);
                }
    }
    return a;
}

static bool is_ancestor(const uint64_t *a, int n, int u, int v)
{
    int words = (n + 63) / 64;
    return (a[(size_t)v * words + u / 64] >> (u % 64)) & 1;
}

static bool touches(const ir_task *t, int b)
{
    for (int i = 0; i < t->n_inputs; i++)
        if (t->inputs[i] == b)
            return true;
    for (int i = 0; i < t->n_outputs; i++)
        if (t->outputs[i] == b)
            return true;
    return false;
}

/* Every access of a happens before every access of b through dependency edges. */
static bool all_ordered(const ir_program *p, const uint64_t *anc, int a, int b)
{
    for (int u = 0; u < p->n_tasks; u++) {
        if (!touches(&p->tasks[u], a))
            continue;
        for (int v = 0; v < p->n_tasks; v++)
            if (touches(&p->tasks[v], b) && !is_ancestor(anc, p->n_tasks, u, v))
                return false;
    }
    return true;
}

/* Two buffers on one page must be ordered one way or the other; SMEM buffers are touched by
 * one queue only. Returns the number of pages shared by at least two buffers. */
static int check_pages_ordered(const ir_program *p)
{
    cr_assert(p->has_pages);
    uint64_t *anc = ancestors(p);
    int shared = 0;
    for (int pg = 0; pg < p->pages.n_pages; pg++) {
        int bufs[4096], n = 0;
        for (int i = 0; i < p->pages.n_map; i++)
            if (p->pages.map_page[i] == pg && n < 4096)
                bufs[n++] = p->pages.map_buffer[i];
        if (n > 1)
            shared++;
        for (int i = 0; i < n; i++) {
            cr_assert_leq(ir_buffer_nbytes(&p->buffers[bufs[i]]), p->pages.pages[pg].nbytes);
            cr_assert_eq(p->buffers[bufs[i]].space, p->pages.pages[pg].space);
            for (int j = i + 1; j < n; j++)
                cr_assert(all_ordered(p, anc, bufs[i], bufs[j])
                              || all_ordered(p, anc, bufs[j], bufs[i]),
                          "page %d holds %s and %s whose accesses are not ordered", pg,
                          p->buffers[bufs[i]].name, p->buffers[bufs[j]].name);
            if (p->pages.pages[pg].space == IR_SMEM) {
                int q = -1;
                for (int t = 0; t < p->n_tasks; t++)
                    if (touches(&p->tasks[t], bufs[i])) {
                        cr_assert(q == -1 || q == p->tasks[t].sm, "SMEM buffer on two queues");
                        q = p->tasks[t].sm;
                    }
            }
        }
    }
    free(anc);
    return shared;
}

static int64_t page_bytes(const ir_program *p)
{
    int64_t s = 0;
    for (int i = 0; i < p->pages.n_pages; i++)
        s += p->pages.pages[i].nbytes;
    return s;
}

/* ---------------------------------------------------------------- presets */

Test(lower_presets, every_preset_lowers_and_reads_back_without_warnings)
{
    for (int i = 0; i < lower_preset_count(); i++) {
        ir_program *p = lower_simple(lower_preset_at(i), NULL);
        size_t len;
        char *json = to_json(p, &len);
        ir_program *q = NULL;
        ir_error err = {0};
        cr_assert_eq(ir_read_json(json, len, NULL, &q, &err), IR_OK, "%s: %s at %s: %s",
                     lower_preset_at(i), ir_status_name(err.status), err.where, err.why);
        cr_assert_eq(q->warnings.n, 0, "%s: %d warnings, first: %s", lower_preset_at(i),
                     q->warnings.n, q->warnings.n ? q->warnings.items[0] : "");
        cr_assert_eq(q->n_tasks, p->n_tasks);
        cr_assert(q->has_plan && q->has_pages && q->has_decode && q->has_config && q->has_target);
        free(json);
        ir_program_free(q);
        ir_program_free(p);
    }
}

Test(lower_presets, weight_bytes_match_published_parameter_counts)
{
    /* bf16: 2 bytes per parameter; counts from the models' public cards. */
    struct {
        const char *name;
        int64_t params;
    } want[] = {
        {"smollm2-135m", 134515008},
        {"llama-3.2-1b", 1235814400},
        {"llama-3-8b", 8030261248},
        {"llama-3-70b", 70553706496},
    };
    for (size_t i = 0; i < sizeof want / sizeof want[0]; i++) {
        ir_program *p = lower_simple(want[i].name, NULL);
        cr_assert_eq(ir_weight_bytes(p), 2 * want[i].params, "%s: %lld bytes", want[i].name,
                     (long long)ir_weight_bytes(p));
        ir_program_free(p);
    }
}

Test(lower_presets, toy_has_the_documented_layer_structure)
{
    ir_program *p = lower_simple("toy", NULL);
    /* Default N_tile 256 covers every toy projection in one tile: per layer 1 norm, q k v,
     * 2 rope, 2 kv append, 1 attention, o, add, norm, gate, up, silu, down, add = 17. */
    cr_assert_eq(p->n_tasks, 1 + 2 * 17 + 1 + 1);
    static const ir_op ops[] = {IR_OP_RMSNORM, IR_OP_GEMV_TILE, IR_OP_GEMV_TILE,
                                IR_OP_GEMV_TILE, IR_OP_ROPE, IR_OP_ROPE, IR_OP_KV_APPEND,
                                IR_OP_KV_APPEND, IR_OP_ATTENTION_TILE, IR_OP_GEMV_TILE, IR_OP_ADD,
                                IR_OP_RMSNORM, IR_OP_GEMV_TILE, IR_OP_GEMV_TILE, IR_OP_SILU_MUL,
                                IR_OP_GEMV_TILE, IR_OP_ADD};
    cr_assert_eq(p->tasks[0].op, IR_OP_EMBED);
    for (int l = 0; l < 2; l++)
        for (int k = 0; k < 17; k++)
            cr_assert_eq(p->tasks[1 + 17 * l + k].op, ops[k], "layer %d op %d", l, k);
    cr_assert_eq(p->tasks[35].op, IR_OP_RMSNORM);
    cr_assert_eq(p->tasks[36].op, IR_OP_GEMV_TILE);
    /* Buffers: tokens in, logits out, KV caches F32 [S, nkv*hd]. */
    int tok = find_buffer(p, "tokens"), lg = find_buffer(p, "logits");
    cr_assert_eq(p->buffers[tok].kind, IR_IO_INPUT);
    cr_assert_eq(p->buffers[tok].dtype, IR_I32);
    cr_assert_eq(p->buffers[lg].kind, IR_IO_OUTPUT);
    cr_assert_eq(p->buffers[lg].dtype, IR_F32);
    cr_assert_eq(p->buffers[lg].shape[1], 256);
    int kc = find_buffer(p, "L1.k_cache");
    cr_assert_eq(p->buffers[kc].kind, IR_KV_CACHE);
    cr_assert_eq(p->buffers[kc].dtype, IR_F32);
    cr_assert_eq(p->buffers[kc].shape[0], 256);
    cr_assert_eq(p->buffers[kc].shape[1], 2 * 16);
    /* Weights carry their safetensors keys. */
    int wq = find_buffer(p, "model.layers.1.self_attn.q_proj.weight");
    cr_assert_geq(wq, 0);
    cr_assert_str_eq(p->buffers[wq].source, "model.layers.1.self_attn.q_proj.weight");
    cr_assert_eq(p->buffers[wq].dtype, IR_BF16);
    cr_assert_eq(p->buffers[wq].shape[0], 64);
    cr_assert_geq(find_buffer(p, "lm_head.weight"), 0);
    ir_program_free(p);
}

Test(lower_presets, tied_embeddings_make_lm_head_read_the_embedding_table)
{
    ir_program *p = lower_simple("llama-3.2-1b", NULL);
    cr_assert_eq(find_buffer(p, "lm_head.weight"), -1);
    int emb = find_buffer(p, "model.embed_tokens.weight");
    const ir_task *t = find_task(p, "lm_head[0]");
    cr_assert_not_null(t);
    cr_assert_eq(t->inputs[1], emb);
    /* 128256 / 256 = 501 tiles */
    cr_assert_eq(count_tasks(p, "lm_head[", IR_OP_GEMV_TILE), 501);
    ir_program_free(p);
}

Test(lower_presets, llama3_rope_scaling_reaches_the_rope_params)
{
    ir_program *p = lower_simple("llama-3.2-1b", NULL);
    const ir_task *t = find_task(p, "L3.rope_k");
    double f;
    cr_assert(ir_task_real(t, "rope_factor", &f));
    cr_assert_float_eq(f, 32.0, 1e-12);
    cr_assert(ir_task_real(t, "rope_high_freq", &f));
    cr_assert_float_eq(f, 4.0, 1e-12);
    cr_assert_eq(int_param(t, "rope_orig_max"), 8192);
    cr_assert(ir_task_real(t, "theta", &f));
    cr_assert_float_eq(f, 500000.0, 1e-6);
    ir_program_free(p);
    p = lower_simple("llama-3-8b", NULL);
    cr_assert_null(ir_task_param(find_task(p, "L3.rope_k"), "rope_factor"));
    ir_program_free(p);
}

Test(lower_presets, argmax_appends_sample_argmax_and_a_token_output)
{
    ir_program *p = lower_full("toy", NULL, ir_target_builtin("h100"), 0, 0, true);
    const ir_task *t = &p->tasks[p->n_tasks - 1];
    cr_assert_eq(t->op, IR_OP_SAMPLE_ARGMAX);
    cr_assert_eq(t->inputs[0], find_buffer(p, "logits"));
    const ir_buffer *b = &p->buffers[t->outputs[0]];
    cr_assert_eq(b->kind, IR_IO_OUTPUT);
    cr_assert_eq(b->dtype, IR_I32);
    cr_assert_eq(b->rank, 1);
    cr_assert_eq(b->shape[0], 1);
    ir_program_free(p);
}

Test(lower_presets, meta_records_model_gpu_dtype_and_model_config)
{
    ir_program *p = lower_simple("llama-3-8b", NULL);
    cr_assert_not_null(strstr(p->meta_json, "\"model\":\"llama-3-8b\""));
    cr_assert_not_null(strstr(p->meta_json, "\"gpu\":\"h100\""));
    cr_assert_not_null(strstr(p->meta_json, "\"dtype\":\"BF16\""));
    cr_assert_not_null(strstr(p->meta_json, "\"intermediate\":14336"));
    cr_assert_not_null(strstr(p->meta_json, "\"n_kv_heads\":8"));
    cr_assert_eq(p->decode.max_seq, 4096);
    ir_program_free(p);
}

/* ---------------------------------------------------------------- graph invariants */

Test(lower_graph, counters_are_per_op_instance_and_waits_join_all_producers)
{
    ir_program *p = lower_simple("smollm2-135m", "{\"tiling\": {\"gemv\": {\"N_tile\": 64}, "
                                                 "\"attention\": {\"kv_block\": 512}}}");
    int nc = p->n_counters;
    int *producers = calloc((size_t)nc, sizeof *producers);
    int *layer = malloc((size_t)nc * sizeof *layer);
    for (int c = 0; c < nc; c++)
        layer[c] = -2;
    for (int i = 0; i < p->n_tasks; i++) {
        const ir_task *t = &p->tasks[i];
        int l = -1;
        sscanf(t->label, "L%d.", &l);
        producers[t->out_counter]++;
        if (layer[t->out_counter] == -2)
            layer[t->out_counter] = l;
        cr_assert_eq(layer[t->out_counter], l, "counter %d produced in two layers",
                     t->out_counter);
    }
    for (int i = 0; i < p->n_tasks; i++) {
        const ir_task *t = &p->tasks[i];
        int l = -1;
        sscanf(t->label, "L%d.", &l);
        for (int w = 0; w < t->n_waits; w++) {
            int c = t->waits[w].counter;
            cr_assert_eq(t->waits[w].threshold, producers[c], "%s: partial wait", t->label);
            if (l >= 0)
                cr_assert_leq(layer[c], l, "%s waits on a later layer", t->label);
        }
        cr_assert_gt(t->est_bytes, 0, "%s has no est_bytes", t->label);
    }
    free(producers);
    free(layer);
    ir_program_free(p);
}

Test(lower_graph, task_graph_does_not_depend_on_pos)
{
    ir_program *a = lower_full("toy", "{\"tiling\": {\"attention\": {\"kv_block\": 64}}}",
                               ir_target_builtin("h100"), 0, 0, false);
    ir_program *b = lower_full("toy", "{\"tiling\": {\"attention\": {\"kv_block\": 64}}}",
                               ir_target_builtin("h100"), 200, 0, false);
    cr_assert_eq(a->n_tasks, b->n_tasks);
    cr_assert_eq(a->decode.pos, 0);
    cr_assert_eq(b->decode.pos, 200);
    int differing = 0;
    for (int i = 0; i < a->n_tasks; i++) {
        const ir_task *x = &a->tasks[i], *y = &b->tasks[i];
        cr_assert_eq(x->op, y->op);
        cr_assert_eq(x->sm, y->sm);
        cr_assert_eq(x->n_waits, y->n_waits);
        cr_assert_eq(x->est_bytes, y->est_bytes);
        cr_assert_eq(x->n_params, y->n_params);
        for (int k = 0; k < x->n_params; k++) {
            const ir_param *px = &x->params[k], *py = &y->params[k];
            cr_assert_str_eq(px->key, py->key);
            cr_assert_eq(px->has_pexpr, py->has_pexpr);
            if (px->has_pexpr) {
                cr_assert_eq(px->pexpr.mul, py->pexpr.mul);
                cr_assert_eq(px->pexpr.add, py->pexpr.add);
                cr_assert_eq(ir_pexpr_eval(px->pexpr, 200), py->i);
                differing += px->i != py->i;
            } else if (px->type == IR_PARAM_INT) {
                cr_assert_eq(px->i, py->i, "%s.%s differs", x->label, px->key);
            }
        }
    }
    cr_assert_gt(differing, 0);
    for (int i = 0; i < a->pages.n_map; i++)
        cr_assert_eq(a->pages.map_page[i], b->pages.map_page[i]);
    ir_program_free(a);
    ir_program_free(b);
}

Test(lower_graph, kv_append_and_rope_carry_pos_expressions)
{
    ir_program *p = lower_full("toy", NULL, ir_target_builtin("h100"), 17, 0, false);
    const char *labels[] = {"L0.kv_append_k", "L0.kv_append_v", "L1.rope_q", "L1.rope_k"};
    for (int i = 0; i < 4; i++) {
        const ir_task *t = find_task(p, labels[i]);
        ir_pexpr e;
        cr_assert(ir_task_pexpr(t, "pos", &e));
        cr_assert_eq(e.mul, 1);
        cr_assert_eq(e.add, 0);
        cr_assert_eq(e.lo, 0);
        cr_assert_eq(e.hi, INT64_MAX);
        cr_assert_eq(int_param(t, "pos"), 17);
    }
    const ir_task *t = find_task(p, "L0.attention");
    cr_assert_eq(int_param(t, "kv_start"), 0);
    cr_assert_eq(int_param(t, "kv_len"), 18);
    ir_pexpr e;
    cr_assert(ir_task_pexpr(t, "kv_len", &e));
    cr_assert_eq(e.hi, 256);
    cr_assert_eq(ir_pexpr_eval(e, 255), 256);
    ir_program_free(p);
}

/* ---------------------------------------------------------------- knobs */

Test(lower_knobs, n_tile_128_splits_a_2048_wide_projection_into_16_tiles)
{
    ir_program *p = lower_simple("llama-3.2-1b", "{\"tiling\": {\"gemv\": {\"N_tile\": 128}}}");
    cr_assert_eq(count_tasks(p, "L0.q_proj[", IR_OP_GEMV_TILE), 16);
    int32_t ctr = find_task(p, "L0.q_proj[0]")->out_counter;
    for (int i = 0; i < 16; i++) {
        char label[32];
        snprintf(label, sizeof label, "L0.q_proj[%d]", i);
        const ir_task *t = find_task(p, label);
        cr_assert_not_null(t);
        cr_assert_eq(int_param(t, "n_off"), 128 * i);
        cr_assert_eq(int_param(t, "N_tile"), 128);
        cr_assert_eq(int_param(t, "K"), 2048);
        cr_assert_eq(t->out_counter, ctr);
    }
    const ir_task *rope = find_task(p, "L0.rope_q");
    cr_assert_eq(rope->n_waits, 1);
    cr_assert_eq(rope->waits[0].counter, ctr);
    cr_assert_eq(rope->waits[0].threshold, 16);
    /* k_proj is 8*64 = 512 wide: 4 tiles. */
    cr_assert_eq(count_tasks(p, "L0.k_proj[", IR_OP_GEMV_TILE), 4);
    ir_program *d = lower_simple("llama-3.2-1b", NULL);
    cr_assert_eq(count_tasks(d, "L0.q_proj[", IR_OP_GEMV_TILE), 8);
    ir_program_free(d);
    ir_program_free(p);
}

Test(lower_knobs, last_gemv_tile_is_shorter_when_n_tile_does_not_divide)
{
    ir_program *p = lower_simple("toy", "{\"tiling\": {\"gemv\": {\"N_tile\": 48}}}");
    cr_assert_eq(count_tasks(p, "L0.q_proj[", IR_OP_GEMV_TILE), 2);
    const ir_task *t = find_task(p, "L0.q_proj[1]");
    cr_assert_eq(int_param(t, "n_off"), 48);
    cr_assert_eq(int_param(t, "N_tile"), 16);
    cr_assert_eq(int_param(find_task(p, "L0.q_proj[0]"), "N_tile"), 48);
    ir_program_free(p);
}

Test(lower_knobs, kv_block_splits_attention_into_blocks_and_a_combine)
{
    ir_program *p = lower_full("toy", "{\"tiling\": {\"attention\": {\"kv_block\": 64}}}",
                               ir_target_builtin("h100"), 70, 0, false);
    /* max_seq 256 / 64 = 4 blocks per layer + 1 combine. */
    cr_assert_eq(count_tasks(p, "L0.attention[", IR_OP_ATTENTION_TILE), 4);
    cr_assert_eq(count_tasks(p, "L1.attention[", IR_OP_ATTENTION_TILE), 4);
    cr_assert_eq(count_tasks(p, "L0.attention_combine", IR_OP_ATTENTION_COMBINE), 1);
    int64_t want_len[4] = {64, 7, 0, 0};
    int32_t ctr = find_task(p, "L0.attention[0]")->out_counter;
    for (int b = 0; b < 4; b++) {
        char label[32];
        snprintf(label, sizeof label, "L0.attention[%d]", b);
        const ir_task *t = find_task(p, label);
        cr_assert_eq(int_param(t, "kv_start"), 64 * b);
        cr_assert_eq(int_param(t, "m_off"), b);
        cr_assert_eq(int_param(t, "kv_len"), want_len[b], "block %d", b);
        ir_pexpr e;
        cr_assert(ir_task_pexpr(t, "kv_len", &e));
        cr_assert_eq(e.mul, 1);
        cr_assert_eq(e.add, 1 - 64 * b);
        cr_assert_eq(e.lo, 0);
        cr_assert_eq(e.hi, 64);
        cr_assert_eq(t->out_counter, ctr);
        const ir_buffer *part = &p->buffers[t->outputs[0]];
        cr_assert_eq(part->shape[0], 4);
        cr_assert_eq(part->shape[1], 4 * (16 + 2));
    }
    const ir_task *comb = find_task(p, "L0.attention_combine");
    cr_assert_eq(comb->waits[0].counter, ctr);
    cr_assert_eq(comb->waits[0].threshold, 4);
    cr_assert_eq(find_task(p, "L0.o_proj[0]")->waits[0].counter, comb->out_counter);
    ir_program_free(p);
}

Test(lower_knobs, kv_block_not_dividing_max_seq_gives_a_short_last_block)
{
    ir_program *p = lower_full("toy", "{\"tiling\": {\"attention\": {\"kv_block\": 64}}}",
                               ir_target_builtin("h100"), 99, 100, false);
    cr_assert_eq(count_tasks(p, "L0.attention[", IR_OP_ATTENTION_TILE), 2);
    const ir_task *t = find_task(p, "L0.attention[1]");
    ir_pexpr e;
    cr_assert(ir_task_pexpr(t, "kv_len", &e));
    cr_assert_eq(e.hi, 36);
    cr_assert_eq(int_param(t, "kv_len"), 36);
    ir_program_free(p);
}

Test(lower_knobs, gate_up_fusion_halves_the_gate_up_tasks_and_emits_fused)
{
    const char *tile = "{\"tiling\": {\"gemv\": {\"N_tile\": 1024}}";
    char cfg[256];
    snprintf(cfg, sizeof cfg, "%s, \"fusion_grouping\": [[\"gate\", \"up\"]]}", tile);
    char plain[256];
    snprintf(plain, sizeof plain, "%s}", tile);
    ir_program *a = lower_simple("llama-3.2-1b", plain);
    ir_program *f = lower_simple("llama-3.2-1b", cfg);
    int gate_up = count_tasks(a, "L0.gate_proj[", IR_OP_GEMV_TILE)
                  + count_tasks(a, "L0.up_proj[", IR_OP_GEMV_TILE);
    cr_assert_eq(gate_up, 16);
    cr_assert_eq(count_tasks(f, "L0.gate_up_proj[", IR_OP_FUSED), 8);
    cr_assert_eq(count_tasks(f, "L0.gate_proj[", IR_OP_COUNT), 0);
    cr_assert_eq(a->n_tasks - f->n_tasks, 16 * 8);
    const ir_task *t = find_task(f, "L0.gate_up_proj[3]");
    cr_assert_eq(int_param(t, "recipe"), 1);
    cr_assert_eq(int_param(t, "n_off"), 3072);
    cr_assert_eq(int_param(t, "N_tile"), 1024);
    cr_assert_eq(t->n_inputs, 3);
    cr_assert_eq(t->n_outputs, 2);
    cr_assert_eq(t->inputs[1], find_buffer(f, "model.layers.0.mlp.gate_proj.weight"));
    cr_assert_eq(t->inputs[2], find_buffer(f, "model.layers.0.mlp.up_proj.weight"));
    cr_assert_eq(t->outputs[0], find_buffer(f, "L0.gate"));
    cr_assert_eq(t->outputs[1], find_buffer(f, "L0.up"));
    const ir_task *s = find_task(f, "L0.silu_mul");
    cr_assert_eq(s->n_waits, 1);
    cr_assert_eq(s->waits[0].counter, t->out_counter);
    cr_assert_eq(s->waits[0].threshold, 8);
    ir_program_free(a);
    ir_program_free(f);
}

Test(lower_knobs, round_robin_deals_tasks_in_id_order)
{
    ir_target t = target_with_sms(4);
    ir_program *p = lower_full("toy", "{\"sm_assignment\": \"round_robin\"}", &t, 0, 0, false);
    for (int i = 0; i < p->n_tasks; i++)
        cr_assert_eq(p->tasks[i].sm, i % 4);
    ir_program_free(p);
}

Test(lower_knobs, load_balance_is_lpt_on_est_bytes_and_differs_from_round_robin)
{
    ir_target t = target_with_sms(4);
    ir_program *lb = lower_full("toy", NULL, &t, 0, 0, false);
    ir_program *rr = lower_full("toy", "{\"sm_assignment\": \"round_robin\"}", &t, 0, 0, false);
    int64_t load[4] = {0};
    int differ = 0;
    for (int i = 0; i < lb->n_tasks; i++) {
        int best = 0;
        for (int q = 1; q < 4; q++)
            if (load[q] < load[best])
                best = q;
        cr_assert_eq(lb->tasks[i].sm, best, "task %d (%s)", i, lb->tasks[i].label);
        load[best] += lb->tasks[i].est_bytes;
        differ += lb->tasks[i].sm != rr->tasks[i].sm;
    }
    cr_assert_gt(differ, 0);
    /* The first tasks fill the empty queues in index order. */
    cr_assert_eq(lb->tasks[0].sm, 0);
    cr_assert_eq(lb->tasks[1].sm, 1);
    ir_program_free(lb);
    ir_program_free(rr);
}

/* An explicit map sending task i to queue (n - 1 - i) % 3 of a 3-queue target. */
static char *reverse_map(int n)
{
    char *s = malloc((size_t)n * 16 + 64);
    int k = sprintf(s, "{\"sm_assignment\": {");
    for (int i = 0; i < n; i++)
        k += sprintf(s + k, "%s\"%d\": %d", i ? ", " : "", i, (n - 1 - i) % 3);
    sprintf(s + k, "}}");
    return s;
}

Test(lower_knobs, explicit_map_is_honoured_and_queues_keep_topological_order)
{
    ir_target t = target_with_sms(3);
    ir_program *d = lower_simple("toy", NULL);
    int n = d->n_tasks;
    ir_program_free(d);
    char *cfg = reverse_map(n);
    ir_program *p = lower_full("toy", cfg, &t, 0, 0, false);
    free(cfg);
    for (int i = 0; i < n; i++)
        cr_assert_eq(p->tasks[i].sm, (n - 1 - i) % 3);
    cr_assert_eq(p->plan.grid, 3);
    for (int q = 0; q < 3; q++)
        for (int k = p->plan.queue_start[q]; k < p->plan.queue_start[q + 1]; k++) {
            int id = p->plan.queue_tasks[k];
            cr_assert_eq(p->tasks[id].sm, q);
            if (k > p->plan.queue_start[q])
                cr_assert_lt(p->plan.queue_tasks[k - 1], id);
        }
    cr_assert_eq(p->plan.queue_start[3], n);
    ir_program_free(p);
}

Test(lower_knobs, explicit_map_missing_a_task_is_refused)
{
    ir_target t = target_with_sms(3);
    ir_error e = lower_refused("toy", "{\"sm_assignment\": {\"0\": 0, \"1\": 1}}", &t, 0, 0,
                               IR_ERR_MALFORMED);
    cr_assert_str_eq(e.where, "config.sm_assignment");
    cr_assert_not_null(strstr(e.why, "task 2"));
    cr_assert_not_null(strstr(e.why, "no queue"));
}

Test(lower_knobs, explicit_map_out_of_range_queue_or_unknown_task_is_refused)
{
    ir_target t = target_with_sms(3);
    int n = 37;
    char *cfg = reverse_map(n);
    /* queue 3 does not exist on a 3-queue target */
    char *at = strstr(cfg, "\"5\": ");
    at[5] = '3';
    ir_error e = lower_refused("toy", cfg, &t, 0, 0, IR_ERR_MALFORMED);
    cr_assert_str_eq(e.where, "config.sm_assignment.5");
    cr_assert_not_null(strstr(e.why, "queue 3 is out of range"));
    free(cfg);
    e = lower_refused("toy", "{\"sm_assignment\": {\"999\": 0}}", &t, 0, 0, IR_ERR_MALFORMED);
    cr_assert_str_eq(e.where, "config.sm_assignment.999");
    cr_assert_not_null(strstr(e.why, "names task 999"));
}

Test(lower_knobs, pipelining_depth_threads_and_smem_go_into_the_launch_plan)
{
    ir_program *p = lower_simple("toy", "{\"pipelining_depth\": 5, \"threads_per_block\": 512, "
                                        "\"smem_bytes_per_block\": 4096}");
    cr_assert_eq(p->plan.pipelining_depth, 5);
    cr_assert_eq(p->plan.threads_per_block, 512);
    cr_assert_eq(p->plan.dynamic_smem_bytes, 4096);
    cr_assert_eq(p->plan.grid, 132);
    /* min(255, 65536 / 512 = 128) rounded down to a multiple of 8 */
    cr_assert_eq(p->plan.regs_per_thread, 128);
    ir_program_free(p);
    p = lower_simple("toy", NULL);
    cr_assert_eq(p->plan.threads_per_block, 256);
    cr_assert_eq(p->plan.pipelining_depth, 2);
    cr_assert_eq(p->plan.regs_per_thread, 248); /* min(255, 256) -> 248 */
    ir_program_free(p);
}

Test(lower_knobs, smem_over_the_optin_cap_is_kept_for_the_verifier_to_refute)
{
    ir_program *p = lower_simple("toy", "{\"smem_bytes_per_block\": 300000}");
    cr_assert_gt(300000, ir_target_builtin("h100")->smem_bytes_per_block_optin);
    cr_assert_eq(p->plan.dynamic_smem_bytes, 300000);
    ir_program_free(p);
}

/* ---------------------------------------------------------------- pages */

Test(lower_pages, none_gives_every_activation_its_own_page)
{
    ir_program *p = lower_simple("toy", "{\"page_allocation\": \"none\"}");
    int acts = 0;
    for (int i = 0; i < p->n_buffers; i++)
        acts += p->buffers[i].kind == IR_ACTIVATION;
    cr_assert_eq(p->pages.n_map, acts);
    cr_assert_eq(p->pages.n_pages, acts);
    cr_assert_eq(check_pages_ordered(p), 0);
    ir_program_free(p);
}

Test(lower_pages, graph_color_and_linear_share_pages_only_between_ordered_buffers)
{
    const char *cfgs[] = {"{\"page_allocation\": \"graph_color\"}",
                          "{\"page_allocation\": \"linear\"}",
                          "{\"page_allocation\": \"graph_color\", \"tiling\": {\"attention\": "
                          "{\"kv_block\": 32}, \"gemv\": {\"N_tile\": 16}}, \"fusion_grouping\": "
                          "[[\"gate\", \"up\"]]}"};
    ir_program *none = lower_simple("toy", "{\"page_allocation\": \"none\"}");
    for (int i = 0; i < 3; i++) {
        ir_program *p = lower_simple("toy", cfgs[i]);
        cr_assert_gt(check_pages_ordered(p), 0, "%s shares no page", cfgs[i]);
        cr_assert_lt(p->pages.n_pages, none->pages.n_pages);
        cr_assert_lt(page_bytes(p), page_bytes(none));
        ir_program_free(p);
    }
    ir_program_free(none);
}

Test(lower_pages, graph_color_needs_no_more_bytes_than_linear_on_a_real_model)
{
    ir_program *g = lower_simple("smollm2-135m", "{\"page_allocation\": \"graph_color\"}");
    ir_program *l = lower_simple("smollm2-135m", "{\"page_allocation\": \"linear\"}");
    check_pages_ordered(g);
    check_pages_ordered(l);
    cr_assert_leq(page_bytes(g), page_bytes(l));
    /* Linear never grows a page: every buffer on a page has the page's size or less, and the
     * first buffer placed on it set that size. */
    for (int i = 0; i < l->pages.n_map; i++)
        cr_assert_leq(ir_buffer_nbytes(&l->buffers[l->pages.map_buffer[i]]),
                      l->pages.pages[l->pages.map_page[i]].nbytes);
    ir_program *none = lower_simple("smollm2-135m", "{\"page_allocation\": \"none\"}");
    cr_assert_lt(3 * g->pages.n_pages, none->pages.n_pages);
    cr_assert_lt(3 * page_bytes(g), page_bytes(none));
    ir_program_free(none);
    ir_program_free(g);
    ir_program_free(l);
}

/* Layer of a task from its label: L<i>.* is layer i, embed layer 0, the final ops one past the
 * last layer. */
static int label_layer(const ir_task *t, int n_layers)
{
    int l;
    if (sscanf(t->label, "L%d.", &l) == 1)
        return l;
    return strcmp(t->label, "embed") ? n_layers : 0;
}

Test(lower_pages, a_page_is_shared_within_two_adjacent_layers_only)
{
    const char *cfgs[] = {"{\"page_allocation\": \"graph_color\"}",
                          "{\"page_allocation\": \"linear\"}"};
    for (int c = 0; c < 2; c++) {
        ir_program *p = lower_simple("smollm2-135m", cfgs[c]);
        int np = p->pages.n_pages;
        int *lo = malloc((size_t)np * sizeof *lo), *hi = malloc((size_t)np * sizeof *hi);
        int *page_of = malloc((size_t)p->n_buffers * sizeof *page_of);
        for (int i = 0; i < np; i++) {
            lo[i] = 1 << 30;
            hi[i] = -1;
        }
        for (int b = 0; b < p->n_buffers; b++)
            page_of[b] = -1;
        for (int i = 0; i < p->pages.n_map; i++)
            page_of[p->pages.map_buffer[i]] = p->pages.map_page[i];
        for (int i = 0; i < p->n_tasks; i++) {
            const ir_task *t = &p->tasks[i];
            int l = label_layer(t, 30);
            for (int k = 0; k < t->n_inputs + t->n_outputs; k++) {
                int b = k < t->n_inputs ? t->inputs[k] : t->outputs[k - t->n_inputs];
                int pg = page_of[b];
                if (pg < 0)
                    continue;
                if (l < lo[pg])
                    lo[pg] = l;
                if (l > hi[pg])
                    hi[pg] = l;
            }
        }
        int spanning = 0;
        for (int i = 0; i < np; i++) {
            cr_assert_leq(hi[i] - lo[i], 1, "%s: page %d used in layers %d..%d", cfgs[c], i, lo[i],
                          hi[i]);
            spanning += hi[i] - lo[i] == 1;
        }
        cr_assert_gt(spanning, 0, "%s: no page reused across a layer boundary", cfgs[c]);
        free(lo);
        free(hi);
        free(page_of);
        ir_program_free(p);
    }
}

Test(lower_pages, smem_pages_only_for_single_queue_buffers_within_budget)
{
    /* One queue: every activation qualifies for SMEM, the budget decides. */
    ir_target one = target_with_sms(1);
    ir_program *p = lower_full("toy", "{\"smem_bytes_per_block\": 1048576}", &one, 0, 0, false);
    for (int i = 0; i < p->pages.n_pages; i++)
        cr_assert_eq(p->pages.pages[i].space, IR_SMEM);
    check_pages_ordered(p);
    ir_program_free(p);

    /* A budget of 1600 bytes fits at most a few 256-byte hidden vectors at once. */
    p = lower_full("toy", "{\"smem_bytes_per_block\": 1600}", &one, 0, 0, false);
    int smem = 0, global = 0;
    int64_t peak = 0;
    for (int i = 0; i < p->pages.n_pages; i++) {
        const ir_page *a = &p->pages.pages[i];
        if (a->space != IR_SMEM) {
            global++;
            continue;
        }
        smem++;
        int64_t sum = 0;
        for (int j = 0; j < p->pages.n_pages; j++) {
            const ir_page *b = &p->pages.pages[j];
            if (b->space == IR_SMEM && b->live_start <= a->live_start
                && a->live_start <= b->live_end)
                sum += b->nbytes;
        }
        if (sum > peak)
            peak = sum;
    }
    cr_assert_gt(smem, 0);
    cr_assert_gt(global, 0);
    cr_assert_leq(peak, 1600);
    check_pages_ordered(p);
    ir_program_free(p);

    /* No budget: nothing in SMEM. */
    p = lower_full("toy", NULL, &one, 0, 0, false);
    for (int i = 0; i < p->n_buffers; i++)
        cr_assert_neq(p->buffers[i].space, IR_SMEM);
    ir_program_free(p);
}

Test(lower_pages, smem_never_holds_a_buffer_touched_by_two_queues)
{
    ir_program *p = lower_simple("toy", "{\"smem_bytes_per_block\": 1048576, "
                                        "\"sm_assignment\": \"round_robin\"}");
    /* Round robin on 132 queues puts every toy task on its own queue: no buffer qualifies. */
    for (int i = 0; i < p->pages.n_pages; i++)
        cr_assert_eq(p->pages.pages[i].space, IR_GLOBAL_SCRATCH);
    ir_program_free(p);
}

/* ---------------------------------------------------------------- refusals: config, opts */

Test(lower_refusals, unknown_config_key_is_refused_naming_it)
{
    ir_config c;
    ir_error err = {0};
    const char *j = "{\"tiling\": {}, \"bogus_knob\": 1}";
    cr_assert_neq(ir_config_read_json(j, strlen(j), true, &c, &err), IR_OK);
    cr_assert_not_null(strstr(err.where, "bogus_knob"));
}

Test(lower_refusals, config_files_are_read_strictly_and_checked)
{
    ir_config c;
    ir_error err = {0};
    cr_assert_eq(lower_config_read_file(DATA "full.json", &c, &err), IR_OK, "%s: %s", err.where,
                 err.why);
    int64_t v;
    cr_assert(ir_config_tiling(&c, "gemv", "N_tile", &v));
    cr_assert_eq(v, 32);
    cr_assert_eq(c.threads_per_block, 512);
    cr_assert_eq(c.n_groups, 1);
    ir_config_free(&c);
    cr_assert_eq(lower_config_read_file(DATA "bad_unknown_key.json", &c, &err), IR_ERR_MALFORMED);
    cr_assert_str_eq(err.where, "config.bogus_knob");
    cr_assert_eq(lower_config_read_file(DATA "bad_tiling_key.json", &c, &err), IR_ERR_UNSUPPORTED);
    cr_assert_str_eq(err.where, "config.tiling.gemv.M_tile");
    cr_assert_eq(lower_config_read_file(DATA "bad_threads.json", &c, &err), IR_ERR_MALFORMED);
    cr_assert_str_eq(err.where, "config.threads_per_block");
    cr_assert_eq(lower_config_read_file(DATA "no_such_file.json", &c, &err), IR_ERR_IO);
}

Test(lower_refusals, unsupported_fusion_group_is_refused_naming_it)
{
    ir_error e = lower_refused("toy", "{\"fusion_grouping\": [[\"gate\", \"up\"], [\"q\", \"k\"]]}",
                               NULL, 0, 0, IR_ERR_UNSUPPORTED);
    cr_assert_str_eq(e.where, "config.fusion_grouping[1]");
    cr_assert_not_null(strstr(e.why, "\"q\", \"k\""));
    e = lower_refused("toy", "{\"fusion_grouping\": [[\"gate\", \"up\", \"down\"]]}", NULL, 0, 0,
                      IR_ERR_UNSUPPORTED);
    cr_assert_str_eq(e.where, "config.fusion_grouping[0]");
}

Test(lower_refusals, an_op_fused_by_two_groups_is_refused_naming_it)
{
    ir_error e = lower_refused("toy", "{\"fusion_grouping\": [[\"gate\", \"up\"], "
                               "[\"mlp_norm\", \"up\", \"gate\"]]}", NULL, 0, 0, IR_ERR_MALFORMED);
    cr_assert_str_eq(e.where, "config.fusion_grouping[1]");
    cr_assert_not_null(strstr(e.why, "\"up\" is already fused by config.fusion_grouping[0]"), "%s",
                       e.why);
    e = lower_refused("toy", "{\"fusion_grouping\": [[\"silu_mul\", \"down\"], "
                      "[\"down\", \"resid_mlp\"]]}", NULL, 0, 0, IR_ERR_MALFORMED);
    cr_assert_not_null(strstr(e.why, "\"down\""), "%s", e.why);
    e = lower_refused("toy", "{\"fusion_grouping\": [[\"gate\", \"gate\"]]}", NULL, 0, 0,
                      IR_ERR_UNSUPPORTED);
    cr_assert_str_eq(e.where, "config.fusion_grouping[0]");
}

Test(lower_knobs, stage_tiles_sizes_each_projection_stage_to_about_that_many_tiles)
{
    /* llama-3.2-1b: q 2048 + k 512 + v 512 rows -> width ceil(3072/132) = 24; o and down 2048
     * rows -> 16; fused gate/up 8192 rows -> 64; lm_head 128256 rows -> 972 */
    ir_program *p = lower_simple("llama-3.2-1b", "{\"tiling\": {\"gemv\": {\"stage_tiles\": 132}}, "
                                 "\"fusion_grouping\": [[\"gate\", \"up\"]]}");
    cr_assert_eq(int_param(find_task(p, "L0.q_proj[0]"), "N_tile"), 24);
    cr_assert_eq(count_tasks(p, "L0.q_proj[", IR_OP_GEMV_TILE), 86);
    cr_assert_eq(int_param(find_task(p, "L0.q_proj[85]"), "N_tile"), 8);
    cr_assert_eq(count_tasks(p, "L0.k_proj[", IR_OP_GEMV_TILE), 22);
    cr_assert_eq(int_param(find_task(p, "L0.o_proj[0]"), "N_tile"), 16);
    cr_assert_eq(count_tasks(p, "L0.o_proj[", IR_OP_GEMV_TILE), 128);
    cr_assert_eq(count_tasks(p, "L0.gate_up_proj[", IR_OP_FUSED), 128);
    cr_assert_eq(count_tasks(p, "L0.down_proj[", IR_OP_GEMV_TILE), 128);
    cr_assert_eq(int_param(find_task(p, "lm_head[0]"), "N_tile"), 972);
    ir_program_free(p);
}

Test(lower_knobs, fusion_groups_replace_norms_adds_silu_and_rope_append_by_fused_tiles)
{
    ir_program *p = lower_simple("toy", "{\"fusion_grouping\": [[\"attn_norm\", \"q\", \"k\", \"v\"], "
                                 "[\"mlp_norm\", \"gate\", \"up\"], [\"o\", \"resid_attn\"], "
                                 "[\"silu_mul\", \"down\", \"resid_mlp\"], [\"rope_k\", \"kv_append_k\"], "
                                 "[\"final_norm\", \"lm_head\"]]}");
    for (int i = 0; i < p->n_tasks; i++) {
        ir_op op = p->tasks[i].op;
        cr_assert(op != IR_OP_RMSNORM && op != IR_OP_ADD && op != IR_OP_SILU_MUL,
                  "%s left unfused", p->tasks[i].label);
    }
    const ir_task *q = find_task(p, "L1.q_proj[0]");
    cr_assert_eq(q->op, IR_OP_FUSED);
    cr_assert_eq(int_param(q, "recipe"), IR_RECIPE_NORM_GEMV);
    cr_assert_eq(q->inputs[0], find_buffer(p, "L0.out"));
    cr_assert_eq(q->inputs[1], find_buffer(p, "model.layers.1.input_layernorm.weight"));
    const ir_task *o = find_task(p, "L1.o_proj[0]");
    cr_assert_eq(o->op, IR_OP_GEMV_TILE);
    cr_assert_eq(o->n_inputs, 3);
    cr_assert_eq(o->inputs[2], find_buffer(p, "L0.out"));    /* the residual as bias */
    cr_assert_eq(o->outputs[0], find_buffer(p, "L1.resid_attn"));
    cr_assert_eq(o->n_waits, 2);                             /* attention and the residual */
    const ir_task *gu = find_task(p, "L1.gate_up_proj[0]");
    cr_assert_eq(int_param(gu, "recipe"), IR_RECIPE_NORM_GEMV_PAIR);
    const ir_task *d = find_task(p, "L1.down_proj[0]");
    cr_assert_eq(int_param(d, "recipe"), IR_RECIPE_SILU_GEMV);
    cr_assert_eq(d->n_inputs, 4);
    cr_assert_eq(d->outputs[0], find_buffer(p, "L1.out"));
    cr_assert_eq(d->n_waits, 2);       /* gate/up tiles and the o tiles (gate and up share one) */
    const ir_task *ra = find_task(p, "L1.rope_append_k");
    cr_assert_eq(int_param(ra, "recipe"), IR_RECIPE_ROPE_APPEND);
    cr_assert_eq(ra->outputs[0], find_buffer(p, "L1.k_cache"));
    cr_assert_eq(find_buffer(p, "L1.k_rope"), -1);
    cr_assert_eq(int_param(find_task(p, "lm_head[0]"), "recipe"), IR_RECIPE_NORM_GEMV);
    ir_program_free(p);
}

/* ["rope_q","attention"] with kv_heads 1 on the 1B model: one FUSED recipe 6 task per KV head
 * on the unrotated q, k, v, waiting for the projections only; no rope_q; the appends stay. */
Test(lower_knobs, rope_attention_group_splits_attention_by_kv_head)
{
    ir_program *p = lower_simple("llama-3.2-1b", "{\"tiling\": {\"attention\": {\"kv_heads\": 1}}, "
                                 "\"fusion_grouping\": [[\"rope_q\", \"attention\"]]}");
    cr_assert_eq(count_tasks(p, "L3.attention[", IR_OP_FUSED), 8);
    cr_assert_eq(count_tasks(p, "L3.rope_q", IR_OP_COUNT), 0);
    cr_assert_eq(find_buffer(p, "L3.q_rope"), -1);
    cr_assert_not_null(find_task(p, "L3.kv_append_k"));
    const ir_task *t = find_task(p, "L3.attention[5]");
    cr_assert_not_null(t);
    cr_assert_eq(int_param(t, "recipe"), IR_RECIPE_ROPE_ATTENTION);
    cr_assert_eq(int_param(t, "kv_head_off"), 5);
    cr_assert_eq(int_param(t, "kv_heads"), 1);
    cr_assert_eq(t->n_inputs, 5);
    cr_assert_eq(t->inputs[0], find_buffer(p, "L3.q"));
    cr_assert_eq(t->inputs[1], find_buffer(p, "L3.k"));
    cr_assert_eq(t->inputs[2], find_buffer(p, "L3.v"));
    cr_assert_eq(t->inputs[3], find_buffer(p, "L3.k_cache"));
    cr_assert_eq(t->outputs[0], find_buffer(p, "L3.attn"));
    cr_assert_eq(t->n_waits, 3);                    /* q, k and v tiles; not the appends */
    ir_box b;
    ir_error err = {0};
    cr_assert_eq(ir_task_footprint(p, t, false, 3, &b, &err), IR_OK);
    int64_t lo[IR_MAX_RANK], hi[IR_MAX_RANK];
    ir_box_eval(&b, 40, lo, hi);
    cr_assert(lo[0] == 0 && hi[0] == 40 && lo[1] == 320 && hi[1] == 384, "kc box [%lld,%lld)x[%lld,%lld)",
              (long long)lo[0], (long long)hi[0], (long long)lo[1], (long long)hi[1]);
    cr_assert_eq(ir_task_footprint(p, t, true, 0, &b, &err), IR_OK);
    ir_box_eval(&b, 40, lo, hi);
    cr_assert(lo[1] == 5 * 4 * 64 && hi[1] == 6 * 4 * 64, "o columns [%lld, %lld)",
              (long long)lo[1], (long long)hi[1]);
    const ir_task *o = find_task(p, "L3.o_proj[0]");
    cr_assert_eq(o->waits[0].threshold, 8);
    ir_program_free(p);
    /* kv_heads 3 of 8: tasks of 3, 3 and 2 heads */
    p = lower_simple("llama-3.2-1b", "{\"tiling\": {\"attention\": {\"kv_heads\": 3}}}");
    cr_assert_eq(count_tasks(p, "L0.attention[", IR_OP_ATTENTION_TILE), 3);
    cr_assert_eq(int_param(find_task(p, "L0.attention[2]"), "kv_heads"), 2);
    ir_program_free(p);
}

Test(lower_refusals, rope_attention_cannot_split_the_window)
{
    ir_error e = lower_refused("toy", "{\"tiling\": {\"attention\": {\"kv_block\": 16}}, "
                               "\"fusion_grouping\": [[\"attention\", \"rope_q\"]]}", NULL, 0, 0,
                               IR_ERR_UNSUPPORTED);
    cr_assert_str_eq(e.where, "config.fusion_grouping[0]");
    cr_assert(strstr(e.why, "kv_block"), "%s", e.why);
}

Test(lower_refusals, unknown_tiling_archetype_or_key_is_refused)
{
    ir_error e = lower_refused("toy", "{\"tiling\": {\"gemm\": {\"M_tile\": 4}}}", NULL, 0, 0,
                               IR_ERR_UNSUPPORTED);
    cr_assert_str_eq(e.where, "config.tiling.gemm");
    e = lower_refused("toy", "{\"tiling\": {\"gemv\": {\"base_width\": 32}}}", NULL, 0, 0,
                      IR_ERR_UNSUPPORTED);
    cr_assert_str_eq(e.where, "config.tiling.gemv.base_width");
    e = lower_refused("toy", "{\"tiling\": {\"attention\": {\"N_tile\": 32}}}", NULL, 0, 0,
                      IR_ERR_UNSUPPORTED);
    cr_assert_str_eq(e.where, "config.tiling.attention.N_tile");
}

Test(lower_refusals, out_of_range_scalar_knobs_are_refused)
{
    ir_error e = lower_refused("toy", "{\"threads_per_block\": 48}", NULL, 0, 0, IR_ERR_MALFORMED);
    cr_assert_str_eq(e.where, "config.threads_per_block");
    /* over 1024 the config reader already refuses it, at the same place */
    ir_config rc;
    ir_error err = {0};
    const char *j = "{\"threads_per_block\": 2048}";
    cr_assert_eq(ir_config_read_json(j, strlen(j), true, &rc, &err), IR_ERR_MALFORMED);
    cr_assert_str_eq(err.where, "config.threads_per_block");
    lower_model m;
    lower_model_preset("toy", &m, &err);
    ir_config c;
    ir_config_default(&c);
    c.pipelining_depth = 65;
    cr_assert_eq(lower_config_check(&c, &err), IR_ERR_MALFORMED);
    cr_assert_str_eq(err.where, "config.pipelining_depth");
    ir_config_default(&c);
    c.smem_bytes_per_block = -1;
    cr_assert_eq(lower_config_check(&c, &err), IR_ERR_MALFORMED);
    cr_assert_str_eq(err.where, "config.smem_bytes_per_block");
}

Test(lower_refusals, a_tile_size_that_explodes_the_task_count_is_refused)
{
    ir_error e = lower_refused("llama-3-70b", "{\"tiling\": {\"gemv\": {\"N_tile\": 1}}}", NULL,
                               0, 0, IR_ERR_UNSUPPORTED);
    cr_assert_str_eq(e.where, "config.tiling.gemv.N_tile");
    cr_assert_not_null(strstr(e.why, "tasks"));
}

Test(lower_refusals, pos_and_max_seq_out_of_range_are_refused)
{
    ir_error e = lower_refused("toy", NULL, NULL, 256, 0, IR_ERR_MALFORMED);
    cr_assert_str_eq(e.where, "pos");
    e = lower_refused("toy", NULL, NULL, -1, 0, IR_ERR_MALFORMED);
    cr_assert_str_eq(e.where, "pos");
    e = lower_refused("toy", NULL, NULL, 0, 257, IR_ERR_MALFORMED);
    cr_assert_str_eq(e.where, "max_seq");
    cr_assert_not_null(strstr(e.why, "256"));
}

Test(lower_refusals, weight_dtype_other_than_f32_f16_bf16_is_refused)
{
    lower_model m;
    ir_error err = {0};
    lower_model_preset("toy", &m, &err);
    ir_config c;
    ir_config_default(&c);
    lower_opts o;
    lower_opts_default(&o);
    o.dtype = IR_I8;
    ir_program *p = NULL;
    cr_assert_eq(lower_program(&m, &c, ir_target_builtin("h100"), &o, &p, &err),
                 IR_ERR_UNSUPPORTED);
    cr_assert_str_eq(err.where, "dtype");
    o.dtype = IR_F16;
    cr_assert_eq(lower_program(&m, &c, ir_target_builtin("h100"), &o, &p, &err), IR_OK);
    cr_assert_eq(p->buffers[find_buffer(p, "lm_head.weight")].dtype, IR_F16);
    cr_assert_eq(p->buffers[find_buffer(p, "L0.k_cache")].dtype, IR_F32);
    ir_program_free(p);
}

/* ---------------------------------------------------------------- models */

Test(lower_models, unknown_preset_is_refused_listing_the_presets)
{
    lower_model m;
    ir_error err = {0};
    cr_assert_eq(lower_model_load("llama-9", &m, &err), IR_ERR_UNSUPPORTED);
    cr_assert_not_null(strstr(err.why, "llama-3-70b"));
}

Test(lower_models, hf_llama32_config_equals_the_preset)
{
    lower_model a, b;
    ir_error err = {0};
    cr_assert_eq(lower_model_load(DATA "hf_llama32_1b.json", &a, &err), IR_OK, "%s: %s",
                 err.where, err.why);
    cr_assert_eq(lower_model_preset("llama-3.2-1b", &b, &err), IR_OK);
    cr_assert_eq(a.hidden, b.hidden);
    cr_assert_eq(a.n_layers, b.n_layers);
    cr_assert_eq(a.n_heads, b.n_heads);
    cr_assert_eq(a.n_kv_heads, b.n_kv_heads);
    cr_assert_eq(a.head_dim, b.head_dim);
    cr_assert_eq(a.intermediate, b.intermediate);
    cr_assert_eq(a.vocab, b.vocab);
    cr_assert_eq(a.max_pos, b.max_pos);
    cr_assert_eq(a.tie_embeddings, true);
    cr_assert_eq(a.rope_llama3, true);
    cr_assert_float_eq(a.rope_factor, 32.0, 1e-12);
    cr_assert_float_eq(a.rope_low_freq, 1.0, 1e-12);
    cr_assert_float_eq(a.rope_high_freq, 4.0, 1e-12);
    cr_assert_eq(a.rope_orig_max, 8192);
    cr_assert_float_eq(a.rope_theta, 500000.0, 1e-6);
    cr_assert_float_eq(a.rms_eps, 1e-5, 1e-15);
}

Test(lower_models, hf_smollm2_config_derives_head_dim)
{
    lower_model a;
    ir_error err = {0};
    cr_assert_eq(lower_model_load(DATA "hf_smollm2_135m.json", &a, &err), IR_OK);
    cr_assert_eq(a.head_dim, 64);
    cr_assert_eq(a.n_kv_heads, 3);
    cr_assert_eq(a.rope_llama3, false);
    cr_assert(a.tie_embeddings);
}

Test(lower_models, explicit_head_dim_shapes_q_and_o_projections)
{
    ir_program *p = lower_simple(DATA "hf_explicit_head_dim.json", NULL);
    int wq = find_buffer(p, "model.layers.0.self_attn.q_proj.weight");
    int wo = find_buffer(p, "model.layers.0.self_attn.o_proj.weight");
    cr_assert_eq(p->buffers[wq].shape[0], 128);
    cr_assert_eq(p->buffers[wq].shape[1], 96);
    cr_assert_eq(p->buffers[wo].shape[0], 96);
    cr_assert_eq(p->buffers[wo].shape[1], 128);
    cr_assert_eq(int_param(find_task(p, "L0.o_proj[0]"), "K"), 128);
    cr_assert_eq(p->decode.max_seq, 512);
    ir_program_free(p);
}

static void expect_hf_refusal(const char *file, ir_status st, const char *where, const char *why)
{
    lower_model m;
    ir_error err = {0};
    ir_status s = lower_model_load(file, &m, &err);
    cr_assert_eq(s, st, "%s: expected %s, got %s (%s: %s)", file, ir_status_name(st),
                 ir_status_name(s), err.where, err.why);
    cr_assert_str_eq(err.where, where, "%s", file);
    cr_assert_not_null(strstr(err.why, why), "%s: why was '%s'", file, err.why);
}

Test(lower_models, hf_refuses_mixture_of_experts)
{
    expect_hf_refusal(DATA "hf_llama_moe.json", IR_ERR_UNSUPPORTED, "num_local_experts",
                      "mixture-of-experts");
    expect_hf_refusal(DATA "hf_mixtral_moe.json", IR_ERR_UNSUPPORTED, "num_local_experts",
                      "mixture-of-experts");
}

Test(lower_models, hf_refuses_latent_attention)
{
    expect_hf_refusal(DATA "hf_llama_mla.json", IR_ERR_UNSUPPORTED, "kv_lora_rank", "MLA");
}

Test(lower_models, hf_refuses_biases)
{
    expect_hf_refusal(DATA "hf_attention_bias.json", IR_ERR_UNSUPPORTED, "attention_bias",
                      "biases");
    expect_hf_refusal(DATA "hf_mlp_bias.json", IR_ERR_UNSUPPORTED, "mlp_bias", "biases");
}

Test(lower_models, hf_refuses_unknown_rope_scaling_naming_the_type)
{
    expect_hf_refusal(DATA "hf_rope_yarn.json", IR_ERR_UNSUPPORTED, "rope_scaling.rope_type",
                      "\"yarn\"");
    expect_hf_refusal(DATA "hf_rope_linear.json", IR_ERR_UNSUPPORTED, "rope_scaling.type",
                      "\"linear\"");
    const char *dyn = "{\"architectures\": [\"LlamaForCausalLM\"], \"hidden_size\": 64, "
                      "\"intermediate_size\": 128, \"num_attention_heads\": 4, "
                      "\"num_hidden_layers\": 2, \"vocab_size\": 256, \"rope_scaling\": "
                      "{\"rope_type\": \"dynamic\", \"factor\": 2.0}}";
    lower_model m;
    ir_error err = {0};
    cr_assert_eq(lower_model_from_hf_json(dyn, strlen(dyn), &m, &err), IR_ERR_UNSUPPORTED);
    cr_assert_not_null(strstr(err.why, "\"dynamic\""));
}

Test(lower_models, hf_refuses_inconsistent_dims)
{
    expect_hf_refusal(DATA "hf_hidden_mismatch.json", IR_ERR_UNSUPPORTED, "hidden_size",
                      "no head_dim");
    expect_hf_refusal(DATA "hf_gqa_mismatch.json", IR_ERR_UNSUPPORTED, "num_key_value_heads",
                      "not a multiple");
}

Test(lower_models, hf_refuses_other_architectures_and_activations)
{
    expect_hf_refusal(DATA "hf_qwen2.json", IR_ERR_UNSUPPORTED, "architectures[0]",
                      "Qwen2ForCausalLM");
    expect_hf_refusal(DATA "hf_gelu.json", IR_ERR_UNSUPPORTED, "hidden_act", "\"gelu\"");
}

Test(lower_models, hf_refuses_rope_layout_variants)
{
    const char *base = "{\"architectures\": [\"LlamaForCausalLM\"], \"hidden_size\": 64, "
                       "\"intermediate_size\": 128, \"num_attention_heads\": 4, "
                       "\"num_hidden_layers\": 2, \"vocab_size\": 256, ";
    struct {
        const char *tail, *where;
    } cases[] = {
        {"\"rope_interleaved\": true}", "rope_interleaved"},
        {"\"partial_rotary_factor\": 0.5}", "partial_rotary_factor"},
        {"\"no_rope_layers\": [1, 0]}", "no_rope_layers"},
        {"\"sliding_window\": 4096}", "sliding_window"},
        {"\"quantization_config\": {\"bits\": 4}}", "quantization_config"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char j[512];
        snprintf(j, sizeof j, "%s%s", base, cases[i].tail);
        lower_model m;
        ir_error err = {0};
        cr_assert_eq(lower_model_from_hf_json(j, strlen(j), &m, &err), IR_ERR_UNSUPPORTED, "%s",
                     cases[i].where);
        cr_assert_str_eq(err.where, cases[i].where);
    }
    /* The same keys with their neutral values are accepted. */
    char j[512];
    snprintf(j, sizeof j, "%s%s", base,
             "\"rope_interleaved\": false, \"partial_rotary_factor\": 1.0, "
             "\"sliding_window\": null, \"rope_scaling\": {\"rope_type\": \"default\"}}");
    lower_model m;
    ir_error err = {0};
    cr_assert_eq(lower_model_from_hf_json(j, strlen(j), &m, &err), IR_OK, "%s: %s", err.where,
                 err.why);
    cr_assert_eq(m.head_dim, 16);
    cr_assert_eq(m.rope_llama3, false);
}

Test(lower_models, hf_malformed_json_and_missing_fields_are_malformed)
{
    lower_model m;
    ir_error err = {0};
    const char *bad = "{\"hidden_size\": 64,";
    cr_assert_eq(lower_model_from_hf_json(bad, strlen(bad), &m, &err), IR_ERR_MALFORMED);
    const char *missing = "{\"architectures\": [\"LlamaForCausalLM\"], \"num_hidden_layers\": 2, "
                          "\"num_attention_heads\": 4, \"intermediate_size\": 8, "
                          "\"vocab_size\": 9}";
    cr_assert_eq(lower_model_from_hf_json(missing, strlen(missing), &m, &err), IR_ERR_MALFORMED);
    cr_assert_str_eq(err.where, "hidden_size");
    const char *typed = "{\"architectures\": [\"LlamaForCausalLM\"], \"hidden_size\": \"64\"}";
    cr_assert_eq(lower_model_from_hf_json(typed, strlen(typed), &m, &err), IR_ERR_MALFORMED);
    cr_assert_str_eq(err.where, "hidden_size");
    cr_assert_eq(lower_model_load("tests/data/lower/no_such_config.json", &m, &err), IR_ERR_IO);
}

/* ---------------------------------------------------------------- end to end */

/* Lower m under cfg, run `steps` greedy launches on the reference VM (queue heads picked
 * pseudo-randomly) and compare every launch's logits with the eager forward. */
static void expect_vm_matches_eager(const lower_model *m, const char *cfg, int64_t num_sms,
                                    int steps)
{
    ir_error e = {0};
    ir_config c = config_from(cfg);
    ir_target t = target_with_sms(num_sms);
    lower_opts o;
    lower_opts_default(&o);
    o.dtype = IR_F32;
    o.max_seq = 32;
    o.sample_argmax = true;
    ir_program *p = NULL;
    cr_assert_eq(lower_program(m, &c, &t, &o, &p, &e), IR_OK, "%s: %s", e.where, e.why);
    ir_config_free(&c);
    char path[] = "/tmp/amk_lower_weights_XXXXXX";
    int fd = mkstemp(path);
    cr_assert_geq(fd, 0);
    close(fd);
    cr_assert_eq(refvm_weights_random(m, 11, IR_F32, path, &e), IR_OK, "%s: %s", e.where, e.why);
    refvm_st *st = NULL;
    cr_assert_eq(refvm_st_open(path, &st, &e), IR_OK, "%s: %s", e.where, e.why);
    refvm_opts ro;
    refvm_opts_default(&ro);
    ro.tie_embeddings = m->tie_embeddings;
    ro.interleave = true;
    ro.interleave_seed = 5;
    refvm *vm = NULL;
    refvm_eager *eg = NULL;
    cr_assert_eq(refvm_new(p, &ro, &vm, &e), IR_OK, "%s: %s", e.where, e.why);
    cr_assert_eq(refvm_bind(vm, st, &e), IR_OK, "%s: %s", e.where, e.why);
    cr_assert_eq(refvm_eager_new(m, st, 32, &eg, &e), IR_OK, "%s: %s", e.where, e.why);
    int32_t tok = 3;
    for (int pos = 0; pos < steps; pos++) {
        refvm_result r;
        cr_assert_eq(refvm_step(vm, tok, pos, &r, &e), IR_OK, "%s: %s", e.where, e.why);
        cr_assert_eq(r.outcome, REFVM_DONE, "pos %d: %s", pos, r.detail ? r.detail : "");
        int64_t n;
        const float *lv = refvm_logits(vm, &n), *le;
        cr_assert_eq(refvm_eager_forward(eg, tok, pos, &le, &e), IR_OK);
        refvm_gate_cmp g = refvm_gate_compare(lv, le, n, REFVM_GATE_REL_TOL);
        cr_assert(g.pass, "pos %d: max err %g of %g, top %d vs %d", pos, g.max_abs_err,
                  g.max_abs_ref, g.top_a, g.top_b);
        tok = refvm_next_token(vm);
        cr_assert_eq(tok, g.top_b);
        refvm_result_free(&r);
    }
    refvm_eager_free(eg);
    refvm_free(vm);
    refvm_st_close(st);
    unlink(path);
    ir_program_free(p);
}

Test(lower_end_to_end, lowered_programs_compute_the_model_on_the_reference_vm)
{
    lower_model m;
    ir_error e = {0};
    cr_assert_eq(lower_model_preset("toy", &m, &e), IR_OK);
    expect_vm_matches_eager(&m, NULL, 132, 12);
    expect_vm_matches_eager(&m,
                            "{\"tiling\": {\"gemv\": {\"N_tile\": 24}, \"attention\": "
                            "{\"kv_block\": 5}}, \"fusion_grouping\": [[\"gate\", \"up\"]], "
                            "\"sm_assignment\": \"round_robin\", \"smem_bytes_per_block\": 2048}",
                            3, 12);
    /* GQA 4:1, tied embeddings, explicit head_dim != H / nh, llama3 RoPE scaling. */
    const char *hf = "{\"architectures\": [\"LlamaForCausalLM\"], \"hidden_size\": 48, "
                     "\"head_dim\": 16, \"intermediate_size\": 80, \"num_attention_heads\": 4, "
                     "\"num_hidden_layers\": 2, \"num_key_value_heads\": 1, \"vocab_size\": 97, "
                     "\"max_position_embeddings\": 256, \"rope_theta\": 500000.0, "
                     "\"tie_word_embeddings\": true, \"rope_scaling\": {\"rope_type\": "
                     "\"llama3\", \"factor\": 8.0, \"low_freq_factor\": 1.0, "
                     "\"high_freq_factor\": 4.0, \"original_max_position_embeddings\": 16}}";
    cr_assert_eq(lower_model_from_hf_json(hf, strlen(hf), &m, &e), IR_OK, "%s: %s", e.where,
                 e.why);
    expect_vm_matches_eager(&m, "{\"page_allocation\": \"linear\", \"tiling\": {\"gemv\": "
                                "{\"N_tile\": 7}, \"attention\": {\"kv_block\": 4}}}",
                            4, 12);
}

static verify_verdict verdict_of(const ir_program *p, char *kind, size_t kind_len)
{
    verify_opts vo;
    verify_opts_default(&vo);
    verify_result r;
    ir_error e = {0};
    cr_assert_eq(verify_program(p, &vo, &r, &e), IR_OK, "%s: %s", e.where, e.why);
    verify_verdict v = r.verdict;
    snprintf(kind, kind_len, "%s", r.witness_kind);
    verify_result_free(&r);
    return v;
}

Test(lower_end_to_end, the_verifier_proves_lowered_programs_and_refutes_over_cap_smem)
{
    struct {
        const char *cfg;
        int64_t sms, pos;
    } cases[] = {
        {NULL, 132, 0},
        {"{\"tiling\": {\"gemv\": {\"N_tile\": 24}, \"attention\": {\"kv_block\": 16}}, "
         "\"fusion_grouping\": [[\"gate\", \"up\"]], \"page_allocation\": \"linear\", "
         "\"smem_bytes_per_block\": 4096}",
         2, 100},
        {"{\"sm_assignment\": \"round_robin\", \"smem_bytes_per_block\": 1600}", 1, 7},
        {"{\"page_allocation\": \"none\", \"threads_per_block\": 1024}", 5, 255},
    };
    char kind[32];
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        ir_target t = target_with_sms(cases[i].sms);
        ir_program *p = lower_full("toy", cases[i].cfg, &t, cases[i].pos, 0, true);
        cr_assert_eq(verdict_of(p, kind, sizeof kind), VERIFY_PROVED, "case %zu: %s", i, kind);
        ir_program_free(p);
    }
    ir_program *p = lower_simple("toy", "{\"smem_bytes_per_block\": 300000}");
    cr_assert_eq(verdict_of(p, kind, sizeof kind), VERIFY_REFUTED);
    cr_assert_str_eq(kind, "smem_cap");
    ir_program_free(p);
}

/* ---------------------------------------------------------------- determinism, CLI */

Test(lower_output, two_lowerings_give_byte_identical_json)
{
    const char *cfg = "{\"tiling\": {\"gemv\": {\"N_tile\": 512}, \"attention\": {\"kv_block\": "
                      "256}}, \"fusion_grouping\": [[\"gate\", \"up\"]], \"page_allocation\": "
                      "\"graph_color\", \"smem_bytes_per_block\": 65536}";
    ir_program *a = lower_full("llama-3-8b", cfg, ir_target_builtin("h200"), 33, 0, true);
    ir_program *b = lower_full("llama-3-8b", cfg, ir_target_builtin("h200"), 33, 0, true);
    size_t la, lb;
    char *ja = to_json(a, &la), *jb = to_json(b, &lb);
    cr_assert_eq(la, lb);
    cr_assert_eq(memcmp(ja, jb, la), 0);
    free(ja);
    free(jb);
    ir_program_free(a);
    ir_program_free(b);
}

Test(lower_output, every_task_is_in_exactly_one_queue_after_its_dependencies)
{
    ir_program *p = lower_simple("smollm2-135m", "{\"tiling\": {\"gemv\": {\"N_tile\": 96}}}");
    int32_t nq, *start, *tasks;
    ir_error err = {0};
    cr_assert_eq(ir_program_queues(p, IR_ORDER_LIST, &nq, &start, &tasks, &err), IR_OK,
                 "%s: %s", err.where, err.why);
    cr_assert_eq(nq, 132);
    cr_assert_eq(start[nq], p->n_tasks);
    free(start);
    free(tasks);
    for (int i = 0; i < p->n_tasks; i++)
        for (int w = 0; w < p->tasks[i].n_waits; w++)
            for (int u = i; u < p->n_tasks; u++)
                cr_assert_neq(p->tasks[u].out_counter, p->tasks[i].waits[w].counter,
                              "task %d waits for a task at or after it", i);
    ir_program_free(p);
}

/* ---------------------------------------------------------------- the amk dialect (SPEC 8.8) */

static ir_program *lower_amk(const char *model, const char *config_json, int64_t max_seq,
                             bool argmax)
{
    return lower_in(model, config_json, ir_target_builtin("h100"), 0, max_seq, argmax,
                    LOWER_DIALECT_AMK);
}

static ir_error lower_amk_refused(const char *model, const char *config_json)
{
    lower_model m;
    ir_error err = {0};
    cr_assert_eq(lower_model_load(model, &m, &err), IR_OK);
    ir_config c = config_from(config_json);
    lower_opts o;
    lower_opts_default(&o);
    o.dialect = LOWER_DIALECT_AMK;
    ir_program *p = NULL;
    cr_assert_eq(lower_program(&m, &c, ir_target_builtin("h100"), &o, &p, &err),
                 IR_ERR_UNSUPPORTED, "%s: %s", err.where, err.why);
    cr_assert_null(p);
    ir_config_free(&c);
    return err;
}

static char *file_text(const char *path, size_t *len)
{
    char *text;
    ir_error err = {0};
    cr_assert_eq(ir_read_text_file(path, (size_t)1 << 30, &text, len, &err), IR_OK, "%s", err.why);
    return text;
}

/* The op forms AMK's validate() and reference ops need, on every task and buffer of p. */
static void assert_amk_forms(const ir_program *p, const lower_model *m)
{
    int tok = find_buffer(p, "token_id"), pos = find_buffer(p, "pos"), rid = find_buffer(p, "reshape_id0");
    cr_assert(tok >= 0 && pos >= 0 && rid >= 0, "%s: token_id, pos, reshape_id0 inputs", m->name);
    cr_assert_eq(find_buffer(p, "tokens"), -1);
    for (int b = 0; b < p->n_buffers; b++) {
        const ir_buffer *bb = &p->buffers[b];
        if (b == tok || b == pos || b == rid)
            cr_assert(bb->kind == IR_IO_INPUT && bb->dtype == IR_I32 && bb->rank == 1 &&
                      bb->shape[0] == 1);
        if (bb->kind == IR_KV_CACHE)
            cr_assert(bb->rank == 3 && bb->shape[0] == p->decode.max_seq &&
                      bb->shape[1] == m->n_kv_heads && bb->shape[2] == m->head_dim,
                      "%s: cache %s is not [S, n_kv, head_dim]", m->name, bb->name);
    }
    int ropes = 0, appends = 0;
    for (int i = 0; i < p->n_tasks; i++) {
        const ir_task *t = &p->tasks[i];
        cr_assert_neq(t->op, IR_OP_FUSED, "%s: FUSED task %s", m->name, t->label);
        cr_assert_leq(t->n_outputs, 1);
        for (int w = 0; w < t->n_waits; w++)
            cr_assert_geq(t->waits[w].threshold, 1);
        if (t->op == IR_OP_ROPE) {
            ropes++;
            const ir_buffer *x = &p->buffers[t->inputs[0]];
            cr_assert(t->n_inputs == 2 && t->inputs[1] == pos, "%s: %s is not ROPE [x, pos]",
                      m->name, t->label);
            cr_assert(x->shape[x->rank - 1] == m->head_dim && (x->rank == 2 || x->rank == 3),
                      "%s: %s rotates a tensor that is not head-shaped", m->name, t->label);
            cr_assert_eq(ir_task_param(t, "pos"), NULL, "ROPE takes pos from its input");
            /* its x is the EMBED reshape of the flat projection, ids = reshape_id0 */
            const ir_task *r = &p->tasks[i - 1];
            cr_assert(r->op == IR_OP_EMBED && r->inputs[0] == rid && r->outputs[0] == t->inputs[0]);
        }
        if (t->op == IR_OP_KV_APPEND) {
            appends++;
            cr_assert(t->n_inputs == 2 && t->inputs[1] == t->outputs[0] &&
                      p->buffers[t->outputs[0]].kind == IR_KV_CACHE,
                      "%s: %s is not KV_APPEND [src, cache] -> [cache]", m->name, t->label);
            const ir_buffer *src = &p->buffers[t->inputs[0]];
            cr_assert_eq(src->shape[0], 1, "KV_APPEND sources are one row");
        }
        if (t->op == IR_OP_ATTENTION_COMBINE)
            cr_assert(t->n_inputs >= 2 && t->n_inputs <= LOWER_AMK_MAX_PARTIALS);
    }
    cr_assert_eq(ropes, 2 * m->n_layers);
    cr_assert_eq(appends, 2 * m->n_layers);
    cJSON *meta = cJSON_Parse(p->meta_json);
    cr_assert_str_eq(cJSON_GetObjectItem(meta, "dialect")->valuestring, "amk");
    cJSON_Delete(meta);
}

Test(lower_amk, every_preset_uses_the_op_forms_amk_validates)
{
    for (int i = 0; i < lower_preset_count(); i++) {
        lower_model m;
        ir_error err = {0};
        cr_assert_eq(lower_model_preset(lower_preset_at(i), &m, &err), IR_OK);
        ir_program *p = lower_amk(lower_preset_at(i), NULL, 0, i == 0);
        assert_amk_forms(p, &m);
        ir_program_free(p);
    }
}

Test(lower_amk, the_default_dialect_is_ours_and_unchanged)
{
    lower_opts o;
    lower_opts_default(&o);
    cr_assert_eq(o.dialect, LOWER_DIALECT_OURS);
    lower_dialect d;
    cr_assert(lower_dialect_parse("amk", &d) && d == LOWER_DIALECT_AMK);
    cr_assert(lower_dialect_parse("ours", &d) && d == LOWER_DIALECT_OURS);
    cr_assert_not(lower_dialect_parse("AMK", &d));
    ir_program *p = lower_simple("toy", NULL);
    cr_assert_geq(find_buffer(p, "tokens"), 0);
    cr_assert_eq(find_buffer(p, "pos"), -1);
    cr_assert_eq(p->buffers[find_buffer(p, "L0.k_cache")].rank, 2);
    cr_assert_null(strstr(p->meta_json, "dialect"));
    ir_program_free(p);
}

/* Written, read back by our reader and written again: the same bytes, and no warning (every key
 * of the amk dialect is one our reader knows). */
Test(lower_amk, output_round_trips_through_our_reader_byte_identical)
{
    const char *cfgs[] = {NULL, "{\"tiling\": {\"attention\": {\"kv_block\": 64}}}",
                          "{\"fusion_grouping\": [[\"gate\", \"up\"]]}"};
    const char *models[] = {"toy", "toy", "llama-3.2-1b"};
    for (int i = 0; i < 3; i++) {
        ir_program *p = lower_amk(models[i], cfgs[i], 0, true);
        size_t la, lb;
        char *a = to_json(p, &la);
        ir_program *q = NULL;
        ir_error err = {0};
        cr_assert_eq(ir_read_json(a, la, NULL, &q, &err), IR_OK, "%s: %s at %s: %s", models[i],
                     ir_status_name(err.status), err.where, err.why);
        cr_assert_eq(q->warnings.n, 0, "%s: %s", models[i], q->warnings.n ? q->warnings.items[0] : "");
        char *b = to_json(q, &lb);
        cr_assert_eq(la, lb, "%s: %zu vs %zu bytes", models[i], la, lb);
        cr_assert_eq(memcmp(a, b, la), 0, "%s: rewritten JSON differs", models[i]);
        free(a);
        free(b);
        ir_program_free(q);
        ir_program_free(p);
    }
}

/* kv_block B over S rows: nb = ceil(S/B) ATTENTION_TILEs (flags 2, no m_off) each writing its
 * own [n_heads, head_dim+2] partial, one ATTENTION_COMBINE of all nb; nb = 1 is the single
 * whole-window tile. */
Test(lower_amk, split_attention_writes_one_partial_per_tile_and_combines_them)
{
    ir_program *p = lower_amk("toy", "{\"tiling\": {\"attention\": {\"kv_block\": 64}}}", 256, false);
    cr_assert_eq(count_tasks(p, "L0.attention[", IR_OP_ATTENTION_TILE), 4);
    const ir_task *c = find_task(p, "L0.attention_combine");
    cr_assert_not_null(c);
    cr_assert_eq(c->n_inputs, 4);
    for (int b = 0; b < 4; b++) {
        char label[32];
        snprintf(label, sizeof label, "L0.attention[%d]", b);
        const ir_task *t = find_task(p, label);
        cr_assert_eq(int_param(t, "flags"), 2);
        cr_assert_null(ir_task_param(t, "m_off"));
        cr_assert_eq(int_param(t, "kv_start"), 64 * b);
        const ir_buffer *part = &p->buffers[t->outputs[0]];
        cr_assert(part->rank == 2 && part->shape[0] == 4 && part->shape[1] == 18, "%s", part->name);
        cr_assert_eq(c->inputs[b], t->outputs[0]);
        cr_assert_eq(t->out_counter, find_task(p, "L0.attention[0]")->out_counter);
    }
    cr_assert_eq(c->waits[0].threshold, 4);
    ir_program_free(p);
    p = lower_amk("toy", "{\"tiling\": {\"attention\": {\"kv_block\": 256}}}", 256, false);
    cr_assert_eq(count_tasks(p, "L0.attention", IR_OP_ATTENTION_COMBINE), 0);
    const ir_task *t = find_task(p, "L0.attention");
    cr_assert_not_null(t);
    cr_assert_null(ir_task_param(t, "flags"));
    cr_assert_eq(int_param(t, "kv_len"), 1);
    ir_program_free(p);
}

/* Every fusion group is lowered unfused and listed in meta.unfused: the same task list as
 * without the groups. */
Test(lower_amk, fusion_groups_are_lowered_unfused_and_listed_in_meta)
{
    ir_program *plain = lower_amk("toy", "{\"tiling\": {\"gemv\": {\"stage_tiles\": 16}, "
                                  "\"attention\": {\"kv_block\": 32}}}", 0, false);
    size_t len;
    char *cfg = file_text(DATA "amk_every_group.json", &len);
    ir_program *p = lower_amk("toy", cfg, 0, false);
    free(cfg);
    cr_assert_eq(p->n_tasks, plain->n_tasks);
    for (int i = 0; i < p->n_tasks; i++) {
        cr_assert_eq(p->tasks[i].op, plain->tasks[i].op);
        cr_assert_str_eq(p->tasks[i].label, plain->tasks[i].label);
    }
    cJSON *meta = cJSON_Parse(p->meta_json);
    const cJSON *unfused = cJSON_GetObjectItem(meta, "unfused");
    cr_assert_eq(cJSON_GetArraySize(unfused), 6);
    cr_assert_str_eq(cJSON_GetArrayItem(cJSON_GetArrayItem(unfused, 1), 0)->valuestring, "rope_k");
    cJSON_Delete(meta);
    cr_assert_null(strstr(plain->meta_json, "unfused"));
    ir_program_free(p);
    ir_program_free(plain);
}

Test(lower_amk, refuses_kv_head_split_and_more_partials_than_one_combine_merges)
{
    ir_error e = lower_amk_refused("toy", "{\"tiling\": {\"attention\": {\"kv_heads\": 1}}}");
    cr_assert_str_eq(e.where, "config.tiling.attention.kv_heads");
    cr_assert(strstr(e.why, "n_kv_heads = 2"), "%s", e.why);
    /* toy: S = 256; kv_block 16 gives 16 tiles, more than one combine's 8 inputs */
    e = lower_amk_refused("toy", "{\"tiling\": {\"attention\": {\"kv_block\": 16}}}");
    cr_assert_str_eq(e.where, "config.tiling.attention.kv_block");
    cr_assert(strstr(e.why, "16 attention tiles") && strstr(e.why, "kv_block >= 32"), "%s", e.why);
    /* kv_heads covering every KV head is no split */
    ir_program *p = lower_amk("toy", "{\"tiling\": {\"attention\": {\"kv_heads\": 2}}}", 0, false);
    cr_assert_null(ir_task_param(find_task(p, "L0.attention"), "kv_head_off"));
    ir_program_free(p);
}

/* AMK's own validate() (tests/data/lower/amk_validate.py, run with every check on) accepts the
 * amk dialect of every preset, and of the small models under every sample config. Skipped,
 * saying why, unless AMK_SRC names an AutoMegaKernel checkout. */
Test(lower_amk, every_preset_passes_amks_own_validate)
{
    const char *src = getenv("AMK_SRC");
    if (!src || !*src)
        cr_skip_test("AMK_SRC is not set (an AutoMegaKernel checkout; SPEC 8.8)");
    char dir[] = "/tmp/amk_test_validate_XXXXXX", cmd[8192], path[256];
    cr_assert_not_null(mkdtemp(dir));
    snprintf(cmd, sizeof cmd, "python3 " DATA "amk_validate.py --amk '%s' --full", src);
    int n = 0;
    for (int i = 0; i < lower_preset_count(); i++) {
        ir_program *p = lower_amk(lower_preset_at(i), NULL, 0, i == 0);
        snprintf(path, sizeof path, "%s/%s.json", dir, lower_preset_at(i));
        ir_error err = {0};
        cr_assert_eq(ir_write_file(p, path, &err), IR_OK, "%s", err.why);
        snprintf(cmd + strlen(cmd), sizeof cmd - strlen(cmd), " %s", path);
        ir_program_free(p);
        n++;
    }
    const char *cfgs[] = {"n_tile_128", "kv_block_64", "fuse_gate_up", "round_robin",
                          "pages_linear", "pages_none", "full", "amk_every_group"};
    const char *models[] = {"toy", DATA "hf_smollm2_135m.json"};   /* 256 KV rows each */
    for (size_t i = 0; i < sizeof cfgs / sizeof cfgs[0]; i++)
        for (size_t j = 0; j < 2; j++) {
            char cfg_path[128];
            size_t len;
            snprintf(cfg_path, sizeof cfg_path, DATA "%s.json", cfgs[i]);
            char *cfg = file_text(cfg_path, &len);
            ir_program *p = lower_amk(models[j], cfg, 256, true);
            free(cfg);
            snprintf(path, sizeof path, "%s/%s_%zu.json", dir, cfgs[i], j);
            ir_error err = {0};
            cr_assert_eq(ir_write_file(p, path, &err), IR_OK, "%s", err.why);
            snprintf(cmd + strlen(cmd), sizeof cmd - strlen(cmd), " %s", path);
            ir_program_free(p);
            n++;
        }
    snprintf(path, sizeof path, "%s/report.txt", dir);
    snprintf(cmd + strlen(cmd), sizeof cmd - strlen(cmd), " > %s 2>&1", path);
    int rc = system(cmd);
    size_t len;
    char *report = file_text(path, &len);
    cr_log_info("AMK validate:\n%s", report);
    cr_assert_eq(rc, 0, "AMK's validate() rejected a program:\n%s", report);
    int ok = 0;
    for (const char *s = report; (s = strstr(s, " ok tasks=")); s++)
        ok++;
    cr_assert_eq(ok, n, "%d of %d programs reported ok:\n%s", ok, n, report);
    free(report);
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    cr_assert_eq(system(cmd), 0);
}

/* The CLI tests keep the command's stdout and stderr out of the test log. */
static void quiet(void)
{
    cr_redirect_stdout();
    cr_redirect_stderr();
}

Test(lower_cli, writes_a_program_and_refuses_bad_input_with_exit_2, .init = quiet)
{
    char out[] = "/tmp/amk_lower_cli_XXXXXX";
    int fd = mkstemp(out);
    cr_assert_geq(fd, 0);
    close(fd);
    char *ok[] = {"lower", "--model", "toy", "--target", "h100", "--config",
                  DATA "kv_block_64.json", "--pos", "9", "--argmax", "--dtype", "f32", "-o", out};
    cr_assert_eq(cmd_lower(14, ok), AMK_EXIT_OK);
    ir_program *p = NULL;
    ir_error err = {0};
    cr_assert_eq(ir_read_file(out, NULL, &p, &err), IR_OK);
    cr_assert_eq(p->warnings.n, 0);
    cr_assert_eq(p->decode.pos, 9);
    cr_assert_eq(count_tasks(p, "L0.attention[", IR_OP_ATTENTION_TILE), 4);
    cr_assert_eq(p->tasks[p->n_tasks - 1].op, IR_OP_SAMPLE_ARGMAX);
    cr_assert_eq(p->buffers[find_buffer(p, "lm_head.weight")].dtype, IR_F32);
    ir_program_free(p);
    unlink(out);

    char *bad_cfg[] = {"lower", "--model", "toy", "--target", "h100", "--config",
                       DATA "bad_fusion.json", "-o", out};
    cr_assert_eq(cmd_lower(9, bad_cfg), AMK_EXIT_MALFORMED);
    char *bad_key[] = {"lower", "--model", "toy", "--target", "h100", "--config",
                       DATA "bad_unknown_key.json", "-o", out};
    cr_assert_eq(cmd_lower(9, bad_key), AMK_EXIT_MALFORMED);
    char *bad_model[] = {"lower", "--model", DATA "hf_rope_yarn.json", "--target", "h100", "-o",
                         out};
    cr_assert_eq(cmd_lower(7, bad_model), AMK_EXIT_MALFORMED);
    char *bad_target[] = {"lower", "--model", "toy", "--target", "h999", "-o", out};
    cr_assert_eq(cmd_lower(7, bad_target), AMK_EXIT_MALFORMED);
    char *bad_pos[] = {"lower", "--model", "toy", "--target", "h100", "--pos", "x", "-o", out};
    cr_assert_eq(cmd_lower(9, bad_pos), AMK_EXIT_MALFORMED);
    char *bad_dialect[] = {"lower", "--model", "toy", "--target", "h100", "--dialect", "torch",
                           "-o", out};
    cr_assert_eq(cmd_lower(9, bad_dialect), AMK_EXIT_MALFORMED);
    char *amk_heads[] = {"lower", "--model", "toy", "--target", "h100", "--dialect", "amk",
                         "--config", DATA "fused_heads.json", "-o", out};
    cr_assert_eq(cmd_lower(11, amk_heads), AMK_EXIT_MALFORMED, "kv_heads 1 has no amk form");
    char *missing[] = {"lower", "--model", "toy"};
    cr_assert_eq(cmd_lower(3, missing), AMK_EXIT_MALFORMED);
    char *help[] = {"lower", "--help"};
    cr_assert_eq(cmd_lower(2, help), AMK_EXIT_OK);
    cr_assert_neq(access(out, F_OK), 0, "a refused lowering left an output file");
}

Test(lower_cli, dialect_amk_writes_the_amk_forms, .init = quiet)
{
    char out[] = "/tmp/amk_lower_cli_XXXXXX";
    int fd = mkstemp(out);
    cr_assert_geq(fd, 0);
    close(fd);
    char *args[] = {"lower", "--model", "toy", "--target", "h100", "--dialect", "amk", "--config",
                    DATA "kv_block_64.json", "--pos", "3", "-o", out};
    cr_assert_eq(cmd_lower(13, args), AMK_EXIT_OK);
    ir_program *p = NULL;
    ir_error err = {0};
    cr_assert_eq(ir_read_file(out, NULL, &p, &err), IR_OK, "%s", err.why);
    lower_model m;
    cr_assert_eq(lower_model_preset("toy", &m, &err), IR_OK);
    assert_amk_forms(p, &m);
    cr_assert_eq(p->decode.pos, 3);
    cr_assert_eq(find_task(p, "L1.attention_combine")->n_inputs, 4);
    ir_program_free(p);
    unlink(out);
}

Test(lower_cli, every_sample_config_lowers_every_small_model, .init = quiet)
{
    const char *cfgs[] = {"n_tile_128", "kv_block_64", "fuse_gate_up", "round_robin",
                          "pages_linear", "pages_none", "full"};
    const char *models[] = {"toy", DATA "hf_explicit_head_dim.json", DATA "hf_smollm2_135m.json"};
    for (size_t i = 0; i < sizeof cfgs / sizeof cfgs[0]; i++)
        for (size_t j = 0; j < sizeof models / sizeof models[0]; j++) {
            char out[] = "/tmp/amk_lower_cli_XXXXXX", cfg[128];
            int fd = mkstemp(out);
            close(fd);
            snprintf(cfg, sizeof cfg, DATA "%s.json", cfgs[i]);
            char *args[] = {"lower", "--model", (char *)models[j], "--target", "l4", "--config",
                            cfg, "-o", out};
            cr_assert_eq(cmd_lower(9, args), AMK_EXIT_OK, "%s with %s", models[j], cfg);
            ir_program *p = NULL;
            ir_error err = {0};
            cr_assert_eq(ir_read_file(out, NULL, &p, &err), IR_OK);
            cr_assert_eq(p->warnings.n, 0);
            cr_assert_eq(p->plan.grid, ir_target_builtin("l4")->num_sms);
            ir_program_free(p);
            unlink(out);
        }
}

Test(lower_cli, target_file_sets_the_grid, .init = quiet)
{
    char out[] = "/tmp/amk_lower_cli_XXXXXX";
    int fd = mkstemp(out);
    close(fd);
    char *args[] = {"lower", "--model", "toy", "--target-file", DATA "target_4sm.json", "--config",
                    DATA "round_robin.json", "-o", out};
    cr_assert_eq(cmd_lower(9, args), AMK_EXIT_OK);
    ir_program *p = NULL;
    ir_error err = {0};
    cr_assert_eq(ir_read_file(out, NULL, &p, &err), IR_OK);
    cr_assert_eq(p->plan.grid, 4);
    cr_assert_str_eq(p->target.name, "tiny4");
    cr_assert_eq(p->tasks[5].sm, 1);
    ir_program_free(p);
    unlink(out);
}

/* A refused config value states the one range that holds for it, whether the config reader or
 * the lowering's checker refuses it: just past the knob's bound and far past it read the same. */
static void refusal_range(const char *json, char *range, size_t len)
{
    ir_config c;
    ir_error err = {0};
    ir_status s = ir_config_read_json(json, strlen(json), true, &c, &err);
    if (s == IR_OK) {
        s = lower_config_check(&c, &err);
        ir_config_free(&c);
    }
    cr_assert_eq(s, IR_ERR_MALFORMED, "%s was accepted", json);
    const char *a = strchr(err.why, '['), *b = a ? strchr(a, ']') : NULL;
    cr_assert(a && b, "%s: no range in \"%s\"", json, err.why);
    snprintf(range, len, "%.*s", (int)(b - a + 1), a);
}

Test(lower_config, each_refused_value_states_one_range)
{
    static const char *const cases[][3] = {
        {"{\"tiling\": {\"gemv\": {\"N_tile\": 2147483649}}}",
         "{\"tiling\": {\"gemv\": {\"N_tile\": 3000000000000}}}", "[1, 2^31]"},
        {"{\"tiling\": {\"attention\": {\"kv_block\": 2147483649}}}",
         "{\"tiling\": {\"attention\": {\"kv_block\": 1000000000000000}}}", "[1, 2^31]"},
        {"{\"smem_bytes_per_block\": 1073741825}", "{\"smem_bytes_per_block\": 10000000000000}",
         "[0, 2^30]"},
        {"{\"threads_per_block\": 33}", "{\"threads_per_block\": 70000}", "[32, 1024]"},
        {"{\"threads_per_block\": 1056}", "{\"threads_per_block\": 16}", "[32, 1024]"},
        {"{\"pipelining_depth\": 65}", "{\"pipelining_depth\": 1000000000000}", "[0, 64]"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char near[64], far[64];
        refusal_range(cases[i][0], near, sizeof near);
        refusal_range(cases[i][1], far, sizeof far);
        cr_assert_str_eq(near, cases[i][2], "%s", cases[i][0]);
        cr_assert_str_eq(far, cases[i][2], "%s", cases[i][1]);
    }
}
