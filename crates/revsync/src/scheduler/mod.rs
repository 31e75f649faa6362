//! The scheduler: cron-driven jobs (rollups, renewal due) that run in one process at a time.
//!
//! Each job has a cron expression from the config (`sec min hour day month weekday`, UTC,
//! seconds optional; parsed by `croner`). At every due time each process tries to take the
//! job's lease in the store ([`Scheduling::try_lease_job`]); the one that gets it runs the job
//! and releases it with the finish time, the others skip that occurrence. A process that dies
//! mid-job loses the lease when it expires (`lease`), and the next occurrence runs elsewhere.
//!
//! The jobs themselves are plain async functions callable from the command line too:
//! [`run_rollups`] and [`run_renewal_due`]. They read the ledger, plan with the pure flows and
//! commit the intents together with the ledger records that remember what was written
//! (kinds `rollup` and `renewal_due`), so a second run with no ledger change writes nothing.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, NaiveDate, Utc};
use serde::de::DeserializeOwned;
use tokio_util::sync::CancellationToken;

use crate::flows::rollups::{self, AccountRollup};
use crate::flows::{subscriptions, FlowsConfig};
use crate::ledger::{OrderRecord, SubscriptionRecord};
use crate::pipeline::{ORDER, SUBSCRIPTION};
use crate::store::{LedgerRecord, Micros, RecordWrite, Store, StoreError};

/// Ledger kind of the last written rollup values (key: customer key).
pub const ROLLUP: &str = "rollup";
/// Ledger kind of raised renewal-due work (key: `"<subscription>:<cycle>"`).
pub const RENEWAL_DUE: &str = "renewal_due";
/// Job names (lease keys).
pub const ROLLUPS_JOB: &str = "rollups";
/// Job name of the renewal-due job.
pub const RENEWAL_DUE_JOB: &str = "renewal_due";

/// What went wrong in a job. Store errors are transient (the next occurrence retries);
/// `Schedule` is a configuration error to fix; `Corrupt` names a ledger record to repair.
#[derive(Debug, thiserror::Error)]
pub enum SchedulerError {
    /// The store failed or a record changed concurrently: retried at the next occurrence.
    #[error("store: {0}")]
    Store(#[from] StoreError),
    /// A cron expression does not parse: fix the named config key.
    #[error("{key}: invalid cron expression {expression:?}: {message}")]
    Schedule {
        /// Config key.
        key: String,
        /// The expression.
        expression: String,
        /// Parser message.
        message: String,
    },
    /// A stored ledger record cannot be read.
    #[error("ledger record {kind}/{key} is unreadable: {message}")]
    Corrupt {
        /// Kind.
        kind: String,
        /// Key.
        key: String,
        /// Decoder message.
        message: String,
    },
}

fn decode<T: DeserializeOwned>(r: &LedgerRecord) -> Result<T, SchedulerError> {
    serde_json::from_str(&r.body).map_err(|e| SchedulerError::Corrupt {
        kind: r.kind.clone(),
        key: r.key.clone(),
        message: e.to_string(),
    })
}

fn record_write<T: serde::Serialize>(
    kind: &str,
    key: &str,
    customer_key: Option<&str>,
    value: &T,
    loaded: Option<&LedgerRecord>,
) -> RecordWrite {
    RecordWrite {
        kind: kind.to_owned(),
        key: key.to_owned(),
        customer_key: customer_key.map(str::to_owned),
        body: serde_json::to_string(value).expect("ledger records serialize"),
        expected_version: loaded.map(|r| r.version),
    }
}

/// Outcome of [`run_rollups`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RollupReport {
    /// Accounts with rollup values.
    pub accounts: usize,
    /// Accounts whose values changed and were enqueued.
    pub enqueued: usize,
    /// Orders left out of the values for lack of an FX rate.
    pub unconverted_orders: u64,
}

