//! API call accounting: the rolling 24-hour allocation, per-resource counters and the
//! `/limits` document.
//!
//! Accounting follows reference §3.7/§4: every REST request under `/services/data/vXX.X/`
//! is one call (query pages, describe, `/limits` included), composite / graph /
//! collections are one call each, each Bulk API 2.0 HTTP request is one call
//! (UNCONFIRMED in the reference, stated for Bulk 1.0), and neither the versions list
//! (`/services/data`) nor OAuth/SOAP login requests count (token calls: UNCONFIRMED).

use serde::Serialize;
use serde_json::{json, Value};
use std::collections::{BTreeMap, VecDeque};
use std::time::{SystemTime, UNIX_EPOCH};

/// Snapshot of the call counters.
#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
pub struct CallStats {
    /// Calls counted against the allocation since start (or the last reset).
    pub api_calls: u64,
    /// Every HTTP request received (including token calls and rejected requests).
    pub http_requests: u64,
    /// Token endpoint and SOAP login requests.
    pub token_requests: u64,
    /// Counted calls per resource (`sobjects`, `query`, `composite`, `composite/graph`,
    /// `composite/sobjects`, `jobs/ingest`, `limits`, ...).
    pub per_resource: BTreeMap<String, u64>,
    /// Requests refused with `REQUEST_LIMIT_EXCEEDED`.
    pub rejected_over_limit: u64,
    /// Usage in the rolling 24-hour window (what `Sforce-Limit-Info` reports).
    pub api_usage: u64,
    /// The allocation.
    pub api_limit: u64,
    /// Bulk API batches consumed (10,000 records each; UNCONFIRMED size).
    pub bulk_batches: u64,
}

/// Rolling-window usage plus counters.
#[derive(Debug)]
pub struct Usage {
    limit: u64,
    /// (minute since epoch, calls in that minute).
    buckets: VecDeque<(u64, u64)>,
    stats: CallStats,
}

fn minute_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() / 60)
        .unwrap_or(0)
}

const WINDOW_MINUTES: u64 = 24 * 60;

impl Usage {
    pub fn new(limit: u64) -> Self {
        Usage {
            limit,
            buckets: VecDeque::new(),
            stats: CallStats {
                api_limit: limit,
                ..CallStats::default()
            },
        }
    }

    fn expire(&mut self) {
        let now = minute_now();
        while self
            .buckets
            .front()
            .is_some_and(|(m, _)| now.saturating_sub(*m) >= WINDOW_MINUTES)
        {
            self.buckets.pop_front();
        }
    }

    /// Calls used in the rolling window.
    pub fn used(&mut self) -> u64 {
        self.expire();
        self.buckets.iter().map(|(_, n)| n).sum()
    }

    pub fn limit(&self) -> u64 {
        self.limit
    }

    /// Counts one HTTP request.
    pub fn http_request(&mut self) {
        self.stats.http_requests += 1;
    }

    pub fn token_request(&mut self) {
        self.stats.token_requests += 1;
    }

    /// Tries to take one call for `resource`; `false` when the allocation is used up.
    pub fn take(&mut self, resource: &str) -> bool {
        if self.used() >= self.limit {
            self.stats.rejected_over_limit += 1;
            return false;
        }
        let now = minute_now();
        match self.buckets.back_mut() {
            Some((m, n)) if *m == now => *n += 1,
            _ => self.buckets.push_back((now, 1)),
        }
        self.stats.api_calls += 1;
        *self
            .stats
            .per_resource
            .entry(resource.to_string())
            .or_default() += 1;
        true
    }

    /// Sets the window usage to `n` (fault injection: simulate other integrations).
    pub fn set_usage(&mut self, n: u64) {
        self.buckets.clear();
        self.buckets.push_back((minute_now(), n));
    }

    pub fn set_limit(&mut self, limit: u64) {
        self.limit = limit;
        self.stats.api_limit = limit;
    }

    pub fn add_bulk_batches(&mut self, n: u64) {
        self.stats.bulk_batches += n;
    }

    /// `Sforce-Limit-Info` header value.
    pub fn header(&mut self) -> String {
        format!("api-usage={}/{}", self.used(), self.limit)
    }

    pub fn stats(&mut self) -> CallStats {
        let used = self.used();
        let mut s = self.stats.clone();
        s.api_usage = used;
        s.api_limit = self.limit;
        s
    }

    /// The `/limits` document (shape of reference §4).
    pub fn limits_json(&mut self) -> Value {
        let used = self.used();
        let remaining = self.limit.saturating_sub(used);
        let batches = 15_000u64.saturating_sub(self.stats.bulk_batches);
        let max_rem = |max: u64| json!({"Max": max, "Remaining": max});
        json!({
            "ConcurrentAsyncGetReportInstances": max_rem(200),
            "ConcurrentSyncReportRuns": max_rem(20),
            "DailyApiRequests": {"Max": self.limit, "Remaining": remaining},
            "DailyAsyncApexExecutions": max_rem(250_000),
            "DailyBulkApiBatches": {"Max": 15_000, "Remaining": batches},
            "DailyBulkApiRequests": {"Max": 15_000, "Remaining": batches},
            "DailyBulkV2QueryFileStorageMB": max_rem(976_562),
            "DailyBulkV2QueryJobs": max_rem(10_000),
            "DailyStreamingApiEvents": max_rem(1_000_000),
            "DataStorageMB": max_rem(1024),
            "FileStorageMB": max_rem(1024),
            "HourlyODataCallout": max_rem(10_000),
            "StreamingApiConcurrentClients": max_rem(2_000),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn take_counts_and_refuses_at_limit() {
        let mut u = Usage::new(3);
        assert!(u.take("sobjects"));
        assert!(u.take("query"));
        assert!(u.take("query"));
        assert!(!u.take("query"));
        let s = u.stats();
        assert_eq!((s.api_calls, s.api_usage, s.rejected_over_limit), (3, 3, 1));
        assert_eq!(s.per_resource["query"], 2);
        assert_eq!(u.header(), "api-usage=3/3");
        u.set_usage(1);
        assert!(u.take("limits"));
        assert_eq!(
            u.limits_json()["DailyApiRequests"],
            json!({"Max": 3, "Remaining": 1})
        );
    }
}
