/*
 * ir_json_read.c - reads AMK IR v0.2.x JSON (plus our extra keys) into an ir_program.
 *
 * Every check that can be made on the JSON alone happens here, so that later parts may trust
 * ids and references: types, integral ranges, enum names, ABI caps, dense ids, references to
 * buffers, counters, pages and tasks, shapes, position expressions, the launch plan's cover of
 * the tasks. Any failure is IR_ERR_MALFORMED with the JSON path of the offending value.
 */
#include <cjson/cJSON.h>
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

#include "base/base.h"
#include "ir/amk_ir.h"

#define MAX_COUNT (1 << 26) /* most buffers, counters, tasks, pages a program may have */

typedef struct {
    ir_error *err;
    ir_warnings *warn;
    bool strict;            /* unknown keys are errors (config read for lowering) */
} reader;

/* A number node whose literal in the text had a fraction or an exponent ("1.0", "1e3"). cJSON
 * keeps only the double, so the literal's form is recorded in a type bit that cJSON itself never
 * sets or reads (cJSON_IsNumber and the printer look at the low byte only). Integer fields must
 * be written as integers, as AMK's validate() and loader require: 1.0 is not a threshold. */
#define REAL_LITERAL (1 << 12)

/* Past one JSON string starting at s (the opening quote), or at end. */
static const char *skip_string(const char *s, const char *end)
{
    for (s++; s < end && *s != '"'; s++)
        if (*s == '\\' && s + 1 < end)
            s++;
    return s < end ? s + 1 : end;
}

/* Walks the tree in document order beside a cursor over the text: the k-th number node is the
 * k-th number token outside strings (the only tokens starting with '-' or a digit). */
static void mark_real_literals(cJSON *v, const char **cur, const char *end)
{
    for (; v; v = v->next) {
        if (cJSON_IsNumber(v)) {
            const char *s = *cur;
            while (s < end && *s != '-' && !(*s >= '0' && *s <= '9'))
                s = *s == '"' ? skip_string(s, end) : s + 1;
            bool real = false;
            for (; s < end && *s && strchr("+-0123456789.eE", *s); s++)
                real |= *s == '.' || *s == 'e' || *s == 'E';
            if (real)
                v->type |= REAL_LITERAL;
            *cur = s;
        }
        if (v->child)
            mark_real_literals(v->child, cur, end);
    }
}

/* Parse len bytes as exactly one JSON value. cJSON alone stops after the first value and would
 * accept "{...} junk"; here anything but whitespace after the value makes the text invalid, with
 * *trailing set and *end pointing at the extra bytes. */
static cJSON *parse_whole(const char *text, size_t len, const char **end, bool *trailing)
{
    const char *e = NULL;
    *trailing = false;
    cJSON *root = cJSON_ParseWithLengthOpts(text ? text : "", text ? len : 0, &e, false);
    if (end)
        *end = e;
    if (!root || !text || !e)
        return root;
    while (e < text + len && (unsigned char)*e <= ' ')
        e++;
    if (e < text + len) {
        cJSON_Delete(root);
        *trailing = true;
        if (end)
            *end = e;
        return NULL;
    }
    const char *cur = text;
    mark_real_literals(root, &cur, text + len);
    return root;
}

/* ---------------------------------------------------------------- scalar helpers */

