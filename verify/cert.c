/*
 * cert.c - the certificate of a PROVED program (format 1, SPEC.md 12.4): its one writer, its one
 * reader, and the check of a certificate against a program without Z3: the hash binds it to the
 * canonical program JSON, every obligation is recorded PROVED, and the evidence holds: the finish
 * order replays as an execution of the program's queues in which every wait is satisfied (a
 * linear-time check of deadlock freedom), and the recorded occupancy covers the grid.
 */
#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "verify/verify_internal.h"

/* The format: its kind, its number and its keys, each named once for the writer and the reader. */
#define CERT_KIND "amk-verify-certificate"
#define CERT_FORMAT 1
#define K_KIND "kind"
#define K_FORMAT "format"
#define K_VERDICT "verdict"
#define K_SHA256 "program_sha256"
#define K_TOOL "tool"
#define K_Z3_VERSION "z3_version"
#define K_LIMITS "limits"
#define K_TIMEOUT_MS "timeout_ms"
#define K_RLIMIT "rlimit"
#define K_TARGET "target"
#define K_QUEUE_ORDER "queue_order"
#define K_POSITIONS "positions"
#define K_OBLIGATIONS "obligations"
#define K_NAME "name"
#define K_STATUS "status"
#define K_SECONDS "seconds"
#define K_SOLVER_QUERIES "solver_queries"
#define K_DETAIL "detail"
#define K_EVIDENCE "evidence"
#define K_FINISH_ORDER "finish_order"
#define K_RACE_PAIRS "race_pairs"
#define K_OCCUPANCY "occupancy"
#define N_OCCUPANCY 6
static const char *const OCCUPANCY_KEYS[N_OCCUPANCY] = {
    "blocks_per_sm", "grid", "threads_per_block", "regs_per_thread", "smem_per_block",
    "smem_page_peak"};

/* The limits amk-verify accepts; a certificate with others does not come from it. */
#define MAX_TIMEOUT_MS 3600000.0
#define MAX_RLIMIT 4000000000.0
/* Integers a JSON number holds exactly. */
#define MAX_EXACT 9007199254740992.0

static const char *queue_order_name(ir_queue_order o) { return o == IR_ORDER_TOPO ? "topo" : "list"; }

/* The occupancy fields in the order of OCCUPANCY_KEYS. */
static void occupancy_fields(verify_occupancy *o, int64_t *f[N_OCCUPANCY])
{
    f[0] = &o->blocks_per_sm;
    f[1] = &o->grid;
    f[2] = &o->threads_per_block;
    f[3] = &o->regs_per_thread;
    f[4] = &o->smem_per_block;
    f[5] = &o->smem_page_peak;
}

/* ---------------------------------------------------------------- writer */

/* `"k": `, after a comma unless it is the object's first key. */
static void key(vbuf *b, bool first, const char *k)
{
    vb_fmt(b, first ? "\"%s\": " : ", \"%s\": ", k);
}

static void write_obligations(vbuf *b, const verify_cert *c)
{
    key(b, false, K_OBLIGATIONS);
    vb_put(b, "[");
    for (int i = 0; i < VERIFY_N_OBLIGATIONS; i++) {
        const verify_ob_result *o = &c->ob[i];
        vb_put(b, i ? ", {" : "{");
        key(b, true, K_NAME);
        vb_qstr(b, verify_obligation_name((verify_obligation)i));
        key(b, false, K_STATUS);
        vb_qstr(b, verify_verdict_name(o->status));
        key(b, false, K_SECONDS);
        vb_fmt(b, "%.6f", o->seconds);
        key(b, false, K_SOLVER_QUERIES);
        vb_fmt(b, "%lld", (long long)o->solver_queries);
        key(b, false, K_DETAIL);
        vb_qstr(b, o->detail);
        vb_put(b, "}");
    }
    vb_put(b, "]");
}

