/*
 * test_safetensors.c - the safetensors reader refuses every malformed file with an error naming
 * the file and tensor, the writer round-trips, the fp16/bf16 conversions round correctly, and
 * random weights are deterministic and usable by both the VM and the eager forward.
 */
#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "lower/lower.h"
#include "refvm/refvm.h"

/* ---------------------------------------------------------------- helpers */

static char tmp_path[128];

static const char *tmp(const char *tag)
{
    snprintf(tmp_path, sizeof tmp_path, "/tmp/amk_test_st_%d_%s.safetensors", (int)getpid(), tag);
    return tmp_path;
}

/* A file: 8-byte length (hlen, or the header's own length when hlen < 0), header, data_len
 * bytes of data. */
static const char *raw_file(const char *tag, const char *header, int64_t hlen, size_t data_len)
{
    const char *path = tmp(tag);
    FILE *f = fopen(path, "wb");
    cr_assert_not_null(f);
    uint64_t n = hlen < 0 ? strlen(header) : (uint64_t)hlen;
    for (int i = 0; i < 8; i++)
        fputc((int)((n >> (8 * i)) & 0xff), f);
    fwrite(header, 1, strlen(header), f);
    for (size_t i = 0; i < data_len; i++)
        fputc((int)(i & 0xff), f);
    fclose(f);
    return path;
}

static ir_error open_fails(const char *path, ir_status want)
{
    refvm_st *st = (refvm_st *)1;
    ir_error err = {0};
    cr_assert_eq(refvm_st_open(path, &st, &err), want, "%s: %s", err.where, err.why);
    cr_assert_null(st);
    unlink(path);
    return err;
}

static char *slurp(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    cr_assert_not_null(f, "%s", path);
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *b = malloc((size_t)n + 1);
    cr_assert_eq(fread(b, 1, (size_t)n, f), (size_t)n);
    fclose(f);
    *len = (size_t)n;
    return b;
}

/* ---------------------------------------------------------------- number formats */

Test(convert, bf16_and_f16_known_values_and_rounding)
{
    cr_assert_eq(refvm_f32_to_bf16(1.0f), 0x3f80);
    cr_assert_eq(refvm_f32_to_bf16(-2.0f), 0xc000);
    cr_assert_float_eq(refvm_bf16_to_f32(0x3f80), 1.0f, 0);
    /* 1 + 2^-8 is halfway between two bf16 values: ties go to even (1.0). */
    cr_assert_eq(refvm_f32_to_bf16(1.00390625f), 0x3f80);
    cr_assert_eq(refvm_f32_to_bf16(1.01171875f), 0x3f82);     /* 1 + 3*2^-8: up to even */
    cr_assert(isnan(refvm_bf16_to_f32(refvm_f32_to_bf16(NAN))));
    cr_assert_eq(refvm_f32_to_f16(1.0f), 0x3c00);
    cr_assert_eq(refvm_f32_to_f16(65504.0f), 0x7bff);
    cr_assert_eq(refvm_f32_to_f16(65520.0f), 0x7c00, "65520 rounds to inf");
    cr_assert_eq(refvm_f32_to_f16(-0.0f), 0x8000);
    cr_assert_eq(refvm_f32_to_f16(5.9604645e-8f), 0x0001, "smallest subnormal");
    cr_assert_eq(refvm_f32_to_f16(2.9802322e-8f), 0x0000, "half of it ties to even zero");
    cr_assert_float_eq(refvm_f16_to_f32(0x0001), 5.9604645e-8f, 0);
    cr_assert_float_eq(refvm_f16_to_f32(0x3555), 0.33325195f, 0);
    cr_assert(isinf(refvm_f16_to_f32(0xfc00)) && refvm_f16_to_f32(0xfc00) < 0);
    /* Every f16 value survives f16 -> f32 -> f16. */
    for (uint32_t h = 0; h < 0x10000; h++) {
        if ((h & 0x7c00) == 0x7c00 && (h & 0x3ff))
            continue;                                            /* NaNs */
        cr_assert_eq(refvm_f32_to_f16(refvm_f16_to_f32((uint16_t)h)), h, "f16 %04x", h);
    }
}

/* ---------------------------------------------------------------- writer and reader */

