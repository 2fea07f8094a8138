//! The control socket behind `hark status`, `hark silence` and `hark unsilence`: a Unix
//! socket in the runtime directory, readable and writable by its owner (root) or a
//! configured group only. One JSON request per connection, one JSON answer.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::io::{AsyncBufReadExt, AsyncReadExt as _, AsyncWriteExt};
use tokio::net::UnixListener;
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(tag = "command", rename_all = "snake_case")]
pub enum Request {
    Status,
    Silence {
        rule: String,
        /// Seconds; none: until unsilenced.
        for_secs: Option<u64>,
    },
    Unsilence {
        rule: String,
    },
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Response {
    /// What went wrong, for a request that could not be done.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<Status>,
}

impl Response {
    pub fn message(m: impl Into<String>) -> Response {
        Response {
            message: Some(m.into()),
            ..Response::default()
        }
    }

    pub fn error(e: impl Into<String>) -> Response {
        Response {
            error: Some(e.into()),
            ..Response::default()
        }
    }
}

/// What `hark status` shows. Times are RFC 3339.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Status {
    pub version: String,
    pub pid: u32,
    pub started: String,
    pub config_files: Vec<String>,
    pub watches: Vec<WatchStatus>,
    pub rules: Vec<RuleStatus>,
    pub actions: ActionStatus,
    pub outbox: OutboxStatus,
    pub last_reload: Option<ReloadStatus>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct WatchStatus {
    pub name: String,
    #[serde(rename = "type")]
    pub kind: String,
    pub events: u64,
    pub last_event: Option<String>,
    /// The last event's `error` field, when it had a non-empty one.
    pub last_error: Option<String>,
    /// The last event's fields.
    pub last: Option<serde_json::Value>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct RuleStatus {
    pub name: String,
    pub watch: Option<String>,
    /// `ok`, `pending` or `firing`.
    pub state: String,
    pub since: Option<String>,
    /// `Some("")` when silenced with no end.
    pub silenced_until: Option<String>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ActionStatus {
    pub running: usize,
    pub queued: usize,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct OutboxStatus {
    pub pending: usize,
    pub oldest_pending: Option<String>,
    pub failed: Vec<FailedDelivery>,
    /// Why the outbox could not be read, if it could not.
    pub error: Option<String>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct FailedDelivery {
    pub rule: String,
    pub action: String,
    pub state: String,
    pub accepted: String,
    pub attempts: u32,
    pub error: String,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ReloadStatus {
    pub time: String,
    pub ok: bool,
    /// The configuration errors of a reload that was refused.
    pub errors: Vec<String>,
}

/// A request from a client, with where its answer goes.
pub struct Call {
    pub request: Request,
    pub reply: oneshot::Sender<Response>,
}

/// The longest request line read.
const MAX_REQUEST: usize = 64 * 1024;

/// Binds the control socket at `path`, owned by hark's user, mode 0600 (0660 and group
/// `group` when one is configured). A socket left by an earlier run is replaced; any
/// other file there is an error.
pub fn bind(path: &Path, group: Option<u32>) -> anyhow::Result<UnixListener> {
    use anyhow::Context as _;
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    }
    match std::fs::symlink_metadata(path) {
        Ok(m) if m.file_type().is_socket() => std::fs::remove_file(path)
            .with_context(|| format!("cannot replace the old socket {}", path.display()))?,
        Ok(_) => anyhow::bail!(
            "control socket {}: a file that is not a socket is in the way",
            path.display()
        ),
        Err(_) => {}
    }
    // Bound with no permissions for anyone else, so there is no moment where another
    // user could connect; then opened to the group if one is configured.
    // SAFETY: umask only swaps the process's file-creation mask.
    let old = unsafe { libc::umask(0o177) };
    let bound = UnixListener::bind(path);
    // SAFETY: as above, restoring the previous mask.
    unsafe { libc::umask(old) };
    let listener =
        bound.with_context(|| format!("cannot bind the control socket {}", path.display()))?;
    if let Some(gid) = group {
        std::os::unix::fs::chown(path, None, Some(gid))
            .with_context(|| format!("cannot give {} to group {gid}", path.display()))?;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o660))
            .with_context(|| format!("cannot open {} to its group", path.display()))?;
    }
    Ok(listener)
}

/// Answers connections until `stop`: each request goes to `calls`, each answer back.
pub async fn serve(listener: UnixListener, calls: mpsc::Sender<Call>, stop: CancellationToken) {
    loop {
        let conn = tokio::select! {
            _ = stop.cancelled() => return,
            c = listener.accept() => c,
        };
        let stream = match conn {
            Ok((s, _)) => s,
            Err(e) => {
                tracing::warn!(error = %e, "control socket: accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let calls = calls.clone();
        tokio::spawn(async move {
            let (read, mut write) = stream.into_split();
            let mut line = String::new();
            let mut reader = tokio::io::BufReader::new(read).take(MAX_REQUEST as u64);
            let read = tokio::time::timeout(Duration::from_secs(10), reader.read_line(&mut line));
            let response = match read.await {
                Ok(Ok(_)) => match serde_json::from_str::<Request>(line.trim()) {
                    Ok(request) => {
                        let (tx, rx) = oneshot::channel();
                        if calls.send(Call { request, reply: tx }).await.is_err() {
                            return;
                        }
                        match rx.await {
                            Ok(r) => r,
                            Err(_) => return,
                        }
                    }
                    Err(e) => Response::error(format!("not a request: {e}")),
                },
                _ => return,
            };
            let mut out = serde_json::to_vec(&response).unwrap_or_default();
            out.push(b'\n');
            let _ = write.write_all(&out).await;
        });
    }
}

/// Why the daemon could not be asked.
#[derive(Debug, thiserror::Error)]
#[error("cannot reach the hark daemon at {path}: {message} (is it running? is this the socket of [daemon] control_socket?)")]
pub struct Unreachable {
    pub path: PathBuf,
    pub message: String,
}

/// Sends one request to the daemon and waits (at most 30 s) for its answer.
pub fn call(path: &Path, request: &Request) -> Result<Response, Unreachable> {
    let fail = |message: String| Unreachable {
        path: path.to_path_buf(),
        message,
    };
    let mut stream =
        std::os::unix::net::UnixStream::connect(path).map_err(|e| fail(e.to_string()))?;
    let timeout = Some(Duration::from_secs(30));
    stream
        .set_read_timeout(timeout)
        .and_then(|_| stream.set_write_timeout(timeout))
        .map_err(|e| fail(e.to_string()))?;
    let mut line = serde_json::to_vec(request).map_err(|e| fail(e.to_string()))?;
    line.push(b'\n');
    stream.write_all(&line).map_err(|e| fail(e.to_string()))?;
    let mut answer = String::new();
    BufReader::new(stream)
        .read_line(&mut answer)
        .map_err(|e| fail(e.to_string()))?;
    if answer.is_empty() {
        return Err(fail(
            "the daemon closed the connection without an answer".into(),
        ));
    }
    serde_json::from_str(&answer).map_err(|e| fail(format!("an answer that does not parse: {e}")))
}

/// `hark status` for a person.
pub fn render(s: &Status) -> String {
    let mut out = format!(
        "hark {} (pid {}), running since {}\nconfiguration: {}\n",
        s.version,
        s.pid,
        s.started,
        s.config_files.join(", ")
    );
    if let Some(r) = &s.last_reload {
        if r.ok {
            out.push_str(&format!("last reload: ok at {}\n", r.time));
        } else {
            out.push_str(&format!(
                "last reload: FAILED at {} (the previous configuration is still running):\n",
                r.time
            ));
            for e in &r.errors {
                for l in e.lines() {
                    out.push_str(&format!("  {l}\n"));
                }
            }
        }
    }
    out.push_str(&format!("\nwatches ({}):\n", s.watches.len()));
    for w in &s.watches {
        let last = w.last_event.as_deref().unwrap_or("no event yet");
        out.push_str(&format!(
            "  {:<20} {:<8} {:>7} events  last {last}",
            w.name, w.kind, w.events
        ));
        if let Some(e) = &w.last_error {
            out.push_str(&format!("  error: {e}"));
        }
        out.push('\n');
    }
    out.push_str(&format!("\nrules ({}):\n", s.rules.len()));
    for r in &s.rules {
        let watch = r.watch.as_deref().unwrap_or("-");
        out.push_str(&format!("  {:<20} {:<20} {:<8}", r.name, watch, r.state));
        if let Some(since) = &r.since {
            out.push_str(&format!(" since {since}"));
        }
        match r.silenced_until.as_deref() {
            Some("") => out.push_str("  silenced"),
            Some(t) => out.push_str(&format!("  silenced until {t}")),
            None => {}
        }
        out.push('\n');
    }
    out.push_str(&format!(
        "\nactions: {} running, {} queued\n",
        s.actions.running, s.actions.queued
    ));
    let o = &s.outbox;
    out.push_str(&format!("outbox: {} pending", o.pending));
    if let Some(t) = &o.oldest_pending {
        out.push_str(&format!(" (oldest accepted {t})"));
    }
    out.push_str(&format!(", {} failed\n", o.failed.len()));
    if let Some(e) = &o.error {
        out.push_str(&format!("  cannot read the outbox: {e}\n"));
    }
    for f in &o.failed {
        out.push_str(&format!(
            "  failed: rule {} action {} ({}) accepted {}, {} attempt(s): {}\n",
            f.rule, f.action, f.state, f.accepted, f.attempts, f.error
        ));
    }
    out
}
