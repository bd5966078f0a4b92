/*
 * test_verify.c - amk-verify obligations on minimal hand-made programs: each test asserts the
 * verdict of the obligation it is about and the content of the witness.
 */
#include <cjson/cJSON.h>
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lower/lower.h"
#include "tests/capture.h"
#include "tools/cmd.h"
#include "verify/verify.h"

/* ---------------------------------------------------------------- builders */

static ir_program *prog(void)
{
    ir_program *p = ir_program_new();
    cr_assert_not_null(p);
    p->has_target = true;
    p->target = *ir_target_builtin("h100");
    return p;
}

static int32_t act(ir_program *p, const char *name, int64_t n)
{
    int64_t shape[2] = {1, n};
    return ir_add_buffer(p, name, IR_ACTIVATION, IR_F32, 2, shape, IR_GLOBAL_SCRATCH, NULL);
}

/* A whole-buffer op task: ADD when it has two inputs, COPY with one. */
static ir_task *op(ir_program *p, int32_t counter, int32_t in0, int32_t in1, int32_t out)
{
    ir_task *t = ir_add_task(p, in1 >= 0 ? IR_OP_ADD : IR_OP_COPY, counter, "op");
    cr_assert_not_null(t);
    ir_task_add_input(t, in0);
    if (in1 >= 0)
        ir_task_add_input(t, in1);
    ir_task_add_output(t, out);
    return t;
}

/* Launch plan from queue lists terminated by -1, e.g. {0, 1, -1, 2, -1}. */
static void plan(ir_program *p, int grid, const int32_t *lists)
{
    cr_assert_eq(ir_plan_alloc(&p->plan, grid, p->n_tasks), IR_OK);
    p->has_plan = true;
    p->plan.threads_per_block = 128;
    p->plan.regs_per_thread = 64;
    int k = 0, q = 0;
    p->plan.queue_start[0] = 0;
    for (int i = 0; q < grid; i++) {
        if (lists[i] < 0) {
            p->plan.queue_start[++q] = k;
            continue;
        }
        p->plan.queue_tasks[k++] = lists[i];
        p->tasks[lists[i]].sm = q;
    }
    cr_assert_eq(k, p->n_tasks, "plan must list every task");
}

static verify_result run_verify(ir_program *p)
{
    verify_result r;
    ir_error err = {0};
    cr_assert_eq(verify_program(p, NULL, &r, &err), IR_OK, "%s", err.why);
    return r;
}

/* A field of the witness JSON, parsed. The caller deletes the returned root. */
static cJSON *witness(const verify_result *r)
{
    cr_assert_not_null(r->witness_json, "expected a witness");
    cJSON *w = cJSON_Parse(r->witness_json);
    cr_assert_not_null(w, "witness is not JSON: %s", r->witness_json);
    return w;
}

static int64_t jint(const cJSON *o, const char *k)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, k);
    cr_assert(cJSON_IsNumber(v), "witness lacks %s", k);
    return (int64_t)v->valuedouble;
}

/* IO input -> tasks -> IO output scaffolding: returns the input buffer; out is the output. */
static int32_t io(ir_program *p, int32_t *out, int64_t n)
{
    int64_t shape[2] = {1, n};
    int32_t in = ir_add_buffer(p, "x", IR_IO_INPUT, IR_F32, 2, shape, IR_HBM, NULL);
    *out = ir_add_buffer(p, "y", IR_IO_OUTPUT, IR_F32, 2, shape, IR_HBM, NULL);
    return in;
}

/* ---------------------------------------------------------------- proofs */

Test(verify, proves_lowered_toy_program_and_certificate_checks)
{
    lower_model m;
    ir_error err = {0};
    cr_assert_eq(lower_model_preset("toy", &m, &err), IR_OK);
    ir_config c;
    ir_config_default(&c);
    lower_opts o;
    lower_opts_default(&o);
    o.max_seq = 64;
    ir_program *p;
    cr_assert_eq(lower_program(&m, &c, ir_target_builtin("h100"), &o, &p, &err), IR_OK, "%s",
                 err.why);
    verify_result r = run_verify(p);
    for (int i = 0; i < VERIFY_N_OBLIGATIONS; i++)
        cr_expect_eq(r.ob[i].status, VERIFY_PROVED, "%s: %s",
                     verify_obligation_name((verify_obligation)i), r.ob[i].detail);
    cr_assert_eq(r.verdict, VERIFY_PROVED);
    cr_assert_not_null(r.certificate_json);
    cr_assert_null(r.witness_json);
    cr_assert_eq(verify_cert_check(r.certificate_json, strlen(r.certificate_json), p, &err), IR_OK,
                 "%s", err.why);
    /* The certificate is bound to this program: change one threshold and it no longer holds. */
    for (int i = 0; i < p->n_tasks; i++)
        if (p->tasks[i].n_waits) {
            p->tasks[i].waits[0].threshold += 1;
            break;
        }
    cr_assert_eq(verify_cert_check(r.certificate_json, strlen(r.certificate_json), p, &err),
                 IR_ERR_MALFORMED);
    cr_assert(strstr(err.where, "program_sha256"));
    verify_result_free(&r);
    ir_program_free(p);
    ir_config_free(&c);
}

Test(verify, cert_check_rejects_a_finish_order_that_breaks_a_wait)
{
    ir_program *p = prog();
    int32_t y, x = io(p, &y, 4);
    int32_t h = act(p, "h", 4);
    int32_t c0 = ir_add_counter(p, "a"), c1 = ir_add_counter(p, "b");
    op(p, c0, x, -1, h);
    ir_task *t = op(p, c1, h, -1, y);
    ir_task_add_wait(t, c0, 1);
    plan(p, 2, (int32_t[]){0, -1, 1, -1});
    verify_result r = run_verify(p);
    cr_assert_eq(r.verdict, VERIFY_PROVED, "%s", r.ob[VERIFY_RACE].detail);
    char *bad = strdup(r.certificate_json);
    char *fo = strstr(bad, "\"finish_order\": [0, 1]");
    cr_assert_not_null(fo, "%s", bad);
    memcpy(fo, "\"finish_order\": [1, 0]", strlen("\"finish_order\": [1, 0]"));
    ir_error err = {0};
    cr_assert_eq(verify_cert_check(bad, strlen(bad), p, &err), IR_ERR_MALFORMED);
    cr_assert(strstr(err.why, "before counter"), "%s", err.why);
    free(bad);
    verify_result_free(&r);
    ir_program_free(p);
}

/* ---------------------------------------------------------------- deadlock */

