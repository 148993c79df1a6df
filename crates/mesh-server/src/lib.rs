//! The MESH HTTP API (API.md 3) on axum.
//!
//! Requests flow: router → handler (in `handlers/`, one module per endpoint group) →
//! authentication and version negotiation (`state::begin`) → store. Every refusal is a
//! `MeshError` rendered in one place (`error`), in the caller's API version.

// MeshError carries the whole MESH error (status, event, code, description, shape) so it
// can be rendered in either version; it is only built on the refusal path, so its size
// does not matter for the hot path.
#![allow(clippy::result_large_err)]

pub mod audit;
pub mod config;
pub mod conn;
pub mod devcerts;
pub mod directory;
pub mod error;
pub mod handlers;
pub mod lifecycle;
pub mod metrics;
pub mod ops;
pub mod ratelimit;
pub mod state;
pub mod tls;
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
            state::release_retried_tokens,
        ))
        .layer(axum::middleware::from_fn(metrics::track))
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

/// Serves HTTP, or HTTPS when `tls` is given, until `shutdown` resolves.
///
/// The accept loop is ours rather than `axum::serve` because the limits that protect the
/// service live at the connection level: a cap on open connections, a deadline for the
/// TLS handshake and for each request head (slow-loris), a cap on the request head's
/// size, and the peer's address and certificate for authentication and the audit log.
pub async fn serve_with(
    listener: TcpListener,
    state: AppState,
    tls: Option<tls::TlsReloader>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let config = state.config().clone();
    serve_app(listener, router(state), &config, tls, shutdown).await
}

/// Serves the operations listener ([`ops`]): metrics, health, readiness and the admin
/// API, plain HTTP, with the same connection limits as the MESH port. `tls` is only the
/// certificate to reload on request, not served here.
pub async fn serve_ops(
    listener: TcpListener,
    state: AppState,
    tls: Option<tls::TlsReloader>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let config = state.config().clone();
    serve_app(listener, ops::router(state, tls), &config, None, shutdown).await
}

/// The accept loop for any router (the MESH API or the ops listener).
pub async fn serve_app(
    listener: TcpListener,
    app: Router,
    config: &ServerConfig,
    tls: Option<tls::TlsReloader>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
    use hyper_util::server::conn::auto;
    use std::sync::Arc;
    use tower::ServiceExt;

    metrics::install();
    let config = config.clone();
    let slots = Arc::new(tokio::sync::Semaphore::new(config.max_connections.max(1)));
    // HTTP/1.1 only: every MESH client speaks it, and sniffing for an HTTP/2 preface
    // would read from a silent connection with no deadline.
    let mut builder = auto::Builder::new(TokioExecutor::new()).http1_only();
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(config.header_timeout)
        // hyper needs at least 8 KiB of buffer; the head must fit in it, else 431.
        .max_buf_size(config.max_header_bytes.max(8192));
    let builder = Arc::new(builder);
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    tokio::pin!(shutdown);
    loop {
        let (stream, addr) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(pair) => pair,
                Err(e) => {
                    // Out of file descriptors and the like: back off instead of spinning.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            ::metrics::counter!("mesh_connections_refused_total").increment(1);
            tracing::warn!(peer = %addr, limit = config.max_connections, "connection limit reached: refusing");
            drop(stream);
            continue;
        };
        let _ = stream.set_nodelay(true);
        let app = app.clone();
        let builder = builder.clone();
        let watcher = graceful.watcher();
        let tls = tls.as_ref().map(tls::TlsReloader::acceptor);
        let handshake_timeout = config.header_timeout;
        let stall_limit = config.send_stall_timeout;
        tokio::spawn(async move {
            let _slot = slot;
            ::metrics::gauge!("mesh_open_connections").increment(1.0);
            let serve_one = |peer: audit::Peer| {
                let app = app.clone();
                hyper_util::service::TowerToHyperService::new(tower::service_fn(
                    move |request: axum::http::Request<hyper::body::Incoming>| {
                        let request = request.map(axum::body::Body::new);
                        audit::with_peer(peer.clone(), app.clone().oneshot(request))
                    },
                ))
            };
            match tls {
                None => {
                    // hyper's head deadline starts with the first byte; a connection that
                    // never sends one is closed here instead of being held forever.
                    let mut probe = [0u8; 1];
                    let first =
                        tokio::time::timeout(handshake_timeout, stream.peek(&mut probe)).await;
                    if !matches!(first, Ok(Ok(n)) if n > 0) {
                        ::metrics::gauge!("mesh_open_connections").decrement(1.0);
                        return;
                    }
                    let peer = audit::Peer {
                        addr,
                        client_cn: None,
                    };
                    let stream = conn::StallGuard::new(stream, stall_limit);
                    let conn = builder
                        .serve_connection_with_upgrades(TokioIo::new(stream), serve_one(peer));
                    let _ = watcher.watch(conn.into_owned()).await;
                }
                Some(acceptor) => {
                    let stream = conn::StallGuard::new(stream, stall_limit);
                    let stream = match tokio::time::timeout(
                        handshake_timeout,
                        acceptor.accept(stream),
                    )
                    .await
                    {
                        Ok(Ok(s)) => s,
                        Ok(Err(e)) => {
                            audit::tls_refused(addr, &e.to_string());
                            ::metrics::gauge!("mesh_open_connections").decrement(1.0);
                            return;
                        }
                        Err(_) => {
                            audit::tls_refused(addr, "handshake timed out");
                            ::metrics::gauge!("mesh_open_connections").decrement(1.0);
                            return;
                        }
                    };
                    let client_cn = stream
                        .get_ref()
                        .1
                        .peer_certificates()
                        .and_then(|c| c.first())
                        .and_then(tls::subject_cn)
                        .map(Arc::<str>::from);
                    let peer = audit::Peer { addr, client_cn };
                    let conn = builder
                        .serve_connection_with_upgrades(TokioIo::new(stream), serve_one(peer));
                    let _ = watcher.watch(conn.into_owned()).await;
                }
            }
            ::metrics::gauge!("mesh_open_connections").decrement(1.0);
        });
    }
    drop(listener);
    // In-flight requests get a minute; a client that keeps a connection busy longer than
    // that does not hold the process up.
    if tokio::time::timeout(std::time::Duration::from_secs(60), graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!("connections still open after 60 s: closing them");
    }
    Ok(())
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
