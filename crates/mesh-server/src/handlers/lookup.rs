//! Endpoint lookup and workflow search (API.md 3.12, 3.13). No authentication: the real
//! service guards these with the TLS client certificate only.

use super::{json, json_typed};
use crate::error::ApiError;
use crate::state::{AppState, Negotiated};
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use mesh_protocol::{ApiVersion, MeshError};
use serde_json::json;

pub async fn endpoint_lookup(
    State(state): State<AppState>,
    Path((ods_code, workflow_id)): Path<(String, String)>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let version = Negotiated::from_headers(&headers).version()?;
    if ods_code.trim().is_empty() {
        return Err(ApiError::new(MeshError::ods_code_missing(), version));
    }
    if workflow_id.trim().is_empty() {
        return Err(ApiError::new(MeshError::workflow_id_missing(), version));
    }
    let directory = state.directory();
    let found: Vec<_> = directory
        .receivers(&workflow_id)
        .into_iter()
        .filter(|m| m.ods_code == ods_code)
        .collect();
    let body = match version {
        ApiVersion::V1 => json!({
            "query_id": uuid::Uuid::new_v4().simple().to_string(),
            "results": found.iter().map(|m| json!({
                "address": m.mailbox_id,
                "description": m.mailbox_name,
                "endpoint_type": "MESH",
            })).collect::<Vec<_>>(),
        }),
        ApiVersion::V2 => json!({
            "results": found.iter().map(|m| json!({
                "mailbox_id": m.mailbox_id,
                "mailbox_name": m.mailbox_name,
            })).collect::<Vec<_>>(),
        }),
    };
    Ok(json(StatusCode::OK, version, &body))
}

pub async fn workflow_search(
    State(state): State<AppState>,
    Path(workflow_id): Path<String>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let version = Negotiated::from_headers(&headers).version()?;
    if workflow_id.trim().is_empty() {
        return Err(ApiError::new(MeshError::workflow_id_missing(), version));
    }
    let directory = state.directory();
    let results: Vec<_> = directory
        .receivers(&workflow_id)
        .iter()
        .map(|m| json!({"mailbox_id": m.mailbox_id, "mailbox_name": m.mailbox_name}))
        .collect();
    Ok(json_typed(
        StatusCode::OK,
        ApiVersion::V2.json_content_type(),
        &json!({"results": results}),
    ))
}
