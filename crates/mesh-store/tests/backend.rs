//! The backend test suite: every store operation, concurrency, multi-node use and crash
//! ordering, written once against `Store` and run for each backend: the embedded SQLite +
//! files backend, and PostgreSQL + S3 when the test command provides them.
//!
//! PostgreSQL + S3 come from the environment (`scripts/test.sh` starts a throwaway
//! PostgreSQL and a Garage S3 server and sets these):
//! - `OPENSPINE_TEST_DATABASE_URL`: a server URL; each backend gets a database of its own.
//! - `OPENSPINE_TEST_BLOB_URL`: `s3://bucket`; each backend gets a key prefix of its own.
//! - `OPENSPINE_TEST_S3_ENDPOINT`, `OPENSPINE_TEST_S3_REGION`, and `AWS_ACCESS_KEY_ID` /
//!   `AWS_SECRET_ACCESS_KEY`.
//!
//! Without them only SQLite runs, unless `OPENSPINE_REQUIRE_SHARED_BACKEND=1`, which makes
//! their absence a failure (CI sets it, so the shared backend cannot silently drop out).

use bytes::Bytes;
use chrono::{TimeDelta, Utc};
use futures::StreamExt;
use mesh_protocol::{Event, Status, WorkflowFilter};
mod common;

use common::{backends, body, message, read_all, send, shared_spec, test_config};
use mesh_store::{AckOutcome, ChunkLocation, PutChunkOutcome, Store, StoreConfig, StoreError};
use sqlx::Connection;
use std::sync::Arc;
use std::time::Duration;

#[tokio::test]
async fn small_chunks_are_inline_and_large_ones_are_blobs() {
    for b in backends().await {
        let small = b
            .store
            .write_chunk("M", 1, body(&[1; 1024]), u64::MAX)
            .await
            .unwrap();
        assert!(
            matches!(small.location, ChunkLocation::Inline(_)),
            "{}",
            b.name
        );
        let large = b
            .store
            .write_chunk("M", 1, body(&[2; 5000]), u64::MAX)
            .await
            .unwrap();
        assert!(
            matches!(large.location, ChunkLocation::Blob(_)),
            "{}",
            b.name
        );
        assert_eq!(large.size, 5000);
        let too_big = b.store.write_chunk("M", 1, body(&[3; 5000]), 4999).await;
        assert!(
            matches!(too_big, Err(StoreError::TooLarge { limit: 4999 })),
            "{}",
            b.name
        );
        let too_big_inline = b.store.write_chunk("M", 1, body(&[3; 500]), 499).await;
        assert!(
            matches!(too_big_inline, Err(StoreError::TooLarge { .. })),
            "{}",
            b.name
        );
    }
}

#[tokio::test]
async fn a_single_chunk_message_is_listed_and_reads_back() {
    for b in backends().await {
        let data: Vec<u8> = (0..10_000u32).map(|i| i as u8).collect();
        send(&b.store, &message("A", "BOX", "WF", 1), &data).await;
        let got = b.store.meta.message("A").await.unwrap().unwrap();
        assert_eq!(got.status(), Status::Accepted);
        assert_eq!(read_all(&b.store, "A", 1).await, data, "{}", b.name);
        let inbox = b.store.meta.inbox("BOX", None, None, 10).await.unwrap();
        assert_eq!(inbox.len(), 1);
        assert_eq!(b.store.meta.inbox_count("BOX").await.unwrap(), 1);
        assert!(b.store.meta.message("NOPE").await.unwrap().is_none());
        assert!(b.store.meta.chunk("A", 2).await.unwrap().is_none());
    }
}

