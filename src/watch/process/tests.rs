use super::scan::Found;
use super::*;

fn watch_named(name: &str) -> ProcessWatch {
    ProcessWatch {
        name: Some(name.to_string()),
        cmdline: None,
        user: None,
        pidfile: None,
        every: Duration::from_secs(1),
    }
}

/// Waits until the kernel has finished `exec` of `pid` (its arguments are readable):
/// `spawn` returns once the exec is past its point of no return, not once it is done,
/// and a sample taken in between saw no cmdline and no memory (seen once in a run).
fn wait_exec_done(pid: u32) {
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while std::time::Instant::now() < deadline {
        if std::fs::read(format!("/proc/{pid}/cmdline")).is_ok_and(|c| !c.is_empty()) {
            return;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// A copy of `sleep` under a name no other process has. Written by a `cp` child: a child
/// another test thread forked while this process held the copy open for writing would
/// keep that fd until its own exec, and running the copy would fail meanwhile with "text
/// file busy".
fn unique_sleep(dir: &std::path::Path) -> (String, std::path::PathBuf) {
    let name = format!("hs{:08x}", fastrand::u32(..));
    let path = dir.join(&name);
    let copied = std::process::Command::new("cp")
        .arg("/bin/sleep")
        .arg(&path)
        .status()
        .unwrap();
    assert!(copied.success());
    (name, path)
}

#[test]
fn a_sample_counts_the_processes_the_pass_found() {
    let dir = tempfile::tempdir().unwrap();
    let (name, path) = unique_sleep(dir.path());
    let mut child = std::process::Command::new(&path).arg("30").spawn().unwrap();
    wait_exec_done(child.id());
    let fields = sample_once(&watch_named(&name));
    let _ = child.kill();
    let _ = child.wait();
    assert_eq!(fields["count"], 1, "{fields:?}");
    assert_eq!(fields["pid"], child.id(), "{fields:?}");
    assert_eq!(fields["name"], name.as_str());
    assert!(fields["memory_bytes"].as_u64().unwrap() > 0, "{fields:?}");
    assert_eq!(fields["threads"], 1);
}

#[test]
fn a_process_that_is_gone_before_its_sample_is_not_counted() {
    let dir = tempfile::tempdir().unwrap();
    let (name, path) = unique_sleep(dir.path());
    let mut child = std::process::Command::new(&path).arg("30").spawn().unwrap();
    let config = Arc::new(watch_named(&name));
    let mut cache = Cache::default();
    let pass = cache.pass(
        std::slice::from_ref(&config),
        &[false],
        &HashSet::new(),
        Look::All,
    );
    assert_eq!(pass.found[0].len(), 1);
    // Exits between the listing and the sampling.
    let _ = child.kill();
    let _ = child.wait();
    let followed: HashSet<i32> = [child.id() as i32].into();
    let pass = cache.pass(std::slice::from_ref(&config), &[true], &followed, Look::All);
    assert!(pass.found[0].is_empty());
    assert!(!pass.stats.contains_key(&(child.id() as i32)));
}

#[test]
fn cpu_percent_is_the_cpu_used_since_the_previous_sample() {
    let (tx, _rx) = mpsc::channel(1);
    let found = Found {
        pid: 4242,
        start_ticks: 1000,
        name: "x".into(),
        cmdline: "x".into(),
    };
    let t0 = Instant::now();
    let hz = procfs::clock_ticks();
    let mut w = Watched {
        name: Arc::from("w"),
        host: Arc::from("h"),
        config: Arc::new(watch_named("x")),
        events: tx,
        members: [(
            4242,
            Member {
                found,
                // A long-lived process that had used 10 s of CPU at the last sample.
                last_cpu: Some((10 * hz, t0)),
                pidfd: None,
            },
        )]
        .into(),
        next_sample: t0,
    };
    let stat = |cpu_ticks| Stat {
        pid: 4242,
        comm: "x".into(),
        state: 'R',
        cpu_ticks,
        threads: 3,
        start_ticks: 1000,
        rss_pages: 10,
        exit_status: None,
    };
    // Half a second of CPU in the two seconds since: 25 %, whatever its lifetime average.
    let stats: HashMap<i32, Stat> = [(4242, stat(10 * hz + hz / 2))].into();
    let uptime = Duration::from_secs(3600);
    let ev = w.sample(&stats, uptime, t0 + Duration::from_secs(2));
    assert_eq!(ev.fields["cpu_percent"], 25.0);
    assert_eq!(ev.fields["threads"], 3);
    assert_eq!(ev.fields["memory_bytes"], 10 * procfs::page_size());
    assert!(!ev.edge);
    // The next interval starts where this one ended: idle now.
    let ev = w.sample(&stats, uptime, t0 + Duration::from_secs(3));
    assert_eq!(ev.fields["cpu_percent"], 0.0);
}

#[test]
fn a_zombie_is_dead() {
    let dir = tempfile::tempdir().unwrap();
    let (name, path) = unique_sleep(dir.path());
    let mut child = std::process::Command::new(&path).arg("30").spawn().unwrap();
    let config = Arc::new(watch_named(&name));
    let mut cache = Cache::default();
    let followed: HashSet<i32> = [child.id() as i32].into();
    assert_eq!(
        cache
            .pass(std::slice::from_ref(&config), &[true], &followed, Look::All)
            .found[0]
            .len(),
        1
    );
    let _ = child.kill();
    // Not reaped yet: a zombie until `wait`.
    std::thread::sleep(Duration::from_millis(100));
    let pass = cache.pass(std::slice::from_ref(&config), &[true], &followed, Look::All);
    let _ = child.wait();
    assert!(pass.found[0].is_empty(), "a zombie was selected");
    let st = pass.stats[&(child.id() as i32)].clone();
    assert!(st.is_dead());
    assert_eq!(st.exit_status.map(|s| s & 0x7f), Some(libc::SIGKILL));
}
