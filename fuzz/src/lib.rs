//! Fixtures shared by the fuzz targets: fixed JWT keys (the seed tokens in
//! `corpus/` are signed with their private halves, see `gen/`), a fixed
//! clock, and a way to cut one input into two.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use spiffe_core::{JwtBundle, TrustDomain};

/// Public keys of the fixed test keys: `p256` (ES256) and `rsa` (RS/PS).
pub const JWKS: &str = include_str!("../fixtures/jwks.json");

/// The trust domain the fixed keys belong to.
pub const TRUST_DOMAIN: &str = "example.org";

/// The audience the seed tokens carry.
pub const AUDIENCE: &str = "api";

/// The issuer the authz seed tokens carry.
pub const ISSUER: &str = "https://issuer.example";

/// The fixed "now" of every target: 2027-01-15T08:00:00Z. Seed tokens
/// expire in 2033, so they are valid at this instant whatever the date
/// the fuzzer runs on.
pub fn now() -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(1_800_000_000)
}

/// The JWT bundle of [`TRUST_DOMAIN`] holding [`JWKS`].
pub fn jwt_bundle() -> JwtBundle {
    let td: TrustDomain = TRUST_DOMAIN.parse().expect("fixed trust domain parses");
    JwtBundle::from_jwks(td, JWKS.as_bytes()).expect("fixed JWKS parses")
}

/// Cuts `data` in two: a big-endian u16 length, that many bytes, the rest.
/// Short inputs give two empty parts rather than nothing, so every input
/// reaches the parser.
pub fn two_parts(data: &[u8]) -> (&[u8], &[u8]) {
    let Some((len, rest)) = data.split_first_chunk::<2>() else {
        return (data, &[]);
    };
    let len = usize::from(u16::from_be_bytes(*len)).min(rest.len());
    rest.split_at(len)
}

/// The fixed keys as jsonwebtoken reads them.
static JWK_SET: std::sync::LazyLock<jsonwebtoken::jwk::JwkSet> = std::sync::LazyLock::new(|| {
    serde_json::from_str(JWKS).expect("fixed JWKS parses as a jsonwebtoken JwkSet")
});

/// Verifies `token` with jsonwebtoken alone: the key named by `kid` (every
/// key when there is none), the algorithm of the header, no claim checks.
/// `Some(claims)` when the signature verifies.
pub fn jsonwebtoken_verify(token: &str) -> Option<serde_json::Map<String, serde_json::Value>> {
    let header = jsonwebtoken::decode_header(token).ok()?;
    let mut validation = jsonwebtoken::Validation::new(header.alg);
    validation.validate_exp = false;
    validation.validate_nbf = false;
    validation.validate_aud = false;
    validation.required_spec_claims.clear();
    JWK_SET
        .keys
        .iter()
        .filter(|k| header.kid.is_none() || k.common.key_id == header.kid)
        .filter_map(|jwk| jsonwebtoken::DecodingKey::from_jwk(jwk).ok())
        .find_map(|key| {
            jsonwebtoken::decode::<serde_json::Map<String, serde_json::Value>>(
                token,
                &key,
                &validation,
            )
            .ok()
        })
        .map(|data| data.claims)
}

/// Whether [`jsonwebtoken_verify`] accepts the signature of `token`.
pub fn jsonwebtoken_verifies(token: &str) -> bool {
    jsonwebtoken_verify(token).is_some()
}
