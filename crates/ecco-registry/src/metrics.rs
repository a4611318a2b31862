//! Prometheus metrics (`GET /metrics`, text exposition format).

use std::sync::Mutex;
use std::time::Duration;

use axum::http::Method;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

use crate::wire::HealthCounts;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    method: &'static str,
    route: String,
    status: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RouteLabels {
    route: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReasonLabels {
    reason: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct HealthLabels {
    health: String,
}

/// The registry's metrics.
#[derive(Debug)]
pub struct Metrics {
    registry: Mutex<Registry>,
    requests: Family<RequestLabels, Counter>,
    durations: Family<RouteLabels, Histogram>,
    auth_failures: Family<ReasonLabels, Counter>,
    agents: Family<HealthLabels, Gauge>,
    /// Registrations accepted (new and updates).
    pub registrations: Counter,
    /// Heartbeats accepted.
    pub heartbeats: Counter,
    /// Feedback reports accepted.
    pub feedback: Counter,
    /// Live event stream clients connected now.
    pub event_clients: Gauge,
}

impl Default for Metrics {
    fn default() -> Self {
        let requests = Family::<RequestLabels, Counter>::default();
        let durations = Family::<RouteLabels, Histogram>::new_with_constructor(|| {
            // 100 µs to about 3 s.
            Histogram::new(exponential_buckets(0.0001, 2.0, 16))
        });
        let auth_failures = Family::<ReasonLabels, Counter>::default();
        let agents = Family::<HealthLabels, Gauge>::default();
        let registrations = Counter::default();
        let heartbeats = Counter::default();
        let feedback = Counter::default();
        let event_clients = Gauge::default();
        let mut registry = Registry::with_prefix("ecco_registry");
        registry.register("http_requests", "HTTP requests answered", requests.clone());
        registry.register(
            "http_request_duration_seconds",
            "Time to answer, by route",
            durations.clone(),
        );
        registry.register(
            "auth_failures",
            "Refused signatures and tokens, by reason",
            auth_failures.clone(),
        );
        registry.register("agents", "Registered agents by health", agents.clone());
        registry.register(
            "registrations",
            "Registrations and updates accepted",
            registrations.clone(),
        );
        registry.register("heartbeats", "Heartbeats accepted", heartbeats.clone());
        registry.register("feedback", "Feedback reports accepted", feedback.clone());
        registry.register(
            "event_clients",
            "Live event stream clients",
            event_clients.clone(),
        );
        Self {
            registry: Mutex::new(registry),
            requests,
            durations,
            auth_failures,
            agents,
            registrations,
            heartbeats,
            feedback,
            event_clients,
        }
    }
}

/// The method as a label: HTTP accepts any token as a method, so anything
/// beyond the usual ones is `other`, or each would make series of its own.
fn method_label(method: &Method) -> &'static str {
    match method.as_str() {
        "GET" => "GET",
        "HEAD" => "HEAD",
        "POST" => "POST",
        "PUT" => "PUT",
        "DELETE" => "DELETE",
        "PATCH" => "PATCH",
        "OPTIONS" => "OPTIONS",
        _ => "other",
    }
}

impl Metrics {
    /// Records one answered request. `route` must be a route template (or a
    /// fixed word), never a raw path: every label value is a series kept for
    /// good.
    pub fn observe(&self, method: &Method, route: &str, status: u16, elapsed: Duration) {
        self.requests
            .get_or_create(&RequestLabels {
                method: method_label(method),
                route: route.to_owned(),
                status,
            })
            .inc();
        self.durations
            .get_or_create(&RouteLabels {
                route: route.to_owned(),
            })
            .observe(elapsed.as_secs_f64());
    }

    /// Records a refused signature or token.
    pub fn auth_failure(&self, reason: &str) {
        self.auth_failures
            .get_or_create(&ReasonLabels {
                reason: reason.to_owned(),
            })
            .inc();
    }

    /// Sets the agents-by-health gauges.
    pub fn set_health(&self, counts: &HealthCounts) {
        for (health, n) in [
            ("online", counts.online),
            ("stale", counts.stale),
            ("offline", counts.offline),
        ] {
            self.agents
                .get_or_create(&HealthLabels {
                    health: health.to_owned(),
                })
                .set(i64::try_from(n).unwrap_or(i64::MAX));
        }
    }

    /// The exposition text.
    #[must_use]
    pub fn render(&self) -> String {
        let mut out = String::new();
        let registry = self.registry.lock().unwrap_or_else(|e| e.into_inner());
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &registry);
        out
    }
}
