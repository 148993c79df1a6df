//! The delivery loop of one node.
//!
//! Every `poll_interval`, and at once after a publish on this node, the dispatcher asks
//! the store which subscriptions have deliveries that may be tried, and starts one task
//! per subscription (at most `concurrency`, never two for one subscription in this
//! process). A task first takes the subscription's lease in the coordination store, so
//! that across nodes one at a time works a queue; it then delivers the queue's head in
//! event order, renewing the lease before each delivery and while it runs. A failure
//! holds the queue (order is kept) until its retry time; after `retry_for` of failures
//! the event becomes a dead letter and the queue moves on. A node that dies mid-delivery
//! stops renewing: another takes the queue when the lease runs out and delivers the event
//! again (at least once; subscribers de-duplicate on the event id).

use crate::channel::Failure;
use crate::Events;
use chrono::{TimeDelta, Utc};
use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use tokio::sync::Semaphore;

/// Deliveries read per store round trip.
const BATCH: u32 = 32;

impl Events {
    /// Starts the dispatcher for this process.
    pub fn spawn_dispatcher(&self) -> tokio::task::JoinHandle<()> {
        let events = self.clone();
        tokio::spawn(async move { events.dispatch_loop().await })
    }

    async fn dispatch_loop(self) {
        let config = self.config().clone();
        let running: Arc<Mutex<HashSet<String>>> = Arc::default();
        let slots = Arc::new(Semaphore::new(config.concurrency.max(1)));
        loop {
            tokio::select! {
                _ = self.inner.wake.notified() => {}
                _ = tokio::time::sleep(config.poll_interval) => {}
            }
            let due = match self.inner.store.due(Utc::now(), 1024).await {
                Ok(due) => due,
                Err(e) => {
                    tracing::warn!(error = %e, "events: looking for deliveries failed");
                    continue;
                }
            };
            for id in due {
                {
                    let mut running = running.lock().unwrap_or_else(|p| p.into_inner());
                    if !running.insert(id.clone()) {
                        continue;
                    }
                }
                let Ok(permit) = slots.clone().try_acquire_owned() else {
                    running
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .remove(&id);
                    break;
                };
                let events = self.clone();
                let running = running.clone();
                tokio::spawn(async move {
                    events.work_queue(&id).await;
                    running
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .remove(&id);
                    drop(permit);
                });
            }
        }
    }

    async fn take_lease(&self, subscription_id: &str) -> bool {
        match self
            .inner
            .coord
            .try_lease(
                &format!("events-subscription:{subscription_id}"),
                &self.inner.node,
                self.config().lease,
            )
            .await
        {
            Ok(held) => held,
            Err(e) => {
                tracing::warn!(error = %e, subscription = subscription_id, "events: lease failed");
                false
            }
        }
    }

    /// Works one subscription's queue for as long as it has deliveries that may be tried.
    async fn work_queue(&self, subscription_id: &str) {
        let config = self.config();
        let store = &self.inner.store;
        loop {
            let Ok(Some(stored)) = store.subscription(subscription_id).await else {
                return;
            };
            if stored.retry_at > Utc::now() {
                return;
            }
            let head = match store.head(subscription_id, BATCH).await {
                Ok(head) if !head.is_empty() => head,
                Ok(_) => return,
                Err(e) => {
                    tracing::warn!(error = %e, subscription = subscription_id, "events: reading a queue failed");
                    return;
                }
            };
            let kind = stored.subscription.request.endpoint.kind().as_str();
            for pending in head {
                if !self.take_lease(subscription_id).await {
                    return;
                }
                // The lease is renewed while the delivery runs (a slow subscriber must not
                // let it lapse and another node start the same delivery); if it is lost
                // all the same, this node stops and leaves the queue to the new holder.
                let deliver = self.inner.channels.deliver(
                    config,
                    self.inner.mailboxes.as_ref(),
                    &stored.subscription,
                    &pending.event,
                );
                tokio::pin!(deliver);
                let mut renew = tokio::time::interval(config.lease / 3);
                renew.tick().await;
                let attempt = loop {
                    tokio::select! {
                        result = &mut deliver => break Some(result),
                        _ = renew.tick() => {
                            if !self.take_lease(subscription_id).await {
                                break None;
                            }
                        }
                    }
                };
                let Some(attempt) = attempt else {
                    tracing::warn!(
                        subscription = subscription_id,
                        "events: lease lost during a delivery; leaving the queue to its new holder"
                    );
                    return;
                };
                let now = Utc::now();
                let seq = pending.event.seq;
                let outcome = match attempt {
                    Ok(()) => {
                        let lag = (now - pending.event.received_at)
                            .to_std()
                            .unwrap_or_default()
                            .as_secs_f64();
                        crate::metrics::delivered(kind, lag);
                        store.delivered(subscription_id, seq).await
                    }
                    Err(failure) => {
                        let started = pending.first_failed_at.unwrap_or(now);
                        let expired = now - started
                            >= TimeDelta::from_std(config.retry_for).unwrap_or(TimeDelta::MAX);
                        let permanent = matches!(failure, Failure::Permanent(_));
                        tracing::info!(
                            subscription = subscription_id,
                            event = %pending.event.event.id,
                            attempts = pending.attempts + 1,
                            error = failure.text(),
                            "events: delivery failed"
                        );
                        let result = if permanent || expired {
                            crate::metrics::dead_lettered(kind);
                            tracing::warn!(
                                subscription = subscription_id,
                                event = %pending.event.event.id,
                                error = failure.text(),
                                "events: delivery given up, kept as a dead letter"
                            );
                            store
                                .dead_letter(subscription_id, seq, failure.text(), now)
                                .await
                        } else {
                            crate::metrics::retried(kind);
                            let delay = config.backoff(pending.attempts);
                            let retry_at =
                                now + TimeDelta::from_std(delay).unwrap_or(TimeDelta::seconds(1));
                            store
                                .failed(subscription_id, seq, failure.text(), retry_at, now)
                                .await
                        };
                        if let Err(e) = result {
                            tracing::warn!(error = %e, subscription = subscription_id, "events: recording a failed delivery failed");
                        }
                        if !(permanent || expired) {
                            return;
                        }
                        // The queue moves on at once after a dead letter.
                        continue;
                    }
                };
                if let Err(e) = outcome {
                    // Not recorded: the event will be delivered again (at least once).
                    tracing::warn!(error = %e, subscription = subscription_id, "events: recording a delivery failed");
                    return;
                }
            }
        }
    }
}
