//! A first service of the mesh: identity from the agent, mTLS, and an
//! Istio AuthorizationPolicy, in the ten lines of `serve`.
//!
//! It needs a SPIFFE Workload API (the agent of `mesh-node up`, or SPIRE's)
//! and a registration entry for each side:
//!
//! ```text
//! cargo run -p mesh-node -- up --trust-domain example.org    # prints SPIFFE_ENDPOINT_SOCKET
//! mesh-node entry create --spiffe-id spiffe://example.org/ns/default/sa/greeter \
//!     --selector unix:uid:$(id -u)
//! mesh-node entry create --spiffe-id spiffe://example.org/ns/default/sa/frontend \
//!     --selector unix:uid:1000
//! export SPIFFE_ENDPOINT_SOCKET=unix:///...
//! cargo run -p examples --example first_service -- serve 127.0.0.1:8443 \
//!     examples/policies/first_service.yaml
//! # as uid 1000:
//! cargo run -p examples --example first_service -- call https://127.0.0.1:8443/hello
//! ```
//!
//! The policy (`examples/policies/first_service.yaml`) lets only
//! `cluster.local/ns/default/sa/frontend` GET `/hello`; `cluster.local`
//! means the service's own trust domain, which the authorization layer
//! takes from its SVID. Any other caller of the trust domain gets
//! `403 RBAC: access denied`; a caller from another trust domain is
//! refused during the handshake, and `call` prints why.
//! `examples/tests/first_service.rs` runs all of this against a real agent.

use std::time::Duration;

use authz::{AuthzLayer, PolicySet};
use axum::{Router, routing::get};
use bytes::Bytes;
use examples::{Command, Result};
use http_body_util::{BodyExt, Empty};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use mtls_tower::{
    ClientConfigBuilder, MtlsAcceptor, MtlsConnector, Peer, ServerConfigBuilder, authorizer,
    error_chain,
};
use workload_api::{DEFAULT_CONNECT_WAIT, X509Source};

async fn hello(Peer(caller): Peer) -> String {
    format!("hello, {}\n", caller.spiffe_id())
}

/// The service: identity from `SPIFFE_ENDPOINT_SOCKET`, mTLS with any
/// client of its trust domain, the AuthorizationPolicy in `policy`.
async fn serve(addr: &str, policy: &str) -> Result<()> {
    let source = X509Source::from_env(DEFAULT_CONNECT_WAIT).await?;
    let authz = AuthzLayer::for_source(&source, &PolicySet::load(&[policy])?)?;
    let app = Router::new().route("/hello", get(hello)).layer(authz);
    let tls = ServerConfigBuilder::from_source(source, authorizer::any()).build()?;
    let listener = tokio::net::TcpListener::bind(addr).await?;
    println!("serving https://{}/hello", listener.local_addr()?);
    let service = mtls_tower::into_make_service(app);
    axum::serve(MtlsAcceptor::new(listener, tls), service).await?;
    Ok(())
}

/// A client: GET `url` with this process's identity; prints the status
/// and the body, and fails unless the service answered 2xx.
async fn call(url: &str, wait: Duration) -> Result<()> {
    let source = X509Source::from_env(wait).await?;
    let tls = ClientConfigBuilder::from_source(source, authorizer::any()).build()?;
    let client: Client<_, Empty<Bytes>> =
        Client::builder(TokioExecutor::new()).build(MtlsConnector::new(tls));
    // hyper-util's own message is "client error (SendRequest)": print
    // the chain, which says who refused whom and why.
    let resp = client
        .get(url.parse()?)
        .await
        .map_err(|e| error_chain(&e))?;
    let status = resp.status();
    let body = resp.into_body().collect().await?.to_bytes();
    print!("{status} {}", String::from_utf8_lossy(&body));
    if !status.is_success() {
        return Err(format!("the service answered {status}").into());
    }
    Ok(())
}

#[tokio::main]
async fn main() {
    let result = match Command::from_args("first_service") {
        Ok(Command::Serve { addr, policy }) => serve(&addr, &policy).await,
        Ok(Command::Call { target, wait }) => call(&target, wait).await,
        Err(e) => Err(e),
    };
    examples::exit_with("first_service", result);
}
