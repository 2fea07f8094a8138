#!/usr/bin/env python3
"""Process watches: exit -> action latency, the CPU of one pass over many processes, and
the idle CPU of 20 process watches.

Usage: python3 bench/process_exit.py [--trials N] [--processes N] [--seconds S]
                                     [--idle-seconds S] [--hark PATH]

1. Latency: hark follows a copy of `sleep` under a unique name and runs bench/stamp
   (compiled here) on its `exit`. Each trial starts the program, waits until hark follows
   it (its `start` was stamped), notes the time and SIGKILLs it; the latency is the
   exit stamp minus that time. It covers the pidfd wake-up, the rule engine and the
   fork+exec of the action.
2. A pass over many processes: N copies of `sleep` under one name, one watch over them at
   `every = "1s"`; hark's CPU time over S seconds divided by the passes made.
3. Idle: 20 process watches at `every = "5s"` (names that are not running), hark's CPU
   over the given seconds (from schedstat, to the nanosecond: /proc/PID/stat counts in
   10 ms ticks), as a share of one core.

Every process this starts is stopped by its pid when it ends, also on Ctrl-C.
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

from procstat import cpu_seconds, cpu_seconds_fine, start_hark, stop

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def read_stamps(path):
    try:
        with open(path) as f:
            return [line.split() for line in f if line.strip()]
    except FileNotFoundError:
        return []


def latency(hark, trials, tmp, children):
    stamp = os.path.join(tmp, "stamp")
    subprocess.run(["cc", "-O2", "-o", stamp, os.path.join(ROOT, "bench", "stamp.c")], check=True)
    name = f"hb{os.getpid() % 100000:05d}"
    prog = os.path.join(tmp, name)
    shutil.copy("/bin/sleep", prog)
    stamps = os.path.join(tmp, "stamps")
    cfg = f"""
[watch.p]
type = "process"
name = "{name}"
every = "100ms"

[rule.started]
watch = "p"
when = 'kind == "start"'
then = ["stamp_start"]

[rule.exited]
watch = "p"
when = 'kind == "exit"'
then = ["stamp_exit"]

[action.stamp_start]
type = "shell"
command = ["{stamp}", "{stamps}.start"]

[action.stamp_exit]
type = "shell"
command = ["{stamp}", "{stamps}"]
"""
    proc, log = start_hark(hark, cfg, tmp)
    results = []
    try:
        for i in range(trials):
            child = subprocess.Popen([prog, "60"])
            children.append(child)
            deadline = time.time() + 10
            while len(read_stamps(stamps + ".start")) <= i and time.time() < deadline:
                time.sleep(0.005)
            if len(read_stamps(stamps + ".start")) <= i:
                raise SystemExit("hark never saw the process start")
            t0 = time.time_ns()
            child.send_signal(signal.SIGKILL)
            deadline = time.time() + 10
            while len(read_stamps(stamps)) <= i and time.time() < deadline:
                time.sleep(0.002)
            child.wait()
            got = read_stamps(stamps)
            if len(got) <= i:
                raise SystemExit("hark never ran the exit action")
            results.append((int(got[i][0]) - t0) / 1e6)
    finally:
        stop(proc)
        log.close()
    return results


def one_pass_cpu(hark, n, seconds, tmp, children):
    name = f"hm{os.getpid() % 100000:05d}"
    prog = os.path.join(tmp, name)
    shutil.copy("/bin/sleep", prog)
    for _ in range(n):
        children.append(subprocess.Popen([prog, "3600"]))
    cfg = f'[watch.many]\ntype = "process"\nname = "{name}"\nevery = "1s"\n\n' \
          '[rule.none]\nwatch = "many"\nwhen = \'kind == "sample" && count == 0\'\n'
    proc, log = start_hark(hark, cfg, tmp)
    try:
        time.sleep(3)  # the first passes follow every process (a pidfd each)
        c0, t0 = cpu_seconds(proc.pid), time.monotonic()
        time.sleep(seconds)
        c1, t1 = cpu_seconds(proc.pid), time.monotonic()
    finally:
        stop(proc)
        log.close()
    passes = (t1 - t0) / 1.0
    return 1000 * (c1 - c0) / passes


def idle_cpu(hark, seconds, tmp):
    cfg = ""
    for i in range(20):
        cfg += f'[watch.p{i}]\ntype = "process"\nname = "hark-idle-{i}"\nevery = "5s"\n\n'
    cfg += "[rule.down]\nwatch = [" + ", ".join(f'"p{i}"' for i in range(20)) + "]\n" \
           "when = 'kind == \"sample\" && count == 0'\n"
    proc, log = start_hark(hark, cfg, tmp)
    try:
        # Past the first passes, the threads hark keeps are all started.
        time.sleep(6)
        (c0, tids0), t0 = cpu_seconds_fine(proc.pid), time.monotonic()
        time.sleep(seconds)
        (c1, tids1), t1 = cpu_seconds_fine(proc.pid), time.monotonic()
    finally:
        stop(proc)
        log.close()
    if tids0 != tids1:
        raise SystemExit("hark's threads changed during the idle measurement: it is not valid")
    return 100 * (c1 - c0) / (t1 - t0)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--trials", type=int, default=30)
    p.add_argument("--processes", type=int, default=1000)
    p.add_argument("--seconds", type=float, default=30)
    p.add_argument("--idle-seconds", type=float, default=60)
    p.add_argument("--hark", default=os.path.join(ROOT, "target", "release", "hark"))
    args = p.parse_args()
    if not os.path.exists(args.hark):
        raise SystemExit(f"{args.hark} not found: run `cargo build --release` first")
    children = []
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(1))
    try:
        with tempfile.TemporaryDirectory(prefix="hark-bench-") as tmp:
            lat = latency(args.hark, args.trials, tmp, children)
        for c in children:
            if c.poll() is None:
                c.kill()
            c.wait()
        children.clear()
        with tempfile.TemporaryDirectory(prefix="hark-bench-") as tmp:
            per_pass = one_pass_cpu(args.hark, args.processes, args.seconds, tmp, children)
        for c in children:
            c.kill()
            c.wait()
        children.clear()
        with tempfile.TemporaryDirectory(prefix="hark-bench-") as tmp:
            idle = idle_cpu(args.hark, args.idle_seconds, tmp)
    finally:
        for c in children:
            if c.poll() is None:
                c.kill()
            c.wait()
    lat.sort()
    p95 = lat[min(len(lat) - 1, int(round(0.95 * (len(lat) - 1))))]
    print("| measurement | value | target |")
    print("|---|---|---|")
    print(f"| process SIGKILLed -> exec'd action, median ({len(lat)} trials) | {statistics.median(lat):.2f} ms | <= 3 ms |")
    print(f"| same, p95 | {p95:.2f} ms | |")
    print(f"| CPU of one pass over {args.processes} followed processes | {per_pass:.1f} ms | <= 15 ms |")
    print(f"| idle CPU, 20 process watches at 5 s | {idle:.3f} % of a core | <= 0.05 % |")


if __name__ == "__main__":
    main()
