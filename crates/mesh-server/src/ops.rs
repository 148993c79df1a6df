//! The operations listener (`--ops-listen`): metrics, health, readiness and the admin API,
//! on an address of its own.
//!
//! It exists because the MESH port is for MESH clients: under mutual TLS it demands a
//! client certificate that a Prometheus server or a load balancer does not have, and its
//! metrics (mailbox names, volumes) are not for every client to read. So the MESH port no
//! longer serves `/metrics`; the ops listener serves it without TLS, and belongs on
//! loopback or a management network.
//!
//! The admin API (`/admin/v1/…`) needs `Authorization: Bearer <admin token>` (from
//! `--admin-token-file` or `OPENSPINE_ADMIN_TOKEN`); without a configured token it is
//! off. Every call, allowed or refused, is an audit event. It works on either backend and
//! on any node: everything it reads and changes is in the shared store.

use crate::audit;
use crate::handlers::json_typed;
use crate::state::AppState;
use crate::tls::TlsReloader;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, Request, State};
use axum::http::{header, StatusCode};
use axum::middleware::Next;
use axum::response::Response;
use axum::routing::{get, post};
use axum::Router;
use chrono::{DateTime, Utc};
use mesh_protocol::lifecycle::ExpiryReason;
use mesh_protocol::{Message, Status};
use mesh_store::{ActionOutcome, LogEntry, MessageQuery, OperatorAction};
use serde::Deserialize;
use serde_json::{json, Value};

/// What the ops handlers share: the MESH state, and the TLS files to reload.
#[derive(Clone)]
pub struct OpsState {
    pub app: AppState,
    pub tls: Option<TlsReloader>,
}

/// Largest page of a message search.
const MAX_SEARCH: u32 = 1000;

/// MESH's part of the ops listener: metrics, health and readiness come from
/// [`spine_http::ops`], with MESH's admin API merged in.
pub fn router(app: AppState, tls: Option<TlsReloader>) -> Router {
    spine_http::ops::router(
        vec![service_ops(&app)],
        admin_router(app, tls, Router::new()),
    )
}

/// MESH's readiness for the ops listener's `/readyz`.
pub fn service_ops(app: &AppState) -> spine_http::ops::ServiceOps {
    let app = app.clone();
    spine_http::ops::ServiceOps {
        name: "mesh",
        ready: std::sync::Arc::new(move || {
            let app = app.clone();
            Box::pin(async move { crate::handlers::health::readiness(&app).await })
        }),
    }
}

/// The admin API (`/admin/v1/…`), behind the admin token. `others`: other services'
/// admin routes, put behind the same token and audit.
pub fn admin_router(app: AppState, tls: Option<TlsReloader>, others: Router) -> Router {
    let state = OpsState { app, tls };
    Router::new()
        .route("/admin/v1/messages", get(search))
        .route("/admin/v1/messages/{id}", get(message).delete(remove))
        .route("/admin/v1/messages/{id}/expire", post(expire))
        .route("/admin/v1/messages/{id}/redeliver", post(redeliver))
        .route("/admin/v1/mailboxes", get(mailboxes))
        .route("/admin/v1/inboxes", get(inboxes))
        .route("/admin/v1/workflows", get(workflows))
        .route("/admin/v1/reload", post(reload))
        .with_state(state.clone())
        .merge(others)
        .layer(axum::middleware::from_fn_with_state(state, require_admin))
}

/// An admin API answer: JSON with one `error` field saying what went wrong.
fn problem(status: StatusCode, error: &str) -> Response {
    json_typed(status, "application/json", &json!({ "error": error }))
}

