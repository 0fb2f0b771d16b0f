//! The generic object handlers and discovery, driven through the router as kubectl and the
//! Python client call them.

#![allow(clippy::unwrap_used)]

mod common;

use std::time::Duration;

use axum::body::Body;
use axum::http::{Method, StatusCode, header};
use http_body_util::BodyExt as _;
use serde_json::{Value, json};

use common::{ADMIN, Server, assert_status, names, request, server, server_with};

const KUBECTL_TABLE: &str = "application/json;as=Table;v=v1;g=meta.k8s.io,application/json;as=Table;v=v1beta1;g=meta.k8s.io,application/json";
const SUBDOMAIN_MESSAGE: &str = "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character (e.g. 'example.com', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')";


// --- Discovery ---

#[tokio::test]
async fn discovery_serves_legacy_documents_to_every_accept() {
    let s = server().await;
    let aggregated = "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList,application/json;g=apidiscovery.k8s.io;v=v2beta1;as=APIGroupDiscoveryList,application/json";
    let api = s.call(Method::GET, "/api", &[("accept", aggregated)], None).await;
    assert_eq!(api.status, StatusCode::OK);
    assert_eq!(api.headers[header::CONTENT_TYPE], "application/json");
    assert_eq!(
        api.body,
        json!({"kind": "APIVersions", "versions": ["v1"], "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": ""}]})
    );

    let apis = s.call(Method::GET, "/apis", &[("accept", aggregated)], None).await;
    assert_eq!(apis.headers[header::CONTENT_TYPE], "application/json");
    assert_eq!(apis.body["kind"], "APIGroupList");
    let groups = apis.body["groups"].as_array().unwrap();
    let auth = groups.iter().find(|g| g["name"] == "authentication.k8s.io").unwrap();
    assert_eq!(auth["preferredVersion"]["groupVersion"], "authentication.k8s.io/v1");
    assert_eq!(auth["versions"].as_array().unwrap().len(), 2);
    assert_eq!(auth["versions"][1]["version"], "v1beta1");
    let authorino = groups.iter().find(|g| g["name"] == "authorino.kuadrant.io").unwrap();
    assert_eq!(authorino["preferredVersion"]["version"], "v1beta3");

    let core = s.get("/api/v1").await;
    assert_eq!(core.body["kind"], "APIResourceList");
    assert_eq!(core.body["groupVersion"], "v1");
    let resources = core.body["resources"].as_array().unwrap();
    let sa = resources.iter().find(|r| r["name"] == "serviceaccounts").unwrap();
    assert_eq!(sa["shortNames"], json!(["sa"]));
    assert_eq!(sa["singularName"], "serviceaccount");
    assert_eq!(sa["namespaced"], true);
    assert_eq!(sa["kind"], "ServiceAccount");
    assert!(sa["verbs"].as_array().unwrap().contains(&json!("watch")));
    let ns = resources.iter().find(|r| r["name"] == "namespaces").unwrap();
    assert_eq!((ns["namespaced"].clone(), ns["shortNames"].clone()), (json!(false), json!(["ns"])));
    let token = resources.iter().find(|r| r["name"] == "serviceaccounts/token").unwrap();
    assert_eq!(
        token,
        &json!({"name": "serviceaccounts/token", "singularName": "", "namespaced": true, "group": "authentication.k8s.io",
                "version": "v1", "kind": "TokenRequest", "verbs": ["create"]})
    );
    for name in ["pods", "nodes", "secrets"] {
        assert!(resources.iter().any(|r| r["name"] == name), "{name}");
    }

    let authn = s.get("/apis/authentication.k8s.io/v1").await;
    assert_eq!(authn.body["groupVersion"], "authentication.k8s.io/v1");
    let entries = authn.body["resources"].as_array().unwrap();
    for (name, kind) in [("tokenreviews", "TokenReview"), ("selfsubjectreviews", "SelfSubjectReview")] {
        let entry = entries.iter().find(|r| r["name"] == name).unwrap();
        assert_eq!((entry["kind"].as_str(), entry["namespaced"].as_bool()), (Some(kind), Some(false)));
        assert_eq!(entry["verbs"], json!(["create"]));
    }
    let beta = s.get("/apis/authentication.k8s.io/v1beta1").await;
    assert_eq!(names_of_resources(&beta.body), vec!["tokenreviews"]);
    let authconfigs = s.get("/apis/authorino.kuadrant.io/v1beta3").await;
    assert_eq!(names_of_resources(&authconfigs.body), vec!["authconfigs", "authconfigs/status"]);
    assert_eq!(
        authconfigs.body["resources"][1],
        json!({"name": "authconfigs/status", "singularName": "", "namespaced": true, "kind": "AuthConfig", "verbs": ["get", "patch", "update"]})
    );
    assert_eq!(authconfigs.body["resources"][0]["kind"], "AuthConfig");

    assert_status(&s.get("/apis/example.com/v1").await, 404, "NotFound", "the server could not find the requested resource");
    assert_eq!(s.get("/apis/authentication.k8s.io/v2").await.status, StatusCode::NOT_FOUND);
    assert_eq!(s.get("/api/v2").await.status, StatusCode::NOT_FOUND);
}

fn names_of_resources(list: &Value) -> Vec<&str> {
    list["resources"].as_array().unwrap().iter().map(|r| r["name"].as_str().unwrap()).collect()
}

// --- CRUD ---

