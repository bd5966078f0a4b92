/*
 * options.c - the table-driven command-line option parser every amk command uses: one loop over
 * argv, the strict base parsers for typed values, and the usage text printed from the same table
 * (so --help can never describe options the parser does not take, or the other way round).
 */
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "base/base.h"

#define HELP_COLUMN 18   /* width of "--name VALUE" before the help text */

/* Say what is wrong in the caller's buffer and answer false. */
#define fail(err, err_len, ...) (base_say(err, err_len, __VA_ARGS__), false)

static bool is_help(const char *a) { return !strcmp(a, "--help") || !strcmp(a, "-h"); }

/* An argument in option position: starts with '-' and is not a lone "-". */
static bool is_option(const char *a) { return a[0] == '-' && a[1]; }

/* The option a names ("--steps" or "--steps=5"), or NULL; *eq gets the '=' value or NULL. */
static const base_option *find(const base_cmdline *cl, const char *a, const char **eq)
{
    const char *e = strchr(a, '=');
    size_t n = e ? (size_t)(e - a) : strlen(a);
    for (int i = 0; i < cl->n_opts; i++)
        if (strlen(cl->opts[i].name) == n && !strncmp(cl->opts[i].name, a, n)) {
            *eq = e ? e + 1 : NULL;
            return &cl->opts[i];
        }
    return NULL;
}

/* "an integer in [1, 1000000]", "an integer >= 0", "an integer". */
static void describe_int(char *buf, size_t len, int64_t lo, int64_t hi, int64_t type_max)
{
    if (lo == 0 && hi == 0)
        snprintf(buf, len, "an integer");
    else if (hi == type_max)
        snprintf(buf, len, "an integer >= %lld", (long long)lo);
    else
        snprintf(buf, len, "an integer in [%lld, %lld]", (long long)lo, (long long)hi);
}

static void describe_choices(char *buf, size_t len, const char *const *choices)
{
    size_t n = (size_t)snprintf(buf, len, "one of");
    for (int i = 0; choices[i] && n < len; i++)
        n += (size_t)snprintf(buf + n, len - n, "%s %s", i ? "," : "", choices[i]);
}

/* Store the value v of option o; false (err filled) when v is not what o accepts. */
static bool store(const base_option *o, const char *v, char *err, size_t err_len)
{
    char want[512];
    switch (o->type) {
    case BASE_OPT_FLAG:
        *(bool *)o->dst = true;
        return true;
    case BASE_OPT_STRING:
        *(const char **)o->dst = v;
        return true;
    case BASE_OPT_STRINGS: {
        base_opt_strings *l = o->dst;
        if (l->n >= l->cap)
            return fail(err, err_len, "%s: given more than %d times", o->name, l->cap);
        l->v[l->n++] = v;
        return true;
    }
    case BASE_OPT_INT:
        if (o->lo == 0 && o->hi == 0 ? base_parse_int(v, INT32_MIN, INT32_MAX, o->dst)
                                     : base_parse_int(v, (int)o->lo, (int)o->hi, o->dst))
            return true;
        describe_int(want, sizeof want, o->lo, o->hi, INT32_MAX);
        break;
    case BASE_OPT_I64:
        if (o->lo == 0 && o->hi == 0 ? base_parse_i64(v, INT64_MIN, INT64_MAX, o->dst)
                                     : base_parse_i64(v, o->lo, o->hi, o->dst))
            return true;
        describe_int(want, sizeof want, o->lo, o->hi, INT64_MAX);
        break;
    case BASE_OPT_U64:
        if (base_parse_u64(v, o->dst))
            return true;
        snprintf(want, sizeof want, "an unsigned 64-bit integer (decimal or 0x hex)");
        break;
    case BASE_OPT_DOUBLE:
        if (base_parse_double(v, o->dlo, o->dhi, o->dst))
            return true;
        if (isinf(o->dhi))
            snprintf(want, sizeof want, "a number >= %g", o->dlo);
        else
            snprintf(want, sizeof want, "a number in [%g, %g]", o->dlo, o->dhi);
        break;
    case BASE_OPT_CHOICE:
        for (int i = 0; o->choices[i]; i++)
            if (!strcmp(v, o->choices[i])) {
                *(int *)o->dst = i;
                return true;
            }
        describe_choices(want, sizeof want, o->choices);
        break;
    }
    return fail(err, err_len, "%s: expected %s, got '%.200s'", o->name, want, v);
}

/* --help or -h in option position (values skipped, nothing after "--"). */
static bool wants_help(const base_cmdline *cl, int argc, char **argv)
{
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *eq;
        if (!strcmp(a, "--"))
            return false;
        if (is_help(a))
            return true;
        const base_option *o = is_option(a) ? find(cl, a, &eq) : NULL;
        if (o && o->type != BASE_OPT_FLAG && !eq)
            i++;
    }
    return false;
}

