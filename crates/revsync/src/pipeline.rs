//! The event handler that turns a verified notification into effects: load the ledger records
//! it touches, apply it ([`crate::ledger::apply`]), plan record intents
//! ([`crate::flows::Flows::plan`]), and hand both back to the processor, which commits them
//! with the event's completion in one transaction.

use std::sync::Arc;

use async_trait::async_trait;
use serde::de::DeserializeOwned;
use serde::Serialize;
use twocheckout::notification::Notification;

use crate::flows::Flows;
use crate::ledger::{
    self, CustomerRecord, LedgerContext, LedgerState, OrderRecord, SubscriptionRecord,
};
use crate::processor::{EventHandler, HandleError};
use crate::store::{Effects, Event, LedgerRecord, RecordWrite, Store};

/// Ledger record kinds as stored.
pub const CUSTOMER: &str = "customer";
pub const ORDER: &str = "order";
pub const SUBSCRIPTION: &str = "subscription";

/// The ledger + flows handler.
pub struct LedgerHandler {
    store: Arc<dyn Store>,
    flows: Arc<Flows>,
    context: LedgerContext,
}

impl LedgerHandler {
    pub fn new(store: Arc<dyn Store>, flows: Arc<Flows>) -> LedgerHandler {
        let context = flows.config().ledger_context();
        LedgerHandler {
            store,
            flows,
            context,
        }
    }
}

fn decode<T: DeserializeOwned>(record: &LedgerRecord) -> Result<T, HandleError> {
    serde_json::from_str(&record.body).map_err(|e| {
        HandleError::Permanent(format!(
            "ledger record {}/{} is unreadable: {e}",
            record.kind, record.key
        ))
    })
}

fn write<T: Serialize>(
    kind: &str,
    key: &str,
    customer_key: Option<&str>,
    value: &T,
    loaded: Option<&LedgerRecord>,
) -> RecordWrite {
    RecordWrite {
        kind: kind.to_owned(),
        key: key.to_owned(),
        customer_key: customer_key.map(str::to_owned),
        body: serde_json::to_string(value).expect("ledger records serialize"),
        expected_version: loaded.map(|r| r.version),
    }
}

/// The ledger records a notification reads, as `(kind, key)`.
fn keys_of(notification: &Notification) -> Vec<(String, String)> {
    let touched = ledger::touched(notification);
    [
        (CUSTOMER, touched.customer),
        (ORDER, touched.order),
        (SUBSCRIPTION, touched.subscription),
    ]
    .into_iter()
    .filter_map(|(kind, key)| Some((kind.to_owned(), key?)))
    .collect()
}

#[async_trait]
impl EventHandler for LedgerHandler {
    /// The ledger records [`LedgerHandler::handle`] loads: it reads nothing else.
    fn footprint(&self, notification: &Notification) -> Option<Vec<String>> {
        Some(
            keys_of(notification)
                .into_iter()
                .map(|(kind, key)| format!("{kind}/{key}"))
                .collect(),
        )
    }

    async fn handle(
        &self,
        event: &Event,
        notification: &Notification,
    ) -> Result<Effects, HandleError> {
        let loaded = self.load(&keys_of(notification)).await?;
        self.apply(event, notification, &loaded)
    }

    /// One read for the whole run's ledger records.
    async fn handle_run(
        &self,
        run: &[(&Event, &Notification)],
    ) -> Vec<Result<Effects, HandleError>> {
        let keys: Vec<(String, String)> = run.iter().flat_map(|(_, n)| keys_of(n)).collect();
        match self.load(&keys).await {
            Ok(loaded) => run
                .iter()
                .map(|(event, n)| self.apply(event, n, &loaded))
                .collect(),
            Err(e) => run
                .iter()
                .map(|_| Err(HandleError::Retry(e.to_string())))
                .collect(),
        }
    }
}

impl LedgerHandler {
    async fn load(&self, keys: &[(String, String)]) -> Result<Vec<LedgerRecord>, HandleError> {
        self.store
            .ledger_records(keys)
            .await
            .map_err(|e| HandleError::Retry(e.to_string()))
    }

    /// Applies one notification to the records it touches (found among `loaded`) and plans
    /// its intents.
    fn apply(
        &self,
        event: &Event,
        notification: &Notification,
        loaded: &[LedgerRecord],
    ) -> Result<Effects, HandleError> {
        let keys = keys_of(notification);
        let find = |kind: &str| {
            let key = keys.iter().find(|(k, _)| k == kind).map(|(_, key)| key)?;
            loaded.iter().find(|r| r.kind == kind && &r.key == key)
        };
        let customer_row = find(CUSTOMER);
        let order_row = find(ORDER);
        let subscription_row = find(SUBSCRIPTION);
        let state = LedgerState {
            customer: customer_row.map(decode::<CustomerRecord>).transpose()?,
            order: order_row.map(decode::<OrderRecord>).transpose()?,
            subscription: subscription_row
                .map(decode::<SubscriptionRecord>)
                .transpose()?,
        };

        let update = ledger::apply(&state, notification, event.id, &self.context);
        let after = state.after(&update);
        let intents = self.flows.plan(&update, &after).intents;
        for intent in &intents {
            metrics::counter!("revsync_intents_total", "sobject" => intent.sobject.clone())
                .increment(1);
        }

        let mut records = Vec::new();
        if let Some(c) = &update.customer {
            records.push(write(CUSTOMER, &c.key, Some(&c.key), c, customer_row));
        }
        if let Some(o) = &update.order {
            records.push(write(
                ORDER,
                &o.refno,
                o.customer_key.as_deref(),
                o,
                order_row,
            ));
        }
        if let Some(s) = &update.subscription {
            records.push(write(
                SUBSCRIPTION,
                &s.reference,
                s.customer_key.as_deref(),
                s,
                subscription_row,
            ));
        }
        tracing::debug!(
            event_id = event.id,
            reference = %event.reference,
            changes = update.changes.len(),
            intents = intents.len(),
            "event applied to the ledger"
        );
        Ok(Effects { records, intents })
    }
}
