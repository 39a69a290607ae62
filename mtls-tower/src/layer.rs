//! [`ConnectionLayer`] / [`AddConnection`]: the facts of a connection,
//! verified peer included, into each request's extensions.

use std::task::{Context, Poll};

use tower::{Layer, Service};

use spiffe_core::ConnectionFacts;

/// Puts the connection's [`ConnectionFacts`] (addresses, SNI, ALPN and the
/// verified [`spiffe_core::PeerIdentity`]) into every request's extensions.
///
/// Applied per connection, with the facts the acceptor took at accept
/// time; handlers and the authz layer read them from there:
///
/// ```no_run
/// # async fn demo(mut acceptor: mtls_tower::MtlsAcceptor) {
/// use tower::Layer;
/// let conn = acceptor.accept().await.unwrap();
/// let svc = mtls_tower::ConnectionLayer::new(conn.facts().clone())
///     .layer(tower::service_fn(|req: http::Request<()>| async move {
///         let facts = req.extensions().get::<spiffe_core::ConnectionFacts>();
///         let peer = facts.and_then(|f| f.peer()).map(|p| p.spiffe_id().to_string());
///         Ok::<_, std::convert::Infallible>(format!("{peer:?}"))
///     }));
/// # }
/// ```
#[derive(Debug, Clone)]
pub struct ConnectionLayer {
    facts: ConnectionFacts,
}

impl ConnectionLayer {
    /// A layer for a connection with these facts.
    pub fn new(facts: ConnectionFacts) -> Self {
        ConnectionLayer { facts }
    }
}

impl<S> Layer<S> for ConnectionLayer {
    type Service = AddConnection<S>;

    fn layer(&self, inner: S) -> AddConnection<S> {
        AddConnection {
            inner,
            facts: self.facts.clone(),
        }
    }
}

/// The service of [`ConnectionLayer`].
#[derive(Debug, Clone)]
pub struct AddConnection<S> {
    inner: S,
    facts: ConnectionFacts,
}

impl<S, B> Service<http::Request<B>> for AddConnection<S>
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
        // Overwrites anything already there: the connection's facts are the
        // only ones a request may carry.
        req.extensions_mut().insert(self.facts.clone());
        self.inner.call(req)
    }
}
