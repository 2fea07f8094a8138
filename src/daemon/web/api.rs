//! `/api/v1/…`: the control socket's requests over HTTP, answered by the same code
//! (`daemon/calls.rs`): rules and what `explain` says of one, the outbox, silences,
//! retries and drops, maintenance windows. Reads need the `read` scope (or a user),
//! writes the `write` scope; docs/openapi.json describes each.

use std::time::{Duration, SystemTime};

use hyper::{Method, StatusCode};
use serde::Deserialize;
use serde_json::json;

use super::{json_reply, reply, Reply, TEXT};
use crate::control::{Request, Response};

/// What a path and method ask, and whether it writes.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Route {
    Rules,
    Rule(String),
    Outbox,
    Maintenance,
    Silence,
    Unsilence(String),
    Retry(u64),
    Drop(u64),
}

impl Route {
    pub fn writes(&self) -> bool {
        matches!(
            self,
            Route::Silence | Route::Unsilence(_) | Route::Retry(_) | Route::Drop(_)
        )
    }
}

/// The route of `method` and `path` (after `/api/v1/`): `Err` is the answer when none.
pub(super) fn route(method: &Method, path: &str) -> Result<Route, Box<Reply>> {
    let parts: Vec<&str> = path.split('/').collect();
    let get = method == Method::GET || method == Method::HEAD;
    let (post, delete) = (method == Method::POST, method == Method::DELETE);
    let id = |s: &str| s.parse::<u64>().ok();
    let found = match parts.as_slice() {
        ["rules"] if get => Some(Route::Rules),
        ["rules", name] if get && !name.is_empty() => Some(Route::Rule(decode(name))),
        ["outbox"] if get => Some(Route::Outbox),
        ["maintenance"] if get => Some(Route::Maintenance),
        ["silences"] if post => Some(Route::Silence),
        ["silences", name] if delete && !name.is_empty() => Some(Route::Unsilence(decode(name))),
        ["outbox", n, "retry"] if post => id(n).map(Route::Retry),
        ["outbox", n, "drop"] if post => id(n).map(Route::Drop),
        _ => None,
    };
    found.ok_or_else(|| {
        Box::new(reply(
            StatusCode::NOT_FOUND,
            TEXT,
            "no such API route: see docs/openapi.json (GET rules, rules/NAME, outbox, \
             maintenance; POST silences, outbox/ID/retry, outbox/ID/drop; DELETE silences/ID)\n",
        ))
    })
}

fn decode(s: &str) -> String {
    form_urlencoded::parse(format!("x={s}").as_bytes())
        .next()
        .map(|(_, v)| v.into_owned())
        .unwrap_or_default()
}

/// `POST /api/v1/silences`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NewSilence {
    rule: String,
    /// `2h`, `30m`; or `until`; neither: until deleted.
    duration: Option<String>,
    /// RFC 3339.
    until: Option<String>,
    comment: Option<String>,
}

/// The control request a write route makes, from its body; `Err` is the answer (400).
pub(super) fn request(route: &Route, body: &[u8]) -> Result<Request, Box<Reply>> {
    let bad = |m: String| Box::new(reply(StatusCode::BAD_REQUEST, TEXT, format!("{m}\n")));
    Ok(match route {
        Route::Rules | Route::Maintenance => Request::Status,
        Route::Rule(name) => Request::Explain { rule: name.clone() },
        Route::Outbox => Request::Outbox,
        Route::Unsilence(name) => Request::Unsilence { rule: name.clone() },
        Route::Retry(id) => Request::OutboxRetry { id: Some(*id) },
        Route::Drop(id) => Request::OutboxDrop { id: *id },
        Route::Silence => {
            let s: NewSilence = serde_json::from_slice(body).map_err(|e| {
                bad(format!(
                    "a silence is JSON: {{\"rule\": NAME, \"duration\": \"2h\" or \"until\": \
                     RFC 3339, \"comment\": TEXT}} ({e})"
                ))
            })?;
            let for_secs = match (&s.duration, &s.until) {
                (Some(_), Some(_)) => {
                    return Err(bad("give `duration` or `until`, not both".into()))
                }
                (Some(d), None) => Some(
                    humantime::parse_duration(d)
                        .map_err(|e| bad(format!("`duration` {d:?}: {e}")))?
                        .as_secs()
                        .max(1),
                ),
                (None, Some(u)) => {
                    let t = humantime::parse_rfc3339_weak(u)
                        .map_err(|e| bad(format!("`until` {u:?} is not RFC 3339: {e}")))?;
                    let left = t
                        .duration_since(SystemTime::now())
                        .unwrap_or(Duration::ZERO);
                    if left.is_zero() {
                        return Err(bad(format!("`until` {u:?} is past")));
                    }
                    Some(left.as_secs().max(1))
                }
                (None, None) => None,
            };
            Request::Silence {
                rule: s.rule,
                for_secs,
                comment: s.comment,
            }
        }
    })
}

