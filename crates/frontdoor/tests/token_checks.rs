//! Every check of the token endpoint (frontdoor API.md 3, 4.2, 5, 6), each asserting the
//! status and the exact `error` and `error_description` a client compares.

mod common;

use common::*;
use serde_json::json;

#[tokio::test]
async fn the_endpoint_dispatches_and_refuses_as_the_platform_does() {
    let n = node(Options::default()).await;
    let c = reqwest::Client::new();
    let r = c
        .post(n.token_url())
        .json(&json!({"grant_type": "client_credentials"}))
        .send()
        .await
        .unwrap();
    let got = (r.status().as_u16(), r.json().await.unwrap());
    assert_oauth(
        "JSON body",
        &got,
        415,
        "invalid_request",
        "Content-Type header must be application/x-www-form-urlencoded",
    );
    assert_oauth(
        "no grant_type",
        &post_form(&n, &[]).await,
        400,
        "invalid_request",
        "grant_type is missing",
    );
    assert_oauth(
        "password grant",
        &post_form(&n, &[("grant_type", "password")]).await,
        400,
        "unsupported_grant_type",
        "grant_type is invalid",
    );
    assert_oauth(
        "token exchange with another subject_token_type",
        &post_form(&n, &[("grant_type", TOKEN_EXCHANGE), ("subject_token_type", "urn:x")]).await,
        400,
        "invalid_request",
        "missing or invalid subject_token_type - must be 'urn:ietf:params:oauth:token-type:id_token'",
    );
    let get = c.get(n.token_url()).send().await.unwrap();
    assert_eq!(get.status(), 405);
    let other = c.get(n.url("/oauth2/nothing-here")).send().await.unwrap();
    assert_eq!(other.status(), 404);
    let body: serde_json::Value = other.json().await.unwrap();
    assert_eq!(
        (body["error"].as_str(), body["error_description"].as_str()),
        (Some("invalid_request"), Some("Not Found"))
    );
}

