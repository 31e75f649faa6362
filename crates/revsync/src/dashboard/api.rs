//! The dashboard's JSON API under `/api/v1/`. Errors are `{"error": "..."}` with a fitting
//! status: 400 for bad parameters, 404 for unknown ids (also ids that are not numbers), 409
//! for a replay of a dead letter that is not open, 503 when the store is unavailable.
//! Times are RFC 3339 strings in UTC with milliseconds.

use std::collections::{BTreeMap, BTreeSet};

use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use chrono::SecondsFormat;
use serde::{Deserialize, Serialize};

use super::DashboardState;
use crate::intent::RecordKey;
use crate::store::queries::{DeliverySummary, Throughput};
use crate::store::{
    ApiBudgetState, DeadLetter, DeadLetterStatus, Event, LogCounts, Micros, OutboxStats,
    StoreError, SyncLogEntry,
};

/// Ledger record kind of customers (as the pipeline stores them).
const CUSTOMER_KIND: &str = "customer";

const DEFAULT_LIMIT: i64 = 50;
const MAX_LIMIT: i64 = 200;
/// Longest accepted search text.
const MAX_QUERY_CHARS: usize = 200;

/// `{"error": message}` with `status`, not cached.
pub(crate) fn json_error(status: StatusCode, message: &str) -> Response {
    (
        status,
        [(header::CACHE_CONTROL, "no-store")],
        Json(serde_json::json!({ "error": message })),
    )
        .into_response()
}

/// What an API request can fail with.
#[derive(Debug)]
pub(crate) enum ApiError {
    BadRequest(String),
    NotFound(String),
    Conflict(String),
    Store(StoreError),
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        ApiError::Store(e)
    }
}

impl From<QueryRejection> for ApiError {
    fn from(e: QueryRejection) -> Self {
        ApiError::BadRequest(e.body_text())
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        match self {
            ApiError::BadRequest(m) => json_error(StatusCode::BAD_REQUEST, &m),
            ApiError::NotFound(m) => json_error(StatusCode::NOT_FOUND, &m),
            ApiError::Conflict(m) => json_error(StatusCode::CONFLICT, &m),
            ApiError::Store(StoreError::Unavailable(e)) => {
                tracing::warn!(error = %e, "dashboard: store unavailable");
                json_error(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "the store is unavailable; retry shortly",
                )
            }
            ApiError::Store(e) => {
                tracing::error!(error = %e, "dashboard: store error");
                json_error(StatusCode::INTERNAL_SERVER_ERROR, &e.to_string())
            }
        }
    }
}

type ApiResult = Result<Response, ApiError>;

fn ok<T: Serialize>(value: T) -> ApiResult {
    Ok((
        StatusCode::OK,
        [(header::CACHE_CONTROL, "no-store")],
        Json(value),
    )
        .into_response())
}

fn time(t: Micros) -> String {
    t.to_datetime().to_rfc3339_opts(SecondsFormat::Millis, true)
}

/// An id from the path; anything that is not a positive number names nothing.
fn parse_id(raw: &str, what: &str) -> Result<i64, ApiError> {
    raw.parse::<i64>()
        .ok()
        .filter(|id| *id > 0)
        .ok_or_else(|| ApiError::NotFound(format!("no {what} with id `{}`", short(raw))))
}

fn short(s: &str) -> String {
    s.chars().take(40).collect()
}

fn limit(raw: Option<i64>) -> Result<i64, ApiError> {
    match raw {
        None => Ok(DEFAULT_LIMIT),
        Some(n) if (1..=MAX_LIMIT).contains(&n) => Ok(n),
        Some(n) => Err(ApiError::BadRequest(format!(
            "limit must be between 1 and {MAX_LIMIT}, not {n}"
        ))),
    }
}

/// Salesforce ids are 15 or 18 alphanumeric characters.
fn is_salesforce_id(id: &str) -> bool {
    matches!(id.len(), 15 | 18) && id.bytes().all(|b| b.is_ascii_alphanumeric())
}

