//! The events service's part of the admin API (ops listener, behind the admin token):
//! what `openspine events tail` and `openspine events publish` call.
//!
//! * `GET /admin/v1/events?after=N&type=T&limit=L&wait_secs=W`: events accepted after
//!   number N, oldest first; with `wait_secs`, an empty answer waits up to W seconds for
//!   the next one (so a tail is live without hammering the store).
//! * `POST /admin/v1/events`: publish one CloudEvent as the operator (`admin`).

use crate::Events;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use events_protocol::event::MAX_EVENT_BYTES;
use serde::Deserialize;
use serde_json::{json, Value};
use spine_events::Published;
use std::time::{Duration, Instant};

pub fn router(events: Events) -> Router {
    Router::new()
        .route("/admin/v1/events", get(list).post(publish))
        .with_state(events)
}

#[derive(Deserialize)]
struct ListQuery {
    #[serde(default)]
    after: i64,
    #[serde(rename = "type")]
    event_type: Option<String>,
    limit: Option<u32>,
    wait_secs: Option<u64>,
}

fn problem(status: StatusCode, error: &str) -> Response {
    (status, Json(json!({ "error": error }))).into_response()
}

async fn list(State(events): State<Events>, Query(q): Query<ListQuery>) -> Response {
    let limit = q.limit.unwrap_or(100).clamp(1, 1000);
    let deadline = Instant::now() + Duration::from_secs(q.wait_secs.unwrap_or(0).min(60));
    loop {
        let found = match events
            .store()
            .events_after(q.after, q.event_type.as_deref(), limit)
            .await
        {
            Ok(found) => found,
            Err(e) => {
                tracing::error!(error = %e, "admin API: events store");
                return problem(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "the events store did not answer",
                );
            }
        };
        if !found.is_empty() || Instant::now() >= deadline {
            let next = found.last().map_or(q.after, |e| e.seq);
            let items: Vec<Value> = found
                .iter()
                .map(|e| {
                    json!({
                        "seq": e.seq,
                        "publisher": e.publisher,
                        "received_at": e.received_at.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
                        "event": e.event,
                    })
                })
                .collect();
            return Json(json!({ "events": items, "next": next })).into_response();
        }
        // Events published on other nodes ring no bell here: look again shortly.
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

async fn publish(State(events): State<Events>, body: axum::body::Bytes) -> Response {
    if body.len() > MAX_EVENT_BYTES {
        return problem(StatusCode::PAYLOAD_TOO_LARGE, "the event is too large");
    }
    let accepted = match events_protocol::event::parse(&body, true) {
        Ok(a) => a,
        Err(e) => {
            return (
                StatusCode::BAD_REQUEST,
                Json(json!({"error": "the event is not valid", "validationErrors": e.0})),
            )
                .into_response()
        }
    };
    match events.publish(&accepted, "admin").await {
        Ok(Published::Accepted { seq }) => {
            Json(json!({"id": accepted.event.id, "seq": seq})).into_response()
        }
        Ok(Published::Duplicate) => {
            Json(json!({"id": accepted.event.id, "duplicate": true})).into_response()
        }
        Err(e) => {
            tracing::error!(error = %e, "admin API: events store");
            problem(
                StatusCode::SERVICE_UNAVAILABLE,
                "the events store did not answer",
            )
        }
    }
}
