//! Every error the API reference lists that the server emits, in both API versions:
//! right status, event, code and description, in the v1 or v2 body shape (API.md 6).

mod common;

use common::{TestServer, KEY};
use mesh_client::{MeshClient, ACCEPT_V1, ACCEPT_V2};
use mesh_protocol::AuthToken;
use reqwest::{Method, RequestBuilder, Response};
use serde_json::Value;

const VERSIONS: [&str; 2] = [ACCEPT_V1, ACCEPT_V2];

/// What a MESH-shaped error must say.
struct Expect<'a> {
    status: u16,
    event: &'a str,
    code: &'a str,
    description: &'a str,
    message_id: Option<&'a str>,
}

fn expect<'a>(status: u16, event: &'a str, code: &'a str, description: &'a str) -> Expect<'a> {
    Expect {
        status,
        event,
        code,
        description,
        message_id: None,
    }
}

async fn assert_mesh_error(r: Response, accept: &str, want: &Expect<'_>) {
    let status = r.status().as_u16();
    let content_type = r
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    let text = r.text().await.unwrap();
    assert_eq!(status, want.status, "status for {accept}: {text}");
    let body: Value = serde_json::from_str(&text).unwrap_or_else(|_| panic!("JSON body: {text}"));
    if accept == ACCEPT_V1 {
        assert_eq!(content_type, "application/json");
        assert_eq!(body["errorEvent"], want.event, "{text}");
        assert_eq!(body["errorCode"], want.code, "{text}");
        assert_eq!(body["errorDescription"], want.description, "{text}");
        assert_eq!(
            body.get("messageID").and_then(Value::as_str),
            want.message_id,
            "{text}"
        );
    } else {
        assert_eq!(content_type, "application/vnd.mesh.v2+json");
        let detail = &body["detail"][0];
        assert_eq!(detail["event"], want.event, "{text}");
        assert_eq!(detail["code"], want.code, "{text}");
        assert_eq!(detail["msg"], want.description, "{text}");
        assert_eq!(
            body.get("message_id").and_then(Value::as_str),
            want.message_id,
            "{text}"
        );
        assert!(
            body["internal_id"].is_string(),
            "v2 errors carry an internal id: {text}"
        );
    }
}

async fn assert_validation(r: Response, place: &str, name: &str) {
    assert_eq!(r.status().as_u16(), 400);
    let body: Value = r.json().await.unwrap();
    assert_eq!(
        body["detail"][0]["loc"],
        serde_json::json!([place, name]),
        "{body}"
    );
    assert!(body["detail"][0]["msg"].is_string());
}

fn send_req(c: &MeshClient, accept: &str) -> RequestBuilder {
    c.request_accepting(Method::POST, &c.mx("/outbox"), accept)
        .header("mex-to", "X26ABC2")
        .header("mex-workflowid", "TEST_WORKFLOW")
}

// ---- authentication (API.md 2.5) ----

#[tokio::test]
async fn requests_without_a_readable_token_are_refused() {
    let s = TestServer::realistic().await;
    for accept in VERSIONS {
        for auth in [
            None,
            Some(""),
            Some("NHSMESH X26ABC1:n:notanumber:202401011200:00"),
            Some("NHSMESH X26ABC1:n:0"),
        ] {
            let mut req = s
                .http()
                .get(s.url("/messageexchange/X26ABC1/inbox"))
                .header("accept", accept);
            if let Some(a) = auth {
                req = req.header("authorization", a);
            }
            let want = expect(403, "", "", "Error reading from Authorization header");
            assert_mesh_error(req.send().await.unwrap(), accept, &want).await;
        }
    }
}

#[tokio::test]
async fn a_token_for_another_mailbox_is_refused() {
    let s = TestServer::realistic().await;
    let other = s.client("X26ABC2");
    for accept in VERSIONS {
        let r = s
            .http()
            .get(s.url("/messageexchange/X26ABC1/inbox"))
            .header("authorization", other.token())
            .header("accept", accept)
            .send()
            .await
            .unwrap();
        assert_mesh_error(
            r,
            accept,
            &expect(403, "", "", "Mailbox id does not match token"),
        )
        .await;
    }
}

