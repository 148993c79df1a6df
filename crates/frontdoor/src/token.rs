//! `/oauth2/*`: the token endpoint (API.md 3–6), `_ping` and `_status`.

use crate::registry::{App, AppStatus};
use crate::FrontDoor;
use auth_protocol::grant::{self, Assertion, Form, SubjectToken};
use auth_protocol::token::{self as tokens, RefreshRecord, TokenKind, TokenRecord};
use auth_protocol::{scopes, Grant, OAuthError};
use axum::body::Bytes;
use axum::extract::{RawQuery, State};
use axum::http::{header, HeaderMap, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get};
use axum::{Json, Router};
use chrono::{TimeZone, Utc};
use serde_json::json;
use spine_http::audit::Audit;
use spine_http::metrics::RequestMetrics;
use std::time::Duration;

pub const REQUESTS: RequestMetrics = RequestMetrics {
    service: "frontdoor",
    requests: "frontdoor_http_requests_total",
    duration: "frontdoor_http_request_duration_seconds",
};

/// Coordination scopes.
pub const SCOPE_JTI: &str = "frontdoor-jti";
pub const SCOPE_ACCESS: &str = "frontdoor-access";
pub const SCOPE_REFRESH: &str = "frontdoor-refresh";
const SCOPE_TOKEN_QUOTA: &str = "frontdoor-token-quota";

/// A used `jti` is remembered this long (API.md 4.2).
const JTI_MEMORY_SECS: i64 = 30 * 86_400;
/// An access token's record outlives it by this much, so that a late call is told
/// "expired" rather than "invalid".
pub const EXPIRED_MEMORY_SECS: i64 = 3600;
/// Largest token request body.
pub const MAX_FORM_BYTES: usize = 64 * 1024;

pub fn router(fd: FrontDoor) -> Router {
    Router::new()
        .route("/oauth2/token", any(token))
        .route("/oauth2/_ping", get(ping))
        .route("/oauth2/_status", get(status))
        .route("/oauth2/{*rest}", any(not_found))
        .layer(axum::extract::DefaultBodyLimit::max(MAX_FORM_BYTES))
        .layer(axum::middleware::from_fn_with_state(
            REQUESTS,
            spine_http::metrics::track,
        ))
        .with_state(fd)
}

/// The error body: `error`, `error_description` and a unique `message_id`.
pub fn error_response(e: &OAuthError) -> Response {
    let status = StatusCode::from_u16(e.status).unwrap_or(StatusCode::BAD_REQUEST);
    let body = json!({
        "error": e.error,
        "error_description": e.description,
        "message_id": uuid::Uuid::new_v4().to_string(),
    });
    let mut response = (status, Json(body)).into_response();
    response.headers_mut().insert(
        header::CACHE_CONTROL,
        header::HeaderValue::from_static("no-store"),
    );
    response
}

fn refused(e: OAuthError, client_id: Option<&str>, grant: &str, source: &str) -> Response {
    metrics::counter!("frontdoor_tokens_total", "service" => "frontdoor", "outcome" => "refused")
        .increment(1);
    // An audit event for every refusal: which app, which check, never the token itself.
    Audit {
        client_id: Some(client_id.unwrap_or_default()),
        grant: Some(grant),
        source: Some(source),
        status: Some(e.status),
        error: Some(e.error),
        reason: Some(&e.description),
        ..Audit::new("frontdoor", "token_refused")
    }
    .refused("token request refused");
    error_response(&e)
}

async fn not_found() -> Response {
    error_response(&OAuthError::NOT_FOUND)
}

async fn ping() -> Response {
    Json(json!({"status": "pass", "version": env!("CARGO_PKG_VERSION"), "service": "oauth2"}))
        .into_response()
}

