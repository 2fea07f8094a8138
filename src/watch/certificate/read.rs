//! A certificate chain's fields: read from a file (PEM bundle or DER, bounded, regular
//! files only) or as a TLS peer presented it.

use std::path::Path;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use serde_json::{Map, Value};
use x509_parser::certificate::X509Certificate;
use x509_parser::extensions::GeneralName;

use crate::watch::printable;

/// The largest certificate or key file read (a bundle of every public root is ~200 KiB).
pub const MAX_FILE: u64 = 1024 * 1024;
/// Subject alternative names reported, at most.
const MAX_SANS: usize = 100;
/// Characters of a subject, an issuer or a name, at most.
const MAX_TEXT: usize = 1_000;

/// The fields of the certificates in a file, and of `key` against the first.
pub fn file_fields(path: &Path, key: Option<&Path>, now: i64) -> Map<String, Value> {
    let mut f = Map::new();
    f.insert(
        "path".into(),
        Value::from(printable(&path.to_string_lossy(), 4096)),
    );
    let bytes = match crate::fsread::read_regular(path, MAX_FILE) {
        Ok(b) => b,
        Err(e) => {
            failed(&mut f, format!("cannot read {}: {e}", path.display()));
            return f;
        }
    };
    let (chain, skipped) = bundle(&bytes);
    if chain.is_empty() {
        failed(
            &mut f,
            format!(
                "{} holds no certificate (PEM `-----BEGIN CERTIFICATE-----` blocks or DER)",
                path.display()
            ),
        );
        return f;
    }
    chain_fields(&mut f, &chain, now);
    if skipped > 0 {
        f.insert(
            "error".into(),
            Value::from(format!(
                "{skipped} PEM block(s) that are no certificate skipped"
            )),
        );
    }
    if let Some(key) = key {
        let matches = key_matches(&chain[0], key);
        if let Err(e) = &matches {
            f.insert("error".into(), Value::from(e.clone()));
        }
        f.insert("key_matches".into(), Value::Bool(matches.unwrap_or(false)));
    }
    f
}

/// The certificates of a PEM bundle (text between blocks is skipped), or of one DER
/// certificate; and how many PEM certificate blocks did not parse.
fn bundle(bytes: &[u8]) -> (Vec<CertificateDer<'static>>, usize) {
    if bytes.windows(11).any(|w| w == b"-----BEGIN ") {
        let mut skipped = 0;
        let mut certs = Vec::new();
        for c in CertificateDer::pem_slice_iter(bytes) {
            match c {
                Ok(c) if x509_parser::parse_x509_certificate(&c).is_ok() => certs.push(c),
                _ => skipped += 1,
            }
        }
        return (certs, skipped);
    }
    match x509_parser::parse_x509_certificate(bytes) {
        Ok(_) => (vec![CertificateDer::from(bytes.to_vec())], 0),
        Err(_) => (Vec::new(), 0),
    }
}

/// A chain that could not be read: `ok` false, the certificate fields empty, and
/// `days_left` 0 (a rule on expiry fires for a certificate it cannot read).
pub fn failed(f: &mut Map<String, Value>, error: String) {
    f.insert("ok".into(), Value::Bool(false));
    f.insert("error".into(), Value::from(error));
    f.insert("days_left".into(), Value::from(0.0));
    for k in ["not_after", "not_before", "subject", "issuer", "serial"] {
        f.insert(k.into(), Value::from(""));
    }
    f.insert("sans".into(), Value::Array(Vec::new()));
    f.insert("chain_ok".into(), Value::Bool(false));
    f.insert("chain_length".into(), Value::from(0));
}

/// The first certificate's fields, and whether each is signed by the next.
pub fn chain_fields(f: &mut Map<String, Value>, chain: &[CertificateDer<'_>], now: i64) {
    let parsed: Vec<X509Certificate<'_>> = chain
        .iter()
        .filter_map(|c| x509_parser::parse_x509_certificate(c).ok().map(|(_, c)| c))
        .collect();
    let Some(leaf) = parsed.first() else {
        failed(f, "no certificate".into());
        return;
    };
    let not_after = leaf.validity().not_after.timestamp();
    f.insert("ok".into(), Value::Bool(true));
    f.insert("error".into(), Value::from(""));
    f.insert("not_after".into(), Value::from(rfc3339(not_after)));
    f.insert(
        "not_before".into(),
        Value::from(rfc3339(leaf.validity().not_before.timestamp())),
    );
    let days = (not_after - now) as f64 / 86_400.0;
    f.insert(
        "days_left".into(),
        Value::from((days * 100.0).round() / 100.0),
    );
    f.insert(
        "subject".into(),
        Value::from(printable(&leaf.subject().to_string(), MAX_TEXT)),
    );
    f.insert(
        "issuer".into(),
        Value::from(printable(&leaf.issuer().to_string(), MAX_TEXT)),
    );
    f.insert(
        "serial".into(),
        Value::from(leaf.raw_serial_as_string().replace(':', "")),
    );
    f.insert("sans".into(), Value::Array(sans(leaf)));
    let chain_ok = parsed.len() == chain.len()
        && parsed.windows(2).all(|w| {
            w[0].issuer() == w[1].subject()
                && w[0].verify_signature(Some(w[1].public_key())).is_ok()
        });
    f.insert("chain_ok".into(), Value::Bool(chain_ok));
    f.insert("chain_length".into(), Value::from(chain.len()));
}

fn sans(cert: &X509Certificate<'_>) -> Vec<Value> {
    let Ok(Some(ext)) = cert.subject_alternative_name() else {
        return Vec::new();
    };
    ext.value
        .general_names
        .iter()
        .take(MAX_SANS)
        .map(|n| {
            let text = match n {
                GeneralName::DNSName(d) => d.to_string(),
                GeneralName::IPAddress(b) => match b.len() {
                    4 => <[u8; 4]>::try_from(*b)
                        .map(|a| std::net::Ipv4Addr::from(a).to_string())
                        .unwrap_or_default(),
                    16 => <[u8; 16]>::try_from(*b)
                        .map(|a| std::net::Ipv6Addr::from(a).to_string())
                        .unwrap_or_default(),
                    _ => String::new(),
                },
                GeneralName::RFC822Name(m) => m.to_string(),
                other => other.to_string(),
            };
            Value::from(printable(&text, MAX_TEXT))
        })
        .collect()
}

fn rfc3339(ts: i64) -> String {
    jiff::Timestamp::from_second(ts)
        .map(|t| t.to_string())
        .unwrap_or_default()
}

/// Whether the private key in `key` (PEM: PKCS#8, PKCS#1 or SEC1) is the certificate's.
fn key_matches(cert: &CertificateDer<'_>, key: &Path) -> Result<bool, String> {
    let pem = crate::fsread::read_regular(key, MAX_FILE)
        .map_err(|e| format!("`key`: cannot read {}: {e}", key.display()))?;
    let der = PrivateKeyDer::from_pem_slice(&pem)
        .map_err(|_| format!("`key`: {} holds no PEM private key", key.display()))?;
    let provider = rustls::crypto::ring::default_provider();
    let signing = provider
        .key_provider
        .load_private_key(der)
        .map_err(|e| format!("`key` {}: {e}", key.display()))?;
    let Some(public) = signing.public_key() else {
        return Err(format!(
            "`key` {}: its public key is unknown",
            key.display()
        ));
    };
    let (_, parsed) =
        x509_parser::parse_x509_certificate(cert).map_err(|e| format!("certificate: {e}"))?;
    Ok(parsed.public_key().raw == public.as_ref())
}
