/*
 * resident.c - obligation 4: the whole grid is co-resident on the target (threads, registers,
 * static + dynamic SMEM per block against the per-SM limits), dynamic SMEM is within the opt-in
 * cap, SMEM buffers are used by one block only, and the SMEM pages live at the same time on a
 * queue fit the block's dynamic SMEM.
 *
 * C computes the occupancy and the per-queue SMEM peaks; Z3 proves the existence claim "some
 * blocks-per-SM count b satisfies every per-SM limit and b * SMs covers the grid" together with
 * the caps, and its model's b must match the C figure.
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "verify/verify_internal.h"

typedef struct {
    int64_t grid, threads, dyn, stat, regs;
    int64_t warps, regs_per_block, smem_per_block;
    int64_t by_threads, by_regs, by_smem, by_blocks, per_sm;
} occupancy;

static int64_t round_up(int64_t v, int64_t u) { return u > 0 ? (v + u - 1) / u * u : v; }

static void compute(const vctx *c, occupancy *o)
{
    const ir_program *p = c->p;
    const ir_target *t = c->t;
    memset(o, 0, sizeof *o);
    if (p->has_plan) {
        o->grid = p->plan.grid;
        o->threads = p->plan.threads_per_block;
        o->dyn = p->plan.dynamic_smem_bytes;
        o->stat = p->plan.static_smem_bytes;
        o->regs = p->plan.regs_per_thread;
    } else {
        /* No launch plan: AMK's loader launches min(num_SMs, co-resident blocks) blocks of the
           config's threads (256 without one) and puts every task on one of them; the
           deadlock and race obligations covered every such assignment (each unassigned task
           its own worker), with the dynamic SMEM the loader opts into. */
        o->threads = p->has_config ? p->config.threads_per_block : 256;
        o->dyn = ir_amk_loader_smem(p, o->threads);
        o->grid = t->num_sms;
    }
    /* A plan that does not bound registers is held to the worst case. */
    if (o->regs <= 0)
        o->regs = t->max_regs_per_thread;
    o->warps = (o->threads + 31) / 32;
    o->regs_per_block = round_up(o->regs * 32, t->reg_alloc_unit) * o->warps;
    o->smem_per_block = o->stat + o->dyn + t->smem_reserved_per_block;
    o->by_threads = t->max_threads_per_sm / (o->warps * 32);
    o->by_regs = o->regs_per_block ? t->regs_per_sm / o->regs_per_block : 0;
    o->by_smem = o->smem_per_block ? t->smem_bytes_per_sm / o->smem_per_block : t->max_blocks_per_sm;
    o->by_blocks = t->max_blocks_per_sm;
    o->per_sm = o->by_threads;
    if (o->by_regs < o->per_sm)
        o->per_sm = o->by_regs;
    if (o->by_smem < o->per_sm)
        o->per_sm = o->by_smem;
    if (o->by_blocks < o->per_sm)
        o->per_sm = o->by_blocks;
}

