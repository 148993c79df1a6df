//! The hostile-client suite: a misbehaving or malicious client, over real HTTP (and real
//! TLS), must get the documented refusal and leave stored data exactly as it was.
//!
//! "Untouched" is checked by a snapshot of everything a mailbox owner can observe: every
//! demo mailbox's inbox, the full record (status, events) and payload of the messages
//! involved, and the payload files on disk.

mod common;

use common::{TestServer, KEY};
use mesh_client::MeshClient;
use mesh_protocol::AuthToken;
use mesh_server::tls::{TlsFiles, TlsReloader};
use mesh_server::{DirectorySource, ServerConfig};
use mesh_store::{Store, StoreConfig};
use reqwest::{Method, StatusCode};
use serde_json::Value;
use std::io::Write;
use std::sync::{Mutex, Once};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const V2: &str = "application/vnd.mesh.v2+json";
const MAILBOXES: [&str; 3] = ["X26ABC1", "X26ABC2", "X26ABC3"];

// ---------------------------------------------------------------------------------------
// Helpers

/// Everything observable about `ids` and the inboxes, as one comparable string.
async fn snapshot(server: &TestServer, ids: &[&str]) -> String {
    let store = server.state.store();
    let mut out = String::new();
    for mailbox in MAILBOXES {
        let inbox = store
            .meta
            .inbox(mailbox, None, None, 100_000)
            .await
            .expect("inbox");
        let ids: Vec<_> = inbox.iter().map(|e| e.message_id.clone()).collect();
        out.push_str(&format!("{mailbox}: {ids:?}\n"));
    }
    for id in ids {
        let message = store.meta.message(id).await.expect("message");
        out.push_str(&format!(
            "{id}: {}\n",
            serde_json::to_string(&message).unwrap()
        ));
        if let Some(m) = message {
            for n in 1..=m.total_chunks {
                if let Some(chunk) = store.meta.chunk(id, n).await.expect("chunk") {
                    let bytes = read_all(store, &chunk).await;
                    out.push_str(&format!("  chunk {n}: {} {}\n", bytes.len(), hash(&bytes)));
                }
            }
        }
    }
    let mut files = Vec::new();
    list_files(&server.dir.path().join("chunks"), &mut files);
    files.sort();
    out.push_str(&format!("files: {files:?}\n"));
    out
}

async fn read_all(store: &Store, chunk: &mesh_store::ChunkRecord) -> Vec<u8> {
    use futures::StreamExt;
    let mut stream = store.read_chunk(chunk).await.expect("read chunk");
    let mut out = Vec::new();
    while let Some(piece) = stream.next().await {
        out.extend_from_slice(&piece.expect("piece"));
    }
    out
}

fn hash(bytes: &[u8]) -> String {
    use std::hash::{DefaultHasher, Hasher};
    let mut h = DefaultHasher::new();
    h.write(bytes);
    format!("{:016x}", h.finish())
}

fn list_files(dir: &std::path::Path, out: &mut Vec<String>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        let p = e.path();
        if p.is_dir() {
            list_files(&p, out);
        } else {
            out.push(p.display().to_string());
        }
    }
}

fn sign(mailbox: &str, password: &str, key: &str, nonce: &str, count: u64, ts: &str) -> String {
    AuthToken::sign(key, mailbox, password, nonce, count, ts).header_value()
}

fn now_ts() -> String {
    AuthToken::timestamp_for(chrono::Utc::now())
}

fn fresh_nonce() -> String {
    uuid::Uuid::new_v4().to_string()
}

/// A valid token for `mailbox` with a fresh nonce.
fn token(mailbox: &str) -> String {
    sign(mailbox, "password", KEY, &fresh_nonce(), 0, &now_ts())
}

async fn code_of(r: reqwest::Response) -> (StatusCode, Value) {
    let status = r.status();
    let text = r.text().await.unwrap_or_default();
    (
        status,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    )
}

/// X26ABC1 → X26ABC2 on TEST_WORKFLOW, one chunk.
async fn delivered(server: &TestServer, body: &[u8]) -> String {
    server
        .client("X26ABC1")
        .send("X26ABC2", "TEST_WORKFLOW", body.to_vec())
        .await
        .expect("send")
}

// The audit log, captured as JSON lines from the `audit` target.
static LOG: Mutex<Vec<u8>> = Mutex::new(Vec::new());

struct LogWriter;

impl Write for LogWriter {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        LOG.lock()
            .unwrap_or_else(|p| p.into_inner())
            .extend_from_slice(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn capture_audit() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let _ = tracing_subscriber::fmt()
            .json()
            .with_env_filter("audit=info")
            .with_writer(|| LogWriter)
            .try_init();
    });
}

/// Audit events whose fields contain every `(key, value)` given.
fn audit_events(want: &[(&str, &str)]) -> Vec<Value> {
    let log = LOG.lock().unwrap_or_else(|p| p.into_inner()).clone();
    String::from_utf8_lossy(&log)
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|v| v["target"] == "audit")
        .filter(|v| {
            want.iter()
                .all(|(k, val)| v["fields"][*k].as_str().is_some_and(|s| s.contains(val)))
        })
        .collect()
}

// ---------------------------------------------------------------------------------------
// Another mailbox's data

