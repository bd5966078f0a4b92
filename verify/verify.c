/*
 * verify.c - the amk-verify driver: builds the verification context (queues, graph, footprints),
 * runs the five obligations in order, combines their verdicts, and writes the certificate of a
 * PROVED program. The helpers the obligations share are in vctx.c and vz3.c.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "verify/verify_internal.h"

/* ---------------------------------------------------------------- names and defaults */

const char *verify_verdict_name(verify_verdict v)
{
    switch (v) {
    case VERIFY_PROVED: return "PROVED";
    case VERIFY_REFUTED: return "REFUTED";
    case VERIFY_MALFORMED: return "MALFORMED";
    case VERIFY_UNKNOWN: return "UNKNOWN";
    case VERIFY_SKIPPED: return "SKIPPED";
    }
    return "?";
}

const char *verify_obligation_name(verify_obligation ob)
{
    static const char *const N[] = {"wellformed", "deadlock", "race", "resident", "complete"};
    return (unsigned)ob < VERIFY_N_OBLIGATIONS ? N[ob] : "?";
}

void verify_opts_default(verify_opts *o)
{
    memset(o, 0, sizeof *o);
    o->queue_order = IR_ORDER_LIST;
    o->timeout_ms = 30000;
    o->rlimit = 50000000;
}

/* ---------------------------------------------------------------- context */

static void ctx_free(vctx *c)
{
    free(c->qstart);
    free(c->qtasks);
    free(c->queue_of);
    free(c->qpos);
    ir_graph_free(&c->g);
    free(c->nprod);
    free(c->acc);
    free(c->acc_start);
    free(c->page_of);
    vrun_free(&c->run);
    free(c->pi);
    free(c->witness.s);
}

/* Build queues, graph, producer counts and accesses. IR_ERR_MALFORMED leaves the reason in err. */
static ir_status ctx_build(vctx *c, ir_error *err)
{
    const ir_program *p = c->p;
    ir_status s = ir_program_queues(p, c->o->queue_order, &c->nq, &c->qstart, &c->qtasks, err);
    if (s != IR_OK)
        return s;
    int32_t nt = p->n_tasks;
    c->queue_of = malloc(((size_t)nt + 1) * sizeof *c->queue_of);
    c->qpos = malloc(((size_t)nt + 1) * sizeof *c->qpos);
    c->nprod = calloc((size_t)p->n_counters + 1, sizeof *c->nprod);
    c->acc_start = calloc((size_t)nt + 1, sizeof *c->acc_start);
    c->page_of = malloc(((size_t)p->n_buffers + 1) * sizeof *c->page_of);
    if (!c->queue_of || !c->qpos || !c->nprod || !c->acc_start || !c->page_of)
        return ir_fail(err, IR_ERR_NOMEM, "", "out of memory");
    for (int32_t q = 0; q < c->nq; q++)
        for (int32_t i = c->qstart[q]; i < c->qstart[q + 1]; i++) {
            c->queue_of[c->qtasks[i]] = q;
            c->qpos[c->qtasks[i]] = i - c->qstart[q];
        }
    for (int32_t i = 0; i < nt; i++)
        c->nprod[p->tasks[i].out_counter]++;
    for (int32_t b = 0; b < p->n_buffers; b++)
        c->page_of[b] = -1;
    if (p->has_pages)
        for (int i = 0; i < p->pages.n_map; i++)
            c->page_of[p->pages.map_buffer[i]] = p->pages.map_page[i];
    if (ir_graph_build(p, &c->g) != IR_OK)
        return ir_fail(err, IR_ERR_NOMEM, "", "out of memory");
    int64_t na = 0;
    for (int32_t i = 0; i < nt; i++)
        na += p->tasks[i].n_inputs + p->tasks[i].n_outputs;
    c->acc = calloc((size_t)na + 1, sizeof *c->acc);
    if (!c->acc)
        return ir_fail(err, IR_ERR_NOMEM, "", "out of memory");
    for (int32_t i = 0; i < nt; i++) {
        const ir_task *t = &p->tasks[i];
        c->acc_start[i] = c->n_acc;
        for (int w = 0; w < 2; w++) {
            int n = w ? t->n_outputs : t->n_inputs;
            for (int k = 0; k < n; k++) {
                vaccess *a = &c->acc[c->n_acc];
                a->task = i;
                a->write = w;
                a->slot = k;
                a->buffer = w ? t->outputs[k] : t->inputs[k];
                s = ir_task_footprint(p, t, w, k, &a->box, err);
                if (s != IR_OK)
                    return s;
                c->n_acc++;
            }
        }
    }
    c->acc_start[nt] = c->n_acc;
    return IR_OK;
}

static verify_verdict worst(const verify_result *r)
{
    bool refuted = false, unknown = false, malformed = false;
    for (int i = 0; i < VERIFY_N_OBLIGATIONS; i++) {
        refuted |= r->ob[i].status == VERIFY_REFUTED;
        unknown |= r->ob[i].status == VERIFY_UNKNOWN;
        malformed |= r->ob[i].status == VERIFY_MALFORMED;
    }
    return malformed ? VERIFY_MALFORMED : refuted ? VERIFY_REFUTED
         : unknown ? VERIFY_UNKNOWN : VERIFY_PROVED;
}

/* The certificate of a PROVED run: what was proved, with which tool, limits and positions, and the
 * evidence the obligations left in c->cert. Allocation failure leaves none. */
