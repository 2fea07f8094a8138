"""What the benchmark scripts share: starting hark on a config in a temp dir and waiting
until it runs, reading a process's CPU time and memory from /proc, and stopping a process
they started, by its pid."""
import os
import signal
import subprocess
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


def start_hark(hark, cfg_text, tmp, rust_log="info"):
    """Writes `cfg_text` (with a state directory and control socket in `tmp`) and runs hark
    on it; returns the process and its open log once it runs. `rust_log` must let
    `hark is running` through."""
    cfg = os.path.join(tmp, "hark.toml")
    with open(cfg, "w") as f:
        f.write(f'[daemon]\nstate_dir = "{tmp}/state"\ncontrol_socket = "{tmp}/control.sock"\n\n'
                + cfg_text)
    os.chmod(cfg, 0o644)
    log_path = os.path.join(tmp, "hark.log")
    log = open(log_path, "wb")
    proc = subprocess.Popen([hark, "run", "-c", cfg], stdout=log, stderr=log,
                            env={**os.environ, "RUST_LOG": rust_log, "NO_COLOR": "1"})
    wait_running(proc, log_path)
    return proc, log
