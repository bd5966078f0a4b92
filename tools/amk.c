/*
 * amk.c - the amk command-line front end: finds the subcommand and hands over to it.
 */
#include <stdio.h>
#include <string.h>

#include "tools/cmd.h"

typedef struct {
    const char *name;
    int (*run)(int argc, char **argv);
    const char *summary;
} amk_command;

static const amk_command COMMANDS[] = {
    {"ir", cmd_ir, "check or canonically rewrite a program JSON file"},
    {"lower", cmd_lower, "lower a Llama model + ScheduleConfig into a program with a launch plan"},
    {"verify", cmd_verify, "prove a program safe (deadlock, races, residency, bounds) or refute it"},
    {"cert", cmd_cert, "re-check a certificate against a program without Z3"},
    {"mutate", cmd_mutate, "write a single-defect mutant of a program (proof corpus)"},
    {"proofs", cmd_proofs, "run the proof regression corpus: verdicts and witness kinds vs expected"},
    /* one line per subcommand, kept in this order: ir, lower, verify, cert, mutate, weights,
       run, bench, audit, lint-kernel, launch, then the search: propose, eval, loop, serve */
    {"weights", cmd_weights, "write deterministic random weights, or list a safetensors file"},
    {"run", cmd_run, "decode on the CPU reference VM; --check gates it against the eager forward"},
    {"bench", cmd_bench, "time a certified program with its same-run correctness gate and roofline"},
    {"audit", cmd_audit, "audit a speedup claim: CONFIRMED, REFUTED or UNSUPPORTED with reasons"},
    {"lint-kernel", cmd_lint_kernel, "static checks for single-kernel artifact JSON files"},
    {"launch", cmd_launch, "decode on the GPU megakernel (a PROVED plan only; exit 4 on TIMEOUT)"},
    {"propose", cmd_propose, "print the incumbent ScheduleConfig, its schedule_id and the search space"},
    {"eval", cmd_eval, "one candidate config: lower, prove, gate, then measure or predict its latency"},
    {"loop", cmd_loop, "search configs: keep a proved, correct candidate only when >= 1% faster"},
    {"serve", cmd_serve, "answer propose/eval requests given as JSON lines on stdin"},
};

static void usage(FILE *out)
{
    fprintf(out, "usage: amk <command> [args]   (amk <command> --help for details)\n\ncommands:\n");
    for (size_t i = 0; i < sizeof COMMANDS / sizeof COMMANDS[0]; i++)
        fprintf(out, "  %-12s %s\n", COMMANDS[i].name, COMMANDS[i].summary);
    fprintf(out, "\nexit codes: 0 ok/PROVED, 1 REFUTED/FAIL, 2 MALFORMED or usage, 3 UNKNOWN, 4 TIMEOUT\n");
    fprintf(out, "amk %s, IR %s\n", AMK_TOOL_VERSION, AMK_IR_VERSION);
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        usage(stderr);
        return AMK_EXIT_MALFORMED;
    }
    if (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h") || !strcmp(argv[1], "help")) {
        usage(stdout);
        return AMK_EXIT_OK;
    }
    if (!strcmp(argv[1], "--version")) {
        printf("amk %s\n", AMK_TOOL_VERSION);
        return AMK_EXIT_OK;
    }
    for (size_t i = 0; i < sizeof COMMANDS / sizeof COMMANDS[0]; i++)
        if (!strcmp(argv[1], COMMANDS[i].name))
            return COMMANDS[i].run(argc - 1, argv + 1);
    fprintf(stderr, "amk: unknown command '%s'\n", argv[1]);
    usage(stderr);
    return AMK_EXIT_MALFORMED;
}
