#!/usr/bin/env python3
"""A unit's main process SIGKILLed -> the action started, after systemd marked it failed.

Usage: python3 bench/unit_failure.py [--trials N] [--hark PATH]

Boots a real systemd (tests/systemd/sandbox, needs root), starts `victim.service` (a
sleep), and, side by side, hark with a `unit` watch and Monit at `set daemon 1` with a
`check process ... matching` on the same unit, each running bench/stamp on the failure.
Each trial SIGKILLs the unit's main process; systemd's own `StateChangeTimestamp` of the
unit (read over D-Bus) is when it marked the unit failed; each tool's stamp is when its
action ran. Reports the median and p95 of the differences, in ms. Everything started
inside the sandbox goes with it when it is torn down, also on Ctrl-C.
"""
import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SANDBOX = os.path.join(ROOT, "tests", "systemd", "sandbox")

HARK_CONFIG = """
[daemon]
state_dir = "/var/lib/hark-bench"
control_socket = "/run/hark-bench.sock"

[watch.victim]
type = "unit"
units = ["victim.service"]

[rule.victim_failed]
watch = "victim"
when = 'active_state == "failed"'
then = ["stamp"]

[action.stamp]
type = "shell"
command = ["/usr/local/bin/stamp", "/mnt/share/hark-stamps"]
"""

IDLE_CONFIG = """
[daemon]
state_dir = "/var/lib/hark-NAME"
control_socket = "/run/hark-NAME.sock"

[watch.units]
type = "unit"
units = UNITS

[rule.any_failed]
watch = "units"
when = 'active_state == "failed"'
"""

MONITRC = """set daemon 1
set logfile /var/log/monit-bench.log
set pidfile /run/monit-bench.pid
set idfile /var/lib/monit-bench.id
set statefile /var/lib/monit-bench.state

check process victim matching "sleep 99999"
  if does not exist then exec "/usr/local/bin/stamp /mnt/share/monit-stamps"
"""


class Sandbox:
    def __init__(self):
        self.base = tempfile.mkdtemp(prefix="hark-bench-sysd-")
        self.env = {**os.environ, "SYSD_BASE": self.base}
        self.share = os.path.join(self.base, "share")

    def script(self, *args, check=True):
        out = subprocess.run([SANDBOX, *args], env=self.env, capture_output=True, text=True)
        if check and out.returncode != 0:
            raise RuntimeError(f"sandbox {args}: {out.stdout}{out.stderr}")
        return out.stdout

    def run(self, *args, check=True):
        return self.script("run", *args, check=check)

    def write(self, path, text, mode=0o644):
        staged = os.path.join(self.base, "staged")
        with open(staged, "w") as f:
            f.write(text)
        os.chmod(staged, mode)
        self.script("cp", staged, path)


def stamps(path):
    try:
        with open(path) as f:
            return [int(x) for x in f.read().split()]
    except FileNotFoundError:
        return []


def failed_at_us(s):
    """systemd's StateChangeTimestamp of the victim (realtime, microseconds)."""
    out = s.run("busctl", "get-property", "org.freedesktop.systemd1",
                "/org/freedesktop/systemd1/unit/victim_2eservice",
                "org.freedesktop.systemd1.Unit", "StateChangeTimestamp")
    return int(out.split()[1])


def pct(values, q):
    v = sorted(values)
    return v[min(len(v) - 1, int(round(q * (len(v) - 1))))]


def cpu_ticks(s, pid):
    fields = s.run("cat", f"/proc/{pid}/stat").rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])


