//! Handshake, inbox listing and count, acknowledgement (API.md 3.1–3.3, 3.7).

use super::{empty, form_encode, json, upper};
use crate::caller::Caller;
use crate::error::{store_error, ApiError};
use crate::state::{header_text, AppState};
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use mesh_protocol::{ApiVersion, MeshError, WorkflowFilter};
use mesh_store::AckOutcome;
use serde_json::json;

/// `POST|GET /messageexchange/{mailbox}`: validates credentials and connectivity.
pub async fn handshake(
    Path(mailbox): Path<String>,
    caller: Caller,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let mailbox = upper(&mailbox);
    let version = caller.version()?;
    for name in ["mex-clientversion", "mex-osname", "mex-osversion"] {
        if headers.get(name).is_none() {
            return Err(ApiError::new(MeshError::missing("header", name), version));
        }
    }
    tracing::info!(
        mailbox,
        client = header_text(&headers, "mex-clientversion").unwrap_or_default(),
        os = header_text(&headers, "mex-osname").unwrap_or_default(),
        "handshake"
    );
    Ok(match version {
        ApiVersion::V1 => json(StatusCode::OK, version, &json!({"mailboxId": mailbox})),
        ApiVersion::V2 => empty(StatusCode::OK),
    })
}

/// `POST /messageexchange/{mailbox}/update` (undocumented, API.md 3.15): the sandbox
/// authenticates and does nothing; some client builds call it, so it answers the same.
pub async fn update(caller: Caller) -> Result<Response, ApiError> {
    caller.version()?;
    Ok(empty(StatusCode::OK))
}

/// `GET /messageexchange/{mailbox}/inbox`: accepted messages, oldest first (API.md 3.2).
pub async fn list(
    State(state): State<AppState>,
    Path(mailbox): Path<String>,
    Query(query): Query<Vec<(String, String)>>,
    caller: Caller,
) -> Result<Response, ApiError> {
    let mailbox = upper(&mailbox);
    let version = caller.version()?;
    let param = |name: &str| {
        query
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    };
    let bad = |kind: &str, name: &str, msg: &str| {
        ApiError::new(MeshError::validation(kind, &["query", name], msg), version)
    };
    let cap = state.config().max_page_size;
    let max_results = super::max_results(param("max_results"), 10, i64::from(cap))
        .map_err(|e| ApiError::new(e, version))?
        .unwrap_or(500.min(cap));
    let check_len = |name: &str, v: &str, min: usize, max: usize| {
        let n = v.chars().count();
        if n < min {
            Err(bad(
                "string_too_short",
                name,
                &format!("String should have at least {min} characters"),
            ))
        } else if n > max {
            Err(bad(
                "string_too_long",
                name,
                &format!("String should have at most {max} characters"),
            ))
        } else {
            Ok(())
        }
    };
    let filter_text = param("workflow_filter");
    if let Some(f) = filter_text {
        check_len("workflow_filter", f, 2, 255)?;
    }
    let filter = filter_text.and_then(WorkflowFilter::parse);
    let meta = &state.store().meta;
    let after = match param("continue_from") {
        None => None,
        Some(from) => {
            check_len("continue_from", from, 24, 1000)?;
            match mesh_protocol::paging::decode_inbox_token(&mailbox, from) {
                Some(seq) => Some(seq),
                // v1 resumes after a message id; unknown ids start from the top (SBX).
                None if mesh_protocol::ids::plausible(from) => meta
                    .inbox_position(&mailbox, &upper(from))
                    .await
                    .map_err(|e| store_error(e, version))?,
                None => {
                    return Err(bad(
                        "value_error",
                        "continue_from",
                        "continue_from is not a valid paging token",
                    ))
                }
            }
        }
    };
    let mut page = meta
        .inbox(&mailbox, after, filter.as_ref(), max_results + 1)
        .await
        .map_err(|e| store_error(e, version))?;
    let more = page.len() > max_results as usize;
    page.truncate(max_results as usize);
    let ids: Vec<&str> = page.iter().map(|e| e.message_id.as_str()).collect();
    metrics::counter!("mesh_inbox_polls_total").increment(1);
    if version == ApiVersion::V1 {
        return Ok(json(StatusCode::OK, version, &json!({"messages": ids})));
    }
    let mut query_parts = Vec::new();
    if max_results != 500 {
        query_parts.push(format!("max_results={max_results}"));
    }
    if let Some(f) = filter_text {
        query_parts.push(format!("workflow_filter={}", form_encode(f)));
    }
    let base = format!("/messageexchange/{mailbox}/inbox");
    let with = |parts: &[String]| {
        if parts.is_empty() {
            base.clone()
        } else {
            format!("{base}?{}", parts.join("&"))
        }
    };
    let mut links = json!({"self": with(&query_parts)});
    if let (true, Some(last)) = (more, page.last()) {
        let mut next = query_parts.clone();
        next.push(format!(
            "continue_from={}",
            form_encode(&mesh_protocol::paging::encode_inbox_token(
                &mailbox, last.seq
            ))
        ));
        links["next"] = json!(with(&next));
    }
    // The unfiltered count is the page itself when the page is the whole inbox; only a
    // filtered, resumed or partial listing needs the count query.
    let approx = if filter.is_none() && after.is_none() && !more {
        page.len() as u64
    } else {
        meta.inbox_count(&mailbox)
            .await
            .map_err(|e| store_error(e, version))?
    };
    Ok(json(
        StatusCode::OK,
        version,
        &json!({"messages": ids, "links": links, "approx_inbox_count": approx}),
    ))
}

