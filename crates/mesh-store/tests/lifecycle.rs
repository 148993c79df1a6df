//! The message lifecycle on every backend: expiry with exactly one non-delivery report,
//! retention deleting records and payloads, abandoned uploads, nodes racing over the same
//! overdue messages, and the event log's order, gaplessness and atomicity.

mod common;

use chrono::{DateTime, TimeDelta, Utc};
use common::{backends, body, message, send, Backend};
use mesh_protocol::{Change, ExpiryReason, Message, MessageType, Status};
use mesh_store::{ExpirySweep, LogEntry, PurgeSweep, Store};
use std::collections::{HashMap, HashSet};

fn expiry(now: DateTime<Utc>, limit: u32) -> ExpirySweep {
    ExpirySweep {
        now,
        not_collected: ExpiryReason::NotCollected { days: 5 },
        inactive: vec![],
        report_period: TimeDelta::days(5),
        limit,
        id_offset: 0,
    }
}

fn purge(now: DateTime<Utc>, retention: TimeDelta, uploads: TimeDelta) -> PurgeSweep {
    PurgeSweep {
        retention_cutoff: Some(now - retention),
        upload_cutoff: Some(now - uploads),
        now,
        limit: 100,
    }
}

/// A data message created at `at`, due `period` later.
fn sent_at(id: &str, to: &str, at: DateTime<Utc>) -> Message {
    let mut m = message(id, to, "WF", 1);
    m.created = at;
    m.events[0].timestamp = at;
    m.expires = at + TimeDelta::days(5);
    m.metadata.subject = format!("subject {id}");
    m
}

async fn all_log(store: &Store) -> Vec<LogEntry> {
    let mut out = Vec::new();
    loop {
        let after = out.last().map_or(0, |e: &LogEntry| e.seq);
        let page = store.meta.log_after(after, 7).await.unwrap();
        if page.is_empty() {
            return out;
        }
        out.extend(page);
    }
}

/// The reports in `mailbox`'s inbox, by the id of the message each reports on.
async fn reports_in(store: &Store, mailbox: &str) -> HashMap<String, Message> {
    let mut out = HashMap::new();
    for e in store.meta.inbox(mailbox, None, None, 10_000).await.unwrap() {
        let m = store.meta.message(&e.message_id).await.unwrap().unwrap();
        if m.message_type == MessageType::Report {
            let linked = m
                .failure_event()
                .and_then(|e| e.linked_message_id.clone())
                .expect("a report names the message it reports on");
            assert!(
                out.insert(linked.clone(), m).is_none(),
                "two reports for {linked}"
            );
        }
    }
    out
}

#[tokio::test]
async fn an_overdue_message_expires_once_with_one_report_to_its_sender() {
    for b in backends().await {
        let t0 = Utc::now();
        let s = &b.store;
        let mut m = sent_at("20261204090000000001_AAAAAA", "BOX", t0);
        m.metadata.local_id = "my-local-id".into();
        send(s, &m, b"hello").await;

        let early = s
            .meta
            .expire_due(&expiry(t0 + TimeDelta::days(5) - TimeDelta::seconds(2), 10))
            .await
            .unwrap();
        assert_eq!(early.expired, 0, "{}: not due yet", b.name);

        let due = t0 + TimeDelta::days(5) + TimeDelta::seconds(2);
        let done = s.meta.expire_due(&expiry(due, 10)).await.unwrap();
        assert_eq!((done.expired, done.reports), (1, 1), "{}", b.name);
        let again = s.meta.expire_due(&expiry(due, 10)).await.unwrap();
        assert_eq!(again.expired, 0, "{}: expired twice", b.name);

        let original = s.meta.message(&m.message_id).await.unwrap().unwrap();
        assert_eq!(original.status(), Status::Undeliverable, "{}", b.name);
        assert!(s
            .meta
            .inbox("BOX", None, None, 10)
            .await
            .unwrap()
            .is_empty());

        let reports = reports_in(s, "SENDER").await;
        let ndr = reports.get(&m.message_id).expect("the NDR");
        assert_eq!(ndr.recipient.mailbox_id, "SENDER");
        assert_eq!(ndr.sender.mailbox_id, "");
        assert_eq!(ndr.workflow_id, "WF");
        assert_eq!(ndr.metadata.local_id, "my-local-id");
        assert_eq!(ndr.metadata.subject, m.metadata.subject);
        assert_eq!(ndr.total_chunks, 0);
        let why = ndr.failure_event().unwrap();
        assert_eq!(why.status, Status::Error);
        assert_eq!(why.code.as_deref(), Some("14"));
        assert_eq!(why.event.as_deref(), Some("SEND"));
        assert_eq!(
            why.description.as_deref(),
            Some("Message not collected by recipient after 5 days")
        );
        assert_eq!(s.meta.inbox_count("SENDER").await.unwrap(), 1);
    }
}

