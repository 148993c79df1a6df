//! The front door (frontdoor API.md): the OAuth2 token service the NHS API platform puts
//! before every Spine API, and the bearer layer that protects those APIs.
//!
//! * `POST /oauth2/token` ([`token`]): client credentials with a signed JWT, token
//!   exchange of CIS2 and NHS login ID tokens, refresh; every check in the platform's
//!   order, with its exact strings ([`auth_protocol`]).
//! * [`bearer`]: the layer a service puts its routes behind: the token, the app's
//!   subscription, quotas, the access mode from the service's own scope table, the
//!   gateway headers (`NHSD-*`), request-id mirroring and CORS.
//! * [`hello`]: the NHS "Hello World" API, behind the layer, for a newcomer's first token.
//!
//! State that must hold across nodes (used `jti`s, access and refresh tokens, quota
//! counts) lives in the coordination store ([`spine_store::Coordination`]), so any node
//! accepts a token another issued.

pub mod bearer;
pub mod devapp;
pub mod hello;
pub mod jwks;
pub mod registry;
pub mod settings;
pub mod token;

use registry::{App, Registry, RegistryError};
use spine_store::Coordination;
use std::path::PathBuf;
use std::sync::{Arc, RwLock};

/// An identity provider whose ID tokens may be exchanged (API.md 5).
#[derive(Debug, Clone)]
pub struct IdentityProvider {
    pub issuer: String,
    pub jwks_url: String,
}

/// The front door's settings.
#[derive(Debug, Clone)]
pub struct FrontDoorConfig {
    /// The JSON-lines app registry; `None` with `demo` serves the demo app alone.
    pub registry: Option<PathBuf>,
    /// Adds the demo app (its keys are public, in the repository: never for real use).
    pub demo: bool,
    /// The NHS sandbox's behaviour (no quotas).
    pub sandbox: bool,
    pub cis2: Option<IdentityProvider>,
    pub nhs_login: Option<IdentityProvider>,
    /// The base URL clients call (`https://api.example.nhs.uk`), when the server is
    /// behind a proxy: a client assertion's `aud` must be `<base>/oauth2/token`. Without
    /// it, the URL is built from the request's `Host` and the listener's scheme.
    pub public_base_url: Option<String>,
    /// The scheme the listener serves (`https` under TLS).
    pub scheme: &'static str,
    /// `apikey` header value for `/oauth2/_status`; `None` refuses every call.
    pub status_api_key: Option<String>,
    /// Token-endpoint requests per app per minute (API.md 9: the token service's own
    /// default, 300).
    pub token_quota_per_minute: u64,
    /// A request body that sends nothing for this long is abandoned (the listener's
    /// setting, shared with every service).
    pub body_idle_timeout: std::time::Duration,
}

/// The demo app: a fixed client id and a key pair whose private half is in the
/// repository (`crates/frontdoor/demo/`), like MESH's public `TestKey`.
pub const DEMO_CLIENT_ID: &str = "openspine-demo-app";
pub const DEMO_KID: &str = "openspine-demo-1";
pub const DEMO_PRIVATE_KEY_PEM: &str = include_str!("../demo/private.pem");
const DEMO_JWKS: &str = include_str!("../demo/jwks.json");

fn demo_app() -> App {
    App {
        client_id: DEMO_CLIENT_ID.into(),
        name: "OpenSpine demo app".into(),
        status: registry::AppStatus::Approved,
        client_secret: Some("openspine-demo-secret".into()),
        jwks_url: None,
        jwks: auth_protocol::Jwks::parse(DEMO_JWKS.as_bytes()),
        asid: Some("200000000001".into()),
        products: vec![
            registry::Product {
                name: "openspine-demo".into(),
                scopes: hello::DEMO_SCOPES.iter().map(|s| s.to_string()).collect(),
                apis: vec![hello::API.into()],
            },
            // The events service: subscribe, and publish any type.
            registry::Product {
                name: "openspine-demo-events".into(),
                scopes: vec![DEMO_EVENTS_SCOPE.into()],
                apis: vec![DEMO_EVENTS_API.into()],
            },
        ],
        rate_limits: Default::default(),
        flags: serde_json::json!({DEMO_EVENTS_API: {"permissions": ["events:create:*"]}})
            .as_object()
            .cloned()
            .unwrap_or_default(),
    }
}

/// The events service as the demo app is subscribed to it (by name: the front door
/// knows no service's crate).
pub(crate) const DEMO_EVENTS_API: &str = "multicast-notification-service";
pub(crate) const DEMO_EVENTS_SCOPE: &str =
    "urn:nhsd:apim:app:level3:multicast-notification-service";

/// Everything the front door's handlers share. Cheap to clone.
#[derive(Clone)]
pub struct FrontDoor {
    inner: Arc<Inner>,
}

