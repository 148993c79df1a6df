//! The bearer layer (API.md 8, 9): what the platform's gateway does before a protected
//! API sees a request. In order: the token (known, not expired, its app subscribed to a
//! product that opens this API), the quotas, the access mode from the API's own scope
//! table, then the gateway headers. The client's `X-Request-ID` and `X-Correlation-ID`
//! come back on every answer, refusals included.
//!
//! A service declares a [`Protected`] (its API name, its scope table, its error shape)
//! and wraps its router with [`layer`]; its handlers read the [`Caller`] from the
//! request's extensions.

use crate::token::SCOPE_ACCESS;
use crate::FrontDoor;
use auth_protocol::limits::{self, ApiLimits};
use auth_protocol::scopes::{access_mode, AccessMode};
use auth_protocol::{TokenKind, TokenRecord};
use axum::extract::{Request, State};
use axum::http::{header, HeaderName, HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::Json;
use chrono::Utc;
use serde_json::json;
use spine_http::ids::RequestIds;
use std::sync::Arc;
use std::time::Duration;

const SCOPE_QUOTA: &str = "frontdoor-quota";
const SCOPE_SPIKE: &str = "frontdoor-spike";

pub use auth_protocol::gateway::{Caller, ErrorStyle, Protected};

struct LayerState {
    fd: FrontDoor,
    api: Protected,
}

/// Wraps a service's router: every request passes the checks above first.
pub fn layer<S: Clone + Send + Sync + 'static>(
    fd: FrontDoor,
    api: Protected,
    router: axum::Router<S>,
) -> axum::Router<S> {
    let state = Arc::new(LayerState { fd, api });
    // On the API's routes only: a layer would also wrap the router's fallback, and once
    // merged into the platform's router that would demand a token on every unknown path
    // of every service. An API that wants its unknown paths guarded routes them itself.
    router.route_layer(axum::middleware::from_fn_with_state(state, check))
}

/// One refusal, in the API's style.
fn refusal(
    style: ErrorStyle,
    status: StatusCode,
    plain: serde_json::Value,
    fhir: Fhir,
) -> Response {
    match style {
        ErrorStyle::Plain => (status, Json(plain)).into_response(),
        ErrorStyle::Fhir => {
            let body = json!({
                "resourceType": "OperationOutcome",
                "issue": [{
                    "severity": "error",
                    "code": fhir.code,
                    "details": {"coding": [{
                        "system": "https://fhir.nhs.uk/R4/CodeSystem/Spine-ErrorOrWarningCode",
                        "version": "1",
                        "code": fhir.spine_code,
                        "display": fhir.display,
                    }]},
                    "diagnostics": fhir.diagnostics,
                }]
            });
            let mut r = (status, Json(body)).into_response();
            r.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/fhir+json"),
            );
            r
        }
    }
}

struct Fhir {
    code: &'static str,
    spine_code: &'static str,
    display: &'static str,
    diagnostics: String,
}

/// The store behind tokens and quotas did not answer: 503, never a pass. A quota that
/// cannot be counted is not waived.
fn unavailable(style: ErrorStyle, e: spine_store::StoreError) -> Response {
    tracing::error!(error = %e, "bearer layer: coordination store");
    refusal(
        style,
        StatusCode::SERVICE_UNAVAILABLE,
        fault(
            "Service Unavailable",
            "messaging.adaptors.http.flow.ServiceUnavailable",
        ),
        Fhir {
            code: "timeout",
            spine_code: "SERVICE_UNAVAILABLE",
            display: "Service unavailable",
            diagnostics: "The token store did not answer; retry.".into(),
        },
    )
}

fn fault(faultstring: &str, errorcode: &str) -> serde_json::Value {
    json!({"fault": {"faultstring": faultstring, "detail": {"errorcode": errorcode}}})
}

/// The platform's 401 faults: their `faultstring` and `errorcode`.
#[derive(Debug, Clone, Copy)]
enum Fault {
    NoToken,
    Invalid,
    Expired,
    NotSubscribed,
}

