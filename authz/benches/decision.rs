//! Decision time at 10, 1,000 and 10,000 rules, principal- and path-heavy,
//! indexed engine next to a linear scan of the same compiled rules; and the
//! whole Tower layer (HTTP translation, decision, URI and header rewrite)
//! at 10,000 rules.
#![allow(missing_docs)]

use std::convert::Infallible;
use std::fmt::Write as _;
use std::hint::black_box;
use std::net::SocketAddr;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};
use std::time::SystemTime;

use authz::{AuthzLayer, Engine, MeshConfig, PolicySet, Request, Workload};
use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use spiffe_core::{ConnectionFacts, PeerIdentity, SpiffeId, X509Bundle};
use tower::{Layer, Service};

/// `n` ALLOW rules, each naming one principal (spread over policies of 100 rules).
fn principal_policies(n: usize) -> String {
    let mut y = String::new();
    for p in 0..n.div_ceil(100) {
        let _ = write!(
            y,
            "---\napiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata: {{name: p{p}, namespace: shop}}\nspec:\n  rules:\n"
        );
        for r in (p * 100)..((p + 1) * 100).min(n) {
            let _ = writeln!(
                y,
                "  - from: [{{source: {{principals: [\"cluster.local/ns/ns{r}/sa/sa{r}\"]}}}}]"
            );
        }
    }
    y
}

/// `n` ALLOW rules, each naming one path and method.
fn path_policies(n: usize) -> String {
    let mut y = String::new();
    for p in 0..n.div_ceil(100) {
        let _ = write!(
            y,
            "---\napiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata: {{name: p{p}, namespace: shop}}\nspec:\n  rules:\n"
        );
        for r in (p * 100)..((p + 1) * 100).min(n) {
            let _ = writeln!(
                y,
                "  - to: [{{operation: {{methods: [GET], paths: [\"/api/v1/item{r}\"]}}}}]"
            );
        }
    }
    y
}

/// `n` ALLOW rules, each naming one path prefix.
fn prefix_policies(n: usize) -> String {
    path_policies(n).replace("\"]}}]", "/*\"]}}]")
}

fn engine(yaml: &str) -> Engine {
    let set = PolicySet::from_yaml_str("bench.yaml", yaml).expect("bench policies load");
    Engine::new(Workload::new("shop"), MeshConfig::default(), &set)
}

fn bench(c: &mut Criterion) {
    let mut group = c.benchmark_group("decision");
    for n in [10usize, 1_000, 10_000] {
        let last = n - 1;
        // The request matches the last rule: the worst case for a scan.
        let peer: SpiffeId = format!("spiffe://cluster.local/ns/ns{last}/sa/sa{last}")
            .parse()
            .expect("bench ID parses");
        let by_principal = engine(&principal_policies(n));
        let req = Request::http("GET", "/").peer(peer);
        assert!(by_principal.check(&req).allowed);
        group.bench_with_input(BenchmarkId::new("principal/indexed", n), &n, |b, _| {
            b.iter(|| black_box(by_principal.check(black_box(&req))))
        });
        group.bench_with_input(BenchmarkId::new("principal/linear", n), &n, |b, _| {
            b.iter(|| black_box(by_principal.check_unindexed(black_box(&req))))
        });

        let by_path = engine(&path_policies(n));
        let req = Request::http("GET", format!("/api/v1/item{last}?q=1"));
        assert!(by_path.check(&req).allowed);
        group.bench_with_input(BenchmarkId::new("path/indexed", n), &n, |b, _| {
            b.iter(|| black_box(by_path.check(black_box(&req))))
        });
        group.bench_with_input(BenchmarkId::new("path/linear", n), &n, |b, _| {
            b.iter(|| black_box(by_path.check_unindexed(black_box(&req))))
        });
    }
    for n in [10usize, 1_000, 10_000] {
        let last = n - 1;
        let by_prefix = engine(&prefix_policies(n));
        let req = Request::http("GET", format!("/api/v1/item{last}/detail"));
        assert!(by_prefix.check(&req).allowed);
        group.bench_with_input(BenchmarkId::new("path-prefix/indexed", n), &n, |b, _| {
            b.iter(|| black_box(by_prefix.check(black_box(&req))))
        });
        group.bench_with_input(BenchmarkId::new("path-prefix/linear", n), &n, |b, _| {
            b.iter(|| black_box(by_prefix.check_unindexed(black_box(&req))))
        });
    }
    group.finish();
}

/// A verified identity for `id` (trust domain cluster.local).
fn peer_identity(id: &str) -> PeerIdentity {
    let ca = test_support::TestCa::new("cluster.local");
    let leaf = ca.leaf(id);
    let td = "cluster.local".parse().expect("bench trust domain parses");
    let bundle = X509Bundle::new(td, vec![ca.root_cert()]).expect("bench bundle");
    spiffe_core::x509::verify_x509_svid_full(&leaf.chain, &bundle, SystemTime::now())
        .expect("bench leaf verifies")
}

/// One request through `AuthzLayer` in front of a service that answers at
/// once; the request is built inside the measured loop, as a server would
/// receive it (four headers, connection facts, optional peer).
fn bench_layer(c: &mut Criterion) {
    let n = 10_000usize;
    let last = n - 1;
    let mut group = c.benchmark_group("layer");
    let facts = ConnectionFacts::new(
        SocketAddr::from(([127, 0, 0, 1], 8080)),
        SocketAddr::from(([127, 0, 0, 1], 50000)),
    );
    let inner = tower::service_fn(|_: http::Request<()>| {
        std::future::ready(Ok::<_, Infallible>(http::Response::new(())))
    });
    let mut cx = Context::from_waker(Waker::noop());
    let cases = [
        (
            "path/indexed",
            engine(&path_policies(n)),
            None,
            format!("/api/v1/item{last}?q=1"),
        ),
        (
            "path/normalised",
            engine(&path_policies(n)),
            None,
            format!("/api/v1/x/../item{last}?q=1"),
        ),
        (
            "principal/indexed",
            engine(&principal_policies(n)),
            Some(peer_identity(&format!(
                "spiffe://cluster.local/ns/ns{last}/sa/sa{last}"
            ))),
            "/".to_owned(),
        ),
    ];
    for (name, e, peer, target) in cases {
        let mut svc = AuthzLayer::new(Arc::new(e)).layer(inner);
        let mut send = || {
            let mut req = http::Request::get(target.as_str())
                .header("host", "shop.example")
                .header("user-agent", "bench/1")
                .header("accept", "application/json")
                .header("x-request-id", "0f8fad5b-d9cb-469f-a165-70867728950e")
                .body(())
                .expect("bench request builds");
            let facts = match &peer {
                Some(p) => facts.clone().with_peer(p.clone()),
                None => facts.clone(),
            };
            req.extensions_mut().insert(facts);
            let mut fut = std::pin::pin!(svc.call(req));
            match fut.as_mut().poll(&mut cx) {
                Poll::Ready(Ok(resp)) => resp.status(),
                _ => http::StatusCode::INTERNAL_SERVER_ERROR,
            }
        };
        assert_eq!(send(), http::StatusCode::OK, "{name} must be allowed");
        group.bench_with_input(BenchmarkId::new(name, n), &n, |b, _| {
            b.iter(|| black_box(send()))
        });
    }
    group.finish();
}

criterion_group!(benches, bench, bench_layer);
criterion_main!(benches);
