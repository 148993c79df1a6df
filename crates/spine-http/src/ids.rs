//! Request and correlation ids: the NHS API platform sends a client's `X-Request-ID` and
//! `X-Correlation-ID` back on every answer, errors included (frontdoor API.md 8), so a
//! client can match answers to requests and support can find a request from either id.

use axum::extract::Request;
use axum::http::{HeaderName, HeaderValue};
use axum::middleware::Next;
use axum::response::Response;

pub static X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");
pub static X_CORRELATION_ID: HeaderName = HeaderName::from_static("x-correlation-id");

/// The ids of one request, as the client sent them (non-empty only).
#[derive(Debug, Clone, Default)]
pub struct RequestIds {
    pub request_id: Option<HeaderValue>,
    pub correlation_id: Option<HeaderValue>,
}

impl RequestIds {
    pub fn of(headers: &axum::http::HeaderMap) -> Self {
        let get = |name: &HeaderName| headers.get(name).filter(|v| !v.is_empty()).cloned();
        RequestIds {
            request_id: get(&X_REQUEST_ID),
            correlation_id: get(&X_CORRELATION_ID),
        }
    }

    /// Sets both ids back on an answer.
    pub fn mirror(&self, response: &mut Response) {
        let headers = response.headers_mut();
        if let Some(v) = &self.request_id {
            headers.insert(X_REQUEST_ID.clone(), v.clone());
        }
        if let Some(v) = &self.correlation_id {
            headers.insert(X_CORRELATION_ID.clone(), v.clone());
        }
    }
}

/// Middleware: every answer carries the client's non-empty `X-Request-ID` and
/// `X-Correlation-ID` back, whatever produced it.
pub async fn mirror_request_ids(request: Request, next: Next) -> Response {
    let ids = RequestIds::of(request.headers());
    let mut response = next.run(request).await;
    ids.mirror(&mut response);
    response
}
