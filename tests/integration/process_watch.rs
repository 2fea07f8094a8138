//! Process watches against real processes: copies of `sleep` under names no other
//! process has, started, killed and named in pid files by the test.

use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::{Duration, SystemTime};

use crate::util::*;

/// A copy of `sleep` under a unique name (short enough to be the kernel's process name).
fn sleep_copy(dir: &Path) -> (String, PathBuf) {
    let name = format!("hs{:08x}", std::process::id() ^ fastrand_u32());
    let path = dir.join(&name);
    copy_program("/bin/sleep", &path);
    (name, path)
}

fn fastrand_u32() -> u32 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos()
}

fn spawn(path: &Path) -> Child {
    Command::new(path).arg("60").spawn().unwrap()
}

#[test]
fn start_and_exit_are_seen_with_the_pid_and_the_signal() {
    let dir = tempdir();
    let (name, path) = sleep_copy(dir.path());
    let h = start_in(
        dir,
        &fixture(
            "process/edges.toml",
            &[("@NAME@", &name), ("@EVERY@", "200ms")],
        ),
    );
    let mut child = spawn(&path);
    let pid = child.id();
    let got = h.wait_lines(1);
    assert_eq!(got, vec![format!("start {pid}  1")], "log:\n{}", h.log());
    // SAFETY: kill(2) on our own child, not yet reaped.
    unsafe { libc::kill(pid as i32, libc::SIGTERM) };
    let got = h.wait_lines(2);
    let _ = child.wait();
    assert_eq!(got[1], format!("exit {pid} 15 0"), "log:\n{}", h.log());
}

#[test]
fn an_exit_code_is_reported_when_the_process_ends_by_itself() {
    let dir = tempdir();
    let (name, path) = sleep_copy(dir.path());
    let h = start_in(
        dir,
        &fixture(
            "process/edges.toml",
            &[("@NAME@", &name), ("@EVERY@", "200ms")],
        ),
    );
    let mut child = Command::new(&path).arg("1.5").spawn().unwrap();
    let pid = child.id();
    let got = h.wait_lines(2);
    let _ = child.wait();
    assert_eq!(
        got,
        vec![format!("start {pid}  1"), format!("exit {pid} 0 0")],
        "log:\n{}",
        h.log()
    );
}

#[test]
fn a_process_that_is_not_running_is_count_0_from_the_first_sample() {
    let dir = tempdir();
    let (name, path) = sleep_copy(dir.path());
    let h = start_in(
        dir,
        &fixture("process/not_running.toml", &[("@NAME@", &name)]),
    );
    assert_eq!(h.wait_lines(1), vec!["firing 0 0 0"], "log:\n{}", h.log());
    let mut child = spawn(&path);
    let got = h.wait_lines(2);
    let _ = child.kill();
    let _ = child.wait();
    assert_eq!(
        got[1],
        format!("resolved 1 {} 1", child.id()),
        "log:\n{}",
        h.log()
    );
}

#[test]
fn a_rewritten_pid_file_is_followed_to_the_new_process() {
    let dir = tempdir();
    let (_, path) = sleep_copy(dir.path());
    let pidfile = dir.path().join("app.pid");
    let h = start_in(dir, &fixture("process/pidfile.toml", &[]));
    // No pid file yet: not running.
    assert_eq!(h.wait_lines(1), vec!["app_down firing sample 0"]);

    let mut first = spawn(&path);
    std::fs::write(&pidfile, format!("{}\n", first.id())).unwrap();
    let got = h.wait_lines(3);
    assert!(
        got.contains(&format!("app_changed firing start {}", first.id())),
        "{got:?}"
    );
    assert!(
        got.contains(&format!("app_down resolved sample {}", first.id())),
        "{got:?}"
    );

    // A restart: the new process writes its pid, then the old one goes.
    let mut second = spawn(&path);
    std::fs::write(&pidfile, format!("{}\n", second.id())).unwrap();
    let got = h.wait_lines(4);
    assert_eq!(
        got[3],
        format!("app_changed firing start {}", second.id()),
        "{got:?}"
    );
    let _ = first.kill();
    let _ = first.wait();
    let _ = second.kill();
    let got = h.wait_lines(6);
    let _ = second.wait();
    // The old process was no longer the one named, so its end says nothing; the new
    // one's exit is reported, and the watch is down again.
    assert_eq!(got[4..].len(), 2, "{got:?}");
    assert!(
        got[4..].contains(&format!("app_changed firing exit {}", second.id())),
        "{got:?}"
    );
    assert!(
        got[4..]
            .iter()
            .any(|l| l.starts_with("app_down firing sample ")),
        "{got:?}"
    );
}

