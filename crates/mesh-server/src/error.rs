//! Turning a [`MeshError`] into an HTTP response: the one place errors are rendered.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use mesh_protocol::{ApiVersion, MeshError};
use mesh_store::StoreError;

/// A MESH error together with the API version it must be rendered in.
#[derive(Debug)]
pub struct ApiError {
    pub error: MeshError,
    pub version: ApiVersion,
}

impl ApiError {
    pub fn new(error: MeshError, version: ApiVersion) -> Self {
        ApiError { error, version }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let internal_id = uuid::Uuid::new_v4().simple().to_string();
        if self.error.status >= 500 {
            tracing::error!(internal_id, error = %self.error, "request failed");
        }
        let (body, content_type) = self.error.body(self.version, Some(&internal_id));
        let status =
            StatusCode::from_u16(self.error.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let mut response = (status, body.to_string()).into_response();
        let headers = response.headers_mut();
        headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
        if let Some(secs) = self.error.retry_after {
            headers.insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        response
    }
}

/// The reason a body stream gives when the body idle timeout fired.
pub const BODY_TIMEOUT: &str = "request body timed out";

/// The reason a body stream gives when a body declared gzip does not start as gzip.
pub const NOT_GZIP: &str = "body declared gzip is not gzip";

/// Store failures are the server's problem: a 5xx the client may retry. Details go to the
/// log (with the internal id the client sees), never to the client.
pub fn store_error(e: StoreError, version: ApiVersion) -> ApiError {
    match e {
        StoreError::TooLarge { limit } => {
            ApiError::new(MeshError::payload_too_large("request body", limit), version)
        }
        StoreError::Body(reason) if reason == NOT_GZIP => {
            tracing::info!("body declared gzip is not gzip: refused");
            ApiError::new(MeshError::body_not_gzip(), version)
        }
        StoreError::Body(reason) if reason == BODY_TIMEOUT => {
            tracing::info!("request body stalled: abandoned");
            ApiError::new(MeshError::body_timeout(), version)
        }
        StoreError::Body(reason) => {
            tracing::info!(reason, "request body failed while reading");
            ApiError::new(
                MeshError::validation("body", &["body"], "request body could not be read"),
                version,
            )
        }
        other => {
            tracing::error!(error = %other, "store failure");
            ApiError::new(MeshError::unavailable(), version)
        }
    }
}
