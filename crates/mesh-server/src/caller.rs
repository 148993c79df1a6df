//! Authentication, once per request, in one extractor: [`Caller`].
//!
//! A handler that takes a `Caller` gets an authenticated mailbox; the `NHSMESH` token was
//! parsed once, checked (API.md 2.3), and its use recorded for replay protection. The
//! same module owns what becomes of that record: [`release_on_retry`], the layer around
//! the MESH routes, gives the token back when the answer tells the client to retry (5xx,
//! 425, 429), because the official client repeats such requests with the identical token.
//! The record travels from the extractor to the layer in the request's extensions (a
//! [`TokenSlot`]), so nothing re-parses the header and no task-local is needed.

use crate::error::ApiError;
use crate::state::{AppState, Negotiated};
use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use mesh_protocol::{ApiVersion, Mailbox, MeshError};
use spine_http::Peer;
use std::sync::{Arc, Mutex};

/// The authenticated caller of a MESH request.
#[derive(Debug, Clone)]
pub struct Caller {
    pub mailbox: Mailbox,
    /// The API version asked for (or the 400 a malformed `Accept` gets, which comes only
    /// after authentication: API.md 6.1).
    pub negotiated: Negotiated,
    /// The connection it came on, for the audit trail.
    pub peer: Option<Peer>,
}

impl Caller {
    /// The version, or the 400 for a malformed `Accept`.
    pub fn version(&self) -> Result<ApiVersion, ApiError> {
        self.negotiated.version()
    }

    /// The version to render errors in (v1 when `Accept` is malformed).
    pub fn shape(&self) -> ApiVersion {
        self.negotiated.shape()
    }

    pub fn err(&self, e: MeshError) -> ApiError {
        self.negotiated.err(e)
    }

    pub fn id(&self) -> &str {
        &self.mailbox.mailbox_id
    }
}

/// The mailbox a MESH path names (`/messageexchange/{mailbox}/…`), percent-decoded and in
/// capitals, as the token must name it.
fn path_mailbox(path: &str) -> String {
    let segment = path.split('/').nth(2).unwrap_or_default();
    let bytes: Vec<u8> = percent_encoding::percent_decode_str(segment).collect();
    crate::handlers::upper(&String::from_utf8_lossy(&bytes))
}

impl FromRequestParts<AppState> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let negotiated = Negotiated::from_headers(&parts.headers);
        let peer = parts.extensions.get::<Peer>().cloned();
        let slot = parts.extensions.get::<TokenSlot>().cloned();
        let mailbox = state
            .authenticate(
                &parts.headers,
                &path_mailbox(parts.uri.path()),
                peer.as_ref(),
                slot.as_ref(),
            )
            .await
            .map_err(|e| negotiated.err(e))?;
        Ok(Caller {
            mailbox,
            negotiated,
            peer,
        })
    }
}

/// A token use recorded in the replay store: what to give back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenKey {
    pub mailbox: String,
    pub nonce: String,
    pub count: u64,
}

/// What became of the request's token in the replay record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TokenUse {
    Recorded(TokenKey),
    /// The store failed while recording it; the record may or may not exist.
    Uncertain(TokenKey),
}

/// Carries the record from [`Caller`] to [`release_on_retry`] for one request.
#[derive(Debug, Clone, Default)]
pub struct TokenSlot(Arc<Mutex<Option<TokenUse>>>);

impl TokenSlot {
    pub fn set(&self, used: TokenUse) {
        if let Ok(mut slot) = self.0.lock() {
            *slot = Some(used);
        }
    }

    fn take(&self) -> Option<TokenUse> {
        self.0.lock().ok().and_then(|mut s| s.take())
    }
}

/// How long an error answer waits for its token to be given back.
const RELEASE_WAIT: std::time::Duration = std::time::Duration::from_secs(1);

/// The layer that gives a recorded token back when the answer tells the client to retry.
/// Only a token that was recorded is released, so a request refused before the record
/// (a rate limit, an outage) costs no second store call.
pub async fn release_on_retry(
    axum::extract::State(state): axum::extract::State<AppState>,
    mut request: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    let slot = TokenSlot::default();
    request.extensions_mut().insert(slot.clone());
    let response = next.run(request).await;
    let status = response.status().as_u16();
    let retried = status >= 500 || status == 425 || status == 429;
    if !retried {
        return response;
    }
    let (key, wait) = match slot.take() {
        None => return response,
        Some(TokenUse::Recorded(key)) => (key, true),
        Some(TokenUse::Uncertain(key)) => (key, false),
    };
    let release = tokio::spawn(async move {
        if let Err(e) = state
            .store()
            .meta
            .release_token(&key.mailbox, &key.nonce, key.count)
            .await
        {
            tracing::warn!(error = %e, "releasing a token for retry failed");
        }
    });
    if wait {
        // Before the answer, as the client may retry the moment it has it; but a store
        // that is not answering would only add its whole timeout to an answer that is
        // already an error, so after a short wait the release finishes on its own.
        let _ = tokio::time::timeout(RELEASE_WAIT, release).await;
    }
    response
}

#[cfg(test)]
mod tests {
    use super::path_mailbox;

    #[test]
    fn the_path_names_the_mailbox_in_capitals() {
        assert_eq!(path_mailbox("/messageexchange/x26abc1/inbox"), "X26ABC1");
        assert_eq!(path_mailbox("/messageexchange/X26%41BC1"), "X26ABC1");
        assert_eq!(path_mailbox("/messageexchange"), "");
    }
}
