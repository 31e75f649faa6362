//! The sink: turns the outbox's record intents into as few Salesforce calls as physics
//! allows, and never loses or duplicates a write.
//!
//! A round: ask the [`governor`] what the budget allows → lease whole partitions of due
//! intents → [`plan`] them into Composite Graph / Collections / Bulk requests → send →
//! inspect every item of every response (Salesforce answers 200 with per-item failures) →
//! settle each intent in the store: written (with the sync log and the identity map),
//! retried later with capped exponential backoff and jitter, or dead-lettered with
//! Salesforce's message. Every write is an upsert on an external id or an update by a known
//! id, so replaying a round after a crash or a timed-out request changes nothing.
//!
//! The sink never writes SQL (it calls the store) and knows nothing of 2Checkout.

pub mod governor;
mod identity;
pub mod plan;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use rand::Rng;
use salesforce::bulk::{IngestJobRequest, PollPolicy};
use salesforce::composite::{Graph, GraphNode};
use salesforce::{ApiError, Client, ErrorClass, SalesforceError};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use tokio_util::sync::CancellationToken;

use crate::intent::RecordKey;
use crate::store::{Identity, Micros, OutboxItem, Settlement, Store, StoreError};
use governor::{BudgetConfig, Verdict};
use plan::{PlanLimits, Request};

/// Sink settings (`[sink]` in the config).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct SinkConfig {
    /// Longest a due intent waits for company before a request goes out.
    pub linger_ms: u64,
    /// How long a round's intents stay leased (a crashed sink's work is retaken after it).
    pub lease_secs: u64,
    /// Most customers (partitions) per round.
    pub max_partitions_per_round: i64,
    /// Requests of one round sent at once.
    pub concurrency: usize,
    /// First retry delay; doubles per attempt, with jitter, up to `backoff_cap_secs`.
    pub backoff_base_ms: u64,
    pub backoff_cap_secs: u64,
    /// A `DUPLICATE_VALUE` race on a new external id is retried (as an update) this often.
    pub duplicate_race_retries: i64,
    /// Single-object streams of at least this many records go through Bulk API 2.0.
    pub bulk_threshold: usize,
    /// External-id field of Account and Contact (the identity map learns from it).
    pub customer_external_id: String,
    /// Look for a new customer in Salesforce before creating them (DESIGN §5).
    pub matching_enabled: bool,
    /// Also match new customers' company domains against Account `Website` (one more query
    /// per round with new customers; Contacts' e-mail domains are always used).
    pub matching_account_websites: bool,
    pub matching: crate::matching::MatchThresholds,
    pub budget: BudgetConfig,
}

impl Default for SinkConfig {
    fn default() -> Self {
        SinkConfig {
            linger_ms: 1_000,
            lease_secs: 120,
            max_partitions_per_round: 2_000,
            concurrency: 4,
            backoff_base_ms: 500,
            backoff_cap_secs: 300,
            duplicate_race_retries: 1,
            bulk_threshold: 2_000,
            customer_external_id: "TwoCheckout_Customer_Ref__c".into(),
            matching_enabled: true,
            matching_account_websites: false,
            matching: crate::matching::MatchThresholds::default(),
            budget: BudgetConfig::default(),
        }
    }
}

/// Why a round could not run. The run loop logs it and tries again; nothing is lost.
#[derive(Debug, thiserror::Error)]
pub enum SinkError {
    #[error("store: {0}")]
    Store(#[from] StoreError),
}

/// What one round did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RoundReport {
    pub items: usize,
    pub requests: usize,
    pub api_calls: i64,
    pub written: usize,
    pub retried: usize,
    pub dead: usize,
    /// Set when the governor paused the round: why.
    pub paused: Option<String>,
    /// A request failed as a whole for a reason that is Salesforce's (network, 5xx, session)
    /// and nothing was written: Salesforce looks unreachable.
    pub unreachable: bool,
}

/// The sink. Cheap to share; one per process is enough.
pub struct Sink {
    store: Arc<dyn Store>,
    client: Client,
    config: SinkConfig,
    owner: String,
    limits: PlanLimits,
}

/// The outcome of one request, before it is settled.
#[derive(Default)]
struct Outcome {
    settlements: Vec<Settlement>,
    identities: Vec<Identity>,
    api_calls: i64,
    limit_hit: bool,
    /// A whole request failed transiently (network, 5xx, session).
    unreachable: bool,
}

