/*
 * cmd_lower.c - `amk lower`: a Llama-family model plus a ScheduleConfig and a GPU target into a
 * program JSON with its launch plan (lower/lower.h does the work).
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lower/lower.h"
#include "tools/cmd.h"

static void usage(FILE *f)
{
    fprintf(f,
            "usage: amk lower --model MODEL --target NAME -o OUT [options]\n"
            "\n"
            "Lower one decode step of a Llama-family model into a megakernel program with an\n"
            "explicit launch plan (SPEC.md section 8).\n"
            "\n"
            "  --model MODEL       preset (");
    for (int i = 0; i < lower_preset_count(); i++)
        fprintf(f, "%s%s", i ? ", " : "", lower_preset_at(i));
    fprintf(f,
            ")\n"
            "                      or a path to a Hugging Face config.json\n"
            "  --config FILE       ScheduleConfig JSON (AMK field names); unknown keys and\n"
            "                      out-of-range values are refused. Default: load_balance,\n"
            "                      graph_color pages, 256 threads, depth 2, N_tile 256, no kv_block\n"
            "  --target NAME       built-in GPU target (");
    for (int i = 0; i < ir_target_count(); i++)
        fprintf(f, "%s%s", i ? ", " : "", ir_target_at(i)->name);
    fprintf(f,
            ")\n"
            "  --target-file FILE  GPU target JSON (AMK GpuTarget fields); overrides --target\n"
            "  -o OUT              output program JSON ('-' for stdout)\n"
            "  --pos P             decode position of this step (default 0)\n"
            "  --max-seq S         KV cache rows (default min(max_position_embeddings, 4096))\n"
            "  --dtype D           weight dtype: f32, f16 or bf16 (default bf16)\n"
            "  --argmax            append SAMPLE_ARGMAX writing the next token\n"
            "  --dialect D         ours (default) or amk: the form AMK's validate() and reference\n"
            "                      ops accept (pos and reshape_id0 inputs, head-shaped ROPE,\n"
            "                      KV_APPEND [src, cache], rank-3 KV caches, fusion groups\n"
            "                      lowered unfused; SPEC.md section 8.8)\n"
            "  --json              errors as a JSON object on stdout\n"
            "\n"
            "exit: 0 written, 2 refused model or config, malformed input or bad usage.\n");
}

static bool parse_int(const char *s, int64_t *out)
{
    char *end;
    errno = 0;
    long long v = strtoll(s, &end, 10);
    if (!*s || *end || errno)
        return false;
    *out = v;
    return true;
}

int cmd_lower(int argc, char **argv)
{
    const char *model = NULL, *config = NULL, *target = NULL, *target_file = NULL, *out = NULL;
    bool json = false;
    lower_opts opts;
    lower_opts_default(&opts);
    ir_error err = {0};
    ir_status s;

    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            usage(stdout);
            return AMK_EXIT_OK;
        }
        if (!strcmp(a, "--argmax")) {
            opts.sample_argmax = true;
            continue;
        }
        if (!strcmp(a, "--json")) {
            json = true;
            continue;
        }
        if (i + 1 >= argc) {
            fprintf(stderr, "amk lower: %s needs a value\n", a);
            usage(stderr);
            return AMK_EXIT_MALFORMED;
        }
        const char *v = argv[++i];
        if (!strcmp(a, "--model"))
            model = v;
        else if (!strcmp(a, "--config"))
            config = v;
        else if (!strcmp(a, "--target"))
            target = v;
        else if (!strcmp(a, "--target-file"))
            target_file = v;
        else if (!strcmp(a, "-o"))
            out = v;
        else if (!strcmp(a, "--pos") || !strcmp(a, "--max-seq")) {
            int64_t *dst = a[2] == 'p' ? &opts.pos : &opts.max_seq;
            if (!parse_int(v, dst)) {
                ir_fail(&err, IR_ERR_MALFORMED, a, "must be an integer, got '%s'", v);
                goto refused;
            }
            /* max_seq 0 means "default" in lower_opts, so an explicit 0 is refused here. */
            if (dst == &opts.max_seq && *dst < 1) {
                ir_fail(&err, IR_ERR_MALFORMED, a, "must be >= 1, got %s", v);
                goto refused;
            }
        } else if (!strcmp(a, "--dialect")) {
            if (!lower_dialect_parse(v, &opts.dialect)) {
                ir_fail(&err, IR_ERR_MALFORMED, "--dialect", "must be ours or amk, got '%s'", v);
                goto refused;
            }
        } else if (!strcmp(a, "--dtype")) {
            if (!strcmp(v, "f32"))
                opts.dtype = IR_F32;
            else if (!strcmp(v, "f16"))
                opts.dtype = IR_F16;
            else if (!strcmp(v, "bf16"))
                opts.dtype = IR_BF16;
            else {
                ir_fail(&err, IR_ERR_MALFORMED, "--dtype", "must be f32, f16 or bf16, got '%s'", v);
                goto refused;
            }
        } else {
            fprintf(stderr, "amk lower: unknown option '%s'\n", a);
            usage(stderr);
            return AMK_EXIT_MALFORMED;
        }
    }
    if (!model || !out || (!target && !target_file)) {
        fprintf(stderr, "amk lower: --model, --target (or --target-file) and -o are required\n");
        usage(stderr);
        return AMK_EXIT_MALFORMED;
    }
    lower_model m;
    if ((s = lower_model_load(model, &m, &err)) != IR_OK)
        goto refused;

    ir_target t;
    if (target_file) {
        if ((s = ir_target_read_file(target_file, &t, &err)) != IR_OK)
            goto refused;
        ir_target_fill_derived(&t);
    } else {
        const ir_target *bt = ir_target_builtin(target);
        if (!bt) {
            ir_fail(&err, IR_ERR_UNSUPPORTED, "--target", "unknown target '%s'", target);
            goto refused;
        }
        t = *bt;
    }

    ir_config c;
    if (config) {
        if ((s = lower_config_read_file(config, &c, &err)) != IR_OK)
            goto refused;
    } else {
        ir_config_default(&c);
    }

    ir_program *p;
    s = lower_program(&m, &c, &t, &opts, &p, &err);
    if (s == IR_OK && opts.dialect == LOWER_DIALECT_AMK && c.n_groups)
        fprintf(stderr, "amk lower: note: the amk dialect lowers config.fusion_grouping unfused "
                "(meta.unfused lists the groups)\n");
    ir_config_free(&c);
    if (s != IR_OK)
        goto refused;
    if (!strcmp(out, "-")) {
        char *text = NULL;
        size_t len = 0;
        s = ir_write_json(p, &text, &len, &err);
        if (s == IR_OK) {
            fwrite(text, 1, len, stdout);
            free(text);
        }
    } else {
        s = ir_write_file(p, out, &err);
        if (s == IR_OK)
            printf("amk lower: %s on %s (%s weights%s): %d tasks, %d buffers, %d counters, %d pages, "
                   "grid %lld x %lld threads -> %s\n",
                   m.name, t.name, ir_dtype_name(opts.dtype),
                   opts.dialect == LOWER_DIALECT_AMK ? ", amk dialect" : "", p->n_tasks, p->n_buffers,
                   p->n_counters, p->pages.n_pages, (long long)p->plan.grid,
                   (long long)p->plan.threads_per_block, out);
    }
    ir_program_free(p);
    if (s != IR_OK)
        goto refused;
    return AMK_EXIT_OK;

refused:
    if (json)
        cmd_print_error_json(&err);
    cmd_print_error("amk lower", &err);
    return AMK_EXIT_MALFORMED;
}
