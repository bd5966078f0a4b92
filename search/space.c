/*
 * space.c - the search space as points over the lowering's knob table, the schedule_id of a
 * config, the simplicity score, and the seeded candidate generator.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "search/search.h"

/* ---------------------------------------------------------------- identity */

static int cmp_tiling(const void *a, const void *b)
{
    const ir_tiling *x = a, *y = b;
    int c = strcmp(x->op, y->op);
    return c ? c : strcmp(x->key, y->key);
}

static int cmp_name(const void *a, const void *b)
{
    return strcmp((const char *)a, (const char *)b);
}

/* Groups compared by their (sorted) names, then by size. */
static int cmp_group(const void *a, const void *b)
{
    const ir_fusion_group *x = a, *y = b;
    for (int i = 0; i < x->n && i < y->n; i++) {
        int c = strcmp(x->names[i], y->names[i]);
        if (c)
            return c;
    }
    return x->n - y->n;
}

/* A tiling entry equal to its knob's default changes nothing (N_tile 256 spelled out). */
static bool tiling_is_default(const ir_tiling *t)
{
    char name[2 * IR_MAX_NAME + 16];
    snprintf(name, sizeof name, "tiling.%s.%s", t->op, t->key);
    const lower_knob *k = lower_knob_find(name);
    return k && k->dflt && t->value == k->dflt;
}

ir_status search_config_canonical(const ir_config *c, char **json, ir_error *err)
{
    /* a private copy to sort: c written and read back */
    char *text;
    size_t len;
    ir_config k;
    ir_status s = ir_config_write_json(c, &text, &len, err);
    if (s != IR_OK)
        return s;
    s = ir_config_read_json(text, len, false, &k, err);
    free(text);
    if (s != IR_OK)
        return s;
    int n = 0;
    for (int i = 0; i < k.n_tiling; i++)
        if (!tiling_is_default(&k.tiling[i]))
            k.tiling[n++] = k.tiling[i];
    k.n_tiling = n;
    qsort(k.tiling, (size_t)k.n_tiling, sizeof *k.tiling, cmp_tiling);
    for (int i = 0; i < k.n_groups; i++)
        qsort(k.groups[i].names, (size_t)k.groups[i].n, sizeof *k.groups[i].names, cmp_name);
    qsort(k.groups, (size_t)k.n_groups, sizeof *k.groups, cmp_group);
    for (int i = 1; i < k.n_explicit; i++)    /* insertion sort of the map by task id */
        for (int j = i; j > 0 && k.explicit_task[j - 1] > k.explicit_task[j]; j--) {
            int32_t t = k.explicit_task[j], q = k.explicit_queue[j];
            k.explicit_task[j] = k.explicit_task[j - 1];
            k.explicit_queue[j] = k.explicit_queue[j - 1];
            k.explicit_task[j - 1] = t;
            k.explicit_queue[j - 1] = q;
        }
    s = ir_config_write_json(&k, json, NULL, err);
    ir_config_free(&k);
    return s;
}

ir_status search_schedule_id(const ir_config *c, char id[SEARCH_ID_LEN + 1], ir_error *err)
{
    char *json, hex[65];
    ir_status s = search_config_canonical(c, &json, err);
    if (s != IR_OK)
        return s;
    ir_sha256_hex(json, strlen(json), hex);
    free(json);
    memcpy(id, hex, SEARCH_ID_LEN);
    id[SEARCH_ID_LEN] = 0;
    return IR_OK;
}

int search_simplicity(const ir_config *c)
{
    ir_config d;
    ir_config_default(&d);
    int n = c->n_groups;
    for (int i = 0; i < c->n_tiling; i++)
        n += !tiling_is_default(&c->tiling[i]);
    n += c->sm_policy != d.sm_policy;
    n += c->pipelining_depth != d.pipelining_depth;
    n += c->page_policy != d.page_policy;
    n += c->threads_per_block != d.threads_per_block;
    n += c->smem_bytes_per_block != d.smem_bytes_per_block;
    return n;
}

/* ---------------------------------------------------------------- points */

/* The value a knob has in the default config. */
static int64_t knob_default(const lower_knob *k)
{
    return k->type == LOWER_KNOB_INT ? k->dflt : 0;
}

