//! Kubernetes RBAC (`rbac.authorization.k8s.io/v1`), evaluated as kube-apiserver's RBAC
//! authorizer does (plugin/pkg/auth/authorizer/rbac): a request is allowed when a rule of a
//! role bound to the user matches its verb, API group, resource (with subresource), name, or
//! non-resource URL. ClusterRoleBindings apply everywhere, RoleBindings in their namespace.
//! Members of `system:masters` are allowed everything, as kube-apiserver's privileged group.
//! Also: the objects' validation rules and the bootstrap policy a user expects to find.

use std::collections::HashMap;
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::error::{FieldError, go_quote};
use crate::review::UserInfo;
use crate::{Error, Object, Resource};

pub const GROUP: &str = "rbac.authorization.k8s.io";
/// The group whose members may do everything.
pub const MASTERS: &str = "system:masters";

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PolicyRule {
    #[serde(default)]
    pub verbs: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub api_groups: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub resources: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub resource_names: Vec<String>,
    #[serde(default, rename = "nonResourceURLs", skip_serializing_if = "Vec::is_empty")]
    pub non_resource_urls: Vec<String>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Subject {
    #[serde(default)]
    pub kind: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub api_group: String,
    #[serde(default)]
    pub name: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub namespace: String,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RoleRef {
    #[serde(default)]
    pub api_group: String,
    #[serde(default)]
    pub kind: String,
    #[serde(default)]
    pub name: String,
}

/// A RoleBinding (namespace set) or ClusterRoleBinding (namespace empty).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
struct Binding {
    name: String,
    namespace: String,
    role_ref: RoleRef,
    subjects: Vec<Subject>,
}

impl Binding {
    /// kube's describer: `ClusterRoleBinding "x" of ClusterRole "y" to Group "z"`.
    fn describe(&self, subject: &Subject) -> String {
        let (kind, name) = if self.namespace.is_empty() {
            ("ClusterRoleBinding", self.name.clone())
        } else {
            ("RoleBinding", format!("{}/{}", self.name, self.namespace))
        };
        let subject = match subject.kind.as_str() {
            "ServiceAccount" => {
                let namespace = if subject.namespace.is_empty() { &self.namespace } else { &subject.namespace };
                format!("ServiceAccount {}", go_quote(&format!("{}/{namespace}", subject.name)))
            }
            other => format!("{other} {}", go_quote(&subject.name)),
        };
        format!("{kind} {} of {} {} to {subject}", go_quote(&name), self.role_ref.kind, go_quote(&self.role_ref.name))
    }
}

/// What is being asked: kube's `authorizer.Attributes`.
#[derive(Clone, Copy, Debug, Default)]
pub struct Request<'a> {
    pub verb: &'a str,
    pub is_resource: bool,
    pub namespace: &'a str,
    pub api_group: &'a str,
    pub resource: &'a str,
    pub subresource: &'a str,
    pub name: &'a str,
    /// For non-resource requests.
    pub path: &'a str,
}

impl Request<'_> {
    /// `resource[/subresource]`.
    pub fn resource_path(&self) -> String {
        if self.subresource.is_empty() { self.resource.to_owned() } else { format!("{}/{}", self.resource, self.subresource) }
    }

    /// kube's Forbidden reason: `User "x" cannot create resource "serviceaccounts/token" in
    /// API group "" in the namespace "default"`.
    pub fn forbidden_reason(&self, username: &str) -> String {
        let user = go_quote(username);
        if !self.is_resource {
            return format!("User {user} cannot {} path {}", self.verb, go_quote(self.path));
        }
        let scope = if self.namespace.is_empty() { "at the cluster scope".to_owned() } else { format!("in the namespace {}", go_quote(self.namespace)) };
        format!("User {user} cannot {} resource {} in API group {} {scope}", self.verb, go_quote(&self.resource_path()), go_quote(self.api_group))
    }
}

