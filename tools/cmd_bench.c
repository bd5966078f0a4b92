/*
 * cmd_bench.c - `amk bench PROGRAM --cert CERT --weights W`: time a proved program with its
 * correctness gate from the same run, against the roofline floor (SPEC.md section 14).
 *
 * With a CUDA build and a device the megakernel is timed (gpu-megakernel), its logits checked at
 * every timed step against reference VM logits computed once, interleaved with a cuBLAS
 * CUDA-graph baseline of the same decode (gpu-cublas-graph) whose speedup ratio comes with a
 * bootstrap CI. Otherwise (or with --cpu) the CPU reference VM is timed, labelled cpu-reference.
 * The certificate is the contract: a program whose certificate does not check is not timed.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench/bench_run.h"
#include "tools/cmd.h"
#include "verify/verify.h"

static const char BENCH_ABOUT[] =
    "Time a program per token with the correctness gate of the same run. No PASS: no\n"
    "latency, only the reason. A latency below the roofline floor (weight bytes /\n"
    "bandwidth, at the target's spec bandwidth and at the device's measured one) is\n"
    "withheld.\n"
    "\n"
    "With a CUDA build and a GPU: the megakernel is timed (label gpu-megakernel; CUDA\n"
    "events around each launch), every timed step's logits checked against reference VM\n"
    "logits of the same positions and tokens (computed once, before timing; tolerance %g),\n"
    "and interleaved with a same-run baseline: the same decode as separate kernels with\n"
    "cuBLAS projections in one CUDA graph (label gpu-cublas-graph, its own tolerance %g).\n"
    "The speedup median(baseline) / median(megakernel) comes with a bootstrap 95%% CI.\n"
    "Without a GPU (or with --cpu) the CPU reference VM is timed (label cpu-reference;\n"
    "never a GPU figure), each step checked against the eager forward.\n";

typedef struct {
    const char *program, *cert, *weights, *model, *target, *plot;
    int64_t steps;
    int repeats, warmup, device, resamples;
    uint64_t seed;
    bool json, cpu, no_baseline;
} bench_args;

static int parse_args(int argc, char **argv, bench_args *a)
{
    *a = (bench_args){.steps = 16, .repeats = 10, .warmup = 1, .seed = BENCH_BOOTSTRAP_SEED,
                      .resamples = BENCH_BOOTSTRAP_RESAMPLES};
    char about[2000];
    snprintf(about, sizeof about, BENCH_ABOUT, REFVM_GATE_REL_TOL, BENCH_BASELINE_REL_TOL);
    const base_option opts[] = {
        BASE_STR("--cert", &a->cert, "CERT", "PROVED certificate of PROGRAM (amk-verify --cert); "
                 "required,\nre-checked without Z3 (amk cert check) before anything runs"),
        BASE_STR("--weights", &a->weights, "FILE", "safetensors weights", .required = true),
        BASE_I64("--steps", &a->steps, "N", 1, 1000000, "tokens per repeat, positions 0..N-1",
                 .show_default = true),
        BASE_INT("--repeats", &a->repeats, "R", 1, 100000, "timed repeats; median, p10, p90 over "
                 "them", .show_default = true),
        BASE_INT("--warmup", &a->warmup, "W", 0, 100000, "untimed repeats first (still gated)",
                 .show_default = true),
        BASE_STR("--model", &a->model, "MODEL", "model for the eager forward and the baseline "
                 "(default:\nmeta.model_config)"),
        BASE_STR("--target", &a->target, "NAME", "target whose spec bandwidth gives the floor "
                 "(default: the\nGPU's own when it is a built-in target, else the program's)"),
        BASE_INT("--device", &a->device, "D", 0, 1023, "CUDA device ordinal",
                 .show_default = true),
        BASE_FLAG("--cpu", &a->cpu, "time the CPU reference VM even when a GPU is present"),
        BASE_FLAG("--no-baseline", &a->no_baseline, "GPU: time the megakernel alone"),
        BASE_U64("--seed", &a->seed, "N", "bootstrap seed", .show_default = true),
        BASE_INT("--resamples", &a->resamples, "N", 100, 10000000, "bootstrap resamples",
                 .show_default = true),
        BASE_STR("--plot", &a->plot, "FILE.svg", "write a roofline chart (latency vs both "
                 "floors)"),
        BASE_FLAG("--json", &a->json, "one JSON object on stdout"),
    };
    const base_cmdline cl = {
        .prog = "amk bench",
        .synopsis = "usage: amk bench PROGRAM --cert CERT --weights FILE [options]\n",
        .about = about, .opts = opts, .n_opts = sizeof opts / sizeof opts[0],
        .pos_name = "PROGRAM", .min_pos = 1, .max_pos = 1, .pos = &a->program,
        .epilog = "exit: 0 the program's latency reported with PASS, 1 gate FAIL or latency "
                  "withheld,\nthe certificate does not check, the GPU refused the plan or a CUDA "
                  "call failed,\n2 malformed input or bad usage.\n",
    };
    int rc = cmd_parse_options(&cl, argc, argv);
    if (rc == CMD_CONTINUE && !a->cert) {
        fprintf(stderr, "amk bench: refusing to time %s without --cert: only a program with a "
                "PROVED certificate is benchmarked (make one with amk-verify %s --cert OUT)\n",
                a->program, a->program);
        return AMK_EXIT_MALFORMED;
    }
    return rc;
}

/* Everything the printers need besides the results. */
typedef struct {
    const bench_args *a;
    const ir_target *t;
    int64_t wb;
    const char *device;          /* GPU name, NULL on the CPU */
    const char *gpu_note;        /* why not on a GPU */
    const char *against;
    const bench_reference *ref;  /* GPU runs */
    const bench_ab_result *ab;   /* NULL: no baseline */
    const char *baseline_note, *baseline_library;
} bench_ctx;

