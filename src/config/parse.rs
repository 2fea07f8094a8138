//! Walks each TOML document by hand so every error keeps the span of its key or value,
//! then resolves names across files.

use std::collections::{BTreeMap, HashSet};
use std::ops::Range;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;
use toml::de::{DeTable, DeValue};
use toml::Spanned;

use super::diagnostic::{ConfigError, ConfigErrors, Location, SourceFile};
use super::files::check_permissions;
use super::suggest::{suggest, SUGGEST_BUDGET};
use super::table::{deserialize_table, first_line};
use super::values::{self, check_name};
use super::{action, rule, watch, Config, Ctx, DaemonConfig};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDaemon {
    state_dir: Option<String>,
    host: Option<String>,
    control_socket: Option<String>,
    control_group: Option<Spanned<String>>,
    /// Where the HTTP listener is: /metrics, /api/status and the status page.
    http: Option<Spanned<String>>,
    /// `http`'s older name.
    metrics: Option<Spanned<String>>,
    /// Names besides loopback ones that a loopback listener answers to (`Host`).
    http_hosts: Option<Vec<Spanned<String>>>,
    max_concurrent_actions: Option<Spanned<i64>>,
    stop_timeout: Option<Spanned<String>>,
}

/// A named item as first seen: the place of its name, kept for duplicate and reference errors.
pub(crate) struct Named<T> {
    pub name_loc: Location,
    pub item: T,
}

#[derive(Default)]
struct Collected {
    daemon: Option<(Location, DaemonConfig)>,
    watches: BTreeMap<String, Named<super::WatchConfig>>,
    rules: BTreeMap<String, Named<rule::RawRuleChecked>>,
    actions: BTreeMap<String, Named<super::ActionConfig>>,
    /// Items defined but with errors of their own, keyed `kind.name`: a reference to one
    /// is not reported again as undefined.
    broken: HashSet<String>,
    errors: Vec<ConfigError>,
}

/// The largest config file read: far beyond any hand-written one, far below memory.
const CONFIG_MAX: u64 = 64 * 1024 * 1024;

pub fn parse_all(paths: &[PathBuf]) -> Result<Config, ConfigErrors> {
    let mut all = Collected::default();
    let templates = action::template_env();
    for path in paths {
        if let Err(e) = check_permissions(path) {
            all.errors.push(e);
            continue;
        }
        let text = match crate::fsread::read_regular_text(path, CONFIG_MAX) {
            Ok(t) => t,
            Err(e) => {
                all.errors
                    .push(ConfigError::in_file(path, format!("cannot read: {e}")));
                continue;
            }
        };
        let file = Arc::new(SourceFile::new(path.clone(), text));
        let mut ctx = Ctx {
            file: Arc::clone(&file),
            errors: Vec::new(),
            taken_out: Vec::new(),
        };
        parse_document(&mut ctx, &mut all, &templates);
        all.errors.append(&mut ctx.errors);
    }
    // `resolve` builds a config only when no error was found, in any file.
    if let Some(config) = resolve(paths, &mut all) {
        return Ok(config);
    }
    sort_errors(&mut all.errors, paths);
    Err(ConfigErrors(all.errors))
}

/// Parses one document given as text (no file is read, no permission checked): for
/// fuzzing, and for tools that hold a configuration in memory.
pub fn parse_text(path: &std::path::Path, text: &str) -> Result<Config, ConfigErrors> {
    let mut all = Collected::default();
    let templates = action::template_env();
    let file = Arc::new(SourceFile::new(path.to_path_buf(), text.to_string()));
    let mut ctx = Ctx {
        file,
        errors: Vec::new(),
        taken_out: Vec::new(),
    };
    parse_document(&mut ctx, &mut all, &templates);
    all.errors.append(&mut ctx.errors);
    let paths = [path.to_path_buf()];
    if let Some(config) = resolve(&paths, &mut all) {
        return Ok(config);
    }
    sort_errors(&mut all.errors, &paths);
    Err(ConfigErrors(all.errors))
}

