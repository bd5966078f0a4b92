/*
 * fuzz_cert.c - libFuzzer harness for the certificate checker: any bytes, checked against the
 * toy program lowered with the defaults (the seed corpus holds its real certificate), must give
 * IR_OK or a clean refusal, never a crash, a leak or a hang.
 */
#include <stdint.h>
#include <stdlib.h>

#include "ir/amk_ir.h"
#include "lower/lower.h"
#include "verify/verify.h"

static ir_program *toy(void)
{
    static ir_program *p;
    if (!p) {
        lower_model m;
        ir_config c;
        lower_opts o;
        ir_error err = {0};
        ir_config_default(&c);
        lower_opts_default(&o);
        if (lower_model_preset("toy", &m, &err) != IR_OK ||
            lower_program(&m, &c, ir_target_builtin("h100"), &o, &p, &err) != IR_OK)
            abort();
    }
    return p;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    ir_error err = {0};
    verify_cert_check((const char *)data, size, toy(), &err);
    return 0;
}