/// API.md 4.2 rows 1–14, 19–22: one case each, in the table's order.
#[tokio::test]
async fn each_client_assertion_check_gives_its_status_and_text() {
    let n = node(Options::default()).await;
    let url = n.token_url();
    let (h, c) = assertion_parts("other-app", &url);
    let with = |hp: serde_json::Value, cp: serde_json::Value| {
        let mut h = h.clone();
        let mut c = c.clone();
        for (k, v) in hp.as_object().unwrap() {
            if v.is_null() {
                h.as_object_mut().unwrap().remove(k);
            } else {
                h[k] = v.clone();
            }
        }
        for (k, v) in cp.as_object().unwrap() {
            if v.is_null() {
                c.as_object_mut().unwrap().remove(k);
            } else {
                c[k] = v.clone();
            }
        }
        c["jti"] = c
            .get("jti")
            .cloned()
            .map(|j| {
                if j.is_string() {
                    json!(format!("{}-{}", j.as_str().unwrap(), uuid::Uuid::new_v4()))
                } else {
                    j
                }
            })
            .unwrap_or(serde_json::Value::Null);
        if c["jti"].is_null() {
            c.as_object_mut().unwrap().remove("jti");
        }
        jwt(&h, &c, OTHER_KEY)
    };
    let bad = "invalid_request";
    let good = with(json!({}), json!({}));
    // Row 1
    let got = post_form(
        &n,
        &[
            ("grant_type", "client_credentials"),
            ("client_assertion", &good),
        ],
    )
    .await;
    assert_oauth("1 no type", &got, 400, bad, "Missing or invalid client_assertion_type - must be 'urn:ietf:params:oauth:client-assertion-type:jwt-bearer'");
    let got = post_form(
        &n,
        &[
            ("grant_type", "client_credentials"),
            ("client_assertion_type", "urn:other"),
            ("client_assertion", &good),
        ],
    )
    .await;
    assert_oauth("1 wrong type", &got, 400, bad, "Missing or invalid client_assertion_type - must be 'urn:ietf:params:oauth:client-assertion-type:jwt-bearer'");
    // Row 2
    let got = post_form(
        &n,
        &[
            ("grant_type", "client_credentials"),
            ("client_assertion_type", ASSERTION_TYPE),
        ],
    )
    .await;
    assert_oauth("2", &got, 400, bad, "Missing client_assertion");
    let cases: Vec<(&str, String, u16, &str, &str)> = vec![
        ("3 malformed", "not-a-jwt".into(), 400, bad, "Malformed JWT in client_assertion"),
        ("4 RS256", with(json!({"alg": "RS256"}), json!({})), 400, bad, "Invalid 'alg' header in client_assertion JWT - unsupported JWT algorithm - must be 'RS512'"),
        ("4 HS512", with(json!({"alg": "HS512"}), json!({})), 400, bad, "Invalid 'alg' header in client_assertion JWT - unsupported JWT algorithm - must be 'RS512'"),
        ("4 no alg", with(json!({"alg": null}), json!({})), 400, bad, "Invalid 'alg' header in client_assertion JWT - unsupported JWT algorithm - must be 'RS512'"),
        ("5 expired", with(json!({}), json!({"exp": now() - 10})), 400, bad, "Invalid 'exp' claim in client_assertion JWT - JWT has expired"),
        ("6 no kid", with(json!({"kid": null}), json!({})), 400, bad, "Missing 'kid' header in client_assertion JWT"),
        ("7 no typ", with(json!({"typ": null}), json!({})), 400, bad, "Invalid 'typ' header in client_assertion JWT - must be 'JWT'"),
        ("7 typ JOSE", with(json!({"typ": "JOSE"}), json!({})), 400, bad, "Invalid 'typ' header in client_assertion JWT - must be 'JWT'"),
        ("8 no exp", with(json!({}), json!({"exp": null})), 400, bad, "Missing 'exp' claim in client_assertion JWT"),
        ("9 exp text", with(json!({}), json!({"exp": (now() + 60).to_string()})), 400, bad, "Invalid 'exp' claim in client_assertion JWT - must be an integer"),
        ("10 iss != sub", with(json!({}), json!({"iss": "someone-else"})), 400, bad, "Missing or non-matching 'iss'/'sub' claims in client_assertion JWT"),
        ("10 no sub", with(json!({}), json!({"sub": null})), 400, bad, "Missing or non-matching 'iss'/'sub' claims in client_assertion JWT"),
        ("11 no jti", with(json!({}), json!({"jti": null})), 400, bad, "Missing 'jti' claim in client_assertion JWT"),
        ("12 jti number", with(json!({}), json!({"jti": 12345})), 400, bad, "Invalid 'jti' claim in client_assertion JWT - must be a unique string value such as a GUID"),
        ("14 exp too far", with(json!({}), json!({"exp": now() + 600})), 400, bad, "Invalid 'exp' claim in client_assertion JWT - more than 5 minutes in future"),
        ("15 unknown app", { let (h, mut c) = assertion_parts("nobody", &url); c["iss"] = json!("nobody"); jwt(&h, &c, OTHER_KEY) }, 401, bad, "Invalid 'iss'/'sub' claims in client_assertion JWT"),
        ("17 no keys", { let (h, c) = assertion_parts("no-keys-app", &url); jwt(&h, &c, OTHER_KEY) }, 403, "public_key error", "You need to register a public key to use this authentication method - please contact support to configure"),
        ("18 closed port", { let (h, c) = assertion_parts("closed-port-app", &url); jwt(&h, &c, OTHER_KEY) }, 403, "public_key error", "The JWKS endpoint, for your client_assertion can't be reached"),
        ("18 no path", { let (h, c) = assertion_parts("no-path-app", &url); jwt(&h, &c, OTHER_KEY) }, 403, "public_key error", "The JWKS endpoint, for your client_assertion can't be reached"),
        ("18 endless body", { let (h, c) = assertion_parts("huge-jwks-app", &url); jwt(&h, &c, OTHER_KEY) }, 403, "public_key error", "The JWKS endpoint, for your client_assertion can't be reached"),
        ("18 HTTP 500", { let (h, c) = assertion_parts("broken-jwks-app", &url); jwt(&h, &c, OTHER_KEY) }, 403, "public_key error", "The JWKS endpoint, for your client_assertion can't be reached"),
        ("19 unknown kid", with(json!({"kid": "no-such-key"}), json!({})), 401, bad, "Invalid 'kid' header in client_assertion JWT - no matching public key"),
        ("20 wrong aud", with(json!({}), json!({"aud": "https://api.service.nhs.uk/oauth2/token"})), 401, bad, "Missing or invalid 'aud' claim in client_assertion JWT"),
        ("20 no aud", with(json!({}), json!({"aud": null})), 401, bad, "Missing or invalid 'aud' claim in client_assertion JWT"),
        ("21 wrong key", { let (h, c) = assertion_parts("other-app", &url); jwt(&h, &c, DEMO_KEY) }, 401, "public_key error", "JWT signature verification failed"),
        ("22 no app-level scope", { let (h, c) = assertion_parts("user-only-app", &url); jwt(&h, &c, OTHER_KEY) }, 401, "unauthorized_client", "you have tried to request authorization but your application is not configured to use this authorization grant type"),
        ("revoked app", { let (h, c) = assertion_parts("revoked-app", &url); jwt(&h, &c, OTHER_KEY) }, 401, "access_denied", "The developer app associated with the API key is not approved or revoked"),
    ];
    for (case, a, status, error, text) in cases {
        assert_oauth(case, &client_credentials(&n, &a).await, status, error, text);
    }
    // Row 13: the same jti twice.
    let once = with(json!({}), json!({}));
    assert_eq!(client_credentials(&n, &once).await.0, 200);
    assert_oauth(
        "13 replay",
        &client_credentials(&n, &once).await,
        400,
        bad,
        "Non-unique 'jti' claim in client_assertion JWT",
    );
    // A failure after the record still burns the jti (API.md 4.2): the wrong-key
    // assertion's jti cannot be used again even with the right key.
    let (h, c) = assertion_parts("other-app", &url);
    assert_eq!(client_credentials(&n, &jwt(&h, &c, DEMO_KEY)).await.0, 401);
    assert_oauth(
        "burnt jti",
        &client_credentials(&n, &jwt(&h, &c, OTHER_KEY)).await,
        400,
        bad,
        "Non-unique 'jti' claim in client_assertion JWT",
    );
}

