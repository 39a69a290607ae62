//! [`PeerIdentityLayer`] / [`AddPeerIdentity`]: the peer identity of a
//! connection into each request's extensions.

use std::task::{Context, Poll};

use tower::{Layer, Service};

use spiffe_core::PeerIdentity;

/// Puts the connection's [`PeerIdentity`] into every request's extensions.
///
/// Applied per connection, with the identity the acceptor established:
///
/// ```no_run
/// # async fn demo(mut acceptor: mtls_tower::MtlsAcceptor) {
/// use tower::Layer;
/// let conn = acceptor.accept().await.unwrap();
/// let svc = mtls_tower::PeerIdentityLayer::new(conn.peer().clone())
///     .layer(tower::service_fn(|req: http::Request<()>| async move {
///         let peer = req.extensions().get::<mtls_tower::PeerIdentity>().cloned();
///         Ok::<_, std::convert::Infallible>(format!("{:?}", peer))
///     }));
/// # }
/// ```
#[derive(Debug, Clone)]
pub struct PeerIdentityLayer {
    peer: PeerIdentity,
}

impl PeerIdentityLayer {
    /// A layer for a connection whose peer is `peer`.
    pub fn new(peer: PeerIdentity) -> Self {
        PeerIdentityLayer { peer }
    }
}

impl<S> Layer<S> for PeerIdentityLayer {
    type Service = AddPeerIdentity<S>;

    fn layer(&self, inner: S) -> AddPeerIdentity<S> {
        AddPeerIdentity {
            inner,
            peer: self.peer.clone(),
        }
    }
}

/// The service of [`PeerIdentityLayer`].
#[derive(Debug, Clone)]
pub struct AddPeerIdentity<S> {
    inner: S,
    peer: PeerIdentity,
}

impl<S, B> Service<http::Request<B>> for AddPeerIdentity<S>
where
    S: Service<http::Request<B>>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = S::Future;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: http::Request<B>) -> S::Future {
        req.extensions_mut().insert(self.peer.clone());
        self.inner.call(req)
    }
}
