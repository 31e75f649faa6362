//! The outbox half of [`Engine`] for [`SqlStore`]: leasing partitions to the sink, settling
//! what it learned, the sync log, dead letters, the identity map and the API budget.

use std::collections::{BTreeMap, HashMap, HashSet};

use sqlx::any::AnyRow;
use sqlx::{AnyConnection, Row};

use super::sql::{placeholders, value_rows, MAX_BINDS};
use super::sql_engine::enqueue_in;
use super::{
    ApiBudgetState, DeadLetter, DeadLetterStatus, Identity, Micros, OutboxItem, OutboxStats,
    Settlement, SqlStore, StoreError, SyncLogEntry,
};
use crate::intent::{Priority, RecordIntent, RecordKey};

const ITEM_COLUMNS: &str =
    "id, sobject, record_key, partition_key, priority, fields, event_ids, attempts, next_attempt_us";

const IDENTITY_COLUMNS: &str = "customer_key, account_id, contact_id, source";

const HOUR_US: i64 = 3_600_000_000;

fn identity_from_row(r: &AnyRow) -> Result<Identity, StoreError> {
    Ok(Identity {
        customer_key: r.try_get("customer_key")?,
        account_id: r.try_get("account_id")?,
        contact_id: r.try_get("contact_id")?,
        source: r.try_get("source")?,
    })
}

pub(super) fn corrupt(what: &str, e: serde_json::Error) -> StoreError {
    StoreError::Config(format!("stored {what} is not valid JSON: {e}"))
}

/// The intent stored in an outbox or dead-letter row.
fn intent_from_row(row: &AnyRow) -> Result<(RecordIntent, Vec<i64>), StoreError> {
    let key: RecordKey = serde_json::from_str(&row.try_get::<String, _>("record_key")?)
        .map_err(|e| corrupt("record key", e))?;
    let fields = serde_json::from_str(&row.try_get::<String, _>("fields")?)
        .map_err(|e| corrupt("fields", e))?;
    let events = serde_json::from_str(&row.try_get::<String, _>("event_ids")?)
        .map_err(|e| corrupt("event ids", e))?;
    Ok((
        RecordIntent {
            sobject: row.try_get("sobject")?,
            key,
            fields,
            partition: row.try_get("partition_key")?,
            priority: Priority::from_i64(row.try_get("priority")?),
        },
        events,
    ))
}

pub(super) fn dead_letter_from_row(r: &AnyRow) -> Result<DeadLetter, StoreError> {
    let (intent, event_ids) = intent_from_row(r)?;
    Ok(DeadLetter {
        id: r.try_get("id")?,
        intent,
        event_ids,
        error_code: r.try_get("error_code")?,
        message: r.try_get("message")?,
        status: if r.try_get::<String, _>("status")? == "open" {
            DeadLetterStatus::Open
        } else {
            DeadLetterStatus::Replayed
        },
        created_at: Micros(r.try_get("created_us")?),
    })
}

pub(super) fn sync_log_from_row(r: &AnyRow) -> Result<SyncLogEntry, StoreError> {
    Ok(SyncLogEntry {
        event_id: r.try_get("event_id")?,
        sobject: r.try_get("sobject")?,
        record_key: r.try_get("record_key")?,
        sf_id: r.try_get("sf_id")?,
        created: r.try_get::<Option<i64>, _>("created")?.map(|c| c != 0),
        outcome: r.try_get("outcome")?,
        message: r.try_get("message")?,
        at: Micros(r.try_get("at_us")?),
    })
}

fn item_from_row(row: &AnyRow) -> Result<OutboxItem, StoreError> {
    let (intent, event_ids) = intent_from_row(row)?;
    Ok(OutboxItem {
        id: row.try_get("id")?,
        intent,
        event_ids,
        attempts: row.try_get("attempts")?,
        due: Micros(row.try_get("next_attempt_us")?),
    })
}

