//! The typed AuthConfig (`authorino.kuadrant.io/v1beta3`) and its validation.
//!
//! [`AuthConfig::parse`] takes the object as the API server stores it and either returns the
//! model or an [`Error::Invalid`] listing every problem with its field path
//! (`spec.authentication.k8s.credentials: ...`), which is what the AuthConfig status reports.

use std::collections::BTreeMap;

use regex::{Regex, RegexBuilder};
use serde_json::{Map, Value};

use super::path::{JsonSelector, to_gjson_string};
use crate::error::{Error, FieldError, go_quote};
use crate::selector::{LabelOp, LabelRequirement, LabelSelector};

pub const GROUP: &str = "authorino.kuadrant.io";
pub const API_VERSION: &str = "authorino.kuadrant.io/v1beta3";
pub const KIND: &str = "AuthConfig";

/// The name of the identity source injected when `spec.authentication` is empty (Authorino
/// injects an anonymous one too).
pub const DEFAULT_ANONYMOUS_NAME: &str = "anonymous";

/// A validated AuthConfig. Evaluators are sorted by `(priority, name)`, the order in which
/// they run.
#[derive(Clone, Debug)]
pub struct AuthConfig {
    pub namespace: String,
    pub name: String,
    pub hosts: Vec<String>,
    /// Top-level conditions: when they do not match, the request is allowed untouched.
    pub when: Vec<Pattern>,
    pub authentication: Vec<Authentication>,
    pub authorization: Vec<Authorization>,
    pub response: Response,
}

/// A condition: one rule, or all / any of a list. `patternRef`s are resolved at parse time:
/// the named rules join the list the reference is in.
#[derive(Clone, Debug)]
pub enum Pattern {
    Rule(PatternRule),
    All(Vec<Pattern>),
    Any(Vec<Pattern>),
}

#[derive(Clone, Debug)]
pub struct PatternRule {
    pub selector: JsonSelector,
    pub operator: Operator,
    pub value: String,
}

#[derive(Clone, Debug)]
pub enum Operator {
    Eq,
    Neq,
    Incl,
    Excl,
    /// The `value`, compiled (RE2 syntax; unanchored like Go's `MatchString`).
    Matches(Regex),
}

impl Pattern {
    /// Evaluates the pattern against the authorization JSON, as Authorino's
    /// `JSONPatternMatchingRule.EvaluateFor` does (`String()` / `Array()` of the selected value).
    pub fn matches(&self, data: &Value) -> bool {
        match self {
            Self::Rule(rule) => rule.matches(data),
            Self::All(list) => list.iter().all(|p| p.matches(data)),
            Self::Any(list) => list.iter().any(|p| p.matches(data)),
        }
    }
}

impl PatternRule {
    pub fn matches(&self, data: &Value) -> bool {
        match &self.operator {
            Operator::Eq => self.selector.get_string(data) == self.value,
            Operator::Neq => self.selector.get_string(data) != self.value,
            Operator::Incl => self.selector.get_array(data).iter().any(|v| to_gjson_string(Some(v)) == self.value),
            Operator::Excl => self.selector.get_array(data).iter().all(|v| to_gjson_string(Some(v)) != self.value),
            Operator::Matches(re) => re.is_match(&self.selector.get_string(data)),
        }
    }
}

/// Every pattern matches (an empty list matches).
pub fn all_match(patterns: &[Pattern], data: &Value) -> bool {
    patterns.iter().all(|p| p.matches(data))
}

/// `{value}` (any JSON) or `{selector}` (a GJSON path or template into the authorization JSON).
#[derive(Clone, Debug)]
pub enum ValueOrSelector {
    Value(Value),
    Selector(JsonSelector),
}

impl ValueOrSelector {
    /// The resolved JSON value (`null` when a selector finds nothing).
    pub fn resolve(&self, data: &Value) -> Value {
        match self {
            Self::Value(v) => v.clone(),
            Self::Selector(s) => s.get(data).unwrap_or(Value::Null),
        }
    }

    /// The resolved value as a header / message string: strings as they are, `null` as `""`,
    /// anything else as compact JSON.
    pub fn resolve_string(&self, data: &Value) -> String {
        to_gjson_string(Some(&self.resolve(data)))
    }
}

/// `cache` of an evaluator (kept for the transports; the model does not cache).
#[derive(Clone, Debug)]
pub struct EvaluatorCache {
    pub key: ValueOrSelector,
    pub ttl_seconds: u64,
}

/// An identity source (`spec.authentication.<name>`).
#[derive(Clone, Debug)]
pub struct Authentication {
    pub name: String,
    pub priority: i64,
    pub when: Vec<Pattern>,
    pub credentials: Credentials,
    /// Properties added to the identity object when absent.
    pub defaults: Vec<(String, ValueOrSelector)>,
    /// Properties set on the identity object, replacing what is there.
    pub overrides: Vec<(String, ValueOrSelector)>,
    pub method: IdentityMethod,
    pub cache: Option<EvaluatorCache>,
}

