//! One module per group of MESH endpoints (API.md 3). Handlers speak in domain types and
//! return `Result<Response, ApiError>`; rendering of errors happens in `crate::error`.

pub mod admin;
pub mod download;
pub mod health;
pub mod inbox;
pub mod lookup;
pub mod rich;
pub mod send;
pub mod tracking;

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use mesh_protocol::ApiVersion;
use serde_json::Value;

/// A JSON response with the content type of `version` (API.md 1.4).
pub fn json(status: StatusCode, version: ApiVersion, body: &Value) -> Response {
    json_typed(status, version.json_content_type(), body)
}

/// Header values kept byte for byte may hold bytes that are not UTF-8; JSON shows each
/// as its Latin-1 character (`raw::for_json`), as the NHS sandbox does.
pub fn json_typed(status: StatusCode, content_type: &'static str, body: &Value) -> Response {
    let text = body.to_string();
    let text = match mesh_protocol::headers::raw::for_json(&text) {
        std::borrow::Cow::Borrowed(_) => text,
        std::borrow::Cow::Owned(mapped) => mapped,
    };
    let mut r = (status, text).into_response();
    r.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    r
}

/// 200 with no body and no content type (v2 handshake and acknowledge).
pub fn empty(status: StatusCode) -> Response {
    status.into_response()
}

/// A message by id, or `None` for an unknown id. Ids that cannot exist (wrong characters,
/// too long) are answered without a store lookup.
pub async fn find_message(
    state: &crate::state::AppState,
    message_id: &str,
    version: ApiVersion,
) -> Result<Option<mesh_protocol::Message>, crate::error::ApiError> {
    if !mesh_protocol::ids::plausible(message_id) {
        return Ok(None);
    }
    state
        .store()
        .meta
        .message(message_id)
        .await
        .map_err(|e| crate::error::store_error(e, version))
}

pub use mesh_protocol::paging::chunk_number;

/// A `max_results` query value within `min..=max`, or the framework's 422-style
/// validation error the sandbox gives for it (API.md 6.1.3). `None` when absent.
pub fn max_results(
    value: Option<&str>,
    min: i64,
    max: i64,
) -> Result<Option<u32>, mesh_protocol::MeshError> {
    let bad = |kind: &str, msg: String| {
        mesh_protocol::MeshError::validation(kind, &["query", "max_results"], msg)
    };
    let Some(text) = value else { return Ok(None) };
    let n: i64 = text
        .trim()
        .parse()
        .map_err(|_| bad("int_parsing", "Input should be a valid integer".into()))?;
    if n < min {
        return Err(bad(
            "greater_than_equal",
            format!("Input should be greater than or equal to {min}"),
        ));
    }
    if n > max {
        return Err(bad(
            "less_than_equal",
            format!("Input should be less than or equal to {max}"),
        ));
    }
    Ok(Some(n as u32))
}

/// A query-string value, form-encoded for a `links` URL.
pub fn form_encode(s: &str) -> String {
    form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

/// Upper-cases a path id as SBX does (API.md 1.5).
pub fn upper(id: &str) -> String {
    id.trim().to_ascii_uppercase()
}
