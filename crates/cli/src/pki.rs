//! The API's CA and serving certificate.
//!
//! The CA (ECDSA P-256) is made once and kept: in the data directory (`pki/ca.crt`,
//! `pki/ca.key` mode 0600), or, for replicas on etcd, sealed in etcd so that every replica
//! serves under the same CA. The serving certificate is issued from it at every start for the
//! SANs of that start (localhost, 127.0.0.1, ::1 and each `--tls-san`), so changing
//! `--tls-san` needs no manual step, and its key never touches disk.

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
#[derive(Clone)]
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

/// The CA that signs the serving certificates.
pub struct Ca {
    cert_pem: String,
    key: KeyPair,
}

/// The CA as it is shared through etcd (sealed there).
#[derive(serde::Serialize, serde::Deserialize)]
struct SharedCa {
    cert: String,
    key: String,
}

impl Ca {
    pub fn generate() -> Result<Self, PkiError> {
        let key = KeyPair::generate()?;
        let cert = ca_params().self_signed(&key)?;
        Ok(Self { cert_pem: cert.pem(), key })
    }

    /// Loads the CA kept in `dir`, or makes and keeps one.
    pub fn load_or_create(dir: &Path) -> Result<Self, PkiError> {
        let io = |path: &Path| {
            let path = path.to_path_buf();
            move |source| PkiError::Io { path, source }
        };
        files::create_private_dir(dir).map_err(io(dir))?;
        let (cert_path, key_path) = (dir.join("ca.crt"), dir.join("ca.key"));
        if cert_path.exists() && key_path.exists() {
            let key_pem = std::fs::read_to_string(&key_path).map_err(io(&key_path))?;
            let key = KeyPair::from_pem(&key_pem).map_err(|e| PkiError::Invalid { path: key_path.clone(), detail: e.to_string() })?;
            return Ok(Self { cert_pem: std::fs::read_to_string(&cert_path).map_err(io(&cert_path))?, key });
        }
        let ca = Self::generate()?;
        files::write_private(&key_path, ca.key.serialize_pem().as_bytes()).map_err(io(&key_path))?;
        files::write_private(&cert_path, ca.cert_pem.as_bytes()).map_err(io(&cert_path))?;
        Ok(ca)
    }

    /// The CA as bytes to seal in etcd.
    pub fn to_shared(&self) -> Vec<u8> {
        serde_json::to_vec(&SharedCa { cert: self.cert_pem.clone(), key: self.key.serialize_pem() }).unwrap_or_default()
    }

    /// The CA read back from etcd.
    pub fn from_shared(bytes: &[u8]) -> Result<Self, PkiError> {
        let invalid = |detail: String| PkiError::Invalid { path: PathBuf::from("<etcd>"), detail };
        let shared: SharedCa = serde_json::from_slice(bytes).map_err(|e| invalid(e.to_string()))?;
        let key = KeyPair::from_pem(&shared.key).map_err(|e| invalid(e.to_string()))?;
        Ok(Self { cert_pem: shared.cert, key })
    }

    /// Issues a serving certificate for `sans` (and the loopback names).
    pub fn issue(self, sans: &[String]) -> Result<Pki, PkiError> {
        let Self { cert_pem: ca_pem, key: ca_key } = self;
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
}
