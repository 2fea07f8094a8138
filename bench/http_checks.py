#!/usr/bin/env python3
"""CPU and memory of hark running many http watches against a local server.

Usage: python3 bench/http_checks.py [--watches N] [--every 1s] [--seconds 60] [--runs 3]
                                    [--hark PATH]

Starts a keep-alive HTTP/1.1 server on 127.0.0.1 (asyncio, in a child process of this
script), writes a config with N http watches (every one checking that server) and one
rule over all of them (`status != 200`, times = 3), and runs `hark run` on it. After a
warm-up of one interval, it measures over the given seconds: hark's CPU time (user +
system from /proc/PID/stat), its RSS (VmRSS at the end, VmHWM the peak), and the number
of requests the server answered. It reports CPU as a share of one core and per check.
With --runs R it repeats the whole measurement and reports each run and the medians.
Every process it starts is stopped by its pid when it ends, also on Ctrl-C; all traffic
goes to 127.0.0.1.
"""
import argparse
import multiprocessing
import os
import signal
import statistics
import sys
import tempfile
import time

from loopback import serve_http
from procstat import cpu_seconds, start_hark, status_kib, stop

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def receiver(port_queue, hits):
    """Answers 200 "ok" to every request, counting them."""

    def respond(head, body):
        with hits.get_lock():
            hits.value += 1
        return b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Type: text/plain\r\n\r\nok"

    serve_http(respond, port_queue)


def one_run(args, tmp, port, hits):
    names = [f"api{i:05d}" for i in range(args.watches)]
    cfg = "".join(f'[watch.{n}]\ntype = "http"\nurl = "http://127.0.0.1:{port}/{n}"\n'
                  f'every = "{args.every}"\ntimeout = "2s"\n\n' for n in names)
    cfg += ('[rule.down]\nwatch = [' + ", ".join(f'"{n}"' for n in names) + ']\n'
            "when = 'status != 200'\ntimes = 3\nthen = [\"say\"]\n\n"
            '[action.say]\ntype = "shell"\ncommand = ["true"]\n')
    proc, log = start_hark(args.hark, cfg, tmp, rust_log="warn,hark::daemon=info")
    try:
        interval = float(args.every.rstrip("s"))
        # Every watch has made its first check (they start at random offsets).
        time.sleep(interval + 1.0)
        cpu0, hits0, t0 = cpu_seconds(proc.pid), hits.value, time.monotonic()
        time.sleep(args.seconds)
        cpu1, hits1, t1 = cpu_seconds(proc.pid), hits.value, time.monotonic()
        rss = status_kib(proc.pid, "VmRSS") / 1024
        anon = status_kib(proc.pid, "RssAnon") / 1024
        hwm = status_kib(proc.pid, "VmHWM") / 1024
    finally:
        stop(proc)
        log.close()
    checks = hits1 - hits0
    cpu = cpu1 - cpu0
    return {
        "checks_per_s": checks / (t1 - t0),
        "cpu_share": cpu / (t1 - t0),
        "cpu_ms_per_check": 1000 * cpu / checks if checks else float("nan"),
        "rss_mib": rss,
        "anon_mib": anon,
        "peak_rss_mib": hwm,
    }


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--watches", type=int, default=1000)
    p.add_argument("--every", default="1s")
    p.add_argument("--seconds", type=float, default=60)
    p.add_argument("--runs", type=int, default=3)
    p.add_argument("--hark", default=os.path.join(ROOT, "target", "release", "hark"))
    args = p.parse_args()
    if not os.path.exists(args.hark):
        raise SystemExit(f"{args.hark} not found: run `cargo build --release` first")

    ports = multiprocessing.Queue()
    hits = multiprocessing.Value("q", 0)
    server = multiprocessing.Process(target=receiver, args=(ports, hits), daemon=True)
    server.start()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(1))
    try:
        port = ports.get(timeout=10)
        results = []
        for r in range(args.runs):
            with tempfile.TemporaryDirectory(prefix="hark-bench-") as tmp:
                res = one_run(args, tmp, port, hits)
            results.append(res)
            print(f"run {r + 1}: {res['checks_per_s']:.0f} checks/s, CPU {100 * res['cpu_share']:.1f} % of a core, "
                  f"{res['cpu_ms_per_check']:.3f} ms CPU per check, RSS {res['rss_mib']:.1f} MiB "
                  f"(peak {res['peak_rss_mib']:.1f} MiB)", flush=True)
    finally:
        if server.pid:
            os.kill(server.pid, signal.SIGTERM)
        server.join(timeout=5)
    med = {k: statistics.median(r[k] for r in results) for k in results[0]}
    print(f"\n{args.watches} http watches every {args.every}, {args.seconds:.0f} s per run, "
          f"medians of {len(results)} runs:")
    print("| measurement | median | target |")
    print("|---|---|---|")
    print(f"| checks per second | {med['checks_per_s']:.0f} | {args.watches / float(args.every.rstrip('s')):.0f} |")
    print(f"| CPU, share of one core | {100 * med['cpu_share']:.1f} % | ≤ 25 % |")
    print(f"| CPU per check | {med['cpu_ms_per_check']:.3f} ms | ≤ 0.3 ms |")
    print(f"| RSS at the end | {med['rss_mib']:.1f} MiB | ≤ 40 MiB |")
    print(f"| of which anonymous (RssAnon) | {med['anon_mib']:.1f} MiB | |")
    print(f"| peak RSS | {med['peak_rss_mib']:.1f} MiB | |")


if __name__ == "__main__":
    main()