fn sort_errors(errors: &mut [ConfigError], paths: &[PathBuf]) {
    let file_index = |p: &PathBuf| paths.iter().position(|q| q == p).unwrap_or(usize::MAX);
    errors.sort_by_key(|e| {
        (
            file_index(&e.path),
            e.location.as_ref().map_or(0, |l| l.span.start),
        )
    });
}

fn parse_document(ctx: &mut Ctx, all: &mut Collected, templates: &minijinja::Environment<'static>) {
    let file = Arc::clone(&ctx.file);
    let (doc, syntax_errors) = DeTable::parse_recoverable(&file.text);
    if !syntax_errors.is_empty() {
        for e in syntax_errors {
            let span = e.span().unwrap_or(0..0);
            ctx.error(span, format!("TOML syntax: {}", first_line(e.message())));
        }
        return;
    }
    for (key, value) in doc.get_ref().iter() {
        let key_span = key.span();
        match key.get_ref().as_ref() {
            "daemon" => parse_daemon(ctx, all, key_span, value),
            "watch" => for_each_named(
                ctx,
                "watch",
                value,
                |ctx, name, name_span, table, span, def| match watch::parse(ctx, name, table, span)
                {
                    Some(mut w) => {
                        w.definition = def;
                        insert_named(ctx, &mut all.watches, "watch", name, name_span, w)
                    }
                    None => {
                        all.broken.insert(format!("watch.{name}"));
                    }
                },
            ),
            "rule" => for_each_named(
                ctx,
                "rule",
                value,
                |ctx, name, name_span, table, span, def| match rule::parse(
                    ctx, name, table, span, templates,
                ) {
                    Some(mut r) => {
                        r.rule.definition = def;
                        if r.broken {
                            all.broken.insert(format!("rule.{name}"));
                        }
                        insert_named(ctx, &mut all.rules, "rule", name, name_span, r)
                    }
                    None => {
                        all.broken.insert(format!("rule.{name}"));
                    }
                },
            ),
            "action" => for_each_named(
                ctx,
                "action",
                value,
                |ctx, name, name_span, table, span, _| match action::parse(
                    ctx, name, table, span, templates,
                ) {
                    Some(a) => insert_named(ctx, &mut all.actions, "action", name, name_span, a),
                    None => {
                        all.broken.insert(format!("action.{name}"));
                    }
                },
            ),
            other => ctx.error(
                key_span,
                format!(
                    "unknown section `{other}`: expected `daemon`, `watch`, `rule` or `action`"
                ),
            ),
        }
    }
}

