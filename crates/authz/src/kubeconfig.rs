//! API server access for `tokenwarden authorize`: a kubeconfig (`--kubeconfig`, `KUBECONFIG`,
//! `~/.kube/config`; the current context or a named one) or the in-cluster configuration of a
//! Pod (`KUBERNETES_SERVICE_HOST`/`PORT` and the mounted ServiceAccount token and CA).
//!
//! Supported: `server`, `certificate-authority-data` / `certificate-authority`,
//! `insecure-skip-tls-verify`, `tls-server-name`; users with `token` or `tokenFile` (re-read
//! when the file changes, as kubelet rotates projected tokens) or client certificates
//! (`client-certificate(-data)` + `client-key(-data)`). `exec` plugins, `auth-provider` and
//! basic auth are refused with a clear error. Errors are one line.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use rustls::ClientConfig;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use serde_json::Value;

/// Where a Pod's ServiceAccount credentials are mounted.
pub const IN_CLUSTER_DIR: &str = "/var/run/secrets/kubernetes.io/serviceaccount";

/// A configuration problem, as one line (`kubeconfig /path: context "x" not found`).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct ConfigError(pub String);

impl ConfigError {
    fn new(message: impl Into<String>) -> Self {
        // One line, whatever the underlying error printed.
        let message: String = message.into();
        Self(message.split_whitespace().collect::<Vec<_>>().join(" "))
    }
}

/// How requests to the API server are authenticated.
#[derive(Clone)]
enum Credential {
    None,
    Token(Arc<str>),
    File(Arc<TokenFile>),
}

/// A bearer token file, re-read when its modification time (or size) changes.
struct TokenFile {
    path: PathBuf,
    cached: Mutex<Option<(SystemTime, u64, Arc<str>)>>,
}

impl TokenFile {
    fn read(&self) -> Result<Arc<str>, ConfigError> {
        let metadata = std::fs::metadata(&self.path).map_err(|e| ConfigError::new(format!("token file {}: {e}", self.path.display())))?;
        let stamp = (metadata.modified().unwrap_or(SystemTime::UNIX_EPOCH), metadata.len());
        let mut cached = self.cached.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some((modified, len, token)) = cached.as_ref()
            && (*modified, *len) == stamp
        {
            return Ok(Arc::clone(token));
        }
        let text = std::fs::read_to_string(&self.path).map_err(|e| ConfigError::new(format!("token file {}: {e}", self.path.display())))?;
        let token: Arc<str> = Arc::from(text.trim());
        if token.is_empty() {
            return Err(ConfigError::new(format!("token file {} is empty", self.path.display())));
        }
        *cached = Some((stamp.0, stamp.1, Arc::clone(&token)));
        Ok(token)
    }
}

/// Everything needed to talk to one API server.
#[derive(Clone)]
pub struct ClusterAccess {
    server: String,
    ca_pem: Option<Vec<u8>>,
    insecure: bool,
    tls_server_name: Option<String>,
    client_identity: Option<(Vec<u8>, Vec<u8>)>,
    credential: Credential,
    namespace: Option<String>,
    source: String,
}

impl std::fmt::Debug for ClusterAccess {
    // Never prints credentials.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClusterAccess").field("server", &self.server).field("source", &self.source).finish_non_exhaustive()
    }
}

impl ClusterAccess {
    /// Access to `server` (`http://` or `https://`) with an optional bearer token: for tests and
    /// for callers that build their own configuration.
    pub fn new(server: &str, token: Option<&str>) -> Result<Self, ConfigError> {
        Ok(Self {
            server: normalize_server(server)?,
            ca_pem: None,
            insecure: false,
            tls_server_name: None,
            client_identity: None,
            credential: token.map_or(Credential::None, |t| Credential::Token(Arc::from(t))),
            namespace: None,
            source: "explicit configuration".into(),
        })
    }

    /// With a PEM CA bundle to trust for `https://` servers.
    #[must_use]
    pub fn with_ca_pem(mut self, pem: Vec<u8>) -> Self {
        self.ca_pem = Some(pem);
        self
    }

