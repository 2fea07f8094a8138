//! The listener's certificate, read again at a reload and when its files change (looked
//! at every `LOOK_EVERY`), so a renewed certificate needs no restart. One that does not
//! load leaves the one in use in place; the error is logged and shown in `hark status`.

use std::os::unix::fs::MetadataExt as _;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;

use super::Shared;
use crate::config::ServerTls;

const LOOK_EVERY: Duration = Duration::from_secs(5);

pub struct Tls(Mutex<State>);

#[derive(Default)]
struct State {
    files: Option<ServerTls>,
    acceptor: Option<TlsAcceptor>,
    /// What the files were when last read: a change reads them again.
    stamp: Vec<(u64, i64, i64, u64)>,
    problem: Option<String>,
}

impl Tls {
    pub fn new(files: Option<ServerTls>) -> Tls {
        let tls = Tls(Mutex::new(State::default()));
        tls.reconfigure(files);
        tls
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The acceptor for a new connection; none for plain HTTP.
    pub fn acceptor(&self) -> Option<TlsAcceptor> {
        self.state().acceptor.clone()
    }

    pub fn problems(&self) -> Vec<String> {
        self.state().problem.iter().cloned().collect()
    }

    /// New settings (a reload): the files read again.
    pub fn reconfigure(&self, files: Option<ServerTls>) {
        let mut s = self.state();
        if files.is_none() {
            *s = State::default();
            return;
        }
        s.files = files;
        s.load("loaded");
    }

    /// Reads the files again if they changed since last read.
    fn look(&self) {
        let mut s = self.state();
        let Some(files) = &s.files else { return };
        if stamp(files) != s.stamp {
            s.load("renewed");
        }
    }
}

impl State {
    fn load(&mut self, what: &str) {
        let Some(files) = &self.files else { return };
        self.stamp = stamp(files);
        match files.load() {
            Ok(config) => {
                if self.acceptor.is_some() || what == "renewed" {
                    tracing::info!(cert = %files.cert.display(), "http: TLS certificate {what}");
                }
                self.acceptor = Some(TlsAcceptor::from(config));
                self.problem = None;
            }
            Err(e) => {
                let kept = match self.acceptor.is_some() {
                    true => "the certificate in use stays",
                    false => "no TLS connection is taken until it loads",
                };
                tracing::error!("http: TLS certificate not loaded: {e}; {kept}");
                self.problem = Some(format!("TLS certificate not loaded: {e}; {kept}"));
            }
        }
    }
}

/// Device, inode, modification time and size of each file: a rename over it (certbot,
/// a deploy hook) or a rewrite in place changes one of them.
fn stamp(files: &ServerTls) -> Vec<(u64, i64, i64, u64)> {
    let one = |p: &Path| {
        std::fs::metadata(p).map_or((0, 0, 0, 0), |m| {
            (m.ino(), m.mtime(), m.mtime_nsec(), m.len())
        })
    };
    [
        Some(&files.cert),
        Some(&files.key),
        files.client_ca.as_ref(),
    ]
    .into_iter()
    .flatten()
    .map(|p| one(p))
    .collect()
}

/// Looks at the certificate's files every `LOOK_EVERY` until `stop`.
pub async fn watch_files(shared: Arc<Shared>, stop: CancellationToken) {
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(LOOK_EVERY) => {}
        }
        let shared = Arc::clone(&shared);
        // Reading and parsing files is blocking work.
        let _ = tokio::task::spawn_blocking(move || shared.tls.look()).await;
    }
}

/// The verified client certificate's subject, for the log: its common name or the
/// whole subject.
pub fn client_name(conn: &rustls::ServerConnection) -> Option<String> {
    let der = conn.peer_certificates()?.first()?;
    let (_, cert) = x509_parser::parse_x509_certificate(der).ok()?;
    let subject = cert.subject();
    let cn = subject
        .iter_common_name()
        .next()
        .and_then(|c| c.as_str().ok().map(str::to_string));
    Some(cn.unwrap_or_else(|| subject.to_string()))
}