#[tokio::test]
async fn messages_to_a_deactivated_mailbox_expire_at_once_with_their_own_text() {
    for b in backends().await {
        let t0 = Utc::now();
        let s = &b.store;
        send(s, &sent_at("20261204090000000002_AAAAAA", "GONE", t0), b"x").await;
        send(s, &sent_at("20261204090000000003_AAAAAA", "LIVE", t0), b"y").await;
        let mut sweep = expiry(t0 + TimeDelta::seconds(1), 10);
        sweep.inactive = vec!["GONE".into()];
        let done = s.meta.expire_due(&sweep).await.unwrap();
        assert_eq!(done.expired, 1, "{}", b.name);
        let reports = reports_in(s, "SENDER").await;
        let ndr = reports
            .get("20261204090000000002_AAAAAA")
            .expect("report for the deactivated mailbox's message");
        assert_eq!(
            ndr.failure_event().unwrap().description.as_deref(),
            Some("Message was not collected as the mailbox is deactivated")
        );
        assert!(!reports.contains_key("20261204090000000003_AAAAAA"));
        assert_eq!(s.meta.inbox_count("LIVE").await.unwrap(), 1);
    }
}

/// Payload keys the blob store holds.
async fn blob_keys(store: &Store) -> HashSet<String> {
    store
        .blobs
        .list()
        .await
        .unwrap()
        .into_iter()
        .map(|(k, _)| k)
        .collect()
}

/// Payload files under the embedded store's data directory.
fn files_under(b: &Backend) -> usize {
    fn walk(p: &std::path::Path) -> usize {
        std::fs::read_dir(p)
            .map(|rd| {
                rd.flatten()
                    .map(|e| {
                        let p = e.path();
                        if p.is_dir() {
                            walk(&p)
                        } else {
                            1
                        }
                    })
                    .sum()
            })
            .unwrap_or(0)
    }
    walk(&b.dir.path().join("chunks"))
}

#[tokio::test]
async fn retention_deletes_records_chunks_and_payloads_and_nothing_younger() {
    for b in backends().await {
        let t0 = Utc::now();
        let s = &b.store;
        let big = sent_at("20261204090000000004_AAAAAA", "BOX", t0);
        send(s, &big, &[7; 5000]).await; // a payload file or object
        let keep = sent_at("20261204090000000005_AAAAAA", "BOX", t0);
        send(s, &keep, &[8; 5000]).await;
        let before = blob_keys(s).await.len();
        assert_eq!(before, 2, "{}", b.name);
        if b.spec.is_none() {
            assert_eq!(files_under(&b), 2, "two payload files on disk");
        }
        let acked = t0 + TimeDelta::hours(1);
        s.meta
            .acknowledge(&big.message_id, "BOX", acked)
            .await
            .unwrap();

        let now = acked + TimeDelta::days(30) - TimeDelta::seconds(5);
        let early = s
            .purge_due(&purge(now, TimeDelta::days(30), TimeDelta::days(1)))
            .await
            .unwrap();
        assert_eq!(early.purged, 0, "{}: purged before its time", b.name);

        let now = acked + TimeDelta::days(30) + TimeDelta::seconds(5);
        let done = s
            .purge_due(&purge(now, TimeDelta::days(30), TimeDelta::days(1)))
            .await
            .unwrap();
        assert_eq!(done.purged, 1, "{}", b.name);
        assert_eq!(done.bytes, 5000);
        assert!(s.meta.message(&big.message_id).await.unwrap().is_none());
        assert!(s.meta.chunk(&big.message_id, 1).await.unwrap().is_none());
        assert_eq!(
            blob_keys(s).await.len(),
            1,
            "{}: its payload is gone",
            b.name
        );
        if b.spec.is_none() {
            assert_eq!(files_under(&b), 1, "its payload file is gone from disk");
        }
        // Accepted, not yet final: retention does not apply to it.
        assert!(s.meta.message(&keep.message_id).await.unwrap().is_some());
    }
}

