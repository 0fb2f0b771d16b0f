//! A namespace's life as kube runs it: NamespaceLifecycle admission (some namespaces never go;
//! nothing new lands in one being deleted), the delete (Terminating first, then everything in
//! it, then the namespace), and the namespace controller's resync, which finishes deletes a
//! replica left half way.

use std::sync::Arc;
use std::time::Duration;

use tokenwarden_core::error::go_quote;
use tokenwarden_core::lookup::ObjectLookup as _;
use tokenwarden_core::{Error, FieldError, Object, Resource};

use crate::authority::{Authority, UPDATE_ATTEMPTS, invalid};
use crate::write::{NAMESPACE_ACTIVE, NAMESPACE_TERMINATING, check_preconditions};
use crate::{ListOptions, Preconditions, Store, StoreError};

/// kube-controller-manager's default `--namespace-sync-period`: how often the leader looks for
/// namespace deletes left half way.
pub const SYNC_PERIOD: Duration = Duration::from_secs(300);

/// Namespaces kube's NamespaceLifecycle admission never lets go.
const IMMORTAL: [&str; 3] = ["default", "kube-system", "kube-public"];

/// The label kube gives every namespace: its name.
const NAME_LABEL: &str = "kubernetes.io/metadata.name";

/// kube's name label, which its defaulting sets as a namespace is decoded (when the name is
/// known) and `namespaceStrategy.Canonicalize` again after validation, on every create and
/// update: the label holds the namespace's name, whatever was sent.
pub(crate) fn canonicalize(namespace: &mut Object) {
    let name = namespace.name().to_owned();
    namespace.set_label(NAME_LABEL, &name);
}

/// Sets `status.phase`, keeping the rest of the status.
fn set_phase(namespace: &mut Object, phase: &str) {
    match namespace.0.get_mut("status") {
        Some(serde_json::Value::Object(status)) => {
            status.insert("phase".into(), phase.into());
        }
        _ => {
            namespace.0.insert("status".into(), serde_json::json!({"phase": phase}));
        }
    }
}

/// kube's NamespaceLifecycle admission of a delete, after the object was read and the
/// preconditions held: some namespaces never go.
pub fn admit_delete(resource: &Resource, object: &Object) -> Result<(), StoreError> {
    if *resource == Resource::NAMESPACES && IMMORTAL.contains(&object.name()) {
        return Err(Error::Forbidden {
            resource: resource.qualified(),
            name: object.name().to_owned(),
            detail: "this namespace may not be deleted".to_owned(),
            causes: Vec::new(),
        }
        .into());
    }
    Ok(())
}

/// kube's `ValidateNamespaceStatusUpdate`: Active while the namespace is not being deleted,
/// Terminating once it is (a status write cannot stop a delete, nor fake one).
pub(crate) fn check_phase(namespace: &mut Object) -> Result<(), StoreError> {
    // kube's SetDefaults_NamespaceStatus first: no phase is Active.
    if namespace.str_at("status.phase").is_none_or(str::is_empty) {
        set_phase(namespace, NAMESPACE_ACTIVE);
    }
    let phase = namespace.str_at("status.phase").unwrap_or_default();
    let (wanted, detail) = match namespace.str_at("metadata.deletionTimestamp") {
        None => (NAMESPACE_ACTIVE, "may only be 'Active' if `deletionTimestamp` is empty"),
        Some(_) => (NAMESPACE_TERMINATING, "may only be 'Terminating' if `deletionTimestamp` is not empty"),
    };
    if phase == wanted {
        return Ok(());
    }
    Err(invalid(&Resource::NAMESPACES, namespace, FieldError::invalid("status.Phase", go_quote(phase), detail)))
}

impl Authority {
    /// kube's namespace deletion, done in the request: Terminating first, so that from this
    /// write on no create lands in it on any replica (a create reads its namespace in its own
    /// transaction), then its contents, then the namespace. The emptying goes on if the caller
    /// goes away; one that stopped (the process ended, the store failed) is finished by the
    /// next start or the leader's next [`sweep`].
    pub(crate) async fn delete_namespace(&self, name: &str, preconditions: &Preconditions) -> Result<Object, StoreError> {
        let resource = &Resource::NAMESPACES;
        // kube's GuaranteedUpdate: the preconditions are checked against each version read, and
        // a write that lost to another (a label change) reads again.
        let mut attempt = 0;
        let marked = loop {
            attempt += 1;
            let mut namespace = self.store().get(resource, "", name).await?;
            // The namespace's own preconditions first: a refused delete empties nothing.
            check_preconditions(resource, &namespace, preconditions)?;
            admit_delete(resource, &namespace)?;
            if namespace.str_at("status.phase") == Some(NAMESPACE_TERMINATING) {
                break namespace;
            }
            namespace.set_meta("deletionTimestamp", self.clock().now().to_string());
            set_phase(&mut namespace, NAMESPACE_TERMINATING);
            match self.store().update(resource, namespace).await {
                Ok(marked) => break marked,
                Err(StoreError::Api(Error::Conflict { .. })) if attempt < UPDATE_ATTEMPTS => {}
                Err(e) => return Err(e),
            }
        };
        let store = Arc::clone(self.store());
        let emptying = tokio::spawn(async move {
            let result = finish_delete(&*store, &marked).await;
            if let Err(e) = &result {
                tracing::warn!(namespace = marked.name(), error = %e, "deleting a namespace stopped half way; the leader's next sweep finishes it");
            }
            result
        });
        emptying.await.map_err(|e| StoreError::Backend(format!("deleting a namespace stopped: {e}")))?
    }

