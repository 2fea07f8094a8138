//! certificate watches: files made by rcgen (expiring, chains in and out of order, a key
//! that is not the certificate's, a renewal renamed into place while watched, a file of
//! 100 MB, a FIFO, garbage between PEM blocks), and Exim's certificate over SMTP
//! STARTTLS.

use std::collections::HashMap;
use std::path::Path;

use serde_json::Value;

use crate::pki;
use crate::support::exim::Exim;
use crate::util::*;

/// A chain for `name` valid from `from` to `to` days from now, written as
/// `dir/live/name/fullchain.pem` (leaf, then its CA) and `privkey.pem`.
fn live(dir: &Path, name: &str, from: i64, to: i64) -> pki::Pki {
    let d = dir.join("live").join(name);
    std::fs::create_dir_all(&d).unwrap();
    let p = pki::server(&dir.join("made"), name, from, to);
    let chain =
        std::fs::read_to_string(&p.cert).unwrap() + &std::fs::read_to_string(&p.ca).unwrap();
    // A renewal: the new chain written beside, then renamed over the old one.
    let tmp = d.join(".fullchain.pem.new");
    std::fs::write(&tmp, chain).unwrap();
    std::fs::rename(&tmp, d.join("fullchain.pem")).unwrap();
    std::fs::copy(&p.key, d.join("privkey.pem")).unwrap();
    p
}

#[test]
fn a_certificate_near_expiry_fires_and_its_renewal_renamed_into_place_resolves_it() {
    let dir = tempdir();
    live(dir.path(), "a.test", -80, 5);
    live(dir.path(), "b.test", -10, 60);
    let config = format!(
        "[watch.w]\ntype = \"certificate\"\npaths = [\"{}/live/*/fullchain.pem\"]\nevery = \"1h\"\n\n\
         [rule.r]\nwatch = \"w\"\nwhen = \"days_left < 14\"\nthen = [\"rec\"]\nresolve = [\"rec\"]\n\n\
         [action.rec]\ntype = \"shell\"\ncommand = {}\n",
        dir.path().display(),
        recorder_argv("@DIR@/out", &["{{ state }} {{ event.subject }} {{ event.chain_ok }}"])
    );
    let h = Start::new(&config).dir(dir).run();
    let got = h.wait_lines(1);
    assert_eq!(got, ["firing CN=a.test True"], "{}", h.log());
    // Renewed by rename: only the file intake can tell (the next check is in an hour).
    live(&h.path(""), "a.test", -1, 89);
    let got = h.wait_lines(2);
    assert_eq!(got[1], "resolved CN=a.test True", "{got:?}\n{}", h.log());
    // b.test never fired; nothing else came.
    std::thread::sleep(std::time::Duration::from_millis(500));
    assert_eq!(h.lines().len(), 2, "{:?}", h.lines());
}

/// `hark test` on the config: each event's fields by `path` (or `address`).
fn events(config: &str) -> HashMap<String, Value> {
    sampled(config)
        .into_iter()
        .map(|(_, v)| {
            let key = v["path"].as_str().or(v["address"].as_str()).unwrap_or("");
            (key.to_string(), v)
        })
        .collect()
}

