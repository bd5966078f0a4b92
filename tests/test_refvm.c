/*
 * test_refvm.c - the correctness gate end to end: the eager forward and the reference VM (running
 * lowered programs) against Hugging Face goldens on every fixture in tests/fixtures/, bit-exact
 * results across queue interleavings, and the VM's dynamic checks (unwritten reads, deadlocks,
 * weight binding refusals) on programs built to fail them.
 */
#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cjson/cJSON.h>

#include "lower/lower.h"
#include "refvm/refvm.h"
#include "verify/verify.h"

#define FIXTURES "tests/fixtures/"

/* ---------------------------------------------------------------- fixture loading */

typedef struct {
    lower_model m;
    refvm_st *st;
    ir_dtype dtype;
    int n_prompt;
    int32_t prompt[16];
    int steps;
    int32_t tokens[512];
    int n_pos;
    float *logits;            /* [n_pos, vocab] goldens */
    double max_abs_logit;
} fixture;

static char *slurp(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    cr_assert_not_null(f, "cannot open %s", path);
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *buf = malloc((size_t)n + 1);
    cr_assert_eq(fread(buf, 1, (size_t)n, f), (size_t)n);
    buf[n] = 0;
    fclose(f);
    *len = (size_t)n;
    return buf;
}

static void fixture_load(const char *name, fixture *fx)
{
    char path[256];
    ir_error err = {0};
    memset(fx, 0, sizeof *fx);
    snprintf(path, sizeof path, FIXTURES "%s/config.json", name);
    cr_assert_eq(lower_model_from_hf_config(path, &fx->m, &err), IR_OK, "%s: %s", err.where, err.why);
    snprintf(path, sizeof path, FIXTURES "%s/model.safetensors", name);
    cr_assert_eq(refvm_st_open(path, &fx->st, &err), IR_OK, "%s: %s", err.where, err.why);
    snprintf(path, sizeof path, FIXTURES "%s/golden.json", name);
    size_t len;
    char *text = slurp(path, &len);
    cJSON *g = cJSON_ParseWithLength(text, len);
    free(text);
    cr_assert_not_null(g);
    const char *wd = cJSON_GetObjectItem(g, "weights_dtype")->valuestring;
    fx->dtype = !strcmp(wd, "BF16") ? IR_BF16 : !strcmp(wd, "F16") ? IR_F16 : IR_F32;
    const cJSON *pr = cJSON_GetObjectItem(g, "prompt"), *tk = cJSON_GetObjectItem(g, "tokens");
    fx->n_prompt = cJSON_GetArraySize(pr);
    for (int i = 0; i < fx->n_prompt; i++)
        fx->prompt[i] = cJSON_GetArrayItem(pr, i)->valueint;
    fx->steps = cJSON_GetArraySize(tk);
    cr_assert_geq(fx->steps, 128, "fixture must hold at least 128 greedy steps");
    for (int i = 0; i < fx->steps; i++)
        fx->tokens[i] = cJSON_GetArrayItem(tk, i)->valueint;
    const cJSON *lg = cJSON_GetObjectItem(g, "logits");
    fx->n_pos = cJSON_GetArraySize(lg);
    cr_assert_eq(fx->n_pos, fx->n_prompt + fx->steps - 1);
    fx->logits = malloc((size_t)fx->n_pos * (size_t)fx->m.vocab * sizeof(float));
    for (int p = 0; p < fx->n_pos; p++) {
        const cJSON *row = cJSON_GetArrayItem(lg, p);
        cr_assert_eq(cJSON_GetArraySize(row), fx->m.vocab);
        int i = 0;
        for (const cJSON *v = row->child; v; v = v->next, i++) {
            fx->logits[(int64_t)p * fx->m.vocab + i] = (float)v->valuedouble;
            if (fabs(v->valuedouble) > fx->max_abs_logit)
                fx->max_abs_logit = fabs(v->valuedouble);
        }
    }
    cJSON_Delete(g);
}

static void fixture_free(fixture *fx)
{
    refvm_st_close(fx->st);
    free(fx->logits);
}

/* Lower the fixture's model with the default config for h100, its weight dtype, and knobs. */
static ir_program *lower_fixture_fused(const fixture *fx, int64_t n_tile, int64_t kv_block,
                                       bool fuse_gate_up, bool fuse_all, bool argmax)
{
    ir_config c;
    ir_config_default(&c);
    ir_tiling tiles[4];
    int nt = 0;
    if (n_tile) {
        tiles[nt] = (ir_tiling){"gemv", "N_tile", n_tile};
        nt++;
    }
    if (kv_block) {
        tiles[nt] = (ir_tiling){"attention", "kv_block", kv_block};
        nt++;
    }
    c.tiling = tiles;
    c.n_tiling = nt;
    char names[2][IR_MAX_NAME] = {"gate", "up"};
    ir_fusion_group grp = {2, names};
    if (fuse_gate_up) {
        c.groups = &grp;
        c.n_groups = 1;
    }
    /* fuse_all: every fusion group the lowering knows (["rope_q","attention"] only over whole
     * windows), stage-sized tiles and one KV head per attention task */
    char g0[3][IR_MAX_NAME] = {"mlp_norm", "gate", "up"}, g1[4][IR_MAX_NAME] = {"attn_norm", "q", "k", "v"};
    char g2[2][IR_MAX_NAME] = {"final_norm", "lm_head"}, g3[2][IR_MAX_NAME] = {"o", "resid_attn"};
    char g4[3][IR_MAX_NAME] = {"silu_mul", "down", "resid_mlp"}, g5[2][IR_MAX_NAME] = {"rope_k", "kv_append_k"};
    char g6[2][IR_MAX_NAME] = {"rope_q", "attention"};
    ir_fusion_group all[7] = {{3, g0}, {4, g1}, {2, g2}, {2, g3}, {3, g4}, {2, g5}, {2, g6}};
    if (fuse_all) {
        c.groups = all;
        c.n_groups = kv_block ? 6 : 7;
        tiles[nt++] = (ir_tiling){"gemv", "stage_tiles", 7};
        tiles[nt++] = (ir_tiling){"attention", "kv_heads", 1};
        c.n_tiling = nt;
    }
    lower_opts o;
    lower_opts_default(&o);
    o.dtype = fx->dtype;
    o.sample_argmax = argmax;
    ir_program *p = NULL;
    ir_error err = {0};
    cr_assert_eq(lower_program(&fx->m, &c, ir_target_builtin("h100"), &o, &p, &err), IR_OK,
                 "lower: %s: %s", err.where, err.why);
    return p;
}

static ir_program *lower_fixture(const fixture *fx, int64_t n_tile, int64_t kv_block,
                                 bool fuse_gate_up, bool argmax)
{
    return lower_fixture_fused(fx, n_tile, kv_block, fuse_gate_up, false, argmax);
}

/* Relative error of logits against golden row p. */
static double golden_err(const fixture *fx, int p, const float *logits)
{
    double worst = 0;
    for (int64_t i = 0; i < fx->m.vocab; i++) {
        double d = fabs((double)logits[i] - fx->logits[(int64_t)p * fx->m.vocab + i]);
        if (d > worst)
            worst = d;
    }
    return worst / fx->max_abs_logit;
}

/* ---------------------------------------------------------------- eager vs Hugging Face */

static void eager_matches_hf(const char *name)
{
    fixture fx;
    fixture_load(name, &fx);
    refvm_eager *e;
    ir_error err = {0};
    cr_assert_eq(refvm_eager_new(&fx.m, fx.st, fx.n_pos + 1, &e, &err), IR_OK, "%s", err.why);
    int32_t tok = fx.prompt[0];
    int n_gen = 0;
    double worst = 0;
    for (int p = 0; p < fx.n_pos; p++) {
        const float *lg;
        cr_assert_eq(refvm_eager_forward(e, tok, p, &lg, &err), IR_OK, "%s", err.why);
        double rel = golden_err(&fx, p, lg);
        if (rel > worst)
            worst = rel;
        cr_assert_leq(rel, REFVM_GATE_REL_TOL, "%s pos %d: eager off HF by %g (rel)", name, p, rel);
        if (p + 1 >= fx.n_prompt) {
            int32_t next = refvm_argmax(lg, fx.m.vocab);
            cr_assert_eq(next, fx.tokens[n_gen], "%s: greedy token %d: eager %d, HF %d", name,
                         n_gen, next, fx.tokens[n_gen]);
            n_gen++;
            tok = next;
        } else {
            tok = fx.prompt[p + 1];
        }
    }
    cr_assert_eq(n_gen, fx.steps);
    /* Both run in fp32 against a float64 golden: the error is rounding, far below the gate. */
    cr_assert_lt(worst, 2e-5, "%s: worst eager error %g", name, worst);
    refvm_eager_free(e);
    fixture_free(&fx);
}

Test(eager, matches_hf_goldens_and_greedy_tokens_gqa2_f32) { eager_matches_hf("llama_gqa2_f32"); }
Test(eager, matches_hf_goldens_and_greedy_tokens_gqa4_tied) { eager_matches_hf("llama_gqa4_tied_f32"); }
Test(eager, matches_hf_goldens_and_greedy_tokens_bf16_llama3_rope)
{
    eager_matches_hf("llama_gqa2_bf16_rope3");
}

/* ---------------------------------------------------------------- VM vs Hugging Face + eager */

/* Decode the whole fixture on the VM; check goldens, greedy tokens and the eager gate at every
 * launch. If out is given, the logits of every launch are copied there. */
