//! Prometheus metrics: one process-wide recorder, rendered by the ops listener's
//! `/metrics`, and the per-request counters every service's router carries with its own
//! `service` label.

use axum::extract::{MatchedPath, Request};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use std::sync::OnceLock;
use std::time::Instant;

static HANDLE: OnceLock<Option<PrometheusHandle>> = OnceLock::new();

/// Installs the recorder once per process (tests start several servers in one process).
///
/// Durations are Prometheus histograms (buckets), not summaries: quantiles of summaries
/// cannot be added up across nodes, buckets can.
pub fn install() {
    HANDLE.get_or_init(|| {
        PrometheusBuilder::new()
            .set_buckets(LATENCY_BUCKETS)
            .ok()?
            .install_recorder()
            .ok()
    });
}

/// Seconds: from a cached inbox page (a millisecond) to a large chunk on a slow link.
const LATENCY_BUCKETS: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
];

pub fn render() -> String {
    HANDLE
        .get()
        .and_then(|h| h.as_ref())
        .map(|h| h.render())
        .unwrap_or_default()
}

/// Prometheus text exposition.
pub async fn exposition() -> Response {
    ([("content-type", "text/plain; version=0.0.4")], render()).into_response()
}

/// The request families of one service: their names (kept per service so that existing
/// dashboards keep working) and the `service` label every sample carries.
#[derive(Debug, Clone, Copy)]
pub struct RequestMetrics {
    pub service: &'static str,
    pub requests: &'static str,
    pub duration: &'static str,
}

impl RequestMetrics {
    /// Registers both families at zero through one route, so that they exist before the
    /// first request (an alert on a family that does not exist yet never fires).
    pub fn register(&self, route: &'static str) {
        install();
        metrics::counter!(self.requests, "service" => self.service, "method" => "GET", "route" => route, "status" => "200")
            .increment(0);
        let _ = metrics::histogram!(self.duration, "service" => self.service, "method" => "GET", "route" => route);
    }
}

/// Middleware: counts requests and times them per route template (not per path, so
/// message ids and NHS numbers do not explode the label set).
pub async fn track(
    axum::extract::State(m): axum::extract::State<RequestMetrics>,
    request: Request,
    next: Next,
) -> Response {
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_owned())
        .unwrap_or_else(|| "unmatched".into());
    let method = method_label(request.method());
    let started = Instant::now();
    let response = next.run(request).await;
    let status = response.status().as_u16().to_string();
    metrics::counter!(m.requests, "service" => m.service, "method" => method, "route" => route.clone(), "status" => status)
        .increment(1);
    metrics::histogram!(m.duration, "service" => m.service, "method" => method, "route" => route)
        .record(started.elapsed().as_secs_f64());
    response
}

/// The method as a label from a fixed set. HTTP lets a client invent any method name, and
/// a label per invented name would grow the metrics (and the server's memory) without
/// bound: every other name counts as `other`.
pub fn method_label(method: &axum::http::Method) -> &'static str {
    use axum::http::Method;
    match *method {
        Method::GET => "GET",
        Method::HEAD => "HEAD",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::DELETE => "DELETE",
        Method::PATCH => "PATCH",
        Method::OPTIONS => "OPTIONS",
        _ => "other",
    }
}

/// `openspine_build_info{service,version}` = 1, for each service the binary runs.
pub fn build_info(service: &'static str) {
    install();
    metrics::gauge!("openspine_build_info", "service" => service, "version" => env!("CARGO_PKG_VERSION"))
        .set(1.0);
}