pub const DEMO_KEY: &str = include_str!("../demo/private.pem");

#[tokio::test]
async fn a_good_assertion_gets_the_platform_answer_with_string_numbers() {
    let n = node(Options::default()).await;
    let before = now() * 1000;
    let (status, body) = client_credentials(&n, &assertion("inline-app", &n.token_url())).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["token_type"], "Bearer");
    assert_eq!(body["expires_in"], "599");
    let issued: i64 = body["issued_at"].as_str().unwrap().parse().unwrap();
    assert!(issued >= before && issued <= now() * 1000 + 1000);
    assert!(body.get("refresh_token").is_none());
    assert!(body["access_token"].as_str().unwrap().len() >= 32);
    // `_access_token_expiry_ms` only shortens the lifetime.
    for (asked, expected) in [("100000", "99"), ("1000000", "599")] {
        let a = assertion("inline-app", &n.token_url());
        let (s, b) = post_form(
            &n,
            &[
                ("grant_type", "client_credentials"),
                ("client_assertion_type", ASSERTION_TYPE),
                ("client_assertion", &a),
                ("_access_token_expiry_ms", asked),
                ("scope", "ignored"),
            ],
        )
        .await;
        assert_eq!(
            (s, b["expires_in"].as_str()),
            (200, Some(expected)),
            "{asked}: {b}"
        );
    }
}

