//! `hark outbox`, `hark outbox retry` and `hark outbox drop` against a running daemon: a
//! failed delivery is listed with why, delivered once tried again after its receiver is
//! fixed, and a dropped one (failed or pending) is never attempted again; each change is
//! logged with who asked.

use std::time::Duration;

use crate::http_server::Server;
use crate::util::*;

fn start_with(receiver: &Server) -> Hark {
    let dir = tempdir();
    std::fs::create_dir(dir.path().join("in")).unwrap();
    start_in(
        dir,
        &format!(
            "[watch.drop]\ntype = \"file\"\npaths = [\"@DIR@/in\"]\nevents = [\"create\"]\n\
             debounce = \"0ms\"\n\n[rule.dropped]\nwatch = \"drop\"\nthen = [\"hook\"]\n\
             trigger_limit = \"off\"\n\n[action.hook]\ntype = \"webhook\"\nurl = \"{}\"\n",
            receiver.url("/hook")
        ),
    )
}

fn outbox(h: &Hark) -> Vec<serde_json::Value> {
    let (code, out, err) = h.ctl(&["outbox", "--json"]);
    assert_eq!(code, Some(0), "{err}");
    serde_json::from_str::<Vec<serde_json::Value>>(&out).unwrap_or_else(|e| panic!("{e}: {out}"))
}

fn wait_outbox(h: &Hark, cond: impl Fn(&[serde_json::Value]) -> bool) -> Vec<serde_json::Value> {
    wait_for(Duration::from_secs(20), || cond(&outbox(h)));
    outbox(h)
}

#[test]
fn a_failed_delivery_is_listed_retried_once_fixed_and_one_dropped_never_again() {
    let receiver = Server::start();
    receiver.set_status(400);
    let h = start_with(&receiver);
    std::fs::write(h.path("in/a"), "x").unwrap();
    let list = wait_outbox(&h, |l| l.iter().any(|e| !e["failed"].is_null()));
    assert_eq!(list.len(), 1, "{list:?}");
    let id = list[0]["id"].as_u64().unwrap();
    assert_eq!(list[0]["rule"], "dropped");
    assert!(
        list[0]["failed"].as_str().unwrap().contains("400"),
        "{list:?}"
    );
    let (_, text, _) = h.ctl(&["outbox"]);
    assert!(
        text.contains("failed") && text.contains("rule dropped"),
        "{text}"
    );

    // An id that is not there is an error.
    let (code, _, err) = h.ctl(&["outbox", "retry", "999999"]);
    assert_eq!(code, Some(1));
    assert!(err.contains("no delivery 999999"), "{err}");

    // The receiver fixed: tried again, delivered once, gone from the outbox.
    receiver.set_status(200);
    let hits = receiver.hits();
    let (code, out, err) = h.ctl(&["outbox", "retry", &id.to_string()]);
    assert_eq!(code, Some(0), "{err}");
    assert!(out.contains(&id.to_string()), "{out}");
    assert!(receiver.wait_hits(hits, 1), "not delivered:\n{}", h.log());
    assert!(wait_outbox(&h, |l| l.is_empty()).is_empty());
    assert!(
        h.wait_log("outbox: failed deliveries tried again"),
        "{}",
        h.log()
    );
    assert!(
        h.log().contains("uid 0"),
        "who asked is logged:\n{}",
        h.log()
    );

    // Failed again, dropped: gone, and `retry --failed` finds nothing.
    receiver.set_status(400);
    std::fs::write(h.path("in/b"), "x").unwrap();
    let list = wait_outbox(&h, |l| l.iter().any(|e| !e["failed"].is_null()));
    let id = list[0]["id"].as_u64().unwrap();
    let (code, _, err) = h.ctl(&["outbox", "drop", &id.to_string()]);
    assert_eq!(code, Some(0), "{err}");
    assert!(outbox(&h).is_empty());
    receiver.set_status(200);
    let (code, out, _) = h.ctl(&["outbox", "retry", "--failed"]);
    assert_eq!(code, Some(0));
    assert!(out.contains("no failed delivery"), "{out}");

    // A pending delivery (the receiver answers 500: retried with backoff) dropped: no
    // attempt after the drop.
    receiver.set_status(500);
    let hits = receiver.hits();
    std::fs::write(h.path("in/c"), "x").unwrap();
    assert!(receiver.wait_hits(hits, 1));
    let list = wait_outbox(&h, |l| !l.is_empty());
    let id = list[0]["id"].as_u64().unwrap();
    assert!(list[0]["failed"].is_null(), "{list:?}");
    let (code, _, err) = h.ctl(&["outbox", "drop", &id.to_string()]);
    assert_eq!(code, Some(0), "{err}");
    let after_drop = receiver.hits();
    receiver.set_status(200);
    // The backoff after the first attempts is 1-2 s: wait past two of them.
    std::thread::sleep(Duration::from_secs(4));
    // (An attempt already under way when it was dropped may still land: at most one.)
    assert!(
        receiver.hits() <= after_drop + 1,
        "a dropped delivery was attempted again: {} hits after the drop",
        receiver.hits() - after_drop
    );
    assert!(outbox(&h).is_empty());
    assert!(h.log().contains("outbox: delivery dropped"), "{}", h.log());
}

#[test]
fn a_delivery_being_retried_shows_its_attempts_last_error_and_next_try_live() {
    let receiver = Server::start();
    receiver.set_status(503);
    let h = start_with(&receiver);
    std::fs::write(h.path("in/a"), "x").unwrap();
    // Backoff from 1 s: two attempts within a few seconds.
    let list = wait_outbox(&h, |l| {
        l.first()
            .is_some_and(|e| e["attempts"].as_u64().is_some_and(|n| n >= 2))
    });
    let e = &list[0];
    assert!(e["failed"].is_null(), "{list:?}");
    assert!(e["attempts"].as_u64().unwrap() >= 2, "{list:?}");
    assert!(
        e["last_error"].as_str().is_some_and(|s| s.contains("503")),
        "{list:?}"
    );
    assert!(e["next_attempt"].as_str().is_some(), "{list:?}");
    let (_, text, _) = h.ctl(&["outbox"]);
    assert!(
        text.contains("last attempt failed") && text.contains("next attempt at"),
        "{text}"
    );
    let st = h.status();
    let retrying = &st["outbox"]["retrying"][0];
    assert!(
        retrying["last_error"]
            .as_str()
            .is_some_and(|s| s.contains("503")),
        "{st}"
    );
    let (_, text, _) = h.ctl(&["status"]);
    assert!(text.contains("retrying: rule dropped"), "{text}");
    // An event rule's row names its watches (not "-").
    assert_eq!(st["rules"][0]["watch"], "drop", "{st}");
    // Delivered: nothing of it is left to show.
    receiver.set_status(200);
    let list = wait_outbox(&h, |l| l.is_empty());
    assert!(list.is_empty(), "{list:?}");
    assert!(h.status()["outbox"]["retrying"]
        .as_array()
        .is_some_and(|a| a.is_empty()));
}
