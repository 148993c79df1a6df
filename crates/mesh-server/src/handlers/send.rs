//! Sending: the first (or only) chunk, and chunks 2…n (API.md 3.8, 3.9).

use super::{json, json_typed, upper};
use crate::caller::Caller;
use crate::error::{store_error, ApiError};
use crate::state::{header_text, AppState};
use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use chrono::Utc;
use futures::{StreamExt, TryStreamExt};
use mesh_protocol::headers::raw;
use mesh_protocol::{
    ApiVersion, ChunkRange, Event, Mailbox, MeshError, Message, MessageType, Metadata, SendHeaders,
    Status,
};
use mesh_store::{ByteStream, ChunkAccepted, StoreError};
use serde_json::json;

fn body_stream(body: Body) -> ByteStream {
    body.into_data_stream()
        .map_err(|e| {
            let e = e.into_inner();
            if e.is::<tower_http::timeout::TimeoutError>() {
                StoreError::Body(crate::error::BODY_TIMEOUT.to_string())
            } else {
                StoreError::Body(e.to_string())
            }
        })
        .boxed()
}

/// While the data directory's disk is low, a send would eat the space kept back for reads
/// and acknowledgements: refused at once, before its body is read, with the MESH 503 that
/// clients retry later.
fn refuse_on_low_disk(state: &AppState, mailbox: &str) -> Result<(), MeshError> {
    if state.disk_low() {
        metrics::counter!("mesh_sends_refused_total", "service" => "mesh", "reason" => "disk_low")
            .increment(1);
        tracing::warn!(mailbox, "send refused: disk low");
        return Err(MeshError::unavailable());
    }
    Ok(())
}

/// The first bytes of every gzip member: magic number and the deflate method.
const GZIP_MAGIC: [u8; 3] = [0x1f, 0x8b, 0x08];

/// Passes `body` through, failing it with [`crate::error::NOT_GZIP`] when its first
/// bytes are not a gzip header. Each chunk is its own gzip member (API.md 5.4), so every
/// chunk declared gzip starts with one; checking the start is enough to refuse a body
/// that is not gzip at all, at the cost of looking at three bytes.
fn gzip_checked(body: ByteStream) -> ByteStream {
    let mut seen = 0usize;
    let checked = body.map(move |piece| {
        let piece = piece?;
        if seen < GZIP_MAGIC.len() {
            let want = &GZIP_MAGIC[seen..];
            let n = want.len().min(piece.len());
            if piece[..n] != want[..n] {
                return Err(StoreError::Body(crate::error::NOT_GZIP.into()));
            }
            seen += n;
        }
        Ok(piece)
    });
    // A body shorter than the header: the check fails at its end.
    let total = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counted = total.clone();
    checked
        .inspect(move |piece| {
            if let Ok(p) = piece {
                counted.fetch_add(p.len(), std::sync::atomic::Ordering::Relaxed);
            }
        })
        .chain(futures::stream::once(async move {
            let n = total.load(std::sync::atomic::Ordering::Relaxed);
            if n > 0 && n < GZIP_MAGIC.len() {
                Err(StoreError::Body(crate::error::NOT_GZIP.into()))
            } else {
                Ok(bytes::Bytes::new())
            }
        }))
        .boxed()
}

/// The body stream of a request, checked as gzip when it says it is.
fn body_for(body: Body, encoding: &str) -> ByteStream {
    let stream = body_stream(body);
    if encoding == "gzip" {
        gzip_checked(stream)
    } else {
        stream
    }
}

/// Refuses early, before reading anything, a body that declares itself too large.
fn check_declared_length(headers: &HeaderMap, limit: u64) -> Result<(), MeshError> {
    let declared =
        header_text(headers, "content-length").and_then(|v| v.trim().parse::<u64>().ok());
    match declared {
        Some(n) if n > limit => Err(MeshError::payload_too_large("request body", limit)),
        _ => Ok(()),
    }
}

