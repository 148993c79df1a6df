//! The security audit trail: one structured event (tracing target `audit`) for every
//! refused authentication and every attempt to reach another mailbox's data, with the
//! mailbox, the source address and the reason, so operators can alert on them and
//! investigate without reading request logs.
//!
//! The serve loop puts the connection's [`Peer`] in each request's extensions; the
//! [`scope_peer`] layer makes it the current peer for the rest of the request, so that
//! the authentication code and the audit events reach it without every handler having to
//! extract and pass it along.

pub use spine_http::Peer;

tokio::task_local! {
    static PEER: Peer;
}

/// Middleware: the request's peer (from its extensions) is the current peer while the
/// request is handled.
pub async fn scope_peer(
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    match Peer::of(&request).cloned() {
        Some(peer) => PEER.scope(peer, next.run(request)).await,
        None => next.run(request).await,
    }
}

/// Runs `f` with `peer` as the current request's peer.
pub async fn with_peer<F: std::future::Future>(peer: Peer, f: F) -> F::Output {
    PEER.scope(peer, f).await
}

/// The current request's peer; `None` outside a request served by [`crate::serve`].
pub fn peer() -> Option<Peer> {
    PEER.try_with(Clone::clone).ok()
}

fn source() -> String {
    peer().map(|p| p.addr.to_string()).unwrap_or_default()
}

fn client_cn() -> String {
    peer()
        .and_then(|p| p.client_cn.map(|c| c.to_string()))
        .unwrap_or_default()
}

/// An authentication refusal. `mailbox` is the mailbox the caller claimed.
pub fn auth_refused(mailbox: &str, reason: &'static str) {
    metrics::counter!("mesh_auth_refused_total", "reason" => reason).increment(1);
    tracing::warn!(
        target: "audit",
        event = "auth_refused",
        mailbox,
        source = %source(),
        client_cn = %client_cn(),
        reason,
        "authentication refused"
    );
}

/// An authenticated caller asked for something that belongs to another mailbox.
pub fn cross_mailbox(caller: &str, reason: &'static str, target: &str) {
    metrics::counter!("mesh_cross_mailbox_total", "reason" => reason).increment(1);
    tracing::warn!(
        target: "audit",
        event = "cross_mailbox",
        mailbox = caller,
        source = %source(),
        client_cn = %client_cn(),
        reason,
        target,
        "cross-mailbox attempt refused"
    );
}

/// A request over the caller's rate limit.
pub fn rate_limited(mailbox: &str) {
    metrics::counter!("mesh_rate_limited_total").increment(1);
    tracing::info!(
        target: "audit",
        event = "rate_limited",
        mailbox,
        source = %source(),
        "request rate limit reached"
    );
}

/// A call to the admin API, allowed or refused, with what came of it.
pub fn admin_call(method: &axum::http::Method, path: &str, outcome: &str) {
    let refused = outcome.starts_with("refused");
    metrics::counter!(
        "mesh_admin_calls_total",
        "service" => "mesh",
        "outcome" => if refused { "refused" } else { "allowed" }
    )
    .increment(1);
    let method = crate::metrics::method_label(method);
    if refused {
        tracing::warn!(target: "audit", event = "admin_refused", method, path, source = %source(), outcome, "admin API call refused");
    } else {
        tracing::info!(target: "audit", event = "admin_call", method, path, source = %source(), outcome, "admin API call");
    }
}
