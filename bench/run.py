#!/usr/bin/env python3
"""hark beside the tools it replaces, in one run: every scenario runs hark and each peer
alternately, repeats each measurement, and prints a markdown table of medians, p95s and
ratios (hark / peer) with the machine it ran on.

Usage: python3 bench/run.py [--quick] [--write-docs] [--hark PATH] [--only NAME,...]

  --quick       a few seconds per scenario (CI runs this to keep the harness working;
                its figures are not the benchmark)
  --write-docs  also write the table into docs/benchmarks.md (between its markers)

Peers: incron, Monit, blackbox_exporter and fail2ban from Debian, watchexec from crates.io; what is
missing is installed (as root), or skipped with the reason in the table. All traffic
goes to 127.0.0.1; every loop is bounded; every process started is stopped by its pid
when the run ends, also on Ctrl-C.
"""
import argparse
import multiprocessing
import os
import platform
import random
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request

import peers
from loopback import serve_http
from procstat import CpuCgroup, cpu_seconds, private_kib, start_hark, status_kib, stop

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
STARTED = []  # every process this run started, stopped at the end


def log(msg):
    print(f"# {msg}", file=sys.stderr, flush=True)


def keep(proc):
    STARTED.append(proc)
    return proc


def stop_all():
    for p in STARTED:
        if isinstance(p, multiprocessing.Process):
            if p.is_alive():
                p.terminate()
                p.join(5)
        else:
            stop(p)
    STARTED.clear()


def pct(values, q):
    s = sorted(values)
    return s[min(len(s) - 1, int(round(q * (len(s) - 1))))] if s else float("nan")


class Table:
    """Rows of (scenario, tool, median, p95, unit, n); ratios against hark's row."""

    def __init__(self):
        self.rows = []
        self.notes = []
        self.targets = []

    def add(self, scenario, tool, values, unit, fmt="{:.2f}", vs=None):
        """`vs`: the hark row this peer is compared with (default: the scenario's first)."""
        self.rows.append((scenario, tool, values, unit, fmt, vs))

    def target(self, text, ok):
        self.targets.append((text, ok))

    def ratio_target(self, scenario, what, most, peer, hark="hark"):
        """A target: hark's median in `scenario` at most `most` times `peer`'s."""
        h, p = self.median(scenario, hark), self.median(scenario, peer)
        if h is not None and p is not None:
            ratio = f"{h / p:.3g}" if p else "∞"
            self.target(f"{what} ≤ {most} × {peer}'s ({hark} {h:.3g}, {peer} {p:.3g}, "
                        f"ratio {ratio})", h <= most * p)

    def median(self, scenario, tool):
        for s, t, v, *_ in self.rows:
            if s == scenario and t == tool and v:
                return statistics.median(v)
        return None

    def hark_row(self, scenario, vs):
        for s, t, v, *_ in self.rows:
            if s == scenario and t.startswith("hark") and (vs is None or t == vs) and v:
                return statistics.median(v)
        return None

    def markdown(self, machine):
        out = [f"Machine: {machine}", "",
               "| scenario | tool | median | p95 | n | hark / this |", "|---|---|---|---|---|---|"]
        for s, t, v, unit, fmt, vs in self.rows:
            if not v:
                out.append(f"| {s} | {t} | — | — | 0 | |")
                continue
            med, p95 = statistics.median(v), pct(v, 0.95)
            hark = self.hark_row(s, vs)
            ratio = "" if t.startswith("hark") or not hark or not med else f"{hark / med:.3f}"
            out.append(f"| {s} | {t} | {fmt.format(med)} {unit} | {fmt.format(p95)} {unit} "
                       f"| {len(v)} | {ratio} |")
        if self.targets:
            out += ["", "| target | met |", "|---|---|"]
            out += [f"| {t} | {'yes' if ok else 'NO'} |" for t, ok in self.targets]
        if self.notes:
            out += [""] + [f"- {n}" for n in self.notes]
        return "\n".join(out)


def machine():
    cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo")
                if l.startswith("model name")), platform.machine())
    mem = next((int(l.split()[1]) // 1024 for l in open("/proc/meminfo")
                if l.startswith("MemTotal")), 0)
    return (f"{os.cpu_count()} CPUs ({cpu}), {mem} MiB, Linux {platform.release()}, "
            f"{time.strftime('%Y-%m-%d')}")


def compile_stamp(tmp):
    stamp = os.path.join(tmp, "stamp")
    subprocess.run(["cc", "-O2", "-o", stamp, os.path.join(ROOT, "bench", "stamp.c")], check=True)
    return stamp


def stamps(path):
    try:
        return [int(x) for x in open(path).read().split()]
    except FileNotFoundError:
        return []


