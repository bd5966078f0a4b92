/*
 * lower_model.c - where a lower_model comes from: the built-in presets (shapes from the public
 * Hugging Face configs of each model) and the reader of a Hugging Face config.json, which
 * refuses every model it cannot lower faithfully with the exact reason instead of lowering an
 * approximation.
 */
#include <errno.h>
#include <math.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "base/base.h"
#include "lower/lower.h"

/* ---------------------------------------------------------------- presets */

typedef struct {
    const char *name;
    int64_t hidden, n_layers, n_heads, n_kv_heads, head_dim, intermediate, vocab, max_pos;
    double rms_eps, rope_theta;
    bool tie;
    bool llama3;
    double factor, low, high;
    int64_t orig_max;
} preset;

static const preset PRESETS[] = {
    /* A model small enough for the reference VM and exhaustive tests. */
    {"toy", 64, 2, 4, 2, 16, 128, 256, 256, 1e-5, 10000.0, false, false, 0, 0, 0, 0},
    /* HuggingFaceTB/SmolLM2-135M */
    {"smollm2-135m", 576, 30, 9, 3, 64, 1536, 49152, 8192, 1e-5, 100000.0, true, false, 0, 0, 0, 0},
    /* meta-llama/Llama-3.2-1B */
    {"llama-3.2-1b", 2048, 16, 32, 8, 64, 8192, 128256, 131072, 1e-5, 500000.0, true, true, 32.0,
     1.0, 4.0, 8192},
    /* meta-llama/Meta-Llama-3-8B */
    {"llama-3-8b", 4096, 32, 32, 8, 128, 14336, 128256, 8192, 1e-5, 500000.0, false, false, 0, 0,
     0, 0},
    /* meta-llama/Meta-Llama-3-70B */
    {"llama-3-70b", 8192, 80, 64, 8, 128, 28672, 128256, 8192, 1e-5, 500000.0, false, false, 0, 0,
     0, 0},
};
#define N_PRESETS ((int)(sizeof PRESETS / sizeof PRESETS[0]))

int lower_preset_count(void) { return N_PRESETS; }

const char *lower_preset_at(int i) { return i >= 0 && i < N_PRESETS ? PRESETS[i].name : NULL; }

ir_status lower_model_preset(const char *name, lower_model *m, ir_error *err)
{
    for (int i = 0; i < N_PRESETS; i++) {
        const preset *s = &PRESETS[i];
        if (strcmp(s->name, name))
            continue;
        memset(m, 0, sizeof *m);
        snprintf(m->name, sizeof m->name, "%s", s->name);
        m->hidden = s->hidden;
        m->n_layers = s->n_layers;
        m->n_heads = s->n_heads;
        m->n_kv_heads = s->n_kv_heads;
        m->head_dim = s->head_dim;
        m->intermediate = s->intermediate;
        m->vocab = s->vocab;
        m->max_pos = s->max_pos;
        m->rms_eps = s->rms_eps;
        m->rope_theta = s->rope_theta;
        m->tie_embeddings = s->tie;
        m->rope_llama3 = s->llama3;
        m->rope_factor = s->factor;
        m->rope_low_freq = s->low;
        m->rope_high_freq = s->high;
        m->rope_orig_max = s->orig_max;
        return IR_OK;
    }
    char known[256] = "";
    for (int i = 0; i < N_PRESETS; i++) {
        strncat(known, i ? ", " : "", sizeof known - strlen(known) - 1);
        strncat(known, PRESETS[i].name, sizeof known - strlen(known) - 1);
    }
    return ir_fail(err, IR_ERR_UNSUPPORTED, "model", "unknown preset '%s' (presets: %s)", name,
                   known);
}

/* ---------------------------------------------------------------- Hugging Face config.json */

/* Field readers. Each returns IR_OK and leaves *out alone when the key is absent or null. */

static ir_status get_int(const cJSON *o, const char *key, int64_t *out, ir_error *err)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    if (!v || cJSON_IsNull(v))
        return IR_OK;
    if (!cJSON_IsNumber(v) || !isfinite(v->valuedouble) || v->valuedouble != floor(v->valuedouble)
        || fabs(v->valuedouble) > 9.0e15)
        return ir_fail(err, IR_ERR_MALFORMED, key, "must be an integer");
    *out = (int64_t)v->valuedouble;
    return IR_OK;
}

