//! salesforce
