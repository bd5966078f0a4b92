/*
 * test_megakernel.c - the CUDA megakernel: the gate in front of the GPU (no certificate, a
 * certificate of another program, a verdict other than PROVED, an op the kernel does not run are
 * refused on any machine, GPU or not), and on a GPU: every fixture decoded for 128 steps with its
 * logits inside the gate tolerance of the reference VM and of the Hugging Face goldens at every
 * position and the same greedy tokens, split attention and fused gate/up included; the argmax
 * over the lm_head tiles' maxima keeping the lowest index of equal logits; the watchdog
 * ending a deadlocking plan in TIMEOUT with the device usable for the next launch; a grid the
 * device cannot hold refused at load.
 *
 * GPU tests skip with the reason when no GPU is found, unless AMK_REQUIRE_GPU=1 (make test-gpu),
 * which turns the skip into a failure.
 */
#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include <cjson/cJSON.h>

#include "lower/lower.h"
#include "megakernel/megakernel.h"
#include "proofs/proofs.h"
#include "refvm/refvm.h"
#include "verify/verify.h"

#define FIXTURES "tests/fixtures/"

/* ---------------------------------------------------------------- helpers */

static void need_gpu(void)
{
    char name[256];
    int n = mk_device_count(name, sizeof name);
    if (n > 0)
        return;
    const char *why = mk_have_cuda() ? "no CUDA device found (driver absent or no GPU)"
                                     : "this build has no CUDA support (no nvcc)";
    const char *req = getenv("AMK_REQUIRE_GPU");
    if (req && !strcmp(req, "1"))
        cr_assert_fail("AMK_REQUIRE_GPU=1 but %s", why);
    cr_skip_test("GPU test skipped: %s", why);
}

/* Lower a model for h100 with knobs; the caller frees the program. */
static ir_program *lower_smem(const lower_model *m, ir_dtype dt, int64_t n_tile,
                              int64_t kv_block, bool fuse, bool argmax, int64_t smem)
{
    ir_config c;
    ir_config_default(&c);
    c.smem_bytes_per_block = smem;   /* > 0: the kernel stages weights there (SPEC 15) */
    ir_tiling tiles[2];
    int nt = 0;
    if (n_tile)
        tiles[nt++] = (ir_tiling){"gemv", "N_tile", n_tile};
    if (kv_block)
        tiles[nt++] = (ir_tiling){"attention", "kv_block", kv_block};
    c.tiling = tiles;
    c.n_tiling = nt;
    char names[2][IR_MAX_NAME] = {"gate", "up"};
    ir_fusion_group grp = {2, names};
    if (fuse) {
        c.groups = &grp;
        c.n_groups = 1;
    }
    lower_opts o;
    lower_opts_default(&o);
    o.dtype = dt;
    o.sample_argmax = argmax;
    ir_program *p = NULL;
    ir_error err = {0};
    cr_assert_eq(lower_program(m, &c, ir_target_builtin("h100"), &o, &p, &err), IR_OK,
                 "lower: %s: %s", err.where, err.why);
    return p;
}

static ir_program *lower_with(const lower_model *m, ir_dtype dt, int64_t n_tile,
                              int64_t kv_block, bool fuse, bool argmax)
{
    return lower_smem(m, dt, n_tile, kv_block, fuse, argmax, 0);
}

/* The certificate of a program amk-verify proves (the test fails otherwise); caller frees. */
static char *prove(const ir_program *p)
{
    verify_opts vo;
    verify_result vr;
    ir_error err = {0};
    verify_opts_default(&vo);
    cr_assert_eq(verify_program(p, &vo, &vr, &err), IR_OK, "%s", err.why);
    cr_assert_eq(vr.verdict, VERIFY_PROVED, "the lowered plan must be PROVED");
    char *cert = strdup(vr.certificate_json);
    verify_result_free(&vr);
    return cert;
}

static ir_program *toy_program(void)
{
    lower_model m;
    ir_error err = {0};
    cr_assert_eq(lower_model_preset("toy", &m, &err), IR_OK);
    return lower_with(&m, IR_BF16, 0, 0, false, false);
}

/* ---------------------------------------------------------------- refusals (any machine) */

Test(megakernel, load_refuses_a_program_without_certificate)
{
    ir_program *p = toy_program();
    mk_handle *h = NULL;
    ir_error err = {0};
    mk_status s = mk_load(p, NULL, 0, "unused.safetensors", false, NULL, &h, &err);
    cr_assert_eq(s, MK_REFUSED, "got %s", mk_status_name(s));
    cr_assert_null(h);
    cr_assert_str_eq(err.where, "certificate");
    ir_program_free(p);
}

Test(megakernel, load_refuses_a_certificate_of_another_program)
{
    ir_program *p = toy_program();
    char *cert = prove(p);
    /* Another program: the same plan with one tile parameter changed. */
    for (int32_t i = 0; i < p->n_tasks; i++)
        if (p->tasks[i].op == IR_OP_RMSNORM) {
            ir_task_set_real(&p->tasks[i], "eps", 1e-3);
            break;
        }
    mk_handle *h = NULL;
    ir_error err = {0};
    mk_status s = mk_load(p, cert, strlen(cert), "unused.safetensors", false, NULL, &h, &err);
    cr_assert_eq(s, MK_REFUSED, "got %s", mk_status_name(s));
    cr_assert_str_eq(err.where, "program_sha256", "refusal names %s: %s", err.where, err.why);
    free(cert);
    ir_program_free(p);
}

