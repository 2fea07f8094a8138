#!/usr/bin/env python3
"""Rules that expect a match, at scale: 100,000 groups awaited with `expect_within` and
10,000 rules on cron schedules (`expect`), each beside the same configuration without the
expectation, measured in the same run. For each: the time to start, the daemon's RSS and
private memory, and its CPU while idle (nothing arrives; only deadlines wait). Then the
deadline storm: 100,000 groups whose window ends at once, and how long hark takes to fire
them all.

Usage: python3 bench/expect_scale.py [--groups 100000] [--rules 10000] [--idle 30]
                                     [--runs 3] [--hark PATH]
Medians over the runs. Every process started is stopped by its pid; metrics are read on
127.0.0.1.
"""
import argparse
import os
import statistics
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from brokers import free_port  # noqa: E402
from file_intake import metric  # noqa: E402
from procstat import cpu_seconds_fine, private_kib, start_hark, status_kib, stop  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def idle_cpu_ms(pid, seconds):
    """CPU ms a second over `seconds` of quiet, from the threads' schedstat."""
    before, tids = cpu_seconds_fine(pid)
    time.sleep(seconds)
    after, tids2 = cpu_seconds_fine(pid)
    if tids != tids2:
        # A thread came or went: the difference misses it; read over again once.
        return idle_cpu_ms(pid, seconds)
    return (after - before) * 1000 / seconds


def footprint(proc, idle):
    """RSS and private memory (MiB) and idle CPU (ms a second) of a daemon left alone."""
    time.sleep(3)
    cpu = idle_cpu_ms(proc.pid, idle)
    return status_kib(proc.pid, "VmRSS") / 1024, private_kib(proc.pid) / 1024, cpu


def wait_for(port, name, want, limit, label=""):
    deadline = time.time() + limit
    seen = 0.0
    while time.time() < deadline:
        seen = metric(port, name, label)
        if seen >= want:
            return seen
        time.sleep(0.2)
    raise SystemExit(f"{name} reached {seen}, not {want}, in {limit} s")


def hb_config(log, groups, extra):
    """A log watch of heartbeat lines and a rule per host over it, with `extra` keys."""
    return (f'[watch.hb]\ntype = "log"\npaths = ["{log}"]\n'
            f"pattern = 'hb from (?P<peer>h[0-9]+)'\n\n"
            f'[rule.quiet]\nwatch = "hb"\ngroup_by = ["peer"]\nmax_groups = {groups}\n'
            + extra + "then = []\n")


def group_case(hark, groups, expect, idle):
    """A log of `groups` heartbeat lines, one per host, read by a per-host rule."""
    with tempfile.TemporaryDirectory(prefix="hark-exp") as tmp:
        log = f"{tmp}/hb.log"
        open(log, "w").close()
        port = free_port()
        cfg = hb_config(log, groups, f'expect_within = "{expect}"\n' if expect else "")
        began = time.time()
        proc, _ = start_hark(hark, cfg, tmp, daemon=f'http = "127.0.0.1:{port}"')
        started = time.time() - began
        try:
            with open(log, "a") as f:
                f.write("".join(f"hb from h{i}\n" for i in range(groups)))
            wait_for(port, "hark_events_total", groups, 300, 'watch="hb"')
            return (started, *footprint(proc, idle))
        finally:
            stop(proc)


def storm(hark, groups):
    """`groups` hosts that each sent one heartbeat and then all go quiet: seconds from the
    end of their window until every group fires, and the CPU it took."""
    window = 20
    with tempfile.TemporaryDirectory(prefix="hark-exp") as tmp:
        log = f"{tmp}/hb.log"
        open(log, "w").close()
        port = free_port()
        cfg = hb_config(log, groups, f'expect_within = "{window}s"\ntrigger_limit = "off"\n')
        proc, _ = start_hark(hark, cfg, tmp, daemon=f'http = "127.0.0.1:{port}"')
        try:
            with open(log, "a") as f:
                f.write("".join(f"hb from h{i}\n" for i in range(groups)))
            t0 = time.time()
            wait_for(port, "hark_events_total", groups, 300, 'watch="hb"')
            read = time.time() - t0
            cpu0, _ = cpu_seconds_fine(proc.pid)
            wait_for(port, "hark_rule_firing", groups, 600, 'rule="quiet"')
            fired = time.time() - t0 - window
            cpu1, _ = cpu_seconds_fine(proc.pid)
            return read, fired, cpu1 - cpu0, status_kib(proc.pid, "VmHWM") / 1024
        finally:
            stop(proc)


