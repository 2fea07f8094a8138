//! The file watch's configuration: paths and globs (resolved against the config file's
//! directory), the kinds of change it reports, debounce, ignore globs.

use std::ops::Range;
use std::path::{Component, Path, PathBuf};
use std::time::Duration;

use globset::{Glob, GlobBuilder, GlobMatcher, GlobSet, GlobSetBuilder};
use serde::Deserialize;
use toml::de::DeTable;
use toml::Spanned;

use super::table::deserialize_table;
use super::values;
use super::Ctx;

#[derive(Debug, Clone)]
pub struct FileWatch {
    pub paths: Vec<PathPattern>,
    pub recursive: bool,
    pub events: FileEvents,
    pub debounce: Duration,
    pub ignore: Ignore,
    pub checksum: bool,
}

/// Which kinds of change a file watch reports; `overflow` is always reported.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FileEvents {
    pub create: bool,
    pub modify: bool,
    pub delete: bool,
    pub rename: bool,
}

impl FileEvents {
    pub const ALL: FileEvents = FileEvents {
        create: true,
        modify: true,
        delete: true,
        rename: true,
    };
}

/// One entry of `paths`: an exact path (a file or a directory) or a glob.
#[derive(Debug, Clone)]
pub struct PathPattern {
    /// As written, after resolving a relative path against its config file's directory.
    pub source: String,
    /// The longest leading part without glob characters: the directory to watch (for a
    /// glob) or the path itself (for an exact path).
    pub base: PathBuf,
    /// `None` for an exact path.
    pub glob: Option<GlobMatcher>,
    /// A glob whose part after `base` spans more than one directory level (or has `**`)
    /// needs the whole tree below `base` watched.
    pub glob_recursive: bool,
}

/// `ignore` globs: with a `/`, matched against the whole path; without, against the
/// file name, so `*.swp` ignores swap files at any depth.
#[derive(Debug, Clone)]
pub struct Ignore {
    pub full: GlobSet,
    pub name: GlobSet,
}

