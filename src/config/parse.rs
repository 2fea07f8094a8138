//! Walks each TOML document by hand so every error keeps the span of its key or value,
//! then resolves names across files.

use std::collections::{BTreeMap, HashSet};
use std::ops::Range;
use std::path::PathBuf;
use std::sync::Arc;

use toml::de::{DeTable, DeValue};
use toml::Spanned;

use super::diagnostic::{ConfigError, ConfigErrors, Location, SourceFile};
use super::files::check_permissions;
use super::table::first_line;
use super::values::check_name;
use super::{action, rule, watch, Config, Ctx, DaemonConfig};

/// A named item as first seen: the place of its name, kept for duplicate and reference errors.
pub(crate) struct Named<T> {
    pub name_loc: Location,
    pub item: T,
}

#[derive(Default)]
pub(super) struct Collected {
    pub daemon: Option<(Location, DaemonConfig)>,
    pub watches: BTreeMap<String, Named<super::WatchConfig>>,
    pub rules: BTreeMap<String, Named<rule::RawRuleChecked>>,
    pub actions: BTreeMap<String, Named<super::ActionConfig>>,
    pub tokens: BTreeMap<String, Named<super::TokenConfig>>,
    pub maintenance: BTreeMap<String, Named<super::Maintenance>>,
    /// Items defined but with errors of their own, keyed `kind.name`: a reference to one
    /// is not reported again as undefined.
    pub broken: HashSet<String>,
    pub errors: Vec<ConfigError>,
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
            crons: Default::default(),
        };
        parse_document(&mut ctx, &mut all, &templates);
        all.errors.append(&mut ctx.errors);
    }
    // `resolve` builds a config only when no error was found, in any file.
    if let Some(config) = super::resolve::resolve(paths, &mut all) {
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
        crons: Default::default(),
    };
    parse_document(&mut ctx, &mut all, &templates);
    all.errors.append(&mut ctx.errors);
    let paths = [path.to_path_buf()];
    if let Some(config) = super::resolve::resolve(&paths, &mut all) {
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
            "daemon" => super::daemon::parse_daemon(ctx, all, key_span, value),
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
            "token" => for_each_named(ctx, "token", value, |ctx, name, at, table, span, _| {
                if let Some(t) = super::token::parse(ctx, name, table, span) {
                    insert_named(ctx, &mut all.tokens, "token", name, at, t);
                }
            }),
            "maintenance" => {
                for_each_named(ctx, "maintenance", value, |ctx, name, at, t, span, _| {
                    if let Some(m) = super::maintenance::parse(ctx, name, t, span) {
                        insert_named(ctx, &mut all.maintenance, "maintenance", name, at, m);
                    }
                })
            }
            other => ctx.error(
                key_span,
                format!(
                    "unknown section `{other}`: expected `daemon`, `watch`, `rule`, `action`, \
                     `token` or `maintenance`"
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
