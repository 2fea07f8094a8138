//! Users and groups named in the configuration (`user`, `group` of what hark runs),
//! resolved at load time, so a typo is a config error and not a failed action.

use std::ffi::{CStr, CString};
use std::path::PathBuf;

use toml::Spanned;

use super::Ctx;

/// A user or group resolved at load time, so a typo is a config error and not a failed action.
#[derive(Debug, Clone)]
pub struct Account {
    pub name: String,
    pub id: u32,
    /// For a user: its primary group and home directory.
    pub primary_gid: Option<u32>,
    pub home: Option<PathBuf>,
}

/// `user`, `group` and `cwd` of something hark runs: resolved and checked at load.
pub(crate) fn run_as(
    ctx: &mut Ctx,
    user: &Option<Spanned<String>>,
    group: &Option<Spanned<String>>,
    cwd: &Option<Spanned<String>>,
) -> (Option<Account>, Option<Account>, Option<PathBuf>) {
    (
        user.as_ref().and_then(|u| lookup(ctx, u, Kind::User)),
        group.as_ref().and_then(|g| lookup(ctx, g, Kind::Group)),
        cwd.as_ref().map(|c| absolute_cwd(ctx, c)),
    )
}

fn absolute_cwd(ctx: &mut Ctx, c: &Spanned<String>) -> PathBuf {
    if !c.get_ref().starts_with('/') {
        ctx.error(c.span(), "`cwd` must be an absolute path");
    }
    PathBuf::from(c.get_ref())
}

#[derive(Clone, Copy)]
pub(crate) enum Kind {
    User,
    Group,
}

pub(crate) fn lookup(ctx: &mut Ctx, value: &Spanned<String>, kind: Kind) -> Option<Account> {
    let name = value.get_ref();
    let found = match kind {
        Kind::User => lookup_user(name),
        Kind::Group => lookup_group(name),
    };
    if found.is_none() {
        let what = match kind {
            Kind::User => "user",
            Kind::Group => "group",
        };
        ctx.error(
            value.span(),
            format!("no such {what} {name:?} on this system"),
        );
    }
    found
}

fn lookup_user(name: &str) -> Option<Account> {
    let cname = CString::new(name).ok()?;
    let mut pwd: libc::passwd = unsafe { std::mem::zeroed() };
    let mut buf = vec![0u8; 16 * 1024];
    let mut result: *mut libc::passwd = std::ptr::null_mut();
    // SAFETY: all pointers are valid for the call; on success `result` points at `pwd`,
    // whose string fields point into `buf`, which outlives their use below.
    let rc = unsafe {
        libc::getpwnam_r(
            cname.as_ptr(),
            &mut pwd,
            buf.as_mut_ptr().cast(),
            buf.len(),
            &mut result,
        )
    };
    if rc != 0 || result.is_null() {
        return name.parse::<u32>().ok().map(|id| Account {
            name: name.to_string(),
            id,
            primary_gid: Some(id),
            home: None,
        });
    }
    // SAFETY: pw_dir is a NUL-terminated string inside `buf` (see above).
    let home = unsafe { CStr::from_ptr(pwd.pw_dir) }
        .to_string_lossy()
        .into_owned();
    Some(Account {
        name: name.to_string(),
        id: pwd.pw_uid,
        primary_gid: Some(pwd.pw_gid),
        home: Some(PathBuf::from(home)),
    })
}

fn lookup_group(name: &str) -> Option<Account> {
    let cname = CString::new(name).ok()?;
    let mut grp: libc::group = unsafe { std::mem::zeroed() };
    let mut buf = vec![0u8; 64 * 1024];
    let mut result: *mut libc::group = std::ptr::null_mut();
    // SAFETY: as in lookup_user.
    let rc = unsafe {
        libc::getgrnam_r(
            cname.as_ptr(),
            &mut grp,
            buf.as_mut_ptr().cast(),
            buf.len(),
            &mut result,
        )
    };
    if rc != 0 || result.is_null() {
        return name.parse::<u32>().ok().map(|id| Account {
            name: name.to_string(),
            id,
            primary_gid: None,
            home: None,
        });
    }
    Some(Account {
        name: name.to_string(),
        id: grp.gr_gid,
        primary_gid: None,
        home: None,
    })
}
