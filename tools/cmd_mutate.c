/*
 * cmd_mutate.c - `amk mutate PROGRAM --kind K --seed S [-o OUT]`: a reproducible single-defect
 * mutant of a program, for the proof regression corpus.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "proofs/proofs.h"
#include "tools/cmd.h"

static void usage(FILE *f)
{
    fprintf(f, "usage: amk mutate PROGRAM.json --kind KIND [--seed S] [-o OUT.json]\n"
               "Writes a copy of PROGRAM with exactly one defect (stdout unless -o).\n"
               "kinds (and the witness kind amk-verify must report):\n");
    for (int i = 0; i < proofs_mutation_count(); i++) {
        const proofs_mutation *m = proofs_mutation_at(i);
        fprintf(f, "  %-31s %-22s %s\n", m->name, m->witness_kind[0] ? m->witness_kind : "(PROVED)",
                m->summary);
    }
    fprintf(f, "exit: 0 written, 2 bad input, unknown kind, or no site for the kind.\n");
}

int cmd_mutate(int argc, char **argv)
{
    const char *file = NULL, *kind = NULL, *out = NULL;
    uint64_t seed = 0;
    for (int i = 1; i < argc; i++) {
        bool has = i + 1 < argc;
        if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
            usage(stdout);
            return AMK_EXIT_OK;
        } else if (!strcmp(argv[i], "--kind") && has) {
            kind = argv[++i];
        } else if (!strcmp(argv[i], "--seed") && has) {
            char *end;
            seed = strtoull(argv[++i], &end, 10);
            if (*end) {
                fprintf(stderr, "amk mutate: --seed must be a non-negative integer\n");
                return AMK_EXIT_MALFORMED;
            }
        } else if (!strcmp(argv[i], "-o") && has) {
            out = argv[++i];
        } else if (argv[i][0] == '-' && argv[i][1]) {
            fprintf(stderr, "amk mutate: unknown or incomplete option '%s'\n", argv[i]);
            usage(stderr);
            return AMK_EXIT_MALFORMED;
        } else {
            file = argv[i];
        }
    }
    if (!file || !kind) {
        fprintf(stderr, "amk mutate: PROGRAM and --kind are required\n");
        usage(stderr);
        return AMK_EXIT_MALFORMED;
    }
    ir_error err = {0};
    ir_program *p;
    ir_status s = ir_read_file(file, NULL, &p, &err);
    if (s == IR_OK) {
        s = proofs_mutate(p, kind, seed, &err);
        if (s == IR_OK && out)
            s = ir_write_file(p, out, &err);
        else if (s == IR_OK) {
            char *text;
            size_t n;
            s = ir_write_json(p, &text, &n, &err);
            if (s == IR_OK) {
                fwrite(text, 1, n, stdout);
                free(text);
            }
        }
        ir_program_free(p);
    }
    if (s != IR_OK) {
        cmd_print_error("amk mutate", &err);
        return AMK_EXIT_MALFORMED;
    }
    return AMK_EXIT_OK;
}
