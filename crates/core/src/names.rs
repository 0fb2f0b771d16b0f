//! kube's rules for the name of a new object (`ValidateObjectMeta`): DNS-1123 subdomains,
//! labels for namespaces, path segments for RBAC objects. Checked after admission, as kube's
//! `BeforeCreate` checks them, so a refusal by admission (a missing namespace or
//! ServiceAccount) comes first. The DNS-1123 rules serve the names inside a pod's spec too
//! (containers, volumes, its ServiceAccount and node).

use serde_json::Value;

use crate::error::{MAX_ERRORS, go_quote};
use crate::{Error, FieldError, Object, Resource};

/// The message of a DNS-1123 subdomain violation (apimachinery `IsDNS1123Subdomain`).
const DNS1123_SUBDOMAIN: &str = "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character (e.g. 'example.com', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')";
/// The message of a DNS-1123 label violation (`IsDNS1123Label`, namespaces).
const DNS1123_LABEL: &str = "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and end with an alphanumeric character (e.g. 'my-name',  or '123-abc', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?')";

fn is_label(s: &str) -> bool {
    let bytes = s.as_bytes();
    let alnum = |b: &u8| b.is_ascii_lowercase() || b.is_ascii_digit();
    !bytes.is_empty()
        && bytes.first().is_some_and(alnum)
        && bytes.last().is_some_and(alnum)
        && bytes.iter().all(|b| alnum(b) || *b == b'-')
}

fn is_subdomain(s: &str) -> bool {
    s.split('.').all(is_label)
}

/// A lower-case RFC 1123 label of at most 63 characters (a namespace's name).
pub fn is_dns_label(s: &str) -> bool {
    s.len() <= 63 && is_label(s)
}

/// A lower-case RFC 1123 subdomain of at most 253 characters (object names such as a
/// ServiceAccount's).
pub fn is_dns_subdomain(s: &str) -> bool {
    s.len() <= 253 && is_subdomain(s)
}

/// apimachinery's `IsDNS1123Label`: its messages for `checked`, shown as `shown` (a prefix shows
/// as sent, its trailing dash unmasked).
fn label_errors_of(field: &str, shown: &str, checked: &str) -> Vec<FieldError> {
    let mut errors = Vec::new();
    if checked.len() > 63 {
        errors.push(FieldError::invalid(field, go_quote(shown), "must be no more than 63 characters"));
    }
    if !is_label(checked) {
        // A valid subdomain that is no label (its length already checked) has dots.
        let detail = if is_subdomain(checked) { "must not contain dots" } else { DNS1123_LABEL };
        errors.push(FieldError::invalid(field, go_quote(shown), detail));
    }
    errors
}

/// apimachinery's `IsDNS1123Subdomain`, as [`label_errors_of`].
fn subdomain_errors_of(field: &str, shown: &str, checked: &str) -> Vec<FieldError> {
    let mut errors = Vec::new();
    if checked.len() > 253 {
        errors.push(FieldError::invalid(field, go_quote(shown), "must be no more than 253 characters"));
    }
    if !is_subdomain(checked) {
        errors.push(FieldError::invalid(field, go_quote(shown), DNS1123_SUBDOMAIN));
    }
    errors
}

/// kube's `maskTrailingDash`: a prefix's last two bytes become `a` when it ends in a dash
/// (byte-wise, as Go slices; a name that is not ASCII there fails the pattern anyway).
fn mask_trailing_dash(name: &str, prefix: bool) -> String {
    match name.get(..name.len().saturating_sub(2)) {
        Some(head) if prefix && name.len() > 1 && name.ends_with('-') => format!("{head}a"),
        _ => name.to_owned(),
    }
}

/// kube's `ValidateDNS1123Label` of a field (a container's, volume's or port's name, a pod's
/// hostname): `Invalid value` errors, none for a valid label.
pub fn label_errors(field: &str, value: &str) -> Vec<FieldError> {
    label_errors_of(field, value, value)
}

/// apimachinery's `NameIsDNSSubdomain` of a field's value (`prefix`: a name to be completed,
/// whose trailing dash is allowed): `Invalid value` errors, none for a valid subdomain.
pub fn subdomain_errors(field: &str, value: &str, prefix: bool) -> Vec<FieldError> {
    subdomain_errors_of(field, value, &mask_trailing_dash(value, prefix))
}

/// Errors for a name (`prefix`: a `generateName`, whose trailing dashes are allowed).
fn name_errors(resource: &Resource, field: &str, name: &str, prefix: bool) -> Vec<FieldError> {
    if Resource::RBAC.contains(resource) {
        return path_segment_errors(field, name, prefix);
    }
    let masked = mask_trailing_dash(name, prefix);
    if *resource == Resource::NAMESPACES { label_errors_of(field, name, &masked) } else { subdomain_errors_of(field, name, &masked) }
}

