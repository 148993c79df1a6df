//! The events service's storage.
//!
//! Publishing is one transaction: the event is stored once per `(source, id)` and a
//! delivery row is queued for every subscription whose criteria it matches, so an event
//! answered 200 is durable with every delivery it owes, and a repeat of it owes none.
//!
//! Each subscription has a queue (its delivery rows, in event order). A dispatcher takes
//! a subscription whose queue can move ([`EventStore::due`]), holds the subscription's
//! lease in the coordination store while it works, reads the queue's head
//! ([`EventStore::head`]) and reports each delivery ([`EventStore::delivered`],
//! [`EventStore::failed`], [`EventStore::dead_letter`]). A failed head holds the whole
//! queue until `retry_at`, which is what keeps a subscription's events in order.
//!
//! Two engines behind one trait, one test suite (`tests/backend.rs`): SQLite in
//! `events.db` beside the other services' files, and PostgreSQL (`ev_*` tables) for many
//! nodes.

mod postgres;
mod sqlite;

pub use postgres::PgEventStore;
pub use spine_store::{Result, StoreError};
pub use sqlite::SqliteEventStore;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use events_protocol::subscription::Request;
use events_protocol::{Accepted, Criteria, Endpoint, Payload, Status, Subscription};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use spine_events::{Event, Published};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

/// An event as stored.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredEvent {
    pub seq: i64,
    pub event: Event,
    /// The body of a v1 event as it was published.
    pub legacy: Option<Value>,
    /// Who published it: an app's client id, or a service (`mesh`, `pds`).
    pub publisher: String,
    pub received_at: DateTime<Utc>,
}

/// A subscription as stored, with its owner (the app that created it: only that app sees
/// it).
#[derive(Debug, Clone, PartialEq)]
pub struct StoredSubscription {
    /// Creation order, for paging.
    pub seq: i64,
    pub owner: String,
    pub subscription: Subscription,
    /// Not before then: the head of its queue failed and waits to be retried.
    pub retry_at: DateTime<Utc>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// What a create or replace came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SubscriptionWrite {
    Done,
    /// The owner already has a subscription with these criteria and this endpoint.
    Duplicate(String),
    NotFound,
}

/// One queued delivery at the head of a subscription's queue.
#[derive(Debug, Clone, PartialEq)]
pub struct Pending {
    pub event: StoredEvent,
    pub attempts: u32,
    pub first_failed_at: Option<DateTime<Utc>>,
    pub last_error: Option<String>,
}

/// A delivery given up on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeadLetter {
    pub subscription_id: String,
    pub event_seq: i64,
    pub attempts: u32,
    pub last_error: String,
    pub failed_at: DateTime<Utc>,
}

/// Queued deliveries by channel kind, for the metrics.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Backlog {
    /// `(kind, queued deliveries, received_at of the oldest queued event)`.
    pub by_kind: Vec<(String, u64, Option<DateTime<Utc>>)>,
    pub dead_letters: u64,
}