#[test]
fn a_stale_pid_file_naming_a_younger_process_is_not_trusted() {
    let dir = tempdir();
    let (_, path) = sleep_copy(dir.path());
    let pidfile = dir.path().join("app.pid");
    let mut child = spawn(&path);
    // The file claims to predate the process it names: that pid was reused.
    std::fs::write(&pidfile, format!("{}\n", child.id())).unwrap();
    let past = SystemTime::now() - Duration::from_secs(3600);
    std::fs::File::options()
        .write(true)
        .open(&pidfile)
        .unwrap()
        .set_modified(past)
        .unwrap();
    let h = start_in(dir, &fixture("process/pidfile.toml", &[]));
    let got = h.wait_lines(1);
    let _ = child.kill();
    let _ = child.wait();
    assert_eq!(got, vec!["app_down firing sample 0"], "log:\n{}", h.log());
}

#[test]
fn a_short_lived_program_is_seen_through_the_process_connector() {
    let dir = tempdir();
    let (name, path) = sleep_copy(dir.path());
    // Far longer than the program lives: only the kernel's exec notification can see it.
    let h = start_in(
        dir,
        &fixture(
            "process/edges.toml",
            &[("@NAME@", &name), ("@EVERY@", "1h")],
        ),
    );
    let mut child = Command::new(&path).arg("0.3").spawn().unwrap();
    let pid = child.id();
    if h.log().contains("process connector is not available") {
        // Without it (not root, or outside the initial network namespace), starts wait
        // for the next pass: nothing within the hour.
        std::thread::sleep(Duration::from_secs(1));
        let _ = child.wait();
        assert_eq!(h.lines(), Vec::<String>::new());
        return;
    }
    let got = h.wait_lines(2);
    let _ = child.wait();
    assert_eq!(
        got,
        vec![format!("start {pid}  1"), format!("exit {pid} 0 0")],
        "log:\n{}",
        h.log()
    );
}

#[test]
fn cpu_percent_is_measured_over_the_interval() {
    let dir = tempdir();
    let name = format!("hb{:08x}", fastrand_u32());
    let shell = dir.path().join(&name);
    copy_program("/bin/sh", &shell);
    let h = start_in(dir, &fixture("process/busy.toml", &[("@NAME@", &name)]));
    // Busy for the whole test; killed below.
    let mut busy = Command::new(&shell)
        .args(["-c", "while :; do :; done"])
        .spawn()
        .unwrap();
    let got = h.wait_lines(1);
    let _ = busy.kill();
    let _ = busy.wait();
    let cpu: f64 = got.first().and_then(|l| l.parse().ok()).unwrap_or(0.0);
    // One core at most, and clearly busy.
    assert!((30.0..=105.0).contains(&cpu), "{got:?}\nlog:\n{}", h.log());
}

