#!/usr/bin/env python3
"""Log intake side by side with fail2ban, in one run:

  sshd      a 200,000-line sshd log, a third of it `Failed password ... from ADDRESS`
            (5,000 addresses): `fail2ban-regex` with Debian's sshd filter, and hark
            (`start = "beginning"`, the addresses captured, a `group_by = ["ip"]`,
            `times = 5`, `within = "1m"` rule). Each from its start until every line is
            judged: lines a second, peak RSS, CPU.
  latency   a line appended -> the action started (bench/stamp, as the file benchmark).
  noise     (--noise LINES) a log where 1 line in 1,000 is a failed login: `grep -cP`
            with the same pattern (the floor), fail2ban-regex and hark, alternately;
            hark until its last matching line is judged.

Usage: python3 bench/log_intake.py [--quick] [--runs R] [--hark PATH] [--noise LINES]
Installs fail2ban (as root) if it is missing. Every process started is stopped by its
pid; nothing leaves the machine (metrics are read on 127.0.0.1).
"""
import argparse
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from brokers import free_port  # noqa: E402
from file_intake import metric, wait_metric  # noqa: E402
from procstat import cpu_seconds, stamped, start_hark, status_kib, stop  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FILTER = "/etc/fail2ban/filter.d/sshd.conf"
# The addresses and user fail2ban's sshd filter captures on these lines.
PATTERN = r"Failed password for (invalid user )?(?P<user>\S+) from (?P<ip>[0-9a-fA-F.:]+) port \d+"


def make_log(path, lines, seed=7, failed_every=3):
    """An sshd log of `lines` lines, one in three a failed password (or one in
    `failed_every`, the others accepted keys); returns how many failed."""
    rnd = random.Random(seed)
    addrs = [f"10.{rnd.randrange(256)}.{rnd.randrange(256)}.{rnd.randrange(1, 255)}"
             for _ in range(5000)]
    users = ["root", "admin", "oracle", "ubuntu", "git", "test"]
    failed = 0
    with open(path, "w") as f:
        for i in range(lines):
            pid = 1000 + i % 30000
            sec = i // 50
            stamp = f"Dec  2 {10 + sec // 3600 % 10:02d}:{sec // 60 % 60:02d}:{sec % 60:02d}"
            head = f"{stamp} bastion sshd[{pid}]:"
            ip = rnd.choice(addrs)
            port = rnd.randrange(1024, 65535)
            k = i % 6
            failing = k in (0, 3) if failed_every == 3 else i % failed_every == 0
            if failed_every != 3 and k in (0, 3):
                k = 1
            if failing:
                failed += 1
                invalid = "invalid user " if rnd.random() < 0.3 else ""
                f.write(f"{head} Failed password for {invalid}{rnd.choice(users)} from {ip} "
                        f"port {port} ssh2\n")
            elif k == 1:
                f.write(f"{head} Accepted publickey for deploy from {ip} port {port} ssh2: "
                        f"ED25519 SHA256:Zm9vYmFyYmF6cXV4\n")
            elif k == 2:
                f.write(f"{head} pam_unix(sshd:session): session opened for user deploy(uid=1000)"
                        f" by (uid=0)\n")
            elif k == 4:
                f.write(f"{head} Connection closed by authenticating user root {ip} port {port}"
                        f" [preauth]\n")
            else:
                f.write(f"{head} Received disconnect from {ip} port {port}:11: Bye Bye [preauth]\n")
    return failed


def fail2ban(log):
    """fail2ban-regex over the log: seconds, peak RSS (MiB), CPU seconds, matched lines."""
    out = tempfile.TemporaryFile()
    t0 = time.perf_counter()
    p = subprocess.Popen(["fail2ban-regex", log, FILTER], stdout=out, stderr=subprocess.STDOUT)
    _, status, usage = os.wait4(p.pid, 0)
    took = time.perf_counter() - t0
    out.seek(0)
    text = out.read().decode(errors="replace")
    matched = 0
    for line in text.splitlines():
        # "Lines: 200000 lines, 0 ignored, 66667 matched, 133333 missed"
        if line.startswith("Lines:") and "matched" in line:
            matched = int(line.split(",")[2].split()[0])
    if status != 0:
        print(text[-2000:], file=sys.stderr)
    return took, usage.ru_maxrss / 1024, usage.ru_utime + usage.ru_stime, matched


RULE = ('[rule.brute]\nwatch = "auth"\ngroup_by = ["ip"]\ntimes = 5\nwithin = "1m"\n'
        'trigger_limit = "off"\n')


