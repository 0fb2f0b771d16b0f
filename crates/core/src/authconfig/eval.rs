//! Evaluation of one request against one AuthConfig, sans-IO.
//!
//! [`Evaluation`] is a state machine: [`Evaluation::start`] returns a [`Step`]; when the step
//! asks for an identity verification or a SubjectAccessReview, the caller performs it (async,
//! cached, whatever it likes) and feeds the outcome back with
//! [`Evaluation::provide_identity`] / [`Evaluation::provide_review`], until [`Step::Done`].
//! [`evaluate`] and [`check`] drive it with synchronous traits.
//!
//! The phases follow Authorino's pipeline: top-level `when` (no match: allow untouched) →
//! identity (priority groups in ascending order, first success wins; `anonymous` and `plain`
//! resolved here) → authorization (all must allow, first denial stops) → success response
//! (headers and dynamic metadata). Failures become Authorino's denials: 401 with one
//! `WWW-Authenticate` per identity source and `X-Ext-Auth-Reason`, 403 with the policy's
//! reason, and custom `unauthenticated` / `unauthorized` responses applied. A verifier or
//! reviewer that could not answer makes the result 503, never 401 and never allow.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::fmt;

use serde_json::{Map, Value, json};

use super::hosts::HostIndex;
use super::spec::{
    AuthConfig, Authentication, Authorization, AuthorizationMethod, Credentials, DenyWith, IdentityMethod, SubjectAccessReviewSpec,
    SuccessValue, ValueOrSelector, all_match,
};

pub const WWW_AUTHENTICATE: &str = "WWW-Authenticate";
pub const X_EXT_AUTH_REASON: &str = "X-Ext-Auth-Reason";
pub const SERVICE_NOT_FOUND: &str = "Service not found";
pub const CREDENTIAL_NOT_FOUND: &str = "credential not found";
pub const UNAUTHORIZED: &str = "Unauthorized";

/// gRPC status codes of `CheckResponse.status`.
pub mod grpc {
    pub const OK: i32 = 0;
    pub const INVALID_ARGUMENT: i32 = 3;
    pub const NOT_FOUND: i32 = 5;
    pub const PERMISSION_DENIED: i32 = 7;
    pub const INTERNAL: i32 = 13;
    pub const UNAVAILABLE: i32 = 14;
    pub const UNAUTHENTICATED: i32 = 16;
}

/// A peer of the request (`source` / `destination`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Peer {
    pub address: String,
    pub port: u32,
    pub principal: String,
    /// URL-encoded PEM, as Envoy sends it.
    pub certificate: String,
}

/// The request being authorized, as the transports see it (Envoy `AttributeContext.request.http`
/// plus what a forward-auth proxy passes along). Header names are lower case; repeated headers
/// are merged with `,` as Envoy does. `Debug` never prints header values (they hold credentials).
///
/// The strings may borrow from the transport's own request (the reverse proxy checks every
/// request it forwards, and copying its headers was about a quarter of what the check added to
/// each one) or own what the transport handed over (a gRPC `CheckRequest`'s strings move in).
#[derive(Clone, Default, PartialEq, Eq)]
pub struct AuthRequest<'a> {
    /// `x-request-id` or the transport's id.
    pub id: Cow<'a, str>,
    /// RFC 3339, from the transport (the core has no clock).
    pub time: Cow<'a, str>,
    pub method: Cow<'a, str>,
    pub scheme: Cow<'a, str>,
    /// `:authority` / `Host` as sent, port included.
    pub host: Cow<'a, str>,
    /// The path with its query string.
    pub path: Cow<'a, str>,
    /// `HTTP/1.1`, `HTTP/2`, ...
    pub protocol: Cow<'a, str>,
    pub headers: BTreeMap<Cow<'a, str>, Cow<'a, str>>,
    pub body: Cow<'a, str>,
    /// Envoy's per-route `context_extensions`; `host` overrides the lookup key.
    pub context_extensions: BTreeMap<String, String>,
    pub source: Peer,
    pub destination: Peer,
}

impl fmt::Debug for AuthRequest<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AuthRequest")
            .field("id", &self.id)
            .field("method", &self.method)
            .field("host", &self.host)
            .field("url_path", &self.url_path())
            .field("header_names", &self.headers.keys().collect::<Vec<_>>())
            .field("context_extensions", &self.context_extensions)
            .finish_non_exhaustive()
    }
}

impl<'a> AuthRequest<'a> {
    /// A request with this method, host and path, each borrowed or owned (`&str`, `String`,
    /// `Cow`).
    pub fn new(method: impl Into<Cow<'a, str>>, host: impl Into<Cow<'a, str>>, path: impl Into<Cow<'a, str>>) -> Self {
        Self { method: method.into(), host: host.into(), path: path.into(), ..Self::default() }
    }

