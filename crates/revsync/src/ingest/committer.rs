//! Group commit: many concurrent requests, one transaction (and one fsync) per batch.
//!
//! Requests hand their delivery to a single writer task and wait. The writer takes whatever
//! has queued up (at most `max_batch`), appends it in one store transaction, and only after
//! the commit returns does it answer each waiter. Under load this turns N fsyncs into one;
//! at low load a batch is a single delivery and nothing waits for a timer.

use std::sync::Arc;

use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

use crate::store::{Appended, EventLog, NewDelivery, StoreError};

/// Why a delivery was not committed. Nothing was acknowledged; the sender should retry.
#[derive(Debug, Clone, thiserror::Error)]
pub enum CommitError {
    #[error("{0}")]
    Store(Arc<StoreError>),
    #[error("the event log is shutting down")]
    ShuttingDown,
}

type Waiter = oneshot::Sender<Result<Appended, CommitError>>;

/// Handle to the writer task. Clone it freely; the writer exits after the last handle is
/// dropped and the queue is drained, so a graceful shutdown commits everything in flight.
#[derive(Clone)]
pub struct GroupCommitter {
    queue: mpsc::Sender<(NewDelivery, Waiter)>,
}

impl GroupCommitter {
    /// Starts the writer task.
    pub fn spawn(store: Arc<dyn EventLog>, max_batch: usize) -> (GroupCommitter, JoinHandle<()>) {
        let max_batch = max_batch.max(1);
        let (queue, mut rx) = mpsc::channel::<(NewDelivery, Waiter)>(max_batch * 4);
        let writer = tokio::spawn(async move {
            let mut deliveries = Vec::with_capacity(max_batch);
            let mut waiters = Vec::with_capacity(max_batch);
            while let Some((delivery, waiter)) = rx.recv().await {
                deliveries.push(delivery);
                waiters.push(waiter);
                while deliveries.len() < max_batch {
                    match rx.try_recv() {
                        Ok((d, w)) => {
                            deliveries.push(d);
                            waiters.push(w);
                        }
                        Err(_) => break,
                    }
                }
                metrics::histogram!("revsync_group_commit_batch_size")
                    .record(deliveries.len() as f64);
                match store.append_deliveries(&deliveries).await {
                    Ok(appended) => {
                        for (waiter, appended) in waiters.drain(..).zip(appended) {
                            let _ = waiter.send(Ok(appended));
                        }
                    }
                    Err(e) => {
                        tracing::error!(error = %e, batch = deliveries.len(), "event log append failed; no receipts sent");
                        let e = Arc::new(e);
                        for waiter in waiters.drain(..) {
                            let _ = waiter.send(Err(CommitError::Store(e.clone())));
                        }
                    }
                }
                deliveries.clear();
            }
        });
        (GroupCommitter { queue }, writer)
    }

    /// Appends one delivery; resolves only after the transaction holding it has committed.
    pub async fn append(&self, delivery: NewDelivery) -> Result<Appended, CommitError> {
        let (tx, rx) = oneshot::channel();
        self.queue
            .send((delivery, tx))
            .await
            .map_err(|_| CommitError::ShuttingDown)?;
        rx.await.map_err(|_| CommitError::ShuttingDown)?
    }
}
