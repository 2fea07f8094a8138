#!/usr/bin/env python3
"""Publishing to message brokers: how long 10,000 firings take to be published and
confirmed by each broker (AMQP publisher confirms, MQTT PUBACK, JetStream ack, core NATS
flush).

Usage: python3 bench/brokers.py [--firings N] [--runs R] [--only amqp,mqtt,nats,jetstream]
                                [--hark PATH]

For each broker (Debian's rabbitmq-server, mosquitto, nats-server, on free loopback
ports, each in a temporary directory and a process group of its own), hark runs with a
file watch whose every create fires one rule with one publishing action. The script
creates N files (about 10,000 a second, in steps of 100) and measures from the first file to the moment hark's
/metrics counts N deliveries confirmed (`hark_deliveries_total{result="delivered"}`),
and, within that, to the moment it counts N firings stored (`hark_firings_total`): the
rest is what publishing adds.
Medians of R runs, each with a fresh broker and hark.

Every process it starts is stopped by its pid (its process group) when it ends, also on
Ctrl-C; all traffic goes to 127.0.0.1.
"""
import argparse
import base64
import hashlib
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request

from procstat import start_hark, stop

STARTED = []

# Files are created in steps of 100 with 5 ms between them: about 10,000 a second here,
# a firing rate far above any host's, yet below the burst at which inotify's queue (and
# hark's behind it) overflows while two cores also run the broker and this script. That
# limit is the burst scenario of bench/run.py; here every firing must count.
STEP, PAUSE = 100, 0.005


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port, limit=60):
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return True
        except OSError:
            time.sleep(0.1)
    return False


def spawn(argv, log, env=None):
    """A process in a group of its own, stopped with its group at the end."""
    p = subprocess.Popen(argv, stdout=log, stderr=log, stdin=subprocess.DEVNULL,
                         env=env, start_new_session=True)
    STARTED.append(p)
    return p


