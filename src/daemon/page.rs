//! The status page at `/`: for a person, server-rendered HTML with nothing from elsewhere
//! (inline CSS and SVG, no script), refreshing itself every few seconds. Firing rules
//! first; watches and their last events; the latest action outcomes; the outbox;
//! silences; each periodic check's duration over the last hour, drawn.

use std::fmt::Write as _;

use crate::control::Status;

/// Seconds between refreshes.
const REFRESH: u32 = 5;

/// `s` safe inside HTML text and attribute values.
pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

const STYLE: &str = "body{font:14px/1.4 system-ui,sans-serif;margin:1.5em;color:#222}\
h1{font-size:1.3em}h2{font-size:1.1em;margin-top:1.6em}\
table{border-collapse:collapse}td,th{padding:.2em .8em;border-bottom:1px solid #ddd;text-align:left;vertical-align:top}\
.firing{color:#fff;background:#c0392b;padding:0 .4em;border-radius:3px}\
.pending{background:#f1c40f;padding:0 .4em;border-radius:3px}\
.ok{color:#1e8449}.muted{color:#777}code{font-size:.9em;word-break:break-all}svg{background:#fafafa;border:1px solid #ddd}";

/// The page for `s`; `hour` is each periodic check's longest duration per 30 s over the
/// last hour (time, ms).
pub fn render(s: &Status, hour: &[(String, Vec<(f64, f32)>)]) -> String {
    let mut h = String::new();
    let firing = s.rules.iter().filter(|r| r.state == "firing").count();
    let _ = write!(
        h,
        "<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta http-equiv=\"refresh\" content=\"{REFRESH}\">\
         <meta name=\"viewport\" content=\"width=device-width\">\
         <title>{} hark: {firing} firing</title><style>{STYLE}</style></head><body>",
        if firing > 0 { "⚠" } else { "✓" }
    );
    let _ = write!(
        h,
        "<h1>hark {}</h1><p class=\"muted\">pid {}, running since {}; this page refreshes \
         every {REFRESH} s. <a href=\"/api/status\">JSON</a> · <a href=\"/metrics\">metrics</a></p>",
        escape(&s.version),
        s.pid,
        escape(&s.started)
    );
    rules(&mut h, s);
    watches(&mut h, s);
    actions(&mut h, s);
    outbox(&mut h, s);
    maintenance(&mut h, s);
    graphs(&mut h, hour);
    if let Some(r) = &s.last_reload {
        let _ = write!(
            h,
            "<h2>Last reload</h2><p>{} at {}{}</p>",
            if r.ok { "applied" } else { "refused" },
            escape(&r.time),
            r.errors
                .iter()
                .map(|e| format!("<br><code>{}</code>", escape(e)))
                .collect::<String>()
        );
    }
    h.push_str("</body></html>\n");
    h
}

/// Maintenance windows: open now until when, the next one.
fn maintenance(h: &mut String, s: &Status) {
    if s.maintenance.is_empty() {
        return;
    }
    h.push_str("<h2>Maintenance windows</h2><table id=\"maintenance\"><tr><th>window</th><th>rules</th><th>open until</th><th>next</th></tr>");
    for w in &s.maintenance {
        let _ = write!(
            h,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            escape(&w.name),
            escape(&w.rules.join(", ")),
            escape(w.active_until.as_deref().unwrap_or("")),
            escape(w.next_local.as_deref().unwrap_or("none")),
        );
    }
    h.push_str("</table>");
}

