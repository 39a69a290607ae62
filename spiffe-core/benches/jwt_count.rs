//! Instruction counts of JWT-SVID validation, for the keep-or-drop choice
//! between spiffe-core's own JWT path and `jsonwebtoken` (and the `spiffe`
//! crate as a third reference), which the noise of a shared machine would
//! blur in wall-clock time. Validates one ES256 token `N` times with the
//! implementation named by the first argument (`ours`, `jsonwebtoken` or
//! `spiffe_crate`) inside `run_validations`; measure with
//! `valgrind --tool=callgrind --toggle-collect='*run_validations*' <binary> ours`.
//!
//! Each side does what a JWT-SVID validation needs: signature, `exp`,
//! audience, and a SPIFFE ID in `sub`.

#![allow(missing_docs)]

use std::hint::black_box;
use std::time::{Duration, SystemTime};

use serde_json::json;
use spiffe_core::jwt::{JwtClaims, sign_jwt_svid};
use spiffe_core::{JwtBundle, JwtSvid, PrivateKey, SpiffeId};
use test_support::{KeyKind, TestJwtKey};

const N: usize = 200;

struct Fixture {
    token: String,
    ours: JwtBundle,
    theirs: spiffe::JwtBundleSet,
    jwk: jsonwebtoken::DecodingKey,
}

fn fixture() -> Fixture {
    let key = TestJwtKey::generate(KeyKind::P256);
    let jwks = json!({"keys": [key.jwk("k1")]});
    let ours =
        JwtBundle::from_jwks("example.org".parse().unwrap(), jwks.to_string().as_bytes()).unwrap();
    let theirs = {
        let td = spiffe::TrustDomain::new("example.org").unwrap();
        let mut set = spiffe::JwtBundleSet::new();
        set.add_bundle(spiffe::JwtBundle::from_jwt_authorities(td, &ours.to_jwks()).unwrap());
        set
    };
    let jwk: jsonwebtoken::jwk::Jwk = serde_json::from_value(key.jwk("k1")).unwrap();
    let jwk = jsonwebtoken::DecodingKey::from_jwk(&jwk).unwrap();
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
    Fixture {
        token,
        ours,
        theirs,
        jwk,
    }
}

fn ours(f: &Fixture, now: SystemTime) {
    black_box(JwtSvid::validate(black_box(&f.token), &f.ours, "api", now).unwrap());
}

fn jsonwebtoken_validate(f: &Fixture, validation: &jsonwebtoken::Validation) {
    #[derive(serde::Deserialize)]
    struct Claims {
        sub: String,
    }
    let data = jsonwebtoken::decode::<Claims>(black_box(&f.token), &f.jwk, validation).unwrap();
    black_box(data.claims.sub.parse::<SpiffeId>().unwrap());
}

fn spiffe_crate(f: &Fixture) {
    black_box(
        spiffe::JwtSvid::parse_and_validate(black_box(&f.token), &f.theirs, &["api"]).unwrap(),
    );
}

#[inline(never)]
fn run_validations(f: &Fixture, which: &str, now: SystemTime, v: &jsonwebtoken::Validation) {
    for _ in 0..N {
        match which {
            "ours" => ours(f, now),
            "jsonwebtoken" => jsonwebtoken_validate(f, v),
            _ => spiffe_crate(f),
        }
    }
}

fn main() {
    let f = fixture();
    let now = SystemTime::now();
    let mut validation = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::ES256);
    validation.set_audience(&["api"]);
    validation.set_required_spec_claims(&["exp", "aud", "sub"]);
    // Warm up all three (lazy statics, allocator) outside the measured function.
    ours(&f, now);
    jsonwebtoken_validate(&f, &validation);
    spiffe_crate(&f);
    match std::env::args().nth(1).as_deref() {
        Some(which @ ("ours" | "jsonwebtoken" | "spiffe_crate")) => {
            run_validations(&f, which, now, &validation)
        }
        _ => eprintln!("usage: jwt_count ours|jsonwebtoken|spiffe_crate"),
    }
}
