//! `tcp` watches: can a connection be opened, and how fast.

use std::time::Instant;

use serde_json::{Map, Value};
use tokio::net::TcpStream;

use super::periodic::{self, millis, PeriodicHandle};
use crate::config::TcpWatch;

pub fn start(to: super::Emitter, config: TcpWatch, clock: super::clock::Clock) -> PeriodicHandle {
    let every = config.every;
    periodic::spawn_checks(
        to,
        periodic::Schedule { every, clock },
        config,
        |c, _| async move { check(&c).await },
    )
}

/// Connects (resolving the host name first, if it is one) and closes at once.
pub async fn check(config: &TcpWatch) -> Map<String, Value> {
    let started = Instant::now();
    let result = tokio::time::timeout(config.timeout, TcpStream::connect(&config.address)).await;
    let latency = started.elapsed();
    let (connected, error) = match result {
        Ok(Ok(_stream)) => (true, String::new()),
        Ok(Err(e)) => (false, format!("connect: {e}")),
        Err(_) => (
            false,
            format!(
                "timed out after {}",
                humantime::format_duration(config.timeout)
            ),
        ),
    };
    let mut f = Map::new();
    f.insert("address".into(), Value::from(config.address.as_str()));
    f.insert("connected".into(), Value::Bool(connected));
    f.insert("error".into(), Value::from(error));
    f.insert("latency_ms".into(), Value::from(millis(latency)));
    f
}
