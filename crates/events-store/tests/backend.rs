//! One suite for both engines: every test runs on a real SQLite file and, when
//! `OPENSPINE_TEST_DATABASE_URL` is set (the test command sets it), on a fresh PostgreSQL
//! database. "Two nodes" are two store handles on one database.

use chrono::{DateTime, TimeDelta, Utc};
use events_protocol::subscription::{parse_request, Request};
use events_protocol::Accepted;
use events_store::{EventStore, PgEventStore, SqliteEventStore, SubscriptionWrite};
use serde_json::json;
use spine_events::{Event, Published};
use std::sync::Arc;

struct Backend {
    name: &'static str,
    a: Arc<dyn EventStore>,
    b: Arc<dyn EventStore>,
    _dir: tempfile::TempDir,
}

async fn backends() -> Vec<Backend> {
    let dir = tempfile::tempdir().unwrap();
    let sqlite: Arc<dyn EventStore> = Arc::new(SqliteEventStore::open(dir.path()).await.unwrap());
    let mut all = vec![Backend {
        name: "sqlite",
        // One process per data directory: the embedded "two nodes" are one handle.
        a: sqlite.clone(),
        b: sqlite,
        _dir: dir,
    }];
    if let Some(url) = spine_store::testing::fresh_database("ev").await {
        let (a, b) = tokio::join!(
            PgEventStore::connect(&url, 4),
            PgEventStore::connect(&url, 4)
        );
        all.push(Backend {
            name: "postgres",
            a: Arc::new(a.unwrap()),
            b: Arc::new(b.unwrap()),
            _dir: tempfile::tempdir().unwrap(),
        });
    }
    all
}

fn event(id: &str, event_type: &str, filtering: serde_json::Value) -> Accepted {
    let mut e = Event::new(
        id.into(),
        "uk.nhs.test-publisher".into(),
        event_type.into(),
        "2026-12-04T10:00:00Z".into(),
    );
    e.subject = Some("9912003888".into());
    e.filtering = filtering.as_object().unwrap().clone();
    Accepted {
        event: e,
        legacy: None,
    }
}

fn request(criteria: &str, endpoint: &str) -> Request {
    parse_request(
        &json!({"resourceType": "Subscription", "status": "requested", "reason": "",
                "criteria": criteria,
                "channel": {"type": "message", "endpoint": endpoint, "payload": "application/json"}}),
        None,
    )
    .unwrap()
}

fn now() -> DateTime<Utc> {
    Utc::now()
}

fn new_id() -> String {
    uuid::Uuid::new_v4().to_string()
}

async fn subscribe(store: &dyn EventStore, owner: &str, criteria: &str, endpoint: &str) -> String {
    let id = new_id();
    assert_eq!(
        store
            .create_subscription(owner, &id, &request(criteria, endpoint), now())
            .await
            .unwrap(),
        SubscriptionWrite::Done
    );
    id
}

async fn queued(store: &dyn EventStore, sub: &str) -> Vec<String> {
    store
        .head(sub, 100)
        .await
        .unwrap()
        .into_iter()
        .map(|p| p.event.event.id)
        .collect()
}

#[tokio::test]
async fn an_event_is_stored_once_and_queued_for_each_matching_subscription() {
    for b in backends().await {
        let s = b.a.as_ref();
        let plain = subscribe(
            s,
            "app-1",
            "eventType=pds-change-of-gp-2",
            "mesh://X26ABC1?workflow_id=WF",
        )
        .await;
        let gp = subscribe(
            s,
            "app-1",
            "eventType=pds-change-of-gp-2 AND registeredgpodscode=Y12345",
            "nats:mns.gp",
        )
        .await;
        let other_gp = subscribe(
            s,
            "app-2",
            "eventType=pds-change-of-gp-2 AND registeredgpodscode=A00001",
            "nats:mns.gp",
        )
        .await;
        let other_type =
            subscribe(s, "app-2", "eventType=nhs-number-change-2", "nats:mns.nn").await;
        // Families (an OpenSpine extension): the whole `pds-*` family, and one it is not in.
        let family = subscribe(s, "app-3", "eventType=pds-*", "nats:mns.pds").await;
        let other_family = subscribe(s, "app-3", "eventType=pds-death-*", "nats:mns.pds").await;

        let e = event(
            "e-1",
            "pds-change-of-gp-2",
            json!({"registeredgpodscode": "Y12345"}),
        );
        let first = b.a.publish(&e, "app-9", now()).await.unwrap();
        assert!(matches!(first, Published::Accepted { .. }), "{}", b.name);
        // The same (source, id) again, from either node: nothing new is owed.
        assert_eq!(
            b.b.publish(&e, "app-9", now()).await.unwrap(),
            Published::Duplicate
        );
        let mut same_id_other_source = e.clone();
        same_id_other_source.event.source = "uk.nhs.another".into();
        assert!(matches!(
            b.b.publish(&same_id_other_source, "app-9", now())
                .await
                .unwrap(),
            Published::Accepted { .. }
        ));

        assert_eq!(queued(s, &plain).await, ["e-1", "e-1"], "{}", b.name);
        assert_eq!(queued(s, &gp).await, ["e-1", "e-1"], "{}", b.name);
        assert!(queued(s, &other_gp).await.is_empty(), "{}", b.name);
        assert!(queued(s, &other_type).await.is_empty(), "{}", b.name);
        assert_eq!(queued(s, &family).await, ["e-1", "e-1"], "{}", b.name);
        assert!(queued(s, &other_family).await.is_empty(), "{}", b.name);

        let stored = s.events_after(0, None, 10).await.unwrap();
        assert_eq!(stored.len(), 2);
        assert_eq!(stored[0].publisher, "app-9");
        assert_eq!(stored[0].event, e.event);
        assert!(stored[0].seq < stored[1].seq);
        assert!(s
            .events_after(0, Some("nhs-number-change-2"), 10)
            .await
            .unwrap()
            .is_empty());
        assert_eq!(
            s.events_after(stored[0].seq, None, 10).await.unwrap().len(),
            1
        );
    }
}

