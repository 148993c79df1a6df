//! The ops listener: metrics and health off the MESH port, and the admin API an operator
//! uses to find a message, read its history, expire, redeliver or remove it, and watch
//! inbox depths. Every call needs the admin token and is audited.

mod common;

use common::TestServer;
use mesh_server::{DirectorySource, ServerConfig};
use mesh_store::StoreConfig;
use reqwest::StatusCode;
use serde_json::Value;

const TOKEN: &str = "an-admin-token-of-some-length";

async fn server() -> TestServer {
    let config = ServerConfig {
        admin_token: Some(TOKEN.into()),
        ..ServerConfig::default()
    };
    TestServer::start(config, StoreConfig::default()).await
}

async fn admin(
    ops: &str,
    method: reqwest::Method,
    path: &str,
    token: Option<&str>,
) -> (StatusCode, Value) {
    let mut r = reqwest::Client::new().request(method, format!("{ops}{path}"));
    if let Some(t) = token {
        r = r.bearer_auth(t);
    }
    let r = r.send().await.unwrap();
    let status = r.status();
    (status, r.json().await.unwrap_or(Value::Null))
}

#[tokio::test]
async fn metrics_and_health_are_on_the_ops_listener_only() {
    let s = server().await;
    let ops = s.start_ops().await;
    mesh_server::metrics::register_families();
    assert_eq!(reqwest::get(s.url("/metrics")).await.unwrap().status(), 404);
    let text = reqwest::get(format!("{ops}/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    for family in [
        "openspine_build_info",
        "mesh_messages{",
        "mesh_payloads_lost_total",
        "mesh_connections_stalled_total",
        "mesh_store_errors_total",
    ] {
        assert!(text.contains(family), "{family} missing from\n{text}");
    }
    let v: Value = reqwest::get(format!("{ops}/healthz"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(v["status"], "running");
    assert_eq!(
        reqwest::get(format!("{ops}/readyz"))
            .await
            .unwrap()
            .status(),
        200
    );
    // Latency is a histogram (buckets add up across nodes), not a summary.
    s.client("X26ABC1").handshake().await.unwrap();
    let text = reqwest::get(format!("{ops}/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        text.contains("mesh_http_request_duration_seconds_bucket"),
        "{text}"
    );
}

#[tokio::test]
async fn the_admin_api_needs_its_token_and_is_off_without_one() {
    let s = server().await;
    let ops = s.start_ops().await;
    let (status, body) = admin(&ops, reqwest::Method::GET, "/admin/v1/mailboxes", None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
    let (status, _) = admin(
        &ops,
        reqwest::Method::GET,
        "/admin/v1/mailboxes",
        Some("wrong"),
    )
    .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let (status, _) = admin(
        &ops,
        reqwest::Method::GET,
        "/admin/v1/mailboxes",
        Some(TOKEN),
    )
    .await;
    assert_eq!(status, StatusCode::OK);

    let off = TestServer::realistic().await;
    let ops = off.start_ops().await;
    let (status, body) = admin(
        &ops,
        reqwest::Method::GET,
        "/admin/v1/mailboxes",
        Some(TOKEN),
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert!(
        body["error"].as_str().unwrap().contains("admin API is off"),
        "{body}"
    );
}

#[tokio::test]
async fn an_operator_finds_a_message_reads_its_history_and_expires_it() {
    let s = server().await;
    let ops = s.start_ops().await;
    let sender = s.client("X26ABC1");
    let id = sender
        .send("X26ABC2", "TEST_WORKFLOW", "hello")
        .await
        .unwrap();
    let other = sender
        .send("X26ABC2", "TEST_WORKFLOW", "again")
        .await
        .unwrap();

    let (status, body) = admin(
        &ops,
        reqwest::Method::GET,
        &format!("/admin/v1/messages/{}", id.to_lowercase()),
        Some(TOKEN),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["message"]["message_id"], id.as_str());
    assert_eq!(body["message"]["status"], "accepted");
    assert_eq!(body["history"][0]["change"], "accepted");

    let (_, found) = admin(
        &ops,
        reqwest::Method::GET,
        "/admin/v1/messages?mailbox=x26abc2&status=accepted&limit=1",
        Some(TOKEN),
    )
    .await;
    assert_eq!(
        found["messages"][0]["message_id"],
        other.as_str(),
        "newest first"
    );
    assert_eq!(found["next"], other.as_str());
    let (status, bad) = admin(
        &ops,
        reqwest::Method::GET,
        "/admin/v1/messages?status=lost",
        Some(TOKEN),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{bad}");

    let (_, depth) = admin(
        &ops,
        reqwest::Method::GET,
        "/admin/v1/mailboxes",
        Some(TOKEN),
    )
    .await;
    let x2 = depth["mailboxes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["mailbox_id"] == "X26ABC2")
        .unwrap();
    assert_eq!(x2["waiting"], 2);
    assert!(x2["oldest_waiting_age_secs"].as_i64().unwrap() >= 0);
    let (_, top) = admin(
        &ops,
        reqwest::Method::GET,
        "/admin/v1/inboxes?top=1",
        Some(TOKEN),
    )
    .await;
    assert_eq!(top["inboxes"][0]["mailbox_id"], "X26ABC2");

    let (status, done) = admin(
        &ops,
        reqwest::Method::POST,
        &format!("/admin/v1/messages/{id}/expire"),
        Some(TOKEN),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{done}");
    assert_eq!(done["reports"], 1);
    // The recipient no longer has it; the sender has its report.
    let recipient = s.client("X26ABC2");
    assert_eq!(
        recipient.inbox().await.unwrap(),
        std::slice::from_ref(&other)
    );
    let reports = sender.inbox().await.unwrap();
    assert_eq!(reports.len(), 1);
    let (status, again) = admin(
        &ops,
        reqwest::Method::POST,
        &format!("/admin/v1/messages/{id}/expire"),
        Some(TOKEN),
    )
    .await;
    assert_eq!(status, StatusCode::CONFLICT, "{again}");
    let (_, history) = admin(
        &ops,
        reqwest::Method::GET,
        &format!("/admin/v1/messages/{id}"),
        Some(TOKEN),
    )
    .await;
    let changes: Vec<&str> = history["history"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["change"].as_str().unwrap())
        .collect();
    assert_eq!(changes, ["accepted", "expired"]);

    // Redelivered, it is back; removed, it is gone but its history remains.
    let (status, _) = admin(
        &ops,
        reqwest::Method::POST,
        &format!("/admin/v1/messages/{id}/redeliver"),
        Some(TOKEN),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        recipient.inbox().await.unwrap(),
        [other.clone(), id.clone()]
    );
    let (status, gone) = admin(
        &ops,
        reqwest::Method::DELETE,
        &format!("/admin/v1/messages/{id}"),
        Some(TOKEN),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{gone}");
    assert_eq!(
        recipient.inbox().await.unwrap(),
        std::slice::from_ref(&other)
    );
    let (status, after) = admin(
        &ops,
        reqwest::Method::GET,
        &format!("/admin/v1/messages/{id}"),
        Some(TOKEN),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert!(after["message"].is_null());
    assert_eq!(
        after["history"].as_array().unwrap().last().unwrap()["change"],
        "removed"
    );
    let (status, _) = admin(
        &ops,
        reqwest::Method::GET,
        "/admin/v1/messages/20200101000000000000_NOPE00",
        Some(TOKEN),
    )
    .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn reload_picks_up_a_changed_mailbox_file_and_reports_its_warnings() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("mailboxes.jsonl");
    std::fs::write(&file, "{\"mailbox_id\":\"A1\",\"mailbox_name\":\"A\"}\n").unwrap();
    let wf = dir.path().join("workflows.jsonl");
    std::fs::write(&wf, "").unwrap();
    let source = DirectorySource {
        mailboxes: Some(file.clone()),
        workflows: Some(wf.clone()),
        demo: false,
    };
    let config = ServerConfig {
        admin_token: Some(TOKEN.into()),
        ..ServerConfig::default()
    };
    let store = mesh_store::Store::open_embedded(&dir.path().join("data"), &StoreConfig::default())
        .await
        .unwrap();
    let s =
        TestServer::serve_store(tempfile::tempdir().unwrap(), config, store, source, None).await;
    let ops = s.start_ops().await;
    std::fs::write(
        &file,
        "{\"mailbox_id\":\"A1\",\"mailbox_name\":\"A\"}\n{\"mailbox_id\":\"B1\",\"mailbox_name\":\"B\"}\n",
    )
    .unwrap();
    std::fs::write(
        &wf,
        "{\"workflow_id\":\"W\",\"senders\":[\"A1\"],\"receivers\":[\"C9\"]}\n",
    )
    .unwrap();
    let (status, body) = admin(&ops, reqwest::Method::POST, "/admin/v1/reload", Some(TOKEN)).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["mailboxes"], 2);
    assert!(
        body["warnings"][0].as_str().unwrap().contains("C9"),
        "{body}"
    );
    // A broken file is refused and the running directory stays.
    std::fs::write(
        &file,
        "{\"mailbox_id\":\"A1\",\"mailbox_name\":\"A\",\"pasword\":\"x\"}\n",
    )
    .unwrap();
    let (status, body) = admin(&ops, reqwest::Method::POST, "/admin/v1/reload", Some(TOKEN)).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    let (_, list) = admin(
        &ops,
        reqwest::Method::GET,
        "/admin/v1/mailboxes",
        Some(TOKEN),
    )
    .await;
    assert_eq!(list["mailboxes"].as_array().unwrap().len(), 2);
}