fn has(list: &[String], wanted: &str) -> bool {
    list.iter().any(|item| item == "*" || item == wanted)
}

impl PolicyRule {
    /// kube's `RuleAllows`.
    pub fn allows(&self, request: &Request<'_>) -> bool {
        if !has(&self.verbs, request.verb) {
            return false;
        }
        if !request.is_resource {
            return self.non_resource_urls.iter().any(|url| url == "*" || url == request.path || url.strip_suffix('*').is_some_and(|prefix| request.path.starts_with(prefix)));
        }
        has(&self.api_groups, request.api_group)
            && self.resource_matches(request)
            && (self.resource_names.is_empty() || self.resource_names.iter().any(|n| n == request.name))
    }

    fn resource_matches(&self, request: &Request<'_>) -> bool {
        let combined = request.resource_path();
        self.resources.iter().any(|resource| {
            resource == "*"
                || *resource == combined
                || (!request.subresource.is_empty() && resource.strip_prefix("*/").is_some_and(|sub| sub == request.subresource))
        })
    }
}

fn role_rules(object: &Object) -> Arc<[PolicyRule]> {
    let rules = object.value().get("rules").cloned().and_then(|v| serde_json::from_value::<Vec<PolicyRule>>(v).ok());
    rules.unwrap_or_default().into()
}

fn binding(object: &Object) -> Binding {
    let field = |name: &str| object.value().get(name).cloned().unwrap_or(Value::Null);
    Binding {
        name: object.name().to_owned(),
        namespace: object.namespace().to_owned(),
        role_ref: serde_json::from_value(field("roleRef")).unwrap_or_default(),
        subjects: serde_json::from_value::<Option<Vec<Subject>>>(field("subjects")).ok().flatten().unwrap_or_default(),
    }
}

impl Subject {
    /// kube's `appliesToUser`; a ServiceAccount subject without a namespace means the
    /// binding's own.
    fn applies_to(&self, user: &UserInfo, binding_namespace: &str) -> bool {
        match self.kind.as_str() {
            "User" => user.username == self.name,
            "Group" => user.groups.contains(&self.name),
            "ServiceAccount" => {
                let namespace = if self.namespace.is_empty() { binding_namespace } else { &self.namespace };
                !namespace.is_empty() && user.username == crate::claims::service_account_username(namespace, &self.name)
            }
            _ => false,
        }
    }
}

/// Every Role, ClusterRole and binding, indexed for evaluation.
#[derive(Clone, Debug, Default)]
pub struct Policy {
    cluster_roles: HashMap<String, Arc<[PolicyRule]>>,
    roles: HashMap<(String, String), Arc<[PolicyRule]>>,
    cluster_bindings: HashMap<String, Binding>,
    /// namespace → name → binding.
    bindings: HashMap<String, HashMap<String, Binding>>,
}

impl Policy {
    /// Applies an RBAC object's current state (`present`) or its removal; other resources are
    /// ignored.
    pub fn apply(&mut self, resource: &Resource, object: &Object, present: bool) {
        let (namespace, name) = (object.namespace().to_owned(), object.name().to_owned());
        match resource.plural {
            "clusterroles" if present => _ = self.cluster_roles.insert(name, role_rules(object)),
            "clusterroles" => _ = self.cluster_roles.remove(&name),
            "roles" if present => _ = self.roles.insert((namespace, name), role_rules(object)),
            "roles" => _ = self.roles.remove(&(namespace, name)),
            "clusterrolebindings" if present => _ = self.cluster_bindings.insert(name, binding(object)),
            "clusterrolebindings" => _ = self.cluster_bindings.remove(&name),
            "rolebindings" if present => _ = self.bindings.entry(namespace).or_default().insert(name, binding(object)),
            "rolebindings" => {
                if let Some(names) = self.bindings.get_mut(&namespace) {
                    names.remove(&name);
                    if names.is_empty() {
                        self.bindings.remove(&namespace);
                    }
                }
            }
            _ => {}
        }
    }

