//! What a MESH user sees, over real HTTP: ordering, paging, chunking, compression,
//! metadata, tracking, lookups, reports, restarts.

mod common;

use common::TestServer;
use mesh_client::{MeshClient, ACCEPT_V1, ACCEPT_V2};
use reqwest::Method;
use serde_json::{json, Value};
use std::io::{Read, Write};

fn gzip(data: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    e.write_all(data).unwrap();
    e.finish().unwrap()
}

fn gunzip(data: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    flate2::read::MultiGzDecoder::new(data)
        .read_to_end(&mut out)
        .unwrap();
    out
}

async fn send_many(c: &MeshClient, to: &str, wf: &str, n: usize) -> Vec<String> {
    let mut ids = Vec::new();
    for i in 0..n {
        ids.push(c.send(to, wf, format!("message {i}")).await.unwrap());
    }
    ids
}

#[tokio::test]
async fn handshake_answers_in_both_versions() {
    let s = TestServer::realistic().await;
    let c = s.client("X26ABC1");
    c.handshake().await.unwrap();
    let r = c
        .request_accepting(Method::GET, "/messageexchange/x26abc1", ACCEPT_V1)
        .header("mex-clientversion", "t")
        .header("mex-osname", "t")
        .header("mex-osversion", "t")
        .send()
        .await
        .unwrap();
    // A lower-case path is upper-cased; the token's mailbox is not.
    assert_eq!(r.status(), 200);
    assert_eq!(
        r.json::<Value>().await.unwrap(),
        json!({"mailboxId": "X26ABC1"})
    );
}

