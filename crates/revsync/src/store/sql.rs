//! [`SqlStore`]: the [`Store`] interface over sqlx's `Any` driver, for SQLite and PostgreSQL.
//!
//! Both dialects accept `$N` placeholders, `RETURNING` and `ON CONFLICT … DO UPDATE`, so one SQL
//! text serves both; only leasing (`FOR UPDATE SKIP LOCKED`) and connection pragmas differ.

use std::str::FromStr;

use async_trait::async_trait;
use sqlx::any::{AnyConnectOptions, AnyPoolOptions, AnyRow};
use sqlx::{AnyPool, Executor, Row};

use super::{
    Appended, Backend, Delivery, Event, EventLog, EventStatus, LogCounts, Micros, NewDelivery,
    NewQuarantine, OpenOptions, QuarantineEntry, QuarantineStatus, StoreError,
};
use crate::config::SqliteSync;

static SQLITE_MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/sqlite");
static POSTGRES_MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/postgres");

/// The SQL store. Cheap to clone (a pool handle).
#[derive(Clone, Debug)]
pub struct SqlStore {
    /// Reads, and on PostgreSQL everything.
    pub(super) pool: AnyPool,
    /// Writes. On SQLite a pool of one connection: writers queue in order and are woken
    /// the moment the lock is free, instead of sleeping in SQLite's busy handler (which
    /// backs off up to 100 ms at a time and starved the processor behind the sink under
    /// a backlog). On PostgreSQL the same pool as `pool`.
    pub(super) writer: AnyPool,
    pub(super) backend: Backend,
}

const EVENT_COLUMNS: &str = "id, kind, fingerprint, reference, customer_key, status, \
    delivery_count, first_received_us, last_received_us, attempts, processed_us, last_error";

const QUARANTINE_COLUMNS: &str = "id, received_us, path_kind, content_type, remote_addr, \
    reason, body, truncated, status, resolved_us, event_id";

impl SqlStore {
    /// Connects, applies pragmas (SQLite: WAL, `synchronous`, busy timeout) and migrates.
    pub async fn open(url: &str, options: &OpenOptions) -> Result<SqlStore, StoreError> {
        sqlx::any::install_default_drivers();
        let backend = if url.starts_with("sqlite:") {
            Backend::Sqlite
        } else if url.starts_with("postgres:") || url.starts_with("postgresql:") {
            Backend::Postgres
        } else {
            return Err(StoreError::Config(format!(
                "store url `{}` is neither sqlite: nor postgres:",
                redact_url(url)
            )));
        };
        let url = match backend {
            // Create the database file when it does not exist yet.
            Backend::Sqlite if !url.contains("mode=") => {
                let sep = if url.contains('?') { '&' } else { '?' };
                format!("{url}{sep}mode=rwc")
            }
            _ => url.to_owned(),
        };
        let connect = AnyConnectOptions::from_str(&url)
            .map_err(|e| StoreError::Config(format!("store url `{}`: {e}", redact_url(&url))))?;
        let sync = options.sqlite_synchronous;
        let pool_options = |max_connections: u32| {
            AnyPoolOptions::new()
                .max_connections(max_connections.max(1))
                .acquire_timeout(options.acquire_timeout)
                .after_connect(move |conn, _meta| {
                    Box::pin(async move {
                        if backend == Backend::Sqlite {
                            let sync = match sync {
                                SqliteSync::Full => "FULL",
                                SqliteSync::Normal => "NORMAL",
                                SqliteSync::Off => "OFF",
                            };
                            conn.execute("PRAGMA journal_mode = WAL").await?;
                            conn.execute(format!("PRAGMA synchronous = {sync}").as_str())
                                .await?;
                            conn.execute("PRAGMA busy_timeout = 10000").await?;
                            conn.execute("PRAGMA foreign_keys = ON").await?;
                        }
                        Ok(())
                    })
                })
        };
        let pool = pool_options(options.max_connections)
            .connect_with(connect.clone())
            .await?;
        let writer = match backend {
            Backend::Sqlite => pool_options(1).connect_with(connect).await?,
            Backend::Postgres => pool.clone(),
        };
        let migrator = match backend {
            Backend::Sqlite => &SQLITE_MIGRATIONS,
            Backend::Postgres => &POSTGRES_MIGRATIONS,
        };
        migrator.run(&writer).await.map_err(StoreError::Migration)?;
        Ok(SqlStore {
            pool,
            writer,
            backend,
        })
    }