#[tokio::test]
async fn the_token_endpoint_limits_each_app() {
    let n = node(Options {
        token_quota_per_minute: 2,
        ..Options::default()
    })
    .await;
    // The count is per clock minute: keep clear of the boundary.
    if now() % 60 > 55 {
        tokio::time::sleep(std::time::Duration::from_secs(6)).await;
    }
    for _ in 0..2 {
        assert_eq!(
            client_credentials(&n, &assertion("other-app", &n.token_url()))
                .await
                .0,
            200
        );
    }
    let got = client_credentials(&n, &assertion("other-app", &n.token_url())).await;
    assert_oauth("16", &got, 429, "rate_limit_exceeded", "Your application, Other App, has exceeded its quota of 2 requests every 1 minute(s) and is being rate limited. Please see: https://digital.nhs.uk/developer/guides-and-documentation/reference-guide#rate-limits for more details.");
    // Another app is not affected.
    assert_eq!(
        client_credentials(&n, &assertion("inline-app", &n.token_url()))
            .await
            .0,
        200
    );
}

/// API.md 5: token exchange, each check in order.
#[tokio::test]
async fn each_token_exchange_check_gives_its_status_and_text() {
    let n = node(Options::default()).await;
    let bad = "invalid_request";
    let url = n.token_url();
    // Row 1: the assertion type comes first, even before grant_type.
    let got = post_form(
        &n,
        &[
            ("subject_token_type", ID_TOKEN),
            ("grant_type", TOKEN_EXCHANGE),
        ],
    )
    .await;
    assert_oauth("1", &got, 400, bad, "Missing or invalid client_assertion_type - must be 'urn:ietf:params:oauth:client-assertion-type:jwt-bearer'");
    // Row 2: any other grant_type with an ID-token subject is invalid_request here.
    let a = assertion("other-app", &url);
    let got = post_form(
        &n,
        &[
            ("subject_token_type", ID_TOKEN),
            ("grant_type", "client_credentials"),
            ("client_assertion_type", ASSERTION_TYPE),
            ("client_assertion", &a),
        ],
    )
    .await;
    assert_oauth("2", &got, 400, bad, "grant_type is invalid");
    // Row 3: the client assertion's own checks, same texts.
    let got = post_form(
        &n,
        &[
            ("subject_token_type", ID_TOKEN),
            ("grant_type", TOKEN_EXCHANGE),
            ("client_assertion_type", ASSERTION_TYPE),
            ("client_assertion", "x.y"),
        ],
    )
    .await;
    assert_oauth("3", &got, 400, bad, "Malformed JWT in client_assertion");
    // Row 4
    let got = post_form(
        &n,
        &[
            ("subject_token_type", ID_TOKEN),
            ("grant_type", TOKEN_EXCHANGE),
            ("client_assertion_type", ASSERTION_TYPE),
            ("client_assertion", &assertion("other-app", &url)),
        ],
    )
    .await;
    assert_oauth("4 missing", &got, 400, bad, "Missing subject_token");
    assert_oauth(
        "4 malformed",
        &exchange(&n, "other-app", "garbage").await,
        400,
        bad,
        "Malformed JWT in subject_token",
    );
    let claims = cis2_claims();
    let token_with = |h: serde_json::Value, c: serde_json::Value| {
        let mut hh = idp_header();
        let mut cc = claims.clone();
        for (k, v) in h.as_object().unwrap() {
            if v.is_null() {
                hh.as_object_mut().unwrap().remove(k);
            } else {
                hh[k] = v.clone();
            }
        }
        for (k, v) in c.as_object().unwrap() {
            if v.is_null() {
                cc.as_object_mut().unwrap().remove(k);
            } else {
                cc[k] = v.clone();
            }
        }
        jwt(&hh, &cc, IDP_KEY)
    };
    let cases = vec![
        ("5", token_with(json!({"kid": null}), json!({})), 400, bad, "Missing 'kid' header in subject_token JWT"),
        ("6", token_with(json!({"typ": "jose"}), json!({})), 400, bad, "Invalid 'typ' header in subject_token JWT - must be 'JWT'"),
        ("7", token_with(json!({"alg": null}), json!({})), 400, bad, "Missing 'alg' header in subject_token JWT"),
        ("8 missing", token_with(json!({}), json!({"exp": null})), 400, bad, "Missing 'exp' claim in subject_token JWT"),
        ("8 text", token_with(json!({}), json!({"exp": "soon"})), 400, bad, "Invalid 'exp' claim in subject_token JWT - must be an integer"),
        ("8 passed", token_with(json!({}), json!({"exp": now() - 5})), 400, bad, "Invalid 'exp' claim in subject_token JWT - JWT has expired"),
        ("9", token_with(json!({}), json!({"iss": null})), 400, bad, "Missing 'iss' claim in subject_token JWT"),
        ("10", token_with(json!({}), json!({"aud": null})), 401, bad, "Missing 'aud' claim in subject_token JWT"),
        ("12", token_with(json!({}), json!({"iss": "https://elsewhere.example"})), 400, bad, "Missing or non-matching 'iss' claim in subject_token JWT"),
        ("13", token_with(json!({"kid": "rotated-away"}), json!({})), 401, bad, "Invalid 'kid' header in subject_token JWT - no matching public key"),
        ("14", { let h = idp_header(); jwt(&h, &claims, OTHER_KEY) }, 401, "public_key error", "JWT signature verification failed"),
        ("16 aal1", token_with(json!({}), json!({"authentication_assurance_level": "1"})), 401, "unauthorized_client", "you have tried to request authorization but your application is not configured to use this authorization grant type"),
    ];
    for (case, subject, status, error, text) in cases {
        assert_oauth(
            case,
            &exchange(&n, "other-app", &subject).await,
            status,
            error,
            text,
        );
    }
    // Row 11: delegated NHS login access, the actor's own token checked too.
    let act = |h: serde_json::Value, c: serde_json::Value| {
        let mut claims = nhs_login_claims("P9");
        claims["act"] = json!({"sub": jwt(&h, &c, IDP_KEY)});
        id_token(&claims)
    };
    let actor = nhs_login_claims("P9");
    let mut no_kid = idp_header();
    no_kid.as_object_mut().unwrap().remove("kid");
    assert_oauth(
        "11 kid",
        &exchange(&n, "other-app", &act(no_kid, actor.clone())).await,
        400,
        bad,
        "Missing 'kid' header in act.sub JWT",
    );
    let mut no_number = actor.clone();
    no_number.as_object_mut().unwrap().remove("nhs_number");
    assert_oauth(
        "11 nhs_number",
        &exchange(&n, "other-app", &act(idp_header(), no_number)).await,
        400,
        bad,
        "Missing 'nhs_number' claim in act.sub JWT",
    );
    let mut no_aud = actor.clone();
    no_aud.as_object_mut().unwrap().remove("aud");
    assert_oauth(
        "11 aud",
        &exchange(&n, "other-app", &act(idp_header(), no_aud)).await,
        400,
        bad,
        "Missing 'aud' claim in act.sub JWT",
    );
    assert_eq!(
        exchange(&n, "other-app", &act(idp_header(), actor)).await.0,
        200
    );
    // Row 16 for NHS login: P5 gets the P5 scope; an app without one is refused.
    assert_eq!(
        exchange(&n, "other-app", &id_token(&nhs_login_claims("P5")))
            .await
            .0,
        200
    );
    assert_oauth("16 P0", &exchange(&n, "other-app", &id_token(&nhs_login_claims("P0"))).await, 401, "unauthorized_client", "you have tried to request authorization but your application is not configured to use this authorization grant type");
}

