//! Publishing to message brokers: one long-lived connection per broker, shared by every
//! action that names the same URL, opened at the first publish and opened again at the
//! next attempt after it breaks (the outbox's backoff paces the attempts). A broker that
//! is down holds back only the deliveries to it.

mod amqp;
mod mqtt;
mod nats;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::render::{Failed, Made, Rendering};
use crate::config::{BrokerAction, Protocol};

/// One message, rendered.
pub struct Message<'a> {
    /// The routing key, topic or subject.
    pub route: &'a str,
    pub body: &'a [u8],
    pub content_type: &'a str,
    /// The idempotency key: AMQP `message_id`, `Nats-Msg-Id`.
    pub key: &'a str,
}

/// Why a publish was not confirmed; each is tried again later.
pub type Refused = String;

enum Conn {
    Amqp(amqp::Conn),
    Mqtt(mqtt::Conn),
    Nats(nats::Conn),
}

/// The connections, by protocol and URL.
#[derive(Default)]
pub struct Brokers {
    conns: Mutex<HashMap<(&'static str, String), Arc<Conn>>>,
}

impl Brokers {
    /// Publishes `msgs` in order as `action` says, and waits, at most its timeout, for
    /// the broker to confirm them: one result per message, in order.
    pub async fn publish_all(
        &self,
        action: &BrokerAction,
        msgs: &[Message<'_>],
    ) -> Vec<Result<(), Refused>> {
        let url = action.url.expose().trim().to_string();
        let conn = {
            let mut conns = self.conns.lock().unwrap_or_else(|p| p.into_inner());
            // Two actions naming one broker with other TLS settings get a connection each.
            let key = (
                action.protocol.type_name(),
                format!(
                    "{url}\0{:?}\0{}",
                    action.tls.ca.as_ref().map(|c| &c.path),
                    action.tls.verify
                ),
            );
            Arc::clone(conns.entry(key).or_insert_with(|| {
                Arc::new(match action.protocol {
                    Protocol::Amqp { .. } => Conn::Amqp(amqp::Conn::new(url, action.tls.clone())),
                    Protocol::Mqtt { .. } => Conn::Mqtt(mqtt::Conn::new(url, action.tls.clone())),
                    Protocol::Nats { .. } => Conn::Nats(nats::Conn::new(url, action.tls.clone())),
                })
            }))
        };
        let publish = async {
            match (&*conn, &action.protocol) {
                (Conn::Amqp(c), Protocol::Amqp { exchange }) => c.publish_all(exchange, msgs).await,
                (Conn::Mqtt(c), Protocol::Mqtt { retain }) => c.publish_all(*retain, msgs).await,
                (Conn::Nats(c), Protocol::Nats { jetstream }) => {
                    c.publish_all(*jetstream, msgs).await
                }
                _ => all_failed(
                    msgs.len(),
                    "internal: a connection of another protocol".into(),
                ),
            }
        };
        match tokio::time::timeout(action.timeout, publish).await {
            Ok(r) => r,
            Err(_) => all_failed(
                msgs.len(),
                format!(
                    "no confirmation from the broker within {}",
                    humantime::format_duration(action.timeout)
                ),
            ),
        }
    }
}

/// The same failure for `n` messages.
fn all_failed(n: usize, why: Refused) -> Vec<Result<(), Refused>> {
    vec![Err(why); n]
}

/// The results of a batch whose messages after the first `done` were not attempted.
fn rest_not_sent(mut done: Vec<Result<(), Refused>>, n: usize) -> Vec<Result<(), Refused>> {
    done.resize(
        n,
        Err("not published: an earlier message of the batch failed".to_string()),
    );
    done
}

/// How long a connection attempt may take, at most.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// Host and port of a URL, and its user and password (percent-decoded).
struct Endpoint {
    host: String,
    port: u16,
    user: Option<(String, String)>,
}

fn endpoint(url: &str, default_port: u16) -> Result<Endpoint, Refused> {
    let u = reqwest::Url::parse(url).map_err(|_| "the broker URL does not parse".to_string())?;
    let host = u
        .host_str()
        .ok_or_else(|| "the broker URL has no host".to_string())?
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_string();
    let user = (!u.username().is_empty()).then(|| {
        (
            percent_decode(u.username()),
            percent_decode(u.password().unwrap_or_default()),
        )
    });
    Ok(Endpoint {
        host,
        port: u.port().unwrap_or(default_port),
        user,
    })
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = bytes
            .get(i + 1..i + 3)
            .and_then(|h| std::str::from_utf8(h).ok())
            .and_then(|h| u8::from_str_radix(h, 16).ok());
        match (bytes[i], hex) {
            (b'%', Some(b)) => {
                out.push(b);
                i += 3;
            }
            (b, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// A broker message: its routing key (topic, subject), body and content type.
fn render(b: &BrokerAction, r: &Rendering<'_>) -> Result<(String, String, String), Failed> {
    let route = r.text(&b.route, "its message")?;
    let (body, content_type) = super::payload::render(&b.payload, r.firing, r.ctx, r.templates)
        .map_err(Failed::of("its message"))?;
    Ok((route, body, content_type))
}

/// What a firing makes of the action: one message.
pub(super) fn make(b: &BrokerAction, r: &Rendering<'_>) -> Result<Made, Failed> {
    let (route, body, content_type) = render(b, r)?;
    let delivery = super::outbox::Delivery {
        route: Some(route),
        ..r.delivery(body, &content_type)
    };
    Ok(Made::Deliveries(vec![delivery]))
}

/// What it would publish, for `hark test`.
pub(super) fn preview(b: &BrokerAction, r: &Rendering<'_>) -> Result<String, Failed> {
    let (route, body, content_type) = render(b, r)?;
    Ok(format!(
        "{} `{}`: publish to {route:?} ({content_type}) {body}",
        b.protocol.type_name(),
        r.name
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_endpoint_has_its_host_port_and_decoded_credentials() {
        let e = endpoint("mqtt://us%40r:p%3Ass@127.0.0.1:1884", 1883).unwrap();
        assert_eq!((e.host.as_str(), e.port), ("127.0.0.1", 1884));
        assert_eq!(e.user, Some(("us@r".into(), "p:ss".into())));
        let e = endpoint("mqtt://[::1]", 1883).unwrap();
        assert_eq!((e.host.as_str(), e.port, e.user), ("::1", 1883, None));
        assert_eq!(percent_decode("a%2"), "a%2");
        assert_eq!(percent_decode("%é"), "%é");
    }
}
