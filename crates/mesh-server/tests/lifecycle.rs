//! The message lifecycle as MESH users see it over HTTP, with the server's clock moved on
//! by days in an instant: expiry and the non-delivery report in v1 and v2 (inbox,
//! download, HEAD, tracking, rich views), expiry counted from availability, abandoned
//! uploads, deactivated mailboxes, retention, and the sandbox's clock and sweep calls.

mod common;

use chrono::{TimeDelta, Utc};
use common::TestServer;
use mesh_client::{MeshClient, ACCEPT_V1, ACCEPT_V2};
use mesh_protocol::{Clock, ManualClock};
use mesh_server::lifecycle::sweep;
use mesh_server::{DirectorySource, ServerConfig};
use reqwest::Method;
use serde_json::{json, Value};
use std::sync::Arc;

/// The realistic server, less the token clock check (the tests' tokens carry real time
/// while the server's clock is days ahead).
async fn server() -> (TestServer, Arc<ManualClock>) {
    let clock = Arc::new(ManualClock::new(Utc::now()));
    let config = ServerConfig {
        clock_window: None,
        ..ServerConfig::default()
    };
    let demo = DirectorySource {
        demo: true,
        ..Default::default()
    };
    (
        TestServer::with_clock(config, clock.clone(), demo).await,
        clock,
    )
}

async fn send_with(c: &MeshClient, to: &str, subject: &str, local_id: &str) -> String {
    let r = c
        .request(Method::POST, &c.mx("/outbox"))
        .header("mex-to", to)
        .header("mex-workflowid", "TEST_WORKFLOW")
        .header("mex-subject", subject)
        .header("mex-localid", local_id)
        .header("content-type", "text/plain")
        .body("not collected")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
    r.json::<Value>().await.unwrap()["message_id"]
        .as_str()
        .unwrap()
        .to_string()
}

fn header(r: &reqwest::Response, name: &str) -> Option<String> {
    r.headers()
        .get(name)
        .map(|v| v.to_str().unwrap().to_string())
}

async fn get(c: &MeshClient, path: &str, accept: &str) -> reqwest::Response {
    c.request_accepting(Method::GET, &c.mx(path), accept)
        .header("accept-encoding", "identity")
        .send()
        .await
        .unwrap()
}

