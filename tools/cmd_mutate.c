/*
 * cmd_mutate.c - `amk mutate PROGRAM --kind K --seed S [-o OUT]`: a reproducible single-defect
 * mutant of a program, for the proof regression corpus.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "proofs/proofs.h"
#include "tools/cmd.h"

/* The kinds table of the usage text (a malloc'd string, NULL when memory ran out). */
static char *kinds_text(void)
{
    base_sb b = {0};
    base_sb_str(&b, "kinds (and the witness kind amk-verify must report):\n");
    for (int i = 0; i < proofs_mutation_count(); i++) {
        const proofs_mutation *m = proofs_mutation_at(i);
        base_sb_fmt(&b, "  %-31s %-22s %s\n", m->name,
                    m->witness_kind[0] ? m->witness_kind : "(PROVED)", m->summary);
    }
    base_sb_str(&b, "exit: 0 written, 2 bad input, unknown kind, or no site for the kind.\n");
    return base_sb_take(&b, NULL);
}

int cmd_mutate(int argc, char **argv)
{
    const char *file = NULL, *kind = NULL, *out = NULL;
    uint64_t seed = 0;
    char *kinds = kinds_text();
    const base_option opts[] = {
        BASE_STR("--kind", &kind, "KIND", "the defect to write (below)", .required = true),
        BASE_U64("--seed", &seed, "S", "picks the site (decimal or 0x hex)",
         .show_default = true),
        BASE_STR("-o", &out, "OUT.json", "output file (default stdout; '-': stdout)"),
    };
    const base_cmdline cl = {
        .prog = "amk mutate",
        .synopsis = "usage: amk mutate PROGRAM.json --kind KIND [--seed S] [-o OUT.json]\n",
        .about = "Writes a copy of PROGRAM with exactly one defect (stdout unless -o).\n",
        .opts = opts, .n_opts = 3,
        .pos_name = "PROGRAM", .min_pos = 1, .max_pos = 1, .pos = &file,
        .epilog = kinds,
    };
    int rc = cmd_parse_options(&cl, argc, argv);
    free(kinds);
    if (rc != CMD_CONTINUE)
        return rc;
    ir_error err = {0};
    ir_program *p;
    ir_status s = ir_read_file(file, NULL, &p, &err);
    if (s == IR_OK) {
        s = proofs_mutate(p, kind, seed, &err);
        if (s == IR_OK)
            s = cmd_write_program(p, out, &err);
        ir_program_free(p);
    }
    if (s != IR_OK) {
        cmd_print_error("amk mutate", &err);
        return AMK_EXIT_MALFORMED;
    }
    return AMK_EXIT_OK;
}
