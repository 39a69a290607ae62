//! Shared fixtures for the API tests: PKI, sources, an HTTP server over the
//! acceptor that answers with the caller's SPIFFE ID, and an HTTP client.
#![allow(dead_code, unreachable_pub)]

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::{BodyExt, Empty, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::service::TowerToHyperService;
use mtls_tower::{
    AcceptError, Authorizer, ClientConfigBuilder, ConnectionFacts, ConnectionLayer, MtlsAcceptor,
    MtlsConnector, ServerConfigBuilder,
};
use rustls::crypto::CryptoProvider;
use spiffe_core::{BundleSet, MemoryBundleSource, MemorySvidSource, X509Bundle, X509Svid};
use test_support::{Leaf, TestCa};
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tower::Layer;

pub fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::aws_lc_rs::default_provider())
}

pub fn svid(leaf: &Leaf) -> X509Svid {
    X509Svid::from_der(&leaf.chain_der(), &leaf.key_der).expect("test leaf is a valid SVID")
}

pub fn bundle_set(cas: &[(&TestCa, &str)]) -> BundleSet {
    let mut set = BundleSet::new();
    let mut by_td: std::collections::BTreeMap<&str, Vec<_>> = Default::default();
    for (ca, td) in cas {
        by_td.entry(td).or_default().push(ca.root_cert());
    }
    for (td, roots) in by_td {
        set.insert_x509(X509Bundle::new(td.parse().unwrap(), roots).unwrap());
    }
    set
}

/// One workload's sources.
#[derive(Debug, Clone)]
pub struct Workload {
    pub svids: Arc<MemorySvidSource>,
    pub bundles: Arc<MemoryBundleSource>,
}

impl Workload {
    pub fn new(ca: &TestCa, id: &str, td: &str) -> Self {
        Workload {
            svids: Arc::new(MemorySvidSource::new(svid(&ca.leaf(id)))),
            bundles: Arc::new(MemoryBundleSource::new(bundle_set(&[(ca, td)]))),
        }
    }

    pub fn server_config(&self, a: impl Authorizer) -> mtls_tower::MtlsServerConfig {
        ServerConfigBuilder::new(provider(), self.svids.clone(), self.bundles.clone(), a)
            .build()
            .unwrap()
    }

    pub fn client_config(&self, a: impl Authorizer) -> mtls_tower::MtlsClientConfig {
        ClientConfigBuilder::new(provider(), self.svids.clone(), self.bundles.clone(), a)
            .build()
            .unwrap()
    }
}

