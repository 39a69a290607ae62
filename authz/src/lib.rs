//! Istio-compatible authorization for zero-trust services.
//!
//! This crate takes the `security.istio.io/v1` (and `v1beta1`)
//! `AuthorizationPolicy`, `PeerAuthentication` and `RequestAuthentication`
//! documents a mesh already runs and decides, for one inbound request or
//! connection, what an Istio sidecar would decide. The rule numbers used in
//! the documentation (`E-3`, `M-8`, `RA-7`, ...) refer to the project's
//! specification of those semantics (`spec/ISTIO-AUTHZ.md`).
//!
//! The flow is one way: YAML files → [`PolicySet`] (validated model) →
//! [`Engine`] (compiled for one workload, hot-swappable) → [`Decision`].
//!
//! ```
//! use authz::{Engine, MeshConfig, PolicySet, Request, Workload};
//!
//! let yaml = r#"
//! apiVersion: security.istio.io/v1
//! kind: AuthorizationPolicy
//! metadata: {name: only-get, namespace: foo}
//! spec:
//!   rules:
//!   - to:
//!     - operation: {methods: ["GET"]}
//! "#;
//! let set = PolicySet::from_yaml_str("inline.yaml", yaml)?;
//! let engine = Engine::new(Workload::new("foo"), MeshConfig::default(), &set);
//! let decision = engine.check(&Request::http("GET", "/index.html"));
//! assert!(decision.allowed);
//! let decision = engine.check(&Request::http("POST", "/index.html"));
//! assert!(!decision.allowed);
//! assert_eq!(decision.policy.as_deref(), None);
//! # Ok::<(), authz::LoadError>(())
//! ```
#![deny(missing_docs)]

mod authn;
mod cidr;
mod compile;
mod condition;
mod decision;
mod engine;
mod error;
mod glob;
mod identity;
mod jwks;
mod jwks_fetch;
mod jwt;
mod layer;
mod load;
mod matcher;
mod mesh;
mod model;
mod node;
mod path;
mod pattern;
mod peer_auth;
mod request;
mod template;
mod translate;
mod wire;

pub use decision::{Decision, Reason, Response, ShadowResult};
pub use engine::{Engine, ExtAuthz, ExtAuthzVerdict};
pub use error::{LoadError, ValidationError, ValidationKind};
pub use jwks_fetch::{JwksCache, JwksFetchError, JwksFetcher};
pub use jwt::{JwtFailure, PresentedToken, TokenLocation};
pub use layer::{
    Authorized, Authz, AuthzBody, AuthzLayer, NoIdentity, OriginalClientAddr, ResponseFuture,
};
pub use load::{PolicySet, Warning};
pub use mesh::{ExtensionProvider, MeshConfig, ProviderKind, Workload};
pub use model::{
    Action, AuthorizationPolicy, Condition, JwtHeader, JwtRule, MtlsMode, Operation,
    PeerAuthentication, RequestAuthentication, Rule, Selector, Source, TargetRef,
};
pub use request::{Protocol, Request};