#[tokio::test]
async fn an_unknown_mailbox_gets_epl_151() {
    let s = TestServer::realistic().await;
    let ghost = s.client("NOSUCHBOX");
    for accept in VERSIONS {
        let r = ghost
            .request_accepting(Method::GET, &ghost.mx("/inbox"), accept)
            .send()
            .await
            .unwrap();
        assert_mesh_error(
            r,
            accept,
            &expect(403, "SEND", "EPL-151", "No mailbox matched"),
        )
        .await;
    }
}

#[tokio::test]
async fn wrong_password_or_shared_key_is_an_invalid_token() {
    let s = TestServer::realistic().await;
    let wrong_pw = MeshClient::new(&s.base, "X26ABC1", "not-the-password", KEY);
    let wrong_key = MeshClient::new(&s.base, "X26ABC1", "password", "OtherKey");
    for accept in VERSIONS {
        for c in [&wrong_pw, &wrong_key] {
            let r = c
                .request_accepting(Method::GET, &c.mx("/inbox"), accept)
                .send()
                .await
                .unwrap();
            assert_mesh_error(
                r,
                accept,
                &expect(403, "", "", "Invalid Authentication Token"),
            )
            .await;
        }
    }
}

#[tokio::test]
async fn a_reused_token_is_refused_the_second_time() {
    let s = TestServer::realistic().await;
    let c = s.client("X26ABC1");
    for accept in VERSIONS {
        let token = c.token();
        let get = || {
            s.http()
                .get(s.url("/messageexchange/X26ABC1/inbox"))
                .header("authorization", token.clone())
                .header("accept", accept)
        };
        assert_eq!(get().send().await.unwrap().status(), 200);
        let want = expect(403, "", "", "Error Duplicated Authentication Token");
        assert_mesh_error(get().send().await.unwrap(), accept, &want).await;
    }
}

#[tokio::test]
async fn stale_future_and_malformed_timestamps_are_refused() {
    let s = TestServer::realistic().await;
    let now = chrono::Utc::now();
    let stale = AuthToken::timestamp_for(now - chrono::TimeDelta::hours(3));
    let future = AuthToken::timestamp_for(now + chrono::TimeDelta::hours(3));
    for accept in VERSIONS {
        for ts in [stale.as_str(), future.as_str(), "2024-01-01", "not-a-time"] {
            let nonce = uuid::Uuid::new_v4().to_string();
            let token = AuthToken::sign(KEY, "X26ABC1", "password", &nonce, 0, ts);
            let r = s
                .http()
                .get(s.url("/messageexchange/X26ABC1/inbox"))
                .header("authorization", token.header_value())
                .header("accept", accept)
                .send()
                .await
                .unwrap();
            let want = expect(
                403,
                "",
                "",
                "Invalid Authentication Token: timestamp outside the allowed window",
            );
            assert_mesh_error(r, accept, &want).await;
        }
    }
}

#[tokio::test]
async fn authentication_is_checked_before_anything_else() {
    let s = TestServer::realistic().await;
    // A bad Accept and missing send headers, but no token: 403, not 400.
    let r = s
        .http()
        .post(s.url("/messageexchange/X26ABC1/outbox"))
        .header("accept", "application/vnd.mesh.vX+json")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
}

// ---- request format ----

#[tokio::test]
async fn a_malformed_accept_header_is_a_v1_400() {
    let s = TestServer::realistic().await;
    let c = s.client("X26ABC1");
    let r = c
        .request_accepting(Method::GET, &c.mx("/inbox"), "application/vnd.mesh.vX+json")
        .send()
        .await
        .unwrap();
    // Always rendered as v1: the version could not be read.
    assert_mesh_error(
        r,
        ACCEPT_V1,
        &expect(400, "", "", "Accept header api format incorrect"),
    )
    .await;
}

