/*
 * fuzz_lint.c - libFuzzer harness for the kernel-artifact linter (amk lint-kernel) on any bytes:
 * a report or a clean error, never a crash. The tool checks (nvcc, python3) are off, so every
 * input stays in process; a report's pass flag agrees with its findings.
 */
#include <stdint.h>
#include <stdlib.h>

#include "lint/lint.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    lint_opts o;
    lint_opts_default(&o);
    o.compile = false;
    o.parse = false;
    o.nvcc = "";
    o.python = "";
    lint_report r;
    ir_error err = {0};
    if (lint_text((const char *)data, size, "fuzz.json", &o, &r, &err) == IR_OK) {
        bool any_error = false;
        for (int i = 0; i < r.n_findings; i++)
            any_error |= r.findings[i].severity == LINT_ERROR;
        if (any_error == r.pass)
            abort();   /* pass means no error finding */
        lint_report_free(&r);
    }
    return 0;
}
