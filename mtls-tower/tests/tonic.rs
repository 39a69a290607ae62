//! tonic: a server over the acceptor with the peer identity visible to
//! handlers, and a client channel over the mTLS connector.

mod common;

use std::convert::Infallible;
use std::future::{Ready, ready};
use std::pin::Pin;
use std::task::{Context, Poll};

use common::*;
use http::uri::PathAndQuery;
use mtls_tower::{ConnectionFacts, MtlsAcceptor, MtlsConnector, authorizer};
use test_support::TestCa;
use tonic_prost::ProstCodec;

const TD: &str = "example.org";
const SERVER: &str = "spiffe://example.org/ns/default/sa/server";
const CLIENT: &str = "spiffe://example.org/ns/default/sa/frontend";

/// The message both ways: the caller's SPIFFE ID as the server saw it.
#[derive(Clone, PartialEq, prost::Message)]
struct Who {
    #[prost(string, tag = "1")]
    id: String,
}

/// A hand-written unary gRPC service `test.Who/Who`.
#[derive(Clone)]
struct WhoService;

impl tonic::server::NamedService for WhoService {
    const NAME: &'static str = "test.Who";
}

struct WhoHandler;

impl tonic::server::UnaryService<Who> for WhoHandler {
    type Response = Who;
    type Future = Ready<Result<tonic::Response<Who>, tonic::Status>>;

    fn call(&mut self, request: tonic::Request<Who>) -> Self::Future {
        let peer = request
            .extensions()
            .get::<ConnectionFacts>()
            .and_then(ConnectionFacts::peer);
        ready(match peer {
            Some(peer) => Ok(tonic::Response::new(Who {
                id: peer.spiffe_id().to_string(),
            })),
            None => Err(tonic::Status::unauthenticated("no peer identity")),
        })
    }
}

type BoxFut<T> = Pin<Box<dyn std::future::Future<Output = T> + Send>>;

impl tower::Service<http::Request<tonic::body::Body>> for WhoService {
    type Response = http::Response<tonic::body::Body>;
    type Error = Infallible;
    type Future = BoxFut<Result<Self::Response, Infallible>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: http::Request<tonic::body::Body>) -> Self::Future {
        Box::pin(async move {
            let mut grpc = tonic::server::Grpc::new(ProstCodec::<Who, Who>::default());
            Ok(grpc.unary(WhoHandler, req).await)
        })
    }
}

async fn call_who(channel: tonic::transport::Channel) -> Result<String, tonic::Status> {
    let mut grpc = tonic::client::Grpc::new(channel);
    grpc.ready()
        .await
        .map_err(|e| tonic::Status::unavailable(e.to_string()))?;
    let resp = grpc
        .unary(
            tonic::Request::new(Who { id: String::new() }),
            PathAndQuery::from_static("/test.Who/Who"),
            ProstCodec::<Who, Who>::default(),
        )
        .await?;
    Ok(resp.into_inner().id)
}

#[tokio::test]
async fn tonic_server_over_acceptor_sees_client_identity() {
    test_support::within(30, async move {
        let ca = TestCa::new(TD);
        let server = Workload::new(&ca, SERVER, TD);
        let client = Workload::new(&ca, CLIENT, TD);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let acceptor = MtlsAcceptor::new(
            listener,
            server.server_config(authorizer::exact(CLIENT.parse().unwrap())),
        );
        let task = tokio::spawn(
            tonic::transport::Server::builder()
                .add_service(WhoService)
                .serve_with_incoming(acceptor),
        );
        let uri: http::Uri = format!("http://127.0.0.1:{}", addr.port()).parse().unwrap();

        let channel =
            MtlsConnector::new(client.client_config(authorizer::exact(SERVER.parse().unwrap())))
                .tonic_channel(uri.clone());
        assert_eq!(call_who(channel).await.unwrap(), CLIENT);

        // A client that does not accept this server's ID cannot call.
        let picky = MtlsConnector::new(client.client_config(authorizer::exact(
            "spiffe://example.org/other".parse().unwrap(),
        )))
        .tonic_channel(uri.clone());
        let status = call_who(picky).await.unwrap_err();
        assert_eq!(status.code(), tonic::Code::Unavailable, "{status:?}");
        // Our client's authorizer refused the server, and the status says so.
        assert!(
            status.message().contains(
                "peer spiffe://example.org/ns/default/sa/server is not authorized by exact(spiffe://example.org/other)"
            ),
            "{status:?}"
        );

        // A client the server does not admit cannot call; the server keeps serving.
        let intruder = Workload::new(&ca, "spiffe://example.org/intruder", TD);
        let channel = MtlsConnector::new(intruder.client_config(authorizer::any()))
            .tonic_channel(uri.clone());
        let status = call_who(channel).await.unwrap_err();
        // The status carries the alert when the HTTP/2 client read it
        // before seeing the connection close (not always): then it must be
        // access_denied. The alert itself is read at the TLS layer below.
        if let Some(failure) = tls_failure(&status) {
            assert_eq!(
                failure,
                alert(rustls::AlertDescription::AccessDenied),
                "{status:?}"
            );
        }
        assert_eq!(
            refused_handshake(&intruder.client_config(authorizer::any()), addr).await,
            alert(rustls::AlertDescription::AccessDenied),
            "the intruder is told access_denied"
        );
        let channel =
            MtlsConnector::new(client.client_config(authorizer::any())).tonic_channel(uri);
        assert_eq!(call_who(channel).await.unwrap(), CLIENT);
        task.abort();
    })
    .await
}
