"""Native probes at scale: N `dns` watches (every 1 s, BIND 9 on 127.0.0.1) and N `ping`
watches (every 1 s, 127.0.0.1), hark's CPU per check and RSS, beside blackbox_exporter
asked for N probes a second of the same kind (its `dns_a` and `icmp` modules) in the
same run. All traffic goes to 127.0.0.1; every process is stopped by its pid."""
import os
import shutil
import subprocess
import time

from procstat import cpu_seconds, start_hark, status_kib, stop

import peers


def start_named(tmp, port):
    """named on 127.0.0.1:PORT, authoritative for hark.test."""
    zone = os.path.join(tmp, "hark.test.zone")
    with open(zone, "w") as f:
        f.write("$TTL 300\n@ IN SOA ns.hark.test. admin.hark.test. 1 3600 600 86400 60\n"
                "@ IN NS ns\nns IN A 127.0.0.1\nwww IN A 192.0.2.10\n")
    conf = os.path.join(tmp, "named.conf")
    with open(conf, "w") as f:
        f.write(f'options {{ directory "{tmp}"; listen-on port {port} {{ 127.0.0.1; }};\n'
                f' listen-on-v6 {{ none; }}; recursion no; pid-file "{tmp}/named.pid";\n'
                f' session-keyfile "{tmp}/session.key"; dnssec-validation no;\n'
                ' rate-limit { responses-per-second 0; }; };\ncontrols { };\n'
                f'zone "hark.test" {{ type primary; file "{zone}"; }};\n')
    log = open(os.path.join(tmp, "named.log"), "wb")
    proc = subprocess.Popen(["named", "-g", "-c", conf], stdout=log, stderr=log)
    deadline = time.time() + 20
    while time.time() < deadline:
        text = open(os.path.join(tmp, "named.log"), errors="replace").read()
        if any(line.endswith(" running") for line in text.splitlines()):
            return proc
        time.sleep(0.1)
    stop(proc)
    raise RuntimeError("named did not start: " + text[-2000:])


def hark_cpu(hark, cfg, tmp, checks, seconds):
    """hark's CPU per check (ms) over `seconds` after a warm-up, and its RSS (MiB)."""
    proc, _ = start_hark(hark, cfg, tmp, rust_log="warn,hark::daemon=info")
    try:
        time.sleep(2.5)
        c0 = cpu_seconds(proc.pid)
        time.sleep(seconds)
        used = cpu_seconds(proc.pid) - c0
        rss = status_kib(proc.pid, "VmRSS") / 1024
    finally:
        stop(proc)
    return 1000.0 * used / (checks * seconds), rss


def run(hark, n, seconds, runs, tmp, skipped, table, keep, drive_probes, free_port):
    if not shutil.which("named") and not os.path.exists("/usr/sbin/named"):
        table.notes.append("probes: named (bind9) missing, dns row skipped")
        return
    nport = free_port()
    named = keep(start_named(tmp, nport))
    dns_cfg = "".join(f'[watch.d{i}]\ntype = "dns"\nname = "www.hark.test"\n'
                      f'servers = ["127.0.0.1:{nport}"]\nevery = "1s"\n\n' for i in range(n))
    ping_cfg = "".join(f'[watch.p{i}]\ntype = "ping"\nhost = "127.0.0.1"\ncount = 1\n'
                       f'timeout = "500ms"\nevery = "1s"\n\n' for i in range(n))
    rows = {}
    for run_i in range(runs):
        for kind, cfg in (("dns", dns_cfg), ("ping", ping_cfg)):
            d = os.path.join(tmp, f"{kind}-{run_i}")
            os.makedirs(d)
            cpu, rss = hark_cpu(hark, cfg, d, n, seconds)
            rows.setdefault((kind, "hark"), []).append(cpu)
            rows.setdefault((kind, "hark rss"), []).append(rss)
        if "prometheus-blackbox-exporter" not in skipped:
            bport = free_port()
            bb = keep(peers.start_blackbox(tmp, bport))
            for kind, module, target in (("dns", "dns_a", f"127.0.0.1:{nport}"),
                                         ("ping", "icmp", "127.0.0.1")):
                per = drive_probes(bb.pid, bport, target, n, seconds, module=module)
                rows.setdefault((kind, "blackbox_exporter"), []).append(per)
            rows.setdefault(("dns", "blackbox rss"), []).append(
                status_kib(bb.pid, "VmRSS") / 1024)
            stop(bb)
    stop(named)
    for kind in ("dns", "ping"):
        scenario = f"CPU per {kind} check ({n} targets at 1 s)"
        for tool in ("hark", "blackbox_exporter"):
            if (kind, tool) in rows:
                table.add(scenario, tool, rows[(kind, tool)], "ms", "{:.3f}")
        table.add(f"RSS with {n} {kind} watches", "hark", rows[(kind, "hark rss")], "MiB")
    if ("dns", "blackbox rss") in rows:
        table.add(f"RSS with {n} dns watches", "blackbox_exporter (after its probes)",
                  rows[("dns", "blackbox rss")], "MiB")