#[tokio::test]
async fn another_mailboxs_inbox_is_refused_and_audited() {
    capture_audit();
    let server = TestServer::realistic().await;
    let id = delivered(&server, b"for X26ABC2 only").await;
    let before = snapshot(&server, &[&id]).await;
    let http = server.http();
    // X26ABC1's own valid token, used on X26ABC2's inbox, count and listing.
    for path in ["/inbox", "/count", ""] {
        let r = http
            .get(server.url(&format!("/messageexchange/X26ABC2{path}")))
            .header("authorization", token("X26ABC1"))
            .header("accept", V2)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::FORBIDDEN, "path {path}");
    }
    assert_eq!(before, snapshot(&server, &[&id]).await);
    let events = audit_events(&[("mailbox", "X26ABC2"), ("reason", "token for another")]);
    assert!(!events.is_empty(), "the attempt is in the audit log");
    assert!(events[0]["fields"]["source"]
        .as_str()
        .unwrap()
        .starts_with("127.0.0.1:"));
}

#[tokio::test]
async fn another_mailboxs_message_chunk_ack_and_tracking_are_refused() {
    capture_audit();
    let server = TestServer::realistic().await;
    let id = delivered(&server, b"private").await;
    let before = snapshot(&server, &[&id]).await;
    // X26ABC3 is authenticated as itself but asks for X26ABC2's message.
    let thief = server.client("X26ABC3");
    let r = thief
        .request(Method::GET, &thief.mx(&format!("/inbox/{id}")))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    let r = thief
        .request(Method::GET, &thief.mx(&format!("/inbox/{id}/1")))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    let r = thief
        .request(Method::HEAD, &thief.mx(&format!("/inbox/{id}")))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    let r = thief
        .request(
            Method::PUT,
            &thief.mx(&format!("/inbox/{id}/status/acknowledged")),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    let r = thief
        .request(
            Method::GET,
            &thief.mx(&format!("/outbox/tracking?messageID={id}")),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    assert_eq!(before, snapshot(&server, &[&id]).await);
    // The recipient still gets it.
    let owner = server.client("X26ABC2");
    assert_eq!(owner.download(&id).await.unwrap(), b"private");
    for reason in ["download of", "ack of", "tracking of", "status of"] {
        assert!(
            !audit_events(&[("target", &id), ("reason", reason), ("mailbox", "X26ABC3")])
                .is_empty(),
            "audited: {reason}"
        );
    }
}

#[tokio::test]
async fn a_chunk_for_someone_elses_message_is_refused() {
    let server = TestServer::realistic().await;
    let sender = server.client("X26ABC1");
    let id = sender
        .send_chunk1("X26ABC2", "TEST_WORKFLOW", b"part one".to_vec(), 2)
        .await
        .unwrap();
    let before = snapshot(&server, &[&id]).await;
    let other = server.client("X26ABC3");
    let r = other
        .request(Method::POST, &other.mx(&format!("/outbox/{id}/2")))
        .header("mex-chunk-range", "2:2")
        .header("content-type", "application/octet-stream")
        .body("injected")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    // Also through the real sender's path, with the attacker's token.
    let r = server
        .http()
        .post(server.url(&format!("/messageexchange/X26ABC1/outbox/{id}/2")))
        .header("authorization", token("X26ABC3"))
        .header("mex-chunk-range", "2:2")
        .body("injected")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    assert_eq!(before, snapshot(&server, &[&id]).await);
    sender
        .send_chunk(&id, 2, 2, b" part two".to_vec())
        .await
        .unwrap();
    let got = server.client("X26ABC2").download(&id).await.unwrap();
    assert_eq!(got, b"part one part two");
}

// ---------------------------------------------------------------------------------------
// Path traversal

#[tokio::test]
async fn path_traversal_in_every_path_parameter_is_refused() {
    let server = TestServer::realistic().await;
    let id = delivered(&server, b"keep me").await;
    let before = snapshot(&server, &[&id]).await;
    let bad = [
        "..",
        "..%2F..%2F..%2Fetc%2Fpasswd",
        "%2e%2e%2f%2e%2e%2fmesh.db",
        "..%5C..%5Cmesh.db",
        "chunks%2F..%2F..%2Fmesh.db",
        "%00",
        "X26ABC2%2F..%2FX26ABC1",
    ];
    let client = server.client("X26ABC2");
    let http = server.http();
    for b in bad {
        let paths = [
            format!("/messageexchange/{b}/inbox"),
            format!("/messageexchange/{b}"),
            format!("/messageexchange/X26ABC2/inbox/{b}"),
            format!("/messageexchange/X26ABC2/inbox/{b}/1"),
            format!("/messageexchange/X26ABC2/inbox/{id}/{b}"),
            format!("/messageexchange/X26ABC2/inbox/{b}/status/acknowledged"),
            format!("/messageexchange/X26ABC2/outbox/{b}/2"),
            format!("/messageexchange/X26ABC2/outbox/tracking/{b}"),
            format!("/messageexchange/endpointlookup/{b}/TEST_WORKFLOW"),
            format!("/messageexchange/workflowsearch/{b}"),
            format!("/admin/message/{b}"),
        ];
        for p in paths {
            for method in [Method::GET, Method::PUT, Method::POST] {
                let r = http
                    .request(method.clone(), server.url(&p))
                    .header("authorization", client.token())
                    .header("accept", V2)
                    .header("mex-chunk-range", "2:2")
                    .body("x")
                    .send()
                    .await
                    .unwrap();
                let status = r.status();
                let text = r.text().await.unwrap_or_default();
                // A lookup for an ODS code or workflow that does not exist is an empty
                // answer (API.md 3.12), not an error; anything else is a refusal.
                let empty_lookup = p.contains("lookup/") || p.contains("workflowsearch/");
                let empty_lookup = empty_lookup
                    && status == StatusCode::OK
                    && serde_json::from_str::<Value>(&text)
                        .is_ok_and(|v| v["results"].as_array().is_some_and(Vec::is_empty));
                assert!(
                    status.is_client_error() || empty_lookup,
                    "{method} {p}: {status} is not a refusal: {text}"
                );
                assert!(!text.contains("root:"), "{p} leaked a file");
                assert!(!text.contains("SQLite"), "{p} leaked the database");
            }
        }
    }
    assert_eq!(before, snapshot(&server, &[&id]).await);
    assert!(!server.dir.path().join("etc").exists());
}

// ---------------------------------------------------------------------------------------
// Authentication

#[tokio::test]
async fn wrong_password_wrong_key_reused_nonce_and_bad_times_are_refused() {
    capture_audit();
    let server = TestServer::realistic().await;
    let id = delivered(&server, b"x").await;
    let before = snapshot(&server, &[&id]).await;
    let inbox = server.url("/messageexchange/X26ABC2/inbox");
    let http = server.http();
    let get = |auth: String| {
        http.get(&inbox)
            .header("authorization", auth)
            .header("accept", V2)
            .send()
    };
    let ts = now_ts();
    let cases = [
        (
            "wrong password",
            sign("X26ABC2", "guess", KEY, &fresh_nonce(), 0, &ts),
            "bad hmac",
        ),
        (
            "wrong shared key",
            sign("X26ABC2", "password", "NotTheKey", &fresh_nonce(), 0, &ts),
            "bad hmac",
        ),
        (
            "stale timestamp",
            sign(
                "X26ABC2",
                "password",
                KEY,
                &fresh_nonce(),
                0,
                &AuthToken::timestamp_for(chrono::Utc::now() - chrono::TimeDelta::hours(3)),
            ),
            "timestamp",
        ),
        (
            "future timestamp",
            sign(
                "X26ABC2",
                "password",
                KEY,
                &fresh_nonce(),
                0,
                &AuthToken::timestamp_for(chrono::Utc::now() + chrono::TimeDelta::hours(3)),
            ),
            "timestamp",
        ),
        (
            "garbage",
            "NHSMESH X26ABC2:garbage".to_string(),
            "malformed",
        ),
    ];
    for (what, auth, reason) in cases {
        let (status, body) = code_of(get(auth).await.unwrap()).await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{what}: {body}");
        assert!(
            !audit_events(&[("mailbox", "X26ABC2"), ("reason", reason)]).is_empty(),
            "{what} is audited"
        );
    }
    // A token works once; the replay is refused even though it is otherwise valid.
    let once = token("X26ABC2");
    assert_eq!(get(once.clone()).await.unwrap().status(), StatusCode::OK);
    let (status, body) = code_of(get(once).await.unwrap()).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert!(
        body.to_string().contains("Duplicate") || body.to_string().contains("duplicate"),
        "{body}"
    );
    assert_eq!(before, snapshot(&server, &[&id]).await);
}

#[tokio::test]
async fn a_replayed_send_does_not_send_twice() {
    let server = TestServer::realistic().await;
    let auth = token("X26ABC1");
    let send = || {
        server
            .http()
            .post(server.url("/messageexchange/X26ABC1/outbox"))
            .header("authorization", auth.clone())
            .header("accept", V2)
            .header("mex-to", "X26ABC2")
            .header("mex-workflowid", "TEST_WORKFLOW")
            .body("once")
            .send()
    };
    assert_eq!(send().await.unwrap().status(), StatusCode::ACCEPTED);
    assert_eq!(send().await.unwrap().status(), StatusCode::FORBIDDEN);
    assert_eq!(server.client("X26ABC2").inbox().await.unwrap().len(), 1);
}

#[tokio::test]
async fn a_token_used_on_one_node_is_refused_on_another_sharing_the_store() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open_embedded(dir.path(), &StoreConfig::default())
        .await
        .unwrap();
    let demo = || DirectorySource {
        demo: true,
        ..Default::default()
    };
    let a = TestServer::serve_store(
        tempfile::tempdir().unwrap(),
        ServerConfig::default(),
        store.clone(),
        demo(),
        None,
    )
    .await;
    let b = TestServer::serve_store(
        tempfile::tempdir().unwrap(),
        ServerConfig::default(),
        store,
        demo(),
        None,
    )
    .await;
    let auth = token("X26ABC1");
    let count = |s: &TestServer| {
        s.http()
            .get(s.url("/messageexchange/X26ABC1/count"))
            .header("authorization", auth.clone())
            .header("accept", V2)
            .send()
    };
    assert_eq!(count(&a).await.unwrap().status(), StatusCode::OK);
    assert_eq!(count(&b).await.unwrap().status(), StatusCode::FORBIDDEN);
    // And a token first seen by B is refused by A.
    let auth2 = token("X26ABC1");
    let r = b
        .http()
        .get(b.url("/messageexchange/X26ABC1/count"))
        .header("authorization", auth2.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let r = a
        .http()
        .get(a.url("/messageexchange/X26ABC1/count"))
        .header("authorization", auth2)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
}

#[tokio::test]
async fn the_replay_record_survives_a_restart() {
    let server = TestServer::realistic().await;
    let auth = token("X26ABC1");
    let r = server
        .http()
        .get(server.url("/messageexchange/X26ABC1/count"))
        .header("authorization", auth.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let dir = server.stop().await;
    let server = TestServer::start_in(dir, ServerConfig::default(), StoreConfig::default()).await;
    let r = server
        .http()
        .get(server.url("/messageexchange/X26ABC1/count"))
        .header("authorization", auth)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
}

// ---------------------------------------------------------------------------------------
// Sizes, ranges, upload order

#[tokio::test]
async fn oversized_headers_and_bodies_are_refused_and_nothing_is_stored() {
    let config = ServerConfig {
        max_header_bytes: 16 * 1024,
        max_chunk_size: 64 * 1024,
        ..ServerConfig::default()
    };
    let server = TestServer::start(config, StoreConfig::default()).await;
    let id = delivered(&server, b"before").await;
    let before = snapshot(&server, &[&id]).await;
    let client = server.client("X26ABC1");
    // One huge header, then many headers: 431 from the HTTP layer, before any handler.
    let r = client
        .request(Method::POST, &client.mx("/outbox"))
        .header("mex-to", "X26ABC2")
        .header("mex-workflowid", "TEST_WORKFLOW")
        .header("mex-subject", "s".repeat(40 * 1024))
        .body("x")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE);
    let mut many = client
        .request(Method::POST, &client.mx("/outbox"))
        .header("mex-to", "X26ABC2")
        .header("mex-workflowid", "TEST_WORKFLOW");
    for i in 0..400 {
        many = many.header(
            format!("x-filler-{i}"),
            "0123456789012345678901234567890123456789",
        );
    }
    let status = many.body("x").send().await.map(|r| r.status());
    assert!(
        matches!(status, Ok(StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE)) || status.is_err(),
        "{status:?}"
    );
    // Declared too large: refused before reading.
    let r = client
        .request(Method::POST, &client.mx("/outbox"))
        .header("mex-to", "X26ABC2")
        .header("mex-workflowid", "TEST_WORKFLOW")
        .body(vec![b'a'; 200 * 1024])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::PAYLOAD_TOO_LARGE);
    // Undeclared (chunked transfer) and too large: refused while reading.
    let stream = futures::stream::iter(
        (0..50).map(|_| Ok::<_, std::io::Error>(bytes::Bytes::from(vec![b'b'; 8 * 1024]))),
    );
    let r = client
        .request(Method::POST, &client.mx("/outbox"))
        .header("mex-to", "X26ABC2")
        .header("mex-workflowid", "TEST_WORKFLOW")
        .body(reqwest::Body::wrap_stream(stream))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(before, snapshot(&server, &[&id]).await);
}

#[tokio::test]
async fn malformed_chunk_ranges_are_refused_and_nothing_is_stored() {
    let server = TestServer::realistic().await;
    let before = snapshot(&server, &[]).await;
    let client = server.client("X26ABC1");
    for range in [
        "0:2",
        "3:2",
        "2:1",
        "a:b",
        "1:x",
        "1",
        ":",
        "1:2:3",
        "-1:2",
        "1:0",
        "99999999999999999999:1",
    ] {
        let r = client
            .request(Method::POST, &client.mx("/outbox"))
            .header("mex-to", "X26ABC2")
            .header("mex-workflowid", "TEST_WORKFLOW")
            .header("mex-chunk-range", range)
            .body("x")
            .send()
            .await
            .unwrap();
        assert!(
            r.status().is_client_error(),
            "range {range}: {}",
            r.status()
        );
    }
    // Later chunks with a bad range against a real message.
    let id = client
        .send_chunk1("X26ABC2", "TEST_WORKFLOW", b"1".to_vec(), 3)
        .await
        .unwrap();
    let mid = snapshot(&server, &[&id]).await;
    for (n, range) in [
        ("2", "0:3"),
        ("2", "4:3"),
        ("2", "3:2"),
        ("2", "x:3"),
        ("0", "0:3"),
        ("4", "4:3"),
        ("x", "2:3"),
    ] {
        let r = client
            .request(Method::POST, &client.mx(&format!("/outbox/{id}/{n}")))
            .header("mex-chunk-range", range)
            .body("x")
            .send()
            .await
            .unwrap();
        assert!(r.status().is_client_error(), "{n} {range}: {}", r.status());
    }
    assert_eq!(mid, snapshot(&server, &[&id]).await);
    assert_ne!(before, mid);
}

#[tokio::test]
async fn chunk_two_twice_while_uploading_is_harmless_and_after_completion_refused() {
    let server = TestServer::realistic().await;
    let sender = server.client("X26ABC1");
    let id = sender
        .send_chunk1("X26ABC2", "TEST_WORKFLOW", b"one,".to_vec(), 3)
        .await
        .unwrap();
    // A retried chunk 2 (the official client retries) replaces, never duplicates.
    sender
        .send_chunk(&id, 2, 3, b"two,".to_vec())
        .await
        .unwrap();
    sender
        .send_chunk(&id, 2, 3, b"two,".to_vec())
        .await
        .unwrap();
    sender
        .send_chunk(&id, 3, 3, b"three".to_vec())
        .await
        .unwrap();
    let done = snapshot(&server, &[&id]).await;
    let r = sender
        .request(Method::POST, &sender.mx(&format!("/outbox/{id}/2")))
        .header("mex-chunk-range", "2:3")
        .body("TAMPERED")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::LOCKED);
    assert_eq!(done, snapshot(&server, &[&id]).await);
    let got = server.client("X26ABC2").download(&id).await.unwrap();
    assert_eq!(got, b"one,two,three");
}