def rules_case(hark, rules, scheduled, idle):
    """`rules` rules over one heartbeat watch, each on its own cron time when scheduled."""
    with tempfile.TemporaryDirectory(prefix="hark-exp") as tmp:
        port = free_port()
        parts = ['[watch.hb]\ntype = "heartbeat"\n']
        for i in range(rules):
            parts.append(f'[rule.r{i}]\nwatch = "hb"\nwhen = \'kind == "success"\'\n')
            if scheduled:
                # Each its own expression (a worst case for memory: none shared), on the
                # first days of a month other than this one, so none falls due while
                # measured and the CPU is that of waiting.
                month = (time.gmtime().tm_mon + 5) % 12 + 1
                parts.append(f'expect = "{i % 60} {(i // 60) % 24} {1 + i // 1440} {month} *"\n'
                             f'grace = "5m"\ntimezone = "Europe/Berlin"\n')
        began = time.time()
        proc, _ = start_hark(hark, "\n".join(parts), tmp, daemon=f'http = "127.0.0.1:{port}"')
        started = time.time() - began
        try:
            return (started, *footprint(proc, idle))
        finally:
            stop(proc)


def median_row(label, runs):
    cols = list(zip(*runs))
    return label, [statistics.median(c) for c in cols]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--groups", type=int, default=100_000)
    ap.add_argument("--rules", type=int, default=10_000)
    ap.add_argument("--idle", type=float, default=30.0)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--only", choices=["groups", "rules", "storm"], help="one part alone")
    ap.add_argument("--hark", default=os.path.join(ROOT, "target/release/hark"))
    a = ap.parse_args()

    rows = []
    cases = [
        ("groups", f"{a.groups} groups, no expectation",
         lambda: group_case(a.hark, a.groups, None, a.idle)),
        ("groups", f"{a.groups} groups, expect_within = 1h",
         lambda: group_case(a.hark, a.groups, "1h", a.idle)),
        # Over at least a minute: a schedule reads the wall clock again once a minute.
        ("rules", f"{a.rules} rules, no expectation",
         lambda: rules_case(a.hark, a.rules, False, max(a.idle, 61))),
        ("rules", f"{a.rules} rules, each on its own cron time",
         lambda: rules_case(a.hark, a.rules, True, max(a.idle, 61))),
    ]
    for part, label, fn in cases:
        if a.only not in (None, part):
            continue
        runs = []
        for _ in range(a.runs):
            runs.append(fn())
            print(label, "run:", ", ".join(f"{x:.2f}" for x in runs[-1]), flush=True)
        rows.append(median_row(label, runs))

    print()
    print("| case | start (s) | RSS (MiB) | private (MiB) | idle CPU (ms/s) |")
    print("|---|---|---|---|---|")
    for label, (s, rss, priv, cpu) in rows:
        print(f"| {label} | {s:.2f} | {rss:.1f} | {priv:.1f} | {cpu:.3f} |")

    if a.only not in (None, "storm"):
        return
    storms = [storm(a.hark, a.groups) for _ in range(a.runs)]
    read, fired, cpu, hwm = (statistics.median(c) for c in zip(*storms))
    print()
    print(f"deadline storm, {a.groups} groups due at once (median of {a.runs}): read in {read:.2f} s; "
          f"all firing {fired:.2f} s after their window ended; {cpu:.2f} s CPU; peak RSS {hwm:.1f} MiB")


if __name__ == "__main__":
    main()
