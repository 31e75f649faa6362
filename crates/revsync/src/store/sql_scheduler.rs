//! [`Scheduling`] for [`SqlStore`]: one conditional upsert takes a lease, so two processes
//! racing for the same job cannot both win (the row's primary key serialises them).

use async_trait::async_trait;
use sqlx::Row;

use super::scheduler::{JobState, Scheduling};
use super::{Micros, RecordWrite, SqlStore, StoreError};
use crate::intent::RecordIntent;

#[async_trait]
impl Scheduling for SqlStore {
    async fn try_lease_job(
        &self,
        job: &str,
        owner: &str,
        now: Micros,
        lease_until: Micros,
    ) -> Result<bool, StoreError> {
        let mut tx = self.write_tx().await?;
        let taken = sqlx::query(
            "INSERT INTO scheduler_leases (job, owner, lease_until_us) VALUES ($1, $2, $3) \
             ON CONFLICT (job) DO UPDATE SET owner = excluded.owner, \
                 lease_until_us = excluded.lease_until_us \
             WHERE scheduler_leases.owner IS NULL \
                OR scheduler_leases.owner = excluded.owner \
                OR scheduler_leases.lease_until_us IS NULL \
                OR scheduler_leases.lease_until_us <= $4",
        )
        .bind(job)
        .bind(owner)
        .bind(lease_until.0)
        .bind(now.0)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(taken.rows_affected() == 1)
    }

    async fn finish_job(&self, job: &str, owner: &str, now: Micros) -> Result<bool, StoreError> {
        let mut tx = self.write_tx().await?;
        let done = sqlx::query(
            "UPDATE scheduler_leases SET owner = NULL, lease_until_us = NULL, \
                 last_run_us = $3, last_owner = $2 \
             WHERE job = $1 AND owner = $2",
        )
        .bind(job)
        .bind(owner)
        .bind(now.0)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(done.rows_affected() == 1)
    }

    async fn job_state(&self, job: &str) -> Result<Option<JobState>, StoreError> {
        let row = sqlx::query(
            "SELECT job, owner, lease_until_us, last_run_us, last_owner \
             FROM scheduler_leases WHERE job = $1",
        )
        .bind(job)
        .fetch_optional(&self.pool)
        .await?;
        row.map(|r| {
            Ok(JobState {
                job: r.try_get("job")?,
                owner: r.try_get("owner")?,
                lease_until: r.try_get::<Option<i64>, _>("lease_until_us")?.map(Micros),
                last_run: r.try_get::<Option<i64>, _>("last_run_us")?.map(Micros),
                last_owner: r.try_get("last_owner")?,
            })
        })
        .transpose()
    }

    async fn commit_job_effects(
        &self,
        records: &[RecordWrite],
        intents: &[RecordIntent],
        now: Micros,
    ) -> Result<(), StoreError> {
        let mut tx = self.outbox_tx().await?;
        let records: Vec<&RecordWrite> = records.iter().collect();
        super::sql_engine::write_records_in(&mut tx, &records, now).await?;
        let intents: Vec<(Option<i64>, &RecordIntent)> =
            intents.iter().map(|i| (None, i)).collect();
        super::sql_engine::enqueue_in(&mut tx, &intents, now).await?;
        tx.commit().await?;
        Ok(())
    }
}
