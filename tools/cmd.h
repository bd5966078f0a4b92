/*
 * cmd.h - the amk subcommands. Each takes the arguments after its name (argv[0] is the
 * subcommand name) and returns the process exit code: 0 ok/PROVED, 1 REFUTED/FAIL,
 * 2 MALFORMED input or usage, 3 UNKNOWN. Commands print results on stdout and diagnostics on
 * stderr; they are the only code in the project that does.
 */
#ifndef AMK_CMD_H
#define AMK_CMD_H

#include <stdio.h>

#include "ir/amk_ir.h"

#define AMK_EXIT_OK 0
#define AMK_EXIT_REFUTED 1
#define AMK_EXIT_MALFORMED 2
#define AMK_EXIT_UNKNOWN 3

int cmd_ir(int argc, char **argv);
int cmd_lint_kernel(int argc, char **argv);
int cmd_lower(int argc, char **argv);
int cmd_verify(int argc, char **argv);
int cmd_cert(int argc, char **argv);
int cmd_mutate(int argc, char **argv);
int cmd_proofs(int argc, char **argv);
int cmd_weights(int argc, char **argv);
int cmd_run(int argc, char **argv);
int cmd_launch(int argc, char **argv);
int cmd_bench(int argc, char **argv);
int cmd_audit(int argc, char **argv);
/* the schedule search (tools/cmd_search.c) */
int cmd_propose(int argc, char **argv);
int cmd_eval(int argc, char **argv);
int cmd_loop(int argc, char **argv);
int cmd_serve(int argc, char **argv);

/* Print err to stderr in the documented one-line form "amk: STATUS at WHERE: WHY". */
void cmd_print_error(const char *prog, const ir_error *err);
/* Print err as the documented JSON error object on stdout. */
void cmd_print_error_json(const ir_error *err);
/* Write s as a JSON string literal (quotes and escapes) to f. */
void cmd_put_json_string(FILE *f, const char *s);
/* Exit code for a status: IR_OK -> 0, anything else -> 2. */
int cmd_exit_for(ir_status s);
/* Put the file an error came from in front of its where ("FILE: where"). */
void cmd_error_in_file(ir_error *err, const char *file);
/* A JSON number as an integer in [lo, hi]: false (nothing stored) when v is not a number, not
 * integral or out of range, so no out-of-range float-to-int conversion ever happens. */
bool cmd_json_int(const void *json_number, int64_t lo, int64_t hi, int64_t *out);

#endif
