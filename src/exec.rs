//! Running a program as a child of its own process group, with a deadline that kills the
//! whole group and output kept up to a cap: what shell actions and command watches share.

use std::ffi::OsString;
use std::os::fd::AsRawFd;
use std::path::PathBuf;
use std::process::Stdio;
use std::time::{Duration, Instant};

use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::process::Command;
use tokio_util::sync::CancellationToken;

use crate::config::Account;

/// How much of each of stdout and stderr is kept for the log.
pub const OUTPUT_CAP: usize = 16 * 1024;
/// After SIGTERM, how long the process group gets before SIGKILL.
const KILL_GRACE: Duration = Duration::from_secs(2);
/// After the program exits, how long to wait for its output pipes, which a background
/// child it left may still hold open.
const OUTPUT_DRAIN: Duration = Duration::from_millis(500);

pub const SAFE_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// What to run, and as whom.
#[derive(Debug)]
pub struct Spec<'a> {
    pub argv: Vec<OsString>,
    /// Added to the cleared environment (after PATH, LANG, HOME, USER).
    pub env: Vec<(String, OsString)>,
    /// Given to the process as descriptor 3, named by `HARK_EVENT_FILE` (`/dev/fd/3`): an
    /// anonymous file holding these bytes, however many.
    pub event: Option<Vec<u8>>,
    pub user: Option<&'a Account>,
    pub group: Option<&'a Account>,
    pub cwd: Option<&'a PathBuf>,
    pub timeout: Duration,
}

#[derive(Debug)]
pub enum Finish {
    Exited(i32),
    Signalled(i32),
    TimedOut,
    /// hark was stopping and the action ran past the grace period.
    Killed,
}

#[derive(Debug)]
pub struct Report {
    pub finish: Finish,
    pub duration: Duration,
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
}

/// Runs `spec` to its end, its timeout, or `stop`; the environment is cleared first.
pub async fn run(spec: Spec<'_>, stop: &CancellationToken) -> std::io::Result<Report> {
    let Some((program, args)) = spec.argv.split_first() else {
        return Err(std::io::Error::other("empty command"));
    };
    let mut cmd = Command::new(program);
    cmd.args(args)
        .env_clear()
        .env("PATH", SAFE_PATH)
        .env("LANG", "C.UTF-8")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0);
    let home = spec
        .user
        .and_then(|u| u.home.clone())
        .unwrap_or_else(|| "/".into());
    cmd.env("HOME", home);
    if let Some(user) = spec.user {
        cmd.env("USER", &user.name).env("LOGNAME", &user.name);
        cmd.uid(user.id);
        if spec.group.is_none() {
            if let Some(gid) = user.primary_gid {
                cmd.gid(gid);
            }
        }
    }
    if let Some(group) = spec.group {
        cmd.gid(group.id);
    }
    if let Some(cwd) = spec.cwd {
        cmd.current_dir(cwd);
    } else {
        cmd.current_dir("/");
    }
    for (k, v) in &spec.env {
        cmd.env(k, v);
    }
    // Kept open until the child has started (it holds its own copy as descriptor 3).
    let _event = match &spec.event {
        Some(bytes) => {
            let fd = event_file(bytes)?;
            let raw = fd.as_raw_fd();
            cmd.env("HARK_EVENT_FILE", "/dev/fd/3");
            // SAFETY: between fork and exec only dup2 is called, which is async-signal-safe;
            // it gives the child the event file as descriptor 3, without CLOEXEC.
            unsafe {
                cmd.pre_exec(move || {
                    // Already descriptor 3: dup2 would leave its close-on-exec flag.
                    let rc = if raw == 3 {
                        libc::fcntl(3, libc::F_SETFD, 0)
                    } else {
                        libc::dup2(raw, 3)
                    };
                    if rc < 0 {
                        return Err(std::io::Error::last_os_error());
                    }
                    Ok(())
                });
            }
            Some(fd)
        }
        None => None,
    };
    let started = Instant::now();
    let mut child = cmd.spawn()?;
    let pgid = child.id().map(|p| p as i32);
    let out = tokio::spawn(read_capped(child.stdout.take()));
    let err = tokio::spawn(read_capped(child.stderr.take()));
    let finish = tokio::select! {
        status = child.wait() => exit_of(status?),
        _ = tokio::time::sleep(spec.timeout) => {
            terminate(&mut child, pgid).await;
            Finish::TimedOut
        }
        _ = stop.cancelled() => {
            terminate(&mut child, pgid).await;
            Finish::Killed
        }
    };
    let duration = started.elapsed();
    let stdout = collect(out).await;
    let stderr = collect(err).await;
    Ok(Report {
        finish,
        duration,
        stdout,
        stderr,
    })
}

