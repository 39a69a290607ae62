//! The whole chain, composed: an svid-ca authority rotating on its own
//! schedule → an agent (tests/support/agent.rs) feeding a workload-api
//! `MemoryIdentityProvider` → a Workload API server on a Unix socket →
//! one `X509Source` per workload → an mtls-tower server and client on
//! 127.0.0.1, with requests running all the time.
//!
//! Real time throughout: the CA key lives 60 s (the shortest svid-ca
//! allows), SVIDs 6 s, so SVIDs rotate about every 3 s and one full CA
//! rotation (prepare → activate → old key leaves the bundle) happens in a
//! little over a minute.
//!
//! What fails it: any failed request or handshake on either side; any
//! `X509Source` snapshot whose SVID does not verify against the bundle of
//! the same snapshot (torn); slots seen out of order; too few SVID
//! renewals; a side that never verified its peer's SVIDs of both keys or
//! never dropped the old key. svid-ca publishes a key about 23 s before it
//! signs with it, so a bundle change and an SVID change never reach a
//! workload in one update; a torn state shows up only when the order is
//! broken upstream (a key used as soon as it is published, an SVID
//! published before its bundle), and then this test fails on both the
//! handshakes and the torn-snapshot count.

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::convert::Infallible;
use std::os::unix::fs::MetadataExt;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use http_body_util::{BodyExt, Empty, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::service::TowerToHyperService;
use mtls_tower::{
    ClientConfigBuilder, ConnectionFacts, ConnectionLayer, MtlsAcceptor, MtlsConnector,
    PeerIdentity, ServerConfigBuilder, authorizer,
};
use spiffe_core::{BundleSource, SpiffeId, SvidSource, TrustDomain, verify_x509_svid};
use support::agent::{self, Agent, AgentLog, Reason, Workload};
use svid_ca::{CaConfig, CertificateAuthority, Entitlement, SlotKind, SlotState};
use tokio::time::Instant;
use tower::Layer;
use workload_api::{
    EndpointAddress, MemoryIdentityProvider, Selector, SourceOptions, UnixAttestor,
    WorkloadApiServer, X509Source,
};

const TD: &str = "example.org";
const SERVER: &str = "spiffe://example.org/e2e/server";
const CLIENT: &str = "spiffe://example.org/e2e/client";
/// Fewest SVID renewals each workload must go through during the traffic.
const MIN_SVID_ROTATIONS: usize = 8;

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The X.509 authority ids (CA key slot ids) of a bundle set.
fn authority_ids(set: &spiffe_core::BundleSet, td: &TrustDomain) -> BTreeSet<String> {
    set.get(td)
        .map(|b| {
            b.x509()
                .authorities()
                .iter()
                .map(|c| agent::subject_cn(c).expect("svid-ca CA certificates have a CN"))
                .collect()
        })
        .unwrap_or_default()
}

/// What one workload's `X509Source` published, read on every change and
/// every 5 ms: its SVIDs (serial → signing authority), the distinct
/// authority sets of its bundle in order, and every snapshot whose SVID
/// does not verify against the bundle of the same snapshot (torn).
#[derive(Default, Debug)]
struct Seen {
    svids: BTreeMap<Vec<u8>, String>,
    bundles: Vec<BTreeSet<String>>,
    torn: Vec<String>,
    snapshots: u64,
}

fn watch_source(
    name: &'static str,
    source: X509Source,
    stop: Arc<AtomicBool>,
) -> (Arc<Mutex<Seen>>, tokio::task::JoinHandle<()>) {
    let seen = Arc::new(Mutex::new(Seen::default()));
    let out = seen.clone();
    let td: TrustDomain = TD.parse().expect("valid trust domain");
    let task = tokio::spawn(async move {
        let mut svid_changes = SvidSource::subscribe(&source);
        let mut bundle_changes = BundleSource::subscribe(&source);
        while !stop.load(Ordering::SeqCst) {
            let snapshot = source.snapshot();
            {
                let mut seen = lock(&seen);
                seen.snapshots += 1;
                let ids = authority_ids(snapshot.bundles(), &td);
                if seen.bundles.last() != Some(&ids) {
                    seen.bundles.push(ids);
                }
                if let Some(svid) = snapshot.svid() {
                    let leaf = svid.leaf();
                    let serial = agent::serial(leaf).expect("the leaf parses");
                    let signer = agent::issuer_cn(leaf).expect("the leaf names its issuer");
                    if let Err(e) =
                        verify_x509_svid(svid.chain(), &**snapshot.bundles(), SystemTime::now())
                    {
                        let message = format!(
                            "{name}: snapshot {}: SVID signed by {signer}, bundle {:?}: {e}",
                            snapshot.generation(),
                            seen.bundles.last()
                        );
                        seen.torn.push(message);
                    }
                    seen.svids.insert(serial, signer);
                }
            }
            tokio::select! {
                _ = svid_changes.changed() => {}
                _ = bundle_changes.changed() => {}
                () = tokio::time::sleep(Duration::from_millis(5)) => {}
            }
        }
    });
    (out, task)
}

/// When the authority's key slots moved, and how many requests had
/// succeeded by then.
#[derive(Default, Debug, Clone)]
struct Timeline {
    prepared: Option<(Instant, u64, String)>,
    activated: Option<(Instant, u64)>,
    retired: Option<(Instant, u64)>,
    out_of_order: Vec<String>,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn authority_to_workload_api_to_mtls_rotates_without_a_failure() {
    // Real time: the limit covers sockets, a Unix-socket server and a CA
    // schedule of a little over a minute.
    test_support::within(150, scenario()).await;
}

async fn scenario() {
    let started = Instant::now();
    let td: TrustDomain = TD.parse().unwrap();
    let server_id: SpiffeId = SERVER.parse().unwrap();
    let client_id: SpiffeId = CLIENT.parse().unwrap();

    // The authority: 60 s CA keys, 6 s SVIDs, rotating every 250 ms on its
    // own schedule (prepare at half the key's life, activate at a sixth).
    let mut config = CaConfig::new(td.clone());
    config.ca_ttl = Duration::from_secs(60);
    config.x509_svid_ttl = Duration::from_secs(6);
    config.jwt_svid_ttl = Duration::from_secs(6);
    config.refresh_hint = Duration::from_secs(1);
    let ca = Arc::new(CertificateAuthority::builder(config).build().unwrap());
    let first_key = ca
        .authorities()
        .into_iter()
        .find(|a| a.kind == SlotKind::X509 && a.state == SlotState::Active)
        .expect("a built authority has an active X.509 key")
        .id;
    let rotation = tokio::spawn(ca.clone().rotation_task(Duration::from_millis(250)));

    // The agent and the Workload API server, on a Unix socket.
    let provider = Arc::new(MemoryIdentityProvider::new());
    let uid = std::fs::metadata("/proc/self").unwrap().uid();
    let selector = Selector::new("unix", format!("uid:{uid}")).unwrap();
    let workload = |hint: &str, id: &SpiffeId| Workload {
        hint: hint.to_owned(),
        selectors: vec![selector.clone()],
        entitlement: Entitlement::new(id.clone()),
    };
    let (agent, log) = Agent::start(
        ca.clone(),
        provider.clone(),
        vec![
            workload("server", &server_id),
            workload("client", &client_id),
        ],
    )
    .unwrap();
    let agent_task = tokio::spawn(agent.run());
    let dir = support::TempDir::new("rotation");
    let socket = dir.0.join("api.sock");
    let listener = tokio::net::UnixListener::bind(&socket).unwrap();
    let api = WorkloadApiServer::new(provider.clone(), Arc::new(UnixAttestor::new()));
    let (stop_api, api_stopped) = tokio::sync::oneshot::channel::<()>();
    let api_task = tokio::spawn(async move {
        api.serve_unix(listener, async {
            let _ = api_stopped.await;
        })
        .await
    });

    // One X509Source per workload, chosen by hint.
    let source = |hint: &str| {
        let (source, task) = X509Source::with_options(
            EndpointAddress::Unix(socket.clone()),
            SourceOptions::default().with_hint(hint),
        );
        (source, tokio::spawn(task))
    };
    let (server_source, server_source_task) = source("server");
    let (client_source, client_source_task) = source("client");
    while server_source.x509_svid().is_none() || client_source.x509_svid().is_none() {
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "both sources have an SVID within 10 s"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let stop = Arc::new(AtomicBool::new(false));
    let (server_seen, server_watch) = watch_source("server", server_source.clone(), stop.clone());
    let (client_seen, client_watch) = watch_source("client", client_source.clone(), stop.clone());

    // The mTLS server: answers with the client's SPIFFE ID and records the
    // notAfter of every client SVID it verified.
    let crypto = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let server_config = ServerConfigBuilder::new(
        crypto.clone(),
        server_source.clone(),
        server_source.clone(),
        authorizer::exact(client_id.clone()),
    )
    .build()
    .unwrap();
    let tcp = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("https://127.0.0.1:{}/", tcp.local_addr().unwrap().port());
    let mut acceptor = MtlsAcceptor::new(tcp, server_config);
    let server_saw = Arc::new(Mutex::new(BTreeMap::<SystemTime, u64>::new()));
    let handshake_failures = Arc::new(Mutex::new(Vec::<String>::new()));
    let accept_task = {
        let server_saw = server_saw.clone();
        let handshake_failures = handshake_failures.clone();
        tokio::spawn(async move {
            loop {
                let conn = match acceptor.accept().await {
                    Ok(conn) => conn,
                    Err(e) => {
                        lock(&handshake_failures).push(e.to_string());
                        continue;
                    }
                };
                let server_saw = server_saw.clone();
                let svc = ConnectionLayer::new(conn.facts().clone()).layer(tower::service_fn(
                    move |req: http::Request<hyper::body::Incoming>| {
                        let peer = req
                            .extensions()
                            .get::<ConnectionFacts>()
                            .and_then(ConnectionFacts::peer)
                            .cloned();
                        if let Some(p) = &peer {
                            *lock(&server_saw).entry(p.not_after()).or_default() += 1;
                        }
                        let body = peer.map(|p| p.spiffe_id().to_string()).unwrap_or_default();
                        async move {
                            Ok::<_, Infallible>(http::Response::new(Full::new(Bytes::from(body))))
                        }
                    },
                ));
                tokio::spawn(async move {
                    let _ = hyper::server::conn::http2::Builder::new(TokioExecutor::new())
                        .serve_connection(TokioIo::new(conn), TowerToHyperService::new(svc))
                        .await;
                });
            }
        })
    };

    // Three clients, each opening a new connection (a full handshake) per
    // request, recording the notAfter of every server SVID they verified.
    let client_config = ClientConfigBuilder::new(
        crypto,
        client_source.clone(),
        client_source.clone(),
        authorizer::exact(server_id.clone()),
    )
    .build()
    .unwrap();
    let ok = Arc::new(AtomicU64::new(0));
    let failures = Arc::new(Mutex::new(Vec::<String>::new()));
    let client_saw = Arc::new(Mutex::new(BTreeMap::<SystemTime, u64>::new()));
    let mut workers = Vec::new();
    for _ in 0..3 {
        let http: Client<MtlsConnector, Empty<Bytes>> = Client::builder(TokioExecutor::new())
            .pool_max_idle_per_host(0)
            .build(MtlsConnector::new(client_config.clone()));
        let (url, stop, ok, failures, client_saw) = (
            url.clone(),
            stop.clone(),
            ok.clone(),
            failures.clone(),
            client_saw.clone(),
        );
        workers.push(tokio::spawn(async move {
            while !stop.load(Ordering::SeqCst) {
                let result = async {
                    let resp = http
                        .get(url.parse().unwrap())
                        .await
                        .map_err(|e| format!("{e:?}"))?;
                    let peer = resp
                        .extensions()
                        .get::<PeerIdentity>()
                        .cloned()
                        .ok_or("no server identity on the response")?;
                    let status = resp.status();
                    let body = resp
                        .into_body()
                        .collect()
                        .await
                        .map_err(|e| format!("{e:?}"))?
                        .to_bytes();
                    if !status.is_success() || body != CLIENT.as_bytes() {
                        return Err(format!("status {status}, body {body:?}"));
                    }
                    Ok::<_, String>(peer)
                }
                .await;
                match result {
                    Ok(peer) => {
                        *lock(&client_saw).entry(peer.not_after()).or_default() += 1;
                        ok.fetch_add(1, Ordering::SeqCst);
                    }
                    Err(e) => lock(&failures).push(e),
                }
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        }));
    }

    // Follow the authority's slots while the traffic runs.
    let timeline = Arc::new(Mutex::new(Timeline::default()));
    let monitor = {
        let (ca, timeline, ok, first_key) =
            (ca.clone(), timeline.clone(), ok.clone(), first_key.clone());
        tokio::spawn(async move {
            let mut changes = BundleSource::subscribe(&*ca);
            loop {
                let slots: Vec<_> = ca
                    .authorities()
                    .into_iter()
                    .filter(|a| a.kind == SlotKind::X509)
                    .collect();
                let now = (Instant::now(), ok.load(Ordering::SeqCst));
                {
                    let mut t = lock(&timeline);
                    let first = slots.iter().find(|a| a.id == first_key);
                    let next = slots.iter().find(|a| a.id != first_key);
                    if let Some(next) = next {
                        if t.prepared.is_none() {
                            if next.state != SlotState::Prepared {
                                t.out_of_order
                                    .push(format!("new key first seen as {:?}", next.state));
                            }
                            t.prepared = Some((now.0, now.1, next.id.clone()));
                        }
                        if next.state == SlotState::Active && t.activated.is_none() {
                            if first.map(|f| f.state) != Some(SlotState::Old) {
                                t.out_of_order
                                    .push("new key active while the first is not OLD".into());
                            }
                            t.activated = Some(now);
                        }
                    }
                    if first.is_none() && t.retired.is_none() {
                        if t.activated.is_none() {
                            t.out_of_order
                                .push("first key left before the new one was active".into());
                        }
                        t.retired = Some(now);
                    }
                }
                if changes.changed().await.is_err() {
                    return;
                }
            }
        })
    };

    // Run until the first key has left the authority's bundle and both
    // workloads hold a bundle without it, then one more second of traffic.
    loop {
        let retired = lock(&timeline).retired.is_some();
        let gone = |seen: &Mutex<Seen>| {
            lock(seen)
                .bundles
                .last()
                .is_some_and(|b| !b.contains(&first_key) && !b.is_empty())
        };
        if retired && gone(&server_seen) && gone(&client_seen) {
            break;
        }
        // Stop at the first failure: the assertions below report it.
        let failed = !lock(&failures).is_empty()
            || !lock(&handshake_failures).is_empty()
            || !lock(&server_seen).torn.is_empty()
            || !lock(&client_seen).torn.is_empty();
        if failed {
            tokio::time::sleep(Duration::from_millis(200)).await;
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(120),
            "the CA rotation completed within 120 s: {:?}",
            lock(&timeline)
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    stop.store(true, Ordering::SeqCst);
    for w in workers {
        w.await.unwrap();
    }
    server_watch.await.unwrap();
    client_watch.await.unwrap();
    let _ = stop_api.send(());
    for task in [&rotation, &agent_task, &accept_task, &monitor] {
        task.abort();
    }
    let _ = api_task.await;
    server_source_task.abort();
    client_source_task.abort();

    let elapsed = started.elapsed();
    let log: AgentLog = log.snapshot();
    let timeline = lock(&timeline).clone();
    let ok = ok.load(Ordering::SeqCst);
    let failures = lock(&failures).clone();
    let handshake_failures = lock(&handshake_failures).clone();
    let server_seen = std::mem::take(&mut *lock(&server_seen));
    let client_seen = std::mem::take(&mut *lock(&client_seen));
    let server_saw = lock(&server_saw).clone();
    let client_saw = lock(&client_saw).clone();
    let renewals = |hint: &str, reason: Reason| {
        log.issued
            .iter()
            .filter(|i| i.hint == hint && i.reason == reason)
            .count()
    };
    eprintln!(
        "e2e: {elapsed:?}, {ok} requests ok, {} failed, {} failed handshakes; \
         SVIDs issued: server {} half-life + {} CA rotation, client {} + {}; \
         bundles published {}; client SVIDs verified by the server {}, server SVIDs verified by the client {}; \
         snapshots read: server {} ({} torn), client {} ({} torn); timeline {:?}",
        failures.len(),
        handshake_failures.len(),
        renewals("server", Reason::HalfLife),
        renewals("server", Reason::CaRotation),
        renewals("client", Reason::HalfLife),
        renewals("client", Reason::CaRotation),
        log.bundles.len(),
        server_saw.len(),
        client_saw.len(),
        server_seen.snapshots,
        server_seen.torn.len(),
        client_seen.snapshots,
        client_seen.torn.len(),
        timeline,
    );

    // Nothing failed anywhere.
    for (what, list) in [
        ("failed requests", &failures),
        ("failed handshakes on the server", &handshake_failures),
        ("torn server snapshots", &server_seen.torn),
        ("torn client snapshots", &client_seen.torn),
        ("agent failures", &log.failures),
    ] {
        assert!(
            list.is_empty(),
            "{} {what}; the first: {:#?}",
            list.len(),
            &list[..list.len().min(3)]
        );
    }
    assert_eq!(ca.rotation_failures(), 0, "no scheduled rotation failed");

    // One full CA rotation, in order, with requests succeeding before,
    // between and after its steps.
    assert_eq!(timeline.out_of_order, Vec::<String>::new());
    let (prepared_at, ok_prepared, new_key) =
        timeline.prepared.clone().expect("a key was prepared");
    let (activated_at, ok_activated) = timeline.activated.expect("it was activated");
    let (retired_at, ok_retired) = timeline.retired.expect("the first key was retired");
    assert!(prepared_at < activated_at && activated_at < retired_at);
    assert!(
        0 < ok_prepared
            && ok_prepared < ok_activated
            && ok_activated < ok_retired
            && ok_retired < ok,
        "requests succeeded in every phase: {ok_prepared} < {ok_activated} < {ok_retired} < {ok}"
    );

    // Each workload's source went from the first key's bundle, through one
    // with both keys, to one without the first key (the key after the new
    // one may be published by then), and held SVIDs of both keys.
    let both = BTreeSet::from([first_key.clone(), new_key.clone()]);
    for (name, seen) in [("server", &server_seen), ("client", &client_seen)] {
        let bundles: Vec<_> = seen.bundles.iter().filter(|b| !b.is_empty()).collect();
        assert_eq!(
            bundles.first().copied(),
            Some(&BTreeSet::from([first_key.clone()])),
            "{name}: first bundle"
        );
        assert!(
            bundles.iter().any(|b| b.is_superset(&both)),
            "{name}: a bundle held both keys: {bundles:?}"
        );
        let last = bundles.last().expect("bundles were seen");
        assert!(
            last.contains(&new_key) && !last.contains(&first_key),
            "{name}: the last bundle has the new key, not the first: {bundles:?}"
        );
        let first_gone = bundles.iter().position(|b| !b.contains(&first_key));
        assert!(
            first_gone.is_some_and(|i| bundles[i..].iter().all(|b| !b.contains(&first_key))),
            "{name}: the first key never came back: {bundles:?}"
        );
        let signers: BTreeSet<_> = seen.svids.values().cloned().collect();
        assert_eq!(signers, both, "{name}: held SVIDs of both keys");
        assert!(
            seen.svids.len() > MIN_SVID_ROTATIONS,
            "{name}: {} SVIDs held",
            seen.svids.len()
        );
        // Every SVID the source held is one the agent issued, with the
        // same signer.
        for (serial, signer) in &seen.svids {
            let issued = log.issued.iter().find(|i| &i.serial == serial);
            assert_eq!(
                issued.map(|i| &i.authority_id),
                Some(signer),
                "{name}: serial {serial:?}"
            );
        }
    }

    // Each side verified many SVIDs of its peer, from both keys: every
    // notAfter a side saw names exactly one SVID the agent issued.
    for (peer_hint, saw) in [("client", &server_saw), ("server", &client_saw)] {
        let signers: BTreeSet<String> = saw
            .keys()
            .map(|not_after| {
                log.find(peer_hint, *not_after)
                    .unwrap_or_else(|| {
                        panic!(
                            "{peer_hint} SVID with notAfter {} was issued",
                            agent::secs(*not_after)
                        )
                    })
                    .authority_id
                    .clone()
            })
            .collect();
        assert_eq!(
            signers, both,
            "{peer_hint} SVIDs of both keys were verified by its peer"
        );
        assert!(
            saw.len() > MIN_SVID_ROTATIONS,
            "{} distinct {peer_hint} SVIDs verified by its peer",
            saw.len()
        );
        assert!(renewals(peer_hint, Reason::HalfLife) >= MIN_SVID_ROTATIONS);
        assert!(renewals(peer_hint, Reason::CaRotation) >= 1);
    }
}
