/*
 * cmd_bench.c - `amk bench PROGRAM --cert CERT --weights W`: time a proved program with its
 * correctness gate from the same run, against the roofline floor (SPEC.md section 14).
 *
 * This build has no GPU timing source, so the program is timed on the CPU reference VM and
 * every figure is labelled cpu-reference. The certificate is the contract: a program whose
 * certificate does not check is not timed at all.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "bench/bench.h"
#include "tools/cmd.h"
#include "verify/verify.h"

static void usage(FILE *f)
{
    fprintf(f,
            "usage: amk bench PROGRAM --cert CERT --weights FILE [options]\n"
            "\n"
            "Time a program per token with the correctness gate of the same run. Without a GPU\n"
            "megakernel build it times the CPU reference VM (label cpu-reference; never a GPU\n"
            "figure), each step checked against the eager forward. No PASS: no latency, only the\n"
            "reason. A latency below the roofline floor (weight bytes / bandwidth) is withheld.\n"
            "\n"
            "  --cert CERT        PROVED certificate of PROGRAM (amk-verify --cert); required,\n"
            "                     re-checked without Z3 (amk cert check) before anything runs\n"
            "  --weights FILE     safetensors weights\n"
            "  --steps N          tokens per repeat, positions 0..N-1 (default 16)\n"
            "  --repeats R        timed repeats (default 10); median, p10, p90 over them\n"
            "  --warmup W         untimed repeats first (default 1; still gated)\n"
            "  --model MODEL      model for the eager forward (default: meta.model_config)\n"
            "  --target NAME      target whose spec bandwidth gives the floor (default: the\n"
            "                     program's)\n"
            "  --plot FILE.svg    write a roofline chart (latency vs floor)\n"
            "  --json             one JSON object on stdout\n"
            "\n"
            "exit: 0 latency reported with PASS, 1 gate FAIL or latency withheld or the\n"
            "certificate does not check, 2 malformed input or bad usage.\n");
}

typedef struct {
    const char *program, *cert, *weights, *model, *target, *plot;
    int64_t steps;
    int repeats, warmup;
    bool json;
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
    for (int i = 1; i < argc; i++) {
        const char *k = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        long long x;
        if (!strcmp(k, "--help") || !strcmp(k, "-h")) {
            usage(stdout);
            return -1;
        } else if (!strcmp(k, "--json")) {
            a->json = true;
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
        } else if (!strcmp(k, "--steps") && v) {
            if (!parse_int(argv[++i], 1, 1000000, &x)) {
                fprintf(stderr, "amk bench: --steps must be an integer in [1, 1000000]\n");
                return AMK_EXIT_MALFORMED;
            }
            a->steps = x;
        } else if (!strcmp(k, "--repeats") && v) {
            if (!parse_int(argv[++i], 1, 100000, &x)) {
                fprintf(stderr, "amk bench: --repeats must be an integer in [1, 100000]\n");
                return AMK_EXIT_MALFORMED;
            }
            a->repeats = (int)x;
        } else if (!strcmp(k, "--warmup") && v) {
            if (!parse_int(argv[++i], 0, 100000, &x)) {
                fprintf(stderr, "amk bench: --warmup must be an integer in [0, 100000]\n");
                return AMK_EXIT_MALFORMED;
            }
            a->warmup = (int)x;
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
    FILE *f = fopen(path, "rb");
    if (!f) {
        ir_fail(err, IR_ERR_IO, path, "cannot open");
        return NULL;
    }
    size_t cap = 1 << 16;
    char *t = malloc(cap);
    *len = 0;
    while (t) {
        *len += fread(t + *len, 1, cap - *len, f);
        if (*len < cap)
            break;
        char *b = cap < ((size_t)64 << 20) ? realloc(t, cap * 2) : NULL;
        if (!b)
            free(t);
        t = b;
        cap *= 2;
    }
    fclose(f);
    if (!t)
        ir_fail(err, IR_ERR_IO, path, "too large or out of memory");
    return t;
}

static void print_json(const bench_args *a, const ir_target *t, int64_t wb,
                       const bench_run_result *r)
{
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "source", r->label);
    cJSON_AddBoolToObject(o, "gpu", r->is_gpu);
    cJSON_AddStringToObject(o, "program", a->program);
    cJSON_AddStringToObject(o, "certificate", a->cert);
    cJSON_AddStringToObject(o, "target", t->name);
    cJSON_AddNumberToObject(o, "steps", (double)r->steps);
    cJSON_AddNumberToObject(o, "repeats", r->repeats);
    cJSON *g = cJSON_AddObjectToObject(o, "correctness");
    cJSON_AddStringToObject(g, "verdict", r->gate.pass ? "PASS" : "FAIL");
    cJSON_AddStringToObject(g, "against", "eager reference forward, every timed step");
    cJSON_AddNumberToObject(g, "compared", (double)r->gate.compared);
    cJSON_AddNumberToObject(g, "top1_agree", (double)r->gate.top1_agree);
    cJSON_AddNumberToObject(g, "max_abs_err", r->gate.max_abs_err);
    cJSON_AddNumberToObject(g, "max_rel_err", r->gate.max_rel_err);
    cJSON_AddNumberToObject(g, "tol_rel", REFVM_GATE_REL_TOL);
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
    cJSON *rf = cJSON_AddObjectToObject(o, "roofline");
    cJSON_AddNumberToObject(rf, "weight_bytes", (double)wb);
    cJSON_AddNumberToObject(rf, "spec_bandwidth_gbs", t->hbm_bandwidth_gbs);
    cJSON_AddNumberToObject(rf, "spec_floor_us", r->spec_floor_us);
    if (r->has_latency) {
        cJSON_AddNumberToObject(rf, "pct_of_spec_floor", r->pct_of_spec_floor);
        cJSON_AddNumberToObject(rf, "achieved_gbs", r->achieved_gbs);
    }
    if (r->has_measured_bw) {
        cJSON_AddNumberToObject(rf, "measured_bandwidth_gbs", r->measured_bw_gbs);
        cJSON_AddNumberToObject(rf, "measured_floor_us", r->measured_floor_us);
    } else {
        cJSON_AddNullToObject(rf, "measured_bandwidth_gbs");
        cJSON_AddStringToObject(rf, "measured_floor", "needs a GPU: the measured-bandwidth "
                                "floor comes from a streaming-read kernel in the same run");
    }
    if (a->plot)
        cJSON_AddStringToObject(o, "plot", a->plot);
    else
        cJSON_AddNullToObject(o, "plot");
    char *s = cJSON_Print(o);
    if (s)
        printf("%s\n", s);
    cJSON_free(s);
    cJSON_Delete(o);
}

static void print_text(const bench_args *a, const ir_target *t, int64_t wb,
                       const bench_run_result *r)
{
    printf("bench: %s on %s (%s)\n", a->program, r->label,
           r->is_gpu ? "GPU" : "the CPU reference VM; not a GPU figure");
    printf("certificate: %s checks (PROVED, hash matches)\n", a->cert);
    printf("correctness: %s  VM vs eager on every timed step: %lld compared, top-1 %lld/%lld, "
           "max |err| %.3g (%.3g of max |logit|, tolerance %g)\n",
           r->gate.pass ? "PASS" : "FAIL", (long long)r->gate.compared,
           (long long)r->gate.top1_agree, (long long)r->gate.compared, r->gate.max_abs_err,
           r->gate.max_rel_err, REFVM_GATE_REL_TOL);
    if (r->has_latency)
        printf("latency per token [%s]: median %.4g us, p10 %.4g us, p90 %.4g us (%d repeats x "
               "%lld steps)\n", r->label, r->latency.s.median, r->latency.s.p10,
               r->latency.s.p90, r->repeats, (long long)r->steps);
    else
        printf("latency per token [%s]: %s\n", r->label, r->withheld_why);
    printf("roofline floor [%s spec %.6g GB/s]: %.4g us for %lld weight bytes",
           t->name, t->hbm_bandwidth_gbs, r->spec_floor_us, (long long)wb);
    if (r->has_latency)
        printf("; median is %.4g%% of the floor, achieved %.4g GB/s [%s]\n", r->pct_of_spec_floor,
               r->achieved_gbs, r->label);
    else
        printf("\n");
    if (r->has_measured_bw)
        printf("roofline floor [measured %.6g GB/s]: %.4g us\n", r->measured_bw_gbs,
               r->measured_floor_us);
    else
        printf("roofline floor [measured bandwidth]: needs a GPU (a streaming-read kernel in the "
               "same run); not measured on %s\n", r->label);
    if (a->plot)
        printf("plot: %s\n", a->plot);
}

static ir_status write_plot(const char *path, const char *title, const ir_target *t, int64_t wb,
                            const bench_run_result *r, ir_error *err)
{
    char spec[IR_MAX_NAME + 8];
    snprintf(spec, sizeof spec, "%s spec", t->name);
    bench_plot pl = {
        .title = title, .label = r->label, .weight_bytes = wb,
        .spec_bandwidth_gbs = t->hbm_bandwidth_gbs, .spec_name = spec,
        .measured_bandwidth_gbs = r->has_measured_bw ? r->measured_bw_gbs : 0,
        .has_latency = r->has_latency, .median_us = r->latency.s.median,
        .p10_us = r->latency.s.p10, .p90_us = r->latency.s.p90,
        .withheld_why = r->withheld_why,
    };
    char *svg = NULL;
    ir_status s = bench_roofline_svg(&pl, &svg, err);
    if (s != IR_OK)
        return s;
    FILE *f = fopen(path, "wb");
    size_t n = strlen(svg);
    bool ok = f && fwrite(svg, 1, n, f) == n;
    if (f && fclose(f) != 0)
        ok = false;
    free(svg);
    return ok ? IR_OK : ir_fail(err, IR_ERR_IO, path, "cannot write the plot");
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
    bench_run_result r = {0};
    char *cert = NULL;
    int exit_code = AMK_EXIT_OK;
    ir_status s;
    lower_model m;

    if ((s = ir_read_file(a.program, NULL, &p, &err)) != IR_OK)
        goto fail;
    size_t cert_len;
    if (!(cert = slurp(a.cert, &cert_len, &err))) {
        s = err.status;
        goto fail;
    }
    if (verify_cert_check(cert, cert_len, p, &err) != IR_OK) {
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
    const ir_target *t = a.target ? ir_target_builtin(a.target) : p->has_target ? &p->target : NULL;
    if (!t) {
        s = ir_fail(&err, IR_ERR_MALFORMED, a.target ? "--target" : "target", a.target
                    ? "unknown target '%s'" : "the program names no target%s: pass --target",
                    a.target ? a.target : "");
        goto fail;
    }
    if (!(t->hbm_bandwidth_gbs > 0)) {
        s = ir_fail(&err, IR_ERR_MALFORMED, "target.hbm_bandwidth_gbs", "target %s has no spec "
                    "bandwidth", t->name);
        goto fail;
    }
    if ((s = a.model ? lower_model_load(a.model, &m, &err) : lower_model_from_meta(p, &m, &err))
        != IR_OK)
        goto fail;
    if ((s = refvm_st_open(a.weights, &st, &err)) != IR_OK ||
        (s = bench_cpu_new(p, st, &m, &cpu, &err)) != IR_OK)
        goto fail;
    if (a.steps > bench_cpu_max_steps(cpu)) {
        s = ir_fail(&err, IR_ERR_MALFORMED, "--steps", "%lld steps exceed the program's max_seq "
                    "%lld", (long long)a.steps, (long long)bench_cpu_max_steps(cpu));
        goto fail;
    }
    int64_t wb = ir_weight_bytes(p);
    bench_timing_source src = bench_cpu_source(cpu);
    bench_run_opts o = {.steps = a.steps, .repeats = a.repeats, .warmup = a.warmup,
                        .weight_bytes = wb, .spec_bandwidth_gbs = t->hbm_bandwidth_gbs};
    if ((s = bench_run(&src, &o, &r, &err)) != IR_OK)
        goto fail;
    if (a.plot && (s = write_plot(a.plot, a.program, t, wb, &r, &err)) != IR_OK)
        goto fail;
    if (a.json)
        print_json(&a, t, wb, &r);
    else
        print_text(&a, t, wb, &r);
    exit_code = r.has_latency ? AMK_EXIT_OK : AMK_EXIT_REFUTED;
    goto done;
fail:
    if (a.json)
        cmd_print_error_json(&err);
    else
        cmd_print_error("amk bench", &err);
    exit_code = cmd_exit_for(s);
done:
    bench_run_result_free(&r);
    bench_cpu_free(cpu);
    refvm_st_close(st);
    ir_program_free(p);
    free(cert);
    return exit_code;
}