static ir_status get_real(const cJSON *o, const char *key, const char *where, double *out,
                          ir_error *err)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    if (!v || cJSON_IsNull(v))
        return IR_OK;
    if (!cJSON_IsNumber(v) || !isfinite(v->valuedouble))
        return ir_fail(err, IR_ERR_MALFORMED, where, "must be a finite number");
    *out = v->valuedouble;
    return IR_OK;
}

static ir_status get_bool(const cJSON *o, const char *key, bool *out, ir_error *err)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    if (!v || cJSON_IsNull(v))
        return IR_OK;
    if (!cJSON_IsBool(v))
        return ir_fail(err, IR_ERR_MALFORMED, key, "must be true or false");
    *out = cJSON_IsTrue(v);
    return IR_OK;
}

/* A key whose mere presence (non-null, non-zero, non-false) means a feature we cannot lower. */
static bool present(const cJSON *o, const char *key)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    if (!v || cJSON_IsNull(v) || cJSON_IsFalse(v))
        return false;
    if (cJSON_IsNumber(v) && v->valuedouble == 0)
        return false;
    return true;
}

#define TRY(x)                                                                                  \
    do {                                                                                        \
        ir_status s_ = (x);                                                                     \
        if (s_ != IR_OK)                                                                        \
            return s_;                                                                          \
    } while (0)

/* rope_scaling (or the newer rope_parameters) object: null, "default" or "llama3". */
static ir_status read_rope_scaling(const cJSON *rs, const char *field, lower_model *m,
                                   ir_error *err)
{
    char where[96];
    if (!rs || cJSON_IsNull(rs))
        return IR_OK;
    if (!cJSON_IsObject(rs))
        return ir_fail(err, IR_ERR_MALFORMED, field, "must be an object or null");
    const char *tkey = "rope_type";
    const cJSON *type = cJSON_GetObjectItemCaseSensitive(rs, tkey);
    if (!type || cJSON_IsNull(type)) {
        tkey = "type";
        type = cJSON_GetObjectItemCaseSensitive(rs, tkey);
    }
    snprintf(where, sizeof where, "%s.%s", field, tkey);
    if (!type || cJSON_IsNull(type)) {
        if (!strcmp(field, "rope_parameters"))
            return IR_OK; /* only rope_theta given */
        return ir_fail(err, IR_ERR_UNSUPPORTED, field,
                       "rope scaling without a rope_type cannot be lowered faithfully");
    }
    if (!cJSON_IsString(type))
        return ir_fail(err, IR_ERR_MALFORMED, where, "must be a string");
    if (!strcmp(type->valuestring, "default"))
        return IR_OK;
    if (strcmp(type->valuestring, "llama3"))
        return ir_fail(err, IR_ERR_UNSUPPORTED, where,
                       "rope scaling type \"%s\" is not supported (only null, \"default\" and "
                       "\"llama3\"); refusing to lower it approximately",
                       type->valuestring);
    static const char *const need[] = {"factor", "low_freq_factor", "high_freq_factor",
                                       "original_max_position_embeddings"};
    for (int i = 0; i < 4; i++) {
        const cJSON *v = cJSON_GetObjectItemCaseSensitive(rs, need[i]);
        snprintf(where, sizeof where, "%s.%s", field, need[i]);
        if (!v || !cJSON_IsNumber(v) || !isfinite(v->valuedouble) || v->valuedouble <= 0)
            return ir_fail(err, IR_ERR_MALFORMED, where,
                           "llama3 rope scaling needs a positive number here");
    }
    m->rope_llama3 = true;
    m->rope_factor = cJSON_GetObjectItemCaseSensitive(rs, "factor")->valuedouble;
    m->rope_low_freq = cJSON_GetObjectItemCaseSensitive(rs, "low_freq_factor")->valuedouble;
    m->rope_high_freq = cJSON_GetObjectItemCaseSensitive(rs, "high_freq_factor")->valuedouble;
    double om = cJSON_GetObjectItemCaseSensitive(rs, "original_max_position_embeddings")->valuedouble;
    if (om != floor(om) || om > 9.0e15) {
        snprintf(where, sizeof where, "%s.original_max_position_embeddings", field);
        return ir_fail(err, IR_ERR_MALFORMED, where, "must be an integer");
    }
    m->rope_orig_max = (int64_t)om;
    if (m->rope_high_freq <= m->rope_low_freq) {
        snprintf(where, sizeof where, "%s.high_freq_factor", field);
        return ir_fail(err, IR_ERR_UNSUPPORTED, where,
                       "must be greater than low_freq_factor (%g), got %g", m->rope_low_freq,
                       m->rope_high_freq);
    }
    return IR_OK;
}

