//! The `amqp`, `mqtt` and `nats` actions against the real brokers of Debian's packages
//! (rabbitmq-server, mosquitto, nats-server; `.ci/run` installs them), started here on
//! free loopback ports and stopped by their process group: a firing arrives with its
//! payload; firings made while the broker is down arrive once it is back; firings pending
//! when hark is SIGKILLed arrive after its restart.

use std::collections::BTreeMap;
use std::os::unix::process::CommandExt as _;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::Value;

use crate::util::*;

pub(crate) fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free loopback port")
}

fn port_open(port: u16) -> bool {
    std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
}

/// A process started in a process group of its own; the whole group is killed (SIGKILL:
/// an outage, not a shutdown) by `stop` and when dropped.
pub(crate) struct Group(Option<Child>);

impl Group {
    fn spawn(cmd: &mut Command, log: &Path) -> Group {
        let log = std::fs::File::create(log).expect("broker log");
        let child = cmd
            .process_group(0)
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| {
                panic!("cannot run {cmd:?} ({e}): install rabbitmq-server, mosquitto and nats-server (.ci/run does)")
            });
        Group(Some(child))
    }

    fn stop(&mut self) {
        if let Some(mut c) = self.0.take() {
            // SAFETY: kill(2) on the process group of a child we started in its own group.
            unsafe {
                libc::kill(-(c.id() as i32), libc::SIGKILL);
            }
            let _ = c.wait();
        }
    }
}

impl Group {
    /// SIGTERM (a broker saves its state on the way out), SIGKILL after 10 s.
    fn terminate(&mut self) {
        if let Some(c) = &self.0 {
            // SAFETY: kill(2) on the process group of a child we started in its own group.
            unsafe {
                libc::kill(-(c.id() as i32), libc::SIGTERM);
            }
        }
        let exited = wait_for(Duration::from_secs(10), || {
            self.0
                .as_mut()
                .is_none_or(|c| c.try_wait().ok().flatten().is_some())
        });
        if exited {
            self.0 = None;
        }
        self.stop();
    }
}

impl Drop for Group {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A broker the test can take down and bring back, on the same port and storage.
pub(crate) trait Broker {
    fn start(&mut self);
    fn stop(&mut self);
    /// Waits until what the subscriber set up since the last start (its session, its
    /// subscription) would survive a SIGKILL of the broker.
    fn settle(&self) {}
}

pub(crate) fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
}

pub(crate) fn start_hark(action: &str) -> Hark {
    let dir = tempdir();
    std::fs::create_dir(dir.path().join("in")).unwrap();
    start_in(
        dir,
        &fixture("brokers/publish.toml", &[("@ACTION@", action)]),
    )
}

pub(crate) fn drop_file(h: &Hark, name: &str) {
    std::fs::write(h.path(&format!("in/{name}")), "").unwrap();
}

/// The file names in the payloads received, with how many times each came.
pub(crate) fn names(payloads: &[Value]) -> BTreeMap<String, usize> {
    let mut out = BTreeMap::new();
    for p in payloads {
        assert_eq!(p["rule"], "dropped", "{p}");
        assert_eq!(p["state"], "firing", "{p}");
        let path = p["path"].as_str().unwrap_or_default();
        let name = path.rsplit('/').next().unwrap_or_default().to_string();
        *out.entry(name).or_insert(0) += 1;
    }
    out
}

/// Waits (bounded) until every name in `want` was received at least once.
pub(crate) fn wait_names(
    received: &dyn Fn() -> Vec<Value>,
    want: &[&str],
    h: &Hark,
    earlier_log: &str,
) -> BTreeMap<String, usize> {
    let mut got = BTreeMap::new();
    let all = wait_for(Duration::from_secs(60), || {
        got = names(&received());
        want.iter().all(|w| got.contains_key(*w))
    });
    assert!(
        all,
        "want {want:?}, got {got:?}; hark's log:\n{earlier_log}\n{}",
        h.log()
    );
    got
}

