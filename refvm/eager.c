/*
 * eager.c - the independent reference forward: a textbook Llama decode step, written from the
 * model shape and the Hugging Face weights alone. It knows nothing of the IR, tiles, queues or
 * pages, so a lowering or VM bug cannot hide in code both sides share.
 *
 * Shapes, named once: H hidden, L layers, nh query heads, nkv KV heads, hd head dim,
 * Q = nh*hd, KV = nkv*hd, I intermediate, V vocab, S max_seq.
 *
 * Weight matrices are read from the file's mapping a row at a time (converted to fp32 per row),
 * so the forward needs no fp32 copy of the model: an 8B model's bf16 weights stay on disk.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "refvm/refvm.h"

typedef const refvm_tensor *matrix;   /* a [rows, cols] weight in the mapping */

typedef struct {
    float *attn_norm;        /* [H] */
    matrix wq, wk, wv;       /* [Q,H] [KV,H] [KV,H] */
    matrix wo;               /* [H,Q] */
    float *mlp_norm;         /* [H] */
    matrix wg, wu, wd;       /* [I,H] [I,H] [H,I] */
} eager_layer;

struct refvm_eager {
    lower_model m;
    int64_t max_seq;
    int64_t next_pos;        /* positions [0, next_pos) are in the cache */
    refvm_st *st;            /* its own mapping of the weights file */
    matrix embed;            /* [V,H] */
    float *final_norm;       /* [H] */
    matrix lm_head;          /* [V,H]; == embed when tied */
    float *row;              /* one weight row as fp32: max(H, Q, I) */
    eager_layer *layers;     /* [L] */
    float *inv_freq;         /* [hd/2], llama3-adjusted when the model says so */
    float *key_cache;        /* [L,S,KV] */
    float *value_cache;      /* [L,S,KV] */
    float *x, *xn, *q, *k, *v, *att, *proj, *gate, *up, *scores, *logits;
};

/* ---------------------------------------------------------------- building */

static void *zalloc(size_t n, size_t size)
{
    return calloc(n ? n : 1, size);
}

/* The tensor called name, which must have exactly the shape (d0[, d1]) and a float dtype. */
static ir_status find(const refvm_st *st, const char *name, int64_t d0, int64_t d1,
                      const refvm_tensor **out, ir_error *err)
{
    const refvm_tensor *t = refvm_st_find(st, name);
    if (!t)
        return ir_fail(err, IR_ERR_MALFORMED, name, "tensor missing from %s", st->path);
    int rank = d1 ? 2 : 1;
    if (t->rank != rank || t->shape[0] != d0 || (rank == 2 && t->shape[1] != d1))
        return ir_fail(err, IR_ERR_MALFORMED, name,
                       "shape mismatch: the model needs [%lld%s%lld] (rank %d), the file has rank"
                       " %d [%lld, ...]", (long long)d0, d1 ? ", " : "", (long long)(d1 ? d1 : 0),
                       rank, t->rank, (long long)(t->rank ? t->shape[0] : 0));
    if (!t->supported)
        return ir_fail(err, IR_ERR_UNSUPPORTED, name, "dtype %s is not F32, F16 or BF16",
                       t->st_dtype);
    *out = t;
    return IR_OK;
}

/* A weight matrix: checked, left in the mapping. */
static ir_status map_matrix(const refvm_st *st, const char *name, int64_t d0, int64_t d1,
                            matrix *out, ir_error *err)
{
    return find(st, name, d0, d1, out, err);
}

/* A vector (norm weight): checked and converted to fp32. */
static ir_status load(const refvm_st *st, const char *name, int64_t d0, float **out,
                      ir_error *err)
{
    const refvm_tensor *t;
    ir_status s = find(st, name, d0, 0, &t, err);
    if (s != IR_OK)
        return s;
    *out = malloc((size_t)t->numel * sizeof(float));
    if (!*out)
        return ir_fail(err, IR_ERR_NOMEM, name, "out of memory");
    return refvm_st_to_f32(st, t, *out, err);
}

