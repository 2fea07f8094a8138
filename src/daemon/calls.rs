//! Calls over the control socket that change or read the daemon: status, silences,
//! explain, tail and the outbox are answered here; what changes something is logged with
//! who asked.

use std::time::{Duration, SystemTime};

use super::{blocking, Daemon};
use crate::control::{Call, Caller, Request, Response};
use crate::rule::SilenceNote as Note;

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
            Request::Silence {
                rule,
                for_secs,
                comment,
            } => {
                let note = Note {
                    by: Some(call.who.to_string()),
                    comment,
                };
                self.silence(&rule, for_secs.map(Duration::from_secs), note, &call.who)
                    .await
            }
            Request::Unsilence { rule } => self.unsilence(&rule, &call.who).await,
            Request::Explain { rule } => self.explain(&rule),
            Request::Tail { watch, rule } => self.tail(watch.as_deref(), rule.as_deref()),
            Request::Ping { watch, fields } => self.ping(&watch, fields).await,
            Request::Outbox => match self.actions.outbox.list().await {
                Ok(list) => Response {
                    outbox: Some(list),
                    ..Response::default()
                },
                Err(e) => Response::error(e),
            },
            Request::OutboxRetry { id } => match self.actions.outbox.retry(id).await {
                Ok(queued) => {
                    let ids: Vec<u64> = queued.iter().map(|e| e.id).collect();
                    tracing::info!(ids = ?ids, by = %call.who, "outbox: failed deliveries tried again");
                    if !ids.is_empty() {
                        self.tally
                            .changed(&call.who, format!("outbox: tried {ids:?} again"));
                    }
                    Response {
                        message: Some(match queued.len() {
                            0 => "no failed delivery to try again".to_string(),
                            n => format!("{n} failed delivery(ies) tried again: {ids:?}"),
                        }),
                        outbox: Some(queued),
                        ..Response::default()
                    }
                }
                Err(e) => Response::error(e),
            },
            Request::OutboxDrop { id } => match self.actions.outbox.drop_delivery(id).await {
                Ok(e) => {
                    tracing::info!(id, rule = %e.rule, action = %e.action, by = %call.who, "outbox: delivery dropped");
                    self.tally
                        .changed(&call.who, format!("outbox: dropped {id}"));
                    Response {
                        message: Some(format!(
                            "delivery {id} (rule {}, action {}) dropped",
                            e.rule, e.action
                        )),
                        outbox: Some(vec![e]),
                        ..Response::default()
                    }
                }
                Err(e) => Response::error(e),
            },
        };
        let _ = call.reply.send(response);
    }

    /// What is said of a rule that is not in the running configuration: the names that are.
    pub(super) fn no_rule(&self, rule: &str) -> String {
        let names: Vec<&str> = self.config.rules.keys().map(String::as_str).collect();
        match names.is_empty() {
            true => format!("no rule `{rule}` in the running configuration (it has none)"),
            false => format!(
                "no rule `{rule}` in the running configuration; its rules are: {}",
                names.join(", ")
            ),
        }
    }

    async fn silence(
        &mut self,
        rule: &str,
        duration: Option<Duration>,
        note: Note,
        who: &Caller,
    ) -> Response {
        if !self.config.rules.contains_key(rule) {
            return Response::error(self.no_rule(rule));
        }
        let now = SystemTime::now();
        let comment = note.comment.clone();
        let bytes = self.silences.set(rule, duration, now, note);
        let change = vec![(rule.to_string(), Some(bytes))];
        if let Err(e) = blocking(&self.store, move |s| s.set_silences(&change)).await {
            return Response::error(format!("silenced until hark stops, but not saved: {e:#}"));
        }
        let until = match duration {
            Some(d) => format!("until {}", crate::event::rfc3339(now + d)),
            None => "until `hark unsilence`".to_string(),
        };
        tracing::info!(rule, until = %until, by = %who, comment = comment.as_deref().unwrap_or(""), "rule silenced");
        self.tally
            .changed(who, format!("silenced rule `{rule}` {until}"));
        Response::message(format!("rule `{rule}` silenced {until}"))
    }

    async fn unsilence(&mut self, rule: &str, who: &Caller) -> Response {
        if !self.silences.remove(rule) {
            return Response::error(format!("rule `{rule}` is not silenced"));
        }
        let change = vec![(rule.to_string(), None)];
        if let Err(e) = blocking(&self.store, move |s| s.set_silences(&change)).await {
            return Response::error(format!("unsilenced until hark stops, but not saved: {e:#}"));
        }
        tracing::info!(rule, by = %who, "rule unsilenced");
        self.tally.changed(who, format!("unsilenced rule `{rule}`"));
        Response::message(format!("rule `{rule}` unsilenced"))
    }
}
