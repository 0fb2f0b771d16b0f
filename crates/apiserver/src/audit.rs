//! The audit log: one JSON line for every TokenRequest and TokenReview — when, who asked,
//! for which ServiceAccount, audiences, expiration, bound object, `jti`, and the decision.
//! Never the token. Lines are written by a dedicated thread, so a slow disk or a stalled
//! stdout never holds up a request: when the bounded queue is full, the record is dropped
//! and counted, and an error is logged (as kube-apiserver's batching audit backend does).

use std::io::Write;
use std::path::Path;
use std::sync::mpsc::{Receiver, SyncSender, TrySendError, sync_channel};

use serde::Serialize;
use tokenwarden_core::Timestamp;
use tokenwarden_core::claims::{Claims, Ref};
use tokenwarden_core::review::{ObjectRef, VerifiedToken};

/// Records waiting for the writer thread.
const QUEUE: usize = 16 * 1024;

/// One audited call. Empty fields are left out of the line.
#[derive(Clone, Debug, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct AuditEvent {
    pub time: String,
    /// `TokenRequest` or `TokenReview`.
    pub kind: &'static str,
    /// Who made the call (the authenticated user name), empty when the credential was refused.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub caller: String,
    /// The user the caller acted as through impersonation, if it did.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub impersonated_user: String,
    /// `namespace/name` of the ServiceAccount the token is (or was asked) for.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub service_account: String,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub audiences: Vec<String>,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub expiration_timestamp: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bound_object: Option<BoundObject>,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub jti: String,
    /// `issued`, `authenticated`, `unauthenticated`, `forbidden`, `unauthorized`, `failed`.
    pub decision: &'static str,
    /// Why, when not granted.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub reason: String,
    /// The HTTP status of the answer, where only the answer is known (`expose` records the
    /// upstream's).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub code: Option<u16>,
}

#[derive(Clone, Debug, Default, Serialize)]
pub struct BoundObject {
    pub kind: String,
    pub name: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub uid: String,
}

impl BoundObject {
    /// The object a token's claims bind it to (Pod before Secret before Node, as the claims
    /// nest them).
    pub fn from_claims(pod: Option<&Ref>, secret: Option<&Ref>, node: Option<&Ref>) -> Option<Self> {
        let (kind, reference) = match (pod, secret, node) {
            (Some(pod), _, _) => ("Pod", pod),
            (None, Some(secret), _) => ("Secret", secret),
            (None, None, Some(node)) => ("Node", node),
            (None, None, None) => return None,
        };
        Some(Self { kind: kind.to_owned(), name: reference.name.clone(), uid: reference.uid.clone() })
    }
}

impl AuditEvent {
    pub fn new(kind: &'static str, at: Timestamp, decision: &'static str) -> Self {
        Self { time: at.to_string(), kind, decision, ..Self::default() }
    }

    /// Expiration, bound object and `jti` from a token's claims.
    #[must_use]
    pub fn with_token_claims(mut self, claims: &Claims) -> Self {
        let kubernetes = claims.kubernetes.as_ref();
        self.expiration_timestamp = claims.exp.map(|exp| Timestamp::from_unix(exp).to_string()).unwrap_or_default();
        self.bound_object = kubernetes.and_then(|k| BoundObject::from_claims(k.pod.as_ref(), k.secret.as_ref(), k.node.as_ref()));
        self.jti = claims.jti.clone().unwrap_or_default();
        self
    }

    /// [`AuditEvent::with_token_claims`] for a token the review cache holds.
    #[must_use]
    pub fn with_verified_token(mut self, token: &VerifiedToken) -> Self {
        self.expiration_timestamp = token.exp().map(|exp| Timestamp::from_unix(exp).to_string()).unwrap_or_default();
        let reference = |r: ObjectRef<'_>| Ref { name: r.name.to_owned(), uid: r.uid.to_owned() };
        let (pod, secret, node) = (token.pod().map(reference), token.secret().map(reference), token.node().map(reference));
        self.bound_object = BoundObject::from_claims(pod.as_ref(), secret.as_ref(), node.as_ref());
        self.jti = token.jti().unwrap_or_default().to_owned();
        self
    }
}

/// Where audit lines go.
pub struct AuditLog {
    queue: SyncSender<String>,
    dropped: std::sync::atomic::AtomicU64,
}

impl std::fmt::Debug for AuditLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuditLog").finish_non_exhaustive()
    }
}

