/*
 * test_search.c - pins the schedule search: the space `amk propose` lists is exactly what the
 * config reader accepts (every listed value lowers, every value just outside a range is
 * refused), schedule_id identity, unsafe configs rejected by the proof with the obligation
 * named and no latency, the keep/revert rule, and a seeded loop reproducible row for row.
 * CPU only, toy preset.
 */
#include <criterion/criterion.h>
#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "bench/bench_run.h"
#include "search/search.h"
#include "tests/capture.h"
#include "tools/cmd.h"

/* ---------------------------------------------------------------- helpers */

/* Write text to a new temporary file; the caller unlinks and frees the path. */
static char *temp_file(const char *text)
{
    char *path = strdup("/tmp/amk-test-search-XXXXXX");
    int fd = mkstemp(path);
    cr_assert(fd >= 0);
    cr_assert_eq(write(fd, text, strlen(text)), (ssize_t)strlen(text));
    close(fd);
    return path;
}

/* lower_config_read_file on text: the status, err filled. */
static ir_status read_config_text(const char *text, ir_config *c, ir_error *err)
{
    char *path = temp_file(text);
    ir_status s = lower_config_read_file(path, c, err);
    unlink(path);
    free(path);
    return s;
}

/* The config text setting knob k to v (INT) or to choice v (ENUM). */
static void knob_config(const lower_knob *k, int64_t v, char *out, size_t len)
{
    char op[64], key[64];
    if (k->type == LOWER_KNOB_ENUM)
        snprintf(out, len, "{\"%s\": \"%s\"}", k->name, k->choices[v]);
    else if (sscanf(k->name, "tiling.%63[^.].%63s", op, key) == 2)
        snprintf(out, len, "{\"tiling\": {\"%s\": {\"%s\": %lld}}}", op, key, (long long)v);
    else
        snprintf(out, len, "{\"%s\": %lld}", k->name, (long long)v);
}

/* Read text with the config reader and lower it for the toy preset on h100: asserts both. */
static void assert_lowers(const char *text)
{
    ir_config c;
    ir_error err = {0};
    cr_assert_eq(read_config_text(text, &c, &err), IR_OK, "%s refused: %s: %s", text, err.where,
                 err.why);
    lower_model m;
    cr_assert_eq(lower_model_preset("toy", &m, &err), IR_OK);
    lower_opts o;
    lower_opts_default(&o);
    ir_program *p = NULL;
    ir_status s = lower_program(&m, &c, ir_target_builtin("h100"), &o, &p, &err);
    cr_assert_eq(s, IR_OK, "%s does not lower: %s: %s", text, err.where, err.why);
    cr_assert_gt(p->n_tasks, 0);
    ir_program_free(p);
    ir_config_free(&c);
}

static void assert_refused(const char *text, const char *where_part)
{
    ir_config c;
    ir_error err = {0};
    ir_status s = read_config_text(text, &c, &err);
    cr_assert_neq(s, IR_OK, "%s was accepted", text);
    cr_assert(strstr(err.where, where_part), "%s: refused at %s, expected %s", text, err.where,
              where_part);
}

static lower_model toy_model;   /* outlives the context (each test runs in its own process) */

static search_ctx *toy_ctx(char *weights_path)
{
    lower_model *m = &toy_model;
    ir_error err = {0};
    cr_assert_eq(lower_model_preset("toy", m, &err), IR_OK);
    cr_assert_eq(refvm_weights_random(m, 0, IR_BF16, weights_path, &err), IR_OK, "%s", err.why);
    search_opts o;
    search_opts_default(&o);
    o.model = m;
    o.target = ir_target_builtin("h100");
    o.weights = weights_path;
    search_ctx *ctx = NULL;
    cr_assert_eq(search_ctx_new(&o, &ctx, &err), IR_OK, "%s: %s", err.where, err.why);
    return ctx;
}

static cJSON *parse_out(char *out)
{
    cJSON *o = cJSON_Parse(out);
    cr_assert_not_null(o, "not JSON: %s", out);
    free(out);
    return o;
}

/* ---------------------------------------------------------------- the space */

