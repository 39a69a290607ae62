//! Decision time at 10, 1,000 and 10,000 rules, principal- and path-heavy,
//! indexed engine next to a linear scan of the same compiled rules.
#![allow(missing_docs)]

use std::fmt::Write as _;
use std::hint::black_box;

use authz::{Engine, MeshConfig, PolicySet, Request, Workload};
use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use spiffe_core::SpiffeId;

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

criterion_group!(benches, bench);
criterion_main!(benches);
