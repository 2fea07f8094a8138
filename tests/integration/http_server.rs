//! A scriptable HTTP server on 127.0.0.1 for the http watch's tests, plain or TLS with a
//! certificate made by the test. One thread per connection, `Connection: close`.

use std::collections::VecDeque;
use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

/// What the server answers.
#[derive(Clone)]
pub struct Reply {
    pub status: u16,
    pub body: Vec<u8>,
    pub content_type: &'static str,
    /// Waits this long before answering.
    pub delay: Duration,
    /// Answers every other path with a 302 to this one.
    pub redirect_to: Option<&'static str>,
    /// Sends the head a byte at a time, this long apart.
    pub trickle: Option<Duration>,
    /// Reads the request and never answers (until the server stops).
    pub hang: bool,
    /// Sends this many bytes of body (zeros, in 64 KiB writes) instead of `body`.
    pub body_len: Option<usize>,
}

impl Default for Reply {
    fn default() -> Self {
        Reply {
            status: 200,
            body: b"ok".to_vec(),
            content_type: "text/plain",
            delay: Duration::ZERO,
            redirect_to: None,
            trickle: None,
            hang: false,
            body_len: None,
        }
    }
}

#[derive(Default)]
struct Shared {
    reply: Mutex<Reply>,
    /// Statuses for the next requests, in order, before `reply.status` applies again.
    script: Mutex<VecDeque<u16>>,
    hits: AtomicUsize,
    in_flight: AtomicUsize,
    max_in_flight: AtomicUsize,
    stop: AtomicBool,
    /// The last request as received: head and body.
    last_request: Mutex<Vec<u8>>,
    /// Every request, in the order they came, with the status each got.
    requests: Mutex<Vec<(u16, Vec<u8>)>>,
}

pub struct Server {
    pub addr: SocketAddr,
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
    tls: bool,
}

impl Server {
    pub fn start() -> Server {
        Self::start_with(None)
    }

    /// An HTTPS server whose self-signed certificate for `localhost` expires in `days`.
    pub fn start_tls(days: i64) -> Server {
        Self::start_with(Some(tls_config(days)))
    }

    /// An HTTPS server presenting the certificate and key of these PEM files.
    pub fn start_tls_from(cert: &std::path::Path, key: &std::path::Path) -> Server {
        use rustls::pki_types::pem::PemObject;
        use rustls::pki_types::{CertificateDer, PrivateKeyDer};
        let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
            .expect("certificate file")
            .map(|c| c.expect("certificate"))
            .collect();
        let key = PrivateKeyDer::from_pem_file(key).expect("key file");
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .expect("protocol versions")
            .with_no_client_auth()
            .with_single_cert(certs, key)
            .expect("server config");
        Self::start_with(Some(Arc::new(config)))
    }

    fn start_with(tls: Option<Arc<rustls::ServerConfig>>) -> Server {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = listener.local_addr().unwrap();
        let shared = Arc::new(Shared::default());
        let s = Arc::clone(&shared);
        let is_tls = tls.is_some();
        let thread = std::thread::spawn(move || {
            for conn in listener.incoming() {
                if s.stop.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(conn) = conn else { continue };
                let s = Arc::clone(&s);
                let tls = tls.clone();
                std::thread::spawn(move || serve(conn, &s, tls));
            }
        });
        Server {
            addr,
            shared,
            thread: Some(thread),
            tls: is_tls,
        }
    }

    pub fn url(&self, path: &str) -> String {
        match self.tls {
            true => format!("https://localhost:{}{path}", self.addr.port()),
            false => format!("http://{}{path}", self.addr),
        }
    }

    pub fn set(&self, f: impl FnOnce(&mut Reply)) {
        f(&mut self.shared.reply.lock().unwrap());
    }

    pub fn set_status(&self, status: u16) {
        self.set(|r| r.status = status);
    }

    /// The next requests get these statuses, in order.
    pub fn script(&self, statuses: &[u16]) {
        self.shared.script.lock().unwrap().extend(statuses);
    }

    pub fn hits(&self) -> usize {
        self.shared.hits.load(Ordering::SeqCst)
    }

    /// Waits (bounded) until the server has answered `n` more requests than `from`.
    pub fn wait_hits(&self, from: usize, n: usize) -> bool {
        crate::util::wait_for(Duration::from_secs(20), || self.hits() >= from + n)
    }

    /// The last request received, head and body, as text.
    pub fn last_request(&self) -> String {
        String::from_utf8_lossy(&self.shared.last_request.lock().unwrap()).into_owned()
    }

    /// Every request so far: the status it got, and the request (head and body) as text.
    pub fn requests(&self) -> Vec<(u16, String)> {
        self.shared
            .requests
            .lock()
            .unwrap()
            .iter()
            .map(|(st, r)| (*st, String::from_utf8_lossy(r).into_owned()))
            .collect()
    }

