//! The outcome of one check.

use crate::jwt::JwtFailure;
use crate::model::Action;

/// What the client sees.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Response {
    /// An HTTP status: 200 when allowed, 400/401/403 (or an external
    /// authorizer's status) when denied.
    Http(u16),
    /// TCP connection allowed.
    Connected,
    /// TCP connection closed by authorization (T-6).
    ConnectionClosed,
    /// STRICT mTLS refused a plaintext connection before anything else ran.
    ConnectionReset,
}

/// Why the decision came out the way it did.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Reason {
    /// No enforced ALLOW policy applies, nothing denied (E-4).
    NoAllowPolicy,
    /// An ALLOW rule matched (E-5).
    AllowMatched,
    /// A DENY rule matched (E-3).
    DenyMatched,
    /// ALLOW policies apply but none matched (E-5).
    NoAllowMatched,
    /// A CUSTOM rule matched and its provider denied (E-2).
    ExtAuthzDenied {
        /// The provider's name.
        provider: String,
    },
    /// STRICT mTLS and the connection was plaintext (PA-6).
    StrictMtlsPlaintext,
    /// Request authentication rejected the token (RA-3).
    Jwt(JwtFailure),
    /// The request is malformed and rejected before authorization (M-9).
    BadRequest(&'static str),
}

impl std::fmt::Display for Reason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Reason::NoAllowPolicy => f.write_str("no ALLOW policy applies; allowed by default"),
            Reason::AllowMatched => f.write_str("allowed by a matching ALLOW rule"),
            Reason::DenyMatched => f.write_str("denied by a matching DENY rule"),
            Reason::NoAllowMatched => f.write_str("ALLOW policies apply but no rule matched"),
            Reason::ExtAuthzDenied { provider } => {
                write!(f, "denied by external authorizer `{provider}`")
            }
            Reason::StrictMtlsPlaintext => {
                f.write_str("plaintext connection refused: mTLS mode is STRICT")
            }
            Reason::Jwt(failure) => write!(f, "request authentication failed: {failure}"),
            Reason::BadRequest(why) => write!(f, "bad request: {why}"),
        }
    }
}

/// The result of a dry-run policy (D-2); never enforced.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ShadowResult {
    /// `Allow` or `Deny`: which dry-run engine produced this.
    pub action: Action,
    /// Whether the shadow engine would have allowed the request.
    pub allowed: bool,
    /// The matched dry-run rule, if any.
    pub policy: Option<String>,
}

/// The decision for one request or connection.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Decision {
    /// Whether the request may reach the application.
    pub allowed: bool,
    /// What the client sees.
    pub response: Response,
    /// The deciding rule as `ns[NS]-policy[NAME]-rule[N]` (S-7); `None` for
    /// default decisions (R-1's `[none]`).
    pub policy: Option<String>,
    /// Why.
    pub reason: Reason,
    /// Whether an enforced AUDIT rule matched (E-6).
    pub audit: bool,
    /// Dry-run results (D-2).
    pub shadow: Vec<ShadowResult>,
    /// RA-2 output headers (`outputPayloadToHeader`, `outputClaimToHeaders`)
    /// filled from the payloads the configuring providers verified; set
    /// only on allowed HTTP requests. The layer writes them.
    pub(crate) token_headers: TokenHeaders,
}

/// Header values derived from verified token payloads, as (lowercase
/// header name, value). `Debug` shows the names only: the values are parts
/// of credentials.
#[derive(Clone, Default, PartialEq, Eq)]
pub(crate) struct TokenHeaders(pub(crate) Vec<(String, String)>);

impl std::fmt::Debug for TokenHeaders {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list()
            .entries(self.0.iter().map(|(name, _)| name))
            .finish()
    }
}
