/*
 * vsim.c - the greedy run of a program's queues, the exact algorithm behind the deadlock and
 * race obligations. Counters only grow and an enabled head stays enabled until it runs, so every
 * maximal run finishes the same set of tasks: one greedy run decides what can finish, and a run
 * with tasks disabled decides what can happen before those tasks.
 */
#include <stdlib.h>
#include <string.h>

#include "verify/verify_internal.h"

void vrun_free(vrun *run)
{
    free(run->order);
    free(run->done);
    free(run->count);
    free(run->head);
    memset(run, 0, sizeof *run);
}

int vrun_blocking_wait(const vctx *c, const vrun *run, int32_t t)
{
    const ir_task *k = &c->p->tasks[t];
    for (int i = 0; i < k->n_waits; i++)
        if (run->count[k->waits[i].counter] < k->waits[i].threshold)
            return i;
    return -1;
}

bool vrun_enabled(const vctx *c, const vrun *run, int32_t t)
{
    if (run->done[t])
        return false;
    int32_t q = c->queue_of[t];
    if (run->head[q] != c->qpos[t])
        return false;
    return vrun_blocking_wait(c, run, t) < 0;
}

/* A queue parked on a counter until it reaches a threshold. */
typedef struct {
    int32_t queue;
    int64_t threshold;
} watcher;

typedef struct {
    watcher *w;
    int32_t n, cap;
    int64_t min_th;
} watch_list;

bool vrun_exec(const vctx *c, int32_t off_a, int32_t off_b, vrun *run)
{
    const ir_program *p = c->p;
    memset(run, 0, sizeof *run);
    int32_t nt = p->n_tasks, nc = p->n_counters, nq = c->nq;
    run->order = malloc(((size_t)nt + 1) * sizeof *run->order);
    run->done = calloc((size_t)nt + 1, 1);
    run->count = calloc((size_t)nc + 1, sizeof *run->count);
    run->head = calloc((size_t)nq + 1, sizeof *run->head);
    watch_list *watch = calloc((size_t)nc + 1, sizeof *watch);
    int32_t *work = malloc(((size_t)nq + 1) * sizeof *work);
    uint8_t *queued = calloc((size_t)nq + 1, 1);
    bool ok = run->order && run->done && run->count && run->head && watch && work && queued;
    int32_t nwork = 0;
    for (int32_t q = 0; ok && q < nq; q++) {
        work[nwork++] = q;
        queued[q] = 1;
    }
    for (int32_t i = 0; ok && i < nc; i++)
        watch[i].min_th = INT64_MAX;
    while (ok && nwork > 0) {
        int32_t q = work[--nwork];
        queued[q] = 0;
        for (;;) {
            int32_t h = run->head[q];
            if (c->qstart[q] + h >= c->qstart[q + 1])
                break;
            int32_t t = c->qtasks[c->qstart[q] + h];
            if (t == off_a || t == off_b)
                break;
            int w = vrun_blocking_wait(c, run, t);
            if (w >= 0) {
                /* Park q on the counter it waits for. */
                const ir_wait *wt = &p->tasks[t].waits[w];
                watch_list *l = &watch[wt->counter];
                if (l->n == l->cap) {
                    int32_t ncap = l->cap ? 2 * l->cap : 4;
                    watcher *nw = realloc(l->w, (size_t)ncap * sizeof *nw);
                    if (!nw) {
                        ok = false;
                        break;
                    }
                    l->w = nw;
                    l->cap = ncap;
                }
                l->w[l->n++] = (watcher){q, wt->threshold};
                if (wt->threshold < l->min_th)
                    l->min_th = wt->threshold;
                break;
            }
            run->done[t] = 1;
            run->order[run->n_done++] = t;
            run->head[q]++;
            int32_t oc = p->tasks[t].out_counter;
            int64_t v = ++run->count[oc];
            watch_list *l = &watch[oc];
            if (l->n && v >= l->min_th) {
                /* Wake every watcher whose threshold is reached. */
                int32_t keep = 0;
                int64_t mn = INT64_MAX;
                for (int32_t i = 0; i < l->n; i++) {
                    if (l->w[i].threshold <= v) {
                        if (!queued[l->w[i].queue]) {
                            queued[l->w[i].queue] = 1;
                            work[nwork++] = l->w[i].queue;
                        }
                    } else {
                        l->w[keep++] = l->w[i];
                        if (l->w[i].threshold < mn)
                            mn = l->w[i].threshold;
                    }
                }
                l->n = keep;
                l->min_th = mn;
            }
        }
    }
    for (int32_t i = 0; watch && i < nc; i++)
        free(watch[i].w);
    free(watch);
    free(work);
    free(queued);
    if (!ok)
        vrun_free(run);
    return ok;
}
