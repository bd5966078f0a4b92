/*
 * cmd_lower.c - `amk lower`: a Llama-family model plus a ScheduleConfig and a GPU target into a
 * program JSON with its launch plan (lower/lower.h does the work).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lower/lower.h"
#include "tools/cmd.h"

typedef struct {
    const char *model, *config, *target, *target_file, *out;
    bool json, argmax;
    int dtype, dialect;
    int64_t pos, max_seq;
} lower_args;

static const char *const DTYPES[] = {"f32", "f16", "bf16", NULL};
static const ir_dtype DTYPE_OF[] = {IR_F32, IR_F16, IR_BF16};
static const char *const DIALECTS[] = {"ours", "amk", NULL};

/* "preset (a, b, c)\nor a path to a Hugging Face config.json" and the built-in target list. */
static void list_help(base_sb *model, base_sb *target)
{
    base_sb_str(model, "preset (");
    for (int i = 0; i < lower_preset_count(); i++)
        base_sb_fmt(model, "%s%s", i ? ", " : "", lower_preset_at(i));
    base_sb_str(model, ")\nor a path to a Hugging Face config.json");
    base_sb_str(target, "built-in GPU target (");
    for (int i = 0; i < ir_target_count(); i++)
        base_sb_fmt(target, "%s%s", i ? ", " : "", ir_target_at(i)->name);
    base_sb_str(target, ")");
}

/* A usage error, as JSON on stdout too when --json is among the arguments. */
static int usage_error(const base_cmdline *cl, int argc, char **argv, const char *why)
{
    for (int i = 1; i < argc; i++)
        if (!strcmp(argv[i], "--json")) {
            ir_error err = {0};
            ir_fail(&err, IR_ERR_MALFORMED, "", "%s", why);
            cmd_print_error_json(&err);
            break;
        }
    fprintf(stderr, "%s: %s\n", cl->prog, why);
    cmd_print_usage(cl, stderr);
    return AMK_EXIT_MALFORMED;
}

static int parse_args(int argc, char **argv, lower_args *a)
{
    memset(a, 0, sizeof *a);
    a->dtype = 2;
    base_sb model = {0}, target = {0};
    list_help(&model, &target);
    const base_option opts[] = {
        BASE_STR("--model", &a->model, "MODEL", model.s, .required = true),
        BASE_STR("--config", &a->config, "FILE", "ScheduleConfig JSON (AMK field names); unknown "
                 "keys and\nout-of-range values are refused. Default: load_balance,\ngraph_color "
                 "pages, 256 threads, depth 2, N_tile 256, no kv_block"),
        BASE_STR("--target", &a->target, "NAME", target.s),
        BASE_STR("--target-file", &a->target_file, "FILE", "GPU target JSON (AMK GpuTarget "
                 "fields); overrides --target"),
        BASE_STR("-o", &a->out, "OUT", "output program JSON ('-' for stdout)", .required = true),
        BASE_I64("--pos", &a->pos, "P", 0, 0, "decode position of this step", .show_default = true),
        /* max_seq 0 means "default" in lower_opts, so an explicit 0 is refused */
        BASE_I64("--max-seq", &a->max_seq, "S", 1, INT64_MAX, "KV cache rows (default "
                 "min(max_position_embeddings, 4096))"),
        BASE_CHOICE("--dtype", &a->dtype, "D", DTYPES, "weight dtype: f32, f16 or bf16",
                    .show_default = true),
        BASE_FLAG("--argmax", &a->argmax, "append SAMPLE_ARGMAX writing the next token"),
        BASE_CHOICE("--dialect", &a->dialect, "D", DIALECTS, "ours or amk: the form AMK's "
                    "validate() and reference\nops accept (pos and reshape_id0 inputs, "
                    "head-shaped ROPE,\nKV_APPEND [src, cache], rank-3 KV caches, fusion "
                    "groups\nlowered unfused; SPEC.md section 8.8)", .show_default = true),
        BASE_FLAG("--json", &a->json, "errors as a JSON object on stdout"),
    };
    const base_cmdline cl = {
        .prog = "amk lower",
        .synopsis = "usage: amk lower --model MODEL --target NAME -o OUT [options]\n",
        .about = "Lower one decode step of a Llama-family model into a megakernel program with "
                 "an\nexplicit launch plan (SPEC.md section 8).\n",
        .opts = opts, .n_opts = sizeof opts / sizeof opts[0],
        .epilog = "exit: 0 written, 2 refused model or config, malformed input or bad usage.\n",
    };
    char why[600];
    int rc = CMD_CONTINUE;
    switch (base_opts_parse(&cl, argc, argv, why, sizeof why)) {
    case BASE_OPTS_HELP:
        cmd_print_usage(&cl, stdout);
        rc = AMK_EXIT_OK;
        break;
    case BASE_OPTS_ERROR:
        rc = usage_error(&cl, argc, argv, why);
        break;
    default:
        if (!a->target && !a->target_file)
            rc = usage_error(&cl, argc, argv, "--target or --target-file is required");
    }
    base_sb_free(&model);
    base_sb_free(&target);
    return rc;
}

