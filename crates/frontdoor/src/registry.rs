//! The application registry (API.md 2): every app that may ask for tokens, from a
//! JSON-lines file (one app per line), reloaded on SIGHUP. Every node reads the same file,
//! so every node knows the same apps.

use auth_protocol::limits::RateLimits;
use auth_protocol::Jwks;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::path::{Path, PathBuf};

/// One registered application.
#[derive(Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct App {
    /// The API key: `iss` = `sub` of its client assertions.
    pub client_id: String,
    pub name: String,
    #[serde(default)]
    pub status: AppStatus,
    /// For the refresh (and authorization-code) grants. Never logged.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_secret: Option<String>,
    /// Where the app publishes its public keys (HTTPS with a path; plain HTTP only on a
    /// loopback host, for local development).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jwks_url: Option<String>,
    /// Or the keys themselves, inline.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jwks: Option<Jwks>,
    /// Sent to services as `NHSD-ASID`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub asid: Option<String>,
    #[serde(default)]
    pub products: Vec<Product>,
    /// Per-API limits (API.md 9), keyed by API name.
    #[serde(default)]
    pub rate_limits: RateLimits,
    /// Per-API switches (`apim-app-flow-vars`), handed to the service as they are.
    #[serde(default)]
    pub flags: serde_json::Map<String, serde_json::Value>,
}

/// What an app may use: a set of scopes and the APIs they open.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Product {
    pub name: String,
    #[serde(default)]
    pub scopes: Vec<String>,
    #[serde(default)]
    pub apis: Vec<String>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AppStatus {
    #[default]
    Approved,
    Revoked,
}

impl App {
    /// Every scope of every product, in product order, without repeats.
    pub fn scopes(&self) -> Vec<String> {
        let mut out: Vec<String> = Vec::new();
        for s in self.products.iter().flat_map(|p| &p.scopes) {
            if !out.contains(s) {
                out.push(s.clone());
            }
        }
        out
    }

    /// The app is subscribed to a product that includes `api`.
    pub fn opens(&self, api: &str) -> bool {
        self.products
            .iter()
            .any(|p| p.apis.iter().any(|a| a == api))
    }
}

#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    #[error("reading the app registry {path}: {reason}")]
    Read { path: PathBuf, reason: String },
    #[error("{path}:{line}: {reason}")]
    Line {
        path: PathBuf,
        line: usize,
        reason: String,
    },
}

/// The apps, by client id.
#[derive(Debug, Clone, Default)]
pub struct Registry {
    apps: HashMap<String, App>,
}

impl Registry {
    pub fn app(&self, client_id: &str) -> Option<&App> {
        self.apps.get(client_id)
    }

    pub fn len(&self) -> usize {
        self.apps.len()
    }

    pub fn is_empty(&self) -> bool {
        self.apps.is_empty()
    }

    pub fn apps(&self) -> impl Iterator<Item = &App> {
        self.apps.values()
    }

    /// Adds apps, refusing a client id seen before (two lines for one app would make which
    /// one applies depend on the file's order).
    pub fn add(&mut self, app: App) -> Result<(), String> {
        if app.client_id.trim().is_empty() {
            return Err("client_id is empty".into());
        }
        if let Some(url) = &app.jwks_url {
            crate::jwks::check_url(url)?;
        }
        if self.apps.contains_key(&app.client_id) {
            return Err(format!("client_id {:?} is registered twice", app.client_id));
        }
        self.apps.insert(app.client_id.clone(), app);
        Ok(())
    }

    /// Reads a JSON-lines file: blank lines and lines starting `#` are skipped; any other
    /// line that is not a valid app stops the load with its line number.
    pub fn load(path: &Path) -> Result<Registry, RegistryError> {
        let text = std::fs::read_to_string(path).map_err(|e| RegistryError::Read {
            path: path.to_path_buf(),
            reason: e.to_string(),
        })?;
        let mut registry = Registry::default();
        for (i, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let fail = |reason: String| RegistryError::Line {
                path: path.to_path_buf(),
                line: i + 1,
                reason,
            };
            let app: App = serde_json::from_str(line).map_err(|e| fail(e.to_string()))?;
            registry.add(app).map_err(fail)?;
        }
        Ok(registry)
    }
}

/// Written by hand so that the client secret cannot reach a log through `{:?}`.
impl std::fmt::Debug for App {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("App")
            .field("client_id", &self.client_id)
            .field("name", &self.name)
            .field("status", &self.status)
            .field(
                "client_secret",
                &self.client_secret.as_ref().map(|_| "<redacted>"),
            )
            .field("jwks_url", &self.jwks_url)
            .field("asid", &self.asid)
            .field("products", &self.products)
            .finish_non_exhaustive()
    }
}

impl std::fmt::Display for App {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} ({})", self.name, self.client_id)
    }
}
