/*
 * cmd_run.c - `amk run`: multi-token greedy decode of a program on the reference VM, one launch
 * per token with the KV cache carried across launches, optionally checked step by step against
 * the independent eager forward (the correctness gate).
 *
 * A program is run only when the verifier proves it (or with --unverified, to replay an
 * unproved or refuted program and watch it fail dynamically).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <math.h>

#include <cjson/cJSON.h>

#include "lower/lower.h"
#include "refvm/refvm.h"
#include "tools/cmd.h"
#include "verify/verify.h"

static const char RUN_ABOUT[] =
    "Decode on the CPU reference VM: feed the prompt one token per launch (pos 0, 1, ...),\n"
    "then generate N tokens greedily, carrying the KV cache across launches. Position-\n"
    "dependent params are re-evaluated for every pos (SPEC.md 3.4).\n";

typedef struct {
    const char *program, *weights, *prompt, *model, *replay, *interleave;
    int64_t steps;
    bool check, unverified, json;
    uint64_t seed;
    double tol;
} run_args;

static int parse_args(int argc, char **argv, run_args *a)
{
    *a = (run_args){.steps = 16, .tol = REFVM_GATE_REL_TOL};
    const base_option opts[] = {
        BASE_STR("--weights", &a->weights, "FILE", "safetensors file; WEIGHT buffers bind by "
                 "their source key", .required = true),
        BASE_STR("--prompt", &a->prompt, "LIST", "comma-separated token ids (at least one)"),
        BASE_I64("--steps", &a->steps, "N", 1, 1000000, "tokens to generate",
                 .show_default = true),
        BASE_FLAG("--check", &a->check, "run the eager reference forward in lockstep and "
                  "compare the\nlogits at every launch (SPEC.md 10); exit 1 on FAIL"),
        BASE_STR("--model", &a->model, "MODEL", "model for --check (preset or config.json); "
                 "default: the\nprogram's meta.model_config"),
        BASE_STR("--interleave", &a->interleave, "seed=N", "pick among enabled queue heads "
                 "pseudo-randomly from seed N\n(decimal or 0x hex; default: always the lowest "
                 "enabled queue)"),
        BASE_DOUBLE("--tol", &a->tol, "REL", 0, INFINITY, "gate tolerance, relative to max "
                    "|logit|", .show_default = true),
        BASE_FLAG("--unverified", &a->unverified, "run without a PROVED verdict (replaying "
                  "unsafe programs)"),
        BASE_STR("--replay", &a->replay, "WITNESS", "replay an amk-verify witness (deadlock, "
                 "race, unwritten read)\nin one launch at its pos: its prefix (and the racing "
                 "pair,\nordered to expose the race) first, then the usual order;\nimplies "
                 "--unverified; --prompt defaults to 0"),
        BASE_FLAG("--json", &a->json, "one JSON verdict object on stdout"),
    };
    const base_cmdline cl = {
        .prog = "amk run",
        .synopsis = "usage: amk run PROGRAM --weights FILE --prompt T1,T2,... --steps N "
                    "[options]\n",
        .about = RUN_ABOUT, .opts = opts, .n_opts = sizeof opts / sizeof opts[0],
        .pos_name = "PROGRAM", .min_pos = 1, .max_pos = 1, .pos = &a->program,
        .epilog = "exit: 0 decoded (and PASS), 1 check FAIL, a dynamic fault (deadlock, read of "
                  "an\nunwritten element) or a REFUTED program, 2 malformed input, a MALFORMED "
                  "program or\nbad usage, 3 the verifier said UNKNOWN.\n",
    };
    int rc = cmd_parse_options(&cl, argc, argv);
    if (rc != CMD_CONTINUE)
        return rc;
    if (a->interleave && (strncmp(a->interleave, "seed=", 5) ||
                          !base_parse_u64(a->interleave + 5, &a->seed)))
        return cmd_usage_error(&cl, "--interleave: expected seed=N (N decimal or 0x hex), got "
                               "'%s'", a->interleave);
    if (a->replay) {
        a->unverified = true;
        if (!a->prompt)
            a->prompt = "0";
    }
    if (!a->prompt)
        return cmd_usage_error(&cl, "--prompt is required");
    return CMD_CONTINUE;
}

/* The witness file's task order (refvm_replay_from_witness). */
static ir_status load_witness(const char *path, refvm_replay *r, ir_error *err)
{
    size_t len = 0;
    char *text = cmd_read_text(path, &len, err);
    if (!text)
        return err->status;
    ir_status s = refvm_replay_from_witness(text, len, path, r, err);
    free(text);
    return s;
}

