/*
 * report.c - the JSON form of an `amk bench` run (SPEC.md 14.4), built here so that its shape is
 * one function a test can pin with fake results, whatever timed them.
 *
 * The honesty rules hold in the document too: a side without a latency has null where its
 * numbers would be and the reason next to them; a speedup appears only when both sides have one.
 */
#include <stdlib.h>

#include <cjson/cJSON.h>

#include "bench/bench.h"
#include "refvm/refvm.h"   /* REFVM_GATE_REL_TOL: the tolerance of a gate that names none */

static cJSON *gate_json(const bench_gate *g, const char *against)
{
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "verdict", g->pass ? "PASS" : "FAIL");
    cJSON_AddStringToObject(o, "against", against ? against : "");
    cJSON_AddNumberToObject(o, "compared", (double)g->compared);
    cJSON_AddNumberToObject(o, "top1_agree", (double)g->top1_agree);
    cJSON_AddNumberToObject(o, "top1_near_tie", (double)g->top1_near_tie);
    cJSON_AddNumberToObject(o, "max_abs_err", g->max_abs_err);
    cJSON_AddNumberToObject(o, "max_rel_err", g->max_rel_err);
    cJSON_AddNumberToObject(o, "tol_rel", g->tol_rel > 0 ? g->tol_rel : REFVM_GATE_REL_TOL);
    if (!g->pass)
        cJSON_AddStringToObject(o, "why", g->why);
    return o;
}

/* latency_us_per_token, samples_us (only with a latency) and withheld, into o. */
static void latency_into(cJSON *o, const bench_run_result *r)
{
    if (r->has_latency) {
        cJSON *l = cJSON_AddObjectToObject(o, "latency_us_per_token");
        cJSON_AddNumberToObject(l, "median", r->latency.s.median);
        cJSON_AddNumberToObject(l, "p10", r->latency.s.p10);
        cJSON_AddNumberToObject(l, "p90", r->latency.s.p90);
        cJSON_AddItemToObject(o, "samples_us", cJSON_CreateDoubleArray(r->samples_us,
                                                                       r->n_samples));
        cJSON_AddNullToObject(o, "withheld");
    } else {
        cJSON_AddNullToObject(o, "latency_us_per_token");
        cJSON_AddStringToObject(o, "withheld", r->withheld_why);
    }
}

static cJSON *ci_json(const bench_ci *ci)
{
    cJSON *o = cJSON_CreateObject();
    cJSON_AddNumberToObject(o, "level", ci->level);
    cJSON_AddNumberToObject(o, "lo", ci->lo);
    cJSON_AddNumberToObject(o, "hi", ci->hi);
    cJSON_AddNumberToObject(o, "resamples", ci->resamples);
    cJSON_AddNumberToObject(o, "seed", (double)ci->seed);
    return o;
}