    /// Adds a copy of a header: the name is lower-cased; a repeated header is merged with `,`.
    #[must_use]
    pub fn with_header(mut self, name: &str, value: &str) -> Self {
        self.insert_header(name.to_owned(), value.to_owned());
        self
    }

    /// Adds a header, borrowed or owned, which it keeps rather than copies (a name with upper
    /// case is lower-cased into a copy); a repeated header is merged with `,`.
    pub fn insert_header(&mut self, name: impl Into<Cow<'a, str>>, value: impl Into<Cow<'a, str>>) {
        let mut name = name.into();
        if name.bytes().any(|b| b.is_ascii_uppercase()) {
            name.to_mut().make_ascii_lowercase();
        }
        match self.headers.entry(name) {
            std::collections::btree_map::Entry::Occupied(mut existing) => {
                let existing = existing.get_mut().to_mut();
                existing.push(',');
                existing.push_str(&value.into());
            }
            std::collections::btree_map::Entry::Vacant(slot) => {
                slot.insert(value.into());
            }
        }
    }

    pub fn with_context_extension(mut self, name: &str, value: &str) -> Self {
        self.context_extensions.insert(name.to_owned(), value.to_owned());
        self
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name.to_ascii_lowercase().as_str()).map(|v| &**v)
    }

    /// The host-index key: the `host` context extension if set, else [`AuthRequest::host`].
    pub fn lookup_host(&self) -> &str {
        self.context_extensions.get("host").map_or(&*self.host, String::as_str)
    }

    /// The path without its query string or fragment, percent-decoded: Authorino's `URLPath`
    /// is Go's `url.Parse(path).Path`, so a rule on `/admin` also holds for `/%61dmin`.
    /// Borrowed when there is nothing to decode (nearly always).
    pub fn url_path(&self) -> Cow<'_, str> {
        let path = self.path.split(['?', '#']).next().unwrap_or_default();
        if path.contains('%') { Cow::Owned(percent_decode(path)) } else { Cow::Borrowed(path) }
    }

    /// The query string (without `?` or a fragment), `""` if none; not decoded, as Authorino's
    /// `RawQuery`.
    pub fn query(&self) -> &str {
        let before_fragment = self.path.split('#').next().unwrap_or_default();
        before_fragment.split_once('?').map_or("", |(_, q)| q)
    }

    /// Reads the credential where `credentials` says, exactly as Authorino's
    /// `pkg/auth/credentials.go` does. `None` is "credential not found".
    pub fn credential(&self, credentials: &Credentials) -> Option<&str> {
        match credentials {
            Credentials::AuthorizationHeader { prefix } => {
                let header = self.headers.get("authorization")?;
                header.strip_prefix(prefix.as_str())?.strip_prefix(' ')
            }
            Credentials::CustomHeader { name } => self.header(name),
            Credentials::Cookie { name } => {
                let header = self.headers.get("cookie")?;
                header.split(';').find_map(|part| part.trim().strip_prefix(name.as_str())?.strip_prefix('='))
            }
            Credentials::QueryString { name } => {
                // `[?&]name=([^&]*)` on the whole path, first match
                let path = &*self.path;
                let needle = format!("{name}=");
                let mut from = 0;
                while let Some(at) = path.get(from..)?.find(&needle) {
                    let start = from + at;
                    if start > 0 && matches!(path.as_bytes().get(start - 1), Some(b'?' | b'&')) {
                        let value = &path[start + needle.len()..];
                        return Some(value.split('&').next().unwrap_or_default());
                    }
                    from = start + 1;
                }
                None
            }
        }
    }

    /// The authorization JSON before any phase ran: `context` (Envoy's `AttributeContext`,
    /// snake_case), the well-known `request` / `source` / `destination` attributes, and `auth`.
    pub fn authorization_json(&self) -> Value {
        let peer = |p: &Peer| {
            json!({
                "address": {"socket_address": {"address": p.address, "port_value": p.port}},
                "principal": p.principal,
                "certificate": p.certificate,
            })
        };
        let well_known_peer = |p: &Peer| {
            json!({"address": p.address, "port": p.port, "principal": p.principal, "certificate": p.certificate})
        };
        json!({
            "context": {
                "source": peer(&self.source),
                "destination": peer(&self.destination),
                "request": {
                    "time": self.time,
                    "http": {
                        "id": self.id,
                        "method": self.method,
                        "headers": self.headers,
                        "path": self.path,
                        "host": self.host,
                        "scheme": self.scheme,
                        "query": "",
                        "fragment": "",
                        "size": self.body.len(),
                        "protocol": self.protocol,
                        "body": self.body,
                    },
                },
                "context_extensions": self.context_extensions,
            },
            "request": {
                "id": self.header("x-request-id").unwrap_or(&*self.id),
                "time": self.time,
                "protocol": self.protocol,
                "scheme": self.scheme,
                "host": self.host,
                "method": self.method,
                "path": self.path,
                "url_path": self.url_path(),
                "query": self.query(),
                "headers": self.headers,
                "referer": self.header("referer").unwrap_or_default(),
                "user_agent": self.header("user-agent").unwrap_or_default(),
                "size": self.body.len(),
                "body": self.body,
                "context_extensions": self.context_extensions,
            },
            "source": well_known_peer(&self.source),
            "destination": well_known_peer(&self.destination),
            "metadata": {},
            "auth": auth_skeleton(),
        })
    }
}

