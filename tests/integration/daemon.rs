//! The daemon's life: ready, running, stopping.

use std::time::Duration;

use crate::util::*;

#[test]
fn sigterm_stops_gracefully_with_exit_0_letting_a_running_action_finish() {
    let cfg = r#"
[daemon]
stop_timeout = "10s"

[watch.w]
type = "file"
paths = ["@DIR@/go"]
debounce = "0ms"

[rule.r]
watch = "w"
when = 'kind == "create"'
then = ["slow"]

[action.slow]
type = "shell"
shell = 'sleep 1; echo done > "@DIR@/finished"'
"#;
    let mut h = start(cfg);
    std::fs::write(h.path("go"), "").unwrap();
    assert!(wait_for(Duration::from_secs(5), || h
        .log()
        .contains("rule fired")));
    let finished = h.path("finished");
    assert_eq!(h.stop(), Some(0));
    assert!(finished.exists(), "the running action got its grace period");
}

#[test]
fn a_missing_field_makes_the_condition_false_and_is_logged_once() {
    let cfg = r#"
[watch.w]
type = "file"
paths = ["@DIR@/d"]
debounce = "0ms"

[rule.needs_old_path]
watch = "w"
when = 'old_path == "x"'
then = ["touch"]

[rule.plain]
watch = "w"
then = ["touch"]

[action.touch]
type = "shell"
shell = 'printf "%s\0" "$HARK_RULE" >> "@DIR@/out"'
"#;
    let dir = tempdir();
    std::fs::create_dir(dir.path().join("d")).unwrap();
    let h = start_in(dir, cfg);
    for i in 0..3 {
        std::fs::write(h.path(&format!("d/{i}")), "").unwrap();
    }
    let got = wait_records(&h.path("out"), 3);
    assert!(got.iter().all(|r| r == b"plain"), "{got:?}");
    assert_eq!(
        // A field of the watch's events that this event lacks (only a rename has
        // `old_path`; a name no event has is a `validate` error).
        h.log().matches("the event has no field `old_path`").count(),
        1,
        "{}",
        h.log()
    );
}
