/*
 * cmd_ir.c - `amk ir check FILE [--json]` and `amk ir fmt FILE [-o OUT]`.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tools/cmd.h"

static void usage(FILE *f)
{
    fprintf(f,
            "usage: amk ir check FILE [--json]   parse FILE and print a summary\n"
            "       amk ir fmt FILE [-o OUT]     canonical rewrite to stdout or OUT\n"
            "\n"
            "check prints counts of buffers, counters, tasks and pages, the weight bytes, whether\n"
            "a launch plan is present, and every warning (unknown keys are ignored but listed).\n"
            "exit: 0 readable program, 2 malformed input or bad usage.\n");
}

static int check(const char *path, bool json)
{
    ir_program *p;
    ir_error err = {0};
    ir_status s = ir_read_file(path, NULL, &p, &err);
    if (s != IR_OK) {
        if (json)
            cmd_print_error_json(&err);
        cmd_print_error("amk ir check", &err);
        return cmd_exit_for(s);
    }
    int64_t kinds[IR_KIND_COUNT] = {0};
    for (int i = 0; i < p->n_buffers; i++)
        kinds[p->buffers[i].kind]++;
    int64_t wb = ir_weight_bytes(p);
    if (json) {
        printf("{\"status\": \"OK\", \"file\": ");
        cmd_put_json_string(stdout, path);
        printf(", \"ir_version\": ");
        cmd_put_json_string(stdout, p->ir_version);
        printf(", \"buffers\": %d, \"counters\": %d, \"tasks\": %d, \"pages\": %d, "
               "\"weight_bytes\": %lld, \"buffer_kinds\": {",
               p->n_buffers, p->n_counters, p->n_tasks, p->has_pages ? p->pages.n_pages : 0,
               (long long)wb);
        for (int k = 0; k < IR_KIND_COUNT; k++)
            printf("%s\"%s\": %lld", k ? ", " : "", ir_kind_name((ir_kind)k), (long long)kinds[k]);
        printf("}, \"target\": ");
        if (p->has_target)
            cmd_put_json_string(stdout, p->target.name);
        else
            printf("null");
        printf(", \"launch_plan\": ");
        if (p->has_plan)
            printf("{\"grid\": %lld, \"threads_per_block\": %lld}", (long long)p->plan.grid,
                   (long long)p->plan.threads_per_block);
        else
            printf("null");
        printf(", \"warnings\": [");
        for (int i = 0; i < p->warnings.n; i++) {
            if (i)
                printf(", ");
            cmd_put_json_string(stdout, p->warnings.items[i]);
        }
        printf("]}\n");
    } else {
        printf("%s: ir %s, %d buffers, %d counters, %d tasks, %d pages\n", path, p->ir_version,
               p->n_buffers, p->n_counters, p->n_tasks, p->has_pages ? p->pages.n_pages : 0);
        printf("  buffers by kind:");
        for (int k = 0; k < IR_KIND_COUNT; k++)
            printf(" %s %lld", ir_kind_name((ir_kind)k), (long long)kinds[k]);
        printf("\n  weight bytes: %lld (%.3f GB)\n", (long long)wb, (double)wb / 1e9);
        printf("  target: %s\n", p->has_target ? p->target.name : "none");
        if (p->has_plan)
            printf("  launch plan: grid %lld x %lld threads, %lld B dynamic SMEM\n",
                   (long long)p->plan.grid, (long long)p->plan.threads_per_block,
                   (long long)p->plan.dynamic_smem_bytes);
        else
            printf("  launch plan: none\n");
        printf("  warnings: %d\n", p->warnings.n);
        for (int i = 0; i < p->warnings.n; i++)
            fprintf(stderr, "amk ir check: warning: %s\n", p->warnings.items[i]);
    }
    ir_program_free(p);
    return AMK_EXIT_OK;
}

static int fmt(const char *path, const char *out)
{
    ir_program *p;
    ir_error err = {0};
    ir_status s = ir_read_file(path, NULL, &p, &err);
    if (s == IR_OK) {
        if (out) {
            s = ir_write_file(p, out, &err);
        } else {
            char *text;
            size_t n;
            s = ir_write_json(p, &text, &n, &err);
            if (s == IR_OK) {
                fwrite(text, 1, n, stdout);
                free(text);
            }
        }
        for (int i = 0; i < p->warnings.n; i++)
            fprintf(stderr, "amk ir fmt: warning: %s\n", p->warnings.items[i]);
        ir_program_free(p);
    }
    if (s != IR_OK)
        cmd_print_error("amk ir fmt", &err);
    return cmd_exit_for(s);
}

int cmd_ir(int argc, char **argv)
{
    if (argc < 2 || !strcmp(argv[1], "--help") || !strcmp(argv[1], "-h")) {
        usage(argc < 2 ? stderr : stdout);
        return argc < 2 ? AMK_EXIT_MALFORMED : AMK_EXIT_OK;
    }
    const char *file = NULL, *out = NULL;
    bool json = false;
    for (int i = 2; i < argc; i++) {
        if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
            usage(stdout);
            return AMK_EXIT_OK;
        } else if (!strcmp(argv[i], "--json")) {
            json = true;
        } else if (!strcmp(argv[i], "-o") && i + 1 < argc) {
            out = argv[++i];
        } else if (argv[i][0] == '-' && argv[i][1]) {
            fprintf(stderr, "amk ir: unknown option '%s'\n", argv[i]);
            usage(stderr);
            return AMK_EXIT_MALFORMED;
        } else if (!file) {
            file = argv[i];
        } else {
            fprintf(stderr, "amk ir: more than one FILE given\n");
            return AMK_EXIT_MALFORMED;
        }
    }
    if (!file) {
        fprintf(stderr, "amk ir %s: FILE is required\n", argv[1]);
        usage(stderr);
        return AMK_EXIT_MALFORMED;
    }
    if (!strcmp(argv[1], "check"))
        return check(file, json);
    if (!strcmp(argv[1], "fmt"))
        return fmt(file, out);
    fprintf(stderr, "amk ir: unknown subcommand '%s'\n", argv[1]);
    usage(stderr);
    return AMK_EXIT_MALFORMED;
}
