//! End-to-end handshakes through the acceptor, the layer and the connector,
//! and the rejection cases of the X509-SVID rules.

mod common;

use std::time::Duration;

use common::*;
use mtls_tower::{
    AcceptError, ClientConfigBuilder, ConnectError, MtlsAcceptor, MtlsConnector, PeerRejected,
    TargetAuthorizers, TrustPolicy, authorizer,
};
use rustls::{AlertDescription, CertificateError};
use spiffe_core::{SpiffeId, VerifyError};
use test_support::{LeafSpec, TestCa};
use tokio::net::{TcpListener, TcpStream};

const TD: &str = "example.org";
const SERVER: &str = "spiffe://example.org/ns/default/sa/server";
const CLIENT: &str = "spiffe://example.org/ns/default/sa/frontend";

fn id(s: &str) -> SpiffeId {
    s.parse().unwrap()
}

#[tokio::test]
async fn request_carries_client_identity_and_client_sees_server_identity() {
    test_support::within(30, async move {
        let ca = TestCa::new(TD);
        let server = Workload::new(&ca, SERVER, TD);
        let client = Workload::new(&ca, CLIENT, TD);
        let srv = start_server(server.server_config(authorizer::exact(id(CLIENT)))).await;

        let http = fresh_connection_client(client.client_config(authorizer::exact(id(SERVER))));
        assert_eq!(get_body(&http, &srv.url()).await.unwrap(), CLIENT);

        let stream = MtlsConnector::new(client.client_config(authorizer::exact(id(SERVER))))
            .connect(srv.url().parse().unwrap())
            .await
            .unwrap();
        assert_eq!(stream.peer().spiffe_id(), &id(SERVER));
        assert_eq!(stream.alpn_protocol(), Some(&b"h2"[..]));
    })
    .await
}

#[tokio::test]
async fn uri_only_svid_dialed_as_localhost_is_accepted_without_dns_check() {
    test_support::within(30, async move {
        // The server SVID has no DNS SAN; the client dials "localhost".
        let ca = TestCa::new(TD);
        let server = Workload::new(&ca, SERVER, TD);
        let client = Workload::new(&ca, CLIENT, TD);
        let srv = start_server(server.server_config(authorizer::any())).await;
        let http = fresh_connection_client(client.client_config(authorizer::exact(id(SERVER))));
        let url = format!("https://localhost:{}/", srv.addr.port());
        assert_eq!(get_body(&http, &url).await.unwrap(), CLIENT);
    })
    .await
}

#[tokio::test]
async fn requests_carry_the_facts_taken_at_accept_time() {
    test_support::within(30, async move {
        let ca = TestCa::new(TD);
        let server = Workload::new(&ca, SERVER, TD);
        let client = Workload::new(&ca, CLIENT, TD);
        let srv = start_server(server.server_config(authorizer::any())).await;
        let http = fresh_connection_client(client.client_config(authorizer::exact(id(SERVER))));
        let url = format!("https://localhost:{}/facts", srv.addr.port());
        let facts = get_body(&http, &url).await.unwrap();
        // The server listens on 127.0.0.1 only, so that is where "localhost"
        // reached it, from an ephemeral port of the same address.
        let want_local = format!("local=127.0.0.1:{} ", srv.addr.port());
        assert!(facts.starts_with(&want_local), "{facts}");
        assert!(facts.contains(" remote=127.0.0.1:"), "{facts}");
        assert!(!facts.contains(" remote=127.0.0.1:0 "), "{facts}");
        assert!(facts.contains(" sni=localhost "), "{facts}");
        assert!(facts.contains(" alpn=h2 "), "{facts}");
        assert!(facts.ends_with(&format!(" peer={CLIENT}")), "{facts}");
        // Dialed by IP address, the client sends no SNI.
        let by_ip = get_body(&http, &format!("{}facts", srv.url()))
            .await
            .unwrap();
        assert!(by_ip.contains(" sni=- "), "{by_ip}");
    })
    .await
}

