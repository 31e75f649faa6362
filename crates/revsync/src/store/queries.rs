//! [`Queries`]: read-only views of the store for operators (the dashboard and its JSON API).
//!
//! Nothing here changes state. Every query is bounded by a limit the caller passes, so a
//! large event log never turns a page refresh into a full read of the database.

use async_trait::async_trait;

use super::{DeadLetter, Event, Micros, StoreError, SyncLogEntry};

/// The most rows a search returns, whatever the caller asks for.
pub const MAX_SEARCH_RESULTS: i64 = 200;

/// A delivery without its body: what the dashboard shows of an event's deliveries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeliverySummary {
    pub id: i64,
    pub event_id: i64,
    pub kind: String,
    pub received_at: Micros,
    pub content_type: String,
    pub remote_addr: Option<String>,
    pub signature_algorithm: String,
    /// Size of the raw body in bytes.
    pub body_bytes: i64,
}

/// Events processed for one notification kind (`ipn`, `lcn`, `ins`) in the recent past.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FlowThroughput {
    pub kind: String,
    pub processed_last_minute: i64,
    pub processed_last_hour: i64,
    /// Mean time from the first delivery to the event's completion, over the last hour.
    pub latency_avg_us: Option<i64>,
    /// Longest such time over the last hour.
    pub latency_max_us: Option<i64>,
}

/// Throughput of the pipeline: events per kind, and what reached Salesforce.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Throughput {
    /// One entry per kind that processed anything in the last hour, ordered by kind.
    pub flows: Vec<FlowThroughput>,
    /// Outbox rows written to Salesforce in the last minute / hour.
    pub outbox_written_last_minute: i64,
    pub outbox_written_last_hour: i64,
    /// Dead letters created in the last hour.
    pub dead_letters_last_hour: i64,
}

/// Read-only queries for operators.
#[async_trait]
pub trait Queries: Send + Sync + 'static {
    /// The newest events first. `before` pages backwards: only events with a smaller id.
    async fn recent_events(
        &self,
        before: Option<i64>,
        limit: i64,
    ) -> Result<Vec<Event>, StoreError>;

    /// Events an operator is looking for, newest first, at most `limit`
    /// (capped at [`MAX_SEARCH_RESULTS`]):
    /// - events whose reference (order reference, licence code, sale id) or customer key
    ///   contains `text` (case-insensitive; `%` and `_` are matched literally);
    /// - events of the ledger records that hold a string value equal to `text`
    ///   (case-insensitive), e.g. a customer's e-mail or a subscription reference of an order.
    ///   A record that is a customer's own (its key is its customer key) yields that
    ///   customer's events; any other record yields the events whose reference is its key.
    async fn search_events(&self, text: &str, limit: i64) -> Result<Vec<Event>, StoreError>;

    /// The deliveries of an event, oldest first, without their bodies.
    async fn delivery_summaries(&self, event_id: i64) -> Result<Vec<DeliverySummary>, StoreError>;

    /// The sync log of several events at once, in the order it was written.
    async fn sync_logs(&self, event_ids: &[i64]) -> Result<Vec<SyncLogEntry>, StoreError>;

    /// One dead letter, whatever its status.
    async fn dead_letter(&self, id: i64) -> Result<Option<DeadLetter>, StoreError>;

    /// Events processed per kind in the minute and hour before `now`, their latency, and
    /// what the sink wrote in the same windows.
    async fn throughput(&self, now: Micros) -> Result<Throughput, StoreError>;
}

/// Escapes `%`, `_` and the escape character itself for a `LIKE … ESCAPE '\'` pattern.
pub(crate) fn escape_like(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if matches!(c, '%' | '_' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// True when `value` is, or contains at any depth, a string equal to `needle` ignoring case.
/// Object keys do not count, only values.
pub(crate) fn json_has_string_value(value: &serde_json::Value, needle_lower: &str) -> bool {
    match value {
        serde_json::Value::String(s) => s.to_lowercase() == needle_lower,
        serde_json::Value::Array(items) => {
            items.iter().any(|v| json_has_string_value(v, needle_lower))
        }
        serde_json::Value::Object(map) => {
            map.values().any(|v| json_has_string_value(v, needle_lower))
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::json;

    #[test]
    fn like_wildcards_are_escaped() {
        assert_eq!(escape_like("50%_off\\"), "50\\%\\_off\\\\");
        assert_eq!(escape_like("plain"), "plain");
    }

    #[test]
    fn only_values_match_not_keys() {
        let doc = json!({"email": "A@B.example", "subscription_refs": ["XRIL"], "n": 3});
        assert!(json_has_string_value(&doc, "a@b.example"));
        assert!(json_has_string_value(&doc, "xril"));
        assert!(!json_has_string_value(&doc, "email"));
        assert!(!json_has_string_value(&doc, "3"));
    }

    /// Un-escapes a pattern the way `LIKE … ESCAPE '\'` reads it, refusing wildcards.
    fn literal_of(pattern: &str) -> Option<String> {
        let mut out = String::new();
        let mut chars = pattern.chars();
        while let Some(c) = chars.next() {
            match c {
                '\\' => out.push(chars.next()?),
                '%' | '_' => return None,
                c => out.push(c),
            }
        }
        Some(out)
    }

    proptest! {
        #[test]
        fn escaped_patterns_are_literal(text in ".*") {
            prop_assert_eq!(literal_of(&escape_like(&text)), Some(text));
        }
    }
}
