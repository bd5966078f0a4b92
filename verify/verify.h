/*
 * verify.h - amk-verify: proves a program's launch plan free of deadlock and data races, that it
 * fits the GPU and stays inside its buffers at every decode position, or refutes it with a
 * witness. The verify/ part owns the five obligations, the witnesses, and the certificates
 * with their re-check without Z3 (verify_cert_check, which the megakernel and bench rely on;
 * SPEC.md section 12). The only part of the project that links Z3; no Z3 type crosses this
 * header.
 */
#ifndef AMK_VERIFY_H
#define AMK_VERIFY_H

#include "ir/amk_ir.h"

/* Verdicts double as exit codes. */
typedef enum {
    VERIFY_PROVED = 0,
    VERIFY_REFUTED = 1,
    VERIFY_MALFORMED = 2,
    VERIFY_UNKNOWN = 3,
    VERIFY_SKIPPED = 4        /* obligation not run because an earlier one failed */
} verify_verdict;

/* The five obligations of SPEC.md, in the order they are decided. */
typedef enum {
    VERIFY_WELLFORMED = 0,
    VERIFY_DEADLOCK,
    VERIFY_RACE,
    VERIFY_RESIDENT,
    VERIFY_COMPLETE,
    VERIFY_N_OBLIGATIONS
} verify_obligation;

typedef struct {
    const ir_target *target;  /* NULL: the program's own target (MALFORMED if it has none) */
    ir_queue_order queue_order; /* for programs without a launch plan */
    int64_t timeout_ms;       /* per Z3 query; default 30000 */
    int64_t rlimit;           /* per Z3 query, deterministic; default 50,000,000 */
    double deadline_s;        /* whole run, wall seconds; 0: none (the default). Past it every
                                 obligation not yet decided is UNKNOWN, never PROVED */
    /* Progress, for long runs: called with one line (no newline) when an obligation starts and
       at most about once a second inside long loops; NULL for none. The library never prints. */
    void (*progress)(void *arg, const char *line);
    void *progress_arg;
} verify_opts;

void verify_opts_default(verify_opts *o);

typedef struct {
    verify_verdict status;
    double seconds;
    int64_t solver_queries;   /* Z3 checks made for this obligation */
    int64_t solver_conflicts; /* summed "conflicts" statistic, when Z3 reports it */
    char detail[512];         /* one line: what was proved, or why not */
} verify_ob_result;

/* The verdict. Strings are owned; verify_result_free releases them. */
typedef struct {
    verify_verdict verdict;                    /* worst over the obligations */
    verify_ob_result ob[VERIFY_N_OBLIGATIONS];
    char witness_kind[32];                     /* "" when PROVED; see SPEC.md */
    char *witness_json;                        /* REFUTED/MALFORMED: the witness object */
    char *certificate_json;                    /* PROVED: the certificate object */
    char program_sha256[65];                   /* of the canonical program JSON */
    char z3_version[64];
    double seconds;
} verify_result;

/* Verify p. Returns IR_OK whenever a verdict was reached (PROVED, REFUTED, MALFORMED or
 * UNKNOWN, all in r); another status only on allocation failure. r is zeroed first; the caller
 * releases it with verify_result_free. A solver timeout or any disagreement between Z3 and the
 * C algorithms is UNKNOWN, never PROVED. */
ir_status verify_program(const ir_program *p, const verify_opts *o, verify_result *r,
                         ir_error *err);
void verify_result_free(verify_result *r);

/* The linked Z3's version, "major.minor.build.revision". */
void verify_z3_version(char out[64]);

/* Release the solver's global caches (call once before exit, for leak checkers). */
void verify_release_memory(void);

const char *verify_verdict_name(verify_verdict v);
const char *verify_obligation_name(verify_obligation ob);

/* ---- Certificates (format 1, SPEC.md 12.4): what a PROVED run writes and what a checker reads
 * back. verify/cert.c owns the format; nothing else writes or parses a certificate. */

/* What the "tool" field of a certificate starts with; the version follows. */
#define VERIFY_CERT_TOOL "amk-verify "

/* Occupancy evidence: blocks per SM that fit on the target and the launch they hold. */
typedef struct {
    int64_t blocks_per_sm, grid, threads_per_block, regs_per_thread, smem_per_block,
        smem_page_peak;
} verify_occupancy;

/* The fields of a certificate. */
typedef struct {
    char program_sha256[65];      /* of the canonical program JSON; "" when absent or no hash */
    char tool[64];                /* VERIFY_CERT_TOOL followed by the tool's version */
    char z3_version[64];          /* "" when absent */
    int64_t timeout_ms, rlimit;   /* the per-query limits of the run */
    char target[IR_MAX_NAME];     /* the GPU target proved against; "" when absent */
    ir_queue_order queue_order;   /* list or topo */
    int64_t pos_lo, pos_end;      /* positions proved: [pos_lo, pos_end); read as [-1, -1] when
                                     not two integers, which no program is proved over */
    verify_ob_result ob[VERIFY_N_OBLIGATIONS]; /* status, seconds, solver_queries, detail */
    /* Evidence. finish_order: every task in an order that satisfies every wait; an entry that is
       not a task id reads as -1, and a list that is missing as n_finish_order -1. Owned after
       verify_cert_read (verify_cert_free releases it); the writer only reads it. */
    int32_t *finish_order;
    int64_t n_finish_order;
    bool has_race_pairs;          /* race_pairs: conflicting access pairs proved ordered */
    int64_t race_pairs;
    bool has_occupancy;           /* occupancy: blocks_per_sm and grid are integers */
    verify_occupancy occupancy;
} verify_cert;

/* Write c as certificate JSON (the bytes of SPEC.md 12.4; the obligations' statuses as c holds
 * them). *json is owned by the caller (free). IR_ERR_NOMEM is the only failure. */
ir_status verify_cert_write(const verify_cert *c, char **json, ir_error *err);

/* Read a certificate (JSON text, len bytes) into c, checking what holds for any program: kind,
 * format 1, tool, limits as amk-verify accepts them, queue order, verdict and every obligation
 * recorded PROVED. c is zeroed first; the caller releases it with verify_cert_free. IR_OK, or
 * IR_ERR_IO when the text is not an amk-verify certificate at all (not a JSON object, another
 * kind), IR_ERR_UNSUPPORTED for another format, IR_ERR_MALFORMED (err names the field) when a
 * field does not hold, IR_ERR_NOMEM. */
ir_status verify_cert_read(const char *json, size_t len, verify_cert *c, ir_error *err);
void verify_cert_free(verify_cert *c);

/* Re-check a certificate (JSON text) against p without Z3: verify_cert_read, then the positions
 * as a run on p records them, the hash, and the evidence (the finish order an execution of the
 * queues satisfying every wait, occupancy covering the grid). IR_OK when it holds; otherwise
 * verify_cert_read's statuses, IR_ERR_MALFORMED (err says which part) for a part that does not
 * hold for p. */
ir_status verify_cert_check(const char *cert_json, size_t len, const ir_program *p,
                            ir_error *err);

#endif /* AMK_VERIFY_H */