static void vm_decode(fixture *fx, ir_program *p, const refvm_opts *o, float *out)
{
    refvm *vm;
    refvm_eager *e;
    ir_error err = {0};
    cr_assert_eq(refvm_new(p, o, &vm, &err), IR_OK, "%s: %s", err.where, err.why);
    cr_assert_eq(refvm_bind(vm, fx->st, &err), IR_OK, "%s: %s", err.where, err.why);
    cr_assert_eq(refvm_eager_new(&fx->m, fx->st, refvm_max_seq(vm), &e, &err), IR_OK);
    int32_t tok = fx->prompt[0];
    int n_gen = 0;
    for (int pos = 0; pos < fx->n_pos; pos++) {
        refvm_result r;
        cr_assert_eq(refvm_step(vm, tok, pos, &r, &err), IR_OK, "%s: %s", err.where, err.why);
        cr_assert_eq(r.outcome, REFVM_DONE, "pos %d: %s", pos, r.detail);
        refvm_result_free(&r);
        int64_t n;
        const float *lg = refvm_logits(vm, &n);
        cr_assert_eq(n, fx->m.vocab);
        double rel = golden_err(fx, pos, lg);
        cr_assert_leq(rel, REFVM_GATE_REL_TOL, "pos %d: VM off HF by %g (rel)", pos, rel);
        const float *ref;
        cr_assert_eq(refvm_eager_forward(e, tok, pos, &ref, &err), IR_OK);
        refvm_gate_cmp c = refvm_gate_compare(lg, ref, n, REFVM_GATE_REL_TOL);
        cr_assert(c.pass, "pos %d: gate FAIL, max abs err %g of %g, top %d vs %d", pos,
                  c.max_abs_err, c.max_abs_ref, c.top_a, c.top_b);
        if (out)
            memcpy(out + (int64_t)pos * n, lg, (size_t)n * sizeof(float));
        if (pos + 1 >= fx->n_prompt) {
            int32_t next = refvm_next_token(vm);
            cr_assert_eq(next, fx->tokens[n_gen], "greedy token %d: VM %d, HF %d", n_gen, next,
                         fx->tokens[n_gen]);
            n_gen++;
            tok = next;
        } else {
            tok = fx->prompt[pos + 1];
        }
    }
    cr_assert_eq(n_gen, fx->steps);
    refvm_eager_free(e);
    refvm_free(vm);
}

static void vm_matches_hf_fused(const char *name, int64_t n_tile, int64_t kv_block, bool fuse,
                                bool fuse_all)
{
    fixture fx;
    fixture_load(name, &fx);
    ir_program *p = lower_fixture_fused(&fx, n_tile, kv_block, fuse, fuse_all, true);
    if (fuse_all) {
        /* the fused program is proved like any other, and has no norm, add or silu task left */
        verify_opts vo;
        verify_result r;
        ir_error e = {0};
        verify_opts_default(&vo);
        cr_assert_eq(verify_program(p, &vo, &r, &e), IR_OK, "%s: %s", e.where, e.why);
        cr_assert_eq(r.verdict, VERIFY_PROVED, "%s", verify_verdict_name(r.verdict));
        verify_result_free(&r);
        for (int i = 0; i < p->n_tasks; i++)
            cr_assert(p->tasks[i].op != IR_OP_RMSNORM && p->tasks[i].op != IR_OP_ADD &&
                      p->tasks[i].op != IR_OP_SILU_MUL && (kv_block || p->tasks[i].op != IR_OP_ROPE),
                      "task %s was not fused", p->tasks[i].label);
        /* one attention task per KV head: FUSED recipe 6, or head-ranged ATTENTION_TILEs */
        int n_attn = 0;
        for (int i = 0; i < p->n_tasks; i++)
            if (!strncmp(p->tasks[i].label, "L0.attention", 12) &&
                p->tasks[i].op != IR_OP_ATTENTION_COMBINE)
                n_attn++;
        int64_t nb = kv_block ? (p->decode.max_seq + kv_block - 1) / kv_block : 1;
        cr_assert_eq(n_attn, nb * fx.m.n_kv_heads, "%d attention tasks", n_attn);
    }
    refvm_opts o;
    refvm_opts_default(&o);
    o.tie_embeddings = fx.m.tie_embeddings;
    vm_decode(&fx, p, &o, NULL);
    ir_program_free(p);
    fixture_free(&fx);
}

static void vm_matches_hf(const char *name, int64_t n_tile, int64_t kv_block, bool fuse)
{
    vm_matches_hf_fused(name, n_tile, kv_block, fuse, false);
}

Test(vm, matches_hf_all_steps_gqa4_tied_every_fusion)
{
    vm_matches_hf_fused("llama_gqa4_tied_f32", 0, 0, false, true);
}
Test(vm, matches_hf_all_steps_bf16_llama3_rope_every_fusion_split_attention)
{
    vm_matches_hf_fused("llama_gqa2_bf16_rope3", 0, 32, false, true);
}

Test(vm, matches_hf_all_steps_gqa2_f32_default_schedule)
{
    vm_matches_hf("llama_gqa2_f32", 0, 0, false);
}
Test(vm, matches_hf_all_steps_gqa4_tied_split_attention)
{
    vm_matches_hf("llama_gqa4_tied_f32", 16, 32, false);
}
Test(vm, matches_hf_all_steps_bf16_llama3_rope_fused_gate_up)
{
    vm_matches_hf("llama_gqa2_bf16_rope3", 32, 48, true);
}

/* ---------------------------------------------------------------- the amk dialect (SPEC 8.8) */

/* The fixture lowered in the amk dialect with the SAMPLE_ARGMAX tail: kv_block splits attention
 * into [n_heads, head_dim+2] partials merged by one multi-input ATTENTION_COMBINE; every fusion
 * group the config names is lowered unfused. */
static ir_program *lower_fixture_amk(const fixture *fx, int64_t kv_block, bool fusion_groups)
{
    ir_config c;
    ir_config_default(&c);
    ir_tiling tiles[2] = {{"gemv", "N_tile", 24}, {"attention", "kv_block", kv_block}};
    c.tiling = tiles;
    c.n_tiling = kv_block ? 2 : 1;
    char g0[3][IR_MAX_NAME] = {"mlp_norm", "gate", "up"}, g1[4][IR_MAX_NAME] = {"attn_norm", "q", "k", "v"};
    char g2[2][IR_MAX_NAME] = {"final_norm", "lm_head"}, g3[2][IR_MAX_NAME] = {"o", "resid_attn"};
    char g4[3][IR_MAX_NAME] = {"silu_mul", "down", "resid_mlp"}, g5[2][IR_MAX_NAME] = {"rope_k", "kv_append_k"};
    ir_fusion_group all[6] = {{3, g0}, {4, g1}, {2, g2}, {2, g3}, {3, g4}, {2, g5}};
    if (fusion_groups) {
        c.groups = all;
        c.n_groups = 6;
    }
    lower_opts o;
    lower_opts_default(&o);
    o.dtype = fx->dtype;
    o.sample_argmax = true;
    o.dialect = LOWER_DIALECT_AMK;
    ir_program *p = NULL;
    ir_error err = {0};
    cr_assert_eq(lower_program(&fx->m, &c, ir_target_builtin("h100"), &o, &p, &err), IR_OK,
                 "lower: %s: %s", err.where, err.why);
    for (int i = 0; i < p->n_tasks; i++)
        cr_assert_neq(p->tasks[i].op, IR_OP_FUSED, "task %s is FUSED", p->tasks[i].label);
    return p;
}

static void vm_amk_matches_hf(const char *name, int64_t kv_block, bool fusion_groups)
{
    fixture fx;
    fixture_load(name, &fx);
    ir_program *p = lower_fixture_amk(&fx, kv_block, fusion_groups);
    int n_combine = 0;
    for (int i = 0; i < p->n_tasks; i++)
        if (p->tasks[i].op == IR_OP_ATTENTION_COMBINE) {
            n_combine++;
            cr_assert_eq(p->tasks[i].n_inputs, (p->decode.max_seq + kv_block - 1) / kv_block);
        }
    cr_assert_eq(n_combine, kv_block ? fx.m.n_layers : 0);
    refvm_opts o;
    refvm_opts_default(&o);
    o.tie_embeddings = fx.m.tie_embeddings;
    vm_decode(&fx, p, &o, NULL);
    ir_program_free(p);
    fixture_free(&fx);
}

Test(vm, amk_dialect_matches_hf_all_steps_gqa2_f32)
{
    vm_amk_matches_hf("llama_gqa2_f32", 0, false);
}
Test(vm, amk_dialect_matches_hf_all_steps_gqa4_tied_four_partials)
{
    vm_amk_matches_hf("llama_gqa4_tied_f32", 48, false);
}
Test(vm, amk_dialect_matches_hf_all_steps_bf16_llama3_rope_fusion_groups_unfused)
{
    vm_amk_matches_hf("llama_gqa2_bf16_rope3", 24, true);
}

/* The toy preset in the amk dialect on random weights: the VM against the eager forward at a
 * run of positions, the KV caches (rank 3) carried across launches, and the rotated keys the VM
 * appended equal to the eager forward's. */
Test(vm, amk_dialect_toy_matches_eager_at_several_positions)
{
    lower_model m;
    ir_error err = {0};
    cr_assert_eq(lower_model_preset("toy", &m, &err), IR_OK);
    const char *path = "/tmp/amk_test_refvm_toy_amk.safetensors";
    cr_assert_eq(refvm_weights_random(&m, 7, IR_F32, path, &err), IR_OK, "%s", err.why);
    refvm_st *st;
    cr_assert_eq(refvm_st_open(path, &st, &err), IR_OK, "%s", err.why);
    ir_config c;
    ir_config_default(&c);
    lower_opts o;
    lower_opts_default(&o);
    o.dtype = IR_F32;
    o.max_seq = 32;
    o.dialect = LOWER_DIALECT_AMK;
    ir_program *p;
    cr_assert_eq(lower_program(&m, &c, ir_target_builtin("h100"), &o, &p, &err), IR_OK, "%s", err.why);
    refvm *vm;
    refvm_eager *e;
    cr_assert_eq(refvm_new(p, NULL, &vm, &err), IR_OK, "%s: %s", err.where, err.why);
    cr_assert_eq(refvm_bind(vm, st, &err), IR_OK, "%s", err.why);
    cr_assert_eq(refvm_eager_new(&m, st, 32, &e, &err), IR_OK, "%s", err.why);
    int32_t tok = 3;
    for (int pos = 0; pos < 12; pos++) {
        refvm_result r;
        cr_assert_eq(refvm_step(vm, tok, pos, &r, &err), IR_OK, "pos %d: %s: %s", pos, err.where,
                     err.why);
        cr_assert_eq(r.outcome, REFVM_DONE, "pos %d: %s", pos, r.detail);
        refvm_result_free(&r);
        int64_t n;
        const float *lg = refvm_logits(vm, &n), *ref;
        cr_assert_eq(n, m.vocab);
        cr_assert_eq(refvm_eager_forward(e, tok, pos, &ref, &err), IR_OK, "%s", err.why);
        refvm_gate_cmp g = refvm_gate_compare(lg, ref, n, REFVM_GATE_REL_TOL);
        cr_assert(g.pass, "pos %d: max abs err %g of %g, top %d vs %d", pos, g.max_abs_err,
                  g.max_abs_ref, g.top_a, g.top_b);
        tok = (int32_t)((refvm_next_token(vm) * 7 + pos) % m.vocab);   /* vary the inputs */
    }
    /* the rank-3 [S, nkv, hd] caches got exactly the fed positions 0..11, one slot each */
    int32_t kc = -1;
    for (int32_t i = 0; i < p->n_buffers; i++)
        if (!strcmp(p->buffers[i].name, "L1.k_cache"))
            kc = i;
    cr_assert_geq(kc, 0);
    cr_assert_eq(p->buffers[kc].rank, 3);
    int64_t n, row = m.n_kv_heads * m.head_dim;
    const float *k = refvm_buffer(vm, kc, &n);
    cr_assert_eq(n, 32 * row);
    for (int64_t r = 0; r < 32; r++) {
        float big = 0;
        for (int64_t i = 0; i < row; i++)
            big = fmaxf(big, fabsf(k[r * row + i]));
        cr_assert(r < 12 ? big > 0 : big == 0, "L1.k_cache slot %lld: max |k| %g", (long long)r,
                  (double)big);
    }
    refvm_eager_free(e);
    refvm_free(vm);
    ir_program_free(p);
    refvm_st_close(st);
    unlink(path);
}

