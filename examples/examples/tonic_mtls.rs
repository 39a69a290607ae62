//! A tonic server and client over mTLS.
//!
//! The server runs over the mTLS acceptor (`serve_with_incoming`) and its
//! handler reads the caller's SPIFFE ID from the request extensions; the
//! client's channel runs over the mTLS connector and only accepts the
//! server's SPIFFE ID. The service (`demo.Greeter/Greet`) is written by
//! hand on tonic's codegen building blocks, so no protobuf compiler runs.

use std::convert::Infallible;
use std::future::{Ready, ready};
use std::pin::Pin;
use std::task::{Context, Poll};

use examples::{Authority, Result, provider};
use http::uri::PathAndQuery;
use mtls_tower::{
    ClientConfigBuilder, ConnectionFacts, MtlsAcceptor, MtlsConnector, ServerConfigBuilder,
    authorizer,
};
use tonic_prost::ProstCodec;

const SERVER: &str = "spiffe://example.org/ns/default/sa/greeter";
const CLIENT: &str = "spiffe://example.org/ns/default/sa/caller";

/// Request and reply of `demo.Greeter/Greet`.
#[derive(Clone, PartialEq, prost::Message)]
struct Greeting {
    #[prost(string, tag = "1")]
    text: String,
}

#[derive(Clone)]
struct Greeter;

impl tonic::server::NamedService for Greeter {
    const NAME: &'static str = "demo.Greeter";
}

struct Greet;

impl tonic::server::UnaryService<Greeting> for Greet {
    type Response = Greeting;
    type Future = Ready<std::result::Result<tonic::Response<Greeting>, tonic::Status>>;

    fn call(&mut self, request: tonic::Request<Greeting>) -> Self::Future {
        let Some(peer) = request
            .extensions()
            .get::<ConnectionFacts>()
            .and_then(ConnectionFacts::peer)
            .cloned()
        else {
            return ready(Err(tonic::Status::unauthenticated("no peer identity")));
        };
        let text = format!("{}, {}", request.into_inner().text, peer.spiffe_id());
        ready(Ok(tonic::Response::new(Greeting { text })))
    }
}

type BoxFuture<T> = Pin<Box<dyn std::future::Future<Output = T> + Send>>;

impl tower::Service<http::Request<tonic::body::Body>> for Greeter {
    type Response = http::Response<tonic::body::Body>;
    type Error = Infallible;
    type Future = BoxFuture<std::result::Result<Self::Response, Infallible>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<std::result::Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: http::Request<tonic::body::Body>) -> Self::Future {
        Box::pin(async move {
            if req.uri().path() != "/demo.Greeter/Greet" {
                return Ok(tonic::Status::unimplemented("no such method").into_http());
            }
            let mut grpc = tonic::server::Grpc::new(ProstCodec::<Greeting, Greeting>::default());
            Ok(grpc.unary(Greet, req).await)
        })
    }
}

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
    let mut grpc = tonic::client::Grpc::new(channel);
    grpc.ready().await?;
    let reply = grpc
        .unary(
            tonic::Request::new(Greeting {
                text: "hello".into(),
            }),
            PathAndQuery::from_static("/demo.Greeter/Greet"),
            ProstCodec::<Greeting, Greeting>::default(),
        )
        .await?
        .into_inner();
    println!("greeter replied: {}", reply.text);
    if reply.text != format!("hello, {CLIENT}") {
        return Err("unexpected reply".into());
    }
    server.abort();
    Ok(())
}