def wait_stamp(path, before, limit):
    """The first stamp after `before` stamps were there, within `limit` seconds."""
    deadline = time.time() + limit
    while time.time() < deadline:
        s = stamps(path)
        if len(s) > before:
            return s[before]
        time.sleep(0.0005)
    return None


# ---------------------------------------------------------------- file write -> action
def file_latency(hark, trials, tmp, skipped, table):
    stamp = compile_stamp(tmp)
    tools = {}

    def setup(name):
        d = os.path.join(tmp, f"w-{name}")
        os.makedirs(d)
        return d, os.path.join(tmp, f"stamps-{name}")

    d, out = setup("hark")
    cfg = (f'[watch.w]\ntype = "file"\npaths = ["{d}"]\nevents = ["create"]\ndebounce = "0ms"\n\n'
           f'[rule.r]\nwatch = "w"\nthen = ["stamp"]\ntrigger_limit = "off"\n\n'
           f'[action.stamp]\ntype = "shell"\ncommand = ["{stamp}", "{out}"]\n')
    hd = os.path.join(tmp, "hark-f")
    os.makedirs(hd)
    proc, _ = start_hark(hark, cfg, hd, rust_log="warn,hark::daemon=info")
    keep(proc)
    tools["hark"] = (d, out)
    if "incron" not in skipped:
        d, out = setup("incron")
        keep(peers.start_incron(tmp, d, f"{stamp} {out}"))
        tools["incron"] = (d, out)
    if "watchexec" not in skipped:
        for label, debounce in (("watchexec (debounce 1ms)", "1ms"),
                                ("watchexec (default 50ms)", "50ms")):
            d, out = setup(label.split()[0] + debounce)
            keep(peers.start_watchexec(tmp, d, [stamp, out], debounce))
            tools[label] = (d, out)
    time.sleep(1.0)
    results = {t: [] for t in tools}
    for i in range(trials):
        for tool, (d, out) in tools.items():
            before = len(stamps(out))
            t0 = time.time_ns()
            with open(os.path.join(d, f"f{i}"), "w") as f:
                f.write("x")
            got = wait_stamp(out, before, 5)
            if got is not None:
                results[tool].append((got - t0) / 1e6)
            time.sleep(0.12)  # past watchexec's default debounce, so trials do not merge
    for tool, v in results.items():
        table.add("file write → action", tool, v, "ms")
    table.ratio_target("file write → action", "file → action, median", 0.5, "incron")
    stop_all()


# -------------------------------------------------------------- process killed -> action
def process_exit(hark, trials, tmp, skipped, table):
    stamp = compile_stamp(tmp)
    tag = f"hbv{os.getpid()}"
    victims = {}

    def victim(name):
        exe = os.path.join(tmp, name)
        if not os.path.exists(exe):
            subprocess.run(["cp", "/bin/sleep", exe], check=True)
        return subprocess.Popen([exe, "100000"])

    out_h = os.path.join(tmp, "stamps-ph")
    name_h = f"{tag}h"
    victims["hark"] = (name_h, out_h, keep(victim(name_h)))
    cfg = (f'[watch.p]\ntype = "process"\nname = "{name_h}"\n\n'
           f'[rule.gone]\nwatch = "p"\nwhen = \'kind == "exit"\'\nthen = ["stamp"]\n'
           f'trigger_limit = "off"\n\n'
           f'[action.stamp]\ntype = "shell"\ncommand = ["{stamp}", "{out_h}"]\n')
    os.makedirs(os.path.join(tmp, "hark-p"))
    proc, _ = start_hark(hark, cfg, os.path.join(tmp, "hark-p"), rust_log="warn,hark::daemon=info")
    keep(proc)
    if "monit" not in skipped:
        name_m = f"{tag}m"
        out_m = os.path.join(tmp, "stamps-pm")
        victims["Monit (set daemon 1)"] = (name_m, out_m, keep(victim(name_m)))
        keep(peers.start_monit(tmp, f'check process v matching "{name_m}"\n'
                                    f'  if does not exist then exec "{stamp} {out_m}"\n', 1))
    time.sleep(2.5)
    results = {t: [] for t in victims}
    for _ in range(trials):
        for tool, (name, out, p) in list(victims.items()):
            # The kill lands anywhere in Monit's cycle, not in phase with it.
            time.sleep(random.random())
            before = len(stamps(out))
            t0 = time.time_ns()
            p.kill()
            p.wait()
            got = wait_stamp(out, before, 5)
            if got is not None:
                results[tool].append((got - t0) / 1e6)
            victims[tool] = (name, out, keep(victim(name)))
        time.sleep(2.2)  # Monit sees the new one running before the next kill
    for tool, v in results.items():
        table.add("process killed → action", tool, v, "ms")
    table.ratio_target("process killed → action", "process exit → action, median", 0.02,
                       "Monit (set daemon 1)")
    stop_all()


