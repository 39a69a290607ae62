use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};

use http_body_util::{BodyExt, StreamBody};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

use super::*;
use crate::body::{boxed, text};
use crate::h1::{Decoded, parse_head};
use http::HeaderValue;

const MAX: usize = 16 * 1024;

fn parse(bytes: &[u8]) -> Result<Option<Parsed>, HeadError> {
    parse_request(&mut BytesMut::from(bytes), MAX)
}

fn request(bytes: &[u8]) -> RequestHead {
    match parse(bytes) {
        Ok(Some(Parsed::Request(head))) => head,
        other => panic!("{}: {other:?}", String::from_utf8_lossy(bytes)),
    }
}

fn refused(bytes: &[u8]) -> HeadError {
    match parse(bytes) {
        Err(e) => e,
        other => panic!("{}: {other:?}", String::from_utf8_lossy(bytes)),
    }
}

#[test]
fn a_partial_head_is_left_in_place_and_a_whole_one_is_consumed() {
    let whole =
        b"\r\nPOST /a?b=c HTTP/1.1\r\nHost: x\r\nX-A: 1\r\nx-a: 2\r\nContent-Length: 2\r\n\r\nok";
    for cut in 0..whole.len() - 2 {
        let mut buf = BytesMut::from(&whole[..cut]);
        assert!(
            parse_request(&mut buf, MAX).unwrap().is_none(),
            "cut at {cut}"
        );
        assert_eq!(buf.len(), cut);
    }
    let mut buf = BytesMut::from(&whole[..]);
    let Some(Parsed::Request(head)) = parse_request(&mut buf, MAX).unwrap() else {
        panic!("no request");
    };
    assert_eq!(&buf[..], b"ok");
    let req = &head.request;
    assert_eq!(req.method(), Method::POST);
    assert_eq!(req.uri(), "/a?b=c");
    assert_eq!(req.version(), Version::HTTP_11);
    let values: Vec<_> = req.headers().get_all("x-a").iter().collect();
    assert_eq!(values, ["1", "2"]);
    assert_eq!(head.framing, Framing::Length(2));
    assert!(head.keep_alive);
    assert!(!head.expect_continue);
    assert!(!head.trailers);
}

#[test]
fn absolute_and_asterisk_targets_parse() {
    let head = request(b"GET http://reviews.bookinfo:9080/r HTTP/1.1\r\n\r\n");
    assert_eq!(
        head.request.uri().authority().unwrap().as_str(),
        "reviews.bookinfo:9080"
    );
    assert_eq!(head.request.uri().path(), "/r");
    let head = request(b"OPTIONS * HTTP/1.1\r\nHost: x\r\n\r\n");
    assert_eq!(head.request.uri(), "*");
}

#[test]
fn body_framing_follows_rfc_9112_and_refuses_what_could_be_read_two_ways() {
    let chunked = request(b"POST / HTTP/1.1\r\nTransfer-Encoding: gzip, chunked\r\n\r\n");
    assert_eq!(chunked.framing, Framing::Chunked);
    assert_eq!(request(b"GET / HTTP/1.1\r\n\r\n").framing, Framing::Empty);
    let zero = request(b"POST / HTTP/1.1\r\nContent-Length: 0\r\n\r\n");
    assert_eq!(zero.framing, Framing::Empty);
    let repeated = request(b"POST / HTTP/1.1\r\nContent-Length: 5, 5\r\nContent-Length: 5\r\n\r\n");
    assert_eq!(repeated.framing, Framing::Length(5));
    for wire in [
        &b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n"[..],
        b"POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n",
        b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked, gzip\r\n\r\n",
        b"POST / HTTP/1.1\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\n",
        b"POST / HTTP/1.1\r\nContent-Length: -3\r\n\r\n",
        b"POST / HTTP/1.1\r\nContent-Length: 99999999999999999999\r\n\r\n",
    ] {
        let e = refused(wire);
        assert_eq!(e.status(), 400, "{}", String::from_utf8_lossy(wire));
    }
}

