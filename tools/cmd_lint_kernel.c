/*
 * cmd_lint_kernel.c - `amk lint-kernel FILE.json... [--json|--sarif] [--no-compile]`: runs the
 * bench/ kernel-artifact linter on each file and prints the verdicts as text, as one JSON
 * document, or as a SARIF 2.1.0 log (SPEC.md section 9).
 *
 * Exit code: 2 when any file could not be read (or on bad usage), else 1 when any artifact
 * FAILs, else 0. Unreadable files are also reported on stderr in the section 2 form.
 */
#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lint/lint.h"
#include "tools/cmd.h"

typedef enum { OUT_TEXT, OUT_JSON, OUT_SARIF } out_format;

/* One file's outcome: st IR_OK means rep holds a verdict, anything else err says why not. */
typedef struct {
    ir_status st;
    ir_error err;
    lint_report rep;
} lint_entry;

/* The text after the option list: environment, the rules, the exit codes (a malloc'd string,
 * NULL when memory ran out). */
static char *usage_epilog(void)
{
    base_sb b = {0};
    base_sb_str(&b, "environment: AMK_NVCC (nvcc to use; empty: none), AMK_PYTHON (python3 to use;\n"
                    "empty: none). A missing tool is a skipped check, never a pass.\n\nrules:\n");
    for (int i = 0; i < LINT_N_RULES; i++)
        base_sb_fmt(&b, "  %-18s %s\n", lint_rule_id((lint_rule)i),
                    lint_rule_text((lint_rule)i));
    base_sb_str(&b, "\nexit codes: 0 all PASS, 1 any FAIL, 2 unreadable file or bad usage\n");
    return base_sb_take(&b, NULL);
}

static const char *const FORMATS[] = {"text", "json", "sarif", NULL};

/* The command line: files into files[] (argc slots), the output format and --no-compile.
 * CMD_CONTINUE, or the exit code of --help or a usage error. */
static int parse_args(int argc, char **argv, const char **files, int *n_files, out_format *fmt,
                      bool *compile)
{
    bool json = false, sarif = false, no_compile = false;
    int format = OUT_TEXT;
    char *epilog = usage_epilog();
    const base_option opts[] = {
        BASE_FLAG("--json", &json, "one JSON document on stdout"),
        BASE_FLAG("--sarif", &sarif, "a SARIF 2.1.0 log on stdout"),
        BASE_CHOICE("--format", &format, "F", FORMATS, "text (default), json or sarif, as amk-verify "
         "spells it; --json and\n--sarif are the same"),
        BASE_FLAG("--no-compile", &no_compile, "do not run nvcc -c on CUDA sources "
         "(reported as skipped)"),
    };
    const base_cmdline cl = {
        .prog = "amk lint-kernel",
        .synopsis = "usage: amk lint-kernel FILE.json... [--format text|json|sarif] "
                    "[--no-compile]\n",
        .about = "Static checks for single-kernel artifacts {\"name\", \"kernel\": "
                 "{\"kernel_type\",\n\"source_code\", \"invocation_example\"}}. Prints PASS "
                 "or FAIL per file with findings.\n",
        .opts = opts, .n_opts = 4, .pos_name = "an artifact FILE.json", .min_pos = 1,
        .max_pos = -1, .pos = files, .n_pos = n_files, .epilog = epilog,
    };
    int rc = cmd_parse_options(&cl, argc, argv);
    json |= format == OUT_JSON;
    sarif |= format == OUT_SARIF;
    if (rc == CMD_CONTINUE && json && sarif)
        rc = cmd_usage_error(&cl, "json and sarif output exclude each other");
    free(epilog);
    *fmt = json ? OUT_JSON : sarif ? OUT_SARIF : OUT_TEXT;
    *compile = !no_compile;
    return rc;
}

static int count_skipped(const lint_report *r)
{
    int n = 0;
    for (int i = 0; i < r->n_findings; i++)
        n += r->findings[i].severity == LINT_SKIPPED;
    return n;
}

/* ---------------------------------------------------------------- text */

