/*
 * eval.c - one trial of the search: lower a config, prove the program (a candidate that is not
 * PROVED stops there: no run, no latency), gate the reference VM against the eager forward,
 * then measure the megakernel on a GPU (checked against the VM at every timed step) or predict
 * the latency. Also the paired A/B of two plans on a GPU, judged by the audit code.
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench/bench_run.h"
#include "refvm/refvm.h"
#include "search/search.h"

struct search_ctx {
    search_opts o;
    refvm_st *st;
    int64_t vocab;
    int64_t n_tokens;               /* gate_steps */
    int32_t *tokens;                /* [n_tokens]: input token of each position */
    float *logits;                  /* [n_tokens * vocab]: the eager forward's logits */
};

void search_opts_default(search_opts *o)
{
    memset(o, 0, sizeof *o);
    lower_opts_default(&o->lower);
    o->gate_steps = SEARCH_GATE_STEPS;
    o->bench_steps = 0;
    o->repeats = 10;
    o->warmup = 1;
}

const char *search_latency_kind_name(search_latency_kind k)
{
    return k == SEARCH_MEASURED_GPU ? "measured-gpu" : "predicted";
}

void search_plan_free(search_plan *p)
{
    if (!p)
        return;
    ir_program_free(p->program);
    free(p->cert_json);
    bench_reference_free(p->reference);
    free(p->reference);
    memset(p, 0, sizeof *p);
}

void search_ctx_free(search_ctx *ctx)
{
    if (!ctx)
        return;
    refvm_st_close(ctx->st);
    free(ctx->tokens);
    free(ctx->logits);
    free(ctx);
}

/* The eager forward decodes greedily from token 0; its tokens and logits are the reference
 * every candidate's VM is fed and compared with. */
static ir_status eager_reference(search_ctx *ctx, ir_error *err)
{
    const lower_model *m = ctx->o.model;
    int64_t n = ctx->n_tokens;
    refvm_eager *e = NULL;
    ctx->vocab = m->vocab;
    ctx->tokens = calloc((size_t)n, sizeof *ctx->tokens);
    ctx->logits = calloc((size_t)(n * m->vocab), sizeof *ctx->logits);
    if (!ctx->tokens || !ctx->logits)
        return ir_fail(err, IR_ERR_NOMEM, "search", "out of memory");
    ir_status s = refvm_eager_new(m, ctx->st, n, &e, err);
    int32_t tok = 0;
    for (int64_t pos = 0; s == IR_OK && pos < n; pos++) {
        const float *l;
        ctx->tokens[pos] = tok;
        if ((s = refvm_eager_forward(e, tok, pos, &l, err)) == IR_OK) {
            memcpy(ctx->logits + pos * m->vocab, l, (size_t)m->vocab * sizeof *l);
            tok = refvm_argmax(l, m->vocab);
        }
    }
    refvm_eager_free(e);
    return s;
}

const ir_target *search_ctx_target(const search_ctx *ctx) { return ctx->o.target; }

ir_status search_ctx_new(const search_opts *o, search_ctx **out, ir_error *err)
{
    *out = NULL;
    if (o->gate_steps < 1 || o->gate_steps > o->model->max_pos)
        return ir_fail(err, IR_ERR_MALFORMED, "gate_steps", "must be in [1, %lld]",
                       (long long)o->model->max_pos);
    if (o->gpu && (o->bench_steps < 0 || o->bench_steps > o->gate_steps))
        return ir_fail(err, IR_ERR_MALFORMED, "bench_steps", "must be in [0, gate_steps %lld] "
                       "(0: gate_steps)", (long long)o->gate_steps);
    if (o->gpu) {
#ifdef AMK_HAVE_CUDA
        char name[256], why[256];
        if (!bench_gpu_available(name, sizeof name, why, sizeof why))
            return ir_fail(err, IR_ERR_UNSUPPORTED, "device", "%s", why);
#else
        return ir_fail(err, IR_ERR_UNSUPPORTED, "device", "this build has no CUDA support");
#endif
    }
    search_ctx *ctx = calloc(1, sizeof *ctx);
    if (!ctx)
        return ir_fail(err, IR_ERR_NOMEM, "search", "out of memory");
    ctx->o = *o;
    if (!ctx->o.bench_steps)
        ctx->o.bench_steps = o->gate_steps;
    ctx->n_tokens = o->gate_steps;
    ir_status s = refvm_st_open(o->weights, &ctx->st, err);
    /* lower in the weights' own dtype, so the VM and the megakernel bind them as they are */
    if (s == IR_OK && ctx->st->n > 0 && ctx->st->tensors[0].supported)
        ctx->o.lower.dtype = ctx->st->tensors[0].dtype;
    if (s == IR_OK)
        s = eager_reference(ctx, err);
    if (s != IR_OK) {
        search_ctx_free(ctx);
        return s;
    }
    *out = ctx;
    return IR_OK;
}