def grep_alone(log):
    """`grep -cP` with the watch's pattern over the log: seconds, CPU seconds, lines."""
    t0 = time.perf_counter()
    p = subprocess.Popen(["grep", "-cP", PATTERN, log], stdout=subprocess.PIPE)
    out = p.stdout.read()
    _, _, usage = os.wait4(p.pid, 0)
    return time.perf_counter() - t0, usage.ru_utime + usage.ru_stime, int(out or 0)


def noise(hark, lines, runs, with_fail2ban=True):
    """A log where 1 line in 1,000 is a failed login: grep -cP, fail2ban-regex and hark
    alternately over it; the rows (seconds first) and how many lines match."""
    with tempfile.TemporaryDirectory(prefix="hark-bench-noise-") as tmp:
        os.chmod(tmp, 0o755)
        log = os.path.join(tmp, "auth.log")
        failed = make_log(log, lines, failed_every=1000)
        rows = {"grep -cP": [], "fail2ban-regex": [], "hark": []}
        for _ in range(runs):
            rows["grep -cP"].append(grep_alone(log))
            if with_fail2ban:
                rows["fail2ban-regex"].append(fail2ban(log))
            rows["hark"].append(hark_sshd(hark, log, failed))
        return failed, rows


def hark_until_judged(hark, watch, failed):
    """hark with the `auth` watch `watch` and the per-address rule, from its start until
    every failed login is an event judged: seconds, peak RSS (MiB), CPU seconds (hark's
    own), events, firings."""
    with tempfile.TemporaryDirectory(prefix="hark-bench-") as tmp:
        port = free_port()
        cfg = f"[watch.auth]\n{watch}pattern = '{PATTERN}'\n\n{RULE}"
        t0 = time.perf_counter()
        proc, hlog = start_hark(hark, cfg, tmp, rust_log="warn,hark::daemon=info",
                                daemon=f'metrics = "127.0.0.1:{port}"\n')
        try:
            wait_metric(port, "hark_events_total", failed, 600, poll=0.01)
            took = time.perf_counter() - t0
            events = metric(port, "hark_events_total")
            firings = metric(port, "hark_firings_total")
            cpu = cpu_seconds(proc.pid)
            peak = status_kib(proc.pid, "VmHWM") / 1024
        finally:
            stop(proc)
            hlog.close()
        return took, peak, cpu, events, firings


def hark_sshd(hark, log, failed):
    """The log watch over the sshd log, from its beginning."""
    return hark_until_judged(
        hark, f'type = "log"\npaths = ["{log}"]\nstart = "beginning"\n', failed)


def latency(hark, trials, tmp):
    """A line appended to a followed log -> the action started, in ms."""
    stamp = os.path.join(tmp, "stamp")
    subprocess.run(["cc", "-O2", "-o", stamp, os.path.join(ROOT, "bench", "stamp.c")], check=True)
    log = os.path.join(tmp, "app.log")
    open(log, "w").close()
    stamps = os.path.join(tmp, "stamps")
    cfg = (f'[watch.app]\ntype = "log"\npaths = ["{log}"]\npattern = \'ERROR\'\n\n'
           '[rule.r]\nwatch = "app"\ntrigger_limit = "off"\nthen = ["stamp"]\n\n'
           f'[action.stamp]\ntype = "shell"\ncommand = ["{stamp}", "{stamps}"]\n')
    proc, hlog = start_hark(hark, cfg, tmp, rust_log="warn,hark::daemon=info")
    try:
        time.sleep(0.3)
        def append(i):
            with open(log, "a") as f:
                t0 = time.time_ns()
                f.write(f"2026-12-02 ERROR request {i} failed\n")
            return t0
        return stamped(trials, stamps, append)
    finally:
        stop(proc)
        hlog.close()


def sshd(hark, lines, runs):
    """Alternate runs of both over one log; the rows for the table."""
    with tempfile.TemporaryDirectory(prefix="hark-bench-log-") as tmp:
        os.chmod(tmp, 0o755)
        log = os.path.join(tmp, "auth.log")
        failed = make_log(log, lines)
        rows = {"fail2ban-regex": [], "hark": []}
        for _ in range(runs):
            rows["fail2ban-regex"].append(fail2ban(log))
            rows["hark"].append(hark_sshd(hark, log, failed))
        return failed, rows


SANDBOX = os.path.join(ROOT, "tests", "systemd", "sandbox")


