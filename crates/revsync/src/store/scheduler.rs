//! [`Scheduling`]: leases that make each scheduled job run in one process at a time when
//! several revsync processes share one PostgreSQL, and the commit of a job's effects (ledger
//! records it keeps, such as the last written rollups, plus the intents it enqueues).

use async_trait::async_trait;

use super::{Micros, RecordWrite, StoreError};
use crate::intent::RecordIntent;

/// A job's lease row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobState {
    /// Job name.
    pub job: String,
    /// Holder of the current lease (None when released).
    pub owner: Option<String>,
    /// End of the current lease.
    pub lease_until: Option<Micros>,
    /// When the job last finished.
    pub last_run: Option<Micros>,
    /// Who ran it last.
    pub last_owner: Option<String>,
}

/// Scheduler leases and job commits.
#[async_trait]
pub trait Scheduling: Send + Sync + 'static {
    /// Takes the lease of `job` for `owner` until `lease_until` when nobody holds an unexpired
    /// one (or `owner` already does). True when `owner` now holds it.
    async fn try_lease_job(
        &self,
        job: &str,
        owner: &str,
        now: Micros,
        lease_until: Micros,
    ) -> Result<bool, StoreError>;

    /// Records that `owner` finished `job` at `now` and releases the lease. False when the
    /// lease had been lost (expired and taken by another process).
    async fn finish_job(&self, job: &str, owner: &str, now: Micros) -> Result<bool, StoreError>;

    /// The lease row of `job`.
    async fn job_state(&self, job: &str) -> Result<Option<JobState>, StoreError>;

    /// Writes ledger records (version-checked as in an event commit) and enqueues intents in
    /// one transaction. [`StoreError::Conflict`] when a record changed since it was read.
    async fn commit_job_effects(
        &self,
        records: &[RecordWrite],
        intents: &[RecordIntent],
        now: Micros,
    ) -> Result<(), StoreError>;
}
