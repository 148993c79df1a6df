//! A front door served on loopback for tests, with its own key fixtures (generated for
//! this project, in `tests/keys/`), a JWKS server, and a protected test API mounted
//! behind the bearer layer that echoes what the gateway handed it.
#![allow(dead_code)]

use auth_protocol::scopes::{AccessMode, AccessRule};
use axum::routing::get;
use axum::{Extension, Json, Router};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use frontdoor::bearer::{Caller, ErrorStyle, Protected};
use frontdoor::{FrontDoor, FrontDoorConfig, IdentityProvider};
use serde_json::{json, Value};
use spine_store::{Coordination, SqliteCoordination};
use std::sync::Arc;

pub const OTHER_KEY: &str = include_str!("../keys/other.pem");
pub const OTHER_JWKS: &str = include_str!("../keys/other.jwks.json");
pub const IDP_KEY: &str = include_str!("../keys/idp.pem");
pub const IDP_JWKS: &str = include_str!("../keys/idp.jwks.json");
pub const CIS2_ISSUER: &str =
    "https://cis2.example.nhs.uk:443/openam/oauth2/realms/NHSIdentity/realms/Healthcare";
pub const NHS_LOGIN_ISSUER: &str = "https://auth.sandpit.signin.nhs.uk";
pub const TEST_API: &str = "test-api";

pub fn now() -> i64 {
    chrono::Utc::now().timestamp()
}

/// Serves `routes` on a loopback port; returns its base URL.
pub async fn serve(routes: Router) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move {
        let _ = spine_http::serve(
            listener,
            routes,
            &spine_http::ListenerConfig::default(),
            None,
            std::future::pending(),
        )
        .await;
    });
    base
}

/// The JWKS documents the tests' apps and identity providers publish.
pub async fn jwks_server() -> String {
    let other: Value = serde_json::from_str(OTHER_JWKS).unwrap();
    let idp: Value = serde_json::from_str(IDP_JWKS).unwrap();
    let demo: Value = serde_json::from_str(include_str!("../../demo/jwks.json")).unwrap();
    serve(
        Router::new()
            .route(
                "/apps/other/jwks.json",
                get(move || async move { Json(other) }),
            )
            .route(
                "/apps/demo/jwks.json",
                get(move || async move { Json(demo) }),
            )
            .route("/idp/jwks", get(move || async move { Json(idp) }))
            .route(
                "/broken/jwks",
                get(|| async { (axum::http::StatusCode::INTERNAL_SERVER_ERROR, "down") }),
            )
            // A body without a length that never stops being too large.
            .route(
                "/huge/jwks",
                get(|| async {
                    let pieces = futures::stream::iter((0..64).map(|_| {
                        Ok::<_, std::io::Error>(bytes::Bytes::from(vec![b' '; 16 * 1024]))
                    }));
                    axum::body::Body::from_stream(pieces)
                }),
            ),
    )
    .await
}

/// The test API's scope table: every access mode of API.md 7.
pub fn test_api() -> Protected {
    let rule = |scope: &str, mode| AccessRule {
        scope: scope.into(),
        mode,
    };
    Protected {
        api: TEST_API,
        rules: vec![
            rule(
                "urn:nhsd:apim:app:level3:test-api",
                AccessMode::ApplicationRestricted,
            ),
            rule(
                "urn:nhsd:apim:user-nhs-cis2:aal3:test-api",
                AccessMode::UserRestricted,
            ),
            rule(
                "urn:nhsd:apim:user-nhs-login:P9:test-api",
                AccessMode::PatientAccess,
            ),
            rule(
                "urn:nhsd:apim:user-nhs-login:P5:test-api",
                AccessMode::Refused,
            ),
            rule(
                "urn:nhsd:apim:app:level3:privileged-test-api",
                AccessMode::PrivilegedApplicationRestricted,
            ),
        ],
        style: ErrorStyle::Fhir,
        default_limits: Default::default(),
    }
}