/// Computes every Account's rollups from the ledger and enqueues (as `Priority::Rollup`
/// intents) those that differ from the last written values, remembering the new values in the
/// same transaction.
pub async fn run_rollups(
    store: &dyn Store,
    flows: &FlowsConfig,
) -> Result<RollupReport, SchedulerError> {
    if !flows.rollups.enabled {
        return Ok(RollupReport::default());
    }
    let orders: Vec<OrderRecord> = store
        .ledger_records_of_kind(ORDER)
        .await?
        .iter()
        .map(decode)
        .collect::<Result<_, _>>()?;
    let subs: Vec<SubscriptionRecord> = store
        .ledger_records_of_kind(SUBSCRIPTION)
        .await?
        .iter()
        .map(decode)
        .collect::<Result<_, _>>()?;
    let computed = rollups::compute(flows, &orders, &subs);
    let previous: BTreeMap<String, LedgerRecord> = store
        .ledger_records_of_kind(ROLLUP)
        .await?
        .into_iter()
        .map(|r| (r.key.clone(), r))
        .collect();
    let mut records = Vec::new();
    let mut intents = Vec::new();
    let mut report = RollupReport {
        accounts: computed.len(),
        ..RollupReport::default()
    };
    for (key, r) in &computed {
        report.unconverted_orders += r.unconverted_orders;
        let loaded = previous.get(key);
        let before: Option<AccountRollup> = loaded.map(decode).transpose()?;
        if before.as_ref() == Some(r) {
            continue;
        }
        records.push(record_write(ROLLUP, key, Some(key), r, loaded));
        intents.push(rollups::intent(flows, r));
    }
    report.enqueued = intents.len();
    // One transaction per chunk keeps SQLite's write lock short.
    for (rs, is) in records.chunks(500).zip(intents.chunks(500)) {
        store.commit_job_effects(rs, is, Micros::now()).await?;
    }
    tracing::info!(
        accounts = report.accounts,
        enqueued = report.enqueued,
        unconverted_orders = report.unconverted_orders,
        "rollups computed"
    );
    Ok(report)
}

/// Outcome of [`run_renewal_due`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RenewalDueReport {
    /// Subscriptions looked at.
    pub subscriptions: usize,
    /// Renewals raised now.
    pub raised: usize,
}

/// Raises the renewal-due work (open renewal Opportunity, Task above the threshold) of every
/// subscription renewing within `renewal_due_days` of `today`, once per cycle.
pub async fn run_renewal_due(
    store: &dyn Store,
    flows: &FlowsConfig,
    today: NaiveDate,
) -> Result<RenewalDueReport, SchedulerError> {
    let subs: Vec<SubscriptionRecord> = store
        .ledger_records_of_kind(SUBSCRIPTION)
        .await?
        .iter()
        .map(decode)
        .collect::<Result<_, _>>()?;
    let raised: std::collections::BTreeSet<String> = store
        .ledger_records_of_kind(RENEWAL_DUE)
        .await?
        .into_iter()
        .map(|r| r.key)
        .collect();
    let mut report = RenewalDueReport {
        subscriptions: subs.len(),
        raised: 0,
    };
    for s in &subs {
        let rate_key: Vec<(String, String)> = s
            .rate_order
            .iter()
            .map(|r| (ORDER.to_owned(), r.clone()))
            .collect();
        let Some(due) = subscriptions::renewal_due(flows, s, None, today) else {
            continue;
        };
        if raised.contains(&due.key) {
            continue;
        }
        // Use the paid order's own rate when it is stored.
        let order_rate = match store.ledger_records(&rate_key).await?.first() {
            Some(r) => decode::<OrderRecord>(r)?
                .fx
                .filter(|f| f.base_currency == flows.base_currency)
                .map(|f| f.rate),
            None => None,
        };
        let Some(due) = subscriptions::renewal_due(flows, s, order_rate, today) else {
            continue;
        };
        let marker = record_write(
            RENEWAL_DUE,
            &due.key,
            s.customer_key.as_deref(),
            &serde_json::json!({ "raised_on": today }),
            None,
        );
        match store
            .commit_job_effects(&[marker], &due.intents, Micros::now())
            .await
        {
            Ok(()) => report.raised += 1,
            // Raised concurrently by another process: nothing to do.
            Err(StoreError::Conflict(_)) => {}
            Err(e) => return Err(e.into()),
        }
    }
    tracing::info!(
        subscriptions = report.subscriptions,
        raised = report.raised,
        "renewal-due job ran"
    );
    Ok(report)
}

/// A parsed cron schedule.
#[derive(Debug, Clone)]
pub struct Schedule {
    cron: croner::Cron,
}

impl Schedule {
    /// Parses `expression` (5 or 6 fields); `key` names the config key in errors.
    pub fn parse(key: &str, expression: &str) -> Result<Schedule, SchedulerError> {
        let cron = croner::Cron::new(expression)
            .with_seconds_optional()
            .parse()
            .map_err(|e| SchedulerError::Schedule {
                key: key.to_owned(),
                expression: expression.to_owned(),
                message: e.to_string(),
            })?;
        Ok(Schedule { cron })
    }

    /// The first occurrence strictly after `after`.
    pub fn next_after(&self, after: DateTime<Utc>) -> Option<DateTime<Utc>> {
        self.cron.find_next_occurrence(&after, false).ok()
    }
}