/// Publishing keeps each type's subscriptions in memory: a subscription created, changed or
/// deleted, on this node or another, must count from the next publish on.
#[tokio::test]
async fn every_subscription_change_counts_from_the_next_publish_on_every_node() {
    for b in backends().await {
        let (a, other) = (b.a.as_ref(), b.b.as_ref());
        let gp = |id: &str| event(id, "pds-change-of-gp-2", json!({"gp": "Y1"}));
        let first = subscribe(a, "app-1", "eventType=pds-change-of-gp-2", "nats:mns.one").await;
        a.publish(&gp("c-1"), "app-9", now()).await.unwrap();
        // Created on the other node after `a` has the type's subscriptions in memory.
        let second = subscribe(
            other,
            "app-1",
            "eventType=pds-change-of-gp-2 AND gp=Y1",
            "nats:mns.two",
        )
        .await;
        a.publish(&gp("c-2"), "app-9", now()).await.unwrap();
        // Narrowed so that it no longer matches.
        assert_eq!(
            other
                .replace_subscription(
                    "app-1",
                    &second,
                    &request("eventType=pds-change-of-gp-2 AND gp=Y2", "nats:mns.two"),
                    now()
                )
                .await
                .unwrap(),
            SubscriptionWrite::Done
        );
        a.publish(&gp("c-3"), "app-9", now()).await.unwrap();
        // Deleted: nothing more is queued for it.
        assert!(other.delete_subscription("app-1", &first).await.unwrap());
        a.publish(&gp("c-4"), "app-9", now()).await.unwrap();
        let family = subscribe(other, "app-2", "eventType=pds-*", "nats:mns.three").await;
        a.publish(&gp("c-5"), "app-9", now()).await.unwrap();

        assert!(
            queued(a, &first).await.is_empty(),
            "{}: deleted with its queue",
            b.name
        );
        assert_eq!(queued(a, &second).await, ["c-2"], "{}", b.name);
        assert_eq!(queued(a, &family).await, ["c-5"], "{}", b.name);
    }
}