# ------------------------------------------------------------ HTTP turns 500 -> action
def flip_server(port_queue, status):
    def respond(head, body):
        code = status.value
        return f"HTTP/1.1 {code} X\r\nContent-Length: 2\r\n\r\nok".encode()
    serve_http(respond, port_queue)


def start_flip():
    status = multiprocessing.Value("i", 200)
    q = multiprocessing.Queue()
    p = multiprocessing.Process(target=flip_server, args=(q, status), daemon=True)
    p.start()
    keep(p)
    return status, q.get(timeout=10)


def probe_failed(port, target):
    url = f"http://127.0.0.1:{port}/probe?module=http_2xx&target={target}"
    try:
        body = urllib.request.urlopen(url, timeout=5).read().decode()
    except OSError:
        return False
    return any(l.startswith("probe_success 0") for l in body.splitlines())


def http_500(hark, trials, tmp, skipped, table):
    stamp = compile_stamp(tmp)
    tools = {}
    st, port = start_flip()
    out = os.path.join(tmp, "stamps-hh")
    cfg = (f'[watch.api]\ntype = "http"\nurl = "http://127.0.0.1:{port}/"\nevery = "1s"\n\n'
           f'[rule.down]\nwatch = "api"\nwhen = "status != 200"\nthen = ["stamp"]\n\n'
           f'[action.stamp]\ntype = "shell"\ncommand = ["{stamp}", "{out}"]\n')
    os.makedirs(os.path.join(tmp, "hark-h"))
    proc, _ = start_hark(hark, cfg, os.path.join(tmp, "hark-h"), rust_log="warn,hark::daemon=info")
    keep(proc)
    tools["hark (every 1s)"] = (st, out)
    if "monit" not in skipped:
        st_m, port_m = start_flip()
        out_m = os.path.join(tmp, "stamps-hm")
        keep(peers.start_monit(tmp, f'check host api with address 127.0.0.1\n'
                                    f'  if failed port {port_m} protocol http request "/" '
                                    f'then exec "{stamp} {out_m}"\n', 1))
        tools["Monit (set daemon 1)"] = (st_m, out_m)
    blackbox = None
    if "prometheus-blackbox-exporter" not in skipped:
        st_b, port_b = start_flip()
        bport = free_port()
        keep(peers.start_blackbox(tmp, bport))
        blackbox = (st_b, port_b, bport)
    time.sleep(2.5)
    results = {t: [] for t in tools}
    if blackbox:
        results["blackbox_exporter (probed every 1s)"] = []
    for _ in range(trials):
        for tool, (status, out) in tools.items():
            # The switch lands anywhere in the tool's check interval, not in phase with it.
            time.sleep(random.random())
            before = len(stamps(out))
            t0 = time.time_ns()
            status.value = 500
            got = wait_stamp(out, before, 5)
            if got is not None:
                results[tool].append((got - t0) / 1e6)
            status.value = 200
        if blackbox:
            st_b, port_b, bport = blackbox
            # A Prometheus scraping every second: the phase of the switch within the
            # interval is random, as it is for the other tools.
            time.sleep(random.random())
            t0 = time.time_ns()
            st_b.value = 500
            deadline = time.time() + 5
            next_probe = time.time() + 1.0 - (time.time() % 1.0)
            while time.time() < deadline:
                time.sleep(max(0.0, next_probe - time.time()))
                next_probe += 1.0
                if probe_failed(bport, f"http://127.0.0.1:{port_b}/"):
                    results["blackbox_exporter (probed every 1s)"].append(
                        (time.time_ns() - t0) / 1e6)
                    break
            st_b.value = 200
        time.sleep(2.5)  # every tool sees it healthy again
    for tool, v in results.items():
        table.add("HTTP turns 500 → action", tool, v, "ms", "{:.0f}")
    stop_all()


def free_port():
    import socket
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


# ------------------------------------------------------------------- idle footprint
def idle_world(tmp):
    """What the idle scenario watches: 5 files, 3 running copies of sleep, 2 HTTP
    servers on 127.0.0.1 (all stopped by stop_all)."""
    files = []
    for i in range(5):
        f = os.path.join(tmp, f"idle-file-{i}")
        open(f, "w").write("x")
        files.append(f)
    procs = []
    for i in range(3):
        exe = os.path.join(tmp, f"hbidle{i}")
        subprocess.run(["cp", "/bin/sleep", exe], check=True)
        procs.append((f"hbidle{i}", keep(subprocess.Popen([exe, "100000"]))))
    _, port = start_flip()
    _, port2 = start_flip()
    urls = [f"http://127.0.0.1:{port}/", f"http://127.0.0.1:{port2}/"]
    return files, procs, urls