#[derive(Debug, Clone, Serialize)]
pub(crate) struct CustomerJson {
    name: Option<String>,
    email: Option<String>,
    company: Option<String>,
}

/// The parts of a ledger customer record the dashboard shows; other fields are ignored.
#[derive(Debug, Deserialize)]
struct CustomerFields {
    first_name: Option<String>,
    last_name: Option<String>,
    company: Option<String>,
    email: Option<String>,
}

#[derive(Debug, Serialize)]
pub(crate) struct RecordJson {
    sobject: String,
    /// The external-id field, or `Id` when addressed by Salesforce id.
    key_field: String,
    key: String,
    sf_id: Option<String>,
    created: Option<bool>,
    /// `written` or `failed`.
    outcome: String,
    message: Option<String>,
    at: String,
    /// `{instance_url}/{sf_id}` for a real org.
    url: Option<String>,
}

#[derive(Debug, Serialize)]
pub(crate) struct EventJson {
    id: i64,
    kind: String,
    reference: String,
    customer_key: Option<String>,
    customer: Option<CustomerJson>,
    status: &'static str,
    delivery_count: i64,
    attempts: i64,
    first_received_at: String,
    last_received_at: String,
    processed_at: Option<String>,
    /// From the first delivery to completion.
    latency_ms: Option<i64>,
    last_error: Option<String>,
    records: Vec<RecordJson>,
}

fn key_parts(key: &RecordKey) -> (String, String) {
    match key {
        RecordKey::ExternalId { field, value } => (field.clone(), value.clone()),
        RecordKey::Id { id } => ("Id".to_owned(), id.clone()),
    }
}

fn record_json(state: &DashboardState, entry: SyncLogEntry) -> RecordJson {
    let (key_field, key) = match serde_json::from_str::<RecordKey>(&entry.record_key) {
        Ok(k) => key_parts(&k),
        Err(_) => (String::new(), entry.record_key.clone()),
    };
    let url = match (&state.record_link_base, &entry.sf_id) {
        (Some(base), Some(id)) if is_salesforce_id(id) => Some(format!("{base}/{id}")),
        _ => None,
    };
    RecordJson {
        sobject: entry.sobject,
        key_field,
        key,
        sf_id: entry.sf_id,
        created: entry.created,
        outcome: entry.outcome,
        message: entry.message,
        at: time(entry.at),
        url,
    }
}

/// Events as the page shows them: with customer names and the records each touched.
async fn events_json(
    state: &DashboardState,
    events: Vec<Event>,
) -> Result<Vec<EventJson>, ApiError> {
    let ids: Vec<i64> = events.iter().map(|e| e.id).collect();
    let mut records: BTreeMap<i64, Vec<RecordJson>> = BTreeMap::new();
    for entry in state.store.sync_logs(&ids).await? {
        records
            .entry(entry.event_id)
            .or_default()
            .push(record_json(state, entry));
    }
    let keys: BTreeSet<String> = events
        .iter()
        .filter_map(|e| e.customer_key.clone())
        .collect();
    let lookups: Vec<(String, String)> = keys
        .into_iter()
        .map(|k| (CUSTOMER_KIND.to_owned(), k))
        .collect();
    let mut customers = BTreeMap::new();
    for record in state.store.ledger_records(&lookups).await? {
        // A record the dashboard cannot read is shown without a name, not as an error.
        if let Ok(c) = serde_json::from_str::<CustomerFields>(&record.body) {
            let name = [c.first_name, c.last_name]
                .into_iter()
                .flatten()
                .filter(|p| !p.trim().is_empty())
                .collect::<Vec<_>>()
                .join(" ");
            customers.insert(
                record.key,
                CustomerJson {
                    name: (!name.is_empty()).then_some(name),
                    email: c.email,
                    company: c.company,
                },
            );
        }
    }
    Ok(events
        .into_iter()
        .map(|e| EventJson {
            customer: e
                .customer_key
                .as_ref()
                .and_then(|k| customers.get(k).cloned()),
            records: records.remove(&e.id).unwrap_or_default(),
            id: e.id,
            kind: e.kind,
            reference: e.reference,
            customer_key: e.customer_key,
            status: e.status.as_str(),
            delivery_count: e.delivery_count,
            attempts: e.attempts,
            first_received_at: time(e.first_received_at),
            last_received_at: time(e.last_received_at),
            processed_at: e.processed_at.map(time),
            latency_ms: e
                .processed_at
                .map(|p| (p.0 - e.first_received_at.0).max(0) / 1000),
            last_error: e.last_error,
        })
        .collect())
}

