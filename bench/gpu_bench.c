/*
 * gpu_bench.c - the GPU timing sources of `amk bench` and `amk audit --rerun`: the megakernel
 * (through megakernel/megakernel.h) and the cuBLAS CUDA-graph baseline (host half here, device
 * half in bench/gpu_baseline.cu), both checked step by step against reference VM logits.
 *
 * The reference VM takes about half a second per step on a 1B model, far longer than the GPU
 * runs it checks, so its logits are computed once (bench_reference) and every repeat of every
 * source is compared with them at the same positions and input tokens. A repeat therefore
 * measures exactly the steps that were checked.
 *
 * This file is C11 and builds without nvcc: then the baseline's device half is replaced by
 * stubs at the end of the file that answer "no CUDA support", as mk_load does.
 */
#include <ctype.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/base.h"
#include "bench/bench_run.h"
#include "bench/gpu_baseline.h"

/* ---------------------------------------------------------------- devices */

const char *bench_target_for_device(const char *name)
{
    /* whole words of the device name (upper case, punctuation as spaces); L40S before L4 */
    static const struct {
        const char *words, *target;
    } map[] = {{" H200 ", "h200"}, {" H100 ", "h100"}, {" B200 ", "b200"}, {" A100 ", "a100"},
               {" L40S ", "l40s"}, {" L4 ", "l4"},     {" A10G ", "a10g"}, {" T4 ", "t4"},
               {" RTX 5090 ", "rtx5090"}};
    if (!name)
        return NULL;
    char norm[300];
    size_t n = 0;
    norm[n++] = ' ';
    for (const char *c = name; *c && n < sizeof norm - 2; c++)
        norm[n++] = isalnum((unsigned char)*c) ? (char)toupper((unsigned char)*c) : ' ';
    norm[n++] = ' ';
    norm[n] = 0;
    for (size_t i = 0; i < sizeof map / sizeof map[0]; i++)
        if (strstr(norm, map[i].words))
            return map[i].target;
    return NULL;
}

bool bench_gpu_available(char *name, size_t name_len, char *why, size_t why_len)
{
    char dev[256] = "";
    if (!mk_have_cuda()) {
        if (why && why_len)
            snprintf(why, why_len, "this build has no CUDA support (nvcc was not found when amk "
                     "was built)");
        return false;
    }
    if (mk_device_count(dev, sizeof dev) <= 0) {
        if (why && why_len)
            snprintf(why, why_len, "no CUDA device found (no GPU, or no driver)");
        return false;
    }
    if (name && name_len)
        snprintf(name, name_len, "%s", dev);
    if (why && why_len)
        why[0] = 0;
    return true;
}

/* ---------------------------------------------------------------- reference logits */

void bench_reference_free(bench_reference *r)
{
    if (!r)
        return;
    free(r->tokens);
    free(r->logits);
    memset(r, 0, sizeof *r);
}

ir_status bench_reference_compute(const ir_program *p, const refvm_st *st, bool tie_embeddings,
                                  int64_t steps, const int32_t *tokens, bench_reference *out,
                                  ir_error *err)
{
    memset(out, 0, sizeof *out);
    double t0 = base_now_s();
    refvm_opts o;
    refvm_opts_default(&o);
    o.tie_embeddings = tie_embeddings;
    refvm *vm = NULL;
    refvm_result res = {0};
    ir_status s;
    if ((s = refvm_new(p, &o, &vm, err)) != IR_OK || (s = refvm_bind(vm, st, err)) != IR_OK)
        goto done;
    if (steps < 1 || steps > refvm_max_seq(vm)) {
        s = ir_fail(err, IR_ERR_MALFORMED, "--steps", "%lld steps: must be in [1, max_seq %lld]",
                    (long long)steps, (long long)refvm_max_seq(vm));
        goto done;
    }
    out->steps = steps;
    if (!(out->tokens = malloc(sizeof *out->tokens * (size_t)steps))) {
        s = ir_fail(err, IR_ERR_NOMEM, "reference", "out of memory");
        goto done;
    }
    int32_t tok = tokens ? tokens[0] : 0;
    for (int64_t pos = 0; pos < steps; pos++) {
        out->tokens[pos] = tok;
        if ((s = refvm_step(vm, tok, pos, &res, err)) != IR_OK)
            goto done;
        if (res.outcome != REFVM_DONE) {
            s = ir_fail(err, IR_ERR_MALFORMED, "reference", "the reference VM ended pos %lld with "
                        "%s", (long long)pos, refvm_outcome_name(res.outcome));
            goto done;
        }
        int64_t n = 0;
        const float *lg = refvm_logits(vm, &n);
        if (!lg || n < 1 || (out->vocab && n != out->vocab)) {
            s = ir_fail(err, IR_ERR_MALFORMED, "reference", "the program writes no F32 logits");
            goto done;
        }
        if (!out->logits) {
            out->vocab = n;
            if (!(out->logits = malloc(sizeof *out->logits * (size_t)(steps * n)))) {
                s = ir_fail(err, IR_ERR_NOMEM, "reference", "out of memory for %lld x %lld logits",
                            (long long)steps, (long long)n);
                goto done;
            }
        }
        memcpy(out->logits + pos * n, lg, sizeof *lg * (size_t)n);
        if (pos + 1 < steps)
            tok = tokens ? tokens[pos + 1] : refvm_next_token(vm);
    }
    out->seconds = base_now_s() - t0;
done:
    refvm_result_free(&res);
    refvm_free(vm);
    if (s != IR_OK)
        bench_reference_free(out);
    return s;
}