static ir_status bad(reader *r, const char *path, const char *field, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

static ir_status bad(reader *r, const char *path, const char *field, const char *fmt, ...)
{
    char where[256];
    if (field && *field)
        snprintf(where, sizeof where, "%s%s%s", path, *path ? "." : "", field);
    else
        snprintf(where, sizeof where, "%s", path);
    char why[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(why, sizeof why, fmt, ap);
    va_end(ap);
    return ir_fail(r->err, IR_ERR_MALFORMED, where, "%s", why);
}

static const char *type_name(const cJSON *v)
{
    if (!v)
        return "missing";
    if (cJSON_IsNull(v))
        return "null";
    if (cJSON_IsBool(v))
        return "a boolean";
    if (cJSON_IsNumber(v))
        return "a number";
    if (cJSON_IsString(v))
        return "a string";
    if (cJSON_IsArray(v))
        return "an array";
    if (cJSON_IsObject(v))
        return "an object";
    return "invalid";
}

/* v as an integer in [lo, hi]. */
static ir_status as_int(reader *r, const cJSON *v, const char *path, const char *field,
                        int64_t lo, int64_t hi, int64_t *out)
{
    if (!cJSON_IsNumber(v))
        return bad(r, path, field, "must be an integer, got %s", type_name(v));
    double d = v->valuedouble;
    if (!isfinite(d))
        return bad(r, path, field, "must be a finite integer");
    if (d != floor(d) || (v->type & REAL_LITERAL))
        return bad(r, path, field, "must be an integer, got %.17g written as a real", d);
    if (d < (double)lo || d > (double)hi) {
        char l[32], h[32];
        base_bound_text(lo, l, sizeof l);
        base_bound_text(hi, h, sizeof h);
        return bad(r, path, field, "must be in [%s, %s], got %.17g", l, h, d);
    }
    *out = (int64_t)d;
    return IR_OK;
}

static ir_status as_real(reader *r, const cJSON *v, const char *path, const char *field,
                         double *out)
{
    if (!cJSON_IsNumber(v))
        return bad(r, path, field, "must be a number, got %s", type_name(v));
    if (!isfinite(v->valuedouble))
        return bad(r, path, field, "must be finite");
    *out = v->valuedouble;
    return IR_OK;
}

static ir_status as_bool(reader *r, const cJSON *v, const char *path, const char *field, bool *out)
{
    if (!cJSON_IsBool(v))
        return bad(r, path, field, "must be true or false, got %s", type_name(v));
    *out = cJSON_IsTrue(v);
    return IR_OK;
}

/* A string copied into a fixed buffer of cap bytes. */
static ir_status as_name(reader *r, const cJSON *v, const char *path, const char *field,
                         char *out, size_t cap)
{
    if (!cJSON_IsString(v))
        return bad(r, path, field, "must be a string, got %s", type_name(v));
    if (strlen(v->valuestring) >= cap)
        return bad(r, path, field, "longer than %zu characters", cap - 1);
    memcpy(out, v->valuestring, strlen(v->valuestring) + 1);
    return IR_OK;
}

static ir_status as_strdup(reader *r, const cJSON *v, const char *path, const char *field,
                           char **out)
{
    if (!cJSON_IsString(v))
        return bad(r, path, field, "must be a string, got %s", type_name(v));
    *out = strdup(v->valuestring);
    return *out ? IR_OK : ir_fail(r->err, IR_ERR_NOMEM, path, "out of memory");
}

typedef struct {
    const char *key;
    int at;                 /* position in the object */
} key_at;

static int cmp_key_at(const void *a, const void *b)
{
    const key_at *x = a, *y = b;
    int c = strcmp(x->key, y->key);
    return c ? c : (x->at > y->at) - (x->at < y->at);
}

/* Position of the first key of o that appears again later, or -1; *where gets that key. Small
 * objects compare every pair; large ones sort, so that a hostile object with 60,000 keys costs
 * milliseconds, not seconds. Returns -2 when out of memory. */
static int first_duplicate_key(const cJSON *o, const char **where)
{
    int n = 0;
    for (const cJSON *c = o->child; c; c = c->next)
        n++;
    if (n <= 16) {
        int i = 0;
        for (const cJSON *c = o->child; c; c = c->next, i++)
            for (const cJSON *d = c->next; d; d = d->next)
                if (!strcmp(d->string ? d->string : "", c->string ? c->string : "")) {
                    *where = c->string ? c->string : "";
                    return i;
                }
        return -1;
    }
    key_at *ks = malloc((size_t)n * sizeof *ks);
    if (!ks)
        return -2;
    int i = 0;
    for (const cJSON *c = o->child; c; c = c->next, i++)
        ks[i] = (key_at){c->string ? c->string : "", i};
    qsort(ks, (size_t)n, sizeof *ks, cmp_key_at);
    /* In each run of equal keys the first entry is the earliest occurrence. */
    int best = -1;
    for (i = 1; i < n; i++)
        if (!strcmp(ks[i].key, ks[i - 1].key) && (i == 1 || strcmp(ks[i - 1].key, ks[i - 2].key)) &&
            (best < 0 || ks[i - 1].at < best)) {
            best = ks[i - 1].at;
            *where = ks[i - 1].key;
        }
    free(ks);
    return best;
}

/* Check that every key of object o is in known[] and appears once; unknown keys become
 * warnings (or errors when strict). The first key in object order that is either unknown
 * (when strict) or repeated later is the one reported. */
static ir_status check_keys(reader *r, const cJSON *o, const char *path, const char *const *known)
{
    const char *dup = NULL;
    int dup_at = first_duplicate_key(o, &dup);
    if (dup_at == -2)
        return ir_fail(r->err, IR_ERR_NOMEM, path, "out of memory");
    int at = 0;
    for (const cJSON *c = o->child; c; c = c->next, at++) {
        const char *k = c->string ? c->string : "";
        bool ok = false;
        for (int i = 0; known[i]; i++)
            if (!strcmp(k, known[i])) {
                ok = true;
                break;
            }
        if (at == dup_at)
            return bad(r, path, dup, "duplicate key");
        if (!ok) {
            if (r->strict)
                return bad(r, path, k, "unknown key");
            if (r->warn && ir_warn(r->warn, "%s%s%s: unknown key ignored", path, *path ? "." : "",
                                   k) != IR_OK)
                return ir_fail(r->err, IR_ERR_NOMEM, path, "out of memory");
        }
    }
    return IR_OK;
}

static ir_status need_object(reader *r, const cJSON *v, const char *path, const char *field)
{
    if (!cJSON_IsObject(v))
        return bad(r, path, field, "must be an object, got %s", type_name(v));
    return IR_OK;
}

static ir_status need_array(reader *r, const cJSON *v, const char *path, const char *field,
                            int max, int *n)
{
    if (!cJSON_IsArray(v))
        return bad(r, path, field, "must be an array, got %s", type_name(v));
    int k = 0;
    for (const cJSON *c = v->child; c; c = c->next)
        if (++k > max)
            return bad(r, path, field, "more than %d entries", max);
    *n = k;
    return IR_OK;
}

#define TRY(x)                     \
    do {                           \
        ir_status s_ = (x);        \
        if (s_ != IR_OK)           \
            return s_;             \
    } while (0)

static const cJSON *get(const cJSON *o, const char *k) { return cJSON_GetObjectItemCaseSensitive(o, k); }

static bool absent(const cJSON *v) { return !v || cJSON_IsNull(v); }

/* Major version "0" of "0.2.0". */
static ir_status check_version(reader *r, const cJSON *v, const char *field, const char *ours,
                               char *out, size_t cap)
{
    if (!v) {
        snprintf(out, cap, "%s", ours);
        return IR_OK;
    }
    TRY(as_name(r, v, "", field, out, cap));
    size_t a = strcspn(out, "."), b = strcspn(ours, ".");
    if (a != b || strncmp(out, ours, a))
        return bad(r, "", field, "major version of '%s' differs from supported %s", out, ours);
    return IR_OK;
}

static int cmp_i32(const void *a, const void *b)
{
    int32_t x = *(const int32_t *)a, y = *(const int32_t *)b;
    return (x > y) - (x < y);
}

/* Refuse a map whose decimal keys name the same id twice ("3" and "3", or "3" and "03"). Sorting
 * a copy keeps this O(n log n): comparing every key with every later one made a 30,000-entry
 * sm_assignment or buffer_to_page take seconds. */
static ir_status check_unique_ids(reader *r, const int32_t *ids, int n, const char *path,
                                  const char *what)
{
    int32_t *s = malloc(((size_t)n + 1) * sizeof *s);
    if (!s)
        return ir_fail(r->err, IR_ERR_NOMEM, path, "out of memory");
    memcpy(s, ids, (size_t)n * sizeof *s);
    qsort(s, (size_t)n, sizeof *s, cmp_i32);
    for (int i = 1; i < n; i++)
        if (s[i] == s[i - 1]) {
            char key[16];
            int32_t id = s[i];
            free(s);
            snprintf(key, sizeof key, "%d", (int)id);
            return bad(r, path, key, "duplicate key (%s %d appears twice)", what, (int)id);
        }
    free(s);
    return IR_OK;
}

/* ---------------------------------------------------------------- target */

static const char *const TARGET_KEYS[] = {
    "name", "sm_arch", "num_sms", "smem_bytes_per_sm", "smem_bytes_per_block_optin",
    "regs_per_sm", "max_threads_per_sm", "max_regs_per_thread", "l2_bytes", "hbm_bytes",
    "hbm_bandwidth_gbs", "fp16_tflops", "clock_ghz", "supports_cooperative", "wddm_tdr",
    "measured_bw_gbs", "note", "max_threads_per_block", "max_blocks_per_sm",
    "smem_reserved_per_block", "reg_alloc_unit", NULL};

static ir_status read_i(reader *r, const cJSON *o, const char *path, const char *k, bool required,
                        int64_t lo, int64_t hi, int64_t *out)
{
    const cJSON *v = get(o, k);
    if (!v) {
        if (required)
            return bad(r, path, k, "missing");
        return IR_OK;
    }
    return as_int(r, v, path, k, lo, hi, out);
}

static ir_status read_f(reader *r, const cJSON *o, const char *path, const char *k, bool required,
                        double *out)
{
    const cJSON *v = get(o, k);
    if (!v) {
        if (required)
            return bad(r, path, k, "missing");
        return IR_OK;
    }
    TRY(as_real(r, v, path, k, out));
    if (*out < 0)
        return bad(r, path, k, "must be >= 0");
    return IR_OK;
}

static ir_status read_target(reader *r, const cJSON *o, const char *path, ir_target *t)
{
    const int64_t BIG = (int64_t)1 << 50;
    TRY(need_object(r, o, path, ""));
    TRY(check_keys(r, o, path, TARGET_KEYS));
    memset(t, 0, sizeof *t);
    const cJSON *name = get(o, "name");
    if (!name)
        return bad(r, path, "name", "missing");
    TRY(as_name(r, name, path, "name", t->name, sizeof t->name));
    TRY(read_i(r, o, path, "sm_arch", true, 10, 1000, &t->sm_arch));
    TRY(read_i(r, o, path, "num_sms", true, 1, 1 << 20, &t->num_sms));
    TRY(read_i(r, o, path, "smem_bytes_per_sm", true, 0, BIG, &t->smem_bytes_per_sm));
    TRY(read_i(r, o, path, "smem_bytes_per_block_optin", true, 0, BIG,
               &t->smem_bytes_per_block_optin));
    TRY(read_i(r, o, path, "regs_per_sm", true, 1, BIG, &t->regs_per_sm));
    TRY(read_i(r, o, path, "max_threads_per_sm", true, 1, 1 << 20, &t->max_threads_per_sm));
    TRY(read_i(r, o, path, "max_regs_per_thread", true, 1, 1 << 20, &t->max_regs_per_thread));
    TRY(read_i(r, o, path, "l2_bytes", true, 0, BIG, &t->l2_bytes));
    TRY(read_i(r, o, path, "hbm_bytes", true, 0, (int64_t)1 << 60, &t->hbm_bytes));
    TRY(read_f(r, o, path, "hbm_bandwidth_gbs", true, &t->hbm_bandwidth_gbs));
    TRY(read_f(r, o, path, "fp16_tflops", true, &t->fp16_tflops));
    TRY(read_f(r, o, path, "clock_ghz", false, &t->clock_ghz));
    t->supports_cooperative = true;
    const cJSON *v;
    if ((v = get(o, "supports_cooperative")))
        TRY(as_bool(r, v, path, "supports_cooperative", &t->supports_cooperative));
    if ((v = get(o, "wddm_tdr")))
        TRY(as_bool(r, v, path, "wddm_tdr", &t->wddm_tdr));
    TRY(read_f(r, o, path, "measured_bw_gbs", false, &t->measured_bw_gbs));
    if ((v = get(o, "note")))
        TRY(as_name(r, v, path, "note", t->note, sizeof t->note));
    TRY(read_i(r, o, path, "max_threads_per_block", false, 1, 1 << 20, &t->max_threads_per_block));
    TRY(read_i(r, o, path, "max_blocks_per_sm", false, 1, 1 << 20, &t->max_blocks_per_sm));
    TRY(read_i(r, o, path, "smem_reserved_per_block", false, 0, BIG, &t->smem_reserved_per_block));
    if (!get(o, "smem_reserved_per_block"))
        t->smem_reserved_per_block = -1;
    TRY(read_i(r, o, path, "reg_alloc_unit", false, 1, 1 << 20, &t->reg_alloc_unit));
    ir_target_fill_derived(t);
    return IR_OK;
}

bool ir_json_int(const void *json_number, int64_t lo, int64_t hi, int64_t *out)
{
    const cJSON *v = json_number;
    /* 2^63 is where int64 ends: a double at or past it never converts */
    if (!cJSON_IsNumber(v) || !isfinite(v->valuedouble) || v->valuedouble != floor(v->valuedouble) ||
        v->valuedouble < (double)lo || v->valuedouble > (double)hi ||
        v->valuedouble >= 9223372036854775808.0)
        return false;
    *out = (int64_t)v->valuedouble;
    return true;
}

ir_status ir_target_read_json(const char *text, size_t len, const char *where, ir_target *out,
                              ir_error *err)
{
    bool trailing;
    cJSON *root = parse_whole(text, len, NULL, &trailing);
    if (!root)
        return ir_fail(err, IR_ERR_MALFORMED, where, "not valid JSON%s",
                       trailing ? ": data after the target object" : "");
    reader r = {err, NULL, false};
    ir_status s = read_target(&r, root, "", out);
    cJSON_Delete(root);
    return s;
}

ir_status ir_target_read_file(const char *path, ir_target *out, ir_error *err)
{
    char *buf;
    size_t n;
    ir_status s = ir_read_text_file(path, IR_MAX_FILE_BYTES, &buf, &n, err);
    if (s != IR_OK)
        return s;
    s = ir_target_read_json(buf, n, path, out, err);
    free(buf);
    return s;
}

/* ---------------------------------------------------------------- config */

static const char *const CONFIG_KEYS[] = {
    "tiling", "fusion_grouping", "sm_assignment", "pipelining_depth", "page_allocation",
    "threads_per_block", "smem_bytes_per_block", NULL};

static ir_status read_config(reader *r, const cJSON *o, const char *path, ir_config *c)
{
    char p[256];
    ir_config_default(c);
    TRY(need_object(r, o, path, ""));
    TRY(check_keys(r, o, path, CONFIG_KEYS));
    const cJSON *v;
    if ((v = get(o, "tiling")) && !cJSON_IsNull(v)) {
        TRY(need_object(r, v, path, "tiling"));
        int n = 0;
        for (const cJSON *a = v->child; a; a = a->next) {
            snprintf(p, sizeof p, "%s%stiling.%s", path, *path ? "." : "", a->string);
            TRY(need_object(r, a, p, ""));
            for (const cJSON *b = a->child; b; b = b->next)
                if (++n > 256)
                    return bad(r, path, "tiling", "more than 256 entries");
        }
        c->tiling = calloc((size_t)n + 1, sizeof *c->tiling);
        if (!c->tiling)
            return ir_fail(r->err, IR_ERR_NOMEM, path, "out of memory");
        for (const cJSON *a = v->child; a; a = a->next) {
            snprintf(p, sizeof p, "%s%stiling.%s", path, *path ? "." : "", a->string);
            for (const cJSON *d = a->next; d; d = d->next)
                if (!strcmp(d->string, a->string))
                    return bad(r, p, "", "duplicate key");
            for (const cJSON *b = a->child; b; b = b->next) {
                ir_tiling *t = &c->tiling[c->n_tiling];
                if (strlen(a->string) >= IR_MAX_NAME || strlen(b->string) >= IR_MAX_NAME)
                    return bad(r, p, b->string, "name too long");
                for (const cJSON *d = b->next; d; d = d->next)
                    if (!strcmp(d->string, b->string))
                        return bad(r, p, b->string, "duplicate key");
                snprintf(t->op, sizeof t->op, "%s", a->string);
                snprintf(t->key, sizeof t->key, "%s", b->string);
                TRY(as_int(r, b, p, b->string, 1, BASE_MAX_TILE, &t->value));
                c->n_tiling++;
            }
        }
    }
    if ((v = get(o, "fusion_grouping")) && !cJSON_IsNull(v)) {
        int n;
        TRY(need_array(r, v, path, "fusion_grouping", 64, &n));
        c->groups = calloc((size_t)n + 1, sizeof *c->groups);
        if (!c->groups)
            return ir_fail(r->err, IR_ERR_NOMEM, path, "out of memory");
        int i = 0;
        for (const cJSON *g = v->child; g; g = g->next, i++) {
            snprintf(p, sizeof p, "%s%sfusion_grouping[%d]", path, *path ? "." : "", i);
            int m;
            TRY(need_array(r, g, p, "", 64, &m));
            ir_fusion_group *fg = &c->groups[c->n_groups++];
            fg->names = calloc((size_t)m + 1, sizeof *fg->names);
            if (!fg->names)
                return ir_fail(r->err, IR_ERR_NOMEM, path, "out of memory");
            int j = 0;
            for (const cJSON *s = g->child; s; s = s->next, j++) {
                char q[300];
                snprintf(q, sizeof q, "%s[%d]", p, j);
                TRY(as_name(r, s, q, "", fg->names[j], IR_MAX_NAME));
                fg->n++;
            }
        }
    }
    if ((v = get(o, "sm_assignment")) && !cJSON_IsNull(v)) {
        if (cJSON_IsString(v)) {
            if (!strcmp(v->valuestring, "load_balance"))
                c->sm_policy = IR_SM_LOAD_BALANCE;
            else if (!strcmp(v->valuestring, "round_robin"))
                c->sm_policy = IR_SM_ROUND_ROBIN;
            else
                return bad(r, path, "sm_assignment",
                           "unknown policy '%s' (expected load_balance, round_robin or a map)",
                           v->valuestring);
        } else if (cJSON_IsObject(v)) {
            c->sm_policy = IR_SM_EXPLICIT;
            int n = 0;
            for (const cJSON *a = v->child; a; a = a->next)
                if (++n > MAX_COUNT)
                    return bad(r, path, "sm_assignment", "too many entries");
            c->explicit_task = calloc((size_t)n + 1, sizeof *c->explicit_task);
            c->explicit_queue = calloc((size_t)n + 1, sizeof *c->explicit_queue);
            if (!c->explicit_task || !c->explicit_queue)
                return ir_fail(r->err, IR_ERR_NOMEM, path, "out of memory");
            snprintf(p, sizeof p, "%s%ssm_assignment", path, *path ? "." : "");
            for (const cJSON *a = v->child; a; a = a->next) {
                char *end;
                errno = 0;
                long long k = strtoll(a->string, &end, 10);
                if (!*a->string || *end || errno || k < 0 || k >= MAX_COUNT)
                    return bad(r, p, a->string, "key must be a task id in decimal");
                int64_t q;
                TRY(as_int(r, a, p, a->string, 0, BASE_MAX_GRID - 1, &q));
                c->explicit_task[c->n_explicit] = (int32_t)k;
                c->explicit_queue[c->n_explicit] = (int32_t)q;
                c->n_explicit++;
            }
            TRY(check_unique_ids(r, c->explicit_task, c->n_explicit, p, "task"));
        } else {
            return bad(r, path, "sm_assignment", "must be a policy string or a map, got %s",
                       type_name(v));
        }
    }
    if ((v = get(o, "pipelining_depth")) && !cJSON_IsNull(v))
        TRY(as_int(r, v, path, "pipelining_depth", 0, BASE_MAX_PIPELINING_DEPTH,
                   &c->pipelining_depth));
    if ((v = get(o, "page_allocation")) && !cJSON_IsNull(v)) {
        if (!cJSON_IsString(v))
            return bad(r, path, "page_allocation", "must be a string, got %s", type_name(v));
        if (!strcmp(v->valuestring, "graph_color"))
            c->page_policy = IR_PAGES_GRAPH_COLOR;
        else if (!strcmp(v->valuestring, "linear"))
            c->page_policy = IR_PAGES_LINEAR;
        else if (!strcmp(v->valuestring, "none"))
            c->page_policy = IR_PAGES_NONE;
        else
            return bad(r, path, "page_allocation",
                       "unknown policy '%s' (expected graph_color, linear or none)",
                       v->valuestring);
    }
    if ((v = get(o, "threads_per_block")) && !cJSON_IsNull(v))
        TRY(as_int(r, v, path, "threads_per_block", 32, BASE_MAX_THREADS_PER_BLOCK,
                   &c->threads_per_block));
    if ((v = get(o, "smem_bytes_per_block")) && !cJSON_IsNull(v))
        TRY(as_int(r, v, path, "smem_bytes_per_block", 0, BASE_MAX_SMEM_BYTES,
                   &c->smem_bytes_per_block));
    return IR_OK;
}

ir_status ir_config_read_json(const char *text, size_t len, bool strict, ir_config *out,
                              ir_error *err)
{
    ir_config_default(out);
    bool trailing;
    cJSON *root = parse_whole(text, len, NULL, &trailing);
    if (!root)
        return ir_fail(err, IR_ERR_MALFORMED, "config", "not valid JSON");
    reader r = {err, NULL, strict};
    ir_status s = read_config(&r, root, "config", out);
    cJSON_Delete(root);
    if (s != IR_OK)
        ir_config_free(out);
    return s;
}

/* ---------------------------------------------------------------- buffers, counters */

static const char *const BUFFER_KEYS[] = {"id", "name", "kind", "dtype", "shape", "space",
                                          "source", NULL};

static ir_status read_enum(reader *r, const cJSON *o, const char *path, const char *k,
                           bool (*parse)(const char *, int *), int *out, const char *what)
{
    const cJSON *v = get(o, k);
    if (!v)
        return bad(r, path, k, "missing");
    if (!cJSON_IsString(v))
        return bad(r, path, k, "must be a %s name string, got %s", what, type_name(v));
    if (!parse(v->valuestring, out))
        return bad(r, path, k, "unknown %s '%.64s'", what, v->valuestring);
    return IR_OK;
}

static bool p_kind(const char *s, int *o) { ir_kind k; bool b = ir_kind_parse(s, &k); *o = (int)k; return b; }
static bool p_dtype(const char *s, int *o) { ir_dtype k; bool b = ir_dtype_parse(s, &k); *o = (int)k; return b; }
static bool p_space(const char *s, int *o) { ir_space k; bool b = ir_space_parse(s, &k); *o = (int)k; return b; }
static bool p_op(const char *s, int *o) { ir_op k; bool b = ir_op_parse(s, &k); *o = (int)k; return b; }

static ir_status read_id(reader *r, const cJSON *o, const char *path, int index)
{
    int64_t id;
    const cJSON *v = get(o, "id");
    if (!v)
        return bad(r, path, "id", "missing");
    TRY(as_int(r, v, path, "id", 0, MAX_COUNT, &id));
    if (id != index)
        return bad(r, path, "id", "is %lld but ids must equal the array position %d (dense, "
                   "no duplicates)", (long long)id, index);
    return IR_OK;
}

/* The top-level array field (buffers, counters, tasks): its length in *n and a zeroed array of
 * n + 1 elements of elem bytes in *items, which the caller hands to the program at once. */
static ir_status item_array(reader *r, const cJSON *arr, const char *field, size_t elem,
                            void **items, int *n)
{
    TRY(need_array(r, arr, "", field, MAX_COUNT, n));
    *items = calloc((size_t)*n + 1, elem);
    if (!*items)
        return ir_fail(r->err, IR_ERR_NOMEM, field, "out of memory");
    return IR_OK;
}

/* Item i of the dense array field: an object with only known keys whose id is i. Its JSON path
 * ("field[i]") is left in path. */
static ir_status begin_item(reader *r, const cJSON *o, const char *field, int i,
                            const char *const *keys, char path[64])
{
    snprintf(path, 64, "%s[%d]", field, i);
    TRY(need_object(r, o, path, ""));
    TRY(check_keys(r, o, path, keys));
    return read_id(r, o, path, i);
}

static ir_status read_buffers(reader *r, const cJSON *arr, ir_program *p)
{
    int n;
    void *items;
    TRY(item_array(r, arr, "buffers", sizeof *p->buffers, &items, &n));
    p->buffers = items;
    p->cap_buffers = n + 1;
    int i = 0;
    char path[64];
    for (const cJSON *o = arr->child; o; o = o->next, i++) {
        TRY(begin_item(r, o, "buffers", i, BUFFER_KEYS, path));
        ir_buffer *b = &p->buffers[i];
        p->n_buffers = i + 1;
        b->id = i;
        const cJSON *v = get(o, "name");
        if (!v)
            return bad(r, path, "name", "missing");
        TRY(as_strdup(r, v, path, "name", &b->name));
        int e;
        TRY(read_enum(r, o, path, "kind", p_kind, &e, "buffer kind"));
        b->kind = (ir_kind)e;
        TRY(read_enum(r, o, path, "dtype", p_dtype, &e, "dtype"));
        b->dtype = (ir_dtype)e;
        b->space = IR_HBM;
        if (get(o, "space")) {
            TRY(read_enum(r, o, path, "space", p_space, &e, "memory space"));
            b->space = (ir_space)e;
        }
        v = get(o, "shape");
        if (!v)
            return bad(r, path, "shape", "missing");
        int rank;
        if (!cJSON_IsArray(v))
            return bad(r, path, "shape", "must be an array, got %s", type_name(v));
        rank = cJSON_GetArraySize(v);
        if (rank > IR_MAX_RANK)
            return bad(r, path, "shape", "rank %d exceeds the ABI cap of %d", rank, IR_MAX_RANK);
        b->rank = rank;
        int j = 0;
        __int128 prod = 1;
        for (const cJSON *d = v->child; d; d = d->next, j++) {
            char f[32];
            snprintf(f, sizeof f, "shape[%d]", j);
            TRY(as_int(r, d, path, f, 1, IR_MAX_DIM, &b->shape[j]));
            prod *= b->shape[j];
            if (prod > IR_MAX_ELEMS)
                return bad(r, path, "shape", "element count exceeds %lld",
                           (long long)IR_MAX_ELEMS);
        }
        v = get(o, "source");
        if (v && !cJSON_IsNull(v))
            TRY(as_strdup(r, v, path, "source", &b->source));
    }
    return IR_OK;
}

static const char *const COUNTER_KEYS[] = {"id", "init", "note", NULL};

static ir_status read_counters(reader *r, const cJSON *arr, ir_program *p)
{
    int n;
    void *items;
    TRY(item_array(r, arr, "counters", sizeof *p->counters, &items, &n));
    p->counters = items;
    p->cap_counters = n + 1;
    int i = 0;
    char path[64];
    for (const cJSON *o = arr->child; o; o = o->next, i++) {
        TRY(begin_item(r, o, "counters", i, COUNTER_KEYS, path));
        ir_counter *c = &p->counters[i];
        p->n_counters = i + 1;
        c->id = i;
        TRY(read_i(r, o, path, "init", false, 0, 0xffffffffLL, &c->init));
        const cJSON *v = get(o, "note");
        if (v && !cJSON_IsNull(v))
            TRY(as_strdup(r, v, path, "note", &c->note));
        else if (!(c->note = strdup("")))
            return ir_fail(r->err, IR_ERR_NOMEM, path, "out of memory");
    }
    return IR_OK;
}

/* ---------------------------------------------------------------- tasks */

static const char *const TASK_KEYS[] = {"id", "op", "inputs", "outputs", "out_counter", "waits",
                                        "params", "sm", "est_bytes", "est_flops", "label",
                                        "pos_params", NULL};
static const char *const WAIT_KEYS[] = {"counter", "threshold", NULL};
/* Params AMK marshals as reals; every other numeric param is an int when integral. */
static const char *const REAL_PARAMS[] = {"eps", "scale", "theta", "rope_factor",
                                          "rope_low_freq", "rope_high_freq", NULL};

static bool is_real_param(const char *k)
{
    for (int i = 0; REAL_PARAMS[i]; i++)
        if (!strcmp(k, REAL_PARAMS[i]))
            return true;
    return false;
}

static ir_status read_id_list(reader *r, const cJSON *o, const char *path, const char *k,
                              int cap, int32_t limit, const char *what, int32_t *out, int *n)
{
    const cJSON *v = get(o, k);
    *n = 0;
    if (!v)
        return bad(r, path, k, "missing");
    int m;
    if (!cJSON_IsArray(v))
        return bad(r, path, k, "must be an array, got %s", type_name(v));
    m = cJSON_GetArraySize(v);
    if (m > cap)
        return bad(r, path, k, "%d entries exceed the ABI cap of %d", m, cap);
    int j = 0;
    for (const cJSON *d = v->child; d; d = d->next, j++) {
        char f[32];
        snprintf(f, sizeof f, "%s[%d]", k, j);
        int64_t id;
        TRY(as_int(r, d, path, f, 0, INT32_MAX, &id));
        if (id >= limit)
            return bad(r, path, f, "refers to %s %lld, which does not exist (%d defined)", what,
                       (long long)id, limit);
        out[j] = (int32_t)id;
    }
    *n = m;
    return IR_OK;
}

static ir_status read_params(reader *r, const cJSON *v, const char *path, ir_task *t)
{
    if (!v || cJSON_IsNull(v))
        return IR_OK;
    int n = 0;
    TRY(need_object(r, v, path, "params"));
    for (const cJSON *c = v->child; c; c = c->next)
        if (++n > IR_MAX_PARAMS)
            return bad(r, path, "params", "more than %d params", IR_MAX_PARAMS);
    t->params = calloc((size_t)n + 1, sizeof *t->params);
    if (!t->params)
        return ir_fail(r->err, IR_ERR_NOMEM, path, "out of memory");
    char pp[96];
    snprintf(pp, sizeof pp, "%s.params", path);
    for (const cJSON *c = v->child; c; c = c->next) {
        for (const cJSON *d = c->next; d; d = d->next)
            if (!strcmp(d->string, c->string))
                return bad(r, pp, c->string, "duplicate key");
        if (strlen(c->string) >= IR_MAX_NAME || !*c->string)
            return bad(r, pp, c->string, "param key must have 1 to %d characters",
                       IR_MAX_NAME - 1);
        ir_param *q = &t->params[t->n_params++];
        snprintf(q->key, sizeof q->key, "%s", c->string);
        if (cJSON_IsNumber(c)) {
            double d = c->valuedouble;
            if (!isfinite(d))
                return bad(r, pp, c->string, "must be finite");
            if (!is_real_param(c->string) && !(c->type & REAL_LITERAL) && d == floor(d) &&
                fabs(d) <= 9007199254740992.0) {
                q->type = IR_PARAM_INT;
                q->i = (int64_t)d;
                q->r = d;
            } else {
                q->type = IR_PARAM_REAL;
                q->r = d;
            }
        } else {
            q->type = IR_PARAM_RAW;
            q->raw = cJSON_PrintUnformatted(c);
            if (!q->raw)
                return ir_fail(r->err, IR_ERR_NOMEM, path, "out of memory");
        }
    }
    return IR_OK;
}

static ir_status read_pos_params(reader *r, const cJSON *v, const char *path, ir_task *t)
{
    if (!v || cJSON_IsNull(v))
        return IR_OK;
    char pp[96];
    snprintf(pp, sizeof pp, "%s.pos_params", path);
    TRY(need_object(r, v, path, "pos_params"));
    for (const cJSON *c = v->child; c; c = c->next) {
        for (const cJSON *d = c->next; d; d = d->next)
            if (!strcmp(d->string, c->string))
                return bad(r, pp, c->string, "duplicate key");
        ir_param *q = NULL;
        for (int i = 0; i < t->n_params; i++)
            if (!strcmp(t->params[i].key, c->string))
                q = &t->params[i];
        if (!q || q->type != IR_PARAM_INT)
            return bad(r, pp, c->string, "has no integer param of the same name");
        if (!cJSON_IsArray(c) || cJSON_GetArraySize(c) != 4)
            return bad(r, pp, c->string, "must be [mul, add, lo, hi]");
        int64_t x[4];
        int j = 0;
        for (const cJSON *e = c->child; e; e = e->next, j++) {
            char f[96];
            snprintf(f, sizeof f, "%s[%d]", c->string, j);
            /* lo/hi may be the int64 extremes written as +-9.2e18; accept +-2^62 and beyond
               as unbounded. */
            if (!cJSON_IsNumber(e) || !isfinite(e->valuedouble) ||
                e->valuedouble != floor(e->valuedouble))
                return bad(r, pp, f, "must be an integer");
            double d = e->valuedouble;
            if (j < 2 && fabs(d) > 4611686018427387904.0)
                return bad(r, pp, f, "out of range");
            x[j] = d >= 4611686018427387904.0 ? INT64_MAX
                 : d <= -4611686018427387904.0 ? INT64_MIN : (int64_t)d;
        }
        if (x[2] > x[3])
            return bad(r, pp, c->string, "lo %lld above hi %lld", (long long)x[2],
                       (long long)x[3]);
        q->has_pexpr = true;
        q->pexpr = (ir_pexpr){x[0], x[1], x[2], x[3]};
    }
    return IR_OK;
}

static ir_status read_tasks(reader *r, const cJSON *arr, ir_program *p)
{
    int n;
    void *items;
    TRY(item_array(r, arr, "tasks", sizeof *p->tasks, &items, &n));
    p->tasks = items;
    p->cap_tasks = n + 1;
    int i = 0;
    char path[64];
    for (const cJSON *o = arr->child; o; o = o->next, i++) {
        TRY(begin_item(r, o, "tasks", i, TASK_KEYS, path));
        ir_task *t = &p->tasks[i];
        p->n_tasks = i + 1;
        t->id = i;
        t->sm = -1;
        int e;
        TRY(read_enum(r, o, path, "op", p_op, &e, "op"));
        t->op = (ir_op)e;
        TRY(read_id_list(r, o, path, "inputs", IR_MAX_INPUTS, p->n_buffers, "buffer", t->inputs,
                         &t->n_inputs));
        TRY(read_id_list(r, o, path, "outputs", IR_MAX_OUTPUTS, p->n_buffers, "buffer",
                         t->outputs, &t->n_outputs));
        int64_t c;
        TRY(read_i(r, o, path, "out_counter", true, 0, INT32_MAX, &c));
        if (c >= p->n_counters)
            return bad(r, path, "out_counter", "refers to counter %lld, which does not exist "
                       "(%d defined)", (long long)c, p->n_counters);
        t->out_counter = (int32_t)c;
        const cJSON *w = get(o, "waits");
        if (w && !cJSON_IsNull(w)) {
            int nw;
            if (!cJSON_IsArray(w))
                return bad(r, path, "waits", "must be an array, got %s", type_name(w));
            nw = cJSON_GetArraySize(w);
            if (nw > IR_MAX_WAITS)
                return bad(r, path, "waits", "%d waits exceed the ABI cap of %d", nw,
                           IR_MAX_WAITS);
            int j = 0;
            for (const cJSON *x = w->child; x; x = x->next, j++) {
                char wp[96];
                snprintf(wp, sizeof wp, "%s.waits[%d]", path, j);
                TRY(need_object(r, x, wp, ""));
                TRY(check_keys(r, x, wp, WAIT_KEYS));
                int64_t cc, th;
                TRY(read_i(r, x, wp, "counter", true, 0, INT32_MAX, &cc));
                if (cc >= p->n_counters)
                    return bad(r, wp, "counter", "refers to counter %lld, which does not exist "
                               "(%d defined)", (long long)cc, p->n_counters);
                TRY(read_i(r, x, wp, "threshold", true, 1, 0xffffffffLL, &th));
                t->waits[t->n_waits++] = (ir_wait){(int32_t)cc, th};
            }
        }
        TRY(read_params(r, get(o, "params"), path, t));
        TRY(read_pos_params(r, get(o, "pos_params"), path, t));
        const cJSON *v = get(o, "sm");
        if (v && !cJSON_IsNull(v)) {
            int64_t sm;
            TRY(as_int(r, v, path, "sm", 0, BASE_MAX_GRID - 1, &sm));
            t->sm = (int32_t)sm;
        }
        TRY(read_i(r, o, path, "est_bytes", false, 0, (int64_t)1 << 53, &t->est_bytes));
        TRY(read_i(r, o, path, "est_flops", false, 0, (int64_t)1 << 53, &t->est_flops));
        v = get(o, "label");
        if (v && !cJSON_IsNull(v))
            TRY(as_strdup(r, v, path, "label", &t->label));
        else if (!(t->label = strdup("")))
            return ir_fail(r->err, IR_ERR_NOMEM, path, "out of memory");
    }
    return IR_OK;
}

/* ---------------------------------------------------------------- pages, decode, plan */

static const char *const PAGES_KEYS[] = {"buffer_to_page", "pages", NULL};
static const char *const PAGE_KEYS[] = {"id", "space", "nbytes", "live_start", "live_end", NULL};

static ir_status read_pages(reader *r, const cJSON *o, ir_program *p)
{
    TRY(need_object(r, o, "", "pages"));
    TRY(check_keys(r, o, "pages", PAGES_KEYS));
    ir_pages *pg = &p->pages;
    const cJSON *arr = get(o, "pages");
    int n = 0;
    if (arr) {
        TRY(need_array(r, arr, "pages", "pages", MAX_COUNT, &n));
    }
    pg->pages = calloc((size_t)n + 1, sizeof *pg->pages);
    if (!pg->pages)
        return ir_fail(r->err, IR_ERR_NOMEM, "pages", "out of memory");
    int i = 0;
    char path[64];
    if (arr)
        for (const cJSON *x = arr->child; x; x = x->next, i++) {
            TRY(begin_item(r, x, "pages.pages", i, PAGE_KEYS, path));
            ir_page *pa = &pg->pages[i];
            pg->n_pages = i + 1;
            pa->id = i;
            int e;
            TRY(read_enum(r, x, path, "space", p_space, &e, "memory space"));
            pa->space = (ir_space)e;
            TRY(read_i(r, x, path, "nbytes", true, 0, (int64_t)1 << 50, &pa->nbytes));
            pa->live_start = pa->live_end = -1;
            TRY(read_i(r, x, path, "live_start", false, -1, INT32_MAX, &pa->live_start));
            TRY(read_i(r, x, path, "live_end", false, -1, INT32_MAX, &pa->live_end));
        }
    const cJSON *map = get(o, "buffer_to_page");
    if (!map || cJSON_IsNull(map))
        return IR_OK;
    TRY(need_object(r, map, "pages", "buffer_to_page"));
    int m = cJSON_GetArraySize(map);
    pg->map_buffer = calloc((size_t)m + 1, sizeof *pg->map_buffer);
    pg->map_page = calloc((size_t)m + 1, sizeof *pg->map_page);
    if (!pg->map_buffer || !pg->map_page)
        return ir_fail(r->err, IR_ERR_NOMEM, "pages", "out of memory");
    for (const cJSON *x = map->child; x; x = x->next) {
        char *end;
        errno = 0;
        long long b = strtoll(x->string, &end, 10);
        if (!*x->string || *end || errno || b < 0)
            return bad(r, "pages.buffer_to_page", x->string, "key must be a buffer id in decimal");
        if (b >= p->n_buffers)
            return bad(r, "pages.buffer_to_page", x->string,
                       "refers to buffer %lld, which does not exist", b);
        int64_t pid;
        TRY(as_int(r, x, "pages.buffer_to_page", x->string, 0, INT32_MAX, &pid));
        if (pid >= pg->n_pages)
            return bad(r, "pages.buffer_to_page", x->string,
                       "refers to page %lld, which does not exist (%d defined)", (long long)pid,
                       pg->n_pages);
        pg->map_buffer[pg->n_map] = (int32_t)b;
        pg->map_page[pg->n_map] = (int32_t)pid;
        pg->n_map++;
    }
    return check_unique_ids(r, pg->map_buffer, pg->n_map, "pages.buffer_to_page", "buffer");
}

static const char *const DECODE_KEYS[] = {"pos", "max_seq", NULL};

static ir_status read_decode(reader *r, const cJSON *o, ir_program *p)
{
    TRY(need_object(r, o, "", "decode"));
    TRY(check_keys(r, o, "decode", DECODE_KEYS));
    TRY(read_i(r, o, "decode", "max_seq", true, 1, (int64_t)1 << 31, &p->decode.max_seq));
    TRY(read_i(r, o, "decode", "pos", true, 0, p->decode.max_seq - 1, &p->decode.pos));
    return IR_OK;
}

static const char *const PLAN_KEYS[] = {"grid", "threads_per_block", "dynamic_smem_bytes",
                                        "static_smem_bytes", "regs_per_thread",
                                        "pipelining_depth", "queues", NULL};

static ir_status read_plan(reader *r, const cJSON *o, ir_program *p)
{
    const char *P = "launch_plan";
    TRY(need_object(r, o, "", P));
    TRY(check_keys(r, o, P, PLAN_KEYS));
    ir_plan *pl = &p->plan;
    int64_t grid;
    TRY(read_i(r, o, P, "grid", true, 1, BASE_MAX_GRID, &grid));
    const cJSON *qs = get(o, "queues");
    if (!qs)
        return bad(r, P, "queues", "missing");
    int nq;
    TRY(need_array(r, qs, P, "queues", (int)BASE_MAX_GRID, &nq));
    if (nq != grid)
        return bad(r, P, "queues", "has %d queues but grid is %lld", nq, (long long)grid);
    int64_t total = 0;
    for (const cJSON *q = qs->child; q; q = q->next) {
        if (!cJSON_IsArray(q))
            return bad(r, P, "queues", "every queue must be an array of task ids");
        total += cJSON_GetArraySize(q);
    }
    if (total != p->n_tasks)
        return bad(r, P, "queues", "lists %lld entries but the program has %d tasks; every "
                   "task must appear exactly once", (long long)total, p->n_tasks);
    if (ir_plan_alloc(pl, grid, total) != IR_OK)
        return ir_fail(r->err, IR_ERR_NOMEM, P, "out of memory");
    p->has_plan = true;
    TRY(read_i(r, o, P, "threads_per_block", true, 1, 1 << 16, &pl->threads_per_block));
    TRY(read_i(r, o, P, "dynamic_smem_bytes", false, 0, (int64_t)1 << 40, &pl->dynamic_smem_bytes));
    TRY(read_i(r, o, P, "static_smem_bytes", false, 0, (int64_t)1 << 40, &pl->static_smem_bytes));
    TRY(read_i(r, o, P, "regs_per_thread", false, 0, 1 << 16, &pl->regs_per_thread));
    TRY(read_i(r, o, P, "pipelining_depth", false, 0, BASE_MAX_PIPELINING_DEPTH,
               &pl->pipelining_depth));
    unsigned char *seen = calloc((size_t)p->n_tasks + 1, 1);
    if (!seen)
        return ir_fail(r->err, IR_ERR_NOMEM, P, "out of memory");
    int qi = 0, k = 0;
    ir_status s = IR_OK;
    for (const cJSON *q = qs->child; q && s == IR_OK; q = q->next, qi++) {
        pl->queue_start[qi] = k;
        int j = 0;
        for (const cJSON *x = q->child; x; x = x->next, j++) {
            char f[64];
            snprintf(f, sizeof f, "queues[%d][%d]", qi, j);
            int64_t id;
            s = as_int(r, x, P, f, 0, INT32_MAX, &id);
            if (s != IR_OK)
                break;
            if (id >= p->n_tasks) {
                s = bad(r, P, f, "refers to task %lld, which does not exist", (long long)id);
                break;
            }
            if (seen[id]) {
                s = bad(r, P, f, "task %lld appears twice in the plan", (long long)id);
                break;
            }
            seen[id] = 1;
            pl->queue_tasks[k++] = (int32_t)id;
        }
    }
    pl->queue_start[grid] = k;
    free(seen);
    return s;
}

/* ---------------------------------------------------------------- program */

static const char *const TOP_KEYS[] = {"ir_version", "abi_version", "meta", "target", "buffers",
                                       "counters", "tasks", "pages", "config", "decode",
                                       "launch_plan", NULL};

static ir_status read_program(reader *r, const cJSON *root, ir_program *p)
{
    if (!cJSON_IsObject(root))
        return bad(r, "", "", "a program must be a JSON object, got %s", type_name(root));
    TRY(check_keys(r, root, "", TOP_KEYS));
    TRY(check_version(r, get(root, "ir_version"), "ir_version", AMK_IR_VERSION, p->ir_version,
                      sizeof p->ir_version));
    TRY(check_version(r, get(root, "abi_version"), "abi_version", AMK_ABI_VERSION,
                      p->abi_version, sizeof p->abi_version));
    const cJSON *v = get(root, "meta");
    if (!absent(v)) {
        TRY(need_object(r, v, "", "meta"));
        char *m = cJSON_PrintUnformatted(v);
        if (!m)
            return ir_fail(r->err, IR_ERR_NOMEM, "meta", "out of memory");
        free(p->meta_json);
        p->meta_json = m;
    }
    v = get(root, "target");
    if (!absent(v)) {
        TRY(read_target(r, v, "target", &p->target));
        p->has_target = true;
    }
    if ((v = get(root, "buffers")))
        TRY(read_buffers(r, v, p));
    if ((v = get(root, "counters")))
        TRY(read_counters(r, v, p));
    if ((v = get(root, "tasks")))
        TRY(read_tasks(r, v, p));
    v = get(root, "pages");
    if (!absent(v)) {
        p->has_pages = true;
        TRY(read_pages(r, v, p));
    }
    v = get(root, "config");
    if (!absent(v)) {
        p->has_config = true;
        TRY(read_config(r, v, "config", &p->config));
    }
    v = get(root, "decode");
    if (!absent(v)) {
        TRY(read_decode(r, v, p));
        p->has_decode = true;
    }
    v = get(root, "launch_plan");
    if (!absent(v))
        TRY(read_plan(r, v, p));
    /* Position expressions must agree with the values written for the program's position. */
    int64_t pos = p->has_decode ? p->decode.pos : 0;
    for (int i = 0; i < p->n_tasks; i++)
        for (int j = 0; j < p->tasks[i].n_params; j++) {
            const ir_param *q = &p->tasks[i].params[j];
            if (!q->has_pexpr)
                continue;
            char path[64];
            snprintf(path, sizeof path, "tasks[%d].pos_params", i);
            if (!p->has_decode)
                return bad(r, path, q->key, "position-dependent params need the decode key");
            if (ir_pexpr_eval(q->pexpr, pos) != q->i)
                return bad(r, path, q->key, "evaluates to %lld at pos %lld but params.%s is %lld",
                           (long long)ir_pexpr_eval(q->pexpr, pos), (long long)pos, q->key,
                           (long long)q->i);
        }
    return IR_OK;
}

/* AMK's loader indexes buffers, counters and tasks by id, not by array position. An array whose
 * objects carry a dense id set 0..n-1 in another order is put in id order here, so that the
 * readers below see ids equal to positions (and name elements by id). Duplicates and gaps are
 * refused naming both places; anything else odd (no id, not an object) is left for the readers
 * to report. Returns IR_OK when nothing was wrong. */
static ir_status order_by_id(reader *r, cJSON *root, const char *key)
{
    cJSON *arr = cJSON_GetObjectItemCaseSensitive(root, key);
    if (!cJSON_IsArray(arr) || !arr->child)
        return IR_OK;
    int n = cJSON_GetArraySize(arr);
    if (n > MAX_COUNT)
        return IR_OK;
    cJSON **by = calloc((size_t)n, sizeof *by);
    int *at = calloc((size_t)n, sizeof *at);
    if (!by || !at) {
        free(by);
        free(at);
        return ir_fail(r->err, IR_ERR_NOMEM, key, "out of memory");
    }
    bool sorted = true;
    int i = 0;
    ir_status s = IR_OK;
    for (cJSON *o = arr->child; o && s == IR_OK; o = o->next, i++) {
        const cJSON *v = cJSON_IsObject(o) ? cJSON_GetObjectItemCaseSensitive(o, "id") : NULL;
        if (!cJSON_IsNumber(v) || (v->type & REAL_LITERAL) || v->valuedouble != floor(v->valuedouble)) {
            sorted = true;     /* the reader reports it at its place */
            break;
        }
        double d = v->valuedouble;
        char where[64];
        snprintf(where, sizeof where, "%s[%d].id", key, i);
        if (d < 0 || d >= n)
            s = ir_fail(r->err, IR_ERR_MALFORMED, where, "got %.17g; the %d %s must have the ids "
                        "0..%d (dense, in any order)", d, n, key, n - 1);
        else if (by[(int)d])
            s = ir_fail(r->err, IR_ERR_MALFORMED, where, "duplicates the id %d of %s[%d]",
                        (int)d, key, at[(int)d]);
        else {
            by[(int)d] = o;
            at[(int)d] = i;
            sorted &= (int)d == i;
        }
    }
    if (s == IR_OK && !sorted && i == n) {
        for (int k = 0; k < n; k++) {
            by[k]->prev = k ? by[k - 1] : by[n - 1];
            by[k]->next = k + 1 < n ? by[k + 1] : NULL;
        }
        arr->child = by[0];
        if (r->warn)
            s = ir_warn(r->warn, "%s: ids are not in array order; read by id", key);
    }
    free(by);
    free(at);
    return s;
}

ir_status ir_read_json(const char *text, size_t len, const ir_read_opts *opts, ir_program **out,
                       ir_error *err)
{
    *out = NULL;
    ir_program *p = ir_program_new();
    if (!p)
        return ir_fail(err, IR_ERR_NOMEM, "", "out of memory");
    const char *end = NULL;
    bool trailing;
    cJSON *root = parse_whole(text, len, &end, &trailing);
    if (!root) {
        size_t at = end && text && end >= text ? (size_t)(end - text) : 0;
        /* cJSON reports where it stopped; count the line for a usable message. */
        int line = 1;
        for (size_t i = 0; text && i < at && i < len; i++)
            line += text[i] == '\n';
        ir_program_free(p);
        if (len == 0)
            return ir_fail(err, IR_ERR_MALFORMED, "", "empty input");
        if (trailing)
            return ir_fail(err, IR_ERR_MALFORMED, "", "not valid JSON: data after the top-level "
                           "value near byte %zu, line %d", at, line);
        return ir_fail(err, IR_ERR_MALFORMED, "", "not valid JSON (syntax error, truncation or "
                       "nesting deeper than %d) near byte %zu, line %d", CJSON_NESTING_LIMIT, at,
                       line);
    }
    reader r = {err, &p->warnings, opts && opts->strict_config};
    ir_status s = IR_OK;
    static const char *const ARRAYS[] = {"buffers", "counters", "tasks"};
    for (int i = 0; i < 3 && s == IR_OK && cJSON_IsObject(root); i++)
        s = order_by_id(&r, root, ARRAYS[i]);
    if (s == IR_OK)
        s = read_program(&r, root, p);
    cJSON_Delete(root);
    if (s != IR_OK) {
        ir_program_free(p);
        return s;
    }
    *out = p;
    return IR_OK;
}

ir_status ir_read_text_file(const char *path, size_t max_bytes, char **text, size_t *len,
                            ir_error *err)
{
    char why[256];
    switch (base_read_file(path, max_bytes, true, text, len, why, sizeof why)) {
    case BASE_FILE_OK:
        return IR_OK;
    case BASE_FILE_TOO_LARGE:
        return ir_fail(err, IR_ERR_MALFORMED, path, "%s", why);
    case BASE_FILE_NO_MEMORY:
        return ir_fail(err, IR_ERR_NOMEM, path, "%s", why);
    default:
        return ir_fail(err, IR_ERR_IO, path, "%s", why);
    }
}

ir_status ir_read_file(const char *path, const ir_read_opts *opts, ir_program **out,
                       ir_error *err)
{
    *out = NULL;
    char *buf;
    size_t n;
    ir_status s = ir_read_text_file(path, IR_MAX_FILE_BYTES, &buf, &n, err);
    if (s != IR_OK)
        return s;
    s = ir_read_json(buf, n, opts, out, err);
    free(buf);
    if (s != IR_OK && err && !err->where[0])
        snprintf(err->where, sizeof err->where, "%s", path);  /* the text as a whole: the file */
    return s;
}
