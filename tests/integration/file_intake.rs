//! File events at the kernel's pace: one inotify instance for every file watch, what an
//! overflow lost reported once each, and a tree armed as far as it can be.

use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use crate::util::*;

/// `path` → kinds reported for it by rule `rule`, from the daemon's log.
fn fired(log: &str, rule: &str) -> BTreeMap<String, Vec<String>> {
    let mut out: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let tag = format!("rule fired rule={rule} ");
    for line in log.lines().filter(|l| l.contains(&tag)) {
        let field = |k: &str| {
            line.split(&format!(" {k}=\""))
                .nth(1)
                .and_then(|r| r.split('"').next())
                .unwrap_or("")
                .to_string()
        };
        out.entry(field("path")).or_default().push(field("kind"));
    }
    out
}

/// inotify watch descriptors and instances the process holds, from /proc.
fn inotify_of(pid: u32) -> (usize, usize) {
    let mut instances = 0;
    let mut wds = 0;
    for fd in std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .flatten()
    {
        let target = std::fs::read_link(fd.path()).unwrap_or_default();
        if target.to_string_lossy().contains("inotify") {
            instances += 1;
            let info = std::fs::read_to_string(format!(
                "/proc/{pid}/fdinfo/{}",
                fd.file_name().to_string_lossy()
            ))
            .unwrap_or_default();
            wds += info
                .lines()
                .filter(|l| l.starts_with("inotify wd:"))
                .count();
        }
    }
    (instances, wds)
}

fn threads_of(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/task")).map_or(0, |d| d.count())
}

#[test]
fn what_an_overflow_lost_is_reported_once_each_with_its_kind_after_the_overflow_event() {
    let dir = tempdir();
    let flood = dir.path().join("flood");
    std::fs::create_dir(&flood).unwrap();
    for i in 0..100 {
        std::fs::write(flood.join(format!("old-del-{i}")), "x").unwrap();
        std::fs::write(flood.join(format!("old-mod-{i}")), "x").unwrap();
    }
    let h = start_in(
        dir,
        "[watch.w]\ntype = \"file\"\npaths = [\"@DIR@/flood\"]\ndebounce = \"0ms\"\n\n\
         [rule.all]\nwatch = \"w\"\ntrigger_limit = \"off\"\n\n\
         [rule.rescanned]\nwatch = \"w\"\nwhen = 'rescan'\ntrigger_limit = \"off\"\n",
    );
    let limit: usize = std::fs::read_to_string("/proc/sys/fs/inotify/max_queued_events")
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(16384);
    // Stopped, hark cannot read its queue: more changes than the kernel keeps overflow it.
    h.freeze();
    let created = limit + 3000;
    for i in 0..created {
        std::fs::write(flood.join(format!("new-{i}")), "").unwrap();
    }
    for i in 0..100 {
        std::fs::remove_file(flood.join(format!("old-del-{i}"))).unwrap();
        std::fs::write(flood.join(format!("old-mod-{i}")), "changed").unwrap();
    }
    h.signal(libc::SIGCONT);
    let total = created + 200;
    let complete = wait_for(Duration::from_secs(120), || {
        fired(&h.log(), "all").len() > total
    });
    std::thread::sleep(Duration::from_millis(500));
    let log = h.log();
    let all = fired(&log, "all");
    assert!(complete, "{} of {} paths reported", all.len(), total + 1);
    assert_eq!(
        all.get(flood.to_str().unwrap()),
        Some(&vec!["overflow".to_string()])
    );
    for i in 0..created {
        let p = flood.join(format!("new-{i}"));
        let got = all.get(p.to_str().unwrap());
        if got != Some(&vec!["create".to_string()]) {
            let about: Vec<&str> = log
                .lines()
                .filter(|l| l.contains(&format!("{}\"", p.display())) || l.contains("overflow"))
                .take(20)
                .collect();
            panic!("{p:?}: {got:?}\n{}", about.join("\n"));
        }
    }
    for i in 0..100 {
        let d = flood.join(format!("old-del-{i}"));
        assert_eq!(
            all.get(d.to_str().unwrap()),
            Some(&vec!["delete".to_string()]),
            "{d:?}"
        );
        let m = flood.join(format!("old-mod-{i}"));
        assert_eq!(
            all.get(m.to_str().unwrap()),
            Some(&vec!["modify".to_string()]),
            "{m:?}"
        );
    }
    assert_eq!(all.len(), total + 1, "nothing else, nothing twice");
    // What the kernel kept came from inotify; the rest, after the overflow, from the rescan.
    let rescanned = fired(&log, "rescanned");
    assert!(
        rescanned.len() >= created - limit,
        "{} rescanned",
        rescanned.len()
    );
    let overflow_at = log.find("kind=\"overflow\"").unwrap_or(usize::MAX);
    let first_rescan = log.find("rule fired rule=rescanned").unwrap_or(0);
    assert!(overflow_at < first_rescan, "the overflow event comes first");
}

