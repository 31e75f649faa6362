//! The store: revsync's only durable state, behind one interface ([`Store`]) with two
//! backends — SQLite (embedded default, WAL, fsync on commit) and PostgreSQL (several revsync
//! processes sharing one database). Both run the same SQL through sqlx's `Any` driver; where
//! the dialects differ (leases, pragmas) [`Backend`] says which text to use.
//!
//! The store never speaks HTTP and knows nothing of 2Checkout's wire format: it keeps bytes,
//! fingerprints and references that the ingest stage computed.
//!
//! Timestamps are stored as microseconds since the Unix epoch ([`Micros`]) so that both
//! backends sort and compare them the same way.

pub mod queries;
pub mod scheduler;
mod sql;
mod sql_engine;
mod sql_outbox;
#[cfg(test)]
mod sql_plans;
mod sql_queries;
mod sql_scheduler;

use async_trait::async_trait;
use chrono::{DateTime, TimeZone, Utc};

use crate::intent::RecordIntent;

pub use queries::Queries;
pub use scheduler::{JobState, Scheduling};
pub use sql::SqlStore;

/// Which database the store runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// What went wrong in the store, and what the caller should do about it.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The database is unreachable, busy or failed mid-transaction. Nothing was committed;
    /// retry later (an ingest request answers 503 without a receipt, so 2Checkout resends).
    #[error("store unavailable: {0}")]
    Unavailable(#[source] sqlx::Error),
    /// The store URL or schema is wrong: fix the configuration.
    #[error("store misconfigured: {0}")]
    Config(String),
    /// A migration failed: the database schema is not what this version expects.
    #[error("store migration failed: {0}")]
    Migration(#[source] sqlx::migrate::MigrateError),
    /// The operation refers to a row that does not exist or is in the wrong state.
    #[error("{0}")]
    Conflict(String),
}

impl From<sqlx::Error> for StoreError {
    fn from(e: sqlx::Error) -> Self {
        StoreError::Unavailable(e)
    }
}

/// Microseconds since the Unix epoch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Micros(pub i64);

impl Micros {
    pub fn now() -> Micros {
        Micros::from(Utc::now())
    }
    pub fn to_datetime(self) -> DateTime<Utc> {
        Utc.timestamp_micros(self.0).single().unwrap_or_default()
    }
}

impl From<DateTime<Utc>> for Micros {
    fn from(t: DateTime<Utc>) -> Self {
        Micros(t.timestamp_micros())
    }
}

/// A verified notification delivery, about to be appended to the event log.
#[derive(Debug, Clone)]
pub struct NewDelivery {
    /// `ipn`, `lcn` or `ins`.
    pub kind: String,
    pub received_at: Micros,
    pub content_type: String,
    pub remote_addr: Option<String>,
    /// The signature algorithm that verified it (`sha3-256`, `sha256`, `md5`, `ins-md5`).
    pub signature_algorithm: String,
    /// The raw body, byte for byte as received.
    pub body: Vec<u8>,
    /// Semantic fingerprint: equal for resends of the same event.
    pub fingerprint: String,
    /// Order reference, licence code or sale id.
    pub reference: String,
    pub customer_key: Option<String>,
}

/// Where an appended delivery landed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Appended {
    pub delivery_id: i64,
    pub event_id: i64,
    /// False when the delivery is a resend of an event already in the log.
    pub new_event: bool,
}

/// Processing state of an event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventStatus {
    Pending,
    Processed,
    Failed,
}

impl EventStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            EventStatus::Pending => "pending",
            EventStatus::Processed => "processed",
            EventStatus::Failed => "failed",
        }
    }
    fn parse(s: &str) -> Result<Self, StoreError> {
        Ok(match s {
            "pending" => EventStatus::Pending,
            "processed" => EventStatus::Processed,
            "failed" => EventStatus::Failed,
            other => {
                return Err(StoreError::Config(format!(
                    "unknown event status `{other}`"
                )))
            }
        })
    }
}

/// One semantic event (all its deliveries share the fingerprint).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    pub id: i64,
    pub kind: String,
    pub fingerprint: String,
    pub reference: String,
    pub customer_key: Option<String>,
    pub status: EventStatus,
    pub delivery_count: i64,
    pub first_received_at: Micros,
    pub last_received_at: Micros,
    pub attempts: i64,
    pub processed_at: Option<Micros>,
    pub last_error: Option<String>,
}

/// One delivery as kept in the log (audit, replay).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivery {
    pub id: i64,
    pub event_id: i64,
    pub kind: String,
    pub received_at: Micros,
    pub content_type: String,
    pub remote_addr: Option<String>,
    pub signature_algorithm: String,
    pub body: Vec<u8>,
}