/* ---------------------------------------------------------------- the stages */

static void reject(search_verdict *v, const char *obligation, const char *witness,
                   const char *fmt, ...) __attribute__((format(printf, 4, 5)));
static void reject(search_verdict *v, const char *obligation, const char *witness,
                   const char *fmt, ...)
{
    v->valid = false;
    snprintf(v->rejected_obligation, sizeof v->rejected_obligation, "%s", obligation);
    snprintf(v->witness_kind, sizeof v->witness_kind, "%s", witness);
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(v->rejected_reason, sizeof v->rejected_reason, fmt, ap);
    va_end(ap);
}

/* Write the program and its certificate as ID.program.json and ID.cert.json in cert_dir. */
static ir_status write_proof(const search_ctx *ctx, const ir_program *p, const char *cert,
                             search_verdict *v, ir_error *err)
{
    char path[400];
    snprintf(path, sizeof path, "%s/%s.program.json", ctx->o.cert_dir, v->schedule_id);
    ir_status s = ir_write_file(p, path, err);
    snprintf(v->certificate, sizeof v->certificate, "%s/%s.cert.json", ctx->o.cert_dir,
             v->schedule_id);
    if (s == IR_OK)
        s = ir_out_write(v->certificate, cert, strlen(cert), err);
    if (s != IR_OK)
        v->certificate[0] = 0;
    return s;
}

/* Verify p; v->valid only when PROVED. *cert receives the certificate text (caller frees). */
static ir_status prove(const search_ctx *ctx, const ir_program *p, search_verdict *v,
                       char **cert, ir_error *err)
{
    verify_opts vo;
    verify_opts_default(&vo);
    vo.target = ctx->o.target;
    verify_result r;
    ir_status s = verify_program(p, &vo, &r, err);
    if (s != IR_OK)
        return s;
    for (int i = 0; i < VERIFY_N_OBLIGATIONS; i++) {
        v->proof[i] = r.ob[i].status;
        v->proof_s[i] = r.ob[i].seconds;
    }
    if (r.verdict == VERIFY_PROVED) {
        v->valid = true;
        *cert = r.certificate_json;
        r.certificate_json = NULL;
    } else {
        int bad = 0;
        while (bad < VERIFY_N_OBLIGATIONS - 1 && r.ob[bad].status == VERIFY_PROVED)
            bad++;
        reject(v, verify_obligation_name((verify_obligation)bad), r.witness_kind, "%s %s%s%s%s: %s",
               verify_obligation_name((verify_obligation)bad), verify_verdict_name(r.verdict),
               r.witness_kind[0] ? " (" : "", r.witness_kind, r.witness_kind[0] ? ")" : "",
               r.ob[bad].detail);
    }
    verify_result_free(&r);
    if (v->valid && ctx->o.cert_dir)
        s = write_proof(ctx, p, *cert, v, err);
    return s;
}

/* Keep the VM's logits of position pos as the megakernel's reference (*ref made on the first
 * call, for the first bench_steps positions). */
static ir_status capture(const search_ctx *ctx, int64_t pos, const float *l, bench_reference **ref,
                         ir_error *err)
{
    int64_t n = ctx->o.bench_steps, V = ctx->vocab;
    if (pos >= n)
        return IR_OK;
    if (!*ref) {
        bench_reference *r = calloc(1, sizeof *r);
        if (r) {
            r->tokens = malloc(sizeof *r->tokens * (size_t)n);
            r->logits = malloc(sizeof *r->logits * (size_t)(n * V));
        }
        if (!r || !r->tokens || !r->logits) {
            if (r)
                bench_reference_free(r);
            free(r);
            return ir_fail(err, IR_ERR_NOMEM, "search", "out of memory");
        }
        r->steps = n;
        r->vocab = V;
        *ref = r;
    }
    (*ref)->tokens[pos] = ctx->tokens[pos];
    memcpy((*ref)->logits + pos * V, l, sizeof *l * (size_t)V);
    return IR_OK;
}

