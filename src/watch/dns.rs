//! `dns` watches: one question (a name and a record type) asked of each server in turn
//! until one answers: over UDP, again over TCP when the answer came truncated. The
//! messages are hickory's; what the answer holds becomes typed fields, capped.

use std::net::SocketAddr;
use std::sync::Mutex;
use std::time::Instant;

use hickory_proto::op::{Message, MessageType, OpCode, Query};
use hickory_proto::rr::{RData, Record};
use serde_json::{Map, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, UdpSocket};

use super::periodic::{self, millis, PeriodicHandle};
use super::printable;
use crate::config::DnsWatch;

/// Answers reported as fields, at most (`answers_count` has them all).
pub const MAX_ANSWERS: usize = 100;
/// Characters of one answer's `data`, at most.
const MAX_DATA: usize = 1_000;

/// A watch's config and what its last answer held (for `changed`).
struct State {
    config: DnsWatch,
    last: Mutex<Option<Vec<String>>>,
}

pub fn start(to: super::Emitter, config: DnsWatch, clock: super::clock::Clock) -> PeriodicHandle {
    let every = config.every;
    let state = State {
        config,
        last: Mutex::new(None),
    };
    periodic::spawn_checks(
        to,
        periodic::Schedule { every, clock },
        state,
        |s, _| async move {
            let mut fields = check(&s.config).await;
            let now = answer_set(&fields);
            let mut last = super::lock(&s.last);
            let changed = matches!((&*last, &now), (Some(a), Some(b)) if a != b);
            fields.insert("changed".into(), Value::Bool(changed));
            if now.is_some() {
                *last = now;
            }
            fields
        },
    )
}

/// The answers' data, sorted, when a server answered: what `changed` compares.
fn answer_set(fields: &Map<String, Value>) -> Option<Vec<String>> {
    if fields.get("rcode").and_then(Value::as_str) == Some("") {
        return None;
    }
    let mut set: Vec<String> = fields
        .get("answers")?
        .as_array()?
        .iter()
        .filter_map(|a| a.get("data").and_then(Value::as_str).map(str::to_string))
        .collect();
    set.sort();
    Some(set)
}

/// The nameservers of /etc/resolv.conf, as glibc reads them (127.0.0.1 when none).
fn system_servers() -> Vec<SocketAddr> {
    let text = std::fs::read_to_string("/etc/resolv.conf").unwrap_or_default();
    let mut out: Vec<SocketAddr> = text
        .lines()
        .filter_map(|l| l.trim().strip_prefix("nameserver"))
        .filter_map(|rest| {
            let ip = rest.trim().split('%').next()?;
            ip.parse().ok().map(|ip| SocketAddr::new(ip, 53))
        })
        .take(3)
        .collect();
    if out.is_empty() {
        out.push(SocketAddr::from(([127, 0, 0, 1], 53)));
    }
    out
}

/// Asks each server in turn until one answers (whatever its rcode: a SERVFAIL is the
/// answer a watch is there to see); the fields of that answer, or of the failures.
pub async fn check(config: &DnsWatch) -> Map<String, Value> {
    let servers = if config.servers.is_empty() {
        system_servers()
    } else {
        config.servers.clone()
    };
    let started = Instant::now();
    let mut errors = Vec::new();
    let mut f = Map::new();
    f.insert("name".into(), Value::from(config.name.to_ascii()));
    f.insert("record".into(), Value::from(config.record.to_string()));
    for server in &servers {
        match ask(config, *server).await {
            Ok((answer, tcp)) => {
                answer_fields(&mut f, &answer);
                f.insert("server".into(), Value::from(server.to_string()));
                f.insert("tcp".into(), Value::Bool(tcp));
                f.insert("error".into(), Value::from(errors.join("; ")));
                f.insert("latency_ms".into(), Value::from(millis(started.elapsed())));
                return f;
            }
            Err(e) => errors.push(format!("{server}: {e}")),
        }
    }
    f.insert("rcode".into(), Value::from(""));
    f.insert("answers".into(), Value::Array(Vec::new()));
    f.insert("answers_count".into(), Value::from(0));
    f.insert("ttl_min".into(), Value::from(0));
    f.insert("server".into(), Value::from(""));
    f.insert("tcp".into(), Value::Bool(false));
    f.insert("error".into(), Value::from(errors.join("; ")));
    f.insert("latency_ms".into(), Value::from(millis(started.elapsed())));
    f
}