static bool is_llama_arch(const char *s)
{
    return !strcmp(s, "LlamaForCausalLM") || !strcmp(s, "MistralForCausalLM");
}

/* Features that change the math, each refused by name: mixture of experts, latent attention,
 * projection biases, sliding windows, interleaved or partial RoPE, per-layer variants,
 * pre-quantized weights, activations other than SiLU. */
static ir_status refuse_unlowered_features(const cJSON *o, ir_error *err)
{
    static const char *const moe[] = {"num_local_experts", "num_experts", "n_routed_experts",
                                      "moe_intermediate_size"};
    for (int i = 0; i < 4; i++)
        if (present(o, moe[i]))
            return ir_fail(err, IR_ERR_UNSUPPORTED, moe[i],
                           "mixture-of-experts models cannot be lowered (dense Llama only)");
    static const char *const mla[] = {"kv_lora_rank", "q_lora_rank", "qk_rope_head_dim"};
    for (int i = 0; i < 3; i++)
        if (present(o, mla[i]))
            return ir_fail(err, IR_ERR_UNSUPPORTED, mla[i],
                           "multi-head latent attention (MLA) cannot be lowered");
    bool b = false;
    TRY(get_bool(o, "attention_bias", &b, err));
    if (b)
        return ir_fail(err, IR_ERR_UNSUPPORTED, "attention_bias",
                       "attention projections with biases are not lowered (no bias inputs)");
    b = false;
    TRY(get_bool(o, "mlp_bias", &b, err));
    if (b)
        return ir_fail(err, IR_ERR_UNSUPPORTED, "mlp_bias",
                       "MLP projections with biases are not lowered (no bias inputs)");
    if (present(o, "sliding_window"))
        return ir_fail(err, IR_ERR_UNSUPPORTED, "sliding_window",
                       "sliding-window attention is not lowered (full causal window only)");
    b = false;
    TRY(get_bool(o, "rope_interleaved", &b, err));
    if (b)
        return ir_fail(err, IR_ERR_UNSUPPORTED, "rope_interleaved",
                       "interleaved RoPE pairs are not lowered (ROPE is rotate-half)");
    double prf = 1.0;
    TRY(get_real(o, "partial_rotary_factor", "partial_rotary_factor", &prf, err));
    if (prf != 1.0)
        return ir_fail(err, IR_ERR_UNSUPPORTED, "partial_rotary_factor",
                       "partial rotary embeddings (%g) are not lowered (ROPE rotates whole heads)",
                       prf);
    if (present(o, "no_rope_layers") || present(o, "layer_types"))
        return ir_fail(err, IR_ERR_UNSUPPORTED,
                       present(o, "no_rope_layers") ? "no_rope_layers" : "layer_types",
                       "per-layer attention variants are not lowered (every layer is the same)");
    if (present(o, "quantization_config"))
        return ir_fail(err, IR_ERR_UNSUPPORTED, "quantization_config",
                       "pre-quantized checkpoints are not lowered (weights must be f32/f16/bf16)");
    const cJSON *act = cJSON_GetObjectItemCaseSensitive(o, "hidden_act");
    if (act && !cJSON_IsNull(act)) {
        if (!cJSON_IsString(act))
            return ir_fail(err, IR_ERR_MALFORMED, "hidden_act", "must be a string");
        if (strcmp(act->valuestring, "silu"))
            return ir_fail(err, IR_ERR_UNSUPPORTED, "hidden_act",
                           "activation \"%s\" is not supported (SILU_MUL needs \"silu\")",
                           act->valuestring);
    }
    return IR_OK;
}

/* Architecture: only Llama-compatible decoders. Checked after the named features so that e.g.
 * Mixtral is refused as mixture-of-experts, the more useful reason. */
