use std::net::SocketAddr;

use http_body_util::{BodyExt, StreamBody};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

use super::*;
use crate::body::{boxed, text};

fn head_of(bytes: &[u8]) -> Result<Option<Head>, H1Error> {
    parse_head(&mut BytesMut::from(bytes))
}

fn framing_of(bytes: &[u8], method: Method) -> Result<(Framing, Head), H1Error> {
    let mut head = head_of(bytes)?.expect("complete head");
    let framing = head.framing(&method)?;
    Ok((framing, head))
}

/// A body's data, its trailers and what was left unread after it.
type DecodedBody = (Vec<u8>, Option<HeaderMap>, Vec<u8>);

/// Feeds `wire` to a decoder `step` bytes at a time; the body's data, its
/// trailers and what was left unread.
fn decode_in_steps(framing: Framing, wire: &[u8], step: usize) -> Result<DecodedBody, H1Error> {
    let mut decoder = Decoder::new(framing);
    let mut buf = BytesMut::new();
    let mut fed = 0;
    let mut data = Vec::new();
    loop {
        match decoder.decode(&mut buf)? {
            Some(Decoded::Data(d)) => data.extend_from_slice(&d),
            Some(Decoded::Trailers(t)) => return Ok((data, Some(t), buf.to_vec())),
            Some(Decoded::End) => return Ok((data, None, buf.to_vec())),
            None if fed == wire.len() => {
                return match decoder.at_eof()? {
                    Decoded::End => Ok((data, None, Vec::new())),
                    other => panic!("at_eof gave {other:?}"),
                };
            }
            None => {
                let next = (fed + step).min(wire.len());
                buf.extend_from_slice(&wire[fed..next]);
                fed = next;
            }
        }
    }
}

#[test]
fn a_partial_head_is_left_in_place_and_a_whole_one_is_consumed() {
    let whole = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nX-A: 1\r\nx-a: 2\r\n\r\nok";
    for cut in 0..whole.len() - 2 {
        let mut buf = BytesMut::from(&whole[..cut]);
        assert!(parse_head(&mut buf).unwrap().is_none(), "cut at {cut}");
        assert_eq!(buf.len(), cut);
    }
    let mut buf = BytesMut::from(&whole[..]);
    let head = parse_head(&mut buf).unwrap().unwrap();
    assert_eq!(&buf[..], b"ok");
    assert_eq!(head.response.status(), StatusCode::OK);
    assert_eq!(head.response.version(), Version::HTTP_11);
    let values: Vec<_> = head.response.headers().get_all("x-a").iter().collect();
    assert_eq!(values, ["1", "2"]);
    assert!(head.keep_alive);
}

#[test]
fn connection_close_and_http_1_0_end_the_connection() {
    for wire in [
        &b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n"[..],
        b"HTTP/1.1 200 OK\r\nConnection: foo, Close\r\n\r\n",
        b"HTTP/1.0 200 OK\r\nContent-Length: 0\r\n\r\n",
    ] {
        let head = head_of(wire).unwrap().unwrap();
        assert!(!head.keep_alive, "{}", String::from_utf8_lossy(wire));
    }
    let head = head_of(b"HTTP/1.1 200 OK\r\nConnection: keep-alive\r\n\r\n").unwrap();
    let head = head.unwrap();
    assert!(head.keep_alive);
    // A lone keep-alive is noted, not kept: a proxy would only remove it.
    assert!(head.response.headers().is_empty());
    // Any other `Connection` stays for the proxy to act on, with what it names.
    let wire =
        b"HTTP/1.1 200 OK\r\nConnection: keep-alive\r\nConnection: x-hop\r\nx-hop: 1\r\n\r\n";
    let head = head_of(wire).unwrap().unwrap();
    assert!(head.keep_alive);
    let connection: Vec<_> = head
        .response
        .headers()
        .get_all("connection")
        .iter()
        .collect();
    assert_eq!(connection, ["x-hop"]);
    assert_eq!(head.response.headers()["x-hop"], "1");
}