/* AMK's own lowering (tests/data/lower/amk_lower.py drives the checkout named by AMK_SRC) of the
 * toy shape, one program per position as AMK holds positions as constants: each runs in a fresh
 * VM continuing the previous one's KV caches (refvm_kv_copy), and every sequence's logits must
 * pass the gate against the eager forward. With quant_bits, AMK lowers its weight-only quantized
 * GEMV tiles, the VM binds the quantized weights and the eager forward their dequantized values.
 * Skipped, saying why, without AMK_SRC. */
static void amk_own_lowering_matches_eager(int batch, int partitions, int n_pos, int quant_bits)
{
    const char *src = getenv("AMK_SRC");
    if (!src || !*src)
        cr_skip_test("AMK_SRC is not set (an AutoMegaKernel checkout; SPEC 8.8)");
    char dir[] = "/tmp/amk_test_own_XXXXXX", cmd[1024], path[256], positions[512] = "";
    cr_assert_not_null(mkdtemp(dir));
    for (int pos = 0; pos < n_pos; pos++)
        snprintf(positions + strlen(positions), sizeof positions - strlen(positions), "%s%d",
                 pos ? "," : "", pos);
    lower_model m;
    ir_error err = {0};
    cr_assert_eq(lower_model_preset("toy", &m, &err), IR_OK);
    snprintf(path, sizeof path, "%s/w.safetensors", dir);
    cr_assert_eq(refvm_weights_random(&m, 11, IR_F32, path, &err), IR_OK, "%s", err.why);
    snprintf(cmd, sizeof cmd, "python3 tests/data/lower/amk_lower.py --amk '%s' --out %s "
             "--positions %s --max-seq 64 --batch %d --partitions %d --quant %d --weights %s",
             src, dir, positions, batch, partitions, quant_bits, path);
    cr_assert_eq(system(cmd), 0, "%s failed", cmd);
    refvm_st *st, *est;
    cr_assert_eq(refvm_st_open(path, &est, &err), IR_OK, "%s", err.why);
    if (quant_bits) {
        refvm_st_close(est);
        snprintf(path, sizeof path, "%s/q.safetensors", dir);
        cr_assert_eq(refvm_st_open(path, &st, &err), IR_OK, "%s", err.why);
        snprintf(path, sizeof path, "%s/deq.safetensors", dir);
        cr_assert_eq(refvm_st_open(path, &est, &err), IR_OK, "%s", err.why);
    } else {
        st = est;
    }
    refvm_eager *e;
    cr_assert_eq(refvm_eager_new(&m, est, 64, &e, &err), IR_OK, "%s", err.why);
    refvm *prev = NULL;
    ir_program *prev_p = NULL;
    int32_t tok = 5;
    int combines = 0, quantized = 0;
    for (int pos = 0; pos < n_pos; pos++) {
        ir_program *p;
        snprintf(path, sizeof path, "%s/amk_p%d.json", dir, pos);
        cr_assert_eq(ir_read_file(path, NULL, &p, &err), IR_OK, "%s: %s: %s", path, err.where,
                     err.why);
        for (int i = 0; i < p->n_tasks; i++) {
            combines += p->tasks[i].op == IR_OP_ATTENTION_COMBINE;
            quantized += ir_task_param(&p->tasks[i], "qdtype") != NULL;
        }
        refvm *vm;
        cr_assert_eq(refvm_new(p, NULL, &vm, &err), IR_OK, "pos %d: %s: %s", pos, err.where, err.why);
        cr_assert_eq(refvm_bind(vm, st, &err), IR_OK, "%s: %s", err.where, err.why);
        if (prev) {
            cr_assert_eq(refvm_kv_copy(vm, prev, &err), IR_OK, "%s: %s", err.where, err.why);
            refvm_free(prev);
            ir_program_free(prev_p);
        }
        refvm_result r;
        cr_assert_eq(refvm_step(vm, tok, pos, &r, &err), IR_OK, "pos %d: %s: %s", pos, err.where,
                     err.why);
        cr_assert_eq(r.outcome, REFVM_DONE, "pos %d: %s", pos, r.detail);
        refvm_result_free(&r);
        int64_t n;
        const float *lg = refvm_logits(vm, &n), *ref;
        cr_assert_eq(n, batch * m.vocab);
        cr_assert_eq(refvm_eager_forward(e, tok, pos, &ref, &err), IR_OK, "%s", err.why);
        for (int b = 0; b < batch; b++) {
            refvm_gate_cmp g = refvm_gate_compare(lg + b * m.vocab, ref, m.vocab, REFVM_GATE_REL_TOL);
            cr_assert(g.pass, "pos %d sequence %d: max abs err %g of %g, top %d vs %d", pos, b,
                      g.max_abs_err, g.max_abs_ref, g.top_a, g.top_b);
        }
        tok = (int32_t)((refvm_argmax(ref, m.vocab) * 13 + pos) % m.vocab);
        prev = vm;
        prev_p = p;
    }
    if (partitions > 1)
        cr_assert_gt(combines, 0, "no program split its attention");
    cr_assert(quant_bits ? quantized > 0 : quantized == 0, "%d quantized tiles", quantized);
    refvm_free(prev);
    ir_program_free(prev_p);
    refvm_eager_free(e);
    if (st != est)
        refvm_st_close(est);
    refvm_st_close(st);
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    cr_assert_eq(system(cmd), 0);
}

Test(vm, amk_own_lowering_of_toy_matches_eager)
{
    amk_own_lowering_matches_eager(1, 1, 8, 0);
}
Test(vm, amk_own_split_kv_lowering_of_toy_matches_eager)
{
    amk_own_lowering_matches_eager(1, 4, 40, 0);
}
Test(vm, amk_own_batched_lowering_of_toy_matches_eager_per_sequence)
{
    amk_own_lowering_matches_eager(2, 1, 6, 0);
}
Test(vm, amk_own_int8_lowering_of_toy_matches_eager_on_dequantized_weights)
{
    amk_own_lowering_matches_eager(1, 1, 6, 8);
}
Test(vm, amk_own_int4_lowering_of_toy_matches_eager_on_dequantized_weights)
{
    amk_own_lowering_matches_eager(1, 1, 6, 4);
}

/* Hand-made safetensors: a header of the given entries, then the data bytes. */
static void raw_safetensors(const char *path, const char *entries, const void *data, size_t n)
{
    char header[2048];
    int len = snprintf(header, sizeof header, "{%s}", entries);
    while (len % 8)
        header[len++] = ' ';
    FILE *f = fopen(path, "wb");
    cr_assert_not_null(f);
    uint64_t hl = (uint64_t)len;
    unsigned char le[8];
    for (int i = 0; i < 8; i++)
        le[i] = (unsigned char)(hl >> (8 * i));
    cr_assert_eq(fwrite(le, 1, 8, f), 8u);
    cr_assert_eq(fwrite(header, 1, (size_t)len, f), (size_t)len);
    cr_assert_eq(fwrite(data, 1, n, f), n);
    fclose(f);
}

/* AMK's weight-only quantized GEMV tiles [x, qW, scales (, zeros)] with params qdtype and group:
 * K = 10 in groups of 4 with scales for two groups only (AMK's ragged tail: the last group's
 * scale and zero also cover k = 8, 9), two tiles of 3 output columns. I8 symmetric: w = q * s; I4 with zeros, nibbles packed two per byte (low nibble = even
 * column): w = (nibble - 8 - z) * s. The VM's y must equal the dequantized matvec. */
