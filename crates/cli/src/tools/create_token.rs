//! `tokenwarden create token`: `kubectl create token` with the same flags, checks and
//! messages; and `tokenwarden sign-token`, which signs a token offline with the authority's
//! own key as if at another time (expired tokens for demos and tests, without waiting).

use std::path::PathBuf;

use serde_json::{Value, json};
use tokenwarden_core::Timestamp;
use tokenwarden_core::lookup::{ObjectMeta, StaticLookup};
use tokenwarden_core::token_request::{IssuerConfig, TokenRequestInput, TokenRequestSpec};
use tokenwarden_store::keystore::KeyStore;
use tokenwarden_store::clock::random_bytes;
use tokenwarden_store::{Clock as _, SystemClock};

use crate::Failure;
use crate::client::{ClientArgs, segment};
use crate::duration;

#[derive(Debug, clap::Args)]
pub struct CreateTokenArgs {
    /// The ServiceAccount to mint a token for.
    pub service_account: String,
    /// Namespace of the ServiceAccount (default: the kubeconfig context's, else `default`).
    #[arg(short, long)]
    pub namespace: Option<String>,
    /// Audience of the token (repeatable); default: the API server's audiences.
    #[arg(long)]
    pub audience: Vec<String>,
    /// Requested lifetime (`10m`, `1h`); 0 or unset: the server's default.
    #[arg(long, default_value = "0", allow_hyphen_values = true)]
    pub duration: String,
    /// Kind of an object to bind the token to: Pod, Secret or Node.
    #[arg(long)]
    pub bound_object_kind: Option<String>,
    /// Name of the object to bind the token to; the token stops working when it is deleted.
    #[arg(long)]
    pub bound_object_name: Option<String>,
    /// UID of the object to bind the token to (default: the existing object's).
    #[arg(long)]
    pub bound_object_uid: Option<String>,
    #[command(flatten)]
    pub client: ClientArgs,
}

impl CreateTokenArgs {
    /// The TokenRequest body kubectl sends for these flags, after kubectl's own checks.
    pub fn request_body(&self) -> Result<Value, Failure> {
        let usage = |m: &str| Failure::Usage(m.to_owned());
        let kind = self.bound_object_kind.as_deref().filter(|k| !k.is_empty());
        let name = self.bound_object_name.as_deref().filter(|n| !n.is_empty());
        let uid = self.bound_object_uid.as_deref().filter(|u| !u.is_empty());
        if kind.is_none() && name.is_some() {
            return Err(usage("--bound-object-name can only be set if --bound-object-kind is provided"));
        }
        if kind.is_none() && uid.is_some() {
            return Err(usage("--bound-object-uid can only be set if --bound-object-kind is provided"));
        }
        if kind.is_some() && name.is_none() {
            return Err(usage("--bound-object-name is required if --bound-object-kind is provided"));
        }
        if kind.is_some_and(|k| !matches!(k, "Pod" | "Secret" | "Node")) {
            return Err(usage("supported --bound-object-kind values are Node, Pod, Secret"));
        }
        if self.audience.iter().any(String::is_empty) {
            return Err(usage("--audience must not be an empty string"));
        }
        let nanos = duration::parse_nanos(&self.duration).map_err(|e| Failure::Usage(format!("invalid argument {:?} for \"--duration\" flag: {e}", self.duration)))?;
        if nanos < 0 {
            return Err(usage("--duration must be greater than or equal to 0"));
        }
        if nanos % 1_000_000_000 != 0 {
            return Err(usage("--duration cannot be expressed in units less than seconds"));
        }
        let seconds = i64::try_from(nanos / 1_000_000_000).map_err(|_| usage("--duration is too long"))?;
        let bound = kind.map(|kind| {
            let mut reference = json!({"kind": kind, "apiVersion": "v1", "name": name.unwrap_or_default()});
            if let Some(uid) = uid {
                reference["uid"] = json!(uid);
            }
            reference
        });
        Ok(json!({
            "kind": "TokenRequest",
            "apiVersion": "authentication.k8s.io/v1",
            "metadata": {"creationTimestamp": null},
            "spec": {
                "audiences": if self.audience.is_empty() { Value::Null } else { json!(self.audience) },
                "expirationSeconds": if seconds == 0 { Value::Null } else { json!(seconds) },
                "boundObjectRef": bound.unwrap_or(Value::Null),
            },
            "status": {"token": "", "expirationTimestamp": null}
        }))
    }
}

