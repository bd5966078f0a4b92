/*
 * fuzz_claim.c - libFuzzer harness for the speedup-claim reader of amk audit: any bytes parse
 * or are refused cleanly; a parsed claim is audited (bootstrap kept small), which must finish
 * with a verdict or a clean error.
 */
#include <stdint.h>
#include <stdlib.h>

#include "bench/bench.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    bench_claim c;
    ir_error err = {0};
    if (bench_claim_parse((const char *)data, size, &c, &err) != IR_OK)
        return 0;
    bench_audit_opts o;
    bench_audit_opts_default(&o);
    o.resamples = 64;
    bench_audit_result r;
    bench_audit(&c, &o, &r, &err);        /* the result owns nothing */
    bench_claim_free(&c);
    return 0;
}
