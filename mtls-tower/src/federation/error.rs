//! Errors of federation: configuration, serving and fetching.

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use spiffe_core::{BundleError, SpiffeId, TrustDomain, X509Error};

/// Why a URL is not a bundle endpoint URL (WEB-1, SPF-1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum UrlError {
    /// Not a URL.
    #[error("not a URL")]
    Invalid,
    /// The scheme is not `https`.
    #[error("the scheme must be https")]
    NotHttps,
    /// The URL carries userinfo (`user:password@`).
    #[error("the URL must not carry userinfo")]
    UserInfo,
    /// The URL has no host.
    #[error("the URL has no host")]
    NoHost,
}

/// Why a relationship or a serving profile could not be configured.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum FederationError {
    /// A relationship with this trust domain already exists.
    #[error("a federation relationship with {trust_domain} already exists")]
    DuplicateRelationship {
        /// The trust domain.
        trust_domain: TrustDomain,
    },
    /// The endpoint is self-serving (its SPIFFE ID is in the relationship's
    /// trust domain) but no initial bundle was configured (SPF-2).
    #[error("endpoint {endpoint_id} is self-serving: configure an initial bundle (SPF-2)")]
    InitialBundleRequired {
        /// The endpoint's SPIFFE ID.
        endpoint_id: SpiffeId,
    },
    /// An initial bundle was configured for an endpoint that is not
    /// self-serving; its trust domain's bundle must come from elsewhere (SPF-2).
    #[error(
        "endpoint {endpoint_id} is not in {trust_domain}: trust it through its own trust domain's bundle, not an initial bundle (SPF-2)"
    )]
    NotSelfServing {
        /// The endpoint's SPIFFE ID.
        endpoint_id: SpiffeId,
        /// The relationship's trust domain.
        trust_domain: TrustDomain,
    },
    /// The initial bundle document does not parse.
    #[error("initial bundle: {0}")]
    InitialBundle(#[from] BundleError),
    /// The initial PEM authorities do not parse.
    #[error("initial bundle PEM: {0}")]
    InitialPem(#[from] X509Error),
    /// The initial bundle is for another trust domain.
    #[error("initial bundle is for {found}, not {expected}")]
    InitialBundleTrustDomain {
        /// The relationship's trust domain.
        expected: TrustDomain,
        /// The bundle's.
        found: TrustDomain,
    },
    /// A TLS config could not be built.
    #[error("TLS config: {0}")]
    Tls(#[from] rustls::Error),
    /// An mTLS config could not be built.
    #[error("TLS config: {0}")]
    Config(#[from] crate::ConfigError),
    /// A serving certificate or key file could not be read or used.
    #[error("serving file {path}: {reason}")]
    ServingFile {
        /// The file.
        path: PathBuf,
        /// What was wrong.
        reason: ServingFileProblem,
    },
}

/// What was wrong with a serving certificate or key file.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ServingFileProblem {
    /// It could not be read.
    #[error("cannot read: {0}")]
    Read(#[from] std::io::Error),
    /// It holds no PEM certificate.
    #[error("no PEM certificate")]
    NoCertificate,
    /// It holds no usable PEM private key.
    #[error("no usable PEM private key")]
    NoKey,
    /// The key cannot sign with the crypto provider.
    #[error("key not usable: {0}")]
    Key(rustls::Error),
}

/// Why one fetch of a bundle endpoint failed or its bundle was refused.
/// The last good bundle is kept in every case.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum FetchError {
    /// TCP connect (or name resolution) failed.
    #[error("connect: {0}")]
    Connect(std::io::Error),
    /// The TLS handshake failed: the server's certificate was refused
    /// (wrong host, unknown issuer, not an SVID) or the connection broke.
    #[error("TLS: {0}")]
    Tls(std::io::Error),
    /// The `https_spiffe` server presented a valid SVID with another ID (SPF-3).
    #[error("endpoint presented {presented}, expected {expected} (SPF-3)")]
    WrongEndpointId {
        /// The configured endpoint ID.
        expected: SpiffeId,
        /// The ID the server's SVID carries.
        presented: SpiffeId,
    },
    /// The HTTP exchange failed.
    #[error("HTTP: {0}")]
    Http(#[from] hyper::Error),
    /// The server answered with a status other than 2xx or a redirect.
    #[error("status {0}")]
    Status(http::StatusCode),
    /// A redirect pointed at something that is not a bundle endpoint URL (WEB-6, SPF-5).
    #[error("redirect refused: {0}")]
    Redirect(UrlError),
    /// More redirects than allowed.
    #[error("more than {0} redirects")]
    TooManyRedirects(usize),
    /// The body is larger than allowed.
    #[error("body larger than {0} bytes")]
    TooLarge(usize),
    /// The fetch took longer than allowed.
    #[error("no answer within {0:?}")]
    Timeout(Duration),
    /// The body is not a SPIFFE bundle.
    #[error("malformed bundle: {0}")]
    Malformed(#[from] BundleError),
    /// A key appears twice (same `kid`, or the same certificate).
    #[error("duplicate key in bundle: {0}")]
    DuplicateKey(DuplicateKey),
    /// An authority names a SPIFFE ID of another trust domain.
    #[error("bundle authority names {named}, not a member of {expected}")]
    ForeignTrustDomain {
        /// The relationship's trust domain.
        expected: TrustDomain,
        /// What the authority names.
        named: SpiffeId,
    },
    /// `spiffe_sequence` went back.
    #[error("spiffe_sequence {fetched} is lower than the stored {stored}")]
    SequenceRegressed {
        /// The stored bundle's.
        stored: u64,
        /// The fetched bundle's.
        fetched: u64,
    },
    /// Same `spiffe_sequence`, different content (BUN-4).
    #[error("spiffe_sequence {0} reused for different content (BUN-4)")]
    SequenceReused(u64),
}

/// Which key was duplicated.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum DuplicateKey {
    /// Two keys with this `kid`.
    Kid(String),
    /// The same `x5c` certificate twice, at these positions in `keys`.
    Certificate(usize, usize),
}

impl fmt::Display for DuplicateKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DuplicateKey::Kid(kid) => write!(f, "kid {kid:?}"),
            DuplicateKey::Certificate(a, b) => write!(f, "certificate at keys[{a}] and keys[{b}]"),
        }
    }
}

