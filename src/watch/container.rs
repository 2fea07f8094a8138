//! `container` watches: the Docker Engine API over its unix socket (bollard; Podman's
//! `podman system service` speaks it too). At connect, the state of each matching
//! container (`kind = "state"`); then the events stream (`start`, `die` with its exit
//! code, `oom`, `health_status`, `restart`). When the API goes away the watch says so in
//! `hark status` and connects again with backoff; after a reconnect it lists the
//! containers again and reports what changed meanwhile as the events it missed
//! (`rescan = true`): a container that stopped is a `die` with its exit code.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bollard::models::ContainerInspectResponse;
use bollard::query_parameters::{EventsOptions, ListContainersOptions};
use bollard::Docker;
use futures_util::StreamExt;
use serde_json::{Map, Value};
use tokio_util::sync::CancellationToken;

use super::{printable, Emitter};
use crate::config::ContainerWatch;
use crate::event::Event;

/// Characters of a name, image or label value in a field, at most.
const MAX_TEXT: usize = 1_000;
/// Labels reported, at most.
const MAX_LABELS: usize = 100;
const BACKOFF_MIN: Duration = Duration::from_millis(500);
const BACKOFF_MAX: Duration = Duration::from_secs(30);

pub struct ContainerHandle {
    stop: CancellationToken,
    problems: Arc<Mutex<Vec<String>>>,
}

impl ContainerHandle {
    pub fn stop(self) {
        self.stop.cancel();
    }

    pub fn problems(&self) -> Vec<String> {
        super::lock(&self.problems).clone()
    }
}

pub fn start(to: Emitter, config: ContainerWatch) -> ContainerHandle {
    let stop = CancellationToken::new();
    let problems = Arc::new(Mutex::new(Vec::new()));
    let w = Watcher {
        to,
        config,
        problems: Arc::clone(&problems),
        known: HashMap::new(),
    };
    tokio::spawn(w.run(stop.clone()));
    ContainerHandle { stop, problems }
}

/// What the watch last knew of a container: to tell, after a reconnect, what changed.
#[derive(Clone, PartialEq)]
struct Known {
    running: bool,
    restarts: i64,
}

struct Watcher {
    to: Emitter,
    config: ContainerWatch,
    problems: Arc<Mutex<Vec<String>>>,
    known: HashMap<String, Known>,
}

impl Watcher {
    async fn run(mut self, stop: CancellationToken) {
        let mut backoff = BACKOFF_MIN;
        let mut first = true;
        loop {
            let mut listed = false;
            let result = tokio::select! {
                _ = stop.cancelled() => return,
                r = self.session(first, &mut listed) => r,
            };
            let why = result
                .err()
                .unwrap_or_else(|| "the events stream ended".into());
            if listed {
                tracing::warn!(watch = %self.to.watch, error = %why, "container API lost");
                first = false;
                backoff = BACKOFF_MIN;
            } else {
                backoff = (backoff * 2).min(BACKOFF_MAX);
            }
            *super::lock(&self.problems) = vec![format!(
                "cannot follow the container API at {}: {why}; trying again",
                self.config.socket.display()
            )];
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = tokio::time::sleep(backoff) => {}
            }
        }
    }

    /// Connects, lists (reporting states or what changed), then follows the events.
    async fn session(&mut self, first: bool, listed: &mut bool) -> Result<(), String> {
        let path = self.config.socket.to_string_lossy().into_owned();
        let docker = Docker::connect_with_unix(&path, 120, bollard::API_DEFAULT_VERSION)
            .map_err(|e| e.to_string())?;
        // The stream starts where the listing starts: the API replays what happened while
        // the list was made (the request is only sent when the stream is first polled).
        let since = unix_nanos();
        let filters = HashMap::from([("type".to_string(), vec!["container".to_string()])]);
        let mut events = docker.events(Some(EventsOptions {
            since: Some(format!(
                "{}.{:09}",
                since / 1_000_000_000,
                since % 1_000_000_000
            )),
            filters: Some(filters),
            ..Default::default()
        }));
        let list = docker
            .list_containers(Some(ListContainersOptions {
                all: true,
                ..Default::default()
            }))
            .await
            .map_err(|e| e.to_string())?;
        super::lock(&self.problems).clear();
        *listed = true;
        let mut seen = HashMap::new();
        for c in list {
            let Some(id) = c.id else { continue };
            let Ok(inspect) = docker.inspect_container(&id, None).await else {
                continue;
            };
            if !self.matches(&inspect) {
                continue;
            }
            let now = known(&inspect);
            let before = self.known.get(&id).cloned();
            seen.insert(id.clone(), now.clone());
            let kind = match (&before, first) {
                (_, true) => Some("state"),
                (None, false) => now.running.then_some("start"),
                (Some(b), false) if b.running && !now.running => Some("die"),
                (Some(b), false) if !b.running && now.running => Some("start"),
                (Some(b), false) if b.restarts < now.restarts => Some("restart"),
                _ => None,
            };
            if let Some(kind) = kind {
                self.emit(kind, &inspect, None, !first).await;
            }
        }
        self.known = seen;
        let listed_at = unix_nanos();
        while let Some(e) = events.next().await {
            let e = e.map_err(|e| e.to_string())?;
            let action = e.action.unwrap_or_default();
            // Docker says "health_status: unhealthy"; Podman "health_status".
            let kind = action
                .split(':')
                .next()
                .unwrap_or_default()
                .trim()
                .to_string();
            let Some(kind) = crate::config::CONTAINER_KINDS.iter().find(|k| **k == kind) else {
                continue;
            };
            let Some(actor) = e.actor else { continue };
            let Some(id) = actor.id else { continue };
            let attributes = actor.attributes.unwrap_or_default();
            // The container as it is now: its health, restarts, labels.
            let Ok(inspect) = docker.inspect_container(&id, None).await else {
                continue;
            };
            if !self.matches(&inspect) {
                continue;
            }
            let now = known(&inspect);
            // Replayed from while the list was made: a start or a death the list already
            // showed is not told twice.
            let before = self.known.insert(id, now.clone());
            let replayed = e.time_nano.unwrap_or(i64::MAX) < listed_at;
            let shown = match *kind {
                "start" => before.as_ref().is_some_and(|b| b.running),
                "die" => before.as_ref().is_some_and(|b| !b.running),
                _ => false,
            };
            if replayed && shown {
                continue;
            }
            let code = attributes
                .get("exitCode")
                .and_then(|c| c.parse::<i64>().ok());
            self.emit(kind, &inspect, code, false).await;
        }
        Ok(())
    }

    fn matches(&self, c: &ContainerInspectResponse) -> bool {
        let name = c.name.as_deref().unwrap_or("").trim_start_matches('/');
        let config = c.config.as_ref();
        let image = config.and_then(|c| c.image.as_deref()).unwrap_or("");
        let labels = config.and_then(|c| c.labels.as_ref());
        self.config.names.as_ref().is_none_or(|g| g.is_match(name))
            && self
                .config
                .images
                .as_ref()
                .is_none_or(|g| g.is_match(image))
            && self.config.labels.iter().all(|(k, v)| {
                labels
                    .and_then(|l| l.get(k))
                    .is_some_and(|have| v.as_ref().is_none_or(|want| want == have))
            })
    }

    async fn emit(
        &self,
        kind: &str,
        c: &ContainerInspectResponse,
        code: Option<i64>,
        rescan: bool,
    ) {
        if !self.config.kinds.contains(&kind) {
            return;
        }
        let fields = fields(kind, c, code, rescan);
        let event = Event::new(&self.to.watch, self.to.source, &self.to.host, true, fields);
        let _ = self.to.events.send(event).await;
    }
}

