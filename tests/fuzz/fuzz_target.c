/*
 * fuzz_target.c - libFuzzer harness for the target-file reader (amk-verify --target-file, amk
 * lower --target-file): any bytes give a target or a clean error, never a crash, and a target
 * that reads passes the checks its derived fields rely on.
 */
#include <stdint.h>
#include <stdlib.h>

#include "ir/amk_ir.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    ir_target t;
    ir_error err = {0};
    if (ir_target_read_json((const char *)data, size, "fuzz", &t, &err) == IR_OK &&
        (t.num_sms < 1 || t.max_blocks_per_sm < 1))
        abort();   /* the reader promised a usable target */
    return 0;
}
