/*
 * test_mk_codes.c - the op codes that cross the C/CUDA boundary (megakernel/megakernel.h)
 * against the IR's (ir/amk_ir.h). The kernel dispatches on IR_OP_* and on codes of its own;
 * the bench prints profile slots by code. These tests fail when either table drifts: an IR op
 * renamed or renumbered under the kernel, a kernel code that lands on an IR op or on a
 * profile-only slot, or a label the bench prints that is not the IR's name. No GPU needed.
 */
#include <criterion/criterion.h>

#include <string.h>

#include "ir/amk_ir.h"
#include "megakernel/megakernel.h"

typedef struct {
    int code;
    const char *name;
    int value;
} ir_entry;

typedef struct {
    int code;
    const char *label;
} own_entry;

#define IR_ROW(c, n, v) {(int)(c), n, v},
static const ir_entry IR_OPS_RUN[] = {MK_IR_OPS(IR_ROW)};
#undef IR_ROW
#define OWN_ROW(c, l) {(int)(c), l},
static const own_entry OWN[] = {MK_OWN_CODES(OWN_ROW)};
#undef OWN_ROW

#define N_IR ((int)(sizeof IR_OPS_RUN / sizeof IR_OPS_RUN[0]))
#define N_OWN ((int)(sizeof OWN / sizeof OWN[0]))

Test(mk_codes, ir_ops_the_kernel_runs_keep_their_ir_names_and_values)
{
    cr_assert_eq(N_IR, 15, "the kernel runs 15 IR ops; the table lists %d", N_IR);
    for (int i = 0; i < N_IR; i++) {
        cr_assert_eq(IR_OPS_RUN[i].code, IR_OPS_RUN[i].value, "%s", IR_OPS_RUN[i].name);
        cr_assert_str_eq(ir_op_name((ir_op)IR_OPS_RUN[i].code), IR_OPS_RUN[i].name,
                         "IR code %d", IR_OPS_RUN[i].code);
        ir_op parsed;
        cr_assert(ir_op_parse(IR_OPS_RUN[i].name, &parsed), "%s", IR_OPS_RUN[i].name);
        cr_assert_eq((int)parsed, IR_OPS_RUN[i].value, "%s", IR_OPS_RUN[i].name);
    }
}

Test(mk_codes, kernel_codes_lie_past_every_ir_op)
{
    for (int i = 0; i < N_OWN; i++) {
        cr_assert_geq(OWN[i].code, (int)IR_OP_COUNT, "%s", OWN[i].label);
        cr_assert_str_eq(ir_op_name((ir_op)OWN[i].code), "?", "%s is an IR op code",
                         OWN[i].label);
    }
}

Test(mk_codes, kernel_codes_are_distinct_and_fit_the_profile)
{
    for (int i = 0; i < N_OWN; i++) {
        cr_assert_lt(OWN[i].code, (int)MK_PROF_SPAN, "%s", OWN[i].label);
        for (int j = 0; j < i; j++)
            cr_assert_neq(OWN[i].code, OWN[j].code, "%s and %s", OWN[i].label, OWN[j].label);
    }
    cr_assert_leq((int)IR_OP_COUNT, (int)MK_OP_NORM_GEMV);
    cr_assert_leq((int)MK_OP_END, (int)MK_PROF_STREAM_PREP);
    cr_assert_eq((int)MK_PROF_SPAN, (int)MK_PROF_SLOTS - 1);
}

Test(mk_codes, profile_labels_are_the_ir_names_then_the_kernels_own)
{
    for (int op = 0; op < (int)IR_OP_COUNT; op++)
        cr_assert_str_eq(mk_op_label(op), ir_op_name((ir_op)op), "code %d", op);
    for (int i = 0; i < N_OWN; i++) {
        cr_assert_str_eq(mk_op_label(OWN[i].code), OWN[i].label);
        for (int op = 0; op < (int)IR_OP_COUNT; op++)
            cr_assert_str_neq(OWN[i].label, ir_op_name((ir_op)op));
    }
    cr_assert_str_eq(mk_op_label(MK_OP_END), "?");
    cr_assert_str_eq(mk_op_label(MK_PROF_SPAN), "?");
    cr_assert_str_eq(mk_op_label(-1), "?");
    cr_assert_str_eq(mk_op_label(MK_PROF_SLOTS), "?");
}