/* Everything one decode holds, freed by run_free. */
typedef struct {
    run_args a;
    ir_program *p;
    refvm_st *st;
    refvm *vm;
    refvm_eager *eager;
    lower_model m;
    bool have_model;
    int32_t *prompt, *gen;
    int n_prompt;
    refvm_replay replay;
    int64_t n_gen, fault_pos;
    refvm_result res;
    cmd_gate_totals gate;
    double vm_seconds;
    const char *verdict;
} run_state;

static void run_free(run_state *x)
{
    refvm_result_free(&x->res);
    refvm_eager_free(x->eager);
    refvm_free(x->vm);
    refvm_st_close(x->st);
    ir_program_free(x->p);
    free(x->prompt);
    free(x->gen);
    refvm_replay_free(&x->replay);
}

/* The verifier's verdict on the program: CMD_CONTINUE when PROVED, else the refusal printed and
 * its exit code; *s an error left to report. */
static int require_proved(const run_state *x, ir_status *s, ir_error *err)
{
    verify_opts vo;
    verify_result vr;
    verify_opts_default(&vo);
    if ((*s = verify_program(x->p, &vo, &vr, err)) != IR_OK)
        return CMD_CONTINUE;
    verify_verdict v = vr.verdict;
    if (v != VERIFY_PROVED) {
        if (x->a.json)
            printf("{\"verdict\": \"REFUSED\", \"program_verdict\": \"%s\"}\n",
                   verify_verdict_name(v));
        else
            fprintf(stderr, "amk run: refusing %s: the verifier says %s (use --unverified to"
                    " replay it anyway)\n", x->a.program, verify_verdict_name(v));
        for (int i = 0; i < VERIFY_N_OBLIGATIONS && !x->a.json; i++)
            if (vr.ob[i].status != VERIFY_PROVED && vr.ob[i].status != VERIFY_SKIPPED)
                fprintf(stderr, "  %s: %s\n", verify_obligation_name((verify_obligation)i),
                        vr.ob[i].detail);
    }
    verify_result_free(&vr);
    return v == VERIFY_PROVED  ? CMD_CONTINUE
         : v == VERIFY_MALFORMED ? AMK_EXIT_MALFORMED
         : v == VERIFY_UNKNOWN   ? AMK_EXIT_UNKNOWN : AMK_EXIT_REFUTED;
}

/* The model (--model, else the program's meta; needed only by --check) and, with --replay, the
 * witness's task order, which must be for this very program. */
static ir_status load_model_and_witness(run_state *x, refvm_opts *o, ir_error *err)
{
    ir_status s;
    if (x->a.model) {
        if ((s = lower_model_load(x->a.model, &x->m, err)) != IR_OK)
            return s;
        x->have_model = true;
    } else if (lower_model_from_meta(x->p, &x->m, err) == IR_OK) {
        x->have_model = true;
    } else if (x->a.check) {
        return err->status;
    }
    if (!x->a.replay)
        return IR_OK;
    char have[65];
    const char *want = x->replay.program_sha256;
    if ((s = load_witness(x->a.replay, &x->replay, err)) != IR_OK)
        return s;
    if ((s = ir_program_sha256(x->p, have, err)) != IR_OK)
        return s;
    if (want[0] && strcmp(want, have))
        return ir_fail(err, IR_ERR_MALFORMED, x->a.replay, "witness is for program %.16s..., "
                       "this program is %.16s...", want, have);
    o->schedule = x->replay.order;
    o->n_schedule = x->replay.n;
    x->a.check = false;
    return IR_OK;
}

/* The VM bound to the weights, the launch count and prompt checked, the eager forward. */
static ir_status build_vm(run_state *x, const refvm_opts *o, ir_error *err)
{
    ir_status s = refvm_st_open(x->a.weights, &x->st, err);
    if (s == IR_OK)
        s = refvm_new(x->p, o, &x->vm, err);
    if (s == IR_OK)
        s = refvm_bind(x->vm, x->st, err);
    if (s != IR_OK)
        return s;
    int64_t launches = x->n_prompt + x->a.steps - 1;
    if (!x->a.replay && launches > refvm_max_seq(x->vm))
        return ir_fail(err, IR_ERR_MALFORMED, "--steps", "prompt (%d) + steps (%lld) - 1 "
                       "launches exceed the program's max_seq %lld", x->n_prompt,
                       (long long)x->a.steps, (long long)refvm_max_seq(x->vm));
    for (int i = 0; x->have_model && i < x->n_prompt; i++)
        if (x->prompt[i] >= x->m.vocab)
            return ir_fail(err, IR_ERR_MALFORMED, "--prompt", "token %d is outside the "
                           "vocabulary [0, %lld)", x->prompt[i], (long long)x->m.vocab);
    if (x->a.check &&
        (s = refvm_eager_new(&x->m, x->st, refvm_max_seq(x->vm), &x->eager, err)) != IR_OK)
        return s;
    x->gen = calloc((size_t)x->a.steps, sizeof *x->gen);
    return x->gen ? IR_OK : ir_fail(err, IR_ERR_NOMEM, "run", "out of memory");
}

