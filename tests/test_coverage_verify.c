/*
 * test_coverage_verify.c - the well-formedness obligation on single edits of the lowered toy
 * program: each edit breaks one structural rule of SPEC.md 12.2 (counters, arity, params,
 * queues, pages, op shapes) and must be REFUTED by wellformed with the named witness kind, the
 * task at fault and a message naming the rule, with race and completeness SKIPPED.
 */
#include <cjson/cJSON.h>
#include <criterion/criterion.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "lower/lower.h"
#include "verify/verify.h"

/* toy lowered with the default config, or with config_json. */
static ir_program *toy_with(const char *config_json)
{
    lower_model m;
    ir_config c;
    ir_error err = {0};
    cr_assert_eq(lower_model_preset("toy", &m, &err), IR_OK);
    if (config_json)
        cr_assert_eq(ir_config_read_json(config_json, strlen(config_json), true, &c, &err), IR_OK,
                     "%s", err.why);
    else
        ir_config_default(&c);
    lower_opts o;
    lower_opts_default(&o);
    ir_program *p = NULL;
    cr_assert_eq(lower_program(&m, &c, ir_target_builtin("h100"), &o, &p, &err), IR_OK, "%s", err.why);
    ir_config_free(&c);
    return p;
}

static ir_program *toy(void) { return toy_with(NULL); }

/* The first task whose label is `label`. */
static ir_task *task(ir_program *p, const char *label)
{
    for (int32_t i = 0; i < p->n_tasks; i++)
        if (!strcmp(p->tasks[i].label, label))
            return &p->tasks[i];
    cr_assert_fail("no task labelled %s", label);
    return NULL;
}

static int32_t buffer(const ir_program *p, const char *name)
{
    for (int32_t i = 0; i < p->n_buffers; i++)
        if (!strcmp(p->buffers[i].name, name))
            return i;
    cr_assert_fail("no buffer named %s", name);
    return -1;
}

/* Verify p and check the wellformed refutation: kind, task at fault (-1: none named), and
 * that the message contains `says`. Frees p. */
static void expect_refuted(ir_program *p, const char *kind, int32_t task_id, const char *says)
{
    verify_opts o;
    verify_opts_default(&o);
    verify_result r;
    ir_error err = {0};
    cr_assert_eq(verify_program(p, &o, &r, &err), IR_OK, "%s", err.why);
    cr_expect_eq(r.verdict, VERIFY_REFUTED, "verdict %s", verify_verdict_name(r.verdict));
    cr_expect_eq(r.ob[VERIFY_WELLFORMED].status, VERIFY_REFUTED);
    cr_expect_eq(r.ob[VERIFY_RACE].status, VERIFY_SKIPPED);
    cr_expect_eq(r.ob[VERIFY_COMPLETE].status, VERIFY_SKIPPED);
    cr_expect_str_eq(r.witness_kind, kind);
    cJSON *w = cJSON_Parse(r.witness_json);
    cr_assert_not_null(w, "witness is not JSON");
    cr_expect_str_eq(cJSON_GetObjectItemCaseSensitive(w, "kind")->valuestring, kind);
    const cJSON *t = cJSON_GetObjectItemCaseSensitive(w, "task");
    if (task_id >= 0)
        cr_expect(cJSON_IsNumber(t) && (int32_t)t->valuedouble == task_id, "witness task %g, want %d",
                  cJSON_IsNumber(t) ? t->valuedouble : -1.0, task_id);
    else
        cr_expect_null(t, "no task is at fault");
    const cJSON *msg = cJSON_GetObjectItemCaseSensitive(w, "message");
    cr_assert(cJSON_IsString(msg));
    cr_expect(strstr(msg->valuestring, says), "message '%s' lacks '%s'", msg->valuestring, says);
    cr_expect(strstr(r.ob[VERIFY_WELLFORMED].detail, says), "detail '%s'", r.ob[VERIFY_WELLFORMED].detail);
    cJSON_Delete(w);
    verify_result_free(&r);
    ir_program_free(p);
}

/* Remove param key from t (an int param: nothing owned to free). */
static void drop_param(ir_task *t, const char *key)
{
    for (int i = 0; i < t->n_params; i++)
        if (!strcmp(t->params[i].key, key)) {
            cr_assert_eq(t->params[i].type, IR_PARAM_INT);
            t->params[i] = t->params[--t->n_params];
            return;
        }
    cr_assert_fail("no param %s", key);
}

Test(wellformed, the_unedited_toy_is_proved)
{
    ir_program *p = toy();
    verify_opts o;
    verify_opts_default(&o);
    verify_result r;
    ir_error err = {0};
    cr_assert_eq(verify_program(p, &o, &r, &err), IR_OK);
    cr_expect_eq(r.verdict, VERIFY_PROVED, "%s", r.ob[VERIFY_WELLFORMED].detail);
    verify_result_free(&r);
    ir_program_free(p);
}

Test(wellformed, refutes_a_counter_that_does_not_start_at_zero)
{
    ir_program *p = toy();
    p->counters[3].init = 2;
    expect_refuted(p, "counter_init", -1, "counter 3 starts at 2");
}

