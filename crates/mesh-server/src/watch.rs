//! Gauges an operator alerts on, refreshed in the background: the data directory's disk,
//! inbox depths and the oldest waiting message, messages by status, bytes stored, and
//! certificate expiry. Reading them costs a few queries every `STORE_EVERY`, never a
//! request's time.

use crate::state::AppState;
use crate::tls::TlsReloader;
use std::time::Duration;

/// How often the disk is looked at: a full disk must stop sends within a second or so.
const DISK_EVERY: Duration = Duration::from_secs(1);
/// How often the store-wide figures are read.
const STORE_EVERY: Duration = Duration::from_secs(15);
/// Inboxes reported by depth, by name: the deepest ones only, so the series stay few.
pub const TOP_INBOXES: u32 = 10;

/// Starts the watch; it lives as long as the runtime.
pub fn spawn(state: AppState, tls: Option<TlsReloader>) {
    if let Some(disk) = state.inner.disk.clone() {
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(DISK_EVERY);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                let guard = disk.clone();
                match tokio::task::spawn_blocking(move || guard.check()).await {
                    Ok(Ok(s)) => {
                        metrics::gauge!("mesh_disk_free_bytes", "service" => "mesh")
                            .set(s.free as f64);
                        metrics::gauge!("mesh_disk_low", "service" => "mesh").set(if s.low {
                            1.0
                        } else {
                            0.0
                        });
                    }
                    Ok(Err(e)) => {
                        metrics::counter!("mesh_store_errors_total", "service" => "mesh", "operation" => "disk_check")
                            .increment(1);
                        tracing::warn!(error = %e, "disk check failed");
                    }
                    Err(_) => {}
                }
            }
        });
    }
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(STORE_EVERY);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            refresh_store_figures(&state).await;
            if let Some(tls) = &tls {
                for (kind, t) in tls.expiries() {
                    metrics::gauge!("mesh_tls_certificate_expiry_seconds", "service" => "mesh", "certificate" => kind)
                        .set(t as f64);
                }
            }
        }
    });
}

/// Reads the store-wide figures into their gauges.
pub async fn refresh_store_figures(state: &AppState) {
    let meta = &state.store().meta;
    match meta.stats().await {
        Ok(stats) => {
            for status in [
                "uploading",
                "accepted",
                "acknowledged",
                "undeliverable",
                "error",
            ] {
                let n = stats
                    .by_status
                    .iter()
                    .find(|(s, _)| s == status)
                    .map_or(0, |(_, n)| *n);
                metrics::gauge!("mesh_messages", "service" => "mesh", "status" => status)
                    .set(n as f64);
            }
            metrics::gauge!("mesh_stored_bytes", "service" => "mesh")
                .set(stats.stored_bytes as f64);
            let age = stats.oldest_waiting.map_or(0.0, |t| {
                (state.now() - t).num_milliseconds() as f64 / 1000.0
            });
            metrics::gauge!("mesh_oldest_unacknowledged_age_seconds", "service" => "mesh")
                .set(age.max(0.0));
        }
        Err(e) => {
            metrics::counter!("mesh_store_errors_total", "service" => "mesh", "operation" => "stats")
                .increment(1);
            tracing::warn!(error = %e, "reading store figures failed");
        }
    }
    match meta.inbox_depths(TOP_INBOXES).await {
        Ok(depths) => {
            // The deepest inboxes by name; one that drops out of the top is set to 0
            // rather than left showing its last depth.
            let mut shown = REPORTED.lock().unwrap_or_else(|p| p.into_inner());
            let now: std::collections::BTreeSet<String> =
                depths.iter().map(|d| d.mailbox.clone()).collect();
            for gone in shown.difference(&now) {
                metrics::gauge!("mesh_inbox_depth", "service" => "mesh", "mailbox" => gone.clone())
                    .set(0.0);
            }
            for d in &depths {
                metrics::gauge!("mesh_inbox_depth", "service" => "mesh", "mailbox" => d.mailbox.clone())
                    .set(d.waiting as f64);
            }
            shown.extend(now);
        }
        Err(e) => {
            metrics::counter!("mesh_store_errors_total", "service" => "mesh", "operation" => "inbox_depths")
                .increment(1);
            tracing::warn!(error = %e, "reading inbox depths failed");
        }
    }
}

/// Mailboxes given an inbox-depth series so far (to zero those that left the top).
static REPORTED: std::sync::Mutex<std::collections::BTreeSet<String>> =
    std::sync::Mutex::new(std::collections::BTreeSet::new());
