//! Our client against our server over a Unix socket: the Workload API
//! behaviour rules (WL-*) and the endpoint rules (EP-*).

mod common;

use std::sync::Arc;

use common::{
    Domain, TempDir, World, entry_for, my_uid_selector, provider_for, serve, serve_with,
    unix_address,
};
use spiffe_core::SpiffeId;
use workload_api::{ClientError, ServerLimits, StatusCode, WorkloadApiClient};

fn code(e: ClientError) -> StatusCode {
    e.code()
        .unwrap_or_else(|| panic!("expected a status, got {e}"))
}

#[tokio::test]
async fn wl_5_first_message_at_once_and_wl_17_rotation_on_the_open_stream() {
    common::within(60, async move {
        let World {
            dir: _dir,
            socket,
            domain,
            provider,
            entry,
        } = World::new("rotate");
        let _server = serve(Arc::clone(&provider), &socket);
        let mut client = WorkloadApiClient::connect(&unix_address(&socket))
            .await
            .unwrap();
        let mut stream = client.watch_x509_context().await.unwrap();
        let first = stream.next().await.unwrap().unwrap();
        let svid = first.default_svid().unwrap().clone();
        assert_eq!(svid.spiffe_id().to_string(), "spiffe://example.org/web");
        assert!(first.bundles.get(&domain.td).is_some());

        provider.rotate(&entry, domain.svid("/web")).unwrap();
        let second = stream.next().await.unwrap().unwrap();
        let rotated = second.default_svid().unwrap();
        assert_eq!(rotated.spiffe_id(), svid.spiffe_id());
        assert_ne!(
            rotated.leaf(),
            svid.leaf(),
            "WL-17: the new certificate arrives"
        );
    })
    .await;
}

#[tokio::test]
async fn wl_11_caller_without_identity_gets_permission_denied() {
    common::within(60, async move {
        let dir = TempDir::new("denied");
        let socket = dir.0.join("api.sock");
        let domain = Domain::new("example.org");
        let provider = provider_for(&domain);
        provider
            .add_entry(
                entry_for(domain.id("/other"), ["unix:uid:4242424".parse().unwrap()]),
                domain.svid("/other"),
            )
            .unwrap();
        let _server = serve(provider, &socket);
        let mut client = WorkloadApiClient::connect(&unix_address(&socket))
            .await
            .unwrap();
        assert_eq!(
            code(client.fetch_x509_context().await.unwrap_err()),
            StatusCode::PermissionDenied
        );
        assert_eq!(
            code(client.fetch_x509_bundles().await.unwrap_err()),
            StatusCode::PermissionDenied
        );
        assert_eq!(
            code(client.fetch_jwt_bundles().await.unwrap_err()),
            StatusCode::PermissionDenied
        );
        assert_eq!(
            code(client.fetch_jwt_svids(&["aud"], None).await.unwrap_err()),
            StatusCode::PermissionDenied
        );
    })
    .await;
}

#[tokio::test]
async fn wl_11_withdrawal_mid_stream_is_permission_denied_and_ends_the_stream() {
    common::within(60, async move {
        let World {
            dir: _dir,
            socket,
            domain: _,
            provider,
            entry,
        } = World::new("withdraw");
        let _server = serve(Arc::clone(&provider), &socket);
        let mut client = WorkloadApiClient::connect(&unix_address(&socket))
            .await
            .unwrap();
        let mut stream = client.watch_x509_context().await.unwrap();
        stream.next().await.unwrap().unwrap();
        let mut bundles = client.watch_x509_bundles().await.unwrap();
        bundles.next().await.unwrap().unwrap();
        provider.remove_entry(&entry).unwrap();
        assert_eq!(
            code(stream.next().await.unwrap().unwrap_err()),
            StatusCode::PermissionDenied
        );
        assert!(stream.next().await.is_none());
        assert_eq!(
            code(bundles.next().await.unwrap().unwrap_err()),
            StatusCode::PermissionDenied
        );
    })
    .await;
}

