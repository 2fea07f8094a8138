//! rabbitmq-server with its own epmd, node name and storage; a queue to read from.

use std::process::Command;
use std::sync::Mutex;
use std::time::Duration;

use serde_json::Value;

use super::group::{Broker, Group};
use super::{free_port, port_open, rt};
use crate::util::{tempdir, wait_for};

pub struct Rabbit {
    process: Group,
    _epmd: Group,
    pub port: u16,
    dir: tempfile::TempDir,
    /// The exchange and queue are declared again at each start (`Rabbit::declare`).
    declared: bool,
}

impl Rabbit {
    pub fn new() -> Rabbit {
        Rabbit::with(tempdir(), "")
    }

    /// With `conf` as its rabbitmq.conf, in `dir`.
    pub fn with(dir: tempfile::TempDir, conf: &str) -> Rabbit {
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
            declared: false,
        };
        r.start();
        r
    }

    pub fn url(&self) -> String {
        format!("amqp://guest:guest@127.0.0.1:{}/%2f", self.port)
    }

    /// Declares the exchange and queue (`declare`), and again after each restart, as a
    /// consumer would: a declaration made just before the broker is SIGKILLed may not be
    /// on its disk yet (seen once under load: NO_ROUTE for a minute after the restart),
    /// and what the tests check is hark's deliveries, not the broker's own durability.
    pub fn declare(&mut self) {
        declare(&self.url());
        self.declared = true;
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
        if self.declared {
            declare(&url);
        }
    }

    fn stop(&mut self) {
        self.process.stop();
    }
}

/// Declares the topic exchange `hark` and a durable queue bound to `hark.#`.
pub fn declare(url: &str) {
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
pub fn drain(url: &str, kept: &Mutex<Vec<(Value, lapin::BasicProperties)>>) {
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
