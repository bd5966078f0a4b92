/*
 * test_ir.c - pins the IR part: byte-stable round trips of hand-written AMK-format programs and
 * the values they carry, one refusal per malformed class (JSON path and reason), the committed
 * malformed corpus read in-process and through the CLI (under valgrind when present), reading
 * truncated and bit-flipped programs without crashing, the graph helpers, footprints, the GPU
 * target registry and target files, strict config reading and SHA-256.
 */
#include <cjson/cJSON.h>
#include <criterion/criterion.h>
#include <dirent.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "ir/amk_ir.h"

#define IRDATA "tests/data/ir/"
#define BAD "tests/data/malformed/"

/* ---------------------------------------------------------------- helpers */

/* The whole file in a malloc'd buffer of exactly *len bytes plus a NUL. */
static char *slurp(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    cr_assert_not_null(f, "cannot open %s", path);
    cr_assert_eq(fseek(f, 0, SEEK_END), 0);
    long n = ftell(f);
    cr_assert_geq(n, 0);
    rewind(f);
    char *s = malloc((size_t)n + 1);
    cr_assert_not_null(s);
    cr_assert_eq(fread(s, 1, (size_t)n, f), (size_t)n);
    fclose(f);
    s[n] = 0;
    *len = (size_t)n;
    return s;
}

static ir_program *read_ok(const char *path)
{
    ir_program *p = NULL;
    ir_error err = {0};
    ir_status s = ir_read_file(path, NULL, &p, &err);
    cr_assert_eq(s, IR_OK, "%s: %s at %s: %s", path, ir_status_name(s), err.where, err.why);
    cr_assert_not_null(p);
    return p;
}

static ir_program *parse_ok(const char *text, size_t len)
{
    ir_program *p = NULL;
    ir_error err = {0};
    ir_status s = ir_read_json(text, len, NULL, &p, &err);
    cr_assert_eq(s, IR_OK, "%s at %s: %s", ir_status_name(s), err.where, err.why);
    return p;
}

static char *write_ok(const ir_program *p, size_t *len)
{
    char *out = NULL;
    ir_error err = {0};
    ir_status s = ir_write_json(p, &out, len, &err);
    cr_assert_eq(s, IR_OK, "write: %s: %s", ir_status_name(s), err.why);
    cr_assert_eq(strlen(out), *len);
    return out;
}

/* read -> write -> read -> write: the two writes must be the same bytes. Returns the program of
 * the first read; *text1 (if asked) is the first write, which the caller frees. */
static ir_program *read_round_trip(const char *path, char **text1)
{
    ir_program *p = read_ok(path);
    size_t n1, n2;
    char *a = write_ok(p, &n1);
    ir_program *q = parse_ok(a, n1);
    cr_assert_eq(q->warnings.n, 0, "the canonical form must not carry unknown keys");
    char *b = write_ok(q, &n2);
    cr_assert_eq(n1, n2, "%s: second write has %zu bytes, first %zu", path, n2, n1);
    cr_assert(memcmp(a, b, n1) == 0, "%s: second write differs from the first", path);
    free(b);
    ir_program_free(q);
    if (text1)
        *text1 = a;
    else
        free(a);
    return p;
}

static bool has_warning(const ir_program *p, const char *w)
{
    for (int i = 0; i < p->warnings.n; i++)
        if (!strcmp(p->warnings.items[i], w))
            return true;
    return false;
}

static void expect_malformed_json(const char *text, const char *where, const char *why)
{
    ir_program *p = (ir_program *)1;
    ir_error err = {0};
    ir_status s = ir_read_json(text, strlen(text), NULL, &p, &err);
    cr_assert_eq(s, IR_ERR_MALFORMED, "got %s for %s", ir_status_name(s), text);
    cr_assert_null(p);
    cr_assert_str_eq(err.where, where, "why was: %s", err.why);
    cr_assert_not_null(strstr(err.why, why), "why '%s' lacks '%s'", err.why, why);
}

/* Reads a corpus file; asserts MALFORMED, the exact path and a fragment of the reason. */
static void expect_malformed(const char *name, const char *where, const char *why)
{
    char path[256];
    snprintf(path, sizeof path, BAD "%s", name);
    ir_program *p = (ir_program *)1;
    ir_error err = {0};
    ir_status s = ir_read_file(path, NULL, &p, &err);
    cr_assert_eq(s, IR_ERR_MALFORMED, "%s: got %s (%s)", name, ir_status_name(s), err.why);
    cr_assert_null(p);
    cr_assert_eq(err.status, IR_ERR_MALFORMED);
    /* an error about the text as a whole (no JSON path) names the file */
    cr_assert_str_eq(err.where, *where ? where : path, "%s: why was: %s", name, err.why);
    cr_assert_not_null(strstr(err.why, why), "%s: why '%s' lacks '%s'", name, err.why, why);
}

/* A small xorshift generator so that fuzz runs are reproducible. */
static uint64_t rng_next(uint64_t *s)
{
    uint64_t x = *s;
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    return *s = x;
}

/* ---------------------------------------------------------------- round trips */

Test(ir_roundtrip, minimal_sample_is_byte_stable_and_takes_amk_defaults)
{
    char *text;
    ir_program *p = read_round_trip(IRDATA "amk_minimal.json", &text);
    cr_assert_str_eq(p->ir_version, "0.2.1", "a minor version above ours is kept");
    cr_assert_eq(p->n_buffers, 1);
    cr_assert_eq(p->n_counters, 1);
    cr_assert_eq(p->n_tasks, 1);
    cr_assert(!p->has_target && !p->has_pages && !p->has_config && !p->has_plan && !p->has_decode);
    cr_assert_eq(p->tasks[0].sm, -1, "sm null reads as -1");
    cr_assert_eq(p->tasks[0].op, IR_OP_COPY);
    cr_assert_eq(p->buffers[0].kind, IR_IO_OUTPUT);
    cr_assert_null(p->buffers[0].source);
    cr_assert_eq(p->warnings.n, 1);
    cr_assert_str_eq(p->warnings.items[0], "future_key: unknown key ignored");
    cr_assert_not_null(strstr(text, "\"sm\": null"));
    cr_assert_not_null(strstr(text, "\"target\": null"));
    cr_assert_not_null(strstr(text, "\"pages\": null"));
    cr_assert_not_null(strstr(text, "\"source\": null"));
    cr_assert_null(strstr(text, "future_key"), "unknown keys are not written back");
    free(text);
    ir_program_free(p);
}

Test(ir_roundtrip, full_sample_keeps_enums_shapes_reals_target_pages_and_config)
{
    char *text;
    ir_program *p = read_round_trip(IRDATA "amk_full.json", &text);
    cr_assert_eq(p->warnings.n, 0);
    cr_assert_eq(p->n_buffers, 5);
    cr_assert_eq(p->buffers[0].kind, IR_IO_INPUT);
    cr_assert_eq(p->buffers[0].dtype, IR_F16);
    cr_assert_eq(p->buffers[2].kind, IR_WEIGHT);
    cr_assert_eq(p->buffers[2].rank, 2);
    cr_assert_eq(p->buffers[2].shape[0], 16);
    cr_assert_eq(p->buffers[2].shape[1], 16);
    cr_assert_str_eq(p->buffers[2].source, "proj.weight");
    cr_assert_eq(p->buffers[3].space, IR_SMEM);
    cr_assert_eq(p->buffers[1].rank, 1);
    cr_assert_eq(ir_weight_bytes(p), 16 * 2 + 256 * 2);
    /* eps stays a real, hidden an int. */
    const ir_param *eps = ir_task_param(&p->tasks[0], "eps");
    cr_assert_not_null(eps);
    cr_assert_eq(eps->type, IR_PARAM_REAL);
    cr_assert_eq(eps->r, 1e-06);
    const ir_param *hidden = ir_task_param(&p->tasks[0], "hidden");
    cr_assert_eq(hidden->type, IR_PARAM_INT);
    cr_assert_eq(hidden->i, 16);
    cr_assert_not_null(strstr(text, "\"eps\": 1e-06"), "eps must be written as a real");
    cr_assert_not_null(strstr(text, "\"hidden\": 16}"));
    cr_assert_eq(p->tasks[1].op, IR_OP_GEMV_TILE);
    cr_assert_eq(p->tasks[1].n_waits, 1);
    cr_assert_eq(p->tasks[1].waits[0].counter, 0);
    cr_assert_eq(p->tasks[1].waits[0].threshold, 1);
    cr_assert_eq(p->tasks[2].sm, 1);
    cr_assert_str_eq(p->tasks[2].label, "proj[1]");
    cr_assert_eq(p->tasks[2].est_bytes, 256);
    /* target */
    cr_assert(p->has_target);
    cr_assert_str_eq(p->target.name, "h100");
    cr_assert_eq(p->target.num_sms, 132);
    cr_assert_eq(p->target.hbm_bytes, 85899345920LL);
    cr_assert_eq(p->target.clock_ghz, 1.98);
    cr_assert_eq(p->target.max_blocks_per_sm, 32, "derived from sm_arch 90");
    cr_assert_not_null(strstr(text, "\"hbm_bandwidth_gbs\": 3350.0"));
    cr_assert_not_null(strstr(text, "\"measured_bw_gbs\": 0.0"));
    /* meta verbatim */
    cr_assert_not_null(strstr(p->meta_json, "\"hand written\""));
    cr_assert_not_null(strstr(text, "\"notes\": [\"hand written\", 1.5, null, true]"));
    /* pages: string keys */
    cr_assert(p->has_pages);
    cr_assert_eq(p->pages.n_map, 1);
    cr_assert_eq(p->pages.map_buffer[0], 3);
    cr_assert_eq(p->pages.map_page[0], 0);
    cr_assert_eq(p->pages.pages[0].space, IR_SMEM);
    cr_assert_eq(p->pages.pages[0].live_end, 2);
    cr_assert_not_null(strstr(text, "\"buffer_to_page\": {\"3\": 0}"));
    /* config: tiling, fusion, explicit sm map with string keys */
    cr_assert(p->has_config);
    int64_t v = 0;
    cr_assert(ir_config_tiling(&p->config, "gemv", "N_tile", &v));
    cr_assert_eq(v, 8);
    cr_assert(ir_config_tiling(&p->config, "attention", "kv_block", &v));
    cr_assert_eq(v, 128);
    cr_assert_eq(p->config.n_groups, 1);
    cr_assert_eq(p->config.groups[0].n, 2);
    cr_assert_str_eq(p->config.groups[0].names[1], "up");
    cr_assert_eq(p->config.sm_policy, IR_SM_EXPLICIT);
    cr_assert_eq(p->config.n_explicit, 3);
    cr_assert_eq(p->config.explicit_task[2], 2);
    cr_assert_eq(p->config.explicit_queue[2], 1);
    cr_assert_not_null(strstr(text, "\"sm_assignment\": {\"0\": 0, \"1\": 0, \"2\": 1}"));
    free(text);
    ir_program_free(p);
}