/// The kind of a [`FetchError`], for per-reason counters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[non_exhaustive]
pub enum FetchErrorKind {
    /// [`FetchError::Connect`].
    Connect,
    /// [`FetchError::Tls`].
    Tls,
    /// [`FetchError::WrongEndpointId`].
    WrongEndpointId,
    /// [`FetchError::Http`].
    Http,
    /// [`FetchError::Status`].
    Status,
    /// [`FetchError::Redirect`] and [`FetchError::TooManyRedirects`].
    Redirect,
    /// [`FetchError::TooLarge`].
    TooLarge,
    /// [`FetchError::Timeout`].
    Timeout,
    /// [`FetchError::Malformed`].
    Malformed,
    /// [`FetchError::DuplicateKey`].
    DuplicateKey,
    /// [`FetchError::ForeignTrustDomain`].
    ForeignTrustDomain,
    /// [`FetchError::SequenceRegressed`] and [`FetchError::SequenceReused`].
    Sequence,
}

impl FetchError {
    /// The kind, for counting.
    pub fn kind(&self) -> FetchErrorKind {
        match self {
            FetchError::Connect(_) => FetchErrorKind::Connect,
            FetchError::Tls(_) => FetchErrorKind::Tls,
            FetchError::WrongEndpointId { .. } => FetchErrorKind::WrongEndpointId,
            FetchError::Http(_) => FetchErrorKind::Http,
            FetchError::Status(_) => FetchErrorKind::Status,
            FetchError::Redirect(_) | FetchError::TooManyRedirects(_) => FetchErrorKind::Redirect,
            FetchError::TooLarge(_) => FetchErrorKind::TooLarge,
            FetchError::Timeout(_) => FetchErrorKind::Timeout,
            FetchError::Malformed(_) => FetchErrorKind::Malformed,
            FetchError::DuplicateKey(_) => FetchErrorKind::DuplicateKey,
            FetchError::ForeignTrustDomain { .. } => FetchErrorKind::ForeignTrustDomain,
            FetchError::SequenceRegressed { .. } | FetchError::SequenceReused(_) => {
                FetchErrorKind::Sequence
            }
        }
    }
}
