//! The HTTP runtime of OpenSpine: what every service needs from a server and none should
//! write twice. One accept loop ([`serve`]) with the connection limits (open connections,
//! head size and deadline, TLS handshake deadline, stalled readers), TLS with reload
//! ([`tls`]), the connection's [`Peer`] in each request's extensions, Prometheus metrics
//! with a `service` label ([`metrics`]), the one audit sink ([`audit`]),
//! request-id mirroring ([`ids`]), an in-memory
//! rate limiter ([`ratelimit`]) and the one operations listener ([`ops`]).
//!
//! It knows no service: the binary merges each enabled service's router ([`routes`]) and
//! hands the result to [`serve`].

pub mod audit;
pub mod conn;
pub mod ids;
pub mod metrics;
pub mod ops;
pub mod peer;
pub mod ratelimit;
pub mod serve;
pub mod tls;

pub use peer::Peer;
pub use serve::{serve, ListenerConfig};

/// The routers of the enabled services as one, each under its own base path. The binary
/// composes services with this and never builds a route itself.
pub fn routes(services: impl IntoIterator<Item = axum::Router>) -> axum::Router {
    services
        .into_iter()
        .fold(axum::Router::new(), axum::Router::merge)
}