static void print_text(const lint_entry *e, int n)
{
    int pass = 0, fail = 0, unreadable = 0, skipped = 0;
    for (int i = 0; i < n; i++) {
        const lint_report *r = &e[i].rep;
        if (e[i].st != IR_OK) {
            printf("ERROR %s: %s\n", e[i].err.where[0] ? e[i].err.where : r->path, e[i].err.why);
            unreadable++;
            continue;
        }
        pass += r->pass;
        fail += !r->pass;
        skipped += count_skipped(r);
        printf("%s %s", r->pass ? "PASS" : "FAIL", r->path);
        if (r->kind != LINT_KIND_UNKNOWN)
            printf(" (%s", lint_kind_name(r->kind));
        for (int k = 0; k < r->n_symbols; k++)
            printf("%s%s", k ? ", " : ": ", r->symbols[k]);
        if (r->kind != LINT_KIND_UNKNOWN)
            printf("; %s %s)", r->tool, lint_tool_state_name(r->tool_state));
        printf("\n");
        for (int k = 0; k < r->n_findings; k++) {
            const lint_finding *f = &r->findings[k];
            printf("  %-7s %s", lint_severity_name(f->severity), lint_rule_id(f->rule));
            if (f->line > 0)
                printf(" %s:%d", f->field[0] ? f->field : r->path, f->line);
            printf(": %s\n", f->message);
        }
    }
    printf("%d artifact%s: %d PASS, %d FAIL, %d unreadable; %d check%s skipped\n", n,
           n == 1 ? "" : "s", pass, fail, unreadable, skipped, skipped == 1 ? "" : "s");
}

/* ---------------------------------------------------------------- JSON */

/* cJSON builders that remember an allocation failure instead of dropping a field silently. */
static cJSON *add(cJSON *obj, const char *key, cJSON *v, bool *ok)
{
    if (!v || !cJSON_AddItemToObject(obj, key, v)) {
        cJSON_Delete(v);
        *ok = false;
        return NULL;
    }
    return v;
}

static void push(cJSON *arr, cJSON *v, bool *ok)
{
    if (!v || !cJSON_AddItemToArray(arr, v)) {
        cJSON_Delete(v);
        *ok = false;
    }
}

static cJSON *error_json(const ir_error *err, bool *ok)
{
    cJSON *o = cJSON_CreateObject();
    if (!o) {
        *ok = false;
        return NULL;
    }
    add(o, "status", cJSON_CreateString(ir_status_name(err->status)), ok);
    add(o, "where", cJSON_CreateString(err->where), ok);
    add(o, "why", cJSON_CreateString(err->why), ok);
    return o;
}

static cJSON *build_json(const lint_entry *e, int n, bool *ok)
{
    cJSON *doc = cJSON_CreateObject();
    if (!doc) {
        *ok = false;
        return NULL;
    }
    add(doc, "tool", cJSON_CreateString("amk lint-kernel"), ok);
    add(doc, "version", cJSON_CreateString(AMK_TOOL_VERSION), ok);
    cJSON *arts = add(doc, "artifacts", cJSON_CreateArray(), ok);
    int pass = 0, fail = 0, unreadable = 0, skipped = 0;
    for (int i = 0; i < n && arts; i++) {
        const lint_report *r = &e[i].rep;
        cJSON *a = cJSON_CreateObject();
        push(arts, a, ok);
        if (!a)
            continue;
        add(a, "file", cJSON_CreateString(r->path ? r->path : ""), ok);
        if (e[i].st != IR_OK) {
            unreadable++;
            add(a, "verdict", cJSON_CreateString("ERROR"), ok);
            add(a, "error", error_json(&e[i].err, ok), ok);
            continue;
        }
        pass += r->pass;
        fail += !r->pass;
        skipped += count_skipped(r);
        add(a, "verdict", cJSON_CreateString(r->pass ? "PASS" : "FAIL"), ok);
        add(a, "name", r->name ? cJSON_CreateString(r->name) : cJSON_CreateNull(), ok);
        add(a, "kernel_type", cJSON_CreateString(lint_kind_name(r->kind)), ok);
        add(a, "symbols", r->n_symbols ? cJSON_CreateStringArray((const char *const *)r->symbols,
                                                                 r->n_symbols)
                                       : cJSON_CreateArray(), ok);
        cJSON *tc = add(a, "tool_check", cJSON_CreateObject(), ok);
        if (tc) {
            add(tc, "tool", r->tool ? cJSON_CreateString(r->tool) : cJSON_CreateNull(), ok);
            add(tc, "state", cJSON_CreateString(lint_tool_state_name(r->tool_state)), ok);
        }
        cJSON *fs = add(a, "findings", cJSON_CreateArray(), ok);
        for (int k = 0; fs && k < r->n_findings; k++) {
            const lint_finding *f = &r->findings[k];
            cJSON *o = cJSON_CreateObject();
            push(fs, o, ok);
            if (!o)
                continue;
            add(o, "rule", cJSON_CreateString(lint_rule_id(f->rule)), ok);
            add(o, "severity", cJSON_CreateString(lint_severity_name(f->severity)), ok);
            add(o, "field", cJSON_CreateString(f->field), ok);
            add(o, "line", f->line > 0 ? cJSON_CreateNumber(f->line) : cJSON_CreateNull(), ok);
            add(o, "message", cJSON_CreateString(f->message), ok);
        }
    }
    cJSON *s = add(doc, "summary", cJSON_CreateObject(), ok);
    if (s) {
        add(s, "artifacts", cJSON_CreateNumber(n), ok);
        add(s, "pass", cJSON_CreateNumber(pass), ok);
        add(s, "fail", cJSON_CreateNumber(fail), ok);
        add(s, "unreadable", cJSON_CreateNumber(unreadable), ok);
        add(s, "skipped_checks", cJSON_CreateNumber(skipped), ok);
    }
    return doc;
}