#[tokio::test]
async fn an_unreachable_identity_provider_is_an_unknown_error() {
    let n = node(Options {
        idp_jwks_path: "/broken/jwks",
        ..Options::default()
    })
    .await;
    assert_oauth("15", &exchange(&n, "other-app", &id_token(&cis2_claims())).await, 500, "unknown_error", "An unknown error occurred processing this request. Contact us for assistance diagnosing this issue: https://digital.nhs.uk/developer/help-and-support quoting Message ID");
}

#[tokio::test]
async fn an_exchanged_cis2_token_answers_as_the_platform_and_refreshes_once() {
    let n = node(Options::default()).await;
    let (status, body) = exchange(&n, "other-app", &id_token(&cis2_claims())).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        body["issued_token_type"],
        "urn:ietf:params:oauth:token-type:access_token"
    );
    assert_eq!(body["expires_in"], "599");
    assert_eq!(body["token_type"], "Bearer");
    assert_eq!(body["refresh_count"], "0");
    assert_eq!(body["refresh_token_expires_in"], "43199");
    let refresh = body["refresh_token"].as_str().unwrap().to_string();
    let form = |t: &str| {
        vec![
            ("grant_type", "refresh_token".to_string()),
            ("client_id", "other-app".into()),
            ("client_secret", "other-secret".into()),
            ("refresh_token", t.to_string()),
        ]
    };
    let send = |f: Vec<(&'static str, String)>| {
        let n = &n;
        async move {
            let pairs: Vec<(&str, &str)> = f.iter().map(|(k, v)| (*k, v.as_str())).collect();
            post_form(n, &pairs).await
        }
    };
    let (s, renewed) = send(form(&refresh)).await;
    assert_eq!(s, 200, "{renewed}");
    assert_eq!(renewed["refresh_count"], "1");
    assert_ne!(renewed["refresh_token"], body["refresh_token"]);
    assert_oauth(
        "used twice",
        &send(form(&refresh)).await,
        401,
        "invalid_grant",
        "refresh_token is invalid",
    );
    let next = renewed["refresh_token"].as_str().unwrap();
    let (s, again) = send(form(next)).await;
    assert_eq!((s, again["refresh_count"].as_str()), (200, Some("2")));
}

