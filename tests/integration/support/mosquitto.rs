//! mosquitto with persistence, and a subscriber with a persistent session.

use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::Value;

use super::group::{Broker, Group};
use super::{free_port, port_open, rt};
use crate::util::{tempdir, wait_for};

pub struct Mosquitto {
    process: Group,
    pub port: u16,
    dir: tempfile::TempDir,
}

impl Mosquitto {
    pub fn new() -> Mosquitto {
        Mosquitto::with(tempdir(), "")
    }

    /// With `listeners` (more of mosquitto.conf) after the plain one, in `dir`.
    pub fn with(dir: tempfile::TempDir, listeners: &str) -> Mosquitto {
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

    pub fn url(&self) -> String {
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
pub fn mqtt_subscriber(
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
