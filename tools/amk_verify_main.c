/*
 * amk_verify_main.c - the amk-verify binary: the same as `amk verify`.
 */
#include "tools/cmd.h"

int main(int argc, char **argv) { return cmd_verify(argc, argv); }