def idle_every_unit(s, seconds):
    """hark watching every unit of the booted sandbox (`units = ["*"]`) beside hark
    watching one unit that does not exist, both idle: how many units, and each one's CPU
    time over `seconds` of nothing changing, in ms."""
    s.run("systemctl", "stop", "hark-bench", "monit-bench")
    pids = {}
    for name, units in (("one", '["nothing-here.service"]'), ("all", '["*"]')):
        s.write(f"/etc/hark/{name}.toml", IDLE_CONFIG.replace("NAME", name).replace("UNITS", units))
        s.run("systemd-run", f"--unit=hark-{name}", "--property=Type=notify",
              "/usr/bin/hark", "run", "-c", f"/etc/hark/{name}.toml")
    time.sleep(3)
    for name in ("one", "all"):
        pids[name] = s.run("systemctl", "show", f"hark-{name}", "-p", "MainPID", "--value").strip()
    units = len(s.run("systemctl", "list-units", "--all", "--no-legend", "--plain").splitlines())
    before = {n: cpu_ticks(s, p) for n, p in pids.items()}
    time.sleep(seconds)
    hz = os.sysconf("SC_CLK_TCK")
    return [units] + [(cpu_ticks(s, pids[n]) - before[n]) * 1000 / hz for n in ("one", "all")]


def measure(hark, trials, idle=30, log=print):
    """The delays in ms, per tool: {"hark": [...], "monit": [...]}, and "idle": [units,
    CPU ms over `idle` seconds of hark watching one unit, of hark watching every unit]."""
    s = Sandbox()
    try:
        s.script("up")
        stamp = os.path.join(s.base, "stamp")
        subprocess.run(["cc", "-O2", "-o", stamp, os.path.join(ROOT, "bench", "stamp.c")],
                       check=True)
        s.script("cp", stamp, "/usr/local/bin/stamp")
        s.script("cp", hark, "/usr/bin/hark")
        s.write("/etc/systemd/system/victim.service",
                "[Service]\nExecStart=/bin/sleep 99999\n")
        s.write("/etc/hark/bench.toml", HARK_CONFIG)
        s.write("/etc/monit-bench.rc", MONITRC, 0o600)
        s.run("systemctl", "daemon-reload")
        s.run("systemctl", "start", "victim.service")
        s.run("systemd-run", "--unit=hark-bench", "--property=Type=notify",
              "/usr/bin/hark", "run", "-c", "/etc/hark/bench.toml")
        s.run("systemd-run", "--unit=monit-bench", "/usr/bin/monit", "-I", "-c",
              "/etc/monit-bench.rc")
        time.sleep(2.5)
        files = {"hark": os.path.join(s.share, "hark-stamps"),
                 "monit": os.path.join(s.share, "monit-stamps")}
        out = {t: [] for t in files}
        for i in range(trials):
            before = {t: len(stamps(p)) for t, p in files.items()}
            s.run("systemctl", "kill", "-s", "KILL", "victim.service")
            deadline = time.time() + 5
            while time.time() < deadline and any(len(stamps(p)) <= before[t]
                                                 for t, p in files.items()):
                time.sleep(0.02)
            at = failed_at_us(s)
            for t, p in files.items():
                got = stamps(p)
                if len(got) > before[t]:
                    out[t].append((got[before[t]] / 1000 - at) / 1000)
            s.run("systemctl", "reset-failed", "victim.service", check=False)
            s.run("systemctl", "start", "victim.service")
            # Monit must see the new process before the next kill (its cycle is 1 s).
            time.sleep(1.6)
        out["idle"] = idle_every_unit(s, idle)
        return out
    finally:
        s.script("down", check=False)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--trials", type=int, default=20)
    ap.add_argument("--idle", type=int, default=30, help="seconds of the idle measurement")
    ap.add_argument("--hark", default=os.path.join(ROOT, "target", "release", "hark"))
    args = ap.parse_args()
    if os.geteuid() != 0:
        sys.exit("needs root (it boots a systemd sandbox)")
    out = measure(args.hark, args.trials, args.idle)
    units, one_ms, all_ms = out.pop("idle")
    print(f"idle {args.idle} s: CPU {all_ms:.0f} ms watching all {units} units, "
          f"{one_ms:.0f} ms watching one")
    for tool, v in out.items():
        if v:
            print(f"{tool}: median {statistics.median(v):.2f} ms, p95 {pct(v, 0.95):.2f} ms, "
                  f"{len(v)}/{args.trials} trials")
        else:
            print(f"{tool}: no action in {args.trials} trials")


if __name__ == "__main__":
    main()
