//! The security audit trail: one structured event (tracing target `audit`) for every
//! refused authentication and every attempt to reach another mailbox's data, with the
//! mailbox, the source address and the reason, so operators can alert on them and
//! investigate without reading request logs.
//!
//! The connection's [`Peer`] (source address, client certificate) comes from the
//! request's extensions, handed in by the caller of each function.

pub use spine_http::Peer;

fn source(peer: Option<&Peer>) -> String {
    Peer::source(peer)
}

fn client_cn(peer: Option<&Peer>) -> String {
    peer.and_then(|p| p.client_cn.as_deref().map(str::to_string))
        .unwrap_or_default()
}

/// An authentication refusal. `mailbox` is the mailbox the caller claimed.
pub fn auth_refused(peer: Option<&Peer>, mailbox: &str, reason: &'static str) {
    metrics::counter!("mesh_auth_refused_total", "reason" => reason).increment(1);
    tracing::warn!(
        target: "audit",
        service = "mesh",
        event = "auth_refused",
        mailbox,
        source = %source(peer),
        client_cn = %client_cn(peer),
        reason,
        "authentication refused"
    );
}

/// An authenticated caller asked for something that belongs to another mailbox.
pub fn cross_mailbox(peer: Option<&Peer>, caller: &str, reason: &'static str, target: &str) {
    metrics::counter!("mesh_cross_mailbox_total", "reason" => reason).increment(1);
    tracing::warn!(
        target: "audit",
        service = "mesh",
        event = "cross_mailbox",
        mailbox = caller,
        source = %source(peer),
        client_cn = %client_cn(peer),
        reason,
        target,
        "cross-mailbox attempt refused"
    );
}

/// A request over the caller's rate limit.
pub fn rate_limited(peer: Option<&Peer>, mailbox: &str) {
    metrics::counter!("mesh_rate_limited_total").increment(1);
    tracing::info!(
        target: "audit",
        service = "mesh",
        event = "rate_limited",
        mailbox,
        source = %source(peer),
        "request rate limit reached"
    );
}

/// A call to the admin API, allowed or refused, with what came of it.
pub fn admin_call(peer: Option<&Peer>, method: &axum::http::Method, path: &str, outcome: &str) {
    let refused = outcome.starts_with("refused");
    metrics::counter!(
        "mesh_admin_calls_total",
        "service" => "mesh",
        "outcome" => if refused { "refused" } else { "allowed" }
    )
    .increment(1);
    let method = crate::metrics::method_label(method);
    if refused {
        tracing::warn!(target: "audit", service = "mesh", event = "admin_refused", method, path, source = %source(peer), outcome, "admin API call refused");
    } else {
        tracing::info!(target: "audit", service = "mesh", event = "admin_call", method, path, source = %source(peer), outcome, "admin API call");
    }
}