#[tokio::test]
async fn wl_9_duplicate_hints_keep_the_first_and_wl_10_order_is_kept() {
    common::within(60, async move {
        let dir = TempDir::new("hints");
        let socket = dir.0.join("api.sock");
        let domain = Domain::new("example.org");
        let provider = provider_for(&domain);
        for (path, hint) in [("/a", "internal"), ("/b", "internal"), ("/c", "external")] {
            provider
                .add_entry(
                    entry_for(domain.id(path), [my_uid_selector()]).with_hint(hint),
                    domain.svid(path),
                )
                .unwrap();
        }
        let _server = serve(provider, &socket);
        let mut client = WorkloadApiClient::connect(&unix_address(&socket))
            .await
            .unwrap();
        let ctx = client.fetch_x509_context().await.unwrap();
        let got: Vec<(String, Option<String>)> = ctx
            .svids
            .iter()
            .map(|s| (s.svid.spiffe_id().path().to_owned(), s.hint.clone()))
            .collect();
        assert_eq!(
            got,
            [
                ("/a".to_owned(), Some("internal".to_owned())),
                ("/c".to_owned(), Some("external".to_owned()))
            ]
        );
    })
    .await;
}

#[tokio::test]
async fn wl_12_wl_13_wl_15_bundles_include_own_and_federated_trust_domains() {
    common::within(60, async move {
        let dir = TempDir::new("bundles");
        let socket = dir.0.join("api.sock");
        let domain = Domain::new("example.org");
        let partner = Domain::new("partner.test");
        let unrelated = Domain::new("unrelated.test");
        let provider = provider_for(&domain);
        let mut set = spiffe_core::BundleSet::new();
        set.insert(domain.bundle());
        set.insert(partner.bundle());
        set.insert(unrelated.bundle());
        provider.set_bundles(set);
        provider
            .add_entry(
                entry_for(domain.id("/web"), [my_uid_selector()])
                    .with_federates_with(partner.td.clone()),
                domain.svid("/web"),
            )
            .unwrap();
        let _server = serve(provider, &socket);
        let mut client = WorkloadApiClient::connect(&unix_address(&socket))
            .await
            .unwrap();

        let ctx = client.fetch_x509_context().await.unwrap();
        let mut tds: Vec<String> = ctx
            .bundles
            .iter()
            .map(|b| b.trust_domain().to_string())
            .collect();
        tds.sort();
        assert_eq!(tds, ["example.org", "partner.test"]);

        let x509 = client.fetch_x509_bundles().await.unwrap();
        assert_eq!(x509.len(), 2);
        assert_eq!(
            x509.get(&partner.td).unwrap().x509().authorities(),
            [partner.ca.root_cert()]
        );
        assert!(x509.get(&unrelated.td).is_none());

        let jwt = client.fetch_jwt_bundles().await.unwrap();
        assert!(
            jwt.get(&domain.td)
                .unwrap()
                .jwt()
                .key(&domain.kid)
                .is_some()
        );
        assert!(
            jwt.get(&partner.td)
                .unwrap()
                .jwt()
                .key(&partner.kid)
                .is_some()
        );
        assert!(
            jwt.get(&domain.td).unwrap().x509().is_empty(),
            "WL-15: no X.509 roots"
        );
    })
    .await;
}

#[tokio::test]
async fn wl_14_jwt_svids_for_all_or_one_identity() {
    common::within(60, async move {
        let dir = TempDir::new("jwt");
        let socket = dir.0.join("api.sock");
        let domain = Domain::new("example.org");
        let provider = provider_for(&domain);
        for path in ["/a", "/b"] {
            provider
                .add_entry(
                    entry_for(domain.id(path), [my_uid_selector()]),
                    domain.svid(path),
                )
                .unwrap();
        }
        let _server = serve(provider, &socket);
        let mut client = WorkloadApiClient::connect(&unix_address(&socket))
            .await
            .unwrap();

        let all = client
            .fetch_jwt_svids(&["spiffe://example.org/db"], None)
            .await
            .unwrap();
        let ids: Vec<String> = all.iter().map(|s| s.svid.spiffe_id().to_string()).collect();
        assert_eq!(ids, ["spiffe://example.org/a", "spiffe://example.org/b"]);
        assert_eq!(all[0].svid.audience(), ["spiffe://example.org/db"]);

        let b: SpiffeId = "spiffe://example.org/b".parse().unwrap();
        let one = client.fetch_jwt_svids(&["x"], Some(&b)).await.unwrap();
        assert_eq!(one.len(), 1);
        assert_eq!(one[0].svid.spiffe_id(), &b);

        let other: SpiffeId = "spiffe://example.org/not-mine".parse().unwrap();
        assert_eq!(
            code(
                client
                    .fetch_jwt_svids(&["x"], Some(&other))
                    .await
                    .unwrap_err()
            ),
            StatusCode::PermissionDenied
        );
        assert_eq!(
            code(client.fetch_jwt_svids(&[], None).await.unwrap_err()),
            StatusCode::InvalidArgument,
            "WL-14: audience is mandatory"
        );
        assert_eq!(
            code(client.fetch_jwt_svids(&[""], None).await.unwrap_err()),
            StatusCode::InvalidArgument
        );
    })
    .await;
}