/* ---------------------------------------------------------------- the megakernel source */

struct bench_gpu {
    mk_handle *h;
    const bench_reference *ref;
    const char *label;
    int device;
    float *logits;               /* [vocab], one step's copy */
};

ir_status bench_gpu_new(const ir_program *p, const char *cert_json, size_t cert_len,
                        const char *weights, bool tie_embeddings, int device,
                        const bench_reference *ref, const char *label, bench_gpu **out,
                        mk_status *load_status, ir_error *err)
{
    *out = NULL;
    if (load_status)
        *load_status = MK_OK;
    bench_gpu *g = calloc(1, sizeof *g);
    if (!g)
        return ir_fail(err, IR_ERR_NOMEM, "bench", "out of memory");
    g->ref = ref;
    g->label = label ? label : BENCH_GPU_LABEL;
    g->device = device;
    mk_options o;
    mk_options_default(&o);
    o.device = device;
    mk_status ms = mk_load(p, cert_json, cert_len, weights, tie_embeddings, &o, &g->h, err);
    if (load_status)
        *load_status = ms;
    if (ms != MK_OK) {
        ir_status s = err && err->status != IR_OK ? err->status : IR_ERR_UNSUPPORTED;
        bench_gpu_free(g);
        return s;
    }
    int64_t vocab = mk_vocab(g->h);
    if (vocab != ref->vocab) {
        bench_gpu_free(g);
        return ir_fail(err, IR_ERR_MALFORMED, "logits", "the megakernel writes %lld logits, the "
                       "reference VM %lld", (long long)vocab, (long long)ref->vocab);
    }
    if (!(g->logits = malloc(sizeof *g->logits * (size_t)ref->vocab))) {
        bench_gpu_free(g);
        return ir_fail(err, IR_ERR_NOMEM, "bench", "out of memory");
    }
    *out = g;
    return IR_OK;
}

void bench_gpu_free(bench_gpu *g)
{
    if (!g)
        return;
    mk_free(g->h);
    free(g->logits);
    free(g);
}

const char *bench_gpu_device_name(const bench_gpu *g)
{
    return mk_device_name(g->h);
}

int64_t bench_gpu_max_steps(const bench_gpu *g)
{
    int64_t m = mk_max_seq(g->h);
    return m < g->ref->steps ? m : g->ref->steps;
}

