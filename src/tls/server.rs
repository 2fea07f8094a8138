//! The HTTP listener's TLS: its certificate chain and key (PEM), and with `client_ca` the
//! certificates clients must present. Read at load, and again when the files change or
//! at SIGHUP; a certificate that does not load (unreadable, expired, not the key's)
//! leaves the one in use in place.

use std::sync::Arc;
use std::time::SystemTime;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;
use rustls::{RootCertStore, ServerConfig};

use crate::config::ServerTls;

/// The largest certificate or key file read.
const PEM_MAX: u64 = 1024 * 1024;

/// A server configuration from the files `tls` names; the error names the file and what
/// is wrong with it.
pub fn server_config(tls: &ServerTls) -> Result<Arc<ServerConfig>, String> {
    let read = |path: &std::path::Path, what: &str| {
        crate::fsread::read_regular(path, PEM_MAX)
            .map_err(|e| format!("`{what}`: cannot read {}: {e}", path.display()))
    };
    let cert_pem = read(&tls.cert, "tls_cert")?;
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(&cert_pem)
        .filter_map(Result::ok)
        .collect();
    let Some(leaf) = chain.first() else {
        return Err(format!(
            "`tls_cert`: {} holds no PEM certificate (-----BEGIN CERTIFICATE-----)",
            tls.cert.display()
        ));
    };
    if let Some(ended) = expired(leaf, SystemTime::now()) {
        return Err(format!(
            "`tls_cert`: {} expired on {ended}",
            tls.cert.display()
        ));
    }
    let key_pem = read(&tls.key, "tls_key")?;
    let key = PrivateKeyDer::from_pem_slice(&key_pem).map_err(|_| {
        format!(
            "`tls_key`: {} holds no PEM private key (PKCS#8, PKCS#1 or SEC1)",
            tls.key.display()
        )
    })?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = ServerConfig::builder_with_provider(Arc::clone(&provider))
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS: {e}"))?;
    let builder = match &tls.client_ca {
        None => builder.with_no_client_auth(),
        Some(path) => {
            let pem = read(path, "client_ca")?;
            let mut roots = RootCertStore::empty();
            let (added, _) = roots.add_parsable_certificates(
                CertificateDer::pem_slice_iter(&pem).filter_map(Result::ok),
            );
            if added == 0 {
                return Err(format!(
                    "`client_ca`: {} holds no usable certificate",
                    path.display()
                ));
            }
            let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
                .build()
                .map_err(|e| format!("`client_ca` {}: {e}", path.display()))?;
            builder.with_client_cert_verifier(verifier)
        }
    };
    let mut config = builder.with_single_cert(chain, key).map_err(|e| {
        format!(
            "`tls_key` {} with `tls_cert` {}: {e}",
            tls.key.display(),
            tls.cert.display()
        )
    })?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// When the certificate ended, if it has by `now`.
fn expired(der: &[u8], now: SystemTime) -> Option<String> {
    let (_, cert) = x509_parser::parse_x509_certificate(der).ok()?;
    let end = cert.validity().not_after.timestamp();
    let now = now
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX));
    (end < now).then(|| cert.validity().not_after.to_string())
}