#[tokio::test]
async fn wl_16_validate_jwt_svid_returns_claims_and_rejects_bad_tokens() {
    common::within(60, async move {
        let dir = TempDir::new("validate");
        let socket = dir.0.join("api.sock");
        let domain = Domain::new("example.org");
        let stranger = Domain::new("stranger.test");
        let provider = provider_for(&domain);
        provider
            .add_entry(
                entry_for(domain.id("/web"), [my_uid_selector()]),
                domain.svid("/web"),
            )
            .unwrap();
        let _server = serve(Arc::clone(&provider), &socket);
        let mut client = WorkloadApiClient::connect(&unix_address(&socket))
            .await
            .unwrap();
        let token = client.fetch_jwt_svids(&["svc-a"], None).await.unwrap()[0]
            .svid
            .token()
            .to_owned();

        let ok = client.validate_jwt_svid(&token, "svc-a").await.unwrap();
        assert_eq!(ok.spiffe_id.to_string(), "spiffe://example.org/web");
        assert_eq!(ok.claims["sub"], "spiffe://example.org/web");
        assert_eq!(ok.claims["aud"], serde_json::json!(["svc-a"]));
        assert!(ok.claims["exp"].is_i64());

        let wrong_audience = client.validate_jwt_svid(&token, "svc-b").await.unwrap_err();
        assert_eq!(code(wrong_audience), StatusCode::InvalidArgument);
        let garbage = client
            .validate_jwt_svid("not.a.jwt", "svc-a")
            .await
            .unwrap_err();
        assert_eq!(code(garbage), StatusCode::InvalidArgument);
        assert_eq!(
            code(client.validate_jwt_svid(&token, "").await.unwrap_err()),
            StatusCode::InvalidArgument
        );

        // A token from a trust domain the caller has no bundle for is untrusted.
        let foreign = spiffe_core::jwt::sign_jwt_svid(
            &stranger.signing_key(),
            &stranger.kid,
            &spiffe_core::jwt::JwtClaims {
                subject: "spiffe://stranger.test/x".parse().unwrap(),
                audience: vec!["svc-a".into()],
                expiry: std::time::SystemTime::now() + std::time::Duration::from_secs(60),
                issued_at: std::time::SystemTime::now(),
                issuer: None,
                extra: Default::default(),
            },
        )
        .unwrap();
        assert_eq!(
            code(
                client
                    .validate_jwt_svid(&foreign, "svc-a")
                    .await
                    .unwrap_err()
            ),
            StatusCode::InvalidArgument
        );
    })
    .await;
}

#[tokio::test]
async fn stream_limit_sheds_load_with_unavailable() {
    common::within(60, async move {
        let World {
            dir: _dir,
            socket,
            domain: _,
            provider,
            entry: _,
        } = World::new("limit");
        let running = serve_with(
            provider,
            &socket,
            ServerLimits::default().with_max_streams(1),
        );
        let mut client = WorkloadApiClient::connect(&unix_address(&socket))
            .await
            .unwrap();
        let mut open = client.watch_x509_context().await.unwrap();
        open.next().await.unwrap().unwrap();
        assert_eq!(running.server.open_streams(), 1);
        assert_eq!(
            code(client.fetch_x509_bundles().await.unwrap_err()),
            StatusCode::Unavailable
        );
        drop(open);
        // Once the stream is gone its slot is free again.
        let mut ok = None;
        for _ in 0..100 {
            match client.fetch_x509_bundles().await {
                Ok(b) => {
                    ok = Some(b);
                    break;
                }
                Err(e) => {
                    assert_eq!(code(e), StatusCode::Unavailable);
                    tokio::task::yield_now().await;
                }
            }
        }
        assert!(ok.is_some(), "the slot of a closed stream is released");
    })
    .await;
}

