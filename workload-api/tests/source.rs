//! `X509Source` against our server: rotation, server restart with
//! last-known-good material, withdrawal on PermissionDenied. Real sockets,
//! so real time (fast backoff) and a time limit that fails each test; only
//! the backoff test, which never has I/O in flight, runs on paused time.

mod common;

use std::sync::Arc;

use common::{
    Domain, TempDir, World, entry_for, my_uid_selector, provider_for, serve, unix_address,
};
use spiffe_core::{BundleSource, SvidSource};
use std::future::Future;
use std::time::Duration;

use workload_api::{Backoff, SourceHealth, SourceOptions, X509Source};

/// Fails the test when `body` takes more than 60 s.
async fn within(body: impl Future<Output = ()>) {
    tokio::time::timeout(Duration::from_secs(60), body)
        .await
        .expect("the test finishes within 60 s");
}

fn fast() -> SourceOptions {
    SourceOptions::default().with_backoff(Backoff {
        initial: Duration::from_millis(20),
        max: Duration::from_millis(200),
    })
}

#[tokio::test]
async fn source_follows_rotation_survives_restart_and_withdraws_on_denial() {
    within(async move {
        let World {
            dir: _dir,
            socket,
            domain,
            provider,
            entry,
        } = World::new("source");
        let server = serve(Arc::clone(&provider), &socket);

        let (source, task) = X509Source::with_options(unix_address(&socket), fast());
        assert_eq!(source.health(), SourceHealth::Connecting);
        assert!(source.x509_svid().is_none());
        let task = tokio::spawn(task);
        let mut health = source.watch_health();
        health
            .wait_for(|h| *h == SourceHealth::Ready)
            .await
            .unwrap();
        let first = source.x509_svid().unwrap();
        assert_eq!(first.spiffe_id().to_string(), "spiffe://example.org/web");
        assert!(source.bundle_set().get(&domain.td).is_some());
        let g1 = SvidSource::generation(&source);
        assert!(g1 >= 1);

        // Rotation arrives on the open stream.
        let mut changes = SvidSource::subscribe(&source);
        provider.rotate(&entry, domain.svid("/web")).unwrap();
        changes.changed().await.unwrap();
        let rotated = source.x509_svid().unwrap();
        assert_ne!(rotated.leaf(), first.leaf());
        assert!(SvidSource::generation(&source) > g1);

        // The server goes away: the last good SVID stays in use.
        server.stop().await;
        health
            .wait_for(|h| matches!(h, SourceHealth::Reconnecting { .. }))
            .await
            .unwrap();
        assert_eq!(source.x509_svid().unwrap().leaf(), rotated.leaf());
        // Several failed attempts pass.
        health
            .wait_for(|h| matches!(h, SourceHealth::Reconnecting { failures } if *failures >= 3))
            .await
            .unwrap();
        assert_eq!(source.x509_svid().unwrap().leaf(), rotated.leaf());

        // It comes back: the source reconnects by itself.
        let _server = serve(Arc::clone(&provider), &socket);
        health
            .wait_for(|h| *h == SourceHealth::Ready)
            .await
            .unwrap();
        assert_eq!(source.x509_svid().unwrap().leaf(), rotated.leaf());

        // Identity withdrawn mid-stream: stop using the SVID and bundles (WL-11).
        provider.remove_entry(&entry).unwrap();
        health
            .wait_for(|h| *h == SourceHealth::Denied)
            .await
            .unwrap();
        assert!(source.x509_svid().is_none());
        assert!(source.bundle_set().is_empty());

        // Granted again: the source picks it up after its backoff.
        provider
            .add_entry(
                entry_for(domain.id("/web"), [my_uid_selector()]),
                domain.svid("/web"),
            )
            .unwrap();
        health
            .wait_for(|h| *h == SourceHealth::Ready)
            .await
            .unwrap();
        assert!(source.x509_svid().is_some());
        assert_eq!(source.discarded_updates(), 0);

        // Dropping the last handle ends the task.
        drop(source);
        task.await.unwrap().unwrap();
    })
    .await;
}

#[tokio::test(start_paused = true)]
async fn source_without_server_keeps_retrying_with_capped_backoff() {
    let dir = TempDir::new("source-none");
    let socket = dir.0.join("absent.sock");
    let backoff = Backoff {
        initial: std::time::Duration::from_millis(100),
        max: std::time::Duration::from_secs(2),
    };
    let (source, task) = X509Source::with_options(
        unix_address(&socket),
        SourceOptions::default().with_backoff(backoff),
    );
    let task = tokio::spawn(task);
    let start = tokio::time::Instant::now();
    let mut health = source.watch_health();
    health
        .wait_for(|h| matches!(h, SourceHealth::Reconnecting { failures } if *failures >= 10))
        .await
        .unwrap();
    // 0.1 + 0.2 + 0.4 + 0.8 + 1.6 + 2 * 4 = 11.1 s of backoff before the 10th failure.
    let waited = start.elapsed();
    assert!(
        waited >= std::time::Duration::from_millis(11_100),
        "{waited:?}"
    );
    assert!(waited < std::time::Duration::from_secs(13), "{waited:?}");
    assert!(source.x509_svid().is_none());
    drop(source);
    task.await.unwrap().unwrap();
}