    /// The way controller-runtime finds it: `kubeconfig` if given, else `$KUBECONFIG`, else the
    /// in-cluster configuration when `KUBERNETES_SERVICE_HOST` is set, else `~/.kube/config`.
    /// `context` overrides the kubeconfig's `current-context`.
    pub fn load(kubeconfig: Option<&Path>, context: Option<&str>) -> Result<Self, ConfigError> {
        if let Some(path) = kubeconfig {
            return Self::from_kubeconfig_files(&[path.to_path_buf()], context);
        }
        if let Some(list) = std::env::var_os("KUBECONFIG").filter(|v| !v.is_empty()) {
            let paths: Vec<PathBuf> = std::env::split_paths(&list).filter(|p| !p.as_os_str().is_empty()).collect();
            return Self::from_kubeconfig_files(&paths, context);
        }
        if std::env::var_os("KUBERNETES_SERVICE_HOST").is_some() {
            return Self::in_cluster();
        }
        match std::env::var_os("HOME") {
            Some(home) => Self::from_kubeconfig_files(&[Path::new(&home).join(".kube").join("config")], context),
            None => Err(ConfigError::new("no kubeconfig: pass --kubeconfig, set KUBECONFIG, or run in a cluster")),
        }
    }

    /// From kubeconfig files, merged as kubectl merges `KUBECONFIG` (the first file that sets a
    /// value, or names a cluster, user or context, wins). Missing files in a list are skipped;
    /// a single missing file is an error.
    pub fn from_kubeconfig_files(paths: &[PathBuf], context: Option<&str>) -> Result<Self, ConfigError> {
        let mut merged = Merged::default();
        let mut read_any = false;
        for path in paths {
            let text = match std::fs::read_to_string(path) {
                Ok(text) => text,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound && paths.len() > 1 => continue,
                Err(e) => return Err(ConfigError::new(format!("kubeconfig {}: {e}", path.display()))),
            };
            read_any = true;
            let doc: Value = if text.trim().is_empty() {
                Value::Null
            } else {
                serde_saphyr::from_str(&text).map_err(|e| ConfigError::new(format!("kubeconfig {}: {}", path.display(), first_line(&e.to_string()))))?
            };
            merged.add(&doc, path.parent().unwrap_or(Path::new(".")));
        }
        if !read_any {
            let names: Vec<String> = paths.iter().map(|p| p.display().to_string()).collect();
            return Err(ConfigError::new(format!("kubeconfig: none of {} exists", names.join(", "))));
        }
        let described = paths.iter().map(|p| p.display().to_string()).collect::<Vec<_>>().join(":");
        merged.resolve(context, &described)
    }

    /// From one kubeconfig document; relative file paths resolve against `base_dir`.
    pub fn from_kubeconfig_str(yaml: &str, base_dir: &Path, context: Option<&str>) -> Result<Self, ConfigError> {
        let doc: Value = serde_saphyr::from_str(yaml).map_err(|e| ConfigError::new(format!("kubeconfig: {}", first_line(&e.to_string()))))?;
        let mut merged = Merged::default();
        merged.add(&doc, base_dir);
        merged.resolve(context, "kubeconfig")
    }

    /// The in-cluster configuration of a Pod.
    pub fn in_cluster() -> Result<Self, ConfigError> {
        let host = std::env::var("KUBERNETES_SERVICE_HOST").unwrap_or_default();
        let port = std::env::var("KUBERNETES_SERVICE_PORT").unwrap_or_default();
        Self::in_cluster_from(&host, &port, Path::new(IN_CLUSTER_DIR))
    }

