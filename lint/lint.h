/*
 * lint.h - the lint/ part: static checks for single-kernel artifacts (`amk lint-kernel`,
 * SPEC.md section 9).
 *
 * What this part owns: reading one artifact file, the textual checks of its CUDA or Triton
 * source, and the optional tool checks (nvcc -c, python3's ast.parse) run in a private
 * temporary directory under a time limit. It runs no program, loads no model and needs no GPU;
 * it depends on ir/ only for the status and error record.
 *
 * An artifact is one JSON file
 *   {"name": N, "kernel": {"kernel_type": "cuda"|"triton", "source_code": S,
 *                          "invocation_example": I}}
 * and linting it yields a list of findings, each naming a stable rule id. An artifact PASSes
 * when no finding has severity BENCH_LINT_ERROR; skipped checks never count as passed checks
 * but do not fail the artifact either, and they always appear in the findings.
 *
 * Conventions as in ir/amk_ir.h: every function that can fail returns an ir_status and fills an
 * ir_error when given one; nothing here prints, exits or aborts. A report owns everything it
 * points to except `tool` (a static string); bench_lint_report_free releases it.
 */
#ifndef AMK_LINT_H
#define AMK_LINT_H

#include <stdbool.h>
#include <stddef.h>

#include "ir/amk_ir.h"

#ifndef BENCH_LINT_COMPILE_TIMEOUT_S
#define BENCH_LINT_COMPILE_TIMEOUT_S 120  /* default time limit of one nvcc -c */
#endif
#ifndef BENCH_LINT_PARSE_TIMEOUT_S
#define BENCH_LINT_PARSE_TIMEOUT_S 30     /* default time limit of one python3 syntax parse */
#endif
#ifndef BENCH_LINT_MAX_FILE
#define BENCH_LINT_MAX_FILE ((size_t)64 << 20)  /* larger artifact files are refused (IO) */
#endif
#ifndef BENCH_LINT_MAX_PER_RULE
#define BENCH_LINT_MAX_PER_RULE 20        /* findings kept per rule; one more says how many were cut */
#endif

/* The rules, in report order. bench_lint_rule_id() gives the stable string id. */
typedef enum {
    BENCH_LINT_JSON = 0,        /* L001-json: the file is valid JSON with an object at the top */
    BENCH_LINT_FIELDS,          /* L002-fields: every field present with the right type, no others */
    BENCH_LINT_NAME,            /* L003-name: name equals the file's base name without .json */
    BENCH_LINT_KERNEL_TYPE,     /* L010-kernel-type: cuda has a __global__, triton an @triton.jit function */
    BENCH_LINT_HOST_CODE,       /* L020-host-code: no main, launch, printing, allocation or device sync */
    BENCH_LINT_FP16_INCLUDE,    /* L030-fp16-include: half types need <cuda_fp16.h> */
    BENCH_LINT_BF16_INCLUDE,    /* L031-bf16-include: __nv_bfloat16 needs <cuda_bf16.h> */
    BENCH_LINT_INVOCATION,      /* L040-invocation: non-empty and mentions a kernel symbol */
    BENCH_LINT_NVCC,            /* L050-nvcc: nvcc -c accepts the CUDA source in time */
    BENCH_LINT_TRITON_PARSE,    /* L051-triton-parse: python3's ast.parse accepts the Triton source */
    BENCH_LINT_N_RULES
} bench_lint_rule;

typedef enum {
    BENCH_LINT_ERROR = 0,       /* the artifact FAILs */
    BENCH_LINT_SKIPPED          /* the check did not run (tool missing, unusable or turned off) */
} bench_lint_severity;

typedef enum {
    BENCH_LINT_KIND_UNKNOWN = 0,  /* kernel_type absent or not one of the two names */
    BENCH_LINT_KIND_CUDA,
    BENCH_LINT_KIND_TRITON
} bench_lint_kind;