def idle_hark_cfg(files, procs, urls, every):
    c = f'[watch.files]\ntype = "file"\npaths = {files!r}\n\n'.replace("'", '"')
    for name, _ in procs:
        c += f'[watch.{name}]\ntype = "process"\nname = "{name}"\nevery = "{every}s"\n\n'
        c += (f'[rule.{name}_gone]\nwatch = "{name}"\nwhen = \'kind == "sample" && count == 0\'\n\n')
    for i, u in enumerate(urls):
        c += f'[watch.web{i}]\ntype = "http"\nurl = "{u}"\nevery = "{every}s"\n\n'
        c += f'[rule.web{i}_down]\nwatch = "web{i}"\nwhen = "status != 200"\n\n'
    return c + '[rule.changed]\nwatch = "files"\n'


def idle_footprint(hark, seconds, runs, tmp, skipped, table):
    files, procs, urls = idle_world(tmp)

    def hark_cfg(every):
        return idle_hark_cfg(files, procs, urls, every)

    def monit_checks():
        c = ""
        for i, f in enumerate(files):
            c += f'check file f{i} with path {f}\n  if changed checksum then alert\n'
        for name, _ in procs:
            c += f'check process {name} matching "{name}"\n  if does not exist then alert\n'
        for i, u in enumerate(urls):
            p = u.rsplit(":", 1)[1].strip("/")
            c += (f'check host web{i} with address 127.0.0.1\n'
                  f'  if failed port {p} protocol http request "/" then alert\n')
        return c

    results = {}
    for run in range(runs):
        pids = {}
        for every in (1, 30):
            d = os.path.join(tmp, f"idle-hark-{every}-{run}")
            os.makedirs(d)
            proc, _ = start_hark(hark, hark_cfg(every), d, rust_log="warn,hark::daemon=info")
            pids[f"hark (every {every}s)"] = keep(proc)
            if "monit" not in skipped:
                d = os.path.join(tmp, f"idle-monit-{every}-{run}")
                os.makedirs(d)
                pids[f"Monit (set daemon {every})"] = keep(peers.start_monit(d, monit_checks(),
                                                                            every))
        # Each in a cgroup of its own: CPU time to the microsecond, every thread counted.
        groups = {t: CpuCgroup(p.pid, f"idle{run}-{i}") for i, (t, p) in enumerate(pids.items())}
        time.sleep(2.0)  # past start-up
        before = {t: g.seconds() for t, g in groups.items()}
        time.sleep(seconds)
        for t, p in pids.items():
            cpu = groups[t].seconds() - before[t]
            groups[t].close()
            results.setdefault(t, {"cpu": [], "rss": [], "uss": []})
            results[t]["cpu"].append(100.0 * cpu / seconds)
            results[t]["rss"].append(status_kib(p.pid, "VmRSS") / 1024)
            results[t]["uss"].append(private_kib(p.pid) / 1024)
        for p in pids.values():
            stop(p)
    def vs(tool):
        every = tool.rstrip(")").rsplit(" ", 1)[-1].rstrip("s")
        return None if tool.startswith("hark") else f"hark (every {every}s)"
    for t, r in results.items():
        table.add(f"idle CPU over {seconds} s (5 files, 3 processes, 2 HTTP checks)", t,
                  r["cpu"], "% of a core", "{:.3f}", vs(t))
    for t, r in results.items():
        table.add("idle RSS", t, r["rss"], "MiB", "{:.1f}", vs(t))
    for t, r in results.items():
        table.add("idle private memory (RSS without shared file pages)", t, r["uss"], "MiB",
                  "{:.1f}", vs(t))
    # Issue 22's targets: RSS at most Monit's, private memory at most 2 MiB, CPU at most
    # 0.1x Monit's at 1 s and at most Monit's at 30 s.
    for every, cpu_most in ((1, 0.1), (30, 1)):
        hark_tool, monit = f"hark (every {every}s)", f"Monit (set daemon {every})"
        table.ratio_target("idle RSS", "idle RSS (MiB)", 1, monit, hark_tool)
        table.ratio_target(f"idle CPU over {seconds} s (5 files, 3 processes, 2 HTTP checks)",
                           "idle CPU (% of a core)", cpu_most, monit, hark_tool)
        private = table.median("idle private memory (RSS without shared file pages)",
                               hark_tool)
        if private is not None:
            table.target(f"idle private memory of {hark_tool} ≤ 2 MiB ({private:.1f})",
                         private <= 2.0)
    stop_all()