impl Sink {
    pub fn new(store: Arc<dyn Store>, client: Client, config: SinkConfig, owner: String) -> Sink {
        let limits = PlanLimits {
            bulk_threshold: config.bulk_threshold,
            ..PlanLimits::default()
        };
        Sink {
            store,
            client,
            config,
            owner,
            limits,
        }
    }

    /// Runs rounds until `shutdown` is cancelled, lingering at low traffic so that one call
    /// carries as many intents as arrive within the linger window.
    ///
    /// While Salesforce is unreachable (whole requests fail: network, 5xx, sessions) the sink
    /// stops leasing work: it backs off (the configured base doubling up to the cap) and then
    /// probes with one request's worth of customers, so an outage costs neither Salesforce
    /// calls nor store writes for every intent, however large the backlog grows.
    pub async fn run(self, shutdown: CancellationToken) {
        let linger = Duration::from_millis(self.config.linger_ms);
        let poll = Duration::from_millis(20).min(linger.max(Duration::from_millis(1)));
        let probe = self.limits.graphs_per_request as i64;
        let mut failed_rounds: i64 = 0;
        while !shutdown.is_cancelled() {
            // Several full requests' worth waiting: no reason to wait longer.
            let full_at = 4 * self.limits.nodes_per_request as i64;
            let wait = match self.store.outbox_pending(full_at, Micros::now()).await {
                Ok((0, _)) => poll,
                Ok((pending, oldest_due)) => {
                    let age = oldest_due
                        .map(|due| Duration::from_micros((Micros::now().0 - due.0).max(0) as u64))
                        .unwrap_or_default();
                    let full = pending >= full_at;
                    if full || age >= linger {
                        let partitions = if failed_rounds > 0 {
                            probe
                        } else {
                            self.config.max_partitions_per_round
                        };
                        match self.round(false, partitions).await {
                            Ok(report) if report.unreachable => {
                                failed_rounds += 1;
                                let pause = self.outage_pause(failed_rounds);
                                if failed_rounds == 1 {
                                    tracing::warn!(?pause, "Salesforce unreachable: writes wait, probing with one request");
                                }
                                metrics::gauge!("revsync_salesforce_unreachable").set(1.0);
                                pause
                            }
                            Ok(report) => {
                                if failed_rounds > 0 && report.items > 0 {
                                    tracing::info!(
                                        failed_rounds,
                                        "Salesforce reachable again: writes resume"
                                    );
                                    failed_rounds = 0;
                                    metrics::gauge!("revsync_salesforce_unreachable").set(0.0);
                                }
                                match report.paused {
                                    Some(reason) => {
                                        tracing::warn!(%reason, "API budget: writes paused");
                                        Duration::from_secs(30)
                                    }
                                    None if report.items == 0 => poll,
                                    None => Duration::ZERO,
                                }
                            }
                            Err(e) => {
                                tracing::error!(error = %e, "sink round failed");
                                Duration::from_secs(1)
                            }
                        }
                    } else {
                        (linger - age).min(Duration::from_millis(250))
                    }
                }
                Err(e) => {
                    tracing::error!(error = %e, "sink cannot read the outbox");
                    Duration::from_secs(1)
                }
            };
            if !wait.is_zero() {
                tokio::select! {
                    _ = shutdown.cancelled() => break,
                    _ = tokio::time::sleep(wait) => {}
                }
            }
        }
    }

    /// Pause after the `n`th round in a row that found Salesforce unreachable: the backoff
    /// base doubling per round, with jitter, up to the cap.
    fn outage_pause(&self, n: i64) -> Duration {
        let Micros(at) = self.retry_at(n - 1);
        Duration::from_micros((at - Micros::now().0).max(0) as u64)
    }

    /// One round over whatever is due now (no linger).
    pub async fn run_once(&self) -> Result<RoundReport, SinkError> {
        self.round(true, self.config.max_partitions_per_round).await
    }