#[tokio::test]
async fn a_queue_is_delivered_in_order_and_a_failure_holds_it_until_its_retry() {
    for b in backends().await {
        let s = b.a.as_ref();
        let sub = subscribe(s, "app-1", "eventType=mns-test-signal-1", "nats:mns.test").await;
        for n in 1..=4 {
            b.b.publish(
                &event(&format!("e-{n}"), "mns-test-signal-1", json!({})),
                "app",
                now(),
            )
            .await
            .unwrap();
        }
        assert_eq!(
            queued(s, &sub).await,
            ["e-1", "e-2", "e-3", "e-4"],
            "{}",
            b.name
        );
        assert_eq!(s.due(now(), 10).await.unwrap(), vec![sub.clone()]);

        let head = s.head(&sub, 1).await.unwrap().remove(0);
        s.delivered(&sub, head.event.seq).await.unwrap();
        let head = s.head(&sub, 1).await.unwrap().remove(0);
        assert_eq!(head.event.event.id, "e-2");

        // e-2 fails: the queue waits, in order, until its retry time.
        let t0 = now();
        s.failed(
            &sub,
            head.event.seq,
            "connection refused",
            t0 + TimeDelta::seconds(30),
            t0,
        )
        .await
        .unwrap();
        assert!(s.due(t0, 10).await.unwrap().is_empty(), "{}", b.name);
        assert_eq!(
            s.due(t0 + TimeDelta::seconds(31), 10).await.unwrap(),
            vec![sub.clone()]
        );
        let later = t0 + TimeDelta::seconds(31);
        s.failed(
            &sub,
            head.event.seq,
            "timed out",
            later + TimeDelta::seconds(60),
            later,
        )
        .await
        .unwrap();
        let again = s.head(&sub, 1).await.unwrap().remove(0);
        assert_eq!(again.event.event.id, "e-2", "still the head");
        assert_eq!(again.attempts, 2);
        assert_eq!(again.last_error.as_deref(), Some("timed out"));
        assert_eq!(
            again.first_failed_at.map(|t| t.timestamp_millis()),
            Some(t0.timestamp_millis()),
            "the first failure's time is kept"
        );

        // Given up: a dead letter, status error, and the queue moves on at once.
        s.dead_letter(&sub, again.event.seq, "timed out", later)
            .await
            .unwrap();
        let stored = s.subscription(&sub).await.unwrap().unwrap();
        assert_eq!(stored.subscription.status.as_str(), "error", "{}", b.name);
        let dead = s.dead_letters(Some(&sub), 100).await.unwrap();
        assert_eq!(s.dead_letters(None, 100).await.unwrap(), dead);
        assert!(s
            .dead_letters(Some("another"), 100)
            .await
            .unwrap()
            .is_empty());
        assert_eq!(dead.len(), 1);
        assert_eq!(dead[0].event_seq, again.event.seq);
        assert_eq!(dead[0].attempts, 3);
        assert_eq!(queued(s, &sub).await, ["e-3", "e-4"]);
        assert_eq!(s.due(now(), 10).await.unwrap(), vec![sub.clone()]);

        let backlog = s.backlog().await.unwrap();
        assert_eq!(backlog.dead_letters, 1);
        assert_eq!(backlog.by_kind.len(), 1);
        assert_eq!(
            (backlog.by_kind[0].0.as_str(), backlog.by_kind[0].1),
            ("nats", 2)
        );

        // A later success: active again.
        let head = s.head(&sub, 1).await.unwrap().remove(0);
        s.delivered(&sub, head.event.seq).await.unwrap();
        let stored = s.subscription(&sub).await.unwrap().unwrap();
        assert_eq!(stored.subscription.status.as_str(), "active");

        // The operator replays the dead letter: back in the queue by its number, before
        // e-4, which is still queued; the dead letters are empty.
        assert_eq!(
            b.b.replay_dead_letters(&sub).await.unwrap(),
            1,
            "{}",
            b.name
        );
        assert_eq!(queued(s, &sub).await, ["e-2", "e-4"], "{}", b.name);
        assert!(s.dead_letters(None, 100).await.unwrap().is_empty());
        assert_eq!(s.head(&sub, 1).await.unwrap()[0].attempts, 0, "as if new");
        assert_eq!(
            s.replay_dead_letters(&sub).await.unwrap(),
            0,
            "nothing twice"
        );
    }
}

#[tokio::test]
async fn subscriptions_belong_to_their_owner() {
    for b in backends().await {
        let s = b.a.as_ref();
        let criteria = "eventType=pds-death-notification-2";
        let endpoint = "mesh://X26ABC1?workflow_id=DEATHS";
        let first = subscribe(s, "app-1", criteria, endpoint).await;
        // The same again for the same owner: a duplicate naming the first.
        let r = request(criteria, endpoint);
        assert_eq!(
            b.b.create_subscription("app-1", &new_id(), &r, now())
                .await
                .unwrap(),
            SubscriptionWrite::Duplicate(first.clone()),
            "{}",
            b.name
        );
        // Another owner may: duplicates are per owner, and nobody learns another's ids.
        let theirs = subscribe(s, "app-2", criteria, endpoint).await;

        let mut ids = vec![first.clone()];
        for n in 0..4 {
            ids.push(subscribe(s, "app-1", criteria, &format!("nats:mns.page.n{n}")).await);
        }
        let page1 = s.subscriptions("app-1", 0, 3).await.unwrap();
        let page2 = s.subscriptions("app-1", page1[2].seq, 3).await.unwrap();
        let listed: Vec<String> = page1
            .iter()
            .chain(&page2)
            .map(|x| x.subscription.id.clone())
            .collect();
        assert_eq!(listed, ids, "{}", b.name);
        assert!(listed.iter().all(|id| *id != theirs));

        // Replace: only the owner; not onto another of its own subscriptions.
        let moved = request(criteria, "nats:mns.moved");
        assert_eq!(
            s.replace_subscription("app-2", &first, &moved, now())
                .await
                .unwrap(),
            SubscriptionWrite::NotFound
        );
        let clash = request(criteria, "nats:mns.page.n0");
        assert_eq!(
            s.replace_subscription("app-1", &first, &clash, now())
                .await
                .unwrap(),
            SubscriptionWrite::Duplicate(ids[1].clone())
        );
        assert_eq!(
            s.replace_subscription("app-1", &first, &moved, now())
                .await
                .unwrap(),
            SubscriptionWrite::Done
        );
        let stored = s.subscription(&first).await.unwrap().unwrap();
        assert_eq!(
            stored.subscription.request.endpoint.to_string(),
            "nats:mns.moved"
        );
        assert_eq!(stored.owner, "app-1");

        // Delete: only the owner, and the queue goes with it.
        b.a.publish(
            &event("d-1", "pds-death-notification-2", json!({})),
            "pds",
            now(),
        )
        .await
        .unwrap();
        assert_eq!(queued(s, &first).await, ["d-1"]);
        assert!(!s.delete_subscription("app-2", &first).await.unwrap());
        assert!(s.delete_subscription("app-1", &first).await.unwrap());
        assert!(s.subscription(&first).await.unwrap().is_none());
        assert!(queued(s, &first).await.is_empty());
        assert!(!s.delete_subscription("app-1", &first).await.unwrap());
    }
}