    fn rules_of(&self, binding: &Binding) -> Option<&Arc<[PolicyRule]>> {
        match binding.role_ref.kind.as_str() {
            "ClusterRole" => self.cluster_roles.get(&binding.role_ref.name),
            "Role" if !binding.namespace.is_empty() => self.roles.get(&(binding.namespace.clone(), binding.role_ref.name.clone())),
            _ => None,
        }
    }

    /// The bindings that apply to `user` in `namespace` (cluster-wide ones only for `""`),
    /// with the subject that matched and the bound rules.
    fn applicable<'a>(&'a self, user: &'a UserInfo, namespace: &'a str) -> impl Iterator<Item = (&'a Binding, &'a Subject, &'a Arc<[PolicyRule]>)> + 'a {
        let cluster = self.cluster_bindings.values();
        let local = self.bindings.get(namespace).into_iter().flat_map(HashMap::values);
        cluster.chain(local).filter_map(move |b| {
            let subject = b.subjects.iter().find(|s| s.applies_to(user, &b.namespace))?;
            Some((b, subject, self.rules_of(b)?))
        })
    }

    /// `Ok(reason)` when `user` may make `request` (kube's SubjectAccessReview reason:
    /// `RBAC: allowed by ClusterRoleBinding ...`, empty for `system:masters`), else
    /// `Err(reason)`: empty, or, as kube says it, the roles that bindings of `user` name but
    /// that do not exist (`RBAC: clusterrole.rbac.authorization.k8s.io "x" not found`).
    pub fn decide(&self, user: &UserInfo, request: &Request<'_>) -> Result<String, String> {
        if user.groups.iter().any(|g| g == MASTERS) {
            return Ok(String::new());
        }
        let namespace = if request.is_resource { request.namespace } else { "" };
        match self.applicable(user, namespace).find(|(_, _, rules)| rules.iter().any(|rule| rule.allows(request))) {
            Some((binding, subject, _)) => Ok(format!("RBAC: allowed by {}", binding.describe(subject))),
            None => {
                let errors = self.missing_roles(user, namespace);
                Err(if errors.is_empty() { String::new() } else { format!("RBAC: {}", go_error_aggregate(&errors)) })
            }
        }
    }

    /// The errors of the bindings that apply to `user` in `namespace` but whose role cannot be
    /// read, each once (kube's `VisitRulesFor`: ClusterRoleBindings first).
    pub fn missing_roles(&self, user: &UserInfo, namespace: &str) -> Vec<String> {
        let mut errors: Vec<String> = Vec::new();
        let cluster = self.cluster_bindings.values().collect::<Vec<_>>();
        let local = self.bindings.get(namespace).into_iter().flat_map(HashMap::values).collect::<Vec<_>>();
        for group in [cluster, local] {
            let mut found: Vec<String> = group
                .into_iter()
                .filter(|b| self.rules_of(b).is_none() && b.subjects.iter().any(|s| s.applies_to(user, &b.namespace)))
                .map(|b| match b.role_ref.kind.as_str() {
                    "ClusterRole" => format!("clusterrole.{GROUP} {} not found", crate::error::go_quote(&b.role_ref.name)),
                    "Role" => format!("role.{GROUP} {} not found", crate::error::go_quote(&b.role_ref.name)),
                    kind => format!("unsupported role reference kind: {}", crate::error::go_quote(kind)),
                })
                .collect();
            found.sort();
            for error in found {
                if !errors.contains(&error) {
                    errors.push(error);
                }
            }
        }
        errors
    }

    /// Whether `user` may make `request`.
    pub fn allows(&self, user: &UserInfo, request: &Request<'_>) -> bool {
        self.decide(user, request).is_ok()
    }

    /// The rules of the role a binding in `namespace` refers to, if it exists.
    pub fn referenced_rules(&self, role_ref: &RoleRef, namespace: &str) -> Option<Vec<PolicyRule>> {
        let binding = Binding { namespace: namespace.to_owned(), role_ref: role_ref.clone(), ..Binding::default() };
        self.rules_of(&binding).map(|rules| rules.to_vec())
    }

    /// Every rule that applies to `user` in `namespace`: what SelfSubjectRulesReview lists.
    pub fn rules_for(&self, user: &UserInfo, namespace: &str) -> Vec<PolicyRule> {
        let mut rules: Vec<PolicyRule> = Vec::new();
        if user.groups.iter().any(|g| g == MASTERS) {
            rules.push(PolicyRule { verbs: vec!["*".into()], api_groups: vec!["*".into()], resources: vec!["*".into()], ..PolicyRule::default() });
            rules.push(PolicyRule { verbs: vec!["*".into()], non_resource_urls: vec!["*".into()], ..PolicyRule::default() });
        }
        for (_, _, set) in self.applicable(user, namespace) {
            for rule in set.iter() {
                if !rules.contains(rule) {
                    rules.push(rule.clone());
                }
            }
        }
        rules
    }
}

