/*
 * cmd_launch.c - `amk launch`: greedy decode on the GPU megakernel, one cooperative launch per
 * token, of a program whose PROVED certificate matches it; optionally checked at every step
 * against the reference VM (--check) and against Hugging Face goldens (--golden).
 *
 * Exit codes (SPEC.md 15): 0 decoded (and every check PASSed), 1 a check FAILed, the plan was
 * refused (certificate, residency) or a CUDA call failed, 2 bad usage, malformed input, no CUDA
 * support in this build or no GPU, 4 TIMEOUT (the watchdog ended a launch).
 */
#include <float.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "megakernel/megakernel.h"
#include "refvm/refvm.h"
#include "tools/cmd.h"

static const char LAUNCH_ABOUT[] =
    "Decode on the GPU: one cooperative launch of the plan's grid per token (prompt one\n"
    "token per launch at pos 0, 1, ..., then N greedy tokens), KV caches kept on the GPU.\n"
    "Only a plan whose PROVED certificate (amk-verify --cert) matches it is launched, and\n"
    "only when the device can hold all of its blocks at once.\n";

typedef struct {
    const char *program, *cert, *weights, *prompt, *golden;
    int64_t steps, spin_budget;
    int device;
    bool check, unverified, json;
    double tol;
} launch_args;

static int parse_args(int argc, char **argv, launch_args *a)
{
    *a = (launch_args){.steps = 16, .tol = REFVM_GATE_REL_TOL,
                       .spin_budget = MK_DEFAULT_SPIN_BUDGET};
    const base_option opts[] = {
        BASE_STR("--cert", &a->cert, "CERT", "certificate written by amk-verify for PROGRAM"),
        BASE_STR("--weights", &a->weights, "FILE", "safetensors file; WEIGHT buffers bind by "
                 "their source key", .required = true),
        BASE_STR("--prompt", &a->prompt, "LIST", "comma-separated token ids (default: the "
                 "golden's prompt)"),
        BASE_I64("--steps", &a->steps, "N", 1, 1000000, "tokens to generate",
                 .show_default = true),
        BASE_FLAG("--check", &a->check, "run the reference VM in lockstep; compare logits every "
                  "launch"),
        BASE_STR("--golden", &a->golden, "FILE", "compare logits and greedy tokens with a "
                 "fixture's golden.json"),
        BASE_DOUBLE("--tol", &a->tol, "REL", 0, INFINITY, "tolerance relative to max |logit|",
                    .show_default = true),
        BASE_I64("--spin-budget", &a->spin_budget, "N", 1, (int64_t)1 << 40, "polls per wait "
                 "before the watchdog ends the launch", .show_default = true),
        BASE_INT("--device", &a->device, "D", 0, 1023, "CUDA device ordinal",
                 .show_default = true),
        BASE_FLAG("--unverified", &a->unverified, "TEST ONLY: launch without a certificate "
                  "(shows the watchdog on a\nplan that deadlocks); residency is still checked"),
        BASE_FLAG("--json", &a->json, "one JSON object on stdout"),
    };
    const base_cmdline cl = {
        .prog = "amk launch",
        .synopsis = "usage: amk launch PROGRAM --cert CERT --weights FILE --prompt T1,T2,... "
                    "--steps N [options]\n",
        .about = LAUNCH_ABOUT, .opts = opts, .n_opts = sizeof opts / sizeof opts[0],
        .pos_name = "PROGRAM", .min_pos = 1, .max_pos = 1, .pos = &a->program,
        .epilog = "exit: 0 decoded (and PASS), 1 FAIL, plan refused or CUDA error, 2 bad usage,\n"
                  "malformed input, no CUDA support or no GPU, 4 TIMEOUT.\n",
    };
    int rc = cmd_parse_options(&cl, argc, argv);
    if (rc == CMD_CONTINUE && !a->prompt && !a->golden)
        return cmd_usage_error(&cl, "--prompt (or --golden) is required");
    return rc;
}

/* meta.model_config.tie_embeddings of a lowered program (false when absent). */
static bool ties_embeddings(const ir_program *p)
{
    cJSON *meta = cJSON_Parse(p->meta_json ? p->meta_json : "{}");
    const cJSON *mc = cJSON_GetObjectItemCaseSensitive(meta, "model_config");
    bool tie = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(mc, "tie_embeddings"));
    cJSON_Delete(meta);
    return tie;
}

/* A fixture's golden.json (refvm_golden_read). */
static ir_status golden_read(const char *path, refvm_golden *g, ir_error *err)
{
    size_t len = 0;
    char *text = cmd_read_text(path, &len, err);
    if (!text)
        return err->status;
    ir_status s = refvm_golden_read(text, len, path, g, err);
    free(text);
    return s;
}

