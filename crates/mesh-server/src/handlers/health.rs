//! Liveness (`_ping` and its aliases, API.md 3.14), readiness and metrics.

use super::json_typed;
use crate::state::AppState;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
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
    let answer = readiness(&state).await;
    let status = if answer.ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    json_typed(status, "application/json", &answer.body)
}

/// MESH's readiness, for its own `/readyz` and the ops listener's.
pub async fn readiness(state: &AppState) -> spine_http::ops::Readiness {
    use spine_http::ops::Readiness;
    if state.disk_low() {
        return Readiness {
            ready: false,
            body: json!({"status": "degraded", "reason": "disk low: sends refused, reads and acknowledgements work"}),
        };
    }
    match state.store().ping().await {
        Ok(()) => Readiness {
            ready: true,
            body: json!({"status": "ready"}),
        },
        Err(e) => {
            tracing::warn!(error = %e, "readiness check failed");
            Readiness {
                ready: false,
                body: json!({"status": "unavailable", "reason": "store"}),
            }
        }
    }
}
