//! [`Engine`] for [`SqlStore`]: ledger records with optimistic versions, the outbox merge, and
//! the one transaction that commits an event's effects with its completion.

use std::collections::BTreeMap;

use async_trait::async_trait;
use sqlx::any::AnyRow;
use sqlx::{AnyConnection, Row};

use super::{
    ApiBudgetState, DeadLetter, DeadLetterStatus, Effects, Engine, Identity, LedgerRecord, Micros,
    OutboxItem, OutboxStats, Settlement, SqlStore, StoreError, SyncLogEntry,
};
use crate::intent::RecordIntent;

fn record_from_row(row: &AnyRow) -> Result<LedgerRecord, StoreError> {
    Ok(LedgerRecord {
        kind: row.try_get("kind")?,
        key: row.try_get("key")?,
        customer_key: row.try_get("customer_key")?,
        body: row.try_get("body")?,
        version: row.try_get("version")?,
    })
}

fn json<T: serde::Serialize>(value: &T) -> String {
    serde_json::to_string(value).expect("intent parts serialize to JSON")
}

fn corrupt(what: &str, e: serde_json::Error) -> StoreError {
    StoreError::Config(format!("stored {what} is not valid JSON: {e}"))
}

/// Enqueues intents inside an open transaction. A pending intent for the same record absorbs
/// the new one (later values win); otherwise a new pending row is added. Rows in flight are
/// never touched: the sink may be sending their older values right now.
pub(super) async fn enqueue_in(
    conn: &mut AnyConnection,
    intents: &[RecordIntent],
    event_id: Option<i64>,
    now: Micros,
) -> Result<(), StoreError> {
    for intent in intents {
        let record_key = json(&intent.key);
        let existing = sqlx::query(
            "SELECT id, fields, event_ids, priority FROM outbox \
             WHERE sobject = $1 AND record_key = $2 AND status = 'pending'",
        )
        .bind(&intent.sobject)
        .bind(&record_key)
        .fetch_optional(&mut *conn)
        .await?;
        match existing {
            Some(row) => {
                let id: i64 = row.try_get("id")?;
                let mut fields: BTreeMap<String, serde_json::Value> =
                    serde_json::from_str(&row.try_get::<String, _>("fields")?)
                        .map_err(|e| corrupt("outbox fields", e))?;
                fields.extend(intent.fields.clone());
                let mut events: Vec<i64> =
                    serde_json::from_str(&row.try_get::<String, _>("event_ids")?)
                        .map_err(|e| corrupt("outbox event ids", e))?;
                if let Some(e) = event_id {
                    if !events.contains(&e) {
                        events.push(e);
                    }
                }
                let priority = row
                    .try_get::<i64, _>("priority")?
                    .min(intent.priority.as_i64());
                sqlx::query(
                    "UPDATE outbox SET fields = $2, event_ids = $3, priority = $4, \
                         partition_key = $5, updated_us = $6 WHERE id = $1",
                )
                .bind(id)
                .bind(json(&fields))
                .bind(json(&events))
                .bind(priority)
                .bind(&intent.partition)
                .bind(now.0)
                .execute(&mut *conn)
                .await?;
            }
            None => {
                let events: Vec<i64> = event_id.into_iter().collect();
                sqlx::query(
                    "INSERT INTO outbox (sobject, record_key, partition_key, priority, fields, \
                         event_ids, next_attempt_us, created_us, updated_us) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $7, $7)",
                )
                .bind(&intent.sobject)
                .bind(&record_key)
                .bind(&intent.partition)
                .bind(intent.priority.as_i64())
                .bind(json(&intent.fields))
                .bind(json(&events))
                .bind(now.0)
                .execute(&mut *conn)
                .await?;
            }
        }
    }
    Ok(())
}

/// Writes ledger records inside an open transaction, each checked against the version it was
/// read at. `Err(Conflict)` when one changed since.
pub(super) async fn write_records_in(
    conn: &mut AnyConnection,
    records: &[super::RecordWrite],
    now: Micros,
) -> Result<(), StoreError> {
    for w in records {
        let written = match w.expected_version {
            None => {
                sqlx::query(
                    "INSERT INTO ledger_records (kind, key, customer_key, body, version, \
                             updated_us) VALUES ($1, $2, $3, $4, 1, $5) \
                         ON CONFLICT (kind, key) DO NOTHING",
                )
                .bind(&w.kind)
                .bind(&w.key)
                .bind(&w.customer_key)
                .bind(&w.body)
                .bind(now.0)
                .execute(&mut *conn)
                .await?
            }
            Some(version) => {
                sqlx::query(
                    "UPDATE ledger_records SET body = $3, customer_key = $4, \
                             version = version + 1, updated_us = $6 \
                         WHERE kind = $1 AND key = $2 AND version = $5",
                )
                .bind(&w.kind)
                .bind(&w.key)
                .bind(&w.body)
                .bind(&w.customer_key)
                .bind(version)
                .bind(now.0)
                .execute(&mut *conn)
                .await?
            }
        };
        if written.rows_affected() != 1 {
            return Err(StoreError::Conflict(format!(
                "ledger record {}/{} changed since it was read",
                w.kind, w.key
            )));
        }
    }
    Ok(())
}

