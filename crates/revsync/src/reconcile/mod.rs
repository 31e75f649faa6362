//! Reconciliation: 2Checkout (REST 6.0) vs the ledger vs Salesforce, for the orders of a
//! date window.
//!
//! Two comparisons, each pure once the data is loaded:
//! - **2Checkout → ledger** ([`compare_orders`]): orders 2Checkout has and the ledger lacks
//!   (missing), orders the ledger has in the window and 2Checkout does not (extra), and
//!   status, currency, gross amount and tax that differ (amounts compared to the currency's
//!   minor unit). Refunded amounts are not compared: the REST order object carries none
//!   (reference §4.3).
//! - **ledger → Salesforce** ([`compare_salesforce`]): the Opportunity the flows would write
//!   for every qualifying ledger order (its desired state, from the configured mapping) vs the
//!   Opportunity Salesforce has under the same external id (read with batched SOQL): missing,
//!   differing fields (numbers compared as exact decimals), and Opportunities carrying an
//!   order reference in the window that the ledger does not know (extra). Renewal and upsell
//!   Opportunities of the subscriptions flow are only checked for being known (extra); a
//!   currency field whose scale is below the currency's minor unit (BHD in a scale-2 field)
//!   is reported as differing by the rounding.
//!
//! Repair ([`Reconciler::repair`]) never deletes: orders missing from the ledger are applied
//! from 2Checkout (as a backfill would), and for every missing or differing Opportunity its
//! desired state is enqueued at backfill priority (a single-object stream: sObject
//! Collections, Bulk API 2.0 above the sink's threshold); the sink writes it as a keyed
//! upsert. Extra records are only reported.
//!
//! What this module must not know: SQL (the store), HTTP details of either API (the clients).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use chrono::NaiveDate;
use rust_decimal::Decimal;
use serde::Serialize;
use serde_json::Value;
use twocheckout::money::parse_decimal;

use crate::backfill::{self, BackfillError, OrderSearch, RestClient, RestError, RestOrder};
use crate::flows::Flows;
use crate::intent::RecordIntent;
use crate::ledger::{CustomerRecord, LedgerChange, LedgerState, LedgerUpdate, OrderRecord};
use crate::pipeline::{CUSTOMER, ORDER, SUBSCRIPTION};
use crate::store::{Micros, Store, StoreError};

/// Why a reconciliation stopped.
#[derive(Debug, thiserror::Error)]
pub enum ReconcileError {
    #[error(transparent)]
    Rest(#[from] RestError),
    #[error("store: {0}")]
    Store(#[from] StoreError),
    /// A SOQL query failed: check the org (fields of the mapping exist and are readable).
    #[error("salesforce query failed: {0}")]
    Salesforce(#[from] salesforce::SalesforceError),
    #[error(transparent)]
    Backfill(#[from] BackfillError),
    /// A stored ledger record cannot be read.
    #[error("ledger record {kind}/{key} is unreadable: {message}")]
    Ledger {
        kind: String,
        key: String,
        message: String,
    },
}

/// Which two sides disagree.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Sides {
    /// 2Checkout (REST) is the reference, the ledger is compared.
    TwoCheckoutLedger,
    /// The ledger's desired state is the reference, Salesforce is compared.
    LedgerSalesforce,
}

/// What kind of disagreement.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum DriftKind {
    /// The reference side has the record, the compared side does not.
    Missing,
    /// The compared side has a record the reference side does not.
    Extra,
    /// Both have it; a field differs.
    Differs,
}

/// One disagreement.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Drift {
    pub sides: Sides,
    pub kind: DriftKind,
    /// `Order` (ledger) or the sObject.
    pub object: String,
    /// Order reference (`RefNo`).
    pub refno: String,
    /// The differing field (`Differs` only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
    /// The reference side's value.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub expected: Option<Value>,
    /// The compared side's value.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub actual: Option<Value>,
    /// `actual − expected` for amounts, exact.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub difference: Option<String>,
}

impl Drift {
    fn new(sides: Sides, kind: DriftKind, object: &str, refno: &str) -> Drift {
        Drift {
            sides,
            kind,
            object: object.to_owned(),
            refno: refno.to_owned(),
            field: None,
            expected: None,
            actual: None,
            difference: None,
        }
    }

