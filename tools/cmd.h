/*
 * cmd.h - the tools/ part: the amk and amk-verify command lines, one subcommand per cmd_*.c.
 * Each takes the arguments after its name (argv[0] is the subcommand name) and returns the
 * process exit code (below, as SPEC.md section 1 lists them). Commands print results on stdout
 * and diagnostics on stderr; besides the benchmark drivers (*_main.c), they are the only code in
 * the project that prints or decides an exit code. Every command parses its command line with
 * base_opts_parse through cmd_parse_options, so usage errors and --help behave the same
 * everywhere.
 */
#ifndef AMK_CMD_H
#define AMK_CMD_H

#include <stdio.h>

#include "base/base.h"
#include "ir/amk_ir.h"

/* Exit codes (SPEC.md section 1). */
#define AMK_EXIT_OK 0          /* success; amk-verify: PROVED; amk audit: CONFIRMED */
#define AMK_EXIT_REFUTED 1     /* REFUTED (verifier, audit), FAIL (lint, correctness gates), a
                                  refused plan or certificate, a CUDA error */
#define AMK_EXIT_MALFORMED 2   /* MALFORMED or unreadable input, bad usage, no CUDA or no GPU */
#define AMK_EXIT_UNKNOWN 3     /* UNKNOWN (a solver limit; never safe); amk audit: UNSUPPORTED */
#define AMK_EXIT_TIMEOUT 4     /* amk launch: the watchdog ended a launch (spin budget spent) */

/* cmd_parse_options's answer when the command should go on (never an exit code). */
#define CMD_CONTINUE (-1)

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

/* Parse argv by cl (base_opts_parse). --help: the usage on stdout, returns AMK_EXIT_OK; a usage
 * error: "PROG: ERROR" and the usage on stderr, returns AMK_EXIT_MALFORMED; else CMD_CONTINUE. */
int cmd_parse_options(const base_cmdline *cl, int argc, char **argv);
/* Print cl's usage text to f. */
void cmd_print_usage(const base_cmdline *cl, FILE *f);
/* A usage error found after parsing: "PROG: WHY" and the usage on stderr; AMK_EXIT_MALFORMED. */
int cmd_usage_error(const base_cmdline *cl, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
/* err in the form the command was asked for: JSON on stdout when json, else text on stderr. */
void cmd_report_error(const char *prog, bool json, const ir_error *err);
/* {"status": STATUS, "where": ..., "why": ...} on stdout (a load refused by the megakernel). */
void cmd_print_status_json(const char *status, const ir_error *err);
/* The whole file at path (IR_MAX_FILE_BYTES at most) as a NUL-terminated string the caller
 * frees, its length in *len; NULL with err filled when it cannot be read. */
char *cmd_read_text(const char *path, size_t *len, ir_error *err);
/* Write p as canonical JSON to out, or to stdout when out is NULL or "-". */
ir_status cmd_write_program(const ir_program *p, const char *out, ir_error *err);
/* Print n token ids as a JSON array ("[1, 2]") or space-separated (" 1 2") on stdout. */
void cmd_print_tokens(const int32_t *t, int64_t n, bool json);

/* Running totals of logits comparisons against a reference (amk run, amk launch). */
typedef struct {
    double worst_rel, worst_abs;   /* largest relative (to max |ref|) and absolute error */
    int64_t agree, compared;       /* positions whose top-1 agree, positions compared */
    int64_t first_fail;            /* first position over tolerance, -1 while none */
} cmd_gate_totals;
/* Compare n logits a with the reference b at position pos (refvm_gate_compare, tolerance tol
 * relative to max |b|) and fold the result into t (start t with cmd_gate_totals_init). */
void cmd_gate_totals_init(cmd_gate_totals *t);
void cmd_gate_fold(cmd_gate_totals *t, const float *a, const float *b, int64_t n, double tol,
                   int64_t pos);

/* A certificate checked against a program: read and verify_cert_check'ed. */
typedef enum {
    CMD_CERT_OK,          /* it checks */
    CMD_CERT_INVALID,     /* a certificate that does not check (hash, verdict, evidence): exit 1 */
    CMD_CERT_UNREADABLE,  /* no file, or not a certificate at all: exit 2, err says why */
} cmd_cert_status;
/* Read the certificate at path into *cert (*len bytes; the caller frees it) and check it against
 * p. err says why on anything but CMD_CERT_OK (UNREADABLE: the file in front of its where). */
cmd_cert_status cmd_check_cert(const char *path, const ir_program *p, char **cert, size_t *len,
                               ir_error *err);

/* Progress of a long command on stderr: nothing for the first 2 s, then at most one line a
 * second ("PROG: [T s] LINE"), so short runs stay quiet and long ones never look hung. */
typedef struct {
    const char *prog;
    double start, last;
} cmd_progress;

void cmd_progress_begin(cmd_progress *p, const char *prog);
void cmd_progress_say(cmd_progress *p, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#endif
