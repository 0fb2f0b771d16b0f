//! `serve --store etcd`: the flags that put several replicas on one etcd cluster, checked
//! before anything connects or binds (exit 64 on a bad one), and the first connection, which
//! waits for etcd to listen.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tokenwarden_store::etcd::{DEFAULT_PREFIX, EtcdOptions, EtcdStore, EtcdTls};
use tokenwarden_store::{Clock, StoreError};
use tokenwarden_store::etcd_keys::KeyEncryptionKey;

use crate::Failure;

/// The environment variable that may hold the key encryption key (base64).
pub const KEK_ENV: &str = "TOKENWARDEN_KEY_ENCRYPTION_KEY";

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum StoreKind {
    /// One SQLite file in the data directory (one replica).
    Sqlite,
    /// An etcd cluster shared by every replica.
    Etcd,
}

#[derive(Debug, clap::Args)]
pub struct StoreArgs {
    /// Where objects and signing keys live: `sqlite` (the data directory) or `etcd`
    /// (shared by every replica; needs --etcd-endpoints, --issuer and a key encryption key).
    #[arg(long, value_enum, default_value = "sqlite")]
    pub store: StoreKind,
    /// etcd client URLs, comma-separated or repeated (http://HOST:PORT, or https:// with --etcd-ca).
    #[arg(long, value_delimiter = ',')]
    pub etcd_endpoints: Vec<String>,
    /// Key prefix of everything tokenwarden keeps in etcd.
    #[arg(long, default_value = DEFAULT_PREFIX)]
    pub etcd_prefix: String,
    /// CA certificate (PEM) that signed etcd's serving certificates.
    #[arg(long)]
    pub etcd_ca: Option<PathBuf>,
    /// Client certificate (PEM) for etcd, with --etcd-key.
    #[arg(long, requires = "etcd_key")]
    pub etcd_cert: Option<PathBuf>,
    /// Client private key (PEM) for etcd, with --etcd-cert.
    #[arg(long, requires = "etcd_cert")]
    pub etcd_key: Option<PathBuf>,
    /// File holding the base64 32-byte key that seals the signing keys in etcd
    /// (`openssl rand -base64 32`); every replica needs the same one. Alternatively set
    /// TOKENWARDEN_KEY_ENCRYPTION_KEY.
    #[arg(long)]
    pub etcd_key_encryption_key_file: Option<PathBuf>,
    /// Rotate the shared signing key after it has signed this long, e.g. 24h (off unless
    /// given). One replica, the leader, rotates; a new key signs only once every replica
    /// knows it, and the old one verifies until its last token expires.
    #[arg(long, value_parser = crate::duration::parse_positive)]
    pub signing_key_rotation_period: Option<std::time::Duration>,
}

/// A checked `--store etcd` configuration.
pub struct EtcdPlan {
    pub options: EtcdOptions,
    pub kek: KeyEncryptionKey,
    /// Seconds between rotations of the signing key, if it rotates.
    pub rotation_period: Option<i64>,
}

fn usage(message: impl Into<String>) -> Failure {
    Failure::Usage(message.into())
}

fn read(flag: &str, path: &PathBuf) -> Result<Vec<u8>, Failure> {
    std::fs::read(path).map_err(|e| usage(format!("{flag} {}: {e}", path.display())))
}