static void print_text_gate(const char *what, const bench_gate *g)
{
    printf("correctness: %s  %s: %lld compared, top-1 %lld/%lld", g->pass ? "PASS" : "FAIL", what,
           (long long)g->compared, (long long)g->top1_agree, (long long)g->compared);
    if (g->top1_near_tie)
        printf(" (+%lld near ties)", (long long)g->top1_near_tie);
    printf(", max |err| %.3g (%.3g of max |logit|, tolerance %g)\n", g->max_abs_err,
           g->max_rel_err, g->tol_rel > 0 ? g->tol_rel : REFVM_GATE_REL_TOL);
    if (!g->pass)
        printf("  first failure: %s\n", g->why);
}

static void print_text_latency(const bench_run_result *r, const char *how)
{
    if (r->has_latency)
        printf("latency per token [%s]: median %.4g us, p10 %.4g us, p90 %.4g us (%d repeats x "
               "%lld steps%s)\n", r->label, r->latency.s.median, r->latency.s.p10,
               r->latency.s.p90, r->repeats, (long long)r->steps, how);
    else
        printf("latency per token [%s]: %s\n", r->label, r->withheld_why);
}

static void print_text(const bench_ctx *c, const bench_run_result *r)
{
    const bench_args *a = c->a;
    const ir_target *t = c->t;
    if (c->device)
        printf("bench: %s on %s (GPU: %s)\n", a->program, r->label, c->device);
    else
        printf("bench: %s on %s (the CPU reference VM; not a GPU figure%s%s)\n", a->program,
               r->label, c->gpu_note ? ": " : "", c->gpu_note ? c->gpu_note : "");
    printf("certificate: %s checks (PROVED, hash matches)\n", a->cert);
    if (c->ref)
        printf("reference: VM logits of positions 0..%lld from token 0, greedy, computed once in "
               "%.1f s; every repeat is compared with them\n", (long long)c->ref->steps - 1,
               c->ref->seconds);
    print_text_gate(c->device ? "megakernel vs reference VM on every timed step"
                              : "VM vs eager on every timed step", &r->gate);
    print_text_latency(r, c->device ? ", CUDA events per launch" : "");
    printf("roofline floor [%s spec %.6g GB/s]: %.4g us for %lld weight bytes",
           t->name, t->hbm_bandwidth_gbs, r->spec_floor_us, (long long)c->wb);
    if (r->has_latency)
        printf("; median is %.4g%% of the floor, achieved %.4g GB/s [%s]\n", r->pct_of_spec_floor,
               r->achieved_gbs, r->label);
    else
        printf("\n");
    if (r->has_measured_bw) {
        printf("roofline floor [measured %.6g GB/s, streaming read in this run]: %.4g us",
               r->measured_bw_gbs, r->measured_floor_us);
        if (r->has_latency)
            printf("; median is %.4g%% of it, %.3g%% of the measured bandwidth\n",
                   100.0 * r->latency.s.median / r->measured_floor_us,
                   100.0 * r->achieved_gbs / r->measured_bw_gbs);
        else
            printf("\n");
    } else {
        printf("roofline floor [measured bandwidth]: needs a GPU (a streaming-read kernel in the "
               "same run); not measured on %s\n", r->label);
    }
    if (c->ab) {
        const bench_run_result *b = &c->ab->baseline;
        printf("baseline: %s (%s), interleaved with the megakernel run by run\n", b->label,
               c->baseline_library ? c->baseline_library : "cuBLAS");
        print_text_gate("baseline vs reference VM on every timed step", &b->gate);
        print_text_latency(b, ", CUDA events per graph launch");
        if (b->has_latency)
            printf("baseline achieved %.4g GB/s; median is %.4g%% of the spec floor\n", b->achieved_gbs,
                   b->pct_of_spec_floor);
        if (c->ab->has_speedup)
            printf("speedup median(%s) / median(%s): %.4gx, %g%% CI [%.4g, %.4g] (bootstrap, "
                   "%d resamples, seed %llu)\n", b->label, r->label, c->ab->speedup.estimate,
                   100 * c->ab->speedup.level, c->ab->speedup.lo, c->ab->speedup.hi,
                   c->ab->speedup.resamples, (unsigned long long)c->ab->speedup.seed);
        else
            printf("speedup: %s\n", c->ab->speedup_withheld);
    } else if (c->device) {
        printf("baseline: none (%s)\n", c->baseline_note ? c->baseline_note : "not run");
    }
    if (a->plot)
        printf("plot: %s\n", a->plot);
}