    /// The in-cluster configuration from explicit values (`dir` holds `token`, `ca.crt` and
    /// optionally `namespace`). The token is re-read whenever the file changes.
    pub fn in_cluster_from(host: &str, port: &str, dir: &Path) -> Result<Self, ConfigError> {
        if host.is_empty() || port.is_empty() {
            return Err(ConfigError::new("not running in a cluster: KUBERNETES_SERVICE_HOST and KUBERNETES_SERVICE_PORT must be set"));
        }
        let host = if host.contains(':') && !host.starts_with('[') { format!("[{host}]") } else { host.to_owned() };
        let token = Arc::new(TokenFile { path: dir.join("token"), cached: Mutex::new(None) });
        token.read()?;
        let ca_path = dir.join("ca.crt");
        let ca = std::fs::read(&ca_path).map_err(|e| ConfigError::new(format!("in-cluster CA {}: {e}", ca_path.display())))?;
        let namespace = std::fs::read_to_string(dir.join("namespace")).ok().map(|n| n.trim().to_owned()).filter(|n| !n.is_empty());
        let access = Self {
            server: normalize_server(&format!("https://{host}:{port}"))?,
            ca_pem: Some(ca),
            insecure: false,
            tls_server_name: None,
            client_identity: None,
            credential: Credential::File(token),
            namespace,
            source: "in-cluster configuration".into(),
        };
        access.tls_config()?;
        Ok(access)
    }

    /// The API server's base URL, without a trailing slash (it may carry a path prefix).
    pub fn server(&self) -> &str {
        &self.server
    }

    /// The context's (or the Pod's) namespace, if any.
    pub fn namespace(&self) -> Option<&str> {
        self.namespace.as_deref()
    }

    /// Where this configuration came from, for logs (never a credential).
    pub fn source(&self) -> &str {
        &self.source
    }

    /// The bearer token to send, re-read from its file when that changed.
    pub fn bearer_token(&self) -> Result<Option<Arc<str>>, ConfigError> {
        match &self.credential {
            Credential::None => Ok(None),
            Credential::Token(token) => Ok(Some(Arc::clone(token))),
            Credential::File(file) => file.read().map(Some),
        }
    }

    /// The PEM CA bundle trusted for the server, if the configuration names one (what a
    /// projected `ca.crt` must hold).
    pub fn ca_pem(&self) -> Option<&[u8]> {
        self.ca_pem.as_deref()
    }

    /// The same server, authenticated by `token` instead (kubectl's `--token`).
    #[must_use]
    pub fn with_bearer_token(mut self, token: &str) -> Self {
        self.credential = Credential::Token(Arc::from(token));
        self.client_identity = None;
        self
    }

    /// Whether the configuration turns server certificate checks off (`insecure-skip-tls-verify`).
    pub fn insecure_skip_tls_verify(&self) -> bool {
        self.insecure
    }

    /// The `tls-server-name` override, if any.
    pub fn tls_server_name(&self) -> Option<&str> {
        self.tls_server_name.as_deref()
    }

    /// A rustls client configuration (aws-lc-rs) trusting the configured CA (or the system
    /// bundle when none is configured), with the client certificate when one is configured.
    pub fn tls_config(&self) -> Result<ClientConfig, ConfigError> {
        let identity = match &self.client_identity {
            Some((cert, key)) => Some(parse_identity(cert, key)?),
            None => None,
        };
        client_tls(self.ca_pem.as_deref(), self.insecure, identity)
    }
}

fn first_line(s: &str) -> &str {
    s.lines().next().unwrap_or_default()
}

fn normalize_server(server: &str) -> Result<String, ConfigError> {
    let server = server.trim().trim_end_matches('/');
    let rest = server.strip_prefix("https://").or_else(|| server.strip_prefix("http://"));
    match rest {
        Some(rest) if !rest.is_empty() => Ok(server.to_owned()),
        _ => Err(ConfigError::new(format!("server {server:?} is not an http:// or https:// URL"))),
    }
}

/// The kubeconfig maps merged over all files.
#[derive(Default)]
struct Merged {
    current_context: Option<String>,
    clusters: Vec<(String, Value, PathBuf)>,
    users: Vec<(String, Value, PathBuf)>,
    contexts: Vec<(String, Value)>,
}

