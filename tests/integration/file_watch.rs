//! The file watch, end to end: a real change, a real action, what it received.

use std::time::Duration;

use crate::util::*;

fn config(paths: &str, extra: &str, debounce: &str) -> String {
    recorded(
        &format!("type = \"file\"\npaths = {paths}\ndebounce = \"{debounce}\"\n{extra}"),
        "",
        &[
            "{{ event.kind }}",
            "{{ event.path }}",
            "{{ event.old_path }}",
        ],
    )
}

/// Each firing leaves three records: kind, path, old_path.
fn triples(h: &Hark, n: usize) -> Vec<(String, String, String)> {
    let recs = wait_records(&h.path("out"), n * 3);
    recs.chunks(3)
        .map(|c| {
            let s = |i: usize| {
                c.get(i)
                    .map(|b| String::from_utf8_lossy(b).into_owned())
                    .unwrap_or_default()
            };
            (s(0), s(1), s(2))
        })
        .collect()
}

/// `"/bin/sh" -c '... "$@"'` drops empty records, so old_path only shows for renames:
/// the recorder writes each non-empty argument.
fn kinds_and_paths(h: &Hark, n: usize) -> Vec<(String, String)> {
    let recs = wait_records(&h.path("out"), n * 2);
    recs.chunks(2)
        .map(|c| {
            (
                String::from_utf8_lossy(&c[0]).into_owned(),
                c.get(1)
                    .map(|b| String::from_utf8_lossy(b).into_owned())
                    .unwrap_or_default(),
            )
        })
        .collect()
}

