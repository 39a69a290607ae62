//! A sidecar pair on loopback, with an application behind the server side.
#![allow(dead_code, unreachable_pub)]

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioIo};
use mesh_sidecar::body::{ProxyBody, boxed};
use mesh_sidecar::config::SidecarConfig;
use mesh_sidecar::endpoint::{Endpoints, ServiceKey, Target};
use mesh_sidecar::identity::Identity;
use mesh_sidecar::policy::Policies;
use mesh_sidecar::runtime::{Addresses, ShutdownHandle, Sidecar, SidecarParts};
use spiffe_core::{
    BundleSet, MemoryBundleSource, MemorySvidSource, PrivateKey, X509Bundle, X509Svid,
};
use test_support::TestCa;
use tokio::net::TcpListener;

pub const TD: &str = "example.org";
pub const CLIENT_ID: &str = "spiffe://example.org/ns/default/sa/client";
pub const SERVER_ID: &str = "spiffe://example.org/ns/default/sa/server";

/// An identity issued by `ca`, with `ca`'s root as the only bundle.
pub fn identity(ca: &TestCa, id: &str) -> Identity {
    let (svid, bundles) = sources(ca, id);
    Identity { svid, bundles }
}

/// An SVID from `ca`.
pub fn svid(ca: &TestCa, id: &str) -> X509Svid {
    let leaf = ca.leaf(id);
    let key = PrivateKey::from_pkcs8_der(&leaf.key_der).unwrap();
    X509Svid::new(leaf.chain.clone(), key).unwrap()
}

/// A bundle set trusting each of `cas`.
pub fn bundles(cas: &[&TestCa]) -> BundleSet {
    let mut set = BundleSet::new();
    let roots = cas.iter().map(|c| c.root_cert()).collect();
    set.insert_x509(X509Bundle::new(TD.parse().unwrap(), roots).unwrap());
    set
}

/// The sources behind [`identity`], for tests that rotate them.
pub fn sources(ca: &TestCa, id: &str) -> (Arc<MemorySvidSource>, Arc<MemoryBundleSource>) {
    (
        Arc::new(MemorySvidSource::new(svid(ca, id))),
        Arc::new(MemoryBundleSource::new(bundles(&[ca]))),
    )
}

/// Policies from YAML text (empty: allow all, PERMISSIVE).
pub fn policies(config: &SidecarConfig, yaml: &str) -> Arc<Policies> {
    let set = if yaml.trim().is_empty() {
        authz::PolicySet::default()
    } else {
        authz::PolicySet::from_yaml_str("test.yaml", yaml).unwrap()
    };
    Arc::new(Policies::new(&config.workload, &set))
}

pub fn loopback_config() -> SidecarConfig {
    let mut config = SidecarConfig::default();
    let any = SocketAddr::from(([127, 0, 0, 1], 0));
    config.inbound.listen = any;
    config.outbound.listen = any;
    config.admin.listen = any;
    config.admin.access_log = false;
    config.drain = Duration::from_millis(500);
    config
}

/// A running sidecar.
pub struct Running {
    pub addrs: Addresses,
    pub policies: Arc<Policies>,
    pub endpoints: Arc<Endpoints>,
    pub shutdown: ShutdownHandle,
    pub task: tokio::task::JoinHandle<()>,
}

pub async fn start(config: SidecarConfig, identity: Identity, yaml: &str) -> Running {
    let policies = policies(&config, yaml);
    let endpoints = Arc::new(Endpoints::new(config.outbound.balance.clone()));
    let (_ready_tx, ready) = tokio::sync::watch::channel(true);
    let sidecar = Sidecar::build(SidecarParts {
        config,
        identity,
        policies: policies.clone(),
        endpoints: endpoints.clone(),
        policies_ready: ready,
        set_log_level: None,
        access_log: None,
    })
    .await
    .unwrap();
    let addrs = sidecar.addresses();
    let shutdown = ShutdownHandle::new();
    let task = tokio::spawn(sidecar.run(shutdown.clone()));
    Running {
        addrs,
        policies,
        endpoints,
        shutdown,
        task,
    }
}

