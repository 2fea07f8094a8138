//! `type = "unit"`: systemd units by name or glob, their states as samples.

use std::ops::Range;

use serde::Deserialize;
use toml::de::DeTable;
use toml::Spanned;

use super::table::deserialize_table;
use super::values::NameList;
use super::Ctx;

/// A unit watch.
#[derive(Debug, Clone)]
pub struct UnitWatch {
    /// As written: unit names and globs (`"nginx.service"`, `"*.timer"`).
    pub units: Vec<String>,
    /// Every one of them, as globs.
    pub globs: globset::GlobSet,
    /// The names among them that are no glob: loaded (and reported, `not-found` if so)
    /// even when nothing else has loaded them.
    pub names: Vec<String>,
}

impl UnitWatch {
    pub fn matches(&self, unit: &str) -> bool {
        self.globs.is_match(unit)
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawUnitWatch {
    units: Spanned<NameList>,
}

pub(crate) fn parse(ctx: &mut Ctx, table: DeTable<'_>, span: Range<usize>) -> Option<UnitWatch> {
    let raw: RawUnitWatch = deserialize_table(ctx, table, span)?;
    let before = ctx.errors.len();
    if raw.units.get_ref().0.is_empty() {
        ctx.error(
            raw.units.span(),
            "`units` is empty: name units (`\"nginx.service\"`) or globs (`\"*.timer\"`)",
        );
    }
    let mut units = Vec::new();
    let mut names = Vec::new();
    let mut globs = globset::GlobSetBuilder::new();
    for (u, at) in NameList::spanned(&raw.units) {
        if u.is_empty() || u.contains(|c: char| c.is_whitespace() || c == '/') {
            ctx.error(at, format!("{u:?} is not a unit name"));
            continue;
        }
        match globset::GlobBuilder::new(u)
            .literal_separator(false)
            .build()
        {
            Ok(g) => {
                globs.add(g);
            }
            Err(e) => {
                ctx.error(at, format!("invalid glob: {}", e.kind()));
                continue;
            }
        }
        if !u.contains(['*', '?', '[', '{']) {
            names.push(u.to_string());
        }
        units.push(u.to_string());
    }
    let globs = match globs.build() {
        Ok(g) => g,
        Err(e) => {
            ctx.error(raw.units.span(), format!("invalid glob: {}", e.kind()));
            return None;
        }
    };
    if ctx.errors.len() != before {
        return None;
    }
    Some(UnitWatch {
        units,
        globs,
        names,
    })
}
