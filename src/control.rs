//! The control socket behind `hark status`, `silence`, `unsilence`, `explain` and `tail`:
//! a Unix socket in the runtime directory, readable and writable by its owner (root) or a
//! configured group only. One JSON request per connection, one JSON answer; for `tail`,
//! the answer is followed by one JSON trace line per line until either side hangs up.

use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::io::{AsyncBufReadExt, AsyncReadExt as _, AsyncWriteExt};
use tokio::net::unix::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::{broadcast, mpsc, oneshot};
use tokio_util::sync::CancellationToken;

pub mod client;
mod peer;
mod render;
mod status;

pub use crate::action::outbox::Entry as OutboxEntry;
pub use client::{call, tail, Exit, Unreachable};
pub use peer::{Caller, Peer};
pub use render::{render, TailText};
pub use status::{
    ActionStatus, ChangeStatus, FailedDelivery, OutboxStatus, ReloadStatus, RuleStatus, Status,
    WatchStatus, WindowStatus,
};

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(tag = "command", rename_all = "snake_case")]
pub enum Request {
    Status,
    Silence {
        rule: String,
        /// Seconds; none: until unsilenced.
        for_secs: Option<u64>,
        /// Why, shown with the silence.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        comment: Option<String>,
    },
    Unsilence {
        rule: String,
    },
    Explain {
        rule: String,
    },
    /// A live trace, filtered by watch and rule.
    Tail {
        watch: Option<String>,
        rule: Option<String>,
    },
    /// What the outbox holds.
    Outbox,
    /// A failed delivery (`id`), or every failed one (no `id`), tried again.
    OutboxRetry {
        id: Option<u64>,
    },
    /// A delivery dropped, failed or pending.
    OutboxDrop {
        id: u64,
    },
    /// An event for a heartbeat watch (`hark ping`): `kind` and the other fields.
    Ping {
        watch: String,
        fields: serde_json::Map<String, serde_json::Value>,
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
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub explain: Option<crate::rule::Explanation>,
    /// For `tail --rule`: the watches the rule hears, whose events it passes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub watches: Option<Vec<String>>,
    /// For `outbox`: its deliveries; for `outbox retry` and `drop`: the ones concerned.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub outbox: Option<Vec<crate::action::outbox::Entry>>,
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

/// A request from a client, with where its answer goes.
pub struct Call {
    pub request: Request,
    /// Who asked (the kernel's word for it, or the listener's token), for the log of
    /// what changes something.
    pub who: Caller,
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

/// Answers connections until `stop`: each request goes to `calls`, each answer back. A
/// client that is not root, the daemon's user or in `group` (`control_group`) is refused
/// and logged, whatever the socket's mode.
pub async fn serve(
    listener: UnixListener,
    calls: mpsc::Sender<Call>,
    group: Option<u32>,
    stop: CancellationToken,
) {
    // SAFETY: geteuid cannot fail and touches no memory.
    let own_uid = unsafe { libc::geteuid() };
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
        let who = match stream.peer_cred() {
            Ok(c) => Peer {
                uid: c.uid(),
                gid: c.gid(),
                pid: c.pid().filter(|p| *p > 0),
            },
            Err(e) => {
                tracing::warn!(error = %e, "control socket: cannot tell who connected; refused");
                continue;
            }
        };
        if !peer::allowed(&who, own_uid, group) {
            tracing::warn!(peer = %who, "control socket: refused a client that is not root, hark's user or in control_group");
            tokio::spawn(refuse(stream, who));
            continue;
        }
        let calls = calls.clone();
        let stop = stop.clone();
        tokio::spawn(connection(stream, who, calls, stop));
    }
}

/// Tells a client it may not ask, and hangs up: once it has sent its request (so that it
/// reads the answer rather than a closed socket), or after a second.
async fn refuse(stream: UnixStream, who: Peer) {
    let (read, mut write) = stream.into_split();
    let mut line = String::new();
    let mut reader = tokio::io::BufReader::new(read).take(MAX_REQUEST as u64);
    let _ = tokio::time::timeout(Duration::from_secs(1), reader.read_line(&mut line)).await;
    let answer = Response::error(format!(
        "refused: {who} is not root, hark's user or a member of [daemon] control_group"
    ));
    let _ = tokio::time::timeout(Duration::from_secs(1), send(&mut write, &answer)).await;
}

/// One client: its request, the daemon's answer, and for `tail` the trace after it.
async fn connection(
    stream: UnixStream,
    who: Peer,
    calls: mpsc::Sender<Call>,
    stop: CancellationToken,
) {
    let (read, mut write) = stream.into_split();
    let mut line = String::new();
    let mut reader = tokio::io::BufReader::new(read).take(MAX_REQUEST as u64);
    let read_line = tokio::time::timeout(Duration::from_secs(10), reader.read_line(&mut line));
    let request = match read_line.await {
        Ok(Ok(_)) => serde_json::from_str::<Request>(line.trim()),
        _ => return,
    };
    let request = match request {
        Ok(r) => r,
        Err(e) => {
            let _ = send(&mut write, &Response::error(format!("not a request: {e}"))).await;
            return;
        }
    };
    // A trace starts before the daemon answers, so nothing between the two is missed.
    let trace = matches!(request, Request::Tail { .. }).then(crate::trace::subscribe);
    let filter = match &request {
        Request::Tail { watch, rule } => crate::trace::Filter {
            watch: watch.clone(),
            rule: rule.clone(),
            watches: Vec::new(),
        },
        _ => crate::trace::Filter::default(),
    };
    let (tx, rx) = oneshot::channel();
    if calls
        .send(Call {
            request,
            who: Caller::Socket(who),
            reply: tx,
        })
        .await
        .is_err()
    {
        return;
    }
    let Ok(response) = rx.await else { return };
    if send(&mut write, &response).await.is_err() || response.error.is_some() {
        return;
    }
    if let Some(trace) = trace {
        let filter = crate::trace::Filter {
            watches: response.watches.unwrap_or_default(),
            ..filter
        };
        stream_trace(trace, filter, reader.into_inner(), write, stop).await;
    }
}

/// Writes trace lines to a `tail` client until it hangs up or hark stops. A client that
/// reads slowly only blocks this task; the broadcast ring then drops its oldest lines
/// for it, and it is told how many.
async fn stream_trace(
    mut trace: broadcast::Receiver<Arc<crate::trace::Line>>,
    filter: crate::trace::Filter,
    mut read: tokio::io::BufReader<OwnedReadHalf>,
    mut write: OwnedWriteHalf,
    stop: CancellationToken,
) {
    let mut scratch = [0u8; 64];
    loop {
        let line = tokio::select! {
            _ = stop.cancelled() => return,
            // The client sends nothing more; a read that ends means it hung up.
            n = read.read(&mut scratch) => match n {
                Ok(0) | Err(_) => return,
                Ok(_) => continue,
            },
            l = trace.recv() => match l {
                Ok(l) => l,
                Err(broadcast::error::RecvError::Lagged(n)) => Arc::new(crate::trace::Line::lost(n)),
                Err(broadcast::error::RecvError::Closed) => return,
            },
        };
        if !filter.passes(&line) {
            continue;
        }
        tokio::select! {
            _ = stop.cancelled() => return,
            sent = send(&mut write, &*line) => if sent.is_err() { return },
        }
    }
}

/// One JSON value and a newline.
async fn send(write: &mut OwnedWriteHalf, value: &impl Serialize) -> std::io::Result<()> {
    let mut out = serde_json::to_vec(value).unwrap_or_default();
    out.push(b'\n');
    write.write_all(&out).await
}
