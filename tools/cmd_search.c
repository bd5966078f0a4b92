/*
 * cmd_search.c - the schedule search (SPEC.md section 16): `amk propose` prints the incumbent
 * config, its schedule_id and the search space; `amk eval` gives one candidate's verdict;
 * `amk loop` runs the keep/revert loop and logs every trial as a TSV row; `amk serve` answers
 * propose and eval requests given as JSON lines.
 */
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <cjson/cJSON.h>

#include "bench/bench_run.h"
#include "search/search.h"
#include "tools/cmd.h"

/* ---------------------------------------------------------------- options */

typedef struct {
    const char *model, *gpu, *config, *incumbent, *weights, *device, *results, *out_dir;
    int64_t budget, gate_steps;
    uint64_t seed;
    bool json;
} search_args;

static const char *const DEVICES[] = {"auto", "cpu", "cuda", NULL};

/* The text around one command's option list. */
typedef struct {
    const char *prog, *synopsis, *about, *epilog;
} search_usage;

static const search_usage PROPOSE_USAGE = {
    "amk propose", "usage: amk propose MODEL --gpu TARGET [--incumbent CFG]\n",
    "Print one JSON object: the incumbent ScheduleConfig (CFG, or the lowering's default), its\n"
    "schedule_id (SHA-256 of the canonical config, its first hex digits) and the search space:\n"
    "every knob the lowering reads, its type, range or choices, default, the values the search\n"
    "tries and its meaning.\n",
    "exit: 0 printed, 2 unknown model or target, CFG refused, bad usage.\n"};

static const search_usage EVAL_USAGE = {
    "amk eval",
    "usage: amk eval MODEL --gpu TARGET --config CFG [--weights W] [--device D]\n"
    "                [--gate-steps N] [--out-dir DIR]\n",
    "Lower CFG, prove the program with Z3 (not PROVED: valid false, the obligation and\n"
    "witness kind named, nothing run), gate the reference VM against the eager forward\n"
    "over N positions, then time the megakernel on the GPU (measured-gpu, checked against\n"
    "the VM at every timed step) or predict the latency from the plan's bytes and the\n"
    "target's bandwidth (predicted; never a measurement). One JSON verdict.\n",
    "exit: 0 valid and correct, 1 not valid or not correct, 2 bad input or usage\n"
    "(also --device cuda without a GPU).\n"};

static const search_usage LOOP_USAGE = {
    "amk loop",
    "usage: amk loop MODEL --gpu TARGET --budget N [--seed S] [--results FILE.tsv]\n"
    "                [--json] [--weights W] [--device D] [--out-dir DIR]\n",
    "Trial 0 is the default config, then a share of random configs, then one-knob\n"
    "mutations of the running best. A candidate is kept when it is valid (PROVED) and\n"
    "correct and at least 1% faster; at equal latency a measured one outranks a\n"
    "predicted one, then the simpler (fewer knobs off default). On a GPU the keep\n"
    "decision is the paired A/B audited as `amk audit --rerun` does. Every trial is a\n"
    "TSV row (to FILE, else to stdout without --json); progress goes to stderr.\n",
    "exit: 0 a valid and correct best was found, 1 none, 2 bad input or usage.\n"};

/* Parse argv for command cmd ('p' propose, 'e' eval, 'l' loop) with the base option table,
 * keeping the options that command takes. CMD_CONTINUE, or the exit code of --help or a usage
 * error (already printed). */