Test(ir_roundtrip, decode_plan_sample_keeps_plan_decode_pos_params_and_warnings)
{
    char *text;
    ir_program *p = read_round_trip(IRDATA "amk_decode_plan.json", &text);
    /* unknown keys are listed with their path */
    cr_assert_eq(p->warnings.n, 2);
    cr_assert(has_warning(p, "target.x_vendor: unknown key ignored"));
    cr_assert(has_warning(p, "tasks[3].future_field: unknown key ignored"));
    /* theta stays real even though integral; K written 16.0 stays a real (the verifier refuses
       it: K must be an int32, as AMK's validate() requires) */
    const ir_param *theta = ir_task_param(&p->tasks[2], "theta");
    cr_assert_eq(theta->type, IR_PARAM_REAL);
    cr_assert_eq(theta->r, 10000.0);
    cr_assert_not_null(strstr(text, "\"theta\": 10000.0"));
    const ir_param *k = ir_task_param(&p->tasks[0], "K");
    cr_assert_eq(k->type, IR_PARAM_REAL);
    cr_assert_eq(k->r, 16.0);
    double scale = 0;
    cr_assert(ir_task_real(&p->tasks[4], "scale", &scale));
    cr_assert_eq(scale, 0.3535533905932738);
    int64_t iv;
    cr_assert(!ir_task_int(&p->tasks[4], "scale", &iv), "a real is not an int");
    const ir_param *origin = ir_task_param(&p->tasks[1], "origin");
    cr_assert_eq(origin->type, IR_PARAM_RAW);
    cr_assert_str_eq(origin->raw, "\"k_proj\"");
    /* position expressions */
    const ir_param *pos = ir_task_param(&p->tasks[3], "pos");
    cr_assert(pos->has_pexpr);
    cr_assert_eq(pos->i, 5);
    cr_assert_eq(pos->pexpr.mul, 1);
    cr_assert_eq(pos->pexpr.add, 0);
    cr_assert_eq(pos->pexpr.lo, 0);
    cr_assert_eq(pos->pexpr.hi, 31);
    ir_pexpr e;
    cr_assert(ir_task_pexpr(&p->tasks[4], "kv_len", &e));
    cr_assert_eq(ir_pexpr_eval(e, 5), 6);
    cr_assert_eq(ir_pexpr_eval(e, 31), 32);
    cr_assert_eq(ir_pexpr_eval(e, 1000), 32, "clamped to hi");
    cr_assert(ir_task_pexpr(&p->tasks[4], "head_dim", &e));
    cr_assert(ir_pexpr_is_const(e));
    cr_assert_not_null(strstr(text, "\"pos_params\": {\"kv_len\": [1, 1, 0, 32]}"));
    /* decode and launch plan */
    cr_assert(p->has_decode);
    cr_assert_eq(p->decode.pos, 5);
    cr_assert_eq(p->decode.max_seq, 32);
    cr_assert(p->has_plan);
    cr_assert_eq(p->plan.grid, 2);
    cr_assert_eq(p->plan.threads_per_block, 128);
    cr_assert_eq(p->plan.dynamic_smem_bytes, 4096);
    cr_assert_eq(p->plan.regs_per_thread, 64);
    int32_t want_start[] = {0, 3, 5}, want_tasks[] = {0, 2, 4, 1, 3};
    for (int i = 0; i < 3; i++)
        cr_assert_eq(p->plan.queue_start[i], want_start[i]);
    for (int i = 0; i < 5; i++)
        cr_assert_eq(p->plan.queue_tasks[i], want_tasks[i]);
    /* pages keep the file order of their string keys */
    cr_assert_eq(p->pages.n_map, 2);
    cr_assert_eq(p->pages.map_buffer[0], 3);
    cr_assert_eq(p->pages.map_page[0], 1);
    cr_assert_eq(p->pages.map_buffer[1], 2);
    cr_assert_eq(p->pages.pages[1].space, IR_GLOBAL_SCRATCH);
    cr_assert_not_null(strstr(text, "\"buffer_to_page\": {\"3\": 1, \"2\": 0}"));
    /* config and target */
    cr_assert_eq(p->config.page_policy, IR_PAGES_LINEAR);
    cr_assert_eq(p->config.n_explicit, 5);
    cr_assert_eq(p->config.threads_per_block, 128);
    cr_assert_eq(p->target.sm_arch, 89);
    cr_assert_eq(p->target.measured_bw_gbs, 271.5);
    cr_assert_eq(p->target.max_blocks_per_sm, 24, "derived for sm_89");
    cr_assert_eq(p->target.smem_reserved_per_block, 1024);
    cr_assert_eq(p->buffers[1].dtype, IR_BF16);
    cr_assert_eq(p->buffers[4].kind, IR_KV_CACHE);
    free(text);
    ir_program_free(p);
}

Test(ir_roundtrip, built_program_writes_reads_and_writes_the_same_bytes)
{
    ir_program *p = ir_program_new();
    cr_assert_not_null(p);
    int64_t s1[] = {1, 4}, s2[] = {4, 4};
    int32_t x = ir_add_buffer(p, "x\t\"quoted\"", IR_IO_INPUT, IR_F32, 2, s1, IR_HBM, NULL);
    int32_t w = ir_add_buffer(p, "w", IR_WEIGHT, IR_I4, 2, s2, IR_HBM, "w.q4");
    int32_t y = ir_add_buffer(p, "y", IR_IO_OUTPUT, IR_F32, 2, s1, IR_HBM, NULL);
    cr_assert_eq(ir_add_buffer(p, "r5", IR_ACTIVATION, IR_F32, 5, (int64_t[]){1, 1, 1, 1, 1},
                               IR_HBM, NULL), -1, "rank 5 is refused by the builder");
    int32_t c = ir_add_counter(p, "done");
    ir_task *t = ir_add_task(p, IR_OP_GEMV_TILE, c, "proj");
    cr_assert_not_null(t);
    cr_assert_eq(ir_task_add_input(t, x), IR_OK);
    cr_assert_eq(ir_task_add_input(t, w), IR_OK);
    cr_assert_eq(ir_task_add_output(t, y), IR_OK);
    cr_assert_eq(ir_task_set_int(t, "K", 4), IR_OK);
    cr_assert_eq(ir_task_set_int(t, "N_tile", 4), IR_OK);
    cr_assert_eq(ir_task_set_int(t, "n_off", 0), IR_OK);
    cr_assert_eq(ir_task_set_real(t, "alpha", 0.1), IR_OK);
    /* an integral real keeps its type only under a key AMK marshals as real (scale, eps, ...) */
    cr_assert_eq(ir_task_set_real(t, "scale", 2.0), IR_OK);
    cr_assert_eq(ir_task_set_int(t, "K", 4), IR_OK);
    cr_assert_eq(t->n_params, 5, "setting K again replaces it");
    for (int i = 0; i < IR_MAX_WAITS; i++)
        cr_assert_eq(ir_task_add_wait(t, c, 1), IR_OK);
    cr_assert_eq(ir_task_add_wait(t, c, 1), IR_ERR_MALFORMED, "a ninth wait exceeds the cap");
    t->n_waits = 0;
    t->sm = 7;
    cr_assert_eq(ir_buffer_nbytes(&p->buffers[w]), 8, "16 I4 elements are 8 bytes");
    size_t n1, n2;
    char *a = write_ok(p, &n1);
    ir_program *q = parse_ok(a, n1);
    char *b = write_ok(q, &n2);
    cr_assert_eq(n1, n2);
    cr_assert(memcmp(a, b, n1) == 0);
    cr_assert_str_eq(q->buffers[0].name, "x\t\"quoted\"");
    cr_assert_eq(q->buffers[1].dtype, IR_I4);
    cr_assert_eq(ir_task_param(&q->tasks[0], "scale")->type, IR_PARAM_REAL);
    cr_assert_eq(ir_task_param(&q->tasks[0], "scale")->r, 2.0);
    cr_assert_eq(ir_task_param(&q->tasks[0], "alpha")->r, 0.1);
    cr_assert_eq(q->tasks[0].sm, 7);
    /* the file writer produces the same bytes */
    char path[] = "/tmp/amk_test_ir_XXXXXX";
    int fd = mkstemp(path);
    cr_assert_geq(fd, 0);
    close(fd);
    ir_error err = {0};
    cr_assert_eq(ir_write_file(q, path, &err), IR_OK, "%s", err.why);
    size_t n3;
    char *c3 = slurp(path, &n3);
    remove(path);
    cr_assert_eq(n3, n1);
    cr_assert(memcmp(c3, a, n1) == 0);
    free(c3);
    free(a);
    free(b);
    ir_program_free(q);
    ir_program_free(p);
}