static void write_evidence(vbuf *b, const verify_cert *c)
{
    key(b, false, K_EVIDENCE);
    vb_put(b, "{");
    key(b, true, K_FINISH_ORDER);
    vb_ids(b, c->finish_order, c->n_finish_order);
    if (c->has_race_pairs) {
        key(b, false, K_RACE_PAIRS);
        vb_fmt(b, "%lld", (long long)c->race_pairs);
    }
    if (c->has_occupancy) {
        verify_occupancy occ = c->occupancy;
        int64_t *f[N_OCCUPANCY];
        occupancy_fields(&occ, f);
        key(b, false, K_OCCUPANCY);
        vb_put(b, "{");
        for (int i = 0; i < N_OCCUPANCY; i++) {
            key(b, i == 0, OCCUPANCY_KEYS[i]);
            vb_fmt(b, "%lld", (long long)*f[i]);
        }
        vb_put(b, "}");
    }
    vb_put(b, "}");
}

ir_status verify_cert_write(const verify_cert *c, char **json, ir_error *err)
{
    vbuf b = {0};
    *json = NULL;
    vb_put(&b, "{");
    key(&b, true, K_KIND);
    vb_qstr(&b, CERT_KIND);
    key(&b, false, K_FORMAT);
    vb_fmt(&b, "%d", CERT_FORMAT);
    key(&b, false, K_VERDICT);
    vb_qstr(&b, verify_verdict_name(VERIFY_PROVED));
    key(&b, false, K_SHA256);
    vb_qstr(&b, c->program_sha256);
    key(&b, false, K_TOOL);
    vb_qstr(&b, c->tool);
    key(&b, false, K_Z3_VERSION);
    vb_qstr(&b, c->z3_version);
    key(&b, false, K_LIMITS);
    vb_put(&b, "{");
    key(&b, true, K_TIMEOUT_MS);
    vb_fmt(&b, "%lld", (long long)c->timeout_ms);
    key(&b, false, K_RLIMIT);
    vb_fmt(&b, "%lld}", (long long)c->rlimit);
    key(&b, false, K_TARGET);
    vb_qstr(&b, c->target);
    key(&b, false, K_QUEUE_ORDER);
    vb_qstr(&b, queue_order_name(c->queue_order));
    key(&b, false, K_POSITIONS);
    vb_fmt(&b, "[%lld, %lld]", (long long)c->pos_lo, (long long)c->pos_end);
    write_obligations(&b, c);
    write_evidence(&b, c);
    vb_put(&b, "}");
    if (b.oom) {
        free(b.s);
        return ir_fail(err, IR_ERR_NOMEM, "", "out of memory");
    }
    *json = b.s;
    return IR_OK;
}

/* ---------------------------------------------------------------- reader */

/* v as an integer in [lo, hi] (bounds within MAX_EXACT). */
static bool as_int(const cJSON *v, double lo, double hi, int64_t *out)
{
    if (!cJSON_IsNumber(v) || !(v->valuedouble >= lo && v->valuedouble <= hi) ||
        v->valuedouble != (double)(int64_t)v->valuedouble)
        return false;
    *out = (int64_t)v->valuedouble;
    return true;
}

/* The integer field k of o in [lo, hi] into *out. */
static bool int_in(const cJSON *o, const char *k, double lo, double hi, int64_t *out)
{
    return as_int(cJSON_GetObjectItemCaseSensitive(o, k), lo, hi, out);
}

static bool is_str(const cJSON *o, const char *k, const char *want)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, k);
    return cJSON_IsString(v) && !strcmp(v->valuestring, want);
}

/* The string field k of o into out (n bytes) when it fits; "" otherwise. */
static void get_str(const cJSON *o, const char *k, char *out, size_t n)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, k);
    out[0] = 0;
    if (cJSON_IsString(v) && strlen(v->valuestring) < n)
        memcpy(out, v->valuestring, strlen(v->valuestring) + 1);
}

