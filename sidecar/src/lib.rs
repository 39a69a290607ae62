//! The mesh data plane as a library: the proxy beside a workload.
//!
//! - [`runtime::Sidecar`] binds the inbound, outbound and admin listeners
//!   and runs them; [`runtime::SidecarParts`] is what it needs: the
//!   [`config::SidecarConfig`], an [`identity::Identity`] (the Workload
//!   API's `X509Source`, or [`identity::FileIdentity`]), the
//!   [`policy::Policies`] and the [`endpoint::Endpoints`] its owner keeps
//!   current.
//! - Inbound ([`inbound`]): PeerAuthentication mode per port, mTLS
//!   termination, protocol [`detect`]ion, authz per request (or per TCP
//!   connection, re-checked on policy updates), forwarding with
//!   `x-forwarded-client-cert`.
//! - Outbound ([`outbound`]): `HTTP_PROXY`, `Host`-named or intercepted
//!   ([`intercept`]) calls, [`endpoint::route`] then a [`balance::Balancer`]
//!   per service, a [`pool::Pool`] of HTTP/2 mTLS connections that must
//!   prove each endpoint's SPIFFE ID, retries and a request timeout.
//! - Observability ([`telemetry`], [`admin`]): Istio's metric names and
//!   labels, a JSON access log, readiness, config and certificate dumps.
//!
//! The crate's README has an embedding example and the design choices.
#![deny(missing_docs)]

pub mod admin;
pub mod app_pool;
pub mod balance;
pub mod body;
pub mod config;
mod deadline;
pub mod detect;
pub mod endpoint;
pub mod final_write;
pub mod h1;
pub mod h1_server;
pub mod h2body;
pub mod identity;
pub mod inbound;
pub mod intercept;
mod memo;
pub mod outbound;
pub mod policy;
pub mod pool;
pub mod runtime;
pub mod tcp;
pub mod telemetry;