#[tokio::test]
async fn framework_validation_errors_name_the_field() {
    let s = TestServer::realistic().await;
    let c = s.client("X26ABC1");
    for accept in VERSIONS {
        let r = c
            .request_accepting(Method::POST, &c.mx(""), accept)
            .send()
            .await
            .unwrap();
        assert_validation(r, "header", "mex-clientversion").await;
        for (q, name) in [
            ("max_results=9", "max_results"),
            ("max_results=5001", "max_results"),
            ("max_results=ten", "max_results"),
            ("continue_from=short", "continue_from"),
            ("workflow_filter=x", "workflow_filter"),
        ] {
            let r = c
                .request_accepting(Method::GET, &c.mx(&format!("/inbox?{q}")), accept)
                .send()
                .await
                .unwrap();
            assert_validation(r, "query", name).await;
        }
        let r = c
            .request_accepting(Method::GET, &c.mx("/outbox/tracking"), accept)
            .send()
            .await
            .unwrap();
        assert_validation(r, "query", "messageID").await;
        let r = c
            .request_accepting(Method::GET, &c.mx("/inbox/ANY/0"), accept)
            .send()
            .await
            .unwrap();
        assert_validation(r, "path", "chunk_number").await;
        let r = c
            .request_accepting(Method::POST, &c.mx("/outbox"), accept)
            .header("mex-workflowid", "TEST_WORKFLOW")
            .body("x")
            .send()
            .await
            .unwrap();
        assert_validation(r, "header", "mex-to").await;
        let r = send_req(&c, accept)
            .header("mex-subject", "s".repeat(501))
            .body("x")
            .send()
            .await
            .unwrap();
        assert_validation(r, "header", "mex-subject").await;
    }
}

// ---- send (API.md 3.8) ----

#[tokio::test]
async fn send_header_errors_have_their_mesh_codes() {
    let s = TestServer::realistic().await;
    let c = s.client("X26ABC1");
    for accept in VERSIONS {
        let r = send_req(&c, accept)
            .header("mex-localid", "a\tb")
            .body("x")
            .send()
            .await
            .unwrap();
        assert_mesh_error(
            r,
            accept,
            &expect(400, "TRANSFER", "06", "MalformedControlFile"),
        )
        .await;
        let r = c
            .request_accepting(Method::POST, &c.mx("/outbox"), accept)
            .header("mex-to", "https://example.invalid/")
            .header("mex-workflowid", "TEST_WORKFLOW")
            .body("x")
            .send()
            .await
            .unwrap();
        assert_mesh_error(
            r,
            accept,
            &expect(400, "TRANSFER", "06", "MalformedControlFile"),
        )
        .await;
        let r = send_req(&c, accept)
            .header("mex-content-checksum", "md5;abc")
            .body("x")
            .send()
            .await
            .unwrap();
        assert_mesh_error(
            r,
            accept,
            &expect(400, "SEND", "Invalid checksum", "Invalid checksum"),
        )
        .await;
        let r = c
            .request_accepting(Method::POST, &c.mx("/outbox"), accept)
            .header("mex-to", "   ")
            .header("mex-workflowid", "TEST_WORKFLOW")
            .body("x")
            .send()
            .await
            .unwrap();
        assert_mesh_error(r, accept, &expect(400, "SEND", "08", "TO_DTS missing")).await;
        let r = send_req(&c, accept)
            .header("content-encoding", "br")
            .body("x")
            .send()
            .await
            .unwrap();
        let want = expect(
            422,
            "SEND",
            "UnsupportedContentEncoding",
            "Unsupported content encoding",
        );
        assert_mesh_error(r, accept, &want).await;
        for range in ["2:2", "0:1", "2:1", "a:b", "1"] {
            let r = send_req(&c, accept)
                .header("mex-chunk-range", range)
                .body("x")
                .send()
                .await
                .unwrap();
            let want = expect(
                417,
                "SEND",
                "InvalidHeaderChunks",
                "Invalid chunk values sent in mex-Chunk-Range header",
            );
            assert_mesh_error(r, accept, &want).await;
        }
        let r = c
            .request_accepting(Method::POST, &c.mx("/outbox"), accept)
            .header("mex-to", "NOSUCHBOX")
            .header("mex-workflowid", "TEST_WORKFLOW")
            .body("x")
            .send()
            .await
            .unwrap();
        assert_mesh_error(
            r,
            accept,
            &expect(417, "SEND", "12", "Unregistered to address"),
        )
        .await;
        let r = send_req(&c, accept).send().await.unwrap();
        assert_mesh_error(
            r,
            accept,
            &expect(
                417,
                "COLLECT",
                "02",
                "Data file is missing or inaccessible.",
            ),
        )
        .await;
        let r = send_req(&c, accept)
            .header("mex-from", "X26ABC3")
            .body("x")
            .send()
            .await
            .unwrap();
        let want = expect(
            417,
            "SEND",
            "07",
            "Invalid From Address in the control file",
        );
        assert_mesh_error(r, accept, &want).await;
        let r = send_req(&c, accept)
            .header("mex-messagetype", "REPORT")
            .body("x")
            .send()
            .await
            .unwrap();
        let want = expect(417, "SEND", "11", "Invalid Message Type for the transfer");
        assert_mesh_error(r, accept, &want).await;
    }
    // Nothing was stored by any of the refused sends.
    assert!(s.client("X26ABC2").inbox().await.unwrap().is_empty());
}

