//! The `log` watch as the world breaks it: Debian's logrotate under a writer at hundreds
//! of lines a second, a rotation while hark is stopped, a rotated file far behind, a
//! symlink planted by an unprivileged user, a field of a megabyte, thousands of files
//! under a small open-files limit.

use std::collections::BTreeMap;
use std::io::Write;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use crate::log_watch::logrotate;
use crate::util::*;

/// A log watch over `@DIR@/logs/app.log` matching `line N`; the action records `N`.
fn numbered(extra: &str, when: &str) -> String {
    format!(
        "[watch.app]\ntype = \"log\"\npaths = [\"@DIR@/logs/app.log\"]\n\
         pattern = 'line (?P<n>[0-9]+)'\n{extra}\n\n\
         [rule.r]\nwatch = \"app\"\nwhen = '{when}'\ntrigger_limit = \"off\"\nthen = [\"rec\"]\n\n\
         [action.rec]\ntype = \"shell\"\ncommand = {}\n",
        recorder_argv("@DIR@/out", &["{{ event.n }}"])
    )
}

fn log_dir() -> tempfile::TempDir {
    let dir = tempdir();
    std::fs::create_dir(dir.path().join("logs")).unwrap();
    std::fs::write(dir.path().join("logs/app.log"), "").unwrap();
    dir
}

/// How often each number was recorded.
fn counts(h: &Hark) -> BTreeMap<u64, usize> {
    let mut out = BTreeMap::new();
    for r in records(&h.path("out")) {
        if let Some(n) = std::str::from_utf8(&r).ok().and_then(|s| s.parse().ok()) {
            *out.entry(n).or_insert(0) += 1;
        }
    }
    out
}

/// Waits until numbers `from..=to` were each recorded, then a little longer; what is
/// missing and what came more than once.
fn wait_each_once(h: &Hark, from: u64, to: u64, limit: Duration) -> (Vec<u64>, Vec<u64>) {
    wait_for(limit, || (from..=to).all(|n| counts(h).contains_key(&n)));
    std::thread::sleep(Duration::from_millis(500));
    let c = counts(h);
    let missing = (from..=to).filter(|n| !c.contains_key(n)).collect();
    let twice = c.iter().filter(|(_, k)| **k > 1).map(|(n, _)| *n).collect();
    (missing, twice)
}

fn append_lines(path: &Path, range: std::ops::RangeInclusive<u64>) {
    let mut f = std::fs::OpenOptions::new().append(true).open(path).unwrap();
    let text: String = range.map(|n| format!("line {n}\n")).collect();
    f.write_all(text.as_bytes()).unwrap();
}

#[test]
fn real_logrotate_under_a_reopening_writer_at_400_lines_a_second_gives_every_line_once() {
    let h = start_in(log_dir(), &numbered("", "true"));
    let log = h.path("logs/app.log");
    let total = 2000u64;
    let writer = {
        let log = log.clone();
        std::thread::spawn(move || {
            // Reopens its file when the name holds another inode, as daemons that watch
            // their log (or get a signal from logrotate's postrotate) do.
            let mut f = std::fs::OpenOptions::new().append(true).open(&log).unwrap();
            let start = Instant::now();
            for n in 1..=total {
                let ino = f.metadata().unwrap().ino();
                if std::fs::metadata(&log).is_ok_and(|m| m.ino() != ino) {
                    f = std::fs::OpenOptions::new().append(true).open(&log).unwrap();
                }
                f.write_all(format!("line {n}\n").as_bytes()).unwrap();
                let due = start + Duration::from_micros(2500 * n);
                std::thread::sleep(due.saturating_duration_since(Instant::now()));
            }
        })
    };
    for _ in 0..5 {
        std::thread::sleep(Duration::from_millis(900));
        logrotate(&h, "create\n  nocompress");
    }
    writer.join().unwrap();
    let (missing, twice) = wait_each_once(&h, 1, total, Duration::from_secs(60));
    assert!(
        missing.is_empty() && twice.is_empty(),
        "missing {missing:?}\ntwice {twice:?}\n{}",
        h.log()
    );
    assert_eq!(records(&h.path("out")).len(), total as usize);
}

fn rotation_while_stopped(kill: bool) {
    let mut h = start_in(log_dir(), &numbered("", "true"));
    let log = h.path("logs/app.log");
    append_lines(&log, 1..=100);
    let (missing, _) = wait_each_once(&h, 1, 100, Duration::from_secs(20));
    assert!(missing.is_empty(), "{missing:?}\n{}", h.log());
    if kill {
        let _ = h.child.kill();
        let _ = h.child.wait();
    } else {
        assert_eq!(h.stop(), Some(0), "{}", h.log());
    }
    append_lines(&log, 101..=150);
    logrotate(&h, "create\n  nocompress");
    append_lines(&log, 151..=200);
    // Started again (the daemon is already gone either way).
    h.kill_and_restart();
    let (missing, twice) = wait_each_once(&h, 1, 200, Duration::from_secs(30));
    assert!(
        missing.is_empty() && twice.is_empty(),
        "missing {missing:?}\ntwice {twice:?}\n{}",
        h.log()
    );
}