    fn differs(sides: Sides, object: &str, refno: &str, field: &str, e: Value, a: Value) -> Drift {
        let difference = match (number(&e), number(&a)) {
            (Some(x), Some(y)) => Some((y - x).normalize().to_string()),
            _ => None,
        };
        Drift {
            field: Some(field.to_owned()),
            expected: Some(e),
            actual: Some(a),
            difference,
            ..Drift::new(sides, DriftKind::Differs, object, refno)
        }
    }

    /// One human-readable line.
    pub fn line(&self) -> String {
        let side = match (self.sides, self.kind) {
            (Sides::TwoCheckoutLedger, DriftKind::Missing) => {
                "in 2Checkout, missing from the ledger"
            }
            (Sides::TwoCheckoutLedger, DriftKind::Extra) => "in the ledger, unknown to 2Checkout",
            (Sides::TwoCheckoutLedger, DriftKind::Differs) => "ledger differs from 2Checkout",
            (Sides::LedgerSalesforce, DriftKind::Missing) => "missing from Salesforce",
            (Sides::LedgerSalesforce, DriftKind::Extra) => "in Salesforce, unknown to the ledger",
            (Sides::LedgerSalesforce, DriftKind::Differs) => "Salesforce differs from the ledger",
        };
        let mut s = format!(
            "{:<12} {} {}: {side}",
            self.refno,
            self.object,
            kind_word(self.kind)
        );
        if let Some(f) = &self.field {
            let show = |v: &Option<Value>| match v {
                Some(Value::String(s)) => s.clone(),
                Some(Value::Null) | None => "(none)".to_owned(),
                Some(v) => v.to_string(),
            };
            s.push_str(&format!(
                " — {f}: expected {}, found {}",
                show(&self.expected),
                show(&self.actual)
            ));
            if let Some(d) = &self.difference {
                s.push_str(&format!(" (difference {d})"));
            }
        }
        s
    }
}

fn kind_word(k: DriftKind) -> &'static str {
    match k {
        DriftKind::Missing => "MISSING",
        DriftKind::Extra => "EXTRA",
        DriftKind::Differs => "DIFFERS",
    }
}

/// An exact decimal from a JSON number or numeric string.
fn number(v: &Value) -> Option<Decimal> {
    match v {
        Value::Number(n) => parse_decimal(&n.to_string()),
        Value::String(s) => parse_decimal(s.trim()),
        _ => None,
    }
}

fn dec_json(d: Option<Decimal>) -> Value {
    d.map_or(Value::Null, |d| Value::String(d.normalize().to_string()))
}

/// The whole report.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct DriftReport {
    pub since: Option<NaiveDate>,
    pub until: Option<NaiveDate>,
    /// Orders 2Checkout reports in the window.
    pub twocheckout_orders: usize,
    /// Ledger orders in the window.
    pub ledger_orders: usize,
    /// Opportunities compared.
    pub salesforce_compared: usize,
    pub drift: Vec<Drift>,
    /// What `--repair` did, when asked.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub repair: Option<RepairSummary>,
}

impl DriftReport {
    /// Number of disagreements of `kind`.
    pub fn count(&self, sides: Sides, kind: DriftKind) -> usize {
        self.drift
            .iter()
            .filter(|d| d.sides == sides && d.kind == kind)
            .count()
    }

    /// True when all three sides agree.
    pub fn is_clean(&self) -> bool {
        self.drift.is_empty()
    }
}

