//! [`Queries`] for [`SqlStore`]: one SQL text for SQLite and PostgreSQL.
//!
//! Portability notes: `SUM` over `BIGINT` is `NUMERIC` on PostgreSQL, which the `Any` driver
//! cannot decode, so sums are cast back to `BIGINT`; averages are computed here from a sum
//! and a count for the same reason. `LOWER` is applied to both sides of a comparison so the
//! two databases agree on what "ignoring case" means for each of them (SQLite folds ASCII
//! only). Lists of values are bound as `$N` placeholders built here, in chunks.

use std::collections::{BTreeMap, BTreeSet};

use async_trait::async_trait;
use sqlx::Row;

use super::queries::{
    escape_like, json_has_string_value, DeliverySummary, FlowThroughput, Queries, Throughput,
    MAX_SEARCH_RESULTS,
};
use super::{DeadLetter, Event, Micros, SqlStore, StoreError, SyncLogEntry};

const EVENT_COLUMNS: &str = "id, kind, fingerprint, reference, customer_key, status, \
    delivery_count, first_received_us, last_received_us, attempts, processed_us, last_error";

const DEAD_LETTER_COLUMNS: &str = "id, sobject, record_key, partition_key, priority, fields, \
    event_ids, error_code, message, status, created_us";

/// How many values one `IN (…)` list binds.
const IN_CHUNK: usize = 500;

/// How many ledger records a search examines for exact values.
const LEDGER_CANDIDATES: i64 = 500;

const MINUTE_US: i64 = 60_000_000;
const HOUR_US: i64 = 60 * MINUTE_US;

use super::sql::event_from_row;
use super::sql_outbox::{dead_letter_from_row, sync_log_from_row};

/// `$first, $first+1, …` for `count` values.
fn placeholders(first: usize, count: usize) -> String {
    (first..first + count)
        .map(|n| format!("${n}"))
        .collect::<Vec<_>>()
        .join(", ")
}

impl SqlStore {
    /// Events whose reference is one of `references` or whose customer key is one of
    /// `customers`, newest first, at most `limit`.
    async fn events_of(
        &self,
        references: &BTreeSet<String>,
        customers: &BTreeSet<String>,
        limit: i64,
    ) -> Result<Vec<Event>, StoreError> {
        let mut found = BTreeMap::new();
        let by = [("reference", references), ("customer_key", customers)];
        for (column, values) in by {
            let values: Vec<&String> = values.iter().collect();
            for chunk in values.chunks(IN_CHUNK) {
                let sql = format!(
                    "SELECT {EVENT_COLUMNS} FROM events WHERE {column} IN ({}) \
                     ORDER BY id DESC LIMIT $1",
                    placeholders(2, chunk.len())
                );
                let mut query = sqlx::query(&sql).bind(limit);
                for v in chunk {
                    query = query.bind(v.as_str());
                }
                for row in query.fetch_all(&self.pool).await? {
                    let event = event_from_row(&row)?;
                    found.insert(event.id, event);
                }
            }
        }
        Ok(found.into_values().rev().take(limit as usize).collect())
    }
}

#[async_trait]
impl Queries for SqlStore {
    async fn recent_events(
        &self,
        before: Option<i64>,
        limit: i64,
    ) -> Result<Vec<Event>, StoreError> {
        let sql =
            format!("SELECT {EVENT_COLUMNS} FROM events WHERE id < $1 ORDER BY id DESC LIMIT $2");
        let rows = sqlx::query(&sql)
            .bind(before.unwrap_or(i64::MAX))
            .bind(limit.max(0))
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(event_from_row).collect()
    }

    async fn search_events(&self, text: &str, limit: i64) -> Result<Vec<Event>, StoreError> {
        let text = text.trim();
        let limit = limit.clamp(0, MAX_SEARCH_RESULTS);
        if text.is_empty() || limit == 0 {
            return Ok(Vec::new());
        }
        let mut found: BTreeMap<i64, Event> = BTreeMap::new();

        // References and customer keys, by substring.
        let contains = format!("%{}%", escape_like(text));
        let sql = format!(
            "SELECT {EVENT_COLUMNS} FROM events \
             WHERE LOWER(reference) LIKE LOWER($1) ESCAPE '\\' \
                OR LOWER(COALESCE(customer_key, '')) LIKE LOWER($1) ESCAPE '\\' \
             ORDER BY id DESC LIMIT $2"
        );
        for row in sqlx::query(&sql)
            .bind(&contains)
            .bind(limit)
            .fetch_all(&self.pool)
            .await?
        {
            let event = event_from_row(&row)?;
            found.insert(event.id, event);
        }

        // Ledger records holding the text as a whole string value. The LIKE narrows the
        // candidates to bodies containing the JSON string (its quotes included); parsing
        // then drops those where it is only an object key. Assumes the bodies are compact
        // JSON as serde_json writes them (the ledger's only writer).
        let quoted = serde_json::to_string(text).expect("a string serializes");
        let value_pattern = format!("%{}%", escape_like(&quoted));
        let rows = sqlx::query(
            "SELECT key, customer_key, body FROM ledger_records \
             WHERE LOWER(body) LIKE LOWER($1) ESCAPE '\\' ORDER BY updated_us DESC LIMIT $2",
        )
        .bind(&value_pattern)
        .bind(LEDGER_CANDIDATES)
        .fetch_all(&self.pool)
        .await?;
        let needle = text.to_lowercase();
        let mut references = BTreeSet::new();
        let mut customers = BTreeSet::new();
        for row in rows {
            let body: String = row.try_get("body")?;
            let Ok(doc) = serde_json::from_str::<serde_json::Value>(&body) else {
                continue; // not JSON: nothing to match by value
            };
            if !json_has_string_value(&doc, &needle) {
                continue;
            }
            let key: String = row.try_get("key")?;
            let customer: Option<String> = row.try_get("customer_key")?;
            if customer.as_deref() == Some(key.as_str()) {
                customers.insert(key);
            } else {
                references.insert(key);
            }
        }
        for event in self.events_of(&references, &customers, limit).await? {
            found.insert(event.id, event);
        }
        Ok(found.into_values().rev().take(limit as usize).collect())
    }

