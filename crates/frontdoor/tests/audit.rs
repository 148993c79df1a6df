//! Every refusal of the front door is an audit event with the fields the README documents,
//! and never the assertion, ID token or access token itself.

mod common;

use common::*;
use serde_json::Value;
use std::io::Write;
use std::sync::{Mutex, Once};

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

fn log_text() -> String {
    String::from_utf8_lossy(&LOG.lock().unwrap_or_else(|p| p.into_inner())).into_owned()
}

/// Audit events of `event` for `client_id`.
fn events(event: &str, client_id: &str) -> Vec<Value> {
    log_text()
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|v| v["target"] == "audit")
        .filter(|v| v["fields"]["event"] == event && v["fields"]["client_id"] == client_id)
        .collect()
}

#[tokio::test]
async fn token_refusals_issues_and_bearer_refusals_are_audited_without_secrets() {
    capture_audit();
    let n = node(Options::default()).await;

    // A refused assertion: the revoked app.
    let refused_assertion = assertion("revoked-app", &n.token_url());
    let got = client_credentials(&n, &refused_assertion).await;
    assert_eq!(got.0, 401, "{}", got.1);
    let refused = events("token_refused", "revoked-app");
    assert_eq!(refused.len(), 1, "one event per refusal: {}", log_text());
    let e = &refused[0];
    assert_eq!(e["level"], "WARN");
    let f = &e["fields"];
    assert_eq!(f["service"], "frontdoor");
    assert_eq!(f["grant"], "client_credentials");
    assert_eq!(f["status"], 401);
    assert_eq!(f["error"], got.1["error"]);
    assert_eq!(f["reason"], got.1["error_description"]);
    assert!(
        f["source"]
            .as_str()
            .is_some_and(|s| s.starts_with("127.0.0.1:")),
        "{f}"
    );

    // A token issued, then a protected call refused for its scope (user-only app).
    let token = app_token(&n, "other-app").await;
    let issued = events("token_issued", "other-app");
    assert_eq!(issued.len(), 1);
    assert_eq!(issued[0]["level"], "INFO");
    assert_eq!(issued[0]["fields"]["kind"], "application");

    let r = reqwest::Client::new()
        .get(n.url("/test-api/Patient"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 401);
    let no_token: Vec<Value> = log_text()
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|v| v["fields"]["event"] == "bearer_refused" && v["fields"]["reason"] == "no_token")
        .collect();
    assert_eq!(no_token.len(), 1);
    assert_eq!(no_token[0]["fields"]["api"], TEST_API);
    assert_eq!(no_token[0]["fields"]["client_id"], "");

    let r = reqwest::Client::new()
        .get(n.url("/test-api/Patient"))
        .bearer_auth("not-a-token-that-exists")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 401);
    assert!(log_text().contains("\"reason\":\"invalid_token\""));

    // No secret reached the log: not the assertions, not the token.
    let log = log_text();
    for secret in [
        refused_assertion.as_str(),
        token.as_str(),
        "not-a-token-that-exists",
    ] {
        assert!(!log.contains(secret), "a token or assertion was logged");
    }
}
