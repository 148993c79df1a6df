//! The MESH error catalogue (API.md 6) and its v1/v2 renderings.
//!
//! Every refusal the server can give is built here, so that the status, event, code and
//! description of each case are written once and tested once.

use crate::version::ApiVersion;
use serde_json::{json, Value};

/// How an error body is shaped (API.md 6.1).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Shape {
    /// `{"errorEvent","errorCode","errorDescription"}` / `{"detail":[{"event","code","msg"}]}`.
    Mesh,
    /// Like [`Shape::Mesh`], but always v1 (the Accept-header error: the version is unknown).
    MeshV1,
    /// Framework validation: `{"detail":[{"type","loc","msg"}]}`, same in v1 and v2.
    Validation { kind: String, loc: Vec<String> },
    /// `{"message":"An internal error occurred.\n\nPlease contact support."}`.
    Generic,
    /// Framework `{"detail":"Not Found"}`-style body.
    Plain,
}

/// One MESH error response, before rendering.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{status} {event}/{code}: {description}")]
pub struct MeshError {
    pub status: u16,
    pub event: String,
    pub code: String,
    pub description: String,
    /// Included when the error concerns a known message (chunk upload, API.md 6.1.1).
    pub message_id: Option<String>,
    pub shape: Shape,
    /// Seconds for a `Retry-After` header (429 rate limiting).
    pub retry_after: Option<u64>,
}

const GENERIC: &str = "An internal error occurred.\n\nPlease contact support.";

impl MeshError {
    fn mesh(status: u16, event: &str, code: &str, description: &str) -> Self {
        MeshError {
            status,
            event: event.into(),
            code: code.into(),
            description: description.into(),
            message_id: None,
            shape: Shape::Mesh,
            retry_after: None,
        }
    }

    fn generic(status: u16) -> Self {
        MeshError {
            shape: Shape::Generic,
            ..Self::mesh(status, "", "", GENERIC)
        }
    }

    pub fn with_message_id(mut self, id: impl Into<String>) -> Self {
        self.message_id = Some(id.into());
        self
    }

    // ---- authentication (API.md 2.5) ----
    pub fn auth_unreadable() -> Self {
        Self::mesh(403, "", "", "Error reading from Authorization header")
    }
    pub fn auth_mailbox_mismatch() -> Self {
        Self::mesh(403, "", "", "Mailbox id does not match token")
    }
    pub fn no_mailbox_matched() -> Self {
        Self::mesh(403, "SEND", "EPL-151", "No mailbox matched")
    }
    pub fn invalid_token() -> Self {
        Self::mesh(403, "", "", "Invalid Authentication Token")
    }
    /// A token seen before (API.md 2.3: the real service treats tokens as single-use).
    pub fn duplicated_token() -> Self {
        Self::mesh(403, "", "", "Error Duplicated Authentication Token")
    }
    /// A token whose timestamp is outside the allowed window, or not `yyyyMMddHHmm`.
    pub fn token_out_of_window() -> Self {
        Self::mesh(
            403,
            "",
            "",
            "Invalid Authentication Token: timestamp outside the allowed window",
        )
    }
    pub fn inactive_mailbox() -> Self {
        Self::mesh(403, "", "", "Request Received from Inactive Mailbox")
    }

    // ---- request format ----
    pub fn bad_accept() -> Self {
        MeshError {
            shape: Shape::MeshV1,
            ..Self::mesh(400, "", "", "Accept header api format incorrect")
        }
    }
    /// Framework validation failure of a header, query or path value (API.md 6.1.3).
    pub fn validation(kind: &str, loc: &[&str], msg: impl Into<String>) -> Self {
        MeshError {
            shape: Shape::Validation {
                kind: kind.into(),
                loc: loc.iter().map(|s| s.to_string()).collect(),
            },
            ..Self::mesh(400, "", "", &msg.into())
        }
    }
    pub fn missing(place: &str, name: &str) -> Self {
        Self::validation("missing", &[place, name], "Field required")
    }

