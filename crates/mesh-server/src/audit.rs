//! MESH's audit events, written through the platform's one audit sink
//! ([`spine_http::audit::Audit`]): every refused authentication and every attempt to
//! reach another mailbox's data, with the mailbox, the source address and the reason, so
//! operators can alert on them and investigate without reading request logs. Each is also
//! counted in a metric.
//!
//! The connection's [`Peer`] (source address, client certificate) comes from the
//! request's extensions, handed in by the caller of each function.

use spine_http::audit::Audit;
pub use spine_http::Peer;

/// MESH's events, with the connection they came on.
fn mesh<'a>(event: &'static str, peer: Option<&'a Peer>) -> Audit<'a> {
    Audit {
        peer,
        ..Audit::new("mesh", event)
    }
}

/// An authentication refusal. `mailbox` is the mailbox the caller claimed.
pub fn auth_refused(peer: Option<&Peer>, mailbox: &str, reason: &'static str) {
    metrics::counter!("mesh_auth_refused_total", "reason" => reason).increment(1);
    Audit {
        mailbox: Some(mailbox),
        reason: Some(reason),
        ..mesh("auth_refused", peer)
    }
    .refused("authentication refused");
}

/// An authenticated caller asked for something that belongs to another mailbox.
pub fn cross_mailbox(peer: Option<&Peer>, caller: &str, reason: &'static str, target: &str) {
    metrics::counter!("mesh_cross_mailbox_total", "reason" => reason).increment(1);
    Audit {
        mailbox: Some(caller),
        reason: Some(reason),
        target: Some(target),
        ..mesh("cross_mailbox", peer)
    }
    .refused("cross-mailbox attempt refused");
}

/// A request over the caller's rate limit.
pub fn rate_limited(peer: Option<&Peer>, mailbox: &str) {
    metrics::counter!("mesh_rate_limited_total").increment(1);
    Audit {
        mailbox: Some(mailbox),
        ..mesh("rate_limited", peer)
    }
    .allowed("request rate limit reached");
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
    let event = Audit {
        method: Some(crate::metrics::method_label(method)),
        path: Some(path),
        outcome: Some(outcome),
        ..mesh(
            if refused {
                "admin_refused"
            } else {
                "admin_call"
            },
            peer,
        )
    };
    if refused {
        event.refused("admin API call refused");
    } else {
        event.allowed("admin API call");
    }
}

/// An operator's action on one message, logged next to its `admin_call`.
pub fn admin_action(message_id: &str, action: &str, outcome: &str) {
    Audit {
        message_id: Some(message_id),
        action: Some(action),
        outcome: Some(outcome),
        ..Audit::new("mesh", "admin_action")
    }
    .allowed("operator action");
}

/// A download found a chunk's payload missing.
pub struct PayloadLost<'a> {
    pub message_id: &'a str,
    /// The recipient.
    pub mailbox: &'a str,
    pub sender: &'a str,
    pub chunk: u32,
    pub message_status: &'a str,
    pub outcome: &'a str,
    pub error: Option<&'a str>,
}

/// A message's payload is gone: an operator must look.
pub fn payload_lost(peer: Option<&Peer>, lost: &PayloadLost<'_>) {
    Audit {
        message_id: Some(lost.message_id),
        mailbox: Some(lost.mailbox),
        sender: Some(lost.sender),
        chunk: Some(lost.chunk),
        message_status: Some(lost.message_status),
        outcome: Some(lost.outcome),
        error: lost.error,
        ..mesh("payload_lost", peer)
    }
    .alarm("payload of a message is missing");
}
