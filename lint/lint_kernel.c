/*
 * lint_kernel.c - static checks for single-kernel artifacts (`amk lint-kernel`, SPEC.md
 * section 9).
 *
 * An artifact is a JSON file holding one GPU kernel (CUDA or Triton) as a self-contained
 * source string plus an example of host code that launches it. The checks are textual: the
 * source is scanned on a "code view" in which comments and string literals are blanked out
 * (same length, newlines kept, so offsets still give line numbers), which keeps words in
 * comments or messages from being taken for code. The optional tool checks hand the source to
 * nvcc -c or to python3's ast.parse in a private temporary directory under a time limit; a
 * tool that is missing or unusable yields a SKIPPED finding, never a pass.
 */
#include "base/base.h"
#include "lint/lint.h"

#include <cjson/cJSON.h>
#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

/* ---------------------------------------------------------------- rule table */

static const struct {
    const char *id;
    const char *text;
} RULES[LINT_N_RULES] = {
    {"L001-json", "the file is valid JSON"},
    {"L002-fields", "name, kernel.kernel_type, kernel.source_code and kernel.invocation_example are "
                    "present with the right types, and there are no other keys"},
    {"L003-name", "name equals the file name without .json when the file is <name>.json"},
    {"L010-kernel-type", "kernel_type agrees with the source: cuda needs a __global__ function, "
                         "triton an @triton.jit function"},
    {"L020-host-code", "source_code has no host code: no main, no __main__ guard, no kernel "
                       "launch, no printing, no allocation, copies or device synchronization"},
    {"L030-fp16-include", "CUDA sources using half/__half types or intrinsics include <cuda_fp16.h>"},
    {"L031-bf16-include", "CUDA sources using __nv_bfloat16 types or intrinsics include <cuda_bf16.h>"},
    {"L040-invocation", "invocation_example is non-empty and mentions a kernel symbol"},
    {"L050-nvcc", "nvcc -c compiles the CUDA source within the time limit"},
    {"L051-triton-parse", "python3's ast.parse accepts the Triton source"},
};

const char *lint_rule_id(lint_rule r)
{
    return (unsigned)r < LINT_N_RULES ? RULES[r].id : "L???";
}

const char *lint_rule_text(lint_rule r)
{
    return (unsigned)r < LINT_N_RULES ? RULES[r].text : "unknown rule";
}

const char *lint_severity_name(lint_severity s)
{
    return s == LINT_SKIPPED ? "skipped" : "error";
}

const char *lint_kind_name(lint_kind k)
{
    return k == LINT_KIND_CUDA ? "cuda" : k == LINT_KIND_TRITON ? "triton" : "unknown";
}

const char *lint_tool_state_name(lint_tool_state s)
{
    switch (s) {
    case LINT_TOOL_PASSED: return "passed";
    case LINT_TOOL_FAILED: return "failed";
    case LINT_TOOL_SKIPPED: return "skipped";
    default: return "not run";
    }
}

void lint_opts_default(lint_opts *o)
{
    memset(o, 0, sizeof *o);
    o->compile = true;
    o->parse = true;
}

/* ---------------------------------------------------------------- report building */

/* Everything one lint run carries besides the report: per-rule counts for the cap, the
 * host-code hits already reported (one per line and kind), and a sticky out-of-memory flag. */
typedef struct {
    lint_report *r;
    const lint_opts *opts;
    int per_rule[LINT_N_RULES];
    int64_t *host_seen;     /* line * 16 + host-code category */
    int n_host_seen, cap_host_seen;
    bool nomem;
} lint_ctx;

/* Append a finding unless its rule already has LINT_MAX_PER_RULE (then only count it). */
static void add_finding(lint_ctx *c, lint_rule rule, lint_severity sev,
                        const char *field, int line, const char *fmt, ...)
    __attribute__((format(printf, 6, 7)));

static void add_finding(lint_ctx *c, lint_rule rule, lint_severity sev,
                        const char *field, int line, const char *fmt, ...)
{
    lint_report *r = c->r;
    if (c->per_rule[rule]++ >= LINT_MAX_PER_RULE)
        return;
    if (r->n_findings == r->cap_findings) {
        int cap = r->cap_findings ? 2 * r->cap_findings : 8;
        lint_finding *f = realloc(r->findings, (size_t)cap * sizeof *f);
        if (!f) {
            c->nomem = true;
            return;
        }
        r->findings = f;
        r->cap_findings = cap;
    }
    lint_finding *f = &r->findings[r->n_findings++];
    memset(f, 0, sizeof *f);
    f->rule = rule;
    f->severity = sev;
    snprintf(f->field, sizeof f->field, "%s", field);
    f->line = line;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(f->message, sizeof f->message, fmt, ap);
    va_end(ap);
    for (char *m = f->message; *m; m++)
        if (*m == '\n' || *m == '\r' || *m == '\t')
            *m = ' ';
    if (sev == LINT_ERROR)
        r->pass = false;
}

/* After all checks: one closing finding per rule that hit the cap, saying how many were cut. */
static void add_cut_notes(lint_ctx *c)
{
    for (int i = 0; i < LINT_N_RULES; i++) {
        int cut = c->per_rule[i] - LINT_MAX_PER_RULE;
        if (cut > 0) {
            c->per_rule[i] = 0;  /* let the note itself through */
            add_finding(c, (lint_rule)i, LINT_ERROR, "", 0,
                        "%d more %s findings not listed", cut, RULES[i].id);
        }
    }
}

static void add_symbol(lint_ctx *c, const char *s, size_t n)
{
    lint_report *r = c->r;
    for (int i = 0; i < r->n_symbols; i++)
        if (strlen(r->symbols[i]) == n && !memcmp(r->symbols[i], s, n))
            return;
    char **v = realloc(r->symbols, (size_t)(r->n_symbols + 1) * sizeof *v);
    if (!v) {
        c->nomem = true;
        return;
    }
    r->symbols = v;
    if (!(v[r->n_symbols] = strndup(s, n))) {
        c->nomem = true;
        return;
    }
    r->n_symbols++;
}

void lint_report_free(lint_report *r)
{
    if (!r)
        return;
    free(r->path);
    free(r->name);
    for (int i = 0; i < r->n_symbols; i++)
        free(r->symbols[i]);
    free(r->symbols);
    free(r->findings);
    memset(r, 0, sizeof *r);
}

/* ---------------------------------------------------------------- source views */

static bool is_ident(int ch)
{
    return isalnum((unsigned char)ch) || ch == '_';
}

static bool is_ident_start(int ch)
{
    return isalpha((unsigned char)ch) || ch == '_';
}

static void blank(char *v, size_t i)
{
    if (v[i] != '\n')
        v[i] = ' ';
}

/* 1-based line of offset off in s. */
static int line_at(const char *s, size_t off)
{
    int line = 1;
    for (size_t i = 0; i < off; i++)
        line += s[i] == '\n';
    return line;
}

/* Does the identifier ending just before position i (inclusive of i) spell a C++ raw-string
 * prefix (R, u8R, uR, UR, LR)? */
static bool raw_string_prefix(const char *s, size_t i)
{
    size_t j = i;
    while (j > 0 && is_ident(s[j - 1]))
        j--;
    size_t n = i + 1 - j;
    static const char *const P[] = {"R", "u8R", "uR", "UR", "LR"};
    for (size_t k = 0; k < sizeof P / sizeof P[0]; k++)
        if (strlen(P[k]) == n && !memcmp(s + j, P[k], n))
            return true;
    return false;
}