#[tokio::test]
async fn acknowledging_before_the_last_chunk_changes_nothing() {
    let server = TestServer::realistic().await;
    let sender = server.client("X26ABC1");
    let recipient = server.client("X26ABC2");
    let id = sender
        .send_chunk1("X26ABC2", "TEST_WORKFLOW", b"a".to_vec(), 2)
        .await
        .unwrap();
    let before = snapshot(&server, &[&id]).await;
    // API.md 3.7: acknowledging a message in any status but accepted is a 200 no-op.
    recipient.acknowledge(&id).await.unwrap();
    assert_eq!(before, snapshot(&server, &[&id]).await);
    assert!(recipient.inbox().await.unwrap().is_empty());
    sender.send_chunk(&id, 2, 2, b"b".to_vec()).await.unwrap();
    assert_eq!(recipient.inbox().await.unwrap(), vec![id.clone()]);
    assert_eq!(recipient.download(&id).await.unwrap(), b"ab");
}

#[tokio::test]
async fn a_gzip_bomb_is_stored_as_sent_not_inflated() {
    // 1 GiB of zeros as 1024 concatenated gzip members of 1 MiB each: about 1 MB on the wire.
    let mut member = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    member.write_all(&vec![0u8; 1 << 20]).unwrap();
    let member = member.finish().unwrap();
    let bomb: Vec<u8> = member.repeat(1024);
    assert!(bomb.len() < 2 << 20);
    let server = TestServer::realistic().await;
    let client = server.client("X26ABC1");
    let r = client
        .request(Method::POST, &client.mx("/outbox"))
        .header("mex-to", "X26ABC2")
        .header("mex-workflowid", "TEST_WORKFLOW")
        .header("content-encoding", "gzip")
        .header("mex-content-compressed", "Y")
        .body(bomb.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::ACCEPTED);
    let id = r.json::<Value>().await.unwrap()["message_id"]
        .as_str()
        .unwrap()
        .to_string();
    let store = server.state.store();
    let chunk = store.meta.chunk(&id, 1).await.unwrap().expect("stored");
    assert_eq!(chunk.size, bomb.len() as u64, "stored compressed size");
    assert_eq!(read_all(store, &chunk).await, bomb);
    let recipient = server.client("X26ABC2");
    let r = recipient
        .request(Method::GET, &recipient.mx(&format!("/inbox/{id}")))
        .header("accept-encoding", "gzip")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.bytes().await.unwrap().as_ref(), bomb.as_slice());
}

