/*
 * safetensors.c - reading and writing the safetensors format, and the fp16/bf16 conversions.
 *
 * File layout: 8-byte little-endian header length N, N bytes of JSON
 *   {"name": {"dtype": "BF16", "shape": [..], "data_offsets": [begin, end]}, "__metadata__": {..}}
 * then the data section; offsets are relative to its start. A reader that trusts any of those
 * numbers can be made to read outside the mapping, so every one is checked before open returns.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cjson/cJSON.h>

#include "refvm/refvm.h"

/* ---------------------------------------------------------------- number formats */

float refvm_bf16_to_f32(uint16_t h)
{
    uint32_t u = (uint32_t)h << 16;
    float f;
    memcpy(&f, &u, 4);
    return f;
}

uint16_t refvm_f32_to_bf16(float f)
{
    uint32_t u;
    memcpy(&u, &f, 4);
    if ((u & 0x7fffffffu) > 0x7f800000u)
        return (uint16_t)((u >> 16) | 0x40);          /* quiet NaN, sign kept */
    u += 0x7fffu + ((u >> 16) & 1);                   /* round to nearest even */
    return (uint16_t)(u >> 16);
}

float refvm_f16_to_f32(uint16_t h)
{
    uint32_t sign = (uint32_t)(h & 0x8000) << 16;
    uint32_t exp = (h >> 10) & 0x1f;
    uint32_t man = h & 0x3ff;
    uint32_t u;
    if (exp == 0x1f) {
        u = sign | 0x7f800000u | (man << 13);
    } else if (exp != 0) {
        u = sign | ((exp + 112) << 23) | (man << 13);
    } else if (man == 0) {
        u = sign;
    } else {                                          /* subnormal: normalize */
        exp = 113;
        while (!(man & 0x400)) {
            man <<= 1;
            exp--;
        }
        u = sign | (exp << 23) | ((man & 0x3ff) << 13);
    }
    float f;
    memcpy(&f, &u, 4);
    return f;
}

uint16_t refvm_f32_to_f16(float f)
{
    uint32_t u;
    memcpy(&u, &f, 4);
    uint16_t sign = (uint16_t)((u >> 16) & 0x8000);
    uint32_t a = u & 0x7fffffffu;
    if (a > 0x7f800000u)
        return sign | 0x7e00;                          /* NaN */
    if (a >= 0x477ff000u)                              /* rounds to >= 65520: inf */
        return sign | 0x7c00;
    if (a < 0x38800000u) {                             /* below 2^-14: subnormal or zero */
        if (a < 0x33000000u)                           /* below half the smallest subnormal */
            return sign;
        /* value = man * 2^(e-150); in units of the f16 subnormal 2^-24 that is man >> (126-e) */
        uint32_t man = (a & 0x7fffff) | 0x800000;
        int shift = 126 - (int)(a >> 23);
        uint32_t q = man >> shift;
        uint32_t rem = man & ((1u << shift) - 1);
        uint32_t half = 1u << (shift - 1);
        if (rem > half || (rem == half && (q & 1)))
            q++;
        return sign | (uint16_t)q;
    }
    uint32_t r = a + 0xfffu + ((a >> 13) & 1);         /* round mantissa to 10 bits, even */
    return sign | (uint16_t)(((r >> 13) - (112u << 10)) & 0x7fff);
}

/* ---------------------------------------------------------------- reading */

typedef struct {
    const char *name;
    int bytes;
    bool supported;
    ir_dtype dtype;
} st_dtype_info;

static const st_dtype_info ST_DTYPES[] = {
    {"F32", 4, true, IR_F32},   {"F16", 2, true, IR_F16},   {"BF16", 2, true, IR_BF16},
    {"F64", 8, false, IR_F32},  {"I64", 8, false, IR_F32},  {"U64", 8, false, IR_F32},
    {"I32", 4, false, IR_I32},  {"U32", 4, false, IR_F32},  {"I16", 2, false, IR_F32},
    {"U16", 2, false, IR_F32},  {"I8", 1, false, IR_I8},    {"U8", 1, false, IR_U8},
    {"BOOL", 1, false, IR_BOOL}, {"F8_E4M3", 1, false, IR_F8E4M3},
    {"F8_E5M2", 1, false, IR_F8E5M2},
};