Test(megakernel, load_refuses_a_certificate_that_is_not_proved)
{
    ir_program *p = toy_program();
    char *cert = prove(p);
    char *v = strstr(cert, "\"PROVED\"");
    cr_assert_not_null(v);
    memcpy(v, "\"UNKNWN\"", 8);
    mk_handle *h = NULL;
    ir_error err = {0};
    mk_status s = mk_load(p, cert, strlen(cert), "unused.safetensors", false, NULL, &h, &err);
    cr_assert_eq(s, MK_REFUSED, "got %s", mk_status_name(s));
    cr_assert_str_eq(err.where, "verdict", "refusal names %s: %s", err.where, err.why);
    free(cert);
    ir_program_free(p);
}

Test(megakernel, load_refuses_an_op_the_kernel_does_not_run)
{
    ir_program *p = toy_program();
    p->tasks[3].op = IR_OP_DEQUANT;
    mk_options o;
    mk_options_default(&o);
    o.unverified = true;
    mk_handle *h = NULL;
    ir_error err = {0};
    mk_status s = mk_load(p, NULL, 0, "unused.safetensors", false, &o, &h, &err);
    cr_assert_eq(s, MK_UNSUPPORTED, "got %s", mk_status_name(s));
    cr_assert_str_eq(err.where, "task 3");
    ir_program_free(p);
}

Test(megakernel, load_refuses_a_stream_slot_size_that_is_not_a_multiple_of_16)
{
    ir_program *p = toy_program();
    const int64_t bad[] = {-16, 100, 8};
    for (int i = 0; i < 3; i++) {
        mk_options o;
        mk_options_default(&o);
        o.unverified = true;
        o.stream_slot_bytes = bad[i];
        mk_handle *h = NULL;
        ir_error err = {0};
        mk_status s = mk_load(p, NULL, 0, "unused.safetensors", false, &o, &h, &err);
        cr_assert_eq(s, MK_MALFORMED, "slot %lld: got %s", (long long)bad[i], mk_status_name(s));
        cr_assert_str_eq(err.where, "options.stream_slot_bytes");
        cr_assert_null(h);
    }
    ir_program_free(p);
}

Test(megakernel, load_without_a_gpu_says_why_after_the_certificate_holds)
{
    if (mk_device_count(NULL, 0) > 0)
        cr_skip_test("a GPU is present: the load would succeed");
    ir_program *p = toy_program();
    char *cert = prove(p);
    mk_handle *h = NULL;
    ir_error err = {0};
    mk_status s = mk_load(p, cert, strlen(cert), FIXTURES "llama_gqa2_f32/model.safetensors",
                          false, NULL, &h, &err);
    cr_assert(s == (mk_have_cuda() ? MK_NO_DEVICE : MK_NO_CUDA), "got %s: %s",
              mk_status_name(s), err.why);
    cr_assert_null(h);
    free(cert);
    ir_program_free(p);
}

/* ---------------------------------------------------------------- fixtures on the GPU */

typedef struct {
    lower_model m;
    ir_dtype dtype;
    int n_prompt, steps, n_pos;
    int32_t prompt[16], tokens[512];
    float *logits;
    double max_abs;
    char weights[256];
} fixture;

static void fixture_load(const char *name, fixture *fx)
{
    char path[256];
    ir_error err = {0};
    memset(fx, 0, sizeof *fx);
    snprintf(path, sizeof path, FIXTURES "%s/config.json", name);
    cr_assert_eq(lower_model_from_hf_config(path, &fx->m, &err), IR_OK, "%s", err.why);
    snprintf(fx->weights, sizeof fx->weights, FIXTURES "%s/model.safetensors", name);
    snprintf(path, sizeof path, FIXTURES "%s/golden.json", name);
    FILE *f = fopen(path, "rb");
    cr_assert_not_null(f);
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *text = malloc((size_t)n + 1);
    cr_assert_eq(fread(text, 1, (size_t)n, f), (size_t)n);
    fclose(f);
    cJSON *g = cJSON_ParseWithLength(text, (size_t)n);
    free(text);
    cr_assert_not_null(g);
    const char *wd = cJSON_GetObjectItem(g, "weights_dtype")->valuestring;
    fx->dtype = !strcmp(wd, "BF16") ? IR_BF16 : !strcmp(wd, "F16") ? IR_F16 : IR_F32;
    const cJSON *pr = cJSON_GetObjectItem(g, "prompt"), *tk = cJSON_GetObjectItem(g, "tokens");
    fx->n_prompt = cJSON_GetArraySize(pr);
    for (int i = 0; i < fx->n_prompt; i++)
        fx->prompt[i] = cJSON_GetArrayItem(pr, i)->valueint;
    fx->steps = cJSON_GetArraySize(tk);
    for (int i = 0; i < fx->steps; i++)
        fx->tokens[i] = cJSON_GetArrayItem(tk, i)->valueint;
    const cJSON *lg = cJSON_GetObjectItem(g, "logits");
    fx->n_pos = cJSON_GetArraySize(lg);
    fx->logits = malloc(sizeof(float) * (size_t)fx->n_pos * (size_t)fx->m.vocab);
    for (int p = 0; p < fx->n_pos; p++) {
        int i = 0;
        for (const cJSON *v = cJSON_GetArrayItem(lg, p)->child; v; v = v->next, i++) {
            fx->logits[(int64_t)p * fx->m.vocab + i] = (float)v->valuedouble;
            if (fabs(v->valuedouble) > fx->max_abs)
                fx->max_abs = fabs(v->valuedouble);
        }
    }
    cJSON_Delete(g);
}

