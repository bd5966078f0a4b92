/*
 * deadlock.c - obligation 2: every execution of the actual queues finishes.
 *
 * Z3 proves it with the "stuck cut" encoding: a Bool "finished" per task, prefix-closed along
 * each queue, such that not everything finished and every unfinished queue head is blocked by
 * the finished producer counts (atmost over the producers of the awaited counter). UNSAT means
 * no such cut exists, and by persistence (counters only grow, enabled heads stay enabled) that is
 * exactly deadlock freedom. The greedy run decides the same question in linear time; it supplies
 * the witness (the stuck state and the prefix reaching it) or the certificate's finish order, and
 * any disagreement with Z3 is UNKNOWN.
 */
#include <stdlib.h>
#include <string.h>

#include "verify/verify_internal.h"

static void write_witness(vctx *c)
{
    const ir_program *p = c->p;
    if (!vwitness_begin(c, "deadlock"))
        return;
    vbuf *w = &c->witness;
    vb_fmt(w, ", \"finished\": %d, \"tasks\": %d, \"blocked\": [", c->run.n_done, p->n_tasks);
    bool first = true;
    for (int32_t q = 0; q < c->nq; q++) {
        int32_t h = c->run.head[q];
        if (c->qstart[q] + h >= c->qstart[q + 1])
            continue;
        int32_t t = c->qtasks[c->qstart[q] + h];
        int wi = vrun_blocking_wait(c, &c->run, t);
        const ir_wait *wt = &p->tasks[t].waits[wi < 0 ? 0 : wi];
        vb_fmt(w, "%s{\"queue\": %d, \"task\": %d, \"label\": ", first ? "" : ", ", q, t);
        vb_qstr(w, p->tasks[t].label);
        if (wi >= 0)
            vb_fmt(w, ", \"wait\": {\"counter\": %d, \"threshold\": %lld}, \"counter_value\": %lld, "
                   "\"producers\": %lld}", wt->counter, (long long)wt->threshold,
                   (long long)c->run.count[wt->counter], (long long)c->nprod[wt->counter]);
        else
            vb_put(w, ", \"wait\": null}");
        first = false;
    }
    vb_put(w, "], \"prefix\": ");
    vb_ids(w, c->run.order, c->run.n_done);
}