/* Steps 0 .. steps-1 with the reference's tokens; only the launches are timed (CUDA events). */
static ir_status gpu_run(void *ctx, int64_t steps, double *us_per_token, bench_gate *g,
                         ir_error *err)
{
    bench_gpu *b = ctx;
    memset(g, 0, sizeof *g);
    g->pass = true;
    g->tol_rel = REFVM_GATE_REL_TOL;
    *us_per_token = 0;
    if (steps > bench_gpu_max_steps(b))
        return ir_fail(err, IR_ERR_MALFORMED, "--steps", "%lld steps exceed the %lld checked "
                       "(reference steps, max_seq)", (long long)steps,
                       (long long)bench_gpu_max_steps(b));
    double ms = 0;
    int64_t V = b->ref->vocab;
    for (int64_t pos = 0; pos < steps; pos++) {
        mk_step_status st;
        mk_status s = mk_step(b->h, b->ref->tokens[pos], pos, b->logits, &st, err);
        if (s == MK_TIMEOUT) {
            g->pass = false;
            snprintf(g->why, sizeof g->why, "pos %lld: watchdog TIMEOUT (block %d waited on "
                     "counter %d for %lld, saw %lld)", (long long)pos, st.block, st.counter,
                     (long long)st.threshold, (long long)st.counter_value);
            break;
        }
        if (s != MK_OK)
            return err && err->status != IR_OK ? err->status : IR_ERR_IO;
        ms += st.ms;
        bench_gate_step(g, b->logits, b->ref->logits + pos * V, V, REFVM_GATE_REL_TOL, false, pos);
    }
    if (g->compared > 0)
        *us_per_token = 1e3 * ms / (double)g->compared;
    return IR_OK;
}

/* The device's streaming-read bandwidth now; a smaller probe when the large one cannot be
 * allocated next to the weights. */
static ir_status gpu_bandwidth(void *ctx, double *gbs, ir_error *err)
{
    bench_gpu *b = ctx;
    mk_status s = mk_read_bandwidth(b->device, BENCH_BW_PROBE_BYTES, BENCH_BW_PROBE_REPEATS, gbs,
                                    err);
    if (s == MK_CUDA_ERROR && BENCH_BW_PROBE_BYTES > ((int64_t)1 << 30))
        s = mk_read_bandwidth(b->device, (int64_t)1 << 30, BENCH_BW_PROBE_REPEATS, gbs, err);
    if (s != MK_OK)
        return err && err->status != IR_OK ? err->status : IR_ERR_IO;
    return IR_OK;
}

bench_timing_source bench_gpu_source(bench_gpu *g)
{
    bench_timing_source src = {
        .label = g->label,
        .is_gpu = true,
        .ctx = g,
        .run = gpu_run,
        .measure_bandwidth = gpu_bandwidth,
    };
    return src;
}

/* ---------------------------------------------------------------- the cuBLAS baseline source */

struct bench_baseline {
    bbl *dev;
    const bench_reference *ref;
    float *logits;               /* [vocab] */
};

/* The tensor name, of exactly shape [d0] (d1 == 0) or [d0, d1], in a dtype the baseline reads. */
static ir_status find_tensor(const refvm_st *st, const char *name, int64_t d0, int64_t d1,
                             const refvm_tensor **out, ir_error *err)
{
    const refvm_tensor *t = refvm_st_find(st, name);
    *out = t;
    if (!t)
        return ir_fail(err, IR_ERR_MALFORMED, name, "tensor missing from %s", st->path);
    int rank = d1 ? 2 : 1;
    if (t->rank != rank || t->shape[0] != d0 || (rank == 2 && t->shape[1] != d1))
        return ir_fail(err, IR_ERR_MALFORMED, name, "shape mismatch: the model needs [%lld%s%lld]",
                       (long long)d0, d1 ? ", " : "", (long long)(d1 ? d1 : 0));
    if (!t->supported || (t->dtype != IR_F32 && t->dtype != IR_F16 && t->dtype != IR_BF16))
        return ir_fail(err, IR_ERR_UNSUPPORTED, name, "dtype %s: the baseline reads F32, F16, "
                       "BF16", t->st_dtype);
    return IR_OK;
}

/* A norm weight converted to fp32 into a new array (the caller frees it). */
static ir_status norm_f32(const refvm_st *st, const char *name, int64_t H, float **out,
                          ir_error *err)
{
    const refvm_tensor *t;
    ir_status s = find_tensor(st, name, H, 0, &t, err);
    if (s != IR_OK)
        return s;
    if (!(*out = malloc(sizeof **out * (size_t)H)))
        return ir_fail(err, IR_ERR_NOMEM, name, "out of memory");
    return refvm_st_to_f32(st, t, *out, err);
}

