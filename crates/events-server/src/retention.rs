//! The retention sweep: events older than the retention period that no subscription is
//! still owed and no dead letter refers to are deleted, in batches, by one node at a time
//! (a lease in the coordination store), every minute.

use crate::Events;
use chrono::{TimeDelta, Utc};
use std::time::Duration;

const BATCH: u32 = 1000;
const INTERVAL: Duration = Duration::from_secs(60);

impl Events {
    /// Starts the sweep, unless retention is off.
    pub fn spawn_retention(&self) -> Option<tokio::task::JoinHandle<()>> {
        let keep = self.config().retention?;
        let keep = TimeDelta::from_std(keep).unwrap_or(TimeDelta::MAX);
        let events = self.clone();
        Some(tokio::spawn(async move {
            let mut tick = tokio::time::interval(INTERVAL);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                let held = events
                    .inner
                    .coord
                    .try_lease("events-retention", &events.inner.node, INTERVAL * 2)
                    .await
                    .unwrap_or(false);
                if !held {
                    continue;
                }
                let before = Utc::now()
                    .checked_sub_signed(keep)
                    .unwrap_or(chrono::DateTime::<Utc>::MIN_UTC);
                loop {
                    match events.inner.store.purge(before, BATCH).await {
                        Ok(0) => break,
                        Ok(n) => {
                            ::metrics::counter!("events_purged_total", "service" => "events")
                                .increment(n);
                            tracing::debug!(purged = n, "events: retention");
                        }
                        Err(e) => {
                            tracing::warn!(error = %e, "events: retention sweep failed");
                            break;
                        }
                    }
                }
            }
        }))
    }
}
