//! Fan-out benchmark: how long one SVID rotation takes to reach 1,000 open
//! `FetchX509SVID` streams, and how much memory an open stream costs.
//!
//! Run: `cargo bench -p workload-api --bench fanout`. Two scenarios, each in
//! its own process so their memory figures do not mix: every stream on its
//! own Unix connection, and 100 streams sharing each connection. Client and
//! server run in one process, so memory covers both ends of a stream.

#[path = "../tests/common/mod.rs"]
mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{World, serve, unix_address};
use futures_util::future::join_all;
use workload_api::WorkloadApiClient;

const STREAMS: usize = 1000;
const ROUNDS: usize = 30;
const SCENARIO_ENV: &str = "WORKLOAD_API_BENCH_STREAMS_PER_CONNECTION";

fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.split_whitespace().next())
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(0)
}

fn main() {
    // `cargo bench` passes `--bench`; `cargo test --benches` runs this too,
    // with fewer rounds.
    let quick = !std::env::args().any(|a| a == "--bench");
    let rounds = if quick { 2 } else { ROUNDS };
    let Some(per_connection) = std::env::var(SCENARIO_ENV)
        .ok()
        .and_then(|v| v.parse().ok())
    else {
        for per_connection in [1usize, 100] {
            let status = std::process::Command::new(std::env::current_exe().expect("own path"))
                .args(std::env::args().skip(1))
                .env(SCENARIO_ENV, per_connection.to_string())
                .status()
                .expect("scenario process runs");
            assert!(status.success(), "scenario {per_connection} failed");
        }
        return;
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(run(rounds, per_connection));
}

async fn run(rounds: usize, per_connection: usize) {
    let World {
        dir: _dir,
        socket,
        domain,
        provider,
        entry,
    } = World::new("bench");
    let _server = serve(Arc::clone(&provider), &socket);
    let address = unix_address(&socket);
    let rotations: Vec<_> = (0..rounds).map(|_| domain.svid("/web")).collect();

    // Warm up allocator and runtime with one client.
    let mut warm = WorkloadApiClient::connect(&address).await.expect("connect");
    warm.fetch_x509_context().await.expect("fetch");
    drop(warm);

    let before = rss_kib();
    let opening = Instant::now();
    let mut streams = Vec::with_capacity(STREAMS);
    let mut client = WorkloadApiClient::connect(&address).await.expect("connect");
    for i in 0..STREAMS {
        if i % per_connection == 0 {
            client = WorkloadApiClient::connect(&address).await.expect("connect");
        }
        streams.push(client.watch_x509_context().await.expect("watch"));
    }
    for f in join_all(streams.iter_mut().map(|s| s.next())).await {
        f.expect("first message").expect("valid first message");
    }
    let open_time = opening.elapsed();
    let after = rss_kib();

    let mut times: Vec<Duration> = Vec::with_capacity(rounds);
    for svid in rotations {
        let leaf = svid.leaf().clone();
        let start = Instant::now();
        provider.rotate(&entry, svid).expect("rotate");
        for u in join_all(streams.iter_mut().map(|s| s.next())).await {
            let ctx = u.expect("update").expect("valid update");
            assert_eq!(ctx.svids[0].svid.leaf(), &leaf);
        }
        times.push(start.elapsed());
    }
    times.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    let median = times.get(times.len() / 2).copied().unwrap_or_default();
    println!(
        "fanout/{STREAMS}_streams/{per_connection}_per_connection ({} connections): rounds={rounds}",
        STREAMS.div_ceil(per_connection)
    );
    println!(
        "  rotation reaches all streams: min {:.2} ms, median {:.2} ms, max {:.2} ms",
        ms(times.first().copied().unwrap_or_default()),
        ms(median),
        ms(times.last().copied().unwrap_or_default())
    );
    println!("  opening the streams: {:.0} ms", ms(open_time));
    println!(
        "  memory: RSS +{} KiB for {STREAMS} open streams = {:.1} KiB per stream (client and server ends)",
        after.saturating_sub(before),
        after.saturating_sub(before) as f64 / STREAMS as f64
    );
}