Test(search_space, every_listed_value_and_choice_lowers_for_toy)
{
    char text[512];
    for (int i = 0; i < lower_knob_count(); i++) {
        const lower_knob *k = lower_knob_at(i);
        if (k->type == LOWER_KNOB_INT) {
            for (int j = 0; j < k->n_search; j++)
                if (k->search[j]) {
                    knob_config(k, k->search[j], text, sizeof text);
                    assert_lowers(text);
                }
            int64_t ends[2] = {k->lo, k->hi};
            for (int j = 0; j < 2; j++) {
                knob_config(k, ends[j], text, sizeof text);
                assert_lowers(text);
            }
        } else if (k->type == LOWER_KNOB_ENUM) {
            for (int j = 0; k->choices[j]; j++) {
                knob_config(k, j, text, sizeof text);
                assert_lowers(text);
            }
        } else {
            for (int g = 0; g < lower_fusion_count(); g++) {
                const char *names[4];
                int n = lower_fusion_group(g, names);
                int len = snprintf(text, sizeof text, "{\"fusion_grouping\": [[");
                for (int j = 0; j < n; j++)
                    len += snprintf(text + len, sizeof text - (size_t)len, "%s\"%s\"",
                                    j ? ", " : "", names[j]);
                snprintf(text + len, sizeof text - (size_t)len, "]]}");
                assert_lowers(text);
            }
        }
    }
}

Test(search_space, every_value_just_outside_a_range_is_refused_by_the_reader)
{
    char text[512];
    int checked = 0;
    for (int i = 0; i < lower_knob_count(); i++) {
        const lower_knob *k = lower_knob_at(i);
        if (k->type == LOWER_KNOB_INT) {
            int64_t bad[3] = {k->lo - 1, k->hi + 1, k->lo + k->multiple_of / 2};
            for (int j = 0; j < (k->multiple_of > 1 ? 3 : 2); j++) {
                knob_config(k, bad[j], text, sizeof text);
                assert_refused(text, strrchr(k->name, '.') ? strrchr(k->name, '.') + 1 : k->name);
                checked++;
            }
        } else if (k->type == LOWER_KNOB_ENUM) {
            snprintf(text, sizeof text, "{\"%s\": \"no_such_policy\"}", k->name);
            assert_refused(text, k->name);
            checked++;
        } else {
            assert_refused("{\"fusion_grouping\": [[\"q\", \"o\"]]}", "fusion_grouping");
            assert_refused("{\"fusion_grouping\": [[\"gate\", \"up\"], [\"mlp_norm\", \"gate\", "
                           "\"up\"]]}", "fusion_grouping");
            checked += 2;
        }
    }
    cr_assert_eq(checked, 2 * 7 + 1 + 2 + 2);   /* 7 INT knobs, threads has 3, 2 ENUM, groups */
}

Test(search_space, propose_lists_the_knob_table_and_the_default_incumbent)
{
    const char *args[] = {"propose", "toy", "--gpu", "h100"};
    char *out;
    cr_assert_eq(run_captured(cmd_propose, args, 4, &out), 0);
    cJSON *o = parse_out(out);
    const cJSON *space = cJSON_GetObjectItem(o, "space");
    cr_assert_eq(cJSON_GetArraySize(space), lower_knob_count());
    for (int i = 0; i < lower_knob_count(); i++) {
        const lower_knob *k = lower_knob_at(i);
        const cJSON *e = cJSON_GetArrayItem(space, i);
        cr_assert_str_eq(cJSON_GetObjectItem(e, "name")->valuestring, k->name);
        cr_assert_str_eq(cJSON_GetObjectItem(e, "meaning")->valuestring, k->meaning);
        if (k->type == LOWER_KNOB_INT) {
            const cJSON *r = cJSON_GetObjectItem(e, "range");
            cr_assert_eq((int64_t)cJSON_GetArrayItem(r, 0)->valuedouble, k->lo);
            cr_assert_eq((int64_t)cJSON_GetArrayItem(r, 1)->valuedouble, k->hi);
            const cJSON *sv = cJSON_GetObjectItem(e, "search_values");
            bool stage = !strcmp(k->name, "tiling.gemv.stage_tiles");
            cr_assert_eq(cJSON_GetArraySize(sv), k->n_search + (stage ? 2 : 0), "%s", k->name);
            if (stage) {   /* one and two tiles per SM of the h100 target */
                cr_assert_eq(cJSON_GetArrayItem(sv, k->n_search)->valueint, 132);
                cr_assert_eq(cJSON_GetArrayItem(sv, k->n_search + 1)->valueint, 264);
                int64_t v[32];
                cr_assert_eq(search_knob_values(k, 0, v, 32), k->n_search);
            }
        }
    }
    const cJSON *fg = cJSON_GetArrayItem(space, 4);
    cr_assert_str_eq(cJSON_GetObjectItem(fg, "type")->valuestring, "set");
    cr_assert_eq(cJSON_GetArraySize(cJSON_GetObjectItem(fg, "choices")), lower_fusion_count());
    const cJSON *th = cJSON_GetArrayItem(space, 8);
    cr_assert_str_eq(cJSON_GetObjectItem(th, "name")->valuestring, "threads_per_block");
    cr_assert_eq(cJSON_GetObjectItem(th, "multiple_of")->valueint, 32);
    cr_assert_eq(cJSON_GetObjectItem(th, "default")->valueint, 256);
    const cJSON *inc = cJSON_GetObjectItem(o, "incumbent");
    cr_assert_eq(cJSON_GetObjectItem(inc, "threads_per_block")->valueint, 256);
    cr_assert_str_eq(cJSON_GetObjectItem(o, "schedule_id")->valuestring, "c9f2658612f8a164");
    cJSON_Delete(o);
}