/// What a repair enqueued.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct RepairSummary {
    /// Orders applied to the ledger from 2Checkout.
    pub ledger_orders_applied: usize,
    /// Orders whose Salesforce records were re-enqueued.
    pub salesforce_orders: usize,
    /// Intents enqueued (before merging in the outbox).
    pub intents: usize,
}

// ---------------------------------------------------------------------------------
// Pure comparisons

/// 2Checkout vs ledger for the window's orders. `ledger` holds the ledger orders dated in the
/// window plus any other the REST side names.
pub fn compare_orders(
    rest: &BTreeMap<String, RestOrder>,
    ledger: &BTreeMap<String, OrderRecord>,
) -> Vec<Drift> {
    let s = Sides::TwoCheckoutLedger;
    let mut out = Vec::new();
    for (refno, r) in rest {
        let Some(l) = ledger.get(refno) else {
            out.push(Drift::new(s, DriftKind::Missing, "Order", refno));
            continue;
        };
        let rest_status = r.status.as_str().to_owned();
        if l.status.as_deref() != Some(rest_status.as_str()) {
            out.push(Drift::differs(
                s,
                "Order",
                refno,
                "status",
                Value::from(rest_status),
                l.status.clone().map_or(Value::Null, Value::from),
            ));
        }
        if r.currency.is_some() && r.currency != l.currency {
            out.push(Drift::differs(
                s,
                "Order",
                refno,
                "currency",
                Value::from(r.currency.map(|c| c.code())),
                Value::from(l.currency.map(|c| c.code())),
            ));
        }
        for (field, expected, actual) in [("total", r.gross, l.total), ("tax", r.vat, l.tax)] {
            if expected.is_some() && expected != actual {
                out.push(Drift::differs(
                    s,
                    "Order",
                    refno,
                    field,
                    dec_json(expected),
                    dec_json(actual),
                ));
            }
        }
    }
    for refno in ledger.keys() {
        if !rest.contains_key(refno) {
            out.push(Drift::new(s, DriftKind::Extra, "Order", refno));
        }
    }
    out
}

/// Desired state of every Salesforce record of one order, from the ledger (pure): what the
/// flows would write if the whole order had just changed.
pub fn desired_intents(
    flows: &Flows,
    customer: Option<&CustomerRecord>,
    order: &OrderRecord,
) -> Vec<RecordIntent> {
    let mut changes = vec![LedgerChange::OrderUpdated {
        refno: order.refno.clone(),
        fields: vec!["reconcile".into()],
    }];
    if let Some(c) = customer {
        changes.push(LedgerChange::CustomerChanged {
            key: c.key.clone(),
            fields: vec!["reconcile".into()],
        });
    }
    let state = LedgerState {
        customer: customer.cloned(),
        order: Some(order.clone()),
        ..LedgerState::default()
    };
    let update = LedgerUpdate {
        customer: customer.cloned(),
        order: Some(order.clone()),
        changes,
        test: order.test,
        ..LedgerUpdate::default()
    };
    flows.plan(&update, &state).intents
}

fn values_equal(expected: &Value, actual: &Value) -> bool {
    match (number(expected), number(actual)) {
        (Some(a), Some(b)) if !expected.is_string() || !actual.is_string() => a == b,
        _ => match (expected, actual) {
            (Value::String(a), Value::String(b)) => a.trim() == b.trim(),
            (a, b) => a == b,
        },
    }
}

