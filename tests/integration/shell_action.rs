//! Shell actions: values reach the program intact and inject nothing; timeouts kill the
//! whole process group; concurrency is bounded without dropping anything.

use std::os::unix::ffi::OsStrExt;
use std::time::Duration;

use crate::util::*;

/// File names an attacker who can create files in a watched directory would pick.
fn hostile_names() -> Vec<Vec<u8>> {
    vec![
        b"with space".to_vec(),
        b"quote'single".to_vec(),
        b"quote\"double".to_vec(),
        b"new\nline".to_vec(),
        b"$(touch PWNED_SUBST)".to_vec(),
        b"`touch PWNED_BACKTICK`".to_vec(),
        b"semi;touch PWNED_SEMI".to_vec(),
        b"star*".to_vec(),
        b"back\\slash".to_vec(),
        b"latin1-\xe9\xff-bytes".to_vec(),
        b"{{ rule }}".to_vec(),
    ]
}

fn assert_hostile_names_arrive_intact(action: &str) {
    let dir = tempdir();
    std::fs::create_dir(dir.path().join("in")).unwrap();
    std::fs::create_dir(dir.path().join("cwd")).unwrap();
    let cfg = format!(
        r#"
[watch.drop]
type = "file"
paths = ["@DIR@/in"]
events = ["create"]
debounce = "0ms"

[rule.r]
watch = "drop"
then = ["rec"]

[action.rec]
type = "shell"
cwd = "@DIR@/cwd"
{action}
"#
    );
    let h = start_in(dir, &cfg);
    let names = hostile_names();
    let mut want = Vec::new();
    for n in &names {
        let p = h.path("in").join(os(n));
        std::fs::write(&p, "x").unwrap();
        want.push(bytes_of(&p));
    }
    let mut got = wait_records(&h.path("out"), names.len());
    got.sort();
    want.sort();
    assert_eq!(
        got.iter()
            .map(|g| String::from_utf8_lossy(g).into_owned())
            .collect::<Vec<_>>(),
        want.iter()
            .map(|g| String::from_utf8_lossy(g).into_owned())
            .collect::<Vec<_>>(),
    );
    assert_eq!(got, want, "byte for byte");
    for dir in [h.path("cwd"), h.path("in"), h.dir.path().to_path_buf()] {
        for entry in std::fs::read_dir(&dir).unwrap().flatten() {
            let name = entry.file_name();
            assert!(
                !name.as_bytes().starts_with(b"PWNED"),
                "a file name was executed: {name:?} in {dir:?}"
            );
        }
    }
}

#[test]
fn hostile_file_names_reach_an_argv_action_intact_and_inject_nothing() {
    assert_hostile_names_arrive_intact(&format!(
        "command = {}",
        recorder_argv("@DIR@/out", &["{{ event.path }}"])
    ));
}

#[test]
fn hostile_file_names_reach_a_shell_script_intact_and_inject_nothing() {
    assert_hostile_names_arrive_intact(r#"shell = 'printf "%s\0" "$HARK_PATH" >> "@DIR@/out"'"#);
}

fn alive(pid: i32) -> bool {
    // A zombie is dead for our purpose; /proc says which.
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(s) => !s
            .rsplit(')')
            .next()
            .unwrap_or("")
            .trim_start()
            .starts_with('Z'),
        Err(_) => false,
    }
}

#[test]
fn a_timeout_kills_the_whole_process_group_grandchildren_too() {
    let cfg = r#"
[watch.w]
type = "file"
paths = ["@DIR@/trigger"]
debounce = "0ms"

[rule.r]
watch = "w"
when = 'kind == "create"'
then = ["hang"]

[action.hang]
type = "shell"
timeout = "1s"
shell = '''
sleep 300 &
echo $! > "@DIR@/grandchild.pid"
echo $$ > "@DIR@/child.pid"
sleep 300
'''
"#;
    let h = start(cfg);
    std::fs::write(h.path("trigger"), "go").unwrap();
    let read_pid =
        |f: &str| -> Option<i32> { std::fs::read_to_string(h.path(f)).ok()?.trim().parse().ok() };
    assert!(wait_for(Duration::from_secs(10), || read_pid(
        "grandchild.pid"
    )
    .is_some()
        && read_pid("child.pid").is_some()));
    let (gc, c) = (
        read_pid("grandchild.pid").unwrap(),
        read_pid("child.pid").unwrap(),
    );
    assert!(h.wait_log("action timed out"), "log:\n{}", h.log());
    assert!(
        wait_for(Duration::from_secs(10), || !alive(gc) && !alive(c)),
        "grandchild {gc} or child {c} survived the timeout"
    );
}

