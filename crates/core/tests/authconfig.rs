//! AuthConfig model: parsing, host index, selectors and evaluation against Authorino's results.

use std::cell::RefCell;
use std::collections::HashMap;
use std::sync::Arc;

use serde_json::{Value, json};
use tokenwarden_core::authconfig::*;
use tokenwarden_core::Error;

const HOST: &str = "talker-api.127.0.0.1.nip.io";

fn config(value: Value) -> Arc<AuthConfig> {
    Arc::new(AuthConfig::parse(&value).unwrap_or_else(|e| panic!("{e}")))
}

fn with_spec(name: &str, spec: Value) -> Value {
    json!({"apiVersion": "authorino.kuadrant.io/v1beta3", "kind": "AuthConfig", "metadata": {"namespace": "authorino", "name": name}, "spec": spec})
}

fn invalid(spec: Value) -> String {
    match AuthConfig::parse(&with_spec("bad", spec)) {
        Ok(_) => panic!("expected a validation error"),
        Err(e @ Error::Invalid { .. }) => e.to_string(),
        Err(other) => panic!("unexpected error {other:?}"),
    }
}

/// The Authorino TokenReview guide's AuthConfig.
fn guide() -> Arc<AuthConfig> {
    config(with_spec(
        "talker-api-protection",
        json!({
            "hosts": [HOST],
            "authentication": {"authorized-service-accounts": {"kubernetesTokenReview": {"audiences": ["talker-api"]}}},
        }),
    ))
}

fn sa_identity(name: &str) -> Value {
    json!({
        "authenticated": true,
        "user": {
            "username": format!("system:serviceaccount:authorino:{name}"),
            "uid": "eb5b2c5c-0000-4000-8000-000000000000",
            "groups": ["system:serviceaccounts", "system:serviceaccounts:authorino", "system:authenticated"],
        },
        "audiences": ["talker-api"],
    })
}

/// Tokens → outcomes; records every request.
#[derive(Default)]
struct Verifier {
    tokens: HashMap<String, IdentityOutcome>,
    calls: RefCell<Vec<Call>>,
}

/// What an [`IdentityRequest`] asked, kept after the request and AuthConfig it borrows are gone.
#[derive(Clone)]
struct Call {
    credential: String,
    authconfig: (String, String),
    source: String,
    method: IdentityMethod,
    audiences: Vec<String>,
}

impl Call {
    fn audiences(&self) -> &[String] {
        &self.audiences
    }
    fn source(&self) -> &str {
        &self.source
    }
    fn authconfig_namespace(&self) -> &str {
        &self.authconfig.0
    }
    fn authconfig_name(&self) -> &str {
        &self.authconfig.1
    }
    fn method(&self) -> &IdentityMethod {
        &self.method
    }
}

impl Verifier {
    fn with(mut self, token: &str, outcome: IdentityOutcome) -> Self {
        self.tokens.insert(token.to_owned(), outcome);
        self
    }
    fn calls(&self) -> Vec<Call> {
        self.calls.borrow().clone()
    }
}

impl IdentityVerifier for Verifier {
    fn verify(&self, request: &IdentityRequest<'_>) -> IdentityOutcome {
        self.calls.borrow_mut().push(Call {
            credential: request.credential.to_owned(),
            authconfig: (request.authconfig_namespace().to_owned(), request.authconfig_name().to_owned()),
            source: request.source().to_owned(),
            method: request.method().clone(),
            audiences: request.audiences().to_vec(),
        });
        self.tokens.get(request.credential).cloned().unwrap_or_else(|| IdentityOutcome::Invalid("not authenticated".to_owned()))
    }
}

struct Reviewer {
    outcome: ReviewOutcome,
    calls: RefCell<Vec<SubjectAccessReviewRequest>>,
}

impl Reviewer {
    fn new(outcome: ReviewOutcome) -> Self {
        Self { outcome, calls: RefCell::new(Vec::new()) }
    }
}

impl SubjectAccessReviewer for Reviewer {
    fn review(&self, request: &SubjectAccessReviewRequest) -> ReviewOutcome {
        self.calls.borrow_mut().push(request.clone());
        self.outcome.clone()
    }
}

fn get(path: &str) -> AuthRequest<'_> {
    AuthRequest::new("GET", HOST, path)
}

fn bearer(token: &str) -> AuthRequest<'static> {
    get("/hello").with_header("Authorization", &format!("Bearer {token}"))
}

fn run(config: &Arc<AuthConfig>, request: &AuthRequest<'_>, verifier: &Verifier) -> Decision {
    evaluate(config, request, verifier, &NoSubjectAccessReviewer)
}

fn assert_deny(decision: &Decision, code: u16, grpc_code: i32, reason: &str) {
    assert_eq!(decision.code(), code, "{decision:?}");
    assert_eq!(decision.grpc_code(), grpc_code, "{decision:?}");
    assert_eq!(decision.header("x-ext-auth-reason"), Some(reason), "{decision:?}");
}

// ---------------------------------------------------------------- the TokenReview guide

#[test]
fn guide_valid_token_is_allowed_with_the_tokenreview_status_as_identity() {
    let index = HostIndex::build([guide()]);
    let verifier = Verifier::default().with("good", IdentityOutcome::Verified(sa_identity("api-consumer-1")));
    let decision = check(&index, &bearer("good"), &verifier, &NoSubjectAccessReviewer);
    assert_eq!(decision, Decision::Allow { headers: vec![], dynamic_metadata: Default::default(), identity: Some(sa_identity("api-consumer-1")) });
    let calls = verifier.calls();
    assert_eq!(calls.len(), 1);
    assert_eq!(calls[0].credential, "good");
    assert_eq!(calls[0].audiences(), ["talker-api".to_owned()]);
    assert_eq!(calls[0].source(), "authorized-service-accounts");
    assert_eq!((calls[0].authconfig_namespace(), calls[0].authconfig_name()), ("authorino", "talker-api-protection"));
    assert!(matches!(calls[0].method(), IdentityMethod::KubernetesTokenReview { .. }));
}

#[test]
fn guide_missing_token_is_401_with_challenge_and_reason() {
    let verifier = Verifier::default();
    let decision = run(&guide(), &get("/hello"), &verifier);
    assert_deny(&decision, 401, 16, "credential not found");
    assert_eq!(
        decision.headers(),
        &[
            ("WWW-Authenticate".to_owned(), "Bearer realm=\"authorized-service-accounts\"".to_owned()),
            ("X-Ext-Auth-Reason".to_owned(), "credential not found".to_owned()),
        ]
    );
    assert!(verifier.calls().is_empty());
    let Decision::Deny { body, message, .. } = decision else { unreachable!() };
    assert_eq!((body.as_str(), message.as_str()), ("", "credential not found"));
}

#[test]
fn guide_rejected_token_is_401_not_authenticated() {
    let decision = run(&guide(), &bearer("expired-or-wrong-audience"), &Verifier::default());
    assert_deny(&decision, 401, 16, "not authenticated");
    assert_eq!(decision.header_values("www-authenticate"), vec!["Bearer realm=\"authorized-service-accounts\""]);
}

#[test]
fn unavailable_verifier_is_503_never_401_never_allow() {
    let verifier = Verifier::default().with("tok", IdentityOutcome::Unavailable("dial tcp 10.0.0.1:443: connection refused".to_owned()));
    let decision = run(&guide(), &bearer("tok"), &verifier);
    assert_deny(&decision, 503, 14, "dial tcp 10.0.0.1:443: connection refused");
    assert!(decision.header("www-authenticate").is_none());
}

#[test]
fn unknown_host_is_404_service_not_found_and_port_falls_back() {
    let index = HostIndex::build([guide()]);
    let verifier = Verifier::default().with("good", IdentityOutcome::Verified(sa_identity("a")));
    let mut request = bearer("good");
    request.host = "other.127.0.0.1.nip.io".into();
    let decision = check(&index, &request, &verifier, &NoSubjectAccessReviewer);
    assert_deny(&decision, 404, 5, "Service not found");
    assert_eq!(decision.headers().len(), 1);

    request.host = format!("{HOST}:8000").into();
    assert!(check(&index, &request, &verifier, &NoSubjectAccessReviewer).is_allowed());

    // the `host` context extension wins over :authority
    let mut routed = bearer("good");
    routed.host = "internal:9000".into();
    let routed = routed.with_context_extension("host", HOST);
    assert!(check(&index, &routed, &verifier, &NoSubjectAccessReviewer).is_allowed());
}