#[test]
fn malformed_heads_are_errors() {
    let many: String = (0..=MAX_HEADERS).map(|i| format!("h{i}: v\r\n")).collect();
    let many = format!("HTTP/1.1 200 OK\r\n{many}\r\n");
    let huge = format!("HTTP/1.1 200 OK\r\nx: {}", "a".repeat(MAX_HEAD_BYTES));
    let huge_whole = format!("{huge}\r\n\r\n");
    for wire in [
        &b"HTTP/2 200 OK\r\n\r\n"[..],
        b"HTTP/1.1 2000 OK\r\n\r\n",
        b"HTTP/1.1 099 Low\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nbad name: v\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nx: a\x00b\r\n\r\n",
        b"SSH-2.0-OpenSSH\r\n\r\n",
        many.as_bytes(),
        huge.as_bytes(),
        huge_whole.as_bytes(),
    ] {
        let err = head_of(wire).unwrap_err();
        assert!(matches!(err, H1Error::Malformed(_)), "{err:?}");
    }
}

#[test]
fn bodies_are_framed_as_rfc_9112_section_6_3_says() {
    use Framing::*;
    let cases: [(&[u8], Method, Framing, bool); 10] = [
        (
            b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n",
            Method::HEAD,
            Empty,
            true,
        ),
        (b"HTTP/1.1 204 No Content\r\n\r\n", Method::GET, Empty, true),
        (
            b"HTTP/1.1 304 Not Modified\r\nContent-Length: 9\r\n\r\n",
            Method::GET,
            Empty,
            true,
        ),
        (
            b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n",
            Method::GET,
            Empty,
            true,
        ),
        (
            b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n",
            Method::GET,
            Length(5),
            true,
        ),
        (
            b"HTTP/1.1 200 OK\r\nContent-Length: 5, 5\r\nContent-Length: 5\r\n\r\n",
            Method::POST,
            Length(5),
            true,
        ),
        (
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n",
            Method::GET,
            Chunked,
            true,
        ),
        (
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, Chunked\r\n\r\n",
            Method::GET,
            Chunked,
            true,
        ),
        (
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked, gzip\r\n\r\n",
            Method::GET,
            Close,
            false,
        ),
        (b"HTTP/1.1 200 OK\r\n\r\n", Method::GET, Close, false),
    ];
    for (wire, method, want, keep) in cases {
        let (got, head) = framing_of(wire, method).unwrap();
        assert_eq!(got, want, "{}", String::from_utf8_lossy(wire));
        assert_eq!(head.keep_alive, keep, "{}", String::from_utf8_lossy(wire));
        if want == Chunked {
            assert!(!head.response.headers().contains_key("content-length"));
        }
    }
}

#[test]
fn invalid_or_conflicting_lengths_are_errors() {
    for cl in [
        "abc",
        "-1",
        "+5",
        "5 5",
        "",
        "5,6",
        "99999999999999999999",
        "0x10",
    ] {
        let wire = format!("HTTP/1.1 200 OK\r\nContent-Length: {cl}\r\n\r\n");
        let err = framing_of(wire.as_bytes(), Method::GET).unwrap_err();
        assert!(matches!(err, H1Error::Malformed(_)), "{cl:?}: {err:?}");
    }
    let two = b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n";
    assert!(framing_of(two, Method::GET).is_err());
}

const CHUNKED: &[u8] = b"5;name=value\r\nhello\r\n1\r\n \r\nA\r\n0123456789\r\n0\r\nGrpc-Status: 0\r\nx-t: y\r\n\r\nNEXT";

