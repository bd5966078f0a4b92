#!/usr/bin/env python3
"""Check programs with AutoMegaKernel's own validate() (test data for test_lower, SPEC 8.8).

Loads each FILE with AMK's MegakernelProgram.load and prints one line per file:
    FILE ok|REJECTED tasks=N errors=E warnings=W
followed by up to five "  error: ..." lines. --full lifts AMK's cap on the task count above which
validate() skips its race and page-aliasing checks (schedule.ir._PROVENANCE_MAX_TASKS), so every
check runs on every program. Only AMK's public entry points are called; nothing of AMK is copied.

usage: amk_validate.py --amk AMK_SRC [--full] FILE...
exit 0 when every program is accepted (warnings allowed), 1 when one is rejected, 2 on bad use.
"""
import argparse
import sys


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--amk", required=True)
    ap.add_argument("--full", action="store_true")
    ap.add_argument("files", nargs="+")
    a = ap.parse_args()
    sys.path.insert(0, a.amk)
    import schedule.ir as amk_ir

    if a.full:
        amk_ir._PROVENANCE_MAX_TASKS = 1 << 30
    rejected = 0
    for path in a.files:
        r = amk_ir.validate(amk_ir.MegakernelProgram.load(path))
        print(f"{path} {'ok' if r.ok else 'REJECTED'} tasks={r.stats.get('tasks')} "
              f"errors={len(r.errors)} warnings={len(r.warnings)}")
        for e in r.errors[:5]:
            print(f"  error: {e}")
        rejected += not r.ok
    return 1 if rejected else 0


if __name__ == "__main__":
    sys.exit(main())