static void write_certificate(vctx *c)
{
    verify_cert *k = &c->cert;
    const verify_result *r = c->r;
    snprintf(k->program_sha256, sizeof k->program_sha256, "%s", r->program_sha256);
    snprintf(k->tool, sizeof k->tool, "%s%s", VERIFY_CERT_TOOL, AMK_TOOL_VERSION);
    snprintf(k->z3_version, sizeof k->z3_version, "%s", r->z3_version);
    k->timeout_ms = c->o->timeout_ms;
    k->rlimit = c->o->rlimit;
    snprintf(k->target, sizeof k->target, "%s", c->t->name);
    k->queue_order = c->o->queue_order;
    k->pos_lo = c->pos_lo;
    k->pos_end = c->max_seq;
    memcpy(k->ob, r->ob, sizeof k->ob);
    k->finish_order = c->run.order;
    k->n_finish_order = c->run.n_done;
    ir_error e = {0};
    verify_cert_write(k, &c->r->certificate_json, &e);
    k->finish_order = NULL;
}

void verify_result_free(verify_result *r)
{
    if (!r)
        return;
    free(r->witness_json);
    free(r->certificate_json);
    r->witness_json = r->certificate_json = NULL;
}

typedef void (*obligation_fn)(vctx *);

static void run_obligation(vctx *c, verify_obligation ob, obligation_fn fn)
{
    double t0 = base_now_s();
    if (vdeadline(c)) {
        vset(c, ob, VERIFY_UNKNOWN, "not decided: the deadline of %.0f s passed first",
             c->o->deadline_s);
        return;
    }
    vprogress(c, true, "%s: %d tasks, %.1f s so far", verify_obligation_name(ob), c->p->n_tasks,
              t0 - c->t_progress_start);
    fn(c);
    c->r->ob[ob].seconds = base_now_s() - t0;
}

ir_status verify_program(const ir_program *p, const verify_opts *o, verify_result *r,
                         ir_error *err)
{
    verify_opts dflt;
    if (!o) {
        verify_opts_default(&dflt);
        o = &dflt;
    }
    memset(r, 0, sizeof *r);
    double t0 = base_now_s();
    verify_z3_version(r->z3_version);
    for (int i = 0; i < VERIFY_N_OBLIGATIONS; i++)
        r->ob[i].status = VERIFY_SKIPPED;
    ir_status s = ir_program_sha256(p, r->program_sha256, err);
    if (s != IR_OK)
        return s;
    vctx c = {0};
    c.p = p;
    c.o = o;
    c.r = r;
    c.t = o->target ? o->target : p->has_target ? &p->target : NULL;
    c.t_progress = c.t_progress_start = t0;
    c.t_end = o->deadline_s > 0 ? t0 + o->deadline_s : 0;
    /* A program without the decode extension was lowered for one position (AMK writes it as
       meta.pos, with kv_len = pos + 1 and the KV slot pos as constants): it is proved at that
       position, rows below it being the state of earlier steps. */
    c.pos = 0;
    if (p->has_decode)
        c.pos = p->decode.pos;
    else if (!ir_meta_int(p, "pos", &c.pos) || c.pos < 0 || c.pos > INT32_MAX)
        c.pos = 0;
    c.pos_lo = p->has_decode ? 0 : c.pos;
    c.max_seq = p->has_decode ? p->decode.max_seq : c.pos + 1;
    ir_error e = {0};
    if (!c.t) {
        vset(&c, VERIFY_WELLFORMED, VERIFY_MALFORMED,
             "no GPU target: the program has none and no --target was given");
        vwitness_begin(&c, "no_target");
    } else if ((s = ctx_build(&c, &e)) != IR_OK) {
        if (s == IR_ERR_NOMEM) {
            ctx_free(&c);
            return ir_fail(err, s, "", "out of memory");
        }
        vset(&c, VERIFY_WELLFORMED, VERIFY_MALFORMED, "%s: %s", e.where, e.why);
        if (vwitness_begin(&c, "malformed")) {
            vb_put(&c.witness, ", \"where\": ");
            vb_qstr(&c.witness, e.where);
            vb_put(&c.witness, ", \"why\": ");
            vb_qstr(&c.witness, e.why);
        }
    } else {
        run_obligation(&c, VERIFY_WELLFORMED, verify_wellformed);
        bool wf = r->ob[VERIFY_WELLFORMED].status == VERIFY_PROVED;
        run_obligation(&c, VERIFY_DEADLOCK, verify_deadlock);
        if (wf && c.run.order)
            run_obligation(&c, VERIFY_RACE, verify_race);
        run_obligation(&c, VERIFY_RESIDENT, verify_resident);
        if (wf && r->ob[VERIFY_RACE].status == VERIFY_PROVED &&
            r->ob[VERIFY_DEADLOCK].status != VERIFY_UNKNOWN)
            run_obligation(&c, VERIFY_COMPLETE, verify_complete);
    }
    r->verdict = worst(r);
    if (c.witness.n) {
        vb_put(&c.witness, "}");
        if (!c.witness.oom) {
            r->witness_json = c.witness.s;
            c.witness.s = NULL;
        }
    }
    if (r->verdict == VERIFY_PROVED)
        write_certificate(&c);
    ctx_free(&c);
    r->seconds = base_now_s() - t0;
    return IR_OK;
}