/// Decodes `%XX` escapes. Go's `url.Parse` fails on an invalid escape (`%zz`, a lone `%`),
/// which Authorino does not survive; here such an escape stays as it is: it decodes to
/// nothing, so it cannot spell a protected path. Bytes that are not UTF-8 become U+FFFD one by
/// one, as Go's JSON encoding of the attribute does.
fn percent_decode(raw: &str) -> String {
    let hex = |b: Option<&u8>| b.and_then(|b| char::from(*b).to_digit(16)).and_then(|d| u8::try_from(d).ok());
    let bytes = raw.as_bytes();
    let mut decoded = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        match (b, hex(bytes.get(i + 1)), hex(bytes.get(i + 2))) {
            (b'%', Some(high), Some(low)) => {
                decoded.push(high * 16 + low);
                i += 3;
            }
            _ => {
                decoded.push(b);
                i += 1;
            }
        }
    }
    match String::from_utf8(decoded) {
        Ok(text) => text,
        Err(e) => {
            let mut text = String::with_capacity(e.as_bytes().len() + 8);
            let mut rest = e.as_bytes();
            loop {
                match std::str::from_utf8(rest) {
                    Ok(valid) => break text.push_str(valid),
                    Err(e) => {
                        let (valid, invalid) = rest.split_at(e.valid_up_to());
                        text.push_str(&String::from_utf8_lossy(valid));
                        text.push('\u{fffd}');
                        rest = invalid.get(1..).unwrap_or_default();
                    }
                }
            }
            text
        }
    }
}

/// `auth` before any phase ran.
fn auth_skeleton() -> Value {
    json!({"identity": null, "metadata": {}, "authorization": {}, "response": {}, "callbacks": {}})
}

/// Whether evaluating `config` may read the authorization JSON at all: a condition, a selector,
/// a pattern or a response anywhere. Most AuthConfigs (one token review, no policy) read
/// nothing, and building it (or the identity object) would cost more than the rest of their
/// check.
fn reads_authorization_json(config: &AuthConfig) -> bool {
    let selector = |v: &ValueOrSelector| matches!(v, ValueOrSelector::Selector(_));
    let any_selector = |v: &Option<ValueOrSelector>| v.as_ref().is_some_and(selector);
    let deny_with = |d: &Option<DenyWith>| {
        d.as_ref().is_some_and(|d| any_selector(&d.message) || any_selector(&d.body) || d.headers.iter().any(|(_, v)| selector(v)))
    };
    let identity = |a: &Authentication| {
        !a.when.is_empty()
            || matches!(a.method, IdentityMethod::Plain { .. })
            || a.defaults.iter().chain(&a.overrides).any(|(_, v)| selector(v))
    };
    let policy = |a: &Authorization| {
        !a.when.is_empty()
            || match &a.method {
                AuthorizationMethod::PatternMatching(_) => true,
                AuthorizationMethod::SubjectAccessReview(spec) => {
                    any_selector(&spec.user)
                        || any_selector(&spec.authorization_groups)
                        || spec.resource_attributes.as_ref().is_some_and(|r| {
                            [&r.namespace, &r.group, &r.resource, &r.name, &r.subresource, &r.verb].into_iter().any(any_selector)
                        })
                }
            }
    };
    !config.when.is_empty()
        || config.authentication.iter().any(identity)
        || config.authorization.iter().any(policy)
        || !config.response.headers.is_empty()
        || !config.response.dynamic_metadata.is_empty()
        || deny_with(&config.response.unauthenticated)
        || deny_with(&config.response.unauthorized)
}

/// What the caller must verify: one identity source's credential. `Debug` hides the credential.
/// It borrows the AuthConfig (names, method, audiences) and the credential rather than
/// copying them: one is made for every check.
#[derive(Clone)]
pub struct IdentityRequest<'r> {
    config: &'r AuthConfig,
    /// The identity source is `config.authentication[source_index]`.
    source_index: usize,
    pub credential: &'r str,
    /// `[request host]` for a `kubernetesTokenReview` without audiences, else empty.
    host_audience: Vec<String>,
    wants_object: bool,
}

