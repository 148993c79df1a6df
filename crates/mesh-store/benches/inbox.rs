//! Inbox listing on a real SQLite file: the query every poll runs, with 10,000 messages
//! waiting in the polled inbox and as many in others.

use chrono::{TimeDelta, Utc};
use criterion::{criterion_group, criterion_main, Criterion};
use futures::StreamExt;
use mesh_protocol::{Event, Message, MessageType, Metadata, Party, Status, WorkflowFilter};
use mesh_store::{Store, StoreConfig};

fn message(id: String, to: &str, workflow: &str) -> Message {
    let now = Utc::now();
    Message {
        message_id: id,
        sender: Party {
            mailbox_id: "SENDER".into(),
            ..Default::default()
        },
        recipient: Party {
            mailbox_id: to.into(),
            ..Default::default()
        },
        workflow_id: workflow.into(),
        message_type: MessageType::Data,
        total_chunks: 1,
        file_size: 0,
        metadata: Metadata::default(),
        events: vec![Event::new(Status::Accepted, now)],
        created: now,
        expires: now + TimeDelta::days(5),
        downloaded: None,
    }
}

fn inbox_listing(c: &mut Criterion) {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let store = rt.block_on(async {
        let store = Store::open_embedded(dir.path(), &StoreConfig::default())
            .await
            .unwrap();
        let mut writes = Vec::new();
        for i in 0..20_000 {
            let store = store.clone();
            writes.push(tokio::spawn(async move {
                let to = if i % 2 == 0 { "BUSY" } else { "OTHER" };
                let wf = if i % 4 == 0 { "WF_A" } else { "WF_B" };
                let body =
                    futures::stream::once(async { Ok(bytes::Bytes::from_static(b"x")) }).boxed();
                let chunk = store.write_chunk("M", 1, body, u64::MAX).await.unwrap();
                store
                    .meta
                    .create_message(&message(format!("M{i:06}"), to, wf), &chunk)
                    .await
                    .unwrap();
            }));
        }
        for w in writes {
            w.await.unwrap();
        }
        store
    });
    c.bench_function("inbox first page (500 of 10000)", |b| {
        b.to_async(&rt)
            .iter(|| async { store.meta.inbox("BUSY", None, None, 501).await.unwrap() })
    });
    let filter = WorkflowFilter::parse("WF_A").unwrap();
    c.bench_function("inbox filtered page (workflow)", |b| {
        b.to_async(&rt).iter(|| async {
            store
                .meta
                .inbox("BUSY", None, Some(&filter), 501)
                .await
                .unwrap()
        })
    });
    c.bench_function("inbox count", |b| {
        b.to_async(&rt)
            .iter(|| async { store.meta.inbox_count("BUSY").await.unwrap() })
    });
}

criterion_group!(benches, inbox_listing);
criterion_main!(benches);