/// A running test server.
pub struct Server {
    pub addr: SocketAddr,
    pub errors: mpsc::UnboundedReceiver<AcceptError>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Server {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Server {
    pub fn url(&self) -> String {
        format!("https://127.0.0.1:{}/", self.addr.port())
    }
}

/// Answers every request with the caller's SPIFFE ID, read from the
/// request extensions the layer filled; `/facts` answers with the
/// connection's facts as `local=.. remote=.. sni=.. alpn=.. peer=..`.
pub async fn start_server(config: mtls_tower::MtlsServerConfig) -> Server {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let mut acceptor = MtlsAcceptor::new(listener, config);
    let (tx, errors) = mpsc::unbounded_channel();
    let task = tokio::spawn(async move {
        loop {
            match acceptor.accept().await {
                Ok(conn) => {
                    let svc = ConnectionLayer::new(conn.facts().clone()).layer(tower::service_fn(
                        |req: http::Request<hyper::body::Incoming>| async move {
                            let facts = req.extensions().get::<ConnectionFacts>();
                            let peer = facts
                                .and_then(ConnectionFacts::peer)
                                .map(|p| p.spiffe_id().to_string())
                                .unwrap_or_default();
                            let body = match (req.uri().path(), facts) {
                                ("/facts", Some(f)) => format!(
                                    "local={} remote={} sni={} alpn={} peer={peer}",
                                    f.local_addr(),
                                    f.remote_addr(),
                                    f.sni().unwrap_or("-"),
                                    f.alpn().map(String::from_utf8_lossy).unwrap_or_default(),
                                ),
                                _ => peer,
                            };
                            Ok::<_, Infallible>(http::Response::new(Full::new(Bytes::from(body))))
                        },
                    ));
                    tokio::spawn(async move {
                        let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                            .serve_connection(TokioIo::new(conn), TowerToHyperService::new(svc))
                            .await;
                    });
                }
                Err(e) => {
                    let _ = tx.send(e);
                }
            }
        }
    });
    Server { addr, errors, task }
}

pub type HttpClient = Client<MtlsConnector, Empty<Bytes>>;

/// A client that opens a new connection (a full handshake) per request.
pub fn fresh_connection_client(config: mtls_tower::MtlsClientConfig) -> HttpClient {
    Client::builder(TokioExecutor::new())
        .pool_max_idle_per_host(0)
        .build(MtlsConnector::new(config))
}

pub async fn get_body(client: &HttpClient, url: &str) -> Result<String, String> {
    let resp = client
        .get(url.parse().unwrap())
        .await
        .map_err(|e| format!("{e:?}"))?;
    if !resp.status().is_success() {
        return Err(format!("status {}", resp.status()));
    }
    let body = resp
        .into_body()
        .collect()
        .await
        .map_err(|e| format!("{e:?}"))?
        .to_bytes();
    Ok(String::from_utf8_lossy(&body).into_owned())
}

/// Finds the rustls error inside an I/O error chain.
pub fn rustls_error<'a>(e: &'a (dyn std::error::Error + 'static)) -> Option<&'a rustls::Error> {
    let mut cur: Option<&'a (dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = cur {
        if let Some(r) = err.downcast_ref::<rustls::Error>() {
            return Some(r);
        }
        if let Some(io) = err.downcast_ref::<std::io::Error>()
            && let Some(inner) = io.get_ref()
            && let Some(r) = inner.downcast_ref::<rustls::Error>()
        {
            return Some(r);
        }
        cur = err.source();
    }
    None
}

/// Completes a TLS handshake with `config` against the server at `addr`
/// and reads, through rustls directly (so no HTTP client races the read
/// and loses the alert), and returns the TLS error this side ended with as
/// rustls displays it: its own verdict, or the alert the server sent when
/// it refused our certificate (in TLS 1.3 the client learns of that on its
/// first read). Compare with [`alert`]. Panics if the server answers.
pub async fn refused_handshake(config: &mtls_tower::MtlsClientConfig, addr: SocketAddr) -> String {
    use tokio::io::AsyncReadExt;
    let tcp = tokio::net::TcpStream::connect(addr)
        .await
        .expect("the server listens");
    let connector = tokio_rustls::TlsConnector::from(config.rustls().clone());
    let err = match connector
        .connect("localhost".try_into().expect("a valid name"), tcp)
        .await
    {
        Err(e) => e,
        Ok(mut tls) => {
            let mut buf = [0u8; 64];
            match tls.read(&mut buf).await {
                Ok(n) => panic!("the server answered ({n} bytes)"),
                Err(e) => e,
            }
        }
    };
    tls_failure(&err).unwrap_or_else(|| panic!("no TLS error in {err:?}"))
}

/// How rustls words a fatal alert received from the peer.
pub fn alert(description: rustls::AlertDescription) -> String {
    rustls::Error::AlertReceived(description).to_string()
}

/// The TLS error in an error chain, as rustls displays it: a typed
/// `rustls::Error`, or an I/O error of kind `InvalidData` whose text is a
/// received alert.
pub fn tls_failure(e: &(dyn std::error::Error + 'static)) -> Option<String> {
    if let Some(r) = rustls_error(e) {
        return Some(r.to_string());
    }
    let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = cur {
        if let Some(io) = err.downcast_ref::<std::io::Error>()
            && io.kind() == std::io::ErrorKind::InvalidData
            && let Some(inner) = io.get_ref()
            && inner.to_string().starts_with("received fatal alert: ")
        {
            return Some(inner.to_string());
        }
        cur = err.source();
    }
    None
}
