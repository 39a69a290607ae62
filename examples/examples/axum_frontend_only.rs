//! An axum service that serves only `spiffe://example.org/ns/default/sa/frontend`.
//!
//! The frontend's request succeeds and the handler sees its SPIFFE ID; a
//! client with another identity of the same trust domain is refused during
//! the TLS handshake.

use bytes::Bytes;
use examples::{Authority, Result, provider};
use http_body_util::{BodyExt, Empty};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use mtls_tower::{
    ClientConfigBuilder, MtlsAcceptor, MtlsConnector, Peer, ServerConfigBuilder, authorizer,
};

const FRONTEND: &str = "spiffe://example.org/ns/default/sa/frontend";
const BACKEND: &str = "spiffe://example.org/ns/default/sa/backend";

async fn hello(Peer(peer): Peer) -> String {
    format!("hello, {}", peer.spiffe_id())
}

async fn get(authority: &Authority, as_id: &str, url: &str) -> Result<String> {
    let config = ClientConfigBuilder::new(
        provider(),
        authority.workload(as_id)?,
        authority.bundles(),
        authorizer::exact(BACKEND.parse()?),
    )
    .build()?;
    let client: Client<_, Empty<Bytes>> =
        Client::builder(TokioExecutor::new()).build(MtlsConnector::new(config));
    let resp = client.get(url.parse()?).await?;
    let body = resp.into_body().collect().await?.to_bytes();
    Ok(String::from_utf8_lossy(&body).into_owned())
}

#[tokio::main]
async fn main() -> Result<()> {
    let authority = Authority::new("example.org")?;
    let server_config = ServerConfigBuilder::new(
        provider(),
        authority.workload(BACKEND)?,
        authority.bundles(),
        authorizer::exact(FRONTEND.parse()?),
    )
    .build()?;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let url = format!("https://127.0.0.1:{}/", listener.local_addr()?.port());
    let acceptor = MtlsAcceptor::new(listener, server_config);
    let app = axum::Router::new().route("/", axum::routing::get(hello));
    let server =
        tokio::spawn(
            async move { axum::serve(acceptor, mtls_tower::into_make_service(app)).await },
        );

    let answer = get(&authority, FRONTEND, &url).await?;
    println!("frontend -> {answer}");
    if answer != format!("hello, {FRONTEND}") {
        return Err("unexpected answer".into());
    }
    match get(
        &authority,
        "spiffe://example.org/ns/default/sa/intruder",
        &url,
    )
    .await
    {
        Ok(body) => return Err(format!("intruder was served: {body}").into()),
        Err(e) => println!("intruder -> refused ({e})"),
    }
    server.abort();
    Ok(())
}