void search_point_default(search_point *pt)
{
    memset(pt, 0, sizeof *pt);
    for (int i = 0; i < lower_knob_count(); i++)
        pt->value[i] = knob_default(lower_knob_at(i));
}

/* Where a scalar knob lives in an ir_config. */
static int64_t *scalar_slot(ir_config *c, const char *name)
{
    if (!strcmp(name, "pipelining_depth"))
        return &c->pipelining_depth;
    if (!strcmp(name, "threads_per_block"))
        return &c->threads_per_block;
    if (!strcmp(name, "smem_bytes_per_block"))
        return &c->smem_bytes_per_block;
    return NULL;
}

/* Add the fusion groups of mask to c (c->groups has room for all of them). */
static ir_status add_groups(ir_config *c, uint32_t mask)
{
    int nf = lower_fusion_count();
    c->groups = calloc((size_t)nf + 1, sizeof *c->groups);
    if (!c->groups)
        return IR_ERR_NOMEM;
    for (int g = 0; g < nf; g++) {
        if (!(mask >> g & 1))
            continue;
        const char *names[4];
        int n = lower_fusion_group(g, names);
        ir_fusion_group *fg = &c->groups[c->n_groups++];
        if (!(fg->names = calloc((size_t)n, sizeof *fg->names)))
            return IR_ERR_NOMEM;
        for (int j = 0; j < n; j++)
            snprintf(fg->names[j], IR_MAX_NAME, "%s", names[j]);
        fg->n = n;
    }
    return IR_OK;
}

ir_status search_point_config(const search_point *pt, ir_config *c, ir_error *err)
{
    ir_config_default(c);
    int nk = lower_knob_count();
    if (!(c->tiling = calloc((size_t)nk, sizeof *c->tiling)))
        return ir_fail(err, IR_ERR_NOMEM, "config", "out of memory");
    for (int i = 0; i < nk; i++) {
        const lower_knob *k = lower_knob_at(i);
        int64_t v = pt->value[i];
        if (k->type == LOWER_KNOB_ENUM && !strcmp(k->name, "sm_assignment"))
            c->sm_policy = (ir_sm_policy)v;
        else if (k->type == LOWER_KNOB_ENUM)
            c->page_policy = (ir_page_policy)v;
        else if (k->type == LOWER_KNOB_INT && k->optional && v && v != k->dflt) {
            ir_tiling *t = &c->tiling[c->n_tiling++];
            if (sscanf(k->name, "tiling.%63[^.].%63s", t->op, t->key) != 2)
                c->n_tiling--;
            t->value = v;
        } else if (k->type == LOWER_KNOB_INT && !k->optional) {
            *scalar_slot(c, k->name) = v;
        }
    }
    if (add_groups(c, pt->fusion) != IR_OK) {
        ir_config_free(c);
        return ir_fail(err, IR_ERR_NOMEM, "config", "out of memory");
    }
    return IR_OK;
}

/* The last part of a knob's name: "N_tile" of "tiling.gemv.N_tile". */
static const char *short_name(const char *name)
{
    const char *dot = strrchr(name, '.');
    return dot ? dot + 1 : name;
}

void search_point_summary(const search_point *pt, char *out, size_t len)
{
    search_point d;
    search_point_default(&d);
    out[0] = 0;
    size_t n = 0;
    for (int i = 0; i < lower_knob_count() && n < len; i++) {
        const lower_knob *k = lower_knob_at(i);
        if (k->type == LOWER_KNOB_GROUPS || pt->value[i] == d.value[i])
            continue;
        if (k->type == LOWER_KNOB_ENUM)
            n += (size_t)snprintf(out + n, len - n, "%s%s=%s", n ? " " : "", short_name(k->name),
                                  k->choices[pt->value[i]]);
        else
            n += (size_t)snprintf(out + n, len - n, "%s%s=%lld", n ? " " : "",
                                  short_name(k->name), (long long)pt->value[i]);
    }
    for (int g = 0; g < lower_fusion_count() && n < len; g++) {
        if (!(pt->fusion >> g & 1))
            continue;
        const char *names[4];
        int m = lower_fusion_group(g, names);
        n += (size_t)snprintf(out + n, len - n, "%s", n ? " fuse=" : "fuse=");
        for (int j = 0; j < m && n < len; j++)
            n += (size_t)snprintf(out + n, len - n, "%s%s", j ? "+" : "", names[j]);
    }
    if (!out[0])
        snprintf(out, len, "default");
}

