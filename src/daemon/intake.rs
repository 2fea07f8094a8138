//! The daemon's intake: the running watches, the resources they share, and the queue
//! their events wait in for the engine.

use std::collections::BTreeMap;
use std::sync::Arc;

use anyhow::Context as _;
use tokio::sync::mpsc;

use super::{blocking, EVENT_QUEUE};
use crate::config::{Config, WatchConfig};
use crate::event::Event;
use crate::store::Store;
use crate::watch::{self, WatchHandle};

pub(super) struct Intake {
    /// The host name events carry.
    pub host: Arc<str>,
    pub shared: Arc<watch::Shared>,
    /// Where watches send their events (a clone per watch): streams that can flood (log,
    /// file and journal watches) to `streams`, the rest (a unit failing, a process
    /// exiting, a check, a push) to `events`, which the engine takes first.
    pub events: mpsc::Sender<Event>,
    pub streams: mpsc::Sender<Event>,
    pub watches: BTreeMap<String, WatchHandle>,
}

/// While both queues hold events, the first lane's taken at most this many times in a
/// row before one of the streams': a storm of pushes or checks slows log intake down, it
/// never stops it (nor the positions stored with it).
const FAIR_SHARE: usize = 8;

/// The two queues events wait in for the engine (see `Intake::events`).
pub(super) struct Lanes {
    pub events: mpsc::Receiver<Event>,
    pub streams: mpsc::Receiver<Event>,
    /// Events of the first lane taken since the last of the streams'.
    urgent_in_a_row: usize,
}

impl Lanes {
    pub fn new(events: mpsc::Receiver<Event>, streams: mpsc::Receiver<Event>) -> Lanes {
        Lanes {
            events,
            streams,
            urgent_in_a_row: 0,
        }
    }

    /// Whether the streams' event is to be taken before the first lane's: the first lane
    /// had its FAIR_SHARE in a row and a stream's event waits.
    pub fn streams_turn(&self) -> bool {
        self.urgent_in_a_row >= FAIR_SHARE && !self.streams.is_empty()
    }

    /// Notes an event taken, and of which lane.
    pub fn taken(&mut self, urgent: bool) {
        self.urgent_in_a_row = if urgent { self.urgent_in_a_row + 1 } else { 0 };
    }

    /// The next waiting event and whether it is of the first lane: the first lane's, but
    /// for the streams' turn; `None` when both are empty.
    pub fn next(&mut self) -> Option<(Event, bool)> {
        let got = if self.streams_turn() {
            self.streams.try_recv().ok().map(|e| (e, false))
        } else {
            match self.events.try_recv() {
                Ok(e) => Some((e, true)),
                Err(_) => self.streams.try_recv().ok().map(|e| (e, false)),
            }
        };
        if let Some((_, urgent)) = &got {
            self.taken(*urgent);
        }
        got
    }

    /// Both queues closed: the watches blocked on a send are freed.
    pub fn close(&mut self) {
        self.events.close();
        self.streams.close();
    }
}

/// What a reload did to the watches.
pub(super) struct Replaced {
    pub stopped: usize,
    pub started: usize,
    pub errors: Vec<String>,
}

impl Intake {
    /// Starts every watch of `config`, each taking up its stored position; returns the
    /// queues their events arrive in.
    pub async fn start(config: &Config, store: &Arc<Store>) -> anyhow::Result<(Intake, Lanes)> {
        let (tx, rx) = mpsc::channel::<Event>(EVENT_QUEUE);
        let (streams_tx, streams_rx) = mpsc::channel::<Event>(EVENT_QUEUE);
        let host: Arc<str> = Arc::from(config.daemon.host.as_str());
        let shared = Arc::new(watch::Shared::for_watches(config.watches.values())?);
        // Where each log file or journal was read to: the watches take up their own as
        // they start.
        let positions = blocking(store, |s| s.positions()).await?;
        *shared.positions.lock().unwrap_or_else(|p| p.into_inner()) = positions
            .into_iter()
            .filter_map(|(k, v)| Some((k, crate::event::Mark::from_bytes(&v)?)))
            .collect();
        let watches = start_watches(
            config.watches.values().cloned().collect(),
            Arc::clone(&host),
            Arc::clone(&shared),
            (tx.clone(), streams_tx.clone()),
        )
        .await?
        .map_err(|(_, e)| e)?;
        let intake = Intake {
            host,
            shared,
            events: tx,
            streams: streams_tx,
            watches,
        };
        let lanes = Lanes::new(rx, streams_rx);
        Ok((intake, lanes))
    }

