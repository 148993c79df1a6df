//! The sandbox's admin endpoints (API.md 3.16), for people who use MESH as a test double.
//! Only served with `--sandbox`; otherwise every one answers 403 saying so.

use super::{json_typed, upper};
use crate::error::{store_error, ApiError};
use crate::state::AppState;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use chrono::TimeDelta;
use mesh_protocol::lifecycle::{later, NDR_CODE, NDR_EVENT, SANDBOX_EXPIRY_DAYS};
use mesh_protocol::views::{mailbox_details, message_details};
use mesh_protocol::{
    ApiVersion, Event, ExpiryReason, MeshError, Message, MessageType, Metadata, Party, Status,
};
use serde::Deserialize;
use serde_json::json;

const V: ApiVersion = ApiVersion::V1;

fn guard(state: &AppState) -> Result<(), ApiError> {
    if state.config().sandbox {
        Ok(())
    } else {
        Err(ApiError::new(MeshError::sandbox_only(), V))
    }
}

fn ok(body: serde_json::Value) -> Response {
    json_typed(StatusCode::OK, "application/json", &body)
}

fn parse_body<T: for<'de> Deserialize<'de>>(body: &Bytes) -> Result<T, ApiError> {
    serde_json::from_slice(body).map_err(|e| {
        ApiError::new(
            MeshError::validation("json_invalid", &["body"], e.to_string()),
            V,
        )
    })
}

/// `DELETE /admin/reset`: every message gone, fixtures reloaded from their files.
pub async fn reset_all(State(state): State<AppState>) -> Result<Response, ApiError> {
    guard(&state)?;
    state
        .store()
        .reset_all()
        .await
        .map_err(|e| store_error(e, V))?;
    state.reload_directory().map_err(|e| {
        tracing::error!(error = %e, "fixture reload failed");
        ApiError::new(MeshError::internal(), V)
    })?;
    state.clock().reset();
    tracing::info!("sandbox reset: all mailboxes (and the clock)");
    Ok(ok(json!({"message": "all mailboxes reset"})))
}

/// `DELETE /admin/reset/{mailbox}`: empties that mailbox's inbox and outbox lists.
pub async fn reset_mailbox(
    State(state): State<AppState>,
    Path(mailbox): Path<String>,
) -> Result<Response, ApiError> {
    guard(&state)?;
    let mailbox = upper(&mailbox);
    if state.directory().mailbox(&mailbox).is_none() {
        return Err(ApiError::new(MeshError::admin_mailbox_missing(), V));
    }
    state
        .store()
        .meta
        .reset_mailbox(&mailbox)
        .await
        .map_err(|e| store_error(e, V))?;
    Ok(ok(json!({"message": format!("mailbox {mailbox} reset")})))
}

#[derive(Deserialize)]
pub struct CreateReport {
    mailbox_id: String,
    code: String,
    description: String,
    workflow_id: String,
    #[serde(default)]
    subject: Option<String>,
    #[serde(default)]
    local_id: Option<String>,
    #[serde(default)]
    file_name: Option<String>,
    #[serde(default)]
    linked_message_id: Option<String>,
    #[serde(default)]
    status: Option<String>,
}

/// `POST /messageexchange/admin/report`: injects a report into an inbox, as the sandbox
/// does (API.md 3.16). Status `undeliverable` (the default) makes the sandbox's own NDR:
/// whatever code and description were asked for, it carries code 14, event `SEND`, "Message
/// not collected by recipient after 5 days", the linked id, subject "NDR: <subject>" (or
/// "NDR"), the local id and no file name. Status `error` makes a report with exactly the
/// code, description, subject, local id and file name given, event `TRANSFER`.
pub async fn create_report(
    State(state): State<AppState>,
    body: Bytes,
) -> Result<Response, ApiError> {
    guard(&state)?;
    let req: CreateReport = parse_body(&body)?;
    let status = match req.status.as_deref().unwrap_or("undeliverable") {
        "undeliverable" => Status::Undeliverable,
        "error" => Status::Error,
        _ => {
            return Err(ApiError::new(
                MeshError::validation(
                    "enum",
                    &["body", "status"],
                    "status must be undeliverable or error",
                ),
                V,
            ))
        }
    };
    let mailbox_id = upper(&req.mailbox_id);
    let directory = state.directory();
    let recipient = directory
        .mailbox(&mailbox_id)
        .ok_or_else(|| ApiError::new(MeshError::admin_mailbox_missing(), V))?;
    let now = state.now();
    let bytes = *uuid::Uuid::new_v4().as_bytes();
    let message_id = mesh_protocol::ids::message_id(now, [bytes[0], bytes[1], bytes[2]]);
    let (failure, metadata) = match status {
        Status::Undeliverable => (
            Event {
                status: Status::Error,
                timestamp: now - TimeDelta::milliseconds(1),
                code: Some(NDR_CODE.into()),
                event: Some(NDR_EVENT.into()),
                description: Some(
                    ExpiryReason::NotCollected {
                        days: SANDBOX_EXPIRY_DAYS,
                    }
                    .description(),
                ),
                linked_message_id: req.linked_message_id,
            },
            Metadata {
                subject: match req.subject.as_deref() {
                    None | Some("") => "NDR".into(),
                    Some(s) => format!("NDR: {s}"),
                },
                local_id: req.local_id.unwrap_or_default(),
                ..Default::default()
            },
        ),
        _ => (
            Event {
                status,
                timestamp: now - TimeDelta::milliseconds(1),
                code: Some(req.code),
                event: Some("TRANSFER".into()),
                description: Some(req.description),
                linked_message_id: req.linked_message_id,
            },
            Metadata {
                subject: req.subject.unwrap_or_default(),
                local_id: req.local_id.unwrap_or_default(),
                file_name: req.file_name.unwrap_or_default(),
                ..Default::default()
            },
        ),
    };
    let message = Message {
        message_id: message_id.clone(),
        sender: Party::central_system(),
        recipient: recipient.party(),
        workflow_id: req.workflow_id,
        message_type: MessageType::Report,
        total_chunks: 0,
        file_size: 0,
        metadata,
        events: vec![Event::new(Status::Accepted, now), failure],
        created: now,
        expires: later(now, state.config().lifecycle.inbox_period()),
        downloaded: None,
    };
    let empty = mesh_store::ChunkRecord {
        size: 0,
        location: mesh_store::ChunkLocation::Inline(Bytes::new()),
    };
    state
        .store()
        .meta
        .create_message(&message, &empty)
        .await
        .map_err(|e| store_error(e, V))?;
    Ok(ok(json!({"message_id": message_id})))
}

