//! `first_service` in tonic: identity from the agent, mTLS, and an Istio
//! AuthorizationPolicy in front of a gRPC service (`demo.Greeter/Greet`,
//! from `examples::greeter`), in the nine lines of `serve`.
//!
//! Set up as for `first_service` (an agent, an entry for the greeter's
//! uid and one for the frontend's), then:
//!
//! ```text
//! cargo run -p examples --example first_service_grpc -- serve 127.0.0.1:8443 \
//!     examples/policies/first_service_grpc.yaml
//! # as the frontend's user:
//! cargo run -p examples --example first_service_grpc -- call 127.0.0.1:8443
//! ```
//!
//! A caller the policy does not allow gets the gRPC status
//! `PermissionDenied: RBAC: access denied`; a refused handshake prints who
//! refused whom. `examples/tests/first_service.rs` runs it against a real
//! agent.

use std::time::Duration;

use authz::{AuthzLayer, PolicySet};
use examples::greeter::{Greeter, explain, greet};
use examples::{Command, Result};
use mtls_tower::{
    ClientConfigBuilder, MtlsAcceptor, MtlsConnector, ServerConfigBuilder, authorizer,
};
use workload_api::{DEFAULT_CONNECT_WAIT, X509Source};

/// The service: identity from `SPIFFE_ENDPOINT_SOCKET`, mTLS with any
/// client of its trust domain, the AuthorizationPolicy in `policy`.
async fn serve(addr: &str, policy: &str) -> Result<()> {
    let source = X509Source::from_env(DEFAULT_CONNECT_WAIT).await?;
    let authz = AuthzLayer::for_source(&source, &PolicySet::load(&[policy])?)?;
    let tls = ServerConfigBuilder::from_source(source, authorizer::any()).build()?;
    let listener = tokio::net::TcpListener::bind(addr).await?;
    println!("serving demo.Greeter on {}", listener.local_addr()?);
    let mut server = tonic::transport::Server::builder().layer(authz);
    let incoming = MtlsAcceptor::new(listener, tls);
    server
        .add_service(Greeter)
        .serve_with_incoming(incoming)
        .await?;
    Ok(())
}

/// A client: calls `Greet` at `addr` with this process's identity and
/// prints the reply.
async fn call(addr: &str, wait: Duration) -> Result<()> {
    let source = X509Source::from_env(wait).await?;
    let tls = ClientConfigBuilder::from_source(source, authorizer::any()).build()?;
    let channel = MtlsConnector::new(tls).tonic_channel(format!("http://{addr}").parse()?);
    let reply = greet(channel, "hello").await.map_err(|s| explain(&s))?;
    println!("{reply}");
    Ok(())
}

#[tokio::main]
async fn main() {
    let result = match Command::from_args("first_service_grpc") {
        Ok(Command::Serve { addr, policy }) => serve(&addr, &policy).await,
        Ok(Command::Call { target, wait }) => call(&target, wait).await,
        Err(e) => Err(e),
    };
    examples::exit_with("first_service_grpc", result);
}