impl IdentityRequest<'_> {
    pub fn authconfig_namespace(&self) -> &str {
        &self.config.namespace
    }

    pub fn authconfig_name(&self) -> &str {
        &self.config.name
    }

    /// The identity source's name (`spec.authentication.<name>`).
    pub fn source(&self) -> &str {
        self.config.authentication.get(self.source_index).map_or("", |a| a.name.as_str())
    }

    pub fn method(&self) -> &IdentityMethod {
        self.config.authentication.get(self.source_index).map_or(&IdentityMethod::Anonymous, |a| &a.method)
    }

    /// For `kubernetesTokenReview`: the configured audiences, or `[request host]` (port
    /// included, as Authorino does) when none are configured. Empty for other methods.
    pub fn audiences(&self) -> &[String] {
        match self.method() {
            IdentityMethod::KubernetesTokenReview { audiences, .. } if !audiences.is_empty() => audiences,
            _ => &self.host_audience,
        }
    }

    /// Whether the AuthConfig reads the identity object (`auth.identity`): a condition, a
    /// selector, a pattern or a response does. When it does not, a verifier may answer
    /// `Verified(Value::Null)` and skip building an object nothing would read.
    pub fn wants_object(&self) -> bool {
        self.wants_object
    }
}

impl PartialEq for IdentityRequest<'_> {
    fn eq(&self, other: &Self) -> bool {
        (self.authconfig_namespace(), self.authconfig_name(), self.source(), self.method(), &self.credential, self.audiences(), self.wants_object)
            == (other.authconfig_namespace(), other.authconfig_name(), other.source(), other.method(), &other.credential, other.audiences(), other.wants_object)
    }
}

impl Eq for IdentityRequest<'_> {}

impl fmt::Debug for IdentityRequest<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("IdentityRequest")
            .field("authconfig", &format_args!("{}/{}", self.authconfig_namespace(), self.authconfig_name()))
            .field("source", &self.source())
            .field("method", &self.method().kind())
            .field("credential", &"<redacted>")
            .field("audiences", &self.audiences())
            .field("wants_object", &self.wants_object)
            .finish()
    }
}

/// The verifier's answer.
#[derive(Clone, Debug, PartialEq)]
pub enum IdentityOutcome {
    /// The identity object (`auth.identity`), e.g. a TokenReview `status`.
    Verified(Value),
    /// The credential is not valid; the reason goes to `X-Ext-Auth-Reason`
    /// (`not authenticated`, `the API Key provided is invalid`, ...).
    Invalid(String),
    /// The verifier could not answer (API server down, JWKS unreachable, timeout): 503.
    Unavailable(String),
}

/// A SubjectAccessReview to make (`spec` of `authorization.k8s.io/v1` SubjectAccessReview).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SubjectAccessReviewRequest {
    pub authconfig_namespace: String,
    pub authconfig_name: String,
    /// The authorization policy (`spec.authorization.<name>`).
    pub policy: String,
    pub user: String,
    pub groups: Vec<String>,
    pub attributes: AccessAttributes,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AccessAttributes {
    Resource { namespace: String, group: String, resource: String, name: String, subresource: String, verb: String },
    /// Without `resourceAttributes`: the request path and lower-cased method.
    NonResource { path: String, verb: String },
}

#[derive(Clone, Debug, PartialEq)]
pub enum ReviewOutcome {
    Allowed,
    /// `status.reason` (may be empty).
    Denied(String),
    Unavailable(String),
}

/// Verifies credentials (TokenReview, JWT, API keys). Implemented by the transports' backends.
pub trait IdentityVerifier {
    fn verify(&self, request: &IdentityRequest<'_>) -> IdentityOutcome;
}

/// Answers SubjectAccessReviews.
pub trait SubjectAccessReviewer {
    fn review(&self, request: &SubjectAccessReviewRequest) -> ReviewOutcome;
}

/// A reviewer for deployments without one: every review is unavailable (503).
#[derive(Clone, Copy, Debug, Default)]
pub struct NoSubjectAccessReviewer;

impl SubjectAccessReviewer for NoSubjectAccessReviewer {
    fn review(&self, _request: &SubjectAccessReviewRequest) -> ReviewOutcome {
        ReviewOutcome::Unavailable("no SubjectAccessReview backend configured".to_owned())
    }
}

/// The result of a check.
#[derive(Clone, Debug, PartialEq)]
pub enum Decision {
    /// Forward the request, adding `headers` upstream; `dynamic_metadata` goes to Envoy under
    /// `envoy.filters.http.ext_authz`. `identity` is `None` when the top-level `when` skipped
    /// the AuthConfig, and may be `Null` (without `defaults` or `overrides`) when nothing read
    /// it (see [`IdentityRequest::wants_object`]).
    Allow { headers: Vec<(String, String)>, dynamic_metadata: Map<String, Value>, identity: Option<Value> },
    /// Answer the client with `code`, `headers` (in order; `WWW-Authenticate` may repeat) and
    /// `body`. `grpc_code` is `CheckResponse.status.code`; `message` is the reason (also in
    /// `X-Ext-Auth-Reason`, sent even when empty as Authorino does).
    Deny { code: u16, grpc_code: i32, headers: Vec<(String, String)>, body: String, message: String },
}

impl Decision {
    /// 404 `Service not found`: no AuthConfig for the host.
    pub fn not_found() -> Self {
        Self::deny(404, grpc::NOT_FOUND, Vec::new(), SERVICE_NOT_FOUND.to_owned())
    }