fn rules(h: &mut String, s: &Status) {
    let mut rules: Vec<_> = s.rules.iter().collect();
    // Firing first, then pending, then the rest; longest firing first.
    let rank = |state: &str| match state {
        "firing" => 0,
        "pending" => 1,
        _ => 2,
    };
    rules.sort_by(|a, b| {
        rank(&a.state)
            .cmp(&rank(&b.state))
            .then_with(|| a.since.cmp(&b.since))
    });
    h.push_str("<h2>Rules</h2><table id=\"rules\"><tr><th>rule</th><th>watch</th><th>group</th><th>state</th><th>since</th><th>silenced until</th></tr>");
    for r in rules {
        let group = r
            .group
            .as_ref()
            .map(|g| {
                g.iter()
                    .map(|(k, v)| format!("{k}={v}"))
                    .collect::<Vec<_>>()
                    .join(" ")
            })
            .unwrap_or_default();
        let mut silenced = match &r.silenced_until {
            Some(u) if u.is_empty() => "until unsilenced".to_string(),
            Some(u) => u.clone(),
            None => String::new(),
        };
        if let (false, Some(by)) = (silenced.is_empty(), &r.silenced_by) {
            silenced.push_str(&format!(" by {by}"));
        }
        if let (false, Some(c)) = (silenced.is_empty(), &r.silence_comment) {
            silenced.push_str(&format!(": {c}"));
        }
        if let Some(m) = &r.maintenance {
            silenced.push_str(&format!(" maintenance {m}"));
        }
        // How long, in words, beside when: "firing for 3h 12m".
        let since = match (r.since.as_deref(), since_words(r.since.as_deref())) {
            (Some(at), Some(d)) => format!("{} for {d} (since {at})", r.state),
            (Some(at), None) => at.to_string(),
            (None, _) => String::new(),
        };
        let since = match &r.summary {
            Some(s) if !s.is_empty() => format!("{since}: {s}"),
            _ => since,
        };
        let since = match &r.expected_by {
            Some(t) => format!("{since}; a match due by {t}"),
            None => since,
        };
        let _ = write!(
            h,
            "<tr data-rule=\"{n}\" data-state=\"{st}\"><td>{n}</td><td>{w}</td><td>{g}</td>\
             <td><span class=\"{st}\">{st}</span></td><td>{since}</td><td>{sil}</td></tr>",
            n = escape(&r.name),
            w = escape(r.watch.as_deref().unwrap_or("")),
            g = escape(&group),
            st = escape(&r.state),
            since = escape(&since),
            sil = escape(&silenced),
        );
    }
    h.push_str("</table>");
}

/// How long ago an RFC 3339 time was, in words to the minute ("3h 12m"); `None` when it
/// does not parse.
fn since_words(at: Option<&str>) -> Option<String> {
    let at = humantime::parse_rfc3339_weak(at?.trim_end_matches('Z')).ok()?;
    let ago = std::time::SystemTime::now().duration_since(at).ok()?;
    let minutes = ago.as_secs() / 60;
    Some(match (minutes / 1440, minutes / 60 % 24, minutes % 60) {
        (0, 0, 0) => format!("{}s", ago.as_secs()),
        (0, 0, m) => format!("{m}m"),
        (0, h, m) => format!("{h}h {m}m"),
        (d, h, _) => format!("{d}d {h}h"),
    })
}

fn watches(h: &mut String, s: &Status) {
    h.push_str("<h2>Watches</h2><table id=\"watches\"><tr><th>watch</th><th>type</th><th>events</th><th>last event</th><th>last fields</th></tr>");
    for w in &s.watches {
        let mut last = w.last.as_ref().map(|v| v.to_string()).unwrap_or_default();
        if let Some(i) = last.char_indices().nth(300).map(|(i, _)| i) {
            last.truncate(i);
            last.push('…');
        }
        let mut notes = String::new();
        if let Some(e) = &w.last_error {
            let _ = write!(notes, "<br><span class=\"firing\">{}</span>", escape(e));
        }
        for p in &w.problems {
            let _ = write!(notes, "<br><span class=\"pending\">{}</span>", escape(p));
        }
        let _ = write!(
            h,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td><code>{}</code>{notes}</td></tr>",
            escape(&w.name),
            escape(&w.kind),
            w.events,
            escape(w.last_event.as_deref().unwrap_or("none yet")),
            escape(&last)
        );
    }
    h.push_str("</table>");
}

fn actions(h: &mut String, s: &Status) {
    let _ = write!(
        h,
        "<h2>Latest actions</h2><p class=\"muted\">{} running, {} waiting for a slot</p>",
        s.actions.running, s.actions.queued
    );
    let mut lines: Vec<crate::trace::Line> = s
        .rules
        .iter()
        .map(|r| r.name.as_str())
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .flat_map(crate::trace::last_actions)
        .collect();
    lines.sort_by(|a, b| b.time.cmp(&a.time));
    lines.truncate(20);
    if lines.is_empty() {
        h.push_str("<p>none yet</p>");
        return;
    }
    h.push_str(
        "<table id=\"actions\"><tr><th>time</th><th>rule</th><th>action</th><th>outcome</th></tr>",
    );
    for l in lines {
        let _ = write!(
            h,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            escape(&l.time),
            escape(l.rule.as_deref().unwrap_or("")),
            escape(l.action.as_deref().unwrap_or("")),
            escape(&l.text)
        );
    }
    h.push_str("</table>");
}

