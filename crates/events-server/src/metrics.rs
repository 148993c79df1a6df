//! The events service's metric families, each labelled `service="events"`.

use spine_http::metrics::RequestMetrics;

pub const REQUESTS: RequestMetrics = RequestMetrics {
    service: "events",
    requests: "events_http_requests_total",
    duration: "events_http_request_duration_seconds",
};

const KINDS: [&str; 3] = ["mesh", "nats", "webhook"];

/// Registers every family at zero, so alerts on them work before the first event.
pub fn register() {
    spine_http::metrics::build_info("events");
    REQUESTS.register("/multicast-notification-service/events");
    for outcome in ["accepted", "duplicate", "refused"] {
        metrics::counter!("events_published_total", "service" => "events", "outcome" => outcome)
            .increment(0);
    }
    metrics::counter!("events_purged_total", "service" => "events").increment(0);
    for kind in KINDS {
        metrics::counter!("events_delivered_total", "service" => "events", "channel" => kind)
            .increment(0);
        metrics::counter!("events_delivery_retries_total", "service" => "events", "channel" => kind)
            .increment(0);
        metrics::counter!("events_dead_letters_total", "service" => "events", "channel" => kind)
            .increment(0);
        let _ = metrics::histogram!("events_delivery_lag_seconds", "service" => "events", "channel" => kind);
    }
}

pub(crate) fn delivered(kind: &'static str, lag_seconds: f64) {
    metrics::counter!("events_delivered_total", "service" => "events", "channel" => kind)
        .increment(1);
    metrics::histogram!("events_delivery_lag_seconds", "service" => "events", "channel" => kind)
        .record(lag_seconds);
}

pub(crate) fn retried(kind: &'static str) {
    metrics::counter!("events_delivery_retries_total", "service" => "events", "channel" => kind)
        .increment(1);
}

pub(crate) fn dead_lettered(kind: &'static str) {
    metrics::counter!("events_dead_letters_total", "service" => "events", "channel" => kind)
        .increment(1);
}