/// One sync-log row per (event, intent): what each event did in Salesforce. Multi-row
/// inserts, nine values a row.
async fn log_sync(
    conn: &mut AnyConnection,
    items: &[(&OutboxItem, Option<&str>, Option<bool>)],
    outcome: &str,
    message: Option<&str>,
    now: Micros,
) -> Result<(), StoreError> {
    let mut rows = Vec::new();
    for (item, sf_id, created) in items {
        let key = serde_json::to_string(&item.intent.key).expect("key serializes");
        for event_id in &item.event_ids {
            rows.push((*event_id, *item, key.clone(), *sf_id, *created));
        }
    }
    const COLUMNS: usize = 9;
    for chunk in rows.chunks(MAX_BINDS / COLUMNS) {
        let values = (0..chunk.len())
            .map(|r| format!("({})", placeholders(1 + r * COLUMNS, COLUMNS)))
            .collect::<Vec<_>>()
            .join(", ");
        let sql = format!(
            "INSERT INTO sync_log (event_id, outbox_id, sobject, record_key, sf_id, created, \
                 outcome, message, at_us) VALUES {values}"
        );
        let mut query = sqlx::query(&sql);
        for (event_id, item, key, sf_id, created) in chunk {
            query = query
                .bind(*event_id)
                .bind(item.id)
                .bind(&item.intent.sobject)
                .bind(key)
                .bind(*sf_id)
                .bind(created.map(i64::from))
                .bind(outcome)
                .bind(message)
                .bind(now.0);
        }
        query.execute(&mut *conn).await?;
    }
    Ok(())
}

/// Leases the pending intents of `n` partitions (`$1` owner, `$2` lease end, then the
/// partitions).
pub(super) fn lease_partitions_sql(n: usize) -> String {
    format!(
        "UPDATE outbox SET status = 'inflight', lease_owner = $1, lease_until_us = $2 \
         WHERE status = 'pending' AND partition_key IN ({}) RETURNING {ITEM_COLUMNS}",
        placeholders(3, n)
    )
}

/// Marks `n` intents written (`$1` now, then the ids).
pub(super) fn written_sql(n: usize) -> String {
    format!(
        "UPDATE outbox SET status = 'done', lease_owner = NULL, lease_until_us = NULL, \
             last_error = NULL, updated_us = $1 \
         WHERE id IN ({})",
        placeholders(2, n)
    )
}

/// The in-flight outbox rows among `n` ids.
pub(super) fn in_flight_sql(n: usize) -> String {
    let columns = ITEM_COLUMNS
        .split(", ")
        .map(|c| format!("o.{c}"))
        .collect::<Vec<_>>()
        .join(", ");
    format!(
        "WITH wanted(id) AS (VALUES {}) SELECT {columns} FROM wanted \
         JOIN outbox o ON o.id = wanted.id AND o.status = 'inflight'",
        value_rows(1, n)
    )
}

/// The in-flight outbox rows among `ids`, by id (joined from VALUES, which keeps SQLite on
/// the primary key).
async fn in_flight_items(
    conn: &mut AnyConnection,
    ids: &[i64],
) -> Result<HashMap<i64, OutboxItem>, StoreError> {
    let mut out = HashMap::with_capacity(ids.len());
    for chunk in ids.chunks(MAX_BINDS) {
        let sql = in_flight_sql(chunk.len());
        let mut query = sqlx::query(&sql);
        for id in chunk {
            query = query.bind(id);
        }
        for row in query.fetch_all(&mut *conn).await? {
            let item = item_from_row(&row)?;
            out.insert(item.id, item);
        }
    }
    Ok(out)
}