#[derive(Debug, Deserialize)]
pub(crate) struct EventsParams {
    limit: Option<i64>,
    before: Option<i64>,
}

/// `GET /api/v1/events?limit&before`: newest first; `next_before` pages on.
pub(crate) async fn events(
    State(state): State<DashboardState>,
    params: Result<Query<EventsParams>, QueryRejection>,
) -> ApiResult {
    let Query(params) = params?;
    let limit = limit(params.limit)?;
    let events = state.store.recent_events(params.before, limit).await?;
    let next_before = (events.len() as i64 == limit)
        .then(|| events.last().map(|e| e.id))
        .flatten();
    let events = events_json(&state, events).await?;
    ok(serde_json::json!({ "events": events, "next_before": next_before }))
}

#[derive(Debug, Serialize)]
struct DeliveryJson {
    id: i64,
    kind: String,
    received_at: String,
    content_type: String,
    remote_addr: Option<String>,
    signature_algorithm: String,
    body_bytes: i64,
}

impl From<DeliverySummary> for DeliveryJson {
    fn from(d: DeliverySummary) -> Self {
        DeliveryJson {
            id: d.id,
            kind: d.kind,
            received_at: time(d.received_at),
            content_type: d.content_type,
            remote_addr: d.remote_addr,
            signature_algorithm: d.signature_algorithm,
            body_bytes: d.body_bytes,
        }
    }
}

/// `GET /api/v1/events/{id}`: the event, its deliveries (no bodies) and its sync log.
pub(crate) async fn event(
    State(state): State<DashboardState>,
    Path(raw): Path<String>,
) -> ApiResult {
    let id = parse_id(&raw, "event")?;
    let event = state
        .store
        .event(id)
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("no event with id {id}")))?;
    let deliveries: Vec<DeliveryJson> = state
        .store
        .delivery_summaries(id)
        .await?
        .into_iter()
        .map(DeliveryJson::from)
        .collect();
    let mut events = events_json(&state, vec![event]).await?;
    let mut event = events.pop().expect("one event in, one out");
    let sync_log = std::mem::take(&mut event.records);
    // The records travel as `sync_log` here, not twice.
    let mut event = serde_json::to_value(event).expect("events serialize");
    if let Some(map) = event.as_object_mut() {
        map.remove("records");
    }
    ok(serde_json::json!({ "event": event, "deliveries": deliveries, "sync_log": sync_log }))
}

#[derive(Debug, Deserialize)]
pub(crate) struct SearchParams {
    q: Option<String>,
    limit: Option<i64>,
}

/// `GET /api/v1/search?q=`: by order or subscription reference, customer key or e-mail.
pub(crate) async fn search(
    State(state): State<DashboardState>,
    params: Result<Query<SearchParams>, QueryRejection>,
) -> ApiResult {
    let Query(params) = params?;
    let q = params.q.unwrap_or_default();
    let q = q.trim();
    if q.is_empty() {
        return Err(ApiError::BadRequest(
            "q is required: an e-mail, customer key, order or subscription reference".into(),
        ));
    }
    if q.chars().count() > MAX_QUERY_CHARS {
        return Err(ApiError::BadRequest(format!(
            "q is longer than {MAX_QUERY_CHARS} characters"
        )));
    }
    let limit = limit(params.limit)?;
    let events = state.store.search_events(q, limit).await?;
    let events = events_json(&state, events).await?;
    ok(serde_json::json!({ "query": q, "events": events }))
}

