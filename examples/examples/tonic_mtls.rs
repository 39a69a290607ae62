//! A tonic server and client over mTLS.
//!
//! The server runs over the mTLS acceptor (`serve_with_incoming`) and its
//! handler (`examples::greeter`) reads the caller's SPIFFE ID from the
//! request extensions; the client's channel runs over the mTLS connector
//! and only accepts the server's SPIFFE ID.

use examples::greeter::{Greeter, greet};
use examples::{Authority, Result, provider};
use mtls_tower::{
    ClientConfigBuilder, MtlsAcceptor, MtlsConnector, ServerConfigBuilder, authorizer,
};

const SERVER: &str = "spiffe://example.org/ns/default/sa/greeter";
const CLIENT: &str = "spiffe://example.org/ns/default/sa/caller";

#[tokio::main]
async fn main() -> Result<()> {
    let authority = Authority::new("example.org")?;
    let server_config = ServerConfigBuilder::new(
        provider(),
        authority.workload(SERVER)?,
        authority.bundles(),
        authorizer::exact(CLIENT.parse()?),
    )
    .build()?;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let port = listener.local_addr()?.port();
    let acceptor = MtlsAcceptor::new(listener, server_config);
    let server = tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(Greeter)
            .serve_with_incoming(acceptor),
    );

    let client_config = ClientConfigBuilder::new(
        provider(),
        authority.workload(CLIENT)?,
        authority.bundles(),
        authorizer::exact(SERVER.parse()?),
    )
    .build()?;
    let channel = MtlsConnector::new(client_config)
        .tonic_channel(format!("http://127.0.0.1:{port}").parse()?);
    let reply = greet(channel, "hello").await?;
    println!("greeter replied: {reply}");
    if reply != format!("hello, {CLIENT}") {
        return Err("unexpected reply".into());
    }
    server.abort();
    Ok(())
}
