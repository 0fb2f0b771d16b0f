//! Cluster mode, issue 8: deleting a ServiceAccount's Pod, Secret or Namespace (or a legacy
//! token Secret) through one replica makes its tokens fail review on the other replica within
//! one second, and AuthConfig changes made through one replica reach the other replica's
//! authorizer within one second. A real three-member etcd cluster (shared by the tests of this
//! binary) and two real `tokenwarden serve --store etcd` replicas per test.

// Helpers outside `#[test]` functions unwrap too (allow-unwrap-in-tests covers only the latter).
#![allow(clippy::unwrap_used)]

mod common;

use std::time::Duration;

use base64::Engine as _;
use serde_json::{Value, json};
use tokenwarden_store::clock::Stopwatch;
use tokenwarden_testkit::etcd::EtcdCluster;

use common::cluster::{two_replicas, two_replicas_with};
use common::{Server, describe, free_port, http, unique};

/// The issue's bound: a change made through one replica holds on every replica within it.
const PROPAGATION_SECONDS: f64 = 1.0;
const POLL: Duration = Duration::from_millis(50);

/// `status.error` of a bound token whose Pod or Secret is gone (kube-apiserver's words).
const BOUND_INVALIDATED: &str = "[invalid bearer token, service account token has been invalidated]";
/// `status.error` of a legacy Secret token whose Secret is gone.
const LEGACY_INVALIDATED: &str = "[invalid bearer token, Token has been invalidated]";

/// Asks `ask` every 50 ms until `done` holds for the answer; only questions asked within one
/// second of `since` count. Returns the first answer that holds, or else the last one asked
/// within the second (for the caller's exact assertion to fail on).
fn within_a_second<T>(since: &Stopwatch, mut ask: impl FnMut() -> T, done: impl Fn(&T) -> bool) -> T {
    let mut answer = ask();
    loop {
        if done(&answer) {
            return answer;
        }
        std::thread::sleep(POLL);
        if since.elapsed_seconds() >= PROPAGATION_SECONDS {
            return answer;
        }
        answer = ask();
    }
}

/// The TokenReview status `server` gives `token` (`tokenwarden review -o json`).
fn review(server: &Server, token: &str) -> Value {
    let out = server.tool(&["review", token, "-o", "json"]);
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("tokenwarden review: not JSON ({e})\n{}", describe(&out)))
}

/// The status of a refused review, exactly as kube-apiserver writes it.
fn refused(error: &str) -> Value {
    json!({"user": {}, "error": error})
}

/// Asserts that `server` authenticates `token` as `username` within a second of `since`
/// (objects written through the other replica reach this one's index through etcd's watch).
fn accepted_within_a_second(server: &Server, token: &str, username: &str, since: &Stopwatch) {
    let status = within_a_second(since, || review(server, token), |s| s["authenticated"] == true);
    assert_eq!(status["authenticated"], true, "not accepted within 1 s: {status}\n--- server stderr ---\n{}", server.stderr());
    assert_eq!(status["user"]["username"], username, "{status}");
}

/// Asserts that `server` refuses `token` with `error` within a second of `since`.
fn refused_within_a_second(server: &Server, token: &str, error: &str, since: &Stopwatch, what: &str) {
    let status = within_a_second(since, || review(server, token), |s| s["error"] == error);
    assert_eq!(status, refused(error), "{what}: not refused as expected within 1 s\n--- server stderr ---\n{}", server.stderr());
}

/// A namespace with the ServiceAccount `bot`, created through `server`.
fn namespace_with_bot(server: &Server, prefix: &str) -> String {
    let ns = unique(prefix);
    server.kubectl_ok(&["create", "namespace", &ns]);
    server.kubectl_ok(&["create", "serviceaccount", "bot", "-n", &ns]);
    ns
}

fn bot(ns: &str) -> String {
    format!("system:serviceaccount:{ns}:bot")
}