def make_journal(base, entries):
    """A journal of `entries` entries (a third failed logins, SYSLOG_IDENTIFIER=bench)
    written by a real journald in tests/systemd/sandbox (rate limit off), copied out;
    returns its directory (None if the sandbox cannot boot: it needs root) and the
    failed logins in it."""
    env = {**os.environ, "SYSD_BASE": base}
    run = lambda *a: subprocess.run([SANDBOX, *a], env=env, capture_output=True,  # noqa: E731
                                    text=True)
    if run("up").returncode != 0:
        return None, 0
    try:
        script = (
            "mkdir -p /etc/systemd/journald.conf.d /mnt/share && "
            "printf '[Journal]\\nStorage=persistent\\nRateLimitIntervalSec=0\\n' "
            "> /etc/systemd/journald.conf.d/bench.conf && systemctl restart systemd-journald && "
            f"seq 1 {entries} | awk '{{ if ($1 % 3 == 0) print \"Failed password for root from "
            f"10.0.\" ($1 % 250) \".\" ($1 % 200) \" port 22 ssh2\"; else print \"pam_unix(sshd:"
            f"session): session opened for user deploy \" $1 }}' | systemd-cat -t bench && "
            "journalctl --sync && cp -a /var/log/journal /mnt/share/"
        )
        r = run("run", "sh", "-c", script)
        if r.returncode != 0:
            print(r.stderr[-1000:], file=sys.stderr)
            return None, 0
    finally:
        run("down")
    top = os.path.join(base, "share", "journal")
    machine = next(iter(os.listdir(top)), None) if os.path.isdir(top) else None
    return (os.path.join(top, machine) if machine else None), entries // 3


def journalctl_alone(directory):
    """journalctl's own JSON output of the whole journal: seconds (hark's floor)."""
    t0 = time.perf_counter()
    subprocess.run(["journalctl", f"--directory={directory}", "--output=json", "--no-pager"],
                   stdout=subprocess.DEVNULL, check=False)
    return time.perf_counter() - t0


def hark_journal(hark, directory, failed):
    """The journal watch over the journal directory, from its beginning."""
    return hark_until_judged(
        hark, f'type = "journal"\ndirectory = "{directory}"\nstart = "beginning"\n'
              'match = { SYSLOG_IDENTIFIER = "bench" }\n', failed)


def journal(hark, entries, runs):
    """Alternate runs of journalctl alone and hark over one journal; None without one."""
    with tempfile.TemporaryDirectory(prefix="hark-bench-journal-") as base:
        directory, failed = make_journal(base, entries)
        if not directory:
            return None
        rows = {"journalctl": [], "hark": []}
        for _ in range(runs):
            rows["journalctl"].append(journalctl_alone(directory))
            rows["hark"].append(hark_journal(hark, directory, failed))
        return failed, rows


def ensure_fail2ban(log=print):
    if subprocess.run(["sh", "-c", "command -v fail2ban-regex"],
                      stdout=subprocess.DEVNULL).returncode == 0:
        return None
    if os.geteuid() != 0:
        return "fail2ban-regex missing (install Debian's fail2ban)"
    log("installing fail2ban")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    # Its service is not started: only fail2ban-regex is used.
    policy = "/usr/sbin/policy-rc.d"
    made = not os.path.exists(policy)
    if made:
        with open(policy, "w") as f:
            f.write("#!/bin/sh\nexit 101\n")
        os.chmod(policy, 0o755)
    try:
        r = subprocess.run(["apt-get", "install", "-y", "-q", "fail2ban"], env=env,
                           stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    finally:
        if made:
            os.remove(policy)
    return None if r.returncode == 0 else f"apt-get install fail2ban failed: {r.stderr[-300:]!r}"


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--hark", default=os.path.join(ROOT, "target", "release", "hark"))
    ap.add_argument("--noise", type=int, metavar="LINES",
                    help="only the log where 1 line in 1,000 matches, of LINES lines")
    args = ap.parse_args()
    why = ensure_fail2ban()
    if why:
        sys.exit(why)
    if args.noise:
        failed, rows = noise(args.hark, args.noise, args.runs)
        rate = {t: statistics.median(args.noise / r[0] for r in rs) for t, rs in rows.items()}
        for tool, r in rate.items():
            print(f"{tool}: {r:,.0f} lines a second (median of {args.runs})")
        print(f"hark / grep -cP {rate['hark'] / rate['grep -cP']:.2f}, hark / fail2ban-regex "
              f"{rate['hark'] / rate['fail2ban-regex']:.1f} ({failed:,} lines match)")
        return
    if why:
        sys.exit(why)
    failed, rows = sshd(args.hark, 20000 if args.quick else 200000, args.runs)
    for tool, rs in rows.items():
        print(tool, [tuple(round(x, 3) for x in r) for r in rs], f"failed lines {failed}")
    with tempfile.TemporaryDirectory(prefix="hark-bench-") as tmp:
        d = latency(args.hark, 5 if args.quick else 30, tmp)
        print("latency ms: median", statistics.median(d) if d else None, "all", d)


if __name__ == "__main__":
    main()