/// Up: a firing arrives. Down while hark runs: the firings arrive once it is back. Down,
/// firings pending, hark SIGKILLed and restarted: they arrive too. Returns how many times
/// each arrived.
fn outage_and_sigkill(
    h: &mut Hark,
    broker: &mut dyn Broker,
    received: &dyn Fn() -> Vec<Value>,
) -> BTreeMap<String, usize> {
    drop_file(h, "a1");
    wait_names(received, &["a1"], h, "");

    let retries = |h: &Hark| h.log().matches("retrying in").count();
    broker.stop();
    for n in ["b1", "b2", "b3"] {
        drop_file(h, n);
    }
    assert!(
        wait_for(Duration::from_secs(10), || retries(h) >= 1),
        "{}",
        h.log()
    );
    broker.start();
    wait_names(received, &["b1", "b2", "b3"], h, "");
    broker.settle();

    let before = retries(h);
    broker.stop();
    for n in ["c1", "c2", "c3"] {
        drop_file(h, n);
    }
    // Fired, stored, and the first attempt failed: publishes are pending.
    assert!(
        wait_for(Duration::from_secs(10), || {
            h.log().contains("/in/c3\"") && retries(h) > before
        }),
        "{}",
        h.log()
    );
    let before = h.log();
    h.kill_and_restart();
    broker.start();
    wait_names(
        received,
        &["a1", "b1", "b2", "b3", "c1", "c2", "c3"],
        h,
        &before,
    )
}

// ---------------------------------------------------------------- NATS

/// Fields drop in order: the process before its directory.
struct Nats {
    process: Group,
    port: u16,
    dir: tempfile::TempDir,
}

impl Nats {
    fn new() -> Nats {
        let mut n = Nats {
            port: free_port(),
            dir: tempdir(),
            process: Group(None),
        };
        n.start();
        n
    }

    fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }
}

impl Broker for Nats {
    fn start(&mut self) {
        self.process = Group::spawn(
            Command::new("nats-server")
                .args([
                    "-a",
                    "127.0.0.1",
                    "-p",
                    &self.port.to_string(),
                    "-js",
                    "-sd",
                ])
                .arg(self.dir.path().join("js")),
            &self
                .dir
                .path()
                .join(format!("nats-{}.log", fastrand::u32(..))),
        );
        assert!(
            wait_for(Duration::from_secs(20), || port_open(self.port)),
            "nats-server did not start"
        );
    }

    fn stop(&mut self) {
        self.process.stop();
    }
}

#[test]
fn nats_core_publish_arrives_with_its_payload_and_idempotency_key() {
    let nats = Nats::new();
    let rt = rt();
    let client = rt
        .block_on(async_nats::connect(nats.url()))
        .expect("connect to nats-server");
    let mut sub = rt.block_on(client.subscribe("hark.>")).expect("subscribe");
    rt.block_on(client.flush()).unwrap();
    let h = start_hark(&format!(
        "type = \"nats\"\nurl = \"{}\"\nsubject = \"hark.{{{{ rule }}}}\"",
        nats.url()
    ));
    drop_file(&h, "x1");
    let msg = rt
        .block_on(async {
            use futures_util::StreamExt as _;
            tokio::time::timeout(Duration::from_secs(10), sub.next()).await
        })
        .ok()
        .flatten()
        .unwrap_or_else(|| panic!("nothing arrived; log:\n{}", h.log()));
    assert_eq!(msg.subject.as_str(), "hark.dropped");
    let body: Value = serde_json::from_slice(&msg.payload).unwrap();
    assert_eq!(names(&[body]).keys().collect::<Vec<_>>(), ["x1"]);
    let headers = msg.headers.expect("headers");
    let key = headers.get("Nats-Msg-Id").map(|v| v.as_str().to_string());
    assert!(
        key.as_ref()
            .is_some_and(|k| k.len() == 32 && k.chars().all(|c| c.is_ascii_hexdigit())),
        "{key:?}"
    );
}