Test(ir_buffers, find_io_prefers_the_named_buffer_then_the_first_of_its_kind_and_dtype)
{
    ir_program *p = ir_program_new();
    cr_assert_not_null(p);
    int64_t s[] = {4};
    int32_t w = ir_add_buffer(p, "logits", IR_WEIGHT, IR_F32, 1, s, IR_HBM, "w");
    int32_t h = ir_add_buffer(p, "hidden", IR_IO_OUTPUT, IR_F32, 1, s, IR_HBM, NULL);
    int32_t i = ir_add_buffer(p, "logits", IR_IO_OUTPUT, IR_I32, 1, s, IR_HBM, NULL);
    int32_t l = ir_add_buffer(p, "logits", IR_IO_OUTPUT, IR_F32, 1, s, IR_HBM, NULL);
    cr_assert(w == 0 && h == 1 && i == 2 && l == 3);
    /* The name wins over an earlier buffer of the same kind and dtype; kind and dtype must both
     * match, so neither the weight nor the I32 output called "logits" is taken. */
    cr_assert_eq(ir_find_io(p, IR_IO_OUTPUT, IR_F32, "logits"), l);
    /* No buffer of that name: the first of the kind and dtype. */
    cr_assert_eq(ir_find_io(p, IR_IO_OUTPUT, IR_F32, "next_token"), h);
    cr_assert_eq(ir_find_io(p, IR_IO_OUTPUT, IR_I32, "next_token"), i);
    /* Nothing of the kind and dtype at all. */
    cr_assert_eq(ir_find_io(p, IR_IO_INPUT, IR_I32, "tokens"), -1);
    cr_assert_eq(ir_find_io(p, IR_IO_OUTPUT, IR_F16, "logits"), -1);
    ir_program_free(p);
}

Test(ir_roundtrip, program_sha256_is_the_hash_of_the_canonical_json)
{
    ir_program *p = read_ok(IRDATA "amk_full.json");
    size_t n;
    char *text = write_ok(p, &n);
    char want[65], got[65];
    ir_sha256_hex(text, n, want);
    ir_error err = {0};
    cr_assert_eq(ir_program_sha256(p, got, &err), IR_OK);
    cr_assert_str_eq(got, want);
    p->tasks[1].waits[0].threshold = 2;
    cr_assert_eq(ir_program_sha256(p, got, &err), IR_OK);
    cr_assert_str_neq(got, want, "a changed threshold changes the identity");
    free(text);
    ir_program_free(p);
}

/* ---------------------------------------------------------------- malformed classes */

Test(ir_malformed, refuses_empty_file)
{
    expect_malformed("empty.json", "", "empty input");
    expect_malformed_json("", "", "empty input");
    expect_malformed_json("  \n", "", "not valid JSON");
}

Test(ir_malformed, refuses_truncated_file)
{
    expect_malformed("truncated.json", "", "not valid JSON");
    expect_malformed("truncated.json", "", "line 93");
}

Test(ir_malformed, refuses_binary_junk)
{
    expect_malformed("binary_junk.json", "", "not valid JSON");
}

Test(ir_malformed, refuses_a_top_level_that_is_not_an_object)
{
    expect_malformed("not_an_object.json", "", "must be a JSON object, got an array");
    expect_malformed_json("null", "", "got null");
}

Test(ir_malformed, refuses_trailing_data_after_the_program)
{
    expect_malformed("trailing_garbage.json", "", "data after the top-level value");
    expect_malformed_json("{} x", "", "near byte 3");
}

Test(ir_malformed, refuses_string_for_int)
{
    expect_malformed("wrong_type_string_for_int.json", "tasks[0].out_counter",
                     "must be an integer, got a string");
}

Test(ir_malformed, refuses_float_for_id)
{
    expect_malformed("wrong_type_float_for_id.json", "buffers[1].id", "must be an integer, got 1.5");
}

Test(ir_malformed, refuses_boolean_for_int)
{
    expect_malformed("wrong_type_bool_for_int.json", "counters[1].init",
                     "must be an integer, got a boolean");
}

Test(ir_malformed, refuses_object_where_array_expected)
{
    expect_malformed("wrong_type_object_for_array.json", "tasks[1].inputs",
                     "must be an array, got an object");
}

Test(ir_malformed, refuses_number_for_enum_name)
{
    expect_malformed("wrong_type_string_for_enum.json", "buffers[2].dtype",
                     "must be a dtype name string, got a number");
}

Test(ir_malformed, refuses_nan_and_infinity_literals_as_syntax_errors)
{
    expect_malformed("nan_literal.json", "", "not valid JSON");
    expect_malformed("infinity_literal.json", "", "not valid JSON");
    expect_malformed("negative_infinity_literal.json", "", "not valid JSON");
}

Test(ir_malformed, refuses_numbers_that_overflow_to_infinity)
{
    expect_malformed("overflow_1e999.json", "tasks[1].waits[0].threshold", "must be a finite integer");
    const char *t = "{\"buffers\": [], \"counters\": [{\"id\": 0}], \"tasks\": [{\"id\": 0, "
                    "\"op\": \"NOP\", \"inputs\": [], \"outputs\": [], \"out_counter\": 0, "
                    "\"params\": {\"K\": -1e999}}]}";
    expect_malformed_json(t, "tasks[0].params.K", "must be finite");
}

Test(ir_malformed, refuses_negative_numbers_where_not_allowed)
{
    expect_malformed("negative_counter_ref.json", "tasks[1].waits[0].counter",
                     "must be in [0, 2147483647], got -1");
    expect_malformed("negative_est_bytes.json", "tasks[0].est_bytes", "got -64");
}

Test(ir_malformed, refuses_huge_id)
{
    expect_malformed("huge_id.json", "buffers[2].id", "got 1e+20");
}

Test(ir_malformed, refuses_duplicated_task_id)
{
    expect_malformed("duplicate_task_id.json", "tasks[1].id", "duplicates the id 0 of tasks[0]");
}

Test(ir_malformed, refuses_non_dense_buffer_id)
{
    expect_malformed("nondense_buffer_id.json", "buffers[2].id",
                     "got 3; the 3 buffers must have the ids 0..2 (dense, in any order)");
}

/* An integer field written as a real is refused, as AMK's validate() and loader refuse it. */
Test(ir_malformed, refuses_integer_fields_written_as_reals)
{
    expect_malformed("threshold_written_as_real.json", "tasks[1].waits[0].threshold",
                     "must be an integer, got 1 written as a real");
    expect_malformed("sm_written_as_real.json", "tasks[1].sm",
                     "must be an integer, got 1 written as a real");
}

Test(ir_malformed, refuses_counter_ids_with_a_gap)
{
    expect_malformed("counter_id_gap.json", "counters[1].id",
                     "got 2; the 2 counters must have the ids 0..1 (dense, in any order)");
}

/* AMK's loader indexes by id: a dense id set in another array order is read by id. */
Test(ir_read, reads_dense_ids_in_any_array_order_by_id)
{
    ir_program *p = read_ok(IRDATA "counters_out_of_order.json");
    cr_assert_eq(p->n_counters, 2);
    cr_assert_eq(p->counters[0].id, 0);
    cr_assert_eq(p->counters[1].id, 1);
    cr_assert_str_eq(p->counters[1].note, "first in the file");
    cr_assert(has_warning(p, "counters: ids are not in array order; read by id"));
    ir_program_free(p);
}