/// `[watch.NAME]` and friends: each entry must be a table.
fn for_each_named(
    ctx: &mut Ctx,
    section: &str,
    value: &Spanned<DeValue<'_>>,
    mut each: impl FnMut(&mut Ctx, &str, Range<usize>, DeTable<'_>, Range<usize>, String),
) {
    let DeValue::Table(table) = value.get_ref() else {
        ctx.error(
            value.span(),
            format!("`{section}` must be a table of named {section}es: [{section}.NAME]"),
        );
        return;
    };
    for (name, item) in table.iter() {
        let name_span = name.span();
        if !check_name(ctx, section, name.get_ref(), name_span.clone()) {
            continue;
        }
        match item.get_ref() {
            DeValue::Table(t) => each(
                ctx,
                name.get_ref(),
                name_span,
                t.clone(),
                item.span(),
                definition(t),
            ),
            _ => ctx.error(
                item.span(),
                format!("`{section}.{}` must be a table", name.get_ref()),
            ),
        }
    }
}

/// An item's TOML without places or layout: equal when the definition is the same, so a
/// reload restarts only what changed.
fn definition(t: &DeTable<'_>) -> String {
    fn value(out: &mut String, v: &DeValue<'_>) {
        match v {
            DeValue::Array(a) => {
                out.push('[');
                for x in a.iter() {
                    value(out, x.get_ref());
                    out.push(',');
                }
                out.push(']');
            }
            DeValue::Table(t) => table(out, t),
            scalar => out.push_str(&format!("{scalar:?}")),
        }
    }
    fn table(out: &mut String, t: &DeTable<'_>) {
        let sorted: BTreeMap<&str, &DeValue<'_>> = t
            .iter()
            .map(|(k, v)| (k.get_ref().as_ref(), v.get_ref()))
            .collect();
        out.push('{');
        for (k, v) in sorted {
            out.push_str(&format!("{k:?}="));
            value(out, v);
            out.push(',');
        }
        out.push('}');
    }
    let mut out = String::new();
    table(&mut out, t);
    out
}

fn insert_named<T>(
    ctx: &mut Ctx,
    map: &mut BTreeMap<String, Named<T>>,
    kind: &str,
    name: &str,
    name_span: Range<usize>,
    item: T,
) {
    let here = ctx.loc(name_span);
    if let Some(first) = map.get(name) {
        let msg = format!(
            "{kind} `{name}` is defined twice: first at {}, again here",
            first.name_loc.display()
        );
        ctx.errors.push(ConfigError::at(here, msg));
        return;
    }
    map.insert(
        name.to_string(),
        Named {
            name_loc: here,
            item,
        },
    );
}

/// Deserialises a table into `T`, reporting the error at the key or value serde blames.
fn parse_daemon(
    ctx: &mut Ctx,
    all: &mut Collected,
    key_span: Range<usize>,
    value: &Spanned<DeValue<'_>>,
) {
    let DeValue::Table(table) = value.get_ref() else {
        ctx.error(value.span(), "`daemon` must be a table");
        return;
    };
    let here = ctx.loc(key_span);
    if let Some((first, _)) = &all.daemon {
        let msg = format!(
            "[daemon] is defined twice: first at {}, again here",
            first.display()
        );
        ctx.errors.push(ConfigError::at(here, msg));
        return;
    }
    let Some(raw) = deserialize_table::<RawDaemon>(ctx, table.clone(), value.span()) else {
        return;
    };
    let mut daemon = DaemonConfig::default();
    // Paths are relative to the file that names them, like every path in the config.
    let base = ctx.config_dir();
    if let Some(d) = raw.state_dir {
        daemon.state_dir = super::file::normalize(&base.join(d));
    }
    if let Some(s) = raw.control_socket {
        daemon.control_socket = super::file::normalize(&base.join(s));
    }
    if let Some(g) = &raw.control_group {
        daemon.control_group = super::account::lookup(ctx, g, super::account::Kind::Group);
    }
    if let Some(h) = raw.host {
        daemon.host = h;
    }
    if let (Some(_), Some(old)) = (&raw.http, &raw.metrics) {
        ctx.error(
            old.span(),
            "`metrics` is the older name of `http`: give one of them",
        );
    }
    if let Some(m) = raw.http.or(raw.metrics) {
        match m.get_ref().parse() {
            Ok(addr) => daemon.metrics = Some(addr),
            Err(e) => ctx.error(
                m.span(),
                format!(
                    "invalid HTTP address {:?}: {e} (write it like \"127.0.0.1:9797\")",
                    m.get_ref()
                ),
            ),
        }
    }
    for h in raw.http_hosts.iter().flatten() {
        let name = h.get_ref().trim().to_ascii_lowercase();
        if name.is_empty() || name.contains(['/', ' ', '@']) {
            ctx.error(
                h.span(),
                "a host name as a browser sends it in `Host`, like \"status.example.org\"",
            );
        } else {
            daemon.http_hosts.push(name);
        }
    }
    if let Some(n) = raw.max_concurrent_actions {
        match usize::try_from(*n.get_ref()) {
            Ok(v) if v >= 1 => daemon.max_concurrent_actions = v,
            _ => ctx.error(n.span(), "max_concurrent_actions must be at least 1"),
        }
    }
    if let Some(d) = values::optional_duration(ctx, &raw.stop_timeout) {
        daemon.stop_timeout = d;
    }
    all.daemon = Some((here, daemon));
}

/// Where `hark status` looks when no configuration says otherwise (systemd's
/// `RuntimeDirectory=hark`).
pub const DEFAULT_CONTROL_SOCKET: &str = "/run/hark/control.sock";

impl Default for DaemonConfig {
    fn default() -> Self {
        DaemonConfig {
            state_dir: PathBuf::from("/var/lib/hark"),
            host: local_hostname(),
            control_socket: PathBuf::from(DEFAULT_CONTROL_SOCKET),
            control_group: None,
            metrics: None,
            http_hosts: Vec::new(),
            max_concurrent_actions: 16,
            stop_timeout: Duration::from_secs(10),
        }
    }
}

pub fn local_hostname() -> String {
    let mut buf = [0u8; 256];
    // SAFETY: the buffer is valid for its length; gethostname NUL-terminates within it
    // or truncates, and we read only up to the first NUL.
    let rc = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) };
    if rc != 0 {
        return "localhost".to_string();
    }
    let end = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
    String::from_utf8_lossy(&buf[..end]).into_owned()
}