/// A request that failed verification, kept so that nothing is lost.
#[derive(Debug, Clone)]
pub struct NewQuarantine {
    pub received_at: Micros,
    /// The notification kind the request was posted to (whatever the path said).
    pub path_kind: String,
    pub content_type: String,
    pub remote_addr: Option<String>,
    /// One line: why it was refused.
    pub reason: String,
    pub body: Vec<u8>,
    /// True when the body was larger than the limit and only its first part is kept.
    pub truncated: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QuarantineStatus {
    Held,
    Admitted,
    Discarded,
}

impl QuarantineStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            QuarantineStatus::Held => "held",
            QuarantineStatus::Admitted => "admitted",
            QuarantineStatus::Discarded => "discarded",
        }
    }
    fn parse(s: &str) -> Result<Self, StoreError> {
        Ok(match s {
            "held" => QuarantineStatus::Held,
            "admitted" => QuarantineStatus::Admitted,
            "discarded" => QuarantineStatus::Discarded,
            other => {
                return Err(StoreError::Config(format!(
                    "unknown quarantine status `{other}`"
                )))
            }
        })
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QuarantineEntry {
    pub id: i64,
    pub received_at: Micros,
    pub path_kind: String,
    pub content_type: String,
    pub remote_addr: Option<String>,
    pub reason: String,
    pub body: Vec<u8>,
    pub truncated: bool,
    pub status: QuarantineStatus,
    pub resolved_at: Option<Micros>,
    pub event_id: Option<i64>,
}

/// Event-log totals for `status`, `/readyz` and the metrics.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LogCounts {
    pub events: i64,
    pub pending: i64,
    pub processed: i64,
    pub failed: i64,
    pub deliveries: i64,
    pub quarantined_held: i64,
}

/// The event log: deliveries, events, quarantine, and the leases of event processing.
/// Every method is one transaction: it either commits entirely (and returns `Ok`) or changes
/// nothing.
#[async_trait]
pub trait EventLog: Send + Sync + 'static {
    fn backend(&self) -> Backend;

    /// A cheap round trip, for `/readyz`.
    async fn ping(&self) -> Result<(), StoreError>;

    /// Appends deliveries in ONE transaction (group commit) and returns, in order, where each
    /// landed. `Ok` means the whole batch is durable.
    async fn append_deliveries(&self, batch: &[NewDelivery]) -> Result<Vec<Appended>, StoreError>;

    async fn quarantine(&self, entry: &NewQuarantine) -> Result<i64, StoreError>;
    async fn quarantined(&self, id: i64) -> Result<Option<QuarantineEntry>, StoreError>;
    async fn list_quarantine(
        &self,
        status: Option<QuarantineStatus>,
        limit: i64,
    ) -> Result<Vec<QuarantineEntry>, StoreError>;
    /// Appends a re-verified quarantined request to the event log and marks it admitted,
    /// atomically. Fails with `Conflict` unless the entry is `held`.
    async fn admit_quarantined(
        &self,
        id: i64,
        delivery: &NewDelivery,
    ) -> Result<Appended, StoreError>;

    async fn event(&self, id: i64) -> Result<Option<Event>, StoreError>;
    async fn deliveries_of(&self, event_id: i64) -> Result<Vec<Delivery>, StoreError>;
    /// The first delivery of each of `event_ids` (one read for a batch), ordered by event id.
    async fn first_deliveries(&self, event_ids: &[i64]) -> Result<Vec<Delivery>, StoreError>;
    async fn counts(&self) -> Result<LogCounts, StoreError>;

    /// Leases up to `limit` pending events (oldest first) to `owner` until `lease_until`.
    /// An event whose lease expired (its processor died) is leased again. With several
    /// processes on one PostgreSQL, no event is leased to two owners at once.
    async fn lease_pending(
        &self,
        owner: &str,
        now: Micros,
        lease_until: Micros,
        limit: i64,
    ) -> Result<Vec<Event>, StoreError>;
    /// Records a processing failure: the event goes back to pending (to retry after the lease)
    /// or, when `permanent`, to failed.
    async fn fail_event(
        &self,
        id: i64,
        owner: &str,
        error: &str,
        permanent: bool,
    ) -> Result<bool, StoreError>;
}

