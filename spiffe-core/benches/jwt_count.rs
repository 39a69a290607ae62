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
use std::time::SystemTime;

use spiffe_core::{JwtSvid, SpiffeId};

mod common;

use common::{JwtFixture, jwt_fixture};

const N: usize = 200;

struct Fixture {
    jwt: JwtFixture,
    jwk: jsonwebtoken::DecodingKey,
}

fn fixture() -> Fixture {
    let jwt = jwt_fixture();
    let jwk: jsonwebtoken::jwk::Jwk = serde_json::from_value(jwt.jwk.clone()).unwrap();
    let jwk = jsonwebtoken::DecodingKey::from_jwk(&jwk).unwrap();
    Fixture { jwt, jwk }
}

fn ours(f: &Fixture, now: SystemTime) {
    black_box(JwtSvid::validate(black_box(&f.jwt.token), &f.jwt.ours, "api", now).unwrap());
}

fn jsonwebtoken_validate(f: &Fixture, validation: &jsonwebtoken::Validation) {
    #[derive(serde::Deserialize)]
    struct Claims {
        sub: String,
    }
    let data = jsonwebtoken::decode::<Claims>(black_box(&f.jwt.token), &f.jwk, validation).unwrap();
    black_box(data.claims.sub.parse::<SpiffeId>().unwrap());
}

fn spiffe_crate(f: &Fixture) {
    black_box(
        spiffe::JwtSvid::parse_and_validate(black_box(&f.jwt.token), &f.jwt.theirs, &["api"])
            .unwrap(),
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