/* ---------------------------------------------------------------- generator */

void search_rng_seed(search_rng *r, uint64_t seed)
{
    r->state = seed;
}

uint64_t search_rng_next(search_rng *r)
{
    uint64_t z = (r->state += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

uint64_t search_rng_below(search_rng *r, uint64_t n)
{
    return search_rng_next(r) % n;
}

static int n_choices(const lower_knob *k)
{
    int n = 0;
    while (k->choices[n])
        n++;
    return n;
}

int search_knob_values(const lower_knob *k, int64_t num_sms, int64_t *out, int cap)
{
    int n = 0;
    for (int i = 0; i < k->n_search && n < cap; i++)
        out[n++] = k->search[i];
    if (num_sms > 0 && !strcmp(k->name, "tiling.gemv.stage_tiles"))
        for (int64_t m = 1; m <= 2 && n < cap; m++)
            out[n++] = m * num_sms;
    return n;
}

/* Draw knob k anew: one of its search values or choices. */
static int64_t draw_value(search_rng *r, int64_t num_sms, const lower_knob *k)
{
    if (k->type == LOWER_KNOB_ENUM)
        return (int64_t)search_rng_below(r, (uint64_t)n_choices(k));
    int64_t v[32];
    int n = search_knob_values(k, num_sms, v, 32);
    return v[search_rng_below(r, (uint64_t)n)];
}

/* Whether fusion group g shares an op with a group of mask. */
static bool overlaps(uint32_t mask, int g)
{
    const char *a[4], *b[4];
    int na = lower_fusion_group(g, a);
    for (int h = 0; h < lower_fusion_count(); h++) {
        if (h == g || !(mask >> h & 1))
            continue;
        int nb = lower_fusion_group(h, b);
        for (int i = 0; i < na; i++)
            for (int j = 0; j < nb; j++)
                if (!strcmp(a[i], b[j]))
                    return true;
    }
    return false;
}

/* Whether lower_config_check accepts pt. */
static bool accepted(const search_point *pt)
{
    ir_config c;
    ir_error e = {0};
    if (search_point_config(pt, &c, &e) != IR_OK)
        return false;
    bool ok = lower_config_check(&c, &e) == IR_OK;
    ir_config_free(&c);
    return ok;
}

ir_status search_random_point(search_rng *r, int64_t num_sms, search_point *out, ir_error *err)
{
    for (int attempt = 0; attempt < 64; attempt++) {
        search_point_default(out);
        for (int i = 0; i < lower_knob_count(); i++) {
            const lower_knob *k = lower_knob_at(i);
            if (k->type != LOWER_KNOB_GROUPS)
                out->value[i] = draw_value(r, num_sms, k);
        }
        for (int g = 0; g < lower_fusion_count(); g++)
            if (search_rng_below(r, 2) && !overlaps(out->fusion, g))
                out->fusion |= 1u << g;
        if (accepted(out))
            return IR_OK;
    }
    return ir_fail(err, IR_ERR_UNSUPPORTED, "search", "no random point accepted in 64 draws");
}

ir_status search_mutate_point(search_rng *r, int64_t num_sms, const search_point *from,
                              search_point *out, ir_error *err)
{
    int nk = lower_knob_count(), nf = lower_fusion_count();
    for (int attempt = 0; attempt < 64; attempt++) {
        *out = *from;
        int pick = (int)search_rng_below(r, (uint64_t)(nk + nf));
        if (pick >= nk) {
            int g = pick - nk;
            if (!(out->fusion >> g & 1) && overlaps(out->fusion, g))
                continue;
            out->fusion ^= 1u << g;
        } else {
            const lower_knob *k = lower_knob_at(pick);
            if (k->type == LOWER_KNOB_GROUPS)
                continue;
            out->value[pick] = draw_value(r, num_sms, k);
            if (out->value[pick] == from->value[pick])
                continue;
        }
        if (accepted(out))
            return IR_OK;
    }
    return ir_fail(err, IR_ERR_UNSUPPORTED, "search", "no mutation accepted in 64 draws");
}
