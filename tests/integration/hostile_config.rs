//! What a configuration can do to hark, as a hostile user or an unlucky operator would
//! write it: whatever `validate` accepts a run can carry out on every thread, errors
//! never panic, a reload never blocks the engine nor catches a file half-written, and a
//! name removed for a moment loses nothing.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use crate::http_server::Server;
use crate::util::*;

/// `hark validate -c FILE...`: exit code and stderr.
fn validate(files: &[&Path]) -> (i32, String) {
    let mut cmd = Command::new(HARK);
    cmd.arg("validate");
    for f in files {
        cmd.arg("-c").arg(f);
    }
    let out = cmd.output().expect("run hark validate");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o644)).unwrap();
    p
}

fn rule_with(when: &str) -> String {
    format!(
        "[watch.w]\ntype = \"file\"\npaths = [\"/nonexistent/hark\"]\n\n[rule.r]\nwatch = \"w\"\nwhen = '''{when}'''\n"
    )
}

#[test]
fn conditions_nested_too_deep_for_a_run_are_refused_by_validate_and_by_a_reload() {
    let dir = tempdir();
    // Regression: 8,000 `.a` validated, then a SIGHUP overflowed a reload thread's stack;
    // 2,000 `+` terms validated, then the first event overflowed the engine's.
    let chain = write(
        dir.path(),
        "chain.toml",
        &rule_with(&format!("path{}", ".a".repeat(8000))),
    );
    let sum = write(
        dir.path(),
        "sum.toml",
        &rule_with(&(vec!["1"; 2000].join(" + ") + " > 0")),
    );
    for f in [&chain, &sum] {
        let (code, err) = validate(&[f]);
        assert_eq!(code, 1, "{err}");
        assert!(err.contains("nested more than 100 levels deep"), "{err}");
        assert!(
            !err.contains("panicked") && !err.contains("overflow"),
            "{err}"
        );
    }
    let fine = write(
        dir.path(),
        "fine.toml",
        &rule_with(&(vec!["size"; 60].join(" + ") + " > 0")),
    );
    assert_eq!(validate(&[&fine]).0, 0);

    let h = start(
        "[watch.w]\ntype = \"file\"\npaths = [\"@DIR@/in\"]\n\n[rule.r]\nwatch = \"w\"\nwhen = 'size >= 0'\n",
    );
    h.reload_with(&rule_with(&format!("path{}", ".a".repeat(8000))));
    assert!(h.wait_log("reload refused"), "log:\n{}", h.log());
    assert_eq!(h.status()["last_reload"]["ok"], false);
}

#[test]
fn an_error_past_column_65535_is_reported_not_a_panic() {
    let dir = tempdir();
    // Regression: the caret line's width overflowed the formatter past column 65,535.
    let long = format!(
        "[watch.w]\ntype = \"file\"\npaths = [\"/{}\"] oops\n",
        "a".repeat(70_000)
    );
    let f = write(dir.path(), "long.toml", &long);
    let (code, err) = validate(&[&f]);
    assert_eq!(code, 1, "{}", &err[..err.len().min(2000)]);
    assert!(!err.contains("panicked"), "{}", &err[..err.len().min(2000)]);
    assert!(err.contains(":3:700"), "{}", &err[..err.len().min(2000)]);
    assert!(
        err.lines().all(|l| l.chars().count() < 400),
        "a snippet is a window, not the line"
    );
}

#[test]
fn cel_standard_functions_work_and_unknown_ones_are_refused_at_their_column() {
    let dir = tempdir();
    let bad = write(
        dir.path(),
        "bad.toml",
        &rule_with("path.nosuchfn() || path.matches('[')"),
    );
    let (code, err) = validate(&[&bad]);
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains(":7:16: error: no method `.nosuchfn()`"),
        "{err}"
    );
    assert!(err.contains("matches(): not a valid regex"), "{err}");

    let h = start(
        "[watch.w]\ntype = \"file\"\npaths = [\"@DIR@/in\"]\nevents = [\"create\"]\n\n\
         [rule.r]\nwatch = \"w\"\nthen = [\"rec\"]\n\
         when = 'path.matches(\"^.*/in/[a-z]+\\\\.log$\") && timestamp(time) > timestamp(\"2020-01-01T00:00:00Z\")'\n\n\
         [action.rec]\ntype = \"shell\"\n\
         command = [\"/bin/sh\", \"-c\", 'printf \"%s\\0\" \"$1\" >> \"$0\"', \"@DIR@/out\", \"{{ event.path }}\"]\n",
    );
    std::fs::create_dir(h.path("in")).unwrap();
    std::thread::sleep(Duration::from_millis(300));
    std::fs::write(h.path("in/a.txt"), "").unwrap();
    std::fs::write(h.path("in/b.log"), "").unwrap();
    let got = h.wait_lines(1);
    assert_eq!(
        got,
        [h.path("in/b.log").display().to_string()],
        "log:\n{}",
        h.log()
    );
    assert!(!h.log().contains("has no field"), "log:\n{}", h.log());
}

