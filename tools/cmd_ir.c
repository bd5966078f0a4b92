/*
 * cmd_ir.c - `amk ir check FILE [--json]` and `amk ir fmt FILE [-o OUT]`.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tools/cmd.h"

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
        s = cmd_write_program(p, out, &err);
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
    const char *out = NULL, *pos[2];
    bool json = false;
    const base_option opts[] = {
        BASE_FLAG("--json", &json, "check: the summary (or the error) as JSON"),
        BASE_STR("-o", &out, "OUT", "fmt: write OUT instead of stdout ('-': stdout)"),
    };
    const base_cmdline cl = {
        .prog = "amk ir",
        .synopsis = "usage: amk ir check FILE [--json]   parse FILE and print a summary\n"
                    "       amk ir fmt FILE [-o OUT]     canonical rewrite to stdout or OUT\n",
        .about = "check prints counts of buffers, counters, tasks and pages, the weight bytes,\n"
                 "whether a launch plan is present, and every warning (unknown keys are ignored\n"
                 "but listed).\n",
        .opts = opts, .n_opts = 2,
        .pos_name = "check|fmt FILE", .min_pos = 2, .max_pos = 2, .pos = pos,
        .epilog = "exit: 0 readable program, 2 malformed input or bad usage.\n",
    };
    int rc = cmd_parse_options(&cl, argc, argv);
    if (rc != CMD_CONTINUE)
        return rc;
    if (!strcmp(pos[0], "check"))
        return check(pos[1], json);
    if (!strcmp(pos[0], "fmt"))
        return fmt(pos[1], out);
    return cmd_usage_error(&cl, "unknown subcommand '%s'", pos[0]);
}