impl Merged {
    fn add(&mut self, doc: &Value, base: &Path) {
        if self.current_context.is_none() {
            self.current_context = doc.get("current-context").and_then(Value::as_str).filter(|s| !s.is_empty()).map(str::to_owned);
        }
        let named = |list: &str| -> Vec<(String, Value)> {
            doc.get(list)
                .and_then(Value::as_array)
                .map(|items| {
                    items
                        .iter()
                        .filter_map(|item| {
                            let name = item.get("name")?.as_str()?.to_owned();
                            let field = list.trim_end_matches('s');
                            Some((name, item.get(field).cloned().unwrap_or(Value::Null)))
                        })
                        .collect()
                })
                .unwrap_or_default()
        };
        for (name, value) in named("clusters") {
            if !self.clusters.iter().any(|(n, _, _)| *n == name) {
                self.clusters.push((name, value, base.to_path_buf()));
            }
        }
        for (name, value) in named("users") {
            if !self.users.iter().any(|(n, _, _)| *n == name) {
                self.users.push((name, value, base.to_path_buf()));
            }
        }
        for (name, value) in named("contexts") {
            if !self.contexts.iter().any(|(n, _)| *n == name) {
                self.contexts.push((name, value));
            }
        }
    }

    fn resolve(self, context: Option<&str>, described: &str) -> Result<ClusterAccess, ConfigError> {
        let err = |m: String| ConfigError::new(format!("kubeconfig {described}: {m}"));
        let context_name = match context.or(self.current_context.as_deref()) {
            Some(name) => name.to_owned(),
            None => return Err(err("no current-context is set (pass a context)".into())),
        };
        let ctx = self.contexts.iter().find(|(n, _)| *n == context_name).map(|(_, v)| v).ok_or_else(|| err(format!("context {context_name:?} not found")))?;
        let cluster_name = ctx.get("cluster").and_then(Value::as_str).unwrap_or_default();
        let (_, cluster, cluster_base) = self
            .clusters
            .iter()
            .find(|(n, _, _)| n == cluster_name)
            .ok_or_else(|| err(format!("cluster {cluster_name:?} of context {context_name:?} not found")))?;
        let user_name = ctx.get("user").and_then(Value::as_str).unwrap_or_default();
        let user = match self.users.iter().find(|(n, _, _)| n == user_name) {
            Some((_, user, base)) => Some((user, base)),
            None if user_name.is_empty() => None,
            None => return Err(err(format!("user {user_name:?} of context {context_name:?} not found"))),
        };

        let string = |v: &Value, field: &str| v.get(field).and_then(Value::as_str).filter(|s| !s.is_empty()).map(str::to_owned);
        let server = string(cluster, "server").ok_or_else(|| err(format!("cluster {cluster_name:?} has no server")))?;
        let server = normalize_server(&server).map_err(|e| err(e.0))?;
        let insecure = cluster.get("insecure-skip-tls-verify").and_then(Value::as_bool).unwrap_or(false);
        let ca_pem = data_or_file(cluster, "certificate-authority-data", "certificate-authority", cluster_base).map_err(err)?;
        if insecure && ca_pem.is_some() {
            // client-go's words: a CA that is then not checked is a mistake, not a choice.
            return Err(err(format!("cluster {cluster_name:?}: specifying a root certificates file with the insecure flag is not allowed")));
        }

        let mut credential = Credential::None;
        let mut client_identity = None;
        if let Some((user, base)) = user {
            // Impersonation (`as`…) too: ignored, it would leave the base credential, often an
            // administrator's, acting in place of the user named.
            for unsupported in ["exec", "auth-provider", "username", "password", "as", "as-uid", "as-groups", "as-user-extra"] {
                if user.get(unsupported).is_some_and(|v| !v.is_null()) {
                    return Err(err(format!(
                        "user {user_name:?} uses {unsupported:?}, which tokenwarden does not support (use a token, a token file or a client certificate)"
                    )));
                }
            }
            // The file first, as client-go reads it: it is re-read when rotated; a static token
            // beside it would be used until it expires, and then every call would fail.
            if let Some(file) = string(user, "tokenFile") {
                let file = Arc::new(TokenFile { path: base.join(file), cached: Mutex::new(None) });
                file.read().map_err(|e| err(e.0))?;
                credential = Credential::File(file);
            } else if let Some(token) = string(user, "token") {
                credential = Credential::Token(Arc::from(token.trim()));
            }
            let cert = data_or_file(user, "client-certificate-data", "client-certificate", base).map_err(err)?;
            let key = data_or_file(user, "client-key-data", "client-key", base).map_err(err)?;
            client_identity = match (cert, key) {
                (Some(cert), Some(key)) => Some((cert, key)),
                (None, None) => None,
                _ => return Err(err(format!("user {user_name:?} needs both a client certificate and a client key"))),
            };
        }
        let access = ClusterAccess {
            server,
            ca_pem,
            insecure,
            tls_server_name: string(cluster, "tls-server-name"),
            client_identity,
            credential,
            namespace: string(ctx, "namespace"),
            source: format!("kubeconfig {described}, context {context_name:?}"),
        };
        // Bad CA or client certificate data is a configuration error, reported now.
        access.tls_config().map_err(|e| err(e.0))?;
        Ok(access)
    }
}

