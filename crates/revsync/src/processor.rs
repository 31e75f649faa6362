//! The event processor: leases pending events from the log, hands each (with its typed
//! notification) to an [`EventHandler`], and records the outcome. Processing is
//! at-least-once; handlers make it exactly-once in effect by writing keyed, idempotent state.
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

use crate::store::{Event, Micros, Store, StoreError};

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

/// Turns one event into state. Must be idempotent: it may see the same event twice.
#[async_trait]
pub trait EventHandler: Send + Sync + 'static {
    async fn handle(&self, event: &Event, notification: &Notification) -> Result<(), HandleError>;
}

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
                Ok(()) => {
                    if self
                        .store
                        .complete_event(event.id, &self.owner, Micros::now())
                        .await?
                    {
                        completed += 1;
                    }
                }
                Err(e) => {
                    let permanent = matches!(e, HandleError::Permanent(_));
                    tracing::warn!(event_id = event.id, reference = %event.reference, error = %e, "event processing failed");
                    self.store
                        .fail_event(event.id, &self.owner, &e.to_string(), permanent)
                        .await?;
                }
            }
        }
        Ok(completed)
    }

    async fn process(&self, event: &Event) -> Result<(), HandleError> {
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
        self.handler.handle(event, &notification).await
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