    /// One round. Unless `flush`, a last, partly filled request whose intents have all
    /// waited less than the linger goes back to wait for company (DESIGN §4: wait at most
    /// the linger, or until a request is full).
    async fn round(&self, flush: bool, max_partitions: i64) -> Result<RoundReport, SinkError> {
        let now = Micros::now();
        let budget = self.store.api_budget(now).await?;
        metrics::gauge!("revsync_api_calls_24h").set(budget.revsync_calls_24h as f64);
        if let (Some(used), Some(max)) = (budget.org_used, budget.org_max) {
            metrics::gauge!("revsync_org_api_used").set(used as f64);
            metrics::gauge!("revsync_org_api_max").set(max as f64);
        }
        let (up_to, calls_left) = match governor::decide(&self.config.budget, &budget) {
            Verdict::Go { up_to, calls_left } => (up_to, calls_left),
            Verdict::Pause { reason, .. } => {
                metrics::counter!("revsync_sink_paused_total").increment(1);
                return Ok(RoundReport {
                    paused: Some(reason),
                    ..RoundReport::default()
                });
            }
        };
        let lease_until = Micros(now.0 + (self.config.lease_secs as i64) * 1_000_000);
        let mut items = self
            .store
            .lease_outbox(&self.owner, now, lease_until, max_partitions, up_to)
            .await?;
        if items.is_empty() {
            return Ok(RoundReport::default());
        }
        // Customers new to the identity map: link to what Salesforce already has.
        let mut resolved = Outcome::default();
        let held = self.resolve_identities(&mut items, &mut resolved).await;
        let total_items = items.len();
        items.retain(|i| !held.contains(&i.id));
        let mut requests = plan::plan(&items, &self.limits);
        let mut released = Vec::new();
        if !flush {
            let young = Micros(now.0 - (self.config.linger_ms as i64) * 1_000);
            let keep_last = requests.last().is_none_or(|r| {
                r.is_full(&self.limits) || r.items().any(|i| items[i].due <= young)
            });
            if !keep_last {
                if let Some(last) = requests.pop() {
                    released.extend(
                        last.items()
                            .map(|i| Settlement::Release { id: items[i].id }),
                    );
                }
            }
        }
        // Never plan past the budget: what does not fit goes back, untouched, for later.
        if let Some(left) = calls_left {
            let mut cost = 0;
            let keep = requests
                .iter()
                .take_while(|r| {
                    cost += r.api_calls();
                    cost <= left.max(1)
                })
                .count();
            for r in requests.drain(keep..) {
                released.extend(r.items().map(|i| Settlement::Release { id: items[i].id }));
            }
        }
        let items = Arc::new(items);
        let mut report = RoundReport {
            items: total_items,
            requests: requests.len(),
            api_calls: resolved.api_calls,
            ..RoundReport::default()
        };
        let sends = requests.into_iter().map(|request| {
            let items = items.clone();
            async move { self.send(&items, &request).await }
        });
        let outcomes: Vec<Outcome> = futures::stream::iter(sends)
            .buffer_unordered(self.config.concurrency.max(1))
            .collect()
            .await;
        let mut settlements = released;
        settlements.extend(resolved.settlements);
        let mut identities = resolved.identities;
        report.unreachable = resolved.unreachable;
        for o in outcomes {
            report.api_calls += o.api_calls;
            report.unreachable |= o.unreachable;
            settlements.extend(o.settlements);
            identities.extend(o.identities);
        }
        for s in &settlements {
            match s {
                Settlement::Written { .. } => {
                    report.written += 1;
                    report.unreachable = false;
                }
                Settlement::Retry { .. } => report.retried += 1,
                Settlement::Dead { .. } => report.dead += 1,
                Settlement::Release { .. } => {}
            }
        }
        let now = Micros::now();
        let usage = self
            .client
            .api_usage()
            .map(|u| (u.used as i64, u.max as i64));
        self.store
            .record_api_calls(report.api_calls, usage, now)
            .await?;
        self.store.settle_outbox(&settlements, now).await?;
        self.store.save_identities(&identities, now).await?;
        let due: std::collections::HashMap<i64, Micros> =
            items.iter().map(|i| (i.id, i.due)).collect();
        for s in &settlements {
            if let Settlement::Written { id, .. } = s {
                if let Some(due) = due.get(id) {
                    let waited = (now.0 - due.0).max(0) as f64 / 1e6;
                    metrics::histogram!("revsync_outbox_to_salesforce_seconds").record(waited);
                }
            }
        }
        metrics::counter!("revsync_sink_records_written_total").increment(report.written as u64);
        metrics::counter!("revsync_sink_retries_total").increment(report.retried as u64);
        metrics::counter!("revsync_sink_dead_letters_total").increment(report.dead as u64);
        tracing::debug!(
            items = report.items,
            requests = report.requests,
            api_calls = report.api_calls,
            written = report.written,
            retried = report.retried,
            dead = report.dead,
            "sink round"
        );
        Ok(report)
    }