impl Fault {
    fn text(self) -> (&'static str, &'static str) {
        match self {
            Fault::NoToken => ("Invalid access token", "oauth.v2.InvalidAccessToken"),
            Fault::Invalid => (
                "Invalid Access Token",
                "keymanagement.service.invalid_access_token",
            ),
            Fault::Expired => (
                "Access Token expired",
                "keymanagement.service.access_token_expired",
            ),
            Fault::NotSubscribed => (
                "Invalid ApiKey for given resource",
                "oauth.v2.InvalidApiKeyForGivenResource",
            ),
        }
    }
}

fn unauthorised(
    style: ErrorStyle,
    faultstring: &'static str,
    errorcode: &'static str,
    diagnostics: String,
) -> Response {
    refusal(
        style,
        StatusCode::UNAUTHORIZED,
        fault(faultstring, errorcode),
        Fhir {
            code: "forbidden",
            spine_code: "ACCESS_DENIED",
            display: "Access Denied - Unauthorised",
            diagnostics,
        },
    )
}

fn too_many(style: ErrorStyle, text: String, errorcode: &'static str) -> Response {
    refusal(
        style,
        StatusCode::TOO_MANY_REQUESTS,
        fault(&text, errorcode),
        Fhir {
            code: "value",
            spine_code: "TOO_MANY_REQUESTS",
            display: "Too many requests",
            diagnostics: text,
        },
    )
}

fn audit_refusal(api: &str, reason: &'static str, client_id: &str, source: &str) {
    metrics::counter!("frontdoor_bearer_refused_total", "service" => "frontdoor", "reason" => reason)
        .increment(1);
    spine_http::audit::Audit {
        api: Some(api),
        reason: Some(reason),
        client_id: Some(client_id),
        source: Some(source),
        ..spine_http::audit::Audit::new("frontdoor", "bearer_refused")
    }
    .refused("protected API call refused");
}

/// CORS preflight (API.md 8), answered by the gateway for every protected API.
fn preflight(request: &Request) -> Option<Response> {
    if request.method() != Method::OPTIONS {
        return None;
    }
    let origin = request.headers().get(header::ORIGIN)?.clone();
    request
        .headers()
        .get(header::ACCESS_CONTROL_REQUEST_METHOD)?;
    let mut r = StatusCode::OK.into_response();
    let h = r.headers_mut();
    h.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, origin);
    h.insert(
        header::ACCESS_CONTROL_ALLOW_HEADERS,
        HeaderValue::from_static("origin, x-requested-with, accept, content-type, if-match, nhsd-session-urid, authorization, x-correlation-id, x-request-id, nhsd-end-user-organisation-ods"),
    );
    h.insert(
        header::ACCESS_CONTROL_MAX_AGE,
        HeaderValue::from_static("3628800"),
    );
    h.insert(
        header::ACCESS_CONTROL_ALLOW_METHODS,
        HeaderValue::from_static("GET, PUT, POST, PATCH, DELETE"),
    );
    Some(r)
}

async fn check(State(layer): State<Arc<LayerState>>, request: Request, next: Next) -> Response {
    let ids = RequestIds::of(request.headers());
    let mut response = match admit(&layer, request).await {
        Ok((request, caller_origin)) => {
            let mut r = next.run(request).await;
            if let Some(origin) = caller_origin {
                r.headers_mut()
                    .insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, origin);
            }
            r
        }
        Err(refused) => refused,
    };
    ids.mirror(&mut response);
    response
}

