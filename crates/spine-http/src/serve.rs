//! The accept loop every service is served by: one per listener, whatever routers the
//! binary merged into it.
//!
//! It is ours rather than `axum::serve` because the limits that protect a service live at
//! the connection level: a cap on open connections, a deadline for the TLS handshake and
//! for each request head (slow-loris), a cap on the request head's size, a stalled reader
//! closed ([`crate::conn::StallGuard`]), and the peer's address and certificate put in
//! each request's extensions ([`Peer`]) for authentication and the audit log.

use crate::conn::StallGuard;
use crate::peer::{OpenConnection, Peer};
use crate::tls::{self, TlsReloader};
use axum::Router;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;

/// The connection-level limits of one listener.
#[derive(Debug, Clone)]
pub struct ListenerConfig {
    /// Names the listener in metrics (`listener` label) and logs: `api` or `ops`.
    pub name: &'static str,
    /// Prefix of the connection metric families (`<prefix>_open_connections`,
    /// `<prefix>_connections_refused_total`, `<prefix>_connections_stalled_total`).
    /// `mesh` keeps the names existing dashboards know.
    pub metric_prefix: &'static str,
    /// Connections served at once; more are refused at accept.
    pub max_connections: usize,
    /// Largest request head (request line and headers), in bytes; more gets 431.
    pub max_header_bytes: usize,
    /// A client must send a whole request head within this time (slow-loris), and finish
    /// the TLS handshake within it too.
    pub header_timeout: Duration,
    /// A response the client has not read any of for this long closes its connection.
    pub send_stall_timeout: Duration,
}

impl Default for ListenerConfig {
    fn default() -> Self {
        ListenerConfig {
            name: "api",
            metric_prefix: "mesh",
            max_connections: 10_000,
            max_header_bytes: 64 * 1024,
            header_timeout: Duration::from_secs(30),
            send_stall_timeout: Duration::from_secs(60),
        }
    }
}

/// The listener's connection metrics, as handles made once.
#[derive(Clone)]
struct ConnectionMetrics {
    open: ::metrics::Gauge,
    refused: ::metrics::Counter,
    stalled: ::metrics::Counter,
    tls_refused: ::metrics::Counter,
}

impl ConnectionMetrics {
    fn new(config: &ListenerConfig) -> Self {
        let p = config.metric_prefix;
        let l = config.name;
        ConnectionMetrics {
            open: ::metrics::gauge!(format!("{p}_open_connections"), "listener" => l),
            refused: ::metrics::counter!(format!("{p}_connections_refused_total"), "listener" => l),
            stalled: ::metrics::counter!(format!("{p}_connections_stalled_total"), "listener" => l),
            tls_refused: ::metrics::counter!(format!("{p}_tls_refused_total"), "listener" => l),
        }
    }

    /// Every family at zero from the first scrape.
    fn register(&self) {
        self.open.increment(0.0);
        self.refused.increment(0);
        self.stalled.increment(0);
        self.tls_refused.increment(0);
    }
}

/// Serves `app` over HTTP, or HTTPS when `tls` is given, until `shutdown` resolves; then
/// lets in-flight requests finish (for up to a minute).
pub async fn serve(
    listener: TcpListener,
    app: Router,
    config: &ListenerConfig,
    tls: Option<TlsReloader>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
    use hyper_util::server::conn::auto;
    use tower::ServiceExt;

    crate::metrics::install();
    let config = config.clone();
    let counters = ConnectionMetrics::new(&config);
    counters.register();
    let slots = Arc::new(tokio::sync::Semaphore::new(config.max_connections.max(1)));
    // HTTP/1.1 only: every NHS client speaks it, and sniffing for an HTTP/2 preface
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
                    tracing::warn!(error = %e, listener = config.name, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            counters.refused.increment(1);
            tracing::warn!(peer = %addr, limit = config.max_connections, listener = config.name, "connection limit reached: refusing");
            drop(stream);
            continue;
        };
        let _ = stream.set_nodelay(true);
        let app = app.clone();
        let builder = builder.clone();
        let watcher = graceful.watcher();
        let tls = tls.as_ref().map(TlsReloader::acceptor);
        let handshake_timeout = config.header_timeout;
        let stall_limit = config.send_stall_timeout;
        let counters = counters.clone();
        tokio::spawn(async move {
            let _slot = slot;
            let _open = OpenConnection::new(counters.open.clone());
            let serve_one = |peer: Peer| {
                let app = app.clone();
                hyper_util::service::TowerToHyperService::new(tower::service_fn(
                    move |request: axum::http::Request<hyper::body::Incoming>| {
                        let mut request = request.map(axum::body::Body::new);
                        request.extensions_mut().insert(peer.clone());
                        app.clone().oneshot(request)
                    },
                ))
            };
            let stream = StallGuard::new(stream, stall_limit, counters.stalled.clone());
            match tls {
                None => {
                    // hyper's head deadline starts with the first byte; a connection that
                    // never sends one is closed here instead of being held forever.
                    let mut probe = [0u8; 1];
                    let first =
                        tokio::time::timeout(handshake_timeout, stream.get_ref().peek(&mut probe))
                            .await;
                    if !matches!(first, Ok(Ok(n)) if n > 0) {
                        return;
                    }
                    let peer = Peer {
                        addr,
                        client_cn: None,
                    };
                    let conn = builder
                        .serve_connection_with_upgrades(TokioIo::new(stream), serve_one(peer));
                    let _ = watcher.watch(conn.into_owned()).await;
                }
                Some(acceptor) => {
                    let stream = match tokio::time::timeout(
                        handshake_timeout,
                        acceptor.accept(stream),
                    )
                    .await
                    {
                        Ok(Ok(s)) => s,
                        Ok(Err(e)) => {
                            tls_refused(&counters, addr, &e.to_string());
                            return;
                        }
                        Err(_) => {
                            tls_refused(&counters, addr, "handshake timed out");
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
                    let peer = Peer { addr, client_cn };
                    let conn = builder
                        .serve_connection_with_upgrades(TokioIo::new(stream), serve_one(peer));
                    let _ = watcher.watch(conn.into_owned()).await;
                }
            }
        });
    }
    drop(listener);
    // In-flight requests get a minute; a client that keeps a connection busy longer than
    // that does not hold the process up.
    if tokio::time::timeout(Duration::from_secs(60), graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!(
            listener = config.name,
            "connections still open after 60 s: closing them"
        );
    }
    Ok(())
}

/// A TLS handshake that failed: no client certificate, an untrusted one, or no TLS at all.
/// An audit event, as every refusal is.
fn tls_refused(counters: &ConnectionMetrics, addr: std::net::SocketAddr, reason: &str) {
    counters.tls_refused.increment(1);
    let peer = Peer {
        addr,
        client_cn: None,
    };
    crate::audit::Audit {
        peer: Some(&peer),
        reason: Some(reason),
        ..crate::audit::Audit::new("platform", "tls_refused")
    }
    .refused("TLS handshake refused");
}
