//! Regressions for what a hostile client, a second process and a long-running service
//! broke (each test failed on the code before its fix): the replay record's lifetime,
//! unbounded metric labels, a client that stops reading, early refusals on keep-alive
//! connections, header bytes, gzip that is not gzip, and a message whose payload is gone.

mod common;

use chrono::{DateTime, TimeDelta, Timelike, Utc};
use common::{TestServer, KEY};
use mesh_protocol::{AuthToken, ManualClock};
use mesh_server::{DirectorySource, ServerConfig};
use mesh_store::StoreConfig;
use reqwest::{Method, StatusCode};
use serde_json::Value;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const V2: &str = "application/vnd.mesh.v2+json";

fn demo() -> DirectorySource {
    DirectorySource {
        demo: true,
        ..Default::default()
    }
}

fn token_at(mailbox: &str, nonce: &str, at: DateTime<Utc>) -> String {
    AuthToken::sign(
        KEY,
        mailbox,
        "password",
        nonce,
        0,
        &AuthToken::timestamp_for(at),
    )
    .header_value()
}

fn fresh_token(mailbox: &str) -> String {
    token_at(mailbox, &uuid::Uuid::new_v4().to_string(), Utc::now())
}

async fn send_with_token(server: &TestServer, auth: &str, body: &[u8]) -> reqwest::Response {
    server
        .http()
        .post(server.url("/messageexchange/X26ABC1/outbox"))
        .header("authorization", auth)
        .header("accept", V2)
        .header("mex-to", "X26ABC2")
        .header("mex-workflowid", "TEST_WORKFLOW")
        .body(body.to_vec())
        .send()
        .await
        .expect("request")
}

async fn inbox_len(server: &TestServer) -> usize {
    server
        .client("X26ABC2")
        .inbox()
        .await
        .expect("inbox lists")
        .len()
}

// ---------------------------------------------------------------------------------------
// Defect 2: a token replayed in the last minute of its acceptance was delivered twice.

#[tokio::test]
async fn a_token_replayed_in_its_last_accepted_minute_is_refused_even_after_a_restart() {
    // The token's time has minute precision; the clock check accepts it for the window
    // plus that minute. The record must live exactly as long: a token used in that last
    // minute, then replayed after a restart (whose first request sweeps the records),
    // was delivered twice.
    let config = ServerConfig::default();
    let window = TimeDelta::from_std(config.clock_window.unwrap()).unwrap();
    let minute = |t: DateTime<Utc>| t.with_second(0).unwrap().with_nanosecond(0).unwrap();
    let token_time = minute(Utc::now() - window - TimeDelta::seconds(30));
    let clock = Arc::new(ManualClock::new(
        token_time + window + TimeDelta::seconds(30),
    ));
    let server = TestServer::with_clock(config.clone(), clock.clone(), demo()).await;
    let auth = token_at("X26ABC1", &uuid::Uuid::new_v4().to_string(), token_time);
    let first = send_with_token(&server, &auth, b"once").await;
    assert_eq!(first.status(), StatusCode::ACCEPTED, "in its last minute");

    // A restart: the first request after it sweeps expired records.
    let dir = server.stop().await;
    let server = TestServer::with_clock_in(dir, config.clone(), clock.clone(), demo()).await;
    let replay = send_with_token(&server, &auth, b"once").await;
    assert_eq!(
        replay.status(),
        StatusCode::FORBIDDEN,
        "replayed after a restart"
    );
    let body: Value = replay.json().await.unwrap();
    assert!(
        body.to_string()
            .contains("Error Duplicated Authentication Token"),
        "{body}"
    );

    // The last second the clock check accepts the token: still refused as a replay.
    let last = token_time + window + TimeDelta::minutes(1);
    clock.set(last);
    let replay = send_with_token(&server, &auth, b"once").await;
    assert_eq!(
        replay.status(),
        StatusCode::FORBIDDEN,
        "replayed at the boundary"
    );
    let body: Value = replay.json().await.unwrap();
    assert!(body
        .to_string()
        .contains("Error Duplicated Authentication Token"));

    // One second later the clock check refuses it on its own.
    clock.set(last + TimeDelta::seconds(1));
    let late = send_with_token(&server, &auth, b"once").await;
    assert_eq!(late.status(), StatusCode::FORBIDDEN);
    let body: Value = late.json().await.unwrap();
    assert!(
        body.to_string()
            .contains("Invalid Authentication Token: timestamp outside the allowed window"),
        "{body}"
    );
    clock.set(Utc::now());
    assert_eq!(inbox_len(&server).await, 1, "delivered exactly once");
}

