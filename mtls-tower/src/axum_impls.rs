//! axum integration: the acceptor as an `axum::serve` listener and
//! [`PeerIdentity`] as an extractor.

use std::time::Duration;

use axum::extract::FromRequestParts;
use axum::extract::connect_info::{ConnectInfo, Connected};
use axum::serve::{IncomingStream, Listener};
use http::StatusCode;
use http::request::Parts;

use crate::acceptor::{MtlsAcceptor, TlsConnection};
use crate::error::AcceptError;
use crate::identity::PeerIdentity;

/// `axum::serve(acceptor, app.into_make_service_with_connect_info::<PeerIdentity>())`
/// serves only authenticated peers. Failed handshakes are logged and skipped.
impl Listener for MtlsAcceptor {
    type Io = TlsConnection;
    type Addr = PeerIdentity;

    async fn accept(&mut self) -> (TlsConnection, PeerIdentity) {
        loop {
            match MtlsAcceptor::accept(self).await {
                Ok(conn) => {
                    let peer = conn.peer().clone();
                    return (conn, peer);
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

    fn local_addr(&self) -> std::io::Result<PeerIdentity> {
        Err(std::io::Error::new(
            std::io::ErrorKind::Unsupported,
            "an mTLS listener's address is a peer identity; use MtlsAcceptor::local_addr",
        ))
    }
}

impl Connected<IncomingStream<'_, MtlsAcceptor>> for PeerIdentity {
    fn connect_info(stream: IncomingStream<'_, MtlsAcceptor>) -> Self {
        stream.remote_addr().clone()
    }
}

/// Extracts the authenticated peer. It is there when requests come through
/// [`crate::PeerIdentityLayer`] or `axum::serve` over an [`MtlsAcceptor`]
/// with `into_make_service_with_connect_info::<PeerIdentity>()`; otherwise
/// the request is refused with 500 (a server wiring error, never a
/// peer-controlled outcome), failing closed.
impl<S: Send + Sync> FromRequestParts<S> for PeerIdentity {
    type Rejection = (StatusCode, &'static str);

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        if let Some(peer) = parts.extensions.get::<PeerIdentity>() {
            return Ok(peer.clone());
        }
        if let Some(ConnectInfo(peer)) = parts.extensions.get::<ConnectInfo<PeerIdentity>>() {
            return Ok(peer.clone());
        }
        Err((
            StatusCode::INTERNAL_SERVER_ERROR,
            "no authenticated peer identity on this connection",
        ))
    }
}