/* Lower a model for h100 with a ScheduleConfig JSON (and --argmax); the caller frees it. */
static ir_program *lower_json(const lower_model *m, ir_dtype dt, const char *json)
{
    ir_config c;
    ir_error err = {0};
    cr_assert_eq(ir_config_read_json(json, strlen(json), true, &c, &err), IR_OK, "%s", err.why);
    lower_opts o;
    lower_opts_default(&o);
    o.dtype = dt;
    o.sample_argmax = true;
    ir_program *p = NULL;
    cr_assert_eq(lower_program(m, &c, ir_target_builtin("h100"), &o, &p, &err), IR_OK,
                 "lower: %s: %s", err.where, err.why);
    ir_config_free(&c);
    return p;
}

/* The reference VM for p over the weights file; the caller frees both. */
static refvm *vm_open(const ir_program *p, const char *weights, bool tie, refvm_st **st)
{
    ir_error err = {0};
    refvm *vm = NULL;
    refvm_opts vo;
    refvm_opts_default(&vo);
    vo.tie_embeddings = tie;
    cr_assert_eq(refvm_st_open(weights, st, &err), IR_OK);
    cr_assert_eq(refvm_new(p, &vo, &vm, &err), IR_OK, "%s", err.why);
    cr_assert_eq(refvm_bind(vm, *st, &err), IR_OK, "%s", err.why);
    return vm;
}

/* Release what a GPU-vs-VM run holds: the VM and its weights, the handle, the certificate and
 * the program. */
static void run_close(refvm *vm, refvm_st *st, mk_handle *h, char *cert, ir_program *p)
{
    refvm_free(vm);
    refvm_st_close(st);
    mk_free(h);
    free(cert);
    ir_program_free(p);
}

/* One launch and one VM step at pos with token tok; the GPU logits must be inside the gate
 * tolerance of the VM's with the same top token. Returns the comparison. */
static refvm_gate_cmp step_both(mk_handle *h, refvm *vm, int32_t tok, int pos, float *logits,
                                int64_t vocab, const char *tag, mk_step_status *ss)
{
    ir_error err = {0};
    mk_status s = mk_step(h, tok, pos, logits, ss, &err);
    cr_assert_eq(s, MK_OK, "%s at pos %d: %s", mk_status_name(s), pos, err.why);
    refvm_result r;
    cr_assert_eq(refvm_step(vm, tok, pos, &r, &err), IR_OK);
    cr_assert_eq(r.outcome, REFVM_DONE);
    refvm_result_free(&r);
    int64_t n = 0;
    refvm_gate_cmp c = refvm_gate_compare(logits, refvm_logits(vm, &n), vocab,
                                          REFVM_GATE_REL_TOL);
    cr_assert(c.pass, "%s pos %d: GPU vs VM max abs err %g (max |logit| %g), top-1 %d vs %d",
              tag, pos, c.max_abs_err, c.max_abs_ref, c.top_a, c.top_b);
    return c;
}

/* Decode the fixture on the GPU for its 128 greedy steps, the reference VM in lockstep; the
 * plan is lowered from the knobs, or from config_json when it is given. slot >= 0: the weight
 * stream must be on, with that slot size (0: the default); -1: no expectation. */
