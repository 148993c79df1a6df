//! The audit trail every service writes to: one structured event (tracing target
//! `audit`) per refusal and per security-relevant action, with the same fields whatever
//! the service, so an operator alerts on and searches one stream. Tokens and secrets are
//! never among the fields.

use crate::Peer;

/// One audit event. `subject` is whose request it was (a MESH mailbox, a front-door
/// app's client id), `target` what it reached for (another mailbox's message id, an API).
#[derive(Debug, Clone, Copy)]
pub struct Audit<'a> {
    pub service: &'static str,
    /// What happened: `auth_refused`, `token_refused`, `bearer_refused`, `admin_call`, …
    pub event: &'static str,
    pub peer: Option<&'a Peer>,
    pub subject: &'a str,
    pub reason: &'a str,
    pub target: &'a str,
}

impl Audit<'_> {
    /// A refusal: logged at warning level.
    pub fn refused(&self) {
        tracing::warn!(
            target: "audit",
            service = self.service,
            event = self.event,
            subject = self.subject,
            source = %Peer::source(self.peer),
            client_cn = self.peer.and_then(|p| p.client_cn.as_deref()).unwrap_or_default(),
            reason = self.reason,
            target = self.target,
            "refused"
        );
    }

    /// An allowed action worth a record (an admin call, a token issued).
    pub fn allowed(&self) {
        tracing::info!(
            target: "audit",
            service = self.service,
            event = self.event,
            subject = self.subject,
            source = %Peer::source(self.peer),
            client_cn = self.peer.and_then(|p| p.client_cn.as_deref()).unwrap_or_default(),
            reason = self.reason,
            target = self.target,
            "allowed"
        );
    }
}
