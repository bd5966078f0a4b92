/*
 * fuzz_safetensors.c - libFuzzer harness for the safetensors reader. refvm_st_open maps a
 * path, so each input goes into an anonymous memory file first; every tensor of an accepted
 * file is then converted to fp32 (small ones only, to keep the run fast).
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <unistd.h>

#include "refvm/refvm.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    int fd = memfd_create("fuzz_safetensors", 0);
    if (fd < 0)
        return 0;
    if (size && write(fd, data, size) != (ssize_t)size) {
        close(fd);
        return 0;
    }
    char path[64];
    snprintf(path, sizeof path, "/proc/self/fd/%d", fd);
    ir_error err = {0};
    refvm_st *st = NULL;
    if (refvm_st_open(path, &st, &err) == IR_OK) {
        for (int i = 0; i < st->n; i++) {
            const refvm_tensor *t = &st->tensors[i];
            if (refvm_st_find(st, t->name) == NULL)
                abort();
            if (t->numel <= 0 || t->numel > (1 << 16))
                continue;
            float *dst = malloc((size_t)t->numel * sizeof *dst);
            if (dst) {
                refvm_st_to_f32(st, t, dst, &err);
                free(dst);
            }
        }
        refvm_st_close(st);
    }
    close(fd);
    return 0;
}