#[tokio::test]
async fn inbox_is_oldest_first_filtered_then_paged() {
    for b in backends().await {
        for i in 0..10 {
            let wf = if i % 2 == 0 { "EVEN" } else { "ODD" };
            send(&b.store, &message(&format!("M{i}"), "BOX", wf, 1), b"x").await;
        }
        send(&b.store, &message("OTHER", "ELSEWHERE", "EVEN", 1), b"x").await;
        let all = b.store.meta.inbox("BOX", None, None, 100).await.unwrap();
        let ids: Vec<_> = all.iter().map(|e| e.message_id.clone()).collect();
        assert_eq!(
            ids,
            (0..10).map(|i| format!("M{i}")).collect::<Vec<_>>(),
            "{}",
            b.name
        );
        let even = WorkflowFilter::parse("EVEN").unwrap();
        let page = b
            .store
            .meta
            .inbox("BOX", None, Some(&even), 3)
            .await
            .unwrap();
        let ids: Vec<_> = page.iter().map(|e| e.message_id.as_str()).collect();
        assert_eq!(ids, ["M0", "M2", "M4"]);
        let after = page.last().unwrap().seq;
        let page = b
            .store
            .meta
            .inbox("BOX", Some(after), Some(&even), 3)
            .await
            .unwrap();
        let ids: Vec<_> = page.iter().map(|e| e.message_id.as_str()).collect();
        assert_eq!(ids, ["M6", "M8"]);
        for (f, n) in [
            ("!EVEN", 5),
            ("OD*", 5),
            ("!OD*", 5),
            ("*VE*", 5),
            ("!*VE*", 5),
        ] {
            let f = WorkflowFilter::parse(f).unwrap();
            assert_eq!(
                b.store
                    .meta
                    .inbox("BOX", None, Some(&f), 100)
                    .await
                    .unwrap()
                    .len(),
                n
            );
        }
        let pos = b
            .store
            .meta
            .inbox_position("BOX", "M3")
            .await
            .unwrap()
            .unwrap();
        let rest = b
            .store
            .meta
            .inbox("BOX", Some(pos), None, 100)
            .await
            .unwrap();
        assert_eq!(rest.first().unwrap().message_id, "M4");
        assert!(b
            .store
            .meta
            .inbox_position("BOX", "OTHER")
            .await
            .unwrap()
            .is_none());
    }
}

#[tokio::test]
async fn chunked_messages_complete_only_with_every_chunk() {
    for b in backends().await {
        let s = &b.store;
        send(s, &message("C", "BOX", "WF", 3), b"one").await;
        let now = Utc::now();
        let put = |n: u32, data: &'static [u8]| async move {
            let rec = s.write_chunk("C", n, body(data), u64::MAX).await.unwrap();
            s.meta.put_chunk("C", n, &rec, now).await.unwrap()
        };
        assert_eq!(
            put(3, b"three").await,
            PutChunkOutcome::Stored {
                completed: false,
                replaced: None
            }
        );
        assert_eq!(s.meta.inbox_count("BOX").await.unwrap(), 0);
        assert_eq!(s.meta.stored_bytes("C").await.unwrap(), 8);
        assert_eq!(
            put(2, b"two").await,
            PutChunkOutcome::Stored {
                completed: true,
                replaced: None
            }
        );
        let m = s.meta.message("C").await.unwrap().unwrap();
        assert_eq!(m.status(), Status::Accepted);
        assert_eq!(m.file_size, 11);
        assert_eq!(s.meta.inbox_count("BOX").await.unwrap(), 1);
        assert_eq!(put(2, b"again").await, PutChunkOutcome::NotUploading);
        let rec = s.write_chunk("X", 2, body(b"x"), u64::MAX).await.unwrap();
        assert_eq!(
            s.meta.put_chunk("X", 2, &rec, now).await.unwrap(),
            PutChunkOutcome::NoSuchMessage
        );
        assert_eq!(read_all(s, "C", 2).await, b"two", "{}", b.name);
    }
}