static void quantized_gemv_matches_dequantized(bool int4)
{
    enum { V = 2, K = 10, N = 6, G = 2 };
    float table[V * K];
    for (int i = 0; i < V * K; i++)
        table[i] = (float)(i % 7) * 0.25f - 0.5f;
    int q[N * K];
    float sc[N * G], z[N * G];
    for (int i = 0; i < N * K; i++)
        q[i] = int4 ? (i * 5) % 16 : (i * 37) % 255 - 127;
    for (int i = 0; i < N * G; i++) {
        sc[i] = 0.25f * (float)(1 + i % 5);
        z[i] = (float)(i % 3);
    }
    /* data: table F32, qW (I8 [N, K] or U8 [N, K/2]), scales F16, zeros F16 */
    unsigned char data[V * K * 4 + N * K + 4 * N * G];
    size_t off = 0;
    memcpy(data, table, sizeof table);
    off += sizeof table;
    size_t qbytes = int4 ? N * K / 2 : N * K;
    for (int n = 0; n < N; n++)
        for (int k = 0; k < K; k++) {
            if (!int4)
                data[off + (size_t)(n * K + k)] = (unsigned char)(int8_t)q[n * K + k];
            else if (k % 2 == 0)
                data[off + (size_t)(n * K + k) / 2] = (unsigned char)(q[n * K + k] | q[n * K + k + 1] << 4);
        }
    off += qbytes;
    for (int i = 0; i < N * G; i++) {
        uint16_t h = refvm_f32_to_f16(sc[i]), hz = refvm_f32_to_f16(z[i]);
        data[off + 2 * (size_t)i] = (unsigned char)h;
        data[off + 2 * (size_t)i + 1] = (unsigned char)(h >> 8);
        data[off + 2 * (size_t)(N * G + i)] = (unsigned char)hz;
        data[off + 2 * (size_t)(N * G + i) + 1] = (unsigned char)(hz >> 8);
    }
    off += 4 * N * G;
    char entries[1024];
    size_t t0 = sizeof table, t1 = t0 + qbytes, t2 = t1 + 2 * N * G, t3 = t2 + 2 * N * G;
    snprintf(entries, sizeof entries,
             "\"table\":{\"dtype\":\"F32\",\"shape\":[%d,%d],\"data_offsets\":[0,%zu]},"
             "\"w\":{\"dtype\":\"%s\",\"shape\":[%d,%d],\"data_offsets\":[%zu,%zu]},"
             "\"w.scales\":{\"dtype\":\"F16\",\"shape\":[%d,%d],\"data_offsets\":[%zu,%zu]},"
             "\"w.zeros\":{\"dtype\":\"F16\",\"shape\":[%d,%d],\"data_offsets\":[%zu,%zu]}",
             V, K, t0, int4 ? "U8" : "I8", N, int4 ? K / 2 : K, t0, t1, N, G, t1, t2, N, G, t2, t3);
    const char *path = int4 ? "/tmp/amk_test_refvm_q4.safetensors" : "/tmp/amk_test_refvm_q8.safetensors";
    raw_safetensors(path, entries, data, off);

    ir_program *p = ir_program_new();
    int64_t one[1] = {1}, tab[2] = {V, K}, xs[2] = {1, K}, ws[2] = {N, K}, ss[2] = {N, G}, ys[2] = {1, N};
    int32_t tok = ir_add_buffer(p, "tokens", IR_IO_INPUT, IR_I32, 1, one, IR_HBM, NULL);
    int32_t tb = ir_add_buffer(p, "table", IR_WEIGHT, IR_F32, 2, tab, IR_HBM, "table");
    int32_t x = ir_add_buffer(p, "x", IR_ACTIVATION, IR_F32, 2, xs, IR_GLOBAL_SCRATCH, NULL);
    int32_t w = ir_add_buffer(p, "w", IR_WEIGHT, int4 ? IR_I4 : IR_I8, 2, ws, IR_HBM, "w");
    int32_t s = ir_add_buffer(p, "w.scales", IR_WEIGHT, IR_F16, 2, ss, IR_HBM, "w.scales");
    int32_t zb = ir_add_buffer(p, "w.zeros", IR_WEIGHT, IR_F16, 2, ss, IR_HBM, "w.zeros");
    int32_t y = ir_add_buffer(p, "logits", IR_IO_OUTPUT, IR_F32, 2, ys, IR_HBM, NULL);
    int32_t c0 = ir_add_counter(p, "embed"), c1 = ir_add_counter(p, "gemv");
    ir_task *t = ir_add_task(p, IR_OP_EMBED, c0, "embed");
    ir_task_add_input(t, tok);
    ir_task_add_input(t, tb);
    ir_task_add_output(t, x);
    ir_task_set_int(t, "hidden", K);
    for (int tile = 0; tile < 2; tile++) {
        t = ir_add_task(p, IR_OP_GEMV_TILE, c1, tile ? "gemv[1]" : "gemv[0]");
        ir_task_add_input(t, x);
        ir_task_add_input(t, w);
        ir_task_add_input(t, s);
        if (int4)
            ir_task_add_input(t, zb);
        ir_task_add_output(t, y);
        ir_task_add_wait(t, c0, 1);
        ir_task_set_int(t, "K", K);
        ir_task_set_int(t, "N_tile", 3);
        ir_task_set_int(t, "n_off", 3 * tile);
        ir_task_set_int(t, "qdtype", int4 ? IR_I4 : IR_I8);
        ir_task_set_int(t, "group", 4);
    }
    refvm_st *st;
    refvm *vm;
    ir_error err = {0};
    cr_assert_eq(refvm_st_open(path, &st, &err), IR_OK, "%s: %s", err.where, err.why);
    cr_assert_eq(refvm_new(p, NULL, &vm, &err), IR_OK, "%s: %s", err.where, err.why);
    cr_assert_eq(refvm_bind(vm, st, &err), IR_OK, "%s: %s", err.where, err.why);
    refvm_result r;
    cr_assert_eq(refvm_step(vm, 1, 0, &r, &err), IR_OK, "%s: %s", err.where, err.why);
    cr_assert_eq(r.outcome, REFVM_DONE, "%s", r.detail);
    refvm_result_free(&r);
    int64_t n;
    const float *out = refvm_logits(vm, &n);
    cr_assert_eq(n, N);
    for (int o = 0; o < N; o++) {
        double want = 0;
        for (int k = 0; k < K; k++) {
            int g = k / 4 < G ? k / 4 : G - 1;
            double wq = int4 ? (q[o * K + k] - 8 - z[o * G + g]) * sc[o * G + g] : q[o * K + k] * sc[o * G + g];
            want += table[K + k] * wq;
        }
        cr_assert_float_eq(out[o], want, 1e-4, "column %d: VM %g, dequantized %g", o,
                           (double)out[o], want);
    }
    refvm_free(vm);
    refvm_st_close(st);
    ir_program_free(p);
    unlink(path);
}

Test(vm, quantized_gemv_int8_symmetric_matches_the_dequantized_matvec)
{
    quantized_gemv_matches_dequantized(false);
}
Test(vm, quantized_gemv_int4_with_zeros_and_ragged_group_matches_the_dequantized_matvec)
{
    quantized_gemv_matches_dequantized(true);
}

/* Every interleaving of a race-free program computes the same bits: counters order every
 * producer before its consumers, and each op is a pure function of its inputs. */
Test(vm, seeded_interleavings_give_bit_identical_logits)
{
    fixture fx;
    fixture_load("llama_gqa2_f32", &fx);
    ir_program *p = lower_fixture(&fx, 16, 32, true, true);
    size_t n = (size_t)fx.n_pos * (size_t)fx.m.vocab;
    float *base = malloc(n * sizeof(float)), *other = malloc(n * sizeof(float));
    refvm_opts o;
    refvm_opts_default(&o);
    vm_decode(&fx, p, &o, base);
    for (uint64_t seed = 1; seed <= 4; seed++) {
        o.interleave = true;
        o.interleave_seed = seed;
        vm_decode(&fx, p, &o, other);
        cr_assert_eq(memcmp(base, other, n * sizeof(float)), 0, "seed %llu changed the logits",
                     (unsigned long long)seed);
    }
    free(base);
    free(other);
    ir_program_free(p);
    fixture_free(&fx);
}

/* ---------------------------------------------------------------- weight binding */

Test(vm, bind_refuses_dtype_mismatch_before_running)
{
    fixture fx;
    fixture_load("llama_gqa2_f32", &fx);
    fx.dtype = IR_BF16;                    /* the file holds F32 */
    ir_program *p = lower_fixture(&fx, 0, 0, false, false);
    refvm *vm;
    ir_error err = {0};
    cr_assert_eq(refvm_new(p, NULL, &vm, &err), IR_OK);
    cr_assert_eq(refvm_bind(vm, fx.st, &err), IR_ERR_MALFORMED);
    cr_assert(strstr(err.why, "dtype mismatch: program says BF16"), "%s", err.why);
    cr_assert(strstr(err.why, "model.embed_tokens.weight"), "%s", err.why);
    refvm_result r;
    cr_assert_eq(refvm_step(vm, 1, 0, &r, &err), IR_ERR_MALFORMED, "unbound VM must not run");
    refvm_free(vm);
    ir_program_free(p);
    fixture_free(&fx);
}

Test(vm, bind_refuses_shape_mismatch_naming_the_tensor)
{
    fixture a, b;
    fixture_load("llama_gqa2_f32", &a);
    fixture_load("llama_gqa4_tied_f32", &b);
    ir_program *p = lower_fixture(&a, 0, 0, false, false);   /* k_proj [32, 64] */
    refvm *vm;
    ir_error err = {0};
    cr_assert_eq(refvm_new(p, NULL, &vm, &err), IR_OK);
    cr_assert_eq(refvm_bind(vm, b.st, &err), IR_ERR_MALFORMED);  /* file k_proj [16, 64] */
    cr_assert(strstr(err.why, "shape mismatch: program says [32,64]"), "%s", err.why);
    cr_assert(strstr(err.why, "model.layers.0.self_attn.k_proj.weight"), "%s", err.why);
    refvm_free(vm);
    ir_program_free(p);
    fixture_free(&a);
    fixture_free(&b);
}

Test(vm, lm_head_binds_to_embedding_only_when_tied)
{
    fixture fx;
    fixture_load("llama_gqa4_tied_f32", &fx);
    cr_assert_null(refvm_st_find(fx.st, "lm_head.weight"));
    fx.m.tie_embeddings = false;            /* program now names lm_head.weight */
    ir_program *p = lower_fixture(&fx, 0, 0, false, false);
    refvm *vm;
    ir_error err = {0};
    refvm_opts o;
    refvm_opts_default(&o);
    cr_assert_eq(refvm_new(p, &o, &vm, &err), IR_OK);
    cr_assert_eq(refvm_bind(vm, fx.st, &err), IR_ERR_MALFORMED);
    cr_assert(strstr(err.why, "'lm_head.weight'"), "%s", err.why);
    refvm_free(vm);
    o.tie_embeddings = true;
    cr_assert_eq(refvm_new(p, &o, &vm, &err), IR_OK);
    cr_assert_eq(refvm_bind(vm, fx.st, &err), IR_OK, "%s", err.why);
    refvm_result r;
    cr_assert_eq(refvm_step(vm, fx.prompt[0], 0, &r, &err), IR_OK);
    cr_assert_eq(r.outcome, REFVM_DONE);
    int64_t n;
    cr_assert_leq(golden_err(&fx, 0, refvm_logits(vm, &n)), REFVM_GATE_REL_TOL);
    refvm_free(vm);
    ir_program_free(p);
    fixture_free(&fx);
}

/* ---------------------------------------------------------------- dynamic checks */

/* A two-task program: EMBED tokens -> x (counter 0), COPY x -> y (counter 1). queue_of_copy and
 * queue_of_embed place them; wait adds COPY's wait on counter 0. */