// ---------------------------------------------------------------------------------------
// Defect 4: any method name became a metric label.

#[tokio::test]
async fn invented_method_names_do_not_grow_the_metrics() {
    let server = TestServer::realistic().await;
    let junk_len = 2000;
    for i in 0..200 {
        let mut s = TcpStream::connect(server.addr()).await.unwrap();
        let method = format!("JUNK{i:04}{}", "X".repeat(junk_len));
        let request = format!(
            "{method} /messageexchange/X26ABC1/inbox HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n"
        );
        s.write_all(request.as_bytes()).await.unwrap();
        let mut answer = Vec::new();
        let _ = tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut answer)).await;
        let head = String::from_utf8_lossy(&answer);
        assert!(head.starts_with("HTTP/1.1 4"), "{head}");
    }
    let metrics = mesh_server::metrics::render();
    assert!(
        !metrics.contains("JUNK"),
        "an invented method became a label"
    );
    assert!(
        metrics.contains(r#"method="other""#),
        "invented methods are counted as other"
    );
    assert!(
        metrics.len() < 1_000_000,
        "metrics grew to {} bytes",
        metrics.len()
    );
}

// ---------------------------------------------------------------------------------------
// Defect 5: a client that stopped reading held its connection slot forever.

/// A connection with a tiny receive buffer that asks for `path` and never reads.
async fn stalled_download(server: &TestServer, mailbox: &str, path: &str) -> TcpStream {
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    let mut s = socket.connect(server.addr()).await.unwrap();
    let request = format!(
        "GET {path} HTTP/1.1\r\nhost: x\r\nauthorization: {}\r\naccept: {V2}\r\n\r\n",
        fresh_token(mailbox)
    );
    s.write_all(request.as_bytes()).await.unwrap();
    s
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_that_stop_reading_lose_their_connections_and_others_get_in() {
    let config = ServerConfig {
        max_connections: 2,
        send_stall_timeout: Duration::from_secs(1),
        ..ServerConfig::default()
    };
    let server = TestServer::start(config, StoreConfig::default()).await;
    let big = vec![7u8; 24 << 20];
    let id = server
        .client("X26ABC1")
        .send("X26ABC2", "TEST_WORKFLOW", big)
        .await
        .expect("sent");
    let path = format!("/messageexchange/X26ABC2/inbox/{id}");
    // Every slot taken by a reader that stopped reading.
    let stalled = [
        stalled_download(&server, "X26ABC2", &path).await,
        stalled_download(&server, "X26ABC2", &path).await,
    ];
    // Someone else gets in once the stall limit has passed.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    let client = server.client("X26ABC1");
    loop {
        let attempt = tokio::time::timeout(Duration::from_secs(2), client.handshake()).await;
        if matches!(attempt, Ok(Ok(()))) {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the stalled readers still hold every connection"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    // And the stalled connections were closed by the server, not merely outnumbered.
    // Reading one before its own stall limit passed would let it carry on, so give both
    // time to pass it first.
    tokio::time::sleep(Duration::from_secs(3)).await;
    for mut s in stalled {
        let mut buf = vec![0u8; 1 << 20];
        let closed = async {
            loop {
                match s.read(&mut buf).await {
                    Ok(0) | Err(_) => return,
                    Ok(_) => continue,
                }
            }
        };
        // Reading what was buffered ends in end-of-file or a reset, not in a wait.
        tokio::time::timeout(Duration::from_secs(20), closed)
            .await
            .expect("the server closed the stalled connection");
    }
}

// ---------------------------------------------------------------------------------------
// Defect 6: an answer before the body was read dropped the connection without saying so.

/// Sends a POST with `body_len` bytes after the head, reading the answer concurrently,
/// as a keep-alive client does; returns the answer's head.
async fn post_and_read_answer(server: &TestServer, auth: &str, body_len: usize) -> String {
    let s = TcpStream::connect(server.addr()).await.unwrap();
    let (mut reader, mut writer) = s.into_split();
    let head = format!(
        "POST /messageexchange/X26ABC1/outbox HTTP/1.1\r\nhost: x\r\nauthorization: {auth}\r\n\
         mex-to: X26ABC2\r\nmex-workflowid: TEST_WORKFLOW\r\ncontent-type: application/octet-stream\r\n\
         content-length: {body_len}\r\n\r\n"
    );
    let write = tokio::spawn(async move {
        writer.write_all(head.as_bytes()).await?;
        let piece = vec![b'x'; 64 * 1024];
        let mut left = body_len;
        while left > 0 {
            let n = left.min(piece.len());
            writer.write_all(&piece[..n]).await?;
            left -= n;
        }
        // Handed back, not dropped: dropping the write half would half-close the
        // connection, which no keep-alive client does.
        Ok::<_, std::io::Error>(writer)
    });
    let mut answer = Vec::new();
    let mut buf = [0u8; 4096];
    let read = async {
        loop {
            match reader.read(&mut buf).await {
                Ok(0) => break,
                Ok(n) => {
                    answer.extend_from_slice(&buf[..n]);
                    if answer.windows(4).any(|w| w == b"\r\n\r\n") {
                        break;
                    }
                }
                Err(e) => panic!("reading the answer failed: {e} (got {answer:?})"),
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(20), read)
        .await
        .expect("an answer");
    let wrote = write.await.unwrap();
    assert!(
        wrote.is_ok(),
        "the whole body could be written before the server closed: {:?}",
        wrote.err()
    );
    String::from_utf8_lossy(&answer).to_ascii_lowercase()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_early_refusal_says_connection_close_and_lets_the_client_finish_its_body() {
    let server = TestServer::realistic().await;
    let bad = AuthToken::sign(
        KEY,
        "X26ABC1",
        "wrong",
        "n",
        0,
        &AuthToken::timestamp_for(Utc::now()),
    )
    .header_value();
    for body_len in [1024, 10 << 20] {
        let head = post_and_read_answer(&server, &bad, body_len).await;
        assert!(head.starts_with("http/1.1 403"), "{head}");
        assert!(head.contains("connection: close"), "{body_len}: {head}");
    }
    // A body declared over the limit: refused as 413 at once, also saying so.
    let small = TestServer::start(
        ServerConfig {
            max_chunk_size: 1000,
            ..ServerConfig::default()
        },
        StoreConfig::default(),
    )
    .await;
    let head = post_and_read_answer(&small, &fresh_token("X26ABC1"), 5000).await;
    assert!(head.starts_with("http/1.1 413"), "{head}");
    assert!(head.contains("connection: close"), "{head}");
    // An answer after the whole body was read keeps the connection open.
    let head = post_and_read_answer(&server, &fresh_token("X26ABC1"), 100).await;
    assert!(head.starts_with("http/1.1 202"), "{head}");
    assert!(!head.contains("connection: close"), "{head}");
}

#[tokio::test]
async fn a_chunked_body_read_to_its_end_keeps_the_connection_open() {
    // The official client sends compressed bodies with Transfer-Encoding: chunked; once
    // such a body is read to its end, the answer must not close the connection.
    let server = TestServer::realistic().await;
    let mut s = TcpStream::connect(server.addr()).await.unwrap();
    let head = format!(
        "POST /messageexchange/X26ABC1/outbox HTTP/1.1\r\nhost: x\r\nauthorization: {}\r\n\
         mex-to: X26ABC2\r\nmex-workflowid: TEST_WORKFLOW\r\ntransfer-encoding: chunked\r\n\r\n\
         5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n",
        fresh_token("X26ABC1")
    );
    s.write_all(head.as_bytes()).await.unwrap();
    let mut answer = Vec::new();
    let mut buf = [0u8; 4096];
    while !answer.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = tokio::time::timeout(Duration::from_secs(10), s.read(&mut buf))
            .await
            .expect("an answer")
            .unwrap();
        assert!(n > 0, "closed: {}", String::from_utf8_lossy(&answer));
        answer.extend_from_slice(&buf[..n]);
    }
    let text = String::from_utf8_lossy(&answer).to_ascii_lowercase();
    assert!(text.starts_with("http/1.1 202"), "{text}");
    assert!(!text.contains("connection: close"), "{text}");
    assert_eq!(inbox_len(&server).await, 1);
}

#[tokio::test]
async fn a_keep_alive_client_carries_on_after_a_refused_send() {
    // The same pooled connection (reqwest keeps it alive) is used for the next request.
    let server = TestServer::realistic().await;
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(1)
        .build()
        .unwrap();
    let r = http
        .post(server.url("/messageexchange/X26ABC1/outbox"))
        .header("authorization", fresh_token("X26ABC1"))
        .header("mex-to", "NOBODY")
        .header("mex-workflowid", "TEST_WORKFLOW")
        .body(vec![1u8; 300_000])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::from_u16(417).unwrap());
    assert_eq!(
        r.headers().get("connection").and_then(|v| v.to_str().ok()),
        Some("close")
    );
    let _ = r.bytes().await;
    for _ in 0..3 {
        let r = http
            .get(server.url("/messageexchange/X26ABC1/inbox"))
            .header("authorization", fresh_token("X26ABC1"))
            .send()
            .await
            .expect("the next request on the agent succeeds");
        assert_eq!(r.status(), StatusCode::OK);
    }
}

#[tokio::test]
async fn a_request_with_an_unread_body_is_refused_without_a_hundred_continue() {
    // A client that waits for 100-continue has not sent its body: the refusal must not
    // ask for it (hyper sends 100 Continue only when the body is read).
    let server = TestServer::realistic().await;
    let mut s = TcpStream::connect(server.addr()).await.unwrap();
    let head = "POST /messageexchange/X26ABC1/outbox HTTP/1.1\r\nhost: x\r\nauthorization: NHSMESH bad\r\n\
                expect: 100-continue\r\ncontent-length: 50000000\r\n\r\n";
    s.write_all(head.as_bytes()).await.unwrap();
    let mut answer = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut answer))
        .await
        .expect("answered without the body")
        .unwrap();
    let text = String::from_utf8_lossy(&answer).to_ascii_lowercase();
    assert!(text.starts_with("http/1.1 403"), "{text}");
    assert!(!text.contains("100 continue"), "{text}");
    assert!(text.contains("connection: close"), "{text}");
}

// ---------------------------------------------------------------------------------------
// Defect 7: header bytes that were not UTF-8 came back as U+FFFD.

async fn send_with_headers(
    server: &TestServer,
    headers: &[(&str, &[u8])],
    body: Vec<u8>,
) -> reqwest::Response {
    let mut r = server
        .http()
        .post(server.url("/messageexchange/X26ABC1/outbox"))
        .header("authorization", fresh_token("X26ABC1"))
        .header("accept", V2)
        .header("mex-to", "X26ABC2")
        .header("mex-workflowid", "TEST_WORKFLOW");
    for (name, value) in headers {
        r = r.header(
            *name,
            reqwest::header::HeaderValue::from_bytes(value).unwrap(),
        );
    }
    r.body(body).send().await.expect("request")
}

async fn message_id_of(r: reqwest::Response) -> String {
    assert_eq!(r.status(), StatusCode::ACCEPTED);
    r.json::<Value>().await.unwrap()["message_id"]
        .as_str()
        .unwrap()
        .to_string()
}

#[tokio::test]
async fn header_bytes_that_are_not_utf8_come_back_exactly_as_sent() {
    let server = TestServer::realistic().await;
    let subject: &[u8] = b"caf\xe9 \xff\xfe";
    let first = message_id_of(
        send_with_headers(
            &server,
            &[("mex-localid", b"\xe9"), ("mex-subject", subject)],
            b"one".to_vec(),
        )
        .await,
    )
    .await;
    let second = message_id_of(
        send_with_headers(
            &server,
            &[
                ("mex-localid", b"\xe8"),
                ("mex-subject", "Café ✓".as_bytes()),
            ],
            b"two".to_vec(),
        )
        .await,
    )
    .await;
    let recipient = server.client("X26ABC2");
    for (id, local, subject) in [
        (&first, &b"\xe9"[..], subject),
        (&second, &b"\xe8"[..], "Café ✓".as_bytes()),
    ] {
        let r = recipient
            .request(Method::GET, &recipient.mx(&format!("/inbox/{id}")))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::OK);
        assert_eq!(r.headers()["mex-localid"].as_bytes(), local);
        assert_eq!(r.headers()["mex-subject"].as_bytes(), subject);
    }
    // Two local ids that differ only in a byte that is not UTF-8 are two local ids.
    let sender = server.client("X26ABC1");
    for (encoded, want) in [("%E9", &first), ("%E8", &second)] {
        let r = sender
            .request(
                Method::GET,
                &sender.mx(&format!("/outbox/tracking/{encoded}")),
            )
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::OK, "{encoded}");
        let body: Value = r.json().await.unwrap();
        assert_eq!(&body["messageId"], want.as_str(), "{body}");
        // JSON cannot carry the byte: it shows as its Latin-1 character, as the NHS
        // sandbox shows it.
        let shown = if encoded == "%E9" { "é" } else { "è" };
        assert_eq!(body["localId"], shown, "{body}");
    }
}

