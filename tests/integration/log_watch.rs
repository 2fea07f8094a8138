//! The `log` watch against real files: lines appended become events (named groups as
//! fields), rotations by Debian's logrotate (`create` and `copytruncate`) lose no line,
//! and a SIGKILL and restart neither lose nor repeat one.

use std::io::Write;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use crate::util::*;

/// A log watch over `@DIR@/logs/app.log` whose action records `ip offset truncated`.
fn config(extra: &str) -> String {
    format!(
        "[watch.app]\ntype = \"log\"\npaths = [\"@DIR@/logs/app.log\"]\n\
         pattern = 'failed from (?P<ip>[0-9.]+)'\n{extra}\n\n\
         [rule.r]\nwatch = \"app\"\ntrigger_limit = \"off\"\nthen = [\"rec\"]\n\n\
         [action.rec]\ntype = \"shell\"\ncommand = {}\n",
        recorder_argv("@DIR@/out", &["{{ event.ip }}", "{{ event.truncated }}"])
    )
}

fn start_log(extra: &str, existing: &str) -> Hark {
    let dir = tempdir();
    std::fs::create_dir(dir.path().join("logs")).unwrap();
    std::fs::write(dir.path().join("logs/app.log"), existing).unwrap();
    start_in(dir, &config(extra))
}

fn append(path: &Path, text: &str) {
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .create(true)
        .open(path)
        .unwrap();
    f.write_all(text.as_bytes()).unwrap();
}

/// The IPs recorded so far, sorted (actions run side by side; records alternate ip and
/// truncated).
fn ips(h: &Hark) -> Vec<String> {
    let mut ips: Vec<String> = h.lines().chunks(2).map(|c| c[0].clone()).collect();
    ips.sort();
    ips
}

fn wait_ips(h: &Hark, n: usize) -> Vec<String> {
    wait_for(Duration::from_secs(20), || ips(h).len() >= n);
    std::thread::sleep(Duration::from_millis(300));
    ips(h)
}

#[test]
fn matching_lines_become_events_with_their_groups_from_the_end_by_default() {
    let h = start_log("", "failed from 10.0.0.1\n");
    let log = h.path("logs/app.log");
    append(
        &log,
        "failed from 10.0.0.2\nnothing to see\nfailed from 10.0.",
    );
    std::thread::sleep(Duration::from_millis(200));
    append(&log, "0.3 (the rest of the line)\n");
    // The line already there when hark started is not read: `start` defaults to the end.
    assert_eq!(
        wait_ips(&h, 2),
        ["10.0.0.2", "10.0.0.3"],
        "log:\n{}",
        h.log()
    );
}

#[test]
fn start_beginning_reads_what_is_there_and_a_long_line_is_cut_and_flagged() {
    let long = "x".repeat(100_000);
    let h = start_log(
        "start = \"beginning\"\nmax_line = \"1KiB\"",
        &format!("failed from 10.0.0.1\nfailed from 10.0.0.9 {long}\n\u{1}\u{ff}garbage\n"),
    );
    let got = wait_ips(&h, 2);
    assert_eq!(got, ["10.0.0.1", "10.0.0.9"], "log:\n{}", h.log());
    // Templates write booleans as Jinja does.
    let lines = h.lines();
    let flags: Vec<(&str, &str)> = lines
        .chunks(2)
        .map(|c| (c[0].as_str(), c[1].as_str()))
        .collect();
    assert!(
        flags.contains(&("10.0.0.9", "True")),
        "the long line is flagged: {flags:?}"
    );
    assert!(flags.contains(&("10.0.0.1", "False")), "{flags:?}");
}

#[test]
fn no_line_is_lost_or_repeated_across_a_sigkill_and_lines_written_while_down() {
    let mut h = start_log("", "");
    let log = h.path("logs/app.log");
    append(&log, "failed from 10.0.0.1\nfailed from 10.0.0.2\n");
    assert_eq!(wait_ips(&h, 2).len(), 2, "log:\n{}", h.log());
    let _ = h.child.kill();
    let _ = h.child.wait();
    append(&log, "failed from 10.0.0.3\n");
    h.kill_and_restart();
    append(&log, "failed from 10.0.0.4\n");
    assert_eq!(
        wait_ips(&h, 4),
        ["10.0.0.1", "10.0.0.2", "10.0.0.3", "10.0.0.4"],
        "log:\n{}",
        h.log()
    );
}

