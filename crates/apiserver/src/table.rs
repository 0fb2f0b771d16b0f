//! Server-side printing: `meta.k8s.io` `Table` responses for `Accept: ...;as=Table`, the
//! columns `kubectl get` shows.

use axum::http::HeaderMap;
use axum::http::header;
use serde_json::{Map, Value, json};
use tokenwarden_core::{Object, Resource, Timestamp};

/// What the client asked the objects to be rendered as.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Rendering {
    /// The objects themselves (JSON).
    Plain,
    /// A `Table` of `meta.k8s.io/<version>`.
    Table { version: String },
}

/// Reads the Accept header: the first media type decides. `application/json;as=Table;
/// v=v1|v1beta1;g=meta.k8s.io` is a Table; anything else is plain JSON.
pub fn rendering(headers: &HeaderMap) -> Rendering {
    let Some(accept) = headers.get(header::ACCEPT).and_then(|v| v.to_str().ok()) else {
        return Rendering::Plain;
    };
    for media in accept.split(',') {
        let mut parts = media.split(';').map(str::trim);
        let base = parts.next().unwrap_or("");
        if base.is_empty() {
            continue;
        }
        let mut as_kind = "";
        let mut version = "";
        let mut group = "";
        for param in parts {
            match param.split_once('=') {
                Some(("as", v)) => as_kind = v,
                Some(("v", v)) => version = v,
                Some(("g", v)) => group = v,
                _ => {}
            }
        }
        if as_kind == "Table" && (group.is_empty() || group == "meta.k8s.io") {
            let version = if matches!(version, "v1" | "v1beta1") { version } else { "v1" };
            return Rendering::Table { version: version.to_owned() };
        }
        if as_kind.is_empty() {
            return Rendering::Plain;
        }
        // Another `as=` (PartialObjectMetadata, ...) we do not serve: try the next type.
    }
    Rendering::Plain
}

/// `includeObject`: what each row's `object` carries.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum IncludeObject {
    None,
    #[default]
    Metadata,
    Object,
}

impl IncludeObject {
    pub fn parse(value: Option<&str>) -> Self {
        match value {
            Some("None") => Self::None,
            Some("Object") => Self::Object,
            _ => Self::Metadata,
        }
    }
}

/// kubectl's `duration.HumanDuration`.
pub fn human_duration(secs: i64) -> String {
    if secs < -1 {
        return "<invalid>".into();
    }
    if secs < 0 {
        return "0s".into();
    }
    if secs < 60 * 2 {
        return format!("{secs}s");
    }
    let minutes = secs / 60;
    if minutes < 10 {
        let s = secs % 60;
        return if s == 0 { format!("{minutes}m") } else { format!("{minutes}m{s}s") };
    }
    if minutes < 60 * 3 {
        return format!("{minutes}m");
    }
    let hours = secs / 3600;
    if hours < 8 {
        let m = minutes % 60;
        return if m == 0 { format!("{hours}h") } else { format!("{hours}h{m}m") };
    }
    if hours < 48 {
        return format!("{hours}h");
    }
    if hours < 24 * 8 {
        let h = hours % 24;
        return if h == 0 { format!("{}d", hours / 24) } else { format!("{}d{h}h", hours / 24) };
    }
    if hours < 24 * 365 * 2 {
        return format!("{}d", hours / 24);
    }
    if hours < 24 * 365 * 8 {
        let days = (hours / 24) % 365;
        return if days == 0 { format!("{}y", hours / 24 / 365) } else { format!("{}y{days}d", hours / 24 / 365) };
    }
    format!("{}y", hours / 24 / 365)
}

const NAME_DESCRIPTION: &str = "Name must be unique within a namespace. Is required when creating resources, although some resources may allow a client to request the generation of an appropriate name automatically. Name is primarily intended for creation idempotence and configuration definition. Cannot be updated. More info: https://kubernetes.io/docs/concepts/overview/working-with-objects/names#names";
const AGE_DESCRIPTION: &str = "CreationTimestamp is a timestamp representing the server time when this object was created. It is not guaranteed to be set in happens-before order across separate operations. Clients may not set this value. It is represented in RFC3339 form and is in UTC.\n\nPopulated by the system. Read-only. Null for lists. More info: https://git.k8s.io/community/contributors/devel/sig-architecture/api-conventions.md#metadata";

fn column(name: &str, kind: &str, format: &str, description: &str) -> Value {
    json!({"name": name, "type": kind, "format": format, "description": description, "priority": 0})
}

/// The column definitions for a resource.
pub fn columns(resource: &Resource) -> Vec<Value> {
    let name = column("Name", "string", "name", NAME_DESCRIPTION);
    let age = column("Age", "string", "", AGE_DESCRIPTION);
    match *resource {
        Resource::SERVICE_ACCOUNTS => vec![
            name,
            column("Secrets", "integer", "", "Secrets is a list of the secrets in the same namespace that pods running using this ServiceAccount are allowed to use."),
            age,
        ],
        Resource::NAMESPACES => vec![name, column("Status", "string", "", "The status of the namespace"), age],
        Resource::ROLES | Resource::CLUSTER_ROLES => vec![name, column("Created At", "date", "", "Time at which the object was created")],
        Resource::ROLE_BINDINGS | Resource::CLUSTER_ROLE_BINDINGS => {
            let wide = |title: &str, description: &str| {
                let mut c = column(title, "string", "", description);
                c["priority"] = json!(1);
                c
            };
            vec![
                name,
                column("Role", "string", "", "Role references the Role or ClusterRole the subjects are bound to"),
                age,
                wide("Users", "Users in the binding"),
                wide("Groups", "Groups in the binding"),
                wide("ServiceAccounts", "ServiceAccounts in the binding"),
            ]
        }
        _ => vec![name, age],
    }
}

