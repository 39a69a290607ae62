//! JWT-SVIDs and JWT bundles (JWT-SVID standard, rules JWT-*).

mod alg;
mod bundle;
mod claims;
mod error;
mod jwk;
mod sign;
mod svid;

pub use alg::JwtAlgorithm;
pub use bundle::{JwtBundle, JwtBundleLookup};
pub use claims::{
    NotNumericDate, audience_claim, compact_segments, decode_payload, numeric_date,
    unverified_payload,
};
pub use error::JwtError;
pub use jwk::{EcCurve, Jwk, JwtKey};
pub(crate) use sign::rsa_public_key;
pub use sign::{JwtClaims, JwtSigner, sign_jwt_svid};
pub use svid::JwtSvid;

pub(crate) use jwk::b64url;
