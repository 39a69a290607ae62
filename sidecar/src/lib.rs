//! The mesh data plane as a library.
#![deny(missing_docs)]

pub mod endpoint;
pub mod intercept;