static const st_dtype_info *st_dtype_lookup(const char *s)
{
    for (size_t i = 0; i < sizeof ST_DTYPES / sizeof ST_DTYPES[0]; i++)
        if (!strcmp(ST_DTYPES[i].name, s))
            return &ST_DTYPES[i];
    return NULL;
}

void refvm_st_close(refvm_st *st)
{
    if (!st)
        return;
    if (st->map && st->map != MAP_FAILED)
        munmap(st->map, st->map_len);
    for (int i = 0; i < st->n; i++)
        free(st->tensors[i].name);
    free(st->tensors);
    free(st->path);
    free(st);
}

/* A JSON number that is a non-negative integer below 2^53 (exactly representable). */
static bool json_uint(const cJSON *j, uint64_t *out)
{
    if (!cJSON_IsNumber(j))
        return false;
    double d = j->valuedouble;
    if (!(d >= 0 && d <= 9007199254740992.0) || d != (double)(uint64_t)d)
        return false;
    *out = (uint64_t)d;
    return true;
}

static int cmp_by_begin(const void *a, const void *b)
{
    const refvm_tensor *x = *(refvm_tensor *const *)a, *y = *(refvm_tensor *const *)b;
    if (x->begin != y->begin)
        return x->begin < y->begin ? -1 : 1;
    return x->end < y->end ? -1 : x->end > y->end;
}

/* Parse one tensor entry of the header into t; where names it for errors. */
static ir_status parse_entry(const cJSON *e, refvm_tensor *t, uint64_t data_len, const char *where,
                             ir_error *err)
{
    if (!cJSON_IsObject(e))
        return ir_fail(err, IR_ERR_MALFORMED, where, "tensor entry is not an object");
    const cJSON *dt = cJSON_GetObjectItemCaseSensitive(e, "dtype");
    const cJSON *sh = cJSON_GetObjectItemCaseSensitive(e, "shape");
    const cJSON *off = cJSON_GetObjectItemCaseSensitive(e, "data_offsets");
    if (!cJSON_IsString(dt))
        return ir_fail(err, IR_ERR_MALFORMED, where, "dtype missing or not a string");
    const st_dtype_info *di = st_dtype_lookup(dt->valuestring);
    if (!di)
        return ir_fail(err, IR_ERR_MALFORMED, where, "unknown dtype '%.32s'", dt->valuestring);
    snprintf(t->st_dtype, sizeof t->st_dtype, "%s", di->name);
    t->supported = di->supported;
    t->dtype = di->dtype;
    if (!cJSON_IsArray(sh))
        return ir_fail(err, IR_ERR_MALFORMED, where, "shape missing or not an array");
    int rank = cJSON_GetArraySize(sh);
    if (rank > REFVM_ST_MAX_RANK)
        return ir_fail(err, IR_ERR_UNSUPPORTED, where, "rank %d above %d", rank, REFVM_ST_MAX_RANK);
    t->rank = rank;
    uint64_t numel = 1;
    for (int i = 0; i < rank; i++) {
        uint64_t d;
        if (!json_uint(cJSON_GetArrayItem(sh, i), &d))
            return ir_fail(err, IR_ERR_MALFORMED, where, "shape[%d] is not a non-negative integer", i);
        if (d != 0 && numel > ((uint64_t)1 << 50) / d)
            return ir_fail(err, IR_ERR_MALFORMED, where, "shape overflows");
        numel *= d;
        t->shape[i] = (int64_t)d;
    }
    t->numel = (int64_t)numel;
    if (!cJSON_IsArray(off) || cJSON_GetArraySize(off) != 2 ||
        !json_uint(cJSON_GetArrayItem(off, 0), &t->begin) ||
        !json_uint(cJSON_GetArrayItem(off, 1), &t->end))
        return ir_fail(err, IR_ERR_MALFORMED, where, "data_offsets must be [begin, end] integers");
    if (t->begin > t->end)
        return ir_fail(err, IR_ERR_MALFORMED, where, "data_offsets out of order: [%llu, %llu)",
                       (unsigned long long)t->begin, (unsigned long long)t->end);
    if (t->end > data_len)
        return ir_fail(err, IR_ERR_MALFORMED, where,
                       "data [%llu, %llu) beyond the end of the file (data section is %llu bytes;"
                       " truncated?)", (unsigned long long)t->begin, (unsigned long long)t->end,
                       (unsigned long long)data_len);
    if (t->end - t->begin != numel * (uint64_t)di->bytes)
        return ir_fail(err, IR_ERR_MALFORMED, where,
                       "data_offsets span %llu bytes but shape x %s needs %llu",
                       (unsigned long long)(t->end - t->begin), di->name,
                       (unsigned long long)(numel * (uint64_t)di->bytes));
    return IR_OK;
}