static ir_program *two_task_program(bool wait, int q_embed, int q_copy, int grid)
{
    ir_program *p = ir_program_new();
    int64_t one[1] = {1}, tab[2] = {4, 2}, row[2] = {1, 2};
    int32_t tok = ir_add_buffer(p, "tokens", IR_IO_INPUT, IR_I32, 1, one, IR_HBM, NULL);
    int32_t t = ir_add_buffer(p, "table", IR_WEIGHT, IR_F32, 2, tab, IR_HBM, "table");
    int32_t x = ir_add_buffer(p, "x", IR_ACTIVATION, IR_F32, 2, row, IR_GLOBAL_SCRATCH, NULL);
    int32_t y = ir_add_buffer(p, "logits", IR_IO_OUTPUT, IR_F32, 2, row, IR_HBM, NULL);
    int32_t c0 = ir_add_counter(p, "embed"), c1 = ir_add_counter(p, "copy");
    ir_task *e = ir_add_task(p, IR_OP_EMBED, c0, "embed");
    ir_task_add_input(e, tok);
    ir_task_add_input(e, t);
    ir_task_add_output(e, x);
    ir_task_set_int(e, "hidden", 2);
    e->sm = q_embed;
    ir_task *c = ir_add_task(p, IR_OP_COPY, c1, "copy");
    ir_task_add_input(c, x);
    ir_task_add_output(c, y);
    if (wait)
        ir_task_add_wait(c, c0, 1);
    c->sm = q_copy;
    cr_assert_eq(ir_plan_alloc(&p->plan, grid, 2), IR_OK);
    p->has_plan = true;
    p->plan.threads_per_block = 128;
    int k = 0;
    for (int q = 0; q < grid; q++) {
        p->plan.queue_start[q] = k;
        /* same queue: copy first (the wrong order) */
        if (q == q_copy)
            p->plan.queue_tasks[k++] = 1;
        if (q == q_embed)
            p->plan.queue_tasks[k++] = 0;
    }
    p->plan.queue_start[grid] = k;
    return p;
}

static refvm_st *table_file(const char *path)
{
    refvm_st_writer *w;
    ir_error err = {0};
    int64_t shape[2] = {4, 2};
    float v[8] = {0, 1, 10, 11, 20, 21, 30, 31};
    cr_assert_eq(refvm_st_writer_new(path, 1, &w, &err), IR_OK);
    cr_assert_eq(refvm_st_writer_declare(w, "table", IR_F32, 2, shape, &err), IR_OK);
    cr_assert_eq(refvm_st_writer_put(w, v, 8, &err), IR_OK);
    cr_assert_eq(refvm_st_writer_finish(w, &err), IR_OK, "%s", err.why);
    refvm_st *st;
    cr_assert_eq(refvm_st_open(path, &st, &err), IR_OK, "%s", err.why);
    return st;
}

static void run_two_task(ir_program *p, refvm_result *r, const char *file)
{
    refvm_st *st = table_file(file);
    refvm *vm;
    ir_error err = {0};
    cr_assert_eq(refvm_new(p, NULL, &vm, &err), IR_OK, "%s: %s", err.where, err.why);
    cr_assert_eq(refvm_bind(vm, st, &err), IR_OK, "%s", err.why);
    cr_assert_eq(refvm_step(vm, 2, 0, r, &err), IR_OK, "%s: %s", err.where, err.why);
    if (r->outcome == REFVM_DONE) {
        int64_t n;
        const float *y = refvm_logits(vm, &n);
        cr_assert_eq(n, 2);
        cr_assert_float_eq(y[0], 20.0f, 0);
        cr_assert_float_eq(y[1], 21.0f, 0);
    }
    refvm_free(vm);
    refvm_st_close(st);
    unlink(file);
}

Test(vm, ordered_two_queue_program_runs_and_copies_the_embedding_row)
{
    ir_program *p = two_task_program(true, 1, 0, 2);
    refvm_result r;
    run_two_task(p, &r, "/tmp/amk_test_refvm_a.safetensors");
    cr_assert_eq(r.outcome, REFVM_DONE, "%s", r.detail);
    cr_assert_eq(r.tasks_run, 2);
    refvm_result_free(&r);
    ir_program_free(p);
}

Test(vm, read_before_write_across_queues_is_caught_with_task_buffer_and_element)
{
    ir_program *p = two_task_program(false, 1, 0, 2);   /* copy on queue 0 runs first */
    refvm_result r;
    run_two_task(p, &r, "/tmp/amk_test_refvm_b.safetensors");
    cr_assert_eq(r.outcome, REFVM_UNWRITTEN_READ);
    cr_assert_eq(r.task, 1);
    cr_assert_eq(r.buffer, 2);
    cr_assert_eq(r.element, 0);
    cr_assert(strstr(r.detail, "task 1 (copy, COPY) reads input 0, buffer 2 (x) element 0"),
              "%s", r.detail);
    refvm_result_free(&r);
    ir_program_free(p);
}

Test(vm, deadlock_reports_the_stuck_head_wait_and_counter_value)
{
    ir_program *p = two_task_program(true, 0, 0, 1);    /* one queue: copy waits for embed behind it */
    refvm_result r;
    run_two_task(p, &r, "/tmp/amk_test_refvm_c.safetensors");
    cr_assert_eq(r.outcome, REFVM_DEADLOCK);
    cr_assert_eq(r.tasks_run, 0);
    cr_assert(strstr(r.detail, "queue 0: head task 1 (copy) waits counter 0 (embed) >= 1, value 0"),
              "%s", r.detail);
    refvm_result_free(&r);
    ir_program_free(p);
}

/* Two activations on one page with overlapping lifetimes: the counters order everything, but
 * the second embedding overwrites the first one's page before the copy reads it. */
Test(vm, page_shared_by_live_buffers_is_caught_as_overwritten)
{
    ir_program *p = ir_program_new();
    int64_t one[1] = {1}, tab[2] = {4, 2}, row[2] = {1, 2};
    int32_t tok = ir_add_buffer(p, "tokens", IR_IO_INPUT, IR_I32, 1, one, IR_HBM, NULL);
    int32_t t = ir_add_buffer(p, "table", IR_WEIGHT, IR_F32, 2, tab, IR_HBM, "table");
    int32_t x = ir_add_buffer(p, "x", IR_ACTIVATION, IR_F32, 2, row, IR_GLOBAL_SCRATCH, NULL);
    int32_t z = ir_add_buffer(p, "z", IR_ACTIVATION, IR_F32, 2, row, IR_GLOBAL_SCRATCH, NULL);
    int32_t y = ir_add_buffer(p, "logits", IR_IO_OUTPUT, IR_F32, 2, row, IR_HBM, NULL);
    int32_t c0 = ir_add_counter(p, "x"), c1 = ir_add_counter(p, "z"), c2 = ir_add_counter(p, "y");
    ir_task *a = ir_add_task(p, IR_OP_EMBED, c0, "embed_x");
    ir_task_add_input(a, tok);
    ir_task_add_input(a, t);
    ir_task_add_output(a, x);
    ir_task *b = ir_add_task(p, IR_OP_EMBED, c1, "embed_z");
    ir_task_add_input(b, tok);
    ir_task_add_input(b, t);
    ir_task_add_output(b, z);
    ir_task_add_wait(b, c0, 1);
    ir_task *c = ir_add_task(p, IR_OP_COPY, c2, "copy_x");
    ir_task_add_input(c, x);
    ir_task_add_output(c, y);
    ir_task_add_wait(c, c1, 1);
    p->has_pages = true;
    p->pages.n_map = 2;
    p->pages.map_buffer = malloc(2 * sizeof(int32_t));
    p->pages.map_page = malloc(2 * sizeof(int32_t));
    p->pages.map_buffer[0] = x;
    p->pages.map_buffer[1] = z;
    p->pages.map_page[0] = p->pages.map_page[1] = 0;
    p->pages.n_pages = 1;
    p->pages.pages = calloc(1, sizeof(ir_page));
    p->pages.pages[0] = (ir_page){0, IR_GLOBAL_SCRATCH, 8, -1, -1};
    refvm_st *st = table_file("/tmp/amk_test_refvm_page.safetensors");
    refvm *vm;
    refvm_result r;
    ir_error err = {0};
    cr_assert_eq(refvm_new(p, NULL, &vm, &err), IR_OK, "%s: %s", err.where, err.why);
    cr_assert_eq(refvm_bind(vm, st, &err), IR_OK);
    cr_assert_eq(refvm_step(vm, 1, 0, &r, &err), IR_OK);
    cr_assert_eq(r.outcome, REFVM_UNWRITTEN_READ);
    cr_assert_eq(r.task, 2);
    cr_assert_eq(r.buffer, x);
    cr_assert(strstr(r.detail, "overwritten by buffer 3 (z) sharing page 0"), "%s", r.detail);
    refvm_result_free(&r);
    refvm_free(vm);
    /* A page too small for its buffer is refused when the VM is built. */
    p->pages.pages[0].nbytes = 4;
    cr_assert_eq(refvm_new(p, NULL, &vm, &err), IR_ERR_MALFORMED);
    cr_assert(strstr(err.why, "needs 8 bytes but page 0 has 4"), "%s", err.why);
    refvm_st_close(st);
    unlink("/tmp/amk_test_refvm_page.safetensors");
    ir_program_free(p);
}

/* The ops a Llama lowering does not emit, on a hand-built program with exact expectations:
 * GEMM_TILE (two row tiles), SOFTMAX, LAYERNORM, GELU, MUL. */