/// Echoes the access mode and every header the service received.
async fn echo(Extension(caller): Extension<Caller>, headers: axum::http::HeaderMap) -> Json<Value> {
    let mut seen = serde_json::Map::new();
    for (k, v) in &headers {
        seen.insert(k.as_str().to_string(), json!(v.to_str().unwrap_or("")));
    }
    Json(json!({"mode": caller.mode.as_str(), "headers": seen, "app": caller.app_name}))
}

pub struct Node {
    pub base: String,
    pub fd: FrontDoor,
    pub coord: Arc<dyn Coordination>,
    pub jwks: String,
    _dir: Arc<tempfile::TempDir>,
}

impl Node {
    pub fn token_url(&self) -> String {
        format!("{}/oauth2/token", self.base)
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }
}

/// The registry lines every test node knows (`{jwks}` is the JWKS server's base URL).
pub fn apps(jwks: &str) -> Vec<Value> {
    let all_scopes = json!([
        "urn:nhsd:apim:app:level3:test-api",
        "urn:nhsd:apim:user-nhs-cis2:aal3:test-api",
        "urn:nhsd:apim:user-nhs-login:P9:test-api",
        "urn:nhsd:apim:user-nhs-login:P5:test-api",
        "urn:nhsd:apim:app:level3:hello-world",
        "urn:nhsd:apim:user-nhs-cis2:aal3:hello-world",
    ]);
    let product = |scopes: Value| json!([{"name": "test", "scopes": scopes, "apis": [TEST_API, "hello-world"]}]);
    vec![
        json!({"client_id": "other-app", "name": "Other App", "client_secret": "other-secret",
               "jwks_url": format!("{jwks}/apps/other/jwks.json"), "asid": "200000000123",
               "products": product(all_scopes.clone()),
               "flags": {TEST_API: {"custom-attributes": {"x": 1}}}}),
        json!({"client_id": "inline-app", "name": "Inline App",
               "jwks": serde_json::from_str::<Value>(OTHER_JWKS).unwrap(),
               "products": product(all_scopes.clone())}),
        json!({"client_id": "no-keys-app", "name": "No Keys", "products": product(all_scopes.clone())}),
        json!({"client_id": "closed-port-app", "name": "Closed Port",
               "jwks_url": "http://127.0.0.1:9/apps/jwks.json", "products": product(all_scopes.clone())}),
        json!({"client_id": "no-path-app", "name": "No Path",
               "jwks_url": jwks, "products": product(all_scopes.clone())}),
        json!({"client_id": "broken-jwks-app", "name": "Broken",
               "jwks_url": format!("{jwks}/broken/jwks"), "products": product(all_scopes.clone())}),
        json!({"client_id": "huge-jwks-app", "name": "Huge",
               "jwks_url": format!("{jwks}/huge/jwks"), "products": product(all_scopes.clone())}),
        json!({"client_id": "second-app", "name": "Second App", "client_secret": "second-secret",
               "jwks_url": format!("{jwks}/apps/other/jwks.json"), "products": product(all_scopes.clone())}),
        json!({"client_id": "user-only-app", "name": "User Only",
               "jwks_url": format!("{jwks}/apps/other/jwks.json"),
               "products": product(json!(["urn:nhsd:apim:user-nhs-cis2:aal3:test-api"]))}),
        json!({"client_id": "revoked-app", "name": "Revoked", "status": "revoked", "client_secret": "s",
               "jwks_url": format!("{jwks}/apps/other/jwks.json"), "products": product(all_scopes.clone())}),
        json!({"client_id": "privileged-app", "name": "Privileged",
               "jwks_url": format!("{jwks}/apps/other/jwks.json"),
               "products": product(json!(["urn:nhsd:apim:app:level3:privileged-test-api"]))}),
        json!({"client_id": "unsubscribed-app", "name": "Unsubscribed",
               "jwks_url": format!("{jwks}/apps/other/jwks.json"),
               "products": [{"name": "elsewhere", "scopes": ["urn:nhsd:apim:app:level3:test-api"], "apis": ["elsewhere"]}]}),
        json!({"client_id": "quota-app", "name": "Quota App",
               "jwks_url": format!("{jwks}/apps/other/jwks.json"), "products": product(all_scopes.clone()),
               "rate_limits": {TEST_API: {"quota": {"limit": 2, "interval": "1", "timeunit": "hour", "enabled": true}}}}),
        json!({"client_id": "spike-app", "name": "Spike App",
               "jwks_url": format!("{jwks}/apps/other/jwks.json"), "products": product(all_scopes),
               "rate_limits": {TEST_API: {"spikeArrest": {"ratelimit": "2pm", "enabled": true}}}}),
    ]
}

