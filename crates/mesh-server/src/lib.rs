//! The MESH HTTP API (API.md 3) on axum.
//!
//! Requests flow: router → handler (in `handlers/`, one module per endpoint group), whose
//! [`caller::Caller`] argument authenticates the request once (and whose token record
//! [`caller::release_on_retry`] gives back on a retryable answer) → store, which keeps
//! the payload-before-metadata order itself. Every refusal is a `MeshError` rendered in
//! one place (`error`), in the caller's API version. The wire's rules (tokens, headers,
//! the directory files, paging tokens) live in `mesh-protocol`.

// MeshError carries the whole MESH error (status, event, code, description, shape) so it
// can be rendered in either version; it is only built on the refusal path, so its size
// does not matter for the hot path.
#![allow(clippy::result_large_err)]

pub mod audit;
pub mod caller;
pub mod config;
pub use spine_http::conn;
pub mod devcerts;
pub mod directory;
pub mod error;
pub mod events;
pub mod handlers;
pub mod lifecycle;
pub mod metrics;
pub mod ops;
pub mod state;
pub use spine_http::tls;
pub mod watch;

pub use config::ServerConfig;
pub use directory::{Directory, DirectorySource};
pub use state::AppState;

use axum::routing::{get, post, put};
use axum::Router;
use handlers::{admin, download, health, inbox, lookup, rich, send, tracking};
use mesh_protocol::{ApiVersion, MeshError};
use std::future::Future;
use tokio::net::TcpListener;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::trace::TraceLayer;

async fn not_found() -> error::ApiError {
    error::ApiError::new(MeshError::route_not_found(), ApiVersion::V1)
}

async fn method_not_allowed() -> error::ApiError {
    error::ApiError::new(MeshError::method_not_allowed(), ApiVersion::V1)
}

/// The whole API. Static path segments win over parameters (`_ping`, `endpointlookup`,
/// `admin` are never taken for a mailbox id).
pub fn router(state: AppState) -> Router {
    let mx = "/messageexchange";
    let mut r = Router::new();
    for p in [
        "/messageexchange/_ping",
        "/health",
        "/_ping",
        "/_status",
        "/healthcheck",
        "/messageexchange/deepping",
    ] {
        r = r.route(p, get(health::ping));
    }
    r = r
        .route("/readyz", get(health::ready))
        .route(
            &format!("{mx}/endpointlookup/{{ods}}/{{workflow}}"),
            get(lookup::endpoint_lookup),
        )
        .route(
            &format!("{mx}/workflowsearch/{{workflow}}"),
            get(lookup::workflow_search),
        )
        .route(
            &format!("{mx}/{{mailbox}}"),
            get(inbox::handshake).post(inbox::handshake),
        )
        .route(&format!("{mx}/{{mailbox}}/inbox"), get(inbox::list))
        // Static segments win over `{message_id}` (API.md 3.15): `rich` is never an id.
        .route(&format!("{mx}/{{mailbox}}/inbox/rich"), get(rich::inbox))
        .route(&format!("{mx}/{{mailbox}}/outbox/rich"), get(rich::outbox))
        .route(&format!("{mx}/{{mailbox}}/count"), get(inbox::count))
        .route(&format!("{mx}/{{mailbox}}/update"), post(inbox::update))
        .route(
            &format!("{mx}/{{mailbox}}/inbox/{{message_id}}"),
            get(download::download_first).head(download::head),
        )
        .route(
            &format!("{mx}/{{mailbox}}/inbox/{{message_id}}/{{chunk}}"),
            get(download::download_chunk),
        )
        .route(
            &format!("{mx}/{{mailbox}}/inbox/{{message_id}}/status/acknowledged"),
            put(inbox::acknowledge),
        )
        .route(&format!("{mx}/{{mailbox}}/outbox"), post(send::send))
        .route(
            &format!("{mx}/{{mailbox}}/outbox/{{message_id}}/{{chunk}}"),
            post(send::upload_chunk),
        )
        .route(
            &format!("{mx}/{{mailbox}}/outbox/tracking"),
            get(tracking::by_message_id),
        )
        .route(
            &format!("{mx}/{{mailbox}}/outbox/tracking/{{local_id}}"),
            get(tracking::by_local_id),
        );
    for prefix in ["", mx] {
        r = r
            .route(
                &format!("{prefix}/admin/reset"),
                axum::routing::delete(admin::reset_all),
            )
            .route(
                &format!("{prefix}/admin/reset/{{mailbox}}"),
                axum::routing::delete(admin::reset_mailbox),
            )
            .route(
                &format!("{prefix}/admin/report"),
                post(admin::create_report),
            )
            .route(
                &format!("{prefix}/admin/message/{{message_id}}/event"),
                post(admin::add_event),
            )
            .route(&format!("{prefix}/admin/clock"), post(admin::advance_clock))
            .route(
                &format!("{prefix}/admin/lifecycle"),
                post(admin::run_lifecycle),
            )
            .route(
                &format!("{prefix}/admin/mailbox/{{mailbox}}"),
                get(admin::mailbox),
            )
            .route(
                &format!("{prefix}/admin/message/{{message_id}}"),
                get(admin::message),
            );
    }
    r = r.route(&format!("{mx}/mailbox/{{mailbox}}"), get(admin::mailbox));
    r.fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            caller::release_on_retry,
        ))
        .layer(axum::middleware::from_fn_with_state(
            metrics::REQUESTS,
            spine_http::metrics::track,
        ))
        .layer(tower_http::timeout::RequestBodyTimeoutLayer::new(
            state.config().body_idle_timeout,
        ))
        // Every log line of a request carries its mailbox and message id (from the span);
        // failures are logged once, by the error renderer, not again here.
        .layer(
            TraceLayer::new_for_http()
                .make_span_with(request_span)
                .on_failure(()),
        )
        .layer(CatchPanicLayer::new())
        .layer(axum::middleware::from_fn(conn::finish_unread_body))
        .with_state(state)
}

