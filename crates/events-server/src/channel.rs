//! The three kinds of endpoint a subscription can name, and one delivery to each.
//!
//! A failure is either worth retrying (a subscriber or NATS away, a webhook answering
//! 5xx) or permanent (MESH will never take the message: no such mailbox, or a workflow
//! the recipient may not receive); a permanent one becomes a dead letter at once.

use crate::config::EventsConfig;
use events_protocol::delivery::{self, SIGNATURE_HEADER, SUBSCRIPTION_HEADER};
use events_protocol::{Endpoint, Subscription};
use events_store::StoredEvent;
use spine_events::{DeliveryError, Mailboxes, OutboundMessage};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::OnceCell;

/// The JetStream stream OpenSpine keeps for queue endpoints (`mns.>`).
pub const STREAM: &str = "OPENSPINE_MNS";

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Failure {
    Retry(String),
    Permanent(String),
}

impl Failure {
    pub fn text(&self) -> &str {
        match self {
            Failure::Retry(s) | Failure::Permanent(s) => s,
        }
    }
}

pub struct Channels {
    http: reqwest::Client,
    nats_url: Option<String>,
    nats: OnceCell<async_nats::jetstream::Context>,
    stream_ready: AtomicBool,
}

impl Channels {
    pub fn new(config: &EventsConfig) -> Self {
        let http = reqwest::Client::builder()
            .user_agent(concat!("OpenSpine-events/", env!("CARGO_PKG_VERSION")))
            .timeout(config.attempt_timeout)
            .connect_timeout(Duration::from_secs(5))
            // A webhook answers where it was told to be, not elsewhere.
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap_or_default();
        Channels {
            http,
            nats_url: config.nats_url.clone(),
            nats: OnceCell::new(),
            stream_ready: AtomicBool::new(false),
        }
    }

    /// Delivers one event to one subscription's endpoint.
    pub async fn deliver(
        &self,
        config: &EventsConfig,
        mailboxes: Option<&Arc<dyn Mailboxes>>,
        subscription: &Subscription,
        event: &StoredEvent,
    ) -> Result<(), Failure> {
        let request = &subscription.request;
        let body = delivery::body(
            request.payload,
            &event.event,
            event.legacy.as_ref(),
            &format!("{}/subscriptions", config.public_base_url),
            &uuid::Uuid::new_v4().to_string(),
        );
        let body = serde_json::to_vec(&body).map_err(|e| Failure::Permanent(e.to_string()))?;
        let content_type = request.payload.as_str();
        match &request.endpoint {
            Endpoint::Mesh {
                mailbox,
                workflow_id,
            } => {
                let (Some(from), Some(mailboxes)) = (&config.mesh_mailbox, mailboxes) else {
                    return Err(Failure::Retry(
                        "MESH delivery is not configured on this node".into(),
                    ));
                };
                let message = OutboundMessage {
                    from: from.clone(),
                    to: mailbox.clone(),
                    workflow_id: workflow_id.clone(),
                    content_type: content_type.into(),
                    local_id: event.event.id.clone(),
                    subject: Some(event.event.event_type.clone()),
                    body,
                };
                match mailboxes.post(message).await {
                    Ok(_) => Ok(()),
                    Err(DeliveryError::Refused(why)) => Err(Failure::Permanent(why)),
                    Err(DeliveryError::Unavailable(why)) => Err(Failure::Retry(why)),
                }
            }
            Endpoint::Sqs { .. } | Endpoint::Nats { .. } => {
                let subject = request.endpoint.nats_subject().unwrap_or_default();
                self.publish_nats(
                    &subject,
                    &format!("{}:{}", subscription.id, event.seq),
                    content_type,
                    body,
                )
                .await
            }
            Endpoint::Webhook { url } => {
                let secret = delivery::webhook_secret(&config.webhook_key, &subscription.id);
                let now = chrono::Utc::now().timestamp();
                let mut post = self
                    .http
                    .post(url)
                    .header("Content-Type", content_type)
                    .header(SIGNATURE_HEADER, delivery::sign(&secret, now, &body))
                    .header(SUBSCRIPTION_HEADER, &subscription.id);
                for h in &request.headers {
                    if let Some((name, value)) = h.split_once(':') {
                        post = post.header(name.trim(), value.trim());
                    }
                }
                match post.body(body).send().await {
                    Ok(r) if r.status().is_success() => Ok(()),
                    Ok(r) => Err(Failure::Retry(format!("webhook answered {}", r.status()))),
                    Err(e) => Err(Failure::Retry(format!("webhook: {}", error_chain(&e)))),
                }
            }
        }
    }

    async fn jetstream(&self) -> Result<&async_nats::jetstream::Context, Failure> {
        let Some(url) = &self.nats_url else {
            return Err(Failure::Retry("no NATS server is configured".into()));
        };
        self.nats
            .get_or_try_init(|| async {
                // Connects in the background and keeps reconnecting: a NATS server that
                // is away when the service starts, or goes away later, only fails the
                // deliveries made meanwhile, which are retried.
                let client = async_nats::ConnectOptions::new()
                    .retry_on_initial_connect()
                    .connection_timeout(Duration::from_secs(5))
                    .connect(url.as_str())
                    .await
                    .map_err(|e| Failure::Retry(format!("NATS: {e}")))?;
                Ok(async_nats::jetstream::new(client))
            })
            .await
    }

    async fn publish_nats(
        &self,
        subject: &str,
        message_id: &str,
        content_type: &str,
        body: Vec<u8>,
    ) -> Result<(), Failure> {
        let js = self.jetstream().await?;
        if !self.stream_ready.load(Ordering::Relaxed) {
            js.get_or_create_stream(async_nats::jetstream::stream::Config {
                name: STREAM.into(),
                subjects: vec!["mns.>".into()],
                ..Default::default()
            })
            .await
            .map_err(|e| Failure::Retry(format!("NATS stream {STREAM}: {e}")))?;
            self.stream_ready.store(true, Ordering::Relaxed);
        }
        let mut headers = async_nats::HeaderMap::new();
        // JetStream drops a second copy with the same id within its duplicate window:
        // a retry after a lost ack does not deliver twice.
        headers.insert("Nats-Msg-Id", message_id);
        headers.insert("Content-Type", content_type);
        let ack = js
            .publish_with_headers(subject.to_string(), headers, body.into())
            .await
            .map_err(|e| Failure::Retry(format!("NATS publish: {e}")))?;
        ack.await
            .map(|_| ())
            .map_err(|e| Failure::Retry(format!("NATS ack: {e}")))
    }
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}