/* Long wavelengths are slowed by `factor`, short ones kept, the band between interpolated. */
void refvm_rope_inv_freq(const lower_model *m, float *inv_freq)
{
    int64_t half = m->head_dim / 2;
    for (int64_t i = 0; i < half; i++) {
        double f = 1.0 / pow(m->rope_theta, (double)(2 * i) / (double)m->head_dim);
        if (m->rope_llama3) {
            double wavelen = 2.0 * M_PI / f;
            double low_wavelen = (double)m->rope_orig_max / m->rope_low_freq;
            double high_wavelen = (double)m->rope_orig_max / m->rope_high_freq;
            if (wavelen > low_wavelen) {
                f = f / m->rope_factor;
            } else if (wavelen >= high_wavelen) {
                double smooth = ((double)m->rope_orig_max / wavelen - m->rope_low_freq) /
                                (m->rope_high_freq - m->rope_low_freq);
                f = (1.0 - smooth) * f / m->rope_factor + smooth * f;
            }
        }
        inv_freq[i] = (float)f;
    }
}

void refvm_eager_free(refvm_eager *e)
{
    if (!e)
        return;
    if (e->layers) {
        for (int64_t l = 0; l < e->m.n_layers; l++) {
            eager_layer *w = &e->layers[l];
            free(w->attn_norm);
            free(w->mlp_norm);
        }
    }
    free(e->layers);
    free(e->final_norm);
    free(e->row);
    refvm_st_close(e->st);
    free(e->inv_freq);
    free(e->key_cache);
    free(e->value_cache);
    free(e->x); free(e->xn); free(e->q); free(e->k); free(e->v); free(e->att);
    free(e->proj); free(e->gate); free(e->up); free(e->scores); free(e->logits);
    free(e);
}

/* Build the eager forward. See refvm.h. */
ir_status refvm_eager_new(const lower_model *m, const refvm_st *st, int64_t max_seq,
                          refvm_eager **out, ir_error *err)
{
    *out = NULL;
    if (m->hidden < 1 || m->n_layers < 1 || m->n_heads < 1 || m->n_kv_heads < 1 ||
        m->head_dim < 2 || m->head_dim % 2 || m->intermediate < 1 || m->vocab < 1 ||
        m->n_heads % m->n_kv_heads || m->n_layers > 100000)
        return ir_fail(err, IR_ERR_MALFORMED, m->name, "model dimensions are not a Llama shape");
    if (max_seq < 1 || max_seq > ((int64_t)1 << 24))
        return ir_fail(err, IR_ERR_MALFORMED, "max_seq", "must be in [1, 2^24], got %lld",
                       (long long)max_seq);
    refvm_eager *e = calloc(1, sizeof *e);
    if (!e)
        return ir_fail(err, IR_ERR_NOMEM, "eager", "out of memory");
    e->m = *m;
    e->max_seq = max_seq;
    int64_t H = m->hidden, Q = m->n_heads * m->head_dim, KV = m->n_kv_heads * m->head_dim;
    int64_t I = m->intermediate, V = m->vocab, L = m->n_layers, S = max_seq;
    ir_status s;
    char name[160];
#define TRY(x) do { if ((s = (x)) != IR_OK) goto fail; } while (0)
    e->layers = zalloc((size_t)L, sizeof *e->layers);
    if (!e->layers) {
        s = ir_fail(err, IR_ERR_NOMEM, "eager", "out of memory");
        goto fail;
    }
    TRY(refvm_st_open(st->path, &e->st, err));   /* its own mapping: st may close after */
    st = e->st;
    TRY(map_matrix(st, "model.embed_tokens.weight", V, H, &e->embed, err));
    TRY(load(st, "model.norm.weight", H, &e->final_norm, err));
    if (refvm_st_find(st, "lm_head.weight") || !m->tie_embeddings)
        TRY(map_matrix(st, "lm_head.weight", V, H, &e->lm_head, err));
    else
        e->lm_head = e->embed;
    for (int64_t l = 0; l < L; l++) {
        eager_layer *w = &e->layers[l];
#define NAME(suffix) (snprintf(name, sizeof name, "model.layers.%lld.%s", (long long)l, suffix), name)
        TRY(load(st, NAME("input_layernorm.weight"), H, &w->attn_norm, err));
        TRY(map_matrix(st, NAME("self_attn.q_proj.weight"), Q, H, &w->wq, err));
        TRY(map_matrix(st, NAME("self_attn.k_proj.weight"), KV, H, &w->wk, err));
        TRY(map_matrix(st, NAME("self_attn.v_proj.weight"), KV, H, &w->wv, err));
        TRY(map_matrix(st, NAME("self_attn.o_proj.weight"), H, Q, &w->wo, err));
        TRY(load(st, NAME("post_attention_layernorm.weight"), H, &w->mlp_norm, err));
        TRY(map_matrix(st, NAME("mlp.gate_proj.weight"), I, H, &w->wg, err));
        TRY(map_matrix(st, NAME("mlp.up_proj.weight"), I, H, &w->wu, err));
        TRY(map_matrix(st, NAME("mlp.down_proj.weight"), H, I, &w->wd, err));
#undef NAME
    }
    e->inv_freq = zalloc((size_t)m->head_dim / 2, sizeof(float));
    e->key_cache = zalloc((size_t)(L * S * KV), sizeof(float));
    e->value_cache = zalloc((size_t)(L * S * KV), sizeof(float));
    e->x = zalloc((size_t)H, sizeof(float));
    e->xn = zalloc((size_t)H, sizeof(float));
    e->q = zalloc((size_t)Q, sizeof(float));
    e->k = zalloc((size_t)KV, sizeof(float));
    e->v = zalloc((size_t)KV, sizeof(float));
    e->att = zalloc((size_t)Q, sizeof(float));
    e->proj = zalloc((size_t)H, sizeof(float));
    e->gate = zalloc((size_t)I, sizeof(float));
    e->up = zalloc((size_t)I, sizeof(float));
    e->scores = zalloc((size_t)S, sizeof(float));
    e->logits = zalloc((size_t)V, sizeof(float));
    e->row = zalloc((size_t)(H > Q ? (H > I ? H : I) : (Q > I ? Q : I)), sizeof(float));
    if (!e->row || !e->inv_freq || !e->key_cache || !e->value_cache || !e->x || !e->xn || !e->q || !e->k ||
        !e->v || !e->att || !e->proj || !e->gate || !e->up || !e->scores || !e->logits) {
        s = ir_fail(err, IR_ERR_NOMEM, "eager", "out of memory for the KV cache and activations");
        goto fail;
    }
#undef TRY
    refvm_rope_inv_freq(m, e->inv_freq);
    *out = e;
    return IR_OK;
fail:
    refvm_eager_free(e);
    return s;
}