/// Go's `utilerrors.NewAggregate(errs).Error()` of distinct messages: one alone, several as
/// `[a, b]`.
pub fn go_error_aggregate(errors: &[String]) -> String {
    match errors {
        [one] => one.clone(),
        many => format!("[{}]", many.join(", ")),
    }
}

// --- escalation, as kube's pkg/registry/rbac/validation ------------------------------------

fn has_all(set: &[String], wanted: &[String]) -> bool {
    wanted.iter().all(|w| set.contains(w))
}

/// kube's `resourceCoversAll`: `*`, the exact resource, or `*/sub` for a subresource.
fn resources_cover(set: &[String], wanted: &[String]) -> bool {
    set.iter().any(|r| r == "*")
        || wanted.iter().all(|path| set.contains(path) || path.split_once('/').is_some_and(|(_, sub)| set.iter().any(|r| r.strip_prefix("*/") == Some(sub))))
}

fn url_covers(owner: &str, path: &str) -> bool {
    owner == path || owner.strip_suffix('*').is_some_and(|prefix| path.starts_with(prefix))
}

/// kube's `ruleCovers`: `owner` grants everything `sub` does.
fn covers(owner: &PolicyRule, sub: &PolicyRule) -> bool {
    let verbs = owner.verbs.iter().any(|v| v == "*") || has_all(&owner.verbs, &sub.verbs);
    let groups = owner.api_groups.iter().any(|g| g == "*") || has_all(&owner.api_groups, &sub.api_groups);
    let resources = resources_cover(&owner.resources, &sub.resources);
    let urls = sub.non_resource_urls.iter().all(|path| owner.non_resource_urls.iter().any(|o| url_covers(o, path)));
    let names = owner.resource_names.is_empty() || (!sub.resource_names.is_empty() && has_all(&owner.resource_names, &sub.resource_names));
    verbs && groups && resources && urls && names
}

/// kube's `BreakdownRule`: one rule per group, resource, verb (and name), or per URL and verb.
fn breakdown(rule: &PolicyRule) -> Vec<PolicyRule> {
    let one = |v: &str| vec![v.to_owned()];
    let mut atoms = Vec::new();
    for group in &rule.api_groups {
        for resource in &rule.resources {
            for verb in &rule.verbs {
                if rule.resource_names.is_empty() {
                    atoms.push(PolicyRule { verbs: one(verb), api_groups: one(group), resources: one(resource), ..PolicyRule::default() });
                }
                for name in &rule.resource_names {
                    atoms.push(PolicyRule { verbs: one(verb), api_groups: one(group), resources: one(resource), resource_names: one(name), ..PolicyRule::default() });
                }
            }
        }
    }
    for url in &rule.non_resource_urls {
        for verb in &rule.verbs {
            atoms.push(PolicyRule { verbs: one(verb), non_resource_urls: one(url), ..PolicyRule::default() });
        }
    }
    atoms
}