/// The subjects of `kind` in a binding, as kubectl's wide columns list them.
fn subjects_of(object: &Object, kind: &str) -> String {
    let subjects = object.value().get("subjects").and_then(Value::as_array).map(Vec::as_slice).unwrap_or_default();
    let names: Vec<String> = subjects
        .iter()
        .filter(|s| s.get("kind").and_then(Value::as_str) == Some(kind))
        .map(|s| {
            let name = s.get("name").and_then(Value::as_str).unwrap_or_default();
            match s.get("namespace").and_then(Value::as_str).filter(|_| kind == "ServiceAccount") {
                Some(namespace) => format!("{namespace}/{name}"),
                None => name.to_owned(),
            }
        })
        .collect();
    names.join(", ")
}

/// The cells of one object's row.
pub fn cells(resource: &Resource, object: &Object, now: Timestamp) -> Vec<Value> {
    let age = match object.creation_timestamp() {
        Some(created) => human_duration(now.unix() - created.unix()),
        None => "<unknown>".to_owned(),
    };
    let name = json!(object.name());
    match *resource {
        Resource::SERVICE_ACCOUNTS => vec![name, json!(object.service_account_secret_count()), json!(age)],
        Resource::NAMESPACES => {
            let phase = object.str_at("status.phase").filter(|p| !p.is_empty()).unwrap_or("Active");
            vec![name, json!(phase), json!(age)]
        }
        Resource::ROLES | Resource::CLUSTER_ROLES => {
            vec![name, json!(object.creation_timestamp().map(|t| t.to_string()).unwrap_or_default())]
        }
        Resource::ROLE_BINDINGS | Resource::CLUSTER_ROLE_BINDINGS => {
            let role = format!("{}/{}", object.str_at("roleRef.kind").unwrap_or_default(), object.str_at("roleRef.name").unwrap_or_default());
            let wide = ["User", "Group", "ServiceAccount"].map(|kind| json!(subjects_of(object, kind)));
            let mut row = vec![name, json!(role), json!(age)];
            row.extend(wide);
            row
        }
        _ => vec![name, json!(age)],
    }
}

/// `PartialObjectMetadata` of an object, in `meta.k8s.io/<version>`.
pub fn partial_metadata(object: &Object, version: &str) -> Value {
    json!({
        "kind": "PartialObjectMetadata",
        "apiVersion": format!("meta.k8s.io/{version}"),
        "metadata": object.value().get("metadata").cloned().unwrap_or_else(|| json!({})),
    })
}

/// A row for an object.
pub fn row(resource: &Resource, object: &Object, now: Timestamp, version: &str, include: IncludeObject) -> Value {
    let mut row = json!({"cells": cells(resource, object, now)});
    match include {
        IncludeObject::None => {}
        IncludeObject::Metadata => row["object"] = partial_metadata(object, version),
        IncludeObject::Object => row["object"] = object.clone().into_value(),
    }
    row
}

/// Table options for one response.
#[derive(Clone, Debug)]
pub struct TableOptions<'a> {
    pub version: &'a str,
    pub include: IncludeObject,
    /// Leave out `columnDefinitions` (watch events after the first).
    pub no_headers: bool,
    pub now: Timestamp,
}

/// A `Table` of `objects`; `metadata` is the list metadata (`resourceVersion`, `continue`).
pub fn table(resource: &Resource, objects: &[Object], metadata: Map<String, Value>, options: &TableOptions<'_>) -> Value {
    let rows: Vec<Value> = objects.iter().map(|o| row(resource, o, options.now, options.version, options.include)).collect();
    let columns = if options.no_headers { Vec::new() } else { columns(resource) };
    json!({
        "kind": "Table",
        "apiVersion": format!("meta.k8s.io/{}", options.version),
        "metadata": metadata,
        "columnDefinitions": columns,
        "rows": rows,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    #[test]
    fn durations_print_like_kubectl() {
        let cases = [
            (-5, "<invalid>"),
            (-1, "0s"),
            (5, "5s"),
            (119, "119s"),
            (180, "3m"),
            (185, "3m5s"),
            (600, "10m"),
            (3 * 3600 - 1, "179m"),
            (3 * 3600 + 120, "3h2m"),
            (8 * 3600, "8h"),
            (47 * 3600, "47h"),
            (2 * 86400, "2d"),
            (2 * 86400 + 3600, "2d1h"),
            (10 * 86400, "10d"),
            (3 * 365 * 86400, "3y"),
            (3 * 365 * 86400 + 86400, "3y1d"),
            (9 * 365 * 86400, "9y"),
        ];
        for (secs, want) in cases {
            assert_eq!(human_duration(secs), want, "{secs}");
        }
    }

    #[test]
    fn accept_header_picks_the_table_version() {
        let mut headers = HeaderMap::new();
        assert_eq!(rendering(&headers), Rendering::Plain);
        headers.insert(
            header::ACCEPT,
            HeaderValue::from_static("application/json;as=Table;v=v1beta1;g=meta.k8s.io,application/json"),
        );
        assert_eq!(rendering(&headers), Rendering::Table { version: "v1beta1".into() });
        headers.insert(header::ACCEPT, HeaderValue::from_static("application/json, application/json;as=Table;v=v1;g=meta.k8s.io"));
        assert_eq!(rendering(&headers), Rendering::Plain);
        headers.insert(
            header::ACCEPT,
            HeaderValue::from_static("application/json;as=PartialObjectMetadataList;v=v1;g=meta.k8s.io,application/json;as=Table;v=v1;g=meta.k8s.io"),
        );
        assert_eq!(rendering(&headers), Rendering::Table { version: "v1".into() });
    }
}
