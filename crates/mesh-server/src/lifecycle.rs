//! The lifecycle worker: expires uncollected messages with their non-delivery reports,
//! deletes what is past retention and abandoned uploads, and trims the event log
//! (API.md 5.7, 5.8).
//!
//! It runs in every node. The store makes that safe: each batch is one transaction, rows
//! another node is working on are skipped (`FOR UPDATE SKIP LOCKED` on PostgreSQL; one
//! writer on SQLite), so exactly one node acts on a given message, and a node killed
//! mid-batch leaves nothing half done. Batches are bounded, so a sweep never holds the
//! store for long, and sends and downloads carry on between them.

use crate::state::AppState;
use chrono::TimeDelta;
use mesh_protocol::lifecycle::{earlier, period_days};
use mesh_protocol::ExpiryReason;
use mesh_store::{ExpirySweep, PurgeSweep, StoreError};
use serde::Serialize;
use std::time::{Duration, Instant};

/// What one sweep did.
#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
pub struct SweepReport {
    pub expired: u64,
    pub reports: u64,
    pub purged: u64,
    pub abandoned: u64,
    pub bytes_freed: u64,
    pub log_trimmed: u64,
    /// Work still due when the sweep ended (another node's, or more than it could do).
    pub backlog: u64,
}

impl SweepReport {
    /// Adds another sweep's counts; the backlog is the latest sweep's.
    pub fn add(&mut self, other: &SweepReport) {
        self.expired += other.expired;
        self.reports += other.reports;
        self.purged += other.purged;
        self.abandoned += other.abandoned;
        self.bytes_freed += other.bytes_freed;
        self.log_trimmed += other.log_trimmed;
        self.backlog = other.backlog;
    }
}

fn delta(d: Duration) -> TimeDelta {
    TimeDelta::from_std(d).unwrap_or(TimeDelta::MAX)
}

/// Runs one sweep to the end of what is due now.
pub async fn sweep(state: &AppState) -> Result<SweepReport, StoreError> {
    let started = Instant::now();
    let cfg = &state.config().lifecycle;
    let store = state.store();
    let now = state.now();
    let limit = cfg.batch.max(1);
    let mut report = SweepReport::default();

    let mut expiry = ExpirySweep {
        now,
        not_collected: ExpiryReason::NotCollected {
            days: cfg.inbox_expiry.map(period_days).unwrap_or(5),
        },
        inactive: state.directory().inactive_mailboxes(),
        report_period: cfg.inbox_period(),
        limit,
        id_offset: 0,
    };
    if cfg.inbox_expiry.is_some() {
        loop {
            let done = store.meta.expire_due(&expiry).await?;
            report.expired += done.expired;
            report.reports += done.reports;
            metrics::counter!("mesh_lifecycle_expired_total", "service" => "mesh")
                .increment(done.expired);
            metrics::counter!("mesh_lifecycle_reports_total", "service" => "mesh")
                .increment(done.reports);
            if done.expired < u64::from(limit) {
                break;
            }
            expiry.id_offset += u64::from(limit);
            tokio::task::yield_now().await;
        }
    }

    let purge = PurgeSweep {
        retention_cutoff: cfg.retention.map(|d| earlier(now, delta(d))),
        upload_cutoff: cfg.upload_timeout.map(|d| earlier(now, delta(d))),
        now,
        limit,
    };
    if purge.retention_cutoff.is_some() || purge.upload_cutoff.is_some() {
        loop {
            let done = store.purge_due(&purge).await?;
            report.purged += done.purged;
            report.abandoned += done.abandoned;
            report.bytes_freed += done.bytes;
            metrics::counter!("mesh_lifecycle_purged_total", "service" => "mesh", "reason" => "retention")
                .increment(done.purged);
            metrics::counter!("mesh_lifecycle_purged_total", "service" => "mesh", "reason" => "abandoned_upload")
                .increment(done.abandoned);
            metrics::counter!("mesh_lifecycle_bytes_freed_total", "service" => "mesh")
                .increment(done.bytes);
            if done.purged + done.abandoned < u64::from(limit) {
                break;
            }
            tokio::task::yield_now().await;
        }
    }

    if let Some(keep) = cfg.log_retention {
        report.log_trimmed = store.meta.trim_log(earlier(now, delta(keep))).await?;
    }

    let expiry_on = cfg.inbox_expiry.is_some().then_some(&expiry);
    report.backlog = store.meta.lifecycle_backlog(expiry_on, &purge).await?;
    metrics::gauge!("mesh_lifecycle_backlog", "service" => "mesh").set(report.backlog as f64);
    metrics::gauge!("mesh_lifecycle_last_sweep_seconds", "service" => "mesh")
        .set(started.elapsed().as_secs_f64());
    let did_work = report.expired + report.purged + report.abandoned + report.log_trimmed > 0;
    if did_work {
        tracing::info!(
            expired = report.expired,
            reports = report.reports,
            purged = report.purged,
            abandoned = report.abandoned,
            bytes_freed = report.bytes_freed,
            log_trimmed = report.log_trimmed,
            backlog = report.backlog,
            seconds = started.elapsed().as_secs_f64(),
            "lifecycle sweep"
        );
    }
    Ok(report)
}

/// Sweeps once now, then every `interval`, and whenever the directory is reloaded (a
/// mailbox may have been deactivated). A failed sweep (the store away) is logged and
/// retried at the next tick.
pub fn spawn(state: AppState) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let interval = state
            .config()
            .lifecycle
            .interval
            .max(Duration::from_millis(10));
        loop {
            if let Err(e) = sweep(&state).await {
                metrics::counter!("mesh_lifecycle_failures_total", "service" => "mesh")
                    .increment(1);
                tracing::warn!(error = %e, "lifecycle sweep failed; retrying at the next tick");
            }
            tokio::select! {
                () = tokio::time::sleep(interval) => {}
                () = state.inner.lifecycle_kick.notified() => {}
            }
        }
    })
}
