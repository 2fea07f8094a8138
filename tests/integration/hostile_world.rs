//! What a monitored target, a file, a template or the state directory can do to a running
//! daemon: it never crashes, hangs or goes blind, and no accepted alert is lost or sent
//! somewhere else.

use std::os::unix::ffi::OsStrExt;
use std::time::Duration;

use crate::http_server::Server;
use crate::util::*;

/// Every file created in @DIR@/in is posted to `url`.
fn file_to_webhook(url: &str, extra: &str) -> String {
    format!(
        "[watch.w]\ntype = \"file\"\npaths = [\"@DIR@/in\"]\nevents = [\"create\"]\ndebounce = \"0ms\"\n\n\
         [rule.r]\nwatch = \"w\"\nthen = [\"hook\"]\ntrigger_limit = \"off\"\n\n\
         [action.hook]\ntype = \"webhook\"\nurl = \"{url}\"\n{extra}\n"
    )
}

fn start_with_in(config: &str) -> Hark {
    let dir = tempdir();
    std::fs::create_dir(dir.path().join("in")).unwrap();
    start_in(dir, config)
}

#[test]
fn a_damaged_state_store_is_set_aside_while_running_and_a_clear_error_at_start() {
    let server = Server::start();
    let mut h = start_with_in(&file_to_webhook(&server.url("/hook"), ""));
    std::fs::write(h.path("in/a"), "x").unwrap();
    assert!(server.wait_hits(0, 1), "log:\n{}", h.log());
    let store = h.path("state/state.redb");
    // The truncation comes between hark's writes, not in the middle of the one that marks
    // the first delivery made (the receiver counts its answer before hark has it): one
    // that the same write then covers with redb's header cannot be told from hark's own.
    assert!(settled(&store), "the store is still being written");
    // Regression: `truncate -s 0` under a running daemon made its next write panic.
    std::fs::OpenOptions::new()
        .write(true)
        .open(&store)
        .unwrap()
        .set_len(0)
        .unwrap();
    std::fs::write(h.path("in/b"), "x").unwrap();
    assert!(server.wait_hits(1, 1), "log:\n{}", h.log());
    assert!(h.wait_log("set aside, and made anew"), "log:\n{}", h.log());
    assert!(h.status()["pid"].is_number());
    let aside = std::fs::read_dir(h.path("state"))
        .unwrap()
        .filter_map(Result::ok)
        .any(|e| {
            e.file_name()
                .to_string_lossy()
                .starts_with("state.redb.damaged-")
        });
    assert!(aside, "the damaged file is kept for a person to look at");
    h.restart();

    assert_eq!(h.stop(), Some(0));
    // `hark run` refusing to start: its stderr, after exit code 1 and no panic.
    let refused = || {
        let out = std::process::Command::new(HARK)
            .args(["run", "-c"])
            .arg(h.path("hark.toml"))
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr).into_owned();
        assert_eq!(out.status.code(), Some(1), "{err}");
        assert!(
            !err.contains("panicked") && !err.contains("assertion"),
            "{err}"
        );
        err
    };
    // Cut short with redb's header intact (`truncate -s 4096`): the same clear error, not
    // an assertion inside redb at every start.
    std::fs::OpenOptions::new()
        .write(true)
        .open(&store)
        .unwrap()
        .set_len(4096)
        .unwrap();
    let err = refused();
    assert!(
        err.contains("cut short at 4096 bytes") && err.contains("move it aside"),
        "{err}"
    );

    // At start, a file that is not a redb database stops hark with the file's name.
    std::fs::write(&store, vec![0u8; 8192]).unwrap();
    let err = refused();
    assert!(
        err.contains("state.redb") && err.contains("damaged"),
        "{err}"
    );
}

/// Waits (bounded) until the file's size and modification time stay the same for 300 ms.
fn settled(path: &std::path::Path) -> bool {
    let seen = || {
        std::fs::metadata(path)
            .ok()
            .map(|m| (m.len(), m.modified().ok()))
    };
    let mut last = seen();
    wait_for(Duration::from_secs(10), || {
        std::thread::sleep(Duration::from_millis(300));
        let now = seen();
        let same = now == last;
        last = now;
        same
    })
}

