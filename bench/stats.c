/*
 * stats.c - the statistics behind every latency figure: quantiles, latency summaries and a
 * seeded bootstrap confidence interval of a ratio of medians (baseline / candidate).
 *
 * The bootstrap resamples both sides independently, because the two sides are separate sets
 * of measurements; the percentile interval of the resampled ratios is the reported CI. The
 * random stream is splitmix64, so a claim audited twice gets the same interval.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "base/base.h"
#include "bench/bench.h"

double bench_quantile_sorted(const double *sorted, int n, double q)
{
    if (n <= 0)
        return 0;
    if (q <= 0)
        return sorted[0];
    if (q >= 1)
        return sorted[n - 1];
    double h = q * (double)(n - 1);
    int lo = (int)floor(h);
    if (lo >= n - 1)
        return sorted[n - 1];
    double frac = h - (double)lo;
    return sorted[lo] + frac * (sorted[lo + 1] - sorted[lo]);
}

/* Every value finite and > 0; else MALFORMED naming the first offender. */
static ir_status check_positive(const double *x, int n, const char *what, ir_error *err)
{
    if (n < 1)
        return ir_fail(err, IR_ERR_MALFORMED, what, "needs at least one value");
    for (int i = 0; i < n; i++)
        if (!isfinite(x[i]) || x[i] <= 0)
            return ir_fail(err, IR_ERR_MALFORMED, what, "value %d is %g: must be finite and > 0",
                           i, x[i]);
    return IR_OK;
}

ir_status bench_summarize(const double *x, int n, bench_summary *out, ir_error *err)
{
    memset(out, 0, sizeof *out);
    if (n < 1)
        return ir_fail(err, IR_ERR_MALFORMED, "samples", "needs at least one value");
    double *s = malloc((size_t)n * sizeof *s);
    if (!s)
        return ir_fail(err, IR_ERR_NOMEM, "samples", "out of memory");
    memcpy(s, x, (size_t)n * sizeof *s);
    qsort(s, (size_t)n, sizeof *s, base_cmp_double);
    out->n = n;
    out->min = s[0];
    out->max = s[n - 1];
    out->p10 = bench_quantile_sorted(s, n, 0.10);
    out->median = bench_quantile_sorted(s, n, 0.50);
    out->p90 = bench_quantile_sorted(s, n, 0.90);
    free(s);
    return IR_OK;
}

static uint64_t splitmix64(uint64_t *state)
{
    uint64_t z = (*state += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

/* Uniform index in [0, n) without modulo bias (rejection of the short tail). */
static int draw_index(uint64_t *state, int n)
{
    uint64_t range = (uint64_t)n, limit = UINT64_MAX - UINT64_MAX % range;
    uint64_t r;
    do
        r = splitmix64(state);
    while (r >= limit);
    return (int)(r % range);
}

/* Median of n values drawn with replacement from x, using scratch (n values). */
static double resampled_median(const double *x, int n, double *scratch, uint64_t *state)
{
    for (int i = 0; i < n; i++)
        scratch[i] = x[draw_index(state, n)];
    qsort(scratch, (size_t)n, sizeof *scratch, base_cmp_double);
    return bench_quantile_sorted(scratch, n, 0.5);
}

ir_status bench_bootstrap_ratio(const double *a, int na, const double *b, int nb, int resamples,
                                uint64_t seed, double level, bench_ci *out, ir_error *err)
{
    memset(out, 0, sizeof *out);
    ir_status s;
    if ((s = check_positive(a, na, "bootstrap: numerator samples", err)) != IR_OK ||
        (s = check_positive(b, nb, "bootstrap: denominator samples", err)) != IR_OK)
        return s;
    if (resamples < 1)
        return ir_fail(err, IR_ERR_MALFORMED, "bootstrap", "resamples must be >= 1, got %d",
                       resamples);
    if (!(level > 0 && level < 1))
        return ir_fail(err, IR_ERR_MALFORMED, "bootstrap", "level must be in (0, 1), got %g",
                       level);
    double *scratch = malloc((size_t)(na > nb ? na : nb) * sizeof *scratch);
    double *ratios = malloc((size_t)resamples * sizeof *ratios);
    bench_summary sa, sb;
    if (!scratch || !ratios || bench_summarize(a, na, &sa, err) != IR_OK ||
        bench_summarize(b, nb, &sb, err) != IR_OK) {
        free(scratch);
        free(ratios);
        return ir_fail(err, IR_ERR_NOMEM, "bootstrap", "out of memory");
    }
    uint64_t state = seed;
    for (int r = 0; r < resamples; r++) {
        double ma = resampled_median(a, na, scratch, &state);
        double mb = resampled_median(b, nb, scratch, &state);
        ratios[r] = ma / mb;
    }
    qsort(ratios, (size_t)resamples, sizeof *ratios, base_cmp_double);
    out->estimate = sa.median / sb.median;
    out->lo = bench_quantile_sorted(ratios, resamples, (1 - level) / 2);
    out->hi = bench_quantile_sorted(ratios, resamples, (1 + level) / 2);
    out->level = level;
    out->resamples = resamples;
    out->seed = seed;
    free(scratch);
    free(ratios);
    return IR_OK;
}