def kill_group(p):
    try:
        os.killpg(p.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    p.wait()


def start_rabbit(tmp):
    """rabbitmq-server with its own epmd, and the queue `events` bound to the topic
    exchange `hark` (definitions imported at boot)."""
    epmd_port, port = free_port(), free_port()
    log = open(os.path.join(tmp, "broker.log"), "wb")
    procs = [spawn(["epmd", "-port", str(epmd_port)], log)]
    # Definitions imported at boot replace the default vhost and user: both are here.
    salt = os.urandom(4)
    guest = base64.b64encode(salt + hashlib.sha256(salt + b"guest").digest()).decode()
    defs = {
        "vhosts": [{"name": "/"}],
        "users": [{"name": "guest", "password_hash": guest, "tags": ["administrator"],
                   "hashing_algorithm": "rabbit_password_hashing_sha256"}],
        "permissions": [{"user": "guest", "vhost": "/", "configure": ".*", "write": ".*",
                         "read": ".*"}],
        "exchanges": [{"name": "hark", "vhost": "/", "type": "topic", "durable": True,
                       "auto_delete": False, "internal": False, "arguments": {}}],
        "queues": [{"name": "events", "vhost": "/", "durable": True, "auto_delete": False,
                    "arguments": {}}],
        "bindings": [{"source": "hark", "vhost": "/", "destination": "events",
                      "destination_type": "queue", "routing_key": "hark.#", "arguments": {}}],
    }
    with open(os.path.join(tmp, "defs.json"), "w") as f:
        json.dump(defs, f)
    with open(os.path.join(tmp, "rabbitmq.conf"), "w") as f:
        f.write(f"definitions.import_backend = local_filesystem\n"
                f"definitions.local.path = {tmp}/defs.json\n")
    with open(os.path.join(tmp, "enabled_plugins"), "w") as f:
        f.write("[].\n")
    env = {**os.environ, "HOME": tmp, "RABBITMQ_BASE": tmp,
           "RABBITMQ_MNESIA_BASE": f"{tmp}/mnesia", "RABBITMQ_LOG_BASE": f"{tmp}/log",
           "RABBITMQ_NODENAME": f"hark{port}@localhost", "RABBITMQ_NODE_IP_ADDRESS": "127.0.0.1",
           "RABBITMQ_NODE_PORT": str(port), "RABBITMQ_DIST_PORT": str(free_port()),
           "ERL_EPMD_PORT": str(epmd_port),
           "RABBITMQ_ENABLED_PLUGINS_FILE": f"{tmp}/enabled_plugins",
           "RABBITMQ_CONFIG_FILE": f"{tmp}/rabbitmq",
           "RABBITMQ_ADVANCED_CONFIG_FILE": f"{tmp}/advanced.config",
           "RABBITMQ_PID_FILE": f"{tmp}/pid"}
    procs.append(spawn(["/usr/lib/rabbitmq/bin/rabbitmq-server"], log, env))
    if not wait_port(port):
        raise RuntimeError("rabbitmq-server did not start")
    time.sleep(1)  # the definitions are imported as the node finishes booting
    action = (f'type = "amqp"\nurl = "amqp://guest:guest@127.0.0.1:{port}/%2f"\n'
              'exchange = "hark"\nrouting_key = "hark.{{ rule }}"\n')
    return procs, action


def start_mosquitto(tmp):
    port = free_port()
    with open(os.path.join(tmp, "mosquitto.conf"), "w") as f:
        f.write(f"listener {port} 127.0.0.1\nallow_anonymous true\n")
    log = open(os.path.join(tmp, "broker.log"), "wb")
    procs = [spawn(["mosquitto", "-c", f"{tmp}/mosquitto.conf"], log)]
    if not wait_port(port):
        raise RuntimeError("mosquitto did not start")
    return procs, f'type = "mqtt"\nurl = "mqtt://127.0.0.1:{port}"\ntopic = "hark/{{{{ rule }}}}"\nqos = 1\n'


def start_nats(tmp, jetstream):
    port = free_port()
    log = open(os.path.join(tmp, "broker.log"), "wb")
    procs = [spawn(["nats-server", "-a", "127.0.0.1", "-p", str(port), "-js", "-sd",
                    f"{tmp}/js"], log)]
    if not wait_port(port):
        raise RuntimeError("nats-server did not start")
    if jetstream:
        create_stream(port)
    return procs, (f'type = "nats"\nurl = "nats://127.0.0.1:{port}"\nsubject = "hark.{{{{ rule }}}}"\n'
                   f'jetstream = {"true" if jetstream else "false"}\n')


def create_stream(port):
    """The stream HARK over `hark.>`, through the JetStream API in NATS's text protocol."""
    s = socket.create_connection(("127.0.0.1", port), timeout=10)
    s.recv(4096)
    body = json.dumps({"name": "HARK", "subjects": ["hark.>"], "storage": "file",
                       "retention": "limits", "max_msgs": -1, "max_bytes": -1, "max_age": 0,
                       "num_replicas": 1, "discard": "old"}).encode()
    s.sendall(b'CONNECT {"verbose":false}\r\nSUB _INBOX.bench 1\r\n'
              + b"PUB $JS.API.STREAM.CREATE.HARK _INBOX.bench %d\r\n%s\r\n" % (len(body), body))
    got = b""
    deadline = time.monotonic() + 10
    while b"MSG _INBOX.bench" not in got or not got.endswith(b"\r\n") or got.count(b"\r\n") < 3:
        if time.monotonic() > deadline:
            raise RuntimeError(f"no answer creating the stream: {got!r}")
        got += s.recv(65536)
    s.close()
    if b'"error"' in got:
        raise RuntimeError(f"cannot create the stream: {got!r}")


def counts(metrics_port):
    """(firings stored, deliveries confirmed) so far, from hark's /metrics."""
    try:
        text = urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/metrics", timeout=5).read().decode()
    except OSError:
        return 0, 0
    fired = delivered = 0
    for line in text.splitlines():
        if line.startswith("hark_deliveries_total{") and 'result="delivered"' in line:
            delivered = int(float(line.split()[-1]))
        if line.startswith("hark_firings_total{"):
            fired = int(float(line.split()[-1]))
    return fired, delivered


def one_run(hark, kind, firings):
    with tempfile.TemporaryDirectory(prefix="hark-bench-") as tmp:
        os.chmod(tmp, 0o755)
        procs = []
        proc = None
        try:
            if kind == "amqp":
                procs, action = start_rabbit(tmp)
            elif kind == "mqtt":
                procs, action = start_mosquitto(tmp)
            else:
                procs, action = start_nats(tmp, kind == "jetstream")
            watched = os.path.join(tmp, "in")
            os.makedirs(watched)
            metrics = free_port()
            cfg = (f'[watch.w]\ntype = "file"\npaths = ["{watched}"]\nevents = ["create"]\ndebounce = "0ms"\n\n'
                   f'[rule.r]\nwatch = "w"\nthen = ["publish"]\ntrigger_limit = "off"\n\n'
                   f'[action.publish]\n{action}json = {{ path = "{{{{ event.path }}}}" }}\n')
            proc, _log = start_hark(hark, cfg, tmp, rust_log="warn,hark::daemon=info",
                                    daemon=f'metrics = "127.0.0.1:{metrics}"\n')
            t0 = time.monotonic()
            for i in range(firings):
                open(os.path.join(watched, f"f{i}"), "w").close()
                if i % STEP == STEP - 1:
                    time.sleep(PAUSE)
            t_files = time.monotonic() - t0
            deadline = t0 + 60
            n = 0
            t_fired = None
            while n < firings and time.monotonic() < deadline:
                fired, n = counts(metrics)
                if t_fired is None and fired >= firings:
                    t_fired = time.monotonic() - t0
                time.sleep(0.02)
            took = time.monotonic() - t0
            if n < firings:
                with open(os.path.join(tmp, "hark.log"), errors="replace") as f:
                    lines = f.readlines()
                sys.stderr.write(f"{kind}: {n} of {firings} confirmed; hark's log ends:\n"
                                 + "".join(lines[-15:]))
            return took, n, t_fired or took
        finally:
            if proc is not None:
                stop(proc)
            for p in procs:
                kill_group(p)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--firings", type=int, default=10000)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--only", default="amqp,mqtt,nats,jetstream")
    ap.add_argument("--hark", default=os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                                                   "target", "release", "hark"))
    args = ap.parse_args()

    def on_signal(sig, frame):
        for p in STARTED:
            if p.poll() is None:
                kill_group(p)
        sys.exit(1)
    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)

    print(f"| broker | {args.firings} firings published and confirmed (median of {args.runs}) | runs | of which: all fired | all confirmed | target |")
    print("|---|---|---|---|---|---|")
    for kind in args.only.split(","):
        results = [one_run(args.hark, kind, args.firings) for _ in range(args.runs)]
        times = [r[0] for r in results]
        ok = all(r[1] >= args.firings for r in results)
        shown = ", ".join(f"{t:.2f}" for t in times)
        fired = statistics.median(r[2] for r in results)
        print(f"| {kind} | {statistics.median(times):.2f} s | {shown} | {fired:.2f} s | {'yes' if ok else 'NO'} | <= 5 s |",
              flush=True)


if __name__ == "__main__":
    main()