/// A program that forks and whose child never execs: the child carries the program's
/// name, so it is a start of its own, found at the next pass (over /proc, or through the
/// forks the process connector reports), and its exit is seen like any other.
#[test]
fn a_forked_child_that_never_execs_is_a_start_and_an_exit_of_its_own() {
    let dir = tempdir();
    let name = format!("hb{:08x}", std::process::id() ^ fastrand_u32());
    let path = dir.path().join(&name);
    copy_program("/bin/bash", &path);
    let fifo = dir.path().join("never-written");
    let c = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
    // SAFETY: mkfifo(3) with a valid C string.
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
    let h = start_in(
        dir,
        &fixture(
            "process/edges.toml",
            &[("@NAME@", &name), ("@EVERY@", "200ms")],
        ),
    );
    // The subshell is a fork of the copy that runs only builtins: it waits 1.5 s on a
    // FIFO nobody writes to, then exits 3. (The script ends with a builtin: bash would
    // exec a last `sleep` in its own process, which then is `sleep`, no longer selected.)
    let script =
        r#"sleep 0.5; ( echo $BASHPID; read -t 1.5 x 0<>"$0"; exit 3 ); sleep 0.5; exit 0"#;
    let parent = Command::new(&path)
        .args(["-c", script])
        .arg(&fifo)
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let ppid = parent.id();
    let out = parent.wait_with_output().unwrap();
    let child: u32 = String::from_utf8_lossy(&out.stdout).trim().parse().unwrap();
    let got = h.wait_lines(4);
    // Kind and pid (the exit code of the child is read from it before its parent reaps
    // it, or not at all).
    let mut seen: Vec<String> = got
        .iter()
        .map(|l| l.split(' ').take(2).collect::<Vec<_>>().join(" "))
        .collect();
    seen.sort();
    let mut want = vec![
        format!("start {ppid}"),
        format!("start {child}"),
        format!("exit {child}"),
        format!("exit {ppid}"),
    ];
    want.sort();
    assert_eq!(seen, want, "{got:?}\nlog:\n{}", h.log());
    assert!(got.contains(&format!("start {child}  2")), "{got:?}");
}

/// How many events the watch `name` has had, from `hark status`.
fn events_of(h: &Hark, name: &str) -> u64 {
    h.status()["watches"]
        .as_array()
        .and_then(|ws| ws.iter().find(|w| w["name"] == name))
        .and_then(|w| w["events"].as_u64())
        .unwrap_or(0)
}

#[test]
fn an_exit_is_acted_on_while_a_log_backlog_is_read_and_no_line_is_lost() {
    const LINES: u64 = 300_000;
    let dir = tempdir();
    let (name, path) = sleep_copy(dir.path());
    let log = dir.path().join("flood.log");
    let text: String = (0..LINES)
        .map(|i| format!("ERROR request {i} from 10.0.{}.{}\n", i % 250, i % 7))
        .collect();
    std::fs::write(&log, text).unwrap();
    let flood = format!(
        "\n[watch.flood]\ntype = \"log\"\npaths = [\"{}\"]\nstart = \"beginning\"\n\
         pattern = 'from (?P<ip>\\S+)'\n\n[rule.attack]\nwatch = \"flood\"\n\
         group_by = [\"ip\"]\ntimes = 5\nwithin = \"1m\"\ntrigger_limit = \"off\"\n",
        log.display()
    );
    let config = fixture(
        "process/edges.toml",
        &[("@NAME@", &name), ("@EVERY@", "200ms")],
    );
    let h = start_in(dir, &(config + &flood));
    let mut child = spawn(&path);
    let pid = child.id();
    let got = h.wait_lines(1);
    assert_eq!(got, vec![format!("start {pid}  1")], "log:\n{}", h.log());
    // SAFETY: kill(2) on our own child, not yet reaped.
    unsafe { libc::kill(pid as i32, libc::SIGKILL) };
    let got = h.wait_lines(2);
    let read_then = events_of(&h, "flood");
    let _ = child.wait();
    assert_eq!(got[1], format!("exit {pid} 9 0"), "log:\n{}", h.log());
    // The exit's action ran before the lines queued ahead of it were all judged...
    assert!(
        read_then < LINES,
        "the exit waited for the whole backlog ({read_then} lines judged first)"
    );
    // ...and none of them was lost for it.
    assert!(
        wait_for(Duration::from_secs(120), || events_of(&h, "flood") == LINES),
        "{} of {LINES} lines judged\n{}",
        events_of(&h, "flood"),
        h.log()
    );
}