/* A projection [d0, d1] in the weight dtype (the first projection sets it). */
static ir_status projection(const refvm_st *st, const char *name, int64_t d0, int64_t d1,
                            int32_t *wdtype, const void **out, ir_error *err)
{
    const refvm_tensor *t;
    ir_status s = find_tensor(st, name, d0, d1, &t, err);
    if (s != IR_OK)
        return s;
    if (*wdtype < 0)
        *wdtype = t->dtype;
    if ((int32_t)t->dtype != *wdtype)
        return ir_fail(err, IR_ERR_UNSUPPORTED, name, "dtype %s differs from the other "
                       "projections' %s: cuBLAS multiplies one weight type", t->st_dtype,
                       ir_dtype_name((ir_dtype)*wdtype));
    *out = t->data;
    return IR_OK;
}

ir_status bench_baseline_new(const lower_model *m, const refvm_st *st, int device,
                             const bench_reference *ref, bench_baseline **out, ir_error *err)
{
    *out = NULL;
    char dev[256], why[256];
    if (!bench_gpu_available(dev, sizeof dev, why, sizeof why))
        return ir_fail(err, IR_ERR_UNSUPPORTED, "baseline", "%s", why);
    if (m->hidden < 1 || m->n_layers < 1 || m->n_heads < 1 || m->n_kv_heads < 1 ||
        m->head_dim < 2 || m->head_dim % 2 || m->n_heads % m->n_kv_heads || m->intermediate < 1 ||
        m->vocab < 1)
        return ir_fail(err, IR_ERR_MALFORMED, m->name, "model dimensions are not a Llama shape");
    if (ref->vocab != m->vocab)
        return ir_fail(err, IR_ERR_MALFORMED, "vocab", "the model has %lld logits, the reference "
                       "%lld", (long long)m->vocab, (long long)ref->vocab);
    int64_t H = m->hidden, L = m->n_layers, Q = m->n_heads * m->head_dim;
    int64_t KV = m->n_kv_heads * m->head_dim, I = m->intermediate, V = m->vocab;
    bbl_desc d = {.H = H, .L = L, .nh = m->n_heads, .nkv = m->n_kv_heads, .hd = m->head_dim,
                  .I = I, .V = V, .S = ref->steps, .eps = m->rms_eps, .wdtype = -1};
    bbl_layer *layers = calloc((size_t)L, sizeof *layers);
    float *inv_freq = calloc((size_t)(m->head_dim / 2), sizeof *inv_freq);
    float *final_norm = NULL;
    bench_baseline *b = calloc(1, sizeof *b);
    ir_status s = IR_OK;
    char name[160];
    const refvm_tensor *t;
#define TRY(x) do { if ((s = (x)) != IR_OK) goto done; } while (0)
    if (!layers || !inv_freq || !b) {
        s = ir_fail(err, IR_ERR_NOMEM, "baseline", "out of memory");
        goto done;
    }
    b->ref = ref;
    refvm_rope_inv_freq(m, inv_freq);
    d.inv_freq = inv_freq;
    for (int64_t l = 0; l < L; l++) {
        bbl_layer *w = &layers[l];
#define NAME(suffix) (snprintf(name, sizeof name, "model.layers.%lld.%s", (long long)l, suffix), name)
        TRY(norm_f32(st, NAME("input_layernorm.weight"), H, (float **)&w->attn_norm, err));
        TRY(norm_f32(st, NAME("post_attention_layernorm.weight"), H, (float **)&w->mlp_norm, err));
        TRY(projection(st, NAME("self_attn.q_proj.weight"), Q, H, &d.wdtype, &w->wq, err));
        TRY(projection(st, NAME("self_attn.k_proj.weight"), KV, H, &d.wdtype, &w->wk, err));
        TRY(projection(st, NAME("self_attn.v_proj.weight"), KV, H, &d.wdtype, &w->wv, err));
        TRY(projection(st, NAME("self_attn.o_proj.weight"), H, Q, &d.wdtype, &w->wo, err));
        TRY(projection(st, NAME("mlp.gate_proj.weight"), I, H, &d.wdtype, &w->wg, err));
        TRY(projection(st, NAME("mlp.up_proj.weight"), I, H, &d.wdtype, &w->wu, err));
        TRY(projection(st, NAME("mlp.down_proj.weight"), H, I, &d.wdtype, &w->wd, err));
#undef NAME
    }
    d.layers = layers;
    TRY(find_tensor(st, "model.embed_tokens.weight", V, H, &t, err));
    d.embed = t->data;
    d.embed_dtype = t->dtype;
    if (refvm_st_find(st, "lm_head.weight") || !m->tie_embeddings)
        TRY(projection(st, "lm_head.weight", V, H, &d.wdtype, &d.lm_head, err));
    else if ((int32_t)t->dtype != d.wdtype)
        TRY(ir_fail(err, IR_ERR_UNSUPPORTED, "model.embed_tokens.weight", "a tied lm_head in %s "
                    "next to %s projections: cuBLAS multiplies one weight type", t->st_dtype,
                    ir_dtype_name((ir_dtype)d.wdtype)));
    else
        d.lm_head = d.embed;
    TRY(norm_f32(st, "model.norm.weight", H, &final_norm, err));
    d.final_norm = final_norm;
    if (!(b->logits = malloc(sizeof *b->logits * (size_t)V))) {
        s = ir_fail(err, IR_ERR_NOMEM, "baseline", "out of memory");
        goto done;
    }
    TRY(bbl_new(&d, device, &b->dev, err));
#undef TRY
done:
    if (layers)
        for (int64_t l = 0; l < L; l++) {
            free((float *)layers[l].attn_norm);
            free((float *)layers[l].mlp_norm);
        }
    free(layers);
    free(inv_freq);
    free(final_norm);
    if (s != IR_OK) {
        bench_baseline_free(b);
        return s;
    }
    *out = b;
    return IR_OK;
}

