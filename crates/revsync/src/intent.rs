//! Record intents: "this Salesforce record, addressed by this external id, should have these
//! field values". Flows produce them (pure), the outbox keeps and merges them, the sink turns
//! them into as few API calls as possible. An intent is desired state, never a command: it
//! can be applied any number of times with the same result.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// How the sink addresses the record. Always something revsync owns or already knows, so
/// every write is a replayable upsert or an update by a known id — never a blind create.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(tag = "by", rename_all = "snake_case")]
pub enum RecordKey {
    /// Upsert by an external-id field revsync owns (e.g. `TwoCheckout_Order_Ref__c`).
    ExternalId { field: String, value: String },
    /// Update a record whose Salesforce id is known (e.g. linked by matching).
    Id { id: String },
}

impl RecordKey {
    pub fn external(field: &str, value: &str) -> RecordKey {
        RecordKey::ExternalId {
            field: field.to_owned(),
            value: value.to_owned(),
        }
    }

    /// The value that identifies the record (external id value or Salesforce id).
    pub fn value(&self) -> &str {
        match self {
            RecordKey::ExternalId { value, .. } => value,
            RecordKey::Id { id } => id,
        }
    }
}

/// Which work goes first when the API budget is short: payments, then rollups, then
/// backfills.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, Default,
)]
#[serde(rename_all = "snake_case")]
pub enum Priority {
    #[default]
    Payment = 0,
    Rollup = 1,
    Backfill = 2,
}

impl Priority {
    pub fn as_i64(self) -> i64 {
        self as i64
    }
    pub fn from_i64(v: i64) -> Priority {
        match v {
            0 => Priority::Payment,
            1 => Priority::Rollup,
            _ => Priority::Backfill,
        }
    }
}

/// Desired state of one Salesforce record.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RecordIntent {
    /// sObject API name, e.g. `Opportunity`.
    pub sobject: String,
    pub key: RecordKey,
    /// Field API name → value. A parent is referenced by its external id as Salesforce
    /// allows in a body: `"Account": {"TwoCheckout_Customer_Ref__c": "77001"}`.
    pub fields: BTreeMap<String, serde_json::Value>,
    /// Writes with the same partition are applied in order (the customer key), so that one
    /// customer's records never race each other.
    pub partition: String,
    pub priority: Priority,
}

impl RecordIntent {
    /// Identity of the record this intent targets; two intents with the same identity merge.
    pub fn identity(&self) -> (String, RecordKey) {
        (self.sobject.clone(), self.key.clone())
    }

    /// Merges a later intent for the same record into this one: later field values win,
    /// fields only the earlier intent set are kept.
    pub fn merge(&mut self, later: RecordIntent) {
        debug_assert_eq!(self.identity(), later.identity());
        self.fields.extend(later.fields);
        self.priority = self.priority.min(later.priority);
        self.partition = later.partition;
    }
}

/// The intents one event produced, in write order (parents before children). The sink
/// writes them as one all-or-nothing unit (a Composite Graph) where it can.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct IntentSet {
    pub intents: Vec<RecordIntent>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn intent(fields: serde_json::Value, priority: Priority) -> RecordIntent {
        RecordIntent {
            sobject: "Account".into(),
            key: RecordKey::external("TwoCheckout_Customer_Ref__c", "77001"),
            fields: serde_json::from_value(fields).unwrap(),
            partition: "77001".into(),
            priority,
        }
    }

    #[test]
    fn merge_keeps_earlier_fields_and_lets_later_values_win() {
        let mut a = intent(json!({"Name": "Acme", "Phone": "1"}), Priority::Rollup);
        a.merge(intent(
            json!({"Phone": "2", "Website": "acme.example"}),
            Priority::Payment,
        ));
        assert_eq!(
            serde_json::to_value(&a.fields).unwrap(),
            json!({"Name": "Acme", "Phone": "2", "Website": "acme.example"})
        );
        assert_eq!(a.priority, Priority::Payment);
    }

    #[test]
    fn keys_round_trip_through_json() {
        let k = RecordKey::Id {
            id: "001000000000001AAA".into(),
        };
        let s = serde_json::to_string(&k).unwrap();
        assert_eq!(s, r#"{"by":"id","id":"001000000000001AAA"}"#);
        assert_eq!(serde_json::from_str::<RecordKey>(&s).unwrap(), k);
    }
}
