//! The HTTP API (API.md §1): `POST /events`, the subscriptions, and health, with every
//! error of §6 that the service owns. In sandbox mode the same routes answer as the NHS
//! sandbox does (§8): open, stateless, canned.
//!
//! [`router`] is the protected part: the binary puts the front door's bearer layer
//! around it (except in sandbox mode, where no token is needed); [`open_router`] is
//! health.

use crate::Events;
use auth_protocol::gateway::Caller;
use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Extension, Router};
use chrono::Utc;
use events_protocol::event::MAX_EVENT_BYTES;
use events_protocol::subscription::{parse_request, Request, MAX_SUBSCRIPTION_BYTES};
use events_protocol::{
    delivery, event, paging, sandbox, ApiError, Endpoint, ValidationErrors, BASE_PATH,
};
use events_store::SubscriptionWrite;
use serde::Deserialize;
use serde_json::{json, Value};
use spine_events::Published;

const FHIR_JSON: &str = "application/fhir+json";

/// The routes behind the bearer layer.
pub fn router(events: Events) -> Router {
    let not_allowed = || async { error(ApiError::method_not_allowed()) };
    Router::new()
        .route(
            &format!("{BASE_PATH}/events"),
            post(publish).fallback(not_allowed),
        )
        .route(
            &format!("{BASE_PATH}/subscriptions"),
            post(create).get(list).fallback(not_allowed),
        )
        .route(
            &format!("{BASE_PATH}/subscriptions/{{id}}"),
            get(read).put(replace).delete(remove).fallback(not_allowed),
        )
        .with_state(events)
}

/// Health, open to all (the NHS sandbox's `/_ping`, `/_status` and `/health`).
pub fn open_router(events: Events) -> Router {
    Router::new()
        .route(&format!("{BASE_PATH}/_ping"), get(status))
        .route(&format!("{BASE_PATH}/_status"), get(status))
        .route(&format!("{BASE_PATH}/health"), get(status))
        .with_state(events)
}

/// Both, with the platform's request-id mirroring, metrics and body timeout: what the
/// binary serves (the API part inside the bearer layer it adds).
pub fn layers(router: Router, body_idle_timeout: std::time::Duration) -> Router {
    router
        .layer(axum::middleware::from_fn(
            spine_http::ids::mirror_request_ids,
        ))
        .layer(axum::middleware::from_fn_with_state(
            crate::metrics::REQUESTS,
            spine_http::metrics::track,
        ))
        .layer(tower_http::timeout::RequestBodyTimeoutLayer::new(
            body_idle_timeout,
        ))
        .layer(tower_http::catch_panic::CatchPanicLayer::new())
}

