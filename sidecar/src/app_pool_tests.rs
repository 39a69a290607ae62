use std::sync::atomic::{AtomicUsize, Ordering};

use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

use super::*;
use crate::body::text;

/// An HTTP/1.1 application on loopback answering `GET /n` with `n` bytes
/// (keep-alive); counts the connections it accepted. `/close` answers
/// with `Connection: close`.
async fn app() -> (SocketAddr, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let accepted = Arc::new(AtomicUsize::new(0));
    let count = accepted.clone();
    tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                return;
            };
            count.fetch_add(1, Ordering::SeqCst);
            let service = hyper::service::service_fn(|req: http::Request<Incoming>| async move {
                let path = req.uri().path().to_owned();
                let mut resp = match path.trim_start_matches('/').parse::<usize>() {
                    Ok(n) => http::Response::new(text(vec![b'x'; n])),
                    Err(_) => http::Response::new(text("ok")),
                };
                if path == "/close" {
                    resp.headers_mut()
                        .insert(http::header::CONNECTION, "close".parse().unwrap());
                }
                Ok::<_, std::convert::Infallible>(resp)
            });
            tokio::spawn(
                hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(tcp), service),
            );
        }
    });
    (addr, accepted)
}

fn get(path: &str) -> http::Request<ProxyBody> {
    http::Request::builder()
        .uri(path)
        .header(http::header::HOST, "app")
        .body(text(""))
        .unwrap()
}

fn pool() -> Arc<AppPool> {
    pool_with(Duration::from_secs(90), 8)
}

/// A pool with a 5 s connect timeout.
fn pool_with(idle_timeout: Duration, max_idle: usize) -> Arc<AppPool> {
    Arc::new(AppPool::new(Duration::from_secs(5), idle_timeout, max_idle))
}

async fn body_len(resp: http::Response<PoolBody>) -> usize {
    resp.into_body().collect().await.unwrap().to_bytes().len()
}

#[tokio::test]
async fn sequential_requests_share_one_connection() {
    let (addr, accepted) = app().await;
    let pool = pool();
    for n in [0, 5, 70_000, 3] {
        let resp = pool.send(addr, get(&format!("/{n}"))).await.unwrap();
        assert_eq!(body_len(resp).await, n);
    }
    assert_eq!(accepted.load(Ordering::SeqCst), 1);
    assert_eq!(pool.idle(), 1);
}

#[tokio::test]
async fn a_response_still_being_read_keeps_its_connection_busy() {
    let (addr, accepted) = app().await;
    let pool = pool();
    let first = pool.send(addr, get("/100000")).await.unwrap();
    // The first body is not read yet: the second request needs another
    // connection.
    let second = pool.send(addr, get("/10")).await.unwrap();
    assert_eq!(accepted.load(Ordering::SeqCst), 2);
    assert_eq!(body_len(second).await, 10);
    assert_eq!(body_len(first).await, 100_000);
    assert_eq!(pool.idle(), 2);
}

#[tokio::test]
async fn a_body_dropped_half_read_closes_its_connection() {
    let (addr, accepted) = app().await;
    let pool = pool();
    let resp = pool.send(addr, get("/1000000")).await.unwrap();
    let mut body = resp.into_body();
    let first = body.frame().await.unwrap().unwrap();
    assert!(first.is_data());
    drop(body);
    assert_eq!(pool.idle(), 0);
    let resp = pool.send(addr, get("/7")).await.unwrap();
    assert_eq!(body_len(resp).await, 7);
    assert_eq!(accepted.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn a_connection_the_application_closes_is_not_reused() {
    let (addr, accepted) = app().await;
    let pool = pool();
    let resp = pool.send(addr, get("/close")).await.unwrap();
    assert_eq!(resp.headers()[http::header::CONNECTION], "close");
    assert_eq!(body_len(resp).await, 2);
    // Whether or not it was kept for a moment, the next request gets a
    // working connection.
    let resp = pool.send(addr, get("/4")).await.unwrap();
    assert_eq!(body_len(resp).await, 4);
    assert_eq!(accepted.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn an_idle_connection_closed_by_the_application_is_skipped() {
    // A raw application that answers one request, then closes its side
    // while the pool holds the connection idle.
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let served = Arc::new(AtomicUsize::new(0));
    let count = served.clone();
    tokio::spawn(async move {
        loop {
            let Ok((mut tcp, _)) = listener.accept().await else {
                return;
            };
            let count = count.clone();
            tokio::spawn(async move {
                let mut buf = vec![0u8; 4096];
                let mut head = Vec::new();
                while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                    let n = tcp.read(&mut buf).await.unwrap_or(0);
                    if n == 0 {
                        return;
                    }
                    head.extend_from_slice(&buf[..n]);
                }
                count.fetch_add(1, Ordering::SeqCst);
                let _ = tcp
                    .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok")
                    .await;
                // Keep-alive by the headers, closed in fact.
                tokio::time::sleep(Duration::from_millis(20)).await;
            });
        }
    });
    let pool = pool();
    let resp = pool.send(addr, get("/")).await.unwrap();
    assert_eq!(body_len(resp).await, 2);
    assert_eq!(pool.idle(), 1);
    tokio::time::sleep(Duration::from_millis(200)).await;
    let resp = pool.send(addr, get("/")).await.unwrap();
    assert_eq!(body_len(resp).await, 2);
    assert_eq!(served.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn nothing_listening_is_a_connect_error_naming_the_address() {
    let addr = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap()
    };
    let err = pool().send(addr, get("/")).await.unwrap_err();
    assert!(matches!(err, AppError::Connect { .. }), "{err:?}");
    assert!(err.to_string().contains(&addr.to_string()), "{err}");
}

#[tokio::test(start_paused = true)]
async fn idle_connections_past_the_timeout_are_closed_not_reused() {
    let (addr, accepted) = app().await;
    let pool = pool_with(Duration::from_secs(10), 8);
    let resp = pool.send(addr, get("/1")).await.unwrap();
    assert_eq!(body_len(resp).await, 1);
    assert_eq!(pool.idle(), 1);
    tokio::time::sleep(Duration::from_secs(11)).await;
    pool.prune();
    assert_eq!(pool.idle(), 0);
    let resp = pool.send(addr, get("/1")).await.unwrap();
    assert_eq!(body_len(resp).await, 1);
    assert_eq!(accepted.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn at_most_max_idle_connections_are_kept() {
    let (addr, _) = app().await;
    let pool = pool_with(Duration::from_secs(90), 2);
    let mut open = Vec::new();
    for _ in 0..4 {
        open.push(pool.send(addr, get("/3")).await.unwrap());
    }
    for resp in open {
        assert_eq!(body_len(resp).await, 3);
    }
    assert_eq!(pool.idle(), 2);
}
