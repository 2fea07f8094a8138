//! `certificate` watches: certificate files, read at start, when the file intake says
//! they changed (a renewal renames a new file into place), and every `every`; or a TLS
//! endpoint's chain, at start and every `every`. One event per file a check reads.

mod read;
mod starttls;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use serde_json::{Map, Value};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::clock::Clock;
use super::periodic::{anchor, next_on_grid};
use super::{file, Emitter, WatchError};
use crate::config::{CertificateSource, CertificateWatch, PathPattern};
use crate::event::Event;

/// Files a glob may match, at most (the rest are not read).
const MAX_FILES: usize = 10_000;

/// A running certificate watch.
pub struct CertificateHandle {
    stop: CancellationToken,
    files: Option<file::FileWatchHandle>,
}

impl CertificateHandle {
    pub fn stop(self) {
        self.stop.cancel();
        if let Some(f) = self.files {
            f.stop();
        }
    }

    pub fn problems(&self) -> Vec<String> {
        self.files
            .as_ref()
            .map(|f| f.problems())
            .unwrap_or_default()
    }
}

/// Arms the file intake (for files) and starts the watch's task. Blocking, like a file
/// watch's start.
pub fn start(
    to: Emitter,
    config: CertificateWatch,
    hub: &super::inotify::Hub,
    clock: Clock,
) -> Result<CertificateHandle, WatchError> {
    let stop = CancellationToken::new();
    let (changed_tx, changed_rx) = mpsc::channel(256);
    let files = match config.file_watch() {
        Some(fw) => Some(file::start(
            Arc::clone(&to.watch),
            Arc::clone(&to.host),
            fw,
            changed_tx,
            hub,
        )?),
        None => None,
    };
    tokio::spawn(run(to, config, clock, changed_rx, stop.clone()));
    Ok(CertificateHandle { stop, files })
}

async fn run(
    to: Emitter,
    config: CertificateWatch,
    clock: Clock,
    mut changed: mpsc::Receiver<Event>,
    stop: CancellationToken,
) {
    let config = Arc::new(config);
    let grid = anchor(config.every);
    let mut next = Instant::now();
    loop {
        let only = tokio::select! {
            _ = stop.cancelled() => return,
            _ = clock.sleep_until(next) => {
                next = next_on_grid(grid, config.every, Instant::now());
                None
            }
            // Without files (an endpoint) no one sends: the channel is closed.
            Some(e) = changed.recv() => match e.fields.get("path").and_then(Value::as_str) {
                Some(p) => Some(PathBuf::from(p)),
                None => continue,
            },
        };
        let all = check(Arc::clone(&config), only).await;
        for fields in all {
            let event = Event::new(&to.watch, to.source, &to.host, false, fields);
            tokio::select! {
                _ = stop.cancelled() => return,
                sent = to.events.send(event) => if sent.is_err() { return },
            }
        }
    }
}

/// The events of one check: of `only` (a file that changed), or of every file (or the
/// endpoint).
pub async fn check(
    config: Arc<CertificateWatch>,
    only: Option<PathBuf>,
) -> Vec<Map<String, Value>> {
    let now = jiff::Timestamp::now().as_second();
    match &config.source {
        CertificateSource::Endpoint {
            address,
            starttls,
            server_name,
            timeout,
        } => vec![starttls::endpoint_fields(address, *starttls, server_name, *timeout, now).await],
        CertificateSource::Files { .. } => {
            let c = Arc::clone(&config);
            tokio::task::spawn_blocking(move || files_check(&c, only, now))
                .await
                .unwrap_or_default()
        }
    }
}

fn files_check(
    config: &CertificateWatch,
    only: Option<PathBuf>,
    now: i64,
) -> Vec<Map<String, Value>> {
    let CertificateSource::Files { paths, key } = &config.source else {
        return Vec::new();
    };
    let list = match only {
        Some(p) => vec![p],
        None => expand(paths),
    };
    list.iter()
        .map(|p| read::file_fields(p, key.as_deref(), now))
        .collect()
}

/// The files the patterns name: a plain path as it is (a missing file is reported as
/// one), a glob's matches below its base, sorted.
fn expand(patterns: &[PathPattern]) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for p in patterns {
        let Some(glob) = &p.glob else {
            out.push(p.base.clone());
            continue;
        };
        let depth = if p.glob_recursive { 32 } else { 1 };
        let mut found = Vec::new();
        walk(&p.base, depth, &mut |f| {
            if glob.is_match(f) {
                found.push(f.to_path_buf());
            }
            found.len() < MAX_FILES
        });
        found.sort();
        out.extend(found);
    }
    out.truncate(MAX_FILES);
    out
}

/// Visits the entries below `dir`, `depth` levels down, until `visit` says stop.
fn walk(dir: &Path, depth: usize, visit: &mut dyn FnMut(&Path) -> bool) -> bool {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return true;
    };
    for e in entries.flatten() {
        let path = e.path();
        if !visit(&path) {
            return false;
        }
        // Directories through symlinks too (`live/NAME` may be one).
        if depth > 1
            && std::fs::metadata(&path).is_ok_and(|m| m.is_dir())
            && !walk(&path, depth - 1, visit)
        {
            return false;
        }
    }
    true
}
