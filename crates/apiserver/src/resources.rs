//! Generic object handlers for every stored resource (`registry::STORED`): get, list, watch,
//! create, update (PUT), patch (JSON, merge, strategic-as-merge, server-side apply), delete and
//! deletecollection; and get, update and patch of the `status` subresource of the kinds that
//! have one. Writes go through the authority (Kubernetes' controller rules); reads go to its
//! store.

use std::sync::Arc;
use std::time::Duration;

use axum::http::{StatusCode, header};
use axum::response::Response;
use serde_json::{Map, Value, json};
use tokenwarden_core::error::go_quote;
use tokenwarden_core::selector::{FieldRequirement, FieldSelector, LabelSelector};
use tokenwarden_core::rbac::Request;
use tokenwarden_core::{Error, Object, Resource};
use tokenwarden_store::authority::check_preconditions;
use tokenwarden_store::clock::random_bytes;
use tokenwarden_store::{ListOptions, Part, Preconditions, StoreError};

use crate::error::{ApiError, ApiResult};
use crate::patch::{self, PatchType};
use crate::registry::{self, ResourceDef};
use crate::table::{self, IncludeObject, Rendering, TableOptions};
use crate::watch::{self, WatchSpec};
use crate::{ApiState, Call, body};

/// Attempts of a patch that did not pin a resourceVersion, as kube-apiserver retries on conflict.
const PATCH_ATTEMPTS: usize = 5;
/// kube-apiserver's default `--min-request-timeout`: the shortest a watch with no
/// `timeoutSeconds` lasts (and half the longest).
const MIN_REQUEST_TIMEOUT_SECONDS: u64 = 1800;

/// How long a watch lasts: `timeoutSeconds` if given, else — as kube-apiserver with its default
/// `--min-request-timeout` — a random 30 to 60 minutes, so clients spread their re-watches.
fn watch_seconds(requested: u64, random: u16) -> u64 {
    if requested > 0 { requested.min(MAX_WATCH_SECONDS) } else { MIN_REQUEST_TIMEOUT_SECONDS + u64::from(random) % MIN_REQUEST_TIMEOUT_SECONDS }
}

/// The longest watch served (a year), so any `timeoutSeconds` makes a valid deadline.
const MAX_WATCH_SECONDS: u64 = 365 * 24 * 3600;

pub async fn handle(state: &ApiState, call: Call) -> ApiResult<Response> {
    let info = &call.info;
    let Some(def) = registry::find(&info.group, &info.version, &info.resource) else {
        return Err(ApiError::path_not_found());
    };
    let resource = def.resource;
    let part = match info.subresource.as_str() {
        "" => Part::Object,
        "status" if resource.has_status_subresource() => Part::Status,
        _ => return Err(ApiError::path_not_found()),
    };
    let namespace = if resource.namespaced {
        info.namespace.clone()
    } else if info.namespace.is_empty() || (resource == Resource::NAMESPACES && info.namespace == info.name) {
        // `/api/v1/namespaces/<ns>` parses as the namespace `<ns>` in itself, as in kube; any
        // other namespaced path to namespaces (`/api/v1/namespaces/a/namespaces/b`, authorized
        // in `a`) has no route there either: serving it let a grant in one namespace reach all.
        String::new()
    } else {
        // `/api/v1/namespaces/<ns>/nodes`: cluster-scoped resources have no namespaced path.
        return Err(ApiError::path_not_found());
    };
    // A `?watch=True` (Go's ParseBool spelling, which the Python client sends) is a watch too.
    let verb = if info.verb == "list" && call.query.get("watch").is_some_and(go_bool) { "watch" } else { info.verb };
    if resource.namespaced && namespace.is_empty() && !matches!(verb, "list" | "watch") {
        return Err(if info.name.is_empty() { ApiError::method_not_allowed(method_of(verb)) } else { ApiError::path_not_found() });
    }
    if part == Part::Status && !matches!(verb, "get" | "update" | "patch") {
        // kube-apiserver's status subresource serves get, update and patch only.
        return Err(ApiError::method_not_allowed(method_of(verb)));
    }
    let handler = Handler { state, call: &call, def, resource, namespace, part };
    match verb {
        "get" => handler.get().await,
        "list" => handler.list().await,
        "watch" => handler.watch().await,
        "create" if info.name.is_empty() => handler.create().await,
        "update" => handler.update().await,
        "patch" => handler.patch().await,
        "delete" => handler.delete().await,
        "deletecollection" if def.verbs().contains(&"deletecollection") => handler.delete_collection().await,
        other => Err(ApiError::method_not_allowed(method_of(other))),
    }
}