pub async fn run(args: CreateTokenArgs) -> Result<(), Failure> {
    let body = args.request_body()?;
    let api = args.client.api()?;
    let namespace = api.namespace(args.namespace.as_deref());
    let path = format!("/api/v1/namespaces/{}/serviceaccounts/{}/token", segment("namespace", &namespace)?, segment("serviceaccount", &args.service_account)?);
    let failed = |e: String| Failure::Runtime(format!("failed to create token: {e}"));
    let answer = api.post(&path, &body).await.map_err(|e| failed(e.to_string()))?;
    let token = answer.pointer("/status/token").and_then(Value::as_str).filter(|t| !t.is_empty());
    let token = token.ok_or_else(|| failed("no token in server response".into()))?;
    println!("{token}");
    Ok(())
}

#[derive(Debug, clap::Args)]
pub struct SignTokenArgs {
    /// The ServiceAccount the token is for (its uid is read from the API server).
    pub service_account: String,
    /// Namespace of the ServiceAccount (default: the kubeconfig context's, else `default`).
    #[arg(short, long)]
    pub namespace: Option<String>,
    /// Audience of the token (repeatable); default: the issuer.
    #[arg(long)]
    pub audience: Vec<String>,
    /// Lifetime, at least 10m, as for TokenRequest.
    #[arg(long, default_value = "1h")]
    pub duration: String,
    /// When the token was issued: RFC 3339 (`2026-01-01T00:00:00Z`) or a negative offset from
    /// now (`-1h`: a 10-minute token issued an hour ago is expired).
    #[arg(long, allow_hyphen_values = true)]
    pub issued_at: String,
    /// The authority's data directory, whose signing key signs the token.
    #[arg(long, default_value = "tokenwarden-data")]
    pub data_dir: PathBuf,
    #[command(flatten)]
    pub client: ClientArgs,
}

/// `--issued-at`: an RFC 3339 time or an offset from `now`.
fn parse_issued_at(text: &str, now: Timestamp) -> Result<Timestamp, Failure> {
    if let Some(at) = Timestamp::parse_rfc3339(text) {
        return Ok(at);
    }
    let nanos = duration::parse_nanos(text).map_err(|_| Failure::Usage(format!("invalid --issued-at {text:?}: expected an RFC 3339 time or an offset such as -1h")))?;
    let seconds = i64::try_from(nanos / 1_000_000_000).map_err(|_| Failure::Usage(format!("--issued-at {text:?} is too far away")))?;
    Ok(now.plus(seconds))
}

pub async fn sign(args: SignTokenArgs) -> Result<(), Failure> {
    let clock = SystemClock;
    let issued_at = parse_issued_at(&args.issued_at, clock.now())?;
    let seconds = duration::parse_nanos(&args.duration).map_err(|e| Failure::Usage(format!("--duration: {e}")))? / 1_000_000_000;
    let keys_dir = args.data_dir.join("keys");
    if !keys_dir.is_dir() {
        return Err(Failure::Usage(format!("{} has no signing keys: is --data-dir the directory `tokenwarden serve` uses?", args.data_dir.display())));
    }
    let keys = KeyStore::open(&keys_dir)
        .and_then(|store| store.load(clock.now()))
        .map_err(|e| Failure::Runtime(e.to_string()))?
        .ok_or_else(|| Failure::Usage(format!("{} has no signing keys", keys_dir.display())))?;

    let api = args.client.api()?;
    let namespace = api.namespace(args.namespace.as_deref());
    let sa_path = format!("/api/v1/namespaces/{}/serviceaccounts/{}", segment("namespace", &namespace)?, segment("serviceaccount", &args.service_account)?);
    let sa = api.get(&sa_path).await.map_err(|e| Failure::Runtime(e.to_string()))?;
    let uid = sa.pointer("/metadata/uid").and_then(Value::as_str).unwrap_or_default();
    let discovery = api.get("/.well-known/openid-configuration").await.map_err(|e| Failure::Runtime(format!("reading the issuer: {e}")))?;
    let issuer = discovery.get("issuer").and_then(Value::as_str).ok_or_else(|| Failure::Runtime("the server names no issuer".into()))?;

    let mut lookup = StaticLookup::default();
    lookup.service_accounts.insert(format!("{namespace}/{}", args.service_account), ObjectMeta { uid: uid.into(), deletion_timestamp: None });
    let input = TokenRequestInput {
        namespace: namespace.clone(),
        service_account: args.service_account.clone(),
        spec: TokenRequestSpec { audiences: args.audience.clone(), expiration_seconds: Some(i64::try_from(seconds).unwrap_or(i64::MAX)), bound_object_ref: None },
        ..TokenRequestInput::default()
    };
    let issued = tokenwarden_core::token_request::issue(input, &IssuerConfig::new(issuer), &keys, &lookup, issued_at, random_bytes())
        .map_err(|e| Failure::Usage(e.to_string()))?;
    println!("{}", issued.token);
    Ok(())
}

