//! Tracking a sent message, by id or by the sender's local id (API.md 3.10, 3.11).

use super::{json, json_typed, upper};
use crate::caller::Caller;
use crate::error::{store_error, ApiError};
use crate::state::AppState;
use axum::extract::{Path, Query, State};
use axum::http::{StatusCode, Uri};
use axum::response::Response;
use mesh_protocol::headers::raw;
use mesh_protocol::views::{tracking_v1, tracking_v2};
use mesh_protocol::{ApiVersion, MeshError};

/// `GET …/outbox/tracking?messageID=…`. Someone else's message answers 404, not 403, so
/// tracking cannot be used to probe which ids exist.
pub async fn by_message_id(
    State(state): State<AppState>,
    Path(mailbox): Path<String>,
    Query(query): Query<Vec<(String, String)>>,
    caller: Caller,
) -> Result<Response, ApiError> {
    let mailbox = upper(&mailbox);
    let version = caller.version()?;
    let err = |e| ApiError::new(e, version);
    let id = query
        .iter()
        .find(|(k, _)| k == "messageID")
        .map(|(_, v)| upper(v))
        .filter(|v| !v.is_empty())
        .ok_or_else(|| err(MeshError::missing("query", "messageID")))?;
    let meta = &state.store().meta;
    let message = super::find_message(&state, &id, version)
        .await?
        .filter(|m| {
            let own = m.sender.mailbox_id == mailbox;
            if !own {
                crate::audit::cross_mailbox(
                    caller.peer.as_ref(),
                    &mailbox,
                    "tracking of another mailbox's message",
                    &id,
                );
            }
            own
        })
        .ok_or_else(|| err(MeshError::not_found()))?;
    if !meta
        .in_outbox(&mailbox, &id)
        .await
        .map_err(|e| store_error(e, version))?
    {
        return Err(err(MeshError::not_found()));
    }
    let body = match version {
        ApiVersion::V1 => tracking_v1(&message),
        ApiVersion::V2 => tracking_v2(&message),
    };
    Ok(json(StatusCode::OK, version, &body))
}

/// `GET …/outbox/tracking/{local_id}` (deprecated): always the v1 record.
///
/// The path is read from the URI and percent-decoded to bytes here, not by the router's
/// extractor (which refuses bytes that are not UTF-8): a local id sent with such bytes
/// (kept byte for byte, see `raw`) is found by the same bytes percent-encoded.
pub async fn by_local_id(
    State(state): State<AppState>,
    uri: Uri,
    caller: Caller,
) -> Result<Response, ApiError> {
    // `/messageexchange/{mailbox}/outbox/tracking/{local_id}`, as routed.
    let segments: Vec<&str> = uri.path().split('/').collect();
    let decoded = |i: usize| {
        segments
            .get(i)
            .map(|v| percent_encoding::percent_decode_str(v).collect::<Vec<u8>>())
            .unwrap_or_default()
    };
    let mailbox = upper(&String::from_utf8_lossy(&decoded(2)));
    let local_id = raw::decode(&decoded(5));
    let version = caller.shape();
    let found = state
        .store()
        .meta
        .by_local_id(&mailbox, &local_id)
        .await
        .map_err(|e| store_error(e, version))?;
    match found.as_slice() {
        [] => Err(ApiError::new(MeshError::not_found(), version)),
        [one] => Ok(json_typed(
            StatusCode::OK,
            "application/json",
            &tracking_v1(one),
        )),
        _ => Err(ApiError::new(MeshError::multiple_choices(), version)),
    }
}