// ---------------------------------------------------------------------------------------
// Rate limits, slow and stalled clients, connection limits

#[tokio::test]
async fn a_mailbox_over_its_rate_gets_429_with_retry_after_and_others_are_unaffected() {
    capture_audit();
    let config = ServerConfig {
        rate_limit: Some(mesh_server::config::RateLimit {
            per_second: 1,
            burst: 5,
        }),
        ..ServerConfig::default()
    };
    let server = TestServer::start(config, StoreConfig::default()).await;
    let noisy = server.client("X26ABC1");
    let mut limited = None;
    for _ in 0..20 {
        let auth = noisy.token();
        let r = server
            .http()
            .get(server.url("/messageexchange/X26ABC1/count"))
            .header("authorization", &auth)
            .send()
            .await
            .unwrap();
        if r.status() == StatusCode::TOO_MANY_REQUESTS {
            let wait: u64 = r.headers()["retry-after"]
                .to_str()
                .unwrap()
                .parse()
                .unwrap();
            assert!((1..=5).contains(&wait), "retry-after {wait}");
            limited = Some(auth);
            break;
        }
        assert_eq!(r.status(), StatusCode::OK);
    }
    let auth = limited.expect("the burst runs out");
    // Another mailbox is served normally.
    server.client("X26ABC2").inbox().await.unwrap();
    // The refused token was not spent: the client's retry with it succeeds once allowed.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let r = server
        .http()
        .get(server.url("/messageexchange/X26ABC1/count"))
        .header("authorization", &auth)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert!(!audit_events(&[("event", "rate_limited"), ("mailbox", "X26ABC1")]).is_empty());
}

