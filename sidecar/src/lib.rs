//! The mesh data plane as a library.
#![deny(missing_docs)]

pub mod balance;
pub mod endpoint;
pub mod telemetry;
