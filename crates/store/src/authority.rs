//! The token authority: a store, the index fed from its change feed, the key set and the
//! review cache, with the write rules Kubernetes' controllers apply (default ServiceAccounts,
//! legacy token Secrets, namespace deletion) and the TokenRequest and TokenReview operations.

use std::collections::HashSet;
use std::sync::{Arc, Mutex, PoisonError, RwLock};

use tokenwarden_core::keys::{Algorithm, KeySet};
use tokenwarden_core::object::{SERVICE_ACCOUNT_NAME_ANNOTATION, SERVICE_ACCOUNT_TOKEN_SECRET_TYPE, SERVICE_ACCOUNT_UID_ANNOTATION};
use tokenwarden_core::review::{self, ReviewError, VerifiedToken};
use tokenwarden_core::token_request::{self, IssuedToken, IssuerConfig, TokenRequestInput};
use tokenwarden_core::legacy_tokens::LAST_USED_LABEL;
use tokenwarden_core::error::go_quote;
use tokenwarden_core::{Error, FieldError, Object, Resource, Timestamp, pod};
use tokenwarden_core::lookup::ObjectLookup as _;

use crate::clock::{Clock, random_bytes};
use crate::index::Index;
use crate::review_cache::ReviewCache;
use crate::{ListOptions, Preconditions, Revision, Store, StoreError};

pub use crate::write::{NAMESPACE_ACTIVE, NAMESPACE_TERMINATING, check_preconditions};

/// Verified tokens the review cache holds at most.
pub const REVIEW_CACHE_CAPACITY: u64 = 1_000_000;

/// How deeply objects and arrays may nest in a stored object, the object itself being the
/// first level. serde_json reads 127 levels; a list holds its objects two levels down, so
/// this is what a list of stored objects can nest and still be read back, by the stores and
/// by a follower (`authorize` against this server). A JSON patch could otherwise build an
/// object that is written and then fails every read, list and delete.
pub const MAX_OBJECT_DEPTH: usize = 125;

/// How deeply objects and arrays nest in `value` (a scalar: 0), without recursing.
pub fn nesting_depth(value: &serde_json::Value) -> usize {
    let mut deepest = 0;
    let mut pending = vec![(value, 1)];
    while let Some((value, level)) = pending.pop() {
        match value {
            serde_json::Value::Object(map) => pending.extend(map.values().map(|child| (child, level + 1))),
            serde_json::Value::Array(items) => pending.extend(items.iter().map(|child| (child, level + 1))),
            _ => continue,
        }
        deepest = deepest.max(level);
    }
    deepest
}

/// Attempts of an update that did not pin a resourceVersion, retried on a conflict as
/// kube-apiserver's `GuaranteedUpdate` does.
pub(crate) const UPDATE_ATTEMPTS: usize = 5;

/// What an update writes (kube-apiserver's strategies for a CRD with `subresources.status`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Part {
    /// The object (`PUT .../NAME`): a kind with a status subresource keeps its stored status.
    Object,
    /// Only the status (`PUT .../NAME/status`): everything else is kept as stored.
    Status,
}

impl Part {
    /// `object` as it may be stored over `current`. The sent resourceVersion and uid stay: they
    /// are the write's preconditions.
    pub fn apply(self, resource: &Resource, current: &Object, mut object: Object) -> Object {
        let keep_status = |target: &mut Object, source: &Object| match source.0.get("status") {
            Some(status) => {
                target.0.insert("status".into(), status.clone());
            }
            None => {
                target.0.remove("status");
            }
        };
        match self {
            Self::Object if resource.has_status_subresource() => {
                keep_status(&mut object, current);
                object
            }
            Self::Object => object,
            Self::Status => {
                let mut merged = current.clone();
                keep_status(&mut merged, &object);
                for field in ["resourceVersion", "uid"] {
                    match object.value().get("metadata").and_then(|m| m.get(field)) {
                        Some(value) => merged.set_meta(field, value.clone()),
                        None => {
                            merged.metadata_mut().remove(field);
                        }
                    }
                }
                merged
            }
        }
    }
}

