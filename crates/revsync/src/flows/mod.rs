//! flows (being written)