pub struct Options {
    pub coord: Option<Arc<dyn Coordination>>,
    pub body_idle_timeout: std::time::Duration,
    pub token_quota_per_minute: u64,
    pub idp_jwks_path: &'static str,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            coord: None,
            body_idle_timeout: std::time::Duration::from_secs(60),
            token_quota_per_minute: 300,
            idp_jwks_path: "/idp/jwks",
        }
    }
}

pub async fn node(options: Options) -> Node {
    let jwks = jwks_server().await;
    node_with_jwks(options, jwks).await
}

pub async fn node_with_jwks(options: Options, jwks: String) -> Node {
    let dir = tempfile::tempdir().unwrap();
    let registry = dir.path().join("apps.jsonl");
    let lines: Vec<String> = apps(&jwks).iter().map(|a| a.to_string()).collect();
    std::fs::write(&registry, lines.join("\n")).unwrap();
    let coord: Arc<dyn Coordination> = match options.coord {
        Some(c) => c,
        None => Arc::new(
            SqliteCoordination::open(&dir.path().join("coordination.db"))
                .await
                .unwrap(),
        ),
    };
    let idp_jwks = format!("{jwks}{}", options.idp_jwks_path);
    let config = FrontDoorConfig {
        registry: Some(registry),
        demo: true,
        sandbox: false,
        cis2: Some(IdentityProvider {
            issuer: CIS2_ISSUER.into(),
            jwks_url: idp_jwks.clone(),
        }),
        nhs_login: Some(IdentityProvider {
            issuer: NHS_LOGIN_ISSUER.into(),
            jwks_url: idp_jwks,
        }),
        public_base_url: None,
        scheme: "http",
        status_api_key: Some("status-key".into()),
        token_quota_per_minute: options.token_quota_per_minute,
        body_idle_timeout: options.body_idle_timeout,
    };
    let fd = FrontDoor::new(config, coord.clone()).unwrap();
    let api = Router::new().route("/test-api/Patient", get(echo).post(echo));
    let routes =
        frontdoor::router(fd.clone()).merge(frontdoor::bearer::layer(fd.clone(), test_api(), api));
    let base = serve(routes).await;
    Node {
        base,
        fd,
        coord,
        jwks,
        _dir: Arc::new(dir),
    }
}

/// A JWT with exactly this header and these claims, signed with `key_pem` for `alg`
/// (RS256/RS512); any other `alg` gets a junk signature.
pub fn jwt(header: &Value, claims: &Value, key_pem: &str) -> String {
    let h = URL_SAFE_NO_PAD.encode(serde_json::to_vec(header).unwrap());
    let c = URL_SAFE_NO_PAD.encode(serde_json::to_vec(claims).unwrap());
    let message = format!("{h}.{c}");
    let alg = match header.get("alg").and_then(Value::as_str) {
        Some("RS256") => Some(jsonwebtoken::Algorithm::RS256),
        Some("RS512") => Some(jsonwebtoken::Algorithm::RS512),
        _ => None,
    };
    let signature = match alg {
        Some(alg) => {
            let key = jsonwebtoken::EncodingKey::from_rsa_pem(key_pem.as_bytes()).unwrap();
            jsonwebtoken::crypto::sign(message.as_bytes(), &key, alg).unwrap()
        }
        None => URL_SAFE_NO_PAD.encode(b"not a signature"),
    };
    format!("{message}.{signature}")
}