/// A successful review.
#[derive(Clone, Debug)]
pub struct Reviewed {
    /// The verified token; `token.user()` is `status.user`.
    pub token: Arc<VerifiedToken>,
    /// `status.audiences`.
    pub audiences: Vec<String>,
}

/// A TokenReview's answer.
pub struct Review {
    pub result: Result<Reviewed, ReviewError>,
    /// The signature check was skipped: the review cache held the token's verification, or
    /// its refusal.
    pub cached: bool,
}

pub struct Authority {
    store: Arc<dyn Store>,
    index: Arc<Index>,
    keys: RwLock<Arc<KeySet>>,
    config: IssuerConfig,
    cache: ReviewCache,
    clock: Arc<dyn Clock>,
    /// PEM of the CA written into legacy token Secrets as `ca.crt`, if any.
    ca_pem: Option<String>,
    /// Legacy token Secrets whose last-used label is being written.
    tracking: Arc<Mutex<HashSet<(String, String)>>>,
    follower: tokio::task::JoinHandle<()>,
}

impl Drop for Authority {
    fn drop(&mut self) {
        self.follower.abort();
    }
}

fn revision_of(object: &Object) -> Revision {
    object.resource_version().parse().unwrap_or(0)
}

impl Authority {
    /// Loads the index from the store and follows its change feed.
    pub async fn start(
        store: Arc<dyn Store>,
        keys: KeySet,
        config: IssuerConfig,
        clock: Arc<dyn Clock>,
        ca_pem: Option<String>,
    ) -> Result<Arc<Self>, StoreError> {
        let index = Arc::new(Index::new());
        let revision = load_index(&*store, &index).await?;
        let follower = tokio::spawn(follow(Arc::clone(&store), Arc::clone(&index), revision));
        Ok(Arc::new(Self {
            store,
            index,
            keys: RwLock::new(Arc::new(keys)),
            config,
            cache: ReviewCache::new(REVIEW_CACHE_CAPACITY),
            clock,
            ca_pem,
            tracking: Arc::default(),
            follower,
        }))
    }

    pub fn store(&self) -> &Arc<dyn Store> {
        &self.store
    }

    pub fn index(&self) -> &Arc<Index> {
        &self.index
    }

    pub fn config(&self) -> &IssuerConfig {
        &self.config
    }

    pub fn clock(&self) -> &Arc<dyn Clock> {
        &self.clock
    }

    pub fn keys(&self) -> Arc<KeySet> {
        Arc::clone(&self.keys.read().unwrap_or_else(std::sync::PoisonError::into_inner))
    }

    /// Swaps in a new key set (after a rotation) and drops every cached verification.
    pub fn set_keys(&self, keys: KeySet) {
        *self.keys.write().unwrap_or_else(std::sync::PoisonError::into_inner) = Arc::new(keys);
        self.cache.clear();
    }

    pub fn review_cache(&self) -> &ReviewCache {
        &self.cache
    }

    /// Returns a written object once the index has it (read-your-writes for reviews), or
    /// after a bounded wait if the index follower lags: the write is durable either way.
    async fn settled(&self, object: Object) -> Object {
        let revision = revision_of(&object);
        if tokio::time::timeout(std::time::Duration::from_secs(10), self.index.wait_for(revision)).await.is_err() {
            tracing::warn!(revision, "index follower lagging; answering the write without waiting");
        }
        object
    }

    /// Creates an object, applying what Kubernetes' admission and controllers add: the
    /// namespace must exist; a new namespace gets its `default` ServiceAccount; a
    /// `kubernetes.io/service-account-token` Secret gets its legacy token.
    pub async fn create(&self, resource: &Resource, object: Object) -> Result<Object, StoreError> {
        let mut object = self.admit_create(resource, object).await?;
        if *resource == Resource::SECRETS && object.secret_type() == SERVICE_ACCOUNT_TOKEN_SECRET_TYPE {
            self.fill_legacy_token(&mut object)?;
        }
        let created = self.store.create(resource, object).await?;
        if *resource == Resource::NAMESPACES
            && let Some(sa) = self.ensure_default_service_account(created.name()).await?
        {
            self.settled(sa).await;
        }
        Ok(self.settled(created).await)
    }

