#!/usr/bin/env python3
"""What `hark tail` costs the daemon: hark's CPU for 10,000 file events with and without
a `hark tail --json` client attached, alternating, medians of R runs.

Usage: python3 bench/tail_cost.py [--runs R] [--events N] [--hark PATH]

Each run starts hark on a temporary directory (a file watch, a rule with a condition and
no action), creates N files at about 10,000 a second (steps of 100, 5 ms apart), and
waits until hark's /metrics counts N firings. Every process started is stopped by its
pid; all traffic stays on 127.0.0.1.
"""
import argparse
import os
import statistics
import subprocess
import tempfile
import time

from brokers import counts, free_port
from procstat import cpu_seconds, start_hark, stop


def one_run(hark, events, tailing):
    with tempfile.TemporaryDirectory(prefix="hark-bench-") as tmp:
        os.chmod(tmp, 0o755)
        watched = os.path.join(tmp, "in")
        os.makedirs(watched)
        metrics = free_port()
        cfg = (f'[watch.w]\ntype = "file"\npaths = ["{watched}"]\nevents = ["create"]\ndebounce = "0ms"\n\n'
               '[rule.r]\nwatch = "w"\nwhen = "size >= 0"\nthen = []\ntrigger_limit = "off"\n')
        proc, _log = start_hark(hark, cfg, tmp, rust_log="warn,hark::daemon=info",
                                daemon=f'metrics = "127.0.0.1:{metrics}"\n')
        tail = None
        try:
            if tailing:
                tail = subprocess.Popen([hark, "tail", "--json", "--socket", f"{tmp}/control.sock"],
                                        stdout=subprocess.DEVNULL)
                time.sleep(0.3)
            c0 = cpu_seconds(proc.pid)
            t0 = time.monotonic()
            for i in range(events):
                open(os.path.join(watched, f"f{i}"), "w").close()
                if i % 100 == 99:
                    time.sleep(0.005)
            fired = 0
            while fired < events and time.monotonic() - t0 < 60:
                fired, _ = counts(metrics)
                time.sleep(0.02)
            return time.monotonic() - t0, cpu_seconds(proc.pid) - c0, fired
        finally:
            if tail is not None:
                tail.kill()
                tail.wait()
            stop(proc)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=4)
    ap.add_argument("--events", type=int, default=10000)
    ap.add_argument("--hark", default=os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                                                   "target", "release", "hark"))
    args = ap.parse_args()
    results = {False: [], True: []}
    for _ in range(args.runs):
        for tailing in (False, True):
            results[tailing].append(one_run(args.hark, args.events, tailing))
    print(f"| {args.events} file events | hark CPU (median of {args.runs}) | all judged after | all counted |")
    print("|---|---|---|---|")
    for tailing, label in ((False, "no client"), (True, "`hark tail --json` attached")):
        r = results[tailing]
        print(f"| {label} | {statistics.median(x[1] for x in r):.2f} s | "
              f"{statistics.median(x[0] for x in r):.2f} s | {'yes' if all(x[2] >= args.events for x in r) else 'NO'} |")


if __name__ == "__main__":
    main()
