//! Prometheus metrics: one process-wide recorder, rendered at `/metrics`.

pub use spine_http::metrics::{install, method_label, render, RequestMetrics};

/// MESH's request families (their names predate the other services; every sample carries
/// `service="mesh"`).
pub const REQUESTS: RequestMetrics = RequestMetrics {
    service: "mesh",
    requests: "mesh_http_requests_total",
    duration: "mesh_http_request_duration_seconds",
};

/// Registers every metric family an operator alerts on, at zero, so that each is present
/// from the first scrape (an alert on a family that does not exist yet never fires), and
/// `openspine_build_info` with the version.
pub fn register_families() {
    install();
    let svc = "mesh";
    spine_http::metrics::build_info(svc);
    for name in [
        "mesh_messages_accepted_total",
        "mesh_messages_acknowledged_total",
        "mesh_chunks_received_total",
        "mesh_chunks_sent_total",
        "mesh_bytes_received_total",
        "mesh_rate_limited_total",
    ] {
        metrics::counter!(name).increment(0);
    }
    for name in [
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
    // The connection families (open, refused, stalled, TLS refused) are the listener's,
    // registered by `spine_http::serve`.
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
    REQUESTS.register("/messageexchange/{mailbox}/inbox");
}