Test(vm, gemm_softmax_layernorm_gelu_mul_follow_spec_semantics)
{
    const char *path = "/tmp/amk_test_refvm_ops.safetensors";
    refvm_st_writer *w;
    ir_error err = {0};
    int64_t s23[2] = {2, 3}, s3[1] = {3};
    float x[6] = {1, 2, 3, 4, 5, 6}, W[6] = {1, 0, -1, 0.5f, 0.5f, 0.5f}, v[3] = {1, 2, 3},
          g[3] = {1, 1, 2};
    cr_assert_eq(refvm_st_writer_new(path, 4, &w, &err), IR_OK);
    cr_assert_eq(refvm_st_writer_declare(w, "x", IR_F32, 2, s23, &err), IR_OK);
    cr_assert_eq(refvm_st_writer_declare(w, "w", IR_F32, 2, s23, &err), IR_OK);
    cr_assert_eq(refvm_st_writer_declare(w, "v", IR_F32, 1, s3, &err), IR_OK);
    cr_assert_eq(refvm_st_writer_declare(w, "g", IR_F32, 1, s3, &err), IR_OK);
    refvm_st_writer_put(w, x, 6, &err);
    refvm_st_writer_put(w, W, 6, &err);
    refvm_st_writer_put(w, v, 3, &err);
    refvm_st_writer_put(w, g, 3, &err);
    cr_assert_eq(refvm_st_writer_finish(w, &err), IR_OK);
    refvm_st *st;
    cr_assert_eq(refvm_st_open(path, &st, &err), IR_OK);

    ir_program *p = ir_program_new();
    int64_t s22[2] = {2, 2};
    int32_t bx = ir_add_buffer(p, "x", IR_WEIGHT, IR_F32, 2, s23, IR_HBM, "x");
    int32_t bw = ir_add_buffer(p, "w", IR_WEIGHT, IR_F32, 2, s23, IR_HBM, "w");
    int32_t bv = ir_add_buffer(p, "v", IR_WEIGHT, IR_F32, 1, s3, IR_HBM, "v");
    int32_t bg = ir_add_buffer(p, "g", IR_WEIGHT, IR_F32, 1, s3, IR_HBM, "g");
    int32_t by = ir_add_buffer(p, "y", IR_ACTIVATION, IR_F32, 2, s22, IR_GLOBAL_SCRATCH, NULL);
    int32_t bs = ir_add_buffer(p, "logits", IR_IO_OUTPUT, IR_F32, 2, s22, IR_HBM, NULL);
    int32_t bl = ir_add_buffer(p, "ln", IR_IO_OUTPUT, IR_F32, 1, s3, IR_HBM, NULL);
    int32_t be = ir_add_buffer(p, "gelu", IR_IO_OUTPUT, IR_F32, 1, s3, IR_HBM, NULL);
    int32_t bm = ir_add_buffer(p, "mul", IR_IO_OUTPUT, IR_F32, 1, s3, IR_HBM, NULL);
    int32_t cy = ir_add_counter(p, "y"), cs = ir_add_counter(p, "s"), co = ir_add_counter(p, "o");
    for (int m = 0; m < 2; m++) {
        ir_task *t = ir_add_task(p, IR_OP_GEMM_TILE, cy, "gemm");
        ir_task_add_input(t, bx);
        ir_task_add_input(t, bw);
        ir_task_add_output(t, by);
        ir_task_set_int(t, "K", 3);
        ir_task_set_int(t, "N_tile", 2);
        ir_task_set_int(t, "n_off", 0);
        ir_task_set_int(t, "M_tile", 1);
        ir_task_set_int(t, "m_off", 1 - m);         /* the second row first */
        t->sm = m;
    }
    ir_task *t = ir_add_task(p, IR_OP_SOFTMAX, cs, "softmax");
    ir_task_add_input(t, by);
    ir_task_add_output(t, bs);
    ir_task_add_wait(t, cy, 2);
    t->sm = 0;
    t = ir_add_task(p, IR_OP_LAYERNORM, co, "layernorm");
    ir_task_add_input(t, bv);
    ir_task_add_input(t, bg);
    ir_task_add_output(t, bl);
    ir_task_set_real(t, "eps", 0.0);
    ir_task_set_int(t, "hidden", 3);
    t->sm = 1;
    t = ir_add_task(p, IR_OP_GELU, co, "gelu");
    ir_task_add_input(t, bv);
    ir_task_add_output(t, be);
    t->sm = 1;
    t = ir_add_task(p, IR_OP_MUL, co, "mul");
    ir_task_add_input(t, bv);
    ir_task_add_input(t, bg);
    ir_task_add_output(t, bm);
    t->sm = 1;

    refvm *vm;
    refvm_result r;
    cr_assert_eq(refvm_new(p, NULL, &vm, &err), IR_OK, "%s: %s", err.where, err.why);
    cr_assert_eq(refvm_bind(vm, st, &err), IR_OK, "%s", err.why);
    cr_assert_eq(refvm_step(vm, 0, 0, &r, &err), IR_OK, "%s: %s", err.where, err.why);
    cr_assert_eq(r.outcome, REFVM_DONE, "%s", r.detail);
    int64_t n;
    const float *sm = refvm_logits(vm, &n);
    cr_assert_eq(n, 4);
    /* y = [[-2, 3], [-2, 7.5]] */
    cr_assert_float_eq(sm[0], 1.0 / (1.0 + exp(5.0)), 1e-7);
    cr_assert_float_eq(sm[1], 1.0 / (1.0 + exp(-5.0)), 1e-7);
    cr_assert_float_eq(sm[2], 1.0 / (1.0 + exp(9.5)), 1e-7);
    const float *ln = refvm_buffer(vm, bl, &n), *ge = refvm_buffer(vm, be, NULL),
                *mu = refvm_buffer(vm, bm, NULL);
    cr_assert_eq(n, 3);
    cr_assert_float_eq(ln[0], -sqrt(1.5), 1e-6);            /* (1 - 2) / sqrt(2/3) * 1 */
    cr_assert_float_eq(ln[1], 0.0, 1e-7);
    cr_assert_float_eq(ln[2], 2.0 * sqrt(1.5), 1e-6);       /* (3 - 2) / sqrt(2/3) * 2 */
    cr_assert_float_eq(ge[0], 0.8413447, 1e-6);             /* x * Phi(x) at 1 */
    cr_assert_float_eq(ge[1], 1.9544997, 1e-6);
    cr_assert_float_eq(mu[2], 6.0, 0);
    cr_assert_null(refvm_buffer(vm, 99, NULL));
    refvm_result_free(&r);
    refvm_free(vm);
    ir_program_free(p);
    refvm_st_close(st);
    unlink(path);
}

Test(vm, removed_wait_in_lowered_program_is_caught_dynamically)
{
    fixture fx;
    fixture_load("llama_gqa2_f32", &fx);
    ir_program *p = lower_fixture(&fx, 0, 0, false, false);
    /* The final lm_head tiles wait on final_norm; drop the waits of one of them and give it its
     * own queue that runs before anything else. */
    int32_t victim = -1;
    for (int32_t i = 0; i < p->n_tasks; i++)
        if (!strncmp(p->tasks[i].label, "lm_head[", 8)) {
            victim = i;
            break;
        }
    cr_assert_geq(victim, 0);
    p->tasks[victim].n_waits = 0;
    int32_t nq = (int32_t)p->plan.grid;
    int32_t *start = p->plan.queue_start, *tasks = p->plan.queue_tasks;
    /* Rebuild the plan: victim alone on queue 0, everything else shifted one queue up. */
    int32_t n = start[nq];
    int32_t *ns = malloc(sizeof *ns * (size_t)(nq + 2)), *nt = malloc(sizeof *nt * (size_t)n);
    int k = 0;
    ns[0] = 0;
    nt[k++] = victim;
    for (int32_t q = 0; q < nq; q++) {
        ns[q + 1] = k;
        for (int32_t j = start[q]; j < start[q + 1]; j++)
            if (tasks[j] != victim)
                nt[k++] = tasks[j];
    }
    ns[nq + 1] = k;
    free(start);
    free(tasks);
    p->plan.queue_start = ns;
    p->plan.queue_tasks = nt;
    p->plan.grid = nq + 1;
    refvm *vm;
    ir_error err = {0};
    cr_assert_eq(refvm_new(p, NULL, &vm, &err), IR_OK, "%s: %s", err.where, err.why);
    cr_assert_eq(refvm_bind(vm, fx.st, &err), IR_OK);
    refvm_result r;
    cr_assert_eq(refvm_step(vm, 1, 0, &r, &err), IR_OK, "%s", err.why);
    cr_assert_eq(r.outcome, REFVM_UNWRITTEN_READ);
    cr_assert_eq(r.task, victim);
    cr_assert_str_eq(p->buffers[r.buffer].name, "final_norm");
    refvm_result_free(&r);
    refvm_free(vm);
    ir_program_free(p);
    fixture_free(&fx);
}

/* Params set to hostile values (negative, zero, huge, off by one) are refused as MALFORMED
 * naming the task, or run in bounds; never a crash (this suite also runs under ASan/UBSan). */
Test(vm, corrupted_params_are_refused_or_run_in_bounds_never_crash)
{
    fixture fx;
    fixture_load("llama_gqa4_tied_f32", &fx);
    static const int64_t hostile[] = {-1, 0, 1, 2, 3, 7, 63, 64, 65, 255, 256, 1000,
                                      (int64_t)1 << 40, -((int64_t)1 << 40)};
    uint64_t rng = 99;
    int refused = 0, ran = 0;
    for (int iter = 0; iter < 150; iter++) {
        ir_program *p = lower_fixture(&fx, 16, 32, iter % 2 == 0, true);
        for (int k = 0; k < 2; k++) {
            rng = rng * 6364136223846793005ull + 1442695040888963407ull;
            ir_task *t = &p->tasks[(rng >> 33) % (uint64_t)p->n_tasks];
            if (t->n_params == 0)
                continue;
            ir_param *pm = &t->params[(rng >> 17) % (uint64_t)t->n_params];
            if (pm->type != IR_PARAM_INT)
                continue;
            pm->i = hostile[(rng >> 40) % (sizeof hostile / sizeof hostile[0])];
            pm->has_pexpr = false;
        }
        refvm *vm;
        ir_error err = {0};
        ir_status s = refvm_new(p, NULL, &vm, &err);
        if (s == IR_OK) {
            cr_assert_eq(refvm_bind(vm, fx.st, &err), IR_OK);
            for (int pos = 0; pos < 3 && s == IR_OK; pos++) {
                refvm_result r;
                s = refvm_step(vm, 7, pos, &r, &err);
                refvm_result_free(&r);
            }
            refvm_free(vm);
        }
        if (s == IR_OK) {
            ran++;
        } else {
            cr_assert_eq(s, IR_ERR_MALFORMED, "%s: %s", err.where, err.why);
            cr_assert(err.why[0]);
            refused++;
        }
        ir_program_free(p);
    }
    cr_assert_gt(refused, 20, "refused %d, ran %d", refused, ran);
    cr_log_info("corrupted params: %d refused, %d ran", refused, ran);
    fixture_free(&fx);
}

Test(vm, position_outside_max_seq_is_refused)
{
    fixture fx;
    fixture_load("llama_gqa2_f32", &fx);
    ir_program *p = lower_fixture(&fx, 0, 0, false, false);
    refvm *vm;
    ir_error err = {0};
    cr_assert_eq(refvm_new(p, NULL, &vm, &err), IR_OK);
    cr_assert_eq(refvm_bind(vm, fx.st, &err), IR_OK);
    refvm_result r;
    cr_assert_eq(refvm_step(vm, 1, refvm_max_seq(vm), &r, &err), IR_ERR_MALFORMED);
    cr_assert_str_eq(err.where, "pos");
    cr_assert_eq(refvm_step(vm, 100000, 0, &r, &err), IR_ERR_MALFORMED, "token outside vocab");
    cr_assert(strstr(err.why, "token id"), "%s", err.why);
    refvm_free(vm);
    ir_program_free(p);
    fixture_free(&fx);
}

/* ---------------------------------------------------------------- the gate itself */

