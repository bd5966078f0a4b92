/*
 * bench_refvm_main.c - how fast the CPU reference VM decodes: tokens/s on the toy Hugging Face
 * fixture and seconds per step on the llama-3.2-1b preset with random weights (generated into
 * the build folder on first use, never committed). Every timed run is also checked against the
 * eager forward; a figure is printed only with its gate verdict.
 *
 * usage: bench_refvm [--dir BUILD] [--toy-steps N] [--big-steps N] [--skip-big]
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "base/base.h"
#include "lower/lower.h"
#include "refvm/refvm.h"

static int die(const char *what, const ir_error *err)
{
    fprintf(stderr, "bench_refvm: %s: %s at %s: %s\n", what, ir_status_name(err->status),
            err->where, err->why);
    return 2;
}

typedef struct {
    double vm_s, eager_s;
    int64_t launches;
    double worst_rel;
    int64_t agree;
    bool pass;
} bench_result;

/* Decode `steps` launches from token 1 on program p bound to st; time the VM and the eager
 * forward separately and gate every launch. */
static int decode(const lower_model *m, ir_program *p, const refvm_st *st, int64_t steps,
                  bench_result *out, ir_error *err)
{
    refvm *vm = NULL;
    refvm_eager *e = NULL;
    refvm_opts o;
    refvm_opts_default(&o);
    o.tie_embeddings = m->tie_embeddings;
    memset(out, 0, sizeof *out);
    out->pass = true;
    ir_status s = refvm_new(p, &o, &vm, err);
    if (s == IR_OK)
        s = refvm_bind(vm, st, err);
    if (s == IR_OK)
        s = refvm_eager_new(m, st, refvm_max_seq(vm), &e, err);
    int32_t tok = 1;
    for (int64_t pos = 0; s == IR_OK && pos < steps; pos++) {
        refvm_result r;
        double t0 = base_now_s();
        s = refvm_step(vm, tok, pos, &r, err);
        out->vm_s += base_now_s() - t0;
        if (s != IR_OK)
            break;
        bool done = r.outcome == REFVM_DONE;
        if (!done)
            fprintf(stderr, "bench_refvm: %s\n", r.detail ? r.detail : "");
        refvm_result_free(&r);
        if (!done) {
            out->pass = false;
            break;
        }
        int64_t n;
        const float *lg = refvm_logits(vm, &n), *ref;
        t0 = base_now_s();
        s = refvm_eager_forward(e, tok, pos, &ref, err);
        out->eager_s += base_now_s() - t0;
        if (s != IR_OK)
            break;
        refvm_gate_cmp c = refvm_gate_compare(lg, ref, n, REFVM_GATE_REL_TOL);
        double rel = c.max_abs_ref > 0 ? c.max_abs_err / c.max_abs_ref : c.max_abs_err;
        if (rel > out->worst_rel)
            out->worst_rel = rel;
        out->agree += c.top_a == c.top_b;
        out->pass = out->pass && c.pass;
        out->launches++;
        tok = refvm_next_token(vm);
    }
    refvm_eager_free(e);
    refvm_free(vm);
    return s == IR_OK ? 0 : 1;
}

static ir_program *lower_default(const lower_model *m, ir_dtype dt, int64_t max_seq,
                                 ir_error *err)
{
    ir_config c;
    ir_config_default(&c);
    lower_opts o;
    lower_opts_default(&o);
    o.dtype = dt;
    o.max_seq = max_seq;
    o.sample_argmax = true;
    ir_program *p = NULL;
    if (lower_program(m, &c, ir_target_builtin("h100"), &o, &p, err) != IR_OK)
        return NULL;
    return p;
}

