//! Prometheus metrics: one process-wide recorder, rendered at `/metrics`.

use axum::extract::{MatchedPath, Request};
use axum::middleware::Next;
use axum::response::Response;
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

/// Counts requests and times them per route template (not per path, so message ids do
/// not explode the label set).
pub async fn track(request: Request, next: Next) -> Response {
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_owned())
        .unwrap_or_else(|| "unmatched".into());
    let method = method_label(request.method());
    let started = Instant::now();
    let response = next.run(request).await;
    let status = response.status().as_u16().to_string();
    metrics::counter!("mesh_http_requests_total", "method" => method, "route" => route.clone(), "status" => status)
        .increment(1);
    metrics::histogram!("mesh_http_request_duration_seconds", "method" => method, "route" => route)
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

/// Registers every metric family an operator alerts on, at zero, so that each is present
/// from the first scrape (an alert on a family that does not exist yet never fires), and
/// `openspine_build_info` with the version.
pub fn register_families() {
    install();
    let svc = "mesh";
    metrics::gauge!("openspine_build_info", "service" => svc, "version" => env!("CARGO_PKG_VERSION"))
        .set(1.0);
    for name in [
        "mesh_messages_accepted_total",
        "mesh_messages_acknowledged_total",
        "mesh_chunks_received_total",
        "mesh_chunks_sent_total",
        "mesh_bytes_received_total",
        "mesh_connections_refused_total",
        "mesh_rate_limited_total",
        "mesh_tls_refused_total",
    ] {
        metrics::counter!(name).increment(0);
    }
    for name in [
        "mesh_connections_stalled_total",
        "mesh_payloads_lost_total",
        "mesh_lifecycle_expired_total",
        "mesh_lifecycle_reports_total",
        "mesh_lifecycle_bytes_freed_total",
        "mesh_lifecycle_failures_total",
    ] {
        metrics::counter!(name, "service" => svc).increment(0);
    }
    for reason in ["retention", "abandoned_upload"] {
        metrics::counter!("mesh_lifecycle_purged_total", "service" => svc, "reason" => reason)
            .increment(0);
    }
    for op in ["stats", "inbox_depths", "disk_check", "admin"] {
        metrics::counter!("mesh_store_errors_total", "service" => svc, "operation" => op)
            .increment(0);
    }
    for what in ["tls", "directory"] {
        metrics::counter!("mesh_reload_errors_total", "service" => svc, "what" => what)
            .increment(0);
    }
    metrics::counter!("mesh_sends_refused_total", "service" => svc, "reason" => "disk_low")
        .increment(0);
    metrics::counter!("mesh_download_failures_total", "service" => svc, "reason" => "gzip")
        .increment(0);
    for outcome in ["allowed", "refused"] {
        metrics::counter!("mesh_admin_calls_total", "service" => svc, "outcome" => outcome)
            .increment(0);
    }
    for status in [
        "uploading",
        "accepted",
        "acknowledged",
        "undeliverable",
        "error",
    ] {
        metrics::gauge!("mesh_messages", "service" => svc, "status" => status).set(0.0);
    }
    for name in [
        "mesh_stored_bytes",
        "mesh_oldest_unacknowledged_age_seconds",
        "mesh_lifecycle_backlog",
        "mesh_lifecycle_last_sweep_seconds",
        "mesh_disk_low",
    ] {
        metrics::gauge!(name, "service" => svc).set(0.0);
    }
    metrics::gauge!("mesh_open_connections").increment(0.0);
    metrics::counter!("mesh_inbox_polls_total").increment(0);
    for reason in [
        "missing token",
        "malformed token",
        "token for another mailbox",
        "unknown mailbox",
        "bad hmac",
        "timestamp outside the clock window",
        "client certificate not bound to mailbox",
        "inactive mailbox",
        "replayed token",
    ] {
        metrics::counter!("mesh_auth_refused_total", "reason" => reason).increment(0);
    }
    metrics::counter!("mesh_cross_mailbox_total", "reason" => "download of another mailbox's message")
        .increment(0);
    // The request families, through one route, so that they exist before any request.
    let route = "/messageexchange/{mailbox}/inbox";
    metrics::counter!("mesh_http_requests_total", "method" => "GET", "route" => route, "status" => "200")
        .increment(0);
    let _ = metrics::histogram!("mesh_http_request_duration_seconds", "method" => "GET", "route" => route);
}