Test(eager, rope_inv_freq_is_theta_powers_and_agrees_with_the_vm_angles_under_llama3_bands)
{
    /* Plain RoPE: theta^(-2i/hd), head_dim 4 and theta 10^4 give 1 and 1/100. */
    lower_model m;
    ir_error err = {0};
    cr_assert_eq(lower_model_preset("toy", &m, &err), IR_OK, "%s", err.why);
    m.head_dim = 4;
    m.rope_theta = 10000.0;
    m.rope_llama3 = false;
    float f[2];
    refvm_rope_inv_freq(&m, f);
    cr_assert_eq(f[0], 1.0f);
    cr_assert_float_eq(f[1], 0.01f, 1e-9);
    /* llama3 bands: the eager frequencies and the VM's angles at pos 1 are written apart; they
     * must agree on every frequency (all below pi, so atan2 gives the angle back). */
    cr_assert_eq(lower_model_preset("llama-3.2-1b", &m, &err), IR_OK, "%s", err.why);
    cr_assert(m.rope_llama3);
    int64_t half = m.head_dim / 2;
    float inv[256];
    double cs[512];
    cr_assert_leq(half, 256);
    refvm_rope_inv_freq(&m, inv);
    refvm_rope r = {m.head_dim, m.rope_theta, true, m.rope_factor, m.rope_low_freq,
                    m.rope_high_freq, m.rope_orig_max};
    refvm_rope_angles(&r, 1, cs);
    int slowed = 0;
    for (int64_t i = 0; i < half; i++) {
        double plain = pow(m.rope_theta, -2.0 * (double)i / (double)m.head_dim);
        double ang = atan2(cs[2 * i + 1], cs[2 * i]);
        cr_assert(fabs(ang - inv[i]) <= 1e-6 * inv[i], "i %lld: vm %.9g, eager %.9g",
                  (long long)i, ang, (double)inv[i]);
        slowed += inv[i] < 0.99 * plain;
    }
    cr_assert_gt(slowed, 0, "the llama3 bands slow the long wavelengths");
}

Test(gate, fails_on_error_above_tolerance_or_different_top1)
{
    float ref[4] = {1.0f, 3.0f, -2.0f, 0.5f};
    float close[4] = {1.0f, 3.0001f, -2.0f, 0.5f};
    float far[4] = {1.0f, 3.0f, -2.01f, 0.5f};
    float swapped[4] = {3.0f, 1.0f, -2.0f, 0.5f};
    refvm_gate_cmp c = refvm_gate_compare(close, ref, 4, 1e-4);
    cr_assert(c.pass);
    cr_assert_float_eq(c.max_abs_err, 1e-4, 1e-6);
    cr_assert_float_eq(c.max_abs_ref, 3.0, 0);
    c = refvm_gate_compare(far, ref, 4, 1e-4);
    cr_assert_not(c.pass);
    cr_assert_eq(c.top_a, c.top_b);
    c = refvm_gate_compare(swapped, ref, 4, 10.0);
    cr_assert_not(c.pass, "a different greedy token fails whatever the tolerance");
    cr_assert_eq(c.top_a, 0);
    cr_assert_eq(c.top_b, 1);
    float nan4[4] = {1.0f, NAN, -2.0f, 0.5f};
    cr_assert_not(refvm_gate_compare(nan4, ref, 4, 10.0).pass);
    float ties[3] = {2.0f, 2.0f, 1.0f};
    cr_assert_eq(refvm_argmax(ties, 3), 0);
    float nan_first[4] = {NAN, 1.0f, 3.0f, 3.0f};
    cr_assert_eq(refvm_argmax(nan_first, 4), 2, "a NaN is never the largest");
    float all_nan[2] = {NAN, NAN};
    cr_assert_eq(refvm_argmax(all_nan, 2), 0);
    cr_assert_eq(refvm_argmax(all_nan, 0), -1);
}

/* ---------------------------------------------------------------- the amk run / weights CLI */

#include "tools/cmd.h"

static int cli(int (*fn)(int, char **), const char **args, int n)
{
    char *argv[32];
    for (int i = 0; i < n; i++)
        argv[i] = (char *)args[i];
    argv[n] = NULL;
    fflush(stdout);
    return fn(n, argv);
}

static void write_program(ir_program *p, const char *path)
{
    ir_error err = {0};
    cr_assert_eq(ir_write_file(p, path, &err), IR_OK, "%s", err.why);
}

Test(cli, run_check_passes_on_a_fixture_and_exits_0)
{
    fixture fx;
    fixture_load("llama_gqa2_bf16_rope3", &fx);
    ir_program *p = lower_fixture(&fx, 32, 16, true, true);
    const char *prog = "/tmp/amk_test_cli_pass.json";
    write_program(p, prog);
    const char *args[] = {"run", prog, "--weights", FIXTURES "llama_gqa2_bf16_rope3/model.safetensors",
                          "--prompt", "1,2,3,200,201", "--steps", "40", "--check", "--unverified",
                          "--interleave", "seed=9"};
    cr_assert_eq(cli(cmd_run, args, 12), AMK_EXIT_OK);
    unlink(prog);
    ir_program_free(p);
    fixture_free(&fx);
}

/* The eager side built from a different model (rms_norm_eps 0.5 instead of 1e-5) must make the
 * gate FAIL: the check can fail. */
Test(cli, run_check_fails_with_exit_1_when_the_reference_disagrees)
{
    fixture fx;
    fixture_load("llama_gqa2_f32", &fx);
    ir_program *p = lower_fixture(&fx, 0, 0, false, false);
    const char *prog = "/tmp/amk_test_cli_fail.json", *cfg = "/tmp/amk_test_cli_fail_config.json";
    write_program(p, prog);
    size_t len;
    char *text = slurp(FIXTURES "llama_gqa2_f32/config.json", &len);
    char *at = strstr(text, "\"rms_norm_eps\": 1e-05");
    cr_assert_not_null(at);
    FILE *f = fopen(cfg, "w");
    fwrite(text, 1, (size_t)(at - text), f);
    fputs("\"rms_norm_eps\": 0.5", f);
    fputs(at + strlen("\"rms_norm_eps\": 1e-05"), f);
    fclose(f);
    free(text);
    const char *args[] = {"run", prog, "--weights", FIXTURES "llama_gqa2_f32/model.safetensors",
                          "--prompt", "1,17", "--steps", "4", "--check", "--unverified",
                          "--model", cfg};
    cr_assert_eq(cli(cmd_run, args, 12), AMK_EXIT_REFUTED);
    args[11] = FIXTURES "llama_gqa2_f32/config.json";
    cr_assert_eq(cli(cmd_run, args, 12), AMK_EXIT_OK, "the true model passes");
    unlink(prog);
    unlink(cfg);
    ir_program_free(p);
    fixture_free(&fx);
}

Test(cli, run_refuses_weights_of_another_dtype_with_exit_2)
{
    fixture fx;
    fixture_load("llama_gqa2_f32", &fx);
    fx.dtype = IR_BF16;
    ir_program *p = lower_fixture(&fx, 0, 0, false, false);
    const char *prog = "/tmp/amk_test_cli_dtype.json";
    write_program(p, prog);
    const char *args[] = {"run", prog, "--weights", FIXTURES "llama_gqa2_f32/model.safetensors",
                          "--prompt", "1", "--steps", "2", "--unverified"};
    cr_assert_eq(cli(cmd_run, args, 9), AMK_EXIT_MALFORMED);
    const char *bad[] = {"run", prog, "--weights", FIXTURES "llama_gqa2_f32/model.safetensors",
                         "--prompt", "1,x", "--unverified"};
    cr_assert_eq(cli(cmd_run, bad, 7), AMK_EXIT_MALFORMED);
    unlink(prog);
    ir_program_free(p);
    fixture_free(&fx);
}

/* A racy program that happens to finish in the VM's default order: `amk run` refuses it because
 * the verifier refutes it, and replays it with --unverified. */
Test(cli, run_refuses_an_unproved_program_unless_unverified)
{
    ir_program *p = two_task_program(false, 0, 1, 2);    /* embed on queue 0 runs first */
    p->has_target = true;
    p->target = *ir_target_builtin("h100");
    const char *prog = "/tmp/amk_test_cli_racy.json", *w = "/tmp/amk_test_cli_racy.safetensors";
    write_program(p, prog);
    refvm_st_close(table_file(w));
    const char *args[] = {"run", prog, "--weights", w, "--prompt", "2", "--steps", "1",
                          "--unverified"};
    cr_assert_eq(cli(cmd_run, args, 9), AMK_EXIT_OK, "replayed, it happens to finish");
    cr_assert_eq(cli(cmd_run, args, 8), AMK_EXIT_REFUTED, "without --unverified: refused");
    unlink(prog);
    unlink(w);
    ir_program_free(p);
}

Test(cli, run_reports_a_deadlock_with_exit_1)
{
    ir_program *p = two_task_program(true, 0, 0, 1);
    const char *prog = "/tmp/amk_test_cli_dead.json", *w = "/tmp/amk_test_cli_dead.safetensors";
    write_program(p, prog);
    refvm_st_close(table_file(w));
    const char *args[] = {"run", prog, "--weights", w, "--prompt", "2", "--steps", "1",
                          "--unverified", "--json"};
    cr_assert_eq(cli(cmd_run, args, 10), AMK_EXIT_REFUTED);
    unlink(prog);
    unlink(w);
    ir_program_free(p);
}

Test(cli, weights_random_writes_a_loadable_file_and_refuses_bad_dtype)
{
    const char *path = "/tmp/amk_test_cli_weights.safetensors";
    const char *args[] = {"weights", "random", "--model", "toy", "--seed", "5", "--dtype", "f16",
                          "-o", path};
    cr_assert_eq(cli(cmd_weights, args, 10), AMK_EXIT_OK);
    refvm_st *st;
    ir_error err = {0};
    cr_assert_eq(refvm_st_open(path, &st, &err), IR_OK, "%s", err.why);
    cr_assert_eq(refvm_st_find(st, "lm_head.weight")->dtype, IR_F16);
    refvm_st_close(st);
    const char *info[] = {"weights", "info", path};
    cr_assert_eq(cli(cmd_weights, info, 3), AMK_EXIT_OK);
    unlink(path);
    args[7] = "int8";
    cr_assert_eq(cli(cmd_weights, args, 10), AMK_EXIT_MALFORMED);
    const char *missing[] = {"weights", "info", "/nonexistent.safetensors"};
    cr_assert_eq(cli(cmd_weights, missing, 3), AMK_EXIT_MALFORMED);
}

/* ---------------------------------------------------------------- witness replay */

