//! matching (being written)
