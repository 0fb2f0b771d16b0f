//! The authorizer: the AuthConfig host index, the identity backends and the metrics, driving
//! the core's sans-IO evaluation for every check. Transports (gRPC, HTTP checks, the reverse
//! proxy) build an [`AuthRequest`] and turn the [`Decision`] into their wire format.

use std::collections::HashMap;
use std::sync::{Arc, OnceLock};

use arc_swap::ArcSwap;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::histogram::Histogram;
use tokenwarden_core::authconfig::{AuthConfig, AuthRequest, Decision, Evaluation, HostIndex, Step};

use tokenwarden_store::clock::Stopwatch;

use crate::access::{AccessReviewer, NoAccessReviewer};
use crate::identity::{CacheResult, Identities};
use crate::metrics::{AuthConfigLabels, AuthConfigStatusLabels, CacheLabels, Metrics, StatusLabels};

pub struct Authorizer {
    /// Read on every check without writing a shared reference count (a lock or an `Arc`
    /// clone would be a write both workers make on every check).
    live: ArcSwap<Live>,
    identities: Identities,
    access: Arc<dyn AccessReviewer>,
    metrics: Metrics,
    /// `auth_server_response_status` by [`code_index`], and the identity cache's hit and miss
    /// counters, resolved on first use.
    by_status: [OnceLock<Counter>; CODE_NAMES.len()],
    cache_hits: OnceLock<Counter>,
    cache_misses: OnceLock<Counter>,
}

/// The host index in force, with each of its AuthConfigs' metric series.
#[derive(Default)]
struct Live {
    index: Arc<HostIndex>,
    /// By the AuthConfig's address: the index keeps each alive, so no address is reused.
    series: HashMap<usize, ConfigSeries>,
}

/// One AuthConfig's series, looked up in the metric families once (on first use, so series
/// appear as Authorino's do: when first counted) rather than with two label strings a check.
struct ConfigSeries {
    labels: AuthConfigLabels,
    total: OnceLock<Counter>,
    duration: OnceLock<Histogram>,
    by_status: [OnceLock<Counter>; CODE_NAMES.len()],
}

/// gRPC code names, as Authorino's `auth_server_response_status` labels them.
const CODE_NAMES: [(i32, &str); 8] = [
    (0, "OK"),
    (3, "INVALID_ARGUMENT"),
    (5, "NOT_FOUND"),
    (7, "PERMISSION_DENIED"),
    (13, "INTERNAL"),
    (14, "UNAVAILABLE"),
    (16, "UNAUTHENTICATED"),
    (2, "UNKNOWN"),
];

/// The position of a code in [`CODE_NAMES`] (unknown codes: `UNKNOWN`).
fn code_index(code: i32) -> usize {
    CODE_NAMES.iter().position(|(c, _)| *c == code).unwrap_or(CODE_NAMES.len() - 1)
}

impl ConfigSeries {
    fn new(config: &AuthConfig) -> Self {
        let labels = AuthConfigLabels { namespace: config.namespace.clone(), authconfig: config.name.clone() };
        Self { labels, total: OnceLock::new(), duration: OnceLock::new(), by_status: Default::default() }
    }
}

impl Authorizer {
    pub fn new(identities: Identities) -> Self {
        Self {
            live: ArcSwap::default(),
            identities,
            access: Arc::new(NoAccessReviewer),
            metrics: Metrics::new(),
            by_status: Default::default(),
            cache_hits: OnceLock::new(),
            cache_misses: OnceLock::new(),
        }
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
        let series = index
            .configs()
            .map(|config| (Arc::as_ptr(config).addr(), ConfigSeries::new(config)))
            .collect();
        self.live.store(Arc::new(Live { index: Arc::new(index), series }));
    }

    pub fn configs(&self) -> Arc<HostIndex> {
        Arc::clone(&self.live.load().index)
    }

    /// Authorizes one request. Never panics and never allows on failure: a backend that cannot
    /// answer is a 503 denial.
    pub async fn check(&self, request: &AuthRequest<'_>) -> Decision {
        // Never a header value here: they carry credentials. The path as sent, without its
        // query (as Authorino logs it): decoded, it could carry a line break into the log.
        // (Fields are evaluated only when debug is on: a check pays nothing for this line.)
        tracing::debug!(
            id = %request.id, method = %request.method, host = %request.host, path = %request.path.split('?').next().unwrap_or_default(),
            "incoming authorization request"
        );
        let decision = self.decide(request).await;
        match &decision {
            Decision::Allow { .. } => tracing::debug!(id = %request.id, authorized = true, "outgoing authorization response"),
            Decision::Deny { code, message, .. } => {
                tracing::debug!(id = %request.id, authorized = false, code, reason = %message, "outgoing authorization response");
            }
        }
        decision
    }

