//! The events service's settings (the binary's `[events]` section).

use std::time::Duration;

#[derive(Debug, Clone)]
pub struct EventsConfig {
    /// Behave as the NHS MNS sandbox: open, stateless, canned answers.
    pub sandbox: bool,
    /// The service's public base URL (`https://host/multicast-notification-service`):
    /// FHIR notifications name `<base>/subscriptions`.
    pub public_base_url: String,
    /// The MESH mailbox events are sent from; `None`: MESH endpoints are refused.
    pub mesh_mailbox: Option<String>,
    /// `nats://host:port` of the JetStream server; `None`: queue endpoints are refused.
    pub nats_url: Option<String>,
    /// Webhook endpoints are an extension, off unless turned on.
    pub webhooks: bool,
    /// Key the webhook secrets are derived from. Never logged.
    pub webhook_key: Vec<u8>,
    /// How long a failing delivery is retried before it becomes a dead letter.
    pub retry_for: Duration,
    /// First retry delay; each further one doubles, up to `retry_max`.
    pub retry_base: Duration,
    pub retry_max: Duration,
    /// How long one delivery attempt may take.
    pub attempt_timeout: Duration,
    /// How often the dispatcher looks for work published on other nodes.
    pub poll_interval: Duration,
    /// Subscriptions worked at once by this node.
    pub concurrency: usize,
    /// A subscription's lease: another node takes its queue over this long after the
    /// holder stops renewing it (a crash).
    pub lease: Duration,
    /// `version` in the sandbox's `/_ping`.
    pub version: serde_json::Value,
    /// Events older than this that nobody is owed are deleted; `None` keeps them all.
    pub retention: Option<Duration>,
}

impl Default for EventsConfig {
    fn default() -> Self {
        EventsConfig {
            sandbox: false,
            public_base_url: "http://127.0.0.1:8700/multicast-notification-service".into(),
            mesh_mailbox: None,
            nats_url: None,
            webhooks: false,
            webhook_key: Vec::new(),
            retry_for: Duration::from_secs(24 * 3600),
            retry_base: Duration::from_secs(1),
            retry_max: Duration::from_secs(300),
            attempt_timeout: Duration::from_secs(30),
            poll_interval: Duration::from_millis(500),
            concurrency: 64,
            lease: Duration::from_secs(30),
            version: serde_json::json!({}),
            retention: Some(Duration::from_secs(7 * 24 * 3600)),
        }
    }
}

impl EventsConfig {
    /// The delay before retry number `attempts + 1`: `retry_base` doubled per earlier
    /// attempt, at most `retry_max`.
    pub fn backoff(&self, attempts: u32) -> Duration {
        let factor = 2u32.saturating_pow(attempts.min(20));
        self.retry_base.saturating_mul(factor).min(self.retry_max)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_its_ceiling() {
        let c = EventsConfig {
            retry_base: Duration::from_millis(100),
            retry_max: Duration::from_secs(1),
            ..EventsConfig::default()
        };
        let delays: Vec<u128> = (0..6).map(|n| c.backoff(n).as_millis()).collect();
        assert_eq!(delays, [100, 200, 400, 800, 1000, 1000]);
        assert_eq!(c.backoff(u32::MAX), Duration::from_secs(1));
    }
}