#[test]
fn a_deleted_state_store_is_written_again_and_still_keeps_a_second_daemon_out() {
    let server = Server::start();
    server.set_status(503);
    let mut h = start_with_in(&file_to_webhook(&server.url("/hook"), ""));
    let store = h.path("state/state.redb");
    std::fs::remove_file(&store).unwrap();
    // Regression: a second daemon could start on the same state_dir once the file (and
    // its lock) was gone.
    let second = std::process::Command::new(HARK)
        .args(["run", "-c"])
        .arg(h.path("hark.toml"))
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&second.stderr);
    assert_eq!(second.status.code(), Some(1), "{err}");
    assert!(err.contains("another hark"), "{err}");
    // The next write notices, and writes the file again from hark's copy: the delivery
    // accepted now survives a SIGKILL.
    std::fs::write(h.path("in/a"), "x").unwrap();
    assert!(
        h.wait_log("written again from hark's open copy"),
        "log:\n{}",
        h.log()
    );
    assert!(store.exists());
    // Stored before its first attempt (the receiver answers 503 for now).
    assert!(h.wait_log("delivery failed; retrying"), "log:\n{}", h.log());
    h.kill_and_restart();
    server.set_status(200);
    assert!(
        wait_for(Duration::from_secs(20), || server
            .requests()
            .iter()
            .any(|(s, _)| *s == 200)),
        "the delivery did not survive; log:\n{}",
        h.log()
    );
}

#[test]
fn a_template_that_loops_forever_fails_its_action_and_stops_nothing_else() {
    let server = Server::start();
    // Regression: two nested range(100000) loops stopped every watch, the control socket
    // and SIGTERM.
    let body = "body = '{% for i in range(100000) %}{% for j in range(100000) %}x{% endfor %}{% endfor %}'";
    let mut h = start_with_in(&format!(
        "{}\n[rule.ok]\nwatch = \"w\"\nthen = [\"fine\"]\n\n[action.fine]\ntype = \"webhook\"\nurl = \"{}\"\n",
        file_to_webhook(&server.url("/loop"), body),
        server.url("/fine")
    ));
    std::fs::write(h.path("in/a"), "x").unwrap();
    assert!(
        h.wait_log("did more work than one may"),
        "log:\n{}",
        h.log()
    );
    assert!(server.wait_hits(0, 1), "log:\n{}", h.log());
    assert!(server.last_request().starts_with("POST /fine"));
    assert!(h.status()["pid"].is_number());
    assert_eq!(h.stop(), Some(0), "log:\n{}", h.log());
}

#[test]
fn a_pidfile_that_is_a_fifo_does_not_hang_start_or_stop() {
    let dir = tempdir();
    let fifo = dir.path().join("app.pid");
    let c = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
    // SAFETY: a valid NUL-terminated path.
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o644) }, 0);
    // Regression: start-up waited on the FIFO forever (no READY=1, SIGTERM ignored).
    let mut h = start_in(
        dir,
        "[watch.app]\ntype = \"process\"\npidfile = \"@DIR@/app.pid\"\nevery = \"200ms\"\n\n[rule.r]\nwatch = \"app\"\nwhen = 'count == 0'\n",
    );
    assert!(h.wait_log("rule firing rule=r"), "log:\n{}", h.log());
    assert_eq!(h.stop(), Some(0), "log:\n{}", h.log());
}

#[test]
fn deeply_nested_json_from_a_target_does_not_blind_status_tail_or_explain() {
    let server = Server::start();
    let nested = format!("{}{}", "[".repeat(123), "]".repeat(123));
    server.set(|r| {
        r.body = nested.into_bytes();
        r.content_type = "application/json";
    });
    let h = start(&format!(
        "[watch.api]\ntype = \"http\"\nurl = \"{}\"\nevery = \"200ms\"\n\n[rule.r]\nwatch = \"api\"\nwhen = 'status == 200'\n",
        server.url("/")
    ));
    assert!(h.wait_log("rule firing rule=r"), "log:\n{}", h.log());
    // Regression: exit 3, "recursion limit exceeded", from each client tool.
    let st = h.status();
    assert!(st["watches"].is_array(), "{st}");
    let (code, out, err) = h.ctl(&["explain", "r", "--json"]);
    assert_eq!(code, Some(0), "{err}");
    assert!(out.contains("nested deeper than"), "{out}");
}