    /// A reload: the watches removed or changed stop, then those new or changed start (all
    /// of them when the host name changed: their events carry it).
    pub async fn replace(&mut self, old: &Config, new: &Config) -> Replaced {
        let host_changed = new.daemon.host != old.daemon.host;
        if host_changed {
            self.host = Arc::from(new.daemon.host.as_str());
        }
        let same = |name: &str, definition: &str| {
            !host_changed
                && old
                    .watches
                    .get(name)
                    .is_some_and(|o| o.definition == definition)
        };
        let mut errors = Vec::new();
        let stopping: Vec<_> = old
            .watches
            .keys()
            .filter(|n| !new.watches.get(*n).is_some_and(|w| same(n, &w.definition)))
            .filter_map(|n| self.watches.remove(n))
            .collect();
        let stopped = stopping.len();
        if tokio::task::spawn_blocking(move || stop_all(stopping))
            .await
            .is_err()
        {
            errors.push("stopping the changed watches panicked".to_string());
        }
        let starting: Vec<_> = new
            .watches
            .values()
            .filter(|w| !same(&w.name, &w.definition))
            .cloned()
            .collect();
        let mut started = 0;
        for w in starting {
            let name = w.name.clone();
            let host = Arc::clone(&self.host);
            let senders = (self.events.clone(), self.streams.clone());
            match start_watches(vec![w], host, Arc::clone(&self.shared), senders).await {
                Ok(Ok(handles)) => {
                    started += handles.len();
                    self.watches.extend(handles);
                }
                Ok(Err((_, e))) => {
                    tracing::error!(watch = %name, error = %e, "watch could not start");
                    errors.push(format!("watch `{name}` could not start: {e}"));
                }
                Err(e) => errors.push(format!("watch `{name}`: {e:#}")),
            }
        }
        Replaced {
            stopped,
            started,
            errors,
        }
    }

    /// Events waiting in both queues.
    pub fn waiting(&self) -> usize {
        [&self.events, &self.streams]
            .iter()
            .map(|q| q.max_capacity() - q.capacity())
            .sum()
    }

    /// Stops every watch, off the runtime (a watch thread may be blocked on a send).
    pub async fn stop(&mut self) -> anyhow::Result<()> {
        let watches = std::mem::take(&mut self.watches);
        tokio::task::spawn_blocking(move || stop_all(watches.into_values()))
            .await
            .context("stopping watches panicked")
    }
}

/// Starts watches off the runtime. On a failure, the ones started are stopped and the
/// name of the one that failed is returned with the error.
async fn start_watches(
    configs: Vec<WatchConfig>,
    host: Arc<str>,
    shared: Arc<watch::Shared>,
    (events, streams): (mpsc::Sender<Event>, mpsc::Sender<Event>),
) -> anyhow::Result<Result<BTreeMap<String, WatchHandle>, (String, watch::WatchError)>> {
    tokio::task::spawn_blocking(move || {
        let mut started = BTreeMap::new();
        for w in &configs {
            let lane = if w.kind.is_stream() {
                &streams
            } else {
                &events
            };
            match watch::start(w, Arc::clone(&host), &shared, lane.clone()) {
                Ok(h) => {
                    started.insert(w.name.clone(), h);
                }
                Err(e) => {
                    stop_all(started.into_values());
                    return Err((w.name.clone(), e));
                }
            }
        }
        Ok(started)
    })
    .await
    .context("watch start-up panicked")
}

fn stop_all(watches: impl IntoIterator<Item = WatchHandle>) {
    for w in watches {
        w.stop();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(watch: &str) -> Event {
        let (watch, host) = (Arc::from(watch), Arc::from("h"));
        Event::new(&watch, "test", &host, true, crate::event::Map::new())
    }

    #[test]
    fn the_first_lane_goes_first_and_a_storm_in_it_leaves_the_streams_their_share() {
        let (urgent, urgent_rx) = mpsc::channel(1000);
        let (streams, streams_rx) = mpsc::channel(1000);
        let mut lanes = Lanes::new(urgent_rx, streams_rx);
        for _ in 0..3 {
            assert!(streams.try_send(event("s")).is_ok());
        }
        assert!(urgent.try_send(event("u")).is_ok());
        let mut order = String::new();
        while let Some((ev, first_lane)) = lanes.next() {
            assert_eq!(&*ev.watch == "u", first_lane);
            order.push(if first_lane { 'u' } else { 's' });
        }
        assert_eq!(order, "usss");

        for _ in 0..100 {
            assert!(urgent.try_send(event("u")).is_ok());
        }
        for _ in 0..5 {
            assert!(streams.try_send(event("s")).is_ok());
        }
        let mut order = String::new();
        while let Some((_, first_lane)) = lanes.next() {
            order.push(if first_lane { 'u' } else { 's' });
        }
        let want = format!("{}{}", "uuuuuuuus".repeat(5), "u".repeat(60));
        assert_eq!(order, want);
    }
}