Test(vm, schedule_forces_a_racing_reader_before_its_writer)
{
    ir_program *p = two_task_program(false, 0, 1, 2);    /* race: copy does not wait */
    refvm_st *st = table_file("/tmp/amk_test_refvm_sched.safetensors");
    int32_t reader_first[1] = {1}, not_a_head[1] = {0};
    refvm_opts o;
    refvm_opts_default(&o);
    refvm *vm;
    refvm_result r;
    ir_error err = {0};
    cr_assert_eq(refvm_new(p, &o, &vm, &err), IR_OK);
    cr_assert_eq(refvm_bind(vm, st, &err), IR_OK);
    cr_assert_eq(refvm_step(vm, 2, 0, &r, &err), IR_OK);
    cr_assert_eq(r.outcome, REFVM_DONE, "the default order happens to be safe");
    refvm_result_free(&r);
    refvm_free(vm);
    o.schedule = reader_first;
    o.n_schedule = 1;
    cr_assert_eq(refvm_new(p, &o, &vm, &err), IR_OK);
    cr_assert_eq(refvm_bind(vm, st, &err), IR_OK);
    cr_assert_eq(refvm_step(vm, 2, 0, &r, &err), IR_OK);
    cr_assert_eq(r.outcome, REFVM_UNWRITTEN_READ);
    cr_assert_eq(r.task, 1);
    refvm_result_free(&r);
    refvm_free(vm);
    ir_program_free(p);
    /* In the deadlocking program task 0 sits behind task 1: forcing it is refused. */
    p = two_task_program(true, 0, 0, 1);
    o.schedule = not_a_head;
    cr_assert_eq(refvm_new(p, &o, &vm, &err), IR_OK);
    cr_assert_eq(refvm_bind(vm, st, &err), IR_OK);
    cr_assert_eq(refvm_step(vm, 2, 0, &r, &err), IR_ERR_MALFORMED);
    cr_assert_str_eq(err.where, "schedule[0]");
    refvm_free(vm);
    ir_program_free(p);
    refvm_st_close(st);
    unlink("/tmp/amk_test_refvm_sched.safetensors");
}

/* The verifier's witness, replayed on the VM, reproduces the failure it describes. */
static void replay_witness_of(ir_program *p, const char *tag, int want_exit)
{
    p->has_target = true;
    p->target = *ir_target_builtin("h100");
    char prog[128], wit[128], wts[128];
    snprintf(prog, sizeof prog, "/tmp/amk_test_replay_%s.json", tag);
    snprintf(wit, sizeof wit, "/tmp/amk_test_replay_%s_witness.json", tag);
    snprintf(wts, sizeof wts, "/tmp/amk_test_replay_%s.safetensors", tag);
    write_program(p, prog);
    refvm_st_close(table_file(wts));
    verify_opts vo;
    verify_result vr;
    ir_error err = {0};
    verify_opts_default(&vo);
    cr_assert_eq(verify_program(p, &vo, &vr, &err), IR_OK);
    cr_assert_eq(vr.verdict, VERIFY_REFUTED);
    cr_assert_not_null(vr.witness_json);
    FILE *f = fopen(wit, "w");
    fputs(vr.witness_json, f);
    fclose(f);
    verify_result_free(&vr);
    const char *args[] = {"run", prog, "--weights", wts, "--replay", wit, "--json"};
    cr_assert_eq(cli(cmd_run, args, 7), want_exit);
    unlink(prog);
    unlink(wit);
    unlink(wts);
}

Test(cli, run_replays_a_deadlock_witness_to_the_stuck_state)
{
    ir_program *p = two_task_program(true, 0, 0, 1);
    replay_witness_of(p, "deadlock", AMK_EXIT_REFUTED);
    ir_program_free(p);
}

Test(cli, run_replays_a_race_witness_into_an_unwritten_read)
{
    ir_program *p = two_task_program(false, 0, 1, 2);
    replay_witness_of(p, "race", AMK_EXIT_REFUTED);
    ir_program_free(p);
}

/* Numbers no int or float holds (1e300, 3e9, -1, 1.5) in a witness are refused by name, not
 * converted (the conversion itself would be undefined; make debug checks float-cast-overflow). */
Test(cli, run_refuses_a_witness_with_numbers_out_of_range)
{
    ir_program *p = two_task_program(true, 0, 0, 1);
    p->has_target = true;
    p->target = *ir_target_builtin("h100");
    const char *prog = "/tmp/amk_test_badwit.json", *wts = "/tmp/amk_test_badwit.safetensors",
               *wit = "/tmp/amk_test_badwit_witness.json";
    write_program(p, prog);
    refvm_st_close(table_file(wts));
    char sha[65];
    ir_error err = {0};
    cr_assert_eq(ir_program_sha256(p, sha, &err), IR_OK);
    const char *bad[] = {"\"prefix\": [1e300]", "\"prefix\": [3e9]", "\"prefix\": [-1]",
                         "\"prefix\": [1.5]", "\"prefix\": [0], \"pos\": 1e300"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        FILE *f = fopen(wit, "w");
        fprintf(f, "{\"kind\": \"deadlock\", \"program_sha256\": \"%s\", %s}", sha, bad[i]);
        fclose(f);
        const char *args[] = {"run", prog, "--weights", wts, "--replay", wit};
        cr_expect_eq(cli(cmd_run, args, 6), AMK_EXIT_MALFORMED, "%s", bad[i]);
    }
    unlink(prog);
    unlink(wit);
    unlink(wts);
    ir_program_free(p);
}

Test(cli, run_refuses_a_witness_of_another_program)
{
    ir_program *p = two_task_program(true, 0, 0, 1), *q = two_task_program(false, 0, 1, 2);
    p->has_target = q->has_target = true;
    p->target = q->target = *ir_target_builtin("h100");
    verify_opts vo;
    verify_result vr;
    ir_error err = {0};
    verify_opts_default(&vo);
    cr_assert_eq(verify_program(p, &vo, &vr, &err), IR_OK);
    FILE *f = fopen("/tmp/amk_test_replay_other_w.json", "w");
    fputs(vr.witness_json, f);
    fclose(f);
    verify_result_free(&vr);
    write_program(q, "/tmp/amk_test_replay_other.json");
    refvm_st_close(table_file("/tmp/amk_test_replay_other.safetensors"));
    const char *args[] = {"run", "/tmp/amk_test_replay_other.json", "--weights",
                          "/tmp/amk_test_replay_other.safetensors", "--replay",
                          "/tmp/amk_test_replay_other_w.json"};
    cr_assert_eq(cli(cmd_run, args, 6), AMK_EXIT_MALFORMED);
    unlink("/tmp/amk_test_replay_other_w.json");
    unlink("/tmp/amk_test_replay_other.json");
    unlink("/tmp/amk_test_replay_other.safetensors");
    ir_program_free(p);
    ir_program_free(q);
}

/* Weights read from the file a row at a time compute the same bits as weights converted to fp32
 * on bind (the conversion of each element is the same; only when it happens differs), for plain,
 * fused and bf16 programs; and the caller may close its safetensors handle right after binding
 * (the VM and the eager map the file themselves). */
static void streamed_weights_are_bit_identical(const char *name, bool fuse_all)
{
    fixture fx;
    fixture_load(name, &fx);
    ir_program *p = lower_fixture_fused(&fx, 16, 0, fuse_all, fuse_all, true);
    size_t n = (size_t)fx.n_pos * (size_t)fx.m.vocab;
    float *whole = malloc(n * sizeof(float)), *rows = malloc(n * sizeof(float));
    refvm_opts o;
    refvm_opts_default(&o);
    o.tie_embeddings = fx.m.tie_embeddings;
    o.stream_min_numel = INT64_MAX;                /* everything converted on bind */
    vm_decode(&fx, p, &o, whole);
    o.stream_min_numel = 1;                        /* every weight matrix streamed */
    vm_decode(&fx, p, &o, rows);
    cr_assert_eq(memcmp(whole, rows, n * sizeof(float)), 0, "%s: streaming changed the logits",
                 name);
    free(whole);
    free(rows);
    ir_program_free(p);
    fixture_free(&fx);
}

Test(vm, streamed_weights_give_bit_identical_logits_f32) { streamed_weights_are_bit_identical("llama_gqa2_f32", false); }
Test(vm, streamed_weights_give_bit_identical_logits_bf16_fused)
{
    streamed_weights_are_bit_identical("llama_gqa2_bf16_rope3", true);
}
Test(vm, streamed_weights_give_bit_identical_logits_tied) { streamed_weights_are_bit_identical("llama_gqa4_tied_f32", true); }

Test(vm, binding_needs_no_open_handle_afterwards)
{
    fixture fx;
    fixture_load("llama_gqa2_bf16_rope3", &fx);
    ir_program *p = lower_fixture(&fx, 16, 0, false, false);
    refvm_opts o;
    refvm_opts_default(&o);
    o.stream_min_numel = 1;
    refvm *vm;
    refvm_eager *e;
    ir_error err = {0};
    cr_assert_eq(refvm_new(p, &o, &vm, &err), IR_OK, "%s", err.why);
    cr_assert_eq(refvm_bind(vm, fx.st, &err), IR_OK, "%s", err.why);
    cr_assert_eq(refvm_eager_new(&fx.m, fx.st, refvm_max_seq(vm), &e, &err), IR_OK, "%s", err.why);
    refvm_st_close(fx.st);                         /* the caller's mapping is gone */
    fx.st = NULL;
    refvm_result r;
    cr_assert_eq(refvm_step(vm, fx.prompt[0], 0, &r, &err), IR_OK, "%s", err.why);
    cr_assert_eq(r.outcome, REFVM_DONE);
    refvm_result_free(&r);
    const float *ref;
    int64_t nv;
    cr_assert_eq(refvm_eager_forward(e, fx.prompt[0], 0, &ref, &err), IR_OK);
    const float *lg = refvm_logits(vm, &nv);
    cr_assert_eq(nv, fx.m.vocab);
    refvm_gate_cmp c = refvm_gate_compare(lg, ref, nv, REFVM_GATE_REL_TOL);
    cr_assert(c.pass, "gate: max abs err %g of %g", c.max_abs_err, c.max_abs_ref);
    /* a streamed weight is still readable whole */
    int64_t nw = 0;
    int32_t wq = -1;
    for (int32_t i = 0; i < p->n_buffers && wq < 0; i++)
        if (p->buffers[i].kind == IR_WEIGHT && p->buffers[i].rank == 2)
            wq = i;
    cr_assert_geq(wq, 0);
    cr_assert_not_null(refvm_buffer(vm, wq, &nw));
    cr_assert_eq(nw, ir_buffer_numel(&p->buffers[wq]));
    refvm_eager_free(e);
    refvm_free(vm);
    ir_program_free(p);
    fixture_free(&fx);
}
