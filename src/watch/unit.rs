//! `type = "unit"`: the systemd units matching `units`, a sample of each at start and on
//! every change of its state, from systemd's own signals on the system bus.
//!
//! Over zbus, not libsystemd's sd-bus or `systemctl`: pure Rust, async on hark's own
//! runtime (the watch is one task), no C library to link and no process per look. While
//! no unit changes, nothing is asked and nothing wakes the task: systemd's signals do.
//!
//! How: the signals are asked for first (so nothing between the listing and them is
//! missed), then the loaded units are listed, the ones named without a glob loaded (a
//! unit that does not exist is reported `load_state = "not-found"`), and each match
//! sampled (its properties read: the unit's, and its type's: `Result`, `NRestarts`,
//! `MainPID`). A unit's `PropertiesChanged` carries the new values: merged into what is
//! known, with no round trip, and a sample when any field differs from the last one
//! (reading them instead doubled the time from a failure to its action); `UnitNew` brings
//! units loaded later (a `daemon-reload`, a
//! unit started by name). When systemd's bus name changes hands (`daemon-reexec`), hark
//! subscribes again and, once it has been settled for a second, samples every unit: a
//! failure during the re-exec is not missed, and the states the new instance passes its
//! units through while it deserializes them are not reported (they made a failed unit
//! resolve and fire again in a test). When the connection ends (the bus restarted), that
//! is an event of the watch (`kind = "disconnected"`, the reason in `error`, also shown
//! by `hark status`), and hark connects again after 1 s, then up to 30 s, and samples
//! everything.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use serde_json::{Map, Value};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use zbus::zvariant::{OwnedObjectPath, OwnedValue};
use zbus::Connection;

use self::sample::{fields_of, transient_failure, type_interface, USED};
use super::lock;
use crate::config::UnitWatch;
use crate::event::Event;
use crate::systemd_bus as bus;

mod sample;

/// A running unit watch.
pub struct UnitHandle {
    stop: CancellationToken,
    problems: Arc<Mutex<Vec<String>>>,
}

impl UnitHandle {
    pub fn stop(self) {
        self.stop.cancel();
    }

    /// Why the watch is not following systemd now, if it is not.
    pub fn problems(&self) -> Vec<String> {
        lock(&self.problems).clone()
    }
}

/// Starts the watch's task on the current runtime.
pub fn start(
    name: Arc<str>,
    host: Arc<str>,
    config: UnitWatch,
    events: mpsc::Sender<Event>,
) -> UnitHandle {
    let stop = CancellationToken::new();
    let problems: Arc<Mutex<Vec<String>>> = Arc::default();
    let mut follower = Follower {
        name,
        host,
        config,
        events,
        units: HashMap::new(),
        problems: Arc::clone(&problems),
        settle: None,
    };
    let token = stop.clone();
    tokio::spawn(async move {
        let mut delay = Duration::from_secs(1);
        loop {
            let started = Instant::now();
            let ended = tokio::select! {
                _ = token.cancelled() => return,
                r = follower.follow() => r,
            };
            match ended {
                Ok(()) => return,
                // The engine's queue closed: hark is stopping.
                Err(_) if follower.events.is_closed() => return,
                Err(why) => {
                    follower.problem(why.clone());
                    if follower
                        .events
                        .send(follower.disconnected(why))
                        .await
                        .is_err()
                    {
                        return;
                    }
                }
            }
            if started.elapsed() > Duration::from_secs(60) {
                delay = Duration::from_secs(1);
            }
            tokio::select! {
                _ = token.cancelled() => return,
                _ = tokio::time::sleep(delay) => {}
            }
            delay = (delay * 2).min(Duration::from_secs(30));
        }
    });
    UnitHandle { stop, problems }
}

/// A unit followed: its name, its properties as last known (the unit's and its type's),
/// and the fields of its last sample.
#[derive(Default)]
struct Followed {
    unit: String,
    props: HashMap<String, OwnedValue>,
    typed: HashMap<String, OwnedValue>,
    /// Where systemd's answers with these properties (the unit's, its type's) stand
    /// among its messages: a signal of that interface sent before the answer (still
    /// queued here when the answer came) is older than what is known, and not applied.
    unit_at: Option<bus::Place>,
    typed_at: Option<bus::Place>,
    last: Option<Map<String, Value>>,
}

struct Follower {
    name: Arc<str>,
    host: Arc<str>,
    config: UnitWatch,
    events: mpsc::Sender<Event>,
    /// By object path.
    units: HashMap<String, Followed>,
    problems: Arc<Mutex<Vec<String>>>,
    /// systemd's bus name changed hands (a re-exec) lately: until this time, what its
    /// signals say is kept but not sent (the new instance passes its units through the
    /// states it deserializes them from); then every unit is read and sampled.
    settle: Option<tokio::time::Instant>,
}

/// How long after systemd's bus name last changed hands its units are read again.
const SETTLE: Duration = Duration::from_secs(1);

