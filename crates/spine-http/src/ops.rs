//! The operations listener, one for every service: `/metrics`, `/healthz`, `/readyz`
//! (all services, and `/readyz/{service}` each) and the admin APIs the services hand in.
//!
//! It exists because a service port is for that service's clients: under mutual TLS it
//! demands a client certificate that a Prometheus server or a load balancer does not
//! have, and the metrics (mailbox names, volumes, app names) are not for every client to
//! read. It belongs on loopback or a management network.

use axum::extract::Path;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use futures::future::BoxFuture;
use serde_json::{json, Map, Value};
use std::sync::Arc;

/// One service's readiness: ready or not, and a JSON body saying why (`status` and
/// `reason` fields by convention).
pub struct Readiness {
    pub ready: bool,
    pub body: Value,
}

/// Asks a service whether it can serve now (its stores answer, its disk is not full).
pub type ReadyCheck = Arc<dyn Fn() -> BoxFuture<'static, Readiness> + Send + Sync>;

/// What a service gives the ops listener.
#[derive(Clone)]
pub struct ServiceOps {
    pub name: &'static str,
    pub ready: ReadyCheck,
}

/// The ops router: `admin` (already behind its own authentication) is merged in as is.
pub fn router(services: Vec<ServiceOps>, admin: Router) -> Router {
    let services = Arc::new(services);
    let all = services.clone();
    let one = services.clone();
    let names: Vec<&'static str> = services.iter().map(|s| s.name).collect();
    Router::new()
        .route("/metrics", get(crate::metrics::exposition))
        .route(
            "/healthz",
            get(move || {
                let names = names.clone();
                async move {
                    Json(json!({
                        "status": "running",
                        "version": env!("CARGO_PKG_VERSION"),
                        "services": names,
                    }))
                }
            }),
        )
        .route("/readyz", get(move || ready_all(all.clone())))
        .route(
            "/readyz/{service}",
            get(move |Path(name): Path<String>| ready_one(one.clone(), name)),
        )
        .merge(admin)
        .fallback(|| async {
            (
                StatusCode::NOT_FOUND,
                Json(json!({"error": "no such operations endpoint"})),
            )
        })
        .layer(axum::middleware::from_fn_with_state(
            REQUESTS,
            crate::metrics::track,
        ))
}

/// The ops listener's own request families.
pub const REQUESTS: crate::metrics::RequestMetrics = crate::metrics::RequestMetrics {
    service: "ops",
    requests: "openspine_ops_http_requests_total",
    duration: "openspine_ops_http_request_duration_seconds",
};

/// Every service is asked at once; the answer is 200 only when all are ready, and the
/// top-level `status` and `reason` are those of the first that is not.
async fn ready_all(services: Arc<Vec<ServiceOps>>) -> Response {
    let answers = futures::future::join_all(services.iter().map(|s| (s.ready)())).await;
    let mut each = Map::new();
    let mut first_failure: Option<Value> = None;
    for (service, answer) in services.iter().zip(answers) {
        if !answer.ready && first_failure.is_none() {
            first_failure = Some(answer.body.clone());
        }
        each.insert(service.name.to_string(), answer.body);
    }
    let (status, mut body) = match first_failure {
        None => (StatusCode::OK, json!({"status": "ready"})),
        Some(failure) => (StatusCode::SERVICE_UNAVAILABLE, failure),
    };
    if let Some(o) = body.as_object_mut() {
        o.insert("services".into(), Value::Object(each));
    }
    (status, Json(body)).into_response()
}

async fn ready_one(services: Arc<Vec<ServiceOps>>, name: String) -> Response {
    let Some(service) = services.iter().find(|s| s.name == name) else {
        return (
            StatusCode::NOT_FOUND,
            Json(json!({"error": format!("no service named {name:?} runs here")})),
        )
            .into_response();
    };
    let answer = (service.ready)().await;
    let status = if answer.ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, Json(answer.body)).into_response()
}