/// kube's `ValidatePathSegmentName`, the rule for RBAC object names (`system:auth-delegator`).
fn path_segment_errors(field: &str, name: &str, prefix: bool) -> Vec<FieldError> {
    let invalid = |detail: &str| FieldError::invalid(field, go_quote(name), detail);
    let mut errors = Vec::new();
    if !prefix && (name == "." || name == "..") {
        errors.push(invalid(&format!("may not be '{name}'")));
    }
    for forbidden in ['/', '%'] {
        if name.contains(forbidden) {
            errors.push(invalid(&format!("may not contain '{forbidden}'")));
        }
    }
    errors
}

/// The rule of a qualified name's name part (apimachinery's `qualifiedNameErrMsg`, its examples
/// and pattern).
const QUALIFIED_NAME: &str = "must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyName',  or 'my.name',  or '123-abc', regex used for validation is '([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]')";
/// apimachinery's `IsValidLabelValue` pattern message.
const LABEL_VALUE: &str = "a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyValue',  or 'my_value',  or '12345', regex used for validation is '(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?')";
/// apimachinery's `TotalAnnotationSizeLimitB`: keys and values together.
const ANNOTATIONS_MAX_BYTES: usize = 256 * 1024;

/// `([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]`
fn is_qualified_part(s: &str) -> bool {
    let b = s.as_bytes();
    let end = |c: &u8| c.is_ascii_alphanumeric();
    b.first().is_some_and(end) && b.last().is_some_and(end) && b.iter().all(|c| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'_' | b'.'))
}

/// apimachinery's `IsQualifiedName` (a label or annotation key: an optional DNS subdomain
/// prefix and `/`, then a name of at most 63 characters): its messages, none for a valid one.
pub fn qualified_name_problems(value: &str) -> Vec<String> {
    let mut problems = Vec::new();
    let parts: Vec<&str> = value.split('/').collect();
    let name = match parts.as_slice() {
        [name] => name,
        [prefix, name] => {
            if prefix.is_empty() {
                problems.push("prefix part must be non-empty".to_owned());
            } else {
                if prefix.len() > 253 {
                    problems.push("prefix part must be no more than 253 characters".to_owned());
                }
                if !is_subdomain(prefix) {
                    problems.push(format!("prefix part {DNS1123_SUBDOMAIN}"));
                }
            }
            name
        }
        _ => return vec![format!("a qualified name {QUALIFIED_NAME} with an optional DNS subdomain prefix and '/' (e.g. 'example.com/MyName')")],
    };
    if name.is_empty() {
        problems.push("name part must be non-empty".to_owned());
    } else if name.len() > 63 {
        problems.push("name part must be no more than 63 characters".to_owned());
    }
    if !is_qualified_part(name) {
        problems.push(format!("name part {QUALIFIED_NAME}"));
    }
    problems
}

/// apimachinery's `IsValidLabelValue`: its messages, none for a valid value (empty is valid).
pub fn label_value_problems(value: &str) -> Vec<&'static str> {
    let mut problems = Vec::new();
    if value.len() > 63 {
        problems.push("must be no more than 63 characters");
    }
    if !value.is_empty() && !is_qualified_part(value) {
        problems.push(LABEL_VALUE);
    }
    problems
}

/// kube's `ValidateLabels` and `ValidateAnnotations`, on create and update alike: label keys
/// are qualified names and values valid label values; annotation keys are qualified names
/// (compared in lower case), all annotations together at most 256 KiB.
pub fn labels_and_annotations_errors(object: &Object) -> Vec<FieldError> {
    let mut errors = Vec::new();
    let metadata = object.value().get("metadata");
    let map = |key: &str| metadata.and_then(|m| m.get(key)).and_then(Value::as_object);
    for (key, value) in map("labels").into_iter().flatten() {
        if errors.len() >= MAX_ERRORS {
            break;
        }
        let value = value.as_str().unwrap_or("");
        errors.extend(qualified_name_problems(key).iter().map(|problem| FieldError::invalid("metadata.labels", go_quote(key), problem)));
        errors.extend(label_value_problems(value).into_iter().map(|problem| FieldError::invalid("metadata.labels", go_quote(value), problem)));
    }
    let mut size = 0;
    for (key, value) in map("annotations").into_iter().flatten() {
        if errors.len() < MAX_ERRORS {
            let problems = qualified_name_problems(&key.to_lowercase());
            errors.extend(problems.iter().map(|problem| FieldError::invalid("metadata.annotations", go_quote(key), problem)));
        }
        size += key.len() + value.as_str().map_or(0, str::len);
    }
    if size > ANNOTATIONS_MAX_BYTES {
        errors.push(FieldError::too_long("metadata.annotations", ANNOTATIONS_MAX_BYTES));
    }
    errors.truncate(MAX_ERRORS);
    errors
}

