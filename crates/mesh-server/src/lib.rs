//! The MESH HTTP API (API.md 3) on axum.
//!
//! Requests flow: router → handler (in `handlers/`, one module per endpoint group) →
//! authentication and version negotiation (`state::begin`) → store. Every refusal is a
//! `MeshError` rendered in one place (`error`), in the caller's API version.

// MeshError carries the whole MESH error (status, event, code, description, shape) so it
// can be rendered in either version; it is only built on the refusal path, so its size
// does not matter for the hot path.
#![allow(clippy::result_large_err)]

pub mod config;
pub mod directory;
pub mod error;
pub mod handlers;
pub mod metrics;
pub mod replay;
pub mod state;

pub use config::ServerConfig;
pub use directory::{Directory, DirectorySource};
pub use state::AppState;

use axum::routing::{get, post, put};
use axum::Router;
use handlers::{admin, download, health, inbox, lookup, send, tracking};
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
        .route("/metrics", get(health::metrics))
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
            state::release_retried_tokens,
        ))
        .layer(axum::middleware::from_fn(metrics::track))
        .layer(TraceLayer::new_for_http())
        .layer(CatchPanicLayer::new())
        .with_state(state)
}

/// Serves until `shutdown` resolves, then lets in-flight requests finish.
pub async fn serve(
    listener: TcpListener,
    state: AppState,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    metrics::install();
    let app = router(state);
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown)
        .await
}