#[tokio::test]
async fn workflow_permissions_are_enforced_by_default() {
    let s = TestServer::realistic().await;
    let c1 = s.client("X26ABC1");
    for accept in VERSIONS {
        // X26ABC1 is not a sender of TEST_WORKFLOW_ACK; unknown workflows have no senders.
        for wf in ["TEST_WORKFLOW_ACK", "NOT_A_WORKFLOW"] {
            let r = c1
                .request_accepting(Method::POST, &c1.mx("/outbox"), accept)
                .header("mex-to", "X26ABC2")
                .header("mex-workflowid", wf)
                .body("x")
                .send()
                .await
                .unwrap();
            let desc = format!("Sender not allowed to send messages of workflow {wf}");
            assert_mesh_error(r, accept, &expect(417, "SEND", "16", &desc)).await;
        }
        // X26ABC3 does not receive TEST_WORKFLOW.
        let r = c1
            .request_accepting(Method::POST, &c1.mx("/outbox"), accept)
            .header("mex-to", "X26ABC3")
            .header("mex-workflowid", "TEST_WORKFLOW")
            .body("x")
            .send()
            .await
            .unwrap();
        assert_mesh_error(
            r,
            accept,
            &expect(417, "SEND", "17", "Workflow ID not registered for mailbox"),
        )
        .await;
    }
}

#[tokio::test]
async fn sandbox_mode_lets_any_workflow_through() {
    let s = TestServer::sandbox().await;
    let id = s
        .client("X26ABC1")
        .send("X26ABC3", "ANY_WORKFLOW_AT_ALL", "x")
        .await
        .unwrap();
    assert_eq!(s.client("X26ABC3").inbox().await.unwrap(), [id]);
}

#[tokio::test]
async fn oversized_bodies_get_413_and_store_nothing() {
    let config = mesh_server::ServerConfig {
        max_chunk_size: 1000,
        ..Default::default()
    };
    let s = TestServer::start(config, Default::default()).await;
    let c = s.client("X26ABC1");
    for accept in VERSIONS {
        let r = send_req(&c, accept)
            .body(vec![7u8; 1001])
            .send()
            .await
            .unwrap();
        let want = expect(
            413,
            "SEND",
            "",
            "request body exceeds the limit of 1000 bytes",
        );
        assert_mesh_error(r, accept, &want).await;
        // Without a Content-Length the limit is found while streaming.
        let stream =
            futures::stream::iter((0..20).map(|_| Ok::<_, std::io::Error>(vec![1u8; 100])));
        let r = send_req(&c, accept)
            .body(reqwest::Body::wrap_stream(stream))
            .send()
            .await
            .unwrap();
        assert_mesh_error(r, accept, &want).await;
    }
    assert!(s.client("X26ABC2").inbox().await.unwrap().is_empty());
}

// ---- chunk upload (API.md 3.9) ----

#[tokio::test]
async fn chunk_upload_errors() {
    let s = TestServer::realistic().await;
    let c = s.client("X26ABC1");
    for accept in VERSIONS {
        let id = c
            .send_chunk1("X26ABC2", "TEST_WORKFLOW", "one", 2)
            .await
            .unwrap();
        let path = c.mx(&format!("/outbox/{id}/2"));
        let chunks = Expect {
            message_id: Some(&id),
            ..expect(
                417,
                "SEND",
                "InvalidHeaderChunks",
                "Invalid chunk values sent in mex-Chunk-Range header",
            )
        };
        for range in [None, Some("3:2"), Some("1:2"), Some("x")] {
            let mut req = c.request_accepting(Method::POST, &path, accept).body("two");
            if let Some(r) = range {
                req = req.header("mex-chunk-range", r);
            }
            assert_mesh_error(req.send().await.unwrap(), accept, &chunks).await;
        }
        let r = c
            .request_accepting(Method::POST, &path, accept)
            .header("mex-chunk-range", "2:2")
            .header("content-encoding", "gzip")
            .body("two")
            .send()
            .await
            .unwrap();
        assert_mesh_error(
            r,
            accept,
            &expect(417, "", "", "cannot change content encoding"),
        )
        .await;
        let other = s.client("X26ABC2");
        let r = other
            .request_accepting(Method::POST, &other.mx(&format!("/outbox/{id}/2")), accept)
            .header("mex-chunk-range", "2:2")
            .body("two")
            .send()
            .await
            .unwrap();
        assert_mesh_error(r, accept, &expect(403, "", "", "Forbidden")).await;
        let r = c
            .request_accepting(
                Method::POST,
                &c.mx("/outbox/20240101000000000000_ABCDEF/2"),
                accept,
            )
            .header("mex-chunk-range", "2:2")
            .body("two")
            .send()
            .await
            .unwrap();
        assert_mesh_error(r, accept, &expect(404, "", "", "Not Found")).await;
        let r = c
            .request_accepting(Method::POST, &c.mx(&format!("/outbox/{id}/3")), accept)
            .header("mex-chunk-range", "3:3")
            .body("three")
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 406);
        assert!(r.json::<Value>().await.unwrap()["message"]
            .as_str()
            .unwrap()
            .contains("internal error"));
        c.send_chunk(&id, 2, 2, "two").await.unwrap();
        // Complete: a repeated last chunk is locked out.
        let r = c
            .request_accepting(Method::POST, &path, accept)
            .header("mex-chunk-range", "2:2")
            .body("two again")
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 423);
        assert_eq!(s.client("X26ABC2").download(&id).await.unwrap(), b"onetwo");
    }
}

