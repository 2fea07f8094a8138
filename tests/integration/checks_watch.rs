//! tcp, command and system watches against real ports, programs and the host.

use std::time::Duration;

use crate::util::*;

#[test]
fn a_closed_port_fires_and_resolves_once_it_is_opened() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let h = start(&fixture(
        "checks/tcp.toml",
        &[("@PORT@", &port.to_string())],
    ));
    let got = h.wait_lines(1);
    assert!(got[0].starts_with("firing False connect: "), "{got:?}");
    assert!(got[0].to_lowercase().contains("refused"), "{got:?}");
    let _listener = std::net::TcpListener::bind(("127.0.0.1", port)).unwrap();
    let got = h.wait_lines(2);
    assert_eq!(got[1], "resolved True ", "log:\n{}", h.log());
}

fn command_config(command: &str, timeout: &str, when: &str, record: &str) -> String {
    fixture(
        "checks/command.toml",
        &[
            ("@COMMAND@", command),
            ("@EVERY@", "200ms"),
            ("@TIMEOUT@", timeout),
            ("@WHEN@", when),
            ("@RECORD@", record),
        ],
    )
}

/// The pids of live (not zombie) processes whose kernel name is `name`.
fn processes_named(name: &str) -> Vec<u32> {
    let mut out = Vec::new();
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|n| n.parse::<u32>().ok()) else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
            continue;
        };
        let comm = stat.split(['(', ')']).nth(1).unwrap_or("");
        let state = stat
            .rsplit(')')
            .next()
            .unwrap_or("")
            .split_whitespace()
            .next();
        if comm == name && state != Some("Z") {
            out.push(pid);
        }
    }
    out
}

#[test]
fn a_command_that_times_out_leaves_no_process_behind() {
    let dir = tempdir();
    let name = format!("hc{:08x}", std::process::id());
    let sleep = dir.path().join(&name);
    copy_program("/bin/sleep", &sleep);
    let sleep = sleep.to_string_lossy().into_owned();
    // A child in the background and one in the foreground, both past the timeout.
    let command = format!(r#"["/bin/sh", "-c", "{sleep} 60 & {sleep} 60"]"#);
    // Runs 2 s apart: between them, nothing of the command may be left.
    let config = fixture(
        "checks/command.toml",
        &[
            ("@COMMAND@", &command),
            ("@EVERY@", "2s"),
            ("@TIMEOUT@", "300ms"),
            ("@WHEN@", r#"status == "critical""#),
            ("@RECORD@", "{{ event.exit_code }} {{ event.error }}"),
        ],
    );
    let h = start_in(dir, &config);
    let got = h.wait_lines(1);
    assert_eq!(
        got[0],
        "-1 timed out after 300ms; its process group was killed",
        "log:\n{}",
        h.log()
    );
    assert!(
        wait_for(Duration::from_secs(5), || processes_named(&name).is_empty()),
        "left behind: {:?}",
        processes_named(&name)
    );
}

#[test]
fn a_monitoring_plugin_drives_a_rule_through_its_nagios_state() {
    // Critical below 100 % free: always critical; the plugin from Debian's
    // monitoring-plugins-basic, as installed by .ci/run.
    let command =
        r#"["/usr/lib/nagios/plugins/check_disk", "-w", "100%", "-c", "100%", "-p", "/"]"#;
    let h = start(&command_config(
        command,
        "10s",
        r#"status == "critical""#,
        "{{ event.status }} {{ event.exit_code }} {{ event.output }}",
    ));
    let got = h.wait_lines(1);
    assert!(
        got[0].starts_with("critical 2 DISK CRITICAL - free space: / "),
        "{got:?}\nlog:\n{}",
        h.log()
    );
    assert!(
        !got[0].contains('|'),
        "performance data leaked into output: {got:?}"
    );
}

#[test]
fn a_command_sees_a_cleared_environment() {
    let h = start(&command_config(
        r#"["/usr/bin/env"]"#,
        "5s",
        "exit_code == 0",
        "{{ event.stdout }}",
    ));
    let got = h.wait_lines(1);
    let mut vars: Vec<&str> = got[0]
        .lines()
        .map(|l| l.split('=').next().unwrap_or(""))
        .collect();
    vars.sort();
    assert_eq!(vars, ["HOME", "LANG", "PATH"], "{got:?}");
}

#[test]
fn a_system_sample_carries_cpu_memory_load_and_the_filtered_disks() {
    let h = start(&fixture("checks/system.toml", &[]));
    let got = h.wait_lines(1);
    assert_eq!(got, vec!["1 True"], "log:\n{}", h.log());
}

#[test]
fn a_tmpfs_named_in_mounts_is_reported_and_a_path_that_is_no_mount_point_is_refused() {
    let dir = tempdir();
    let mnt = dir.path().join("ram");
    std::fs::create_dir(&mnt).unwrap();
    let mounted = std::process::Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=1m", "tmpfs"])
        .arg(&mnt)
        .status()
        .is_ok_and(|s| s.success());
    assert!(mounted, "mounting a tmpfs needs root (CI runs as root)");
    struct Unmount(std::path::PathBuf);
    impl Drop for Unmount {
        fn drop(&mut self) {
            let _ = std::process::Command::new("umount")
                .arg("-l")
                .arg(&self.0)
                .status();
        }
    }
    let _unmount = Unmount(mnt.clone());
    let m = mnt.display().to_string();
    // Not a mount point: refused at its place.
    let bad = dir.path().join("bad.toml");
    std::fs::write(
        &bad,
        format!("[watch.host]\ntype = \"system\"\nmounts = [\"/\", \"{m}/sub\"]\n"),
    )
    .unwrap();
    let out = std::process::Command::new(HARK)
        .args(["validate", "-c"])
        .arg(&bad)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains(&format!(
            "bad.toml:3:16: error: \"{m}/sub\" is not a mount point"
        )),
        "{err}"
    );
    // A tmpfs named explicitly is in `disks`, though it is no disk.
    let h = start_in(
        dir,
        &format!(
            "[watch.host]\ntype = \"system\"\nevery = \"200ms\"\nmounts = [\"{m}\"]\n\n\
             [rule.seen]\nwatch = \"host\"\nwhen = 'disks[\"{m}\"].used_percent >= 0'\nthen = [\"rec\"]\n\n\
             [action.rec]\ntype = \"shell\"\ncommand = {}\n",
            recorder_argv("@DIR@/out", &["{{ event.disks | length }}"])
        ),
    );
    let got = h.wait_lines(1);
    assert_eq!(got, vec!["1"], "log:\n{}", h.log());
}