static void gpu_decodes_fixture_slot(const char *name, int64_t n_tile, int64_t kv_block,
                                     bool fuse, int64_t smem, const char *config_json,
                                     int64_t slot)
{
    need_gpu();
    fixture fx;
    fixture_load(name, &fx);
    ir_program *p = config_json ? lower_json(&fx.m, fx.dtype, config_json)
                                : lower_smem(&fx.m, fx.dtype, n_tile, kv_block, fuse, true, smem);
    char *cert = prove(p);
    ir_error err = {0};
    mk_handle *h = NULL;
    mk_options mo;
    mk_options_default(&mo);
    mo.stream_slot_bytes = slot > 0 ? slot : 0;
    mk_status s = mk_load(p, cert, strlen(cert), fx.weights, fx.m.tie_embeddings, &mo, &h, &err);
    cr_assert_eq(s, MK_OK, "mk_load: %s at %s: %s", mk_status_name(s), err.where, err.why);
    int slots = 0;
    int64_t slot_bytes = 0, streamed = 0;
    mk_stream_info(h, &slots, &slot_bytes, &streamed);
    if (slot >= 0) {
        cr_assert_geq(slots, 2, "%s: the weight stream is off", name);
        cr_assert_gt(streamed, 0, "%s: no task streams its weights", name);
        if (slot > 0)
            cr_assert_eq(slot_bytes, slot);
    }
    refvm_st *st = NULL;
    refvm *vm = vm_open(p, fx.weights, fx.m.tie_embeddings, &st);
    float *logits = malloc(sizeof(float) * (size_t)fx.m.vocab);
    int32_t tok = fx.prompt[0];
    int n_gen = 0;
    double worst_vm = 0, worst_hf = 0;
    for (int pos = 0; pos < fx.n_prompt + 128 - 1; pos++) {
        mk_step_status ss;
        refvm_gate_cmp c = step_both(h, vm, tok, pos, logits, fx.m.vocab, name, &ss);
        if (c.max_abs_err / c.max_abs_ref > worst_vm)
            worst_vm = c.max_abs_err / c.max_abs_ref;
        double d = 0;
        for (int64_t i = 0; i < fx.m.vocab; i++) {
            double e = fabs((double)logits[i] - fx.logits[(int64_t)pos * fx.m.vocab + i]);
            d = e > d ? e : d;
        }
        d /= fx.max_abs;
        cr_assert_leq(d, REFVM_GATE_REL_TOL, "%s pos %d: GPU vs HF rel err %g", name, pos, d);
        worst_hf = d > worst_hf ? d : worst_hf;
        if (pos + 1 >= fx.n_prompt) {
            cr_assert_eq(ss.next_token, fx.tokens[n_gen], "%s greedy token %d: GPU %d, HF %d",
                         name, n_gen, ss.next_token, fx.tokens[n_gen]);
            tok = fx.tokens[n_gen++];
        } else {
            tok = fx.prompt[pos + 1];
        }
    }
    cr_assert_eq(n_gen, 128);
    cr_log_info("%s (N_tile %lld, kv_block %lld, fused %d, %lld tasks streamed through %d slots "
                "of %lld B): 128 greedy tokens equal HF; max rel err vs VM %.3g, vs HF %.3g", name,
                (long long)n_tile, (long long)kv_block, fuse, (long long)streamed, slots,
                (long long)slot_bytes, worst_vm, worst_hf);
    free(logits);
    run_close(vm, st, h, cert, p);
    free(fx.logits);
}

static void gpu_decodes_fixture_cfg(const char *name, int64_t n_tile, int64_t kv_block,
                                    bool fuse, int64_t smem, const char *config_json)
{
    gpu_decodes_fixture_slot(name, n_tile, kv_block, fuse, smem, config_json, -1);
}

static void gpu_decodes_fixture(const char *name, int64_t n_tile, int64_t kv_block, bool fuse)
{
    gpu_decodes_fixture_cfg(name, n_tile, kv_block, fuse, 0, NULL);
}

Test(megakernel_gpu, fixture_gqa2_f32_matches_vm_and_hf_for_128_steps, .timeout = 120)
{
    gpu_decodes_fixture("llama_gqa2_f32", 0, 0, false);
}

Test(megakernel_gpu, fixture_gqa4_tied_f32_matches_vm_and_hf_for_128_steps, .timeout = 120)
{
    gpu_decodes_fixture("llama_gqa4_tied_f32", 0, 0, false);
}

Test(megakernel_gpu, fixture_bf16_llama3_rope_matches_vm_and_hf_for_128_steps, .timeout = 120)
{
    gpu_decodes_fixture("llama_gqa2_bf16_rope3", 0, 0, false);
}

Test(megakernel_gpu, split_attention_and_fused_gate_up_match_vm_and_hf, .timeout = 120)
{
    gpu_decodes_fixture("llama_gqa2_bf16_rope3", 16, 32, true);
    gpu_decodes_fixture("llama_gqa4_tied_f32", 48, 24, true);
}

/* Every fusion group with stage-sized tiles and one KV head per attention task: FUSED recipes
 * 2-6 over whole windows, and head-ranged ATTENTION_TILEs writing partial rows with kv_block. */
#define FUSE_ALL_GPU "[\"attn_norm\", \"q\", \"k\", \"v\"], [\"rope_k\", \"kv_append_k\"], " \
                     "[\"o\", \"resid_attn\"], [\"mlp_norm\", \"gate\", \"up\"], " \
                     "[\"silu_mul\", \"down\", \"resid_mlp\"], [\"final_norm\", \"lm_head\"]"
/* Those groups, the fused RoPE, stage-sized tiles, one attention task per KV head, 512 threads. */
#define FUSED_WHOLE_GPU "{\"tiling\": {\"gemv\": {\"stage_tiles\": 7}, \"attention\": " \
                        "{\"kv_heads\": 1}}, \"fusion_grouping\": [" FUSE_ALL_GPU ", " \
                        "[\"rope_q\", \"attention\"]], \"threads_per_block\": 512}"
