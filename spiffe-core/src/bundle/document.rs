//! [`SpiffeBundle`]: the SPIFFE bundle document (an RFC 7517 JWK Set with
//! `spiffe_sequence` and `spiffe_refresh_hint`).

use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use rustls_pki_types::CertificateDer;
use serde::{Deserialize, Serialize};

use super::BundleError;
use crate::TrustDomain;
use crate::jwt::{Jwk, JwtBundle};
use crate::x509::{self, X509Bundle};

const USE_X509: &str = "x509-svid";
const USE_JWT: &str = "jwt-svid";

/// A trust domain's bundle: its X.509 authorities and JWT keys, with the
/// SPIFFE sequence number and refresh hint.
///
/// ```
/// use spiffe_core::{SpiffeBundle, TrustDomain};
/// let td: TrustDomain = "example.org".parse()?;
/// let doc = br#"{"keys": [], "spiffe_sequence": 7, "spiffe_refresh_hint": 300}"#;
/// let bundle = SpiffeBundle::parse(td, doc)?;
/// assert_eq!(bundle.sequence(), Some(7));
/// assert!(bundle.x509().is_empty() && bundle.jwt().is_empty());
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpiffeBundle {
    x509: X509Bundle,
    jwt: JwtBundle,
    sequence: Option<u64>,
    refresh_hint: Option<Duration>,
}

#[derive(Deserialize, Serialize)]
struct Document {
    keys: Vec<Jwk>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    spiffe_sequence: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    spiffe_refresh_hint: Option<i64>,
}

impl SpiffeBundle {
    /// A bundle from its two halves, which must name the same trust domain.
    pub fn new(x509: X509Bundle, jwt: JwtBundle) -> Result<Self, BundleError> {
        if x509.trust_domain() != jwt.trust_domain() {
            return Err(BundleError::TrustDomainMismatch {
                x509: x509.trust_domain().clone(),
                jwt: jwt.trust_domain().clone(),
            });
        }
        Ok(Self::from_parts(x509, jwt))
    }

    /// A bundle with X.509 authorities only.
    pub fn from_x509(x509: X509Bundle) -> Self {
        let jwt = JwtBundle::new(x509.trust_domain().clone());
        Self::from_parts(x509, jwt)
    }

    /// A bundle with JWT keys only.
    pub fn from_jwt(jwt: JwtBundle) -> Self {
        let x509 = X509Bundle::empty(jwt.trust_domain().clone());
        Self::from_parts(x509, jwt)
    }

    /// Joins two halves already known to name the same trust domain.
    pub(crate) fn from_parts(x509: X509Bundle, jwt: JwtBundle) -> Self {
        SpiffeBundle {
            x509,
            jwt,
            sequence: None,
            refresh_hint: None,
        }
    }

    /// An empty bundle: every SVID of the trust domain is untrusted (BUN-8).
    pub fn empty(trust_domain: TrustDomain) -> Self {
        Self::from_x509(X509Bundle::empty(trust_domain))
    }

    /// Sets `spiffe_sequence`.
    pub fn with_sequence(mut self, sequence: u64) -> Self {
        self.sequence = Some(sequence);
        self
    }

    /// Sets `spiffe_refresh_hint` (whole seconds are kept).
    pub fn with_refresh_hint(mut self, hint: Duration) -> Self {
        self.refresh_hint = Some(Duration::from_secs(hint.as_secs()));
        self
    }

    /// Parses a SPIFFE bundle document for `trust_domain` (BUN-2).
    ///
    /// `keys` must be present (BUN-6) and every key must have `kty` (BUN-9).
    /// Keys with an unknown or missing `use` or an unknown `kty` are skipped
    /// (BUN-7). An `x509-svid` key without `x5c` is skipped; with several
    /// certificates, the first is used (X509-9). `jwt-svid` keys need a `kid`
    /// (JWT-13).
    pub fn parse(trust_domain: TrustDomain, json: &[u8]) -> Result<Self, BundleError> {
        let doc: Document = serde_json::from_slice(json).map_err(|e| BundleError::Malformed {
            reason: e.to_string(),
        })?;
        Self::from_document(trust_domain, doc)
    }

    fn from_document(trust_domain: TrustDomain, doc: Document) -> Result<Self, BundleError> {
        let mut authorities = Vec::new();
        let mut jwt = JwtBundle::new(trust_domain.clone());
        for (index, jwk) in doc.keys.iter().enumerate() {
            if jwk.kty.is_none() {
                return Err(BundleError::MissingKty { index });
            }
            match jwk.use_.as_deref() {
                Some(USE_X509) => {
                    let Some(first) = jwk.x5c.as_ref().and_then(|v| v.first()) else {
                        continue;
                    };
                    let der = STANDARD
                        .decode(first)
                        .map_err(|e| BundleError::InvalidX5c {
                            index,
                            reason: e.to_string(),
                        })?;
                    authorities.push(CertificateDer::from(der));
                }
                Some(USE_JWT) => jwt.add_jwk(index, jwk)?,
                _ => {}
            }
        }
        let x509 = X509Bundle::new(trust_domain, authorities)?;
        Ok(SpiffeBundle {
            x509,
            jwt,
            sequence: doc.spiffe_sequence,
            refresh_hint: doc
                .spiffe_refresh_hint
                .and_then(|s| u64::try_from(s).ok())
                .map(Duration::from_secs),
        })
    }

