/*
 * cert.c - re-checks a PROVED certificate against a program without Z3: the hash binds it to the
 * canonical program JSON, every obligation is recorded PROVED, and the evidence holds: the finish
 * order replays as an execution of the program's queues in which every wait is satisfied (a
 * linear-time check of deadlock freedom), and the recorded occupancy covers the grid.
 */
#include <cjson/cJSON.h>
#include <stdlib.h>
#include <string.h>

#include "verify/verify.h"

static const char *const OBLIGATIONS[] = {"wellformed", "deadlock", "race", "resident", "complete"};

static ir_status replay(const cJSON *order, const ir_program *p, ir_queue_order qo, ir_error *err)
{
    int32_t nq, *qs = NULL, *qt = NULL;
    ir_status s = ir_program_queues(p, qo, &nq, &qs, &qt, err);
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
    if (!cJSON_IsArray(order) || cJSON_GetArraySize(order) != nt) {
        s = ir_fail(err, IR_ERR_MALFORMED, "evidence.finish_order",
                    "must list all %d tasks", nt);
        goto out;
    }
    int k = 0;
    for (const cJSON *e = order->child; e; e = e->next, k++) {
        if (!cJSON_IsNumber(e) || e->valuedouble < 0 || e->valuedouble >= nt ||
            e->valuedouble != (double)(int32_t)e->valuedouble) {
            s = ir_fail(err, IR_ERR_MALFORMED, "evidence.finish_order", "entry %d is not a task id",
                        k);
            goto out;
        }
        int32_t t = (int32_t)e->valuedouble;
        if (done[t] || head[queue_of[t]] != qpos[t]) {
            s = ir_fail(err, IR_ERR_MALFORMED, "evidence.finish_order",
                        "task %d at step %d is not the head of its queue", t, k);
            goto out;
        }
        const ir_task *tk = &p->tasks[t];
        for (int w = 0; w < tk->n_waits; w++)
            if (count[tk->waits[w].counter] < tk->waits[w].threshold) {
                s = ir_fail(err, IR_ERR_MALFORMED, "evidence.finish_order",
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

/* An integer field in [lo, hi]. */
static bool int_in(const cJSON *o, const char *k, double lo, double hi)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, k);
    return cJSON_IsNumber(v) && v->valuedouble >= lo && v->valuedouble <= hi &&
           v->valuedouble == (double)(int64_t)v->valuedouble;
}

ir_status verify_cert_check(const char *cert_json, size_t len, const ir_program *p,
                            ir_error *err)
{
    cJSON *root = cJSON_ParseWithLength(cert_json ? cert_json : "", cert_json ? len : 0);
    if (!cJSON_IsObject(root)) {
        cJSON_Delete(root);
        return ir_fail(err, IR_ERR_IO, "certificate", "not a JSON object (truncated?)");
    }
    ir_status s = IR_OK;
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(root, "kind");
    if (!cJSON_IsString(v) || strcmp(v->valuestring, "amk-verify-certificate")) {
        s = ir_fail(err, IR_ERR_IO, "kind", "not an amk-verify certificate");
        goto out;
    }
    /* Refuse what this checker cannot vouch for: another format, another tool, limits or
       positions other than the ones a run of this program records. */
    if (!int_in(root, "format", 1, 1)) {
        s = ir_fail(err, IR_ERR_UNSUPPORTED, "format", "only certificate format 1 is checked");
        goto out;
    }
    v = cJSON_GetObjectItemCaseSensitive(root, "tool");
    if (!cJSON_IsString(v) || strncmp(v->valuestring, "amk-verify ", 11)) {
        s = ir_fail(err, IR_ERR_MALFORMED, "tool", "not written by amk-verify");
        goto out;
    }
    const cJSON *lim = cJSON_GetObjectItemCaseSensitive(root, "limits");
    if (!int_in(lim, "timeout_ms", 1, 3600000) || !int_in(lim, "rlimit", 1, 4000000000.0)) {
        s = ir_fail(err, IR_ERR_MALFORMED, "limits", "timeout_ms must be in [1, 3600000] and "
                    "rlimit in [1, 4000000000], as amk-verify accepts them");
        goto out;
    }
    v = cJSON_GetObjectItemCaseSensitive(root, "queue_order");
    if (!cJSON_IsString(v) || (strcmp(v->valuestring, "list") && strcmp(v->valuestring, "topo"))) {
        s = ir_fail(err, IR_ERR_MALFORMED, "queue_order", "must be \"list\" or \"topo\"");
        goto out;
    }
    int64_t pos = 0, lo, hi;
    if (!p->has_decode && (!ir_meta_int(p, "pos", &pos) || pos < 0 || pos > INT32_MAX))
        pos = 0;
    lo = p->has_decode ? 0 : pos;
    hi = p->has_decode ? p->decode.max_seq : pos + 1;
    const cJSON *ps = cJSON_GetObjectItemCaseSensitive(root, "positions");
    if (cJSON_GetArraySize(ps) != 2 || !cJSON_IsNumber(cJSON_GetArrayItem(ps, 0)) ||
        !cJSON_IsNumber(cJSON_GetArrayItem(ps, 1)) ||
        cJSON_GetArrayItem(ps, 0)->valuedouble != (double)lo ||
        cJSON_GetArrayItem(ps, 1)->valuedouble != (double)hi) {
        s = ir_fail(err, IR_ERR_MALFORMED, "positions", "must be [%lld, %lld], the positions "
                    "this program is proved over", (long long)lo, (long long)hi);
        goto out;
    }
    v = cJSON_GetObjectItemCaseSensitive(root, "verdict");
    if (!cJSON_IsString(v) || strcmp(v->valuestring, "PROVED")) {
        s = ir_fail(err, IR_ERR_MALFORMED, "verdict", "the certificate's verdict is not PROVED");
        goto out;
    }
    char hash[65];
    if ((s = ir_program_sha256(p, hash, err)) != IR_OK)
        goto out;
    v = cJSON_GetObjectItemCaseSensitive(root, "program_sha256");
    if (!cJSON_IsString(v) || strcmp(v->valuestring, hash)) {
        s = ir_fail(err, IR_ERR_MALFORMED, "program_sha256",
                    "certificate is for program %.16s..., this program is %.16s...",
                    cJSON_IsString(v) ? v->valuestring : "?", hash);
        goto out;
    }
    const cJSON *obs = cJSON_GetObjectItemCaseSensitive(root, "obligations");
    for (int i = 0; i < 5; i++) {
        bool found = false;
        const cJSON *o;
        cJSON_ArrayForEach(o, obs)
        {
            const cJSON *n = cJSON_GetObjectItemCaseSensitive(o, "name");
            const cJSON *st = cJSON_GetObjectItemCaseSensitive(o, "status");
            if (cJSON_IsString(n) && !strcmp(n->valuestring, OBLIGATIONS[i]))
                found = cJSON_IsString(st) && !strcmp(st->valuestring, "PROVED");
        }
        if (!found) {
            s = ir_fail(err, IR_ERR_MALFORMED, "obligations", "obligation '%s' is not recorded "
                        "as PROVED", OBLIGATIONS[i]);
            goto out;
        }
    }
    const cJSON *ev = cJSON_GetObjectItemCaseSensitive(root, "evidence");
    const cJSON *qo = cJSON_GetObjectItemCaseSensitive(root, "queue_order");
    ir_queue_order order = cJSON_IsString(qo) && !strcmp(qo->valuestring, "topo") ? IR_ORDER_TOPO
                                                                                  : IR_ORDER_LIST;
    if ((s = replay(cJSON_GetObjectItemCaseSensitive(ev, "finish_order"), p, order, err)) != IR_OK)
        goto out;
    const cJSON *occ = cJSON_GetObjectItemCaseSensitive(ev, "occupancy");
    const cJSON *tn = cJSON_GetObjectItemCaseSensitive(root, "target");
    const ir_target *t = p->has_target && cJSON_IsString(tn) && !strcmp(tn->valuestring, p->target.name)
                       ? &p->target : cJSON_IsString(tn) ? ir_target_builtin(tn->valuestring) : NULL;
    const cJSON *bps = cJSON_GetObjectItemCaseSensitive(occ, "blocks_per_sm");
    const cJSON *grid = cJSON_GetObjectItemCaseSensitive(occ, "grid");
    if (!t || !cJSON_IsNumber(bps) || !cJSON_IsNumber(grid)) {
        s = ir_fail(err, IR_ERR_MALFORMED, "evidence.occupancy", "missing occupancy evidence or "
                    "unknown target");
        goto out;
    }
    int64_t g = p->has_plan ? p->plan.grid : (int64_t)grid->valuedouble;
    if ((int64_t)grid->valuedouble != g || bps->valuedouble < 1 ||
        bps->valuedouble > (double)t->max_blocks_per_sm || bps->valuedouble * (double)t->num_sms < (double)g) {
        s = ir_fail(err, IR_ERR_MALFORMED, "evidence.occupancy", "recorded occupancy does not "
                    "cover the grid of %lld blocks on %s", (long long)g, t->name);
        goto out;
    }
out:
    cJSON_Delete(root);
    return s;
}
