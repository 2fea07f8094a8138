//! The chain a TLS endpoint presents: connect, speak the protocol's STARTTLS (or none),
//! shake hands accepting any certificate (what it is, not whether we trust it, is what
//! the watch reports: `chain_ok` and `days_left` say the rest), and read the chain.

use std::sync::Arc;
use std::time::Instant;

use rustls::pki_types::ServerName;
use serde_json::{Map, Value};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

use crate::config::{Starttls, TlsOptions};
use crate::watch::periodic::millis;

/// A protocol's reply line, at most (a server that sends more is not a mail server).
const MAX_LINE: usize = 4096;
/// Lines of a greeting or a capability list, at most.
const MAX_LINES: usize = 100;

pub async fn endpoint_fields(
    address: &str,
    starttls: Starttls,
    server_name: &str,
    timeout: std::time::Duration,
    now: i64,
) -> Map<String, Value> {
    let started = Instant::now();
    let mut f = Map::new();
    f.insert("address".into(), Value::from(address));
    f.insert("starttls".into(), Value::from(starttls.name()));
    let got = tokio::time::timeout(timeout, chain(address, starttls, server_name)).await;
    match got {
        Ok(Ok(chain)) => super::read::chain_fields(&mut f, &chain, now),
        Ok(Err(e)) => super::read::failed(&mut f, e),
        Err(_) => super::read::failed(
            &mut f,
            format!("timed out after {}", humantime::format_duration(timeout)),
        ),
    }
    f.insert("latency_ms".into(), Value::from(millis(started.elapsed())));
    f
}

async fn chain(
    address: &str,
    starttls: Starttls,
    server_name: &str,
) -> Result<Vec<rustls::pki_types::CertificateDer<'static>>, String> {
    let mut stream = TcpStream::connect(address)
        .await
        .map_err(|e| format!("connect: {e}"))?;
    negotiate(&mut stream, starttls, server_name).await?;
    let config = crate::tls::client_config(&TlsOptions {
        ca: None,
        verify: false,
    })?;
    let name = ServerName::try_from(server_name.to_string())
        .map_err(|e| format!("server name {server_name:?}: {e}"))?;
    let tls = tokio_rustls::TlsConnector::from(Arc::clone(&config))
        .connect(name, stream)
        .await
        .map_err(|e| format!("TLS handshake: {e}"))?;
    let (_, conn) = tls.get_ref();
    conn.peer_certificates()
        .map(|c| c.iter().map(|d| d.clone().into_owned()).collect())
        .ok_or_else(|| "the server sent no certificate".to_string())
}

/// The protocol's dialogue up to the point where TLS starts.
async fn negotiate(stream: &mut TcpStream, how: Starttls, domain: &str) -> Result<(), String> {
    let mut r = BufReader::new(stream);
    match how {
        Starttls::None => {}
        Starttls::Smtp => {
            reply(&mut r, |l| smtp_last(l, "220")).await?;
            send(&mut r, b"EHLO hark\r\n").await?;
            reply(&mut r, |l| smtp_last(l, "250")).await?;
            send(&mut r, b"STARTTLS\r\n").await?;
            reply(&mut r, |l| smtp_last(l, "220")).await?;
        }
        Starttls::Imap => {
            reply(&mut r, |l| Ok(l.starts_with("* OK"))).await?;
            send(&mut r, b"a1 STARTTLS\r\n").await?;
            reply(&mut r, |l| tagged(l, "a1")).await?;
        }
        Starttls::Pop3 => {
            reply(&mut r, |l| ok_or(l, "+OK")).await?;
            send(&mut r, b"STLS\r\n").await?;
            reply(&mut r, |l| ok_or(l, "+OK")).await?;
        }
        Starttls::Xmpp => {
            let open = format!(
                "<?xml version='1.0'?><stream:stream to='{domain}' xmlns='jabber:client' \
                 xmlns:stream='http://etherx.jabber.org/streams' version='1.0'>"
            );
            send(&mut r, open.as_bytes()).await?;
            read_until(&mut r, b"</stream:features>").await?;
            send(
                &mut r,
                b"<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>",
            )
            .await?;
            let answer = read_until(&mut r, b"/>").await?;
            if !answer.contains("<proceed") {
                return Err(format!("XMPP server refused STARTTLS: {}", short(&answer)));
            }
        }
        Starttls::Postgres => {
            // SSLRequest: length 8, code 80877103; the answer is one byte.
            send(&mut r, &[0, 0, 0, 8, 0x04, 0xd2, 0x16, 0x2f]).await?;
            let b = r.read_u8().await.map_err(|e| format!("read: {e}"))?;
            if b != b'S' {
                return Err("PostgreSQL server does not offer TLS (answered N)".into());
            }
        }
    }
    if !r.buffer().is_empty() {
        return Err("the server sent more before TLS began".into());
    }
    Ok(())
}

async fn send(r: &mut BufReader<&mut TcpStream>, bytes: &[u8]) -> Result<(), String> {
    r.get_mut()
        .write_all(bytes)
        .await
        .map_err(|e| format!("send: {e}"))
}

/// Reads lines until `done` says one ends the reply (`Ok(true)`) or is a refusal (`Err`).
async fn reply(
    r: &mut BufReader<&mut TcpStream>,
    done: impl Fn(&str) -> Result<bool, String>,
) -> Result<(), String> {
    for _ in 0..MAX_LINES {
        let mut line = Vec::new();
        let n = (&mut *r)
            .take(MAX_LINE as u64)
            .read_until(b'\n', &mut line)
            .await
            .map_err(|e| format!("read: {e}"))?;
        if n == 0 {
            return Err("the server closed the connection".into());
        }
        let line = String::from_utf8_lossy(&line);
        if done(line.trim_end())? {
            return Ok(());
        }
    }
    Err("the server's reply did not end".into())
}

/// SMTP: the last line of a reply has a space after its code; a code other than the one
/// wanted is a refusal.
fn smtp_last(line: &str, want: &str) -> Result<bool, String> {
    if !line.starts_with(want) {
        return Err(format!("SMTP server answered {}", short(line)));
    }
    Ok(line.as_bytes().get(3) != Some(&b'-'))
}

fn tagged(line: &str, tag: &str) -> Result<bool, String> {
    match line.strip_prefix(tag) {
        Some(rest) if rest.trim_start().starts_with("OK") => Ok(true),
        Some(_) => Err(format!("IMAP server answered {}", short(line))),
        None => Ok(false),
    }
}

fn ok_or(line: &str, want: &str) -> Result<bool, String> {
    if line.starts_with(want) {
        Ok(true)
    } else {
        Err(format!("server answered {}", short(line)))
    }
}

async fn read_until(r: &mut BufReader<&mut TcpStream>, end: &[u8]) -> Result<String, String> {
    let mut got = Vec::new();
    while !got.windows(end.len()).any(|w| w == end) {
        if got.len() > MAX_LINE * 4 {
            return Err("the server's answer did not end".into());
        }
        let b = r.read_u8().await.map_err(|e| format!("read: {e}"))?;
        got.push(b);
    }
    Ok(String::from_utf8_lossy(&got).into_owned())
}

fn short(s: &str) -> String {
    format!("{:?}", crate::watch::printable(s, 200))
}
