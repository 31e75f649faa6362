//! The event processor: leases pending events from the log, hands each (with its typed
//! notification) to an [`EventHandler`], and commits the [`Effects`] it returns (ledger
//! records and record intents) in the same transaction that marks the event processed. An
//! event's effects are therefore applied exactly once, even though a crashed processor's
//! events are leased again: either the commit happened (and the event is no longer pending)
//! or nothing of it did.
//!
//! Events are committed in groups: the leased events are cut, in order, into runs whose
//! [footprints](EventHandler::footprint) (the ledger records they read and write) are disjoint,
//! and each run is committed in one transaction. No event of a run can see another's effects,
//! so the result is the same as one transaction per event, at a fraction of the commits. A
//! run that meets a version conflict (another processor wrote a record first) is redone one
//! event at a time.
//!
//! Several processors (threads or processes sharing PostgreSQL) can run at once: the lease in
//! the store keeps an event with one owner at a time, and an event whose owner died is leased
//! again when its lease runs out.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use tokio_util::sync::CancellationToken;
use twocheckout::form::FormBody;
use twocheckout::notification::{Kind, Notification};

use crate::store::{Delivery, Effects, Event, Micros, Store, StoreError};

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

    /// Names of everything [`EventHandler::handle`] reads or writes for `notification`. Events
    /// with disjoint footprints may be committed together; `None` (the default) means unknown:
    /// the event is committed on its own.
    fn footprint(&self, _notification: &Notification) -> Option<Vec<String>> {
        None
    }

    /// Handles a run of events with disjoint footprints (a handler may read for all of them
    /// at once); one result per event, in order. The default handles them one by one.
    async fn handle_run(
        &self,
        run: &[(&Event, &Notification)],
    ) -> Vec<Result<Effects, HandleError>> {
        let mut out = Vec::with_capacity(run.len());
        for (event, notification) in run {
            out.push(self.handle(event, notification).await);
        }
        out
    }
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

/// The event's typed notification, from its first delivery (every delivery of an event
/// carries the same semantic fields).
fn read(event: &Event, first: Option<Delivery>) -> Result<Notification, HandleError> {
    let first = first.ok_or_else(|| HandleError::Permanent("event has no delivery".into()))?;
    let kind: Kind = event
        .kind
        .parse()
        .map_err(|_| HandleError::Permanent(format!("unknown kind {}", event.kind)))?;
    // The body was verified and typed at ingest; failing here means the parser changed.
    let form = FormBody::parse(&first.body).map_err(|e| HandleError::Permanent(e.to_string()))?;
    Notification::parse(kind, &form).map_err(|e| HandleError::Permanent(e.to_string()))
}

