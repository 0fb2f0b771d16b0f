//! The core's one error type. Each variant carries what a Kubernetes `Status` needs; the API
//! edge turns it into JSON, and nothing else formats wire errors.

use std::fmt;

/// At most this many causes are answered in a 422: 3 MiB of `{}` in a list, or of bad label
/// keys, is a million items, each with its errors, which kube (no bound) answers with a Status
/// of some hundreds of megabytes.
pub const MAX_ERRORS: usize = 1000;

/// A field error inside an `Invalid` (422) error.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FieldError {
    /// `spec.expirationSeconds`
    pub field: String,
    /// `FieldValueInvalid`, `FieldValueRequired`, ...
    pub reason: &'static str,
    /// `Invalid value: 60: may not specify a duration less than 10 minutes`
    pub message: String,
}

impl FieldError {
    /// `Invalid value: <value>: <detail>`; `value` is already rendered as Go prints it
    /// (bare numbers, quoted strings).
    pub fn invalid(field: &str, value: impl fmt::Display, detail: &str) -> Self {
        Self {
            field: field.to_owned(),
            reason: "FieldValueInvalid",
            message: format!("Invalid value: {value}: {detail}"),
        }
    }

    pub fn required(field: &str, detail: &str) -> Self {
        let message = if detail.is_empty() { "Required value".to_owned() } else { format!("Required value: {detail}") };
        Self { field: field.to_owned(), reason: "FieldValueRequired", message }
    }

    pub fn forbidden(field: &str, detail: &str) -> Self {
        Self { field: field.to_owned(), reason: "FieldValueForbidden", message: format!("Forbidden: {detail}") }
    }

    /// `Too long: must have at most <max> bytes` (apimachinery's `TooLong`, which shows no value).
    pub fn too_long(field: &str, max: usize) -> Self {
        Self { field: field.to_owned(), reason: "FieldValueTooLong", message: format!("Too long: must have at most {max} bytes") }
    }

    /// `Duplicate value: <value>`; `value` rendered as Go prints it.
    pub fn duplicate(field: &str, value: impl fmt::Display) -> Self {
        Self { field: field.to_owned(), reason: "FieldValueDuplicate", message: format!("Duplicate value: {value}") }
    }

    /// `Not found: <value>`; `value` rendered as Go prints it.
    pub fn not_found(field: &str, value: impl fmt::Display) -> Self {
        Self { field: field.to_owned(), reason: "FieldValueNotFound", message: format!("Not found: {value}") }
    }

    /// `Unsupported value: <value>: supported values: "a", "b"` (apimachinery's `NotSupported`,
    /// each supported value as Go's `strconv.Quote` writes it; no detail without any).
    pub fn not_supported(field: &str, value: impl fmt::Display, supported: &[&str]) -> Self {
        let mut message = format!("Unsupported value: {value}");
        if !supported.is_empty() {
            let quoted: Vec<String> = supported.iter().map(|v| go_quote(v)).collect();
            message.push_str(&format!(": supported values: {}", quoted.join(", ")));
        }
        Self { field: field.to_owned(), reason: "FieldValueNotSupported", message }
    }
}

impl fmt::Display for FieldError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.field, self.message)
    }
}

/// Go's `%q` for a string: double-quoted with escapes.
pub fn go_quote(s: &str) -> String {
    serde_json::to_string(s).unwrap_or_else(|_| format!("\"{s}\""))
}

/// Go's `%q` for a `[]string`: `["a" "b"]`.
pub fn go_quote_list<S: AsRef<str>>(items: &[S]) -> String {
    let inner: Vec<String> = items.iter().map(|s| go_quote(s.as_ref())).collect();
    format!("[{}]", inner.join(" "))
}

/// Errors with Kubernetes semantics. `Display` is the exact `Status.message`.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// 400 BadRequest.
    #[error("{0}")]
    BadRequest(String),
    /// 404 NotFound: `<resource> "<name>" not found`.
    #[error("{resource} {} not found", go_quote(.name))]
    NotFound { resource: String, name: String },
    /// 409 AlreadyExists.
    #[error("{resource} {} already exists", go_quote(.name))]
    AlreadyExists { resource: String, name: String },
    /// 409 Conflict: `Operation cannot be fulfilled on <resource> "<name>": <detail>`.
    #[error("Operation cannot be fulfilled on {resource} {}: {detail}", go_quote(.name))]
    Conflict { resource: String, kind: String, name: String, detail: String },
    /// 422 Invalid: `<Kind>[.<group>] "<name>" is invalid: <causes>`.
    #[error("{}", invalid_message(.kind, .group, .name, .causes))]
    Invalid { kind: String, group: String, name: String, causes: Vec<FieldError> },
    /// 403 Forbidden by admission (RBAC's denials are the API server's):
    /// `<resource> "<name>" is forbidden: <detail>`, `<resource> is forbidden: ...` without a name.
    #[error("{}", forbidden_message(.resource, .name, .detail))]
    Forbidden { resource: String, name: String, detail: String, causes: Vec<FieldError> },
    /// 410 Gone: a watch or list from a compacted revision.
    #[error("{0}")]
    Gone(String),
    /// 500 InternalError: `Internal error occurred: <detail>`.
    #[error("Internal error occurred: {0}")]
    Internal(String),
}