#[async_trait]
pub trait EventStore: Send + Sync + 'static {
    /// Stores `accepted` and queues it for every matching subscription, in one
    /// transaction; returns once that is durable.
    async fn publish(
        &self,
        accepted: &Accepted,
        publisher: &str,
        now: DateTime<Utc>,
    ) -> Result<Published>;

    /// Creates subscription `id` for `owner`, status `active`.
    async fn create_subscription(
        &self,
        owner: &str,
        id: &str,
        request: &Request,
        now: DateTime<Utc>,
    ) -> Result<SubscriptionWrite>;

    async fn subscription(&self, id: &str) -> Result<Option<StoredSubscription>>;

    /// `owner`'s subscriptions created after `after_seq`, oldest first.
    async fn subscriptions(
        &self,
        owner: &str,
        after_seq: i64,
        limit: u32,
    ) -> Result<Vec<StoredSubscription>>;

    /// Replaces `owner`'s subscription `id` at once: its queued events go to the new
    /// endpoint, it is `active` again and its next delivery is tried now.
    async fn replace_subscription(
        &self,
        owner: &str,
        id: &str,
        request: &Request,
        now: DateTime<Utc>,
    ) -> Result<SubscriptionWrite>;

    /// Deletes `owner`'s subscription `id` with its queue and dead letters.
    async fn delete_subscription(&self, owner: &str, id: &str) -> Result<bool>;

    /// Subscriptions with queued deliveries that may be tried at `now`.
    async fn due(&self, now: DateTime<Utc>, limit: u32) -> Result<Vec<String>>;

    /// The first `limit` queued deliveries of a subscription, in event order.
    async fn head(&self, subscription_id: &str, limit: u32) -> Result<Vec<Pending>>;

    /// The delivery arrived: it leaves the queue, the subscription is `active` and its
    /// queue may move on at once.
    async fn delivered(&self, subscription_id: &str, event_seq: i64) -> Result<()>;

    /// The delivery failed: counted, its error kept, and the queue waits until
    /// `retry_at`.
    async fn failed(
        &self,
        subscription_id: &str,
        event_seq: i64,
        error: &str,
        retry_at: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> Result<()>;

    /// The delivery is given up: moved to the dead letters, the subscription's status
    /// `error`, and the queue moves on to the next event.
    async fn dead_letter(
        &self,
        subscription_id: &str,
        event_seq: i64,
        error: &str,
        now: DateTime<Utc>,
    ) -> Result<()>;

    /// Dead letters, oldest event first: one subscription's, or everyone's; at most `limit`.
    async fn dead_letters(
        &self,
        subscription_id: Option<&str>,
        limit: u32,
    ) -> Result<Vec<DeadLetter>>;

    /// Puts a subscription's dead letters back in its queue, by event number (so before
    /// any later event still queued), for delivery as if new; returns how many. The
    /// operator's answer to a subscriber that was down for longer than the retry period.
    async fn replay_dead_letters(&self, subscription_id: &str) -> Result<u64>;

    /// Events accepted after `after`, oldest first (for `openspine events tail`).
    async fn events_after(
        &self,
        after: i64,
        event_type: Option<&str>,
        limit: u32,
    ) -> Result<Vec<StoredEvent>>;

    async fn backlog(&self) -> Result<Backlog>;

    /// Deletes up to `limit` events received before `before` that no subscription still
    /// owes (no queued delivery) and no dead letter refers to; returns how many. Their
    /// `(source, id)` is forgotten with them: a repeat after that is a new event.
    async fn purge(&self, before: DateTime<Utc>, limit: u32) -> Result<u64>;

    async fn ping(&self) -> Result<()>;
}

/// The stored form of a subscription's request: the resource without `id` and `status`.
#[derive(Serialize, Deserialize)]
struct StoredRequest {
    reason: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    end: Option<String>,
    criteria: String,
    endpoint: String,
    payload: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    headers: Vec<String>,
}

pub(crate) fn encode_request(r: &Request) -> Result<String> {
    serde_json::to_string(&StoredRequest {
        reason: r.reason.clone(),
        end: r.end.clone(),
        criteria: r.criteria.to_string(),
        endpoint: r.endpoint.to_string(),
        payload: r.payload.as_str().to_string(),
        headers: r.headers.clone(),
    })
    .map_err(|e| StoreError::Corrupt(e.to_string()))
}

pub(crate) fn decode_request(text: &str) -> Result<Request> {
    let s: StoredRequest =
        serde_json::from_str(text).map_err(|e| StoreError::Corrupt(e.to_string()))?;
    let bad = |what: &str| StoreError::Corrupt(format!("stored subscription has a bad {what}"));
    Ok(Request {
        reason: s.reason,
        end: s.end,
        criteria: Criteria::parse(&s.criteria).ok_or_else(|| bad("criteria"))?,
        endpoint: Endpoint::parse(&s.endpoint).ok_or_else(|| bad("endpoint"))?,
        payload: Payload::parse(&s.payload).ok_or_else(|| bad("payload"))?,
        headers: s.headers,
    })
}

pub(crate) fn status_of(text: &str) -> Result<Status> {
    Status::parse(text).ok_or_else(|| StoreError::Corrupt(format!("subscription status {text}")))
}