/// A rule's condition against the fields its watches' events carry (see `field_check`).
fn check_fields(
    r: &rule::RawRuleChecked,
    watches: &[&Named<super::WatchConfig>],
) -> Vec<ConfigError> {
    let (Some(cond), Some(loc)) = (&r.rule.when, &r.when_at) else {
        return Vec::new();
    };
    let Some(fields) = watches
        .iter()
        .map(|w| w.item.kind.fields())
        .reduce(super::fields::Fields::union)
    else {
        return Vec::new();
    };
    let names: Vec<String> = r.rule.watches.iter().map(|w| format!("`{w}`")).collect();
    let which = match names.len() {
        1 => format!("watch {}", names[0]),
        _ => format!("watches {}", names.join(", ")),
    };
    super::field_check::check(&cond.program, &fields, &which)
        .into_iter()
        .map(|f| {
            let at = super::diagnostic::offset_in_string_value(&loc.file, &loc.span, f.at);
            ConfigError::at(Location::new(&loc.file, at..at + 1), f.message)
        })
        .collect()
}

/// Checks every reference between items once all files are read.
fn resolve(paths: &[PathBuf], all: &mut Collected) -> Option<Config> {
    let mut errors = Vec::new();
    let mut budget = SUGGEST_BUDGET;
    for (name, rule) in &all.rules {
        let r = &rule.item;
        for (w, loc) in &r.watch_refs {
            if !all.watches.contains_key(w) && !all.broken.contains(&format!("watch.{w}")) {
                errors.push(ConfigError::at(
                    loc.clone(),
                    format!(
                        "rule `{name}` names watch `{w}`, which is not defined{}",
                        suggest(w, all.watches.keys(), &mut budget)
                    ),
                ));
            }
        }
        for (a, loc) in &r.action_refs {
            if !all.actions.contains_key(a) && !all.broken.contains(&format!("action.{a}")) {
                errors.push(ConfigError::at(
                    loc.clone(),
                    format!(
                        "rule `{name}` names action `{a}`, which is not defined{}",
                        suggest(a, all.actions.keys(), &mut budget)
                    ),
                ));
            }
        }
        let watches: Vec<_> = r
            .watch_refs
            .iter()
            .filter_map(|(w, _)| all.watches.get(w))
            .collect();
        if watches.len() == r.watch_refs.len()
            && !watches.iter().any(|w| w.item.kind.reports_edges())
        {
            for (key, loc) in &r.edge_keys {
                errors.push(ConfigError::at(
                    loc.clone(),
                    format!(
                        "`{key}` applies to event watches (file, log, process starts and exits); \
                         rule `{name}` hears only state watches, which resolve when their \
                         condition stops holding"
                    ),
                ));
            }
        }
        if watches.len() == r.watch_refs.len()
            && !watches.iter().any(|w| w.item.kind.reports_states())
        {
            for (key, loc) in &r.state_keys {
                errors.push(ConfigError::at(
                    loc.clone(),
                    format!(
                        "`{key}` applies to state watches (periodic checks such as http); rule \
                         `{name}` hears only event watches, whose events fire on each match \
                         (limit them with `cooldown` or `debounce`, count them with `times` \
                         and `within`, end a firing with `resolve_after`)"
                    ),
                ));
            }
        }
        if watches.len() == r.watch_refs.len() {
            errors.extend(check_fields(r, &watches));
        }
        for (u, loc) in &r.unless_refs {
            if all.broken.contains(&format!("rule.{u}")) {
                continue;
            }
            if !all.rules.contains_key(u) {
                errors.push(ConfigError::at(
                    loc.clone(),
                    format!(
                        "rule `{name}` names rule `{u}` in `unless`, which is not defined{}",
                        suggest(u, all.rules.keys(), &mut budget)
                    ),
                ));
            } else if u == name {
                errors.push(ConfigError::at(
                    loc.clone(),
                    format!("rule `{name}` cannot name itself in `unless`"),
                ));
            }
        }
    }
    errors.extend(unless_cycles(&all.rules));
    all.errors.append(&mut errors);
    if !all.errors.is_empty() {
        return None;
    }
    use std::mem::take;
    // An Alertmanager alert that fired is resolved when its rule resolves, listed in
    // `resolve` or not: an alert left firing there would be a lie.
    for rule in all.rules.values_mut() {
        let rule = &mut rule.item.rule;
        // A rule over unit watches alone keeps one state per unit, as if it said
        // `group_by = ["unit"]`: one failed unit does not hide another.
        let only_units = rule.watches.iter().all(|w| {
            all.watches
                .get(w)
                .is_some_and(|w| matches!(w.item.kind, super::WatchKind::Unit(_)))
        });
        if only_units && !rule.watches.is_empty() && rule.group_by.is_empty() {
            rule.group_by = vec!["unit".to_string()];
        }
        for a in &rule.then {
            let alerting = all
                .actions
                .get(a)
                .is_some_and(|c| matches!(c.item.kind, super::ActionKind::Alertmanager(_)));
            if alerting && !rule.resolve.contains(a) {
                rule.resolve.push(a.clone());
            }
        }
    }
    Some(Config {
        files: paths.to_vec(),
        daemon: take(&mut all.daemon).map(|(_, d)| d).unwrap_or_default(),
        watches: take(&mut all.watches)
            .into_iter()
            .map(|(k, v)| (k, v.item))
            .collect(),
        rules: take(&mut all.rules)
            .into_iter()
            .map(|(k, v)| (k, v.item.rule))
            .collect(),
        actions: take(&mut all.actions)
            .into_iter()
            .map(|(k, v)| (k, v.item))
            .collect(),
    })
}