impl StoreArgs {
    /// `None` for SQLite; the etcd settings otherwise. Reads the TLS files and the key
    /// encryption key, so a missing file fails here.
    pub fn plan(&self, issuer_given: bool) -> Result<Option<EtcdPlan>, Failure> {
        let etcd_flag_given = !self.etcd_endpoints.is_empty()
            || self.etcd_ca.is_some()
            || self.etcd_cert.is_some()
            || self.etcd_key_encryption_key_file.is_some()
            || self.etcd_prefix != DEFAULT_PREFIX;
        if self.store == StoreKind::Sqlite {
            if etcd_flag_given {
                return Err(usage("--etcd-* flags need --store etcd"));
            }
            if self.signing_key_rotation_period.is_some() {
                return Err(usage("--signing-key-rotation-period needs --store etcd"));
            }
            return Ok(None);
        }
        if self.etcd_endpoints.is_empty() {
            return Err(usage("--store etcd needs --etcd-endpoints URL[,URL...]"));
        }
        let rotation_period = match self.signing_key_rotation_period {
            Some(period) if period.as_secs() == 0 => return Err(usage("--signing-key-rotation-period must be at least 1s")),
            Some(period) => Some(i64::try_from(period.as_secs()).unwrap_or(i64::MAX)),
            None => None,
        };
        for endpoint in &self.etcd_endpoints {
            let tls = endpoint.starts_with("https://");
            if !(tls || endpoint.starts_with("http://")) || endpoint.len() <= "https://".len() {
                return Err(usage(format!("invalid --etcd-endpoints entry {endpoint:?}: expected http://HOST:PORT or https://HOST:PORT")));
            }
            if tls && self.etcd_ca.is_none() {
                return Err(usage(format!("--etcd-endpoints {endpoint}: https needs --etcd-ca")));
            }
        }
        let prefix = self.etcd_prefix.trim_end_matches('/');
        if !prefix.starts_with('/') || prefix.len() < 2 || prefix.contains(char::is_whitespace) {
            return Err(usage(format!("invalid --etcd-prefix {:?}: expected an absolute key prefix like /tokenwarden", self.etcd_prefix)));
        }
        if !issuer_given {
            return Err(usage("--store etcd needs --issuer: the URL clients reach the replicas by, the same on every replica"));
        }
        let kek_text = match (&self.etcd_key_encryption_key_file, std::env::var(KEK_ENV)) {
            (Some(path), _) => String::from_utf8(read("--etcd-key-encryption-key-file", path)?)
                .map_err(|_| usage(format!("--etcd-key-encryption-key-file {}: not text (expected base64)", path.display())))?,
            (None, Ok(text)) => text,
            (None, Err(_)) => {
                return Err(usage(format!(
                    "--store etcd needs a key encryption key: --etcd-key-encryption-key-file FILE or {KEK_ENV} (make one with `openssl rand -base64 32`)"
                )));
            }
        };
        let kek = KeyEncryptionKey::from_base64(&kek_text).map_err(|e| usage(e.to_string()))?;
        let tls = match &self.etcd_ca {
            Some(ca) => Some(EtcdTls {
                ca_pem: read("--etcd-ca", ca)?,
                cert_pem: self.etcd_cert.as_ref().map(|p| read("--etcd-cert", p)).transpose()?,
                key_pem: self.etcd_key.as_ref().map(|p| read("--etcd-key", p)).transpose()?,
            }),
            None if self.etcd_cert.is_some() => return Err(usage("--etcd-cert needs --etcd-ca")),
            None => None,
        };
        let mut options = EtcdOptions::new(self.etcd_endpoints.clone());
        options.prefix = prefix.to_owned();
        options.tls = tls;
        Ok(Some(EtcdPlan { options, kek, rotation_period }))
    }
}

/// How long a replica started before etcd listens waits for it, as kube-apiserver waits for
/// its storage, instead of exiting because it came up first.
const ETCD_STARTUP_WAIT: Duration = Duration::from_secs(60);

/// Connects to etcd once one endpoint accepts TCP connections (waiting up to
/// [`ETCD_STARTUP_WAIT`]). Only the wait for a listener is retried: a TLS or authentication
/// failure is a configuration error and fails at once.
pub async fn connect_etcd(options: &EtcdOptions, clock: Arc<dyn Clock>) -> Result<EtcdStore, StoreError> {
    // `scheme://host:port[/...]` (checked by the flag parser) → `host:port`.
    let addresses: Vec<&str> =
        options.endpoints.iter().filter_map(|url| url.split_once("://")).filter_map(|(_, rest)| rest.split('/').next()).collect();
    let deadline = tokio::time::Instant::now() + ETCD_STARTUP_WAIT;
    let mut delay = Duration::from_millis(100);
    loop {
        let mut listening = false;
        for address in &addresses {
            if let Ok(Ok(_)) = tokio::time::timeout(Duration::from_secs(1), tokio::net::TcpStream::connect(address)).await {
                listening = true;
                break;
            }
        }
        if listening || tokio::time::Instant::now() + delay >= deadline {
            break;
        }
        tracing::warn!(endpoints = %options.endpoints.join(","), "waiting for etcd to listen");
        tokio::time::sleep(delay).await;
        delay = (delay * 2).min(Duration::from_secs(2));
    }
    EtcdStore::connect(options.clone(), clock).await
}