Test(safetensors, writer_round_trips_every_dtype_through_the_reader)
{
    const char *path = tmp("rt");
    float v[6] = {1.0f, -0.5f, 3.140625f, 1e-3f, 0.0f, 65504.0f};
    int64_t s23[2] = {2, 3}, s6[1] = {6};
    refvm_st_writer *w;
    ir_error err = {0};
    cr_assert_eq(refvm_st_writer_new(path, 3, &w, &err), IR_OK);
    cr_assert_eq(refvm_st_writer_declare(w, "a.f32", IR_F32, 2, s23, &err), IR_OK);
    cr_assert_eq(refvm_st_writer_declare(w, "b.f16", IR_F16, 1, s6, &err), IR_OK);
    cr_assert_eq(refvm_st_writer_declare(w, "c.bf16", IR_BF16, 1, s6, &err), IR_OK);
    cr_assert_eq(refvm_st_writer_put(w, v, 4, &err), IR_OK);      /* chunks across tensors */
    cr_assert_eq(refvm_st_writer_put(w, v + 4, 2, &err), IR_OK);
    cr_assert_eq(refvm_st_writer_put(w, v, 6, &err), IR_OK);
    cr_assert_eq(refvm_st_writer_put(w, v, 6, &err), IR_OK);
    cr_assert_eq(refvm_st_writer_finish(w, &err), IR_OK, "%s", err.why);
    refvm_st *st;
    cr_assert_eq(refvm_st_open(path, &st, &err), IR_OK, "%s", err.why);
    cr_assert_eq(st->n, 3);
    const refvm_tensor *a = refvm_st_find(st, "a.f32"), *b = refvm_st_find(st, "b.f16"),
                       *c = refvm_st_find(st, "c.bf16");
    cr_assert(a && b && c);
    cr_assert_eq(a->rank, 2);
    cr_assert_eq(a->shape[1], 3);
    cr_assert_str_eq(b->st_dtype, "F16");
    float out[6];
    cr_assert_eq(refvm_st_to_f32(st, a, out, &err), IR_OK);
    cr_assert_eq(memcmp(out, v, sizeof v), 0);
    cr_assert_eq(refvm_st_to_f32(st, b, out, &err), IR_OK);
    for (int i = 0; i < 6; i++)
        cr_assert_float_eq(out[i], refvm_f16_to_f32(refvm_f32_to_f16(v[i])), 0);
    cr_assert_float_eq(out[2], 3.140625f, 0);
    cr_assert_eq(refvm_st_to_f32(st, c, out, &err), IR_OK);
    cr_assert_float_eq(out[0], 1.0f, 0);
    cr_assert_float_eq(out[2], 3.140625f, 0);
    cr_assert_float_eq(out[5], 65536.0f, 0, "65504 rounds to 65536 in bf16");
    refvm_st_close(st);
    unlink(path);
}

Test(safetensors, writer_refuses_missing_or_extra_values)
{
    const char *path = tmp("short");
    int64_t s[1] = {4};
    float v[5] = {0};
    refvm_st_writer *w;
    ir_error err = {0};
    cr_assert_eq(refvm_st_writer_new(path, 1, &w, &err), IR_OK);
    cr_assert_eq(refvm_st_writer_declare(w, "t", IR_F32, 1, s, &err), IR_OK);
    cr_assert_eq(refvm_st_writer_put(w, v, 5, &err), IR_ERR_MALFORMED);
    refvm_st_writer_abort(w);
    cr_assert_eq(refvm_st_writer_new(path, 1, &w, &err), IR_OK);
    cr_assert_eq(refvm_st_writer_declare(w, "t", IR_F32, 1, s, &err), IR_OK);
    cr_assert_eq(refvm_st_writer_put(w, v, 3, &err), IR_OK);
    cr_assert_eq(refvm_st_writer_finish(w, &err), IR_ERR_MALFORMED);
    cr_assert(strstr(err.why, "3 of 4 values"), "%s", err.why);
    cr_assert_neq(access(path, F_OK), 0, "no half-written file is left");
}

/* ---------------------------------------------------------------- malformed files */

Test(safetensors, missing_file_is_an_io_error)
{
    ir_error err = open_fails("/nonexistent/dir/x.safetensors", IR_ERR_IO);
    cr_assert_str_eq(err.where, "/nonexistent/dir/x.safetensors");
}

Test(safetensors, file_shorter_than_the_length_field_is_refused)
{
    const char *path = tmp("tiny");
    FILE *f = fopen(path, "wb");
    fputs("abc", f);
    fclose(f);
    ir_error err = open_fails(path, IR_ERR_MALFORMED);
    cr_assert(strstr(err.why, "too short"), "%s", err.why);
}