#[tokio::test]
async fn nodes_publishing_at_once_number_events_without_gaps() {
    for b in backends().await {
        let sub = subscribe(
            b.a.as_ref(),
            "app-1",
            "eventType=mns-test-signal-1",
            "nats:mns.t",
        )
        .await;
        let mut tasks = Vec::new();
        for n in 0..40 {
            let node = if n % 2 == 0 { b.a.clone() } else { b.b.clone() };
            tasks.push(tokio::spawn(async move {
                // Each event twice, from both nodes at once: stored once.
                let e = event(&format!("c-{}", n / 2), "mns-test-signal-1", json!({}));
                node.publish(&e, "app", now()).await.unwrap()
            }));
        }
        let mut accepted = 0;
        for t in tasks {
            if matches!(t.await.unwrap(), Published::Accepted { .. }) {
                accepted += 1;
            }
        }
        assert_eq!(accepted, 20, "{}", b.name);
        let seqs: Vec<i64> =
            b.a.events_after(0, None, 100)
                .await
                .unwrap()
                .iter()
                .map(|e| e.seq)
                .collect();
        assert_eq!(seqs, (1..=20).collect::<Vec<i64>>(), "{}", b.name);
        assert_eq!(b.b.head(&sub, 100).await.unwrap().len(), 20);
    }
}

#[tokio::test]
async fn retention_removes_only_events_nobody_is_owed_or_refers_to() {
    for b in backends().await {
        let s = b.a.as_ref();
        let sub = subscribe(
            s,
            "app-1",
            "eventType=pds-record-change-2",
            "nats:mns.retention",
        )
        .await;
        for id in ["owed", "delivered", "dead"] {
            s.publish(&event(id, "pds-record-change-2", json!({})), "pds", now())
                .await
                .unwrap();
        }
        s.publish(
            &event("unmatched", "mns-test-signal-1", json!({})),
            "app",
            now(),
        )
        .await
        .unwrap();
        let head = s.head(&sub, 10).await.unwrap();
        let seq_of = |id: &str| {
            head.iter()
                .find(|p| p.event.event.id == id)
                .unwrap()
                .event
                .seq
        };
        s.delivered(&sub, seq_of("delivered")).await.unwrap();
        s.dead_letter(&sub, seq_of("dead"), "refused", now())
            .await
            .unwrap();

        // Nothing is old enough yet.
        assert_eq!(
            s.purge(now() - TimeDelta::seconds(60), 100).await.unwrap(),
            0,
            "{}",
            b.name
        );
        let later = now() + TimeDelta::seconds(1);
        assert_eq!(s.purge(later, 100).await.unwrap(), 2, "{}", b.name);
        let left: Vec<String> = s
            .events_after(0, None, 10)
            .await
            .unwrap()
            .into_iter()
            .map(|e| e.event.id)
            .collect();
        assert_eq!(left, ["owed", "dead"], "{}", b.name);
        assert_eq!(queued(s, &sub).await, ["owed"]);
        // Forgotten with the event: the same (source, id) is new again.
        assert!(matches!(
            s.publish(
                &event("unmatched", "mns-test-signal-1", json!({})),
                "app",
                now()
            )
            .await
            .unwrap(),
            Published::Accepted { .. }
        ));
    }
}
