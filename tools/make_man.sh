#!/bin/sh
# make_man.sh BIN_DIR OUT_DIR VERSION: write amk.1 and amk-verify.1 from the binaries' own --help
# (and each amk subcommand's --help), so a man page cannot say something --help does not.
set -eu
bin=$1 out=$2 version=$3
mkdir -p "$out"
today=$(date -u +%Y-%m-%d)

# roff-safe text: backslashes escaped, a leading . or ' neutralised.
esc() { sed -e 's/\\/\\e/g' -e "s/^\\([.']\\)/\\\\\\&\\1/"; }

page() {   # page NAME SUMMARY -- the --help text comes on stdin
    printf '.TH %s 1 "%s" "amk %s" "User Commands"\n' "$(echo "$1" | tr a-z A-Z)" "$today" "$version"
    printf '.SH NAME\n%s \\- %s\n.SH DESCRIPTION\n.nf\n' "$1" "$2"
    esc
    printf '.fi\n'
}

"$bin/amk-verify" --help | page amk-verify \
    "prove a megakernel program free of deadlock and data races, resident and complete" \
    >"$out/amk-verify.1"

{
    "$bin/amk" --help | page amk "lower, prove, run, benchmark and audit Llama megakernel programs"
    for c in $("$bin/amk" --help | sed -n '/^commands:/,/^$/s/^  \([a-z][a-z-]*\)  .*/\1/p'); do
        printf '.SH "AMK %s"\n.nf\n' "$(echo "$c" | tr a-z A-Z)"
        # a command's --help goes to stdout (exit 0); print what it says either way
        "$bin/amk" "$c" --help 2>&1 | esc || true
        printf '.fi\n'
    done
    printf '.SH "SEE ALSO"\namk-verify(1)\n'
} >"$out/amk.1"