#[tokio::test]
async fn a_raw_rustls_config_of_another_builder_yields_no_identity() {
    test_support::within(30, async move {
        // The identity comes from the verifier of the config that completed
        // the handshake; a second config's record knows nothing of it.
        let ca = TestCa::new(TD);
        let server = Workload::new(&ca, SERVER, TD);
        let client = Workload::new(&ca, CLIENT, TD);
        let srv = start_server(server.server_config(authorizer::any())).await;
        let used = client.client_config(authorizer::exact(id(SERVER)));
        let other = client.client_config(authorizer::exact(id(SERVER)));
        let tcp = TcpStream::connect(srv.addr).await.unwrap();
        let tls = tokio_rustls::TlsConnector::from(used.rustls().clone())
            .connect("localhost".try_into().unwrap(), tcp)
            .await
            .unwrap();
        let conn = tls.get_ref().1;
        assert_eq!(
            used.peer_identity(conn).map(|p| p.spiffe_id().clone()),
            Some(id(SERVER))
        );
        assert_eq!(other.peer_identity(conn), None);
    })
    .await
}

/// In TLS 1.3 the client finishes its handshake before the server has
/// judged its certificate, so only the server's verdict is asserted.
async fn attempt(config: mtls_tower::MtlsClientConfig, url: &str) {
    let _ = MtlsConnector::new(config)
        .connect(url.parse().unwrap())
        .await;
}

async fn connect_err(config: mtls_tower::MtlsClientConfig, url: &str) -> ConnectError {
    MtlsConnector::new(config)
        .connect(url.parse().unwrap())
        .await
        .expect_err("connection must fail")
}

async fn next_server_error(srv: &mut Server) -> AcceptError {
    tokio::time::timeout(Duration::from_secs(10), srv.errors.recv())
        .await
        .expect("server reports the failed handshake")
        .expect("server running")
}

fn server_side_rustls_error(e: &AcceptError) -> rustls::Error {
    match e {
        AcceptError::Handshake { source, .. } => rustls_error(source)
            .cloned()
            .unwrap_or_else(|| panic!("no rustls error in {e:?}")),
        other => panic!("expected a handshake error, got {other:?}"),
    }
}

#[tokio::test]
async fn expired_client_svid_is_rejected_as_expired() {
    test_support::within(30, async move {
        let ca = TestCa::new(TD);
        let server = Workload::new(&ca, SERVER, TD);
        let client = Workload::new(&ca, CLIENT, TD);
        client.svids.set(svid(&ca.leaf_with(
            LeafSpec::new(CLIENT).valid(time::Duration::hours(-3), time::Duration::hours(-1)),
        )));
        let mut srv = start_server(server.server_config(authorizer::any())).await;
        attempt(client.client_config(authorizer::any()), &srv.url()).await;
        let err = next_server_error(&mut srv).await;
        assert_eq!(
            server_side_rustls_error(&err),
            rustls::Error::InvalidCertificate(CertificateError::Expired)
        );
    })
    .await
}

#[tokio::test]
async fn expired_server_svid_is_rejected_by_client() {
    test_support::within(30, async move {
        let ca = TestCa::new(TD);
        let server = Workload::new(&ca, SERVER, TD);
        server.svids.set(svid(&ca.leaf_with(
            LeafSpec::new(SERVER).valid(time::Duration::hours(-3), time::Duration::hours(-1)),
        )));
        let client = Workload::new(&ca, CLIENT, TD);
        let srv = start_server(server.server_config(authorizer::any())).await;
        let err = connect_err(client.client_config(authorizer::any()), &srv.url()).await;
        let ConnectError::ServerRejected {
            reason: PeerRejected::Verify(VerifyError::Chain { source, .. }),
            ..
        } = &err
        else {
            panic!("expected the client to reject the chain, got {err:?}")
        };
        assert!(
            matches!(source, webpki::Error::CertExpired { .. }),
            "{source:?}"
        );
    })
    .await
}

#[tokio::test]
async fn x509_6_client_of_foreign_trust_domain_without_bundle_is_unknown_issuer() {
    test_support::within(30, async move {
        let ca = TestCa::new(TD);
        let foreign = TestCa::new("foreign.org");
        let server = Workload::new(&ca, SERVER, TD);
        // The client trusts the server's CA but holds a foreign.org SVID.
        let client = Workload::new(&ca, CLIENT, TD);
        client
            .svids
            .set(svid(&foreign.leaf("spiffe://foreign.org/w")));
        let srv_config = ClientConfigBuilder::new(
            provider(),
            client.svids.clone(),
            client.bundles.clone(),
            authorizer::any(),
        )
        .trust_policy(TrustPolicy::any_in_bundle_set())
        .build()
        .unwrap();
        let mut srv = start_server(server.server_config(authorizer::any())).await;
        attempt(srv_config, &srv.url()).await;
        let err = next_server_error(&mut srv).await;
        assert_eq!(
            server_side_rustls_error(&err),
            rustls::Error::InvalidCertificate(CertificateError::UnknownIssuer)
        );
    })
    .await
}