/// The application: answers every request with what it saw.
///
/// `GET /grpc` answers as a gRPC server would: data, then trailers with
/// `grpc-status: 0`. `POST /echo-stream` is a bidirectional stream: each
/// request data frame is sent back as it arrives, then trailers once the
/// request ends. `GET /status/N` answers N; `GET /slow/MS` answers after
/// MS milliseconds.
pub async fn app() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                return;
            };
            tokio::spawn(async move {
                let svc = hyper::service::service_fn(|req: http::Request<Incoming>| async move {
                    Ok::<_, Infallible>(answer(req).await)
                });
                let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(tcp), svc)
                    .await;
            });
        }
    });
    addr
}

async fn answer(req: http::Request<Incoming>) -> http::Response<ProxyBody> {
    let path = req.uri().path().to_owned();
    if let Some(code) = path.strip_prefix("/status/") {
        let mut resp = http::Response::new(boxed(Full::new(Bytes::from("status"))));
        *resp.status_mut() = http::StatusCode::from_u16(code.parse().unwrap()).unwrap();
        return resp;
    }
    if let Some(ms) = path.strip_prefix("/slow/") {
        tokio::time::sleep(Duration::from_millis(ms.parse().unwrap())).await;
        return http::Response::new(boxed(Full::new(Bytes::from("slow"))));
    }
    if path == "/echo-stream" {
        return echo_stream(req);
    }
    if path == "/grpc" {
        let mut trailers = http::HeaderMap::new();
        trailers.insert("grpc-status", "0".parse().unwrap());
        trailers.insert("grpc-message", "fine".parse().unwrap());
        let frames = vec![
            Ok::<_, Infallible>(Frame::data(Bytes::from_static(b"\0\0\0\0\x02hi"))),
            Ok(Frame::trailers(trailers)),
        ];
        let mut resp =
            http::Response::new(boxed(StreamBody::new(futures_util::stream::iter(frames))));
        resp.headers_mut()
            .insert("content-type", "application/grpc".parse().unwrap());
        return resp;
    }
    let header = |name: &str| {
        req.headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("-")
            .to_owned()
    };
    let text = format!(
        "path={path} host={} xfcc={} version={:?}",
        header("host"),
        header("x-forwarded-client-cert"),
        req.version()
    );
    let body = req
        .into_body()
        .collect()
        .await
        .map(|b| b.to_bytes().len())
        .unwrap_or(0);
    http::Response::new(boxed(Full::new(Bytes::from(format!("{text} body={body}")))))
}

/// Sends each data frame of `req` back as it arrives, then `grpc-status: 0`.
fn echo_stream(req: http::Request<Incoming>) -> http::Response<ProxyBody> {
    let (tx, rx) = tokio::sync::mpsc::channel::<Frame<Bytes>>(4);
    tokio::spawn(async move {
        let mut body = req.into_body();
        while let Some(Ok(frame)) = body.frame().await {
            if let Ok(data) = frame.into_data()
                && tx.send(Frame::data(data)).await.is_err()
            {
                return;
            }
        }
        let mut trailers = http::HeaderMap::new();
        trailers.insert("grpc-status", "0".parse().unwrap());
        let _ = tx.send(Frame::trailers(trailers)).await;
    });
    let mut resp = http::Response::new(channel_body(rx));
    resp.headers_mut()
        .insert("content-type", "application/grpc".parse().unwrap());
    resp
}

/// A body that yields what `rx` receives, ending when its sender is dropped.
pub fn channel_body(rx: tokio::sync::mpsc::Receiver<Frame<Bytes>>) -> ProxyBody {
    let frames = futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|f| (Ok::<_, Infallible>(f), rx))
    });
    boxed(StreamBody::new(frames))
}

/// A TCP echo server.
pub async fn echo() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((mut tcp, _)) = listener.accept().await else {
                return;
            };
            tokio::spawn(async move {
                let (mut r, mut w) = tcp.split();
                let _ = tokio::io::copy(&mut r, &mut w).await;
            });
        }
    });
    addr
}

/// A client sidecar and a server sidecar in front of `app`, the client
/// knowing the server as `server.default`.
pub struct Pair {
    pub ca: TestCa,
    pub client: Running,
    pub server: Running,
    pub app: SocketAddr,
}

