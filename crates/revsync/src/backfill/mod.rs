//! Backfill: pull order history from 2Checkout's REST API 6.0, feed it to the ledger, and
//! enqueue the Salesforce intents it implies at backfill priority.
//!
//! Each REST order becomes the synthetic IPNs of [`convert`] (stable negative event ids), is
//! applied with the same pure [`ledger::apply`] as live traffic, planned by the same
//! [`Flows`], and committed one page at a time ([`Engine::commit_records`]: ledger records
//! version-checked + intents, one transaction). Intents carry [`Priority::Backfill`], so the
//! budget governor lets payments go first; the sink packs them (Composite Graph per
//! customer, sObject Collections for single-object streams, Bulk API 2.0 above its
//! threshold).
//!
//! Idempotent: a second run with the same data applies the same event ids, the ledger does
//! not change, no intent is enqueued, and Salesforce sees nothing.
//!
//! What this module must not know: SQL (it calls the store), Salesforce's API (the sink
//! writes), 2Checkout's notification wire format (it builds typed values).

pub mod client;
pub mod convert;

use std::collections::BTreeMap;
use std::sync::Arc;

use chrono::NaiveDate;
use serde::{de::DeserializeOwned, Serialize};

use crate::flows::Flows;
use crate::intent::{Priority, RecordIntent};
use crate::ledger::{
    self, CustomerRecord, LedgerContext, LedgerState, LedgerUpdate, OrderRecord, SubscriptionRecord,
};
use crate::pipeline::{CUSTOMER, ORDER, SUBSCRIPTION};
use crate::store::{Effects, LedgerRecord, Micros, RecordWrite, Store, StoreError};

pub use client::{OrderSearch, Page, RestClient, RestError, RetryPolicy};
pub use convert::{synthetic_event_id, ConvertError, RestOrder};

/// Why a backfill stopped. Pages committed before the error stay committed; running again
/// resumes harmlessly (idempotent).
#[derive(Debug, thiserror::Error)]
pub enum BackfillError {
    #[error(transparent)]
    Rest(#[from] RestError),
    #[error("store: {0}")]
    Store(#[from] StoreError),
    /// A stored ledger record cannot be read: a bug or a manual edit; fix the record.
    #[error("ledger record {kind}/{key} is unreadable: {message}")]
    Ledger {
        kind: String,
        key: String,
        message: String,
    },
    /// The ledger kept changing under the backfill (live traffic on the same customers).
    #[error("ledger records of page {page} kept changing during the backfill; run it again")]
    Contended { page: usize },
}

/// What to pull.
#[derive(Debug, Clone)]
pub struct BackfillOptions {
    /// First order date (inclusive).
    pub since: NaiveDate,
    /// Last order date (inclusive); open-ended when `None`.
    pub until: Option<NaiveDate>,
    /// Orders per REST page (capped by the API; 200 ASSUMED).
    pub page_size: usize,
}

/// Where a running backfill is.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Progress {
    /// Orders processed so far.
    pub done: usize,
    /// Orders 2Checkout reports for the window (grows if orders arrive meanwhile).
    pub total: usize,
    /// Orders that changed the ledger.
    pub changed: usize,
}

/// The outcome of a backfill.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct BackfillReport {
    pub orders: usize,
    /// Orders that changed the ledger.
    pub changed: usize,
    /// Orders the ledger already had exactly.
    pub unchanged: usize,
    /// Intents enqueued (before merging in the outbox).
    pub intents: usize,
    pub pages: usize,
    /// Orders that could not be read, with the reason (skipped, nothing written for them).
    pub invalid: Vec<String>,
}