// ---------------------------------------------------------------------------------------
// Defect 8: a body declared gzip that was not gzip was stored, then dropped the download.

#[tokio::test]
async fn a_body_declared_gzip_that_is_not_gzip_is_refused_at_upload() {
    use std::io::Write;
    let server = TestServer::realistic().await;
    let r = send_with_headers(
        &server,
        &[("content-encoding", b"gzip")],
        b"this is plain text, not gzip".to_vec(),
    )
    .await;
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    let body: Value = r.json().await.unwrap();
    assert!(
        body.to_string()
            .contains("Content-Encoding is gzip but the body is not gzip data"),
        "{body}"
    );
    assert_eq!(inbox_len(&server).await, 0, "nothing stored");
    // One byte is not a gzip header either.
    let r = send_with_headers(&server, &[("content-encoding", b"gzip")], vec![0x1f]).await;
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);

    // A later chunk is checked too.
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(b"part one").unwrap();
    let part_one = gz.finish().unwrap();
    let id = message_id_of(
        send_with_headers(
            &server,
            &[("content-encoding", b"gzip"), ("mex-chunk-range", b"1:2")],
            part_one,
        )
        .await,
    )
    .await;
    let client = server.client("X26ABC1");
    let r = client
        .request(Method::POST, &client.mx(&format!("/outbox/{id}/2")))
        .header("mex-chunk-range", "2:2")
        .header("content-encoding", "gzip")
        .body(b"plain again".to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    assert_eq!(
        inbox_len(&server).await,
        0,
        "the message is still incomplete"
    );

    // Real gzip is accepted and a client that does not take gzip gets it decoded.
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(b"hello gzip").unwrap();
    let id = message_id_of(
        send_with_headers(
            &server,
            &[("content-encoding", b"gzip")],
            gz.finish().unwrap(),
        )
        .await,
    )
    .await;
    let recipient = server.client("X26ABC2");
    let r = recipient
        .request(Method::GET, &recipient.mx(&format!("/inbox/{id}")))
        .header("accept-encoding", "identity")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.bytes().await.unwrap().as_ref(), b"hello gzip");
}