pub(crate) fn decode_event(text: &str, legacy: Option<String>) -> Result<(Event, Option<Value>)> {
    let event = serde_json::from_str(text).map_err(|e| StoreError::Corrupt(e.to_string()))?;
    let legacy = legacy
        .map(|l| serde_json::from_str(&l))
        .transpose()
        .map_err(|e| StoreError::Corrupt(e.to_string()))?;
    Ok((event, legacy))
}

pub(crate) fn encode_event(event: &Event) -> Result<String> {
    serde_json::to_string(event).map_err(|e| StoreError::Corrupt(e.to_string()))
}

pub(crate) fn millis(t: DateTime<Utc>) -> i64 {
    t.timestamp_millis()
}

pub(crate) fn time(ms: i64) -> DateTime<Utc> {
    DateTime::from_timestamp_millis(ms).unwrap_or_default()
}

/// The subscriptions that could match an event of one type, parsed: `(id, criteria)`.
pub(crate) type Candidates = Arc<Vec<(String, Criteria)>>;

/// Event types whose candidates one node keeps at most; past that the cache starts again.
const CACHED_TYPES: usize = 1024;

/// Each event type's candidate subscriptions, parsed, for as long as the store's
/// subscriptions version stands (a trigger changes it with every subscription written or
/// deleted). Without it a publish read and parsed every subscription of its type inside
/// the write transaction: with 1,000 of them that was most of the publish's cost.
#[derive(Default)]
pub(crate) struct CandidateCache {
    inner: Mutex<(i64, HashMap<String, Candidates>)>,
}

impl CandidateCache {
    /// The candidates of `event_type` at `version`, if known.
    pub(crate) fn get(&self, version: i64, event_type: &str) -> Option<Candidates> {
        let mut cache = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        if cache.0 != version {
            *cache = (version, HashMap::new());
            return None;
        }
        cache.1.get(event_type).cloned()
    }

    /// Parses `rows` (`(id, criteria)`, read at `version`) and keeps them if the version
    /// still stands.
    pub(crate) fn put(
        &self,
        version: i64,
        event_type: &str,
        rows: Vec<(String, String)>,
    ) -> Candidates {
        let parsed: Candidates = Arc::new(
            rows.into_iter()
                .filter_map(|(id, criteria)| Criteria::parse(&criteria).map(|c| (id, c)))
                .collect(),
        );
        let mut cache = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        if cache.0 == version {
            if cache.1.len() >= CACHED_TYPES {
                cache.1.clear();
            }
            cache.1.insert(event_type.to_string(), parsed.clone());
        }
        parsed
    }
}

/// The subscriptions among `candidates` that the event matches.
pub(crate) fn matching(event: &Event, candidates: &[(String, Criteria)]) -> Vec<String> {
    candidates
        .iter()
        .filter(|(_, c)| c.matches(&event.event_type, &event.filtering))
        .map(|(id, _)| id.clone())
        .collect()
}

/// The channel kind of a stored endpoint, for the backlog.
pub(crate) fn kind_of(endpoint: &str) -> String {
    Endpoint::parse(endpoint)
        .map(|e| e.kind().as_str().to_string())
        .unwrap_or_else(|| "unknown".into())
}

/// Sums per-endpoint backlog rows into per-kind figures.
pub(crate) fn fold_backlog(
    rows: impl Iterator<Item = (String, i64, Option<i64>)>,
    dead_letters: i64,
) -> Backlog {
    let mut by_kind: Vec<(String, u64, Option<DateTime<Utc>>)> = Vec::new();
    for (kind, n, oldest) in rows {
        let oldest = oldest.map(time);
        let n = u64::try_from(n).unwrap_or(0);
        match by_kind.iter_mut().find(|(k, _, _)| *k == kind) {
            Some(entry) => {
                entry.1 += n;
                entry.2 = match (entry.2, oldest) {
                    (Some(a), Some(b)) => Some(a.min(b)),
                    (a, b) => a.or(b),
                };
            }
            None => by_kind.push((kind, n, oldest)),
        }
    }
    by_kind.sort_by(|a, b| a.0.cmp(&b.0));
    Backlog {
        by_kind,
        dead_letters: u64::try_from(dead_letters).unwrap_or(0),
    }
}
