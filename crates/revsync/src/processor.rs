//! The event processor: leases pending events from the log, hands each (with its typed
//! notification) to an [`EventHandler`], and commits the [`Effects`] it returns (ledger
//! records and record intents) in the same transaction that marks the event processed. An
//! event's effects are therefore applied exactly once, even though a crashed processor's
//! events are leased again: either the commit happened (and the event is no longer pending)
//! or nothing of it did.
//!
//! Several processors (threads or processes sharing PostgreSQL) can run at once: the lease in
//! the store keeps an event with one owner at a time, and an event whose owner died is leased
//! again when its lease runs out.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use tokio_util::sync::CancellationToken;
use twocheckout::form::FormBody;
use twocheckout::notification::{Kind, Notification};

use crate::store::{Effects, Event, Micros, Store, StoreError};

/// What a handler says about a failure.
#[derive(Debug, thiserror::Error)]
pub enum HandleError {
    /// Try again after the lease runs out (the store or a dependency is unavailable).
    #[error("retry: {0}")]
    Retry(String),
    /// The event can never be processed as it is: mark it failed for an operator.
    #[error("permanent: {0}")]
    Permanent(String),
}

/// Turns one event into effects. It may read the store, but writes nothing itself: the
/// processor commits what it returns. A version conflict makes the processor call it again
/// with fresh state.
#[async_trait]
pub trait EventHandler: Send + Sync + 'static {
    async fn handle(
        &self,
        event: &Event,
        notification: &Notification,
    ) -> Result<Effects, HandleError>;
}

/// How often a handler is re-run when the records it read changed before its commit.
const CONFLICT_RETRIES: usize = 5;

/// Leases and processes events until cancelled.
pub struct Processor {
    pub store: Arc<dyn Store>,
    pub handler: Arc<dyn EventHandler>,
    /// Lease owner name; unique per processor.
    pub owner: String,
    pub lease: Duration,
    pub batch: i64,
    /// Sleep between polls when the log is empty.
    pub idle: Duration,
}

impl Processor {
    /// Processes what is pending now; returns how many events were completed.
    pub async fn run_once(&self) -> Result<usize, StoreError> {
        let now = Micros::now();
        let until = Micros(now.0 + self.lease.as_micros() as i64);
        let events = self
            .store
            .lease_pending(&self.owner, now, until, self.batch)
            .await?;
        let mut completed = 0;
        for event in events {
            match self.process(&event).await {
                Ok(true) => {
                    completed += 1;
                    let kind = crate::telemetry::kind_label(&event.kind);
                    metrics::counter!("revsync_events_processed_total", "kind" => kind)
                        .increment(1);
                    let waited = (Micros::now().0 - event.first_received_at.0).max(0) as f64 / 1e6;
                    metrics::histogram!("revsync_processing_seconds", "kind" => kind)
                        .record(waited);
                }
                Ok(false) => {
                    tracing::warn!(
                        event_id = event.id,
                        "lease lost before commit; another processor has the event"
                    );
                }
                Err(e) => {
                    let permanent = matches!(e, HandleError::Permanent(_));
                    metrics::counter!("revsync_events_failed_total", "kind" => crate::telemetry::kind_label(&event.kind), "permanent" => if permanent { "true" } else { "false" }).increment(1);
                    tracing::warn!(event_id = event.id, reference = %event.reference, error = %e, "event processing failed");
                    self.store
                        .fail_event(event.id, &self.owner, &e.to_string(), permanent)
                        .await?;
                }
            }
        }
        Ok(completed)
    }

    /// Handles and commits one event; `Ok(false)` when the lease was lost.
    async fn process(&self, event: &Event) -> Result<bool, HandleError> {
        // Every delivery of an event carries the same semantic fields; the first suffices.
        let deliveries = self
            .store
            .deliveries_of(event.id)
            .await
            .map_err(|e| HandleError::Retry(e.to_string()))?;
        let first = deliveries
            .first()
            .ok_or_else(|| HandleError::Permanent("event has no delivery".into()))?;
        let kind: Kind = event
            .kind
            .parse()
            .map_err(|_| HandleError::Permanent(format!("unknown kind {}", event.kind)))?;
        // The body was verified and typed at ingest; failing here means the parser changed.
        let form =
            FormBody::parse(&first.body).map_err(|e| HandleError::Permanent(e.to_string()))?;
        let notification =
            Notification::parse(kind, &form).map_err(|e| HandleError::Permanent(e.to_string()))?;
        for _ in 0..CONFLICT_RETRIES {
            let effects = self.handler.handle(event, &notification).await?;
            match self
                .store
                .commit_event(event.id, &self.owner, &effects, Micros::now())
                .await
            {
                Ok(committed) => return Ok(committed),
                Err(StoreError::Conflict(what)) => {
                    tracing::debug!(event_id = event.id, %what, "ledger changed under the handler; retrying");
                }
                Err(e) => return Err(HandleError::Retry(e.to_string())),
            }
        }
        Err(HandleError::Retry(format!(
            "ledger records kept changing over {CONFLICT_RETRIES} attempts"
        )))
    }

    /// Runs until `shutdown` is cancelled.
    pub async fn run(self, shutdown: CancellationToken) {
        while !shutdown.is_cancelled() {
            let pause = match self.run_once().await {
                Ok(0) => self.idle,
                Ok(_) => Duration::ZERO,
                Err(e) => {
                    tracing::error!(error = %e, "event processor cannot reach the store");
                    self.idle.max(Duration::from_secs(1))
                }
            };
            if !pause.is_zero() {
                tokio::select! {
                    _ = shutdown.cancelled() => break,
                    _ = tokio::time::sleep(pause) => {}
                }
            }
        }
    }
}
