//! `demo.Greeter/Greet`, a one-method gRPC service written on tonic's
//! codegen building blocks, so no protobuf compiler runs: the reply
//! greets the caller by the SPIFFE ID its mTLS connection proved.

use std::convert::Infallible;
use std::future::{Ready, ready};
use std::pin::Pin;
use std::task::{Context, Poll};

use http::uri::PathAndQuery;
use mtls_tower::ConnectionFacts;
use tonic_prost::ProstCodec;

/// The method's path, as an AuthorizationPolicy names it.
pub const GREET_PATH: &str = "/demo.Greeter/Greet";

/// Request and reply of `demo.Greeter/Greet`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Greeting {
    /// The text: sent by the caller, `TEXT, CALLER-ID` in the reply.
    #[prost(string, tag = "1")]
    pub text: String,
}

/// The service, ready for `tonic::transport::Server::add_service`.
#[derive(Debug, Clone, Copy, Default)]
pub struct Greeter;

impl tonic::server::NamedService for Greeter {
    const NAME: &'static str = "demo.Greeter";
}

struct Greet;

impl tonic::server::UnaryService<Greeting> for Greet {
    type Response = Greeting;
    type Future = Ready<Result<tonic::Response<Greeting>, tonic::Status>>;

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
    type Future = BoxFuture<Result<Self::Response, Infallible>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: http::Request<tonic::body::Body>) -> Self::Future {
        Box::pin(async move {
            if req.uri().path() != GREET_PATH {
                return Ok(tonic::Status::unimplemented("no such method").into_http());
            }
            let mut grpc = tonic::server::Grpc::new(ProstCodec::<Greeting, Greeting>::default());
            Ok(grpc.unary(Greet, req).await)
        })
    }
}

/// Calls `Greet` with `text` over `channel`; the reply's text.
pub async fn greet(
    channel: tonic::transport::Channel,
    text: &str,
) -> Result<String, tonic::Status> {
    let mut grpc = tonic::client::Grpc::new(channel);
    grpc.ready()
        .await
        .map_err(|e| tonic::Status::unavailable(spiffe_core::error_chain(&e)))?;
    let reply = grpc
        .unary(
            tonic::Request::new(Greeting { text: text.into() }),
            PathAndQuery::from_static(GREET_PATH),
            ProstCodec::<Greeting, Greeting>::default(),
        )
        .await?;
    Ok(reply.into_inner().text)
}

/// A failed call in one line: the gRPC code, its message, and the cause
/// beneath it (for a refused handshake, who refused whom and why), e.g.
/// `PermissionDenied: RBAC: access denied`.
pub fn explain(status: &tonic::Status) -> String {
    let mut line = format!("{:?}: {}", status.code(), status.message());
    if let Some(cause) = std::error::Error::source(status) {
        let cause = spiffe_core::error_chain(cause);
        if !line.contains(&cause) {
            line.push_str(": ");
            line.push_str(&cause);
        }
    }
    line
}
