/*
 * predict.c - the analytic latency of a launch plan, for trials without a GPU. Every block
 * streams at its share of the spec bandwidth (all blocks streaming at once saturate HBM); a
 * task takes est_bytes at that rate and starts when its queue predecessor is done and its waits
 * hold. The schedule shows in the result through load balance, the dependency chain and the
 * bytes fusion saves; nothing in it is a measurement, and it is labelled "predicted".
 */
#include <stdlib.h>

#include "search/search.h"

/* Min-heap of running tasks keyed by (finish time, queue): deterministic order of events. */
typedef struct {
    double t;
    int32_t q;
} event;

static bool ev_less(event a, event b)
{
    return a.t < b.t || (a.t == b.t && a.q < b.q);
}

static void ev_push(event *h, int *n, event e)
{
    int i = (*n)++;
    h[i] = e;
    while (i > 0 && ev_less(h[i], h[(i - 1) / 2])) {
        event t = h[i];
        h[i] = h[(i - 1) / 2];
        h[(i - 1) / 2] = t;
        i = (i - 1) / 2;
    }
}

static event ev_pop(event *h, int *n)
{
    event top = h[0];
    h[0] = h[--*n];
    for (int i = 0;;) {
        int l = 2 * i + 1, r = l + 1, m = i;
        if (l < *n && ev_less(h[l], h[m]))
            m = l;
        if (r < *n && ev_less(h[r], h[m]))
            m = r;
        if (m == i)
            break;
        event t = h[i];
        h[i] = h[m];
        h[m] = t;
        i = m;
    }
    return top;
}

static bool waits_hold(const ir_task *t, const int64_t *count)
{
    for (int w = 0; w < t->n_waits; w++)
        if (count[t->waits[w].counter] < t->waits[w].threshold)
            return false;
    return true;
}

ir_status search_predict_us(const ir_program *p, const ir_target *t, double *us, ir_error *err)
{
    if (!p->has_plan || p->plan.grid < 1)
        return ir_fail(err, IR_ERR_MALFORMED, "launch_plan", "a prediction needs a launch plan");
    if (!(t->hbm_bandwidth_gbs > 0))
        return ir_fail(err, IR_ERR_MALFORMED, "target.hbm_bandwidth_gbs", "must be positive");
    const ir_plan *pl = &p->plan;
    int32_t G = (int32_t)pl->grid;
    double bytes_per_us = t->hbm_bandwidth_gbs * 1e3 / (double)G;   /* 1 GB/s = 1e3 B/us */
    int64_t *count = calloc((size_t)p->n_counters + 1, sizeof *count);
    int32_t *head = calloc((size_t)G, sizeof *head);
    bool *busy = calloc((size_t)G, sizeof *busy);
    event *h = malloc(((size_t)G + 1) * sizeof *h);
    if (!count || !head || !busy || !h) {
        free(count), free(head), free(busy), free(h);
        return ir_fail(err, IR_ERR_NOMEM, "predict", "out of memory");
    }
    double now = 0;
    int n = 0;
    int64_t done = 0, total = pl->queue_start[G];
    for (;;) {
        for (int32_t q = 0; q < G; q++) {
            int32_t k = pl->queue_start[q] + head[q];
            if (busy[q] || k >= pl->queue_start[q + 1] || !waits_hold(&p->tasks[pl->queue_tasks[k]], count))
                continue;
            const ir_task *task = &p->tasks[pl->queue_tasks[k]];
            double d = task->est_bytes > 0 ? (double)task->est_bytes / bytes_per_us : 0;
            busy[q] = true;
            ev_push(h, &n, (event){now + d, q});
        }
        if (!n)
            break;
        event e = ev_pop(h, &n);
        now = e.t;
        const ir_task *task = &p->tasks[pl->queue_tasks[pl->queue_start[e.q] + head[e.q]]];
        if (task->out_counter >= 0 && task->out_counter < p->n_counters)
            count[task->out_counter]++;
        head[e.q]++;
        busy[e.q] = false;
        done++;
    }
    free(count), free(head), free(busy), free(h);
    if (done != total)
        return ir_fail(err, IR_ERR_MALFORMED, "launch_plan", "the queues stop after %lld of %lld "
                       "tasks", (long long)done, (long long)total);
    *us = now;
    return IR_OK;
}