pub async fn pair(server_config: impl FnOnce(&mut SidecarConfig), yaml: &str) -> Pair {
    let ca = TestCa::new(TD);
    let app = app().await;
    let mut sc = loopback_config();
    sc.workload.name = "server".into();
    sc.workload.service = "server".into();
    sc.inbound.app = app;
    server_config(&mut sc);
    let server = start(sc, identity(&ca, SERVER_ID), yaml).await;
    let client = client_to(&ca, &[server.addrs.inbound], |cc| {
        cc.workload.name = "client".into();
    })
    .await;
    Pair {
        ca,
        client,
        server,
        app,
    }
}

/// A client sidecar (configured by `config`) whose `server.default` is
/// `endpoints`, each proving the server's SPIFFE ID.
pub async fn client_to(
    ca: &TestCa,
    endpoints: &[SocketAddr],
    config: impl FnOnce(&mut SidecarConfig),
) -> Running {
    let mut cc = loopback_config();
    config(&mut cc);
    let client = start(cc, identity(ca, CLIENT_ID), "").await;
    client.endpoints.set_service(
        ServiceKey::new("server", "default"),
        endpoints
            .iter()
            .map(|&addr| Target {
                addr,
                identity: SERVER_ID.parse().unwrap(),
            })
            .collect(),
    );
    client
}

/// An application that reads what it is sent and never answers; reports
/// each connection closed on it.
pub async fn silent_app() -> (SocketAddr, tokio::sync::mpsc::Receiver<()>) {
    use tokio::io::AsyncReadExt;
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (closed, rx) = tokio::sync::mpsc::channel(4);
    tokio::spawn(async move {
        while let Ok((mut tcp, _)) = listener.accept().await {
            let closed = closed.clone();
            tokio::spawn(async move {
                let mut buf = [0u8; 4096];
                while let Ok(n) = tcp.read(&mut buf).await {
                    if n == 0 {
                        let _ = closed.send(()).await;
                        return;
                    }
                }
            });
        }
    });
    (addr, rx)
}

pub fn h1_client() -> Client<HttpConnector, ProxyBody> {
    Client::builder(TokioExecutor::new()).build(HttpConnector::new())
}

pub fn h2_client() -> Client<HttpConnector, ProxyBody> {
    Client::builder(TokioExecutor::new())
        .http2_only(true)
        .build(HttpConnector::new())
}

pub fn empty() -> ProxyBody {
    boxed(Full::new(Bytes::new()))
}

/// Sends `GET path` to the outbound listener with `Host: host`.
pub async fn get_via(
    outbound: SocketAddr,
    host: &str,
    path: &str,
) -> (http::StatusCode, http::HeaderMap, String) {
    let req = http::Request::get(format!("http://{outbound}{path}"))
        .header("host", host)
        .body(empty())
        .unwrap();
    let resp = h1_client().request(req).await.unwrap();
    let status = resp.status();
    let headers = resp.headers().clone();
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    (status, headers, String::from_utf8_lossy(&body).into_owned())
}

/// The body of `GET path` on an admin listener.
pub async fn admin_text(addr: SocketAddr, path: &str) -> String {
    let req = http::Request::get(format!("http://{addr}{path}"))
        .body(empty())
        .unwrap();
    let resp = h1_client().request(req).await.unwrap();
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    String::from_utf8_lossy(&body).into_owned()
}

/// A `CONNECT authority` tunnel through the outbound listener, its `200`
/// response head read (byte by byte, so nothing after it is consumed).
pub async fn tunnel(outbound: SocketAddr, authority: &str) -> tokio::net::TcpStream {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut tcp = tokio::net::TcpStream::connect(outbound).await.unwrap();
    let req = format!("CONNECT {authority} HTTP/1.1\r\nHost: {authority}\r\n\r\n");
    tcp.write_all(req.as_bytes()).await.unwrap();
    let mut head = Vec::new();
    while !head.ends_with(b"\r\n\r\n") {
        let mut b = [0u8; 1];
        tcp.read_exact(&mut b).await.unwrap();
        head.push(b[0]);
        assert!(head.len() < 8192, "response head too long");
    }
    let head = String::from_utf8_lossy(&head);
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    tcp
}
