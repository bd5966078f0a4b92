/*
 * ir_target.c - the built-in GPU targets, as data. Numbers are the vendors' public spec-sheet
 * figures (SXM parts for the datacenter GPUs); measured bandwidth is 0 (not measured) unless a
 * run of ours measured it. Occupancy limits follow the CUDA programming guide's table of
 * compute-capability limits.
 */
#include <string.h>

#include "ir/amk_ir.h"

#define KB 1024LL
#define MB (1024LL * 1024)
#define GB (1000LL * 1000 * 1000)

/* name, sm_arch, sms, smem/SM, smem opt-in, regs/SM, threads/SM, regs/thread, L2, HBM,
 * GB/s, fp16 TFLOPS (dense), clock GHz, cooperative, wddm, measured, note, then ours. */
static const ir_target TARGETS[] = {
    {"h100", 90, 132, 228 * KB, 227 * KB, 65536, 2048, 255, 50 * MB, 80 * GB, 3350.0, 989.0,
     1.98, true, false, 0.0, "H100 SXM5 80GB HBM3, spec sheet", 1024, 32, 1024, 256},
    {"h200", 90, 132, 228 * KB, 227 * KB, 65536, 2048, 255, 50 * MB, 141 * GB, 4800.0, 989.0,
     1.98, true, false, 0.0, "H200 SXM 141GB HBM3e, spec sheet", 1024, 32, 1024, 256},
    {"a100", 80, 108, 164 * KB, 163 * KB, 65536, 2048, 255, 40 * MB, 40 * GB, 1555.0, 312.0,
     1.41, true, false, 0.0, "A100 SXM4 40GB HBM2e, spec sheet", 1024, 32, 1024, 256},
    {"b200", 100, 148, 228 * KB, 227 * KB, 65536, 2048, 255, 126 * MB, 192 * GB, 8000.0, 2250.0,
     1.97, true, false, 0.0, "B200 192GB HBM3e, spec sheet", 1024, 32, 1024, 256},
    {"rtx5090", 120, 170, 100 * KB, 99 * KB, 65536, 1536, 255, 96 * MB, 32 * GB, 1792.0, 209.5,
     2.41, true, false, 0.0, "GeForce RTX 5090 32GB GDDR7, spec sheet", 1024, 32, 1024, 256},
    {"l4", 89, 58, 100 * KB, 99 * KB, 65536, 1536, 255, 48 * MB, 24 * GB, 300.0, 121.0, 2.04,
     true, false, 0.0, "L4 24GB GDDR6, spec sheet", 1024, 24, 1024, 256},
    {"l40s", 89, 142, 100 * KB, 99 * KB, 65536, 1536, 255, 96 * MB, 48 * GB, 864.0, 362.0, 2.52,
     true, false, 0.0, "L40S 48GB GDDR6, spec sheet", 1024, 24, 1024, 256},
    {"a10g", 86, 80, 100 * KB, 99 * KB, 65536, 1536, 255, 6 * MB, 24 * GB, 600.0, 125.0, 1.71,
     true, false, 0.0, "A10G 24GB GDDR6, spec sheet", 1024, 16, 1024, 256},
    {"t4", 75, 40, 64 * KB, 64 * KB, 65536, 1024, 255, 4 * MB, 16 * GB, 320.0, 65.0, 1.59, true,
     false, 0.0, "T4 16GB GDDR6, spec sheet", 1024, 16, 0, 256},
};

#define N_TARGETS ((int)(sizeof TARGETS / sizeof TARGETS[0]))

const ir_target *ir_target_builtin(const char *name)
{
    if (!name)
        return NULL;
    for (int i = 0; i < N_TARGETS; i++)
        if (!strcmp(TARGETS[i].name, name))
            return &TARGETS[i];
    return NULL;
}

int ir_target_count(void) { return N_TARGETS; }

const ir_target *ir_target_at(int i) { return i >= 0 && i < N_TARGETS ? &TARGETS[i] : NULL; }

void ir_target_fill_derived(ir_target *t)
{
    if (t->max_threads_per_block <= 0)
        t->max_threads_per_block = 1024;
    if (t->max_blocks_per_sm <= 0) {
        /* Resident blocks per SM by compute capability. */
        int64_t a = t->sm_arch;
        t->max_blocks_per_sm = a >= 90 ? 32 : a == 89 ? 24 : a == 86 || a == 87 ? 16
                             : a >= 80 ? 32 : a == 75 ? 16 : 32;
    }
    if (t->smem_reserved_per_block < 0)
        t->smem_reserved_per_block = t->sm_arch >= 80 ? 1024 : 0;
    if (t->reg_alloc_unit <= 0)
        t->reg_alloc_unit = 256;
}