#[test]
fn keep_alive_expect_and_te_are_read_from_the_head() {
    assert!(!request(b"GET / HTTP/1.1\r\nConnection: x, Close\r\n\r\n").keep_alive);
    assert!(!request(b"GET / HTTP/1.0\r\n\r\n").keep_alive);
    let old = request(b"GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n");
    assert!(old.keep_alive);
    // Noted, not kept: the handler would only remove the hop-by-hop field.
    assert!(old.request.headers().get("connection").is_none());
    let listed = request(b"GET / HTTP/1.0\r\nConnection: x, keep-alive\r\n\r\n");
    assert!(listed.keep_alive);
    assert_eq!(listed.request.headers()["connection"], "x, keep-alive");
    for both in [
        &b"GET / HTTP/1.0\r\nConnection: keep-alive\r\nConnection: close\r\n\r\n"[..],
        b"GET / HTTP/1.1\r\nConnection: keep-alive\r\nConnection: close\r\n\r\n",
    ] {
        assert!(
            !request(both).keep_alive,
            "{}",
            String::from_utf8_lossy(both)
        );
    }
    assert_eq!(old.request.version(), Version::HTTP_10);
    let expect = request(
        b"PUT / HTTP/1.1\r\nExpect: 100-Continue\r\nTE: trailers;q=1\r\nContent-Length: 1\r\n\r\n",
    );
    assert!(expect.expect_continue);
    assert!(expect.trailers);
    assert!(!expect.request.headers().contains_key(header::EXPECT));
    // HTTP/1.0 clients do not know 100 Continue.
    let old = request(b"PUT / HTTP/1.0\r\nExpect: 100-continue\r\nContent-Length: 1\r\n\r\n");
    assert!(!old.expect_continue);
}

#[test]
fn oversized_and_malformed_heads_are_refused() {
    let long = format!("GET / HTTP/1.1\r\nx: {}\r\n", "a".repeat(MAX));
    assert_eq!(refused(long.as_bytes()), HeadError::TooLarge);
    let whole = format!("{long}\r\n");
    assert_eq!(refused(whole.as_bytes()), HeadError::TooLarge);
    let many: String = (0..=MAX_HEADERS).map(|i| format!("h{i}: v\r\n")).collect();
    let many = format!("GET / HTTP/1.1\r\n{many}\r\n");
    assert_eq!(refused(many.as_bytes()).status(), 431);
    for wire in [
        &b"GET / HTTP/2.0\r\n\r\n"[..],
        b"GET /\r\n\r\n",
        b"G@T / HTTP/1.1\r\n\r\n",
        b"GET / HTTP/1.1\r\nbad name: v\r\n\r\n",
        b"GET / HTTP/1.1\r\nx: a\x00b\r\n\r\n",
        b"GET http://[::1 HTTP/1.1\r\n\r\n",
    ] {
        assert_eq!(
            refused(wire).status(),
            400,
            "{}",
            String::from_utf8_lossy(wire)
        );
    }
}

#[test]
fn connect_is_left_in_the_buffer() {
    let wire = b"CONNECT reviews.bookinfo:9080 HTTP/1.1\r\n\r\n";
    let mut buf = BytesMut::from(&wire[..]);
    assert!(matches!(
        parse_request(&mut buf, MAX),
        Ok(Some(Parsed::Connect))
    ));
    assert_eq!(&buf[..], wire);
}

/// What the test handler saw of each request, in order.
type Seen = Arc<Mutex<Vec<String>>>;