#[test]
fn a_file_written_in_a_watched_directory_runs_the_action() {
    let dir = tempdir();
    std::fs::create_dir(dir.path().join("watched")).unwrap();
    let h = start_in(dir, &config(r#"["@DIR@/watched"]"#, "", "50ms"));
    let f = h.path("watched/new.txt");
    std::fs::write(&f, "x").unwrap();
    let got = kinds_and_paths(&h, 1);
    assert_eq!(
        got[0],
        ("create".to_string(), f.to_string_lossy().into_owned())
    );
}

#[test]
fn an_editors_atomic_save_is_a_modify_of_the_target() {
    let dir = tempdir();
    std::fs::create_dir(dir.path().join("etc")).unwrap();
    std::fs::write(dir.path().join("etc/app.conf"), "old").unwrap();
    let h = start_in(dir, &config(r#"["@DIR@/etc/app.conf"]"#, "", "50ms"));
    let tmp = h.path("etc/.app.conf.tmp1234");
    std::fs::write(&tmp, "new contents").unwrap();
    std::fs::rename(&tmp, h.path("etc/app.conf")).unwrap();
    let got = kinds_and_paths(&h, 1);
    assert_eq!(
        got,
        vec![(
            "modify".to_string(),
            h.path("etc/app.conf").to_string_lossy().into_owned()
        )],
        "log:\n{}",
        h.log()
    );
}

#[test]
fn an_atomic_save_inside_a_watched_directory_is_one_modify() {
    let dir = tempdir();
    std::fs::create_dir(dir.path().join("etc")).unwrap();
    std::fs::write(dir.path().join("etc/app.conf"), "old").unwrap();
    let h = start_in(dir, &config(r#"["@DIR@/etc"]"#, "", "100ms"));
    let tmp = h.path("etc/app.conf.swx");
    std::fs::write(&tmp, "new").unwrap();
    std::fs::rename(&tmp, h.path("etc/app.conf")).unwrap();
    let got = kinds_and_paths(&h, 1);
    assert_eq!(
        got,
        vec![(
            "modify".to_string(),
            h.path("etc/app.conf").to_string_lossy().into_owned()
        )]
    );
}

#[test]
fn a_rename_inside_the_watch_carries_old_path() {
    let dir = tempdir();
    std::fs::create_dir(dir.path().join("d")).unwrap();
    std::fs::write(dir.path().join("d/a.log"), "x").unwrap();
    let h = start_in(dir, &config(r#"["@DIR@/d/*.log*"]"#, "", "0ms"));
    std::fs::rename(h.path("d/a.log"), h.path("d/a.log.1")).unwrap();
    let got = triples(&h, 1);
    assert_eq!(
        got[0],
        (
            "rename".to_string(),
            h.path("d/a.log.1").to_string_lossy().into_owned(),
            h.path("d/a.log").to_string_lossy().into_owned()
        ),
        "log:\n{}",
        h.log()
    );
}

#[test]
fn files_in_subdirectories_created_after_start_are_all_reported() {
    let dir = tempdir();
    std::fs::create_dir(dir.path().join("tree")).unwrap();
    let h = start_in(
        dir,
        &config(
            r#"["@DIR@/tree"]"#,
            "recursive = true\nevents = [\"create\"]",
            "0ms",
        ),
    );
    // mkdir -p and files in one quick step: notify alone reports only `a`.
    std::fs::create_dir_all(h.path("tree/a/b/c")).unwrap();
    std::fs::write(h.path("tree/a/b/c/deep.txt"), "x").unwrap();
    std::fs::write(h.path("tree/a/top.txt"), "x").unwrap();
    let got = kinds_and_paths(&h, 5);
    let paths: Vec<&str> = got.iter().map(|(_, p)| p.as_str()).collect();
    for want in [
        "tree/a",
        "tree/a/b",
        "tree/a/b/c",
        "tree/a/b/c/deep.txt",
        "tree/a/top.txt",
    ] {
        let want = h.path(want).to_string_lossy().into_owned();
        assert_eq!(
            paths.iter().filter(|p| **p == want).count(),
            1,
            "{want} reported exactly once in {paths:?}"
        );
    }
    assert_eq!(got.len(), 5, "no duplicates: {got:?}");
    // And a file created later, in the deepest new directory, through its own watch.
    std::fs::write(h.path("tree/a/b/c/later.txt"), "x").unwrap();
    let got = kinds_and_paths(&h, 6);
    assert_eq!(got[5].1, h.path("tree/a/b/c/later.txt").to_string_lossy());
}

#[test]
fn a_watched_directory_that_does_not_exist_at_start_is_followed_once_created() {
    let h = start(&config(r#"["@DIR@/not/yet/there/*.txt"]"#, "", "100ms"));
    std::fs::create_dir_all(h.path("not/yet/there")).unwrap();
    std::fs::write(h.path("not/yet/there/first.txt"), "x").unwrap();
    std::fs::write(h.path("not/yet/there/ignored.bin"), "x").unwrap();
    let got = kinds_and_paths(&h, 1);
    assert_eq!(got.len(), 1, "{got:?}\nlog:\n{}", h.log());
    assert_eq!(
        got[0],
        (
            "create".into(),
            h.path("not/yet/there/first.txt")
                .to_string_lossy()
                .into_owned()
        )
    );
    std::fs::write(h.path("not/yet/there/second.txt"), "x").unwrap();
    let got = kinds_and_paths(&h, 2);
    assert_eq!(
        got[1].1,
        h.path("not/yet/there/second.txt").to_string_lossy()
    );
}

#[test]
fn a_watched_file_survives_being_deleted_and_recreated() {
    let dir = tempdir();
    std::fs::write(dir.path().join("app.conf"), "1").unwrap();
    // A debounce window makes each step one event (a write is a create and a modify).
    let h = start_in(dir, &config(r#"["@DIR@/app.conf"]"#, "", "50ms"));
    std::fs::remove_file(h.path("app.conf")).unwrap();
    wait_for(Duration::from_secs(5), || {
        records(&h.path("out")).len() >= 2
    });
    std::fs::write(h.path("app.conf"), "2").unwrap();
    wait_for(Duration::from_secs(5), || {
        records(&h.path("out")).len() >= 4
    });
    std::fs::write(h.path("app.conf"), "3").unwrap();
    let got = kinds_and_paths(&h, 3);
    let kinds: Vec<&str> = got.iter().map(|(k, _)| k.as_str()).collect();
    assert_eq!(&kinds[..2], &["delete", "create"], "{got:?}");
    assert!(
        kinds[2..].iter().all(|k| *k == "modify") && kinds.len() >= 3,
        "{got:?}"
    );
}

#[test]
fn a_burst_on_one_path_inside_debounce_is_one_event_of_its_first_kind() {
    let dir = tempdir();
    std::fs::create_dir(dir.path().join("d")).unwrap();
    let h = start_in(dir, &config(r#"["@DIR@/d"]"#, "", "300ms"));
    let f = h.path("d/burst.txt");
    for i in 0..20 {
        std::fs::write(&f, format!("{i}")).unwrap();
    }
    let got = kinds_and_paths(&h, 1);
    assert_eq!(
        got,
        vec![("create".to_string(), f.to_string_lossy().into_owned())]
    );
}

#[test]
fn ignore_globs_and_the_events_filter_are_honoured() {
    let dir = tempdir();
    std::fs::create_dir(dir.path().join("d")).unwrap();
    std::fs::write(dir.path().join("d/keep.txt"), "x").unwrap();
    let h = start_in(
        dir,
        &config(
            r#"["@DIR@/d"]"#,
            "ignore = [\"*.swp\"]\nevents = [\"delete\"]",
            "0ms",
        ),
    );
    std::fs::write(h.path("d/.keep.txt.swp"), "x").unwrap();
    std::fs::remove_file(h.path("d/.keep.txt.swp")).unwrap();
    std::fs::write(h.path("d/new.txt"), "x").unwrap();
    std::fs::remove_file(h.path("d/keep.txt")).unwrap();
    let got = kinds_and_paths(&h, 1);
    assert_eq!(
        got,
        vec![(
            "delete".to_string(),
            h.path("d/keep.txt").to_string_lossy().into_owned()
        )]
    );
}

#[test]
fn an_inotify_queue_overflow_is_reported_as_an_overflow_event() {
    let dir = tempdir();
    std::fs::create_dir(dir.path().join("flood")).unwrap();
    let cfg = format!(
        r#"
[watch.w]
type = "file"
paths = ["@DIR@/flood"]
events = ["delete"]
debounce = "0ms"

[rule.overflowed]
watch = "w"
when = 'kind == "overflow"'
then = ["rec"]

[action.rec]
type = "shell"
command = {}
"#,
        recorder_argv("@DIR@/out", &["{{ event.kind }}"])
    );
    let h = start_in(dir, &cfg);
    // Stopped, hark cannot read inotify's queue; more changes than the kernel keeps
    // (fs.inotify.max_queued_events) overflow it.
    let limit: usize = std::fs::read_to_string("/proc/sys/fs/inotify/max_queued_events")
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(16384);
    h.freeze();
    for i in 0..limit + 1000 {
        std::fs::write(h.path(&format!("flood/{i}")), "").unwrap();
    }
    h.signal(libc::SIGCONT);
    let got = wait_records(&h.path("out"), 1);
    assert!(
        got.iter().any(|r| r == b"overflow"),
        "{got:?}\nlog:\n{}",
        h.log()
    );
    assert!(h.log().contains("overflowed"), "{}", h.log());
    // After the rescan the watch still works.
    std::fs::remove_file(h.path("flood/0")).unwrap();
    assert!(h.wait_log("rule fired"), "{}", h.log());
}

#[test]
fn checksum_adds_the_sha256_of_the_content() {
    let dir = tempdir();
    std::fs::create_dir(dir.path().join("d")).unwrap();
    let cfg = format!(
        r#"
[watch.w]
type = "file"
paths = ["@DIR@/d/*.bin"]
checksum = true
debounce = "100ms"

[rule.r]
watch = "w"
then = ["rec"]

[action.rec]
type = "shell"
command = {}
"#,
        recorder_argv(
            "@DIR@/out",
            &["{{ event.sha256 }}", "{{ event.size }}", "{{ event.mode }}"]
        )
    );
    let h = start_in(dir, &cfg);
    std::fs::write(h.path("d/x.bin"), "abc").unwrap();
    let got = wait_records(&h.path("out"), 3);
    let got: Vec<String> = got
        .iter()
        .map(|r| String::from_utf8_lossy(r).into_owned())
        .collect();
    // sha256("abc"), a well-known test vector.
    assert_eq!(
        got,
        vec![
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad".to_string(),
            "3".to_string(),
            "0644".to_string()
        ]
    );
}