Test(megakernel_gpu, every_fusion_and_per_kv_head_attention_match_vm_and_hf, .timeout = 120)
{
    const char *whole = FUSED_WHOLE_GPU;
    const char *blocks = "{\"tiling\": {\"gemv\": {\"stage_tiles\": 7}, \"attention\": "
                         "{\"kv_heads\": 1, \"kv_block\": 24}}, \"fusion_grouping\": ["
                         FUSE_ALL_GPU "]}";
    gpu_decodes_fixture_cfg("llama_gqa2_bf16_rope3", 0, 0, false, 0, whole);
    gpu_decodes_fixture_cfg("llama_gqa4_tied_f32", 0, 0, false, 0, whole);
    gpu_decodes_fixture_cfg("llama_gqa2_f32", 0, 0, false, 0, blocks);
}

/* The weight stream through the plan's dynamic SMEM (pipelining_depth >= 1): whole tiles per
 * slot (bf16, N_tile 16, default slots); tiles over many small slots, one or two rows each, so
 * that chunks end mid-tile and rows split into K slices across warps (f32, fused gate/up pair,
 * 512 B slots); every GEMV-shaped FUSED recipe (RMS norm, pair, SiLU, residual as bias) with one
 * task of lookahead and 256 B slots; and SMEM too small for the longest K, so that only the
 * shorter-K tasks stream. */
Test(megakernel_gpu, weight_stream_in_dynamic_smem_matches_vm_and_hf, .timeout = 120)
{
    gpu_decodes_fixture_slot("llama_gqa2_bf16_rope3", 16, 0, false, 163840, NULL, 0);
    gpu_decodes_fixture_slot("llama_gqa4_tied_f32", 0, 0, true, 4096, NULL, 512);
    const char *fused = "{\"tiling\": {\"gemv\": {\"stage_tiles\": 7}, \"attention\": "
                        "{\"kv_heads\": 1}}, \"fusion_grouping\": [" FUSE_ALL_GPU ", "
                        "[\"rope_q\", \"attention\"]], \"threads_per_block\": 512, "
                        "\"pipelining_depth\": 1, \"smem_bytes_per_block\": 8192}";
    gpu_decodes_fixture_slot("llama_gqa2_bf16_rope3", 0, 0, false, 0, fused, 256);
    gpu_decodes_fixture_slot("llama_gqa4_tied_f32", 0, 0, false, 0, fused, 256);
    /* 896 B of SMEM with 256 B slots: the down projection's input vector (K 128, 512 B) would
     * leave one slot, so it runs without the stream and the K 64 tiles stream. */
    const char *tight = "{\"tiling\": {\"gemv\": {\"stage_tiles\": 7}}, \"fusion_grouping\": ["
                        FUSE_ALL_GPU "], \"pipelining_depth\": 2, \"smem_bytes_per_block\": 896}";
    gpu_decodes_fixture_slot("llama_gqa2_bf16_rope3", 0, 0, false, 0, tight, 256);
}

/* Decode `steps` positions of a random-weight model given as a Hugging Face config.json text,
 * each launch against the reference VM (logits inside the gate tolerance, same top token; the
 * GPU's greedy token is fed back). */
static void gpu_matches_vm_random(const char *tag, const char *hf_json, ir_dtype dt,
                                  const char *config_json, int steps)
{
    need_gpu();
    lower_model m;
    ir_error err = {0};
    cr_assert_eq(lower_model_from_hf_json(hf_json, strlen(hf_json), &m, &err), IR_OK, "%s",
                 err.why);
    mkdir("build", 0755);
    char wpath[256];
    snprintf(wpath, sizeof wpath, "build/test-megakernel-%s.safetensors", tag);
    cr_assert_eq(refvm_weights_random(&m, 7, dt, wpath, &err), IR_OK, "%s", err.why);
    ir_program *p = lower_json(&m, dt, config_json);
    char *cert = prove(p);
    mk_handle *h = NULL;
    mk_status s = mk_load(p, cert, strlen(cert), wpath, m.tie_embeddings, NULL, &h, &err);
    cr_assert_eq(s, MK_OK, "mk_load: %s at %s: %s", mk_status_name(s), err.where, err.why);
    refvm_st *st = NULL;
    refvm *vm = vm_open(p, wpath, m.tie_embeddings, &st);
    float *logits = malloc(sizeof(float) * (size_t)m.vocab);
    int32_t tok = 1;
    double worst = 0;
    for (int pos = 0; pos < steps; pos++) {
        mk_step_status ss;
        refvm_gate_cmp c = step_both(h, vm, tok, pos, logits, m.vocab, tag, &ss);
        if (c.max_abs_err / c.max_abs_ref > worst)
            worst = c.max_abs_err / c.max_abs_ref;
        cr_assert_eq(ss.next_token, c.top_b, "%s pos %d: SAMPLE_ARGMAX %d, VM top %d", tag, pos,
                     ss.next_token, c.top_b);
        tok = ss.next_token;
    }
    cr_log_info("%s: %d positions, max rel err vs VM %.3g", tag, steps, worst);
    free(logits);
    run_close(vm, st, h, cert, p);
    remove(wpath);
}