struct Inner {
    config: FrontDoorConfig,
    registry: RwLock<Arc<Registry>>,
    coord: Arc<dyn Coordination>,
    jwks: jwks::JwksCache,
}

impl FrontDoor {
    pub fn new(
        config: FrontDoorConfig,
        coord: Arc<dyn Coordination>,
    ) -> Result<Self, RegistryError> {
        let registry = Self::load_registry(&config)?;
        Ok(FrontDoor {
            inner: Arc::new(Inner {
                config,
                registry: RwLock::new(Arc::new(registry)),
                coord,
                jwks: jwks::JwksCache::new(),
            }),
        })
    }

    /// The registry `config` names, as the server would load it (for `check-config`).
    pub fn registry_from(config: &FrontDoorConfig) -> Result<Registry, RegistryError> {
        Self::load_registry(config)
    }

    fn load_registry(config: &FrontDoorConfig) -> Result<Registry, RegistryError> {
        let mut registry = match &config.registry {
            Some(path) => Registry::load(path)?,
            None => Registry::default(),
        };
        if config.demo && registry.app(DEMO_CLIENT_ID).is_none() {
            let _ = registry.add(demo_app());
        }
        Ok(registry)
    }

    /// Re-reads the registry file (SIGHUP). On error the apps already loaded stay.
    pub fn reload(&self) -> Result<usize, RegistryError> {
        let fresh = Self::load_registry(&self.inner.config)?;
        let n = fresh.len();
        *self
            .inner
            .registry
            .write()
            .unwrap_or_else(|p| p.into_inner()) = Arc::new(fresh);
        Ok(n)
    }

    pub fn registry(&self) -> Arc<Registry> {
        self.inner
            .registry
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    pub fn config(&self) -> &FrontDoorConfig {
        &self.inner.config
    }

    pub fn coord(&self) -> &dyn Coordination {
        self.inner.coord.as_ref()
    }

    pub(crate) fn jwks(&self) -> &jwks::JwksCache {
        &self.inner.jwks
    }

    /// Readiness for the ops listener: the coordination store answers.
    pub fn service_ops(&self) -> spine_http::ops::ServiceOps {
        let fd = self.clone();
        spine_http::ops::ServiceOps {
            name: "frontdoor",
            ready: Arc::new(move || {
                let fd = fd.clone();
                Box::pin(async move {
                    match fd.coord().ping().await {
                        Ok(()) => spine_http::ops::Readiness {
                            ready: true,
                            body: serde_json::json!({"status": "ready", "apps": fd.registry().len()}),
                        },
                        Err(e) => {
                            tracing::warn!(error = %e, "front door readiness: store");
                            spine_http::ops::Readiness {
                                ready: false,
                                body: serde_json::json!({"status": "unavailable", "reason": "store"}),
                            }
                        }
                    }
                })
            }),
        }
    }
}

impl Default for FrontDoorConfig {
    fn default() -> Self {
        FrontDoorConfig {
            registry: None,
            demo: false,
            sandbox: false,
            cis2: None,
            nhs_login: None,
            public_base_url: None,
            scheme: "http",
            status_api_key: None,
            token_quota_per_minute: 300,
            body_idle_timeout: std::time::Duration::from_secs(60),
        }
    }
}

/// Every route of the front door (the token service and the Hello World API), for the
/// binary to merge into the listener's router: with the listener's body deadline, a
/// request span, and a panic turned into a 500 instead of a dropped connection.
pub fn router(fd: FrontDoor) -> axum::Router {
    let idle = fd.config().body_idle_timeout;
    token::router(fd.clone())
        .merge(hello::router(fd))
        .layer(tower_http::timeout::RequestBodyTimeoutLayer::new(idle))
        .layer(
            tower_http::trace::TraceLayer::new_for_http()
                .make_span_with(|request: &axum::http::Request<axum::body::Body>| {
                    tracing::info_span!(
                        "request",
                        service = "frontdoor",
                        method = spine_http::metrics::method_label(request.method()),
                    )
                })
                .on_failure(()),
        )
        .layer(tower_http::catch_panic::CatchPanicLayer::new())
}

/// Registers the front door's metric families at zero.
pub fn register_metrics() {
    spine_http::metrics::build_info("frontdoor");
    token::REQUESTS.register("/oauth2/token");
    for outcome in ["issued", "refused"] {
        metrics::counter!("frontdoor_tokens_total", "service" => "frontdoor", "outcome" => outcome)
            .increment(0);
    }
    for reason in [
        "no_token",
        "invalid_token",
        "expired_token",
        "not_subscribed",
        "scope",
        "quota",
        "spike_arrest",
    ] {
        metrics::counter!("frontdoor_bearer_refused_total", "service" => "frontdoor", "reason" => reason)
            .increment(0);
    }
}