#[tokio::test]
async fn the_undocumented_update_call_authenticates_and_does_nothing() {
    let s = TestServer::realistic().await;
    let c = s.client("X26ABC1");
    let r = c
        .request(Method::POST, &c.mx("/update"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert!(r.bytes().await.unwrap().is_empty());
    let r = s
        .http()
        .post(s.url("/messageexchange/X26ABC1/update"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
}

#[tokio::test]
async fn inbox_lists_oldest_first_and_pages_in_both_versions() {
    let s = TestServer::realistic().await;
    let sent = send_many(&s.client("X26ABC1"), "X26ABC2", "TEST_WORKFLOW", 25).await;
    let r = s.client("X26ABC2");
    // v2: links.next is root-relative and carries an opaque token.
    let (page, next) = r
        .inbox_page(Some(&r.mx("/inbox?max_results=10")))
        .await
        .unwrap();
    assert_eq!(page, sent[..10]);
    let next = next.expect("a next link");
    assert!(next.starts_with("/messageexchange/X26ABC2/inbox?max_results=10&continue_from="));
    let (page2, _) = r.inbox_page(Some(&next)).await.unwrap();
    assert_eq!(page2, sent[10..20]);
    assert_eq!(r.inbox().await.unwrap(), sent);
    // v1: resume after the last id of the previous page.
    let get_v1 = |q: String| {
        let r = &r;
        async move {
            let v: Value = r
                .request_accepting(Method::GET, &r.mx(&format!("/inbox?{q}")), ACCEPT_V1)
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            v
        }
    };
    let v1 = get_v1("max_results=10".into()).await;
    assert_eq!(v1, json!({"messages": sent[..10]}));
    let v1 = get_v1(format!("max_results=10&continue_from={}", sent[9])).await;
    assert_eq!(v1["messages"], json!(sent[10..20]));
    // v2 body details.
    let v2: Value = r
        .request(Method::GET, &r.mx("/inbox"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(v2["approx_inbox_count"], 25);
    assert_eq!(
        v2["links"],
        json!({"self": "/messageexchange/X26ABC2/inbox"})
    );
}

#[tokio::test]
async fn workflow_filter_applies_before_paging() {
    let s = TestServer::sandbox().await;
    let c = s.client("X26ABC1");
    let mut a = Vec::new();
    for i in 0..12 {
        let wf = if i % 2 == 0 { "WF_A" } else { "WF_B" };
        let id = c.send("X26ABC2", wf, "x").await.unwrap();
        if wf == "WF_A" {
            a.push(id);
        }
    }
    let r = s.client("X26ABC2");
    let path = r.mx("/inbox?workflow_filter=WF_A&max_results=10");
    let v: Value = r
        .request(Method::GET, &path)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(v["messages"], json!(a));
    assert_eq!(v["approx_inbox_count"], 12, "the count is unfiltered");
    assert_eq!(
        v["links"]["self"],
        "/messageexchange/X26ABC2/inbox?max_results=10&workflow_filter=WF_A"
    );
    let v: Value = r
        .request(Method::GET, &r.mx("/inbox?workflow_filter=%21WF_A"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(v["messages"].as_array().unwrap().len(), 6);
}

#[tokio::test]
async fn a_message_round_trips_with_its_metadata() {
    let s = TestServer::realistic().await;
    let c = s.client("X26ABC1");
    let r = c
        .request(Method::POST, &c.mx("/outbox"))
        .header("mex-to", "x26abc2")
        .header("mex-workflowid", "TEST_WORKFLOW")
        .header("mex-filename", "f.txt")
        .header("mex-subject", "subj")
        .header("mex-localid", "loc1")
        .header("mex-partnerid", "p1")
        .header("mex-content-encrypted", "Y")
        .header("mex-content-checksum", "md5:abc")
        .header("content-type", "text/plain")
        .body("hello world")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
    let id = r.json::<Value>().await.unwrap()["message_id"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(id.len(), 27, "real-service id format: {id}");
    let rc = s.client("X26ABC2");
    let chunk = rc.download_chunk(&id, 1).await.unwrap();
    assert_eq!(chunk.status, 200);
    assert_eq!(&chunk.body[..], b"hello world");
    let h = |n: &str| {
        chunk
            .headers
            .get(n)
            .map(|v| v.to_str().unwrap().to_string())
    };
    assert_eq!(h("mex-from").as_deref(), Some("X26ABC1"));
    assert_eq!(h("mex-to").as_deref(), Some("X26ABC2"));
    assert_eq!(h("mex-workflowid").as_deref(), Some("TEST_WORKFLOW"));
    assert_eq!(h("mex-chunk-range").as_deref(), Some("1:1"));
    assert_eq!(h("mex-total-chunks").as_deref(), Some("1"));
    assert_eq!(h("mex-filename").as_deref(), Some("f.txt"));
    assert_eq!(h("mex-subject").as_deref(), Some("subj"));
    assert_eq!(h("mex-localid").as_deref(), Some("loc1"));
    assert_eq!(h("mex-partnerid").as_deref(), Some("p1"));
    assert_eq!(h("mex-content-encrypted").as_deref(), Some("Y"));
    assert_eq!(h("mex-content-checksum").as_deref(), Some("md5:abc"));
    assert_eq!(h("mex-content-type").as_deref(), Some("text/plain"));
    assert_eq!(h("content-type").as_deref(), Some("text/plain"));
    assert_eq!(h("mex-messagetype").as_deref(), Some("DATA"));
    assert_eq!(h("mex-messageid").as_deref(), Some(id.as_str()));
    assert_eq!(h("mex-statussuccess").as_deref(), Some("SUCCESS"));
    assert_eq!(h("mex-statuscode").as_deref(), Some("00"));
    assert!(h("last-modified").unwrap().ends_with("GMT"));
    assert_eq!(h("mex-content-compressed"), None);
    // HEAD gives the same headers and no body.
    let head = rc
        .request(Method::HEAD, &rc.mx(&format!("/inbox/{id}")))
        .send()
        .await
        .unwrap();
    assert_eq!(head.status(), 200);
    assert_eq!(head.headers()["mex-subject"], "subj");
    assert_eq!(head.headers()["content-length"], "0");
}

#[tokio::test]
async fn chunked_message_is_invisible_until_every_chunk_arrives() {
    let s = TestServer::realistic().await;
    let c = s.client("X26ABC1");
    let r = s.client("X26ABC2");
    let id = c
        .send_chunk1("X26ABC2", "TEST_WORKFLOW", "aaa", 3)
        .await
        .unwrap();
    assert!(r.inbox().await.unwrap().is_empty());
    assert_eq!(c.track(&id).await.unwrap()["status"], "uploading");
    // The last chunk number first: still a gap, so still uploading (API.md 11 #8).
    c.send_chunk(&id, 3, 3, "ccc").await.unwrap();
    assert!(r.inbox().await.unwrap().is_empty());
    // A retried chunk replaces the earlier upload.
    c.send_chunk(&id, 2, 3, "xxx").await.unwrap();
    assert_eq!(r.inbox().await.unwrap(), std::slice::from_ref(&id));
    let first = r.download_chunk(&id, 1).await.unwrap();
    assert_eq!(first.status, 206);
    assert_eq!(first.range(), Some((1, 3)));
    let last = r.download_chunk(&id, 3).await.unwrap();
    assert_eq!(last.status, 200);
    assert_eq!(r.download(&id).await.unwrap(), b"aaaxxxccc");
    let track = c.track(&id).await.unwrap();
    assert_eq!(track["status"], "accepted");
}

#[tokio::test]
async fn retried_chunk_while_uploading_overwrites_it() {
    let s = TestServer::realistic().await;
    let c = s.client("X26ABC1");
    let id = c
        .send_chunk1("X26ABC2", "TEST_WORKFLOW", "a", 3)
        .await
        .unwrap();
    c.send_chunk(&id, 2, 3, "first try").await.unwrap();
    c.send_chunk(&id, 2, 3, "b").await.unwrap();
    c.send_chunk(&id, 3, 3, "c").await.unwrap();
    assert_eq!(s.client("X26ABC2").download(&id).await.unwrap(), b"abc");
}

#[tokio::test]
async fn large_chunks_stream_through_the_blob_store() {
    let s = TestServer::realistic().await;
    let c = s.client("X26ABC1");
    let big: Vec<u8> = (0..3_000_000u32).map(|i| (i * 31 % 251) as u8).collect();
    let id = c
        .send_chunk1("X26ABC2", "TEST_WORKFLOW", big.clone(), 2)
        .await
        .unwrap();
    c.send_chunk(&id, 2, 2, big.clone()).await.unwrap();
    let got = s.client("X26ABC2").download(&id).await.unwrap();
    assert_eq!(got.len(), big.len() * 2);
    assert!(got[..big.len()] == big[..] && got[big.len()..] == big[..]);
    let files = walk(&s.dir.path().join("chunks"));
    assert_eq!(files, 2, "each large chunk is one file");
}

fn walk(dir: &std::path::Path) -> usize {
    std::fs::read_dir(dir)
        .map(|rd| {
            rd.flatten()
                .map(|e| {
                    if e.path().is_dir() {
                        walk(&e.path())
                    } else {
                        1
                    }
                })
                .sum()
        })
        .unwrap_or(0)
}

#[tokio::test]
async fn gzip_is_stored_as_sent_and_negotiated_on_download() {
    let s = TestServer::realistic().await;
    let c = s.client("X26ABC1");
    let (p1, p2) = (
        b"first half of the text, ".to_vec(),
        b"and the second half.".to_vec(),
    );
    let r = c
        .request(Method::POST, &c.mx("/outbox"))
        .header("mex-to", "X26ABC2")
        .header("mex-workflowid", "TEST_WORKFLOW")
        .header("mex-chunk-range", "1:2")
        .header("content-encoding", "gzip")
        .body(gzip(&p1))
        .send()
        .await
        .unwrap();
    let id = r.json::<Value>().await.unwrap()["message_id"]
        .as_str()
        .unwrap()
        .to_string();
    let r2 = c
        .request(Method::POST, &c.mx(&format!("/outbox/{id}/2")))
        .header("mex-chunk-range", "2:2")
        .header("content-encoding", "gzip")
        .body(gzip(&p2))
        .send()
        .await
        .unwrap();
    assert_eq!(r2.status(), 202);
    let rc = s.client("X26ABC2");
    // A client that accepts gzip gets the stored gzip members.
    let g = rc
        .request(Method::GET, &rc.mx(&format!("/inbox/{id}")))
        .header("accept-encoding", "gzip")
        .send()
        .await
        .unwrap();
    assert_eq!(g.status(), 206);
    assert_eq!(g.headers()["content-encoding"], "gzip");
    assert_eq!(g.headers()["mex-content-compressed"], "Y");
    // reqwest here has no gzip feature, so the bytes arrive as sent.
    assert_eq!(gunzip(&g.bytes().await.unwrap()), p1);
    // One that does not gets them decoded.
    let both = rc.download(&id).await.unwrap();
    assert_eq!(both, [p1.clone(), p2].concat());
    // Tracking counts stored (compressed) bytes.
    let v1: Value = c
        .request_accepting(Method::GET, &c.mx("/outbox/tracking"), ACCEPT_V1)
        .query(&[("messageID", &id)])
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(v1["contentEncoding"], "gzip");
    assert_eq!(
        v1["fileSize"],
        gzip(&p1).len() + gzip(b"and the second half.").len()
    );
}

#[tokio::test]
async fn v2_clients_accepting_gzip_get_small_plain_messages_compressed() {
    let s = TestServer::realistic().await;
    let id = s
        .client("X26ABC1")
        .send("X26ABC2", "TEST_WORKFLOW", "plain text body")
        .await
        .unwrap();
    let rc = s.client("X26ABC2");
    for (accept, gz) in [(ACCEPT_V2, true), (ACCEPT_V1, false)] {
        let r = rc
            .request_accepting(Method::GET, &rc.mx(&format!("/inbox/{id}")), accept)
            .header("accept-encoding", "gzip")
            .send()
            .await
            .unwrap();
        let encoded = r.headers().get("content-encoding").is_some();
        let len: usize = r.headers()["content-length"]
            .to_str()
            .unwrap()
            .parse()
            .unwrap();
        let body = r.bytes().await.unwrap();
        assert_eq!(len, body.len());
        assert_eq!(encoded, gz);
        let plain = if gz { gunzip(&body) } else { body.to_vec() };
        assert_eq!(plain, b"plain text body");
    }
}

#[tokio::test]
async fn acknowledged_messages_leave_the_inbox_and_tracking_follows() {
    let s = TestServer::realistic().await;
    let c = s.client("X26ABC1");
    let ids = send_many(&c, "X26ABC2", "TEST_WORKFLOW", 3).await;
    let r = s.client("X26ABC2");
    r.acknowledge(&ids[1]).await.unwrap();
    r.acknowledge(&ids[1]).await.unwrap(); // idempotent
    assert_eq!(r.inbox().await.unwrap(), [ids[0].clone(), ids[2].clone()]);
    let t = c.track(&ids[1]).await.unwrap();
    assert_eq!(t["status"], "acknowledged");
    assert_eq!(t["recipient"], "X26ABC2");
    assert_eq!(t["status_success"], true);
    let v1: Value = c
        .request_accepting(Method::GET, &c.mx("/outbox/tracking"), ACCEPT_V1)
        .query(&[("messageID", &ids[1])])
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(v1["status"], "Acknowledged");
    assert_eq!(v1["downloadTimestamp"].as_str().unwrap().len(), 14);
    assert_eq!(v1["sender"], "X26ABC1");
    assert_eq!(v1["recipientName"], "TESTMB2");
    let count: Value = r
        .request(Method::GET, &r.mx("/count"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(count, json!({"count": 2}));
}

#[tokio::test]
async fn local_id_tracking_returns_the_v1_record() {
    let s = TestServer::realistic().await;
    let c = s.client("X26ABC1");
    let r = c
        .request(Method::POST, &c.mx("/outbox"))
        .header("mex-to", "X26ABC2")
        .header("mex-workflowid", "TEST_WORKFLOW")
        .header("mex-localid", "my-ref-1")
        .body("x")
        .send()
        .await
        .unwrap();
    let id = r.json::<Value>().await.unwrap()["message_id"]
        .as_str()
        .unwrap()
        .to_string();
    let v: Value = c
        .request(Method::GET, &c.mx("/outbox/tracking/my-ref-1"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(v["messageId"], id);
    assert_eq!(v["localId"], "my-ref-1");
    assert_eq!(v["status"], "Accepted");
}

#[tokio::test]
async fn endpoint_lookup_and_workflow_search_match_the_sandbox() {
    let s = TestServer::realistic().await;
    let get = |p: String, accept: &'static str| {
        let s = &s;
        async move {
            let v: Value = s
                .http()
                .get(s.url(&p))
                .header("accept", accept)
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            v
        }
    };
    let v2 = get(
        "/messageexchange/endpointlookup/X26/TEST_WORKFLOW2".into(),
        ACCEPT_V2,
    )
    .await;
    assert_eq!(
        v2,
        json!({"results": [{"mailbox_id": "X26ABC1", "mailbox_name": "TESTMB1"}, {"mailbox_id": "X26ABC2", "mailbox_name": "TESTMB2"}]})
    );
    let v1 = get(
        "/messageexchange/endpointlookup/X27/TEST_WORKFLOW_ACK".into(),
        ACCEPT_V1,
    )
    .await;
    assert_eq!(
        v1["results"],
        json!([{"address": "X26ABC3", "description": "TESTMB3", "endpoint_type": "MESH"}])
    );
    assert_eq!(
        get(
            "/messageexchange/endpointlookup/X27/TEST_WORKFLOW".into(),
            ACCEPT_V2
        )
        .await,
        json!({"results": []})
    );
    let ws = get(
        "/messageexchange/workflowsearch/TEST_WORKFLOW_ACK".into(),
        ACCEPT_V1,
    )
    .await;
    assert_eq!(ws["results"].as_array().unwrap().len(), 2);
}

#[tokio::test]
async fn undelivered_messages_and_reports_behave_as_in_the_sandbox() {
    let s = TestServer::sandbox().await;
    let c = s.client("X26ABC1");
    let rc = s.client("X26ABC2");
    let id = c.send("X26ABC2", "TEST_WORKFLOW", "late").await.unwrap();
    // The message expires uncollected: it leaves the inbox and downloads answer 410.
    let ev = s
        .http()
        .post(s.url(&format!("/admin/message/{id}/event")))
        .body(r#"{"status":"undeliverable","code":"14","event":"SEND","description":"Message not collected by recipient after 5 days"}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(ev.status(), 200);
    assert!(rc.inbox().await.unwrap().is_empty());
    let r = rc
        .request(Method::GET, &rc.mx(&format!("/inbox/{id}")))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 410);
    let t = c.track(&id).await.unwrap();
    assert_eq!(t["status"], "undeliverable");
    assert_eq!(t["status_success"], false);
    // The sender gets a non-delivery report with code 14.
    let report = s
        .http()
        .post(s.url("/messageexchange/admin/report"))
        .json(&json!({"mailbox_id": "X26ABC1", "code": "14", "description": "Message not collected by recipient after 5 days",
                      "workflow_id": "TEST_WORKFLOW", "linked_message_id": id, "status": "error"}))
        .send()
        .await
        .unwrap();
    assert_eq!(report.status(), 200);
    let rid = report.json::<Value>().await.unwrap()["message_id"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(c.inbox().await.unwrap(), std::slice::from_ref(&rid));
    let chunk = c.download_chunk(&rid, 1).await.unwrap();
    assert_eq!(chunk.status, 200);
    assert!(chunk.body.is_empty());
    let h = |n: &str| {
        chunk
            .headers
            .get(n)
            .map(|v| v.to_str().unwrap().to_string())
    };
    assert_eq!(h("mex-messagetype").as_deref(), Some("REPORT"));
    assert_eq!(h("mex-statuscode").as_deref(), Some("14"));
    assert_eq!(h("mex-statussuccess").as_deref(), Some("ERROR"));
    assert_eq!(h("mex-linkedmsgid").as_deref(), Some(id.as_str()));
    assert_eq!(h("mex-chunk-range").as_deref(), Some("1:0"));
    assert_eq!(h("mex-from"), None);
    c.acknowledge(&rid).await.unwrap();
    assert!(c.inbox().await.unwrap().is_empty());
    // Admin details.
    let d: Value = s
        .http()
        .get(s.url(&format!("/admin/message/{rid}")))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(d["message_type"], "Report");
    let mb: Value = s
        .http()
        .get(s.url("/messageexchange/admin/mailbox/X26ABC2"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(mb["billing_entity"], "Wales");
    // Reset empties everything.
    assert_eq!(
        s.http()
            .delete(s.url("/admin/reset"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    assert!(c.track(&id).await.is_err());
}

#[tokio::test]
async fn reset_of_one_mailbox_empties_its_lists_only() {
    let s = TestServer::sandbox().await;
    let to2 = s.client("X26ABC1").send("X26ABC2", "W", "x").await.unwrap();
    let to3 = s.client("X26ABC1").send("X26ABC3", "W", "y").await.unwrap();
    let r = s
        .http()
        .delete(s.url("/messageexchange/admin/reset/X26ABC2"))
        .send()
        .await
        .unwrap();
    assert_eq!(
        r.json::<Value>().await.unwrap(),
        json!({"message": "mailbox X26ABC2 reset"})
    );
    assert!(s.client("X26ABC2").inbox().await.unwrap().is_empty());
    assert_eq!(s.client("X26ABC3").inbox().await.unwrap(), [to3]);
    // Still addressable by id.
    assert_eq!(s.client("X26ABC2").download(&to2).await.unwrap(), b"x");
}

#[tokio::test]
async fn messages_survive_a_restart() {
    let s = TestServer::realistic().await;
    let id = s
        .client("X26ABC1")
        .send("X26ABC2", "TEST_WORKFLOW", vec![9u8; 400_000])
        .await
        .unwrap();
    let small = s
        .client("X26ABC1")
        .send("X26ABC2", "TEST_WORKFLOW", "small")
        .await
        .unwrap();
    let dir = s.stop().await;
    let s = TestServer::start_in(dir, Default::default(), Default::default()).await;
    let r = s.client("X26ABC2");
    assert_eq!(r.inbox().await.unwrap(), [id.clone(), small.clone()]);
    assert_eq!(r.download(&id).await.unwrap(), vec![9u8; 400_000]);
    assert_eq!(r.download(&small).await.unwrap(), b"small");
}

#[tokio::test]
async fn shutdown_lets_an_upload_in_flight_finish() {
    let s = TestServer::realistic().await;
    let c = s.client("X26ABC1");
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<Vec<u8>, std::io::Error>>(4);
    let body = reqwest::Body::wrap_stream(tokio_stream_from(rx));
    let req = c
        .request(Method::POST, &c.mx("/outbox"))
        .header("mex-to", "X26ABC2")
        .header("mex-workflowid", "TEST_WORKFLOW")
        .body(body);
    let upload = tokio::spawn(async move { req.send().await });
    tx.send(Ok(b"first part ".to_vec())).await.unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    let base = s.base.clone();
    let stopping = tokio::spawn(s.stop());
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    tx.send(Ok(b"second part".to_vec())).await.unwrap();
    drop(tx);
    let r = upload.await.unwrap().unwrap();
    assert_eq!(r.status(), 202);
    let dir = stopping.await.unwrap();
    // New connections are refused once it has stopped; the message was kept.
    assert!(reqwest::get(format!("{base}/messageexchange/_ping"))
        .await
        .is_err());
    let s = TestServer::start_in(dir, Default::default(), Default::default()).await;
    let r = s.client("X26ABC2");
    let ids = r.inbox().await.unwrap();
    assert_eq!(
        r.download(&ids[0]).await.unwrap(),
        b"first part second part"
    );
}

fn tokio_stream_from(
    mut rx: tokio::sync::mpsc::Receiver<Result<Vec<u8>, std::io::Error>>,
) -> impl futures::Stream<Item = Result<Vec<u8>, std::io::Error>> {
    futures::stream::poll_fn(move |cx| rx.poll_recv(cx))
}

#[tokio::test]
async fn health_readiness_and_metrics_answer() {
    let s = TestServer::realistic().await;
    for p in [
        "/messageexchange/_ping",
        "/health",
        "/_ping",
        "/_status",
        "/healthcheck",
        "/messageexchange/deepping",
    ] {
        let v: Value = reqwest::get(s.url(p)).await.unwrap().json().await.unwrap();
        assert_eq!(v["status"], "running", "{p}");
    }
    assert_eq!(reqwest::get(s.url("/readyz")).await.unwrap().status(), 200);
    s.client("X26ABC1")
        .send("X26ABC2", "TEST_WORKFLOW", "x")
        .await
        .unwrap();
    // Metrics are on the ops listener, not the MESH port.
    assert_eq!(reqwest::get(s.url("/metrics")).await.unwrap().status(), 404);
    let ops = s.start_ops().await;
    let text = reqwest::get(format!("{ops}/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(text.contains("mesh_http_requests_total"), "{text}");
    assert!(text.contains("mesh_messages_accepted_total"), "{text}");
}