/// Puts a leased intent back to pending. When a newer intent for the same record was
/// enqueued while this one was in flight, the two become one: this (older) row keeps its
/// place in the partition's write order — a parent must stay ahead of the children enqueued
/// after it — and takes the newer values (fields only it had are kept); the newer row is
/// marked superseded. `error` counts as a failed attempt; without it the intent is just
/// returned (not sent, or its lease expired).
async fn requeue(
    conn: &mut AnyConnection,
    item: &OutboxItem,
    not_before: Micros,
    error: Option<&str>,
    now: Micros,
) -> Result<(), StoreError> {
    let record_key = serde_json::to_string(&item.intent.key).expect("key serializes");
    let newer = sqlx::query(&format!(
        "SELECT {ITEM_COLUMNS} FROM outbox WHERE sobject = $1 AND record_key = $2 \
             AND status = 'pending'"
    ))
    .bind(&item.intent.sobject)
    .bind(&record_key)
    .fetch_optional(&mut *conn)
    .await?;
    let (fields, events, priority, partition) = match &newer {
        Some(row) => {
            let newer = item_from_row(row)?;
            sqlx::query("UPDATE outbox SET status = 'superseded', updated_us = $2 WHERE id = $1")
                .bind(newer.id)
                .bind(now.0)
                .execute(&mut *conn)
                .await?;
            let mut fields: BTreeMap<_, _> = item.intent.fields.clone();
            fields.extend(newer.intent.fields);
            let mut events = item.event_ids.clone();
            events.extend(
                newer
                    .event_ids
                    .iter()
                    .filter(|e| !item.event_ids.contains(e)),
            );
            (
                fields,
                events,
                item.intent.priority.min(newer.intent.priority),
                newer.intent.partition,
            )
        }
        None => (
            item.intent.fields.clone(),
            item.event_ids.clone(),
            item.intent.priority,
            item.intent.partition.clone(),
        ),
    };
    sqlx::query(
        "UPDATE outbox SET status = 'pending', lease_owner = NULL, lease_until_us = NULL, \
             attempts = attempts + $5, next_attempt_us = $2, \
             last_error = COALESCE($3, last_error), updated_us = $4, fields = $6, \
             event_ids = $7, priority = $8, partition_key = $9 \
         WHERE id = $1",
    )
    .bind(item.id)
    .bind(not_before.0)
    .bind(error)
    .bind(now.0)
    .bind(i64::from(error.is_some()))
    .bind(serde_json::to_string(&fields).expect("fields serialize"))
    .bind(serde_json::to_string(&events).expect("ids serialize"))
    .bind(priority.as_i64())
    .bind(partition)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

impl SqlStore {
    pub(super) async fn lease_outbox_impl(
        &self,
        owner: &str,
        now: Micros,
        lease_until: Micros,
        max_partitions: i64,
        max_priority: Priority,
    ) -> Result<Vec<OutboxItem>, StoreError> {
        let mut tx = self.outbox_tx().await?;
        // Intents whose sink died mid-round go back to pending (merged under any newer one).
        let expired = sqlx::query(&format!(
            "SELECT {ITEM_COLUMNS} FROM outbox WHERE status = 'inflight' AND lease_until_us < $1"
        ))
        .bind(now.0)
        .fetch_all(&mut *tx)
        .await?;
        for row in &expired {
            let item = item_from_row(row)?;
            requeue(&mut tx, &item, item.due, None, now).await?;
        }
        let partitions = leasable_partitions(&mut tx, now, max_partitions, max_priority).await?;
        let mut rows = Vec::new();
        for chunk in partitions.chunks(MAX_BINDS) {
            let sql = lease_partitions_sql(chunk.len());
            let mut query = sqlx::query(&sql).bind(owner).bind(lease_until.0);
            for partition in chunk {
                query = query.bind(partition);
            }
            rows.extend(query.fetch_all(&mut *tx).await?);
        }
        tx.commit().await?;
        let mut items = rows
            .iter()
            .map(item_from_row)
            .collect::<Result<Vec<_>, _>>()?;
        items.sort_by_key(|i| i.id);
        Ok(items)
    }

    pub(super) async fn settle_outbox_impl(
        &self,
        settlements: &[Settlement],
        now: Micros,
    ) -> Result<(), StoreError> {
        let mut tx = self.outbox_tx().await?;
        let ids: Vec<i64> = settlements.iter().map(Settlement::id).collect();
        // Items whose lease ran out and another sink took over are not here: that sink
        // settles them.
        let in_flight = in_flight_items(&mut tx, &ids).await?;
        // Written intents, the common case, are settled a chunk at a time.
        let mut written: Vec<(&OutboxItem, Option<&str>, Option<bool>)> = Vec::new();
        for s in settlements {
            let id = s.id();
            let Some(item) = in_flight.get(&id) else {
                continue;
            };
            match s {
                Settlement::Release { .. } => requeue(&mut tx, item, item.due, None, now).await?,
                Settlement::Written { sf_id, created, .. } => {
                    written.push((item, sf_id.as_deref(), *created));
                }
                Settlement::Retry {
                    not_before, error, ..
                } => requeue(&mut tx, item, *not_before, Some(error), now).await?,
                Settlement::Dead { code, message, .. } => {
                    sqlx::query(
                        "UPDATE outbox SET status = 'dead', lease_owner = NULL, \
                             lease_until_us = NULL, last_error = $2, updated_us = $3 \
                         WHERE id = $1",
                    )
                    .bind(id)
                    .bind(format!("{code}: {message}"))
                    .bind(now.0)
                    .execute(&mut *tx)
                    .await?;
                    sqlx::query(
                        "INSERT INTO dead_letters (outbox_id, sobject, record_key, \
                             partition_key, priority, fields, event_ids, error_code, message, \
                             created_us) \
                         SELECT id, sobject, record_key, partition_key, priority, fields, \
                             event_ids, $2, $3, $4 FROM outbox WHERE id = $1",
                    )
                    .bind(id)
                    .bind(code)
                    .bind(message)
                    .bind(now.0)
                    .execute(&mut *tx)
                    .await?;
                    let text = format!("{code}: {message}");
                    log_sync(&mut tx, &[(item, None, None)], "failed", Some(&text), now).await?;
                }
            }
        }
        for chunk in written.chunks(MAX_BINDS) {
            let sql = written_sql(chunk.len());
            let mut query = sqlx::query(&sql).bind(now.0);
            for (item, _, _) in chunk {
                query = query.bind(item.id);
            }
            query.execute(&mut *tx).await?;
        }
        log_sync(&mut tx, &written, "written", None, now).await?;
        tx.commit().await?;
        Ok(())
    }

    pub(super) async fn outbox_stats_impl(&self) -> Result<OutboxStats, StoreError> {
        let row = sqlx::query(
            "SELECT \
               (SELECT COUNT(*) FROM outbox WHERE status = 'pending') AS pending, \
               (SELECT COUNT(*) FROM outbox WHERE status = 'inflight') AS in_flight, \
               (SELECT COUNT(*) FROM outbox WHERE status = 'done') AS written, \
               (SELECT COUNT(*) FROM dead_letters WHERE status = 'open') AS dead, \
               (SELECT MIN(next_attempt_us) FROM outbox WHERE status = 'pending') AS oldest",
        )
        .fetch_one(&self.pool)
        .await?;
        Ok(OutboxStats {
            pending: row.try_get("pending")?,
            in_flight: row.try_get("in_flight")?,
            written: row.try_get("written")?,
            dead_letters_open: row.try_get("dead")?,
            oldest_due: row.try_get::<Option<i64>, _>("oldest")?.map(Micros),
        })
    }

    /// Both from indexes alone (`outbox_by_status`, `outbox_by_due`): the count stops at
    /// `up_to`, the oldest due time is the first entry of its index.
    pub(super) async fn outbox_pending_impl(
        &self,
        up_to: i64,
        now: Micros,
    ) -> Result<(i64, Option<Micros>), StoreError> {
        let row = sqlx::query(OUTBOX_PENDING_SQL)
            .bind(up_to)
            .bind(now.0)
            .fetch_one(&self.pool)
            .await?;
        let oldest: Option<i64> = row.try_get("oldest")?;
        Ok((row.try_get("pending")?, oldest.map(Micros)))
    }

    pub(super) async fn sync_log_impl(
        &self,
        event_id: i64,
    ) -> Result<Vec<SyncLogEntry>, StoreError> {
        let rows = sqlx::query(
            "SELECT event_id, sobject, record_key, sf_id, created, outcome, message, at_us \
             FROM sync_log WHERE event_id = $1 ORDER BY id",
        )
        .bind(event_id)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(sync_log_from_row).collect()
    }

    pub(super) async fn write_totals_impl(&self) -> Result<Vec<(String, i64, i64)>, StoreError> {
        // One sync-log row per (event, write): count each write once.
        let rows = sqlx::query(
            "SELECT sobject, \
                 COUNT(DISTINCT CASE WHEN created = 1 THEN outbox_id END) AS created, \
                 COUNT(DISTINCT CASE WHEN created = 0 OR created IS NULL THEN outbox_id END) \
                     AS updated \
             FROM sync_log WHERE outcome = 'written' GROUP BY sobject ORDER BY sobject",
        )
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                Ok((
                    r.try_get("sobject")?,
                    r.try_get("created")?,
                    r.try_get("updated")?,
                ))
            })
            .collect()
    }

    pub(super) async fn dead_letters_impl(
        &self,
        status: Option<DeadLetterStatus>,
        limit: i64,
    ) -> Result<Vec<DeadLetter>, StoreError> {
        let columns = "id, sobject, record_key, partition_key, priority, fields, event_ids, \
                       error_code, message, status, created_us";
        let rows = match status {
            Some(s) => {
                sqlx::query(&format!(
                    "SELECT {columns} FROM dead_letters WHERE status = $1 ORDER BY id DESC LIMIT $2"
                ))
                .bind(s.as_str())
                .bind(limit)
                .fetch_all(&self.pool)
                .await?
            }
            None => {
                sqlx::query(&format!(
                    "SELECT {columns} FROM dead_letters ORDER BY id DESC LIMIT $1"
                ))
                .bind(limit)
                .fetch_all(&self.pool)
                .await?
            }
        };
        rows.iter().map(dead_letter_from_row).collect()
    }

    pub(super) async fn replay_dead_letter_impl(
        &self,
        id: i64,
        now: Micros,
    ) -> Result<(), StoreError> {
        let mut tx = self.outbox_tx().await?;
        let row = sqlx::query(
            "SELECT sobject, record_key, partition_key, priority, fields, event_ids \
             FROM dead_letters WHERE id = $1 AND status = 'open'",
        )
        .bind(id)
        .fetch_optional(&mut *tx)
        .await?
        .ok_or_else(|| {
            StoreError::Conflict(format!("dead letter {id} does not exist or is not open"))
        })?;
        let (intent, events) = intent_from_row(&row)?;
        sqlx::query("UPDATE dead_letters SET status = 'replayed', resolved_us = $2 WHERE id = $1")
            .bind(id)
            .bind(now.0)
            .execute(&mut *tx)
            .await?;
        enqueue_in(&mut tx, &[(None, &intent)], now).await?;
        // Keep the link to the events it came from, so the sync log stays complete.
        sqlx::query(
            "UPDATE outbox SET event_ids = $3 WHERE sobject = $1 AND record_key = $2 \
                 AND status = 'pending'",
        )
        .bind(&intent.sobject)
        .bind(serde_json::to_string(&intent.key).expect("key serializes"))
        .bind(serde_json::to_string(&events).expect("ids serialize"))
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }

    pub(super) async fn identities_impl(
        &self,
        keys: &[String],
    ) -> Result<Vec<Identity>, StoreError> {
        let mut out = Vec::with_capacity(keys.len());
        for chunk in keys.chunks(MAX_BINDS) {
            let sql = format!(
                "SELECT {IDENTITY_COLUMNS} FROM identities WHERE customer_key IN ({})",
                placeholders(1, chunk.len())
            );
            let mut query = sqlx::query(&sql);
            for key in chunk {
                query = query.bind(key);
            }
            for row in query.fetch_all(&self.pool).await? {
                out.push(identity_from_row(&row)?);
            }
        }
        Ok(out)
    }

    pub(super) async fn identities_claiming_impl(
        &self,
        record_ids: &[String],
    ) -> Result<Vec<Identity>, StoreError> {
        let mut out: Vec<Identity> = Vec::new();
        for chunk in record_ids.chunks(MAX_BINDS / 2) {
            let list = placeholders(1, chunk.len());
            let sql = format!(
                "SELECT {IDENTITY_COLUMNS} FROM identities \
                 WHERE account_id IN ({list}) OR contact_id IN ({list}) ORDER BY customer_key"
            );
            let mut query = sqlx::query(&sql);
            for id in chunk {
                query = query.bind(id);
            }
            for row in query.fetch_all(&self.pool).await? {
                let identity = identity_from_row(&row)?;
                if !out.contains(&identity) {
                    out.push(identity);
                }
            }
        }
        Ok(out)
    }

    pub(super) async fn identities_by_source_impl(
        &self,
        source: &str,
    ) -> Result<Vec<Identity>, StoreError> {
        let rows = sqlx::query(&format!(
            "SELECT {IDENTITY_COLUMNS} FROM identities WHERE source = $1 ORDER BY updated_us"
        ))
        .bind(source)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(identity_from_row).collect()
    }

    pub(super) async fn release_partition_impl(
        &self,
        partition: &str,
        now: Micros,
    ) -> Result<u64, StoreError> {
        let done = sqlx::query(
            "UPDATE outbox SET next_attempt_us = $2, updated_us = $2 \
             WHERE partition_key = $1 AND status = 'pending'",
        )
        .bind(partition)
        .bind(now.0)
        .execute(&self.writer)
        .await?;
        Ok(done.rows_affected())
    }

    pub(super) async fn save_identities_impl(
        &self,
        identities: &[Identity],
        now: Micros,
    ) -> Result<(), StoreError> {
        if identities.is_empty() {
            return Ok(());
        }
        // One statement per identity (a multi-row upsert may not touch a key twice), one
        // transaction for all of them.
        let mut tx = self.write_tx().await?;
        for i in identities {
            sqlx::query(
                "INSERT INTO identities (customer_key, account_id, contact_id, source, updated_us) \
                 VALUES ($1, $2, $3, $4, $5) ON CONFLICT (customer_key) DO UPDATE SET \
                     account_id = COALESCE(excluded.account_id, identities.account_id), \
                     contact_id = COALESCE(excluded.contact_id, identities.contact_id), \
                     source = CASE WHEN excluded.source IN ('created', 'upserted') \
                         THEN identities.source ELSE excluded.source END, \
                     updated_us = excluded.updated_us",
            )
            .bind(&i.customer_key)
            .bind(&i.account_id)
            .bind(&i.contact_id)
            .bind(&i.source)
            .bind(now.0)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    pub(super) async fn record_api_calls_impl(
        &self,
        calls: i64,
        org_usage: Option<(i64, i64)>,
        now: Micros,
    ) -> Result<(), StoreError> {
        let mut tx = self.write_tx().await?;
        if calls > 0 {
            sqlx::query(
                "INSERT INTO api_budget (name, used, max, observed_us) VALUES ($1, $2, 0, $3) \
                 ON CONFLICT (name) DO UPDATE SET used = api_budget.used + excluded.used, \
                     observed_us = excluded.observed_us",
            )
            .bind(format!("calls:{:012}", now.0 / HOUR_US))
            .bind(calls)
            .bind(now.0)
            .execute(&mut *tx)
            .await?;
        }
        if let Some((used, max)) = org_usage {
            sqlx::query(
                "INSERT INTO api_budget (name, used, max, observed_us) VALUES ('org', $1, $2, $3) \
                 ON CONFLICT (name) DO UPDATE SET used = excluded.used, max = excluded.max, \
                     observed_us = excluded.observed_us",
            )
            .bind(used)
            .bind(max)
            .bind(now.0)
            .execute(&mut *tx)
            .await?;
        }
        // Hourly counters older than a day are of no further use.
        sqlx::query("DELETE FROM api_budget WHERE name >= 'calls:' AND name < $1")
            .bind(format!("calls:{:012}", now.0 / HOUR_US - 24))
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(())
    }

    pub(super) async fn api_budget_impl(&self, now: Micros) -> Result<ApiBudgetState, StoreError> {
        let mut state = ApiBudgetState::default();
        let rows = sqlx::query("SELECT name, used, max, observed_us FROM api_budget")
            .fetch_all(&self.pool)
            .await?;
        // The rolling window: this hour and the 23 before it.
        let first = format!("calls:{:012}", now.0 / HOUR_US - 23);
        for r in rows {
            let name: String = r.try_get("name")?;
            let used: i64 = r.try_get("used")?;
            if name == "org" {
                state.org_used = Some(used);
                state.org_max = Some(r.try_get("max")?);
                state.observed_at = Some(Micros(r.try_get("observed_us")?));
            } else if name.starts_with("calls:") && name >= first {
                state.revsync_calls_24h += used;
            }
        }
        Ok(state)
    }
}

/// One page of pending intents in lease order: `$1` highest priority taken, `$2`/`$3` the
/// (priority, id) after which the page starts, `$4` its length.
pub(super) const LEASE_PAGE_SQL: &str = "SELECT partition_key, priority, id FROM outbox \
     WHERE status = 'pending' AND priority <= $1 AND (priority, id) > ($2, $3) \
     ORDER BY priority, id LIMIT $4";

/// Intents waiting for the sink, counted up to `$1` each way: pending ones, and in-flight
/// ones whose lease ran out before `$2` (their sink died, or its round failed before it
/// settled them; only a lease takes them back). And when the oldest became due.
pub(super) const OUTBOX_PENDING_SQL: &str = "SELECT \
       (SELECT COUNT(*) FROM (SELECT 1 FROM outbox WHERE status = 'pending' LIMIT $1) AS p) \
       + (SELECT COUNT(*) FROM (SELECT 1 FROM outbox \
             WHERE status = 'inflight' AND lease_until_us < $2 LIMIT $1) AS x) AS pending, \
       (SELECT MIN(due) FROM ( \
           SELECT MIN(next_attempt_us) AS due FROM outbox WHERE status = 'pending' \
           UNION ALL SELECT MIN(lease_until_us) FROM outbox \
             WHERE status = 'inflight' AND lease_until_us < $2) AS d) AS oldest";

/// Which of `n` partitions (after `$1` = now) have an intent in flight or one not yet due.
pub(super) fn blocked_partitions_sql(n: usize) -> String {
    // Joined from VALUES, not `IN (…)`, so that SQLite looks the partitions up instead of
    // walking every pending intent not yet due (see `enqueue_in`).
    format!(
        "WITH fresh(partition_key) AS (VALUES {}) \
         SELECT fresh.partition_key FROM fresh WHERE EXISTS (SELECT 1 FROM outbox o \
             WHERE o.partition_key = fresh.partition_key AND (o.status = 'inflight' \
                 OR (o.status = 'pending' AND o.next_attempt_us > $1)))",
        value_rows(2, n)
    )
}

/// Up to `max` partitions the sink may lease now, oldest first by their most urgent pending
/// intent: every pending intent of the partition due and none of it in flight.
///
/// Walks pending intents in (priority, id) order a page at a time (the `outbox_by_status`
/// index) and checks each page's new partitions with one indexed query, so a lease costs in
/// proportion to what it takes, not to the backlog: with a million intents waiting, the
/// sink's rounds (and, on SQLite, the write lock they hold) stay as short as with ten.
async fn leasable_partitions(
    conn: &mut AnyConnection,
    now: Micros,
    max: i64,
    max_priority: Priority,
) -> Result<Vec<String>, StoreError> {
    let max = usize::try_from(max).unwrap_or(0);
    // A page's new partitions and `now` are bound together in the blocked check.
    let page = (4 * max).clamp(64, MAX_BINDS - 1) as i64;
    let mut chosen: Vec<String> = Vec::new();
    let mut seen: HashSet<String> = HashSet::new();
    let mut after = (i64::MIN, i64::MIN);
    while chosen.len() < max {
        let rows = sqlx::query(LEASE_PAGE_SQL)
            .bind(max_priority.as_i64())
            .bind(after.0)
            .bind(after.1)
            .bind(page)
            .fetch_all(&mut *conn)
            .await?;
        let Some(last) = rows.last() else { break };
        after = (last.try_get("priority")?, last.try_get("id")?);
        let mut fresh = Vec::new();
        for row in &rows {
            let partition: String = row.try_get("partition_key")?;
            if seen.insert(partition.clone()) {
                fresh.push(partition);
            }
        }
        if !fresh.is_empty() {
            let sql = blocked_partitions_sql(fresh.len());
            let mut query = sqlx::query(&sql).bind(now.0);
            for partition in &fresh {
                query = query.bind(partition);
            }
            let blocked: HashSet<String> = query
                .fetch_all(&mut *conn)
                .await?
                .iter()
                .map(|r| r.try_get("partition_key"))
                .collect::<Result<_, _>>()?;
            chosen.extend(fresh.into_iter().filter(|p| !blocked.contains(p)));
        }
        if (rows.len() as i64) < page {
            break;
        }
    }
    chosen.truncate(max);
    Ok(chosen)
}
