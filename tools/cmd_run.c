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
#include <time.h>

#include <cjson/cJSON.h>

#include "lower/lower.h"
#include "refvm/refvm.h"
#include "tools/cmd.h"
#include "verify/verify.h"

static void usage(FILE *f)
{
    fprintf(f,
            "usage: amk run PROGRAM --weights FILE --prompt T1,T2,... --steps N [options]\n"
            "\n"
            "Decode on the CPU reference VM: feed the prompt one token per launch (pos 0, 1, ...),\n"
            "then generate N tokens greedily, carrying the KV cache across launches. Position-\n"
            "dependent params are re-evaluated for every pos (SPEC.md 3.4).\n"
            "\n"
            "  --weights FILE      safetensors file; WEIGHT buffers bind by their source key\n"
            "  --prompt LIST       comma-separated token ids (at least one)\n"
            "  --steps N           tokens to generate (default 16)\n"
            "  --check             run the eager reference forward in lockstep and compare the\n"
            "                      logits at every launch (SPEC.md 10); exit 1 on FAIL\n"
            "  --model MODEL       model for --check (preset or config.json); default: the\n"
            "                      program's meta.model_config\n"
            "  --interleave seed=N pick among enabled queue heads pseudo-randomly from seed N\n"
            "                      (default: always the lowest enabled queue)\n"
            "  --tol REL           gate tolerance, relative to max |logit| (default %g)\n"
            "  --unverified        run without a PROVED verdict (replaying unsafe programs)\n"
            "  --replay WITNESS    replay an amk-verify witness (deadlock, race, unwritten read)\n"
            "                      in one launch at its pos: its prefix (and the racing pair,\n"
            "                      ordered to expose the race) first, then the usual order;\n"
            "                      implies --unverified; --prompt defaults to 0\n"
            "  --json              one JSON verdict object on stdout\n"
            "\n"
            "exit: 0 decoded (and PASS), 1 check FAIL, a dynamic fault (deadlock, read of an\n"
            "unwritten element) or a REFUTED program, 2 malformed input, a MALFORMED program or\n"
            "bad usage, 3 the verifier said UNKNOWN.\n",
            REFVM_GATE_REL_TOL);
}

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* Comma-separated non-negative ints; NULL on a bad list. *n gets the count. */
static int32_t *parse_tokens(const char *s, int *n)
{
    int cap = 1;
    for (const char *c = s; *c; c++)
        cap += *c == ',';
    int32_t *t = malloc((size_t)cap * sizeof *t);
    if (!t)
        return NULL;
    *n = 0;
    const char *c = s;
    while (*c) {
        char *end;
        long v = strtol(c, &end, 10);
        if (end == c || v < 0 || v > INT32_MAX || (*end && *end != ',')) {
            free(t);
            return NULL;
        }
        t[(*n)++] = (int32_t)v;
        c = *end ? end + 1 : end;
    }
    if (*n == 0) {
        free(t);
        return NULL;
    }
    return t;
}


/* A witness of amk-verify (the object itself, or a verdict object holding it under "witness"):
 * the task order to replay and the position. Deadlock and unwritten-read witnesses give their
 * "prefix"; a race gives its "interleaving.run" and then the racing pair, the reader first when
 * both touch one buffer (it then reads before its producer) and the writer first when they
 * share a page (the reader then finds its data overwritten). The caller frees *sched. */
