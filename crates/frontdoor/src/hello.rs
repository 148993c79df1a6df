//! The NHS "Hello World" API: the API the NHS gives newcomers to try each kind of access
//! with, here behind the bearer layer so that a first token can be used at once.
//!
//! * `GET /hello-world/hello/world`: open.
//! * `GET /hello-world/hello/application`: an application-restricted token.
//! * `GET /hello-world/hello/user`: a user-restricted token (CIS2 or NHS login).

use crate::bearer::{self, Caller, ErrorStyle, Protected};
use crate::FrontDoor;
use auth_protocol::scopes::{AccessMode, AccessRule};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Extension, Json, Router};
use serde_json::json;

/// The API's name in products and rate limits.
pub const API: &str = "hello-world";

/// The demo app's scopes: each kind of access to this API.
pub const DEMO_SCOPES: &[&str] = &[
    "urn:nhsd:apim:app:level3:hello-world",
    "urn:nhsd:apim:user-nhs-cis2:aal3:hello-world",
    "urn:nhsd:apim:user-nhs-login:P9:hello-world",
];

/// The API's scope table: which scope gives which mode.
pub fn protected() -> Protected {
    let rule = |scope: &str, mode| AccessRule {
        scope: scope.into(),
        mode,
    };
    Protected {
        api: API,
        rules: vec![
            rule(DEMO_SCOPES[0], AccessMode::ApplicationRestricted),
            rule(
                "urn:nhsd:apim:user-nhs-cis2:aal2:hello-world",
                AccessMode::UserRestricted,
            ),
            rule(DEMO_SCOPES[1], AccessMode::UserRestricted),
            rule(DEMO_SCOPES[2], AccessMode::UserRestricted),
        ],
        style: ErrorStyle::Plain,
        default_limits: Default::default(),
    }
}

pub fn router(fd: FrontDoor) -> Router {
    let guarded = Router::new()
        .route("/hello-world/hello/application", get(application))
        .route("/hello-world/hello/user", get(user));
    Router::new()
        .route("/hello-world/hello/world", get(world))
        .merge(bearer::layer(fd, protected(), guarded))
        .layer(axum::middleware::from_fn(
            spine_http::ids::mirror_request_ids,
        ))
        .layer(axum::middleware::from_fn_with_state(
            crate::token::REQUESTS,
            spine_http::metrics::track,
        ))
}

async fn world() -> Response {
    Json(json!({"message": "Hello World!"})).into_response()
}

async fn application(Extension(caller): Extension<Caller>) -> Response {
    if caller.mode != AccessMode::ApplicationRestricted {
        return wrong_kind();
    }
    Json(json!({"message": "Hello Application!"})).into_response()
}

async fn user(Extension(caller): Extension<Caller>) -> Response {
    if caller.mode != AccessMode::UserRestricted {
        return wrong_kind();
    }
    Json(json!({"message": "Hello User!"})).into_response()
}

/// A token of the wrong kind for the endpoint: the platform's invalid-token answer.
fn wrong_kind() -> Response {
    (
        StatusCode::UNAUTHORIZED,
        Json(json!({"fault": {"faultstring": "Invalid Access Token", "detail": {"errorcode": "keymanagement.service.invalid_access_token"}}})),
    )
        .into_response()
}
