//! The bearer layer on a route the test mounts behind it (a FHIR-style API with every
//! access mode of API.md 7) and on the Hello World API (the platform's plain faults).

mod common;

use common::*;
use serde_json::{json, Value};

async fn get(
    n: &Node,
    path: &str,
    headers: &[(&str, &str)],
) -> (u16, reqwest::header::HeaderMap, Value) {
    let mut r = reqwest::Client::new().get(n.url(path));
    for (k, v) in headers {
        r = r.header(*k, *v);
    }
    let r = r.send().await.unwrap();
    let status = r.status().as_u16();
    let h = r.headers().clone();
    (status, h, r.json().await.unwrap_or(Value::Null))
}

#[track_caller]
fn assert_fhir(
    case: &str,
    got: &(u16, reqwest::header::HeaderMap, Value),
    status: u16,
    code: &str,
    spine: &str,
    display: &str,
    diagnostics: &str,
) {
    assert_eq!(got.0, status, "{case}: {}", got.2);
    let issue = &got.2["issue"][0];
    assert_eq!(got.2["resourceType"], "OperationOutcome", "{case}");
    assert_eq!(issue["severity"], "error", "{case}");
    assert_eq!(issue["code"], code, "{case}: {}", got.2);
    assert_eq!(issue["details"]["coding"][0]["code"], spine, "{case}");
    assert_eq!(issue["details"]["coding"][0]["display"], display, "{case}");
    assert_eq!(issue["diagnostics"], diagnostics, "{case}");
}

#[tokio::test]
async fn a_fhir_api_refuses_each_bad_authorization_with_its_diagnostics() {
    let n = node(Options::default()).await;
    let p = "/test-api/Patient";
    type Case<'a> = (&'a str, Vec<(&'a str, &'a str)>, &'a str);
    let cases: Vec<Case> = vec![
        ("no header", vec![], "Missing Authorization header"),
        (
            "empty header",
            vec![("Authorization", "")],
            "Empty Authorization header",
        ),
        (
            "one word",
            vec![("Authorization", "Bearer")],
            "Missing access token",
        ),
        (
            "not Bearer",
            vec![("Authorization", "Basic abc")],
            "Invalid token type 'Basic', must be 'Bearer'",
        ),
        (
            "unknown token",
            vec![("Authorization", "Bearer Gzjxmf2rBoy8Amyba_I8R2njcOU")],
            "Invalid Access Token",
        ),
    ];
    for (case, headers, diagnostics) in cases {
        let got = get(&n, p, &headers).await;
        assert_fhir(
            case,
            &got,
            401,
            "forbidden",
            "ACCESS_DENIED",
            "Access Denied - Unauthorised",
            diagnostics,
        );
        assert_eq!(got.1["content-type"], "application/fhir+json", "{case}");
    }
    // An expired token (its record outlives it, so it is told apart from an unknown one).
    let record = json!({"client_id": "other-app", "kind": "application",
                        "scopes": ["urn:nhsd:apim:app:level3:test-api"], "expires_at": now() - 1});
    let t = chrono::Utc::now();
    n.coord
        .put(
            frontdoor::token::SCOPE_ACCESS,
            "expired-token",
            &record.to_string(),
            t + chrono::TimeDelta::hours(1),
        )
        .await
        .unwrap();
    let got = get(&n, p, &[("Authorization", "Bearer expired-token")]).await;
    assert_fhir(
        "expired",
        &got,
        401,
        "forbidden",
        "ACCESS_DENIED",
        "Access Denied - Unauthorised",
        "Access Token expired",
    );
}

#[tokio::test]
async fn a_plain_api_answers_with_the_platform_faults() {
    let n = node(Options::default()).await;
    let p = "/hello-world/hello/application";
    let invalid = json!({"fault": {"faultstring": "Invalid access token", "detail": {"errorcode": "oauth.v2.InvalidAccessToken"}}});
    assert_eq!(get(&n, p, &[]).await.2, invalid);
    assert_eq!(get(&n, p, &[("Authorization", "Bearer")]).await.2, invalid);
    let unknown = get(&n, p, &[("Authorization", "Bearer nope")]).await;
    assert_eq!(
        (unknown.0, unknown.2),
        (
            401,
            json!({"fault": {"faultstring": "Invalid Access Token", "detail": {"errorcode": "keymanagement.service.invalid_access_token"}}})
        )
    );
    let record = json!({"client_id": "other-app", "kind": "application",
                        "scopes": ["urn:nhsd:apim:app:level3:hello-world"], "expires_at": now() - 1});
    let t = chrono::Utc::now();
    n.coord
        .put(
            frontdoor::token::SCOPE_ACCESS,
            "old",
            &record.to_string(),
            t + chrono::TimeDelta::hours(1),
        )
        .await
        .unwrap();
    let expired = get(&n, p, &[("Authorization", "Bearer old")]).await;
    assert_eq!(
        expired.2,
        json!({"fault": {"faultstring": "Access Token expired", "detail": {"errorcode": "keymanagement.service.access_token_expired"}}})
    );
    // The open endpoint needs nothing; the application one works with an app token.
    assert_eq!(
        get(&n, "/hello-world/hello/world", &[]).await.2,
        json!({"message": "Hello World!"})
    );
    let token = app_token(&n, "other-app").await;
    let auth = format!("Bearer {token}");
    assert_eq!(
        get(&n, p, &[("Authorization", &auth)]).await.2,
        json!({"message": "Hello Application!"})
    );
    // An app token is not a user token.
    assert_eq!(
        get(&n, "/hello-world/hello/user", &[("Authorization", &auth)])
            .await
            .0,
        401
    );
}