#[cfg(test)]
mod tests {
    use clap::Parser as _;

    use super::*;

    #[derive(Debug, clap::Parser)]
    struct Cli {
        #[command(flatten)]
        args: CreateTokenArgs,
    }

    fn body(args: &[&str]) -> Result<Value, String> {
        let cli = Cli::try_parse_from(std::iter::once("create-token").chain(args.iter().copied())).map_err(|e| e.to_string())?;
        cli.args.request_body().map_err(|e| match e {
            Failure::Usage(m) | Failure::Runtime(m) => m,
            Failure::Silent(code) => code.to_string(),
        })
    }

    #[test]
    fn the_body_kubectl_sends() {
        let sent = body(&["bot", "--audience", "a", "--audience", "b", "--duration", "10m", "--bound-object-kind", "Pod", "--bound-object-name", "p"]).unwrap();
        assert_eq!(sent["spec"]["audiences"], json!(["a", "b"]));
        assert_eq!(sent["spec"]["expirationSeconds"], json!(600));
        assert_eq!(sent["spec"]["boundObjectRef"], json!({"kind": "Pod", "apiVersion": "v1", "name": "p"}));
        let plain = body(&["bot"]).unwrap();
        assert_eq!(plain["spec"], json!({"audiences": null, "expirationSeconds": null, "boundObjectRef": null}));
        let with_uid = body(&["bot", "--bound-object-kind", "Secret", "--bound-object-name", "s", "--bound-object-uid", "u-1"]).unwrap();
        assert_eq!(with_uid["spec"]["boundObjectRef"]["uid"], json!("u-1"));
    }

    #[test]
    fn kubectls_checks_and_messages() {
        let cases: [(&[&str], &str); 7] = [
            (&["bot", "--bound-object-name", "x"], "--bound-object-name can only be set if --bound-object-kind is provided"),
            (&["bot", "--bound-object-uid", "x"], "--bound-object-uid can only be set if --bound-object-kind is provided"),
            (&["bot", "--bound-object-kind", "Pod"], "--bound-object-name is required if --bound-object-kind is provided"),
            (&["bot", "--bound-object-kind", "Foo", "--bound-object-name", "x"], "supported --bound-object-kind values are Node, Pod, Secret"),
            (&["bot", "--duration", "1.5s"], "--duration cannot be expressed in units less than seconds"),
            (&["bot", "--duration", "-1s"], "--duration must be greater than or equal to 0"),
            (&["bot", "--audience", ""], "--audience must not be an empty string"),
        ];
        for (args, message) in cases {
            assert_eq!(body(args).unwrap_err(), message, "{args:?}");
        }
    }

    #[test]
    fn issued_at_is_a_time_or_an_offset() {
        let now = Timestamp::from_unix(1_800_000_000);
        assert_eq!(parse_issued_at("-1h", now).ok(), Some(now.plus(-3600)));
        assert_eq!(parse_issued_at("2026-01-01T00:00:00Z", now).ok(), Timestamp::parse_rfc3339("2026-01-01T00:00:00Z"));
        assert!(parse_issued_at("yesterday", now).is_err());
    }
}