Test(verify, refutes_cross_queue_wait_cycle_with_acyclic_dependencies)
{
    /* q0: a, b   q1: c, d;  a waits d, c waits b. The dependency DAG (d->a, b->c) is acyclic;
       the queues make it a cycle. */
    ir_program *p = prog();
    int32_t y, x = io(p, &y, 4);
    int32_t h1 = act(p, "h1", 4), h2 = act(p, "h2", 4), h3 = act(p, "h3", 4);
    int32_t ca = ir_add_counter(p, "a"), cb = ir_add_counter(p, "b"), cc = ir_add_counter(p, "c"),
            cd = ir_add_counter(p, "d");
    ir_task *a = op(p, ca, x, -1, h1);
    ir_task_add_wait(a, cd, 1);
    op(p, cb, x, -1, h2);
    ir_task *c = op(p, cc, x, -1, h3);
    ir_task_add_wait(c, cb, 1);
    op(p, cd, x, -1, y);
    plan(p, 2, (int32_t[]){0, 1, -1, 2, 3, -1});
    verify_result r = run_verify(p);
    cr_assert_eq(r.ob[VERIFY_DEADLOCK].status, VERIFY_REFUTED, "%s", r.ob[VERIFY_DEADLOCK].detail);
    cr_assert_eq(r.verdict, VERIFY_REFUTED);
    cr_assert_str_eq(r.witness_kind, "deadlock");
    cJSON *w = witness(&r);
    cr_assert_eq(jint(w, "finished"), 0);
    const cJSON *bl = cJSON_GetObjectItemCaseSensitive(w, "blocked");
    cr_assert_eq(cJSON_GetArraySize(bl), 2);
    const cJSON *b0 = cJSON_GetArrayItem(bl, 0), *b1 = cJSON_GetArrayItem(bl, 1);
    cr_assert_eq(jint(b0, "task"), 0);
    cr_assert_eq(jint(cJSON_GetObjectItemCaseSensitive(b0, "wait"), "counter"), cd);
    cr_assert_eq(jint(b0, "counter_value"), 0);
    cr_assert_eq(jint(b1, "task"), 2);
    cr_assert_eq(jint(cJSON_GetObjectItemCaseSensitive(b1, "wait"), "counter"), cb);
    cJSON_Delete(w);
    verify_result_free(&r);
    ir_program_free(p);
}

Test(verify, refutes_threshold_above_producer_count)
{
    ir_program *p = prog();
    int32_t y, x = io(p, &y, 4);
    int32_t h = act(p, "h", 4);
    int32_t c0 = ir_add_counter(p, "a"), c1 = ir_add_counter(p, "b");
    op(p, c0, x, -1, h);
    ir_task *t = op(p, c1, h, -1, y);
    ir_task_add_wait(t, c0, 2);
    plan(p, 2, (int32_t[]){0, -1, 1, -1});
    verify_result r = run_verify(p);
    cr_assert_eq(r.ob[VERIFY_DEADLOCK].status, VERIFY_REFUTED);
    cJSON *w = witness(&r);
    const cJSON *b0 = cJSON_GetArrayItem(cJSON_GetObjectItemCaseSensitive(w, "blocked"), 0);
    cr_assert_eq(jint(b0, "task"), 1);
    cr_assert_eq(jint(b0, "counter_value"), 1);
    cr_assert_eq(jint(b0, "producers"), 1);
    cJSON_Delete(w);
    verify_result_free(&r);
    ir_program_free(p);
}

/* ---------------------------------------------------------------- partial waits */

/* p1 (q0) writes h; p2 writes g; both count c. w waits (c >= 1) and reads h. */
static ir_program *partial_wait(bool p2_after_w)
{
    ir_program *p = prog();
    int32_t y, x = io(p, &y, 4);
    int32_t h = act(p, "h", 4), g = act(p, "g", 4);
    int32_t c = ir_add_counter(p, "shared"), cw = ir_add_counter(p, "w"), cz = ir_add_counter(p, "z");
    op(p, c, x, -1, h);            /* 0: p1 */
    ir_task *w = op(p, cw, h, -1, y); /* 1: w */
    ir_task_add_wait(w, c, 1);
    op(p, c, x, -1, g);            /* 2: p2 */
    ir_task *z = op(p, cz, g, -1, act(p, "sink", 4)); /* 3: reads g after both */
    ir_task_add_wait(z, c, 2);
    if (p2_after_w)
        plan(p, 3, (int32_t[]){0, -1, 1, 2, -1, 3, -1});
    else
        plan(p, 3, (int32_t[]){0, -1, 1, -1, 2, 3, -1});
    return p;
}

Test(verify, proves_partial_wait_whose_other_producer_is_forced_later)
{
    ir_program *p = partial_wait(true);
    verify_result r = run_verify(p);
    cr_assert_eq(r.ob[VERIFY_DEADLOCK].status, VERIFY_PROVED, "%s", r.ob[VERIFY_DEADLOCK].detail);
    cr_assert_eq(r.ob[VERIFY_RACE].status, VERIFY_PROVED, "%s", r.ob[VERIFY_RACE].detail);
    cr_assert_eq(r.verdict, VERIFY_PROVED, "%s", r.ob[VERIFY_COMPLETE].detail);
    verify_result_free(&r);
    ir_program_free(p);
}

Test(verify, refutes_partial_wait_that_another_producer_can_satisfy)
{
    ir_program *p = partial_wait(false);
    verify_result r = run_verify(p);
    cr_assert_eq(r.ob[VERIFY_RACE].status, VERIFY_REFUTED, "%s", r.ob[VERIFY_RACE].detail);
    cr_assert_str_eq(r.witness_kind, "race");
    cJSON *w = witness(&r);
    const cJSON *tasks = cJSON_GetObjectItemCaseSensitive(w, "tasks");
    int64_t a = (int64_t)cJSON_GetArrayItem(tasks, 0)->valuedouble;
    int64_t b = (int64_t)cJSON_GetArrayItem(tasks, 1)->valuedouble;
    cr_assert((a == 0 && b == 1) || (a == 1 && b == 0), "racing pair %lld %lld", (long long)a,
              (long long)b);
    /* The interleaving: run the prefix, then both tasks are enabled together. */
    const cJSON *il = cJSON_GetObjectItemCaseSensitive(w, "interleaving");
    const cJSON *run = cJSON_GetObjectItemCaseSensitive(il, "run");
    bool has_p2 = false;
    const cJSON *e;
    cJSON_ArrayForEach(e, run) has_p2 |= e->valuedouble == 2;
    cr_assert(has_p2, "p2 must finish first to release w early");
    cJSON_Delete(w);
    verify_result_free(&r);
    ir_program_free(p);
}

/* ---------------------------------------------------------------- tiles and pages */

static ir_program *two_tiles(int64_t off2, int64_t n2)
{
    ir_program *p = prog();
    int64_t wshape[2] = {16, 8}, xshape[2] = {1, 8}, yshape[2] = {1, 16};
    int32_t x = ir_add_buffer(p, "x", IR_IO_INPUT, IR_F32, 2, xshape, IR_HBM, NULL);
    int32_t W = ir_add_buffer(p, "w", IR_WEIGHT, IR_F32, 2, wshape, IR_HBM, "w");
    int32_t y = ir_add_buffer(p, "y", IR_IO_OUTPUT, IR_F32, 2, yshape, IR_HBM, NULL);
    int32_t c = ir_add_counter(p, "proj");
    int64_t offs[2] = {0, off2}, ns[2] = {10, n2};
    for (int i = 0; i < 2; i++) {
        ir_task *t = ir_add_task(p, IR_OP_GEMV_TILE, c, "tile");
        ir_task_add_input(t, x);
        ir_task_add_input(t, W);
        ir_task_add_output(t, y);
        ir_task_set_int(t, "K", 8);
        ir_task_set_int(t, "N_tile", ns[i]);
        ir_task_set_int(t, "n_off", offs[i]);
    }
    plan(p, 2, (int32_t[]){0, -1, 1, -1});
    return p;
}

Test(verify, refutes_overlapping_gemv_tiles_and_names_the_overlap)
{
    ir_program *p = two_tiles(8, 8);
    verify_result r = run_verify(p);
    cr_assert_eq(r.ob[VERIFY_RACE].status, VERIFY_REFUTED, "%s", r.ob[VERIFY_RACE].detail);
    cJSON *w = witness(&r);
    const cJSON *ov = cJSON_GetObjectItemCaseSensitive(w, "overlap");
    cr_assert_eq(cJSON_GetArrayItem(cJSON_GetObjectItemCaseSensitive(ov, "lo"), 1)->valuedouble, 8);
    cr_assert_eq(cJSON_GetArrayItem(cJSON_GetObjectItemCaseSensitive(ov, "hi"), 1)->valuedouble, 10);
    cJSON_Delete(w);
    verify_result_free(&r);
    ir_program_free(p);
}