/* One launch at pos: the VM step, the eager comparison, the next token into *tok. *fault is set
 * when the launch faulted (x->verdict says how). */
static ir_status run_launch(run_state *x, int64_t pos, int32_t *tok, bool *fault, ir_error *err)
{
    double t0 = base_now_s();
    refvm_result_free(&x->res);
    ir_status s = refvm_step(x->vm, *tok, pos, &x->res, err);
    if (s != IR_OK)
        return s;
    x->vm_seconds += base_now_s() - t0;
    if ((*fault = x->res.outcome != REFVM_DONE)) {
        x->verdict = refvm_outcome_name(x->res.outcome);
        x->fault_pos = pos;
        return IR_OK;
    }
    int64_t nl;
    const float *logits = refvm_logits(x->vm, &nl);
    if (x->eager) {
        const float *ref;
        if ((s = refvm_eager_forward(x->eager, *tok, pos, &ref, err)) != IR_OK)
            return s;
        if (nl != x->m.vocab)
            return ir_fail(err, IR_ERR_MALFORMED, "logits", "program has %lld logits, model "
                           "vocab %lld", (long long)nl, (long long)x->m.vocab);
        cmd_gate_fold(&x->gate, logits, ref, nl, x->a.tol, pos);
    }
    if (pos + 1 >= x->n_prompt)
        *tok = x->gen[x->n_gen++] = refvm_next_token(x->vm);
    else
        *tok = x->prompt[pos + 1];
    return IR_OK;
}

/* Every launch: the prompt, then the generated tokens (one launch at the witness's pos for
 * --replay). */
static ir_status decode(run_state *x, ir_error *err)
{
    int64_t first = x->a.replay ? x->replay.pos : 0;
    int64_t end = x->a.replay ? x->replay.pos + 1 : x->n_prompt + x->a.steps - 1;
    int32_t tok = x->prompt[0];
    bool fault = false;
    cmd_progress pr;
    cmd_progress_begin(&pr, "amk run");
    for (int64_t pos = first; pos < end && !fault; pos++) {
        ir_status s = run_launch(x, pos, &tok, &fault, err);
        if (s != IR_OK)
            return s;
        cmd_progress_say(&pr, "launch %lld of %lld done", (long long)(pos - first + 1),
                         (long long)(end - first));
    }
    if (x->eager && !fault)
        x->verdict = x->gate.first_fail >= 0 ? "FAIL" : "PASS";
    return IR_OK;
}

static void print_json_report(const run_state *x, int64_t ran, double per_step)
{
    const run_args *a = &x->a;
    printf("{\"verdict\": \"%s\", \"program\": ", x->verdict);
    cmd_put_json_string(stdout, a->program);
    printf(", \"verified\": %s, \"replay\": ", a->unverified ? "false" : "true");
    if (a->replay)
        cmd_put_json_string(stdout, a->replay);
    else
        printf("null");
    printf(", \"prompt\": ");
    cmd_print_tokens(x->prompt, x->n_prompt, true);
    printf(", \"tokens\": ");
    cmd_print_tokens(x->gen, x->n_gen, true);
    printf(", \"launches\": %lld, \"vm_seconds\": %.6f, \"seconds_per_step\": %.6g",
           (long long)ran, x->vm_seconds, per_step);
    if (x->eager)
        printf(", \"check\": {\"tol_rel\": %g, \"max_rel_err\": %.3g, \"max_abs_err\": %.3g, "
               "\"top1_agree\": %lld, \"compared\": %lld, \"first_fail_pos\": %lld}",
               a->tol, x->gate.worst_rel, x->gate.worst_abs, (long long)x->gate.agree,
               (long long)x->gate.compared, (long long)x->gate.first_fail);
    if (x->res.outcome != REFVM_DONE) {
        printf(", \"fault\": {\"outcome\": \"%s\", \"pos\": %lld, \"task\": %d, \"buffer\": %d,"
               " \"element\": %lld, \"detail\": ", refvm_outcome_name(x->res.outcome),
               (long long)x->fault_pos, x->res.task, x->res.buffer, (long long)x->res.element);
        cmd_put_json_string(stdout, x->res.detail ? x->res.detail : "");
        printf("}");
    }
    printf("}\n");
}

