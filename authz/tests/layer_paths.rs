//! M-9 through a real axum router: the path that was authorized is the
//! path that is served.

mod common;

use std::sync::Arc;

use authz::AuthzLayer;
use axum::Router;
use axum::body::Body;
use axum::routing::get;
use common::*;
use http_body_util::BodyExt;
use tower::{Layer, ServiceExt};

/// `/public/*` and `/admin` handlers that say which one ran and which URI
/// they were given.
fn app() -> Router {
    Router::new()
        .route(
            "/public/{*rest}",
            get(|uri: http::Uri| async move { format!("public {uri}") }),
        )
        .route("/admin", get(|| async { "admin" }))
        .route(
            "/admin/{*rest}",
            get(|uri: http::Uri| async move { format!("admin {uri}") }),
        )
        .fallback(|uri: http::Uri| async move { format!("fallback {uri}") })
}

/// Sends `target` through `AuthzLayer` (only `ALLOW paths: ["/public/*"]`)
/// in front of [`app`].
async fn send(target: &str) -> (u16, String) {
    let e = engine(&ap(
        "foo",
        "public",
        "rules:\n- to: [{operation: {paths: [\"/public/*\"]}}]",
    ));
    let svc = AuthzLayer::new(Arc::new(e)).layer(app());
    let mut req = http::Request::get(target)
        .body(Body::empty())
        .unwrap_or_else(|e| panic!("test target {target} must build: {e}"));
    req.extensions_mut().insert(facts(8080));
    let resp = svc.oneshot(req).await.unwrap_or_else(|e| match e {});
    let status = resp.status().as_u16();
    let body = resp
        .into_body()
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    (status, String::from_utf8_lossy(&body).into_owned())
}

#[tokio::test(flavor = "current_thread")]
async fn m_9_backend_receives_the_normalised_path() {
    for target in [
        "/admin/../public/x",
        "/admin/%2e%2e/public/x",
        "/admin/%2E%2E/public/x",
        "/admin/.%2E/public/x",
        "/admin/%2e./public/x",
        "/admin/./../public/x",
        "/admin\\..\\public\\x",
        "/admin\\../public/x",
        "/%61dmin/../public/x",
        "/public/./x",
    ] {
        assert_eq!(
            send(target).await,
            (200, "public /public/x".to_owned()),
            "{target}"
        );
    }
}

#[tokio::test(flavor = "current_thread")]
async fn m_9_backend_receives_the_query_unchanged() {
    assert_eq!(
        send("/admin/../public/x?next=/admin/../x&a=%2e%2e").await,
        (200, "public /public/x?next=/admin/../x&a=%2e%2e".to_owned())
    );
}

#[tokio::test(flavor = "current_thread")]
async fn m_9_admin_is_never_served_under_a_public_allow() {
    // Each of these either reaches /public (with the normalised path) or
    // is refused; none may reach an /admin handler.
    for target in [
        "/admin",
        "/admin/x",
        "/public/../admin",
        "/public/%2e%2e/admin",
        "/public/%2E%2E/admin/x",
        "/public\\..\\admin",
        "/public/..//admin",
        "//admin/../public/x",
        "/admin//../public/x",
        "/public//../../admin",
        "/public/x/../../admin",
        "/public/..%2fadmin",
        "/public/%2e%2e%5cadmin",
    ] {
        let (status, body) = send(target).await;
        assert!(
            status == 403 || (status == 200 && body.starts_with("public /public/")),
            "{target}: {status} {body}"
        );
        assert!(!body.starts_with("admin"), "{target} reached {body}");
    }
    // `//` is kept (BASE does not merge slashes), so the router sees what
    // was authorized.
    assert_eq!(
        send("/public//x").await,
        (200, "public /public//x".to_owned())
    );
}

#[tokio::test(flavor = "current_thread")]
async fn m_9_unnormalisable_paths_are_refused_before_the_backend() {
    assert_eq!(send("/public/%00").await, (400, "Bad Request".to_owned()));
}
