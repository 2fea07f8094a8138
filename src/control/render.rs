//! `hark status` for a person: the status as text.

use super::Status;

/// `hark status` for a person.
pub fn render(s: &Status) -> String {
    let mut out = format!(
        "hark {} (pid {}), running since {}\nconfiguration: {}\n",
        s.version,
        s.pid,
        s.started,
        s.config_files.join(", ")
    );
    if let Some(r) = &s.last_reload {
        if r.ok {
            out.push_str(&format!("last reload: ok at {}\n", r.time));
        } else {
            out.push_str(&format!(
                "last reload: FAILED at {} (the previous configuration is still running):\n",
                r.time
            ));
            for e in &r.errors {
                for l in e.lines() {
                    out.push_str(&format!("  {l}\n"));
                }
            }
        }
    }
    out.push_str(&format!("\nwatches ({}):\n", s.watches.len()));
    for w in &s.watches {
        let last = w.last_event.as_deref().unwrap_or("no event yet");
        out.push_str(&format!(
            "  {:<20} {:<8} {:>7} events  last {last}",
            w.name, w.kind, w.events
        ));
        if let Some(e) = &w.last_error {
            out.push_str(&format!("  error: {e}"));
        }
        out.push('\n');
        for p in &w.problems {
            out.push_str(&format!("    not watched: {p}\n"));
        }
    }
    render_rules(&mut out, s);
    out.push_str(&format!(
        "\nactions: {} running, {} queued\n",
        s.actions.running, s.actions.queued
    ));
    let o = &s.outbox;
    out.push_str(&format!("outbox: {} pending", o.pending));
    if let Some(t) = &o.oldest_pending {
        out.push_str(&format!(" (oldest accepted {t})"));
    }
    out.push_str(&format!(", {} failed\n", o.failed.len()));
    if let Some(e) = &o.error {
        out.push_str(&format!("  cannot read the outbox: {e}\n"));
    }
    for f in &o.failed {
        out.push_str(&format!(
            "  failed: rule {} action {} ({}) accepted {}, {} attempt(s): {}\n",
            f.rule, f.action, f.state, f.accepted, f.attempts, f.error
        ));
    }
    for r in &o.retrying {
        out.push_str(&format!(
            "  retrying: rule {} action {} ({}) accepted {}, {} attempt(s), last: {}; next at {}\n",
            r.rule,
            r.action,
            r.state,
            r.accepted,
            r.attempts,
            r.last_error.as_deref().unwrap_or("-"),
            r.next_attempt.as_deref().unwrap_or("-")
        ));
    }
    render_listener(&mut out, s);
    out.push_str(&render_timing(&s.timing));
    out
}

/// Each rule's state, silence and window.
fn render_rules(out: &mut String, s: &Status) {
    out.push_str(&format!("\nrules ({}):\n", s.rules.len()));
    for r in &s.rules {
        let watch = match (&r.watch, &r.group) {
            (Some(w), Some(g)) => format!("{w} [{}]", crate::event::group_text(g)),
            (Some(w), None) => w.clone(),
            (None, _) => "-".to_string(),
        };
        out.push_str(&format!("  {:<20} {:<20} {:<8}", r.name, watch, r.state));
        if let Some(since) = &r.since {
            out.push_str(&format!(" since {since}"));
        }
        if let Some(n) = r.groups {
            out.push_str(&format!("  ({n} groups)"));
        }
        if let Some(t) = &r.expected_by {
            out.push_str(&format!("  a match due by {t}"));
        }
        match r.silenced_until.as_deref() {
            Some("") => out.push_str("  silenced"),
            Some(t) => out.push_str(&format!("  silenced until {t}")),
            None => {}
        }
        if let (Some(_), Some(by)) = (&r.silenced_until, &r.silenced_by) {
            out.push_str(&format!(" by {by}"));
        }
        if let (Some(_), Some(c)) = (&r.silenced_until, &r.silence_comment) {
            out.push_str(&format!(" ({c:?})"));
        }
        if let Some(m) = &r.maintenance {
            out.push_str(&format!("  in maintenance {m}"));
        }
        out.push('\n');
    }
}