#[test]
fn order_keys_and_files_that_are_no_certificate_are_fields() {
    let dir = tempdir();
    let d = dir.path();
    let good = live(d, "good.test", -1, 30);
    let p = |n: &str| d.join(n).to_string_lossy().into_owned();
    let chain = |p: &pki::Pki| {
        (
            std::fs::read_to_string(&p.cert).unwrap(),
            std::fs::read_to_string(&p.ca).unwrap(),
        )
    };
    let (leaf, ca) = chain(&good);
    std::fs::write(p("reversed.pem"), ca.clone() + &leaf).unwrap();
    std::fs::write(
        p("garbage.pem"),
        format!("Subject: good\n{leaf}\nnot base64\n-----BEGIN CERTIFICATE-----\n!!!!\n-----END CERTIFICATE-----\n{ca}"),
    )
    .unwrap();
    let other = pki::server(&d.join("made"), "other.test", -1, 30);
    let expired = pki::server(&d.join("made"), "expired.test", -30, -2);
    std::fs::copy(&expired.cert, p("expired.pem")).unwrap();
    // 100 MB (sparse) and a FIFO no one writes: refused without reading or waiting.
    std::fs::File::create(p("huge.pem"))
        .unwrap()
        .set_len(100 << 20)
        .unwrap();
    let fifo = std::ffi::CString::new(p("fifo.pem")).unwrap();
    // SAFETY: mkfifo(3) on a path we own.
    assert_eq!(unsafe { libc::mkfifo(fifo.as_ptr(), 0o600) }, 0);
    let full = p("live/good.test/fullchain.pem");
    let w = |name: &str, paths: &str, extra: &str| {
        format!("[watch.{name}]\ntype = \"certificate\"\npaths = [{paths}]\n{extra}\n\n")
    };
    let mut config = w(
        "all",
        &[
            "reversed.pem",
            "garbage.pem",
            "expired.pem",
            "huge.pem",
            "fifo.pem",
        ]
        .map(|n| format!("\"{}\"", p(n)))
        .join(", "),
        "",
    );
    config += &w(
        "own_key",
        &format!("\"{full}\""),
        &format!("key = \"{}\"", p("live/good.test/privkey.pem")),
    );
    config += &w(
        "keyed",
        &format!("\"{}\"", p("reversed.pem")),
        &format!("key = \"{}\"", other.key.display()),
    );
    let e = events(&config);

    let own = &e[&full];
    assert_eq!(own["key_matches"], true, "{own}");
    assert_eq!(own["chain_ok"], true);
    assert_eq!(own["chain_length"], 2);
    assert_eq!(own["subject"], "CN=good.test");
    assert_eq!(own["issuer"], "CN=good.test CA");
    assert_eq!(own["sans"], serde_json::json!(["localhost", "127.0.0.1"]));
    let days = own["days_left"].as_f64().unwrap();
    assert!((29.9..30.1).contains(&days), "{own}");
    assert!(own["not_after"].as_str().unwrap().ends_with('Z'), "{own}");
    assert!(!own["serial"].as_str().unwrap().is_empty());

    let reversed = &e[&p("reversed.pem")];
    assert_eq!(reversed["chain_ok"], false, "{reversed}");
    assert_eq!(reversed["key_matches"], false, "{reversed}");
    let garbage = &e[&p("garbage.pem")];
    assert_eq!(garbage["chain_ok"], true, "{garbage}");
    assert_eq!(garbage["chain_length"], 2);
    assert!(
        garbage["error"]
            .as_str()
            .unwrap()
            .contains("1 PEM block(s)"),
        "{garbage}"
    );
    let expired = &e[&p("expired.pem")];
    assert!(expired["days_left"].as_f64().unwrap() < -1.0, "{expired}");
    let huge = &e[&p("huge.pem")];
    assert_eq!(huge["ok"], false, "{huge}");
    assert!(
        huge["error"].as_str().unwrap().contains("larger than"),
        "{huge}"
    );
    assert_eq!(huge["days_left"], 0.0);
    let fifo = &e[&p("fifo.pem")];
    assert!(
        fifo["error"]
            .as_str()
            .unwrap()
            .contains("not a regular file"),
        "{fifo}"
    );
}

#[test]
fn an_smtp_servers_certificate_is_read_after_starttls() {
    let exim = Exim::new();
    let config = format!(
        "[watch.mx]\ntype = \"certificate\"\naddress = \"127.0.0.1:{}\"\nstarttls = \"smtp\"\n\
         server_name = \"localhost\"\ntimeout = \"30s\"\n\n\
         [watch.plain]\ntype = \"certificate\"\naddress = \"127.0.0.1:{}\"\ntimeout = \"30s\"\n",
        exim.starttls, exim.smtps
    );
    let e = events(&config);
    for port in [exim.starttls, exim.smtps] {
        let got = &e[&format!("127.0.0.1:{port}")];
        assert_eq!(got["ok"], true, "{got}\n{}", exim.mainlog());
        assert_eq!(got["subject"], "CN=hark test server", "{got}");
        assert_eq!(got["issuer"], "CN=hark test CA", "{got}");
        assert_eq!(got["sans"], serde_json::json!(["localhost", "127.0.0.1"]));
    }
    assert_eq!(
        e[&format!("127.0.0.1:{}", exim.starttls)]["starttls"],
        "smtp"
    );
    // The daemon checks an endpoint when the watch starts, then every `every`.
    let h = start(&recorded(
        &format!(
            "type = \"certificate\"\naddress = \"127.0.0.1:{}\"\nstarttls = \"smtp\"\nevery = \"200ms\"",
            exim.starttls
        ),
        "when = \"ok && days_left > 14\"",
        &["{{ state }} {{ event.subject }} {{ event.starttls }}"],
    ));
    assert_eq!(
        h.wait_lines(1),
        ["firing CN=hark test server smtp"],
        "{}",
        h.log()
    );
    let checks = || h.status()["watches"][0]["events"].as_u64().unwrap_or(0);
    assert!(
        wait_for(std::time::Duration::from_secs(15), || checks() >= 4),
        "{}",
        h.status()
    );
}
