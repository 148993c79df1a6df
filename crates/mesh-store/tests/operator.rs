//! The operator's store operations on both backends: expire one message with its report,
//! remove one with its payload, redeliver one, and the searches and figures the admin API
//! and the metrics read. Each change is logged like any other.

mod common;

use chrono::{TimeDelta, Utc};
use common::{backends, message, send};
use mesh_protocol::lifecycle::ExpiryReason;
use mesh_protocol::{Change, Status};
use mesh_store::{ActionOutcome, MessageQuery, OperatorAction};

fn expire_action() -> OperatorAction {
    OperatorAction::Expire {
        reason: ExpiryReason::ByOperator,
        report_period: TimeDelta::days(5),
    }
}

/// Ids that sort by time, as real ones do (`yyyyMMddHHmmssffffff_XXXXXX`).
fn id(n: u32) -> String {
    format!("2026120409{n:02}00000000_OP{n:04}")
}

#[tokio::test]
async fn an_operator_expires_redelivers_and_removes_messages_on_both_backends() {
    for b in backends().await {
        let s = &b.store;
        let now = Utc::now();
        let (a, c, big) = (id(1), id(2), id(3));
        send(s, &message(&a, "BOX", "WF", 1), b"small").await;
        send(s, &message(&c, "BOX", "WF", 1), b"other").await;
        send(s, &message(&big, "OTHERBOX", "WF2", 1), &[9; 100_000]).await;

        // Expire: out of the inbox, with one report to the sender.
        let out = s.act_on_message(&a, &expire_action(), now).await.unwrap();
        assert!(
            matches!(out, ActionOutcome::Expired(o) if o.expired == 1 && o.reports == 1),
            "{}: {out:?}",
            b.name
        );
        let m = s.meta.message(&a).await.unwrap().unwrap();
        assert_eq!(m.status(), Status::Undeliverable, "{}", b.name);
        assert_eq!(s.meta.inbox_count("BOX").await.unwrap(), 1, "{}", b.name);
        assert_eq!(
            s.meta.inbox_count("SENDER").await.unwrap(),
            1,
            "{}: the report",
            b.name
        );
        // Twice: nothing more happens, and the answer says why.
        let again = s.act_on_message(&a, &expire_action(), now).await.unwrap();
        assert_eq!(
            again,
            ActionOutcome::NotApplicable(Status::Undeliverable),
            "{}",
            b.name
        );

        // Redeliver: back in the inbox, at the end.
        let back = OperatorAction::Redeliver {
            inbox_period: TimeDelta::days(5),
        };
        assert_eq!(
            s.act_on_message(&a, &back, now).await.unwrap(),
            ActionOutcome::Redelivered,
            "{}",
            b.name
        );
        let inbox: Vec<String> = s
            .meta
            .inbox("BOX", None, None, 10)
            .await
            .unwrap()
            .iter()
            .map(|e| e.message_id.clone())
            .collect();
        assert_eq!(
            inbox,
            [c.clone(), a.clone()],
            "{}: redelivered last",
            b.name
        );
        let m = s.meta.message(&a).await.unwrap().unwrap();
        assert_eq!(m.status(), Status::Accepted, "{}", b.name);
        assert!(
            m.is_success(),
            "{}: no trace of the failure in its status",
            b.name
        );
        assert!(m.failure_event().is_none(), "{}", b.name);
        assert_eq!(
            s.act_on_message(&c, &back, now).await.unwrap(),
            ActionOutcome::NotApplicable(Status::Accepted),
            "{}: only a message that left its inbox",
            b.name
        );

        // Remove: record, chunks and payload gone; the history stays in the log.
        let removed = s
            .act_on_message(&big, &OperatorAction::Remove, now)
            .await
            .unwrap();
        assert!(
            matches!(&removed, ActionOutcome::Removed { bytes: 100_000, blob_keys } if blob_keys.len() == 1),
            "{}: {removed:?}",
            b.name
        );
        assert!(s.meta.message(&big).await.unwrap().is_none(), "{}", b.name);
        assert!(s.meta.chunk(&big, 1).await.unwrap().is_none(), "{}", b.name);
        if let ActionOutcome::Removed { blob_keys, .. } = &removed {
            assert!(
                !s.meta.blob_referenced(&blob_keys[0]).await.unwrap(),
                "{}",
                b.name
            );
            assert!(
                s.blobs
                    .list()
                    .await
                    .unwrap()
                    .iter()
                    .all(|(k, _)| k != &blob_keys[0]),
                "{}: payload deleted",
                b.name
            );
        }
        assert_eq!(
            s.act_on_message(&big, &OperatorAction::Remove, now)
                .await
                .unwrap(),
            ActionOutcome::NotFound,
            "{}",
            b.name
        );

        // Every change is in the message's history, in order.
        let changes: Vec<Change> = s
            .meta
            .message_log(&a)
            .await
            .unwrap()
            .iter()
            .map(|e| e.change)
            .collect();
        assert_eq!(
            changes,
            [Change::Accepted, Change::Expired, Change::Redelivered],
            "{}",
            b.name
        );
        let gone: Vec<Change> = s
            .meta
            .message_log(&big)
            .await
            .unwrap()
            .iter()
            .map(|e| e.change)
            .collect();
        assert_eq!(gone, [Change::Accepted, Change::Removed], "{}", b.name);
    }
}

