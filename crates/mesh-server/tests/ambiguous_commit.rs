//! A metadata commit whose outcome the server cannot know: the database connection drops
//! during COMMIT (PostgreSQL restarting, a network cut), so the write may have happened
//! although the call failed. No real database does this on demand, so a wrapper around
//! the real SQLite store injects it: the write goes through, then the call reports an
//! error. The server must answer 5xx, and must not delete the payload, which committed
//! metadata may point at. The same holds for the record of a token's use: a client that
//! retries with the identical token (as the official one does after a 5xx) must not be
//! refused as a replay.

mod common;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use common::TestServer;
use mesh_protocol::{Event, Message, WorkflowFilter};
use mesh_server::{DirectorySource, ServerConfig};
use mesh_store::{
    AckOutcome, ChunkRecord, ExpiryOutcome, ExpirySweep, InboxEntry, LogEntry, MetaStore,
    PurgeOutcome, PurgeSweep, PutChunkOutcome, Side, Store, StoreConfig, StoreError,
};
use reqwest::StatusCode;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

type Result<T> = std::result::Result<T, StoreError>;

/// Passes everything to the real store; while `lose_replies` is set, message writes are
/// committed and then reported as failed, and while `lose_token_replies` is set, so are
/// token records. `releases` counts the tokens given back.
struct LostReply {
    inner: Arc<dyn MetaStore>,
    lose_replies: AtomicBool,
    lose_token_replies: AtomicBool,
    releases: AtomicUsize,
}

impl LostReply {
    fn around(inner: Arc<dyn MetaStore>) -> Arc<Self> {
        Arc::new(Self {
            inner,
            lose_replies: AtomicBool::new(false),
            lose_token_replies: AtomicBool::new(false),
            releases: AtomicUsize::new(0),
        })
    }
}

impl LostReply {
    fn lost<T>(&self, done: Result<T>) -> Result<T> {
        let value = done?;
        if self.lose_replies.load(Ordering::SeqCst) {
            return Err(StoreError::Commit("connection lost during COMMIT".into()));
        }
        Ok(value)
    }
}

