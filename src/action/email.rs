//! The email action: one message to an SMTP server (lettre, rustls), an attempt of an
//! outbox delivery. The message is accepted once the server answered 250 to it; a 4xx
//! answer, a connection or TLS failure and a timeout are tried again, a 5xx is a failure
//! for good. Every attempt sends the same message: its `Message-ID` is built from the
//! delivery's idempotency key and its `Date` is when the delivery was accepted.

use std::time::SystemTime;

use lettre::message::header::{ContentType, Header, HeaderName, HeaderValue};
use lettre::message::Mailbox;
use lettre::transport::smtp::authentication::Credentials;
use lettre::transport::smtp::client::{Certificate, Tls, TlsParameters};
use lettre::transport::smtp::extension::ClientId;
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};

use super::render::{Failed, Made, Rendering};
use crate::config::{EmailAction, Security};

/// Why a message was not accepted.
#[derive(Debug, PartialEq, Eq)]
pub enum Refused {
    /// Tried again after the backoff.
    Retry(String),
    /// Failed for good: kept in the outbox, visible in `hark status`.
    Failed(String),
}

/// One message, as the outbox keeps it.
pub struct Mail<'a> {
    /// The idempotency key.
    pub key: &'a str,
    pub subject: &'a str,
    pub body: &'a str,
    pub accepted: SystemTime,
}

/// A subject on one line: CR, LF and other control characters become spaces, so no value
/// can end the header and start another.
pub fn one_line(s: &str) -> String {
    let line: String = s
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    line.trim().to_string()
}

/// The message's `Message-ID`: the idempotency key at the sender's domain.
pub fn message_id(key: &str, from: &Mailbox) -> String {
    format!("<hark.{key}@{}>", from.email.domain())
}

/// A subject with what a mail client would decode as an encoded word (`=?utf-8?q?…?=`),
/// which lettre sends as is when it is ASCII: sent encoded as a whole (RFC 2047 base64
/// words), so the client shows the text a field held, not what it decodes to.
#[derive(Clone)]
struct LiteralSubject(String);

impl Header for LiteralSubject {
    fn name() -> HeaderName {
        HeaderName::new_from_ascii_str("Subject")
    }

    fn parse(s: &str) -> Result<Self, Box<dyn std::error::Error + Send + Sync>> {
        Ok(LiteralSubject(s.to_string()))
    }

    fn display(&self) -> HeaderValue {
        HeaderValue::dangerous_new_pre_encoded(Self::name(), self.0.clone(), encoded_words(&self.0))
    }
}

/// `s` as RFC 2047 base64 words of at most 75 characters, one a folded line.
fn encoded_words(s: &str) -> String {
    use base64::Engine;
    let mut words = Vec::new();
    let mut rest = s;
    while !rest.is_empty() {
        // 39 bytes are 52 base64 characters; with `=?utf-8?b?` and `?=`, 64: a line with
        // `Subject: ` in front stays under 78.
        let mut cut = rest.len().min(39);
        while !rest.is_char_boundary(cut) {
            cut -= 1;
        }
        let (piece, tail) = rest.split_at(cut);
        words.push(format!(
            "=?utf-8?b?{}?=",
            base64::engine::general_purpose::STANDARD.encode(piece)
        ));
        rest = tail;
    }
    words.join("\r\n ")
}

/// A body's line breaks as SMTP requires: a bare CR (RFC 5321 forbids it) becomes a line
/// break like a bare LF, which lettre sends as CRLF.
fn normal_lines(body: &str) -> String {
    body.replace("\r\n", "\n").replace('\r', "\n")
}

/// The message as it goes on the wire.
pub fn message(action: &EmailAction, mail: &Mail<'_>) -> Result<Message, String> {
    let subject = one_line(mail.subject);
    let mut builder = Message::builder().from(action.from.clone());
    builder = if subject.contains("=?") {
        builder.header(LiteralSubject(subject))
    } else {
        builder.subject(subject)
    };
    let mut builder = builder
        .message_id(Some(message_id(mail.key, &action.from)))
        .date(mail.accepted)
        .user_agent(concat!("hark/", env!("CARGO_PKG_VERSION")).to_string())
        .header(ContentType::TEXT_PLAIN);
    for to in &action.to {
        builder = builder.to(to.clone());
    }
    builder
        .body(normal_lines(mail.body))
        .map_err(|e| format!("cannot build the message: {e}"))
}

