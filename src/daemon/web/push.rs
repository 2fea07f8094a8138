//! `/push/NAME[/start|/fail|/EXIT-CODE]`: an event for a push watch, from its query and
//! its body (a JSON object's keys as fields, other text as `body`). The answer is sent
//! once the event is in the engine's queue: `200` means hark has it; a full queue is
//! `503` with `Retry-After`, never a silent drop.

use std::net::SocketAddr;
use std::sync::Arc;

use serde_json::{Map, Value};
use tokio::sync::mpsc::error::TrySendError;

use super::{reply, Reply, Shared, TEXT};
use crate::event::Event;
use hyper::StatusCode;

/// What the path after the watch's name says.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Kind {
    Success,
    Start,
    Fail,
    Exit(i64),
}

/// `NAME` and what follows it, from the path after `/push/`.
pub(super) fn parse_path(rest: &str) -> Option<(&str, Option<Kind>)> {
    let mut parts = rest.splitn(2, '/');
    let name = parts.next().filter(|n| !n.is_empty())?;
    let kind = match parts.next() {
        None | Some("") => Some(Kind::Success),
        Some("start") => Some(Kind::Start),
        Some("fail") => Some(Kind::Fail),
        Some(code) => code.parse::<u8>().ok().map(|c| Kind::Exit(i64::from(c))),
    };
    Some((name, kind))
}

/// Fields a request may not set: hark's own.
const OWN: [&str; 8] = [
    "watch",
    "type",
    "time",
    "host",
    "kind",
    "exit_code",
    "client",
    "method",
];

/// A push request, read.
pub(super) struct Pushed<'a> {
    pub watch: &'a str,
    pub kind: &'a Kind,
    pub query: Vec<(String, String)>,
    pub body: &'a [u8],
    pub method: &'a str,
    pub from: SocketAddr,
    /// Who sent it, as the log names it.
    pub token: &'a str,
}

/// The event a push makes.
pub(super) fn event(shared: &Shared, p: Pushed<'_>) -> Event {
    let Pushed {
        watch,
        kind,
        query,
        body,
        method,
        from,
        token,
    } = p;
    let mut fields = Map::new();
    for (k, v) in query {
        if k != "token" {
            fields.insert(k, Value::String(v));
        }
    }
    if !body.is_empty() {
        match serde_json::from_slice::<Value>(body) {
            Ok(Value::Object(o)) => fields.extend(o),
            _ => {
                let text = String::from_utf8_lossy(body).into_owned();
                fields.insert("body".into(), Value::String(text));
            }
        }
    }
    fields.retain(|k, _| !OWN.contains(&k.as_str()));
    let (name, code) = match kind {
        Kind::Success => ("success", None),
        Kind::Start => ("start", None),
        Kind::Fail => ("fail", None),
        Kind::Exit(0) => ("success", Some(0)),
        Kind::Exit(c) => ("fail", Some(*c)),
    };
    fields.insert("kind".into(), name.into());
    if let Some(c) = code {
        fields.insert("exit_code".into(), c.into());
    }
    fields.insert("client".into(), from.ip().to_string().into());
    fields.insert("method".into(), method.into());
    fields.insert("token".into(), token.into());
    let watch: Arc<str> = Arc::from(watch);
    Event::new(&watch, "push", &shared.host(), true, fields)
}

/// Hands the event to the engine's queue; the answer says whether it is there.
pub(super) fn queue(shared: &Shared, event: Event) -> Reply {
    let watch = Arc::clone(&event.watch);
    match shared.events.try_send(event) {
        Ok(()) => reply(StatusCode::OK, TEXT, "OK\n"),
        Err(TrySendError::Full(_)) => {
            super::refused("queue_full");
            tracing::warn!(watch = %watch, "push refused: the engine's queue is full (503, try again)");
            let mut r = reply(
                StatusCode::SERVICE_UNAVAILABLE,
                TEXT,
                "the engine's queue is full: not taken; try again\n",
            );
            super::retry_after(&mut r, 1);
            r
        }
        Err(TrySendError::Closed(_)) => super::unavailable("hark is stopping: not taken"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_path_after_the_name_says_the_kind() {
        assert_eq!(parse_path("backup"), Some(("backup", Some(Kind::Success))));
        assert_eq!(parse_path("backup/"), Some(("backup", Some(Kind::Success))));
        assert_eq!(
            parse_path("backup/start"),
            Some(("backup", Some(Kind::Start)))
        );
        assert_eq!(
            parse_path("backup/fail"),
            Some(("backup", Some(Kind::Fail)))
        );
        assert_eq!(
            parse_path("backup/3"),
            Some(("backup", Some(Kind::Exit(3))))
        );
        assert_eq!(
            parse_path("backup/0"),
            Some(("backup", Some(Kind::Exit(0))))
        );
        assert_eq!(parse_path("backup/256"), Some(("backup", None)));
        assert_eq!(parse_path("backup/x/y"), Some(("backup", None)));
        assert_eq!(parse_path(""), None);
    }
}