/// Checks the admin token (in constant time) and audits the call either way.
async fn require_admin(State(state): State<OpsState>, request: Request, next: Next) -> Response {
    let method = request.method().clone();
    let path = request.uri().path().to_string();
    let peer = spine_http::Peer::of(&request).cloned();
    let peer = peer.as_ref();
    let Some(expected) = state.app.config().admin_token.as_deref() else {
        audit::admin_call(
            peer,
            &method,
            &path,
            "refused: admin API off (no admin token configured)",
        );
        return problem(
            StatusCode::FORBIDDEN,
            "the admin API is off: configure an admin token (--admin-token-file or OPENSPINE_ADMIN_TOKEN)",
        );
    };
    let given = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or("");
    let matches: bool = subtle::ConstantTimeEq::ct_eq(given.as_bytes(), expected.as_bytes()).into();
    if !matches {
        audit::admin_call(peer, &method, &path, "refused: bad or missing admin token");
        return problem(StatusCode::UNAUTHORIZED, "a valid admin token is required");
    }
    let response = next.run(request).await;
    let outcome = format!("answered {}", response.status().as_u16());
    audit::admin_call(peer, &method, &path, &outcome);
    response
}

fn store_failure(e: mesh_store::StoreError) -> Response {
    metrics::counter!("mesh_store_errors_total", "service" => "mesh", "operation" => "admin")
        .increment(1);
    tracing::error!(error = %e, "admin API: store failure");
    problem(
        StatusCode::SERVICE_UNAVAILABLE,
        "the store did not answer; try again",
    )
}

/// A message as the admin API shows it: the stored record plus its current status.
fn message_view(m: &Message) -> Value {
    let mut v = serde_json::to_value(m).unwrap_or(Value::Null);
    if let Some(o) = v.as_object_mut() {
        o.insert("status".into(), json!(m.status().as_str()));
        o.insert(
            "message_type".into(),
            json!(format!("{:?}", m.message_type).to_uppercase()),
        );
    }
    v
}

fn log_view(e: &LogEntry) -> Value {
    json!({
        "seq": e.seq,
        "at": e.at.to_rfc3339_opts(chrono::SecondsFormat::Micros, true),
        "change": e.change.as_str(),
        "status": e.status.as_str(),
        "sender": e.sender,
        "recipient": e.recipient,
        "workflow_id": e.workflow_id,
    })
}

fn upper_id(id: &str) -> String {
    id.trim().to_ascii_uppercase()
}

/// `GET /admin/v1/messages/{id}`: the record and every logged change, oldest first.
async fn message(State(state): State<OpsState>, Path(id): Path<String>) -> Response {
    let id = upper_id(&id);
    let meta = &state.app.store().meta;
    let found = match meta.message(&id).await {
        Ok(m) => m,
        Err(e) => return store_failure(e),
    };
    let history = match meta.message_log(&id).await {
        Ok(h) => h,
        Err(e) => return store_failure(e),
    };
    match found {
        Some(m) => json_typed(
            StatusCode::OK,
            "application/json",
            &json!({
                "message": message_view(&m),
                "history": history.iter().map(log_view).collect::<Vec<_>>(),
            }),
        ),
        // Gone (purged or removed) but still in the event log: its history is the answer.
        None if !history.is_empty() => json_typed(
            StatusCode::OK,
            "application/json",
            &json!({
                "message": Value::Null,
                "history": history.iter().map(log_view).collect::<Vec<_>>(),
            }),
        ),
        None => problem(StatusCode::NOT_FOUND, "no message with this id"),
    }
}

#[derive(Debug, Deserialize)]
struct SearchParams {
    mailbox: Option<String>,
    workflow: Option<String>,
    status: Option<String>,
    local_id: Option<String>,
    since: Option<String>,
    until: Option<String>,
    before: Option<String>,
    limit: Option<u32>,
}

fn parse_time(name: &str, value: &str) -> Result<DateTime<Utc>, Response> {
    DateTime::parse_from_rfc3339(value.trim())
        .map(|t| t.with_timezone(&Utc))
        .map_err(|_| {
            problem(
                StatusCode::BAD_REQUEST,
                &format!("{name} must be an RFC 3339 time, e.g. 2026-12-04T09:30:00Z"),
            )
        })
}