static int parse_args(int argc, char **argv, char cmd, const search_usage *u, search_args *a)
{
    memset(a, 0, sizeof *a);
    a->budget = 20;
    a->seed = 1;
    a->gate_steps = SEARCH_GATE_STEPS;
    int device = 0;
    struct {
        base_option o;
        const char *cmds;
    } all[] = {
        {BASE_STR("--gpu", &a->gpu, "TARGET", "the GPU target (h100, h200, a100, ...)",
                  .required = true), "pel"},
        {BASE_STR("--incumbent", &a->incumbent, "CFG", "the incumbent ScheduleConfig (default: "
                  "the lowering's default)"), "p"},
        {BASE_STR("--config", &a->config, "CFG", "the ScheduleConfig to evaluate",
                  .required = true), "e"},
        {BASE_I64("--budget", &a->budget, "N", 1, 1000000000, "trials, trial 0 included",
                  .show_default = true), "l"},
        {BASE_U64("--seed", &a->seed, "S", "the generator's seed (decimal or 0x hex); a CPU "
                  "loop is reproducible", .show_default = true), "l"},
        {BASE_STR("--results", &a->results, "FILE.tsv", "write the TSV rows there"), "l"},
        {BASE_FLAG("--json", &a->json, "print the result object (best config and verdict, "
                   "rows, counts)"), "l"},
        {BASE_STR("--weights", &a->weights, "W", "safetensors weights (default: random, seed "
                  "0, bf16)"), "el"},
        {BASE_CHOICE("--device", &device, "D", DEVICES, "auto (default: the GPU when there is "
                     "one), cpu or cuda"), "el"},
        {BASE_I64("--gate-steps", &a->gate_steps, "N", 0, 1000000000, "positions the VM is "
                  "gated over against the eager forward", .show_default = true), "el"},
        {BASE_STR("--out-dir", &a->out_dir, "DIR", "write ID.program.json and ID.cert.json of a "
                  "PROVED candidate"), "el"},
    };
    base_option opts[sizeof all / sizeof all[0]];
    int n = 0;
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++)
        if (strchr(all[i].cmds, cmd))
            opts[n++] = all[i].o;
    const char *pos[1] = {NULL};
    int n_pos = 0;
    const base_cmdline cl = {
        .prog = u->prog, .synopsis = u->synopsis, .about = u->about, .opts = opts, .n_opts = n,
        .pos_name = "MODEL", .min_pos = 1, .max_pos = 1, .pos = pos, .n_pos = &n_pos,
        .epilog = u->epilog,
    };
    int rc = cmd_parse_options(&cl, argc, argv);
    a->model = pos[0];
    a->device = DEVICES[device];
    return rc;
}

/* ---------------------------------------------------------------- JSON */

static cJSON *config_json(const ir_config *c)
{
    char *text = NULL;
    ir_error e = {0};
    if (search_config_canonical(c, &text, &e) != IR_OK)
        return cJSON_CreateNull();
    cJSON *o = cJSON_Parse(text);
    free(text);
    return o ? o : cJSON_CreateNull();
}

static cJSON *knob_json(const lower_knob *k, int64_t num_sms)
{
    static const char *const TYPE[] = {"int", "enum", "set"};
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "name", k->name);
    cJSON_AddStringToObject(o, "type", TYPE[k->type]);
    if (k->type == LOWER_KNOB_INT) {
        cJSON *r = cJSON_AddArrayToObject(o, "range");
        cJSON_AddItemToArray(r, cJSON_CreateNumber((double)k->lo));
        cJSON_AddItemToArray(r, cJSON_CreateNumber((double)k->hi));
        cJSON_AddNumberToObject(o, "multiple_of", (double)k->multiple_of);
        cJSON_AddBoolToObject(o, "optional", k->optional);
        if (k->dflt >= k->lo)
            cJSON_AddNumberToObject(o, "default", (double)k->dflt);
        else
            cJSON_AddNullToObject(o, "default");   /* absent: off */
        cJSON *s = cJSON_AddArrayToObject(o, "search_values");
        int64_t v[32];
        int n = search_knob_values(k, num_sms, v, 32);
        for (int i = 0; i < n; i++)
            cJSON_AddItemToArray(s, v[i] ? cJSON_CreateNumber((double)v[i]) : cJSON_CreateNull());
    } else if (k->type == LOWER_KNOB_ENUM) {
        cJSON *c = cJSON_AddArrayToObject(o, "choices");
        for (int i = 0; k->choices[i]; i++)
            cJSON_AddItemToArray(c, cJSON_CreateString(k->choices[i]));
        cJSON_AddStringToObject(o, "default", k->choices[0]);
    } else {
        cJSON *c = cJSON_AddArrayToObject(o, "choices");
        for (int g = 0; g < lower_fusion_count(); g++) {
            const char *names[4];
            int n = lower_fusion_group(g, names);
            cJSON_AddItemToArray(c, cJSON_CreateStringArray(names, n));
        }
        cJSON_AddArrayToObject(o, "default");
    }
    cJSON_AddStringToObject(o, "meaning", k->meaning);
    return o;
}