    /// Serializes the document. X.509 entries carry `x5c` with one standard
    /// base64 certificate, no `kid`, and the key's public parameters (X509-8);
    /// JWT entries carry `kid` (JWT-13).
    pub fn to_json(&self) -> Vec<u8> {
        serde_json::to_vec(&self.to_document(true)).unwrap_or_default()
    }

    fn to_document(&self, with_hint: bool) -> Document {
        let mut keys: Vec<Jwk> = self
            .x509
            .authorities()
            .iter()
            .map(|c| x509_jwk(c))
            .collect();
        keys.extend(self.jwt.keys().map(|(kid, key)| Jwk {
            use_: Some(USE_JWT.into()),
            ..key.to_jwk(kid)
        }));
        Document {
            keys,
            spiffe_sequence: self.sequence,
            spiffe_refresh_hint: if with_hint {
                self.refresh_hint
                    .and_then(|d| i64::try_from(d.as_secs()).ok())
            } else {
                None
            },
        }
    }

    pub(crate) fn to_json_value(&self, with_hint: bool) -> serde_json::Value {
        serde_json::to_value(self.to_document(with_hint)).unwrap_or_default()
    }

    pub(crate) fn from_json_value(
        td: TrustDomain,
        v: serde_json::Value,
    ) -> Result<Self, BundleError> {
        let doc: Document = serde_json::from_value(v).map_err(|e| BundleError::Malformed {
            reason: e.to_string(),
        })?;
        Self::from_document(td, doc)
    }

    /// The trust domain.
    pub fn trust_domain(&self) -> &TrustDomain {
        self.x509.trust_domain()
    }

    /// The X.509 authorities.
    pub fn x509(&self) -> &X509Bundle {
        &self.x509
    }

    /// The JWT keys.
    pub fn jwt(&self) -> &JwtBundle {
        &self.jwt
    }

    /// `spiffe_sequence`, if set.
    pub fn sequence(&self) -> Option<u64> {
        self.sequence
    }

    /// `spiffe_refresh_hint`, if set.
    pub fn refresh_hint(&self) -> Option<Duration> {
        self.refresh_hint
    }
}

/// The `x509-svid` JWK of an authority certificate: `x5c` plus the public
/// key's parameters, as SPIRE emits them.
fn x509_jwk(cert: &CertificateDer<'_>) -> Jwk {
    let mut jwk = Jwk {
        use_: Some(USE_X509.into()),
        x5c: Some(vec![STANDARD.encode(cert)]),
        ..Jwk::default()
    };
    let enc = |b: &[u8]| URL_SAFE_NO_PAD.encode(b);
    // Every key of a document needs `kty` (BUN-9). A key this reader cannot
    // describe (a curve or algorithm it does not know) keeps a `kty` that
    // says so; readers take the authority from `x5c`, as BUN-7 lets them.
    jwk.kty = Some("unknown".into());
    let Ok(info) = x509::parse_cert(cert, 0) else {
        return jwk;
    };
    if info.key_algorithm == x509::OID_EC_PUBLIC_KEY {
        let crv = match info.key_parameters {
            Some(x509::OID_P256) => "P-256",
            Some(x509::OID_P384) => "P-384",
            Some(x509::OID_P521) => "P-521",
            _ => return jwk,
        };
        let point = info.public_key;
        let len = point.len().saturating_sub(1) / 2;
        jwk.kty = Some("EC".into());
        jwk.crv = Some(crv.into());
        jwk.x = point.get(1..1 + len).map(enc);
        jwk.y = point.get(1 + len..).map(enc);
    } else if info.key_algorithm == x509::OID_RSA {
        // RSAPublicKey ::= SEQUENCE { modulus INTEGER, publicExponent INTEGER }
        let mut outer = x509::Reader::new(info.public_key);
        let Some(seq) = outer.expect(x509::tag::SEQUENCE) else {
            return jwk;
        };
        let mut seq = x509::Reader::new(seq);
        if let (Some(n), Some(e)) = (
            seq.expect(x509::tag::INTEGER),
            seq.expect(x509::tag::INTEGER),
        ) {
            jwk.kty = Some("RSA".into());
            jwk.n = Some(enc(n.strip_prefix(&[0]).unwrap_or(n)));
            jwk.e = Some(enc(e));
        }
    }
    jwk
}