/// A leased event, read and typed, waiting in a run.
struct Ready {
    event: Event,
    notification: Notification,
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
        let ids: Vec<i64> = events.iter().map(|e| e.id).collect();
        let mut firsts: std::collections::HashMap<i64, Delivery> = self
            .store
            .first_deliveries(&ids)
            .await?
            .into_iter()
            .map(|d| (d.event_id, d))
            .collect();
        let mut completed = 0;
        let mut run: Vec<Ready> = Vec::new();
        let mut footprint: HashSet<String> = HashSet::new();
        // The run holds an event of unknown footprint: nothing may join it.
        let mut sealed = false;
        for event in events {
            let notification = match read(&event, firsts.remove(&event.id)) {
                Ok(n) => n,
                Err(e) => {
                    self.failed(&event, &e).await?;
                    continue;
                }
            };
            let keys = self.handler.footprint(&notification);
            let joins = !sealed
                && keys
                    .as_ref()
                    .is_some_and(|keys| keys.iter().all(|k| !footprint.contains(k)));
            if !joins {
                completed += self.commit_run(std::mem::take(&mut run)).await?;
                footprint.clear();
            }
            sealed = keys.is_none();
            footprint.extend(keys.into_iter().flatten());
            run.push(Ready {
                event,
                notification,
            });
        }
        completed += self.commit_run(run).await?;
        Ok(completed)
    }

    /// Handles a run of events with disjoint footprints and commits it in one transaction;
    /// on a version conflict, redoes it one event at a time. Returns the events completed.
    async fn commit_run(&self, run: Vec<Ready>) -> Result<usize, StoreError> {
        if run.len() <= 1 {
            let mut completed = 0;
            for ready in &run {
                completed += self.commit_alone(ready).await? as usize;
            }
            return Ok(completed);
        }
        let pairs: Vec<(&Event, &Notification)> =
            run.iter().map(|r| (&r.event, &r.notification)).collect();
        let results = self.handler.handle_run(&pairs).await;
        let mut batch = Vec::with_capacity(run.len());
        let mut handled = Vec::with_capacity(run.len());
        for (ready, result) in run.into_iter().zip(results) {
            match result {
                Ok(effects) => {
                    batch.push((ready.event.id, effects));
                    handled.push(ready);
                }
                Err(e) => self.failed(&ready.event, &e).await?,
            }
        }
        match self
            .store
            .commit_events(&self.owner, &batch, Micros::now())
            .await
        {
            Ok(committed) => {
                let mut completed = 0;
                for (ready, held) in handled.iter().zip(committed) {
                    completed += self.completed(&ready.event, held) as usize;
                }
                Ok(completed)
            }
            Err(StoreError::Conflict(what)) => {
                tracing::debug!(events = handled.len(), %what, "ledger changed under a run; committing its events one by one");
                let mut completed = 0;
                for ready in &handled {
                    completed += self.commit_alone(ready).await? as usize;
                }
                Ok(completed)
            }
            Err(e) => Err(e),
        }
    }

    /// Handles and commits one event, re-reading on version conflicts; true when completed.
    async fn commit_alone(&self, ready: &Ready) -> Result<bool, StoreError> {
        let event = &ready.event;
        for _ in 0..CONFLICT_RETRIES {
            let effects = match self.handler.handle(event, &ready.notification).await {
                Ok(effects) => effects,
                Err(e) => {
                    self.failed(event, &e).await?;
                    return Ok(false);
                }
            };
            match self
                .store
                .commit_event(event.id, &self.owner, &effects, Micros::now())
                .await
            {
                Ok(held) => return Ok(self.completed(event, held)),
                Err(StoreError::Conflict(what)) => {
                    tracing::debug!(event_id = event.id, %what, "ledger changed under the handler; retrying");
                }
                Err(e) => {
                    self.failed(event, &HandleError::Retry(e.to_string()))
                        .await?;
                    return Ok(false);
                }
            }
        }
        let e = HandleError::Retry(format!(
            "ledger records kept changing over {CONFLICT_RETRIES} attempts"
        ));
        self.failed(event, &e).await?;
        Ok(false)
    }

    /// Counts a commit; false (and a warning) when the lease had been lost.
    fn completed(&self, event: &Event, held: bool) -> bool {
        if !held {
            tracing::warn!(
                event_id = event.id,
                "lease lost before commit; another processor has the event"
            );
            return false;
        }
        let kind = crate::telemetry::kind_label(&event.kind);
        metrics::counter!("revsync_events_processed_total", "kind" => kind).increment(1);
        let waited = (Micros::now().0 - event.first_received_at.0).max(0) as f64 / 1e6;
        metrics::histogram!("revsync_processing_seconds", "kind" => kind).record(waited);
        true
    }

    /// Records a failure: retried after a backoff, or parked for an operator when permanent.
    async fn failed(&self, event: &Event, e: &HandleError) -> Result<(), StoreError> {
        let permanent = matches!(e, HandleError::Permanent(_));
        metrics::counter!("revsync_events_failed_total", "kind" => crate::telemetry::kind_label(&event.kind), "permanent" => if permanent { "true" } else { "false" }).increment(1);
        tracing::warn!(event_id = event.id, reference = %event.reference, error = %e, "event processing failed");
        self.store
            .fail_event(event.id, &self.owner, &e.to_string(), permanent)
            .await
            .map(drop)
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
