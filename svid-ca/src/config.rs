//! [`CaConfig`] and the rotation schedule ([`RotationPolicy`]), validated at build.

use std::time::{Duration, SystemTime};

use spiffe_core::TrustDomain;

use crate::KeyType;
use crate::upstream::UpstreamCa;

const DAY: Duration = Duration::from_secs(24 * 3600);

/// The schedule on which key slots move PREPARED → ACTIVE → OLD.
///
/// For a key valid for `lifetime`, the next key is prepared (and published
/// in the bundle) when `min(lifetime / 2, 30 days)` of it remains, and
/// activated when `min(lifetime / 6, 7 days)` remains. The gap between the
/// two gives every verifier time to fetch the new bundle before anything is
/// signed with the new key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct RotationPolicy;

impl RotationPolicy {
    /// How much validity remains when the next key is prepared.
    pub fn prepare_threshold(self, lifetime: Duration) -> Duration {
        (lifetime / 2).min(30 * DAY)
    }

    /// How much validity remains when the prepared key becomes active.
    pub fn activate_threshold(self, lifetime: Duration) -> Duration {
        (lifetime / 6).min(7 * DAY)
    }
}

/// Configuration of a [`crate::CertificateAuthority`].
///
/// Start from [`CaConfig::new`] (the defaults below) and change fields.
/// [`crate::CaBuilder::build`] validates the whole configuration.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct CaConfig {
    /// The trust domain the authority speaks for.
    pub trust_domain: TrustDomain,
    /// Key type of the X.509 CA keys (default EC P-256).
    pub x509_key_type: KeyType,
    /// Key type of the JWT signing keys (default EC P-256, so ES256).
    pub jwt_key_type: KeyType,
    /// Lifetime of each CA key and certificate (default 24 h).
    pub ca_ttl: Duration,
    /// Default X509-SVID lifetime (default 1 h).
    pub x509_svid_ttl: Duration,
    /// Default JWT-SVID lifetime (default 5 min).
    pub jwt_svid_ttl: Duration,
    /// `spiffe_refresh_hint` of the published bundle (default 5 min).
    pub refresh_hint: Duration,
    /// How far back an X509-SVID's notBefore is set, to absorb clock skew
    /// (default 10 s).
    pub backdate: Duration,
    /// The `iss` claim of JWT-SVIDs, if any.
    pub jwt_issuer: Option<String>,
    /// Sign CA certificates with this upstream CA instead of self-signing.
    pub upstream: Option<UpstreamCa>,
    /// The rotation schedule.
    pub rotation: RotationPolicy,
}

impl CaConfig {
    /// The defaults for `trust_domain`: self-signed EC P-256, CA TTL 24 h,
    /// X509-SVID TTL 1 h, JWT-SVID TTL 5 min, refresh hint 5 min.
    pub fn new(trust_domain: TrustDomain) -> Self {
        CaConfig {
            trust_domain,
            x509_key_type: KeyType::EcP256,
            jwt_key_type: KeyType::EcP256,
            ca_ttl: DAY,
            x509_svid_ttl: Duration::from_secs(3600),
            jwt_svid_ttl: Duration::from_secs(300),
            refresh_hint: Duration::from_secs(300),
            backdate: Duration::from_secs(10),
            jwt_issuer: None,
            upstream: None,
            rotation: RotationPolicy,
        }
    }

    /// The longest SVID TTL this configuration allows: a key is active only
    /// while at least this much of its validity remains, so an SVID of at
    /// most this TTL never has to be cut short by its signer's expiry.
    pub fn max_svid_ttl(&self) -> Duration {
        self.rotation.activate_threshold(self.ca_ttl)
    }

    /// Checks the configuration at `now`.
    pub(crate) fn validate(&self, now: SystemTime) -> Result<(), ConfigError> {
        if self.ca_ttl < Duration::from_secs(60) {
            return Err(ConfigError::CaTtlTooShort {
                ca_ttl: self.ca_ttl,
            });
        }
        let max = self.max_svid_ttl();
        for (kind, ttl) in [
            ("X509-SVID", self.x509_svid_ttl),
            ("JWT-SVID", self.jwt_svid_ttl),
        ] {
            if ttl.is_zero() {
                return Err(ConfigError::ZeroSvidTtl { kind });
            }
            if ttl > max {
                return Err(ConfigError::SvidOutlivesCa { kind, ttl, max });
            }
        }
        if self.refresh_hint < Duration::from_secs(1) {
            return Err(ConfigError::RefreshHintTooShort);
        }
        if let Some(upstream) = &self.upstream
            && upstream.not_after() <= now
        {
            return Err(ConfigError::UpstreamExpired {
                not_after: upstream.not_after(),
            });
        }
        Ok(())
    }
}

/// A configuration that cannot work.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// The CA TTL is under one minute.
    #[error("CA TTL {ca_ttl:?} is too short (minimum 60 s)")]
    CaTtlTooShort {
        /// The configured CA TTL.
        ca_ttl: Duration,
    },
    /// An SVID TTL is zero.
    #[error("{kind} TTL must not be zero")]
    ZeroSvidTtl {
        /// `X509-SVID` or `JWT-SVID`.
        kind: &'static str,
    },
    /// An SVID TTL is longer than an active CA key is guaranteed to remain
    /// valid, so SVIDs would outlive (or be cut short by) their signer.
    #[error(
        "{kind} TTL {ttl:?} exceeds the maximum {max:?} allowed by the CA TTL (CA TTL / 6, at most 7 days)"
    )]
    SvidOutlivesCa {
        /// `X509-SVID` or `JWT-SVID`.
        kind: &'static str,
        /// The configured TTL.
        ttl: Duration,
        /// The largest allowed TTL.
        max: Duration,
    },
    /// The bundle refresh hint is under one second.
    #[error("the bundle refresh hint must be at least one second")]
    RefreshHintTooShort,
    /// The upstream CA certificate has already expired.
    #[error("the upstream CA certificate expired at {not_after:?}")]
    UpstreamExpired {
        /// Its notAfter.
        not_after: SystemTime,
    },
}