fn outbox(h: &mut String, s: &Status) {
    let o = &s.outbox;
    let _ = write!(
        h,
        "<h2>Outbox</h2><p>{} pending{}, {} failed</p>",
        o.pending,
        o.oldest_pending
            .as_ref()
            .map(|t| format!(" (oldest accepted {})", escape(t)))
            .unwrap_or_default(),
        o.failed.len()
    );
    if let Some(e) = &o.error {
        let _ = write!(h, "<p class=\"firing\">{}</p>", escape(e));
    }
    if !o.failed.is_empty() {
        h.push_str("<table id=\"failed\"><tr><th>rule</th><th>action</th><th>state</th><th>accepted</th><th>attempts</th><th>why</th></tr>");
        for f in &o.failed {
            let _ = write!(
                h,
                "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                escape(&f.rule),
                escape(&f.action),
                escape(&f.state),
                escape(&f.accepted),
                f.attempts,
                escape(&f.error)
            );
        }
        h.push_str("</table>");
    }
}

/// Each periodic check's duration over the last hour, as an inline SVG line.
fn graphs(h: &mut String, hour: &[(String, Vec<(f64, f32)>)]) {
    if hour.is_empty() {
        return;
    }
    h.push_str("<h2>Check durations, last hour</h2>");
    let (w, ht) = (600.0_f64, 80.0_f64);
    for (watch, points) in hour {
        let Some(&(last_t, _)) = points.last() else {
            continue;
        };
        let max = points
            .iter()
            .map(|p| p.1)
            .fold(0.0_f32, f32::max)
            .max(0.001) as f64;
        // The hour, or as much of it as there are points for.
        let first_t = points.first().map_or(last_t, |p| p.0);
        let span = (last_t - first_t).clamp(1.0, 3600.0);
        let start = last_t - span;
        let coords: Vec<String> = points
            .iter()
            .map(|(t, ms)| {
                let x = ((t - start) / span * w).clamp(0.0, w);
                let y = ht - (*ms as f64 / max * (ht - 4.0)) - 2.0;
                format!("{x:.1},{y:.1}")
            })
            .collect();
        let _ = write!(
            h,
            "<p>{} <span class=\"muted\">(max {max:.1} ms; the longest check of each 30 s, \
             over {})</span><br>\
             <svg width=\"{w}\" height=\"{ht}\" viewBox=\"0 0 {w} {ht}\" role=\"img\" \
             aria-label=\"{} check duration\"><polyline fill=\"none\" stroke=\"#2471a3\" \
             stroke-width=\"1.5\" points=\"{}\"/></svg></p>",
            escape(watch),
            crate::event::human_duration(std::time::Duration::from_secs(span as u64)),
            escape(watch),
            coords.join(" ")
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::control::{RuleStatus, WatchStatus};

    #[test]
    fn a_firing_rule_says_for_how_long_in_words() {
        let at = |ago: u64| {
            crate::event::rfc3339(
                std::time::SystemTime::now() - std::time::Duration::from_secs(ago),
            )
        };
        assert_eq!(
            since_words(Some(&at(3 * 3600 + 12 * 60 + 5))).as_deref(),
            Some("3h 12m")
        );
        assert_eq!(since_words(Some(&at(42))).as_deref(), Some("42s"));
        assert_eq!(
            since_words(Some(&at(2 * 86400 + 3600))).as_deref(),
            Some("2d 1h")
        );
        assert_eq!(since_words(Some("not a time")), None);
    }

    #[test]
    fn names_are_escaped_and_firing_rules_come_first() {
        let s = Status {
            rules: vec![
                RuleStatus {
                    name: "calm".into(),
                    state: "ok".into(),
                    ..RuleStatus::default()
                },
                RuleStatus {
                    name: "<script>alert(1)</script>".into(),
                    state: "firing".into(),
                    since: Some("2026-12-02T04:00:00Z".into()),
                    ..RuleStatus::default()
                },
            ],
            watches: vec![WatchStatus {
                name: "w\"x".into(),
                kind: "http".into(),
                ..WatchStatus::default()
            }],
            ..Status::default()
        };
        let page = render(&s, &[("api".into(), vec![(1.0, 3.0), (2.0, 5.0)])]);
        assert!(!page.contains("<script>"), "{page}");
        assert!(page.contains("&lt;script&gt;alert(1)&lt;/script&gt;"));
        assert!(page.contains("w&quot;x"));
        let firing = page.find("data-state=\"firing\"").unwrap();
        let ok = page.find("data-state=\"ok\"").unwrap();
        assert!(firing < ok);
        assert!(page.contains("<svg") && page.contains("<polyline"));
        assert!(page.contains("http-equiv=\"refresh\""));
    }
}