#[test]
fn at_most_max_concurrent_actions_run_at_once_and_none_are_dropped() {
    let cfg = r#"
[daemon]
max_concurrent_actions = 2

[watch.w]
type = "file"
paths = ["@DIR@/in"]
events = ["create"]
debounce = "0ms"

[rule.r]
watch = "w"
then = ["slow"]

[action.slow]
type = "shell"
# Each run counts itself in, holds for a while, counts itself out; the peak is recorded.
shell = '''
cd "@DIR@"
while ! mkdir lock 2>/dev/null; do sleep 0.01; done
n=$(( $(cat running 2>/dev/null || echo 0) + 1 )); echo $n > running
echo $n >> peaks
rmdir lock
sleep 0.3
while ! mkdir lock 2>/dev/null; do sleep 0.01; done
echo $(( $(cat running) - 1 )) > running
printf "%s\0" "$HARK_PATH" >> out
rmdir lock
'''
"#;
    let dir = tempdir();
    std::fs::create_dir(dir.path().join("in")).unwrap();
    let h = start_in(dir, cfg);
    for i in 0..6 {
        std::fs::write(h.path(&format!("in/f{i}")), "x").unwrap();
    }
    let got = wait_records(&h.path("out"), 6);
    assert_eq!(got.len(), 6, "every firing ran: {got:?}");
    let peaks = std::fs::read_to_string(h.path("peaks")).unwrap();
    let max: u32 = peaks
        .lines()
        .filter_map(|l| l.trim().parse().ok())
        .max()
        .unwrap();
    assert!(max <= 2, "{max} actions ran at once (peaks: {peaks:?})");
    assert_eq!(
        max, 2,
        "the limit was reached, so the test measured something"
    );
}

#[test]
fn an_action_that_changes_its_own_watched_file_is_stopped_by_the_trigger_limit() {
    let cfg = r#"
[watch.w]
type = "file"
paths = ["@DIR@/loop.txt"]
debounce = "0ms"

[rule.r]
watch = "w"
then = ["append"]
trigger_limit = "5/30s"

[action.append]
type = "shell"
shell = 'echo again >> "@DIR@/loop.txt"'
"#;
    let h = start(cfg);
    std::fs::write(h.path("loop.txt"), "start\n").unwrap();
    assert!(h.wait_log("trigger limit hit"), "log:\n{}", h.log());
    std::thread::sleep(Duration::from_millis(500));
    let fired = h.log().matches("rule fired").count();
    assert_eq!(fired, 5, "log:\n{}", h.log());
    let lines = std::fs::read_to_string(h.path("loop.txt"))
        .unwrap()
        .lines()
        .count();
    assert_eq!(lines, 6, "the loop stopped after 5 runs");
}

#[test]
fn action_environment_is_cleared_but_for_a_safe_base_and_hark_values() {
    let cfg = r#"
[watch.w]
type = "file"
paths = ["@DIR@/f"]
debounce = "0ms"

[rule.r]
watch = "w"
when = 'kind == "create"'
then = ["env"]

[action.env]
type = "shell"
command = ["/usr/bin/env"]
env = { GREETING = "hello {{ rule }}" }
"#;
    std::env::set_var("HARK_TEST_SECRET_FROM_PARENT", "leak");
    let h = start(cfg);
    std::fs::write(h.path("f"), "x").unwrap();
    assert!(h.wait_log("action finished"), "log:\n{}", h.log());
    let log = h.log();
    assert!(log.contains("GREETING=hello r"), "{log}");
    assert!(log.contains("HARK_KIND=create"), "{log}");
    assert!(log.contains("HARK_RULE=r"), "{log}");
    assert!(log.contains("PATH=/usr/local/sbin"), "{log}");
    assert!(
        !log.contains("HARK_TEST_SECRET_FROM_PARENT"),
        "the parent's environment leaked: {log}"
    );
}

#[test]
fn a_slow_action_does_not_delay_the_evaluation_of_other_events() {
    let cfg = r#"
[daemon]
max_concurrent_actions = 1

[watch.w]
type = "file"
paths = ["@DIR@/in"]
events = ["create"]
debounce = "0ms"

[rule.slow]
watch = "w"
when = 'path.endsWith("/slow")'
then = ["sleep"]

[rule.fast]
watch = "w"
when = 'path.endsWith("/fast")'
then = ["sleep"]

[action.sleep]
type = "shell"
command = ["/bin/sleep", "5"]
"#;
    let dir = tempdir();
    std::fs::create_dir(dir.path().join("in")).unwrap();
    let h = start_in(dir, cfg);
    std::fs::write(h.path("in/slow"), "").unwrap();
    assert!(h.wait_log("rule fired rule=slow"), "{}", h.log());
    let t = std::time::Instant::now();
    std::fs::write(h.path("in/fast"), "").unwrap();
    assert!(h.wait_log("rule fired rule=fast"), "{}", h.log());
    // The only permit is held by the 5-second action; the engine still judged the event.
    assert!(
        t.elapsed() < Duration::from_secs(4),
        "evaluation waited for the action"
    );
}

#[test]
fn an_action_runs_as_the_configured_user() {
    // SAFETY: geteuid cannot fail.
    if unsafe { libc::geteuid() } != 0 {
        panic!("this test needs root, as the daemon does");
    }
    let cfg = r#"
[watch.w]
type = "file"
paths = ["@DIR@/f"]
debounce = "0ms"

[rule.r]
watch = "w"
when = 'kind == "create"'
then = ["who"]

[action.who]
type = "shell"
user = "nobody"
command = ["/usr/bin/id"]
"#;
    let h = start(cfg);
    std::fs::write(h.path("f"), "").unwrap();
    assert!(h.wait_log("action finished"), "{}", h.log());
    let log = h.log();
    assert!(log.contains("uid=65534(nobody)"), "{log}");
    assert!(
        !log.contains("groups=0(root)"),
        "root's groups were kept: {log}"
    );
}