#[test]
fn nats_jetstream_every_firing_arrives_through_an_outage_and_a_sigkill() {
    let mut nats = Nats::new();
    rt().block_on(async {
        let client = async_nats::connect(nats.url()).await.expect("connect");
        let js = async_nats::jetstream::new(client);
        js.get_or_create_stream(async_nats::jetstream::stream::Config {
            name: "HARK".into(),
            subjects: vec!["hark.>".into()],
            storage: async_nats::jetstream::stream::StorageType::File,
            ..Default::default()
        })
        .await
        .expect("create the stream");
    });
    let mut h = start_hark(&format!(
        "type = \"nats\"\nurl = \"{}\"\nsubject = \"hark.{{{{ rule }}}}\"\njetstream = true",
        nats.url()
    ));
    let url = nats.url();
    let received = move || -> Vec<Value> {
        rt().block_on(async {
            let Ok(Ok(client)) =
                tokio::time::timeout(Duration::from_secs(2), async_nats::connect(url.as_str()))
                    .await
            else {
                return Vec::new();
            };
            let js = async_nats::jetstream::new(client);
            let Ok(mut stream) = js.get_stream("HARK").await else {
                return Vec::new();
            };
            let Ok(info) = stream.info().await else {
                return Vec::new();
            };
            let last = info.state.last_sequence;
            let mut out = Vec::new();
            for seq in 1..=last {
                if let Ok(m) = stream.get_raw_message(seq).await {
                    out.extend(serde_json::from_slice::<Value>(&m.payload).ok());
                }
            }
            out
        })
    };
    let got = outage_and_sigkill(&mut h, &mut nats, &received);
    // JetStream drops a second publish with the same Nats-Msg-Id: each arrived once.
    assert!(got.values().all(|n| *n == 1), "{got:?}");
}

// ---------------------------------------------------------------- MQTT

pub(crate) struct Mosquitto {
    process: Group,
    pub port: u16,
    dir: tempfile::TempDir,
}

impl Mosquitto {
    fn new() -> Mosquitto {
        Mosquitto::with(tempdir(), "")
    }

    /// With `listeners` (more of mosquitto.conf) after the plain one, in `dir`.
    pub(crate) fn with(dir: tempfile::TempDir, listeners: &str) -> Mosquitto {
        let port = free_port();
        std::fs::write(
            dir.path().join("mosquitto.conf"),
            format!(
                "per_listener_settings false\nallow_anonymous true\npersistence true\npersistence_location {}/\nautosave_on_changes true\nautosave_interval 1\nlistener {port} 127.0.0.1\n{listeners}",
                dir.path().display()
            ),
        )
        .unwrap();
        let mut m = Mosquitto {
            port,
            dir,
            process: Group(None),
        };
        m.start();
        m
    }

    fn url(&self) -> String {
        format!("mqtt://127.0.0.1:{}", self.port)
    }
}

impl Broker for Mosquitto {
    fn start(&mut self) {
        self.process = Group::spawn(
            Command::new("mosquitto")
                .arg("-c")
                .arg(self.dir.path().join("mosquitto.conf")),
            &self
                .dir
                .path()
                .join(format!("mosquitto-{}.log", fastrand::u32(..))),
        );
        assert!(
            wait_for(Duration::from_secs(20), || port_open(self.port)),
            "mosquitto did not start"
        );
    }

    /// SIGTERM: mosquitto writes its persistence file on the way out, so the subscriber's
    /// session (and what waits for it) survives the outage however late the subscriber
    /// came back (CI lost messages to a SIGKILL before the autosave under load).
    fn stop(&mut self) {
        self.process.terminate();
    }

    /// mosquitto writes its persistence file at most `autosave_interval` (1 s) after a
    /// change: the subscriber's subscription, made again after a restart, is on disk
    /// after that. Without this wait a SIGKILL right after a restart lost it, and with it
    /// what was published before the subscriber came back (seen once in CI under load).
    fn settle(&self) {
        std::thread::sleep(Duration::from_millis(1500));
    }
}