Test(wellformed, refutes_an_add_with_one_input)
{
    ir_program *p = toy();
    ir_task *t = task(p, "L0.resid_attn");
    t->n_inputs = 1;
    expect_refuted(p, "arity", t->id, "has 1 inputs");
}

Test(wellformed, refutes_a_missing_required_param)
{
    ir_program *p = toy();
    ir_task *t = task(p, "L0.attn_norm");
    drop_param(t, "hidden");
    expect_refuted(p, "params", t->id, "lacks required param 'hidden'");
}

Test(wellformed, refutes_an_int_param_beyond_int32)
{
    ir_program *p = toy();
    ir_task *t = task(p, "L0.q_proj[0]");
    cr_assert_eq(ir_task_set_int(t, "K", (int64_t)1 << 40), IR_OK);
    expect_refuted(p, "params", t->id, "param 'K' must be an int32");
}

Test(wellformed, refutes_a_non_finite_real_param)
{
    ir_program *p = toy();
    ir_task *t = task(p, "L0.mlp_norm");
    cr_assert_eq(ir_task_set_real(t, "eps", INFINITY), IR_OK);
    expect_refuted(p, "params", t->id, "param 'eps' is not finite");
}

Test(wellformed, refutes_a_zero_tile_size)
{
    ir_program *p = toy();
    ir_task *t = task(p, "L0.gate_proj[0]");
    cr_assert_eq(ir_task_set_int(t, "N_tile", 0), IR_OK);
    expect_refuted(p, "params", t->id, "tile sizes K, N_tile, M_tile must be >= 1");
}

Test(wellformed, refutes_a_task_whose_sm_is_not_its_plan_queue)
{
    ir_program *p = toy();
    ir_task *t = task(p, "L0.rope_q");
    cr_assert_neq(t->sm, 0);
    t->sm = 0;
    expect_refuted(p, "queue", t->id, "but the launch plan runs it on queue");
}

Test(wellformed, refutes_a_page_smaller_than_its_buffer)
{
    ir_program *p = toy();
    cr_assert(p->has_pages && p->pages.n_map > 0);
    p->pages.pages[p->pages.map_page[0]].nbytes = 4;
    expect_refuted(p, "page", -1, "but page");
}

Test(wellformed, refutes_a_weight_mapped_to_a_page)
{
    ir_program *p = toy();
    p->pages.map_buffer[0] = buffer(p, "lm_head.weight");
    expect_refuted(p, "page", -1, "only activations live in pages");
}

Test(wellformed, refutes_a_gemv_whose_k_disagrees_with_its_weight)
{
    ir_program *p = toy();
    ir_task *t = task(p, "L0.q_proj[0]");
    cr_assert_eq(ir_task_set_int(t, "K", 32), IR_OK);
    expect_refuted(p, "shape", t->id, "must be [N=64, K=32]");
}

#define FUSED_TOY "{\"fusion_grouping\": [[\"attn_norm\", \"q\", \"k\", \"v\"], " \
                  "[\"rope_k\", \"kv_append_k\"]]}"

Test(wellformed, refutes_a_fused_norm_gemv_missing_an_input_or_eps)
{
    ir_program *p = toy_with(FUSED_TOY);
    ir_task *t = task(p, "L0.q_proj[0]");
    t->n_inputs = 1;
    expect_refuted(p, "shape", t->id, "FUSED recipe 2 takes 3 to 4 inputs and 1 output(s)");
    p = toy_with(FUSED_TOY);
    t = task(p, "L0.q_proj[0]");
    cr_assert_eq(ir_task_set_real(t, "eps", -1.0), IR_OK);
    expect_refuted(p, "shape", t->id, "FUSED recipe 2 needs a finite param eps >= 0");
}

Test(wellformed, refutes_a_rope_append_whose_input_is_not_one_cache_row)
{
    ir_program *p = toy_with(FUSED_TOY);
    ir_task *t = task(p, "L0.rope_append_k");
    t->inputs[0] = buffer(p, "L0.q");  /* 64 elements, the cache row holds 32 */
    expect_refuted(p, "shape", t->id, "recipe 5 (rope_append) takes one input");
}

Test(wellformed, refutes_a_gemv_reading_a_wrong_sized_input)
{
    ir_program *p = toy();
    ir_task *t = task(p, "L0.o_proj[0]");
    t->inputs[0] = buffer(p, "L0.k");  /* [1, 32] where K = 64 */
    expect_refuted(p, "shape", t->id, "must hold K=64 elements");
}

Test(wellformed, refutes_a_gemv_writing_a_wrong_sized_output)
{
    ir_program *p = toy();
    ir_task *t = task(p, "L0.k_proj[0]");
    t->outputs[0] = buffer(p, "L0.q");  /* last dim 64, the weight's N is 32 */
    expect_refuted(p, "shape", t->id, "last dim must equal the weight's N=32");
}

Test(wellformed, refutes_an_rmsnorm_with_the_wrong_hidden)
{
    ir_program *p = toy();
    ir_task *t = task(p, "final_norm");
    cr_assert_eq(ir_task_set_int(t, "hidden", 32), IR_OK);
    expect_refuted(p, "shape", t->id, "RMSNORM needs rows of hidden=32 elements");
}

