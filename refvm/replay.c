/*
 * replay.c - the inputs of a replay and of a golden comparison, read from their JSON text: the
 * task order an amk-verify witness gives (refvm_opts.schedule), and a Hugging Face fixture's
 * golden.json (prompt, greedy tokens, logits per fed position). Text in, structs out, so a
 * fuzzer reaches every branch without files.
 */
#include <cjson/cJSON.h>
#include <float.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "refvm/refvm.h"

void refvm_replay_free(refvm_replay *r)
{
    free(r->order);
    memset(r, 0, sizeof *r);
}

/* The racing pair of a race witness, in the order that shows the race: the reader first when
 * both touch one buffer (it then reads before its producer), the writer first when they share a
 * page (the reader then finds its data overwritten). */
static ir_status race_pair(const cJSON *w, const cJSON *pair, const char *where, refvm_replay *r,
                           ir_error *err)
{
    int64_t a, b;
    if (!ir_json_int(cJSON_GetArrayItem(pair, 0), 0, INT32_MAX, &a) ||
        !ir_json_int(cJSON_GetArrayItem(pair, 1), 0, INT32_MAX, &b))
        return ir_fail(err, IR_ERR_MALFORMED, where, "then_start must hold two task ids");
    const cJSON *acc = cJSON_GetObjectItemCaseSensitive(w, "accesses");
    const cJSON *bufs = cJSON_GetObjectItemCaseSensitive(w, "buffers");
    const cJSON *a0 = cJSON_GetArrayItem(acc, 0), *b0 = cJSON_GetArrayItem(bufs, 0),
                *b1 = cJSON_GetArrayItem(bufs, 1);
    bool same_buffer = cJSON_IsNumber(b0) && cJSON_IsNumber(b1) && b0->valuedouble == b1->valuedouble;
    bool a_reads = cJSON_IsString(a0) && !strcmp(a0->valuestring, "read");
    bool a_first = same_buffer ? a_reads : !a_reads;
    r->order[r->n++] = (int32_t)(a_first ? a : b);
    r->order[r->n++] = (int32_t)(a_first ? b : a);
    return IR_OK;
}

/* The witness object's task order into r (see refvm.h). */
static ir_status read_order(const cJSON *w, const char *where, refvm_replay *r, ir_error *err)
{
    const cJSON *kind = cJSON_GetObjectItemCaseSensitive(w, "kind");
    if (!cJSON_IsString(kind))
        return ir_fail(err, IR_ERR_MALFORMED, where, "not a witness object (no \"kind\")");
    const cJSON *h = cJSON_GetObjectItemCaseSensitive(w, "program_sha256");
    if (cJSON_IsString(h))
        snprintf(r->program_sha256, sizeof r->program_sha256, "%s", h->valuestring);
    const cJSON *pre = cJSON_GetObjectItemCaseSensitive(w, "prefix");
    const cJSON *il = cJSON_GetObjectItemCaseSensitive(w, "interleaving");
    const cJSON *pair = NULL;
    if (cJSON_IsObject(il)) {
        pre = cJSON_GetObjectItemCaseSensitive(il, "run");
        pair = cJSON_GetObjectItemCaseSensitive(il, "then_start");
    }
    const cJSON *p = cJSON_GetObjectItemCaseSensitive(w, "pos");
    const cJSON *ov = cJSON_GetObjectItemCaseSensitive(w, "overlap");
    if (!cJSON_IsNumber(p) && cJSON_IsObject(ov))
        p = cJSON_GetObjectItemCaseSensitive(ov, "at_pos");
    if (p && !ir_json_int(p, 0, INT32_MAX, &r->pos))
        return ir_fail(err, IR_ERR_MALFORMED, where, "pos must be an integer in [0, 2^31)");
    if (!cJSON_IsArray(pre))
        return ir_fail(err, IR_ERR_UNSUPPORTED, where, "a \"%.40s\" witness has no task order to "
                       "replay", kind->valuestring);
    int np = cJSON_GetArraySize(pre), npair = cJSON_IsArray(pair) ? cJSON_GetArraySize(pair) : 0;
    r->order = malloc(sizeof *r->order * ((size_t)np + (size_t)npair + 1));
    if (!r->order)
        return ir_fail(err, IR_ERR_NOMEM, where, "out of memory");
    int i = 0;
    for (const cJSON *e = pre->child; e; e = e->next, i++) {   /* not GetArrayItem: quadratic */
        int64_t v;
        if (!ir_json_int(e, 0, INT32_MAX, &v))
            return ir_fail(err, IR_ERR_MALFORMED, where, "task order entry %d is not a task id", i);
        r->order[r->n++] = (int32_t)v;
    }
    return npair == 2 ? race_pair(w, pair, where, r, err) : IR_OK;
}