#[test]
fn a_fifo_or_device_where_a_file_is_read_is_refused_at_once() {
    let dir = tempdir();
    let fifo = dir.path().join("conf.toml");
    let c = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
    // SAFETY: a valid NUL-terminated path.
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o644) }, 0);
    // Regression: `-c FIFO` waited for a writer forever.
    let (code, err) = validate(&[&fifo]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("not a regular file (it is a FIFO)"), "{err}");

    // In a config directory, a FIFO, a link to a device and a dangling link named *.toml
    // are each an error that names them, not skipped in silence.
    let d = dir.path().join("rules.d");
    std::fs::create_dir(&d).unwrap();
    std::fs::set_permissions(&d, std::fs::Permissions::from_mode(0o755)).unwrap();
    write(&d, "a.toml", &rule_with("true"));
    std::os::unix::fs::symlink("/nonexistent/hark.toml", d.join("b.toml")).unwrap();
    let (code, err) = validate(&[&d]);
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains("b.toml") && err.contains("which does not exist"),
        "{err}"
    );
    std::fs::remove_file(d.join("b.toml")).unwrap();
    std::os::unix::fs::symlink("/dev/zero", d.join("c.toml")).unwrap();
    let (code, err) = validate(&[&d]);
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains("c.toml") && err.contains("character device"),
        "{err}"
    );

    // A secret read from /dev/zero is refused, not read until memory runs out.
    let secret = write(
        dir.path(),
        "secret.toml",
        "[action.a]\ntype = \"webhook\"\nurl = \"http://127.0.0.1:9/\"\nheaders = { X = \"${file:/dev/zero}\" }\n",
    );
    let (code, err) = validate(&[&secret]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("not a regular file"), "{err}");
}

#[test]
fn header_injection_in_content_type_and_unless_cycles_are_refused() {
    let dir = tempdir();
    let f = write(
        dir.path(),
        "x.toml",
        "[watch.w]\ntype = \"file\"\npaths = [\"/x\"]\n\n\
         [rule.a]\nwatch = \"w\"\nunless = [\"b\"]\n\n[rule.b]\nwatch = \"w\"\nunless = [\"c\"]\n\n\
         [rule.c]\nwatch = \"w\"\nunless = [\"a\"]\nthen = [\"hook\"]\n\n\
         [action.hook]\ntype = \"webhook\"\nurl = \"http://127.0.0.1:9/\"\nbody = \"x\"\n\
         content_type = \"text/plain\\r\\nX-Injected: 1\"\n",
    );
    let (code, err) = validate(&[&f]);
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains("`content_type` must be a header value"),
        "{err}"
    );
    assert!(
        err.contains("`unless` goes round in a circle (a → b → c → a)"),
        "{err}"
    );
}

#[test]
fn a_relative_path_in_a_config_named_bare_is_watched_where_the_config_is() {
    // Regression: `cd /srv/x && hark run -c hark.toml` armed a watch on `in` relative to
    // nothing and was deaf.
    let dir = tempdir();
    std::fs::create_dir(dir.path().join("in")).unwrap();
    let cfg = with_state_dir(
        "[watch.w]\ntype = \"file\"\npaths = [\"in\"]\nevents = [\"create\"]\n\n[rule.r]\nwatch = \"w\"\nthen = [\"rec\"]\n\n\
         [action.rec]\ntype = \"shell\"\ncommand = [\"/bin/sh\", \"-c\", 'printf \"%s\\0\" \"$1\" >> \"$0\"', \"@DIR@/out\", \"{{ event.path }}\"]\n",
    )
    .replace("@DIR@", &dir.path().to_string_lossy());
    write(dir.path(), "hark.toml", &cfg);
    let mut child = Command::new(HARK)
        .args(["run", "-c", "hark.toml"])
        .current_dir(dir.path())
        .stderr(std::fs::File::create(dir.path().join("log")).unwrap())
        .spawn()
        .unwrap();
    let log = dir.path().join("log");
    wait_for(Duration::from_secs(10), || {
        std::fs::read_to_string(&log).is_ok_and(|l| l.contains("hark is running"))
    });
    let created = dir.path().join("in/new.txt");
    std::fs::write(&created, "").unwrap();
    let fired = wait_for(Duration::from_secs(10), || {
        records(&dir.path().join("out"))
            .iter()
            .any(|r| r == created.as_os_str().as_encoded_bytes())
    });
    let _ = child.kill();
    let _ = child.wait();
    assert!(
        fired,
        "the relative watch never fired; log:\n{}",
        std::fs::read_to_string(dir.path().join("log")).unwrap_or_default()
    );
}