/// Debian's logrotate, forced, over `logs/app.log` with the directives in `how`.
pub(crate) fn logrotate(h: &Hark, how: &str) {
    let conf = h.path("logrotate.conf");
    std::fs::write(
        &conf,
        format!(
            "{} {{\n  rotate 20\n  {how}\n  missingok\n}}\n",
            h.path("logs/app.log").display()
        ),
    )
    .unwrap();
    let out = Command::new("/usr/sbin/logrotate")
        .args(["-f", "-s"])
        .arg(h.path("logrotate.state"))
        .arg(&conf)
        .output()
        .expect("logrotate (tests/setup installs it)");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn logrotate_create_and_copytruncate_lose_no_line() {
    let h = start_log("", "");
    let log = h.path("logs/app.log");
    append(&log, "failed from 10.0.0.1\n");
    assert_eq!(wait_ips(&h, 1).len(), 1, "log:\n{}", h.log());
    // `create`: the file is renamed to app.log.1 and a new one made; the writer, still
    // holding the old one, appends a line to it after the rename.
    let mut writer = std::fs::OpenOptions::new().append(true).open(&log).unwrap();
    logrotate(&h, "create\n  nocompress");
    writer.write_all(b"failed from 10.0.0.2\n").unwrap();
    drop(writer);
    append(&log, "failed from 10.0.0.3\n");
    // `copytruncate`: copied to app.log.1, then truncated in place.
    std::thread::sleep(Duration::from_millis(300));
    logrotate(&h, "copytruncate\n  nocompress");
    append(&log, "failed from 10.0.0.4\n");
    let got = wait_ips(&h, 4);
    assert_eq!(
        got,
        ["10.0.0.1", "10.0.0.2", "10.0.0.3", "10.0.0.4"],
        "log:\n{}",
        h.log()
    );
}

#[test]
fn an_unreadable_file_among_several_is_in_status_and_the_others_go_on() {
    // As root every file is readable: a FIFO where a log file should be stands in.
    let dir = tempdir();
    std::fs::create_dir_all(dir.path().join("logs")).unwrap();
    let fifo = std::ffi::CString::new(dir.path().join("logs/bad.log").to_str().unwrap()).unwrap();
    // SAFETY: a valid NUL-terminated path.
    assert_eq!(unsafe { libc::mkfifo(fifo.as_ptr(), 0o644) }, 0);
    std::fs::write(dir.path().join("logs/good.log"), "").unwrap();
    let h = start_in(
        dir,
        &config("").replace("@DIR@/logs/app.log", "@DIR@/logs/*.log"),
    );
    append(&h.path("logs/good.log"), "failed from 10.0.0.1\n");
    assert_eq!(wait_ips(&h, 1), ["10.0.0.1"], "log:\n{}", h.log());
    let st = h.status();
    let problems = st["watches"][0]["problems"].to_string();
    assert!(
        problems.contains("bad.log") && problems.contains("FIFO"),
        "{st}"
    );
}

#[test]
fn validate_points_at_each_bad_log_key_and_inside_a_bad_pattern() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempdir();
    let file = dir.path().join("bad.toml");
    std::fs::write(
        &file,
        "[watch.app]\ntype = \"log\"\npaths = [\"/var/log/app.log\"]\npattern = 'failed (?P<ip>[0-9.]+'\n\
         format = \"yaml\"\nstart = \"middle\"\nmax_line = \"1TiB\"\n",
    )
    .unwrap();
    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o644)).unwrap();
    let out = Command::new(HARK)
        .arg("validate")
        .arg("-c")
        .arg(&file)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    let f = file.display();
    for want in [
        format!("{f}:4:19: error: invalid regex: unclosed group"),
        format!("{f}:5:10: error: unknown format"),
        format!("{f}:6:9: error: unknown start"),
        format!("{f}:7:12: error: `max_line` must be"),
    ] {
        assert!(
            err.lines().any(|l| l.starts_with(&want)),
            "want {want} in:\n{err}"
        );
    }
}

#[test]
fn garbage_a_10_mb_line_and_a_log_replaced_by_a_directory_for_a_while_are_survived() {
    let mut h = start_log("", "");
    let log = h.path("logs/app.log");
    let mut garbage = b"\x00\xff\xfe\x01 binary failed from 10.0.0.1 \xc3\x28\n".to_vec();
    garbage
        .extend_from_slice(format!("failed from 10.0.0.2 {}\n", "x".repeat(10 << 20)).as_bytes());
    std::fs::OpenOptions::new()
        .append(true)
        .open(&log)
        .unwrap()
        .write_all(&garbage)
        .unwrap();
    wait_for(Duration::from_secs(20), || h.lines().len() >= 4);
    let mut got: Vec<String> = h.lines().chunks(2).map(|c| c.join(" ")).collect();
    got.sort();
    // The garbage kept (lossily) and matched; the 10 MB line cut and flagged.
    assert_eq!(got, ["10.0.0.1 False", "10.0.0.2 True"], "{}", h.log());
    // Deleted, and a directory in its place for a while: nothing stops, status answers.
    std::fs::remove_file(&log).unwrap();
    std::fs::create_dir(&log).unwrap();
    // The directory is named in `hark status`, as a problem of the watch.
    let named = wait_for(Duration::from_secs(10), || {
        h.status()["watches"][0]["problems"]
            .as_array()
            .is_some_and(|p| {
                p.iter()
                    .any(|p| p.as_str().is_some_and(|p| p.contains("directory")))
            })
    });
    assert!(
        named,
        "{}\n{}",
        h.status()["watches"][0]["problems"],
        h.log()
    );
    assert_eq!(h.status()["watches"][0]["name"], "app");
    // And a file again: read from its beginning, and the problem gone from the status.
    std::fs::remove_dir(&log).unwrap();
    std::fs::write(&log, "failed from 10.0.0.3\n").unwrap();
    assert_eq!(
        wait_ips(&h, 3),
        ["10.0.0.1", "10.0.0.2", "10.0.0.3"],
        "{}",
        h.log()
    );
    assert!(
        h.status()["watches"][0]["problems"].is_null(),
        "{}",
        h.log()
    );
    assert!(h.child.try_wait().unwrap().is_none(), "hark died");
}