Test(safetensors, header_length_beyond_the_file_is_refused)
{
    ir_error err = open_fails(raw_file("hlen", "{}", 1 << 20, 0), IR_ERR_MALFORMED);
    cr_assert(strstr(err.why, "bad header length 1048576"), "%s", err.why);
    err = open_fails(raw_file("hlen2", "{}", (int64_t)1 << 62, 0), IR_ERR_MALFORMED);
    cr_assert(strstr(err.why, "bad header length"), "%s", err.why);
}

Test(safetensors, header_that_is_not_json_is_refused)
{
    ir_error err = open_fails(raw_file("json", "{\"a\": [1, 2", -1, 0), IR_ERR_MALFORMED);
    cr_assert(strstr(err.why, "not valid JSON"), "%s", err.why);
}

Test(safetensors, data_offsets_beyond_the_file_name_the_tensor)
{
    const char *h = "{\"w\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[0,16]},"
                    "\"big\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[16,32]}}";
    ir_error err = open_fails(raw_file("beyond", h, -1, 20), IR_ERR_MALFORMED);
    cr_assert(strstr(err.where, "tensor 'big'"), "%s", err.where);
    cr_assert(strstr(err.why, "beyond the end of the file"), "%s", err.why);
}

Test(safetensors, truncated_real_file_names_the_cut_tensor)
{
    size_t len;
    char *b = slurp("tests/fixtures/llama_gqa2_f32/model.safetensors", &len);
    const char *path = tmp("trunc");
    FILE *f = fopen(path, "wb");
    fwrite(b, 1, len - 1000, f);
    fclose(f);
    free(b);
    refvm_st *st;
    ir_error err = {0};
    cr_assert_eq(refvm_st_open(path, &st, &err), IR_ERR_MALFORMED);
    cr_assert(strstr(err.where, "tensor '"), "%s", err.where);
    cr_assert(strstr(err.why, "truncated"), "%s", err.why);
    unlink(path);
}

Test(safetensors, span_that_disagrees_with_shape_and_dtype_is_refused)
{
    const char *h = "{\"w\":{\"dtype\":\"BF16\",\"shape\":[2,3],\"data_offsets\":[0,24]}}";
    ir_error err = open_fails(raw_file("span", h, -1, 24), IR_ERR_MALFORMED);
    cr_assert(strstr(err.where, "tensor 'w'"), "%s", err.where);
    cr_assert(strstr(err.why, "span 24 bytes but shape x BF16 needs 12"), "%s", err.why);
}

Test(safetensors, overlapping_and_reversed_offsets_are_refused)
{
    const char *h = "{\"a\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[0,16]},"
                    "\"b\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[8,24]}}";
    ir_error err = open_fails(raw_file("overlap", h, -1, 24), IR_ERR_MALFORMED);
    cr_assert(strstr(err.why, "overlap tensor 'a'"), "%s", err.why);
    cr_assert(strstr(err.where, "tensor 'b'"), "%s", err.where);
    h = "{\"a\":{\"dtype\":\"F32\",\"shape\":[0],\"data_offsets\":[16,8]}}";
    err = open_fails(raw_file("reversed", h, -1, 24), IR_ERR_MALFORMED);
    cr_assert(strstr(err.why, "out of order"), "%s", err.why);
}