#[tokio::test]
async fn an_upload_left_incomplete_is_removed_with_its_chunks() {
    for b in backends().await {
        let t0 = Utc::now();
        let s = &b.store;
        let mut m = message("20261204090000000006_AAAAAA", "BOX", "WF", 3);
        m.created = t0;
        m.events[0].timestamp = t0;
        let first = s
            .write_chunk(&m.message_id, 1, body(&[1; 4000]), u64::MAX)
            .await
            .unwrap();
        s.meta.create_message(&m, &first).await.unwrap();
        let second = s
            .write_chunk(&m.message_id, 2, body(&[2; 4000]), u64::MAX)
            .await
            .unwrap();
        s.meta
            .put_chunk(&m.message_id, 2, &second, t0)
            .await
            .unwrap();
        assert_eq!(blob_keys(s).await.len(), 2);

        let sweep = purge(
            t0 + TimeDelta::hours(25),
            TimeDelta::days(30),
            TimeDelta::days(1),
        );
        let done = s.purge_due(&sweep).await.unwrap();
        assert_eq!((done.abandoned, done.purged), (1, 0), "{}", b.name);
        assert_eq!(done.bytes, 8000);
        assert!(s.meta.message(&m.message_id).await.unwrap().is_none());
        assert!(blob_keys(s).await.is_empty(), "{}", b.name);
    }
}

#[tokio::test]
async fn nodes_racing_over_the_same_overdue_messages_expire_each_once() {
    for b in backends().await {
        let t0 = Utc::now();
        let n = 120;
        let mut ids = Vec::new();
        for i in 0..n {
            let id = format!("20261204090000{i:06}_BBBBBB");
            send(&b.store, &sent_at(&id, "BOX", t0), b"r").await;
            ids.push(id);
        }
        let due = t0 + TimeDelta::days(6);
        let mut nodes = vec![b.store.clone()];
        for _ in 0..2 {
            nodes.push(b.another_node().await);
        }
        let runs = nodes.into_iter().map(|node| {
            tokio::spawn(async move {
                let (mut expired, mut reports) = (0, 0);
                loop {
                    let done = node.meta.expire_due(&expiry(due, 7)).await.unwrap();
                    expired += done.expired;
                    reports += done.reports;
                    if done.expired == 0 {
                        return (expired, reports);
                    }
                }
            })
        });
        let (mut expired, mut reports) = (0, 0);
        for r in futures::future::join_all(runs).await {
            let (e, r) = r.unwrap();
            expired += e;
            reports += r;
        }
        assert_eq!((expired, reports), (n, n), "{}", b.name);
        let found = reports_in(&b.store, "SENDER").await;
        assert_eq!(found.len() as u64, n, "{}", b.name);
        for id in &ids {
            assert!(found.contains_key(id), "{}: no report for {id}", b.name);
        }
    }
}