/// The engine's state: ledger records, and the commit that makes an event's effects durable
/// together with the event's completion.
#[async_trait]
pub trait Engine: Send + Sync + 'static {
    /// Loads ledger records by `(kind, key)`; missing ones are simply absent.
    async fn ledger_records(
        &self,
        keys: &[(String, String)],
    ) -> Result<Vec<LedgerRecord>, StoreError>;
    /// Every ledger record of one kind (rollups, reconciliation), ordered by key.
    async fn ledger_records_of_kind(&self, kind: &str) -> Result<Vec<LedgerRecord>, StoreError>;

    /// In ONE transaction, for every `(event id, effects)` of `batch` in order: marks the
    /// event processed, writes its ledger records (each checked against the version it was
    /// read at) and enqueues its intents into the outbox (merging into pending intents for the
    /// same record). Returns, per event, whether it was committed: `false` when `owner` no
    /// longer holds its lease (none of its effects written; the others still are).
    /// `Err(Conflict)` when a record changed since it was read: nothing of the batch is
    /// written (read again and retry).
    async fn commit_events(
        &self,
        owner: &str,
        batch: &[(i64, Effects)],
        now: Micros,
    ) -> Result<Vec<bool>, StoreError>;

    /// [`Engine::commit_events`] for one event: `Ok(false)` when the lease was lost.
    async fn commit_event(
        &self,
        event_id: i64,
        owner: &str,
        effects: &Effects,
        now: Micros,
    ) -> Result<bool, StoreError> {
        let batch = [(event_id, effects.clone())];
        Ok(self.commit_events(owner, &batch, now).await?[0])
    }

    /// Enqueues intents that come from no event (rollups, backfills, replays).
    async fn enqueue(&self, intents: &[RecordIntent], now: Micros) -> Result<(), StoreError>;

    /// In ONE transaction: writes ledger records (version-checked like [`Engine::commit_event`])
    /// and enqueues intents, for effects that come from no event (backfill). `Err(Conflict)`
    /// when a record changed since it was read (nothing written; read again and retry).
    async fn commit_records(&self, effects: &Effects, now: Micros) -> Result<(), StoreError>;

    /// Leases whole partitions of due pending intents (at most `max_partitions`, most urgent
    /// priority first, oldest first) to `owner`: they become in flight. A partition that
    /// already has intents in flight is skipped, so one customer's writes stay in order;
    /// so is one whose most urgent intent is less urgent than `max_priority` (the budget).
    /// In-flight intents whose lease ran out (their sink died) become pending again first.
    async fn lease_outbox(
        &self,
        owner: &str,
        now: Micros,
        lease_until: Micros,
        max_partitions: i64,
        max_priority: crate::intent::Priority,
    ) -> Result<Vec<OutboxItem>, StoreError>;
    /// Records, in one transaction, what the sink learned about leased intents: written
    /// (with the sync log), to retry later (merged under any newer pending intent for the
    /// same record), or dead (with a dead letter).
    async fn settle_outbox(
        &self,
        settlements: &[Settlement],
        now: Micros,
    ) -> Result<(), StoreError>;
    async fn outbox_stats(&self) -> Result<OutboxStats, StoreError>;
    /// Pending intents, counted up to `up_to`, and when the oldest became due: what the sink
    /// polls, at a cost that does not grow with the backlog (unlike [`Engine::outbox_stats`]).
    ///
    /// In-flight intents whose lease ran out before `now` count as pending: only a lease
    /// takes them back, so a sink that saw nothing else waiting would never lease again.
    async fn outbox_pending(
        &self,
        up_to: i64,
        now: Micros,
    ) -> Result<(i64, Option<Micros>), StoreError>;
    /// What an event did in Salesforce.
    async fn sync_log(&self, event_id: i64) -> Result<Vec<SyncLogEntry>, StoreError>;
    /// Records written per sObject: `(sobject, created, updated)`, each write counted once.
    async fn write_totals(&self) -> Result<Vec<(String, i64, i64)>, StoreError>;
    async fn dead_letters(
        &self,
        status: Option<DeadLetterStatus>,
        limit: i64,
    ) -> Result<Vec<DeadLetter>, StoreError>;
    /// Puts a dead letter's intent back into the outbox and marks it replayed. Fails with
    /// `Conflict` unless it is open.
    async fn replay_dead_letter(&self, id: i64, now: Micros) -> Result<(), StoreError>;

    /// The identity map: which Salesforce records a 2Checkout customer is.
    async fn identities(&self, customer_keys: &[String]) -> Result<Vec<Identity>, StoreError>;
    /// Saves what is known of customers' records, in one transaction. A plain write
    /// (`created`, `upserted`) never replaces how an existing identity was established
    /// (matched, shared, …), and known ids are never erased by unknown ones.
    async fn save_identities(&self, identities: &[Identity], now: Micros)
        -> Result<(), StoreError>;
    /// Identities that already point at any of these Salesforce record ids (Account or
    /// Contact): the record is claimed by that customer.
    async fn identities_claiming(&self, record_ids: &[String])
        -> Result<Vec<Identity>, StoreError>;
    /// Customers whose identity was established a given way (e.g. `review`: held for an
    /// operator).
    async fn identities_by_source(&self, source: &str) -> Result<Vec<Identity>, StoreError>;
    /// Makes every pending intent of a partition due now (after an operator decision).
    async fn release_partition(&self, partition: &str, now: Micros) -> Result<u64, StoreError>;

    /// API calls revsync made (all processes), counted per hour, and the org's usage as
    /// Salesforce last reported it.
    async fn record_api_calls(
        &self,
        calls: i64,
        org_usage: Option<(i64, i64)>,
        now: Micros,
    ) -> Result<(), StoreError>;
    async fn api_budget(&self, now: Micros) -> Result<ApiBudgetState, StoreError>;
}

