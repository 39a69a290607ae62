//! What a client sees when a handshake is refused: both identities and
//! the reason, from the outermost error of an HTTP or gRPC client, never
//! only `client error (SendRequest)`.

mod common;

use std::sync::Arc;

use common::*;
use mtls_tower::{
    ClientConfigBuilder, ConnectError, MtlsConnector, PeerRejected, ServerConfigBuilder,
    ServerRefused, authorizer, error_chain,
};
use spiffe_core::{BundleSet, BundleSource, MemoryBundleSource, MemorySvidSource, SvidSource};
use test_support::{LeafSpec, TestCa};

const BACKEND: &str = "spiffe://example.org/ns/default/sa/backend";
const FRONTEND: &str = "spiffe://example.org/ns/default/sa/frontend";
const INTRUDER: &str = "spiffe://example.org/ns/default/sa/intruder";

fn id(s: &str) -> spiffe_core::SpiffeId {
    s.parse().unwrap()
}

/// The error of one GET through hyper-util's client, as the user gets it.
async fn get_error(client: &HttpClient, url: &str) -> hyper_util::client::legacy::Error {
    match client.get(url.parse().unwrap()).await {
        Ok(resp) => panic!("the server answered {}", resp.status()),
        Err(e) => e,
    }
}

/// The `ServerRefused` inside an error chain.
fn refusal(e: &(dyn std::error::Error + 'static)) -> Option<ServerRefused> {
    let mut cur = Some(e);
    while let Some(err) = cur {
        if let Some(r) = err.downcast_ref::<ServerRefused>() {
            return Some(r.clone());
        }
        if let Some(io) = err.downcast_ref::<std::io::Error>()
            && let Some(r) = io.get_ref().and_then(|i| i.downcast_ref::<ServerRefused>())
        {
            return Some(r.clone());
        }
        cur = err.source();
    }
    None
}

#[tokio::test]
async fn a_client_the_server_authorizer_refuses_is_told_who_refused_whom() {
    let ca = TestCa::new("example.org");
    let server = start_server(
        Workload::new(&ca, BACKEND, "example.org").server_config(authorizer::exact(id(FRONTEND))),
    )
    .await;
    let client = fresh_connection_client(
        Workload::new(&ca, INTRUDER, "example.org").client_config(authorizer::exact(id(BACKEND))),
    );
    let err = get_error(&client, &server.url()).await;
    let line = error_chain(&err);
    assert!(
        line.contains(&format!(
            "the server {BACKEND} refused this client ({INTRUDER}): its authorizer does not admit"
        )),
        "{line}"
    );
    // `main` returning the error prints its Debug form: the reason is there too.
    let debug = format!("{err:?}");
    assert!(debug.contains("its authorizer does not admit"), "{debug}");

    // Over HTTP/1.1 the typed refusal survives (h2 keeps only the text of
    // I/O errors).
    let h1 = Workload::new(&ca, INTRUDER, "example.org");
    let config = ClientConfigBuilder::new(provider(), h1.svids, h1.bundles, authorizer::any())
        .alpn_protocols(vec![b"http/1.1".to_vec()])
        .build()
        .unwrap();
    let err = get_error(&fresh_connection_client(config), &server.url()).await;
    let refused = refusal(&err).unwrap_or_else(|| panic!("no refusal in {err:?}"));
    assert_eq!(refused.server, Some(id(BACKEND)));
    assert_eq!(refused.client, Some(id(INTRUDER)));
    assert_eq!(refused.alert, rustls::AlertDescription::AccessDenied);
}

#[tokio::test]
async fn a_server_the_client_authorizer_refuses_names_the_server_and_the_authorizer() {
    let ca = TestCa::new("example.org");
    let server =
        start_server(Workload::new(&ca, INTRUDER, "example.org").server_config(authorizer::any()))
            .await;
    let config =
        Workload::new(&ca, FRONTEND, "example.org").client_config(authorizer::exact(id(BACKEND)));
    let err = MtlsConnector::new(config.clone())
        .connect(server.url().parse().unwrap())
        .await
        .unwrap_err();
    match &err {
        ConnectError::ServerRejected {
            reason: PeerRejected::Unauthorized { peer, authorizer },
            ..
        } => {
            assert_eq!(*peer, id(INTRUDER));
            assert_eq!(*authorizer, format!("exact({BACKEND})"));
        }
        other => panic!("expected ServerRejected, got {other:?}"),
    }
    assert_eq!(
        err.to_string(),
        format!(
            "refused the server at 127.0.0.1:{}: peer {INTRUDER} is not authorized by exact({BACKEND})",
            server.addr.port()
        )
    );
    // Through hyper-util the same words reach the user.
    let line = error_chain(&get_error(&fresh_connection_client(config), &server.url()).await);
    assert!(
        line.contains(&format!(
            "peer {INTRUDER} is not authorized by exact({BACKEND})"
        )),
        "{line}"
    );
}

#[tokio::test]
async fn wl_fed_1_an_unknown_trust_domain_is_named_on_both_sides() {
    let ours = TestCa::new("example.org");
    let theirs = TestCa::new("other.org");
    let server =
        start_server(Workload::new(&ours, BACKEND, "example.org").server_config(authorizer::any()))
            .await;
    // A client of other.org that trusts example.org: the server has no
    // bundle for other.org and says so with unknown_ca.
    let stranger = Workload {
        svids: Arc::new(MemorySvidSource::new(svid(
            &theirs.leaf("spiffe://other.org/app"),
        ))),
        bundles: Arc::new(MemoryBundleSource::new(bundle_set(&[(
            &ours,
            "example.org",
        )]))),
    };
    let config = ClientConfigBuilder::new(
        provider(),
        stranger.svids,
        stranger.bundles,
        authorizer::any(),
    )
    .trust_policy(
        mtls_tower::TrustPolicy::local_only().with_federated(["example.org".parse().unwrap()]),
    )
    .build()
    .unwrap();
    let err = get_error(&fresh_connection_client(config), &server.url()).await;
    let line = error_chain(&err);
    assert!(
        line.contains("refused this client (spiffe://other.org/app)"),
        "{line}"
    );
    assert!(
        line.contains("trust domain other.org unknown to it"),
        "{line}"
    );
    // A client of example.org reaching a server of other.org.
    let foreign = start_server(
        Workload::new(&theirs, "spiffe://other.org/api", "other.org")
            .server_config(authorizer::any()),
    )
    .await;
    let err = MtlsConnector::new(
        Workload::new(&ours, FRONTEND, "example.org").client_config(authorizer::any()),
    )
    .connect(foreign.url().parse().unwrap())
    .await
    .unwrap_err();
    let text = err.to_string();
    assert!(
        text.starts_with("refused the server at 127.0.0.1:"),
        "{text}"
    );
    assert!(text.contains("other.org"), "{text}");
}

#[tokio::test]
async fn an_expired_client_svid_is_named_as_expired() {
    let ca = TestCa::new("example.org");
    let server =
        start_server(Workload::new(&ca, BACKEND, "example.org").server_config(authorizer::any()))
            .await;
    let expired = ca.leaf_with(
        LeafSpec::new(FRONTEND).valid(time::Duration::hours(-3), time::Duration::hours(-1)),
    );
    // MemorySvidSource serves what it holds; the server judges it.
    let client = Workload {
        svids: Arc::new(MemorySvidSource::new(svid(&expired))),
        bundles: Arc::new(MemoryBundleSource::new(bundle_set(&[(&ca, "example.org")]))),
    };
    let line = error_chain(
        &get_error(
            &fresh_connection_client(client.client_config(authorizer::any())),
            &server.url(),
        )
        .await,
    );
    assert!(
        line.contains(&format!("refused this client ({FRONTEND})")),
        "{line}"
    );
    assert!(
        line.contains("SVID has expired or is not yet valid"),
        "{line}"
    );
}

#[tokio::test]
async fn a_client_without_an_svid_is_told_it_presented_none() {
    let ca = TestCa::new("example.org");
    let server =
        start_server(Workload::new(&ca, BACKEND, "example.org").server_config(authorizer::any()))
            .await;
    let client = Workload {
        svids: Arc::new(MemorySvidSource::empty()),
        bundles: Arc::new(MemoryBundleSource::new(bundle_set(&[(&ca, "example.org")]))),
    };
    let err = get_error(
        &fresh_connection_client(client.client_config(authorizer::any())),
        &server.url(),
    )
    .await;
    // Under the default trust policy the client cannot even judge the
    // server: its own trust domain is unknown without an SVID.
    let line = error_chain(&err);
    assert!(
        line.contains("this side holds no SVID yet, so its own trust domain is unknown"),
        "{line}"
    );
    // Trusting example.org explicitly, it gets as far as the server, which
    // refuses a client without a certificate.
    let config =
        ClientConfigBuilder::new(provider(), client.svids, client.bundles, authorizer::any())
            .trust_policy(mtls_tower::TrustPolicy::any_in_bundle_set())
            .build()
            .unwrap();
    let line = error_chain(&get_error(&fresh_connection_client(config), &server.url()).await);
    assert!(
        line.contains("this client presented no certificate"),
        "{line}"
    );
}

#[tokio::test]
async fn a_refused_tonic_call_says_why() {
    let ca = TestCa::new("example.org");
    let server = start_server(
        Workload::new(&ca, BACKEND, "example.org").server_config(authorizer::exact(id(FRONTEND))),
    )
    .await;
    let channel = MtlsConnector::new(
        Workload::new(&ca, INTRUDER, "example.org").client_config(authorizer::any()),
    )
    .tonic_channel(
        format!("http://127.0.0.1:{}", server.addr.port())
            .parse()
            .unwrap(),
    );
    let mut grpc = tonic::client::Grpc::new(channel);
    grpc.ready().await.expect("a lazy channel is ready");
    let path = http::uri::PathAndQuery::from_static("/test.Echo/Say");
    let status = grpc
        .unary::<(), (), _>(
            tonic::Request::new(()),
            path,
            tonic_prost::ProstCodec::default(),
        )
        .await
        .unwrap_err();
    let line = error_chain(&status);
    assert!(
        line.contains(&format!(
            "the server {BACKEND} refused this client ({INTRUDER})"
        )),
        "{line}"
    );
}

/// A source that is both SVID and bundles, like the Workload API's X509Source.
#[derive(Clone)]
struct Both(Workload);

impl SvidSource for Both {
    fn x509_svid(&self) -> Option<Arc<spiffe_core::X509Svid>> {
        self.0.svids.x509_svid()
    }
    fn generation(&self) -> u64 {
        SvidSource::generation(&*self.0.svids)
    }
    fn subscribe(&self) -> tokio::sync::watch::Receiver<u64> {
        SvidSource::subscribe(&*self.0.svids)
    }
}

impl BundleSource for Both {
    fn bundle_set(&self) -> Arc<BundleSet> {
        self.0.bundles.bundle_set()
    }
    fn generation(&self) -> u64 {
        BundleSource::generation(&*self.0.bundles)
    }
    fn subscribe(&self) -> tokio::sync::watch::Receiver<u64> {
        BundleSource::subscribe(&*self.0.bundles)
    }
}

impl spiffe_core::X509AuthoritySource for Both {}

#[tokio::test]
async fn one_source_serves_as_svid_and_bundles_on_both_sides() {
    let ca = TestCa::new("example.org");
    let backend = Both(Workload::new(&ca, BACKEND, "example.org"));
    let frontend = Both(Workload::new(&ca, FRONTEND, "example.org"));
    let server = start_server(
        ServerConfigBuilder::from_source(backend, authorizer::exact(id(FRONTEND)))
            .build()
            .unwrap(),
    )
    .await;
    let client = fresh_connection_client(
        ClientConfigBuilder::from_source(frontend, authorizer::exact(id(BACKEND)))
            .build()
            .unwrap(),
    );
    assert_eq!(get_body(&client, &server.url()).await.unwrap(), FRONTEND);
}

/// An HTTP/1.1 exchange over `MtlsStream` through tokio's I/O traits (as
/// `h2` and tokio-util codecs use it): the admitted client reads its
/// answer; a refused one gets an error naming both identities.
#[tokio::test]
async fn tokio_io_on_a_connection_reads_the_answer_or_the_refusal() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let ca = TestCa::new("example.org");
    let server = start_server(
        Workload::new(&ca, BACKEND, "example.org").server_config(authorizer::exact(id(FRONTEND))),
    )
    .await;
    let exchange = |who: &'static str| {
        let w = Workload::new(&ca, who, "example.org");
        let config = ClientConfigBuilder::new(provider(), w.svids, w.bundles, authorizer::any())
            .alpn_protocols(vec![b"http/1.1".to_vec()])
            .build()
            .unwrap();
        let url = server.url();
        async move {
            let mut tls = MtlsConnector::new(config)
                .connect(url.parse().unwrap())
                .await
                .expect("TLS 1.3: the client finishes before the server decides");
            let written = tls
                .write_all(b"GET / HTTP/1.1\r\nhost: backend\r\nconnection: close\r\n\r\n")
                .await;
            let mut answer = Vec::new();
            written.and(tls.read_to_end(&mut answer).await.map(|_| answer))
        }
    };
    let answer = exchange(FRONTEND).await.unwrap();
    let text = String::from_utf8_lossy(&answer);
    assert!(text.starts_with("HTTP/1.1 200"), "{text}");
    assert!(
        text.ends_with(FRONTEND),
        "the server saw another peer: {text}"
    );

    let err = exchange(INTRUDER).await.unwrap_err();
    let refused = refusal(&err).unwrap_or_else(|| panic!("no refusal in {err:?}"));
    assert_eq!(refused.server, Some(id(BACKEND)));
    assert_eq!(refused.client, Some(id(INTRUDER)));
}