// ---- download, HEAD, ack (API.md 3.4–3.7) ----

#[tokio::test]
async fn download_and_ack_errors() {
    let s = TestServer::realistic().await;
    let sender = s.client("X26ABC1");
    let recipient = s.client("X26ABC2");
    let third = s.client("X26ABC3");
    let done = sender
        .send("X26ABC2", "TEST_WORKFLOW", "hello")
        .await
        .unwrap();
    let uploading = sender
        .send_chunk1("X26ABC2", "TEST_WORKFLOW", "part", 2)
        .await
        .unwrap();
    for accept in VERSIONS {
        let get = |c: &MeshClient, rest: String| {
            c.request_accepting(Method::GET, &c.mx(&rest), accept)
                .send()
        };
        let missing = expect(404, "RECEIVE", "20", "Message does not exist");
        assert_mesh_error(
            get(&recipient, "/inbox/20240101000000000000_ABCDEF".into())
                .await
                .unwrap(),
            accept,
            &missing,
        )
        .await;
        assert_mesh_error(
            get(&recipient, format!("/inbox/{done}/2")).await.unwrap(),
            accept,
            &missing,
        )
        .await;
        // The sender is not the recipient either.
        for c in [&sender, &third] {
            assert_mesh_error(
                get(c, format!("/inbox/{done}")).await.unwrap(),
                accept,
                &expect(403, "", "", "Forbidden"),
            )
            .await;
        }
        let gone = expect(
            410,
            "SEND",
            "Message already accepted",
            "Message no longer available for download",
        );
        assert_mesh_error(
            get(&recipient, format!("/inbox/{uploading}"))
                .await
                .unwrap(),
            accept,
            &gone,
        )
        .await;
        let ack = |c: &MeshClient, id: &str| {
            c.request_accepting(
                Method::PUT,
                &c.mx(&format!("/inbox/{id}/status/acknowledged")),
                accept,
            )
            .send()
        };
        assert_mesh_error(
            ack(&recipient, "20240101000000000000_ABCDEF")
                .await
                .unwrap(),
            accept,
            &missing,
        )
        .await;
        assert_mesh_error(
            ack(&third, &done).await.unwrap(),
            accept,
            &expect(403, "", "", "Forbidden"),
        )
        .await;
    }
    // HEAD: errors have no body; unknown or unrelated callers see 404, the recipient 410.
    let head = |c: &MeshClient, id: &str| {
        c.request(Method::HEAD, &c.mx(&format!("/inbox/{id}")))
            .send()
    };
    assert_eq!(head(&third, &done).await.unwrap().status(), 404);
    assert_eq!(
        head(&recipient, "20240101000000000000_ABCDEF")
            .await
            .unwrap()
            .status(),
        404
    );
    assert_eq!(head(&recipient, &uploading).await.unwrap().status(), 410);
    assert_eq!(head(&sender, &uploading).await.unwrap().status(), 200);
    // None of this changed anything: the message is still there, intact.
    assert_eq!(
        recipient.inbox().await.unwrap(),
        std::slice::from_ref(&done)
    );
    assert_eq!(recipient.download(&done).await.unwrap(), b"hello");
}

