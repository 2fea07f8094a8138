"""What the benchmark scripts share: starting hark on a config in a temp dir and waiting
until it runs, reading a process's CPU time and memory from /proc, and stopping a process
they started, by its pid."""
import os
import signal
import subprocess
import sys
import time

TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid):
    """User + system CPU time of `pid` so far, in seconds."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS


def status_kib(pid, key):
    """A `kB` line of /proc/PID/status (`VmRSS`, `VmHWM`), in KiB."""
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1])
    return 0


def private_kib(pid):
    """Memory only this process holds (Private_Clean + Private_Dirty of smaps_rollup), in
    KiB: RSS without the pages of its binary and libraries it shares with the page cache."""
    total = 0
    with open(f"/proc/{pid}/smaps_rollup") as f:
        for line in f:
            if line.startswith(("Private_Clean:", "Private_Dirty:")):
                total += int(line.split()[1])
    return total


class CpuCgroup:
    """A cgroup of its own for one process, to read its CPU time to the microsecond with
    every thread counted, also threads that have exited (cgroup v2 `cpu.stat`). Falls back
    to /proc/PID/stat ticks (10 ms) where cgroups cannot be made (not root)."""

    def __init__(self, pid, name):
        self.pid = pid
        self.path = None
        root = next((r for r in ("/sys/fs/cgroup/unified", "/sys/fs/cgroup")
                     if os.path.exists(os.path.join(r, "cgroup.procs"))
                     and open("/proc/self/mounts").read().find(f" {r} cgroup2 ") >= 0), None)
        if root is None:
            return
        path = os.path.join(root, f"hark-bench-{os.getpid()}-{name}")
        try:
            os.mkdir(path)
            with open(os.path.join(path, "cgroup.procs"), "w") as f:
                f.write(str(pid))
            self.path = path
        except OSError:
            try:
                os.rmdir(path)
            except OSError:
                pass

    def seconds(self):
        if self.path is None:
            return cpu_seconds(self.pid)
        with open(os.path.join(self.path, "cpu.stat")) as f:
            for line in f:
                if line.startswith("usage_usec"):
                    return int(line.split()[1]) / 1e6
        return cpu_seconds(self.pid)

    def close(self):
        """Moves what is left back to the root and removes the cgroup."""
        if self.path is None:
            return
        root = os.path.dirname(self.path)
        try:
            for pid in open(os.path.join(self.path, "cgroup.procs")).read().split():
                with open(os.path.join(root, "cgroup.procs"), "w") as f:
                    f.write(pid)
            os.rmdir(self.path)
        except OSError:
            pass


def stop(proc):
    """SIGTERM, then SIGKILL after 15 s."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def cpu_seconds_fine(pid):
    """CPU time of `pid`'s live threads so far, in seconds, to the nanosecond (schedstat),
    and the set of those threads. /proc/PID/stat counts in clock ticks (10 ms), too coarse
    for an idle daemon; but schedstat forgets threads that have exited, so a difference is
    only valid between two readings with the same threads."""
    total = 0
    tids = set()
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{tid}/schedstat") as f:
                total += int(f.read().split()[0])
            tids.add(tid)
        except (FileNotFoundError, ProcessLookupError):
            pass
    return total / 1e9, tids


def wait_running(proc, log_path, timeout=20.0):
    """Waits until hark logged `hark is running` (its watches are armed)."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        with open(log_path, "rb") as f:
            if b"hark is running" in f.read():
                return
        if proc.poll() is not None:
            raise SystemExit("hark exited early:\n" + open(log_path).read())
        time.sleep(0.01)
    raise SystemExit("hark did not start")


def start_hark(hark, cfg_text, tmp, rust_log="info", daemon=""):
    """Writes `cfg_text` (with a state directory and control socket in `tmp`, and the
    `daemon` lines in [daemon]) and runs hark on it; returns the process and its open log
    once it runs. `rust_log` must let `hark is running` through."""
    cfg = os.path.join(tmp, "hark.toml")
    with open(cfg, "w") as f:
        f.write(f'[daemon]\nstate_dir = "{tmp}/state"\ncontrol_socket = "{tmp}/control.sock"\n{daemon}\n'
                + cfg_text)
    os.chmod(cfg, 0o644)
    log_path = os.path.join(tmp, "hark.log")
    log = open(log_path, "wb")
    proc = subprocess.Popen([hark, "run", "-c", cfg], stdout=log, stderr=log,
                            env={**os.environ, "RUST_LOG": rust_log, "NO_COLOR": "1"})
    wait_running(proc, log_path)
    return proc, log


def stamped(trials, stamps, act):
    """Runs `act(i)` (it returns the wall-clock ns just before it acted) `trials` times and
    waits each time for the stamp program to add a line to `stamps`; the delays in ms."""
    deltas = []
    for i in range(trials):
        before = len(open(stamps).read().split()) if os.path.exists(stamps) else 0
        t0 = act(i)
        deadline = time.time() + 5
        while time.time() < deadline:
            if os.path.exists(stamps):
                got = open(stamps).read().split()
                if len(got) > before:
                    deltas.append((int(got[before]) - t0) / 1e6)
                    break
            time.sleep(0.0005)
        else:
            print(f"trial {i}: no stamp within 5 s", file=sys.stderr)
        time.sleep(0.02)
    return deltas
