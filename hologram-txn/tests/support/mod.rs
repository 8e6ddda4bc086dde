//! Helpers shared by the transaction tests.

pub mod bank_checks;
