/*
 * launcher.c - the smallest pre-launch gate a launcher can write against the installed library:
 * read a program, prove it with verify_program(), launch only on PROVED. Built by
 * tests/test_install.c with `pkg-config --cflags --libs amk` against an installed tree.
 * usage: launcher PROGRAM.json; exit = the verdict (0 PROVED, 1 REFUTED, 2 MALFORMED, 3 UNKNOWN).
 */
#include <stdio.h>

#include "ir/amk_ir.h"
#include "verify/verify.h"

int main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: launcher PROGRAM.json\n");
        return 2;
    }
    ir_error err = {0};
    ir_program *p = NULL;
    if (ir_read_file(argv[1], NULL, &p, &err) != IR_OK) {
        fprintf(stderr, "launcher: %s: %s\n", err.where, err.why);
        return 2;
    }
    verify_opts o;
    verify_opts_default(&o);
    verify_result r;
    int rc = 2;
    if (verify_program(p, &o, &r, &err) == IR_OK) {
        rc = (int)r.verdict;
        printf("%s%s%s\n", verify_verdict_name(r.verdict), r.witness_kind[0] ? " " : "",
               r.witness_kind);
        if (r.verdict == VERIFY_PROVED)
            printf("gate open: launching %s\n", argv[1]);
        verify_result_free(&r);
    }
    ir_program_free(p);
    verify_release_memory();
    return rc;
}