Test(verify, proves_disjoint_gemv_tiles_sharing_a_counter)
{
    ir_program *p = two_tiles(10, 6);
    verify_result r = run_verify(p);
    cr_assert_eq(r.verdict, VERIFY_PROVED, "%s / %s", r.ob[VERIFY_RACE].detail,
                 r.ob[VERIFY_COMPLETE].detail);
    verify_result_free(&r);
    ir_program_free(p);
}

Test(verify, refutes_output_element_never_written)
{
    ir_program *p = two_tiles(10, 5); /* column 15 of y is never written */
    verify_result r = run_verify(p);
    cr_assert_eq(r.ob[VERIFY_COMPLETE].status, VERIFY_REFUTED, "%s", r.ob[VERIFY_COMPLETE].detail);
    cr_assert_str_eq(r.witness_kind, "output_unwritten");
    cJSON *w = witness(&r);
    cr_assert_eq(cJSON_GetArrayItem(cJSON_GetObjectItemCaseSensitive(w, "element"), 1)->valuedouble,
                 15);
    cJSON_Delete(w);
    verify_result_free(&r);
    ir_program_free(p);
}

/* Map the listed buffers to one GLOBAL_SCRATCH page of nbytes. */
static void share_page(ir_program *p, int n, const int32_t *bufs, int64_t nbytes)
{
    p->has_pages = true;
    p->pages.n_pages = 1;
    p->pages.pages = calloc(1, sizeof *p->pages.pages);
    p->pages.pages[0] = (ir_page){0, IR_GLOBAL_SCRATCH, nbytes, -1, -1};
    p->pages.n_map = n;
    p->pages.map_buffer = malloc((size_t)n * sizeof(int32_t));
    p->pages.map_page = calloc((size_t)n, sizeof(int32_t));
    for (int i = 0; i < n; i++)
        p->pages.map_buffer[i] = bufs[i];
}

Test(verify, refutes_page_shared_by_buffers_with_overlapping_lifetimes)
{
    /* t0 writes a, t1 reads a (after t0), t2 writes b concurrently; a and b share page 0. */
    ir_program *p = prog();
    int32_t y, x = io(p, &y, 4);
    int32_t a = act(p, "a", 4), b = act(p, "b", 4);
    int32_t c0 = ir_add_counter(p, "t0"), c1 = ir_add_counter(p, "t1"), c2 = ir_add_counter(p, "t2");
    op(p, c0, x, -1, a);
    ir_task *t1 = op(p, c1, a, -1, y);
    ir_task_add_wait(t1, c0, 1);
    op(p, c2, x, -1, b);
    plan(p, 2, (int32_t[]){0, 1, -1, 2, -1});
    share_page(p, 2, (int32_t[]){a, b}, 16);
    verify_result r = run_verify(p);
    cr_assert_eq(r.ob[VERIFY_RACE].status, VERIFY_REFUTED, "%s", r.ob[VERIFY_RACE].detail);
    cr_assert_str_eq(r.witness_kind, "page_race");
    cJSON *w = witness(&r);
    cr_assert_eq(jint(w, "page"), 0);
    cJSON_Delete(w);
    verify_result_free(&r);
    /* Ordering the writer of b after the reader of a makes the sharing safe. */
    ir_task_add_wait(&p->tasks[2], c1, 1);
    r = run_verify(p);
    cr_assert_eq(r.ob[VERIFY_RACE].status, VERIFY_PROVED, "%s", r.ob[VERIFY_RACE].detail);
    verify_result_free(&r);
    ir_program_free(p);
}

/* One queue: t0 writes a, t1 writes b, t2 reads a into y; a and b share a page. Every pair is
 * ordered, yet when b's bytes cover a's the read sees b's data: a clobber, not a race. */
static ir_program *clobber_chain(int64_t nb, bool read_before_clobber)
{
    ir_program *p = prog();
    int32_t y, x = io(p, &y, 4);
    int32_t a = act(p, "a", 4), b = act(p, "b", nb), z = act(p, "z", nb);
    int32_t c0 = ir_add_counter(p, "t0"), c1 = ir_add_counter(p, "t1"), c2 = ir_add_counter(p, "t2");
    int32_t c3 = ir_add_counter(p, "t3");
    op(p, c0, x, -1, a);
    if (read_before_clobber) {
        op(p, c2, a, -1, y);
        op(p, c1, x, -1, b);
    } else {
        op(p, c1, x, -1, b);
        op(p, c2, a, -1, y);
    }
    op(p, c3, b, -1, z);        /* b is read too, so it is a live tenant */
    plan(p, 1, (int32_t[]){0, 1, 2, 3, -1});
    share_page(p, 2, (int32_t[]){a, b}, 64);
    return p;
}

Test(verify, refutes_a_page_tenant_read_after_another_tenant_overwrote_it)
{
    ir_program *p = clobber_chain(4, false);
    verify_result r = run_verify(p);
    cr_assert_eq(r.ob[VERIFY_RACE].status, VERIFY_REFUTED, "%s", r.ob[VERIFY_RACE].detail);
    cr_assert_str_eq(r.witness_kind, "page_clobber");
    cJSON *w = witness(&r);
    cr_assert_eq(jint(w, "page"), 0);
    const cJSON *t = cJSON_GetObjectItemCaseSensitive(w, "tasks");
    cr_assert_eq(cJSON_GetArrayItem(t, 0)->valueint, 2, "the clobbered read is task 2");
    cr_assert_eq(cJSON_GetArrayItem(t, 1)->valueint, 1, "the clobbering write is task 1");
    const cJSON *ob = cJSON_GetObjectItemCaseSensitive(w, "overlap_bytes");
    cr_assert_eq(cJSON_GetArrayItem(ob, 0)->valueint, 0);
    cr_assert_eq(cJSON_GetArrayItem(ob, 1)->valueint, 16);
    cJSON_Delete(w);
    verify_result_free(&r);
    ir_program_free(p);
}

Test(verify, proves_page_tenants_whose_reads_come_before_the_next_write)
{
    ir_program *p = clobber_chain(4, true);
    verify_result r = run_verify(p);
    cr_assert_eq(r.verdict, VERIFY_PROVED, "%s", r.ob[VERIFY_RACE].detail);
    verify_result_free(&r);
    ir_program_free(p);
}

Test(verify, refutes_a_clobber_of_the_first_bytes_only)
{
    /* b [1, 1] overwrites byte range [0, 4) of a [1, 4] before a is read */
    ir_program *p = clobber_chain(1, false);
    verify_result r = run_verify(p);
    cr_assert_str_eq(r.witness_kind, "page_clobber");
    cJSON *w = witness(&r);
    const cJSON *ob = cJSON_GetObjectItemCaseSensitive(w, "overlap_bytes");
    cr_assert_eq(cJSON_GetArrayItem(ob, 1)->valueint, 4);
    cJSON_Delete(w);
    verify_result_free(&r);
    ir_program_free(p);
}

