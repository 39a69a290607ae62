//! X509-SVID issuance vs raw P-256 signing (same crypto library, same run),
//! and registration entry matching with 100k entries.

#![allow(missing_docs)] // criterion_group! generates an undocumented public function

use std::hint::black_box;
use std::time::SystemTime;

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{ECDSA_P256_SHA256_ASN1_SIGNING, EcdsaKeyPair};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use rcgen::PublicKeyData;
use spiffe_core::SpiffeId;
use svid_ca::{
    CaConfig, CertificateAuthority, Entitlement, RegistrationEntry, Registry, Selectors,
};

fn issuance(c: &mut Criterion) {
    let ca = CertificateAuthority::builder(CaConfig::new("example.org".parse().unwrap()))
        .build()
        .unwrap();
    let ent = Entitlement::new("spiffe://example.org/ns/prod/sa/api".parse().unwrap());
    let spki = rcgen::KeyPair::generate()
        .unwrap()
        .subject_public_key_info();
    let rng = SystemRandom::new();
    let doc = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_ASN1_SIGNING, &rng).unwrap();
    let key = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_ASN1_SIGNING, doc.as_ref()).unwrap();
    // About the size of a certificate's TBS part.
    let tbs = [0x5au8; 400];

    let mut g = c.benchmark_group("p256");
    g.throughput(Throughput::Elements(1));
    g.bench_function("raw_sign_400B", |b| {
        b.iter(|| key.sign(&rng, black_box(&tbs)).unwrap())
    });
    g.bench_function("x509_svid_issue_from_public_key", |b| {
        b.iter(|| ca.sign_public_key(black_box(&spki), &ent).unwrap())
    });
    g.bench_function("jwt_svid_issue", |b| {
        let aud = vec!["svc".to_string()];
        b.iter(|| ca.issue_jwt_svid(&ent, black_box(&aud)).unwrap())
    });
    g.finish();
}

fn matching(c: &mut Criterion) {
    let td = "example.org".parse().unwrap();
    let reg = Registry::new(td, std::time::Duration::from_secs(3600));
    let parent: SpiffeId = "spiffe://example.org/node/n1".parse().unwrap();
    for i in 0..100_000 {
        let e = RegistrationEntry::new(
            format!("spiffe://example.org/w/{i}").parse().unwrap(),
            parent.clone(),
            vec![
                "k8s:ns:default".parse().unwrap(),
                format!("k8s:sa:sa{i}").parse().unwrap(),
            ],
        )
        .unwrap();
        reg.create(e).unwrap();
    }
    let sels: Selectors = [
        "k8s:ns:default".parse().unwrap(),
        "k8s:sa:sa54321".parse().unwrap(),
        "k8s:pod-name:api-7d9".parse().unwrap(),
    ]
    .into_iter()
    .collect();
    let now = SystemTime::now();
    assert_eq!(reg.matching(&parent, &sels, now).len(), 1);
    c.bench_function("registry_match_100k_entries", |b| {
        b.iter(|| reg.matching(black_box(&parent), black_box(&sels), now))
    });
}

criterion_group!(benches, issuance, matching);
criterion_main!(benches);