    /// Begins a transaction that will write. On SQLite it takes the write lock up front
    /// (`BEGIN IMMEDIATE`): a deferred transaction that reads first and writes later cannot
    /// wait for the lock and fails with "database is locked" under concurrency.
    pub(super) async fn write_tx(
        &self,
    ) -> Result<sqlx::Transaction<'static, sqlx::Any>, StoreError> {
        Ok(match self.backend {
            Backend::Sqlite => self.writer.begin_with("BEGIN IMMEDIATE").await?,
            Backend::Postgres => self.writer.begin().await?,
        })
    }

    /// Begins a write transaction that changes which outbox rows are pending. Only one such
    /// transaction runs at a time: on SQLite the write lock already ensures it; on PostgreSQL
    /// a transaction-scoped advisory lock does. Without it, READ COMMITTED lets an enqueue
    /// and a requeue of the same record both see no pending row and both make one (the
    /// second fails on `outbox_one_pending_per_record`).
    pub(super) async fn outbox_tx(
        &self,
    ) -> Result<sqlx::Transaction<'static, sqlx::Any>, StoreError> {
        let mut tx = self.write_tx().await?;
        if self.backend == Backend::Postgres {
            sqlx::query("SELECT pg_advisory_xact_lock($1)")
                .bind(OUTBOX_LOCK)
                .execute(&mut *tx)
                .await?;
        }
        Ok(tx)
    }

    /// Closes the pools, waiting for connections to be returned.
    pub async fn close(&self) {
        self.pool.close().await;
        self.writer.close().await;
    }
}

/// PostgreSQL advisory lock key held by [`SqlStore::outbox_tx`] ("rvsync" in ASCII).
const OUTBOX_LOCK: i64 = 0x72_76_73_79_6e_63;

/// Hides a password in a database URL for error messages.
fn redact_url(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut u) if u.password().is_some() => {
            let _ = u.set_password(Some("***"));
            u.to_string()
        }
        _ => url.to_owned(),
    }
}

pub(super) fn event_from_row(row: &AnyRow) -> Result<Event, StoreError> {
    Ok(Event {
        id: row.try_get("id")?,
        kind: row.try_get("kind")?,
        fingerprint: row.try_get("fingerprint")?,
        reference: row.try_get("reference")?,
        customer_key: row.try_get("customer_key")?,
        status: EventStatus::parse(&row.try_get::<String, _>("status")?)?,
        delivery_count: row.try_get("delivery_count")?,
        first_received_at: Micros(row.try_get("first_received_us")?),
        last_received_at: Micros(row.try_get("last_received_us")?),
        attempts: row.try_get("attempts")?,
        processed_at: row.try_get::<Option<i64>, _>("processed_us")?.map(Micros),
        last_error: row.try_get("last_error")?,
    })
}

fn quarantine_from_row(row: &AnyRow) -> Result<QuarantineEntry, StoreError> {
    Ok(QuarantineEntry {
        id: row.try_get("id")?,
        received_at: Micros(row.try_get("received_us")?),
        path_kind: row.try_get("path_kind")?,
        content_type: row.try_get("content_type")?,
        remote_addr: row.try_get("remote_addr")?,
        reason: row.try_get("reason")?,
        body: row.try_get("body")?,
        truncated: row.try_get::<i64, _>("truncated")? != 0,
        status: QuarantineStatus::parse(&row.try_get::<String, _>("status")?)?,
        resolved_at: row.try_get::<Option<i64>, _>("resolved_us")?.map(Micros),
        event_id: row.try_get("event_id")?,
    })
}

/// Appends one delivery inside an open transaction.
async fn append_one(
    conn: &mut sqlx::AnyConnection,
    d: &NewDelivery,
) -> Result<Appended, StoreError> {
    let row = sqlx::query(
        "INSERT INTO events (kind, fingerprint, reference, customer_key, first_received_us, \
             last_received_us) VALUES ($1, $2, $3, $4, $5, $5) \
         ON CONFLICT (fingerprint) DO UPDATE SET \
             delivery_count = events.delivery_count + 1, \
             last_received_us = excluded.last_received_us \
         RETURNING id, delivery_count",
    )
    .bind(&d.kind)
    .bind(&d.fingerprint)
    .bind(&d.reference)
    .bind(&d.customer_key)
    .bind(d.received_at.0)
    .fetch_one(&mut *conn)
    .await?;
    let event_id: i64 = row.try_get("id")?;
    let delivery_count: i64 = row.try_get("delivery_count")?;
    let row = sqlx::query(
        "INSERT INTO deliveries (event_id, kind, received_us, content_type, remote_addr, \
             signature_algorithm, body) VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING id",
    )
    .bind(event_id)
    .bind(&d.kind)
    .bind(d.received_at.0)
    .bind(&d.content_type)
    .bind(&d.remote_addr)
    .bind(&d.signature_algorithm)
    .bind(&d.body)
    .fetch_one(&mut *conn)
    .await?;
    Ok(Appended {
        delivery_id: row.try_get("id")?,
        event_id,
        new_event: delivery_count == 1,
    })
}