#[test]
fn default_audience_is_the_request_host_with_its_port() {
    let cfg = config(with_spec("noaud", json!({"hosts": [HOST], "authentication": {"k8s": {"kubernetesTokenReview": {}}}})));
    let verifier = Verifier::default();
    let mut request = bearer("t");
    request.host = format!("{HOST}:8000").into();
    run(&cfg, &request, &verifier);
    assert_eq!(verifier.calls()[0].audiences(), [format!("{HOST}:8000")]);
}

// ---------------------------------------------------------------- credentials

fn single_source(credentials: Value) -> Arc<AuthConfig> {
    config(with_spec("creds", json!({"hosts": [HOST], "authentication": {"src": {"credentials": credentials, "kubernetesTokenReview": {"audiences": ["a"]}}}})))
}

fn credential_seen(cfg: &Arc<AuthConfig>, request: &AuthRequest<'_>) -> Option<String> {
    let verifier = Verifier::default();
    run(cfg, request, &verifier);
    verifier.calls().first().map(|c| c.credential.clone())
}

#[test]
fn authorization_header_prefix_is_case_sensitive_with_one_space() {
    let default = single_source(json!({}));
    assert_eq!(credential_seen(&default, &get("/").with_header("authorization", "Bearer abc")), Some("abc".to_owned()));
    assert_eq!(credential_seen(&default, &get("/").with_header("authorization", "bearer abc")), None);
    assert_eq!(credential_seen(&default, &get("/").with_header("authorization", "Bearerabc")), None);
    assert_eq!(credential_seen(&default, &get("/").with_header("authorization", "Bearer  abc")), Some(" abc".to_owned()));

    let custom = single_source(json!({"authorizationHeader": {"prefix": "APIKEY"}}));
    assert_eq!(credential_seen(&custom, &get("/").with_header("Authorization", "APIKEY k1")), Some("k1".to_owned()));
    assert_eq!(credential_seen(&custom, &get("/").with_header("Authorization", "Bearer k1")), None);
    let denied = run(&custom, &get("/"), &Verifier::default());
    assert_eq!(denied.header("www-authenticate"), Some("APIKEY realm=\"src\""));
}

#[test]
fn custom_header_query_string_and_cookie() {
    let header = single_source(json!({"customHeader": {"name": "X-API-Key"}}));
    assert_eq!(credential_seen(&header, &get("/").with_header("x-api-key", "k2")), Some("k2".to_owned()));
    assert_eq!(credential_seen(&header, &get("/").with_header("authorization", "Bearer k2")), None);
    assert_eq!(run(&header, &get("/"), &Verifier::default()).header("www-authenticate"), Some("X-API-Key realm=\"src\""));

    let query = single_source(json!({"queryString": {"name": "api_key"}}));
    assert_eq!(credential_seen(&query, &get("/p?x=1&api_key=k3&y=2")), Some("k3".to_owned()));
    assert_eq!(credential_seen(&query, &get("/p?api_key=k4")), Some("k4".to_owned()));
    assert_eq!(credential_seen(&query, &get("/p?my_api_key=k5")), None);
    assert_eq!(credential_seen(&query, &get("/api_key=k6")), None);
    assert_eq!(run(&query, &get("/"), &Verifier::default()).header("www-authenticate"), Some("api_key realm=\"src\""));

    let cookie = single_source(json!({"cookie": {"name": "session"}}));
    assert_eq!(credential_seen(&cookie, &get("/").with_header("Cookie", "a=1; session=k7; b=2")), Some("k7".to_owned()));
    assert_eq!(credential_seen(&cookie, &get("/").with_header("Cookie", "mysession=k8")), None);
    assert_eq!(run(&cookie, &get("/"), &Verifier::default()).header("www-authenticate"), Some("session realm=\"src\""));
}

// ---------------------------------------------------------------- operators, all/any, patternRef

fn rich_identity() -> Value {
    json!({"user": {"username": "system:serviceaccount:authorino:api-consumer", "groups": ["dev", "ops"]}, "level": 5, "admin": false})
}

/// A config whose only policy is `patterns`; returns whether the request is allowed.
fn allowed_by(patterns: Value, extra_spec: Value) -> bool {
    let mut spec = json!({
        "hosts": [HOST],
        "authentication": {"k8s": {"kubernetesTokenReview": {"audiences": ["talker-api"]}}},
        "authorization": {"rules": {"patternMatching": {"patterns": patterns}}},
    });
    if let (Some(s), Value::Object(extra)) = (spec.as_object_mut(), extra_spec) {
        s.extend(extra);
    }
    let cfg = config(with_spec("ops", spec));
    let verifier = Verifier::default().with("t", IdentityOutcome::Verified(rich_identity()));
    let decision = run(&cfg, &bearer("t").with_header("x-tenant", "acme"), &verifier);
    match decision.code() {
        200 => true,
        403 => {
            assert_deny(&decision, 403, 7, "Unauthorized");
            assert!(decision.header("www-authenticate").is_none());
            false
        }
        other => panic!("unexpected {other}: {decision:?}"),
    }
}

fn rule(selector: &str, operator: &str, value: &str) -> Value {
    json!({"selector": selector, "operator": operator, "value": value})
}

#[test]
fn every_operator() {
    let none = json!({});
    let user = "auth.identity.user.username";
    assert!(allowed_by(json!([rule(user, "eq", "system:serviceaccount:authorino:api-consumer")]), none.clone()));
    assert!(!allowed_by(json!([rule(user, "eq", "system:serviceaccount:authorino:other")]), none.clone()));
    assert!(allowed_by(json!([rule(user, "neq", "system:anonymous")]), none.clone()));
    assert!(!allowed_by(json!([rule(user, "neq", "system:serviceaccount:authorino:api-consumer")]), none.clone()));
    assert!(allowed_by(json!([rule("auth.identity.user.groups", "incl", "ops")]), none.clone()));
    assert!(!allowed_by(json!([rule("auth.identity.user.groups", "incl", "admins")]), none.clone()));
    assert!(allowed_by(json!([rule("auth.identity.user.groups", "excl", "admins")]), none.clone()));
    assert!(!allowed_by(json!([rule("auth.identity.user.groups", "excl", "dev")]), none.clone()));
    assert!(allowed_by(json!([rule(user, "matches", "^system:serviceaccount:authorino:")]), none.clone()));
    assert!(allowed_by(json!([rule(user, "matches", "api-cons")]), none.clone()), "unanchored like Go MatchString");
    assert!(!allowed_by(json!([rule(user, "matches", "^system:node:")]), none.clone()));
    // gjson String(): numbers and booleans as text, missing as ""; Array() of a scalar is [scalar]
    assert!(allowed_by(json!([rule("auth.identity.level", "eq", "5")]), none.clone()));
    assert!(allowed_by(json!([rule("auth.identity.admin", "eq", "false")]), none.clone()));
    assert!(allowed_by(json!([rule("auth.identity.missing", "eq", "")]), none.clone()));
    assert!(allowed_by(json!([rule("auth.identity.user.username", "incl", "system:serviceaccount:authorino:api-consumer")]), none.clone()));
    // request attributes, array index and count
    assert!(allowed_by(json!([rule("context.request.http.headers.x-tenant", "eq", "acme")]), none.clone()));
    assert!(allowed_by(json!([rule("request.method", "eq", "GET"), rule("request.url_path", "eq", "/hello")]), none.clone()));
    assert!(allowed_by(json!([rule("auth.identity.user.groups.1", "eq", "ops"), rule("auth.identity.user.groups.#", "eq", "2")]), none.clone()));
    // all rules of a policy must match
    assert!(!allowed_by(json!([rule(user, "neq", "x"), rule("auth.identity.level", "eq", "6")]), none));
}

