#!/usr/bin/env python3
"""File intake at the kernel's pace, side by side in one run (as root):

  cpu       hark's CPU per file event (inotify to the rule's verdict: a condition, no
            action) for a burst of 1,000 and of 100,000 creations
  burst     a 100,000-file burst as fast as one process creates files: that process's
            time with nothing watching, with `inotifywait -m` (the floor), watchman and
            hark watching; events each saw; overflows
  tree      1,000,000 files in 100,000 directories, one recursive watch: time to READY,
            RSS, overflows at start, a create anywhere reported
  overflow  30,000 creates, 100 deletes and 100 modifications while hark is SIGSTOPped:
            time from SIGCONT until each was reported once with its kind

Usage: python3 bench/file_intake.py [--quick] [--only cpu,burst,...] [--runs R]
Every process started is stopped by its pid; nothing leaves the machine.
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
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from brokers import free_port  # noqa: E402
from procstat import CpuCgroup, start_hark, status_kib, stop  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def metric(port, name, label=""):
    """The sum of a metric's series (those whose labels contain `label`)."""
    try:
        text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    except OSError:
        return 0.0
    total = 0.0
    for line in text.splitlines():
        if line.startswith(name) and (not label or label in line) and not line.startswith("#"):
            head = line.split(" ")[0]
            if head == name or head.startswith(name + "{"):
                total += float(line.rsplit(" ", 1)[1])
    return total


def wait_metric(port, name, want, limit, label="", poll=0.02):
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        if metric(port, name, label) >= want:
            return True
        time.sleep(poll)
    return False


def create(dirpath, n, prefix="f"):
    """Creates n empty files as fast as this process can; returns the seconds it took."""
    t0 = time.perf_counter()
    for i in range(n):
        os.close(os.open(os.path.join(dirpath, f"{prefix}{i}"), os.O_CREAT | os.O_WRONLY, 0o644))
    return time.perf_counter() - t0


def hark_on(hark, tmp, watched, extra_rules="", recursive=False):
    port = free_port()
    cfg = (f'[watch.w]\ntype = "file"\npaths = ["{watched}"]\ndebounce = "0ms"\n'
           + ('recursive = true\n' if recursive else 'events = ["create"]\n')
           + '\n[rule.r]\nwatch = "w"\nwhen = \'path.endsWith(".x") || size >= 0\'\n'
             'trigger_limit = "off"\n\n' + extra_rules)
    proc, _ = start_hark(hark, cfg, tmp, rust_log="warn,hark::daemon=info",
                         daemon=f'metrics = "127.0.0.1:{port}"\n')
    return proc, port


def cpu_per_event(hark, n, runs):
    """hark's CPU for a burst of n creations, less what it spends meanwhile when idle
    (metrics scrapes by this script, its own timers), per event."""
    out = []
    for _ in range(runs):
        with tempfile.TemporaryDirectory(prefix="hark-bench-") as tmp:
            os.chmod(tmp, 0o755)
            watched = os.path.join(tmp, "in")
            os.makedirs(watched)
            proc, port = hark_on(hark, tmp, watched)
            cg = CpuCgroup(proc.pid, "intake")
            try:
                time.sleep(0.5)
                i0, t0 = cg.seconds(), time.monotonic()
                for _ in range(20):
                    metric(port, "hark_firings_total")
                    time.sleep(0.05)
                idle_rate = (cg.seconds() - i0) / (time.monotonic() - t0)
                c0, t0 = cg.seconds(), time.monotonic()
                create(watched, n)
                ok = wait_metric(port, "hark_firings_total", n, 300, poll=0.05)
                used = cg.seconds() - c0 - idle_rate * (time.monotonic() - t0)
                over = metric(port, "hark_file_overflows_total")
                out.append((1e6 * max(used, 0.0) / n, ok, over))
            finally:
                stop(proc)
                cg.close()
    return out


