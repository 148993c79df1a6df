//! Fetching and caching public keys: each app's JWKS (API.md 4.3: `GET` with
//! `User-Agent: APIM`, 55 s timeout, cached per URL for an hour and not refetched for an
//! unknown `kid`) and each identity provider's (API.md 5: cached a day, refetched when a
//! `kid` is missing).

use auth_protocol::Jwks;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

pub const APP_JWKS_TTL: Duration = Duration::from_secs(3600);
pub const IDP_JWKS_TTL: Duration = Duration::from_secs(86_400);
const FETCH_TIMEOUT: Duration = Duration::from_secs(55);
/// A JWKS larger than this is refused (real ones are a few KiB).
const MAX_JWKS_BYTES: usize = 256 * 1024;
/// URLs cached at most (one per app and identity provider).
const MAX_CACHED: usize = 10_000;

/// A JWKS URL the platform accepts: HTTPS with a path. Plain HTTP is accepted only for a
/// loopback host, so that a developer can serve keys from their own machine.
pub fn check_url(url: &str) -> Result<(), String> {
    let parsed = url::Url::parse(url).map_err(|e| format!("jwks_url {url:?}: {e}"))?;
    let loopback = match parsed.host() {
        Some(url::Host::Domain(d)) => d == "localhost",
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        None => false,
    };
    match parsed.scheme() {
        "https" => Ok(()),
        "http" if loopback => Ok(()),
        _ => Err(format!(
            "jwks_url {url:?}: must be https (plain http only on a loopback host)"
        )),
    }
}

/// The URL has a path beyond `/` (API.md 4.2 row 18: one without is "can't be reached").
fn has_path(url: &str) -> bool {
    url::Url::parse(url).is_ok_and(|u| u.path().len() > 1)
}

/// Each URL's keys and when they were fetched.
type Entries = HashMap<String, (Instant, Arc<Jwks>)>;

#[derive(Clone)]
pub struct JwksCache {
    http: reqwest::Client,
    entries: Arc<Mutex<Entries>>,
}

impl JwksCache {
    pub fn new() -> Self {
        let http = reqwest::Client::builder()
            .user_agent("APIM")
            .timeout(FETCH_TIMEOUT)
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap_or_default();
        JwksCache {
            http,
            entries: Arc::default(),
        }
    }

    fn cached(&self, url: &str, ttl: Duration) -> Option<Arc<Jwks>> {
        let entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        entries
            .get(url)
            .filter(|(at, _)| at.elapsed() < ttl)
            .map(|(_, set)| set.clone())
    }

    /// The keys at `url`, from the cache while they are younger than `ttl`. With
    /// `refetch_for`, a cached set without that `kid` is fetched again (identity
    /// providers rotate keys; apps' sets are not refetched, as on the platform).
    pub async fn get(
        &self,
        url: &str,
        ttl: Duration,
        refetch_for: Option<&str>,
    ) -> Result<Arc<Jwks>, String> {
        if let Some(set) = self.cached(url, ttl) {
            if refetch_for.is_none_or(|kid| set.key(kid).is_some()) {
                return Ok(set);
            }
        }
        let set = Arc::new(self.fetch(url).await?);
        let mut entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        if entries.len() >= MAX_CACHED {
            entries.retain(|_, (at, _)| at.elapsed() < ttl);
        }
        entries.insert(url.to_string(), (Instant::now(), set.clone()));
        Ok(set)
    }

    async fn fetch(&self, url: &str) -> Result<Jwks, String> {
        check_url(url)?;
        if !has_path(url) {
            return Err(format!("{url}: no path"));
        }
        let response = self.http.get(url).send().await.map_err(|e| e.to_string())?;
        if !response.status().is_success() {
            return Err(format!("{url}: HTTP {}", response.status()));
        }
        if response
            .content_length()
            .is_some_and(|n| n as usize > MAX_JWKS_BYTES)
        {
            return Err(format!("{url}: larger than {MAX_JWKS_BYTES} bytes"));
        }
        // Read piece by piece and stop at the limit: a server that sends no length must
        // not make the front door hold an endless body.
        let mut response = response;
        let mut body = Vec::new();
        while let Some(piece) = response.chunk().await.map_err(|e| e.to_string())? {
            if body.len() + piece.len() > MAX_JWKS_BYTES {
                return Err(format!("{url}: larger than {MAX_JWKS_BYTES} bytes"));
            }
            body.extend_from_slice(&piece);
        }
        Jwks::parse(&body).ok_or_else(|| format!("{url}: not a JWKS document"))
    }
}

impl Default for JwksCache {
    fn default() -> Self {
        Self::new()
    }
}