/// Serves one connection with a handler that answers with what it saw:
/// method, target, version, body and trailers, in the body, and with
/// `x-seen-*` fields. Paths pick other answers:
/// - `/stream`: a body of unknown length with a trailer;
/// - `/unread`: answers without reading the request body;
/// - `/short`: declares 10 bytes and sends 2;
/// - `/nocontent`: 204;
/// - `/hang`: never answers (and notes in `dropped` when it is dropped).
async fn server(limits: ServerLimits) -> (SocketAddr, JoinHandle<Served>, Seen, Arc<AtomicBool>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let seen: Seen = Arc::default();
    let dropped = Arc::new(AtomicBool::new(false));
    let task = tokio::spawn({
        let seen = seen.clone();
        let dropped = dropped.clone();
        async move {
            let (tcp, _) = listener.accept().await.unwrap();
            serve(tcp, b"", limits, move |req| {
                let seen = seen.clone();
                let dropped = dropped.clone();
                answer(req, seen, dropped)
            })
            .await
        }
    });
    (addr, task, seen, dropped)
}

struct NoteDrop(Arc<AtomicBool>);

impl Drop for NoteDrop {
    fn drop(&mut self) {
        self.0.store(true, Ordering::SeqCst);
    }
}

async fn answer(
    req: http::Request<RequestBody>,
    seen: Seen,
    dropped: Arc<AtomicBool>,
) -> http::Response<ProxyBody> {
    let (parts, body) = req.into_parts();
    let path = parts.uri.path().to_owned();
    let line = format!(
        "{} {} {:?} expect={}",
        parts.method,
        parts.uri,
        parts.version,
        parts.headers.contains_key(header::EXPECT)
    );
    seen.lock().unwrap().push(line.clone());
    match path.as_str() {
        "/hang" => {
            let _note = NoteDrop(dropped);
            std::future::pending::<()>().await;
            unreachable!()
        }
        "/unread" => return http::Response::new(text("not read")),
        "/short" => {
            let mut resp = http::Response::new(text("ab"));
            resp.headers_mut()
                .insert(header::CONTENT_LENGTH, HeaderValue::from_static("10"));
            return resp;
        }
        "/nocontent" => {
            let mut resp = http::Response::new(text(""));
            *resp.status_mut() = StatusCode::NO_CONTENT;
            return resp;
        }
        "/stream" => {
            let frames = vec![
                Ok::<_, std::convert::Infallible>(Frame::data(Bytes::from_static(b"str"))),
                Ok(Frame::data(Bytes::from_static(b"eam"))),
                Ok(Frame::trailers(HeaderMap::from_iter([(
                    HeaderName::from_static("grpc-status"),
                    HeaderValue::from_static("0"),
                )]))),
            ];
            let mut resp =
                http::Response::new(boxed(StreamBody::new(futures_util::stream::iter(frames))));
            resp.headers_mut().insert(
                header::DATE,
                HeaderValue::from_static("Mon, 07 Dec 2026 00:00:00 GMT"),
            );
            return resp;
        }
        _ => {}
    }
    let (data, trailers) = match body.collect().await {
        Ok(c) => {
            let trailers = c.trailers().map(|t| format!("{t:?}"));
            (c.to_bytes(), trailers)
        }
        Err(e) => {
            seen.lock().unwrap().push(format!("body error: {e}"));
            return http::Response::new(text("body failed"));
        }
    };
    let text_body = format!(
        "{line} body={} trailers={}",
        String::from_utf8_lossy(&data),
        trailers.unwrap_or_default()
    );
    let mut resp = http::Response::new(text(""));
    // As an answer to HEAD arrives from elsewhere: the length a GET
    // would get, and no body.
    if parts.method == Method::HEAD {
        let n = HeaderValue::from(text_body.len());
        resp.headers_mut().insert(header::CONTENT_LENGTH, n);
    } else {
        *resp.body_mut() = text(text_body);
    }
    resp
}

fn limits() -> ServerLimits {
    ServerLimits {
        max_head_bytes: MAX,
        header_read_timeout: Duration::from_secs(5),
    }
}

