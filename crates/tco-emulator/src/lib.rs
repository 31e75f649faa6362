//! 2Checkout traffic emulator.
//!
//! Owns the "2Checkout side" of the notification protocol for tests, the demo and
//! benchmarks: a deterministic [`Generator`] of realistic IPN / LCN / INS bodies for
//! business scenarios (orders, refunds, reversals, chargebacks, renewals, trials,
//! subscription changes, legacy recurring installments), and a [`Sender`] that posts
//! them, checks the read receipt exactly as 2Checkout does and resends on 2Checkout's
//! failure-recovery schedule (compressed), stopping by itself.
//!
//! It must not know about revsync's engine, store or Salesforce: it only speaks the
//! wire protocol (via the `twocheckout` crate) to a URL.
//!
//! [`rest`] serves 2Checkout's REST API 6.0 (order and subscription search and retrieval,
//! `X-Avangate-Authentication` checked) over the same generated history, for backfill and
//! reconciliation.

pub mod catalog;
pub mod generator;
pub mod rest;
pub mod schedule;
pub mod sender;

pub use generator::{Delivery, Generator, GeneratorConfig, LcnEvent, ScenarioKind};
pub use rest::{RestAuth, RestData, RestEmulator, RestState};
pub use schedule::RetrySchedule;
pub use sender::{
    Attempt, AttemptResult, DeliveryReport, Endpoints, Outcome, RunSummary, Sender, SenderConfig,
    SenderError,
};