#[tokio::test]
async fn create_get_list_and_the_default_service_account() {
    let s = server().await;
    s.namespace("ns").await;
    let created = s
        .call(
            Method::POST,
            "/api/v1/namespaces/ns/serviceaccounts",
            &[("content-type", "application/json")],
            Some(json!({"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "bot", "creationTimestamp": null}, "extra": 1})),
        )
        .await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.body);
    assert_eq!(created.headers[header::WARNING], "299 - \"unknown field \\\"extra\\\"\"");
    assert_eq!(created.body["metadata"]["namespace"], "ns");
    assert_eq!(created.body["metadata"]["creationTimestamp"], "2025-09-05T01:27:43Z");
    assert!(!created.body["metadata"]["uid"].as_str().unwrap().is_empty());
    assert_eq!(created.body["extra"], 1);

    let got = s.get("/api/v1/namespaces/ns/serviceaccounts/bot").await;
    assert_eq!(got.status, StatusCode::OK);
    assert_eq!(got.body, created.body);

    let list = s.get("/api/v1/namespaces/ns/serviceaccounts").await;
    assert_eq!(list.body["kind"], "ServiceAccountList");
    assert_eq!(list.body["apiVersion"], "v1");
    assert_eq!(names(&list.body), vec!["bot", "default"]);
    assert!(list.body["metadata"]["resourceVersion"].as_str().unwrap().parse::<u64>().unwrap() > 0);
    assert!(list.body["metadata"].get("continue").is_none());

    s.namespace("other").await;
    let all = s.get("/api/v1/serviceaccounts").await;
    assert_eq!(names(&all.body), vec!["bot", "default", "default"]);

    let namespaces = s.get("/api/v1/namespaces").await;
    assert_eq!(namespaces.body["kind"], "NamespaceList");
    assert_eq!(names(&namespaces.body), vec!["ns", "other"]);
    assert_eq!(s.get("/api/v1/namespaces/ns").await.body["metadata"]["name"], "ns");

    assert_status(&s.get("/api/v1/namespaces/ns/serviceaccounts/nope").await, 404, "NotFound", r#"serviceaccounts "nope" not found"#);

    // AuthConfigs in their own group.
    let ac = s
        .post(
            "/apis/authorino.kuadrant.io/v1beta3/namespaces/ns/authconfigs",
            json!({"apiVersion": "authorino.kuadrant.io/v1beta3", "kind": "AuthConfig", "metadata": {"name": "ac"}, "spec": {"hosts": ["x"]}}),
        )
        .await;
    assert_eq!(ac.status, StatusCode::CREATED, "{}", ac.body);
    let acs = s.get("/apis/authorino.kuadrant.io/v1beta3/namespaces/ns/authconfigs").await;
    assert_eq!(acs.body["kind"], "AuthConfigList");
    assert_eq!(acs.body["apiVersion"], "authorino.kuadrant.io/v1beta3");
    assert_eq!(acs.body["items"][0]["spec"]["hosts"], json!(["x"]));
}

#[tokio::test]
async fn create_errors_match_kube_apiserver() {
    let s = server().await;
    s.namespace("ns").await;
    let mismatch = s.post("/api/v1/namespaces/ns/serviceaccounts", json!({"metadata": {"name": "a", "namespace": "other"}})).await;
    assert_status(&mismatch, 400, "BadRequest", "the namespace of the provided object does not match the namespace sent on the request");

    let invalid = s.post("/api/v1/namespaces/ns/serviceaccounts", json!({"metadata": {"name": "Foo"}})).await;
    assert_status(&invalid, 422, "Invalid", &format!("ServiceAccount \"Foo\" is invalid: metadata.name: Invalid value: \"Foo\": {SUBDOMAIN_MESSAGE}"));
    assert_eq!(invalid.body["details"]["causes"][0]["field"], "metadata.name");
    assert_eq!(invalid.body["details"]["causes"][0]["reason"], "FieldValueInvalid");
    assert_eq!(invalid.body["details"]["kind"], "ServiceAccount");
    // Admission refuses before the name is validated, as kube's BeforeCreate validates after it.
    let nowhere = s.post("/api/v1/namespaces/missing/serviceaccounts", json!({"metadata": {"name": "Foo"}})).await;
    assert_status(&nowhere, 404, "NotFound", r#"namespaces "missing" not found"#);
    let stranger = s.post("/api/v1/namespaces/ns/pods", json!({"metadata": {"name": "Foo"}, "spec": {"serviceAccountName": "nobody"}})).await;
    assert_status(&stranger, 403, "Forbidden", r#"pods "Foo" is forbidden: error looking up service account ns/nobody: serviceaccount "nobody" not found"#);
    let dry = s.post("/api/v1/namespaces/missing/serviceaccounts?dryRun=All", json!({"metadata": {"name": "Foo"}})).await;
    assert_status(&dry, 404, "NotFound", r#"namespaces "missing" not found"#);

    let strict = s
        .post("/api/v1/namespaces/ns/serviceaccounts?fieldValidation=Strict", json!({"metadata": {"name": "a"}, "spec": {"foo": 1}}))
        .await;
    assert_status(
        &strict,
        400,
        "BadRequest",
        r#"ServiceAccount in version "v1" cannot be handled as a ServiceAccount: strict decoding error: unknown field "spec""#,
    );

    s.service_account("ns", "a", json!({})).await;
    let again = s.post("/api/v1/namespaces/ns/serviceaccounts", json!({"metadata": {"name": "a"}})).await;
    assert_status(&again, 409, "AlreadyExists", r#"serviceaccounts "a" already exists"#);

    let no_ns = s.post("/api/v1/namespaces/missing/serviceaccounts", json!({"metadata": {"name": "a"}})).await;
    assert_status(&no_ns, 404, "NotFound", r#"namespaces "missing" not found"#);

    let wrong_kind = s.post("/api/v1/namespaces/ns/serviceaccounts", json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"}})).await;
    assert_eq!(wrong_kind.status, StatusCode::BAD_REQUEST);

    let generated = s.post("/api/v1/namespaces/ns/serviceaccounts", json!({"metadata": {"generateName": "bot-"}})).await;
    assert_eq!(generated.status, StatusCode::CREATED);
    assert!(generated.body["metadata"]["name"].as_str().unwrap().starts_with("bot-"));
    // kube's registry names the object before validating it: a bad prefix is refused as a
    // prefix and as the name made of it, and the 422 names the generated name.
    let bad = s.post("/api/v1/namespaces/ns/serviceaccounts", json!({"metadata": {"generateName": "Bot-"}})).await;
    assert_eq!(bad.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", bad.body);
    let name = bad.body["details"]["name"].as_str().unwrap().to_owned();
    assert!(name.len() == 9 && name.starts_with("Bot-") && name[4..].bytes().all(|b| b"bcdfghjklmnpqrstvwxz2456789".contains(&b)), "{name}");
    let subdomain = "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character (e.g. 'example.com', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')";
    assert_status(
        &bad,
        422,
        "Invalid",
        &format!(r#"ServiceAccount "{name}" is invalid: [metadata.generateName: Invalid value: "Bot-": {subdomain}, metadata.name: Invalid value: "{name}": {subdomain}]"#),
    );
    assert_eq!(s.get(&format!("/api/v1/namespaces/ns/serviceaccounts/{name}")).await.status, StatusCode::NOT_FOUND);
    // A long prefix is cut to 58 characters, so that the name fits a DNS label, as kube's
    // SimpleNameGenerator does; a dry run names the object the same way.
    let long = "a".repeat(100);
    for dry in ["", "?dryRun=All"] {
        let made = s.post(&format!("/api/v1/namespaces/ns/serviceaccounts{dry}"), json!({"metadata": {"generateName": long}})).await;
        assert_eq!(made.status, StatusCode::CREATED, "{}", made.body);
        let name = made.body["metadata"]["name"].as_str().unwrap();
        assert!(name.len() == 63 && name.starts_with(&long[..58]), "{name}");
        assert_eq!(made.body["metadata"]["generateName"], json!(long));
    }

    // A namespace's name is a DNS-1123 label: apimachinery's IsDNS1123Label names the dots.
    let label = s.post("/api/v1/namespaces", json!({"metadata": {"name": "a.b"}})).await;
    assert_status(&label, 422, "Invalid", r#"Namespace "a.b" is invalid: metadata.name: Invalid value: "a.b": must not contain dots"#);
    let label = s.post("/api/v1/namespaces", json!({"metadata": {"name": "A"}})).await;
    assert!(label.body["message"].as_str().unwrap().contains("a lowercase RFC 1123 label must consist of"), "{}", label.body);

    assert_status(&s.get("/api/v1/namespaces/ns/widgets").await, 404, "NotFound", "the server could not find the requested resource");
    assert_status(&s.get("/api/v1/namespaces/ns/nodes").await, 404, "NotFound", "the server could not find the requested resource");
    let on_item = s.post("/api/v1/namespaces/ns/serviceaccounts/a", json!({"metadata": {"name": "a"}})).await;
    assert_status(&on_item, 405, "MethodNotAllowed", "the server does not allow this method on the requested resource (POST)");
}

#[tokio::test]
async fn dry_run_does_not_store() {
    let s = server().await;
    s.namespace("ns").await;
    let dry = s.post("/api/v1/namespaces/ns/serviceaccounts?dryRun=All", json!({"metadata": {"name": "ghost"}})).await;
    assert_eq!(dry.status, StatusCode::CREATED, "{}", dry.body);
    assert_eq!(dry.body["metadata"]["name"], "ghost");
    assert_eq!(dry.body["kind"], "ServiceAccount");
    assert_eq!(s.get("/api/v1/namespaces/ns/serviceaccounts/ghost").await.status, StatusCode::NOT_FOUND);

    let bad = s.post("/api/v1/namespaces/ns/serviceaccounts?dryRun=Some", json!({"metadata": {"name": "ghost"}})).await;
    assert_eq!(bad.status.as_u16(), 422);

    s.service_account("ns", "bot", json!({})).await;
    let deleted = s.call(Method::DELETE, "/api/v1/namespaces/ns/serviceaccounts/bot?dryRun=All", &[], None).await;
    assert_eq!(deleted.status, StatusCode::OK);
    assert_eq!(deleted.body["metadata"]["name"], "bot");
    let body_dry = s
        .call(Method::DELETE, "/api/v1/namespaces/ns/serviceaccounts/bot", &[("content-type", "application/json")], Some(json!({"dryRun": ["All"]})))
        .await;
    assert_eq!(body_dry.status, StatusCode::OK);
    assert_eq!(s.get("/api/v1/namespaces/ns/serviceaccounts/bot").await.status, StatusCode::OK);

    let patched = s.patch("/api/v1/namespaces/ns/serviceaccounts/bot?dryRun=All", "application/merge-patch+json", json!({"metadata": {"labels": {"x": "1"}}})).await;
    assert_eq!(patched.status, StatusCode::OK);
    assert_eq!(patched.body["metadata"]["labels"]["x"], "1");
    assert!(s.get("/api/v1/namespaces/ns/serviceaccounts/bot").await.body["metadata"].get("labels").unwrap().get("x").is_none());
}

#[tokio::test]
async fn list_pages_and_selects() {
    let s = server().await;
    s.namespace("ns").await;
    for (i, name) in ["a", "b", "c", "d", "e"].iter().enumerate() {
        s.service_account("ns", name, json!({"tier": if i % 2 == 0 { "even" } else { "odd" }})).await;
    }
    let mut seen = Vec::new();
    let mut uri = "/api/v1/namespaces/ns/serviceaccounts?limit=2".to_owned();
    let mut pages = 0;
    loop {
        let page = s.get(&uri).await;
        assert_eq!(page.status, StatusCode::OK, "{}", page.body);
        pages += 1;
        let items = names(&page.body);
        assert!(items.len() <= 2);
        seen.extend(items);
        match page.body["metadata"]["continue"].as_str() {
            Some(token) => uri = format!("/api/v1/namespaces/ns/serviceaccounts?limit=2&continue={token}"),
            None => break,
        }
    }
    assert_eq!(pages, 3);
    assert_eq!(seen, vec!["a", "b", "c", "d", "default", "e"]);

    let even = s.get("/api/v1/namespaces/ns/serviceaccounts?labelSelector=tier%3Deven").await;
    assert_eq!(names(&even.body), vec!["a", "c", "e"]);
    let not_odd = s.get("/api/v1/namespaces/ns/serviceaccounts?labelSelector=tier!%3Dodd").await;
    assert_eq!(names(&not_odd.body), vec!["a", "c", "default", "e"]);
    let by_name = s.get("/api/v1/namespaces/ns/serviceaccounts?fieldSelector=metadata.name%3Dd").await;
    assert_eq!(names(&by_name.body), vec!["d"]);
    let by_ns = s.get("/api/v1/serviceaccounts?fieldSelector=metadata.namespace%3Dns,metadata.name%3Ddefault").await;
    assert_eq!(names(&by_ns.body), vec!["default"]);
    assert_eq!(s.get("/api/v1/namespaces/ns/serviceaccounts?labelSelector=%3D%3D").await.status, StatusCode::BAD_REQUEST);
    assert_eq!(s.get("/api/v1/namespaces/ns/serviceaccounts?continue=garbage!").await.status, StatusCode::BAD_REQUEST);
    assert_eq!(s.get("/api/v1/namespaces/ns/serviceaccounts?limit=x").await.status, StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn update_checks_resource_version_and_name() {
    let s = server().await;
    s.namespace("ns").await;
    let created = s.service_account("ns", "bot", json!({})).await;
    let mut next = created.clone();
    next["automountServiceAccountToken"] = json!(false);
    let updated = s
        .call(Method::PUT, "/api/v1/namespaces/ns/serviceaccounts/bot", &[("content-type", "application/json")], Some(next.clone()))
        .await;
    assert_eq!(updated.status, StatusCode::OK, "{}", updated.body);
    assert_eq!(updated.body["automountServiceAccountToken"], false);
    assert_ne!(updated.body["metadata"]["resourceVersion"], created.body_rv());

    let stale = s.call(Method::PUT, "/api/v1/namespaces/ns/serviceaccounts/bot", &[("content-type", "application/json")], Some(next)).await;
    assert_status(
        &stale,
        409,
        "Conflict",
        r#"Operation cannot be fulfilled on serviceaccounts "bot": the object has been modified; please apply your changes to the latest version and try again"#,
    );
    let renamed = s
        .call(
            Method::PUT,
            "/api/v1/namespaces/ns/serviceaccounts/bot",
            &[("content-type", "application/json")],
            Some(json!({"metadata": {"name": "other"}})),
        )
        .await;
    assert_status(&renamed, 400, "BadRequest", "the name of the object (other) does not match the name on the URL (bot)");
    let missing = s
        .call(Method::PUT, "/api/v1/namespaces/ns/serviceaccounts/nope", &[("content-type", "application/json")], Some(json!({"metadata": {"name": "nope"}})))
        .await;
    assert_eq!(missing.status, StatusCode::NOT_FOUND);
}

/// kube's RBAC strategies allow create on update: a PUT of a missing Role, ClusterRole or
/// binding creates it (201); every other kind served here answers 404.
#[tokio::test]
async fn a_put_creates_a_missing_rbac_object_and_nothing_else() {
    let s = server().await;
    s.namespace("ns").await;
    let rbac = "/apis/rbac.authorization.k8s.io/v1";
    let role_ref = |kind: &str| json!({"apiGroup": "rbac.authorization.k8s.io", "kind": kind, "name": "r"});
    for (uri, body) in [
        (format!("{rbac}/namespaces/ns/roles/r"), json!({"metadata": {"name": "r"}, "rules": [{"apiGroups": [""], "resources": ["pods"], "verbs": ["get"]}]})),
        (format!("{rbac}/clusterroles/r"), json!({"metadata": {"name": "r"}, "rules": []})),
        (format!("{rbac}/namespaces/ns/rolebindings/b"), json!({"metadata": {"name": "b"}, "roleRef": role_ref("Role"), "subjects": []})),
        (format!("{rbac}/clusterrolebindings/b"), json!({"metadata": {"name": "b"}, "roleRef": role_ref("ClusterRole"), "subjects": []})),
    ] {
        let dry = s.call(Method::PUT, &format!("{uri}?dryRun=All"), &[("content-type", "application/json")], Some(body.clone())).await;
        assert_eq!(dry.status, StatusCode::CREATED, "{uri}: {}", dry.body);
        assert_eq!(s.get(&uri).await.status, StatusCode::NOT_FOUND, "{uri}: a dry run stores nothing");
        let created = s.call(Method::PUT, &uri, &[("content-type", "application/json")], Some(body.clone())).await;
        assert_eq!(created.status, StatusCode::CREATED, "{uri}: {}", created.body);
        assert!(created.body["metadata"]["uid"].is_string(), "{uri}: {}", created.body);
        assert_eq!(s.get(&uri).await.body["metadata"]["uid"], created.body["metadata"]["uid"], "{uri}");
        let replaced = s.call(Method::PUT, &uri, &[("content-type", "application/json")], Some(body)).await;
        assert_eq!(replaced.status, StatusCode::OK, "{uri}: an existing object is updated: {}", replaced.body);
    }
    for (uri, body) in [
        ("/api/v1/namespaces/ns/serviceaccounts/nope", json!({"metadata": {"name": "nope"}})),
        ("/api/v1/namespaces/ns/secrets/nope", json!({"metadata": {"name": "nope"}})),
        ("/api/v1/namespaces/ns/pods/nope", json!({"metadata": {"name": "nope"}})),
        ("/api/v1/nodes/nope", json!({"metadata": {"name": "nope"}})),
        ("/api/v1/namespaces/nope", json!({"metadata": {"name": "nope"}})),
        ("/apis/authorino.kuadrant.io/v1beta3/namespaces/ns/authconfigs/nope", json!({"metadata": {"name": "nope"}, "spec": {"hosts": ["h"]}})),
    ] {
        let missing = s.call(Method::PUT, uri, &[("content-type", "application/json")], Some(body)).await;
        assert_eq!(missing.status, StatusCode::NOT_FOUND, "{uri}: {}", missing.body);
    }
}

/// As kube-apiserver serves a CRD with `subresources.status`: writes to the object keep the
/// stored status, writes to `/status` change only the status.
#[tokio::test]
async fn authconfig_status_is_a_subresource() {
    let s = server().await;
    s.namespace("ns").await;
    let uri = "/apis/authorino.kuadrant.io/v1beta3/namespaces/ns/authconfigs/talker";
    let status_uri = format!("{uri}/status");
    let spec = json!({"hosts": ["talker-api"], "authentication": {"anon": {"anonymous": {}}}});
    let created = s
        .post(
            "/apis/authorino.kuadrant.io/v1beta3/namespaces/ns/authconfigs",
            json!({"apiVersion": "authorino.kuadrant.io/v1beta3", "kind": "AuthConfig", "metadata": {"name": "talker"},
                   "spec": spec, "status": {"summary": {"ready": true}}}),
        )
        .await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.body);
    assert!(created.body.get("status").is_none(), "a create drops the status: {}", created.body);

    // PUT /status: only the status changes, whatever else the body says.
    let mut body = created.body.clone();
    body["status"] = json!({"summary": {"ready": true}});
    body["spec"]["hosts"] = json!(["elsewhere"]);
    body["metadata"]["labels"] = json!({"sneaky": "yes"});
    let put = s.call(Method::PUT, &status_uri, &[("content-type", "application/json")], Some(body.clone())).await;
    assert_eq!(put.status, StatusCode::OK, "{}", put.body);
    assert_eq!(put.body["status"], json!({"summary": {"ready": true}}));
    assert_eq!(put.body["spec"], spec);
    assert!(put.body["metadata"].get("labels").is_none());
    assert_ne!(put.body.body_rv(), created.body.body_rv());
    // With the old resourceVersion: a conflict.
    let stale = s.call(Method::PUT, &status_uri, &[("content-type", "application/json")], Some(body)).await;
    assert_eq!(stale.status, StatusCode::CONFLICT, "{}", stale.body);

    // PUT and merge PATCH of the object keep the stored status.
    let mut object = put.body.clone();
    object["status"] = json!({"summary": {"ready": false}});
    object["spec"]["hosts"] = json!(["talker-api", "second"]);
    let updated = s.call(Method::PUT, uri, &[("content-type", "application/json")], Some(object)).await;
    assert_eq!(updated.status, StatusCode::OK, "{}", updated.body);
    assert_eq!(updated.body["spec"]["hosts"], json!(["talker-api", "second"]));
    assert_eq!(updated.body["status"], json!({"summary": {"ready": true}}));
    let patched = s.patch(uri, "application/merge-patch+json", json!({"status": null, "metadata": {"labels": {"a": "1"}}})).await;
    assert_eq!(patched.status, StatusCode::OK, "{}", patched.body);
    assert_eq!((&patched.body["status"], &patched.body["metadata"]["labels"]), (&json!({"summary": {"ready": true}}), &json!({"a": "1"})));

    // PATCH /status (merge and JSON patch, no resourceVersion): only the status.
    let merged = s.patch(&status_uri, "application/merge-patch+json", json!({"status": {"summary": {"numHostsReady": "2/2"}}, "spec": null})).await;
    assert_eq!(merged.status, StatusCode::OK, "{}", merged.body);
    assert_eq!(merged.body["status"], json!({"summary": {"ready": true, "numHostsReady": "2/2"}}));
    assert_eq!(merged.body["spec"]["hosts"], json!(["talker-api", "second"]));
    let replaced = s.patch(&status_uri, "application/json-patch+json", json!([{"op": "add", "path": "/status", "value": {"conditions": []}}])).await;
    assert_eq!(replaced.status, StatusCode::OK, "{}", replaced.body);
    assert_eq!(replaced.body["status"], json!({"conditions": []}));

    // GET /status is the whole object, as stored.
    let got = s.get(&status_uri).await;
    assert_eq!(got.status, StatusCode::OK);
    assert_eq!(got.body, s.get(uri).await.body);
    assert_eq!(got.body["status"], json!({"conditions": []}));

    // Errors as kube-apiserver's.
    let renamed = s
        .call(Method::PUT, &status_uri, &[("content-type", "application/json")], Some(json!({"metadata": {"name": "other"}, "status": {}})))
        .await;
    assert_status(&renamed, 400, "BadRequest", "the name of the object (other) does not match the name on the URL (talker)");
    let missing = s
        .call(
            Method::PUT,
            "/apis/authorino.kuadrant.io/v1beta3/namespaces/ns/authconfigs/nope/status",
            &[("content-type", "application/json")],
            Some(json!({"metadata": {"name": "nope"}, "status": {}})),
        )
        .await;
    assert_status(&missing, 404, "NotFound", r#"authconfigs.authorino.kuadrant.io "nope" not found"#);
    let applied = s
        .send(request(
            Method::PATCH,
            "/apis/authorino.kuadrant.io/v1beta3/namespaces/ns/authconfigs/nope/status?fieldManager=x",
            Some(ADMIN),
            &[("content-type", "application/apply-patch+yaml")],
            Some(r#"{"metadata":{"name":"nope"},"status":{}}"#),
        ))
        .await;
    assert_eq!(applied.status, StatusCode::NOT_FOUND, "server-side apply of a status does not create: {}", applied.body);
    assert_eq!(s.call(Method::DELETE, &status_uri, &[], None).await.status, StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(s.get(uri).await.status, StatusCode::OK);
    s.service_account("ns", "bot", json!({})).await;
    let no_status = s.get("/api/v1/namespaces/ns/serviceaccounts/bot/status").await;
    assert_status(&no_status, 404, "NotFound", "the server could not find the requested resource");
    let no_status = s.patch("/api/v1/namespaces/ns/serviceaccounts/bot/status", "application/merge-patch+json", json!({"status": {}})).await;
    assert_eq!(no_status.status, StatusCode::NOT_FOUND);
}

trait Rv {
    fn body_rv(&self) -> Value;
}

impl Rv for Value {
    fn body_rv(&self) -> Value {
        self["metadata"]["resourceVersion"].clone()
    }
}

#[tokio::test]
async fn patches_merge_json_strategic_and_apply() {
    let s = server().await;
    s.namespace("ns").await;
    let created = s
        .post("/api/v1/namespaces/ns/serviceaccounts", json!({"metadata": {"name": "bot", "labels": {"a": "1"}}, "custom": {"keep": true}}))
        .await;
    assert_eq!(created.status, StatusCode::CREATED);
    let uri = "/api/v1/namespaces/ns/serviceaccounts/bot";

    let merged = s.patch(uri, "application/merge-patch+json", json!({"metadata": {"labels": {"b": "2", "a": null}}, "secrets": [{"name": "s1"}]})).await;
    assert_eq!(merged.status, StatusCode::OK, "{}", merged.body);
    assert_eq!(merged.body["metadata"]["labels"], json!({"b": "2"}));
    assert_eq!(merged.body["custom"], json!({"keep": true}));
    assert_eq!(merged.body["secrets"], json!([{"name": "s1"}]));
    assert_ne!(merged.body.body_rv(), created.body.body_rv());

    let strategic = s
        .patch(uri, "application/strategic-merge-patch+json", json!({"$setElementOrder/secrets": [{"name": "s2"}], "secrets": [{"name": "s2"}], "metadata": {"annotations": {"n": "v"}}}))
        .await;
    assert_eq!(strategic.status, StatusCode::OK, "{}", strategic.body);
    // `secrets` merges by name: s2 is added in the order given; s1, not deleted, stays.
    assert_eq!(strategic.body["secrets"], json!([{"name": "s2"}, {"name": "s1"}]));
    assert_eq!(strategic.body["metadata"]["annotations"], json!({"n": "v"}));
    assert!(strategic.body.get("$setElementOrder/secrets").is_none());
    // What kubectl apply / edit send to remove s1 and keep s2: the directive is applied, not stored.
    let removed = s
        .patch(uri, "application/strategic-merge-patch+json", json!({"$setElementOrder/secrets": [{"name": "s2"}], "secrets": [{"$patch": "delete", "name": "s1"}]}))
        .await;
    assert_eq!(removed.body["secrets"], json!([{"name": "s2"}]), "{}", removed.body);
    // An item changed in place keeps its other fields (merged, not replaced).
    let s2_more = s.patch(uri, "application/merge-patch+json", json!({"secrets": [{"name": "s2", "extra": 1}]})).await;
    assert_eq!(s2_more.status, StatusCode::OK);
    let changed = s
        .patch(uri, "application/strategic-merge-patch+json", json!({"$setElementOrder/secrets": [{"name": "s0"}, {"name": "s2"}], "secrets": [{"name": "s0"}, {"name": "s2", "more": 2}]}))
        .await;
    assert_eq!(changed.body["secrets"], json!([{"name": "s0"}, {"name": "s2", "extra": 1, "more": 2}]), "{}", changed.body);
    // A list with no merge directive is replaced (RBAC rules, say).
    let replaced = s.patch(uri, "application/strategic-merge-patch+json", json!({"secrets": [{"name": "only"}]})).await;
    assert_eq!(replaced.body["secrets"], json!([{"name": "only"}]));

    let json_patched = s
        .patch(
            uri,
            "application/json-patch+json",
            json!([{"op": "test", "path": "/metadata/labels/b", "value": "2"}, {"op": "add", "path": "/metadata/labels/c", "value": "3"},
                   {"op": "replace", "path": "/custom/keep", "value": false}, {"op": "remove", "path": "/secrets"}]),
        )
        .await;
    assert_eq!(json_patched.status, StatusCode::OK, "{}", json_patched.body);
    assert_eq!(json_patched.body["metadata"]["labels"], json!({"b": "2", "c": "3"}));
    assert_eq!(json_patched.body["custom"], json!({"keep": false}));
    assert!(json_patched.body.get("secrets").is_none());

    let failed = s.patch(uri, "application/json-patch+json", json!([{"op": "test", "path": "/metadata/labels/b", "value": "9"}])).await;
    assert_eq!(failed.status.as_u16(), 422, "{}", failed.body);

    let stale = s.patch(uri, "application/merge-patch+json", json!({"metadata": {"resourceVersion": "1", "labels": {"z": "1"}}})).await;
    assert_eq!(stale.status, StatusCode::CONFLICT);

    let unsupported = s.patch(uri, "application/json", json!({})).await;
    assert_eq!(unsupported.status, StatusCode::UNSUPPORTED_MEDIA_TYPE);
    assert_eq!(unsupported.body["reason"], "UnsupportedMediaType");

    let missing = s.patch("/api/v1/namespaces/ns/serviceaccounts/nope", "application/merge-patch+json", json!({})).await;
    assert_status(&missing, 404, "NotFound", r#"serviceaccounts "nope" not found"#);

    // Server-side apply: creates when absent, merges when present.
    let apply_uri = "/api/v1/namespaces/ns/serviceaccounts/applied?fieldManager=kubectl";
    let yaml = "apiVersion: v1\nkind: ServiceAccount\nmetadata:\n  name: applied\n  labels:\n    app: x\n";
    let created = s.send(request(Method::PATCH, apply_uri, Some(ADMIN), &[("content-type", "application/apply-patch+yaml")], Some(yaml))).await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.body);
    assert_eq!(created.body["metadata"]["labels"], json!({"app": "x"}));
    assert_eq!(created.body["metadata"]["namespace"], "ns");
    let again = s
        .send(request(
            Method::PATCH,
            apply_uri,
            Some(ADMIN),
            &[("content-type", "application/apply-patch+yaml")],
            Some(r#"{"apiVersion":"v1","kind":"ServiceAccount","metadata":{"name":"applied","annotations":{"k":"v"}}}"#),
        ))
        .await;
    assert_eq!(again.status, StatusCode::OK, "{}", again.body);
    assert_eq!(again.body["metadata"]["labels"], json!({"app": "x"}));
    assert_eq!(again.body["metadata"]["annotations"], json!({"k": "v"}));
    assert_eq!(again.body["metadata"]["uid"], created.body["metadata"]["uid"]);
}

#[tokio::test]
async fn a_namespace_has_a_phase_and_takes_no_new_content_while_terminating() {
    let s = server().await;
    let created = s.post("/api/v1/namespaces", json!({"metadata": {"name": "t"}, "status": {"phase": "Terminating"}})).await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.body);
    assert_eq!(created.body["status"], json!({"phase": "Active"}), "the phase is the server's");
    let actives = s.get("/api/v1/namespaces?fieldSelector=status.phase%3DActive").await;
    assert!(names(&actives.body).contains(&"t".to_owned()), "{}", actives.body);

    // The status is a subresource, as in kube: a PUT of the namespace keeps it.
    let mut object = created.body.clone();
    object["status"] = json!({"phase": "Terminating"});
    // The name label, even sent invalid, is the server's (kube's defaulting puts it back before
    // validation).
    object["metadata"]["labels"] = json!({"team": "a", "kubernetes.io/metadata.name": "a b"});
    let updated = s.call(Method::PUT, "/api/v1/namespaces/t", &[("content-type", "application/json")], Some(object)).await;
    assert_eq!(updated.status, StatusCode::OK, "{}", updated.body);
    assert_eq!(
        (updated.body["status"].clone(), updated.body["metadata"]["labels"].clone()),
        (json!({"phase": "Active"}), json!({"team": "a", "kubernetes.io/metadata.name": "t"}))
    );
    let core = s.get("/api/v1").await;
    assert!(names_of_resources(&core.body).contains(&"namespaces/status"), "{}", core.body);

    // Neither a status write nor an update fakes a delete, as in kube.
    let mut status = updated.body.clone();
    status["status"] = json!({"phase": "Terminating"});
    let faked = s.call(Method::PUT, "/api/v1/namespaces/t/status", &[("content-type", "application/json")], Some(status)).await;
    assert_status(&faked, 422, "Invalid", "Namespace \"t\" is invalid: status.Phase: Invalid value: \"Terminating\": may only be 'Active' if `deletionTimestamp` is empty");
    let mut stamped = updated.body.clone();
    stamped["metadata"]["deletionTimestamp"] = json!("2025-09-05T01:27:43Z");
    let faked = s.call(Method::PUT, "/api/v1/namespaces/t", &[("content-type", "application/json")], Some(stamped)).await;
    assert_status(&faked, 422, "Invalid", "Namespace \"t\" is invalid: metadata.deletionTimestamp: Invalid value: 2025-09-05 01:27:43 +0000 UTC: field is immutable");

    // A delete that stopped half way (the process died) leaves it Terminating.
    let mut ns = s.authority.store().get(&tokenwarden_core::Resource::NAMESPACES, "", "t").await.unwrap();
    ns.set_meta("deletionTimestamp", "2025-09-05T01:27:43Z");
    ns.0.insert("status".into(), json!({"phase": "Terminating"}));
    s.authority.store().update(&tokenwarden_core::Resource::NAMESPACES, ns).await.unwrap();
    // Its status cannot go back to Active, and an update keeps the deletionTimestamp.
    let terminating = s.get("/api/v1/namespaces/t").await.body;
    let mut revived = terminating.clone();
    revived["status"] = json!({"phase": "Active"});
    let refused = s.call(Method::PUT, "/api/v1/namespaces/t/status", &[("content-type", "application/json")], Some(revived)).await;
    assert_status(&refused, 422, "Invalid", "Namespace \"t\" is invalid: status.Phase: Invalid value: \"Active\": may only be 'Terminating' if `deletionTimestamp` is not empty");
    let mut unstamped = terminating.clone();
    unstamped["metadata"].as_object_mut().unwrap().remove("deletionTimestamp");
    let kept = s.call(Method::PUT, "/api/v1/namespaces/t", &[("content-type", "application/json")], Some(unstamped)).await;
    assert_eq!(kept.status, StatusCode::OK, "{}", kept.body);
    assert_eq!((kept.body["metadata"]["deletionTimestamp"].as_str(), kept.body["status"]["phase"].as_str()), (Some("2025-09-05T01:27:43Z"), Some("Terminating")));

    let refused = s.post("/api/v1/namespaces/t/secrets", json!({"metadata": {"name": "late"}})).await;
    assert_status(&refused, 403, "Forbidden", "secrets \"late\" is forbidden: unable to create new content in namespace t because it is being terminated");
    assert_eq!(
        refused.body["details"],
        json!({"name": "late", "kind": "secrets",
               "causes": [{"reason": "NamespaceTerminating", "message": "namespace t is being terminated", "field": "metadata.namespace"}]})
    );
    assert_status(&s.get("/api/v1/namespaces/t/secrets/late").await, 404, "NotFound", r#"secrets "late" not found"#);
    let dry = s.post("/api/v1/namespaces/t/secrets?dryRun=All", json!({"metadata": {"name": "late"}})).await;
    assert_eq!((dry.status, refused.body["message"].clone()), (StatusCode::FORBIDDEN, dry.body["message"].clone()), "a dry run is admitted alike");
    // A generated name is not yet chosen: kube names the generateName.
    let generated = s.post("/api/v1/namespaces/t/secrets", json!({"metadata": {"generateName": "late-"}})).await;
    assert_status(&generated, 403, "Forbidden", "secrets \"late-\" is forbidden: unable to create new content in namespace t because it is being terminated");

    // The next delete finishes it, the default ServiceAccount with it.
    let deleted = s.call(Method::DELETE, "/api/v1/namespaces/t", &[], None).await;
    assert_eq!(deleted.status, StatusCode::OK, "{}", deleted.body);
    assert_eq!(deleted.body["status"]["phase"], "Terminating");
    assert_status(&s.get("/api/v1/namespaces/t").await, 404, "NotFound", r#"namespaces "t" not found"#);
    assert_status(&s.get("/api/v1/namespaces/t/serviceaccounts/default").await, 404, "NotFound", r#"serviceaccounts "default" not found"#);
}

#[tokio::test]
async fn only_a_delete_marks_a_namespace_and_some_are_never_deleted() {
    let s = server().await;
    // A create cannot arrive marked for deletion (kube's BeforeCreate).
    let created = s.post("/api/v1/namespaces", json!({"metadata": {"name": "n", "deletionTimestamp": "2025-09-05T01:27:43Z", "deletionGracePeriodSeconds": 0}})).await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.body);
    assert!(created.body["metadata"].get("deletionTimestamp").is_none() && created.body["metadata"].get("deletionGracePeriodSeconds").is_none(), "{}", created.body);
    // A status write without a phase is Active (kube's defaulting), and keeps the rest.
    let mut status = created.body.clone();
    status["status"] = json!({"conditions": [{"type": "Checked", "status": "True"}]});
    let written = s.call(Method::PUT, "/api/v1/namespaces/n/status", &[("content-type", "application/json")], Some(status)).await;
    assert_eq!(written.status, StatusCode::OK, "{}", written.body);
    assert_eq!(written.body["status"], json!({"phase": "Active", "conditions": [{"type": "Checked", "status": "True"}]}));
    // The delete sets the phase alone.
    let deleted = s.call(Method::DELETE, "/api/v1/namespaces/n", &[], None).await;
    assert_eq!(deleted.status, StatusCode::OK, "{}", deleted.body);
    assert_eq!(deleted.body["status"], json!({"phase": "Terminating", "conditions": [{"type": "Checked", "status": "True"}]}));

    // kube reads the namespace and checks the preconditions first, then refuses (a dry run alike).
    assert_status(&s.call(Method::DELETE, "/api/v1/namespaces/kube-public", &[], None).await, 404, "NotFound", r#"namespaces "kube-public" not found"#);
    for immortal in ["default", "kube-system", "kube-public"] {
        s.namespace(immortal).await;
        for uri in [format!("/api/v1/namespaces/{immortal}"), format!("/api/v1/namespaces/{immortal}?dryRun=All")] {
            let refused = s.call(Method::DELETE, &uri, &[], None).await;
            assert_status(&refused, 403, "Forbidden", &format!("namespaces \"{immortal}\" is forbidden: this namespace may not be deleted"));
        }
        assert_eq!(s.get(&format!("/api/v1/namespaces/{immortal}")).await.body["status"]["phase"], "Active", "untouched");
    }
    // Namespaces go one at a time: no deletecollection (kube's 405), nor in discovery.
    let all = s.call(Method::DELETE, "/api/v1/namespaces", &[], None).await;
    assert_status(&all, 405, "MethodNotAllowed", "the server does not allow this method on the requested resource (DELETE)");
    let core = s.get("/api/v1").await;
    let namespaces = core.body["resources"].as_array().unwrap().iter().find(|r| r["name"] == "namespaces").unwrap().clone();
    assert_eq!(namespaces["verbs"], json!(["create", "delete", "get", "list", "patch", "update", "watch"]));
}

#[tokio::test]
async fn delete_returns_the_object_and_honours_preconditions() {
    let s = server().await;
    s.namespace("ns").await;
    let created = s.service_account("ns", "bot", json!({})).await;
    let uri = "/api/v1/namespaces/ns/serviceaccounts/bot";
    let wrong_uid = s
        .call(Method::DELETE, uri, &[("content-type", "application/json")], Some(json!({"kind": "DeleteOptions", "apiVersion": "v1", "preconditions": {"uid": "nope"}})))
        .await;
    assert_eq!(wrong_uid.status, StatusCode::CONFLICT);
    assert_eq!(
        wrong_uid.body["message"],
        format!("Operation cannot be fulfilled on serviceaccounts \"bot\": Precondition failed: UID in precondition: nope, UID in object meta: {}", created["metadata"]["uid"].as_str().unwrap())
    );
    let wrong_rv = s.call(Method::DELETE, uri, &[("content-type", "application/json")], Some(json!({"preconditions": {"resourceVersion": "1"}}))).await;
    assert_eq!(wrong_rv.status, StatusCode::CONFLICT);

    let deleted = s
        .call(
            Method::DELETE,
            uri,
            &[("content-type", "application/json")],
            Some(json!({"propagationPolicy": "Background", "preconditions": {"uid": created["metadata"]["uid"], "resourceVersion": created.body_rv()}})),
        )
        .await;
    assert_eq!(deleted.status, StatusCode::OK, "{}", deleted.body);
    assert_eq!(deleted.body["kind"], "ServiceAccount");
    assert_eq!(deleted.body["metadata"]["uid"], created["metadata"]["uid"]);
    assert_status(&s.get(uri).await, 404, "NotFound", r#"serviceaccounts "bot" not found"#);
    assert_status(&s.call(Method::DELETE, uri, &[], None).await, 404, "NotFound", r#"serviceaccounts "bot" not found"#);

    // Other kinds answer a Status, not the object: deleting (even as a dry run) does not read
    // a Secret's data, as in kube-apiserver (only ServiceAccounts, Pods and Namespaces return it).
    let secret = s.post("/api/v1/namespaces/ns/secrets", json!({"metadata": {"name": "s"}, "data": {"k": "c2VjcmV0"}})).await;
    for uri in ["/api/v1/namespaces/ns/secrets/s?dryRun=All", "/api/v1/namespaces/ns/secrets/s"] {
        let deleted = s.call(Method::DELETE, uri, &[], None).await;
        assert_eq!(deleted.status, StatusCode::OK, "{}", deleted.body);
        assert_eq!(
            deleted.body,
            json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success",
                   "details": {"name": "s", "kind": "secrets", "uid": secret.body["metadata"]["uid"]}})
        );
    }
    assert_status(&s.get("/api/v1/namespaces/ns/secrets/s").await, 404, "NotFound", r#"secrets "s" not found"#);
    let role = s.post("/apis/rbac.authorization.k8s.io/v1/namespaces/ns/roles", json!({"metadata": {"name": "r"}, "rules": []})).await;
    let deleted = s.call(Method::DELETE, "/apis/rbac.authorization.k8s.io/v1/namespaces/ns/roles/r", &[], None).await;
    assert_eq!(deleted.body["details"], json!({"name": "r", "group": "rbac.authorization.k8s.io", "kind": "roles", "uid": role.body["metadata"]["uid"]}));

    // A namespace delete takes its objects with it.
    s.service_account("ns", "other", json!({})).await;
    let ns = s.call(Method::DELETE, "/api/v1/namespaces/ns", &[], None).await;
    assert_eq!(ns.status, StatusCode::OK);
    assert_eq!(ns.body["metadata"]["name"], "ns");
    assert!(names(&s.get("/api/v1/serviceaccounts").await.body).is_empty());
}

#[tokio::test]
async fn delete_collection_uses_the_selectors() {
    let s = server().await;
    s.namespace("ns").await;
    s.service_account("ns", "a", json!({"x": "1"})).await;
    s.service_account("ns", "b", json!({"x": "2"})).await;
    let reply = s.call(Method::DELETE, "/api/v1/namespaces/ns/serviceaccounts?labelSelector=x%3D1", &[], None).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    assert_eq!(names(&reply.body), vec!["a"]);
    assert_eq!(names(&s.get("/api/v1/namespaces/ns/serviceaccounts").await.body), vec!["b", "default"]);
}

/// kube converts every field of a `fieldSelector` for the kind (`ConvertFieldLabel`) before it
/// lists, watches or deletes a collection: a field the kind does not support is a 400, not an
/// empty answer.
#[tokio::test]
async fn field_selectors_take_only_the_fields_of_the_kind() {
    let s = server().await;
    s.namespace("ns").await;
    let refused = |reply: &common::Reply, message: &str| assert_status(reply, 400, "BadRequest", message);
    let meta_only = |field: &str| format!(r#""{field}" is not a known field selector: only "metadata.name", "metadata.namespace""#);

    // Kinds without a conversion of their own take metadata.name and metadata.namespace only.
    refused(&s.get("/api/v1/namespaces/ns/serviceaccounts?fieldSelector=spec.x%3Dy").await, &meta_only("spec.x"));
    refused(&s.get("/api/v1/serviceaccounts?fieldSelector=metadata.name%3Da,secrets!%3Db").await, &meta_only("secrets"));
    refused(&s.get("/apis/rbac.authorization.k8s.io/v1/clusterroles?fieldSelector=rules%3Dx").await, &meta_only("rules"));
    refused(&s.get("/apis/rbac.authorization.k8s.io/v1/namespaces/ns/rolebindings?fieldSelector=roleRef.name%3Dx").await, &meta_only("roleRef.name"));
    let cluster = s.get("/apis/rbac.authorization.k8s.io/v1/clusterroles?fieldSelector=metadata.namespace%3D,metadata.name%3Dcluster-admin").await;
    assert_eq!(names(&cluster.body), vec!["cluster-admin"]);

    // Kinds with their own list (pkg/apis/core/v1/conversion.go, a CRD's converter).
    for (uri, field) in [
        ("/api/v1/namespaces/ns/secrets", "data.k"),
        ("/api/v1/namespaces/ns/pods", "spec.containers"),
        ("/api/v1/nodes", "metadata.namespace"),
        ("/api/v1/namespaces", "metadata.namespace"),
        ("/apis/authorino.kuadrant.io/v1beta3/namespaces/ns/authconfigs", "spec.hosts"),
    ] {
        refused(&s.get(&format!("{uri}?fieldSelector={field}%3Dx")).await, &format!("field label not supported: {field}"));
    }
    for (name, kind) in [("opaque", "Opaque"), ("other", "example.com/other")] {
        assert_eq!(s.post("/api/v1/namespaces/ns/secrets", json!({"metadata": {"name": name}, "type": kind})).await.status, StatusCode::CREATED);
    }
    assert_eq!(names(&s.get("/api/v1/namespaces/ns/secrets?fieldSelector=type%3DOpaque").await.body), vec!["opaque"]);
    let containers = json!([{"name": "c", "image": "busybox"}]);
    for (name, spec) in [("on-a", json!({"nodeName": "a", "hostNetwork": true, "containers": containers})), ("nowhere", json!({"containers": containers}))] {
        assert_eq!(s.post("/api/v1/namespaces/ns/pods", json!({"metadata": {"name": name}, "spec": spec})).await.status, StatusCode::CREATED);
    }
    assert_eq!(names(&s.get("/api/v1/namespaces/ns/pods?fieldSelector=spec.nodeName%3Da").await.body), vec!["on-a"]);
    // `spec.host` is the old name of `spec.nodeName`; booleans read `true`/`false`, unset `false`.
    assert_eq!(names(&s.get("/api/v1/namespaces/ns/pods?fieldSelector=spec.host%3Da").await.body), vec!["on-a"]);
    assert_eq!(names(&s.get("/api/v1/namespaces/ns/pods?fieldSelector=spec.hostNetwork%3Dtrue").await.body), vec!["on-a"]);
    assert_eq!(names(&s.get("/api/v1/namespaces/ns/pods?fieldSelector=spec.hostNetwork%3Dfalse").await.body), vec!["nowhere"]);
    // Fields kube defaults select pods that never named them; so do the status and the
    // ServiceAccount every new pod gets.
    for selector in ["spec.restartPolicy%3DAlways", "spec.schedulerName%3Ddefault-scheduler", "status.phase%3DPending", "spec.serviceAccountName%3Ddefault"] {
        assert_eq!(names(&s.get(&format!("/api/v1/namespaces/ns/pods?fieldSelector={selector}")).await.body), vec!["nowhere", "on-a"], "{selector}");
    }
    for (name, spec) in [("cordoned", json!({"unschedulable": true})), ("open", json!({}))] {
        assert_eq!(s.post("/api/v1/nodes", json!({"metadata": {"name": name}, "spec": spec})).await.status, StatusCode::CREATED);
    }
    assert_eq!(names(&s.get("/api/v1/nodes?fieldSelector=spec.unschedulable%3Dfalse").await.body), vec!["open"]);
    assert_eq!(names(&s.get("/api/v1/namespaces?fieldSelector=metadata.name%3Dns").await.body), vec!["ns"]);

    // A watch is refused the same way, before it streams anything.
    refused(&s.get("/api/v1/namespaces/ns/serviceaccounts?watch=true&timeoutSeconds=1&fieldSelector=spec.x%3Dy").await, &meta_only("spec.x"));
    // So is a deletecollection, which deletes nothing.
    let deleted = s.call(Method::DELETE, "/api/v1/namespaces/ns/secrets?fieldSelector=data.k%3Dx", &[], None).await;
    refused(&deleted, "field label not supported: data.k");
    assert_eq!(names(&s.get("/api/v1/namespaces/ns/secrets").await.body), vec!["opaque", "other"]);
    let by_type = s.call(Method::DELETE, "/api/v1/namespaces/ns/secrets?fieldSelector=type%3DOpaque", &[], None).await;
    assert_eq!(names(&by_type.body), vec!["opaque"]);
}

// --- Table ---

#[tokio::test]
async fn tables_for_kubectl_get() {
    let s = server().await;
    s.namespace("ns").await;
    s.post("/api/v1/namespaces/ns/serviceaccounts", json!({"metadata": {"name": "bot"}, "secrets": [{"name": "a"}, {"name": "b"}]})).await;
    s.clock.advance(5);
    let list = s.call(Method::GET, "/api/v1/namespaces/ns/serviceaccounts?limit=500", &[("accept", KUBECTL_TABLE)], None).await;
    assert_eq!(list.status, StatusCode::OK);
    assert_eq!(list.body["kind"], "Table");
    assert_eq!(list.body["apiVersion"], "meta.k8s.io/v1");
    assert!(list.body["metadata"]["resourceVersion"].is_string());
    let columns: Vec<(&str, &str, &str)> = list.body["columnDefinitions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| (c["name"].as_str().unwrap(), c["type"].as_str().unwrap(), c["format"].as_str().unwrap()))
        .collect();
    assert_eq!(columns, vec![("Name", "string", "name"), ("Secrets", "integer", ""), ("Age", "string", "")]);
    let rows = list.body["rows"].as_array().unwrap();
    assert_eq!(rows.len(), 2);
    assert_eq!(rows[0]["cells"], json!(["bot", 2, "5s"]));
    assert_eq!(rows[1]["cells"], json!(["default", 0, "5s"]));
    assert_eq!(rows[0]["object"]["kind"], "PartialObjectMetadata");
    assert_eq!(rows[0]["object"]["apiVersion"], "meta.k8s.io/v1");
    assert_eq!(rows[0]["object"]["metadata"]["name"], "bot");
    assert_eq!(rows[0]["object"]["metadata"]["namespace"], "ns");

    s.clock.advance(180);
    let beta = "application/json;as=Table;v=v1beta1;g=meta.k8s.io,application/json";
    let one = s.call(Method::GET, "/api/v1/namespaces/ns/serviceaccounts/bot", &[("accept", beta)], None).await;
    assert_eq!(one.body["apiVersion"], "meta.k8s.io/v1beta1");
    assert_eq!(one.body["rows"].as_array().unwrap().len(), 1);
    assert_eq!(one.body["rows"][0]["cells"], json!(["bot", 2, "3m5s"]));
    assert_eq!(one.body["rows"][0]["object"]["apiVersion"], "meta.k8s.io/v1beta1");

    s.clock.advance(2 * 86400);
    let namespaces = s.call(Method::GET, "/api/v1/namespaces", &[("accept", KUBECTL_TABLE)], None).await;
    let columns: Vec<&str> = namespaces.body["columnDefinitions"].as_array().unwrap().iter().map(|c| c["name"].as_str().unwrap()).collect();
    assert_eq!(columns, vec!["Name", "Status", "Age"]);
    assert_eq!(namespaces.body["rows"][0]["cells"], json!(["ns", "Active", "2d"]));

    // Nodes, Secrets and Pods get kube-apiserver's columns; the wide ones (priority 1) come
    // too, kubectl drops them without `-o wide`.
    let names_and_priorities = |table: &Value| -> Vec<(String, i64)> {
        let columns = table["columnDefinitions"].as_array().unwrap().iter();
        columns.map(|c| (c["name"].as_str().unwrap().to_owned(), c["priority"].as_i64().unwrap())).collect()
    };
    let expect = |columns: &[(&str, i64)]| -> Vec<(String, i64)> { columns.iter().map(|(n, p)| ((*n).to_owned(), *p)).collect() };
    let labels = json!({"node-role.kubernetes.io/control-plane": "", "kubernetes.io/role": "worker"});
    s.post("/api/v1/nodes", json!({"metadata": {"name": "n1", "labels": labels}, "spec": {"unschedulable": true}})).await;
    let nodes = s.call(Method::GET, "/api/v1/nodes", &[("accept", KUBECTL_TABLE)], None).await;
    let node_columns = [
        ("Name", 0),
        ("Status", 0),
        ("Roles", 0),
        ("Age", 0),
        ("Version", 0),
        ("Internal-IP", 1),
        ("External-IP", 1),
        ("OS-Image", 1),
        ("Kernel-Version", 1),
        ("Container-Runtime", 1),
    ];
    assert_eq!(names_and_priorities(&nodes.body), expect(&node_columns));
    let node_row = json!(["n1", "Unknown,SchedulingDisabled", "control-plane,worker", "0s", "", "<none>", "<none>", "<unknown>", "<unknown>", "<unknown>"]);
    assert_eq!(nodes.body["rows"][0]["cells"], node_row);

    let secret = json!({"metadata": {"name": "creds"}, "type": "kubernetes.io/basic-auth", "data": {"username": "YQ==", "password": "Yg=="}});
    assert_eq!(s.post("/api/v1/namespaces/ns/secrets", secret).await.status, StatusCode::CREATED);
    let secrets = s.call(Method::GET, "/api/v1/namespaces/ns/secrets", &[("accept", KUBECTL_TABLE)], None).await;
    assert_eq!(names_and_priorities(&secrets.body), expect(&[("Name", 0), ("Type", 0), ("Data", 0), ("Age", 0)]));
    let rows = secrets.body["rows"].as_array().unwrap();
    let creds = rows.iter().find(|r| r["cells"][0] == "creds").unwrap_or_else(|| panic!("{}", secrets.body));
    assert_eq!(creds["cells"], json!(["creds", "kubernetes.io/basic-auth", 2, "0s"]));

    let pod = json!({"metadata": {"name": "p"}, "spec": {"nodeName": "n1", "containers": [{"name": "a", "image": "x"}, {"name": "b", "image": "y"}]}});
    assert_eq!(s.post("/api/v1/namespaces/ns/pods", pod).await.status, StatusCode::CREATED);
    s.clock.advance(7);
    let pods = s.call(Method::GET, "/api/v1/namespaces/ns/pods", &[("accept", KUBECTL_TABLE)], None).await;
    let pod_columns = [
        ("Name", 0),
        ("Ready", 0),
        ("Status", 0),
        ("Restarts", 0),
        ("Age", 0),
        ("IP", 1),
        ("Node", 1),
        ("Nominated Node", 1),
        ("Readiness Gates", 1),
    ];
    assert_eq!(names_and_priorities(&pods.body), expect(&pod_columns));
    // Nobody runs the pod: it stays Pending, as a new pod starts.
    assert_eq!(pods.body["rows"][0]["cells"], json!(["p", "0/2", "Pending", "0", "7s", "<none>", "n1", "<none>", "<none>"]));

    // Plain JSON without the Table Accept.
    assert_eq!(s.get("/api/v1/namespaces/ns/serviceaccounts").await.body["kind"], "ServiceAccountList");
}

#[tokio::test]
async fn pretty_indents() {
    let s = server().await;
    s.namespace("ns").await;
    let response = tower::ServiceExt::oneshot(s.router.clone(), request(Method::GET, "/api/v1/namespaces/ns?pretty=true", Some(ADMIN), &[], None))
        .await
        .unwrap();
    let text = String::from_utf8(response.into_body().collect().await.unwrap().to_bytes().to_vec()).unwrap();
    assert!(text.starts_with("{\n  \""), "{text}");
    let plain = tower::ServiceExt::oneshot(s.router.clone(), request(Method::GET, "/api/v1/namespaces/ns", Some(ADMIN), &[], None)).await.unwrap();
    let text = String::from_utf8(plain.into_body().collect().await.unwrap().to_bytes().to_vec()).unwrap();
    assert!(!text.contains('\n'), "{text}");
}

// --- Watch ---

struct Lines {
    body: Body,
    buffer: Vec<u8>,
}

impl Lines {
    /// The next event, or `None` when the stream ended; panics after 5 s of silence.
    async fn next(&mut self) -> Option<Value> {
        loop {
            if let Some(end) = self.buffer.iter().position(|b| *b == b'\n') {
                let line: Vec<u8> = self.buffer.drain(..=end).collect();
                return Some(serde_json::from_slice(&line[..end]).unwrap());
            }
            match tokio::time::timeout(Duration::from_secs(5), self.body.frame()).await.expect("no watch event within 5s") {
                None => return None,
                Some(frame) => {
                    if let Ok(data) = frame.unwrap().into_data() {
                        self.buffer.extend_from_slice(&data);
                    }
                }
            }
        }
    }
}

async fn watch(s: &Server, uri: &str, headers: &[(&str, &str)]) -> Lines {
    let response = tower::ServiceExt::oneshot(s.router.clone(), request(Method::GET, uri, Some(ADMIN), headers, None)).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.headers()[header::CONTENT_TYPE], "application/json");
    Lines { body: response.into_body(), buffer: Vec::new() }
}

fn event(e: &Value) -> (String, String) {
    (e["type"].as_str().unwrap().to_owned(), e["object"]["metadata"]["name"].as_str().unwrap_or("").to_owned())
}

#[tokio::test]
async fn watch_streams_added_modified_deleted_in_order() {
    let s = server().await;
    s.namespace("ns").await;
    s.namespace("other").await;
    let mut events = watch(&s, "/api/v1/namespaces/ns/serviceaccounts?watch=true&allowWatchBookmarks=true", &[]).await;
    assert_eq!(event(&events.next().await.unwrap()), ("ADDED".into(), "default".into()));

    s.service_account("other", "elsewhere", json!({})).await;
    s.post("/api/v1/namespaces/ns/secrets", json!({"metadata": {"name": "not-an-sa"}})).await;
    s.service_account("ns", "bot", json!({})).await;
    let patched = s.patch("/api/v1/namespaces/ns/serviceaccounts/bot", "application/merge-patch+json", json!({"metadata": {"labels": {"x": "1"}}})).await;
    assert_eq!(patched.status, StatusCode::OK);
    s.call(Method::DELETE, "/api/v1/namespaces/ns/serviceaccounts/bot", &[], None).await;

    let added = events.next().await.unwrap();
    assert_eq!(event(&added), ("ADDED".into(), "bot".into()));
    assert_eq!(added["object"]["kind"], "ServiceAccount");
    let modified = events.next().await.unwrap();
    assert_eq!(event(&modified), ("MODIFIED".into(), "bot".into()));
    assert_eq!(modified["object"]["metadata"]["labels"]["x"], "1");
    let deleted = events.next().await.unwrap();
    assert_eq!(event(&deleted), ("DELETED".into(), "bot".into()));
    assert!(
        deleted["object"]["metadata"]["resourceVersion"].as_str().unwrap().parse::<u64>().unwrap()
            > modified["object"]["metadata"]["resourceVersion"].as_str().unwrap().parse::<u64>().unwrap()
    );
}

#[tokio::test]
async fn watch_from_a_resource_version_with_selectors_and_timeout() {
    let s = server().await;
    s.namespace("ns").await;
    let start = s.get("/api/v1/namespaces/ns/serviceaccounts").await.body["metadata"]["resourceVersion"].as_str().unwrap().to_owned();
    s.service_account("ns", "a", json!({"app": "x"})).await;
    s.service_account("ns", "b", json!({"app": "y"})).await;
    s.service_account("ns", "c", json!({"app": "x"})).await;
    // From a revision: only later changes, no initial ADDED for `default`; legacy /watch/ path.
    let mut events =
        watch(&s, &format!("/api/v1/watch/namespaces/ns/serviceaccounts?resourceVersion={start}&labelSelector=app%3Dx&timeoutSeconds=1"), &[])
            .await;
    assert_eq!(event(&events.next().await.unwrap()), ("ADDED".into(), "a".into()));
    assert_eq!(event(&events.next().await.unwrap()), ("ADDED".into(), "c".into()));
    // timeoutSeconds ends the stream.
    assert!(events.next().await.is_none());

    // A single object by name, all namespaces, Python's `watch=True`.
    let mut one = watch(&s, "/api/v1/serviceaccounts?watch=True&fieldSelector=metadata.name%3Db&timeoutSeconds=1", &[]).await;
    assert_eq!(event(&one.next().await.unwrap()), ("ADDED".into(), "b".into()));
    assert!(one.next().await.is_none());

    // Updates into and out of the selection are ADDED and DELETED, as kube's cacher sends.
    let now = s.get("/api/v1/namespaces/ns/serviceaccounts").await.body["metadata"]["resourceVersion"].as_str().unwrap().to_owned();
    let mut moving =
        watch(&s, &format!("/api/v1/namespaces/ns/serviceaccounts?watch=true&resourceVersion={now}&labelSelector=app%3Dx&timeoutSeconds=2"), &[]).await;
    let merge = "application/merge-patch+json";
    s.patch("/api/v1/namespaces/ns/serviceaccounts/b", merge, json!({"metadata": {"labels": {"app": "x"}}})).await;
    s.patch("/api/v1/namespaces/ns/serviceaccounts/a", merge, json!({"metadata": {"labels": {"app": "z"}}})).await;
    s.patch("/api/v1/namespaces/ns/serviceaccounts/c", merge, json!({"metadata": {"annotations": {"n": "1"}}})).await;
    s.patch("/api/v1/namespaces/ns/serviceaccounts/a", merge, json!({"metadata": {"annotations": {"n": "1"}}})).await;
    s.patch("/api/v1/namespaces/ns/serviceaccounts/b", merge, json!({"metadata": {"labels": {"app": "y"}}})).await;
    assert_eq!(event(&moving.next().await.unwrap()), ("ADDED".into(), "b".into()));
    assert_eq!(event(&moving.next().await.unwrap()), ("DELETED".into(), "a".into()));
    assert_eq!(event(&moving.next().await.unwrap()), ("MODIFIED".into(), "c".into()));
    assert_eq!(event(&moving.next().await.unwrap()), ("DELETED".into(), "b".into()));
    assert!(moving.next().await.is_none());

    // A watch of one name (the legacy path): a field selector with it must pin that name, as in kube.
    let mut one = watch(&s, "/api/v1/watch/namespaces/ns/serviceaccounts/c?fieldSelector=metadata.name%3Dc&timeoutSeconds=1", &[]).await;
    assert_eq!(event(&one.next().await.unwrap()), ("ADDED".into(), "c".into()));
    assert!(one.next().await.is_none());
    for selector in ["metadata.name%3Da", "metadata.name%21%3Dc", "metadata.namespace%3Dns"] {
        let other = s.get(&format!("/api/v1/watch/namespaces/ns/serviceaccounts/c?fieldSelector={selector}&timeoutSeconds=1")).await;
        assert_status(&other, 400, "BadRequest", "fieldSelector metadata.name doesn't match requested name");
    }

    // client-go's WatchList: initial events, then the initial-events-end bookmark.
    let mut initial = watch(
        &s,
        "/api/v1/namespaces/ns/serviceaccounts?watch=true&sendInitialEvents=true&allowWatchBookmarks=true&resourceVersionMatch=NotOlderThan&resourceVersion=&labelSelector=app%3Dy&timeoutSeconds=1",
        &[],
    )
    .await;
    assert_eq!(event(&initial.next().await.unwrap()), ("ADDED".into(), "b".into()));
    let bookmark = initial.next().await.unwrap();
    assert_eq!(bookmark["type"], "BOOKMARK");
    assert_eq!(bookmark["object"]["kind"], "ServiceAccount");
    assert_eq!(bookmark["object"]["metadata"]["annotations"]["k8s.io/initial-events-end"], "true");
    assert!(initial.next().await.is_none());

    // Tables for `kubectl get -w`: headers once.
    let mut table = watch(&s, "/api/v1/namespaces/ns/serviceaccounts?watch=1&timeoutSeconds=1", &[("accept", KUBECTL_TABLE)]).await;
    let first = table.next().await.unwrap();
    assert_eq!(first["object"]["kind"], "Table");
    assert_eq!(first["object"]["columnDefinitions"].as_array().unwrap().len(), 3);
    assert_eq!(first["object"]["rows"][0]["cells"][0], "a");
    let second = table.next().await.unwrap();
    assert!(second["object"]["columnDefinitions"].as_array().unwrap().is_empty());
}

#[tokio::test]
async fn watch_from_a_compacted_revision_is_gone() {
    let s = server_with(Some(2)).await;
    s.namespace("ns").await;
    for name in ["a", "b", "c"] {
        s.service_account("ns", name, json!({})).await;
    }
    let mut events = watch(&s, "/api/v1/namespaces/ns/serviceaccounts?watch=true&resourceVersion=1", &[]).await;
    let error = events.next().await.unwrap();
    assert_eq!(error["type"], "ERROR");
    assert_eq!(error["object"]["kind"], "Status");
    assert_eq!(error["object"]["code"], 410);
    assert_eq!(error["object"]["reason"], "Expired");
    assert!(error["object"]["message"].as_str().unwrap().starts_with("too old resource version: 1"), "{error}");
    assert!(events.next().await.is_none());
}

// --- Authorization ---

#[tokio::test]
async fn only_the_admin_may_touch_objects() {
    let s = server().await;
    s.namespace("default").await;
    let anonymous = s.send(request(Method::GET, "/api/v1/namespaces/default/serviceaccounts", None, &[], None)).await;
    assert_status(
        &anonymous,
        403,
        "Forbidden",
        r#"serviceaccounts is forbidden: User "system:anonymous" cannot list resource "serviceaccounts" in API group "" in the namespace "default""#,
    );

    let token = s
        .post("/api/v1/namespaces/default/serviceaccounts/default/token", json!({"spec": {}}))
        .await
        .body["status"]["token"]
        .as_str()
        .unwrap()
        .to_owned();
    let as_sa = s.send(request(Method::GET, "/api/v1/namespaces/default/serviceaccounts/default", Some(&token), &[], None)).await;
    assert_status(
        &as_sa,
        403,
        "Forbidden",
        r#"serviceaccounts "default" is forbidden: User "system:serviceaccount:default:default" cannot get resource "serviceaccounts" in API group "" in the namespace "default""#,
    );
    let create = s.send(request(Method::POST, "/api/v1/namespaces", Some(&token), &[("content-type", "application/json")], Some(r#"{"metadata":{"name":"x"}}"#))).await;
    assert_eq!(create.status, StatusCode::FORBIDDEN);
    // Discovery is readable by any authenticated caller.
    let discovery = s.send(request(Method::GET, "/api/v1", Some(&token), &[], None)).await;
    assert_eq!(discovery.status, StatusCode::OK);
}

#[tokio::test]
async fn a_resumed_watch_sees_objects_that_left_its_selection_meanwhile_deleted() {
    let s = server().await;
    s.namespace("ns").await;
    s.service_account("ns", "k", json!({"app": "x"})).await;
    let seen_at = s.get("/api/v1/namespaces/ns/serviceaccounts?labelSelector=app%3Dx").await.body["metadata"]["resourceVersion"].as_str().unwrap().to_owned();
    // Relabelled out of the selection before the watch resumes from where the list left off.
    s.patch("/api/v1/namespaces/ns/serviceaccounts/k", "application/merge-patch+json", json!({"metadata": {"labels": {"app": "y"}}})).await;
    let mut resumed = watch(&s, &format!("/api/v1/namespaces/ns/serviceaccounts?watch=true&resourceVersion={seen_at}&labelSelector=app%3Dx&timeoutSeconds=3"), &[]).await;
    assert_eq!(event(&resumed.next().await.unwrap()), ("DELETED".into(), "k".into()));
    assert!(resumed.next().await.is_none());
}