static void print_text_report(const run_state *x, int64_t ran, double per_step)
{
    const run_args *a = &x->a;
    const refvm_result *res = &x->res;
    if (res->outcome != REFVM_DONE)
        fprintf(stderr, "amk run: %s at pos %lld\n%s\n", refvm_outcome_name(res->outcome),
                (long long)x->fault_pos, res->detail ? res->detail : "");
    if (a->replay)
        printf("replay of %s (%d forced tasks) at pos %lld: %s\n", a->replay, x->replay.n,
               (long long)x->replay.pos, res->outcome == REFVM_DONE
               ? "the launch finished without a fault" : refvm_outcome_name(res->outcome));
    printf("tokens:");
    cmd_print_tokens(x->gen, x->n_gen, false);
    printf("\n");
    printf("launches: %lld (prompt %d, generated %lld), VM %.3f ms/step, %.2f tokens/s%s\n",
           (long long)ran, x->n_prompt, (long long)x->n_gen, 1e3 * per_step,
           per_step > 0 ? 1.0 / per_step : 0.0, a->unverified ? " (unverified)" : "");
    if (x->eager)
        printf("check: %s  max |vm - eager| = %.3g (%.3g of max |logit|, tolerance %g), "
               "top-1 agreement %lld/%lld%s\n", x->verdict, x->gate.worst_abs,
               x->gate.worst_rel, a->tol, (long long)x->gate.agree,
               (long long)x->gate.compared,
               !strcmp(x->verdict, "FAIL") ? "; first failing pos printed in --json" : "");
}

/* The steps of a run; CMD_CONTINUE with *s set when an error is left to report. */
static int run_steps(run_state *x, ir_status *s, ir_error *err)
{
    x->prompt = base_parse_i32_list(x->a.prompt, 0, INT32_MAX, &x->n_prompt);
    if (!x->prompt) {
        *s = ir_fail(err, IR_ERR_MALFORMED, "--prompt", "must be comma-separated token ids, got "
                     "'%s'", x->a.prompt);
        return CMD_CONTINUE;
    }
    if ((*s = ir_read_file(x->a.program, NULL, &x->p, err)) != IR_OK)
        return CMD_CONTINUE;
    int rc = x->a.unverified ? CMD_CONTINUE : require_proved(x, s, err);
    if (rc != CMD_CONTINUE || *s != IR_OK)
        return rc;
    refvm_opts o;
    refvm_opts_default(&o);
    o.interleave = x->a.interleave != NULL;
    o.interleave_seed = x->a.seed;
    if ((*s = load_model_and_witness(x, &o, err)) != IR_OK)
        return CMD_CONTINUE;
    o.tie_embeddings = x->have_model && x->m.tie_embeddings;
    if ((*s = build_vm(x, &o, err)) != IR_OK || (*s = decode(x, err)) != IR_OK)
        return CMD_CONTINUE;
    int64_t ran = x->n_gen > 0 ? x->n_prompt + x->n_gen - 1 : 0;
    double per_step = ran ? x->vm_seconds / (double)ran : 0;
    if (x->a.json)
        print_json_report(x, ran, per_step);
    else
        print_text_report(x, ran, per_step);
    return !strcmp(x->verdict, "DONE") || !strcmp(x->verdict, "PASS") ? AMK_EXIT_OK
                                                                     : AMK_EXIT_REFUTED;
}

int cmd_run(int argc, char **argv)
{
    run_state x;
    memset(&x, 0, sizeof x);
    int rc = parse_args(argc, argv, &x.a);
    if (rc != CMD_CONTINUE)
        return rc;
    cmd_gate_totals_init(&x.gate);
    x.verdict = "DONE";
    x.fault_pos = -1;
    ir_error err = {0};
    ir_status s = IR_OK;
    rc = run_steps(&x, &s, &err);
    if (rc == CMD_CONTINUE) {
        cmd_report_error("amk run", x.a.json, &err);
        rc = cmd_exit_for(s);
    }
    run_free(&x);
    return rc;
}