impl PolicyRule {
    /// kube's `CompactString`, lists as Go's `%q` prints them:
    /// `{APIGroups:["apps"], Resources:["deployments"], Verbs:["get" "list"]}`.
    pub fn compact(&self) -> String {
        let list = |items: &[String]| crate::error::go_quote_list(items);
        let mut parts = Vec::new();
        for (label, items) in [
            ("APIGroups", &self.api_groups),
            ("Resources", &self.resources),
            ("ResourceNames", &self.resource_names),
            ("NonResourceURLs", &self.non_resource_urls),
            ("Verbs", &self.verbs),
        ] {
            if !items.is_empty() {
                parts.push(format!("{label}:{}", list(items)));
            }
        }
        format!("{{{}}}", parts.join(", "))
    }
}

/// Rules whose breakdown would exceed this many atomic rules are not broken down: they are
/// reported as not held (a writer granting that much needs `escalate` or `bind`), so a huge
/// Role cannot cost unbounded time or memory.
const MAX_ATOMS: usize = 10_000;

/// kube's `ConfirmNoEscalation`: the parts of `granted` that `held` does not cover, as atomic
/// rules (empty: no escalation).
pub fn uncovered(held: &[PolicyRule], granted: &[PolicyRule]) -> Vec<PolicyRule> {
    let mut missing = Vec::new();
    for rule in granted {
        let resource_atoms = rule.api_groups.len().saturating_mul(rule.resources.len()).saturating_mul(rule.resource_names.len().max(1));
        let atoms = resource_atoms.saturating_add(rule.non_resource_urls.len()).saturating_mul(rule.verbs.len());
        if atoms > MAX_ATOMS {
            missing.push(rule.clone());
            continue;
        }
        missing.extend(breakdown(rule).into_iter().filter(|atom| !held.iter().any(|owner| covers(owner, atom))));
    }
    missing
}

/// kube's `CompactRules`: atomic rules that differ only in their verb, merged.
fn compact_rules(rules: &[PolicyRule]) -> Vec<PolicyRule> {
    let mut merged: Vec<PolicyRule> = Vec::new();
    for rule in rules {
        let same = merged.iter_mut().find(|m| {
            m.api_groups == rule.api_groups && m.resources == rule.resources && m.resource_names == rule.resource_names && m.non_resource_urls == rule.non_resource_urls
        });
        match same {
            Some(m) => {
                for verb in &rule.verbs {
                    if !m.verbs.contains(verb) {
                        m.verbs.push(verb.clone());
                    }
                }
            }
            None => merged.push(rule.clone()),
        }
    }
    merged
}

/// The Forbidden reason for an attempt to grant `missing`.
pub fn escalation_reason(user: &UserInfo, missing: &[PolicyRule]) -> String {
    let mut lines: Vec<String> = compact_rules(missing).iter().map(PolicyRule::compact).collect();
    lines.sort();
    lines.dedup();
    format!(
        "user {} (groups={}) is attempting to grant RBAC permissions not currently held:\n{}",
        go_quote(&user.username),
        crate::error::go_quote_list(&user.groups),
        lines.join("\n")
    )
}

/// A binding object's `roleRef`.
pub fn role_ref(object: &Object) -> RoleRef {
    binding(object).role_ref
}

/// The rules of a Role or ClusterRole object.
pub fn rules_of(object: &Object) -> Vec<PolicyRule> {
    role_rules(object).to_vec()
}

// --- validation, as kube's pkg/apis/rbac/validation ---------------------------------------

fn go_list(items: &[String]) -> String {
    format!("[]string{{{}}}", items.iter().map(|s| go_quote(s)).collect::<Vec<_>>().join(", "))
}

