//! `type = "container"`: containers of a Docker Engine API (Docker, or Podman's
//! `podman system service`) over its unix socket, filtered by name, image and label.

use std::ops::Range;
use std::path::PathBuf;

use globset::{GlobBuilder, GlobSet, GlobSetBuilder};
use serde::Deserialize;
use toml::de::DeTable;
use toml::Spanned;

use super::table::deserialize_table;
use super::Ctx;

#[derive(Debug, Clone)]
pub struct ContainerWatch {
    pub socket: PathBuf,
    /// Container names (without Docker's leading `/`); all when `None`.
    pub names: Option<GlobSet>,
    pub images: Option<GlobSet>,
    /// Each must be on the container: a key, or `key=value`.
    pub labels: Vec<(String, Option<String>)>,
    /// The kinds reported (`start`, `die`, `oom`, `health_status`, `restart`, `state`).
    pub kinds: Vec<&'static str>,
}

pub const DEFAULT_SOCKET: &str = "/var/run/docker.sock";
pub const KINDS: &[&str] = &["state", "start", "die", "oom", "health_status", "restart"];

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawContainer {
    socket: Option<Spanned<String>>,
    names: Option<Vec<Spanned<String>>>,
    images: Option<Vec<Spanned<String>>>,
    labels: Option<Vec<Spanned<String>>>,
    events: Option<Vec<Spanned<String>>>,
}

pub(crate) fn parse(
    ctx: &mut Ctx,
    table: DeTable<'_>,
    span: Range<usize>,
) -> Option<ContainerWatch> {
    let raw: RawContainer = deserialize_table(ctx, table, span)?;
    let before = ctx.errors.len();
    let socket = match &raw.socket {
        None => PathBuf::from(DEFAULT_SOCKET),
        Some(s) => {
            let p = s.get_ref().strip_prefix("unix://").unwrap_or(s.get_ref());
            if p.is_empty() {
                ctx.error(s.span(), "`socket` is the path of the API's unix socket");
            }
            ctx.config_dir().join(p)
        }
    };
    let names = raw.names.as_deref().map(|n| globs(ctx, n, "names"));
    let images = raw.images.as_deref().map(|n| globs(ctx, n, "images"));
    let labels = raw
        .labels
        .iter()
        .flatten()
        .filter_map(|l| {
            let text = l.get_ref();
            let (k, v) = match text.split_once('=') {
                Some((k, v)) => (k, Some(v.to_string())),
                None => (text.as_str(), None),
            };
            if k.is_empty() {
                ctx.error(l.span(), "a label is `key` or `key=value`");
                return None;
            }
            Some((k.to_string(), v))
        })
        .collect();
    let kinds = match &raw.events {
        None => KINDS.to_vec(),
        Some(list) => list
            .iter()
            .filter_map(|e| match KINDS.iter().find(|k| **k == e.get_ref()) {
                Some(k) => Some(*k),
                None => {
                    ctx.error(
                        e.span(),
                        format!(
                            "unknown container event {:?} (expected one of: {})",
                            e.get_ref(),
                            KINDS.join(", ")
                        ),
                    );
                    None
                }
            })
            .collect(),
    };
    if ctx.errors.len() != before {
        return None;
    }
    Some(ContainerWatch {
        socket,
        names: names.flatten(),
        images: images.flatten(),
        labels,
        kinds,
    })
}

fn globs(ctx: &mut Ctx, list: &[Spanned<String>], key: &str) -> Option<GlobSet> {
    let mut b = GlobSetBuilder::new();
    for g in list {
        match GlobBuilder::new(g.get_ref())
            .literal_separator(true)
            .build()
        {
            Ok(glob) => {
                b.add(glob);
            }
            Err(e) => ctx.error(
                g.span(),
                format!("invalid glob {:?} in `{key}`: {}", g.get_ref(), e.kind()),
            ),
        }
    }
    b.build().ok()
}