void bench_baseline_free(bench_baseline *b)
{
    if (!b)
        return;
    bbl_free(b->dev);
    free(b->logits);
    free(b);
}

const char *bench_baseline_library(const bench_baseline *b)
{
    return bbl_library(b->dev);
}

/* Steps 0 .. steps-1 with the reference's tokens; each graph launch timed with CUDA events. */
static ir_status baseline_run(void *ctx, int64_t steps, double *us_per_token, bench_gate *g,
                              ir_error *err)
{
    bench_baseline *b = ctx;
    memset(g, 0, sizeof *g);
    g->pass = true;
    g->tol_rel = BENCH_BASELINE_REL_TOL;
    *us_per_token = 0;
    if (steps > b->ref->steps)
        return ir_fail(err, IR_ERR_MALFORMED, "--steps", "%lld steps exceed the %lld checked",
                       (long long)steps, (long long)b->ref->steps);
    double total = 0;
    int64_t V = b->ref->vocab;
    for (int64_t pos = 0; pos < steps; pos++) {
        double ms = 0;
        ir_status s = bbl_step(b->dev, b->ref->tokens[pos], pos, b->logits, &ms, err);
        if (s != IR_OK)
            return s;
        total += ms;
        bench_gate_step(g, b->logits, b->ref->logits + pos * V, V, BENCH_BASELINE_REL_TOL, true,
                        pos);
    }
    *us_per_token = 1e3 * total / (double)steps;
    return IR_OK;
}

bench_timing_source bench_baseline_source(bench_baseline *b)
{
    bench_timing_source src = {
        .label = BENCH_BASELINE_LABEL,
        .is_gpu = true,
        .ctx = b,
        .run = baseline_run,
        .measure_bandwidth = NULL,   /* measured once, by the megakernel source */
    };
    return src;
}

/* ---------------------------------------------------------------- builds without CUDA */

#ifndef AMK_HAVE_CUDA
ir_status bbl_new(const bbl_desc *d, int device, bbl **out, ir_error *err)
{
    (void)d;
    (void)device;
    *out = NULL;
    return ir_fail(err, IR_ERR_UNSUPPORTED, "baseline", "this build has no CUDA support");
}

ir_status bbl_step(bbl *b, int32_t token, int64_t pos, float *logits, double *ms, ir_error *err)
{
    (void)b;
    (void)token;
    (void)pos;
    (void)logits;
    *ms = 0;
    return ir_fail(err, IR_ERR_UNSUPPORTED, "baseline", "this build has no CUDA support");
}

const char *bbl_library(const bbl *b)
{
    (void)b;
    return "none (no CUDA support)";
}

void bbl_free(bbl *b)
{
    (void)b;
}
#endif