// ---- tracking and lookups (API.md 3.10–3.13) ----

#[tokio::test]
async fn tracking_errors() {
    let s = TestServer::realistic().await;
    let sender = s.client("X26ABC1");
    let id = sender.send("X26ABC2", "TEST_WORKFLOW", "x").await.unwrap();
    for accept in VERSIONS {
        let track = |c: &MeshClient, id: &str| {
            c.request_accepting(Method::GET, &c.mx("/outbox/tracking"), accept)
                .query(&[("messageID", id)])
                .send()
        };
        let not_found = expect(404, "", "", "Not Found");
        assert_mesh_error(
            track(&sender, "20240101000000000000_ABCDEF").await.unwrap(),
            accept,
            &not_found,
        )
        .await;
        // The recipient is not the sender: 404, not 403.
        assert_mesh_error(
            track(&s.client("X26ABC2"), &id).await.unwrap(),
            accept,
            &not_found,
        )
        .await;
    }
    // Local ids: none → 404, two → 300.
    for _ in 0..2 {
        let r = sender
            .request(Method::POST, &sender.mx("/outbox"))
            .header("mex-to", "X26ABC2")
            .header("mex-workflowid", "TEST_WORKFLOW")
            .header("mex-localid", "twice")
            .body("x")
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 202);
    }
    for accept in VERSIONS {
        let by_local = |l: &str| {
            sender
                .request_accepting(
                    Method::GET,
                    &sender.mx(&format!("/outbox/tracking/{l}")),
                    accept,
                )
                .send()
        };
        assert_mesh_error(
            by_local("never").await.unwrap(),
            accept,
            &expect(404, "", "", "Not Found"),
        )
        .await;
        assert_mesh_error(
            by_local("twice").await.unwrap(),
            accept,
            &expect(300, "", "", "Multiple Choices"),
        )
        .await;
    }
}

#[tokio::test]
async fn lookups_with_blank_values_are_400() {
    let s = TestServer::realistic().await;
    for accept in VERSIONS {
        let get = |p: &str| s.http().get(s.url(p)).header("accept", accept).send();
        let r = get("/messageexchange/endpointlookup/%20/TEST_WORKFLOW")
            .await
            .unwrap();
        assert_mesh_error(r, accept, &expect(400, "", "", "ods code missing")).await;
        let r = get("/messageexchange/endpointlookup/X26/%20")
            .await
            .unwrap();
        assert_mesh_error(r, accept, &expect(400, "", "", "workflow id missing")).await;
        let r = get("/messageexchange/workflowsearch/%20").await.unwrap();
        assert_mesh_error(r, accept, &expect(400, "", "", "workflow id missing")).await;
    }
}

// ---- admin and framework ----

#[tokio::test]
async fn admin_endpoints_are_refused_outside_sandbox_mode() {
    let s = TestServer::realistic().await;
    let r = s.http().delete(s.url("/admin/reset")).send().await.unwrap();
    assert_eq!(r.status(), 403);
    let body: Value = r.json().await.unwrap();
    assert!(body["errorDescription"]
        .as_str()
        .unwrap()
        .contains("--sandbox"));
}

#[tokio::test]
async fn admin_errors_in_sandbox_mode() {
    let s = TestServer::sandbox().await;
    let r = s
        .http()
        .delete(s.url("/admin/reset/NOSUCHBOX"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    assert_eq!(
        r.json::<Value>().await.unwrap()["errorDescription"],
        "mailbox does not exist"
    );
    let r = s
        .http()
        .post(s.url("/messageexchange/admin/report"))
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    let r = s
        .http()
        .post(s.url("/admin/message/20240101000000000000_ABCDEF/event"))
        .body(r#"{"status":"error"}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
}

#[tokio::test]
async fn unknown_paths_and_methods_get_framework_bodies() {
    let s = TestServer::realistic().await;
    let r = s.http().get(s.url("/nowhere")).send().await.unwrap();
    assert_eq!(r.status(), 404);
    assert_eq!(
        r.json::<Value>().await.unwrap(),
        serde_json::json!({"detail": "Not Found"})
    );
    let r = s
        .http()
        .delete(s.url("/messageexchange/X26ABC1/inbox"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 405);
    assert_eq!(
        r.json::<Value>().await.unwrap(),
        serde_json::json!({"detail": "Method Not Allowed"})
    );
}