fn not_supported(field: &str, value: &str, supported: &[&str]) -> FieldError {
    let list = supported.iter().map(|s| go_quote(s)).collect::<Vec<_>>().join(", ");
    FieldError { field: field.to_owned(), reason: "FieldValueNotSupported", message: format!("Unsupported value: {}: supported values: {list}", go_quote(value)) }
}

fn rule_errors(rule: &PolicyRule, namespaced: bool, path: &str) -> Vec<FieldError> {
    let mut errors = Vec::new();
    if rule.verbs.is_empty() {
        errors.push(FieldError::required(&format!("{path}.verbs"), "verbs must contain at least one value"));
    }
    if !rule.non_resource_urls.is_empty() {
        let urls = go_list(&rule.non_resource_urls);
        if namespaced {
            errors.push(FieldError::invalid(&format!("{path}.nonResourceURLs"), &urls, "namespaced rules cannot apply to non-resource URLs"));
        }
        if !rule.api_groups.is_empty() || !rule.resources.is_empty() || !rule.resource_names.is_empty() {
            errors.push(FieldError::invalid(&format!("{path}.nonResourceURLs"), &urls, "rules cannot apply to both regular resources and non-resource URLs"));
        }
        return errors;
    }
    if rule.api_groups.is_empty() {
        errors.push(FieldError::required(&format!("{path}.apiGroups"), "resource rules must supply at least one api group"));
    }
    if rule.resources.is_empty() {
        errors.push(FieldError::required(&format!("{path}.resources"), "resource rules must supply at least one resource"));
    }
    errors
}

fn subject_errors(subject: &Subject, cluster: bool, path: &str) -> Vec<FieldError> {
    let mut errors = Vec::new();
    if subject.name.is_empty() {
        errors.push(FieldError::required(&format!("{path}.name"), ""));
    }
    match subject.kind.as_str() {
        "ServiceAccount" => {
            if !subject.api_group.is_empty() {
                errors.push(not_supported(&format!("{path}.apiGroup"), &subject.api_group, &[""]));
            }
            if cluster && subject.namespace.is_empty() {
                errors.push(FieldError::required(&format!("{path}.namespace"), ""));
            }
        }
        "User" | "Group" => {
            if subject.api_group != GROUP {
                errors.push(not_supported(&format!("{path}.apiGroup"), &subject.api_group, &[GROUP]));
            }
        }
        other => errors.push(not_supported(&format!("{path}.kind"), other, &["ServiceAccount", "User", "Group"])),
    }
    errors
}

/// kube's v1 defaulting of bindings: `roleRef.apiGroup` and the `apiGroup` of User and Group
/// subjects default to `rbac.authorization.k8s.io`.
pub fn default_fields(resource: &Resource, object: &mut Object) {
    if !matches!(resource.plural, "rolebindings" | "clusterrolebindings") {
        return;
    }
    let fill = |target: Option<&mut Value>| {
        if let Some(Value::Object(map)) = target
            && map.get("apiGroup").and_then(Value::as_str).is_none_or(str::is_empty)
        {
            map.insert("apiGroup".into(), json!(GROUP));
        }
    };
    fill(object.0.get_mut("roleRef"));
    if let Some(Value::Array(subjects)) = object.0.get_mut("subjects") {
        for subject in subjects.iter_mut() {
            if matches!(subject.get("kind").and_then(Value::as_str), Some("User" | "Group")) {
                fill(Some(subject));
            }
        }
    }
}