/// Applies one REST order to the loaded records (pure): the combined update of its
/// synthetic notifications.
pub fn apply_order(state: &LedgerState, order: &RestOrder, ctx: &LedgerContext) -> LedgerUpdate {
    let mut current = state.clone();
    let mut changes = Vec::new();
    let mut test = false;
    for (event_id, n) in order.notifications() {
        // A refund / reversal the ledger already knows from its live notification: the
        // amountless synthetic one would only add a second, empty entry.
        if let twocheckout::notification::Notification::Ipn(ipn) = &n {
            let status_only = ipn.total.is_none() && ipn.items.is_empty();
            if status_only
                && current
                    .order
                    .as_ref()
                    .is_some_and(|o| o.has_seen(&ipn.status))
            {
                continue;
            }
        }
        let update = ledger::apply(&current, &n, event_id, ctx);
        test |= update.test;
        changes.extend(update.changes.iter().cloned());
        current = current.after(&update);
    }
    LedgerUpdate {
        customer: current
            .customer
            .clone()
            .filter(|c| Some(c) != state.customer.as_ref()),
        order: current
            .order
            .clone()
            .filter(|o| Some(o) != state.order.as_ref()),
        subscription: current
            .subscription
            .clone()
            .filter(|s| Some(s) != state.subscription.as_ref()),
        changes,
        test,
    }
}

/// Marks intents as backfill work.
pub fn at_backfill_priority(mut intents: Vec<RecordIntent>) -> Vec<RecordIntent> {
    for i in &mut intents {
        i.priority = Priority::Backfill;
    }
    intents
}

fn decode<T: DeserializeOwned>(r: &LedgerRecord) -> Result<T, BackfillError> {
    serde_json::from_str(&r.body).map_err(|e| BackfillError::Ledger {
        kind: r.kind.clone(),
        key: r.key.clone(),
        message: e.to_string(),
    })
}

/// Ledger records loaded for a batch, changed in memory, written back version-checked.
#[derive(Default)]
pub(crate) struct Working {
    versions: BTreeMap<(String, String), i64>,
    customers: BTreeMap<String, CustomerRecord>,
    orders: BTreeMap<String, OrderRecord>,
    subscriptions: BTreeMap<String, SubscriptionRecord>,
    dirty: std::collections::BTreeSet<(String, String)>,
}

impl Working {
    pub(crate) async fn load(
        store: &dyn Store,
        keys: &[(String, String)],
    ) -> Result<Working, BackfillError> {
        let mut w = Working::default();
        for r in store.ledger_records(keys).await? {
            w.versions
                .insert((r.kind.clone(), r.key.clone()), r.version);
            if r.kind == CUSTOMER {
                w.customers.insert(r.key.clone(), decode(&r)?);
            } else if r.kind == ORDER {
                w.orders.insert(r.key.clone(), decode(&r)?);
            } else if r.kind == SUBSCRIPTION {
                w.subscriptions.insert(r.key.clone(), decode(&r)?);
            }
        }
        Ok(w)
    }

    pub(crate) fn state(&self, keys: &ledger::Touched) -> LedgerState {
        LedgerState {
            customer: keys
                .customer
                .as_ref()
                .and_then(|k| self.customers.get(k))
                .cloned(),
            order: keys
                .order
                .as_ref()
                .and_then(|k| self.orders.get(k))
                .cloned(),
            subscription: keys
                .subscription
                .as_ref()
                .and_then(|k| self.subscriptions.get(k))
                .cloned(),
        }
    }

    pub(crate) fn absorb(&mut self, update: &LedgerUpdate) {
        if let Some(c) = &update.customer {
            self.dirty.insert((CUSTOMER.to_owned(), c.key.clone()));
            self.customers.insert(c.key.clone(), c.clone());
        }
        if let Some(o) = &update.order {
            self.dirty.insert((ORDER.to_owned(), o.refno.clone()));
            self.orders.insert(o.refno.clone(), o.clone());
        }
        if let Some(sub) = &update.subscription {
            self.dirty
                .insert((SUBSCRIPTION.to_owned(), sub.reference.clone()));
            self.subscriptions
                .insert(sub.reference.clone(), sub.clone());
        }
    }

    pub(crate) fn writes(&self) -> Vec<RecordWrite> {
        self.dirty
            .iter()
            .map(|(kind, key)| {
                let (body, customer_key) = if kind == CUSTOMER {
                    let c = &self.customers[key];
                    (json(c), Some(c.key.clone()))
                } else if kind == SUBSCRIPTION {
                    let s = &self.subscriptions[key];
                    (json(s), s.customer_key.clone())
                } else {
                    let o = &self.orders[key];
                    (json(o), o.customer_key.clone())
                };
                RecordWrite {
                    kind: kind.clone(),
                    key: key.clone(),
                    customer_key,
                    body,
                    expected_version: self.versions.get(&(kind.clone(), key.clone())).copied(),
                }
            })
            .collect()
    }
}

