//! Interop with `spiffe-rustls` 0.11 (code we did not write), both
//! directions. Its configs get their SVIDs through the `spiffe` crate's
//! `X509Source` from a Workload API server (this workspace's) on a Unix
//! socket in a temporary directory.

mod common;

use std::convert::Infallible;
use std::path::PathBuf;
use std::sync::Arc;

use bytes::Bytes;
use common::*;
use http_body_util::{BodyExt, Empty, Full};
use hyper_util::rt::{TokioExecutor, TokioIo};
use mtls_tower::{MtlsConnector, authorizer};
use rustls_pki_types::ServerName;
use spiffe_core::BundleSet;
use test_support::TestCa;
use workload_api::{
    Caller, MemoryIdentityProvider, RegistrationEntry, Selectors, WorkloadApiServer,
};

const TD: &str = "example.org";
const OURS: &str = "spiffe://example.org/ns/default/sa/mtls-tower";
const THEIRS: &str = "spiffe://example.org/ns/default/sa/spiffe-rustls";

struct Agent {
    dir: PathBuf,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
}

impl Drop for Agent {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A Workload API that gives every caller the SVID `id` signed by `ca`.
fn agent(name: &str, ca: &TestCa, id: &str) -> Agent {
    let dir = std::env::temp_dir().join(format!("mtls-tower-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let provider = Arc::new(MemoryIdentityProvider::new());
    provider.set_bundles(BundleSet::from_iter([spiffe_core::SpiffeBundle::new(
        spiffe_core::X509Bundle::new(TD.parse().unwrap(), vec![ca.root_cert()]).unwrap(),
        spiffe_core::JwtBundle::new(TD.parse().unwrap()),
    )
    .unwrap()]));
    provider
        .add_entry(
            RegistrationEntry::new(
                id.parse().unwrap(),
                format!("spiffe://{TD}/node/test").parse().unwrap(),
                vec!["test:anyone".parse().unwrap()],
            )
            .unwrap(),
            svid(&ca.leaf(id)),
        )
        .unwrap();
    let attestor = |_caller: &Caller| {
        let mut s = Selectors::new();
        s.insert("test:anyone".parse().unwrap());
        Ok(s)
    };
    let server = WorkloadApiServer::new(provider, Arc::new(attestor));
    let listener = tokio::net::UnixListener::bind(dir.join("api.sock")).unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(async move {
        let _ = server
            .serve_unix(listener, async {
                let _ = stopped.await;
            })
            .await;
    });
    Agent {
        dir,
        stop: Some(stop),
    }
}

async fn x509_source(agent: &Agent) -> spiffe::X509Source {
    spiffe::X509Source::builder()
        .endpoint(format!("unix://{}", agent.dir.join("api.sock").display()))
        .build()
        .await
        .unwrap()
}

#[tokio::test]
async fn spiffe_rustls_client_to_our_server() {
    test_support::within(30, async move {
        let ca = TestCa::new(TD);
        let ours = Workload::new(&ca, OURS, TD);
        let srv =
            start_server(ours.server_config(authorizer::exact(THEIRS.parse().unwrap()))).await;
        let agent = agent("client", &ca, THEIRS);
        let source = x509_source(&agent).await;
        let config = spiffe_rustls::mtls_client(source)
            .authorize(spiffe_rustls::authorizer::exact([OURS]).unwrap())
            .trust_domain_policy(spiffe_rustls::LocalOnly(
                spiffe_rustls::TrustDomain::new(TD).unwrap(),
            ))
            .with_alpn_protocols([b"http/1.1"])
            .build()
            .unwrap();
        let config = Arc::new(config);
        let tcp = tokio::net::TcpStream::connect(srv.addr).await.unwrap();
        let tls = tokio_rustls::TlsConnector::from(config.clone())
            .connect(ServerName::try_from("localhost").unwrap(), tcp)
            .await
            .unwrap();
        let (mut send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
            .await
            .unwrap();
        tokio::spawn(conn);
        let resp = send
            .send_request(http::Request::get("/").body(Empty::<Bytes>::new()).unwrap())
            .await
            .unwrap();
        let body = resp.into_body().collect().await.unwrap().to_bytes();
        // Our server's handler saw spiffe-rustls's SVID.
        assert_eq!(body, Bytes::from(THEIRS));

        // Our server refuses their client when it expects another ID: their
        // client receives access_denied, our server reports the authorizer.
        let mut picky = start_server(ours.server_config(authorizer::exact(
            "spiffe://example.org/other".parse().unwrap(),
        )))
        .await;
        let err = exchange(config.clone(), picky.addr)
            .await
            .expect_err("refused by our server");
        assert_eq!(
            tls_failure(&err),
            Some(alert(rustls::AlertDescription::AccessDenied))
        );
        let server_err =
            tokio::time::timeout(std::time::Duration::from_secs(10), picky.errors.recv())
                .await
                .expect("our server reports the refusal")
                .expect("our server is running");
        let mtls_tower::AcceptError::Handshake { source, .. } = &server_err else {
            panic!("expected a handshake error, got {server_err:?}")
        };
        assert_eq!(
            rustls_error(source),
            Some(&rustls::Error::InvalidCertificate(
                rustls::CertificateError::ApplicationVerificationFailure
            ))
        );

        // Their client refuses our server when it expects another ID.
        let their_picky = spiffe_rustls::mtls_client(x509_source(&agent).await)
            .authorize(spiffe_rustls::authorizer::exact(["spiffe://example.org/other"]).unwrap())
            .trust_domain_policy(spiffe_rustls::LocalOnly(
                spiffe_rustls::TrustDomain::new(TD).unwrap(),
            ))
            .with_alpn_protocols([b"http/1.1"])
            .build()
            .unwrap();
        let err = exchange(Arc::new(their_picky), srv.addr)
            .await
            .expect_err("refused by their client");
        // spiffe-rustls reports its refusal as `rustls::Error::Other`
        // carrying its own `UnauthorizedSpiffeId` with our server's ID.
        let Some(rustls::Error::Other(other)) = rustls_error(&err) else {
            panic!("expected spiffe-rustls's refusal, got {err:?}")
        };
        let their_error = other
            .0
            .downcast_ref::<spiffe_rustls::Error>()
            .unwrap_or_else(|| panic!("a spiffe-rustls error inside: {other:?}"));
        assert!(
            matches!(their_error, spiffe_rustls::Error::UnauthorizedSpiffeId(id) if id.to_string() == OURS),
            "{their_error:?}"
        );
    })
    .await
}

/// Connects with `config` and reads (sending nothing, so a refusing
/// server has read everything when it closes): the first I/O error, if
/// any. In TLS 1.3 a client learns that the server refused its
/// certificate only when it reads. A server that accepted would wait for
/// a request: that is reported after 5 s.
async fn exchange(
    config: Arc<rustls::ClientConfig>,
    addr: std::net::SocketAddr,
) -> std::io::Result<usize> {
    use tokio::io::AsyncReadExt;
    let tcp = tokio::net::TcpStream::connect(addr).await?;
    let mut tls = tokio_rustls::TlsConnector::from(config)
        .connect(ServerName::try_from("localhost").unwrap(), tcp)
        .await?;
    let mut buf = [0u8; 256];
    tokio::time::timeout(std::time::Duration::from_secs(5), tls.read(&mut buf))
        .await
        .expect("the server neither answered nor refused within 5 s")
}

#[tokio::test]
async fn our_client_to_spiffe_rustls_server() {
    test_support::within(30, async move {
        let ca = TestCa::new(TD);
        let agent = agent("server", &ca, THEIRS);
        let source = x509_source(&agent).await;
        let config = spiffe_rustls::mtls_server(source)
            .authorize(spiffe_rustls::authorizer::exact([OURS]).unwrap())
            .with_alpn_protocols([&b"h2"[..], &b"http/1.1"[..]])
            .build()
            .unwrap();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
        let server = tokio::spawn(async move {
            loop {
                let Ok((tcp, _)) = listener.accept().await else {
                    return;
                };
                let acceptor = acceptor.clone();
                tokio::spawn(async move {
                    let Ok(tls) = acceptor.accept(tcp).await else {
                        return;
                    };
                    let svc = hyper::service::service_fn(
                        |_req: http::Request<hyper::body::Incoming>| async {
                            Ok::<_, Infallible>(http::Response::new(Full::new(Bytes::from_static(
                                b"hello from spiffe-rustls",
                            ))))
                        },
                    );
                    let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                        .serve_connection(TokioIo::new(tls), svc)
                        .await;
                });
            }
        });

        let ours = Workload::new(&ca, OURS, TD);
        let url = format!("https://localhost:{}/", addr.port());
        let stream =
            MtlsConnector::new(ours.client_config(authorizer::exact(THEIRS.parse().unwrap())))
                .connect(url.parse().unwrap())
                .await
                .unwrap();
        assert_eq!(stream.peer().spiffe_id().as_str(), THEIRS);
        let http =
            fresh_connection_client(ours.client_config(authorizer::exact(THEIRS.parse().unwrap())));
        assert_eq!(
            get_body(&http, &url).await.unwrap(),
            "hello from spiffe-rustls"
        );

        // Their authorizer refuses an ID it was not told about.
        let stranger = Workload::new(&ca, "spiffe://example.org/stranger", TD);
        // spiffe-rustls 0.11 sends handshake_failure for its authorizer's
        // refusal (ours sends access_denied); what matters here is that the
        // refusal is a TLS alert from their verifier, not a transport error.
        assert_eq!(
            refused_handshake(&stranger.client_config(authorizer::any()), addr).await,
            alert(rustls::AlertDescription::HandshakeFailure),
            "spiffe-rustls's refusal reaches our client as handshake_failure"
        );
        // Ours refuses their server when it expects another ID.
        let picky =
            MtlsConnector::new(ours.client_config(authorizer::exact(OURS.parse().unwrap())));
        let err = picky.connect(url.parse().unwrap()).await.unwrap_err();
        assert!(
            matches!(
                &err,
                mtls_tower::ConnectError::ServerRejected {
                    reason: mtls_tower::PeerRejected::Unauthorized { authorizer, .. },
                    ..
                } if *authorizer == format!("exact({OURS})")
            ),
            "expected our verifier's refusal, got {err:?}"
        );
        server.abort();
    })
    .await
}