/// The one store interface: every backend implements all of it, and one conformance suite
/// checks every backend.
pub trait Store: EventLog + Engine + Queries + Scheduling {}
impl<T: EventLog + Engine + Queries + Scheduling> Store for T {}

/// A leased outbox row.
#[derive(Debug, Clone, PartialEq)]
pub struct OutboxItem {
    pub id: i64,
    pub intent: RecordIntent,
    pub event_ids: Vec<i64>,
    /// Attempts made before this one.
    pub attempts: i64,
    /// When it became due (enqueued, or its retry time).
    pub due: Micros,
}

/// What became of one leased outbox row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Settlement {
    Written {
        id: i64,
        sf_id: Option<String>,
        created: Option<bool>,
    },
    Retry {
        id: i64,
        not_before: Micros,
        error: String,
    },
    Dead {
        id: i64,
        code: String,
        message: String,
    },
    /// Not sent (the budget ran out mid-round): back to pending as it was.
    Release { id: i64 },
}

impl Settlement {
    /// The outbox item it settles.
    pub fn id(&self) -> i64 {
        match self {
            Settlement::Written { id, .. }
            | Settlement::Retry { id, .. }
            | Settlement::Dead { id, .. }
            | Settlement::Release { id } => *id,
        }
    }
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct OutboxStats {
    pub pending: i64,
    pub in_flight: i64,
    pub written: i64,
    pub dead_letters_open: i64,
    /// When the oldest pending intent became due.
    pub oldest_due: Option<Micros>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyncLogEntry {
    pub event_id: i64,
    pub sobject: String,
    pub record_key: String,
    pub sf_id: Option<String>,
    pub created: Option<bool>,
    /// `written` or `failed`.
    pub outcome: String,
    pub message: Option<String>,
    pub at: Micros,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeadLetterStatus {
    Open,
    Replayed,
}

impl DeadLetterStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            DeadLetterStatus::Open => "open",
            DeadLetterStatus::Replayed => "replayed",
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct DeadLetter {
    pub id: i64,
    pub intent: RecordIntent,
    pub event_ids: Vec<i64>,
    pub error_code: String,
    pub message: String,
    pub status: DeadLetterStatus,
    pub created_at: Micros,
}

/// A customer's Salesforce records.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    pub customer_key: String,
    pub account_id: Option<String>,
    pub contact_id: Option<String>,
    /// How it was established: `created`, `matched`, `duplicate_rule`, `operator`.
    pub source: String,
}

/// API usage as far as the governor can see it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ApiBudgetState {
    /// Calls revsync made in the last 24 hours (every process).
    pub revsync_calls_24h: i64,
    /// The org's usage and allocation as last reported by Salesforce.
    pub org_used: Option<i64>,
    pub org_max: Option<i64>,
    pub observed_at: Option<Micros>,
}

/// A ledger entity as stored: a JSON document with an optimistic version.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LedgerRecord {
    pub kind: String,
    pub key: String,
    pub customer_key: Option<String>,
    pub body: String,
    pub version: i64,
}

/// A ledger write, checked against the version the record was read at (`None`: it must not
/// exist yet).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordWrite {
    pub kind: String,
    pub key: String,
    pub customer_key: Option<String>,
    pub body: String,
    pub expected_version: Option<i64>,
}

/// What processing one event changes: ledger records and record intents.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Effects {
    pub records: Vec<RecordWrite>,
    pub intents: Vec<RecordIntent>,
}

/// Opens (and migrates) the store named by `url`.
pub async fn open(url: &str, options: &OpenOptions) -> Result<SqlStore, StoreError> {
    SqlStore::open(url, options).await
}

/// Store tuning that does not belong in the URL.
#[derive(Debug, Clone)]
pub struct OpenOptions {
    pub sqlite_synchronous: crate::config::SqliteSync,
    pub max_connections: u32,
    /// How long to wait for a connection before reporting the store unavailable.
    pub acquire_timeout: std::time::Duration,
}

impl Default for OpenOptions {
    fn default() -> Self {
        OpenOptions {
            sqlite_synchronous: crate::config::SqliteSync::Full,
            max_connections: 8,
            acquire_timeout: std::time::Duration::from_secs(10),
        }
    }
}