/// One server: UDP, then TCP if the answer is truncated. The answer and whether it came
/// over TCP.
async fn ask(config: &DnsWatch, server: SocketAddr) -> Result<(Message, bool), String> {
    let id = fastrand::u16(..);
    let mut query = Message::new(id, MessageType::Query, OpCode::Query);
    query.metadata.recursion_desired = true;
    query.add_query(Query::query(config.name.clone(), config.record));
    let bytes = query.to_vec().map_err(|e| format!("cannot encode: {e}"))?;
    let deadline = tokio::time::Instant::now() + config.timeout;
    let within = |what: &'static str| {
        let timeout = config.timeout;
        move |_| {
            format!(
                "no answer {what} within {}",
                humantime::format_duration(timeout)
            )
        }
    };
    let answer = tokio::time::timeout_at(deadline, udp(&bytes, id, server))
        .await
        .map_err(within("over UDP"))??;
    if !answer.metadata.truncation {
        return Ok((answer, false));
    }
    let deadline = tokio::time::Instant::now() + config.timeout;
    let answer = tokio::time::timeout_at(deadline, tcp(&bytes, id, server))
        .await
        .map_err(within("over TCP"))??;
    Ok((answer, true))
}

async fn udp(query: &[u8], id: u16, server: SocketAddr) -> Result<Message, String> {
    let local: SocketAddr = if server.is_ipv4() {
        SocketAddr::from(([0, 0, 0, 0], 0))
    } else {
        SocketAddr::from(([0u16; 8], 0))
    };
    let socket = UdpSocket::bind(local)
        .await
        .map_err(|e| format!("bind: {e}"))?;
    socket
        .connect(server)
        .await
        .map_err(|e| format!("connect: {e}"))?;
    socket.send(query).await.map_err(|e| format!("send: {e}"))?;
    let mut buf = vec![0u8; 65_535];
    loop {
        let n = socket
            .recv(&mut buf)
            .await
            .map_err(|e| format!("receive: {e}"))?;
        // A stray or late datagram (another id) is not the answer: wait on.
        if let Ok(m) = Message::from_vec(&buf[..n]) {
            if m.metadata.id == id && m.metadata.message_type == MessageType::Response {
                return Ok(m);
            }
        }
    }
}

async fn tcp(query: &[u8], id: u16, server: SocketAddr) -> Result<Message, String> {
    let mut stream = TcpStream::connect(server)
        .await
        .map_err(|e| format!("connect over TCP: {e}"))?;
    let len = u16::try_from(query.len()).map_err(|_| "query too long".to_string())?;
    let mut out = Vec::with_capacity(query.len() + 2);
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(query);
    stream
        .write_all(&out)
        .await
        .map_err(|e| format!("send over TCP: {e}"))?;
    let mut len = [0u8; 2];
    stream
        .read_exact(&mut len)
        .await
        .map_err(|e| format!("receive over TCP: {e}"))?;
    let mut buf = vec![0u8; usize::from(u16::from_be_bytes(len))];
    stream
        .read_exact(&mut buf)
        .await
        .map_err(|e| format!("receive over TCP: {e}"))?;
    let m = Message::from_vec(&buf).map_err(|e| format!("a malformed answer over TCP: {e}"))?;
    if m.metadata.id != id {
        return Err("an answer over TCP to another question".into());
    }
    Ok(m)
}