Test(search_space, propose_incumbent_is_the_given_config)
{
    char *cfg = temp_file("{\"tiling\": {\"gemv\": {\"N_tile\": 64}}, \"threads_per_block\": 512}");
    const char *args[] = {"propose", "toy", "--gpu", "h100", "--incumbent", cfg};
    char *out;
    cr_assert_eq(run_captured(cmd_propose, args, 6, &out), 0);
    cJSON *o = parse_out(out);
    const cJSON *inc = cJSON_GetObjectItem(o, "incumbent");
    cr_assert_eq(cJSON_GetObjectItem(inc, "threads_per_block")->valueint, 512);
    cr_assert_eq(cJSON_GetObjectItem(cJSON_GetObjectItem(cJSON_GetObjectItem(inc, "tiling"),
                                                         "gemv"), "N_tile")->valueint, 64);
    cr_assert_eq(cJSON_GetObjectItem(o, "simplicity")->valueint, 2);
    cr_assert_str_neq(cJSON_GetObjectItem(o, "schedule_id")->valuestring, "c9f2658612f8a164");
    cJSON_Delete(o);
    unlink(cfg);
    free(cfg);
    const char *bad[] = {"propose", "toy", "--gpu", "h100", "--incumbent", "/nonexistent.json"};
    cr_assert_eq(run_captured(cmd_propose, bad, 6, NULL), 2);
}

/* ---------------------------------------------------------------- identity */

static void id_of(const char *text, char id[SEARCH_ID_LEN + 1])
{
    ir_config c;
    ir_error err = {0};
    cr_assert_eq(ir_config_read_json(text, strlen(text), true, &c, &err), IR_OK, "%s", err.why);
    cr_assert_eq(search_schedule_id(&c, id, &err), IR_OK);
    ir_config_free(&c);
}

Test(search_identity, schedule_id_ignores_spelling_and_sees_every_knob)
{
    char a[17], b[17], c[17], d[17], e[17], f[17];
    id_of("{}", a);
    id_of("{\"tiling\": {\"gemv\": {\"N_tile\": 256}}, \"threads_per_block\": 256}", b);
    cr_assert_str_eq(a, b, "a default spelled out is the default");
    id_of("{\"tiling\": {\"attention\": {\"kv_block\": 64}, \"gemv\": {\"N_tile\": 64}}}", c);
    id_of("{\"tiling\": {\"gemv\": {\"N_tile\": 64}, \"attention\": {\"kv_block\": 64}}}", d);
    cr_assert_str_eq(c, d, "tiling order does not matter");
    id_of("{\"fusion_grouping\": [[\"up\", \"gate\"], [\"o\", \"resid_attn\"]]}", e);
    id_of("{\"fusion_grouping\": [[\"resid_attn\", \"o\"], [\"gate\", \"up\"]]}", f);
    cr_assert_str_eq(e, f, "group and name order do not matter");
    cr_assert_str_neq(a, c);
    cr_assert_str_neq(c, e);
    id_of("{\"pipelining_depth\": 3}", b);
    cr_assert_str_neq(a, b);
    cr_assert_eq(strlen(a), SEARCH_ID_LEN);
}