/* CUDA/C++: blank // and block comments in both views, and the insides of string and
 * character literals (raw strings included) in code only. Quotes stay, so "x" reads "" in code.
 * A ' right after a digit is a digit separator (1'000), not a literal. */
static void strip_c(const char *s, size_t n, char *code, char *nocom)
{
    size_t i = 0;
    while (i < n) {
        char ch = s[i];
        if (ch == '/' && i + 1 < n && s[i + 1] == '/') {
            for (; i < n && s[i] != '\n'; i++)
                blank(code, i), blank(nocom, i);
        } else if (ch == '/' && i + 1 < n && s[i + 1] == '*') {
            blank(code, i), blank(nocom, i), blank(code, i + 1), blank(nocom, i + 1);
            for (i += 2; i < n && !(s[i] == '*' && i + 1 < n && s[i + 1] == '/'); i++)
                blank(code, i), blank(nocom, i);
            if (i < n) {
                blank(code, i), blank(nocom, i), blank(code, i + 1), blank(nocom, i + 1);
                i += 2;
            }
        } else if (ch == '"' && i > 0 && s[i - 1] == 'R' && raw_string_prefix(s, i - 1)) {
            /* R"delim( ... )delim" */
            size_t d = i + 1;
            while (d < n && d - i - 1 < 16 && s[d] != '(' && s[d] != '"' && s[d] != '\\' &&
                   !isspace((unsigned char)s[d]))
                d++;
            if (d >= n || s[d] != '(') {
                i++;
                continue;
            }
            size_t dl = d - i - 1;
            size_t k = d + 1;
            while (k < n && !(s[k] == ')' && k + 1 + dl < n && !memcmp(s + k + 1, s + i + 1, dl) &&
                              s[k + 1 + dl] == '"'))
                k++;
            for (size_t b = i + 1; b < k; b++)
                blank(code, b);
            i = k < n ? k + dl + 2 : n;
        } else if (ch == '"' || (ch == '\'' && !(i > 0 && isdigit((unsigned char)s[i - 1])))) {
            for (i++; i < n && s[i] != ch && s[i] != '\n'; i++) {
                if (s[i] == '\\' && i + 1 < n)
                    blank(code, i++);
                blank(code, i);
            }
            if (i < n && s[i] == ch)
                i++;
        } else {
            i++;
        }
    }
}

/* Python: blank # comments in both views and the insides of '...', "...", '''...''' and
 * """...""" literals (any prefix) in code only. */
static void strip_py(const char *s, size_t n, char *code, char *nocom)
{
    size_t i = 0;
    while (i < n) {
        char ch = s[i];
        if (ch == '#') {
            for (; i < n && s[i] != '\n'; i++)
                blank(code, i), blank(nocom, i);
        } else if (ch == '"' || ch == '\'') {
            bool triple = i + 2 < n && s[i + 1] == ch && s[i + 2] == ch;
            i += triple ? 3 : 1;
            while (i < n) {
                if (triple ? (s[i] == ch && i + 2 < n && s[i + 1] == ch && s[i + 2] == ch)
                           : (s[i] == ch || s[i] == '\n'))
                    break;
                if (s[i] == '\\' && i + 1 < n)
                    blank(code, i++);
                blank(code, i++);
            }
            if (i < n && s[i] == ch)
                i += triple ? 3 : 1;
        } else {
            i++;
        }
    }
}

/* ---------------------------------------------------------------- scanning helpers */

static size_t skip_space(const char *v, size_t n, size_t i)
{
    while (i < n && isspace((unsigned char)v[i]))
        i++;
    return i;
}

/* Index of the last non-space character before i, or SIZE_MAX when there is none. */
static size_t back_space(const char *v, size_t i)
{
    while (i > 0 && isspace((unsigned char)v[i - 1]))
        i--;
    return i > 0 ? i - 1 : SIZE_MAX;
}

static bool word_is(const char *w, size_t n, const char *lit)
{
    return strlen(lit) == n && !memcmp(w, lit, n);
}

static bool word_in(const char *w, size_t n, const char *const *set)
{
    for (; *set; set++)
        if (word_is(w, n, *set))
            return true;
    return false;
}

/* The identifier that ends at index e (inclusive); *start receives its first index. */
static bool ident_ending_at(const char *v, size_t e, size_t *start)
{
    if (e == SIZE_MAX || !is_ident(v[e]))
        return false;
    size_t b = e;
    while (b > 0 && is_ident(v[b - 1]))
        b--;
    if (!is_ident_start(v[b]))
        return false;
    *start = b;
    return true;
}

/* Is the identifier starting at b preceded by "<scope><sep>" such as "torch." or "at::"?
 * *from receives where the scope starts. */
static bool scoped_by(const char *v, size_t b, const char *sep, const char *const *scopes,
                      size_t *from)
{
    size_t sl = strlen(sep);
    size_t p = back_space(v, b);
    if (p == SIZE_MAX || p + 1 < sl || memcmp(v + p + 1 - sl, sep, sl))
        return false;
    size_t q = back_space(v, p + 1 - sl), s0;
    if (!ident_ending_at(v, q, &s0) || !word_in(v + s0, q + 1 - s0, scopes))
        return false;
    *from = s0;
    return true;
}

/* ---------------------------------------------------------------- L010: kernel type, symbols */

/* After "__global__" at offset i: the function name is the last identifier before the first
 * '(' at nesting level zero, skipping __launch_bounds__(...) and template arguments <...>. */
static bool cuda_symbol_after(const char *v, size_t n, size_t i, size_t *b, size_t *len)
{
    bool have = false;
    while (i < n && v[i] != ';' && v[i] != '{') {
        if (is_ident_start(v[i]) && (i == 0 || !is_ident(v[i - 1]))) {
            size_t e = i;
            while (e < n && is_ident(v[e]))
                e++;
            bool bounds = word_is(v + i, e - i, "__launch_bounds__") ||
                          word_is(v + i, e - i, "__attribute__") ||
                          word_is(v + i, e - i, "__declspec");
            size_t k = skip_space(v, n, e);
            if (bounds && k < n && v[k] == '(') {
                int depth = 0;
                for (; k < n; k++) {
                    depth += v[k] == '(';
                    depth -= v[k] == ')';
                    if (!depth)
                        break;
                }
                i = k + 1;
                continue;
            }
            *b = i;
            *len = e - i;
            have = true;
            i = e;
        } else if (v[i] == '<' && have) {
            int depth = 0;
            for (; i < n; i++) {
                depth += v[i] == '<';
                depth -= v[i] == '>';
                if (!depth)
                    break;
            }
            i++;
        } else if (v[i] == '(') {
            return have;
        } else {
            i++;
        }
    }
    return false;
}

/* Is there "@ triton . jit" at offset i (spaces allowed around the dot)? *end receives the
 * offset after "jit". */
static bool triton_jit_at(const char *v, size_t n, size_t i, size_t *end)
{
    if (v[i] != '@')
        return false;
    size_t k = skip_space(v, n, i + 1);
    if (k + 6 > n || memcmp(v + k, "triton", 6) || (k + 6 < n && is_ident(v[k + 6])))
        return false;
    k = skip_space(v, n, k + 6);
    if (k >= n || v[k] != '.')
        return false;
    k = skip_space(v, n, k + 1);
    if (k + 3 > n || memcmp(v + k, "jit", 3) || (k + 3 < n && is_ident(v[k + 3])))
        return false;
    *end = k + 3;
    return true;
}

