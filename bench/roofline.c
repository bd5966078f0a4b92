/*
 * roofline.c - the roofline floor and its guard, and the SVG roofline chart.
 *
 * One decode step must stream every weight byte at least once, so no step can take less than
 * weight_bytes / bandwidth. A measured latency below that floor means the measurement is
 * wrong (a skipped kernel, a cached result, a clock misread), so the guard withholds the whole
 * summary and says why instead of passing a number on.
 */
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/base.h"
#include "bench/bench.h"

double bench_floor_us(int64_t weight_bytes, double bandwidth_gbs)
{
    if (weight_bytes <= 0 || !(bandwidth_gbs > 0) || !isfinite(bandwidth_gbs))
        return 0;
    return (double)weight_bytes / (bandwidth_gbs * 1e3);   /* B / (GB/s) = ns; / 1e3 = us */
}

ir_status bench_guard_latency(const double *us, int n, double floor_us, bench_latency *out,
                              ir_error *err)
{
    memset(out, 0, sizeof *out);
    out->floor_us = floor_us;
    if (n < 1)
        return ir_fail(err, IR_ERR_MALFORMED, "latency", "no samples");
    out->lowest_us = us[0];
    for (int i = 0; i < n; i++) {
        if (!isfinite(us[i]) || us[i] <= 0)
            return ir_fail(err, IR_ERR_MALFORMED, "latency", "sample %d is %g: must be finite "
                           "and > 0", i, us[i]);
        if (us[i] < out->lowest_us)
            out->lowest_us = us[i];
        if (us[i] < floor_us)
            out->n_below_floor++;
    }
    if (out->n_below_floor > 0) {
        snprintf(out->why, sizeof out->why, "withheld: %d of %d samples below the roofline "
                 "floor %.6g us (lowest %.6g us); a step cannot stream its weights faster than "
                 "the bandwidth allows, so the measurement is wrong", out->n_below_floor, n,
                 floor_us, out->lowest_us);
        return IR_OK;
    }
    ir_status s = bench_summarize(us, n, &out->s, err);
    out->reported = s == IR_OK;
    return s;
}

/* ---------------------------------------------------------------- SVG */

/* Text with &, <, >, " escaped (truncated at 200 characters). */
static void put_escaped(base_sb *t, const char *s)
{
    for (int i = 0; s && s[i] && i < 200; i++) {
        switch (s[i]) {
        case '&': base_sb_str(t, "&amp;"); break;
        case '<': base_sb_str(t, "&lt;"); break;
        case '>': base_sb_str(t, "&gt;"); break;
        case '"': base_sb_str(t, "&quot;"); break;
        default:
            if ((unsigned char)s[i] >= 0x20)
                base_sb_put(t, &s[i], 1);
        }
    }
}

enum { W = 760, H = 500, ML = 80, MR = 30, MT = 60, MB = 130 };

typedef struct {
    double x0, x1, y0, y1;   /* log10 ranges */
} axes;

static double px(const axes *a, double bytes)
{
    return ML + (log10(bytes) - a->x0) / (a->x1 - a->x0) * (W - ML - MR);
}

static double py(const axes *a, double us)
{
    return H - MB - (log10(us) - a->y0) / (a->y1 - a->y0) * (H - MT - MB);
}

static void floor_line(base_sb *t, const axes *a, double gbs, const char *color,
                       const char *dash)
{
    double b0 = pow(10, a->x0), b1 = pow(10, a->x1);
    base_sb_fmt(t, "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"%s\" "
                   "stroke-width=\"2\"%s clip-path=\"url(#plot)\"/>\n", px(a, b0),
                py(a, (double)b0 / (gbs * 1e3)), px(a, b1), py(a, (double)b1 / (gbs * 1e3)), color,
                dash);
}

