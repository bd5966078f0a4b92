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


/* ======================================================================================== */
/* Strings: the growable string builder.                                                    */
/* ======================================================================================== */


/* ======================================================================================== */
/* Files: the one whole-file reader.                                                        */
/* ======================================================================================== */


/* ======================================================================================== */
/* Time and ordering: monotonic clock, qsort comparators.                                   */
/* ======================================================================================== */


/* ======================================================================================== */
/* Parsing: strict integers, numbers and comma-separated lists.                             */
/* ======================================================================================== */


/* ======================================================================================== */
/* Options: the table-driven command-line option parser.                                    */
/* ======================================================================================== */


#endif