// ---------------------------------------------------------------------------------------
// Defect 9: a message whose payload was gone answered 503 forever.

fn files_under(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    if let Ok(entries) = std::fs::read_dir(dir) {
        for e in entries.flatten() {
            let p = e.path();
            if p.is_dir() {
                out.extend(files_under(&p));
            } else {
                out.push(p);
            }
        }
    }
    out
}

#[tokio::test]
async fn a_message_whose_payload_is_gone_becomes_undeliverable_with_a_report() {
    let server = TestServer::realistic().await;
    let sender = server.client("X26ABC1");
    let id = sender
        .send("X26ABC2", "TEST_WORKFLOW", vec![5u8; 100_000])
        .await
        .unwrap();
    let files = files_under(&server.dir.path().join("chunks"));
    assert_eq!(files.len(), 1, "{files:?}");
    std::fs::remove_file(&files[0]).unwrap();

    let recipient = server.client("X26ABC2");
    let r = recipient
        .request(Method::GET, &recipient.mx(&format!("/inbox/{id}")))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::GONE, "not a 503 to retry forever");
    // It left the inbox, so a client working through its inbox carries on.
    assert!(recipient.inbox().await.unwrap().is_empty());
    let again = recipient
        .request(Method::GET, &recipient.mx(&format!("/inbox/{id}")))
        .send()
        .await
        .unwrap();
    assert_eq!(again.status(), StatusCode::GONE);
    // The sender learns of it.
    let tracking = sender.track(&id).await.unwrap();
    assert_eq!(tracking["status"], "undeliverable", "{tracking}");
    let reports = sender.inbox().await.unwrap();
    assert_eq!(reports.len(), 1);
    let r = sender
        .request(Method::GET, &sender.mx(&format!("/inbox/{}", reports[0])))
        .send()
        .await
        .unwrap();
    assert_eq!(r.headers()["mex-messagetype"], "REPORT");
    assert_eq!(r.headers()["mex-linkedmsgid"], id.as_str());
    assert_eq!(
        r.headers()["mex-statusdescription"],
        "Message could not be delivered: its content was lost by the server"
    );
    assert!(mesh_server::metrics::render().contains("mesh_payloads_lost_total"));
}
