//! The demo's bookinfo: four small HTTP services that call each other
//! through their sidecars.
//!
//! Each answers with a line naming itself and the caller its sidecar
//! verified (from `x-forwarded-client-cert`), so the assembled page shows
//! every hop's peer identity. productpage calls details and reviews,
//! reviews calls ratings, each through its own sidecar's outbound
//! listener with `Host: service.bookinfo:9080`.

use std::net::SocketAddr;
use std::sync::{Arc, OnceLock};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::TcpListener;

/// One bookinfo service: its name, where it listens, and (once its
/// sidecar is up) the sidecar's outbound address it calls through.
#[derive(Debug)]
pub(crate) struct App {
    pub(crate) name: &'static str,
    pub(crate) addr: SocketAddr,
    pub(crate) outbound: Arc<OnceLock<SocketAddr>>,
}

type HttpClient = Client<HttpConnector, Full<Bytes>>;

/// Binds and serves `name` on loopback.
pub(crate) async fn start(name: &'static str) -> std::io::Result<App> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let outbound: Arc<OnceLock<SocketAddr>> = Arc::new(OnceLock::new());
    let client: HttpClient = Client::builder(TokioExecutor::new()).build(HttpConnector::new());
    let via = outbound.clone();
    tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                continue;
            };
            let client = client.clone();
            let via = via.clone();
            tokio::spawn(async move {
                let svc = hyper::service::service_fn(move |req: http::Request<Incoming>| {
                    let client = client.clone();
                    let via = via.get().copied();
                    async move { Ok::<_, std::convert::Infallible>(serve(name, req, client, via).await) }
                });
                let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(tcp), svc)
                    .await;
            });
        }
    });
    Ok(App {
        name,
        addr,
        outbound,
    })
}

/// The peer URI in an `x-forwarded-client-cert` header.
pub(crate) fn caller(headers: &http::HeaderMap) -> String {
    headers
        .get("x-forwarded-client-cert")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').find_map(|kv| kv.strip_prefix("URI=")))
        .unwrap_or("(none)")
        .to_owned()
}

fn text(status: u16, body: String) -> http::Response<Full<Bytes>> {
    let mut resp = http::Response::new(Full::new(Bytes::from(body)));
    *resp.status_mut() = http::StatusCode::from_u16(status).unwrap_or(http::StatusCode::OK);
    resp
}

/// Calls `service` through the sidecar at `via`; the status and body.
pub(crate) async fn call(
    client: &HttpClient,
    via: SocketAddr,
    method: http::Method,
    service: &str,
    path: &str,
) -> Result<(u16, String), String> {
    let req = http::Request::builder()
        .method(method)
        .uri(format!("http://{via}{path}"))
        .header("host", format!("{service}.bookinfo:9080"))
        .body(Full::new(Bytes::new()))
        .map_err(|e| e.to_string())?;
    send(client, req).await
}

/// Sends `req`; the status and the body as text.
pub(crate) async fn send(
    client: &HttpClient,
    req: http::Request<Full<Bytes>>,
) -> Result<(u16, String), String> {
    let resp = client.request(req).await.map_err(|e| e.to_string())?;
    let status = resp.status().as_u16();
    let body = resp
        .into_body()
        .collect()
        .await
        .map_err(|e| e.to_string())?
        .to_bytes();
    Ok((status, String::from_utf8_lossy(&body).into_owned()))
}

async fn serve(
    name: &'static str,
    req: http::Request<Incoming>,
    client: HttpClient,
    via: Option<SocketAddr>,
) -> http::Response<Full<Bytes>> {
    let seen = caller(req.headers());
    let me = format!("{name} (caller {seen})");
    match name {
        "productpage" => {
            let Some(via) = via else {
                return text(503, "productpage: sidecar not ready".to_owned());
            };
            let details = call(&client, via, http::Method::GET, "details", "/details/0").await;
            let reviews = call(&client, via, http::Method::GET, "reviews", "/reviews/0").await;
            match (details, reviews) {
                (Ok((200, d)), Ok((200, r))) => text(200, format!("{me}\n  {d}\n  {r}")),
                (d, r) => text(502, format!("{me}: details {d:?}, reviews {r:?}")),
            }
        }
        "reviews" => {
            let Some(via) = via else {
                return text(503, "reviews: sidecar not ready".to_owned());
            };
            match call(&client, via, http::Method::GET, "ratings", "/ratings/0").await {
                Ok((200, r)) => text(
                    200,
                    format!("{me}: 'An extremely entertaining play' \n    {r}"),
                ),
                other => text(502, format!("{me}: ratings {other:?}")),
            }
        }
        "details" => text(200, format!("{me}: The Comedy of Errors, 1595, 200 pages")),
        "ratings" => text(200, format!("{me}: 5 stars")),
        _ => text(404, format!("{name}: no such page")),
    }
}
