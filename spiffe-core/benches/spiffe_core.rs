//! Side-by-side benchmarks, in one run:
//! - SPIFFE ID parsing: ours vs the `spiffe` crate;
//! - X509-SVID verification: ours vs bare webpki chain validation of the
//!   same chain against the same pre-parsed anchors;
//! - JWT-SVID validation: ours vs the `spiffe` crate.

#![allow(missing_docs)] // criterion_group! generates undocumented functions.

mod common;

use std::hint::black_box;
use std::time::{SystemTime, UNIX_EPOCH};

use criterion::{Criterion, criterion_group, criterion_main};
use rustls_pki_types::UnixTime;
use spiffe_core::{JwtSvid, SpiffeId, X509Bundle, verify_x509_svid};
use test_support::{CaSpec, TestCa};

const IDS: &[(&str, &str)] = &[
    ("short", "spiffe://example.org/web"),
    (
        "k8s",
        "spiffe://cluster.local/ns/production/sa/payments-api",
    ),
    (
        "mixed_case",
        "SPIFFE://Example.ORG/ns/Production/sa/Payments",
    ),
];

fn id_parse(c: &mut Criterion) {
    let mut g = c.benchmark_group("spiffe_id_parse");
    for (name, id) in IDS {
        g.bench_function(format!("ours/{name}"), |b| {
            b.iter(|| black_box(id).parse::<SpiffeId>().unwrap())
        });
        g.bench_function(format!("spiffe_crate/{name}"), |b| {
            b.iter(|| spiffe::SpiffeId::new(black_box(id)).unwrap())
        });
    }
    g.finish();
}

fn x509_verify(c: &mut Criterion) {
    let mut g = c.benchmark_group("x509_svid_verify");
    let root = TestCa::new("example.org");
    let inter = root.intermediate(CaSpec::new("example.org"));
    let cases = [
        ("direct", root.leaf("spiffe://example.org/ns/a/sa/b")),
        ("intermediate", inter.leaf("spiffe://example.org/ns/a/sa/b")),
    ];
    let bundle = X509Bundle::new("example.org".parse().unwrap(), vec![root.root_cert()]).unwrap();
    let now = SystemTime::now();
    let unix_now = UnixTime::since_unix_epoch(now.duration_since(UNIX_EPOCH).unwrap());
    for (name, leaf) in &cases {
        g.bench_function(format!("ours/{name}"), |b| {
            b.iter(|| verify_x509_svid(black_box(&leaf.chain), &bundle, now).unwrap())
        });
        g.bench_function(format!("bare_webpki/{name}"), |b| {
            b.iter(|| {
                let ee = webpki::EndEntityCert::try_from(black_box(&leaf.chain[0])).unwrap();
                ee.verify_for_usage(
                    webpki::ALL_VERIFICATION_ALGS,
                    bundle.trust_anchors(),
                    &leaf.chain[1..],
                    unix_now,
                    webpki::KeyUsage::client_auth(),
                    None,
                    None,
                )
                .map(|_| ())
                .unwrap()
            })
        });
    }
    g.finish();
}

fn jwt_validate(c: &mut Criterion) {
    let mut g = c.benchmark_group("jwt_svid_validate");
    let common::JwtFixture {
        token,
        ours,
        theirs,
        ..
    } = common::jwt_fixture();
    let now = SystemTime::now();
    g.bench_function("ours/es256", |b| {
        b.iter(|| JwtSvid::validate(black_box(&token), &ours, "api", now).unwrap())
    });
    g.bench_function("spiffe_crate/es256", |b| {
        b.iter(|| {
            spiffe::JwtSvid::parse_and_validate(black_box(&token), &theirs, &["api"]).unwrap()
        })
    });
    g.finish();
}

criterion_group!(benches, id_parse, x509_verify, jwt_validate);
criterion_main!(benches);
