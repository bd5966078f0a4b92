/*
 * parse.c - strict parsers for command-line values: a whole string or an error, never a silent
 * wrap or a partial read (what atoi and a bare strtol allow).
 */
#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>

#include "base/base.h"

bool base_parse_i64(const char *s, int64_t lo, int64_t hi, int64_t *out)
{
    if (!s || !*s || isspace((unsigned char)*s))
        return false;
    char *end;
    errno = 0;
    long long v = strtoll(s, &end, 10);
    if (errno || *end || v < lo || v > hi)
        return false;
    *out = v;
    return true;
}

bool base_parse_int(const char *s, int lo, int hi, int *out)
{
    int64_t v;
    if (!base_parse_i64(s, lo, hi, &v))
        return false;
    *out = (int)v;
    return true;
}

bool base_parse_u64(const char *s, uint64_t *out)
{
    if (!s || !isdigit((unsigned char)*s))   /* no sign, no space */
        return false;
    bool hex = s[0] == '0' && (s[1] == 'x' || s[1] == 'X');
    if (hex && !isxdigit((unsigned char)s[2]))
        return false;
    char *end;
    errno = 0;
    unsigned long long v = strtoull(s, &end, hex ? 16 : 10);
    if (errno || *end)
        return false;
    *out = v;
    return true;
}

bool base_parse_double(const char *s, double lo, double hi, double *out)
{
    if (!s || !*s || isspace((unsigned char)*s))
        return false;
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (errno || *end || !isfinite(v) || v < lo || v > hi)
        return false;
    *out = v;
    return true;
}

int32_t *base_parse_i32_list(const char *s, int32_t lo, int32_t hi, int *n)
{
    *n = 0;
    if (!s || !*s)
        return NULL;
    size_t cap = 1;
    for (const char *c = s; *c; c++)
        cap += *c == ',';
    if (cap > (size_t)1 << 30)
        return NULL;
    int32_t *v = malloc(cap * sizeof *v);
    if (!v)
        return NULL;
    int k = 0;
    for (const char *c = s;;) {
        if (!isdigit((unsigned char)*c) && *c != '-' && *c != '+')
            break;   /* an empty item or junk */
        char *end;
        errno = 0;
        long long x = strtoll(c, &end, 10);
        if (errno || end == c || x < lo || x > hi || (*end && *end != ','))
            break;
        v[k++] = (int32_t)x;
        if (!*end) {
            *n = k;
            return v;
        }
        c = end + 1;
    }
    free(v);
    return NULL;
}

void base_bound_text(int64_t v, char *out, size_t len)
{
    if (v > 1024 && (v & (v - 1)) == 0) {
        int e = 0;
        while (((int64_t)1 << e) != v)
            e++;
        snprintf(out, len, "2^%d", e);
    } else {
        snprintf(out, len, "%lld", (long long)v);
    }
}