/* Kind, format, tool, limits, queue order, positions, verdict, hash, versions and target. */
static ir_status read_header(const cJSON *root, verify_cert *c, ir_error *err)
{
    int64_t format;
    if (!is_str(root, K_KIND, CERT_KIND))
        return ir_fail(err, IR_ERR_IO, K_KIND, "not an amk-verify certificate");
    /* Refuse what no checker here can vouch for: another format, another tool, limits or a
       queue order amk-verify does not accept. */
    if (!int_in(root, K_FORMAT, CERT_FORMAT, CERT_FORMAT, &format))
        return ir_fail(err, IR_ERR_UNSUPPORTED, K_FORMAT, "only certificate format %d is checked",
                       CERT_FORMAT);
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(root, K_TOOL);
    if (!cJSON_IsString(v) || strncmp(v->valuestring, VERIFY_CERT_TOOL, strlen(VERIFY_CERT_TOOL)))
        return ir_fail(err, IR_ERR_MALFORMED, K_TOOL, "not written by amk-verify");
    snprintf(c->tool, sizeof c->tool, "%s", v->valuestring);
    const cJSON *lim = cJSON_GetObjectItemCaseSensitive(root, K_LIMITS);
    if (!int_in(lim, K_TIMEOUT_MS, 1, MAX_TIMEOUT_MS, &c->timeout_ms) ||
        !int_in(lim, K_RLIMIT, 1, MAX_RLIMIT, &c->rlimit))
        return ir_fail(err, IR_ERR_MALFORMED, K_LIMITS, "timeout_ms must be in [1, %.0f] and "
                       "rlimit in [1, %.0f], as amk-verify accepts them", MAX_TIMEOUT_MS,
                       MAX_RLIMIT);
    if (is_str(root, K_QUEUE_ORDER, queue_order_name(IR_ORDER_TOPO)))
        c->queue_order = IR_ORDER_TOPO;
    else if (is_str(root, K_QUEUE_ORDER, queue_order_name(IR_ORDER_LIST)))
        c->queue_order = IR_ORDER_LIST;
    else
        return ir_fail(err, IR_ERR_MALFORMED, K_QUEUE_ORDER, "must be \"list\" or \"topo\"");
    const cJSON *ps = cJSON_GetObjectItemCaseSensitive(root, K_POSITIONS);
    if (cJSON_GetArraySize(ps) != 2 ||
        !as_int(cJSON_GetArrayItem(ps, 0), -MAX_EXACT, MAX_EXACT, &c->pos_lo) ||
        !as_int(cJSON_GetArrayItem(ps, 1), -MAX_EXACT, MAX_EXACT, &c->pos_end))
        c->pos_lo = c->pos_end = -1;
    if (!is_str(root, K_VERDICT, verify_verdict_name(VERIFY_PROVED)))
        return ir_fail(err, IR_ERR_MALFORMED, K_VERDICT, "the certificate's verdict is not PROVED");
    get_str(root, K_SHA256, c->program_sha256, sizeof c->program_sha256);
    get_str(root, K_Z3_VERSION, c->z3_version, sizeof c->z3_version);
    get_str(root, K_TARGET, c->target, sizeof c->target);
    return IR_OK;
}

/* Every obligation recorded PROVED (by the last entry that names it). */
static ir_status read_obligations(const cJSON *root, verify_cert *c, ir_error *err)
{
    const cJSON *obs = cJSON_GetObjectItemCaseSensitive(root, K_OBLIGATIONS);
    for (int i = 0; i < VERIFY_N_OBLIGATIONS; i++) {
        const char *name = verify_obligation_name((verify_obligation)i);
        const cJSON *o, *last = NULL;
        cJSON_ArrayForEach(o, obs)
        {
            if (is_str(o, K_NAME, name))
                last = o;
        }
        if (!last || !is_str(last, K_STATUS, verify_verdict_name(VERIFY_PROVED)))
            return ir_fail(err, IR_ERR_MALFORMED, K_OBLIGATIONS, "obligation '%s' is not "
                           "recorded as PROVED", name);
        verify_ob_result *r = &c->ob[i];
        r->status = VERIFY_PROVED;
        const cJSON *sec = cJSON_GetObjectItemCaseSensitive(last, K_SECONDS);
        r->seconds = cJSON_IsNumber(sec) ? sec->valuedouble : 0;
        if (!int_in(last, K_SOLVER_QUERIES, 0, MAX_EXACT, &r->solver_queries))
            r->solver_queries = 0;
        const cJSON *d = cJSON_GetObjectItemCaseSensitive(last, K_DETAIL);
        if (cJSON_IsString(d))
            snprintf(r->detail, sizeof r->detail, "%s", d->valuestring);
    }
    return IR_OK;
}

/* Finish order, race pairs and occupancy, as far as they are there (checked against a program
 * by verify_cert_check). */