# ------------------------------------------------------------- CPU per HTTP check
def http_cpu(hark, watches, seconds, runs, tmp, skipped, table):
    _, port = start_flip()
    url = f"http://127.0.0.1:{port}/"
    per = {"hark": []}
    for run in range(runs):
        d = os.path.join(tmp, f"cpu-hark-{run}")
        os.makedirs(d)
        cfg = "".join(f'[watch.w{i}]\ntype = "http"\nurl = "{url}"\nevery = "1s"\n\n'
                      for i in range(watches))
        proc, _ = start_hark(hark, cfg, d, rust_log="warn,hark::daemon=info")
        keep(proc)
        time.sleep(2.0)
        c0 = cpu_seconds(proc.pid)
        time.sleep(seconds)
        per["hark"].append(1000.0 * (cpu_seconds(proc.pid) - c0) / (watches * seconds))
        stop(proc)
        if "prometheus-blackbox-exporter" not in skipped:
            bport = free_port()
            bb = keep(peers.start_blackbox(tmp, bport))
            probes = drive_probes(bb.pid, bport, url, watches, seconds)
            per.setdefault("blackbox_exporter", []).append(probes)
            stop(bb)
    for t, v in per.items():
        table.add(f"CPU per HTTP check ({watches} checks/s)", t, v, "ms", "{:.3f}")
    table.ratio_target(f"CPU per HTTP check ({watches} checks/s)",
                       "CPU per HTTP check vs per probe (ms)", 0.25, "blackbox_exporter")
    stop_all()


def drive_probes(pid, bport, target, rate, seconds, module="http_2xx"):
    """Asks blackbox_exporter for `rate` probes a second for `seconds`, from a pool of
    keep-alive connections; returns its CPU per probe in ms."""
    import concurrent.futures
    import http.client
    import threading
    local = threading.local()
    path = f"/probe?module={module}&target={target}"

    def one(_):
        c = getattr(local, "c", None)
        if c is None:
            c = local.c = http.client.HTTPConnection("127.0.0.1", bport, timeout=10)
        try:
            c.request("GET", path)
            c.getresponse().read()
            return 1
        except OSError:
            local.c = None
            return 0

    time.sleep(0.5)
    done = 0
    with concurrent.futures.ThreadPoolExecutor(max_workers=32) as pool:
        c0 = cpu_seconds(pid)
        start = time.time()
        for sec in range(seconds):
            batch = list(pool.map(one, range(rate)))
            done += sum(batch)
            rest = start + sec + 1 - time.time()
            if rest > 0:
                time.sleep(rest)
        used = cpu_seconds(pid) - c0
    return 1000.0 * used / max(done, 1)


# --------------------------------------------------------------- burst of file creations
def burst(hark, files, runs, tmp, table):
    peak, seen_all, took = [], [], []
    for run in range(runs):
        d = os.path.join(tmp, f"burst-{run}")
        watched = os.path.join(d, "in")
        os.makedirs(watched)
        out = os.path.join(d, "done")
        mport = free_port()
        # start_hark opens the [daemon] table: `metrics` goes first, into it.
        cfg = (f'metrics = "127.0.0.1:{mport}"\n\n'
               f'[watch.w]\ntype = "file"\npaths = ["{watched}"]\nevents = ["create"]\n'
               f'debounce = "0ms"\n\n'
               f'[rule.r]\nwatch = "w"\ndebounce = "1s"\ntrigger_limit = "off"\nthen = ["done"]\n\n'
               f'[action.done]\ntype = "shell"\ncommand = ["/bin/sh", "-c", "date +%s%N >> {out}"]\n')
        proc, _ = start_hark(hark, cfg, d, rust_log="warn,hark::daemon=info")
        keep(proc)
        for i in range(files):
            open(os.path.join(watched, f"f{i}"), "w").close()
        t_written = time.time_ns()
        # The rule's debounce makes each second of the burst one firing; the one that
        # matters is the last, after the last file was written.
        deadline = time.time() + 60
        while time.time() < deadline and not any(x >= t_written for x in stamps(out)):
            time.sleep(0.01)
        after = [x for x in stamps(out) if x >= t_written]
        took.append((after[0] - t_written) / 1e6 if after else float("nan"))
        text = urllib.request.urlopen(f"http://127.0.0.1:{mport}/metrics", timeout=5).read().decode()
        events = next((float(l.rsplit(" ", 1)[1]) for l in text.splitlines()
                       if l.startswith('hark_events_total{watch="w"}')), 0.0)
        seen_all.append(events)
        peak.append(status_kib(proc.pid, "VmHWM") / 1024)
        overflow = "overflow" in open(os.path.join(d, "hark.log"), errors="replace").read()
        if overflow:
            table.notes.append(f"burst run {run + 1}: hark reported an overflow (and rescanned)")
        stop(proc)
    table.add(f"burst of {files} file creations: events seen", "hark", seen_all, "", "{:.0f}")
    table.add("burst: peak RSS", "hark", peak, "MiB", "{:.1f}")
    table.add("burst: last file written → the (debounced) action ran", "hark", took, "ms", "{:.0f}")


