//! Shared server state and the per-request context every handler starts from.

use crate::audit;
use crate::caller::{TokenKey, TokenSlot, TokenUse};
use crate::config::{RateLimit, ServerConfig};
use crate::directory::{Directory, DirectorySource};
use crate::error::ApiError;
use axum::http::HeaderMap;
use chrono::{TimeDelta, Utc};
use mesh_protocol::version::BadAccept;
use mesh_protocol::{
    ApiVersion, AuthToken, Clock, Mailbox, MeshError, ShiftedClock, SystemClock, TokenError,
};
use mesh_store::Store;
use spine_http::ratelimit::KeyedRates as MailboxRates;
use spine_http::Peer;
use std::sync::{Arc, RwLock};

/// Everything handlers share. Cheap to clone.
#[derive(Clone)]
pub struct AppState {
    pub inner: Arc<Inner>,
}

pub struct Inner {
    pub config: ServerConfig,
    pub store: Store,
    /// Reloaded by the sandbox "reset all" call, hence the lock.
    pub directory: RwLock<Arc<Directory>>,
    pub directory_source: DirectorySource,
    pub rates: Option<MailboxRates>,
    /// "Now" for auth, message times and the lifecycle sweep (one clock, so tests and
    /// the sandbox's clock call move all of them together).
    pub clock: Arc<dyn Clock>,
    /// Wakes the lifecycle worker before its next tick (a mailbox was deactivated).
    pub lifecycle_kick: tokio::sync::Notify,
    /// The data directory's free-space watch and reserve (embedded store only).
    pub disk: Option<Arc<mesh_store::DiskGuard>>,
}

impl AppState {
    /// The system clock; in sandbox mode a clock that `POST /admin/clock` can move on.
    pub fn new(
        config: ServerConfig,
        store: Store,
        source: DirectorySource,
    ) -> Result<Self, crate::directory::DirectoryError> {
        let clock: Arc<dyn Clock> = if config.sandbox {
            Arc::new(ShiftedClock::new())
        } else {
            Arc::new(SystemClock)
        };
        Self::with_clock(config, store, source, clock)
    }

    pub fn with_clock(
        config: ServerConfig,
        store: Store,
        source: DirectorySource,
        clock: Arc<dyn Clock>,
    ) -> Result<Self, crate::directory::DirectoryError> {
        let directory = crate::directory::load(&source)?;
        // Nodes sharing a store count requests in the store, so the limit holds across
        // all of them; a lone node counts in memory.
        let rates = config
            .rate_limit
            .filter(|_| !store.is_shared())
            .map(MailboxRates::new);
        Ok(AppState {
            inner: Arc::new(Inner {
                config,
                store,
                directory: RwLock::new(Arc::new(directory)),
                directory_source: source,
                rates,
                clock,
                lifecycle_kick: tokio::sync::Notify::new(),
                disk: None,
            }),
        })
    }

    /// Watches the data directory's disk (see [`mesh_store::DiskGuard`]). Call before the
    /// state is shared.
    pub fn with_disk_guard(mut self, guard: Arc<mesh_store::DiskGuard>) -> Self {
        if let Some(inner) = Arc::get_mut(&mut self.inner) {
            inner.disk = Some(guard);
        }
        self
    }

    /// True while the data directory's disk is low: sends are refused.
    pub fn disk_low(&self) -> bool {
        self.inner.disk.as_ref().is_some_and(|d| d.is_low())
    }

    /// Runs a store write; when it fails for lack of space, frees the disk reserve and
    /// tries once more. Reads and acknowledgements keep working on a full disk this way.
    pub async fn write_with_reserve<T, F, Fut>(&self, write: F) -> mesh_store::Result<T>
    where
        F: Fn() -> Fut,
        Fut: std::future::Future<Output = mesh_store::Result<T>>,
    {
        match write().await {
            Err(e) if mesh_store::is_disk_full(&e) => {
                match &self.inner.disk {
                    Some(disk) => {
                        let guard = disk.clone();
                        let _ = tokio::task::spawn_blocking(move || guard.on_full()).await;
                        metrics::gauge!("mesh_disk_low", "service" => "mesh")
                            .set(if disk.is_low() { 1.0 } else { 0.0 });
                        write().await
                    }
                    None => Err(e),
                }
            }
            other => other,
        }
    }

