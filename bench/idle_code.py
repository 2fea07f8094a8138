#!/usr/bin/env python3
"""Writes bench/idle-code.order: the functions of hark an idle daemon runs, hottest first,
for build.rs to have the linker place side by side (see docs/benchmarks.md, idle
footprint). Runs hark under Valgrind's callgrind on the idle scenario of run.py (5 files,
3 processes, 2 HTTP checks on 127.0.0.1, every 1 s), counts from 15 s after the start for
60 s, and keeps every function of the executable that ran.

Usage: python3 bench/idle_code.py [--hark PATH] [--seconds N]
Needs valgrind (Debian: apt-get install valgrind). Run it on a release build after
changes that move the idle path; a stale list only packs less (renamed functions are
skipped by the linker)."""
import argparse
import collections
import glob
import os
import shutil
import subprocess
import sys
import tempfile
import time

import procstat
import run

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def hot_functions(dump, exe):
    """Mangled names of the functions of `exe` with a cost of their own in a callgrind
    dump (written with --compress-strings=no), by cost, highest first."""
    cost = collections.Counter()
    obj, fn, after_call = None, None, False
    for line in open(dump, errors="replace"):
        line = line.rstrip("\n")
        if line.startswith("ob="):
            obj = line[3:]
        elif line.startswith("fn="):
            fn, after_call = line[3:], False
        elif line.startswith("calls="):
            after_call = True  # the next cost line is the call's, not fn's own
        elif line[:1].isdigit() or line[:1] in "+-*":
            parts = line.split()
            if after_call:
                after_call = False
            elif len(parts) >= 2 and fn and obj and os.path.basename(obj) == os.path.basename(exe):
                cost[fn.split("'")[0]] += int(parts[1])
    return [f for f, c in cost.most_common() if c > 0]


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--hark", default=os.path.join(ROOT, "target", "release", "hark"))
    ap.add_argument("--seconds", type=int, default=60)
    args = ap.parse_args()
    if not shutil.which("valgrind"):
        sys.exit("valgrind is needed: apt-get install valgrind")
    with tempfile.TemporaryDirectory(prefix="hark-idle-code-") as tmp:
        exe = os.path.join(tmp, "hark")
        shutil.copy(args.hark, exe)
        wrapper = os.path.join(tmp, "under-callgrind")
        with open(wrapper, "w") as f:
            f.write(f"#!/bin/sh\nexec valgrind --tool=callgrind --callgrind-out-file={tmp}/cg.%p "
                    f"--dump-instr=no --compress-strings=no --demangle=no {exe} \"$@\"\n")
        os.chmod(wrapper, 0o755)
        try:
            files, procs, urls = run.idle_world(tmp)
            cfg = run.idle_hark_cfg(files, procs, urls, 1)
            procstat.wait_running.__defaults__ = (300.0,)  # valgrind starts slowly
            proc, _ = procstat.start_hark(wrapper, cfg, tmp, rust_log="warn,hark::daemon=info")
            run.keep(proc)
            time.sleep(15)  # past the start and the second give-back (footprint.rs)
            subprocess.run(["callgrind_control", "-z", str(proc.pid)], check=True,
                           stdout=subprocess.DEVNULL)
            time.sleep(args.seconds)
            subprocess.run(["callgrind_control", "-d", str(proc.pid)], check=True,
                           stdout=subprocess.DEVNULL)
            time.sleep(2)
            dumps = sorted(glob.glob(os.path.join(tmp, f"cg.{proc.pid}.*")))
            if not dumps:
                sys.exit("callgrind wrote no dump")
            names = hot_functions(dumps[-1], exe)
        finally:
            run.stop_all()
    out = os.path.join(ROOT, "bench", "idle-code.order")
    with open(out, "w") as f:
        f.write("# Functions an idle hark runs, hottest first: written by bench/idle_code.py,\n"
                "# read by build.rs (the linker's --symbol-ordering-file).\n")
        f.write("".join(n + "\n" for n in names))
    print(f"{len(names)} functions -> {os.path.relpath(out, ROOT)}")


if __name__ == "__main__":
    main()