/// `<field>-data` (base64 PEM) or `<field>` (a file path, relative to the kubeconfig).
fn data_or_file(v: &Value, data_field: &str, file_field: &str, base: &Path) -> Result<Option<Vec<u8>>, String> {
    if let Some(data) = v.get(data_field).and_then(Value::as_str).filter(|s| !s.is_empty()) {
        let cleaned: String = data.chars().filter(|c| !c.is_whitespace()).collect();
        return STANDARD.decode(cleaned).map(Some).map_err(|e| format!("{data_field} is not valid base64: {e}"));
    }
    if let Some(file) = v.get(file_field).and_then(Value::as_str).filter(|s| !s.is_empty()) {
        let path = base.join(file);
        return std::fs::read(&path).map(Some).map_err(|e| format!("{file_field} {}: {e}", path.display()));
    }
    Ok(None)
}

type Identity = (Vec<CertificateDer<'static>>, PrivateKeyDer<'static>);

fn parse_identity(cert: &[u8], key: &[u8]) -> Result<Identity, ConfigError> {
    let certs = CertificateDer::pem_slice_iter(cert)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| ConfigError::new(format!("client certificate: {e}")))?;
    if certs.is_empty() {
        return Err(ConfigError::new("client certificate: no CERTIFICATE block"));
    }
    let key = PrivateKeyDer::from_pem_slice(key).map_err(|e| ConfigError::new(format!("client key: {e}")))?;
    Ok((certs, key))
}

/// The system's CA bundle (`SSL_CERT_FILE`, or the usual distribution paths), if one exists.
pub fn system_ca_bundle() -> Option<Vec<u8>> {
    let from_env = std::env::var_os("SSL_CERT_FILE").map(PathBuf::from);
    let known = [
        "/etc/ssl/certs/ca-certificates.crt",
        "/etc/pki/tls/certs/ca-bundle.crt",
        "/etc/ssl/ca-bundle.pem",
        "/etc/ssl/cert.pem",
    ];
    from_env.into_iter().chain(known.iter().map(PathBuf::from)).find_map(|path| std::fs::read(path).ok())
}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::aws_lc_rs::default_provider())
}