    async fn delivery_summaries(&self, event_id: i64) -> Result<Vec<DeliverySummary>, StoreError> {
        let rows = sqlx::query(
            "SELECT id, event_id, kind, received_us, content_type, remote_addr, \
                 signature_algorithm, CAST(LENGTH(body) AS BIGINT) AS body_bytes \
             FROM deliveries WHERE event_id = $1 ORDER BY id",
        )
        .bind(event_id)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|row| {
                Ok(DeliverySummary {
                    id: row.try_get("id")?,
                    event_id: row.try_get("event_id")?,
                    kind: row.try_get("kind")?,
                    received_at: Micros(row.try_get("received_us")?),
                    content_type: row.try_get("content_type")?,
                    remote_addr: row.try_get("remote_addr")?,
                    signature_algorithm: row.try_get("signature_algorithm")?,
                    body_bytes: row.try_get("body_bytes")?,
                })
            })
            .collect()
    }

    async fn sync_logs(&self, event_ids: &[i64]) -> Result<Vec<SyncLogEntry>, StoreError> {
        let ids: Vec<i64> = event_ids
            .iter()
            .copied()
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect();
        let mut rows_by_id = Vec::new();
        for chunk in ids.chunks(IN_CHUNK) {
            let sql = format!(
                "SELECT id, event_id, sobject, record_key, sf_id, created, outcome, message, \
                     at_us FROM sync_log WHERE event_id IN ({}) ORDER BY id",
                placeholders(1, chunk.len())
            );
            let mut query = sqlx::query(&sql);
            for id in chunk {
                query = query.bind(*id);
            }
            for r in query.fetch_all(&self.pool).await? {
                let id: i64 = r.try_get("id")?;
                rows_by_id.push((id, sync_log_from_row(&r)?));
            }
        }
        rows_by_id.sort_by_key(|(id, _)| *id);
        Ok(rows_by_id.into_iter().map(|(_, entry)| entry).collect())
    }

    async fn dead_letter(&self, id: i64) -> Result<Option<DeadLetter>, StoreError> {
        let sql = format!("SELECT {DEAD_LETTER_COLUMNS} FROM dead_letters WHERE id = $1");
        let row = sqlx::query(&sql)
            .bind(id)
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(dead_letter_from_row).transpose()
    }

    async fn throughput(&self, now: Micros) -> Result<Throughput, StoreError> {
        let minute_ago = now.0 - MINUTE_US;
        let hour_ago = now.0 - HOUR_US;
        let rows = sqlx::query(
            "SELECT kind, COUNT(*) AS hour_count, \
                 CAST(SUM(CASE WHEN processed_us >= $2 THEN 1 ELSE 0 END) AS BIGINT) \
                     AS minute_count, \
                 CAST(SUM(processed_us - first_received_us) AS BIGINT) AS latency_sum, \
                 MAX(processed_us - first_received_us) AS latency_max \
             FROM events WHERE status = 'processed' AND processed_us >= $1 \
                 AND processed_us <= $3 \
             GROUP BY kind ORDER BY kind",
        )
        .bind(hour_ago)
        .bind(minute_ago)
        .bind(now.0)
        .fetch_all(&self.pool)
        .await?;
        let mut flows = Vec::with_capacity(rows.len());
        for r in rows {
            let count: i64 = r.try_get("hour_count")?;
            let sum: Option<i64> = r.try_get("latency_sum")?;
            flows.push(FlowThroughput {
                kind: r.try_get("kind")?,
                processed_last_minute: r.try_get::<Option<i64>, _>("minute_count")?.unwrap_or(0),
                processed_last_hour: count,
                latency_avg_us: sum.filter(|_| count > 0).map(|s| s / count),
                latency_max_us: r.try_get("latency_max")?,
            });
        }
        let row = sqlx::query(
            "SELECT \
               (SELECT COUNT(*) FROM outbox WHERE status = 'done' \
                    AND updated_us >= $2 AND updated_us <= $3) AS written_minute, \
               (SELECT COUNT(*) FROM outbox WHERE status = 'done' \
                    AND updated_us >= $1 AND updated_us <= $3) AS written_hour, \
               (SELECT COUNT(*) FROM dead_letters \
                    WHERE created_us >= $1 AND created_us <= $3) AS dead_hour",
        )
        .bind(hour_ago)
        .bind(minute_ago)
        .bind(now.0)
        .fetch_one(&self.pool)
        .await?;
        Ok(Throughput {
            flows,
            outbox_written_last_minute: row.try_get("written_minute")?,
            outbox_written_last_hour: row.try_get("written_hour")?,
            dead_letters_last_hour: row.try_get("dead_hour")?,
        })
    }
}