#[tokio::test]
async fn self_signed_server_cert_with_valid_looking_id_is_unknown_issuer() {
    test_support::within(30, async move {
        let ca = TestCa::new(TD);
        let rogue = TestCa::new(TD);
        let server = Workload::new(&rogue, SERVER, TD);
        let client = Workload::new(&ca, CLIENT, TD);
        let srv = start_server(server.server_config(authorizer::any())).await;
        let err = connect_err(
            client.client_config(authorizer::exact(id(SERVER))),
            &srv.url(),
        )
        .await;
        let ConnectError::ServerRejected {
            reason: PeerRejected::Verify(VerifyError::Chain { source, .. }),
            ..
        } = &err
        else {
            panic!("expected the client to reject the chain, got {err:?}")
        };
        assert_eq!(*source, webpki::Error::UnknownIssuer);
    })
    .await
}

#[tokio::test]
async fn client_without_certificate_is_rejected() {
    test_support::within(30, async move {
        let ca = TestCa::new(TD);
        let server = Workload::new(&ca, SERVER, TD);
        let client = Workload::new(&ca, CLIENT, TD);
        client.svids.withdraw();
        let mut srv = start_server(server.server_config(authorizer::any())).await;
        // Without an SVID the client has no local trust domain: name it.
        let config = ClientConfigBuilder::new(
            provider(),
            client.svids.clone(),
            client.bundles.clone(),
            authorizer::any(),
        )
        .trust_policy(TrustPolicy::local_only().with_federated([TD.parse().unwrap()]))
        .build()
        .unwrap();
        attempt(config, &srv.url()).await;
        let err = next_server_error(&mut srv).await;
        assert_eq!(
            server_side_rustls_error(&err),
            rustls::Error::NoCertificatesPresented
        );
    })
    .await
}

#[tokio::test]
async fn client_svid_with_a_broken_signature_is_bad_signature() {
    test_support::within(30, async move {
        let ca = TestCa::new(TD);
        let server = Workload::new(&ca, SERVER, TD);
        let client = Workload::new(&ca, CLIENT, TD);
        let leaf = ca.leaf(CLIENT);
        let mut chain = leaf.chain.clone();
        let mut der = chain[0].to_vec();
        let last = der.len() - 1;
        der[last] ^= 0x01; // inside the signature's `s`: parses, does not verify
        chain[0] = der.into();
        let key = spiffe_core::PrivateKey::from_pkcs8_der(&leaf.key_der).unwrap();
        client
            .svids
            .set(spiffe_core::X509Svid::new(chain, key).unwrap());
        let mut srv = start_server(server.server_config(authorizer::any())).await;
        // rustls sends decrypt_error for a bad signature.
        assert_eq!(
            refused_handshake(&client.client_config(authorizer::any()), srv.addr).await,
            alert(AlertDescription::DecryptError)
        );
        let err = next_server_error(&mut srv).await;
        assert_eq!(
            server_side_rustls_error(&err),
            rustls::Error::InvalidCertificate(CertificateError::BadSignature)
        );
    })
    .await
}

#[tokio::test]
async fn unauthorized_client_gets_access_denied() {
    test_support::within(30, async move {
        let ca = TestCa::new(TD);
        let server = Workload::new(&ca, SERVER, TD);
        let client = Workload::new(&ca, "spiffe://example.org/ns/default/sa/intruder", TD);
        let mut srv = start_server(server.server_config(authorizer::exact(id(CLIENT)))).await;
        // TLS 1.3: the client learns of the rejection with its first read.
        assert_eq!(
            refused_handshake(&client.client_config(authorizer::any()), srv.addr).await,
            alert(AlertDescription::AccessDenied),
            "client sees the access_denied alert"
        );
        let server_err = next_server_error(&mut srv).await;
        assert_eq!(
            server_side_rustls_error(&server_err),
            rustls::Error::InvalidCertificate(CertificateError::ApplicationVerificationFailure)
        );
    })
    .await
}

