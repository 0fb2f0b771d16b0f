//! `tokenwarden serve`: the authority and its Kubernetes API on an embedded store, or on
//! etcd shared with other replicas (`--store etcd`).
//!
//! Order matters: flags are validated and the data directory is opened (store, keys, CA,
//! admin credential) before any port is bound, so a bad start fails with one line and exit
//! code 64 and nothing listening.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use tokenwarden_apiserver::audit::AuditLog;
use tokenwarden_apiserver::{AdminCredential, ApiState};
use tokenwarden_core::keys::Algorithm;
use tokenwarden_core::token_request::IssuerConfig;
use tokenwarden_store::etcd::EtcdStore;
use tokenwarden_store::sqlite::SqliteStore;
use tokenwarden_store::cluster::{ClusterOptions, Replica};
use tokenwarden_store::etcd_keys::SharedKeys;
use tokenwarden_store::{legacy_cleaner, namespaces};
use tokenwarden_store::{Authority, Clock as _, KeyStore, Store, SystemClock};

use tokenwarden_authz::identity::Identities;
use tokenwarden_authz::{Authorizer, source};

use crate::expose::RateArgs;
use crate::cluster::StoreArgs;
use crate::listeners::{self, AuthzArgs};
use crate::{Failure, admin, pki};

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum SigningAlgorithm {
    #[value(name = "RS256")]
    Rs256,
    #[value(name = "ES256")]
    Es256,
}

#[derive(Debug, clap::Args)]
pub struct ServeArgs {
    /// Where the store, signing keys, CA and admin.kubeconfig live.
    #[arg(long, default_value = "./tokenwarden-data", env = "TOKENWARDEN_DATA_DIR")]
    pub data_dir: PathBuf,
    /// Address of the Kubernetes API (HTTPS unless --insecure-http).
    #[arg(long, default_value = "127.0.0.1:6443")]
    pub api_listen: String,
    /// Token issuer (`iss`); default: the API's own URL.
    #[arg(long)]
    pub issuer: Option<String>,
    /// The `jwks_uri` OIDC discovery names (kube-apiserver's `--service-account-jwks-uri`);
    /// default: the API's own URL, which is loopback when listening on all addresses.
    #[arg(long, value_name = "URL")]
    pub jwks_uri: Option<String>,
    /// Audiences the API accepts and TokenRequest defaults to (comma-separated or repeated); default: the issuer.
    #[arg(long, value_delimiter = ',')]
    pub api_audiences: Vec<String>,
    /// Longest token lifetime granted, e.g. 24h (between 1h and 2^32 s); longer requests are shortened.
    #[arg(long, value_parser = crate::duration::parse_seconds)]
    pub max_token_expiration: Option<i64>,
    /// Extra name or IP for the serving certificate (repeatable).
    #[arg(long = "tls-san")]
    pub tls_sans: Vec<String>,
    /// Serve plain HTTP (development only: tokens cross the network in clear text).
    #[arg(long)]
    pub insecure_http: bool,
    /// Algorithm of the signing key made on first start.
    #[arg(long, value_enum, default_value = "RS256")]
    pub signing_algorithm: SigningAlgorithm,
    #[command(flatten)]
    pub authz: AuthzArgs,
    #[command(flatten)]
    pub store: StoreArgs,
    /// Import this PEM private key (PKCS#8, PKCS#1 or SEC1) as the signing key, e.g. a
    /// cluster's service-account key; the previous key keeps verifying its tokens.
    #[arg(long)]
    pub signing_key_file: Option<PathBuf>,
    /// A second listener (TLS with the API's certificate, unless --insecure-http) that serves
    /// only TokenRequest (`POST PREFIX/api/v1/namespaces/NS/serviceaccounts/NAME/token`) to
    /// external clients; RBAC decides with the caller's own credential (off unless given).
    #[arg(long)]
    pub public_listen: Option<String>,
    /// The path prefix of --public-listen (`/` for none).
    #[arg(long, default_value = "/kubernetes")]
    pub public_prefix: String,
    #[command(flatten)]
    pub public_rate: RateArgs,
    /// Record every TokenRequest and TokenReview as a JSON line in this file (mode 0600,
    /// appended), or on stdout with `-`. Tokens are never recorded.
    #[arg(long)]
    pub audit_log: Option<PathBuf>,
    /// Mark a token Secret its ServiceAccount lists invalid once its token has gone unused this
    /// long, and delete it after as long again, as kube-controller-manager's
    /// --legacy-service-account-token-clean-up-period (0 disables it). On etcd, the leader does it.
    #[arg(long, value_parser = crate::duration::parse_seconds, default_value = "8760h")]
    pub legacy_token_clean_up_period: i64,
}