Test(safetensors, bad_entries_are_refused_naming_the_field)
{
    struct {
        const char *header, *why;
    } cases[] = {
        {"{\"w\":{\"dtype\":\"Q4\",\"shape\":[1],\"data_offsets\":[0,1]}}", "unknown dtype 'Q4'"},
        {"{\"w\":{\"shape\":[1],\"data_offsets\":[0,4]}}", "dtype missing"},
        {"{\"w\":{\"dtype\":\"F32\",\"shape\":[-1],\"data_offsets\":[0,4]}}", "shape[0]"},
        {"{\"w\":{\"dtype\":\"F32\",\"shape\":[1.5],\"data_offsets\":[0,4]}}", "shape[0]"},
        {"{\"w\":{\"dtype\":\"F32\",\"shape\":\"x\",\"data_offsets\":[0,4]}}", "shape missing"},
        {"{\"w\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0]}}", "data_offsets must be"},
        {"{\"w\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,\"4\"]}}", "data_offsets must be"},
        {"{\"w\":3}", "not an object"},
        {"[1,2]", "not a JSON object"},
        {"{\"__metadata__\":7}", "__metadata__"},
        {"{\"w\":{\"dtype\":\"F32\",\"shape\":[1,1,1,1,1,1,1,1,1],\"data_offsets\":[0,4]}}", "rank 9"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        refvm_st *st;
        ir_error err = {0};
        const char *path = raw_file("entry", cases[i].header, -1, 8);
        cr_assert_neq(refvm_st_open(path, &st, &err), IR_OK, "case %zu accepted", i);
        cr_assert(strstr(err.why, cases[i].why), "case %zu: '%s' lacks '%s'", i, err.why,
                  cases[i].why);
        unlink(path);
    }
}

Test(safetensors, unsupported_dtype_is_refused_when_read_naming_the_tensor)
{
    const char *h = "{\"__metadata__\":{\"format\":\"pt\"},"
                    "\"ids\":{\"dtype\":\"I32\",\"shape\":[2],\"data_offsets\":[0,8]}}";
    const char *path = raw_file("i32", h, -1, 8);
    refvm_st *st;
    ir_error err = {0};
    cr_assert_eq(refvm_st_open(path, &st, &err), IR_OK, "%s", err.why);
    float out[2];
    cr_assert_eq(refvm_st_to_f32(st, refvm_st_find(st, "ids"), out, &err), IR_ERR_UNSUPPORTED);
    cr_assert(strstr(err.where, "tensor 'ids'"), "%s", err.where);
    cr_assert(strstr(err.why, "I32"), "%s", err.why);
    refvm_st_close(st);
    unlink(path);
}

/* Flipping header bytes of a real file gives a clean verdict every time, never a crash. */
Test(safetensors, corrupted_headers_never_crash)
{
    size_t len;
    char *b = slurp("tests/fixtures/llama_gqa4_tied_f32/model.safetensors", &len);
    uint64_t hlen = 0;
    for (int i = 7; i >= 0; i--)
        hlen = hlen << 8 | (unsigned char)b[i];
    uint64_t rng = 12345;
    const char *path = tmp("fuzz");
    int refused = 0;
    for (int iter = 0; iter < 300; iter++) {
        char *m = malloc(len);
        memcpy(m, b, len);
        for (int k = 0; k < 3; k++) {
            rng = rng * 6364136223846793005ull + 1442695040888963407ull;
            size_t at = (size_t)((rng >> 33) % (hlen + 8));
            m[at] = (char)(rng >> 13);
        }
        FILE *f = fopen(path, "wb");
        fwrite(m, 1, len, f);
        fclose(f);
        free(m);
        refvm_st *st;
        ir_error err = {0};
        if (refvm_st_open(path, &st, &err) == IR_OK) {
            float *tmpv = NULL;
            for (int i = 0; i < st->n; i++) {
                tmpv = realloc(tmpv, (size_t)(st->tensors[i].numel + 1) * sizeof(float));
                refvm_st_to_f32(st, &st->tensors[i], tmpv, &err);
            }
            free(tmpv);
            refvm_st_close(st);
        } else {
            cr_assert(err.why[0]);
            refused++;
        }
    }
    cr_assert_gt(refused, 100, "most corruptions must be detected, got %d", refused);
    free(b);
    unlink(path);
}

/* ---------------------------------------------------------------- random weights */

Test(weights_random, same_seed_same_bytes_other_seed_other_values)
{
    lower_model m;
    ir_error err = {0};
    cr_assert_eq(lower_model_preset("toy", &m, &err), IR_OK);
    char a[128], b[128], c[128];
    snprintf(a, sizeof a, "%s", tmp("ra"));
    snprintf(b, sizeof b, "%s", tmp("rb"));
    snprintf(c, sizeof c, "%s", tmp("rc"));
    cr_assert_eq(refvm_weights_random(&m, 7, IR_BF16, a, &err), IR_OK, "%s", err.why);
    cr_assert_eq(refvm_weights_random(&m, 7, IR_BF16, b, &err), IR_OK);
    cr_assert_eq(refvm_weights_random(&m, 8, IR_BF16, c, &err), IR_OK);
    size_t la, lb, lc;
    char *da = slurp(a, &la), *db = slurp(b, &lb), *dc = slurp(c, &lc);
    cr_assert_eq(la, lb);
    cr_assert_eq(memcmp(da, db, la), 0, "same seed must give identical bytes");
    cr_assert_eq(la, lc);
    cr_assert_neq(memcmp(da, dc, la), 0);
    free(da);
    free(db);
    free(dc);

    refvm_st *st;
    cr_assert_eq(refvm_st_open(a, &st, &err), IR_OK);
    cr_assert_eq(st->n, 1 + 9 * (int)m.n_layers + 1 + (m.tie_embeddings ? 0 : 1));
    const refvm_tensor *e = refvm_st_find(st, "model.embed_tokens.weight");
    const refvm_tensor *n = refvm_st_find(st, "model.layers.1.post_attention_layernorm.weight");
    const refvm_tensor *d = refvm_st_find(st, "model.layers.1.mlp.down_proj.weight");
    cr_assert(e && n && d);
    cr_assert_eq(e->dtype, IR_BF16);
    cr_assert_eq(d->shape[0], m.hidden);
    cr_assert_eq(d->shape[1], m.intermediate);
    float *v = malloc((size_t)e->numel * sizeof(float));
    refvm_st_to_f32(st, e, v, &err);
    double ss = 0;
    for (int64_t i = 0; i < e->numel; i++)
        ss += (double)v[i] * v[i];
    cr_assert_float_eq(sqrt(ss / (double)e->numel), 0.02, 0.002, "projection std");
    refvm_st_to_f32(st, n, v, &err);
    for (int64_t i = 0; i < n->numel; i++)
        cr_assert(v[i] >= 0.89f && v[i] <= 1.11f, "norm weight %g", v[i]);
    free(v);
    refvm_st_close(st);
    unlink(a);
    unlink(b);
    unlink(c);
}

Test(weights_random, tied_model_has_no_lm_head)
{
    lower_model m;
    ir_error err = {0};
    cr_assert_eq(lower_model_from_hf_config("tests/fixtures/llama_gqa4_tied_f32/config.json", &m,
                                            &err), IR_OK);
    const char *path = tmp("tied");
    cr_assert_eq(refvm_weights_random(&m, 1, IR_F16, path, &err), IR_OK);
    refvm_st *st;
    cr_assert_eq(refvm_st_open(path, &st, &err), IR_OK);
    cr_assert_null(refvm_st_find(st, "lm_head.weight"));
    cr_assert_eq(refvm_st_find(st, "model.norm.weight")->dtype, IR_F16);
    refvm_st_close(st);
    unlink(path);
}

/* Random weights drive the whole gate: the VM on a lowered toy program agrees with the eager
 * forward at every step. */
Test(weights_random, toy_random_weights_pass_the_gate_on_the_vm)
{
    lower_model m;
    ir_error err = {0};
    cr_assert_eq(lower_model_preset("toy", &m, &err), IR_OK);
    const char *path = tmp("gate");
    cr_assert_eq(refvm_weights_random(&m, 3, IR_BF16, path, &err), IR_OK);
    refvm_st *st;
    cr_assert_eq(refvm_st_open(path, &st, &err), IR_OK);
    ir_config c;
    ir_config_default(&c);
    lower_opts o;
    lower_opts_default(&o);
    o.dtype = IR_BF16;
    o.max_seq = 32;
    ir_program *p;
    cr_assert_eq(lower_program(&m, &c, ir_target_builtin("h100"), &o, &p, &err), IR_OK, "%s",
                 err.why);
    refvm *vm;
    refvm_eager *e;
    cr_assert_eq(refvm_new(p, NULL, &vm, &err), IR_OK);
    cr_assert_eq(refvm_bind(vm, st, &err), IR_OK, "%s", err.why);
    cr_assert_eq(refvm_eager_new(&m, st, 32, &e, &err), IR_OK);
    int32_t tok = 5;
    for (int pos = 0; pos < 32; pos++) {
        refvm_result r;
        cr_assert_eq(refvm_step(vm, tok, pos, &r, &err), IR_OK);
        cr_assert_eq(r.outcome, REFVM_DONE);
        int64_t n;
        const float *lg = refvm_logits(vm, &n), *ref;
        cr_assert_eq(refvm_eager_forward(e, tok, pos, &ref, &err), IR_OK);
        refvm_gate_cmp g = refvm_gate_compare(lg, ref, n, REFVM_GATE_REL_TOL);
        cr_assert(g.pass, "pos %d: err %g of %g", pos, g.max_abs_err, g.max_abs_ref);
        tok = g.top_a;
    }
    refvm_eager_free(e);
    refvm_free(vm);
    ir_program_free(p);
    refvm_st_close(st);
    unlink(path);
}