static int exit_for_mk(mk_status s)
{
    switch (s) {
    case MK_OK: return AMK_EXIT_OK;
    case MK_TIMEOUT: return AMK_EXIT_TIMEOUT;
    case MK_REFUSED: case MK_CUDA_ERROR: return AMK_EXIT_REFUTED;
    default: return AMK_EXIT_MALFORMED;
    }
}

/* Everything one GPU decode holds, freed by launch_free. */
typedef struct {
    launch_args a;
    ir_program *p;
    char *cert;
    size_t cert_len;
    mk_handle *h;
    refvm_st *st;
    refvm *vm;
    refvm_golden g;
    int32_t *prompt, *gen;
    int n_prompt;
    float *logits;
    double *ms;
    mk_status status;
    mk_step_status sst;
    const char *verdict;
    cmd_gate_totals vmc, gdc;
    int64_t tok_equal, tok_compared, n_gen, launches, done_launches, timeout_pos;
    int exit_code;
    char sst_why[sizeof ((ir_error *)0)->why];   /* the TIMEOUT detail */
} launch_state;

static void launch_free(launch_state *x)
{
    mk_free(x->h);
    refvm_free(x->vm);
    refvm_st_close(x->st);
    refvm_golden_free(&x->g);
    ir_program_free(x->p);
    free(x->cert);
    free(x->prompt);
    free(x->gen);
    free(x->logits);
    free(x->ms);
}

/* Program, certificate, golden and prompt (--prompt, else the golden's). */
static ir_status load_inputs(launch_state *x, ir_error *err)
{
    const launch_args *a = &x->a;
    ir_status s = ir_read_file(a->program, NULL, &x->p, err);
    if (s != IR_OK)
        return s;
    if (a->cert && !(x->cert = cmd_read_text(a->cert, &x->cert_len, err)))
        return err->status;
    if (a->golden && (s = golden_read(a->golden, &x->g, err)) != IR_OK)
        return s;
    if (a->prompt) {
        x->prompt = base_parse_i32_list(a->prompt, 0, INT32_MAX, &x->n_prompt);
        return x->prompt ? IR_OK : ir_fail(err, IR_ERR_MALFORMED, "--prompt", "must be "
                                           "comma-separated token ids");
    }
    x->n_prompt = x->g.n_prompt;
    x->prompt = malloc(sizeof *x->prompt * (size_t)(x->n_prompt + 1));
    if (!x->prompt || !x->n_prompt)
        return ir_fail(err, IR_ERR_MALFORMED, a->golden, "no prompt");
    memcpy(x->prompt, x->g.prompt, sizeof *x->prompt * (size_t)x->n_prompt);
    return IR_OK;
}

/* The reference VM of --check and the buffers of the decode. */
static ir_status prepare_decode(launch_state *x, bool tie, ir_error *err)
{
    x->launches = x->n_prompt + x->a.steps - 1;
    if (x->launches > mk_max_seq(x->h))
        return ir_fail(err, IR_ERR_MALFORMED, "--steps", "prompt (%d) + steps (%lld) - 1 "
                       "launches exceed max_seq %lld", x->n_prompt, (long long)x->a.steps,
                       (long long)mk_max_seq(x->h));
    if (x->a.check) {
        refvm_opts vo;
        refvm_opts_default(&vo);
        vo.tie_embeddings = tie;
        ir_status s = refvm_st_open(x->a.weights, &x->st, err);
        if (s == IR_OK)
            s = refvm_new(x->p, &vo, &x->vm, err);
        if (s == IR_OK)
            s = refvm_bind(x->vm, x->st, err);
        if (s != IR_OK)
            return s;
    }
    x->gen = calloc((size_t)x->a.steps + 1, sizeof *x->gen);
    x->logits = malloc(sizeof *x->logits * (size_t)(mk_vocab(x->h) + 1));
    x->ms = calloc((size_t)x->launches + 1, sizeof *x->ms);
    return x->gen && x->logits && x->ms ? IR_OK : ir_fail(err, IR_ERR_NOMEM, "launch",
                                                          "out of memory");
}

/* The reference VM's step at pos, its logits folded into the --check totals. */
static ir_status check_step(launch_state *x, int32_t tok, int64_t pos, ir_error *err)
{
    refvm_result r;
    ir_status s = refvm_step(x->vm, tok, pos, &r, err);
    if (s != IR_OK)
        return s;
    bool ok = r.outcome == REFVM_DONE;
    refvm_result_free(&r);
    if (!ok)
        return ir_fail(err, IR_ERR_MALFORMED, "refvm", "the reference VM did not finish at pos "
                       "%lld", (long long)pos);
    int64_t n = 0;
    cmd_gate_fold(&x->vmc, x->logits, refvm_logits(x->vm, &n), mk_vocab(x->h), x->a.tol, pos);
    return IR_OK;
}