/* ---------------------------------------------------------------- SARIF 2.1.0 */

static cJSON *text_object(const char *text, bool *ok)
{
    cJSON *o = cJSON_CreateObject();
    if (!o) {
        *ok = false;
        return NULL;
    }
    add(o, "text", cJSON_CreateString(text), ok);
    return o;
}

/* physicalLocation of the artifact file; region.startLine is a line of the field the finding
 * names (of kernel.source_code for most rules), stated in the "field" property. */
static cJSON *sarif_location(const char *path, int line, bool *ok)
{
    cJSON *loc = cJSON_CreateObject();
    if (!loc) {
        *ok = false;
        return NULL;
    }
    cJSON *phys = add(loc, "physicalLocation", cJSON_CreateObject(), ok);
    if (!phys)
        return loc;
    cJSON *al = add(phys, "artifactLocation", cJSON_CreateObject(), ok);
    if (al)
        add(al, "uri", cJSON_CreateString(path), ok);
    if (line > 0) {
        cJSON *reg = add(phys, "region", cJSON_CreateObject(), ok);
        if (reg)
            add(reg, "startLine", cJSON_CreateNumber(line), ok);
    }
    return loc;
}

static cJSON *build_sarif(const lint_entry *e, int n, bool *ok)
{
    cJSON *doc = cJSON_CreateObject();
    if (!doc) {
        *ok = false;
        return NULL;
    }
    add(doc, "$schema", cJSON_CreateString("https://docs.oasis-open.org/sarif/sarif/v2.1.0/"
                                           "errata01/os/schemas/sarif-schema-2.1.0.json"), ok);
    add(doc, "version", cJSON_CreateString("2.1.0"), ok);
    cJSON *runs = add(doc, "runs", cJSON_CreateArray(), ok);
    cJSON *run = cJSON_CreateObject();
    if (runs)
        push(runs, run, ok);
    else
        cJSON_Delete(run), run = NULL;
    if (!run)
        return doc;
    cJSON *tool = add(run, "tool", cJSON_CreateObject(), ok);
    cJSON *driver = tool ? add(tool, "driver", cJSON_CreateObject(), ok) : NULL;
    if (driver) {
        add(driver, "name", cJSON_CreateString("amk lint-kernel"), ok);
        add(driver, "version", cJSON_CreateString(AMK_TOOL_VERSION), ok);
        cJSON *rules = add(driver, "rules", cJSON_CreateArray(), ok);
        for (int i = 0; rules && i < LINT_N_RULES; i++) {
            cJSON *rd = cJSON_CreateObject();
            push(rules, rd, ok);
            if (!rd)
                continue;
            add(rd, "id", cJSON_CreateString(lint_rule_id((lint_rule)i)), ok);
            add(rd, "shortDescription", text_object(lint_rule_text((lint_rule)i), ok),
                ok);
        }
    }
    bool all_read = true;
    cJSON *results = add(run, "results", cJSON_CreateArray(), ok);
    cJSON *inv = cJSON_CreateObject();
    cJSON *invs = add(run, "invocations", cJSON_CreateArray(), ok);
    if (invs)
        push(invs, inv, ok);
    else
        cJSON_Delete(inv), inv = NULL;
    cJSON *notes = inv ? add(inv, "toolExecutionNotifications", cJSON_CreateArray(), ok) : NULL;
    cJSON *verdicts = NULL;
    cJSON *props = add(run, "properties", cJSON_CreateObject(), ok);
    if (props)
        verdicts = add(props, "verdicts", cJSON_CreateArray(), ok);
    for (int i = 0; i < n; i++) {
        const lint_report *r = &e[i].rep;
        const char *path = r->path ? r->path : "";
        cJSON *v = cJSON_CreateObject();
        if (verdicts)
            push(verdicts, v, ok);
        else
            cJSON_Delete(v), v = NULL;
        if (v) {
            add(v, "file", cJSON_CreateString(path), ok);
            add(v, "verdict", cJSON_CreateString(e[i].st != IR_OK ? "ERROR" : r->pass ? "PASS" : "FAIL"),
                ok);
        }
        if (e[i].st != IR_OK) {
            all_read = false;
            cJSON *nt = cJSON_CreateObject();
            if (notes)
                push(notes, nt, ok);
            else
                cJSON_Delete(nt), nt = NULL;
            if (nt) {
                char msg[900];
                snprintf(msg, sizeof msg, "%s: %s", ir_status_name(e[i].err.status), e[i].err.why);
                add(nt, "level", cJSON_CreateString("error"), ok);
                add(nt, "message", text_object(msg, ok), ok);
                cJSON *locs = add(nt, "locations", cJSON_CreateArray(), ok);
                if (locs)
                    push(locs, sarif_location(path, 0, ok), ok);
            }
            continue;
        }
        for (int k = 0; results && k < r->n_findings; k++) {
            const lint_finding *f = &r->findings[k];
            cJSON *res = cJSON_CreateObject();
            push(results, res, ok);
            if (!res)
                continue;
            bool skip = f->severity == LINT_SKIPPED;
            add(res, "ruleId", cJSON_CreateString(lint_rule_id(f->rule)), ok);
            add(res, "ruleIndex", cJSON_CreateNumber((int)f->rule), ok);
            /* SARIF: a result whose kind is not "fail" has level "none"; "open" is the kind
             * for a check whose outcome the tool could not determine. */
            add(res, "kind", cJSON_CreateString(skip ? "open" : "fail"), ok);
            add(res, "level", cJSON_CreateString(skip ? "none" : "error"), ok);
            char msg[700];
            snprintf(msg, sizeof msg, "%s%s", skip ? "skipped: " : "", f->message);
            add(res, "message", text_object(msg, ok), ok);
            cJSON *locs = add(res, "locations", cJSON_CreateArray(), ok);
            if (locs)
                push(locs, sarif_location(path, f->line, ok), ok);
            cJSON *rp = add(res, "properties", cJSON_CreateObject(), ok);
            if (rp) {
                add(rp, "field", cJSON_CreateString(f->field), ok);
                add(rp, "severity", cJSON_CreateString(lint_severity_name(f->severity)), ok);
            }
        }
    }
    if (inv)
        add(inv, "executionSuccessful", cJSON_CreateBool(all_read), ok);
    return doc;
}