#[tokio::test]
async fn the_event_log_is_gapless_in_change_order_and_keeps_nothing_rolled_back() {
    for b in backends().await {
        let s = &b.store;
        let t0 = Utc::now();
        let start = all_log(s).await.last().map_or(0, |e| e.seq);

        let a = sent_at("20261204090000000010_AAAAAA", "BOX", t0);
        send(s, &a, b"a").await;
        let mut c = message("20261204090000000011_AAAAAA", "BOX", "WF", 2);
        c.created = t0;
        let first = s
            .write_chunk(&c.message_id, 1, body(b"c1"), u64::MAX)
            .await
            .unwrap();
        s.meta.create_message(&c, &first).await.unwrap();
        // A change that fails (a duplicate id) must leave no entry.
        let dup = s.meta.create_message(&a, &first).await;
        assert!(dup.is_err(), "{}: a duplicate id is refused", b.name);
        let second = s
            .write_chunk(&c.message_id, 2, body(b"c2"), u64::MAX)
            .await
            .unwrap();
        s.meta
            .put_chunk(&c.message_id, 2, &second, t0 + TimeDelta::seconds(1))
            .await
            .unwrap();
        assert!(s
            .meta
            .mark_downloaded(&a.message_id, t0 + TimeDelta::seconds(2))
            .await
            .unwrap());
        assert!(
            !s.meta
                .mark_downloaded(&a.message_id, t0 + TimeDelta::seconds(3))
                .await
                .unwrap(),
            "a second download is not a new change"
        );
        s.meta
            .acknowledge(&a.message_id, "BOX", t0 + TimeDelta::seconds(4))
            .await
            .unwrap();
        let due = t0 + TimeDelta::days(6);
        let expired = s.meta.expire_due(&expiry(due, 10)).await.unwrap();
        assert_eq!(
            expired.expired, 1,
            "{}: the chunked message expires",
            b.name
        );
        let later = due + TimeDelta::days(31);
        let purged = s
            .purge_due(&purge(later, TimeDelta::days(30), TimeDelta::days(1)))
            .await
            .unwrap();
        assert_eq!(purged.purged, 2, "{}", b.name);

        let log: Vec<LogEntry> = all_log(s)
            .await
            .into_iter()
            .filter(|e| e.seq > start)
            .collect();
        for (i, e) in log.iter().enumerate() {
            assert_eq!(e.seq, start + 1 + i as i64, "{}: a gap in the log", b.name);
        }
        let of = |id: &str| -> Vec<Change> {
            log.iter()
                .filter(|e| e.message_id == id)
                .map(|e| e.change)
                .collect()
        };
        assert_eq!(
            of(&a.message_id),
            [
                Change::Accepted,
                Change::Downloaded,
                Change::Acknowledged,
                Change::Purged
            ],
            "{}",
            b.name
        );
        assert_eq!(
            of(&c.message_id),
            [
                Change::Uploading,
                Change::Accepted,
                Change::Expired,
                Change::Purged
            ],
            "{}",
            b.name
        );
        let report = log
            .iter()
            .find(|e| e.change == Change::ReportGenerated)
            .expect("a report_generated entry");
        assert_eq!(report.recipient, "SENDER");
        assert_eq!(report.status, Status::Accepted);
        let expired_entry = log.iter().find(|e| e.change == Change::Expired).unwrap();
        assert_eq!(expired_entry.status, Status::Undeliverable);
        assert_eq!(expired_entry.workflow_id, "WF");

        // Reading from the middle resumes exactly there; trimming takes old entries only.
        let mid = log[3].seq;
        let rest = s.meta.log_after(mid, 100).await.unwrap();
        assert_eq!(rest.first().map(|e| e.seq), Some(mid + 1));
        let trimmed = s
            .meta
            .trim_log(Utc::now() - TimeDelta::days(3650))
            .await
            .unwrap();
        assert_eq!(trimmed, 0, "{}: nothing is that old", b.name);
    }
}

#[tokio::test]
async fn nodes_writing_at_once_share_one_gapless_log() {
    for b in backends().await {
        let start = all_log(&b.store).await.last().map_or(0, |e| e.seq);
        let t0 = Utc::now();
        let mut tasks = Vec::new();
        for node in 0..3 {
            let store = b.another_node().await;
            tasks.push(tokio::spawn(async move {
                for i in 0..30 {
                    let id = format!("2026120409{node:02}00{i:06}_CCCCCC");
                    send(&store, &sent_at(&id, "BOX", t0), b"z").await;
                    store.meta.acknowledge(&id, "BOX", t0).await.unwrap();
                }
            }));
        }
        for t in tasks {
            t.await.unwrap();
        }
        let log: Vec<LogEntry> = all_log(&b.store)
            .await
            .into_iter()
            .filter(|e| e.seq > start)
            .collect();
        assert_eq!(log.len(), 180, "{}", b.name);
        for (i, e) in log.iter().enumerate() {
            assert_eq!(e.seq, start + 1 + i as i64, "{}: a gap", b.name);
        }
        let mut seen: HashMap<&str, Vec<Change>> = HashMap::new();
        for e in &log {
            seen.entry(&e.message_id).or_default().push(e.change);
        }
        assert!(seen
            .values()
            .all(|c| c == &[Change::Accepted, Change::Acknowledged]));
    }
}

/// Applies only the first migration of `dir` (the schema of the release before the
/// lifecycle), through a migrator built from a copy of that one file.
async fn first_migration_only(engine: &str) -> (tempfile::TempDir, sqlx::migrate::Migrator) {
    let src = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("migrations")
        .join(engine);
    let dir = tempfile::tempdir().unwrap();
    let first = std::fs::read_dir(&src)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .min()
        .unwrap();
    std::fs::copy(&first, dir.path().join(first.file_name().unwrap())).unwrap();
    let migrator = sqlx::migrate::Migrator::new(dir.path()).await.unwrap();
    (dir, migrator)
}

/// A message row as the release before the lifecycle wrote it (no expiry columns).
fn old_row(m: &Message) -> (String, String) {
    (m.message_id.clone(), serde_json::to_string(m).unwrap())
}