#[tokio::test]
async fn oversized_request_is_out_of_range() {
    common::within(60, async move {
        let World {
            dir: _dir,
            socket,
            domain: _,
            provider,
            entry: _,
        } = World::new("size");
        let _server = serve_with(
            provider,
            &socket,
            ServerLimits::default().with_max_message_size(16 * 1024),
        );
        let mut client = WorkloadApiClient::connect(&unix_address(&socket))
            .await
            .unwrap();
        let huge = "a".repeat(64 * 1024);
        let err = client.validate_jwt_svid(&huge, "aud").await.unwrap_err();
        assert_eq!(
            code(err),
            StatusCode::OutOfRange,
            "OUT_OF_RANGE for a too-large message"
        );
    })
    .await;
}

#[tokio::test]
async fn ep_2_loopback_tcp_with_a_custom_attestor() {
    common::within(60, async move {
        use workload_api::{Caller, EndpointAddress, Selectors, WorkloadApiServer};
        let domain = Domain::new("example.org");
        let provider = provider_for(&domain);
        provider
            .add_entry(
                entry_for(domain.id("/tcp"), ["tcp:loopback:true".parse().unwrap()]),
                domain.svid("/tcp"),
            )
            .unwrap();
        let attestor = |caller: &Caller| {
            let mut s = Selectors::new();
            if let Caller::Tcp { peer } = caller
                && peer.ip().is_loopback()
            {
                s.insert("tcp:loopback:true".parse().unwrap());
            }
            Ok(s)
        };
        let server = Arc::new(WorkloadApiServer::new(provider, Arc::new(attestor)));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let s = Arc::clone(&server);
        let task = tokio::spawn(async move {
            s.serve_tcp(listener, async {
                let _ = rx.await;
            })
            .await
        });
        let mut client = WorkloadApiClient::connect(&EndpointAddress::Tcp(addr))
            .await
            .unwrap();
        let ctx = client.fetch_x509_context().await.unwrap();
        assert_eq!(
            ctx.svids[0].svid.spiffe_id().to_string(),
            "spiffe://example.org/tcp"
        );
        tx.send(()).unwrap();
        task.await.unwrap().unwrap();
    })
    .await;
}

#[tokio::test]
async fn server_shutdown_ends_open_streams_with_unavailable() {
    common::within(60, async move {
        let World {
            dir: _dir,
            socket,
            domain: _,
            provider,
            entry: _,
        } = World::new("shutdown");
        let running = serve(provider, &socket);
        let mut client = WorkloadApiClient::connect(&unix_address(&socket))
            .await
            .unwrap();
        let mut stream = client.watch_x509_context().await.unwrap();
        stream.next().await.unwrap().unwrap();
        let stopped = tokio::spawn(running.stop());
        assert_eq!(
            code(stream.next().await.unwrap().unwrap_err()),
            StatusCode::Unavailable
        );
        stopped.await.unwrap();
    })
    .await;
}

#[tokio::test]
async fn wl_9_jwt_svid_hints_are_unique_too() {
    common::within(60, async move {
        let dir = TempDir::new("jwt-hints");
        let socket = dir.0.join("api.sock");
        let domain = Domain::new("example.org");
        let provider = provider_for(&domain);
        for path in ["/a", "/b"] {
            provider
                .add_entry(
                    entry_for(domain.id(path), [my_uid_selector()]).with_hint("same"),
                    domain.svid(path),
                )
                .unwrap();
        }
        let _server = serve(provider, &socket);
        let mut client = WorkloadApiClient::connect(&unix_address(&socket))
            .await
            .unwrap();
        let svids = client.fetch_jwt_svids(&["aud"], None).await.unwrap();
        assert_eq!(svids.len(), 1);
        assert_eq!(
            svids[0].svid.spiffe_id().to_string(),
            "spiffe://example.org/a"
        );
    })
    .await;
}

#[tokio::test]
async fn ep_7_attestation_failure_is_unavailable() {
    common::within(60, async move {
        use workload_api::{AttestError, Caller, WorkloadApiServer};
        let dir = TempDir::new("attest-fail");
        let socket = dir.0.join("api.sock");
        let domain = Domain::new("example.org");
        let provider = provider_for(&domain);
        let failing = |_: &Caller| Err(AttestError::NoPid);
        let server = Arc::new(WorkloadApiServer::new(provider, Arc::new(failing)));
        let listener = tokio::net::UnixListener::bind(&socket).unwrap();
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let s = Arc::clone(&server);
        let task = tokio::spawn(async move {
            s.serve_unix(listener, async {
                let _ = rx.await;
            })
            .await
        });
        let mut client = WorkloadApiClient::connect(&unix_address(&socket))
            .await
            .unwrap();
        let err = client.fetch_x509_context().await.unwrap_err();
        assert_eq!(code(err), StatusCode::Unavailable);
        tx.send(()).unwrap();
        task.await.unwrap().unwrap();
    })
    .await;
}