static cJSON *propose_json(const char *model, const char *gpu, int64_t num_sms,
                           const ir_config *c)
{
    char id[SEARCH_ID_LEN + 1] = "";
    ir_error e = {0};
    search_schedule_id(c, id, &e);
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "model", model);
    cJSON_AddStringToObject(o, "gpu", gpu);
    cJSON_AddItemToObject(o, "incumbent", config_json(c));
    cJSON_AddStringToObject(o, "schedule_id", id);
    cJSON_AddNumberToObject(o, "simplicity", search_simplicity(c));
    cJSON *space = cJSON_AddArrayToObject(o, "space");
    for (int i = 0; i < lower_knob_count(); i++)
        cJSON_AddItemToArray(space, knob_json(lower_knob_at(i), num_sms));
    return o;
}

static void add_num_or_null(cJSON *o, const char *key, bool has, double v)
{
    if (has)
        cJSON_AddNumberToObject(o, key, v);
    else
        cJSON_AddNullToObject(o, key);
}

static void add_str_or_null(cJSON *o, const char *key, const char *s)
{
    if (s && *s)
        cJSON_AddStringToObject(o, key, s);
    else
        cJSON_AddNullToObject(o, key);
}

static cJSON *verdict_json(const search_verdict *v)
{
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "schedule_id", v->schedule_id);
    cJSON_AddBoolToObject(o, "valid", v->valid);
    add_str_or_null(o, "rejected_obligation", v->rejected_obligation);
    add_str_or_null(o, "witness_kind", v->witness_kind);
    add_str_or_null(o, "rejected_reason", v->rejected_reason);
    if (v->checked)
        cJSON_AddBoolToObject(o, "correct", v->correct);
    else
        cJSON_AddNullToObject(o, "correct");   /* no correctness claim without a proof */
    add_num_or_null(o, "max_abs_err", v->checked, v->max_abs_err);
    add_num_or_null(o, "top1_agreement", v->checked, v->top1_agreement);
    cJSON_AddNumberToObject(o, "gate_steps", (double)v->gate_steps);
    if (v->gpu_checked)
        cJSON_AddBoolToObject(o, "gpu_correct", v->gpu_correct);
    else
        cJSON_AddNullToObject(o, "gpu_correct");
    add_str_or_null(o, "why_incorrect", v->why_incorrect);
    add_num_or_null(o, "latency_us", v->has_latency, v->latency_us);
    add_str_or_null(o, "latency_kind",
                    v->has_latency ? search_latency_kind_name(v->latency_kind) : NULL);
    add_num_or_null(o, "pct_of_roofline", v->has_latency, v->pct_of_roofline);
    add_num_or_null(o, "bound_us", v->tasks > 0, v->bound_us);
    cJSON_AddNumberToObject(o, "tasks", (double)v->tasks);
    cJSON_AddNumberToObject(o, "weight_mb", v->weight_mb);
    cJSON_AddNumberToObject(o, "simplicity", v->simplicity);
    cJSON *pr = cJSON_AddObjectToObject(o, "proof");
    for (int i = 0; v->tasks > 0 && i < VERIFY_N_OBLIGATIONS; i++) {
        cJSON *ob = cJSON_AddObjectToObject(pr, verify_obligation_name((verify_obligation)i));
        cJSON_AddStringToObject(ob, "status", verify_verdict_name(v->proof[i]));
        cJSON_AddNumberToObject(ob, "seconds", v->proof_s[i]);
    }
    add_str_or_null(o, "certificate", v->certificate);
    return o;
}

static void print_json_line(cJSON *o, bool pretty)
{
    char *s = pretty ? cJSON_Print(o) : cJSON_PrintUnformatted(o);
    if (s)
        printf("%s\n", s);
    cJSON_free(s);
    cJSON_Delete(o);
    fflush(stdout);
}

/* ---------------------------------------------------------------- shared steps */

/* Model and target by name. */
static ir_status load_model_target(const char *model, const char *gpu, lower_model *m,
                                   const ir_target **t, ir_error *err)
{
    ir_status s = lower_model_load(model, m, err);
    if (s == IR_OK && !(*t = ir_target_builtin(gpu)))
        s = ir_fail(err, IR_ERR_MALFORMED, "--gpu", "unknown target '%s'", gpu);
    return s;
}

