//! Server behaviour switches. Defaults are the realistic service; `sandbox()` relaxes
//! them to what the NHS sandbox does, for people who use MESH as a test double.

use std::time::Duration;

#[derive(Debug, Clone)]
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
    /// Days before an uncollected message expires (reported as `expiryTime`).
    pub inbox_expiry_days: i64,
    /// Echoed by the ping endpoints.
    pub env: String,
    pub build_label: String,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            shared_key: "TestKey".into(),
            sandbox: false,
            clock_window: Some(Duration::from_secs(2 * 3600)),
            replay_check: true,
            enforce_workflows: true,
            strict_headers: true,
            max_chunk_size: 100 * 1000 * 1000,
            max_message_size: 20 * 1000 * 1000 * 1000,
            max_chunks: 10_000,
            inbox_expiry_days: 5,
            env: "local".into(),
            build_label: env!("CARGO_PKG_VERSION").into(),
        }
    }
}

impl ServerConfig {
    /// The NHS sandbox's behaviour: no replay or clock checks, no workflow permissions,
    /// admin endpoints on.
    pub fn sandbox(mut self) -> Self {
        self.sandbox = true;
        self.clock_window = None;
        self.replay_check = false;
        self.enforce_workflows = false;
        self.strict_headers = false;
        self
    }
}