/* Validate the header text (len bytes) against data_len bytes of data; fill st->tensors. */
static ir_status parse_header(refvm_st *st, const char *text, size_t len, uint64_t data_len,
                              const unsigned char *data, ir_error *err)
{
    cJSON *root = cJSON_ParseWithLength(text, len);
    if (!root)
        return ir_fail(err, IR_ERR_MALFORMED, st->path, "header is not valid JSON");
    ir_status s = IR_OK;
    refvm_tensor **order = NULL;
    if (!cJSON_IsObject(root)) {
        s = ir_fail(err, IR_ERR_MALFORMED, st->path, "header is not a JSON object");
        goto done;
    }
    int n = 0;
    for (const cJSON *e = root->child; e; e = e->next)
        if (strcmp(e->string, "__metadata__"))
            n++;
    st->tensors = calloc(n ? (size_t)n : 1, sizeof *st->tensors);
    order = calloc(n ? (size_t)n : 1, sizeof *order);
    if (!st->tensors || !order) {
        s = ir_fail(err, IR_ERR_NOMEM, st->path, "out of memory");
        goto done;
    }
    for (const cJSON *e = root->child; e; e = e->next) {
        if (!strcmp(e->string, "__metadata__")) {
            if (!cJSON_IsObject(e) && !cJSON_IsNull(e)) {
                s = ir_fail(err, IR_ERR_MALFORMED, st->path, "__metadata__ is not an object");
                goto done;
            }
            continue;
        }
        refvm_tensor *t = &st->tensors[st->n];
        char where[256];
        snprintf(where, sizeof where, "%s: tensor '%.160s'", st->path, e->string);
        if (refvm_st_find(st, e->string)) {
            s = ir_fail(err, IR_ERR_MALFORMED, where, "tensor listed twice");
            goto done;
        }
        t->name = strdup(e->string);
        if (!t->name) {
            s = ir_fail(err, IR_ERR_NOMEM, where, "out of memory");
            goto done;
        }
        st->n++;
        s = parse_entry(e, t, data_len, where, err);
        if (s != IR_OK)
            goto done;
        t->data = data + t->begin;
        order[st->n - 1] = t;
    }
    /* No two tensors may share bytes: a writer bug or a crafted file otherwise aliases them. */
    qsort(order, (size_t)st->n, sizeof *order, cmp_by_begin);
    for (int i = 1; i < st->n; i++) {
        const refvm_tensor *a = order[i - 1], *b = order[i];
        if (b->begin < a->end && b->end > b->begin && a->end > a->begin) {
            char where[256];
            snprintf(where, sizeof where, "%s: tensor '%.160s'", st->path, b->name);
            s = ir_fail(err, IR_ERR_MALFORMED, where,
                        "data_offsets [%llu, %llu) overlap tensor '%.100s' [%llu, %llu)",
                        (unsigned long long)b->begin, (unsigned long long)b->end, a->name,
                        (unsigned long long)a->begin, (unsigned long long)a->end);
            goto done;
        }
    }
done:
    free(order);
    cJSON_Delete(root);
    return s;
}