Test(ir_malformed, refuses_page_id_other_than_position)
{
    expect_malformed("page_id_not_position.json", "pages.pages[0].id",
                     "is 1 but ids must equal the array position 0");
}

Test(ir_malformed, refuses_reference_to_missing_buffer)
{
    expect_malformed("missing_buffer_ref.json", "tasks[0].outputs[0]",
                     "refers to buffer 7, which does not exist (3 defined)");
    expect_malformed("missing_buffer_in_page_map.json", "pages.buffer_to_page.9",
                     "refers to buffer 9, which does not exist");
}

Test(ir_malformed, refuses_reference_to_missing_counter)
{
    expect_malformed("missing_counter_ref.json", "tasks[1].waits[0].counter",
                     "refers to counter 5, which does not exist (2 defined)");
    expect_malformed("missing_out_counter.json", "tasks[1].out_counter", "refers to counter 2");
}

Test(ir_malformed, refuses_reference_to_missing_page)
{
    expect_malformed("missing_page_ref.json", "pages.buffer_to_page.2",
                     "refers to page 4, which does not exist (1 defined)");
}

Test(ir_malformed, refuses_plan_queue_naming_missing_task)
{
    expect_malformed("missing_task_in_plan.json", "launch_plan.queues[1][0]",
                     "refers to task 5, which does not exist");
    expect_malformed("plan_grid_mismatch.json", "launch_plan.queues", "has 2 queues but grid is 3");
}

Test(ir_malformed, refuses_rank_above_4)
{
    expect_malformed("rank_over_4.json", "buffers[0].shape", "rank 5 exceeds the ABI cap of 4");
}

Test(ir_malformed, refuses_zero_and_negative_dims)
{
    expect_malformed("shape_zero_dim.json", "buffers[1].shape[1]", "got 0");
    expect_malformed("shape_negative_dim.json", "buffers[2].shape[0]", "got -1");
}

Test(ir_malformed, refuses_shape_whose_product_overflows)
{
    expect_malformed("shape_product_overflow.json", "buffers[1].shape",
                     "element count exceeds 281474976710656");
}

Test(ir_malformed, refuses_deep_nesting)
{
    expect_malformed("deep_nesting.json", "", "nesting deeper than 1000");
}

Test(ir_malformed, refuses_other_major_version)
{
    expect_malformed("major_ir_version.json", "ir_version",
                     "major version of '1.0.0' differs from supported 0.2.0");
    expect_malformed("major_abi_version.json", "abi_version", "major version of '3.1' differs");
    expect_malformed_json("{\"ir_version\": 0.2}", "ir_version", "must be a string, got a number");
}

Test(ir_malformed, refuses_duplicate_json_keys)
{
    expect_malformed("duplicate_key.json", "tasks[1].out_counter", "duplicate key");
    expect_malformed_json("{\"buffers\": [], \"buffers\": []}", "buffers", "duplicate key");
}

Test(ir_malformed, refuses_an_id_mapped_twice_in_decimal_key_maps)
{
    expect_malformed("duplicate_buffer_to_page_key.json", "pages.buffer_to_page.2",
                     "duplicate key (buffer 2 appears twice)");
    expect_malformed("duplicate_sm_assignment_key.json", "config.sm_assignment.1",
                     "duplicate key (task 1 appears twice)");
}

/* A config mapping every one of n tasks to a queue and a page map naming every buffer. */
static char *big_map_program(int n, size_t *len)
{
    ir_program *p = ir_program_new();
    cr_assert_not_null(p);
    int32_t c = ir_add_counter(p, "");
    int64_t shape[] = {1, 8};
    for (int i = 0; i < n; i++) {
        cr_assert_geq(ir_add_buffer(p, "b", IR_ACTIVATION, IR_F32, 2, shape, IR_HBM, NULL), 0);
        ir_task *t = ir_add_task(p, IR_OP_NOP, c, "");
        cr_assert_not_null(t);
        t->sm = i % 132;
    }
    p->has_config = true;
    ir_config_default(&p->config);
    p->config.sm_policy = IR_SM_EXPLICIT;
    p->config.explicit_task = malloc((size_t)n * sizeof(int32_t));
    p->config.explicit_queue = malloc((size_t)n * sizeof(int32_t));
    p->has_pages = true;
    p->pages.n_pages = 1;
    p->pages.pages = calloc(1, sizeof(ir_page));
    p->pages.map_buffer = malloc((size_t)n * sizeof(int32_t));
    p->pages.map_page = calloc((size_t)n, sizeof(int32_t));
    cr_assert(p->config.explicit_task && p->config.explicit_queue && p->pages.pages &&
              p->pages.map_buffer && p->pages.map_page);
    for (int i = 0; i < n; i++) {
        p->config.explicit_task[i] = n - 1 - i;
        p->config.explicit_queue[i] = (n - 1 - i) % 132;
        p->pages.map_buffer[i] = i;
    }
    p->config.n_explicit = n;
    p->pages.n_map = n;
    p->pages.pages[0] = (ir_page){0, IR_HBM, 32, -1, -1};
    char *text = write_ok(p, len);
    ir_program_free(p);
    return text;
}

Test(ir_speed, large_decimal_key_maps_read_in_linear_time)
{
    size_t len;
    char *text = big_map_program(30000, &len);
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    ir_program *p = parse_ok(text, len);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    double s = (double)(t1.tv_sec - t0.tv_sec) + 1e-9 * (double)(t1.tv_nsec - t0.tv_nsec);
    /* comparing every key with every later one took over 4 s here */
    cr_assert_lt(s, 2.0, "30,000-entry maps took %.2f s", s);
    cr_assert_eq(p->config.n_explicit, 30000);
    cr_assert_eq(p->config.explicit_task[0], 29999);
    cr_assert_eq(p->pages.n_map, 30000);
    ir_program_free(p);
    free(text);
}

/* {"zz": 0, "aa": 0, "aa": 0, ..., "zz": 0} with n keys in all */
static char *object_with_keys(int n)
{
    char *t = malloc((size_t)n * 16 + 16);
    cr_assert_not_null(t);
    size_t k = (size_t)sprintf(t, "{");
    for (int i = 0; i < n; i++) {
        const char *key = i == 0 || i == n - 1 ? "zz" : i == 1 || i == 2 ? "aa" : NULL;
        if (key)
            k += (size_t)sprintf(t + k, "%s\"%s\": 0", i ? ", " : "", key);
        else
            k += (size_t)sprintf(t + k, ", \"k%d\": 0", i);
    }
    sprintf(t + k, "}");
    return t;
}

Test(ir_malformed, reports_the_first_repeated_key_in_small_and_large_objects)
{
    /* the key reported is the first one, in object order, that appears again later */
    for (int n = 4; n <= 40; n += 36) {
        char *t = object_with_keys(n);
        expect_malformed_json(t, "zz", "duplicate key");
        free(t);
    }
    expect_malformed("duplicate_key_in_large_object.json", "tasks[0].op", "duplicate key");
}

Test(ir_speed, an_object_with_60000_unknown_keys_reads_quickly)
{
    int n = 60000;
    char *t = malloc((size_t)n * 16 + 16);
    cr_assert_not_null(t);
    size_t k = (size_t)sprintf(t, "{");
    for (int i = 0; i < n; i++)
        k += (size_t)sprintf(t + k, "%s\"k%d\": 0", i ? ", " : "", i);
    sprintf(t + k, "}");
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    ir_program *p = parse_ok(t, strlen(t));
    clock_gettime(CLOCK_MONOTONIC, &t1);
    double s = (double)(t1.tv_sec - t0.tv_sec) + 1e-9 * (double)(t1.tv_nsec - t0.tv_nsec);
    /* comparing every key with every later one took 10 s here */
    cr_assert_lt(s, 2.0, "60,000 keys took %.2f s", s);
    cr_assert_eq(p->warnings.n, n);
    cr_assert_str_eq(p->warnings.items[n - 1], "k59999: unknown key ignored");
    ir_program_free(p);
    free(t);
}

Test(ir_malformed, refuses_wait_threshold_zero)
{
    expect_malformed("wait_threshold_zero.json", "tasks[1].waits[0].threshold",
                     "must be in [1, 4294967295], got 0");
}

Test(ir_malformed, refuses_task_listed_twice_in_plan)
{
    expect_malformed("task_twice_in_plan.json", "launch_plan.queues[1][0]",
                     "task 0 appears twice in the plan");
}

Test(ir_malformed, refuses_pos_params_inconsistent_with_params)
{
    expect_malformed("pos_params_inconsistent.json", "tasks[2].pos_params.pos",
                     "evaluates to 3 at pos 3 but params.pos is 2");
}

