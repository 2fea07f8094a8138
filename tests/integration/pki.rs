//! Certificates for the TLS tests, made by rcgen: a test CA, a server certificate it
//! signed (for localhost and 127.0.0.1), and another CA that signed nothing the servers
//! present (a `ca` that must not trust them).

use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair, KeyUsagePurpose,
};

pub struct Pki {
    /// The CA that signed `cert`.
    pub ca: PathBuf,
    /// A CA that signed nothing used here.
    pub other_ca: PathBuf,
    pub cert: PathBuf,
    pub key: PathBuf,
}

fn ca(name: &str) -> CertifiedIssuer<'static, KeyPair> {
    let mut p = CertificateParams::new(Vec::<String>::new()).expect("CA params");
    p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    p.distinguished_name.push(DnType::CommonName, name);
    p.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    CertifiedIssuer::self_signed(p, KeyPair::generate().expect("CA key")).expect("CA")
}

/// Writes the files into `dir` (made if missing).
pub fn make(dir: &Path) -> Pki {
    std::fs::create_dir_all(dir).expect("pki dir");
    let issuer = ca("hark test CA");
    let other = ca("hark other CA");
    let key = KeyPair::generate().expect("server key");
    let mut p = CertificateParams::new(vec!["localhost".to_string(), "127.0.0.1".to_string()])
        .expect("server params");
    p.distinguished_name
        .push(DnType::CommonName, "hark test server");
    let cert = p.signed_by(&key, &issuer).expect("server certificate");
    let pki = Pki {
        ca: dir.join("ca.pem"),
        other_ca: dir.join("other-ca.pem"),
        cert: dir.join("server.pem"),
        key: dir.join("server.key"),
    };
    std::fs::write(&pki.ca, issuer.pem()).unwrap();
    std::fs::write(&pki.other_ca, other.pem()).unwrap();
    std::fs::write(&pki.cert, cert.pem()).unwrap();
    std::fs::write(&pki.key, key.serialize_pem()).unwrap();
    pki
}

/// A client certificate signed by the CA of `dir` (`make` first): its PEM and key files.
pub fn client(dir: &Path, name: &str) -> (PathBuf, PathBuf) {
    let issuer = ca("hark client CA");
    let key = KeyPair::generate().expect("client key");
    let mut p = CertificateParams::new(Vec::<String>::new()).expect("client params");
    p.distinguished_name.push(DnType::CommonName, name);
    let cert = p.signed_by(&key, &issuer).expect("client certificate");
    let (ca, c, k) = (
        dir.join("client-ca.pem"),
        dir.join(format!("{name}.pem")),
        dir.join(format!("{name}.key")),
    );
    std::fs::write(&ca, issuer.pem()).unwrap();
    std::fs::write(&c, cert.pem()).unwrap();
    std::fs::write(&k, key.serialize_pem()).unwrap();
    (c, k)
}

/// A server certificate for localhost signed by a new CA, named `name`, valid from
/// `days_from` to `days_to` days from now (negative: in the past): its CA, cert and key.
pub fn server(dir: &Path, name: &str, days_from: i64, days_to: i64) -> Pki {
    std::fs::create_dir_all(dir).expect("pki dir");
    let issuer = ca(&format!("{name} CA"));
    let key = KeyPair::generate().expect("server key");
    let mut p = CertificateParams::new(vec!["localhost".to_string(), "127.0.0.1".to_string()])
        .expect("server params");
    p.distinguished_name.push(DnType::CommonName, name);
    let now = time::OffsetDateTime::now_utc();
    p.not_before = now + time::Duration::days(days_from);
    p.not_after = now + time::Duration::days(days_to);
    let cert = p.signed_by(&key, &issuer).expect("server certificate");
    let pki = Pki {
        ca: dir.join(format!("{name}-ca.pem")),
        other_ca: dir.join(format!("{name}-ca.pem")),
        cert: dir.join(format!("{name}.pem")),
        key: dir.join(format!("{name}.key")),
    };
    std::fs::write(&pki.ca, issuer.pem()).unwrap();
    std::fs::write(&pki.cert, cert.pem()).unwrap();
    std::fs::write(&pki.key, key.serialize_pem()).unwrap();
    pki
}