/// Why following ended: what went wrong with the bus, to show and to retry (or the
/// engine's queue closed: hark is stopping).
type Outcome = Result<(), String>;

/// An error of the bus itself (not one unit's answer), in words.
fn bus_error(what: &str, e: zbus::Error) -> String {
    format!("system bus: {what}: {e}")
}

impl Follower {
    fn problem(&self, why: String) {
        tracing::warn!(watch = %self.name, "{why}; connecting again");
        let mut p = lock(&self.problems);
        p.clear();
        p.push(why);
    }

    /// The event of the bus gone (or never reached): an edge (see `disconnected_fields`).
    fn disconnected(&self, why: String) -> Event {
        let fields = sample::disconnected_fields(why);
        Event::new(&self.name, "unit", &self.host, true, fields)
    }

    async fn follow(&mut self) -> Outcome {
        let conn = bus::connect()
            .await
            .map_err(|e| bus_error("cannot connect", e))?;
        let mut signals = bus::signals(&conn, None, 8192)
            .await
            .map_err(|e| bus_error("cannot listen to systemd", e))?;
        let mut owners = bus::owner_changes(&conn)
            .await
            .map_err(|e| bus_error("cannot listen to the bus", e))?;
        bus::subscribe(&conn)
            .await
            .map_err(|e| bus_error("cannot subscribe to systemd's signals", e))?;
        self.scan(&conn).await?;
        lock(&self.problems).clear();
        loop {
            tokio::select! {
                m = signals.next() => match m {
                    Some(Ok(m)) => self.on_signal(&conn, &m).await?,
                    Some(Err(e)) => return Err(bus_error("reading systemd's signals", e)),
                    None => return Err("system bus: the connection was closed".into()),
                },
                m = owners.next() => match m {
                    Some(Ok(m)) => {
                        let (_, _, new): (String, String, String) =
                            m.body().deserialize().unwrap_or_default();
                        // systemd going (a re-exec) or back: its units are read again
                        // once it has settled.
                        tracing::debug!(watch = %self.name, new = %new, "systemd's bus name changed hands");
                        self.settle = Some(tokio::time::Instant::now() + SETTLE);
                        if !new.is_empty() {
                            bus::subscribe(&conn)
                                .await
                                .map_err(|e| bus_error("cannot subscribe to systemd's signals", e))?;
                        }
                    }
                    Some(Err(e)) => return Err(bus_error("reading the bus's signals", e)),
                    None => return Err("system bus: the connection was closed".into()),
                },
                _ = sleep_until(self.settle), if self.settle.is_some() => {
                    self.settle = None;
                    tracing::info!(watch = %self.name, "systemd changed hands on the bus (a re-exec); sampling every unit");
                    self.scan(&conn).await?;
                }
            }
        }
    }

    /// Lists the loaded units, loads the ones named, and samples each match.
    async fn scan(&mut self, conn: &Connection) -> Outcome {
        type Listed = (
            String,
            String,
            String,
            String,
            String,
            String,
            OwnedObjectPath,
            u32,
            String,
            OwnedObjectPath,
        );
        let reply = conn
            .call_method(
                Some(bus::DEST),
                bus::PATH,
                Some(bus::MANAGER),
                "ListUnits",
                &(),
            )
            .await
            .map_err(|e| bus_error("cannot list units", e))?;
        let listed: Vec<Listed> = reply
            .body()
            .deserialize()
            .map_err(|e| bus_error("cannot read the list of units", e))?;
        for (unit, .., path, _, _, _) in listed {
            if self.config.matches(&unit) {
                self.units.entry(path.to_string()).or_insert(Followed {
                    unit,
                    ..Default::default()
                });
            }
        }
        for unit in self.config.names.clone() {
            if self.units.values().any(|f| f.unit == unit) {
                continue;
            }
            match conn
                .call_method(
                    Some(bus::DEST),
                    bus::PATH,
                    Some(bus::MANAGER),
                    "LoadUnit",
                    &(unit.as_str(),),
                )
                .await
            {
                Ok(reply) => {
                    if let Ok(path) = reply.body().deserialize::<OwnedObjectPath>() {
                        self.units.insert(
                            path.to_string(),
                            Followed {
                                unit,
                                ..Default::default()
                            },
                        );
                    }
                }
                Err(zbus::Error::MethodError(name, text, _)) => {
                    tracing::warn!(watch = %self.name, unit = %unit, error = %name, "cannot load the unit: {}", text.unwrap_or_default());
                }
                Err(e) => return Err(bus_error("cannot load a unit", e)),
            }
        }
        let paths: Vec<String> = self.units.keys().cloned().collect();
        for path in paths {
            self.sample(conn, &path).await?;
        }
        Ok(())
    }