/* The search context: weights from --weights, or random ones (seed 0, bf16) written to a
 * temporary file named in tmp (removed by the caller); device auto|cpu|cuda. */
static ir_status open_ctx(const lower_model *m, const ir_target *t, const char *weights,
                          const char *device, long long gate_steps, const char *out_dir,
                          char tmp[64], search_ctx **ctx, ir_error *err)
{
    search_opts o;
    search_opts_default(&o);
    o.model = m;
    o.target = t;
    o.gate_steps = gate_steps;
    o.cert_dir = out_dir;
    tmp[0] = 0;
    if (strcmp(device, "auto") && strcmp(device, "cpu") && strcmp(device, "cuda"))
        return ir_fail(err, IR_ERR_MALFORMED, "--device", "must be auto, cpu or cuda");
    char name[256], why[256];
    o.gpu = strcmp(device, "cpu") && bench_gpu_available(name, sizeof name, why, sizeof why);
    if (!strcmp(device, "cuda") && !o.gpu)
        return ir_fail(err, IR_ERR_UNSUPPORTED, "--device", "cuda: %s", why);
    if (!weights) {
        const char *dir = getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp";
        snprintf(tmp, 64, "%.40s/amk-search-XXXXXX", dir);
        int fd = mkstemp(tmp);
        if (fd < 0) {
            tmp[0] = 0;
            return ir_fail(err, IR_ERR_IO, "weights", "cannot create a temporary file");
        }
        close(fd);
        ir_status s = refvm_weights_random(m, 0, IR_BF16, tmp, err);
        if (s != IR_OK)
            return s;
        weights = tmp;
    }
    o.weights = weights;
    return search_ctx_new(&o, ctx, err);
}

static int fail(const char *prog, bool json, const ir_error *err)
{
    if (json)
        cmd_print_error_json(err);
    else
        cmd_print_error(prog, err);
    return cmd_exit_for(err->status ? err->status : IR_ERR_MALFORMED);
}

/* Parse the arguments of cmd: true to go on, else *code is the exit code (--help printed, or a
 * usage error reported). */
static bool begin(int argc, char **argv, char cmd, const search_usage *u, search_args *a,
                  int *code)
{
    *code = parse_args(argc, argv, cmd, u, a);
    return *code == CMD_CONTINUE;
}

/* Model, target and the config file cfg (NULL: the default) read and checked. */
static ir_status load_inputs(const search_args *a, const char *cfg, lower_model *m,
                             const ir_target **t, ir_config *c, ir_error *err)
{
    ir_config_default(c);
    ir_status s = load_model_target(a->model, a->gpu, m, t, err);
    if (s == IR_OK && cfg && (s = lower_config_read_file(cfg, c, err)) != IR_OK &&
        strncmp(err->where, cfg, strlen(cfg)))   /* name the file once */
        cmd_error_in_file(err, cfg);
    return s;
}

/* ---------------------------------------------------------------- propose */

int cmd_propose(int argc, char **argv)
{
    search_args a;
    int code;
    if (!begin(argc, argv, 'p', &PROPOSE_USAGE, &a, &code))
        return code;
    ir_error err = {0};
    lower_model m;
    const ir_target *t;
    ir_config c;
    if (load_inputs(&a, a.incumbent, &m, &t, &c, &err) != IR_OK)
        return fail("amk propose", false, &err);
    print_json_line(propose_json(a.model, a.gpu, t->num_sms, &c), true);
    ir_config_free(&c);
    return AMK_EXIT_OK;
}

/* ---------------------------------------------------------------- eval */

int cmd_eval(int argc, char **argv)
{
    search_args a;
    int code;
    if (!begin(argc, argv, 'e', &EVAL_USAGE, &a, &code))
        return code;
    ir_error err = {0};
    lower_model m;
    const ir_target *t;
    ir_config c;
    search_ctx *ctx = NULL;
    search_verdict v;
    char tmp[64] = "";
    ir_status s = load_inputs(&a, a.config, &m, &t, &c, &err);
    if (s == IR_OK)
        s = open_ctx(&m, t, a.weights, a.device, a.gate_steps, a.out_dir, tmp, &ctx, &err);
    if (s == IR_OK)
        s = search_eval(ctx, &c, &v, NULL, &err);
    search_ctx_free(ctx);
    ir_config_free(&c);
    verify_release_memory();
    if (tmp[0])
        remove(tmp);
    if (s != IR_OK)
        return fail("amk eval", true, &err);
    print_json_line(verdict_json(&v), true);
    return search_verdict_ok(&v) ? AMK_EXIT_OK : AMK_EXIT_REFUTED;
}