/// Where the credential is read from (default `Authorization: Bearer <token>`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Credentials {
    /// `Authorization: <prefix> <credential>`: case-sensitive prefix, exactly one space.
    AuthorizationHeader { prefix: String },
    /// The whole value of the header (name matched case-insensitively).
    CustomHeader { name: String },
    /// `?name=value` / `&name=value` in the request path.
    QueryString { name: String },
    /// `name=value` in the `cookie` header.
    Cookie { name: String },
}

impl Default for Credentials {
    fn default() -> Self {
        Self::AuthorizationHeader { prefix: "Bearer".to_owned() }
    }
}

impl Credentials {
    /// The identifier of the `WWW-Authenticate` challenge: the prefix, or the header /
    /// parameter / cookie name.
    pub fn challenge_identifier(&self) -> &str {
        match self {
            Self::AuthorizationHeader { prefix } => prefix,
            Self::CustomHeader { name } | Self::QueryString { name } | Self::Cookie { name } => name,
        }
    }
}

/// How an identity is verified. Everything but `Anonymous` and `Plain` is the caller's job
/// (see `IdentityVerifier`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum IdentityMethod {
    /// `kubernetesTokenReview`: `audiences` as written (empty = the request host, resolved by
    /// the evaluator into `IdentityRequest::audiences`).
    KubernetesTokenReview { audiences: Vec<String>, timeout_ms: Option<u64> },
    Jwt { source: JwtSource, ttl_seconds: u64, timeout_ms: Option<u64> },
    /// `apiKey`: Secrets labelled to match, in the AuthConfig's namespace or all.
    ApiKey { selector: LabelSelector, all_namespaces: bool },
    Anonymous,
    /// `plain`: the identity is the value the selector finds; null or missing fails.
    Plain { selector: JsonSelector },
}

impl IdentityMethod {
    /// The v1beta3 field name of the method.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::KubernetesTokenReview { .. } => "kubernetesTokenReview",
            Self::Jwt { .. } => "jwt",
            Self::ApiKey { .. } => "apiKey",
            Self::Anonymous => "anonymous",
            Self::Plain { .. } => "plain",
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum JwtSource {
    /// OIDC discovery from the issuer.
    IssuerUrl(String),
    JwksUrl(String),
}

/// An authorization policy (`spec.authorization.<name>`).
#[derive(Clone, Debug)]
pub struct Authorization {
    pub name: String,
    pub priority: i64,
    pub when: Vec<Pattern>,
    pub method: AuthorizationMethod,
    pub cache: Option<EvaluatorCache>,
}

#[derive(Clone, Debug)]
pub enum AuthorizationMethod {
    /// All patterns must match.
    PatternMatching(Vec<Pattern>),
    SubjectAccessReview(Box<SubjectAccessReviewSpec>),
}

/// `kubernetesSubjectAccessReview`.
#[derive(Clone, Debug, Default)]
pub struct SubjectAccessReviewSpec {
    pub user: Option<ValueOrSelector>,
    /// Deprecated static `groups`.
    pub groups: Vec<String>,
    pub authorization_groups: Option<ValueOrSelector>,
    /// `None`: a non-resource review of the request path and lower-cased method.
    pub resource_attributes: Option<ResourceAttributesSpec>,
    pub timeout_ms: Option<u64>,
}

#[derive(Clone, Debug, Default)]
pub struct ResourceAttributesSpec {
    pub namespace: Option<ValueOrSelector>,
    pub group: Option<ValueOrSelector>,
    pub resource: Option<ValueOrSelector>,
    pub name: Option<ValueOrSelector>,
    pub subresource: Option<ValueOrSelector>,
    pub verb: Option<ValueOrSelector>,
}

/// `spec.response`.
#[derive(Clone, Debug, Default)]
pub struct Response {
    pub unauthenticated: Option<DenyWith>,
    pub unauthorized: Option<DenyWith>,
    /// `success.headers`, sorted by `(priority, name)`.
    pub headers: Vec<SuccessItem>,
    /// `success.dynamicMetadata`, sorted by `(priority, name)`.
    pub dynamic_metadata: Vec<SuccessItem>,
}

/// A custom denial (`response.unauthenticated` / `response.unauthorized`).
#[derive(Clone, Debug, Default)]
pub struct DenyWith {
    /// 300–599.
    pub code: Option<u16>,
    /// Replaces the reason (`x-ext-auth-reason`).
    pub message: Option<ValueOrSelector>,
    /// When not empty, replaces the default headers (including `WWW-Authenticate`).
    pub headers: Vec<(String, ValueOrSelector)>,
    pub body: Option<ValueOrSelector>,
}

/// A success header or dynamic-metadata entry.
#[derive(Clone, Debug)]
pub struct SuccessItem {
    pub name: String,
    /// The header name / metadata key: `key` if given, else the name.
    pub key: String,
    pub priority: i64,
    pub when: Vec<Pattern>,
    pub value: SuccessValue,
}

#[derive(Clone, Debug)]
pub enum SuccessValue {
    Plain(ValueOrSelector),
    /// `json.properties`: an object built from the resolved properties.
    Json(Vec<(String, ValueOrSelector)>),
}

impl SuccessValue {
    pub fn resolve(&self, data: &Value) -> Value {
        match self {
            Self::Plain(v) => v.resolve(data),
            Self::Json(props) => {
                Value::Object(props.iter().map(|(k, v)| (k.clone(), v.resolve(data))).collect::<Map<String, Value>>())
            }
        }
    }
}

impl AuthConfig {
    /// Parses and validates a stored AuthConfig object (`apiVersion`, `kind`, `metadata`, `spec`).
    pub fn parse(object: &Value) -> Result<Self, Error> {
        let meta = object.get("metadata");
        let namespace = meta.and_then(|m| m.get("namespace")).and_then(Value::as_str).unwrap_or_default();
        let name = meta.and_then(|m| m.get("name")).and_then(Value::as_str).unwrap_or_default();
        let mut p = Parser::default();
        if name.is_empty() {
            p.required("metadata.name", "");
        }
        match object.get("apiVersion") {
            None => {}
            Some(Value::String(v)) if v == API_VERSION => {}
            Some(other) => p.unsupported("apiVersion", other, &[API_VERSION]),
        }
        match object.get("kind") {
            None => {}
            Some(Value::String(v)) if v == KIND => {}
            Some(other) => p.unsupported("kind", other, &[KIND]),
        }
        let spec = object.get("spec").unwrap_or(&Value::Null);
        let parsed = p.spec(namespace, name, spec);
        p.finish(name, parsed)
    }