#[async_trait]
impl EventLog for SqlStore {
    fn backend(&self) -> Backend {
        self.backend
    }

    async fn ping(&self) -> Result<(), StoreError> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }

    async fn append_deliveries(&self, batch: &[NewDelivery]) -> Result<Vec<Appended>, StoreError> {
        if batch.is_empty() {
            return Ok(Vec::new());
        }
        let mut tx = self.write_tx().await?;
        let mut out = Vec::with_capacity(batch.len());
        for d in batch {
            out.push(append_one(&mut tx, d).await?);
        }
        tx.commit().await?;
        Ok(out)
    }

    async fn quarantine(&self, e: &NewQuarantine) -> Result<i64, StoreError> {
        let row = sqlx::query(
            "INSERT INTO quarantine (received_us, path_kind, content_type, remote_addr, reason, \
                 body, truncated) VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING id",
        )
        .bind(e.received_at.0)
        .bind(&e.path_kind)
        .bind(&e.content_type)
        .bind(&e.remote_addr)
        .bind(&e.reason)
        .bind(&e.body)
        .bind(i64::from(e.truncated))
        .fetch_one(&self.writer)
        .await?;
        Ok(row.try_get("id")?)
    }

    async fn quarantined(&self, id: i64) -> Result<Option<QuarantineEntry>, StoreError> {
        let sql = format!("SELECT {QUARANTINE_COLUMNS} FROM quarantine WHERE id = $1");
        let row = sqlx::query(&sql)
            .bind(id)
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(quarantine_from_row).transpose()
    }

    async fn list_quarantine(
        &self,
        status: Option<QuarantineStatus>,
        limit: i64,
    ) -> Result<Vec<QuarantineEntry>, StoreError> {
        let rows = match status {
            Some(status) => {
                let sql = format!(
                    "SELECT {QUARANTINE_COLUMNS} FROM quarantine WHERE status = $1 \
                     ORDER BY id DESC LIMIT $2"
                );
                sqlx::query(&sql)
                    .bind(status.as_str())
                    .bind(limit)
                    .fetch_all(&self.pool)
                    .await?
            }
            None => {
                let sql = format!(
                    "SELECT {QUARANTINE_COLUMNS} FROM quarantine ORDER BY id DESC LIMIT $1"
                );
                sqlx::query(&sql).bind(limit).fetch_all(&self.pool).await?
            }
        };
        rows.iter().map(quarantine_from_row).collect()
    }

    async fn admit_quarantined(
        &self,
        id: i64,
        delivery: &NewDelivery,
    ) -> Result<Appended, StoreError> {
        let mut tx = self.write_tx().await?;
        // Claim the entry first, so that two operators admitting at once cannot both append.
        let claimed = sqlx::query(
            "UPDATE quarantine SET status = 'admitted', resolved_us = $2 \
             WHERE id = $1 AND status = 'held'",
        )
        .bind(id)
        .bind(delivery.received_at.0)
        .execute(&mut *tx)
        .await?;
        if claimed.rows_affected() != 1 {
            return Err(StoreError::Conflict(format!(
                "quarantine entry {id} does not exist or is no longer held"
            )));
        }
        let appended = append_one(&mut tx, delivery).await?;
        sqlx::query("UPDATE quarantine SET event_id = $2 WHERE id = $1")
            .bind(id)
            .bind(appended.event_id)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(appended)
    }

    async fn event(&self, id: i64) -> Result<Option<Event>, StoreError> {
        let sql = format!("SELECT {EVENT_COLUMNS} FROM events WHERE id = $1");
        let row = sqlx::query(&sql)
            .bind(id)
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(event_from_row).transpose()
    }

    async fn deliveries_of(&self, event_id: i64) -> Result<Vec<Delivery>, StoreError> {
        let rows = sqlx::query(&format!(
            "SELECT {DELIVERY_COLUMNS} FROM deliveries WHERE event_id = $1 ORDER BY id"
        ))
        .bind(event_id)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(delivery_from_row).collect()
    }

    async fn first_deliveries(&self, event_ids: &[i64]) -> Result<Vec<Delivery>, StoreError> {
        let mut out = Vec::with_capacity(event_ids.len());
        for chunk in event_ids.chunks(MAX_BINDS) {
            let sql = format!(
                "SELECT {DELIVERY_COLUMNS} FROM deliveries WHERE id IN \
                     (SELECT MIN(id) FROM deliveries WHERE event_id IN ({}) GROUP BY event_id)",
                placeholders(1, chunk.len())
            );
            let mut query = sqlx::query(&sql);
            for id in chunk {
                query = query.bind(id);
            }
            for row in query.fetch_all(&self.pool).await? {
                out.push(delivery_from_row(&row)?);
            }
        }
        out.sort_by_key(|d| d.event_id);
        Ok(out)
    }

    async fn counts(&self) -> Result<LogCounts, StoreError> {
        let row = sqlx::query(
            "SELECT \
               (SELECT COUNT(*) FROM events) AS events, \
               (SELECT COUNT(*) FROM events WHERE status = 'pending') AS pending, \
               (SELECT COUNT(*) FROM events WHERE status = 'processed') AS processed, \
               (SELECT COUNT(*) FROM events WHERE status = 'failed') AS failed, \
               (SELECT COUNT(*) FROM deliveries) AS deliveries, \
               (SELECT COUNT(*) FROM quarantine WHERE status = 'held') AS quarantined_held",
        )
        .fetch_one(&self.pool)
        .await?;
        Ok(LogCounts {
            events: row.try_get("events")?,
            pending: row.try_get("pending")?,
            processed: row.try_get("processed")?,
            failed: row.try_get("failed")?,
            deliveries: row.try_get("deliveries")?,
            quarantined_held: row.try_get("quarantined_held")?,
        })
    }

    async fn lease_pending(
        &self,
        owner: &str,
        now: Micros,
        lease_until: Micros,
        limit: i64,
    ) -> Result<Vec<Event>, StoreError> {
        let lock = match self.backend {
            Backend::Postgres => "FOR UPDATE SKIP LOCKED",
            Backend::Sqlite => "",
        };
        let sql = format!(
            "UPDATE events SET lease_owner = $1, lease_until_us = $2, attempts = attempts + 1 \
             WHERE id IN (SELECT id FROM events WHERE status = 'pending' \
                 AND (lease_until_us IS NULL OR lease_until_us < $3) \
                 ORDER BY id LIMIT $4 {lock}) \
             RETURNING {EVENT_COLUMNS}"
        );
        let rows = sqlx::query(&sql)
            .bind(owner)
            .bind(lease_until.0)
            .bind(now.0)
            .bind(limit)
            .fetch_all(&self.writer)
            .await?;
        let mut events = rows
            .iter()
            .map(event_from_row)
            .collect::<Result<Vec<_>, _>>()?;
        events.sort_by_key(|e| e.id);
        Ok(events)
    }

    async fn fail_event(
        &self,
        id: i64,
        owner: &str,
        error: &str,
        permanent: bool,
    ) -> Result<bool, StoreError> {
        let status = if permanent { "failed" } else { "pending" };
        let done = sqlx::query(
            "UPDATE events SET status = $3, last_error = $4, lease_owner = NULL \
             WHERE id = $1 AND lease_owner = $2 AND status = 'pending'",
        )
        .bind(id)
        .bind(owner)
        .bind(status)
        .bind(error)
        .execute(&self.writer)
        .await?;
        Ok(done.rows_affected() == 1)
    }
}