static ir_status check_llama_family(const cJSON *o, ir_error *err)
{
    const cJSON *arch = cJSON_GetObjectItemCaseSensitive(o, "architectures");
    const cJSON *mt = cJSON_GetObjectItemCaseSensitive(o, "model_type");
    if (arch && !cJSON_IsNull(arch)) {
        if (!cJSON_IsArray(arch) || cJSON_GetArraySize(arch) == 0)
            return ir_fail(err, IR_ERR_MALFORMED, "architectures", "must be a non-empty list");
        int i = 0;
        const cJSON *a;
        cJSON_ArrayForEach(a, arch)
        {
            char where[64];
            snprintf(where, sizeof where, "architectures[%d]", i++);
            if (!cJSON_IsString(a))
                return ir_fail(err, IR_ERR_MALFORMED, where, "must be a string");
            if (!is_llama_arch(a->valuestring))
                return ir_fail(err, IR_ERR_UNSUPPORTED, where,
                               "architecture \"%s\" is not LlamaForCausalLM-compatible "
                               "(supported: LlamaForCausalLM, MistralForCausalLM without a "
                               "sliding window)",
                               a->valuestring);
        }
    } else if (!mt || !cJSON_IsString(mt)) {
        return ir_fail(err, IR_ERR_UNSUPPORTED, "architectures",
                       "neither architectures nor model_type says this is a Llama-family model");
    }
    if (mt && !cJSON_IsNull(mt)) {
        if (!cJSON_IsString(mt))
            return ir_fail(err, IR_ERR_MALFORMED, "model_type", "must be a string");
        if (strcmp(mt->valuestring, "llama") && strcmp(mt->valuestring, "mistral"))
            return ir_fail(err, IR_ERR_UNSUPPORTED, "model_type",
                           "model_type \"%s\" is not a Llama-family decoder (llama, mistral)",
                           mt->valuestring);
    }
    return IR_OK;
}

/* Layers, heads, widths and vocabulary: the required sizes, the KV heads (grouped-query
 * attention) and the head dimension rotate-half RoPE can take. */
static ir_status read_shapes(const cJSON *o, lower_model *m, ir_error *err)
{
    static const char *const req[] = {"hidden_size", "num_hidden_layers", "num_attention_heads",
                                      "intermediate_size", "vocab_size"};
    int64_t *dst[] = {&m->hidden, &m->n_layers, &m->n_heads, &m->intermediate, &m->vocab};
    for (int i = 0; i < 5; i++) {
        *dst[i] = -1;
        TRY(get_int(o, req[i], dst[i], err));
        if (*dst[i] == -1)
            return ir_fail(err, IR_ERR_MALFORMED, req[i], "required field missing");
        if (*dst[i] < 1 || *dst[i] > ((int64_t)1 << 31))
            return ir_fail(err, IR_ERR_MALFORMED, req[i], "must be in [1, 2^31], got %lld",
                           (long long)*dst[i]);
    }
    m->n_kv_heads = m->n_heads;
    TRY(get_int(o, "num_key_value_heads", &m->n_kv_heads, err));
    if (m->n_kv_heads < 1)
        return ir_fail(err, IR_ERR_MALFORMED, "num_key_value_heads", "must be >= 1, got %lld",
                       (long long)m->n_kv_heads);
    if (m->n_heads % m->n_kv_heads)
        return ir_fail(err, IR_ERR_UNSUPPORTED, "num_key_value_heads",
                       "num_attention_heads (%lld) is not a multiple of num_key_value_heads "
                       "(%lld)",
                       (long long)m->n_heads, (long long)m->n_kv_heads);
    m->head_dim = 0;
    TRY(get_int(o, "head_dim", &m->head_dim, err));
    if (m->head_dim == 0) {
        if (m->hidden % m->n_heads)
            return ir_fail(err, IR_ERR_UNSUPPORTED, "hidden_size",
                           "hidden_size (%lld) is not num_attention_heads (%lld) * head_dim and "
                           "no head_dim is given",
                           (long long)m->hidden, (long long)m->n_heads);
        m->head_dim = m->hidden / m->n_heads;
    }
    if (m->head_dim < 2 || m->head_dim > BASE_MAX_HEAD_DIM || m->head_dim % 2)
        return ir_fail(err, IR_ERR_UNSUPPORTED, "head_dim",
                       "head_dim must be even and in [2, 4096] for rotate-half RoPE, got %lld",
                       (long long)m->head_dim);
    return IR_OK;
}

