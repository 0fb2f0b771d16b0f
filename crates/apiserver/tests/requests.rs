//! Requests as clients really send them, and requests no client should send: Go's nulls,
//! v1beta1 TokenReviews, oversized and malformed bodies, unknown paths, bad credentials.
//! Every error is a Kubernetes Status; nothing panics.

#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test

mod common;

use axum::http::{Method, StatusCode};
use common::{ADMIN, assert_status, request, server};
use serde_json::{Value, json};

#[tokio::test]
async fn a_token_request_with_go_nulls_is_defaulted() {
    let s = server().await;
    s.namespace("ns").await;
    // kubectl create token's body when no flag is given.
    let body = r#"{"kind":"TokenRequest","apiVersion":"authentication.k8s.io/v1","metadata":{"creationTimestamp":null},
                   "spec":{"audiences":null,"expirationSeconds":null,"boundObjectRef":null},"status":{"token":"","expirationTimestamp":null}}"#;
    let reply = s.send(request(Method::POST, "/api/v1/namespaces/ns/serviceaccounts/default/token", Some(ADMIN), &[], Some(body))).await;
    assert_eq!(reply.status, StatusCode::CREATED, "{}", reply.body);
    assert_eq!(reply.body["spec"]["audiences"], json!(["https://127.0.0.1:6443"]));
    assert_eq!(reply.body["spec"]["expirationSeconds"], 3600);
    assert_eq!(reply.body["spec"]["boundObjectRef"], Value::Null);
    assert_eq!(reply.body["metadata"]["name"], "default");
    assert_eq!(reply.body["status"]["expirationTimestamp"], "2025-09-05T02:27:43Z");
    assert!(reply.body["status"]["token"].as_str().unwrap().starts_with("eyJ"));

    let missing = s.send(request(Method::POST, "/api/v1/namespaces/ns/serviceaccounts/ghost/token", Some(ADMIN), &[], Some("{}"))).await;
    assert_status(&missing, 404, "NotFound", r#"serviceaccounts "ghost" not found"#);
    // A namespace that does not exist is named, as kube-apiserver's namespace admission does.
    let nowhere = s.send(request(Method::POST, "/api/v1/namespaces/typo/serviceaccounts/default/token", Some(ADMIN), &[], Some("{}"))).await;
    assert_status(&nowhere, 404, "NotFound", r#"namespaces "typo" not found"#);
    assert_eq!(nowhere.body["details"], json!({"name": "typo", "kind": "namespaces"}));
    let short = s.send(request(Method::POST, "/api/v1/namespaces/ns/serviceaccounts/default/token", Some(ADMIN), &[], Some(r#"{"spec":{"expirationSeconds":60}}"#))).await;
    assert_status(
        &short,
        422,
        "Invalid",
        r#"TokenRequest.authentication.k8s.io "" is invalid: spec.expirationSeconds: Invalid value: 60: may not specify a duration less than 10 minutes"#,
    );
    assert_eq!(short.body["details"]["causes"][0]["field"], "spec.expirationSeconds");
}

#[tokio::test]
async fn token_reviews_in_v1_and_v1beta1_echo_the_request_with_its_status() {
    let s = server().await;
    s.namespace("ns").await;
    let issued = s.post("/api/v1/namespaces/ns/serviceaccounts/default/token", json!({"spec": {"audiences": ["talker-api"]}})).await;
    let token = issued.body["status"]["token"].as_str().unwrap().to_owned();

    for version in ["v1", "v1beta1"] {
        let api_version = format!("authentication.k8s.io/{version}");
        let reply = s
            .post(
                &format!("/apis/authentication.k8s.io/{version}/tokenreviews"),
                json!({"apiVersion": api_version, "kind": "TokenReview", "spec": {"token": token, "audiences": ["talker-api", "other"]}}),
            )
            .await;
        assert_eq!(reply.status, StatusCode::CREATED, "{}", reply.body);
        assert_eq!(reply.body["apiVersion"], api_version);
        assert_eq!(reply.body["status"]["authenticated"], true);
        assert_eq!(reply.body["status"]["user"]["username"], "system:serviceaccount:ns:default");
        assert_eq!(reply.body["status"]["audiences"], json!(["talker-api"]));
        assert_eq!(reply.body["spec"]["token"], token, "the request is echoed");
    }

    let wrong = s.post("/apis/authentication.k8s.io/v1/tokenreviews", json!({"spec": {"token": token, "audiences": ["x"]}})).await;
    assert_eq!(wrong.body["status"], json!({"user": {}, "error": r#"[invalid bearer token, token audiences ["talker-api"] is invalid for the target audiences ["x"]]"#}));
    let empty = s.post("/apis/authentication.k8s.io/v1/tokenreviews", json!({"spec": {"token": ""}})).await;
    assert_status(&empty, 400, "BadRequest", "token is required for TokenReview in authentication");

    // kube-apiserver reads the token as a bearer header's: surrounding whitespace goes (a token
    // read from a file keeps its newline), and it ends at a space.
    for presented in [format!("{token}\n"), format!("{token}  \r\n"), format!("{token} trailing words")] {
        let reply = s.post("/apis/authentication.k8s.io/v1/tokenreviews", json!({"spec": {"token": presented, "audiences": ["talker-api"]}})).await;
        assert_eq!(reply.body["status"]["authenticated"], true, "{presented:?}: {}", reply.body);
        assert_eq!(reply.body["status"]["user"]["username"], "system:serviceaccount:ns:default");
        assert_eq!(reply.body["spec"]["token"], presented.as_str(), "the request is echoed as sent");
    }
    // A leading space leaves an empty bearer token: not authenticated, and no error.
    let spaced = s.post("/apis/authentication.k8s.io/v1/tokenreviews", json!({"spec": {"token": format!(" {token}")}})).await;
    assert_eq!(spaced.status, StatusCode::CREATED);
    assert_eq!(spaced.body["status"], json!({"user": {}}));

    // Fields of the wrong type, in Go's decoder's words.
    for (version, spec, error) in [
        ("v1", json!({"token": 5}), "cannot unmarshal number into Go struct field TokenReviewSpec.spec.token of type string"),
        ("v1", json!({"token": "x", "audiences": "a"}), "cannot unmarshal string into Go struct field TokenReviewSpec.spec.audiences of type []string"),
        ("v1beta1", json!({"token": "x", "audiences": ["a", 1]}), "cannot unmarshal number into Go struct field TokenReviewSpec.spec.audiences of type string"),
    ] {
        let reply = s.post(&format!("/apis/authentication.k8s.io/{version}/tokenreviews"), json!({"spec": spec})).await;
        assert_status(&reply, 400, "BadRequest", &format!("TokenReview in version \"{version}\" cannot be handled as a TokenReview: json: {error}"));
    }
}

#[tokio::test]
async fn callers_are_who_their_token_says() {
    let s = server().await;
    s.namespace("ns").await;
    let issued = s.post("/api/v1/namespaces/ns/serviceaccounts/default/token", json!({})).await;
    let token = issued.body["status"]["token"].as_str().unwrap().to_owned();

    let review = r#"{"kind":"SelfSubjectReview","apiVersion":"authentication.k8s.io/v1","metadata":{"creationTimestamp":null},"status":{"userInfo":{}}}"#;
    let me = s.send(request(Method::POST, "/apis/authentication.k8s.io/v1/selfsubjectreviews", Some(&token), &[], Some(review))).await;
    assert_eq!(me.status, StatusCode::CREATED, "{}", me.body);
    assert_eq!(me.body["status"]["userInfo"]["username"], "system:serviceaccount:ns:default");
    assert_eq!(me.body["status"]["userInfo"]["groups"], json!(["system:serviceaccounts", "system:serviceaccounts:ns", "system:authenticated"]));
    assert_eq!(me.body["metadata"]["creationTimestamp"], "2025-09-05T01:27:43Z", "stamped with the server's time, as kube-apiserver does");

    let anonymous = s.send(request(Method::POST, "/apis/authentication.k8s.io/v1/selfsubjectreviews", None, &[], Some(review))).await;
    assert_status(
        &anonymous,
        403,
        "Forbidden",
        r#"selfsubjectreviews.authentication.k8s.io is forbidden: User "system:anonymous" cannot create resource "selfsubjectreviews" in API group "authentication.k8s.io" at the cluster scope"#,
    );
    let bad = s.send(request(Method::GET, "/api/v1/namespaces", Some("not-a-token"), &[], None)).await;
    assert_status(&bad, 401, "Unauthorized", "Unauthorized");
    let reviewer = s.send(request(Method::POST, "/apis/authentication.k8s.io/v1/tokenreviews", Some(&token), &[], Some(r#"{"spec":{"token":"x"}}"#))).await;
    assert_eq!(reviewer.status, StatusCode::FORBIDDEN, "a ServiceAccount may not review tokens before RBAC grants it");

    // OIDC documents: any authenticated caller, not anonymous ones.
    let config = s.send(request(Method::GET, "/.well-known/openid-configuration", Some(&token), &[], None)).await;
    assert_eq!(config.status, StatusCode::OK);
    assert_eq!(config.body["jwks_uri"], "https://127.0.0.1:6443/openid/v1/jwks");
    assert_eq!(config.headers["cache-control"], "public, max-age=3600");
    let jwks = s.send(request(Method::GET, "/openid/v1/jwks", None, &[], None)).await;
    assert_status(&jwks, 403, "Forbidden", r#"forbidden: User "system:anonymous" cannot get path "/openid/v1/jwks""#);
    let health = s.send(request(Method::GET, "/readyz", None, &[], None)).await;
    assert_eq!(health.status, StatusCode::OK);
    assert_eq!(health.body, "ok");
    // kube-apiserver's verbose form; a local store has no etcd check.
    let verbose = s.send(request(Method::GET, "/readyz?verbose", None, &[], None)).await;
    assert_eq!(verbose.body, "[+]ping ok\nreadyz check passed\n");
    let ping = s.send(request(Method::GET, "/livez/ping", Some(ADMIN), &[], None)).await;
    assert_eq!((ping.status, ping.body), (StatusCode::OK, serde_json::json!("ok")));
    let etcd = s.send(request(Method::GET, "/readyz/etcd", Some(ADMIN), &[], None)).await;
    assert_eq!(etcd.status, StatusCode::NOT_FOUND, "no etcd check without etcd: {}", etcd.body);
}

#[tokio::test]
async fn bad_bodies_and_paths_get_a_status_and_change_nothing() {
    let s = server().await;
    s.namespace("ns").await;
    let huge = format!(r#"{{"metadata":{{"name":"big"}},"pad":"{}"}}"#, "x".repeat(3 * 1024 * 1024));
    let reply = s.send(request(Method::POST, "/api/v1/namespaces/ns/serviceaccounts", Some(ADMIN), &[("content-type", "application/json")], Some(&huge))).await;
    assert_status(&reply, 413, "RequestEntityTooLarge", "Request entity too large: limit is 3145728");

    let reply = s.send(request(Method::POST, "/api/v1/namespaces/ns/serviceaccounts", Some(ADMIN), &[("content-type", "application/json")], Some("{\"metadata\":"))).await;
    assert_eq!(reply.status, StatusCode::BAD_REQUEST, "{}", reply.body);
    assert!(reply.body["message"].as_str().unwrap().starts_with("couldn't get version/kind; json parse error: "), "{}", reply.body);

    let reply = s.send(request(Method::POST, "/api/v1/namespaces/ns/serviceaccounts", Some(ADMIN), &[("content-type", "application/yaml")], Some("metadata: [unclosed"))).await;
    assert_eq!(reply.status, StatusCode::BAD_REQUEST, "{}", reply.body);
    assert!(reply.body["message"].as_str().unwrap().starts_with("error converting YAML to JSON"), "{}", reply.body);

    let yaml = "apiVersion: v1\nkind: ServiceAccount\nmetadata:\n  name: from-yaml\n";
    let reply = s.send(request(Method::POST, "/api/v1/namespaces/ns/serviceaccounts", Some(ADMIN), &[("content-type", "application/yaml")], Some(yaml))).await;
    assert_eq!(reply.status, StatusCode::CREATED, "YAML bodies are accepted: {}", reply.body);

    for path in ["/nope", "/api/v2", "/apis/example.com/v1/things", "/api/v1/namespaces/ns/configmaps"] {
        let reply = s.get(path).await;
        assert_status(&reply, 404, "NotFound", "the server could not find the requested resource");
    }
    let listed = s.get("/api/v1/namespaces/ns/serviceaccounts").await;
    let names: Vec<&str> = listed.body["items"].as_array().unwrap().iter().map(|i| i["metadata"]["name"].as_str().unwrap()).collect();
    assert_eq!(names, vec!["default", "from-yaml"], "nothing but the valid YAML was stored");
}

/// Arbitrary methods, paths, content types and bodies: every answer is a response (never a
/// panic), and every error is a Status.
#[tokio::test]
async fn no_input_panics_the_server() {
    use proptest::strategy::{Strategy as _, ValueTree as _};
    let s = server().await;
    s.namespace("ns").await;
    let mut runner = proptest::test_runner::TestRunner::deterministic();
    let methods = [Method::GET, Method::POST, Method::PUT, Method::PATCH, Method::DELETE];
    let paths = proptest::sample::select(vec![
        "/api/v1/namespaces/ns/serviceaccounts",
        "/api/v1/namespaces/ns/serviceaccounts/default",
        "/api/v1/namespaces/ns/serviceaccounts/default/token",
        "/apis/authentication.k8s.io/v1/tokenreviews",
        "/apis/authentication.k8s.io/v1beta1/tokenreviews",
        "/apis/authentication.k8s.io/v1/selfsubjectreviews",
        "/apis/authorino.kuadrant.io/v1beta3/namespaces/ns/authconfigs",
        "/api/v1/namespaces",
        "/api/v1/namespaces/ns/secrets",
        "/api/v1/nodes",
    ]);
    let content_types = proptest::sample::select(vec![
        "application/json",
        "application/yaml",
        "application/merge-patch+json",
        "application/json-patch+json",
        "application/strategic-merge-patch+json",
        "application/apply-patch+yaml",
        "application/vnd.kubernetes.protobuf",
        "text/garbage",
    ]);
    let bodies = proptest::prop_oneof![
        "\\PC{0,200}",
        proptest::collection::vec(proptest::num::u8::ANY, 0..200).prop_map(|b| String::from_utf8_lossy(&b).into_owned()),
        proptest::sample::select(vec![
            "null", "[]", "{}", "\"x\"", "{\"spec\":null}", "{\"spec\":{\"token\":5}}", "{\"metadata\":{\"name\":7}}",
            "{\"spec\":{\"audiences\":\"a\"}}", "{\"spec\":{\"expirationSeconds\":1e99}}", "[{\"op\":\"remove\",\"path\":\"/metadata\"}]",
            "{\"spec\":{\"hosts\":[\"*\"],\"authentication\":{\"a\":{\"jwt\":{}}}}}",
        ])
        .prop_map(str::to_owned),
    ];
    let queries = proptest::sample::select(vec!["", "?watch=maybe", "?limit=-1", "?continue=%%%", "?labelSelector=a%20in%20(", "?fieldSelector=x", "?dryRun=Nope", "?fieldValidation=Bogus", "?pretty=1"]);
    let strategy = (0..methods.len(), paths, content_types, bodies, queries);
    for _ in 0..300 {
        let (method, path, content_type, body, query) = strategy.new_tree(&mut runner).unwrap().current();
        let uri = format!("{path}{query}");
        let reply = s.send(request(methods[method].clone(), &uri, Some(ADMIN), &[("content-type", content_type)], Some(&body))).await;
        if reply.status.as_u16() >= 400 {
            assert_eq!(reply.body["kind"], "Status", "{} {uri} ({content_type}) {body:?} → {} {}", methods[method], reply.status, reply.body);
            assert_eq!(reply.body["code"], reply.status.as_u16());
        }
    }
}

#[tokio::test]
async fn a_dry_run_is_admitted_like_a_real_write() {
    let s = server().await;
    s.namespace("ns").await;
    let bad = json!({"apiVersion": "authorino.kuadrant.io/v1beta3", "kind": "AuthConfig", "metadata": {"name": "bad"},
                     "spec": {"hosts": ["h"], "authentication": {"k": {"oauth2Introspection": {}}}}});
    for uri in ["/apis/authorino.kuadrant.io/v1beta3/namespaces/ns/authconfigs?dryRun=All", "/apis/authorino.kuadrant.io/v1beta3/namespaces/ns/authconfigs"] {
        let reply = s.post(uri, bad.clone()).await;
        assert_eq!(reply.status.as_u16(), 422, "{uri}: {}", reply.body);
        assert_eq!(reply.body["reason"], "Invalid");
    }
    let secret = s.post("/api/v1/namespaces/ns/secrets?dryRun=All", json!({"metadata": {"name": "s"}, "stringData": {"k": "v"}})).await;
    assert_eq!(secret.status, StatusCode::CREATED, "{}", secret.body);
    assert_eq!(secret.body["data"]["k"], "dg==", "stringData is folded into data on a dry run too");
    assert!(secret.body.get("stringData").is_none());
}

/// A ServiceAccount `ns/name` holding `rules` in its namespace (a Role and its RoleBinding);
/// returns its token.
async fn granted(s: &common::Server, ns: &str, name: &str, rules: Value) -> String {
    s.service_account(ns, name, json!({})).await;
    let rbac = "/apis/rbac.authorization.k8s.io/v1/namespaces";
    let role = s.post(&format!("{rbac}/{ns}/roles"), json!({"metadata": {"name": name}, "rules": rules})).await;
    assert_eq!(role.status, StatusCode::CREATED, "{}", role.body);
    let binding = json!({"metadata": {"name": name}, "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": name},
                         "subjects": [{"kind": "ServiceAccount", "name": name, "namespace": ns}]});
    let bound = s.post(&format!("{rbac}/{ns}/rolebindings"), binding).await;
    assert_eq!(bound.status, StatusCode::CREATED, "{}", bound.body);
    let issued = s.post(&format!("/api/v1/namespaces/{ns}/serviceaccounts/{name}/token"), json!({})).await;
    issued.body["status"]["token"].as_str().unwrap().to_owned()
}

#[tokio::test]
async fn a_grant_in_one_namespace_reaches_nothing_outside_it() {
    let s = server().await;
    for ns in ["a", "victim"] {
        s.namespace(ns).await;
    }
    let tenant = granted(&s, "a", "tenant", json!([{"apiGroups": [""], "resources": ["namespaces"], "verbs": ["get", "list", "delete"]}])).await;
    // `/namespaces/a/namespaces/…` is authorized in `a`, and has no route: 404, as in kube.
    let listed = s.send(request(Method::GET, "/api/v1/namespaces/a/namespaces", Some(&tenant), &[], None)).await;
    assert_status(&listed, 404, "NotFound", "the server could not find the requested resource");
    let deleted = s.send(request(Method::DELETE, "/api/v1/namespaces/a/namespaces/victim", Some(&tenant), &[], None)).await;
    assert_status(&deleted, 404, "NotFound", "the server could not find the requested resource");
    assert_eq!(s.get("/api/v1/namespaces/victim").await.status, StatusCode::OK, "still there");
    // The namespace's own object is in the namespace, for RBAC as in kube.
    let own = s.send(request(Method::GET, "/api/v1/namespaces/a", Some(&tenant), &[], None)).await;
    assert_eq!((own.status, own.body["metadata"]["name"].as_str()), (StatusCode::OK, Some("a")));
    let other = s.send(request(Method::DELETE, "/api/v1/namespaces/victim", Some(&tenant), &[], None)).await;
    assert_eq!(other.status, StatusCode::FORBIDDEN);
}

#[tokio::test]
async fn a_denial_names_the_missing_role_of_the_callers_binding() {
    let s = server().await;
    s.namespace("t").await;
    let reader = granted(&s, "t", "reader", json!([{"apiGroups": [""], "resources": ["secrets"], "verbs": ["get"]}])).await;
    let binding = json!({"metadata": {"name": "dangling"}, "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "not-yet"},
                         "subjects": [{"kind": "ServiceAccount", "name": "reader", "namespace": "t"}]});
    let bound = s.post("/apis/rbac.authorization.k8s.io/v1/clusterrolebindings", binding).await;
    assert_eq!(bound.status, StatusCode::CREATED, "{}", bound.body);

    let listed = s.send(request(Method::GET, "/api/v1/namespaces/t/secrets", Some(&reader), &[], None)).await;
    assert_status(
        &listed,
        403,
        "Forbidden",
        r#"secrets is forbidden: User "system:serviceaccount:t:reader" cannot list resource "secrets" in API group "" in the namespace "t": RBAC: clusterrole.rbac.authorization.k8s.io "not-yet" not found"#,
    );
    let review = json!({"apiVersion": "authorization.k8s.io/v1", "kind": "SelfSubjectAccessReview",
                        "spec": {"resourceAttributes": {"namespace": "t", "verb": "list", "resource": "secrets"}}});
    let reviewed = s.send(request(Method::POST, "/apis/authorization.k8s.io/v1/selfsubjectaccessreviews", Some(&reader), &[("content-type", "application/json")], Some(&review.to_string()))).await;
    assert_eq!(reviewed.status, StatusCode::CREATED, "{}", reviewed.body);
    assert_eq!(reviewed.body["status"], json!({"allowed": false, "reason": r#"RBAC: clusterrole.rbac.authorization.k8s.io "not-yet" not found"#}));
    // The rules review lists what could be read and says what could not.
    let rules = json!({"apiVersion": "authorization.k8s.io/v1", "kind": "SelfSubjectRulesReview", "spec": {"namespace": "t"}});
    let reviewed = s.send(request(Method::POST, "/apis/authorization.k8s.io/v1/selfsubjectrulesreviews", Some(&reader), &[("content-type", "application/json")], Some(&rules.to_string()))).await;
    assert_eq!(reviewed.status, StatusCode::CREATED, "{}", reviewed.body);
    assert_eq!(reviewed.body["status"]["evaluationError"], r#"clusterrole.rbac.authorization.k8s.io "not-yet" not found"#);
    assert_eq!(reviewed.body["status"]["incomplete"], false);
    assert!(reviewed.body["status"]["resourceRules"].as_array().unwrap().iter().any(|r| r["resources"] == json!(["secrets"])), "{}", reviewed.body);
    // What the caller is granted still works, and carries no error.
    let own = s.send(request(Method::GET, "/api/v1/namespaces/t/secrets/x", Some(&reader), &[], None)).await;
    assert_status(&own, 404, "NotFound", r#"secrets "x" not found"#);
}

#[tokio::test]
async fn an_apply_that_creates_needs_create_and_a_named_get_stays_a_get() {
    let s = server().await;
    s.namespace("t").await;
    s.service_account("t", "deployer", json!({})).await;
    let worker = granted(&s, "t", "worker", json!([{"apiGroups": [""], "resources": ["secrets"], "verbs": ["get", "patch"]},
                                                   {"apiGroups": [""], "resources": ["serviceaccounts"], "resourceNames": ["deployer"], "verbs": ["get"]}]))
    .await;
    let secret = r#"{"apiVersion":"v1","kind":"Secret","metadata":{"name":"stolen","annotations":{"kubernetes.io/service-account.name":"deployer"}},"type":"kubernetes.io/service-account-token"}"#;
    let applied = s
        .send(request(Method::PATCH, "/api/v1/namespaces/t/secrets/stolen?fieldManager=x", Some(&worker), &[("content-type", "application/apply-patch+yaml")], Some(secret)))
        .await;
    assert_status(&applied, 403, "Forbidden", r#"secrets "stolen" is forbidden: "#);
    assert_eq!(s.get("/api/v1/namespaces/t/secrets/stolen").await.status, StatusCode::NOT_FOUND, "nothing was created");
    // With create as well, the same apply creates.
    let admin_applied = s.call(Method::PATCH, "/api/v1/namespaces/t/secrets/made?fieldManager=x", &[("content-type", "application/apply-patch+yaml")], Some(json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "made"}}))).await;
    assert_eq!(admin_applied.status, StatusCode::CREATED, "{}", admin_applied.body);

    // `?watch=true` on a named GET is still a get (kube's requestinfo), allowed by `get` alone.
    let got = s.send(request(Method::GET, "/api/v1/namespaces/t/serviceaccounts/deployer?watch=true", Some(&worker), &[], None)).await;
    assert_eq!((got.status, got.body["kind"].as_str()), (StatusCode::OK, Some("ServiceAccount")), "{}", got.body);
}

/// A PUT that creates a missing Role (kube's RBAC strategies allow create on update) needs
/// `create` as well as `update`, as kube's update handler asks, and may still not escalate.
#[tokio::test]
async fn a_put_that_creates_needs_create_and_grants_nothing_held_by_no_one() {
    let s = server().await;
    s.namespace("t").await;
    let roles = "/apis/rbac.authorization.k8s.io/v1/namespaces/t/roles";
    let role = |name: &str, verbs: Value| json!({"metadata": {"name": name}, "rules": [{"apiGroups": [""], "resources": ["pods"], "verbs": verbs}]}).to_string();
    let put = |token: String, name: &'static str, body: String| {
        let s = &s;
        async move { s.send(request(Method::PUT, &format!("{roles}/{name}"), Some(&token), &[("content-type", "application/json")], Some(&body))).await }
    };
    let updater = granted(&s, "t", "updater", json!([{"apiGroups": ["rbac.authorization.k8s.io"], "resources": ["roles"], "verbs": ["update"]},
                                                   {"apiGroups": [""], "resources": ["pods"], "verbs": ["get"]}]))
    .await;
    // kube validates the object (its registry's BeforeCreate) before it authorizes the create,
    // and checks escalation (as the RBAC storage builds the object) before both.
    let invalid = put(updater.clone(), "bad", role("bad", json!([]))).await;
    assert_status(&invalid, 422, "Invalid", r#"Role.rbac.authorization.k8s.io "bad" is invalid: rules[0].verbs: Required value: verbs must contain at least one value"#);
    let escalating_invalid = json!({"metadata": {"name": "worse"}, "rules": [{"apiGroups": [""], "resources": ["secrets"], "verbs": ["get"]},
                                                                            {"apiGroups": [""], "resources": ["pods"], "verbs": []}]});
    for (name, body) in [("worse", escalating_invalid.to_string()), ("wider", role("wider", json!(["get", "delete"])))] {
        let refused = put(updater.clone(), name, body).await;
        assert_eq!(refused.status, StatusCode::FORBIDDEN, "{}", refused.body);
        let message = refused.body["message"].as_str().unwrap();
        assert!(message.contains("is attempting to grant RBAC permissions not currently held"), "{name}: {message}");
    }
    let refused = put(updater, "r", role("r", json!(["get"]))).await;
    assert_status(&refused, 403, "Forbidden", r#"roles.rbac.authorization.k8s.io "r" is forbidden: "#);
    assert_eq!(refused.body["details"], json!({"name": "r", "group": "rbac.authorization.k8s.io", "kind": "roles"}));
    assert_eq!(s.get(&format!("{roles}/r")).await.status, StatusCode::NOT_FOUND, "nothing was created");

    let creator = granted(&s, "t", "creator", json!([{"apiGroups": ["rbac.authorization.k8s.io"], "resources": ["roles"], "verbs": ["update", "create"]},
                                                   {"apiGroups": [""], "resources": ["pods"], "verbs": ["get"]}]))
    .await;
    let created = put(creator.clone(), "r", role("r", json!(["get"]))).await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.body);
    let escalating = put(creator, "wide", role("wide", json!(["get", "delete"]))).await;
    assert_eq!(escalating.status, StatusCode::FORBIDDEN, "{}", escalating.body);
    let message = escalating.body["message"].as_str().unwrap();
    assert!(
        message.starts_with(r#"roles.rbac.authorization.k8s.io "wide" is forbidden: user "system:serviceaccount:t:creator" (groups="#)
            && message.contains("is attempting to grant RBAC permissions not currently held"),
        "{message}"
    );
    assert_eq!(s.get(&format!("{roles}/wide")).await.status, StatusCode::NOT_FOUND, "nothing was created");

    // A caller who may create Roles in every namespace, holding nothing they would grant:
    // kube's NamespaceLifecycle admission answers a missing namespace before the RBAC
    // storage checks escalation.
    s.service_account("t", "anywhere", json!({})).await;
    let rbac = "/apis/rbac.authorization.k8s.io/v1";
    let cluster_role = json!({"metadata": {"name": "anywhere"}, "rules": [{"apiGroups": ["rbac.authorization.k8s.io"], "resources": ["roles"], "verbs": ["create"]}]});
    assert_eq!(s.post(&format!("{rbac}/clusterroles"), cluster_role).await.status, StatusCode::CREATED);
    let binding = json!({"metadata": {"name": "anywhere"}, "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "anywhere"},
                         "subjects": [{"kind": "ServiceAccount", "name": "anywhere", "namespace": "t"}]});
    assert_eq!(s.post(&format!("{rbac}/clusterrolebindings"), binding).await.status, StatusCode::CREATED);
    let anywhere = s.post("/api/v1/namespaces/t/serviceaccounts/anywhere/token", json!({})).await.body["status"]["token"].as_str().unwrap().to_owned();
    let post = |namespace: &str| {
        let (s, token, body) = (&s, anywhere.clone(), role("wide", json!(["get"])));
        let uri = format!("{rbac}/namespaces/{namespace}/roles");
        async move { s.send(request(Method::POST, &uri, Some(&token), &[("content-type", "application/json")], Some(&body))).await }
    };
    assert_status(&post("gone").await, 404, "NotFound", r#"namespaces "gone" not found"#);
    let escalating = post("t").await;
    assert_eq!(escalating.status, StatusCode::FORBIDDEN, "{}", escalating.body);
    assert!(escalating.body["message"].as_str().unwrap().contains("is attempting to grant RBAC permissions not currently held"), "{}", escalating.body);
}

#[tokio::test]
async fn a_rules_review_needs_a_namespace() {
    let s = server().await;
    let uri = "/apis/authorization.k8s.io/v1/selfsubjectrulesreviews";
    let nowhere = s.post(uri, json!({"apiVersion": "authorization.k8s.io/v1", "kind": "SelfSubjectRulesReview", "spec": {}})).await;
    assert_status(&nowhere, 400, "BadRequest", "no namespace on request");
    let somewhere = s.post(uri, json!({"spec": {"namespace": "default"}})).await;
    assert_eq!(somewhere.status, StatusCode::CREATED, "{}", somewhere.body);
    assert!(somewhere.body["status"]["resourceRules"].as_array().is_some_and(|rules| !rules.is_empty()), "{}", somewhere.body);
}

#[tokio::test]
async fn a_list_pinned_to_one_name_is_authorized_by_that_name() {
    let s = server().await;
    s.namespace("ns").await;
    s.service_account("ns", "bot", json!({})).await;
    let reader = granted(&s, "ns", "reader", json!([{"apiGroups": [""], "resources": ["serviceaccounts"], "resourceNames": ["bot"], "verbs": ["get", "list", "watch"]}])).await;
    let pinned = s.send(request(Method::GET, "/api/v1/namespaces/ns/serviceaccounts?fieldSelector=metadata.name%3Dbot", Some(&reader), &[], None)).await;
    assert_eq!(pinned.status, StatusCode::OK, "{}", pinned.body);
    assert_eq!(pinned.body["items"].as_array().map(Vec::len), Some(1));
    let watched = s.send(request(Method::GET, "/api/v1/namespaces/ns/serviceaccounts?watch=true&timeoutSeconds=1&fieldSelector=metadata.name%3Dbot", Some(&reader), &[], None)).await;
    assert_eq!(watched.status, StatusCode::OK);
    // Unpinned, or pinned to another name: the grant does not cover it.
    let all = s.send(request(Method::GET, "/api/v1/namespaces/ns/serviceaccounts", Some(&reader), &[], None)).await;
    assert_eq!(all.status, StatusCode::FORBIDDEN);
    let other = s.send(request(Method::GET, "/api/v1/namespaces/ns/serviceaccounts?fieldSelector=metadata.name%3Ddefault", Some(&reader), &[], None)).await;
    assert_status(&other, 403, "Forbidden", r#"serviceaccounts "default" is forbidden: User "system:serviceaccount:ns:reader" cannot list resource "serviceaccounts" in API group "" in the namespace "ns""#);
}

#[tokio::test]
async fn escalate_limited_to_a_name_covers_updates_of_it_not_creates() {
    let s = server().await;
    s.namespace("ns").await;
    let rbac = "rbac.authorization.k8s.io";
    let maker = granted(&s, "ns", "maker", json!([{"apiGroups": [rbac], "resources": ["roles"], "verbs": ["create", "update", "get"]},
                                                  {"apiGroups": [rbac], "resources": ["roles"], "resourceNames": ["x"], "verbs": ["escalate"]}]))
    .await;
    let role = |rules: Value| json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role", "metadata": {"name": "x", "namespace": "ns"}, "rules": rules}).to_string();
    let secrets = json!([{"apiGroups": [""], "resources": ["secrets"], "verbs": ["*"]}]);
    // A create names no object in its URL, so `escalate` on x does not cover it (kube's check).
    let created = s
        .send(request(Method::POST, "/apis/rbac.authorization.k8s.io/v1/namespaces/ns/roles", Some(&maker), &[("content-type", "application/json")], Some(&role(secrets.clone()))))
        .await;
    assert_eq!(created.status, StatusCode::FORBIDDEN, "{}", created.body);
    assert!(created.body["message"].as_str().unwrap().contains("is attempting to grant RBAC permissions not currently held"), "{}", created.body);
    // An update of x does.
    assert_eq!(s.post("/apis/rbac.authorization.k8s.io/v1/namespaces/ns/roles", json!({"metadata": {"name": "x"}, "rules": []})).await.status, StatusCode::CREATED);
    let updated = s
        .send(request(Method::PUT, "/apis/rbac.authorization.k8s.io/v1/namespaces/ns/roles/x", Some(&maker), &[("content-type", "application/json")], Some(&role(secrets))))
        .await;
    assert_eq!(updated.status, StatusCode::OK, "{}", updated.body);
}