/// Ledger (desired Opportunities) vs Salesforce rows keyed by the order external id (pure).
/// `in_window_refs` are the order references Salesforce has in the window (for extras);
/// `known_orders` the order and subscription references the ledger knows (an Opportunity
/// keyed `<subscription>:<cycle>` belongs to a known subscription).
pub fn compare_salesforce(
    desired: &BTreeMap<String, RecordIntent>,
    actual: &BTreeMap<String, Value>,
    in_window_refs: &BTreeSet<String>,
    known_orders: &BTreeSet<String>,
) -> Vec<Drift> {
    let s = Sides::LedgerSalesforce;
    let mut out = Vec::new();
    for (refno, intent) in desired {
        let Some(row) = actual.get(refno) else {
            out.push(Drift::new(s, DriftKind::Missing, &intent.sobject, refno));
            continue;
        };
        for (field, want) in &intent.fields {
            if want.is_object() {
                continue; // parent reference by external id: not a stored field
            }
            let have = row.get(field).cloned().unwrap_or(Value::Null);
            if !values_equal(want, &have) {
                out.push(Drift::differs(
                    s,
                    &intent.sobject,
                    refno,
                    field,
                    want.clone(),
                    have,
                ));
            }
        }
    }
    for refno in in_window_refs {
        // Subscription Opportunities (renewals, upsells) are keyed `<subscription>:<…>`.
        let owner = refno.split(':').next().unwrap_or(refno);
        if !known_orders.contains(refno) && !known_orders.contains(owner) {
            out.push(Drift::new(s, DriftKind::Extra, "Opportunity", refno));
        }
    }
    out
}

// ---------------------------------------------------------------------------------
// I/O

/// What to compare.
#[derive(Debug, Clone)]
pub struct ReconcileOptions {
    pub since: NaiveDate,
    pub until: Option<NaiveDate>,
    /// REST page size.
    pub page_size: usize,
    /// SOQL `IN` batch size.
    pub soql_batch: usize,
}

/// Loaded data of one run, kept for the repair.
struct Loaded {
    rest: BTreeMap<String, RestOrder>,
    orders: BTreeMap<String, OrderRecord>,
    customers: BTreeMap<String, CustomerRecord>,
}

/// The reconciliation job.
pub struct Reconciler {
    store: Arc<dyn Store>,
    flows: Arc<Flows>,
    rest: RestClient,
    salesforce: salesforce::Client,
}

fn decode<T: serde::de::DeserializeOwned>(
    r: &crate::store::LedgerRecord,
) -> Result<T, ReconcileError> {
    serde_json::from_str(&r.body).map_err(|e| ReconcileError::Ledger {
        kind: r.kind.clone(),
        key: r.key.clone(),
        message: e.to_string(),
    })
}

impl Reconciler {
    pub fn new(
        store: Arc<dyn Store>,
        flows: Arc<Flows>,
        rest: RestClient,
        salesforce: salesforce::Client,
    ) -> Reconciler {
        Reconciler {
            store,
            flows,
            rest,
            salesforce,
        }
    }

    /// Compares the three sides; with `repair`, enqueues what fixes Salesforce.
    pub async fn run(
        &self,
        options: &ReconcileOptions,
        repair: bool,
    ) -> Result<DriftReport, ReconcileError> {
        let loaded = self.load(options).await?;
        let mut report = DriftReport {
            since: Some(options.since),
            until: options.until,
            twocheckout_orders: loaded.rest.len(),
            ..DriftReport::default()
        };
        report.ledger_orders = loaded
            .orders
            .values()
            .filter(|o| in_window(o, options))
            .count();
        let window_orders: BTreeMap<String, OrderRecord> = loaded
            .orders
            .iter()
            .filter(|(k, o)| in_window(o, options) || loaded.rest.contains_key(*k))
            .map(|(k, o)| (k.clone(), o.clone()))
            .collect();
        report
            .drift
            .extend(compare_orders(&loaded.rest, &window_orders));

        // Desired Opportunities of the window's ledger orders.
        let order_field = self.flows.config().external_ids.order.clone();
        let mut desired: BTreeMap<String, RecordIntent> = BTreeMap::new();
        for o in window_orders.values() {
            let customer = o
                .customer_key
                .as_ref()
                .and_then(|k| loaded.customers.get(k));
            if let Some(opp) = desired_intents(&self.flows, customer, o)
                .into_iter()
                .find(|i| i.sobject == "Opportunity")
            {
                desired.insert(o.refno.clone(), opp);
            }
        }
        let fields: BTreeSet<String> = desired
            .values()
            .flat_map(|i| i.fields.iter())
            .filter(|(_, v)| !v.is_object())
            .map(|(k, _)| k.clone())
            .collect();
        let actual = self
            .opportunities(
                &order_field,
                &fields,
                desired.keys().cloned().collect(),
                options.soql_batch.clamp(1, 500),
            )
            .await?;
        let in_window_refs = self.opportunities_in_window(&order_field, options).await?;
        report.salesforce_compared = desired.len();
        let mut known: BTreeSet<String> = loaded.orders.keys().cloned().collect();
        for r in self.store.ledger_records_of_kind(SUBSCRIPTION).await? {
            known.insert(r.key);
        }
        report.drift.extend(compare_salesforce(
            &desired,
            &actual,
            &in_window_refs,
            &known,
        ));

        if repair {
            report.repair = Some(self.repair(&loaded, &report.drift).await?);
        }
        Ok(report)
    }