/// One attempt: connects, sends, and says what the server answered.
pub async fn send(action: &EmailAction, mail: &Mail<'_>) -> Result<(), Refused> {
    let message = message(action, mail).map_err(Refused::Failed)?;
    let s = &action.server;
    let tls = match s.security {
        Security::Plain => Tls::None,
        Security::StartTls => Tls::Required(tls_parameters(action)?),
        Security::Implicit => Tls::Wrapper(tls_parameters(action)?),
    };
    let mut builder = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(s.host.as_str())
        .port(s.port)
        .tls(tls)
        .timeout(Some(action.timeout))
        .hello_name(ClientId::Domain(crate::config::local_hostname()));
    if let (Some(user), Some(password)) = (&action.username, &action.password) {
        builder = builder.credentials(Credentials::new(
            user.expose().to_string(),
            password.expose().to_string(),
        ));
    }
    let transport = builder.build();
    let sent = tokio::time::timeout(action.timeout, transport.send(message)).await;
    let server = format!("{}:{}", s.host, s.port);
    match sent {
        Ok(Ok(_)) => Ok(()),
        Ok(Err(e)) => Err(classify(&e, &server, action)),
        Err(_) => Err(Refused::Retry(format!(
            "no answer from the SMTP server {server} within {}",
            humantime::format_duration(action.timeout)
        ))),
    }
}

fn tls_parameters(action: &EmailAction) -> Result<TlsParameters, Refused> {
    let mut b = TlsParameters::builder(action.server.host.clone());
    if let Some(ca) = &action.tls.ca {
        b = b.certificate_store(lettre::transport::smtp::client::CertificateStore::None);
        for der in ca.certs.iter() {
            let cert = Certificate::from_der(der.clone())
                .map_err(|e| Refused::Failed(format!("`ca` {}: {e}", ca.path.display())))?;
            b = b.add_root_certificate(cert);
        }
    }
    if !action.tls.verify {
        b = b.dangerous_accept_invalid_certs(true);
    }
    b.build_rustls()
        .map_err(|e| Refused::Failed(format!("TLS settings: {e}")))
}

/// A 5xx is for good; a 4xx, and anything on the way (connection, TLS, timeout), is
/// tried again.
fn classify(e: &lettre::transport::smtp::Error, server: &str, action: &EmailAction) -> Refused {
    let text = error_text(e);
    if e.is_permanent() {
        Refused::Failed(format!(
            "the SMTP server {server} refused the message: {text}"
        ))
    } else if e.is_transient() {
        Refused::Retry(format!(
            "the SMTP server {server} deferred the message: {text}"
        ))
    } else if e.is_tls() || text.contains("certificate") {
        // A certificate refused in the handshake comes as a connection error.
        let trusted = match &action.tls.ca {
            Some(ca) => format!("the certificates of `ca` {}", ca.path.display()),
            None => "the system's roots".to_string(),
        };
        Refused::Retry(format!(
            "TLS with the SMTP server {server} failed (its certificate checked against {trusted}): {text}"
        ))
    } else {
        Refused::Retry(format!("SMTP server {server}: {text}"))
    }
}

/// The error and its causes, one after another.
fn error_text(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        let s = c.to_string();
        if !text.contains(&s) {
            text.push_str(": ");
            text.push_str(&s);
        }
        cause = c.source();
    }
    text
}

/// An email's subject (on one line) and body.
fn render(e: &EmailAction, r: &Rendering<'_>) -> Result<(String, String), Failed> {
    let subject = one_line(&r.text(&e.subject, "its message")?);
    let body = r.text(&e.body, "its message")?;
    Ok((subject, body))
}

/// What a firing makes of the action: one delivery.
pub(super) fn make(e: &EmailAction, r: &Rendering<'_>) -> Result<Made, Failed> {
    let (subject, body) = render(e, r)?;
    let delivery = super::outbox::Delivery {
        subject: Some(subject),
        ..r.delivery(body, "text/plain")
    };
    Ok(Made::Deliveries(vec![delivery]))
}

