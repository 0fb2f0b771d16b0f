//! RBAC evaluation and validation, rule by rule, as kube-apiserver's RBAC authorizer and
//! `pkg/apis/rbac/validation` decide.

#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test

use serde_json::{Value, json};
use tokenwarden_core::rbac::{Policy, PolicyRule, Request, bootstrap_policy, validate, validate_update};
use tokenwarden_core::review::UserInfo;
use tokenwarden_core::{Error, Object, Resource};

fn object(value: Value) -> Object {
    Object::from_value(value).unwrap()
}

fn rule(value: Value) -> PolicyRule {
    serde_json::from_value(value).unwrap()
}

fn user(name: &str, groups: &[&str]) -> UserInfo {
    UserInfo { username: name.into(), groups: groups.iter().map(|g| (*g).to_owned()).collect(), ..UserInfo::default() }
}

fn resource<'a>(verb: &'a str, namespace: &'a str, group: &'a str, resource: &'a str, subresource: &'a str, name: &'a str) -> Request<'a> {
    Request { verb, is_resource: true, namespace, api_group: group, resource, subresource, name, path: "" }
}

fn path<'a>(verb: &'a str, path: &'a str) -> Request<'a> {
    Request { verb, path, ..Request::default() }
}

#[test]
fn rules_match_verbs_groups_resources_subresources_and_names() {
    let mint_bot = rule(json!({"verbs": ["create"], "apiGroups": [""], "resources": ["serviceaccounts/token"], "resourceNames": ["bot"]}));
    assert!(mint_bot.allows(&resource("create", "ns", "", "serviceaccounts", "token", "bot")));
    assert!(!mint_bot.allows(&resource("create", "ns", "", "serviceaccounts", "token", "other")), "resourceNames limits the names");
    assert!(!mint_bot.allows(&resource("get", "ns", "", "serviceaccounts", "token", "bot")), "the verb must match");
    assert!(!mint_bot.allows(&resource("create", "ns", "", "serviceaccounts", "", "bot")), "the parent resource is not the subresource");
    assert!(!mint_bot.allows(&resource("create", "ns", "apps", "serviceaccounts", "token", "bot")), "the group must match");

    let parent = rule(json!({"verbs": ["get"], "apiGroups": [""], "resources": ["serviceaccounts"]}));
    assert!(parent.allows(&resource("get", "ns", "", "serviceaccounts", "", "x")));
    assert!(!parent.allows(&resource("get", "ns", "", "serviceaccounts", "token", "x")), "a resource rule does not cover its subresources");

    let any_token = rule(json!({"verbs": ["*"], "apiGroups": ["*"], "resources": ["*/token"]}));
    assert!(any_token.allows(&resource("create", "ns", "", "serviceaccounts", "token", "x")));
    assert!(!any_token.allows(&resource("create", "ns", "", "serviceaccounts", "", "x")));
    assert!(!any_token.allows(&resource("create", "ns", "", "serviceaccounts", "status", "x")));

    let everything = rule(json!({"verbs": ["*"], "apiGroups": ["*"], "resources": ["*"]}));
    assert!(everything.allows(&resource("deletecollection", "", "rbac.authorization.k8s.io", "clusterroles", "", "")));
    assert!(!everything.allows(&path("get", "/healthz")), "resource rules never allow non-resource paths");
}

#[test]
fn non_resource_urls_match_exactly_or_by_prefix() {
    let discovery = rule(json!({"verbs": ["get"], "nonResourceURLs": ["/api", "/api/*", "/version"]}));
    assert!(discovery.allows(&path("get", "/api")));
    assert!(discovery.allows(&path("get", "/api/v1")));
    assert!(discovery.allows(&path("get", "/version")));
    assert!(!discovery.allows(&path("get", "/version/x")));
    assert!(!discovery.allows(&path("post", "/api")));
    assert!(!discovery.allows(&resource("get", "", "", "api", "", "")));
    assert!(rule(json!({"verbs": ["*"], "nonResourceURLs": ["*"]})).allows(&path("delete", "/anything")));
}

fn policy(objects: &[(Resource, Value)]) -> Policy {
    let mut policy = Policy::default();
    for (resource, value) in objects {
        policy.apply(resource, &object(value.clone()), true);
    }
    policy
}

fn role(namespace: &str, name: &str, rules: Value) -> (Resource, Value) {
    (Resource::ROLES, json!({"metadata": {"name": name, "namespace": namespace}, "rules": rules}))
}