Test(verify, refutes_one_task_reading_and_writing_two_tenants_of_a_page)
{
    /* t0 writes a; t1 reads a and writes b, and a, b share the page's bytes */
    ir_program *p = prog();
    int32_t y, x = io(p, &y, 4);
    int32_t a = act(p, "a", 4), b = act(p, "b", 4);
    int32_t c0 = ir_add_counter(p, "t0"), c1 = ir_add_counter(p, "t1"), c2 = ir_add_counter(p, "t2");
    op(p, c0, x, -1, a);
    op(p, c1, a, -1, b);
    op(p, c2, b, -1, y);
    plan(p, 1, (int32_t[]){0, 1, 2, -1});
    share_page(p, 2, (int32_t[]){a, b}, 16);
    verify_result r = run_verify(p);
    cr_assert_eq(r.ob[VERIFY_RACE].status, VERIFY_REFUTED, "%s", r.ob[VERIFY_RACE].detail);
    cr_assert_str_eq(r.witness_kind, "page_alias");
    cJSON *w = witness(&r);
    const cJSON *t = cJSON_GetObjectItemCaseSensitive(w, "tasks");
    cr_assert_eq(cJSON_GetArrayItem(t, 0)->valueint, 1);
    cr_assert_eq(cJSON_GetArrayItem(t, 1)->valueint, 1);
    cJSON_Delete(w);
    verify_result_free(&r);
    ir_program_free(p);
}

/* ---------------------------------------------------------------- KV cache and bounds */

/* append (row pos) and attention over rows [0, pos+1) of a KV cache of `rows` rows. */
static ir_program *kv(int64_t rows, int64_t max_seq, int order)
{
    ir_program *p = prog();
    p->has_decode = true;
    p->decode = (ir_decode){0, max_seq};
    int64_t s1[2] = {1, 8}, kvs[2] = {rows, 8};
    int32_t k = ir_add_buffer(p, "k", IR_IO_INPUT, IR_F32, 2, s1, IR_HBM, NULL);
    int32_t q = ir_add_buffer(p, "q", IR_IO_INPUT, IR_F32, 2, s1, IR_HBM, NULL);
    int32_t kc = ir_add_buffer(p, "kc", IR_KV_CACHE, IR_F32, 2, kvs, IR_HBM, NULL);
    int32_t vc = ir_add_buffer(p, "vc", IR_KV_CACHE, IR_F32, 2, kvs, IR_HBM, NULL);
    int32_t o = ir_add_buffer(p, "o", IR_IO_OUTPUT, IR_F32, 2, s1, IR_HBM, NULL);
    int32_t ck = ir_add_counter(p, "ak"), cv = ir_add_counter(p, "av"), ca = ir_add_counter(p, "at");
    ir_pexpr pos = {1, 0, 0, INT64_MAX};
    int32_t caches[2] = {kc, vc}, ctr[2] = {ck, cv};
    for (int i = 0; i < 2; i++) {
        ir_task *t = ir_add_task(p, IR_OP_KV_APPEND, ctr[i], "append");
        ir_task_add_input(t, k);
        ir_task_add_output(t, caches[i]);
        ir_task_set_pexpr(t, "pos", pos, 0);
        if (order < 0)
            ir_task_add_wait(t, ca, 1);
    }
    ir_task *t = ir_add_task(p, IR_OP_ATTENTION_TILE, ca, "attn");
    ir_task_add_input(t, q);
    ir_task_add_input(t, kc);
    ir_task_add_input(t, vc);
    ir_task_add_output(t, o);
    ir_task_set_int(t, "head_dim", 8);
    ir_task_set_int(t, "n_heads", 1);
    ir_task_set_int(t, "n_kv_heads", 1);
    ir_task_set_int(t, "kv_start", 0);
    ir_task_set_real(t, "scale", 0.35);
    ir_task_set_pexpr(t, "kv_len", (ir_pexpr){1, 1, 0, max_seq}, 0);
    if (order > 0) {
        ir_task_add_wait(t, ck, 1);
        ir_task_add_wait(t, cv, 1);
    }
    plan(p, 3, (int32_t[]){0, -1, 1, -1, 2, -1});
    return p;
}

Test(verify, proves_attention_after_kv_append_for_every_position)
{
    ir_program *p = kv(32, 32, 1);
    verify_result r = run_verify(p);
    cr_assert_eq(r.verdict, VERIFY_PROVED, "%s | %s | %s", r.ob[VERIFY_WELLFORMED].detail,
                 r.ob[VERIFY_RACE].detail, r.ob[VERIFY_COMPLETE].detail);
    verify_result_free(&r);
    ir_program_free(p);
}

Test(verify, refutes_kv_read_unordered_with_the_append)
{
    ir_program *p = kv(32, 32, 0);
    verify_result r = run_verify(p);
    cr_assert_eq(r.ob[VERIFY_RACE].status, VERIFY_REFUTED, "%s", r.ob[VERIFY_RACE].detail);
    cr_assert_str_eq(r.witness_kind, "kv_race");
    verify_result_free(&r);
    ir_program_free(p);
}

Test(verify, refutes_kv_read_before_the_append)
{
    ir_program *p = kv(32, 32, -1);
    verify_result r = run_verify(p);
    cr_assert_eq(r.ob[VERIFY_RACE].status, VERIFY_PROVED, "%s", r.ob[VERIFY_RACE].detail);
    cr_assert_eq(r.ob[VERIFY_COMPLETE].status, VERIFY_REFUTED, "%s", r.ob[VERIFY_COMPLETE].detail);
    cr_assert_str_eq(r.witness_kind, "kv_read_before_append");
    cJSON *w = witness(&r);
    cr_assert_eq(jint(w, "task"), 2);
    /* the element read is row pos itself */
    cr_assert_eq(cJSON_GetArrayItem(cJSON_GetObjectItemCaseSensitive(w, "element"), 0)->valuedouble,
                 jint(w, "pos"));
    cJSON_Delete(w);
    verify_result_free(&r);
    ir_program_free(p);
}

Test(verify, refutes_kv_slot_out_of_bounds_only_at_the_last_position)
{
    ir_program *p = kv(31, 32, 1); /* one row short: only pos 31 overflows */
    verify_result r = run_verify(p);
    cr_assert_eq(r.ob[VERIFY_WELLFORMED].status, VERIFY_REFUTED, "%s",
                 r.ob[VERIFY_WELLFORMED].detail);
    cr_assert_str_eq(r.witness_kind, "bounds");
    cJSON *w = witness(&r);
    cr_assert_eq(jint(w, "pos"), 31);
    cr_assert_eq(jint(w, "z3_pos"), 31);
    cr_assert_eq(jint(w, "size"), 31);
    cJSON_Delete(w);
    verify_result_free(&r);
    ir_program_free(p);
}

/* ---------------------------------------------------------------- residency and structure */

Test(verify, refutes_dynamic_smem_above_the_opt_in_cap)
{
    ir_program *p = two_tiles(10, 6);
    p->plan.dynamic_smem_bytes = 300000;
    verify_result r = run_verify(p);
    cr_assert_eq(r.ob[VERIFY_RESIDENT].status, VERIFY_REFUTED, "%s", r.ob[VERIFY_RESIDENT].detail);
    cr_assert_str_eq(r.witness_kind, "smem_cap");
    cJSON *w = witness(&r);
    cr_assert_eq(jint(w, "dynamic_smem_bytes"), 300000);
    cr_assert_eq(jint(w, "smem_optin_cap"), 232448);
    cJSON_Delete(w);
    verify_result_free(&r);
    ir_program_free(p);
}

