//! revsync engine
