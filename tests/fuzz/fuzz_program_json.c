/*
 * fuzz_program_json.c - libFuzzer harness for the program JSON reader: any bytes must give a
 * program or a clean MALFORMED record, never a crash; an accepted program must write back as
 * JSON that reads again.
 */
#include <stdint.h>
#include <stdlib.h>

#include "ir/amk_ir.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    ir_error err = {0};
    ir_program *p = NULL;
    if (ir_read_json((const char *)data, size, NULL, &p, &err) != IR_OK)
        return 0;
    char *text = NULL;
    size_t n = 0;
    if (ir_write_json(p, &text, &n, &err) == IR_OK) {
        /* What we write we must read back. */
        ir_program *q = NULL;
        ir_error err2 = {0};
        if (ir_read_json(text, n, NULL, &q, &err2) != IR_OK)
            abort();
        ir_program_free(q);
        free(text);
    }
    ir_program_free(p);
    return 0;
}
