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
//! wire protocol (via the `twocheckout` crate) to a URL. The REST 6.0 emulator is not
//! part of this crate yet.

pub mod catalog;
pub mod generator;
pub mod schedule;
pub mod sender;

pub use generator::{Delivery, Generator, GeneratorConfig, LcnEvent, ScenarioKind};
pub use schedule::RetrySchedule;
pub use sender::{
    Attempt, AttemptResult, DeliveryReport, Endpoints, Outcome, RunSummary, Sender, SenderConfig,
    SenderError,
};