#[test]
fn a_redirect_is_a_failed_delivery_and_the_payload_and_secret_go_nowhere_else() {
    let elsewhere = Server::start();
    let receiver = Server::start();
    let target: &'static str = Box::leak(elsewhere.url("/stolen").into_boxed_str());
    receiver.set(|r| r.redirect_to = Some(target));
    let h = start_with_in(&file_to_webhook(
        &receiver.url("/hook"),
        "headers = { X-Api-Key = \"s3cret\" }",
    ));
    std::fs::write(h.path("in/a"), "x").unwrap();
    assert!(h.wait_log("delivery failed for good"), "log:\n{}", h.log());
    assert!(
        h.log().contains("redirects are not followed"),
        "log:\n{}",
        h.log()
    );
    assert_eq!(elsewhere.hits(), 0, "the payload followed the redirect");
    assert_eq!(
        h.status()["outbox"]["failed"].as_array().map(Vec::len),
        Some(1)
    );
}

#[test]
fn a_nul_byte_in_a_field_does_not_keep_an_action_from_starting() {
    let server = Server::start();
    server.set(|r| r.body = b"a\0b".to_vec());
    let h = start(&format!(
        "[watch.api]\ntype = \"http\"\nurl = \"{}\"\nevery = \"200ms\"\n\n\
         [rule.r]\nwatch = \"api\"\nwhen = 'status == 200'\nthen = [\"rec\"]\n\n\
         [action.rec]\ntype = \"shell\"\nshell = 'printf \"%s|%s\\0\" \"$HARK_BODY\" \"$HARK_COUNT\" >> @DIR@/out'\n",
        server.url("/")
    ));
    let got = h.wait_lines(1);
    assert_eq!(got, ["a\u{FFFD}b|1"], "log:\n{}", h.log());
}

#[test]
fn a_process_event_keeps_its_own_count_in_hark_count() {
    let dir = tempdir();
    let sleeper = dir.path().join("hark-count-sleeper");
    copy_program("/bin/sleep", &sleeper);
    let mut kids: Vec<_> = (0..3)
        .map(|_| {
            std::process::Command::new(&sleeper)
                .arg("30")
                .spawn()
                .unwrap()
        })
        .collect();
    let h = start_in(
        dir,
        "[watch.p]\ntype = \"process\"\nname = \"hark-count-sleeper\"\nevery = \"200ms\"\n\n\
         [rule.r]\nwatch = \"p\"\nwhen = 'kind == \"sample\" && count == 3'\nthen = [\"rec\"]\n\n\
         [action.rec]\ntype = \"shell\"\nshell = 'printf \"%s %s\\0\" \"$HARK_COUNT\" \"$HARK_FIRING_COUNT\" >> @DIR@/out'\n",
    );
    let got = h.wait_lines(1);
    for k in &mut kids {
        let _ = k.kill();
        let _ = k.wait();
    }
    // Regression: HARK_COUNT was the firing's count (1), hiding the event's `count`.
    assert_eq!(got, ["3 1"], "log:\n{}", h.log());
}

