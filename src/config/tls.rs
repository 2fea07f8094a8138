//! `ca` and `tls_verify` of the actions that speak TLS (email, amqps://, mqtts://,
//! tls:// for NATS): which certificates a server may present.

use std::ops::Range;
use std::path::PathBuf;
use std::sync::Arc;

use toml::Spanned;

use super::Ctx;

/// Whom a TLS server must prove to be.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsOptions {
    /// Trust only these certificates (PEM, read at load), instead of the system's roots.
    pub ca: Option<Ca>,
    /// `false`: any certificate is accepted (the connection is still encrypted).
    pub verify: bool,
}

impl Default for TlsOptions {
    fn default() -> TlsOptions {
        TlsOptions {
            ca: None,
            verify: true,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ca {
    pub path: PathBuf,
    /// Each certificate of the file, DER.
    pub certs: Arc<Vec<Vec<u8>>>,
}

/// Reads `ca` (relative to the config file's directory) and `tls_verify`.
pub(crate) fn parse(
    ctx: &mut Ctx,
    ca: &Option<Spanned<String>>,
    tls_verify: Option<bool>,
) -> TlsOptions {
    let ca = ca
        .as_ref()
        .and_then(|c| read_ca(ctx, c.get_ref(), c.span()));
    TlsOptions {
        ca,
        verify: tls_verify.unwrap_or(true),
    }
}

/// A `ca` file larger than this is refused (a bundle of every public root is ~200 KiB).
const CA_MAX: u64 = 4 * 1024 * 1024;

fn read_ca(ctx: &mut Ctx, written: &str, span: Range<usize>) -> Option<Ca> {
    let path = ctx.config_dir().join(written);
    let text = match crate::fsread::read_regular(&path, CA_MAX) {
        Ok(t) => t,
        Err(e) => {
            ctx.error(span, format!("`ca`: cannot read {}: {e}", path.display()));
            return None;
        }
    };
    let certs = pem_certificates(&text);
    if certs.is_empty() {
        ctx.error(
            span,
            format!(
                "`ca`: {} holds no PEM certificate (-----BEGIN CERTIFICATE-----)",
                path.display()
            ),
        );
        return None;
    }
    Some(Ca {
        path,
        certs: Arc::new(certs),
    })
}

/// The DER of each `CERTIFICATE` block of a PEM text; other blocks are skipped.
pub fn pem_certificates(text: &[u8]) -> Vec<Vec<u8>> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::CertificateDer;
    CertificateDer::pem_slice_iter(text)
        .filter_map(Result::ok)
        .map(|c| c.as_ref().to_vec())
        .collect()
}