    /// kube's serviceaccounts controller: a namespace has a `default` ServiceAccount (made
    /// with the namespace, made again when deleted). Pods run as it unless they name another.
    /// The one made, if it was missing.
    pub(crate) async fn ensure_default_service_account(&self, namespace: &str) -> Result<Option<Object>, StoreError> {
        let Some(sa) = Object::from_value(serde_json::json!({"metadata": {"name": "default", "namespace": namespace}})) else {
            return Ok(None);
        };
        match self.store.create(&Resource::SERVICE_ACCOUNTS, sa).await {
            Ok(sa) => Ok(Some(sa)),
            Err(StoreError::Api(Error::AlreadyExists { .. })) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Admission of a create, without writing (a dry run stops here): the namespace must
    /// exist, `stringData` is folded into `data`, a status written only through its
    /// subresource is dropped, and the kind's own checks pass.
    pub async fn admit_create(&self, resource: &Resource, mut object: Object) -> Result<Object, StoreError> {
        // kube's BeforeCreate: only a delete marks an object as being deleted.
        for field in ["deletionTimestamp", "deletionGracePeriodSeconds"] {
            object.metadata_mut().remove(field);
        }
        fold_string_data(resource, &mut object);
        tokenwarden_core::rbac::default_fields(resource, &mut object);
        if resource.has_status_subresource() {
            object.0.remove("status");
        }
        if *resource == Resource::NAMESPACES {
            object.0.insert("status".into(), serde_json::json!({"phase": NAMESPACE_ACTIVE}));
        }
        if *resource == Resource::PODS {
            pod::decode_and_default(&mut object)?;
        }
        // Checked again inside the write; here for a dry run, which stops before it.
        self.admit_to_namespace(resource, &object).await?;
        if *resource == Resource::PODS {
            self.admit_pod(&mut object).await?;
        }
        // kube's defaulting labels a namespace by the name it was sent with (a generated one
        // only after validation, below).
        if *resource == Resource::NAMESPACES && !object.name().is_empty() {
            crate::namespaces::canonicalize(&mut object);
        }
        // kube's registry names the object of a generateName after admission and before
        // validation, which checks the prefix and the name made of it.
        if object.name().is_empty() {
            let generated = object.str_at("metadata.generateName").filter(|base| !base.is_empty()).map(crate::write::generated_name);
            if let Some(name) = generated {
                object.set_meta("name", name);
            }
        }
        if *resource == Resource::PODS {
            // kube's PodStrategy.PrepareForCreate, then ValidatePodCreate: the name's errors
            // and the spec's in one 422.
            pod::drop_disabled_fields(&mut object, None);
            pod::validate_create(&object)?;
        } else {
            tokenwarden_core::names::validate_new(resource, &object)?;
        }
        validate(resource, &object)?;
        if *resource == Resource::NAMESPACES {
            crate::namespaces::canonicalize(&mut object);
        }
        Ok(object)
    }

    /// kube's NamespaceLifecycle admission of a create of a namespaced `object`: its namespace
    /// exists and is not being deleted.
    pub async fn admit_to_namespace(&self, resource: &Resource, object: &Object) -> Result<(), StoreError> {
        if resource.namespaced && !object.namespace().is_empty() {
            let namespace = self.get_if_found(&Resource::NAMESPACES, "", object.namespace()).await?;
            crate::write::admit_to_namespace(resource, object, namespace.as_ref())?;
        }
        Ok(())
    }

    /// The stored object, or `None` where there is none.
    pub(crate) async fn get_if_found(&self, resource: &Resource, namespace: &str, name: &str) -> Result<Option<Object>, StoreError> {
        match self.store.get(resource, namespace, name).await {
            Ok(object) => Ok(Some(object)),
            Err(StoreError::Api(Error::NotFound { .. })) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// The ServiceAccount admission plugin, the scheduling ones, then the status a new pod
    /// starts with.
    async fn admit_pod(&self, pod: &mut Object) -> Result<(), StoreError> {
        if let Some(name) = pod::service_account_to_admit(pod)? {
            let service_account = self.get_if_found(&Resource::SERVICE_ACCOUNTS, pod.namespace(), &name).await?;
            pod::admit_service_account(pod, &name, service_account.as_ref(), crate::write::generated_name)?;
        }
        pod::admit_scheduling(pod, None)?;
        let status = pod::initial_status(pod, self.clock.now());
        pod.0.insert("status".into(), status);
        Ok(())
    }

    /// Admission of an update of `part` of `current`, without writing: the object to store.
    pub fn admit_update(&self, resource: &Resource, current: &Object, object: Object, part: Part) -> Result<Object, StoreError> {
        crate::write::check_sent_version(resource, current, &object)?;
        let mut object = part.apply(resource, current, object);
        if *resource == Resource::PODS && part == Part::Object {
            pod::decode_and_default(&mut object)?;
            pod::admit_scheduling(&mut object, Some(current))?;
            pod::drop_disabled_fields(&mut object, Some(current));
        }
        keep_deletion_timestamp(resource, current, &mut object)?;
        if *resource == Resource::NAMESPACES {
            crate::namespaces::canonicalize(&mut object);
        }
        // On the object only: a status write carries the stored metadata, which it cannot fix.
        let mut meta_errors = if part == Part::Object { tokenwarden_core::names::labels_and_annotations_errors(&object) } else { Vec::new() };
        if !meta_errors.is_empty() {
            // kube's ValidatePodUpdate answers the metadata's errors and the spec's in one 422.
            if *resource == Resource::PODS
                && let Err(Error::Invalid { causes, .. }) = pod::check_spec_update(current, &object)
            {
                meta_errors.extend(causes);
                meta_errors.truncate(tokenwarden_core::error::MAX_ERRORS);
            }
            return Err(Error::Invalid { kind: resource.kind.to_owned(), group: resource.group.to_owned(), name: object.name().to_owned(), causes: meta_errors }.into());
        }
        fold_string_data(resource, &mut object);
        tokenwarden_core::rbac::default_fields(resource, &mut object);
        validate(resource, &object)?;
        tokenwarden_core::rbac::validate_update(resource, current, &object)?;
        match (*resource, part) {
            (Resource::NAMESPACES, Part::Status) => crate::namespaces::check_phase(&mut object)?,
            (Resource::PODS, Part::Object) => pod::check_spec_update(current, &object)?,
            (Resource::PODS, Part::Status) => pod::check_status_update(current, &mut object)?,
            _ => {}
        }
        Ok(object)
    }

    /// The tokens controller's work, done at creation: the ServiceAccount's uid annotation and
    /// `data.token`, `data.namespace` (and `data.ca.crt`).
    fn fill_legacy_token(&self, secret: &mut Object) -> Result<(), StoreError> {
        let Some(sa_name) = secret.annotation(SERVICE_ACCOUNT_NAME_ANNOTATION).map(str::to_owned) else {
            return Err(Error::Invalid {
                kind: "Secret".into(),
                group: String::new(),
                name: secret.name().to_owned(),
                causes: vec![FieldError::required(&format!("metadata.annotations[{SERVICE_ACCOUNT_NAME_ANNOTATION}]"), "")],
            }
            .into());
        };
        let namespace = secret.namespace().to_owned();
        let sa = self.index.service_account(&namespace, &sa_name).ok_or_else(|| Error::not_found("serviceaccounts", &sa_name))?;
        let token = token_request::legacy_token(&self.keys(), &namespace, &sa_name, &sa.uid, secret.name())?;
        secret.set_annotation(SERVICE_ACCOUNT_UID_ANNOTATION, &sa.uid);
        secret.set_secret_data("token", token.as_bytes());
        secret.set_secret_data("namespace", namespace.as_bytes());
        if let Some(ca) = &self.ca_pem {
            secret.set_secret_data("ca.crt", ca.as_bytes());
        }
        Ok(())
    }

    /// What a fresh cluster has: namespaces `default` and `kube-system` (each with its
    /// `default` ServiceAccount) and the bootstrap RBAC policy. Objects that exist are left
    /// as they are, so a restart keeps a user's edits.
    pub async fn bootstrap(self: &Arc<Self>) -> Result<(), StoreError> {
        self.settle_namespaces_soon();
        let namespaces = ["default", "kube-system"].into_iter().filter_map(|name| Object::from_value(serde_json::json!({"metadata": {"name": name}})));
        self.create_missing(namespaces.map(|namespace| (Resource::NAMESPACES, namespace))).await?;
        self.record_tracking_start().await?;
        self.bootstrap_policy().await
    }

    /// The bootstrap RBAC policy (`cluster-admin` for `system:masters`, `system:basic-user`,
    /// `system:discovery`, ...), where missing.
    pub async fn bootstrap_policy(&self) -> Result<(), StoreError> {
        self.create_missing(tokenwarden_core::rbac::bootstrap_policy()).await
    }

    async fn create_missing(&self, objects: impl IntoIterator<Item = (Resource, Object)>) -> Result<(), StoreError> {
        for (resource, object) in objects {
            match self.create(&resource, object).await {
                Ok(_) | Err(StoreError::Api(Error::AlreadyExists { .. })) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    /// Replaces an object (for a kind with a status subresource, all but its status).
    pub async fn update(&self, resource: &Resource, object: Object) -> Result<Object, StoreError> {
        self.update_part(resource, object, Part::Object).await
    }

    /// Replaces an object's status, and nothing else.
    pub async fn update_status(&self, resource: &Resource, object: Object) -> Result<Object, StoreError> {
        self.update_part(resource, object, Part::Status).await
    }

    /// Writes `part` of the stored object. Without a resourceVersion the write is applied to
    /// the current version and retried if that changes meanwhile, so the part it keeps is
    /// never an older copy.
    pub async fn update_part(&self, resource: &Resource, object: Object, part: Part) -> Result<Object, StoreError> {
        let namespace = if resource.namespaced { object.namespace().to_owned() } else { String::new() };
        let pinned = !object.resource_version().is_empty();
        let mut attempt = 0;
        loop {
            attempt += 1;
            let current = self.store.get(resource, &namespace, object.name()).await?;
            let mut next = self.admit_update(resource, &current, object.clone(), part)?;
            if !pinned {
                next.set_meta("resourceVersion", current.resource_version());
            }
            match self.store.update(resource, next).await {
                Err(StoreError::Api(Error::Conflict { .. })) if !pinned && attempt < UPDATE_ATTEMPTS => {}
                result => return Ok(self.settled(result?).await),
            }
        }
    }

    /// Deletes an object; deleting a namespace first deletes everything in it, so every token
    /// of its ServiceAccounts stops reviewing at once.
    pub async fn delete(&self, resource: &Resource, namespace: &str, name: &str, preconditions: &Preconditions) -> Result<Object, StoreError> {
        let deleted = if *resource == Resource::NAMESPACES {
            self.delete_namespace(name, preconditions).await?
        } else {
            self.store.delete(resource, namespace, name, preconditions).await?
        };
        if *resource == Resource::SERVICE_ACCOUNTS && name == "default" {
            match self.ensure_default_service_account(namespace).await {
                Ok(Some(sa)) => {
                    self.settled(sa).await;
                }
                // The namespace is gone or going: nothing to make again.
                Ok(None) | Err(StoreError::Api(Error::NotFound { .. } | Error::Forbidden { .. })) => {}
                Err(e) => tracing::warn!(namespace, error = %e, "making the default ServiceAccount again failed; the leader's next namespace sweep does it"),
            }
        }
        Ok(self.settled(deleted).await)
    }

    /// TokenRequest: validates, binds and signs. An RSA signature (≈0.3 ms) runs on the
    /// blocking pool, off the async threads; an ES256 one costs less than that hand-off.
    pub async fn request_token(self: &Arc<Self>, input: TokenRequestInput) -> Result<IssuedToken, StoreError> {
        let now = self.clock.now();
        let random: [u8; 16] = random_bytes();
        let keys = self.keys();
        if keys.signing().algorithm() == Algorithm::Es256 {
            return token_request::issue(input, &self.config, &keys, &*self.index, now, random).map_err(StoreError::from);
        }
        let this = Arc::clone(self);
        tokio::task::spawn_blocking(move || token_request::issue(input, &this.config, &keys, &*this.index, now, random))
            .await
            .map_err(|e| StoreError::Backend(format!("token signer stopped: {e}")))?
            .map_err(StoreError::from)
    }

    /// TokenReview for `token` and the requested `audiences` (empty: the API audiences).
    pub fn review(&self, token: &str, audiences: &[String]) -> Review {
        let now = self.clock.now();
        // The keys are read inside `verify`: only on a miss (a hit writes no shared reference
        // count), and after the cache took its generation, so that a verification that
        // straddles a key-set change is not kept.
        let (verified, cached) = self.cache.get_or_verify(token, audiences, now, || review::verify(token, &self.keys(), &self.config));
        Review { result: verified.and_then(|verified| self.authenticated(verified, audiences, now)), cached }
    }

    /// The half of a review that runs every time: audiences, time and live objects.
    fn authenticated(&self, verified: Arc<VerifiedToken>, audiences: &[String], now: Timestamp) -> Result<Reviewed, ReviewError> {
        let authenticated = review::authenticate(&verified, audiences, &self.config, &*self.index, now);
        // A token refused because its Secret is marked invalid was still used: kube-apiserver
        // records it, so the Secret is not deleted under clients that still present it.
        if let (Some((namespace, name)), Ok(_) | Err(ReviewError::MarkedInvalid(_))) = (verified.legacy_secret(), &authenticated) {
            self.track_legacy_use(namespace, name, now);
        }
        Ok(Reviewed { token: verified, audiences: authenticated? })
    }

    /// kube-apiserver's legacy token tracking: the Secret of a legacy token that authenticated
    /// (or was refused only for being marked invalid) is labelled with today's date (`kubernetes.io/legacy-token-last-used`), at most one
    /// write a day, off the review path. A failed write is retried on the next use.
    fn track_legacy_use(&self, namespace: &str, name: &str, now: Timestamp) {
        let today = now.date();
        if self.index.secret(namespace, name).is_none_or(|s| s.legacy_token_last_used.as_deref() == Some(today.as_str())) {
            return;
        }
        let key = (namespace.to_owned(), name.to_owned());
        let Ok(runtime) = tokio::runtime::Handle::try_current() else { return };
        if !self.tracking.lock().unwrap_or_else(PoisonError::into_inner).insert(key.clone()) {
            return;
        }
        let (store, tracking) = (Arc::clone(&self.store), Arc::clone(&self.tracking));
        runtime.spawn(async move {
            let (namespace, name) = &key;
            let written = async {
                let mut secret = store.get(&Resource::SECRETS, namespace, name).await?;
                if secret.label(LAST_USED_LABEL) != Some(today.as_str()) {
                    secret.set_label(LAST_USED_LABEL, &today);
                    store.update(&Resource::SECRETS, secret).await?;
                }
                Ok::<_, StoreError>(())
            };
            if let Err(e) = written.await {
                tracing::debug!(error = %e, secret = %format!("{namespace}/{name}"), "recording a legacy token's use failed; the next use retries");
            }
            tracking.lock().unwrap_or_else(PoisonError::into_inner).remove(&key);
        });
    }
}

/// A Secret's `stringData` is written into `data` (base64) and never stored, as
/// kube-apiserver does.
fn fold_string_data(resource: &Resource, object: &mut Object) {
    if *resource != Resource::SECRETS {
        return;
    }
    if let Some(serde_json::Value::Object(strings)) = object.0.remove("stringData") {
        for (key, value) in strings {
            if let Some(text) = value.as_str() {
                object.set_secret_data(&key, text.as_bytes());
            }
        }
    }
}

/// Admission checks of the stored kinds: an object the store can read back; an AuthConfig must
/// be one the authorizer can run.
fn validate(resource: &Resource, object: &Object) -> Result<(), StoreError> {
    check_depth(resource, object)?;
    if *resource == Resource::AUTH_CONFIGS {
        tokenwarden_core::authconfig::AuthConfig::parse(&serde_json::Value::Object(object.value().clone()))?;
    }
    tokenwarden_core::rbac::validate(resource, object)?;
    Ok(())
}

pub(crate) fn invalid(resource: &Resource, object: &Object, cause: FieldError) -> StoreError {
    Error::Invalid { kind: resource.kind.to_owned(), group: resource.group.to_owned(), name: object.name().to_owned(), causes: vec![cause] }.into()
}

/// kube's `BeforeUpdate` and `ValidateObjectMetaUpdate`: an update keeps the deletionTimestamp
/// the object has, and cannot give it one (only a delete does).
fn keep_deletion_timestamp(resource: &Resource, current: &Object, object: &mut Object) -> Result<(), StoreError> {
    match current.str_at("metadata.deletionTimestamp") {
        Some(stamp) => object.set_meta("deletionTimestamp", stamp.to_owned()),
        None => {
            if let Some(sent) = object.str_at("metadata.deletionTimestamp") {
                // Go prints a metav1.Time by its String(): `2006-01-02 15:04:05 +0000 UTC`.
                let shown = Timestamp::parse_rfc3339(sent).map_or_else(|| go_quote(sent), |t| t.to_string().replacen('T', " ", 1).replacen('Z', " +0000 UTC", 1));
                return Err(invalid(resource, object, FieldError::invalid("metadata.deletionTimestamp", shown, "field is immutable")));
            }
        }
    }
    Ok(())
}

/// An object nested deeper than [`MAX_OBJECT_DEPTH`] is 422 Invalid, naming the top-level field.
/// kube-apiserver has no such limit (Go decodes 10,000 levels); ours is what the store reads
/// back, so refusing it is refusing an object that cannot be stored.
fn check_depth(resource: &Resource, object: &Object) -> Result<(), StoreError> {
    let Some(field) = object.0.iter().find(|(_, value)| 1 + nesting_depth(value) > MAX_OBJECT_DEPTH).map(|(field, _)| field) else {
        return Ok(());
    };
    let cause = FieldError {
        field: field.clone(),
        reason: "FieldValueForbidden",
        message: format!("Forbidden: objects and arrays may nest at most {MAX_OBJECT_DEPTH} levels deep, the object included"),
    };
    Err(invalid(resource, object, cause))
}

/// Lists every indexed resource into the index; returns the revision it reflects.
async fn load_index(store: &dyn Store, index: &Index) -> Result<Revision, StoreError> {
    // The revision first: events after it are replayed, so nothing listed can be missed.
    let revision = store.current_revision().await?;
    let mut tables = Vec::new();
    let indexed = [Resource::SERVICE_ACCOUNTS, Resource::PODS, Resource::SECRETS, Resource::NODES, Resource::NAMESPACES].into_iter().chain(Resource::RBAC);
    for resource in indexed {
        tables.push((resource, store.list(&resource, &ListOptions::default()).await?.items));
    }
    index.reset(&tables, revision);
    Ok(revision)
}

/// Applies the change feed to the index forever; re-lists when the feed says Gone.
async fn follow(store: Arc<dyn Store>, index: Arc<Index>, mut revision: Revision) {
    loop {
        match crate::feed::watch(Arc::clone(&store), revision).await {
            Ok(mut events) => {
                while let Some(event) = events.next().await {
                    match event {
                        Ok(event) => {
                            index.apply(&event);
                            revision = event.revision;
                        }
                        Err(_) => break,
                    }
                }
            }
            Err(e) => tracing::warn!(error = %e, "index follower: watch failed; re-listing"),
        }
        match load_index(&*store, &index).await {
            Ok(listed) => revision = listed,
            Err(e) => {
                tracing::error!(error = %e, "index follower: re-list failed; retrying");
                tokio::time::sleep(std::time::Duration::from_millis(200)).await;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn objects_nest_no_deeper_than_the_store_reads_back() {
        assert_eq!((nesting_depth(&json!(1)), nesting_depth(&json!({})), nesting_depth(&json!({"a": [1, {"b": []}], "c": {}}))), (0, 1, 4));
        let object = |depth: usize| {
            let deep = (0..depth).fold(json!("leaf"), |inner, _| json!([inner]));
            Object::from_value(json!({"metadata": {"name": "bot"}, "deep": deep})).unwrap()
        };
        assert!(validate(&Resource::SERVICE_ACCOUNTS, &object(MAX_OBJECT_DEPTH - 1)).is_ok());
        let err = validate(&Resource::SERVICE_ACCOUNTS, &object(MAX_OBJECT_DEPTH)).unwrap_err();
        assert_eq!(
            err.to_string(),
            r#"ServiceAccount "bot" is invalid: deep: Forbidden: objects and arrays may nest at most 125 levels deep, the object included"#
        );
    }
}
