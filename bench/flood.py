#!/usr/bin/env python3
"""A flood does not delay the urgent: process killed -> action, without and during a log
flood, in one hark and one run.

hark follows a copy of `sleep` (`exit` -> bench/stamp, as bench/process_exit.py) and a
log watch with the per-address sshd rule of bench/log_intake.py. Trials alternate: a
kill with the log quiet, then a kill while a writer appends failed logins at RATE lines
a second (it started 0.5 s before and stops by itself after the kill). The latency is
the exit stamp minus the moment of the kill.

Usage: python3 bench/flood.py [--trials N] [--rate LINES] [--hark PATH [PATH...]]
Every process this starts is stopped by its pid when it ends.
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

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from brokers import free_port  # noqa: E402
from file_intake import metric, wait_metric  # noqa: E402
from log_intake import PATTERN  # noqa: E402
from procstat import start_hark, stop  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# Appends sshd lines (one in three a failed login, as bench/log_intake.py's log) at RATE
# lines a second in 5 ms steps for SECONDS, then stops; prints the failed logins written.
WRITER = r"""
import sys, time
path, rate, seconds = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
step = 0.005
per = max(1, int(rate * step))
end = time.monotonic() + seconds
i = 0
with open(path, "a") as f:
    nxt = time.monotonic()
    while time.monotonic() < end:
        f.write("".join(
            f"Dec  2 10:00:00 host sshd[{1000 + j % 5000}]: Failed password for root from "
            f"10.{j % 7}.{j % 250}.{j % 249 + 1} port {1024 + j % 60000} ssh2\n"
            if j % 3 == 0 else
            f"Dec  2 10:00:00 host sshd[{1000 + j % 5000}]: Received disconnect from "
            f"10.{j % 7}.{j % 250}.{j % 249 + 1} port {1024 + j % 60000}:11: Bye Bye [preauth]\n"
            for j in range(i, i + per)))
        f.flush()
        i += per
        nxt += step
        time.sleep(max(0.0, nxt - time.monotonic()))
print((i + 2) // 3)
"""


def stamps_in(path):
    try:
        with open(path) as f:
            return [int(line.split()[0]) for line in f if line.strip()]
    except FileNotFoundError:
        return []


def latencies(hark, trials, rate, tmp):
    """[(quiet ms, flood ms, lines written)] for `trials` pairs of kills."""
    stamp = os.path.join(tmp, "stamp")
    subprocess.run(["cc", "-O2", "-o", stamp, os.path.join(ROOT, "bench", "stamp.c")],
                   check=True)
    name = f"hf{os.getpid() % 100000:05d}"
    prog = os.path.join(tmp, name)
    shutil.copy("/bin/sleep", prog)
    log = os.path.join(tmp, "auth.log")
    open(log, "w").close()
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

[watch.auth]
type = "log"
paths = ["{log}"]
pattern = '{PATTERN}'

[rule.brute]
watch = "auth"
group_by = ["ip"]
times = 5
within = "1m"
trigger_limit = "off"
"""
    port = free_port()
    proc, hlog = start_hark(hark, cfg, tmp, daemon=f'metrics = "127.0.0.1:{port}"\n')
    out = []
    failed = 0
    try:
        for i in range(2 * trials):
            flood = i % 2 == 1
            writer = None
            # Quiet means every line of the last flood judged.
            if not wait_metric(port, "hark_events_total", failed, 120, label='watch="auth"'):
                raise SystemExit("hark never judged the flood's lines")
            if flood:
                writer = subprocess.Popen([sys.executable, "-c", WRITER, log, str(rate), "1.0"],
                                          stdout=subprocess.PIPE)
            child = subprocess.Popen([prog, "60"])
            try:
                deadline = time.time() + 10
                while len(stamps_in(stamps + ".start")) <= i and time.time() < deadline:
                    time.sleep(0.005)
                if len(stamps_in(stamps + ".start")) <= i:
                    raise SystemExit("hark never saw the process start")
                # The flood under way (its writer started 0.5 s or more before the kill).
                time.sleep(0.5)
                t0 = time.time_ns()
                child.send_signal(signal.SIGKILL)
                deadline = time.time() + 10
                while len(stamps_in(stamps)) <= i and time.time() < deadline:
                    time.sleep(0.002)
                got = stamps_in(stamps)
                if len(got) <= i:
                    raise SystemExit("hark never ran the exit action")
                ms = (got[i] - t0) / 1e6
            finally:
                child.kill()
                child.wait()
                if writer:
                    written = int(writer.communicate(timeout=30)[0] or 0)
                    failed += written
            if flood:
                out[-1] = (out[-1][0], ms, written)
            else:
                out.append((ms, None, 0))
    finally:
        stop(proc)
        hlog.close()
    return out


def run(hark, trials, rate, tmp, table):
    rows = latencies(hark, trials, rate, tmp)
    quiet = [q for q, _, _ in rows]
    flood = [f for _, f, _ in rows]
    scenario = f"process killed -> action, log quiet vs {rate:,} lines/s"
    table.add(scenario, "hark, log quiet", quiet, "ms", "{:.2f}")
    table.add(scenario, "hark, during the flood", flood, "ms", "{:.2f}")
    return rows


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--trials", type=int, default=10)
    ap.add_argument("--rate", type=int, default=200000)
    ap.add_argument("--hark", nargs="+",
                    default=[os.path.join(ROOT, "target", "release", "hark")])
    args = ap.parse_args()
    for hark in args.hark:
        with tempfile.TemporaryDirectory(prefix="hark-bench-flood-") as tmp:
            rows = latencies(hark, args.trials, args.rate, tmp)
        quiet = statistics.median(q for q, _, _ in rows)
        flood = statistics.median(f for _, f, _ in rows)
        lines = statistics.median(n for _, _, n in rows)
        print(f"{hark}: median {quiet:.2f} ms quiet, {flood:.2f} ms during the flood "
              f"({flood - quiet:+.2f} ms; {lines:,.0f} failed logins in each flood of 1 s, "
              f"{args.trials} pairs)")


if __name__ == "__main__":
    main()
