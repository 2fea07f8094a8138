//! ping watches: ICMP echo to 127.0.0.1 and ::1 in a network namespace of the daemon's
//! own, where iptables drops what a test wants lost (this kernel has no `netem` qdisc:
//! `tc qdisc add ... netem` answers "Specified qdisc kind is unknown"); raw sockets as
//! root, ping sockets as nobody where `net.ipv4.ping_group_range` allows, and the error
//! that names the sysctl where it does not.

use std::os::unix::process::CommandExt as _;
use std::process::Command;
use std::time::Duration;

use crate::util::*;

/// In the child, before exec: a network namespace of its own with `lo` up.
fn own_netns() -> std::io::Result<()> {
    // SAFETY: unshare(2), socket(2), ioctl(2) and close(2) on a zeroed ifreq naming "lo":
    // async-signal-safe calls that allocate nothing.
    unsafe {
        if libc::unshare(libc::CLONE_NEWNET) != 0 {
            return Err(std::io::Error::last_os_error());
        }
        let fd = libc::socket(libc::AF_INET, libc::SOCK_DGRAM, 0);
        let mut req: libc::ifreq = std::mem::zeroed();
        req.ifr_name[0] = b'l' as libc::c_char;
        req.ifr_name[1] = b'o' as libc::c_char;
        req.ifr_ifru.ifru_flags = (libc::IFF_UP | libc::IFF_RUNNING) as libc::c_short;
        let r = libc::ioctl(fd, libc::SIOCSIFFLAGS, &req);
        libc::close(fd);
        if r != 0 {
            return Err(std::io::Error::last_os_error());
        }
    }
    Ok(())
}

fn in_own_netns(cmd: &mut Command) {
    // SAFETY: own_netns makes only async-signal-safe calls.
    unsafe {
        cmd.pre_exec(own_netns);
    }
}

/// Runs iptables (or ip6tables) in the daemon's network namespace.
fn iptables(h: &Hark, tool: &str, args: &str) {
    let out = Command::new("nsenter")
        .arg("-t")
        .arg(h.child.id().to_string())
        .arg("-n")
        .arg(tool)
        .args(args.split_whitespace())
        .output()
        .expect("nsenter (util-linux) and iptables (tests/setup installs them)");
    assert!(
        out.status.success(),
        "{tool} {args}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

const CONFIG: &str = r#"
[watch.v4]
type = "ping"
host = "127.0.0.1"
count = 20
interval = "10ms"
timeout = "200ms"
every = "600ms"

[watch.v6]
type = "ping"
host = "::1"
count = 4
interval = "10ms"
timeout = "200ms"
every = "600ms"

[rule.v4_lossy]
watch = "v4"
when = "loss > 0.2"
then = ["rec"]
resolve = ["rec"]

[rule.v4_some_lost]
watch = "v4"
when = "loss > 0.0 && loss < 1.0"
then = ["rec"]

[rule.v6_lossy]
watch = "v6"
when = "loss > 0.2"
then = ["rec"]
resolve = ["rec"]

[action.rec]
type = "shell"
command = ["/bin/sh", "-c", 'printf "%s\0" "$@" >> "$0"', "@DIR@/out", "{{ rule }} {{ state }} {{ event.loss }} {{ event.sent }} {{ event.received }}"]
"#;

#[test]
fn loss_fires_a_rule_and_its_end_resolves_it_on_v4_and_v6() {
    let h = Start::new(CONFIG).prepare(in_own_netns).run();
    // Rounds with every reply back: nothing fires.
    assert!(
        wait_for(Duration::from_secs(15), || {
            h.status()["watches"]
                .as_array()
                .into_iter()
                .flatten()
                .all(|w| w["events"].as_u64().unwrap_or(0) >= 2)
        }),
        "{}",
        h.log()
    );
    assert!(h.lines().is_empty(), "{:?}", h.lines());
    // Every request dropped: loss 1.
    iptables(
        &h,
        "iptables",
        "-A OUTPUT -p icmp --icmp-type echo-request -j DROP",
    );
    iptables(
        &h,
        "ip6tables",
        "-A OUTPUT -p icmpv6 --icmpv6-type echo-request -j DROP",
    );
    let got = h.wait_lines(2);
    let mut fired = got.clone();
    fired.sort();
    assert_eq!(
        fired,
        ["v4_lossy firing 1.0 20 0", "v6_lossy firing 1.0 4 0"],
        "{}",
        h.log()
    );
    iptables(&h, "iptables", "-F OUTPUT");
    iptables(&h, "ip6tables", "-F OUTPUT");
    assert!(
        wait_for(Duration::from_secs(15), || h
            .lines()
            .iter()
            .filter(|l| l.contains("resolved 0.0"))
            .count()
            == 2),
        "{:?}",
        h.lines()
    );
    // A third of the requests dropped at random: a fraction, as ping prints it.
    iptables(
        &h,
        "iptables",
        "-A OUTPUT -p icmp --icmp-type echo-request -m statistic --mode random --probability 0.3 -j DROP",
    );
    assert!(
        wait_for(Duration::from_secs(15), || h
            .lines()
            .iter()
            .any(|l| l.starts_with("v4_some_lost firing"))),
        "{:?}",
        h.lines()
    );
    let line = h
        .lines()
        .into_iter()
        .find(|l| l.starts_with("v4_some_lost firing"))
        .unwrap();
    let parts: Vec<&str> = line.split(' ').collect();
    let loss: f64 = parts[2].parse().unwrap();
    let received: f64 = parts[4].parse().unwrap();
    assert_eq!(parts[3], "20", "{line}");
    assert!((loss - (1.0 - received / 20.0)).abs() < 1e-9, "{line}");
}

/// `hark test` on a ping watch of 127.0.0.1 as nobody, in a namespace whose
/// `ping_group_range` is `range`: its stdout.
fn ping_as_nobody(range: &'static [u8]) -> String {
    let dir = tempdir();
    let file = dir.path().join("hark.toml");
    std::fs::write(
        &file,
        "[watch.lo]\ntype = \"ping\"\nhost = \"127.0.0.1\"\ncount = 3\ninterval = \"10ms\"\n",
    )
    .unwrap();
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o644)).unwrap();
    let mut cmd = Command::new(HARK);
    cmd.args(["test", "-c"]).arg(&file);
    // SAFETY: open(2), write(2), close(2), setgroups(2), setgid(2), setuid(2) and the
    // calls of own_netns: async-signal-safe, nothing allocated.
    unsafe {
        cmd.pre_exec(move || {
            own_netns()?;
            let fd = libc::open(
                c"/proc/sys/net/ipv4/ping_group_range".as_ptr(),
                libc::O_WRONLY,
            );
            let wrote = libc::write(fd, range.as_ptr().cast(), range.len());
            libc::close(fd);
            if wrote < 0
                || libc::setgroups(0, std::ptr::null()) != 0
                || libc::setgid(65534) != 0
                || libc::setuid(65534) != 0
            {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let out = cmd.output().unwrap();
    String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr)
}

#[test]
fn an_unprivileged_daemon_pings_through_a_ping_socket_or_names_the_sysctl() {
    let allowed = ping_as_nobody(b"65534 65534\n");
    assert!(allowed.contains(r#""received":3"#), "{allowed}");
    assert!(allowed.contains(r#""error":"""#), "{allowed}");
    let refused = ping_as_nobody(b"1 0\n");
    assert!(refused.contains(r#""received":0"#), "{refused}");
    assert!(refused.contains("net.ipv4.ping_group_range"), "{refused}");
    assert!(refused.contains("not allowed for group 65534"), "{refused}");
}