def burst(hark, n, runs):
    rows = {"nothing": [], "inotifywait": [], "watchman": [], "hark": []}
    seen = {"inotifywait": [], "hark": []}
    overflows = []
    have_watchman = shutil.which("watchman") is not None
    for _ in range(runs):
        for tool in rows:
            if tool == "watchman" and not have_watchman:
                continue
            with tempfile.TemporaryDirectory(prefix="hark-bench-") as tmp:
                os.chmod(tmp, 0o755)
                watched = os.path.join(tmp, "in")
                os.makedirs(watched)
                proc = None
                lines = os.path.join(tmp, "lines")
                try:
                    if tool == "inotifywait":
                        proc = subprocess.Popen(["inotifywait", "-m", "-q", "-e", "create", watched],
                                                stdout=open(lines, "w"), stderr=subprocess.DEVNULL)
                        time.sleep(0.5)
                    elif tool == "watchman":
                        sock = os.path.join(tmp, "wm.sock")
                        proc = subprocess.Popen(["watchman", "--foreground", f"--sockname={sock}",
                                                 f"--statefile={tmp}/wm.state", f"--logfile={tmp}/wm.log",
                                                 f"--pidfile={tmp}/wm.pid"],
                                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
                        time.sleep(1)
                        subprocess.run(["watchman", f"--sockname={sock}", "watch", watched],
                                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=30)
                    elif tool == "hark":
                        proc, port = hark_on(hark, tmp, watched)
                    took = create(watched, n)
                    rows[tool].append(took)
                    if tool == "inotifywait":
                        time.sleep(1)
                        seen["inotifywait"].append(sum(1 for _ in open(lines)))
                    if tool == "hark":
                        wait_metric(port, "hark_events_total", n, 120)
                        seen["hark"].append(metric(port, "hark_events_total"))
                        overflows.append(metric(port, "hark_file_overflows_total"))
                finally:
                    if proc is not None:
                        stop(proc)
    return rows, seen, overflows, have_watchman


def make_tree(root, files, dirs):
    per = files // dirs
    for d in range(dirs):
        p = os.path.join(root, f"a{d % 100}", f"b{d}")
        os.makedirs(p, exist_ok=True)
        for f in range(per):
            os.close(os.open(os.path.join(p, f"f{f}"), os.O_CREAT | os.O_WRONLY, 0o644))


def tree(hark, files, dirs, runs):
    out = []
    with tempfile.TemporaryDirectory(prefix="hark-bench-", dir="/var/tmp") as base:
        os.chmod(base, 0o755)
        root = os.path.join(base, "tree")
        t0 = time.perf_counter()
        make_tree(root, files, dirs)
        made = time.perf_counter() - t0
        for _ in range(runs):
            with tempfile.TemporaryDirectory(prefix="hark-bench-") as tmp:
                os.chmod(tmp, 0o755)
                t0 = time.perf_counter()
                proc, port = hark_on(hark, tmp, root, recursive=True)
                ready = time.perf_counter() - t0
                try:
                    time.sleep(2)
                    rss = status_kib(proc.pid, "VmRSS") / 1024
                    over = metric(port, "hark_file_overflows_total")
                    before = metric(port, "hark_events_total")
                    t1 = time.perf_counter()
                    d = dirs - 3
                    deep = os.path.join(root, f"a{d % 100}", f"b{d}", "new-deep")
                    open(deep, "w").close()
                    open(os.path.join(root, "new-top"), "w").close()
                    ok = wait_metric(port, "hark_events_total", before + 2, 10)
                    seen_ms = 1000 * (time.perf_counter() - t1)
                    os.unlink(deep)
                    os.unlink(os.path.join(root, "new-top"))
                    out.append((ready, rss, over, ok, seen_ms))
                finally:
                    stop(proc)
    return out, made


def overflow(hark, creates, runs):
    out = []
    rules = ''.join(f'[rule.{k}]\nwatch = "w"\nwhen = \'kind == "{v}"\'\ntrigger_limit = "off"\n\n'
                    for k, v in (("c", "create"), ("d", "delete"), ("m", "modify"), ("o", "overflow")))
    for _ in range(runs):
        with tempfile.TemporaryDirectory(prefix="hark-bench-") as tmp:
            os.chmod(tmp, 0o755)
            watched = os.path.join(tmp, "in")
            os.makedirs(watched)
            for i in range(100):
                open(os.path.join(watched, f"del{i}"), "w").close()
                open(os.path.join(watched, f"mod{i}"), "w").close()
            port = free_port()
            cfg = (f'[watch.w]\ntype = "file"\npaths = ["{watched}"]\ndebounce = "0ms"\n\n' + rules)
            proc, _ = start_hark(hark, cfg, tmp, rust_log="warn,hark::daemon=info",
                                 daemon=f'metrics = "127.0.0.1:{port}"\n')
            try:
                os.kill(proc.pid, signal.SIGSTOP)
                create(watched, creates, prefix="new")
                for i in range(100):
                    os.unlink(os.path.join(watched, f"del{i}"))
                    with open(os.path.join(watched, f"mod{i}"), "w") as f:
                        f.write("changed")
                t0 = time.perf_counter()
                os.kill(proc.pid, signal.SIGCONT)
                want = creates + 200 + 1
                ok = wait_metric(port, "hark_firings_total", want, 60)
                took = time.perf_counter() - t0
                time.sleep(0.5)
                got = {k: metric(port, "hark_firings_total", f'rule="{k}"') for k in "cdmo"}
                exact = got == {"c": creates, "d": 100, "m": 100, "o": 1}
                out.append((took, ok and exact, got))
            finally:
                stop(proc)
    return out


def med(xs):
    return statistics.median(xs) if xs else float("nan")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--runs", type=int, default=0)
    ap.add_argument("--only", default="")
    ap.add_argument("--hark", default=os.path.join(ROOT, "target", "release", "hark"))
    args = ap.parse_args()
    q = args.quick
    runs = args.runs or (1 if q else 3)
    only = set(filter(None, args.only.split(",")))
    want = lambda n: not only or n in only  # noqa: E731
    print(f"| scenario | figure | median of {runs} |")
    print("|---|---|---|")
    if want("cpu"):
        small = cpu_per_event(args.hark, 1000, runs)
        big = cpu_per_event(args.hark, 2000 if q else 100000, runs)
        a, b = med([x[0] for x in small]), med([x[0] for x in big])
        print(f"| CPU per file event, burst of 1,000 | hark, µs | {a:.1f} |")
        print(f"| CPU per file event, burst of {2000 if q else 100000:,} | hark, µs | {b:.1f} "
              f"({b / a:.2f}× the small burst; all judged: {all(x[1] for x in big)}; "
              f"overflows: {sum(x[2] for x in big):.0f}) |")
    if want("burst"):
        n = 5000 if q else 100000
        rows, seen, overflows, wm = burst(args.hark, n, runs)
        for tool, xs in rows.items():
            if xs:
                print(f"| {n:,}-file burst: the creating process | with {tool} watching, s | {med(xs):.2f} |")
        if not wm:
            print("| watchman | not run | not installed |")
        r = med(rows["hark"]) / med(rows["inotifywait"])
        print(f"| {n:,}-file burst | hark ÷ inotifywait | {r:.2f}× (target ≤ 1.2×) |")
        print(f"| {n:,}-file burst: events seen | inotifywait / hark | {med(seen['inotifywait']):.0f} / "
              f"{med(seen['hark']):.0f}; hark overflows: {sum(overflows):.0f} |")
    if want("tree"):
        files, dirs = (20000, 2000) if q else (1000000, 100000)
        rows, made = tree(args.hark, files, dirs, runs)
        print(f"| tree of {files:,} files in {dirs:,} directories (made in {made:.0f} s) | READY after, s | "
              f"{med([r[0] for r in rows]):.2f} (target ≤ 5) |")
        print(f"| tree | RSS after start, MiB | {med([r[1] for r in rows]):.1f} (target ≤ 64) |")
        print(f"| tree | overflows at start | {sum(r[2] for r in rows):.0f} (target 0) |")
        print(f"| tree | a create deep and one at the top reported, ms | {med([r[4] for r in rows]):.0f} "
              f"(all reported: {all(r[3] for r in rows)}) |")
    if want("overflow"):
        creates = 3000 if q else 30000
        rows = overflow(args.hark, creates, runs)
        print(f"| overflow: {creates:,} creates + 100 deletes + 100 modifies while stopped | "
              f"SIGCONT → all reported, s | {med([r[0] for r in rows]):.2f} "
              f"(each once with its kind: {all(r[1] for r in rows)}; "
              f"{'; '.join(str(r[2]) for r in rows)}) |")


if __name__ == "__main__":
    main()