Test(verify, refutes_grid_larger_than_co_residency)
{
    ir_program *p = two_tiles(10, 6);
    /* 1024 threads x 64 regs: one block per SM by registers; 133 blocks on 132 SMs. */
    int32_t lists[135];
    lists[0] = 0;
    lists[1] = -1;
    lists[2] = 1;
    for (int i = 3; i < 135; i++)
        lists[i] = -1;
    ir_plan_free(&p->plan);
    plan(p, 133, lists);
    p->plan.threads_per_block = 1024;
    verify_result r = run_verify(p);
    cr_assert_eq(r.ob[VERIFY_RESIDENT].status, VERIFY_REFUTED, "%s", r.ob[VERIFY_RESIDENT].detail);
    cr_assert_str_eq(r.witness_kind, "occupancy");
    cJSON *w = witness(&r);
    cr_assert_eq(jint(cJSON_GetObjectItemCaseSensitive(w, "blocks_per_sm"), "resident"), 1);
    cr_assert_eq(jint(w, "grid"), 133);
    cJSON_Delete(w);
    verify_result_free(&r);
    ir_program_free(p);
}

Test(verify, refutes_a_task_writing_a_weight)
{
    ir_program *p = two_tiles(10, 6);
    p->tasks[1].outputs[0] = 1; /* the weight */
    p->tasks[1].op = IR_OP_COPY;
    p->tasks[1].n_inputs = 1;
    verify_result r = run_verify(p);
    cr_assert_eq(r.ob[VERIFY_WELLFORMED].status, VERIFY_REFUTED);
    cr_assert_str_eq(r.witness_kind, "readonly_write");
    cJSON *w = witness(&r);
    cr_assert_eq(jint(w, "task"), 1);
    cJSON_Delete(w);
    verify_result_free(&r);
    ir_program_free(p);
}

Test(verify, program_without_target_is_malformed)
{
    ir_program *p = two_tiles(10, 6);
    p->has_target = false;
    verify_result r = run_verify(p);
    cr_assert_eq(r.verdict, VERIFY_MALFORMED);
    cr_assert_str_eq(r.witness_kind, "no_target");
    verify_result_free(&r);
    verify_opts o;
    verify_opts_default(&o);
    o.target = ir_target_builtin("a100");
    ir_error err = {0};
    cr_assert_eq(verify_program(p, &o, &r, &err), IR_OK);
    cr_assert_eq(r.verdict, VERIFY_PROVED, "%s", r.ob[VERIFY_RESIDENT].detail);
    verify_result_free(&r);
    ir_program_free(p);
}

Test(verify, planless_amk_program_uses_sm_queues_in_list_or_topo_order)
{
    /* Same sm, list order puts the consumer first: deadlock in list order, fine in topo. */
    ir_program *p = prog();
    int32_t y, x = io(p, &y, 4);
    int32_t h = act(p, "h", 4);
    int32_t c0 = ir_add_counter(p, "a"), c1 = ir_add_counter(p, "b");
    ir_task *t = op(p, c1, h, -1, y);
    ir_task_add_wait(t, c0, 1);
    t->sm = 0;
    op(p, c0, x, -1, h)->sm = 0;
    verify_result r = run_verify(p);
    cr_assert_eq(r.ob[VERIFY_DEADLOCK].status, VERIFY_REFUTED);
    verify_result_free(&r);
    verify_opts o;
    verify_opts_default(&o);
    o.queue_order = IR_ORDER_TOPO;
    ir_error err = {0};
    cr_assert_eq(verify_program(p, &o, &r, &err), IR_OK);
    cr_assert_eq(r.verdict, VERIFY_PROVED, "%s", r.ob[VERIFY_DEADLOCK].detail);
    verify_result_free(&r);
    ir_program_free(p);
}

/* AMK's FUSED recipe object, verified by its steps: y = silu(x) * x through a scratch step. */
static ir_program *fused_recipe(const char *steps)
{
    char text[2048];
    snprintf(text, sizeof text,
             "{\"ir_version\": \"0.2.0\", \"abi_version\": \"0.2\", \"meta\": {}, "
             "\"target\": null, \"buffers\": ["
             "{\"id\": 0, \"name\": \"x\", \"kind\": \"IO_INPUT\", \"dtype\": \"F32\", \"shape\": [1, 8], \"space\": \"HBM\", \"source\": null},"
             "{\"id\": 1, \"name\": \"y\", \"kind\": \"IO_OUTPUT\", \"dtype\": \"F32\", \"shape\": [1, 8], \"space\": \"HBM\", \"source\": null}],"
             "\"counters\": [{\"id\": 0, \"init\": 0, \"note\": \"\"}], \"tasks\": ["
             "{\"id\": 0, \"op\": \"FUSED\", \"inputs\": [0], \"outputs\": [1], \"out_counter\": 0, "
             "\"waits\": [], \"params\": {\"recipe\": {\"steps\": %s}}, \"sm\": null, "
             "\"est_bytes\": 0, \"est_flops\": 0, \"label\": \"fused\"}], \"pages\": null, "
             "\"config\": null}", steps);
    ir_program *p = NULL;
    ir_error err = {0};
    cr_assert_eq(ir_read_json(text, strlen(text), NULL, &p, &err), IR_OK, "%s: %s", err.where, err.why);
    p->has_target = true;
    p->target = *ir_target_builtin("h100");
    return p;
}