/// `rcode`, `answers` (the first `MAX_ANSWERS`), `answers_count`, `ttl_min`, `authoritative`.
pub fn answer_fields(f: &mut Map<String, Value>, answer: &Message) {
    let rcode = answer.metadata.response_code;
    f.insert(
        "rcode".into(),
        Value::from(format!("{rcode:?}").to_ascii_uppercase()),
    );
    f.insert(
        "authoritative".into(),
        Value::Bool(answer.metadata.authoritative),
    );
    let list: Vec<Value> = answer
        .answers
        .iter()
        .take(MAX_ANSWERS)
        .map(record)
        .collect();
    f.insert("answers".into(), Value::Array(list));
    f.insert("answers_count".into(), Value::from(answer.answers.len()));
    let ttl_min = answer.answers.iter().map(|r| r.ttl).min().unwrap_or(0);
    f.insert("ttl_min".into(), Value::from(ttl_min));
}

/// One record: `name`, `type`, `ttl`, `data` (as a zone file writes it, escaped and cut),
/// and the parts of MX, SOA and SRV records.
fn record(r: &Record) -> Value {
    let mut m = Map::new();
    m.insert(
        "name".into(),
        Value::from(printable(&r.name.to_string(), MAX_DATA)),
    );
    m.insert("type".into(), Value::from(r.record_type().to_string()));
    m.insert("ttl".into(), Value::from(r.ttl));
    m.insert(
        "data".into(),
        Value::from(printable(&r.data.to_string(), MAX_DATA)),
    );
    match &r.data {
        RData::MX(mx) => {
            m.insert("preference".into(), Value::from(mx.preference));
            m.insert(
                "exchange".into(),
                Value::from(printable(&mx.exchange.to_string(), MAX_DATA)),
            );
        }
        RData::SOA(soa) => {
            m.insert("serial".into(), Value::from(soa.serial));
            m.insert(
                "mname".into(),
                Value::from(printable(&soa.mname.to_string(), MAX_DATA)),
            );
            m.insert(
                "rname".into(),
                Value::from(printable(&soa.rname.to_string(), MAX_DATA)),
            );
        }
        RData::SRV(srv) => {
            m.insert("priority".into(), Value::from(srv.priority));
            m.insert("weight".into(), Value::from(srv.weight));
            m.insert("port".into(), Value::from(srv.port));
            m.insert(
                "target".into(),
                Value::from(printable(&srv.target.to_string(), MAX_DATA)),
            );
        }
        _ => {}
    }
    Value::Object(m)
}

#[cfg(test)]
mod tests {
    use super::*;
    use hickory_proto::rr::rdata::{A, TXT};
    use hickory_proto::rr::Name;

    #[test]
    fn ten_thousand_answers_are_capped_and_binary_labels_escaped() {
        let mut m = Message::new(7, MessageType::Response, OpCode::Query);
        let name = Name::from_ascii("many.test.").unwrap();
        for i in 0..10_000u32 {
            m.add_answer(Record::from_rdata(
                name.clone(),
                300 + i,
                RData::A(A::from(std::net::Ipv4Addr::from(i))),
            ));
        }
        let bin = Name::from_labels(vec![vec![1u8; 63], b"test".to_vec()]).unwrap();
        m.answers.insert(
            0,
            Record::from_rdata(bin, 5, RData::TXT(TXT::new(vec!["a\u{7}b".into()]))),
        );
        // Over 64 KiB: no message on the wire holds them all, but a field never does.
        let mut f = Map::new();
        answer_fields(&mut f, &m);
        assert_eq!(f["answers_count"], 10_001);
        assert_eq!(f["answers"].as_array().map(Vec::len), Some(MAX_ANSWERS));
        assert_eq!(f["ttl_min"], 5);
        let first = &f["answers"][0];
        let name = first["name"].as_str().unwrap_or_default();
        assert!(!name.chars().any(char::is_control), "{name:?}");
        assert!(!first["data"]
            .as_str()
            .unwrap_or("\u{7}")
            .chars()
            .any(char::is_control));
        assert_eq!(f["answers"][1]["data"], "0.0.0.0");
        assert_eq!(f["rcode"], "NOERROR");
        // What crosses the wire and is read back is capped the same way.
        let back = Message::from_vec(&m.to_vec().unwrap()).unwrap();
        let mut f = Map::new();
        answer_fields(&mut f, &back);
        assert!(f["answers_count"].as_u64().unwrap() > 1_000);
        assert_eq!(f["answers"].as_array().map(Vec::len), Some(MAX_ANSWERS));
    }
}