ir_status bench_roofline_svg(const bench_plot *pl, char **svg, ir_error *err)
{
    *svg = NULL;
    if (pl->weight_bytes <= 0 || !(pl->spec_bandwidth_gbs > 0) || !isfinite(pl->spec_bandwidth_gbs))
        return ir_fail(err, IR_ERR_MALFORMED, "plot", "needs weight_bytes > 0 and a spec "
                       "bandwidth > 0");
    bool has_meas = pl->measured_bandwidth_gbs > 0 && isfinite(pl->measured_bandwidth_gbs);
    bool has_pt = pl->has_latency && pl->median_us > 0 && pl->p10_us > 0 && pl->p90_us > 0;
    axes a;
    double lb = log10((double)pl->weight_bytes);
    a.x0 = floor(lb) - 2;
    a.x1 = ceil(lb) + 2;
    if (a.x1 - a.x0 < 4)
        a.x1 = a.x0 + 4;
    /* y covers the floor at the program's bytes and the point, with room on both sides */
    double lo = bench_floor_us(pl->weight_bytes, pl->spec_bandwidth_gbs), hi = lo;
    if (has_meas) {
        double m = bench_floor_us(pl->weight_bytes, pl->measured_bandwidth_gbs);
        lo = fmin(lo, m);
        hi = fmax(hi, m);
    }
    if (has_pt) {
        lo = fmin(lo, pl->p10_us);
        hi = fmax(hi, pl->p90_us);
    }
    bool has_base = pl->baseline_label && pl->baseline_has_latency && pl->baseline_median_us > 0 &&
                    pl->baseline_p10_us > 0 && pl->baseline_p90_us > 0;
    if (has_base) {
        lo = fmin(lo, pl->baseline_p10_us);
        hi = fmax(hi, pl->baseline_p90_us);
    }
    a.y0 = floor(log10(lo)) - 1;
    a.y1 = ceil(log10(hi)) + 1;

    base_sb t = {0};
    base_sb_fmt(&t, "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"
                    "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"%d\" height=\"%d\" "
                    "viewBox=\"0 0 %d %d\" font-family=\"sans-serif\" font-size=\"12\">\n"
                    "<defs><clipPath id=\"plot\"><rect x=\"%d\" y=\"%d\" width=\"%d\" "
                    "height=\"%d\"/></clipPath></defs>\n"
                    "<rect width=\"100%%\" height=\"100%%\" fill=\"white\"/>\n",
                    W, H, W, H, ML, MT, W - ML - MR, H - MT - MB);
    base_sb_fmt(&t, "<text x=\"%d\" y=\"24\" font-size=\"15\" font-weight=\"bold\">Roofline: ", ML);
    put_escaped(&t, pl->title ? pl->title : "program");
    base_sb_fmt(&t, "</text>\n<text x=\"%d\" y=\"44\">latency per step vs the floor weight bytes / "
                    "bandwidth; timed on ", ML);
    put_escaped(&t, pl->label ? pl->label : "?");
    base_sb_str(&t, "</text>\n");
    /* grid and axes, one line per decade */
    for (int d = (int)a.x0; d <= (int)a.x1; d++) {
        double x = px(&a, pow(10, d));
        base_sb_fmt(&t, "<line x1=\"%.1f\" y1=\"%d\" x2=\"%.1f\" y2=\"%d\" stroke=\"#ddd\"/>\n"
                        "<text x=\"%.1f\" y=\"%d\" text-anchor=\"middle\">1e%d</text>\n",
                        x, MT, x, H - MB, x, H - MB + 16, d);
    }
    for (int d = (int)a.y0; d <= (int)a.y1; d++) {
        double y = py(&a, pow(10, d));
        base_sb_fmt(&t, "<line x1=\"%d\" y1=\"%.1f\" x2=\"%d\" y2=\"%.1f\" stroke=\"#ddd\"/>\n"
                        "<text x=\"%d\" y=\"%.1f\" text-anchor=\"end\">1e%d</text>\n",
                        ML, y, W - MR, y, ML - 6, y + 4, d);
    }
    base_sb_fmt(&t, "<rect x=\"%d\" y=\"%d\" width=\"%d\" height=\"%d\" fill=\"none\" "
                    "stroke=\"black\"/>\n"
                    "<text x=\"%d\" y=\"%d\" text-anchor=\"middle\">bytes streamed per step"
                    "</text>\n"
                    "<text x=\"18\" y=\"%d\" text-anchor=\"middle\" "
                    "transform=\"rotate(-90 18 %d)\">latency per step (us)</text>\n",
                    ML, MT, W - ML - MR, H - MT - MB, (ML + W - MR) / 2, H - MB + 34,
                    (MT + H - MB) / 2, (MT + H - MB) / 2);
    /* the program's bytes */
    double xb = px(&a, (double)pl->weight_bytes);
    base_sb_fmt(&t, "<line x1=\"%.1f\" y1=\"%d\" x2=\"%.1f\" y2=\"%d\" stroke=\"#888\" "
                    "stroke-dasharray=\"2 3\"/>\n", xb, MT, xb, H - MB);
    floor_line(&t, &a, pl->spec_bandwidth_gbs, "#1f5fbf", "");
    if (has_meas)
        floor_line(&t, &a, pl->measured_bandwidth_gbs, "#2a9d3a", " stroke-dasharray=\"8 4\"");
    if (has_pt) {
        base_sb_fmt(&t, "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"#c0392b\" "
                        "stroke-width=\"2\"/>\n<circle cx=\"%.1f\" cy=\"%.1f\" r=\"5\" "
                        "fill=\"#c0392b\"/>\n",
                        xb, py(&a, pl->p10_us), xb, py(&a, pl->p90_us), xb, py(&a, pl->median_us));
    }
    if (has_base) {   /* beside the program's point: same bytes, another marker */
        double xs = xb + 14, ym = py(&a, pl->baseline_median_us);
        base_sb_fmt(&t, "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"#7d3c98\" "
                        "stroke-width=\"2\"/>\n<rect x=\"%.1f\" y=\"%.1f\" width=\"9\" "
                        "height=\"9\" fill=\"#7d3c98\"/>\n", xs, py(&a, pl->baseline_p10_us), xs,
                        py(&a, pl->baseline_p90_us), xs - 4.5, ym - 4.5);
    }
    /* legend */
    int ly = H - MB + 56;
    base_sb_fmt(&t, "<line x1=\"%d\" y1=\"%d\" x2=\"%d\" y2=\"%d\" stroke=\"#1f5fbf\" "
                    "stroke-width=\"2\"/><text x=\"%d\" y=\"%d\">floor at ",
                    ML, ly - 4, ML + 30, ly - 4, ML + 36, ly);
    put_escaped(&t, pl->spec_name ? pl->spec_name : "spec");
    base_sb_fmt(&t, " bandwidth %.6g GB/s: %.4g us</text>\n", pl->spec_bandwidth_gbs,
                    bench_floor_us(pl->weight_bytes, pl->spec_bandwidth_gbs));
    ly += 18;
    if (has_meas)
        base_sb_fmt(&t, "<line x1=\"%d\" y1=\"%d\" x2=\"%d\" y2=\"%d\" stroke=\"#2a9d3a\" "
                        "stroke-width=\"2\" stroke-dasharray=\"8 4\"/><text x=\"%d\" y=\"%d\">"
                        "floor at measured bandwidth %.6g GB/s: %.4g us</text>\n",
                        ML, ly - 4, ML + 30, ly - 4, ML + 36, ly, pl->measured_bandwidth_gbs,
                        bench_floor_us(pl->weight_bytes, pl->measured_bandwidth_gbs));
    else
        base_sb_fmt(&t, "<text x=\"%d\" y=\"%d\" fill=\"#555\">measured-bandwidth floor: not "
                        "measured (needs a GPU streaming-read kernel)</text>\n", ML + 36, ly);
    ly += 18;
    if (has_pt) {
        base_sb_fmt(&t, "<circle cx=\"%d\" cy=\"%d\" r=\"5\" fill=\"#c0392b\"/>"
                        "<text x=\"%d\" y=\"%d\">", ML + 15, ly - 4, ML + 36, ly);
        put_escaped(&t, pl->label ? pl->label : "?");
        base_sb_fmt(&t, " median %.6g us per step (bar: p10 %.6g .. p90 %.6g)</text>\n",
                        pl->median_us, pl->p10_us, pl->p90_us);
    } else {
        base_sb_fmt(&t, "<text x=\"%d\" y=\"%d\" fill=\"#c0392b\">no latency shown: ", ML + 36, ly);
        put_escaped(&t, pl->withheld_why ? pl->withheld_why : "none measured");
        base_sb_str(&t, "</text>\n");
    }
    if (pl->baseline_label) {
        ly += 18;
        if (has_base) {
            base_sb_fmt(&t, "<rect x=\"%d\" y=\"%d\" width=\"9\" height=\"9\" fill=\"#7d3c98\"/>"
                            "<text x=\"%d\" y=\"%d\">baseline ", ML + 11, ly - 9, ML + 36, ly);
            put_escaped(&t, pl->baseline_label);
            base_sb_fmt(&t, " median %.6g us per step (bar: p10 %.6g .. p90 %.6g)</text>\n",
                            pl->baseline_median_us, pl->baseline_p10_us, pl->baseline_p90_us);
        } else {
            base_sb_fmt(&t, "<text x=\"%d\" y=\"%d\" fill=\"#7d3c98\">baseline ", ML + 36, ly);
            put_escaped(&t, pl->baseline_label);
            base_sb_str(&t, ": no latency shown: ");
            put_escaped(&t, pl->baseline_withheld_why ? pl->baseline_withheld_why : "none measured");
            base_sb_str(&t, "</text>\n");
        }
    }
    base_sb_str(&t, "</svg>\n");
    *svg = base_sb_take(&t, NULL);
    if (!*svg)
        return ir_fail(err, IR_ERR_NOMEM, "plot", "out of memory");
    return IR_OK;
}