    // ---- send (API.md 3.8, 6.4) ----
    pub fn malformed_control_file() -> Self {
        Self::mesh(400, "TRANSFER", "06", "MalformedControlFile")
    }
    pub fn invalid_checksum() -> Self {
        Self::mesh(400, "SEND", "Invalid checksum", "Invalid checksum")
    }
    pub fn to_dts_missing() -> Self {
        Self::mesh(400, "SEND", "08", "TO_DTS missing")
    }
    pub fn unsupported_content_encoding() -> Self {
        Self::mesh(
            422,
            "SEND",
            "UnsupportedContentEncoding",
            "Unsupported content encoding",
        )
    }
    pub fn invalid_header_chunks() -> Self {
        Self::mesh(
            417,
            "SEND",
            "InvalidHeaderChunks",
            "Invalid chunk values sent in mex-Chunk-Range header",
        )
    }
    pub fn unregistered_recipient() -> Self {
        Self::mesh(417, "SEND", "12", "Unregistered to address")
    }
    pub fn missing_data_file() -> Self {
        Self::mesh(
            417,
            "COLLECT",
            "02",
            "Data file is missing or inaccessible.",
        )
    }
    /// The sender is not registered to send this workflow (API.md 6.3 code 16).
    pub fn sender_not_permitted(workflow: &str) -> Self {
        Self::mesh(
            417,
            "SEND",
            "16",
            &format!("Sender not allowed to send messages of workflow {workflow}"),
        )
    }
    /// The recipient is not registered to receive this workflow (API.md 6.3 code 17).
    pub fn workflow_not_registered() -> Self {
        Self::mesh(417, "SEND", "17", "Workflow ID not registered for mailbox")
    }
    /// `Mex-From` names a mailbox other than the authenticated one (API.md 6.3 code 07).
    pub fn invalid_from_address() -> Self {
        Self::mesh(
            417,
            "SEND",
            "07",
            "Invalid From Address in the control file",
        )
    }
    /// `Mex-MessageType` other than DATA (API.md 6.3 code 11).
    pub fn invalid_message_type() -> Self {
        Self::mesh(417, "SEND", "11", "Invalid Message Type for the transfer")
    }
    /// A request body or message over a configured size limit (API.md 11 #14 suggests 413).
    pub fn payload_too_large(what: &str, limit: u64) -> Self {
        Self::mesh(
            413,
            "SEND",
            "",
            &format!("{what} exceeds the limit of {limit} bytes"),
        )
    }

    // ---- chunk upload (API.md 3.9) ----
    pub fn already_complete() -> Self {
        Self::generic(423)
    }
    pub fn chunk_beyond_total() -> Self {
        Self::generic(406)
    }
    pub fn cannot_change_encoding() -> Self {
        Self::mesh(417, "", "", "cannot change content encoding")
    }
    /// A body sent with `Content-Encoding: gzip` that does not start as gzip does. The
    /// sandbox stores it and fails the download; refused here at upload, where the
    /// sender can still do something about it. An OpenSpine error: no NHS text exists.
    pub fn body_not_gzip() -> Self {
        Self::mesh(
            400,
            "SEND",
            "",
            "Content-Encoding is gzip but the body is not gzip data",
        )
    }

    // ---- download / ack (API.md 3.4, 3.7) ----
    pub fn message_does_not_exist() -> Self {
        Self::mesh(404, "RECEIVE", "20", "Message does not exist")
    }
    pub fn gone() -> Self {
        Self::mesh(
            410,
            "SEND",
            "Message already accepted",
            "Message no longer available for download",
        )
    }
    pub fn forbidden() -> Self {
        Self::mesh(403, "", "", "Forbidden")
    }
    pub fn not_found() -> Self {
        Self::mesh(404, "", "", "Not Found")
    }
    pub fn multiple_choices() -> Self {
        Self::mesh(300, "", "", "Multiple Choices")
    }

    // ---- lookups (API.md 3.12, 3.13) ----
    pub fn ods_code_missing() -> Self {
        Self::mesh(400, "", "", "ods code missing")
    }
    pub fn workflow_id_missing() -> Self {
        Self::mesh(400, "", "", "workflow id missing")
    }