#[test]
fn lines_written_before_a_rotation_while_hark_was_stopped_by_sigterm_are_read() {
    rotation_while_stopped(false);
}

#[test]
fn lines_written_before_a_rotation_while_hark_was_killed_are_read() {
    rotation_while_stopped(true);
}

#[test]
fn a_rotated_file_compressed_while_hark_was_stopped_is_named_in_a_warning() {
    let mut h = start_in(log_dir(), &numbered("", "true"));
    let log = h.path("logs/app.log");
    append_lines(&log, 1..=10);
    assert!(wait_each_once(&h, 1, 10, Duration::from_secs(20))
        .0
        .is_empty());
    assert_eq!(h.stop(), Some(0));
    append_lines(&log, 11..=20);
    logrotate(&h, "create\n  compress");
    h.kill_and_restart();
    assert!(
        h.wait_log("rotated away while hark was stopped"),
        "{}",
        h.log()
    );
    let log_text = h.log();
    assert!(
        log_text.contains("compressed copy") && log_text.contains("app.log.1.gz"),
        "{log_text}"
    );
}

/// Peak resident memory of a process, in bytes.
fn peak_rss(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .unwrap_or(0)
        * 1024
}

#[test]
fn a_rotated_file_a_million_lines_behind_is_read_in_bounded_memory() {
    let h = start_in(log_dir(), &numbered("", "n == \"1000000\""));
    let log = h.path("logs/app.log");
    append_lines(&log, 1..=1);
    std::thread::sleep(Duration::from_millis(500));
    let before = peak_rss(h.child.id());
    h.freeze();
    let mut f = std::fs::OpenOptions::new().append(true).open(&log).unwrap();
    let mut chunk = String::new();
    for n in 2..=1_000_000u64 {
        chunk.push_str(&format!("line {n}\n"));
        if chunk.len() > 1 << 20 {
            f.write_all(chunk.as_bytes()).unwrap();
            chunk.clear();
        }
    }
    f.write_all(chunk.as_bytes()).unwrap();
    drop(f);
    std::fs::rename(&log, h.path("logs/app.log.1")).unwrap();
    h.signal(libc::SIGCONT);
    // The last line is the only one the rule takes: once it is recorded, all were read.
    let done = wait_for(Duration::from_secs(240), || {
        counts(&h).contains_key(&1_000_000)
    });
    assert!(done, "{}", h.log());
    let peak = peak_rss(h.child.id());
    // Held whole, a million events take over a gigabyte; read in bounded steps, the
    // daemon's peak grows by a few MiB.
    assert!(
        peak < before + (96 << 20),
        "peak RSS {} MiB (before {} MiB)",
        peak >> 20,
        before >> 20
    );
}

#[test]
fn a_symlink_planted_by_an_unprivileged_user_is_not_followed_and_its_directory_named() {
    let dir = log_dir();
    // nobody may reach and write the log directory (as a service's own log directory).
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let logs = dir.path().join("logs");
    std::fs::set_permissions(&logs, std::fs::Permissions::from_mode(0o777)).unwrap();
    let secret = dir.path().join("secret");
    std::fs::write(&secret, "line 666\n").unwrap();
    std::fs::set_permissions(&secret, std::fs::Permissions::from_mode(0o600)).unwrap();
    let h = start_in(dir, &numbered("", "true"));
    append_lines(&h.path("logs/app.log"), 1..=1);
    assert!(wait_each_once(&h, 1, 1, Duration::from_secs(20))
        .0
        .is_empty());
    let swap = Command::new("setpriv")
        .args([
            "--reuid=nobody",
            "--regid=nogroup",
            "--clear-groups",
            "sh",
            "-c",
        ])
        .arg(format!(
            "rm -f {0}/app.log && ln -s {1} {0}/app.log",
            logs.display(),
            secret.display()
        ))
        .output()
        .expect("setpriv (tests/setup installs util-linux)");
    assert!(
        swap.status.success(),
        "{}",
        String::from_utf8_lossy(&swap.stderr)
    );
    // Whatever else happens, the secret's line never reaches an action.
    append_lines(&secret, 667..=667);
    let named = wait_for(Duration::from_secs(10), || {
        h.status()["watches"][0]["problems"]
            .to_string()
            .contains("not following the symbolic link")
    });
    assert!(named, "{}\n{}", h.status(), h.log());
    let problems = h.status()["watches"][0]["problems"].to_string();
    assert!(problems.contains("writable by everyone"), "{problems}");
    std::thread::sleep(Duration::from_millis(500));
    let c = counts(&h);
    assert!(
        !c.contains_key(&666) && !c.contains_key(&667),
        "{c:?}\n{}",
        h.log()
    );
    // A regular file again: read as before.
    std::fs::remove_file(h.path("logs/app.log")).unwrap();
    std::fs::write(h.path("logs/app.log"), "line 2\n").unwrap();
    assert!(
        wait_each_once(&h, 2, 2, Duration::from_secs(20))
            .0
            .is_empty(),
        "{}",
        h.log()
    );
}