/* The function decorated at offset i: the name after the next "def". */
static bool triton_symbol_after(const char *v, size_t n, size_t i, size_t *b, size_t *len)
{
    for (; i + 3 < n; i++) {
        if (!memcmp(v + i, "def", 3) && (i == 0 || !is_ident(v[i - 1])) && isspace((unsigned char)v[i + 3])) {
            size_t k = skip_space(v, n, i + 3), e = k;
            while (e < n && is_ident(v[e]))
                e++;
            if (e == k || !is_ident_start(v[k]))
                return false;
            *b = k;
            *len = e - k;
            return true;
        }
    }
    return false;
}

static void check_kernel_type(lint_ctx *c, const char *src, const char *code, size_t n)
{
    lint_report *r = c->r;
    bool cuda = r->kind == LINT_KIND_CUDA;
    int markers = 0;
    int first_line = 0;
    for (size_t i = 0; i < n; i++) {
        size_t b, len, end;
        if (cuda && code[i] == '_' && !strncmp(code + i, "__global__", 10) &&
            (i == 0 || !is_ident(code[i - 1])) && (i + 10 >= n || !is_ident(code[i + 10]))) {
            markers++;
            if (!first_line)
                first_line = line_at(src, i);
            if (cuda_symbol_after(code, n, i + 10, &b, &len))
                add_symbol(c, code + b, len);
            i += 9;
        } else if (!cuda && triton_jit_at(code, n, i, &end)) {
            markers++;
            if (!first_line)
                first_line = line_at(src, i);
            if (triton_symbol_after(code, n, end, &b, &len))
                add_symbol(c, code + b, len);
            i = end - 1;
        }
    }
    const char *field = "kernel.source_code";
    if (!markers) {
        bool other = cuda ? strstr(src, "@triton.jit") != NULL : strstr(src, "__global__") != NULL;
        add_finding(c, LINT_KERNEL_TYPE, LINT_ERROR, field, 0,
                    "kernel_type is \"%s\" but source_code has no %s function%s",
                    cuda ? "cuda" : "triton", cuda ? "__global__" : "@triton.jit",
                    other ? (cuda ? " (it looks like a Triton kernel)" : " (it looks like a CUDA kernel)")
                          : "");
    } else if (!r->n_symbols && !c->nomem) {
        add_finding(c, LINT_KERNEL_TYPE, LINT_ERROR, field, first_line,
                    "%s found but no function name could be read after it",
                    cuda ? "__global__" : "@triton.jit");
    }
}

/* ---------------------------------------------------------------- L020: host code */

enum { HOST_MAIN, HOST_MAIN_GUARD, HOST_LAUNCH, HOST_PRINT, HOST_ALLOC, HOST_SYNC, HOST_BINDING };

static const char *const HOST_WHAT[] = {
    [HOST_MAIN] = "a main function",
    [HOST_MAIN_GUARD] = "an if __name__ == \"__main__\" block",
    [HOST_LAUNCH] = "a kernel launch",
    [HOST_PRINT] = "printing",
    [HOST_ALLOC] = "memory or tensor allocation, or a host-device copy",
    [HOST_SYNC] = "device synchronization",
    [HOST_BINDING] = "Python bindings",
};

/* Report one host-code hit: once per (line, category). */
static void host_hit(lint_ctx *c, const char *src, size_t off, int cat, const char *tok,
                     size_t toklen)
{
    int line = line_at(src, off);
    int64_t key = (int64_t)line * 16 + cat;
    for (int i = 0; i < c->n_host_seen; i++)
        if (c->host_seen[i] == key)
            return;
    if (c->n_host_seen == c->cap_host_seen) {
        int cap = c->cap_host_seen ? 2 * c->cap_host_seen : 16;
        int64_t *v = realloc(c->host_seen, (size_t)cap * sizeof *v);
        if (!v) {
            c->nomem = true;
            return;
        }
        c->host_seen = v;
        c->cap_host_seen = cap;
    }
    c->host_seen[c->n_host_seen++] = key;
    add_finding(c, LINT_HOST_CODE, LINT_ERROR, "kernel.source_code", line,
                "host code in source_code: %s (`%.*s`)", HOST_WHAT[cat],
                (int)(toklen > 40 ? 40 : toklen), tok);
}

static const char *const TORCH_FACTORIES[] = {
    "empty", "zeros", "ones", "full", "rand", "randn", "randint", "randperm", "arange",
    "linspace", "tensor", "as_tensor", "from_numpy", "empty_like", "zeros_like", "ones_like",
    "full_like", "rand_like", "randn_like", "empty_strided", NULL};

static void check_host_cuda(lint_ctx *c, const char *src, const char *code, size_t n)
{
    static const char *const PRINT_CALL[] = {"printf", "fprintf", "puts", "fputs", "putchar", NULL};
    static const char *const PRINT_WORD[] = {"cout", "cerr", "clog", NULL};
    static const char *const ALLOC_PREFIX[] = {"cudaMalloc", "cudaFree", "cudaMemcpy", "cudaMemset",
                                               "cudaHostAlloc", "cuMemAlloc", "cuMemcpy", NULL};
    static const char *const SYNC_WORD[] = {"cudaDeviceSynchronize", "cudaStreamSynchronize",
                                            "cudaEventSynchronize", "cudaDeviceReset",
                                            "cuCtxSynchronize", NULL};
    static const char *const LAUNCH_WORD[] = {"cudaLaunchKernel", "cudaLaunchKernelEx",
                                              "cudaLaunchCooperativeKernel", "cuLaunchKernel",
                                              "cuLaunchKernelEx", "cuLaunchCooperativeKernel", NULL};
    static const char *const BINDING_WORD[] = {"PYBIND11_MODULE", "TORCH_LIBRARY",
                                               "TORCH_LIBRARY_IMPL", NULL};
    static const char *const TORCH_SCOPES[] = {"torch", "at", NULL};
    for (size_t i = 0; i < n; i++) {
        if (code[i] == '<' && i + 2 < n && code[i + 1] == '<' && code[i + 2] == '<') {
            host_hit(c, src, i, HOST_LAUNCH, "<<<", 3);
            while (i + 1 < n && code[i + 1] == '<')
                i++;
            continue;
        }
        if (!is_ident_start(code[i]) || (i > 0 && is_ident(code[i - 1])))
            continue;
        size_t e = i;
        while (e < n && is_ident(code[e]))
            e++;
        const char *w = code + i;
        size_t wl = e - i;
        size_t k = skip_space(code, n, e);
        bool call = k < n && code[k] == '(';
        int cat = -1;
        size_t from = i;
        if (call && word_is(w, wl, "main"))
            cat = HOST_MAIN;
        else if ((call && word_in(w, wl, PRINT_CALL)) || word_in(w, wl, PRINT_WORD))
            cat = HOST_PRINT;
        else if (word_in(w, wl, SYNC_WORD))
            cat = HOST_SYNC;
        else if (word_in(w, wl, LAUNCH_WORD))
            cat = HOST_LAUNCH;
        else if (word_in(w, wl, BINDING_WORD))
            cat = HOST_BINDING;
        else if (word_in(w, wl, TORCH_FACTORIES) && scoped_by(code, i, "::", TORCH_SCOPES, &from))
            cat = HOST_ALLOC;
        else
            for (const char *const *p = ALLOC_PREFIX; *p; p++)
                if (wl >= strlen(*p) && !memcmp(w, *p, strlen(*p)))
                    cat = HOST_ALLOC;
        if (cat >= 0)
            host_hit(c, src, from, cat, src + from, e - from);
        i = e - 1;
    }
}