/* ---------------------------------------------------------------- loop */

/* A TSV field: tabs and newlines become spaces. */
static void put_field(FILE *f, const char *s)
{
    for (; *s; s++)
        fputc(*s == '\t' || *s == '\n' || *s == '\r' ? ' ' : *s, f);
}

static void tsv_header(FILE *f)
{
    fprintf(f, "trial\tschedule_id\tconfig\tvalid\tcorrect\tlatency_us\tlatency_kind\tkept\t"
               "reason\n");
}

static void tsv_row(FILE *f, const search_row *r)
{
    const search_verdict *v = &r->verdict;
    fprintf(f, "%d\t%s\t", r->trial, v->schedule_id);
    put_field(f, r->summary);
    fprintf(f, "\t%s\t%s\t", v->valid ? "true" : "false",
            !v->checked ? "-" : v->correct ? "true" : "false");
    if (v->has_latency)
        fprintf(f, "%.6g\t%s", v->latency_us, search_latency_kind_name(v->latency_kind));
    else
        fprintf(f, "-\t-");
    fprintf(f, "\t%s\t", r->kept ? "true" : "false");
    put_field(f, r->reason);
    fputc('\n', f);
    fflush(f);
}

typedef struct {
    FILE *tsv;
} loop_out;

static void on_row(void *arg, const search_row *r)
{
    loop_out *o = arg;
    if (o->tsv) {
        tsv_row(o->tsv, r);
        fflush(o->tsv);   /* a row is on disk as soon as its trial ends */
    }
}

static void on_progress(void *arg, const char *line)
{
    fprintf(stderr, "amk loop: %s\n", line);
}

static cJSON *row_json(const search_row *r)
{
    cJSON *o = cJSON_CreateObject();
    cJSON_AddNumberToObject(o, "trial", r->trial);
    cJSON_AddStringToObject(o, "origin", r->origin);
    cJSON_AddStringToObject(o, "schedule_id", r->verdict.schedule_id);
    cJSON_AddStringToObject(o, "config_summary", r->summary);
    cJSON *c = cJSON_Parse(r->config_json);
    cJSON_AddItemToObject(o, "config", c ? c : cJSON_CreateNull());
    cJSON_AddItemToObject(o, "verdict", verdict_json(&r->verdict));
    cJSON_AddBoolToObject(o, "kept", r->kept);
    cJSON_AddStringToObject(o, "reason", r->reason);
    return o;
}

static cJSON *result_json(const search_args *a, const search_result *r, double seconds)
{
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "model", a->model);
    cJSON_AddStringToObject(o, "gpu", a->gpu);
    cJSON_AddNumberToObject(o, "budget", (double)a->budget);
    cJSON_AddNumberToObject(o, "seed", (double)a->seed);
    cJSON_AddNumberToObject(o, "seconds", seconds);
    if (r->best >= 0)
        cJSON_AddItemToObject(o, "best", row_json(&r->rows[r->best]));
    else
        cJSON_AddNullToObject(o, "best");
    cJSON *rows = cJSON_AddArrayToObject(o, "rows");
    for (int i = 0; i < r->n_rows; i++)
        cJSON_AddItemToArray(rows, row_json(&r->rows[i]));
    cJSON *n = cJSON_AddObjectToObject(o, "counts");
    cJSON_AddNumberToObject(n, "trials", r->n_rows);
    cJSON_AddNumberToObject(n, "valid", r->n_valid);
    cJSON_AddNumberToObject(n, "rejected", r->n_rejected);
    cJSON_AddNumberToObject(n, "correct", r->n_correct);
    cJSON_AddNumberToObject(n, "kept", r->n_kept);
    return o;
}