/// Checks a Role, ClusterRole, RoleBinding or ClusterRoleBinding; kube-apiserver's 422.
pub fn validate(resource: &Resource, object: &Object) -> crate::Result<()> {
    let value = object.value();
    let mut errors = Vec::new();
    match resource.plural {
        "roles" | "clusterroles" => {
            let rules = value.get("rules").cloned().unwrap_or(Value::Null);
            match serde_json::from_value::<Option<Vec<PolicyRule>>>(rules) {
                Ok(rules) => {
                    for (i, rule) in rules.unwrap_or_default().iter().enumerate() {
                        errors.extend(rule_errors(rule, resource.plural == "roles", &format!("rules[{i}]")));
                    }
                }
                Err(e) => errors.push(FieldError::invalid("rules", "", &e.to_string())),
            }
        }
        "rolebindings" | "clusterrolebindings" => {
            let cluster = resource.plural == "clusterrolebindings";
            let bound = binding(object);
            let role_ref = &bound.role_ref;
            if role_ref.api_group != GROUP {
                errors.push(not_supported("roleRef.apiGroup", &role_ref.api_group, &[GROUP]));
            }
            let kinds: &[&str] = if cluster { &["ClusterRole"] } else { &["Role", "ClusterRole"] };
            if !kinds.contains(&role_ref.kind.as_str()) {
                errors.push(not_supported("roleRef.kind", &role_ref.kind, kinds));
            }
            if role_ref.name.is_empty() {
                errors.push(FieldError::required("roleRef.name", ""));
            }
            for (i, subject) in bound.subjects.iter().enumerate() {
                errors.extend(subject_errors(subject, cluster, &format!("subjects[{i}]")));
            }
        }
        _ => return Ok(()),
    }
    if errors.is_empty() {
        Ok(())
    } else {
        Err(Error::Invalid { kind: resource.kind.to_owned(), group: GROUP.to_owned(), name: object.name().to_owned(), causes: errors })
    }
}

/// What an update must keep, beyond [`validate`]: a binding's `roleRef` may not change
/// (kube-apiserver: `cannot change roleRef`).
pub fn validate_update(resource: &Resource, old: &Object, new: &Object) -> crate::Result<()> {
    if matches!(resource.plural, "rolebindings" | "clusterrolebindings") && old.value().get("roleRef") != new.value().get("roleRef") {
        let rendered = new.value().get("roleRef").map(Value::to_string).unwrap_or_default();
        let cause = FieldError::invalid("roleRef", rendered, "cannot change roleRef");
        return Err(Error::Invalid { kind: resource.kind.to_owned(), group: GROUP.to_owned(), name: new.name().to_owned(), causes: vec![cause] });
    }
    Ok(())
}

// --- the bootstrap policy ---------------------------------------------------------------

fn rule(verbs: &[&str], groups: &[&str], resources: &[&str]) -> Value {
    json!({"verbs": verbs, "apiGroups": groups, "resources": resources})
}

fn url_rule(verbs: &[&str], urls: &[&str]) -> Value {
    json!({"verbs": verbs, "nonResourceURLs": urls})
}

const READ: [&str; 3] = ["get", "list", "watch"];
const WRITE: [&str; 5] = ["create", "delete", "deletecollection", "patch", "update"];

fn cluster_role(name: &str, rules: Vec<Value>) -> Object {
    bootstrap_object("ClusterRole", name, json!({"rules": rules}))
}

fn cluster_role_binding(name: &str, role: &str, groups: &[&str]) -> Object {
    let subjects: Vec<Value> = groups.iter().map(|g| json!({"kind": "Group", "apiGroup": GROUP, "name": g})).collect();
    bootstrap_object("ClusterRoleBinding", name, json!({"roleRef": {"apiGroup": GROUP, "kind": "ClusterRole", "name": role}, "subjects": subjects}))
}

fn bootstrap_object(kind: &str, name: &str, body: Value) -> Object {
    let mut value = json!({
        "apiVersion": format!("{GROUP}/v1"),
        "kind": kind,
        "metadata": {
            "name": name,
            "labels": {"kubernetes.io/bootstrapping": "rbac-defaults"},
            "annotations": {"rbac.authorization.kubernetes.io/autoupdate": "true"},
        },
    });
    if let (Some(target), Value::Object(fields)) = (value.as_object_mut(), body) {
        target.extend(fields);
    }
    Object::from_value(value).unwrap_or_else(|| Object(serde_json::Map::new()))
}

