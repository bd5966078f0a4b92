/*
 * bench_gpu_main.c - `make bench-gpu`: decode latency of the megakernel on a llama-3.2-1b-shape
 * model with random bf16 weights, against the device's own streaming-read bandwidth.
 *
 * Honesty rules of benchmarking (docs/DESIGN.md): every configuration timed is first checked
 * against the reference VM in the same run (logits within the gate tolerance on the first
 * steps); a latency is reported only with that PASS, and never below the bandwidth floor
 * (weight bytes / measured read bandwidth) -- such a number is withheld and explained instead.
 *
 * Built on the bench's own pieces: bench_gpu_available and bench_target_for_device pick the
 * device and its built-in target, bench_reference_compute gives the reference logits,
 * bench_gate_step compares each checked step, bench_summarize and bench_floor_us give the
 * figures and the floor.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "base/base.h"
#include "bench/bench_run.h"
#include "verify/verify.h"

#define CHECK_STEPS 3
#define MAX_CONFIGS 32

/* The command line. */
typedef struct {
    const char *dir, *model, *trace_path;
    int repeats;
    const char *cfgs[MAX_CONFIGS];
    int n_cfg;
    long long slot_bytes;
} gpu_args;

/* What one run needs throughout: the model, its weights, the device and the reference. */
typedef struct {
    lower_model m;
    const char *target;
    char devname[256];
    char wpath[512];
    double read_gbs;
    int32_t toks[CHECK_STEPS];
    bench_reference ref;
    ir_program *ref_prog;      /* the default plan (CONFIGS[0]) the reference ran */
    float *logits;             /* [vocab] */
} gpu_bench;

/* The best configuration timed so far, and its certificate for the profiled launch. */
typedef struct {
    double frac;               /* achieved / measured read bandwidth; 0: none yet */
    int cfg;
    char *cert;
} gpu_best;

static void die(const char *what, const ir_error *err)
{
    fprintf(stderr, "bench-gpu: %s: %s at %s: %s\n", what, ir_status_name(err->status), err->where,
            err->why);
    exit(1);
}

static void die_nomem(void)
{
    fprintf(stderr, "bench-gpu: out of memory\n");
    exit(1);
}

/* Lower the model under a ScheduleConfig given as JSON (AMK field names). */
static ir_program *lower_cfg(const lower_model *m, const char *target, const char *config_json)
{
    ir_config c;
    ir_error err = {0};
    if (ir_config_read_json(config_json, strlen(config_json), true, &c, &err) != IR_OK)
        die("config", &err);
    lower_opts o;
    lower_opts_default(&o);
    o.dtype = IR_BF16;
    o.sample_argmax = true;
    o.max_seq = 1024;
    ir_program *p = NULL;
    if (lower_program(m, &c, ir_target_builtin(target), &o, &p, &err) != IR_OK)
        die("lower", &err);
    ir_config_free(&c);
    return p;
}

#define FUSE_ALL "\"fusion_grouping\": [[\"attn_norm\", \"q\", \"k\", \"v\"], " \
                 "[\"rope_k\", \"kv_append_k\"], [\"o\", \"resid_attn\"], " \
                 "[\"mlp_norm\", \"gate\", \"up\"], [\"silu_mul\", \"down\", \"resid_mlp\"], " \
                 "[\"final_norm\", \"lm_head\"]]"
#define FUSE_ALL_ATTN "\"fusion_grouping\": [[\"attn_norm\", \"q\", \"k\", \"v\"], " \
                      "[\"rope_k\", \"kv_append_k\"], [\"rope_q\", \"attention\"], " \
                      "[\"o\", \"resid_attn\"], [\"mlp_norm\", \"gate\", \"up\"], " \
                      "[\"silu_mul\", \"down\", \"resid_mlp\"], [\"final_norm\", \"lm_head\"]]"

