//! What a protected API and the gateway in front of it agree on, as data: the API's
//! declaration ([`Protected`]: its name, its scope table, its error shape, its default
//! limits) and what the gateway hands the API about the caller ([`Caller`]).
//!
//! It lives here, in a crate of pure rules that every service may use, so that a service
//! (PDS, events) declares itself and reads its caller without depending on the front
//! door's crate: the binary puts the front door's layer around the service's router.

use crate::limits::ApiLimits;
use crate::scopes::{AccessMode, AccessRule};
use crate::TokenRecord;
use std::sync::Arc;

/// How an API words its refusals: the platform's own fault JSON (an API with no error
/// format of its own), or a FHIR OperationOutcome (PDS).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorStyle {
    Plain,
    Fhir,
}

/// What a protected API declares to the gateway.
#[derive(Debug, Clone)]
pub struct Protected {
    /// The API's name in products and rate limits (`personal-demographics`).
    pub api: &'static str,
    /// Scope → access mode, later rules winning (API.md 7).
    pub rules: Vec<AccessRule>,
    pub style: ErrorStyle,
    /// Limits for every app without its own (API.md 9: PDS 5 per second).
    pub default_limits: ApiLimits,
}

/// Who is calling, as the gateway checked it, in the request's extensions.
#[derive(Debug, Clone)]
pub struct Caller {
    pub token: Arc<TokenRecord>,
    pub mode: AccessMode,
    pub app_name: String,
    pub asid: Option<String>,
    /// The app's switches for this API (`apim-app-flow-vars`).
    pub flags: Option<serde_json::Value>,
}