/* The VM fed the reference tokens, each step's logits compared with the eager forward's. On a
 * GPU context the logits of the first bench_steps positions become *ref, the reference the
 * megakernel's timed steps are checked against (the VM of this very plan, no second run). */
static ir_status gate(const search_ctx *ctx, const ir_program *p, search_verdict *v,
                      bench_reference **ref, ir_error *err)
{
    refvm_opts o;
    refvm_opts_default(&o);
    o.tie_embeddings = ctx->o.model->tie_embeddings;
    refvm *vm = NULL;
    ir_status s = refvm_new(p, &o, &vm, err);
    if (s == IR_OK)
        s = refvm_bind(vm, ctx->st, err);
    int64_t agree = 0;
    v->checked = s == IR_OK;
    v->correct = true;
    for (int64_t pos = 0; s == IR_OK && pos < ctx->o.gate_steps && v->correct; pos++) {
        refvm_result r = {0};
        if ((s = refvm_step(vm, ctx->tokens[pos], pos, &r, err)) != IR_OK)
            break;
        int64_t n = 0;
        const float *l = r.outcome == REFVM_DONE ? refvm_logits(vm, &n) : NULL;
        if (!l || n != ctx->vocab) {
            v->correct = false;
            snprintf(v->why_incorrect, sizeof v->why_incorrect, "VM step at pos %lld: %s",
                     (long long)pos, l ? "logits of another size" : refvm_outcome_name(r.outcome));
        } else {
            if (ref && (s = capture(ctx, pos, l, ref, err)) != IR_OK) {
                refvm_result_free(&r);
                break;
            }
            refvm_gate_cmp c = refvm_gate_compare(l, ctx->logits + pos * ctx->vocab, n,
                                                  REFVM_GATE_REL_TOL);
            agree += c.top_a == c.top_b;
            if (c.max_abs_err > v->max_abs_err)
                v->max_abs_err = c.max_abs_err;
            if (!c.pass) {
                v->correct = false;
                snprintf(v->why_incorrect, sizeof v->why_incorrect, "VM vs eager at pos %lld: "
                         "max |err| %.3g, top-1 %d vs %d", (long long)pos, c.max_abs_err,
                         c.top_a, c.top_b);
            }
        }
        refvm_result_free(&r);
        v->gate_steps = pos + 1;
    }
    v->top1_agreement = v->gate_steps ? (double)agree / (double)v->gate_steps : 0;
    refvm_free(vm);
    return s;
}

/* The VM's logits of p at the context's tokens (bench_steps of them), what the megakernel is
 * checked against. On success *out is a new bench_reference the caller frees. */
static ir_status vm_reference(const search_ctx *ctx, const ir_program *p, bench_reference **out,
                              ir_error *err)
{
    if (!(*out = calloc(1, sizeof **out)))
        return ir_fail(err, IR_ERR_NOMEM, "search", "out of memory");
    ir_status s = bench_reference_compute(p, ctx->st, ctx->o.model->tie_embeddings,
                                          ctx->o.bench_steps, ctx->tokens, *out, err);
    if (s != IR_OK) {
        free(*out);
        *out = NULL;
    }
    return s;
}

/* The megakernel timed on the GPU, every timed step gated against the VM's logits (*refp: the
 * gate's capture, or made here when the gate stopped short of bench_steps positions). */