/// Go's `strconv.ParseBool` true values.
fn go_bool(value: &str) -> bool {
    matches!(value, "1" | "t" | "T" | "true" | "TRUE" | "True")
}

fn method_of(verb: &str) -> &'static str {
    match verb {
        "get" | "list" | "watch" => "GET",
        "create" => "POST",
        "update" => "PUT",
        "patch" => "PATCH",
        "delete" | "deletecollection" => "DELETE",
        _ => "UNKNOWN",
    }
}

fn not_found(err: &StoreError) -> bool {
    matches!(err, StoreError::Api(Error::NotFound { .. }))
}

struct Handler<'a> {
    state: &'a ApiState,
    call: &'a Call,
    def: &'static ResourceDef,
    resource: Resource,
    /// The request namespace; empty for cluster-scoped resources and all-namespace lists.
    namespace: String,
    /// The object, or its status subresource.
    part: Part,
}

impl Handler<'_> {
    fn pretty(&self) -> bool {
        self.call.pretty()
    }

    fn name(&self) -> &str {
        &self.call.info.name
    }

    fn ok(&self, code: StatusCode, object: &Object, warnings: &[String]) -> Response {
        body::with_warnings(body::json(code, &object.value().clone().into(), self.pretty()), warnings)
    }

    fn table_options<'v>(&self, version: &'v str) -> TableOptions<'v> {
        TableOptions {
            version,
            include: IncludeObject::parse(self.call.query.get("includeObject")),
            no_headers: false,
            now: self.state.authority.clock().now(),
        }
    }

    /// `apiVersion`/`kind`, when sent, must be the resource's.
    fn check_type(&self, object: &Map<String, Value>) -> ApiResult<()> {
        let field = |name: &str| object.get(name).and_then(Value::as_str).unwrap_or("");
        let expected = self.resource.api_version();
        let sent_version = field("apiVersion");
        if !sent_version.is_empty() && sent_version != expected {
            return Err(ApiError::bad_request(format!(
                "the API version in the data ({sent_version}) does not match the expected API version ({expected})"
            )));
        }
        let sent_kind = field("kind");
        if !sent_kind.is_empty() && sent_kind != self.resource.kind {
            return Err(ApiError::bad_request(format!(
                "the kind in the data ({sent_kind}) does not match the expected kind ({})",
                self.resource.kind
            )));
        }
        Ok(())
    }

    /// kube's `EnsureObjectNamespaceMatchesRequestNamespace`.
    fn place_namespace(&self, object: &mut Object) -> ApiResult<()> {
        let sent = object.namespace().to_owned();
        if sent == self.namespace || self.namespace.is_empty() {
            return Ok(());
        }
        if sent.is_empty() {
            object.set_meta("namespace", self.namespace.clone());
            return Ok(());
        }
        Err(ApiError::bad_request("the namespace of the provided object does not match the namespace sent on the request"))
    }

    fn check_name_matches(&self, object: &Object) -> ApiResult<()> {
        if object.name() != self.name() {
            return Err(ApiError::bad_request(format!(
                "the name of the object ({}) does not match the name on the URL ({})",
                object.name(),
                self.name()
            )));
        }
        Ok(())
    }

    fn validate_fields(&self, value: &Value) -> ApiResult<Vec<String>> {
        self.call.field_validation()?.check(value, &self.def.schema, self.resource.kind, &self.resource.api_version())
    }

    fn label_selector(&self) -> ApiResult<LabelSelector> {
        Ok(LabelSelector::parse(self.call.query.get("labelSelector").unwrap_or(""))?)
    }

    /// The `fieldSelector`, each field converted for the kind as kube does before a list, watch
    /// or deletecollection: a field the kind does not take is a 400, not an empty answer.
    fn field_selector(&self) -> ApiResult<FieldSelector> {
        let selector = FieldSelector::parse(self.call.query.get("fieldSelector").unwrap_or(""))?;
        Ok(selector.convert(|label| self.def.field_labels.convert(label))?)
    }

    fn list_namespace(&self) -> Option<String> {
        (!self.namespace.is_empty()).then(|| self.namespace.clone())
    }

    // --- Reads ---

    async fn get(&self) -> ApiResult<Response> {
        let object = self.state.authority.store().get(&self.resource, &self.namespace, self.name()).await?;
        match table::rendering(&self.call.headers) {
            Rendering::Plain => Ok(self.ok(StatusCode::OK, &object, &[])),
            Rendering::Table { version } => {
                let mut metadata = Map::new();
                metadata.insert("resourceVersion".into(), json!(object.resource_version()));
                let table = table::table(&self.resource, std::slice::from_ref(&object), metadata, &self.table_options(&version));
                Ok(body::json(StatusCode::OK, &table, self.pretty()))
            }
        }
    }

    async fn list(&self) -> ApiResult<Response> {
        let limit = match self.call.query.get("limit").filter(|l| !l.is_empty()) {
            None => 0,
            Some(raw) => match raw.parse::<i64>() {
                Ok(n) => usize::try_from(n.max(0)).unwrap_or(0),
                Err(_) => return Err(ApiError::bad_request(format!("limit: Invalid value: {}: must be an integer", go_quote(raw)))),
            },
        };
        let options = ListOptions {
            namespace: self.list_namespace(),
            label_selector: self.label_selector()?,
            field_selector: self.field_selector()?,
            limit,
            continue_token: self.call.query.get("continue").filter(|c| !c.is_empty()).map(str::to_owned),
        };
        let list = self.state.authority.store().list(&self.resource, &options).await?;
        let mut metadata = Map::new();
        metadata.insert("resourceVersion".into(), json!(list.revision.to_string()));
        if let Some(token) = &list.continue_token {
            metadata.insert("continue".into(), json!(token));
        }
        let document = match table::rendering(&self.call.headers) {
            Rendering::Table { version } => table::table(&self.resource, &list.items, metadata, &self.table_options(&version)),
            Rendering::Plain => json!({
                "kind": format!("{}List", self.resource.kind),
                "apiVersion": self.resource.api_version(),
                "metadata": metadata,
                "items": list.items.into_iter().map(Object::into_value).collect::<Vec<_>>(),
            }),
        };
        Ok(body::json(StatusCode::OK, &document, self.pretty()))
    }

    async fn watch(&self) -> ApiResult<Response> {
        let requested = match self.call.query.get("timeoutSeconds").filter(|t| !t.is_empty()) {
            None => 0,
            Some(raw) => raw
                .parse::<u64>()
                .map_err(|_| ApiError::bad_request(format!("timeoutSeconds: Invalid value: {}: must be an integer", go_quote(raw))))?,
        };
        let timeout = Duration::from_secs(watch_seconds(requested, u16::from_le_bytes(random_bytes())));
        let mut field_selector = self.field_selector()?;
        if !self.name().is_empty() {
            // kube's watch of one name: a field selector given with it must pin that name.
            if !field_selector.is_empty() && field_selector.requires_exact("metadata.name") != Some(self.name()) {
                return Err(ApiError::bad_request("fieldSelector metadata.name doesn't match requested name"));
            }
            let mut requirements = field_selector.requirements().to_vec();
            requirements.push(FieldRequirement { field: "metadata.name".into(), value: self.name().to_owned(), negated: false });
            field_selector = FieldSelector::from_requirements(requirements);
        }
        let spec = WatchSpec {
            resource: self.resource,
            namespace: self.list_namespace(),
            name: (!self.name().is_empty()).then(|| self.name().to_owned()),
            label_selector: self.label_selector()?,
            field_selector,
            rendering: table::rendering(&self.call.headers),
            include: IncludeObject::parse(self.call.query.get("includeObject")),
            timeout,
            send_initial_events: self.call.query.get("sendInitialEvents").is_some_and(go_bool),
            allow_bookmarks: self.call.query.get("allowWatchBookmarks").is_some_and(go_bool),
        };
        let store = Arc::clone(self.state.authority.store());
        let clock = Arc::clone(self.state.authority.clock());
        watch::serve(store, clock, spec, self.call.query.get("resourceVersion")).await
    }

    // --- Writes ---

    /// The body of a create or update: its type checked, its fields validated (warnings
    /// returned), placed in the URL's namespace.
    fn body_object(&self) -> ApiResult<(Object, Vec<String>)> {
        let body = self.call.object()?;
        self.check_type(&body)?;
        let warnings = self.validate_fields(&Value::Object(body.clone()))?;
        let mut object = Object(body);
        self.place_namespace(&mut object)?;
        Ok((object, warnings))
    }

    async fn create(&self) -> ApiResult<Response> {
        let dry_run = self.call.dry_run()?;
        let (mut object, warnings) = self.body_object()?;
        object.metadata_mut().remove("resourceVersion");
        let created = self.store_new(object, dry_run).await?;
        Ok(self.ok(StatusCode::CREATED, &created, &warnings))
    }

    /// Creates (or, dry run, checks the create of) an object the caller may write.
    async fn store_new(&self, object: Object, dry_run: bool) -> ApiResult<Object> {
        if let Err(denied) = crate::auth::confirm_no_escalation(self.state, &self.call.caller, &self.resource, &self.call.info.name, &object) {
            // kube's NamespaceLifecycle admission runs before the RBAC storage checks escalation.
            self.state.authority.admit_to_namespace(&self.resource, &object).await?;
            return Err(denied);
        }
        if dry_run { self.dry_create(object).await } else { Ok(self.state.authority.create(&self.resource, object).await?) }
    }

    /// What a create would store, without storing it: the checks the store and authority
    /// make (namespace exists, name free) and the fields they set (but no resourceVersion).
    async fn dry_create(&self, object: Object) -> ApiResult<Object> {
        let store = self.state.authority.store();
        if self.resource.namespaced && object.namespace().is_empty() {
            return Err(ApiError::bad_request("namespace is required"));
        }
        let mut object = self.state.authority.admit_create(&self.resource, object).await?;
        if !self.resource.namespaced {
            object.metadata_mut().remove("namespace");
        }
        match store.get(&self.resource, object.namespace(), object.name()).await {
            Ok(_) => return Err(Error::AlreadyExists { resource: self.resource.qualified(), name: object.name().to_owned() }.into()),
            Err(err) if not_found(&err) => {}
            Err(err) => return Err(err.into()),
        }
        for (field, value) in [("apiVersion", self.resource.api_version()), ("kind", self.resource.kind.to_owned())] {
            if object.value().get(field).and_then(Value::as_str).is_none_or(str::is_empty) {
                object.0.insert(field.into(), json!(value));
            }
        }
        object.set_meta("uid", tokenwarden_core::uuid_v4(tokenwarden_store::clock::random_bytes()));
        object.set_meta("creationTimestamp", self.state.authority.clock().now().to_string());
        Ok(object)
    }

    async fn update(&self) -> ApiResult<Response> {
        let dry_run = self.call.dry_run()?;
        let (object, warnings) = self.body_object()?;
        self.check_name_matches(&object)?;
        if self.def.create_on_update {
            match self.state.authority.store().get(&self.resource, &self.namespace, self.name()).await {
                Err(err) if not_found(&err) => return self.create_missing(object, dry_run, warnings).await,
                Err(err) => return Err(err.into()),
                Ok(_) => {}
            }
        }
        let updated = self.write(object, dry_run).await?;
        Ok(self.ok(StatusCode::OK, &updated, &warnings))
    }

    /// Stores an updated object, or (dry run) checks what the store would and returns it.
    async fn write(&self, mut object: Object, dry_run: bool) -> ApiResult<Object> {
        crate::auth::confirm_no_escalation(self.state, &self.call.caller, &self.resource, &self.call.info.name, &object)?;
        if !dry_run {
            return Ok(self.state.authority.update_part(&self.resource, object, self.part).await?);
        }
        let current = self.state.authority.store().get(&self.resource, &self.namespace, self.name()).await?;
        object = self.state.authority.admit_update(&self.resource, &current, object, self.part)?;
        if !self.resource.namespaced {
            object.metadata_mut().remove("namespace");
        }
        object.set_meta("uid", current.uid());
        object.set_meta("resourceVersion", current.resource_version());
        if let Some(created) = current.value().get("metadata").and_then(|m| m.get("creationTimestamp")) {
            object.set_meta("creationTimestamp", created.clone());
        }
        Ok(object)
    }

    async fn patch(&self) -> ApiResult<Response> {
        let media = self.call.headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("").to_owned();
        let patch_type = PatchType::from_media_type(&media).ok_or_else(|| patch::unsupported(&media))?;
        let dry_run = self.call.dry_run()?;
        let patch = body::decode(&self.call.headers, &self.call.body)?;
        if patch_type != PatchType::Json && !patch.is_object() {
            return Err(ApiError::bad_request("the body of a merge patch must be a JSON object"));
        }
        let checked = match patch_type {
            PatchType::Json => None,
            _ => Some(patch::strip_directives(&patch)),
        };
        let mut warnings = match &checked {
            Some(doc) => self.validate_fields(doc)?,
            None => Vec::new(),
        };
        let store = self.state.authority.store();
        let mut attempt = 0;
        loop {
            attempt += 1;
            let current = match store.get(&self.resource, &self.namespace, self.name()).await {
                Ok(current) => current,
                Err(err) if not_found(&err) && patch_type == PatchType::Apply && self.part == Part::Object => return self.apply_create(&patch, dry_run, warnings).await,
                Err(err) => return Err(err.into()),
            };
            let mut doc = current.clone().into_value();
            match patch_type {
                PatchType::Json => patch::json_patch(&mut doc, &patch)?,
                PatchType::Merge | PatchType::Apply => patch::merge(&mut doc, &patch),
                PatchType::Strategic => patch::strategic(&mut doc, &patch),
            }
            let Value::Object(map) = doc else {
                return Err(ApiError::bad_request("the patched object is not a JSON object"));
            };
            self.check_type(&map)?;
            if patch_type == PatchType::Json {
                warnings = self.validate_fields(&Value::Object(map.clone()))?;
            }
            let mut object = Object(map);
            if !self.resource.namespaced {
                object.metadata_mut().remove("namespace");
            }
            self.place_namespace(&mut object)?;
            self.check_name_matches(&object)?;
            // A patch that leaves resourceVersion alone is retried on a conflict; one that
            // sets it asked for optimistic concurrency.
            let unpinned = object.resource_version() == current.resource_version();
            match self.write(object, dry_run).await {
                Ok(patched) => return Ok(self.ok(StatusCode::OK, &patched, &warnings)),
                Err(err) if err.code == 409 && err.reason == "Conflict" && unpinned && attempt < PATCH_ATTEMPTS => {}
                Err(err) => return Err(err),
            }
        }
    }

    /// Server-side apply of an object that does not exist yet: a create.
    async fn apply_create(&self, patch: &Value, dry_run: bool, warnings: Vec<String>) -> ApiResult<Response> {
        let Value::Object(map) = patch::strip_directives(patch) else {
            return Err(ApiError::bad_request("the body of an apply patch must be an object"));
        };
        self.check_type(&map)?;
        let mut object = Object(map);
        if object.name().is_empty() {
            object.set_meta("name", self.name().to_owned());
        }
        self.check_name_matches(&object)?;
        self.place_namespace(&mut object)?;
        self.create_missing(object, dry_run, warnings).await
    }

    /// A write that found no object and may create it (an apply; a PUT of a kind that allows
    /// create on update): a create (201), which the caller must also be allowed, as
    /// kube-apiserver authorizes `create` there besides `patch` or `update`.
    async fn create_missing(&self, mut object: Object, dry_run: bool, warnings: Vec<String>) -> ApiResult<Response> {
        object.metadata_mut().remove("resourceVersion");
        // kube's order for a create by update: mutating admission (the namespace must exist),
        // the RBAC storage's escalation check (run as it builds the object), validation (its
        // registry's BeforeCreate), and only then the create's authorization. So a bad object
        // is a 422 even to a caller who may not create it. (`store_new` checks again.)
        self.state.authority.admit_to_namespace(&self.resource, &object).await?;
        crate::auth::confirm_no_escalation(self.state, &self.call.caller, &self.resource, &self.call.info.name, &object)?;
        self.state.authority.admit_create(&self.resource, object.clone()).await?;
        let create = Request {
            verb: "create",
            is_resource: true,
            namespace: &self.namespace,
            api_group: self.resource.group,
            resource: self.resource.plural,
            name: self.name(),
            ..Request::default()
        };
        if let Err(denial) = self.state.authority.index().authorize(&self.call.caller.user, &create) {
            // kube's message for this refusal is RBAC's reason alone (empty: it ends at the colon).
            return Err(ApiError::forbidden(Some((self.resource.group, self.resource.plural)), self.name(), &denial));
        }
        let created = self.store_new(object, dry_run).await?;
        Ok(self.ok(StatusCode::CREATED, &created, &warnings))
    }

    /// The `DeleteOptions` body (empty body: none) and whether it asks for a dry run.
    fn delete_options(&self) -> ApiResult<(Preconditions, bool)> {
        let mut dry_run = self.call.dry_run()?;
        if self.call.body.iter().all(u8::is_ascii_whitespace) {
            return Ok((Preconditions::default(), dry_run));
        }
        let options = body::decode(&self.call.headers, &self.call.body)?;
        let text = |v: Option<&Value>| v.and_then(Value::as_str).filter(|s| !s.is_empty()).map(str::to_owned);
        let preconditions = options.get("preconditions");
        let preconditions = Preconditions {
            uid: text(preconditions.and_then(|p| p.get("uid"))),
            resource_version: text(preconditions.and_then(|p| p.get("resourceVersion"))),
        };
        if let Some(values) = options.get("dryRun").and_then(Value::as_array) {
            for value in values {
                match value.as_str() {
                    Some("All") => dry_run = true,
                    other => {
                        return Err(ApiError::new(
                            422,
                            "Invalid",
                            format!("dryRun: Unsupported value: {}: supported values: \"All\"", go_quote(other.unwrap_or(""))),
                        ));
                    }
                }
            }
        }
        Ok((preconditions, dry_run))
    }

    async fn delete(&self) -> ApiResult<Response> {
        let (preconditions, dry_run) = self.delete_options()?;
        let deleted = if dry_run {
            let object = self.state.authority.store().get(&self.resource, &self.namespace, self.name()).await?;
            check_preconditions(&self.resource, &object, &preconditions)?;
            tokenwarden_store::namespaces::admit_delete(&self.resource, &object)?;
            object
        } else {
            self.state.authority.delete(&self.resource, &self.namespace, self.name(), &preconditions).await?
        };
        // kube-apiserver answers with the deleted object only for the kinds whose storage sets
        // `ReturnDeletedObject`; the others get a Status, so a caller who may delete a Secret
        // (or dry-run its delete) cannot read it that way.
        if [Resource::SERVICE_ACCOUNTS, Resource::PODS, Resource::NAMESPACES].contains(&self.resource) {
            return Ok(self.ok(StatusCode::OK, &deleted, &[]));
        }
        let mut details = json!({"name": deleted.name(), "kind": self.resource.plural, "uid": deleted.uid()});
        if !self.resource.group.is_empty() {
            details["group"] = json!(self.resource.group);
        }
        let status = json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success", "details": details});
        Ok(body::json(StatusCode::OK, &status, self.pretty()))
    }

    /// Deletes every object the selectors match; answers the list of deleted objects.
    async fn delete_collection(&self) -> ApiResult<Response> {
        // The selectors first, as kube reads its list options before the DeleteOptions body.
        let options = ListOptions {
            namespace: self.list_namespace(),
            label_selector: self.label_selector()?,
            field_selector: self.field_selector()?,
            ..ListOptions::default()
        };
        let (_, dry_run) = self.delete_options()?;
        let list = self.state.authority.store().list(&self.resource, &options).await?;
        let mut deleted = Vec::new();
        for object in list.items {
            if dry_run {
                deleted.push(object.into_value());
                continue;
            }
            match self.state.authority.delete(&self.resource, object.namespace(), object.name(), &Preconditions::default()).await {
                Ok(gone) => deleted.push(gone.into_value()),
                Err(err) if not_found(&err) => {}
                Err(err) => return Err(err.into()),
            }
        }
        let revision = self.state.authority.store().current_revision().await?;
        let document = json!({
            "kind": format!("{}List", self.resource.kind),
            "apiVersion": self.resource.api_version(),
            "metadata": {"resourceVersion": revision.to_string()},
            "items": deleted,
        });
        Ok(body::json(StatusCode::OK, &document, self.pretty()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn watches_without_a_timeout_end_within_30_to_60_minutes() {
        assert_eq!(watch_seconds(5, 0), 5);
        assert_eq!(watch_seconds(u64::MAX, 0), MAX_WATCH_SECONDS);
        assert_eq!(watch_seconds(0, 0), 1800);
        assert!((0..=u16::MAX).step_by(97).all(|r| (1800..3600).contains(&watch_seconds(0, r))));
    }

}
