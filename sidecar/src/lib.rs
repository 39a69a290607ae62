//! The mesh data plane as a library.
#![deny(missing_docs)]

pub mod admin;
pub mod balance;
pub mod body;
pub mod config;
pub mod detect;
pub mod endpoint;
pub mod identity;
pub mod inbound;
pub mod intercept;
pub mod outbound;
pub mod policy;
pub mod pool;
pub mod runtime;
pub mod tcp;
pub mod telemetry;
