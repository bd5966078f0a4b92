/*
 * proofs.h - the proof regression corpus: reproducible mutations that turn a safe program into
 * one unsafe in exactly one named way, each with the witness kind amk-verify must report (and
 * harmless look-alikes that must still be PROVED).
 */
#ifndef AMK_PROOFS_H
#define AMK_PROOFS_H

#include "ir/amk_ir.h"

/* One mutation family. */
typedef struct {
    const char *name;            /* e.g. "cross_queue_deadlock" */
    const char *witness_kind;    /* what amk-verify must report; "" when the mutant must
                                    still be PROVED (a change that only looks unsafe) */
    const char *summary;
} proofs_mutation;

/* The families, and how many there are. */
const proofs_mutation *proofs_mutation_at(int i);
int proofs_mutation_count(void);
const proofs_mutation *proofs_mutation_find(const char *name);

/* Apply mutation `name` to p in place, choosing among candidate sites with seed. The program
 * must have a launch plan. IR_ERR_UNSUPPORTED (err says why) when p offers no site for it,
 * IR_ERR_MALFORMED for an unknown name. */
ir_status proofs_mutate(ir_program *p, const char *name, uint64_t seed, ir_error *err);

/* ---------------------------------------------------------------- the corpus file */

#ifndef PROOFS_MAX_FIELDS
#define PROOFS_MAX_FIELDS 12         /* fields of one corpus line, options included */
#endif
#ifndef PROOFS_MAX_LINE
#define PROOFS_MAX_LINE 2047         /* characters of one corpus line */
#endif

typedef enum { PROOFS_LOWER, PROOFS_MUTATE, PROOFS_FILES, PROOFS_FILE } proofs_recipe_kind;

/* One line of the corpus: NAME KIND ARGS... EXPECT WITNESS [--opt=VALUE...]. Every string
 * points into the proofs_corpus that holds the recipe. */
typedef struct {
    int line;                        /* 1-based line number in the file */
    const char *name;                /* letters, digits, '.', '-', '_' (it becomes a file name) */
    proofs_recipe_kind kind;
    const char *args[3];             /* lower: MODEL CONFIG; mutate: BASE FAMILY SEED;
                                        files: GLOB; file: PATH */
    uint64_t seed;                   /* mutate: SEED (decimal or 0x hex) */
    const char *verdict;             /* PROVED, REFUTED, MALFORMED, UNKNOWN or NOSITE */
    const char *witness;             /* the witness kind expected, "-" for none */
    const char *opts[PROOFS_MAX_FIELDS];   /* extra amk-verify options: --name=VALUE or --flag */
    int n_opts;
} proofs_recipe;

/* A parsed corpus: its recipes in file order and the text they point into (owned). */
typedef struct {
    proofs_recipe *recipes;
    int n;
    char *text;
} proofs_corpus;

/* Read every line of a corpus's text before anything runs. IR_ERR_MALFORMED naming the line for
 * a line with too few or too many fields, an unknown kind or verdict, a NAME or mutation BASE
 * that is not plain, an unknown mutation family, a bad seed, an option without a name, a line over
 * PROOFS_MAX_LINE characters or a NUL byte; also when no line names a program. On success the
 * caller frees c with proofs_corpus_free (also safe after a failure). */
ir_status proofs_corpus_parse(const char *text, size_t len, proofs_corpus *c, ir_error *err);
void proofs_corpus_free(proofs_corpus *c);
/* Whether s is a plain name: non-empty letters, digits, '.', '-' and '_'. */
bool proofs_valid_name(const char *s);

#endif /* AMK_PROOFS_H */