#[tokio::test]
async fn search_depths_and_figures_on_both_backends() {
    for b in backends().await {
        let s = &b.store;
        for n in 1..=4 {
            let mut m = message(&id(n), if n == 4 { "QUIET" } else { "BUSY" }, "WF", 1);
            if n == 2 {
                m.workflow_id = "OTHER".into();
            }
            send(s, &m, &[1; 10]).await;
        }
        let all = |q: MessageQuery| {
            let s = s.clone();
            async move {
                s.meta
                    .search_messages(&MessageQuery { limit: 100, ..q })
                    .await
                    .unwrap()
                    .iter()
                    .map(|m| m.message_id.clone())
                    .collect::<Vec<_>>()
            }
        };
        assert_eq!(
            all(MessageQuery::default()).await,
            [id(4), id(3), id(2), id(1)],
            "{}: newest first",
            b.name
        );
        assert_eq!(
            all(MessageQuery {
                mailbox: Some("QUIET".into()),
                ..Default::default()
            })
            .await,
            [id(4)],
            "{}",
            b.name
        );
        assert_eq!(
            all(MessageQuery {
                workflow_id: Some("OTHER".into()),
                ..Default::default()
            })
            .await,
            [id(2)],
            "{}",
            b.name
        );
        assert_eq!(
            all(MessageQuery {
                local_id: Some(format!("local-{}", id(3))),
                ..Default::default()
            })
            .await,
            [id(3)],
            "{}",
            b.name
        );
        assert_eq!(
            all(MessageQuery {
                before_id: Some(id(3)),
                ..Default::default()
            })
            .await,
            [id(2), id(1)],
            "{}: the next page",
            b.name
        );
        let t = |m: u32| {
            chrono::NaiveDateTime::parse_from_str(&format!("2026120409{m:02}00"), "%Y%m%d%H%M%S")
                .unwrap()
                .and_utc()
        };
        assert_eq!(
            all(MessageQuery {
                since: Some(t(2)),
                until: Some(t(4)),
                ..Default::default()
            })
            .await,
            [id(3), id(2)],
            "{}: by time",
            b.name
        );
        s.meta
            .acknowledge(&id(1), "BUSY", Utc::now())
            .await
            .unwrap();
        assert_eq!(
            all(MessageQuery {
                status: Some(Status::Acknowledged),
                ..Default::default()
            })
            .await,
            [id(1)],
            "{}",
            b.name
        );

        let depths = s.meta.inbox_depths(10).await.unwrap();
        assert_eq!(depths.len(), 2, "{}", b.name);
        assert_eq!(
            (depths[0].mailbox.as_str(), depths[0].waiting),
            ("BUSY", 2),
            "{}",
            b.name
        );
        assert_eq!(
            depths[0].oldest,
            Some(t(2)),
            "{}: oldest still waiting",
            b.name
        );
        assert_eq!(
            (depths[1].mailbox.as_str(), depths[1].waiting),
            ("QUIET", 1),
            "{}",
            b.name
        );
        assert_eq!(s.meta.inbox_depths(1).await.unwrap().len(), 1, "{}", b.name);

        let stats = s.meta.stats().await.unwrap();
        let count = |st: &str| {
            stats
                .by_status
                .iter()
                .find(|(k, _)| k == st)
                .map_or(0, |(_, n)| *n)
        };
        assert_eq!(
            (count("accepted"), count("acknowledged")),
            (3, 1),
            "{}",
            b.name
        );
        assert_eq!(stats.stored_bytes, 40, "{}", b.name);
        assert_eq!(stats.oldest_waiting, Some(t(2)), "{}", b.name);
    }
}
