//! `type = "systemd"`: a unit started, stopped, restarted or reloaded by systemd, asked
//! over D-Bus (no `systemctl`, no shell), job mode `replace`; the job's result
//! (`done`, `failed`, `timeout`, `canceled`, `dependency`, `skipped`) is the outcome.

use std::time::{Duration, Instant};

use futures_util::StreamExt;
use tokio_util::sync::CancellationToken;
use zbus::zvariant::OwnedObjectPath;
use zbus::Connection;

use super::job::Work;
use super::render::{Failed, Rendering};
use crate::config::{SystemdAction, Verb};
use crate::systemd_bus as bus;

/// What a firing makes of the action: the unit's name, rendered.
pub(super) fn make(sd: &SystemdAction, r: &Rendering<'_>) -> Result<Work, Failed> {
    r.text(&sd.unit, "its unit").map(Work::Systemd)
}

/// What it would ask systemd, for `hark test`.
pub(super) fn preview(sd: &SystemdAction, r: &Rendering<'_>) -> Result<String, Failed> {
    let unit = r.text(&sd.unit, "its unit")?;
    Ok(format!(
        "systemd `{}`: {} {unit:?} (over D-Bus, waiting up to {})",
        r.name,
        sd.verb.as_str(),
        humantime::format_duration(sd.timeout)
    ))
}

/// The connection every systemd action shares: made at the first action, made again after
/// a bus error.
static BUS: tokio::sync::Mutex<Option<Connection>> = tokio::sync::Mutex::const_new(None);

/// How a systemd action ended.
pub struct Outcome {
    /// The job's result as systemd says it (`done` is success), or `timeout` when hark
    /// stopped waiting, or `killed` when hark was stopping.
    pub result: String,
    pub duration: Duration,
}

impl Outcome {
    pub fn ok(&self) -> bool {
        matches!(self.result.as_str(), "done" | "skipped")
    }
}

async fn connection() -> zbus::Result<Connection> {
    let mut bus = BUS.lock().await;
    if let Some(c) = bus.as_ref() {
        return Ok(c.clone());
    }
    let c = bus::connect().await?;
    bus::subscribe(&c).await?;
    *bus = Some(c.clone());
    Ok(c)
}

async fn forget_connection() {
    *BUS.lock().await = None;
}

/// Asks systemd for `verb` on `unit` and waits for the job's end, up to `timeout`. An
/// error is what kept the job from being queued (no such unit, access denied, no bus).
pub async fn run(
    unit: &str,
    verb: Verb,
    timeout: Duration,
    stop: &CancellationToken,
) -> Result<Outcome, String> {
    let started = Instant::now();
    // The shared connection may have died with the bus (dbus restarted): then once more
    // on a new one.
    let mut tries = 0;
    let (reply, mut removed) = loop {
        tries += 1;
        let conn = connection()
            .await
            .map_err(|e| format!("cannot connect to the system bus: {e}"))?;
        // Listening before asking: the job may end before its path is read.
        let asked = async {
            let removed = bus::signals(&conn, Some("JobRemoved"), 1024).await?;
            let reply = conn
                .call_method(
                    Some(bus::DEST),
                    bus::PATH,
                    Some(bus::MANAGER),
                    verb.method(),
                    &(unit, "replace"),
                )
                .await;
            Ok::<_, zbus::Error>((reply, removed))
        };
        match asked.await {
            Ok((Err(e), _)) | Err(e) if !matches!(e, zbus::Error::MethodError(..)) => {
                forget_connection().await;
                if tries >= 2 {
                    return Err(format!("system bus: {e}"));
                }
            }
            Ok(asked) => break asked,
            Err(e) => return Err(format!("system bus: {e}")),
        }
    };
    let job: OwnedObjectPath = match reply {
        Ok(r) => r
            .body()
            .deserialize()
            .map_err(|e| format!("systemd's answer: {e}"))?,
        Err(zbus::Error::MethodError(name, text, _)) => {
            return Err(format!(
                "systemd refused to {} {unit}: {}{}",
                verb.as_str(),
                name.as_str(),
                text.map(|t| format!(": {t}")).unwrap_or_default()
            ))
        }
        Err(e) => return Err(format!("system bus: {e}")),
    };
    let wait = async {
        while let Some(m) = removed.next().await {
            let Ok(m) = m else { break };
            if let Ok((_, path, _, result)) = m
                .body()
                .deserialize::<(u32, OwnedObjectPath, String, String)>()
            {
                if path == job {
                    return Some(result);
                }
            }
        }
        None
    };
    let result = tokio::select! {
        r = tokio::time::timeout(timeout, wait) => match r {
            Ok(Some(result)) => result,
            Ok(None) => {
                forget_connection().await;
                return Err("system bus: the connection was closed before the job ended".into());
            }
            Err(_) => "timed_out".to_string(),
        },
        _ = stop.cancelled() => "killed".to_string(),
    };
    Ok(Outcome {
        result,
        duration: started.elapsed(),
    })
}
