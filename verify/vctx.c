/*
 * vctx.c - what the obligations of amk-verify share besides Z3: text buffers for witnesses and
 * certificates, verdicts and witness headers, the deadline and progress reports, box overlap and
 * byte spans, and key sets for asking each distinct question once.
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/base.h"
#include "verify/verify_internal.h"

/* ---------------------------------------------------------------- JSON text (vb_put and vb_fmt are
   base_sb appends, see verify_internal.h) */

void vb_qstr(vbuf *b, const char *s)
{
    vb_put(b, "\"");
    for (; *s; s++) {
        unsigned char u = (unsigned char)*s;
        if (u == '"' || u == '\\')
            vb_fmt(b, "\\%c", u);
        else if (u < 0x20)
            vb_fmt(b, "\\u%04x", u);
        else {
            char t[2] = {(char)u, 0};
            vb_put(b, t);
        }
    }
    vb_put(b, "\"");
}

void vb_ids(vbuf *b, const int32_t *ids, int64_t n)
{
    vb_put(b, "[");
    for (int64_t i = 0; i < n; i++)
        vb_fmt(b, i ? ", %d" : "%d", ids[i]);
    vb_put(b, "]");
}

/* ---------------------------------------------------------------- verdict helpers */

void vset(vctx *c, verify_obligation ob, verify_verdict v, const char *fmt, ...)
{
    c->r->ob[ob].status = v;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(c->r->ob[ob].detail, sizeof c->r->ob[ob].detail, fmt, ap);
    va_end(ap);
}

bool vwitness_begin(vctx *c, const char *kind)
{
    if (c->witness.n)
        return false;
    snprintf(c->r->witness_kind, sizeof c->r->witness_kind, "%s", kind);
    vb_put(&c->witness, "{\"kind\": ");
    vb_qstr(&c->witness, kind);
    vb_fmt(&c->witness, ", \"program_sha256\": \"%s\"", c->r->program_sha256);
    return true;
}

/* ---------------------------------------------------------------- deadline and progress */

bool vdeadline(const vctx *c) { return c->t_end > 0 && base_now_s() > c->t_end; }

void vprogress(vctx *c, bool force, const char *fmt, ...)
{
    if (!c->o->progress)
        return;
    double t = base_now_s();
    if (!force && t - c->t_progress < 1.0)
        return;
    c->t_progress = t;
    char line[300];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    c->o->progress(c->o->progress_arg, line);
}

/* ---------------------------------------------------------------- boxes and pages */

bool vbox_overlap(int rank, const int64_t *alo, const int64_t *ahi, const int64_t *blo,
                  const int64_t *bhi)
{
    for (int d = 0; d < rank; d++)
        if (!(alo[d] < bhi[d] && blo[d] < ahi[d]))
            return false;
    return true;
}

void vbox_byte_span(const ir_buffer *b, const int64_t *lo, const int64_t *hi, int64_t *first,
                    int64_t *end)
{
    int64_t f = 0, l = 0, stride = 1;
    bool empty = false;
    for (int d = b->rank - 1; d >= 0; d--) {
        if (hi[d] <= lo[d])
            empty = true;
        f += lo[d] * stride;
        l += (hi[d] - 1) * stride;
        stride *= b->shape[d];
    }
    if (empty) {
        *first = *end = 0;
        return;
    }
    *first = ir_dtype_nbytes(b->dtype, f) - (ir_dtype_bits(b->dtype) < 8 ? 1 : 0);
    if (*first < 0)
        *first = 0;
    *end = ir_dtype_nbytes(b->dtype, l + 1);
}

/* ---------------------------------------------------------------- key sets */

static uint64_t key_hash(const int64_t *k, int w)
{
    uint64_t h = 0x9e3779b97f4a7c15ULL;
    for (int i = 0; i < w; i++) {
        h ^= (uint64_t)k[i] + 0x9e3779b97f4a7c15ULL + (h << 6) + (h >> 2);
        h *= 0xbf58476d1ce4e5b9ULL;
    }
    return h ^ (h >> 31);
}

int vkeyset_add(vkeyset *s, const int64_t *key)
{
    if (s->n * 2 >= s->cap) {
        int64_t nc = s->cap ? s->cap * 2 : 1024;
        int64_t *nk = malloc((size_t)nc * (size_t)s->width * sizeof *nk);
        uint8_t *nu = calloc((size_t)nc, 1);
        if (!nk || !nu) {
            free(nk);
            free(nu);
            return -1;
        }
        for (int64_t i = 0; i < s->cap; i++) {
            if (!s->used[i])
                continue;
            uint64_t h = key_hash(s->keys + i * s->width, s->width) & (uint64_t)(nc - 1);
            while (nu[h])
                h = (h + 1) & (uint64_t)(nc - 1);
            nu[h] = 1;
            memcpy(nk + (int64_t)h * s->width, s->keys + i * s->width, (size_t)s->width * sizeof *nk);
        }
        free(s->keys);
        free(s->used);
        s->keys = nk;
        s->used = nu;
        s->cap = nc;
    }
    uint64_t h = key_hash(key, s->width) & (uint64_t)(s->cap - 1);
    while (s->used[h]) {
        if (!memcmp(s->keys + (int64_t)h * s->width, key, (size_t)s->width * sizeof *key))
            return 0;
        h = (h + 1) & (uint64_t)(s->cap - 1);
    }
    s->used[h] = 1;
    memcpy(s->keys + (int64_t)h * s->width, key, (size_t)s->width * sizeof *key);
    s->n++;
    return 1;
}

void vkeyset_free(vkeyset *s)
{
    free(s->keys);
    free(s->used);
    memset(s, 0, sizeof *s);
}