#[tokio::test]
async fn wl_7_a_federated_bundle_removed_from_the_set_disappears_from_clients() {
    common::within(60, async move {
        let world = World::new("wl7");
        let partner = Domain::new("partner.test");
        let mut both = spiffe_core::BundleSet::new();
        both.insert(world.domain.bundle());
        both.insert(partner.bundle());
        world.provider.set_bundles(both);
        world.provider.remove_entry(&world.entry).unwrap();
        world
            .provider
            .add_entry(
                entry_for(world.domain.id("/web"), [my_uid_selector()])
                    .with_federates_with(partner.td.clone()),
                world.domain.svid("/web"),
            )
            .unwrap();
        let _server = serve(world.provider.clone(), &world.socket);
        let mut client = WorkloadApiClient::connect(&unix_address(&world.socket))
            .await
            .unwrap();
        let mut ctx = client.watch_x509_context().await.unwrap();
        let mut x509 = client.watch_x509_bundles().await.unwrap();
        let mut jwt = client.watch_jwt_bundles().await.unwrap();
        assert!(
            ctx.next()
                .await
                .unwrap()
                .unwrap()
                .bundles
                .get(&partner.td)
                .is_some()
        );
        assert!(
            x509.next()
                .await
                .unwrap()
                .unwrap()
                .get(&partner.td)
                .is_some()
        );
        assert!(
            jwt.next()
                .await
                .unwrap()
                .unwrap()
                .get(&partner.td)
                .is_some()
        );

        // The partner's bundle leaves the set: every stream sends a state
        // without it, and our own bundle stays.
        let mut own = spiffe_core::BundleSet::new();
        own.insert(world.domain.bundle());
        world.provider.set_bundles(own);
        let c = ctx.next().await.unwrap().unwrap();
        assert!(c.bundles.get(&partner.td).is_none());
        assert!(c.bundles.get(&world.domain.td).is_some());
        let b = x509.next().await.unwrap().unwrap();
        assert!(b.get(&partner.td).is_none());
        assert_eq!(b.len(), 1);
        let j = jwt.next().await.unwrap().unwrap();
        assert!(j.get(&partner.td).is_none());
        assert!(j.get(&world.domain.td).is_some());
    })
    .await;
}

#[tokio::test]
async fn svids_whose_trust_domain_has_no_bundle_are_not_sent() {
    common::within(60, async move {
        let world = World::new("nobundle");
        // A second identity in a trust domain the provider has no bundle
        // for: it is left out, the one with a bundle is sent.
        let orphan = Domain::new("orphan.test");
        world
            .provider
            .add_entry(
                entry_for(orphan.id("/lost"), [my_uid_selector()]),
                orphan.svid("/lost"),
            )
            .unwrap();
        let _server = serve(world.provider.clone(), &world.socket);
        let mut client = WorkloadApiClient::connect(&unix_address(&world.socket))
            .await
            .unwrap();
        let ctx = client.fetch_x509_context().await.unwrap();
        let ids: Vec<String> = ctx
            .svids
            .iter()
            .map(|s| s.svid.spiffe_id().to_string())
            .collect();
        assert_eq!(ids, ["spiffe://example.org/web"]);

        // With only the orphan left, the caller has nothing to receive.
        world.provider.remove_entry(&world.entry).unwrap();
        let err = client.fetch_x509_context().await.unwrap_err();
        assert_eq!(code(err), StatusCode::PermissionDenied);
        // Once its bundle arrives, the SVID is sent.
        let mut set = spiffe_core::BundleSet::new();
        set.insert(world.domain.bundle());
        set.insert(orphan.bundle());
        world.provider.set_bundles(set);
        let ctx = client.fetch_x509_context().await.unwrap();
        assert_eq!(
            ctx.svids[0].svid.spiffe_id().to_string(),
            "spiffe://orphan.test/lost"
        );
    })
    .await;
}