impl AuditLog {
    /// Appends to `path` (created with mode 0600), or writes to stdout for `-`.
    pub fn open(path: &Path) -> std::io::Result<Self> {
        let out: Box<dyn Write + Send> = if path == Path::new("-") {
            Box::new(std::io::stdout())
        } else {
            use std::os::unix::fs::OpenOptionsExt as _;
            Box::new(std::fs::OpenOptions::new().create(true).append(true).mode(0o600).open(path)?)
        };
        Ok(Self::to_writer(out))
    }

    /// Lines to any writer (tests).
    pub fn to_writer(out: Box<dyn Write + Send>) -> Self {
        let (queue, lines) = sync_channel(QUEUE);
        if let Err(e) = std::thread::Builder::new().name("audit-log".into()).spawn(move || write_lines(&lines, out)) {
            tracing::error!(error = %e, "cannot start the audit log writer");
        }
        Self { queue, dropped: std::sync::atomic::AtomicU64::new(0) }
    }

    /// Records dropped because the writer could not keep up.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Queues one record.
    pub fn record(&self, event: &AuditEvent) {
        match serde_json::to_string(event) {
            Ok(line) => match self.queue.try_send(line) {
                Ok(()) => {}
                Err(TrySendError::Full(_)) => {
                    let dropped = self.dropped.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1;
                    tracing::error!(dropped, "audit log queue full (the log cannot be written fast enough); record dropped");
                }
                Err(TrySendError::Disconnected(_)) => tracing::error!("audit log writer stopped; record lost"),
            },
            Err(e) => tracing::error!(error = %e, "audit record not serializable"),
        }
    }
}

/// Writes queued lines, flushing whenever the queue is drained.
fn write_lines(lines: &Receiver<String>, out: Box<dyn Write + Send>) {
    let mut out = std::io::BufWriter::new(out);
    while let Ok(first) = lines.recv() {
        let mut batch = Some(first);
        while let Some(line) = batch {
            if let Err(e) = writeln!(out, "{line}") {
                tracing::error!(error = %e, "audit log write failed");
            }
            batch = lines.try_recv().ok();
        }
        if let Err(e) = out.flush() {
            tracing::error!(error = %e, "audit log flush failed");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokenwarden_core::keys::{Algorithm, KeySet};
    use tokenwarden_core::lookup::{ObjectMeta, PodInfo, StaticLookup};
    use tokenwarden_core::token_request::{self, BoundObjectReference, IssuerConfig, TokenRequestInput, TokenRequestSpec};

    #[test]
    fn a_verified_token_is_audited_as_its_claims() {
        let keys = KeySet::new(tokenwarden_store::keystore::generate(Algorithm::Es256).unwrap(), Vec::new());
        let config = IssuerConfig::new("https://issuer.test");
        let meta = |uid: &str| ObjectMeta { uid: uid.into(), deletion_timestamp: None };
        let mut lookup = StaticLookup::default();
        lookup.service_accounts.insert("ns/sa".into(), meta("sa-uid"));
        lookup.pods.insert("ns/web".into(), PodInfo { meta: meta("pod-uid"), service_account: "sa".into(), node_name: "n1".into() });
        lookup.nodes.insert("n1".into(), meta("node-uid"));
        let at = Timestamp(1_800_000_000);
        let event = || AuditEvent::new("TokenReview", at, "authenticated");
        for bound in [None, Some(("Pod", "web")), Some(("Node", "n1"))] {
            let bound_object_ref = bound.map(|(kind, name)| BoundObjectReference {
                kind: kind.into(),
                api_version: "v1".into(),
                name: name.into(),
                uid: String::new(),
            });
            let spec = TokenRequestSpec { bound_object_ref, ..TokenRequestSpec::default() };
            let input = TokenRequestInput { namespace: "ns".into(), service_account: "sa".into(), spec, ..TokenRequestInput::default() };
            let issued = token_request::issue(input, &config, &keys, &lookup, at, [1; 16]).unwrap();
            let verified = tokenwarden_core::review::verify(&issued.token, &keys, &config).unwrap();
            let (_, claims) = tokenwarden_core::jwt::decode_unverified(&issued.token).unwrap();
            let claims: Claims = serde_json::from_value(claims).unwrap();
            let audited = serde_json::to_value(event().with_verified_token(&verified)).unwrap();
            assert_eq!(audited, serde_json::to_value(event().with_token_claims(&claims)).unwrap());
            assert_eq!(audited.get("boundObject").is_some(), bound.is_some(), "{audited}");
        }
    }
}