static ir_status measure_gpu(const search_ctx *ctx, const ir_program *p, const char *cert,
                             search_verdict *v, bench_reference **refp, ir_error *err)
{
    bench_gpu *g = NULL;
    bench_run_result r = {0};
    bool tie = ctx->o.model->tie_embeddings;
    mk_status ls = MK_OK;
    ir_status s = IR_OK;
    if (*refp && (*refp)->steps != ctx->o.bench_steps) {
        bench_reference_free(*refp);
        free(*refp);
        *refp = NULL;
    }
    if (!*refp)
        s = vm_reference(ctx, p, refp, err);
    if (s == IR_OK)
        s = bench_gpu_new(p, cert, strlen(cert), ctx->o.weights, tie, ctx->o.device, *refp,
                          NULL, &g, &ls, err);
    if (s != IR_OK && ls != MK_OK) {            /* the megakernel refused or failed the plan */
        v->gpu_checked = true;
        v->gpu_correct = v->correct = false;
        snprintf(v->why_incorrect, sizeof v->why_incorrect, "megakernel load: %s at %.100s: "
                 "%.150s", mk_status_name(ls), err->where, err->why);
        s = IR_OK;
    } else if (s == IR_OK) {
        bench_timing_source src = bench_gpu_source(g);
        bench_run_opts o = {.steps = ctx->o.bench_steps, .repeats = ctx->o.repeats,
                            .warmup = ctx->o.warmup, .weight_bytes = ir_weight_bytes(p),
                            .spec_bandwidth_gbs = ctx->o.target->hbm_bandwidth_gbs};
        if ((s = bench_run(&src, &o, &r, err)) == IR_OK) {
            v->gpu_checked = true;
            v->gpu_correct = r.gate.pass;
            v->correct = v->correct && r.gate.pass;
            if (!r.gate.pass)
                snprintf(v->why_incorrect, sizeof v->why_incorrect, "GPU vs VM: %s", r.gate.why);
            else if (!r.has_latency)
                snprintf(v->why_incorrect, sizeof v->why_incorrect, "latency withheld: %.280s",
                         r.withheld_why);
            v->has_latency = r.has_latency;
            v->latency_kind = SEARCH_MEASURED_GPU;
            v->latency_us = r.has_latency ? r.latency.s.median : 0;
        }
    }
    bench_run_result_free(&r);
    bench_gpu_free(g);
    return s;
}

/* Lower c; a refusal is a verdict (rejected at "lower"), not an error. */
static ir_status lower(const search_ctx *ctx, const ir_config *c, search_verdict *v,
                       ir_program **p, ir_error *err)
{
    ir_error le = {0};
    ir_status s = lower_program(ctx->o.model, c, ctx->o.target, &ctx->o.lower, p, &le);
    if (s == IR_ERR_NOMEM)
        return ir_fail(err, s, le.where, "%s", le.why);
    if (s != IR_OK)
        reject(v, "lower", "", "lowering refused at %s: %s", le.where, le.why);
    return IR_OK;
}

ir_status search_eval(search_ctx *ctx, const ir_config *c, search_verdict *v, search_plan *plan,
                      ir_error *err)
{
    memset(v, 0, sizeof *v);
    if (plan)
        memset(plan, 0, sizeof *plan);
    ir_program *p = NULL;
    char *cert = NULL;
    bench_reference *ref = NULL;
    v->simplicity = search_simplicity(c);
    ir_status s = search_schedule_id(c, v->schedule_id, err);
    if (s == IR_OK)
        s = lower(ctx, c, v, &p, err);
    if (s == IR_OK && p) {
        v->tasks = p->n_tasks;
        v->weight_mb = (double)ir_weight_bytes(p) / 1e6;
        v->bound_us = bench_floor_us(ir_weight_bytes(p), ctx->o.target->hbm_bandwidth_gbs);
        s = prove(ctx, p, v, &cert, err);
    }
    if (s == IR_OK && v->valid)
        s = gate(ctx, p, v, ctx->o.gpu ? &ref : NULL, err);
    if (s == IR_OK && v->valid && v->correct) {
        if (ctx->o.gpu) {
            s = measure_gpu(ctx, p, cert, v, &ref, err);
        } else if ((s = search_predict_us(p, ctx->o.target, &v->latency_us, err)) == IR_OK) {
            v->has_latency = true;
            v->latency_kind = SEARCH_PREDICTED;
        }
    }
    if (v->has_latency && v->latency_us > 0)
        v->pct_of_roofline = v->bound_us / v->latency_us * 100;
    if (s == IR_OK && plan && v->valid) {
        plan->program = p;
        plan->cert_json = cert;
        plan->cert_len = strlen(cert);
        plan->reference = ref;
        p = NULL;
        cert = NULL;
        ref = NULL;
    }
    ir_program_free(p);
    free(cert);
    bench_reference_free(ref);
    free(ref);
    return s;
}