/// The checks of API.md 8 steps 1–3 and 7; the request as the service receives it.
async fn admit(
    layer: &LayerState,
    mut request: Request,
) -> Result<(Request, Option<HeaderValue>), Response> {
    if let Some(r) = preflight(&request) {
        return Err(r);
    }
    let api = &layer.api;
    let style = api.style;
    let source = spine_http::Peer::source(spine_http::Peer::of(&request));
    let source = source.as_str();
    // Every 401 is audited with its reason and the app, when known.
    let deny = |fault: Fault, reason: &'static str, client_id: &str, diagnostics: String| {
        audit_refusal(api.api, reason, client_id, source);
        let (faultstring, errorcode) = fault.text();
        unauthorised(style, faultstring, errorcode, diagnostics)
    };
    // 1. The token.
    let authz = request
        .headers()
        .get(header::AUTHORIZATION)
        .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned());
    let token = match authz.as_deref().map(str::trim) {
        None => {
            return Err(deny(
                Fault::NoToken,
                "no_token",
                "",
                "Missing Authorization header".into(),
            ));
        }
        Some("") => {
            return Err(deny(
                Fault::NoToken,
                "no_token",
                "",
                "Empty Authorization header".into(),
            ));
        }
        Some(value) => {
            let mut words = value.split_whitespace();
            let kind = words.next().unwrap_or_default();
            match words.next() {
                None => {
                    return Err(deny(
                        Fault::NoToken,
                        "no_token",
                        "",
                        "Missing access token".into(),
                    ));
                }
                Some(_) if kind != "Bearer" => {
                    let word: String = kind.chars().take(40).collect();
                    return Err(deny(
                        Fault::Invalid,
                        "invalid_token",
                        "",
                        format!("Invalid token type '{word}', must be 'Bearer'"),
                    ));
                }
                Some(t) => t.to_string(),
            }
        }
    };
    let now = Utc::now();
    let record = match layer.fd.coord().get(SCOPE_ACCESS, &token, now).await {
        Ok(Some(v)) => serde_json::from_str::<TokenRecord>(&v).ok(),
        Ok(None) => None,
        Err(e) => return Err(unavailable(style, e)),
    };
    let Some(record) = record else {
        return Err(deny(
            Fault::Invalid,
            "invalid_token",
            "",
            "Invalid Access Token".into(),
        ));
    };
    if record.expires_at <= now.timestamp() {
        return Err(deny(
            Fault::Expired,
            "expired_token",
            &record.client_id,
            "Access Token expired".into(),
        ));
    }
    let registry = layer.fd.registry();
    let app = registry.app(&record.client_id);
    let Some(app) =
        app.filter(|a| a.opens(api.api) && a.status == crate::registry::AppStatus::Approved)
    else {
        return Err(deny(
            Fault::NotSubscribed,
            "not_subscribed",
            &record.client_id,
            "Invalid Access Token".into(),
        ));
    };
    // 2. Quotas: the app's own limits for this API, else the API's defaults.
    if !layer.fd.config().sandbox {
        let limits = app.rate_limits.get(api.api).unwrap_or(&api.default_limits);
        enforce(layer, limits, &app.client_id, &app.name, source).await?;
    }
    // 3. The access mode from the API's scope table.
    let mode = match access_mode(&record.scopes, &api.rules) {
        Some(AccessMode::Refused) => {
            audit_refusal(api.api, "scope", &record.client_id, source);
            return Err(refusal(
                style,
                StatusCode::FORBIDDEN,
                fault("Patient cannot perform this action", "ACCESS_DENIED"),
                Fhir {
                    code: "forbidden",
                    spine_code: "ACCESS_DENIED",
                    display: "Patient cannot perform this action",
                    diagnostics: "Patient cannot perform this action".into(),
                },
            ));
        }
        None => {
            return Err(deny(
                Fault::Invalid,
                "scope",
                &record.client_id,
                "Invalid Access Token".into(),
            ));
        }
        Some(m) => m,
    };
    // 7. The gateway headers: the client's copies removed, the gateway's set.
    let headers = request.headers_mut();
    let request_id = headers.remove("x-request-id");
    let correlation = headers.remove("x-correlation-id");
    for name in [
        "prefer",
        "nhsd-asid",
        "nhsd-identity-uuid",
        "nhsd-identity-idp",
        "nhsd-nhslogin-user",
        "nhsd-request-id",
        "nhsd-correlation-id",
        "nhse-pds-privileged-access",
        "nhse-pds-custom-attributes",
    ] {
        headers.remove(name);
    }
    // A healthcare worker's role is checked by the service against the user's roles;
    // every other mode has no role to claim (API.md 8).
    if mode != AccessMode::UserRestricted {
        headers.remove("nhsd-session-urid");
    }
    let message_id = uuid::Uuid::new_v4().to_string();
    let set = |headers: &mut axum::http::HeaderMap, name: &'static str, value: &str| {
        if let Ok(v) = HeaderValue::from_str(value) {
            headers.insert(HeaderName::from_static(name), v);
        }
    };
    if let Some(rid) = request_id.as_ref().and_then(|v| v.to_str().ok()) {
        set(headers, "nhsd-request-id", rid);
        // Restored for the service, which validates it (PDS 400 INVALID_VALUE).
        set(headers, "x-request-id", rid);
    }
    let rid = request_id
        .as_ref()
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let cid = correlation
        .as_ref()
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if !cid.is_empty() {
        set(
            headers,
            "nhsd-correlation-id",
            &format!("{rid}.{cid}.{message_id}"),
        );
    }
    if let Some(asid) = &app.asid {
        set(headers, "nhsd-asid", asid);
    }
    let user = record.kind != TokenKind::Application;
    set(
        headers,
        "nhsd-identity-uuid",
        if user {
            record.user_id.as_deref().unwrap_or("")
        } else {
            ""
        },
    );
    set(
        headers,
        "nhsd-identity-idp",
        if user {
            record.issuer.as_deref().unwrap_or("")
        } else {
            ""
        },
    );
    if mode == AccessMode::PatientAccess {
        let value = format!(
            "{}:{}",
            record.proofing_level.as_deref().unwrap_or(""),
            record.nhs_number.as_deref().unwrap_or("")
        );
        set(headers, "nhsd-nhslogin-user", &value);
    }
    if mode == AccessMode::PrivilegedApplicationRestricted {
        set(headers, "nhse-pds-privileged-access", "true");
    }
    let flags = app.flags.get(api.api).cloned();
    if let Some(custom) = flags.as_ref().and_then(|f| f.get("custom-attributes")) {
        set(headers, "nhse-pds-custom-attributes", &custom.to_string());
    }
    let origin = request.headers().get(header::ORIGIN).cloned();
    request.extensions_mut().insert(Caller {
        token: Arc::new(record),
        mode,
        app_name: app.name.clone(),
        asid: app.asid.clone(),
        flags,
    });
    Ok((request, origin))
}

