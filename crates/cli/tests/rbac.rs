//! RBAC and access reviews with the real kubectl: `kubectl create role/rolebinding`,
//! `kubectl auth can-i` (SelfSubjectAccessReview, `--list` via SelfSubjectRulesReview, `--as`
//! via impersonation), least privilege for minting tokens, and the audit log.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a failed unwrap is a failed test

mod common;

use common::{Server, describe, text, unique};

/// A namespace with ServiceAccounts `deployer` and `bot`, and a kubeconfig for `deployer`.
fn setup(server: &Server) -> (String, std::path::PathBuf) {
    let ns = unique("rbac");
    server.kubectl_ok(&["create", "namespace", &ns]);
    server.kubectl_ok(&["create", "serviceaccount", "deployer", "-n", &ns]);
    server.kubectl_ok(&["create", "serviceaccount", "bot", "-n", &ns]);
    let token = server.token(&ns, "deployer", &[]);
    let kubeconfig = server.kubeconfig_with(&format!("{ns}-deployer.kubeconfig"), Some(&token));
    (ns, kubeconfig)
}

/// `kubectl auth can-i` as `kubeconfig`: its answer and exit code.
fn can_i(server: &Server, kubeconfig: &std::path::Path, args: &[&str]) -> (String, Option<i32>) {
    let mut all = vec!["auth", "can-i"];
    all.extend_from_slice(args);
    let out = server.kubectl_as(kubeconfig, &all);
    (text(&out.stdout).trim().to_owned(), out.status.code())
}

