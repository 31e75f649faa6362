//! [`Engine`] for [`SqlStore`]: ledger records with optimistic versions, the outbox merge, and
//! the one transaction that commits an event's effects with its completion.

use std::collections::{BTreeMap, HashMap, HashSet};

use async_trait::async_trait;
use sqlx::any::AnyRow;
use sqlx::{AnyConnection, Row};

use super::sql::{placeholders, value_rows, MAX_BINDS};
use super::sql_outbox::corrupt;
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

/// Enqueues intents (each with the event it comes from, if any) inside an open transaction.
/// A pending intent for the same record absorbs the new one (later values win); otherwise a
/// new pending row is added. Rows in flight are never touched: the sink may be sending their
/// older values right now. Intents for one record are merged in memory first; then one read
/// finds the pending rows, one statement per chunk inserts the new ones, and each merged row
/// is updated.
pub(super) async fn enqueue_in(
    conn: &mut AnyConnection,
    intents: &[(Option<i64>, &RecordIntent)],
    now: Micros,
) -> Result<(), StoreError> {
    /// One record's merged intent.
    struct Merged {
        sobject: String,
        record_key: String,
        partition: String,
        priority: i64,
        fields: BTreeMap<String, serde_json::Value>,
        events: Vec<i64>,
    }
    let mut merged: Vec<Merged> = Vec::new();
    let mut index: HashMap<(String, String), usize> = HashMap::new();
    for (event_id, intent) in intents {
        let key = (intent.sobject.clone(), json(&intent.key));
        let at = *index.entry(key.clone()).or_insert_with(|| {
            merged.push(Merged {
                sobject: key.0,
                record_key: key.1,
                partition: intent.partition.clone(),
                priority: intent.priority.as_i64(),
                fields: BTreeMap::new(),
                events: Vec::new(),
            });
            merged.len() - 1
        });
        let m = &mut merged[at];
        m.fields.extend(intent.fields.clone());
        m.partition = intent.partition.clone();
        m.priority = m.priority.min(intent.priority.as_i64());
        if let Some(e) = event_id {
            if !m.events.contains(e) {
                m.events.push(*e);
            }
        }
    }

    // The pending rows these records already have, per object so that the partial index
    // on (sobject, record_key) serves the lookup. The keys are joined from a VALUES list
    // rather than tested with `IN (…)`: without statistics SQLite guesses that few rows are
    // pending and answered a long IN list by walking every pending row.
    let mut by_object: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for m in &merged {
        by_object.entry(&m.sobject).or_default().push(&m.record_key);
    }
    let mut existing: HashMap<(String, String), AnyRow> = HashMap::new();
    for (sobject, keys) in by_object {
        for chunk in keys.chunks(MAX_BINDS) {
            let sql = pending_intents_sql(chunk.len());
            let mut query = sqlx::query(&sql).bind(sobject);
            for key in chunk {
                query = query.bind(*key);
            }
            for row in query.fetch_all(&mut *conn).await? {
                let key = (row.try_get("sobject")?, row.try_get("record_key")?);
                existing.insert(key, row);
            }
        }
    }

    let mut fresh = Vec::new();
    for m in merged {
        let Some(row) = existing.get(&(m.sobject.clone(), m.record_key.clone())) else {
            fresh.push(m);
            continue;
        };
        let id: i64 = row.try_get("id")?;
        let mut fields: BTreeMap<String, serde_json::Value> =
            serde_json::from_str(&row.try_get::<String, _>("fields")?)
                .map_err(|e| corrupt("outbox fields", e))?;
        fields.extend(m.fields);
        let mut events: Vec<i64> = serde_json::from_str(&row.try_get::<String, _>("event_ids")?)
            .map_err(|e| corrupt("outbox event ids", e))?;
        for e in m.events {
            if !events.contains(&e) {
                events.push(e);
            }
        }
        let priority = row.try_get::<i64, _>("priority")?.min(m.priority);
        sqlx::query(
            "UPDATE outbox SET fields = $2, event_ids = $3, priority = $4, \
                 partition_key = $5, updated_us = $6 WHERE id = $1",
        )
        .bind(id)
        .bind(json(&fields))
        .bind(json(&events))
        .bind(priority)
        .bind(&m.partition)
        .bind(now.0)
        .execute(&mut *conn)
        .await?;
    }

    const COLUMNS: usize = 7;
    for chunk in fresh.chunks(MAX_BINDS / COLUMNS) {
        let rows: Vec<String> = (0..chunk.len())
            .map(|r| {
                let b = r * COLUMNS;
                format!(
                    "(${}, ${}, ${}, ${}, ${}, ${}, ${n}, ${n}, ${n})",
                    b + 1,
                    b + 2,
                    b + 3,
                    b + 4,
                    b + 5,
                    b + 6,
                    n = b + 7
                )
            })
            .collect();
        let sql = format!(
            "INSERT INTO outbox (sobject, record_key, partition_key, priority, fields, \
                 event_ids, next_attempt_us, created_us, updated_us) VALUES {}",
            rows.join(", ")
        );
        let mut query = sqlx::query(&sql);
        for m in chunk {
            query = query
                .bind(&m.sobject)
                .bind(&m.record_key)
                .bind(&m.partition)
                .bind(m.priority)
                .bind(json(&m.fields))
                .bind(json(&m.events))
                .bind(now.0);
        }
        query.execute(&mut *conn).await?;
    }
    Ok(())
}