#[test]
fn all_any_nesting_and_pattern_refs() {
    let none = json!({});
    let admin = rule("auth.identity.user.groups", "incl", "admins");
    let dev = rule("auth.identity.user.groups", "incl", "dev");
    let get = rule("request.method", "eq", "GET");
    assert!(allowed_by(json!([{"any": [admin.clone(), dev.clone()]}]), none.clone()));
    assert!(!allowed_by(json!([{"all": [admin.clone(), dev.clone()]}]), none.clone()));
    assert!(allowed_by(json!([{"any": [admin.clone(), {"all": [dev.clone(), get.clone()]}]}]), none.clone()));
    assert!(!allowed_by(json!([{"any": [admin.clone(), {"all": [dev.clone(), rule("request.method", "eq", "POST")]}]}]), none.clone()));

    let patterns = json!({"patterns": {"devs-reading": [dev, get], "admins": [admin]}});
    assert!(allowed_by(json!([{"patternRef": "devs-reading"}]), patterns.clone()));
    assert!(!allowed_by(json!([{"patternRef": "admins"}]), patterns.clone()));
    assert!(allowed_by(json!([{"any": [{"patternRef": "admins"}, {"patternRef": "devs-reading"}]}]), patterns));
}

#[test]
fn url_path_is_percent_decoded_as_authorino_sees_it() {
    // Authorino's `request.url_path` is Go's `url.Parse(path).Path`: decoded, so escaping a
    // letter does not dodge a rule on it
    let cfg = config(with_spec(
        "no-admin",
        json!({"hosts": [HOST], "authorization": {"no-admin": {"patternMatching": {"patterns": [rule("request.url_path", "neq", "/admin")]}}}}),
    ));
    for path in ["/admin", "/%61dmin", "/%61%64%6D%69%6E?x=1", "/admin#frag"] {
        assert_deny(&run(&cfg, &get(path), &Verifier::default()), 403, 7, "Unauthorized");
    }
    assert!(run(&cfg, &get("/admins"), &Verifier::default()).is_allowed());

    let attributes = |path: &str| {
        let request = get(path);
        let request = Evaluation::new(&cfg, &request).authorization_json()["request"].clone();
        (request["path"].as_str().unwrap().to_owned(), request["url_path"].as_str().unwrap().to_owned(), request["query"].as_str().unwrap().to_owned())
    };
    // `path` and `query` stay raw, as Authorino's `Path` and `RawQuery`
    assert_eq!(attributes("/a%2Fb/%41?q=%41&r=1"), ("/a%2Fb/%41?q=%41&r=1".into(), "/a/b/A".into(), "q=%41&r=1".into()));
    assert_eq!(attributes("/plain?x"), ("/plain?x".into(), "/plain".into(), "x".into()));
    // a fragment is not part of either
    assert_eq!(attributes("/p?q=1#f?g"), ("/p?q=1#f?g".into(), "/p".into(), "q=1".into()));
    assert_eq!(attributes("/p#f?g"), ("/p#f?g".into(), "/p".into(), "".into()));
    // `+` is not a space in a path; invalid escapes are kept as they are
    assert_eq!(attributes("/a+b%zz%4").1, "/a+b%zz%4");
    assert_eq!(attributes("/%61dmin%").1, "/admin%");
    // UTF-8 decodes; each byte that is not UTF-8 becomes U+FFFD, as Go's JSON encoding does
    assert_eq!(attributes("/caf%C3%A9").1, "/caf\u{e9}");
    assert_eq!(attributes("/%FFx%F0%9F%98").1, "/\u{fffd}x\u{fffd}\u{fffd}\u{fffd}");
}

#[test]
fn a_pattern_ref_joins_the_enclosing_list_and_empty_lists_add_nothing() {
    // Authorino's `buildPredicates` splices a reference's expressions into the list it is in,
    // under that list's operator
    let none = json!({});
    let admin = rule("auth.identity.user.groups", "incl", "admins");
    let is_get = rule("request.method", "eq", "GET");
    let patterns = json!({"patterns": {"admin-or-get": [admin.clone(), is_get.clone()], "nothing": []}});
    assert!(allowed_by(json!([{"any": [{"patternRef": "admin-or-get"}]}]), patterns.clone()), "inside any: any one of them");
    assert!(!allowed_by(json!([{"patternRef": "admin-or-get"}]), patterns.clone()), "inside the (all) list: all of them");
    assert!(!allowed_by(json!([{"all": [{"patternRef": "admin-or-get"}]}]), patterns.clone()));
    assert!(allowed_by(json!([{"any": [admin.clone(), {"patternRef": "admin-or-get"}]}]), patterns.clone()));
    // an empty `any` / `all` adds nothing to its list, so the list still holds
    assert!(allowed_by(json!([{"any": []}]), none.clone()));
    assert!(allowed_by(json!([{"all": []}, {"any": []}, is_get.clone()]), none.clone()));
    assert!(!allowed_by(json!([{"any": []}, admin.clone()]), none.clone()));
    // but an `any` left with nothing in it is false, as Go's `jsonexp.Any()` of nothing
    assert!(!allowed_by(json!([{"any": [{"any": []}]}]), none.clone()));
    assert!(!allowed_by(json!([{"any": [{"patternRef": "nothing"}]}]), patterns.clone()));
    assert!(allowed_by(json!([{"any": [{"any": []}, is_get]}]), none));
    assert!(allowed_by(json!([{"patternRef": "nothing"}]), patterns));

    // in `when` too: an empty `any` does not skip the AuthConfig
    let cfg = config(with_spec(
        "when-any",
        json!({"hosts": [HOST], "when": [{"any": []}], "authentication": {"k8s": {"kubernetesTokenReview": {"audiences": ["a"]}}}}),
    ));
    assert_deny(&run(&cfg, &get("/"), &Verifier::default()), 401, 16, "credential not found");
}

// ---------------------------------------------------------------- when

#[test]
fn top_level_when_not_matching_allows_without_evaluating() {
    let cfg = config(with_spec(
        "when",
        json!({
            "hosts": [HOST],
            "when": [rule("request.url_path", "matches", "^/api/")],
            "authentication": {"k8s": {"kubernetesTokenReview": {"audiences": ["talker-api"]}}},
        }),
    ));
    let verifier = Verifier::default();
    let skipped = run(&cfg, &get("/public"), &verifier);
    assert_eq!(skipped, Decision::Allow { headers: vec![], dynamic_metadata: Default::default(), identity: None });
    assert!(verifier.calls().is_empty());
    assert_eq!(run(&cfg, &get("/api/x"), &verifier).code(), 401);
}