/// The header and claims of a valid client assertion for `client_id` at `token_url`.
pub fn assertion_parts(client_id: &str, token_url: &str) -> (Value, Value) {
    (
        json!({"alg": "RS512", "typ": "JWT", "kid": "other-1"}),
        json!({"iss": client_id, "sub": client_id, "aud": token_url,
               "jti": uuid::Uuid::new_v4().to_string(), "exp": now() + 300}),
    )
}

pub fn assertion(client_id: &str, token_url: &str) -> String {
    let (h, c) = assertion_parts(client_id, token_url);
    jwt(&h, &c, OTHER_KEY)
}

/// A CIS2 ID token for a level-3 user, signed by the test identity provider (RS256).
pub fn cis2_claims() -> Value {
    json!({"sub": "787807429511", "iss": CIS2_ISSUER, "aud": "some-client", "exp": now() + 600,
           "iat": now(), "acr": "AAL3_ANY", "amr": ["N3_SMARTCARD"],
           "authentication_assurance_level": "3", "id_assurance_level": "3"})
}

pub fn nhs_login_claims(level: &str) -> Value {
    json!({"sub": "49f470a1-cc52-49b7-beba-0f9cec937c46", "iss": NHS_LOGIN_ISSUER, "aud": "some-client",
           "exp": now() + 600, "iat": now(), "jti": uuid::Uuid::new_v4().to_string(),
           "vot": format!("{level}.Cp.Cd"), "identity_proofing_level": level,
           "nhs_number": "9000000009", "id_status": "verified", "token_use": "id"})
}

pub fn idp_header() -> Value {
    json!({"alg": "RS256", "typ": "JWT", "kid": "idp-1"})
}

pub fn id_token(claims: &Value) -> String {
    jwt(&idp_header(), claims, IDP_KEY)
}

pub const ASSERTION_TYPE: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";
pub const TOKEN_EXCHANGE: &str = "urn:ietf:params:oauth:grant-type:token-exchange";
pub const ID_TOKEN: &str = "urn:ietf:params:oauth:token-type:id_token";

/// POSTs a form to the token endpoint; returns (status, JSON body).
pub async fn post_form(node: &Node, form: &[(&str, &str)]) -> (u16, Value) {
    let response = reqwest::Client::new()
        .post(node.token_url())
        .form(form)
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

pub async fn client_credentials(node: &Node, assertion: &str) -> (u16, Value) {
    post_form(
        node,
        &[
            ("grant_type", "client_credentials"),
            ("client_assertion_type", ASSERTION_TYPE),
            ("client_assertion", assertion),
        ],
    )
    .await
}

pub async fn exchange(node: &Node, client_id: &str, subject: &str) -> (u16, Value) {
    let a = assertion(client_id, &node.token_url());
    post_form(
        node,
        &[
            ("grant_type", TOKEN_EXCHANGE),
            ("subject_token_type", ID_TOKEN),
            ("subject_token", subject),
            ("client_assertion_type", ASSERTION_TYPE),
            ("client_assertion", &a),
        ],
    )
    .await
}

/// An app token for `client_id`.
pub async fn app_token(node: &Node, client_id: &str) -> String {
    let (status, body) = client_credentials(node, &assertion(client_id, &node.token_url())).await;
    assert_eq!(status, 200, "{body}");
    body["access_token"].as_str().unwrap().to_string()
}

/// Asserts an OAuth error: status, `error`, `error_description` exactly, a `message_id`.
#[track_caller]
pub fn assert_oauth(case: &str, got: &(u16, Value), status: u16, error: &str, description: &str) {
    assert_eq!(got.0, status, "{case}: {}", got.1);
    assert_eq!(got.1["error"], error, "{case}: {}", got.1);
    assert_eq!(got.1["error_description"], description, "{case}: {}", got.1);
    assert!(
        got.1["message_id"].as_str().is_some_and(|m| !m.is_empty()),
        "{case}: no message_id in {}",
        got.1
    );
}
