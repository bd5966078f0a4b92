/*
 * cmd_common.c - what every subcommand shares: the command-line parse with its --help and
 * usage-error rules, printing error records in the documented text and JSON forms, the
 * status-to-exit-code rule, and the few steps more than one command takes (reading and checking
 * a certificate, writing a program, folding logits comparisons).
 */
#include <cjson/cJSON.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "refvm/refvm.h"
#include "tools/cmd.h"
#include "verify/verify.h"

void cmd_print_error(const char *prog, const ir_error *err)
{
    if (err->where[0])
        fprintf(stderr, "%s: %s at %s: %s\n", prog, ir_status_name(err->status), err->where,
                err->why);
    else
        fprintf(stderr, "%s: %s: %s\n", prog, ir_status_name(err->status), err->why);
}

/* JSON string body with the escapes JSON requires. */
static void put_json_string(FILE *f, const char *s)
{
    fputc('"', f);
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        if (c == '"' || c == '\\')
            fprintf(f, "\\%c", c);
        else if (c < 0x20)
            fprintf(f, "\\u%04x", c);
        else
            fputc(c, f);
    }
    fputc('"', f);
}

void cmd_print_error_json(const ir_error *err)
{
    printf("{\"status\": \"%s\", \"where\": ", ir_status_name(err->status));
    put_json_string(stdout, err->where);
    printf(", \"why\": ");
    put_json_string(stdout, err->why);
    printf("}\n");
}

void cmd_put_json_string(FILE *f, const char *s) { put_json_string(f, s); }

int cmd_exit_for(ir_status s) { return s == IR_OK ? AMK_EXIT_OK : AMK_EXIT_MALFORMED; }

void cmd_error_in_file(ir_error *err, const char *file)
{
    char where[sizeof err->where];
    snprintf(where, sizeof where, "%.120s%s%.120s", file, err->where[0] ? ": " : "", err->where);
    memcpy(err->where, where, sizeof where);
}

void cmd_print_usage(const base_cmdline *cl, FILE *f)
{
    base_sb b = {0};
    base_opts_usage(cl, &b);
    if (b.oom)
        fprintf(f, "%s: out of memory writing the usage text\n", cl->prog);
    else if (b.s)
        fputs(b.s, f);
    base_sb_free(&b);
}

/* Whether the command line asks for JSON on stdout (--json, --format json, --format=json). */
static bool wants_json(int argc, char **argv)
{
    for (int i = 1; i < argc; i++)
        if (!strcmp(argv[i], "--json") || !strcmp(argv[i], "--format=json") ||
            (!strcmp(argv[i], "--format") && i + 1 < argc && !strcmp(argv[i + 1], "json")))
            return true;
    return false;
}

int cmd_parse_options(const base_cmdline *cl, int argc, char **argv)
{
    char why[600];
    switch (base_opts_parse(cl, argc, argv, why, sizeof why)) {
    case BASE_OPTS_OK:
        return CMD_CONTINUE;
    case BASE_OPTS_HELP:
        cmd_print_usage(cl, stdout);
        return AMK_EXIT_OK;
    default:
        if (wants_json(argc, argv)) {   /* a script reading stdout still gets one JSON record */
            ir_error err = {0};
            ir_fail(&err, IR_ERR_MALFORMED, "usage", "%s", why);
            cmd_print_error_json(&err);
        }
        fprintf(stderr, "%s: %s\n", cl->prog, why);
        cmd_print_usage(cl, stderr);
        return AMK_EXIT_MALFORMED;
    }
}

int cmd_usage_error(const base_cmdline *cl, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "%s: ", cl->prog);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    cmd_print_usage(cl, stderr);
    return AMK_EXIT_MALFORMED;
}

void cmd_report_error(const char *prog, bool json, const ir_error *err)
{
    if (json)
        cmd_print_error_json(err);
    else
        cmd_print_error(prog, err);
}

void cmd_print_status_json(const char *status, const ir_error *err)
{
    printf("{\"status\": \"%s\", \"where\": ", status);
    put_json_string(stdout, err->where);
    printf(", \"why\": ");
    put_json_string(stdout, err->why);
    printf("}\n");
}

char *cmd_read_text(const char *path, size_t *len, ir_error *err)
{
    char *t = NULL;
    return ir_read_text_file(path, IR_MAX_FILE_BYTES, &t, len, err) == IR_OK ? t : NULL;
}

ir_status cmd_write_program(const ir_program *p, const char *out, ir_error *err)
{
    if (out && strcmp(out, "-"))
        return ir_write_file(p, out, err);
    char *text;
    size_t n;
    ir_status s = ir_write_json(p, &text, &n, err);
    if (s == IR_OK) {
        fwrite(text, 1, n, stdout);
        free(text);
    }
    return s;
}

void cmd_print_tokens(const int32_t *t, int64_t n, bool json)
{
    if (json)
        printf("[");
    for (int64_t i = 0; i < n; i++)
        printf(json ? "%s%d" : "%s %d", json && i ? ", " : "", t[i]);
    if (json)
        printf("]");
}

void cmd_gate_totals_init(cmd_gate_totals *t)
{
    memset(t, 0, sizeof *t);
    t->first_fail = -1;
}

void cmd_gate_fold(cmd_gate_totals *t, const float *a, const float *b, int64_t n, double tol,
                   int64_t pos)
{
    refvm_gate_cmp g = refvm_gate_compare(a, b, n, tol);
    double rel = g.max_abs_ref > 0 ? g.max_abs_err / g.max_abs_ref : g.max_abs_err;
    if (rel > t->worst_rel || rel != rel)
        t->worst_rel = rel;
    if (g.max_abs_err > t->worst_abs)
        t->worst_abs = g.max_abs_err;
    t->agree += g.top_a == g.top_b;
    t->compared++;
    if (!g.pass && t->first_fail < 0)
        t->first_fail = pos;
}

cmd_cert_status cmd_check_cert(const char *path, const ir_program *p, char **cert, size_t *len,
                               ir_error *err)
{
    if (!(*cert = cmd_read_text(path, len, err)))
        return CMD_CERT_UNREADABLE;
    ir_status cs = verify_cert_check(*cert, *len, p, err);
    if (cs == IR_OK)
        return CMD_CERT_OK;
    if (cs == IR_ERR_MALFORMED)
        return CMD_CERT_INVALID;
    /* not a certificate at all (truncated, another kind or format): bad input */
    cmd_error_in_file(err, path);
    return CMD_CERT_UNREADABLE;
}

void cmd_progress_begin(cmd_progress *p, const char *prog)
{
    p->prog = prog;
    p->start = base_now_s();
    p->last = 0;
}

void cmd_progress_say(cmd_progress *p, const char *fmt, ...)
{
    double now = base_now_s(), t = now - p->start;
    if (t < 2.0 || now - p->last < 1.0)
        return;
    p->last = now;
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "%s: [%.0f s] ", p->prog, t);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
}