#[test]
fn chunked_bodies_decode_the_same_whatever_the_reads() {
    for step in [1, 2, 3, 7, 16, CHUNKED.len()] {
        let (data, trailers, rest) = decode_in_steps(Framing::Chunked, CHUNKED, step).unwrap();
        assert_eq!(data, b"hello 0123456789", "step {step}");
        let trailers = trailers.expect("trailers");
        assert_eq!(trailers["grpc-status"], "0");
        assert_eq!(trailers["x-t"], "y");
        // Bytes after the body are left for whoever reads next.
        assert!(b"NEXT".starts_with(&rest), "step {step}: {rest:?}");
    }
    let (data, trailers, rest) =
        decode_in_steps(Framing::Chunked, b"3\r\nabc\r\n0\r\n\r\n", 1).unwrap();
    assert_eq!(
        (data.as_slice(), trailers.is_none(), rest.len()),
        (&b"abc"[..], true, 0)
    );
}

#[test]
fn malformed_chunked_bodies_are_errors() {
    let long_line = format!("1;{}\r\na\r\n0\r\n\r\n", "e".repeat(MAX_CHUNK_LINE));
    for wire in [
        &b"\r\n"[..],
        b"g\r\nx\r\n0\r\n\r\n",
        b";ext\r\n",
        b"3\r\nabcX\r\n0\r\n\r\n",
        b"3\nabc\r\n0\r\n\r\n",
        b"11111111111111111\r\n",
        b"0\r\nbad trailer\r\n\r\n",
        long_line.as_bytes(),
    ] {
        let err = decode_in_steps(Framing::Chunked, wire, 64).unwrap_err();
        assert!(matches!(err, H1Error::Malformed(_)), "{wire:?}: {err:?}");
    }
}

#[test]
fn a_body_cut_short_by_the_close_is_an_error_and_a_close_delimited_one_ends() {
    for (framing, wire) in [
        (Framing::Length(10), &b"12345"[..]),
        (Framing::Chunked, b"5\r\nhel"),
        (Framing::Chunked, b"5\r\nhello\r\n"),
        (Framing::Chunked, b"0\r\nx-t: y\r\n"),
    ] {
        let err = decode_in_steps(framing, wire, 4).unwrap_err();
        assert!(matches!(err, H1Error::Closed(_)), "{wire:?}: {err:?}");
    }
    let (data, _, _) = decode_in_steps(Framing::Close, b"all of it", 2).unwrap();
    assert_eq!(data, b"all of it");
    let (data, _, rest) = decode_in_steps(Framing::Length(3), b"abcdef", 2).unwrap();
    assert_eq!((data.as_slice(), rest.as_slice()), (&b"abc"[..], &b"d"[..]));
}

/// A one-connection application: reads a request head (and as many body
/// bytes as `body_len`, if given), answers with each of `answers` in
/// turn, one per request. Hands back the raw requests it read.
async fn scripted(answers: Vec<Vec<u8>>) -> (SocketAddr, tokio::task::JoinHandle<Vec<Vec<u8>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let task = tokio::spawn(async move {
        let (mut tcp, _) = listener.accept().await.unwrap();
        let mut seen = Vec::new();
        let mut buf = Vec::new();
        for answer in answers {
            let mut chunk = [0u8; 4096];
            loop {
                if let Some(end) = request_end(&buf) {
                    seen.push(buf.drain(..end).collect());
                    break;
                }
                let n = tcp.read(&mut chunk).await.unwrap();
                if n == 0 {
                    return seen;
                }
                buf.extend_from_slice(&chunk[..n]);
            }
            tcp.write_all(&answer).await.unwrap();
        }
        seen
    });
    (addr, task)
}

/// Where the first request in `buf` ends, if it is all there (bodies
/// framed by Content-Length or chunked).
fn request_end(buf: &[u8]) -> Option<usize> {
    let head_end = buf.windows(4).position(|w| w == b"\r\n\r\n")? + 4;
    let head = String::from_utf8_lossy(&buf[..head_end]).to_ascii_lowercase();
    if let Some(cl) = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length: "))
    {
        let end = head_end + cl.trim().parse::<usize>().unwrap();
        return (buf.len() >= end).then_some(end);
    }
    if head.contains("transfer-encoding: chunked") {
        let body = &buf[head_end..];
        return body
            .windows(5)
            .position(|w| w == b"0\r\n\r\n")
            .filter(|&p| p == 0 || body[..p].ends_with(b"\r\n"))
            .map(|p| head_end + p + 5)
            .or_else(|| {
                // Trailers after the last chunk.
                let last = body.windows(5).position(|w| w == b"\r\n0\r\n")? + 5;
                let end = body[last..].windows(4).position(|w| w == b"\r\n\r\n")? + 4;
                Some(head_end + last + end)
            });
    }
    Some(head_end)
}