#[tokio::test]
async fn per_target_authorizer_refuses_wrong_server_and_unknown_target() {
    test_support::within(30, async move {
        let ca = TestCa::new(TD);
        let server = Workload::new(&ca, SERVER, TD);
        let client = Workload::new(&ca, CLIENT, TD);
        let srv = start_server(server.server_config(authorizer::any())).await;
        let targets = TargetAuthorizers::new()
            .target("127.0.0.1", authorizer::exact(id(SERVER)))
            .target(
                "localhost",
                authorizer::exact(id("spiffe://example.org/ns/default/sa/db")),
            );
        let config = ClientConfigBuilder::per_target(
            provider(),
            client.svids.clone(),
            client.bundles.clone(),
            targets,
        )
        .build()
        .unwrap();
        let connector = MtlsConnector::new(config);
        let ok = connector.connect(srv.url().parse().unwrap()).await.unwrap();
        assert_eq!(ok.peer().spiffe_id(), &id(SERVER));
        // Wrong ID at "localhost"; no entry at all for "127.0.0.1" in `other`.
        let other = MtlsConnector::new(
            ClientConfigBuilder::per_target(
                provider(),
                client.svids.clone(),
                client.bundles.clone(),
                TargetAuthorizers::new().target("localhost", authorizer::any()),
            )
            .build()
            .unwrap(),
        );
        let url = format!("https://localhost:{}/", srv.addr.port());
        let err = connector.connect(url.parse().unwrap()).await.unwrap_err();
        assert!(
            matches!(
                &err,
                ConnectError::ServerRejected { reason: PeerRejected::Unauthorized { peer, authorizer }, .. }
                    if *peer == id(SERVER) && authorizer == "exact(spiffe://example.org/ns/default/sa/db)"
            ),
            "{err:?}"
        );
        let url = format!("https://127.0.0.1:{}/", srv.addr.port());
        let err = other.connect(url.parse().unwrap()).await.unwrap_err();
        assert!(
            matches!(
                &err,
                ConnectError::ServerRejected { reason: PeerRejected::NoAuthorizerForTarget { server_name }, .. }
                    if server_name == "127.0.0.1"
            ),
            "{err:?}"
        );
    })
    .await
}

#[tokio::test]
async fn federated_server_accepted_only_when_policy_names_it() {
    test_support::within(30, async move {
        let ca = TestCa::new(TD);
        let partner = TestCa::new("partner.org");
        let server = Workload::new(&partner, "spiffe://partner.org/api", "partner.org");
        server
            .bundles
            .set(bundle_set(&[(&partner, "partner.org"), (&ca, TD)]));
        let client = Workload::new(&ca, CLIENT, TD);
        client
            .bundles
            .set(bundle_set(&[(&ca, TD), (&partner, "partner.org")]));
        let srv_cfg = ServerConfigBuilderExt::federated(&server, TD);
        let srv = start_server(srv_cfg).await;

        // The default policy trusts the local trust domain only: partner.org's
        // bundle is in the set but not admitted, so its server is UnknownIssuer.
        let local_only = connect_err(client.client_config(authorizer::any()), &srv.url()).await;
        assert!(
            matches!(
                &local_only,
                ConnectError::ServerRejected { reason: PeerRejected::TrustDomainNotAdmitted { trust_domain }, .. }
                    if trust_domain.as_str() == "partner.org"
            ),
            "{local_only:?}"
        );

        let federated = ClientConfigBuilder::new(
            provider(),
            client.svids.clone(),
            client.bundles.clone(),
            authorizer::any(),
        )
        .trust_policy(TrustPolicy::local_only().with_federated(["partner.org".parse().unwrap()]))
        .build()
        .unwrap();
        let ok = MtlsConnector::new(federated)
            .connect(srv.url().parse().unwrap())
            .await
            .unwrap();
        assert_eq!(ok.peer().spiffe_id(), &id("spiffe://partner.org/api"));
    })
    .await
}

