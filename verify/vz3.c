/*
 * vz3.c - Z3 sessions for the obligations: one context and one fresh solver per query, with the
 * per-query timeout (cut to the run's deadline) and resource limit, statistics counted into the
 * obligation, term builders and model readers. Also the Z3 version and memory release of verify.h.
 */
#include <stdio.h>
#include <string.h>

#include "base/base.h"
#include "verify/verify_internal.h"

/* ---------------------------------------------------------------- Z3 sessions */

/* The Z3 timeout of the next query: the per-query limit, cut to what is left before the
 * deadline (at least 1 ms, so a query past it gives up at once). */
static int64_t query_timeout_ms(const vctx *c)
{
    int64_t ms = c->o->timeout_ms;
    if (c->t_end > 0) {
        double left = (c->t_end - base_now_s()) * 1000.0;
        if (left < (double)ms)
            ms = left < 1 ? 1 : (int64_t)left;
    }
    return ms;
}

bool vz3_open(vz3 *z, vctx *c, verify_obligation ob, bool arith)
{
    memset(z, 0, sizeof *z);
    z->c = c;
    z->ob = ob;
    Z3_config cfg = Z3_mk_config();
    if (!cfg)
        return false;
    int64_t tmo = query_timeout_ms(c);
    char buf[32];
    snprintf(buf, sizeof buf, "%lld", (long long)tmo);
    Z3_set_param_value(cfg, "timeout", buf);
    z->ctx = Z3_mk_context(cfg);
    Z3_del_config(cfg);
    if (!z->ctx)
        return false;
    Z3_set_error_handler(z->ctx, NULL);
    /* Queries over Booleans and cardinalities only (stuck cuts, race windows without ranks)
       go to the SAT-based finite-domain solver, which internalizes them in about half the
       time of the SMT core; anything with integers to the SMT core. */
    z->solver = arith ? Z3_mk_simple_solver(z->ctx)
                      : Z3_mk_solver_for_logic(z->ctx, Z3_mk_string_symbol(z->ctx, "QF_FD"));
    Z3_solver_inc_ref(z->ctx, z->solver);
    Z3_params prm = Z3_mk_params(z->ctx);
    Z3_params_inc_ref(z->ctx, prm);
    Z3_params_set_uint(z->ctx, prm, Z3_mk_string_symbol(z->ctx, "timeout"),
                       (unsigned)(tmo > 0 && tmo < 4000000000LL ? tmo : 4000000000U));
    Z3_params_set_uint(z->ctx, prm, Z3_mk_string_symbol(z->ctx, "rlimit"),
                       (unsigned)(c->o->rlimit > 0 && c->o->rlimit < 4000000000LL
                                      ? c->o->rlimit : 4000000000U));
    if (arith)
        Z3_params_set_uint(z->ctx, prm, Z3_mk_string_symbol(z->ctx, "arith.solver"), 2);
    Z3_solver_set_params(z->ctx, z->solver, prm);
    Z3_params_dec_ref(z->ctx, prm);
    if (Z3_get_error_code(z->ctx) != Z3_OK) {
        vz3_close(z);
        return false;
    }
    return true;
}

Z3_lbool vz3_check(vz3 *z)
{
    Z3_lbool res = Z3_solver_check(z->ctx, z->solver);
    if (Z3_get_error_code(z->ctx) != Z3_OK)
        res = Z3_L_UNDEF;
    verify_ob_result *o = &z->c->r->ob[z->ob];
    o->solver_queries++;
    Z3_stats st = Z3_solver_get_statistics(z->ctx, z->solver);
    Z3_stats_inc_ref(z->ctx, st);
    for (unsigned i = 0; i < Z3_stats_size(z->ctx, st); i++) {
        const char *k = Z3_stats_get_key(z->ctx, st, i);
        if (strstr(k, "conflicts") && Z3_stats_is_uint(z->ctx, st, i))
            o->solver_conflicts += Z3_stats_get_uint_value(z->ctx, st, i);
    }
    Z3_stats_dec_ref(z->ctx, st);
    return res;
}

