/*
 * weights_random.c - deterministic random weights for any model shape, written as a safetensors
 * file with Hugging Face tensor names, so large-shape tests and benchmarks need no download.
 *
 * Each tensor has its own generator seeded from (seed, tensor name), so a tensor's values do not
 * depend on which other tensors the model has. Values are streamed to disk in chunks: a 1B-model
 * bf16 file (2.5 GB) is written with a few hundred KB of memory.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "refvm/refvm.h"

/* splitmix64: a full-period 64-bit generator with good mixing; one step per value. */
static uint64_t splitmix64(uint64_t *state)
{
    uint64_t z = (*state += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

static uint64_t fnv1a(const char *s)
{
    uint64_t h = 0xcbf29ce484222325ull;
    for (; *s; s++)
        h = (h ^ (unsigned char)*s) * 0x100000001b3ull;
    return h;
}

/* Uniform in [-1, 1), from the top 24 bits so every value is exact in fp32. */
static float uniform_pm1(uint64_t *state)
{
    return (float)((int64_t)(splitmix64(state) >> 40) - (1 << 23)) / (float)(1 << 23);
}

typedef struct {
    char name[128];
    int rank;
    int64_t shape[2];
    bool is_norm;
} tensor_spec;

/* The tensors of a Llama decoder with HF names, in the order they are written. Returns the
 * count; specs may be NULL to only count. */
static int llama_tensors(const lower_model *m, tensor_spec *specs)
{
    int n = 0;
#define T(is_n, r, d0, d1, ...)                                                   \
    do {                                                                          \
        if (specs) {                                                              \
            snprintf(specs[n].name, sizeof specs[n].name, __VA_ARGS__);           \
            specs[n].rank = r;                                                    \
            specs[n].shape[0] = d0;                                               \
            specs[n].shape[1] = d1;                                               \
            specs[n].is_norm = is_n;                                              \
        }                                                                         \
        n++;                                                                      \
    } while (0)
    int64_t h = m->hidden, q = m->n_heads * m->head_dim, kv = m->n_kv_heads * m->head_dim;
    T(false, 2, m->vocab, h, "model.embed_tokens.weight");
    for (int64_t l = 0; l < m->n_layers; l++) {
        T(true, 1, h, 0, "model.layers.%lld.input_layernorm.weight", (long long)l);
        T(false, 2, q, h, "model.layers.%lld.self_attn.q_proj.weight", (long long)l);
        T(false, 2, kv, h, "model.layers.%lld.self_attn.k_proj.weight", (long long)l);
        T(false, 2, kv, h, "model.layers.%lld.self_attn.v_proj.weight", (long long)l);
        T(false, 2, h, q, "model.layers.%lld.self_attn.o_proj.weight", (long long)l);
        T(true, 1, h, 0, "model.layers.%lld.post_attention_layernorm.weight", (long long)l);
        T(false, 2, m->intermediate, h, "model.layers.%lld.mlp.gate_proj.weight", (long long)l);
        T(false, 2, m->intermediate, h, "model.layers.%lld.mlp.up_proj.weight", (long long)l);
        T(false, 2, h, m->intermediate, "model.layers.%lld.mlp.down_proj.weight", (long long)l);
    }
    T(true, 1, h, 0, "model.norm.weight");
    if (!m->tie_embeddings)
        T(false, 2, m->vocab, h, "lm_head.weight");
#undef T
    return n;
}

/* Write random weights for m. See refvm.h. */
ir_status refvm_weights_random(const lower_model *m, uint64_t seed, ir_dtype dtype,
                               const char *path, ir_error *err)
{
    return refvm_weights_random_progress(m, seed, dtype, path, NULL, NULL, err);
}

ir_status refvm_weights_random_progress(const lower_model *m, uint64_t seed, ir_dtype dtype,
                                        const char *path,
                                        void (*progress)(void *arg, int done, int total),
                                        void *arg, ir_error *err)
{
    if (dtype != IR_F32 && dtype != IR_F16 && dtype != IR_BF16)
        return ir_fail(err, IR_ERR_UNSUPPORTED, "dtype", "random weights are F32, F16 or BF16");
    if (m->hidden < 1 || m->n_layers < 1 || m->n_heads < 1 || m->n_kv_heads < 1 ||
        m->head_dim < 1 || m->intermediate < 1 || m->vocab < 1 || m->n_layers > 100000)
        return ir_fail(err, IR_ERR_MALFORMED, m->name, "model has a non-positive dimension");
    int n = llama_tensors(m, NULL);
    tensor_spec *specs = calloc((size_t)n, sizeof *specs);
    float *chunk = malloc(65536 * sizeof *chunk);
    refvm_st_writer *w = NULL;
    ir_status s = IR_OK;
    if (!specs || !chunk) {
        s = ir_fail(err, IR_ERR_NOMEM, path, "out of memory");
        goto done;
    }
    llama_tensors(m, specs);
    s = refvm_st_writer_new(path, n, &w, err);
    for (int i = 0; s == IR_OK && i < n; i++)
        s = refvm_st_writer_declare(w, specs[i].name, dtype, specs[i].rank, specs[i].shape, err);
    /* Projections: uniform with std 0.02 (half-width 0.02 * sqrt(3)); norms: [0.9, 1.1]. */
    const float a = 0.0346410162f;
    for (int i = 0; s == IR_OK && i < n; i++) {
        uint64_t state = seed ^ fnv1a(specs[i].name);
        int64_t numel = specs[i].shape[0] * (specs[i].rank == 2 ? specs[i].shape[1] : 1);
        for (int64_t done = 0; s == IR_OK && done < numel;) {
            int64_t k = numel - done < 65536 ? numel - done : 65536;
            for (int64_t j = 0; j < k; j++) {
                float u = uniform_pm1(&state);
                chunk[j] = specs[i].is_norm ? 1.0f + 0.1f * u : a * u;
            }
            s = refvm_st_writer_put(w, chunk, k, err);
            done += k;
        }
        if (progress && s == IR_OK)
            progress(arg, i + 1, n);
    }
    if (s == IR_OK) {
        s = refvm_st_writer_finish(w, err);
        w = NULL;
    }
done:
    refvm_st_writer_abort(w);
    free(specs);
    free(chunk);
    return s;
}
