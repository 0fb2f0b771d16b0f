//! Legacy discovery documents: `/api` (`APIVersions`), `/apis` (`APIGroupList`),
//! `/apis/<group>` (`APIGroup`), `/api/v1` and `/apis/<group>/<version>` (`APIResourceList`).
//!
//! Every Accept header gets plain `application/json`, including client-go's aggregated
//! discovery Accept: client-go reads the response Content-Type, sees no `as=APIGroupDiscoveryList`
//! and falls back to the legacy documents.

use axum::http::StatusCode;
use axum::response::Response;
use serde_json::{Value, json};

use crate::body;
use crate::registry::STORED;
use crate::request::RequestInfo;

const AUTHENTICATION: &str = "authentication.k8s.io";
const AUTHORIZATION: &str = "authorization.k8s.io";
const RBAC: &str = "rbac.authorization.k8s.io";
const AUTHORINO: &str = "authorino.kuadrant.io";

/// Every API group (not the core group) with its versions, preferred first.
const GROUPS: [(&str, &[&str]); 4] =
    [(AUTHENTICATION, &["v1", "v1beta1"]), (AUTHORIZATION, &["v1"]), (RBAC, &["v1"]), (AUTHORINO, &["v1beta3"])];

/// The discovery document at `info.path`, or `None` (404) for anything else.
pub fn handle(info: &RequestInfo, pretty: bool) -> Option<Response> {
    let path = info.path.trim_end_matches('/');
    let parts: Vec<&str> = path.split('/').filter(|p| !p.is_empty()).collect();
    let document = match parts.as_slice() {
        ["api"] => api_versions(),
        ["apis"] => group_list(),
        ["api", "v1"] => resource_list("", "v1")?,
        ["apis", group] => {
            let mut document = group_document(group)?;
            document["kind"] = json!("APIGroup");
            document["apiVersion"] = json!("v1");
            document
        }
        ["apis", group, version] => resource_list(group, version)?,
        _ => return None,
    };
    Some(body::json(StatusCode::OK, &document, pretty))
}

/// `GET /api`
pub fn api_versions() -> Value {
    json!({
        "kind": "APIVersions",
        "versions": ["v1"],
        "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": ""}],
    })
}

fn group_document(group: &str) -> Option<Value> {
    let (name, versions) = GROUPS.iter().find(|(name, _)| *name == group)?;
    let versions: Vec<Value> =
        versions.iter().map(|v| json!({"groupVersion": format!("{name}/{v}"), "version": v})).collect();
    let preferred = versions.first().cloned().unwrap_or(Value::Null);
    Some(json!({"name": name, "versions": versions, "preferredVersion": preferred}))
}

/// `GET /apis`
pub fn group_list() -> Value {
    let groups: Vec<Value> = GROUPS.iter().filter_map(|(name, _)| group_document(name)).collect();
    json!({"kind": "APIGroupList", "apiVersion": "v1", "groups": groups})
}

/// `GET /api/v1`, `GET /apis/<group>/<version>`; `None` for a group version not served.
pub fn resource_list(group: &str, version: &str) -> Option<Value> {
    let served = if group.is_empty() {
        version == "v1"
    } else {
        GROUPS.iter().any(|(name, versions)| *name == group && versions.contains(&version))
    };
    if !served {
        return None;
    }
    let mut resources: Vec<Value> = Vec::new();
    for def in STORED.iter().filter(|d| d.resource.group == group && d.resource.version == version) {
        let r = &def.resource;
        let mut entry = json!({
            "name": r.plural,
            "singularName": r.singular,
            "namespaced": r.namespaced,
            "kind": r.kind,
            "verbs": def.verbs(),
        });
        if !def.short_names.is_empty() {
            entry["shortNames"] = json!(def.short_names);
        }
        resources.push(entry);
        if r.has_status_subresource() {
            resources.push(json!({
                "name": format!("{}/status", r.plural),
                "singularName": "",
                "namespaced": r.namespaced,
                "kind": r.kind,
                "verbs": ["get", "patch", "update"],
            }));
        }
        if r.plural == "serviceaccounts" && group.is_empty() {
            resources.push(json!({
                "name": "serviceaccounts/token",
                "singularName": "",
                "namespaced": true,
                "group": AUTHENTICATION,
                "version": "v1",
                "kind": "TokenRequest",
                "verbs": ["create"],
            }));
        }
    }
    if group == AUTHENTICATION {
        let review = |name: &str, singular: &str, kind: &str| {
            json!({"name": name, "singularName": singular, "namespaced": false, "kind": kind, "verbs": ["create"]})
        };
        if version == "v1" {
            resources.push(review("selfsubjectreviews", "selfsubjectreview", "SelfSubjectReview"));
        }
        resources.push(review("tokenreviews", "tokenreview", "TokenReview"));
    }
    if group == AUTHORIZATION {
        let review = |name: &str, singular: &str, kind: &str, namespaced: bool| {
            json!({"name": name, "singularName": singular, "namespaced": namespaced, "kind": kind, "verbs": ["create"]})
        };
        resources.push(review("localsubjectaccessreviews", "localsubjectaccessreview", "LocalSubjectAccessReview", true));
        resources.push(review("selfsubjectaccessreviews", "selfsubjectaccessreview", "SelfSubjectAccessReview", false));
        resources.push(review("selfsubjectrulesreviews", "selfsubjectrulesreview", "SelfSubjectRulesReview", false));
        resources.push(review("subjectaccessreviews", "subjectaccessreview", "SubjectAccessReview", false));
    }
    let group_version = if group.is_empty() { version.to_owned() } else { format!("{group}/{version}") };
    Some(json!({"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": group_version, "resources": resources}))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn core_lists_short_names_and_the_token_subresource() {
        let list = resource_list("", "v1").unwrap();
        let resources = list["resources"].as_array().unwrap();
        let sa = resources.iter().find(|r| r["name"] == "serviceaccounts").unwrap();
        assert_eq!(sa["shortNames"], json!(["sa"]));
        assert_eq!(sa["kind"], "ServiceAccount");
        let token = resources.iter().find(|r| r["name"] == "serviceaccounts/token").unwrap();
        assert_eq!((token["group"].as_str(), token["kind"].as_str()), (Some(AUTHENTICATION), Some("TokenRequest")));
        assert!(resources.iter().all(|r| r.get("verbs").is_some() && r.get("singularName").is_some()));
        assert!(resource_list("", "v2").is_none());
        assert!(resource_list("authentication.k8s.io", "v1alpha1").is_none());
        let authorino = resource_list(AUTHORINO, "v1beta3").unwrap();
        let status = authorino["resources"].as_array().unwrap().iter().find(|r| r["name"] == "authconfigs/status").unwrap();
        assert_eq!((status["kind"].as_str(), &status["verbs"]), (Some("AuthConfig"), &json!(["get", "patch", "update"])));
        let beta = resource_list(AUTHENTICATION, "v1beta1").unwrap();
        assert_eq!(beta["resources"].as_array().unwrap().len(), 1);
    }
}