#[test]
fn deleting_a_pod_or_secret_through_one_replica_revokes_its_bound_tokens_on_the_other_within_a_second() {
    let (a, b, _secrets) = two_replicas(EtcdCluster::shared());
    let ns = namespace_with_bot(&a, "bound");
    let pod = format!(
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: worker\n  namespace: {ns}\nspec:\n  serviceAccountName: bot\n  containers:\n  - name: c\n    image: busybox\n"
    );
    a.kubectl_stdin_ok(&["create", "-f", "-"], &pod);
    a.kubectl_ok(&["create", "secret", "generic", "pin", "-n", &ns, "--from-literal=purpose=binding"]);
    let created = Stopwatch::start();
    let pod_token = a.token(&ns, "bot", &["--bound-object-kind", "Pod", "--bound-object-name", "worker"]);
    let secret_token = a.token(&ns, "bot", &["--bound-object-kind", "Secret", "--bound-object-name", "pin"]);
    accepted_within_a_second(&b, &pod_token, &bot(&ns), &created);
    accepted_within_a_second(&b, &secret_token, &bot(&ns), &created);
    let extra = &review(&b, &pod_token)["user"]["extra"];
    assert_eq!(extra["authentication.kubernetes.io/pod-name"], json!(["worker"]), "{extra}");

    // The Pod, deleted through B: B refuses at once (its write waits for its own index), A
    // within a second. The Secret-bound token of the same ServiceAccount is unaffected.
    b.kubectl_ok(&["delete", "pod", "worker", "-n", &ns]);
    let deleted = Stopwatch::start();
    assert_eq!(review(&b, &pod_token), refused(BOUND_INVALIDATED));
    refused_within_a_second(&a, &pod_token, BOUND_INVALIDATED, &deleted, "A, the Pod deleted through B");
    assert_eq!(review(&a, &secret_token)["authenticated"], true);

    // The Secret, deleted through A: B refuses within a second.
    a.kubectl_ok(&["delete", "secret", "pin", "-n", &ns]);
    let deleted = Stopwatch::start();
    assert_eq!(review(&a, &secret_token), refused(BOUND_INVALIDATED));
    refused_within_a_second(&b, &secret_token, BOUND_INVALIDATED, &deleted, "B, the Secret deleted through A");
}

#[test]
fn deleting_a_legacy_token_secret_through_one_replica_revokes_its_token_on_the_other_within_a_second() {
    let (a, b, _secrets) = two_replicas(EtcdCluster::shared());
    let ns = namespace_with_bot(&a, "legacy");
    let secret = format!(
        "apiVersion: v1\nkind: Secret\nmetadata:\n  name: bot-token\n  namespace: {ns}\n  annotations:\n    kubernetes.io/service-account.name: bot\ntype: kubernetes.io/service-account-token\n"
    );
    a.kubectl_stdin_ok(&["create", "-f", "-"], &secret);
    let created = Stopwatch::start();
    let encoded = a.kubectl_ok(&["get", "secret", "bot-token", "-n", &ns, "-o", "jsonpath={.data.token}"]);
    let token = String::from_utf8(base64::engine::general_purpose::STANDARD.decode(encoded.trim()).unwrap()).unwrap();
    assert_eq!(common::jwt_payload(&token)["iss"], "kubernetes/serviceaccount", "a legacy Secret token");
    accepted_within_a_second(&b, &token, &bot(&ns), &created);

    b.kubectl_ok(&["delete", "secret", "bot-token", "-n", &ns]);
    let deleted = Stopwatch::start();
    assert_eq!(review(&b, &token), refused(LEGACY_INVALIDATED));
    refused_within_a_second(&a, &token, LEGACY_INVALIDATED, &deleted, "A, the legacy token Secret deleted through B");
}

