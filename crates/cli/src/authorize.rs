//! `tokenwarden authorize`: the authorizer alone, for a real cluster. AuthConfigs come from a
//! directory of YAML files or are watched from an API server (with the API-key Secrets, and
//! each AuthConfig's status written back); ServiceAccount tokens are
//! reviewed by TokenReview and `kubernetesSubjectAccessReview` policies answered by
//! SubjectAccessReview against that API server; JWTs are verified against their issuer's JWKS. An API server or JWKS endpoint that cannot answer makes checks fail closed (503).

use std::path::PathBuf;
use std::sync::Arc;

use tokenwarden_authz::access::RemoteAccessReviewer;
use tokenwarden_authz::identity::{Identities, JwtVerifier, TokenReviewer};
use tokenwarden_authz::jwks::{JwksOptions, JwksVerifier};
use tokenwarden_authz::kubeconfig::ClusterAccess;
use tokenwarden_authz::remote::{ApiClient, RemoteApiKeys, RemoteAuthConfigs, RemoteReviewer};
use tokenwarden_authz::{Authorizer, dir};
use tokenwarden_store::SystemClock;

use crate::Failure;
use crate::listeners::{self, AuthzArgs};

#[derive(Debug, clap::Args)]
pub struct AuthorizeArgs {
    /// Read AuthConfigs from the YAML files in this directory (reloaded on change) instead of
    /// watching them on the API server.
    #[arg(long)]
    pub authconfig_dir: Option<PathBuf>,
    /// kubeconfig of the API server that reviews tokens (and serves AuthConfigs); default:
    /// $KUBECONFIG, then the in-cluster configuration, then ~/.kube/config.
    #[arg(long)]
    pub kubeconfig: Option<PathBuf>,
    /// The kubeconfig context to use (default: its current context).
    #[arg(long)]
    pub context: Option<String>,
    /// Use no API server: AuthConfigs from --authconfig-dir; `kubernetesTokenReview` identities
    /// then fail closed (503).
    #[arg(long, requires = "authconfig_dir", conflicts_with_all = ["kubeconfig", "context"])]
    pub no_api_server: bool,
    /// Only Secrets with these labels are read for `apiKey` identities, as Authorino's
    /// `--secret-label-selector` (empty: every Secret; the authorizer then needs to list them all).
    #[arg(long, default_value = "authorino.kuadrant.io/managed-by=authorino")]
    pub secret_label_selector: String,
    /// CA bundle trusted when fetching JWKS over HTTPS (default: the system bundle).
    #[arg(long)]
    pub jwks_ca_file: Option<PathBuf>,
    #[command(flatten)]
    pub authz: AuthzArgs,
}

pub async fn run(args: AuthorizeArgs) -> Result<(), Failure> {
    let usage = |message: String| Failure::Usage(message);
    let planned = args.authz.plan()?;
    let api = if args.no_api_server {
        None
    } else {
        let access = ClusterAccess::load(args.kubeconfig.as_deref(), args.context.as_deref()).map_err(|e| usage(e.0))?;
        Some(ApiClient::new(access).map_err(|e| usage(e.0))?)
    };
    let jwks_options = JwksOptions { ca_file: args.jwks_ca_file.clone(), ..JwksOptions::default() };
    let jwt: Arc<dyn JwtVerifier> = Arc::new(JwksVerifier::new(jwks_options, Arc::new(SystemClock)).map_err(|e| usage(e.0))?);
    let reviewer = api.clone().map(|api| Arc::new(RemoteReviewer::new(api)) as Arc<dyn TokenReviewer>);
    let mut authorizer = Authorizer::new(Identities::with_backends(reviewer, Some(jwt)));
    if let Some(api) = &api {
        authorizer = authorizer.with_access_reviewer(Arc::new(RemoteAccessReviewer::new(api.clone())));
    }
    let authorizer = Arc::new(authorizer);

    let bound = planned.bind()?;
    let source = match (&args.authconfig_dir, &api) {
        (Some(dir), _) => {
            dir::watch_dir_default(dir.clone(), Arc::clone(&authorizer)).map_err(|e| usage(format!("--authconfig-dir: {e}")))?;
            format!("AuthConfigs from {}", dir.display())
        }
        (None, Some(api)) => {
            RemoteAuthConfigs::start(api.clone(), Arc::clone(&authorizer)).await.map_err(Failure::Runtime)?;
            format!("AuthConfigs from {}", api.access().server())
        }
        (None, None) => return Err(usage("--no-api-server needs --authconfig-dir".into())),
    };
    // With an API server, `apiKey` identities read its Secrets, wherever AuthConfigs come from.
    let source = match api {
        Some(api) => {
            let server = api.access().server().to_owned();
            RemoteApiKeys::start(api, Arc::clone(&authorizer), Some(args.secret_label_selector.clone()).filter(|s| !s.is_empty()));
            format!("{source}; TokenReviews and API-key Secrets from {server}")
        }
        None => source,
    };
    let stop = listeners::shutdown_signal();
    let roles = bound.spawn(&authorizer, &stop).await?;
    tracing::info!(%source, "tokenwarden authorizing");
    eprintln!("tokenwarden: authorizing ({source}); serving {}", roles.join(", "));
    listeners::stopped(stop).await;
    Ok(())
}