/* What became of the tool check (nvcc for CUDA, python3 for Triton) of one artifact. */
typedef enum {
    BENCH_LINT_TOOL_NOT_RUN = 0,  /* fields too broken to try */
    BENCH_LINT_TOOL_PASSED,
    BENCH_LINT_TOOL_FAILED,
    BENCH_LINT_TOOL_SKIPPED       /* see the BENCH_LINT_SKIPPED finding for why */
} bench_lint_tool_state;

typedef struct {
    bench_lint_rule rule;
    bench_lint_severity severity;
    char field[32];     /* what line counts in: "" the file itself, else a JSON path such as
                           "kernel.source_code" */
    int line;           /* 1-based line within field (within the file when field is ""), 0: none */
    char message[512];  /* one sentence; tool output lines are joined with " | " */
} bench_lint_finding;

typedef struct {
    char *path;                 /* the file as named by the caller (never NULL after a lint call) */
    char *name;                 /* the artifact's "name" when it is a string, else NULL */
    bench_lint_kind kind;
    char **symbols;             /* kernel symbols found in source_code: __global__ or
                                   @triton.jit function names, in source order */
    int n_symbols;
    bench_lint_finding *findings;
    int n_findings;
    int cap_findings;
    const char *tool;           /* "nvcc", "python3", or NULL when kind is unknown (static string) */
    bench_lint_tool_state tool_state;
    bool pass;                  /* no BENCH_LINT_ERROR finding */
} bench_lint_report;

typedef struct {
    bool compile;           /* run nvcc -c on CUDA sources; false reports L050 as skipped */
    bool parse;             /* run python3's parser on Triton sources; false reports L051 skipped */
    const char *nvcc;       /* nvcc to run; NULL: "nvcc" on PATH, then /usr/local/cuda/bin/nvcc;
                               "": none (skipped) */
    const char *python;     /* python3 to run; NULL: "python3" on PATH; "": none (skipped) */
    int compile_timeout_s;  /* <= 0: BENCH_LINT_COMPILE_TIMEOUT_S */
    int parse_timeout_s;    /* <= 0: BENCH_LINT_PARSE_TIMEOUT_S */
} bench_lint_opts;

/* Fill o with the defaults: both tool checks on, tools looked up, default time limits. */
void bench_lint_opts_default(bench_lint_opts *o);

/* Lint the artifact file at path (opts NULL: the defaults). Returns IR_OK when the file was
 * read, whatever the verdict (out->pass); IR_ERR_IO when it cannot be read (missing, a
 * directory, larger than BENCH_LINT_MAX_FILE); IR_ERR_NOMEM. Invalid JSON is not an error
 * here but an L001 finding. In every case *out must be released with bench_lint_report_free. */
ir_status bench_lint_file(const char *path, const bench_lint_opts *opts, bench_lint_report *out,
                          ir_error *err);

/* Lint len bytes of artifact text; path is only used for the L003 name check and the report
 * (NULL: no name check). Returns IR_OK or IR_ERR_NOMEM; *out as for bench_lint_file. */
ir_status bench_lint_text(const char *text, size_t len, const char *path,
                          const bench_lint_opts *opts, bench_lint_report *out, ir_error *err);

/* Release everything r owns and zero it; r may be NULL or already freed. */
void bench_lint_report_free(bench_lint_report *r);

/* Stable id such as "L020-host-code"; "L???" for a value out of range. */
const char *bench_lint_rule_id(bench_lint_rule r);
/* One-line description of what the rule requires (for --help and SARIF rule metadata). */
const char *bench_lint_rule_text(bench_lint_rule r);
/* "error" or "skipped". */
const char *bench_lint_severity_name(bench_lint_severity s);
/* "cuda", "triton" or "unknown". */
const char *bench_lint_kind_name(bench_lint_kind k);
/* "not run", "passed", "failed" or "skipped". */
const char *bench_lint_tool_state_name(bench_lint_tool_state s);

#endif /* AMK_LINT_H */