#[tokio::test]
async fn replacing_a_blob_chunk_reports_the_old_key() {
    for b in backends().await {
        let s = &b.store;
        send(s, &message("R3", "BOX", "WF", 3), b"one").await;
        let a = s
            .write_chunk("R3", 2, body(&[1; 4000]), u64::MAX)
            .await
            .unwrap();
        let ChunkLocation::Blob(a_key) = a.location.clone() else {
            panic!("a 4000-byte chunk is a blob")
        };
        s.meta.put_chunk("R3", 2, &a, Utc::now()).await.unwrap();
        let again = s
            .write_chunk("R3", 2, body(&[2; 4000]), u64::MAX)
            .await
            .unwrap();
        let outcome = s.meta.put_chunk("R3", 2, &again, Utc::now()).await.unwrap();
        assert_eq!(
            outcome,
            PutChunkOutcome::Stored {
                completed: false,
                replaced: Some(a_key)
            }
        );
        assert_eq!(read_all(s, "R3", 2).await, vec![2; 4000], "{}", b.name);
    }
}

#[tokio::test]
async fn acknowledge_changes_accepted_messages_only() {
    for b in backends().await {
        let s = &b.store;
        send(s, &message("A", "BOX", "WF", 1), b"x").await;
        send(s, &message("U", "BOX", "WF", 2), b"x").await;
        let ack = |id: &'static str, who: &'static str| s.meta.acknowledge(id, who, Utc::now());
        assert_eq!(
            ack("A", "ELSEWHERE").await.unwrap(),
            AckOutcome::NotRecipient
        );
        assert_eq!(
            s.meta.inbox_count("BOX").await.unwrap(),
            1,
            "a refused ack changes nothing"
        );
        assert_eq!(ack("A", "BOX").await.unwrap(), AckOutcome::Acknowledged);
        assert_eq!(ack("A", "BOX").await.unwrap(), AckOutcome::Unchanged);
        assert_eq!(ack("U", "BOX").await.unwrap(), AckOutcome::Unchanged);
        assert_eq!(ack("NOPE", "BOX").await.unwrap(), AckOutcome::NoSuchMessage);
        let m = s.meta.message("A").await.unwrap().unwrap();
        assert_eq!(m.status(), Status::Acknowledged);
        assert!(m.acknowledged_at().is_some());
        assert_eq!(s.meta.inbox_count("BOX").await.unwrap(), 0, "{}", b.name);
    }
}

#[tokio::test]
async fn events_local_ids_and_resets() {
    for b in backends().await {
        let s = &b.store;
        send(s, &message("A", "BOX", "WF", 1), b"x").await;
        send(s, &message("B", "BOX", "WF", 1), &[5; 3000]).await;
        let mut undeliverable = Event::new(Status::Undeliverable, Utc::now());
        undeliverable.code = Some("14".into());
        assert!(s.meta.add_event("A", &undeliverable).await.unwrap());
        assert!(!s.meta.add_event("NOPE", &undeliverable).await.unwrap());
        assert_eq!(s.meta.inbox_count("BOX").await.unwrap(), 1);
        // Re-opening puts it back at the end of the inbox.
        assert!(s
            .meta
            .add_event("A", &Event::new(Status::Accepted, Utc::now()))
            .await
            .unwrap());
        let ids: Vec<_> = s
            .meta
            .inbox("BOX", None, None, 10)
            .await
            .unwrap()
            .into_iter()
            .map(|e| e.message_id)
            .collect();
        assert_eq!(ids, ["B", "A"], "{}", b.name);
        assert_eq!(
            s.meta.by_local_id("SENDER", "local-A").await.unwrap().len(),
            1
        );
        assert!(s
            .meta
            .by_local_id("OTHER", "local-A")
            .await
            .unwrap()
            .is_empty());
        assert!(s.meta.in_outbox("SENDER", "A").await.unwrap());
        s.meta.reset_mailbox("BOX").await.unwrap();
        assert_eq!(s.meta.inbox_count("BOX").await.unwrap(), 0);
        assert!(s.meta.message("A").await.unwrap().is_some());
        s.meta.reset_mailbox("SENDER").await.unwrap();
        assert!(!s.meta.in_outbox("SENDER", "A").await.unwrap());
        s.reset_all().await.unwrap();
        assert!(s.meta.message("B").await.unwrap().is_none());
        s.meta.ping().await.unwrap();
    }
}

