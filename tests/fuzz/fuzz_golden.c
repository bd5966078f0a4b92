/*
 * fuzz_golden.c - libFuzzer harness for the golden.json reader of amk launch --golden: any bytes
 * give a golden or a clean error; a golden that reads has finite logits in rows of one width.
 */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>

#include "refvm/refvm.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    refvm_golden g;
    ir_error err = {0};
    if (refvm_golden_read((const char *)data, size, "fuzz", &g, &err) == IR_OK) {
        for (int64_t i = 0; i < (int64_t)g.n_rows * g.width; i++)
            if (!isfinite(g.logits[i]))
                abort();
        for (int i = 0; i < g.n_prompt; i++)
            if (g.prompt[i] < 0)
                abort();
    }
    refvm_golden_free(&g);
    return 0;
}
