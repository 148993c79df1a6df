//! The events service's part of the admin API (ops listener, behind the admin token):
//! what `openspine events tail` and `openspine events publish` call.
//!
//! * `GET /admin/v1/events?after=N&type=T&limit=L&wait_secs=W`: events accepted after
//!   number N, oldest first; with `wait_secs`, an empty answer waits up to W seconds for
//!   the next one (so a tail is live without hammering the store).
//! * `POST /admin/v1/events`: publish one CloudEvent as the operator (`admin`).
//! * `GET /admin/v1/events/dead-letters?subscription=ID&limit=L`: deliveries given up on,
//!   each with its event, oldest first (everyone's without `subscription`).
//! * `POST /admin/v1/events/dead-letters/replay?subscription=ID`: put a subscription's
//!   dead letters back in its queue, in event order, to be delivered as if new.

use crate::Events;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use events_protocol::event::MAX_EVENT_BYTES;
use serde::Deserialize;
use serde_json::{json, Value};
use spine_events::Published;
use std::time::{Duration, Instant};

pub fn router(events: Events) -> Router {
    Router::new()
        .route("/admin/v1/events", get(list).post(publish))
        .route("/admin/v1/events/dead-letters", get(dead_letters))
        .route("/admin/v1/events/dead-letters/replay", post(replay))
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

#[derive(Deserialize)]
struct DeadLetterQuery {
    subscription: Option<String>,
    limit: Option<u32>,
}

fn unavailable(e: &events_store::StoreError) -> Response {
    tracing::error!(error = %e, "admin API: events store");
    problem(
        StatusCode::SERVICE_UNAVAILABLE,
        "the events store did not answer",
    )
}

async fn dead_letters(State(events): State<Events>, Query(q): Query<DeadLetterQuery>) -> Response {
    let limit = q.limit.unwrap_or(100).clamp(1, 1000);
    let store = events.store();
    let found = match store.dead_letters(q.subscription.as_deref(), limit).await {
        Ok(found) => found,
        Err(e) => return unavailable(&e),
    };
    let mut items = Vec::with_capacity(found.len());
    for d in found {
        // The event itself, which retention keeps while a dead letter refers to it.
        let event = match store.events_after(d.event_seq - 1, None, 1).await {
            Ok(mut e) => e
                .pop()
                .filter(|e| e.seq == d.event_seq)
                .map(|e| json!(e.event)),
            Err(e) => return unavailable(&e),
        };
        items.push(json!({
            "subscription": d.subscription_id,
            "seq": d.event_seq,
            "attempts": d.attempts,
            "last_error": d.last_error,
            "failed_at": d.failed_at.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
            "event": event,
        }));
    }
    Json(json!({ "dead_letters": items })).into_response()
}

async fn replay(State(events): State<Events>, Query(q): Query<DeadLetterQuery>) -> Response {
    let Some(id) = q.subscription else {
        return problem(
            StatusCode::BAD_REQUEST,
            "name the subscription: ?subscription=ID",
        );
    };
    match events.store().subscription(&id).await {
        Ok(Some(_)) => {}
        Ok(None) => return problem(StatusCode::NOT_FOUND, "no such subscription"),
        Err(e) => return unavailable(&e),
    }
    match events.replay_dead_letters(&id).await {
        Ok(n) => {
            tracing::info!(subscription = %id, replayed = n, "admin API: dead letters replayed");
            Json(json!({ "subscription": id, "replayed": n })).into_response()
        }
        Err(e) => unavailable(&e),
    }
}
