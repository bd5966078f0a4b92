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
 * when no finding has severity LINT_ERROR; skipped checks never count as passed checks
 * but do not fail the artifact either, and they always appear in the findings.
 *
 * Conventions as in ir/amk_ir.h: every function that can fail returns an ir_status and fills an
 * ir_error when given one; nothing here prints, exits or aborts. A report owns everything it
 * points to except `tool` (a static string); lint_report_free releases it.
 */
#ifndef AMK_LINT_H
#define AMK_LINT_H

#include <stdbool.h>
#include <stddef.h>

#include "ir/amk_ir.h"

#ifndef LINT_COMPILE_TIMEOUT_S
#define LINT_COMPILE_TIMEOUT_S 120  /* default time limit of one nvcc -c */
#endif
#ifndef LINT_PARSE_TIMEOUT_S
#define LINT_PARSE_TIMEOUT_S 30     /* default time limit of one python3 syntax parse */
#endif
#ifndef LINT_MAX_FILE
#define LINT_MAX_FILE ((size_t)64 << 20)  /* larger artifact files are refused (IO) */
#endif
#ifndef LINT_MAX_PER_RULE
#define LINT_MAX_PER_RULE 20        /* findings kept per rule; one more says how many were cut */
#endif

/* The rules, in report order. lint_rule_id() gives the stable string id. */
typedef enum {
    LINT_JSON = 0,        /* L001-json: the file is valid JSON with an object at the top */
    LINT_FIELDS,          /* L002-fields: every field present with the right type, no others */
    LINT_NAME,            /* L003-name: name equals the file's base name without .json */
    LINT_KERNEL_TYPE,     /* L010-kernel-type: cuda has a __global__, triton an @triton.jit function */
    LINT_HOST_CODE,       /* L020-host-code: no main, launch, printing, allocation or device sync */
    LINT_FP16_INCLUDE,    /* L030-fp16-include: half types need <cuda_fp16.h> */
    LINT_BF16_INCLUDE,    /* L031-bf16-include: __nv_bfloat16 needs <cuda_bf16.h> */
    LINT_INVOCATION,      /* L040-invocation: non-empty and mentions a kernel symbol */
    LINT_NVCC,            /* L050-nvcc: nvcc -c accepts the CUDA source in time */
    LINT_TRITON_PARSE,    /* L051-triton-parse: python3's ast.parse accepts the Triton source */
    LINT_N_RULES
} lint_rule;

typedef enum {
    LINT_ERROR = 0,       /* the artifact FAILs */
    LINT_SKIPPED          /* the check did not run (tool missing, unusable or turned off) */
} lint_severity;

typedef enum {
    LINT_KIND_UNKNOWN = 0,  /* kernel_type absent or not one of the two names */
    LINT_KIND_CUDA,
    LINT_KIND_TRITON
} lint_kind;

/* What became of the tool check (nvcc for CUDA, python3 for Triton) of one artifact. */
typedef enum {
    LINT_TOOL_NOT_RUN = 0,  /* fields too broken to try */
    LINT_TOOL_PASSED,
    LINT_TOOL_FAILED,
    LINT_TOOL_SKIPPED       /* see the LINT_SKIPPED finding for why */
} lint_tool_state;

typedef struct {
    lint_rule rule;
    lint_severity severity;
    char field[32];     /* what line counts in: "" the file itself, else a JSON path such as
                           "kernel.source_code" */
    int line;           /* 1-based line within field (within the file when field is ""), 0: none */
    char message[512];  /* one sentence; tool output lines are joined with " | " */
} lint_finding;

typedef struct {
    char *path;                 /* the file as named by the caller (never NULL after a lint call) */
    char *name;                 /* the artifact's "name" when it is a string, else NULL */
    lint_kind kind;
    char **symbols;             /* kernel symbols found in source_code: __global__ or
                                   @triton.jit function names, in source order */
    int n_symbols;
    lint_finding *findings;
    int n_findings;
    int cap_findings;
    const char *tool;           /* "nvcc", "python3", or NULL when kind is unknown (static string) */
    lint_tool_state tool_state;
    bool pass;                  /* no LINT_ERROR finding */
} lint_report;

typedef struct {
    bool compile;           /* run nvcc -c on CUDA sources; false reports L050 as skipped */
    bool parse;             /* run python3's parser on Triton sources; false reports L051 skipped */
    const char *nvcc;       /* nvcc to run; NULL: "nvcc" on PATH, then /usr/local/cuda/bin/nvcc;
                               "": none (skipped) */
    const char *python;     /* python3 to run; NULL: "python3" on PATH; "": none (skipped) */
    int compile_timeout_s;  /* <= 0: LINT_COMPILE_TIMEOUT_S */
    int parse_timeout_s;    /* <= 0: LINT_PARSE_TIMEOUT_S */
} lint_opts;

/* Fill o with the defaults: both tool checks on, tools looked up, default time limits. */
void lint_opts_default(lint_opts *o);

/* Lint the artifact file at path (opts NULL: the defaults). Returns IR_OK when the file was
 * read, whatever the verdict (out->pass); IR_ERR_IO when it cannot be read (missing, a
 * directory, larger than LINT_MAX_FILE); IR_ERR_NOMEM. Invalid JSON is not an error
 * here but an L001 finding. In every case *out must be released with lint_report_free. */
ir_status lint_file(const char *path, const lint_opts *opts, lint_report *out,
                    ir_error *err);

/* Lint len bytes of artifact text; path is only used for the L003 name check and the report
 * (NULL: no name check). Returns IR_OK or IR_ERR_NOMEM; *out as for lint_file. */
ir_status lint_text(const char *text, size_t len, const char *path,
                    const lint_opts *opts, lint_report *out, ir_error *err);

/* Release everything r owns and zero it; r may be NULL or already freed. */
void lint_report_free(lint_report *r);

/* Stable id such as "L020-host-code"; "L???" for a value out of range. */
const char *lint_rule_id(lint_rule r);
/* One-line description of what the rule requires (for --help and SARIF rule metadata). */
const char *lint_rule_text(lint_rule r);
/* "error" or "skipped". */
const char *lint_severity_name(lint_severity s);
/* "cuda", "triton" or "unknown". */
const char *lint_kind_name(lint_kind k);
/* "not run", "passed", "failed" or "skipped". */
const char *lint_tool_state_name(lint_tool_state s);

#endif /* AMK_LINT_H */
