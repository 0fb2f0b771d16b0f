//! How the workload tools reach an API server: a kubeconfig found as kubectl finds one
//! (`--kubeconfig`, then `$KUBECONFIG`), falling back to the admin kubeconfig that
//! `tokenwarden serve` writes in `./tokenwarden-data`; and the JSON calls they make.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::Value;
use tokenwarden_authz::kubeconfig::ClusterAccess;
use tokenwarden_authz::remote::ApiClient;

use crate::Failure;

/// Where `tokenwarden serve` writes its admin kubeconfig by default.
pub const DEFAULT_KUBECONFIG: &str = "tokenwarden-data/admin.kubeconfig";

/// How long one API call may take.
const CALL_TIMEOUT: Duration = Duration::from_secs(30);

#[derive(Debug, Clone, clap::Args)]
pub struct ClientArgs {
    /// kubeconfig to use (default: $KUBECONFIG, then ./tokenwarden-data/admin.kubeconfig).
    #[arg(long)]
    pub kubeconfig: Option<PathBuf>,
    /// The kubeconfig context to use (default: its current context).
    #[arg(long)]
    pub context: Option<String>,
    /// Authenticate with this bearer token instead of the kubeconfig's credential.
    #[arg(long)]
    pub token: Option<String>,
}

/// An API server and the namespace its configuration names.
pub struct Api {
    pub client: ApiClient,
}

impl ClientArgs {
    /// The cluster access these flags select.
    pub fn access(&self) -> Result<ClusterAccess, Failure> {
        let paths: Vec<PathBuf> = match (&self.kubeconfig, std::env::var_os("KUBECONFIG").filter(|v| !v.is_empty())) {
            (Some(path), _) => vec![path.clone()],
            (None, Some(list)) => std::env::split_paths(&list).filter(|p| !p.as_os_str().is_empty()).collect(),
            (None, None) => {
                let default = Path::new(DEFAULT_KUBECONFIG);
                if !default.exists() {
                    return Err(Failure::Usage(format!(
                        "no kubeconfig: pass --kubeconfig, set KUBECONFIG, or run where `tokenwarden serve` made {DEFAULT_KUBECONFIG}"
                    )));
                }
                vec![default.to_path_buf()]
            }
        };
        let access = ClusterAccess::from_kubeconfig_files(&paths, self.context.as_deref()).map_err(|e| Failure::Usage(e.0))?;
        Ok(match &self.token {
            Some(token) => access.with_bearer_token(token.trim()),
            None => access,
        })
    }

    pub fn api(&self) -> Result<Api, Failure> {
        let client = ApiClient::new(self.access()?).map_err(|e| Failure::Usage(e.0))?;
        Ok(Api { client })
    }
}

impl Api {
    /// The namespace to use: the flag, else the kubeconfig context's, else `default`.
    pub fn namespace(&self, flag: Option<&str>) -> String {
        flag.or(self.client.access().namespace()).unwrap_or("default").to_owned()
    }

    /// `POST path` with a JSON body; the answer's JSON, or the server's `Status` message.
    pub async fn post(&self, path: &str, body: &Value) -> Result<Value, CallError> {
        self.call(hyper::Method::POST, path, Some(body)).await
    }

    pub async fn get(&self, path: &str) -> Result<Value, CallError> {
        self.call(hyper::Method::GET, path, None).await
    }

    async fn call(&self, method: hyper::Method, path: &str, body: Option<&Value>) -> Result<Value, CallError> {
        let body = body.map(|b| serde_json::to_vec(b).unwrap_or_default());
        let (status, bytes) = self
            .client
            .fetch(method.clone(), path, body, CALL_TIMEOUT)
            .await
            .map_err(|e| CallError::Unreachable(format!("{method} \"{}{path}\": {e}", self.client.access().server())))?;
        let parsed: Option<Value> = serde_json::from_slice(&bytes).ok();
        if status.is_success() {
            return parsed.ok_or_else(|| CallError::Server { code: status.as_u16(), message: "the server's answer is not JSON".into() });
        }
        let message = parsed
            .as_ref()
            .and_then(|v| v.get("message"))
            .and_then(Value::as_str)
            .map_or_else(|| format!("the server answered {status}"), |m| m.split_whitespace().collect::<Vec<_>>().join(" "));
        Err(CallError::Server { code: status.as_u16(), message })
    }
}

/// Why an API call failed.
#[derive(Debug)]
pub enum CallError {
    /// No answer: connection refused, TLS, timeout.
    Unreachable(String),
    /// An answer that is not a success: the `Status` message.
    Server { code: u16, message: String },
}

impl std::fmt::Display for CallError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Unreachable(message) | Self::Server { message, .. } => f.write_str(message),
        }
    }
}

/// A name that goes into a URL path as one segment, as client-go requires of object names.
pub fn segment<'a>(what: &str, name: &'a str) -> Result<&'a str, Failure> {
    let bad = name.is_empty() || name == "." || name == ".." || name.contains(['/', '%', '?', '#']) || name.chars().any(char::is_control);
    if bad {
        return Err(Failure::Usage(format!("invalid {what} name {name:?}")));
    }
    Ok(name)
}

/// Reads a token from the argument, or from stdin when it is `-` or absent (one token, trimmed).
pub fn token_argument(arg: Option<&str>) -> Result<String, Failure> {
    use std::io::{IsTerminal as _, Read as _};
    let token = match arg {
        Some(token) if token != "-" => token.trim().to_owned(),
        _ => {
            let stdin = std::io::stdin();
            if arg.is_none() && stdin.is_terminal() {
                return Err(Failure::Usage("no token: pass TOKEN, or - and the token on stdin".into()));
            }
            let mut text = String::new();
            stdin.lock().take(64 * 1024).read_to_string(&mut text).map_err(|e| Failure::Usage(format!("reading the token from stdin: {e}")))?;
            text.trim().to_owned()
        }
    };
    if token.is_empty() {
        return Err(Failure::Usage("the token is empty".into()));
    }
    Ok(token)
}