/* The configurations timed, the first also the reference for the VM check. */
static const char *const CONFIGS[] = {
    "{}",
    "{\"tiling\": {\"gemv\": {\"N_tile\": 32}}, \"threads_per_block\": 512, "
    "\"sm_assignment\": \"round_robin\"}",
    "{\"tiling\": {\"gemv\": {\"stage_tiles\": 132}}, \"threads_per_block\": 512, \"pipelining_depth\": 0, "
    "\"sm_assignment\": \"round_robin\", \"page_allocation\": \"none\", " FUSE_ALL "}",
    "{\"tiling\": {\"gemv\": {\"stage_tiles\": 132}, \"attention\": {\"kv_heads\": 1}}, "
    "\"threads_per_block\": 512, \"pipelining_depth\": 0, \"sm_assignment\": \"round_robin\", "
    "\"page_allocation\": \"none\", " FUSE_ALL_ATTN "}",
    "{\"tiling\": {\"gemv\": {\"stage_tiles\": 132}, \"attention\": {\"kv_heads\": 2}}, "
    "\"threads_per_block\": 512, \"pipelining_depth\": 0, \"sm_assignment\": \"round_robin\", "
    "\"page_allocation\": \"none\", " FUSE_ALL_ATTN "}",
    /* the same with the weight stream: 176 KiB of dynamic SMEM, 4 tasks of lookahead */
    "{\"tiling\": {\"gemv\": {\"stage_tiles\": 132}, \"attention\": {\"kv_heads\": 1}}, "
    "\"threads_per_block\": 512, \"pipelining_depth\": 4, \"smem_bytes_per_block\": 180224, "
    "\"sm_assignment\": \"round_robin\", \"page_allocation\": \"none\", " FUSE_ALL_ATTN "}",
};

/* ---------------------------------------------------------------- the command line */

/* Fill a from argv; 0 on success, else the exit code (0 for --help, 2 for a usage error)
 * after the usage text. */
static int parse_args(int argc, char **argv, gpu_args *a)
{
    *a = (gpu_args){.dir = "build/bench-gpu", .model = "llama-3.2-1b", .repeats = 100};
    int64_t slot = 0;
    base_opt_strings cfgs = {a->cfgs, 0, MAX_CONFIGS};
    const base_option opts[] = {
        BASE_STR("--dir", &a->dir, "D", "where the weights, programs and certificates go",
                 .show_default = true),
        BASE_STR("--model", &a->model, "PRESET", "the model preset", .show_default = true),
        BASE_INT("--repeats", &a->repeats, "N", 5, 10000, "timed launches per plan",
                 .show_default = true),
        BASE_STRS("--config", &cfgs, "JSON", "a ScheduleConfig replacing the built-in plan "
                  "list (repeatable)"),
        BASE_I64("--stream-slot", &slot, "BYTES", 0, INT64_MAX, "the weight stream's slot size, "
                 "a multiple of 16 (0: the default)"),
        BASE_STR("--trace", &a->trace_path, "CSV", "the per-task timeline of the profiled "
                 "launch"),
    };
    const base_cmdline cl = {
        .prog = "bench_gpu",
        .synopsis = "usage: bench_gpu [--dir D] [--model PRESET] [--repeats N] [--config JSON]... "
                    "[--stream-slot BYTES] [--trace CSV]\n",
        .about = "Decode on the megakernel with random bf16 weights: every plan proved and gated "
                 "against\nthe reference VM first, then its latency and weight bandwidth.\n",
        .opts = opts, .n_opts = (int)(sizeof opts / sizeof opts[0]),
        .epilog = "exit: 0 measured, 1 a plan failed its proof or gate, 2 usage or no GPU (skipped)\n",
    };
    char why[256];
    base_opts_status st = base_opts_parse(&cl, argc, argv, why, sizeof why);
    if (st == BASE_OPTS_OK && slot % 16) {
        snprintf(why, sizeof why, "--stream-slot: a multiple of 16 bytes (0 for the default)");
        st = BASE_OPTS_ERROR;
    }
    if (st != BASE_OPTS_OK) {
        base_sb u = {0};
        base_opts_usage(&cl, &u);
        if (st == BASE_OPTS_ERROR)
            fprintf(stderr, "bench_gpu: %s\n", why);
        fputs(u.s ? u.s : "", st == BASE_OPTS_HELP ? stdout : stderr);
        base_sb_free(&u);
        return st == BASE_OPTS_HELP ? -1 : 2;
    }
    a->n_cfg = cfgs.n;
    a->slot_bytes = slot;
    if (!a->n_cfg)
        for (; a->n_cfg < (int)(sizeof CONFIGS / sizeof CONFIGS[0]); a->n_cfg++)
            a->cfgs[a->n_cfg] = CONFIGS[a->n_cfg];
    return 0;
}

/* ---------------------------------------------------------------- setting up */