Test(ir_malformed, refuses_unknown_enum_names)
{
    expect_malformed("unknown_op.json", "tasks[0].op", "unknown op 'MATMUL'");
    expect_malformed("unknown_dtype.json", "buffers[0].dtype", "unknown dtype 'F64'");
    expect_malformed("unknown_kind.json", "buffers[1].kind", "unknown buffer kind 'SCRATCH'");
    expect_malformed("unknown_space.json", "pages.pages[0].space", "unknown memory space 'L1'");
}

Test(ir_malformed, refuses_more_inputs_or_waits_than_the_abi_caps)
{
    expect_malformed("inputs_over_cap.json", "tasks[0].inputs", "9 entries exceed the ABI cap of 8");
    expect_malformed("waits_over_cap.json", "tasks[1].waits", "9 waits exceed the ABI cap of 8");
}

/* ---------------------------------------------------------------- the corpus */

typedef struct {
    int n;
    char names[256][128];
} file_list;

static int cmp_name(const void *a, const void *b) { return strcmp(a, b); }

static void list_corpus(file_list *l)
{
    DIR *d = opendir(BAD);
    cr_assert_not_null(d, "cannot open " BAD);
    l->n = 0;
    struct dirent *e;
    while ((e = readdir(d))) {
        if (e->d_name[0] == '.')
            continue;
        cr_assert_lt(l->n, 256);
        snprintf(l->names[l->n++], sizeof l->names[0], "%.120s", e->d_name);
    }
    closedir(d);
    qsort(l->names, (size_t)l->n, sizeof l->names[0], cmp_name);
    cr_assert_geq(l->n, 45, "the malformed corpus has %d files", l->n);
}

Test(ir_corpus, every_malformed_file_is_refused_cleanly)
{
    static file_list l;
    list_corpus(&l);
    for (int i = 0; i < l.n; i++) {
        char path[256];
        snprintf(path, sizeof path, BAD "%s", l.names[i]);
        ir_program *p = (ir_program *)1;
        ir_error err = {0};
        ir_status s = ir_read_file(path, NULL, &p, &err);
        cr_assert(s == IR_ERR_MALFORMED || s == IR_ERR_IO, "%s: got %s", l.names[i],
                  ir_status_name(s));
        cr_assert_null(p, "%s", l.names[i]);
        cr_assert_eq(err.status, s);
        cr_assert_neq(err.why[0], 0, "%s: empty reason", l.names[i]);
    }
}

Test(ir_corpus, cli_check_exits_2_on_every_malformed_file_valgrind_clean, .timeout = 300)
{
    const char *bin = getenv("AMK_BIN");
    if (!bin || !*bin)
        cr_skip("AMK_BIN not set (run through make test)");
    static file_list l;
    list_corpus(&l);
    /* A sanitized build (make debug sets AMK_SANITIZED) cannot run under valgrind; ASan checks
       it instead. */
    const char *san = getenv("AMK_SANITIZED");
    bool vg = !(san && *san) && system("valgrind --version >/dev/null 2>&1") == 0;
    /* Valgrind costs about a second per run: spread at most 25 runs over the corpus. */
    int stride = (l.n + 24) / 25;
    int under_vg = 0;
    for (int i = 0; i < l.n; i++) {
        bool with_vg = vg && i % stride == 0;
        char cmd[1024];
        snprintf(cmd, sizeof cmd, "%s%s ir check " BAD "%s >/dev/null 2>&1",
                 with_vg ? "valgrind --error-exitcode=99 --leak-check=full "
                           "--errors-for-leak-kinds=definite,indirect -q "
                         : "",
                 bin, l.names[i]);
        int st = system(cmd);
        cr_assert(WIFEXITED(st), "%s: did not exit", l.names[i]);
        cr_assert_neq(WEXITSTATUS(st), 99, "%s: valgrind found errors or leaks", l.names[i]);
        cr_assert_eq(WEXITSTATUS(st), 2, "%s: exit %d", l.names[i], WEXITSTATUS(st));
        under_vg += with_vg;
    }
    if (vg)
        cr_assert_geq(under_vg, 15);
}

Test(ir_corpus, cli_check_accepts_the_valid_samples)
{
    const char *bin = getenv("AMK_BIN");
    if (!bin || !*bin)
        cr_skip("AMK_BIN not set (run through make test)");
    const char *files[] = {"amk_minimal.json", "amk_full.json", "amk_decode_plan.json"};
    for (int i = 0; i < 3; i++) {
        char cmd[512];
        snprintf(cmd, sizeof cmd, "%s ir check " IRDATA "%s >/dev/null 2>&1", bin, files[i]);
        int st = system(cmd);
        cr_assert(WIFEXITED(st) && WEXITSTATUS(st) == 0, "%s: status %d", files[i], st);
    }
}

/* ---------------------------------------------------------------- robustness */

static bool only_space(const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (s[i] != ' ' && s[i] != '\n' && s[i] != '\t' && s[i] != '\r')
            return false;
    return true;
}

static void every_prefix_is_refused(const char *path)
{
    size_t n;
    char *full = slurp(path, &n);
    int refused = 0;
    for (size_t len = 0; len < n; len++) {
        /* exactly len bytes, no terminator, so that an overread shows under valgrind/ASan */
        char *buf = malloc(len ? len : 1);
        cr_assert_not_null(buf);
        memcpy(buf, full, len);
        ir_program *p = NULL;
        ir_error err = {0};
        ir_status s = ir_read_json(buf, len, NULL, &p, &err);
        if (s == IR_OK) {
            cr_assert(only_space(full + len, n - len), "%s: prefix of %zu bytes accepted", path,
                      len);
            ir_program_free(p);
        } else {
            cr_assert_eq(s, IR_ERR_MALFORMED, "%s[%zu]: %s", path, len, ir_status_name(s));
            cr_assert_null(p);
            cr_assert_neq(err.why[0], 0);
            refused++;
        }
        free(buf);
    }
    cr_assert_geq(refused, (int)n - 2, "%s", path);
    free(full);
}

Test(ir_fuzz, every_prefix_of_a_valid_program_is_refused_without_crash, .timeout = 120)
{
    every_prefix_is_refused(IRDATA "amk_full.json");
    every_prefix_is_refused(IRDATA "amk_decode_plan.json");
}

/* Flip random bytes; whatever the reader accepts must write, re-read and write again
 * identically. */
static void random_flips(const char *path, uint64_t seed, int rounds)
{
    size_t n;
    char *orig = slurp(path, &n);
    char *buf = malloc(n);
    cr_assert_not_null(buf);
    uint64_t s = seed;
    int accepted = 0;
    for (int r = 0; r < rounds; r++) {
        memcpy(buf, orig, n);
        int flips = 1 + (int)(rng_next(&s) % 4);
        for (int k = 0; k < flips; k++) {
            size_t at = (size_t)(rng_next(&s) % n);
            uint64_t how = rng_next(&s);
            if (how % 3 == 0)
                buf[at] = (char)(how >> 8);                 /* any byte */
            else if (how % 3 == 1)
                buf[at] ^= (char)(1u << ((how >> 8) % 8));   /* one bit */
            else
                buf[at] = "0123456789-.eE{}[]\",:"[(how >> 8) % 21]; /* a JSON-ish byte */
        }
        ir_program *p = NULL;
        ir_error err = {0};
        ir_status st = ir_read_json(buf, n, NULL, &p, &err);
        if (st != IR_OK) {
            cr_assert_eq(st, IR_ERR_MALFORMED, "round %d: %s", r, ir_status_name(st));
            cr_assert_null(p);
            continue;
        }
        accepted++;
        size_t n1, n2;
        char *a = write_ok(p, &n1);
        ir_program *q = NULL;
        st = ir_read_json(a, n1, NULL, &q, &err);
        cr_assert_eq(st, IR_OK, "round %d: canonical text refused at %s: %s", r, err.where,
                     err.why);
        char *b = write_ok(q, &n2);
        cr_assert(n1 == n2 && memcmp(a, b, n1) == 0, "round %d: round trip not stable", r);
        free(a);
        free(b);
        ir_program_free(q);
        ir_program_free(p);
    }
    cr_assert_gt(accepted, 0, "some flips (inside strings, say) must stay readable");
    free(buf);
    free(orig);
}

Test(ir_fuzz, seeded_random_byte_flips_never_crash_and_accepted_text_round_trips, .timeout = 120)
{
    random_flips(IRDATA "amk_full.json", 0x9e3779b97f4a7c15ULL, 2500);
    random_flips(IRDATA "amk_decode_plan.json", 0x2545f4914f6cdd1dULL, 2500);
}

/* ---------------------------------------------------------------- graph helpers */

static void assert_row(const ir_csr *c, int32_t r, const int32_t *want, int n)
{
    cr_assert_eq(c->start[r + 1] - c->start[r], n, "row %d has %d entries, want %d", r,
                 c->start[r + 1] - c->start[r], n);
    for (int i = 0; i < n; i++)
        cr_assert_eq(c->idx[c->start[r] + i], want[i], "row %d entry %d", r, i);
}