#[test]
fn deleting_a_namespace_through_one_replica_revokes_its_serviceaccounts_tokens_on_the_other_within_a_second() {
    let (a, b, _secrets) = two_replicas(EtcdCluster::shared());
    let ns = namespace_with_bot(&a, "doomed");
    let created = Stopwatch::start();
    let bot_token = a.token(&ns, "bot", &[]);
    let default_token = a.token(&ns, "default", &[]);
    accepted_within_a_second(&b, &bot_token, &bot(&ns), &created);
    accepted_within_a_second(&b, &default_token, &format!("system:serviceaccount:{ns}:default"), &created);

    a.kubectl_ok(&["delete", "namespace", &ns]);
    let deleted = Stopwatch::start();
    for (sa, token) in [("bot", &bot_token), ("default", &default_token)] {
        let error = format!(r#"[invalid bearer token, serviceaccounts "{sa}" not found]"#);
        assert_eq!(review(&a, token), refused(&error));
        refused_within_a_second(&b, token, &error, &deleted, &format!("B, the namespace of {sa} deleted through A"));
    }
}

const HOST: &str = "talker-api.127.0.0.1.nip.io";
const MOVED_HOST: &str = "talker-api-v2.127.0.0.1.nip.io";

/// Authorino's talker-api AuthConfig for `host`: ServiceAccount tokens for `talker-api`; with
/// `only_path`, a pattern-matching rule that allows just that path.
fn authconfig(host: &str, only_path: Option<&str>) -> String {
    let mut spec = json!({
        "hosts": [host],
        "authentication": {"authorized-service-accounts": {"kubernetesTokenReview": {"audiences": ["talker-api"]}}},
        "response": {"success": {"headers": {"x-auth-user": {"plain": {"selector": "auth.identity.user.username"}}}}},
    });
    if let Some(path) = only_path {
        spec["authorization"] =
            json!({"only-one-path": {"patternMatching": {"patterns": [{"selector": "context.request.http.path", "operator": "eq", "value": path}]}}});
    }
    json!({"apiVersion": "authorino.kuadrant.io/v1beta3", "kind": "AuthConfig", "metadata": {"name": "talker-api-protection"}, "spec": spec})
        .to_string()
}

#[test]
fn authconfig_changes_through_one_replica_reach_both_authorizers_within_a_second() {
    let (port_a, port_b) = (free_port(), free_port());
    let (listen_a, listen_b) = (format!("127.0.0.1:{port_a}"), format!("127.0.0.1:{port_b}"));
    let (a, b, _secrets) = two_replicas_with(EtcdCluster::shared(), &["--authz-http-listen", &listen_a], &["--authz-http-listen", &listen_b]);
    a.kubectl_ok(&["create", "serviceaccount", "api-consumer"]);
    let token = a.token("default", "api-consumer", &["--audience", "talker-api"]);
    let user = "x-auth-user: system:serviceaccount:default:api-consumer";
    let not_found = "x-ext-auth-reason: service not found";
    // Each authorizer's answer to `path` on `host`, within a second of `since`, as `status`.
    let answers = |since: &Stopwatch, path: &str, host: &str, status: u16| {
        [("A", port_a), ("B", port_b)].map(|(name, port)| {
            let (got, head, _) = within_a_second(since, || http(port, path, host, Some(&token)), |answer| answer.0 == status);
            assert_eq!(got, status, "{name}'s authorizer: GET {path} on {host} within 1 s\n{head}");
            head
        })
    };
    assert_eq!(http(port_b, "/hello", HOST, Some(&token)).0, 404, "no AuthConfig yet");

    // Created through A.
    a.kubectl_stdin_ok(&["apply", "-f", "-"], &authconfig(HOST, None));
    let since = Stopwatch::start();
    for head in answers(&since, "/other", HOST, 200) {
        assert!(head.contains(user), "{head}");
    }

    // An authorization rule added through A: only /hello is allowed from now on.
    a.kubectl_stdin_ok(&["apply", "-f", "-"], &authconfig(HOST, Some("/hello")));
    let since = Stopwatch::start();
    for head in answers(&since, "/other", HOST, 403) {
        assert!(head.contains("x-ext-auth-reason: unauthorized"), "{head}");
    }
    for port in [port_a, port_b] {
        assert_eq!(http(port, "/hello", HOST, Some(&token)).0, 200);
    }

    // Its host changed through B: the old host is unknown to both.
    b.kubectl_stdin_ok(&["apply", "-f", "-"], &authconfig(MOVED_HOST, Some("/hello")));
    let since = Stopwatch::start();
    for head in answers(&since, "/hello", MOVED_HOST, 200) {
        assert!(head.contains(user), "{head}");
    }
    for port in [port_a, port_b] {
        let (status, head, _) = http(port, "/hello", HOST, Some(&token));
        assert_eq!(status, 404, "{head}");
        assert!(head.contains(not_found), "{head}");
    }

    // Deleted through A: both answer as Authorino does for an unknown host.
    a.kubectl_ok(&["delete", "authconfig", "talker-api-protection"]);
    let since = Stopwatch::start();
    for head in answers(&since, "/hello", MOVED_HOST, 404) {
        assert!(head.contains(not_found), "{head}");
    }
}
