//! payload.rs's tests: lengths, links, resolves.

use super::*;

fn message(body: &str) -> Message {
    Message {
        title: "disk full on <web1>".into(),
        body: body.into(),
        firing: true,
        severity: "critical".into(),
        rule: "disk".into(),
        host: "web1".into(),
        group: None,
        time: "2026-12-07T10:00:00Z".into(),
        dedup: "disk/web1".into(),
        priority: None,
        link: None,
    }
}

#[test]
fn each_service_gets_its_lengths_whatever_the_field_holds() {
    let m = message(&"x".repeat(100_000));
    let t = build(Service::Telegram, &m);
    assert!(t["text"].as_str().unwrap().chars().count() <= 4096);
    let d = build(Service::Discord, &m);
    assert!(
        d["embeds"][0]["description"]
            .as_str()
            .unwrap()
            .chars()
            .count()
            <= 4096
    );
    assert_eq!(d["allowed_mentions"]["parse"], json!([]));
    let s = build(Service::Slack, &m);
    let section = &s["attachments"][0]["blocks"][1]["text"]["text"];
    assert!(section.as_str().unwrap().chars().count() <= 3000);
    let p = build(Service::Pushover, &m);
    assert!(p["message"].as_str().unwrap().chars().count() <= 1024);
    let o = build(Service::Opsgenie, &m);
    assert!(o["message"].as_str().unwrap().chars().count() <= 130);
}

#[test]
fn a_cut_html_text_leaves_no_tag_or_entity_open() {
    let m = message(&"&<".repeat(10_000));
    let t = build(Service::Telegram, &m)["text"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(
        t.ends_with("</b>") || t.ends_with("</i>") || !t.contains("<i>"),
        "{}",
        &t[t.len() - 40..]
    );
    assert!(!t
        .trim_end_matches("</i>")
        .trim_end_matches("</b>")
        .ends_with('&'));
    assert_eq!(t.matches("<b>").count(), t.matches("</b>").count());
}

#[test]
fn the_status_page_is_linked_where_each_service_links() {
    let mut m = message("x");
    m.link = Some("https://hark.example.org/".into());
    for service in [
        Service::Slack,
        Service::Discord,
        Service::Teams,
        Service::Telegram,
        Service::Matrix,
        Service::Ntfy,
        Service::Gotify,
        Service::Pushover,
        Service::PagerDuty,
        Service::Opsgenie,
    ] {
        let v = build(service, &m).to_string();
        assert!(v.contains("https://hark.example.org/"), "{service:?}: {v}");
    }
    let t = build(Service::Telegram, &m);
    assert!(t["text"]
        .as_str()
        .unwrap()
        .ends_with("<a href=\"https://hark.example.org/\">status page</a>"));
}

#[test]
fn a_resolve_closes_what_the_firing_opened() {
    let mut m = message("ok");
    let open = build(Service::PagerDuty, &m);
    m.firing = false;
    let close = build(Service::PagerDuty, &m);
    assert_eq!(open["event_action"], "trigger");
    assert_eq!(close["event_action"], "resolve");
    assert_eq!(open["dedup_key"], close["dedup_key"]);
    assert_eq!(
        build(Service::Opsgenie, &message("x"))["alias"],
        "disk/web1"
    );
}