/// An anonymous file (memfd) holding `bytes`, read from its start.
fn event_file(bytes: &[u8]) -> std::io::Result<std::os::fd::OwnedFd> {
    use std::io::{Seek, Write};
    use std::os::fd::{FromRawFd, OwnedFd};
    // SAFETY: a NUL-terminated name and flags; the descriptor returned is ours alone.
    let raw = unsafe { libc::memfd_create(c"hark-event".as_ptr(), libc::MFD_CLOEXEC) };
    if raw < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: `raw` is a fresh descriptor that nothing else owns.
    let fd = unsafe { OwnedFd::from_raw_fd(raw) };
    let mut file = std::fs::File::from(fd);
    file.write_all(bytes)?;
    file.rewind()?;
    Ok(OwnedFd::from(file))
}

fn exit_of(status: std::process::ExitStatus) -> Finish {
    use std::os::unix::process::ExitStatusExt;
    match (status.code(), status.signal()) {
        (Some(c), _) => Finish::Exited(c),
        (None, Some(s)) => Finish::Signalled(s),
        (None, None) => Finish::Exited(-1),
    }
}

/// SIGTERM to the whole group and to every process descended from the leader (one that
/// left the group with `setsid` included), SIGKILL after a grace period. A process whose
/// parent had already ended (a daemon that double-forked) is no one's descendant any more
/// and is not found.
async fn terminate(child: &mut tokio::process::Child, pgid: Option<i32>) {
    let Some(pgid) = pgid else { return };
    let mut tree = tokio::task::spawn_blocking(move || descendants(pgid))
        .await
        .unwrap_or_default();
    signal_group(pgid, libc::SIGTERM);
    signal_each(&tree, libc::SIGTERM);
    if tokio::time::timeout(KILL_GRACE, child.wait())
        .await
        .is_err()
    {
        signal_group(pgid, libc::SIGKILL);
        let _ = child.wait().await;
    }
    // The leader is gone; whatever else it started goes too, and what those started
    // during the grace period.
    let roots: Vec<i32> = tree.iter().copied().chain([pgid]).collect();
    tree.extend(
        tokio::task::spawn_blocking(move || descendants_of(&roots))
            .await
            .unwrap_or_default(),
    );
    signal_group(pgid, libc::SIGKILL);
    signal_each(&tree, libc::SIGKILL);
}

/// Every process below `root` by parent, at this moment.
fn descendants(root: i32) -> Vec<i32> {
    descendants_of(&[root])
}

fn descendants_of(roots: &[i32]) -> Vec<i32> {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    let mut children: std::collections::HashMap<i32, Vec<i32>> = std::collections::HashMap::new();
    for entry in dir.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<i32>().ok())
        else {
            continue;
        };
        if let Some(ppid) = parent_of(pid) {
            children.entry(ppid).or_default().push(pid);
        }
    }
    let mut out = Vec::new();
    let mut todo: Vec<i32> = roots.to_vec();
    while let Some(p) = todo.pop() {
        for &c in children.get(&p).map_or(&[][..], |v| &v[..]) {
            if !out.contains(&c) {
                out.push(c);
                todo.push(c);
            }
        }
    }
    out
}

/// The parent pid in `/proc/PID/stat` (after the name, which may hold `)` itself).
fn parent_of(pid: i32) -> Option<i32> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = &stat[stat.rfind(')')? + 1..];
    rest.split_whitespace().nth(1)?.parse().ok()
}

fn signal_each(pids: &[i32], signal: i32) {
    for &pid in pids {
        if pid > 1 {
            // SAFETY: kill(2) on one pid; no memory involved.
            unsafe {
                libc::kill(pid, signal);
            }
        }
    }
}

fn signal_group(pgid: i32, signal: i32) {
    if pgid > 1 {
        // SAFETY: kill(2) with a negative pid signals a process group; no memory involved.
        unsafe {
            libc::kill(-pgid, signal);
        }
    }
}

async fn collect(task: tokio::task::JoinHandle<Vec<u8>>) -> Vec<u8> {
    let abort = task.abort_handle();
    match tokio::time::timeout(OUTPUT_DRAIN, task).await {
        Ok(Ok(v)) => v,
        _ => {
            abort.abort();
            Vec::new()
        }
    }
}

/// Keeps the first `OUTPUT_CAP` bytes and reads on, so a chatty program never blocks on a
/// full pipe.
async fn read_capped<R: AsyncRead + Unpin>(stream: Option<R>) -> Vec<u8> {
    let Some(mut stream) = stream else {
        return Vec::new();
    };
    let mut kept = Vec::new();
    let mut buf = [0u8; 8192];
    loop {
        match stream.read(&mut buf).await {
            Ok(0) | Err(_) => return kept,
            Ok(n) => {
                let room = OUTPUT_CAP.saturating_sub(kept.len());
                kept.extend_from_slice(&buf[..n.min(room)]);
            }
        }
    }
}