/// A subscriber to `hark/#` at QoS 1 with a persistent session, so what is published
/// while it reconnects waits for it; gathers payloads until `stop`.
pub(crate) fn mqtt_subscriber(
    port: u16,
    stop: Arc<std::sync::atomic::AtomicBool>,
) -> Arc<Mutex<Vec<Value>>> {
    let got = Arc::new(Mutex::new(Vec::new()));
    let sink = Arc::clone(&got);
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        rt().block_on(async move {
            let mut o = rumqttc::MqttOptions::new("hark-test-subscriber", "127.0.0.1", port);
            o.set_clean_session(false)
                .set_keep_alive(Duration::from_secs(5));
            let (client, mut events) = rumqttc::AsyncClient::new(o, 16);
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                match tokio::time::timeout(Duration::from_millis(200), events.poll()).await {
                    // Subscribed again at each connection, in case the broker lost it.
                    Ok(Ok(rumqttc::Event::Incoming(rumqttc::Packet::ConnAck(_)))) => {
                        let _ = client.try_subscribe("hark/#", rumqttc::QoS::AtLeastOnce);
                    }
                    Ok(Ok(rumqttc::Event::Incoming(rumqttc::Packet::SubAck(_)))) => {
                        let _ = ready_tx.send(());
                    }
                    Ok(Ok(rumqttc::Event::Incoming(rumqttc::Packet::Publish(p)))) => {
                        if let Ok(v) = serde_json::from_slice(&p.payload) {
                            sink.lock().unwrap().push(v);
                        }
                    }
                    Ok(Ok(_)) | Err(_) => {}
                    Ok(Err(_)) => tokio::time::sleep(Duration::from_millis(100)).await,
                }
            }
        })
    });
    ready_rx
        .recv_timeout(Duration::from_secs(10))
        .expect("the subscriber subscribed");
    got
}

#[test]
fn mqtt_every_firing_arrives_through_an_outage_and_a_sigkill() {
    let mut broker = Mosquitto::new();
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let got = mqtt_subscriber(broker.port, Arc::clone(&stop));
    let mut h = start_hark(&format!(
        "type = \"mqtt\"\nurl = \"{}\"\ntopic = \"hark/{{{{ rule }}}}\"\nqos = 1",
        broker.url()
    ));
    let received = move || got.lock().unwrap().clone();
    let counts = outage_and_sigkill(&mut h, &mut broker, &received);
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    // At least once: a publish whose PUBACK was lost in the outage is sent again.
    assert!(counts.values().all(|n| *n >= 1), "{counts:?}");
}

// ---------------------------------------------------------------- AMQP

pub(crate) struct Rabbit {
    process: Group,
    _epmd: Group,
    pub port: u16,
    dir: tempfile::TempDir,
}

impl Rabbit {
    fn new() -> Rabbit {
        Rabbit::with(tempdir(), "")
    }

    /// With `conf` as its rabbitmq.conf, in `dir`.
    pub(crate) fn with(dir: tempfile::TempDir, conf: &str) -> Rabbit {
        std::fs::write(dir.path().join("rabbitmq.conf"), conf).unwrap();
        std::fs::write(dir.path().join("enabled_plugins"), "[].\n").unwrap();
        let epmd_port = free_port();
        let epmd = Group::spawn(
            Command::new("epmd").args(["-port", &epmd_port.to_string()]),
            &dir.path().join("epmd.log"),
        );
        std::fs::write(dir.path().join("epmd_port"), epmd_port.to_string()).unwrap();
        let mut r = Rabbit {
            port: free_port(),
            dir,
            _epmd: epmd,
            process: Group(None),
        };
        r.start();
        r
    }

    pub(crate) fn url(&self) -> String {
        format!("amqp://guest:guest@127.0.0.1:{}/%2f", self.port)
    }
}