#[tokio::test]
async fn concurrent_sends_and_acks_lose_and_duplicate_nothing() {
    for b in backends().await {
        let store = Arc::new(b.store.clone());
        let mut tasks = Vec::new();
        for t in 0..8 {
            let store = store.clone();
            tasks.push(tokio::spawn(async move {
                for i in 0..25 {
                    let id = format!("T{t}-{i}");
                    let size = if i % 5 == 0 { 3000 } else { 100 };
                    send(&store, &message(&id, "BOX", "WF", 1), &vec![t as u8; size]).await;
                }
            }));
        }
        for t in tasks {
            t.await.unwrap();
        }
        let all = store.meta.inbox("BOX", None, None, 1000).await.unwrap();
        assert_eq!(all.len(), 200, "{}", b.name);
        let mut seqs: Vec<_> = all.iter().map(|e| e.seq).collect();
        seqs.dedup();
        assert_eq!(seqs.len(), 200, "inbox positions are unique");
        // Two pollers acknowledge the same messages at once: each changes state once.
        let ids: Vec<String> = all.iter().map(|e| e.message_id.clone()).collect();
        let (a, c) = (store.clone(), store.clone());
        let (ids_a, ids_c) = (ids.clone(), ids.clone());
        let ta = tokio::spawn(async move {
            let mut n = 0;
            for id in ids_a {
                if a.meta.acknowledge(&id, "BOX", Utc::now()).await.unwrap()
                    == AckOutcome::Acknowledged
                {
                    n += 1;
                }
            }
            n
        });
        let tc = tokio::spawn(async move {
            let mut n = 0;
            for id in ids_c.iter().rev() {
                if c.meta.acknowledge(id, "BOX", Utc::now()).await.unwrap()
                    == AckOutcome::Acknowledged
                {
                    n += 1;
                }
            }
            n
        });
        assert_eq!(ta.await.unwrap() + tc.await.unwrap(), 200);
        assert_eq!(store.meta.inbox_count("BOX").await.unwrap(), 0);
    }
}

#[tokio::test]
async fn a_chunk_written_but_never_committed_is_invisible() {
    // The crash window: payload durable, metadata not committed. Nothing must show.
    for b in backends().await {
        let s = &b.store;
        let orphan = s
            .write_chunk("GHOST", 1, body(&[1; 5000]), u64::MAX)
            .await
            .unwrap();
        assert!(s.meta.message("GHOST").await.unwrap().is_none());
        assert_eq!(s.meta.inbox_count("BOX").await.unwrap(), 0);
        send(s, &message("KEPT", "BOX", "WF", 1), &[2; 5000]).await;
        // A recent orphan may be another node's upload about to commit: spared.
        assert_eq!(
            s.collect_garbage(Duration::from_secs(3600)).await.unwrap(),
            0,
            "{}",
            b.name
        );
        assert_eq!(
            s.collect_garbage(Duration::ZERO).await.unwrap(),
            1,
            "{}",
            b.name
        );
        assert!(s.read_chunk(&orphan).await.is_err(), "{}", b.name);
        assert_eq!(read_all(s, "KEPT", 1).await, vec![2; 5000]);
    }
}

#[tokio::test]
async fn data_survives_reopening_the_store() {
    let dir = tempfile::tempdir().unwrap();
    let config = StoreConfig::default();
    {
        let s = Store::open_embedded(dir.path(), &config).await.unwrap();
        send(&s, &message("P", "BOX", "WF", 1), &[4; 300_000]).await;
    }
    let s = Store::open_embedded(dir.path(), &config).await.unwrap();
    assert_eq!(s.meta.inbox_count("BOX").await.unwrap(), 1);
    assert_eq!(read_all(&s, "P", 1).await, vec![4; 300_000]);
}