    /// Parses and validates a bare `spec` for the AuthConfig `namespace/name`.
    pub fn parse_spec(namespace: &str, name: &str, spec: &Value) -> Result<Self, Error> {
        let mut p = Parser::default();
        let parsed = p.spec(namespace, name, spec);
        p.finish(name, parsed)
    }

    /// `namespace/name`.
    pub fn key(&self) -> String {
        format!("{}/{}", self.namespace, self.name)
    }
}

#[derive(Default)]
struct Parser {
    causes: Vec<FieldError>,
    patterns: BTreeMap<String, Vec<Pattern>>,
}

impl Parser {
    fn finish(self, name: &str, parsed: Option<AuthConfig>) -> Result<AuthConfig, Error> {
        match parsed {
            Some(config) if self.causes.is_empty() => Ok(config),
            _ => {
                let mut causes = self.causes;
                if causes.is_empty() {
                    causes.push(FieldError::required("spec", ""));
                }
                Err(Error::Invalid { kind: KIND.to_owned(), group: GROUP.to_owned(), name: name.to_owned(), causes })
            }
        }
    }

    fn push(&mut self, field: &str, reason: &'static str, message: String) {
        self.causes.push(FieldError { field: field.to_owned(), reason, message });
    }

    fn required(&mut self, field: &str, detail: &str) {
        self.causes.push(FieldError::required(field, detail));
    }

    fn invalid(&mut self, field: &str, value: &Value, detail: &str) {
        self.causes.push(FieldError::invalid(field, render(value), detail));
    }

    fn unsupported(&mut self, field: &str, value: &Value, supported: &[&str]) {
        let list: Vec<String> = supported.iter().map(|s| go_quote(s)).collect();
        self.push(field, "FieldValueNotSupported", format!("Unsupported value: {}: supported values: {}", render(value), list.join(", ")));
    }

    fn not_supported_feature(&mut self, field: &str, feature: &str) {
        self.push(field, "FieldValueForbidden", format!("Forbidden: {feature} is not supported by tokenwarden"));
    }