/// Reads one response (to a request with `method`) from `tcp`: head,
/// body, trailers. `None` when the connection closed before a head.
async fn response(
    tcp: &mut TcpStream,
    buf: &mut BytesMut,
    method: &Method,
) -> Option<(http::Response<()>, Vec<u8>, Option<HeaderMap>)> {
    let mut head = loop {
        if let Some(h) = parse_head(buf).unwrap() {
            if h.response.status().is_informational() {
                continue;
            }
            break h;
        }
        if tcp.read_buf(buf).await.unwrap() == 0 {
            return None;
        }
    };
    // The parser notes a lone `Connection: keep-alive` rather than keep
    // it; these tests check what the server sent.
    if head.present.keep_alive {
        head.response.headers_mut().append(
            http::header::CONNECTION,
            http::HeaderValue::from_static("keep-alive"),
        );
    }
    let mut decoder = Decoder::new(head.framing(method).unwrap());
    let mut body = Vec::new();
    loop {
        let decoded = match decoder.decode(buf).unwrap() {
            Some(d) => d,
            None => {
                if tcp.read_buf(buf).await.unwrap() == 0 {
                    decoder.at_eof().unwrap()
                } else {
                    continue;
                }
            }
        };
        match decoded {
            Decoded::Data(d) => body.extend_from_slice(&d),
            Decoded::Trailers(t) => return Some((head.response, body, Some(t))),
            Decoded::End => return Some((head.response, body, None)),
        }
    }
}

async fn closed(tcp: &mut TcpStream) -> bool {
    let mut rest = Vec::new();
    matches!(tcp.read_to_end(&mut rest).await, Ok(0))
}

#[tokio::test]
async fn requests_of_every_framing_share_one_connection() {
    let (addr, task, _, _) = server(limits()).await;
    let mut tcp = TcpStream::connect(addr).await.unwrap();
    let mut buf = BytesMut::new();
    let get = Method::GET;
    tcp.write_all(b"GET /one HTTP/1.1\r\nHost: a\r\n\r\n")
        .await
        .unwrap();
    let (resp, body, _) = response(&mut tcp, &mut buf, &get).await.unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(
        resp.headers()["content-length"],
        body.len().to_string().as_str()
    );
    assert!(resp.headers().contains_key(header::DATE));
    assert_eq!(
        String::from_utf8(body).unwrap(),
        "GET /one HTTP/1.1 expect=false body= trailers="
    );
    tcp.write_all(b"POST /two HTTP/1.1\r\nContent-Length: 5\r\n\r\nhello")
        .await
        .unwrap();
    let (_, body, _) = response(&mut tcp, &mut buf, &get).await.unwrap();
    assert!(
        String::from_utf8(body)
            .unwrap()
            .ends_with("body=hello trailers=")
    );
    tcp.write_all(
        b"PUT /three HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n3;x=y\r\nabc\r\n2\r\nde\r\n0\r\nx-t: 1\r\n\r\n",
    )
    .await
    .unwrap();
    let (_, body, _) = response(&mut tcp, &mut buf, &get).await.unwrap();
    let body = String::from_utf8(body).unwrap();
    assert!(body.contains("body=abcde"), "{body}");
    assert!(body.contains("\"x-t\": \"1\""), "{body}");
    tcp.write_all(b"HEAD /four HTTP/1.1\r\n\r\n").await.unwrap();
    let (resp, body, _) = response(&mut tcp, &mut buf, &Method::HEAD).await.unwrap();
    assert!(body.is_empty());
    assert_eq!(resp.headers()["content-length"], "48");
    tcp.write_all(b"GET /nocontent HTTP/1.1\r\n\r\n")
        .await
        .unwrap();
    let (resp, _, _) = response(&mut tcp, &mut buf, &get).await.unwrap();
    assert_eq!(resp.status(), 204);
    assert!(!resp.headers().contains_key(header::CONTENT_LENGTH));
    assert!(buf.is_empty());
    drop(tcp);
    assert!(matches!(task.await.unwrap(), Served::Closed));
}

