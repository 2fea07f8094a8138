//! The live trace behind `hark tail`: every event, each rule's verdict on it, and each
//! action's outcome, as lines broadcast to whoever listens.
//!
//! Publishing never waits: lines go into a bounded broadcast ring, and a listener that
//! falls behind loses the oldest lines and is told how many. Event and verdict lines are
//! only built while someone listens; action outcomes are always kept, the last few per
//! rule, for `hark explain`.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, LazyLock, Mutex};
use std::time::{Duration, SystemTime};

use serde::{Deserialize, Serialize};
use tokio::sync::broadcast;

/// Lines a listener may fall behind by before it loses some.
const CAPACITY: usize = 1024;

/// Action outcomes kept per rule for `hark explain`.
const KEPT_PER_RULE: usize = 10;

/// What a line is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    /// An event as it arrived from a watch.
    Event,
    /// A rule's verdict on an event (or on the end of a debounce window).
    Verdict,
    /// An action's outcome: started, finished, delivered, retrying, failed.
    Action,
    /// This listener fell behind and lost lines.
    Lost,
}

/// One line of the trace. `what` is a short code for tools (an event's kind; `pending`,
/// `firing`, `suppressed`...; `started`, `exited`, `delivered`, `retrying`...); `text` says
/// it in words.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Line {
    pub time: String,
    #[serde(rename = "type")]
    pub kind: Kind,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub watch: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rule: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub action: Option<String>,
    pub what: String,
    pub text: String,
    /// The group of a rule with `group_by` that this verdict is about.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group: Option<std::collections::BTreeMap<String, String>>,
    /// An event's fields.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fields: Option<serde_json::Value>,
    /// A shell action's exit code.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exit_code: Option<i32>,
    /// How long the action waited for its turn, or ran, in milliseconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub duration_ms: Option<f64>,
    /// When a failed delivery is attempted again.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_in_secs: Option<f64>,
    /// How many lines this listener lost.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lost: Option<u64>,
}

impl Line {
    pub fn new(kind: Kind, what: &str, text: String) -> Line {
        Line {
            time: crate::event::rfc3339(SystemTime::now()),
            kind,
            watch: None,
            rule: None,
            action: None,
            what: what.to_string(),
            text,
            group: None,
            fields: None,
            exit_code: None,
            duration_ms: None,
            retry_in_secs: None,
            lost: None,
        }
    }

    pub fn watch(mut self, w: &str) -> Line {
        self.watch = Some(w.to_string());
        self
    }

    pub fn rule(mut self, r: &str) -> Line {
        self.rule = Some(r.to_string());
        self
    }

    /// The firing's group, if it has one.
    pub fn group_of(mut self, f: Option<&crate::event::Firing>) -> Line {
        self.group = f
            .and_then(|f| f.group.as_ref())
            .map(|g| (*g.fields).clone());
        self
    }

    pub fn action(mut self, a: &str) -> Line {
        self.action = Some(a.to_string());
        self
    }

    pub fn took(mut self, d: Duration) -> Line {
        self.duration_ms = Some(d.as_secs_f64() * 1000.0);
        self
    }

    /// The line a listener gets in place of the `n` it lost.
    pub fn lost(n: u64) -> Line {
        let mut l = Line::new(
            Kind::Lost,
            "lost",
            format!(
                "{n} line(s) lost: this client read too slowly (the daemon never waits for it)"
            ),
        );
        l.lost = Some(n);
        l
    }

    /// For a person: time, what, where, and the words.
    pub fn render(&self) -> String {
        let time = self.time.get(11..23).unwrap_or(&self.time);
        let at = match (self.kind, &self.rule, &self.action, &self.watch) {
            (Kind::Action, Some(r), Some(a), _) => format!("{r} → {a}"),
            (Kind::Verdict, Some(r), _, _) => r.clone(),
            (_, _, _, Some(w)) => w.clone(),
            _ => String::new(),
        };
        let kind = match self.kind {
            Kind::Event => "event",
            Kind::Verdict => "rule",
            Kind::Action => "action",
            Kind::Lost => "LOST",
        };
        let at = match &self.group {
            Some(g) => format!("{at} [{}]", crate::event::group_text(g)),
            None => at,
        };
        let line = format!("{time} {kind:<6} {at:<24} {}", self.text);
        // Names and texts come from configuration, file names and receivers: no control
        // character reaches the terminal.
        line.chars()
            .map(|c| {
                if c.is_control() {
                    c.escape_default().to_string()
                } else {
                    c.to_string()
                }
            })
            .collect()
    }
}