static void check_host_python(lint_ctx *c, const char *src, const char *code, size_t n)
{
    static const char *const PRINT_CALL[] = {"print", "device_print", "static_print", NULL};
    static const char *const TORCH[] = {"torch", NULL};
    static const char *const CUDA[] = {"cuda", NULL};
    for (size_t i = 0; i < n; i++) {
        if (!is_ident_start(code[i]) || (i > 0 && is_ident(code[i - 1])))
            continue;
        size_t e = i;
        while (e < n && is_ident(code[e]))
            e++;
        const char *w = code + i;
        size_t wl = e - i;
        size_t k = skip_space(code, n, e);
        size_t p = back_space(code, i);
        bool call = k < n && code[k] == '(';
        int cat = -1;
        size_t from = i, tl = wl;
        if (call && word_is(w, wl, "main")) {
            cat = HOST_MAIN;
        } else if (word_is(w, wl, "__name__") &&
                   ((k + 1 < n && code[k] == '=' && code[k + 1] == '=') ||
                    (p != SIZE_MAX && p > 0 && code[p] == '=' && code[p - 1] == '='))) {
            cat = HOST_MAIN_GUARD;
        } else if (call && word_in(w, wl, PRINT_CALL)) {
            cat = HOST_PRINT;
        } else if (call && word_in(w, wl, TORCH_FACTORIES) && scoped_by(code, i, ".", TORCH, &from)) {
            cat = HOST_ALLOC;
            tl = e - from;
        } else if (call && word_is(w, wl, "synchronize") && scoped_by(code, i, ".", CUDA, &from)) {
            cat = HOST_SYNC;
            size_t outer;
            if (scoped_by(code, from, ".", TORCH, &outer))
                from = outer;
            tl = e - from;
        } else if (k < n && code[k] == '[') {
            /* name[grid](...) */
            int depth = 0;
            size_t q = k;
            for (; q < n; q++) {
                depth += code[q] == '[';
                depth -= code[q] == ']';
                if (!depth)
                    break;
            }
            size_t after = q < n ? skip_space(code, n, q + 1) : n;
            if (after < n && code[after] == '(') {
                cat = HOST_LAUNCH;
                tl = after + 1 - i;
            }
        }
        if (cat >= 0)
            host_hit(c, src, from, cat, src + from, tl);
        i = e - 1;
    }
}

/* ---------------------------------------------------------------- L030/L031: fp16, bf16 includes */

/* Does some #include line of the comment-free view name a header whose base name is hdr? */
static bool includes_header(const char *nocom, size_t n, const char *hdr)
{
    size_t hl = strlen(hdr);
    for (size_t i = 0; i < n; i++) {
        if (i > 0 && nocom[i - 1] != '\n')
            continue;
        size_t k = i;
        while (k < n && (nocom[k] == ' ' || nocom[k] == '\t'))
            k++;
        if (k >= n || nocom[k] != '#')
            continue;
        k++;
        while (k < n && (nocom[k] == ' ' || nocom[k] == '\t'))
            k++;
        if (k + 7 > n || memcmp(nocom + k, "include", 7))
            continue;
        k += 7;
        while (k < n && (nocom[k] == ' ' || nocom[k] == '\t'))
            k++;
        if (k >= n || (nocom[k] != '<' && nocom[k] != '"'))
            continue;
        char close = nocom[k] == '<' ? '>' : '"';
        size_t b = ++k;
        while (k < n && nocom[k] != close && nocom[k] != '\n')
            k++;
        if (k >= n || nocom[k] != close)
            continue;
        size_t base = b;
        for (size_t j = b; j < k; j++)
            if (nocom[j] == '/')
                base = j + 1;
        if (k - base == hl && !memcmp(nocom + base, hdr, hl))
            return true;
    }
    return false;
}

static const char *const BUILTIN_TYPES[] = {
    "int", "unsigned", "signed", "long", "short", "char", "bool", "float", "double", "auto",
    "size_t", "ptrdiff_t", "int8_t", "int16_t", "int32_t", "int64_t", "uint8_t", "uint16_t",
    "uint32_t", "uint64_t", NULL};

/* Is the bare word "half" at [i, i+4) used as a type? It is when a declarator follows
 * ("half x", "half *p", "half& r"), or as a cast "(half)" or template argument "<half>". */
static bool half_as_type(const char *v, size_t n, size_t i)
{
    size_t k = skip_space(v, n, i + 4);
    size_t p = back_space(v, i);
    if (p != SIZE_MAX && (v[p] == '.' || (v[p] == '>' && p > 0 && v[p - 1] == '-')))
        return false;
    if (k < n && is_ident_start(v[k]))
        return true;
    if (k < n && (v[k] == '*' || v[k] == '&')) {
        while (k < n && (v[k] == '*' || v[k] == '&' || isspace((unsigned char)v[k])))
            k++;
        return k < n && (is_ident_start(v[k]) || v[k] == ')' || v[k] == ',');
    }
    if (p != SIZE_MAX && k < n && ((v[p] == '(' && v[k] == ')') ||
                                   ((v[p] == '<' || v[p] == ',') && (v[k] == '>' || v[k] == ','))))
        return true;
    return false;
}

static void check_half_includes(lint_ctx *c, const char *src, const char *code,
                                const char *nocom, size_t n)
{
    static const char *const FP16[] = {
        "__half", "__half2", "half2", "__float2half", "__float2half_rn", "__half2float",
        "__floats2half2_rn", "__float2half2_rn", "__half22float2", "__low2half", "__high2half",
        "__hadd", "__hsub", "__hmul", "__hdiv", "__hfma", "__hneg", "__hadd2", "__hsub2",
        "__hmul2", "__hfma2", "__hmax", "__hmin", "__heq", "__hlt", "__hgt", NULL};
    static const char *const BF16[] = {
        "__nv_bfloat16", "__nv_bfloat162", "nv_bfloat16", "nv_bfloat162", "__float2bfloat16",
        "__float2bfloat16_rn", "__bfloat162float", "__floats2bfloat162_rn",
        "__float22bfloat162_rn", "__bfloat1622float2", "__low2bfloat16", "__high2bfloat16", NULL};
    /* A kernel with "int half = n / 2" uses the word as a variable: then bare "half" is not
     * taken as the type anywhere in that source. */
    bool half_is_variable = false;
    for (size_t i = 0; i + 4 <= n; i++) {
        size_t s0;
        if (!memcmp(code + i, "half", 4) && (i == 0 || !is_ident(code[i - 1])) &&
            (i + 4 == n || !is_ident(code[i + 4])) &&
            ident_ending_at(code, back_space(code, i), &s0) &&
            word_in(code + s0, back_space(code, i) + 1 - s0, BUILTIN_TYPES))
            half_is_variable = true;
    }
    size_t fp16_at = SIZE_MAX, bf16_at = SIZE_MAX;
    size_t fp16_len = 0, bf16_len = 0;
    for (size_t i = 0; i < n; i++) {
        if (!is_ident_start(code[i]) || (i > 0 && is_ident(code[i - 1])))
            continue;
        size_t e = i;
        while (e < n && is_ident(code[e]))
            e++;
        const char *w = code + i;
        size_t wl = e - i;
        if (fp16_at == SIZE_MAX && (word_in(w, wl, FP16) || (word_is(w, wl, "half") &&
                                                          !half_is_variable && half_as_type(code, n, i)))) {
            fp16_at = i;
            fp16_len = wl;
        }
        if (bf16_at == SIZE_MAX && word_in(w, wl, BF16)) {
            bf16_at = i;
            bf16_len = wl;
        }
        i = e - 1;
    }
    if (fp16_at != SIZE_MAX && !includes_header(nocom, n, "cuda_fp16.h"))
        add_finding(c, LINT_FP16_INCLUDE, LINT_ERROR, "kernel.source_code",
                    line_at(src, fp16_at), "uses `%.*s` but does not #include <cuda_fp16.h>",
                    (int)fp16_len, src + fp16_at);
    if (bf16_at != SIZE_MAX && !includes_header(nocom, n, "cuda_bf16.h"))
        add_finding(c, LINT_BF16_INCLUDE, LINT_ERROR, "kernel.source_code",
                    line_at(src, bf16_at), "uses `%.*s` but does not #include <cuda_bf16.h>",
                    (int)bf16_len, src + bf16_at);
}

