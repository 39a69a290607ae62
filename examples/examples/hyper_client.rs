//! A hyper client over mTLS that requires the server's SPIFFE ID per target.
//!
//! A plain hyper server runs behind the acceptor in the same process; the
//! client reaches it as `127.0.0.1` (authorized: the `api` ID) and as
//! `localhost` (where this client expects the `db` ID, so it refuses).

use std::convert::Infallible;

use bytes::Bytes;
use examples::{Authority, Result, provider};
use http_body_util::{BodyExt, Empty, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::service::TowerToHyperService;
use mtls_tower::{
    ClientConfigBuilder, ConnectionFacts, ConnectionLayer, MtlsAcceptor, MtlsConnector,
    ServerConfigBuilder, TargetAuthorizers, authorizer,
};
use tower::Layer;

const API: &str = "spiffe://example.org/ns/default/sa/api";
const CLIENT: &str = "spiffe://example.org/ns/default/sa/cli";

#[tokio::main]
async fn main() -> Result<()> {
    let authority = Authority::new("example.org")?;
    let server_config = ServerConfigBuilder::new(
        provider(),
        authority.workload(API)?,
        authority.bundles(),
        authorizer::member_of(["example.org".parse()?]),
    )
    .build()?;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let port = listener.local_addr()?.port();
    let mut acceptor = MtlsAcceptor::new(listener, server_config);
    let server = tokio::spawn(async move {
        while let Ok(conn) = acceptor.accept().await {
            let svc = ConnectionLayer::new(conn.facts().clone()).layer(tower::service_fn(
                |req: http::Request<hyper::body::Incoming>| async move {
                    let who = req
                        .extensions()
                        .get::<ConnectionFacts>()
                        .and_then(ConnectionFacts::peer)
                        .map(|p| p.spiffe_id().to_string())
                        .unwrap_or_default();
                    Ok::<_, Infallible>(http::Response::new(Full::new(Bytes::from(format!(
                        "api says hi to {who}"
                    )))))
                },
            ));
            tokio::spawn(
                hyper::server::conn::http2::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(conn), TowerToHyperService::new(svc)),
            );
        }
    });

    let targets = TargetAuthorizers::new()
        .target("127.0.0.1", authorizer::exact(API.parse()?))
        .target(
            "localhost",
            authorizer::exact("spiffe://example.org/ns/default/sa/db".parse()?),
        );
    let config = ClientConfigBuilder::per_target(
        provider(),
        authority.workload(CLIENT)?,
        authority.bundles(),
        targets,
    )
    .build()?;
    let client: Client<_, Empty<Bytes>> =
        Client::builder(TokioExecutor::new()).build(MtlsConnector::new(config));

    let resp = client
        .get(format!("https://127.0.0.1:{port}/").parse()?)
        .await?;
    let body = resp.into_body().collect().await?.to_bytes();
    println!("127.0.0.1 -> {}", String::from_utf8_lossy(&body));
    if body != format!("api says hi to {CLIENT}").as_bytes() {
        return Err("unexpected answer".into());
    }
    match client
        .get(format!("https://localhost:{port}/").parse()?)
        .await
    {
        Ok(_) => return Err("localhost should have been refused".into()),
        Err(e) => println!("localhost -> refused, server is not the expected db ({e:?})"),
    }
    server.abort();
    Ok(())
}