# ------------------------------------------------- file intake at the kernel's pace
def intake(hark, quick, runs, table):
    """bench/file_intake.py's scenarios, into the side-by-side table."""
    import file_intake as fi
    small = fi.cpu_per_event(hark, 1000, runs)
    big_n = 2000 if quick else 100000
    big = fi.cpu_per_event(hark, big_n, runs)
    table.add("CPU per file event (inotify → verdict), burst of 1,000", "hark",
              [x[0] for x in small], "µs", "{:.1f}")
    table.add(f"CPU per file event (inotify → verdict), burst of {big_n:,}", "hark",
              [x[0] for x in big], "µs", "{:.1f}")
    a, b = fi.med([x[0] for x in small]), fi.med([x[0] for x in big])
    table.target(f"CPU per file event ≤ 10 µs (bursts of 1,000: {a:.1f}; {big_n:,}: {b:.1f})",
                 a <= 10 and b <= 10)
    table.target(f"the two within 1.5× of each other ({max(a, b) / max(min(a, b), 1e-9):.2f}×)",
                 max(a, b) <= 1.5 * min(a, b))
    n = 5000 if quick else 100000
    rows, seen, overflows, _ = fi.burst(hark, n, runs)
    scenario = f"{n:,}-file burst: the creating process's time"
    for tool in ("hark", "inotifywait", "watchman", "nothing"):
        if rows[tool]:
            table.add(scenario, tool if tool != "nothing" else "nothing watching",
                      rows[tool], "s")
    if rows["inotifywait"]:
        table.ratio_target(scenario, "the creating process's time with hark watching", 1.2,
                           "inotifywait")
    table.add(f"{n:,}-file burst: events seen", "hark", seen["hark"], "", "{:.0f}")
    table.add(f"{n:,}-file burst: events seen", "inotifywait", seen["inotifywait"], "", "{:.0f}")
    table.target(f"{n:,}-file burst: every event, no overflow (overflows: {sum(overflows):.0f})",
                 all(x >= n for x in seen["hark"]) and sum(overflows) == 0)
    files, dirs = (20000, 2000) if quick else (1000000, 100000)
    trows, made = fi.tree(hark, files, dirs, runs)
    t = f"tree of {files:,} files in {dirs:,} directories"
    table.add(f"{t}: READY after", "hark", [r[0] for r in trows], "s")
    table.add(f"{t}: RSS", "hark", [r[1] for r in trows], "MiB", "{:.1f}")
    table.add(f"{t}: a create deep and one at the top reported", "hark",
              [r[4] for r in trows], "ms", "{:.0f}")
    table.target(f"{t}: READY ≤ 5 s, RSS ≤ 64 MiB, no overflow at start, creates reported",
                 fi.med([r[0] for r in trows]) <= 5 and fi.med([r[1] for r in trows]) <= 64
                 and sum(r[2] for r in trows) == 0 and all(r[3] for r in trows))
    creates = 20000 if quick else 30000
    orows = fi.overflow(hark, creates, runs)
    table.add(f"overflow: {creates:,} creates, 100 deletes, 100 modifications while stopped → "
              "all reported after SIGCONT", "hark", [r[0] for r in orows], "s")
    table.target(f"overflow recovery: each change once with its kind, within 5 s "
                 f"({orows[-1][2]})", all(r[1] for r in orows) and fi.med([r[0] for r in orows]) <= 5)


# ------------------------------------------------------------- validate of 10,000 rules
def validate(hark, rules, runs, tmp, table):
    d = os.path.join(tmp, "validate")
    os.makedirs(d)
    cfg = os.path.join(d, "hark.toml")
    with open(cfg, "w") as f:
        f.write('[watch.w]\ntype = "file"\npaths = ["/etc/hark-bench-nowhere"]\n\n'
                '[action.a]\ntype = "shell"\ncommand = ["/bin/true", "{{ rule }}", "{{ event.path }}"]\n\n')
        for i in range(rules):
            f.write(f'[rule.r{i}]\nwatch = "w"\nwhen = \'kind == "modify" && path.endsWith(".conf{i}")\'\n'
                    f'then = ["a"]\nsummary = "{{{{ event.path }}}} changed ({i})"\n\n')
    os.chmod(cfg, 0o644)
    times, peaks = [], []
    for _ in range(runs):
        t0 = time.perf_counter()
        p = subprocess.Popen([hark, "validate", "-c", cfg], stdout=subprocess.DEVNULL,
                             stderr=subprocess.PIPE)
        _, _, usage = os.wait4(p.pid, 0)
        times.append(time.perf_counter() - t0)
        peaks.append(usage.ru_maxrss / 1024)
    table.add(f"hark validate, {rules} rules: time", "hark", times, "s", "{:.3f}")
    table.add(f"hark validate, {rules} rules: peak RSS", "hark", peaks, "MiB", "{:.1f}")
    m = statistics.median(times)
    table.target(f"validate of {rules} rules ≤ 1 s (median {m:.3f} s)", m <= 1.0)


