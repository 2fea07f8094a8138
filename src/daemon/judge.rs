//! Judging: an event counted, traced and handed to the engine; the engine's timers.

use std::sync::Arc;
use std::time::{Instant, SystemTime};

use super::pulse::WatchSeries;
use super::Daemon;
use crate::event::{Event, Firing, FiringState};
use crate::trace::{Kind, Line};

impl Daemon {
    pub(super) fn on_event(&mut self, ev: Arc<Event>) -> Vec<Firing> {
        if let Some(c) = &ev.cursor {
            // Stored with what this event leads to, in the batch's one transaction.
            self.unsaved
                .positions
                .insert(Arc::clone(&c.key), c.value.clone());
            self.unsaved
                .positions_since
                .get_or_insert_with(Instant::now);
            if c.only {
                return Vec::new();
            }
        }
        let seen = self
            .tally
            .seen
            .entry(Arc::clone(&ev.watch))
            .or_insert_with(|| (0, Arc::clone(&ev)));
        seen.0 += 1;
        seen.1 = Arc::clone(&ev);
        let m = crate::metrics::get();
        let series = self
            .tally
            .series
            .entry(Arc::clone(&ev.watch))
            .or_insert_with(|| WatchSeries::of(&ev.watch));
        series.events.inc();
        if let Some(secs) = crate::watch::check_seconds(&ev) {
            m.observe_check(&ev.watch, secs);
        }
        let lag = SystemTime::now()
            .duration_since(ev.time)
            .unwrap_or_default();
        series.lag.observe(lag.as_secs_f64());
        m.timings.lag(&ev.watch, lag.as_secs_f64());
        let tracing = crate::trace::active();
        if tracing {
            crate::trace::publish(trace_event(&ev));
        }
        let decisions = self.engine.decide(Arc::clone(&ev), Instant::now());
        if tracing {
            for d in &decisions {
                crate::trace::publish(
                    Line::new(Kind::Verdict, d.verdict.code(), d.verdict.to_string())
                        .watch(&ev.watch)
                        .rule(&d.rule)
                        .group_of(d.firing.as_ref()),
                );
            }
        }
        decisions.into_iter().filter_map(|d| d.firing).collect()
    }

    /// Firings of debounce windows that have ended, and resolves of groups quiet for
    /// `resolve_after`.
    pub(super) fn on_tick(&mut self) -> Vec<Firing> {
        let firings = self.engine.on_tick(Instant::now());
        for note in self.engine.take_tick_notes() {
            crate::trace::publish(
                Line::new(Kind::Verdict, note.code, note.text)
                    .watch(&note.watch)
                    .rule(&note.rule),
            );
        }
        for f in firings.iter().filter(|f| f.state == FiringState::Resolved) {
            let text = format!(
                "no match for resolve_after; resolves after firing for {}",
                crate::event::human_duration(f.duration)
            );
            crate::trace::publish(
                Line::new(Kind::Verdict, f.state.as_str(), text)
                    .watch(&f.event.watch)
                    .rule(&f.rule)
                    .group_of(Some(f)),
            );
        }
        firings
    }
}

/// An event as a trace line: its kind (or source) and its fields, in words and as JSON.
/// Strings are written quoted and escaped, so a file name cannot pass for another line.
fn trace_event(ev: &Event) -> Line {
    let fields = crate::event::event_json_shown(&ev.fields);
    let mut words: Vec<String> = Vec::new();
    if let Some(obj) = fields.as_object() {
        for (k, v) in obj {
            if k == "kind" {
                continue;
            }
            let v = v.to_string();
            let v = match v.char_indices().nth(120) {
                Some((i, _)) => format!("{}…", &v[..i]),
                None => v,
            };
            words.push(format!("{k}={v}"));
        }
    }
    let what = ev.kind().unwrap_or(ev.source);
    let mut line =
        Line::new(Kind::Event, what, format!("{what} {}", words.join(" "))).watch(&ev.watch);
    line.fields = Some(fields);
    line
}
