//! revsync: the engine that keeps Salesforce in step with 2Checkout.
//!
//! Pipeline (see ARCHITECTURE.md): `server` (HTTP) → `ingest` (verify, group commit) →
//! `store` (event log) → `processor` (lease events, hand them to handlers). The binary in
//! `main.rs` is a thin command-line layer over this library.

pub mod alerts;
pub mod app;
pub mod backfill;
pub mod config;
pub mod dashboard;
pub mod flows;
pub mod ingest;
pub mod intent;
pub mod ledger;
pub mod matching;
pub mod pipeline;
pub mod processor;
pub mod reconcile;
pub mod scheduler;
pub mod server;
pub mod sink;
pub mod store;
pub mod telemetry;