def log_intake(hark, quick, runs, trials, tmp, table):
    """bench/log_intake.py: fail2ban's job beside fail2ban-regex, and line -> action."""
    import log_intake as li
    why = li.ensure_fail2ban(log)
    lines = 20000 if quick else 200000
    if why:
        table.notes.append(f"skipped fail2ban-regex: {why}")
        return
    failed, rows = li.sshd(hark, lines, runs)
    s = f"{lines:,}-line sshd log, {failed:,} failed logins (group_by ip, times 5 within 1m)"
    for tool in ("hark", "fail2ban-regex"):
        table.add(f"{s}: lines a second", tool, [lines / r[0] for r in rows[tool]],
                  "lines/s", "{:,.0f}")
        table.add(f"{s}: peak RSS", tool, [r[1] for r in rows[tool]], "MiB", "{:.1f}")
        table.add(f"{s}: CPU", tool, [r[2] for r in rows[tool]], "s", "{:.2f}")
    h = table.median(f"{s}: lines a second", "hark")
    f = table.median(f"{s}: lines a second", "fail2ban-regex")
    table.target(f"log intake ≥ 10 × fail2ban-regex's lines a second ({h:,.0f} vs {f:,.0f}: "
                 f"{h / f:.1f}×)", h >= 10 * f)
    rss = table.median(f"{s}: peak RSS", "hark")
    table.target(f"log intake: hark's peak RSS ≤ 32 MiB ({rss:.1f})", rss <= 32)
    table.target("log intake: every failed login judged by hark and matched by fail2ban",
                 all(r[3] == failed for r in rows["hark"])
                 and all(r[3] == failed for r in rows["fail2ban-regex"]))
    n = 20000 if quick else 2000000
    matched, rows = li.noise(hark, n, 1 if quick else 3)
    s = f"{n:,}-line sshd log, 1 line in 1,000 a failed login ({matched:,})"
    for tool in ("hark", "grep -cP", "fail2ban-regex"):
        table.add(f"{s}: lines a second", tool, [n / r[0] for r in rows[tool]],
                  "lines/s", "{:,.0f}")
    h = table.median(f"{s}: lines a second", "hark")
    g = table.median(f"{s}: lines a second", "grep -cP")
    table.target(f"noise: ≥ 10,000,000 lines a second and ≥ half of grep -cP's ({h:,.0f}, "
                 f"{h / g:.2f} of grep's)", h >= 10e6 and h >= g / 2)
    got = li.journal(hark, 20000 if quick else 200000, runs)
    if got is None:
        table.notes.append("skipped the journal: tests/systemd/sandbox did not boot (root?)")
    else:
        jfailed, jrows = got
        n = 20000 if quick else 200000
        j = f"journal of {n:,} entries, {jfailed:,} failed logins (the same rule)"
        table.add(f"{j}: entries a second", "hark", [n / r[0] for r in jrows["hark"]],
                  "entries/s", "{:,.0f}")
        table.add(f"{j}: entries a second", "journalctl -o json alone",
                  [n / t for t in jrows["journalctl"]], "entries/s", "{:,.0f}")
        table.add(f"{j}: peak RSS", "hark", [r[1] for r in jrows["hark"]], "MiB", "{:.1f}")
        table.add(f"{j}: CPU (hark's, not journalctl's)", "hark", [r[2] for r in jrows["hark"]],
                  "s", "{:.2f}")
        table.target("journal: every failed login judged",
                     all(r[3] == jfailed for r in jrows["hark"]))
        h = table.median(f"{j}: entries a second", "hark")
        jc = table.median(f"{j}: entries a second", "journalctl -o json alone")
        table.target(f"journal: ≥ journalctl -o json alone's entries a second ({h / jc:.2f}×)",
                     h >= jc)
    d = li.latency(hark, trials, tmp)
    table.add("log line appended → action started", "hark", d, "ms")
    m = statistics.median(d) if d else float("nan")
    table.target(f"log line → action ≤ 2 ms median ({m:.2f})", bool(d) and m <= 2)


