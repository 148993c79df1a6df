//! The audit trail every service writes to: one structured event (tracing target
//! `audit`) per refusal and per security-relevant action, written by this one sink, so an
//! operator alerts on and searches one stream with the same field names whatever the
//! service. Tokens and secrets are never among the fields: there is no field to put one
//! in.
//!
//! An event names its service and its event, carries the connection's `source` and
//! `client_cn` when it has a [`Peer`], and any of a fixed set of fields; a
//! field left `None` is not written at all, so each event shows only what it means.
//!
//! ```
//! use spine_http::audit::Audit;
//! Audit {
//!     mailbox: Some("X26ABC1"),
//!     reason: Some("bad hmac"),
//!     ..Audit::new("mesh", "auth_refused")
//! }
//! .refused("authentication refused");
//! ```

use crate::Peer;

/// One audit event. Fields are named as the README's audit tables name them; a service
/// documents which of them each of its events carries.
#[derive(Debug, Clone, Copy, Default)]
pub struct Audit<'a> {
    /// `mesh`, `frontdoor`, `platform` (the listener itself), …
    pub service: &'static str,
    /// What happened: `auth_refused`, `token_refused`, `bearer_refused`, `admin_call`, …
    pub event: &'static str,
    /// The connection, when the event comes from a request: gives `source` and `client_cn`.
    pub peer: Option<&'a Peer>,
    /// `source` when there is no [`Peer`] at hand but its address is known.
    pub source: Option<&'a str>,
    /// The MESH mailbox whose request it was (or the one a refused caller claimed).
    pub mailbox: Option<&'a str>,
    /// The front-door application whose request it was.
    pub client_id: Option<&'a str>,
    /// The protected API called.
    pub api: Option<&'a str>,
    /// The OAuth2 grant of a token request.
    pub grant: Option<&'a str>,
    /// The kind of token issued.
    pub kind: Option<&'a str>,
    /// The HTTP status answered.
    pub status: Option<u16>,
    /// A protocol error code (OAuth2 `error`, a store error's text).
    pub error: Option<&'a str>,
    /// Why it was refused, in words a runbook can match on.
    pub reason: Option<&'a str>,
    /// What the caller reached for that was not theirs (another mailbox's message id).
    pub target: Option<&'a str>,
    /// Method and path of an admin call.
    pub method: Option<&'a str>,
    pub path: Option<&'a str>,
    /// What came of an action (`answered 200`, `Redelivered`, …).
    pub outcome: Option<&'a str>,
    /// The action taken (`expire`, `redeliver`, `remove`).
    pub action: Option<&'a str>,
    /// The message concerned, its sender, the chunk and the message's status then.
    pub message_id: Option<&'a str>,
    pub sender: Option<&'a str>,
    pub chunk: Option<u32>,
    pub message_status: Option<&'a str>,
    /// A refresh token's count of uses.
    pub refresh_count: Option<u32>,
}

impl<'a> Audit<'a> {
    /// An event of `service` with no fields yet; fill them with struct update syntax.
    pub fn new(service: &'static str, event: &'static str) -> Self {
        Audit {
            service,
            event,
            ..Audit::default()
        }
    }

    /// A refusal: logged at warning level.
    pub fn refused(&self, message: &str) {
        self.emit(Level::Warn, message);
    }

    /// An allowed action worth a record (an admin call, a token issued), or a refusal
    /// that is routine (a rate limit): logged at info level.
    pub fn allowed(&self, message: &str) {
        self.emit(Level::Info, message);
    }

    /// Something was lost or broken that an operator must look at: error level.
    pub fn alarm(&self, message: &str) {
        self.emit(Level::Error, message);
    }

    fn emit(&self, level: Level, message: &str) {
        let source = self
            .source
            .map(str::to_string)
            .or_else(|| self.peer.map(|p| p.addr.to_string()));
        let client_cn = self
            .peer
            .map(|p| p.client_cn.as_deref().unwrap_or_default());
        // One field list for every level: tracing needs the level at compile time.
        macro_rules! event {
            ($mac:ident) => {
                tracing::$mac!(
                    target: "audit",
                    service = self.service,
                    event = self.event,
                    mailbox = self.mailbox,
                    client_id = self.client_id,
                    source = source.as_deref(),
                    client_cn,
                    api = self.api,
                    grant = self.grant,
                    kind = self.kind,
                    status = self.status,
                    error = self.error,
                    reason = self.reason,
                    target = self.target,
                    method = self.method,
                    path = self.path,
                    action = self.action,
                    outcome = self.outcome,
                    message_id = self.message_id,
                    sender = self.sender,
                    chunk = self.chunk,
                    message_status = self.message_status,
                    refresh_count = self.refresh_count,
                    "{message}"
                )
            };
        }
        match level {
            Level::Info => event!(info),
            Level::Warn => event!(warn),
            Level::Error => event!(error),
        }
    }
}

#[derive(Clone, Copy)]
enum Level {
    Info,
    Warn,
    Error,
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;
    use std::sync::{Arc, Mutex};

    #[derive(Clone, Default)]
    struct Buffer(Arc<Mutex<Vec<u8>>>);
    impl Write for Buffer {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    fn capture(f: impl FnOnce()) -> Vec<serde_json::Value> {
        let buffer = Buffer::default();
        let writer = buffer.clone();
        let subscriber = tracing_subscriber::fmt()
            .json()
            .with_writer(move || writer.clone())
            .finish();
        tracing::subscriber::with_default(subscriber, f);
        let bytes = buffer.0.lock().unwrap().clone();
        String::from_utf8(bytes)
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }

    #[test]
    fn an_event_carries_its_fields_and_only_those_set() {
        let peer = Peer {
            addr: "10.0.0.7:51724".parse().unwrap(),
            client_cn: Some("node.example.nhs.uk".into()),
        };
        let events = capture(|| {
            Audit {
                peer: Some(&peer),
                mailbox: Some("X26ABC2"),
                reason: Some("bad hmac"),
                ..Audit::new("mesh", "auth_refused")
            }
            .refused("authentication refused");
            Audit {
                source: Some("127.0.0.1:9"),
                client_id: Some("app-1"),
                status: Some(401),
                ..Audit::new("frontdoor", "token_refused")
            }
            .allowed("token request refused");
        });
        assert_eq!(events.len(), 2);
        let first = &events[0];
        assert_eq!(first["target"], "audit");
        assert_eq!(first["level"], "WARN");
        let f = &first["fields"];
        assert_eq!(f["message"], "authentication refused");
        assert_eq!(f["service"], "mesh");
        assert_eq!(f["event"], "auth_refused");
        assert_eq!(f["mailbox"], "X26ABC2");
        assert_eq!(f["source"], "10.0.0.7:51724");
        assert_eq!(f["client_cn"], "node.example.nhs.uk");
        assert_eq!(f["reason"], "bad hmac");
        let keys: Vec<&str> = f.as_object().unwrap().keys().map(String::as_str).collect();
        for absent in ["client_id", "status", "target", "chunk", "api"] {
            assert!(!keys.contains(&absent), "{absent} is not written: {keys:?}");
        }
        let second = &events[1]["fields"];
        assert_eq!(events[1]["level"], "INFO");
        assert_eq!(second["source"], "127.0.0.1:9");
        assert_eq!(second["status"], 401);
        assert_eq!(second["client_id"], "app-1");
        assert!(
            second.get("client_cn").is_none(),
            "no connection, no client_cn"
        );
        assert!(second.get("mailbox").is_none());
    }
}