    pub fn max_in_flight(&self) -> usize {
        self.shared.max_in_flight.load(Ordering::SeqCst)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        // Wakes the accept loop so it sees the flag.
        let _ = TcpStream::connect(self.addr);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn serve(conn: TcpStream, s: &Shared, tls: Option<Arc<rustls::ServerConfig>>) {
    let _ = conn.set_read_timeout(Some(Duration::from_secs(10)));
    let _ = conn.set_write_timeout(Some(Duration::from_secs(10)));
    match tls {
        None => {
            let mut conn = conn;
            answer(&mut conn, s);
            let _ = conn.shutdown(Shutdown::Both);
        }
        Some(cfg) => {
            let Ok(session) = rustls::ServerConnection::new(cfg) else {
                return;
            };
            let mut stream = rustls::StreamOwned::new(session, conn);
            answer(&mut stream, s);
            stream.conn.send_close_notify();
            let _ = stream.flush();
        }
    }
}

fn answer(conn: &mut (impl Read + Write), s: &Shared) {
    // Reads the request head, then as much body as Content-Length says.
    let mut head = Vec::new();
    let mut buf = [0u8; 4096];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        match conn.read(&mut buf) {
            Ok(0) | Err(_) => return,
            Ok(n) => head.extend_from_slice(&buf[..n]),
        }
        if head.len() > 64 * 1024 {
            return;
        }
    }
    let text = String::from_utf8_lossy(&head).to_ascii_lowercase();
    let end = text.find("\r\n\r\n").map_or(head.len(), |i| i + 4);
    let length: usize = text
        .lines()
        .find_map(|l| l.strip_prefix("content-length:"))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0);
    while head.len() < end + length {
        match conn.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => head.extend_from_slice(&buf[..n]),
        }
    }
    let path = text.split(' ').nth(1).unwrap_or("/").to_string();
    *s.last_request.lock().unwrap() = head.clone();
    let now = s.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
    s.max_in_flight.fetch_max(now, Ordering::SeqCst);
    let mut reply = s.reply.lock().unwrap().clone();
    if let Some(st) = s.script.lock().unwrap().pop_front() {
        reply.status = st;
    }
    std::thread::sleep(reply.delay);
    if reply.hang {
        s.requests.lock().unwrap().push((0, head));
        while !s.stop.load(Ordering::SeqCst) {
            std::thread::sleep(Duration::from_millis(20));
        }
        s.in_flight.fetch_sub(1, Ordering::SeqCst);
        return;
    }
    s.requests.lock().unwrap().push((reply.status, head));
    // No longer in flight once the answer is decided: the client may send its next
    // request the moment it has this answer, before this thread runs again.
    s.in_flight.fetch_sub(1, Ordering::SeqCst);
    let mut location = String::new();
    if reply.status == 429 {
        location.push_str("Retry-After: 1\r\n");
    }
    if let Some(to) = reply.redirect_to {
        if path != to {
            reply.status = 302;
            location = format!("Location: {to}\r\n");
        }
    }
    let length = reply.body_len.unwrap_or(reply.body.len());
    let head = format!(
        "HTTP/1.1 {} X\r\nContent-Type: {}\r\nContent-Length: {}\r\nX-Test: a\r\nX-Test: b\r\n{location}Connection: close\r\n\r\n",
        reply.status,
        reply.content_type,
        length
    );
    match reply.trickle {
        Some(gap) => {
            for b in head.as_bytes() {
                if conn.write_all(&[*b]).and_then(|_| conn.flush()).is_err() {
                    break;
                }
                std::thread::sleep(gap);
            }
        }
        None => {
            let _ = conn.write_all(head.as_bytes());
        }
    }
    match reply.body_len {
        Some(mut left) => {
            let zeros = vec![0u8; 64 * 1024];
            while left > 0 && !s.stop.load(Ordering::SeqCst) {
                let n = left.min(zeros.len());
                if conn.write_all(&zeros[..n]).is_err() {
                    break;
                }
                left -= n;
            }
        }
        None => {
            let _ = conn.write_all(&reply.body);
        }
    }
    let _ = conn.flush();
    s.hits.fetch_add(1, Ordering::SeqCst);
}

fn tls_config(days: i64) -> Arc<rustls::ServerConfig> {
    let key = rcgen::KeyPair::generate().expect("key");
    let mut params = rcgen::CertificateParams::new(vec!["localhost".to_string()]).expect("params");
    let now = time::OffsetDateTime::now_utc();
    params.not_before = now - time::Duration::days(1);
    params.not_after = now + time::Duration::days(days);
    let cert = params.self_signed(&key).expect("self-signed certificate");
    let key_der = rustls::pki_types::PrivateKeyDer::Pkcs8(key.serialize_der().into());
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("protocol versions")
        .with_no_client_auth()
        .with_single_cert(vec![cert.der().clone()], key_der)
        .expect("server config");
    Arc::new(config)
}