/// `GET /admin/v1/messages?mailbox=&workflow=&status=&local_id=&since=&until=&before=&limit=`:
/// newest first; `next` is the `before` value of the following page.
async fn search(
    State(state): State<OpsState>,
    query: Result<Query<SearchParams>, QueryRejection>,
) -> Response {
    let Ok(Query(p)) = query else {
        return problem(StatusCode::BAD_REQUEST, "unreadable query string");
    };
    let status =
        match p.status.as_deref().map(str::trim) {
            None | Some("") => None,
            Some(s) => match Status::parse(&s.to_ascii_lowercase()) {
                Some(s) => Some(s),
                None => return problem(
                    StatusCode::BAD_REQUEST,
                    "status must be one of uploading, accepted, acknowledged, undeliverable, error",
                ),
            },
        };
    let mut q = MessageQuery {
        mailbox: p.mailbox.as_deref().map(upper_id).filter(|s| !s.is_empty()),
        workflow_id: p
            .workflow
            .map(|w| w.trim().to_string())
            .filter(|s| !s.is_empty()),
        status,
        local_id: p.local_id.filter(|s| !s.is_empty()),
        before_id: p.before.as_deref().map(upper_id).filter(|s| !s.is_empty()),
        limit: p.limit.unwrap_or(100).clamp(1, MAX_SEARCH),
        ..Default::default()
    };
    if let Some(t) = p.since.as_deref().filter(|s| !s.is_empty()) {
        match parse_time("since", t) {
            Ok(t) => q.since = Some(t),
            Err(r) => return r,
        }
    }
    if let Some(t) = p.until.as_deref().filter(|s| !s.is_empty()) {
        match parse_time("until", t) {
            Ok(t) => q.until = Some(t),
            Err(r) => return r,
        }
    }
    let found = match state.app.store().meta.search_messages(&q).await {
        Ok(f) => f,
        Err(e) => return store_failure(e),
    };
    let next = (found.len() as u32 == q.limit)
        .then(|| found.last().map(|m| m.message_id.clone()))
        .flatten();
    json_typed(
        StatusCode::OK,
        "application/json",
        &json!({
            "messages": found.iter().map(message_view).collect::<Vec<_>>(),
            "next": next,
        }),
    )
}

fn action_answer(id: &str, outcome: ActionOutcome, verb: &str) -> Response {
    match outcome {
        ActionOutcome::NotFound => problem(StatusCode::NOT_FOUND, "no message with this id"),
        ActionOutcome::NotApplicable(status) => problem(
            StatusCode::CONFLICT,
            &format!("cannot {verb} message {id}: it is {}", status.as_str()),
        ),
        ActionOutcome::Expired(o) => json_typed(
            StatusCode::OK,
            "application/json",
            &json!({"message_id": id, "outcome": "expired", "reports": o.reports}),
        ),
        ActionOutcome::Removed { bytes, .. } => json_typed(
            StatusCode::OK,
            "application/json",
            &json!({"message_id": id, "outcome": "removed", "bytes_freed": bytes}),
        ),
        ActionOutcome::Redelivered => json_typed(
            StatusCode::OK,
            "application/json",
            &json!({"message_id": id, "outcome": "redelivered"}),
        ),
    }
}

async fn act(state: &OpsState, id: &str, action: OperatorAction, verb: &str) -> Response {
    let id = upper_id(id);
    let app = &state.app;
    match app.store().act_on_message(&id, &action, app.now()).await {
        Ok(outcome) => {
            audit::admin_action(&id, verb, &format!("{outcome:?}"));
            action_answer(&id, outcome, verb)
        }
        Err(e) => store_failure(e),
    }
}

/// `POST /admin/v1/messages/{id}/expire`: out of the inbox now, with its NDR.
async fn expire(State(state): State<OpsState>, Path(id): Path<String>) -> Response {
    let action = OperatorAction::Expire {
        reason: ExpiryReason::ByOperator,
        report_period: state.app.config().lifecycle.inbox_period(),
    };
    act(&state, &id, action, "expire").await
}

/// `POST /admin/v1/messages/{id}/redeliver`: back into its recipient's inbox.
async fn redeliver(State(state): State<OpsState>, Path(id): Path<String>) -> Response {
    let action = OperatorAction::Redeliver {
        inbox_period: state.app.config().lifecycle.inbox_period(),
    };
    act(&state, &id, action, "redeliver").await
}

/// `DELETE /admin/v1/messages/{id}`: the record, its chunks and payloads, for good.
async fn remove(State(state): State<OpsState>, Path(id): Path<String>) -> Response {
    act(&state, &id, OperatorAction::Remove, "remove").await
}