#[test]
fn per_evaluator_when_skips_identity_authorization_and_response() {
    let cfg = config(with_spec(
        "when2",
        json!({
            "hosts": [HOST],
            "authentication": {
                "k8s": {"when": [rule("request.method", "neq", "OPTIONS")], "kubernetesTokenReview": {"audiences": ["a"]}},
                "preflight": {"when": [rule("request.method", "eq", "OPTIONS")], "anonymous": {}},
            },
            "authorization": {
                "writers": {"when": [rule("request.method", "eq", "POST")], "patternMatching": {"patterns": [rule("auth.identity.user.groups", "incl", "writers")]}},
            },
            "response": {"success": {"headers": {
                "x-user": {"when": [rule("auth.identity.anonymous", "neq", "true")], "plain": {"selector": "auth.identity.user.username"}},
            }}},
        }),
    ));
    let verifier = Verifier::default().with("t", IdentityOutcome::Verified(rich_identity()));
    let preflight = run(&cfg, &AuthRequest::new("OPTIONS", HOST, "/"), &verifier);
    assert_eq!(preflight, Decision::Allow { headers: vec![], dynamic_metadata: Default::default(), identity: Some(json!({"anonymous": true})) });
    assert!(verifier.calls().is_empty());

    let read = run(&cfg, &bearer("t"), &verifier);
    assert_eq!(read.headers(), &[("x-user".to_owned(), "system:serviceaccount:authorino:api-consumer".to_owned())]);

    let mut write = bearer("t");
    write.method = "POST".into();
    assert_deny(&run(&cfg, &write, &verifier), 403, 7, "Unauthorized");

    // a skipped source is not in the reason; the other's failure is
    let unauth = run(&cfg, &get("/"), &Verifier::default());
    assert_deny(&unauth, 401, 16, r#"{"k8s":"credential not found"}"#);
}

#[test]
fn a_single_source_skipped_by_its_when_gives_an_empty_object_as_reason() {
    // Authorino's `evaluateIdentityConfigs` got no answer from the one source: the reason is
    // the JSON of no errors, and `X-Ext-Auth-Reason` carries it
    let cfg = config(with_spec(
        "skipped",
        json!({"hosts": [HOST], "authentication": {"k8s": {"when": [rule("request.method", "eq", "POST")], "kubernetesTokenReview": {"audiences": ["a"]}}}}),
    ));
    let verifier = Verifier::default();
    let decision = run(&cfg, &bearer("t"), &verifier);
    assert_deny(&decision, 401, 16, "{}");
    assert_eq!(
        decision.headers(),
        &[("WWW-Authenticate".to_owned(), "Bearer realm=\"k8s\"".to_owned()), ("X-Ext-Auth-Reason".to_owned(), "{}".to_owned())]
    );
    assert!(verifier.calls().is_empty());
}

#[test]
fn the_reason_header_is_sent_even_when_the_reason_is_empty() {
    // Authorino's `buildResponseHeadersWithReason` always appends it
    let cfg = config(with_spec(
        "empty-reason",
        json!({
            "hosts": [HOST],
            "authentication": {"k8s": {"kubernetesTokenReview": {"audiences": ["a"]}}},
            "response": {"unauthenticated": {"message": {"selector": "auth.identity.missing"}}},
        }),
    ));
    let decision = run(&cfg, &get("/"), &Verifier::default());
    assert_deny(&decision, 401, 16, "");
    assert_eq!(decision.headers().last(), Some(&("X-Ext-Auth-Reason".to_owned(), String::new())));
    assert_eq!(Decision::unavailable("").header("x-ext-auth-reason"), Some(""));
}

// ---------------------------------------------------------------- priority and several sources

fn prioritized() -> Arc<AuthConfig> {
    config(with_spec(
        "prio",
        json!({
            "hosts": [HOST],
            "authentication": {
                "sa-tokens": {"priority": 0, "kubernetesTokenReview": {"audiences": ["talker-api"]}},
                "api-keys": {"priority": 0, "credentials": {"customHeader": {"name": "x-api-key"}}, "apiKey": {"selector": {"matchLabels": {"group": "friends"}}}},
                "fallback": {"priority": 1, "anonymous": {}},
            },
        }),
    ))
}

#[test]
fn priority_groups_run_in_order_and_fall_back_only_on_failure() {
    let cfg = prioritized();
    let verifier = Verifier::default().with("good", IdentityOutcome::Verified(sa_identity("a")));
    let ok = run(&cfg, &bearer("good"), &verifier);
    assert_eq!(ok, Decision::Allow { headers: vec![], dynamic_metadata: Default::default(), identity: Some(sa_identity("a")) });

    // both priority-0 sources fail: the priority-1 anonymous source answers
    let anon = run(&cfg, &bearer("bad").with_header("x-api-key", "nope"), &verifier);
    assert_eq!(anon.code(), 200);
    let Decision::Allow { identity, .. } = anon else { unreachable!() };
    assert_eq!(identity, Some(json!({"anonymous": true})));
}

#[test]
fn unavailable_source_does_not_fall_back_to_a_lower_priority_but_a_sibling_success_wins() {
    let cfg = prioritized();
    let verifier = Verifier::default()
        .with("down", IdentityOutcome::Unavailable("TokenReview timed out".to_owned()))
        .with("key1", IdentityOutcome::Verified(json!({"metadata": {"name": "key1"}})));
    let decision = run(&cfg, &bearer("down"), &verifier);
    assert_deny(&decision, 503, 14, r#"{"api-keys":"credential not found","sa-tokens":"TokenReview timed out"}"#);

    let sibling = run(&cfg, &bearer("down").with_header("x-api-key", "key1"), &verifier);
    assert!(sibling.is_allowed(), "{sibling:?}");
    let calls = verifier.calls();
    assert!(matches!(calls.last().unwrap().method(), IdentityMethod::ApiKey { all_namespaces: false, .. }));
}

#[test]
fn several_sources_failing_give_a_json_reason_and_one_challenge_each() {
    let cfg = config(with_spec(
        "multi",
        json!({
            "hosts": [HOST],
            "authentication": {
                "members-cookie": {"credentials": {"cookie": {"name": "session"}}, "jwt": {"jwksUrl": "https://issuer.example/keys"}},
                "admins": {"kubernetesTokenReview": {"audiences": ["x"]}},
            },
        }),
    ));
    let decision = run(&cfg, &get("/"), &Verifier::default());
    assert_deny(&decision, 401, 16, r#"{"admins":"credential not found","members-cookie":"credential not found"}"#);
    assert_eq!(decision.header_values("WWW-Authenticate"), vec!["Bearer realm=\"admins\"", "session realm=\"members-cookie\""]);
    assert_eq!(decision.headers().last().map(|(n, _)| n.as_str()), Some("X-Ext-Auth-Reason"));
}

#[test]
fn empty_authentication_injects_anonymous() {
    let cfg = config(with_spec("open", json!({"hosts": [HOST]})));
    assert_eq!(cfg.authentication.len(), 1);
    let decision = run(&cfg, &get("/"), &Verifier::default());
    assert_eq!(decision, Decision::Allow { headers: vec![], dynamic_metadata: Default::default(), identity: Some(json!({"anonymous": true})) });
}

#[test]
fn plain_identity_from_a_selector() {
    let cfg = config(with_spec(
        "plain",
        json!({"hosts": [HOST], "authentication": {"from-header": {"plain": {"selector": "context.request.http.headers.x-user"}}}}),
    ));
    let ok = run(&cfg, &get("/").with_header("x-user", "alice"), &Verifier::default());
    let Decision::Allow { identity, .. } = ok else { panic!("{ok:?}") };
    assert_eq!(identity, Some(json!("alice")));
    let denied = run(&cfg, &get("/"), &Verifier::default());
    assert_eq!(denied.code(), 401);
    assert_eq!(denied.header("www-authenticate"), Some("context.request.http.headers.x-user realm=\"from-header\""));
}

// ---------------------------------------------------------------- defaults / overrides, response

#[test]
fn defaults_do_not_overwrite_overrides_do() {
    let cfg = config(with_spec(
        "ext",
        json!({
            "hosts": [HOST],
            "authentication": {"k8s": {
                "kubernetesTokenReview": {"audiences": ["a"]},
                "defaults": {"authenticated": {"value": "ignored"}, "tenant": {"selector": "context.request.http.headers.x-tenant"}, "tier": {"value": 1}},
                "overrides": {"audiences": {"value": ["overridden"]}, "name": {"selector": "auth.identity.user.username"}},
            }},
            "response": {"success": {"headers": {"x-name": {"plain": {"selector": "auth.identity.name"}}}}},
        }),
    ));
    let verifier = Verifier::default().with("t", IdentityOutcome::Verified(sa_identity("bob")));
    let decision = run(&cfg, &bearer("t").with_header("X-Tenant", "acme"), &verifier);
    let Decision::Allow { identity: Some(identity), headers, .. } = decision else { panic!("{decision:?}") };
    assert_eq!(identity["authenticated"], json!(true));
    assert_eq!(identity["tenant"], json!("acme"));
    assert_eq!(identity["tier"], json!(1));
    assert_eq!(identity["audiences"], json!(["overridden"]));
    assert_eq!(identity["name"], json!("system:serviceaccount:authorino:bob"));
    assert_eq!(headers, vec![("x-name".to_owned(), "system:serviceaccount:authorino:bob".to_owned())]);
}

#[test]
fn success_headers_and_dynamic_metadata_resolve_selectors() {
    let cfg = config(with_spec(
        "resp",
        json!({
            "hosts": [HOST],
            "authentication": {"k8s": {"kubernetesTokenReview": {"audiences": ["talker-api"]}}},
            "response": {"success": {
                "headers": {
                    "x-auth-user": {"plain": {"selector": "auth.identity.user.username"}},
                    "identity": {"key": "x-identity", "json": {"properties": {
                        "user": {"selector": "auth.identity.user.username"},
                        "groups": {"selector": "auth.identity.user.groups"},
                        "static": {"value": "yes"},
                    }}},
                    "x-static": {"plain": {"value": 42}},
                    "x-sa": {"plain": {"selector": "auth.identity.user.username.@extract:{\"sep\":\":\",\"pos\":3}"}},
                    "x-first-group": {"priority": 1, "plain": {"selector": "auth.identity.user.groups.0|@case:upper"}},
                    "x-greeting": {"plain": {"selector": "hello {auth.identity.user.username} via {request.method}"}},
                },
                "dynamicMetadata": {
                    "username": {"plain": {"selector": "auth.identity.user.username"}},
                    "ext": {"key": "ext_auth_data", "json": {"properties": {"n": {"selector": "auth.identity.user.groups.#"}}}},
                },
            }},
        }),
    ));
    let verifier = Verifier::default().with("t", IdentityOutcome::Verified(sa_identity("carol")));
    let decision = run(&cfg, &bearer("t"), &verifier);
    let Decision::Allow { headers, dynamic_metadata, .. } = decision else { panic!("{decision:?}") };
    let user = "system:serviceaccount:authorino:carol";
    let expected_json = json!({"groups": ["system:serviceaccounts", "system:serviceaccounts:authorino", "system:authenticated"], "static": "yes", "user": user});
    assert_eq!(
        headers,
        vec![
            ("x-identity".to_owned(), expected_json.to_string()),
            ("x-auth-user".to_owned(), user.to_owned()),
            ("x-greeting".to_owned(), format!("hello {user} via GET")),
            ("x-sa".to_owned(), "carol".to_owned()),
            ("x-static".to_owned(), "42".to_owned()),
            ("x-first-group".to_owned(), "SYSTEM:SERVICEACCOUNTS".to_owned()),
        ]
    );
    assert_eq!(dynamic_metadata.get("username"), Some(&json!(user)));
    assert_eq!(dynamic_metadata.get("ext_auth_data"), Some(&json!({"n": 3})));
}

#[test]
fn json_text_is_written_as_gos_encoding_json_writes_it() {
    // Authorino marshals JSON headers and the reasons of several sources with encoding/json,
    // which escapes `<`, `>` and `&` (a selector's JSON text comes from the same)
    let cfg = config(with_spec(
        "go-json",
        json!({
            "hosts": [HOST],
            "authentication": {
                "<a>": {"kubernetesTokenReview": {"audiences": ["a"]}},
                "b&c": {"kubernetesTokenReview": {"audiences": ["a"]}},
            },
            "response": {"success": {"headers": {
                "x-json": {"json": {"properties": {"html": {"value": "<b>&amp;</b>"}, "line": {"value": "a\u{2028}b"}}}},
                "x-text": {"plain": {"selector": "headers: {request.headers}"}},
            }}},
        }),
    ));
    let unauthenticated = run(&cfg, &get("/"), &Verifier::default());
    assert_deny(&unauthenticated, 401, 16, r#"{"\u003ca\u003e":"credential not found","b\u0026c":"credential not found"}"#);

    let verifier = Verifier::default().with("t", IdentityOutcome::Verified(sa_identity("dan")));
    let decision = run(&cfg, &bearer("t").with_header("x-q", "a&b"), &verifier);
    let Decision::Allow { headers, .. } = decision else { panic!("{decision:?}") };
    assert_eq!(headers[0], ("x-json".to_owned(), r#"{"html":"\u003cb\u003e\u0026amp;\u003c/b\u003e","line":"a\u2028b"}"#.to_owned()));
    assert_eq!(headers[1], ("x-text".to_owned(), r#"headers: {"authorization":"Bearer t","x-q":"a\u0026b"}"#.to_owned()));
}

#[test]
fn plain_header_values_from_selectors_are_printed_as_go_prints_them() {
    // Authorino's `wrapObjectAsHeaderValue` is `fmt.Sprintf("%v", gjson.Get(...).Value())`
    let plain = |selector: &str| json!({"plain": {"selector": selector}});
    let cfg = config(with_spec(
        "go-values",
        json!({
            "hosts": [HOST],
            "authentication": {"k8s": {"kubernetesTokenReview": {"audiences": ["a"]}}},
            "response": {"success": {"headers": {
                "x-array": plain("auth.identity.groups"),
                "x-missing": plain("auth.identity.nope"),
                "x-object": plain("auth.identity.obj"),
                "x-one": plain("auth.identity.one"),
                "x-million": plain("auth.identity.million"),
                "x-big": plain("auth.identity.big"),
                "x-half": plain("auth.identity.half"),
                "x-tiny": plain("auth.identity.tiny"),
                "x-small": plain("auth.identity.small"),
                "x-bool": plain("auth.identity.ok"),
                "x-text": plain("auth.identity.text"),
                "x-static": {"plain": {"value": ["a", "b"]}},
            }}},
        }),
    ));
    let identity = json!({
        "groups": ["a", "b", 3], "obj": {"z": 1, "a": [null, "x", {"k": false}]}, "one": 1, "million": 1_000_000, "big": 1e21,
        "half": -0.5, "tiny": 0.00001, "small": 0.0001, "ok": true, "text": "as is",
    });
    let verifier = Verifier::default().with("t", IdentityOutcome::Verified(identity));
    let decision = run(&cfg, &bearer("t"), &verifier);
    let value = |name: &str| decision.header(name).unwrap_or_else(|| panic!("no {name} in {decision:?}")).to_owned();
    assert_eq!(value("x-array"), "[a b 3]");
    assert_eq!(value("x-missing"), "<nil>");
    assert_eq!(value("x-object"), "map[a:[<nil> x map[k:false]] z:1]");
    assert_eq!(value("x-one"), "1");
    assert_eq!(value("x-million"), "1e+06", "numbers are float64, %v is %g");
    assert_eq!(value("x-big"), "1e+21");
    assert_eq!(value("x-half"), "-0.5");
    assert_eq!(value("x-tiny"), "1e-05");
    assert_eq!(value("x-small"), "0.0001");
    assert_eq!(value("x-bool"), "true");
    assert_eq!(value("x-text"), "as is");
    // a static value is not printed as Authorino prints it (the Go struct holding the raw
    // JSON): it stays JSON text
    assert_eq!(value("x-static"), r#"["a","b"]"#);
}

// ---------------------------------------------------------------- custom denials

#[test]
fn custom_unauthenticated_and_unauthorized_responses() {
    let cfg = config(with_spec(
        "custom",
        json!({
            "hosts": [HOST],
            "authentication": {"k8s": {"kubernetesTokenReview": {"audiences": ["talker-api"]}}},
            "authorization": {"only-admins": {"patternMatching": {"patterns": [rule("auth.identity.user.username", "eq", "system:serviceaccount:authorino:admin")]}}},
            "response": {
                "unauthenticated": {
                    "code": 302,
                    "headers": {"Location": {"selector": "https://login.example/?redirect={request.path}"}},
                    "message": {"value": "please log in"},
                },
                "unauthorized": {
                    "body": {"selector": "\\{\"denied\":\"{auth.identity.user.username}\"}"},
                    "message": {"selector": "auth.identity.user.username"},
                },
            },
        }),
    ));
    let verifier = Verifier::default().with("t", IdentityOutcome::Verified(sa_identity("dave")));
    let unauthenticated = run(&cfg, &get("/x?y=1"), &verifier);
    assert_eq!(
        unauthenticated,
        Decision::Deny {
            code: 302,
            grpc_code: 16,
            headers: vec![
                ("Location".to_owned(), "https://login.example/?redirect=/x?y=1".to_owned()),
                ("X-Ext-Auth-Reason".to_owned(), "please log in".to_owned()),
            ],
            body: String::new(),
            message: "please log in".to_owned(),
        }
    );

    let unauthorized = run(&cfg, &bearer("t"), &verifier);
    let Decision::Deny { code, grpc_code, headers, body, message } = unauthorized else { panic!("{unauthorized:?}") };
    assert_eq!((code, grpc_code), (403, 7));
    assert_eq!(message, "system:serviceaccount:authorino:dave");
    assert_eq!(headers, vec![("X-Ext-Auth-Reason".to_owned(), "system:serviceaccount:authorino:dave".to_owned())]);
    assert_eq!(body, "{\"denied\":\"system:serviceaccount:authorino:dave\"}");
}

#[test]
fn custom_unauthenticated_without_headers_keeps_the_challenges() {
    let cfg = config(with_spec(
        "custom2",
        json!({
            "hosts": [HOST],
            "authentication": {"k8s": {"kubernetesTokenReview": {"audiences": ["talker-api"]}}},
            "response": {"unauthenticated": {"body": {"value": "no entry"}}},
        }),
    ));
    let decision = run(&cfg, &get("/"), &Verifier::default());
    assert_deny(&decision, 401, 16, "credential not found");
    assert_eq!(decision.header("WWW-Authenticate"), Some("Bearer realm=\"k8s\""));
    let Decision::Deny { body, .. } = decision else { unreachable!() };
    assert_eq!(body, "no entry");
}

// ---------------------------------------------------------------- SubjectAccessReview

#[test]
fn subject_access_review_requests_and_outcomes() {
    let cfg = config(with_spec(
        "sar",
        json!({
            "hosts": [HOST],
            "authentication": {"k8s": {"kubernetesTokenReview": {"audiences": ["talker-api"]}}},
            "authorization": {
                "rbac": {"kubernetesSubjectAccessReview": {
                    "user": {"selector": "auth.identity.user.username"},
                    "authorizationGroups": {"selector": "auth.identity.user.groups"},
                    "resourceAttributes": {"namespace": {"value": "authorino"}, "resource": {"value": "talkers"}, "verb": {"selector": "request.method.@case:lower"}},
                }},
            },
        }),
    ));
    let verifier = Verifier::default().with("t", IdentityOutcome::Verified(sa_identity("erin")));
    let allow = Reviewer::new(ReviewOutcome::Allowed);
    assert!(evaluate(&cfg, &bearer("t"), &verifier, &allow).is_allowed());
    let call = allow.calls.borrow()[0].clone();
    assert_eq!(call.user, "system:serviceaccount:authorino:erin");
    assert_eq!(call.groups, vec!["system:serviceaccounts", "system:serviceaccounts:authorino", "system:authenticated"]);
    assert_eq!(call.policy, "rbac");
    assert_eq!(
        call.attributes,
        AccessAttributes::Resource {
            namespace: "authorino".into(),
            group: String::new(),
            resource: "talkers".into(),
            name: String::new(),
            subresource: String::new(),
            verb: "get".into()
        }
    );

    let deny = evaluate(&cfg, &bearer("t"), &verifier, &Reviewer::new(ReviewOutcome::Denied(String::new())));
    assert_deny(&deny, 403, 7, "not authorized: unknown reason");
    let deny = evaluate(&cfg, &bearer("t"), &verifier, &Reviewer::new(ReviewOutcome::Denied("no RBAC policy matched".into())));
    assert_deny(&deny, 403, 7, "not authorized: no RBAC policy matched");
    let down = evaluate(&cfg, &bearer("t"), &verifier, &Reviewer::new(ReviewOutcome::Unavailable("apiserver down".into())));
    assert_deny(&down, 503, 14, "apiserver down");
    // no reviewer configured: fail closed
    assert_eq!(evaluate(&cfg, &bearer("t"), &verifier, &NoSubjectAccessReviewer).code(), 503);

    let nonresource = config(with_spec(
        "sar2",
        json!({"hosts": [HOST], "authentication": {"k8s": {"kubernetesTokenReview": {}}}, "authorization": {"r": {"kubernetesSubjectAccessReview": {"user": {"value": "u"}}}}}),
    ));
    let reviewer = Reviewer::new(ReviewOutcome::Allowed);
    let mut post = bearer("t");
    post.method = "POST".into();
    post.path = "/hello?x=1".into();
    evaluate(&nonresource, &post, &verifier, &reviewer);
    assert_eq!(reviewer.calls.borrow()[0].attributes, AccessAttributes::NonResource { path: "/hello?x=1".into(), verb: "post".into() });
}

#[test]
fn an_allowed_subject_access_review_is_true_in_the_authorization_json() {
    // Authorino's `parseSubjectAccessReviewResult` returns `true`: `auth.authorization.<name>`
    let cfg = config(with_spec(
        "sar-result",
        json!({
            "hosts": [HOST],
            "authentication": {"k8s": {"kubernetesTokenReview": {"audiences": ["talker-api"]}}},
            "authorization": {
                "a-rbac": {"kubernetesSubjectAccessReview": {"user": {"selector": "auth.identity.user.username"}}},
                "b-after": {"patternMatching": {"patterns": [rule("auth.authorization.a-rbac", "eq", "true")]}},
            },
            "response": {"success": {"headers": {"x-rbac": {"plain": {"selector": "auth.authorization.a-rbac"}}}}},
        }),
    ));
    let verifier = Verifier::default().with("t", IdentityOutcome::Verified(sa_identity("gina")));
    let decision = evaluate(&cfg, &bearer("t"), &verifier, &Reviewer::new(ReviewOutcome::Allowed));
    assert!(decision.is_allowed(), "{decision:?}");
    assert_eq!(decision.header("x-rbac"), Some("true"));
}

// ---------------------------------------------------------------- the state machine

#[test]
fn evaluation_steps_and_misuse() {
    let asked = bearer("secret-token");
    let guide_config = guide();
    let mut evaluation = Evaluation::new(&guide_config, &asked);
    let Step::Identity(request) = evaluation.start() else { panic!("expected an identity step") };
    assert_eq!(request.credential, "secret-token");
    assert!(!format!("{request:?}").contains("secret-token"), "Debug must not print the credential");
    assert!(!format!("{:?}", bearer("secret-token")).contains("secret-token"));
    // a review outcome while waiting for an identity: refused, fail closed
    let Step::Done(decision) = evaluation.provide_review(ReviewOutcome::Allowed) else { panic!() };
    assert_eq!(decision.code(), 500);

    let guide_config = guide();
    let mut evaluation = Evaluation::new(&guide_config, &asked);
    evaluation.start();
    let Step::Done(decision) = evaluation.provide_identity(IdentityOutcome::Verified(sa_identity("f"))) else { panic!() };
    let Decision::Allow { identity, .. } = &decision else { panic!("{decision:?}") };
    assert_eq!(identity.as_ref(), Some(&sa_identity("f")), "the identity moves into the decision");
    let Step::Done(again) = evaluation.provide_identity(IdentityOutcome::Verified(json!({}))) else { panic!() };
    assert_eq!(again.code(), 500);
    let Step::Done(restart) = evaluation.start() else { panic!() };
    assert_eq!(restart.code(), 500);
}

#[test]
fn the_identity_object_is_wanted_only_by_authconfigs_that_read_it() {
    let asked = bearer("t");
    let guide_config = guide();
    let mut plain = Evaluation::new(&guide_config, &asked);
    let Step::Identity(request) = plain.start() else { panic!("expected an identity step") };
    assert!(!request.wants_object(), "one token review and no policy read nothing");
    // a verifier that skipped the object: still allowed
    let Step::Done(decision) = plain.provide_identity(IdentityOutcome::Verified(Value::Null)) else { panic!() };
    assert!(decision.is_allowed(), "{decision:?}");

    let reads = config(with_spec(
        "reads-identity",
        json!({
            "hosts": [HOST],
            "authentication": {"sa": {"kubernetesTokenReview": {"audiences": ["talker-api"]}}},
            "authorization": {"ns": {"patternMatching": {"patterns": [rule("auth.identity.user.username", "eq", "system:serviceaccount:authorino:f")]}}},
        }),
    ));
    let mut evaluation = Evaluation::new(&reads, &asked);
    let Step::Identity(request) = evaluation.start() else { panic!("expected an identity step") };
    assert!(request.wants_object(), "a pattern reads auth.identity");
    let Step::Done(decision) = evaluation.provide_identity(IdentityOutcome::Verified(sa_identity("f"))) else { panic!() };
    assert!(decision.is_allowed(), "{decision:?}");
}

#[test]
fn request_attributes_are_built_only_for_authconfigs_that_read_them() {
    let request = bearer("tok").with_header("x-tenant", "acme");
    let guide_config = guide();
    let evaluation = Evaluation::new(&guide_config, &request);
    assert_eq!(evaluation.authorization_json(), &Value::Null, "nothing reads it, so nothing is built");

    let reads = config(with_spec(
        "reads",
        json!({
            "hosts": [HOST],
            "authentication": {"sa": {"kubernetesTokenReview": {}}},
            "response": {"success": {"headers": {"x-tenant": {"plain": {"selector": "request.headers.x-tenant"}}}}},
        }),
    ));
    let mut evaluation = Evaluation::new(&reads, &request);
    assert_eq!(evaluation.authorization_json()["request"]["headers"]["x-tenant"], "acme");
    evaluation.start();
    let Step::Done(decision) = evaluation.provide_identity(IdentityOutcome::Verified(sa_identity("f"))) else { panic!() };
    assert_eq!(decision.header("x-tenant"), Some("acme"));
}

// ---------------------------------------------------------------- host index

fn hosts_config(name: &str, hosts: &[&str]) -> Arc<AuthConfig> {
    config(with_spec(name, json!({"hosts": hosts})))
}

fn found(index: &HostIndex, host: &str) -> Option<String> {
    index.lookup(host).map(|c| c.name.clone())
}

#[test]
fn host_index_exact_wildcards_ports() {
    // a wildcard inside another's is only linked when it came first (as in Authorino)
    let refused = HostIndex::build([hosts_config("pets", &["*.pets.com"]), hosts_config("deep", &["*.cats.pets.com"])]);
    assert_eq!(refused.status("authorino", "deep").unwrap().refused.len(), 1);
    let index = HostIndex::build([
        hosts_config("exact", &["dogs.pets.com"]),
        hosts_config("deep", &["*.cats.pets.com"]),
        hosts_config("pets", &["*.pets.com"]),
        hosts_config("tls-only", &["my-api.io:443"]),
        hosts_config("io", &["*.io"]),
    ]);
    assert_eq!(found(&index, "dogs.pets.com"), Some("exact".into()));
    assert_eq!(found(&index, "Dogs.Pets.com"), Some("exact".into()));
    assert_eq!(found(&index, "birds.pets.com"), Some("pets".into()));
    assert_eq!(found(&index, "a.b.pets.com"), Some("pets".into()));
    assert_eq!(found(&index, "x.cats.pets.com"), Some("deep".into()), "the most specific wildcard wins");
    assert_eq!(found(&index, "pets.com"), Some("pets".into()), "*.pets.com also matches pets.com, as in Authorino");
    assert_eq!(found(&index, "cats.pets.com"), Some("deep".into()));
    assert_eq!(found(&index, "dogs.pets.com:8080"), Some("exact".into()));
    assert_eq!(found(&index, "birds.pets.com:8080"), Some("pets".into()));
    assert_eq!(found(&index, "my-api.io:443"), Some("tls-only".into()));
    assert_eq!(found(&index, "my-api.io:80"), Some("io".into()), "only :443 was listed; *.io catches the rest");
    assert_eq!(found(&index, "foo.nip.io"), Some("io".into()));
    assert_eq!(found(&index, "example.com"), None);

    let catch_all = HostIndex::build([hosts_config("all", &["*"]), hosts_config("one", &["one.example"])]);
    assert_eq!(found(&catch_all, "anything.example:1"), Some("all".into()));
    assert_eq!(catch_all.status("authorino", "one").unwrap().reason(), "HostsNotLinked");
}

#[test]
fn host_collisions_are_refused_with_a_reason() {
    let mut index = HostIndex::build([hosts_config("first", &["api.example.com", "*.apps.example.com"])]);
    let status = index.insert(hosts_config("second", &["api.example.com", "web.apps.example.com", "second.example.com"]));
    assert_eq!(status.linked, vec!["second.example.com".to_owned()]);
    assert_eq!(
        status.refused,
        vec![
            HostConflict { host: "api.example.com".into(), taken_by: "authorino/first".into() },
            HostConflict { host: "web.apps.example.com".into(), taken_by: "authorino/first".into() },
        ]
    );
    assert!(!status.ready());
    assert_eq!(status.reason(), "HostsNotLinked");
    assert_eq!(status.num_hosts_ready(), "1/3");
    let message = status.message().unwrap();
    assert!(message.contains("\"api.example.com\" (taken by AuthConfig authorino/first)"), "{message}");
    assert_eq!(found(&index, "api.example.com"), Some("first".into()));
    assert_eq!(found(&index, "second.example.com"), Some("second".into()));
    let first = index.status("authorino", "first").unwrap();
    assert!(first.ready() && first.message().is_none());
    assert_eq!(first.reason(), "HostsLinked");

    // re-inserting the same AuthConfig keeps its hosts
    assert!(index.insert(hosts_config("first", &["api.example.com"])).ready());
    assert_eq!(found(&index, "x.apps.example.com"), None, "the updated AuthConfig dropped its wildcard");
    // after a delete, a rebuild links the refused hosts
    assert!(index.remove("authorino", "first"));
    assert_eq!(found(&index, "api.example.com"), None);
    let rebuilt = HostIndex::build([hosts_config("second", &["api.example.com", "web.apps.example.com"])]);
    assert_eq!(found(&rebuilt, "api.example.com"), Some("second".into()));
}

#[test]
fn a_wildcard_takes_its_bare_domain_unless_an_exact_entry_came_first() {
    // Authorino's `FindId("pets.com")` finds `*.pets.com`: another AuthConfig cannot link it
    let mut index = HostIndex::build([hosts_config("pets", &["*.pets.com"])]);
    let status = index.insert(hosts_config("bare", &["pets.com", "shop.example"]));
    assert_eq!(status.refused, vec![HostConflict { host: "pets.com".into(), taken_by: "authorino/pets".into() }]);
    assert_eq!((status.reason(), status.num_hosts_ready().as_str()), ("HostsNotLinked", "1/2"));
    assert_eq!(found(&index, "pets.com"), Some("pets".into()));
    assert_eq!(found(&index, "pets.com:8080"), Some("pets".into()));

    // an exact entry linked first keeps the bare domain; the wildcard still gets the rest
    let index = HostIndex::build([hosts_config("bare", &["pets.com"]), hosts_config("pets", &["*.pets.com"])]);
    assert!(index.status("authorino", "pets").unwrap().ready());
    assert_eq!(found(&index, "pets.com"), Some("bare".into()));
    assert_eq!(found(&index, "dogs.pets.com"), Some("pets".into()));

    // so does an exact entry of the wildcard's own AuthConfig
    let index = HostIndex::build([hosts_config("both", &["*.pets.com", "pets.com"]), hosts_config("late", &["pets.com"])]);
    assert_eq!(index.status("authorino", "both").unwrap().linked, vec!["*.pets.com".to_owned(), "pets.com".to_owned()]);
    assert_eq!(index.status("authorino", "late").unwrap().refused.len(), 1);
    assert_eq!(found(&index, "pets.com"), Some("both".into()));
}

// ---------------------------------------------------------------- validation

#[test]
fn validation_errors_name_the_field() {
    let oauth2 = invalid(json!({"hosts": [HOST], "authentication": {"keycloak": {"oauth2Introspection": {"endpoint": "https://x"}}}}));
    assert!(oauth2.starts_with("AuthConfig.authorino.kuadrant.io \"bad\" is invalid: "), "{oauth2}");
    assert!(oauth2.contains("spec.authentication.keycloak.oauth2Introspection: Forbidden: authentication method \"oauth2Introspection\" is not supported"), "{oauth2}");
    let opa = invalid(json!({"hosts": [HOST], "authorization": {"policy": {"opa": {"rego": "allow = true"}}}}));
    assert!(opa.contains("spec.authorization.policy.opa: Forbidden: authorization method \"opa\" is not supported"), "{opa}");

    let cases: &[(Value, &str)] = &[
        (json!({}), "spec.hosts: Required value"),
        (json!({"hosts": []}), "spec.hosts: Required value"),
        (json!({"hosts": ["a b"]}), "spec.hosts[0]: Invalid value"),
        (json!({"hosts": ["foo.*.com"]}), "spec.hosts[0]: Invalid value"),
        (json!({"hosts": [HOST], "authentication": {"x": {}}}), "spec.authentication.x: Required value: exactly one of kubernetesTokenReview, jwt, apiKey, anonymous, plain"),
        (json!({"hosts": [HOST], "authentication": {"x": {"anonymous": {}, "jwt": {"jwksUrl": "https://k"}}}}), "spec.authentication.x: Forbidden: may not specify more than one of"),
        (json!({"hosts": [HOST], "authentication": {"x": {"jwt": {}}}}), "spec.authentication.x.jwt: Required value: exactly one of issuerUrl, jwksUrl"),
        (json!({"hosts": [HOST], "authentication": {"x": {"jwt": {"issuerUrl": "ftp://x"}}}}), "spec.authentication.x.jwt.issuerUrl: Invalid value"),
        (json!({"hosts": [HOST], "authentication": {"x": {"apiKey": {}}}}), "spec.authentication.x.apiKey.selector: Required value"),
        (json!({"hosts": [HOST], "authentication": {"x": {"anonymous": {}, "credentials": {"customHeader": {}}}}}), "spec.authentication.x.credentials.customHeader.name: Required value"),
        (json!({"hosts": [HOST], "authentication": {"x": {"anonymous": {}, "priority": "high"}}}), "spec.authentication.x.priority: Invalid value: \"high\": must be an integer"),
        (json!({"hosts": [HOST], "authentication": {"x": {"kubernetesTokenReview": {"audiences": "a"}}}}), "spec.authentication.x.kubernetesTokenReview.audiences: Invalid value"),
        (json!({"hosts": [HOST], "authentication": {"x": {"x509": {}}}}), "spec.authentication.x.x509: Forbidden"),
        (json!({"hosts": [HOST], "when": [{"selector": "a", "operator": "gt", "value": "1"}]}), "spec.when[0].operator: Unsupported value: \"gt\""),
        (json!({"hosts": [HOST], "when": [{"selector": "a", "operator": "matches", "value": "("}]}), "spec.when[0].value: Invalid value: \"(\": not a valid regular expression"),
        (json!({"hosts": [HOST], "when": [{"predicate": "true"}]}), "spec.when[0].predicate: Forbidden: CEL (predicate) is not supported"),
        (json!({"hosts": [HOST], "when": [{"patternRef": "nope"}]}), "spec.when[0].patternRef: Invalid value: \"nope\": no such pattern"),
        (json!({"hosts": [HOST], "when": [{"selector": "a.#(b==1)", "operator": "eq", "value": "1"}]}), "spec.when[0].selector: Invalid value"),
        (json!({"hosts": [HOST], "authorization": {"p": {"patternMatching": {"patterns": []}}}}), "spec.authorization.p.patternMatching.patterns: Required value"),
        (json!({"hosts": [HOST], "response": {"unauthenticated": {"code": 200}}}), "spec.response.unauthenticated.code: Invalid value: 200"),
        (json!({"hosts": [HOST], "response": {"success": {"headers": {"h": {"plain": {}}}}}}), "spec.response.success.headers.h.plain: Required value: one of value or selector"),
        (json!({"hosts": [HOST], "response": {"success": {"headers": {"h": {"wristband": {}}}}}}), "spec.response.success.headers.h.wristband: Forbidden"),
        (json!({"hosts": [HOST], "response": {"success": {"headers": {"h": {"plain": {"expression": "x"}}}}}}), "spec.response.success.headers.h.plain.expression: Forbidden"),
        (json!({"hosts": [HOST], "metadata": {"m": {"http": {"url": "https://x"}}}}), "spec.metadata: Forbidden: spec.metadata is not supported"),
    ];
    for (spec, expected) in cases {
        let message = invalid(spec.clone());
        assert!(message.contains(expected), "spec {spec}\n  expected {expected:?}\n  got {message}");
    }

    // several problems are all reported
    let both = invalid(json!({"authentication": {"x": {"opa": {}}}}));
    assert!(both.contains("spec.hosts: Required value") && both.contains("[") , "{both}");

    let wrong_version = AuthConfig::parse(&json!({"apiVersion": "authorino.kuadrant.io/v1beta2", "kind": "AuthConfig", "metadata": {"name": "n"}, "spec": {"hosts": [HOST]}}));
    assert!(wrong_version.unwrap_err().to_string().contains("apiVersion: Unsupported value: \"authorino.kuadrant.io/v1beta2\""));
    assert!(AuthConfig::parse_spec("ns", "n", &json!({"hosts": [HOST]})).is_ok());
}

#[test]
fn nothing_panics_on_hostile_input() {
    let weird = [
        json!(null),
        json!([]),
        json!({"spec": null}),
        json!({"spec": {"hosts": [1, null, {}]}}),
        json!({"spec": {"hosts": ["a"], "authentication": [], "authorization": "x", "response": 3, "patterns": {"p": 5}, "when": {}}}),
        json!({"spec": {"hosts": ["a"], "when": [{"all": [{"any": [{"selector": "\\", "operator": "eq"}]}]}]}}),
        json!({"spec": {"hosts": ["a"], "when": [{"selector": "@extract:{\"pos\":-1}", "operator": "eq"}]}}),
        json!({"spec": {"hosts": ["a"], "when": [{"selector": "{{{", "operator": "eq"}]}}),
    ];
    for value in weird {
        assert!(AuthConfig::parse(&value).is_err(), "{value}");
    }
    for selector in ["\\", "a\\", "@", "@case", "a..b", "#", "a.#.#", "}{", "{}", "a.@this", "@base64:decode", "\u{0}"] {
        if let Ok(s) = JsonSelector::parse(selector) {
            let _ = s.get(&json!({"a": [[1], {"b": "x"}]}));
        }
    }
}

mod fuzz {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn selectors_hosts_and_credentials_never_panic(s in "[a-z0-9.#@:{}\\[\\]\"\\\\|*?()=, -]{0,40}", t in "\\PC{0,24}") {
            let data = json!({"a": [[1], {"b": "x"}], "s": t.clone(), "n": {"m": [1, 2]}});
            if let Ok(sel) = JsonSelector::parse(&s) {
                let _ = sel.get(&data);
                let _ = sel.get_string(&data);
                let _ = sel.get_array(&data);
            }
            let _ = JsonSelector::parse(&t);
            let index = HostIndex::build([hosts_config("h", &["*.example.com", "api.example.com:443"])]);
            let _ = index.lookup(&s);
            let _ = index.lookup(&t);
            let path = format!("/p?{s}={t}&{t}");
            let request = AuthRequest::new("GET", &*t, &*path)
                .with_header("authorization", &t)
                .with_header("cookie", &format!("{s}={t}; {t}"));
            let _ = (request.url_path(), request.query());
            for credentials in [
                Credentials::AuthorizationHeader { prefix: s.clone() },
                Credentials::QueryString { name: s.clone() },
                Credentials::QueryString { name: t.clone() },
                Credentials::Cookie { name: s.clone() },
                Credentials::CustomHeader { name: t.clone() },
            ] {
                let _ = request.credential(&credentials);
            }
            let spec = json!({"hosts": [t.clone()], "when": [{"selector": s.clone(), "operator": "matches", "value": t.clone()}],
                "authentication": {t.clone(): {"plain": {"selector": s.clone()}}}});
            if let Ok(cfg) = AuthConfig::parse_spec("ns", "n", &spec) {
                let _ = run(&Arc::new(cfg), &request, &Verifier::default());
            }
        }
    }
}