void verify_deadlock(vctx *c)
{
    const ir_program *p = c->p;
    int32_t nt = p->n_tasks;
    if (!vrun_exec(c, -1, -1, &c->run)) {
        vset(c, VERIFY_DEADLOCK, VERIFY_UNKNOWN, "out of memory");
        return;
    }
    bool c_free = c->run.n_done == nt;
    c->pi = malloc(((size_t)nt + 1) * sizeof *c->pi);
    if (!c->pi) {
        vset(c, VERIFY_DEADLOCK, VERIFY_UNKNOWN, "out of memory");
        return;
    }
    for (int32_t i = 0; i < nt; i++)
        c->pi[i] = -1;
    for (int32_t i = 0; i < c->run.n_done; i++)
        c->pi[c->run.order[i]] = i;
    vz3 z;
    if (!vz3_open(&z, c, VERIFY_DEADLOCK, false)) {
        vset(c, VERIFY_DEADLOCK, VERIFY_UNKNOWN, "could not start Z3");
        return;
    }
    Z3_context x = z.ctx;
    Z3_ast *f = malloc(((size_t)nt + 1) * sizeof *f);
    Z3_ast *allc = calloc((size_t)p->n_counters + 1, sizeof *allc);
    Z3_ast *tmp = malloc(((size_t)nt + 2) * sizeof *tmp);
    if (!f || !allc || !tmp) {
        free(f);
        free(allc);
        free(tmp);
        vz3_close(&z);
        vset(c, VERIFY_DEADLOCK, VERIFY_UNKNOWN, "out of memory");
        return;
    }
    for (int32_t i = 0; i < nt; i++)
        f[i] = vz3_bool(&z, "f", i);
    /* Prefix closure along each queue. */
    for (int32_t q = 0; q < c->nq; q++)
        for (int32_t i = c->qstart[q] + 1; i < c->qstart[q + 1]; i++)
            Z3_solver_assert(x, z.solver, Z3_mk_implies(x, f[c->qtasks[i]], f[c->qtasks[i - 1]]));
    /* blocked(t) for every task, then: every unfinished head is blocked. */
    int64_t partial = 0;
    for (int32_t q = 0; q < c->nq; q++)
        for (int32_t i = c->qstart[q]; i < c->qstart[q + 1]; i++) {
            int32_t t = c->qtasks[i];
            const ir_task *k = &p->tasks[t];
            int nb = 0;
            Z3_ast bl[IR_MAX_WAITS];
            for (int w = 0; w < k->n_waits; w++) {
                int32_t ctr = k->waits[w].counter;
                int64_t th = k->waits[w].threshold, np = c->nprod[ctr];
                const int32_t *prod = c->g.producers.idx + c->g.producers.start[ctr];
                if (th > np) {
                    bl[nb++] = Z3_mk_true(x);
                } else if (th == np) {
                    if (!allc[ctr]) {
                        allc[ctr] = vz3_bool(&z, "all", ctr);
                        for (int64_t j = 0; j < np; j++) {
                            Z3_solver_assert(x, z.solver, Z3_mk_implies(x, allc[ctr], f[prod[j]]));
                            tmp[j] = Z3_mk_not(x, f[prod[j]]);
                        }
                        tmp[np] = allc[ctr];
                        Z3_solver_assert(x, z.solver, vz3_or(&z, (int)np + 1, tmp));
                    }
                    bl[nb++] = Z3_mk_not(x, allc[ctr]);
                } else {
                    partial++;
                    for (int64_t j = 0; j < np; j++)
                        tmp[j] = f[prod[j]];
                    bl[nb++] = Z3_mk_atmost(x, (unsigned)np, tmp, (unsigned)(th - 1));
                }
            }
            Z3_ast head[2] = {Z3_mk_not(x, f[t]),
                              i > c->qstart[q] ? f[c->qtasks[i - 1]] : Z3_mk_true(x)};
            Z3_solver_assert(x, z.solver, Z3_mk_implies(x, vz3_and(&z, 2, head), vz3_or(&z, nb, bl)));
        }
    int nl = 0;
    for (int32_t q = 0; q < c->nq; q++)
        if (c->qstart[q + 1] > c->qstart[q])
            tmp[nl++] = Z3_mk_not(x, f[c->qtasks[c->qstart[q + 1] - 1]]);
    Z3_solver_assert(x, z.solver, vz3_or(&z, nl, tmp));
    Z3_lbool res = vz3_check(&z);
    if (res == Z3_L_UNDEF) {
        vset(c, VERIFY_DEADLOCK, VERIFY_UNKNOWN, "Z3 gave up on the stuck-cut query (%s)",
             Z3_solver_get_reason_unknown(x, z.solver));
    } else if ((res == Z3_L_FALSE) != c_free) {
        vset(c, VERIFY_DEADLOCK, VERIFY_UNKNOWN,
             "internal disagreement: Z3 says %s, the greedy run says %s",
             res == Z3_L_FALSE ? "no stuck cut" : "a stuck cut exists",
             c_free ? "all tasks finish" : "it gets stuck");
    } else if (c_free) {
        c->deadlock_free = true;
        vset(c, VERIFY_DEADLOCK, VERIFY_PROVED, "no stuck cut over %d tasks on %d queues "
             "(%lld partial waits); greedy finish order in the certificate", nt, c->nq,
             (long long)partial);
    } else {
        int nblocked = 0;
        for (int32_t q = 0; q < c->nq; q++)
            nblocked += c->qstart[q] + c->run.head[q] < c->qstart[q + 1];
        vset(c, VERIFY_DEADLOCK, VERIFY_REFUTED, "stuck after %d of %d tasks with %d queue "
             "heads blocked", c->run.n_done, nt, nblocked);
        write_witness(c);
    }
    free(f);
    free(allc);
    free(tmp);
    vz3_close(&z);
}