    /// 503: the decision could not be made (timeout, backend down, index not ready: pass `Busy`).
    pub fn unavailable(message: &str) -> Self {
        Self::deny(503, grpc::UNAVAILABLE, Vec::new(), message.to_owned())
    }

    /// 400 `Invalid request`: the transport got no HTTP attributes.
    pub fn invalid_request() -> Self {
        Self::deny(400, grpc::INVALID_ARGUMENT, Vec::new(), "Invalid request".to_owned())
    }

    fn deny(code: u16, grpc_code: i32, mut headers: Vec<(String, String)>, message: String) -> Self {
        headers.push((X_EXT_AUTH_REASON.to_owned(), message.clone()));
        Self::Deny { code, grpc_code, headers, body: String::new(), message }
    }

    pub fn is_allowed(&self) -> bool {
        matches!(self, Self::Allow { .. })
    }

    /// The HTTP status: 200 when allowed.
    pub fn code(&self) -> u16 {
        match self {
            Self::Allow { .. } => 200,
            Self::Deny { code, .. } => *code,
        }
    }

    pub fn grpc_code(&self) -> i32 {
        match self {
            Self::Allow { .. } => grpc::OK,
            Self::Deny { grpc_code, .. } => *grpc_code,
        }
    }

    pub fn headers(&self) -> &[(String, String)] {
        match self {
            Self::Allow { headers, .. } | Self::Deny { headers, .. } => headers,
        }
    }

    /// The first header with this name (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers().iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }

    /// Every header with this name (case-insensitive), in order.
    pub fn header_values(&self, name: &str) -> Vec<&str> {
        self.headers().iter().filter(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str()).collect()
    }
}

/// The next thing an [`Evaluation`] needs.
#[derive(Clone, Debug, PartialEq)]
pub enum Step<'r> {
    /// Verify this credential, then call [`Evaluation::provide_identity`].
    Identity(IdentityRequest<'r>),
    /// Make this review, then call [`Evaluation::provide_review`].
    SubjectAccessReview(SubjectAccessReviewRequest),
    Done(Decision),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    New,
    /// Waiting for the outcome of `authentication[i]`.
    AwaitIdentity(usize),
    /// Waiting for the outcome of `authorization[i]`.
    AwaitReview(usize),
    Done,
}

/// One request's evaluation against one AuthConfig. See the module docs. `Debug` shows the
/// progress, never the credentials or the authorization JSON (which holds every header).
#[derive(Clone)]
pub struct Evaluation<'r> {
    config: &'r AuthConfig,
    request: &'r AuthRequest<'r>,
    /// Whether anything in the AuthConfig reads the authorization JSON.
    reads_data: bool,
    /// The authorization JSON; `Null` when nothing reads it.
    data: Value,
    /// The verified identity, when `data` is not built.
    identity: Option<Value>,
    phase: Phase,
    identity_errors: Vec<(String, String)>,
    identity_unavailable: bool,
}

impl fmt::Debug for Evaluation<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Evaluation")
            .field("authconfig", &format_args!("{}/{}", self.config.namespace, self.config.name))
            .field("request", &self.request)
            .field("phase", &self.phase)
            .field("identity_errors", &self.identity_errors)
            .finish_non_exhaustive()
    }
}

impl<'r> Evaluation<'r> {
    /// Borrows the AuthConfig and the request for as long as the evaluation runs: nothing of
    /// the request is copied that the AuthConfig does not read, and no reference count is
    /// touched (every check on every core would write to the AuthConfig's).
    pub fn new(config: &'r AuthConfig, request: &'r AuthRequest<'r>) -> Self {
        let reads_data = reads_authorization_json(config);
        Self {
            request,
            reads_data,
            data: if reads_data { request.authorization_json() } else { Value::Null },
            identity: None,
            phase: Phase::New,
            identity_errors: Vec::new(),
            identity_unavailable: false,
            config,
        }
    }

    /// The authorization JSON as it stands (identity and policy results filled in as they come;
    /// once allowed, the identity has moved into the [`Decision`]). `Null` when the AuthConfig
    /// reads none of it: no condition, selector, pattern or response.
    pub fn authorization_json(&self) -> &Value {
        &self.data
    }

