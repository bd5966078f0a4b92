/*
 * gate.c - the comparison behind the correctness gate: how far a candidate's logits are from a
 * reference's, and whether both pick the same greedy token.
 */
#include <math.h>

#include "refvm/refvm.h"

int32_t refvm_argmax(const float *x, int64_t n)
{
    if (n <= 0)
        return -1;
    int64_t best = -1;
    for (int64_t i = 0; i < n; i++)
        if (x[i] == x[i] && (best < 0 || x[i] > x[best]))   /* NaN never taken */
            best = i;
    return best < 0 ? 0 : (int32_t)best;
}

refvm_gate_cmp refvm_gate_compare(const float *a, const float *b, int64_t n, double tol)
{
    refvm_gate_cmp c = {0};
    bool finite = true;
    for (int64_t i = 0; i < n; i++) {
        double d = fabs((double)a[i] - (double)b[i]);
        if (!isfinite(a[i]) || !isfinite(b[i]))
            finite = false;
        if (d > c.max_abs_err || d != d)
            c.max_abs_err = d;
        if (fabs((double)b[i]) > c.max_abs_ref)
            c.max_abs_ref = fabs((double)b[i]);
    }
    c.top_a = refvm_argmax(a, n);
    c.top_b = refvm_argmax(b, n);
    c.pass = finite && n > 0 && c.max_abs_err <= tol * c.max_abs_ref && c.top_a == c.top_b;
    return c;
}