static ir_status load_witness(const char *path, int32_t **sched, int32_t *n, int64_t *pos,
                              char sha[65], ir_error *err)
{
    *sched = NULL;
    *n = 0;
    *pos = 0;
    sha[0] = 0;
    char *text;
    size_t len;
    ir_status rs = ir_read_text_file(path, IR_MAX_FILE_BYTES, &text, &len, err);
    if (rs != IR_OK)
        return rs;
    cJSON *root = cJSON_ParseWithLength(text, len);
    free(text);
    const cJSON *w = root;
    if (cJSON_IsObject(cJSON_GetObjectItemCaseSensitive(root, "witness")))
        w = cJSON_GetObjectItemCaseSensitive(root, "witness");
    const cJSON *kind = cJSON_GetObjectItemCaseSensitive(w, "kind");
    ir_status s = IR_OK;
    if (!cJSON_IsString(kind)) {
        s = ir_fail(err, IR_ERR_MALFORMED, path, "not a witness object (no \"kind\")");
        goto done;
    }
    const cJSON *h = cJSON_GetObjectItemCaseSensitive(w, "program_sha256");
    if (cJSON_IsString(h))
        snprintf(sha, 65, "%s", h->valuestring);
    const cJSON *pre = cJSON_GetObjectItemCaseSensitive(w, "prefix");
    const cJSON *il = cJSON_GetObjectItemCaseSensitive(w, "interleaving");
    const cJSON *pair = NULL;
    if (cJSON_IsObject(il)) {
        pre = cJSON_GetObjectItemCaseSensitive(il, "run");
        pair = cJSON_GetObjectItemCaseSensitive(il, "then_start");
    }
    const cJSON *p = cJSON_GetObjectItemCaseSensitive(w, "pos");
    const cJSON *ov = cJSON_GetObjectItemCaseSensitive(w, "overlap");
    if (!cJSON_IsNumber(p) && cJSON_IsObject(ov))
        p = cJSON_GetObjectItemCaseSensitive(ov, "at_pos");
    if (p && !cmd_json_int(p, 0, INT32_MAX, pos)) {
        s = ir_fail(err, IR_ERR_MALFORMED, path, "pos must be an integer in [0, 2^31)");
        goto done;
    }
    if (!cJSON_IsArray(pre)) {
        s = ir_fail(err, IR_ERR_UNSUPPORTED, path, "a \"%.40s\" witness has no task order to "
                    "replay", kind->valuestring);
        goto done;
    }
    int np = cJSON_GetArraySize(pre), npair = cJSON_IsArray(pair) ? cJSON_GetArraySize(pair) : 0;
    *sched = malloc(sizeof **sched * (size_t)(np + npair + 1));
    if (!*sched) {
        s = ir_fail(err, IR_ERR_NOMEM, path, "out of memory");
        goto done;
    }
    int i = 0;
    for (const cJSON *e = pre->child; e; e = e->next, i++) {   /* not GetArrayItem: quadratic */
        int64_t v;
        if (!cmd_json_int(e, 0, INT32_MAX, &v)) {
            s = ir_fail(err, IR_ERR_MALFORMED, path, "task order entry %d is not a task id", i);
            goto done;
        }
        (*sched)[(*n)++] = (int32_t)v;
    }
    if (npair == 2) {
        int64_t a, b;
        if (!cmd_json_int(cJSON_GetArrayItem(pair, 0), 0, INT32_MAX, &a) ||
            !cmd_json_int(cJSON_GetArrayItem(pair, 1), 0, INT32_MAX, &b)) {
            s = ir_fail(err, IR_ERR_MALFORMED, path, "then_start must hold two task ids");
            goto done;
        }
        const cJSON *acc = cJSON_GetObjectItemCaseSensitive(w, "accesses");
        const cJSON *bufs = cJSON_GetObjectItemCaseSensitive(w, "buffers");
        const cJSON *a0 = cJSON_GetArrayItem(acc, 0), *b0 = cJSON_GetArrayItem(bufs, 0),
                    *b1 = cJSON_GetArrayItem(bufs, 1);
        bool same_buffer = cJSON_IsNumber(b0) && cJSON_IsNumber(b1) &&
                           b0->valuedouble == b1->valuedouble;
        bool a_reads = cJSON_IsString(a0) && !strcmp(a0->valuestring, "read");
        bool a_first = same_buffer ? a_reads : !a_reads;
        (*sched)[(*n)++] = (int32_t)(a_first ? a : b);
        (*sched)[(*n)++] = (int32_t)(a_first ? b : a);
    }
done:
    cJSON_Delete(root);
    if (s != IR_OK) {
        free(*sched);
        *sched = NULL;
        *n = 0;
    }
    return s;
}

typedef struct {
    const char *program, *weights, *prompt, *model, *replay;
    int64_t steps;
    bool check, unverified, json, interleave;
    uint64_t seed;
    double tol;
} run_args;