static ir_status read_evidence(const cJSON *root, verify_cert *c, ir_error *err)
{
    const cJSON *ev = cJSON_GetObjectItemCaseSensitive(root, K_EVIDENCE);
    const cJSON *fo = cJSON_GetObjectItemCaseSensitive(ev, K_FINISH_ORDER);
    c->n_finish_order = -1;
    if (cJSON_IsArray(fo)) {
        c->n_finish_order = cJSON_GetArraySize(fo);
        c->finish_order = malloc(((size_t)c->n_finish_order + 1) * sizeof *c->finish_order);
        if (!c->finish_order)
            return ir_fail(err, IR_ERR_NOMEM, "", "out of memory");
        int64_t k = 0, t;
        for (const cJSON *e = fo->child; e; e = e->next, k++)
            c->finish_order[k] = as_int(e, 0, INT32_MAX, &t) ? (int32_t)t : -1;
    }
    c->has_race_pairs = int_in(ev, K_RACE_PAIRS, 0, MAX_EXACT, &c->race_pairs);
    const cJSON *occ = cJSON_GetObjectItemCaseSensitive(ev, K_OCCUPANCY);
    int64_t *f[N_OCCUPANCY];
    occupancy_fields(&c->occupancy, f);
    c->has_occupancy = int_in(occ, OCCUPANCY_KEYS[0], -MAX_EXACT, MAX_EXACT, f[0]) &&
                       int_in(occ, OCCUPANCY_KEYS[1], -MAX_EXACT, MAX_EXACT, f[1]);
    for (int i = 2; i < N_OCCUPANCY; i++)
        if (!int_in(occ, OCCUPANCY_KEYS[i], -MAX_EXACT, MAX_EXACT, f[i]))
            *f[i] = 0;
    return IR_OK;
}

ir_status verify_cert_read(const char *json, size_t len, verify_cert *c, ir_error *err)
{
    memset(c, 0, sizeof *c);
    cJSON *root = cJSON_ParseWithLength(json ? json : "", json ? len : 0);
    if (!cJSON_IsObject(root)) {
        cJSON_Delete(root);
        return ir_fail(err, IR_ERR_IO, "certificate", "not a JSON object (truncated?)");
    }
    ir_status s = read_header(root, c, err);
    if (s == IR_OK)
        s = read_obligations(root, c, err);
    if (s == IR_OK)
        s = read_evidence(root, c, err);
    cJSON_Delete(root);
    if (s != IR_OK)
        verify_cert_free(c);
    return s;
}

void verify_cert_free(verify_cert *c)
{
    if (!c)
        return;
    free(c->finish_order);
    c->finish_order = NULL;
    c->n_finish_order = 0;
}

/* ---------------------------------------------------------------- check against a program */

/* The positions a run on p records: [0, max_seq) with the decode loop, else [pos, pos + 1). */
static ir_status check_positions(const verify_cert *c, const ir_program *p, ir_error *err)
{
    int64_t pos = 0, lo, hi;
    if (!p->has_decode && (!ir_meta_int(p, "pos", &pos) || pos < 0 || pos > INT32_MAX))
        pos = 0;
    lo = p->has_decode ? 0 : pos;
    hi = p->has_decode ? p->decode.max_seq : pos + 1;
    if (c->pos_lo != lo || c->pos_end != hi)
        return ir_fail(err, IR_ERR_MALFORMED, K_POSITIONS, "must be [%lld, %lld], the positions "
                       "this program is proved over", (long long)lo, (long long)hi);
    return IR_OK;
}

static ir_status check_hash(const verify_cert *c, const ir_program *p, ir_error *err)
{
    char hash[65];
    ir_status s = ir_program_sha256(p, hash, err);
    if (s != IR_OK)
        return s;
    if (strcmp(c->program_sha256, hash))
        return ir_fail(err, IR_ERR_MALFORMED, K_SHA256,
                       "certificate is for program %.16s..., this program is %.16s...",
                       c->program_sha256[0] ? c->program_sha256 : "?", hash);
    return IR_OK;
}

/* The finish order as an execution of p's queues in the certificate's queue order: each task
 * the head of its queue when it runs, with every wait satisfied. */