    async fn load(&self, options: &ReconcileOptions) -> Result<Loaded, ReconcileError> {
        let mut rest = BTreeMap::new();
        let mut page = 1;
        loop {
            let p = self
                .rest
                .search_orders(&OrderSearch {
                    start: options.since,
                    end: options.until,
                    status: None,
                    page,
                    limit: options.page_size.clamp(1, 200),
                })
                .await?;
            for item in &p.items {
                match RestOrder::from_json(item) {
                    Ok(o) => {
                        rest.insert(o.refno.clone(), o);
                    }
                    Err(e) => tracing::warn!(error = %e, "unreadable 2Checkout order skipped"),
                }
            }
            if p.is_last() {
                break;
            }
            page += 1;
        }
        let mut orders = BTreeMap::new();
        for r in self.store.ledger_records_of_kind(ORDER).await? {
            let o: OrderRecord = decode(&r)?;
            orders.insert(o.refno.clone(), o);
        }
        let mut customers = BTreeMap::new();
        for r in self.store.ledger_records_of_kind(CUSTOMER).await? {
            let c: CustomerRecord = decode(&r)?;
            customers.insert(c.key.clone(), c);
        }
        Ok(Loaded {
            rest,
            orders,
            customers,
        })
    }

    /// Opportunities by order reference, read in batches of `IN` lists.
    async fn opportunities(
        &self,
        order_field: &str,
        fields: &BTreeSet<String>,
        refs: Vec<String>,
        batch: usize,
    ) -> Result<BTreeMap<String, Value>, ReconcileError> {
        let mut out = BTreeMap::new();
        let mut select: Vec<String> = vec!["Id".into(), order_field.to_owned()];
        select.extend(fields.iter().filter(|f| *f != order_field).cloned());
        for chunk in refs.chunks(batch) {
            let soql = format!(
                "SELECT {} FROM Opportunity WHERE {order_field} IN {}",
                select.join(", "),
                salesforce::soql::in_list(chunk)?
            );
            let rows: Vec<Value> = self.salesforce.query_all(&soql).await?;
            for row in rows {
                if let Some(r) = row.get(order_field).and_then(Value::as_str) {
                    out.insert(r.to_owned(), row.clone());
                }
            }
        }
        Ok(out)
    }

    /// Order references of the Opportunities closing in the window.
    async fn opportunities_in_window(
        &self,
        order_field: &str,
        options: &ReconcileOptions,
    ) -> Result<BTreeSet<String>, ReconcileError> {
        let mut soql = format!(
            "SELECT Id, {order_field} FROM Opportunity WHERE {order_field} != null AND CloseDate >= {}",
            options.since.format("%Y-%m-%d")
        );
        if let Some(u) = options.until {
            soql.push_str(&format!(" AND CloseDate <= {}", u.format("%Y-%m-%d")));
        }
        let rows: Vec<Value> = self.salesforce.query_all(&soql).await?;
        Ok(rows
            .iter()
            .filter_map(|r| r.get(order_field)?.as_str().map(str::to_owned))
            .collect())
    }