    /// Runs until the first external step or the decision. Calling it twice is a misuse
    /// answered with a 500 denial.
    pub fn start(&mut self) -> Step<'r> {
        if self.phase != Phase::New {
            return self.misuse();
        }
        if !all_match(&self.config.when, &self.data) {
            return self.done(Decision::Allow { headers: Vec::new(), dynamic_metadata: Map::new(), identity: None });
        }
        self.run_identity(0)
    }

    /// Feeds the outcome of the [`Step::Identity`] just returned.
    pub fn provide_identity(&mut self, outcome: IdentityOutcome) -> Step<'r> {
        let Phase::AwaitIdentity(i) = self.phase else { return self.misuse() };
        let name = self.config.authentication.get(i).map(|a| a.name.clone()).unwrap_or_default();
        match outcome {
            IdentityOutcome::Verified(identity) => self.identity_succeeded(i, identity),
            IdentityOutcome::Invalid(reason) => {
                self.identity_errors.push((name, reason));
                self.run_identity(i + 1)
            }
            IdentityOutcome::Unavailable(reason) => {
                self.identity_errors.push((name, reason));
                self.identity_unavailable = true;
                self.run_identity(i + 1)
            }
        }
    }

    /// Feeds the outcome of the [`Step::SubjectAccessReview`] just returned.
    pub fn provide_review(&mut self, outcome: ReviewOutcome) -> Step<'r> {
        let Phase::AwaitReview(i) = self.phase else { return self.misuse() };
        match outcome {
            ReviewOutcome::Allowed => {
                // Authorino's `parseSubjectAccessReviewResult` answers `true`
                self.record_authorization(i, Value::Bool(true));
                self.run_authorization(i + 1)
            }
            ReviewOutcome::Denied(reason) => {
                let reason = if reason.is_empty() { "unknown reason".to_owned() } else { reason };
                let decision = self.unauthorized(format!("not authorized: {reason}"));
                self.done(decision)
            }
            ReviewOutcome::Unavailable(reason) => self.done(Decision::unavailable(&reason)),
        }
    }

    fn misuse(&mut self) -> Step<'r> {
        self.phase = Phase::Done;
        Step::Done(Decision::deny(500, grpc::INTERNAL, Vec::new(), "evaluation driven out of order".to_owned()))
    }

    fn done(&mut self, decision: Decision) -> Step<'r> {
        self.phase = Phase::Done;
        Step::Done(decision)
    }

    fn run_identity(&mut self, from: usize) -> Step<'r> {
        let config = self.config;
        for (i, source) in config.authentication.iter().enumerate().skip(from) {
            // a priority group ended without a success: an unavailable source in it stops here
            // rather than falling back to a lower-priority source (fail closed)
            if i > 0 && self.identity_unavailable && config.authentication.get(i - 1).is_some_and(|p| p.priority != source.priority) {
                break;
            }
            if !all_match(&source.when, &self.data) {
                continue;
            }
            match &source.method {
                IdentityMethod::Anonymous => return self.identity_succeeded(i, json!({"anonymous": true})),
                IdentityMethod::Plain { selector } => match selector.get(&self.data) {
                    Some(identity) if !identity.is_null() => return self.identity_succeeded(i, identity),
                    _ => self.identity_errors.push((source.name.clone(), "could not retrieve identity object or null".to_owned())),
                },
                method => match self.request.credential(&source.credentials) {
                    None => self.identity_errors.push((source.name.clone(), CREDENTIAL_NOT_FOUND.to_owned())),
                    Some(credential) => {
                        let host_audience = match method {
                            IdentityMethod::KubernetesTokenReview { audiences, .. } if audiences.is_empty() => vec![self.request.host.clone().into_owned()],
                            _ => Vec::new(),
                        };
                        self.phase = Phase::AwaitIdentity(i);
                        return Step::Identity(IdentityRequest {
                            credential,
                            host_audience,
                            wants_object: self.reads_data,
                            source_index: i,
                            config,
                        });
                    }
                },
            }
        }
        let message = self.identity_reason();
        let decision = if self.identity_unavailable { Decision::unavailable(&message) } else { self.unauthenticated(message) };
        self.done(decision)
    }

    /// One source: its error; several: a JSON object name → error (Authorino counts all
    /// sources, evaluated or not). Sources skipped by their `when` have no error, so one
    /// skipped source gives `{}`.
    fn identity_reason(&self) -> String {
        if self.config.authentication.len() == 1
            && let Some((_, error)) = self.identity_errors.first()
        {
            return error.clone();
        }
        let map: Map<String, Value> = self.identity_errors.iter().map(|(n, e)| (n.clone(), Value::String(e.clone()))).collect();
        super::path::go_json(&Value::Object(map))
    }

    fn identity_succeeded(&mut self, i: usize, mut identity: Value) -> Step<'r> {
        let config = self.config;
        if let Some(source) = config.authentication.get(i) {
            if source.defaults.is_empty() && source.overrides.is_empty() {
                self.set_identity(identity);
                return self.run_authorization(0);
            }
            // defaults and overrides see the identity as verified (when anything is read)
            if self.reads_data {
                self.set_identity(identity.clone());
            }
            if let Value::Object(obj) = &mut identity {
                for (key, value) in &source.defaults {
                    if !obj.contains_key(key) {
                        obj.insert(key.clone(), value.resolve(&self.data));
                    }
                }
                for (key, value) in &source.overrides {
                    obj.insert(key.clone(), value.resolve(&self.data));
                }
            }
            self.set_identity(identity);
        }
        self.run_authorization(0)
    }

    fn set_identity(&mut self, identity: Value) {
        match self.data.get_mut("auth").and_then(Value::as_object_mut) {
            Some(auth) => {
                auth.insert("identity".to_owned(), identity);
            }
            None => self.identity = Some(identity),
        }
    }

    fn auth_map(&mut self, key: &str) -> Option<&mut Map<String, Value>> {
        self.data.get_mut("auth")?.get_mut(key)?.as_object_mut()
    }

    fn record_authorization(&mut self, i: usize, value: Value) {
        let name = self.config.authorization.get(i).map(|a| a.name.clone()).unwrap_or_default();
        if let Some(map) = self.auth_map("authorization") {
            map.insert(name, value);
        }
    }

    fn run_authorization(&mut self, from: usize) -> Step<'r> {
        let config = self.config;
        for (i, policy) in config.authorization.iter().enumerate().skip(from) {
            if !all_match(&policy.when, &self.data) {
                continue;
            }
            match &policy.method {
                AuthorizationMethod::PatternMatching(patterns) => {
                    if !all_match(patterns, &self.data) {
                        let decision = self.unauthorized(UNAUTHORIZED.to_owned());
                        return self.done(decision);
                    }
                    self.record_authorization(i, Value::Bool(true));
                }
                AuthorizationMethod::SubjectAccessReview(spec) => {
                    let request = self.review_request(config, &policy.name, spec);
                    self.phase = Phase::AwaitReview(i);
                    return Step::SubjectAccessReview(request);
                }
            }
        }
        let decision = self.success();
        self.done(decision)
    }

    fn review_request(&self, config: &AuthConfig, policy: &str, spec: &SubjectAccessReviewSpec) -> SubjectAccessReviewRequest {
        let resolve = |v: &Option<ValueOrSelector>| v.as_ref().map(|v| v.resolve_string(&self.data)).unwrap_or_default();
        let mut groups = spec.groups.clone();
        if let Some(g) = &spec.authorization_groups {
            match g.resolve(&self.data) {
                Value::Array(items) => groups.extend(items.iter().map(|v| super::path::to_gjson_string(Some(v)))),
                Value::Null => {}
                other => groups.push(super::path::to_gjson_string(Some(&other))),
            }
        }
        let attributes = match &spec.resource_attributes {
            Some(r) => AccessAttributes::Resource {
                namespace: resolve(&r.namespace),
                group: resolve(&r.group),
                resource: resolve(&r.resource),
                name: resolve(&r.name),
                subresource: resolve(&r.subresource),
                verb: resolve(&r.verb),
            },
            None => AccessAttributes::NonResource { path: self.request.path.clone().into_owned(), verb: self.request.method.to_ascii_lowercase() },
        };
        SubjectAccessReviewRequest {
            authconfig_namespace: config.namespace.clone(),
            authconfig_name: config.name.clone(),
            policy: policy.to_owned(),
            user: resolve(&spec.user),
            groups,
            attributes,
        }
    }

    fn success(&mut self) -> Decision {
        let config = self.config;
        let mut headers = Vec::new();
        for item in &config.response.headers {
            if !all_match(&item.when, &self.data) {
                continue;
            }
            let value = item.value.resolve(&self.data);
            let text = match &item.value {
                // Authorino prints what a selector finds with Go's `%v`; it prints a static value
                // as the Go struct holding its raw JSON, which is not copied: that stays JSON text
                SuccessValue::Plain(ValueOrSelector::Selector(_)) => {
                    let mut text = String::new();
                    go_print(&value, &mut text);
                    text
                }
                _ => super::path::to_gjson_string(Some(&value)),
            };
            headers.push((item.key.clone(), text));
            if let Some(map) = self.auth_map("response") {
                map.insert(item.name.clone(), value);
            }
        }
        let mut dynamic_metadata = Map::new();
        for item in &config.response.dynamic_metadata {
            if !all_match(&item.when, &self.data) {
                continue;
            }
            let value = item.value.resolve(&self.data);
            dynamic_metadata.insert(item.key.clone(), value.clone());
            if let Some(map) = self.auth_map("response") {
                map.insert(item.name.clone(), value);
            }
        }
        // The evaluation is over: the identity moves into the decision.
        let identity = match self.identity.take() {
            Some(identity) => Some(identity),
            None => self.data.get_mut("auth").and_then(|a| a.get_mut("identity")).map(Value::take),
        };
        Decision::Allow { headers, dynamic_metadata, identity }
    }

    fn unauthenticated(&self, message: String) -> Decision {
        let challenges = self
            .config
            .authentication
            .iter()
            .map(|a| {
                let identifier = match &a.method {
                    IdentityMethod::Plain { selector } => selector.as_str(),
                    _ => a.credentials.challenge_identifier(),
                };
                (WWW_AUTHENTICATE.to_owned(), format!("{identifier} realm=\"{}\"", a.name))
            })
            .collect();
        self.customized(401, grpc::UNAUTHENTICATED, challenges, message, self.config.response.unauthenticated.as_ref())
    }

    fn unauthorized(&self, message: String) -> Decision {
        self.customized(403, grpc::PERMISSION_DENIED, Vec::new(), message, self.config.response.unauthorized.as_ref())
    }

    /// Authorino's `customizeDenyWith`: code, message, headers (replacing the defaults when
    /// any are set) and body.
    fn customized(&self, code: u16, grpc_code: i32, headers: Vec<(String, String)>, message: String, custom: Option<&DenyWith>) -> Decision {
        let Some(custom) = custom else { return Decision::deny(code, grpc_code, headers, message) };
        let code = custom.code.unwrap_or(code);
        let message = custom.message.as_ref().map_or(message, |m| m.resolve_string(&self.data));
        let headers = if custom.headers.is_empty() {
            headers
        } else {
            custom.headers.iter().map(|(name, value)| (name.clone(), value.resolve_string(&self.data))).collect()
        };
        let body = custom.body.as_ref().map(|b| b.resolve_string(&self.data)).unwrap_or_default();
        match Decision::deny(code, grpc_code, headers, message) {
            Decision::Deny { code, grpc_code, headers, message, .. } => Decision::Deny { code, grpc_code, headers, body, message },
            allow => allow,
        }
    }
}