#[tokio::test]
async fn a_second_store_on_one_data_directory_is_refused_while_the_first_lives() {
    // Two processes on one directory lost accepted messages: the second one's start-up
    // sweep deleted the first one's payloads in flight, and their inbox counters
    // interleaved. The directory is locked for the store's lifetime.
    let dir = tempfile::tempdir().unwrap();
    let config = StoreConfig::default();
    let first = Store::open_embedded(dir.path(), &config).await.unwrap();
    let spec = mesh_store::BackendSpec::default();
    for second in [
        Store::open_embedded(dir.path(), &config).await.err(),
        Store::open(dir.path(), &spec, &config).await.err(),
    ] {
        let err = second.expect("refused").to_string();
        assert!(
            err.contains("is in use by another openspine process"),
            "{err}"
        );
    }
    send(&first, &message("HELD", "BOX", "WF", 1), &[1; 100_000]).await;
    drop(first);
    // Released with its owner: the next one opens and finds the message.
    let again = Store::open_embedded(dir.path(), &config).await.unwrap();
    assert_eq!(read_all(&again, "HELD", 1).await, vec![1; 100_000]);
}

#[tokio::test]
async fn a_token_is_used_once_until_released() {
    for b in backends().await {
        let (m, later) = (&b.store.meta, Utc::now() + TimeDelta::hours(2));
        assert!(
            m.use_token("BOX", "n1", 0, later, Utc::now())
                .await
                .unwrap(),
            "{}",
            b.name
        );
        assert!(
            !m.use_token("BOX", "n1", 0, later, Utc::now())
                .await
                .unwrap(),
            "replay"
        );
        // Another node sharing the store refuses the replay too.
        let other = b.another_node().await;
        assert!(!other
            .meta
            .use_token("BOX", "n1", 0, later, Utc::now())
            .await
            .unwrap());
        // A different count or mailbox is a different token.
        assert!(m
            .use_token("BOX", "n1", 1, later, Utc::now())
            .await
            .unwrap());
        assert!(m
            .use_token("OTHER", "n1", 0, later, Utc::now())
            .await
            .unwrap());
        // Released after a failed request: the client's retry with it is accepted, once.
        m.release_token("BOX", "n1", 0).await.unwrap();
        assert!(other
            .meta
            .use_token("BOX", "n1", 0, later, Utc::now())
            .await
            .unwrap());
        assert!(!m
            .use_token("BOX", "n1", 0, later, Utc::now())
            .await
            .unwrap());
    }
}

#[tokio::test]
async fn a_lease_has_one_holder_until_it_expires() {
    for b in backends().await {
        let other = b.another_node().await;
        let ttl = Duration::from_secs(1);
        assert!(
            b.store.meta.try_lease("gc", "A", ttl).await.unwrap(),
            "{}",
            b.name
        );
        assert!(
            !other.meta.try_lease("gc", "B", ttl).await.unwrap(),
            "{}",
            b.name
        );
        assert!(
            b.store.meta.try_lease("gc", "A", ttl).await.unwrap(),
            "renewal"
        );
        assert!(other.meta.try_lease("other-job", "B", ttl).await.unwrap());
        tokio::time::sleep(Duration::from_millis(2100)).await;
        assert!(
            other.meta.try_lease("gc", "B", ttl).await.unwrap(),
            "{}",
            b.name
        );
        assert!(!b.store.meta.try_lease("gc", "A", ttl).await.unwrap());
    }
}

#[tokio::test]
async fn request_counts_are_per_mailbox_and_window_across_nodes() {
    for b in backends().await {
        let other = b.another_node().await;
        let w = Utc::now().timestamp();
        assert_eq!(b.store.meta.count_request("BOX", w).await.unwrap(), 1);
        assert_eq!(other.meta.count_request("BOX", w).await.unwrap(), 2);
        assert_eq!(b.store.meta.count_request("BOX", w + 2).await.unwrap(), 1);
        assert_eq!(other.meta.count_request("OTHER", w).await.unwrap(), 1);
        let tasks: Vec<_> = (0..20)
            .map(|i| {
                let s = if i % 2 == 0 {
                    b.store.clone()
                } else {
                    other.clone()
                };
                tokio::spawn(async move { s.meta.count_request("BOX", w).await.unwrap() })
            })
            .collect();
        let mut seen = Vec::new();
        for t in tasks {
            seen.push(t.await.unwrap());
        }
        seen.sort_unstable();
        assert_eq!(seen, (3..=22).collect::<Vec<u64>>(), "{}", b.name);
    }
}

