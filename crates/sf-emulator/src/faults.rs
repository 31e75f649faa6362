//! Fault injection: latency, random `SERVER_UNAVAILABLE`, row locks, session expiry,
//! outages, API usage, and "commit then time out" (the write is applied but its response
//! is delayed or the connection dropped, so clients can test timeout replay).

use crate::Shared;
use rand::Rng;
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Added latency per request.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, Default)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Latency {
    #[default]
    None,
    Fixed {
        ms: u64,
    },
    Uniform {
        min_ms: u64,
        max_ms: u64,
    },
}

impl Latency {
    pub fn sample(&self) -> Option<Duration> {
        match *self {
            Latency::None => None,
            Latency::Fixed { ms } => Some(Duration::from_millis(ms)),
            Latency::Uniform { min_ms, max_ms } => {
                let (lo, hi) = (min_ms.min(max_ms), min_ms.max(max_ms));
                Some(Duration::from_millis(rand::thread_rng().gen_range(lo..=hi)))
            }
        }
    }
}

/// "Commit then time out" settings.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct CommitThenTimeout {
    /// Number of upcoming write requests affected.
    pub remaining: u32,
    /// Delay before the response is sent (or the connection dropped).
    pub delay_ms: u64,
    /// Drop the connection instead of answering after the delay.
    pub drop_connection: bool,
}

/// Current fault settings.
#[derive(Debug, Clone, Default, Serialize)]
pub struct FaultState {
    pub latency: Latency,
    /// Share (0.0–1.0) of requests answered with a 5xx `SERVER_UNAVAILABLE`.
    pub error_rate: f64,
    /// Status used for injected errors (503 default, or 500).
    pub error_status: Option<u16>,
    pub outage: bool,
    #[serde(skip)]
    pub outage_until: Option<Instant>,
    pub commit_then_timeout: Option<CommitThenTimeout>,
    /// Upcoming SOQL query requests answered with a 503 `SERVER_UNAVAILABLE` (writes are not
    /// affected): a query that fails while the writes around it succeed.
    pub failing_queries: u32,
}

impl FaultState {
    /// Whether every request should currently get a 503.
    pub fn in_outage(&mut self) -> bool {
        if let Some(until) = self.outage_until {
            if Instant::now() >= until {
                self.outage_until = None;
                self.outage = false;
            }
        }
        self.outage
    }

    /// Draws the random-error decision for one request.
    pub fn random_error(&self) -> Option<u16> {
        if self.error_rate > 0.0 && rand::thread_rng().gen_bool(self.error_rate.clamp(0.0, 1.0)) {
            Some(self.error_status.unwrap_or(503))
        } else {
            None
        }
    }

    /// Whether this SOQL query request is one of the failing ones (and counts it).
    pub fn take_query_failure(&mut self) -> bool {
        let fail = self.failing_queries > 0;
        self.failing_queries = self.failing_queries.saturating_sub(1);
        fail
    }

    /// Takes one "commit then time out" ticket for a write request.
    pub fn take_commit_timeout(&mut self) -> Option<CommitThenTimeout> {
        let c = self.commit_then_timeout.as_mut()?;
        if c.remaining == 0 {
            self.commit_then_timeout = None;
            return None;
        }
        c.remaining -= 1;
        let out = *c;
        if c.remaining == 0 {
            self.commit_then_timeout = None;
        }
        Some(out)
    }
}

/// Clonable fault-injection handle.
#[derive(Clone)]
pub struct Faults {
    shared: Arc<Shared>,
}

impl Faults {
    pub(crate) fn new(shared: Arc<Shared>) -> Self {
        Faults { shared }
    }

    /// Latency added before every request is handled.
    pub fn set_latency(&self, latency: Latency) {
        self.shared.faults.lock().latency = latency;
    }

    /// Share (0.0–1.0) of requests answered with 503 `SERVER_UNAVAILABLE`.
    pub fn set_error_rate(&self, share: f64) {
        self.shared.faults.lock().error_rate = share.clamp(0.0, 1.0);
    }

    /// Status of injected errors: 503 (default) or 500.
    pub fn set_error_status(&self, status: u16) {
        self.shared.faults.lock().error_status = Some(status);
    }

    /// The next `attempts` writes touching the record (by Id, 15 or 18 chars, or by an
    /// external-id value) fail with `UNABLE_TO_LOCK_ROW`.
    pub fn lock_record(&self, key: &str, attempts: u32) {
        let mut st = self.shared.state.lock();
        st.locks.insert(key.to_lowercase(), attempts);
        if let Some(id) = crate::ids::normalize(key) {
            st.locks.insert(id.to_lowercase(), attempts);
        }
    }

    /// Removes all row-lock faults.
    pub fn clear_locks(&self) {
        self.shared.state.lock().locks.clear();
    }

    /// Invalidates every issued access token (next call: 401 `INVALID_SESSION_ID`).
    pub fn expire_sessions(&self) {
        self.shared.auth.lock().sessions.clear();
    }

    /// Every request answers 503 for `duration`.
    pub fn outage(&self, duration: Duration) {
        let mut f = self.shared.faults.lock();
        f.outage = true;
        f.outage_until = Some(Instant::now() + duration);
    }

    /// Starts or ends an outage with no end time.
    pub fn set_outage(&self, on: bool) {
        let mut f = self.shared.faults.lock();
        f.outage = on;
        f.outage_until = None;
    }

    /// Sets the rolling-window API usage (as if other integrations had used it).
    pub fn set_api_usage(&self, n: u64) {
        self.shared.usage.lock().set_usage(n);
    }

    /// Changes the daily allocation.
    pub fn set_api_limit(&self, limit: u64) {
        self.shared.usage.lock().set_limit(limit);
    }

    /// The next `count` write requests are applied, then answered only after `delay`
    /// (or, with `drop_connection`, the connection is closed without an answer).
    pub fn commit_then_timeout(&self, count: u32, delay: Duration, drop_connection: bool) {
        self.shared.faults.lock().commit_then_timeout = Some(CommitThenTimeout {
            remaining: count,
            delay_ms: delay.as_millis() as u64,
            drop_connection,
        });
    }

    /// Clears every fault (latency, errors, outage, locks, commit-then-timeout).
    /// Answers the next `count` SOQL query requests with a 503; writes go through.
    pub fn fail_queries(&self, count: u32) {
        self.shared.faults.lock().failing_queries = count;
    }

    pub fn clear(&self) {
        *self.shared.faults.lock() = FaultState::default();
        self.clear_locks();
    }

    /// Current settings.
    pub fn snapshot(&self) -> FaultState {
        self.shared.faults.lock().clone()
    }
}