ir_status bench_report_json(const bench_report *rep, char **json, ir_error *err)
{
    *json = NULL;
    const bench_run_result *r = rep->run;
    cJSON *o = cJSON_CreateObject();
    if (!o)
        return ir_fail(err, IR_ERR_NOMEM, "report", "out of memory");
    cJSON_AddStringToObject(o, "source", r->label ? r->label : "");
    cJSON_AddBoolToObject(o, "gpu", r->is_gpu);
    if (rep->device)
        cJSON_AddStringToObject(o, "device", rep->device);
    else
        cJSON_AddNullToObject(o, "device");
    if (rep->gpu_note)
        cJSON_AddStringToObject(o, "gpu_note", rep->gpu_note);
    cJSON_AddStringToObject(o, "program", rep->program ? rep->program : "");
    cJSON_AddStringToObject(o, "certificate", rep->certificate ? rep->certificate : "");
    cJSON_AddStringToObject(o, "target", rep->target ? rep->target : "");
    cJSON_AddNumberToObject(o, "steps", (double)r->steps);
    cJSON_AddNumberToObject(o, "repeats", r->repeats);
    cJSON_AddNumberToObject(o, "warmup", rep->warmup);
    cJSON_AddItemToObject(o, "correctness", gate_json(&r->gate, rep->against));
    latency_into(o, r);

    cJSON *rf = cJSON_AddObjectToObject(o, "roofline");
    cJSON_AddNumberToObject(rf, "weight_bytes", (double)rep->weight_bytes);
    cJSON_AddNumberToObject(rf, "spec_bandwidth_gbs", rep->spec_bandwidth_gbs);
    cJSON_AddNumberToObject(rf, "spec_floor_us", r->spec_floor_us);
    if (r->has_latency) {
        cJSON_AddNumberToObject(rf, "pct_of_spec_floor", r->pct_of_spec_floor);
        cJSON_AddNumberToObject(rf, "achieved_gbs", r->achieved_gbs);
    }
    if (r->has_measured_bw) {
        cJSON_AddNumberToObject(rf, "measured_bandwidth_gbs", r->measured_bw_gbs);
        cJSON_AddNumberToObject(rf, "measured_floor_us", r->measured_floor_us);
        if (r->has_latency)
            cJSON_AddNumberToObject(rf, "pct_of_measured_floor",
                                    100.0 * r->latency.s.median / r->measured_floor_us);
    } else {
        cJSON_AddNullToObject(rf, "measured_bandwidth_gbs");
        cJSON_AddStringToObject(rf, "measured_floor", "needs a GPU: the measured-bandwidth "
                                "floor comes from a streaming-read kernel in the same run");
    }

    if (rep->ab) {
        const bench_run_result *b = &rep->ab->baseline;
        cJSON *bo = cJSON_AddObjectToObject(o, "baseline");
        cJSON_AddStringToObject(bo, "source", b->label ? b->label : "");
        if (rep->baseline_library)
            cJSON_AddStringToObject(bo, "library", rep->baseline_library);
        cJSON_AddItemToObject(bo, "correctness",
                              gate_json(&b->gate, "reference VM logits of the same steps and "
                                        "tokens; a different top-1 passes only as a near tie"));
        latency_into(bo, b);
        if (b->has_latency) {
            cJSON_AddNumberToObject(bo, "achieved_gbs", b->achieved_gbs);
            cJSON_AddNumberToObject(bo, "pct_of_spec_floor", b->pct_of_spec_floor);
        }
        cJSON_AddNullToObject(o, "baseline_unavailable");
        cJSON_AddStringToObject(o, "order", "interleaved: baseline, megakernel, baseline, ...");
        if (rep->ab->has_speedup) {
            cJSON *sp = cJSON_AddObjectToObject(o, "speedup");
            cJSON_AddStringToObject(sp, "ratio", "median(baseline) / median(megakernel) per token");
            cJSON_AddNumberToObject(sp, "estimate", rep->ab->speedup.estimate);
            cJSON_AddItemToObject(sp, "ci", ci_json(&rep->ab->speedup));
            cJSON_AddNullToObject(o, "speedup_withheld");
        } else {
            cJSON_AddNullToObject(o, "speedup");
            cJSON_AddStringToObject(o, "speedup_withheld", rep->ab->speedup_withheld);
        }
    } else {
        cJSON_AddNullToObject(o, "baseline");
        cJSON_AddStringToObject(o, "baseline_unavailable",
                                rep->baseline_note ? rep->baseline_note : "not run");
        cJSON_AddNullToObject(o, "speedup");
        cJSON_AddStringToObject(o, "speedup_withheld", "no baseline in this run");
    }
    if (rep->plot)
        cJSON_AddStringToObject(o, "plot", rep->plot);
    else
        cJSON_AddNullToObject(o, "plot");
    char *s = cJSON_Print(o);
    cJSON_Delete(o);
    if (!s)
        return ir_fail(err, IR_ERR_NOMEM, "report", "out of memory");
    *json = s;
    return IR_OK;
}