/* The target: --target-file (its derived fields filled), else the built-in --target. */
static ir_status load_target(const lower_args *a, ir_target *t, ir_error *err)
{
    if (a->target_file) {
        ir_status s = ir_target_read_file(a->target_file, t, err);
        if (s == IR_OK)
            ir_target_fill_derived(t);
        return s;
    }
    const ir_target *bt = ir_target_builtin(a->target);
    if (!bt)
        return ir_fail(err, IR_ERR_UNSUPPORTED, "--target", "unknown target '%s'", a->target);
    *t = *bt;
    return IR_OK;
}

static ir_status write_program(const lower_args *a, const lower_opts *opts, const lower_model *m,
                               const ir_target *t, const ir_program *p, ir_error *err)
{
    ir_status s = cmd_write_program(p, a->out, err);
    if (s == IR_OK && strcmp(a->out, "-"))
        printf("amk lower: %s on %s (%s weights%s): %d tasks, %d buffers, %d counters, %d pages, "
               "grid %lld x %lld threads -> %s\n",
               m->name, t->name, ir_dtype_name(opts->dtype),
               opts->dialect == LOWER_DIALECT_AMK ? ", amk dialect" : "", p->n_tasks, p->n_buffers,
               p->n_counters, p->pages.n_pages, (long long)p->plan.grid,
               (long long)p->plan.threads_per_block, a->out);
    return s;
}

int cmd_lower(int argc, char **argv)
{
    lower_args a;
    int rc = parse_args(argc, argv, &a);
    if (rc != CMD_CONTINUE)
        return rc;
    lower_opts opts;
    lower_opts_default(&opts);
    opts.sample_argmax = a.argmax;
    opts.dtype = DTYPE_OF[a.dtype];
    opts.pos = a.pos;
    if (a.max_seq)
        opts.max_seq = a.max_seq;
    ir_error err = {0};
    lower_model m;
    ir_target t;
    ir_config c;
    ir_program *p = NULL;
    ir_status s = lower_dialect_parse(DIALECTS[a.dialect], &opts.dialect) ? IR_OK
                : ir_fail(&err, IR_ERR_MALFORMED, "--dialect", "unknown dialect");
    if (s == IR_OK)
        s = lower_model_load(a.model, &m, &err);
    if (s == IR_OK)
        s = load_target(&a, &t, &err);
    if (s == IR_OK)
        s = a.config ? lower_config_read_file(a.config, &c, &err) : (ir_config_default(&c), IR_OK);
    if (s != IR_OK)
        goto refused;
    s = lower_program(&m, &c, &t, &opts, &p, &err);
    if (s == IR_OK && opts.dialect == LOWER_DIALECT_AMK && c.n_groups)
        fprintf(stderr, "amk lower: note: the amk dialect lowers config.fusion_grouping unfused "
                "(meta.unfused lists the groups)\n");
    ir_config_free(&c);
    if (s == IR_OK)
        s = write_program(&a, &opts, &m, &t, p, &err);
    ir_program_free(p);
    if (s == IR_OK)
        return AMK_EXIT_OK;
refused:
    if (a.json)
        cmd_print_error_json(&err);
    cmd_print_error("amk lower", &err);
    return AMK_EXIT_MALFORMED;
}