#[tokio::test]
async fn an_uncollected_message_expires_and_its_sender_gets_one_report_in_both_versions() {
    let (s, clock) = server().await;
    let (sender, recipient) = (s.client("X26ABC1"), s.client("X26ABC2"));
    let id = send_with(&sender, "X26ABC2", "quarterly return", "local-42").await;

    clock.advance(TimeDelta::days(5) - TimeDelta::seconds(1));
    assert_eq!(sweep(&s.state).await.unwrap().expired, 0, "not due yet");
    assert_eq!(recipient.inbox().await.unwrap(), vec![id.clone()]);

    clock.advance(TimeDelta::seconds(2));
    let done = sweep(&s.state).await.unwrap();
    assert_eq!((done.expired, done.reports), (1, 1));
    assert_eq!(sweep(&s.state).await.unwrap().reports, 0, "one report only");

    // The recipient: gone from the inbox, 410 on download and HEAD.
    assert!(recipient.inbox().await.unwrap().is_empty());
    for accept in [ACCEPT_V1, ACCEPT_V2] {
        let r = get(&recipient, &format!("/inbox/{id}"), accept).await;
        assert_eq!(r.status(), 410, "{accept}");
    }
    let head = recipient
        .request(Method::HEAD, &recipient.mx(&format!("/inbox/{id}")))
        .send()
        .await
        .unwrap();
    assert_eq!(head.status(), 410);

    // The sender: the original's HEAD and tracking say why.
    let head = sender
        .request(Method::HEAD, &sender.mx(&format!("/inbox/{id}")))
        .send()
        .await
        .unwrap();
    assert_eq!(head.status(), 200);
    assert_eq!(header(&head, "mex-statussuccess").as_deref(), Some("ERROR"));
    assert_eq!(header(&head, "mex-statuscode").as_deref(), Some("14"));
    let v2 = sender.track(&id).await.unwrap();
    assert_eq!(v2["status"], "undeliverable");
    assert_eq!(v2["status_success"], false);
    let v1: Value = get(
        &sender,
        &format!("/outbox/tracking?messageID={id}"),
        ACCEPT_V1,
    )
    .await
    .json()
    .await
    .unwrap();
    assert_eq!(v1["status"], "Undeliverable");
    assert_eq!(v1["statusSuccess"], "ERROR");
    assert_eq!(
        v1["failureDiagnostic"],
        "Message not collected by recipient after 5 days"
    );

    // The report, listed and downloaded in both versions.
    let listed = sender.inbox().await.unwrap();
    assert_eq!(listed.len(), 1);
    let ndr = &listed[0];
    let v1_list: Value = get(&sender, "/inbox", ACCEPT_V1)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(v1_list, json!({ "messages": [ndr] }));
    for accept in [ACCEPT_V1, ACCEPT_V2] {
        let r = get(&sender, &format!("/inbox/{ndr}"), accept).await;
        assert_eq!(r.status(), 200, "{accept}");
        let want = [
            ("mex-messagetype", "REPORT"),
            ("mex-to", "X26ABC1"),
            ("mex-workflowid", "TEST_WORKFLOW"),
            ("mex-localid", "local-42"),
            ("mex-subject", "quarterly return"),
            ("mex-linkedmsgid", id.as_str()),
            ("mex-statussuccess", "ERROR"),
            ("mex-statuscode", "14"),
            ("mex-statusevent", "SEND"),
            (
                "mex-statusdescription",
                "Message not collected by recipient after 5 days",
            ),
            ("mex-chunk-range", "1:0"),
            ("mex-total-chunks", "0"),
            ("mex-messageid", ndr.as_str()),
            ("content-length", "0"),
        ];
        for (name, value) in want {
            assert_eq!(header(&r, name).as_deref(), Some(value), "{accept} {name}");
        }
        assert_eq!(header(&r, "mex-from"), None, "the central system has no id");
        assert!(header(&r, "content-encoding").is_none());
        assert!(r.bytes().await.unwrap().is_empty());
    }

    // The rich outbox shows the original as failed; the rich inbox shows the report.
    let rich: Value = get(&sender, "/outbox/rich", ACCEPT_V2)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(rich["messages"][0]["message_id"], json!(id));
    assert_eq!(rich["messages"][0]["status"], "undeliverable");
    assert_eq!(rich["messages"][0]["status_code"], "14");
    let rich: Value = get(&sender, "/inbox/rich", ACCEPT_V2)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(rich["messages"][0]["message_type"], "REPORT");
    assert_eq!(rich["messages"][0]["status_code"], "14");

    sender.acknowledge(ndr).await.unwrap();
    assert!(sender.inbox().await.unwrap().is_empty());
    let ops = s.start_ops().await;
    let metrics = s
        .http()
        .get(format!("{ops}/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains("mesh_lifecycle_expired_total"),
        "{metrics}"
    );
    assert!(metrics.contains("mesh_lifecycle_backlog"));

    // 30 days after their last change both are deleted; tracking then says 404.
    clock.advance(TimeDelta::days(30) + TimeDelta::seconds(1));
    let purged = sweep(&s.state).await.unwrap();
    assert_eq!(purged.purged, 2, "the original and its acknowledged report");
    let r = get(
        &sender,
        &format!("/outbox/tracking?messageID={id}"),
        ACCEPT_V2,
    )
    .await;
    assert_eq!(r.status(), 404);
}

#[tokio::test]
async fn an_acknowledged_message_gets_no_report() {
    let (s, clock) = server().await;
    let (sender, recipient) = (s.client("X26ABC1"), s.client("X26ABC2"));
    let id = send_with(&sender, "X26ABC2", "s", "l").await;
    recipient.download(&id).await.unwrap();
    recipient.acknowledge(&id).await.unwrap();
    clock.advance(TimeDelta::days(6));
    assert_eq!(sweep(&s.state).await.unwrap().reports, 0);
    assert_eq!(sender.track(&id).await.unwrap()["status"], "acknowledged");
    assert!(sender.inbox().await.unwrap().is_empty());
}

#[tokio::test]
async fn expiry_counts_from_when_a_chunked_message_became_available() {
    let (s, clock) = server().await;
    let (sender, recipient) = (s.client("X26ABC1"), s.client("X26ABC2"));
    let id = sender
        .send_chunk1("X26ABC2", "TEST_WORKFLOW", "part one", 2)
        .await
        .unwrap();
    clock.advance(TimeDelta::days(3));
    sender.send_chunk(&id, 2, 2, "part two").await.unwrap();
    assert_eq!(recipient.inbox().await.unwrap(), vec![id.clone()]);
    clock.advance(TimeDelta::days(4));
    assert_eq!(
        sweep(&s.state).await.unwrap().expired,
        0,
        "seven days after the first chunk, four after it became available"
    );
    clock.advance(TimeDelta::days(1) + TimeDelta::seconds(1));
    assert_eq!(sweep(&s.state).await.unwrap().expired, 1);
}

#[tokio::test]
async fn an_upload_never_finished_is_removed() {
    let (s, clock) = server().await;
    let sender = s.client("X26ABC1");
    let id = sender
        .send_chunk1("X26ABC2", "TEST_WORKFLOW", "only part one", 3)
        .await
        .unwrap();
    assert_eq!(sender.track(&id).await.unwrap()["status"], "uploading");
    clock.advance(TimeDelta::hours(23));
    assert_eq!(sweep(&s.state).await.unwrap().abandoned, 0);
    clock.advance(TimeDelta::hours(1) + TimeDelta::seconds(1));
    assert_eq!(sweep(&s.state).await.unwrap().abandoned, 1);
    let r = get(
        &sender,
        &format!("/outbox/tracking?messageID={id}"),
        ACCEPT_V2,
    )
    .await;
    assert_eq!(r.status(), 404);
    let late = sender.send_chunk(&id, 2, 3, "too late").await;
    assert!(late.is_err(), "the upload is gone");
}

#[tokio::test]
async fn deactivating_a_mailbox_reports_its_waiting_messages_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("mailboxes.jsonl");
    let mailboxes = |active: bool| {
        format!(
            "{}\n{}\n",
            json!({"mailbox_id": "ALICE", "mailbox_name": "Alice", "password": "password"}),
            json!({"mailbox_id": "BOB", "mailbox_name": "Bob", "password": "password", "active": active})
        )
    };
    std::fs::write(&file, mailboxes(true)).unwrap();
    let clock = Arc::new(ManualClock::new(Utc::now()));
    let source = DirectorySource {
        mailboxes: Some(file.clone()),
        ..Default::default()
    };
    let s = TestServer::with_clock(ServerConfig::default().sandbox(), clock, source).await;
    let alice = s.client("ALICE");
    let id = send_with(&alice, "BOB", "s", "l").await;
    assert_eq!(sweep(&s.state).await.unwrap().expired, 0);

    std::fs::write(&file, mailboxes(false)).unwrap();
    s.state.reload_directory().unwrap();
    let done = sweep(&s.state).await.unwrap();
    assert_eq!((done.expired, done.reports), (1, 1));
    let ndr = alice.inbox().await.unwrap().pop().expect("a report");
    let r = get(&alice, &format!("/inbox/{ndr}"), ACCEPT_V2).await;
    assert_eq!(
        header(&r, "mex-statusdescription").as_deref(),
        Some("Message was not collected as the mailbox is deactivated")
    );
    assert_eq!(header(&r, "mex-linkedmsgid"), Some(id));
}