/* Open, map and validate path. See refvm.h. */
ir_status refvm_st_open(const char *path, refvm_st **out, ir_error *err)
{
    *out = NULL;
    refvm_st *st = calloc(1, sizeof *st);
    if (!st || !(st->path = strdup(path))) {
        free(st);
        return ir_fail(err, IR_ERR_NOMEM, path, "out of memory");
    }
    ir_status s = IR_OK;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    struct stat sb;
    if (fd < 0) {
        s = ir_fail(err, IR_ERR_IO, path, "cannot open: %s", strerror(errno));
        goto fail;
    }
    if (fstat(fd, &sb) != 0 || !S_ISREG(sb.st_mode)) {
        s = ir_fail(err, IR_ERR_IO, path, "not a regular file");
        goto fail;
    }
    uint64_t size = (uint64_t)sb.st_size;
    if (size < 8) {
        s = ir_fail(err, IR_ERR_MALFORMED, path, "file is %llu bytes, too short for the 8-byte"
                    " header length", (unsigned long long)size);
        goto fail;
    }
    st->map = mmap(NULL, (size_t)size, PROT_READ, MAP_PRIVATE, fd, 0);
    if (st->map == MAP_FAILED) {
        st->map = NULL;
        s = ir_fail(err, IR_ERR_IO, path, "mmap failed: %s", strerror(errno));
        goto fail;
    }
    st->map_len = (size_t)size;
    close(fd);
    fd = -1;
    const unsigned char *b = st->map;
    uint64_t hlen = 0;
    for (int i = 7; i >= 0; i--)
        hlen = (hlen << 8) | b[i];
    if (hlen > size - 8 || hlen > REFVM_ST_MAX_HEADER || hlen < 2) {
        s = ir_fail(err, IR_ERR_MALFORMED, path, "bad header length %llu (file is %llu bytes)",
                    (unsigned long long)hlen, (unsigned long long)size);
        goto fail;
    }
    s = parse_header(st, (const char *)b + 8, (size_t)hlen, size - 8 - hlen, b + 8 + hlen, err);
    if (s != IR_OK)
        goto fail;
    *out = st;
    return IR_OK;
fail:
    if (fd >= 0)
        close(fd);
    refvm_st_close(st);
    return s;
}

const refvm_tensor *refvm_st_find(const refvm_st *st, const char *name)
{
    for (int i = 0; i < st->n; i++)
        if (!strcmp(st->tensors[i].name, name))
            return &st->tensors[i];
    return NULL;
}

/* Convert t to fp32 into dst. See refvm.h. */
ir_status refvm_st_to_f32(const refvm_st *st, const refvm_tensor *t, float *dst, ir_error *err)
{
    if (!t->supported) {
        char where[256];
        snprintf(where, sizeof where, "%s: tensor '%.160s'", st->path, t->name);
        return ir_fail(err, IR_ERR_UNSUPPORTED, where, "dtype %s is not F32, F16 or BF16",
                       t->st_dtype);
    }
    refvm_st_slice_to_f32(t, 0, t->numel, dst);
    return IR_OK;
}

void refvm_st_slice_to_f32(const refvm_tensor *t, int64_t first, int64_t n, float *dst)
{
    /* Offsets in a file need not be aligned for the element type: read bytes, little-endian. */
    if (t->dtype == IR_F32) {
        const unsigned char *p = t->data + 4 * first;
        for (int64_t i = 0; i < n; i++) {
            uint32_t u = (uint32_t)p[4 * i] | (uint32_t)p[4 * i + 1] << 8 |
                         (uint32_t)p[4 * i + 2] << 16 | (uint32_t)p[4 * i + 3] << 24;
            memcpy(&dst[i], &u, 4);
        }
        return;
    }
    const unsigned char *p = t->data + 2 * first;
    bool bf16 = t->dtype == IR_BF16;
    for (int64_t i = 0; i < n; i++) {
        uint16_t h = (uint16_t)(p[2 * i] | p[2 * i + 1] << 8);
        dst[i] = bf16 ? refvm_bf16_to_f32(h) : refvm_f16_to_f32(h);
    }
}

/* Integer tensor as exact fp32 values. See refvm.h. */
ir_status refvm_st_ints_to_f32(const refvm_st *st, const refvm_tensor *t, float *dst,
                               ir_error *err)
{
    bool i8 = !strcmp(t->st_dtype, "I8"), u8 = !strcmp(t->st_dtype, "U8");
    if (!i8 && !u8) {
        char where[256];
        snprintf(where, sizeof where, "%s: tensor '%.160s'", st->path, t->name);
        return ir_fail(err, IR_ERR_UNSUPPORTED, where, "dtype %s is not I8 or U8", t->st_dtype);
    }
    for (int64_t i = 0; i < t->numel; i++)
        dst[i] = i8 ? (float)(int8_t)t->data[i] : (float)t->data[i];
    return IR_OK;
}