static BUS: LazyLock<broadcast::Sender<Arc<Line>>> =
    LazyLock::new(|| broadcast::channel(CAPACITY).0);

static ACTIONS: LazyLock<Mutex<HashMap<String, VecDeque<Line>>>> =
    LazyLock::new(|| Mutex::new(HashMap::new()));

/// Someone is listening: worth building event and verdict lines.
pub fn active() -> bool {
    BUS.receiver_count() > 0
}

/// Sends a line to every listener; never waits. Action outcomes are also kept.
pub fn publish(line: Line) {
    if line.kind == Kind::Action {
        if let Some(rule) = &line.rule {
            let mut kept = ACTIONS.lock().unwrap_or_else(|p| p.into_inner());
            let list = kept.entry(rule.clone()).or_default();
            if list.len() == KEPT_PER_RULE {
                list.pop_front();
            }
            list.push_back(line.clone());
        }
    }
    if active() {
        let _ = BUS.send(Arc::new(line));
    }
}

/// A new listener, from the next line on.
pub fn subscribe() -> broadcast::Receiver<Arc<Line>> {
    BUS.subscribe()
}

/// The last action outcomes of a rule, oldest first.
pub fn last_actions(rule: &str) -> Vec<Line> {
    let kept = ACTIONS.lock().unwrap_or_else(|p| p.into_inner());
    kept.get(rule)
        .map(|l| l.iter().cloned().collect())
        .unwrap_or_default()
}

/// What `hark tail --watch W --rule R` lets through. A rule filter keeps the events of the
/// watches the rule hears (`watches`), so each verdict is seen with what it judged.
#[derive(Debug, Clone, Default)]
pub struct Filter {
    pub watch: Option<String>,
    pub rule: Option<String>,
    pub watches: Vec<String>,
}

impl Filter {
    pub fn passes(&self, l: &Line) -> bool {
        if l.kind == Kind::Lost {
            return true;
        }
        if let Some(w) = &self.watch {
            if l.watch.as_deref() != Some(w.as_str()) {
                return false;
            }
        }
        match &self.rule {
            None => true,
            Some(r) if l.kind == Kind::Event => {
                l.watch.as_ref().is_some_and(|w| self.watches.contains(w))
                    || l.rule.as_deref() == Some(r.as_str())
            }
            Some(r) => l.rule.as_deref() == Some(r.as_str()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(kind: Kind, watch: &str, rule: Option<&str>) -> Line {
        let mut l = Line::new(kind, "x", String::new()).watch(watch);
        l.rule = rule.map(String::from);
        l
    }

    #[test]
    fn a_rule_filter_keeps_the_events_of_its_watches_and_its_own_lines() {
        let f = Filter {
            watch: None,
            rule: Some("r".into()),
            watches: vec!["w".into()],
        };
        assert!(f.passes(&line(Kind::Event, "w", None)));
        assert!(!f.passes(&line(Kind::Event, "other", None)));
        assert!(f.passes(&line(Kind::Verdict, "w", Some("r"))));
        assert!(!f.passes(&line(Kind::Verdict, "w", Some("q"))));
        assert!(f.passes(&line(Kind::Action, "w", Some("r"))));
        assert!(f.passes(&Line::lost(3)));
    }

    #[test]
    fn a_rendered_line_carries_no_control_character() {
        let l = Line::new(Kind::Verdict, "x", "a\u{1b}[31m\nb".into()).rule("r\rq");
        let text = l.render();
        assert!(!text.chars().any(char::is_control), "{text:?}");
        assert!(text.contains("a\\u{1b}[31m\\nb"), "{text:?}");
    }

    #[test]
    fn a_watch_filter_keeps_only_that_watch() {
        let f = Filter {
            watch: Some("w".into()),
            ..Filter::default()
        };
        assert!(f.passes(&line(Kind::Verdict, "w", Some("r"))));
        assert!(!f.passes(&line(Kind::Verdict, "v", Some("r"))));
    }

    #[test]
    fn a_listener_that_falls_behind_is_told_how_many_lines_it_lost() {
        let mut rx = subscribe();
        for i in 0..CAPACITY + 5 {
            publish(Line::new(Kind::Event, "x", i.to_string()));
        }
        match rx.try_recv() {
            Err(broadcast::error::TryRecvError::Lagged(n)) => assert!(n >= 5, "{n}"),
            other => panic!("{other:?}"),
        }
    }
}
