//! The legacy token cleaner's pass over the store (the decision is
//! [`tokenwarden_core::legacy_tokens`]): kube-controller-manager's
//! `legacy-serviceaccount-token-cleaner`, run once a day by the replica that leads (on SQLite,
//! the only one).
//!
//! Kubernetes counts from the day kube-apiserver began tracking use (a ConfigMap in
//! `kube-system`); tokenwarden records that day on the `kube-system` namespace when it
//! bootstraps, since it tracks use from its first start.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use tokenwarden_core::legacy_tokens::{Cleanup, Sweep, pod_secret_names};
use tokenwarden_core::object::{LEGACY_TOKEN_INVALID_SINCE_LABEL, SERVICE_ACCOUNT_NAME_ANNOTATION};
use tokenwarden_core::{Error, Object, Resource};

use crate::{Authority, ListOptions, Preconditions, StoreError};

/// The day tokenwarden began tracking legacy token use, on the `kube-system` namespace.
pub const TRACKING_SINCE_ANNOTATION: &str = "tokenwarden.io/legacy-token-tracking-since";
/// kube-controller-manager's default `--legacy-service-account-token-clean-up-period`.
pub const DEFAULT_PERIOD_SECONDS: i64 = 365 * 86_400;
/// Between passes, as the Kubernetes controller syncs.
const EVERY: Duration = Duration::from_secs(24 * 3600);
/// Before the first pass: leadership settles first.
const FIRST_AFTER: Duration = Duration::from_secs(60);
const SYSTEM_NAMESPACE: &str = "kube-system";

/// What one pass did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SweepReport {
    pub marked_invalid: usize,
    pub deleted: usize,
}

/// A lost race with another writer (the Secret changed or went away): the next pass decides again.
fn raced(result: Result<Object, StoreError>) -> Result<bool, StoreError> {
    match result {
        Ok(_) => Ok(true),
        Err(StoreError::Api(Error::Conflict { .. } | Error::NotFound { .. })) => Ok(false),
        Err(e) => Err(e),
    }
}

impl Authority {
    /// Records today as the day legacy token tracking began, unless a day is recorded.
    pub(crate) async fn record_tracking_start(&self) -> Result<(), StoreError> {
        let mut namespace = self.store().get(&Resource::NAMESPACES, "", SYSTEM_NAMESPACE).await?;
        if namespace.annotation(TRACKING_SINCE_ANNOTATION).is_some() {
            return Ok(());
        }
        namespace.set_annotation(TRACKING_SINCE_ANNOTATION, &self.clock().now().date());
        match self.update(&Resource::NAMESPACES, namespace).await {
            // Another replica recorded it first.
            Ok(_) | Err(StoreError::Api(Error::Conflict { .. })) => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// One pass of the cleaner with a clean-up period of `period` seconds.
    pub async fn sweep_legacy_tokens(&self, period: i64) -> Result<SweepReport, StoreError> {
        let mut report = SweepReport::default();
        let system = self.store().get(&Resource::NAMESPACES, "", SYSTEM_NAMESPACE).await?;
        let Some(sweep) = system.annotation(TRACKING_SINCE_ANNOTATION).and_then(|since| Sweep::new(self.clock().now(), period, since)) else {
            return Ok(report);
        };
        let secrets = self.store().list(&Resource::SECRETS, &ListOptions::default()).await?.items;
        let mut referenced: HashMap<String, HashSet<String>> = HashMap::new();
        for secret in secrets {
            let namespace = secret.namespace().to_owned();
            let sa = match secret.annotation(SERVICE_ACCOUNT_NAME_ANNOTATION) {
                Some(name) => self.get_if_found(&Resource::SERVICE_ACCOUNTS, &namespace, name).await?,
                None => None,
            };
            if !referenced.contains_key(&namespace) {
                let options = ListOptions { namespace: Some(namespace.clone()), ..ListOptions::default() };
                let mut names = HashSet::new();
                for pod in self.store().list(&Resource::PODS, &options).await?.items {
                    pod_secret_names(&pod, &mut names);
                }
                referenced.insert(namespace.clone(), names);
            }
            let in_use = referenced.get(&namespace).is_some_and(|names| names.contains(secret.name()));
            match sweep.decide(&secret, sa.as_ref(), in_use) {
                Cleanup::Keep => {}
                Cleanup::MarkInvalid(date) => {
                    let mut marked = secret.clone();
                    marked.set_label(LEGACY_TOKEN_INVALID_SINCE_LABEL, &date);
                    if raced(self.update(&Resource::SECRETS, marked).await)? {
                        tracing::info!(secret = %format!("{namespace}/{}", secret.name()), invalid_since = %date, "marked an unused legacy service account token invalid");
                        report.marked_invalid += 1;
                    }
                }
                Cleanup::Delete => {
                    let preconditions = Preconditions { uid: None, resource_version: Some(secret.resource_version().to_owned()) };
                    if raced(self.delete(&Resource::SECRETS, &namespace, secret.name(), &preconditions).await)? {
                        tracing::info!(secret = %format!("{namespace}/{}", secret.name()), "deleted an unused legacy service account token");
                        report.deleted += 1;
                    }
                }
            }
        }
        Ok(report)
    }
}

/// Runs a pass every day while `leads()` says this replica runs the singleton jobs.
pub async fn run(authority: Arc<Authority>, period: i64, leads: impl Fn() -> bool) {
    tokio::time::sleep(FIRST_AFTER).await;
    loop {
        if leads() {
            match authority.sweep_legacy_tokens(period).await {
                Ok(report) if report != SweepReport::default() => tracing::info!(?report, "legacy token clean-up pass"),
                Ok(_) => {}
                Err(e) => tracing::warn!(error = %e, "legacy token clean-up pass failed; trying again tomorrow"),
            }
        }
        tokio::time::sleep(EVERY).await;
    }
}
