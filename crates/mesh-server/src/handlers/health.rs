//! Liveness (`_ping` and its aliases, API.md 3.14), readiness and metrics.

use super::json_typed;
use crate::state::AppState;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::json;

/// Liveness: the process answers. Deliberately does not touch the store, so a slow disk
/// does not get a healthy process restarted.
pub async fn ping(State(state): State<AppState>) -> Response {
    let c = state.config();
    json_typed(
        StatusCode::OK,
        "application/json",
        &json!({"env": c.env, "build_label": c.build_label, "status": "running", "outcome": "Yes"}),
    )
}

/// Readiness: the metadata and payload stores both answer. Load balancers stop sending
/// traffic on 503, and send it again when the stores are back: nothing here needs a restart.
///
/// A low disk is not ready either (sends are refused while it lasts), with its own
/// reason, though reads and acknowledgements still work.
pub async fn ready(State(state): State<AppState>) -> Response {
    if state.disk_low() {
        return json_typed(
            StatusCode::SERVICE_UNAVAILABLE,
            "application/json",
            &json!({"status": "degraded", "reason": "disk low: sends refused, reads and acknowledgements work"}),
        );
    }
    match state.store().ping().await {
        Ok(()) => json_typed(
            StatusCode::OK,
            "application/json",
            &json!({"status": "ready"}),
        ),
        Err(e) => {
            tracing::warn!(error = %e, "readiness check failed");
            json_typed(
                StatusCode::SERVICE_UNAVAILABLE,
                "application/json",
                &json!({"status": "unavailable", "reason": "store"}),
            )
        }
    }
}

/// Prometheus text exposition.
pub async fn metrics() -> Response {
    (
        [("content-type", "text/plain; version=0.0.4")],
        crate::metrics::render(),
    )
        .into_response()
}