/* ---------------------------------------------------------------- L040: invocation example */

static bool mentions_word(const char *text, const char *word)
{
    size_t wl = strlen(word);
    for (const char *p = strstr(text, word); p; p = strstr(p + 1, word))
        if ((p == text || !is_ident(p[-1])) && !is_ident(p[wl]))
            return true;
    return false;
}

static void check_invocation(lint_ctx *c, const char *inv)
{
    lint_report *r = c->r;
    const char *field = "kernel.invocation_example";
    const char *p = inv;
    while (*p && isspace((unsigned char)*p))
        p++;
    if (!*p) {
        add_finding(c, LINT_INVOCATION, LINT_ERROR, field, 0,
                    "invocation_example is empty");
        return;
    }
    if (!r->n_symbols)
        return;  /* L010 already says why there is no symbol to look for */
    for (int i = 0; i < r->n_symbols; i++)
        if (mentions_word(inv, r->symbols[i]))
            return;
    char list[256] = "";
    for (int i = 0; i < r->n_symbols; i++)
        snprintf(list + strlen(list), sizeof list - strlen(list), "%s%s", i ? ", " : "",
                 r->symbols[i]);
    add_finding(c, LINT_INVOCATION, LINT_ERROR, field, 0,
                "invocation_example does not mention the kernel symbol (%s)", list);
}

/* ---------------------------------------------------------------- running a tool */

typedef struct {
    bool exec_failed;   /* the tool could not be started; exec_errno says why */
    int exec_errno;
    bool timed_out;
    bool lost;          /* the exit status could not be collected (SIGCHLD ignored?) */
    int exit_code;      /* -1 when killed by a signal */
    int signal;
    char *output;       /* stdout and stderr together, at most 64 KiB; the caller frees */
} tool_result;

/* Run argv (argv[0] an absolute path or a path relative to the caller's directory) inside
 * dir with stdin from /dev/null and stdout+stderr captured, killing its whole process group
 * after timeout_s seconds. Returns IR_OK when the outcome is in *res (including failure to
 * start), IR_ERR_IO when the capture file or process could not be set up, IR_ERR_NOMEM. */
static ir_status run_tool(const char *dir, char *const argv[], int timeout_s, tool_result *res)
{
    memset(res, 0, sizeof *res);
    char logpath[4096];
    snprintf(logpath, sizeof logpath, "%s/tool.log", dir);
    int log = open(logpath, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    int devnull = open("/dev/null", O_RDONLY | O_CLOEXEC);
    int errpipe[2] = {-1, -1};
    if (log < 0 || devnull < 0 || pipe2(errpipe, O_CLOEXEC) < 0) {
        if (log >= 0)
            close(log);
        if (devnull >= 0)
            close(devnull);
        return IR_ERR_IO;
    }
    pid_t pid = fork();
    if (pid == 0) {
        /* Child: only async-signal-safe calls from here to exec. */
        int e;
        setpgid(0, 0);
        if (chdir(dir) < 0 || dup2(devnull, 0) < 0 || dup2(log, 1) < 0 || dup2(log, 2) < 0) {
            e = errno;
        } else {
            execv(argv[0], argv);
            e = errno;
        }
        if (write(errpipe[1], &e, sizeof e) < 0)
            _exit(126);
        _exit(127);
    }
    close(errpipe[1]);
    close(log);
    close(devnull);
    if (pid < 0) {
        close(errpipe[0]);
        return IR_ERR_IO;
    }
    setpgid(pid, pid);  /* also done by the child; whichever runs first wins the race */
    int e;
    ssize_t got;
    do
        got = read(errpipe[0], &e, sizeof e);
    while (got < 0 && errno == EINTR);
    close(errpipe[0]);
    if (got == (ssize_t)sizeof e) {
        res->exec_failed = true;
        res->exec_errno = e;
    }

    double t0 = base_now_s();
    int status = 0;
    for (;;) {
        pid_t w = waitpid(pid, &status, WNOHANG);
        if (w == pid)
            break;
        if (w < 0 && errno != EINTR) {
            res->lost = true;
            break;
        }
        if (base_now_s() - t0 > (double)timeout_s) {
            kill(-pid, SIGKILL);
            kill(pid, SIGKILL);
            while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
                ;
            res->timed_out = true;
            break;
        }
        struct timespec nap = {0, 20 * 1000 * 1000};
        nanosleep(&nap, NULL);
    }
    if (WIFEXITED(status)) {
        res->exit_code = WEXITSTATUS(status);
    } else {
        res->exit_code = -1;
        res->signal = WIFSIGNALED(status) ? WTERMSIG(status) : 0;
    }

    FILE *f = fopen(logpath, "rb");
    size_t cap = 64 * 1024, len = 0;
    res->output = malloc(cap + 1);
    if (!res->output) {
        if (f)
            fclose(f);
        return IR_ERR_NOMEM;
    }
    if (f) {
        len = fread(res->output, 1, cap, f);
        fclose(f);
    }
    res->output[len] = '\0';
    return IR_OK;
}

/* Remove dir and the plain files in it (a tool may leave intermediate files behind). */
static void remove_dir(const char *dir)
{
    DIR *d = opendir(dir);
    if (d) {
        struct dirent *de;
        char p[4096];
        while ((de = readdir(d))) {
            if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, ".."))
                continue;
            snprintf(p, sizeof p, "%s/%s", dir, de->d_name);
            unlink(p);
        }
        closedir(d);
    }
    rmdir(dir);
}

static bool write_file(const char *dir, const char *name, const char *text)
{
    char p[4096];
    snprintf(p, sizeof p, "%s/%s", dir, name);
    FILE *f = fopen(p, "wb");
    if (!f)
        return false;
    size_t n = strlen(text);
    bool ok = fwrite(text, 1, n, f) == n;
    return fclose(f) == 0 && ok;
}

static bool executable_file(const char *p)
{
    struct stat st;
    return stat(p, &st) == 0 && S_ISREG(st.st_mode) && access(p, X_OK) == 0;
}

/* p made absolute (the tool runs inside the temporary directory); takes ownership of p. */
static char *absolute(char *p, bool *nomem)
{
    if (!p) {
        *nomem = true;
        return NULL;
    }
    char *abs = realpath(p, NULL);
    if (!abs)
        return p;  /* keep the name as found; it was executable a moment ago */
    free(p);
    return abs;
}

/* Resolve a tool: want NULL looks up dflt on PATH, then fallback (may be NULL); a name with a
 * '/' is taken as given; a bare name is looked up on PATH. Returns an absolute path the caller
 * frees, or NULL when not found (*nomem set when allocation failed). */