int main(int argc, char **argv)
{
    const char *dir = "build";
    int64_t toy_steps = 131, big_steps = 3;
    bool skip_big = false;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--dir") && i + 1 < argc)
            dir = argv[++i];
        else if (!strcmp(argv[i], "--toy-steps") && i + 1 < argc)
            toy_steps = atoll(argv[++i]);
        else if (!strcmp(argv[i], "--big-steps") && i + 1 < argc)
            big_steps = atoll(argv[++i]);
        else if (!strcmp(argv[i], "--skip-big"))
            skip_big = true;
        else {
            fprintf(stderr, "usage: bench_refvm [--dir BUILD] [--toy-steps N] [--big-steps N] "
                    "[--skip-big]\n");
            return 2;
        }
    }
    if (toy_steps < 1 || toy_steps > 191 || big_steps < 1 || big_steps > 64) {
        fprintf(stderr, "bench_refvm: --toy-steps in [1, 191], --big-steps in [1, 64]\n");
        return 2;
    }
    ir_error err = {0};
    lower_model m;
    refvm_st *st;
    bench_result r;

    /* Toy: the GQA 2:1 Hugging Face fixture, default schedule on h100. */
    const char *fx = "tests/fixtures/llama_gqa2_f32";
    char path[512];
    snprintf(path, sizeof path, "%s/config.json", fx);
    if (lower_model_from_hf_config(path, &m, &err) != IR_OK)
        return die("toy config", &err);
    snprintf(path, sizeof path, "%s/model.safetensors", fx);
    if (refvm_st_open(path, &st, &err) != IR_OK)
        return die("toy weights", &err);
    ir_program *p = lower_default(&m, IR_F32, 0, &err);
    if (!p)
        return die("toy lowering", &err);
    if (decode(&m, p, st, toy_steps, &r, &err))
        return die("toy decode", &err);
    printf("toy fixture (%s, %d tasks, %lld launches): VM %.1f tokens/s (%.3f ms/step), "
           "eager %.1f tokens/s; gate %s, max rel err %.2g, top-1 %lld/%lld\n",
           fx, p->n_tasks, (long long)r.launches, (double)r.launches / r.vm_s,
           1e3 * r.vm_s / (double)r.launches, (double)r.launches / r.eager_s,
           r.pass ? "PASS" : "FAIL", r.worst_rel, (long long)r.agree, (long long)r.launches);
    bool ok = r.pass;
    ir_program_free(p);
    refvm_st_close(st);
    if (skip_big)
        return ok ? 0 : 1;

    /* llama-3.2-1b, bf16 random weights, KV cache of 64 rows. */
    if (lower_model_preset("llama-3.2-1b", &m, &err) != IR_OK)
        return die("preset", &err);
    snprintf(path, sizeof path, "%s/llama-3.2-1b-random-seed1-bf16.safetensors", dir);
    struct stat sb;
    if (stat(path, &sb) != 0) {
        double t0 = base_now_s();
        if (refvm_weights_random(&m, 1, IR_BF16, path, &err) != IR_OK)
            return die("random weights", &err);
        printf("wrote %s in %.1f s\n", path, base_now_s() - t0);
    }
    if (refvm_st_open(path, &st, &err) != IR_OK)
        return die("1b weights", &err);
    p = lower_default(&m, IR_BF16, 64, &err);
    if (!p)
        return die("1b lowering", &err);
    double t0 = base_now_s();
    if (decode(&m, p, st, big_steps, &r, &err))
        return die("1b decode", &err);
    double total = base_now_s() - t0;
    printf("llama-3.2-1b random bf16 weights (%d tasks, %.2f GB of weights, %lld launches): VM "
           "%.3f s/step, eager %.3f s/step; gate %s, max rel err %.2g, top-1 %lld/%lld "
           "(%.1f s total with fp32 conversion)\n",
           p->n_tasks, (double)ir_weight_bytes(p) / 1e9, (long long)r.launches,
           r.vm_s / (double)r.launches, r.eager_s / (double)r.launches, r.pass ? "PASS" : "FAIL",
           r.worst_rel, (long long)r.agree, (long long)r.launches, total);
    ok = ok && r.pass;
    ir_program_free(p);
    refvm_st_close(st);
    return ok ? 0 : 1;
}
