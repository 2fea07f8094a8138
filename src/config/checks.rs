//! `type = "process"`, `"system"`, `"tcp"` and `"command"`: the periodic watches other
//! than http.

use std::collections::BTreeMap;
use std::ops::Range;
use std::path::PathBuf;
use std::time::Duration;

use globset::{GlobBuilder, GlobSet, GlobSetBuilder};
use serde::Deserialize;
use toml::de::DeTable;
use toml::Spanned;

use super::account::{lookup, run_as, Account, Kind};
use super::table::deserialize_table;
use super::values;
use super::values::check_env_name;
use super::Ctx;

/// Which processes a `process` watch follows. With several of `name`, `cmdline` and
/// `user`, a process must match all of them; `pidfile` stands alone.
#[derive(Debug, Clone)]
pub struct ProcessWatch {
    pub name: Option<String>,
    pub cmdline: Option<regex::Regex>,
    pub user: Option<Account>,
    pub pidfile: Option<PathBuf>,
    /// How often `sample` events are reported (and new processes looked for).
    pub every: Duration,
}

impl PartialEq for ProcessWatch {
    fn eq(&self, o: &Self) -> bool {
        self.name == o.name
            && self.cmdline.as_ref().map(regex::Regex::as_str)
                == o.cmdline.as_ref().map(regex::Regex::as_str)
            && self.user.as_ref().map(|u| u.id) == o.user.as_ref().map(|u| u.id)
            && self.pidfile == o.pidfile
            && self.every == o.every
    }
}

