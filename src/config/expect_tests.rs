use std::path::Path;
use std::time::SystemTime;

use super::*;
use crate::config::Config;

fn schedule(text: &str, zone: &str) -> Schedule {
    Schedule {
        text: text.to_string(),
        cron: std::sync::Arc::new(croner::Cron::from_str(text).unwrap()),
        grace: Duration::from_secs(60),
        zone: jiff::tz::TimeZone::get(zone).unwrap(),
        zone_name: zone.to_string(),
    }
}

fn at(rfc3339: &str) -> SystemTime {
    SystemTime::from(rfc3339.parse::<jiff::Timestamp>().unwrap())
}

fn utc(t: SystemTime) -> String {
    jiff::Timestamp::try_from(t).unwrap().to_string()
}

/// The scheduled times from `from`, `n` of them, in UTC.
fn upcoming(s: &Schedule, from: &str, n: usize) -> Vec<String> {
    let mut out = Vec::new();
    let mut t = at(from);
    for _ in 0..n {
        t = s.next_after(t).unwrap();
        out.push(utc(t));
    }
    out
}

#[test]
fn a_job_in_the_spring_forward_gap_is_expected_once_at_the_end_of_the_gap() {
    // Berlin, 2026-03-29: 02:00 CET becomes 03:00 CEST; 02:30 does not exist.
    let s = schedule("30 2 * * *", "Europe/Berlin");
    assert_eq!(
        upcoming(&s, "2026-03-28T12:00:00Z", 3),
        [
            "2026-03-29T01:00:00Z", // 03:00 CEST, the first instant after the gap
            "2026-03-30T00:30:00Z", // 02:30 CEST
            "2026-03-31T00:30:00Z",
        ]
    );
    // New York, 2026-03-08: 02:00 EST becomes 03:00 EDT.
    let s = schedule("30 2 * * *", "America/New_York");
    assert_eq!(
        upcoming(&s, "2026-03-07T12:00:00Z", 2),
        ["2026-03-08T07:00:00Z", "2026-03-09T06:30:00Z"]
    );
}

#[test]
fn a_job_in_the_fall_back_overlap_is_expected_once_not_twice() {
    // Berlin, 2026-10-25: 03:00 CEST becomes 02:00 CET; 02:30 happens twice.
    let s = schedule("30 2 * * *", "Europe/Berlin");
    assert_eq!(
        upcoming(&s, "2026-10-24T12:00:00Z", 2),
        ["2026-10-25T00:30:00Z", "2026-10-26T01:30:00Z"]
    );
    let s = schedule("30 1 * * *", "America/New_York");
    assert_eq!(
        upcoming(&s, "2026-10-31T12:00:00Z", 2),
        ["2026-11-01T05:30:00Z", "2026-11-02T06:30:00Z"]
    );
}

#[test]
fn due_is_the_next_scheduled_time_plus_the_grace_and_shown_in_its_zone() {
    let mut s = schedule("0 3 * * *", "Europe/Berlin");
    s.grace = Duration::from_secs(30 * 60);
    let due = s.due_after(at("2026-12-07T02:12:00Z")).unwrap();
    assert_eq!(utc(due), "2026-12-08T02:30:00Z");
    assert_eq!(s.show(due), "2026-12-08 03:30:00 CET");
}

fn errors(rule: &str) -> String {
    let text = format!(
        "[watch.beat]\ntype = \"heartbeat\"\n\n[watch.port]\ntype = \"tcp\"\naddress = \"127.0.0.1:1\"\n\n[rule.r]\n{rule}\n"
    );
    match Config::from_text(Path::new("hark.toml"), &text) {
        Ok(_) => String::new(),
        Err(e) => e.to_string(),
    }
}

#[test]
fn bad_expectations_are_refused_at_their_place() {
    let e = errors("watch = \"beat\"\nexpect = \"0 0 30 2 *\"");
    assert!(
        e.contains("never fires") && e.contains("hark.toml:10:10"),
        "{e}"
    );
    let e = errors("watch = \"beat\"\nexpect = \"0 3 * * *\"\ntimezone = \"Europe/Berln\"");
    assert!(
        e.contains("unknown time zone") && e.contains("Europe/Berlin"),
        "{e}"
    );
    let e = errors("watch = \"beat\"\nexpect = \"0 * * * *\"\ngrace = \"2h\"");
    assert!(e.contains("longer than the schedule's period"), "{e}");
    let e = errors("watch = \"beat\"\nexpect = \"0 3 * * *\"\ndebounce = \"1s\"");
    assert!(
        e.contains("`debounce` does not combine with `expect`"),
        "{e}"
    );
    let e = errors("watch = \"port\"\nexpect = \"0 3 * * *\"");
    assert!(e.contains("`expect` applies to event watches"), "{e}");
    let e = errors("watch = \"beat\"\nexpect = \"0 3 * * *\"\nexpect_within = \"1h\"");
    assert!(e.contains("cannot be combined"), "{e}");
    let e = errors("watch = \"beat\"\ngrace = \"1h\"");
    assert!(e.contains("`grace` applies to `expect`"), "{e}");
    let e = errors("watch = \"beat\"\nexpect = \"not cron\"");
    assert!(e.contains("invalid cron expression"), "{e}");
    let e = errors("watch = \"beat\"\nexpect_within = \"1h\"\nexpect_groups = [\"a\"]");
    assert!(e.contains("`expect_groups` names values"), "{e}");
    // What is fine: absence on a state watch, a schedule with a grace and a zone.
    assert_eq!(
        errors("watch = \"port\"\nexpect_within = \"1h\"\nwhen = \"connected\""),
        ""
    );
    assert_eq!(
        errors("watch = \"beat\"\nexpect = \"0 3 * * *\"\ngrace = \"30m\"\ntimezone = \"Europe/Berlin\"\nresolve = []"),
        ""
    );
}

/// Rules that repeat an expression share its parse: croner's table of years is about
/// 5 KiB, so 10,000 rules on a few expressions hold a few, not 10,000.
#[test]
fn rules_on_one_expression_share_its_parse() {
    let mut text = String::from("[watch.beat]\ntype = \"heartbeat\"\n");
    for (i, cron) in ["0 3 * * *", "0 3 * * *", "0 4 * * *"].iter().enumerate() {
        text += &format!("[rule.r{i}]\nwatch = \"beat\"\nexpect = \"{cron}\"\n");
    }
    let config = Config::from_text(Path::new("hark.toml"), &text).unwrap();
    let cron = |name: &str| match &config.rules[name].expectation {
        Some(Expectation {
            expect: Expect::Schedule(s),
            ..
        }) => Arc::clone(&s.cron),
        _ => panic!("{name} has no schedule"),
    };
    assert!(Arc::ptr_eq(&cron("r0"), &cron("r1")));
    assert!(!Arc::ptr_eq(&cron("r0"), &cron("r2")));
}

#[test]
fn the_period_is_the_shortest_gap_and_a_yearly_schedule_is_not_walked_for_decades() {
    let from = at("2026-12-07T12:00:00Z");
    let day = Duration::from_secs(24 * 3600);
    let period = |text: &str| schedule(text, "UTC").period(from).unwrap().0;
    assert_eq!(period("0 3 * * 1-5"), day);
    assert_eq!(period("0 0,23 * * *"), Duration::from_secs(3600));
    assert_eq!(period("0 0 1 1 *"), 365 * day);
    // Leap days: one gap, four years.
    assert_eq!(period("0 0 29 2 *"), (4 * 365 + 1) * day);
}