#[test]
fn a_thousand_file_watches_share_one_inotify_instance_and_each_fires() {
    let dir = tempdir();
    let mut config = String::new();
    for i in 0..1000 {
        std::fs::create_dir(dir.path().join(format!("d{i}"))).unwrap();
        config.push_str(&format!(
            "[watch.w{i}]\ntype = \"file\"\npaths = [\"@DIR@/d{i}\"]\nevents = [\"create\"]\ndebounce = \"0ms\"\n\
             [rule.r{i}]\nwatch = \"w{i}\"\n\n"
        ));
    }
    let h = start_in(dir, &config);
    let pid = h.child.id();
    let (instances, wds) = inotify_of(pid);
    assert_eq!(instances, 1, "one inotify instance for every file watch");
    assert_eq!(wds, 1000);
    assert!(threads_of(pid) < 20, "{} threads", threads_of(pid));
    for i in 0..1000 {
        std::fs::write(h.path(&format!("d{i}/f")), "").unwrap();
    }
    let all = wait_for(Duration::from_secs(60), || {
        h.log().matches("rule fired rule=r").count() >= 1000
    });
    assert!(
        all,
        "{} of 1000 fired",
        h.log().matches("rule fired rule=r").count()
    );
}

#[test]
fn two_watches_on_one_directory_each_get_its_events_and_outlive_each_other() {
    let watches = |both: bool| {
        let second = if both {
            "[watch.b]\ntype = \"file\"\npaths = [\"@DIR@/in/*.txt\"]\ndebounce = \"0ms\"\n[rule.rb]\nwatch = \"b\"\n\n"
        } else {
            ""
        };
        format!(
            "[watch.a]\ntype = \"file\"\npaths = [\"@DIR@/in\"]\ndebounce = \"0ms\"\n[rule.ra]\nwatch = \"a\"\n\n{second}"
        )
    };
    let dir = tempdir();
    std::fs::create_dir(dir.path().join("in")).unwrap();
    let h = start_in(dir, &watches(true));
    std::fs::write(h.path("in/x.txt"), "").unwrap();
    assert!(h.wait_log("rule fired rule=ra"), "log:\n{}", h.log());
    assert!(h.wait_log("rule fired rule=rb"), "log:\n{}", h.log());
    // The second goes; the directory's descriptor stays for the first.
    h.reload_with(&watches(false));
    assert!(h.wait_log("configuration reloaded"), "log:\n{}", h.log());
    std::fs::write(h.path("in/y.txt"), "").unwrap();
    let y = h.path("in/y.txt");
    assert!(
        wait_for(Duration::from_secs(10), || fired(&h.log(), "ra")
            .contains_key(y.to_str().unwrap())),
        "log:\n{}",
        h.log()
    );
}

