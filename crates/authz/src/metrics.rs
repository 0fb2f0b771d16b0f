//! Prometheus metrics with Authorino's names, plus what Authorino lacks: identity-cache hits
//! and misses, and TokenReview latency.

use std::sync::Arc;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric as _};
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::{Histogram, linear_buckets};
use prometheus_client::registry::Registry;
use tokenwarden_store::Clock;
use tokenwarden_store::health::StoreHealth;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StatusLabels {
    /// The gRPC code name of the decision: OK, UNAUTHENTICATED, PERMISSION_DENIED, NOT_FOUND, UNAVAILABLE.
    pub status: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct AuthConfigLabels {
    pub namespace: String,
    pub authconfig: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct AuthConfigStatusLabels {
    pub namespace: String,
    pub authconfig: String,
    pub status: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CacheLabels {
    /// `hit` or `miss`.
    pub result: &'static str,
}

fn duration_histogram() -> Histogram {
    // Authorino's buckets: linear from 1 ms in 50 ms steps, 20 buckets.
    Histogram::new(linear_buckets(0.001, 0.05, 20))
}

fn fast_histogram() -> Histogram {
    Histogram::new(prometheus_client::metrics::histogram::exponential_buckets(0.000_05, 2.0, 16))
}

pub struct Metrics {
    registry: Registry,
    pub response_status: Family<StatusLabels, Counter>,
    pub authconfig_total: Family<AuthConfigLabels, Counter>,
    pub authconfig_response_status: Family<AuthConfigStatusLabels, Counter>,
    pub authconfig_duration: Family<AuthConfigLabels, Histogram, fn() -> Histogram>,
    pub identity_cache: Family<CacheLabels, Counter>,
    pub tokenreview_duration: Histogram,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let mut registry = Registry::default();
        let response_status = Family::<StatusLabels, Counter>::default();
        let authconfig_total = Family::<AuthConfigLabels, Counter>::default();
        let authconfig_response_status = Family::<AuthConfigStatusLabels, Counter>::default();
        let authconfig_duration = Family::<AuthConfigLabels, Histogram, fn() -> Histogram>::new_with_constructor(duration_histogram);
        let identity_cache = Family::<CacheLabels, Counter>::default();
        let tokenreview_duration = fast_histogram();
        registry.register("auth_server_response_status", "Response status of authorization requests", response_status.clone());
        registry.register("auth_server_authconfig", "Authorization requests per AuthConfig", authconfig_total.clone());
        registry.register(
            "auth_server_authconfig_response_status",
            "Response status of authorization requests per AuthConfig",
            authconfig_response_status.clone(),
        );
        registry.register_with_unit(
            "auth_server_authconfig_duration",
            "Time to evaluate an AuthConfig",
            prometheus_client::registry::Unit::Seconds,
            authconfig_duration.clone(),
        );
        registry.register("tokenwarden_identity_cache", "Identity cache lookups by result", identity_cache.clone());
        registry.register_with_unit(
            "tokenwarden_tokenreview_duration",
            "Time to review one token (in-process or remote)",
            prometheus_client::registry::Unit::Seconds,
            tokenreview_duration.clone(),
        );
        Self {
            registry,
            response_status,
            authconfig_total,
            authconfig_response_status,
            authconfig_duration,
            identity_cache,
            tokenreview_duration,
        }
    }

    /// Adds the gauges of a replica on a shared store, read at every scrape:
    /// `tokenwarden_etcd_unreachable_seconds` (how stale reviews may be, 0 while etcd answers)
    /// and `tokenwarden_cluster_leader` (1 on the replica running the singleton jobs).
    pub fn observe_store(&mut self, health: Arc<StoreHealth>, clock: Arc<dyn Clock>) {
        self.registry.register_collector(Box::new(StoreCollector { health, clock }));
    }

    /// The text exposition format for `/metrics`.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        if prometheus_client::encoding::text::encode(&mut out, &self.registry).is_err() {
            out.clear();
        }
        out
    }
}

struct StoreCollector {
    health: Arc<StoreHealth>,
    clock: Arc<dyn Clock>,
}

impl std::fmt::Debug for StoreCollector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StoreCollector").field("health", &self.health).finish_non_exhaustive()
    }
}

impl Collector for StoreCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> std::fmt::Result {
        let stale = self.health.stale_seconds(self.clock.now()).unwrap_or(0);
        let gauges = [
            ("tokenwarden_etcd_unreachable_seconds", "Seconds etcd has not answered (0 while it does): how stale reviews may be", stale),
            ("tokenwarden_cluster_leader", "1 on the replica that runs the cluster's singleton jobs (key rotation)", i64::from(self.health.is_leader())),
        ];
        for (name, help, value) in gauges {
            let gauge = ConstGauge::new(value);
            gauge.encode(encoder.encode_descriptor(name, help, None, gauge.metric_type())?)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exposes_authorinos_names() {
        let metrics = Metrics::new();
        metrics.response_status.get_or_create(&StatusLabels { status: "OK" }).inc();
        let labels = AuthConfigLabels { namespace: "ns".into(), authconfig: "talker-api".into() };
        metrics.authconfig_total.get_or_create(&labels).inc();
        metrics.authconfig_duration.get_or_create(&labels).observe(0.002);
        let text = metrics.encode();
        assert!(text.contains(r#"auth_server_response_status_total{status="OK"} 1"#), "{text}");
        assert!(text.contains(r#"auth_server_authconfig_total{namespace="ns",authconfig="talker-api"} 1"#), "{text}");
        assert!(text.contains("auth_server_authconfig_duration_seconds_bucket"), "{text}");
        assert!(!text.contains("tokenwarden_cluster_leader"), "a single replica has no cluster gauges\n{text}");
    }

    #[test]
    fn cluster_gauges_are_read_at_scrape_time() {
        let mut metrics = Metrics::new();
        let health = Arc::new(StoreHealth::default());
        let clock = tokenwarden_store::ManualClock::new(tokenwarden_core::Timestamp(1_000));
        metrics.observe_store(Arc::clone(&health), Arc::new(clock.clone()));
        let text = metrics.encode();
        assert!(text.contains("tokenwarden_etcd_unreachable_seconds 0\n"), "{text}");
        assert!(text.contains("tokenwarden_cluster_leader 0\n"), "{text}");
        health.unreachable(tokenwarden_core::Timestamp(1_000));
        health.set_leader(true);
        clock.advance(7);
        let text = metrics.encode();
        assert!(text.contains("tokenwarden_etcd_unreachable_seconds 7\n"), "{text}");
        assert!(text.contains("tokenwarden_cluster_leader 1\n"), "{text}");
    }
}