def unit_failure(hark, trials, idle, table):
    """bench/unit_failure.py: a unit's main process SIGKILLed -> action, beside Monit."""
    import unit_failure as uf
    try:
        out = uf.measure(hark, trials, idle)
    except RuntimeError as e:
        table.notes.append(f"skipped the unit watch: the systemd sandbox failed ({e})"[:300])
        return
    units, one_ms, all_ms = out.pop("idle")
    what = "unit's main process SIGKILLed → action (after systemd marked it failed)"
    table.add(what, "hark", out["hark"], "ms")
    table.add(what, "monit (set daemon 1)", out["monit"], "ms")
    m = statistics.median(out["hark"]) if out["hark"] else float("nan")
    table.target(f"unit failed → action ≤ 5 ms median ({m:.2f})", bool(out["hark"]) and m <= 5)
    table.add(f"idle {idle} s, watching all {units} units: CPU", "hark", [all_ms], "ms", "{:.0f}")
    table.add(f"idle {idle} s, watching one unit: CPU", "hark", [one_ms], "ms", "{:.0f}")
    table.target(f"watching every unit costs no CPU while nothing changes ({all_ms:.0f} ms vs "
                 f"{one_ms:.0f} ms watching one, in {idle} s)", all_ms <= one_ms + 10)


def write_docs(text):
    path = os.path.join(ROOT, "docs", "benchmarks.md")
    doc = open(path).read()
    begin, end = "<!-- bench/run.py: begin -->", "<!-- bench/run.py: end -->"
    block = f"{begin}\n{text}\n{end}"
    if begin in doc and end in doc:
        doc = doc[:doc.index(begin)] + block + doc[doc.index(end) + len(end):]
    else:
        doc += f"\n## Side by side with the peers (`python3 bench/run.py`)\n\n{block}\n"
    open(path, "w").write(doc)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--write-docs", action="store_true")
    ap.add_argument("--hark", default=os.path.join(ROOT, "target", "release", "hark"))
    ap.add_argument("--only", default="")
    args = ap.parse_args()
    if not os.path.exists(args.hark):
        sys.exit(f"no hark binary at {args.hark}: cargo build --release first")
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(1))
    q = args.quick
    skipped = peers.install_missing(log, build=not q)
    only = set(filter(None, args.only.split(",")))
    want = lambda name: not only or name in only  # noqa: E731
    table = Table()
    for peer, why in sorted(skipped.items()):
        table.notes.append(f"skipped {peer}: {why}")
    try:
        with tempfile.TemporaryDirectory(prefix="hark-bench-") as tmp:
            def sub(name):
                p = os.path.join(tmp, name)
                os.makedirs(p)
                return p
            if want("file"):
                log("file write -> action")
                file_latency(args.hark, 3 if q else 30, sub("file"), skipped, table)
            if want("process"):
                log("process killed -> action")
                process_exit(args.hark, 2 if q else 20, sub("process"), skipped, table)
            if want("http"):
                log("HTTP turns 500 -> action")
                http_500(args.hark, 2 if q else 20, sub("http"), skipped, table)
            if want("idle"):
                log("idle footprint")
                idle_footprint(args.hark, 3 if q else 60, 1 if q else 5, sub("idle"), skipped,
                               table)
            if want("cpu"):
                log("CPU per HTTP check")
                http_cpu(args.hark, 100 if q else 1000, 3 if q else 20, 1 if q else 5,
                         sub("cpu"), skipped, table)
            if want("burst"):
                log("burst of file creations")
                burst(args.hark, 2000 if q else 100000, 1 if q else 3, sub("burst"), table)
            if want("intake"):
                log("file intake: CPU per event, bursts, a big tree, overflow recovery")
                intake(args.hark, q, 1 if q else 3, table)
            if want("log"):
                log("log intake beside fail2ban-regex, line -> action")
                log_intake(args.hark, q, 1 if q else 5, 5 if q else 30, sub("log"), table)
            if want("flood"):
                log("process killed -> action, log quiet and during a flood of lines")
                import flood
                flood.run(args.hark, 3 if q else 15, 200000, sub("flood"), table)
            if want("unit"):
                log("unit failed -> action beside Monit, idle cost of every unit")
                unit_failure(args.hark, 3 if q else 20, 5 if q else 30, table)
            if want("probes"):
                log("1,000 DNS and 1,000 ping targets at 1 s beside blackbox_exporter")
                import probes
                probes.run(args.hark, 100 if q else 1000, 3 if q else 20, 1 if q else 3,
                           sub("probes"), skipped, table, keep, drive_probes, free_port)
            if want("validate"):
                log("validate")
                validate(args.hark, 500 if q else 10000, 2 if q else 5, sub("validate"), table)
    finally:
        stop_all()
    text = table.markdown(machine() + (" — QUICK MODE, not a benchmark" if q else ""))
    print(text)
    if args.write_docs:
        write_docs(text)


if __name__ == "__main__":
    main()