#[test]
fn a_megabyte_field_still_starts_the_action_and_the_whole_event_is_in_a_file() {
    let dir = log_dir();
    let config = "[watch.app]\ntype = \"log\"\npaths = [\"@DIR@/logs/app.log\"]\n\
         pattern = 'big (?P<blob>.*)'\nmax_line = \"4MiB\"\n\n\
         [rule.r]\nwatch = \"app\"\nthen = [\"rec\"]\n\n\
         [action.rec]\ntype = \"shell\"\n\
         shell = 'printf \"%s %s %s\\n\" \"${#HARK_LINE}\" \"${#HARK_EVENT}\" \"$(wc -c < \"$HARK_EVENT_FILE\")\" > @DIR@/out.txt'\n";
    let h = start_in(dir, config);
    let mut line = b"big ".to_vec();
    line.extend(std::iter::repeat_n(0xffu8, 500_000));
    line.extend(std::iter::repeat_n(0x01u8, 500_000));
    line.push(b'\n');
    std::fs::OpenOptions::new()
        .append(true)
        .open(h.path("logs/app.log"))
        .unwrap()
        .write_all(&line)
        .unwrap();
    let ran = wait_for(Duration::from_secs(30), || {
        std::fs::read_to_string(h.path("out.txt")).is_ok_and(|s| s.ends_with('\n'))
    });
    assert!(ran, "the action never started:\n{}", h.log());
    let out = std::fs::read_to_string(h.path("out.txt")).unwrap();
    let sizes: Vec<usize> = out.split_whitespace().map(|s| s.parse().unwrap()).collect();
    // The variables cut (with their marker) below what execve takes; the file whole:
    // 500,000 bytes of 0xFF are 1.5 MB of U+FFFD, 500,000 of 0x01 3 MB of \u0001.
    assert!(sizes[0] <= 33_000 && sizes[1] <= 33_000, "{sizes:?}");
    assert!(sizes[2] > 4_000_000, "{sizes:?}");
    assert!(!h.log().contains("Argument list too long"), "{}", h.log());
}

/// Held to a small open-files limit, as a service is by default.
fn small_fd_limit(cmd: &mut Command) {
    // SAFETY: setrlimit between fork and exec touches only the child.
    unsafe {
        cmd.pre_exec(|| {
            let lim = libc::rlimit {
                rlim_cur: 1024,
                rlim_max: 1024,
            };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &lim) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
}

#[test]
fn twenty_thousand_log_files_under_a_1024_descriptor_limit_are_read_and_status_answers() {
    let dir = tempdir();
    let logs = dir.path().join("logs");
    std::fs::create_dir(&logs).unwrap();
    let n = 20_000u64;
    for i in 1..=n {
        std::fs::write(logs.join(format!("f{i}.log")), format!("line {i}\n")).unwrap();
    }
    let config = numbered("start = \"beginning\"", "n == \"20000\" || n == \"1\"")
        .replace("@DIR@/logs/app.log", "@DIR@/logs/*.log");
    let h = start_with(dir, &config, small_fd_limit);
    // Status answers all along.
    let deadline = Instant::now() + Duration::from_secs(120);
    let mut answered = 0;
    while Instant::now() < deadline && counts(&h).len() < 2 {
        let (code, _, err) = h.ctl(&["status", "--json"]);
        assert_eq!(code, Some(0), "{err}\n{}", h.log());
        answered += 1;
        std::thread::sleep(Duration::from_millis(200));
    }
    let c = counts(&h);
    assert!(c.contains_key(&1) && c.contains_key(&20_000), "{c:?}");
    assert!(answered > 0);
    // Written again, a file closed while quiet is opened and read on.
    append_lines(&logs_path(&h, "f1.log"), 1..=1);
    let again = wait_for(Duration::from_secs(20), || {
        counts(&h).get(&1).copied() == Some(2)
    });
    assert!(again, "{}", h.log());
    assert!(!h.log().contains("Too many open files"), "{}", h.log());
    let fds = std::fs::read_dir(format!("/proc/{}/fd", h.child.id()))
        .unwrap()
        .count();
    assert!(fds < 1024, "{fds} descriptors open");
}

fn logs_path(h: &Hark, name: &str) -> PathBuf {
    h.path("logs").join(name)
}