/// A rustls client configuration (aws-lc-rs): trusting `ca_pem` (the system bundle when None),
/// or nothing at all when `insecure`; with a client certificate when given.
pub fn client_tls(ca_pem: Option<&[u8]>, insecure: bool, identity: Option<Identity>) -> Result<ClientConfig, ConfigError> {
    let provider = provider();
    let builder = ClientConfig::builder_with_provider(Arc::clone(&provider))
        .with_safe_default_protocol_versions()
        .map_err(|e| ConfigError::new(format!("TLS: {e}")))?;
    let builder = if insecure {
        builder.dangerous().with_custom_certificate_verifier(Arc::new(NoVerification(provider)))
    } else {
        let mut roots = rustls::RootCertStore::empty();
        let bundle = match ca_pem {
            Some(pem) => Some(pem.to_vec()),
            None => system_ca_bundle(),
        };
        if let Some(bundle) = bundle {
            let mut added = 0usize;
            for cert in CertificateDer::pem_slice_iter(&bundle) {
                let cert = cert.map_err(|e| ConfigError::new(format!("CA certificates: {e}")))?;
                if roots.add(cert).is_ok() {
                    added += 1;
                }
            }
            if added == 0 && ca_pem.is_some() {
                return Err(ConfigError::new("CA certificates: no usable CERTIFICATE block"));
            }
        }
        builder.with_root_certificates(roots)
    };
    match identity {
        Some((certs, key)) => builder.with_client_auth_cert(certs, key).map_err(|e| ConfigError::new(format!("client certificate: {e}"))),
        None => Ok(builder.with_no_client_auth()),
    }
}

/// `insecure-skip-tls-verify`: any server certificate is accepted (signatures still checked).
#[derive(Debug)]
struct NoVerification(Arc<CryptoProvider>);

