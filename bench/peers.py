"""The peers hark is measured against, each started on a private configuration in a temp
directory (nothing under /etc is touched) and stopped by its pid: incron, watchexec,
Monit, Prometheus's blackbox_exporter. `find()` says which are installed; the harness
installs the missing ones (Debian's packages, `cargo install watchexec-cli`) or says
plainly which it skipped and why."""
import os
import shutil
import subprocess
import time

DEBIAN = {"incrond": "incron", "monit": "monit",
          "prometheus-blackbox-exporter": "prometheus-blackbox-exporter",
          "inotifywait": "inotify-tools", "watchman": "watchman"}


def which(cmd):
    return shutil.which(cmd) or next(
        (p for p in (os.path.expanduser(f"~/.cargo/bin/{cmd}"),) if os.path.exists(p)), None)


def install_missing(log, build=True):
    """Installs what is missing (watchexec only with `build`: it compiles for minutes);
    returns {name: reason} for peers still unavailable."""
    missing = [pkg for cmd, pkg in DEBIAN.items() if not which(cmd)]
    if missing and os.geteuid() == 0:
        log(f"installing from Debian: {' '.join(missing)}")
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        subprocess.run(["apt-get", "update", "-qq"], env=env, check=False)
        subprocess.run(["apt-get", "install", "-y", "-qq", "--no-install-recommends", *missing],
                       env=env, check=False, stdout=subprocess.DEVNULL)
    if not which("watchexec") and build:
        log("installing watchexec-cli from crates.io (cargo install; a few minutes)")
        subprocess.run(["cargo", "install", "--locked", "watchexec-cli"], check=False,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    skipped = {}
    for cmd, pkg in DEBIAN.items():
        if not which(cmd):
            skipped[pkg] = ("not installed, and installing needs root" if os.geteuid() != 0
                            else f"apt-get install {pkg} failed")
    if not which("watchexec"):
        skipped["watchexec"] = ("cargo install watchexec-cli failed" if build else
                                "not installed; quick mode does not build it (minutes), the "
                                "full run does")
    if os.geteuid() != 0:
        skipped.setdefault("incron", "incrond needs root for a private configuration")
    return skipped


def start_incron(tmp, watched, command):
    """incrond in the foreground on a private configuration: `command` (argv as a string,
    incron splits it on spaces) on each IN_CREATE in `watched`."""
    base = os.path.join(tmp, "incron")
    for d in ("sys", "user"):
        os.makedirs(os.path.join(base, d), exist_ok=True)
    with open(os.path.join(base, "sys", "bench"), "w") as f:
        f.write(f"{watched} IN_CREATE {command}\n")
    conf = os.path.join(base, "incron.conf")
    with open(conf, "w") as f:
        f.write(f"system_table_dir = {base}/sys\nuser_table_dir = {base}/user\n"
                f"lockfile_dir = {base}\nlockfile_name = incron.lock\n")
    proc = subprocess.Popen([which("incrond"), "-n", "-f", conf],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(0.5)
    return proc


def start_watchexec(tmp, watched, argv, debounce):
    """watchexec on `watched`, running `argv` (no shell) after each batch of events."""
    return subprocess.Popen(
        [which("watchexec"), "--postpone", "--no-vcs-ignore", "--no-project-ignore",
         "--no-global-ignore", "--no-default-ignore", "--debounce", debounce,
         "-w", watched, "--shell=none", "--", *argv],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=tmp)


def start_monit(tmp, checks, cycle):
    """Monit in the foreground with `set daemon CYCLE` and the given check blocks."""
    base = os.path.join(tmp, "monit")
    os.makedirs(base, exist_ok=True)
    rc = os.path.join(base, "monitrc")
    with open(rc, "w") as f:
        f.write(f"set daemon {cycle}\nset logfile {base}/monit.log\nset pidfile {base}/monit.pid\n"
                f"set idfile {base}/monit.id\nset statefile {base}/monit.state\n\n{checks}\n")
    os.chmod(rc, 0o600)
    proc = subprocess.Popen([which("monit"), "-I", "-c", rc],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(0.5)
    return proc


def start_blackbox(tmp, port, dns_name="www.hark.test"):
    """blackbox_exporter on 127.0.0.1:PORT with modules `http_2xx`, `dns_a` (an A query
    for `dns_name` over UDP) and `icmp` (one echo over IPv4)."""
    conf = os.path.join(tmp, "blackbox.yml")
    with open(conf, "w") as f:
        f.write("modules:\n  http_2xx:\n    prober: http\n    timeout: 5s\n"
                "  dns_a:\n    prober: dns\n    timeout: 2s\n    dns:\n"
                f"      query_name: {dns_name}\n      query_type: A\n"
                "      transport_protocol: udp\n      preferred_ip_protocol: ip4\n"
                "  icmp:\n    prober: icmp\n    timeout: 1s\n    icmp:\n"
                "      preferred_ip_protocol: ip4\n")
    proc = subprocess.Popen([which("prometheus-blackbox-exporter"), f"--config.file={conf}",
                             f"--web.listen-address=127.0.0.1:{port}"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(0.7)
    return proc
