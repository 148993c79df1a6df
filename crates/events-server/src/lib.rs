//! The events service: NHS England's Multicast Notification Service, as a service of
//! the platform (`shared/events/API.md`).
//!
//! * [`api`]: the HTTP API under `/multicast-notification-service` (publish,
//!   subscriptions, health), and the NHS sandbox's canned answers in sandbox mode.
//! * [`dispatch`]: the delivery loop. Each subscription's queue is worked by one node at a
//!   time (a lease in the coordination store), in event order, one task per subscription,
//!   so a slow or dead subscriber delays nobody else.
//! * [`channel`]: the three kinds of endpoint: a MESH mailbox (through
//!   [`spine_events::Mailboxes`], which MESH implements), a NATS JetStream subject, a
//!   webhook.
//! * [`Events::publisher`]: how another service (MESH, PDS) publishes in-process.

pub mod admin;
pub mod api;
pub mod channel;
pub mod config;
pub mod dispatch;
pub mod metrics;
pub mod retention;
pub mod settings;

pub use config::EventsConfig;

use auth_protocol::gateway::{ErrorStyle, Protected};
use auth_protocol::scopes::{AccessMode, AccessRule};
use chrono::Utc;
use events_protocol::Accepted;
use events_store::EventStore;
use spine_events::{BoxFuture, Event, Mailboxes, PublishError, Published, Publisher};
use spine_store::Coordination;
use std::sync::Arc;
use tokio::sync::Notify;

/// The API's name in products, rate limits and registry flags.
pub const API: &str = "multicast-notification-service";

/// The service, cheap to clone.
#[derive(Clone)]
pub struct Events {
    inner: Arc<Inner>,
}

struct Inner {
    config: EventsConfig,
    store: Arc<dyn EventStore>,
    coord: Arc<dyn Coordination>,
    mailboxes: Option<Arc<dyn Mailboxes>>,
    channels: channel::Channels,
    /// Rung after every publish, so this node's dispatcher looks at once.
    wake: Notify,
    /// This process, as a lease holder.
    node: String,
}

impl Events {
    pub fn new(
        config: EventsConfig,
        store: Arc<dyn EventStore>,
        coord: Arc<dyn Coordination>,
        mailboxes: Option<Arc<dyn Mailboxes>>,
    ) -> Self {
        let channels = channel::Channels::new(&config);
        Events {
            inner: Arc::new(Inner {
                config,
                store,
                coord,
                mailboxes,
                channels,
                wake: Notify::new(),
                node: format!(
                    "{}-{}-{}",
                    std::env::var("HOSTNAME").unwrap_or_else(|_| "node".into()),
                    std::process::id(),
                    uuid::Uuid::new_v4().simple()
                ),
            }),
        }
    }

    pub fn config(&self) -> &EventsConfig {
        &self.inner.config
    }

    pub fn store(&self) -> &Arc<dyn EventStore> {
        &self.inner.store
    }

    /// Stores an accepted event and wakes the dispatcher.
    pub async fn publish(
        &self,
        accepted: &Accepted,
        publisher: &str,
    ) -> events_store::Result<Published> {
        let published = self
            .inner
            .store
            .publish(accepted, publisher, Utc::now())
            .await?;
        let outcome = match published {
            Published::Accepted { .. } => {
                self.inner.wake.notify_one();
                "accepted"
            }
            Published::Duplicate => "duplicate",
        };
        ::metrics::counter!("events_published_total", "service" => "events", "outcome" => outcome)
            .increment(1);
        Ok(published)
    }

    /// Puts a subscription's dead letters back in its queue and wakes the dispatcher.
    pub async fn replay_dead_letters(&self, subscription_id: &str) -> events_store::Result<u64> {
        let n = self
            .inner
            .store
            .replay_dead_letters(subscription_id)
            .await?;
        if n > 0 {
            self.inner.wake.notify_one();
        }
        Ok(n)
    }

    /// A [`Publisher`] for a service of this process: its events are checked by the rules
    /// an HTTP publisher meets, and recorded as published by `name`.
    pub fn publisher(&self, name: &'static str) -> Arc<dyn Publisher> {
        Arc::new(ServicePublisher {
            events: self.clone(),
            name,
        })
    }

    /// The gateway declaration: application-restricted and CIS2 access (API.md §2).
    pub fn protected() -> Protected {
        Protected {
            api: API,
            rules: vec![
                AccessRule {
                    scope: events_protocol::APP_SCOPE.into(),
                    mode: AccessMode::ApplicationRestricted,
                },
                AccessRule {
                    scope: events_protocol::CIS2_SCOPE.into(),
                    mode: AccessMode::UserRestricted,
                },
            ],
            style: ErrorStyle::Plain,
            default_limits: Default::default(),
        }
    }

    /// Readiness: the store answers.
    pub fn service_ops(&self) -> spine_http::ops::ServiceOps {
        let events = self.clone();
        spine_http::ops::ServiceOps {
            name: "events",
            ready: Arc::new(move || {
                let events = events.clone();
                Box::pin(async move {
                    match events.inner.store.ping().await {
                        Ok(()) => spine_http::ops::Readiness {
                            ready: true,
                            body: serde_json::json!({"status": "ready"}),
                        },
                        Err(e) => {
                            tracing::warn!(error = %e, "events readiness: store");
                            spine_http::ops::Readiness {
                                ready: false,
                                body: serde_json::json!({"status": "not ready", "reason": "store"}),
                            }
                        }
                    }
                })
            }),
        }
    }
}

struct ServicePublisher {
    events: Events,
    name: &'static str,
}

impl Publisher for ServicePublisher {
    fn publish(&self, event: Event) -> BoxFuture<'_, Result<Published, PublishError>> {
        Box::pin(async move {
            events_protocol::event::check(&event).map_err(|e| {
                PublishError::Invalid(
                    e.0.iter()
                        .map(|(k, v)| format!("{k}: {v}"))
                        .collect::<Vec<_>>()
                        .join("; "),
                )
            })?;
            let accepted = Accepted {
                event,
                legacy: None,
            };
            self.events
                .publish(&accepted, self.name)
                .await
                .map_err(|e| PublishError::Unavailable(e.to_string()))
        })
    }
}
