/*
 * fuzz_config_json.c - libFuzzer harness for the ScheduleConfig reader, strict and lenient;
 * a config the strict reader and lower_config_check accept is then used to lower the toy
 * preset, which must succeed or refuse cleanly.
 */
#include <stdint.h>
#include <stdlib.h>

#include "ir/amk_ir.h"
#include "lower/lower.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    ir_error err = {0};
    ir_config lenient;
    if (ir_config_read_json((const char *)data, size, false, &lenient, &err) == IR_OK)
        ir_config_free(&lenient);
    ir_config c;
    if (ir_config_read_json((const char *)data, size, true, &c, &err) != IR_OK)
        return 0;
    if (lower_config_check(&c, &err) == IR_OK) {
        lower_model m;
        lower_opts o;
        lower_opts_default(&o);
        o.max_seq = 64;
        ir_program *p = NULL;
        if (lower_model_preset("toy", &m, &err) == IR_OK &&
            lower_program(&m, &c, ir_target_builtin("h100"), &o, &p, &err) == IR_OK)
            ir_program_free(p);
    }
    ir_config_free(&c);
    return 0;
}