#[tokio::test]
async fn chunks_uploaded_through_different_nodes_download_from_a_third() {
    for b in backends().await {
        let (a, c) = (b.another_node().await, b.another_node().await);
        let node_b = &b.store;
        let parts: Vec<Vec<u8>> = (0..3u8).map(|i| vec![i + 1; 4000 + i as usize]).collect();
        let m = message("MULTI", "BOX", "WF", 3);
        let first = a
            .write_chunk("MULTI", 1, body(&parts[0]), u64::MAX)
            .await
            .unwrap();
        a.meta.create_message(&m, &first).await.unwrap();
        for (n, node) in [(2u32, node_b), (3, &a)] {
            let chunk = node
                .write_chunk("MULTI", n, body(&parts[n as usize - 1]), u64::MAX)
                .await
                .unwrap();
            let outcome = node
                .meta
                .put_chunk("MULTI", n, &chunk, Utc::now())
                .await
                .unwrap();
            assert!(
                matches!(outcome, PutChunkOutcome::Stored { completed, .. } if completed == (n == 3)),
                "{}: chunk {n}",
                b.name
            );
        }
        let got = c.meta.message("MULTI").await.unwrap().unwrap();
        assert_eq!(got.status(), Status::Accepted, "{}", b.name);
        assert_eq!(
            got.file_size,
            parts.iter().map(|p| p.len() as u64).sum::<u64>()
        );
        for n in 1..=3u32 {
            assert_eq!(
                read_all(&c, "MULTI", n).await,
                parts[n as usize - 1],
                "{}",
                b.name
            );
        }
        assert_eq!(c.meta.inbox("BOX", None, None, 10).await.unwrap().len(), 1);
    }
}