static ir_status replay(const verify_cert *c, const ir_program *p, ir_error *err)
{
    int32_t nq, *qs = NULL, *qt = NULL;
    ir_status s = ir_program_queues(p, c->queue_order, &nq, &qs, &qt, err);
    if (s != IR_OK)
        return s;
    int32_t nt = p->n_tasks;
    int32_t *queue_of = malloc(((size_t)nt + 1) * sizeof *queue_of);
    int32_t *qpos = malloc(((size_t)nt + 1) * sizeof *qpos);
    int32_t *head = calloc((size_t)nq + 1, sizeof *head);
    int64_t *count = calloc((size_t)p->n_counters + 1, sizeof *count);
    uint8_t *done = calloc((size_t)nt + 1, 1);
    if (!queue_of || !qpos || !head || !count || !done) {
        s = ir_fail(err, IR_ERR_NOMEM, "", "out of memory");
        goto out;
    }
    for (int32_t q = 0; q < nq; q++)
        for (int32_t i = qs[q]; i < qs[q + 1]; i++) {
            queue_of[qt[i]] = q;
            qpos[qt[i]] = i - qs[q];
        }
    if (c->n_finish_order != nt) {
        s = ir_fail(err, IR_ERR_MALFORMED, K_EVIDENCE "." K_FINISH_ORDER,
                    "must list all %d tasks", nt);
        goto out;
    }
    for (int32_t k = 0; k < nt; k++) {
        int32_t t = c->finish_order[k];
        if (t < 0 || t >= nt) {
            s = ir_fail(err, IR_ERR_MALFORMED, K_EVIDENCE "." K_FINISH_ORDER,
                        "entry %d is not a task id", k);
            goto out;
        }
        if (done[t] || head[queue_of[t]] != qpos[t]) {
            s = ir_fail(err, IR_ERR_MALFORMED, K_EVIDENCE "." K_FINISH_ORDER,
                        "task %d at step %d is not the head of its queue", t, k);
            goto out;
        }
        const ir_task *tk = &p->tasks[t];
        for (int w = 0; w < tk->n_waits; w++)
            if (count[tk->waits[w].counter] < tk->waits[w].threshold) {
                s = ir_fail(err, IR_ERR_MALFORMED, K_EVIDENCE "." K_FINISH_ORDER,
                            "task %d at step %d runs before counter %d reaches %lld", t, k,
                            tk->waits[w].counter, (long long)tk->waits[w].threshold);
                goto out;
            }
        done[t] = 1;
        head[queue_of[t]]++;
        count[tk->out_counter]++;
    }
out:
    free(qs);
    free(qt);
    free(queue_of);
    free(qpos);
    free(head);
    free(count);
    free(done);
    return s;
}

/* The recorded blocks per SM fit the named target and hold the whole grid. */
static ir_status check_occupancy(const verify_cert *c, const ir_program *p, ir_error *err)
{
    const ir_target *t = !c->target[0] ? NULL
                       : p->has_target && !strcmp(c->target, p->target.name) ? &p->target
                       : ir_target_builtin(c->target);
    if (!t || !c->has_occupancy)
        return ir_fail(err, IR_ERR_MALFORMED, K_EVIDENCE "." K_OCCUPANCY, "missing occupancy "
                       "evidence or unknown target");
    const verify_occupancy *o = &c->occupancy;
    int64_t g = p->has_plan ? p->plan.grid : o->grid;
    if (o->grid != g || o->blocks_per_sm < 1 || o->blocks_per_sm > t->max_blocks_per_sm ||
        o->blocks_per_sm * t->num_sms < g)
        return ir_fail(err, IR_ERR_MALFORMED, K_EVIDENCE "." K_OCCUPANCY, "recorded occupancy "
                       "does not cover the grid of %lld blocks on %s", (long long)g, t->name);
    return IR_OK;
}

ir_status verify_cert_check(const char *cert_json, size_t len, const ir_program *p,
                            ir_error *err)
{
    verify_cert c;
    ir_status s = verify_cert_read(cert_json, len, &c, err);
    if (s != IR_OK)
        return s;
    if ((s = check_positions(&c, p, err)) == IR_OK && (s = check_hash(&c, p, err)) == IR_OK &&
        (s = replay(&c, p, err)) == IR_OK)
        s = check_occupancy(&c, p, err);
    verify_cert_free(&c);
    return s;
}