#[tokio::test]
async fn the_rate_limit_holds_across_nodes_sharing_a_store() {
    // Two nodes on one store that counts requests (as PostgreSQL does for a cluster): a
    // mailbox alternating between them gets its burst once in all, not once per node.
    let (per_second, burst) = (1, 6);
    let config = || ServerConfig {
        rate_limit: Some(mesh_server::config::RateLimit { per_second, burst }),
        ..ServerConfig::default()
    };
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open_embedded(dir.path(), &StoreConfig::default())
        .await
        .unwrap()
        .shared(true);
    let source = || DirectorySource {
        demo: true,
        ..Default::default()
    };
    let a = TestServer::serve_store(
        tempfile::tempdir().unwrap(),
        config(),
        store.clone(),
        source(),
        None,
    )
    .await;
    let b = TestServer::serve_store(
        tempfile::tempdir().unwrap(),
        config(),
        store,
        source(),
        None,
    )
    .await;
    // Windows are `burst / rate` = 6 s long, aligned to the clock: start early in one.
    let into_window = chrono::Utc::now().timestamp().rem_euclid(6);
    if into_window >= 4 {
        tokio::time::sleep(Duration::from_millis((6 - into_window as u64) * 1000 + 100)).await;
    }
    let mut served = 0;
    let mut refused = None;
    for i in 0..20 {
        let node = if i % 2 == 0 { &a } else { &b };
        let r = node
            .http()
            .get(node.url("/messageexchange/X26ABC1/count"))
            .header("authorization", node.client("X26ABC1").token())
            .send()
            .await
            .unwrap();
        if r.status() == StatusCode::TOO_MANY_REQUESTS {
            refused = Some(r);
            break;
        }
        assert_eq!(r.status(), StatusCode::OK);
        served += 1;
    }
    let refused = refused.expect("the shared burst runs out");
    assert_eq!(served, burst, "one burst across both nodes, not one each");
    let wait: u64 = refused.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=6).contains(&wait), "retry-after {wait}");
    // Another mailbox has its own count.
    b.client("X26ABC2").inbox().await.unwrap();
}