/// The span of one request: its method, route and the mailbox and message id its path
/// names, so that a failure logged anywhere below says whose and which.
fn request_span(request: &axum::http::Request<axum::body::Body>) -> tracing::Span {
    let (mailbox, message_id) = path_ids(request.uri().path());
    tracing::info_span!(
        "request",
        method = metrics::method_label(request.method()),
        mailbox = mailbox.unwrap_or_default(),
        message_id = message_id.unwrap_or_default(),
    )
}

/// The mailbox and message id a MESH path names:
/// `/messageexchange/{mailbox}/(inbox|outbox)/{message_id}/…`.
fn path_ids(path: &str) -> (Option<&str>, Option<&str>) {
    let mut parts = path.split('/').skip(1);
    if parts.next() != Some("messageexchange") {
        return (None, None);
    }
    let mailbox = parts
        .next()
        .filter(|m| {
            !m.is_empty() && !["_ping", "endpointlookup", "workflowsearch", "admin"].contains(m)
        })
        // At most 100 characters, cut at a character boundary (paths may hold UTF-8).
        .map(|m| m.char_indices().nth(100).map_or(m, |(i, _)| &m[..i]));
    let message_id = match parts.next() {
        Some("inbox") | Some("outbox") => parts
            .next()
            .filter(|id| !["rich", "tracking"].contains(id) && mesh_protocol::ids::plausible(id)),
        _ => None,
    };
    (mailbox, message_id)
}

/// Serves plain HTTP until `shutdown` resolves, then lets in-flight requests finish.
pub async fn serve(
    listener: TcpListener,
    state: AppState,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    serve_with(listener, state, None, shutdown).await
}

/// Serves the MESH API alone, HTTP or HTTPS when `tls` is given, until `shutdown`
/// resolves (the binary merges it with the other services instead).
pub async fn serve_with(
    listener: TcpListener,
    state: AppState,
    tls: Option<tls::TlsReloader>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let config = state.config().listener("api");
    spine_http::serve(listener, router(state), &config, tls, shutdown).await
}

/// Serves the operations listener ([`ops`]) for MESH alone, plain HTTP. `tls` is only the
/// certificate to reload on request, not served here.
pub async fn serve_ops(
    listener: TcpListener,
    state: AppState,
    tls: Option<tls::TlsReloader>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let config = state.config().listener("ops");
    let app = spine_http::ops::router(
        vec![ops::service_ops(&state)],
        ops::admin_router(state, tls, axum::Router::new()),
    );
    spine_http::serve(listener, app, &config, None, shutdown).await
}

#[cfg(test)]
mod tests {
    use super::path_ids;

    #[test]
    fn a_request_span_names_the_mailbox_and_message_of_its_path() {
        let id = "20261204140224327535_ED4D16";
        assert_eq!(
            path_ids(&format!("/messageexchange/X26ABC2/inbox/{id}/2")),
            (Some("X26ABC2"), Some(id))
        );
        assert_eq!(
            path_ids("/messageexchange/X26ABC1/outbox"),
            (Some("X26ABC1"), None)
        );
        assert_eq!(
            path_ids("/messageexchange/X26ABC1/inbox/rich"),
            (Some("X26ABC1"), None)
        );
        assert_eq!(path_ids("/messageexchange/_ping"), (None, None));
        // A long mailbox segment with a multi-byte character at the cut: no panic.
        let long = format!("/messageexchange/{}é/inbox", "a".repeat(99));
        assert_eq!(path_ids(&long).0.map(|m| m.chars().count()), Some(100));
        assert_eq!(path_ids("/readyz"), (None, None));
    }
}
