/*
 * fuzz_corpus.c - libFuzzer harness for the proof corpus reader (amk proofs --corpus): any bytes
 * give recipes or a clean error naming a line; every recipe that reads has a plain name, a known
 * verdict and the argument count of its kind.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "proofs/proofs.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    proofs_corpus c;
    ir_error err = {0};
    if (proofs_corpus_parse((const char *)data, size, &c, &err) == IR_OK) {
        for (int i = 0; i < c.n; i++) {
            const proofs_recipe *r = &c.recipes[i];
            static const int n_args[] = {2, 3, 1, 1};
            for (int k = 0; k < n_args[r->kind]; k++)
                if (!r->args[k] || !*r->args[k])
                    abort();
            if (!proofs_valid_name(r->name) || !r->verdict || !r->witness || r->line < 1)
                abort();
        }
    }
    proofs_corpus_free(&c);
    return 0;
}