/// Writes ledger records inside an open transaction, each checked against the version it was
/// read at: new records in one statement per chunk, changed ones one by one. `Err(Conflict)`
/// when one changed (or appeared) since.
pub(super) async fn write_records_in(
    conn: &mut AnyConnection,
    records: &[&super::RecordWrite],
    now: Micros,
) -> Result<(), StoreError> {
    let (new, changed): (Vec<&super::RecordWrite>, Vec<&super::RecordWrite>) =
        records.iter().partition(|w| w.expected_version.is_none());
    const COLUMNS: usize = 5;
    for chunk in new.chunks(MAX_BINDS / COLUMNS) {
        let rows: Vec<String> = (0..chunk.len())
            .map(|r| {
                let b = r * COLUMNS;
                format!(
                    "(${}, ${}, ${}, ${}, 1, ${})",
                    b + 1,
                    b + 2,
                    b + 3,
                    b + 4,
                    b + 5
                )
            })
            .collect();
        let sql = format!(
            "INSERT INTO ledger_records (kind, key, customer_key, body, version, updated_us) \
             VALUES {} ON CONFLICT (kind, key) DO NOTHING",
            rows.join(", ")
        );
        let mut query = sqlx::query(&sql);
        for w in chunk {
            query = query
                .bind(&w.kind)
                .bind(&w.key)
                .bind(&w.customer_key)
                .bind(&w.body)
                .bind(now.0);
        }
        let written = query.execute(&mut *conn).await?;
        if written.rows_affected() != chunk.len() as u64 {
            return Err(StoreError::Conflict(format!(
                "{} of {} new ledger records already exist",
                chunk.len() as u64 - written.rows_affected(),
                chunk.len()
            )));
        }
    }
    for w in changed {
        let written = sqlx::query(
            "UPDATE ledger_records SET body = $3, customer_key = $4, \
                     version = version + 1, updated_us = $6 \
                 WHERE kind = $1 AND key = $2 AND version = $5",
        )
        .bind(&w.kind)
        .bind(&w.key)
        .bind(&w.body)
        .bind(&w.customer_key)
        .bind(w.expected_version)
        .bind(now.0)
        .execute(&mut *conn)
        .await?;
        if written.rows_affected() != 1 {
            return Err(StoreError::Conflict(format!(
                "ledger record {}/{} changed since it was read",
                w.kind, w.key
            )));
        }
    }
    Ok(())
}

/// The pending intents of `n` records of one sObject (`$1`, then the keys).
pub(super) fn pending_intents_sql(n: usize) -> String {
    format!(
        "WITH wanted(record_key) AS (VALUES {}) \
         SELECT o.id, o.sobject, o.record_key, o.fields, o.event_ids, o.priority \
         FROM wanted JOIN outbox o ON o.sobject = $1 \
             AND o.record_key = wanted.record_key AND o.status = 'pending'",
        value_rows(2, n)
    )
}

/// Marks `n` leased events processed (`$1` owner, `$2` now, then the ids).
pub(super) fn complete_events_sql(n: usize) -> String {
    format!(
        "UPDATE events SET status = 'processed', processed_us = $2, lease_owner = NULL, \
             lease_until_us = NULL, last_error = NULL \
         WHERE lease_owner = $1 AND status = 'pending' AND id IN ({}) RETURNING id",
        placeholders(3, n)
    )
}