/// Workflow permissions (API.md 11 #11): the sender must be registered to send the
/// workflow (code 16) and the recipient to receive it (code 17).
pub(crate) fn check_workflow(
    state: &AppState,
    sender: &Mailbox,
    to: &str,
    workflow_id: &str,
) -> Result<(), MeshError> {
    if !state.config().enforce_workflows {
        return Ok(());
    }
    let directory = state.directory();
    let Some(wf) = directory.workflow(workflow_id) else {
        return Err(MeshError::sender_not_permitted(workflow_id));
    };
    if !wf.senders.iter().any(|s| s == &sender.mailbox_id) {
        return Err(MeshError::sender_not_permitted(workflow_id));
    }
    if !wf.receivers.iter().any(|r| r == to) {
        return Err(MeshError::workflow_not_registered());
    }
    Ok(())
}

/// Legacy control headers that the real service checks when a client sends them.
fn check_legacy_headers(headers: &HeaderMap, sender: &Mailbox) -> Result<(), MeshError> {
    let present = |name| {
        header_text(headers, name)
            .map(|v| v.trim().to_ascii_uppercase())
            .filter(|v| !v.is_empty())
    };
    if present("mex-from").is_some_and(|from| from != sender.mailbox_id) {
        return Err(MeshError::invalid_from_address());
    }
    if present("mex-messagetype").is_some_and(|t| t != "DATA") {
        return Err(MeshError::invalid_message_type());
    }
    Ok(())
}

/// A new DATA message from `sender` to `recipient`, accepted when it has one chunk (it is
/// then complete) and uploading otherwise. Its expiry counts from now.
pub(crate) fn data_message(
    state: &AppState,
    message_id: &str,
    (sender, recipient): (&Mailbox, &Mailbox),
    workflow_id: String,
    total_chunks: u32,
    size: u64,
    metadata: Metadata,
) -> Message {
    let now = state.now();
    let single = total_chunks == 1;
    Message {
        message_id: message_id.to_string(),
        sender: sender.party(),
        recipient: recipient.party(),
        workflow_id,
        message_type: MessageType::Data,
        total_chunks,
        file_size: if single { size } else { 0 },
        metadata,
        events: vec![Event::new(
            if single {
                Status::Accepted
            } else {
                Status::Uploading
            },
            now,
        )],
        created: now,
        expires: mesh_protocol::lifecycle::later(now, state.config().lifecycle.inbox_period()),
        downloaded: None,
    }
}

pub(crate) fn new_message_id(now: chrono::DateTime<Utc>) -> String {
    let bytes = *uuid::Uuid::new_v4().as_bytes();
    mesh_protocol::ids::message_id(now, [bytes[0], bytes[1], bytes[2]])
}

/// `POST /messageexchange/{mailbox}/outbox`.
pub async fn send(
    State(state): State<AppState>,
    Path(mailbox): Path<String>,
    caller: Caller,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let mailbox = upper(&mailbox);
    let version = caller.version()?;
    let sender = caller.mailbox.clone();
    let err = |e| ApiError::new(e, version);
    refuse_on_low_disk(&state, &mailbox).map_err(err)?;
    // Byte for byte (`raw`): what the sender put in a Mex header comes back on download.
    let texts: Vec<(String, String)> = headers
        .iter()
        .map(|(k, v)| (k.as_str().to_string(), raw::decode(v.as_bytes())))
        .collect();
    let h = SendHeaders::parse(|name| {
        texts
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    })
    .map_err(err)?;
    let config = state.config();
    if config.strict_headers {
        check_legacy_headers(&headers, &sender).map_err(err)?;
    }
    if h.total_chunks > config.max_chunks {
        return Err(err(MeshError::invalid_header_chunks()));
    }
    let directory = state.directory();
    let recipient = directory
        .mailbox(&h.to)
        .ok_or_else(|| err(MeshError::unregistered_recipient()))?
        .clone();
    check_workflow(&state, &sender, &h.to, &h.workflow_id).map_err(err)?;
    let limit = config.max_chunk_size.min(config.max_message_size);
    check_declared_length(&headers, limit).map_err(err)?;

    let message_id = new_message_id(state.now());
    let store = state.store();
    let single = h.total_chunks == 1;
    let metadata = Metadata {
        subject: h.subject,
        content_type: h.content_type,
        content_encoding: h.content_encoding.clone(),
        file_name: h.file_name,
        local_id: h.local_id,
        partner_id: h.partner_id,
        checksum: h.checksum,
        encrypted: h.encrypted,
        compressed: h.compressed,
    };
    let build = |size: u64| {
        data_message(
            &state,
            &message_id,
            (&sender, &recipient),
            h.workflow_id,
            h.total_chunks,
            size,
            metadata,
        )
    };
    // Payload durable first, then the message: the store keeps that order.
    let accepted = store
        .accept_message(
            &message_id,
            body_for(body, &h.content_encoding),
            limit,
            build,
        )
        .await
        .map_err(|e| store_error(e, version))?;
    let Some((message, size)) = accepted else {
        return Err(err(MeshError::missing_data_file()));
    };
    metrics::counter!("mesh_chunks_received_total").increment(1);
    metrics::counter!("mesh_bytes_received_total").increment(size);
    if single {
        metrics::counter!("mesh_messages_accepted_total").increment(1);
    }
    tracing::info!(
        message_id,
        from = %message.sender.mailbox_id,
        to = %message.recipient.mailbox_id,
        workflow = %message.workflow_id,
        chunks = message.total_chunks,
        "message received"
    );
    let body = match version {
        ApiVersion::V1 => json!({"messageID": message_id}),
        ApiVersion::V2 => json!({"message_id": message_id}),
    };
    Ok(json(StatusCode::ACCEPTED, version, &body))
}