/* mkdir -p dir */
static void make_dirs(const char *dir)
{
    char path[512];
    snprintf(path, sizeof path, "%s", dir);
    for (char *q = path + 1; *q; q++)
        if (*q == '/') {
            *q = 0;
            mkdir(path, 0755);
            *q = '/';
        }
    mkdir(path, 0755);
}

/* The random bf16 weights of the model in dir, written once. */
static void ensure_weights(gpu_bench *g, const char *dir, const char *model)
{
    snprintf(g->wpath, sizeof g->wpath, "%s/%s.bf16.seed1.safetensors", dir, model);
    struct stat sb;
    if (stat(g->wpath, &sb) == 0)
        return;
    ir_error err = {0};
    double t0 = base_now_s();
    if (refvm_weights_random(&g->m, 1, IR_BF16, g->wpath, &err) != IR_OK)
        die("weights", &err);
    printf("weights: wrote %s (random bf16, seed 1) in %.1f s\n", g->wpath, base_now_s() - t0);
}

/* The ceiling: a plain streaming read far beyond L2. */
static void measure_bandwidth(gpu_bench *g)
{
    ir_error err = {0};
    if (mk_read_bandwidth(0, BENCH_BW_PROBE_BYTES, BENCH_BW_PROBE_REPEATS, &g->read_gbs, &err) !=
        MK_OK)
        die("bandwidth probe", &err);
    printf("device: %s (target %s); streaming read %.0f GB/s (median of %d passes over %lld "
           "GiB)\n", g->devname, g->target, g->read_gbs, BENCH_BW_PROBE_REPEATS,
           (long long)(BENCH_BW_PROBE_BYTES >> 30));
}

/* Reference logits from the VM for the first steps of the default plan. */
static void compute_reference(gpu_bench *g)
{
    ir_error err = {0};
    refvm_st *st = NULL;
    g->ref_prog = lower_cfg(&g->m, g->target, CONFIGS[0]);
    double t0 = base_now_s();
    if (refvm_st_open(g->wpath, &st, &err) != IR_OK ||
        bench_reference_compute(g->ref_prog, st, g->m.tie_embeddings, CHECK_STEPS, g->toks,
                                &g->ref, &err) != IR_OK)
        die("reference VM", &err);
    printf("reference VM: %d steps in %.1f s (bind included)\n", CHECK_STEPS, base_now_s() - t0);
    refvm_st_close(st);
}

/* ---------------------------------------------------------------- one configuration */

/* The first CHECK_STEPS launches against the reference; prints the verdict line. */
static bool check_config(gpu_bench *g, mk_handle *h, const char *cfg, const ir_program *p,
                         double verify_s, mk_step_status *ss)
{
    ir_error err = {0};
    bench_gate gate = {.pass = true};
    bool picks_ok = true;
    for (int k = 0; k < CHECK_STEPS; k++) {
        if (mk_step(h, g->toks[k], k, g->logits, ss, &err) != MK_OK)
            die("mk_step", &err);
        bench_gate_step(&gate, g->logits, g->ref.logits + (int64_t)k * g->m.vocab, g->m.vocab,
                        REFVM_GATE_REL_TOL, false, k);
        /* the token the kernel picked, against the lowest index of its largest logit */
        picks_ok = picks_ok && ss->next_token == refvm_argmax(g->logits, g->m.vocab);
    }
    bool pass = gate.pass && picks_ok;
    printf("config %s\n  %d tasks, PROVED in %.1f s; correctness %s (GPU vs VM, %d steps, max "
           "rel err %.2g, tolerance %g)\n", cfg, p->n_tasks, verify_s, pass ? "PASS" : "FAIL",
           CHECK_STEPS, gate.max_rel_err, REFVM_GATE_REL_TOL);
    return pass;
}

static void print_plan_notes(const mk_handle *h)
{
    int slots;
    int64_t sbytes, stasks;
    mk_stream_info(h, &slots, &sbytes, &stasks);
    if (slots)
        printf("  weight stream: %lld tasks, %d SMEM slots of %lld B\n", (long long)stasks,
               slots, (long long)sbytes);
    if (mk_argmax_tiles(h))
        printf("  argmax over %lld tile %s\n", (long long)mk_argmax_tiles(h),
               mk_argmax_tiles(h) == 1 ? "maximum" : "maxima");
}