/// The daemon's answer as HTTP: an error is 400 for a silence (with the rules that
/// exist), 404 for what names something absent.
pub(super) fn answer(route: &Route, r: Response) -> Reply {
    if let Some(e) = r.error {
        let status = match route {
            Route::Silence => StatusCode::BAD_REQUEST,
            _ => StatusCode::NOT_FOUND,
        };
        return json_reply(status, &json!({ "error": e }));
    }
    match route {
        Route::Rules => {
            let rules = r.status.map(|s| s.rules).unwrap_or_default();
            json_reply(StatusCode::OK, &json!({ "rules": rules }))
        }
        Route::Maintenance => {
            let windows = r.status.map(|s| s.maintenance).unwrap_or_default();
            json_reply(StatusCode::OK, &json!({ "windows": windows }))
        }
        Route::Rule(_) => json_reply(StatusCode::OK, &json!(r.explain)),
        Route::Outbox | Route::Retry(_) | Route::Drop(_) => json_reply(
            StatusCode::OK,
            &json!({ "deliveries": r.outbox.unwrap_or_default(), "message": r.message }),
        ),
        Route::Silence => json_reply(StatusCode::CREATED, &json!({ "message": r.message })),
        Route::Unsilence(_) => json_reply(StatusCode::OK, &json!({ "message": r.message })),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_are_found_by_method_and_path() {
        let r = |m: Method, p: &str| route(&m, p).ok();
        assert_eq!(r(Method::GET, "rules"), Some(Route::Rules));
        assert_eq!(
            r(Method::GET, "rules/disk%20full"),
            Some(Route::Rule("disk full".into()))
        );
        assert_eq!(r(Method::POST, "rules"), None);
        assert_eq!(r(Method::POST, "outbox/7/retry"), Some(Route::Retry(7)));
        assert_eq!(r(Method::POST, "outbox/x/retry"), None);
        assert_eq!(
            r(Method::DELETE, "silences/web"),
            Some(Route::Unsilence("web".into()))
        );
        assert!(r(Method::POST, "silences").is_some_and(|r| r.writes()));
    }

    #[test]
    fn a_silence_takes_a_duration_or_a_time_not_both() {
        let ok = request(
            &Route::Silence,
            br#"{"rule":"a","duration":"2h","comment":"deploy"}"#,
        );
        assert!(matches!(
            ok,
            Ok(Request::Silence {
                for_secs: Some(7200),
                comment: Some(_),
                ..
            })
        ));
        let both = br#"{"rule":"a","duration":"2h","until":"2099-01-01T00:00:00Z"}"#;
        assert!(request(&Route::Silence, both).is_err());
        assert!(request(
            &Route::Silence,
            br#"{"rule":"a","until":"2001-01-01T00:00:00Z"}"#
        )
        .is_err());
        assert!(request(&Route::Silence, b"not json").is_err());
        assert!(request(&Route::Silence, br#"{"rule":"a","extra":1}"#).is_err());
    }
}