/* The fixtures have head_dim 8 and 16; models of head_dim 32 and 64 (one and two elements per
 * lane of the attention code, 8 and 4 query heads kept in registers) over windows of up to 600
 * rows, where every warp walks many rows: whole windows with one task for both KV heads and
 * the fused RoPE, kv_block partials merged by ATTENTION_COMBINE, and the default plan. */
#define HF_LLAMA_WITH(hidden, heads, kv, extra) "{\"architectures\": [\"LlamaForCausalLM\"], " \
    "\"model_type\": \"llama\", \"hidden_size\": " #hidden ", \"num_attention_heads\": " #heads \
    ", \"num_key_value_heads\": " #kv extra ", \"intermediate_size\": 512, " \
    "\"num_hidden_layers\": 2, \"vocab_size\": 512, \"max_position_embeddings\": 1024, " \
    "\"rms_norm_eps\": 1e-5, \"rope_theta\": 10000.0, \"tie_word_embeddings\": false}"
#define HF_LLAMA(hidden, heads, kv) HF_LLAMA_WITH(hidden, heads, kv, "")
Test(megakernel_gpu, attention_with_head_dim_32_and_64_matches_vm_over_long_windows,
     .timeout = 240)
{
    gpu_matches_vm_random("hd32-8heads", HF_LLAMA(256, 8, 2), IR_BF16,
                          "{\"tiling\": {\"attention\": {\"kv_heads\": 2}}, "
                          "\"fusion_grouping\": [[\"rope_q\", \"attention\"]], "
                          "\"threads_per_block\": 512}", 600);
    gpu_matches_vm_random("hd64-kvblock", HF_LLAMA(256, 4, 1), IR_F32,
                          "{\"tiling\": {\"attention\": {\"kv_block\": 96}}, "
                          "\"threads_per_block\": 128}", 200);
    gpu_matches_vm_random("hd64-whole", HF_LLAMA(256, 4, 1), IR_BF16, "{}", 200);
}

/* A Hugging Face Llama config with an explicit head_dim (q and o then need not be hidden wide). */
#define HF_LLAMA_HD(hidden, heads, kv, hd) HF_LLAMA_WITH(hidden, heads, kv, ", \"head_dim\": " #hd)
/* The wider heads of the larger Llama models: head_dim 128 (llama-3-8b and 70b; four elements
 * per lane, two query heads per pass) with the fused RoPE and one task per KV head, and with
 * kv_block partials merged by ATTENTION_COMBINE; head_dim 80 (four elements per lane: the last 48
 * of a head's 128 register slots masked off; q and o 320 wide against a hidden size of 256);
 * head_dim 256, the widest the kernel holds in registers (eight per lane, one query head per
 * pass). */
Test(megakernel_gpu, attention_with_head_dim_80_128_and_256_matches_vm, .timeout = 240)
{
    gpu_matches_vm_random("hd128-fused", HF_LLAMA(512, 4, 1), IR_BF16, FUSED_WHOLE_GPU, 300);
    gpu_matches_vm_random("hd128-kvblock", HF_LLAMA(512, 4, 1), IR_F32,
                          "{\"tiling\": {\"attention\": {\"kv_block\": 64}}, "
                          "\"threads_per_block\": 256}", 160);
    gpu_matches_vm_random("hd80-fused", HF_LLAMA_HD(256, 4, 2, 80), IR_BF16, FUSED_WHOLE_GPU,
                          120);
    gpu_matches_vm_random("hd80-default", HF_LLAMA_HD(256, 4, 2, 80), IR_F32, "{}", 60);
    gpu_matches_vm_random("hd256-fused", HF_LLAMA(512, 2, 1), IR_BF16, FUSED_WHOLE_GPU, 120);
}

/* Query heads per KV head other than the 2 and 4 above: 1 (multi-head attention, as in Llama 2
 * 7B) and 3, with the fused RoPE and one task per KV head, and under the default plan. */
Test(megakernel_gpu, attention_with_one_and_three_query_heads_per_kv_head_matches_vm,
     .timeout = 120)
{
    gpu_matches_vm_random("mha-fused", HF_LLAMA(256, 4, 4), IR_BF16, FUSED_WHOLE_GPU, 100);
    gpu_matches_vm_random("mha-default", HF_LLAMA(256, 4, 4), IR_F32, "{}", 60);
    gpu_matches_vm_random("gqa3-fused", HF_LLAMA_HD(256, 6, 2, 64), IR_BF16, FUSED_WHOLE_GPU,
                          100);
    gpu_matches_vm_random("gqa3-default", HF_LLAMA_HD(256, 6, 2, 64), IR_F32, "{}", 60);
}

/* f16 weights (no fixture has them): every fusion group, so the RMS-norm tiles read a * g with
 * an f16 gain, the SiLU and residual tiles run on f16 rows, and the default plan's plain tiles. */
