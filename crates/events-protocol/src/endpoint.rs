//! Where a subscription's events go (`channel.endpoint`, API.md §4.1).
//!
//! * `mesh://MAILBOX?workflow_id=WF`: a MESH message to MAILBOX on this platform's MESH.
//! * `arn:aws:sqs:eu-west-2:ACCOUNT:QUEUE`: **OpenSpine** has no SQS; the queue is a
//!   durable NATS JetStream subject, `mns.sqs.ACCOUNT.QUEUE` (dots in a queue name become
//!   `_`), so subscriptions written for the NHS work unchanged and their events can be
//!   consumed.
//! * `nats:SUBJECT`: **OpenSpine extension**, a JetStream subject named outright.
//! * `https://…`: **OpenSpine extension**, a webhook (off unless the operator turns
//!   webhooks on); `http://` only to a loopback address, for local testing.

use std::fmt;

pub const MAX_ENDPOINT: usize = 2048;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Endpoint {
    Mesh {
        mailbox: String,
        workflow_id: String,
    },
    Sqs {
        account: String,
        queue: String,
    },
    Nats {
        subject: String,
    },
    Webhook {
        url: String,
    },
}

/// The channel kinds, for metrics and configuration.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kind {
    Mesh,
    Nats,
    Webhook,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Mesh => "mesh",
            Kind::Nats => "nats",
            Kind::Webhook => "webhook",
        }
    }
}

impl Endpoint {
    pub fn parse(text: &str) -> Option<Endpoint> {
        if text.len() > MAX_ENDPOINT || text.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return None;
        }
        if let Some(rest) = text.strip_prefix("mesh://") {
            let (mailbox, query) = rest.split_once('?')?;
            let workflow_id = query.strip_prefix("workflow_id=")?;
            let mailbox_ok = !mailbox.is_empty()
                && mailbox.len() <= 64
                && mailbox
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'_');
            let workflow_ok = !workflow_id.is_empty()
                && workflow_id.len() <= 255
                && workflow_id
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"_.-".contains(&b));
            return (mailbox_ok && workflow_ok).then(|| Endpoint::Mesh {
                mailbox: mailbox.to_string(),
                workflow_id: workflow_id.to_string(),
            });
        }
        if let Some(rest) = text.strip_prefix("arn:aws:sqs:eu-west-2:") {
            let (account, queue) = rest.split_once(':')?;
            let ok = account.len() <= 12
                && account.bytes().all(|b| b.is_ascii_digit())
                && !queue.is_empty()
                && queue.len() <= 80
                && queue
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"_.-".contains(&b));
            return ok.then(|| Endpoint::Sqs {
                account: account.to_string(),
                queue: queue.to_string(),
            });
        }
        if let Some(subject) = text.strip_prefix("nats:") {
            return is_nats_subject(subject).then(|| Endpoint::Nats {
                subject: subject.to_string(),
            });
        }
        if text.starts_with("https://") || text.starts_with("http://") {
            let url = url::Url::parse(text).ok()?;
            let host = url.host()?;
            let loopback = match host {
                url::Host::Domain(d) => d == "localhost",
                url::Host::Ipv4(a) => a.is_loopback(),
                url::Host::Ipv6(a) => a.is_loopback(),
            };
            let ok = match url.scheme() {
                "https" => true,
                "http" => loopback,
                _ => false,
            };
            return (ok && url.username().is_empty() && url.password().is_none()).then(|| {
                Endpoint::Webhook {
                    url: text.to_string(),
                }
            });
        }
        None
    }

    pub fn kind(&self) -> Kind {
        match self {
            Endpoint::Mesh { .. } => Kind::Mesh,
            Endpoint::Sqs { .. } | Endpoint::Nats { .. } => Kind::Nats,
            Endpoint::Webhook { .. } => Kind::Webhook,
        }
    }

    /// The JetStream subject of a queue endpoint.
    pub fn nats_subject(&self) -> Option<String> {
        match self {
            Endpoint::Sqs { account, queue } => Some(format!(
                "mns.sqs.{}.{}",
                if account.is_empty() { "0" } else { account },
                queue.replace('.', "_")
            )),
            Endpoint::Nats { subject } => Some(subject.clone()),
            _ => None,
        }
    }
}

impl fmt::Display for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Endpoint::Mesh {
                mailbox,
                workflow_id,
            } => write!(f, "mesh://{mailbox}?workflow_id={workflow_id}"),
            Endpoint::Sqs { account, queue } => {
                write!(f, "arn:aws:sqs:eu-west-2:{account}:{queue}")
            }
            Endpoint::Nats { subject } => write!(f, "nats:{subject}"),
            Endpoint::Webhook { url } => f.write_str(url),
        }
    }
}

/// A concrete NATS subject: dot-separated tokens of letters, digits, `_` and `-`; no
/// wildcards.
pub fn is_nats_subject(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 255
        && s.split('.').all(|t| {
            !t.is_empty()
                && t.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"_-".contains(&b))
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_nhs_forms_and_ours_parse_and_print_back() {
        for text in [
            "mesh://MYMAILBOXOT101?workflow_id=MY_WORKFLOW_1.1-A",
            "arn:aws:sqs:eu-west-2:12345:example-queue-123",
            "arn:aws:sqs:eu-west-2::q",
            "nats:mns.gp.Y12345",
            "https://receiver.example.nhs.uk/events?x=1",
            "http://127.0.0.1:9000/hook",
            "http://localhost/hook",
        ] {
            let e = Endpoint::parse(text).unwrap_or_else(|| panic!("{text}"));
            assert_eq!(e.to_string(), text);
        }
        assert_eq!(
            Endpoint::parse("arn:aws:sqs:eu-west-2:12345:example.queue")
                .unwrap()
                .nats_subject()
                .as_deref(),
            Some("mns.sqs.12345.example_queue")
        );
        assert_eq!(
            Endpoint::parse("mesh://X26ABC1?workflow_id=WF")
                .unwrap()
                .kind(),
            Kind::Mesh
        );
    }

    #[test]
    fn other_endpoints_are_refused() {
        for bad in [
            "",
            "mesh://?workflow_id=WF",
            "mesh://X26ABC1",
            "mesh://X26ABC1?workflow=WF",
            "mesh://X26 ABC1?workflow_id=WF",
            "mesh://X26ABC1?workflow_id=W F",
            "mesh://X26-ABC1?workflow_id=WF",
            "arn:aws:sqs:us-east-1:12345:q",
            "arn:aws:sqs:eu-west-2:1234567890123:q",
            "arn:aws:sqs:eu-west-2:12345:",
            "nats:",
            "nats:a..b",
            "nats:a.*",
            "nats:a.>",
            "http://receiver.example.nhs.uk/hook",
            "https://user:pw@receiver.example.nhs.uk/hook",
            "ftp://example.org/x",
            "https://",
        ] {
            assert_eq!(Endpoint::parse(bad), None, "{bad:?}");
        }
    }
}
