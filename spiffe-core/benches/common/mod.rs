//! The JWT-SVID both benches validate: one ES256 token, the bundle that
//! verifies it in spiffe-core and in the `spiffe` crate, and its JWK.
// Each bench uses what it compares against.
#![allow(dead_code)]

use std::time::{Duration, SystemTime};

use serde_json::json;
use spiffe_core::jwt::{JwtClaims, sign_jwt_svid};
use spiffe_core::{JwtBundle, PrivateKey};
use test_support::{KeyKind, TestJwtKey};

pub(crate) struct JwtFixture {
    /// The token: `sub` spiffe://example.org/w, `aud` api, an hour left.
    pub(crate) token: String,
    /// Its bundle for spiffe-core.
    pub(crate) ours: JwtBundle,
    /// Its bundle for the `spiffe` crate.
    pub(crate) theirs: spiffe::JwtBundleSet,
    /// The signing key's public JWK (`kid` k1).
    pub(crate) jwk: serde_json::Value,
}

pub(crate) fn jwt_fixture() -> JwtFixture {
    let key = TestJwtKey::generate(KeyKind::P256);
    let jwk = key.jwk("k1");
    let jwks = json!({"keys": [jwk]});
    let ours =
        JwtBundle::from_jwks("example.org".parse().unwrap(), jwks.to_string().as_bytes()).unwrap();
    let theirs = {
        let td = spiffe::TrustDomain::new("example.org").unwrap();
        let mut set = spiffe::JwtBundleSet::new();
        set.add_bundle(spiffe::JwtBundle::from_jwt_authorities(td, &ours.to_jwks()).unwrap());
        set
    };
    let pk = PrivateKey::from_pkcs8_der(key.pkcs8()).unwrap();
    let claims = JwtClaims {
        subject: "spiffe://example.org/w".parse().unwrap(),
        audience: vec!["api".into()],
        expiry: SystemTime::now() + Duration::from_secs(3600),
        issued_at: SystemTime::now(),
        issuer: None,
        extra: Default::default(),
    };
    let token = sign_jwt_svid(&pk, "k1", &claims).unwrap();
    JwtFixture {
        token,
        ours,
        theirs,
        jwk,
    }
}