#[test]
fn a_name_holding_an_escape_character_reaches_the_action_as_its_own_bytes() {
    let h = start_with_in(&format!(
        "[watch.w]\ntype = \"file\"\npaths = [\"@DIR@/in\"]\nevents = [\"create\"]\ndebounce = \"0ms\"\n\n\
         [rule.r]\nwatch = \"w\"\nthen = [\"rec\"]\n\n[action.rec]\ntype = \"shell\"\ncommand = {}\n",
        recorder_argv("@DIR@/out", &["{{ event.path }}"])
    ));
    // A valid UTF-8 name with U+10FFAF, and the other file whose name is the byte 0xAF
    // where that character is: a root action must get the first name, not the decoy's.
    let real = h.path("in").join(os("x\u{10FFAF}".as_bytes()));
    let decoy = h.path("in").join(os(b"x\xaf"));
    std::fs::write(&decoy, "decoy").unwrap();
    std::fs::write(&real, "real").unwrap();
    let got = records(&h.path("out"));
    let got = if got.len() < 2 {
        wait_records(&h.path("out"), 2)
    } else {
        got
    };
    assert!(
        got.contains(&real.as_os_str().as_bytes().to_vec()),
        "{got:?}"
    );
    assert!(
        got.contains(&decoy.as_os_str().as_bytes().to_vec()),
        "{got:?}"
    );
    for path in got {
        assert!(
            std::fs::metadata(os(&path)).is_ok(),
            "{path:?} names no file"
        );
    }
}

#[test]
fn a_command_watch_timeout_kills_a_child_that_left_the_process_group() {
    let dir = tempdir();
    let sleeper = dir.path().join("hark-setsid-sleeper");
    copy_program("/bin/sleep", &sleeper);
    let s = sleeper.display();
    let h = start_in(
        dir,
        &format!(
            "[watch.c]\ntype = \"command\"\ncommand = [\"/bin/sh\", \"-c\", \"setsid {s} 300 & {s} 300\"]\nevery = \"2s\"\ntimeout = \"300ms\"\n"
        ),
    );
    let running = || {
        std::fs::read_dir("/proc")
            .unwrap()
            .filter_map(Result::ok)
            .filter(|e| {
                std::fs::read_link(e.path().join("exe"))
                    .is_ok_and(|p| p.as_os_str().as_bytes() == sleeper.as_os_str().as_bytes())
            })
            .count()
    };
    assert!(
        wait_for(Duration::from_secs(10), || running() == 2),
        "the command never started its two sleepers; log:\n{}",
        h.log()
    );
    // Regression: the setsid child ran on after the timeout killed the group.
    assert!(
        wait_for(Duration::from_secs(10), || running() == 0),
        "{} left running",
        running()
    );
}

#[test]
fn max_concurrent_actions_holds_across_reloads() {
    let config = |n: u32| {
        format!(
            "[daemon]\nmax_concurrent_actions = 2\n\n\
             [watch.w]\ntype = \"file\"\npaths = [\"@DIR@/in\"]\nevents = [\"create\"]\ndebounce = \"0ms\"\n\n\
             [rule.r{n}]\nwatch = \"w\"\nthen = [\"slow\"]\ntrigger_limit = \"off\"\n\n\
             [action.slow]\ntype = \"shell\"\n\
             shell = 'mkdir @DIR@/run/$$ && sleep 0.3; rmdir @DIR@/run/$$; printf x >> @DIR@/done'\n"
        )
    };
    let h = start_with_in(&config(0));
    std::fs::create_dir(h.path("run")).unwrap();
    let mut most = 0;
    for i in 0..12 {
        std::fs::write(h.path(&format!("in/f{i}")), "").unwrap();
        if i % 2 == 1 {
            // Regression: each reload made new permits while the old ones were in use.
            h.reload_with(&config(i));
        }
        for _ in 0..5 {
            most = most.max(std::fs::read_dir(h.path("run")).unwrap().count());
            std::thread::sleep(Duration::from_millis(20));
        }
    }
    wait_for(Duration::from_secs(30), || {
        most = most.max(std::fs::read_dir(h.path("run")).unwrap().count());
        std::fs::read(h.path("done")).map_or(0, |d| d.len()) >= 12
    });
    assert_eq!(
        std::fs::read(h.path("done")).map_or(0, |d| d.len()),
        12,
        "log:\n{}",
        h.log()
    );
    assert!(
        most <= 2,
        "{most} actions ran at once with max_concurrent_actions = 2"
    );
}