ir_status refvm_replay_from_witness(const char *text, size_t len, const char *where,
                                    refvm_replay *r, ir_error *err)
{
    memset(r, 0, sizeof *r);
    cJSON *root = cJSON_ParseWithLength(text, len);
    const cJSON *w = root;
    if (cJSON_IsObject(cJSON_GetObjectItemCaseSensitive(root, "witness")))
        w = cJSON_GetObjectItemCaseSensitive(root, "witness");
    ir_status s = root ? read_order(w, where, r, err)
                       : ir_fail(err, IR_ERR_MALFORMED, where, "not JSON");
    cJSON_Delete(root);
    if (s != IR_OK)
        refvm_replay_free(r);
    return s;
}

/* ---------------------------------------------------------------- golden.json */

void refvm_golden_free(refvm_golden *g)
{
    free(g->prompt);
    free(g->tokens);
    free(g->logits);
    memset(g, 0, sizeof *g);
}

static ir_status golden_ids(const cJSON *arr, const char *name, int32_t *out, const char *where,
                            ir_error *err)
{
    int i = 0;
    for (const cJSON *e = arr->child; e; e = e->next, i++) {
        int64_t v;
        if (!ir_json_int(e, 0, INT32_MAX, &v))
            return ir_fail(err, IR_ERR_MALFORMED, where, "%s[%d] is not a token id in [0, 2^31)",
                           name, i);
        out[i] = (int32_t)v;
    }
    return IR_OK;
}

static ir_status golden_rows(const cJSON *lg, refvm_golden *g, const char *where, ir_error *err)
{
    int r = 0;
    for (const cJSON *row = lg->child; row; row = row->next, r++) {
        if (!cJSON_IsArray(row) || cJSON_GetArraySize(row) != g->width)
            return ir_fail(err, IR_ERR_MALFORMED, where, "logits row %d has the wrong length", r);
        int64_t i = 0;
        for (const cJSON *v = row->child; v; v = v->next, i++) {
            if (!cJSON_IsNumber(v) || !(fabs(v->valuedouble) <= FLT_MAX))
                return ir_fail(err, IR_ERR_MALFORMED, where, "logits[%d][%lld] is not a finite "
                               "float", r, (long long)i);
            g->logits[(int64_t)r * g->width + i] = (float)v->valuedouble;
        }
    }
    return IR_OK;
}

ir_status refvm_golden_read(const char *text, size_t len, const char *where, refvm_golden *g,
                            ir_error *err)
{
    memset(g, 0, sizeof *g);
    cJSON *root = cJSON_ParseWithLength(text, len);
    const cJSON *pr = cJSON_GetObjectItemCaseSensitive(root, "prompt");
    const cJSON *tk = cJSON_GetObjectItemCaseSensitive(root, "tokens");
    const cJSON *lg = cJSON_GetObjectItemCaseSensitive(root, "logits");
    ir_status s = IR_OK;
    if (!cJSON_IsArray(pr) || !cJSON_IsArray(tk) || !cJSON_IsArray(lg) || !cJSON_GetArraySize(lg) ||
        !cJSON_IsArray(cJSON_GetArrayItem(lg, 0))) {
        s = ir_fail(err, IR_ERR_MALFORMED, where, "needs arrays prompt, tokens and logits rows");
        goto done;
    }
    g->n_prompt = cJSON_GetArraySize(pr);
    g->n_tokens = cJSON_GetArraySize(tk);
    g->n_rows = cJSON_GetArraySize(lg);
    g->width = cJSON_GetArraySize(cJSON_GetArrayItem(lg, 0));
    g->prompt = malloc(sizeof *g->prompt * ((size_t)g->n_prompt + 1));
    g->tokens = malloc(sizeof *g->tokens * ((size_t)g->n_tokens + 1));
    g->logits = malloc(sizeof *g->logits * ((size_t)g->n_rows * (size_t)g->width + 1));
    if (!g->prompt || !g->tokens || !g->logits)
        s = ir_fail(err, IR_ERR_NOMEM, where, "out of memory");
    if (s == IR_OK)
        s = golden_ids(pr, "prompt", g->prompt, where, err);
    if (s == IR_OK)
        s = golden_ids(tk, "tokens", g->tokens, where, err);
    if (s == IR_OK)
        s = golden_rows(lg, g, where, err);
done:
    cJSON_Delete(root);
    if (s != IR_OK)
        refvm_golden_free(g);
    return s;
}