/// Go's `fmt.Sprintf("%v", v)` of gjson's `Value()` of `value`: numbers are float64, `null` is
/// `<nil>`, an array `[a b]`, an object `map[k:v]` (keys sorted).
fn go_print(value: &Value, out: &mut String) {
    match value {
        Value::Null => out.push_str("<nil>"),
        Value::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        Value::Number(n) => out.push_str(&go_float(n.as_f64().unwrap_or_default())),
        Value::String(s) => out.push_str(s),
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(' ');
                }
                go_print(item, out);
            }
            out.push(']');
        }
        Value::Object(map) => {
            let mut entries: Vec<_> = map.iter().collect();
            entries.sort_unstable_by_key(|(k, _)| k.as_str());
            out.push_str("map[");
            for (i, (key, item)) in entries.into_iter().enumerate() {
                if i > 0 {
                    out.push(' ');
                }
                out.push_str(key);
                out.push(':');
                go_print(item, out);
            }
            out.push(']');
        }
    }
}

/// `%v` of a float64, i.e. `%g` with the shortest digits: exponent form below 1e-4 and from
/// 1e+06 on (`1e+06`, `1.5e-07`), plain decimals between.
fn go_float(f: f64) -> String {
    let scientific = format!("{f:e}");
    let (mantissa, exponent) = scientific.split_once('e').unwrap_or((&scientific, "0"));
    let exponent: i32 = exponent.parse().unwrap_or_default();
    if (-4..6).contains(&exponent) {
        format!("{f}")
    } else {
        format!("{mantissa}e{}{:02}", if exponent < 0 { '-' } else { '+' }, exponent.unsigned_abs())
    }
}

/// Evaluates a request against an AuthConfig, calling the verifier and reviewer as needed.
pub fn evaluate(
    config: &AuthConfig,
    request: &AuthRequest<'_>,
    verifier: &dyn IdentityVerifier,
    reviewer: &dyn SubjectAccessReviewer,
) -> Decision {
    let mut evaluation = Evaluation::new(config, request);
    let mut step = evaluation.start();
    loop {
        step = match step {
            Step::Done(decision) => return decision,
            Step::Identity(req) => evaluation.provide_identity(verifier.verify(&req)),
            Step::SubjectAccessReview(req) => evaluation.provide_review(reviewer.review(&req)),
        };
    }
}

/// Looks the AuthConfig up by [`AuthRequest::lookup_host`] (404 `Service not found` when
/// none), then [`evaluate`]s.
pub fn check(
    index: &HostIndex,
    request: &AuthRequest<'_>,
    verifier: &dyn IdentityVerifier,
    reviewer: &dyn SubjectAccessReviewer,
) -> Decision {
    match index.lookup(request.lookup_host()) {
        Some(config) => evaluate(config, request, verifier, reviewer),
        None => Decision::not_found(),
    }
}