fn error(e: ApiError) -> Response {
    answer(
        StatusCode::from_u16(e.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
        &e.body,
        "application/json",
    )
}

fn answer(status: StatusCode, body: &Value, content_type: &'static str) -> Response {
    let mut r = (status, body.to_string()).into_response();
    r.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    r
}

fn store_failure(e: events_store::StoreError) -> Response {
    tracing::error!(error = %e, "events: store failure");
    error(ApiError::unavailable())
}

async fn status(State(events): State<Events>) -> Response {
    answer(
        StatusCode::OK,
        &sandbox::status(&events.config().version),
        "application/json",
    )
}

/// The body, up to `limit` bytes.
async fn read_body(body: Body, limit: usize) -> Result<bytes::Bytes, Response> {
    axum::body::to_bytes(body, limit).await.map_err(|e| {
        let too_large =
            std::error::Error::source(&e).is_some_and(|s| s.to_string().contains("length limit"));
        if too_large {
            error(ApiError::too_large(limit))
        } else {
            error(ApiError::validation(&ValidationErrors::one(
                "body",
                "The request body could not be read",
            )))
        }
    })
}

fn media_type(headers: &HeaderMap) -> String {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .map(|v| v.trim().to_ascii_lowercase())
        .unwrap_or_default()
}

/// Who owns what this request makes or reads: the calling app.
fn owner(caller: &Option<Extension<Caller>>) -> Option<String> {
    caller.as_ref().map(|c| c.token.client_id.clone())
}

/// The event types the caller may publish, from its registry flags for this API
/// (`permissions`: a list, or one comma-separated string, of `events:create:<type>`;
/// `events:create:*` for any type). `None`: no permission on the service at all.
fn publish_permissions(caller: &Option<Extension<Caller>>) -> Option<Vec<String>> {
    let flags = caller.as_ref()?.flags.as_ref()?;
    let items: Vec<String> = match flags.get("permissions")? {
        Value::String(s) => s.split(',').map(|p| p.trim().to_string()).collect(),
        Value::Array(a) => a
            .iter()
            .filter_map(Value::as_str)
            .map(str::to_string)
            .collect(),
        _ => return None,
    };
    let types: Vec<String> = items
        .iter()
        .filter_map(|p| p.strip_prefix("events:create:"))
        .map(str::to_string)
        .collect();
    (!types.is_empty()).then_some(types)
}

async fn publish(
    State(events): State<Events>,
    caller: Option<Extension<Caller>>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let body = match read_body(body, MAX_EVENT_BYTES).await {
        Ok(b) => b,
        Err(r) => return r,
    };
    if events.config().sandbox {
        return sandbox_publish(&body);
    }
    let Some(permitted) = publish_permissions(&caller) else {
        return error(ApiError::unauthorised());
    };
    let media = media_type(&headers);
    let cloudevents =
        match media.as_str() {
            "application/cloudevents+json" => true,
            "application/json" => false,
            _ => return error(ApiError::validation(&ValidationErrors::one(
                "Content-Type",
                "Please provide application/cloudevents+json, or application/json for a v1 event",
            ))),
        };
    let accepted = match event::parse(&body, cloudevents) {
        Ok(a) => a,
        Err(e) => {
            ::metrics::counter!("events_published_total", "service" => "events", "outcome" => "refused")
                .increment(1);
            return error(ApiError::validation(&e));
        }
    };
    let event_type = &accepted.event.event_type;
    // MESH's own types come only from MESH, whatever the app may publish.
    if event_type.starts_with(events_protocol::MESH_FAMILY)
        || !permitted.iter().any(|t| t == "*" || t == event_type)
    {
        return error(ApiError::type_not_permitted());
    }
    let publisher = owner(&caller).unwrap_or_default();
    match events.publish(&accepted, &publisher).await {
        Ok(Published::Accepted { .. } | Published::Duplicate) => answer(
            StatusCode::OK,
            &json!({"id": accepted.event.id}),
            "application/json",
        ),
        Err(e) => store_failure(e),
    }
}

fn sandbox_publish(body: &[u8]) -> Response {
    let Ok(value) = serde_json::from_slice::<Value>(body) else {
        return error(ApiError::sandbox_failure());
    };
    if !sandbox::time_parses(value.get("time")) {
        return error(ApiError::validation(&ValidationErrors::one(
            "time",
            event::TIME_MESSAGE,
        )));
    }
    answer(
        StatusCode::OK,
        &json!({"id": value.get("id").cloned().unwrap_or(Value::Null)}),
        "application/json",
    )
}

/// Whether this service can deliver to `endpoint` (E1 on `channel.endpoint` if not).
fn endpoint_available(events: &Events, endpoint: &Endpoint) -> Result<(), ValidationErrors> {
    let config = events.config();
    let refuse = |why: &str| Err(ValidationErrors::one("channel.endpoint", why));
    match endpoint {
        Endpoint::Mesh { mailbox, .. } => match (&config.mesh_mailbox, &events.inner.mailboxes) {
            (Some(_), Some(m)) if m.knows(mailbox) => Ok(()),
            (Some(_), Some(_)) => refuse("Please provide a MESH mailbox that exists"),
            _ => refuse("MESH endpoints are not available on this service"),
        },
        Endpoint::Sqs { .. } | Endpoint::Nats { .. } if config.nats_url.is_none() => {
            refuse("Queue endpoints are not available on this service")
        }
        Endpoint::Webhook { .. } if !config.webhooks => {
            refuse("Webhook endpoints are not enabled on this service")
        }
        _ => Ok(()),
    }
}

/// A create or replace body, checked.
async fn subscription_body(
    events: &Events,
    body: Body,
    path_id: Option<&str>,
) -> Result<Request, Response> {
    let body = read_body(body, MAX_SUBSCRIPTION_BYTES).await?;
    let Ok(value) = serde_json::from_slice::<Value>(&body) else {
        return Err(error(ApiError::validation(&ValidationErrors::one(
            "body",
            "Please provide a valid JSON body",
        ))));
    };
    let request = parse_request(&value, path_id).map_err(|e| error(ApiError::validation(&e)))?;
    events_protocol::subscription::check_mesh_events(&request)
        .map_err(|e| error(ApiError::validation(&e)))?;
    endpoint_available(events, &request.endpoint).map_err(|e| error(ApiError::validation(&e)))?;
    Ok(request)
}

/// The sandbox's create and replace checks: JSON, then `resourceType`.
fn sandbox_subscription_body(body: &[u8]) -> Result<(), ApiError> {
    let Ok(value) = serde_json::from_slice::<Value>(body) else {
        return Err(ApiError::sandbox_failure());
    };
    if value.get("resourceType").and_then(Value::as_str) != Some("Subscription") {
        return Err(ApiError::validation(&ValidationErrors::one(
            "resourceType",
            events_protocol::subscription::RESOURCE_TYPE_MESSAGE,
        )));
    }
    Ok(())
}

async fn create(
    State(events): State<Events>,
    caller: Option<Extension<Caller>>,
    body: Body,
) -> Response {
    if events.config().sandbox {
        let body = match read_body(body, MAX_SUBSCRIPTION_BYTES).await {
            Ok(b) => b,
            Err(r) => return r,
        };
        return match sandbox_subscription_body(&body) {
            Ok(()) => answer(
                StatusCode::OK,
                &json!({"id": sandbox::CREATED_ID}),
                "application/json",
            ),
            Err(e) => error(e),
        };
    }
    let Some(owner) = owner(&caller) else {
        return error(ApiError::unauthorised());
    };
    let request = match subscription_body(&events, body, None).await {
        Ok(r) => r,
        Err(r) => return r,
    };
    let id = uuid::Uuid::new_v4().to_string();
    match events
        .store()
        .create_subscription(&owner, &id, &request, Utc::now())
        .await
    {
        Ok(SubscriptionWrite::Done) => {
            let mut body = json!({ "id": id });
            if matches!(request.endpoint, Endpoint::Webhook { .. }) {
                // Given once: the subscriber verifies deliveries with it.
                body["webhookSecret"] =
                    json!(delivery::webhook_secret(&events.config().webhook_key, &id));
            }
            let mut r = answer(StatusCode::CREATED, &body, "application/json");
            if let Ok(location) = HeaderValue::from_str(&format!(
                "{}/subscriptions/{id}",
                events.config().public_base_url
            )) {
                r.headers_mut().insert(header::LOCATION, location);
            }
            r
        }
        Ok(SubscriptionWrite::Duplicate(existing)) => error(ApiError::duplicate(&existing)),
        Ok(SubscriptionWrite::NotFound) => error(ApiError::internal()),
        Err(e) => store_failure(e),
    }
}

#[derive(Deserialize)]
struct ListQuery {
    continue_from: Option<String>,
}

async fn list(
    State(events): State<Events>,
    caller: Option<Extension<Caller>>,
    Query(query): Query<ListQuery>,
) -> Response {
    if events.config().sandbox {
        return answer(StatusCode::OK, &sandbox::list(), "application/json");
    }
    let Some(owner) = owner(&caller) else {
        return error(ApiError::unauthorised());
    };
    let after = match &query.continue_from {
        None => 0,
        Some(t) => match paging::parse(t) {
            Some(n) => n,
            None => return error(ApiError::bad_continue_from()),
        },
    };
    let page = paging::PAGE_SIZE;
    let mut found = match events
        .store()
        .subscriptions(&owner, after, u32::try_from(page + 1).unwrap_or(u32::MAX))
        .await
    {
        Ok(f) => f,
        Err(e) => return store_failure(e),
    };
    let more = found.len() > page;
    found.truncate(page);
    let mut links = vec![json!({"relation": "self", "url": "/subscriptions"})];
    if more {
        if let Some(last) = found.last() {
            links.push(json!({"relation": "next",
                              "url": format!("/subscriptions?continue_from={}", paging::token(last.seq))}));
        }
    }
    let entries: Vec<Value> = found.iter().map(|s| s.subscription.resource()).collect();
    answer(
        StatusCode::OK,
        &json!({"resourceType": "Bundle", "type": "searchset", "link": links, "entry": entries}),
        FHIR_JSON,
    )
}

/// The caller's subscription `id`: E2 for a malformed id, E8 for one that is not there
/// or not the caller's (another app's subscriptions do not exist for it).
async fn own(
    events: &Events,
    caller: &Option<Extension<Caller>>,
    id: &str,
) -> Result<(String, events_store::StoredSubscription), Response> {
    if !events_protocol::is_uuid_v4(id) {
        return Err(error(ApiError::bad_subscription_id()));
    }
    let Some(owner) = owner(caller) else {
        return Err(error(ApiError::unauthorised()));
    };
    match events.store().subscription(id).await {
        Ok(Some(s)) if s.owner == owner => Ok((owner, s)),
        Ok(_) => Err(error(ApiError::not_found())),
        Err(e) => Err(store_failure(e)),
    }
}

async fn read(
    State(events): State<Events>,
    caller: Option<Extension<Caller>>,
    Path(id): Path<String>,
) -> Response {
    if events.config().sandbox {
        return match sandbox::subscription(&id) {
            Some(s) => answer(StatusCode::OK, &s, "application/json"),
            None => error(ApiError::not_found()),
        };
    }
    match own(&events, &caller, &id).await {
        Ok((_, s)) => answer(StatusCode::OK, &s.subscription.resource(), FHIR_JSON),
        Err(r) => r,
    }
}

async fn replace(
    State(events): State<Events>,
    caller: Option<Extension<Caller>>,
    Path(id): Path<String>,
    body: Body,
) -> Response {
    if events.config().sandbox {
        let body = match read_body(body, MAX_SUBSCRIPTION_BYTES).await {
            Ok(b) => b,
            Err(r) => return r,
        };
        if let Err(e) = sandbox_subscription_body(&body) {
            return error(e);
        }
        return match id.as_str() {
            sandbox::CONFLICT_PUT_ID => error(ApiError::duplicate(sandbox::CONFLICT_EXISTING_ID)),
            sandbox::S1_ID | sandbox::S2_ID => StatusCode::NO_CONTENT.into_response(),
            _ => error(ApiError::not_found()),
        };
    }
    let owner = match own(&events, &caller, &id).await {
        Ok((owner, _)) => owner,
        Err(r) => return r,
    };
    let request = match subscription_body(&events, body, Some(&id)).await {
        Ok(r) => r,
        Err(r) => return r,
    };
    match events
        .store()
        .replace_subscription(&owner, &id, &request, Utc::now())
        .await
    {
        Ok(SubscriptionWrite::Done) => {
            events.inner.wake.notify_one();
            StatusCode::NO_CONTENT.into_response()
        }
        Ok(SubscriptionWrite::Duplicate(existing)) => error(ApiError::duplicate(&existing)),
        Ok(SubscriptionWrite::NotFound) => error(ApiError::not_found()),
        Err(e) => store_failure(e),
    }
}

async fn remove(
    State(events): State<Events>,
    caller: Option<Extension<Caller>>,
    Path(id): Path<String>,
) -> Response {
    if events.config().sandbox {
        return match id.as_str() {
            sandbox::S1_ID | sandbox::S2_ID => StatusCode::NO_CONTENT.into_response(),
            _ => error(ApiError::not_found()),
        };
    }
    let owner = match own(&events, &caller, &id).await {
        Ok((owner, _)) => owner,
        Err(r) => return r,
    };
    match events.store().delete_subscription(&owner, &id).await {
        Ok(true) => StatusCode::NO_CONTENT.into_response(),
        Ok(false) => error(ApiError::not_found()),
        Err(e) => store_failure(e),
    }
}
