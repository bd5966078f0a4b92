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
/* A ScheduleConfig's tile-like values (N_tile, stage_tiles, kv_block, kv_heads): the config
 * reader and the lowering's checker state the same range. */
#ifndef BASE_MAX_TILE
#define BASE_MAX_TILE ((int64_t)1 << 31)
#endif
/* A ScheduleConfig's smem_bytes_per_block: values no GPU could mean (1 GiB) are refused; what a
 * given target cannot hold is left to the verifier's residency obligation. */
#ifndef BASE_MAX_SMEM_BYTES
#define BASE_MAX_SMEM_BYTES ((int64_t)1 << 30)
#endif

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
/* printf into a caller's message buffer of len bytes (truncated to fit); nothing when out is
 * NULL or len is 0. The "why" of the functions that fill one. */
void base_say(char *out, size_t len, const char *fmt, ...) __attribute__((format(printf, 3, 4)));


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
/* v as a range bound in messages: "2^k" for a power of two above 1024, else decimal, so a limit
 * reads the same wherever it is stated. */
void base_bound_text(int64_t v, char *out, size_t len);
/* A comma-separated list of decimal integers, each in [lo, hi] ("1,2,3"; no empty items, no
 * spaces). Returns the array (the caller frees it) and its length in *n (at least 1); NULL for
 * an empty or bad list or when memory runs out. */
int32_t *base_parse_i32_list(const char *s, int32_t lo, int32_t hi, int *n);


/* ======================================================================================== */
/* Options: the table-driven command-line option parser.                                    */
/* ======================================================================================== */

/* One command line is a table of options plus the positional arguments. Every option is
 * spelled "--name VALUE" or "--name=VALUE" (a short name such as "-o" the same way; "-o -" is a
 * value "-"); a flag takes no value. An argument that does not start with '-', a lone "-", and
 * everything after "--" are positional. A repeated option keeps its last value, except a
 * BASE_OPT_STRINGS option, which collects every value in order. "--help" and "-h" anywhere in
 * option position win over everything else (nothing is stored). The same table prints the usage
 * text, so the help and the parser cannot disagree. The parser never prints: an error fills a
 * one-line message naming the option and what it accepts, e.g.
 *   --steps: expected an integer in [1, 1000000], got 'x'                                    */

typedef enum {
    BASE_OPT_FLAG,      /* dst bool *: set true; takes no value */
    BASE_OPT_STRING,    /* dst const char **: the value itself (points into argv) */
    BASE_OPT_STRINGS,   /* dst base_opt_strings *: each value appended, at most cap of them */
    BASE_OPT_INT,       /* dst int *: a decimal integer in [lo, hi] (base_parse_int) */
    BASE_OPT_I64,       /* dst int64_t *: a decimal integer in [lo, hi] (base_parse_i64) */
    BASE_OPT_U64,       /* dst uint64_t *: decimal or 0x hex, e.g. a seed (base_parse_u64) */
    BASE_OPT_DOUBLE,    /* dst double *: a finite number in [dlo, dhi] (base_parse_double) */
    BASE_OPT_CHOICE,    /* dst int *: the index of the value in choices */
} base_opt_type;

/* Where a BASE_OPT_STRINGS option collects its values: v holds cap slots the caller owns. */
typedef struct {
    const char **v;
    int n, cap;
} base_opt_strings;

typedef struct {
    const char *name;       /* "--steps", "-o" */
    base_opt_type type;
    void *dst;              /* see base_opt_type; holds the default before parsing */
    const char *value;      /* the value's name in the usage text ("N", "FILE"); NULL: flag */
    const char *help;       /* the usage text; each '\n' starts an indented continuation line */
    int64_t lo, hi;         /* INT, I64: the accepted range (lo == hi == 0: any int64 / int) */
    double dlo, dhi;        /* DOUBLE: the accepted range (dhi INFINITY: no upper bound) */
    const char *const *choices;   /* CHOICE: the accepted words, NULL-terminated */
    bool required;          /* absent from the command line is an error */
    bool show_default;      /* the usage text appends " (default X)", X read from dst */
} base_option;

