//! `hark test`: sample every watch once (or take a synthetic event), show each rule's
//! verdict and the actions it would run, fully rendered. Nothing is executed unless asked
//! (`--execute`), and no state is read or written: the verdicts are those of a freshly
//! started daemon.

use std::fmt::Write as _;
use std::sync::Arc;
use std::time::{Instant, SystemTime};

use serde_json::{Map, Value};

use crate::action::Dispatcher;
use crate::config::{Config, WatchKind};
use crate::event::{display_lossy, Event, Firing, FiringState};
use crate::rule::Engine;
use crate::watch::http::{self, Clients};
use crate::watch::{certificate, command, dns, ping, process, system, tcp};

/// A `--event` that cannot be used, said to the user as is.
#[derive(Debug, thiserror::Error)]
#[error("--event: {0}")]
pub struct EventError(String);

/// Builds the event `--event 'WATCH key=value ...'` describes. Values are read as JSON
/// when they parse as JSON (`503`, `true`, `"text"`, `{"a": 1}`), else as text; a dotted
/// key (`json.status=up`) builds nested objects.
pub fn parse_event(config: &Config, spec: &str) -> Result<Event, EventError> {
    let words = split_words(spec)?;
    let Some((watch, pairs)) = words.split_first() else {
        return Err(EventError(
            "empty: write it as 'WATCH key=value ...'".into(),
        ));
    };
    let Some(w) = config.watches.get(watch) else {
        let known: Vec<&str> = config.watches.keys().map(String::as_str).collect();
        return Err(EventError(format!(
            "no watch named `{watch}` (defined: {})",
            known.join(", ")
        )));
    };
    let mut fields = Map::new();
    for pair in pairs {
        let Some((key, raw)) = pair.split_once('=') else {
            return Err(EventError(format!("{pair:?} is not key=value")));
        };
        let value = serde_json::from_str::<Value>(raw).unwrap_or_else(|_| Value::from(raw));
        insert_dotted(&mut fields, key, value)?;
    }
    Ok(Event {
        watch: Arc::from(watch.as_str()),
        source: w.kind.type_name(),
        time: SystemTime::now(),
        host: Arc::from(config.daemon.host.as_str()),
        edge: w.kind.is_edge(fields.get("kind").and_then(Value::as_str)),
        fields,
        cursor: None,
    })
}

fn insert_dotted(map: &mut Map<String, Value>, key: &str, value: Value) -> Result<(), EventError> {
    match key.split_once('.') {
        None if key.is_empty() => Err(EventError("an empty key".into())),
        None => {
            map.insert(key.to_string(), value);
            Ok(())
        }
        Some((head, rest)) => {
            let inner = map
                .entry(head.to_string())
                .or_insert_with(|| Value::Object(Map::new()));
            match inner {
                Value::Object(m) => insert_dotted(m, rest, value),
                _ => Err(EventError(format!(
                    "`{head}` is both a value and an object"
                ))),
            }
        }
    }
}

/// Splits on whitespace, keeping quoted ('...' or "...") parts together.
fn split_words(s: &str) -> Result<Vec<String>, EventError> {
    let mut words = Vec::new();
    let mut cur = String::new();
    let mut in_word = false;
    let mut quote: Option<char> = None;
    for c in s.chars() {
        match (quote, c) {
            (Some(q), c) if c == q => quote = None,
            (Some(_), c) => cur.push(c),
            (None, '\'' | '"') => {
                quote = Some(c);
                in_word = true;
            }
            (None, c) if c.is_whitespace() => {
                if in_word {
                    words.push(std::mem::take(&mut cur));
                    in_word = false;
                }
            }
            (None, c) => {
                cur.push(c);
                in_word = true;
            }
        }
    }
    if quote.is_some() {
        return Err(EventError("a quote is not closed".into()));
    }
    if in_word {
        words.push(cur);
    }
    Ok(words)
}