Test(search_identity, simplicity_counts_knobs_off_default)
{
    const char *texts[] = {"{}", "{\"tiling\": {\"gemv\": {\"N_tile\": 256}}}",
                           "{\"tiling\": {\"gemv\": {\"N_tile\": 64}}, \"sm_assignment\": "
                           "\"round_robin\", \"fusion_grouping\": [[\"gate\", \"up\"]]}"};
    int want[] = {0, 0, 3};
    for (int i = 0; i < 3; i++) {
        ir_config c;
        ir_error err = {0};
        cr_assert_eq(ir_config_read_json(texts[i], strlen(texts[i]), true, &c, &err), IR_OK);
        cr_assert_eq(search_simplicity(&c), want[i], "%s", texts[i]);
        ir_config_free(&c);
    }
}

/* ---------------------------------------------------------------- eval */

Test(search_eval, smem_over_the_cap_is_refuted_by_residency_with_no_latency)
{
    char *cfg = temp_file("{\"smem_bytes_per_block\": 300000}");
    const char *args[] = {"eval", "toy", "--gpu", "h100", "--config", cfg, "--device", "cpu"};
    char *out;
    cr_assert_eq(run_captured(cmd_eval, args, 8, &out), 1);
    cJSON *o = parse_out(out);
    cr_assert(cJSON_IsFalse(cJSON_GetObjectItem(o, "valid")));
    cr_assert_str_eq(cJSON_GetObjectItem(o, "rejected_obligation")->valuestring, "resident");
    cr_assert_str_eq(cJSON_GetObjectItem(o, "witness_kind")->valuestring, "smem_cap");
    cr_assert(strstr(cJSON_GetObjectItem(o, "rejected_reason")->valuestring, "300000"));
    cr_assert(cJSON_IsNull(cJSON_GetObjectItem(o, "correct")), "no correctness claim");
    cr_assert(cJSON_IsNull(cJSON_GetObjectItem(o, "latency_us")), "no latency");
    cr_assert(cJSON_IsNull(cJSON_GetObjectItem(o, "latency_kind")));
    const cJSON *res = cJSON_GetObjectItem(cJSON_GetObjectItem(o, "proof"), "resident");
    cr_assert_str_eq(cJSON_GetObjectItem(res, "status")->valuestring, "REFUTED");
    cJSON_Delete(o);
    unlink(cfg);
    free(cfg);
}

Test(search_eval, default_config_is_valid_correct_and_predicted_above_the_floor)
{
    char *cfg = temp_file("{}");
    const char *args[] = {"eval", "toy", "--gpu", "h100", "--config", cfg, "--device", "auto"};
    char *out;
    char name[128], why[256];
    bool gpu = bench_gpu_available(name, sizeof name, why, sizeof why);
    cr_assert_eq(run_captured(cmd_eval, args, 8, &out), 0);
    cJSON *o = parse_out(out);
    cr_assert(cJSON_IsTrue(cJSON_GetObjectItem(o, "valid")));
    cr_assert(cJSON_IsTrue(cJSON_GetObjectItem(o, "correct")));
    cr_assert_eq(cJSON_GetObjectItem(o, "top1_agreement")->valuedouble, 1.0);
    cr_assert_lt(cJSON_GetObjectItem(o, "max_abs_err")->valuedouble, 1e-3);
    cr_assert_eq(cJSON_GetObjectItem(o, "tasks")->valueint, 37);
    cr_assert_str_eq(cJSON_GetObjectItem(o, "latency_kind")->valuestring,
                     gpu ? "measured-gpu" : "predicted");
    double lat = cJSON_GetObjectItem(o, "latency_us")->valuedouble;
    double bound = cJSON_GetObjectItem(o, "bound_us")->valuedouble;
    cr_assert_gt(bound, 0);
    cr_assert_geq(lat, bound, "a latency below the roofline floor");
    cr_assert_float_eq(cJSON_GetObjectItem(o, "pct_of_roofline")->valuedouble,
                       bound / lat * 100, 1e-9);
    cJSON_Delete(o);
    unlink(cfg);
    free(cfg);
}

/* The lowering orders every queue by the one global topological order, so no explicit
 * sm_assignment map can build a cross-queue wait cycle: even a map that interleaves the chain
 * over two queues backwards is PROVED. (The unsafe config a map-free reader accepts is the
 * SMEM one above.) */
