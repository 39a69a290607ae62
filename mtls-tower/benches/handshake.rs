#![allow(missing_docs)] // criterion_group! generates undocumented items
//! Full mTLS handshakes per second, in memory (no sockets): our configs
//! versus plain rustls with `WebPkiClientVerifier` and a static cert.
//! Same certificates (P-256, one root, leaf with URI and DNS SANs), TLS 1.3,
//! same ALPN, no resumption on either side.

mod common;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};

fn bench(c: &mut Criterion) {
    let ((oc, os), (pc, ps)) = common::both();
    let mut g = c.benchmark_group("mtls_handshake");
    g.throughput(Throughput::Elements(1));
    g.bench_function("mtls_tower", |b| b.iter(|| common::handshake(&oc, &os)));
    g.bench_function("plain_rustls_webpki", |b| {
        b.iter(|| common::handshake(&pc, &ps))
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
