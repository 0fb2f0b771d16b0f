//! Known fields per kind, for `fieldValidation=Strict|Warn|Ignore`: unknown fields are an
//! error, a warning, or ignored, as kube-apiserver decides from its schemas.

use serde_json::Value;

use crate::error::{ApiError, ApiResult};

/// A schema node: known child fields, or anything below.
#[derive(Clone, Copy, Debug)]
pub enum Schema {
    /// Any value (maps with free keys, opaque specs).
    Any,
    /// An object with these fields.
    Object(&'static [(&'static str, Schema)]),
    /// An array whose items follow the schema.
    Array(&'static Schema),
}

const OBJECT_META: Schema = Schema::Object(&[
    ("name", Schema::Any),
    ("generateName", Schema::Any),
    ("namespace", Schema::Any),
    ("selfLink", Schema::Any),
    ("uid", Schema::Any),
    ("resourceVersion", Schema::Any),
    ("generation", Schema::Any),
    ("creationTimestamp", Schema::Any),
    ("deletionTimestamp", Schema::Any),
    ("deletionGracePeriodSeconds", Schema::Any),
    ("labels", Schema::Any),
    ("annotations", Schema::Any),
    ("ownerReferences", Schema::Any),
    ("finalizers", Schema::Any),
    ("managedFields", Schema::Any),
]);

/// `apiVersion`, `kind`, `metadata` plus the kind's own top-level fields.
macro_rules! top {
    ($($field:expr => $schema:expr),* $(,)?) => {
        Schema::Object(&[("apiVersion", Schema::Any), ("kind", Schema::Any), ("metadata", OBJECT_META), $(($field, $schema)),*])
    };
}

const BOUND_OBJECT_REF: Schema =
    Schema::Object(&[("kind", Schema::Any), ("apiVersion", Schema::Any), ("name", Schema::Any), ("uid", Schema::Any)]);

pub const TOKEN_REQUEST: Schema = top! {
    "spec" => Schema::Object(&[("audiences", Schema::Any), ("expirationSeconds", Schema::Any), ("boundObjectRef", BOUND_OBJECT_REF)]),
    "status" => Schema::Object(&[("token", Schema::Any), ("expirationTimestamp", Schema::Any)]),
};

pub const TOKEN_REVIEW: Schema = top! {
    "spec" => Schema::Object(&[("token", Schema::Any), ("audiences", Schema::Any)]),
    "status" => Schema::Any,
};

pub const SELF_SUBJECT_REVIEW: Schema = top! { "status" => Schema::Any };

pub const NAMESPACE: Schema = top! {
    "spec" => Schema::Object(&[("finalizers", Schema::Any)]),
    "status" => Schema::Any,
};

pub const SERVICE_ACCOUNT: Schema = top! {
    "secrets" => Schema::Array(&Schema::Any),
    "imagePullSecrets" => Schema::Array(&Schema::Any),
    "automountServiceAccountToken" => Schema::Any,
};

pub const SECRET: Schema = top! {
    "data" => Schema::Any,
    "stringData" => Schema::Any,
    "type" => Schema::Any,
    "immutable" => Schema::Any,
};

pub const ROLE: Schema = top! { "rules" => Schema::Any, "aggregationRule" => Schema::Any };

pub const BINDING: Schema = top! { "roleRef" => Schema::Any, "subjects" => Schema::Any };

/// Pods, Nodes and AuthConfigs: top level checked, specs kept as sent.
pub const SPEC_AND_STATUS: Schema = top! { "spec" => Schema::Any, "status" => Schema::Any };

/// Paths of fields the schema does not know, e.g. `spec.foo`.
pub fn unknown_fields(value: &Value, schema: &Schema) -> Vec<String> {
    let mut out = Vec::new();
    walk(value, schema, "", &mut out);
    out
}

fn walk(value: &Value, schema: &Schema, path: &str, out: &mut Vec<String>) {
    match (schema, value) {
        (Schema::Object(fields), Value::Object(map)) => {
            for (key, child) in map {
                let child_path = if path.is_empty() { key.clone() } else { format!("{path}.{key}") };
                match fields.iter().find(|(name, _)| name == key) {
                    Some((_, child_schema)) => walk(child, child_schema, &child_path, out),
                    None => out.push(child_path),
                }
            }
        }
        (Schema::Array(item), Value::Array(items)) => {
            for (i, child) in items.iter().enumerate() {
                walk(child, item, &format!("{path}[{i}]"), out);
            }
        }
        _ => {}
    }
}

/// `fieldValidation`: what to do with unknown fields.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum FieldValidation {
    Ignore,
    #[default]
    Warn,
    Strict,
}

impl FieldValidation {
    pub fn parse(value: Option<&str>) -> ApiResult<Self> {
        match value {
            None | Some("") | Some("Warn") => Ok(Self::Warn),
            Some("Strict") => Ok(Self::Strict),
            Some("Ignore") => Ok(Self::Ignore),
            Some(other) => Err(ApiError::bad_request(format!(
                "fieldValidation must be one of \"Ignore\", \"Warn\", or \"Strict\", got {}",
                tokenwarden_core::error::go_quote(other)
            ))),
        }
    }

    /// Applies the policy: Strict → 400 (kube's message), Warn → warnings, Ignore → nothing.
    pub fn check(self, value: &Value, schema: &Schema, kind: &str, version: &str) -> ApiResult<Vec<String>> {
        if self == Self::Ignore {
            return Ok(Vec::new());
        }
        let unknown = unknown_fields(value, schema);
        if unknown.is_empty() {
            return Ok(Vec::new());
        }
        let messages: Vec<String> = unknown.iter().map(|f| format!("unknown field {}", tokenwarden_core::error::go_quote(f))).collect();
        if self == Self::Strict {
            // kube-apiserver names the version alone: `"v1"`, not `"authentication.k8s.io/v1"`.
            let version = version.rsplit_once('/').map_or(version, |(_, version)| version);
            return Err(ApiError::bad_request(format!(
                "{kind} in version {} cannot be handled as a {kind}: strict decoding error: {}",
                tokenwarden_core::error::go_quote(version),
                messages.join(", ")
            )));
        }
        Ok(messages)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn finds_unknown_fields_at_any_depth() {
        let value = json!({"apiVersion": "v1", "kind": "TokenRequest", "metadata": {"name": "x", "bogus": 1},
                           "spec": {"audiences": ["a"], "boundObjectRef": {"kind": "Pod", "nope": true}, "foo": 1}});
        assert_eq!(unknown_fields(&value, &TOKEN_REQUEST), vec!["metadata.bogus", "spec.boundObjectRef.nope", "spec.foo"]);
        let err = FieldValidation::Strict.check(&value, &TOKEN_REQUEST, "TokenRequest", "authentication.k8s.io/v1").unwrap_err();
        assert_eq!(
            err.message,
            r#"TokenRequest in version "v1" cannot be handled as a TokenRequest: strict decoding error: unknown field "metadata.bogus", unknown field "spec.boundObjectRef.nope", unknown field "spec.foo""#
        );
        assert_eq!(FieldValidation::Warn.check(&value, &TOKEN_REQUEST, "TokenRequest", "v1").unwrap().len(), 3);
        assert!(FieldValidation::Ignore.check(&value, &TOKEN_REQUEST, "TokenRequest", "v1").unwrap().is_empty());
    }
}
