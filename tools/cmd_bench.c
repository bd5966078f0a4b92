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

static void usage(FILE *f)
{
    fprintf(f,
            "usage: amk bench PROGRAM --cert CERT --weights FILE [options]\n"
            "\n"
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
            "never a GPU figure), each step checked against the eager forward.\n"
            "\n"
            "  --cert CERT        PROVED certificate of PROGRAM (amk-verify --cert); required,\n"
            "                     re-checked without Z3 (amk cert check) before anything runs\n"
            "  --weights FILE     safetensors weights\n"
            "  --steps N          tokens per repeat, positions 0..N-1 (default 16)\n"
            "  --repeats R        timed repeats (default 10); median, p10, p90 over them\n"
            "  --warmup W         untimed repeats first (default 1; still gated)\n"
            "  --model MODEL      model for the eager forward and the baseline (default:\n"
            "                     meta.model_config)\n"
            "  --target NAME      target whose spec bandwidth gives the floor (default: the\n"
            "                     GPU's own when it is a built-in target, else the program's)\n"
            "  --device D         CUDA device ordinal (default 0)\n"
            "  --cpu              time the CPU reference VM even when a GPU is present\n"
            "  --no-baseline      GPU: time the megakernel alone\n"
            "  --seed N           bootstrap seed (default %u)\n"
            "  --resamples N      bootstrap resamples (default %d)\n"
            "  --plot FILE.svg    write a roofline chart (latency vs both floors)\n"
            "  --json             one JSON object on stdout\n"
            "\n"
            "exit: 0 the program's latency reported with PASS, 1 gate FAIL or latency withheld,\n"
            "the certificate does not check, the GPU refused the plan or a CUDA call failed,\n"
            "2 malformed input or bad usage.\n",
            REFVM_GATE_REL_TOL, BENCH_BASELINE_REL_TOL, (unsigned)BENCH_BOOTSTRAP_SEED,
            BENCH_BOOTSTRAP_RESAMPLES);
}

typedef struct {
    const char *program, *cert, *weights, *model, *target, *plot;
    int64_t steps;
    int repeats, warmup, device, resamples;
    uint64_t seed;
    bool json, cpu, no_baseline;
} bench_args;

static bool parse_int(const char *v, long long lo, long long hi, long long *out)
{
    char *end;
    long long x = strtoll(v, &end, 10);
    if (!*v || *end || x < lo || x > hi)
        return false;
    *out = x;
    return true;
}

static int parse_args(int argc, char **argv, bench_args *a)
{
    memset(a, 0, sizeof *a);
    a->steps = 16;
    a->repeats = 10;
    a->warmup = 1;
    a->seed = BENCH_BOOTSTRAP_SEED;
    a->resamples = BENCH_BOOTSTRAP_RESAMPLES;
    static const struct {
        const char *flag;
        long long lo, hi;
    } ints[] = {{"--steps", 1, 1000000}, {"--repeats", 1, 100000}, {"--warmup", 0, 100000},
                {"--device", 0, 1023},   {"--resamples", 100, 10000000},
                {"--seed", 0, 0x7fffffffffffffffLL}};
    for (int i = 1; i < argc; i++) {
        const char *k = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        long long x;
        int which = -1;
        for (int j = 0; j < (int)(sizeof ints / sizeof ints[0]); j++)
            if (!strcmp(k, ints[j].flag))
                which = j;
        if (!strcmp(k, "--help") || !strcmp(k, "-h")) {
            usage(stdout);
            return -1;
        } else if (!strcmp(k, "--json")) {
            a->json = true;
        } else if (!strcmp(k, "--cpu")) {
            a->cpu = true;
        } else if (!strcmp(k, "--no-baseline")) {
            a->no_baseline = true;
        } else if (!strcmp(k, "--cert") && v) {
            a->cert = argv[++i];
        } else if (!strcmp(k, "--weights") && v) {
            a->weights = argv[++i];
        } else if (!strcmp(k, "--model") && v) {
            a->model = argv[++i];
        } else if (!strcmp(k, "--target") && v) {
            a->target = argv[++i];
        } else if (!strcmp(k, "--plot") && v) {
            a->plot = argv[++i];
        } else if (which >= 0 && v) {
            if (!parse_int(argv[++i], ints[which].lo, ints[which].hi, &x)) {
                fprintf(stderr, "amk bench: %s must be an integer in [%lld, %lld]\n", k,
                        ints[which].lo, ints[which].hi);
                return AMK_EXIT_MALFORMED;
            }
            switch (which) {
            case 0: a->steps = x; break;
            case 1: a->repeats = (int)x; break;
            case 2: a->warmup = (int)x; break;
            case 3: a->device = (int)x; break;
            case 4: a->resamples = (int)x; break;
            default: a->seed = (uint64_t)x; break;
            }
        } else if (k[0] != '-' && !a->program) {
            a->program = k;
        } else {
            fprintf(stderr, "amk bench: unknown or incomplete argument '%s'\n", k);
            usage(stderr);
            return AMK_EXIT_MALFORMED;
        }
    }
    if (!a->program || !a->weights) {
        fprintf(stderr, "amk bench: PROGRAM and --weights are required\n");
        usage(stderr);
        return AMK_EXIT_MALFORMED;
    }
    if (!a->cert) {
        fprintf(stderr, "amk bench: refusing to time %s without --cert: only a program with a "
                "PROVED certificate is benchmarked (make one with amk-verify %s --cert OUT)\n",
                a->program, a->program);
        return AMK_EXIT_MALFORMED;
    }
    return 0;
}