static void refute(vctx *c, const char *kind, const occupancy *o, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

static void refute(vctx *c, const char *kind, const occupancy *o, const char *fmt, ...)
{
    char msg[400];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    vset(c, VERIFY_RESIDENT, VERIFY_REFUTED, "%s", msg);
    if (!vwitness_begin(c, kind))
        return;
    vb_fmt(&c->witness, ", \"target\": \"%s\", \"grid\": %lld, \"threads_per_block\": %lld, "
           "\"regs_per_thread\": %lld, \"dynamic_smem_bytes\": %lld, \"static_smem_bytes\": %lld, "
           "\"blocks_per_sm\": {\"threads\": %lld, \"registers\": %lld, \"smem\": %lld, "
           "\"limit\": %lld, \"resident\": %lld}, \"num_sms\": %lld, \"smem_optin_cap\": %lld, "
           "\"message\": ", c->t->name, (long long)o->grid, (long long)o->threads,
           (long long)o->regs, (long long)o->dyn, (long long)o->stat, (long long)o->by_threads,
           (long long)o->by_regs, (long long)o->by_smem, (long long)o->by_blocks,
           (long long)o->per_sm, (long long)c->t->num_sms,
           (long long)c->t->smem_bytes_per_block_optin);
    vb_qstr(&c->witness, msg);
}

/* SMEM buffers must stay within one block; returns the peak of live SMEM bytes per queue in
 * *peak (max over queues) and its queue in *peak_q. False after refuting. */
static bool smem_pages(vctx *c, const occupancy *o, int64_t *peak, int32_t *peak_q)
{
    const ir_program *p = c->p;
    int32_t nb = p->n_buffers;
    int32_t *owner = malloc(((size_t)nb + 1) * sizeof *owner);
    int32_t *first = malloc(((size_t)nb + 1) * sizeof *first);
    int32_t *last = malloc(((size_t)nb + 1) * sizeof *last);
    *peak = 0;
    *peak_q = -1;
    if (!owner || !first || !last) {
        free(owner);
        free(first);
        free(last);
        vset(c, VERIFY_RESIDENT, VERIFY_UNKNOWN, "out of memory");
        return false;
    }
    for (int32_t b = 0; b < nb; b++)
        owner[b] = -1;
    bool ok = true;
    for (int64_t a = 0; a < c->n_acc && ok; a++) {
        const vaccess *x = &c->acc[a];
        const ir_buffer *b = &p->buffers[x->buffer];
        if (b->space != IR_SMEM && b->space != IR_REGISTER)
            continue;
        int32_t q = c->queue_of[x->task], pos = c->qpos[x->task];
        if (owner[x->buffer] < 0) {
            owner[x->buffer] = q;
            first[x->buffer] = last[x->buffer] = pos;
        } else if (owner[x->buffer] != q) {
            refute(c, "smem_scope", o, "buffer %d '%s' lives in %s but is used by tasks on queues "
                   "%d and %d; on-chip memory belongs to one block", x->buffer, b->name,
                   ir_space_name(b->space), owner[x->buffer], q);
            ok = false;
        } else {
            if (pos < first[x->buffer])
                first[x->buffer] = pos;
            if (pos > last[x->buffer])
                last[x->buffer] = pos;
        }
    }
    /* Live intervals per page (a page's interval spans its buffers'); sweep per queue. */
    if (ok) {
        int32_t npg = p->has_pages ? p->pages.n_pages : 0;
        int64_t nitems = nb + npg;
        int32_t *iq = malloc(((size_t)nitems + 1) * sizeof *iq);
        int32_t *il = malloc(((size_t)nitems + 1) * sizeof *il);
        int32_t *ih = malloc(((size_t)nitems + 1) * sizeof *ih);
        int64_t *ibytes = malloc(((size_t)nitems + 1) * sizeof *ibytes);
        if (!iq || !il || !ih || !ibytes) {
            ok = false;
            vset(c, VERIFY_RESIDENT, VERIFY_UNKNOWN, "out of memory");
        }
        for (int64_t i = 0; ok && i < nitems; i++)
            iq[i] = -1;
        for (int32_t b = 0; ok && b < nb; b++) {
            if (owner[b] < 0 || p->buffers[b].space != IR_SMEM)
                continue;
            int32_t pg = c->page_of[b];
            int64_t item = pg >= 0 ? nb + pg : b;
            int64_t bytes = pg >= 0 ? p->pages.pages[pg].nbytes : ir_buffer_nbytes(&p->buffers[b]);
            if (iq[item] < 0) {
                iq[item] = owner[b];
                il[item] = first[b];
                ih[item] = last[b];
                ibytes[item] = bytes;
            } else if (iq[item] != owner[b]) {
                refute(c, "smem_scope", o, "SMEM page %d holds buffers used on queues %d and %d",
                       pg, iq[item], owner[b]);
                ok = false;
            } else {
                if (first[b] < il[item])
                    il[item] = first[b];
                if (last[b] > ih[item])
                    ih[item] = last[b];
            }
        }
        /* Per queue, the live bytes at a position are the sum over intervals covering it; the
           peak is reached at some interval start. Quadratic in the SMEM items, which are few. */
        for (int64_t i = 0; ok && i < nitems; i++) {
            if (iq[i] < 0)
                continue;
            int64_t sum = 0;
            for (int64_t j = 0; j < nitems; j++)
                if (iq[j] == iq[i] && il[j] <= il[i] && il[i] <= ih[j])
                    sum += ibytes[j];
            if (sum > *peak) {
                *peak = sum;
                *peak_q = iq[i];
            }
        }
        free(iq);
        free(il);
        free(ih);
        free(ibytes);
    }
    free(owner);
    free(first);
    free(last);
    return ok;
}

void verify_resident(vctx *c)
{
    const ir_target *t = c->t;
    occupancy o;
    compute(c, &o);
    int64_t peak = 0;
    int32_t peak_q = -1;
    if (!smem_pages(c, &o, &peak, &peak_q))
        return;
    /* C verdict and the first failing limit. */
    const char *kind = NULL;
    char why[300] = "";
    if (!t->supports_cooperative) {
        kind = "cooperative";
        snprintf(why, sizeof why, "target %s does not support cooperative launches", t->name);
    } else if (!c->p->has_plan && o.threads > 256) {
        kind = "threads";
        snprintf(why, sizeof why, "%lld threads per block: AMK's loader launches at most 256 "
                 "(a program without a launch plan runs under it)", (long long)o.threads);
    } else if (o.threads < 1 || o.threads > t->max_threads_per_block) {
        kind = "threads";
        snprintf(why, sizeof why, "%lld threads per block outside [1, %lld]", (long long)o.threads,
                 (long long)t->max_threads_per_block);
    } else if (o.regs > t->max_regs_per_thread) {
        kind = "registers";
        snprintf(why, sizeof why, "%lld registers per thread above the target's %lld",
                 (long long)o.regs, (long long)t->max_regs_per_thread);
    } else if (o.stat + o.dyn > t->smem_bytes_per_block_optin) {
        kind = "smem_cap";
        snprintf(why, sizeof why, "%lld bytes of dynamic + %lld static SMEM per block exceed the "
                 "opt-in cap of %lld on %s", (long long)o.dyn, (long long)o.stat,
                 (long long)t->smem_bytes_per_block_optin, t->name);
    } else if (peak > o.dyn) {
        kind = "smem_pages";
        snprintf(why, sizeof why, "SMEM pages live at once on queue %d need %lld bytes but the "
                 "block has %lld bytes of dynamic SMEM", peak_q, (long long)peak, (long long)o.dyn);
    } else if (o.per_sm * t->num_sms < o.grid) {
        kind = "occupancy";
        snprintf(why, sizeof why, "grid of %lld blocks cannot be co-resident: %lld blocks per SM "
                 "x %lld SMs", (long long)o.grid, (long long)o.per_sm, (long long)t->num_sms);
    }
    /* Z3: exists b >= 1 within every per-SM limit with b * num_sms >= grid, and the caps hold. */
    vz3 z;
    if (!vz3_open(&z, c, VERIFY_RESIDENT, true)) {
        vset(c, VERIFY_RESIDENT, VERIFY_UNKNOWN, "could not start Z3");
        return;
    }
    Z3_context x = z.ctx;
    Z3_ast b = vz3_int(&z, "blocks_per_sm", 0);
    Z3_ast cl[12];
    int n = 0;
    cl[n++] = Z3_mk_ge(x, b, vz3_num(&z, 1));
    cl[n++] = Z3_mk_le(x, b, vz3_num(&z, t->max_blocks_per_sm));
    cl[n++] = Z3_mk_le(x, Z3_mk_mul(x, 2, (Z3_ast[]){b, vz3_num(&z, o.warps * 32)}),
                       vz3_num(&z, t->max_threads_per_sm));
    cl[n++] = Z3_mk_le(x, Z3_mk_mul(x, 2, (Z3_ast[]){b, vz3_num(&z, o.regs_per_block)}),
                       vz3_num(&z, t->regs_per_sm));
    cl[n++] = Z3_mk_le(x, Z3_mk_mul(x, 2, (Z3_ast[]){b, vz3_num(&z, o.smem_per_block)}),
                       vz3_num(&z, t->smem_bytes_per_sm));
    cl[n++] = Z3_mk_ge(x, Z3_mk_mul(x, 2, (Z3_ast[]){b, vz3_num(&z, t->num_sms)}),
                       vz3_num(&z, o.grid));
    cl[n++] = Z3_mk_le(x, vz3_num(&z, o.stat + o.dyn), vz3_num(&z, t->smem_bytes_per_block_optin));
    cl[n++] = Z3_mk_le(x, vz3_num(&z, o.threads),
                       vz3_num(&z, c->p->has_plan ? t->max_threads_per_block : 256));
    cl[n++] = Z3_mk_ge(x, vz3_num(&z, o.threads), vz3_num(&z, 1));
    cl[n++] = Z3_mk_le(x, vz3_num(&z, o.regs), vz3_num(&z, t->max_regs_per_thread));
    cl[n++] = Z3_mk_le(x, vz3_num(&z, peak), vz3_num(&z, o.dyn));
    cl[n++] = t->supports_cooperative ? Z3_mk_true(x) : Z3_mk_false(x);
    Z3_solver_assert(x, z.solver, vz3_and(&z, n, cl));
    Z3_lbool res = vz3_check(&z);
    int64_t zb = -1;
    if (res == Z3_L_TRUE)
        vz3_model_int(&z, b, &zb);
    vz3_close(&z);
    if (res == Z3_L_UNDEF) {
        vset(c, VERIFY_RESIDENT, VERIFY_UNKNOWN, "Z3 gave up on the occupancy query");
    } else if ((res == Z3_L_TRUE) != (kind == NULL) || (zb > o.per_sm)) {
        vset(c, VERIFY_RESIDENT, VERIFY_UNKNOWN, "internal disagreement on residency (Z3 %s, "
             "C %s)", res == Z3_L_TRUE ? "fits" : "does not fit", kind ? kind : "fits");
    } else if (kind) {
        refute(c, kind, &o, "%s", why);
    } else {
        vset(c, VERIFY_RESIDENT, VERIFY_PROVED, "grid %lld <= %lld blocks/SM x %lld SMs on %s; "
             "%lld B SMEM per block; SMEM page peak %lld B", (long long)o.grid,
             (long long)o.per_sm, (long long)t->num_sms, t->name, (long long)o.smem_per_block,
             (long long)peak);
        c->cert.has_occupancy = true;
        c->cert.occupancy = (verify_occupancy){o.per_sm, o.grid, o.threads, o.regs,
                                               o.smem_per_block, peak};
    }
}