fn unix_nanos() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_nanos()).unwrap_or(i64::MAX))
}

fn known(c: &ContainerInspectResponse) -> Known {
    Known {
        running: c.state.as_ref().and_then(|s| s.running).unwrap_or(false),
        restarts: c.restart_count.unwrap_or(0),
    }
}

/// An event's fields: `kind`, `id` (12 characters), `name`, `image`, `state`,
/// `exit_code` (the event's, else the container's last), `health`, `oom_killed`,
/// `restart_count`, `labels`, `rescan`.
fn fields(
    kind: &str,
    c: &ContainerInspectResponse,
    code: Option<i64>,
    rescan: bool,
) -> Map<String, Value> {
    let text = |s: &str| Value::from(printable(s, MAX_TEXT));
    let state = c.state.as_ref();
    let config = c.config.as_ref();
    let mut f = Map::new();
    f.insert("kind".into(), Value::from(kind));
    let id = c.id.as_deref().unwrap_or("");
    f.insert("id".into(), text(&id.chars().take(12).collect::<String>()));
    f.insert(
        "name".into(),
        text(c.name.as_deref().unwrap_or("").trim_start_matches('/')),
    );
    f.insert(
        "image".into(),
        text(config.and_then(|c| c.image.as_deref()).unwrap_or("")),
    );
    let status = state
        .and_then(|s| s.status)
        .map(|s| s.to_string())
        .unwrap_or_default();
    f.insert("state".into(), Value::from(status));
    let exit = code
        .or_else(|| state.and_then(|s| s.exit_code))
        .unwrap_or(0);
    f.insert("exit_code".into(), Value::from(exit));
    let health = state
        .and_then(|s| s.health.as_ref())
        .and_then(|h| h.status)
        .map(|h| h.to_string())
        .unwrap_or_default();
    f.insert("health".into(), Value::from(health));
    let oom = state.and_then(|s| s.oom_killed).unwrap_or(false);
    f.insert("oom_killed".into(), Value::Bool(oom));
    f.insert(
        "restart_count".into(),
        Value::from(c.restart_count.unwrap_or(0)),
    );
    let mut labels = Map::new();
    let mut sorted: Vec<_> = config
        .and_then(|c| c.labels.as_ref())
        .into_iter()
        .flatten()
        .collect();
    sorted.sort();
    for (k, v) in sorted.into_iter().take(MAX_LABELS) {
        labels.insert(printable(k, MAX_TEXT), text(v));
    }
    f.insert("labels".into(), Value::Object(labels));
    f.insert("rescan".into(), Value::Bool(rescan));
    f
}