    pub fn config(&self) -> &ServerConfig {
        &self.inner.config
    }

    pub fn now(&self) -> chrono::DateTime<Utc> {
        self.inner.clock.now()
    }

    pub fn clock(&self) -> &dyn Clock {
        self.inner.clock.as_ref()
    }

    pub fn store(&self) -> &Store {
        &self.inner.store
    }

    pub fn directory(&self) -> Arc<Directory> {
        self.inner
            .directory
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    pub fn reload_directory(&self) -> Result<(), crate::directory::DirectoryError> {
        let fresh = crate::directory::load(&self.inner.directory_source)?;
        for warning in fresh.warnings() {
            tracing::warn!("{warning}");
        }
        *self
            .inner
            .directory
            .write()
            .unwrap_or_else(|p| p.into_inner()) = Arc::new(fresh);
        // A mailbox may have been deactivated: its messages get their reports now.
        self.inner.lifecycle_kick.notify_one();
        Ok(())
    }

    /// Checks the `NHSMESH` token for `path_mailbox` (API.md 2.3) and returns the caller's
    /// mailbox. Runs before any other validation: unauthenticated callers only ever see 403.
    ///
    /// Order matters: the cheap checks (HMAC, clock, certificate, rate) come before the
    /// token is recorded in the store, so unauthenticated or throttled traffic never
    /// writes anything.
    ///
    /// Called by the [`crate::caller::Caller`] extractor, which hands in the connection's
    /// peer (certificate binding, audit) and the slot where the token's record is noted
    /// for [`crate::caller::release_on_retry`].
    pub async fn authenticate(
        &self,
        headers: &HeaderMap,
        path_mailbox: &str,
        peer: Option<&Peer>,
        slot: Option<&TokenSlot>,
    ) -> Result<Mailbox, MeshError> {
        let value = header_text(headers, "authorization");
        let token = AuthToken::parse(value.as_deref(), path_mailbox).map_err(|e| match e {
            TokenError::Missing => {
                audit::auth_refused(peer, path_mailbox, "missing token");
                MeshError::auth_unreadable()
            }
            TokenError::Malformed => {
                audit::auth_refused(peer, path_mailbox, "malformed token");
                MeshError::auth_unreadable()
            }
            TokenError::MailboxMismatch => {
                audit::auth_refused(peer, path_mailbox, "token for another mailbox");
                MeshError::auth_mailbox_mismatch()
            }
        })?;
        let directory = self.directory();
        let Some(mailbox) = directory.mailbox(path_mailbox) else {
            audit::auth_refused(peer, path_mailbox, "unknown mailbox");
            return Err(MeshError::no_mailbox_matched());
        };
        let config = self.config();
        if !token.verify(&config.shared_key, &mailbox.password) {
            audit::auth_refused(peer, path_mailbox, "bad hmac");
            return Err(MeshError::invalid_token());
        }
        let window = config
            .clock_window
            .map(|w| TimeDelta::from_std(w).unwrap_or(TimeDelta::hours(2)));
        if let Some(window) = window {
            if !token.within_window(self.now(), window) {
                audit::auth_refused(peer, path_mailbox, "timestamp outside the clock window");
                return Err(MeshError::token_out_of_window());
            }
        }
        if !mailbox.certificate_cns.is_empty() {
            let cn = peer.and_then(|p| p.client_cn.clone());
            if !cn.is_some_and(|cn| mailbox.certificate_cns.iter().any(|c| **c == *cn)) {
                audit::auth_refused(
                    peer,
                    path_mailbox,
                    "client certificate not bound to mailbox",
                );
                return Err(MeshError::certificate_not_permitted());
            }
        }
        if !mailbox.active && !config.sandbox {
            audit::auth_refused(peer, path_mailbox, "inactive mailbox");
            return Err(MeshError::inactive_mailbox());
        }
        if let Some(rates) = &self.inner.rates {
            if let Err(wait) = rates.check(&mailbox.mailbox_id) {
                audit::rate_limited(peer, &mailbox.mailbox_id);
                return Err(MeshError::rate_limited(wait.max(1)));
            }
        } else if let Some(limit) = config.rate_limit {
            self.check_shared_rate(&mailbox.mailbox_id, limit, peer)
                .await?;
        }
        if config.replay_check {
            // Kept for as long as the clock check would accept the token (its time, the
            // window and the token's minute), not a second less: a record swept earlier
            // would let a token replayed in its last minute through. Without a clock
            // check, tokens are remembered for a day from their first use.
            let now = self.now();
            let expires_at = match window {
                Some(window) => token.accepted_until(window),
                None => None,
            }
            .unwrap_or_else(|| {
                now.checked_add_signed(TimeDelta::hours(24))
                    .unwrap_or(chrono::DateTime::<Utc>::MAX_UTC)
            });
            let count = token.nonce_count.parse::<u64>().unwrap_or(u64::MAX);
            let key = TokenKey {
                mailbox: token.mailbox_id.clone(),
                nonce: token.nonce.clone(),
                count,
            };
            let note = |used: TokenUse| {
                if let Some(slot) = slot {
                    slot.set(used);
                }
            };
            let first = self
                .write_with_reserve(|| {
                    self.store().meta.use_token(
                        &token.mailbox_id,
                        &token.nonce,
                        count,
                        expires_at,
                        now,
                    )
                })
                .await
                .map_err(|e| {
                    // The insert may still have committed (a connection lost during
                    // COMMIT), so the token is given back, but off the answer's path:
                    // in an outage that second wait would only double the delay.
                    note(TokenUse::Uncertain(key.clone()));
                    tracing::error!(error = %e, "recording a token use failed");
                    MeshError::unavailable()
                })?;
            if first {
                note(TokenUse::Recorded(key));
            } else {
                audit::auth_refused(peer, path_mailbox, "replayed token");
                return Err(MeshError::duplicated_token());
            }
        }
        Ok(mailbox.clone())
    }
}

impl AppState {
    /// The rate limit across every node sharing the store: a fixed window of
    /// `burst / per_second` seconds (at least one) that admits `burst` requests, counted in
    /// the store. Coarser than the in-memory token bucket, but one count per request is
    /// all it costs and no node can grant a mailbox more than its share.
    async fn check_shared_rate(
        &self,
        mailbox: &str,
        limit: RateLimit,
        peer: Option<&Peer>,
    ) -> Result<(), MeshError> {
        let per_second = u64::from(limit.per_second.max(1));
        let burst = u64::from(limit.burst.max(limit.per_second).max(1));
        let window = burst.div_ceil(per_second).max(1) as i64;
        let now = Utc::now().timestamp();
        let start = now - now.rem_euclid(window);
        let hits = self
            .store()
            .meta
            .count_request(mailbox, start)
            .await
            .map_err(|e| {
                tracing::error!(error = %e, "counting a request for the rate limit failed");
                MeshError::unavailable()
            })?;
        if hits > burst {
            audit::rate_limited(peer, mailbox);
            let wait = (start + window - now).max(1) as u64;
            return Err(MeshError::rate_limited(wait));
        }
        Ok(())
    }
}

/// A header as text; bytes that are not UTF-8 are replaced rather than refused, because
/// MESH accepts non-ASCII subjects (API.md 4.1).
pub fn header_text(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get(name)
        .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
}

/// The API version a request asked for; errors before the Accept check are rendered in
/// v1 when the header is malformed (API.md 6.1).
#[derive(Debug, Clone, Copy)]
pub struct Negotiated {
    parsed: Result<ApiVersion, ()>,
}

impl Negotiated {
    pub fn from_headers(headers: &HeaderMap) -> Self {
        let accept = header_text(headers, "accept");
        Negotiated {
            parsed: ApiVersion::from_accept(accept.as_deref()).map_err(|BadAccept| ()),
        }
    }

    /// The version to render errors in.
    pub fn shape(&self) -> ApiVersion {
        self.parsed.unwrap_or(ApiVersion::V1)
    }

    /// The version, or the 400 for a malformed `Accept`.
    pub fn version(&self) -> Result<ApiVersion, ApiError> {
        self.parsed
            .map_err(|()| ApiError::new(MeshError::bad_accept(), ApiVersion::V1))
    }

    pub fn err(&self, e: MeshError) -> ApiError {
        ApiError::new(e, self.shape())
    }
}