impl ServerCertVerifier for NoVerification {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
        let path = dir.join(name);
        std::fs::write(&path, text).unwrap();
        path
    }

    #[test]
    fn current_context_token_and_relative_token_file() {
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), "tok", "file-token-1\n");
        let config = "apiVersion: v1\nkind: Config\ncurrent-context: b\nclusters:\n- name: c1\n  cluster:\n    server: http://127.0.0.1:1234/\n- name: c2\n  cluster:\n    server: https://10.0.0.1:6443\n    insecure-skip-tls-verify: true\nusers:\n- name: u1\n  user:\n    token: abc\n- name: u2\n  user:\n    tokenFile: tok\ncontexts:\n- name: a\n  context: {cluster: c1, user: u1}\n- name: b\n  context: {cluster: c2, user: u2, namespace: ns}\n";
        let path = write(dir.path(), "config", config);
        let access = ClusterAccess::from_kubeconfig_files(std::slice::from_ref(&path), None).unwrap();
        assert_eq!(access.server(), "https://10.0.0.1:6443");
        assert_eq!(access.namespace(), Some("ns"));
        assert_eq!(access.bearer_token().unwrap().as_deref(), Some("file-token-1"));
        // Rotated: the new token is read.
        std::thread::sleep(std::time::Duration::from_millis(20));
        write(dir.path(), "tok", "file-token-2-longer\n");
        assert_eq!(access.bearer_token().unwrap().as_deref(), Some("file-token-2-longer"));

        let a = ClusterAccess::from_kubeconfig_files(&[path], Some("a")).unwrap();
        assert_eq!(a.server(), "http://127.0.0.1:1234");
        assert_eq!(a.bearer_token().unwrap().as_deref(), Some("abc"));
        assert!(format!("{a:?}").find("abc").is_none());
    }

    #[test]
    fn errors_are_one_clear_line() {
        let dir = tempfile::tempdir().unwrap();
        let missing = ClusterAccess::from_kubeconfig_files(&[dir.path().join("nope")], None).unwrap_err();
        assert!(missing.0.starts_with("kubeconfig ") && missing.0.contains("nope"), "{missing}");
        let base = "clusters:\n- name: c\n  cluster: {server: 'https://x:1'}\ncontexts:\n- name: x\n  context: {cluster: c, user: u}\nusers:\n- name: u\n  user:\n    exec: {command: aws}\n";
        let no_context = ClusterAccess::from_kubeconfig_str(base, dir.path(), None).unwrap_err();
        assert_eq!(no_context.0, "kubeconfig kubeconfig: no current-context is set (pass a context)");
        let exec = ClusterAccess::from_kubeconfig_str(base, dir.path(), Some("x")).unwrap_err();
        assert!(exec.0.contains("\"exec\"") && !exec.0.contains('\n'), "{exec}");
        let wrong = ClusterAccess::from_kubeconfig_str(base, dir.path(), Some("y")).unwrap_err();
        assert!(wrong.0.contains("context \"y\" not found"), "{wrong}");
        let bad_ca = base.replace("    exec: {command: aws}\n", "    token: t\n").replace("'https://x:1'", "'https://x:1', certificate-authority-data: '!!'");
        let bad_ca = ClusterAccess::from_kubeconfig_str(&bad_ca, dir.path(), Some("x")).unwrap_err();
        assert!(bad_ca.0.contains("certificate-authority-data is not valid base64"), "{bad_ca}");
        let syntax = ClusterAccess::from_kubeconfig_str("clusters: [", dir.path(), None).unwrap_err();
        assert!(!syntax.0.contains('\n'));

        // A CA and insecure-skip-tls-verify together: refused, as client-go does, rather than
        // silently not checking the server.
        let ca = rcgen_free_ca();
        let both = base
            .replace("    exec: {command: aws}\n", "    token: t\n")
            .replace("'https://x:1'", &format!("'https://x:1', insecure-skip-tls-verify: true, certificate-authority-data: '{}'", STANDARD.encode(&ca)));
        let both = ClusterAccess::from_kubeconfig_str(&both, dir.path(), Some("x")).unwrap_err();
        assert!(both.0.ends_with("specifying a root certificates file with the insecure flag is not allowed"), "{both}");
        // Impersonation is not supported: refused, not ignored (the base credential would act).
        for field in ["as: someone", "as-groups: [g]", "as-uid: u", "as-user-extra: {k: [v]}"] {
            let impersonating = base.replace("    exec: {command: aws}\n", &format!("    token: t\n    {field}\n"));
            let refused = ClusterAccess::from_kubeconfig_str(&impersonating, dir.path(), Some("x")).unwrap_err();
            let name = field.split(':').next().unwrap_or_default();
            assert!(refused.0.contains(&format!("uses {name:?}")), "{refused}");
        }
        // A token file beside a static token: the file, which rotates.
        write(dir.path(), "rotating", "from-file\n");
        let both_tokens = base.replace("    exec: {command: aws}\n", "    token: static\n    tokenFile: rotating\n");
        let access = ClusterAccess::from_kubeconfig_str(&both_tokens, dir.path(), Some("x")).unwrap();
        assert_eq!(access.bearer_token().unwrap().as_deref(), Some("from-file"));
    }

    #[test]
    fn in_cluster_reads_token_ca_and_namespace() {
        let dir = tempfile::tempdir().unwrap();
        let missing = ClusterAccess::in_cluster_from("", "", dir.path()).unwrap_err();
        assert!(missing.0.contains("KUBERNETES_SERVICE_HOST"));
        write(dir.path(), "token", "t1");
        let no_ca = ClusterAccess::in_cluster_from("10.96.0.1", "443", dir.path()).unwrap_err();
        assert!(no_ca.0.contains("ca.crt"), "{no_ca}");
        let cert = rcgen_free_ca();
        write(dir.path(), "ca.crt", &cert);
        write(dir.path(), "namespace", "authz\n");
        let access = ClusterAccess::in_cluster_from("fd00::1", "443", dir.path()).unwrap();
        assert_eq!(access.server(), "https://[fd00::1]:443");
        assert_eq!(access.namespace(), Some("authz"));
        assert_eq!(access.bearer_token().unwrap().as_deref(), Some("t1"));
        write(dir.path(), "token", "t2-rotated");
        assert_eq!(access.bearer_token().unwrap().as_deref(), Some("t2-rotated"));
    }

    fn rcgen_free_ca() -> String {
        let key = rcgen::KeyPair::generate().unwrap();
        rcgen::CertificateParams::new(vec!["ca".to_owned()]).unwrap().self_signed(&key).unwrap().pem()
    }
}