/// Samples every watch that can be sampled once; says why the others were not.
pub async fn sample_all(config: &Config) -> anyhow::Result<(Vec<Event>, Vec<String>)> {
    let clients = Clients::for_watches(config.watches.values())?;
    let host: Arc<str> = Arc::from(config.daemon.host.as_str());
    let mut checks = tokio::task::JoinSet::new();
    // Checks of several events (a certificate watch's files).
    let mut files = tokio::task::JoinSet::new();
    let mut notes = Vec::new();
    // Ping watches are sampled together, over one socket.
    let mut pings = Vec::new();
    for (name, w) in &config.watches {
        match &w.kind {
            WatchKind::Http(h) => {
                let (client, h, name, host) = (
                    clients.get(h)?,
                    h.clone(),
                    Arc::from(name.as_str()),
                    Arc::clone(&host),
                );
                checks.spawn(async move {
                    state_event(name, "http", host, http::check(&client, &h).await)
                });
            }
            WatchKind::Process(p) => {
                let (p, name, host) = (p.clone(), Arc::from(name.as_str()), Arc::clone(&host));
                checks.spawn(async move {
                    let fields = tokio::task::spawn_blocking(move || process::sample_once(&p))
                        .await
                        .unwrap_or_default();
                    state_event(name, "process", host, fields)
                });
            }
            WatchKind::System(s) => {
                let (s, name, host) = (s.clone(), Arc::from(name.as_str()), Arc::clone(&host));
                checks.spawn(async move {
                    let fields = tokio::task::spawn_blocking(move || {
                        // CPU usage needs two readings; a short gap gives a rough figure.
                        let mut sampler = system::Sampler::default();
                        std::thread::sleep(std::time::Duration::from_millis(200));
                        sampler.sample(&s)
                    })
                    .await
                    .unwrap_or_default();
                    state_event(name, "system", host, fields)
                });
            }
            WatchKind::Tcp(t) => {
                let (t, name, host) = (t.clone(), Arc::from(name.as_str()), Arc::clone(&host));
                checks.spawn(async move { state_event(name, "tcp", host, tcp::check(&t).await) });
            }
            WatchKind::Ping(p) => pings.push((Arc::from(name.as_str()), p.clone())),
            WatchKind::Certificate(c) => {
                let (c, name, host) = (c.clone(), Arc::from(name.as_str()), Arc::clone(&host));
                files.spawn(async move {
                    let all = certificate::check(Arc::new(c), None).await;
                    all.into_iter()
                        .map(|f| {
                            state_event(Arc::clone(&name), "certificate", Arc::clone(&host), f)
                        })
                        .collect::<Vec<_>>()
                });
            }
            WatchKind::Dns(d) => {
                let (d, name, host) = (d.clone(), Arc::from(name.as_str()), Arc::clone(&host));
                checks.spawn(async move { state_event(name, "dns", host, dns::check(&d).await) });
            }
            WatchKind::Command(c) => {
                let (c, name, host) = (c.clone(), Arc::from(name.as_str()), Arc::clone(&host));
                checks.spawn(async move {
                    let stop = tokio_util::sync::CancellationToken::new();
                    state_event(name, "command", host, command::check(&c, &stop).await)
                });
            }
            other => notes.extend(not_sampled(name, other)),
        }
    }
    if !pings.is_empty() {
        files.spawn(ping::check_all(pings, Arc::clone(&host)));
    }
    let mut events = Vec::new();
    while let Some(e) = checks.join_next().await {
        events.push(e?);
    }
    while let Some(e) = files.join_next().await {
        events.extend(e?);
    }
    events.sort_by(|a, b| a.watch.cmp(&b.watch));
    Ok((events, notes))
}

/// Why a watch is not sampled once, and how to try its rules instead.
fn not_sampled(name: &str, kind: &WatchKind) -> Option<String> {
    match kind {
        WatchKind::Heartbeat(_) => Some(format!(
            "watch `{name}` (heartbeat) hears `hark ping {name}` while hark runs. \
                 Try: hark test --event '{name} kind=success'"
        )),
        WatchKind::Push(_) => Some(format!(
            "watch `{name}` (push) hears requests to /push/{name} on the HTTP listener \
                 while hark runs. Try: hark test --event '{name} kind=success'"
        )),
        WatchKind::Container(_) => Some(format!(
            "watch `{name}` (container) follows the container API's events while hark runs. \
             Try: hark test --event '{name} kind=die name=web image=nginx exit_code=137'"
        )),
        WatchKind::File(_) => Some(format!(
            "watch `{name}` (file) reports changes as they happen; nothing to sample. \
                 Try: hark test --event '{name} kind=modify path=/some/file'"
        )),
        WatchKind::Unit(_) => Some(format!(
            "watch `{name}` (unit) follows systemd over the system bus while hark runs. \
                 Try: hark test --event '{name} unit=nginx.service active_state=failed \
                 sub_state=failed result=exit-code'"
        )),
        WatchKind::Journal(_) => Some(format!(
            "watch `{name}` (journal) reports entries as they are written; nothing to \
                 sample. Try: hark test --event '{name} message=\"Out of memory: Killed \
                 process 4242\" priority=3 unit=app.service'"
        )),
        WatchKind::Log(_) => Some(format!(
            "watch `{name}` (log) reports lines as they are written; nothing to sample. \
                 Try: hark test --event '{name} line=\"error: disk full\" path=/var/log/app.log'"
        )),
        _ => None,
    }
}

