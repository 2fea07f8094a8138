//! The control socket: `hark status` shows watches, rules, actions and failed
//! deliveries; `hark silence` mutes a rule across restarts; `hark unsilence` ends it;
//! a daemon that cannot be reached is exit code 3.

use std::time::Duration;

use crate::http_server::Server;
use crate::util::*;

fn start_status(api: &Server, receiver: &Server) -> Hark {
    let dir = tempdir();
    std::fs::create_dir(dir.path().join("in")).unwrap();
    start_in(
        dir,
        &fixture(
            "control/status.toml",
            &[
                ("@URL@", &api.url("/health")),
                ("@RECEIVER@", &receiver.url("/hook")),
            ],
        ),
    )
}

fn rule<'a>(status: &'a serde_json::Value, name: &str) -> &'a serde_json::Value {
    status["rules"]
        .as_array()
        .and_then(|rs| rs.iter().find(|r| r["name"] == name))
        .unwrap_or_else(|| panic!("no rule {name} in {status}"))
}

#[test]
fn status_shows_watches_rules_and_failed_deliveries() {
    let api = Server::start();
    api.set_status(500);
    let receiver = Server::start();
    receiver.set_status(400);
    let h = start_status(&api, &receiver);
    assert!(h.wait_log("delivery failed for good"), "log:\n{}", h.log());

    let st = h.status();
    assert_eq!(st["pid"], h.child.id(), "{st}");
    let r = rule(&st, "api_down");
    assert_eq!(r["state"], "firing", "{st}");
    assert_eq!(r["watch"], "api");
    assert!(
        r["since"].as_str().is_some_and(|s| s.ends_with('Z')),
        "{st}"
    );
    assert_eq!(rule(&st, "dropped")["state"], "ok");
    // A rule without actions: its summary rendered when the status asked for it.
    let counted = rule(&st, "api_counted");
    assert_eq!(counted["state"], "firing", "{st}");
    assert_eq!(counted["summary"], "api answered 500", "{st}");
    let api_watch = st["watches"]
        .as_array()
        .and_then(|ws| ws.iter().find(|w| w["name"] == "api"))
        .unwrap();
    assert_eq!(api_watch["type"], "http");
    assert!(api_watch["events"].as_u64().unwrap() >= 1, "{st}");
    assert_eq!(api_watch["last"]["status"], 500, "{st}");
    let failed = &st["outbox"]["failed"];
    assert_eq!(failed.as_array().map(Vec::len), Some(1), "{st}");
    assert_eq!(failed[0]["rule"], "api_down");
    assert_eq!(failed[0]["action"], "hook");
    assert!(failed[0]["error"].as_str().unwrap().contains("400"), "{st}");
    assert_eq!(st["outbox"]["pending"], 0);

    let (code, text, err) = h.ctl(&["status"]);
    assert_eq!(code, Some(0), "{err}");
    assert!(
        text.contains("api_down") && text.contains("firing"),
        "{text}"
    );
    assert!(text.contains("1 failed"), "{text}");
    assert!(text.contains("failed: rule api_down action hook"), "{text}");
}

