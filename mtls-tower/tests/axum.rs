//! axum: `axum::serve` over the acceptor, the `Peer` extractor and the
//! connection facts in every request.

mod common;

use axum::Router;
use axum::routing::get;
use bytes::Bytes;
use common::*;
use http_body_util::BodyExt;
use mtls_tower::{ConnectionFacts, ConnectionLayer, MtlsAcceptor, Peer, authorizer};
use test_support::TestCa;
use tower::ServiceExt;

const TD: &str = "example.org";
const SERVER: &str = "spiffe://example.org/ns/default/sa/server";
const CLIENT: &str = "spiffe://example.org/ns/default/sa/frontend";

async fn who(Peer(peer): Peer) -> String {
    peer.spiffe_id().to_string()
}

/// What a layer further in (such as `authz`'s) sees: the connection facts.
async fn who_from_extension(req: axum::extract::Request) -> String {
    req.extensions()
        .get::<ConnectionFacts>()
        .and_then(ConnectionFacts::peer)
        .map(|p| p.spiffe_id().to_string())
        .unwrap_or_default()
}

#[tokio::test]
async fn axum_serve_over_acceptor_hands_peer_to_extractor() {
    test_support::within(30, async move {
        let ca = TestCa::new(TD);
        let server = Workload::new(&ca, SERVER, TD);
        let client = Workload::new(&ca, CLIENT, TD);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let acceptor = MtlsAcceptor::new(listener, server.server_config(authorizer::any()));
        let app = Router::new()
            .route("/", get(who))
            .route("/ext", get(who_from_extension));
        let task =
            tokio::spawn(
                async move { axum::serve(acceptor, mtls_tower::into_make_service(app)).await },
            );
        let http = fresh_connection_client(
            client.client_config(authorizer::exact(SERVER.parse().unwrap())),
        );
        let url = format!("https://127.0.0.1:{}/", addr.port());
        assert_eq!(get_body(&http, &url).await.unwrap(), CLIENT);
        assert_eq!(get_body(&http, &format!("{url}ext")).await.unwrap(), CLIENT);
        // A second client with a foreign SVID is refused, and the server keeps going.
        let rogue = Workload::new(&TestCa::new(TD), "spiffe://example.org/rogue", TD);
        rogue.bundles.set(bundle_set(&[(&ca, TD)]));
        // Its chain does not lead to the trust domain's bundle: UnknownIssuer on
        // the server, which the client receives as the unknown_ca alert.
        assert_eq!(
            refused_handshake(&rogue.client_config(authorizer::any()), addr).await,
            alert(rustls::AlertDescription::UnknownCA)
        );
        assert_eq!(get_body(&http, &url).await.unwrap(), CLIENT);
        task.abort();
    })
    .await
}

#[tokio::test]
async fn extractor_reads_identity_put_by_layer() {
    test_support::within(30, async move {
        let ca = TestCa::new(TD);
        let server = Workload::new(&ca, SERVER, TD);
        let client = Workload::new(&ca, CLIENT, TD);
        let srv = start_server(server.server_config(authorizer::any())).await;
        let stream = mtls_tower::MtlsConnector::new(client.client_config(authorizer::any()))
            .connect(srv.url().parse().unwrap())
            .await
            .unwrap();
        // The server's identity as the client saw it: a real PeerIdentity.
        let peer = stream.peer().clone();
        let app = Router::new()
            .route("/", get(who))
            .layer(ConnectionLayer::new(
                ConnectionFacts::new(
                    "127.0.0.1:1".parse().unwrap(),
                    "127.0.0.1:2".parse().unwrap(),
                )
                .with_peer(peer),
            ));
        let resp = app
            .oneshot(
                http::Request::get("/")
                    .body(axum::body::Body::empty())
                    .unwrap(),
            )
            .await
            .unwrap();
        assert_eq!(resp.status(), 200);
        let body = resp.into_body().collect().await.unwrap().to_bytes();
        assert_eq!(body, Bytes::from(SERVER));
    })
    .await
}

#[tokio::test]
async fn extractor_without_identity_fails_closed() {
    test_support::within(30, async move {
        let app = Router::new().route("/", get(who));
        let resp = app
            .oneshot(
                http::Request::get("/")
                    .body(axum::body::Body::empty())
                    .unwrap(),
            )
            .await
            .unwrap();
        assert_eq!(resp.status(), 500);
    })
    .await
}