Test(megakernel_gpu, f16_weights_match_vm_under_every_fusion_and_the_default_plan,
     .timeout = 120)
{
    gpu_matches_vm_random("f16-fused", HF_LLAMA(256, 4, 1), IR_F16, FUSED_WHOLE_GPU, 48);
    gpu_matches_vm_random("f16-default", HF_LLAMA(256, 4, 1), IR_F16, "{}", 48);
}

/* Rewrite the weights file at path with every row of lm_head.weight equal to its row 0, so
 * that every logit is the same dot product. */
static void equal_lm_head_rows(const char *path)
{
    ir_error err = {0};
    refvm_st *st = NULL;
    cr_assert_eq(refvm_st_open(path, &st, &err), IR_OK, "%s", err.why);
    char tmp[300];
    snprintf(tmp, sizeof tmp, "%s.eq", path);
    refvm_st_writer *w = NULL;
    cr_assert_eq(refvm_st_writer_new(tmp, st->n, &w, &err), IR_OK, "%s", err.why);
    for (int i = 0; i < st->n; i++) {
        const refvm_tensor *t = &st->tensors[i];
        cr_assert_eq(refvm_st_writer_declare(w, t->name, t->dtype, t->rank, t->shape, &err),
                     IR_OK, "%s", err.why);
    }
    bool found = false;
    for (int i = 0; i < st->n; i++) {
        const refvm_tensor *t = &st->tensors[i];
        float *v = malloc(sizeof(float) * (size_t)t->numel);
        cr_assert(v);
        cr_assert_eq(refvm_st_to_f32(st, t, v, &err), IR_OK, "%s", err.why);
        if (!strcmp(t->name, "lm_head.weight")) {
            found = true;
            for (int64_t r = 1; r < t->shape[0]; r++)
                memcpy(v + r * t->shape[1], v, sizeof(float) * (size_t)t->shape[1]);
        }
        cr_assert_eq(refvm_st_writer_put(w, v, t->numel, &err), IR_OK, "%s", err.why);
        free(v);
    }
    cr_assert_eq(refvm_st_writer_finish(w, &err), IR_OK, "%s", err.why);
    refvm_st_close(st);
    cr_assert(found, "no lm_head.weight in %s", path);
    cr_assert_eq(rename(tmp, path), 0);
}

/* SAMPLE_ARGMAX over the lm_head tiles' maxima (SPEC 15.2): the default plan's GEMV tiles and the
 * fused RMS-norm tiles both qualify; with every lm_head row equal, so that logits tie inside and
 * across tiles, the token is the lowest index of the largest GPU logit, as a scan of them all
 * answers. The same plan loaded unverified reads every logit, with the same token. */
Test(megakernel_gpu, argmax_over_tile_maxima_keeps_the_lowest_index_of_equal_logits,
     .timeout = 120)
{
    need_gpu();
    lower_model m;
    ir_error err = {0};
    const char *hf = HF_LLAMA(256, 4, 1);
    cr_assert_eq(lower_model_from_hf_json(hf, strlen(hf), &m, &err), IR_OK, "%s", err.why);
    mkdir("build", 0755);
    const char *wpath = "build/test-megakernel-ties.safetensors";
    cr_assert_eq(refvm_weights_random(&m, 7, IR_BF16, wpath, &err), IR_OK, "%s", err.why);
    equal_lm_head_rows(wpath);
    const char *cfgs[] = {"{}", "{\"tiling\": {\"gemv\": {\"stage_tiles\": 7}}, "
                                "\"fusion_grouping\": [" FUSE_ALL_GPU "], "
                                "\"threads_per_block\": 512}"};
    float *logits = malloc(sizeof(float) * (size_t)m.vocab);
    cr_assert(logits);
    for (int ci = 0; ci < 2; ci++) {
        ir_program *p = lower_json(&m, IR_BF16, cfgs[ci]);
        char *cert = prove(p);
        int64_t ties = 0;
        for (int unverified = 0; unverified < 2; unverified++) {
            mk_options o;
            mk_options_default(&o);
            o.unverified = unverified;
            mk_handle *h = NULL;
            mk_status s = mk_load(p, unverified ? NULL : cert, unverified ? 0 : strlen(cert),
                                  wpath, m.tie_embeddings, &o, &h, &err);
            cr_assert_eq(s, MK_OK, "mk_load: %s at %s: %s", mk_status_name(s), err.where,
                         err.why);
            if (unverified)
                cr_assert_eq(mk_argmax_tiles(h), 0, "plan %d unverified: %lld tile slots", ci,
                             (long long)mk_argmax_tiles(h));
            else
                cr_assert_gt(mk_argmax_tiles(h), 1, "plan %d: %lld tile slots", ci,
                             (long long)mk_argmax_tiles(h));
            int32_t tok = 1;
            for (int pos = 0; pos < 6; pos++) {
                mk_step_status ss;
                s = mk_step(h, tok, pos, logits, &ss, &err);
                cr_assert_eq(s, MK_OK, "%s at pos %d: %s", mk_status_name(s), pos, err.why);
                const int32_t want = refvm_argmax(logits, m.vocab);
                for (int64_t i = 0; i < m.vocab; i++)
                    ties += i != want && logits[i] == logits[want];
                cr_assert_eq(ss.next_token, want, "plan %d pos %d%s: SAMPLE_ARGMAX %d, lowest "
                             "index of the largest logit %d", ci, pos,
                             unverified ? " unverified" : "", ss.next_token, want);
                tok = (pos * 37 + 5) % (int32_t)m.vocab;
            }
            mk_free(h);
        }
        cr_assert_gt(ties, 0, "plan %d: no logit equals the largest: nothing tied", ci);
        free(cert);
        ir_program_free(p);
    }
    free(logits);
    remove(wpath);
}

