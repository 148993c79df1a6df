//! Download by chunk and HEAD metadata (API.md 3.4–3.6, 4.5, 5.5, 5.6).

use super::upper;
use crate::caller::Caller;
use crate::error::{store_error, ApiError};
use crate::state::{header_text, AppState};
use async_compression::tokio::bufread::GzipDecoder;
use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, HeaderName, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use futures::{StreamExt, TryStreamExt};
use mesh_protocol::headers::{accepts_gzip, raw};
use mesh_protocol::views::download_headers;
use mesh_protocol::{ApiVersion, MeshError, MessageType, Status};
use std::io::Write;
use tokio_util::io::{ReaderStream, StreamReader};

/// Stored-plain chunks up to this size are gzipped on the fly for v2 clients that accept
/// gzip, as the sandbox does; larger ones are sent as stored, so a download never holds
/// a whole large chunk in memory.
const ON_THE_FLY_GZIP_MAX: u64 = 1024 * 1024;

pub async fn download_first(
    state: State<AppState>,
    Path((mailbox, message_id)): Path<(String, String)>,
    caller: Caller,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    download(state, mailbox, message_id, "1".into(), caller, headers).await
}

pub async fn download_chunk(
    state: State<AppState>,
    Path((mailbox, message_id, chunk)): Path<(String, String, String)>,
    caller: Caller,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    download(state, mailbox, message_id, chunk, caller, headers).await
}