Test(verify, checks_amks_fused_recipe_object_step_by_step)
{
    ir_program *p = fused_recipe("[{\"op\": 9, \"args\": [{\"in\": 0}, {\"in\": 0}], \"out\": 0},"
                                 " {\"op\": 1, \"args\": [{\"s\": 0}], \"out\": \"final\"}]");
    verify_result r = run_verify(p);
    cr_assert_eq(r.verdict, VERIFY_PROVED, "%s", r.ob[VERIFY_WELLFORMED].detail);
    verify_result_free(&r);
    ir_program_free(p);
    const char *bad[][2] = {
        {"[{\"op\": 1, \"args\": [{\"s\": 3}], \"out\": \"final\"}]", "scratch written by an earlier step"},
        {"[{\"op\": 1, \"args\": [{\"in\": 1}], \"out\": \"final\"}]", "input in [0, 1)"},
        {"[{\"op\": 19, \"args\": [{\"in\": 0}], \"out\": \"final\"}]", "non-FUSED opcode"},
        {"[{\"op\": 1, \"args\": [{\"in\": 0}], \"out\": 0}]", "no step writes the final output"},
        {"[]", "non-empty list"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        p = fused_recipe(bad[i][0]);
        r = run_verify(p);
        cr_expect_eq(r.ob[VERIFY_WELLFORMED].status, VERIFY_REFUTED, "%s", bad[i][0]);
        cr_expect_str_eq(r.witness_kind, "params", "%s", bad[i][0]);
        cr_expect(strstr(r.ob[VERIFY_WELLFORMED].detail, bad[i][1]), "%s: %s", bad[i][0],
                  r.ob[VERIFY_WELLFORMED].detail);
        verify_result_free(&r);
        ir_program_free(p);
    }
}

/* The plan AMK's loader builds (tests/amk_corpus/loader/: its queues, printed by AMK's own
 * _assign_sms): identical queues for its least-loaded assignment (toy, 1B) and for a program
 * whose split-KV tasks carry SMs (the rest on SM 0); and the planned program is PROVED. */
Test(verify, amk_loader_plan_equals_amks_own_queues_and_is_proved)
{
    const char *names[] = {"toy_p5.json", "toy_split4_p40.json", "l1b_nt64_p100.json.gz"};
    for (size_t n = 0; n < sizeof names / sizeof names[0]; n++) {
        char path[256], golden[256];
        snprintf(path, sizeof path, "tests/amk_corpus/%s", names[n]);
        snprintf(golden, sizeof golden, "tests/amk_corpus/loader/%.*s.json",
                 (int)strcspn(names[n], "."), names[n]);
        ir_program *p = NULL;
        ir_error err = {0};
        cr_assert_eq(ir_read_file(path, NULL, &p, &err), IR_OK, "%s: %s", path, err.why);
        cr_assert_not(p->has_plan);
        cr_assert_eq(ir_amk_loader_plan(p, &p->target, &err), IR_OK, "%s", err.why);
        char *text = NULL;
        size_t len = 0;
        cr_assert_eq(ir_read_text_file(golden, (size_t)1 << 24, &text, &len, &err), IR_OK);
        cJSON *q = cJSON_Parse(text);
        free(text);
        cr_assert(cJSON_IsArray(q));
        cr_assert_eq(cJSON_GetArraySize(q), p->plan.grid, "%s", golden);
        int64_t k = 0;
        for (int qi = 0; qi < cJSON_GetArraySize(q); qi++) {
            const cJSON *list = cJSON_GetArrayItem(q, qi);
            cr_assert_eq(cJSON_GetArraySize(list), p->plan.queue_start[qi + 1] - p->plan.queue_start[qi],
                         "%s queue %d length", names[n], qi);
            for (const cJSON *e = list->child; e; e = e->next, k++)
                cr_assert_eq(e->valueint, p->plan.queue_tasks[k], "%s queue %d", names[n], qi);
        }
        cJSON_Delete(q);
        verify_result r = run_verify(p);
        cr_assert_eq(r.verdict, VERIFY_PROVED, "%s: %s / %s", names[n], r.ob[VERIFY_DEADLOCK].detail,
                     r.ob[VERIFY_RESIDENT].detail);
        verify_result_free(&r);
        ir_program_free(p);
    }
}

/* AMK's loader refuses a cycle (no topological order) and more than 256 threads. */
Test(verify, amk_loader_plan_refuses_a_cycle_and_wide_blocks)
{
    ir_program *p = prog();
    int32_t y, x = io(p, &y, 4);
    int32_t h = act(p, "h", 4);
    int32_t c0 = ir_add_counter(p, "a"), c1 = ir_add_counter(p, "b");
    ir_task_add_wait(op(p, c0, x, -1, h), c1, 1);
    ir_task_add_wait(op(p, c1, h, -1, y), c0, 1);
    ir_error err = {0};
    cr_assert_eq(ir_amk_loader_plan(p, &p->target, &err), IR_ERR_MALFORMED);
    cr_assert(strstr(err.why, "AMK's loader refuses"), "%s", err.why);
    p->tasks[0].n_waits = 0;
    p->has_config = true;
    ir_config_default(&p->config);
    p->config.threads_per_block = 512;
    cr_assert_eq(ir_amk_loader_plan(p, &p->target, &err), IR_ERR_UNSUPPORTED);
    cr_assert_str_eq(err.where, "config.threads_per_block");
    p->config.threads_per_block = 256;
    cr_assert_eq(ir_amk_loader_plan(p, &p->target, &err), IR_OK, "%s", err.why);
    cr_assert_eq(p->plan.grid, 132);
    cr_assert_eq(p->plan.threads_per_block, 256);
    verify_result r = run_verify(p);
    cr_assert_eq(r.verdict, VERIFY_PROVED, "%s", r.ob[VERIFY_DEADLOCK].detail);
    verify_result_free(&r);
    ir_program_free(p);
}

static void count_lines(void *arg, const char *line)
{
    (void)line;
    ++*(int *)arg;
}

/* A deadline that has passed leaves every undecided obligation UNKNOWN (exit 3), never PROVED;
 * progress is reported through the callback only, one line per obligation started. */
Test(verify, deadline_passed_gives_unknown_never_proved)
{
    lower_model m;
    ir_error err = {0};
    cr_assert_eq(lower_model_preset("toy", &m, &err), IR_OK);
    ir_config cfg;
    ir_config_default(&cfg);
    lower_opts lo;
    lower_opts_default(&lo);
    ir_program *p = NULL;
    cr_assert_eq(lower_program(&m, &cfg, ir_target_builtin("h100"), &lo, &p, &err), IR_OK);
    verify_opts o;
    verify_opts_default(&o);
    int lines = 0;
    o.progress = count_lines;
    o.progress_arg = &lines;
    verify_result r;
    cr_assert_eq(verify_program(p, &o, &r, &err), IR_OK);
    cr_assert_eq(r.verdict, VERIFY_PROVED, "no deadline: %s", r.ob[VERIFY_RACE].detail);
    cr_assert_eq(lines, VERIFY_N_OBLIGATIONS, "one progress line per obligation, got %d", lines);
    verify_result_free(&r);
    o.deadline_s = 1e-9;
    cr_assert_eq(verify_program(p, &o, &r, &err), IR_OK);
    cr_assert_eq(r.verdict, VERIFY_UNKNOWN);
    for (int i = 0; i < VERIFY_N_OBLIGATIONS; i++)
        cr_assert_neq(r.ob[i].status, VERIFY_PROVED, "%s", verify_obligation_name((verify_obligation)i));
    cr_assert(strstr(r.ob[VERIFY_WELLFORMED].detail, "deadline"), "%s", r.ob[VERIFY_WELLFORMED].detail);
    cr_assert_null(r.certificate_json);
    verify_result_free(&r);
    ir_config_free(&cfg);
    ir_program_free(p);
}

/* Llama-3.2-1B with one KV row per attention tile (67k tasks) is far beyond what the race
 * obligation decides quickly: the run ends at its deadline, UNKNOWN, instead of running on. */
Test(verify, the_67k_task_program_ends_at_its_deadline, .timeout = 120)
{
    lower_model m;
    ir_error err = {0};
    cr_assert_eq(lower_model_preset("llama-3.2-1b", &m, &err), IR_OK);
    const char *json = "{\"tiling\": {\"attention\": {\"kv_block\": 1}}}";
    ir_config cfg;
    cr_assert_eq(ir_config_read_json(json, strlen(json), true, &cfg, &err), IR_OK, "%s", err.why);
    lower_opts lo;
    lower_opts_default(&lo);
    ir_program *p = NULL;
    cr_assert_eq(lower_program(&m, &cfg, ir_target_builtin("h100"), &lo, &p, &err), IR_OK, "%s", err.why);
    cr_assert_gt(p->n_tasks, 60000);
    verify_opts o;
    verify_opts_default(&o);
    o.deadline_s = 4;
    verify_result r;
    cr_assert_eq(verify_program(p, &o, &r, &err), IR_OK);
    cr_assert_eq(r.verdict, VERIFY_UNKNOWN, "%s", r.ob[VERIFY_RACE].detail);
    cr_assert(strstr(r.ob[VERIFY_RACE].detail, "deadline") ||
              strstr(r.ob[VERIFY_DEADLOCK].detail, "deadline") ||
              strstr(r.ob[VERIFY_WELLFORMED].detail, "deadline"), "%s", r.ob[VERIFY_RACE].detail);
    /* the obligations started before the deadline each stop within a second or two of it
       (not asserted under sanitizers, which slow the linear parts tenfold) */
    if (!getenv("AMK_SANITIZED"))
        cr_assert_lt(r.seconds, o.deadline_s + 3, "ran %.1f s past a %.0f s deadline", r.seconds,
                     o.deadline_s);
    verify_result_free(&r);
    ir_config_free(&cfg);
    ir_program_free(p);
}

Test(verify, solver_resource_limit_gives_unknown_never_proved)
{
    lower_model m;
    ir_error err = {0};
    cr_assert_eq(lower_model_preset("smollm2-135m", &m, &err), IR_OK);
    ir_config c;
    ir_config_default(&c);
    lower_opts lo;
    lower_opts_default(&lo);
    lo.max_seq = 64;
    ir_program *p;
    cr_assert_eq(lower_program(&m, &c, ir_target_builtin("h100"), &lo, &p, &err), IR_OK);
    verify_opts o;
    verify_opts_default(&o);
    o.rlimit = 1;
    verify_result r;
    cr_assert_eq(verify_program(p, &o, &r, &err), IR_OK);
    cr_assert_eq(r.verdict, VERIFY_UNKNOWN, "verdict %s", verify_verdict_name(r.verdict));
    cr_assert_null(r.certificate_json);
    int unknown = 0;
    for (int i = 0; i < VERIFY_N_OBLIGATIONS; i++)
        unknown += r.ob[i].status == VERIFY_UNKNOWN;
    cr_assert_gt(unknown, 0);
    verify_result_free(&r);
    ir_program_free(p);
    ir_config_free(&c);
}

/* SARIF: every obligation not PROVED is an error (UNKNOWN is never safe); the witness kind and
 * the tasks at fault go on the obligation that found them, not on later ones. */
Test(verify, sarif_marks_unknown_as_error_and_tags_only_the_witness_owner)
{
    ir_program *p = clobber_chain(4, false);     /* race REFUTED; complete then skipped */
    const char *path = "/tmp/amk_test_sarif.json";
    ir_error err = {0};
    cr_assert_eq(ir_write_file(p, path, &err), IR_OK);
    char *out = NULL;
    const char *args[] = {"amk-verify", path, "--format", "sarif"};
    cr_assert_eq(run_captured(cmd_verify, args, 4, &out), 1);
    cJSON *j = cJSON_Parse(out);
    cr_assert_not_null(j, "%s", out);
    const cJSON *run = cJSON_GetArrayItem(cJSON_GetObjectItemCaseSensitive(j, "runs"), 0);
    const cJSON *res = cJSON_GetObjectItemCaseSensitive(run, "results");
    int tagged = 0;
    for (const cJSON *x = res->child; x; x = x->next) {
        cr_assert_str_eq(cJSON_GetObjectItemCaseSensitive(x, "level")->valuestring, "error");
        const cJSON *pr = cJSON_GetObjectItemCaseSensitive(x, "properties");
        if (pr) {
            tagged++;
            cr_assert_str_eq(cJSON_GetObjectItemCaseSensitive(x, "ruleId")->valuestring, "race");
            cr_assert_str_eq(cJSON_GetObjectItemCaseSensitive(pr, "witness_kind")->valuestring,
                             "page_clobber");
            const cJSON *loc = cJSON_GetArrayItem(cJSON_GetObjectItemCaseSensitive(x, "locations"), 0);
            const cJSON *ll = cJSON_GetObjectItemCaseSensitive(loc, "logicalLocations");
            cr_assert_eq(cJSON_GetArraySize(ll), 2);
            cr_assert_str_eq(cJSON_GetObjectItemCaseSensitive(cJSON_GetArrayItem(ll, 0), "name")->valuestring,
                             "task 2");
        }
    }
    cr_assert_eq(tagged, 1);
    cJSON_Delete(j);
    free(out);
    /* a deadline that passed: every result UNKNOWN, each an error */
    const char *args2[] = {"amk-verify", path, "--format", "sarif", "--deadline-s", "0.000000001"};
    cr_assert_eq(run_captured(cmd_verify, args2, 6, &out), 3);
    j = cJSON_Parse(out);
    run = cJSON_GetArrayItem(cJSON_GetObjectItemCaseSensitive(j, "runs"), 0);
    res = cJSON_GetObjectItemCaseSensitive(run, "results");
    cr_assert_gt(cJSON_GetArraySize(res), 0);
    for (const cJSON *x = res->child; x; x = x->next)
        cr_assert_str_eq(cJSON_GetObjectItemCaseSensitive(x, "level")->valuestring, "error");
    cJSON_Delete(j);
    free(out);
    unlink(path);
    ir_program_free(p);
}

/* Replace the first occurrence of from by to in text (a new string). */
static char *edited(const char *text, const char *from, const char *to)
{
    const char *at = strstr(text, from);
    cr_assert_not_null(at, "'%s' not in the certificate", from);
    size_t n = strlen(text) - strlen(from) + strlen(to) + 1, k = (size_t)(at - text);
    char *out = malloc(n);
    memcpy(out, text, k);
    strcpy(out + k, to);
    strcat(out, at + strlen(from));
    return out;
}

/* amk cert check refuses what it cannot vouch for: another format, another tool, limits
 * amk-verify never accepts, an unknown queue order, positions other than the program's; a text
 * that is not a certificate is unreadable (exit 2), one that does not hold invalid (exit 1). */
Test(verify, cert_check_refuses_edited_format_tool_limits_order_and_positions)
{
    ir_program *p = clobber_chain(4, true);
    verify_result r = run_verify(p);
    cr_assert_eq(r.verdict, VERIFY_PROVED);
    ir_error err = {0};
    const char *c = r.certificate_json;
    cr_assert_eq(verify_cert_check(c, strlen(c), p, &err), IR_OK, "%s", err.why);
    struct {
        const char *from, *to, *where;
        ir_status want;
    } cases[] = {
        {"\"format\": 1", "\"format\": 2", "format", IR_ERR_UNSUPPORTED},
        {"\"tool\": \"amk-verify", "\"tool\": \"other", "tool", IR_ERR_MALFORMED},
        {"\"timeout_ms\": 30000", "\"timeout_ms\": -5", "limits", IR_ERR_MALFORMED},
        {"\"queue_order\": \"list\"", "\"queue_order\": \"any\"", "queue_order", IR_ERR_MALFORMED},
        {"\"positions\": [0, 1]", "\"positions\": [0, 999999]", "positions", IR_ERR_MALFORMED},
        {"\"kind\": \"amk-verify-certificate\"", "\"kind\": \"other\"", "kind", IR_ERR_IO},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char *bad = edited(c, cases[i].from, cases[i].to);
        cr_expect_eq(verify_cert_check(bad, strlen(bad), p, &err), cases[i].want, "%s", cases[i].to);
        cr_expect_str_eq(err.where, cases[i].where, "%s: %s", cases[i].to, err.why);
        free(bad);
    }
    cr_assert_eq(verify_cert_check(c, strlen(c) / 2, p, &err), IR_ERR_IO, "a truncated certificate");
    /* the CLI: 0 valid, 1 invalid, 2 unreadable; --help anywhere is help */
    const char *prog = "/tmp/amk_test_certcli.json", *cert = "/tmp/amk_test_certcli.cert.json";
    cr_assert_eq(ir_write_file(p, prog, &err), IR_OK);
    FILE *f = fopen(cert, "w");
    fwrite(c, 1, strlen(c) / 2, f);
    fclose(f);
    const char *args[] = {"cert", "check", cert, prog};
    cr_assert_eq(run_captured(cmd_cert, args, 4, NULL), 2, "truncated: unreadable");
    char *bad = edited(c, "\"positions\": [0, 1]", "\"positions\": [0, 999999]");
    f = fopen(cert, "w");
    fputs(bad, f);
    fclose(f);
    free(bad);
    cr_assert_eq(run_captured(cmd_cert, args, 4, NULL), 1, "edited: invalid");
    const char *help[] = {"cert", "check", "--help"};
    cr_assert_eq(run_captured(cmd_cert, help, 3, NULL), 0);
    unlink(prog);
    unlink(cert);
    verify_result_free(&r);
    ir_program_free(p);
}

/* verify_cert_read gives back every field a run wrote, and verify_cert_write turns them into the
 * very bytes of the certificate: one module writes and reads the format. */
Test(verify, cert_read_then_write_gives_the_same_bytes_and_fields)
{
    ir_program *p = clobber_chain(4, true);
    verify_result r = run_verify(p);
    cr_assert_eq(r.verdict, VERIFY_PROVED);
    const char *text = r.certificate_json;
    verify_cert c;
    ir_error err = {0};
    cr_assert_eq(verify_cert_read(text, strlen(text), &c, &err), IR_OK, "%s", err.why);
    cr_expect_str_eq(c.program_sha256, r.program_sha256);
    cr_expect_str_eq(c.tool, VERIFY_CERT_TOOL AMK_TOOL_VERSION);
    cr_expect_str_eq(c.z3_version, r.z3_version);
    cr_expect_eq(c.timeout_ms, 30000);
    cr_expect_eq(c.rlimit, 50000000);
    cr_expect_str_eq(c.target, "h100");
    cr_expect_eq(c.queue_order, IR_ORDER_LIST);
    cr_expect_eq(c.pos_lo, 0);
    cr_expect_eq(c.pos_end, 1);
    for (int i = 0; i < VERIFY_N_OBLIGATIONS; i++) {
        cr_expect_eq(c.ob[i].status, VERIFY_PROVED);
        cr_expect_eq(c.ob[i].solver_queries, r.ob[i].solver_queries);
        cr_expect_str_eq(c.ob[i].detail, r.ob[i].detail);
    }
    cr_assert_eq(c.n_finish_order, 4);
    for (int i = 0; i < 4; i++)
        cr_expect_eq(c.finish_order[i], i, "one queue: the finish order is the queue");
    cr_expect(c.has_race_pairs);
    cr_expect_eq(c.race_pairs, 6);
    cr_expect(c.has_occupancy);
    cr_expect_eq(c.occupancy.grid, 1);
    cr_expect_eq(c.occupancy.blocks_per_sm, 8);
    cr_expect_eq(c.occupancy.smem_per_block, 1024);
    cr_expect_eq(c.occupancy.threads_per_block, 128);
    cr_expect_eq(c.occupancy.regs_per_thread, 64);
    char *again = NULL;
    cr_assert_eq(verify_cert_write(&c, &again, &err), IR_OK);
    cr_expect_str_eq(again, text);
    free(again);
    /* the format itself: what the fuzz corpus holds, a certificate of the toy preset */
    verify_cert_free(&c);
    char *golden = NULL;
    size_t len = 0;
    cr_assert_eq(ir_read_text_file("tests/fuzz/corpus/cert/toy_default.cert.json", 1 << 20,
                                   &golden, &len, &err), IR_OK, "%s", err.why);
    cr_assert_eq(verify_cert_read(golden, len, &c, &err), IR_OK, "%s", err.why);
    cr_expect_eq(c.n_finish_order, 37);
    cr_expect_eq(c.race_pairs, 170);
    cr_expect_eq(c.occupancy.regs_per_thread, 248);
    cr_expect_str_eq(c.z3_version, "4.8.12.0");
    cr_assert_eq(verify_cert_write(&c, &again, &err), IR_OK);
    cr_expect_eq(strlen(again) + 1, len, "the file is the certificate and a newline");
    cr_expect_eq(strncmp(again, golden, strlen(again)), 0, "%s\n%s", again, golden);
    free(again);
    free(golden);
    verify_cert_free(&c);
    verify_result_free(&r);
    ir_program_free(p);
}

/* What holds for any program fails in verify_cert_read; what binds a certificate to a program
 * (positions, hash, evidence) only in verify_cert_check. */
Test(verify, cert_read_refuses_what_no_program_can_fix_and_leaves_the_rest_to_check)
{
    ir_program *p = clobber_chain(4, true);
    verify_result r = run_verify(p);
    cr_assert_eq(r.verdict, VERIFY_PROVED);
    const char *text = r.certificate_json;
    struct {
        const char *from, *to, *where;
    } cases[] = {
        {"\"verdict\": \"PROVED\"", "\"verdict\": \"UNKNOWN\"", "verdict"},
        {"\"name\": \"race\", \"status\": \"PROVED\"", "\"name\": \"race\", \"status\": \"SKIPPED\"",
         "obligations"},
        {"\"name\": \"complete\"", "\"name\": \"completed\"", "obligations"},
    };
    verify_cert c;
    ir_error err = {0};
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char *bad = edited(text, cases[i].from, cases[i].to);
        cr_expect_eq(verify_cert_read(bad, strlen(bad), &c, &err), IR_ERR_MALFORMED, "%s",
                     cases[i].to);
        cr_expect_str_eq(err.where, cases[i].where, "%s: %s", cases[i].to, err.why);
        cr_expect_null(c.finish_order, "nothing is left to release after a refusal");
        free(bad);
    }
    const char *bound[][3] = {
        {"\"positions\": [0, 1]", "\"positions\": [0, 2]", "positions"},
        {"\"positions\": [0, 1]", "\"positions\": \"all\"", "positions"},
        {"\"finish_order\": [0, 1, 2, 3]", "\"finish_order\": [0, 1, 2]", "evidence.finish_order"},
        {"\"finish_order\": [0, 1, 2, 3]", "\"finish_order\": [0, 1, 2, 9]",
         "evidence.finish_order"},
        {"\"blocks_per_sm\": 8", "\"blocks_per_sm\": 0", "evidence.occupancy"},
        {"\"target\": \"h100\"", "\"target\": \"no-such-gpu\"", "evidence.occupancy"},
    };
    for (size_t i = 0; i < sizeof bound / sizeof bound[0]; i++) {
        char *bad = edited(text, bound[i][0], bound[i][1]);
        cr_expect_eq(verify_cert_read(bad, strlen(bad), &c, &err), IR_OK, "%s: %s", bound[i][1],
                     err.why);
        verify_cert_free(&c);
        cr_expect_eq(verify_cert_check(bad, strlen(bad), p, &err), IR_ERR_MALFORMED, "%s",
                     bound[i][1]);
        cr_expect_str_eq(err.where, bound[i][2], "%s: %s", bound[i][1], err.why);
        free(bad);
    }
    verify_result_free(&r);
    ir_program_free(p);
}