struct ServerConfigBuilderExt;
impl ServerConfigBuilderExt {
    fn federated(w: &Workload, td: &str) -> mtls_tower::MtlsServerConfig {
        mtls_tower::ServerConfigBuilder::new(
            provider(),
            w.svids.clone(),
            w.bundles.clone(),
            authorizer::any(),
        )
        .trust_policy(TrustPolicy::local_only().with_federated([td.parse().unwrap()]))
        .build()
        .unwrap()
    }
}

#[tokio::test(start_paused = true)]
async fn silent_peer_hits_handshake_timeout() {
    test_support::within(30, async move {
        let ca = TestCa::new(TD);
        let server = Workload::new(&ca, SERVER, TD);
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let mut acceptor = MtlsAcceptor::new(listener, server.server_config(authorizer::any()))
            .handshake_timeout(Duration::from_secs(5));
        let _silent = TcpStream::connect(addr).await.unwrap();
        let err = acceptor.accept().await.unwrap_err();
        assert!(
            matches!(err, AcceptError::HandshakeTimeout { .. }),
            "{err:?}"
        );
    })
    .await
}

#[tokio::test(start_paused = true)]
async fn concurrent_handshakes_are_bounded() {
    test_support::within(30, async move {
        let ca = TestCa::new(TD);
        let server = Workload::new(&ca, SERVER, TD);
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let mut acceptor = MtlsAcceptor::new(listener, server.server_config(authorizer::any()))
            .handshake_timeout(Duration::from_secs(60))
            .max_handshakes(2);
        let _silent: Vec<_> = futures_join(addr, 4).await;
        // Drive the acceptor for a while (paused time: 1 s of virtual time).
        let r = tokio::time::timeout(Duration::from_secs(1), acceptor.accept()).await;
        assert!(r.is_err(), "no handshake can complete");
        assert_eq!(acceptor.handshakes_in_progress(), 2);
        // The first two time out; then the next two are admitted.
        for _ in 0..2 {
            let err = acceptor.accept().await.unwrap_err();
            assert!(
                matches!(err, AcceptError::HandshakeTimeout { .. }),
                "{err:?}"
            );
        }
        let r = tokio::time::timeout(Duration::from_secs(1), acceptor.accept()).await;
        assert!(r.is_err());
        assert_eq!(acceptor.handshakes_in_progress(), 2);
    })
    .await
}

async fn futures_join(addr: std::net::SocketAddr, n: usize) -> Vec<TcpStream> {
    let mut v = Vec::new();
    for _ in 0..n {
        v.push(TcpStream::connect(addr).await.unwrap());
    }
    v
}

#[tokio::test]
async fn svid_rotation_takes_effect_at_the_next_handshake_without_rebuild() {
    test_support::within(30, async move {
        let ca = TestCa::new(TD);
        let server = Workload::new(&ca, SERVER, TD);
        let client = Workload::new(&ca, CLIENT, TD);
        let srv = start_server(server.server_config(authorizer::any())).await;
        let connector = MtlsConnector::new(client.client_config(authorizer::exact(id(SERVER))));
        let first = connector.connect(srv.url().parse().unwrap()).await.unwrap();
        // A shorter-lived SVID for the same ID: same config, new certificate.
        server.svids.set(svid(&ca.leaf_with(
            LeafSpec::new(SERVER).valid(time::Duration::minutes(-1), time::Duration::minutes(10)),
        )));
        let second = connector.connect(srv.url().parse().unwrap()).await.unwrap();
        assert_eq!(second.peer().spiffe_id(), &id(SERVER));
        assert!(second.peer().not_after() < first.peer().not_after());
        // A withdrawn server SVID: no certificate to present, the handshake fails.
        server.svids.withdraw();
        let err = connector
            .connect(srv.url().parse().unwrap())
            .await
            .unwrap_err();
        // rustls refuses with access_denied when the server has no
        // certificate to present; during the handshake that is what the
        // refusal says.
        let ConnectError::Refused { refusal, .. } = &err else {
            panic!("expected a refusal, got {err:?}")
        };
        assert_eq!(refusal.alert, AlertDescription::AccessDenied);
        assert!(refusal.during_handshake);
        assert_eq!(refusal.client, Some(id(CLIENT)));
        assert!(
            refusal.to_string().contains("it has no SVID to present"),
            "{refusal}"
        );
    })
    .await
}