fn quick_timeouts() -> ServerConfig {
    ServerConfig {
        header_timeout: Duration::from_secs(2),
        body_idle_timeout: Duration::from_secs(2),
        ..ServerConfig::default()
    }
}

/// Waits until the server closes the connection; true when it does within `limit`.
async fn closed_within(stream: &mut TcpStream, limit: Duration) -> bool {
    let mut buf = [0u8; 4096];
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        match tokio::time::timeout_at(deadline, stream.read(&mut buf)).await {
            Err(_) => return false,
            Ok(Ok(0)) | Ok(Err(_)) => return true,
            Ok(Ok(_)) => continue,
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_slow_connections_time_out_while_others_are_served() {
    let server = TestServer::start(quick_timeouts(), StoreConfig::default()).await;
    let addr = server.addr();
    let mut conns = Vec::new();
    for i in 0..1000 {
        let mut s = TcpStream::connect(addr).await.expect("connect");
        if i % 2 == 0 {
            // Half send the start of a request head and then trickle; half send nothing.
            s.write_all(b"GET /messageexchange/X26ABC1/inbox HTTP/1.1\r\nHost: x\r\n")
                .await
                .unwrap();
        }
        conns.push(s);
    }
    let trickle = tokio::spawn(async move {
        for _ in 0..3 {
            for s in conns.iter_mut().step_by(2) {
                let _ = s.write_all(b"X-Slow: 1\r\n").await;
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        conns
    });
    // A well-behaved client is served while the slow ones hold their connections.
    let client = server.client("X26ABC1");
    let id = client
        .send("X26ABC2", "TEST_WORKFLOW", b"hi".to_vec())
        .await
        .unwrap();
    assert_eq!(server.client("X26ABC2").download(&id).await.unwrap(), b"hi");
    let mut conns = trickle.await.unwrap();
    let mut closed = 0;
    for s in conns.iter_mut() {
        if closed_within(s, Duration::from_secs(10)).await {
            closed += 1;
        }
    }
    assert_eq!(
        closed, 1000,
        "every slow connection is closed by the server"
    );
    client.handshake().await.unwrap();
}

#[tokio::test]
async fn a_stalled_upload_is_abandoned_and_nothing_is_stored() {
    let server = TestServer::start(quick_timeouts(), StoreConfig::default()).await;
    let before = snapshot(&server, &[]).await;
    let mut s = TcpStream::connect(server.addr()).await.unwrap();
    let head = format!(
        "POST /messageexchange/X26ABC1/outbox HTTP/1.1\r\nHost: x\r\nAuthorization: {}\r\n\
         Mex-To: X26ABC2\r\nMex-WorkflowID: TEST_WORKFLOW\r\nContent-Length: 100000\r\n\r\n",
        token("X26ABC1")
    );
    s.write_all(head.as_bytes()).await.unwrap();
    s.write_all(&[b'x'; 5000]).await.unwrap();
    // ... and then nothing more.
    let mut answer = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(15), s.read_to_end(&mut answer)).await;
    assert!(read.is_ok(), "the server gives up on the body");
    let text = String::from_utf8_lossy(&answer);
    assert!(
        text.is_empty() || text.starts_with("HTTP/1.1 408"),
        "{text}"
    );
    assert_eq!(before, snapshot(&server, &[]).await);
    assert!(server.client("X26ABC2").inbox().await.unwrap().is_empty());
}

#[tokio::test]
async fn connections_over_the_limit_are_refused_and_the_server_recovers() {
    let config = ServerConfig {
        max_connections: 20,
        ..quick_timeouts()
    };
    let server = TestServer::start(config, StoreConfig::default()).await;
    let mut held = Vec::new();
    for _ in 0..20 {
        held.push(TcpStream::connect(server.addr()).await.unwrap());
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    let mut extra = TcpStream::connect(server.addr()).await.unwrap();
    let _ = extra
        .write_all(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
        .await;
    assert!(
        closed_within(&mut extra, Duration::from_secs(1)).await,
        "the 21st connection is closed at once"
    );
    drop(held);
    tokio::time::sleep(Duration::from_millis(200)).await;
    server.client("X26ABC1").handshake().await.unwrap();
}

// ---------------------------------------------------------------------------------------
// Mutual TLS

struct Pki {
    _dir: tempfile::TempDir,
    certs: mesh_server::devcerts::DevCerts,
    rogue: mesh_server::devcerts::DevCerts,
}

fn pki() -> Pki {
    let dir = tempfile::tempdir().unwrap();
    let hosts = vec!["localhost".to_string(), "127.0.0.1".to_string()];
    let certs = mesh_server::devcerts::generate(
        &dir.path().join("good"),
        &hosts,
        &[
            "x26abc1.x26.api.mesh-client.nhs.uk".into(),
            "someone.else".into(),
        ],
    )
    .unwrap();
    let rogue = mesh_server::devcerts::generate(
        &dir.path().join("rogue"),
        &hosts,
        &["x26abc1.x26.api.mesh-client.nhs.uk".into()],
    )
    .unwrap();
    Pki {
        _dir: dir,
        certs,
        rogue,
    }
}

fn https_client(
    ca: &std::path::Path,
    identity: Option<(&std::path::Path, &std::path::Path)>,
) -> reqwest::Client {
    let mut b = reqwest::Client::builder()
        .use_rustls_tls()
        .tls_built_in_root_certs(false)
        .add_root_certificate(reqwest::Certificate::from_pem(&std::fs::read(ca).unwrap()).unwrap());
    if let Some((cert, key)) = identity {
        let mut pem = std::fs::read(cert).unwrap();
        pem.extend_from_slice(&std::fs::read(key).unwrap());
        b = b.identity(reqwest::Identity::from_pem(&pem).unwrap());
    }
    b.build().unwrap()
}

async fn mtls_server(pki: &Pki, bind_cn: bool) -> TestServer {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open_embedded(dir.path(), &StoreConfig::default())
        .await
        .unwrap();
    let mut source = DirectorySource {
        demo: true,
        ..Default::default()
    };
    if bind_cn {
        let file = dir.path().join("mailboxes.jsonl");
        std::fs::write(
            &file,
            r#"{"mailbox_id":"X26ABC1","mailbox_name":"TESTMB1","ods_code":"X26","password":"password","certificate_cns":["x26abc1.x26.api.mesh-client.nhs.uk"]}"#,
        )
        .unwrap();
        source.mailboxes = Some(file);
    }
    let tls = TlsReloader::load(TlsFiles {
        cert: pki.certs.server_cert.clone(),
        key: pki.certs.server_key.clone(),
        client_ca: Some(pki.certs.ca.clone()),
        client_cert_optional: false,
    })
    .unwrap();
    TestServer::serve_store(dir, ServerConfig::default(), store, source, Some(tls)).await
}

fn base_for(server: &TestServer) -> String {
    format!("https://localhost:{}", server.addr().port())
}

#[tokio::test]
async fn mutual_tls_refuses_clients_without_a_trusted_certificate() {
    capture_audit();
    let pki = pki();
    let server = mtls_server(&pki, false).await;
    let base = base_for(&server);
    let (_, cert, key) = &pki.certs.clients[0];
    let good = MeshClient::with_http(
        https_client(&pki.certs.ca, Some((cert, key))),
        &base,
        "X26ABC1",
        "password",
        KEY,
    );
    let id = good
        .send("X26ABC2", "TEST_WORKFLOW", b"over mTLS".to_vec())
        .await
        .unwrap();
    let before = snapshot(&server, &[&id]).await;
    // No certificate at all.
    let none = MeshClient::with_http(
        https_client(&pki.certs.ca, None),
        &base,
        "X26ABC2",
        "password",
        KEY,
    );
    assert!(matches!(
        none.inbox().await,
        Err(mesh_client::ClientError::Http(_))
    ));
    // A certificate from a CA the server does not trust, with the right CN.
    let (_, rcert, rkey) = &pki.rogue.clients[0];
    let rogue = MeshClient::with_http(
        https_client(&pki.certs.ca, Some((rcert, rkey))),
        &base,
        "X26ABC2",
        "password",
        KEY,
    );
    assert!(matches!(
        rogue.inbox().await,
        Err(mesh_client::ClientError::Http(_))
    ));
    // Plain HTTP on the TLS port.
    let plain = MeshClient::new(
        &format!("http://127.0.0.1:{}", server.addr().port()),
        "X26ABC2",
        "password",
        KEY,
    );
    assert!(plain.inbox().await.is_err());
    assert_eq!(before, snapshot(&server, &[&id]).await);
    assert!(audit_events(&[("event", "tls_refused")]).len() >= 2);
    // The trusted client still works.
    let (_, cert2, key2) = &pki.certs.clients[1];
    let recipient = MeshClient::with_http(
        https_client(&pki.certs.ca, Some((cert2, key2))),
        &base,
        "X26ABC2",
        "password",
        KEY,
    );
    assert_eq!(recipient.download(&id).await.unwrap(), b"over mTLS");
}

#[tokio::test]
async fn a_certificate_bound_mailbox_refuses_other_certificates() {
    capture_audit();
    let pki = pki();
    let server = mtls_server(&pki, true).await;
    let base = base_for(&server);
    let (_, bound_cert, bound_key) = &pki.certs.clients[0];
    let (_, other_cert, other_key) = &pki.certs.clients[1];
    let bound = MeshClient::with_http(
        https_client(&pki.certs.ca, Some((bound_cert, bound_key))),
        &base,
        "X26ABC1",
        "password",
        KEY,
    );
    bound.handshake().await.unwrap();
    let other = MeshClient::with_http(
        https_client(&pki.certs.ca, Some((other_cert, other_key))),
        &base,
        "X26ABC1",
        "password",
        KEY,
    );
    let before = snapshot(&server, &[]).await;
    match other.send("X26ABC2", "TEST_WORKFLOW", b"x".to_vec()).await {
        Err(mesh_client::ClientError::Status { status, .. }) => {
            assert_eq!(status, StatusCode::FORBIDDEN)
        }
        other => panic!("expected 403, got {other:?}"),
    }
    assert_eq!(before, snapshot(&server, &[]).await);
    assert!(!audit_events(&[
        ("mailbox", "X26ABC1"),
        ("reason", "not bound"),
        ("client_cn", "someone.else")
    ])
    .is_empty());
    // An unbound mailbox (X26ABC2) accepts any trusted certificate.
    let x2 = MeshClient::with_http(
        https_client(&pki.certs.ca, Some((other_cert, other_key))),
        &base,
        "X26ABC2",
        "password",
        KEY,
    );
    x2.handshake().await.unwrap();
}

#[tokio::test]
async fn a_certificate_rotation_takes_effect_without_a_restart() {
    let pki = pki();
    let dir = tempfile::tempdir().unwrap();
    let cert = dir.path().join("server.pem");
    let key = dir.path().join("server-key.pem");
    std::fs::copy(&pki.certs.server_cert, &cert).unwrap();
    std::fs::copy(&pki.certs.server_key, &key).unwrap();
    let tls = TlsReloader::load(TlsFiles {
        cert: cert.clone(),
        key: key.clone(),
        client_ca: None,
        client_cert_optional: false,
    })
    .unwrap();
    let store = Store::open_embedded(dir.path(), &StoreConfig::default())
        .await
        .unwrap();
    let demo = DirectorySource {
        demo: true,
        ..Default::default()
    };
    let server = TestServer::serve_store(
        tempfile::tempdir().unwrap(),
        ServerConfig::default(),
        store,
        demo,
        Some(tls.clone()),
    )
    .await;
    let base = base_for(&server);
    let old_ca = MeshClient::with_http(
        https_client(&pki.certs.ca, None),
        &base,
        "X26ABC1",
        "password",
        KEY,
    );
    let new_ca = MeshClient::with_http(
        https_client(&pki.rogue.ca, None),
        &base,
        "X26ABC1",
        "password",
        KEY,
    );
    old_ca.handshake().await.unwrap();
    assert!(new_ca.handshake().await.is_err());
    // A broken file (half-copied) is refused and the old certificate stays in use.
    std::fs::write(&cert, "-----BEGIN CERTIFICATE-----\nnot really\n").unwrap();
    assert!(tls.reload().is_err());
    let again = MeshClient::with_http(
        https_client(&pki.certs.ca, None),
        &base,
        "X26ABC1",
        "password",
        KEY,
    );
    again.handshake().await.unwrap();
    // The rotated certificate, from the new CA.
    std::fs::copy(&pki.rogue.server_cert, &cert).unwrap();
    std::fs::copy(&pki.rogue.server_key, &key).unwrap();
    tls.reload().unwrap();
    let rotated = MeshClient::with_http(
        https_client(&pki.rogue.ca, None),
        &base,
        "X26ABC1",
        "password",
        KEY,
    );
    rotated.handshake().await.unwrap();
    let stale = MeshClient::with_http(
        https_client(&pki.certs.ca, None),
        &base,
        "X26ABC1",
        "password",
        KEY,
    );
    assert!(stale.handshake().await.is_err());
}

#[tokio::test]
async fn secrets_do_not_appear_in_debug_output() {
    let config = ServerConfig {
        shared_key: "SuperSecretSharedKey".into(),
        ..ServerConfig::default()
    };
    assert!(!format!("{config:?}").contains("SuperSecretSharedKey"));
    let server = TestServer::realistic().await;
    let mailbox = server
        .state
        .directory()
        .mailbox("X26ABC1")
        .cloned()
        .unwrap();
    assert!(!format!("{mailbox:?}").contains("password\""));
    assert!(format!("{mailbox:?}").contains("redacted"));
}