/// The `(kind, key)` of the ledger records `keys` names.
pub(crate) fn record_keys(keys: &ledger::Touched) -> Vec<(String, String)> {
    let mut out = Vec::new();
    if let Some(c) = &keys.customer {
        out.push((CUSTOMER.to_owned(), c.clone()));
    }
    if let Some(o) = &keys.order {
        out.push((ORDER.to_owned(), o.clone()));
    }
    if let Some(s) = &keys.subscription {
        out.push((SUBSCRIPTION.to_owned(), s.clone()));
    }
    out
}

fn json<T: Serialize>(v: &T) -> String {
    serde_json::to_string(v).expect("ledger records serialize")
}

/// The backfill job.
pub struct Backfill {
    store: Arc<dyn Store>,
    flows: Arc<Flows>,
    client: RestClient,
    context: LedgerContext,
}

impl Backfill {
    pub fn new(store: Arc<dyn Store>, flows: Arc<Flows>, client: RestClient) -> Backfill {
        let context = flows.config().ledger_context();
        Backfill {
            store,
            flows,
            client,
            context,
        }
    }

    /// Pulls every order of the window, page by page, calling `progress` after each page.
    pub async fn run(
        &self,
        options: &BackfillOptions,
        progress: &mut (dyn FnMut(Progress) + Send),
    ) -> Result<BackfillReport, BackfillError> {
        let mut report = BackfillReport::default();
        let mut page_no = 1;
        loop {
            let page = self
                .client
                .search_orders(&OrderSearch {
                    start: options.since,
                    end: options.until,
                    status: None,
                    page: page_no,
                    limit: options.page_size.clamp(1, 200),
                })
                .await?;
            report.pages += 1;
            let mut orders = Vec::new();
            for item in &page.items {
                match RestOrder::from_json(item) {
                    Ok(o) => orders.push(o),
                    Err(e) => {
                        tracing::warn!(error = %e, "skipping unreadable order");
                        report.invalid.push(e.to_string());
                    }
                }
            }
            let (changed, intents) = self.apply_page(&orders, page_no).await?;
            report.orders += page.items.len();
            report.changed += changed;
            report.unchanged += orders.len() - changed;
            report.intents += intents;
            progress(Progress {
                done: report.orders,
                total: page.count.max(report.orders),
                changed: report.changed,
            });
            tracing::info!(
                page = page_no,
                orders = page.items.len(),
                changed,
                intents,
                "backfill page committed"
            );
            if page.is_last() {
                break;
            }
            page_no += 1;
        }
        Ok(report)
    }

    /// Applies and commits one page; retried from a fresh read when live traffic changed a
    /// record meanwhile. Returns (orders changed, intents enqueued).
    async fn apply_page(
        &self,
        orders: &[RestOrder],
        page: usize,
    ) -> Result<(usize, usize), BackfillError> {
        let mut keys: Vec<(String, String)> = Vec::new();
        for o in orders {
            keys.extend(record_keys(&o.touched()));
        }
        keys.sort();
        keys.dedup();
        for _attempt in 0..5 {
            let mut work = Working::load(self.store.as_ref(), &keys).await?;
            let mut intents = Vec::new();
            let mut changed = 0;
            for o in orders {
                let state = work.state(&o.touched());
                let update = apply_order(&state, o, &self.context);
                if update.customer.is_none() && update.order.is_none() {
                    continue;
                }
                changed += 1;
                let after = state.after(&update);
                intents.extend(at_backfill_priority(
                    self.flows.plan(&update, &after).intents,
                ));
                work.absorb(&update);
            }
            let effects = Effects {
                records: work.writes(),
                intents,
            };
            if effects.records.is_empty() && effects.intents.is_empty() {
                return Ok((0, 0));
            }
            match self.store.commit_records(&effects, Micros::now()).await {
                Ok(()) => return Ok((changed, effects.intents.len())),
                Err(StoreError::Conflict(msg)) => {
                    tracing::debug!(page, %msg, "ledger changed during backfill; retrying page");
                }
                Err(e) => return Err(e.into()),
            }
        }
        Err(BackfillError::Contended { page })
    }
}
