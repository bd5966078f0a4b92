#!/usr/bin/env python3
"""bench_amk_validate.py - `make bench-amk-validate`: amk-verify against AutoMegaKernel's own
validate() on AMK's programs (tests/amk_corpus/), with validate()'s 8,000-task cap on the race
proof lifted (schedule.ir._PROVENANCE_MAX_TASKS = 10**12) so both sides check every task.

Both sides are timed as whole processes: amk-verify reading the .json.gz, and the interpreter
running this script (sys.executable, so no launcher shim is timed) starting, importing schedule.ir,
loading the plain JSON (decompressed once to a temporary folder) and running validate(). The AMK
child also prints the time of validate() alone, measured inside Python, so the ratio against the
check itself is visible too. Runs alternate A B A B ... after one warm-up pair that is not counted;
wall is a monotonic clock around the child, cpu its user+sys and peak its maxrss, both from
wait4(). Every run must be accepted (amk-verify exit 0, validate ok).

usage: bench_amk_validate.py --amk AMK_SRC [--verify build/amk-verify] [--pairs N] [PROGRAM...]
exit 0 when every run of both sides accepted every program, 1 when one did not, 2 on bad use.
"""
import argparse
import gzip
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

CORPUS = "tests/amk_corpus"
PROGRAMS = ["l1b_default_p100", "l8b_default_p17", "l8b_nt64_p17", "l70b_default_p17"]


# The B side, run as `python3 -c AMK_CHILD AMK_SRC FILE` so its process holds nothing but AMK:
# load + validate() with the cap lifted, then one JSON line; exit 1 when rejected.
AMK_CHILD = """
import json, sys, time
sys.path.insert(0, sys.argv[1])
import schedule.ir as amk_ir
amk_ir._PROVENANCE_MAX_TASKS = 10**12
t0 = time.perf_counter()
prog = amk_ir.MegakernelProgram.load(sys.argv[2])
t1 = time.perf_counter()
r = amk_ir.validate(prog)
t2 = time.perf_counter()
print(json.dumps({"ok": r.ok, "tasks": r.stats.get("tasks"), "errors": r.errors[:3],
                  "load_s": t1 - t0, "validate_s": t2 - t1}))
sys.exit(0 if r.ok else 1)
"""


def timed(cmd):
    """Run cmd to completion; return (exit code, stdout, wall s, user+sys s, peak MB)."""
    t0 = time.perf_counter()
    p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    out = p.stdout.read()
    _, status, ru = os.wait4(p.pid, 0)
    wall = time.perf_counter() - t0
    p.returncode = os.waitstatus_to_exitcode(status)
    return p.returncode, out.decode(errors="replace"), wall, ru.ru_utime + ru.ru_stime, ru.ru_maxrss / 1024


def bench_program(name, args, tmp):
    """Warm-up pair, then args.pairs pairs A B; returns the rows to print and whether all accepted."""
    gz = os.path.join(CORPUS, name + ".json.gz")
    plain = os.path.join(tmp, name + ".json")
    with gzip.open(gz, "rb") as src, open(plain, "wb") as dst:
        shutil.copyfileobj(src, dst)
    cmd_a = [args.verify, gz]
    cmd_b = [sys.executable, "-c", AMK_CHILD, args.amk, plain]
    a, b, inner, tasks, ok = [], [], [], None, True
    for i in range(args.pairs + 1):
        ra, rb = timed(cmd_a), timed(cmd_b)
        if ra[0] != 0:
            ok = False
            print(f"{name}: amk-verify exit {ra[0]}:\n{ra[1][-2000:]}")
        try:
            child = json.loads(rb[1].strip().splitlines()[-1])
        except (ValueError, IndexError):
            child = {"ok": False, "errors": [rb[1][-2000:]]}
        if rb[0] != 0 or not child["ok"]:
            ok = False
            print(f"{name}: AMK validate exit {rb[0]}: {child.get('errors')}")
        if i == 0:
            continue  # the warm-up pair: page cache, imports
        a.append(ra[2:])
        b.append(rb[2:])
        inner.append((child.get("load_s", float("nan")), child.get("validate_s", float("nan"))))
        tasks = child.get("tasks")
    return a, b, inner, tasks, ok