/// A rule that fires on the first `down` check and a webhook that records it.
fn firing_config(port: &str, url: &str, with_rule: bool) -> String {
    let rule = if with_rule {
        "[rule.down]\nwatch = \"port\"\nwhen = '!connected'\nthen = [\"hook\"]\n\n"
    } else {
        ""
    };
    format!(
        "[watch.port]\ntype = \"tcp\"\naddress = \"{port}\"\nevery = \"200ms\"\n\n\
         [watch.other]\ntype = \"file\"\npaths = [\"@DIR@/x\"]\n\n[rule.keep]\nwatch = \"other\"\n\n\
         {rule}[action.hook]\ntype = \"webhook\"\nurl = \"{url}\"\n"
    )
}

#[test]
fn a_reload_refuses_an_empty_file_and_a_rule_removed_for_a_moment_keeps_its_state() {
    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().to_string()
    };
    let receiver = Server::start();
    let url = receiver.url("/hook");
    let h = start(&firing_config(&closed, &url, true));
    wait_for(Duration::from_secs(10), || receiver.requests().len() == 1);
    assert_eq!(receiver.requests().len(), 1, "log:\n{}", h.log());

    // An editor truncating the file before writing it: the reload is refused.
    std::fs::write(h.path("hark.toml"), "").unwrap();
    h.signal(libc::SIGHUP);
    assert!(
        h.wait_log("is empty (being rewritten?)"),
        "log:\n{}",
        h.log()
    );

    // The rule gone, then back: it is still firing, so it does not fire again.
    h.reload_with(&firing_config(&closed, &url, false));
    assert!(h.wait_log("configuration reloaded"), "log:\n{}", h.log());
    h.reload_with(&firing_config(&closed, &url, true));
    assert!(
        h.wait_log("rule back in the configuration"),
        "log:\n{}",
        h.log()
    );
    std::thread::sleep(Duration::from_secs(1));
    assert_eq!(
        receiver.requests().len(),
        1,
        "fired again after coming back:\n{}",
        h.log()
    );
}

#[test]
fn events_are_judged_while_a_slow_reload_loads() {
    let base = format!(
        "[watch.w]\ntype = \"file\"\npaths = [\"@DIR@/in\"]\nevents = [\"create\"]\ndebounce = \"0ms\"\n\n\
         [rule.r]\nwatch = \"w\"\nthen = [\"rec\"]\n\n[action.rec]\ntype = \"shell\"\ncommand = {}\n",
        recorder_argv("@DIR@/out", &["{{ event.path }}"])
    );
    let dir = tempdir();
    std::fs::create_dir(dir.path().join("in")).unwrap();
    let h = start_in(dir, &base);
    // Ten thousand rules take a while to load (seconds in a debug build).
    let mut big = base.clone();
    for i in 0..10_000 {
        big.push_str(&format!(
            "[rule.x{i}]\nwatch = \"w\"\nwhen = 'path.endsWith(\".nope{i}\") && size > {i}'\n\n"
        ));
    }
    h.reload_with(&big);
    assert!(h.wait_log("SIGHUP: reloading"), "log:\n{}", h.log());
    let path = h.path("in/during");
    std::fs::write(&path, "").unwrap();
    // Regression: the load ran inside the engine's loop, so nothing was judged until it
    // was done.
    let mut reloaded_first = false;
    let fired = wait_for(Duration::from_secs(60), || {
        let got = records(&h.path("out"))
            .iter()
            .any(|r| r == path.as_os_str().as_encoded_bytes());
        if got {
            reloaded_first = h.log().contains("configuration reloaded");
        }
        got
    });
    assert!(fired, "log:\n{}", h.log());
    assert!(
        wait_for(Duration::from_secs(120), || h
            .log()
            .contains("configuration reloaded")),
        "log:\n{}",
        h.log()
    );
    assert!(
        !reloaded_first,
        "the event waited for the reload; log:\n{}",
        h.log()
    );
}
