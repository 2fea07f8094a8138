//! Calls over the control socket that change or read the daemon: status, silences,
//! explain and tail are answered here.

use std::time::{Duration, SystemTime};

use super::{blocking, Daemon};
use crate::control::{Call, Request, Response};

impl Daemon {
    pub(super) async fn answer(&mut self, call: Call) {
        let response = match call.request {
            Request::Status => {
                let status = self.status().await;
                Response {
                    status: Some(status),
                    ..Response::default()
                }
            }
            Request::Silence { rule, for_secs } => {
                self.silence(&rule, for_secs.map(Duration::from_secs)).await
            }
            Request::Unsilence { rule } => self.unsilence(&rule).await,
            Request::Explain { rule } => self.explain(&rule),
            Request::Tail { watch, rule } => self.tail(watch.as_deref(), rule.as_deref()),
        };
        let _ = call.reply.send(response);
    }

    async fn silence(&mut self, rule: &str, duration: Option<Duration>) -> Response {
        if !self.config.rules.contains_key(rule) {
            return Response::error(format!("no rule `{rule}` in the running configuration"));
        }
        let now = SystemTime::now();
        let bytes = self.silences.set(rule, duration, now);
        let change = vec![(rule.to_string(), Some(bytes))];
        if let Err(e) = blocking(&self.store, move |s| s.set_silences(&change)).await {
            return Response::error(format!("silenced until hark stops, but not saved: {e:#}"));
        }
        let until = match duration {
            Some(d) => format!("until {}", crate::event::rfc3339(now + d)),
            None => "until `hark unsilence`".to_string(),
        };
        tracing::info!(rule, until = %until, "rule silenced");
        Response::message(format!("rule `{rule}` silenced {until}"))
    }

    async fn unsilence(&mut self, rule: &str) -> Response {
        if !self.silences.remove(rule) {
            return Response::error(format!("rule `{rule}` is not silenced"));
        }
        let change = vec![(rule.to_string(), None)];
        if let Err(e) = blocking(&self.store, move |s| s.set_silences(&change)).await {
            return Response::error(format!("unsilenced until hark stops, but not saved: {e:#}"));
        }
        tracing::info!(rule, "rule unsilenced");
        Response::message(format!("rule `{rule}` unsilenced"))
    }
}