Test(ir_graph, producers_edges_topo_writers_and_readers_of_the_full_sample)
{
    ir_program *p = read_ok(IRDATA "amk_full.json");
    ir_graph g;
    cr_assert_eq(ir_graph_build(p, &g), IR_OK);
    assert_row(&g.producers, 0, (int32_t[]){0}, 1);
    assert_row(&g.producers, 1, (int32_t[]){1, 2}, 2);
    assert_row(&g.waiters, 0, (int32_t[]){1, 2}, 2);
    assert_row(&g.waiters, 1, NULL, 0);
    assert_row(&g.succ, 0, (int32_t[]){1, 2}, 2);
    assert_row(&g.succ, 1, NULL, 0);
    assert_row(&g.pred, 2, (int32_t[]){0}, 1);
    assert_row(&g.pred, 0, NULL, 0);
    assert_row(&g.writers, 4, (int32_t[]){1, 2}, 2);
    assert_row(&g.writers, 3, (int32_t[]){0}, 1);
    assert_row(&g.writers, 2, NULL, 0);
    assert_row(&g.readers, 3, (int32_t[]){1, 2}, 2);
    assert_row(&g.readers, 0, (int32_t[]){0}, 1);
    cr_assert_not_null(g.topo);
    cr_assert_eq(g.topo[0], 0);
    cr_assert(g.topo[1] != 0 && g.topo[2] != 0 && g.topo[1] != g.topo[2]);
    ir_graph_free(&g);
    ir_program_free(p);
}

Test(ir_graph, topo_order_follows_waits_not_list_order)
{
    ir_program *p = read_ok(IRDATA "amk_decode_plan.json");
    ir_graph g;
    cr_assert_eq(ir_graph_build(p, &g), IR_OK);
    cr_assert_not_null(g.topo);
    int32_t at[5];
    for (int i = 0; i < 5; i++)
        at[g.topo[i]] = i;
    for (int t = 0; t < p->n_tasks; t++)
        for (int32_t e = g.succ.start[t]; e < g.succ.start[t + 1]; e++)
            cr_assert_lt(at[t], at[g.succ.idx[e]], "edge %d -> %d out of order", t, g.succ.idx[e]);
    assert_row(&g.pred, 4, (int32_t[]){2, 3}, 2);
    assert_row(&g.readers, 2, (int32_t[]){2, 4}, 2);
    assert_row(&g.writers, 2, (int32_t[]){0, 2}, 2);
    ir_graph_free(&g);
    ir_program_free(p);
}

/* Two tasks each waiting on the other's counter. */
static ir_program *cycle_program(void)
{
    ir_program *p = ir_program_new();
    int32_t b = ir_add_buffer(p, "a", IR_ACTIVATION, IR_F32, 1, (int64_t[]){4}, IR_HBM, NULL);
    int32_t c0 = ir_add_counter(p, "c0"), c1 = ir_add_counter(p, "c1");
    ir_task *t = ir_add_task(p, IR_OP_COPY, c0, "t0");
    ir_task_add_input(t, b);
    ir_task_add_output(t, b);
    ir_task_add_wait(t, c1, 1);
    t = ir_add_task(p, IR_OP_COPY, c1, "t1");
    ir_task_add_input(t, b);
    ir_task_add_output(t, b);
    ir_task_add_wait(t, c0, 1);
    return p;
}

Test(ir_graph, topo_is_null_on_a_cycle)
{
    ir_program *p = cycle_program();
    ir_graph g;
    cr_assert_eq(ir_graph_build(p, &g), IR_OK, "a cycle is not an error of the builder");
    cr_assert_null(g.topo);
    assert_row(&g.succ, 0, (int32_t[]){1}, 1);
    assert_row(&g.succ, 1, (int32_t[]){0}, 1);
    ir_graph_free(&g);
    int32_t nq, *start, *tasks;
    ir_error err = {0};
    cr_assert_eq(ir_program_queues(p, IR_ORDER_TOPO, &nq, &start, &tasks, &err), IR_ERR_MALFORMED);
    cr_assert_str_eq(err.where, "tasks");
    cr_assert_not_null(strstr(err.why, "has a cycle"));
    cr_assert_null(start);
    cr_assert_eq(ir_program_queues(p, IR_ORDER_LIST, &nq, &start, &tasks, &err), IR_OK);
    cr_assert_eq(nq, 2, "two null-sm tasks: one queue each");
    free(start);
    free(tasks);
    ir_program_free(p);
}

Test(ir_graph, queues_come_from_the_launch_plan_when_present)
{
    ir_program *p = read_ok(IRDATA "amk_decode_plan.json");
    int32_t nq, *start, *tasks;
    ir_error err = {0};
    cr_assert_eq(ir_program_queues(p, IR_ORDER_TOPO, &nq, &start, &tasks, &err), IR_OK);
    cr_assert_eq(nq, 2);
    int32_t ws[] = {0, 3, 5}, wt[] = {0, 2, 4, 1, 3};
    for (int i = 0; i < 3; i++)
        cr_assert_eq(start[i], ws[i]);
    for (int i = 0; i < 5; i++)
        cr_assert_eq(tasks[i], wt[i]);
    free(start);
    free(tasks);
    ir_program_free(p);
}

Test(ir_graph, planless_queues_group_by_sm_then_one_per_null_sm)
{
    ir_program *p = ir_program_new();
    int32_t b = ir_add_buffer(p, "a", IR_ACTIVATION, IR_F32, 1, (int64_t[]){4}, IR_HBM, NULL);
    int32_t sms[] = {-1, 3, -1, 3, 1};
    for (int i = 0; i < 5; i++) {
        int32_t c = ir_add_counter(p, "");
        ir_task *t = ir_add_task(p, IR_OP_COPY, c, "");
        ir_task_add_input(t, b);
        ir_task_add_output(t, b);
        t->sm = sms[i];
    }
    /* task 1 waits on task 3: list order puts 1 first on sm 3, topo order puts 3 first */
    ir_task_add_wait(&p->tasks[1], 3, 1);
    int32_t nq, *start, *tasks;
    ir_error err = {0};
    cr_assert_eq(ir_program_queues(p, IR_ORDER_LIST, &nq, &start, &tasks, &err), IR_OK);
    cr_assert_eq(nq, 4, "sm 1, sm 3, and two null-sm tasks");
    int32_t ws[] = {0, 1, 3, 4, 5}, wl[] = {4, 1, 3, 0, 2};
    for (int i = 0; i < 5; i++) {
        cr_assert_eq(start[i], ws[i], "start[%d]", i);
        cr_assert_eq(tasks[i], wl[i], "list tasks[%d]", i);
    }
    free(start);
    free(tasks);
    cr_assert_eq(ir_program_queues(p, IR_ORDER_TOPO, &nq, &start, &tasks, &err), IR_OK);
    cr_assert_eq(nq, 4);
    cr_assert_eq(tasks[0], 4);
    cr_assert_eq(tasks[1], 3, "topo order: the producer first");
    cr_assert_eq(tasks[2], 1);
    cr_assert_eq(tasks[3], 0);
    cr_assert_eq(tasks[4], 2);
    free(start);
    free(tasks);
    ir_program_free(p);
}

/* ---------------------------------------------------------------- footprints */

static void box_at(const ir_program *p, int task, bool out, int slot, int64_t pos, int64_t *lo,
                   int64_t *hi, int want_rank)
{
    ir_box b;
    ir_error err = {0};
    ir_status s = ir_task_footprint(p, &p->tasks[task], out, slot, &b, &err);
    cr_assert_eq(s, IR_OK, "task %d: %s: %s", task, err.where, err.why);
    cr_assert_eq(b.rank, want_rank);
    ir_box_eval(&b, pos, lo, hi);
}

Test(ir_footprint, gemv_tile_touches_its_weight_rows_and_output_columns)
{
    ir_program *p = read_ok(IRDATA "amk_full.json");
    int64_t lo[4], hi[4];
    box_at(p, 2, false, 1, 0, lo, hi, 2); /* W [16,16], n_off 8, N_tile 8 */
    cr_assert(lo[0] == 8 && hi[0] == 16 && lo[1] == 0 && hi[1] == 16);
    box_at(p, 2, true, 0, 0, lo, hi, 2);  /* y [1,16] */
    cr_assert(lo[0] == 0 && hi[0] == 1 && lo[1] == 8 && hi[1] == 16);
    box_at(p, 1, true, 0, 0, lo, hi, 2);
    cr_assert(lo[1] == 0 && hi[1] == 8);
    box_at(p, 1, false, 0, 0, lo, hi, 2); /* x is read whole */
    cr_assert(lo[0] == 0 && hi[0] == 1 && lo[1] == 0 && hi[1] == 16);
    box_at(p, 0, true, 0, 0, lo, hi, 2);  /* RMSNORM: whole buffer */
    cr_assert(lo[1] == 0 && hi[1] == 16);
    ir_program_free(p);
}