static int parse_args(int argc, char **argv, run_args *a)
{
    memset(a, 0, sizeof *a);
    a->steps = 16;
    a->tol = REFVM_GATE_REL_TOL;
    for (int i = 1; i < argc; i++) {
        const char *k = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        char *end;
        if (!strcmp(k, "--help") || !strcmp(k, "-h")) {
            usage(stdout);
            return -1;
        } else if (!strcmp(k, "--check")) {
            a->check = true;
        } else if (!strcmp(k, "--unverified")) {
            a->unverified = true;
        } else if (!strcmp(k, "--json")) {
            a->json = true;
        } else if (!strcmp(k, "--weights") && v) {
            a->weights = argv[++i];
        } else if (!strcmp(k, "--prompt") && v) {
            a->prompt = argv[++i];
        } else if (!strcmp(k, "--replay") && v) {
            a->replay = argv[++i];
            a->unverified = true;
        } else if (!strcmp(k, "--model") && v) {
            a->model = argv[++i];
        } else if (!strcmp(k, "--steps") && v) {
            a->steps = strtoll(v, &end, 10);
            if (*end || !*v || a->steps < 1 || a->steps > 1000000) {
                fprintf(stderr, "amk run: --steps must be an integer in [1, 1000000]\n");
                return AMK_EXIT_MALFORMED;
            }
            i++;
        } else if (!strcmp(k, "--tol") && v) {
            a->tol = strtod(v, &end);
            if (*end || !*v || !(a->tol >= 0)) {
                fprintf(stderr, "amk run: --tol must be a number >= 0\n");
                return AMK_EXIT_MALFORMED;
            }
            i++;
        } else if (!strcmp(k, "--interleave") && v) {
            if (strncmp(v, "seed=", 5) || !v[5] || v[5] == '-') {
                fprintf(stderr, "amk run: --interleave takes seed=N\n");
                return AMK_EXIT_MALFORMED;
            }
            a->seed = strtoull(v + 5, &end, 0);
            if (*end) {
                fprintf(stderr, "amk run: --interleave takes seed=N\n");
                return AMK_EXIT_MALFORMED;
            }
            a->interleave = true;
            i++;
        } else if (k[0] != '-' && !a->program) {
            a->program = k;
        } else {
            fprintf(stderr, "amk run: unknown or incomplete argument '%s'\n", k);
            usage(stderr);
            return AMK_EXIT_MALFORMED;
        }
    }
    if (a->replay && !a->prompt)
        a->prompt = "0";
    if (!a->program || !a->weights || !a->prompt) {
        fprintf(stderr, "amk run: PROGRAM, --weights and --prompt are required\n");
        usage(stderr);
        return AMK_EXIT_MALFORMED;
    }
    return 0;
}

static void print_tokens_json(const int32_t *t, int64_t n)
{
    printf("[");
    for (int64_t i = 0; i < n; i++)
        printf("%s%d", i ? ", " : "", t[i]);
    printf("]");
}

