//! The rich inbox and outbox views (API.md 3.15) over HTTP: newest first, acknowledged
//! messages included, paging with `continue_from`, the page-size rules, `start_time`.

mod common;

use common::TestServer;
use mesh_client::ACCEPT_V2;
use reqwest::Method;
use serde_json::Value;
use std::collections::HashSet;

async fn get(c: &mesh_client::MeshClient, path: &str) -> reqwest::Response {
    c.request_accepting(Method::GET, path, ACCEPT_V2)
        .send()
        .await
        .unwrap()
}

#[tokio::test]
async fn the_rich_inbox_pages_newest_first_through_every_message() {
    let s = TestServer::realistic().await;
    let (sender, recipient) = (s.client("X26ABC1"), s.client("X26ABC2"));
    let mut sent = Vec::new();
    for i in 0..15 {
        sent.push(
            sender
                .send("X26ABC2", "TEST_WORKFLOW", format!("m{i}"))
                .await
                .unwrap(),
        );
    }
    for id in &sent[..3] {
        recipient.acknowledge(id).await.unwrap();
    }
    let first: Value = get(&recipient, &recipient.mx("/inbox/rich?max_results=10"))
        .await
        .json()
        .await
        .unwrap();
    let page: Vec<String> = first["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["message_id"].as_str().unwrap().to_string())
        .collect();
    let newest: Vec<String> = sent.iter().rev().take(10).cloned().collect();
    assert_eq!(page, newest);
    let next = first["links"]["next"].as_str().expect("a next link");
    let second: Value = get(&recipient, next).await.json().await.unwrap();
    let rest: Vec<&str> = second["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["message_id"].as_str().unwrap())
        .collect();
    assert_eq!(rest.len(), 5);
    assert!(second["links"].get("next").is_none());
    let all: HashSet<&str> = page.iter().map(String::as_str).chain(rest).collect();
    assert_eq!(all.len(), 15, "every message once, acknowledged ones too");
    let acked = &second["messages"][4];
    assert_eq!(acked["message_id"].as_str(), Some(sent[0].as_str()));
    assert_eq!(acked["status"], "acknowledged");
    assert_eq!(acked["sender"], "X26ABC1");
    assert_eq!(acked["message_type"], "DATA");
    assert!(first["valid_at"].is_string());
}

#[tokio::test]
async fn the_rich_views_refuse_bad_paging_and_filter_by_start_time() {
    let s = TestServer::realistic().await;
    let sender = s.client("X26ABC1");
    sender.send("X26ABC2", "TEST_WORKFLOW", "x").await.unwrap();
    // The outbox takes 10 to 5000; the inbox 1 to 2000.
    let r = get(&sender, &sender.mx("/outbox/rich?max_results=5")).await;
    assert_eq!(r.status(), 400);
    let r = get(&sender, &sender.mx("/inbox/rich?max_results=2001")).await;
    assert_eq!(r.status(), 400);
    let r = get(&sender, &sender.mx("/outbox/rich?max_results=5000")).await;
    assert_eq!(r.status(), 200);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["messages"].as_array().unwrap().len(), 1);
    assert!(body["links"]["self"]
        .as_str()
        .unwrap()
        .contains("max_results=100"));
    let r = get(
        &sender,
        &sender.mx("/outbox/rich?start_time=next%20tuesday"),
    )
    .await;
    assert_eq!(r.status(), 400);
    let r = get(
        &sender,
        &sender.mx("/outbox/rich?continue_from=nonsense-token-xxxxxxxx"),
    )
    .await;
    assert_eq!(r.status(), 400);
    let later: Value = get(
        &sender,
        &sender.mx("/outbox/rich?start_time=2999-01-01T00:00:00Z"),
    )
    .await
    .json()
    .await
    .unwrap();
    assert!(later["messages"].as_array().unwrap().is_empty());
}

#[tokio::test]
async fn another_mailbox_cannot_read_a_rich_view() {
    let s = TestServer::realistic().await;
    let intruder = s.client("X26ABC3");
    let r = intruder
        .request_accepting(
            Method::GET,
            "/messageexchange/X26ABC1/inbox/rich",
            ACCEPT_V2,
        )
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
}
