//! The validated policy model: one Rust type per Istio concept.

mod authorization;
mod common;
mod peer;
mod request_auth;

pub use authorization::{Action, AuthorizationPolicy, Condition, Operation, Rule, Source};
pub use common::{Selector, TargetRef};
pub use peer::{MtlsMode, PeerAuthentication};
pub use request_auth::{JwtHeader, JwtRule, RequestAuthentication};