async fn connect(addr: SocketAddr) -> Conn {
    Conn::new(TcpStream::connect(addr).await.unwrap())
}

fn request(method: Method, body: ProxyBody) -> http::Request<ProxyBody> {
    let mut req = http::Request::new(body);
    *req.method_mut() = method;
    *req.uri_mut() = "/p?q=1".parse().unwrap();
    req.headers_mut().insert("host", "app".parse().unwrap());
    req
}

/// A body of `parts` that does not know its length, then `trailers`.
fn streamed(parts: &[&'static str], trailers: Option<HeaderMap>) -> ProxyBody {
    let mut frames: Vec<Result<Frame<Bytes>, std::convert::Infallible>> = parts
        .iter()
        .map(|p| Ok(Frame::data(Bytes::from_static(p.as_bytes()))))
        .collect();
    if let Some(t) = trailers {
        frames.push(Ok(Frame::trailers(t)));
    }
    boxed(StreamBody::new(futures_util::stream::iter(frames)))
}

async fn read_all(
    mut done: Exchanged,
) -> (http::Response<()>, Vec<u8>, Option<HeaderMap>, Option<Conn>) {
    let mut data = Vec::new();
    let mut trailers = None;
    while let Some(frame) = done.body.frame().await {
        let frame = frame.unwrap();
        match frame.into_data() {
            Ok(d) => data.extend_from_slice(&d),
            Err(f) => trailers = f.into_trailers().ok(),
        }
    }
    let conn = done.body.take_conn();
    (done.response, data, trailers, conn)
}

#[tokio::test]
async fn requests_are_framed_by_their_bodies_and_the_connection_is_reused() {
    let ok = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok".to_vec();
    let (addr, app) = scripted(vec![ok.clone(); 5]).await;
    let mut conn = connect(addr).await;
    let mut trailers = HeaderMap::new();
    trailers.insert("x-sum", "7".parse().unwrap());
    let mut declared = request(Method::PUT, streamed(&["ab", "c"], None));
    declared
        .headers_mut()
        .insert("content-length", "3".parse().unwrap());
    for req in [
        request(Method::GET, text("")),
        request(Method::POST, text("")),
        request(Method::POST, text("hello")),
        request(Method::POST, streamed(&["he", "llo"], Some(trailers))),
        declared,
    ] {
        let done = exchange(conn, req, false).await.unwrap();
        let (resp, data, _, back) = read_all(done).await;
        assert_eq!(
            (resp.status(), data.as_slice()),
            (StatusCode::OK, &b"ok"[..])
        );
        conn = back.expect("kept alive");
    }
    let seen: Vec<String> = app
        .await
        .unwrap()
        .iter()
        .map(|r| String::from_utf8_lossy(r).into_owned())
        .collect();
    assert_eq!(seen[0], "GET /p?q=1 HTTP/1.1\r\nhost: app\r\n\r\n");
    assert_eq!(
        seen[1],
        "POST /p?q=1 HTTP/1.1\r\nhost: app\r\ncontent-length: 0\r\n\r\n"
    );
    assert_eq!(
        seen[2],
        "POST /p?q=1 HTTP/1.1\r\nhost: app\r\ncontent-length: 5\r\n\r\nhello"
    );
    assert_eq!(
        seen[3],
        "POST /p?q=1 HTTP/1.1\r\nhost: app\r\ntransfer-encoding: chunked\r\n\r\n2\r\nhe\r\n3\r\nllo\r\n0\r\nx-sum: 7\r\n\r\n"
    );
    assert_eq!(
        seen[4],
        "PUT /p?q=1 HTTP/1.1\r\nhost: app\r\ncontent-length: 3\r\n\r\nabc"
    );
}

#[tokio::test]
async fn a_body_longer_or_shorter_than_its_content_length_fails() {
    for parts in [&["abcd"][..], &["a"][..]] {
        let (addr, _app) = scripted(vec![]).await;
        let mut req = request(Method::POST, streamed(parts, None));
        req.headers_mut()
            .insert("content-length", "3".parse().unwrap());
        let failed = exchange(connect(addr).await, req, true).await.unwrap_err();
        assert!(
            matches!(failed.error, H1Error::Outgoing(_)),
            "{:?}",
            failed.error
        );
        assert!(failed.unsent.is_none());
    }
}

#[tokio::test]
async fn interim_responses_are_skipped_and_chunked_trailers_arrive() {
    let answer = b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nlink: </a>\r\n\r\n\
HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n4\r\ndata\r\n0\r\ngrpc-status: 3\r\n\r\n";
    let (addr, _app) = scripted(vec![answer.to_vec()]).await;
    let done = exchange(connect(addr).await, request(Method::GET, text("")), false)
        .await
        .unwrap();
    let (resp, data, trailers, conn) = read_all(done).await;
    assert_eq!(resp.status(), StatusCode::OK);
    assert!(!resp.headers().contains_key("link"));
    assert_eq!(data, b"data");
    assert_eq!(trailers.unwrap()["grpc-status"], "3");
    assert!(conn.is_some());
}

#[tokio::test]
async fn a_switching_protocols_answer_is_refused() {
    let (addr, _app) = scripted(vec![b"HTTP/1.1 101 Switching Protocols\r\n\r\n".to_vec()]).await;
    let failed = exchange(connect(addr).await, request(Method::GET, text("")), true)
        .await
        .unwrap_err();
    assert!(
        matches!(failed.error, H1Error::Malformed(_)),
        "{:?}",
        failed.error
    );
    assert!(failed.unsent.is_none());
}

#[tokio::test]
async fn a_close_delimited_body_is_read_to_the_end_and_the_connection_dropped() {
    let (addr, _app) = scripted(vec![b"HTTP/1.1 200 OK\r\n\r\nuntil the end".to_vec()]).await;
    let done = exchange(connect(addr).await, request(Method::GET, text("")), false)
        .await
        .unwrap();
    let (_, data, _, conn) = read_all(done).await;
    assert_eq!(data, b"until the end");
    assert!(conn.is_none());
}

#[tokio::test]
async fn a_connection_closed_before_answering_gives_back_only_safe_requests() {
    for (method, body, reused, retry) in [
        (Method::GET, text(""), true, true),
        (Method::GET, text(""), false, false),
        (Method::POST, text(""), true, false),
        (Method::PUT, text(""), true, true),
        // A body byte was taken: never sent twice.
        (Method::PUT, text("x"), true, false),
    ] {
        let (addr, _app) = scripted(vec![]).await;
        let failed = exchange(connect(addr).await, request(method.clone(), body), reused)
            .await
            .unwrap_err();
        assert!(
            matches!(failed.error, H1Error::Closed(_) | H1Error::Io(_)),
            "{:?}",
            failed.error
        );
        assert_eq!(failed.unsent.is_some(), retry, "{method} reused={reused}");
        if let Some(req) = failed.unsent {
            assert_eq!(req.method(), method);
            assert_eq!(req.uri(), "/p?q=1");
        }
    }
}

#[tokio::test]
async fn an_answer_that_ends_before_the_upload_closes_the_connection_after_it() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let (mut tcp, _) = listener.accept().await.unwrap();
        let mut buf = [0u8; 1024];
        let _ = tcp.read(&mut buf).await;
        tcp.write_all(b"HTTP/1.1 413 Payload Too Large\r\nContent-Length: 3\r\n\r\nbig")
            .await
            .unwrap();
        tokio::time::sleep(std::time::Duration::from_secs(5)).await;
    });
    // A body whose second half never comes.
    let (tx, body) = channel_body();
    tx.send(Ok(Frame::data(Bytes::from_static(b"first"))))
        .await
        .unwrap();
    let done = exchange(connect(addr).await, request(Method::POST, body), false)
        .await
        .unwrap();
    let (resp, data, _, conn) = read_all(done).await;
    assert_eq!(
        (resp.status(), data.as_slice()),
        (StatusCode::PAYLOAD_TOO_LARGE, &b"big"[..])
    );
    assert!(
        conn.is_none(),
        "a half-sent request's connection is not reused"
    );
    drop(tx);
}

