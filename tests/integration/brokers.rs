//! The `amqp`, `mqtt` and `nats` actions against the real brokers of Debian's packages
//! (rabbitmq-server, mosquitto, nats-server; `.ci/run` installs them), started here on
//! free loopback ports and stopped by their process group: a firing arrives with its
//! payload; firings made while the broker is down arrive once it is back; firings pending
//! when hark is SIGKILLed arrive after its restart.

use std::collections::BTreeMap;
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::Value;

pub(crate) use crate::support::group::{Broker, Group};
pub(crate) use crate::support::mosquitto::{mqtt_subscriber, Mosquitto};
use crate::support::nats::Nats;
pub(crate) use crate::support::rabbitmq::{declare, drain, Rabbit};
pub(crate) use crate::support::{free_port, port_open, rt};
use crate::util::*;

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

#[test]
fn amqp_every_firing_arrives_persistent_with_its_key_through_an_outage_and_a_sigkill() {
    let mut rabbit = Rabbit::new();
    rabbit.declare();
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
    // A message received is settled in the store a moment later: waited for, not raced.
    wait_for(Duration::from_secs(5), || {
        h.status()["outbox"]["pending"] == 2
    });
    let st = h.status();
    assert_eq!(
        st["outbox"]["pending"], 2,
        "the stuck action's messages wait: {st}"
    );
}