static char *find_tool(const char *want, const char *dflt, const char *fallback, bool *nomem)
{
    const char *name = want ? want : dflt;
    if (strchr(name, '/'))
        return executable_file(name) ? absolute(strdup(name), nomem) : NULL;
    const char *path = getenv("PATH");
    for (const char *s = path; s;) {
        const char *colon = strchr(s, ':');
        size_t dl = colon ? (size_t)(colon - s) : strlen(s);
        size_t need = (dl ? dl : 1) + 1 + strlen(name) + 1;
        char *cand = malloc(need);
        if (!cand) {
            *nomem = true;
            return NULL;
        }
        snprintf(cand, need, "%.*s/%s", (int)(dl ? dl : 1), dl ? s : ".", name);
        if (executable_file(cand))
            return absolute(cand, nomem);
        free(cand);
        s = colon ? colon + 1 : NULL;
    }
    if (!want && fallback && executable_file(fallback))
        return absolute(strdup(fallback), nomem);
    return NULL;
}

/* One line of tool output: does it report an error, and is it nvcc's closing error count? */
static bool error_line(const char *line)
{
    return strstr(line, "error") || strstr(line, "fatal") || strstr(line, "Error");
}

static bool count_line(const char *line)
{
    return isdigit((unsigned char)line[0]) && strstr(line, "detected in the compilation");
}

/* Join up to max_lines lines of out that report an error (all lines when none does) with
 * " | " into buf, leaving out nvcc's closing error count. */
static void summarize_output(const char *out, char *buf, size_t cap, int max_lines)
{
    char line[512];
    bool any_error = false;
    buf[0] = '\0';
    for (int pass = 0, taken = 0; pass < 2; pass++) {
        for (const char *s = out; *s && taken < max_lines;) {
            const char *e = strchr(s, '\n');
            size_t l = e ? (size_t)(e - s) : strlen(s);
            snprintf(line, sizeof line, "%.*s", (int)(l < sizeof line - 1 ? l : sizeof line - 1), s);
            size_t ll = strlen(line);
            while (ll && isspace((unsigned char)line[ll - 1]))
                line[--ll] = '\0';
            bool wanted = ll && !count_line(line) && (!any_error || error_line(line));
            if (pass == 0) {
                any_error |= wanted && error_line(line);
            } else if (wanted) {
                size_t bl = strlen(buf);
                snprintf(buf + bl, cap - bl, "%s%s", bl ? " | " : "", line);
                taken++;
            }
            s = e ? e + 1 : s + l;
        }
    }
    if (!buf[0])
        snprintf(buf, cap, "(no output)");
}

/* First "kernel.cu(N)" in nvcc's output, or 0. */
static int nvcc_line(const char *out, const char *file)
{
    size_t fl = strlen(file);
    for (const char *p = strstr(out, file); p; p = strstr(p + 1, file)) {
        if (p[fl] == '(' && isdigit((unsigned char)p[fl + 1])) {
            long v = strtol(p + fl + 1, NULL, 10);
            return v > 0 && v < 1000000000 ? (int)v : 0;
        }
    }
    return 0;
}

/* Make a private temporary directory; returns false (with dir untouched) on failure. */
static bool make_temp_dir(char *dir, size_t cap)
{
    const char *base = getenv("TMPDIR");
    if (!base || !*base)
        base = "/tmp";
    snprintf(dir, cap, "%s/amk-lint-XXXXXX", base);
    return mkdtemp(dir) != NULL;
}

static const char *const SRC_FIELD = "kernel.source_code";

static void check_nvcc(lint_ctx *c, const char *src)
{
    lint_report *r = c->r;
    const lint_opts *o = c->opts;
    lint_rule R = LINT_NVCC;
    r->tool = "nvcc";
    r->tool_state = LINT_TOOL_SKIPPED;
    if (!o->compile) {
        add_finding(c, R, LINT_SKIPPED, SRC_FIELD, 0,
                    "nvcc -c not run: the compile check is turned off (--no-compile)");
        return;
    }
    if (o->nvcc && !*o->nvcc) {
        add_finding(c, R, LINT_SKIPPED, SRC_FIELD, 0, "nvcc -c not run: no nvcc configured");
        return;
    }
    bool nomem = false;
    char *nvcc = find_tool(o->nvcc, "nvcc", "/usr/local/cuda/bin/nvcc", &nomem);
    if (!nvcc) {
        c->nomem |= nomem;
        if (o->nvcc)
            add_finding(c, R, LINT_SKIPPED, SRC_FIELD, 0,
                        "nvcc -c not run: nvcc '%s' not found or not executable", o->nvcc);
        else
            add_finding(c, R, LINT_SKIPPED, SRC_FIELD, 0,
                        "nvcc -c not run: nvcc not found (looked on PATH and in "
                        "/usr/local/cuda/bin)");
        return;
    }
    char dir[4096];
    if (!make_temp_dir(dir, sizeof dir)) {
        add_finding(c, R, LINT_SKIPPED, SRC_FIELD, 0,
                    "nvcc -c not run: cannot create a temporary directory: %s", strerror(errno));
        free(nvcc);
        return;
    }
    int limit = o->compile_timeout_s > 0 ? o->compile_timeout_s : LINT_COMPILE_TIMEOUT_S;
    char *argv[] = {nvcc, "-c", "-o", "kernel.o", "kernel.cu", NULL};
    tool_result res = {0};
    ir_status st = IR_ERR_IO;
    if (write_file(dir, "kernel.cu", src))
        st = run_tool(dir, argv, limit, &res);
    if (st == IR_ERR_NOMEM) {
        c->nomem = true;
    } else if (st != IR_OK) {
        add_finding(c, R, LINT_SKIPPED, SRC_FIELD, 0,
                    "nvcc -c not run: cannot set up the temporary directory %s", dir);
    } else if (res.exec_failed || res.lost) {
        add_finding(c, R, LINT_SKIPPED, SRC_FIELD, 0, "nvcc -c not run: %s %s: %s",
                    res.lost ? "lost track of" : "cannot start", nvcc,
                    res.lost ? "exit status unavailable" : strerror(res.exec_errno));
    } else if (res.timed_out) {
        r->tool_state = LINT_TOOL_FAILED;
        add_finding(c, R, LINT_ERROR, SRC_FIELD, 0,
                    "nvcc -c did not finish within %d s (killed)", limit);
    } else if (res.exit_code == 0) {
        r->tool_state = LINT_TOOL_PASSED;
    } else {
        /* Tell a broken nvcc from a broken kernel: an empty kernel must compile. */
        tool_result probe = {0};
        char *pargv[] = {nvcc, "-c", "-o", "probe.o", "probe.cu", NULL};
        bool works = write_file(dir, "probe.cu", "__global__ void amk_lint_probe(void) {}\n") &&
                     run_tool(dir, pargv, limit, &probe) == IR_OK && !probe.exec_failed &&
                     !probe.lost && !probe.timed_out && probe.exit_code == 0;
        free(probe.output);
        char text[400];
        summarize_output(res.output, text, sizeof text, 3);
        if (!works) {
            add_finding(c, R, LINT_SKIPPED, SRC_FIELD, 0,
                        "nvcc -c not run: %s cannot compile even an empty kernel here: %s", nvcc,
                        text);
        } else {
            r->tool_state = LINT_TOOL_FAILED;
            if (res.exit_code < 0)
                add_finding(c, R, LINT_ERROR, SRC_FIELD, 0,
                            "nvcc -c was killed by signal %d: %s", res.signal, text);
            else
                add_finding(c, R, LINT_ERROR, SRC_FIELD, nvcc_line(res.output, "kernel.cu"),
                            "nvcc -c failed (exit %d): %s", res.exit_code, text);
        }
    }
    free(res.output);
    remove_dir(dir);
    free(nvcc);
}