#[tokio::test]
async fn the_upload_goes_on_while_a_streamed_answer_is_read() {
    // An application echoing each chunk as it comes, answering before
    // the request has ended.
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let app = tokio::spawn(async move {
        let (mut tcp, _) = listener.accept().await.unwrap();
        let mut seen = Vec::new();
        let mut buf = [0u8; 1024];
        let mut answered = 0;
        for (wait_for, answer) in [
            (
                "5\r\nfirst\r\n",
                "HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n5\r\nfirst\r\n",
            ),
            ("6\r\nsecond\r\n", "6\r\nsecond\r\n"),
            ("0\r\n\r\n", "0\r\n\r\n"),
        ] {
            let at = loop {
                let text = String::from_utf8_lossy(&seen[answered..]).into_owned();
                if let Some(at) = text.find(wait_for) {
                    break answered + at + wait_for.len();
                }
                let n = tcp.read(&mut buf).await.unwrap();
                assert!(n > 0, "closed early");
                seen.extend_from_slice(&buf[..n]);
            };
            answered = at;
            tcp.write_all(answer.as_bytes()).await.unwrap();
        }
        tcp
    });
    let (tx, body) = channel_body();
    tx.send(Ok(Frame::data(Bytes::from_static(b"first"))))
        .await
        .unwrap();
    let mut done = exchange(connect(addr).await, request(Method::POST, body), false)
        .await
        .unwrap();
    assert_eq!(done.response.status(), StatusCode::OK);
    let first = done
        .body
        .frame()
        .await
        .unwrap()
        .unwrap()
        .into_data()
        .unwrap();
    assert_eq!(first, "first");
    tx.send(Ok(Frame::data(Bytes::from_static(b"second"))))
        .await
        .unwrap();
    drop(tx);
    let (_, rest, _, conn) = read_all(done).await;
    assert_eq!(rest, b"second");
    assert!(conn.is_some(), "both ways ended: the connection is kept");
    drop(app.await.unwrap());
}