/// kube's `NewInvalid` message: the causes as its error aggregate prints them, each message once
/// (the Status keeps every cause).
fn invalid_message(kind: &str, group: &str, name: &str, causes: &[FieldError]) -> String {
    let qualified = if group.is_empty() { kind.to_owned() } else { format!("{kind}.{group}") };
    let mut seen = std::collections::HashSet::with_capacity(causes.len());
    let list: Vec<String> = causes.iter().map(ToString::to_string).filter(|cause| seen.insert(cause.clone())).collect();
    let list = if list.len() == 1 { list.concat() } else { format!("[{}]", list.join(", ")) };
    format!("{qualified} {} is invalid: {list}", go_quote(name))
}

/// kube's `NewForbidden` message for `resource` (`plural[.group]`) and `name` (may be empty).
pub fn forbidden_message(resource: &str, name: &str, detail: &str) -> String {
    if name.is_empty() { format!("{resource} is forbidden: {detail}") } else { format!("{resource} {} is forbidden: {detail}", go_quote(name)) }
}

impl Error {
    pub fn not_found(resource: impl Into<String>, name: impl Into<String>) -> Self {
        Self::NotFound { resource: resource.into(), name: name.into() }
    }

    /// kube's NamespaceLifecycle refusal of a create in a namespace being deleted.
    pub fn namespace_terminating(resource: impl Into<String>, name: impl Into<String>, namespace: &str) -> Self {
        Self::Forbidden {
            resource: resource.into(),
            name: name.into(),
            detail: format!("unable to create new content in namespace {namespace} because it is being terminated"),
            causes: vec![FieldError {
                field: "metadata.namespace".into(),
                reason: "NamespaceTerminating",
                message: format!("namespace {namespace} is being terminated"),
            }],
        }
    }

    /// The HTTP status code.
    pub fn code(&self) -> u16 {
        match self {
            Self::BadRequest(_) => 400,
            Self::Forbidden { .. } => 403,
            Self::NotFound { .. } => 404,
            Self::AlreadyExists { .. } | Self::Conflict { .. } => 409,
            Self::Invalid { .. } => 422,
            Self::Gone(_) => 410,
            Self::Internal(_) => 500,
        }
    }

    /// The `Status.reason`.
    pub fn reason(&self) -> &'static str {
        match self {
            Self::BadRequest(_) => "BadRequest",
            Self::Forbidden { .. } => "Forbidden",
            Self::NotFound { .. } => "NotFound",
            Self::AlreadyExists { .. } => "AlreadyExists",
            Self::Conflict { .. } => "Conflict",
            Self::Invalid { .. } => "Invalid",
            Self::Gone(_) => "Expired",
            Self::Internal(_) => "InternalError",
        }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_match_kubernetes() {
        assert_eq!(Error::not_found("serviceaccounts", "foo").to_string(), r#"serviceaccounts "foo" not found"#);
        let invalid = Error::Invalid {
            kind: "TokenRequest".into(),
            group: "authentication.k8s.io".into(),
            name: String::new(),
            causes: vec![FieldError::invalid("spec.expirationSeconds", 60, "may not specify a duration less than 10 minutes")],
        };
        assert_eq!(
            invalid.to_string(),
            r#"TokenRequest.authentication.k8s.io "" is invalid: spec.expirationSeconds: Invalid value: 60: may not specify a duration less than 10 minutes"#
        );
        assert_eq!(invalid.code(), 422);
        assert_eq!(go_quote_list(&["a", "b"]), r#"["a" "b"]"#);
    }

    #[test]
    fn field_errors_read_as_apimachinerys() {
        let policy = FieldError::not_supported("spec.restartPolicy", go_quote("Sometimes"), &["Always", "OnFailure", "Never"]);
        assert_eq!(policy.to_string(), r#"spec.restartPolicy: Unsupported value: "Sometimes": supported values: "Always", "OnFailure", "Never""#);
        assert_eq!(policy.reason, "FieldValueNotSupported");
        assert_eq!(FieldError::not_supported("f", 7, &[]).message, "Unsupported value: 7");
        let duplicate = FieldError::duplicate("spec.containers[1].name", go_quote("c"));
        assert_eq!((duplicate.reason, duplicate.message.as_str()), ("FieldValueDuplicate", r#"Duplicate value: "c""#));
        let missing = FieldError::not_found("spec.containers[0].volumeMounts[0].name", go_quote("v"));
        assert_eq!((missing.reason, missing.message.as_str()), ("FieldValueNotFound", r#"Not found: "v""#));
    }

    #[test]
    fn an_invalid_message_names_each_cause_once() {
        let image = FieldError::required("spec.containers[0].image", "");
        let invalid = |causes: Vec<FieldError>| Error::Invalid { kind: "Pod".into(), group: String::new(), name: "p".into(), causes }.to_string();
        assert_eq!(invalid(vec![image.clone(), image.clone()]), r#"Pod "p" is invalid: spec.containers[0].image: Required value"#);
        let name = FieldError::required("spec.containers[0].name", "");
        assert_eq!(
            invalid(vec![name.clone(), image.clone(), name]),
            r#"Pod "p" is invalid: [spec.containers[0].name: Required value, spec.containers[0].image: Required value]"#
        );
    }
}