fn state_event(
    watch: Arc<str>,
    source: &'static str,
    host: Arc<str>,
    fields: Map<String, Value>,
) -> Event {
    Event {
        watch,
        source,
        time: SystemTime::now(),
        host,
        edge: false,
        fields,
        cursor: None,
    }
}

/// Every rule's verdict on each event, and the actions it would run, as text; with the
/// firings that a freshly started daemon would act on now.
pub fn report(config: &Config, events: Vec<Event>) -> (String, Vec<Firing>) {
    let mut engine = Engine::new(config);
    let dispatcher = Dispatcher::new(
        config,
        &crate::action::Slots::new(config.daemon.max_concurrent_actions),
    );
    let mut out = String::new();
    let mut now = Vec::new();
    for event in events {
        let event = Arc::new(event);
        let _ = writeln!(
            out,
            "event from watch `{}` ({}): {}",
            event.watch,
            event.source,
            shorten(&Value::Object(event.fields.clone()))
        );
        let decisions = engine.decide(Arc::clone(&event), Instant::now());
        if decisions.is_empty() {
            let _ = writeln!(out, "  no rule hears this watch");
        }
        for d in decisions {
            let _ = writeln!(out, "  rule `{}`: {}", d.rule, d.verdict);
            now.extend(d.firing);
            // A test does not wait out a debounce window: the burst fires at once.
            let waits = matches!(
                d.verdict,
                crate::rule::RuleVerdict::Edge(crate::rule::Verdict::Debounced)
            );
            if waits {
                if let Some(f) = engine.preview(&d.rule, &event, FiringState::Firing) {
                    let _ = writeln!(
                        out,
                        "    (in a test it fires at once, as it would when its debounce window ends)"
                    );
                    now.push(f);
                }
            }
            if !d.verdict.matched() {
                continue;
            }
            for (state, when) in [
                (FiringState::Firing, "when firing"),
                (FiringState::Resolved, "on resolve"),
            ] {
                let Some(firing) = engine.preview(&d.rule, &event, state) else {
                    continue;
                };
                if firing.actions.is_empty() {
                    continue;
                }
                let _ = writeln!(out, "    {when}, it runs:");
                for line in dispatcher.preview(&firing) {
                    let _ = writeln!(out, "      {line}");
                }
            }
        }
    }
    (out, now)
}

/// Runs the actions of `firings` for real and waits for them (`hark test --execute`).
pub async fn execute(config: &Config, firings: Vec<Firing>) {
    let dispatcher = Dispatcher::new(
        config,
        &crate::action::Slots::new(config.daemon.max_concurrent_actions),
    );
    for f in firings {
        let webhooks = dispatcher.dispatch(f);
        if !webhooks.is_empty() {
            println!(
                "deliveries (webhook, email, Alertmanager, brokers) are shown above but not sent by \
                 `hark test --execute`: they go through the daemon's outbox ({} not sent)",
                webhooks.len()
            );
        }
    }
    dispatcher.shutdown(config.daemon.stop_timeout).await;
}

/// The event's fields for a person: escaped bytes shown as U+FFFD, long strings cut.
fn shorten(v: &Value) -> String {
    fn cut(v: &Value) -> Value {
        match v {
            Value::String(s) => {
                let s = display_lossy(s);
                if s.chars().count() > 120 {
                    Value::from(format!("{}…", s.chars().take(120).collect::<String>()))
                } else {
                    Value::from(s)
                }
            }
            Value::Array(a) => Value::Array(a.iter().map(cut).collect()),
            Value::Object(o) => Value::Object(o.iter().map(|(k, v)| (k.clone(), cut(v))).collect()),
            other => other.clone(),
        }
    }
    cut(v).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn words_keep_quoted_spaces() {
        assert_eq!(
            split_words(r#"w path="/a b/c" kind='x y' n=1"#).unwrap(),
            vec!["w", "path=/a b/c", "kind=x y", "n=1"]
        );
        assert!(split_words("w path=\"open").is_err());
    }

    #[test]
    fn dotted_keys_nest() {
        let mut m = Map::new();
        insert_dotted(&mut m, "json.queue.depth", Value::from(3)).unwrap();
        insert_dotted(&mut m, "json.status", Value::from("up")).unwrap();
        assert_eq!(
            Value::Object(m),
            serde_json::json!({"json": {"queue": {"depth": 3}, "status": "up"}})
        );
        let mut m = Map::new();
        insert_dotted(&mut m, "a", Value::from(1)).unwrap();
        assert!(insert_dotted(&mut m, "a.b", Value::from(1)).is_err());
    }
}