type FrameSender = tokio::sync::mpsc::Sender<Result<Frame<Bytes>, std::convert::Infallible>>;

/// A request body fed frame by frame through the sender; it ends when the
/// sender is dropped.
fn channel_body() -> (FrameSender, ProxyBody) {
    let (tx, mut rx) = tokio::sync::mpsc::channel(1);
    let frames = futures_util::stream::poll_fn(move |cx| rx.poll_recv(cx));
    (tx, boxed(StreamBody::new(frames)))
}

#[tokio::test]
async fn an_idle_connection_that_closed_or_spoke_is_not_usable() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let mut quiet = connect(addr).await;
    let (_kept, _) = listener.accept().await.unwrap();
    let mut closed = connect(addr).await;
    drop(listener.accept().await.unwrap());
    let mut chatty = connect(addr).await;
    let (mut speaker, _) = listener.accept().await.unwrap();
    speaker.write_all(b"HTTP/1.1 200 OK\r\n\r\n").await.unwrap();
    // Let the reactor see the close and the bytes.
    for _ in 0..50 {
        tokio::task::yield_now().await;
        tokio::time::sleep(std::time::Duration::from_millis(2)).await;
    }
    assert!(quiet.is_usable());
    assert!(!closed.is_usable());
    assert!(!chatty.is_usable());
}