/// `POST /messageexchange/{mailbox}/outbox/{message_id}/{chunk_number}`.
pub async fn upload_chunk(
    State(state): State<AppState>,
    Path((mailbox, message_id, chunk_number)): Path<(String, String, String)>,
    caller: Caller,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let mailbox = upper(&mailbox);
    let message_id = upper(&message_id);
    let version = caller.version()?;
    let err = |e| ApiError::new(e, version);
    refuse_on_low_disk(&state, &mailbox).map_err(err)?;
    let number = super::chunk_number(&chunk_number).map_err(err)?;
    let chunks_error =
        || err(MeshError::invalid_header_chunks().with_message_id(message_id.clone()));
    let range = header_text(&headers, "mex-chunk-range")
        .as_deref()
        .and_then(ChunkRange::parse)
        .filter(|r| r.number == number)
        .ok_or_else(chunks_error)?;
    let store = state.store();
    let message = super::find_message(&state, &message_id, version)
        .await?
        .ok_or_else(|| err(MeshError::not_found()))?;
    if message.sender.mailbox_id != mailbox {
        crate::audit::cross_mailbox(
            caller.peer.as_ref(),
            &mailbox,
            "chunk for another mailbox's message",
            &message_id,
        );
        return Err(err(MeshError::forbidden()));
    }
    if message.status() != Status::Uploading {
        return Err(err(MeshError::already_complete()));
    }
    if number > message.total_chunks
        || range.total != message.total_chunks
        || message.message_type != MessageType::Data
    {
        return Err(err(MeshError::chunk_beyond_total()));
    }
    let encoding = header_text(&headers, "content-encoding")
        .map(|v| v.trim().to_ascii_lowercase())
        .unwrap_or_default();
    if encoding != message.metadata.content_encoding {
        return Err(err(MeshError::cannot_change_encoding()));
    }
    let config = state.config();
    let stored = store
        .meta
        .stored_bytes(&message_id)
        .await
        .map_err(|e| store_error(e, version))?;
    let limit = config
        .max_chunk_size
        .min(config.max_message_size.saturating_sub(stored));
    check_declared_length(&headers, limit).map_err(err)?;
    // Payload durable first, then its record: the store keeps that order.
    let outcome = store
        .accept_chunk(
            &message_id,
            number,
            body_for(body, &encoding),
            limit,
            state.now(),
        )
        .await
        .map_err(|e| store_error(e, version))?;
    match outcome {
        ChunkAccepted::Stored { completed, size } => {
            metrics::counter!("mesh_chunks_received_total").increment(1);
            metrics::counter!("mesh_bytes_received_total").increment(size);
            if completed {
                metrics::counter!("mesh_messages_accepted_total").increment(1);
                tracing::info!(
                    message_id,
                    chunks = message.total_chunks,
                    "chunked message complete"
                );
            }
        }
        ChunkAccepted::NotUploading => return Err(err(MeshError::already_complete())),
    }
    let body = match version {
        ApiVersion::V1 => json!({"messageID": message_id, "blockID": number}),
        ApiVersion::V2 => json!({"message_id": message_id}),
    };
    Ok(json_typed(
        StatusCode::ACCEPTED,
        version.json_content_type(),
        &body,
    ))
}