#[test]
fn a_silenced_rule_runs_no_action_until_unsilenced_and_stays_silenced_across_a_restart() {
    let api = Server::start();
    let receiver = Server::start();
    let mut h = start_status(&api, &receiver);

    let (code, out, err) = h.ctl(&["silence", "dropped", "--for", "1h"]);
    assert_eq!(code, Some(0), "{err}");
    assert!(out.contains("silenced until"), "{out}");
    std::fs::write(h.path("in/quiet"), "x").unwrap();
    assert!(
        h.wait_log("silenced: its actions do not run"),
        "log:\n{}",
        h.log()
    );
    std::thread::sleep(Duration::from_millis(300));
    assert!(h.lines().is_empty(), "a silenced rule ran its action");

    h.restart();
    let st = h.status();
    assert!(
        rule(&st, "dropped")["silenced_until"]
            .as_str()
            .is_some_and(|s| !s.is_empty()),
        "the silence did not survive the restart: {st}"
    );
    std::fs::write(h.path("in/still-quiet"), "x").unwrap();
    assert!(
        h.wait_log("silenced: its actions do not run"),
        "log:\n{}",
        h.log()
    );

    let (code, _, err) = h.ctl(&["unsilence", "dropped"]);
    assert_eq!(code, Some(0), "{err}");
    std::fs::write(h.path("in/loud"), "x").unwrap();
    let lines = {
        wait_for(Duration::from_secs(10), || !h.lines().is_empty());
        h.lines()
    };
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert!(lines[0].ends_with("/in/loud"), "{lines:?}");
    assert!(rule(&h.status(), "dropped")["silenced_until"].is_null());

    let (code, _, err) = h.ctl(&["silence", "no_such_rule"]);
    assert_eq!(code, Some(1));
    assert!(err.contains("no rule `no_such_rule`"), "{err}");
    let (code, _, err) = h.ctl(&["unsilence", "dropped"]);
    assert_eq!(code, Some(1));
    assert!(err.contains("is not silenced"), "{err}");
}

#[test]
fn a_daemon_that_cannot_be_reached_is_exit_code_3() {
    let dir = tempdir();
    let out = std::process::Command::new(HARK)
        .args(["status", "--socket"])
        .arg(dir.path().join("nobody.sock"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(3));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("cannot reach the hark daemon"), "{err}");
}

#[test]
fn the_control_socket_is_for_its_owner_only() {
    use std::os::unix::fs::PermissionsExt;
    let api = Server::start();
    let receiver = Server::start();
    let h = start_status(&api, &receiver);
    let mode = std::fs::metadata(h.path("control.sock"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600, "{mode:o}");
}

/// `hark status` on `h`'s socket as another user and group, with these supplementary
/// groups: exit code and stderr.
fn status_as(h: &Hark, uid: u32, gid: u32, groups: &[u32]) -> (Option<i32>, String) {
    let groups = if groups.is_empty() {
        "--clear-groups".to_string()
    } else {
        format!(
            "--groups={}",
            groups
                .iter()
                .map(u32::to_string)
                .collect::<Vec<_>>()
                .join(",")
        )
    };
    let out = std::process::Command::new("setpriv")
        .arg(format!("--reuid={uid}"))
        .arg(format!("--regid={gid}"))
        .arg(groups)
        .arg(HARK)
        .args(["status", "--socket"])
        .arg(h.path("control.sock"))
        .output()
        .expect("run setpriv");
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn whatever_the_sockets_mode_only_root_and_control_group_are_answered() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempdir();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::create_dir(dir.path().join("in")).unwrap();
    let h = start_in(
        dir,
        "[daemon]\ncontrol_group = \"nogroup\"\n\n[watch.w]\ntype = \"file\"\npaths = [\"@DIR@/in\"]\n",
    );
    // Opened to everyone by mistake (or by a drop-in): the kernel's word decides.
    std::fs::set_permissions(
        h.path("control.sock"),
        std::fs::Permissions::from_mode(0o666),
    )
    .unwrap();
    let nogroup = 65534;
    let (code, err) = status_as(&h, 65533, 65533, &[]);
    assert_ne!(code, Some(0), "a stranger was answered");
    assert!(err.contains("refused: uid 65533 gid 65533"), "{err}");
    assert!(h.wait_log("control socket: refused"), "{}", h.log());
    assert!(h.log().contains("uid 65533"), "{}", h.log());
    // In control_group by its own group, or by a supplementary one: answered.
    let (code, err) = status_as(&h, 65534, nogroup, &[]);
    assert_eq!(code, Some(0), "{err}");
    let (code, err) = status_as(&h, 65533, 65533, &[nogroup]);
    assert_eq!(code, Some(0), "{err}");
    // Root is.
    assert_eq!(h.ctl(&["status"]).0, Some(0));
}