/* ---------------------------------------------------------------- writing */

typedef struct {
    char *name;
    ir_dtype dtype;
    int rank;
    int64_t shape[REFVM_ST_MAX_RANK];
    int64_t numel;
} st_decl;

struct refvm_st_writer {
    char *path;
    ir_out out;              /* the file being written (out.f) */
    FILE *f;
    int n, n_declared;
    st_decl *decl;
    bool header_written;
    int cur;                 /* tensor receiving data */
    int64_t cur_done;        /* elements of it written */
};

static int dtype_bytes(ir_dtype d)
{
    return d == IR_F32 ? 4 : 2;
}

ir_status refvm_st_writer_new(const char *path, int n, refvm_st_writer **out, ir_error *err)
{
    *out = NULL;
    refvm_st_writer *w = calloc(1, sizeof *w);
    if (!w)
        return ir_fail(err, IR_ERR_NOMEM, path, "out of memory");
    w->n = n;
    w->path = strdup(path);
    w->decl = calloc(n > 0 ? (size_t)n : 1, sizeof *w->decl);
    if (!w->path || !w->decl) {
        refvm_st_writer_abort(w);
        return ir_fail(err, IR_ERR_NOMEM, path, "out of memory");
    }
    ir_status s = ir_out_open(&w->out, path, err);
    if (s != IR_OK) {
        refvm_st_writer_abort(w);
        return s;
    }
    w->f = w->out.f;
    *out = w;
    return IR_OK;
}

ir_status refvm_st_writer_declare(refvm_st_writer *w, const char *name, ir_dtype dtype, int rank,
                                  const int64_t *shape, ir_error *err)
{
    if (w->header_written || w->n_declared >= w->n)
        return ir_fail(err, IR_ERR_MALFORMED, name, "declared after data or more than %d tensors",
                       w->n);
    if (dtype != IR_F32 && dtype != IR_F16 && dtype != IR_BF16)
        return ir_fail(err, IR_ERR_UNSUPPORTED, name, "writer handles F32, F16 and BF16 only");
    if (rank < 0 || rank > REFVM_ST_MAX_RANK)
        return ir_fail(err, IR_ERR_MALFORMED, name, "bad rank %d", rank);
    st_decl *d = &w->decl[w->n_declared];
    d->name = strdup(name);
    if (!d->name)
        return ir_fail(err, IR_ERR_NOMEM, name, "out of memory");
    d->dtype = dtype;
    d->rank = rank;
    d->numel = 1;
    for (int i = 0; i < rank; i++) {
        if (shape[i] < 0)
            return ir_fail(err, IR_ERR_MALFORMED, name, "negative dimension");
        d->shape[i] = shape[i];
        d->numel *= shape[i];
    }
    w->n_declared++;
    return IR_OK;
}