/// API.md 6: the refresh grant's checks.
#[tokio::test]
async fn each_refresh_check_gives_its_status_and_text() {
    let n = node(Options::default()).await;
    let bad = "invalid_request";
    let rt = ("grant_type", "refresh_token");
    assert_oauth(
        "client_id missing",
        &post_form(&n, &[rt, ("client_secret", "x"), ("refresh_token", "y")]).await,
        401,
        bad,
        "client_id is missing",
    );
    assert_oauth(
        "client_secret missing",
        &post_form(
            &n,
            &[rt, ("client_id", "other-app"), ("refresh_token", "y")],
        )
        .await,
        401,
        bad,
        "client_secret is missing",
    );
    assert_oauth(
        "secret wrong",
        &post_form(
            &n,
            &[
                rt,
                ("client_id", "other-app"),
                ("client_secret", "nope"),
                ("refresh_token", "y"),
            ],
        )
        .await,
        401,
        "invalid_client",
        "client_id or client_secret is invalid",
    );
    assert_oauth(
        "client unknown",
        &post_form(
            &n,
            &[
                rt,
                ("client_id", "nobody"),
                ("client_secret", "nope"),
                ("refresh_token", "y"),
            ],
        )
        .await,
        401,
        "invalid_client",
        "client_id or client_secret is invalid",
    );
    assert_oauth(
        "refresh_token missing",
        &post_form(
            &n,
            &[
                rt,
                ("client_id", "other-app"),
                ("client_secret", "other-secret"),
            ],
        )
        .await,
        400,
        bad,
        "refresh_token is missing",
    );
    assert_oauth(
        "refresh_token unknown",
        &post_form(
            &n,
            &[
                rt,
                ("client_id", "other-app"),
                ("client_secret", "other-secret"),
                ("refresh_token", "never-issued"),
            ],
        )
        .await,
        401,
        "invalid_grant",
        "refresh_token is invalid",
    );
    assert_oauth(
        "revoked app",
        &post_form(
            &n,
            &[
                rt,
                ("client_id", "revoked-app"),
                ("client_secret", "s"),
                ("refresh_token", "y"),
            ],
        )
        .await,
        401,
        "access_denied",
        "The developer app associated with the API key is not approved or revoked",
    );
    // Past the refresh period (12 h from the first token): put such a record in the store.
    let (_, body) = exchange(&n, "other-app", &id_token(&cis2_claims())).await;
    let token = body["refresh_token"].as_str().unwrap();
    let now_t = chrono::Utc::now();
    let stored = n
        .coord
        .get(frontdoor::token::SCOPE_REFRESH, token, now_t)
        .await
        .unwrap()
        .unwrap();
    let mut record: serde_json::Value = serde_json::from_str(&stored).unwrap();
    record["refresh_until"] = json!(now() - 1);
    n.coord
        .put(
            frontdoor::token::SCOPE_REFRESH,
            token,
            &record.to_string(),
            now_t + chrono::TimeDelta::hours(1),
        )
        .await
        .unwrap();
    assert_oauth(
        "period over",
        &post_form(
            &n,
            &[
                rt,
                ("client_id", "other-app"),
                ("client_secret", "other-secret"),
                ("refresh_token", token),
            ],
        )
        .await,
        401,
        "invalid_grant",
        "refresh token refresh period has expired",
    );
    // Another app's refresh token is not this app's, and trying does not spend it.
    let (_, body) = exchange(&n, "other-app", &id_token(&cis2_claims())).await;
    let theirs = body["refresh_token"].as_str().unwrap();
    let got = post_form(
        &n,
        &[
            rt,
            ("client_id", "second-app"),
            ("client_secret", "second-secret"),
            ("refresh_token", theirs),
        ],
    )
    .await;
    assert_oauth(
        "another app's token",
        &got,
        401,
        "invalid_grant",
        "refresh_token is invalid",
    );
    let got = post_form(
        &n,
        &[
            rt,
            ("client_id", "other-app"),
            ("client_secret", "other-secret"),
            ("refresh_token", theirs),
        ],
    )
    .await;
    assert_eq!(got.0, 200, "{}", got.1);
    // The authorization-code grant's form checks.
    let ac = ("grant_type", "authorization_code");
    assert_oauth(
        "code: redirect_uri",
        &post_form(&n, &[ac, ("client_id", "other-app")]).await,
        400,
        bad,
        "redirect_uri is missing",
    );
    assert_oauth(
        "code: code",
        &post_form(
            &n,
            &[
                ac,
                ("client_id", "other-app"),
                ("redirect_uri", "https://x/cb"),
            ],
        )
        .await,
        400,
        bad,
        "authorization_code is missing",
    );
}

