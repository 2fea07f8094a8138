//! Watches: one file per watch type. Each emits `Event`s into the engine's channel and
//! knows nothing of rules.

pub mod certificate;
pub mod clock;
pub mod command;
pub mod container;
pub mod dns;
pub mod file;
pub mod http;
pub mod inotify;
pub mod journal;
pub mod log;
mod periodic;
pub mod ping;
pub mod process;
pub mod system;
pub mod tcp;
pub mod unit;

use std::sync::Arc;

use tokio::sync::mpsc;

use crate::config::{WatchConfig, WatchKind};
use crate::event::Event;

/// Why a watch could not start or keep going.
#[derive(Debug, thiserror::Error)]
pub enum WatchError {
    #[error("watch `{watch}`: the inotify watch limit is reached (fs.inotify.max_user_watches = {limit}){at}; raise it, e.g. `sysctl fs.inotify.max_user_watches=1048576`")]
    WatchLimit {
        watch: String,
        limit: String,
        at: String,
    },
    #[error("watch `{watch}`: too many inotify instances (fs.inotify.max_user_instances = {limit}); raise it, e.g. `sysctl fs.inotify.max_user_instances=1024`")]
    InstanceLimit { watch: String, limit: String },
    #[error("watch `{watch}`: cannot watch {path}: {message}")]
    Path {
        watch: String,
        path: String,
        message: String,
    },
    #[error("{0}")]
    Other(String),
}

/// Locks a mutex whose data stays consistent even if a holder panicked (a watch's
/// problems, its child's pid).
pub(crate) fn lock<T>(m: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

pub(crate) fn read_sysctl(name: &str) -> String {
    std::fs::read_to_string(format!("/proc/sys/fs/inotify/{name}"))
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|_| "?".into())
}

/// Text from outside (a DNS name, a certificate's subject) for a field: control
/// characters written as `\xNN` (a log line or a terminal shows them as text), at most
/// `max` characters, then `…`.
pub(crate) fn printable(s: &str, max: usize) -> String {
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i == max {
            out.push('…');
            break;
        }
        if c.is_control() {
            out.push_str(&format!("\\x{:02x}", u32::from(c)));
        } else {
            out.push(c);
        }
    }
    out
}

#[cfg(test)]
#[test]
fn printable_escapes_and_cuts() {
    let c = printable(&"x".repeat(5_000), 1_000);
    assert_eq!(c.chars().count(), 1_001);
    assert_eq!(printable("a\nb\u{1b}[31m", 100), "a\\x0ab\\x1b[31m");
}

/// A running watch of any type.
pub enum WatchHandle {
    File(file::FileWatchHandle),
    Periodic(periodic::PeriodicHandle),
    Process(process::ProcessWatchHandle),
    Journal(journal::JournalHandle),
    Unit(unit::UnitHandle),
    Ping(ping::PingHandle),
    Certificate(certificate::CertificateHandle),
    Container(container::ContainerHandle),
    /// A watch whose events the daemon is handed (a heartbeat's pings): nothing runs.
    Pushed,
}

impl WatchHandle {
    /// What the watch could not arm (shown by `hark status`).
    pub fn problems(&self) -> Vec<String> {
        match self {
            WatchHandle::File(h) => h.problems(),
            WatchHandle::Journal(h) => h.problems(),
            WatchHandle::Unit(h) => h.problems(),
            WatchHandle::Ping(h) => h.problems(),
            WatchHandle::Certificate(h) => h.problems(),
            WatchHandle::Container(h) => h.problems(),
            _ => Vec::new(),
        }
    }

    /// Stops the watch and waits for it. Blocking: call it off the async runtime.
    pub fn stop(self) {
        match self {
            WatchHandle::File(h) => h.stop(),
            WatchHandle::Periodic(h) => h.stop(),
            WatchHandle::Process(h) => h.stop(),
            WatchHandle::Journal(h) => h.stop(),
            WatchHandle::Unit(h) => h.stop(),
            WatchHandle::Ping(h) => h.stop(),
            WatchHandle::Certificate(h) => h.stop(),
            WatchHandle::Container(h) => h.stop(),
            WatchHandle::Pushed => {}
        }
    }
}

/// What watches share: the HTTP connection pools, the process monitor, and the one
/// inotify instance and thread of every file watch.
pub struct Shared {
    /// What periodic checks, process passes and the runtime sampler wait on.
    pub clock: clock::Clock,
    pub clients: http::Clients,
    pub processes: process::Monitor,
    pub files: inotify::Hub,
    /// Every ping watch's one task, sockets and timer.
    pub pings: ping::Pinger,
    /// Where each log file or journal was read to, as last stored: a watch that starts
    /// (or starts again after a reload) takes up its own.
    pub positions: std::sync::Mutex<std::collections::HashMap<String, crate::event::Mark>>,
}