/* ---------------------------------------------------------------- the forward */

/* out = x * rsqrt(mean(x^2) + eps) * w, over n elements (out may be x). */
static void rmsnorm(float *out, const float *x, const float *w, int64_t n, double eps)
{
    double ss = 0;
    for (int64_t i = 0; i < n; i++)
        ss += (double)x[i] * x[i];
    float r = (float)(1.0 / sqrt(ss / (double)n + eps));
    for (int64_t i = 0; i < n; i++)
        out[i] = x[i] * r * w[i];
}

/* out[d] = sum_n W[d,n] x[n]: W is [d_out, n_in] as Hugging Face stores a Linear; each row is
 * converted to fp32 into row (n_in floats of scratch) as it is needed. */
static void matmul(float *out, const float *x, matrix W, int64_t n_in, int64_t d_out, float *row)
{
    for (int64_t d = 0; d < d_out; d++) {
        refvm_st_slice_to_f32(W, d * n_in, n_in, row);
        double acc = 0;
        for (int64_t n = 0; n < n_in; n++)
            acc += (double)row[n] * x[n];
        out[d] = (float)acc;
    }
}

/* Rotate each head's halves by angle pos * inv_freq[i] (HF's rotate_half convention). */
static void rotary(float *vec, int64_t n_heads, int64_t hd, const float *inv_freq, int64_t pos)
{
    int64_t half = hd / 2;
    for (int64_t h = 0; h < n_heads; h++) {
        float *v = vec + h * hd;
        for (int64_t i = 0; i < half; i++) {
            double angle = (double)pos * inv_freq[i];
            double c = cos(angle), s = sin(angle);
            double a = v[i], b = v[i + half];
            v[i] = (float)(a * c - b * s);
            v[i + half] = (float)(b * c + a * s);
        }
    }
}