#[tokio::test]
async fn nodes_sending_and_polling_at_once_keep_every_inbox_ordered_and_whole() {
    for b in backends().await {
        let nodes = [
            b.store.clone(),
            b.another_node().await,
            b.another_node().await,
        ];
        let mut senders = Vec::new();
        for (t, node) in nodes.iter().enumerate() {
            let node = node.clone();
            senders.push(tokio::spawn(async move {
                for i in 0..40 {
                    let id = format!("N{t}-{i:03}");
                    let size = if i % 4 == 0 { 3000 } else { 200 };
                    send(&node, &message(&id, "BOX", "WF", 1), &vec![t as u8; size]).await;
                }
            }));
        }
        // Meanwhile two pollers, on two other nodes, page through the inbox, each resuming
        // after the last position it saw, as a MESH client does: neither may skip a message.
        let polls: Vec<_> = [nodes[1].clone(), nodes[2].clone()]
            .into_iter()
            .map(|poller| {
                tokio::spawn(async move {
                    let mut seen: Vec<String> = Vec::new();
                    let mut after = None;
                    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
                    while seen.len() < 120 && tokio::time::Instant::now() < deadline {
                        let page = poller.meta.inbox("BOX", after, None, 7).await.unwrap();
                        if page.is_empty() {
                            tokio::time::sleep(Duration::from_millis(5)).await;
                            continue;
                        }
                        after = page.last().map(|e| e.seq);
                        seen.extend(page.into_iter().map(|e| e.message_id));
                    }
                    seen
                })
            })
            .collect();
        for s in senders {
            s.await.unwrap();
        }
        let mut polled = Vec::new();
        for p in polls {
            polled.push(p.await.unwrap());
        }
        let second = polled.pop().unwrap();
        let mut polled = polled.pop().unwrap();
        assert_eq!(
            polled.len(),
            120,
            "{}: the poller saw every message once",
            b.name
        );
        assert_eq!(polled, second, "{}: both pollers saw one order", b.name);
        let all = nodes[2].meta.inbox("BOX", None, None, 1000).await.unwrap();
        let listed: Vec<String> = all.iter().map(|e| e.message_id.clone()).collect();
        assert_eq!(
            polled, listed,
            "{}: polling order is the inbox order",
            b.name
        );
        // Each sender's messages appear in the order it sent them (oldest first).
        for t in 0..3 {
            let mine: Vec<&String> = listed
                .iter()
                .filter(|id| id.starts_with(&format!("N{t}-")))
                .collect();
            let mut sorted = mine.clone();
            sorted.sort();
            assert_eq!(mine, sorted, "{}", b.name);
        }
        polled.sort();
        polled.dedup();
        assert_eq!(polled.len(), 120, "{}: no duplicates", b.name);
        // Two nodes acknowledge everything at once: each message changes state exactly once.
        let ids = Arc::new(listed);
        let acks: Vec<_> = [nodes[0].clone(), nodes[2].clone()]
            .into_iter()
            .enumerate()
            .map(|(k, node)| {
                let ids = ids.clone();
                tokio::spawn(async move {
                    let mut n = 0;
                    let order: Vec<&String> = if k == 0 {
                        ids.iter().collect()
                    } else {
                        ids.iter().rev().collect()
                    };
                    for id in order {
                        if node.meta.acknowledge(id, "BOX", Utc::now()).await.unwrap()
                            == AckOutcome::Acknowledged
                        {
                            n += 1;
                        }
                    }
                    n
                })
            })
            .collect();
        let mut total = 0;
        for a in acks {
            total += a.await.unwrap();
        }
        assert_eq!(total, 120, "{}", b.name);
        assert_eq!(nodes[1].meta.inbox_count("BOX").await.unwrap(), 0);
        for t in 0..3u8 {
            let id = format!("N{t}-000");
            assert_eq!(
                read_all(&nodes[1], &id, 1).await,
                vec![t; 3000],
                "{}",
                b.name
            );
        }
    }
}

#[tokio::test]
async fn a_body_that_fails_midway_leaves_nothing_behind() {
    for b in backends().await {
        let pieces: Vec<Result<Bytes, StoreError>> = vec![
            Ok(Bytes::from(vec![1u8; 600_000])),
            Ok(Bytes::from(vec![2u8; 600_000])),
            Err(StoreError::Body("client went away".into())),
        ];
        let failed = b
            .store
            .write_chunk("BROKEN", 1, futures::stream::iter(pieces).boxed(), u64::MAX)
            .await;
        assert!(matches!(failed, Err(StoreError::Body(_))), "{}", b.name);
        assert!(b.store.meta.message("BROKEN").await.unwrap().is_none());
        // Large enough for a multipart upload on S3 too (more than one 8 MiB part).
        let big: Vec<Result<Bytes, StoreError>> = (0..20)
            .map(|_| Ok(Bytes::from(vec![3u8; 1024 * 1024])))
            .chain(std::iter::once(Err(StoreError::Body("timeout".into()))))
            .collect();
        let failed = b
            .store
            .write_chunk("BROKEN", 2, futures::stream::iter(big).boxed(), u64::MAX)
            .await;
        assert!(failed.is_err(), "{}", b.name);
        assert_eq!(b.store.blobs.list().await.unwrap().len(), 0, "{}", b.name);
        b.store.ping().await.unwrap();
    }
}

#[tokio::test]
async fn another_node_sees_what_one_node_committed() {
    for b in backends().await {
        send(&b.store, &message("P", "BOX", "WF", 1), &[4; 300_000]).await;
        let other = b.another_node().await;
        assert_eq!(
            other.meta.inbox_count("BOX").await.unwrap(),
            1,
            "{}",
            b.name
        );
        assert_eq!(read_all(&other, "P", 1).await, vec![4; 300_000]);
        assert!(other.meta.in_outbox("SENDER", "P").await.unwrap());
        assert_eq!(
            other
                .meta
                .by_local_id("SENDER", "local-P")
                .await
                .unwrap()
                .len(),
            1
        );
    }
}