Test(ir_footprint, kv_append_and_attention_rows_follow_the_position)
{
    ir_program *p = read_ok(IRDATA "amk_decode_plan.json");
    int64_t lo[4], hi[4];
    /* KV_APPEND writes row pos of kc [32, 8] */
    box_at(p, 3, true, 0, 5, lo, hi, 2);
    cr_assert(lo[0] == 5 && hi[0] == 6 && lo[1] == 0 && hi[1] == 8, "[%lld,%lld)",
              (long long)lo[0], (long long)hi[0]);
    box_at(p, 3, true, 0, 20, lo, hi, 2);
    cr_assert(lo[0] == 20 && hi[0] == 21);
    box_at(p, 3, true, 0, 99, lo, hi, 2);
    cr_assert(lo[0] == 31 && hi[0] == 32, "clamped to the last row");
    box_at(p, 3, false, 0, 5, lo, hi, 2);
    cr_assert(lo[0] == 0 && hi[0] == 1 && hi[1] == 8, "the source is read whole");
    /* ATTENTION_TILE reads kc and vc rows [kv_start, kv_start + kv_len(pos)) */
    box_at(p, 4, false, 1, 5, lo, hi, 2);
    cr_assert(lo[0] == 0 && hi[0] == 6);
    box_at(p, 4, false, 2, 0, lo, hi, 2);
    cr_assert(lo[0] == 0 && hi[0] == 1);
    box_at(p, 4, false, 2, 31, lo, hi, 2);
    cr_assert(lo[0] == 0 && hi[0] == 32);
    box_at(p, 4, false, 0, 7, lo, hi, 2);
    cr_assert(lo[1] == 0 && hi[1] == 16, "q is read whole");
    box_at(p, 4, true, 0, 7, lo, hi, 2);
    cr_assert(lo[0] == 0 && hi[0] == 1 && hi[1] == 16, "no m_off: the whole output");
    ir_program_free(p);
}

Test(ir_footprint, missing_tile_param_is_malformed_naming_the_param)
{
    ir_program *p = ir_program_new();
    int64_t s[] = {4, 4};
    int32_t w = ir_add_buffer(p, "w", IR_WEIGHT, IR_F32, 2, s, IR_HBM, "w");
    int32_t c = ir_add_counter(p, "");
    ir_task *t = ir_add_task(p, IR_OP_GEMV_TILE, c, "");
    ir_task_add_input(t, w);
    ir_task_add_input(t, w);
    ir_task_add_output(t, w);
    ir_task_set_int(t, "n_off", 0);
    ir_task_set_real(t, "N_tile", 4.5);
    ir_box b;
    ir_error err = {0};
    cr_assert_eq(ir_task_footprint(p, t, false, 1, &b, &err), IR_ERR_MALFORMED);
    cr_assert_str_eq(err.where, "tasks[0].params.N_tile");
    cr_assert_not_null(strstr(err.why, "GEMV_TILE needs integer param 'N_tile'"), "%s", err.why);
    ir_program_free(p);
}

/* ---------------------------------------------------------------- targets */

Test(ir_target, registry_has_the_nine_builtins_with_plausible_numbers)
{
    const char *names[] = {"h100", "h200", "a100", "b200", "rtx5090", "l4", "l40s", "a10g", "t4"};
    cr_assert_eq(ir_target_count(), 9);
    for (int i = 0; i < 9; i++) {
        const ir_target *t = ir_target_builtin(names[i]);
        cr_assert_not_null(t, "%s missing", names[i]);
        cr_assert_str_eq(t->name, names[i]);
        cr_assert(t->num_sms >= 20 && t->num_sms <= 200, "%s: %lld SMs", names[i],
                  (long long)t->num_sms);
        cr_assert(t->sm_arch >= 75 && t->sm_arch <= 120, "%s", names[i]);
        cr_assert(t->smem_bytes_per_sm >= 64 * 1024 && t->smem_bytes_per_sm <= 256 * 1024);
        cr_assert_leq(t->smem_bytes_per_block_optin, t->smem_bytes_per_sm, "%s", names[i]);
        cr_assert_eq(t->regs_per_sm, 65536);
        cr_assert(t->max_threads_per_sm >= 1024 && t->max_threads_per_sm <= 2048);
        cr_assert(t->hbm_bytes >= 16000000000LL && t->hbm_bytes <= 200000000000LL, "%s", names[i]);
        cr_assert(t->hbm_bandwidth_gbs >= 250 && t->hbm_bandwidth_gbs <= 9000, "%s", names[i]);
        cr_assert(t->l2_bytes >= 4 * 1024 * 1024, "%s", names[i]);
        cr_assert(t->fp16_tflops > 50, "%s", names[i]);
        cr_assert_eq(t->max_threads_per_block, 1024);
        cr_assert(t->max_blocks_per_sm >= 16, "%s", names[i]);
    }
    const ir_target *h = ir_target_builtin("h100");
    cr_assert_eq(h->num_sms, 132);
    cr_assert_eq(h->sm_arch, 90);
    cr_assert_eq(ir_target_builtin("a100")->num_sms, 108);
    cr_assert_eq(ir_target_builtin("t4")->sm_arch, 75);
    cr_assert_gt(ir_target_builtin("h200")->hbm_bytes, h->hbm_bytes);
    cr_assert_null(ir_target_builtin("v100"));
    cr_assert_null(ir_target_builtin(NULL));
    cr_assert_null(ir_target_at(9));
    cr_assert_str_eq(ir_target_at(0)->name, "h100");
}

Test(ir_target, target_file_reads_and_derives_missing_fields)
{
    ir_target t;
    ir_error err = {0};
    ir_status s = ir_target_read_file(IRDATA "targets/a10g_like.json", &t, &err);
    cr_assert_eq(s, IR_OK, "%s: %s", err.where, err.why);
    cr_assert_str_eq(t.name, "a10g-lab");
    cr_assert_eq(t.num_sms, 80);
    cr_assert_eq(t.measured_bw_gbs, 512.25);
    cr_assert_str_eq(t.note, "lab box");
    cr_assert_eq(t.max_blocks_per_sm, 16, "sm_86 holds 16 blocks per SM");
    cr_assert_eq(t.smem_reserved_per_block, 1024);
    cr_assert_eq(t.max_threads_per_block, 1024);
    cr_assert_eq(t.reg_alloc_unit, 256);
}

Test(ir_target, target_file_missing_a_field_or_with_a_wrong_type_is_malformed)
{
    ir_target t;
    ir_error err = {0};
    cr_assert_eq(ir_target_read_file(IRDATA "targets/missing_num_sms.json", &t, &err),
                 IR_ERR_MALFORMED);
    cr_assert_str_eq(err.where, "num_sms");
    cr_assert_str_eq(err.why, "missing");
    cr_assert_eq(ir_target_read_file(IRDATA "targets/wrong_type_bandwidth.json", &t, &err),
                 IR_ERR_MALFORMED);
    cr_assert_str_eq(err.where, "hbm_bandwidth_gbs");
    cr_assert_not_null(strstr(err.why, "must be a number, got a string"));
    cr_assert_eq(ir_target_read_file(IRDATA "targets/no_such_target.json", &t, &err), IR_ERR_IO);
    cr_assert_str_eq(err.where, IRDATA "targets/no_such_target.json");
    cr_assert_eq(ir_target_read_file(BAD "truncated.json", &t, &err), IR_ERR_MALFORMED);
    cr_assert_eq(ir_target_read_file(IRDATA "targets/trailing_data.json", &t, &err),
                 IR_ERR_MALFORMED, "a second object after the target is not one target");
    cr_assert_str_eq(err.where, IRDATA "targets/trailing_data.json");
    cr_assert_not_null(strstr(err.why, "data after the target object"), "%s", err.why);
}

/* ---------------------------------------------------------------- config */

Test(ir_config, strict_mode_refuses_unknown_keys_naming_the_field)
{
    const char *j = "{\"tiling\": {\"gemv\": {\"N_tile\": 32}}, \"smem_per_block\": 4096}";
    ir_config c;
    ir_error err = {0};
    cr_assert_eq(ir_config_read_json(j, strlen(j), true, &c, &err), IR_ERR_MALFORMED);
    cr_assert_str_eq(err.where, "config.smem_per_block");
    cr_assert_str_eq(err.why, "unknown key");
    cr_assert_eq(ir_config_read_json(j, strlen(j), false, &c, &err), IR_OK,
                 "lenient mode ignores it");
    int64_t v;
    cr_assert(ir_config_tiling(&c, "gemv", "N_tile", &v) && v == 32);
    cr_assert_eq(c.threads_per_block, 256, "default");
    cr_assert_eq(c.pipelining_depth, 2, "default");
    ir_config_free(&c);
}