/// Columns of a [`Delivery`] row, in the order [`delivery_from_row`] reads them.
const DELIVERY_COLUMNS: &str = "id, event_id, kind, received_us, content_type, remote_addr, \
     signature_algorithm, body";

fn delivery_from_row(row: &AnyRow) -> Result<Delivery, StoreError> {
    Ok(Delivery {
        id: row.try_get("id")?,
        event_id: row.try_get("event_id")?,
        kind: row.try_get("kind")?,
        received_at: Micros(row.try_get("received_us")?),
        content_type: row.try_get("content_type")?,
        remote_addr: row.try_get("remote_addr")?,
        signature_algorithm: row.try_get("signature_algorithm")?,
        body: row.try_get("body")?,
    })
}

/// Most values bound in one statement by the batched reads and writes (SQLite allows 32,766,
/// PostgreSQL 65,535).
pub(super) const MAX_BINDS: usize = 500;

/// `($start), ($start+1), …` — `n` one-column rows for a `VALUES` list.
pub(super) fn value_rows(start: usize, n: usize) -> String {
    (start..start + n)
        .map(|i| format!("(${i})"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// `$start, $start+1, …` — `n` numbered placeholders (both backends read `$N`).
pub(super) fn placeholders(start: usize, n: usize) -> String {
    (start..start + n)
        .map(|i| format!("${i}"))
        .collect::<Vec<_>>()
        .join(", ")
}
