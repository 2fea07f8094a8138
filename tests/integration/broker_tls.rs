//! `amqps://` and `mqtts://`: RabbitMQ and mosquitto with TLS listeners set up here (a
//! certificate from rcgen, signed by a test CA). With `ca` naming that CA a publish is
//! confirmed over TLS; with a `ca` that did not sign the broker's certificate the publish
//! is refused, retried, never delivered, and the error names the certificate.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::brokers::*;
use crate::pki;
use crate::util::*;

/// Both harks: the one trusting the broker's CA, and the one trusting another CA. The
/// first's file arrives; the second's is retried with an error naming the certificate,
/// and never arrives.
fn trusted_arrives_untrusted_is_retried(
    url: &str,
    action: &dyn Fn(&str, &std::path::Path) -> String,
    pki: &pki::Pki,
    received: &dyn Fn() -> Vec<serde_json::Value>,
) {
    let good = start_hark(&action(url, &pki.ca));
    drop_file(&good, "trusted");
    wait_names(received, &["trusted"], &good, "");

    let bad = start_hark(&action(url, &pki.other_ca));
    drop_file(&bad, "untrusted");
    let retried = || {
        bad.log()
            .lines()
            .filter(|l| l.contains("retrying in"))
            .count()
    };
    assert!(
        wait_for(Duration::from_secs(30), || retried() >= 2),
        "{}",
        bad.log()
    );
    let log = bad.log();
    let line = log
        .lines()
        .find(|l| l.contains("retrying in"))
        .unwrap_or_default();
    assert!(
        line.contains("hark test server") && line.contains("hark test CA"),
        "the refused certificate is not named: {line}"
    );
    let got = names(&received());
    assert!(!got.contains_key("untrusted"), "{got:?}");
}

#[test]
fn amqps_publishes_are_confirmed_over_tls_and_an_untrusted_certificate_is_retried() {
    let dir = tempdir();
    let pki = pki::make(&dir.path().join("pki"));
    let tls_port = free_port();
    let conf = format!(
        "listeners.ssl.1 = 127.0.0.1:{tls_port}\nssl_options.cacertfile = {}\n\
         ssl_options.certfile = {}\nssl_options.keyfile = {}\nssl_options.verify = verify_none\n\
         ssl_options.fail_if_no_peer_cert = false\n",
        pki.ca.display(),
        pki.cert.display(),
        pki.key.display()
    );
    let rabbit = Rabbit::with(dir, &conf);
    declare(&rabbit.url());
    let kept = Arc::new(Mutex::new(Vec::new()));
    let (plain, sink) = (rabbit.url(), Arc::clone(&kept));
    let received = move || {
        drain(&plain, &sink);
        sink.lock()
            .unwrap()
            .iter()
            .map(|(v, _)| v.clone())
            .collect()
    };
    let action = |url: &str, ca: &std::path::Path| {
        format!(
            "type = \"amqp\"\nurl = \"{url}\"\nexchange = \"hark\"\n\
             routing_key = \"hark.{{{{ rule }}}}\"\nca = \"{}\"",
            ca.display()
        )
    };
    let url = format!("amqps://guest:guest@127.0.0.1:{tls_port}/%2f");
    trusted_arrives_untrusted_is_retried(&url, &action, &pki, &received);
}

#[test]
fn mqtts_publishes_are_confirmed_over_tls_and_an_untrusted_certificate_is_retried() {
    let dir = tempdir();
    let pki = pki::make(&dir.path().join("pki"));
    let tls_port = free_port();
    let listener = format!(
        "listener {tls_port} 127.0.0.1\ncafile {}\ncertfile {}\nkeyfile {}\n",
        pki.ca.display(),
        pki.cert.display(),
        pki.key.display()
    );
    let broker = Mosquitto::with(dir, &listener);
    assert!(
        wait_for(Duration::from_secs(20), || std::net::TcpStream::connect((
            "127.0.0.1",
            tls_port
        ))
        .is_ok()),
        "mosquitto's TLS listener did not open"
    );
    let stop = Arc::new(AtomicBool::new(false));
    let got = mqtt_subscriber(broker.port, Arc::clone(&stop));
    let received = move || got.lock().unwrap().clone();
    let action = |url: &str, ca: &std::path::Path| {
        format!(
            "type = \"mqtt\"\nurl = \"{url}\"\ntopic = \"hark/{{{{ rule }}}}\"\nqos = 1\nca = \"{}\"",
            ca.display()
        )
    };
    let url = format!("mqtts://127.0.0.1:{tls_port}");
    trusted_arrives_untrusted_is_retried(&url, &action, &pki, &received);
    stop.store(true, Ordering::Relaxed);
}
