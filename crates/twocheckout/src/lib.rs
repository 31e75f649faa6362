//! twocheckout
