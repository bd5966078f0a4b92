/*
 * base.h - the plain things every part needs, below ir/: one growable string builder, one
 * whole-file reader with one documented size cap, a monotonic clock, comparison helpers for
 * qsort, strict integer and list parsers, a table-driven command-line option parser, and the
 * limits shared by more than one part. Nothing here knows about programs, models or GPUs;
 * nothing here prints or exits. Prefix: base_.
 */
#ifndef AMK_BASE_H
#define AMK_BASE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* ======================================================================================== */
/* Limits shared by more than one part (each behind #ifndef so a build may override it).    */
/* ======================================================================================== */

/* The largest file any reader takes whole (programs, configs, certificates, witnesses, claims,
 * corpora, goldens): 4 GiB. A larger file is refused before anything is allocated. */
#ifndef BASE_MAX_FILE_BYTES
#define BASE_MAX_FILE_BYTES ((size_t)1 << 32)
#endif

/* The deepest weight-stream pipelining (queue positions whose tiles are fetched ahead of the
 * running task): 64, the bound SPEC.md 8.2 gives the config. The config and plan readers and the
 * lowering refuse more and the megakernel loader clamps to it; the stream ring has far fewer
 * slots (SPEC.md 15.2), so a deeper plan could only wait. */
#ifndef BASE_MAX_PIPELINING_DEPTH
#define BASE_MAX_PIPELINING_DEPTH 64
#endif

/* The most threads per block a launch plan may ask for: 1024, CUDA's per-block hardware limit
 * (SPEC.md 8.2). The lowering refuses configs above it and the megakernel loader plans above it. */
#ifndef BASE_MAX_THREADS_PER_BLOCK
#define BASE_MAX_THREADS_PER_BLOCK 1024
#endif

/* The most blocks (queues, SMs) of one launch: 2^24. The plan and config readers, the plan
 * allocator and the lowering refuse more; it keeps every queue and SM index an int32 with room
 * to spare and is far above any GPU's SM count. */
#ifndef BASE_MAX_GRID
#define BASE_MAX_GRID ((int64_t)1 << 24)
#endif

/* The largest RoPE head_dim: 4096. The lowering refuses larger models, the reference VM keeps
 * one cos/sin row of that many entries on its stack, and the megakernel tabulates no wider. */
#ifndef BASE_MAX_HEAD_DIM
#define BASE_MAX_HEAD_DIM 4096
#endif

/* The largest attention head_dim the megakernel runs: 256, one head held in registers (8
 * values per lane of a warp). The loader refuses larger programs before the kernel sees them. */
#ifndef BASE_MAX_KERNEL_HEAD_DIM
#define BASE_MAX_KERNEL_HEAD_DIM 256
#endif


/* ======================================================================================== */
/* Strings: the growable string builder.                                                    */
/* ======================================================================================== */

/* A growable NUL-terminated string. Zero-initialise it ({0}); append with the functions below;
 * an allocation failure sets oom, after which appends do nothing (check oom once at the end).
 * The builder owns s: release it with base_sb_free or take it with base_sb_take. */
typedef struct {
    char *s;      /* the text so far, NUL-terminated (NULL while empty) */
    size_t n;     /* its length in bytes, without the NUL */
    size_t cap;   /* bytes allocated */
    bool oom;     /* an allocation failed; the text is incomplete */
} base_sb;

/* Append n bytes of s. */
void base_sb_put(base_sb *b, const char *s, size_t n);
/* Append the C string s. */
void base_sb_str(base_sb *b, const char *s);
/* Append printf-formatted text. */
void base_sb_fmt(base_sb *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Hand the text over: returns it (an empty string when nothing was appended; the caller frees
 * it with free) and stores its length in *len when len is not NULL; NULL when oom was set or
 * the final allocation fails. Either way the builder is left empty. */
char *base_sb_take(base_sb *b, size_t *len);
/* Free the text and leave the builder empty. */
void base_sb_free(base_sb *b);


/* ======================================================================================== */
/* Files: the one whole-file reader.                                                        */
/* ======================================================================================== */

typedef enum {
    BASE_FILE_OK = 0,
    BASE_FILE_CANNOT_OPEN,   /* open(2) failed (why holds strerror) */
    BASE_FILE_NOT_REGULAR,   /* a directory, device, FIFO or socket: never read */
    BASE_FILE_TOO_LARGE,     /* over max_bytes, on disk or once decompressed */
    BASE_FILE_READ_ERROR,    /* read failed or the gzip stream is corrupt */
    BASE_FILE_NO_MEMORY,
} base_file_status;

/* Read the whole regular file at path into *text (NUL-terminated, length in *len). A file larger
 * than max_bytes is refused by its size before anything is allocated; a gzip file is read
 * decompressed when gunzip is true, and max_bytes then bounds what comes out too. A FIFO or
 * device is refused without blocking. On failure *text is NULL and why (why_len bytes, may be
 * NULL) says what went wrong in words. The caller frees *text with free. */
base_file_status base_read_file(const char *path, size_t max_bytes, bool gunzip, char **text,
                                size_t *len, char *why, size_t why_len);


/* ======================================================================================== */
/* Time and ordering: monotonic clock, qsort comparators.                                   */
/* ======================================================================================== */

/* Seconds on the monotonic clock (an arbitrary origin: use differences only). */
double base_now_s(void);
/* qsort comparator of doubles, ascending (NaN sorts last). */
int base_cmp_double(const void *a, const void *b);
/* qsort comparator of int64_t, ascending. */
int base_cmp_i64(const void *a, const void *b);


/* ======================================================================================== */
/* Parsing: strict integers, numbers and comma-separated lists.                             */
/* ======================================================================================== */

/* The whole string s as a decimal integer in [lo, hi]: true and *out set, or false and *out
 * untouched for an empty string, a sign or digit error, trailing characters or a value out of
 * range (no silent wrap, no atoi). Leading whitespace is refused too. */
bool base_parse_i64(const char *s, int64_t lo, int64_t hi, int64_t *out);
/* base_parse_i64 for an int. */
bool base_parse_int(const char *s, int lo, int hi, int *out);
/* A seed or other unsigned 64-bit value: decimal, or hexadecimal with a 0x prefix; no sign, no
 * trailing characters, no overflow. */
bool base_parse_u64(const char *s, uint64_t *out);
/* The whole string s as a finite number in [lo, hi] (strtod syntax, no trailing characters). */
bool base_parse_double(const char *s, double lo, double hi, double *out);
/* A comma-separated list of decimal integers, each in [lo, hi] ("1,2,3"; no empty items, no
 * spaces). Returns the array (the caller frees it) and its length in *n (at least 1); NULL for
 * an empty or bad list or when memory runs out. */
int32_t *base_parse_i32_list(const char *s, int32_t lo, int32_t hi, int *n);


/* ======================================================================================== */
/* Options: the table-driven command-line option parser.                                    */
/* ======================================================================================== */


#endif