    /// Runs rounds until nothing is pending or in flight, the budget pauses writes, or
    /// `deadline` passes. For tests, the demo's summary and the CLI; the service uses
    /// [`Sink::run`].
    pub async fn drain(&self, deadline: Duration) -> Result<RoundReport, SinkError> {
        let until = tokio::time::Instant::now() + deadline;
        let mut total = RoundReport::default();
        loop {
            let stats = self.store.outbox_stats().await?;
            if stats.pending == 0 && stats.in_flight == 0 {
                return Ok(total);
            }
            if tokio::time::Instant::now() >= until {
                return Ok(total);
            }
            let r = self.run_once().await?;
            total.items += r.items;
            total.requests += r.requests;
            total.api_calls += r.api_calls;
            total.written += r.written;
            total.retried += r.retried;
            total.dead += r.dead;
            total.paused = r.paused.clone();
            if total.paused.is_some() {
                return Ok(total);
            }
            if r.items == 0 {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    }

    async fn send(&self, items: &[OutboxItem], request: &Request) -> Outcome {
        match request {
            Request::Graphs(graphs) => self.send_graphs(items, graphs).await,
            Request::Collection {
                sobject,
                ext_field,
                items: members,
            } => {
                self.send_collection(items, sobject, ext_field, members)
                    .await
            }
            Request::Bulk {
                sobject,
                ext_field,
                items: members,
            } => self.send_bulk(items, sobject, ext_field, members).await,
        }
    }

    /// Capped exponential backoff with jitter (50–100 % of the step).
    fn retry_at(&self, attempts: i64) -> Micros {
        let step = self.config.backoff_base_ms as f64 * 2f64.powi(attempts.clamp(0, 30) as i32);
        let cap = (self.config.backoff_cap_secs * 1_000) as f64;
        let jitter = rand::thread_rng().gen_range(0.5..=1.0);
        let delay_ms = step.min(cap) * jitter;
        Micros(Micros::now().0 + (delay_ms * 1_000.0) as i64)
    }

    fn written(
        &self,
        item: &OutboxItem,
        sf_id: Option<&str>,
        created: Option<bool>,
        out: &mut Outcome,
    ) {
        if let (Some(id), RecordKey::ExternalId { field, value }) = (sf_id, &item.intent.key) {
            if field == &self.config.customer_external_id {
                let (account_id, contact_id) = match item.intent.sobject.as_str() {
                    "Account" => (Some(id.to_owned()), None),
                    "Contact" => (None, Some(id.to_owned())),
                    _ => (None, None),
                };
                if account_id.is_some() || contact_id.is_some() {
                    out.identities.push(Identity {
                        customer_key: value.clone(),
                        account_id,
                        contact_id,
                        source: if created == Some(true) {
                            "created"
                        } else {
                            "upserted"
                        }
                        .into(),
                    });
                }
            }
        }
        out.settlements.push(Settlement::Written {
            id: item.id,
            sf_id: sf_id.map(str::to_owned),
            created,
        });
    }

    /// Settles one item that failed with `error`.
    async fn failed(&self, item: &OutboxItem, error: &ApiError, out: &mut Outcome) {
        let retry_later = |out: &mut Outcome| {
            out.settlements.push(Settlement::Retry {
                id: item.id,
                not_before: self.retry_at(item.attempts),
                error: format!("{}: {}", error.code, error.message),
            })
        };
        match error.class {
            ErrorClass::Transient | ErrorClass::SessionExpired => retry_later(out),
            ErrorClass::LimitExceeded => {
                out.limit_hit = true;
                retry_later(out);
            }
            ErrorClass::DuplicateRace if item.attempts < self.config.duplicate_race_retries => {
                // Another writer created the record between our check and our insert: the
                // same upsert now finds it and updates.
                out.settlements.push(Settlement::Retry {
                    id: item.id,
                    not_before: Micros::now(),
                    error: format!("{}: {}", error.code, error.message),
                });
            }
            _ if error.code == "DUPLICATES_DETECTED" => self.link_duplicate(item, error, out).await,
            // The parent the record points at by external id is not there yet (it is being
            // written by another request, or was rolled back with another graph): wait for
            // it a few times before calling it permanent.
            _ if is_missing_parent(error) && item.attempts < MISSING_PARENT_RETRIES => {
                retry_later(out)
            }
            _ => out.settlements.push(Settlement::Dead {
                id: item.id,
                code: error.code.clone(),
                message: describe(error),
            }),
        }
    }

    /// An org duplicate rule blocked a new record and named the record it matches. A
    /// customer's Account or Contact costs no call here: the link goes into the identity map
    /// and the retried write updates the matched record by its id, stamping our external id
    /// (the same path as a match found by querying). Any other record gets our external id
    /// stamped now (an update by its id), so that the retried upsert updates it instead of
    /// creating a duplicate.
    async fn link_duplicate(&self, item: &OutboxItem, error: &ApiError, out: &mut Outcome) {
        let matched = error
            .duplicates
            .as_ref()
            .and_then(|d| d.matched_ids.first().cloned());
        let (Some(matched), RecordKey::ExternalId { field, value }) = (matched, &item.intent.key)
        else {
            out.settlements.push(Settlement::Dead {
                id: item.id,
                code: error.code.clone(),
                message: describe(error),
            });
            return;
        };
        let customer = field == &self.config.customer_external_id
            && matches!(item.intent.sobject.as_str(), "Account" | "Contact");
        if !customer {
            out.api_calls += 1;
            let stamp = serde_json::json!({ field.as_str(): value });
            if let Err(e) = self
                .client
                .update(&item.intent.sobject, &matched, &stamp)
                .await
            {
                out.settlements.push(Settlement::Retry {
                    id: item.id,
                    not_before: self.retry_at(item.attempts),
                    error: format!("could not link duplicate {matched}: {e}"),
                });
                return;
            }
        } else {
            let contact = item.intent.sobject == "Contact";
            out.identities.push(Identity {
                customer_key: value.clone(),
                account_id: (!contact).then(|| matched.clone()),
                contact_id: contact.then(|| matched.clone()),
                source: "duplicate_rule".into(),
            });
        }
        tracing::info!(sobject = %item.intent.sobject, matched = %matched, key = %value, "linked to the record an org duplicate rule matched");
        out.settlements.push(Settlement::Retry {
            id: item.id,
            not_before: Micros::now(),
            error: format!("linked to {matched} named by the duplicate rule"),
        });
    }

    /// A whole request failed (HTTP level): every item in it shares the fate.
    fn request_failed(&self, members: &[&OutboxItem], e: &SalesforceError, out: &mut Outcome) {
        let class = e.class();
        out.unreachable |= matches!(class, ErrorClass::Transient | ErrorClass::SessionExpired);
        for item in members {
            match class {
                ErrorClass::Permanent => out.settlements.push(Settlement::Dead {
                    id: item.id,
                    code: e.code().unwrap_or("REQUEST_FAILED").to_owned(),
                    message: e.to_string(),
                }),
                ErrorClass::LimitExceeded => {
                    out.limit_hit = true;
                    out.settlements.push(Settlement::Retry {
                        id: item.id,
                        not_before: self.retry_at(item.attempts.max(6)),
                        error: e.to_string(),
                    });
                }
                _ => out.settlements.push(Settlement::Retry {
                    id: item.id,
                    not_before: self.retry_at(item.attempts),
                    error: e.to_string(),
                }),
            }
        }
    }

    async fn send_graphs(&self, items: &[OutboxItem], graphs: &[Vec<usize>]) -> Outcome {
        let mut out = Outcome::default();
        let api = self.client.api_version().to_owned();
        let mut sent: Vec<(Graph, Vec<usize>)> = Vec::with_capacity(graphs.len());
        for (g, members) in graphs.iter().enumerate() {
            let mut graph = Graph::new(format!("g{g}"));
            let mut kept = Vec::with_capacity(members.len());
            for &i in members {
                match node(&api, &items[i]) {
                    Ok(node) => {
                        graph = graph.node(node);
                        kept.push(i);
                    }
                    Err(e) => out.settlements.push(Settlement::Dead {
                        id: items[i].id,
                        code: "INVALID_INTENT".into(),
                        message: e.to_string(),
                    }),
                }
            }
            if !kept.is_empty() {
                sent.push((graph, kept));
            }
        }
        if sent.is_empty() {
            return out;
        }
        let request: Vec<Graph> = sent.iter().map(|(g, _)| g.clone()).collect();
        out.api_calls += 1;
        metrics::counter!("revsync_salesforce_calls_total", "resource" => "composite/graph")
            .increment(1);
        match self.client.composite_graph(&request).await {
            Ok(results) => {
                for (graph, members) in &sent {
                    let Some(result) = results.iter().find(|r| r.graph_id == graph.graph_id) else {
                        let missing: Vec<&OutboxItem> =
                            members.iter().map(|&i| &items[i]).collect();
                        let e = SalesforceError::InvalidRequest(format!(
                            "graph {} missing from the response",
                            graph.graph_id
                        ));
                        for item in missing {
                            out.settlements.push(Settlement::Retry {
                                id: item.id,
                                not_before: self.retry_at(item.attempts),
                                error: e.to_string(),
                            });
                        }
                        continue;
                    };
                    if result.is_successful {
                        for &i in members {
                            let r = result.response(&reference(&items[i]));
                            self.written(
                                &items[i],
                                r.and_then(|r| r.id()),
                                r.and_then(|r| r.created()),
                                &mut out,
                            );
                        }
                    } else {
                        let roots = result.root_errors();
                        for &i in members {
                            let item = &items[i];
                            match roots.iter().find(|(r, _)| *r == reference(item)) {
                                Some((_, error)) => self.failed(item, error, &mut out).await,
                                // Rolled back only because another node failed: try again
                                // straight away (its graph-mate is settled on its own).
                                None => out.settlements.push(Settlement::Retry {
                                    id: item.id,
                                    not_before: Micros::now(),
                                    error: "rolled back with its graph".into(),
                                }),
                            }
                        }
                    }
                }
            }
            Err(e) => {
                let members: Vec<&OutboxItem> = sent
                    .iter()
                    .flat_map(|(_, m)| m.iter().map(|&i| &items[i]))
                    .collect();
                tracing::warn!(error = %e, items = members.len(), "composite graph request failed");
                self.request_failed(&members, &e, &mut out);
            }
        }
        out
    }

    async fn send_collection(
        &self,
        items: &[OutboxItem],
        sobject: &str,
        ext_field: &str,
        members: &[usize],
    ) -> Outcome {
        let mut out = Outcome::default();
        let records: Vec<Value> = members.iter().map(|&i| record(&items[i])).collect();
        out.api_calls += 1;
        metrics::counter!("revsync_salesforce_calls_total", "resource" => "composite/sobjects")
            .increment(1);
        match self
            .client
            .collections_upsert(sobject, ext_field, &records, false)
            .await
        {
            Ok(results) => {
                for (k, &i) in members.iter().enumerate() {
                    match results.get(k) {
                        Some(r) if r.success => {
                            self.written(&items[i], r.id.as_deref(), r.created, &mut out)
                        }
                        Some(r) => {
                            let error = r
                                .errors
                                .iter()
                                .find(|e| !e.collateral)
                                .or(r.errors.first())
                                .cloned()
                                .unwrap_or_else(|| {
                                    ApiError::new("UNKNOWN", "failed without an error", vec![])
                                });
                            self.failed(&items[i], &error, &mut out).await;
                        }
                        None => out.settlements.push(Settlement::Retry {
                            id: items[i].id,
                            not_before: self.retry_at(items[i].attempts),
                            error: "no result for this record".into(),
                        }),
                    }
                }
            }
            Err(e) => {
                let members: Vec<&OutboxItem> = members.iter().map(|&i| &items[i]).collect();
                self.request_failed(&members, &e, &mut out);
            }
        }
        out
    }

    async fn send_bulk(
        &self,
        items: &[OutboxItem],
        sobject: &str,
        ext_field: &str,
        members: &[usize],
    ) -> Outcome {
        // A record holding the text "#N/A" (Bulk's null marker) cannot travel in a CSV
        // without turning into null: those go through Collections instead.
        let (na, members): (Vec<usize>, Vec<usize>) =
            members.iter().partition(|&&i| holds_null_marker(&items[i]));
        let mut out = Outcome::default();
        for chunk in na.chunks(self.limits.collection_size) {
            let o = self.send_collection(items, sobject, ext_field, chunk).await;
            out.api_calls += o.api_calls;
            out.settlements.extend(o.settlements);
            out.identities.extend(o.identities);
            out.limit_hit |= o.limit_hit;
            out.unreachable |= o.unreachable;
        }
        if members.is_empty() {
            return out;
        }
        let members = &members[..];
        let records: Vec<Value> = members.iter().map(|&i| record(&items[i])).collect();
        let mut columns: Vec<String> = vec![ext_field.to_owned()];
        for r in &records {
            if let Value::Object(map) = r {
                for k in map.keys() {
                    if !columns.contains(k) {
                        columns.push(k.clone());
                    }
                }
            }
        }
        let columns: Vec<&str> = columns.iter().map(String::as_str).collect();
        let all: Vec<&OutboxItem> = members.iter().map(|&i| &items[i]).collect();
        let csv = match salesforce::bulk::records_to_csv(&columns, &records) {
            Ok(csv) => csv,
            Err(e) => {
                self.request_failed(&all, &e, &mut out);
                return out;
            }
        };
        out.api_calls += plan::BULK_JOB_CALLS;
        metrics::counter!("revsync_salesforce_calls_total", "resource" => "jobs/ingest")
            .increment(plan::BULK_JOB_CALLS as u64);
        let policy = PollPolicy {
            initial_delay: Duration::from_millis(200),
            ..PollPolicy::default()
        };
        match self
            .client
            .bulk_ingest(&IngestJobRequest::upsert(sobject, ext_field), csv, &policy)
            .await
        {
            Ok(outcome) => {
                let by_key: BTreeMap<&str, &OutboxItem> =
                    all.iter().map(|i| (i.intent.key.value(), *i)).collect();
                let mut settled = std::collections::BTreeSet::new();
                for row in &outcome.successful {
                    if let Some(item) = row
                        .fields
                        .get(ext_field)
                        .and_then(|k| by_key.get(k.as_str()))
                    {
                        settled.insert(item.id);
                        self.written(item, Some(&row.id), Some(row.created), &mut out);
                    }
                }
                for row in &outcome.failed {
                    if let Some(item) = row
                        .fields
                        .get(ext_field)
                        .and_then(|k| by_key.get(k.as_str()))
                    {
                        settled.insert(item.id);
                        self.failed(item, &row.error, &mut out).await;
                    }
                }
                for item in all.iter().filter(|i| !settled.contains(&i.id)) {
                    out.settlements.push(Settlement::Retry {
                        id: item.id,
                        not_before: self.retry_at(item.attempts),
                        error: "not processed by the bulk job".into(),
                    });
                }
            }
            Err(e) => self.request_failed(&all, &e, &mut out),
        }
        out
    }
}

/// True when any field is the text `#N/A`, Bulk API's null marker.
fn holds_null_marker(item: &OutboxItem) -> bool {
    item.intent
        .fields
        .values()
        .any(|v| v.as_str().is_some_and(|s| s.trim() == "#N/A"))
}

/// Attempts a record whose parent is missing gets before it is dead-lettered.
const MISSING_PARENT_RETRIES: i64 = 5;

/// `INVALID_FIELD: Foreign key external ID: … not found …`.
fn is_missing_parent(error: &ApiError) -> bool {
    error.code == "INVALID_FIELD" && error.message.contains("Foreign key external ID")
}

/// The graph reference id of an item (unique in a request: outbox ids are unique).
fn reference(item: &OutboxItem) -> String {
    format!("r{}", item.id)
}

/// The record body: the intent's fields, without the external-id field itself (it is in the
/// URL; whether Salesforce accepts it repeated in the body is UNCONFIRMED).
fn body(item: &OutboxItem) -> Value {
    let mut fields: serde_json::Map<String, Value> = item
        .intent
        .fields
        .iter()
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    if let RecordKey::ExternalId { field, .. } = &item.intent.key {
        fields.remove(field);
    }
    Value::Object(fields)
}

/// A collections / bulk record: the fields plus the external-id value.
fn record(item: &OutboxItem) -> Value {
    let mut v = body(item);
    if let (Value::Object(map), RecordKey::ExternalId { field, value }) = (&mut v, &item.intent.key)
    {
        map.insert(field.clone(), Value::String(value.clone()));
    }
    v
}

fn node(api: &str, item: &OutboxItem) -> Result<GraphNode, SalesforceError> {
    match &item.intent.key {
        RecordKey::ExternalId { field, value } => GraphNode::upsert(
            api,
            reference(item),
            &item.intent.sobject,
            field,
            value,
            body(item),
        ),
        RecordKey::Id { id } => {
            GraphNode::update(api, reference(item), &item.intent.sobject, id, body(item))
        }
    }
}

/// Salesforce's message with the fields it names.
fn describe(error: &ApiError) -> String {
    if error.fields.is_empty() {
        error.message.clone()
    } else {
        format!("{} (fields: {})", error.message, error.fields.join(", "))
    }
}