/* A Hugging Face config.json into m: what cannot be lowered is refused first, by name, then
 * anything not a Llama-family decoder; then the sizes, norm and RoPE. */
static ir_status read_hf(const cJSON *o, lower_model *m, ir_error *err)
{
    if (!cJSON_IsObject(o))
        return ir_fail(err, IR_ERR_MALFORMED, "$", "config.json must hold a JSON object");
    memset(m, 0, sizeof *m);
    snprintf(m->name, sizeof m->name, "hf");
    TRY(refuse_unlowered_features(o, err));
    TRY(check_llama_family(o, err));
    TRY(read_shapes(o, m, err));
    m->max_pos = 2048;
    TRY(get_int(o, "max_position_embeddings", &m->max_pos, err));
    if (m->max_pos < 1 || m->max_pos > ((int64_t)1 << 31))
        return ir_fail(err, IR_ERR_MALFORMED, "max_position_embeddings",
                       "must be in [1, 2^31], got %lld", (long long)m->max_pos);
    m->rms_eps = 1e-6;
    TRY(get_real(o, "rms_norm_eps", "rms_norm_eps", &m->rms_eps, err));
    if (m->rms_eps <= 0)
        return ir_fail(err, IR_ERR_MALFORMED, "rms_norm_eps", "must be > 0");
    m->rope_theta = 10000.0;
    TRY(get_real(o, "rope_theta", "rope_theta", &m->rope_theta, err));
    const cJSON *rp = cJSON_GetObjectItemCaseSensitive(o, "rope_parameters");
    if (rp && cJSON_IsObject(rp))
        TRY(get_real(rp, "rope_theta", "rope_parameters.rope_theta", &m->rope_theta, err));
    if (m->rope_theta <= 1.0)
        return ir_fail(err, IR_ERR_MALFORMED, "rope_theta", "must be > 1");
    m->tie_embeddings = false;
    TRY(get_bool(o, "tie_word_embeddings", &m->tie_embeddings, err));
    const cJSON *rs = cJSON_GetObjectItemCaseSensitive(o, "rope_scaling");
    if (rs && !cJSON_IsNull(rs))
        return read_rope_scaling(rs, "rope_scaling", m, err);
    return read_rope_scaling(rp, "rope_parameters", m, err);
}

ir_status lower_model_from_hf_json(const char *text, size_t len, lower_model *m, ir_error *err)
{
    cJSON *o = cJSON_ParseWithLength(text, len);
    if (!o)
        return ir_fail(err, IR_ERR_MALFORMED, "$", "not valid JSON");
    ir_status s = read_hf(o, m, err);
    cJSON_Delete(o);
    return s;
}


ir_status lower_model_from_hf_config(const char *path, lower_model *m, ir_error *err)
{
    char *text;
    size_t len;
    ir_status s = ir_read_text_file(path, IR_MAX_FILE_BYTES, &text, &len, err);
    if (s != IR_OK)
        return s;
    s = lower_model_from_hf_json(text, len, m, err);
    free(text);
    return s;
}

ir_status lower_config_read_file(const char *path, ir_config *c, ir_error *err)
{
    char *text;
    size_t len;
    ir_config_default(c);
    ir_status s = ir_read_text_file(path, IR_MAX_FILE_BYTES, &text, &len, err);
    if (s != IR_OK)
        return s;
    s = ir_config_read_json(text, len, true, c, err);
    free(text);
    if (s == IR_OK && (s = lower_config_check(c, err)) != IR_OK)
        ir_config_free(c);
    return s;
}

ir_status lower_model_load(const char *name_or_path, lower_model *m, ir_error *err)
{
    for (int i = 0; i < N_PRESETS; i++)
        if (!strcmp(PRESETS[i].name, name_or_path))
            return lower_model_preset(name_or_path, m, err);
    if (strchr(name_or_path, '/') || strstr(name_or_path, ".json"))
        return lower_model_from_hf_config(name_or_path, m, err);
    return lower_model_preset(name_or_path, m, err);
}