/// Maintenance windows, the latest changes and who made them, the listener's problems.
fn render_listener(out: &mut String, s: &Status) {
    if !s.maintenance.is_empty() {
        out.push_str("\nmaintenance windows:\n");
    }
    for w in &s.maintenance {
        out.push_str(&format!("  {:<20} rules {}", w.name, w.rules.join(", ")));
        if let Some(t) = &w.active_until {
            out.push_str(&format!("  OPEN until {t}"));
        }
        match &w.next_local {
            Some(n) => out.push_str(&format!("  next {n}\n")),
            None => out.push_str("  no next window\n"),
        }
    }
    if !s.changes.is_empty() {
        out.push_str("\nchanges (the latest, oldest first):\n");
    }
    for c in &s.changes {
        out.push_str(&format!("  {} by {}: {}\n", c.time, c.by, c.what));
    }
    for p in &s.listener_problems {
        out.push_str(&format!("\nhttp listener: {p}\n"));
    }
}

/// Where the time goes, for a person: p50 / p99 of the last samples.
fn render_timing(t: &crate::metrics::TimingStatus) -> String {
    fn q(label: &str, q: &Option<crate::metrics::Quantiles>) -> String {
        match q {
            Some(q) => format!(
                "{label} p50 {:.1} ms, p99 {:.1} ms (n={})",
                q.p50_ms, q.p99_ms, q.n
            ),
            None => format!("{label} -"),
        }
    }
    let mut out = String::from("\ntiming (the last 1000 samples of each):\n");
    for w in &t.watches {
        out.push_str(&format!(
            "  watch  {:<20} {:<44} {}\n",
            w.name,
            q("check", &w.check),
            q("lag", &w.lag)
        ));
    }
    for a in &t.actions {
        out.push_str(&format!(
            "  action {:<20} {:<44} {}\n",
            a.name,
            q("wait", &a.wait),
            q("run", &a.run)
        ));
    }
    let r = &t.runtime;
    out.push_str(&format!(
        "runtime: event queue {}/{} (max {} in the last minute), timer lag {:.1} ms (max {:.1} ms in the last minute), {} tasks\n",
        r.event_queue_depth,
        r.event_queue_capacity,
        r.event_queue_max,
        r.loop_lag_ms,
        r.loop_lag_max_ms,
        r.tasks
    ));
    out
}

/// `hark outbox` for a person: one line per delivery, failed ones with why.
pub fn outbox(list: &[super::OutboxEntry]) -> String {
    if list.is_empty() {
        return "the outbox is empty\n".to_string();
    }
    let mut out = String::new();
    for e in list {
        let what = match &e.failed {
            Some(_) => "failed ",
            None => "pending",
        };
        out.push_str(&format!(
            "{:>6}  {what}  rule {} action {} ({}), accepted {}, {} attempt(s)",
            e.id, e.rule, e.action, e.state, e.accepted, e.attempts
        ));
        if let Some(r) = &e.route {
            out.push_str(&format!(", to {r:?}"));
        }
        if let Some(s) = &e.subject {
            out.push_str(&format!(", subject {s:?}"));
        }
        if let Some(why) = &e.failed {
            out.push_str(&format!(": {why}"));
        }
        if let Some(why) = &e.last_error {
            out.push_str(&format!(": last attempt failed: {why}"));
        }
        if let Some(t) = &e.next_attempt {
            out.push_str(&format!("; next attempt at {t}"));
        }
        out.push('\n');
    }
    out
}

/// `hark tail` for a person. A burst gives one rule the same verdict many times (50
/// matches held in a debounce window): the first is shown and the rest folded into one
/// "×N" line when that rule's next verdict differs.
#[derive(Default)]
pub struct TailText {
    repeats: std::collections::HashMap<String, (String, u64)>,
}

impl TailText {
    /// What to print for `line`, if anything yet.
    pub fn line(&mut self, line: &crate::trace::Line) -> Option<String> {
        let mut text = String::new();
        if let (crate::trace::Kind::Verdict, Some(rule)) = (line.kind, &line.rule) {
            match self.repeats.get_mut(rule) {
                Some((last, n)) if *last == line.text => {
                    *n += 1;
                    return None;
                }
                Some((last, n)) if *n > 0 => {
                    text.push_str(&format!(
                        "{:12} {:<6} {rule:<24} ×{} {last}\n",
                        "",
                        "rule",
                        *n + 1
                    ));
                }
                _ => {}
            }
            self.repeats.insert(rule.clone(), (line.text.clone(), 0));
        }
        text.push_str(&line.render());
        Some(text)
    }
}