fn binding(namespace: &str, name: &str, kind: &str, role: &str, subjects: Value) -> (Resource, Value) {
    let resource = if namespace.is_empty() { Resource::CLUSTER_ROLE_BINDINGS } else { Resource::ROLE_BINDINGS };
    (resource, json!({"metadata": {"name": name, "namespace": namespace}, "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": kind, "name": role}, "subjects": subjects}))
}

#[test]
fn bindings_grant_to_users_groups_and_service_accounts_in_their_scope() {
    let minter = json!([{"verbs": ["create"], "apiGroups": [""], "resources": ["serviceaccounts/token"], "resourceNames": ["bot"]}]);
    let p = policy(&[
        role("ci", "mint-bot", minter.clone()),
        (Resource::CLUSTER_ROLES, json!({"metadata": {"name": "reader"}, "rules": [{"verbs": ["get"], "apiGroups": [""], "resources": ["pods"]}]})),
        binding("ci", "mint-bot", "Role", "mint-bot", json!([{"kind": "ServiceAccount", "name": "deployer"}])),
        binding("ci", "readers", "ClusterRole", "reader", json!([{"kind": "Group", "apiGroup": "rbac.authorization.k8s.io", "name": "auditors"}])),
        binding("", "global-readers", "ClusterRole", "reader", json!([{"kind": "User", "apiGroup": "rbac.authorization.k8s.io", "name": "alice"}])),
    ]);
    let deployer = user("system:serviceaccount:ci:deployer", &["system:serviceaccounts", "system:serviceaccounts:ci", "system:authenticated"]);
    let mint = |ns, name| resource("create", ns, "", "serviceaccounts", "token", name);
    assert!(p.allows(&deployer, &mint("ci", "bot")));
    assert!(!p.allows(&deployer, &mint("ci", "admin")), "only bot");
    assert!(!p.allows(&deployer, &mint("prod", "bot")), "a RoleBinding grants in its namespace only");
    assert!(!p.allows(&user("system:serviceaccount:other:deployer", &[]), &mint("ci", "bot")), "a ServiceAccount subject without a namespace means the binding's");
    assert_eq!(
        p.decide(&deployer, &mint("ci", "bot")).as_deref(),
        Ok(r#"RBAC: allowed by RoleBinding "mint-bot/ci" of Role "mint-bot" to ServiceAccount "deployer/ci""#)
    );

    let pods = |ns| resource("get", ns, "", "pods", "", "p");
    let auditor = user("bob", &["auditors"]);
    assert!(p.allows(&auditor, &pods("ci")), "a RoleBinding may grant a ClusterRole's rules in its namespace");
    assert!(!p.allows(&auditor, &pods("prod")));
    assert!(p.allows(&user("alice", &[]), &pods("prod")), "a ClusterRoleBinding grants everywhere");
    assert!(p.allows(&user("alice", &[]), &resource("get", "", "", "pods", "", "")), "and at the cluster scope");
    assert_eq!(
        p.decide(&user("alice", &[]), &pods("x")).as_deref(),
        Ok(r#"RBAC: allowed by ClusterRoleBinding "global-readers" of ClusterRole "reader" to User "alice""#)
    );
    assert!(!p.allows(&user("mallory", &["system:authenticated"]), &pods("ci")));
    assert_eq!(p.decide(&user("root", &["system:masters"]), &mint("any", "thing")).as_deref(), Ok(""), "system:masters may do everything");
}

#[test]
fn changes_and_deletions_take_effect() {
    let mut p = policy(&[
        role("ci", "r", json!([{"verbs": ["get"], "apiGroups": [""], "resources": ["pods"]}])),
        binding("ci", "b", "Role", "r", json!([{"kind": "User", "apiGroup": "rbac.authorization.k8s.io", "name": "alice"}])),
    ]);
    let alice = user("alice", &[]);
    let get = resource("get", "ci", "", "pods", "", "p");
    assert!(p.allows(&alice, &get));
    let (res, value) = role("ci", "r", json!([{"verbs": ["list"], "apiGroups": [""], "resources": ["pods"]}]));
    p.apply(&res, &object(value), true);
    assert!(!p.allows(&alice, &get), "an updated Role applies at once");
    let (res, value) = binding("ci", "b", "Role", "r", json!([]));
    p.apply(&res, &object(value), false);
    assert!(!p.allows(&alice, &resource("list", "ci", "", "pods", "", "")), "a deleted binding grants nothing");
    // A binding to a missing role grants nothing.
    let p = policy(&[binding("ci", "b", "Role", "gone", json!([{"kind": "User", "apiGroup": "rbac.authorization.k8s.io", "name": "alice"}]))]);
    assert!(!p.allows(&alice, &get));
}

#[test]
fn a_denial_names_the_missing_roles_of_the_users_bindings_as_kube_does() {
    let alice = json!([{"kind": "User", "apiGroup": "rbac.authorization.k8s.io", "name": "alice"}]);
    let get = resource("get", "ci", "", "pods", "", "p");
    let one = policy(&[binding("", "b", "ClusterRole", "gone", alice.clone())]);
    assert_eq!(one.decide(&user("alice", &[]), &get), Err(r#"RBAC: clusterrole.rbac.authorization.k8s.io "gone" not found"#.to_owned()));
    assert_eq!(one.decide(&user("bob", &[]), &get), Err(String::new()), "only the bindings of the user asking");

    let p = policy(&[
        binding("", "b1", "ClusterRole", "gone", alice.clone()),
        binding("", "b2", "ClusterRole", "gone", alice.clone()),
        binding("ci", "b3", "Role", "missing", alice.clone()),
        binding("prod", "b4", "Role", "elsewhere", alice.clone()),
    ]);
    // Go's error aggregate: each message once, in brackets when more than one; the
    // RoleBindings of other namespaces are not read.
    assert_eq!(
        p.decide(&user("alice", &[]), &get),
        Err(r#"RBAC: [clusterrole.rbac.authorization.k8s.io "gone" not found, role.rbac.authorization.k8s.io "missing" not found]"#.to_owned())
    );
    let with_grant = policy(&[
        binding("", "b1", "ClusterRole", "gone", alice.clone()),
        (Resource::CLUSTER_ROLES, json!({"metadata": {"name": "reader"}, "rules": [{"verbs": ["get"], "apiGroups": [""], "resources": ["pods"]}]})),
        binding("", "b2", "ClusterRole", "reader", alice),
    ]);
    assert!(with_grant.decide(&user("alice", &[]), &get).is_ok(), "an allowed request carries no errors");
}

#[test]
fn rules_for_lists_what_applies() {
    let p = policy(&[
        role("ci", "r", json!([{"verbs": ["create"], "apiGroups": [""], "resources": ["serviceaccounts/token"], "resourceNames": ["bot"]}])),
        binding("ci", "b", "Role", "r", json!([{"kind": "User", "apiGroup": "rbac.authorization.k8s.io", "name": "alice"}])),
    ]);
    let rules = p.rules_for(&user("alice", &[]), "ci");
    assert_eq!(rules.len(), 1);
    assert_eq!(rules[0].resource_names, vec!["bot".to_owned()]);
    assert!(p.rules_for(&user("alice", &[]), "prod").is_empty());
}

#[test]
fn forbidden_reasons_are_kubes() {
    let request = resource("create", "default", "", "serviceaccounts", "token", "default");
    assert_eq!(
        request.forbidden_reason("system:anonymous"),
        r#"User "system:anonymous" cannot create resource "serviceaccounts/token" in API group "" in the namespace "default""#
    );
    let cluster = resource("list", "", "rbac.authorization.k8s.io", "clusterroles", "", "");
    assert_eq!(cluster.forbidden_reason("bob"), r#"User "bob" cannot list resource "clusterroles" in API group "rbac.authorization.k8s.io" at the cluster scope"#);
    assert_eq!(path("get", "/metrics").forbidden_reason("bob"), r#"User "bob" cannot get path "/metrics""#);
}

fn invalid_messages(result: Result<(), Error>) -> Vec<String> {
    match result {
        Err(Error::Invalid { causes, .. }) => causes.iter().map(ToString::to_string).collect(),
        other => panic!("expected Invalid, got {other:?}"),
    }
}

#[test]
fn invalid_roles_and_bindings_are_refused_with_kubes_messages() {
    let bad_role = object(json!({"metadata": {"name": "r", "namespace": "ns"}, "rules": [
        {"verbs": [], "apiGroups": [""], "resources": ["pods"]},
        {"verbs": ["get"], "nonResourceURLs": ["/x"]},
        {"verbs": ["get"]},
    ]}));
    assert_eq!(
        invalid_messages(validate(&Resource::ROLES, &bad_role)),
        [
            "rules[0].verbs: Required value: verbs must contain at least one value",
            r#"rules[1].nonResourceURLs: Invalid value: []string{"/x"}: namespaced rules cannot apply to non-resource URLs"#,
            "rules[2].apiGroups: Required value: resource rules must supply at least one api group",
            "rules[2].resources: Required value: resource rules must supply at least one resource",
        ]
    );
    let cluster_role = object(json!({"metadata": {"name": "r"}, "rules": [{"verbs": ["get"], "nonResourceURLs": ["/x"], "resources": ["pods"]}]}));
    assert_eq!(
        invalid_messages(validate(&Resource::CLUSTER_ROLES, &cluster_role)),
        [r#"rules[0].nonResourceURLs: Invalid value: []string{"/x"}: rules cannot apply to both regular resources and non-resource URLs"#]
    );

    let bad_binding = object(json!({"metadata": {"name": "b"}, "roleRef": {"apiGroup": "x", "kind": "Role", "name": ""}, "subjects": [
        {"kind": "ServiceAccount", "name": "sa"},
        {"kind": "User", "apiGroup": "x", "name": "u"},
        {"kind": "Robot", "name": "r"},
    ]}));
    assert_eq!(
        invalid_messages(validate(&Resource::CLUSTER_ROLE_BINDINGS, &bad_binding)),
        [
            r#"roleRef.apiGroup: Unsupported value: "x": supported values: "rbac.authorization.k8s.io""#,
            r#"roleRef.kind: Unsupported value: "Role": supported values: "ClusterRole""#,
            "roleRef.name: Required value",
            "subjects[0].namespace: Required value",
            r#"subjects[1].apiGroup: Unsupported value: "x": supported values: "rbac.authorization.k8s.io""#,
            r#"subjects[2].kind: Unsupported value: "Robot": supported values: "ServiceAccount", "User", "Group""#,
        ]
    );

    let (_, value) = binding("ci", "b", "Role", "r", json!([]));
    let old = object(value);
    let (_, mut changed) = binding("ci", "b", "ClusterRole", "r", json!([]));
    changed["metadata"] = old.value()["metadata"].clone();
    let messages = invalid_messages(validate_update(&Resource::ROLE_BINDINGS, &old, &object(changed)));
    assert_eq!(messages.len(), 1);
    assert!(messages[0].starts_with("roleRef: Invalid value: ") && messages[0].ends_with(": cannot change roleRef"), "{messages:?}");
    assert!(validate_update(&Resource::ROLE_BINDINGS, &old, &old.clone()).is_ok());
}

#[test]
fn the_bootstrap_policy_is_valid_and_does_what_kube_does() {
    let mut p = Policy::default();
    for (resource, object) in bootstrap_policy() {
        validate(&resource, &object).unwrap();
        p.apply(&resource, &object, true);
    }
    let anonymous = user("system:anonymous", &["system:unauthenticated"]);
    let sa = user("system:serviceaccount:ns:app", &["system:serviceaccounts", "system:serviceaccounts:ns", "system:authenticated"]);
    assert!(p.allows(&anonymous, &path("get", "/healthz")));
    assert!(!p.allows(&anonymous, &path("get", "/api")), "discovery needs authentication");
    assert!(!p.allows(&anonymous, &resource("create", "default", "", "serviceaccounts", "token", "default")));
    assert!(p.allows(&sa, &path("get", "/apis/authentication.k8s.io/v1")));
    assert!(p.allows(&sa, &path("get", "/openid/v1/jwks")));
    assert!(p.allows(&sa, &resource("create", "", "authentication.k8s.io", "selfsubjectreviews", "", "")));
    assert!(p.allows(&sa, &resource("create", "", "authorization.k8s.io", "selfsubjectaccessreviews", "", "")));
    assert!(!p.allows(&sa, &resource("create", "", "authentication.k8s.io", "tokenreviews", "", "")), "auth-delegator is not bound by default");
    assert!(!p.allows(&sa, &resource("get", "ns", "", "serviceaccounts", "", "app")));
    assert!(p.allows(&user("admin", &["system:masters"]), &resource("delete", "", "", "namespaces", "", "default")));
    // A namespace admin writes roles and bindings but may neither escalate nor bind freely.
    let (res, value) = binding("ns", "admins", "ClusterRole", "admin", json!([{"kind": "User", "apiGroup": "rbac.authorization.k8s.io", "name": "nsadmin"}]));
    p.apply(&res, &object(value), true);
    let nsadmin = user("nsadmin", &["system:authenticated"]);
    assert!(p.allows(&nsadmin, &resource("create", "ns", "rbac.authorization.k8s.io", "rolebindings", "", "")));
    assert!(!p.allows(&nsadmin, &resource("escalate", "ns", "rbac.authorization.k8s.io", "roles", "", "r")));
    assert!(!p.allows(&nsadmin, &resource("bind", "ns", "rbac.authorization.k8s.io", "roles", "", "r")));
}

#[test]
fn escalation_is_what_the_writer_does_not_hold() {
    use tokenwarden_core::rbac::{escalation_reason, uncovered};
    let held = vec![
        rule(json!({"verbs": ["get", "list"], "apiGroups": [""], "resources": ["pods", "*/status"]})),
        rule(json!({"verbs": ["create"], "apiGroups": [""], "resources": ["serviceaccounts/token"], "resourceNames": ["bot"]})),
        rule(json!({"verbs": ["get"], "nonResourceURLs": ["/api/*"]})),
    ];
    let within = [
        rule(json!({"verbs": ["get"], "apiGroups": [""], "resources": ["pods", "pods/status"]})),
        rule(json!({"verbs": ["create"], "apiGroups": [""], "resources": ["serviceaccounts/token"], "resourceNames": ["bot"]})),
        rule(json!({"verbs": ["get"], "nonResourceURLs": ["/api/v1"]})),
    ];
    assert!(uncovered(&held, &within).is_empty());
    let beyond = [
        rule(json!({"verbs": ["get", "delete"], "apiGroups": [""], "resources": ["pods"]})),
        rule(json!({"verbs": ["create"], "apiGroups": [""], "resources": ["serviceaccounts/token"]})),
        rule(json!({"verbs": ["get"], "nonResourceURLs": ["/metrics"]})),
    ];
    let missing = uncovered(&held, &beyond);
    let compact: Vec<String> = missing.iter().map(PolicyRule::compact).collect();
    assert_eq!(
        compact,
        [
            r#"{APIGroups:[""], Resources:["pods"], Verbs:["delete"]}"#,
            r#"{APIGroups:[""], Resources:["serviceaccounts/token"], Verbs:["create"]}"#,
            r#"{NonResourceURLs:["/metrics"], Verbs:["get"]}"#,
        ],
        "a name-limited rule does not cover all names"
    );
    // Verbs of the same resource are merged in the message, lists printed as Go's %q.
    let two_verbs = uncovered(&held, &[rule(json!({"verbs": ["delete", "patch"], "apiGroups": [""], "resources": ["pods"]}))]);
    assert!(escalation_reason(&user("bob", &["a", "b"]), &two_verbs).ends_with("(groups=[\"a\" \"b\"]) is attempting to grant RBAC permissions not currently held:\n{APIGroups:[\"\"], Resources:[\"pods\"], Verbs:[\"delete\" \"patch\"]}"));
    // A rule too large to break down is reported whole, without being expanded.
    let many: Vec<String> = (0..200).map(|i| format!("r{i}")).collect();
    let huge = rule(json!({"verbs": ["get", "list", "watch"], "apiGroups": many, "resources": many}));
    assert_eq!(uncovered(&held, std::slice::from_ref(&huge)), vec![huge]);
    assert_eq!(
        escalation_reason(&user("bob", &["devs"]), &missing[..1]),
        "user \"bob\" (groups=[\"devs\"]) is attempting to grant RBAC permissions not currently held:\n{APIGroups:[\"\"], Resources:[\"pods\"], Verbs:[\"delete\"]}"
    );
    let everything = vec![rule(json!({"verbs": ["*"], "apiGroups": ["*"], "resources": ["*"]})), rule(json!({"verbs": ["*"], "nonResourceURLs": ["*"]}))];
    assert!(uncovered(&everything, &beyond).is_empty());
}

#[test]
fn bindings_default_their_api_groups_as_kube_v1_does() {
    let mut bound = object(json!({"metadata": {"name": "b", "namespace": "ns"}, "roleRef": {"kind": "Role", "name": "r"}, "subjects": [
        {"kind": "User", "name": "alice"}, {"kind": "Group", "name": "devs"}, {"kind": "ServiceAccount", "name": "sa"},
    ]}));
    tokenwarden_core::rbac::default_fields(&Resource::ROLE_BINDINGS, &mut bound);
    assert_eq!(bound.value()["roleRef"]["apiGroup"], "rbac.authorization.k8s.io");
    assert_eq!(bound.value()["subjects"][0]["apiGroup"], "rbac.authorization.k8s.io");
    assert_eq!(bound.value()["subjects"][1]["apiGroup"], "rbac.authorization.k8s.io");
    assert!(bound.value()["subjects"][2].get("apiGroup").is_none());
    validate(&Resource::ROLE_BINDINGS, &bound).unwrap();
}