/* Every launch; a TIMEOUT or a failed launch ends the decode with its verdict. */
static ir_status decode(launch_state *x, ir_error *err)
{
    int32_t tok = x->prompt[0];
    for (int64_t pos = 0; pos < x->launches; pos++) {
        x->status = mk_step(x->h, tok, pos, x->logits, &x->sst, err);
        if (x->status != MK_OK) {
            x->verdict = x->status == MK_TIMEOUT ? "TIMEOUT" : mk_status_name(x->status);
            x->exit_code = exit_for_mk(x->status);
            if (x->status == MK_TIMEOUT)
                x->timeout_pos = pos;
            else
                fprintf(stderr, "amk launch: %s at %s: %s\n", x->verdict, err->where, err->why);
            return IR_OK;
        }
        x->ms[x->done_launches++] = x->sst.ms;
        ir_status s = x->vm ? check_step(x, tok, pos, err) : IR_OK;
        if (s != IR_OK)
            return s;
        if (x->a.golden && pos < x->g.n_rows && x->g.width == mk_vocab(x->h))
            cmd_gate_fold(&x->gdc, x->logits, x->g.logits + pos * x->g.width, x->g.width,
                          x->a.tol, pos);
        if (pos + 1 >= x->n_prompt) {
            x->gen[x->n_gen] = x->sst.next_token;
            if (x->a.golden && x->n_gen < x->g.n_tokens) {
                x->tok_compared++;
                x->tok_equal += x->gen[x->n_gen] == x->g.tokens[x->n_gen];
            }
            tok = x->gen[x->n_gen++];
        } else {
            tok = x->prompt[pos + 1];
        }
    }
    bool fail = (x->vm && x->vmc.first_fail >= 0) ||
                (x->a.golden && (x->gdc.first_fail >= 0 || x->tok_equal != x->tok_compared));
    if (x->vm || x->a.golden) {
        x->verdict = fail ? "FAIL" : "PASS";
        x->exit_code = fail ? AMK_EXIT_REFUTED : AMK_EXIT_OK;
    }
    return IR_OK;
}

static void print_json_report(const launch_state *x, double med)
{
    const launch_args *a = &x->a;
    printf("{\"status\": \"%s\", \"verdict\": \"%s\", \"device\": ", mk_status_name(x->status),
           x->verdict);
    cmd_put_json_string(stdout, mk_device_name(x->h));
    printf(", \"verified\": %s, \"tokens\": ", a->unverified ? "false" : "true");
    cmd_print_tokens(x->gen, x->n_gen, true);
    printf(", \"launches\": %lld, \"ms_per_launch_median\": %.4f, \"spin_budget\": %lld",
           (long long)x->done_launches, med, (long long)a->spin_budget);
    int slots;
    int64_t slot_bytes, streamed;
    mk_stream_info(x->h, &slots, &slot_bytes, &streamed);
    printf(", \"weight_stream\": {\"slots\": %d, \"slot_bytes\": %lld, \"tasks\": %lld}",
           slots, (long long)slot_bytes, (long long)streamed);
    printf(", \"argmax_tiles\": %lld", (long long)mk_argmax_tiles(x->h));
    if (x->vm)
        printf(", \"check\": {\"tol_rel\": %g, \"max_rel_err\": %.3g, \"top1_agree\": %lld, "
               "\"compared\": %lld, \"first_fail_pos\": %lld}", a->tol, x->vmc.worst_rel,
               (long long)x->vmc.agree, (long long)x->vmc.compared,
               (long long)x->vmc.first_fail);
    if (a->golden)
        printf(", \"golden\": {\"max_rel_err\": %.3g, \"positions\": %lld, "
               "\"first_fail_pos\": %lld, \"tokens_equal\": %lld, \"tokens_compared\": %lld}",
               x->gdc.worst_rel, (long long)x->gdc.compared, (long long)x->gdc.first_fail,
               (long long)x->tok_equal, (long long)x->tok_compared);
    if (x->status == MK_TIMEOUT) {
        const mk_step_status *t = &x->sst;
        printf(", \"timeout\": {\"pos\": %lld, \"block\": %d, \"task\": %d, \"counter\": %d, "
               "\"threshold\": %lld, \"counter_value\": %lld, \"tasks_done\": %lld, "
               "\"detail\": ", (long long)x->timeout_pos, t->block, t->task, t->counter,
               (long long)t->threshold, (long long)t->counter_value, (long long)t->tasks_done);
        cmd_put_json_string(stdout, x->sst_why);
        printf("}");
    }
    printf("}\n");
}

