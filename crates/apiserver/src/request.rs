//! What a request is about, parsed from its method and path as kube-apiserver's
//! `RequestInfoFactory` does; authorization and dispatch both read it.

use axum::http::Method;

/// The attributes of one API request.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RequestInfo {
    /// A resource request (`/api/v1/...`, `/apis/<g>/<v>/...` with a resource); otherwise a
    /// non-resource path such as discovery.
    pub is_resource: bool,
    pub path: String,
    /// `get`, `list`, `watch`, `create`, `update`, `patch`, `delete`, `deletecollection`; for
    /// non-resource requests the lower-case method.
    pub verb: &'static str,
    /// `api` or `apis` (empty for other paths).
    pub prefix: String,
    pub group: String,
    pub version: String,
    pub namespace: String,
    pub resource: String,
    pub subresource: String,
    pub name: String,
    /// For a list or watch whose field selector pins `metadata.name` (`kubectl get sa bot -w`,
    /// single-object informers), that name: RBAC's `resourceNames` apply to it, as kube's
    /// requestinfo sets its `Name` (dispatch still serves a collection).
    pub selected_name: String,
}

fn method_verb(method: &Method) -> &'static str {
    match *method {
        Method::GET => "get",
        Method::POST => "post",
        Method::PUT => "put",
        Method::PATCH => "patch",
        Method::DELETE => "delete",
        Method::HEAD => "head",
        Method::OPTIONS => "options",
        _ => "unknown",
    }
}

impl RequestInfo {
    /// The name RBAC checks: the path's, else the one a list's field selector pins.
    pub fn authorized_name(&self) -> &str {
        if self.name.is_empty() { &self.selected_name } else { &self.name }
    }

    /// Records the name a list's or watch's `fieldSelector` requires exactly (`metadata.name=x`
    /// or `==`, among other terms), when it is a valid path segment, as kube does.
    pub fn select_name(&mut self, field_selector: Option<&str>) {
        if !matches!(self.verb, "list" | "watch") {
            return;
        }
        // The selector the handler reads too (one that does not parse is its 400, not ours).
        let Some(Ok(selector)) = field_selector.map(tokenwarden_core::selector::FieldSelector::parse) else { return };
        let pinned = selector.requires_exact("metadata.name");
        // kube's `IsValidPathSegmentName`: not `.` or `..`, no `/` or `%`.
        if let Some(name) = pinned.filter(|name| !name.is_empty() && !matches!(*name, "." | "..") && !name.contains(['/', '%'])) {
            self.selected_name = name.to_owned();
        }
    }

    /// Parses `path` (without the query) for `method`; `watch` is the `watch` query flag.
    pub fn parse(method: &Method, path: &str, watch: bool) -> Self {
        let mut info = Self { path: path.to_owned(), verb: method_verb(method), ..Self::default() };
        let parts: Vec<&str> = path.trim_matches('/').split('/').filter(|p| !p.is_empty()).collect();
        let rest = match parts.as_slice() {
            ["api", version, rest @ ..] => {
                info.prefix = "api".into();
                info.version = (*version).to_owned();
                rest
            }
            ["apis", group, version, rest @ ..] => {
                info.prefix = "apis".into();
                info.group = (*group).to_owned();
                info.version = (*version).to_owned();
                rest
            }
            _ => return info,
        };
        let mut rest = rest;
        let mut legacy_watch = false;
        if rest.first() == Some(&"watch") {
            legacy_watch = true;
            rest = &rest[1..];
        }
        if rest.is_empty() {
            return info; // discovery of a group version
        }
        info.is_resource = true;
        if rest[0] == "namespaces" && rest.len() > 1 {
            info.namespace = rest[1].to_owned();
            if rest.len() > 2 && !matches!(rest[2], "status" | "finalize") {
                rest = &rest[2..];
            }
        }
        info.resource = rest[0].to_owned();
        if let Some(name) = rest.get(1) {
            info.name = (*name).to_owned();
        }
        if let Some(sub) = rest.get(2) {
            info.subresource = (*sub).to_owned();
        }
        if rest.len() > 3 {
            info.is_resource = false; // nothing serves deeper paths
        }
        info.verb = match *method {
            // `?watch=true` turns only a list into a watch (kube's requestinfo); a named GET stays a get.
            Method::GET | Method::HEAD if legacy_watch || (watch && info.name.is_empty()) => "watch",
            Method::GET | Method::HEAD if info.name.is_empty() => "list",
            Method::GET | Method::HEAD => "get",
            Method::POST => "create",
            Method::PUT => "update",
            Method::PATCH => "patch",
            Method::DELETE if info.name.is_empty() => "deletecollection",
            Method::DELETE => "delete",
            _ => "unknown",
        };
        info
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_like_kube_apiserver() {
        let info = RequestInfo::parse(&Method::POST, "/api/v1/namespaces/ns/serviceaccounts/bot/token", false);
        assert!(info.is_resource);
        assert_eq!((info.verb, info.namespace.as_str(), info.resource.as_str(), info.name.as_str(), info.subresource.as_str()), ("create", "ns", "serviceaccounts", "bot", "token"));
        let ns = RequestInfo::parse(&Method::GET, "/api/v1/namespaces/ns", false);
        assert_eq!((ns.verb, ns.resource.as_str(), ns.name.as_str(), ns.namespace.as_str()), ("get", "namespaces", "ns", "ns"));
        let list = RequestInfo::parse(&Method::GET, "/apis/authorino.kuadrant.io/v1beta3/authconfigs", true);
        assert_eq!((list.verb, list.group.as_str(), list.resource.as_str()), ("watch", "authorino.kuadrant.io", "authconfigs"));
        let discovery = RequestInfo::parse(&Method::GET, "/apis/authentication.k8s.io/v1", false);
        assert!(!discovery.is_resource);
        assert_eq!(RequestInfo::parse(&Method::GET, "/api/v1/watch/namespaces/ns/pods", false).verb, "watch");
        assert_eq!(RequestInfo::parse(&Method::DELETE, "/api/v1/namespaces/ns/pods", false).verb, "deletecollection");

        let selected = |method: &Method, watch: bool, selector: &str| {
            let mut info = RequestInfo::parse(method, "/api/v1/namespaces/ns/serviceaccounts", watch);
            info.select_name(Some(selector));
            info.authorized_name().to_owned()
        };
        assert_eq!(selected(&Method::GET, true, "metadata.name=bot"), "bot");
        assert_eq!(selected(&Method::GET, false, "status.phase=Running,metadata.name==bot"), "bot");
        for not_pinned in ["metadata.name!=bot", "metadata.namespace=ns", "metadata.name=a/b", "metadata.name=..", "metadata.name="] {
            assert_eq!(selected(&Method::GET, false, not_pinned), "", "{not_pinned}");
        }
        assert_eq!(selected(&Method::DELETE, false, "metadata.name=bot"), "", "only lists and watches");
    }
}
