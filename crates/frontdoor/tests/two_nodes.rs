//! Two front-door nodes sharing one PostgreSQL (the coordination store): a token issued
//! by one is honoured by the other, a `jti` used on one is refused on the other, a
//! refresh token works once across both, and a quota counts the calls to both.
//!
//! Runs when `OPENSPINE_TEST_DATABASE_URL` is set (the test command sets it; with
//! `OPENSPINE_REQUIRE_SHARED_BACKEND=1` its absence is a failure).

mod common;

use common::*;
use spine_store::{Coordination, PgCoordination};
use std::sync::Arc;

async fn two_nodes() -> Option<(Node, Node)> {
    let url = spine_store::testing::fresh_database("fd").await?;
    let jwks = jwks_server().await;
    let mut nodes = Vec::new();
    for _ in 0..2 {
        let coord: Arc<dyn Coordination> =
            Arc::new(PgCoordination::connect(&url, 4).await.unwrap());
        nodes.push(
            node_with_jwks(
                Options {
                    coord: Some(coord),
                    ..Options::default()
                },
                jwks.clone(),
            )
            .await,
        );
    }
    let b = nodes.pop()?;
    let a = nodes.pop()?;
    Some((a, b))
}

#[tokio::test]
async fn a_token_issued_by_one_node_works_on_the_other() {
    let Some((a, b)) = two_nodes().await else {
        return;
    };
    let token = app_token(&a, "other-app").await;
    let r = reqwest::Client::new()
        .get(b.url("/hello-world/hello/application"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(
        r.json::<serde_json::Value>().await.unwrap()["message"],
        "Hello Application!"
    );
}

#[tokio::test]
async fn a_jti_used_on_one_node_is_refused_on_the_other() {
    let Some((a, b)) = two_nodes().await else {
        return;
    };
    // Each node checks `aud` against its own URL; the assertion names node A's, so the
    // replay on B must be refused for its jti before its aud is looked at.
    let once = assertion("other-app", &a.token_url());
    assert_eq!(client_credentials(&a, &once).await.0, 200);
    assert_oauth(
        "replay on B",
        &client_credentials(&b, &once).await,
        400,
        "invalid_request",
        "Non-unique 'jti' claim in client_assertion JWT",
    );
}

#[tokio::test]
async fn a_refresh_token_works_once_across_nodes() {
    let Some((a, b)) = two_nodes().await else {
        return;
    };
    let (_, body) = exchange(&a, "other-app", &id_token(&cis2_claims())).await;
    let refresh = body["refresh_token"].as_str().unwrap().to_string();
    let form = [
        ("grant_type", "refresh_token"),
        ("client_id", "other-app"),
        ("client_secret", "other-secret"),
        ("refresh_token", refresh.as_str()),
    ];
    let (x, y) = tokio::join!(post_form(&a, &form), post_form(&b, &form));
    let mut statuses = [x.0, y.0];
    statuses.sort();
    assert_eq!(statuses, [200, 401], "{} / {}", x.1, y.1);
}

#[tokio::test]
async fn a_quota_counts_the_calls_to_both_nodes() {
    let Some((a, b)) = two_nodes().await else {
        return;
    };
    let token = app_token(&a, "quota-app").await;
    let call = |n: &Node| {
        reqwest::Client::new()
            .get(n.url("/test-api/Patient"))
            .bearer_auth(&token)
            .send()
    };
    assert_eq!(call(&a).await.unwrap().status(), 200);
    assert_eq!(call(&b).await.unwrap().status(), 200);
    // The quota is 2 an hour: the third call is refused, on either node.
    assert_eq!(call(&a).await.unwrap().status(), 429);
    assert_eq!(call(&b).await.unwrap().status(), 429);
}
