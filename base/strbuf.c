/*
 * strbuf.c - the growable string builder (base_sb) that the JSON, SVG and report writers of
 * every part append to.
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/base.h"

/* Make room for more bytes plus the NUL; doubling keeps appends amortised O(1). */
static void sb_reserve(base_sb *b, size_t more)
{
    if (b->oom || b->n + more + 1 <= b->cap)
        return;
    if (more > SIZE_MAX / 4 - b->n) {
        b->oom = true;
        return;
    }
    size_t nc = b->cap ? b->cap : 4096;
    while (nc < b->n + more + 1)
        nc *= 2;
    char *ns = realloc(b->s, nc);
    if (!ns) {
        b->oom = true;
        return;
    }
    b->s = ns;
    b->cap = nc;
}

void base_sb_put(base_sb *b, const char *s, size_t n)
{
    sb_reserve(b, n);
    if (b->oom)
        return;
    if (n)
        memcpy(b->s + b->n, s, n);
    b->n += n;
    b->s[b->n] = 0;
}

void base_sb_str(base_sb *b, const char *s) { base_sb_put(b, s, strlen(s)); }

void base_sb_fmt(base_sb *b, const char *fmt, ...)
{
    /* Format into the spare room first; only a long result needs a second pass. */
    va_list ap;
    sb_reserve(b, 128);
    if (b->oom)
        return;
    va_start(ap, fmt);
    int k = vsnprintf(b->s + b->n, b->cap - b->n, fmt, ap);
    va_end(ap);
    if (k < 0)
        return;
    if ((size_t)k >= b->cap - b->n) {
        sb_reserve(b, (size_t)k);
        if (b->oom)
            return;
        va_start(ap, fmt);
        vsnprintf(b->s + b->n, (size_t)k + 1, fmt, ap);
        va_end(ap);
    }
    b->n += (size_t)k;
}

char *base_sb_take(base_sb *b, size_t *len)
{
    char *s = NULL;
    if (!b->oom)
        s = b->s ? b->s : calloc(1, 1);
    else
        free(b->s);
    if (len)
        *len = s ? b->n : 0;
    *b = (base_sb){0};
    return s;
}

void base_sb_free(base_sb *b)
{
    free(b->s);
    *b = (base_sb){0};
}

void base_say(char *out, size_t len, const char *fmt, ...)
{
    if (!out || !len)
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(out, len, fmt, ap);
    va_end(ap);
}
