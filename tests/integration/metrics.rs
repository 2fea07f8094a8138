//! `[daemon] metrics`: the Prometheus text exposition on 127.0.0.1, counting events,
//! check latencies, firings, rule states, action runs, deliveries, the outbox and reloads.

use std::io::{Read, Write};
use std::time::Duration;

use crate::http_server::Server;
use crate::util::*;

fn scrape(address: &str, path: &str) -> (u16, String) {
    let Ok(mut s) = std::net::TcpStream::connect(address) else {
        return (0, String::new());
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(5)));
    let _ = write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
    );
    let mut reply = String::new();
    let _ = s.read_to_string(&mut reply);
    let status = reply
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    (
        status,
        reply
            .split_once("\r\n\r\n")
            .map_or("", |(_, b)| b)
            .to_string(),
    )
}

/// The value of the first sample whose line starts with `series`.
fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find(|l| l.starts_with(series))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

#[test]
fn metrics_count_what_the_daemon_does() {
    let api = Server::start();
    api.set_status(500);
    let receiver = Server::start();
    receiver.set_status(400);
    let address = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .to_string();
    let dir = tempdir();
    std::fs::create_dir(dir.path().join("in")).unwrap();
    let config = format!(
        "[daemon]\nmetrics = \"{address}\"\n\n{}",
        fixture(
            "control/status.toml",
            &[
                ("@URL@", &api.url("/health")),
                ("@RECEIVER@", &receiver.url("/hook")),
            ],
        )
    );
    let h = start_in(dir, &config);
    assert!(h.wait_log("delivery failed for good"), "log:\n{}", h.log());
    std::fs::write(h.path("in/f"), "x").unwrap();
    wait_for(Duration::from_secs(10), || !h.lines().is_empty());
    std::thread::sleep(Duration::from_millis(200));

    let (status, text) = scrape(&address, "/metrics");
    assert_eq!(status, 200, "{text}");
    let want = [
        (
            "hark_firings_total{rule=\"api_down\",state=\"firing\"}",
            1.0,
        ),
        ("hark_rule_firing{rule=\"api_down\",watch=\"api\"}", 1.0),
        (
            "hark_deliveries_total{action=\"hook\",result=\"failed\"}",
            1.0,
        ),
        ("hark_outbox_failed", 1.0),
        ("hark_outbox_pending", 0.0),
        // A rule that has not resolved yet has its series at zero, not absent.
        (
            "hark_firings_total{rule=\"api_down\",state=\"resolved\"}",
            0.0,
        ),
        (
            &*format!(
                "hark_build_info{{version=\"{}\"}}",
                env!("CARGO_PKG_VERSION")
            ),
            1.0,
        ),
        (
            "hark_action_runs_total{action=\"record\",result=\"ok\"}",
            1.0,
        ),
    ];
    for (series, value) in want {
        assert_eq!(sample(&text, series), Some(value), "{series} in:\n{text}");
    }
    assert!(
        sample(&text, "hark_events_total{watch=\"api\"}").is_some_and(|n| n >= 1.0),
        "{text}"
    );
    for series in [
        "hark_check_duration_seconds_count{watch=\"api\"}",
        "hark_event_lag_seconds_count{watch=\"api\"}",
        "hark_action_queue_wait_seconds_count{action=\"record\"}",
        "hark_action_queue_wait_seconds_count{action=\"hook\"}",
        "hark_action_duration_seconds_count{action=\"hook\"}",
        "hark_runtime_tasks",
    ] {
        assert!(
            sample(&text, series).is_some_and(|n| n >= 1.0),
            "{series} in:\n{text}"
        );
    }
    assert!(sample(&text, "hark_event_queue_depth").is_some(), "{text}");
    assert!(
        sample(&text, "hark_runtime_loop_lag_seconds").is_some(),
        "{text}"
    );

    h.signal(libc::SIGHUP);
    wait_for(Duration::from_secs(10), || {
        sample(
            &scrape(&address, "/metrics").1,
            "hark_reloads_total{result=\"ok\"}",
        ) == Some(1.0)
    });
    let (_, text) = scrape(&address, "/metrics");
    assert_eq!(
        sample(&text, "hark_reloads_total{result=\"ok\"}"),
        Some(1.0),
        "{text}"
    );
    assert_eq!(scrape(&address, "/other").0, 404);
}