#[derive(Deserialize)]
pub struct AddEvent {
    status: String,
    #[serde(default)]
    code: Option<String>,
    #[serde(default)]
    event: Option<String>,
    #[serde(default)]
    description: Option<String>,
    #[serde(default)]
    linked_message_id: Option<String>,
}

/// `POST /admin/message/{id}/event`: pushes a status event (e.g. to simulate non-delivery).
pub async fn add_event(
    State(state): State<AppState>,
    Path(message_id): Path<String>,
    body: Bytes,
) -> Result<Response, ApiError> {
    guard(&state)?;
    let req: AddEvent = parse_body(&body)?;
    let status = Status::parse(&req.status).ok_or_else(|| {
        ApiError::new(
            MeshError::validation("enum", &["body", "status"], "unknown status"),
            V,
        )
    })?;
    let event = Event {
        status,
        timestamp: state.now(),
        code: req.code,
        event: req.event,
        description: req.description,
        linked_message_id: req.linked_message_id,
    };
    let found = state
        .store()
        .meta
        .add_event(&upper(&message_id), &event)
        .await
        .map_err(|e| store_error(e, V))?;
    if !found {
        return Err(ApiError::new(MeshError::not_found(), V));
    }
    Ok(StatusCode::OK.into_response())
}

/// Mailbox details. The path is not upper-cased here, as in the sandbox.
pub async fn mailbox(
    State(state): State<AppState>,
    Path(mailbox): Path<String>,
) -> Result<Response, ApiError> {
    guard(&state)?;
    let directory = state.directory();
    let mb = directory
        .mailbox(&mailbox)
        .ok_or_else(|| ApiError::new(MeshError::admin_mailbox_missing(), V))?;
    Ok(ok(mailbox_details(mb)))
}

pub async fn message(
    State(state): State<AppState>,
    Path(message_id): Path<String>,
) -> Result<Response, ApiError> {
    guard(&state)?;
    let message = state
        .store()
        .meta
        .message(&upper(&message_id))
        .await
        .map_err(|e| store_error(e, V))?
        .ok_or_else(|| ApiError::new(MeshError::not_found(), V))?;
    Ok(ok(message_details(&message)))
}

#[derive(Deserialize)]
pub struct AdvanceClock {
    advance_secs: i64,
}

/// `POST /admin/clock` (an OpenSpine extension, sandbox only): moves the server's clock
/// forward, so a test can make five days pass and see what MESH does then. `DELETE
/// /admin/reset` puts it back.
pub async fn advance_clock(
    State(state): State<AppState>,
    body: Bytes,
) -> Result<Response, ApiError> {
    guard(&state)?;
    let req: AdvanceClock = parse_body(&body)?;
    // Up to a century, forwards only: the clock never runs backwards under a message.
    if !(0..=100 * 366 * 86_400).contains(&req.advance_secs) {
        return Err(ApiError::new(
            MeshError::validation(
                "range",
                &["body", "advance_secs"],
                "advance_secs must be between 0 and 3162240000",
            ),
            V,
        ));
    }
    state.clock().advance(TimeDelta::seconds(req.advance_secs));
    let now = state.now();
    tracing::info!(advanced_secs = req.advance_secs, now = %now, "sandbox clock moved");
    Ok(ok(json!({"now": mesh_protocol::views::iso_time(now)})))
}

/// `POST /admin/lifecycle` (an OpenSpine extension, sandbox only): runs the lifecycle
/// sweep now instead of at its next tick, and answers what it did.
pub async fn run_lifecycle(State(state): State<AppState>) -> Result<Response, ApiError> {
    guard(&state)?;
    // A sweep skips rows another writer holds at that instant (a download being recorded,
    // another node's batch); the caller asked for everything due now, so sweep again for
    // up to a second while work is left.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(1);
    let mut total = crate::lifecycle::SweepReport::default();
    loop {
        let r = crate::lifecycle::sweep(&state)
            .await
            .map_err(|e| store_error(e, V))?;
        total.add(&r);
        if r.backlog == 0 || std::time::Instant::now() >= deadline {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    Ok(ok(serde_json::to_value(total).unwrap_or_default()))
}