#[derive(Debug, Serialize)]
struct DeadLetterJson {
    id: i64,
    sobject: String,
    key_field: String,
    key: String,
    fields: BTreeMap<String, serde_json::Value>,
    event_ids: Vec<i64>,
    error_code: String,
    /// Salesforce's message.
    message: String,
    status: &'static str,
    created_at: String,
}

impl From<DeadLetter> for DeadLetterJson {
    fn from(d: DeadLetter) -> Self {
        let (key_field, key) = key_parts(&d.intent.key);
        DeadLetterJson {
            id: d.id,
            sobject: d.intent.sobject,
            key_field,
            key,
            fields: d.intent.fields,
            event_ids: d.event_ids,
            error_code: d.error_code,
            message: d.message,
            status: d.status.as_str(),
            created_at: time(d.created_at),
        }
    }
}

#[derive(Debug, Deserialize)]
pub(crate) struct DeadLetterParams {
    status: Option<String>,
    limit: Option<i64>,
}

/// `GET /api/v1/dead-letters?status=open|replayed|all&limit` (default: open).
pub(crate) async fn dead_letters(
    State(state): State<DashboardState>,
    params: Result<Query<DeadLetterParams>, QueryRejection>,
) -> ApiResult {
    let Query(params) = params?;
    let status = match params.status.as_deref().unwrap_or("open") {
        "open" => Some(DeadLetterStatus::Open),
        "replayed" => Some(DeadLetterStatus::Replayed),
        "all" => None,
        other => {
            return Err(ApiError::BadRequest(format!(
                "status must be open, replayed or all, not `{}`",
                short(other)
            )))
        }
    };
    let limit = limit(params.limit)?;
    let letters: Vec<DeadLetterJson> = state
        .store
        .dead_letters(status, limit)
        .await?
        .into_iter()
        .map(DeadLetterJson::from)
        .collect();
    ok(serde_json::json!({ "dead_letters": letters }))
}

/// `POST /api/v1/dead-letters/{id}/replay`: 200 once, 409 when it is no longer open.
pub(crate) async fn replay(
    State(state): State<DashboardState>,
    Path(raw): Path<String>,
) -> ApiResult {
    let id = parse_id(&raw, "dead letter")?;
    let letter = state
        .store
        .dead_letter(id)
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("no dead letter with id {id}")))?;
    if letter.status != DeadLetterStatus::Open {
        return Err(ApiError::Conflict(format!(
            "dead letter {id} was already replayed"
        )));
    }
    match state.store.replay_dead_letter(id, Micros::now()).await {
        Ok(()) => {}
        // Someone replayed it between the read and now.
        Err(StoreError::Conflict(m)) => return Err(ApiError::Conflict(m)),
        Err(e) => return Err(e.into()),
    }
    tracing::info!(
        dead_letter_id = id,
        sobject = %letter.intent.sobject,
        "dead letter replayed from the dashboard"
    );
    ok(serde_json::json!({ "id": id, "status": DeadLetterStatus::Replayed.as_str() }))
}

#[derive(Debug, Serialize)]
struct BudgetJson {
    /// Calls revsync made in the last 24 hours (every process).
    revsync_calls_24h: i64,
    org_used: Option<i64>,
    org_max: Option<i64>,
    org_remaining: Option<i64>,
    /// `org_used / org_max`.
    org_used_share: Option<f64>,
    /// revsync's part of the org's usage: `revsync_calls_24h / org_used`, at most 1. Both
    /// cover roughly a day, but Salesforce's window is its own, so this is an estimate.
    revsync_share: Option<f64>,
    observed_at: Option<String>,
}