static ir_status print_json(const bench_ctx *c, const bench_run_result *r, ir_error *err)
{
    bench_report rep = {
        .program = c->a->program, .certificate = c->a->cert, .target = c->t->name,
        .device = c->device, .gpu_note = c->gpu_note, .against = c->against, .plot = c->a->plot,
        .weight_bytes = c->wb, .spec_bandwidth_gbs = c->t->hbm_bandwidth_gbs,
        .warmup = c->a->warmup, .run = r, .ab = c->ab, .baseline_note = c->baseline_note,
        .baseline_library = c->baseline_library,
    };
    char *json = NULL;
    ir_status s = bench_report_json(&rep, &json, err);
    if (s == IR_OK)
        printf("%s\n", json);
    free(json);
    return s;
}

static ir_status write_plot(const bench_ctx *c, const bench_run_result *r, ir_error *err)
{
    char spec[IR_MAX_NAME + 8];
    snprintf(spec, sizeof spec, "%s spec", c->t->name);
    const bench_run_result *b = c->ab ? &c->ab->baseline : NULL;
    bench_plot pl = {
        .title = c->a->program, .label = r->label, .weight_bytes = c->wb,
        .spec_bandwidth_gbs = c->t->hbm_bandwidth_gbs, .spec_name = spec,
        .measured_bandwidth_gbs = r->has_measured_bw ? r->measured_bw_gbs : 0,
        .has_latency = r->has_latency, .median_us = r->latency.s.median,
        .p10_us = r->latency.s.p10, .p90_us = r->latency.s.p90,
        .withheld_why = r->withheld_why,
        .baseline_label = b ? b->label : NULL,
        .baseline_has_latency = b && b->has_latency,
        .baseline_median_us = b ? b->latency.s.median : 0,
        .baseline_p10_us = b ? b->latency.s.p10 : 0,
        .baseline_p90_us = b ? b->latency.s.p90 : 0,
        .baseline_withheld_why = b ? b->withheld_why : NULL,
    };
    char *svg = NULL;
    ir_status s = bench_roofline_svg(&pl, &svg, err);
    if (s != IR_OK)
        return s;
    s = ir_out_write(c->a->plot, svg, strlen(svg), err);
    free(svg);
    return s;
}

/* The target whose spec bandwidth gives the floor: --target, else the GPU's own built-in
 * target, else the program's. */
static const ir_target *floor_target(const bench_args *a, const ir_program *p,
                                     const char *device, ir_error *err)
{
    const char *own = device ? bench_target_for_device(device) : NULL;
    const ir_target *t = a->target ? ir_target_builtin(a->target)
                       : own ? ir_target_builtin(own) : p->has_target ? &p->target : NULL;
    if (!t)
        ir_fail(err, IR_ERR_MALFORMED, a->target ? "--target" : "target", a->target
                ? "unknown target '%s'" : "the program names no target%s: pass --target",
                a->target ? a->target : "");
    else if (!(t->hbm_bandwidth_gbs > 0)) {
        ir_fail(err, IR_ERR_MALFORMED, "target.hbm_bandwidth_gbs", "target %s has no spec "
                "bandwidth", t->name);
        t = NULL;
    }
    return t;
}

static int exit_for_load(mk_status s)
{
    return s == MK_REFUSED || s == MK_CUDA_ERROR || s == MK_TIMEOUT ? AMK_EXIT_REFUTED
                                                                     : AMK_EXIT_MALFORMED;
}