Test(search_eval, explicit_map_cannot_express_a_cross_queue_cycle)
{
    char text[2048];
    int n = snprintf(text, sizeof text, "{\"sm_assignment\": {");
    for (int i = 0; i < 37; i++)
        n += snprintf(text + n, sizeof text - (size_t)n, "%s\"%d\": %d", i ? ", " : "", i,
                      (36 - i) % 2);
    snprintf(text + n, sizeof text - (size_t)n, "}}");
    char weights[] = "/tmp/amk-test-search-w-XXXXXX";
    close(mkstemp(weights));
    search_ctx *ctx = toy_ctx(weights);
    ir_config c;
    ir_error err = {0};
    cr_assert_eq(read_config_text(text, &c, &err), IR_OK, "%s", err.why);
    search_verdict v;
    cr_assert_eq(search_eval(ctx, &c, &v, NULL, &err), IR_OK, "%s", err.why);
    cr_assert(v.valid, "%s", v.rejected_reason);
    cr_assert_eq(v.proof[VERIFY_DEADLOCK], VERIFY_PROVED);
    cr_assert(v.correct);
    ir_config_free(&c);
    /* a map leaving tasks out is refused by the lowering: a verdict, rejected at "lower" */
    cr_assert_eq(read_config_text("{\"sm_assignment\": {\"0\": 1}}", &c, &err), IR_OK);
    cr_assert_eq(search_eval(ctx, &c, &v, NULL, &err), IR_OK);
    cr_assert_not(v.valid);
    cr_assert_str_eq(v.rejected_obligation, "lower");
    cr_assert(strstr(v.rejected_reason, "config.sm_assignment"), "%s", v.rejected_reason);
    cr_assert_not(v.has_latency);
    ir_config_free(&c);
    search_ctx_free(ctx);
    unlink(weights);
}

Test(search_eval, cuda_without_a_gpu_is_a_clean_error)
{
    char name[128], why[256];
    if (bench_gpu_available(name, sizeof name, why, sizeof why))
        cr_skip_test("a GPU is present");
    char *cfg = temp_file("{}");
    const char *args[] = {"eval", "toy", "--gpu", "h100", "--config", cfg, "--device", "cuda"};
    char *out;
    cr_assert_eq(run_captured(cmd_eval, args, 8, &out), 2);
    cr_assert(strstr(out, "UNSUPPORTED"), "%s", out);
    free(out);
    unlink(cfg);
    free(cfg);
}

/* ---------------------------------------------------------------- keep or revert */

static search_verdict scored(double us, search_latency_kind kind, int simplicity)
{
    search_verdict v;
    memset(&v, 0, sizeof v);
    v.valid = v.checked = v.correct = v.has_latency = true;
    v.latency_us = us;
    v.latency_kind = kind;
    v.simplicity = simplicity;
    return v;
}

Test(search_keep, a_gain_below_one_percent_reverts)
{
    search_verdict inc = scored(100, SEARCH_PREDICTED, 0);
    search_verdict cand = scored(99.5, SEARCH_PREDICTED, 0);
    char why[400];
    cr_assert_not(search_keep(&inc, &cand, NULL, why, sizeof why));
    cr_assert(strstr(why, "needs >= 1%"), "%s", why);
    cand.latency_us = 100.999 / 1.01;   /* 0.999% faster */
    inc.latency_us = 100.989;
    cr_assert_not(search_keep(&inc, &cand, NULL, NULL, 0));
    cand = scored(120, SEARCH_PREDICTED, 0);
    cr_assert_not(search_keep(&inc, &cand, NULL, why, sizeof why));
    cr_assert(strstr(why, "slower"), "%s", why);
}

Test(search_keep, exactly_one_percent_faster_is_kept)
{
    search_verdict inc = scored(101, SEARCH_PREDICTED, 0);
    search_verdict cand = scored(100, SEARCH_PREDICTED, 5);
    char why[400];
    cr_assert(search_keep(&inc, &cand, NULL, why, sizeof why), "%s", why);
    inc.latency_us = 1.01 * 37.25;
    cand.latency_us = 37.25;
    cr_assert(search_keep(&inc, &cand, NULL, NULL, 0));
    cand.latency_us = 37.2501;
    cr_assert_not(search_keep(&inc, &cand, NULL, NULL, 0));
}