Test(ir_config, strict_mode_reads_every_field_and_refuses_bad_values)
{
    const char *j = "{\"tiling\": {\"attention\": {\"kv_block\": 64}}, \"fusion_grouping\": "
                    "[[\"gate\", \"up\"]], \"sm_assignment\": \"round_robin\", "
                    "\"pipelining_depth\": 3, \"page_allocation\": \"none\", "
                    "\"threads_per_block\": 512, \"smem_bytes_per_block\": 8192}";
    ir_config c;
    ir_error err = {0};
    cr_assert_eq(ir_config_read_json(j, strlen(j), true, &c, &err), IR_OK, "%s: %s", err.where,
                 err.why);
    cr_assert_eq(c.sm_policy, IR_SM_ROUND_ROBIN);
    cr_assert_eq(c.page_policy, IR_PAGES_NONE);
    cr_assert_eq(c.pipelining_depth, 3);
    cr_assert_eq(c.threads_per_block, 512);
    cr_assert_eq(c.smem_bytes_per_block, 8192);
    cr_assert_str_eq(c.groups[0].names[0], "gate");
    ir_config_free(&c);
    const char *bad1 = "{\"sm_assignment\": \"random\"}";
    cr_assert_eq(ir_config_read_json(bad1, strlen(bad1), true, &c, &err), IR_ERR_MALFORMED);
    cr_assert_str_eq(err.where, "config.sm_assignment");
    cr_assert_not_null(strstr(err.why, "unknown policy 'random'"));
    const char *bad2 = "{\"tiling\": {\"gemv\": {\"N_tile\": 0}}}";
    cr_assert_eq(ir_config_read_json(bad2, strlen(bad2), true, &c, &err), IR_ERR_MALFORMED);
    cr_assert_str_eq(err.where, "config.tiling.gemv.N_tile");
    const char *bad3 = "{\"sm_assignment\": {\"x\": 1}}";
    cr_assert_eq(ir_config_read_json(bad3, strlen(bad3), true, &c, &err), IR_ERR_MALFORMED);
    cr_assert_str_eq(err.where, "config.sm_assignment.x");
    cr_assert_not_null(strstr(err.why, "task id in decimal"));
    const char *bad4 = "{} {}";
    cr_assert_eq(ir_config_read_json(bad4, strlen(bad4), true, &c, &err), IR_ERR_MALFORMED);
    cr_assert_str_eq(err.where, "config");
}

/* ---------------------------------------------------------------- hashing */

Test(ir_sha256, matches_the_fips_180_test_vectors)
{
    char h[65];
    ir_sha256_hex("abc", 3, h);
    cr_assert_str_eq(h, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    ir_sha256_hex("", 0, h);
    cr_assert_str_eq(h, "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
    const char *m = "abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq";
    ir_sha256_hex(m, strlen(m), h);
    cr_assert_str_eq(h, "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1");
    char *a = malloc(1000000);
    cr_assert_not_null(a);
    memset(a, 'a', 1000000);
    ir_sha256_hex(a, 1000000, h);
    cr_assert_str_eq(h, "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0");
    free(a);
}

/* ---------------------------------------------------------------- safe output files */

/* Number of entries of dir whose name starts with prefix. */
static int count_entries(const char *dir, const char *prefix)
{
    DIR *d = opendir(dir);
    cr_assert_not_null(d);
    int n = 0;
    for (struct dirent *e; (e = readdir(d));)
        n += !strncmp(e->d_name, prefix, strlen(prefix));
    closedir(d);
    return n;
}

/* A device is written through and stays a device; a symlink stays a link and its target is
 * replaced; a regular file keeps its mode; a directory is refused; nothing is left behind. */
Test(ir_out, writes_through_devices_and_links_and_keeps_a_files_mode)
{
    ir_program *p = read_ok(IRDATA "amk_minimal.json");
    ir_error err = {0};
    struct stat st;
    cr_assert_eq(ir_write_file(p, "/dev/null", &err), IR_OK, "%s", err.why);
    cr_assert_eq(stat("/dev/null", &st), 0);
    cr_assert(S_ISCHR(st.st_mode), "/dev/null must stay a character device");

    char dir[] = "/tmp/amk_out_XXXXXX", file[64], link[64], sub[64];
    cr_assert_not_null(mkdtemp(dir));
    snprintf(file, sizeof file, "%s/prog.json", dir);
    snprintf(link, sizeof link, "%s/link.json", dir);
    snprintf(sub, sizeof sub, "%s/sub", dir);
    FILE *f = fopen(file, "w");
    fputs("old", f);
    fclose(f);
    cr_assert_eq(chmod(file, 0640), 0);
    cr_assert_eq(symlink("prog.json", link), 0);
    cr_assert_eq(ir_write_file(p, link, &err), IR_OK, "%s", err.why);
    cr_assert_eq(lstat(link, &st), 0);
    cr_assert(S_ISLNK(st.st_mode), "the link must stay a link");
    cr_assert_eq(stat(file, &st), 0);
    cr_assert_eq(st.st_mode & 0777, 0640, "mode %o", st.st_mode & 0777);
    ir_program *q = NULL;
    cr_assert_eq(ir_read_file(file, NULL, &q, &err), IR_OK, "the target holds the program: %s", err.why);
    ir_program_free(q);
    cr_assert_eq(mkdir(sub, 0755), 0);
    cr_assert_eq(ir_write_file(p, sub, &err), IR_ERR_IO);
    cr_assert(strstr(err.why, "directory"), "%s", err.why);
    cr_assert_eq(count_entries(dir, "prog.json.tmp"), 0, "no temporary file is left");
    cr_assert_eq(count_entries(dir, "sub.tmp"), 0);
    unlink(link);
    unlink(file);
    rmdir(sub);
    rmdir(dir);
    ir_program_free(p);
}

/* The one whole-file reader: devices, FIFOs and directories are refused before any reading (so
 * /dev/zero ends at once), an oversized file before any allocation, a gzip file is read
 * decompressed with the cap on what comes out. */
Test(ir_read, whole_file_reader_refuses_devices_and_oversize_up_front)
{
    char *text = NULL;
    size_t len = 0;
    ir_error err = {0};
    time_t t0 = time(NULL);
    cr_assert_eq(ir_read_text_file("/dev/zero", IR_MAX_FILE_BYTES, &text, &len, &err), IR_ERR_IO);
    cr_assert(strstr(err.why, "not a regular file"), "%s", err.why);
    cr_assert_eq(ir_read_text_file("/tmp", IR_MAX_FILE_BYTES, &text, &len, &err), IR_ERR_IO);
    cr_assert(strstr(err.why, "directory"), "%s", err.why);
    cr_assert_leq(time(NULL) - t0, 1);
    char dir[] = "/tmp/amk_read_XXXXXX", fifo[64], big[64], gz[64];
    cr_assert_not_null(mkdtemp(dir));
    snprintf(fifo, sizeof fifo, "%s/fifo", dir);
    snprintf(big, sizeof big, "%s/big.json", dir);
    snprintf(gz, sizeof gz, "%s/p.json.gz", dir);
    cr_assert_eq(mkfifo(fifo, 0600), 0);
    cr_assert_eq(ir_read_text_file(fifo, IR_MAX_FILE_BYTES, &text, &len, &err), IR_ERR_IO);
    FILE *f = fopen(big, "w");
    cr_assert_eq(ftruncate(fileno(f), (off_t)1 << 33), 0);      /* 8 GiB, sparse */
    fclose(f);
    cr_assert_eq(ir_read_text_file(big, IR_MAX_FILE_BYTES, &text, &len, &err), IR_ERR_MALFORMED);
    cr_assert(strstr(err.why, "larger than"), "%s", err.why);
    char cmd[256];
    snprintf(cmd, sizeof cmd, "gzip -c " IRDATA "amk_minimal.json > %s", gz);
    cr_assert_eq(system(cmd), 0);
    cr_assert_eq(ir_read_text_file(gz, IR_MAX_FILE_BYTES, &text, &len, &err), IR_OK, "%s", err.why);
    cr_assert_eq(text[0], '{');
    free(text);
    cr_assert_eq(ir_read_text_file(gz, 100, &text, &len, &err), IR_ERR_MALFORMED,
                 "the cap bounds the decompressed text");
    unlink(fifo);
    unlink(big);
    unlink(gz);
    rmdir(dir);
}

/* JSON numbers become integers only when they are integers in range: never a conversion of a
 * double at or past 2^63, never a fraction, never a non-number. */
Test(ir_json, json_int_refuses_what_no_int64_holds)
{
    int64_t v = 7;
    cJSON *n = cJSON_CreateNumber(9223372036854775808.0);   /* 2^63 */
    cr_assert(!ir_json_int(n, INT64_MIN, INT64_MAX, &v));
    cr_assert_eq(v, 7);
    cJSON_SetNumberValue(n, 4.5);
    cr_assert(!ir_json_int(n, 0, 10, &v));
    cJSON_SetNumberValue(n, 11);
    cr_assert(!ir_json_int(n, 0, 10, &v));
    cJSON_SetNumberValue(n, -3);
    cr_assert(ir_json_int(n, -5, 10, &v));
    cr_assert_eq(v, -3);
    cJSON *s = cJSON_CreateString("3");
    cr_assert(!ir_json_int(s, 0, 10, &v));
    cr_assert(!ir_json_int(NULL, 0, 10, &v));
    cJSON_Delete(n);
    cJSON_Delete(s);
}
