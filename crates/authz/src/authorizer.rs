//! The authorizer: the AuthConfig host index, the identity backends and the metrics, driving
//! the core's sans-IO evaluation for every check. Transports (gRPC, HTTP checks, the reverse
//! proxy) build an [`AuthRequest`] and turn the [`Decision`] into their wire format.

use std::sync::{Arc, RwLock};

use tokenwarden_core::authconfig::{AuthRequest, Decision, Evaluation, HostIndex, Step};

use tokenwarden_store::clock::Stopwatch;

use crate::access::{AccessReviewer, NoAccessReviewer};
use crate::identity::{CacheResult, Identities};
use crate::metrics::{AuthConfigLabels, AuthConfigStatusLabels, CacheLabels, Metrics, StatusLabels};

pub struct Authorizer {
    configs: RwLock<Arc<HostIndex>>,
    identities: Identities,
    access: Arc<dyn AccessReviewer>,
    metrics: Metrics,
}

/// gRPC code names, as Authorino's `auth_server_response_status` labels them.
fn code_name(code: i32) -> &'static str {
    match code {
        0 => "OK",
        3 => "INVALID_ARGUMENT",
        5 => "NOT_FOUND",
        7 => "PERMISSION_DENIED",
        13 => "INTERNAL",
        14 => "UNAVAILABLE",
        16 => "UNAUTHENTICATED",
        _ => "UNKNOWN",
    }
}

impl Authorizer {
    pub fn new(identities: Identities) -> Self {
        Self { configs: RwLock::new(Arc::new(HostIndex::new())), identities, access: Arc::new(NoAccessReviewer), metrics: Metrics::new() }
    }

    /// Answers `kubernetesSubjectAccessReview` policies with `access` (default: none, 503).
    #[must_use]
    pub fn with_access_reviewer(mut self, access: Arc<dyn AccessReviewer>) -> Self {
        self.access = access;
        self
    }

    /// Reports a shared store's health in the metrics (a replica of a cluster).
    #[must_use]
    pub fn with_store_health(mut self, health: Arc<tokenwarden_store::health::StoreHealth>, clock: Arc<dyn tokenwarden_store::Clock>) -> Self {
        self.metrics.observe_store(health, clock);
        self
    }

    pub fn identities(&self) -> &Identities {
        &self.identities
    }

    pub fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    /// Swaps in a rebuilt host index (AuthConfigs changed).
    pub fn set_configs(&self, index: HostIndex) {
        *self.configs.write().unwrap_or_else(std::sync::PoisonError::into_inner) = Arc::new(index);
    }

    pub fn configs(&self) -> Arc<HostIndex> {
        Arc::clone(&self.configs.read().unwrap_or_else(std::sync::PoisonError::into_inner))
    }

    /// Authorizes one request. Never panics and never allows on failure: a backend that cannot
    /// answer is a 503 denial.
    pub async fn check(&self, request: &AuthRequest) -> Decision {
        // Never a header value here: they carry credentials.
        tracing::debug!(id = %request.id, method = %request.method, host = %request.host, path = %request.url_path(), "incoming authorization request");
        let decision = self.decide(request).await;
        match &decision {
            Decision::Allow { .. } => tracing::debug!(id = %request.id, authorized = true, "outgoing authorization response"),
            Decision::Deny { code, message, .. } => {
                tracing::debug!(id = %request.id, authorized = false, code, reason = %message, "outgoing authorization response");
            }
        }
        decision
    }

    async fn decide(&self, request: &AuthRequest) -> Decision {
        let configs = self.configs();
        let Some(config) = configs.lookup(request.lookup_host()).cloned() else {
            let decision = Decision::not_found();
            self.count(None, &decision);
            return decision;
        };
        let started = Stopwatch::start();
        let mut evaluation = Evaluation::new(Arc::clone(&config), request);
        let mut step = evaluation.start();
        let decision = loop {
            step = match step {
                Step::Done(decision) => break decision,
                Step::Identity(identity) => {
                    let review_started = Stopwatch::start();
                    let (outcome, cache) = self.identities.verify(&identity).await;
                    let result = match cache {
                        CacheResult::Hit => "hit",
                        CacheResult::Miss => {
                            self.metrics.tokenreview_duration.observe(review_started.elapsed_seconds());
                            "miss"
                        }
                    };
                    self.metrics.identity_cache.get_or_create(&CacheLabels { result }).inc();
                    evaluation.provide_identity(outcome)
                }
                Step::SubjectAccessReview(review) => {
                    let outcome = self.access.review(&review).await;
                    evaluation.provide_review(outcome)
                }
            };
        };
        let labels = AuthConfigLabels { namespace: config.namespace.clone(), authconfig: config.name.clone() };
        self.metrics.authconfig_duration.get_or_create(&labels).observe(started.elapsed_seconds());
        self.count(Some(labels), &decision);
        decision
    }

    fn count(&self, config: Option<AuthConfigLabels>, decision: &Decision) {
        let status = code_name(decision.grpc_code());
        self.metrics.response_status.get_or_create(&StatusLabels { status }).inc();
        if let Some(labels) = config {
            self.metrics.authconfig_total.get_or_create(&labels).inc();
            let with_status = AuthConfigStatusLabels { namespace: labels.namespace, authconfig: labels.authconfig, status };
            self.metrics.authconfig_response_status.get_or_create(&with_status).inc();
        }
    }
}