Test(search_keep, measured_outranks_predicted_at_equal_latency)
{
    search_verdict inc = scored(50, SEARCH_PREDICTED, 0);
    search_verdict cand = scored(50, SEARCH_MEASURED_GPU, 3);
    char why[400];
    cr_assert(search_keep(&inc, &cand, NULL, why, sizeof why));
    cr_assert(strstr(why, "measured outranks predicted"), "%s", why);
    /* and a predicted candidate never replaces a measured incumbent at equal latency */
    cr_assert_not(search_keep(&cand, &inc, NULL, NULL, 0));
}

Test(search_keep, simplicity_breaks_ties)
{
    search_verdict inc = scored(50, SEARCH_PREDICTED, 3);
    search_verdict simpler = scored(50, SEARCH_PREDICTED, 2);
    search_verdict same = scored(50, SEARCH_PREDICTED, 3);
    char why[400];
    cr_assert(search_keep(&inc, &simpler, NULL, why, sizeof why));
    cr_assert(strstr(why, "simpler"), "%s", why);
    cr_assert_not(search_keep(&inc, &same, NULL, NULL, 0));
    /* a 0.5% gain is no tie: it reverts even when simpler */
    search_verdict near = scored(49.75, SEARCH_PREDICTED, 0);
    cr_assert_not(search_keep(&inc, &near, NULL, NULL, 0));
}

Test(search_keep, only_valid_correct_candidates_with_a_latency_are_kept)
{
    search_verdict inc = scored(100, SEARCH_PREDICTED, 0);
    search_verdict cand = scored(10, SEARCH_PREDICTED, 0);
    cand.valid = false;
    snprintf(cand.rejected_reason, sizeof cand.rejected_reason, "resident REFUTED");
    char why[400];
    cr_assert_not(search_keep(&inc, &cand, NULL, why, sizeof why));
    cr_assert(strstr(why, "not valid"), "%s", why);
    cand = scored(10, SEARCH_PREDICTED, 0);
    cand.correct = false;
    cr_assert_not(search_keep(&inc, &cand, NULL, NULL, 0));
    cand = scored(10, SEARCH_PREDICTED, 0);
    cand.has_latency = false;
    cr_assert_not(search_keep(&inc, &cand, NULL, NULL, 0));
    cand = scored(10, SEARCH_PREDICTED, 0);
    cr_assert(search_keep(NULL, &cand, NULL, NULL, 0), "no incumbent: the first is kept");
}

Test(search_keep, paired_ab_decides_on_a_gpu)
{
    search_verdict inc = scored(100, SEARCH_MEASURED_GPU, 1);
    search_verdict cand = scored(100, SEARCH_MEASURED_GPU, 1);   /* medians say nothing */
    search_paired ab = {.has = true, .estimate = 1.02, .lo = 1.005, .hi = 1.03};
    cr_assert(search_keep(&inc, &cand, &ab, NULL, 0));
    ab = (search_paired){.has = true, .estimate = 1.005, .lo = 1.001, .hi = 1.01};
    cr_assert_not(search_keep(&inc, &cand, &ab, NULL, 0), "significant but below 1%");
    ab = (search_paired){.has = true, .estimate = 1.02, .lo = 0.99, .hi = 1.05};
    cr_assert_not(search_keep(&inc, &cand, &ab, NULL, 0), "a CI holding 1 is a tie");
    cand.simplicity = 0;
    cr_assert(search_keep(&inc, &cand, &ab, NULL, 0), "a tie goes to the simpler");
    /* without a confirmed audit the medians decide */
    ab.has = false;
    cand = scored(90, SEARCH_MEASURED_GPU, 1);
    cr_assert(search_keep(&inc, &cand, &ab, NULL, 0));
}

/* ---------------------------------------------------------------- the loop */