#[tokio::test]
async fn the_sandbox_clock_and_sweep_calls_make_five_days_pass() {
    let s = TestServer::sandbox().await;
    let sender = s.client("X26ABC1");
    let id = send_with(&sender, "X26ABC2", "s", "l").await;
    let http = s.http();
    let r = http
        .post(s.url("/messageexchange/admin/clock"))
        .json(&json!({"advance_secs": 432_001}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let now: Value = r.json().await.unwrap();
    assert!(now["now"].as_str().unwrap() > Utc::now().to_rfc3339().as_str());
    let r: Value = http
        .post(s.url("/admin/lifecycle"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(r["expired"], 1);
    assert_eq!(r["reports"], 1);
    assert_eq!(sender.track(&id).await.unwrap()["status"], "undeliverable");

    // Backwards or absurd moves are refused; reset brings the clock back.
    let r = http
        .post(s.url("/admin/clock"))
        .json(&json!({"advance_secs": -5}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    http.delete(s.url("/admin/reset")).send().await.unwrap();
    assert!((s.state.now() - Utc::now()).abs() < TimeDelta::seconds(5));
}

#[tokio::test]
async fn the_clock_and_sweep_calls_are_sandbox_only() {
    let s = TestServer::realistic().await;
    let http = s.http();
    let r = http
        .post(s.url("/admin/clock"))
        .json(&json!({"advance_secs": 10}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    let r = http.post(s.url("/admin/lifecycle")).send().await.unwrap();
    assert_eq!(r.status(), 403);
    assert!((s.state.now() - Utc::now()).abs() < TimeDelta::seconds(5));
}

#[tokio::test]
async fn a_download_is_logged_before_the_acknowledgement_that_follows_it() {
    let (s, _clock) = server().await;
    let (sender, recipient) = (s.client("X26ABC1"), s.client("X26ABC2"));
    for _ in 0..20 {
        let id = send_with(&sender, "X26ABC2", "s", "l").await;
        recipient.download(&id).await.unwrap();
        recipient.acknowledge(&id).await.unwrap();
        let log = s.state.store().meta.log_after(0, 10_000).await.unwrap();
        let changes: Vec<&str> = log
            .iter()
            .filter(|e| e.message_id == id)
            .map(|e| e.change.as_str())
            .collect();
        assert_eq!(changes, ["accepted", "downloaded", "acknowledged"]);
    }
}

#[tokio::test]
async fn with_expiry_off_nothing_expires_and_the_sweep_still_succeeds() {
    let clock = Arc::new(ManualClock::new(Utc::now()));
    let mut config = ServerConfig {
        clock_window: None,
        ..ServerConfig::default()
    };
    config.lifecycle.inbox_expiry = None;
    let demo = DirectorySource {
        demo: true,
        ..Default::default()
    };
    let s = TestServer::with_clock(config, clock.clone(), demo).await;
    let sender = s.client("X26ABC1");
    let id = send_with(&sender, "X26ABC2", "s", "l").await;
    clock.advance(TimeDelta::days(60));
    let done = sweep(&s.state).await.unwrap();
    assert_eq!((done.expired, done.backlog), (0, 0));
    assert_eq!(sender.track(&id).await.unwrap()["status"], "accepted");
}