#[tokio::test]
async fn pipelined_requests_are_answered_in_order() {
    let (addr, _task, _, _) = server(limits()).await;
    let mut tcp = TcpStream::connect(addr).await.unwrap();
    tcp.write_all(
        b"GET /1 HTTP/1.1\r\n\r\nPOST /2 HTTP/1.1\r\nContent-Length: 1\r\n\r\nxGET /3 HTTP/1.1\r\nConnection: close\r\n\r\n",
    )
    .await
    .unwrap();
    let mut buf = BytesMut::new();
    for (i, want) in ["GET /1 ", "POST /2 ", "GET /3 "].iter().enumerate() {
        let (resp, body, _) = response(&mut tcp, &mut buf, &Method::GET).await.unwrap();
        let body = String::from_utf8(body).unwrap();
        assert!(body.starts_with(want), "{i}: {body}");
        assert_eq!(resp.headers().contains_key(header::CONNECTION), i == 2);
    }
    assert!(closed(&mut tcp).await);
}

#[tokio::test]
async fn a_body_of_unknown_length_is_chunked_with_trailers_only_when_asked_for() {
    let (addr, _task, _, _) = server(limits()).await;
    let mut tcp = TcpStream::connect(addr).await.unwrap();
    let mut buf = BytesMut::new();
    tcp.write_all(b"GET /stream HTTP/1.1\r\n\r\n")
        .await
        .unwrap();
    let (resp, body, trailers) = response(&mut tcp, &mut buf, &Method::GET).await.unwrap();
    assert_eq!(resp.headers()["transfer-encoding"], "chunked");
    assert_eq!(resp.headers().get_all(header::DATE).iter().count(), 1);
    assert_eq!(body, b"stream");
    assert!(trailers.is_none());
    tcp.write_all(b"GET /stream HTTP/1.1\r\nTE: trailers\r\n\r\n")
        .await
        .unwrap();
    let (_, body, trailers) = response(&mut tcp, &mut buf, &Method::GET).await.unwrap();
    assert_eq!(body, b"stream");
    assert_eq!(trailers.unwrap()["grpc-status"], "0");
}