static char *run_loop(const char *seed, const char *tsv)
{
    const char *args[] = {"loop", "toy", "--gpu", "h100", "--budget", "8", "--seed", seed,
                          "--results", tsv, "--json", "--device", "cpu"};
    char *out;
    cr_assert_eq(run_captured(cmd_loop, args, 13, &out), 0);
    FILE *f = fopen(tsv, "r");
    cr_assert_not_null(f);
    char *text = calloc(1 << 20, 1);
    size_t n = fread(text, 1, (1 << 20) - 1, f);
    fclose(f);
    cr_assert_gt(n, 0);
    cJSON *o = parse_out(out);
    const cJSON *best = cJSON_GetObjectItem(o, "best");
    const cJSON *v = cJSON_GetObjectItem(best, "verdict");
    cr_assert(cJSON_IsTrue(cJSON_GetObjectItem(v, "valid")));
    cr_assert(cJSON_IsTrue(cJSON_GetObjectItem(v, "correct")));
    cr_assert_str_eq(cJSON_GetObjectItem(v, "latency_kind")->valuestring, "predicted");
    const cJSON *counts = cJSON_GetObjectItem(o, "counts");
    cr_assert_eq(cJSON_GetObjectItem(counts, "trials")->valueint, 8);
    cr_assert_eq(cJSON_GetArraySize(cJSON_GetObjectItem(o, "rows")), 8);
    cr_assert_geq(cJSON_GetObjectItem(counts, "kept")->valueint, 1);
    const cJSON *row0 = cJSON_GetArrayItem(cJSON_GetObjectItem(o, "rows"), 0);
    cr_assert_str_eq(cJSON_GetObjectItem(row0, "origin")->valuestring, "default");
    cr_assert_str_eq(cJSON_GetObjectItem(row0, "schedule_id")->valuestring, "c9f2658612f8a164");
    cJSON_Delete(o);
    unlink(tsv);
    return text;
}

/* A sanitized build runs a loop several times slower: the timeouts leave room for it. */
Test(search_loop, a_seeded_loop_is_reproducible_row_for_row, .timeout = 60)
{
    char *a = run_loop("7", "/tmp/amk-test-search-a.tsv");
    char *b = run_loop("7", "/tmp/amk-test-search-b.tsv");
    cr_assert_str_eq(a, b);
    cr_assert(!strncmp(a, "trial\tschedule_id\tconfig\tvalid\tcorrect\tlatency_us\tlatency_kind\t"
                       "kept\treason\n0\tc9f2658612f8a164\tdefault\ttrue\ttrue\t", 88), "%s", a);
    int rows = 0;
    for (const char *p = a; *p; p++)
        rows += *p == '\n';
    cr_assert_eq(rows, 9);
    free(a);
    free(b);
}

Test(search_loop, the_seed_draws_the_candidates, .timeout = 60)
{
    char *a = run_loop("7", "/tmp/amk-test-search-d.tsv");
    char *c = run_loop("8", "/tmp/amk-test-search-e.tsv");
    cr_assert_str_neq(a, c);
    free(a);
    free(c);
}

/* ---------------------------------------------------------------- serve */

Test(search_serve, one_json_answer_per_request_line, .timeout = 30)
{
    const char *bin = getenv("AMK_BIN");
    if (!bin)
        cr_skip_test("AMK_BIN not set");
    char cmd[1024];
    snprintf(cmd, sizeof cmd,
             "printf '%%s\\n' '{\"cmd\": \"propose\", \"model\": \"toy\", \"gpu\": \"h100\"}' "
             "'{\"cmd\": \"eval\", \"model\": \"toy\", \"gpu\": \"h100\", \"device\": \"cpu\", "
             "\"config\": {\"smem_bytes_per_block\": 300000}}' '{\"cmd\": \"nope\", \"model\": "
             "\"toy\", \"gpu\": \"h100\"}' | %s serve", bin);
    FILE *p = popen(cmd, "r");
    cr_assert_not_null(p);
    char line[1 << 16];
    cJSON *ans[3];
    for (int i = 0; i < 3; i++) {
        cr_assert_not_null(fgets(line, sizeof line, p), "answer %d missing", i);
        cr_assert_not_null(ans[i] = cJSON_Parse(line), "%s", line);
    }
    cr_assert_null(fgets(line, sizeof line, p));
    cr_assert_eq(pclose(p), 0);
    cr_assert_str_eq(cJSON_GetObjectItem(ans[0], "schedule_id")->valuestring, "c9f2658612f8a164");
    cr_assert(cJSON_IsFalse(cJSON_GetObjectItem(ans[1], "valid")));
    cr_assert_str_eq(cJSON_GetObjectItem(ans[1], "witness_kind")->valuestring, "smem_cap");
    cr_assert_not_null(cJSON_GetObjectItem(ans[2], "error"));
    for (int i = 0; i < 3; i++)
        cJSON_Delete(ans[i]);
}
