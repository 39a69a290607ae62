//! axum integration: the acceptor as an `axum::serve` listener, a make
//! service that puts [`ConnectionFacts`] (with the verified peer) into every
//! request, and the [`Peer`] extractor.

use std::convert::Infallible;
use std::future::{Ready, ready};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::extract::FromRequestParts;
use axum::serve::{IncomingStream, Listener};
use http::StatusCode;
use http::request::Parts;
use spiffe_core::{ConnectionFacts, PeerIdentity};
use tower::{Layer, Service};

use crate::acceptor::{MtlsAcceptor, TlsConnection};
use crate::error::AcceptError;
use crate::layer::{AddConnection, ConnectionLayer};

/// `axum::serve(acceptor, mtls_tower::into_make_service(app))` serves only
/// authenticated peers. Failed handshakes are logged and skipped.
impl Listener for MtlsAcceptor {
    type Io = TlsConnection;
    type Addr = ConnectionFacts;

    async fn accept(&mut self) -> (TlsConnection, ConnectionFacts) {
        loop {
            match MtlsAcceptor::accept(self).await {
                Ok(conn) => {
                    let facts = conn.facts().clone();
                    return (conn, facts);
                }
                Err(AcceptError::Accept(error)) => {
                    // As axum does for TCP: back off on listener errors
                    // (e.g. out of file descriptors).
                    tracing::warn!(%error, "accept failed");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
                Err(error) => tracing::debug!(%error, "TLS connection refused"),
            }
        }
    }

    fn local_addr(&self) -> std::io::Result<ConnectionFacts> {
        Err(std::io::Error::new(
            std::io::ErrorKind::Unsupported,
            "an mTLS listener's address is per connection; use MtlsAcceptor::local_addr",
        ))
    }
}

/// Wraps a service (an axum `Router`) for `axum::serve` over an
/// [`MtlsAcceptor`]: each connection's service puts the peer's
/// [`ConnectionFacts`], with the verified [`PeerIdentity`], into every
/// request's extensions.
pub fn into_make_service<S>(service: S) -> PeerMakeService<S> {
    PeerMakeService { service }
}

/// See [`into_make_service`].
#[derive(Debug, Clone)]
pub struct PeerMakeService<S> {
    service: S,
}

impl<S: Clone> Service<IncomingStream<'_, MtlsAcceptor>> for PeerMakeService<S> {
    type Response = AddConnection<S>;
    type Error = Infallible;
    type Future = Ready<Result<AddConnection<S>, Infallible>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, stream: IncomingStream<'_, MtlsAcceptor>) -> Self::Future {
        let layer = ConnectionLayer::new(stream.remote_addr().clone());
        ready(Ok(layer.layer(self.service.clone())))
    }
}

/// Extracts the authenticated peer from the request extensions.
///
/// It is there when requests come through [`crate::ConnectionLayer`]
/// (which [`into_make_service`] applies per connection). Otherwise the
/// request is refused with 500 — a server wiring error, never something a
/// peer controls — so a handler that takes `Peer` never runs without one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Peer(pub PeerIdentity);

impl<S: Send + Sync> FromRequestParts<S> for Peer {
    type Rejection = (StatusCode, &'static str);

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        parts
            .extensions
            .get::<ConnectionFacts>()
            .and_then(ConnectionFacts::peer)
            .map(|p| Peer(p.clone()))
            .ok_or((
                StatusCode::INTERNAL_SERVER_ERROR,
                "no authenticated peer identity on this connection",
            ))
    }
}