    // ---- admin and framework ----
    pub fn admin_mailbox_missing() -> Self {
        Self::mesh(404, "", "", "mailbox does not exist")
    }
    pub fn sandbox_only() -> Self {
        Self::mesh(
            403,
            "",
            "",
            "admin endpoints are only available when the server runs with --sandbox",
        )
    }
    pub fn route_not_found() -> Self {
        MeshError {
            shape: Shape::Plain,
            ..Self::mesh(404, "", "", "Not Found")
        }
    }
    pub fn method_not_allowed() -> Self {
        MeshError {
            shape: Shape::Plain,
            ..Self::mesh(405, "", "", "Method Not Allowed")
        }
    }
    /// A mailbox over its request rate (token bucket): 429, which clients retry after the
    /// `Retry-After` interval (API.md 9.1), instead of slowing every other mailbox down.
    pub fn rate_limited(retry_after_secs: u64) -> Self {
        MeshError {
            retry_after: Some(retry_after_secs),
            ..Self::mesh(
                429,
                "",
                "",
                "Too many requests for this mailbox; retry after the Retry-After interval",
            )
        }
    }
    /// A client certificate whose subject CN is not bound to the mailbox (mutual TLS).
    pub fn certificate_not_permitted() -> Self {
        Self::mesh(
            403,
            "",
            "",
            "The client certificate is not permitted to use this mailbox",
        )
    }
    /// A request body that stopped arriving for longer than the configured idle timeout.
    pub fn body_timeout() -> Self {
        Self::mesh(408, "SEND", "", "Request body timed out")
    }
    pub fn internal() -> Self {
        Self::generic(500)
    }
    /// The store is unreachable or overloaded; clients retry 503 (API.md 9.1).
    pub fn unavailable() -> Self {
        Self::generic(503)
    }

    /// Renders the body for a request of `version`. `internal_id` is a per-request
    /// correlation id, included in v2 bodies as API.md 11 #21 recommends.
    pub fn body(&self, version: ApiVersion, internal_id: Option<&str>) -> (Value, &'static str) {
        match &self.shape {
            Shape::Mesh if version == ApiVersion::V2 => {
                let mut body = serde_json::Map::new();
                if let Some(id) = &self.message_id {
                    body.insert("message_id".into(), json!(id));
                }
                if let Some(id) = internal_id {
                    body.insert("internal_id".into(), json!(id));
                }
                body.insert(
                    "detail".into(),
                    json!([{"event": self.event, "code": self.code, "msg": self.description}]),
                );
                (Value::Object(body), version.json_content_type())
            }
            Shape::Mesh | Shape::MeshV1 => {
                let mut body = serde_json::Map::new();
                if let Some(id) = &self.message_id {
                    body.insert("messageID".into(), json!(id));
                }
                body.insert("errorEvent".into(), json!(self.event));
                body.insert("errorCode".into(), json!(self.code));
                body.insert("errorDescription".into(), json!(self.description));
                (Value::Object(body), "application/json")
            }
            Shape::Validation { kind, loc } => (
                json!({"detail": [{"type": kind, "loc": loc, "msg": self.description}]}),
                "application/json",
            ),
            Shape::Generic => {
                let mut body = json!({"message": GENERIC});
                if let (Some(id), Some(obj)) = (internal_id, body.as_object_mut()) {
                    obj.insert("internal_id".into(), json!(id));
                }
                (body, "application/json")
            }
            Shape::Plain => (json!({"detail": self.description}), "application/json"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn v1_and_v2_shapes_match_the_reference() {
        let e = MeshError::invalid_header_chunks().with_message_id("ABC");
        let (v1, ct1) = e.body(ApiVersion::V1, Some("req-1"));
        assert_eq!(ct1, "application/json");
        assert_eq!(
            v1,
            json!({"messageID":"ABC","errorEvent":"SEND","errorCode":"InvalidHeaderChunks",
                   "errorDescription":"Invalid chunk values sent in mex-Chunk-Range header"})
        );
        let (v2, ct2) = e.body(ApiVersion::V2, Some("req-1"));
        assert_eq!(ct2, "application/vnd.mesh.v2+json");
        assert_eq!(
            v2,
            json!({"message_id":"ABC","internal_id":"req-1","detail":[{"event":"SEND",
                   "code":"InvalidHeaderChunks",
                   "msg":"Invalid chunk values sent in mex-Chunk-Range header"}]})
        );
    }

    #[test]
    fn accept_errors_are_always_v1() {
        let (body, _) = MeshError::bad_accept().body(ApiVersion::V2, None);
        assert_eq!(
            body["errorDescription"],
            json!("Accept header api format incorrect")
        );
    }

    #[test]
    fn codeless_errors_render_empty_strings() {
        let (body, _) = MeshError::forbidden().body(ApiVersion::V1, None);
        assert_eq!(
            body,
            json!({"errorEvent":"","errorCode":"","errorDescription":"Forbidden"})
        );
    }
}
