//! sf-emulator
pub mod error;
pub mod ids;
pub mod org;
pub mod soql;
pub mod store;

/// API version used where a request carries none.
pub const DEFAULT_API_VERSION: f64 = 62.0;
