/*
 * fuzz_witness.c - libFuzzer harness for the witness reader of amk run --replay: any bytes give a
 * task order or a clean error; a task order that reads holds only task ids in [0, 2^31).
 */
#include <stdint.h>
#include <stdlib.h>

#include "refvm/refvm.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    refvm_replay r;
    ir_error err = {0};
    if (refvm_replay_from_witness((const char *)data, size, "fuzz", &r, &err) == IR_OK) {
        for (int32_t i = 0; i < r.n; i++)
            if (r.order[i] < 0)
                abort();
        if (r.pos < 0)
            abort();
    }
    refvm_replay_free(&r);
    return 0;
}
