//! container watches against Podman's Docker-compatible API: states at start, a start, a
//! die with its code, a failing health check, a label with an escape sequence, the API
//! killed and started again (what happened meanwhile reported on reconnect), and a socket
//! that is not there.

use std::time::Duration;

use crate::support::podman::Podman;
use crate::util::*;

fn config(socket: &str) -> String {
    recorded(
        &format!("type = \"container\"\nsocket = \"{socket}\"\nnames = [\"app-*\"]\nlabels = [\"tier=web\"]"),
        "when = \"true\"",
        &["{{ event.kind }} {{ event.name }} {{ event.exit_code }} {{ event.health }} {{ event.rescan }} {{ event.labels.note }}"],
    )
}

fn wait_line(h: &Hark, want: &str) {
    assert!(
        wait_for(Duration::from_secs(30), || h
            .lines()
            .iter()
            .any(|l| l.starts_with(want))),
        "no line starting {want:?} in {:?}\n{}",
        h.lines(),
        h.log()
    );
}

#[test]
fn states_starts_deaths_health_and_what_a_reconnect_missed_are_events() {
    let mut podman = Podman::new();
    let web = ["--label", "tier=web"];
    podman.container("app-pre", &web, &["sleep", "300"]);
    podman.container("app-nolabel", &[], &["sleep", "300"]);
    podman.container("other", &web, &["sleep", "300"]);
    let h = start(&config(&podman.socket().to_string_lossy()));
    wait_line(&h, "state app-pre 0  False");

    podman.container(
        "app-die",
        &["--label", "tier=web", "--label", "note=a\u{1b}[31mred"],
        &["sh", "-c", "sleep 0.5; exit 3"],
    );
    wait_line(&h, "start app-die 0  False");
    wait_line(&h, "die app-die 3  False a\\x1b[31mred");

    podman.container(
        "app-sick",
        &[
            "--label",
            "tier=web",
            "--health-cmd",
            "/bin/false",
            "--health-retries",
            "1",
        ],
        &["sleep", "300"],
    );
    wait_line(&h, "start app-sick");
    // No systemd here to run the check on a timer: run it as its timer would.
    let _ = podman.command_output(&["healthcheck", "run", "app-sick"]);
    let _ = podman.command_output(&["healthcheck", "run", "app-sick"]);
    wait_line(&h, "health_status app-sick 0 unhealthy False");

    podman.run(&["kill", "app-pre"]);
    wait_line(&h, "die app-pre 137");

    // The API goes away; meanwhile a container stops; the API comes back.
    podman.stop_service();
    assert!(
        wait_for(Duration::from_secs(30), || h.status()["watches"][0]
            ["problems"]
            .to_string()
            .contains("cannot follow the container API")),
        "{}",
        h.status()
    );
    podman.run(&["stop", "-t", "0", "app-sick"]);
    podman.start();
    wait_line(&h, "die app-sick 137 unhealthy True");
    assert!(
        wait_for(Duration::from_secs(10), || h.status()["watches"][0]
            ["problems"]
            .is_null()),
        "{}",
        h.status()
    );
    let lines = h.lines();
    assert!(
        !lines
            .iter()
            .any(|l| l.contains("other") || l.contains("nolabel")),
        "{lines:?}"
    );
}

#[test]
fn a_socket_that_is_not_there_is_a_problem_until_the_api_appears() {
    let mut podman = Podman::new();
    podman.stop_service();
    podman.container("app-up", &["--label", "tier=web"], &["sleep", "300"]);
    let h = start(&config(&podman.socket().to_string_lossy()));
    assert!(
        wait_for(Duration::from_secs(15), || h.status()["watches"][0]
            ["problems"]
            .to_string()
            .contains("cannot follow the container API")),
        "{}",
        h.status()
    );
    assert!(h.lines().is_empty());
    podman.start();
    wait_line(&h, "state app-up 0  False");
}