/// What it would send, for `hark test`.
pub(super) fn preview(e: &EmailAction, r: &Rendering<'_>) -> Result<String, Failed> {
    let (subject, body) = render(e, r)?;
    let to: Vec<String> = e.to.iter().map(ToString::to_string).collect();
    Ok(format!(
        "email `{}`: to {} via {}:{}, subject {subject:?}\n{body}",
        r.name,
        to.join(", "),
        e.server.host,
        e.server.port
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn action() -> EmailAction {
        EmailAction {
            server: crate::config::SmtpServer {
                host: "127.0.0.1".into(),
                port: 25,
                security: Security::Plain,
            },
            username: None,
            password: None,
            from: "hark <hark@example.org>".parse().unwrap(),
            to: vec!["ops@example.org".parse().unwrap()],
            subject: String::new(),
            body: String::new(),
            tls: Default::default(),
            timeout: std::time::Duration::from_secs(5),
            retry: None,
        }
    }

    fn formatted(subject: &str, body: &str) -> String {
        let mail = Mail {
            key: "0123abcd",
            subject,
            body,
            accepted: SystemTime::UNIX_EPOCH,
        };
        String::from_utf8(message(&action(), &mail).unwrap().formatted()).unwrap()
    }

    #[test]
    fn the_message_id_is_the_key_and_the_date_the_acceptance() {
        let m = formatted("disk full", "it is full\n");
        assert!(
            m.contains("Message-ID: <hark.0123abcd@example.org>\r\n"),
            "{m}"
        );
        assert!(
            m.contains("Date: Thu, 01 Jan 1970 00:00:00 +0000\r\n"),
            "{m}"
        );
        assert!(m.contains("Subject: disk full\r\n"), "{m}");
    }

    #[test]
    fn a_bare_cr_in_the_body_becomes_a_line_break() {
        let m = formatted("s", "one\rtwo\r\nthree\nfour\r");
        let body = m.split_once("\r\n\r\n").unwrap().1;
        assert!(body.contains("one\r\ntwo\r\nthree\r\nfour"), "{body:?}");
        let bytes = m.as_bytes();
        for (i, b) in bytes.iter().enumerate() {
            if *b == b'\r' {
                assert_eq!(bytes.get(i + 1), Some(&b'\n'), "bare CR at {i} in {m:?}");
            }
        }
    }

    #[test]
    fn an_encoded_word_in_a_field_reaches_the_subject_as_text() {
        use base64::Engine;
        let literal = "disk =?utf-8?q?P=C3=B6wned?= on web-01, and a long tail to fold over lines";
        let m = formatted(literal, "body");
        let head = m.split("\r\n\r\n").next().unwrap();
        let subject: String = head
            .split("\r\n")
            .skip_while(|l| !l.starts_with("Subject: "))
            .take_while(|l| l.starts_with("Subject: ") || l.starts_with(' '))
            .map(|l| l.trim_start_matches("Subject: ").trim().to_string())
            .collect::<Vec<_>>()
            .join(" ");
        assert!(!subject.contains("=?utf-8?q?"), "{subject}");
        // What a client decodes is the text as written.
        let decoded: String = subject
            .split(' ')
            .map(|w| {
                let b64 = w.trim_start_matches("=?utf-8?b?").trim_end_matches("?=");
                let raw = base64::engine::general_purpose::STANDARD
                    .decode(b64)
                    .unwrap();
                String::from_utf8(raw).unwrap()
            })
            .collect();
        assert_eq!(decoded, literal);
        assert!(head.split("\r\n").all(|l| l.len() <= 78), "{head}");
    }

    proptest! {
        /// Whatever a subject holds (CR, LF, a header of its own), the message's header
        /// block has exactly the headers hark wrote.
        #[test]
        fn no_subject_adds_a_header(s in "(\\PC|[\r\n]|Bcc: x@evil.example|\r\nTo: y@evil.example){0,40}") {
            let m = formatted(&s, "body");
            let head = m.split("\r\n\r\n").next().unwrap_or_default();
            let names: Vec<&str> = head
                .split("\r\n")
                .filter(|l| !l.starts_with(' ') && !l.starts_with('\t'))
                .filter_map(|l| l.split(':').next())
                .collect();
            let expected = ["From", "To", "Subject", "Message-ID", "Date", "User-Agent", "Content-Type", "Content-Transfer-Encoding", "MIME-Version"];
            for n in &names {
                prop_assert!(expected.contains(n), "header {n:?} in {head:?}");
            }
            prop_assert_eq!(names.iter().filter(|n| **n == "To").count(), 1);
        }
    }
}