/// The quota and the spike arrest of one app for one API, counted in the coordination
/// store (every node counts the same windows).
async fn enforce(
    layer: &LayerState,
    limits: &ApiLimits,
    client_id: &str,
    app_name: &str,
    source: &str,
) -> Result<(), Response> {
    let style = layer.api.style;
    let now = Utc::now().timestamp();
    let key = format!("{}:{client_id}", layer.api.api);
    if let Some((rate, window)) = limits
        .spike_arrest
        .as_ref()
        .filter(|s| s.enabled)
        .and_then(|s| s.rate())
    {
        let start = now - now.rem_euclid(window as i64);
        let hits = layer
            .fd
            .coord()
            .count(SCOPE_SPIKE, &key, start, Duration::from_secs(window))
            .await
            .map_err(|e| unavailable(style, e))?;
        if hits > rate {
            audit_refusal(layer.api.api, "spike_arrest", client_id, source);
            return Err(too_many(
                style,
                limits::spike_text(app_name),
                "policies.ratelimit.SpikeArrestViolation",
            ));
        }
    }
    if let Some(quota) = limits.quota.as_ref().filter(|q| q.enabled) {
        if let Some(window) = quota.window_secs() {
            let start = now - now.rem_euclid(window as i64);
            let hits = layer
                .fd
                .coord()
                .count(SCOPE_QUOTA, &key, start, Duration::from_secs(window))
                .await
                .map_err(|e| unavailable(style, e))?;
            if hits > quota.limit {
                audit_refusal(layer.api.api, "quota", client_id, source);
                return Err(too_many(
                    style,
                    quota.exceeded_text(app_name),
                    "policies.ratelimit.QuotaViolation",
                ));
            }
        }
    }
    Ok(())
}