/* Table rows, one per type; the trailing arguments are more fields, e.g. .required = true or
 * .show_default = true. */
#define BASE_FLAG(nm, d, hlp, ...) \
    {.name = (nm), .type = BASE_OPT_FLAG, .dst = (d), .help = (hlp), __VA_ARGS__}
#define BASE_STR(nm, d, val, hlp, ...) \
    {.name = (nm), .type = BASE_OPT_STRING, .dst = (d), .value = (val), .help = (hlp), __VA_ARGS__}
#define BASE_STRS(nm, d, val, hlp, ...) \
    {.name = (nm), .type = BASE_OPT_STRINGS, .dst = (d), .value = (val), .help = (hlp), __VA_ARGS__}
#define BASE_INT(nm, d, val, l, h, hlp, ...) \
    {.name = (nm), .type = BASE_OPT_INT, .dst = (d), .value = (val), .lo = (l), .hi = (h), \
     .help = (hlp), __VA_ARGS__}
#define BASE_I64(nm, d, val, l, h, hlp, ...) \
    {.name = (nm), .type = BASE_OPT_I64, .dst = (d), .value = (val), .lo = (l), .hi = (h), \
     .help = (hlp), __VA_ARGS__}
#define BASE_U64(nm, d, val, hlp, ...) \
    {.name = (nm), .type = BASE_OPT_U64, .dst = (d), .value = (val), .help = (hlp), __VA_ARGS__}
#define BASE_DOUBLE(nm, d, val, l, h, hlp, ...) \
    {.name = (nm), .type = BASE_OPT_DOUBLE, .dst = (d), .value = (val), .dlo = (l), .dhi = (h), \
     .help = (hlp), __VA_ARGS__}
#define BASE_CHOICE(nm, d, val, ch, hlp, ...) \
    {.name = (nm), .type = BASE_OPT_CHOICE, .dst = (d), .value = (val), .choices = (ch), \
     .help = (hlp), __VA_ARGS__}

/* A command's whole command line: what it is called, its options, its positional arguments and
 * the text around the option list. */
typedef struct {
    const char *prog;             /* "amk run": only for the caller's messages */
    const char *synopsis;         /* "usage: ..." line(s), each ending in '\n' */
    const char *about;            /* paragraph(s) after the synopsis, or NULL */
    const base_option *opts;
    int n_opts;
    const char *pos_name;         /* the positionals' name in errors ("PROGRAM"), or NULL */
    int min_pos, max_pos;         /* accepted count of positionals; max_pos < 0: no limit */
    const char **pos;             /* where they go: max_pos slots (argc slots when no limit) */
    int *n_pos;                   /* how many were given; may be NULL when max_pos is 0 */
    const char *epilog;           /* text after the option list ("exit: ..."), or NULL */
} base_cmdline;

typedef enum {
    BASE_OPTS_OK = 0,   /* parsed: every dst given on the command line is set */
    BASE_OPTS_HELP,     /* --help or -h: nothing was stored; print the usage, exit 0 */
    BASE_OPTS_ERROR,    /* a usage error: err says which option and what it accepts */
} base_opts_status;

/* Parse argv[1..argc-1] (argv[0] is the command's name) by cl. On BASE_OPTS_ERROR err (err_len
 * bytes) holds one line without the program name; dsts before the bad argument may be set. */
base_opts_status base_opts_parse(const base_cmdline *cl, int argc, char **argv, char *err,
                                 size_t err_len);
/* Append cl's usage text to out: the synopsis, the about text, one entry per option (name,
 * value name, help and, where asked, the default read from dst), then the epilog. */
void base_opts_usage(const base_cmdline *cl, base_sb *out);


#endif
