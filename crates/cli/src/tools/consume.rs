//! `tokenwarden consume`: the Authorino guide's api-consumer. Every interval it re-reads the
//! token file (so a projector's refreshes are picked up), calls the endpoint with the token as
//! a bearer credential and prints the status code; SIGINT or SIGTERM stops it. Until the
//! file exists it waits, saying so.

use std::path::PathBuf;
use std::time::Duration;

use http_body_util::Full;
use hyper::body::Bytes;
use tokenwarden_authz::kubeconfig::client_tls;
use tokenwarden_authz::remote::HttpClient;
use tokenwarden_store::{Clock as _, SystemClock};

use crate::Failure;
use crate::duration;

#[derive(Debug, clap::Args)]
pub struct ConsumeArgs {
    /// The URL to call (`http://` or `https://`).
    #[arg(long)]
    pub endpoint: String,
    /// The token file, re-read before every request.
    #[arg(long)]
    pub token_path: PathBuf,
    /// Time between requests.
    #[arg(long, default_value = "10s")]
    pub interval: String,
    /// Stop after this many requests (default: until SIGINT or SIGTERM).
    #[arg(long)]
    pub count: Option<u64>,
    /// CA bundle trusted for an `https://` endpoint (default: the system bundle).
    #[arg(long)]
    pub ca_file: Option<PathBuf>,
}

const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// How often a missing token file is looked for again.
const TOKEN_POLL: Duration = Duration::from_millis(200);

pub async fn run(args: ConsumeArgs) -> Result<(), Failure> {
    let interval = duration::parse_positive(&args.interval).map_err(|e| Failure::Usage(format!("--interval: {e}")))?;
    let uri: hyper::Uri = args.endpoint.parse().map_err(|_| Failure::Usage(format!("invalid --endpoint {:?}", args.endpoint)))?;
    if !matches!(uri.scheme_str(), Some("http" | "https")) || uri.authority().is_none() {
        return Err(Failure::Usage(format!("invalid --endpoint {:?}: expected an http:// or https:// URL", args.endpoint)));
    }
    let ca = match &args.ca_file {
        Some(path) => Some(std::fs::read(path).map_err(|e| Failure::Usage(format!("--ca-file {}: {e}", path.display())))?),
        None => None,
    };
    let tls = client_tls(ca.as_deref(), false, None).map_err(|e| Failure::Usage(e.0))?;
    let client = HttpClient::new(tls, None).map_err(|e| Failure::Usage(e.0))?;
    let mut stop = crate::listeners::shutdown_signal();
    let mut sent = 0_u64;
    loop {
        let token = tokio::select! {
            token = wait_for_token(&args.token_path) => token,
            _ = stop.changed() => return Ok(()),
        };
        println!("{} {}", SystemClock.now(), call(&client, &uri, &token).await);
        sent += 1;
        if args.count.is_some_and(|count| sent >= count) {
            return Ok(());
        }
        tokio::select! {
            () = tokio::time::sleep(interval) => {}
            _ = stop.changed() => return Ok(()),
        }
    }
}

/// The token in `path`; until there is one (a projector not started yet), says once on stderr
/// what it waits for and polls.
async fn wait_for_token(path: &std::path::Path) -> String {
    let mut said = false;
    loop {
        match std::fs::read_to_string(path) {
            Ok(text) if !text.trim().is_empty() => return text.trim().to_owned(),
            Ok(_) | Err(_) if said => {}
            Ok(_) => eprintln!("tokenwarden: waiting for a token in {} (the file is empty)", path.display()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => eprintln!("tokenwarden: waiting for a token in {} (no such file yet)", path.display()),
            Err(e) => eprintln!("tokenwarden: waiting for a token in {} ({e})", path.display()),
        }
        said = true;
        tokio::time::sleep(TOKEN_POLL).await;
    }
}

/// One request; the status code, or why there was none.
async fn call(client: &HttpClient, uri: &hyper::Uri, token: &str) -> String {
    let request = hyper::Request::get(uri.clone())
        .header(hyper::header::AUTHORIZATION, format!("Bearer {token}"))
        .header(hyper::header::USER_AGENT, concat!("tokenwarden-consume/", env!("CARGO_PKG_VERSION")))
        .body(Full::new(Bytes::new()));
    match request {
        Ok(request) => match client.fetch(request, REQUEST_TIMEOUT).await {
            Ok((status, _)) => status.as_u16().to_string(),
            Err(e) => format!("error: {e}"),
        },
        Err(e) => format!("error: {e}"),
    }
}
