//! authz's HTTP layer on an arbitrary request target: the path is
//! normalised (M-9), matched against an ALLOW policy for `/public/*` that
//! excludes `/public/secret*`, and forwarded. The property: the service
//! behind the layer only ever sees a path that the policy admits, with no
//! dot segment and no backslash left. (Not that the path normalises to
//! itself: M-9 decodes once, so `%%37%33` becomes `%73` and would become
//! `s` on a second pass; the spec decodes once.)
#![no_main]

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::pin;
use std::sync::{Arc, LazyLock, Mutex};
use std::task::{Context, Poll, Waker};

use authz::{AuthzLayer, Engine, MeshConfig, PolicySet, Workload};
use libfuzzer_sys::fuzz_target;
use spiffe_core::ConnectionFacts;
use tower::{Layer, Service};

static LAYER: LazyLock<AuthzLayer> = LazyLock::new(|| {
    let yaml = "apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\n\
                metadata: {name: public, namespace: foo}\nspec:\n  rules:\n  \
                - to: [{operation: {paths: [\"/public/*\"], notPaths: [\"/public/secret*\"]}}]\n";
    let set = PolicySet::from_yaml_str("fuzz.yaml", yaml).expect("fixed policy loads");
    AuthzLayer::new(Arc::new(Engine::new(
        Workload::new("foo"),
        MeshConfig::default(),
        &set,
    )))
});

/// Sends `target` through the layer; the path the backend saw, if any.
fn forwarded(target: &str) -> Option<String> {
    let seen = Arc::new(Mutex::new(None));
    let record = seen.clone();
    let backend = tower::service_fn(move |req: http::Request<()>| {
        *record.lock().expect("not poisoned") = Some(req.uri().path().to_owned());
        std::future::ready(Ok::<_, Infallible>(http::Response::new(())))
    });
    let mut svc = LAYER.layer(backend);
    let mut req = http::Request::get(target).body(()).ok()?;
    req.extensions_mut().insert(ConnectionFacts::new(
        SocketAddr::from(([127, 0, 0, 1], 8080)),
        SocketAddr::from(([127, 0, 0, 1], 50000)),
    ));
    // The backend answers at once, so the layer's future is ready on its
    // first poll: no runtime needed.
    let mut cx = Context::from_waker(Waker::noop());
    let Poll::Ready(Ok(())) = svc.poll_ready(&mut cx) else {
        panic!("the layer over a ready backend must be ready");
    };
    let future = pin!(svc.call(req));
    let Poll::Ready(Ok(_)) = future.poll(&mut cx) else {
        panic!("the layer over a backend that answers at once must answer at once");
    };
    seen.lock().expect("not poisoned").take()
}

fuzz_target!(|data: &[u8]| {
    let Ok(target) = std::str::from_utf8(data) else {
        return;
    };
    let Some(path) = forwarded(target) else {
        return;
    };
    assert!(
        path.starts_with("/public/") && !path.starts_with("/public/secret"),
        "{target:?} reached the backend as {path:?}, which the policy does not admit"
    );
    assert!(
        !path.contains('\\') && !path.split('/').any(|s| s == "." || s == ".."),
        "{target:?} reached the backend as {path:?}, not normalised"
    );
});