async fn status(State(fd): State<FrontDoor>, headers: HeaderMap) -> Response {
    let given = headers
        .get("apikey")
        .map(|v| v.as_bytes())
        .unwrap_or_default();
    let ok = fd
        .config()
        .status_api_key
        .as_deref()
        .is_some_and(|k| bool::from(subtle::ConstantTimeEq::ct_eq(k.as_bytes(), given)));
    if !ok {
        return (
            StatusCode::UNAUTHORIZED,
            Json(json!({"error": "Access Denied", "error_description": "Invalid api key for _status monitoring endpoint"})),
        )
            .into_response();
    }
    let store = fd.coord().ping().await.is_ok();
    let status = if store { "pass" } else { "fail" };
    let code = if store {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (
        code,
        Json(json!({
            "status": status,
            "version": env!("CARGO_PKG_VERSION"),
            "service": "oauth2",
            "checks": {"coordination-store": {"status": status}},
            "apps": fd.registry().len(),
        })),
    )
        .into_response()
}

/// The token URL as this request called it: what a client assertion's `aud` must be.
fn token_url(fd: &FrontDoor, headers: &HeaderMap) -> String {
    if let Some(base) = &fd.config().public_base_url {
        return format!("{}/oauth2/token", base.trim_end_matches('/'));
    }
    let host = headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or("localhost");
    let scheme = if fd.config().scheme.is_empty() {
        "http"
    } else {
        fd.config().scheme
    };
    format!("{scheme}://{host}/oauth2/token")
}

fn now_secs() -> i64 {
    Utc::now().timestamp()
}

/// A random opaque token: 32 bytes from the OS generator, base64url.
fn opaque() -> String {
    use base64::Engine;
    use rand::RngCore;
    let mut bytes = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

async fn token(
    State(fd): State<FrontDoor>,
    peer: Option<axum::Extension<spine_http::Peer>>,
    method: Method,
    RawQuery(_query): RawQuery,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let source = spine_http::Peer::source(peer.as_ref().map(|p| &p.0));
    if method != Method::POST {
        return (StatusCode::METHOD_NOT_ALLOWED, [(header::ALLOW, "POST")]).into_response();
    }
    // API.md 3: the exact type; a `charset` parameter is accepted (unverified upstream:
    // every form library adds one, and refusing it would only break clients).
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let essence = content_type.split(';').next().unwrap_or("").trim();
    if !essence.eq_ignore_ascii_case("application/x-www-form-urlencoded") {
        return refused(OAuthError::CONTENT_TYPE, None, "unknown", &source);
    }
    let form = Form::from_pairs(form_urlencoded::parse(&body).into_owned());
    let result = match grant::dispatch(&form) {
        Err(e) => Err((e, None)),
        Ok(Grant::ClientCredentials) => client_credentials(&fd, &headers, &form).await,
        Ok(Grant::TokenExchange) => token_exchange(&fd, &headers, &form).await,
        Ok(Grant::RefreshToken) => refresh(&fd, &form).await,
        Ok(Grant::AuthorizationCode) => Err((authorization_code(&form), None)),
    };
    let grant = form
        .get("grant_type")
        .unwrap_or("none")
        .chars()
        .take(64)
        .collect::<String>();
    match result {
        Ok(body) => {
            metrics::counter!("frontdoor_tokens_total", "service" => "frontdoor", "outcome" => "issued")
                .increment(1);
            let mut response = Json(body).into_response();
            response.headers_mut().insert(
                header::CACHE_CONTROL,
                header::HeaderValue::from_static("no-store"),
            );
            response
        }
        Err((e, client_id)) => refused(e, client_id.as_deref(), &grant, &source),
    }
}

type Outcome = Result<serde_json::Value, (OAuthError, Option<String>)>;

/// The authorization-code grant needs `/authorize` and `/callback` (a later slice); its
/// form checks are answered as the platform answers them, and a code is never valid.
fn authorization_code(form: &Form) -> OAuthError {
    if form.get("client_id").is_none() {
        return OAuthError::CLIENT_ID_MISSING;
    }
    if form.get("redirect_uri").is_none() {
        return OAuthError::REDIRECT_URI_MISSING;
    }
    if form.get("code").is_none() {
        return OAuthError::CODE_MISSING;
    }
    OAuthError::new(400, "invalid_grant", "authorization_code is invalid")
}

/// API.md 4.2 rows 2–21: the client assertion, whichever grant carries it. Returns the
/// app. Row 1 is the caller's (its order differs between the grants).
async fn authenticate_client(
    fd: &FrontDoor,
    headers: &HeaderMap,
    form: &Form,
) -> Result<App, (OAuthError, Option<String>)> {
    let now = now_secs();
    let assertion = Assertion::check(form, now).map_err(|e| (e, None))?;
    let who = Some(assertion.client_id.clone());
    // Row 13 (lookup) and the record after row 14, as one atomic step in the store: of
    // two concurrent uses of one jti, on any nodes, one wins. Row 14 first, so an
    // assertion refused for its `exp` does not burn its jti (the platform records after
    // row 14 too).
    assertion
        .check_not_too_far(now)
        .map_err(|e| (e, who.clone()))?;
    // Length-prefixed, so that no client id and jti pair can pose as another.
    let key = format!(
        "{}:{}{}",
        assertion.client_id.len(),
        assertion.client_id,
        assertion.jti
    );
    let until = Utc
        .timestamp_opt(now + JTI_MEMORY_SECS, 0)
        .single()
        .unwrap_or_else(Utc::now);
    match fd
        .coord()
        .use_once(SCOPE_JTI, &key, until, Utc::now())
        .await
    {
        Ok(true) => {}
        Ok(false) => return Err((OAuthError::ASSERTION_JTI_REUSED, who)),
        Err(spine_store::StoreError::Invalid(_)) => {
            // A jti longer than any GUID: refused as not unique-looking.
            return Err((OAuthError::ASSERTION_JTI_TYPE, who));
        }
        Err(e) => {
            tracing::error!(error = %e, "front door: coordination store");
            return Err((OAuthError::UNKNOWN, who));
        }
    }
    let registry = fd.registry();
    let Some(app) = registry.app(&assertion.client_id).cloned() else {
        return Err((OAuthError::ASSERTION_UNKNOWN_CLIENT, who));
    };
    // Row 16: the token endpoint's own per-app quota.
    if !fd.config().sandbox && fd.config().token_quota_per_minute > 0 {
        let window = now - now.rem_euclid(60);
        match fd
            .coord()
            .count(
                SCOPE_TOKEN_QUOTA,
                &app.client_id,
                window,
                Duration::from_secs(60),
            )
            .await
        {
            Ok(n) if n > fd.config().token_quota_per_minute => {
                let quota = auth_protocol::limits::Quota {
                    limit: fd.config().token_quota_per_minute,
                    interval: 1,
                    timeunit: "minute".into(),
                    enabled: true,
                };
                return Err((
                    OAuthError::rate_limited(quota.exceeded_text(&app.name)),
                    who,
                ));
            }
            Ok(_) => {}
            Err(e) => {
                tracing::error!(error = %e, "front door: coordination store");
                return Err((OAuthError::UNKNOWN, who));
            }
        }
    }
    // Rows 17–18: the app's keys.
    let keys = match (&app.jwks, &app.jwks_url) {
        (Some(inline), _) => std::sync::Arc::new(inline.clone()),
        (None, Some(url)) => match fd.jwks().get(url, crate::jwks::APP_JWKS_TTL, None).await {
            Ok(k) => k,
            Err(why) => {
                tracing::warn!(client_id = %app.client_id, reason = %why, "app JWKS not fetched");
                return Err((OAuthError::JWKS_UNREACHABLE, who));
            }
        },
        (None, None) => return Err((OAuthError::NO_PUBLIC_KEY, who)),
    };
    // Rows 19–21: kid, aud, signature (their order upstream is unverified; this one
    // tells a client the most specific fault first).
    let Some(key) = keys.key(&assertion.kid) else {
        return Err((OAuthError::ASSERTION_KID_UNKNOWN, who));
    };
    assertion
        .check_audience(&token_url(fd, headers))
        .map_err(|e| (e, who.clone()))?;
    if !assertion.jwt.verify(key, "RS512") {
        return Err((OAuthError::SIGNATURE, who));
    }
    if app.status != AppStatus::Approved {
        return Err((OAuthError::APP_REVOKED, who));
    }
    Ok(app)
}

/// Stores an access token and returns it with its lifetime.
async fn issue(
    fd: &FrontDoor,
    record: &TokenRecord,
) -> Result<String, (OAuthError, Option<String>)> {
    let token = opaque();
    let value = serde_json::to_string(record).unwrap_or_default();
    let until = Utc
        .timestamp_opt(record.expires_at + EXPIRED_MEMORY_SECS, 0)
        .single()
        .unwrap_or_else(Utc::now);
    // Acknowledged only once stored: a token the client holds works on every node.
    fd.coord()
        .put(SCOPE_ACCESS, &token, &value, until)
        .await
        .map_err(|e| {
            tracing::error!(error = %e, "front door: storing a token");
            (OAuthError::UNKNOWN, Some(record.client_id.clone()))
        })?;
    Ok(token)
}

async fn client_credentials(fd: &FrontDoor, headers: &HeaderMap, form: &Form) -> Outcome {
    if form.get("client_assertion_type") != Some(grant::ASSERTION_TYPE) {
        return Err((OAuthError::ASSERTION_TYPE, None));
    }
    let app = authenticate_client(fd, headers, form).await?;
    let granted = scopes::application_restricted(&app.scopes());
    if granted.is_empty() {
        return Err((OAuthError::UNAUTHORIZED_CLIENT, Some(app.client_id)));
    }
    let now = now_secs();
    let lifetime = tokens::access_lifetime(form.get("_access_token_expiry_ms"));
    let record = TokenRecord {
        client_id: app.client_id.clone(),
        kind: TokenKind::Application,
        scopes: granted,
        expires_at: now + lifetime,
        user_id: None,
        issuer: None,
        acr: None,
        amr: None,
        assurance_level: None,
        id_assurance_level: None,
        proofing_level: None,
        nhs_number: None,
    };
    let token = issue(fd, &record).await?;
    Audit {
        client_id: Some(&app.client_id),
        kind: Some(TokenKind::Application.as_str()),
        ..Audit::new("frontdoor", "token_issued")
    }
    .allowed("token issued");
    Ok(json!({
        "access_token": token,
        "expires_in": tokens::expires_in(lifetime),
        "token_type": "Bearer",
        "issued_at": (now * 1000).to_string(),
    }))
}

/// A claim as text whether the IdP sent a string or a number (CIS2 sends
/// `authentication_assurance_level` as `"3"`; some test issuers send `3`).
fn claim_text(claims: &serde_json::Map<String, serde_json::Value>, name: &str) -> Option<String> {
    match claims.get(name)? {
        serde_json::Value::String(s) => Some(s.clone()),
        serde_json::Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

async fn token_exchange(fd: &FrontDoor, headers: &HeaderMap, form: &Form) -> Outcome {
    grant::check_exchange_form(form).map_err(|e| (e, None))?;
    let app = authenticate_client(fd, headers, form).await?;
    let who = Some(app.client_id.clone());
    let now = now_secs();
    let subject = SubjectToken::check(form, now).map_err(|e| (e, who.clone()))?;
    let (kind, idp) = match (&fd.config().cis2, &fd.config().nhs_login) {
        (Some(c), _) if c.issuer == subject.iss => (TokenKind::Cis2, c),
        (_, Some(n)) if n.issuer == subject.iss => (TokenKind::NhsLogin, n),
        _ => return Err((OAuthError::SUBJECT_ISSUER, who)),
    };
    let keys = match fd
        .jwks()
        .get(&idp.jwks_url, crate::jwks::IDP_JWKS_TTL, Some(&subject.kid))
        .await
    {
        Ok(k) => k,
        Err(why) => {
            tracing::error!(issuer = %idp.issuer, reason = %why, "identity provider JWKS not fetched");
            return Err((OAuthError::UNKNOWN, who));
        }
    };
    let Some(key) = keys.key(&subject.kid) else {
        return Err((OAuthError::SUBJECT_KID_UNKNOWN, who));
    };
    let alg = if subject.alg == "RS256" {
        "RS256"
    } else {
        "RS512"
    };
    if !subject.jwt.verify(key, alg) {
        return Err((OAuthError::SIGNATURE, who));
    }
    let claims = &subject.jwt.claims;
    let app_scopes = app.scopes();
    let (granted, assurance, proofing) = match kind {
        TokenKind::Cis2 => {
            let aal = claim_text(claims, "authentication_assurance_level").unwrap_or_default();
            (scopes::cis2(&app_scopes, &aal), Some(aal), None)
        }
        _ => {
            let ipl = claim_text(claims, "identity_proofing_level").unwrap_or_default();
            (scopes::nhs_login(&app_scopes, &ipl), None, Some(ipl))
        }
    };
    if granted.is_empty() {
        return Err((OAuthError::UNAUTHORIZED_CLIENT, who));
    }
    let lifetime = tokens::access_lifetime(form.get("_access_token_expiry_ms"));
    let record = TokenRecord {
        client_id: app.client_id.clone(),
        kind,
        scopes: granted,
        expires_at: now + lifetime,
        user_id: claim_text(claims, "sub"),
        issuer: Some(subject.iss.clone()),
        acr: claim_text(claims, "acr"),
        amr: claims.get("amr").cloned(),
        assurance_level: assurance,
        id_assurance_level: claim_text(claims, "id_assurance_level"),
        proofing_level: proofing,
        nhs_number: claim_text(claims, "nhs_number"),
    };
    let refresh = RefreshRecord {
        token: record.clone(),
        refresh_count: 0,
        refresh_until: now + tokens::REFRESH_TOKEN_SECS,
    };
    user_token_answer(fd, record, refresh, lifetime, true).await
}

/// Issues an access token and a refresh token for a user token.
async fn user_token_answer(
    fd: &FrontDoor,
    record: TokenRecord,
    refresh: RefreshRecord,
    lifetime: i64,
    exchange: bool,
) -> Outcome {
    let token = issue(fd, &record).await?;
    let refresh_token = opaque();
    // Kept an hour past its period, so that a late refresh is told "expired".
    let until = Utc
        .timestamp_opt(refresh.refresh_until + EXPIRED_MEMORY_SECS, 0)
        .single()
        .unwrap_or_else(Utc::now);
    let value = serde_json::to_string(&refresh).unwrap_or_default();
    fd.coord()
        .put(SCOPE_REFRESH, &refresh_token, &value, until)
        .await
        .map_err(|e| {
            tracing::error!(error = %e, "front door: storing a refresh token");
            (OAuthError::UNKNOWN, Some(record.client_id.clone()))
        })?;
    let refresh_left = (refresh.refresh_until - now_secs()).max(1);
    Audit {
        client_id: Some(&record.client_id),
        kind: Some(record.kind.as_str()),
        refresh_count: Some(refresh.refresh_count),
        ..Audit::new("frontdoor", "token_issued")
    }
    .allowed("token issued");
    let mut body = json!({
        "access_token": token,
        "expires_in": tokens::expires_in(lifetime),
        "token_type": "Bearer",
        "refresh_token": refresh_token,
        "refresh_token_expires_in": tokens::expires_in(refresh_left),
        "refresh_count": refresh.refresh_count.to_string(),
    });
    if exchange {
        body["issued_token_type"] = json!(grant::ACCESS_TOKEN_TYPE);
    }
    Ok(body)
}

/// API.md 6: the refresh grant.
async fn refresh(fd: &FrontDoor, form: &Form) -> Outcome {
    let Some(client_id) = form.get("client_id") else {
        return Err((OAuthError::CLIENT_ID_MISSING, None));
    };
    let who = Some(client_id.to_string());
    let Some(secret) = form.get("client_secret") else {
        return Err((OAuthError::CLIENT_SECRET_MISSING, who));
    };
    let registry = fd.registry();
    let app = registry.app(client_id);
    let secret_ok = app
        .and_then(|a| a.client_secret.as_deref())
        .is_some_and(|s| {
            bool::from(subtle::ConstantTimeEq::ct_eq(
                s.as_bytes(),
                secret.as_bytes(),
            ))
        });
    let Some(app) = app.filter(|_| secret_ok) else {
        return Err((OAuthError::CLIENT_INVALID, who));
    };
    if app.status != AppStatus::Approved {
        return Err((OAuthError::APP_REVOKED, who));
    }
    let Some(presented) = form.get("refresh_token").filter(|t| !t.is_empty()) else {
        return Err((OAuthError::REFRESH_MISSING, who));
    };
    // Another app's refresh token is refused without being spent: read it first.
    let now = Utc::now();
    let peeked = fd
        .coord()
        .get(SCOPE_REFRESH, presented, now)
        .await
        .map_err(|e| {
            tracing::error!(error = %e, "front door: coordination store");
            (OAuthError::UNKNOWN, who.clone())
        })?;
    let owner = peeked
        .as_deref()
        .and_then(|v| serde_json::from_str::<RefreshRecord>(v).ok())
        .map(|r| r.token.client_id);
    if owner.as_deref() != Some(app.client_id.as_str()) {
        return Err((OAuthError::REFRESH_INVALID, who));
    }
    // Taken, not read: a refresh token works once, on whichever node sees it first.
    let taken = fd
        .coord()
        .take(SCOPE_REFRESH, presented, now)
        .await
        .map_err(|e| {
            tracing::error!(error = %e, "front door: coordination store");
            (OAuthError::UNKNOWN, who.clone())
        })?;
    let Some(old) = taken.and_then(|v| serde_json::from_str::<RefreshRecord>(&v).ok()) else {
        return Err((OAuthError::REFRESH_INVALID, who));
    };
    if old.token.client_id != app.client_id {
        return Err((OAuthError::REFRESH_INVALID, who));
    }
    if old.refresh_until <= now.timestamp() {
        return Err((OAuthError::REFRESH_EXPIRED, who));
    }
    let lifetime = tokens::access_lifetime(form.get("_access_token_expiry_ms"));
    let mut record = old.token.clone();
    record.expires_at = now.timestamp() + lifetime;
    let refresh = RefreshRecord {
        token: record.clone(),
        refresh_count: old.refresh_count.saturating_add(1),
        refresh_until: old.refresh_until,
    };
    user_token_answer(fd, record, refresh, lifetime, false).await
}