Test(verify, version_and_help_exit_0_on_stdout)
{
    char *out = NULL;
    const char *v[] = {"amk-verify", "--version"};
    cr_assert_eq(run_captured(cmd_verify, v, 2, &out), 0);
    cr_assert(strstr(out, "amk-verify " AMK_TOOL_VERSION), "%s", out);
    cr_assert(strstr(out, "Z3 "), "%s", out);
    free(out);
    const char *h[] = {"amk-verify", "--help"};
    cr_assert_eq(run_captured(cmd_verify, h, 2, &out), 0);
    cr_assert(strstr(out, "--deadline-s") && strstr(out, "--plan amk-loader"), "%s", out);
    free(out);
}

/* The text report summarizes a witness in a few lines instead of printing its JSON. */
Test(verify, text_output_summarizes_the_witness)
{
    ir_program *p = clobber_chain(4, false);
    const char *path = "/tmp/amk_test_text.json";
    ir_error err = {0};
    cr_assert_eq(ir_write_file(p, path, &err), IR_OK);
    char *out = NULL;
    const char *args[] = {"amk-verify", path};
    cr_assert_eq(run_captured(cmd_verify, args, 2, &out), 1);
    cr_assert(strstr(out, "witness: page_clobber, tasks [2,1]"), "%s", out);
    cr_assert(strstr(out, "--witness FILE"), "%s", out);
    cr_assert_null(strstr(out, "program_sha256"), "no raw witness JSON: %s", out);
    free(out);
    unlink(path);
    ir_program_free(p);
}