#[tokio::test]
async fn messages_stored_before_the_upgrade_expire_on_time_after_it() {
    use sqlx::Connection;
    let t0 = Utc::now() - TimeDelta::days(6);
    let m = sent_at("20261127090000000001_DDDDDD", "BOX", t0);
    let (id, record) = old_row(&m);

    // SQLite: a database file at schema 1 with one message in it.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("mesh.db");
    {
        let (_keep, first) = first_migration_only("sqlite").await;
        let opts = sqlx::sqlite::SqliteConnectOptions::new()
            .filename(&path)
            .create_if_missing(true);
        let mut conn = sqlx::SqliteConnection::connect_with(&opts).await.unwrap();
        first.run(&mut conn).await.unwrap();
        sqlx::query(
            "INSERT INTO messages (id, sender_id, recipient_id, workflow_id, status, \
             total_chunks, inbox_seq, created, record) \
             VALUES (?, 'SENDER', 'BOX', 'WF', 'accepted', 1, 1, ?, ?)",
        )
        .bind(&id)
        .bind(t0.to_rfc3339())
        .bind(&record)
        .execute(&mut conn)
        .await
        .unwrap();
    }
    let store = Store::open_embedded(dir.path(), &common::test_config())
        .await
        .unwrap();
    let done = store
        .meta
        .expire_due(&expiry(Utc::now(), 10))
        .await
        .unwrap();
    assert_eq!((done.expired, done.reports), (1, 1), "sqlite");

    // PostgreSQL: the same, on a database at schema 1.
    let Some(spec) = common::shared_spec().await else {
        return;
    };
    let url = spec.database_url.clone().unwrap();
    {
        let (_keep, first) = first_migration_only("postgres").await;
        let mut conn = sqlx::PgConnection::connect(&url).await.unwrap();
        first.run(&mut conn).await.unwrap();
        sqlx::query(
            "INSERT INTO messages (id, sender_id, recipient_id, workflow_id, status, \
             total_chunks, inbox_seq, created, record) \
             VALUES ($1, 'SENDER', 'BOX', 'WF', 'accepted', 1, nextval('inbox_seq'), $2, $3)",
        )
        .bind(&id)
        .bind(t0)
        .bind(&record)
        .execute(&mut conn)
        .await
        .unwrap();
    }
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), &spec, &common::test_config())
        .await
        .unwrap();
    let done = store
        .meta
        .expire_due(&expiry(Utc::now(), 10))
        .await
        .unwrap();
    assert_eq!((done.expired, done.reports), (1, 1), "postgres");
}

#[tokio::test]
async fn the_backlog_counts_what_is_due_and_ignores_expiry_when_it_is_off() {
    for b in backends().await {
        let t0 = Utc::now();
        let s = &b.store;
        send(s, &sent_at("20261204090000000020_EEEEEE", "BOX", t0), b"a").await;
        let later = t0 + TimeDelta::days(6);
        let p = purge(later, TimeDelta::days(30), TimeDelta::days(1));
        let due = expiry(later, 10);
        assert_eq!(
            s.meta.lifecycle_backlog(Some(&due), &p).await.unwrap(),
            1,
            "{}",
            b.name
        );
        assert_eq!(
            s.meta.lifecycle_backlog(None, &p).await.unwrap(),
            0,
            "{}: expiry off, nothing is overdue",
            b.name
        );
    }
}

#[tokio::test]
async fn trimming_removes_a_prefix_of_the_log_and_never_leaves_a_hole() {
    for b in backends().await {
        let s = &b.store;
        let t0 = Utc::now() - TimeDelta::days(10);
        for i in 0..6 {
            // Changes stamped out of order in time, as slow uploads make them.
            let at = if i == 2 {
                t0 + TimeDelta::days(5)
            } else {
                t0 + TimeDelta::hours(i)
            };
            let id = format!("2026120409000000003{i}_FFFFFF");
            send(s, &sent_at(&id, "BOX", at), b"t").await;
        }
        let before = all_log(s).await;
        let last = before.last().unwrap().seq;
        let trimmed = s
            .meta
            .trim_log(t0 + TimeDelta::hours(4) + TimeDelta::minutes(30))
            .await
            .unwrap();
        let after = all_log(s).await;
        assert_eq!(before.len() - after.len(), trimmed as usize, "{}", b.name);
        assert_eq!(after.last().unwrap().seq, last);
        let first = after.first().unwrap().seq;
        assert_eq!(
            after.len() as i64,
            last - first + 1,
            "{}: the rest is contiguous",
            b.name
        );
        assert_eq!(
            after.len(),
            1,
            "{}: everything up to the last old entry goes",
            b.name
        );
    }
}