/// `n` ledger records of one kind (`$1`, then the keys).
pub(super) fn ledger_records_sql(n: usize) -> String {
    format!(
        "SELECT kind, key, customer_key, body, version FROM ledger_records \
         WHERE kind = $1 AND key IN ({})",
        placeholders(2, n)
    )
}

/// Marks the events `owner` still holds processed, in one statement per chunk; returns their
/// ids.
async fn complete_events_in(
    conn: &mut AnyConnection,
    ids: &[i64],
    owner: &str,
    now: Micros,
) -> Result<HashSet<i64>, StoreError> {
    let mut held = HashSet::with_capacity(ids.len());
    for chunk in ids.chunks(MAX_BINDS) {
        let sql = complete_events_sql(chunk.len());
        let mut query = sqlx::query(&sql).bind(owner).bind(now.0);
        for id in chunk {
            query = query.bind(id);
        }
        for row in query.fetch_all(&mut *conn).await? {
            held.insert(row.try_get("id")?);
        }
    }
    Ok(held)
}

#[async_trait]
impl Engine for SqlStore {
    async fn ledger_records(
        &self,
        keys: &[(String, String)],
    ) -> Result<Vec<LedgerRecord>, StoreError> {
        // Per kind, so that the primary key (kind, key) serves the lookup.
        let mut by_kind: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
        for (kind, key) in keys {
            by_kind.entry(kind).or_default().push(key);
        }
        let mut out = Vec::with_capacity(keys.len());
        for (kind, keys) in by_kind {
            for chunk in keys.chunks(MAX_BINDS) {
                let sql = ledger_records_sql(chunk.len());
                let mut query = sqlx::query(&sql).bind(kind);
                for key in chunk {
                    query = query.bind(*key);
                }
                for row in query.fetch_all(&self.pool).await? {
                    out.push(record_from_row(&row)?);
                }
            }
        }
        // One row per (kind, key), whatever the chunking found twice.
        out.sort_by(|a, b| (&a.kind, &a.key).cmp(&(&b.kind, &b.key)));
        out.dedup_by(|a, b| a.kind == b.kind && a.key == b.key);
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
        if batch.is_empty() {
            return Ok(Vec::new());
        }
        let ids: Vec<i64> = batch.iter().map(|(id, _)| *id).collect();
        let mut tx = self.outbox_tx().await?;
        // A lost lease: someone else has the event; its effects are theirs to write.
        let held = complete_events_in(&mut tx, &ids, owner, now).await?;
        let kept = || batch.iter().filter(|(id, _)| held.contains(id));
        let records: Vec<&super::RecordWrite> =
            kept().flat_map(|(_, e)| e.records.iter()).collect();
        write_records_in(&mut tx, &records, now).await?;
        let intents: Vec<(Option<i64>, &RecordIntent)> = kept()
            .flat_map(|(id, e)| e.intents.iter().map(move |i| (Some(*id), i)))
            .collect();
        enqueue_in(&mut tx, &intents, now).await?;
        tx.commit().await?;
        Ok(ids.iter().map(|id| held.contains(id)).collect())
    }

    async fn commit_records(&self, effects: &Effects, now: Micros) -> Result<(), StoreError> {
        let mut tx = self.outbox_tx().await?;
        let records: Vec<&super::RecordWrite> = effects.records.iter().collect();
        write_records_in(&mut tx, &records, now).await?;
        let intents: Vec<(Option<i64>, &RecordIntent)> =
            effects.intents.iter().map(|i| (None, i)).collect();
        enqueue_in(&mut tx, &intents, now).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn enqueue(&self, intents: &[RecordIntent], now: Micros) -> Result<(), StoreError> {
        let mut tx = self.outbox_tx().await?;
        let intents: Vec<(Option<i64>, &RecordIntent)> =
            intents.iter().map(|i| (None, i)).collect();
        enqueue_in(&mut tx, &intents, now).await?;
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

    async fn outbox_pending(
        &self,
        up_to: i64,
        now: Micros,
    ) -> Result<(i64, Option<Micros>), StoreError> {
        self.outbox_pending_impl(up_to, now).await
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

    async fn save_identities(
        &self,
        identities: &[Identity],
        now: Micros,
    ) -> Result<(), StoreError> {
        self.save_identities_impl(identities, now).await
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