/// `GET /admin/v1/mailboxes`: every loaded mailbox with its waiting messages.
async fn mailboxes(State(state): State<OpsState>) -> Response {
    let directory = state.app.directory();
    // Every inbox with waiting messages (one row per recipient): ranked by depth, a
    // deconfigured mailbox's deep inbox could otherwise push a configured one out.
    let depths = match state.app.store().meta.inbox_depths(u32::MAX).await {
        Ok(d) => d,
        Err(e) => return store_failure(e),
    };
    let now = state.app.now();
    let mut out: Vec<Value> = directory
        .mailboxes()
        .map(|m| {
            let d = depths.iter().find(|d| d.mailbox == m.mailbox_id);
            json!({
                "mailbox_id": m.mailbox_id,
                "mailbox_name": m.mailbox_name,
                "ods_code": m.ods_code,
                "active": m.active,
                "waiting": d.map_or(0, |d| d.waiting),
                "oldest_waiting": d.and_then(|d| d.oldest).map(|t| t.to_rfc3339()),
                "oldest_waiting_age_secs": d.and_then(|d| d.oldest).map(|t| (now - t).num_seconds().max(0)),
            })
        })
        .collect();
    out.sort_by(|a, b| a["mailbox_id"].as_str().cmp(&b["mailbox_id"].as_str()));
    json_typed(
        StatusCode::OK,
        "application/json",
        &json!({ "mailboxes": out }),
    )
}

#[derive(Debug, Deserialize)]
struct TopParams {
    top: Option<u32>,
}

/// `GET /admin/v1/inboxes?top=N`: the deepest inboxes, deepest first.
async fn inboxes(
    State(state): State<OpsState>,
    query: Result<Query<TopParams>, QueryRejection>,
) -> Response {
    let top = query
        .ok()
        .and_then(|Query(q)| q.top)
        .unwrap_or(10)
        .clamp(1, 1000);
    let now = state.app.now();
    match state.app.store().meta.inbox_depths(top).await {
        Ok(depths) => json_typed(
            StatusCode::OK,
            "application/json",
            &json!({
                "inboxes": depths.iter().map(|d| json!({
                    "mailbox_id": d.mailbox,
                    "waiting": d.waiting,
                    "oldest_waiting": d.oldest.map(|t| t.to_rfc3339()),
                    "oldest_waiting_age_secs": d.oldest.map(|t| (now - t).num_seconds().max(0)),
                })).collect::<Vec<_>>()
            }),
        ),
        Err(e) => store_failure(e),
    }
}

/// `GET /admin/v1/workflows`.
async fn workflows(State(state): State<OpsState>) -> Response {
    let directory = state.app.directory();
    let list: Vec<Value> = directory
        .workflows()
        .map(|w| json!({"workflow_id": w.workflow_id, "senders": w.senders, "receivers": w.receivers}))
        .collect();
    json_typed(
        StatusCode::OK,
        "application/json",
        &json!({ "workflows": list }),
    )
}

/// `POST /admin/v1/reload`: the mailbox and workflow files, and the TLS files, as SIGHUP.
async fn reload(State(state): State<OpsState>) -> Response {
    let mut done = Vec::new();
    if let Some(tls) = &state.tls {
        if let Err(e) = tls.reload() {
            metrics::counter!("mesh_reload_errors_total", "service" => "mesh", "what" => "tls")
                .increment(1);
            return problem(
                StatusCode::UNPROCESSABLE_ENTITY,
                &format!("TLS reload failed, the previous certificate stays in use: {e}"),
            );
        }
        done.push("tls");
    }
    if let Err(e) = state.app.reload_directory() {
        metrics::counter!("mesh_reload_errors_total", "service" => "mesh", "what" => "directory")
            .increment(1);
        return problem(
            StatusCode::UNPROCESSABLE_ENTITY,
            &format!("directory reload failed, the previous one stays in use: {e}"),
        );
    }
    done.push("mailboxes and workflows");
    let directory = state.app.directory();
    json_typed(
        StatusCode::OK,
        "application/json",
        &json!({
            "reloaded": done,
            "mailboxes": directory.mailbox_count(),
            "workflows": directory.workflow_count(),
            "warnings": directory.warnings(),
        }),
    )
}
