/*
 * fuzz_verify.c - libFuzzer harness for amk-verify end to end: parse a program, then decide
 * every obligation with small solver limits (h100 when the program names no target). Any
 * verdict is fine; a crash, a sanitizer report or a verdict outside the four is not.
 */
#include <stdint.h>
#include <stdlib.h>

#include "ir/amk_ir.h"
#include "verify/verify.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    ir_error err = {0};
    ir_program *p = NULL;
    if (ir_read_json((const char *)data, size, NULL, &p, &err) != IR_OK)
        return 0;
    verify_opts o;
    verify_opts_default(&o);
    o.timeout_ms = 200;
    o.rlimit = 2000000;
    if (!p->has_target)
        o.target = ir_target_builtin("h100");
    verify_result r;
    if (verify_program(p, &o, &r, &err) == IR_OK) {
        if (r.verdict > VERIFY_UNKNOWN)
            abort();
        if (r.verdict == VERIFY_PROVED && !r.certificate_json)
            abort();
        verify_result_free(&r);
    }
    ir_program_free(p);
    verify_release_memory();
    return 0;
}
