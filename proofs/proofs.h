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

#endif /* AMK_PROOFS_H */