/* The whole file as a malloc'd string (*len bytes), or NULL with err filled. */
static char *slurp(const char *path, size_t *len, ir_error *err)
{
    char *t = NULL;
    return ir_read_text_file(path, IR_MAX_FILE_BYTES, &t, len, err) == IR_OK ? t : NULL;
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

int cmd_bench(int argc, char **argv)
{
    bench_args a;
    int rc = parse_args(argc, argv, &a);
    if (rc)
        return rc < 0 ? AMK_EXIT_OK : rc;
    ir_error err = {0};
    ir_program *p = NULL;
    refvm_st *st = NULL;
    bench_cpu *cpu = NULL;
    bench_gpu *gpu = NULL;
    bench_baseline *base = NULL;
    bench_reference ref = {0};
    bench_run_result r = {0};
    bench_ab_result ab = {0};
    char *cert = NULL;
    int exit_code = AMK_EXIT_OK;
    ir_status s;
    lower_model m;
    char device[256] = "", why_cpu[256] = "", base_note[600] = "";
    bench_ctx c = {.a = &a};
    const bench_run_result *res = &r;

    if ((s = ir_read_file(a.program, NULL, &p, &err)) != IR_OK)
        goto fail;
    size_t cert_len;
    if (!(cert = slurp(a.cert, &cert_len, &err))) {
        s = err.status;
        goto fail;
    }
    ir_status cs = verify_cert_check(cert, cert_len, p, &err);
    if (cs != IR_OK && cs != IR_ERR_MALFORMED) {
        /* not a certificate at all (truncated, another kind or format): bad input, exit 2 */
        cmd_error_in_file(&err, a.cert);
        s = cs;
        goto fail;
    }
    if (cs != IR_OK) {
        if (a.json) {
            printf("{\"verdict\": \"REFUSED\", \"certificate\": ");
            cmd_put_json_string(stdout, a.cert);
            printf(", \"why\": ");
            cmd_put_json_string(stdout, err.why);
            printf("}\n");
        }
        fprintf(stderr, "amk bench: refusing to time %s: certificate %s does not check (%s: "
                "%s)\n", a.program, a.cert, err.where, err.why);
        exit_code = AMK_EXIT_REFUTED;
        goto done;
    }
    bool on_gpu = a.cpu ? false : bench_gpu_available(device, sizeof device, why_cpu,
                                                      sizeof why_cpu);
    if (a.cpu)
        snprintf(why_cpu, sizeof why_cpu, "--cpu asked for the reference VM");
    c.device = on_gpu ? device : NULL;
    c.gpu_note = on_gpu ? NULL : why_cpu;
    if (!(c.t = floor_target(&a, p, c.device, &err))) {
        s = err.status;
        goto fail;
    }
    if ((s = a.model ? lower_model_load(a.model, &m, &err) : lower_model_from_meta(p, &m, &err))
        != IR_OK)
        goto fail;
    if ((s = refvm_st_open(a.weights, &st, &err)) != IR_OK)
        goto fail;
    c.wb = ir_weight_bytes(p);

    if (!on_gpu) {
        c.against = "eager reference forward, every timed step";
        c.baseline_note = "needs a GPU: the cuBLAS graph baseline runs next to the megakernel";
        if ((s = bench_cpu_new(p, st, &m, &cpu, &err)) != IR_OK)
            goto fail;
        if (a.steps > bench_cpu_max_steps(cpu)) {
            s = ir_fail(&err, IR_ERR_MALFORMED, "--steps", "%lld steps exceed the program's "
                        "max_seq %lld", (long long)a.steps, (long long)bench_cpu_max_steps(cpu));
            goto fail;
        }
        bench_timing_source src = bench_cpu_source(cpu);
        bench_run_opts o = {.steps = a.steps, .repeats = a.repeats, .warmup = a.warmup,
                            .weight_bytes = c.wb, .spec_bandwidth_gbs = c.t->hbm_bandwidth_gbs};
        if ((s = bench_run(&src, &o, &r, &err)) != IR_OK)
            goto fail;
    } else {
        c.against = "reference VM logits of the same steps and tokens (computed once), every "
                    "timed step";
        if ((s = bench_reference_compute(p, st, m.tie_embeddings, a.steps, NULL, &ref, &err))
            != IR_OK)
            goto fail;
        c.ref = &ref;
        mk_status ls = MK_OK;
        if ((s = bench_gpu_new(p, cert, cert_len, a.weights, m.tie_embeddings, a.device, &ref,
                               NULL, &gpu, &ls, &err)) != IR_OK) {
            if (ls == MK_OK) /* the load worked; what followed did not */
                goto fail;
            if (a.json) {
                printf("{\"status\": \"%s\", \"where\": ", mk_status_name(ls));
                cmd_put_json_string(stdout, err.where);
                printf(", \"why\": ");
                cmd_put_json_string(stdout, err.why);
                printf("}\n");
            }
            fprintf(stderr, "amk bench: the megakernel did not load: %s at %s: %s\n",
                    mk_status_name(ls), err.where, err.why);
            exit_code = exit_for_load(ls);
            goto done;
        }
        bench_timing_source gsrc = bench_gpu_source(gpu);
        if (!a.no_baseline) {
            ir_error berr = {0};
            if (bench_baseline_new(&m, st, a.device, &ref, &base, &berr) != IR_OK)
                snprintf(base_note, sizeof base_note, "the baseline could not be built: %s at "
                         "%.200s: %.300s", ir_status_name(berr.status), berr.where, berr.why);
        } else {
            snprintf(base_note, sizeof base_note, "--no-baseline");
        }
        c.baseline_note = base_note;
        if (base) {
            bench_timing_source bsrc = bench_baseline_source(base);
            bench_ab_opts o;
            bench_ab_opts_default(&o);
            o.run = (bench_run_opts){.steps = a.steps, .repeats = a.repeats, .warmup = a.warmup,
                                     .weight_bytes = c.wb,
                                     .spec_bandwidth_gbs = c.t->hbm_bandwidth_gbs};
            o.resamples = a.resamples;
            o.seed = a.seed;
            if ((s = bench_ab_run(&bsrc, &gsrc, &o, &ab, &err)) != IR_OK)
                goto fail;
            c.ab = &ab;
            c.baseline_library = bench_baseline_library(base);
            res = &ab.candidate;
        } else {
            bench_run_opts o = {.steps = a.steps, .repeats = a.repeats, .warmup = a.warmup,
                                .weight_bytes = c.wb,
                                .spec_bandwidth_gbs = c.t->hbm_bandwidth_gbs};
            if ((s = bench_run(&gsrc, &o, &r, &err)) != IR_OK)
                goto fail;
        }
    }
    if (a.plot && (s = write_plot(&c, res, &err)) != IR_OK)
        goto fail;
    if (a.json) {
        if ((s = print_json(&c, res, &err)) != IR_OK)
            goto fail;
    } else {
        print_text(&c, res);
    }
    exit_code = res->has_latency ? AMK_EXIT_OK : AMK_EXIT_REFUTED;
    goto done;
fail:
    if (a.json)
        cmd_print_error_json(&err);
    else
        cmd_print_error("amk bench", &err);
    exit_code = cmd_exit_for(s);
    if (!strcmp(err.where, "cuda") || !strcmp(err.where, "cublas"))
        exit_code = AMK_EXIT_REFUTED;   /* a CUDA call failed, as amk launch says */
done:
    bench_ab_result_free(&ab);
    bench_run_result_free(&r);
    bench_baseline_free(base);
    bench_gpu_free(gpu);
    bench_cpu_free(cpu);
    bench_reference_free(&ref);
    refvm_st_close(st);
    ir_program_free(p);
    free(cert);
    return exit_code;
}