int cmd_run(int argc, char **argv)
{
    run_args a;
    int rc = parse_args(argc, argv, &a);
    if (rc)
        return rc < 0 ? AMK_EXIT_OK : rc;

    ir_error err = {0};
    ir_program *p = NULL;
    refvm_st *st = NULL;
    refvm *vm = NULL;
    refvm_eager *eager = NULL;
    int32_t *prompt = NULL, *gen = NULL, *sched = NULL;
    int32_t n_sched = 0;
    int64_t replay_pos = 0;
    refvm_result res = {0};
    int n_prompt = 0;
    lower_model m;
    bool have_model = false;
    memset(&m, 0, sizeof m);
    const char *verdict = "DONE";
    int exit_code = AMK_EXIT_OK;
    ir_status s;

    prompt = parse_tokens(a.prompt, &n_prompt);
    if (!prompt) {
        s = ir_fail(&err, IR_ERR_MALFORMED, "--prompt", "must be comma-separated token ids, got '%s'",
                    a.prompt);
        goto fail;
    }
    if ((s = ir_read_file(a.program, NULL, &p, &err)) != IR_OK)
        goto fail;

    if (!a.unverified) {
        verify_opts vo;
        verify_result vr;
        verify_opts_default(&vo);
        if ((s = verify_program(p, &vo, &vr, &err)) != IR_OK)
            goto fail;
        if (vr.verdict != VERIFY_PROVED) {
            verify_verdict v = vr.verdict;
            if (a.json)
                printf("{\"verdict\": \"REFUSED\", \"program_verdict\": \"%s\"}\n",
                       verify_verdict_name(v));
            else
                fprintf(stderr, "amk run: refusing %s: the verifier says %s (use --unverified to"
                        " replay it anyway)\n", a.program, verify_verdict_name(v));
            for (int i = 0; i < VERIFY_N_OBLIGATIONS && !a.json; i++)
                if (vr.ob[i].status != VERIFY_PROVED && vr.ob[i].status != VERIFY_SKIPPED)
                    fprintf(stderr, "  %s: %s\n", verify_obligation_name((verify_obligation)i),
                            vr.ob[i].detail);
            verify_result_free(&vr);
            exit_code = v == VERIFY_MALFORMED ? AMK_EXIT_MALFORMED
                      : v == VERIFY_UNKNOWN   ? AMK_EXIT_UNKNOWN : AMK_EXIT_REFUTED;
            goto done;
        }
        verify_result_free(&vr);
    }

    if (a.model) {
        if ((s = lower_model_load(a.model, &m, &err)) != IR_OK)
            goto fail;
        have_model = true;
    } else if (lower_model_from_meta(p, &m, &err) == IR_OK) {
        have_model = true;
    } else if (a.check) {
        s = err.status;
        goto fail;
    }

    refvm_opts o;
    refvm_opts_default(&o);
    if (a.replay) {
        char want[65], have[65];
        if ((s = load_witness(a.replay, &sched, &n_sched, &replay_pos, want, &err)) != IR_OK)
            goto fail;
        if ((s = ir_program_sha256(p, have, &err)) != IR_OK)
            goto fail;
        if (want[0] && strcmp(want, have)) {
            s = ir_fail(&err, IR_ERR_MALFORMED, a.replay, "witness is for program %.16s..., this "
                        "program is %.16s...", want, have);
            goto fail;
        }
        o.schedule = sched;
        o.n_schedule = n_sched;
        a.check = false;
    }
    o.interleave = a.interleave;
    o.interleave_seed = a.seed;
    o.tie_embeddings = have_model && m.tie_embeddings;
    if ((s = refvm_st_open(a.weights, &st, &err)) != IR_OK)
        goto fail;
    if ((s = refvm_new(p, &o, &vm, &err)) != IR_OK)
        goto fail;
    if ((s = refvm_bind(vm, st, &err)) != IR_OK)
        goto fail;
    int64_t launches = a.replay ? 1 : n_prompt + a.steps - 1;
    if (!a.replay && launches > refvm_max_seq(vm)) {
        s = ir_fail(&err, IR_ERR_MALFORMED, "--steps", "prompt (%d) + steps (%lld) - 1 launches "
                    "exceed the program's max_seq %lld", n_prompt, (long long)a.steps,
                    (long long)refvm_max_seq(vm));
        goto fail;
    }
    if (have_model)
        for (int i = 0; i < n_prompt; i++)
            if (prompt[i] >= m.vocab) {
                s = ir_fail(&err, IR_ERR_MALFORMED, "--prompt", "token %d is outside the "
                            "vocabulary [0, %lld)", prompt[i], (long long)m.vocab);
                goto fail;
            }
    if (a.check && (s = refvm_eager_new(&m, st, refvm_max_seq(vm), &eager, &err)) != IR_OK)
        goto fail;

    gen = calloc((size_t)a.steps, sizeof *gen);
    if (!gen) {
        s = ir_fail(&err, IR_ERR_NOMEM, "run", "out of memory");
        goto fail;
    }
    double vm_seconds = 0, worst_rel = 0, worst_abs = 0;
    int64_t agree = 0, compared = 0, n_gen = 0, fail_pos = -1;
    int32_t tok = prompt[0];
    for (int64_t pos = a.replay ? replay_pos : 0; pos < (a.replay ? replay_pos + 1 : launches);
         pos++) {
        double t0 = now_s();
        refvm_result_free(&res);
        if ((s = refvm_step(vm, tok, pos, &res, &err)) != IR_OK)
            goto fail;
        vm_seconds += now_s() - t0;
        if (res.outcome != REFVM_DONE) {
            verdict = refvm_outcome_name(res.outcome);
            exit_code = AMK_EXIT_REFUTED;
            fail_pos = pos;
            break;
        }
        int64_t nl;
        const float *logits = refvm_logits(vm, &nl);
        if (eager) {
            const float *ref;
            if ((s = refvm_eager_forward(eager, tok, pos, &ref, &err)) != IR_OK)
                goto fail;
            if (nl != m.vocab) {
                s = ir_fail(&err, IR_ERR_MALFORMED, "logits", "program has %lld logits, model "
                            "vocab %lld", (long long)nl, (long long)m.vocab);
                goto fail;
            }
            refvm_gate_cmp c = refvm_gate_compare(logits, ref, nl, a.tol);
            compared++;
            agree += c.top_a == c.top_b;
            double rel = c.max_abs_ref > 0 ? c.max_abs_err / c.max_abs_ref : c.max_abs_err;
            if (c.max_abs_err > worst_abs)
                worst_abs = c.max_abs_err;
            if (rel > worst_rel || rel != rel)
                worst_rel = rel;
            if (!c.pass && fail_pos < 0)
                fail_pos = pos;
        }
        if (pos + 1 >= n_prompt) {
            gen[n_gen++] = refvm_next_token(vm);
            tok = gen[n_gen - 1];
        } else {
            tok = prompt[pos + 1];
        }
    }
    bool checked_fail = eager && fail_pos >= 0 && !strcmp(verdict, "DONE");
    if (eager && !strcmp(verdict, "DONE"))
        verdict = checked_fail ? "FAIL" : "PASS";
    if (checked_fail)
        exit_code = AMK_EXIT_REFUTED;
    int64_t ran = n_gen > 0 ? n_prompt + n_gen - 1 : 0;
    double per_step = ran ? vm_seconds / (double)ran : 0;

    if (a.json) {
        printf("{\"verdict\": \"%s\", \"program\": ", verdict);
        cmd_put_json_string(stdout, a.program);
        printf(", \"verified\": %s, \"replay\": ", a.unverified ? "false" : "true");
        if (a.replay)
            cmd_put_json_string(stdout, a.replay);
        else
            printf("null");
        printf(", \"prompt\": ");
        print_tokens_json(prompt, n_prompt);
        printf(", \"tokens\": ");
        print_tokens_json(gen, n_gen);
        printf(", \"launches\": %lld, \"vm_seconds\": %.6f, \"seconds_per_step\": %.6g",
               (long long)ran, vm_seconds, per_step);
        if (eager)
            printf(", \"check\": {\"tol_rel\": %g, \"max_rel_err\": %.3g, \"max_abs_err\": %.3g, "
                   "\"top1_agree\": %lld, \"compared\": %lld, \"first_fail_pos\": %lld}",
                   a.tol, worst_rel, worst_abs, (long long)agree, (long long)compared,
                   (long long)fail_pos);
        if (res.outcome != REFVM_DONE) {
            printf(", \"fault\": {\"outcome\": \"%s\", \"pos\": %lld, \"task\": %d, \"buffer\": %d,"
                   " \"element\": %lld, \"detail\": ", refvm_outcome_name(res.outcome),
                   (long long)fail_pos, res.task, res.buffer, (long long)res.element);
            cmd_put_json_string(stdout, res.detail ? res.detail : "");
            printf("}");
        }
        printf("}\n");
    } else {
        if (res.outcome != REFVM_DONE)
            fprintf(stderr, "amk run: %s at pos %lld\n%s\n", refvm_outcome_name(res.outcome),
                    (long long)fail_pos, res.detail ? res.detail : "");
        if (a.replay)
            printf("replay of %s (%d forced tasks) at pos %lld: %s\n", a.replay, n_sched,
                   (long long)replay_pos, res.outcome == REFVM_DONE
                   ? "the launch finished without a fault" : refvm_outcome_name(res.outcome));
        printf("tokens:");
        for (int64_t i = 0; i < n_gen; i++)
            printf(" %d", gen[i]);
        printf("\n");
        printf("launches: %lld (prompt %d, generated %lld), VM %.3f ms/step, %.2f tokens/s%s\n",
               (long long)ran, n_prompt, (long long)n_gen, 1e3 * per_step,
               per_step > 0 ? 1.0 / per_step : 0.0, a.unverified ? " (unverified)" : "");
        if (eager)
            printf("check: %s  max |vm - eager| = %.3g (%.3g of max |logit|, tolerance %g), "
                   "top-1 agreement %lld/%lld%s\n", verdict, worst_abs, worst_rel, a.tol,
                   (long long)agree, (long long)compared,
                   checked_fail ? "; first failing pos printed in --json" : "");
    }
    goto done;
fail:
    if (a.json)
        cmd_print_error_json(&err);
    else
        cmd_print_error("amk run", &err);
    exit_code = cmd_exit_for(s);
done:
    refvm_result_free(&res);
    refvm_eager_free(eager);
    refvm_free(vm);
    refvm_st_close(st);
    ir_program_free(p);
    free(prompt);
    free(gen);
    free(sched);
    return exit_code;
}
