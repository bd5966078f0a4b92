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

#define AMK_EXIT_TIMEOUT 4

static void usage(FILE *f)
{
    fprintf(f,
            "usage: amk launch PROGRAM --cert CERT --weights FILE --prompt T1,T2,... --steps N "
            "[options]\n"
            "\n"
            "Decode on the GPU: one cooperative launch of the plan's grid per token (prompt one\n"
            "token per launch at pos 0, 1, ..., then N greedy tokens), KV caches kept on the GPU.\n"
            "Only a plan whose PROVED certificate (amk-verify --cert) matches it is launched, and\n"
            "only when the device can hold all of its blocks at once.\n"
            "\n"
            "  --cert CERT        certificate written by amk-verify for PROGRAM (required)\n"
            "  --weights FILE     safetensors file; WEIGHT buffers bind by their source key\n"
            "  --prompt LIST      comma-separated token ids (default: the golden's prompt)\n"
            "  --steps N          tokens to generate (default 16)\n"
            "  --check            run the reference VM in lockstep; compare logits every launch\n"
            "  --golden FILE      compare logits and greedy tokens with a fixture's golden.json\n"
            "  --tol REL          tolerance relative to max |logit| (default %g)\n"
            "  --spin-budget N    polls per wait before the watchdog ends the launch (default %d)\n"
            "  --device D         CUDA device ordinal (default 0)\n"
            "  --unverified       TEST ONLY: launch without a certificate (shows the watchdog on a\n"
            "                     plan that deadlocks); residency is still checked\n"
            "  --json             one JSON object on stdout\n"
            "\n"
            "exit: 0 decoded (and PASS), 1 FAIL, plan refused or CUDA error, 2 bad usage,\n"
            "malformed input, no CUDA support or no GPU, 4 TIMEOUT.\n",
            REFVM_GATE_REL_TOL, MK_DEFAULT_SPIN_BUDGET);
}

typedef struct {
    const char *program, *cert, *weights, *prompt, *golden;
    int64_t steps, spin_budget;
    int device;
    bool check, unverified, json;
    double tol;
} launch_args;

static int parse_args(int argc, char **argv, launch_args *a)
{
    memset(a, 0, sizeof *a);
    a->steps = 16;
    a->tol = REFVM_GATE_REL_TOL;
    a->spin_budget = MK_DEFAULT_SPIN_BUDGET;
    for (int i = 1; i < argc; i++) {
        const char *k = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        char *end = NULL;
        if (!strcmp(k, "--help") || !strcmp(k, "-h")) {
            usage(stdout);
            return -1;
        } else if (!strcmp(k, "--check")) {
            a->check = true;
        } else if (!strcmp(k, "--unverified")) {
            a->unverified = true;
        } else if (!strcmp(k, "--json")) {
            a->json = true;
        } else if (!strcmp(k, "--cert") && v) {
            a->cert = argv[++i];
        } else if (!strcmp(k, "--weights") && v) {
            a->weights = argv[++i];
        } else if (!strcmp(k, "--prompt") && v) {
            a->prompt = argv[++i];
        } else if (!strcmp(k, "--golden") && v) {
            a->golden = argv[++i];
        } else if ((!strcmp(k, "--steps") || !strcmp(k, "--spin-budget") || !strcmp(k, "--device"))
                   && v) {
            long long n = strtoll(v, &end, 10);
            if (*end || !*v || n < (strcmp(k, "--device") ? 1 : 0) || n > (1LL << 40)) {
                fprintf(stderr, "amk launch: %s needs a non-negative integer, got '%s'\n", k, v);
                return AMK_EXIT_MALFORMED;
            }
            if (!strcmp(k, "--steps"))
                a->steps = n;
            else if (!strcmp(k, "--spin-budget"))
                a->spin_budget = n;
            else
                a->device = (int)n;
            i++;
        } else if (!strcmp(k, "--tol") && v) {
            a->tol = strtod(v, &end);
            if (*end || !*v || !(a->tol >= 0)) {
                fprintf(stderr, "amk launch: --tol must be a number >= 0\n");
                return AMK_EXIT_MALFORMED;
            }
            i++;
        } else if (k[0] != '-' && !a->program) {
            a->program = k;
        } else {
            fprintf(stderr, "amk launch: unknown or incomplete argument '%s'\n", k);
            usage(stderr);
            return AMK_EXIT_MALFORMED;
        }
    }
    if (!a->program || !a->weights || (!a->prompt && !a->golden)) {
        fprintf(stderr, "amk launch: PROGRAM, --weights and --prompt (or --golden) are required\n");
        usage(stderr);
        return AMK_EXIT_MALFORMED;
    }
    return 0;
}

