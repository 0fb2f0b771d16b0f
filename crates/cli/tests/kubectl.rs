//! The real kubectl against `tokenwarden serve`: what the project's users type.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a failed unwrap is a failed test
#![allow(clippy::disallowed_methods)] // end-to-end tests bound waits for real processes with the real clock

mod common;

use std::time::{Duration, Instant};

use common::{Server, describe, jwt_payload, text};
use serde_json::{Value, json};

/// Creates a namespace and a ServiceAccount in it, asserting kubectl's messages.
fn namespace_and_sa(server: &Server, ns: &str, sa: &str) {
    assert_eq!(server.kubectl_ok(&["create", "namespace", ns]).trim(), format!("namespace/{ns} created"));
    assert_eq!(server.kubectl_ok(&["create", "serviceaccount", sa, "-n", ns]).trim(), format!("serviceaccount/{sa} created"));
}

fn pod_manifest(ns: &str, pod: &str, sa: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: {pod}\n  namespace: {ns}\nspec:\n  serviceAccountName: {sa}\n  containers:\n  - name: main\n    image: registry.k8s.io/pause:3.10\n"
    )
}

fn token_review_manifest(name: &str, token: &str, audiences: &[&str]) -> String {
    let mut text = format!("apiVersion: authentication.k8s.io/v1\nkind: TokenReview\nmetadata:\n  name: {name}\nspec:\n  token: {token}\n");
    if !audiences.is_empty() {
        text.push_str("  audiences:\n");
        for a in audiences {
            text.push_str(&format!("  - {a}\n"));
        }
    }
    text
}

/// A TokenReview through `kubectl create --raw` (no discovery or OpenAPI involved; the
/// `create -f tokenreview.yaml` path has its own test): the returned object.
fn review(server: &Server, token: &str, audiences: &[&str]) -> Value {
    let body = json!({"apiVersion": "authentication.k8s.io/v1", "kind": "TokenReview", "spec": {"token": token, "audiences": audiences}});
    let out = server.kubectl_stdin_ok(&["create", "--raw", "/apis/authentication.k8s.io/v1/tokenreviews", "-f", "-"], &body.to_string());
    serde_json::from_str(&out).unwrap_or_else(|e| panic!("not JSON ({e}): {out}"))
}

/// `kubectl create -f tokenreview.yaml -o json` (validation on): the returned object.
fn review_from_file(server: &Server, token: &str, audiences: &[&str]) -> Value {
    let file = server.write_file(&format!("{}.yaml", common::unique("tokenreview")), &token_review_manifest("review", token, audiences));
    server.kubectl_json(&["create", "-f", file.to_str().unwrap(), "-o", "json"])
}

/// `kubectl get` output: the header and the rows, each line cut where the header's columns
/// start (kubectl pads columns with at least 3 spaces), so an empty cell stays a cell.
fn table_of(out: &str) -> (Vec<String>, Vec<Vec<String>>) {
    let mut lines = out.lines();
    let header = lines.next().unwrap_or_default();
    let bytes = header.as_bytes();
    let starts: Vec<usize> =
        (0..bytes.len()).filter(|&i| bytes[i] != b' ' && (i == 0 || (i >= 2 && bytes[i - 1] == b' ' && bytes[i - 2] == b' '))).collect();
    let cut = |line: &str| -> Vec<String> {
        let ends = starts.iter().skip(1).copied().chain([usize::MAX]);
        starts.iter().zip(ends).map(|(&a, b)| line.get(a..b.min(line.len())).unwrap_or("").trim().to_owned()).collect()
    };
    (cut(header), lines.map(cut).collect())
}

fn whoami_field(table: &str, attribute: &str) -> Option<String> {
    table.lines().find_map(|line| {
        let rest = line.strip_prefix(attribute)?;
        rest.starts_with(char::is_whitespace).then(|| rest.trim().to_owned())
    })
}