    fn object<'v>(&mut self, value: &'v Value, field: &str) -> Option<&'v Map<String, Value>> {
        match value {
            Value::Object(map) => Some(map),
            other => {
                self.invalid(field, other, "must be an object");
                None
            }
        }
    }

    /// An optional object (`null` / absent gives an empty map).
    fn opt_object<'v>(&mut self, value: Option<&'v Value>, field: &str) -> Option<&'v Map<String, Value>> {
        static EMPTY: std::sync::OnceLock<Map<String, Value>> = std::sync::OnceLock::new();
        match value {
            None | Some(Value::Null) => Some(EMPTY.get_or_init(Map::new)),
            Some(v) => self.object(v, field),
        }
    }

    fn string(&mut self, value: &Value, field: &str) -> Option<String> {
        match value {
            Value::String(s) => Some(s.clone()),
            other => {
                self.invalid(field, other, "must be a string");
                None
            }
        }
    }

    fn non_empty_string(&mut self, value: Option<&Value>, field: &str) -> Option<String> {
        match value {
            None | Some(Value::Null) => {
                self.required(field, "");
                None
            }
            Some(v) => {
                let s = self.string(v, field)?;
                if s.is_empty() {
                    self.required(field, "");
                    return None;
                }
                Some(s)
            }
        }
    }

    fn integer(&mut self, value: Option<&Value>, field: &str, default: i64) -> i64 {
        match value {
            None | Some(Value::Null) => default,
            Some(v) => match v.as_i64() {
                Some(n) => n,
                None => {
                    self.invalid(field, v, "must be an integer");
                    default
                }
            },
        }
    }

    fn unsigned(&mut self, value: Option<&Value>, field: &str) -> Option<u64> {
        match value {
            None | Some(Value::Null) => None,
            Some(v) => match v.as_u64() {
                Some(n) => Some(n),
                None => {
                    self.invalid(field, v, "must be a non-negative integer");
                    None
                }
            },
        }
    }

    fn string_list(&mut self, value: Option<&Value>, field: &str) -> Vec<String> {
        match value {
            None | Some(Value::Null) => Vec::new(),
            Some(Value::Array(items)) => items
                .iter()
                .enumerate()
                .filter_map(|(i, item)| self.string(item, &format!("{field}[{i}]")))
                .collect(),
            Some(other) => {
                self.invalid(field, other, "must be a list of strings");
                Vec::new()
            }
        }
    }

    fn bool(&mut self, value: Option<&Value>, field: &str) -> bool {
        match value {
            None | Some(Value::Null) => false,
            Some(Value::Bool(b)) => *b,
            Some(other) => {
                self.invalid(field, other, "must be a boolean");
                false
            }
        }
    }

    /// Exactly one of `names` present in `map` (or none when `optional`); returns it.
    fn one_of<'m>(&mut self, map: &'m Map<String, Value>, field: &str, names: &[&'static str], unsupported: &[&str], what: &str) -> Option<(&'static str, &'m Value)> {
        for name in unsupported {
            if map.get(*name).is_some_and(|v| !v.is_null()) {
                self.not_supported_feature(&format!("{field}.{name}"), &format!("{what} {name:?}"));
                return None;
            }
        }
        let present: Vec<(&'static str, &Value)> =
            names.iter().filter_map(|n| map.get(*n).filter(|v| !v.is_null()).map(|v| (*n, v))).collect();
        match present.as_slice() {
            [one] => Some(*one),
            [] => {
                self.required(field, &format!("exactly one of {} must be specified", names.join(", ")));
                None
            }
            _ => {
                let found: Vec<&str> = present.iter().map(|(n, _)| *n).collect();
                self.push(field, "FieldValueForbidden", format!("Forbidden: may not specify more than one of {} (found {})", names.join(", "), found.join(", ")));
                None
            }
        }
    }

    fn spec(&mut self, namespace: &str, name: &str, spec: &Value) -> Option<AuthConfig> {
        let spec = self.object(spec, "spec")?;
        for unsupported in ["metadata", "callbacks"] {
            if spec.get(unsupported).is_some_and(|v| !v.is_null() && v.as_object().is_none_or(|m| !m.is_empty())) {
                self.not_supported_feature(&format!("spec.{unsupported}"), &format!("spec.{unsupported}"));
            }
        }
        let hosts = self.hosts(spec.get("hosts"));
        // named patterns first: `patternRef`s anywhere refer to them
        if let Some(map) = self.opt_object(spec.get("patterns"), "spec.patterns") {
            let mut named = BTreeMap::new();
            for (pname, list) in map {
                let field = format!("spec.patterns.{pname}");
                let patterns = match list {
                    Value::Array(items) => {
                        items.iter().enumerate().filter_map(|(i, item)| self.expression(item, &format!("{field}[{i}]"))).collect()
                    }
                    other => {
                        self.invalid(&field, other, "must be a list of pattern expressions");
                        Vec::new()
                    }
                };
                named.insert(pname.clone(), patterns);
            }
            self.patterns = named;
        }
        let when = self.when(spec.get("when"), "spec.when");

        let mut authentication = Vec::new();
        if let Some(map) = self.opt_object(spec.get("authentication"), "spec.authentication") {
            for (aname, value) in map {
                if let Some(a) = self.authentication(aname, value) {
                    authentication.push(a);
                }
            }
            if map.is_empty() {
                authentication.push(Authentication {
                    name: DEFAULT_ANONYMOUS_NAME.to_owned(),
                    priority: 0,
                    when: Vec::new(),
                    credentials: Credentials::default(),
                    defaults: Vec::new(),
                    overrides: Vec::new(),
                    method: IdentityMethod::Anonymous,
                    cache: None,
                });
            }
        }
        authentication.sort_by(|a, b| (a.priority, &a.name).cmp(&(b.priority, &b.name)));

        let mut authorization = Vec::new();
        if let Some(map) = self.opt_object(spec.get("authorization"), "spec.authorization") {
            for (zname, value) in map {
                if let Some(z) = self.authorization(zname, value) {
                    authorization.push(z);
                }
            }
        }
        authorization.sort_by(|a, b| (a.priority, &a.name).cmp(&(b.priority, &b.name)));

        let response = self.response(spec.get("response")).unwrap_or_default();
        Some(AuthConfig {
            namespace: namespace.to_owned(),
            name: name.to_owned(),
            hosts,
            when,
            authentication,
            authorization,
            response,
        })
    }

    fn hosts(&mut self, value: Option<&Value>) -> Vec<String> {
        let field = "spec.hosts";
        let hosts = match value {
            None | Some(Value::Null) => {
                self.required(field, "");
                return Vec::new();
            }
            v => self.string_list(v, field),
        };
        if hosts.is_empty() && matches!(value, Some(Value::Array(_))) {
            self.required(field, "at least one host is required");
        }
        for (i, host) in hosts.iter().enumerate() {
            let f = format!("{field}[{i}]");
            let bad_char = host.chars().any(|c| c.is_whitespace() || c.is_control() || matches!(c, '/' | '?' | '#' | '@'));
            let bad_wildcard = host.match_indices('*').any(|(at, _)| at != 0) || (host.starts_with('*') && host != "*" && !host.starts_with("*."));
            if host.is_empty() || bad_char || bad_wildcard || host.split('.').any(str::is_empty) {
                self.invalid(&f, &Value::String(host.clone()), "must be a host name, optionally with a port, or a wildcard such as *.example.com");
            }
        }
        hosts.into_iter().map(|h| h.to_ascii_lowercase()).collect()
    }

    fn when(&mut self, value: Option<&Value>, field: &str) -> Vec<Pattern> {
        match value {
            None | Some(Value::Null) => Vec::new(),
            Some(Value::Array(items)) => self.pattern_list(items, field),
            Some(other) => {
                self.invalid(field, other, "must be a list of patterns");
                Vec::new()
            }
        }
    }

    /// A list of `PatternExpressionOrRef`, built as Authorino's `buildPredicates` builds it.
    fn pattern_list(&mut self, items: &[Value], field: &str) -> Vec<Pattern> {
        let mut list = Vec::new();
        for (i, item) in items.iter().enumerate() {
            self.pattern(item, &format!("{field}[{i}]"), &mut list);
        }
        list
    }

    /// Adds a `PatternExpressionOrRef` (a rule, `patternRef`, `all` or `any`) to `list`. A
    /// reference adds the named rules themselves, so inside `any` any one of them is enough; an
    /// empty `all` / `any` adds nothing, so it does not make its list fail.
    fn pattern(&mut self, value: &Value, field: &str, list: &mut Vec<Pattern>) {
        let Some(map) = self.object(value, field) else { return };
        if map.get("predicate").is_some_and(|v| !v.is_null()) {
            self.not_supported_feature(&format!("{field}.predicate"), "CEL (predicate)");
            return;
        }
        if let Some(r) = map.get("patternRef").filter(|v| !v.is_null()) {
            let f = format!("{field}.patternRef");
            let Some(name) = self.string(r, &f) else { return };
            match self.patterns.get(&name) {
                Some(named) => list.extend(named.iter().cloned()),
                None => self.invalid(&f, r, "no such pattern in spec.patterns"),
            }
            return;
        }
        for (key, any) in [("all", false), ("any", true)] {
            if let Some(items) = map.get(key).filter(|v| !v.is_null()) {
                let f = format!("{field}.{key}");
                let Value::Array(items) = items else {
                    self.invalid(&f, items, "must be a list of patterns");
                    return;
                };
                if !items.is_empty() {
                    let parsed = self.pattern_list(items, &f);
                    list.push(if any { Pattern::Any(parsed) } else { Pattern::All(parsed) });
                }
                return;
            }
        }
        list.extend(self.expression(value, field));
    }

    /// `PatternExpression`: `{selector, operator, value}`.
    fn expression(&mut self, value: &Value, field: &str) -> Option<Pattern> {
        let map = self.object(value, field)?;
        let selector = self.selector(map.get("selector"), &format!("{field}.selector"));
        let op_field = format!("{field}.operator");
        let operator = self.non_empty_string(map.get("operator"), &op_field);
        let value_field = format!("{field}.value");
        let expected = match map.get("value") {
            None | Some(Value::Null) => String::new(),
            Some(Value::String(s)) => s.clone(),
            Some(v @ (Value::Number(_) | Value::Bool(_))) => v.to_string(),
            Some(other) => {
                self.invalid(&value_field, other, "must be a string");
                return None;
            }
        };
        let operator = match operator?.as_str() {
            "eq" => Operator::Eq,
            "neq" => Operator::Neq,
            "incl" => Operator::Incl,
            "excl" => Operator::Excl,
            "matches" => match RegexBuilder::new(&expected).size_limit(1 << 20).build() {
                Ok(re) => Operator::Matches(re),
                Err(e) => {
                    self.invalid(&value_field, &Value::String(expected), &format!("not a valid regular expression: {e}"));
                    return None;
                }
            },
            other => {
                self.unsupported(&op_field, &Value::String(other.to_owned()), &["eq", "neq", "incl", "excl", "matches"]);
                return None;
            }
        };
        Some(Pattern::Rule(PatternRule { selector: selector?, operator, value: expected }))
    }

    fn selector(&mut self, value: Option<&Value>, field: &str) -> Option<JsonSelector> {
        let raw = self.non_empty_string(value, field)?;
        match JsonSelector::parse(&raw) {
            Ok(s) => Some(s),
            Err(e) => {
                self.invalid(field, &Value::String(raw), &e);
                None
            }
        }
    }

    fn value_or_selector(&mut self, value: &Value, field: &str) -> Option<ValueOrSelector> {
        let map = self.object(value, field)?;
        if map.get("expression").is_some_and(|v| !v.is_null()) {
            self.not_supported_feature(&format!("{field}.expression"), "CEL (expression)");
            return None;
        }
        let has_value = map.contains_key("value");
        let has_selector = map.get("selector").is_some_and(|v| !v.is_null());
        match (has_value, has_selector) {
            (true, true) => {
                self.push(field, "FieldValueForbidden", "Forbidden: may not specify both value and selector".to_owned());
                None
            }
            (false, true) => self.selector(map.get("selector"), &format!("{field}.selector")).map(ValueOrSelector::Selector),
            (true, false) => Some(ValueOrSelector::Value(map.get("value").cloned().unwrap_or(Value::Null))),
            (false, false) => {
                self.required(field, "one of value or selector must be specified");
                None
            }
        }
    }

    fn named_values(&mut self, value: Option<&Value>, field: &str) -> Vec<(String, ValueOrSelector)> {
        let Some(map) = self.opt_object(value, field) else { return Vec::new() };
        map.iter().filter_map(|(k, v)| self.value_or_selector(v, &format!("{field}.{k}")).map(|vs| (k.clone(), vs))).collect()
    }

    fn cache(&mut self, value: Option<&Value>, field: &str) -> Option<EvaluatorCache> {
        let v = value.filter(|v| !v.is_null())?;
        let map = self.object(v, field)?;
        let key_field = format!("{field}.key");
        let key = match map.get("key") {
            None | Some(Value::Null) => {
                self.required(&key_field, "");
                return None;
            }
            Some(k) => self.value_or_selector(k, &key_field)?,
        };
        let ttl_seconds = self.unsigned(map.get("ttl"), &format!("{field}.ttl")).unwrap_or(60);
        Some(EvaluatorCache { key, ttl_seconds })
    }

    fn authentication(&mut self, name: &str, value: &Value) -> Option<Authentication> {
        let field = format!("spec.authentication.{name}");
        let map = self.object(value, &field)?;
        let priority = self.integer(map.get("priority"), &format!("{field}.priority"), 0);
        let when = self.when(map.get("when"), &format!("{field}.when"));
        let cache = self.cache(map.get("cache"), &format!("{field}.cache"));
        let credentials = self.credentials(map.get("credentials"), &format!("{field}.credentials"));
        let defaults = self.named_values(map.get("defaults"), &format!("{field}.defaults"));
        let overrides = self.named_values(map.get("overrides"), &format!("{field}.overrides"));
        let methods = ["kubernetesTokenReview", "jwt", "apiKey", "anonymous", "plain"];
        let unsupported = ["oauth2Introspection", "x509"];
        let (method, spec) = self.one_of(map, &field, &methods, &unsupported, "authentication method")?;
        let mfield = format!("{field}.{method}");
        let method = match method {
            "kubernetesTokenReview" => {
                let m = self.object(spec, &mfield)?;
                let audiences = self.string_list(m.get("audiences"), &format!("{mfield}.audiences"));
                let timeout_ms = self.unsigned(m.get("timeout"), &format!("{mfield}.timeout"));
                IdentityMethod::KubernetesTokenReview { audiences, timeout_ms }
            }
            "jwt" => {
                let m = self.object(spec, &mfield)?;
                let (which, url) = self.one_of(m, &mfield, &["issuerUrl", "jwksUrl"], &[], "")?;
                let ufield = format!("{mfield}.{which}");
                let url = self.non_empty_string(Some(url), &ufield)?;
                if !(url.starts_with("https://") || url.starts_with("http://")) {
                    self.invalid(&ufield, &Value::String(url.clone()), "must be an http or https URL");
                }
                let source = if which == "issuerUrl" { JwtSource::IssuerUrl(url) } else { JwtSource::JwksUrl(url) };
                let ttl_seconds = self.unsigned(m.get("ttl"), &format!("{mfield}.ttl")).unwrap_or(0);
                let timeout_ms = self.unsigned(m.get("timeout"), &format!("{mfield}.timeout"));
                IdentityMethod::Jwt { source, ttl_seconds, timeout_ms }
            }
            "apiKey" => {
                let m = self.object(spec, &mfield)?;
                let sfield = format!("{mfield}.selector");
                let selector = match m.get("selector") {
                    None | Some(Value::Null) => {
                        self.required(&sfield, "");
                        return None;
                    }
                    Some(s) => self.label_selector(s, &sfield)?,
                };
                let all_namespaces = self.bool(m.get("allNamespaces"), &format!("{mfield}.allNamespaces"));
                IdentityMethod::ApiKey { selector, all_namespaces }
            }
            "anonymous" => {
                self.object(spec, &mfield)?;
                IdentityMethod::Anonymous
            }
            "plain" => {
                let m = self.object(spec, &mfield)?;
                if m.get("expression").is_some_and(|v| !v.is_null()) {
                    self.not_supported_feature(&format!("{mfield}.expression"), "CEL (expression)");
                    return None;
                }
                IdentityMethod::Plain { selector: self.selector(m.get("selector"), &format!("{mfield}.selector"))? }
            }
            _ => return None,
        };
        Some(Authentication { name: name.to_owned(), priority, when, credentials: credentials?, defaults, overrides, method, cache })
    }

    fn credentials(&mut self, value: Option<&Value>, field: &str) -> Option<Credentials> {
        let map = self.opt_object(value, field)?;
        if map.values().all(Value::is_null) {
            return Some(Credentials::default());
        }
        let (which, spec) = self.one_of(map, field, &["authorizationHeader", "customHeader", "queryString", "cookie"], &[], "")?;
        let cfield = format!("{field}.{which}");
        let m = self.opt_object(Some(spec), &cfield)?;
        Some(match which {
            "authorizationHeader" => {
                let prefix = match m.get("prefix") {
                    None | Some(Value::Null) => "Bearer".to_owned(),
                    Some(v) => self.string(v, &format!("{cfield}.prefix"))?,
                };
                let prefix = if prefix.is_empty() { "Bearer".to_owned() } else { prefix };
                Credentials::AuthorizationHeader { prefix }
            }
            other => {
                let name = self.non_empty_string(m.get("name"), &format!("{cfield}.name"))?;
                match other {
                    "customHeader" => Credentials::CustomHeader { name },
                    "queryString" => Credentials::QueryString { name },
                    _ => Credentials::Cookie { name },
                }
            }
        })
    }

    /// A Kubernetes `LabelSelector` object (`matchLabels`, `matchExpressions`).
    fn label_selector(&mut self, value: &Value, field: &str) -> Option<LabelSelector> {
        let map = self.object(value, field)?;
        let mut requirements = Vec::new();
        if let Some(labels) = self.opt_object(map.get("matchLabels"), &format!("{field}.matchLabels")) {
            for (k, v) in labels {
                if let Some(v) = self.string(v, &format!("{field}.matchLabels.{k}")) {
                    requirements.push(LabelRequirement { key: k.clone(), op: LabelOp::In(vec![v]) });
                }
            }
        }
        match map.get("matchExpressions") {
            None | Some(Value::Null) => {}
            Some(Value::Array(items)) => {
                for (i, item) in items.iter().enumerate() {
                    let f = format!("{field}.matchExpressions[{i}]");
                    let Some(e) = self.object(item, &f) else { continue };
                    let key = self.non_empty_string(e.get("key"), &format!("{f}.key"));
                    let values = self.string_list(e.get("values"), &format!("{f}.values"));
                    let op_field = format!("{f}.operator");
                    let op = match self.non_empty_string(e.get("operator"), &op_field).as_deref() {
                        Some("In") => LabelOp::In(values),
                        Some("NotIn") => LabelOp::NotIn(values),
                        Some("Exists") => LabelOp::Exists,
                        Some("DoesNotExist") => LabelOp::DoesNotExist,
                        Some(other) => {
                            self.unsupported(&op_field, &Value::String(other.to_owned()), &["In", "NotIn", "Exists", "DoesNotExist"]);
                            continue;
                        }
                        None => continue,
                    };
                    if let Some(key) = key {
                        requirements.push(LabelRequirement { key, op });
                    }
                }
            }
            Some(other) => self.invalid(&format!("{field}.matchExpressions"), other, "must be a list"),
        }
        Some(LabelSelector::from_requirements(requirements))
    }

    fn authorization(&mut self, name: &str, value: &Value) -> Option<Authorization> {
        let field = format!("spec.authorization.{name}");
        let map = self.object(value, &field)?;
        let priority = self.integer(map.get("priority"), &format!("{field}.priority"), 0);
        let when = self.when(map.get("when"), &format!("{field}.when"));
        let cache = self.cache(map.get("cache"), &format!("{field}.cache"));
        let (method, spec) = self.one_of(map, &field, &["patternMatching", "kubernetesSubjectAccessReview"], &["opa", "spicedb"], "authorization method")?;
        let mfield = format!("{field}.{method}");
        let m = self.object(spec, &mfield)?;
        let method = if method == "patternMatching" {
            let pfield = format!("{mfield}.patterns");
            match m.get("patterns") {
                Some(Value::Array(items)) if !items.is_empty() => AuthorizationMethod::PatternMatching(self.pattern_list(items, &pfield)),
                None | Some(Value::Null) | Some(Value::Array(_)) => {
                    self.required(&pfield, "");
                    return None;
                }
                Some(other) => {
                    self.invalid(&pfield, other, "must be a list of patterns");
                    return None;
                }
            }
        } else {
            let mut sar = SubjectAccessReviewSpec::default();
            if let Some(u) = m.get("user").filter(|v| !v.is_null()) {
                sar.user = self.value_or_selector(u, &format!("{mfield}.user"));
            }
            sar.groups = self.string_list(m.get("groups"), &format!("{mfield}.groups"));
            if let Some(g) = m.get("authorizationGroups").filter(|v| !v.is_null()) {
                sar.authorization_groups = self.value_or_selector(g, &format!("{mfield}.authorizationGroups"));
            }
            if let Some(r) = m.get("resourceAttributes").filter(|v| !v.is_null()) {
                let rfield = format!("{mfield}.resourceAttributes");
                let rmap = self.object(r, &rfield)?;
                let mut attrs = ResourceAttributesSpec::default();
                for (key, slot) in [
                    ("namespace", &mut attrs.namespace),
                    ("group", &mut attrs.group),
                    ("resource", &mut attrs.resource),
                    ("name", &mut attrs.name),
                    ("subresource", &mut attrs.subresource),
                    ("verb", &mut attrs.verb),
                ] {
                    if let Some(v) = rmap.get(key).filter(|v| !v.is_null()) {
                        *slot = self.value_or_selector(v, &format!("{rfield}.{key}"));
                    }
                }
                sar.resource_attributes = Some(attrs);
            }
            sar.timeout_ms = self.unsigned(m.get("timeout"), &format!("{mfield}.timeout"));
            AuthorizationMethod::SubjectAccessReview(Box::new(sar))
        };
        Some(Authorization { name: name.to_owned(), priority, when, method, cache })
    }

    fn response(&mut self, value: Option<&Value>) -> Option<Response> {
        let field = "spec.response";
        let map = self.opt_object(value, field)?;
        let mut response = Response {
            unauthenticated: self.deny_with(map.get("unauthenticated"), &format!("{field}.unauthenticated")),
            unauthorized: self.deny_with(map.get("unauthorized"), &format!("{field}.unauthorized")),
            ..Response::default()
        };
        let sfield = format!("{field}.success");
        if let Some(success) = self.opt_object(map.get("success"), &sfield) {
            response.headers = self.success_items(success.get("headers"), &format!("{sfield}.headers"));
            response.dynamic_metadata = self.success_items(success.get("dynamicMetadata"), &format!("{sfield}.dynamicMetadata"));
        }
        Some(response)
    }

    fn deny_with(&mut self, value: Option<&Value>, field: &str) -> Option<DenyWith> {
        let v = value.filter(|v| !v.is_null())?;
        let map = self.object(v, field)?;
        let code_field = format!("{field}.code");
        let code = match map.get("code") {
            None | Some(Value::Null) => None,
            Some(c) => match c.as_u64().and_then(|n| u16::try_from(n).ok()).filter(|n| (300..=599).contains(n)) {
                Some(n) => Some(n),
                None => {
                    self.invalid(&code_field, c, "must be an HTTP status code between 300 and 599");
                    None
                }
            },
        };
        let message = map.get("message").filter(|v| !v.is_null()).and_then(|m| self.value_or_selector(m, &format!("{field}.message")));
        let body = map.get("body").filter(|v| !v.is_null()).and_then(|b| self.value_or_selector(b, &format!("{field}.body")));
        let headers = self.named_values(map.get("headers"), &format!("{field}.headers"));
        Some(DenyWith { code, message, headers, body })
    }

    fn success_items(&mut self, value: Option<&Value>, field: &str) -> Vec<SuccessItem> {
        let Some(map) = self.opt_object(value, field) else { return Vec::new() };
        let mut items = Vec::new();
        for (name, spec) in map {
            let ifield = format!("{field}.{name}");
            let Some(m) = self.object(spec, &ifield) else { continue };
            let priority = self.integer(m.get("priority"), &format!("{ifield}.priority"), 0);
            let when = self.when(m.get("when"), &format!("{ifield}.when"));
            let key = match m.get("key") {
                None | Some(Value::Null) => name.clone(),
                Some(k) => match self.string(k, &format!("{ifield}.key")) {
                    Some(k) if !k.is_empty() => k,
                    _ => name.clone(),
                },
            };
            let Some((which, vspec)) = self.one_of(m, &ifield, &["plain", "json"], &["wristband"], "response method") else { continue };
            let vfield = format!("{ifield}.{which}");
            let value = if which == "plain" {
                let Some(v) = self.value_or_selector(vspec, &vfield) else { continue };
                SuccessValue::Plain(v)
            } else {
                let Some(j) = self.object(vspec, &vfield) else { continue };
                SuccessValue::Json(self.named_values(j.get("properties"), &format!("{vfield}.properties")))
            };
            items.push(SuccessItem { name: name.clone(), key, priority, when, value });
        }
        items.sort_by(|a, b| (a.priority, &a.name).cmp(&(b.priority, &b.name)));
        items
    }
}

/// A value as Go's `%v`-ish rendering in field errors: strings quoted, the rest as JSON.
fn render(value: &Value) -> String {
    match value {
        Value::String(s) => go_quote(s),
        other => other.to_string(),
    }
}