#[async_trait]
impl MetaStore for LostReply {
    async fn create_message(&self, message: &Message, first: &ChunkRecord) -> Result<()> {
        self.lost(self.inner.create_message(message, first).await)
    }
    async fn put_chunk(
        &self,
        id: &str,
        n: u32,
        chunk: &ChunkRecord,
        now: DateTime<Utc>,
    ) -> Result<PutChunkOutcome> {
        self.lost(self.inner.put_chunk(id, n, chunk, now).await)
    }
    async fn message(&self, id: &str) -> Result<Option<Message>> {
        self.inner.message(id).await
    }
    async fn stored_bytes(&self, id: &str) -> Result<u64> {
        self.inner.stored_bytes(id).await
    }
    async fn chunk(&self, id: &str, n: u32) -> Result<Option<ChunkRecord>> {
        self.inner.chunk(id, n).await
    }
    async fn message_with_chunk(
        &self,
        id: &str,
        n: u32,
    ) -> Result<Option<(Message, Option<ChunkRecord>)>> {
        self.inner.message_with_chunk(id, n).await
    }
    async fn inbox(
        &self,
        mailbox: &str,
        after: Option<i64>,
        filter: Option<&WorkflowFilter>,
        limit: u32,
    ) -> Result<Vec<InboxEntry>> {
        self.inner.inbox(mailbox, after, filter, limit).await
    }
    async fn inbox_position(&self, mailbox: &str, id: &str) -> Result<Option<i64>> {
        self.inner.inbox_position(mailbox, id).await
    }
    async fn inbox_count(&self, mailbox: &str) -> Result<u64> {
        self.inner.inbox_count(mailbox).await
    }
    async fn acknowledge(
        &self,
        id: &str,
        recipient: &str,
        now: DateTime<Utc>,
    ) -> Result<AckOutcome> {
        self.inner.acknowledge(id, recipient, now).await
    }
    async fn by_local_id(&self, sender: &str, local_id: &str) -> Result<Vec<Message>> {
        self.inner.by_local_id(sender, local_id).await
    }
    async fn in_outbox(&self, sender: &str, id: &str) -> Result<bool> {
        self.inner.in_outbox(sender, id).await
    }
    async fn add_event(&self, id: &str, event: &Event) -> Result<bool> {
        self.inner.add_event(id, event).await
    }
    async fn reset_all(&self) -> Result<Vec<String>> {
        self.inner.reset_all().await
    }
    async fn reset_mailbox(&self, mailbox: &str) -> Result<()> {
        self.inner.reset_mailbox(mailbox).await
    }
    async fn blob_referenced(&self, key: &str) -> Result<bool> {
        self.inner.blob_referenced(key).await
    }
    async fn ping(&self) -> Result<()> {
        self.inner.ping().await
    }
    async fn act_on_message(
        &self,
        message_id: &str,
        action: &mesh_store::OperatorAction,
        now: DateTime<Utc>,
    ) -> Result<mesh_store::ActionOutcome> {
        self.inner.act_on_message(message_id, action, now).await
    }
    async fn search_messages(
        &self,
        query: &mesh_store::MessageQuery,
    ) -> Result<Vec<mesh_protocol::Message>> {
        self.inner.search_messages(query).await
    }
    async fn message_log(&self, message_id: &str) -> Result<Vec<mesh_store::LogEntry>> {
        self.inner.message_log(message_id).await
    }
    async fn inbox_depths(&self, limit: u32) -> Result<Vec<mesh_store::InboxDepth>> {
        self.inner.inbox_depths(limit).await
    }
    async fn stats(&self) -> Result<mesh_store::StoreStats> {
        self.inner.stats().await
    }
    async fn use_token(
        &self,
        mailbox: &str,
        nonce: &str,
        count: u64,
        expires_at: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> Result<bool> {
        let recorded = self
            .inner
            .use_token(mailbox, nonce, count, expires_at, now)
            .await?;
        if self.lose_token_replies.load(Ordering::SeqCst) {
            return Err(StoreError::Commit("connection lost during COMMIT".into()));
        }
        Ok(recorded)
    }
    async fn release_token(&self, mailbox: &str, nonce: &str, count: u64) -> Result<()> {
        self.releases.fetch_add(1, Ordering::SeqCst);
        self.inner.release_token(mailbox, nonce, count).await
    }
    async fn try_lease(&self, name: &str, holder: &str, ttl: Duration) -> Result<bool> {
        self.inner.try_lease(name, holder, ttl).await
    }
    async fn count_request(&self, mailbox: &str, window_start: i64) -> Result<u64> {
        self.inner.count_request(mailbox, window_start).await
    }
    fn coordination(&self) -> std::sync::Arc<dyn spine_store::Coordination> {
        self.inner.coordination()
    }
    async fn mark_downloaded(&self, id: &str, now: DateTime<Utc>) -> Result<bool> {
        self.lost(self.inner.mark_downloaded(id, now).await)
    }
    async fn expire_due(&self, sweep: &ExpirySweep) -> Result<ExpiryOutcome> {
        self.lost(self.inner.expire_due(sweep).await)
    }
    async fn purge_due(&self, sweep: &PurgeSweep) -> Result<PurgeOutcome> {
        self.lost(self.inner.purge_due(sweep).await)
    }
    async fn lifecycle_backlog(&self, e: Option<&ExpirySweep>, p: &PurgeSweep) -> Result<u64> {
        self.inner.lifecycle_backlog(e, p).await
    }
    async fn log_after(&self, after: i64, limit: u32) -> Result<Vec<LogEntry>> {
        self.inner.log_after(after, limit).await
    }
    async fn trim_log(&self, before: DateTime<Utc>) -> Result<u64> {
        self.inner.trim_log(before).await
    }
    async fn rich(
        &self,
        side: Side,
        mailbox: &str,
        since: DateTime<Utc>,
        before: Option<&str>,
        limit: u32,
    ) -> Result<Vec<Message>> {
        self.inner.rich(side, mailbox, since, before, limit).await
    }
}

#[tokio::test]
async fn a_commit_reported_failed_keeps_the_payload_it_may_have_committed() {
    // Payloads above 1 KiB go to the blob store, not inline.
    let store_config = StoreConfig {
        inline_max: 1024,
        ..StoreConfig::default()
    };
    let (server, meta, _dir) = serve_wrapped(ServerConfig::default(), &store_config).await;
    meta.lose_replies.store(true, Ordering::SeqCst);
    // Large enough to be a payload file, not inline.
    let payload = vec![42u8; 50_000];
    let sent = server
        .client("X26ABC1")
        .send("X26ABC2", "TEST_WORKFLOW", payload.clone())
        .await;
    assert!(sent.is_err(), "the client is told the send failed (5xx)");
    meta.lose_replies.store(false, Ordering::SeqCst);
    // The write did happen: the recipient sees the message, and it downloads whole.
    let recipient = server.client("X26ABC2");
    let listed = recipient.inbox().await.unwrap();
    assert_eq!(listed.len(), 1, "the committed message is listed");
    let got = recipient.download(&listed[0]).await.unwrap();
    assert_eq!(got, payload, "its payload was not deleted");
}

/// A server over the real embedded store wrapped in [`LostReply`].
async fn serve_wrapped(
    config: ServerConfig,
    store_config: &StoreConfig,
) -> (TestServer, Arc<LostReply>, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let real = Store::open_embedded(dir.path(), store_config)
        .await
        .unwrap();
    let meta = LostReply::around(real.meta.clone());
    let store = Store::new(meta.clone(), real.blobs.clone(), store_config);
    let source = DirectorySource {
        demo: true,
        ..Default::default()
    };
    let server =
        TestServer::serve_store(tempfile::tempdir().unwrap(), config, store, source, None).await;
    (server, meta, dir)
}

#[tokio::test]
async fn a_token_whose_record_reported_failure_can_be_retried() {
    let (server, meta, _dir) =
        serve_wrapped(ServerConfig::default(), &StoreConfig::default()).await;
    let auth = server.client("X26ABC1").token();
    let count = || {
        server
            .http()
            .get(server.url("/messageexchange/X26ABC1/count"))
            .header("authorization", &auth)
            .send()
    };
    meta.lose_token_replies.store(true, Ordering::SeqCst);
    let r = count().await.unwrap();
    assert_eq!(r.status(), StatusCode::SERVICE_UNAVAILABLE);
    meta.lose_token_replies.store(false, Ordering::SeqCst);
    // The record did happen; the server gives the token back after answering, so the
    // client's retry with the same token is served, not refused as a replay.
    let mut last = StatusCode::SERVICE_UNAVAILABLE;
    for _ in 0..100 {
        last = count().await.unwrap().status();
        if last == StatusCode::OK {
            break;
        }
        assert_eq!(
            last,
            StatusCode::FORBIDDEN,
            "only a replay refusal may precede it"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(last, StatusCode::OK);
    // And only once: the token is spent again.
    assert_eq!(count().await.unwrap().status(), StatusCode::FORBIDDEN);
}

#[tokio::test]
async fn a_token_refused_before_its_record_is_not_released() {
    // A request refused before its token is recorded (here by the rate limit) has nothing
    // to give back; releasing it anyway costs a store call per refusal, and in a database
    // outage a second wait on every failed answer.
    let config = ServerConfig {
        rate_limit: Some(mesh_server::config::RateLimit {
            per_second: 1,
            burst: 1,
        }),
        ..ServerConfig::default()
    };
    let (server, meta, _dir) = serve_wrapped(config, &StoreConfig::default()).await;
    let client = server.client("X26ABC1");
    let mut limited = 0;
    for _ in 0..5 {
        let r = server
            .http()
            .get(server.url("/messageexchange/X26ABC1/count"))
            .header("authorization", client.token())
            .send()
            .await
            .unwrap();
        if r.status() == StatusCode::TOO_MANY_REQUESTS {
            limited += 1;
        }
    }
    assert!(limited >= 3, "the burst of one runs out: {limited} refused");
    assert_eq!(meta.releases.load(Ordering::SeqCst), 0);
}