/* Whole file as a NUL-terminated string; NULL (err filled) when unreadable. */
static char *read_text(const char *path, size_t *len, ir_error *err)
{
    char *s = NULL;
    return ir_read_text_file(path, IR_MAX_FILE_BYTES, &s, len, err) == IR_OK ? s : NULL;
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

/* A fixture's golden.json: prompt, greedy tokens, logits rows per fed position. */
typedef struct {
    int32_t *prompt, *tokens;
    int n_prompt, n_tokens, n_rows;
    int64_t width;
    float *logits;
} golden;

static void golden_free(golden *g)
{
    free(g->prompt);
    free(g->tokens);
    free(g->logits);
}

static ir_status golden_read(const char *path, golden *g, ir_error *err)
{
    memset(g, 0, sizeof *g);
    size_t len = 0;
    char *text = read_text(path, &len, err);
    if (!text)
        return err->status;
    cJSON *root = cJSON_ParseWithLength(text, len);
    free(text);
    const cJSON *pr = cJSON_GetObjectItemCaseSensitive(root, "prompt");
    const cJSON *tk = cJSON_GetObjectItemCaseSensitive(root, "tokens");
    const cJSON *lg = cJSON_GetObjectItemCaseSensitive(root, "logits");
    ir_status s = IR_OK;
    if (!cJSON_IsArray(pr) || !cJSON_IsArray(tk) || !cJSON_IsArray(lg) || !cJSON_GetArraySize(lg)) {
        s = ir_fail(err, IR_ERR_MALFORMED, path, "needs arrays prompt, tokens and logits");
        goto done;
    }
    g->n_prompt = cJSON_GetArraySize(pr);
    g->n_tokens = cJSON_GetArraySize(tk);
    g->n_rows = cJSON_GetArraySize(lg);
    g->width = cJSON_GetArraySize(cJSON_GetArrayItem(lg, 0));
    g->prompt = malloc(sizeof *g->prompt * (size_t)(g->n_prompt + 1));
    g->tokens = malloc(sizeof *g->tokens * (size_t)(g->n_tokens + 1));
    g->logits = malloc(sizeof *g->logits * (size_t)(g->n_rows * g->width + 1));
    if (!g->prompt || !g->tokens || !g->logits) {
        s = ir_fail(err, IR_ERR_NOMEM, path, "out of memory");
        goto done;
    }
    for (int i = 0; i < g->n_prompt + g->n_tokens; i++) {
        int64_t v;
        bool prompt = i < g->n_prompt;
        if (!cmd_json_int(cJSON_GetArrayItem(prompt ? pr : tk, prompt ? i : i - g->n_prompt), 0,
                          INT32_MAX, &v)) {
            s = ir_fail(err, IR_ERR_MALFORMED, path, "%s[%d] is not a token id in [0, 2^31)",
                        prompt ? "prompt" : "tokens", prompt ? i : i - g->n_prompt);
            goto done;
        }
        if (prompt)
            g->prompt[i] = (int32_t)v;
        else
            g->tokens[i - g->n_prompt] = (int32_t)v;
    }
    for (int r = 0; r < g->n_rows; r++) {
        const cJSON *row = cJSON_GetArrayItem(lg, r);
        if (cJSON_GetArraySize(row) != g->width) {
            s = ir_fail(err, IR_ERR_MALFORMED, path, "logits row %d has the wrong length", r);
            goto done;
        }
        int64_t i = 0;
        for (const cJSON *v = row->child; v; v = v->next) {
            if (!cJSON_IsNumber(v) || !(fabs(v->valuedouble) <= FLT_MAX)) {
                s = ir_fail(err, IR_ERR_MALFORMED, path, "logits[%d][%lld] is not a finite "
                            "float", r, (long long)i);
                goto done;
            }
            g->logits[r * g->width + i++] = (float)v->valuedouble;
        }
    }
done:
    cJSON_Delete(root);
    if (s != IR_OK)
        golden_free(g);
    return s;
}

static int32_t *parse_tokens(const char *s, int *n)
{
    int cap = 1;
    for (const char *c = s; *c; c++)
        cap += *c == ',';
    int32_t *t = malloc((size_t)cap * sizeof *t);
    if (!t)
        return NULL;
    *n = 0;
    for (const char *c = s; *c;) {
        char *end;
        long v = strtol(c, &end, 10);
        if (end == c || v < 0 || v > INT32_MAX || (*end && *end != ',')) {
            free(t);
            return NULL;
        }
        t[(*n)++] = (int32_t)v;
        c = *end ? end + 1 : end;
    }
    if (!*n) {
        free(t);
        return NULL;
    }
    return t;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* Largest relative error and agreement of one comparison, folded into running totals. */
typedef struct {
    double worst_rel, worst_abs;
    int64_t agree, compared, first_fail;
} cmp_totals;

static void fold(cmp_totals *c, const float *a, const float *b, int64_t n, double tol, int64_t pos)
{
    refvm_gate_cmp g = refvm_gate_compare(a, b, n, tol);
    double rel = g.max_abs_ref > 0 ? g.max_abs_err / g.max_abs_ref : g.max_abs_err;
    if (rel > c->worst_rel || rel != rel)
        c->worst_rel = rel;
    if (g.max_abs_err > c->worst_abs)
        c->worst_abs = g.max_abs_err;
    c->agree += g.top_a == g.top_b;
    c->compared++;
    if (!g.pass && c->first_fail < 0)
        c->first_fail = pos;
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

int cmd_launch(int argc, char **argv)
{
    launch_args a;
    int rc = parse_args(argc, argv, &a);
    if (rc)
        return rc < 0 ? AMK_EXIT_OK : rc;
    if (!mk_have_cuda()) {
        fprintf(stderr, "amk launch: this build has no CUDA support (nvcc was not found when amk "
                "was built); rebuild with nvcc on PATH to run the megakernel\n");
        if (a.json)
            printf("{\"status\": \"NO_CUDA\", \"why\": \"this build has no CUDA support\"}\n");
        return AMK_EXIT_MALFORMED;
    }

    ir_error err = {0};
    ir_program *p = NULL;
    char *cert = NULL;
    size_t cert_len = 0;
    mk_handle *h = NULL;
    refvm_st *st = NULL;
    refvm *vm = NULL;
    golden g;
    memset(&g, 0, sizeof g);
    int32_t *prompt = NULL, *gen = NULL;
    float *logits = NULL;
    double *ms = NULL;
    int n_prompt = 0;
    int exit_code = AMK_EXIT_OK;
    mk_status ms_status = MK_OK;
    mk_step_status sst;
    memset(&sst, 0, sizeof sst);
    const char *verdict = "DONE";
    cmp_totals vmc = {0, 0, 0, 0, -1}, gdc = {0, 0, 0, 0, -1};
    int64_t tok_equal = 0, tok_compared = 0, n_gen = 0, launches = 0, timeout_pos = -1;

    if (ir_read_file(a.program, NULL, &p, &err) != IR_OK)
        goto malformed;
    if (a.cert && !(cert = read_text(a.cert, &cert_len, &err)))
        goto malformed;
    if (a.golden && golden_read(a.golden, &g, &err) != IR_OK)
        goto malformed;
    prompt = a.prompt ? parse_tokens(a.prompt, &n_prompt) : NULL;
    if (!prompt && a.prompt) {
        ir_fail(&err, IR_ERR_MALFORMED, "--prompt", "must be comma-separated token ids");
        goto malformed;
    }
    if (!prompt) {
        n_prompt = g.n_prompt;
        prompt = malloc(sizeof *prompt * (size_t)(n_prompt + 1));
        if (!prompt || !n_prompt) {
            ir_fail(&err, IR_ERR_MALFORMED, a.golden, "no prompt");
            goto malformed;
        }
        memcpy(prompt, g.prompt, sizeof *prompt * (size_t)n_prompt);
    }
    bool tie = ties_embeddings(p);
    mk_options o;
    mk_options_default(&o);
    o.spin_budget = a.spin_budget;
    o.unverified = a.unverified;
    o.device = a.device;
    ms_status = mk_load(p, cert, cert_len, a.weights, tie, &o, &h, &err);
    if (ms_status != MK_OK) {
        if (a.json)
            printf("{\"status\": \"%s\", \"where\": ", mk_status_name(ms_status));
        else
            fprintf(stderr, "amk launch: %s at %s: %s\n", mk_status_name(ms_status), err.where,
                    err.why);
        if (a.json) {
            cmd_put_json_string(stdout, err.where);
            printf(", \"why\": ");
            cmd_put_json_string(stdout, err.why);
            printf("}\n");
        }
        exit_code = exit_for_mk(ms_status);
        goto done;
    }
    launches = n_prompt + a.steps - 1;
    if (launches > mk_max_seq(h)) {
        ir_fail(&err, IR_ERR_MALFORMED, "--steps", "prompt (%d) + steps (%lld) - 1 launches exceed "
                "max_seq %lld", n_prompt, (long long)a.steps, (long long)mk_max_seq(h));
        goto malformed;
    }
    if (a.check) {
        refvm_opts vo;
        refvm_opts_default(&vo);
        vo.tie_embeddings = tie;
        if (refvm_st_open(a.weights, &st, &err) != IR_OK || refvm_new(p, &vo, &vm, &err) != IR_OK ||
            refvm_bind(vm, st, &err) != IR_OK)
            goto malformed;
    }
    gen = calloc((size_t)a.steps + 1, sizeof *gen);
    logits = malloc(sizeof *logits * (size_t)(mk_vocab(h) + 1));
    ms = calloc((size_t)launches + 1, sizeof *ms);
    if (!gen || !logits || !ms) {
        ir_fail(&err, IR_ERR_NOMEM, "launch", "out of memory");
        goto malformed;
    }
    int32_t tok = prompt[0];
    int64_t done_launches = 0;
    for (int64_t pos = 0; pos < launches; pos++) {
        ms_status = mk_step(h, tok, pos, logits, &sst, &err);
        if (ms_status == MK_TIMEOUT) {
            verdict = "TIMEOUT";
            timeout_pos = pos;
            exit_code = AMK_EXIT_TIMEOUT;
            break;
        }
        if (ms_status != MK_OK) {
            verdict = mk_status_name(ms_status);
            exit_code = exit_for_mk(ms_status);
            fprintf(stderr, "amk launch: %s at %s: %s\n", verdict, err.where, err.why);
            break;
        }
        ms[done_launches++] = sst.ms;
        if (vm) {
            refvm_result r;
            if (refvm_step(vm, tok, pos, &r, &err) != IR_OK)
                goto malformed;
            bool ok = r.outcome == REFVM_DONE;
            refvm_result_free(&r);
            if (!ok) {
                ir_fail(&err, IR_ERR_MALFORMED, "refvm", "the reference VM did not finish at pos "
                        "%lld", (long long)pos);
                goto malformed;
            }
            int64_t n = 0;
            fold(&vmc, logits, refvm_logits(vm, &n), mk_vocab(h), a.tol, pos);
        }
        if (a.golden && pos < g.n_rows && g.width == mk_vocab(h))
            fold(&gdc, logits, g.logits + pos * g.width, g.width, a.tol, pos);
        if (pos + 1 >= n_prompt) {
            gen[n_gen] = sst.next_token;
            if (a.golden && n_gen < g.n_tokens) {
                tok_compared++;
                tok_equal += gen[n_gen] == g.tokens[n_gen];
            }
            tok = gen[n_gen++];
        } else {
            tok = prompt[pos + 1];
        }
    }
    bool fail = (vm && vmc.first_fail >= 0) || (a.golden && (gdc.first_fail >= 0 ||
                                                             tok_equal != tok_compared));
    if (!strcmp(verdict, "DONE") && (vm || a.golden)) {
        verdict = fail ? "FAIL" : "PASS";
        if (fail)
            exit_code = AMK_EXIT_REFUTED;
    }
    qsort(ms, (size_t)done_launches, sizeof *ms, cmp_double);
    double med = done_launches ? ms[done_launches / 2] : 0;
    if (a.json) {
        printf("{\"status\": \"%s\", \"verdict\": \"%s\", \"device\": ",
               mk_status_name(ms_status), verdict);
        cmd_put_json_string(stdout, mk_device_name(h));
        printf(", \"verified\": %s, \"tokens\": [", a.unverified ? "false" : "true");
        for (int64_t i = 0; i < n_gen; i++)
            printf("%s%d", i ? ", " : "", gen[i]);
        printf("], \"launches\": %lld, \"ms_per_launch_median\": %.4f, \"spin_budget\": %lld",
               (long long)done_launches, med, (long long)a.spin_budget);
        int slots;
        int64_t slot_bytes, streamed;
        mk_stream_info(h, &slots, &slot_bytes, &streamed);
        printf(", \"weight_stream\": {\"slots\": %d, \"slot_bytes\": %lld, \"tasks\": %lld}",
               slots, (long long)slot_bytes, (long long)streamed);
        printf(", \"argmax_tiles\": %lld", (long long)mk_argmax_tiles(h));
        if (vm)
            printf(", \"check\": {\"tol_rel\": %g, \"max_rel_err\": %.3g, \"top1_agree\": %lld, "
                   "\"compared\": %lld, \"first_fail_pos\": %lld}", a.tol, vmc.worst_rel,
                   (long long)vmc.agree, (long long)vmc.compared, (long long)vmc.first_fail);
        if (a.golden)
            printf(", \"golden\": {\"max_rel_err\": %.3g, \"positions\": %lld, "
                   "\"first_fail_pos\": %lld, \"tokens_equal\": %lld, \"tokens_compared\": %lld}",
                   gdc.worst_rel, (long long)gdc.compared, (long long)gdc.first_fail,
                   (long long)tok_equal, (long long)tok_compared);
        if (ms_status == MK_TIMEOUT) {
            printf(", \"timeout\": {\"pos\": %lld, \"block\": %d, \"task\": %d, \"counter\": %d, "
                   "\"threshold\": %lld, \"counter_value\": %lld, \"tasks_done\": %lld, \"detail\": ",
                   (long long)timeout_pos, sst.block, sst.task, sst.counter,
                   (long long)sst.threshold, (long long)sst.counter_value,
                   (long long)sst.tasks_done);
            cmd_put_json_string(stdout, err.why);
            printf("}");
        }
        printf("}\n");
    } else {
        printf("device: %s; plan %s%s\n", mk_device_name(h), a.program,
               a.unverified ? " (UNVERIFIED: test only)" : " (certificate checked)");
        int slots;
        int64_t slot_bytes, streamed;
        mk_stream_info(h, &slots, &slot_bytes, &streamed);
        if (slots)
            printf("weight stream: %lld tasks through %d SMEM slots of %lld B\n",
                   (long long)streamed, slots, (long long)slot_bytes);
        else
            printf("weight stream: off (pipelining_depth 0, or too little dynamic SMEM)\n");
        if (mk_argmax_tiles(h))
            printf("argmax: over %lld tile %s\n", (long long)mk_argmax_tiles(h),
                   mk_argmax_tiles(h) == 1 ? "maximum" : "maxima");
        if (ms_status == MK_TIMEOUT)
            fprintf(stderr, "amk launch: TIMEOUT at pos %lld: %s\n", (long long)timeout_pos,
                    err.why);
        printf("tokens:");
        for (int64_t i = 0; i < n_gen; i++)
            printf(" %d", gen[i]);
        printf("\nlaunches: %lld (prompt %d, generated %lld), GPU %.4f ms/launch (median)\n",
               (long long)done_launches, n_prompt, (long long)n_gen, med);
        if (vm)
            printf("check vs reference VM: %s  max rel err %.3g (tolerance %g), top-1 agreement "
                   "%lld/%lld\n", vmc.first_fail < 0 && vmc.compared == done_launches && done_launches > 0 ? "PASS"
                   : "FAIL", vmc.worst_rel, a.tol, (long long)vmc.agree, (long long)vmc.compared);
        if (a.golden)
            printf("check vs HF golden: %s  logits max rel err %.3g over %lld positions, greedy "
                   "tokens %lld/%lld equal\n", gdc.first_fail < 0 && tok_equal == tok_compared && gdc.compared > 0
                   ? "PASS" : "FAIL", gdc.worst_rel, (long long)gdc.compared,
                   (long long)tok_equal, (long long)tok_compared);
        printf("verdict: %s\n", verdict);
    }
    goto done;
malformed:
    if (a.json)
        cmd_print_error_json(&err);
    else
        cmd_print_error("amk launch", &err);
    exit_code = cmd_exit_for(err.status ? err.status : IR_ERR_MALFORMED);
done:
    mk_free(h);
    refvm_free(vm);
    refvm_st_close(st);
    golden_free(&g);
    ir_program_free(p);
    free(cert);
    free(prompt);
    free(gen);
    free(logits);
    free(ms);
    return exit_code;
}