/* Time `repeats` launches after the checked ones; prints the latency line (or why it is
 * withheld) and returns the achieved fraction of the read bandwidth (0 when withheld). */
static double time_config(gpu_bench *g, mk_handle *h, int repeats, int32_t tok)
{
    ir_error err = {0};
    mk_step_status ss;
    double *ms = malloc(sizeof *ms * (size_t)repeats), wall0 = base_now_s();
    if (!ms)
        die_nomem();
    for (int r = 0; r < repeats; r++) {
        if (mk_step(h, tok, CHECK_STEPS + r, g->logits, &ss, &err) != MK_OK)
            die("mk_step", &err);
        ms[r] = ss.ms;
        tok = ss.next_token;
    }
    double wall = (base_now_s() - wall0) / repeats * 1e3;
    bench_summary s;
    if (bench_summarize(ms, repeats, &s, &err) != IR_OK)
        die("summary", &err);
    free(ms);
    double wb = (double)mk_weight_bytes(h);
    double floor_ms = bench_floor_us(mk_weight_bytes(h), g->read_gbs) * 1e-3;
    if (s.median < floor_ms) {
        printf("  latency WITHHELD: median %.4f ms is below the bandwidth floor %.4f ms "
               "(%.3f GB / %.0f GB/s); the measurement cannot be right\n", s.median, floor_ms,
               wb / 1e9, g->read_gbs);
        return 0;
    }
    double gbs = wb / (s.median * 1e-3) / 1e9;
    printf("  latency median %.4f ms/token (p10 %.4f, p90 %.4f; %d launches at pos "
           "%d..%d; host loop %.4f ms/token); weights %.3f GB -> %.0f GB/s = %.1f%% "
           "of measured read bandwidth (floor %.4f ms)\n", s.median, s.p10, s.p90, repeats,
           CHECK_STEPS, CHECK_STEPS + repeats - 1, wall, wb / 1e9, gbs, 100 * gbs / g->read_gbs,
           floor_ms);
    return gbs / g->read_gbs;
}

/* Prove, load, check and time configuration c; a better one becomes *best. */
static void run_config(gpu_bench *g, const gpu_args *a, int c, gpu_best *best)
{
    const char *cfg = a->cfgs[c];
    ir_program *p = !strcmp(cfg, CONFIGS[0]) ? g->ref_prog : lower_cfg(&g->m, g->target, cfg);
    ir_error err = {0};
    double tv = base_now_s();
    verify_opts vopt;
    verify_result vr;
    verify_opts_default(&vopt);
    if (verify_program(p, &vopt, &vr, &err) != IR_OK || vr.verdict != VERIFY_PROVED) {
        printf("config %s: not PROVED (%s); skipped\n", cfg, verify_verdict_name(vr.verdict));
        verify_result_free(&vr);
        if (p != g->ref_prog)
            ir_program_free(p);
        return;
    }
    mk_handle *h = NULL;
    mk_options mo;
    mk_options_default(&mo);
    mo.stream_slot_bytes = a->slot_bytes;
    mk_status s = mk_load(p, vr.certificate_json, strlen(vr.certificate_json), g->wpath,
                          g->m.tie_embeddings, &mo, &h, &err);
    char *cert = strdup(vr.certificate_json);
    verify_result_free(&vr);
    if (!cert)
        die_nomem();
    double verify_s = base_now_s() - tv;
    if (s != MK_OK)
        die("mk_load", &err);
    mk_step_status ss;
    bool pass = check_config(g, h, cfg, p, verify_s, &ss);
    print_plan_notes(h);
    double frac = pass ? time_config(g, h, a->repeats, ss.next_token) : 0;
    if (frac > best->frac) {
        best->frac = frac;
        best->cfg = c;
        free(best->cert);
        best->cert = cert;
        cert = NULL;
    }
    free(cert);
    mk_free(h);
    if (p != g->ref_prog)
        ir_program_free(p);
}

/* ---------------------------------------------------------------- where the time goes */

