#!/usr/bin/env python3
"""The webhook outbox: many firings queued while the receiver is down, and what storing
each delivery costs.

Usage: python3 bench/outbox.py [--firings N] [--down-seconds S] [--hark PATH]

Starts a receiver on 127.0.0.1 (asyncio, keep-alive, in a child process) that answers
503 while "down" and 200 once "up", and hark with a file watch whose every create fires
a rule with a webhook to it. With the receiver down, the script creates N files in
bursts; every firing is stored in the outbox (fsync'd) and attempted. After the given
seconds the receiver comes up; the script measures how long until it has answered 200 to
N distinct idempotency keys. Then, with the receiver up, a second run of N firings
measures hark's CPU per firing with and without a webhook action: the difference is
what the outbox and the delivery add.

Every process it starts is stopped by its pid when it ends, also on Ctrl-C; all traffic
goes to 127.0.0.1.
"""
import argparse
import multiprocessing
import os
import signal
import sys
import tempfile
import time

from loopback import header, serve_http
from procstat import cpu_seconds, start_hark, stop

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def receiver(port_queue, up, delivered):
    """503 while down; once up, 200, counting distinct idempotency keys."""
    keys = set()

    def respond(head, body):
        if not up.value:
            return b"HTTP/1.1 503 Down\r\nContent-Length: 0\r\n\r\n"
        key = header(head, b"idempotency-key")
        if key not in keys:
            keys.add(key)
            with delivered.get_lock():
                delivered.value += 1
        return b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"

    serve_http(respond, port_queue)


def start_with(hark, tmp, port, webhook):
    """hark with a file watch whose creates fire a rule: with a webhook to the receiver,
    or with no action at all."""
    watched = os.path.join(tmp, "in")
    os.makedirs(watched, exist_ok=True)
    action = (f'[action.hook]\ntype = "webhook"\nurl = "http://127.0.0.1:{port}/hook"\n'
              'json = { path = "{{ event.path }}" }\n') if webhook else ""
    then = '["hook"]' if webhook else "[]"
    cfg = (f'[watch.w]\ntype = "file"\npaths = ["{watched}"]\nevents = ["create"]\ndebounce = "0ms"\n\n'
           f'[rule.r]\nwatch = "w"\nthen = {then}\ntrigger_limit = "off"\n\n{action}')
    proc, log = start_hark(hark, cfg, tmp, rust_log="warn,hark::daemon=info")
    return proc, log, watched


def create_files(watched, n, prefix):
    for i in range(n):
        with open(os.path.join(watched, f"{prefix}{i}"), "w"):
            pass
        if i % 500 == 499:
            time.sleep(0.05)  # stays under the kernel's inotify queue


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--firings", type=int, default=10000)
    p.add_argument("--down-seconds", type=float, default=5)
    p.add_argument("--hark", default=os.path.join(ROOT, "target", "release", "hark"))
    args = p.parse_args()
    if not os.path.exists(args.hark):
        raise SystemExit(f"{args.hark} not found: run `cargo build --release` first")
    ports = multiprocessing.Queue()
    up = multiprocessing.Value("b", 0)
    delivered = multiprocessing.Value("q", 0)
    server = multiprocessing.Process(target=receiver, args=(ports, up, delivered), daemon=True)
    server.start()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(1))
    try:
        port = ports.get(timeout=10)
        with tempfile.TemporaryDirectory(prefix="hark-bench-") as tmp:
            proc, log, watched = start_with(args.hark, tmp, port, True)
            try:
                t_start = time.monotonic()
                create_files(watched, args.firings, "f")
                queued = time.monotonic() - t_start
                time.sleep(max(0.0, args.down_seconds - queued))
                up.value = 1
                t_up = time.monotonic()
                while delivered.value < args.firings and time.monotonic() - t_up < 300:
                    time.sleep(0.01)
                drained = time.monotonic() - t_up
                got = delivered.value
            finally:
                stop(proc)
                log.close()
        cpu = {}
        for webhook in (False, True):
            with tempfile.TemporaryDirectory(prefix="hark-bench-") as tmp:
                before = delivered.value
                proc, log, watched = start_with(args.hark, tmp, port, webhook)
                try:
                    c0 = cpu_seconds(proc.pid)
                    create_files(watched, args.firings, "g")
                    deadline = time.monotonic() + 120
                    while webhook and delivered.value - before < args.firings and time.monotonic() < deadline:
                        time.sleep(0.01)
                    time.sleep(1)
                    cpu[webhook] = cpu_seconds(proc.pid) - c0
                finally:
                    stop(proc)
                    log.close()
    finally:
        if server.pid:
            os.kill(server.pid, signal.SIGTERM)
        server.join(timeout=5)
    per_firing = 1000 * (cpu[True] - cpu[False]) / args.firings
    print("| measurement | value | target |")
    print("|---|---|---|")
    print(f"| {args.firings} firings queued while the receiver was down ({args.down_seconds:.0f} s): delivered after it came up | {got} in {drained:.2f} s | all in <= 10 s |")
    print(f"| CPU per firing added by a webhook (outbox write + delivery), {args.firings} firings | {per_firing:.3f} ms | <= 1 ms |")


if __name__ == "__main__":
    main()
