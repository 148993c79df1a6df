//! The events service's settings section: flags and `OPENSPINE_…` environment variables,
//! flattened into `openspine serve` (the `[events]` section of the configuration file).

use crate::EventsConfig;
use std::path::PathBuf;
use std::time::Duration;

#[derive(Debug, Clone, clap::Args)]
pub struct EventsArgs {
    /// Serve the events service (MNS) under /multicast-notification-service. On with
    /// `--demo`. Outside `--sandbox` it needs the front door for its tokens.
    #[arg(long, env = "OPENSPINE_EVENTS", value_parser = clap::builder::BoolishValueParser::new())]
    pub events: bool,
    /// The MESH mailbox events are sent from to `mesh://` subscribers. It must exist, and
    /// be registered to send each workflow subscribers name. Unset: `mesh://` endpoints are
    /// refused.
    #[arg(long, env = "OPENSPINE_EVENTS_MESH_MAILBOX")]
    pub events_mesh_mailbox: Option<String>,
    /// The NATS server (with JetStream) queue endpoints are published to
    /// (`nats://127.0.0.1:4222`). Unset: queue endpoints are refused.
    #[arg(long, env = "OPENSPINE_EVENTS_NATS_URL")]
    pub events_nats_url: Option<String>,
    /// Accept webhook (`https://`) endpoints, an OpenSpine extension.
    #[arg(long, env = "OPENSPINE_EVENTS_WEBHOOKS", value_parser = clap::builder::BoolishValueParser::new())]
    pub events_webhooks: bool,
    /// File holding the key webhook secrets are derived from (at least 32 bytes). Needed
    /// with `--events-webhooks`; changing it changes every subscription's secret.
    #[arg(long, env = "OPENSPINE_EVENTS_WEBHOOK_KEY_FILE")]
    pub events_webhook_key_file: Option<PathBuf>,
    /// Seconds a failing delivery is retried before it becomes a dead letter.
    #[arg(
        long,
        env = "OPENSPINE_EVENTS_RETRY_FOR_SECS",
        default_value_t = 86_400
    )]
    pub events_retry_for_secs: u64,
    /// First retry delay in milliseconds; each further one doubles.
    #[arg(long, env = "OPENSPINE_EVENTS_RETRY_BASE_MS", default_value_t = 1_000)]
    pub events_retry_base_ms: u64,
    /// Longest retry delay, in seconds.
    #[arg(long, env = "OPENSPINE_EVENTS_RETRY_MAX_SECS", default_value_t = 300)]
    pub events_retry_max_secs: u64,
    /// Seconds one delivery attempt may take.
    #[arg(
        long,
        env = "OPENSPINE_EVENTS_ATTEMPT_TIMEOUT_SECS",
        default_value_t = 30
    )]
    pub events_attempt_timeout_secs: u64,
    /// Seconds a subscription's lease lasts: another node takes over its deliveries this
    /// long after the node working them dies.
    #[arg(long, env = "OPENSPINE_EVENTS_LEASE_SECS", default_value_t = 30)]
    pub events_lease_secs: u64,
    /// Seconds accepted events are kept once nobody is owed them (0 keeps them all). A
    /// repeat of an event's source and id after that is a new event.
    #[arg(
        long,
        env = "OPENSPINE_EVENTS_RETENTION_SECS",
        default_value_t = 604_800
    )]
    pub events_retention_secs: u64,
    /// `version` in the health answers (`/_ping`, `/_status`, `/health`), as JSON: the NHS
    /// sandbox's `VERSION_INFO`, e.g. `{"build_label":"1233-shaacdef1","releaseId":"1234"}`.
    /// Unset: `{"version": "<OpenSpine's version>"}`.
    #[arg(long, env = "OPENSPINE_EVENTS_VERSION_INFO")]
    pub events_version_info: Option<String>,
    /// Subscriptions one node delivers to at once.
    #[arg(long, env = "OPENSPINE_EVENTS_CONCURRENCY", default_value_t = 64)]
    pub events_concurrency: usize,
}

impl EventsArgs {
    pub fn enabled(&self, demo: bool) -> bool {
        self.events || demo
    }

    /// The service's configuration. `public_base_url`: where clients reach the platform
    /// (`https://api.example.nhs.uk`).
    pub fn config(&self, sandbox: bool, public_base_url: &str) -> Result<EventsConfig, String> {
        let webhook_key = match (&self.events_webhook_key_file, self.events_webhooks) {
            (Some(path), _) => {
                let key = std::fs::read(path)
                    .map_err(|e| format!("reading {}: {e}", path.display()))?;
                let key: Vec<u8> = key.trim_ascii().to_vec();
                if key.len() < 32 {
                    return Err(format!(
                        "{}: a webhook key needs at least 32 bytes",
                        path.display()
                    ));
                }
                key
            }
            (None, true) => {
                return Err(
                    "--events-webhooks needs --events-webhook-key-file (the key webhook secrets are derived from)"
                        .into(),
                )
            }
            (None, false) => Vec::new(),
        };
        let version = match &self.events_version_info {
            Some(text) => serde_json::from_str::<serde_json::Value>(text)
                .ok()
                .filter(serde_json::Value::is_object)
                .ok_or("--events-version-info must be a JSON object")?,
            None => serde_json::json!({"version": env!("CARGO_PKG_VERSION")}),
        };
        Ok(EventsConfig {
            sandbox,
            public_base_url: format!(
                "{}{}",
                public_base_url.trim_end_matches('/'),
                events_protocol::BASE_PATH
            ),
            mesh_mailbox: self.events_mesh_mailbox.clone(),
            nats_url: self.events_nats_url.clone(),
            webhooks: self.events_webhooks,
            webhook_key,
            retry_for: Duration::from_secs(self.events_retry_for_secs),
            retry_base: Duration::from_millis(self.events_retry_base_ms.max(1)),
            retry_max: Duration::from_secs(self.events_retry_max_secs.max(1)),
            attempt_timeout: Duration::from_secs(self.events_attempt_timeout_secs.max(1)),
            lease: Duration::from_secs(self.events_lease_secs.max(1)),
            concurrency: self.events_concurrency.max(1),
            version,
            retention: (self.events_retention_secs > 0)
                .then(|| Duration::from_secs(self.events_retention_secs)),
            ..EventsConfig::default()
        })
    }
}