void lower_opts_default(lower_opts *o)
{
    memset(o, 0, sizeof *o);
    o->pos = 0;
    o->max_seq = 0; /* 0: min(max_pos, 4096), resolved by lower_program */
    o->dtype = IR_BF16;
    o->sample_argmax = false;
    o->dialect = LOWER_DIALECT_OURS;
}

const char *lower_dialect_name(lower_dialect d)
{
    switch (d) {
    case LOWER_DIALECT_OURS: return "ours";
    case LOWER_DIALECT_AMK: return "amk";
    }
    return "?";
}

bool lower_dialect_parse(const char *s, lower_dialect *out)
{
    if (!strcmp(s, "ours"))
        *out = LOWER_DIALECT_OURS;
    else if (!strcmp(s, "amk"))
        *out = LOWER_DIALECT_AMK;
    else
        return false;
    return true;
}

/* Read back what lower_program writes into meta.model_config. */
ir_status lower_model_from_meta(const ir_program *p, lower_model *m, ir_error *err)
{
    memset(m, 0, sizeof *m);
    cJSON *meta = cJSON_Parse(p->meta_json ? p->meta_json : "{}");
    const cJSON *mc = meta ? cJSON_GetObjectItemCaseSensitive(meta, "model_config") : NULL;
    if (!cJSON_IsObject(mc)) {
        cJSON_Delete(meta);
        return ir_fail(err, IR_ERR_MALFORMED, "meta.model_config", "absent: the program was not "
                       "written by amk lower; name the model with --model");
    }
    static const struct {
        const char *key;
        char kind;                 /* i: int64, r: double, b: bool */
        size_t off;
    } F[] = {
        {"hidden", 'i', offsetof(lower_model, hidden)},
        {"n_layers", 'i', offsetof(lower_model, n_layers)},
        {"n_heads", 'i', offsetof(lower_model, n_heads)},
        {"n_kv_heads", 'i', offsetof(lower_model, n_kv_heads)},
        {"head_dim", 'i', offsetof(lower_model, head_dim)},
        {"intermediate", 'i', offsetof(lower_model, intermediate)},
        {"vocab", 'i', offsetof(lower_model, vocab)},
        {"max_pos", 'i', offsetof(lower_model, max_pos)},
        {"rms_eps", 'r', offsetof(lower_model, rms_eps)},
        {"rope_theta", 'r', offsetof(lower_model, rope_theta)},
        {"tie_embeddings", 'b', offsetof(lower_model, tie_embeddings)},
        {"rope_llama3", 'b', offsetof(lower_model, rope_llama3)},
        {"rope_factor", 'r', offsetof(lower_model, rope_factor)},
        {"rope_low_freq", 'r', offsetof(lower_model, rope_low_freq)},
        {"rope_high_freq", 'r', offsetof(lower_model, rope_high_freq)},
        {"rope_orig_max", 'i', offsetof(lower_model, rope_orig_max)},
    };
    ir_status s = IR_OK;
    for (size_t i = 0; i < sizeof F / sizeof F[0] && s == IR_OK; i++) {
        const cJSON *v = cJSON_GetObjectItemCaseSensitive(mc, F[i].key);
        char where[96];
        snprintf(where, sizeof where, "meta.model_config.%s", F[i].key);
        char *field = (char *)m + F[i].off;
        if (F[i].kind == 'b') {
            if (!cJSON_IsBool(v))
                s = ir_fail(err, IR_ERR_MALFORMED, where, "missing or not a boolean");
            else
                *(bool *)field = cJSON_IsTrue(v);
        } else if (!cJSON_IsNumber(v)) {
            s = ir_fail(err, IR_ERR_MALFORMED, where, "missing or not a number");
        } else if (F[i].kind == 'i') {
            if (!(fabs(v->valuedouble) < 9e15) || v->valuedouble != floor(v->valuedouble))
                s = ir_fail(err, IR_ERR_MALFORMED, where, "not an integer");
            else
                *(int64_t *)field = (int64_t)v->valuedouble;
        } else {
            *(double *)field = v->valuedouble;
        }
    }
    const cJSON *name = cJSON_GetObjectItemCaseSensitive(mc, "name");
    snprintf(m->name, sizeof m->name, "%s", cJSON_IsString(name) ? name->valuestring : "meta");
    cJSON_Delete(meta);
    return s;
}
