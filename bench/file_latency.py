#!/usr/bin/env python3
"""File write -> exec'd action latency, idle RSS and idle CPU of hark.

Usage: python3 bench/file_latency.py [--trials N] [--hark PATH]

Starts `hark run` on a config that watches a temp directory with debounce = "0ms" and runs
bench/stamp (compiled here) on each create. Each trial creates a new file, noting the time
just before the write; the stamp program records when it ran. Reports the median and p95
of the difference over N trials. Then measures, with the example rules in rules/, the
resident memory and the CPU time used over an idle interval.
Every process this starts is stopped by its pid, also on Ctrl-C.
"""
import argparse
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time

from procstat import cpu_seconds, stamped, start_hark, status_kib, stop, wait_running

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def latency(hark, trials, tmp):
    stamp = os.path.join(tmp, "stamp")
    subprocess.run(["cc", "-O2", "-o", stamp, os.path.join(ROOT, "bench", "stamp.c")], check=True)
    watched = os.path.join(tmp, "watched")
    os.mkdir(watched)
    stamps = os.path.join(tmp, "stamps")
    cfg = f"""
[watch.w]
type = "file"
paths = ["{watched}"]
events = ["create"]
debounce = "0ms"

[rule.r]
watch = "w"
then = ["stamp"]
trigger_limit = "off"

[action.stamp]
type = "shell"
command = ["{stamp}", "{stamps}"]
"""
    # A state directory of its own in tmp, and the first trial only once the watch is armed.
    proc, log = start_hark(hark, cfg, tmp, rust_log="warn,hark::daemon=info")
    try:
        def write(i):
            t0 = time.time_ns()
            with open(os.path.join(watched, f"f{i}"), "w") as f:
                f.write("x")
            return t0
        return stamped(trials, stamps, write)
    finally:
        stop(proc)
        log.close()


def idle(hark, seconds, tmp):
    log = os.path.join(tmp, "idle.log")
    with open(log, "wb") as logf:
        proc = subprocess.Popen([hark, "run", "-c", os.path.join(ROOT, "rules")], stderr=logf,
                                env={"RUST_LOG": "info", "PATH": os.environ["PATH"]})
    try:
        wait_running(proc, log)
        time.sleep(1)
        c0 = cpu_seconds(proc.pid)
        time.sleep(seconds)
        c1 = cpu_seconds(proc.pid)
        return status_kib(proc.pid, "VmRSS"), status_kib(proc.pid, "RssAnon"), c1 - c0
    finally:
        stop(proc)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--trials", type=int, default=50)
    ap.add_argument("--idle-seconds", type=float, default=10)
    ap.add_argument("--hark", default=os.path.join(ROOT, "target", "release", "hark"))
    args = ap.parse_args()
    tmp = tempfile.mkdtemp(prefix="hark-bench")
    try:
        deltas = latency(args.hark, args.trials, tmp)
        deltas.sort()
        p95 = deltas[min(len(deltas) - 1, int(len(deltas) * 0.95))]
        rss_kib, anon_kib, cpu_s = idle(args.hark, args.idle_seconds, tmp)
        print(f"| measurement | value |")
        print(f"|---|---|")
        print(f"| file write -> exec'd action, median ({len(deltas)} trials, debounce 0ms) | {statistics.median(deltas):.2f} ms |")
        print(f"| file write -> exec'd action, p95 | {p95:.2f} ms |")
        print(f"| idle RSS with rules/ | {rss_kib / 1024:.1f} MiB |")
        print(f"| of which anonymous (RssAnon) | {anon_kib / 1024:.1f} MiB |")
        print(f"| idle CPU over {args.idle_seconds:.0f} s | {cpu_s:.2f} s |")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