impl Broker for Rabbit {
    fn start(&mut self) {
        let d = self.dir.path();
        let epmd_port = std::fs::read_to_string(d.join("epmd_port")).unwrap();
        self.process = Group::spawn(
            Command::new("/usr/lib/rabbitmq/bin/rabbitmq-server")
                .env("HOME", d)
                .env("RABBITMQ_BASE", d)
                .env("RABBITMQ_MNESIA_BASE", d.join("mnesia"))
                .env("RABBITMQ_LOG_BASE", d.join("log"))
                .env("RABBITMQ_NODENAME", format!("hark{}@localhost", self.port))
                .env("RABBITMQ_NODE_IP_ADDRESS", "127.0.0.1")
                .env("RABBITMQ_NODE_PORT", self.port.to_string())
                .env("RABBITMQ_DIST_PORT", free_port().to_string())
                .env("ERL_EPMD_PORT", epmd_port.trim())
                .env("RABBITMQ_ENABLED_PLUGINS_FILE", d.join("enabled_plugins"))
                .env("RABBITMQ_CONFIG_FILE", d.join("rabbitmq"))
                .env("RABBITMQ_ADVANCED_CONFIG_FILE", d.join("advanced.config"))
                .env("RABBITMQ_PID_FILE", d.join("pid")),
            &d.join(format!("rabbit-{}.log", fastrand::u32(..))),
        );
        let url = self.url();
        let up = wait_for(Duration::from_secs(60), || {
            port_open(self.port)
                && rt()
                    .block_on(lapin::Connection::connect(
                        &url,
                        lapin::ConnectionProperties::default(),
                    ))
                    .is_ok()
        });
        assert!(up, "rabbitmq-server did not start");
    }

    fn stop(&mut self) {
        self.process.stop();
    }
}

/// Declares the topic exchange `hark` and a durable queue bound to `hark.#`.
pub(crate) fn declare(url: &str) {
    use lapin::options::{ExchangeDeclareOptions, QueueBindOptions, QueueDeclareOptions};
    use lapin::types::FieldTable;
    rt().block_on(async {
        let conn = lapin::Connection::connect(url, lapin::ConnectionProperties::default())
            .await
            .expect("connect");
        let ch = conn.create_channel().await.expect("channel");
        let durable = ExchangeDeclareOptions {
            durable: true,
            ..Default::default()
        };
        ch.exchange_declare(
            "hark".into(),
            lapin::ExchangeKind::Topic,
            durable,
            FieldTable::default(),
        )
        .await
        .expect("exchange");
        ch.queue_declare(
            "events".into(),
            QueueDeclareOptions::durable(),
            FieldTable::default(),
        )
        .await
        .expect("queue");
        ch.queue_bind(
            "events".into(),
            "hark".into(),
            "hark.#".into(),
            QueueBindOptions::default(),
            FieldTable::default(),
        )
        .await
        .expect("bind");
    });
}

/// Takes what is in the queue `events` (acknowledging it), added to `kept`; the
/// properties of each message too.
pub(crate) fn drain(url: &str, kept: &Mutex<Vec<(Value, lapin::BasicProperties)>>) {
    use lapin::options::BasicGetOptions;
    rt().block_on(async {
        let connect = lapin::Connection::connect(url, lapin::ConnectionProperties::default());
        let Ok(Ok(conn)) = tokio::time::timeout(Duration::from_secs(2), connect).await else {
            return;
        };
        let Ok(ch) = conn.create_channel().await else {
            return;
        };
        let take = BasicGetOptions { no_ack: true };
        while let Ok(Some(m)) = ch.basic_get("events".into(), take).await {
            if let Ok(v) = serde_json::from_slice(&m.delivery.data) {
                kept.lock()
                    .unwrap()
                    .push((v, m.delivery.properties.clone()));
            }
        }
        let _ = conn.close(200, "done".into()).await;
    });
}

#[test]
fn amqp_every_firing_arrives_persistent_with_its_key_through_an_outage_and_a_sigkill() {
    let mut rabbit = Rabbit::new();
    declare(&rabbit.url());
    let mut h = start_hark(&format!(
        "type = \"amqp\"\nurl = \"{}\"\nexchange = \"hark\"\nrouting_key = \"hark.{{{{ rule }}}}\"",
        rabbit.url()
    ));
    let kept = Arc::new(Mutex::new(Vec::new()));
    let (url, sink) = (rabbit.url(), Arc::clone(&kept));
    let received = move || {
        drain(&url, &sink);
        sink.lock()
            .unwrap()
            .iter()
            .map(|(v, _)| v.clone())
            .collect()
    };
    let counts = outage_and_sigkill(&mut h, &mut rabbit, &received);
    assert!(counts.values().all(|n| *n >= 1), "{counts:?}");
    for (body, props) in kept.lock().unwrap().iter() {
        assert_eq!(props.delivery_mode(), &Some(2), "not persistent: {body}");
        let id = props.message_id().as_ref().map(|s| s.as_str().to_string());
        assert!(id.is_some_and(|k| k.len() == 32), "{body}");
        assert_eq!(
            props.content_type().as_ref().map(|s| s.as_str()),
            Some("application/json")
        );
    }
}