/* The per-task timeline of the profiled launch of p as CSV. */
static void write_trace(mk_handle *h, const ir_program *p, const char *trace_path)
{
    ir_error err = {0};
    double *us = malloc(sizeof *us * 3 * (size_t)(p->n_tasks ? p->n_tasks : 1));
    FILE *tf = us ? fopen(trace_path, "w") : NULL;
    if (!tf || mk_trace_read(h, us, &err) != MK_OK) {
        fprintf(stderr, "bench-gpu: cannot write the timeline %s\n", trace_path);
    } else {
        fprintf(tf, "task,label,block,op,reached_us,ready_us,released_us\n");
        for (int32_t i = 0; i < p->n_tasks; i++)
            fprintf(tf, "%d,\"%s\",%d,%s,%.3f,%.3f,%.3f\n", i, p->tasks[i].label,
                    p->tasks[i].sm, ir_op_name(p->tasks[i].op), us[3 * i],
                    us[3 * i + 1], us[3 * i + 2]);
        printf("timeline: %d tasks -> %s\n", p->n_tasks, trace_path);
    }
    if (tf)
        fclose(tf);
    free(us);
}

/* One profiled launch of the best plan (not timed above). Takes best->cert. */
static void profile_best(gpu_bench *g, const gpu_args *a, gpu_best *best)
{
    ir_error err = {0};
    ir_program *p = lower_cfg(&g->m, g->target, a->cfgs[best->cfg]);
    mk_options o;
    mk_options_default(&o);
    o.profile = true;
    o.stream_slot_bytes = a->slot_bytes;
    mk_handle *h = NULL;
    mk_step_status ss;
    mk_profile pf;
    /* lowering is deterministic: the certificate proved above binds this program too */
    mk_status ls = mk_load(p, best->cert, strlen(best->cert), g->wpath, g->m.tie_embeddings, &o,
                           &h, &err);
    free(best->cert);
    best->cert = NULL;
    if (ls != MK_OK ||
        mk_step(h, g->toks[0], 0, g->logits, &ss, &err) != MK_OK ||
        mk_step(h, g->toks[1], 50, g->logits, &ss, &err) != MK_OK ||
        mk_profile_read(h, &pf, &err) != MK_OK)
        die("profile", &err);
    printf("profile of one launch at pos 50 (best plan, %.3f ms with timers): longest block "
           "%.3f ms; per op, summed over blocks: run ms / wait ms / largest block run ms\n",
           ss.ms, pf.span_ms_max);
    for (int op = 0; op < MK_PROF_SPAN; op++)
        if (pf.run_ms[op] > 0 || pf.wait_ms[op] > 0)
            printf("  %-18s %9.3f %9.3f %8.3f\n", mk_op_label(op), pf.run_ms[op],
                   pf.wait_ms[op], pf.run_ms_max_block[op]);
    if (a->trace_path)
        write_trace(h, p, a->trace_path);
    mk_free(h);
    ir_program_free(p);
}

/* ---------------------------------------------------------------- main */

/* The device and its built-in target; false (with the reason printed) when there is none. */
static bool pick_device(gpu_bench *g)
{
    char why[256];
    if (!bench_gpu_available(g->devname, sizeof g->devname, why, sizeof why)) {
        printf("bench-gpu: skipped: %s\n", why);
        return false;
    }
    g->target = bench_target_for_device(g->devname);
    if (!g->target) {
        printf("bench-gpu: skipped: no built-in target describes the device '%s'\n", g->devname);
        return false;
    }
    return true;
}

int main(int argc, char **argv)
{
    gpu_args a;
    int rc = parse_args(argc, argv, &a);
    if (rc)
        return rc < 0 ? 0 : rc;   /* -1: --help was printed */
    gpu_bench g = {.toks = {128000, 791, 6460}};
    if (!pick_device(&g))
        return 2;
    ir_error err = {0};
    if (lower_model_load(a.model, &g.m, &err) != IR_OK)
        die("model", &err);
    make_dirs(a.dir);
    ensure_weights(&g, a.dir, a.model);
    measure_bandwidth(&g);
    compute_reference(&g);
    if (!(g.logits = malloc(sizeof(float) * (size_t)g.m.vocab)))
        die_nomem();
    gpu_best best = {.cfg = -1};
    for (int c = 0; c < a.n_cfg; c++)
        run_config(&g, &a, c, &best);
    printf("best: %.1f%% of measured read bandwidth (target 60%%)\n", 100 * best.frac);
    if (best.cfg >= 0)
        profile_best(&g, &a, &best);
    ir_program_free(g.ref_prog);
    bench_reference_free(&g.ref);
    free(g.logits);
    return best.frac > 0 ? 0 : 1;
}
