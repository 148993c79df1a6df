//! The sandbox's admin endpoints (API.md 3.16), for people who use MESH as a test double.
//! Only served with `--sandbox`; otherwise every one answers 403 saying so.

use super::{json_typed, upper};
use crate::error::{store_error, ApiError};
use crate::state::AppState;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use chrono::{TimeDelta, Utc};
use mesh_protocol::views::{mailbox_details, message_details};
use mesh_protocol::{ApiVersion, Event, MeshError, Message, MessageType, Metadata, Party, Status};
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
    tracing::info!("sandbox reset: all mailboxes");
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

/// `POST /messageexchange/admin/report`: injects a non-delivery report into an inbox.
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
    let now = Utc::now();
    let bytes = *uuid::Uuid::new_v4().as_bytes();
    let message_id = mesh_protocol::ids::message_id(now, [bytes[0], bytes[1], bytes[2]]);
    let failure = Event {
        status,
        timestamp: now - TimeDelta::milliseconds(1),
        code: Some(req.code),
        event: Some("TRANSFER".into()),
        description: Some(req.description),
        linked_message_id: req.linked_message_id,
    };
    let message = Message {
        message_id: message_id.clone(),
        sender: Party::central_system(),
        recipient: recipient.party(),
        workflow_id: req.workflow_id,
        message_type: MessageType::Report,
        total_chunks: 0,
        file_size: 0,
        metadata: Metadata {
            subject: req.subject.unwrap_or_default(),
            local_id: req.local_id.unwrap_or_default(),
            file_name: req.file_name.unwrap_or_default(),
            ..Default::default()
        },
        events: vec![Event::new(Status::Accepted, now), failure],
        created: now,
        expires: now + TimeDelta::days(state.config().inbox_expiry_days),
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
        timestamp: Utc::now(),
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