/* The parser run by python3: prints "AMK-SYNTAX:<line>:<message>" and exits 3 when the source
 * is not valid Python; any other outcome means the parser itself did not run. */
static const char PY_PARSE[] =
    "import ast, sys\n"
    "try:\n"
    "    ast.parse(open(sys.argv[1], encoding='utf-8').read(), 'kernel.py')\n"
    "except SyntaxError as e:\n"
    "    print('AMK-SYNTAX:%d:%s' % (e.lineno or 0, e.msg)); sys.exit(3)\n"
    "except (ValueError, UnicodeDecodeError, RecursionError, MemoryError) as e:\n"
    "    print('AMK-SYNTAX:0:%s: %s' % (type(e).__name__, e)); sys.exit(3)\n";

static void check_triton_parse(lint_ctx *c, const char *src)
{
    lint_report *r = c->r;
    const lint_opts *o = c->opts;
    lint_rule R = LINT_TRITON_PARSE;
    r->tool = "python3";
    r->tool_state = LINT_TOOL_SKIPPED;
    if (!o->parse) {
        add_finding(c, R, LINT_SKIPPED, SRC_FIELD, 0,
                    "python3 syntax parse not run: turned off");
        return;
    }
    if (o->python && !*o->python) {
        add_finding(c, R, LINT_SKIPPED, SRC_FIELD, 0,
                    "python3 syntax parse not run: no python3 configured");
        return;
    }
    bool nomem = false;
    char *py = find_tool(o->python, "python3", NULL, &nomem);
    if (!py) {
        c->nomem |= nomem;
        add_finding(c, R, LINT_SKIPPED, SRC_FIELD, 0,
                    "python3 syntax parse not run: %s%s%s", o->python ? "'" : "",
                    o->python ? o->python : "python3 not found on PATH",
                    o->python ? "' not found or not executable" : "");
        return;
    }
    char dir[4096];
    if (!make_temp_dir(dir, sizeof dir)) {
        add_finding(c, R, LINT_SKIPPED, SRC_FIELD, 0,
                    "python3 syntax parse not run: cannot create a temporary directory: %s",
                    strerror(errno));
        free(py);
        return;
    }
    int limit = o->parse_timeout_s > 0 ? o->parse_timeout_s : LINT_PARSE_TIMEOUT_S;
    char *argv[] = {py, "-I", "-B", "-c", (char *)PY_PARSE, "kernel.py", NULL};
    tool_result res = {0};
    ir_status st = IR_ERR_IO;
    if (write_file(dir, "kernel.py", src))
        st = run_tool(dir, argv, limit, &res);
    const char *mark = res.output ? strstr(res.output, "AMK-SYNTAX:") : NULL;
    if (st == IR_ERR_NOMEM) {
        c->nomem = true;
    } else if (st != IR_OK) {
        add_finding(c, R, LINT_SKIPPED, SRC_FIELD, 0,
                    "python3 syntax parse not run: cannot set up the temporary directory %s", dir);
    } else if (res.exec_failed || res.lost) {
        add_finding(c, R, LINT_SKIPPED, SRC_FIELD, 0,
                    "python3 syntax parse not run: %s %s: %s",
                    res.lost ? "lost track of" : "cannot start", py,
                    res.lost ? "exit status unavailable" : strerror(res.exec_errno));
    } else if (res.timed_out) {
        r->tool_state = LINT_TOOL_FAILED;
        add_finding(c, R, LINT_ERROR, SRC_FIELD, 0,
                    "python3 syntax parse did not finish within %d s (killed)", limit);
    } else if (res.exit_code == 0) {
        r->tool_state = LINT_TOOL_PASSED;
    } else if (res.exit_code == 3 && mark) {
        r->tool_state = LINT_TOOL_FAILED;
        char *endp;
        long line = strtol(mark + 11, &endp, 10);
        const char *msg = *endp == ':' ? endp + 1 : endp;
        size_t ml = strcspn(msg, "\n");
        add_finding(c, R, LINT_ERROR, SRC_FIELD, line > 0 && line < 1000000000 ? (int)line : 0,
                    "not valid Python: %.*s", (int)(ml > 300 ? 300 : ml), msg);
    } else {
        char text[400];
        summarize_output(res.output, text, sizeof text, 2);
        add_finding(c, R, LINT_SKIPPED, SRC_FIELD, 0,
                    "python3 syntax parse not run: %s exited with %d: %s", py, res.exit_code, text);
    }
    free(res.output);
    remove_dir(dir);
    free(py);
}

/* ---------------------------------------------------------------- L001-L003: the JSON shape */

static const char *json_type_name(const cJSON *v)
{
    if (cJSON_IsString(v)) return "a string";
    if (cJSON_IsNumber(v)) return "a number";
    if (cJSON_IsBool(v)) return "a boolean";
    if (cJSON_IsNull(v)) return "null";
    if (cJSON_IsArray(v)) return "an array";
    if (cJSON_IsObject(v)) return "an object";
    return "an unknown value";
}

/* Check obj's keys against allowed (NULL-terminated): unknown and duplicate keys are L002. */
static void check_keys(lint_ctx *c, const cJSON *obj, const char *path, const char *const *allowed)
{
    for (const cJSON *it = obj->child; it; it = it->next) {
        const char *k = it->string ? it->string : "";
        bool known = false;
        for (const char *const *a = allowed; *a; a++)
            known |= !strcmp(k, *a);
        if (!known) {
            add_finding(c, LINT_FIELDS, LINT_ERROR, path, 0,
                        "unknown key \"%.64s\"%s%s", k, *path ? " in " : " at the top level",
                        path);
            continue;
        }
        for (const cJSON *prev = obj->child; prev != it; prev = prev->next)
            if (prev->string && !strcmp(prev->string, k)) {
                add_finding(c, LINT_FIELDS, LINT_ERROR, path, 0,
                            "duplicate key \"%s\"%s%s", k, *path ? " in " : " at the top level",
                            path);
                break;
            }
    }
}

/* The string member key of obj, or NULL after an L002 finding (missing, wrong type, empty when
 * nonempty is asked). */
static const char *string_field(lint_ctx *c, const cJSON *obj, const char *key, const char *path,
                                bool nonempty)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, key);
    if (!v) {
        add_finding(c, LINT_FIELDS, LINT_ERROR, path, 0,
                    "missing required field %s", path);
        return NULL;
    }
    if (!cJSON_IsString(v) || !v->valuestring) {
        add_finding(c, LINT_FIELDS, LINT_ERROR, path, 0,
                    "%s must be a string, got %s", path, json_type_name(v));
        return NULL;
    }
    if (nonempty) {
        const char *p = v->valuestring;
        while (*p && isspace((unsigned char)*p))
            p++;
        if (!*p) {
            add_finding(c, LINT_FIELDS, LINT_ERROR, path, 0, "%s is empty", path);
            return NULL;
        }
    }
    return v->valuestring;
}

/* JSON strings may carry \u0000, which cJSON cuts the string at: a source would silently lose
 * its tail. Returns the offset of the first such escape, or SIZE_MAX. */