// ---------------------------------------------------------------- sharing and isolation

/// The NATS server's count of hark's connections (its monitoring endpoint, /connz).
fn hark_connections(monitor: u16) -> usize {
    let Ok(mut s) = std::net::TcpStream::connect(("127.0.0.1", monitor)) else {
        return 0;
    };
    use std::io::{Read, Write};
    let _ = write!(s, "GET /connz HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n");
    let mut reply = String::new();
    let _ = s.read_to_string(&mut reply);
    let body = reply
        .split_once("\r\n\r\n")
        .map(|x| x.1)
        .unwrap_or_default();
    let v: Value = serde_json::from_str(body).unwrap_or_default();
    v["connections"]
        .as_array()
        .map(|cs| {
            cs.iter()
                .filter(|c| c["name"].as_str().is_some_and(|n| n.starts_with("hark/")))
                .count()
        })
        .unwrap_or(0)
}

#[test]
fn actions_naming_one_broker_share_one_connection_and_a_hung_broker_holds_back_only_its_own() {
    let port = free_port();
    let monitor = free_port();
    let dir = tempdir();
    let _nats = Group::spawn(
        Command::new("nats-server").args([
            "-a",
            "127.0.0.1",
            "-p",
            &port.to_string(),
            "-m",
            &monitor.to_string(),
        ]),
        &dir.path().join("nats.log"),
    );
    assert!(wait_for(Duration::from_secs(20), || port_open(port)));
    // A "broker" that accepts connections and never says a word.
    let hung = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let hung_port = hung.local_addr().unwrap().port();
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for c in hung.incoming().take(64) {
            held.push(c);
        }
    });
    let rt = rt();
    let client = rt
        .block_on(async_nats::connect(format!("nats://127.0.0.1:{port}")))
        .expect("connect");
    let mut sub = rt.block_on(client.subscribe("hark.>")).unwrap();
    rt.block_on(client.flush()).unwrap();

    let config = format!(
        r#"
[watch.drop]
type = "file"
paths = ["@DIR@/in"]
events = ["create"]
debounce = "0ms"

[rule.dropped]
watch = "drop"
then = ["one", "two", "stuck"]

[action.one]
type = "nats"
url = "nats://127.0.0.1:{port}"
subject = "hark.one"

[action.two]
type = "nats"
url = "nats://127.0.0.1:{port}"
subject = "hark.two"

[action.stuck]
type = "amqp"
url = "amqp://127.0.0.1:{hung_port}/%2f"
routing_key = "x"
timeout = "60s"
"#
    );
    let h = {
        let d = tempdir();
        std::fs::create_dir(d.path().join("in")).unwrap();
        start_in(d, &config)
    };
    for n in ["x1", "x2"] {
        drop_file(&h, n);
    }
    let mut subjects = Vec::new();
    rt.block_on(async {
        use futures_util::StreamExt as _;
        while subjects.len() < 4 {
            match tokio::time::timeout(Duration::from_secs(10), sub.next()).await {
                Ok(Some(m)) => subjects.push(m.subject.to_string()),
                _ => break,
            }
        }
    });
    subjects.sort();
    assert_eq!(
        subjects,
        ["hark.one", "hark.one", "hark.two", "hark.two"],
        "the hung broker held the others back; log:\n{}",
        h.log()
    );
    assert_eq!(
        hark_connections(monitor),
        1,
        "one connection for both actions"
    );
    let st = h.status();
    assert_eq!(
        st["outbox"]["pending"], 2,
        "the stuck action's messages wait: {st}"
    );
}
