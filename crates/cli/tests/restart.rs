//! SIGKILL and restart on the same data directory and port: ServiceAccounts, uids, signing
//! keys, issued tokens and the admin credential all survive.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a failed unwrap is a failed test
#![allow(clippy::disallowed_methods)] // end-to-end tests bound waits for real processes with the real clock

mod common;

use common::{Server, jwt_payload};
use serde_json::{Value, json};

/// POST a TokenReview through `kubectl create --raw` (no discovery involved).
fn raw_review(server: &Server, token: &str, audiences: &[&str]) -> Value {
    let body = json!({"apiVersion": "authentication.k8s.io/v1", "kind": "TokenReview", "spec": {"token": token, "audiences": audiences}});
    let out = server.kubectl_stdin_ok(&["create", "--raw", "/apis/authentication.k8s.io/v1/tokenreviews", "-f", "-"], &body.to_string());
    serde_json::from_str(&out).unwrap_or_else(|e| panic!("not JSON ({e}): {out}"))
}

fn jwks(server: &Server) -> Value {
    serde_json::from_str(&server.kubectl_ok(&["get", "--raw", "/openid/v1/jwks"])).unwrap()
}

#[test]
fn serviceaccounts_uids_keys_tokens_and_admin_credential_survive_sigkill() {
    let mut server = Server::start();
    assert_eq!(server.kubectl_ok(&["create", "namespace", "demo"]).trim(), "namespace/demo created");
    assert_eq!(server.kubectl_ok(&["create", "sa", "api-consumer-1", "-n", "demo"]).trim(), "serviceaccount/api-consumer-1 created");
    let uid = server.kubectl_ok(&["get", "sa", "api-consumer-1", "-n", "demo", "-o", "jsonpath={.metadata.uid}"]);
    assert_eq!(uid.len(), 36, "{uid:?}");
    let token = server.token("demo", "api-consumer-1", &["--audience", "talker-api"]);
    let api_token = server.token("demo", "api-consumer-1", &[]);
    let keys = jwks(&server);
    let admin = server.admin_token();
    let kubeconfig_before = std::fs::read_to_string(server.kubeconfig()).unwrap();
    assert_eq!(raw_review(&server, &token, &["talker-api"])["status"]["authenticated"], true);

    let port = server.port;
    server.restart();
    assert_eq!(server.port, port, "same port");
    assert_ne!(server.stderr(), "", "the second run logs its own start");

    assert_eq!(
        server.kubectl_ok(&["get", "sa", "api-consumer-1", "-n", "demo", "-o", "jsonpath={.metadata.uid}"]),
        uid,
        "the ServiceAccount survives with its uid"
    );
    assert_eq!(jwks(&server), keys, "the signing keys survive");
    let reviewed = raw_review(&server, &token, &["talker-api"]);
    assert_eq!(reviewed["status"]["authenticated"], true, "{reviewed}");
    assert_eq!(reviewed["status"]["user"]["username"], "system:serviceaccount:demo:api-consumer-1");
    assert_eq!(reviewed["status"]["user"]["uid"], uid);
    let whoami = server.kubectl_json(&["auth", "whoami", "--token", &api_token, "-o", "json"]);
    assert_eq!(whoami["status"]["userInfo"]["uid"], uid, "{whoami}");

    assert_eq!(server.admin_token(), admin, "the admin token is reused");
    assert_eq!(std::fs::read_to_string(server.kubeconfig()).unwrap(), kubeconfig_before, "same kubeconfig (server, CA, token)");
    assert!(server.kubectl_ok(&["auth", "whoami"]).contains("tokenwarden-admin"));
    assert!(server.kubectl_ok(&["get", "namespaces", "-o", "name"]).lines().any(|l| l == "namespace/demo"));

    // Tokens issued after the restart are signed by the same key.
    let after = server.token("demo", "api-consumer-1", &[]);
    assert_eq!(jwt_payload(&after)["kubernetes.io"]["serviceaccount"]["uid"], uid);
}

#[test]
fn the_bootstrap_serviceaccount_and_its_tokens_survive_sigkill() {
    let mut server = Server::start();
    let token = server.token("default", "default", &["--audience", "talker-api"]);
    let api_token = server.token("default", "default", &[]);
    let uid = jwt_payload(&token)["kubernetes.io"]["serviceaccount"]["uid"].as_str().unwrap().to_owned();
    let keys = jwks(&server);
    let admin = server.admin_token();

    server.restart();

    assert_eq!(jwks(&server), keys);
    assert_eq!(server.admin_token(), admin);
    let reviewed = raw_review(&server, &token, &["talker-api"]);
    assert_eq!(reviewed["status"]["authenticated"], true, "{reviewed}");
    assert_eq!(reviewed["status"]["user"]["uid"], uid, "{reviewed}");
    let whoami = server.kubectl_json(&["auth", "whoami", "--token", &api_token, "-o", "json"]);
    assert_eq!(whoami["status"]["userInfo"]["username"], "system:serviceaccount:default:default");
    assert_eq!(whoami["status"]["userInfo"]["uid"], uid, "the bootstrap SA was not re-created with a new uid");
    let again = server.token("default", "default", &[]);
    assert_eq!(jwt_payload(&again)["kubernetes.io"]["serviceaccount"]["uid"], uid.as_str());

    // A second SIGKILL and restart changes nothing either.
    server.restart();
    assert_eq!(raw_review(&server, &token, &["talker-api"])["status"]["authenticated"], true);
    assert_eq!(jwks(&server), keys);
}

#[test]
fn a_lost_admin_kubeconfig_gets_a_new_token_and_the_old_one_is_revoked() {
    let mut server = Server::start();
    let old = server.admin_token();
    server.kill();
    std::fs::remove_file(server.kubeconfig()).unwrap();
    server.restart();
    let new = server.admin_token();
    assert_ne!(new, old);
    assert!(server.kubectl_ok(&["auth", "whoami"]).contains("tokenwarden-admin"));
    let err = server.kubectl_err(&["auth", "whoami", "--token", &old]);
    assert_eq!(err.trim(), "error: You must be logged in to the server (Unauthorized)");
}