    async fn repair(
        &self,
        loaded: &Loaded,
        drift: &[Drift],
    ) -> Result<RepairSummary, ReconcileError> {
        let mut summary = RepairSummary::default();
        // Orders missing from the ledger: apply them as a backfill does (which enqueues
        // their intents).
        let missing: Vec<&RestOrder> = drift
            .iter()
            .filter(|d| d.sides == Sides::TwoCheckoutLedger && d.kind == DriftKind::Missing)
            .filter_map(|d| loaded.rest.get(&d.refno))
            .collect();
        if !missing.is_empty() {
            let (applied, intents) = self.apply_rest_orders(&missing).await?;
            summary.ledger_orders_applied = applied;
            summary.intents += intents;
        }
        // Salesforce records missing or differing: enqueue the desired state again.
        let refs: BTreeSet<&str> = drift
            .iter()
            .filter(|d| {
                d.sides == Sides::LedgerSalesforce
                    && matches!(d.kind, DriftKind::Missing | DriftKind::Differs)
            })
            .map(|d| d.refno.as_str())
            .collect();
        let mut intents = Vec::new();
        for refno in &refs {
            let Some(o) = loaded.orders.get(*refno) else {
                continue;
            };
            let customer = o
                .customer_key
                .as_ref()
                .and_then(|k| loaded.customers.get(k));
            // Only the Opportunity: Accounts and Contacts are not reconciled here, and a
            // company Account shared by colleagues must keep what its latest event wrote.
            intents.extend(backfill::at_backfill_priority(
                desired_intents(&self.flows, customer, o)
                    .into_iter()
                    .filter(|i| i.sobject == "Opportunity")
                    .collect(),
            ));
            summary.salesforce_orders += 1;
        }
        if !intents.is_empty() {
            self.store.enqueue(&intents, Micros::now()).await?;
            summary.intents += intents.len();
        }
        tracing::info!(
            ledger_orders = summary.ledger_orders_applied,
            salesforce_orders = summary.salesforce_orders,
            intents = summary.intents,
            "reconcile repair enqueued"
        );
        Ok(summary)
    }

    async fn apply_rest_orders(
        &self,
        orders: &[&RestOrder],
    ) -> Result<(usize, usize), ReconcileError> {
        let ctx = self.flows.config().ledger_context();
        let mut keys = Vec::new();
        for o in orders {
            keys.extend(backfill::record_keys(&o.touched()));
        }
        keys.sort();
        keys.dedup();
        for _ in 0..5 {
            let mut work = backfill::Working::load(self.store.as_ref(), &keys).await?;
            let mut intents = Vec::new();
            let mut applied = 0;
            for o in orders {
                let state = work.state(&o.touched());
                let update = backfill::apply_order(&state, o, &ctx);
                if update.customer.is_none() && update.order.is_none() {
                    continue;
                }
                applied += 1;
                let after = state.after(&update);
                intents.extend(backfill::at_backfill_priority(
                    self.flows.plan(&update, &after).intents,
                ));
                work.absorb(&update);
            }
            let effects = crate::store::Effects {
                records: work.writes(),
                intents,
            };
            match self.store.commit_records(&effects, Micros::now()).await {
                Ok(()) => return Ok((applied, effects.intents.len())),
                Err(StoreError::Conflict(_)) => continue,
                Err(e) => return Err(e.into()),
            }
        }
        Err(BackfillError::Contended { page: 0 }.into())
    }
}