/* The watchdog: a plan whose two queues wait on each other's later entries never finishes. The
 * launch ends in TIMEOUT within a few seconds, and the next launch in this process works. */
Test(megakernel_gpu, watchdog_times_out_a_deadlock_and_the_device_stays_usable, .timeout = 60)
{
    need_gpu();
    ir_program *dead = toy_program();
    ir_error err = {0};
    cr_assert_eq(proofs_mutate(dead, "cross_queue_deadlock", 1, &err), IR_OK, "%s", err.why);
    char *wpath = "build/test_megakernel_toy.safetensors";
    mkdir("build", 0755);                  /* present under make; a bare run may lack it */
    lower_model m;
    cr_assert_eq(lower_model_preset("toy", &m, &err), IR_OK);
    cr_assert_eq(refvm_weights_random(&m, 1, IR_BF16, wpath, &err), IR_OK, "%s", err.why);
    mk_options o;
    mk_options_default(&o);
    o.unverified = true;
    o.spin_budget = 200000;
    mk_handle *h = NULL;
    mk_status s = mk_load(dead, NULL, 0, wpath, false, &o, &h, &err);
    cr_assert_eq(s, MK_OK, "%s: %s", mk_status_name(s), err.why);
    mk_step_status ss;
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    s = mk_step(h, 1, 0, NULL, &ss, &err);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    double secs = (double)(t1.tv_sec - t0.tv_sec) + 1e-9 * (double)(t1.tv_nsec - t0.tv_nsec);
    cr_assert_eq(s, MK_TIMEOUT, "got %s", mk_status_name(s));
    cr_assert_lt(secs, 10.0, "TIMEOUT took %.2f s", secs);
    cr_assert_geq(ss.task, 0);
    cr_assert_lt(ss.counter_value, ss.threshold);
    cr_assert_lt(ss.tasks_done, dead->n_tasks);
    cr_log_info("watchdog: TIMEOUT after %.3f s (%s)", secs, err.why);
    /* The same handle launches again (and times out again, no sticky error) ... */
    s = mk_step(h, 1, 0, NULL, &ss, &err);
    cr_assert_eq(s, MK_TIMEOUT, "second launch: %s: %s", mk_status_name(s), err.why);
    mk_free(h);
    /* ... and a proved plan runs and agrees with the reference VM. */
    ir_program *p = toy_program();
    char *cert = prove(p);
    cr_assert_eq(mk_load(p, cert, strlen(cert), wpath, false, NULL, &h, &err), MK_OK, "%s",
                 err.why);
    refvm *vm = NULL;
    refvm_st *st = NULL;
    cr_assert_eq(refvm_st_open(wpath, &st, &err), IR_OK);
    cr_assert_eq(refvm_new(p, NULL, &vm, &err), IR_OK);
    cr_assert_eq(refvm_bind(vm, st, &err), IR_OK);
    float logits[256];
    for (int pos = 0; pos < 4; pos++) {
        cr_assert_eq(mk_step(h, 7 + pos, pos, logits, &ss, &err), MK_OK, "%s", err.why);
        refvm_result r;
        cr_assert_eq(refvm_step(vm, 7 + pos, pos, &r, &err), IR_OK);
        refvm_result_free(&r);
        int64_t n;
        refvm_gate_cmp c = refvm_gate_compare(logits, refvm_logits(vm, &n), 256, REFVM_GATE_REL_TOL);
        cr_assert(c.pass, "pos %d after the timeout: err %g", pos, c.max_abs_err);
    }
    run_close(vm, st, h, cert, p);
    ir_program_free(dead);
    remove(wpath);
}

Test(megakernel_gpu, load_refuses_a_grid_the_device_cannot_hold)
{
    need_gpu();
    ir_program *p = toy_program();
    ir_error err = {0};
    cr_assert_eq(proofs_mutate(p, "grid_over_residency", 1, &err), IR_OK, "%s", err.why);
    mk_options o;
    mk_options_default(&o);
    o.unverified = true;     /* the certificate would refuse it first; test the live check */
    mk_handle *h = NULL;
    mk_status s = mk_load(p, NULL, 0, FIXTURES "llama_gqa2_f32/model.safetensors", false, &o, &h,
                          &err);
    cr_assert_eq(s, MK_REFUSED, "got %s: %s", mk_status_name(s), err.why);
    cr_assert_str_eq(err.where, "launch_plan.grid", "%s: %s", err.where, err.why);
    ir_program_free(p);
}