#[test]
fn a_backlog_longer_than_the_window_in_memory_is_delivered_whole_and_in_order() {
    let server = Server::start();
    server.set_status(503);
    let h = start_with_in(&file_to_webhook(
        &server.url("/hook"),
        "body = '{{ event.path }}'",
    ));
    let n = 600;
    for i in 0..n {
        std::fs::write(h.path(&format!("in/{i:04}")), "").unwrap();
    }
    assert!(
        wait_for(Duration::from_secs(30), || h.status()["outbox"]["pending"]
            == n),
        "log:\n{}",
        h.log()
    );
    server.set_status(200);
    assert!(
        wait_for(Duration::from_secs(60), || server
            .requests()
            .iter()
            .filter(|(s, _)| *s == 200)
            .count()
            >= n),
        "log:\n{}",
        h.log()
    );
    let bodies: Vec<String> = server
        .requests()
        .into_iter()
        .filter(|(s, _)| *s == 200)
        .map(|(_, r)| r.rsplit("\r\n\r\n").next().unwrap_or("").to_string())
        .collect();
    let mut sorted = bodies.clone();
    sorted.sort();
    sorted.dedup();
    assert_eq!(sorted.len(), n, "each delivered once");
    assert_eq!(bodies, sorted, "in the order they were accepted");
}

#[test]
fn the_watchdog_is_fed_and_status_answers_through_a_burst_on_hundreds_of_rules() {
    let dir = tempdir();
    std::fs::create_dir(dir.path().join("in")).unwrap();
    let mut config = String::from(
        "[watch.w]\ntype = \"file\"\npaths = [\"@DIR@/in\"]\nevents = [\"create\"]\ndebounce = \"0ms\"\n\n",
    );
    for i in 0..100 {
        config.push_str(&format!(
            "[rule.r{i}]\nwatch = \"w\"\nwhen = 'path.endsWith(\"{}\")'\ntrigger_limit = \"off\"\n\n",
            i % 10
        ));
    }
    let h = Start::new(&config)
        .dir(dir)
        .watchdog(Duration::from_secs(2))
        .log_level("warn")
        .run();
    let burst_start = std::time::Instant::now();
    for i in 0..3000 {
        std::fs::write(h.path(&format!("in/{i}")), "").unwrap();
    }
    // While the engine works through 300,000 verdicts, the control socket answers.
    let (code, _, err) = h.ctl(&["status", "--json"]);
    assert_eq!(code, Some(0), "{err}");
    std::thread::sleep(Duration::from_secs(3));
    let pings = h.pings();
    let gaps: Vec<Duration> = pings
        .windows(2)
        .filter(|w| w[1] > burst_start)
        .map(|w| w[1] - w[0])
        .collect();
    assert!(gaps.len() >= 2, "{} pings", pings.len());
    let worst = gaps.iter().max().copied().unwrap_or_default();
    // systemd kills a service whose pings are further apart than WatchdogSec (2 s here).
    assert!(
        worst < Duration::from_secs(2),
        "a gap of {worst:?} between WATCHDOG=1"
    );
}

/// A daemon with nothing to do (one file watch, no event for seconds) is not stuck:
/// WATCHDOG=1 keeps coming. (It used to stop after WatchdogSec without an event, and
/// systemd would have killed an idle hark.)
#[test]
fn the_watchdog_is_fed_while_nothing_happens() {
    let h = Start::new("[watch.w]\ntype = \"file\"\npaths = [\"@DIR@/quiet\"]\n")
        .watchdog(Duration::from_secs(1))
        .log_level("warn")
        .run();
    let start = std::time::Instant::now();
    std::thread::sleep(Duration::from_secs(6));
    let end = std::time::Instant::now();
    let pings: Vec<_> = h.pings().into_iter().filter(|t| *t >= start).collect();
    // Pinged every half second; systemd wants one within each second.
    assert!(pings.len() >= 8, "{} pings in 6 s", pings.len());
    let last = pings.last().copied().unwrap_or(start);
    assert!(
        end - last < Duration::from_secs(1),
        "no ping in the last {:?}",
        end - last
    );
}