static size_t find_nul_escape(const char *t, size_t n)
{
    bool in_str = false;
    for (size_t i = 0; i < n; i++) {
        if (!in_str) {
            in_str = t[i] == '"';
        } else if (t[i] == '"') {
            in_str = false;
        } else if (t[i] == '\\' && i + 1 < n) {
            if (t[i + 1] == 'u' && i + 5 < n && !memcmp(t + i + 2, "0000", 4))
                return i;
            i++;
        }
    }
    return SIZE_MAX;
}

static void check_name(lint_ctx *c, const char *name, const char *path)
{
    if (!path)
        return;
    const char *base = strrchr(path, '/');
    base = base ? base + 1 : path;
    size_t bl = strlen(base);
    if (bl <= 5 || strcmp(base + bl - 5, ".json"))
        return;
    if (strlen(name) != bl - 5 || memcmp(name, base, bl - 5))
        add_finding(c, LINT_NAME, LINT_ERROR, "name", 0,
                    "name \"%.128s\" does not match the file name %s (expected \"%.*s\")", name,
                    base, (int)(bl - 5 > 128 ? 128 : bl - 5), base);
}

/* ---------------------------------------------------------------- the whole artifact */

static void lint_source(lint_ctx *c, const char *src, const char *inv)
{
    size_t n = strlen(src);
    char *code = malloc(n + 1), *nocom = malloc(n + 1);
    if (!code || !nocom) {
        free(code);
        free(nocom);
        c->nomem = true;
        return;
    }
    memcpy(code, src, n + 1);
    memcpy(nocom, src, n + 1);
    bool cuda = c->r->kind == LINT_KIND_CUDA;
    if (cuda)
        strip_c(src, n, code, nocom);
    else
        strip_py(src, n, code, nocom);
    check_kernel_type(c, src, code, n);
    if (cuda) {
        check_host_cuda(c, src, code, n);
        check_half_includes(c, src, code, nocom, n);
    } else {
        check_host_python(c, src, code, n);
    }
    if (inv)
        check_invocation(c, inv);
    free(code);
    free(nocom);
    if (cuda)
        check_nvcc(c, src);
    else
        check_triton_parse(c, src);
}

static void lint_json(lint_ctx *c, const char *text, size_t len, const char *path)
{
    lint_report *r = c->r;
    const char *end = NULL;
    cJSON *root = cJSON_ParseWithLengthOpts(text, len, &end, 0);
    if (!root) {
        size_t off = end && end >= text && end <= text + len ? (size_t)(end - text) : 0;
        size_t col = 1;
        for (size_t i = off; i > 0 && text[i - 1] != '\n'; i--)
            col++;
        int line = line_at(text, off);
        add_finding(c, LINT_JSON, LINT_ERROR, "", line,
                    len ? "not valid JSON: syntax error at line %d, column %zu"
                        : "not valid JSON: the file is empty (line %d, column %zu)",
                    line, col);
        return;
    }
    size_t off = end && end >= text && end <= text + len ? (size_t)(end - text) : len;
    while (off < len && isspace((unsigned char)text[off]))
        off++;
    if (off < len) {
        int line = line_at(text, off);
        add_finding(c, LINT_JSON, LINT_ERROR, "", line,
                    "not valid JSON: unexpected data after the top-level value at line %d", line);
        cJSON_Delete(root);
        return;
    }
    if (!cJSON_IsObject(root)) {
        add_finding(c, LINT_FIELDS, LINT_ERROR, "", 0,
                    "the top-level value must be an object, got %s", json_type_name(root));
        cJSON_Delete(root);
        return;
    }
    size_t nul = find_nul_escape(text, len);
    if (nul != SIZE_MAX)
        add_finding(c, LINT_FIELDS, LINT_ERROR, "", line_at(text, nul),
                    "a string holds \\u0000 (NUL), which a source file cannot hold");

    static const char *const TOP[] = {"name", "kernel", NULL};
    static const char *const KERNEL[] = {"kernel_type", "source_code", "invocation_example", NULL};
    check_keys(c, root, "", TOP);
    const char *name = string_field(c, root, "name", "name", true);
    if (name) {
        if (!(r->name = strdup(name)))
            c->nomem = true;
        check_name(c, name, path);
    }
    const cJSON *k = cJSON_GetObjectItemCaseSensitive(root, "kernel");
    if (!k) {
        add_finding(c, LINT_FIELDS, LINT_ERROR, "kernel", 0,
                    "missing required field kernel");
    } else if (!cJSON_IsObject(k)) {
        add_finding(c, LINT_FIELDS, LINT_ERROR, "kernel", 0,
                    "kernel must be an object, got %s", json_type_name(k));
    } else {
        check_keys(c, k, "kernel", KERNEL);
        const char *type = string_field(c, k, "kernel_type", "kernel.kernel_type", false);
        const char *src = string_field(c, k, "source_code", "kernel.source_code", true);
        const char *inv = string_field(c, k, "invocation_example", "kernel.invocation_example",
                                       false);
        if (type) {
            if (!strcmp(type, "cuda"))
                r->kind = LINT_KIND_CUDA;
            else if (!strcmp(type, "triton"))
                r->kind = LINT_KIND_TRITON;
            else
                add_finding(c, LINT_FIELDS, LINT_ERROR, "kernel.kernel_type", 0,
                            "kernel.kernel_type must be \"cuda\" or \"triton\", got \"%.64s\"",
                            type);
        }
        if (r->kind != LINT_KIND_UNKNOWN) {
            r->tool = r->kind == LINT_KIND_CUDA ? "nvcc" : "python3";
            if (src)
                lint_source(c, src, inv);
            else if (inv)
                check_invocation(c, inv);
        } else if (inv) {
            check_invocation(c, inv);
        }
    }
    cJSON_Delete(root);
}

/* Contract in bench.h. */
ir_status lint_text(const char *text, size_t len, const char *path,
                    const lint_opts *opts, lint_report *out, ir_error *err)
{
    memset(out, 0, sizeof *out);
    out->pass = true;
    if (!(out->path = strdup(path ? path : "-")))
        return ir_fail(err, IR_ERR_NOMEM, path ? path : "-", "out of memory");
    lint_opts dflt;
    if (!opts) {
        lint_opts_default(&dflt);
        opts = &dflt;
    }
    lint_ctx c = {.r = out, .opts = opts};
    lint_json(&c, text ? text : "", text ? len : 0, path);
    add_cut_notes(&c);
    free(c.host_seen);
    if (c.nomem)
        return ir_fail(err, IR_ERR_NOMEM, out->path, "out of memory while linting");
    return IR_OK;
}

/* Contract in bench.h. */
ir_status lint_file(const char *path, const lint_opts *opts, lint_report *out,
                    ir_error *err)
{
    memset(out, 0, sizeof *out);
    if (!(out->path = strdup(path)))
        return ir_fail(err, IR_ERR_NOMEM, path, "out of memory");
    char *text = NULL, why[256];
    size_t len = 0;
    switch (base_read_file(path, LINT_MAX_FILE, false, &text, &len, why, sizeof why)) {
    case BASE_FILE_OK:
        break;
    case BASE_FILE_NO_MEMORY:
        return ir_fail(err, IR_ERR_NOMEM, path, "%s", why);
    default:   /* unreadable, not a regular file, or over the cap: IO, as lint.h says */
        return ir_fail(err, IR_ERR_IO, path, "%s", why);
    }
    lint_report_free(out);
    ir_status s = lint_text(text, len, path, opts, out, err);
    free(text);
    return s;
}