impl Shared {
    pub fn for_watches<'a>(
        watches: impl IntoIterator<Item = &'a WatchConfig>,
    ) -> Result<Shared, WatchError> {
        let clock = clock::Clock::new();
        Ok(Shared {
            processes: process::Monitor::new(clock.clone()),
            pings: ping::Pinger::new(clock.clone()),
            clock,
            clients: http::Clients::for_watches(watches)?,
            files: inotify::Hub::default(),
            positions: std::sync::Mutex::default(),
        })
    }
}

/// A watch as its events name it (its name, host and type) and where they go.
#[derive(Clone)]
pub struct Emitter {
    pub watch: Arc<str>,
    pub host: Arc<str>,
    pub source: &'static str,
    pub events: mpsc::Sender<Event>,
}

/// How long the check behind an event took, in seconds, for the check-duration metric:
/// checks report it as `latency_ms` (or a command as `duration_ms`); a file event's
/// `latency_ms` is the time from a change to its report, not a check.
pub fn check_seconds(event: &Event) -> Option<f64> {
    if event.source == "file" {
        return None;
    }
    ["latency_ms", "duration_ms"]
        .iter()
        .find_map(|k| event.fields.get(*k).and_then(serde_json::Value::as_f64))
        .map(|ms| ms / 1000.0)
}

/// Arms a watch and starts it. Blocking (a file watch arms its inotify watches before it
/// returns): call it off the async runtime, but inside its context, where periodic
/// watches spawn their tasks.
pub fn start(
    config: &WatchConfig,
    host: Arc<str>,
    shared: &Shared,
    events: mpsc::Sender<Event>,
) -> Result<WatchHandle, WatchError> {
    let name: Arc<str> = Arc::from(config.name.as_str());
    let to = Emitter {
        watch: Arc::clone(&name),
        host: Arc::clone(&host),
        source: config.kind.type_name(),
        events: events.clone(),
    };
    let clock = shared.clock.clone();
    Ok(match &config.kind {
        WatchKind::File(f) => {
            WatchHandle::File(file::start(name, host, f.clone(), events, &shared.files)?)
        }
        WatchKind::Log(l) => {
            let prefix = format!("{name}/");
            let saved: log::Positions = shared
                .positions
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .iter()
                .filter(|(k, _)| k.starts_with(&prefix))
                .filter_map(|(k, v)| match v {
                    crate::event::Mark::File(p) => Some((k.clone(), *p)),
                    _ => None,
                })
                .collect();
            WatchHandle::File(log::start(
                name,
                host,
                l.clone(),
                events,
                &shared.files,
                saved,
            )?)
        }
        WatchKind::Journal(j) => {
            let key = format!("{name}/journal");
            let cursor = match shared
                .positions
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .get(&key)
            {
                Some(crate::event::Mark::Text(c)) => Some(Arc::clone(c)),
                _ => None,
            };
            WatchHandle::Journal(journal::start(name, host, j.clone(), events, cursor)?)
        }
        WatchKind::Http(h) => {
            let client = shared.clients.get(h)?;
            WatchHandle::Periodic(http::start(to, h.clone(), client, clock))
        }
        WatchKind::Process(p) => {
            WatchHandle::Process(shared.processes.add(name, host, p.clone(), events))
        }
        WatchKind::System(s) => WatchHandle::Periodic(system::start(to, s.clone(), clock)),
        WatchKind::Tcp(t) => WatchHandle::Periodic(tcp::start(to, t.clone(), clock)),
        WatchKind::Command(c) => WatchHandle::Periodic(command::start(to, c.clone(), clock)),
        WatchKind::Dns(d) => WatchHandle::Periodic(dns::start(to, d.clone(), clock)),
        WatchKind::Ping(p) => WatchHandle::Ping(shared.pings.add(to, p.clone())),
        WatchKind::Container(c) => WatchHandle::Container(container::start(to, c.clone())),
        WatchKind::Certificate(c) => {
            WatchHandle::Certificate(certificate::start(to, c.clone(), &shared.files, clock)?)
        }
        WatchKind::Unit(u) => WatchHandle::Unit(unit::start(name, host, u.clone(), events)),
        WatchKind::Heartbeat(_) | WatchKind::Push(_) => WatchHandle::Pushed,
    })
}
