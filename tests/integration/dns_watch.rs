//! dns watches against BIND 9 on loopback: answers, NXDOMAIN, SERVFAIL, a truncated
//! answer that goes to TCP, a server that does not answer, IPv6, a zone that changes.

use std::collections::HashMap;
use std::time::Duration;

use serde_json::Value;

use crate::support::named::Named;
use crate::util::*;

fn zone(serial: u32) -> String {
    let mut z = format!(
        "$TTL 300\n@ IN SOA ns.hark.test. admin.hark.test. {serial} 3600 600 86400 60\n\
         @ IN NS ns\nns IN A 127.0.0.1\nwww 120 IN A 192.0.2.10\nwww 120 IN A 192.0.2.11\n\
         mail IN MX 10 mx1.hark.test.\nmx1 IN A 192.0.2.25\n\
         _imap._tcp IN SRV 0 5 143 mx1.hark.test.\n"
    );
    // 40 TXT records: more than a 512-byte datagram holds.
    for i in 0..40 {
        z.push_str(&format!(
            "big IN TXT \"record {i} of a set too large for one datagram\"\n"
        ));
    }
    z
}

/// `hark test` on the config: each watch's one event, by watch name.
fn events(config: &str) -> HashMap<String, Value> {
    sampled(config).into_iter().collect()
}

fn watch(name: &str, ask: &str, record: &str, servers: &str) -> String {
    format!(
        "[watch.{name}]\ntype = \"dns\"\nname = \"{ask}\"\nrecord = \"{record}\"\n\
         servers = [{servers}]\ntimeout = \"400ms\"\n\n"
    )
}

#[test]
fn answers_nxdomain_servfail_truncation_and_a_silent_server_are_fields() {
    let named = Named::new(&[
        ("hark.test", &zone(2026120701)),
        ("broken.test", "no zone\n"),
    ]);
    let v4 = format!("\"127.0.0.1:{}\"", named.port);
    let v6 = format!("\"[::1]:{}\"", named.port);
    // A server that takes the question and never answers.
    let silent = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let silent = format!("\"{}\"", silent.local_addr().unwrap());
    let mut config = String::new();
    config.push_str(&watch("www", "www.hark.test", "A", &v4));
    config.push_str(&watch("mx", "mail.hark.test", "MX", &v6));
    config.push_str(&watch("srv", "_imap._tcp.hark.test", "SRV", &v4));
    config.push_str(&watch("nx", "nope.hark.test", "A", &v4));
    config.push_str(&watch("sf", "x.broken.test", "A", &v4));
    config.push_str(&watch("big", "big.hark.test", "TXT", &v4));
    config.push_str(&watch("silent", "www.hark.test", "A", &silent));
    config.push_str(&watch(
        "next",
        "www.hark.test",
        "A",
        &format!("{silent}, {v4}"),
    ));
    let e = events(&config);

    let www = &e["www"];
    assert_eq!(www["rcode"], "NOERROR", "{www}");
    assert_eq!(www["answers_count"], 2);
    assert_eq!(www["ttl_min"], 120);
    assert_eq!(www["tcp"], false);
    assert_eq!(www["authoritative"], true);
    assert_eq!(www["server"], format!("127.0.0.1:{}", named.port));
    let mut ips: Vec<&str> = www["answers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["data"].as_str().unwrap())
        .collect();
    ips.sort();
    assert_eq!(ips, ["192.0.2.10", "192.0.2.11"]);
    assert!(www["latency_ms"].as_f64().unwrap() > 0.0);

    let mx = &e["mx"];
    assert_eq!(mx["server"], format!("[::1]:{}", named.port), "{mx}");
    assert_eq!(mx["answers"][0]["preference"], 10);
    assert_eq!(mx["answers"][0]["exchange"], "mx1.hark.test.");
    let srv = &e["srv"]["answers"][0];
    assert_eq!(
        (srv["port"].clone(), srv["weight"].clone()),
        (Value::from(143), Value::from(5))
    );

    assert_eq!(e["nx"]["rcode"], "NXDOMAIN", "{}", e["nx"]);
    assert_eq!(e["nx"]["answers_count"], 0);
    assert_eq!(e["sf"]["rcode"], "SERVFAIL", "{}", e["sf"]);

    let big = &e["big"];
    assert_eq!(big["tcp"], true, "{big}");
    assert_eq!(big["answers_count"], 40);
    assert_eq!(big["rcode"], "NOERROR");

    let s = &e["silent"];
    assert_eq!(s["rcode"], "", "{s}");
    assert_eq!(s["server"], "");
    assert!(
        s["error"]
            .as_str()
            .unwrap()
            .contains("no answer over UDP within 400ms"),
        "{s}"
    );
    let next = &e["next"];
    assert_eq!(next["rcode"], "NOERROR", "{next}");
    assert_eq!(next["server"], format!("127.0.0.1:{}", named.port));
    assert!(
        next["error"].as_str().unwrap().contains("no answer"),
        "{next}"
    );
}

#[test]
fn a_zone_whose_soa_serial_changed_fires_a_rule() {
    let named = Named::new(&[("hark.test", &zone(2026120701))]);
    let h = start(&recorded(
        &format!(
            "type = \"dns\"\nname = \"hark.test\"\nrecord = \"SOA\"\n\
             servers = [\"127.0.0.1:{}\"]\nevery = \"200ms\"",
            named.port
        ),
        "when = \"changed\"\nresolve = [\"rec\"]",
        &["{{ state }} {{ event.answers[0].serial }}"],
    ));
    // Checks come and go with nothing changed: nothing fires.
    assert!(
        wait_for(Duration::from_secs(10), || {
            h.status()["watches"]
                .as_array()
                .into_iter()
                .flatten()
                .any(|w| w["events"].as_u64().unwrap_or(0) >= 3)
        }),
        "{}",
        h.log()
    );
    assert!(h.lines().is_empty(), "{:?}", h.lines());
    named.rewrite("hark.test", &zone(2026120702), 2026120702);
    let got = h.wait_lines(2);
    assert_eq!(got[0], "firing 2026120702", "{got:?}");
    // The next check sees the same serial: the rule resolves.
    assert_eq!(got[1], "resolved 2026120702", "{got:?}");
}