#[tokio::test]
async fn nodes_starting_together_migrate_once_and_accept_a_newer_schema() {
    let Some(spec) = shared_spec().await else {
        return;
    };
    // Four nodes start at once on an empty database: the migration lock lets one migrate
    // and the others find the schema ready; none fails.
    let dir = tempfile::tempdir().unwrap();
    let config = test_config();
    let opened =
        futures::future::join_all((0..4).map(|_| Store::open(dir.path(), &spec, &config))).await;
    for store in &opened {
        assert!(store.is_ok(), "{:?}", store.as_ref().err());
    }
    let url = spec.database_url.clone().unwrap();
    let mut conn = sqlx::PgConnection::connect(&url).await.unwrap();
    let applied: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM _sqlx_migrations")
        .fetch_one(&mut conn)
        .await
        .unwrap();
    let shipped = std::fs::read_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/migrations/postgres"))
        .unwrap()
        .count() as i64;
    assert_eq!(applied, shipped, "each migration applied once");
    // A newer release added (expanded) something: nodes of this release still start and
    // work beside it, which a rolling upgrade depends on.
    sqlx::query(
        "INSERT INTO _sqlx_migrations (version, description, success, checksum, execution_time) \
         VALUES (99990101000000, 'from a newer release', TRUE, '\\x00', 0)",
    )
    .execute(&mut conn)
    .await
    .unwrap();
    sqlx::query("ALTER TABLE messages ADD COLUMN added_by_newer_release TEXT")
        .execute(&mut conn)
        .await
        .unwrap();
    let old_node = Store::open(dir.path(), &spec, &test_config())
        .await
        .unwrap();
    send(&old_node, &message("AFTER", "BOX", "WF", 1), &[9; 100]).await;
    assert_eq!(old_node.meta.inbox_count("BOX").await.unwrap(), 1);
}

#[tokio::test]
async fn a_token_raced_by_many_requests_is_accepted_once() {
    // Concurrent uses land in one batch on SQLite and in concurrent transactions on
    // PostgreSQL: either way exactly one of them wins, per distinct token.
    for b in backends().await {
        let later = Utc::now() + TimeDelta::hours(2);
        let other = b.another_node().await;
        let tasks: Vec<_> = (0..64)
            .map(|i| {
                let s = if i % 2 == 0 {
                    b.store.clone()
                } else {
                    other.clone()
                };
                let nonce = format!("nonce-{}", i % 8);
                tokio::spawn(async move {
                    s.meta
                        .use_token("BOX", &nonce, 0, later, Utc::now())
                        .await
                        .unwrap()
                })
            })
            .collect();
        let mut accepted = 0;
        for t in tasks {
            accepted += usize::from(t.await.unwrap());
        }
        assert_eq!(accepted, 8, "{}: one use per distinct token", b.name);
    }
}

#[tokio::test]
async fn an_unreachable_object_store_fails_fast_and_stores_nothing() {
    let Some(mut spec) = shared_spec().await else {
        return;
    };
    // Nothing listens on port 1: every S3 request is refused, as during a store restart.
    spec.s3.endpoint = Some("http://127.0.0.1:1".into());
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), &spec, &test_config())
        .await
        .unwrap();
    let started = std::time::Instant::now();
    let failed = store
        .write_chunk("DOWN", 1, body(&[7; 50_000]), u64::MAX)
        .await;
    assert!(failed.is_err());
    assert!(store.ping().await.is_err(), "readiness reports the outage");
    assert!(
        started.elapsed() < Duration::from_secs(40),
        "failed within the retry budget, took {:?}",
        started.elapsed()
    );
    // The metadata side still works, and no message refers to the failed upload.
    assert!(store.meta.message("DOWN").await.unwrap().is_none());
    store.meta.ping().await.unwrap();
}