/* ---------------------------------------------------------------- paired A/B */

/* The A/B's ratio audited as a claim; out->has when the audit CONFIRMED it. */
static ir_status audit_ab(const search_ctx *ctx, const bench_ab_result *ab, int64_t wb,
                          search_paired *out, ir_error *err)
{
    const lower_model *m = ctx->o.model;
    int64_t d[7] = {m->n_layers, m->hidden, m->intermediate, m->n_heads, m->n_kv_heads,
                    m->head_dim, m->vocab};
    const int64_t *dims[2] = {d, d};
    int rank[2] = {7, 7};
    bench_claim claim;
    memset(&claim, 0, sizeof claim);
    const ir_target *t = ctx->o.target;
    ir_status s = bench_claim_from_ab(ab, "incumbent vs candidate", t->name, wb,
                                      t->hbm_bandwidth_gbs, 0, 2, rank, dims, &claim, err);
    bench_audit_opts ao;
    bench_audit_opts_default(&ao);
    bench_audit_result r;
    if (s == IR_OK && (s = bench_audit(&claim, &ao, &r, err)) == IR_OK) {
        out->has = r.verdict == BENCH_AUDIT_CONFIRMED && r.has_ci;
        out->estimate = r.ci.estimate;
        out->lo = r.ci.lo;
        out->hi = r.ci.hi;
        for (int i = 0; !out->has && i < r.n_reasons && !out->why[0]; i++)
            if (r.reasons[i].effect != BENCH_EFFECT_NOTE)
                snprintf(out->why, sizeof out->why, "%s", r.reasons[i].message);
    }
    bench_claim_free(&claim);
    return s;
}

ir_status search_paired_ab(search_ctx *ctx, const search_plan *incumbent,
                           const search_plan *candidate, search_paired *out, ir_error *err)
{
    memset(out, 0, sizeof *out);
    if (!ctx->o.gpu)
        return ir_fail(err, IR_ERR_UNSUPPORTED, "device", "a paired A/B needs a GPU context");
    const search_plan *pl[2] = {incumbent, candidate};
    static const char *const label[2] = {"gpu-megakernel incumbent", "gpu-megakernel candidate"};
    bench_reference *made[2] = {NULL, NULL};
    const bench_reference *ref[2];
    bench_gpu *g[2] = {NULL, NULL};
    bench_ab_result ab;
    memset(&ab, 0, sizeof ab);
    ir_status s = IR_OK;
    /* both sides decode the context's tokens: the references of their measurements */
    for (int i = 0; i < 2 && s == IR_OK; i++)
        if (!(ref[i] = pl[i]->reference) && (s = vm_reference(ctx, pl[i]->program, &made[i], err))
            == IR_OK)
            ref[i] = made[i];
    for (int i = 0; i < 2 && s == IR_OK; i++) {
        mk_status ls;
        s = bench_gpu_new(pl[i]->program, pl[i]->cert_json, pl[i]->cert_len, ctx->o.weights,
                          ctx->o.model->tie_embeddings, ctx->o.device, ref[i], label[i], &g[i],
                          &ls, err);
    }
    if (s == IR_OK) {
        int64_t wa = ir_weight_bytes(incumbent->program), wb = ir_weight_bytes(candidate->program);
        bench_timing_source src[2] = {bench_gpu_source(g[0]), bench_gpu_source(g[1])};
        bench_ab_opts o;
        bench_ab_opts_default(&o);
        o.run = (bench_run_opts){.steps = ctx->o.bench_steps, .repeats = ctx->o.repeats,
                                 .warmup = ctx->o.warmup, .weight_bytes = wa < wb ? wa : wb,
                                 .spec_bandwidth_gbs = ctx->o.target->hbm_bandwidth_gbs};
        if ((s = bench_ab_run(&src[0], &src[1], &o, &ab, err)) == IR_OK)
            s = audit_ab(ctx, &ab, o.run.weight_bytes, out, err);
    }
    bench_ab_result_free(&ab);
    for (int i = 0; i < 2; i++) {
        bench_gpu_free(g[i]);
        bench_reference_free(made[i]);
        free(made[i]);
    }
    return s;
}
