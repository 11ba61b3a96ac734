//! Prometheus metrics. Names start with `portcullis_` and carry their unit.
//! No label takes unbounded values: routes are rule ids from the config,
//! methods outside the standard set count as `OTHER`, and no key id, path or
//! client address is ever a label.

pub mod listener;

use std::time::Duration;

use http::{Method, StatusCode};
use prometheus::{
    Encoder, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge,
    IntGaugeVec, Opts, Registry, TextEncoder,
};

/// Buckets for request and upstream latency, in seconds.
const LATENCY_BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];
/// Buckets for the gateway's own work, which is far shorter.
const OVERHEAD_BUCKETS: &[f64] = &[
    0.00001, 0.000025, 0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.05,
];

/// How a request ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// The upstream sent a response.
    Forwarded,
    /// The gateway responded without contacting an upstream.
    Rejected,
    /// The upstream failed or timed out.
    UpstreamError,
}

impl Outcome {
    fn as_str(self) -> &'static str {
        match self {
            Outcome::Forwarded => "forwarded",
            Outcome::Rejected => "rejected",
            Outcome::UpstreamError => "upstream_error",
        }
    }
}

/// Every metric the gateway exports.
#[derive(Debug, Clone)]
pub struct Metrics {
    registry: Registry,
    requests: IntCounterVec,
    request_duration: HistogramVec,
    gateway_duration: Histogram,
    upstream_duration: HistogramVec,
    upstream_errors: IntCounterVec,
    auth_failures: IntCounterVec,
    pub(crate) key_cache_hits: IntCounter,
    pub(crate) key_cache_misses: IntCounter,
    key_cache_entries: IntGauge,
    store_duration: Histogram,
    pub(crate) store_errors: IntCounter,
    limited: IntCounterVec,
    pub(crate) active_connections: IntGauge,
    config_reloads: IntCounterVec,
    config_last_reload_success: IntGauge,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let registry = Registry::new();
        let counter_vec = |name: &str, help: &str, labels: &[&str]| {
            let metric = IntCounterVec::new(Opts::new(name, help), labels).expect("valid metric");
            registry
                .register(Box::new(metric.clone()))
                .expect("unique metric");
            metric
        };
        let counter = |name: &str, help: &str| {
            let metric = IntCounter::new(name, help).expect("valid metric");
            registry
                .register(Box::new(metric.clone()))
                .expect("unique metric");
            metric
        };
        let gauge = |name: &str, help: &str| {
            let metric = IntGauge::new(name, help).expect("valid metric");
            registry
                .register(Box::new(metric.clone()))
                .expect("unique metric");
            metric
        };
        let histogram_vec = |name: &str, help: &str, labels: &[&str], buckets: &[f64]| {
            let opts = HistogramOpts::new(name, help).buckets(buckets.to_vec());
            let metric = HistogramVec::new(opts, labels).expect("valid metric");
            registry
                .register(Box::new(metric.clone()))
                .expect("unique metric");
            metric
        };
        let histogram = |name: &str, help: &str, buckets: &[f64]| {
            let opts = HistogramOpts::new(name, help).buckets(buckets.to_vec());
            let metric = Histogram::with_opts(opts).expect("valid metric");
            registry
                .register(Box::new(metric.clone()))
                .expect("unique metric");
            metric
        };

        let build_info = IntGaugeVec::new(
            Opts::new("portcullis_build_info", "Build information; always 1."),
            &["version"],
        )
        .expect("valid metric");
        registry
            .register(Box::new(build_info.clone()))
            .expect("unique metric");
        build_info
            .with_label_values(&[env!("CARGO_PKG_VERSION")])
            .set(1);