static ir_status write_header(refvm_st_writer *w, ir_error *err)
{
    if (w->n_declared != w->n)
        return ir_fail(err, IR_ERR_MALFORMED, w->path, "%d of %d tensors declared", w->n_declared,
                       w->n);
    cJSON *root = cJSON_CreateObject();
    bool ok = root != NULL;
    uint64_t off = 0;
    for (int i = 0; ok && i < w->n; i++) {
        const st_decl *d = &w->decl[i];
        cJSON *e = cJSON_AddObjectToObject(root, d->name);
        cJSON *sh = e ? cJSON_AddArrayToObject(e, "shape") : NULL;
        cJSON *of = e ? cJSON_AddArrayToObject(e, "data_offsets") : NULL;
        ok = e && sh && of &&
             cJSON_AddStringToObject(e, "dtype", d->dtype == IR_F32 ? "F32" :
                                                 d->dtype == IR_F16 ? "F16" : "BF16");
        for (int k = 0; ok && k < d->rank; k++)
            ok = cJSON_AddItemToArray(sh, cJSON_CreateNumber((double)d->shape[k]));
        uint64_t nb = (uint64_t)d->numel * (uint64_t)dtype_bytes(d->dtype);
        ok = ok && cJSON_AddItemToArray(of, cJSON_CreateNumber((double)off)) &&
             cJSON_AddItemToArray(of, cJSON_CreateNumber((double)(off + nb)));
        off += nb;
    }
    char *text = ok ? cJSON_PrintUnformatted(root) : NULL;
    cJSON_Delete(root);
    if (!text)
        return ir_fail(err, IR_ERR_NOMEM, w->path, "out of memory building the header");
    /* Pad with spaces so the data section starts 8-byte aligned, as other writers do. */
    size_t len = strlen(text), padded = (len + 7) / 8 * 8;
    unsigned char lenb[8];
    for (int i = 0; i < 8; i++)
        lenb[i] = (unsigned char)((uint64_t)padded >> (8 * i));
    bool wok = fwrite(lenb, 1, 8, w->f) == 8 && fwrite(text, 1, len, w->f) == len;
    for (size_t i = len; wok && i < padded; i++)
        wok = fputc(' ', w->f) != EOF;
    free(text);
    if (!wok)
        return ir_fail(err, IR_ERR_IO, w->path, "write failed: %s", strerror(errno));
    w->header_written = true;
    return IR_OK;
}

ir_status refvm_st_writer_put(refvm_st_writer *w, const float *vals, int64_t count,
                              ir_error *err)
{
    if (!w->header_written) {
        ir_status s = write_header(w, err);
        if (s != IR_OK)
            return s;
    }
    unsigned char buf[8192];
    while (count > 0) {
        while (w->cur < w->n && w->cur_done == w->decl[w->cur].numel) {
            w->cur++;
            w->cur_done = 0;
        }
        if (w->cur >= w->n)
            return ir_fail(err, IR_ERR_MALFORMED, w->path, "more values than declared");
        const st_decl *d = &w->decl[w->cur];
        int eb = dtype_bytes(d->dtype);
        int64_t k = d->numel - w->cur_done;
        if (k > count)
            k = count;
        if (k > (int64_t)sizeof buf / eb)
            k = (int64_t)sizeof buf / eb;
        for (int64_t i = 0; i < k; i++) {
            uint32_t u;
            if (d->dtype == IR_F32) {
                memcpy(&u, &vals[i], 4);
                for (int j = 0; j < 4; j++)
                    buf[4 * i + j] = (unsigned char)(u >> (8 * j));
            } else {
                u = d->dtype == IR_BF16 ? refvm_f32_to_bf16(vals[i]) : refvm_f32_to_f16(vals[i]);
                buf[2 * i] = (unsigned char)u;
                buf[2 * i + 1] = (unsigned char)(u >> 8);
            }
        }
        if (fwrite(buf, (size_t)eb, (size_t)k, w->f) != (size_t)k)
            return ir_fail(err, IR_ERR_IO, w->path, "write failed: %s", strerror(errno));
        vals += k;
        count -= k;
        w->cur_done += k;
    }
    return IR_OK;
}

static void writer_release(refvm_st_writer *w)
{
    for (int i = 0; i < w->n_declared; i++)
        free(w->decl[i].name);
    free(w->decl);
    free(w->path);
    free(w);
}

ir_status refvm_st_writer_finish(refvm_st_writer *w, ir_error *err)
{
    ir_status s = w->header_written ? IR_OK : write_header(w, err);
    while (s == IR_OK && w->cur < w->n && w->cur_done == w->decl[w->cur].numel) {
        w->cur++;
        w->cur_done = 0;
    }
    if (s == IR_OK && w->cur < w->n)
        s = ir_fail(err, IR_ERR_MALFORMED, w->decl[w->cur].name,
                    "tensor data incomplete: %lld of %lld values written",
                    (long long)w->cur_done, (long long)w->decl[w->cur].numel);
    if (s != IR_OK) {
        refvm_st_writer_abort(w);
        return s;
    }
    w->f = NULL;
    s = ir_out_commit(&w->out, err);
    writer_release(w);
    return s;
}

void refvm_st_writer_abort(refvm_st_writer *w)
{
    if (!w)
        return;
    ir_out_abort(&w->out);
    writer_release(w);
}