/* ---------------------------------------------------------------- entry point */

int cmd_lint_kernel(int argc, char **argv)
{
    out_format fmt = OUT_TEXT;
    bool compile = true;
    int n_files = 0;
    const char **files = calloc((size_t)(argc > 0 ? argc : 1), sizeof *files);
    if (!files) {
        fprintf(stderr, "amk lint-kernel: out of memory\n");
        return AMK_EXIT_MALFORMED;
    }
    int rc = parse_args(argc, argv, files, &n_files, &fmt, &compile);
    if (rc != CMD_CONTINUE) {
        free(files);
        return rc;
    }

    lint_opts opts;
    lint_opts_default(&opts);
    opts.compile = compile;
    opts.nvcc = getenv("AMK_NVCC");
    opts.python = getenv("AMK_PYTHON");

    lint_entry *e = calloc((size_t)n_files, sizeof *e);
    if (!e) {
        fprintf(stderr, "amk lint-kernel: out of memory\n");
        free(files);
        return AMK_EXIT_MALFORMED;
    }
    int code = AMK_EXIT_OK;
    for (int i = 0; i < n_files; i++) {
        e[i].st = lint_file(files[i], &opts, &e[i].rep, &e[i].err);
        if (e[i].st != IR_OK) {
            cmd_print_error("amk", &e[i].err);
            code = AMK_EXIT_MALFORMED;
        } else if (!e[i].rep.pass && code == AMK_EXIT_OK) {
            code = AMK_EXIT_REFUTED;
        }
    }

    if (fmt == OUT_TEXT) {
        print_text(e, n_files);
    } else {
        bool ok = true;
        cJSON *doc = fmt == OUT_JSON ? build_json(e, n_files, &ok) : build_sarif(e, n_files, &ok);
        char *s = ok && doc ? cJSON_Print(doc) : NULL;
        if (s) {
            printf("%s\n", s);
            cJSON_free(s);
        } else {
            fprintf(stderr, "amk: NOMEM: out of memory writing the report\n");
            code = AMK_EXIT_MALFORMED;
        }
        cJSON_Delete(doc);
    }
    fflush(stdout);
    for (int i = 0; i < n_files; i++)
        lint_report_free(&e[i].rep);
    free(e);
    free(files);
    return code;
}
