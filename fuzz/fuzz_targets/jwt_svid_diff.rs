//! Differential: spiffe-core's JWT-SVID validation (its own aws-lc-rs
//! path) against jsonwebtoken on the same token and the same keys.
//!
//! spiffe-core applies the JWT-SVID rules before it touches a key (header
//! fields, `alg` allow-list, `kid` required, `typ`, `sub` a SPIFFE ID, a
//! known `kid`); a token refused there has no signature verdict to
//! compare. Every other outcome is compared:
//!
//! - accepted by spiffe-core: jsonwebtoken verifies the signature and
//!   reads the same claims;
//! - refused after the signature check (audience, expiry, `nbf`, a
//!   missing or malformed claim): jsonwebtoken verifies the signature too;
//! - refused for a bad signature or a key of the wrong family:
//!   jsonwebtoken refuses as well.
#![no_main]

use libfuzzer_sys::fuzz_target;
use spiffe_core::{JwtError, JwtSvid};

fuzz_target!(|data: &[u8]| {
    let Ok(token) = std::str::from_utf8(data) else {
        return;
    };
    let bundle = spiffe_fuzz::jwt_bundle();
    let ours = JwtSvid::validate(token, &bundle, spiffe_fuzz::AUDIENCE, spiffe_fuzz::now());
    let theirs = spiffe_fuzz::jsonwebtoken_verify(token);
    match ours {
        Ok(svid) => {
            let claims = theirs.expect("spiffe-core accepted a token jsonwebtoken refuses");
            assert_eq!(svid.claims(), &claims, "the two read different claims");
        }
        Err(
            JwtError::AudienceMismatch { .. }
            | JwtError::Expired { .. }
            | JwtError::NotYetValid { .. }
            | JwtError::MissingAudience
            | JwtError::MissingExpiry
            | JwtError::InvalidTimeClaim { .. },
        ) => {
            assert!(
                theirs.is_some(),
                "spiffe-core verified the signature (refused on a claim), jsonwebtoken did not"
            );
        }
        Err(JwtError::BadSignature | JwtError::KeyAlgorithmMismatch { .. }) => {
            assert!(
                theirs.is_none(),
                "jsonwebtoken verified a signature spiffe-core refuses"
            );
        }
        Err(_) => {} // Refused by a JWT-SVID rule before any key is used.
    }
});