#[test]
fn a_pseudo_file_system_inside_a_tree_is_not_descended_into() {
    let dir = tempdir();
    let tree = dir.path().join("tree");
    std::fs::create_dir_all(tree.join("proc")).unwrap();
    std::fs::create_dir_all(tree.join("a/b")).unwrap();
    let mounted = Command::new("mount")
        .args(["-t", "proc", "proc"])
        .arg(tree.join("proc"))
        .status()
        .is_ok_and(|s| s.success());
    assert!(mounted, "mounting proc needs root (CI runs as root)");
    struct Unmount(PathBuf);
    impl Drop for Unmount {
        fn drop(&mut self) {
            let _ = Command::new("umount").arg("-l").arg(&self.0).status();
        }
    }
    let _unmount = Unmount(tree.join("proc"));
    let h = start_in(
        dir,
        "[watch.t]\ntype = \"file\"\npaths = [\"@DIR@/tree\"]\nrecursive = true\ndebounce = \"0ms\"\n[rule.r]\nwatch = \"t\"\n",
    );
    let (_, wds) = inotify_of(h.child.id());
    assert!(wds <= 4, "{wds} directories watched: /proc was walked");
    std::fs::write(tree.join("a/b/f"), "").unwrap();
    assert!(h.wait_log("rule fired rule=r"), "log:\n{}", h.log());
}

#[test]
fn an_unreadable_subtree_is_a_warning_in_status_and_the_rest_is_watched() {
    // As `nobody`: root reads a mode-000 directory all the same.
    let dir = tempdir();
    let tree = dir.path().join("tree");
    std::fs::create_dir_all(tree.join("locked/deep")).unwrap();
    std::fs::create_dir_all(tree.join("open")).unwrap();
    std::fs::set_permissions(tree.join("locked"), std::fs::Permissions::from_mode(0o000)).unwrap();
    let config = with_state_dir(
        "[watch.t]\ntype = \"file\"\npaths = [\"@DIR@/tree\"]\nrecursive = true\ndebounce = \"0ms\"\n[rule.r]\nwatch = \"t\"\n",
    )
    .replace("@DIR@", &dir.path().to_string_lossy());
    let file = dir.path().join("hark.toml");
    std::fs::write(&file, config).unwrap();
    chown_nobody(dir.path());
    chown_nobody(&tree.join("open"));
    let log = dir.path().join("log");
    let mut child = Command::new("setpriv")
        .args([
            "--reuid=nobody",
            "--regid=nogroup",
            "--clear-groups",
            HARK,
            "run",
            "-c",
        ])
        .arg(&file)
        .env("RUST_LOG", "info")
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let read = || std::fs::read_to_string(&log).unwrap_or_default();
    let running = wait_for(Duration::from_secs(20), || {
        read().contains("hark is running")
    });
    let status = Command::new(HARK)
        .args(["status", "--socket"])
        .arg(dir.path().join("control.sock"))
        .output()
        .unwrap();
    std::fs::write(tree.join("open/f"), "").unwrap();
    let fired = wait_for(Duration::from_secs(10), || {
        read().contains("rule fired rule=r")
    });
    let _ = child.kill();
    let _ = child.wait();
    std::fs::set_permissions(tree.join("locked"), std::fs::Permissions::from_mode(0o755)).unwrap();
    assert!(running, "did not start:\n{}", read());
    assert!(
        read().contains("locked") && read().contains("Permission denied"),
        "{}",
        read()
    );
    let status = String::from_utf8_lossy(&status.stdout);
    assert!(
        status.contains("not watched") && status.contains("locked"),
        "{status}"
    );
    assert!(fired, "the readable part is watched:\n{}", read());
}

fn chown_nobody(p: &Path) {
    let ok = Command::new("chown")
        .arg("nobody:nogroup")
        .arg(p)
        .status()
        .is_ok_and(|s| s.success());
    assert!(ok, "chown needs root (CI runs as root)");
}