/// kube's `ValidateObjectMeta` rules for a new object's name, labels and annotations: its
/// errors, none for valid ones. A generateName is checked as a prefix, named or not; the
/// name generated from it (before validation, as kube's registry does) is checked as a name.
pub fn new_name_errors(resource: &Resource, object: &Object) -> Vec<FieldError> {
    let generate = object.value().get("metadata").and_then(|m| m.get("generateName")).and_then(Value::as_str).unwrap_or("");
    let mut errors = if generate.is_empty() { Vec::new() } else { name_errors(resource, "metadata.generateName", generate, true) };
    let name = object.name();
    if !name.is_empty() {
        errors.extend(name_errors(resource, "metadata.name", name, false));
    } else if generate.is_empty() {
        errors.push(FieldError::required("metadata.name", "name or generateName is required"));
    }
    errors.extend(labels_and_annotations_errors(object));
    errors
}

/// kube's `ValidateObjectMeta` name rules for a new object: 422 Invalid.
pub fn validate_new(resource: &Resource, object: &Object) -> Result<(), Error> {
    let errors = new_name_errors(resource, object);
    if errors.is_empty() {
        return Ok(());
    }
    Err(Error::Invalid { kind: resource.kind.to_owned(), group: resource.group.to_owned(), name: object.name().to_owned(), causes: errors })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn rbac_names_are_path_segments() {
        assert!(name_errors(&Resource::CLUSTER_ROLES, "metadata.name", "system:auth-delegator", false).is_empty());
        let messages = |name| name_errors(&Resource::ROLES, "metadata.name", name, false).iter().map(ToString::to_string).collect::<Vec<_>>();
        assert_eq!(messages(".."), [r#"metadata.name: Invalid value: "..": may not be '..'"#]);
        assert_eq!(messages("a/b%"), [r#"metadata.name: Invalid value: "a/b%": may not contain '/'"#, r#"metadata.name: Invalid value: "a/b%": may not contain '%'"#]);
    }

    #[test]
    fn names_follow_dns_1123() {
        for ok in ["a", "a-b", "a.b-c", "0x", "x1.y2"] {
            assert!(is_subdomain(ok), "{ok}");
        }
        for bad in ["", "A", "-a", "a-", "a..b", "a_b", ".a"] {
            assert!(!is_subdomain(bad), "{bad}");
        }
        assert!(!is_label("a.b"));
        let object = Object::from_value(json!({"metadata": {"name": "Foo"}})).unwrap();
        let err = validate_new(&Resource::SERVICE_ACCOUNTS, &object).unwrap_err();
        assert_eq!(err.to_string(), format!("ServiceAccount \"Foo\" is invalid: metadata.name: Invalid value: \"Foo\": {DNS1123_SUBDOMAIN}"));
        let generated = Object::from_value(json!({"metadata": {"generateName": "bot-"}})).unwrap();
        assert!(validate_new(&Resource::SERVICE_ACCOUNTS, &generated).is_ok());
        // kube's maskTrailingDash: the last two bytes of a prefix ending in a dash become `a`.
        for (prefix, ok) in [("-", false), ("a.-", true), ("--", true), ("a_-", true), ("é-", false), ("a_b-", false)] {
            let object = Object::from_value(json!({"metadata": {"generateName": prefix}})).unwrap();
            assert_eq!(validate_new(&Resource::SERVICE_ACCOUNTS, &object).is_ok(), ok, "{prefix:?}");
        }
        // A generateName is checked even beside a name (kube's ValidateObjectMeta), first.
        let both = Object::from_value(json!({"metadata": {"name": "Foo", "generateName": "Bot-"}})).unwrap();
        assert_eq!(
            validate_new(&Resource::SERVICE_ACCOUNTS, &both).unwrap_err().to_string(),
            format!(
                "ServiceAccount \"Foo\" is invalid: [metadata.generateName: Invalid value: \"Bot-\": {DNS1123_SUBDOMAIN}, \
                 metadata.name: Invalid value: \"Foo\": {DNS1123_SUBDOMAIN}]"
            )
        );
        let named = Object::from_value(json!({"metadata": {"name": "foo", "generateName": "Bot-"}})).unwrap();
        assert!(validate_new(&Resource::SERVICE_ACCOUNTS, &named).is_err(), "a bad generateName beside a good name");
        let long = Object::from_value(json!({"metadata": {"name": "a".repeat(64)}})).unwrap();
        assert_eq!(validate_new(&Resource::NAMESPACES, &long).unwrap_err().code(), 422);
        assert!(validate_new(&Resource::SERVICE_ACCOUNTS, &long).is_ok());
    }

    #[test]
    fn labels_and_annotations_follow_apimachinerys_rules() {
        let errors = |metadata: Value| {
            let object = Object::from_value(json!({"metadata": metadata})).unwrap();
            labels_and_annotations_errors(&object).iter().map(ToString::to_string).collect::<Vec<_>>()
        };
        let fine = json!({"labels": {"app": "web", "example.com/tier": "", "a_b.c-d": "X_1.y-2"},
                          "annotations": {"Example.COM/Owner": "anything at all", "kubectl.kubernetes.io/last-applied-configuration": "{}"}});
        assert_eq!(errors(fine), Vec::<String>::new());
        assert_eq!(
            errors(json!({"labels": {"bad key": "bad value"}})),
            [
                format!(r#"metadata.labels: Invalid value: "bad key": name part {QUALIFIED_NAME}"#),
                format!(r#"metadata.labels: Invalid value: "bad value": {LABEL_VALUE}"#),
            ]
        );
        assert_eq!(
            errors(json!({"labels": {"Example.com/": "v"}})),
            [
                format!(r#"metadata.labels: Invalid value: "Example.com/": prefix part {DNS1123_SUBDOMAIN}"#),
                r#"metadata.labels: Invalid value: "Example.com/": name part must be non-empty"#.to_owned(),
                format!(r#"metadata.labels: Invalid value: "Example.com/": name part {QUALIFIED_NAME}"#),
            ]
        );
        assert_eq!(
            errors(json!({"annotations": {"a/b/c": "v"}})),
            [format!(r#"metadata.annotations: Invalid value: "a/b/c": a qualified name {QUALIFIED_NAME} with an optional DNS subdomain prefix and '/' (e.g. 'example.com/MyName')"#)]
        );
        let long = "v".repeat(64);
        assert_eq!(errors(json!({"labels": {"k": long}})), [format!(r#"metadata.labels: Invalid value: "{long}": must be no more than 63 characters"#)]);
        let big = "x".repeat(ANNOTATIONS_MAX_BYTES);
        assert_eq!(errors(json!({"annotations": {"k": big}})), ["metadata.annotations: Too long: must have at most 262144 bytes"]);
        // A flood of bad keys is answered with the first thousand errors.
        let flood: serde_json::Map<String, Value> = (0..5000).map(|i| (format!("bad key {i}"), json!("v"))).collect();
        assert_eq!(errors(json!({"labels": flood})).len(), MAX_ERRORS);
        // On create they follow the name's errors.
        let object = Object::from_value(json!({"metadata": {"name": "Bot", "labels": {"-x": "y"}}})).unwrap();
        let causes = new_name_errors(&Resource::SERVICE_ACCOUNTS, &object);
        assert_eq!(causes.iter().map(|c| c.field.as_str()).collect::<Vec<_>>(), ["metadata.name", "metadata.labels"]);
    }

    #[test]
    fn labels_and_subdomains_give_apimachinerys_messages() {
        let messages = |errors: Vec<FieldError>| errors.iter().map(ToString::to_string).collect::<Vec<_>>();
        assert!(label_errors("f", "web-1").is_empty());
        assert_eq!(messages(label_errors("f", "a.b")), [r#"f: Invalid value: "a.b": must not contain dots"#]);
        assert_eq!(messages(label_errors("f", "Web")), [format!(r#"f: Invalid value: "Web": {DNS1123_LABEL}"#)]);
        let long = "a".repeat(64);
        assert_eq!(messages(label_errors("f", &long)), [format!(r#"f: Invalid value: "{long}": must be no more than 63 characters"#)]);
        let dotted_long = format!("{}.b", "a".repeat(63));
        assert_eq!(
            messages(label_errors("f", &dotted_long)),
            [format!(r#"f: Invalid value: "{dotted_long}": must be no more than 63 characters"#), format!(r#"f: Invalid value: "{dotted_long}": must not contain dots"#)]
        );
        assert!(subdomain_errors("f", "a.b", false).is_empty());
        assert_eq!(messages(subdomain_errors("f", "", false)), [format!(r#"f: Invalid value: "": {DNS1123_SUBDOMAIN}"#)]);
        assert!(subdomain_errors("f", "web-", true).is_empty(), "a prefix may end in a dash");
        assert_eq!(messages(subdomain_errors("f", "web-", false)), [format!(r#"f: Invalid value: "web-": {DNS1123_SUBDOMAIN}"#)]);
        // A namespace's name is a label.
        let dotted = Object::from_value(json!({"metadata": {"name": "a.b"}})).unwrap();
        assert_eq!(validate_new(&Resource::NAMESPACES, &dotted).unwrap_err().to_string(), r#"Namespace "a.b" is invalid: metadata.name: Invalid value: "a.b": must not contain dots"#);
    }
}