impl Ignore {
    pub fn is_ignored(&self, path: &Path) -> bool {
        self.full.is_match(path) || path.file_name().is_some_and(|n| self.name.is_match(n))
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFileWatch {
    paths: Spanned<Vec<Spanned<String>>>,
    #[serde(default)]
    recursive: bool,
    events: Option<Vec<Spanned<String>>>,
    debounce: Option<Spanned<String>>,
    #[serde(default)]
    ignore: Vec<Spanned<String>>,
    #[serde(default)]
    checksum: bool,
}

pub(crate) fn parse(ctx: &mut Ctx, table: DeTable<'_>, span: Range<usize>) -> Option<FileWatch> {
    let raw: RawFileWatch = deserialize_table(ctx, table, span)?;
    let before = ctx.errors.len();
    if raw.paths.get_ref().is_empty() {
        ctx.error(
            raw.paths.span(),
            "`paths` is empty: name at least one path or glob",
        );
    }
    let config_dir = ctx.config_dir();
    let paths: Vec<PathPattern> = raw
        .paths
        .get_ref()
        .iter()
        .filter_map(|p| path_pattern(ctx, &config_dir, p))
        .collect();
    let mut events = FileEvents::ALL;
    if let Some(list) = &raw.events {
        events = FileEvents {
            create: false,
            modify: false,
            delete: false,
            rename: false,
        };
        for e in list {
            match e.get_ref().as_str() {
                "create" => events.create = true,
                "modify" => events.modify = true,
                "delete" => events.delete = true,
                "rename" => events.rename = true,
                // Overflow is always delivered; naming it changes nothing.
                "overflow" => {}
                other => ctx.error(
                    e.span(),
                    format!(
                        "unknown file event `{other}` (expected create, modify, delete, rename)"
                    ),
                ),
            }
        }
    }
    let debounce = match &raw.debounce {
        Some(d) => values::duration(ctx, d).unwrap_or_default(),
        None => DEFAULT_DEBOUNCE,
    };
    let ignore = ignore_set(ctx, &raw.ignore);
    if ctx.errors.len() != before {
        return None;
    }
    Some(FileWatch {
        paths,
        recursive: raw.recursive,
        events,
        debounce,
        ignore,
        checksum: raw.checksum,
    })
}

pub const DEFAULT_DEBOUNCE: Duration = Duration::from_millis(100);

fn is_glob_component(s: &str) -> bool {
    s.contains(['*', '?', '[', '{'])
}

pub(crate) fn path_pattern(
    ctx: &mut Ctx,
    config_dir: &Path,
    written: &Spanned<String>,
) -> Option<PathPattern> {
    let raw = written.get_ref();
    if raw.is_empty() {
        ctx.error(written.span(), "empty path");
        return None;
    }
    // A relative path is relative to the file that names it, not to wherever hark was started.
    let joined = if Path::new(raw).is_absolute() {
        PathBuf::from(raw)
    } else {
        config_dir.join(raw)
    };
    let full = normalize(&joined);
    let source = full.to_string_lossy().into_owned();
    let mut base = PathBuf::new();
    let mut rest = Vec::new();
    for comp in full.components() {
        let s = comp.as_os_str().to_string_lossy();
        if rest.is_empty() && !is_glob_component(&s) {
            base.push(comp);
        } else {
            rest.push(s.into_owned());
        }
    }
    if rest.is_empty() {
        return Some(PathPattern {
            source,
            base,
            glob: None,
            glob_recursive: false,
        });
    }
    match GlobBuilder::new(&source).literal_separator(true).build() {
        Ok(glob) => Some(PathPattern {
            source,
            base,
            glob: Some(glob.compile_matcher()),
            glob_recursive: rest.len() > 1 || rest.iter().any(|c| c.contains("**")),
        }),
        Err(e) => {
            ctx.error(
                written.span(),
                format!("invalid glob {raw:?}: {}", glob_error(&e)),
            );
            None
        }
    }
}

fn glob_error(e: &globset::Error) -> String {
    e.kind().to_string()
}

/// Removes `.` and resolves `..` lexically: the path may not exist yet, so it cannot be
/// canonicalised, and events are reported under the path as watched.
pub(crate) fn normalize(path: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for comp in path.components() {
        match comp {
            Component::CurDir => {}
            Component::ParentDir => {
                out.pop();
            }
            c => out.push(c),
        }
    }
    out
}

pub(crate) fn ignore_set(ctx: &mut Ctx, patterns: &[Spanned<String>]) -> Ignore {
    let mut full = GlobSetBuilder::new();
    let mut name = GlobSetBuilder::new();
    for p in patterns {
        let s = p.get_ref();
        let built: Result<Glob, _> = GlobBuilder::new(s).literal_separator(true).build();
        match built {
            Ok(g) if s.contains('/') => {
                full.add(g);
            }
            Ok(g) => {
                name.add(g);
            }
            Err(e) => ctx.error(p.span(), format!("invalid glob {s:?}: {}", glob_error(&e))),
        }
    }
    Ignore {
        full: full.build().unwrap_or_else(|_| GlobSet::empty()),
        name: name.build().unwrap_or_else(|_| GlobSet::empty()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalize_resolves_dot_dot_lexically() {
        assert_eq!(
            normalize(Path::new("/a/b/../c/./d")),
            PathBuf::from("/a/c/d")
        );
    }

    #[test]
    fn ignore_without_slash_matches_file_names_at_any_depth() {
        let ignore = Ignore {
            full: GlobSet::empty(),
            name: {
                let mut b = GlobSetBuilder::new();
                b.add(Glob::new("*.swp").unwrap());
                b.build().unwrap()
            },
        };
        assert!(ignore.is_ignored(Path::new("/x/y/.a.conf.swp")));
        assert!(!ignore.is_ignored(Path::new("/x/y/a.conf")));
    }
}