#[tokio::test]
async fn request_and_correlation_ids_come_back_on_answers_and_refusals() {
    let n = node(Options::default()).await;
    let token = app_token(&n, "other-app").await;
    let auth = format!("Bearer {token}");
    let rid = uuid::Uuid::new_v4().to_string();
    for headers in [
        vec![
            ("X-Request-ID", rid.as_str()),
            ("X-Correlation-ID", "corr-1"),
            ("Authorization", auth.as_str()),
        ],
        vec![
            ("X-Request-ID", rid.as_str()),
            ("X-Correlation-ID", "corr-1"),
        ],
    ] {
        let got = get(&n, "/test-api/Patient", &headers).await;
        assert_eq!(got.1["x-request-id"], rid.as_str(), "status {}", got.0);
        assert_eq!(got.1["x-correlation-id"], "corr-1", "status {}", got.0);
    }
    let got = get(
        &n,
        "/hello-world/hello/world",
        &[("X-Request-ID", rid.as_str())],
    )
    .await;
    assert_eq!(got.1["x-request-id"], rid.as_str());
}

#[tokio::test]
async fn the_service_receives_the_gateway_headers_and_not_the_clients_copies() {
    let n = node(Options::default()).await;
    let token = app_token(&n, "other-app").await;
    let auth = format!("Bearer {token}");
    let rid = uuid::Uuid::new_v4().to_string();
    let got = get(
        &n,
        "/test-api/Patient",
        &[
            ("Authorization", &auth),
            ("X-Request-ID", &rid),
            ("X-Correlation-ID", "c-42"),
            ("NHSD-ASID", "forged"),
            ("Prefer", "respond-async"),
            ("NHSE-PDS-Privileged-Access", "true"),
            ("NHSD-Session-URID", "555254242106"),
        ],
    )
    .await;
    assert_eq!(got.0, 200, "{}", got.2);
    let h = &got.2["headers"];
    assert_eq!(got.2["mode"], "application-restricted");
    assert_eq!(h["nhsd-asid"], "200000000123");
    assert_eq!(h["nhsd-request-id"], rid.as_str());
    let corr = h["nhsd-correlation-id"].as_str().unwrap();
    assert!(corr.starts_with(&format!("{rid}.c-42.")), "{corr}");
    assert_eq!(h["nhsd-identity-uuid"], "");
    assert!(h.get("prefer").is_none());
    assert!(
        h.get("nhsd-session-urid").is_none(),
        "an app has no role to claim"
    );
    assert!(
        h.get("nhsd-session-urid").is_none(),
        "an app has no role to claim"
    );
    assert!(h.get("nhse-pds-privileged-access").is_none());
    assert_eq!(h["nhse-pds-custom-attributes"], r#"{"x":1}"#);
    assert!(h.get("x-correlation-id").is_none());
    // A CIS2 user: user-restricted, with the user's id and issuer.
    let (_, body) = exchange(&n, "other-app", &id_token(&cis2_claims())).await;
    let auth = format!("Bearer {}", body["access_token"].as_str().unwrap());
    let got = get(&n, "/test-api/Patient", &[("Authorization", &auth)]).await;
    assert_eq!(got.2["mode"], "user-restricted");
    assert_eq!(got.2["headers"]["nhsd-identity-uuid"], "787807429511");
    assert_eq!(got.2["headers"]["nhsd-identity-idp"], CIS2_ISSUER);
    // An NHS login P9 user: patient access, with level and NHS number.
    let (_, body) = exchange(&n, "other-app", &id_token(&nhs_login_claims("P9"))).await;
    let auth = format!("Bearer {}", body["access_token"].as_str().unwrap());
    let got = get(&n, "/test-api/Patient", &[("Authorization", &auth)]).await;
    assert_eq!(got.2["mode"], "patient-access");
    assert_eq!(got.2["headers"]["nhsd-nhslogin-user"], "P9:9000000009");
    // Privileged application access.
    let token = app_token(&n, "privileged-app").await;
    let got = get(
        &n,
        "/test-api/Patient",
        &[("Authorization", &format!("Bearer {token}"))],
    )
    .await;
    assert_eq!(got.2["mode"], "privileged-application-restricted");
    assert_eq!(got.2["headers"]["nhse-pds-privileged-access"], "true");
}

#[tokio::test]
async fn a_p5_citizen_is_refused_and_an_unsubscribed_app_is_turned_away() {
    let n = node(Options::default()).await;
    let (_, body) = exchange(&n, "other-app", &id_token(&nhs_login_claims("P5"))).await;
    let auth = format!("Bearer {}", body["access_token"].as_str().unwrap());
    let got = get(&n, "/test-api/Patient", &[("Authorization", &auth)]).await;
    assert_fhir(
        "P5",
        &got,
        403,
        "forbidden",
        "ACCESS_DENIED",
        "Patient cannot perform this action",
        "Patient cannot perform this action",
    );
    let token = app_token(&n, "unsubscribed-app").await;
    let got = get(
        &n,
        "/test-api/Patient",
        &[("Authorization", &format!("Bearer {token}"))],
    )
    .await;
    assert_fhir(
        "unsubscribed",
        &got,
        401,
        "forbidden",
        "ACCESS_DENIED",
        "Access Denied - Unauthorised",
        "Invalid Access Token",
    );
}

#[tokio::test]
async fn quotas_and_spike_arrests_answer_429_with_the_platform_texts() {
    let n = node(Options::default()).await;
    let token = app_token(&n, "quota-app").await;
    let auth = format!("Bearer {token}");
    for _ in 0..2 {
        assert_eq!(
            get(&n, "/test-api/Patient", &[("Authorization", &auth)])
                .await
                .0,
            200
        );
    }
    let got = get(&n, "/test-api/Patient", &[("Authorization", &auth)]).await;
    assert_fhir("quota", &got, 429, "value", "TOO_MANY_REQUESTS", "Too many requests",
        "Your application, Quota App, has exceeded its quota of 2 requests every 1 hour(s) and is being rate limited. Please see: https://digital.nhs.uk/developer/guides-and-documentation/reference-guide#rate-limits for more details.");
    assert!(got.1.get("retry-after").is_none());
    // Another app is not limited by it.
    let other = app_token(&n, "other-app").await;
    assert_eq!(
        get(
            &n,
            "/test-api/Patient",
            &[("Authorization", &format!("Bearer {other}"))]
        )
        .await
        .0,
        200
    );
    // 2 per minute, counted per clock minute: keep clear of its end.
    if now() % 60 > 55 {
        tokio::time::sleep(std::time::Duration::from_secs(6)).await;
    }
    let token = app_token(&n, "spike-app").await;
    let auth = format!("Bearer {token}");
    for _ in 0..2 {
        assert_eq!(
            get(&n, "/test-api/Patient", &[("Authorization", &auth)])
                .await
                .0,
            200
        );
    }
    let got = get(&n, "/test-api/Patient", &[("Authorization", &auth)]).await;
    assert_fhir("spike", &got, 429, "value", "TOO_MANY_REQUESTS", "Too many requests",
        "Your application, Spike App, has created a spike in traffic and is being rate limited. Please reduce the frequency of your requests. Please see: https://digital.nhs.uk/developer/guides-and-documentation/reference-guide#rate-limits for more details.");
}

#[tokio::test]
async fn a_cors_preflight_is_answered_by_the_gateway() {
    let n = node(Options::default()).await;
    let r = reqwest::Client::new()
        .request(reqwest::Method::OPTIONS, n.url("/test-api/Patient"))
        .header("Origin", "https://app.example")
        .header("Access-Control-Request-Method", "GET")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let h = r.headers();
    assert_eq!(h["access-control-allow-origin"], "https://app.example");
    assert_eq!(h["access-control-max-age"], "3628800");
    assert_eq!(
        h["access-control-allow-methods"],
        "GET, PUT, POST, PATCH, DELETE"
    );
    assert_eq!(h["access-control-allow-headers"], "origin, x-requested-with, accept, content-type, if-match, nhsd-session-urid, authorization, x-correlation-id, x-request-id, nhsd-end-user-organisation-ods");
}