impl From<ApiBudgetState> for BudgetJson {
    fn from(b: ApiBudgetState) -> Self {
        BudgetJson {
            revsync_calls_24h: b.revsync_calls_24h,
            org_used: b.org_used,
            org_max: b.org_max,
            org_remaining: b.org_used.zip(b.org_max).map(|(u, m)| (m - u).max(0)),
            org_used_share: b
                .org_used
                .zip(b.org_max.filter(|m| *m > 0))
                .map(|(u, m)| u as f64 / m as f64),
            revsync_share: b
                .org_used
                .filter(|u| *u > 0)
                .map(|u| (b.revsync_calls_24h as f64 / u as f64).min(1.0)),
            observed_at: b.observed_at.map(time),
        }
    }
}

/// `GET /api/v1/budget`.
pub(crate) async fn budget(State(state): State<DashboardState>) -> ApiResult {
    let budget = state.store.api_budget(Micros::now()).await?;
    ok(BudgetJson::from(budget))
}

#[derive(Debug, Serialize)]
struct CountsJson {
    events: i64,
    pending: i64,
    processed: i64,
    failed: i64,
    deliveries: i64,
    quarantined_held: i64,
}

impl From<LogCounts> for CountsJson {
    fn from(c: LogCounts) -> Self {
        CountsJson {
            events: c.events,
            pending: c.pending,
            processed: c.processed,
            failed: c.failed,
            deliveries: c.deliveries,
            quarantined_held: c.quarantined_held,
        }
    }
}

#[derive(Debug, Serialize)]
struct OutboxJson {
    pending: i64,
    in_flight: i64,
    written: i64,
    dead_letters_open: i64,
    oldest_due: Option<String>,
}

impl From<OutboxStats> for OutboxJson {
    fn from(s: OutboxStats) -> Self {
        OutboxJson {
            pending: s.pending,
            in_flight: s.in_flight,
            written: s.written,
            dead_letters_open: s.dead_letters_open,
            oldest_due: s.oldest_due.map(time),
        }
    }
}

#[derive(Debug, Serialize)]
struct FlowJson {
    kind: String,
    processed_last_minute: i64,
    processed_last_hour: i64,
    latency_avg_ms: Option<f64>,
    latency_max_ms: Option<f64>,
}

#[derive(Debug, Serialize)]
struct ThroughputJson {
    flows: Vec<FlowJson>,
    outbox_written_last_minute: i64,
    outbox_written_last_hour: i64,
    dead_letters_last_hour: i64,
}

impl From<Throughput> for ThroughputJson {
    fn from(t: Throughput) -> Self {
        ThroughputJson {
            flows: t
                .flows
                .into_iter()
                .map(|f| FlowJson {
                    kind: f.kind,
                    processed_last_minute: f.processed_last_minute,
                    processed_last_hour: f.processed_last_hour,
                    latency_avg_ms: f.latency_avg_us.map(|us| us as f64 / 1000.0),
                    latency_max_ms: f.latency_max_us.map(|us| us as f64 / 1000.0),
                })
                .collect(),
            outbox_written_last_minute: t.outbox_written_last_minute,
            outbox_written_last_hour: t.outbox_written_last_hour,
            dead_letters_last_hour: t.dead_letters_last_hour,
        }
    }
}

/// `GET /api/v1/stats`: event-log counts, outbox state and throughput.
pub(crate) async fn stats(State(state): State<DashboardState>) -> ApiResult {
    let now = Micros::now();
    let counts = state.store.counts().await?;
    let outbox = state.store.outbox_stats().await?;
    let throughput = state.store.throughput(now).await?;
    ok(serde_json::json!({
        "generated_at": time(now),
        "events": CountsJson::from(counts),
        "outbox": OutboxJson::from(outbox),
        "throughput": ThroughputJson::from(throughput),
    }))
}

/// Any other path under `/api/v1/`.
pub(crate) async fn not_found() -> Response {
    json_error(StatusCode::NOT_FOUND, "no such API endpoint")
}