#[test]
fn a_role_with_resource_names_lets_its_subject_mint_for_that_service_account_only() {
    let server = Server::start();
    let (ns, deployer) = setup(&server);
    let sa = format!("system:serviceaccount:{ns}:deployer");

    // Nothing is granted by default.
    assert_eq!(can_i(&server, &deployer, &["create", "serviceaccounts/token", "-n", &ns]), ("no".into(), Some(1)));
    let err = text(&server.kubectl_as(&deployer, &["create", "token", "bot", "-n", &ns]).stderr);
    assert_eq!(
        err.trim(),
        format!(r#"error: failed to create token: serviceaccounts "bot" is forbidden: User "{sa}" cannot create resource "serviceaccounts/token" in API group "" in the namespace "{ns}""#)
    );

    server.kubectl_ok(&["create", "role", "mint-bot", "-n", &ns, "--verb=create", "--resource=serviceaccounts/token", "--resource-name=bot"]);
    server.kubectl_ok(&["create", "rolebinding", "mint-bot", "-n", &ns, "--role=mint-bot", &format!("--serviceaccount={ns}:deployer")]);

    // SelfSubjectAccessReview: kubectl auth can-i with the ServiceAccount's own kubeconfig.
    assert_eq!(can_i(&server, &deployer, &["create", "serviceaccounts/bot", "--subresource=token", "-n", &ns]), ("yes".into(), Some(0)));
    assert_eq!(can_i(&server, &deployer, &["create", "serviceaccounts/other", "--subresource=token", "-n", &ns]), ("no".into(), Some(1)));
    assert_eq!(can_i(&server, &deployer, &["create", "serviceaccounts/bot", "--subresource=token", "-n", "default"]), ("no".into(), Some(1)));
    assert_eq!(can_i(&server, &deployer, &["get", "serviceaccounts", "-n", &ns]), ("no".into(), Some(1)));
    // The admin asks on the ServiceAccount's behalf (impersonation).
    let admin = server.kubeconfig();
    assert_eq!(can_i(&server, &admin, &["create", "serviceaccounts/bot", "--subresource=token", "-n", &ns, "--as", &sa]), ("yes".into(), Some(0)));
    assert_eq!(can_i(&server, &admin, &["create", "serviceaccounts/other", "--subresource=token", "-n", &ns, "--as", &sa]), ("no".into(), Some(1)));

    // And it is what the API enforces.
    let token = text(&server.kubectl_as(&deployer, &["create", "token", "bot", "-n", &ns, "--audience", "ci"]).stdout).trim().to_owned();
    assert_eq!(common::jwt_payload(&token)["sub"], format!("system:serviceaccount:{ns}:bot"));
    let out = server.kubectl_as(&deployer, &["create", "token", "deployer", "-n", &ns]);
    assert!(!out.status.success());
    assert!(text(&out.stderr).contains(&format!(r#"serviceaccounts "deployer" is forbidden: User "{sa}" cannot create resource "serviceaccounts/token""#)), "{}", describe(&out));

    // --list: SelfSubjectRulesReview shows the rule with its resource name.
    let (list, code) = can_i(&server, &deployer, &["--list", "-n", &ns]);
    assert_eq!(code, Some(0), "{list}");
    let line = list.lines().find(|l| l.starts_with("serviceaccounts/token")).unwrap_or_else(|| panic!("{list}"));
    assert!(line.contains("[bot]") && line.contains("[create]"), "{line}");
    assert!(list.lines().any(|l| l.starts_with("selfsubjectaccessreviews.authorization.k8s.io")), "{list}");

    // Removing the binding removes the right at once.
    server.kubectl_ok(&["delete", "rolebinding", "mint-bot", "-n", &ns]);
    assert_eq!(can_i(&server, &deployer, &["create", "serviceaccounts/bot", "--subresource=token", "-n", &ns]), ("no".into(), Some(1)));
}

#[test]
fn impersonation_needs_the_impersonate_verb() {
    let server = Server::start();
    let (ns, deployer) = setup(&server);
    let out = server.kubectl_as(&deployer, &["auth", "can-i", "get", "pods", "--as", "alice"]);
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains(&format!(
            r#"users "alice" is forbidden: User "system:serviceaccount:{ns}:deployer" cannot impersonate resource "users" in API group "" at the cluster scope"#
        )),
        "{}",
        describe(&out)
    );
    // whoami as someone else, by the admin: the impersonated user and groups.
    let whoami = server.kubectl_ok(&["auth", "whoami", "--as", "alice", "--as-group", "devs"]);
    assert!(whoami.contains("alice") && whoami.contains("[devs system:authenticated]"), "{whoami}");
}

#[test]
fn rbac_objects_are_listed_validated_and_reviewed_like_kubes() {
    let server = Server::start();
    let (ns, _) = setup(&server);

    // The bootstrap policy is there, with kubectl's columns.
    let roles = server.kubectl_ok(&["get", "clusterroles"]);
    assert!(roles.starts_with("NAME") && roles.lines().next().unwrap().contains("CREATED AT"), "{roles}");
    for name in ["cluster-admin", "system:basic-user", "system:discovery", "system:auth-delegator", "system:service-account-issuer-discovery", "view", "edit", "admin"] {
        assert!(roles.lines().any(|l| l.split_whitespace().next() == Some(name)), "{name} missing:\n{roles}");
    }
    let binding = server.kubectl_ok(&["get", "clusterrolebinding", "cluster-admin", "-o", "wide"]);
    assert!(binding.contains("ClusterRole/cluster-admin") && binding.contains("system:masters"), "{binding}");

    // Validation errors are kube's.
    let err = server.kubectl_stdin(
        &["apply", "-f", "-"],
        &format!("apiVersion: rbac.authorization.k8s.io/v1\nkind: RoleBinding\nmetadata:\n  name: bad\n  namespace: {ns}\nroleRef:\n  apiGroup: rbac.authorization.k8s.io\n  kind: Secret\n  name: x\nsubjects:\n- kind: Robot\n  name: r\n"),
    );
    let stderr = text(&err.stderr);
    assert!(stderr.contains(r#"roleRef.kind: Unsupported value: "Secret": supported values: "Role", "ClusterRole""#), "{stderr}");
    assert!(stderr.contains(r#"subjects[0].kind: Unsupported value: "Robot""#), "{stderr}");
    server.kubectl_ok(&["create", "rolebinding", "viewers", "-n", &ns, "--clusterrole=view", "--group=auditors"]);
    let changed = server.kubectl(&["create", "rolebinding", "viewers", "-n", &ns, "--clusterrole=edit", "--group=auditors", "--dry-run=client", "-o", "yaml"]);
    let out = server.kubectl_stdin(&["replace", "-f", "-"], &text(&changed.stdout));
    assert!(text(&out.stderr).contains("cannot change roleRef"), "{}", describe(&out));

    // SubjectAccessReview, as an authorizer asks it (the admin may).
    let review = server.kubectl_stdin_ok(
        &["create", "-o", "json", "-f", "-"],
        &format!(
            r#"{{"apiVersion":"authorization.k8s.io/v1","kind":"SubjectAccessReview","spec":{{"user":"bob","groups":["auditors"],"resourceAttributes":{{"namespace":"{ns}","verb":"list","resource":"serviceaccounts"}}}}}}"#
        ),
    );
    let review: serde_json::Value = serde_json::from_str(&review).unwrap();
    assert_eq!(review["status"]["allowed"], true, "{review}");
    assert_eq!(review["status"]["reason"], format!(r#"RBAC: allowed by RoleBinding "viewers/{ns}" of ClusterRole "view" to Group "auditors""#));
}

#[test]
fn the_seed_request_without_credentials_is_forbidden() {
    let server = Server::start();
    let reply = server.https("POST", "/api/v1/namespaces/default/serviceaccounts/default/token", None, Some("{}"));
    assert_eq!(reply["status"], 403, "{reply}");
    let status = common::body_json(&reply);
    assert_eq!(status["reason"], "Forbidden");
    assert_eq!(
        status["message"],
        r#"serviceaccounts "default" is forbidden: User "system:anonymous" cannot create resource "serviceaccounts/token" in API group "" in the namespace "default""#
    );
    // Health stays public; discovery does not.
    assert_eq!(server.https("GET", "/readyz", None, None)["status"], 200);
    assert_eq!(server.https("GET", "/api", None, None)["status"], 403);
}

#[test]
fn the_audit_log_records_every_token_request_and_review_but_never_a_token() {
    let audit_dir = tempfile::tempdir().unwrap();
    let path = audit_dir.path().join("audit.jsonl");
    let server = Server::start_with(&["--audit-log", path.to_str().unwrap()]);
    let (ns, deployer) = setup(&server);
    let token = server.token(&ns, "bot", &["--audience", "talker-api", "--duration", "10m"]);
    server.tool_ok(&["review", &token, "--audience", "talker-api"]);
    let _ = server.tool(&["review", &token, "--audience", "other"]);
    let _ = server.kubectl_as(&deployer, &["create", "token", "bot", "-n", &ns]);
    let _ = server.https("POST", "/api/v1/namespaces/default/serviceaccounts/default/token", Some("not-a-token"), Some("{}"));
    let _ = server.kubectl(&["create", "token", "bot", "-n", &ns, "--as", &format!("system:serviceaccount:{ns}:deployer")]);

    let mut lines = Vec::new();
    for _ in 0..100 {
        lines = std::fs::read_to_string(&path).unwrap_or_default().lines().map(str::to_owned).collect();
        if lines.len() >= 7 {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let events: Vec<serde_json::Value> = lines.iter().map(|l| serde_json::from_str(l).unwrap()).collect();
    let find = |kind: &str, decision: &str| events.iter().find(|e| e["kind"] == kind && e["decision"] == decision).unwrap_or_else(|| panic!("no {kind} {decision} in {events:#?}"));
    let issued = events.iter().find(|e| e["kind"] == "TokenRequest" && e["decision"] == "issued" && e["serviceAccount"] == format!("{ns}/bot")).unwrap();
    assert_eq!(issued["caller"], "tokenwarden-admin");
    assert_eq!(issued["audiences"], serde_json::json!(["talker-api"]));
    assert_eq!(issued["jti"], common::jwt_payload(&token)["jti"]);
    assert!(issued["expirationTimestamp"].as_str().unwrap().ends_with('Z'));
    let reviewed = find("TokenReview", "authenticated");
    assert_eq!((reviewed["serviceAccount"].as_str(), reviewed["jti"].as_str()), (Some(format!("{ns}/bot").as_str()), issued["jti"].as_str()));
    let refused = find("TokenReview", "unauthenticated");
    assert!(refused["reason"].as_str().unwrap().contains("is invalid for the target audiences"), "{refused}");
    let forbidden: Vec<&serde_json::Value> = events.iter().filter(|e| e["kind"] == "TokenRequest" && e["decision"] == "forbidden").collect();
    assert!(forbidden.iter().any(|e| e["caller"] == format!("system:serviceaccount:{ns}:deployer") && e.get("impersonatedUser").is_none()), "{forbidden:?}");
    // Impersonated: who authenticated, and whom it acted as.
    assert!(forbidden.iter().any(|e| e["caller"] == "tokenwarden-admin" && e["impersonatedUser"] == format!("system:serviceaccount:{ns}:deployer")), "{forbidden:?}");
    let unauthorized = find("TokenRequest", "unauthorized");
    assert_eq!(unauthorized["serviceAccount"], "default/default");
    let all = lines.join("\n");
    assert!(!all.contains(&token) && !all.contains(&token[..40]), "a token was recorded");
    let mode = std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(&path).unwrap().permissions()) & 0o777;
    assert_eq!(mode, 0o600);
}

#[test]
fn nobody_grants_what_they_do_not_hold() {
    let server = Server::start();
    let (ns, deployer) = setup(&server);
    let sa = format!("system:serviceaccount:{ns}:deployer");
    // deployer administers its namespace with the bootstrap `admin` ClusterRole.
    server.kubectl_ok(&["create", "rolebinding", "deployer-admin", "-n", &ns, "--clusterrole=admin", &format!("--serviceaccount={ns}:deployer")]);

    // Within its rights: a Role for pods and tokens, and a binding to it.
    let ok = server.kubectl_as(&deployer, &["create", "role", "pod-reader", "-n", &ns, "--verb=get", "--resource=pods"]);
    assert!(ok.status.success(), "{}", describe(&ok));
    let ok = server.kubectl_as(&deployer, &["create", "rolebinding", "readers", "-n", &ns, "--role=pod-reader", "--group=devs"]);
    assert!(ok.status.success(), "{}", describe(&ok));

    // Beyond them: a Role granting what admin lacks, a binding to cluster-admin.
    let out = server.kubectl_as(&deployer, &["create", "role", "node-reader", "-n", &ns, "--verb=get", "--resource=nodes"]);
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains(&format!(
            r#"roles.rbac.authorization.k8s.io "node-reader" is forbidden: user "{sa}" (groups=["system:serviceaccounts" "system:serviceaccounts:{ns}" "system:authenticated"]) is attempting to grant RBAC permissions not currently held:"#
        )),
        "{}",
        describe(&out)
    );
    assert!(text(&out.stderr).contains(r#"{APIGroups:[""], Resources:["nodes"], Verbs:["get"]}"#), "{}", describe(&out));
    let out = server.kubectl_as(&deployer, &["create", "rolebinding", "root", "-n", &ns, "--clusterrole=cluster-admin", &format!("--serviceaccount={ns}:deployer")]);
    assert!(!out.status.success());
    assert!(text(&out.stderr).contains("is attempting to grant RBAC permissions not currently held"), "{}", describe(&out));
    assert!(server.kubectl(&["get", "rolebinding", "root", "-n", &ns]).status.code() != Some(0), "nothing was stored");

    // A binding to a role that does not exist: kube's NotFound.
    let out = server.kubectl_as(&deployer, &["create", "rolebinding", "dangling", "-n", &ns, "--role=missing", "--group=devs"]);
    assert!(text(&out.stderr).contains(r#"roles.rbac.authorization.k8s.io "missing" not found"#), "{}", describe(&out));

    // A cluster-scoped object's body cannot choose the namespace its writer's rules are read in:
    // deployer may create ClusterRoles, holds `get pods` only in its namespace, and still may
    // not grant it cluster-wide.
    server.kubectl_ok(&["create", "clusterrole", "clusterrole-writer", "--verb=create", "--resource=clusterroles.rbac.authorization.k8s.io"]);
    server.kubectl_ok(&["create", "clusterrolebinding", "deployer-writes-clusterroles", "--clusterrole=clusterrole-writer", &format!("--serviceaccount={ns}:deployer")]);
    let smuggled = format!(
        "apiVersion: rbac.authorization.k8s.io/v1\nkind: ClusterRole\nmetadata:\n  name: smuggled-{ns}\n  namespace: {ns}\nrules:\n- apiGroups: [\"\"]\n  resources: [pods]\n  verbs: [get]\n"
    );
    let mut create = server.kubectl_cmd(&["create", "-f", "-"]);
    create.env("KUBECONFIG", &deployer).stdin(std::process::Stdio::piped()).stdout(std::process::Stdio::piped()).stderr(std::process::Stdio::piped());
    let mut child = create.spawn().unwrap();
    std::io::Write::write_all(child.stdin.as_mut().unwrap(), smuggled.as_bytes()).unwrap();
    drop(child.stdin.take());
    let out = child.wait_with_output().unwrap();
    assert!(!out.status.success(), "{}", describe(&out));
    assert!(text(&out.stderr).contains("is attempting to grant RBAC permissions not currently held"), "{}", describe(&out));

    // The `bind` verb on a role lets a writer bind it without holding its rules.
    server.kubectl_ok(&["create", "role", "binder", "-n", &ns, "--verb=bind", "--resource=clusterroles.rbac.authorization.k8s.io", "--resource-name=cluster-admin"]);
    server.kubectl_ok(&["create", "rolebinding", "deployer-binder", "-n", &ns, "--role=binder", &format!("--serviceaccount={ns}:deployer")]);
    let out = server.kubectl_as(&deployer, &["create", "rolebinding", "root", "-n", &ns, "--clusterrole=cluster-admin", "--group=devs"]);
    assert!(out.status.success(), "{}", describe(&out));
}

#[test]
fn review_apis_exist_only_at_their_scope() {
    let server = Server::start();
    let token = server.admin_token();
    let review = r#"{"apiVersion":"authentication.k8s.io/v1","kind":"TokenReview","spec":{"token":"x"}}"#;
    assert_eq!(server.https("POST", "/apis/authentication.k8s.io/v1/namespaces/default/tokenreviews", Some(&token), Some(review))["status"], 404);
    assert_eq!(server.https("POST", "/apis/authentication.k8s.io/v1/tokenreviews", Some(&token), Some(review))["status"], 201);
    let sar = r#"{"apiVersion":"authorization.k8s.io/v1","kind":"SubjectAccessReview","spec":{"user":"bob","nonResourceAttributes":{"path":"/x","verb":"get"}}}"#;
    assert_eq!(server.https("POST", "/apis/authorization.k8s.io/v1/namespaces/default/subjectaccessreviews", Some(&token), Some(sar))["status"], 404);
    let local = r#"{"apiVersion":"authorization.k8s.io/v1","kind":"LocalSubjectAccessReview","spec":{"user":"bob","resourceAttributes":{"namespace":"other","verb":"get","resource":"pods"}}}"#;
    let reply = server.https("POST", "/apis/authorization.k8s.io/v1/namespaces/default/localsubjectaccessreviews", Some(&token), Some(local));
    assert_eq!(reply["status"], 422, "{reply}");
    assert!(common::body_json(&reply)["message"].as_str().unwrap().contains(r#"spec.resourceAttributes.namespace: Invalid value: "other": must match metadata.namespace"#), "{reply}");
    assert_eq!(server.https("POST", "/apis/authorization.k8s.io/v1/localsubjectaccessreviews", Some(&token), Some(local))["status"], 404);
}