/* Everything one bench run holds, freed by bench_free. */
typedef struct {
    bench_args a;
    bench_ctx c;
    ir_program *p;
    refvm_st *st;
    lower_model m;
    bench_cpu *cpu;
    bench_gpu *gpu;
    bench_baseline *base;
    bench_reference ref;
    bench_run_result r;
    bench_ab_result ab;
    char *cert;
    size_t cert_len;
    const bench_run_result *res;   /* the result reported: r, or ab.candidate */
    char device[256], why_cpu[256], base_note[600];
} bench_state;

static void bench_free(bench_state *x)
{
    bench_ab_result_free(&x->ab);
    bench_run_result_free(&x->r);
    bench_baseline_free(x->base);
    bench_gpu_free(x->gpu);
    bench_cpu_free(x->cpu);
    bench_reference_free(&x->ref);
    refvm_st_close(x->st);
    ir_program_free(x->p);
    free(x->cert);
}

/* The run options every timed source shares. */
static bench_run_opts run_opts(const bench_state *x)
{
    return (bench_run_opts){.steps = x->a.steps, .repeats = x->a.repeats,
                            .warmup = x->a.warmup, .weight_bytes = x->c.wb,
                            .spec_bandwidth_gbs = x->c.t->hbm_bandwidth_gbs};
}

/* The CPU reference VM timed, each step checked against the eager forward. */
static ir_status time_cpu(bench_state *x, ir_error *err)
{
    x->c.against = "eager reference forward, every timed step";
    x->c.baseline_note = "needs a GPU: the cuBLAS graph baseline runs next to the megakernel";
    ir_status s = bench_cpu_new(x->p, x->st, &x->m, &x->cpu, err);
    if (s != IR_OK)
        return s;
    if (x->a.steps > bench_cpu_max_steps(x->cpu))
        return ir_fail(err, IR_ERR_MALFORMED, "--steps", "%lld steps exceed the program's "
                       "max_seq %lld", (long long)x->a.steps,
                       (long long)bench_cpu_max_steps(x->cpu));
    bench_timing_source src = bench_cpu_source(x->cpu);
    bench_run_opts o = run_opts(x);
    return bench_run(&src, &o, &x->r, err);
}

/* The megakernel timed, interleaved with the cuBLAS baseline when that builds. */
static ir_status time_gpu_runs(bench_state *x, ir_error *err)
{
    bench_timing_source gsrc = bench_gpu_source(x->gpu);
    if (!x->a.no_baseline) {
        ir_error berr = {0};
        if (bench_baseline_new(&x->m, x->st, x->a.device, &x->ref, &x->base, &berr) != IR_OK)
            snprintf(x->base_note, sizeof x->base_note, "the baseline could not be built: %s at "
                     "%.200s: %.300s", ir_status_name(berr.status), berr.where, berr.why);
    } else {
        snprintf(x->base_note, sizeof x->base_note, "--no-baseline");
    }
    x->c.baseline_note = x->base_note;
    if (!x->base) {
        bench_run_opts o = run_opts(x);
        return bench_run(&gsrc, &o, &x->r, err);
    }
    bench_timing_source bsrc = bench_baseline_source(x->base);
    bench_ab_opts o;
    bench_ab_opts_default(&o);
    o.run = run_opts(x);
    o.resamples = x->a.resamples;
    o.seed = x->a.seed;
    ir_status s = bench_ab_run(&bsrc, &gsrc, &o, &x->ab, err);
    if (s == IR_OK) {
        x->c.ab = &x->ab;
        x->c.baseline_library = bench_baseline_library(x->base);
        x->res = &x->ab.candidate;
    }
    return s;
}

/* The GPU path: reference logits, the megakernel loaded, then timed. CMD_CONTINUE, or the exit
 * code of a load the megakernel refused (printed); *s an error left to report. */
static int time_gpu(bench_state *x, ir_status *s, ir_error *err)
{
    x->c.against = "reference VM logits of the same steps and tokens (computed once), every "
                   "timed step";
    if ((*s = bench_reference_compute(x->p, x->st, x->m.tie_embeddings, x->a.steps, NULL,
                                      &x->ref, err)) != IR_OK)
        return CMD_CONTINUE;
    x->c.ref = &x->ref;
    mk_status ls = MK_OK;
    *s = bench_gpu_new(x->p, x->cert, x->cert_len, x->a.weights, x->m.tie_embeddings,
                       x->a.device, &x->ref, NULL, &x->gpu, &ls, err);
    if (*s != IR_OK && ls != MK_OK) {   /* MK_OK: the load worked; what followed did not */
        if (x->a.json)
            cmd_print_status_json(mk_status_name(ls), err);
        fprintf(stderr, "amk bench: the megakernel did not load: %s at %s: %s\n",
                mk_status_name(ls), err->where, err->why);
        *s = IR_OK;
        return exit_for_load(ls);
    }
    if (*s == IR_OK)
        *s = time_gpu_runs(x, err);
    return CMD_CONTINUE;
}