#[tokio::test]
async fn source_uses_the_svid_with_the_requested_hint() {
    within(async move {
        let dir = TempDir::new("source-hint");
        let socket = dir.0.join("api.sock");
        let domain = Domain::new("example.org");
        let provider = provider_for(&domain);
        for (path, hint) in [("/a", "internal"), ("/b", "external")] {
            provider
                .add_entry(
                    entry_for(domain.id(path), [my_uid_selector()]).with_hint(hint),
                    domain.svid(path),
                )
                .unwrap();
        }
        let _server = serve(Arc::clone(&provider), &socket);
        let (source, task) =
            X509Source::with_options(unix_address(&socket), fast().with_hint("external"));
        let _task = tokio::spawn(task);
        source
            .watch_health()
            .wait_for(|h| *h == SourceHealth::Ready)
            .await
            .unwrap();
        assert_eq!(
            source.x509_svid().unwrap().spiffe_id().to_string(),
            "spiffe://example.org/b"
        );
    })
    .await;
}

#[tokio::test]
async fn bundle_sources_follow_bundle_changes_and_jwt_source_mints() {
    within(async move {
        use workload_api::{JwtSource, X509BundleSource};
        let dir = TempDir::new("bundle-source");
        let socket = dir.0.join("api.sock");
        let domain = Domain::new("example.org");
        let partner = Domain::new("partner.test");
        let provider = provider_for(&domain);
        let entry = provider
            .add_entry(
                entry_for(domain.id("/web"), [my_uid_selector()])
                    .with_federates_with(partner.td.clone()),
                domain.svid("/web"),
            )
            .unwrap();
        let _server = serve(Arc::clone(&provider), &socket);

        let (x509, x509_task) = X509BundleSource::with_options(unix_address(&socket), fast());
        let (jwt, jwt_task) = JwtSource::with_options(unix_address(&socket), fast());
        let x509_task = tokio::spawn(x509_task);
        let jwt_task = tokio::spawn(jwt_task);
        x509.watch_health()
            .wait_for(|h| *h == SourceHealth::Ready)
            .await
            .unwrap();
        jwt.watch_health()
            .wait_for(|h| *h == SourceHealth::Ready)
            .await
            .unwrap();
        assert_eq!(x509.bundle_set().len(), 1);
        assert!(
            jwt.bundle_set()
                .get(&domain.td)
                .unwrap()
                .jwt()
                .key(&domain.kid)
                .is_some()
        );

        // The federated bundle appears: both sources publish a new generation.
        let (g_x509, g_jwt) = (x509.generation(), jwt.generation());
        let mut set = spiffe_core::BundleSet::new();
        set.insert(domain.bundle());
        set.insert(partner.bundle());
        provider.set_bundles(set);
        let mut x509_changes = x509.subscribe();
        x509_changes.wait_for(|g| *g > g_x509).await.unwrap();
        let mut jwt_changes = jwt.subscribe();
        jwt_changes.wait_for(|g| *g > g_jwt).await.unwrap();
        assert!(x509.bundle_set().get(&partner.td).is_some());
        assert!(
            jwt.bundle_set()
                .get(&partner.td)
                .unwrap()
                .jwt()
                .key(&partner.kid)
                .is_some()
        );

        // JWT-SVIDs on demand, validated locally against the source's bundles.
        let tokens = jwt.fetch_jwt_svids(&["db"], None).await.unwrap();
        let validated = spiffe_core::JwtSvid::validate(
            tokens[0].svid.token(),
            &*jwt.bundle_set(),
            "db",
            std::time::SystemTime::now(),
        )
        .unwrap();
        assert_eq!(
            validated.spiffe_id().to_string(),
            "spiffe://example.org/web"
        );

        // Withdrawal empties both.
        provider.remove_entry(&entry).unwrap();
        x509.watch_health()
            .wait_for(|h| *h == SourceHealth::Denied)
            .await
            .unwrap();
        jwt.watch_health()
            .wait_for(|h| *h == SourceHealth::Denied)
            .await
            .unwrap();
        assert!(x509.bundle_set().is_empty());
        assert!(jwt.bundle_set().is_empty());

        drop((x509, jwt));
        x509_task.await.unwrap().unwrap();
        jwt_task.await.unwrap().unwrap();
    })
    .await;
}