/// `GET /messageexchange/{mailbox}/count` (deprecated, API.md 3.3).
pub async fn count(
    State(state): State<AppState>,
    Path(mailbox): Path<String>,
    caller: Caller,
) -> Result<Response, ApiError> {
    let mailbox = upper(&mailbox);
    let version = caller.version()?;
    let n = state
        .store()
        .meta
        .inbox_count(&mailbox)
        .await
        .map_err(|e| store_error(e, version))?;
    let body = match version {
        ApiVersion::V1 => json!({
            "count": n,
            "internalID": uuid::Uuid::new_v4().simple().to_string(),
            "allResultsIncluded": true,
        }),
        ApiVersion::V2 => json!({"count": n}),
    };
    Ok(super::json_typed(StatusCode::OK, "application/json", &body))
}

/// `PUT …/inbox/{id}/status/acknowledged`: idempotent, always 200 for the recipient.
pub async fn acknowledge(
    State(state): State<AppState>,
    Path((mailbox, message_id)): Path<(String, String)>,
    caller: Caller,
) -> Result<Response, ApiError> {
    let mailbox = upper(&mailbox);
    let message_id = upper(&message_id);
    let version = caller.version()?;
    let err = |e| ApiError::new(e, version);
    let outcome = match mesh_protocol::ids::plausible(&message_id) {
        true => state
            .write_with_reserve(|| {
                state
                    .store()
                    .meta
                    .acknowledge(&message_id, &mailbox, state.now())
            })
            .await
            .map_err(|e| store_error(e, version))?,
        false => AckOutcome::NoSuchMessage,
    };
    match outcome {
        AckOutcome::NoSuchMessage => return Err(err(MeshError::message_does_not_exist())),
        AckOutcome::NotRecipient => {
            crate::audit::cross_mailbox(
                caller.peer.as_ref(),
                &mailbox,
                "ack of another mailbox's message",
                &message_id,
            );
            return Err(err(MeshError::forbidden()));
        }
        AckOutcome::Acknowledged => {
            metrics::counter!("mesh_messages_acknowledged_total").increment(1);
            tracing::info!(message_id, mailbox, "message acknowledged");
        }
        AckOutcome::Unchanged => {}
    }
    Ok(match version {
        ApiVersion::V1 => json(StatusCode::OK, version, &json!({"messageId": message_id})),
        ApiVersion::V2 => empty(StatusCode::OK),
    })
}