/// What a replica on etcd got from it before starting.
struct Cluster {
    store: Arc<EtcdStore>,
    shared: SharedKeys,
    rotation_period: Option<i64>,
    tls: Option<pki::Pki>,
    admin_token: String,
}

fn usage(message: impl Into<String>) -> Failure {
    Failure::Usage(message.into())
}

pub async fn run(args: ServeArgs) -> Result<(), Failure> {
    // --- Validate flags (exit 64) ---
    let addr: SocketAddr = args
        .api_listen
        .parse()
        .map_err(|_| usage(format!("invalid --api-listen {:?}: expected ADDR:PORT, e.g. 127.0.0.1:6443", args.api_listen)))?;
    let authz_listeners = args.authz.plan()?;
    let public = match &args.public_listen {
        Some(listen) => {
            let addr: SocketAddr = listen.parse().map_err(|_| usage(format!("invalid --public-listen {listen:?}: expected ADDR:PORT")))?;
            let prefix = tokenwarden_apiserver::exposure::Prefix::parse(&args.public_prefix).map_err(|e| usage(format!("--public-prefix: {e}")))?;
            Some((addr, prefix, args.public_rate.plan()?))
        }
        None => None,
    };
    if let Some(issuer) = &args.issuer
        && (issuer.is_empty() || issuer.contains(char::is_whitespace))
    {
        return Err(usage(format!("invalid --issuer {issuer:?}")));
    }
    if let Some(uri) = &args.jwks_uri
        && (!uri.starts_with("https://") || uri.len() == "https://".len() || uri.contains(char::is_whitespace))
    {
        // kube-apiserver's check, in its words
        return Err(usage(format!("service-account-jwks-uri requires https scheme, parsed as: {uri}")));
    }
    if args.api_audiences.iter().any(String::is_empty) {
        return Err(usage("--api-audiences may not contain an empty audience"));
    }
    for san in &args.tls_sans {
        // ASCII only (an IDN in its xn-- form): the certificate cannot hold anything else, and
        // finding out there would be after the data directory was made.
        if san.is_empty() || !san.is_ascii() || san.contains(|c: char| c.is_whitespace() || c == '/') {
            return Err(usage(format!("invalid --tls-san {san:?}")));
        }
    }
    let audit = match &args.audit_log {
        Some(path) => Some(AuditLog::open(path).map_err(|e| usage(format!("--audit-log {}: {e}", path.display())))?),
        None => None,
    };
    let signing_key_pem = match &args.signing_key_file {
        Some(path) => Some(std::fs::read_to_string(path).map_err(|e| usage(format!("--signing-key-file {}: {e}", path.display())))?),
        None => None,
    };

    let etcd = args.store.plan(args.issuer.is_some())?;
    let imported_key = signing_key_pem
        .as_deref()
        .map(tokenwarden_core::keys::SigningKey::from_pem)
        .transpose()
        .map_err(|e| usage(format!("--signing-key-file: {e}")))?;

    // --- Issuer settings, checked before the data directory is touched and before binding (the
    // URL's port is fixed after binding if 0): bad flags change nothing ---
    let scheme = if args.insecure_http { "http" } else { "https" };
    let api_url = |bound: SocketAddr| {
        let host = if bound.ip().is_unspecified() { "127.0.0.1".to_owned() } else { bound.ip().to_string() };
        let host = if host.contains(':') { format!("[{host}]") } else { host };
        format!("{scheme}://{host}:{}", bound.port())
    };
    let issuer_config = |url: &str| {
        let mut config = IssuerConfig::new(args.issuer.clone().unwrap_or_else(|| url.to_owned()));
        if !args.api_audiences.is_empty() {
            config.api_audiences = args.api_audiences.clone();
        }
        config.max_expiration_seconds = args.max_token_expiration;
        config
    };
    issuer_config(&api_url(addr)).validate().map_err(usage)?;

    // A specific listen address is in the serving certificate too, as kube-apiserver adds its
    // bind address: admin.kubeconfig and the default issuer name it.
    let sans: Vec<String> = args.tls_sans.iter().cloned().chain((!addr.ip().is_unspecified()).then(|| addr.ip().to_string())).collect();

    // --- Open the data directory (exit 64 when unusable) and the store ---
    let dir = &args.data_dir;
    let unusable = |what: &str, e: &dyn std::fmt::Display| usage(format!("data directory {}: {what}: {e}", dir.display()));
    tokenwarden_store::files::create_private_dir(dir).map_err(|e| unusable("cannot create", &e))?;
    let clock = SystemClock;
    let algorithm = match args.signing_algorithm {
        SigningAlgorithm::Rs256 => Algorithm::Rs256,
        SigningAlgorithm::Es256 => Algorithm::Es256,
    };
    let (store, keystore, mut keys, cluster): (Arc<dyn Store>, _, _, _) = match etcd {
        None => {
            let store = SqliteStore::open(&dir.join("store.db"), Arc::new(clock)).map_err(|e| unusable("store", &e))?;
            let keystore = KeyStore::open(dir.join("keys")).map_err(|e| unusable("keys", &e))?;
            let keys = keystore.load_or_create(algorithm, clock.now()).map_err(|e| unusable("keys", &e))?;
            (Arc::new(store), Some(keystore), keys, None)
        }
        Some(plan) => {
            // Signing keys, the CA and the admin credential are shared through etcd, sealed;
            // the data directory keeps only this replica's admin.kubeconfig.
            let endpoints = plan.options.endpoints.join(",");
            let unreachable = |e: &dyn std::fmt::Display| Failure::Runtime(format!("etcd {endpoints}: {e}"));
            let store = Arc::new(crate::cluster::connect_etcd(&plan.options, Arc::new(clock)).await.map_err(|e| unreachable(&e))?);
            let shared = SharedKeys::new(&store, plan.kek);
            let keys = shared.load_or_create(algorithm, clock.now()).await.map_err(|e| unreachable(&e))?;
            if let Some(key) = &imported_key {
                shared.publish(key, clock.now()).await.map_err(|e| unreachable(&e))?;
            }
            let tls = if args.insecure_http {
                None
            } else {
                // Made before asking, so a failure cannot leave a broken CA in etcd.
                let fresh = pki::Ca::generate().map_err(|e| unusable("pki", &e))?.to_shared();
                let ca = shared.shared_secret("ca", || fresh).await;
                let ca = pki::Ca::from_shared(&ca.map_err(|e| unreachable(&e))?).map_err(|e| unreachable(&e))?;
                Some(ca.issue(&sans).map_err(|e| unusable("pki", &e))?)
            };
            let admin_token = shared.shared_secret("admin-token", || admin::new_token().into_bytes()).await.map_err(|e| unreachable(&e))?;
            let admin_token = String::from_utf8(admin_token).map_err(|_| unreachable(&"the shared admin credential is not text"))?;
            let plan = Cluster { store: Arc::clone(&store), shared, rotation_period: plan.rotation_period, tls, admin_token };
            (store as Arc<dyn Store>, None, keys, Some(plan))
        }
    };
    let (tls, admin_token) = match &cluster {
        Some(cluster) => (cluster.tls.clone(), cluster.admin_token.clone()),
        None => (
            (!args.insecure_http)
                .then(|| pki::Ca::load_or_create(&dir.join("pki")).and_then(|ca| ca.issue(&sans)))
                .transpose()
                .map_err(|e| unusable("pki", &e))?,
            admin::load_or_create_token(dir).map_err(|e| unusable("admin credential", &e))?,
        ),
    };

    // --- Bind, then settle what depends on the bound address ---
    let listener = listeners::bind(addr)?;
    let authz_listeners = authz_listeners.bind()?;
    let public = public.map(|(addr, prefix, rate)| listeners::bind(addr).map(|listener| (listener, prefix, rate))).transpose()?;
    let bound = listener.local_addr().map_err(|e| Failure::Runtime(e.to_string()))?;
    let url = api_url(bound);
    let config = issuer_config(&url);
    // On SQLite the imported key signs at once (on etcd it was published above).
    if let (Some(pem), Some(imported), Some(keystore)) = (signing_key_pem, &imported_key, &keystore)
        && imported.kid() != keys.signing().kid()
    {
        keys = keystore.import_pem(&pem, clock.now(), config.longest_token_lifetime()).map_err(|e| unusable("keys", &e))?;
    }

    let ca_pem = tls.as_ref().map(|t| t.ca_pem.clone());
    let authority = Authority::start(Arc::clone(&store), keys, config, Arc::new(clock), ca_pem.clone())
        .await
        .map_err(|e| Failure::Runtime(format!("starting the authority: {e}")))?;
    authority.bootstrap().await.map_err(|e| Failure::Runtime(format!("bootstrapping: {e}")))?;
    let replica = cluster.map(|cluster| {
        let options = ClusterOptions { rotation_period: cluster.rotation_period, algorithm };
        Replica::join(&cluster.store, cluster.shared, Arc::clone(&authority), options)
    });
    // The singleton jobs: on etcd only the leader runs them.
    let health = authority.store().health();
    let leads = move || health.as_ref().is_none_or(|h| h.is_leader());
    tokio::spawn(namespaces::sweep(Arc::clone(&authority), leads.clone()));
    if args.legacy_token_clean_up_period > 0 {
        tokio::spawn(legacy_cleaner::run(Arc::clone(&authority), args.legacy_token_clean_up_period, leads));
    }
    let kubeconfig = admin::write_kubeconfig(dir, &url, ca_pem.as_deref(), &admin_token)
        .map_err(|e| Failure::Runtime(format!("writing the admin kubeconfig: {e}")))?;

    // The authorizer, fed from the same store: AuthConfigs applied with kubectl take effect at once.
    let mut authorizer = Authorizer::new(Identities::new(Some(Arc::clone(&authority))))
        .with_access_reviewer(Arc::new(tokenwarden_authz::access::LocalAccessReviewer(Arc::clone(&authority))));
    if let Some(health) = authority.store().health() {
        authorizer = authorizer.with_store_health(health, Arc::new(clock));
    }
    let authorizer = Arc::new(authorizer);
    let _follower = source::follow_authority(Arc::clone(&authority), Arc::clone(&authorizer))
        .await
        .map_err(|e| Failure::Runtime(format!("loading AuthConfigs: {e}")))?;

    let mut state = ApiState::new(authority, AdminCredential::from_token(&admin_token), url.clone()).with_jwks_uri(args.jwks_uri.clone());
    if let Some(audit) = audit {
        state = state.with_audit(audit);
    }
    let state = Arc::new(state);
    drop(admin_token);
    let public_state = Arc::clone(&state);
    let app = tokenwarden_apiserver::router(state);
    let stop = listeners::shutdown_signal();
    let handle = axum_server::Handle::new();
    let api_handle = handle.clone();
    let api_stop = stop.clone();
    tokio::spawn(async move {
        listeners::stopped(api_stop).await;
        api_handle.graceful_shutdown(Some(std::time::Duration::from_secs(5)));
    });
    let mut roles = vec![format!("Kubernetes API on {url}")];
    if let Some(replica) = &replica {
        roles.push(format!("cluster replica {}", replica.id()));
    }
    roles.extend(authz_listeners.spawn(&authorizer, &stop).await?);
    if let Some((listener, prefix, rate)) = public {
        use tokenwarden_apiserver::exposure::{self, Exposure};
        let bound = listener.local_addr().map_err(|e| Failure::Runtime(e.to_string()))?;
        roles.push(format!("public TokenRequest endpoint on {scheme}://{bound}{}", prefix.as_str()));
        let exposure = Exposure::new(prefix, rate, tokenwarden_store::clock::random_bytes(), exposure::in_process(public_state));
        let config = match &tls {
            Some(tls) => Some(rustls_config(tls).await?),
            None => None,
        };
        listeners::spawn_server(listener, exposure::router(Arc::new(exposure)), config, stop.clone())?;
    }

    if args.insecure_http {
        tracing::warn!("serving plain HTTP (--insecure-http): tokens and the admin credential cross the network in clear text");
    }
    tracing::info!(api = %url, kubeconfig = %kubeconfig.display(), "tokenwarden serving");
    eprintln!("tokenwarden: serving {}; KUBECONFIG={}", roles.join(", "), kubeconfig.display());

    let service = app.into_make_service();
    let served = match tls {
        None => {
            let mut server = axum_server::from_tcp(listener).map_err(|e| Failure::Runtime(e.to_string()))?;
            listeners::limit(server.http_builder());
            server.handle(handle).serve(service).await
        }
        Some(tls) => {
            let config = rustls_config(&tls).await?;
            let mut server = axum_server::tls_rustls::from_tcp_rustls(listener, config).map_err(|e| Failure::Runtime(e.to_string()))?;
            listeners::limit(server.http_builder());
            server.handle(handle).serve(service).await
        }
    };
    served.map_err(|e| Failure::Runtime(format!("server: {e}")))
}

/// The serving certificate as axum-server's TLS configuration.
async fn rustls_config(tls: &pki::Pki) -> Result<axum_server::tls_rustls::RustlsConfig, Failure> {
    axum_server::tls_rustls::RustlsConfig::from_pem(tls.serving_cert_pem.clone().into_bytes(), tls.serving_key_pem.clone().into_bytes())
        .await
        .map_err(|e| Failure::Runtime(format!("TLS configuration: {e}")))
}

