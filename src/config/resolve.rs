//! Once every file is read: each reference between items checked (with "did you mean"),
//! each rule's keys against the kinds of watch it hears, its condition against their
//! fields; then the configuration assembled.

use std::collections::BTreeMap;
use std::path::PathBuf;

use super::diagnostic::{ConfigError, Location};
use super::parse::{Collected, Named};
use super::suggest::{suggest, SUGGEST_BUDGET};
use super::{rule, Config};

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
pub(super) fn resolve(paths: &[PathBuf], all: &mut Collected) -> Option<Config> {
    let mut errors = Vec::new();
    let mut budget = SUGGEST_BUDGET;
    for (name, rule) in &all.rules {
        check_rule(all, name, &rule.item, &mut budget, &mut errors);
    }
    errors.extend(unless_cycles(&all.rules));
    errors.extend(shared_secrets(all));
    for m in all.maintenance.values() {
        for (rule, loc) in &m.item.literal {
            if !all.rules.contains_key(rule) && !all.broken.contains(&format!("rule.{rule}")) {
                let text = format!(
                    "maintenance `{}` names rule `{rule}`, which is not defined{}",
                    m.item.name,
                    suggest(rule, all.rules.keys(), &mut budget)
                );
                errors.push(ConfigError::at(loc.clone(), text));
            }
        }
    }
    all.errors.append(&mut errors);
    if !all.errors.is_empty() {
        return None;
    }
    complete_rules(all);
    Some(assemble(paths, all))
}

/// One rule's references, keys and condition.
fn check_rule(
    all: &Collected,
    name: &str,
    r: &rule::RawRuleChecked,
    budget: &mut usize,
    errors: &mut Vec<ConfigError>,
) {
    let undefined =
        |kind: &str, what: &str, known: &mut dyn Iterator<Item = &String>, b: &mut usize| {
            format!(
                "rule `{name}` names {kind} `{what}`, which is not defined{}",
                suggest(what, known, b)
            )
        };
    for (w, loc) in &r.watch_refs {
        if !all.watches.contains_key(w) && !all.broken.contains(&format!("watch.{w}")) {
            let text = undefined("watch", w, &mut all.watches.keys(), budget);
            errors.push(ConfigError::at(loc.clone(), text));
        }
    }
    for (a, loc) in &r.action_refs {
        if !all.actions.contains_key(a) && !all.broken.contains(&format!("action.{a}")) {
            let text = undefined("action", a, &mut all.actions.keys(), budget);
            errors.push(ConfigError::at(loc.clone(), text));
        }
    }
    let watches: Vec<_> = r
        .watch_refs
        .iter()
        .filter_map(|(w, _)| all.watches.get(w))
        .collect();
    if watches.len() == r.watch_refs.len() {
        check_keys(name, r, &watches, errors);
        errors.extend(check_fields(r, &watches));
    }
    for (u, loc) in &r.unless_refs {
        if all.broken.contains(&format!("rule.{u}")) {
            continue;
        }
        if !all.rules.contains_key(u) {
            let text = format!(
                "rule `{name}` names rule `{u}` in `unless`, which is not defined{}",
                suggest(u, all.rules.keys(), budget)
            );
            errors.push(ConfigError::at(loc.clone(), text));
        } else if u == name {
            let text = format!("rule `{name}` cannot name itself in `unless`");
            errors.push(ConfigError::at(loc.clone(), text));
        }
    }
}

/// Keys of event watches on a rule that hears only state watches, and the other way.
fn check_keys(
    name: &str,
    r: &rule::RawRuleChecked,
    watches: &[&Named<super::WatchConfig>],
    errors: &mut Vec<ConfigError>,
) {
    if !watches.iter().any(|w| w.item.kind.reports_edges()) {
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
    if !watches.iter().any(|w| w.item.kind.reports_states()) {
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
}

/// What a valid configuration implies for its rules: a rule over unit watches alone keeps
/// one state per unit, as if it said `group_by = ["unit"]` (one failed unit does not hide
/// another); an Alertmanager alert that fired is resolved when its rule resolves, listed
/// in `resolve` or not (an alert left firing there would be a lie).
fn complete_rules(all: &mut Collected) {
    for rule in all.rules.values_mut() {
        let rule = &mut rule.item.rule;
        let only_units = rule.watches.iter().all(|w| {
            all.watches
                .get(w)
                .is_some_and(|w| matches!(w.item.kind, super::WatchKind::Unit(_)))
        });
        if only_units && !rule.watches.is_empty() && rule.group_by.is_empty() {
            rule.group_by = vec!["unit".to_string()];
        }
        // One state per certificate file: a renewed one does not hide one that is not.
        let only_cert_files = rule.watches.iter().all(|w| {
            all.watches.get(w).is_some_and(|w| {
                matches!(&w.item.kind, super::WatchKind::Certificate(c)
                    if matches!(c.source, super::CertificateSource::Files { .. }))
            })
        });
        if only_cert_files && !rule.watches.is_empty() && rule.group_by.is_empty() {
            rule.group_by = vec!["path".to_string()];
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
}

fn assemble(paths: &[PathBuf], all: &mut Collected) -> Config {
    use std::mem::take;
    Config {
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
        tokens: take(&mut all.tokens)
            .into_iter()
            .map(|(k, v)| (k, v.item))
            .collect(),
        maintenance: take(&mut all.maintenance)
            .into_iter()
            .map(|(k, v)| (k, v.item))
            .collect(),
    }
}

/// Two tokens (of `[token.NAME]` or push watches) with the same secret: a request with it
/// could only be taken as one of them. An error at the second, naming the first.
fn shared_secrets(all: &Collected) -> Vec<ConfigError> {
    let tokens = all
        .tokens
        .iter()
        .map(|(n, t)| (format!("token `{n}`"), t.item.secret.expose(), &t.name_loc));
    let pushes = all.watches.iter().filter_map(|(n, w)| match &w.item.kind {
        super::WatchKind::Push(p) => {
            Some((format!("push watch `{n}`"), p.token.expose(), &w.name_loc))
        }
        _ => None,
    });
    let mut seen: std::collections::HashMap<&str, String> = std::collections::HashMap::new();
    let mut errors = Vec::new();
    for (who, secret, loc) in tokens.chain(pushes) {
        match seen.get(secret) {
            Some(first) => errors.push(ConfigError::at(
                loc.clone(),
                format!("{who} has the same secret as {first}: give each its own"),
            )),
            None => {
                seen.insert(secret, who);
            }
        }
    }
    errors
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