#[tokio::test]
async fn http_1_0_gets_1_0_answers_and_keep_alive_only_when_it_asks() {
    let (addr, _task, _, _) = server(limits()).await;
    let mut tcp = TcpStream::connect(addr).await.unwrap();
    let mut buf = BytesMut::new();
    tcp.write_all(b"GET /a HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
        .await
        .unwrap();
    let (resp, _, _) = response(&mut tcp, &mut buf, &Method::GET).await.unwrap();
    assert_eq!(resp.version(), Version::HTTP_10);
    assert_eq!(resp.headers()["connection"], "keep-alive");
    // Unknown length to an HTTP/1.0 client: the close ends the body.
    tcp.write_all(b"GET /stream HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
        .await
        .unwrap();
    let mut rest = Vec::new();
    tcp.read_to_end(&mut rest).await.unwrap();
    let rest = String::from_utf8(rest).unwrap();
    assert!(rest.starts_with("HTTP/1.0 200 OK\r\n"), "{rest}");
    assert!(!rest.contains("content-length") && !rest.contains("transfer-encoding"));
    assert!(rest.ends_with("\r\n\r\nstream"), "{rest}");

    let (addr, _task, _, _) = server(limits()).await;
    let mut tcp = TcpStream::connect(addr).await.unwrap();
    tcp.write_all(b"GET /b HTTP/1.0\r\n\r\n").await.unwrap();
    let mut out = String::new();
    tcp.read_to_string(&mut out).await.unwrap();
    assert!(out.starts_with("HTTP/1.0 200 OK\r\n"), "{out}");
    assert!(
        out.ends_with("GET /b HTTP/1.0 expect=false body= trailers="),
        "{out}"
    );
}

#[tokio::test]
async fn expect_100_continue_is_answered_before_the_body_is_sent() {
    let (addr, _task, seen, _) = server(limits()).await;
    let mut tcp = TcpStream::connect(addr).await.unwrap();
    tcp.write_all(b"PUT /up HTTP/1.1\r\nExpect: 100-continue\r\nContent-Length: 4\r\n\r\n")
        .await
        .unwrap();
    let mut interim = [0u8; 25];
    tcp.read_exact(&mut interim).await.unwrap();
    assert_eq!(&interim, b"HTTP/1.1 100 Continue\r\n\r\n");
    tcp.write_all(b"data").await.unwrap();
    let mut buf = BytesMut::new();
    let (resp, body, _) = response(&mut tcp, &mut buf, &Method::PUT).await.unwrap();
    assert_eq!(resp.status(), 200);
    assert!(
        String::from_utf8(body)
            .unwrap()
            .ends_with("body=data trailers=")
    );
    assert_eq!(seen.lock().unwrap()[0], "PUT /up HTTP/1.1 expect=false");
}

#[tokio::test]
async fn refused_heads_are_answered_and_the_connection_closed() {
    for (wire, status) in [
        (
            format!("GET / HTTP/1.1\r\nx: {}\r\n\r\n", "a".repeat(MAX)),
            "431",
        ),
        ("GET / HTTP/1.1\r\nbad name: v\r\n\r\n".to_owned(), "400"),
        (
            "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\nContent-Length: 1\r\n\r\n".to_owned(),
            "400",
        ),
    ] {
        let (addr, task, seen, _) = server(limits()).await;
        let mut tcp = TcpStream::connect(addr).await.unwrap();
        let _ = tcp.write_all(wire.as_bytes()).await;
        let mut out = Vec::new();
        let _ = tcp.read_to_end(&mut out).await;
        let out = String::from_utf8_lossy(&out);
        assert!(out.starts_with(&format!("HTTP/1.1 {status} ")), "{out}");
        assert!(out.contains("connection: close"), "{out}");
        assert!(matches!(task.await.unwrap(), Served::Closed));
        assert!(seen.lock().unwrap().is_empty());
    }
}

#[tokio::test(start_paused = true)]
async fn a_head_trickled_past_the_deadline_is_cut_off_silently() {
    let limits = ServerLimits {
        max_head_bytes: MAX,
        header_read_timeout: Duration::from_millis(300),
    };
    let (addr, task, seen, _) = server(limits).await;
    let mut tcp = TcpStream::connect(addr).await.unwrap();
    // The first request comes in time; its deadline must not carry over.
    tcp.write_all(b"GET /in-time HTTP/1.1\r\n").await.unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    tcp.write_all(b"\r\n").await.unwrap();
    let mut buf = BytesMut::new();
    let (resp, _, _) = response(&mut tcp, &mut buf, &Method::GET).await.unwrap();
    assert_eq!(resp.status(), 200);
    tokio::time::sleep(Duration::from_millis(200)).await;
    tcp.write_all(b"GET /slow HTTP/1.1\r\n").await.unwrap();
    for _ in 0..10 {
        if tcp.write_all(b"a").await.is_err() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(closed(&mut tcp).await, "slow client still connected");
    assert!(matches!(task.await.unwrap(), Served::Closed));
    assert_eq!(seen.lock().unwrap().len(), 1);
}

#[tokio::test(start_paused = true)]
async fn an_idle_connection_is_closed_at_the_header_deadline() {
    let limits = ServerLimits {
        max_head_bytes: MAX,
        header_read_timeout: Duration::from_secs(2),
    };
    let (addr, task, _, _) = server(limits).await;
    let mut tcp = TcpStream::connect(addr).await.unwrap();
    assert!(closed(&mut tcp).await);
    assert!(matches!(task.await.unwrap(), Served::Closed));
}

#[tokio::test]
async fn a_client_that_leaves_cancels_its_request() {
    let (addr, task, seen, dropped) = server(limits()).await;
    let mut tcp = TcpStream::connect(addr).await.unwrap();
    tcp.write_all(b"GET /hang HTTP/1.1\r\n\r\n").await.unwrap();
    while seen.lock().unwrap().is_empty() {
        tokio::task::yield_now().await;
    }
    drop(tcp);
    assert!(matches!(task.await.unwrap(), Served::Closed));
    assert!(
        dropped.load(Ordering::SeqCst),
        "the handler's future lives on"
    );
}

#[tokio::test]
async fn an_unread_or_cut_body_ends_the_connection_after_its_answer() {
    let (addr, _task, _, _) = server(limits()).await;
    let mut tcp = TcpStream::connect(addr).await.unwrap();
    tcp.write_all(b"POST /unread HTTP/1.1\r\nContent-Length: 100\r\n\r\npart")
        .await
        .unwrap();
    let mut buf = BytesMut::new();
    let (_, body, _) = response(&mut tcp, &mut buf, &Method::POST).await.unwrap();
    assert_eq!(body, b"not read");
    assert!(closed(&mut tcp).await);

    let (addr, task, seen, _) = server(limits()).await;
    let mut tcp = TcpStream::connect(addr).await.unwrap();
    tcp.write_all(b"POST /cut HTTP/1.1\r\nContent-Length: 100\r\n\r\npart")
        .await
        .unwrap();
    tcp.shutdown().await.unwrap();
    let (_, body, _) = response(&mut tcp, &mut BytesMut::new(), &Method::POST)
        .await
        .unwrap();
    assert_eq!(body, b"body failed");
    assert!(matches!(task.await.unwrap(), Served::Closed));
    let seen = seen.lock().unwrap();
    assert!(seen[1].contains("closed the connection"), "{seen:?}");
}

#[tokio::test]
async fn a_response_shorter_than_its_length_closes_the_connection() {
    let (addr, task, _, _) = server(limits()).await;
    let mut tcp = TcpStream::connect(addr).await.unwrap();
    tcp.write_all(b"GET /short HTTP/1.1\r\n\r\n").await.unwrap();
    let mut out = Vec::new();
    tcp.read_to_end(&mut out).await.unwrap();
    let out = String::from_utf8(out).unwrap();
    assert!(out.contains("content-length: 10\r\n"), "{out}");
    assert!(out.ends_with("\r\n\r\nab"), "{out}");
    assert!(matches!(task.await.unwrap(), Served::Closed));
}

#[tokio::test]
async fn connect_and_the_http2_preface_are_handed_back_with_their_bytes() {
    for wire in [
        &b"CONNECT svc.ns:80 HTTP/1.1\r\nHost: svc.ns:80\r\n\r\n"[..],
        b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00",
    ] {
        let (addr, task, seen, _) = server(limits()).await;
        let mut tcp = TcpStream::connect(addr).await.unwrap();
        // In two writes: a part of the preface alone decides nothing.
        tcp.write_all(&wire[..3]).await.unwrap();
        tokio::time::sleep(Duration::from_millis(20)).await;
        tcp.write_all(&wire[3..]).await.unwrap();
        let Served::Handoff(io, read) = task.await.unwrap() else {
            panic!("not handed back");
        };
        assert_eq!(&read[..], wire);
        assert!(seen.lock().unwrap().is_empty());
        // The connection still works.
        let mut io = io;
        io.write_all(b"x").await.unwrap();
        let mut one = [0u8; 1];
        tcp.read_exact(&mut one).await.unwrap();
        assert_eq!(&one, b"x");
    }
}

#[tokio::test]
async fn a_preface_after_a_request_is_not_http2() {
    let (addr, _task, _, _) = server(limits()).await;
    let mut tcp = TcpStream::connect(addr).await.unwrap();
    let mut buf = BytesMut::new();
    tcp.write_all(b"GET / HTTP/1.1\r\n\r\n").await.unwrap();
    response(&mut tcp, &mut buf, &Method::GET).await.unwrap();
    tcp.write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n")
        .await
        .unwrap();
    let mut out = String::new();
    tcp.read_to_string(&mut out).await.unwrap();
    assert!(out.starts_with("HTTP/1.1 400 "), "{out}");
}