/* One decode step. See refvm.h. */
ir_status refvm_eager_forward(refvm_eager *e, int32_t token, int64_t pos, const float **logits,
                              ir_error *err)
{
    const lower_model *m = &e->m;
    int64_t H = m->hidden, hd = m->head_dim, nh = m->n_heads, nkv = m->n_kv_heads;
    int64_t Q = nh * hd, KV = nkv * hd, I = m->intermediate, S = e->max_seq;
    if (token < 0 || token >= m->vocab)
        return ir_fail(err, IR_ERR_MALFORMED, "token", "%d is outside the vocabulary [0, %lld)",
                       token, (long long)m->vocab);
    if (pos < 0 || pos >= S || pos > e->next_pos)
        return ir_fail(err, IR_ERR_MALFORMED, "pos", "%lld: positions must be fed in order and"
                       " stay below max_seq %lld", (long long)pos, (long long)S);
    refvm_st_slice_to_f32(e->embed, (int64_t)token * H, H, e->x);
    for (int64_t l = 0; l < m->n_layers; l++) {
        const eager_layer *w = &e->layers[l];
        float *kc = e->key_cache + l * S * KV, *vc = e->value_cache + l * S * KV;

        /* attention */
        rmsnorm(e->xn, e->x, w->attn_norm, H, m->rms_eps);
        matmul(e->q, e->xn, w->wq, H, Q, e->row);
        matmul(e->k, e->xn, w->wk, H, KV, e->row);
        matmul(e->v, e->xn, w->wv, H, KV, e->row);
        rotary(e->q, nh, hd, e->inv_freq, pos);
        rotary(e->k, nkv, hd, e->inv_freq, pos);
        memcpy(kc + pos * KV, e->k, (size_t)KV * sizeof(float));
        memcpy(vc + pos * KV, e->v, (size_t)KV * sizeof(float));
        double scale = 1.0 / sqrt((double)hd);
        for (int64_t h = 0; h < nh; h++) {
            const float *qh = e->q + h * hd;
            int64_t kvh = h / (nh / nkv);
            double maxs = -INFINITY;
            for (int64_t t = 0; t <= pos; t++) {
                const float *kt = kc + t * KV + kvh * hd;
                double dot = 0;
                for (int64_t i = 0; i < hd; i++)
                    dot += (double)qh[i] * kt[i];
                e->scores[t] = (float)(dot * scale);
                if (e->scores[t] > maxs)
                    maxs = e->scores[t];
            }
            double sum = 0;
            for (int64_t t = 0; t <= pos; t++)
                sum += exp(e->scores[t] - maxs);
            float *oh = e->att + h * hd;
            for (int64_t i = 0; i < hd; i++) {
                double acc = 0;
                for (int64_t t = 0; t <= pos; t++)
                    acc += exp(e->scores[t] - maxs) * vc[t * KV + kvh * hd + i];
                oh[i] = (float)(acc / sum);
            }
        }
        matmul(e->proj, e->att, w->wo, Q, H, e->row);
        for (int64_t i = 0; i < H; i++)
            e->x[i] += e->proj[i];

        /* feed-forward: down(silu(gate(x)) * up(x)) */
        rmsnorm(e->xn, e->x, w->mlp_norm, H, m->rms_eps);
        matmul(e->gate, e->xn, w->wg, H, I, e->row);
        matmul(e->up, e->xn, w->wu, H, I, e->row);
        for (int64_t i = 0; i < I; i++) {
            float g = e->gate[i];
            e->gate[i] = g / (1.0f + expf(-g)) * e->up[i];
        }
        matmul(e->proj, e->gate, w->wd, I, H, e->row);
        for (int64_t i = 0; i < H; i++)
            e->x[i] += e->proj[i];
    }
    rmsnorm(e->x, e->x, e->final_norm, H, m->rms_eps);
    matmul(e->logits, e->x, e->lm_head, H, m->vocab, e->row);
    e->next_pos = pos + 1;
    *logits = e->logits;
    return IR_OK;
}
