#!/usr/bin/env python3
"""Log rotation at scale: a writer that reopens its file when the name holds another inode
(as daemons do after logrotate's postrotate) appends numbered lines at RATE a second while
Debian's logrotate (`create`) rotates the file once a second, ROTATIONS times. hark's log
watch counts each line it reads as one event (`hark_events_total`): every line once means
events == lines written. Also the daemon's peak RSS.

Usage: python3 bench/log_rotation.py [--rates 400,4000,40000] [--rotations 5] [--hark PATH]
Needs logrotate (tests/setup installs it). Every process started is stopped by its pid;
metrics are read on 127.0.0.1.
"""
import argparse
import os
import subprocess
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from brokers import free_port  # noqa: E402
from file_intake import metric  # noqa: E402
from procstat import start_hark, status_kib, stop  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def writer(log, total, rate):
    """Appends `line N` for N in 1..=total at `rate` a second, in batches of 5 ms, reopening
    the file when its name holds another inode."""
    f = open(log, "a", buffering=1)
    start, n = time.time(), 0
    batch = max(1, rate // 200)
    while n < total:
        if os.stat(log).st_ino != os.fstat(f.fileno()).st_ino:
            f.close()
            f = open(log, "a", buffering=1)
        k = min(batch, total - n)
        f.write("".join(f"line {n + i + 1}\n" for i in range(k)))
        f.flush()
        n += k
        time.sleep(max(0.0, start + n / rate - time.time()))
    f.close()


def one(hark, rate, rotations):
    with tempfile.TemporaryDirectory(prefix="hark-rot") as tmp:
        os.makedirs(f"{tmp}/logs")
        log = f"{tmp}/logs/app.log"
        open(log, "w").close()
        port = free_port()
        cfg = (f'[watch.app]\ntype = "log"\npaths = ["{log}"]\npattern = \'line (?P<n>[0-9]+)\'\n\n'
               f'[rule.r]\nwatch = "app"\nwhen = \'n == "never"\'\n')
        proc, _ = start_hark(hark, cfg, tmp, daemon=f'http = "127.0.0.1:{port}"')
        try:
            total = rate * (rotations + 1)
            t = threading.Thread(target=writer, args=(log, total, rate))
            t.start()
            conf = f"{tmp}/logrotate.conf"
            with open(conf, "w") as f:
                f.write(f"{log} {{\n  rotate 100\n  create\n  nocompress\n  missingok\n}}\n")
            for _ in range(rotations):
                time.sleep(1)
                subprocess.run(["/usr/sbin/logrotate", "-f", "-s", f"{tmp}/lr.state", conf],
                               check=True)
            t.join()
            seen, last = -1.0, -2.0
            deadline = time.time() + 120
            while time.time() < deadline and seen != last:
                last = seen
                time.sleep(1)
                seen = metric(port, "hark_events_total", 'watch="app"')
            return total, int(seen), status_kib(proc.pid, "VmHWM") / 1024
        finally:
            stop(proc)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--rates", default="400,4000,40000")
    ap.add_argument("--rotations", type=int, default=5)
    ap.add_argument("--hark", default=os.path.join(ROOT, "target", "release", "hark"))
    args = ap.parse_args()
    print("| writer, lines a second | rotations | lines written | line events | peak RSS, MiB |")
    print("|---|---|---|---|---|")
    ok = True
    for rate in [int(r) for r in args.rates.split(",")]:
        total, seen, rss = one(args.hark, rate, args.rotations)
        ok &= total == seen
        print(f"| {rate:,} | {args.rotations} | {total:,} | {seen:,} | {rss:.1f} |")
    print(f"\nevery line once: {'yes' if ok else 'NO'}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