Test(wellformed, refutes_an_embed_with_the_wrong_hidden)
{
    ir_program *p = toy();
    ir_task *t = task(p, "embed");
    cr_assert_eq(ir_task_set_int(t, "hidden", 32), IR_OK);
    expect_refuted(p, "shape", t->id, "its last dimension hidden=32");
}

Test(wellformed, refutes_an_add_of_unequal_sizes)
{
    ir_program *p = toy();
    ir_task *t = task(p, "L1.resid_mlp");
    t->inputs[1] = buffer(p, "L1.k");
    expect_refuted(p, "shape", t->id, "ADD operands must have equal sizes");
}

Test(wellformed, refutes_a_rope_with_an_odd_head_dim)
{
    ir_program *p = toy();
    ir_task *t = task(p, "L1.rope_q");
    cr_assert_eq(ir_task_set_int(t, "head_dim", 15), IR_OK);
    expect_refuted(p, "shape", t->id, "ROPE needs an even head_dim");
}

Test(wellformed, refutes_a_kv_append_source_wider_than_a_cache_row)
{
    ir_program *p = toy();
    ir_task *t = task(p, "L0.kv_append_v");
    t->inputs[0] = buffer(p, "L0.q");  /* 64 elements, cache rows hold 32 */
    expect_refuted(p, "shape", t->id, "KV_APPEND source must fill one position slot");
}

Test(wellformed, refutes_attention_heads_that_disagree_with_its_buffers)
{
    ir_program *p = toy();
    ir_task *t = task(p, "L1.attention");
    cr_assert_eq(ir_task_set_int(t, "n_heads", 8), IR_OK);
    expect_refuted(p, "shape", t->id, "ATTENTION_TILE heads/head_dim disagree");
}

#define ROPE_ATTN_TOY "{\"tiling\": {\"attention\": {\"kv_heads\": 1}}, " \
                      "\"fusion_grouping\": [[\"rope_q\", \"attention\"]]}"

Test(wellformed, refutes_a_rope_attention_with_a_bad_head_range_or_cache)
{
    ir_program *p = toy_with(ROPE_ATTN_TOY);
    ir_task *t = task(p, "L0.attention[1]");
    cr_assert_eq(ir_task_set_int(t, "kv_head_off", 2), IR_OK);     /* toy has 2 KV heads */
    expect_refuted(p, "shape", t->id, "KV head range kv_head_off/kv_heads must be a non-empty");
    p = toy_with(ROPE_ATTN_TOY);
    t = task(p, "L0.attention[0]");
    cr_assert_eq(ir_task_set_int(t, "kv_heads", 0), IR_OK);
    expect_refuted(p, "shape", t->id, "KV head range");
    p = toy_with(ROPE_ATTN_TOY);
    t = task(p, "L0.attention[0]");
    t->inputs[3] = buffer(p, "L0.q");                            /* not a [S, nkv*hd] cache */
    expect_refuted(p, "shape", t->id, "FUSED recipe 6 (rope_attention) takes q");
}

Test(wellformed, refutes_an_attention_tile_head_range_outside_the_kv_heads)
{
    ir_program *p = toy_with("{\"tiling\": {\"attention\": {\"kv_heads\": 1}}}");
    ir_task *t = task(p, "L1.attention[1]");
    cr_assert_eq(ir_task_set_int(t, "kv_heads", 2), IR_OK);        /* [1, 3) of 2 heads */
    expect_refuted(p, "shape", t->id, "ATTENTION_TILE KV head range");
}

/* Head-ranged attention tasks write disjoint columns of one output: proved safe. Two that
 * cover the same head write the same columns unordered: a race on exactly those columns. */
Test(race, overlapping_attention_head_ranges_race_and_disjoint_ones_do_not)
{
    const char *cfgs[2] = {ROPE_ATTN_TOY, "{\"tiling\": {\"attention\": {\"kv_heads\": 1}}}"};
    for (int k = 0; k < 2; k++) {
        ir_program *p = toy_with(cfgs[k]);
        verify_opts o;
        verify_opts_default(&o);
        verify_result r;
        ir_error err = {0};
        cr_assert_eq(verify_program(p, &o, &r, &err), IR_OK, "%s", err.why);
        cr_assert_eq(r.verdict, VERIFY_PROVED, "%s: %s", cfgs[k], verify_verdict_name(r.verdict));
        verify_result_free(&r);
        ir_task *t = task(p, "L0.attention[1]");
        cr_assert_eq(ir_task_set_int(t, "kv_head_off", 0), IR_OK);   /* now both cover head 0 */
        cr_assert_eq(verify_program(p, &o, &r, &err), IR_OK, "%s", err.why);
        cr_expect_eq(r.verdict, VERIFY_REFUTED, "%s: %s", cfgs[k], verify_verdict_name(r.verdict));
        cr_expect_eq(r.ob[VERIFY_RACE].status, VERIFY_REFUTED);
        cr_expect_str_eq(r.witness_kind, "race");
        verify_result_free(&r);
        ir_program_free(p);
    }
}