        let metrics = Self {
            requests: counter_vec(
                "portcullis_requests_total",
                "Requests by route rule, method, status class and outcome.",
                &["route", "method", "status_class", "outcome"],
            ),
            request_duration: histogram_vec(
                "portcullis_request_duration_seconds",
                "Time from request head to response head, by route rule.",
                &["route"],
                LATENCY_BUCKETS,
            ),
            gateway_duration: histogram(
                "portcullis_gateway_duration_seconds",
                "Time the gateway itself added to a request, excluding the upstream's.",
                OVERHEAD_BUCKETS,
            ),
            upstream_duration: histogram_vec(
                "portcullis_upstream_duration_seconds",
                "Time from sending a request upstream to its response head, by upstream.",
                &["upstream"],
                LATENCY_BUCKETS,
            ),
            upstream_errors: counter_vec(
                "portcullis_upstream_errors_total",
                "Failed upstream requests by upstream and kind (unavailable, timeout).",
                &["upstream", "kind"],
            ),
            auth_failures: counter_vec(
                "portcullis_auth_failures_total",
                "Rejected credentials and authorizations by reason (the error code).",
                &["reason"],
            ),
            key_cache_hits: counter(
                "portcullis_key_cache_hits_total",
                "Key lookups answered by the cache.",
            ),
            key_cache_misses: counter(
                "portcullis_key_cache_misses_total",
                "Key lookups that went to the store.",
            ),
            key_cache_entries: gauge(
                "portcullis_key_cache_entries",
                "Approximate number of cached keys.",
            ),
            store_duration: histogram(
                "portcullis_store_query_duration_seconds",
                "Duration of key lookups in the store.",
                LATENCY_BUCKETS,
            ),
            store_errors: counter(
                "portcullis_store_errors_total",
                "Failed key lookups in the store.",
            ),
            limited: counter_vec(
                "portcullis_limited_requests_total",
                "Requests rejected by a limit, by kind (rate, usage, auth_throttle).",
                &["kind"],
            ),
            active_connections: gauge("portcullis_active_connections", "Open client connections."),
            config_reloads: counter_vec(
                "portcullis_config_reloads_total",
                "Configuration reloads by result (success, failure).",
                &["result"],
            ),
            config_last_reload_success: gauge(
                "portcullis_config_last_reload_success",
                "1 if the last configuration reload succeeded, 0 if it failed.",
            ),
            registry,
        };
        // The configuration loaded at start counts as a successful load, so
        // an alert on this gauge does not fire on a fresh process.
        metrics.config_last_reload_success.set(1);
        metrics
    }

    /// Records a finished request. `upstream` is the time spent waiting for
    /// the upstream, if one was contacted.
    pub fn record_request(
        &self,
        route: &str,
        method: &Method,
        status: StatusCode,
        outcome: Outcome,
        total: Duration,
        upstream: Duration,
    ) {
        let status_class = match status.as_u16() / 100 {
            1 => "1xx",
            2 => "2xx",
            3 => "3xx",
            4 => "4xx",
            _ => "5xx",
        };
        self.requests
            .with_label_values(&[route, method_label(method), status_class, outcome.as_str()])
            .inc();
        self.request_duration
            .with_label_values(&[route])
            .observe(total.as_secs_f64());
        self.gateway_duration
            .observe(total.saturating_sub(upstream).as_secs_f64());
    }

    pub fn record_upstream(&self, upstream: &str, elapsed: Duration) {
        self.upstream_duration
            .with_label_values(&[upstream])
            .observe(elapsed.as_secs_f64());
    }

    /// Counts an upstream failure; `kind` is `unavailable` or `timeout`.
    pub fn record_upstream_error(&self, upstream: &str, kind: &'static str) {
        self.upstream_errors
            .with_label_values(&[upstream, kind])
            .inc();
    }

    /// Counts an authentication or authorization failure by error code.
    pub fn record_auth_failure(&self, reason: &'static str) {
        self.auth_failures.with_label_values(&[reason]).inc();
    }

    pub fn record_store_query(&self, elapsed: Duration) {
        self.store_duration.observe(elapsed.as_secs_f64());
    }

    /// Counts a request rejected by a limit; `kind` is `rate`, `usage` or
    /// `auth_throttle`.
    pub fn record_limited(&self, kind: &'static str) {
        self.limited.with_label_values(&[kind]).inc();
    }

    pub fn record_reload(&self, success: bool) {
        let result = if success { "success" } else { "failure" };
        self.config_reloads.with_label_values(&[result]).inc();
        self.config_last_reload_success.set(i64::from(success));
    }

    pub fn set_key_cache_entries(&self, entries: u64) {
        self.key_cache_entries
            .set(i64::try_from(entries).unwrap_or(i64::MAX));
    }

    /// Renders every metric in the Prometheus text format.
    pub fn render(&self) -> String {
        let mut buffer = Vec::new();
        let encoder = TextEncoder::new();
        if let Err(error) = encoder.encode(&self.registry.gather(), &mut buffer) {
            tracing::error!(%error, "failed to encode metrics");
        }
        String::from_utf8(buffer).unwrap_or_default()
    }
}

fn method_label(method: &Method) -> &'static str {
    match *method {
        Method::GET => "GET",
        Method::HEAD => "HEAD",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::PATCH => "PATCH",
        Method::DELETE => "DELETE",
        Method::OPTIONS => "OPTIONS",
        Method::CONNECT => "CONNECT",
        Method::TRACE => "TRACE",
        _ => "OTHER",
    }
}