#[derive(Debug, Clone)]
pub struct SystemWatch {
    pub every: Duration,
    /// Mount points to report under `disks`; all real file systems when `None`.
    pub mounts: Option<GlobSet>,
    /// Mount points named without a glob: always reported, whatever their file system
    /// (a tmpfs, a FUSE mount), since someone asked for them by name.
    pub named_mounts: Vec<PathBuf>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TcpWatch {
    /// `host:port`, `[v6]:port`.
    pub address: String,
    pub every: Duration,
    pub timeout: Duration,
}

#[derive(Debug, Clone)]
pub struct CommandWatch {
    pub argv: Vec<String>,
    pub every: Duration,
    pub timeout: Duration,
    pub user: Option<Account>,
    pub group: Option<Account>,
    pub cwd: Option<PathBuf>,
    pub env: BTreeMap<String, String>,
}

pub const DEFAULT_PROCESS_EVERY: Duration = Duration::from_secs(10);
pub const DEFAULT_SYSTEM_EVERY: Duration = Duration::from_secs(10);
pub const DEFAULT_TCP_EVERY: Duration = Duration::from_secs(30);
pub const DEFAULT_TCP_TIMEOUT: Duration = Duration::from_secs(5);
pub const DEFAULT_COMMAND_EVERY: Duration = Duration::from_secs(60);
pub const DEFAULT_COMMAND_TIMEOUT: Duration = Duration::from_secs(30);

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawProcess {
    name: Option<Spanned<String>>,
    cmdline: Option<Spanned<String>>,
    user: Option<Spanned<String>>,
    pidfile: Option<Spanned<String>>,
    every: Option<Spanned<String>>,
}

pub(crate) fn parse_process(
    ctx: &mut Ctx,
    table: DeTable<'_>,
    span: Range<usize>,
) -> Option<ProcessWatch> {
    let raw: RawProcess = deserialize_table(ctx, table, span.clone())?;
    let before = ctx.errors.len();
    if raw.name.is_none() && raw.cmdline.is_none() && raw.user.is_none() && raw.pidfile.is_none() {
        ctx.error(
            span,
            "a process watch needs one of `name`, `cmdline` (a regex), `pidfile` or `user`",
        );
        return None;
    }
    if let Some(p) = &raw.pidfile {
        if raw.name.is_some() || raw.cmdline.is_some() || raw.user.is_some() {
            ctx.error(
                p.span(),
                "`pidfile` names one process: it cannot be combined with `name`, `cmdline` or `user`",
            );
        }
    }
    if let Some(n) = &raw.name {
        if n.get_ref().is_empty() || n.get_ref().contains('/') {
            ctx.error(
                n.span(),
                "`name` is a process name or an executable's file name, without `/`",
            );
        }
    }
    let cmdline = raw
        .cmdline
        .as_ref()
        .and_then(|c| match regex::Regex::new(c.get_ref()) {
            Ok(r) => Some(r),
            Err(e) => {
                ctx.error(
                    c.span(),
                    format!("invalid regex: {}", first_line(&e.to_string())),
                );
                None
            }
        });
    let user = raw.user.as_ref().and_then(|u| lookup(ctx, u, Kind::User));
    let config_dir = ctx.config_dir();
    let pidfile = raw.pidfile.as_ref().map(|p| {
        let joined = config_dir.join(p.get_ref());
        super::file::normalize(&joined)
    });
    let every = values::positive_duration(ctx, &raw.every, "every", DEFAULT_PROCESS_EVERY);
    if ctx.errors.len() != before {
        return None;
    }
    Some(ProcessWatch {
        name: raw.name.map(Spanned::into_inner),
        cmdline,
        user,
        pidfile,
        every,
    })
}

/// regex's errors are several lines with an ASCII-art caret; the last line says what.
fn first_line(s: &str) -> &str {
    s.lines()
        .rev()
        .find(|l| !l.trim().is_empty())
        .unwrap_or(s)
        .trim_start_matches("error: ")
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSystem {
    every: Option<Spanned<String>>,
    mounts: Option<Vec<Spanned<String>>>,
}

pub(crate) fn parse_system(
    ctx: &mut Ctx,
    table: DeTable<'_>,
    span: Range<usize>,
) -> Option<SystemWatch> {
    let raw: RawSystem = deserialize_table(ctx, table, span)?;
    let before = ctx.errors.len();
    let every = values::positive_duration(ctx, &raw.every, "every", DEFAULT_SYSTEM_EVERY);
    let mut named_mounts = Vec::new();
    let mut points: Option<Vec<PathBuf>> = None;
    for m in raw.mounts.iter().flatten() {
        let text = m.get_ref();
        if text.contains(['*', '?', '[', '{']) {
            continue;
        }
        let trimmed = text.trim_end_matches('/');
        let path = PathBuf::from(if trimmed.is_empty() { "/" } else { trimmed });
        let points = points.get_or_insert_with(mount_points);
        if points.contains(&path) {
            named_mounts.push(path);
        } else {
            let mut known: Vec<String> = points
                .iter()
                .filter(|p| !p.starts_with("/proc") && !p.starts_with("/sys"))
                .map(|p| p.display().to_string())
                .collect();
            known.truncate(12);
            ctx.error(
                m.span(),
                format!(
                    "{text:?} is not a mount point here (mount points: {})",
                    known.join(", ")
                ),
            );
        }
    }
    let mounts = raw.mounts.as_ref().map(|list| {
        let mut b = GlobSetBuilder::new();
        for m in list {
            match GlobBuilder::new(m.get_ref())
                .literal_separator(true)
                .build()
            {
                Ok(g) => {
                    b.add(g);
                }
                Err(e) => ctx.error(
                    m.span(),
                    format!("invalid glob {:?}: {}", m.get_ref(), e.kind()),
                ),
            }
        }
        b.build().unwrap_or_else(|_| GlobSet::empty())
    });
    if ctx.errors.len() != before {
        return None;
    }
    Some(SystemWatch {
        every,
        mounts,
        named_mounts,
    })
}

/// The mount points of this mount namespace, from /proc/self/mountinfo (its fifth field,
/// with `\040`-style escapes for spaces and the like).
fn mount_points() -> Vec<PathBuf> {
    let text =
        crate::fsread::read_regular_text(std::path::Path::new("/proc/self/mountinfo"), 16 << 20)
            .unwrap_or_default();
    text.lines()
        .filter_map(|l| l.split(' ').nth(4))
        .map(|p| PathBuf::from(unescape_mount(p)))
        .collect()
}

/// `\NNN` (octal) escapes of mountinfo undone.
fn unescape_mount(s: &str) -> std::ffi::OsString {
    use std::os::unix::ffi::OsStringExt;
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let octal = (b[i] == b'\\' && i + 3 < b.len())
            .then(|| &b[i + 1..i + 4])
            .filter(|d| d.iter().all(|c| (b'0'..=b'7').contains(c)))
            .and_then(|d| {
                u8::try_from(d.iter().fold(0u32, |n, c| n * 8 + u32::from(c - b'0'))).ok()
            });
        if let Some(byte) = octal {
            out.push(byte);
            i += 4;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    std::ffi::OsString::from_vec(out)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTcp {
    address: Spanned<String>,
    every: Option<Spanned<String>>,
    timeout: Option<Spanned<String>>,
}

pub(crate) fn parse_tcp(ctx: &mut Ctx, table: DeTable<'_>, span: Range<usize>) -> Option<TcpWatch> {
    let raw: RawTcp = deserialize_table(ctx, table, span)?;
    let before = ctx.errors.len();
    let address = raw.address.get_ref().trim().to_string();
    let port_ok = address
        .rsplit_once(':')
        .filter(|(host, _)| !host.is_empty() && host != &"[]")
        .and_then(|(_, port)| port.parse::<u16>().ok())
        .is_some_and(|p| p != 0);
    if !port_ok {
        ctx.error(
            raw.address.span(),
            format!("invalid address {address:?}: write it as \"host:port\" (\"127.0.0.1:5432\", \"[::1]:22\", \"db.internal:5432\")"),
        );
    }
    let every = values::positive_duration(ctx, &raw.every, "every", DEFAULT_TCP_EVERY);
    let timeout = values::positive_duration(ctx, &raw.timeout, "timeout", DEFAULT_TCP_TIMEOUT);
    if ctx.errors.len() != before {
        return None;
    }
    Some(TcpWatch {
        address,
        every,
        timeout,
    })
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCommand {
    command: Spanned<Vec<String>>,
    every: Option<Spanned<String>>,
    timeout: Option<Spanned<String>>,
    user: Option<Spanned<String>>,
    group: Option<Spanned<String>>,
    cwd: Option<Spanned<String>>,
    #[serde(default)]
    env: BTreeMap<Spanned<String>, String>,
}

pub(crate) fn parse_command(
    ctx: &mut Ctx,
    table: DeTable<'_>,
    span: Range<usize>,
) -> Option<CommandWatch> {
    let raw: RawCommand = deserialize_table(ctx, table, span)?;
    let before = ctx.errors.len();
    if raw.command.get_ref().is_empty() {
        ctx.error(
            raw.command.span(),
            "`command` is empty: give the program and its arguments",
        );
    }
    let every = values::positive_duration(ctx, &raw.every, "every", DEFAULT_COMMAND_EVERY);
    let timeout = values::positive_duration(ctx, &raw.timeout, "timeout", DEFAULT_COMMAND_TIMEOUT);
    let (user, group, cwd) = run_as(ctx, &raw.user, &raw.group, &raw.cwd);
    let mut env = BTreeMap::new();
    for (k, v) in &raw.env {
        check_env_name(ctx, k);
        env.insert(k.get_ref().clone(), v.clone());
    }
    if ctx.errors.len() != before {
        return None;
    }
    Some(CommandWatch {
        argv: raw.command.into_inner(),
        every,
        timeout,
        user,
        group,
        cwd,
        env,
    })
}

#[cfg(test)]
mod tests {
    #[test]
    fn mountinfo_escapes_are_undone_and_a_bad_one_is_kept_as_written() {
        assert_eq!(super::unescape_mount("/mnt/my\\040disk"), "/mnt/my disk");
        assert_eq!(super::unescape_mount("/a\\777b\\09"), "/a\\777b\\09");
        assert!(super::mount_points().contains(&std::path::PathBuf::from("/")));
    }
}
