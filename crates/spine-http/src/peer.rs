//! Who is at the other end of a connection, carried to every request it brings in as a
//! request extension: authentication (a client certificate bound to a MESH mailbox) and
//! the audit trail (source address) read it from there, without a task-local that only
//! exists inside the serve loop.

use std::net::SocketAddr;
use std::sync::Arc;

/// The connection a request came in on.
#[derive(Debug, Clone)]
pub struct Peer {
    pub addr: SocketAddr,
    /// Subject CN of the verified client certificate, under mutual TLS.
    pub client_cn: Option<Arc<str>>,
}

impl Peer {
    /// The peer of a request served by [`crate::serve`]; `None` for a request built by
    /// hand (a test calling a router directly).
    pub fn of<B>(request: &axum::http::Request<B>) -> Option<&Peer> {
        request.extensions().get::<Peer>()
    }

    /// The source address as an audit field: empty when unknown.
    pub fn source(peer: Option<&Peer>) -> String {
        peer.map(|p| p.addr.to_string()).unwrap_or_default()
    }
}

/// One open connection, counted in a gauge for as long as this value lives. Every way a
/// connection ends (a failed handshake, a silent client, a normal close, a panic in the
/// task) drops it, so the gauge cannot drift as a hand-kept count on each path would.
pub struct OpenConnection {
    gauge: ::metrics::Gauge,
}

impl OpenConnection {
    pub fn new(gauge: ::metrics::Gauge) -> Self {
        gauge.increment(1.0);
        OpenConnection { gauge }
    }
}

impl Drop for OpenConnection {
    fn drop(&mut self) {
        self.gauge.decrement(1.0);
    }
}