static void print_text_report(const launch_state *x, double med)
{
    const launch_args *a = &x->a;
    printf("device: %s; plan %s%s\n", mk_device_name(x->h), a->program,
           a->unverified ? " (UNVERIFIED: test only)" : " (certificate checked)");
    int slots;
    int64_t slot_bytes, streamed;
    mk_stream_info(x->h, &slots, &slot_bytes, &streamed);
    if (slots)
        printf("weight stream: %lld tasks through %d SMEM slots of %lld B\n",
               (long long)streamed, slots, (long long)slot_bytes);
    else
        printf("weight stream: off (pipelining_depth 0, or too little dynamic SMEM)\n");
    int64_t tiles = mk_argmax_tiles(x->h);
    if (tiles)
        printf("argmax: over %lld tile %s\n", (long long)tiles, tiles == 1 ? "maximum" : "maxima");
    if (x->status == MK_TIMEOUT)
        fprintf(stderr, "amk launch: TIMEOUT at pos %lld: %s\n", (long long)x->timeout_pos,
                x->sst_why);
    printf("tokens:");
    cmd_print_tokens(x->gen, x->n_gen, false);
    printf("\nlaunches: %lld (prompt %d, generated %lld), GPU %.4f ms/launch (median)\n",
           (long long)x->done_launches, x->n_prompt, (long long)x->n_gen, med);
    bool vm_pass = x->vmc.first_fail < 0 && x->vmc.compared == x->done_launches &&
                   x->done_launches > 0;
    if (x->vm)
        printf("check vs reference VM: %s  max rel err %.3g (tolerance %g), top-1 agreement "
               "%lld/%lld\n", vm_pass ? "PASS" : "FAIL", x->vmc.worst_rel, a->tol,
               (long long)x->vmc.agree, (long long)x->vmc.compared);
    bool golden_pass = x->gdc.first_fail < 0 && x->tok_equal == x->tok_compared &&
                       x->gdc.compared > 0;
    if (a->golden)
        printf("check vs HF golden: %s  logits max rel err %.3g over %lld positions, greedy "
               "tokens %lld/%lld equal\n", golden_pass ? "PASS" : "FAIL", x->gdc.worst_rel,
               (long long)x->gdc.compared, (long long)x->tok_equal, (long long)x->tok_compared);
    printf("verdict: %s\n", x->verdict);
}

/* The megakernel loaded from the program, its certificate and the weights; a refusal printed
 * (its exit code in x->exit_code) returns false. */
static bool load_kernel(launch_state *x, bool tie, ir_error *err)
{
    mk_options o;
    mk_options_default(&o);
    o.spin_budget = x->a.spin_budget;
    o.unverified = x->a.unverified;
    o.device = x->a.device;
    mk_status ms = mk_load(x->p, x->cert, x->cert_len, x->a.weights, tie, &o, &x->h, err);
    if (ms == MK_OK)
        return true;
    if (x->a.json)
        cmd_print_status_json(mk_status_name(ms), err);
    else
        fprintf(stderr, "amk launch: %s at %s: %s\n", mk_status_name(ms), err->where, err->why);
    x->exit_code = exit_for_mk(ms);
    return false;
}

/* The steps of a launch; false with err set when an error is left to report. */
static bool launch_steps(launch_state *x, ir_error *err)
{
    if (load_inputs(x, err) != IR_OK)
        return false;
    bool tie = ties_embeddings(x->p);
    if (!load_kernel(x, tie, err))
        return true;
    if (prepare_decode(x, tie, err) != IR_OK || decode(x, err) != IR_OK)
        return false;
    snprintf(x->sst_why, sizeof x->sst_why, "%s", err->why);
    qsort(x->ms, (size_t)x->done_launches, sizeof *x->ms, base_cmp_double);
    double med = x->done_launches ? x->ms[x->done_launches / 2] : 0;
    if (x->a.json)
        print_json_report(x, med);
    else
        print_text_report(x, med);
    return true;
}

int cmd_launch(int argc, char **argv)
{
    launch_state x;
    memset(&x, 0, sizeof x);
    int rc = parse_args(argc, argv, &x.a);
    if (rc != CMD_CONTINUE)
        return rc;
    if (!mk_have_cuda()) {
        fprintf(stderr, "amk launch: this build has no CUDA support (nvcc was not found when amk "
                "was built); rebuild with nvcc on PATH to run the megakernel\n");
        if (x.a.json)
            printf("{\"status\": \"NO_CUDA\", \"why\": \"this build has no CUDA support\"}\n");
        return AMK_EXIT_MALFORMED;
    }
    x.verdict = "DONE";
    x.timeout_pos = -1;
    cmd_gate_totals_init(&x.vmc);
    cmd_gate_totals_init(&x.gdc);
    ir_error err = {0};
    if (!launch_steps(&x, &err)) {
        cmd_report_error("amk launch", x.a.json, &err);
        x.exit_code = cmd_exit_for(err.status ? err.status : IR_ERR_MALFORMED);
    }
    launch_free(&x);
    return x.exit_code;
}