fn with_headers(mut response: Response, pairs: Vec<(&'static str, String)>) -> Response {
    let h = response.headers_mut();
    for (name, value) in pairs {
        // The sender's bytes exactly as they were sent (see `raw`).
        if let Ok(v) = HeaderValue::from_bytes(&raw::encode(&value)) {
            h.insert(HeaderName::from_static(name), v);
        }
    }
    response
}

async fn download(
    State(state): State<AppState>,
    mailbox: String,
    message_id: String,
    chunk: String,
    caller: Caller,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let mailbox = upper(&mailbox);
    let message_id = upper(&message_id);
    let version = caller.version()?;
    let err = |e| ApiError::new(e, version);
    let number = super::chunk_number(&chunk).map_err(err)?;
    let found = match mesh_protocol::ids::plausible(&message_id) {
        true => state
            .store()
            .meta
            .message_with_chunk(&message_id, number)
            .await
            .map_err(|e| store_error(e, version))?,
        false => None,
    };
    let (message, record) = found.ok_or_else(|| err(MeshError::message_does_not_exist()))?;
    if message.recipient.mailbox_id != mailbox {
        crate::audit::cross_mailbox(
            caller.peer.as_ref(),
            &mailbox,
            "download of another mailbox's message",
            &message_id,
        );
        return Err(err(MeshError::forbidden()));
    }
    if !matches!(message.status(), Status::Accepted | Status::Acknowledged) {
        return Err(err(MeshError::gone()));
    }
    let mut pairs = download_headers(&message, number);
    if message.message_type == MessageType::Report {
        mark_downloaded(&state, &message).await;
        pairs.push(("content-length", "0".into()));
        return Ok(with_headers(StatusCode::OK.into_response(), pairs));
    }
    if number > message.total_chunks {
        return Err(err(MeshError::message_does_not_exist()));
    }
    let store = state.store();
    let record = record.ok_or_else(|| err(MeshError::message_does_not_exist()))?;
    let mut stream = match store.read_chunk(&record).await {
        Ok(stream) => stream,
        Err(e) if e.is_not_found() => {
            return Err(err(
                if payload_lost(&state, &message, &mailbox, number).await {
                    MeshError::gone()
                } else {
                    MeshError::unavailable()
                },
            ));
        }
        Err(e) => return Err(store_error(e, version)),
    };
    let wants_gzip = accepts_gzip(header_text(&headers, "accept-encoding").as_deref());
    let mut stored_gzip = message.is_gzip();
    if stored_gzip && !wants_gzip {
        // Stored before uploads were checked: a body labelled gzip that is not gzip is
        // sent as it was stored, not fed to a decoder that would fail mid-answer.
        let first = stream.next().await;
        if let Some(Ok(piece)) = &first {
            if piece.len() >= 2 && piece[..2] != [0x1f, 0x8b] {
                tracing::warn!(
                    message_id = %message.message_id,
                    mailbox = %mailbox,
                    "stored body labelled gzip is not gzip: sent as stored"
                );
                stored_gzip = false;
            }
        }
        stream = futures::stream::iter(first).chain(stream).boxed();
    }
    let mut gzip_out = false;
    let mut length = Some(record.size);
    let body = if stored_gzip && wants_gzip {
        gzip_out = true;
        Body::from_stream(stream)
    } else if stored_gzip {
        // Each chunk is its own gzip member (API.md 5.4), so chunks decode independently.
        length = None;
        let reader = StreamReader::new(stream.map_err(std::io::Error::other));
        let mut decoder = GzipDecoder::new(reader);
        decoder.multiple_members(true);
        let (id, who) = (message.message_id.clone(), mailbox.clone());
        // The status line is already sent when a corrupt member is found: the connection
        // can only be closed, but never silently.
        Body::from_stream(ReaderStream::new(decoder).inspect_err(move |e| {
            ::metrics::counter!("mesh_download_failures_total", "service" => "mesh", "reason" => "gzip")
                .increment(1);
            tracing::error!(
                message_id = %id,
                mailbox = %who,
                error = %e,
                "stored gzip body does not decode: download cut short"
            );
        }))
    } else if wants_gzip && version == ApiVersion::V2 && record.size <= ON_THE_FLY_GZIP_MAX {
        let plain: Vec<u8> = stream
            .try_fold(
                Vec::with_capacity(record.size as usize),
                |mut acc, b| async move {
                    acc.extend_from_slice(&b);
                    Ok(acc)
                },
            )
            .await
            .map_err(|e| store_error(e, version))?;
        let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        let gz = enc
            .write_all(&plain)
            .and_then(|()| enc.finish())
            .map_err(|e| store_error(e.into(), version))?;
        gzip_out = true;
        length = Some(gz.len() as u64);
        Body::from(gz)
    } else {
        Body::from_stream(stream)
    };
    if message.metadata.compressed || gzip_out {
        pairs.push(("mex-content-compressed", "Y".into()));
    }
    if gzip_out {
        pairs.push(("content-encoding", "gzip".into()));
    }
    let content_type = if version == ApiVersion::V2
        && message.total_chunks < 2
        && !message.metadata.content_type.is_empty()
    {
        message.metadata.content_type.clone()
    } else {
        "application/octet-stream".into()
    };
    pairs.push(("content-type", content_type));
    if let Some(n) = length {
        pairs.push(("content-length", n.to_string()));
    }
    let status = if number >= message.total_chunks {
        mark_downloaded(&state, &message).await;
        StatusCode::OK
    } else {
        StatusCode::PARTIAL_CONTENT
    };
    metrics::counter!("mesh_chunks_sent_total").increment(1);
    tracing::info!(
        message_id = %message.message_id,
        mailbox = %mailbox,
        chunk = number,
        chunks = message.total_chunks,
        "message downloaded"
    );
    Ok(with_headers((status, body).into_response(), pairs))
}

/// A message whose payload is gone for good (deleted or lost outside the server) would
/// answer 503 on every download and stop a client that works through its inbox in
/// order. It becomes undeliverable instead, as if it had expired: it leaves the inbox,
/// its sender gets a non-delivery report saying why, and the event is logged, audited
/// and counted, so an operator can find it (admin API: search by status) and redeliver
/// it once the payload is restored, or remove it. This download answers 410, like any
/// message no longer available.
///
/// Unless many payloads go missing at once, or the payload store does not answer: that
/// is an unmounted volume or a wrong bucket, not lost messages, and failing every message
/// of the store for it would be a disaster. Then nothing is marked, the download answers
/// 503 (clients retry) and an error says what to look at. Returns whether the message
/// was dealt with as lost.
async fn payload_lost(
    state: &AppState,
    message: &mesh_protocol::Message,
    mailbox: &str,
    chunk: u32,
) -> bool {
    if state.store().blobs.ping().await.is_err() || !lost_payload_budget() {
        tracing::error!(
            message_id = %message.message_id,
            mailbox,
            "payloads are missing and the payload store is unreachable, or more than \
             {LOST_PER_MINUTE} went missing within a minute: is the payload volume mounted, \
             the bucket right? Not marking messages undeliverable; answering 503"
        );
        return false;
    }
    ::metrics::counter!("mesh_payloads_lost_total", "service" => "mesh").increment(1);
    let action = mesh_store::OperatorAction::Expire {
        reason: mesh_protocol::lifecycle::ExpiryReason::PayloadLost,
        report_period: state.config().lifecycle.inbox_period(),
    };
    let done = state
        .store()
        .act_on_message(&message.message_id, &action, state.now())
        .await;
    let outcome = match &done {
        Ok(mesh_store::ActionOutcome::Expired(_)) => "message made undeliverable, sender notified",
        // Already acknowledged (a download after the acknowledgement): nothing to change.
        Ok(_) => "message left as it is",
        Err(_) => "could not mark the message undeliverable",
    };
    let error = done.as_ref().err().map(|e| e.to_string());
    crate::audit::payload_lost(
        None,
        &crate::audit::PayloadLost {
            message_id: &message.message_id,
            mailbox,
            sender: &message.sender.mailbox_id,
            chunk,
            message_status: message.status().as_str(),
            outcome,
            error: error.as_deref(),
        },
    );
    true
}

/// Most messages one process marks undeliverable for a missing payload in a minute.
const LOST_PER_MINUTE: usize = 20;

/// Takes one unit of the lost-payload budget; false when this minute's is spent.
fn lost_payload_budget() -> bool {
    static RECENT: std::sync::Mutex<std::collections::VecDeque<std::time::Instant>> =
        std::sync::Mutex::new(std::collections::VecDeque::new());
    let now = std::time::Instant::now();
    let mut recent = RECENT.lock().unwrap_or_else(|p| p.into_inner());
    while recent
        .front()
        .is_some_and(|t| now.duration_since(*t) > std::time::Duration::from_secs(60))
    {
        recent.pop_front();
    }
    if recent.len() >= LOST_PER_MINUTE {
        return false;
    }
    recent.push_back(now);
    true
}

/// How long a first download waits for its record before answering anyway.
const MARK_WAIT: std::time::Duration = std::time::Duration::from_secs(1);

/// Records the first download of a message's last chunk: a state change for the event
/// log. It commits before the answer, so a client that downloads and then acknowledges
/// finds `downloaded` logged before `acknowledged`; but a store that does not answer
/// within a second does not hold the download up (the record then finishes on its own,
/// or is lost with a log line: the bytes were served either way).
async fn mark_downloaded(state: &AppState, message: &mesh_protocol::Message) {
    if message.downloaded.is_some() {
        return;
    }
    let (state, id) = (state.clone(), message.message_id.clone());
    let record = tokio::spawn(async move {
        let now = state.now();
        if let Err(e) = state.store().meta.mark_downloaded(&id, now).await {
            tracing::warn!(error = %e, message_id = %id, "recording a download failed");
        }
    });
    let _ = tokio::time::timeout(MARK_WAIT, record).await;
}

/// `HEAD …/inbox/{id}`: the sender may look at any status, the recipient at delivered ones,
/// anyone else gets 404 (API.md 3.6).
pub async fn head(
    State(state): State<AppState>,
    Path((_, message_id)): Path<(String, String)>,
    caller: Caller,
) -> Result<Response, ApiError> {
    let message_id = upper(&message_id);
    let version = caller.shape();
    let peer = caller.peer.clone();
    let caller = caller.mailbox;
    let err = |e| ApiError::new(e, version);
    let message = super::find_message(&state, &message_id, version)
        .await?
        .ok_or_else(|| err(MeshError::not_found()))?;
    let is_sender = message.sender.mailbox_id == caller.mailbox_id;
    let is_recipient = message.recipient.mailbox_id == caller.mailbox_id;
    if !is_sender && !is_recipient {
        crate::audit::cross_mailbox(
            peer.as_ref(),
            &caller.mailbox_id,
            "status of another mailbox's message",
            &message_id,
        );
        return Err(err(MeshError::not_found()));
    }
    if !is_sender && !matches!(message.status(), Status::Accepted | Status::Acknowledged) {
        return Err(err(MeshError::gone()));
    }
    let mut pairs = download_headers(&message, 1);
    if message.metadata.compressed || message.is_gzip() {
        pairs.push(("mex-content-compressed", "Y".into()));
    }
    if message.is_gzip() && message.message_type == MessageType::Data {
        pairs.push(("content-encoding", "gzip".into()));
    }
    let mut response = with_headers(StatusCode::OK.into_response(), pairs);
    response
        .headers_mut()
        .insert(header::CONTENT_LENGTH, HeaderValue::from_static("0"));
    Ok(response)
}