/// The jobs of a running instance.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum JobKind {
    Rollups,
    RenewalDue,
}

/// Runs the configured jobs until cancelled.
pub struct Scheduler {
    store: Arc<dyn Store>,
    flows: FlowsConfig,
    owner: String,
    lease: Duration,
    jobs: Vec<(JobKind, &'static str, Schedule)>,
}

impl Scheduler {
    /// Checks every schedule of `flows` (a bad expression is a start-up error). `owner`
    /// identifies this process in the lease table.
    pub fn new(
        store: Arc<dyn Store>,
        flows: &FlowsConfig,
        owner: &str,
    ) -> Result<Scheduler, SchedulerError> {
        let mut jobs = Vec::new();
        if flows.rollups.enabled {
            jobs.push((
                JobKind::Rollups,
                ROLLUPS_JOB,
                Schedule::parse("flows.rollups.schedule", &flows.rollups.schedule)?,
            ));
        }
        if flows.subscriptions.enabled {
            jobs.push((
                JobKind::RenewalDue,
                RENEWAL_DUE_JOB,
                Schedule::parse(
                    "flows.subscriptions.renewal_due_schedule",
                    &flows.subscriptions.renewal_due_schedule,
                )?,
            ));
        }
        Ok(Scheduler {
            store,
            flows: flows.clone(),
            owner: owner.to_owned(),
            lease: Duration::from_secs(15 * 60),
            jobs,
        })
    }

    /// Runs one job now if this process gets its lease; true when it ran.
    pub async fn run_once(&self, job: &str) -> Result<bool, SchedulerError> {
        let Some((kind, name, _)) = self.jobs.iter().find(|(_, n, _)| *n == job) else {
            return Ok(false);
        };
        let now = Utc::now();
        let until = now + chrono::Duration::from_std(self.lease).unwrap_or_default();
        if !self
            .store
            .try_lease_job(name, &self.owner, Micros::from(now), Micros::from(until))
            .await?
        {
            tracing::debug!(job = name, owner = %self.owner, "job leased elsewhere; skipped");
            return Ok(false);
        }
        let result = match kind {
            JobKind::Rollups => run_rollups(self.store.as_ref(), &self.flows)
                .await
                .map(|_| ()),
            JobKind::RenewalDue => {
                run_renewal_due(self.store.as_ref(), &self.flows, now.date_naive())
                    .await
                    .map(|_| ())
            }
        };
        let finished = self
            .store
            .finish_job(name, &self.owner, Micros::now())
            .await?;
        if !finished {
            tracing::warn!(job = name, owner = %self.owner, "job lease expired while running");
        }
        result.map(|()| true)
    }

    /// Sleeps until each job's next occurrence and runs it (leased), until `shutdown`.
    pub async fn run(self, shutdown: CancellationToken) {
        if self.jobs.is_empty() {
            return;
        }
        let mut next: Vec<Option<DateTime<Utc>>> = self
            .jobs
            .iter()
            .map(|(_, _, s)| s.next_after(Utc::now()))
            .collect();
        loop {
            let Some((i, at)) = next
                .iter()
                .enumerate()
                .filter_map(|(i, t)| t.map(|t| (i, t)))
                .min_by_key(|(_, t)| *t)
            else {
                return;
            };
            let wait = (at - Utc::now()).to_std().unwrap_or_default();
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tokio::time::sleep(wait) => {}
            }
            let name = self.jobs[i].1;
            if let Err(error) = self.run_once(name).await {
                tracing::error!(job = name, %error, "scheduled job failed; retried at its next occurrence");
            }
            next[i] = self.jobs[i].2.next_after(at.max(Utc::now()));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn schedules_parse_with_or_without_seconds_and_name_the_key() {
        let s = Schedule::parse("k", "0 0 3 * * *").unwrap();
        let from = Utc.with_ymd_and_hms(2025, 1, 1, 3, 0, 0).unwrap();
        assert_eq!(
            s.next_after(from),
            Some(Utc.with_ymd_and_hms(2025, 1, 2, 3, 0, 0).unwrap())
        );
        let five = Schedule::parse("k", "*/15 * * * *").unwrap();
        assert_eq!(
            five.next_after(from),
            Some(Utc.with_ymd_and_hms(2025, 1, 1, 3, 15, 0).unwrap())
        );
        let err = Schedule::parse("flows.rollups.schedule", "every day").unwrap_err();
        assert!(
            err.to_string().starts_with("flows.rollups.schedule"),
            "{err}"
        );
    }
}