int cmd_loop(int argc, char **argv)
{
    search_args a;
    int code;
    if (!begin(argc, argv, 'l', &LOOP_USAGE, &a, &code))
        return code;
    ir_error err = {0};
    lower_model m;
    const ir_target *t;
    search_ctx *ctx = NULL;
    search_result r = {0};
    char tmp[64] = "";
    loop_out out = {NULL};
    double t0 = base_now_s();
    ir_status s = load_model_target(a.model, a.gpu, &m, &t, &err);
    if (s == IR_OK && a.results && !(out.tsv = fopen(a.results, "w")))
        s = ir_fail(&err, IR_ERR_IO, a.results, "cannot open for writing");
    if (s == IR_OK && !a.results && !a.json)
        out.tsv = stdout;
    if (s == IR_OK)
        s = open_ctx(&m, t, a.weights, a.device, a.gate_steps, a.out_dir, tmp, &ctx, &err);
    if (s == IR_OK) {
        if (out.tsv)
            tsv_header(out.tsv);
        search_loop_opts o;
        search_loop_opts_default(&o);
        o.budget = (int)a.budget;
        o.seed = a.seed;
        search_callbacks cb = {on_row, on_progress, &out};
        s = search_loop(ctx, &o, &cb, &r, &err);
    }
    if (out.tsv && out.tsv != stdout)
        fclose(out.tsv);
    search_ctx_free(ctx);
    verify_release_memory();
    if (tmp[0])
        remove(tmp);
    if (s != IR_OK) {
        search_result_free(&r);
        return fail("amk loop", a.json, &err);
    }
    double secs = base_now_s() - t0;
    if (r.best >= 0)
        fprintf(stderr, "amk loop: best %s (trial %d, %s): %.6g us %s; %d trials, %d kept, "
                "%d rejected by the proof or the lowering, %.1f s\n",
                r.rows[r.best].verdict.schedule_id, r.rows[r.best].trial, r.rows[r.best].summary,
                r.rows[r.best].verdict.latency_us,
                search_latency_kind_name(r.rows[r.best].verdict.latency_kind), r.n_rows,
                r.n_kept, r.n_rejected, secs);
    if (a.json)
        print_json_line(result_json(&a, &r, secs), true);
    code = r.best >= 0 ? AMK_EXIT_OK : AMK_EXIT_REFUTED;
    search_result_free(&r);
    return code;
}

/* ---------------------------------------------------------------- serve */


#define SERVE_ABOUT \
    "Read one JSON request per line on stdin and answer each with one JSON line on\n"\
    "stdout:\n"\
    "  {\"cmd\": \"propose\", \"model\": M, \"gpu\": T, \"incumbent\": CONFIG?}\n"\
    "  {\"cmd\": \"eval\", \"model\": M, \"gpu\": T, \"config\": CONFIG, \"weights\": W?,\n"\
    "   \"device\": \"auto\"|\"cpu\"|\"cuda\"?, \"gate_steps\": N?}\n"\
    "CONFIG is a ScheduleConfig object, read as `--config` files are. The answers are\n"\
    "propose's object, eval's verdict, or {\"error\": {...}}. The weights and eager\n"\
    "reference of the last eval are reused while model, gpu, weights and device stay.\n"

/* The context of the last eval request, kept while its key stays the same. */
typedef struct {
    char key[1200];
    lower_model m;
    const ir_target *t;
    search_ctx *ctx;
    char tmp[64];
} serve_cache;

static void serve_cache_drop(serve_cache *c)
{
    search_ctx_free(c->ctx);
    if (c->tmp[0])
        remove(c->tmp);
    memset(c, 0, sizeof *c);
}

static const char *str_item(const cJSON *req, const char *key)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(req, key);
    return cJSON_IsString(v) ? v->valuestring : NULL;
}

/* The config object of key (absent: the default), read strictly and checked. */
static ir_status request_config(const cJSON *req, const char *key, bool required, ir_config *c,
                                ir_error *err)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(req, key);
    ir_config_default(c);
    if (!v && !required)
        return IR_OK;
    if (!cJSON_IsObject(v))
        return ir_fail(err, IR_ERR_MALFORMED, key, "must be a ScheduleConfig object");
    char *text = cJSON_PrintUnformatted(v);
    if (!text)
        return ir_fail(err, IR_ERR_NOMEM, key, "out of memory");
    ir_status s = ir_config_read_json(text, strlen(text), true, c, err);
    cJSON_free(text);
    if (s == IR_OK && (s = lower_config_check(c, err)) != IR_OK)
        ir_config_free(c);
    return s;
}