#[async_trait]
impl Engine for SqlStore {
    async fn ledger_records(
        &self,
        keys: &[(String, String)],
    ) -> Result<Vec<LedgerRecord>, StoreError> {
        let mut out = Vec::with_capacity(keys.len());
        let mut conn = self.pool.acquire().await?;
        for (kind, key) in keys {
            let row = sqlx::query(
                "SELECT kind, key, customer_key, body, version FROM ledger_records \
                 WHERE kind = $1 AND key = $2",
            )
            .bind(kind)
            .bind(key)
            .fetch_optional(&mut *conn)
            .await?;
            if let Some(row) = row {
                out.push(record_from_row(&row)?);
            }
        }
        Ok(out)
    }

    async fn ledger_records_of_kind(&self, kind: &str) -> Result<Vec<LedgerRecord>, StoreError> {
        let rows = sqlx::query(
            "SELECT kind, key, customer_key, body, version FROM ledger_records \
             WHERE kind = $1 ORDER BY key",
        )
        .bind(kind)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(record_from_row).collect()
    }

    async fn commit_events(
        &self,
        owner: &str,
        batch: &[(i64, Effects)],
        now: Micros,
    ) -> Result<Vec<bool>, StoreError> {
        let mut tx = self.write_tx().await?;
        let mut committed = Vec::with_capacity(batch.len());
        for (event_id, effects) in batch {
            let done = sqlx::query(
                "UPDATE events SET status = 'processed', processed_us = $3, lease_owner = NULL, \
                     lease_until_us = NULL, last_error = NULL \
                 WHERE id = $1 AND lease_owner = $2 AND status = 'pending'",
            )
            .bind(event_id)
            .bind(owner)
            .bind(now.0)
            .execute(&mut *tx)
            .await?;
            // A lost lease: someone else has the event; its effects are theirs to write.
            let held = done.rows_affected() == 1;
            if held {
                write_records_in(&mut tx, &effects.records, now).await?;
                enqueue_in(&mut tx, &effects.intents, Some(*event_id), now).await?;
            }
            committed.push(held);
        }
        tx.commit().await?;
        Ok(committed)
    }

    async fn commit_records(&self, effects: &Effects, now: Micros) -> Result<(), StoreError> {
        let mut tx = self.write_tx().await?;
        write_records_in(&mut tx, &effects.records, now).await?;
        enqueue_in(&mut tx, &effects.intents, None, now).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn enqueue(&self, intents: &[RecordIntent], now: Micros) -> Result<(), StoreError> {
        let mut tx = self.write_tx().await?;
        enqueue_in(&mut tx, intents, None, now).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn lease_outbox(
        &self,
        owner: &str,
        now: Micros,
        lease_until: Micros,
        max_partitions: i64,
        max_priority: crate::intent::Priority,
    ) -> Result<Vec<OutboxItem>, StoreError> {
        self.lease_outbox_impl(owner, now, lease_until, max_partitions, max_priority)
            .await
    }

    async fn settle_outbox(
        &self,
        settlements: &[Settlement],
        now: Micros,
    ) -> Result<(), StoreError> {
        self.settle_outbox_impl(settlements, now).await
    }

    async fn outbox_stats(&self) -> Result<OutboxStats, StoreError> {
        self.outbox_stats_impl().await
    }

    async fn sync_log(&self, event_id: i64) -> Result<Vec<SyncLogEntry>, StoreError> {
        self.sync_log_impl(event_id).await
    }

    async fn write_totals(&self) -> Result<Vec<(String, i64, i64)>, StoreError> {
        self.write_totals_impl().await
    }

    async fn dead_letters(
        &self,
        status: Option<DeadLetterStatus>,
        limit: i64,
    ) -> Result<Vec<DeadLetter>, StoreError> {
        self.dead_letters_impl(status, limit).await
    }

    async fn replay_dead_letter(&self, id: i64, now: Micros) -> Result<(), StoreError> {
        self.replay_dead_letter_impl(id, now).await
    }

    async fn identities(&self, customer_keys: &[String]) -> Result<Vec<Identity>, StoreError> {
        self.identities_impl(customer_keys).await
    }

    async fn save_identity(&self, identity: &Identity, now: Micros) -> Result<(), StoreError> {
        self.save_identity_impl(identity, now).await
    }

    async fn identities_claiming(
        &self,
        record_ids: &[String],
    ) -> Result<Vec<Identity>, StoreError> {
        self.identities_claiming_impl(record_ids).await
    }

    async fn identities_by_source(&self, source: &str) -> Result<Vec<Identity>, StoreError> {
        self.identities_by_source_impl(source).await
    }

    async fn release_partition(&self, partition: &str, now: Micros) -> Result<u64, StoreError> {
        self.release_partition_impl(partition, now).await
    }

    async fn record_api_calls(
        &self,
        calls: i64,
        org_usage: Option<(i64, i64)>,
        now: Micros,
    ) -> Result<(), StoreError> {
        self.record_api_calls_impl(calls, org_usage, now).await
    }

    async fn api_budget(&self, now: Micros) -> Result<ApiBudgetState, StoreError> {
        self.api_budget_impl(now).await
    }
}