/// The default ClusterRoles and ClusterRoleBindings, as kube-apiserver bootstraps them (the
/// subset that concerns this server's resources). `view`, `edit` and `admin` are flattened
/// (no aggregation).
pub fn bootstrap_policy() -> Vec<(Resource, Object)> {
    let roles = vec![
        cluster_role("cluster-admin", vec![rule(&["*"], &["*"], &["*"]), url_rule(&["*"], &["*"])]),
        cluster_role(
            "system:basic-user",
            vec![
                rule(&["create"], &["authorization.k8s.io"], &["selfsubjectaccessreviews", "selfsubjectrulesreviews"]),
                rule(&["create"], &["authentication.k8s.io"], &["selfsubjectreviews"]),
            ],
        ),
        cluster_role(
            "system:discovery",
            vec![url_rule(&["get"], &["/api", "/api/*", "/apis", "/apis/*", "/healthz", "/livez", "/openapi", "/openapi/*", "/readyz", "/version", "/version/"])],
        ),
        cluster_role("system:public-info-viewer", vec![url_rule(&["get"], &["/healthz", "/livez", "/readyz", "/version", "/version/"])]),
        cluster_role(
            "system:service-account-issuer-discovery",
            vec![url_rule(&["get"], &["/.well-known/openid-configuration", "/.well-known/openid-configuration/", "/openid/v1/jwks", "/openid/v1/jwks/"])],
        ),
        cluster_role(
            "system:auth-delegator",
            vec![rule(&["create"], &["authentication.k8s.io"], &["tokenreviews"]), rule(&["create"], &["authorization.k8s.io"], &["subjectaccessreviews"])],
        ),
        cluster_role("view", vec![rule(&READ, &[""], &["serviceaccounts", "pods", "namespaces"])]),
        cluster_role(
            "edit",
            vec![
                rule(&READ, &[""], &["serviceaccounts", "pods", "secrets", "namespaces"]),
                rule(&WRITE, &[""], &["serviceaccounts", "pods", "secrets"]),
                rule(&["impersonate"], &[""], &["serviceaccounts"]),
                rule(&["create"], &[""], &["serviceaccounts/token"]),
            ],
        ),
        cluster_role(
            "admin",
            vec![
                rule(&READ, &[""], &["serviceaccounts", "pods", "secrets", "namespaces"]),
                rule(&WRITE, &[""], &["serviceaccounts", "pods", "secrets"]),
                rule(&["impersonate"], &[""], &["serviceaccounts"]),
                rule(&["create"], &[""], &["serviceaccounts/token"]),
                // Explicit verbs, not `*`: `escalate` and `bind` stay out, as in kube's `admin`.
                rule(&["create", "delete", "deletecollection", "get", "list", "patch", "update", "watch"], &[GROUP], &["roles", "rolebindings"]),
                rule(&["create"], &["authorization.k8s.io"], &["localsubjectaccessreviews"]),
            ],
        ),
    ];
    let bindings = vec![
        cluster_role_binding("cluster-admin", "cluster-admin", &[MASTERS]),
        cluster_role_binding("system:basic-user", "system:basic-user", &["system:authenticated"]),
        cluster_role_binding("system:discovery", "system:discovery", &["system:authenticated"]),
        cluster_role_binding("system:public-info-viewer", "system:public-info-viewer", &["system:authenticated", "system:unauthenticated"]),
        cluster_role_binding("system:service-account-issuer-discovery", "system:service-account-issuer-discovery", &["system:serviceaccounts"]),
    ];
    roles.into_iter().map(|o| (Resource::CLUSTER_ROLES, o)).chain(bindings.into_iter().map(|o| (Resource::CLUSTER_ROLE_BINDINGS, o))).collect()
}