    async fn decide(&self, request: &AuthRequest<'_>) -> Decision {
        let live = self.live.load();
        let Some(config) = live.index.lookup(request.lookup_host()) else {
            let decision = Decision::not_found();
            self.count(&decision);
            return decision;
        };
        let started = Stopwatch::start();
        let mut evaluation = Evaluation::new(config, request);
        let mut step = evaluation.start();
        let decision = loop {
            step = match step {
                Step::Done(decision) => break decision,
                Step::Identity(identity) => {
                    let review_started = Stopwatch::start();
                    let (outcome, cache) = self.identities.verify(&identity).await;
                    let (counter, result) = match cache {
                        CacheResult::Hit => (&self.cache_hits, "hit"),
                        CacheResult::Miss => {
                            self.metrics.tokenreview_duration.observe(review_started.elapsed_seconds());
                            (&self.cache_misses, "miss")
                        }
                    };
                    counter.get_or_init(|| self.metrics.identity_cache.get_or_create(&CacheLabels { result }).clone()).inc();
                    evaluation.provide_identity(outcome)
                }
                Step::SubjectAccessReview(review) => {
                    let outcome = self.access.review(&review).await;
                    evaluation.provide_review(outcome)
                }
            };
        };
        let elapsed = started.elapsed_seconds();
        self.count(&decision);
        match live.series.get(&Arc::as_ptr(config).addr()) {
            Some(series) => self.count_for(series, elapsed, &decision),
            // not reached: every indexed AuthConfig has its series
            None => self.count_for(&ConfigSeries::new(config), elapsed, &decision),
        }
        decision
    }

    fn count(&self, decision: &Decision) {
        let index = code_index(decision.grpc_code());
        let counter = self.by_status[index].get_or_init(|| self.metrics.response_status.get_or_create(&StatusLabels { status: CODE_NAMES[index].1 }).clone());
        counter.inc();
    }

    fn count_for(&self, series: &ConfigSeries, elapsed: f64, decision: &Decision) {
        let metrics = &self.metrics;
        series.duration.get_or_init(|| metrics.authconfig_duration.get_or_create(&series.labels).clone()).observe(elapsed);
        series.total.get_or_init(|| metrics.authconfig_total.get_or_create(&series.labels).clone()).inc();
        let index = code_index(decision.grpc_code());
        let by_status = series.by_status[index].get_or_init(|| {
            let labels = AuthConfigStatusLabels { namespace: series.labels.namespace.clone(), authconfig: series.labels.authconfig.clone(), status: CODE_NAMES[index].1 };
            metrics.authconfig_response_status.get_or_create(&labels).clone()
        });
        by_status.inc();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn anonymous(name: &str) -> Arc<AuthConfig> {
        let spec = serde_json::json!({"hosts": ["a.test"], "authentication": {"anon": {"anonymous": {}}}});
        Arc::new(AuthConfig::parse_spec("ns", name, &spec).unwrap_or_else(|e| panic!("{e}")))
    }

    #[tokio::test]
    async fn per_authconfig_series_keep_counting_across_index_rebuilds() {
        let authorizer = Authorizer::new(Identities::new(None));
        authorizer.set_configs(HostIndex::build([anonymous("open")]));
        assert!(authorizer.check(&AuthRequest::new("GET", "a.test", "/")).await.is_allowed());
        // the same AuthConfig re-read (a new Arc): same series
        authorizer.set_configs(HostIndex::build([anonymous("open")]));
        assert!(authorizer.check(&AuthRequest::new("GET", "A.test", "/")).await.is_allowed());
        assert_eq!(authorizer.check(&AuthRequest::new("GET", "b.test", "/")).await.code(), 404);
        let text = authorizer.metrics().encode();
        for line in [
            r#"auth_server_authconfig_total{namespace="ns",authconfig="open"} 2"#,
            r#"auth_server_authconfig_response_status_total{namespace="ns",authconfig="open",status="OK"} 2"#,
            r#"auth_server_authconfig_duration_seconds_count{namespace="ns",authconfig="open"} 2"#,
            r#"auth_server_response_status_total{status="OK"} 2"#,
            r#"auth_server_response_status_total{status="NOT_FOUND"} 1"#,
        ] {
            assert!(text.contains(line), "missing {line}\n{text}");
        }
        assert!(!text.contains("PERMISSION_DENIED"), "a series appears when first counted\n{text}");
    }
}
