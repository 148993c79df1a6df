//! Server behaviour switches. Defaults are the realistic service; `sandbox()` relaxes
//! them to what the NHS sandbox does, for people who use MESH as a test double.

use std::time::Duration;

#[derive(Clone)]
pub struct ServerConfig {
    /// The environment-wide HMAC key (API.md 2.2). Never logged.
    pub shared_key: String,
    /// Enables the sandbox admin endpoints and relaxes workflow permissions, token replay
    /// and clock checks, as the NHS sandbox does.
    pub sandbox: bool,
    /// Refuse tokens whose timestamp is further than this from server time (API.md 2.3).
    pub clock_window: Option<Duration>,
    /// Refuse a token that was already used.
    pub replay_check: bool,
    /// Refuse sends whose sender/recipient are not registered for the workflow.
    pub enforce_workflows: bool,
    /// Refuse a `Mex-From` that is not the caller (code 07) and a `Mex-MessageType` other
    /// than DATA (code 11), as the real service does; the sandbox ignores both.
    pub strict_headers: bool,
    /// Largest request body: a whole single-chunk message or one chunk (API.md 5.4).
    pub max_chunk_size: u64,
    /// Largest whole message, summed over its chunks.
    pub max_message_size: u64,
    /// Most chunks one message may declare.
    pub max_chunks: u32,
    /// Largest `max_results` an inbox page may ask for.
    pub max_page_size: u32,
    /// Largest request head (request line and headers), in bytes; more gets 431.
    pub max_header_bytes: usize,
    /// A client must send a whole request head within this time (slow-loris), and finish
    /// the TLS handshake within it too.
    pub header_timeout: Duration,
    /// A request body that sends nothing for this long is abandoned (stalled uploads).
    pub body_idle_timeout: Duration,
    /// Connections served at once; more are refused at accept.
    pub max_connections: usize,
    /// A response the client has not read any of for this long closes its connection
    /// (a stalled reader would otherwise hold a connection slot forever).
    pub send_stall_timeout: Duration,
    /// Per-mailbox request rate (token bucket); `None` turns it off.
    pub rate_limit: Option<RateLimit>,
    /// Expiry, retention and the sweep that applies them (API.md 5.7, 5.8).
    pub lifecycle: LifecycleConfig,
    /// The bearer token of the admin API on the ops listener; `None` turns the admin
    /// API off. Never logged.
    pub admin_token: Option<String>,
    /// Echoed by the ping endpoints.
    pub env: String,
    pub build_label: String,
}

/// The shared key of the NHS's own integration environments and sandbox: public, in the
/// MESH documentation. Fine for a sandbox on loopback, never for a real service.
pub const DEFAULT_SHARED_KEY: &str = "TestKey";

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            shared_key: DEFAULT_SHARED_KEY.into(),
            sandbox: false,
            clock_window: Some(Duration::from_secs(2 * 3600)),
            replay_check: true,
            enforce_workflows: true,
            strict_headers: true,
            max_chunk_size: 100 * 1000 * 1000,
            max_message_size: 20 * 1000 * 1000 * 1000,
            max_chunks: 10_000,
            max_page_size: 5000,
            max_header_bytes: 64 * 1024,
            header_timeout: Duration::from_secs(30),
            body_idle_timeout: Duration::from_secs(60),
            max_connections: 10_000,
            send_stall_timeout: Duration::from_secs(60),
            rate_limit: Some(RateLimit {
                per_second: 500,
                burst: 1000,
            }),
            lifecycle: LifecycleConfig::default(),
            admin_token: None,
            env: "local".into(),
            build_label: env!("CARGO_PKG_VERSION").into(),
        }
    }
}

/// The message lifecycle. `None` turns a rule off.
#[derive(Debug, Clone)]
pub struct LifecycleConfig {
    /// A message not acknowledged this long after it became available expires, and its
    /// sender gets a non-delivery report. MESH: 5 days.
    pub inbox_expiry: Option<Duration>,
    /// A message is deleted, with its payload, this long after its last state change
    /// (acknowledged, expired, report acknowledged). MESH: 30 days.
    pub retention: Option<Duration>,
    /// A chunked upload still incomplete this long after it started is deleted.
    pub upload_timeout: Option<Duration>,
    /// Event-log entries older than this are trimmed.
    pub log_retention: Option<Duration>,
    /// Time between sweeps.
    pub interval: Duration,
    /// Messages per sweep transaction: bounds how long a batch holds locks.
    pub batch: u32,
}

impl Default for LifecycleConfig {
    fn default() -> Self {
        LifecycleConfig {
            inbox_expiry: Some(Duration::from_secs(5 * 86_400)),
            retention: Some(Duration::from_secs(30 * 86_400)),
            upload_timeout: Some(Duration::from_secs(86_400)),
            log_retention: Some(Duration::from_secs(7 * 86_400)),
            interval: Duration::from_secs(60),
            batch: 500,
        }
    }
}

impl LifecycleConfig {
    /// How long a new message stays in the inbox: the configured period, or MESH's five
    /// days for display when expiry is off (tracking always shows an expiry time).
    pub fn inbox_period(&self) -> chrono::TimeDelta {
        self.inbox_expiry
            .and_then(|d| chrono::TimeDelta::from_std(d).ok())
            .unwrap_or(chrono::TimeDelta::days(5))
    }
}

pub use spine_http::ratelimit::RateLimit;

impl ServerConfig {
    /// The connection limits of a listener serving MESH (`api` or `ops`).
    pub fn listener(&self, name: &'static str) -> spine_http::ListenerConfig {
        spine_http::ListenerConfig {
            name,
            metric_prefix: "mesh",
            max_connections: self.max_connections,
            max_header_bytes: self.max_header_bytes,
            header_timeout: self.header_timeout,
            send_stall_timeout: self.send_stall_timeout,
        }
    }

    /// The NHS sandbox's behaviour: no replay or clock checks, no workflow permissions,
    /// no rate limit, admin endpoints on.
    pub fn sandbox(mut self) -> Self {
        self.rate_limit = None;
        self.sandbox = true;
        self.clock_window = None;
        self.replay_check = false;
        self.enforce_workflows = false;
        self.strict_headers = false;
        self
    }
}

/// Written by hand so that the shared key cannot reach a log through `{:?}`.
impl std::fmt::Debug for ServerConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerConfig")
            .field("shared_key", &"<redacted>")
            .field(
                "admin_token",
                &self.admin_token.as_ref().map(|_| "<redacted>"),
            )
            .field("sandbox", &self.sandbox)
            .field("clock_window", &self.clock_window)
            .field("replay_check", &self.replay_check)
            .field("max_chunk_size", &self.max_chunk_size)
            .field("max_message_size", &self.max_message_size)
            .field("max_chunks", &self.max_chunks)
            .field("max_header_bytes", &self.max_header_bytes)
            .field("max_connections", &self.max_connections)
            .field("rate_limit", &self.rate_limit)
            .field("lifecycle", &self.lifecycle)
            .finish_non_exhaustive()
    }
}
