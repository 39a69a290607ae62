//! `mesh-node`: the reference mesh node, as a library with a thin binary.
//!
//! Roles, each `Config` → [`server::build`] / [`agent::build`] → a handle
//! and the future that runs it:
//!
//! - [`server`]: the control plane: certificate authority (svid-ca with its
//!   SQLite store and rotation), registration entries, node attestation,
//!   the node API (gRPC over TLS) and the admin API (Unix socket).
//! - [`agent`]: the node agent: attests, syncs entries over a push stream,
//!   has workload SVIDs signed in batches, and serves the SPIFFE Workload
//!   API from its cache.
//!
//! Server and agent never import each other: they meet through the node
//! API ([`node_api::NodeApi`]). [`cli`] parses flags and runs a role or an
//! admin command.

pub mod admin_api;
pub mod agent;
pub mod cli;
pub mod config;
pub mod demo;
pub mod discovery;
pub mod feed_client;
mod fsutil;
pub mod health;
pub mod node_api;
mod pem;
pub mod policy_feed;
mod proto;
pub mod server;
pub mod sidecar;
pub mod up;

pub use fsutil::FsError;
