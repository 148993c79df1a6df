//! The harness the store suites share: the backends under test (SQLite + files always;
//! PostgreSQL + S3 when the test command provides them) and message helpers.
#![allow(dead_code)]

use bytes::Bytes;
use chrono::{TimeDelta, Utc};
use futures::StreamExt;
use mesh_protocol::{Event, Message, MessageType, Metadata, Party, Status};
use mesh_store::{BackendSpec, ByteStream, PgOptions, S3Options, Store, StoreConfig, StoreError};
use sqlx::Connection;
use tempfile::TempDir;

/// A backend under test, with whatever it needs kept alive.
pub struct Backend {
    pub name: &'static str,
    pub store: Store,
    /// How to open another node on the same data (None: the backend is single-node).
    pub spec: Option<BackendSpec>,
    pub dir: TempDir,
}

impl Backend {
    /// A second node on the same data: a separate `Store` with its own connections, as a
    /// second server process would have. A single-node backend hands back the same store.
    pub async fn another_node(&self) -> Store {
        match &self.spec {
            Some(spec) => Store::open(self.dir.path(), spec, &test_config())
                .await
                .unwrap()
                .shared(true),
            None => self.store.clone(),
        }
    }
}

pub fn test_config() -> StoreConfig {
    StoreConfig {
        inline_max: 1024,
        readers: 4,
    }
}

/// The PostgreSQL + S3 settings from the environment, with a fresh database and key prefix.
pub async fn shared_spec() -> Option<BackendSpec> {
    let (Ok(server), Ok(bucket)) = (
        std::env::var("OPENSPINE_TEST_DATABASE_URL"),
        std::env::var("OPENSPINE_TEST_BLOB_URL"),
    ) else {
        assert!(
            std::env::var("OPENSPINE_REQUIRE_SHARED_BACKEND").as_deref() != Ok("1"),
            "OPENSPINE_REQUIRE_SHARED_BACKEND=1 but OPENSPINE_TEST_DATABASE_URL / \
             OPENSPINE_TEST_BLOB_URL are not set"
        );
        return None;
    };
    let name = format!("t_{}", uuid::Uuid::new_v4().simple());
    let mut admin = sqlx::PgConnection::connect(&server).await.unwrap();
    sqlx::query(&format!("CREATE DATABASE {name}"))
        .execute(&mut admin)
        .await
        .unwrap();
    admin.close().await.unwrap();
    let (base, _) = server.rsplit_once('/').expect("database URL with a path");
    Some(BackendSpec {
        database_url: Some(format!("{base}/{name}")),
        blob_url: Some(format!("{}/{name}", bucket.trim_end_matches('/'))),
        s3: S3Options {
            endpoint: std::env::var("OPENSPINE_TEST_S3_ENDPOINT").ok(),
            region: std::env::var("OPENSPINE_TEST_S3_REGION").ok(),
            path_style: true,
        },
        pg: PgOptions::default(),
    })
}

pub async fn backends() -> Vec<Backend> {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open_embedded(dir.path(), &test_config())
        .await
        .unwrap();
    let mut all = vec![Backend {
        name: "sqlite+files",
        store,
        spec: None,
        dir,
    }];
    if let Some(spec) = shared_spec().await {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), &spec, &test_config())
            .await
            .unwrap();
        assert!(store.is_shared());
        all.push(Backend {
            name: "postgres+s3",
            store,
            spec: Some(spec),
            dir,
        });
    }
    all
}

pub fn party(id: &str) -> Party {
    Party {
        mailbox_id: id.into(),
        mailbox_name: format!("{id} name"),
        ..Default::default()
    }
}

pub fn message(id: &str, to: &str, workflow: &str, total: u32) -> Message {
    let now = Utc::now();
    let status = if total == 1 {
        Status::Accepted
    } else {
        Status::Uploading
    };
    Message {
        message_id: id.into(),
        sender: party("SENDER"),
        recipient: party(to),
        workflow_id: workflow.into(),
        message_type: MessageType::Data,
        total_chunks: total,
        file_size: 0,
        metadata: Metadata {
            local_id: format!("local-{id}"),
            ..Default::default()
        },
        events: vec![Event::new(status, now)],
        created: now,
        expires: now + TimeDelta::days(5),
        downloaded: None,
    }
}

pub fn body(data: &[u8]) -> ByteStream {
    let pieces: Vec<Result<Bytes, StoreError>> = data
        .chunks(700)
        .map(|c| Ok(Bytes::copy_from_slice(c)))
        .collect();
    futures::stream::iter(pieces).boxed()
}

pub async fn read_all(store: &Store, id: &str, n: u32) -> Vec<u8> {
    let rec = store.meta.chunk(id, n).await.unwrap().expect("chunk");
    let mut s = store.read_chunk(&rec).await.unwrap();
    let mut out = Vec::new();
    while let Some(b) = s.next().await {
        out.extend_from_slice(&b.unwrap());
    }
    out
}

pub async fn send(store: &Store, m: &Message, data: &[u8]) {
    let chunk = store
        .write_chunk(&m.message_id, 1, body(data), u64::MAX)
        .await
        .unwrap();
    store.meta.create_message(m, &chunk).await.unwrap();
}