    async fn on_signal(&mut self, conn: &Connection, m: &zbus::Message) -> Outcome {
        let header = m.header();
        let member = header.member().map(|m| m.as_str()).unwrap_or_default();
        match member {
            "PropertiesChanged" => {
                let path = header.path().map(|p| p.as_str()).unwrap_or_default();
                if self.units.contains_key(path) {
                    let path = path.to_string();
                    self.changed(conn, &path, m).await?;
                }
            }
            "UnitNew" => {
                if let Ok((unit, path)) = m.body().deserialize::<(String, OwnedObjectPath)>() {
                    let path = path.to_string();
                    if self.config.matches(&unit) && !self.units.contains_key(&path) {
                        self.units.insert(
                            path.clone(),
                            Followed {
                                unit,
                                ..Default::default()
                            },
                        );
                        self.sample(conn, &path).await?;
                    }
                }
            }
            "Reloading" => {
                // A daemon-reload done: units may have come or changed their files.
                if let Ok((false,)) = m.body().deserialize::<(bool,)>() {
                    self.scan(conn).await?;
                }
            }
            _ => {}
        }
        Ok(())
    }

    /// Reads a unit's state (both interfaces) and sends a sample if it is not the last one
    /// sent. A unit systemd no longer knows (unloaded meanwhile) is skipped: its last
    /// sample stands.
    async fn sample(&mut self, conn: &Connection, path: &str) -> Outcome {
        let Some(f) = self.units.get(path) else {
            return Ok(());
        };
        let unit = f.unit.clone();
        // The unit's state first, then its type's: a change between the two reads comes
        // as a signal of the unit's state (always sent after its type's), which then
        // meets a type state at least as new as it.
        let (props, unit_at) = match bus::get_all(conn, path, bus::UNIT).await {
            Ok(p) => p,
            Err(zbus::Error::MethodError(..)) => return Ok(()),
            Err(e) => return Err(bus_error("cannot read a unit's state", e)),
        };
        let (typed, typed_at) = match type_interface(&unit) {
            Some(interface) => match bus::get_all(conn, path, interface).await {
                Ok((p, at)) => (p, Some(at)),
                Err(zbus::Error::MethodError(..)) => (HashMap::new(), None),
                Err(e) => return Err(bus_error("cannot read a unit's state", e)),
            },
            None => (HashMap::new(), None),
        };
        if let Some(f) = self.units.get_mut(path) {
            f.props = props;
            f.typed = typed;
            f.unit_at = Some(unit_at);
            f.typed_at = typed_at;
        }
        self.send_if_changed(path).await
    }

    /// A unit's `PropertiesChanged`: the values it carries are merged into what is known
    /// of the unit, without asking (a property it only names as changed, and hark uses,
    /// is read). systemd sends the change of the unit's type (`Result`, `NRestarts`)
    /// first and then the unit's own (`ActiveState`): the sample goes with the latter, so
    /// a failure's sample has its result.
    async fn changed(&mut self, conn: &Connection, path: &str, m: &zbus::Message) -> Outcome {
        type Changed = (String, HashMap<String, OwnedValue>, Vec<String>);
        let Ok((interface, values, invalidated)) = m.body().deserialize::<Changed>() else {
            return Ok(());
        };
        let Some(f) = self.units.get_mut(path) else {
            return Ok(());
        };
        let unit_side = interface == bus::UNIT;
        let (sender, serial) = bus::place(m);
        let known_at = if unit_side { &f.unit_at } else { &f.typed_at };
        if known_at
            .as_ref()
            .is_some_and(|(s, n)| *s == sender && serial < *n)
        {
            // Sent before the answer that told what is known now.
            return Ok(());
        }
        if !unit_side && type_interface(&f.unit) != Some(interface.as_str()) {
            return Ok(());
        }
        let known = if unit_side {
            &mut f.props
        } else {
            &mut f.typed
        };
        known.extend(values);
        if invalidated.iter().any(|p| USED.contains(&p.as_str())) {
            return self.sample(conn, path).await;
        }
        if unit_side {
            if transient_failure(&f.props, &f.typed) {
                // systemd passes through `failed` on its way to `auto-restart`, and says
                // so: what it says now tells which (it answers after the change is done).
                match bus::get_all(conn, path, bus::UNIT).await {
                    Ok((now, at)) => {
                        f.props.extend(now);
                        f.unit_at = Some(at);
                    }
                    Err(zbus::Error::MethodError(..)) => {}
                    Err(e) => return Err(bus_error("cannot read a unit's state", e)),
                }
            }
            self.send_if_changed(path).await?;
        }
        Ok(())
    }

    async fn send_if_changed(&mut self, path: &str) -> Outcome {
        if self.settle.is_some() {
            return Ok(());
        }
        let Some(f) = self.units.get_mut(path) else {
            return Ok(());
        };
        let fields = fields_of(&f.unit, &f.props, &f.typed);
        if f.last.as_ref() == Some(&fields) {
            return Ok(());
        }
        f.last = Some(fields.clone());
        tracing::debug!(watch = %self.name, fields = ?fields, "unit sample");
        let event = Event::new(&self.name, "unit", &self.host, false, fields);
        // The engine's queue closed: hark is stopping.
        if self.events.send(event).await.is_err() {
            return Err("stopping".into());
        }
        Ok(())
    }
}

async fn sleep_until(at: Option<tokio::time::Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}