#[test]
fn namespace_and_serviceaccount_are_created_and_listed_as_a_server_side_table() {
    let server = Server::start();
    namespace_and_sa(&server, "demo", "api-consumer-1");
    let out = server.kubectl_ok(&["get", "sa", "-n", "demo"]);
    let mut lines = out.lines();
    let header: Vec<&str> = lines.next().unwrap_or_default().split_whitespace().collect();
    assert_eq!(header, ["NAME", "SECRETS", "AGE"], "server-side Table columns for ServiceAccounts\n{out}");
    let row = lines
        .clone()
        .find(|l| l.split_whitespace().next() == Some("api-consumer-1"))
        .unwrap_or_else(|| panic!("no row for api-consumer-1\n{out}"));
    let cells: Vec<&str> = row.split_whitespace().collect();
    assert_eq!(cells.len(), 3, "{row}");
    assert_eq!(cells[1], "0", "no secrets: {row}");
    assert!(cells[2].ends_with('s') || cells[2].ends_with('m'), "an age like 2s: {row}");

    // Secrets, Nodes and Pods print kube-apiserver's columns too.
    server.kubectl_ok(&["create", "secret", "generic", "creds", "-n", "demo", "--from-literal=user=a", "--from-literal=pass=b"]);
    let out = server.kubectl_ok(&["get", "secrets", "-n", "demo"]);
    let (header, rows) = table_of(&out);
    assert_eq!(header, ["NAME", "TYPE", "DATA", "AGE"], "{out}");
    let creds = rows.iter().find(|r| r[0] == "creds").unwrap_or_else(|| panic!("no row for creds\n{out}"));
    assert_eq!(creds[1..3], ["Opaque", "2"], "{out}");

    let node = "apiVersion: v1\nkind: Node\nmetadata:\n  name: worker-1\n  labels:\n    node-role.kubernetes.io/worker: \"\"\nspec:\n  unschedulable: true\n";
    assert_eq!(server.kubectl_stdin_ok(&["create", "-f", "-"], node).trim(), "node/worker-1 created");
    let out = server.kubectl_ok(&["get", "nodes"]);
    let (header, rows) = table_of(&out);
    assert_eq!(header, ["NAME", "STATUS", "ROLES", "AGE", "VERSION"], "{out}");
    let worker = rows.iter().find(|r| r[0] == "worker-1").unwrap_or_else(|| panic!("no row for worker-1\n{out}"));
    assert_eq!(worker[1..3], ["Unknown,SchedulingDisabled", "worker"], "{out}");
    assert_eq!(worker[4], "", "no kubelet reports a version: {out}");
    let out = server.kubectl_ok(&["get", "nodes", "-o", "wide"]);
    let wide = ["NAME", "STATUS", "ROLES", "AGE", "VERSION", "INTERNAL-IP", "EXTERNAL-IP", "OS-IMAGE", "KERNEL-VERSION", "CONTAINER-RUNTIME"];
    assert_eq!(table_of(&out).0, wide, "{out}");

    assert_eq!(server.kubectl_stdin_ok(&["create", "-f", "-"], &pod_manifest("demo", "p1", "api-consumer-1")).trim(), "pod/p1 created");
    assert_eq!(server.kubectl_stdin_ok(&["create", "-f", "-"], &pod_manifest("demo", "p2", "api-consumer-1")).trim(), "pod/p2 created");
    let out = server.kubectl_ok(&["get", "pods", "-n", "demo", "-o", "wide"]);
    let (header, rows) = table_of(&out);
    assert_eq!(header, ["NAME", "READY", "STATUS", "RESTARTS", "AGE", "IP", "NODE", "NOMINATED NODE", "READINESS GATES"], "{out}");
    let p1 = rows.iter().find(|r| r[0] == "p1").unwrap_or_else(|| panic!("no row for p1\n{out}"));
    // Nobody runs the pod: it stays Pending, as a new pod starts.
    assert_eq!(p1[1..4], ["0/1", "Pending", "0"], "{out}");
    assert_eq!(p1[5..], ["<none>", "<none>", "<none>", "<none>"], "{out}");
    // A pod's labels and images change; its spec does not (kube's ValidatePodUpdate), and an
    // apply of the same manifest again is no change.
    assert_eq!(server.kubectl_ok(&["label", "pod", "p2", "-n", "demo", "tier=front"]).trim(), "pod/p2 labeled");
    assert_eq!(server.kubectl_ok(&["set", "image", "pod/p2", "-n", "demo", "main=registry.k8s.io/pause:3.9"]).trim(), "pod/p2 image updated");
    let applied = pod_manifest("demo", "p3", "api-consumer-1");
    assert_eq!(server.kubectl_stdin_ok(&["apply", "-f", "-"], &applied).trim(), "pod/p3 created");
    assert_eq!(server.kubectl_stdin_ok(&["apply", "-f", "-"], &applied).trim(), "pod/p3 unchanged");
    // The ServiceAccount admission plugin mounted the token into the container, on create only,
    // so a replace by the manifest would unmount it: refused, as kube refuses it.
    let token = server.kubectl_ok(&["get", "pod", "p3", "-n", "demo", "-o", "jsonpath={.spec.volumes[0].name} {.spec.containers[0].volumeMounts[0].mountPath}"]);
    let (volume, path) = token.trim().split_once(' ').unwrap_or_else(|| panic!("no token volume: {token}"));
    assert!(volume.starts_with("kube-api-access-") && path == "/var/run/secrets/kubernetes.io/serviceaccount", "{token}");
    let out = server.kubectl_stdin(&["replace", "-f", "-"], &applied);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && err.starts_with("The Pod \"p3\" is invalid: spec: Forbidden: pod updates may not change fields other than"), "{err}");
    // A replace by the stored pod without what the other plugins add on every write (priority,
    // default tolerations) keeps them.
    let mut stored = server.kubectl_json(&["get", "pod", "p3", "-n", "demo", "-o", "json"]);
    for field in ["priority", "tolerations"] {
        stored["spec"].as_object_mut().unwrap().remove(field);
    }
    assert_eq!(server.kubectl_stdin_ok(&["replace", "-f", "-"], &stored.to_string()).trim(), "pod/p3 replaced");
    let added = server.kubectl_ok(&["get", "pod", "p3", "-n", "demo", "-o", "jsonpath={.spec.priority} {.spec.tolerations[*].key}"]);
    assert_eq!(added.trim(), "0 node.kubernetes.io/not-ready node.kubernetes.io/unreachable");
    let err = server.kubectl_err(&["patch", "pod", "p2", "-n", "demo", "-p", r#"{"spec":{"nodeName":"n1"}}"#]);
    assert!(err.starts_with("The Pod \"p2\" is invalid: spec: Forbidden: pod updates may not change fields other than `spec.containers[*].image`"), "{err}");

    // The same through the resource's full name, and `get sa NAME -o json` is the stored object.
    let object = server.kubectl_json(&["get", "serviceaccount", "api-consumer-1", "-n", "demo", "-o", "json"]);
    assert_eq!(object["kind"], "ServiceAccount");
    assert_eq!(object["apiVersion"], "v1");
    assert_eq!(object["metadata"]["name"], "api-consumer-1");
    assert_eq!(object["metadata"]["namespace"], "demo");
    assert!(object["metadata"]["uid"].as_str().is_some_and(|u| u.len() == 36), "{object}");
    assert!(object["metadata"]["resourceVersion"].as_str().is_some_and(|v| !v.is_empty()), "{object}");
}

#[test]
fn a_namespace_comes_with_its_default_serviceaccount_and_goes_with_its_contents() {
    let server = Server::start();
    server.kubectl_ok(&["create", "namespace", "fresh"]);
    let names = server.kubectl_ok(&["get", "sa", "-n", "fresh", "-o", "name"]);
    assert_eq!(names.trim(), "serviceaccount/default", "Kubernetes creates `default` with the namespace");
    let names = server.kubectl_ok(&["get", "sa", "-n", "kube-system", "-o", "name"]);
    assert!(names.lines().any(|l| l == "serviceaccount/default"), "{names}");
    assert_eq!(server.kubectl_ok(&["get", "ns", "fresh", "-o", "jsonpath={.status.phase}"]), "Active");
    let active = server.kubectl_ok(&["get", "ns", "--field-selector", "status.phase=Active", "-o", "name"]);
    assert!(active.lines().any(|l| l == "namespace/fresh"), "{active}");
    // Every namespace carries its name as a label, which no update changes (kube's Canonicalize).
    let labelled = server.kubectl_ok(&["get", "ns", "-l", "kubernetes.io/metadata.name=fresh", "-o", "name"]);
    assert_eq!(labelled.trim(), "namespace/fresh");
    server.kubectl_ok(&["label", "ns", "fresh", "--overwrite", "kubernetes.io/metadata.name=other", "team=a"]);
    let labels = server.kubectl_json(&["get", "ns", "fresh", "-o", "json"])["metadata"]["labels"].clone();
    assert_eq!(labels, json!({"kubernetes.io/metadata.name": "fresh", "team": "a"}));
    let system = server.kubectl_ok(&["get", "ns", "kube-system", "-o", "jsonpath={.metadata.labels.kubernetes\\.io/metadata\\.name}"]);
    assert_eq!(system, "kube-system");

    // kubectl waits until the namespace is gone (Terminating, emptied, deleted).
    server.kubectl_ok(&["create", "secret", "generic", "kept", "-n", "fresh", "--from-literal=k=v"]);
    let secrets = || server.kubectl_ok(&["get", "secrets", "-A", "-o", "jsonpath={range .items[*]}{.metadata.namespace}/{.metadata.name}{\"\\n\"}{end}"]);
    assert!(secrets().lines().any(|l| l == "fresh/kept"), "{}", secrets());
    assert_eq!(server.kubectl_ok(&["delete", "namespace", "fresh"]).trim(), r#"namespace "fresh" deleted"#);
    let left = secrets();
    assert!(!left.lines().any(|l| l.starts_with("fresh/")), "the namespace's Secrets went with it: {left}");
    // (kubectl, seeing the Secret's 404, asks for the namespace and names it instead.)
    let err = server.kubectl_err(&["get", "secret", "kept", "-n", "fresh"]);
    assert_eq!(err.trim(), r#"Error from server (NotFound): namespaces "fresh" not found"#);
    let err = server.kubectl_err(&["create", "secret", "generic", "late", "-n", "fresh", "--from-literal=k=v"]);
    assert_eq!(err.trim(), r#"error: failed to create secret namespaces "fresh" not found"#);
    let err = server.kubectl_err(&["delete", "namespace", "default"]);
    assert_eq!(err.trim(), r#"Error from server (Forbidden): namespaces "default" is forbidden: this namespace may not be deleted"#);
}

#[test]
fn create_token_with_audience_duration_and_pod_binding() {
    pod_bound_token(&[]);
}

/// The same with kubectl's client-side validation off, so the binding itself stays covered
/// whatever happens to `/openapi/v2`.
#[test]
fn create_token_bound_to_a_pod_created_without_client_validation() {
    pod_bound_token(&["--validate=false"]);
}

fn pod_bound_token(create_flags: &[&str]) {
    let server = Server::start();
    namespace_and_sa(&server, "demo", "api-consumer-1");
    let pod = server.write_file("pod.yaml", &pod_manifest("demo", "p1", "api-consumer-1"));
    let mut create = vec!["create", "-f", pod.to_str().unwrap()];
    create.extend_from_slice(create_flags);
    assert_eq!(server.kubectl_ok(&create).trim(), "pod/p1 created");
    let pod_uid = server.kubectl_ok(&["get", "pod", "p1", "-n", "demo", "-o", "jsonpath={.metadata.uid}"]);
    assert_eq!(pod_uid.len(), 36, "pod uid {pod_uid:?}");
    let sa_uid = server.kubectl_ok(&["get", "sa", "api-consumer-1", "-n", "demo", "-o", "jsonpath={.metadata.uid}"]);

    let token = server.token(
        "demo",
        "api-consumer-1",
        &["--audience", "talker-api", "--duration", "10m", "--bound-object-kind", "Pod", "--bound-object-name", "p1"],
    );
    let claims = jwt_payload(&token);
    assert_eq!(claims["aud"], json!(["talker-api"]), "{claims}");
    assert_eq!(claims["exp"].as_i64().unwrap() - claims["iat"].as_i64().unwrap(), 600, "{claims}");
    assert_eq!(claims["iss"], server.url, "{claims}");
    assert_eq!(claims["sub"], "system:serviceaccount:demo:api-consumer-1");
    let k8s = &claims["kubernetes.io"];
    assert_eq!(k8s["namespace"], "demo", "{claims}");
    assert_eq!(k8s["serviceaccount"], json!({"name": "api-consumer-1", "uid": sa_uid}), "{claims}");
    assert_eq!(k8s["pod"], json!({"name": "p1", "uid": pod_uid}), "{claims}");
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() as i64;
    assert!((claims["iat"].as_i64().unwrap() - now).abs() < 60, "iat is now: {claims}");

    // The review of a pod-bound token carries the pod in the user's extra.
    let reviewed = review(&server, &token, &["talker-api"]);
    assert_eq!(reviewed["status"]["authenticated"], true, "{reviewed}");
    let extra = &reviewed["status"]["user"]["extra"];
    assert_eq!(extra["authentication.kubernetes.io/pod-name"], json!(["p1"]), "{reviewed}");
    assert_eq!(extra["authentication.kubernetes.io/pod-uid"], json!([pod_uid]), "{reviewed}");

    // Deleting the pod invalidates the token (kube allows its 10 s success cache to expire).
    server.kubectl_ok(&["delete", "pod", "p1", "-n", "demo", "--wait=false"]);
    let deadline = Instant::now() + Duration::from_secs(12);
    loop {
        let reviewed = review(&server, &token, &["talker-api"]);
        if reviewed["status"]["error"] == "[invalid bearer token, service account token has been invalidated]" {
            assert!(reviewed["status"].get("authenticated").is_none(), "{reviewed}");
            break;
        }
        assert!(Instant::now() < deadline, "a token bound to a deleted pod still reviews: {reviewed}");
        std::thread::sleep(Duration::from_millis(500));
    }
}

#[test]
fn token_review_from_a_file_with_validation_on() {
    let server = Server::start();
    namespace_and_sa(&server, "demo", "api-consumer-1");
    let sa_uid = server.kubectl_ok(&["get", "sa", "api-consumer-1", "-n", "demo", "-o", "jsonpath={.metadata.uid}"]);
    let token = server.token("demo", "api-consumer-1", &["--audience", "talker-api"]);
    let file = server.write_file("tokenreview.yaml", &token_review_manifest("talker-review", &token, &["talker-api"]));
    let path = file.to_str().unwrap();

    assert_eq!(server.kubectl_ok(&["create", "-f", path]).trim(), "tokenreview.authentication.k8s.io/talker-review created");

    let yaml = server.kubectl_ok(&["create", "-f", path, "-o", "yaml"]);
    let status = yaml.split_once("\nstatus:\n").unwrap_or_else(|| panic!("no status in\n{yaml}")).1;
    assert!(status.contains("  authenticated: true\n"), "{yaml}");
    assert!(status.contains("    username: system:serviceaccount:demo:api-consumer-1\n"), "{yaml}");
    assert!(status.contains(&format!("    uid: {sa_uid}\n")), "{yaml}");
    assert!(status.contains("  audiences:\n  - talker-api\n"), "{yaml}");
    for group in ["system:serviceaccounts", "system:serviceaccounts:demo", "system:authenticated"] {
        assert!(status.contains(&format!("    - {group}\n")), "group {group} in\n{yaml}");
    }
    assert!(yaml.contains("kind: TokenReview\n") && yaml.contains("apiVersion: authentication.k8s.io/v1\n"), "{yaml}");

    // Structured: the exact status.
    let reviewed = review_from_file(&server, &token, &["talker-api"]);
    let status = &reviewed["status"];
    assert_eq!(status["authenticated"], true);
    assert_eq!(status["audiences"], json!(["talker-api"]));
    assert_eq!(status["user"]["username"], "system:serviceaccount:demo:api-consumer-1");
    assert_eq!(status["user"]["uid"], sa_uid);
    assert_eq!(status["user"]["groups"], json!(["system:serviceaccounts", "system:serviceaccounts:demo", "system:authenticated"]));
    let jti = jwt_payload(&token)["jti"].as_str().unwrap().to_owned();
    assert_eq!(status["user"]["extra"]["authentication.kubernetes.io/credential-id"], json!([format!("JTI={jti}")]), "{reviewed}");
    assert!(status.get("error").is_none(), "{reviewed}");

    // A review for another audience fails with kube's exact error.
    let wrong = review_from_file(&server, &token, &["other"]);
    assert_eq!(
        wrong["status"],
        json!({"user": {}, "error": "[invalid bearer token, token audiences [\"talker-api\"] is invalid for the target audiences [\"other\"]]"}),
        "{wrong}"
    );
    // Garbage is just an invalid bearer token.
    let garbage = review_from_file(&server, "not-a-jwt", &[]);
    assert_eq!(garbage["status"], json!({"user": {}, "error": "invalid bearer token"}), "{garbage}");
}

#[test]
fn create_raw_token_request_with_the_authorino_guide_body() {
    let server = Server::start();
    namespace_and_sa(&server, "authorino", "api-consumer-1");
    let body = r#"{"apiVersion":"authentication.k8s.io/v1","kind":"TokenRequest","spec":{"audiences":["talker-api"],"expirationSeconds":600}}"#;
    let out = server.kubectl_stdin_ok(&["create", "--raw", "/api/v1/namespaces/authorino/serviceaccounts/api-consumer-1/token", "-f", "-"], body);
    let response: Value = serde_json::from_str(&out).unwrap_or_else(|e| panic!("not JSON ({e}): {out}"));
    assert_eq!(response["kind"], "TokenRequest", "{response}");
    assert_eq!(response["apiVersion"], "authentication.k8s.io/v1", "{response}");
    assert_eq!(response["metadata"]["name"], "api-consumer-1", "{response}");
    assert_eq!(response["metadata"]["namespace"], "authorino", "{response}");
    assert_eq!(response["spec"]["audiences"], json!(["talker-api"]), "{response}");
    assert_eq!(response["spec"]["expirationSeconds"], 600, "{response}");
    let token = response["status"]["token"].as_str().unwrap();
    let claims = jwt_payload(token);
    assert_eq!(claims["aud"], json!(["talker-api"]));
    assert_eq!(claims["exp"].as_i64().unwrap() - claims["iat"].as_i64().unwrap(), 600);
    assert_eq!(claims["sub"], "system:serviceaccount:authorino:api-consumer-1");
    let expiration = response["status"]["expirationTimestamp"].as_str().unwrap();
    assert!(expiration.len() == 20 && expiration.ends_with('Z') && expiration.as_bytes()[10] == b'T', "RFC 3339: {expiration}");

    // The token the guide's AuthConfig would review is valid for talker-api.
    let reviewed = review(&server, token, &["talker-api"]);
    assert_eq!(reviewed["status"]["authenticated"], true, "{reviewed}");
}

#[test]
fn auth_whoami_as_admin_and_as_a_service_account() {
    let server = Server::start();
    let admin = server.kubectl_ok(&["auth", "whoami"]);
    assert_eq!(whoami_field(&admin, "Username").as_deref(), Some("tokenwarden-admin"), "{admin}");
    assert_eq!(whoami_field(&admin, "Groups").as_deref(), Some("[system:masters system:authenticated]"), "{admin}");

    namespace_and_sa(&server, "demo", "api-consumer-1");
    let sa_uid = server.kubectl_ok(&["get", "sa", "api-consumer-1", "-n", "demo", "-o", "jsonpath={.metadata.uid}"]);
    // No --audience: the API audience, which defaults to the issuer = the server's URL.
    let token = server.token("demo", "api-consumer-1", &[]);
    assert_eq!(jwt_payload(&token)["aud"], json!([server.url]));

    let kubeconfig = server.kubeconfig_with("sa.kubeconfig", Some(&token));
    let out = server.kubectl_as(&kubeconfig, &["auth", "whoami"]);
    assert!(out.status.success(), "{}", describe(&out));
    let table = text(&out.stdout);
    assert_eq!(whoami_field(&table, "Username").as_deref(), Some("system:serviceaccount:demo:api-consumer-1"), "{table}");
    assert_eq!(whoami_field(&table, "UID").as_deref(), Some(sa_uid.as_str()), "{table}");
    assert_eq!(
        whoami_field(&table, "Groups").as_deref(),
        Some("[system:serviceaccounts system:serviceaccounts:demo system:authenticated]"),
        "{table}"
    );
    let jti = jwt_payload(&token)["jti"].as_str().unwrap().to_owned();
    assert_eq!(whoami_field(&table, "Extra: authentication.kubernetes.io/credential-id"), Some(format!("[JTI={jti}]")), "{table}");

    // The same with --token on the admin kubeconfig, as JSON.
    let review = server.kubectl_json(&["auth", "whoami", "--token", &token, "-o", "json"]);
    assert_eq!(review["kind"], "SelfSubjectReview");
    assert_eq!(review["apiVersion"], "authentication.k8s.io/v1");
    assert_eq!(review["status"]["userInfo"]["username"], "system:serviceaccount:demo:api-consumer-1");
    assert_eq!(review["status"]["userInfo"]["uid"], sa_uid);

    // A token for another audience is not an API credential.
    let talker = server.token("demo", "api-consumer-1", &["--audience", "talker-api"]);
    let err = server.kubectl_err(&["auth", "whoami", "--token", &talker]);
    assert_eq!(err.trim(), "error: You must be logged in to the server (Unauthorized)");
}

#[test]
fn create_token_and_whoami_with_the_bootstrap_serviceaccount() {
    // Needs no object endpoints: default/default exists from the first start.
    let server = Server::start();
    let token = server.token("default", "default", &["--audience", "talker-api", "--audience", "other", "--duration", "10m"]);
    let claims = jwt_payload(&token);
    assert_eq!(claims["aud"], json!(["talker-api", "other"]), "{claims}");
    assert_eq!(claims["exp"].as_i64().unwrap() - claims["iat"].as_i64().unwrap(), 600, "{claims}");
    assert_eq!(claims["nbf"], claims["iat"], "{claims}");
    assert_eq!(claims["sub"], "system:serviceaccount:default:default");
    assert!(claims["kubernetes.io"].get("pod").is_none(), "unbound: {claims}");
    let sa_uid = claims["kubernetes.io"]["serviceaccount"]["uid"].as_str().unwrap().to_owned();

    // Default duration is one hour.
    let hour = jwt_payload(&server.token("default", "default", &[]));
    assert_eq!(hour["exp"].as_i64().unwrap() - hour["iat"].as_i64().unwrap(), 3600, "{hour}");
    assert_eq!(hour["aud"], json!([server.url]), "{hour}");

    let api = server.token("default", "default", &[]);
    let table = server.kubectl_ok(&["auth", "whoami", "--token", &api]);
    assert_eq!(whoami_field(&table, "Username").as_deref(), Some("system:serviceaccount:default:default"), "{table}");
    assert_eq!(whoami_field(&table, "UID").as_deref(), Some(sa_uid.as_str()), "{table}");
    // A token for other audiences only is not an API credential.
    let err = server.kubectl_err(&["auth", "whoami", "--token", &token]);
    assert_eq!(err.trim(), "error: You must be logged in to the server (Unauthorized)");

    // The raw TokenReview endpoint (no discovery) answers kube's shape.
    let body = json!({"apiVersion": "authentication.k8s.io/v1", "kind": "TokenReview", "spec": {"token": token, "audiences": ["other"]}});
    let out = server.kubectl_stdin_ok(&["create", "--raw", "/apis/authentication.k8s.io/v1/tokenreviews", "-f", "-"], &body.to_string());
    let reviewed: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(reviewed["kind"], "TokenReview");
    assert_eq!(reviewed["spec"]["token"], token.as_str(), "the request is echoed");
    assert_eq!(reviewed["status"]["authenticated"], true, "{reviewed}");
    assert_eq!(reviewed["status"]["audiences"], json!(["other"]), "{reviewed}");
}

const AUTHCONFIG: &str = r#"apiVersion: authorino.kuadrant.io/v1beta3
kind: AuthConfig
metadata:
  name: talker-api-protection
spec:
  hosts:
  - talker-api.127.0.0.1.nip.io
  authentication:
    "authorized-service-accounts":
      kubernetesTokenReview:
        audiences:
        - talker-api
"#;

#[test]
fn apply_an_authconfig_twice_updates_it() {
    apply_authconfig_twice(&[]);
}

/// The same with kubectl's client-side validation off (see the pod-bound token test).
#[test]
fn apply_an_authconfig_twice_without_client_validation() {
    apply_authconfig_twice(&["--validate=false"]);
}

fn apply_authconfig_twice(flags: &[&str]) {
    let server = Server::start();
    server.kubectl_ok(&["create", "namespace", "authorino"]);
    let first = server.write_file("authconfig.yaml", AUTHCONFIG);
    let out = server.kubectl_ok(&[&["apply", "-n", "authorino", "-f", first.to_str().unwrap()][..], flags].concat());
    assert_eq!(out.trim(), "authconfig.authorino.kuadrant.io/talker-api-protection created");

    let stored = server.kubectl_json(&["get", "authconfig", "talker-api-protection", "-n", "authorino", "-o", "json"]);
    assert_eq!(stored["apiVersion"], "authorino.kuadrant.io/v1beta3", "{stored}");
    assert_eq!(stored["kind"], "AuthConfig", "{stored}");
    assert_eq!(stored["metadata"]["namespace"], "authorino", "{stored}");
    assert_eq!(stored["spec"]["hosts"], json!(["talker-api.127.0.0.1.nip.io"]), "{stored}");
    assert_eq!(
        stored["spec"]["authentication"]["authorized-service-accounts"]["kubernetesTokenReview"]["audiences"],
        json!(["talker-api"]),
        "{stored}"
    );
    let uid = stored["metadata"]["uid"].as_str().unwrap().to_owned();
    let rv = stored["metadata"]["resourceVersion"].as_str().unwrap().to_owned();

    let changed = AUTHCONFIG.replace("        - talker-api\n", "        - talker-api\n        - talker-api-v2\n");
    let second = server.write_file("authconfig-v2.yaml", &changed);
    let out = server.kubectl_ok(&[&["apply", "-n", "authorino", "-f", second.to_str().unwrap()][..], flags].concat());
    assert_eq!(out.trim(), "authconfig.authorino.kuadrant.io/talker-api-protection configured");

    let stored = server.kubectl_json(&["get", "authconfig", "talker-api-protection", "-n", "authorino", "-o", "json"]);
    assert_eq!(
        stored["spec"]["authentication"]["authorized-service-accounts"]["kubernetesTokenReview"]["audiences"],
        json!(["talker-api", "talker-api-v2"]),
        "{stored}"
    );
    assert_eq!(stored["metadata"]["uid"], uid, "an update keeps the uid");
    assert_ne!(stored["metadata"]["resourceVersion"], rv.as_str(), "an update changes the resourceVersion");
    assert!(
        stored["metadata"]["annotations"]["kubectl.kubernetes.io/last-applied-configuration"]
            .as_str()
            .is_some_and(|a| a.contains("talker-api-v2")),
        "kubectl apply records its last-applied configuration: {stored}"
    );

    // Applying the same file again changes nothing.
    let out = server.kubectl_ok(&[&["apply", "-n", "authorino", "-f", second.to_str().unwrap()][..], flags].concat());
    assert_eq!(out.trim(), "authconfig.authorino.kuadrant.io/talker-api-protection unchanged");
}

#[test]
fn deleting_a_serviceaccount_invalidates_its_tokens() {
    let server = Server::start();
    namespace_and_sa(&server, "demo", "api-consumer-1");
    let talker = server.token("demo", "api-consumer-1", &["--audience", "talker-api"]);
    let api = server.token("demo", "api-consumer-1", &[]);
    assert_eq!(review(&server, &talker, &["talker-api"])["status"]["authenticated"], true);

    assert_eq!(server.kubectl_ok(&["delete", "sa", "api-consumer-1", "-n", "demo"]).trim(), r#"serviceaccount "api-consumer-1" deleted"#);
    let err = server.kubectl_err(&["get", "sa", "api-consumer-1", "-n", "demo"]);
    assert_eq!(err.trim(), r#"Error from server (NotFound): serviceaccounts "api-consumer-1" not found"#);

    // kube-apiserver may answer from its 10 s success cache; after that the review fails.
    let deadline = Instant::now() + Duration::from_secs(12);
    loop {
        let reviewed = review(&server, &talker, &["talker-api"]);
        if reviewed["status"].get("authenticated").is_none() {
            assert_eq!(
                reviewed["status"],
                json!({"user": {}, "error": r#"[invalid bearer token, serviceaccounts "api-consumer-1" not found]"#}),
                "{reviewed}"
            );
            break;
        }
        assert!(Instant::now() < deadline, "the token of a deleted ServiceAccount still reviews: {reviewed}");
        std::thread::sleep(Duration::from_millis(500));
    }
    let err = server.kubectl_err(&["auth", "whoami", "--token", &api]);
    assert_eq!(err.trim(), "error: You must be logged in to the server (Unauthorized)");

    // A ServiceAccount re-created with the same name has a new uid: the old tokens stay invalid.
    server.kubectl_ok(&["create", "sa", "api-consumer-1", "-n", "demo"]);
    let reviewed = review(&server, &talker, &["talker-api"]);
    let error = reviewed["status"]["error"].as_str().unwrap_or_default();
    assert!(
        error.starts_with("[invalid bearer token, service account UID (") && error.ends_with(")]") && error.contains("does not match claim"),
        "{reviewed}"
    );
}

#[test]
fn create_token_error_messages() {
    let server = Server::start();
    // The bootstrap ServiceAccount default/default: no object endpoints needed.

    let err = server.kubectl_err(&["create", "token", "x", "-n", "default"]);
    assert_eq!(err.trim(), r#"error: failed to create token: serviceaccounts "x" not found"#);

    let err = server.kubectl_err(&["create", "token", "default", "-n", "default", "--duration", "1m"]);
    assert_eq!(
        err.trim(),
        r#"error: failed to create token: TokenRequest.authentication.k8s.io "" is invalid: spec.expirationSeconds: Invalid value: 60: may not specify a duration less than 10 minutes"#
    );

    let err = server.kubectl_err(&["create", "token", "default", "-n", "default", "--bound-object-kind", "Pod", "--bound-object-name", "nope"]);
    assert_eq!(err.trim(), r#"error: failed to create token: pods "nope" not found"#);

    // The raw 422 is kube's Invalid Status, which kubectl prints as "The <kind> <name> is invalid".
    let body = r#"{"apiVersion":"authentication.k8s.io/v1","kind":"TokenRequest","spec":{"expirationSeconds":60}}"#;
    let out = server.kubectl_stdin(&["create", "--raw", "/api/v1/namespaces/default/serviceaccounts/default/token", "-f", "-"], body);
    assert!(!out.status.success(), "{}", describe(&out));
    assert_eq!(
        text(&out.stderr).trim(),
        r#"The TokenRequest "" is invalid: spec.expirationSeconds: Invalid value: 60: may not specify a duration less than 10 minutes"#
    );
}

/// kube's pod validation through kubectl: the OpenAPI schema does not require an image, so the
/// server refuses a pod without one, in kube's words, and stores nothing; `kubectl run` makes a
/// valid pod, whose image an update may not empty.
#[test]
fn a_pod_without_an_image_is_invalid_and_kubectl_run_makes_a_valid_one() {
    let server = Server::start();
    let manifest = "apiVersion: v1\nkind: Pod\nmetadata:\n  name: x\n  namespace: default\nspec:\n  containers:\n  - name: main\n";
    let out = server.kubectl_stdin(&["create", "-f", "-"], manifest);
    assert!(!out.status.success(), "{}", describe(&out));
    assert_eq!(text(&out.stderr).trim(), r#"The Pod "x" is invalid: spec.containers[0].image: Required value"#);
    let err = server.kubectl_err(&["get", "pod", "x", "-n", "default"]);
    assert_eq!(err.trim(), r#"Error from server (NotFound): pods "x" not found"#);

    assert_eq!(server.kubectl_ok(&["run", "web", "-n", "default", "--image=busybox:1.36"]).trim(), "pod/web created");
    let shown = server.kubectl_ok(&["get", "pod", "web", "-n", "default", "-o", "jsonpath={.spec.containers[0].name} {.spec.containers[0].image} {.status.phase}"]);
    assert_eq!(shown.trim(), "web busybox:1.36 Pending");
    let emptied = r#"[{"op": "replace", "path": "/spec/containers/0/image", "value": ""}]"#;
    let err = server.kubectl_err(&["patch", "pod", "web", "-n", "default", "--type=json", "-p", emptied]);
    assert_eq!(err.trim(), r#"The Pod "web" is invalid: spec.containers[0].image: Required value"#);
    let image = server.kubectl_ok(&["get", "pod", "web", "-n", "default", "-o", "jsonpath={.spec.containers[0].image}"]);
    assert_eq!(image.trim(), "busybox:1.36");
}

/// kube's ValidateObjectMeta of labels and annotations, on create and on update: a bad key or
/// value is a 422 in kube's words and nothing changes.
#[test]
fn bad_labels_and_annotation_keys_are_invalid_on_create_and_update() {
    let server = Server::start();
    let manifest = "apiVersion: v1\nkind: ServiceAccount\nmetadata:\n  name: bot\n  namespace: default\n  labels:\n    team: a b\n";
    let out = server.kubectl_stdin(&["create", "-f", "-"], manifest);
    assert!(!out.status.success(), "{}", describe(&out));
    assert_eq!(
        text(&out.stderr).trim(),
        r#"The ServiceAccount "bot" is invalid: metadata.labels: Invalid value: "a b": a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyValue',  or 'my_value',  or '12345', regex used for validation is '(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?')"#
    );
    server.kubectl_ok(&["create", "serviceaccount", "bot", "-n", "default"]);
    let patch = r#"{"metadata": {"annotations": {"example.com/a/b": "x"}}}"#;
    let err = server.kubectl_err(&["patch", "serviceaccount", "bot", "-n", "default", "--type=merge", "-p", patch]);
    assert_eq!(
        err.trim(),
        r#"The ServiceAccount "bot" is invalid: metadata.annotations: Invalid value: "example.com/a/b": a qualified name must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyName',  or 'my.name',  or '123-abc', regex used for validation is '([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]') with an optional DNS subdomain prefix and '/' (e.g. 'example.com/MyName')"#
    );
    let annotations = server.kubectl_ok(&["get", "serviceaccount", "bot", "-n", "default", "-o", "jsonpath={.metadata.annotations}"]);
    assert!(!annotations.contains("example.com"), "{annotations}");
    server.kubectl_ok(&["label", "serviceaccount", "bot", "-n", "default", "example.com/tier=backend"]);
}

#[test]
fn wrong_tokens_are_unauthorized_and_anonymous_callers_forbidden() {
    let server = Server::start();
    // The bootstrap ServiceAccount default/default: no object endpoints needed.
    let unauthorized = "error: You must be logged in to the server (Unauthorized)";

    let wrong = server.kubeconfig_with("wrong.kubeconfig", Some("not-the-admin-token"));
    for (args, expected) in [
        (&["auth", "whoami"][..], unauthorized),
        (&["get", "--raw", "/api/v1/namespaces/default/serviceaccounts"][..], unauthorized),
        // Discovery fails first; client-go words the 401 differently there.
        (&["get", "sa"][..], "error: You must be logged in to the server (the server has asked for the client to provide credentials)"),
        // `create token` wraps the error in its own prefix.
        (&["create", "token", "default", "-n", "default"][..], "error: failed to create token: Unauthorized"),
    ] {
        let out = server.kubectl_as(&wrong, args);
        assert!(!out.status.success(), "{args:?}: {}", describe(&out));
        assert!(text(&out.stderr).trim().ends_with(expected), "{args:?}: expected {expected:?}\n{}", describe(&out));
    }
    // A well-formed but forged JWT (admin token's signature on another payload) is as wrong.
    let token = server.token("default", "default", &[]);
    let mut parts: Vec<&str> = token.split('.').collect();
    let forged_payload = base64_url(&serde_json::to_vec(&json!({"iss": server.url, "sub": "system:serviceaccount:default:admin"})).unwrap());
    parts[1] = &forged_payload;
    let forged = parts.join(".");
    let err = server.kubectl_err(&["auth", "whoami", "--token", &forged]);
    assert_eq!(err.trim(), unauthorized);

    // No credential at all is system:anonymous, who may do nothing but read health and version.
    // (kubectl would prompt for a password without a credential, so these go over plain HTTPS.)
    let got = server.https("GET", "/readyz", None, None);
    assert_eq!((got["status"].as_i64(), got["body"].as_str()), (Some(200), Some("ok")), "{got}");
    let got = server.https("GET", "/api/v1/namespaces/default/serviceaccounts", None, None);
    assert_eq!(
        common::body_json(&got),
        json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
               "message": r#"serviceaccounts is forbidden: User "system:anonymous" cannot list resource "serviceaccounts" in API group "" in the namespace "default""#,
               "reason": "Forbidden", "details": {"kind": "serviceaccounts"}, "code": 403}),
        "{got}"
    );
    assert_eq!(got["status"], 403);
    let got = server.https("POST", "/api/v1/namespaces/default/serviceaccounts/default/token", None, Some("{}"));
    assert_eq!(
        common::body_json(&got),
        json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
               "message": r#"serviceaccounts "default" is forbidden: User "system:anonymous" cannot create resource "serviceaccounts/token" in API group "" in the namespace "default""#,
               "reason": "Forbidden", "details": {"name": "default", "kind": "serviceaccounts"}, "code": 403}),
        "{got}"
    );
    let got = server.https("POST", "/apis/authentication.k8s.io/v1/selfsubjectreviews", None, Some(r#"{"apiVersion":"authentication.k8s.io/v1","kind":"SelfSubjectReview"}"#));
    assert_eq!(got["status"], 403, "anonymous may not create SelfSubjectReviews: {got}");
    // A wrong token over plain HTTPS is kube's 401 Status.
    let got = server.https("GET", "/api", Some("wrong"), None);
    assert_eq!(
        common::body_json(&got),
        json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure", "message": "Unauthorized", "reason": "Unauthorized", "code": 401}),
        "{got}"
    );

    // A ServiceAccount is authenticated but, before RBAC, may not read objects.
    let out = server.kubectl(&["get", "--raw", "/api/v1/namespaces/default/serviceaccounts", "--token", &token]);
    assert_eq!(
        text(&out.stderr).trim(),
        r#"Error from server (Forbidden): serviceaccounts is forbidden: User "system:serviceaccount:default:default" cannot list resource "serviceaccounts" in API group "" in the namespace "default""#,
        "{}",
        describe(&out)
    );
}

fn base64_url(bytes: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}