static cJSON *serve_eval(const cJSON *req, const char *model, const char *gpu, serve_cache *cache,
                         ir_error *err)
{
    const char *w = str_item(req, "weights"), *dev = str_item(req, "device");
    const cJSON *gs = cJSON_GetObjectItemCaseSensitive(req, "gate_steps");
    int64_t steps = SEARCH_GATE_STEPS;
    if (gs && !ir_json_int(gs, 1, 1 << 20, &steps)) {
        ir_fail(err, IR_ERR_MALFORMED, "gate_steps", "must be an integer in [1, 2^20]");
        return NULL;
    }
    char key[1200];
    snprintf(key, sizeof key, "%s|%s|%s|%s|%lld", model, gpu, w ? w : "", dev ? dev : "auto",
             (long long)steps);
    if (!cache->ctx || strcmp(key, cache->key)) {
        serve_cache_drop(cache);
        ir_status s = load_model_target(model, gpu, &cache->m, &cache->t, err);
        if (s == IR_OK)
            s = open_ctx(&cache->m, cache->t, w, dev ? dev : "auto", steps, NULL, cache->tmp,
                         &cache->ctx, err);
        if (s != IR_OK) {
            serve_cache_drop(cache);
            return NULL;
        }
        snprintf(cache->key, sizeof cache->key, "%s", key);
    }
    ir_config c;
    search_verdict v;
    if (request_config(req, "config", true, &c, err) != IR_OK)
        return NULL;
    ir_status s = search_eval(cache->ctx, &c, &v, NULL, err);
    ir_config_free(&c);
    return s == IR_OK ? verdict_json(&v) : NULL;
}

/* One request line: its answer, or NULL with err set. */
static cJSON *serve_one(const char *line, serve_cache *cache, ir_error *err)
{
    cJSON *req = cJSON_Parse(line);
    cJSON *ans = NULL;
    const char *cmd = str_item(req, "cmd"), *model = str_item(req, "model"),
               *gpu = str_item(req, "gpu");
    if (!cJSON_IsObject(req))
        ir_fail(err, IR_ERR_MALFORMED, "request", "not a JSON object");
    else if (!cmd || !model || !gpu)
        ir_fail(err, IR_ERR_MALFORMED, "request", "\"cmd\", \"model\" and \"gpu\" are required "
                "strings");
    else if (!strcmp(cmd, "eval"))
        ans = serve_eval(req, model, gpu, cache, err);
    else if (strcmp(cmd, "propose"))
        ir_fail(err, IR_ERR_MALFORMED, "cmd", "unknown command '%s' (eval or propose)", cmd);
    else {
        lower_model m;
        const ir_target *t;
        ir_config c;
        if (load_model_target(model, gpu, &m, &t, err) == IR_OK &&
            request_config(req, "incumbent", false, &c, err) == IR_OK) {
            ans = propose_json(model, gpu, t->num_sms, &c);
            ir_config_free(&c);
        }
    }
    cJSON_Delete(req);
    return ans;
}

int cmd_serve(int argc, char **argv)
{
    const base_cmdline cl = {
        .prog = "amk serve", .synopsis = "usage: amk serve\n",
        .about = SERVE_ABOUT, .epilog = "exit: 0 at the end of the input.\n",
    };
    int rc = cmd_parse_options(&cl, argc, argv);
    if (rc != CMD_CONTINUE)
        return rc;
    serve_cache cache;
    memset(&cache, 0, sizeof cache);
    char *line = NULL;
    size_t cap = 0;
    while (getline(&line, &cap, stdin) > 0) {
        if (strspn(line, " \t\r\n") == strlen(line))
            continue;
        ir_error err = {0};
        cJSON *ans = serve_one(line, &cache, &err);
        if (!ans) {
            ans = cJSON_CreateObject();
            cJSON *e = cJSON_AddObjectToObject(ans, "error");
            cJSON_AddStringToObject(e, "status", ir_status_name(err.status));
            cJSON_AddStringToObject(e, "where", err.where);
            cJSON_AddStringToObject(e, "why", err.why);
        }
        print_json_line(ans, false);
    }
    free(line);
    serve_cache_drop(&cache);
    verify_release_memory();
    return AMK_EXIT_OK;
}