/// Rules that, through `unless`, silence themselves: whichever fires first would keep the
/// others quiet for good, an order nobody wrote down. One error per cycle, at the `unless`
/// that closes it.
fn unless_cycles(rules: &BTreeMap<String, Named<rule::RawRuleChecked>>) -> Vec<ConfigError> {
    // Iterative depth-first search: 0 unvisited, 1 on the current path, 2 done.
    let mut mark: std::collections::HashMap<&str, u8> = std::collections::HashMap::new();
    let mut errors = Vec::new();
    for start in rules.keys() {
        if mark.get(start.as_str()).copied().unwrap_or(0) != 0 {
            continue;
        }
        let mut path: Vec<(&str, usize)> = vec![(start.as_str(), 0)];
        mark.insert(start, 1);
        while let Some((name, next)) = path.last_mut() {
            let refs = rules
                .get(*name)
                .map_or(&[][..], |r| &r.item.unless_refs[..]);
            let Some((u, loc)) = refs.get(*next) else {
                mark.insert(name, 2);
                path.pop();
                continue;
            };
            *next += 1;
            let Some((u, _)) = rules.get_key_value(u.as_str()) else {
                continue;
            };
            match mark.get(u.as_str()).copied().unwrap_or(0) {
                0 => {
                    mark.insert(u, 1);
                    path.push((u.as_str(), 0));
                }
                1 if u.as_str() != path.last().map_or("", |p| p.0) => {
                    let from = path.iter().position(|(n, _)| *n == u.as_str()).unwrap_or(0);
                    let mut cycle: Vec<&str> = path[from..].iter().map(|(n, _)| *n).collect();
                    cycle.push(u);
                    errors.push(ConfigError::at(
                        loc.clone(),
                        format!(
                            "`unless` goes round in a circle ({}): whichever of them fires first \
                             would keep the others quiet; name the cause in its dependents' \
                             `unless` only",
                            cycle.join(" → ")
                        ),
                    ));
                }
                _ => {}
            }
        }
    }
    errors
}