void vz3_close(vz3 *z)
{
    if (!z->ctx)
        return;
    if (z->solver)
        Z3_solver_dec_ref(z->ctx, z->solver);
    Z3_del_context(z->ctx);
    z->ctx = NULL;
}

Z3_ast vz3_bool(vz3 *z, const char *prefix, int64_t i)
{
    char name[64];
    snprintf(name, sizeof name, "%s%lld", prefix, (long long)i);
    return Z3_mk_const(z->ctx, Z3_mk_string_symbol(z->ctx, name), Z3_mk_bool_sort(z->ctx));
}

Z3_ast vz3_int(vz3 *z, const char *prefix, int64_t i)
{
    char name[64];
    snprintf(name, sizeof name, "%s%lld", prefix, (long long)i);
    return Z3_mk_const(z->ctx, Z3_mk_string_symbol(z->ctx, name), Z3_mk_int_sort(z->ctx));
}

Z3_ast vz3_num(vz3 *z, int64_t v) { return Z3_mk_int64(z->ctx, v, Z3_mk_int_sort(z->ctx)); }

Z3_ast vz3_and(vz3 *z, int n, const Z3_ast *a)
{
    return n == 0 ? Z3_mk_true(z->ctx) : n == 1 ? a[0] : Z3_mk_and(z->ctx, (unsigned)n, a);
}

Z3_ast vz3_or(vz3 *z, int n, const Z3_ast *a)
{
    return n == 0 ? Z3_mk_false(z->ctx) : n == 1 ? a[0] : Z3_mk_or(z->ctx, (unsigned)n, a);
}

Z3_ast vz3_pexpr(vz3 *z, ir_pexpr e, Z3_ast pos)
{
    Z3_ast terms[2] = {Z3_mk_mul(z->ctx, 2, (Z3_ast[]){vz3_num(z, e.mul), pos}), vz3_num(z, e.add)};
    Z3_ast v = Z3_mk_add(z->ctx, 2, terms);
    if (e.lo != INT64_MIN) {
        Z3_ast lo = vz3_num(z, e.lo);
        v = Z3_mk_ite(z->ctx, Z3_mk_lt(z->ctx, v, lo), lo, v);
    }
    if (e.hi != INT64_MAX) {
        Z3_ast hi = vz3_num(z, e.hi);
        v = Z3_mk_ite(z->ctx, Z3_mk_gt(z->ctx, v, hi), hi, v);
    }
    return v;
}

/* The value of a in the last model (completed where the model leaves a free), or NULL when there
 * is no model. The value lives in the context (Z3_mk_context keeps every AST it returns until the
 * context goes), so it outlasts the model. */
static Z3_ast model_value(vz3 *z, Z3_ast a)
{
    Z3_model m = Z3_solver_get_model(z->ctx, z->solver);
    if (!m)
        return NULL;
    Z3_model_inc_ref(z->ctx, m);
    Z3_ast out = NULL;
    if (!Z3_model_eval(z->ctx, m, a, true, &out))
        out = NULL;
    Z3_model_dec_ref(z->ctx, m);
    return out;
}

bool vz3_model_int(vz3 *z, Z3_ast a, int64_t *v)
{
    Z3_ast out = model_value(z, a);
    return out && Z3_get_numeral_int64(z->ctx, out, v);
}

bool vz3_model_bool(vz3 *z, Z3_ast a)
{
    Z3_ast out = model_value(z, a);
    return out && Z3_get_bool_value(z->ctx, out) == Z3_L_TRUE;
}

void verify_release_memory(void) { Z3_finalize_memory(); }

void verify_z3_version(char out[64])
{
    unsigned major, minor, build, rev;
    Z3_get_version(&major, &minor, &build, &rev);
    snprintf(out, 64, "%u.%u.%u.%u", major, minor, build, rev);
}