#[tokio::test]
async fn ping_is_open_and_status_needs_the_api_key() {
    let n = node(Options::default()).await;
    let c = reqwest::Client::new();
    assert_eq!(
        c.get(n.url("/oauth2/_ping")).send().await.unwrap().status(),
        200
    );
    let r = c.get(n.url("/oauth2/_status")).send().await.unwrap();
    assert_eq!(r.status(), 401);
    let body: serde_json::Value = r.json().await.unwrap();
    assert_eq!(
        body,
        json!({"error": "Access Denied", "error_description": "Invalid api key for _status monitoring endpoint"})
    );
    let r = c
        .get(n.url("/oauth2/_status"))
        .header("apikey", "status-key")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(
        r.json::<serde_json::Value>().await.unwrap()["status"],
        "pass"
    );
}

/// A token request whose body stalls is answered within the listener's body deadline
/// instead of holding its connection.
#[tokio::test]
async fn a_stalled_token_request_body_is_abandoned() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let n = node(Options {
        body_idle_timeout: std::time::Duration::from_secs(1),
        ..Options::default()
    })
    .await;
    let addr = n.base.trim_start_matches("http://").to_string();
    let mut s = tokio::net::TcpStream::connect(&addr).await.unwrap();
    s.write_all(b"POST /oauth2/token HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: 100\r\n\r\ngrant_type=").await.unwrap();
    let mut answer = vec![0u8; 1024];
    let read = tokio::time::timeout(std::time::Duration::from_secs(10), s.read(&mut answer)).await;
    let n = read.expect("answered within 10 s").unwrap();
    let head = String::from_utf8_lossy(&answer[..n]).to_string();
    assert!(head.starts_with("HTTP/1.1 4"), "{head}");
}
