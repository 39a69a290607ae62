#![allow(missing_docs)] // criterion_group! generates undocumented items
//! Full mTLS handshakes per second, in memory (no sockets): our configs
//! (with the default verified-chain cache and without it) versus plain
//! rustls with `WebPkiClientVerifier` and a static cert.
//! Same certificates (P-256, one root, leaf with URI and DNS SANs), TLS 1.3,
//! same ALPN, no resumption on either side.

mod common;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};

fn bench(c: &mut Criterion) {
    let common::Configs {
        ours: (oc, os),
        uncached: (uc, us),
        plain: (pc, ps),
    } = common::configs();
    let mut g = c.benchmark_group("mtls_handshake");
    g.throughput(Throughput::Elements(1));
    g.bench_function("mtls_tower", |b| b.iter(|| common::handshake(&oc, &os)));
    g.bench_function("mtls_tower_no_chain_cache", |b| {
        b.iter(|| common::handshake(&uc, &us))
    });
    g.bench_function("plain_rustls_webpki", |b| {
        b.iter(|| common::handshake(&pc, &ps))
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