fn in_window(o: &OrderRecord, options: &ReconcileOptions) -> bool {
    let Some(d) = o.sale_date.map(|d| d.date()) else {
        return false;
    };
    d >= options.since && options.until.is_none_or(|u| d <= u)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use twocheckout::money::Currency;

    fn rest(refno: &str, status: &str, gross: i64) -> RestOrder {
        RestOrder::from_json(&json!({
            "RefNo": refno, "Status": status, "Currency": "USD", "GrossPrice": gross,
            "VAT": 0, "OrderDate": "2025-01-06 09:00:00",
        }))
        .unwrap()
    }

    fn ledger_order(refno: &str, status: &str, total: Decimal) -> OrderRecord {
        let mut o = OrderRecord::new(refno);
        o.status = Some(status.into());
        o.currency = Currency::from_code("USD").ok();
        o.total = Some(total);
        o.tax = Some(Decimal::ZERO);
        o
    }

    #[test]
    fn orders_missing_extra_and_differing() {
        let rest: BTreeMap<_, _> = [
            ("1".to_owned(), rest("1", "COMPLETE", 100)),
            ("2".to_owned(), rest("2", "COMPLETE", 100)),
            ("3".to_owned(), rest("3", "REFUND", 50)),
        ]
        .into();
        let ledger: BTreeMap<_, _> = [
            (
                "1".to_owned(),
                ledger_order("1", "COMPLETE", Decimal::new(100, 0)),
            ),
            (
                "3".to_owned(),
                ledger_order("3", "COMPLETE", Decimal::new(4999, 2)),
            ),
            ("4".to_owned(), ledger_order("4", "COMPLETE", Decimal::ONE)),
        ]
        .into();
        let d = compare_orders(&rest, &ledger);
        let lines: Vec<String> = d.iter().map(Drift::line).collect();
        assert_eq!(d.len(), 4, "{lines:#?}");
        assert_eq!((d[0].kind, d[0].refno.as_str()), (DriftKind::Missing, "2"));
        assert_eq!(d[1].field.as_deref(), Some("status"));
        assert_eq!(d[2].field.as_deref(), Some("total"));
        assert_eq!(d[2].difference.as_deref(), Some("-0.01"));
        assert_eq!((d[3].kind, d[3].refno.as_str()), (DriftKind::Extra, "4"));
        assert!(
            lines[2].contains("expected 50, found 49.99 (difference -0.01)"),
            "{}",
            lines[2]
        );
    }

    #[test]
    fn salesforce_numbers_compare_as_decimals() {
        let intent = RecordIntent {
            sobject: "Opportunity".into(),
            key: crate::intent::RecordKey::external("TwoCheckout_Order_Ref__c", "1"),
            fields: [
                ("Amount".to_owned(), json!(12.5)),
                ("StageName".to_owned(), json!("Closed Won")),
                (
                    "Account".to_owned(),
                    json!({"TwoCheckout_Customer_Ref__c": "c"}),
                ),
            ]
            .into(),
            partition: "c".into(),
            priority: Default::default(),
        };
        let desired: BTreeMap<_, _> =
            [("1".to_owned(), intent.clone()), ("2".to_owned(), intent)].into();
        let actual: BTreeMap<_, _> = [(
            "1".to_owned(),
            json!({"Amount": 12.50, "StageName": "Closed Won"}),
        )]
        .into();
        let known: BTreeSet<String> = ["1".to_owned(), "2".to_owned()].into();
        let in_sf: BTreeSet<String> = ["1".to_owned(), "9".to_owned()].into();
        let d = compare_salesforce(&desired, &actual, &in_sf, &known);
        assert_eq!(
            d.iter()
                .map(|d| (d.kind, d.refno.as_str()))
                .collect::<Vec<_>>(),
            vec![(DriftKind::Missing, "2"), (DriftKind::Extra, "9")]
        );
        let actual: BTreeMap<_, _> = [(
            "1".to_owned(),
            json!({"Amount": 12.49, "StageName": "Closed Won"}),
        )]
        .into();
        let d = compare_salesforce(&desired, &actual, &BTreeSet::new(), &known);
        assert_eq!(d[0].field.as_deref(), Some("Amount"));
        assert_eq!(d[0].difference.as_deref(), Some("-0.01"));
    }
}
