//! The data directory's CA and the API's serving certificate.
//!
//! The CA (ECDSA P-256) is made once and kept (`pki/ca.crt`, `pki/ca.key` mode 0600); the
//! serving certificate is issued from it at every start for the SANs of that start (localhost,
//! 127.0.0.1, ::1 and each `--tls-san`), so changing `--tls-san` needs no manual step, and its
//! key never touches disk.

use std::path::{Path, PathBuf};

use rcgen::{BasicConstraints, CertificateParams, DistinguishedName, DnType, IsCa, Issuer, KeyPair, KeyUsagePurpose, SanType};

use tokenwarden_store::files;

const CA_COMMON_NAME: &str = "tokenwarden-ca";

#[derive(Debug, thiserror::Error)]
pub enum PkiError {
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("{path}: {detail}")]
    Invalid { path: PathBuf, detail: String },
    #[error("certificate generation failed: {0}")]
    Generate(#[from] rcgen::Error),
}

/// PEM material for the API's TLS.
pub struct Pki {
    pub ca_pem: String,
    pub serving_cert_pem: String,
    pub serving_key_pem: String,
}

fn ca_params() -> CertificateParams {
    let mut params = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, CA_COMMON_NAME);
    params.distinguished_name = dn;
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign, KeyUsagePurpose::DigitalSignature];
    params
}

/// Loads (or creates) the CA in `dir` and issues a serving certificate for `sans`.
pub fn load_or_create(dir: &Path, sans: &[String]) -> Result<Pki, PkiError> {
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |source| PkiError::Io { path, source }
    };
    files::create_private_dir(dir).map_err(io(dir))?;
    let (cert_path, key_path) = (dir.join("ca.crt"), dir.join("ca.key"));
    let (ca_pem, ca_key) = if cert_path.exists() && key_path.exists() {
        let key_pem = std::fs::read_to_string(&key_path).map_err(io(&key_path))?;
        let key = KeyPair::from_pem(&key_pem).map_err(|e| PkiError::Invalid { path: key_path.clone(), detail: e.to_string() })?;
        (std::fs::read_to_string(&cert_path).map_err(io(&cert_path))?, key)
    } else {
        let key = KeyPair::generate()?;
        let cert = ca_params().self_signed(&key)?;
        files::write_private(&key_path, key.serialize_pem().as_bytes()).map_err(io(&key_path))?;
        files::write_private(&cert_path, cert.pem().as_bytes()).map_err(io(&cert_path))?;
        (cert.pem(), key)
    };
    // The issuer is rebuilt from the same subject and key, so certificates chain to ca.crt.
    let issuer = Issuer::new(ca_params(), ca_key);

    let mut names: Vec<String> = vec!["localhost".into(), "127.0.0.1".into(), "::1".into()];
    for san in sans {
        if !names.contains(san) {
            names.push(san.clone());
        }
    }
    let mut params = CertificateParams::new(Vec::<String>::new())?;
    params.subject_alt_names = names
        .iter()
        .map(|name| match name.parse::<std::net::IpAddr>() {
            Ok(ip) => Ok(SanType::IpAddress(ip)),
            Err(_) => Ok(SanType::DnsName(name.clone().try_into()?)),
        })
        .collect::<Result<_, rcgen::Error>>()?;
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, "tokenwarden");
    params.distinguished_name = dn;
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature, KeyUsagePurpose::KeyEncipherment];
    params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ServerAuth];
    let serving_key = KeyPair::generate()?;
    let serving = params.signed_by(&serving_key, &issuer)?;
    Ok(Pki { ca_pem, serving_cert_pem: serving.pem(), serving_key_pem: serving_key.serialize_pem() })
}