    /// Runs [`Self::settle_namespaces`] in the background: at a start, a large namespace or a
    /// store error must not hold the start back.
    pub(crate) fn settle_namespaces_soon(self: &Arc<Self>) {
        let this = Arc::clone(self);
        tokio::spawn(async move {
            if let Err(e) = this.settle_namespaces().await {
                tracing::warn!(error = %e, "finishing namespace deletes left half way failed; the leader's next sweep retries");
            }
        });
    }

    /// Finishes the deletes of namespaces left Terminating (a process ended half way, or its
    /// store failed), gives namespaces stored before phases and the name label were kept
    /// theirs (`Active`; kube defaults the label on every read), and
    /// makes again a `default` ServiceAccount an Active namespace lacks. One namespace that
    /// fails does not stop the others: the first error is returned after all were tried.
    pub async fn settle_namespaces(&self) -> Result<(), StoreError> {
        let resource = &Resource::NAMESPACES;
        let mut first_error = None;
        for namespace in self.store().list(resource, &ListOptions::default()).await?.items {
            let name = namespace.name().to_owned();
            // The index may lag: a create of one that exists after all is harmless.
            let has_default = self.index().service_account(&name, "default").is_some();
            if let Err(e) = self.settle_namespace(namespace, has_default).await {
                tracing::warn!(namespace = name, error = %e, "settling a namespace failed");
                first_error.get_or_insert(e);
            }
        }
        first_error.map_or(Ok(()), Err)
    }

    async fn settle_namespace(&self, mut namespace: Object, has_default: bool) -> Result<(), StoreError> {
        match namespace.str_at("status.phase") {
            Some(NAMESPACE_TERMINATING) => {
                tracing::info!(namespace = namespace.name(), "finishing the delete of a Terminating namespace");
                finish_delete(&**self.store(), &namespace).await?;
            }
            Some(_) | None if namespace.str_at("metadata.deletionTimestamp").is_some() => {}
            phase => {
                // Namespaces stored before phases, or before the name label, were kept get them.
                let needs_phase = phase.is_none_or(str::is_empty);
                let labelled = namespace.labels().any(|(key, value)| key == NAME_LABEL && value == namespace.name());
                if needs_phase || !labelled {
                    if needs_phase {
                        set_phase(&mut namespace, NAMESPACE_ACTIVE);
                    }
                    canonicalize(&mut namespace);
                    match self.store().update(&Resource::NAMESPACES, namespace.clone()).await {
                        Ok(_) | Err(StoreError::Api(Error::NotFound { .. } | Error::Conflict { .. })) => {}
                        Err(e) => return Err(e),
                    }
                }
                if !has_default {
                    match self.ensure_default_service_account(namespace.name()).await {
                        Ok(_) | Err(StoreError::Api(Error::NotFound { .. } | Error::Forbidden { .. })) => {}
                        Err(e) => return Err(e),
                    }
                }
            }
        }
        Ok(())
    }
}

/// The namespace controller's resync: every [`SYNC_PERIOD`] while `leads()` says this replica
/// runs the singleton jobs, finishes what [`Authority::settle_namespaces`] finishes. Without it a
/// delete left half way by a replica that stopped would wait for some replica's restart.
pub async fn sweep(authority: Arc<Authority>, leads: impl Fn() -> bool) {
    loop {
        tokio::time::sleep(SYNC_PERIOD).await;
        if leads()
            && let Err(e) = authority.settle_namespaces().await
        {
            tracing::warn!(error = %e, "finishing namespace deletes left half way failed; the next sweep retries");
        }
    }
}

/// The second half of a namespace delete, once `marked` is Terminating: everything in it, then
/// the namespace; the namespace as marked once it is gone (a concurrent delete may finish it
/// first). Several may run at once (another request, another replica, a start, a sweep), and
/// the name may be taken again meanwhile: each kind is listed while `marked` is seen still there
/// (so every object listed is its: creates into it are refused), each object deleted by its
/// uid, and the namespace by `marked`'s.
pub async fn finish_delete(store: &dyn Store, marked: &Object) -> Result<Object, StoreError> {
    let name = marked.name();
    let still_there = || async {
        match store.get(&Resource::NAMESPACES, "", name).await {
            Ok(namespace) => Ok(namespace.uid() == marked.uid()),
            Err(StoreError::Api(Error::NotFound { .. })) => Ok(false),
            Err(e) => Err(e),
        }
    };
    for inner in Resource::STORED.iter().filter(|r| r.namespaced) {
        let options = ListOptions { namespace: Some(name.to_owned()), ..ListOptions::default() };
        let listed = store.list(inner, &options).await?.items;
        if !still_there().await? {
            return Ok(marked.clone());
        }
        for object in listed {
            let precondition = Preconditions { uid: Some(object.uid().to_owned()), resource_version: None };
            match store.delete(inner, name, object.name(), &precondition).await {
                Ok(_) | Err(StoreError::Api(Error::NotFound { .. } | Error::Conflict { .. })) => {}
                Err(e) => return Err(e),
            }
        }
    }
    match store.delete(&Resource::NAMESPACES, "", name, &Preconditions { uid: Some(marked.uid().to_owned()), resource_version: None }).await {
        Err(StoreError::Api(Error::NotFound { .. } | Error::Conflict { .. })) => Ok(marked.clone()),
        result => result,
    }
}
