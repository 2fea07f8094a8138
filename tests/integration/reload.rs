//! SIGHUP: a good configuration replaces the old one in place (same process, unchanged
//! watches and rules keep running with their state); a bad one is refused, the old one
//! keeps running, and `hark status` says why.

use std::time::Duration;

use crate::util::*;

fn closed_port() -> String {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().to_string()
}

fn start_before(address: &str) -> Hark {
    let dir = tempdir();
    std::fs::create_dir(dir.path().join("in")).unwrap();
    start_in(
        dir,
        &fixture("reload/before.toml", &[("@ADDRESS@", address)]),
    )
}

fn port_down_since(h: &Hark) -> serde_json::Value {
    let st = h.status();
    st["rules"]
        .as_array()
        .and_then(|rs| rs.iter().find(|r| r["name"] == "port_down"))
        .map(|r| r["since"].clone())
        .unwrap_or_default()
}

fn wait_reloaded(h: &Hark, n: usize) -> serde_json::Value {
    wait_for(Duration::from_secs(10), || {
        h.log().matches("SIGHUP: reloading").count() >= n && !h.status()["last_reload"].is_null()
    });
    h.status()["last_reload"].clone()
}

#[test]
fn a_good_reload_adds_a_rule_in_place_and_keeps_what_did_not_change() {
    let address = closed_port();
    let h = start_before(&address);
    assert!(
        h.wait_log("rule firing rule=port_down"),
        "log:\n{}",
        h.log()
    );
    let since = port_down_since(&h);
    assert!(since.is_string(), "{since}");
    let pid = h.child.id();

    h.reload_with(&fixture("reload/after.toml", &[("@ADDRESS@", &address)]));
    let reload = wait_reloaded(&h, 1);
    assert_eq!(reload["ok"], true, "{reload}\nlog:\n{}", h.log());
    assert!(
        h.log().contains("watches_restarted=0 watches_stopped=0"),
        "unchanged watches were restarted:\n{}",
        h.log()
    );

    std::fs::write(h.path("in/f"), "x").unwrap();
    let mut lines = {
        wait_for(Duration::from_secs(10), || h.lines().len() >= 2);
        std::thread::sleep(Duration::from_millis(200));
        h.lines()
    };
    lines.sort();
    assert_eq!(lines, ["first", "second"], "log:\n{}", h.log());
    assert_eq!(h.status()["pid"], pid);
    assert_eq!(port_down_since(&h), since, "the firing rule lost its state");
    assert_eq!(
        h.log().matches("rule firing rule=port_down").count(),
        1,
        "fired again after the reload:\n{}",
        h.log()
    );
}

#[test]
fn a_bad_reload_is_refused_and_the_old_rules_keep_running() {
    let address = closed_port();
    let h = start_before(&address);
    h.reload_with(&fixture("reload/broken.toml", &[("@ADDRESS@", &address)]));
    let reload = wait_reloaded(&h, 1);
    assert_eq!(reload["ok"], false, "{reload}");
    let errors = reload["errors"].as_array().unwrap();
    assert_eq!(errors.len(), 1, "{reload}");
    assert!(
        errors[0].as_str().unwrap().contains("hark.toml:"),
        "the error names its place: {reload}"
    );
    assert!(h.log().contains("reload refused"), "log:\n{}", h.log());
    let (_, text, _) = h.ctl(&["status"]);
    assert!(text.contains("last reload: FAILED"), "{text}");

    std::fs::write(h.path("in/f"), "x").unwrap();
    let lines = {
        wait_for(Duration::from_secs(10), || !h.lines().is_empty());
        h.lines()
    };
    assert_eq!(lines, ["first"], "log:\n{}", h.log());
}