def med(rows, k):
    return statistics.median(r[k] for r in rows)


def report(name, tasks, a, b, inner):
    ratio_wall = statistics.median(x[0] / y[0] for x, y in zip(a, b))
    ratio_cpu = statistics.median(x[1] / y[1] for x, y in zip(a, b))
    ratio_val = statistics.median(x[0] / v for x, (_, v) in zip(a, inner))
    print(f"{name} ({tasks} tasks, {len(a)} pairs)")
    print(f"  {'':36s} {'wall s':>8s} {'cpu s':>8s} {'peak MB':>8s}")
    print(f"  {'A amk-verify (whole process)':36s} {med(a, 0):8.3f} {med(a, 1):8.3f} {med(a, 2):8.1f}")
    print(f"  {'B AMK python3+load+validate()':36s} {med(b, 0):8.3f} {med(b, 1):8.3f} {med(b, 2):8.1f}")
    print(f"  {'  of which load (in Python)':36s} {med(inner, 0):8.3f}")
    print(f"  {'  of which validate() (in Python)':36s} {med(inner, 1):8.3f}")
    print(f"  {'A/B ratio of medians':36s} {med(a, 0) / med(b, 0):8.2f} {med(a, 1) / med(b, 1):8.2f} "
          f"{med(a, 2) / med(b, 2):8.2f}")
    print(f"  {'A/B median of per-pair ratios':36s} {ratio_wall:8.2f} {ratio_cpu:8.2f}")
    print(f"  {'A wall / validate() only, per pair':36s} {ratio_val:8.2f}")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--amk", default=os.environ.get("AMK_SRC", ""))
    ap.add_argument("--verify", default="build/amk-verify")
    ap.add_argument("--pairs", type=int, default=5)
    ap.add_argument("programs", nargs="*", default=PROGRAMS)
    args = ap.parse_args()
    if not args.amk or not os.path.isfile(os.path.join(args.amk, "schedule", "ir.py")):
        print(f"bench-amk-validate: AMK_SRC={args.amk!r} is not an AutoMegaKernel checkout (no "
              "schedule/ir.py); run: AMK_SRC=/path/to/AutoMegaKernel make bench-amk-validate")
        return 2
    if args.pairs < 1 or not os.access(args.verify, os.X_OK):
        print(f"bench-amk-validate: need --pairs >= 1 and an executable {args.verify} (make all)")
        return 2
    print(f"amk-verify {args.verify} vs AMK validate() from {args.amk} (cap lifted); python "
          f"{platform.python_version()}; {os.cpu_count()} CPUs ({platform.machine()})")
    print("A = amk-verify FILE.json.gz, B = python3 (import, load FILE.json, validate()); "
          "runs A B A B ..., one warm-up pair not counted; medians")
    print(f"peak MB cannot read below about {timed(['true'])[4]:.0f} MB (the RSS of this script, "
          "which a child's maxrss inherits at fork)\n")
    all_ok = True
    with tempfile.TemporaryDirectory(prefix="bench-amk-validate-") as tmp:
        for name in args.programs:
            a, b, inner, tasks, ok = bench_program(name, args, tmp)
            all_ok &= ok
            report(name, tasks, a, b, inner)
            print(f"  accepted by both sides in every run: {'yes' if ok else 'NO'}\n")
    print("every program accepted by amk-verify (exit 0) and AMK validate() (ok) in every run"
          if all_ok else "bench-amk-validate: some run was NOT accepted (see above)")
    return 0 if all_ok else 1


if __name__ == "__main__":
    sys.exit(main())