/* A certificate that does not check: nothing is timed (exit 1). */
static int refuse_cert(const bench_state *x, const ir_error *err)
{
    if (x->a.json) {
        printf("{\"verdict\": \"REFUSED\", \"certificate\": ");
        cmd_put_json_string(stdout, x->a.cert);
        printf(", \"why\": ");
        cmd_put_json_string(stdout, err->why);
        printf("}\n");
    }
    fprintf(stderr, "amk bench: refusing to time %s: certificate %s does not check (%s: %s)\n",
            x->a.program, x->a.cert, err->where, err->why);
    return AMK_EXIT_REFUTED;
}

/* Program, certificate, device, floor target, model and weights. CMD_CONTINUE, or the exit
 * code of a refused certificate; *s an error left to report. */
static int bench_prepare(bench_state *x, bool *on_gpu, ir_status *s, ir_error *err)
{
    const bench_args *a = &x->a;
    if ((*s = ir_read_file(a->program, NULL, &x->p, err)) != IR_OK)
        return CMD_CONTINUE;
    cmd_cert_status cs = cmd_check_cert(a->cert, x->p, &x->cert, &x->cert_len, err);
    if (cs == CMD_CERT_INVALID)
        return refuse_cert(x, err);
    if (cs == CMD_CERT_UNREADABLE) {
        *s = err->status;
        return CMD_CONTINUE;
    }
    *on_gpu = !a->cpu && bench_gpu_available(x->device, sizeof x->device, x->why_cpu,
                                             sizeof x->why_cpu);
    if (a->cpu)
        snprintf(x->why_cpu, sizeof x->why_cpu, "--cpu asked for the reference VM");
    x->c.device = *on_gpu ? x->device : NULL;
    x->c.gpu_note = *on_gpu ? NULL : x->why_cpu;
    if (!(x->c.t = floor_target(a, x->p, x->c.device, err))) {
        *s = err->status;
        return CMD_CONTINUE;
    }
    *s = a->model ? lower_model_load(a->model, &x->m, err) : lower_model_from_meta(x->p, &x->m,
                                                                                     err);
    if (*s == IR_OK)
        *s = refvm_st_open(a->weights, &x->st, err);
    x->c.wb = ir_weight_bytes(x->p);
    return CMD_CONTINUE;
}

/* The steps of a bench; CMD_CONTINUE with *s set when an error is left to report. */
static int bench_steps(bench_state *x, ir_status *s, ir_error *err)
{
    bool on_gpu = false;
    int rc = bench_prepare(x, &on_gpu, s, err);
    if (rc != CMD_CONTINUE || *s != IR_OK)
        return rc;
    if (!on_gpu)
        *s = time_cpu(x, err);
    else if ((rc = time_gpu(x, s, err)) != CMD_CONTINUE)
        return rc;
    if (*s != IR_OK)
        return CMD_CONTINUE;
    if (x->a.plot && (*s = write_plot(&x->c, x->res, err)) != IR_OK)
        return CMD_CONTINUE;
    if (x->a.json) {
        if ((*s = print_json(&x->c, x->res, err)) != IR_OK)
            return CMD_CONTINUE;
    } else {
        print_text(&x->c, x->res);
    }
    return x->res->has_latency ? AMK_EXIT_OK : AMK_EXIT_REFUTED;
}

int cmd_bench(int argc, char **argv)
{
    bench_state x;
    memset(&x, 0, sizeof x);
    int rc = parse_args(argc, argv, &x.a);
    if (rc != CMD_CONTINUE)
        return rc;
    x.c.a = &x.a;
    x.res = &x.r;
    ir_error err = {0};
    ir_status s = IR_OK;
    rc = bench_steps(&x, &s, &err);
    if (rc == CMD_CONTINUE) {
        cmd_report_error("amk bench", x.a.json, &err);
        rc = cmd_exit_for(s);
        if (!strcmp(err.where, "cuda") || !strcmp(err.where, "cublas"))
            rc = AMK_EXIT_REFUTED;   /* a CUDA call failed, as amk launch says */
    }
    bench_free(&x);
    return rc;
}