/* One option argument argv[*i] (its value may be argv[*i + 1]). */
static bool parse_option(const base_cmdline *cl, int argc, char **argv, int *i, bool *seen,
                         char *err, size_t err_len)
{
    const char *a = argv[*i], *eq = NULL;
    const base_option *o = find(cl, a, &eq);
    if (!o)
        return fail(err, err_len, "unknown option '%.200s'", a);
    seen[o - cl->opts] = true;
    if (o->type == BASE_OPT_FLAG) {
        if (eq)
            return fail(err, err_len, "%s takes no value, got '%.200s'", o->name, a);
        return store(o, NULL, err, err_len);
    }
    if (!eq) {
        if (*i + 1 >= argc)
            return fail(err, err_len, "%s needs a value (%s)", o->name, o->value ? o->value : "");
        eq = argv[++*i];
    }
    return store(o, eq, err, err_len);
}

base_opts_status base_opts_parse(const base_cmdline *cl, int argc, char **argv, char *err,
                                 size_t err_len)
{
    if (err && err_len)
        err[0] = 0;
    if (wants_help(cl, argc, argv))
        return BASE_OPTS_HELP;
    bool seen[cl->n_opts + 1];
    memset(seen, 0, sizeof seen);
    int n_pos = 0;
    bool only_pos = false;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!only_pos && !strcmp(a, "--")) {
            only_pos = true;
        } else if (!only_pos && is_option(a)) {
            if (!parse_option(cl, argc, argv, &i, seen, err, err_len))
                return BASE_OPTS_ERROR;
        } else if (cl->max_pos >= 0 && n_pos >= cl->max_pos) {
            base_say(err, err_len, "unexpected argument '%.200s' (%s: at most %d)", a,
                     cl->pos_name ? cl->pos_name : "positional arguments", cl->max_pos);
            return BASE_OPTS_ERROR;
        } else {
            cl->pos[n_pos++] = a;
        }
    }
    if (cl->n_pos)
        *cl->n_pos = n_pos;
    if (n_pos < cl->min_pos) {
        base_say(err, err_len, "%s is required", cl->pos_name ? cl->pos_name : "an argument");
        return BASE_OPTS_ERROR;
    }
    for (int i = 0; i < cl->n_opts; i++)
        if (cl->opts[i].required && !seen[i]) {
            base_say(err, err_len, "%s is required", cl->opts[i].name);
            return BASE_OPTS_ERROR;
        }
    return BASE_OPTS_OK;
}

/* " (default X)" from the value dst holds now; nothing for an unset string. */
static void put_default(const base_option *o, base_sb *out)
{
    switch (o->type) {
    case BASE_OPT_STRING:
        if (*(const char *const *)o->dst)
            base_sb_fmt(out, " (default %s)", *(const char *const *)o->dst);
        break;
    case BASE_OPT_INT: base_sb_fmt(out, " (default %d)", *(const int *)o->dst); break;
    case BASE_OPT_I64:
        base_sb_fmt(out, " (default %lld)", (long long)*(const int64_t *)o->dst);
        break;
    case BASE_OPT_U64:
        base_sb_fmt(out, " (default %llu)", (unsigned long long)*(const uint64_t *)o->dst);
        break;
    case BASE_OPT_DOUBLE: base_sb_fmt(out, " (default %g)", *(const double *)o->dst); break;
    case BASE_OPT_CHOICE:
        base_sb_fmt(out, " (default %s)", o->choices[*(const int *)o->dst]);
        break;
    default: break;
    }
}

static void put_option(const base_option *o, base_sb *out)
{
    char left[128];
    snprintf(left, sizeof left, "%s%s%s", o->name, o->value ? " " : "", o->value ? o->value : "");
    base_sb_fmt(out, "  %-*s ", HELP_COLUMN, left);
    for (const char *h = o->help ? o->help : ""; *h; h++) {
        base_sb_put(out, h, 1);
        if (*h == '\n')
            base_sb_fmt(out, "  %-*s ", HELP_COLUMN, "");
    }
    if (o->show_default)
        put_default(o, out);
    base_sb_str(out, "\n");
}

void base_opts_usage(const base_cmdline *cl, base_sb *out)
{
    base_sb_str(out, cl->synopsis ? cl->synopsis : "");
    if (cl->about)
        base_sb_fmt(out, "\n%s", cl->about);
    if (cl->n_opts)
        base_sb_str(out, "\n");
    for (int i = 0; i < cl->n_opts; i++)
        put_option(&cl->opts[i], out);
    if (cl->epilog)
        base_sb_fmt(out, "\n%s", cl->epilog);
}
