//! The rewrite against the real server: raw HTTP/2 bytes as gRPC C-core
//! writes them, and malformed requests that must still be refused.

use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::*;
use crate::{MemoryIdentityProvider, Selectors, WorkloadApiServer};

const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

fn literal(out: &mut Vec<u8>, first: u8, name: &[u8], value: &[u8]) {
    // Literal with a new name; lengths below 127.
    out.push(first);
    out.push(name.len() as u8);
    out.extend_from_slice(name);
    out.push(value.len() as u8);
    out.extend_from_slice(value);
}

/// A FetchX509Bundles request block. `authority` is added to the dynamic
/// table as C-core does (`0x40`, new name); `None` refers to that entry by
/// its index (62) instead, as C-core's second request on a connection does.
fn request(authority: Option<&[u8]>, with_method: bool) -> Vec<u8> {
    let mut b = Vec::new();
    if with_method {
        b.push(0x83); // :method POST
    }
    b.push(0x86); // :scheme http
    literal(
        &mut b,
        0x00,
        b":path",
        b"/SpiffeWorkloadAPI/FetchX509Bundles",
    );
    match authority {
        Some(a) => literal(&mut b, 0x40, b":authority", a),
        None => b.push(0xbe),
    }
    literal(&mut b, 0x00, b"content-type", b"application/grpc");
    literal(&mut b, 0x00, b"te", b"trailers");
    literal(&mut b, 0x00, b"workload.spiffe.io", b"true");
    b
}

fn frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
    let len = payload.len();
    let mut f = vec![(len >> 16) as u8, (len >> 8) as u8, len as u8, kind, flags];
    f.extend_from_slice(&stream.to_be_bytes());
    f.extend_from_slice(payload);
    f
}

/// The server's answer to one stream, as frame types seen for it.
#[derive(Debug, PartialEq)]
enum Answer {
    /// A DATA frame with a message arrived.
    Data,
    /// The stream was reset with this error code.
    Reset(u32),
    /// The connection was closed (GOAWAY or EOF) before either.
    Closed,
}

async fn answer(io: &mut (impl AsyncReadExt + Unpin), stream: u32) -> Answer {
    loop {
        let mut h = [0u8; 9];
        if io.read_exact(&mut h).await.is_err() {
            return Answer::Closed;
        }
        let len = usize::from(h[0]) << 16 | usize::from(h[1]) << 8 | usize::from(h[2]);
        let mut payload = vec![0u8; len];
        if io.read_exact(&mut payload).await.is_err() {
            return Answer::Closed;
        }
        let sid = u32::from_be_bytes([h[5], h[6], h[7], h[8]]) & 0x7fff_ffff;
        match h[3] {
            0x7 => return Answer::Closed,
            0x0 if sid == stream && len > 5 => return Answer::Data,
            0x3 if sid == stream => {
                return Answer::Reset(u32::from_be_bytes([
                    payload[0], payload[1], payload[2], payload[3],
                ]));
            }
            _ => {}
        }
    }
}

struct Dir(std::path::PathBuf);

impl Dir {
    fn new(tag: &str) -> Self {
        let mut rnd = [0u8; 8];
        aws_lc_rs::rand::fill(&mut rnd).unwrap();
        let name: String = rnd.iter().map(|b| format!("{b:02x}")).collect();
        let p = std::env::temp_dir().join(format!("wlapi-{tag}-{name}"));
        std::fs::create_dir_all(&p).unwrap();
        Dir(p)
    }
}

impl Drop for Dir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

struct Served {
    _dir: Dir,
    socket: std::path::PathBuf,
    stop: tokio::sync::oneshot::Sender<()>,
}

fn serve() -> Served {
    let dir = Dir::new("authority");
    let socket = dir.0.join("api.sock");
    let provider = Arc::new(MemoryIdentityProvider::new());
    let td: spiffe_core::TrustDomain = "example.org".parse().unwrap();
    let ca = test_support::TestCa::new("example.org");
    let leaf = ca.leaf("spiffe://example.org/web");
    let svid = spiffe_core::X509Svid::from_der(&leaf.chain_der(), &leaf.key_der).unwrap();
    let mut set = spiffe_core::BundleSet::new();
    set.insert_x509(spiffe_core::X509Bundle::new(td, vec![ca.root_cert()]).unwrap());
    provider.set_bundles(set);
    let everyone: Selectors = ["test:any".parse().unwrap()].into_iter().collect();
    provider
        .add_entry(
            crate::RegistrationEntry::new(
                svid.spiffe_id().clone(),
                "spiffe://example.org/node/test".parse().unwrap(),
                everyone.iter().cloned().collect(),
            )
            .unwrap(),
            svid,
        )
        .unwrap();
    let attestor = move |_: &crate::Caller| Ok(everyone.clone());
    let server = WorkloadApiServer::new(provider, Arc::new(attestor));
    let listener = tokio::net::UnixListener::bind(&socket).unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(async move {
        let _ = server
            .serve_unix(listener, async {
                let _ = stopped.await;
            })
            .await;
    });
    Served {
        _dir: dir,
        socket,
        stop,
    }
}

async fn exchange(socket: &std::path::Path, frames: &[Vec<u8>], stream: u32) -> Answer {
    let mut io = tokio::net::UnixStream::connect(socket).await.unwrap();
    io.write_all(PREFACE).await.unwrap();
    io.write_all(&frame(0x4, 0, 0, &[])).await.unwrap();
    for f in frames {
        io.write_all(f).await.unwrap();
    }
    tokio::time::timeout(Duration::from_secs(10), answer(&mut io, stream))
        .await
        .expect("the server answers within 10 s")
}

const EMPTY_MESSAGE: &[u8] = &[0, 0, 0, 0, 0];

#[tokio::test]
async fn ep_unix_percent_encoded_path_authority_is_accepted() {
    let s = serve();
    let frames = [
        frame(
            0x1,
            FLAG_END_HEADERS,
            1,
            &request(Some(b"tmp%2Fagent.sock"), true),
        ),
        frame(0x0, FLAG_END_STREAM, 1, EMPTY_MESSAGE),
    ];
    assert_eq!(exchange(&s.socket, &frames, 1).await, Answer::Data);
    let _ = s.stop.send(());
}

#[tokio::test]
async fn ep_unix_raw_path_authority_is_accepted_and_its_table_entry_reused() {
    let s = serve();
    // grpc-java's form, then a second stream that names the entry the
    // first one added to the dynamic table, split over CONTINUATION frames
    // and padded.
    let second = request(None, true);
    let (a, b) = second.split_at(10);
    let mut padded = vec![3u8];
    padded.extend_from_slice(a);
    padded.extend_from_slice(&[0, 0, 0]);
    let frames = [
        frame(
            0x1,
            FLAG_END_HEADERS,
            1,
            &request(Some(b"/run/agent.sock"), true),
        ),
        frame(0x0, FLAG_END_STREAM, 1, EMPTY_MESSAGE),
        frame(0x1, FLAG_PADDED, 3, &padded),
        frame(0x9, FLAG_END_HEADERS, 3, b),
        frame(0x0, FLAG_END_STREAM, 3, EMPTY_MESSAGE),
    ];
    assert_eq!(exchange(&s.socket, &frames, 3).await, Answer::Data);
    let _ = s.stop.send(());
}

#[tokio::test]
async fn ep_unix_malformed_requests_are_still_reset() {
    let s = serve();
    // No :method: h2 still resets the stream with PROTOCOL_ERROR (1).
    let frames = [
        frame(
            0x1,
            FLAG_END_HEADERS,
            1,
            &request(Some(b"tmp%2Fagent.sock"), false),
        ),
        frame(0x0, FLAG_END_STREAM, 1, EMPTY_MESSAGE),
    ];
    assert_eq!(exchange(&s.socket, &frames, 1).await, Answer::Reset(1));
    // A pseudo-header after a regular field.
    let mut late = request(Some(b"localhost"), true);
    late.push(0x84); // :path /
    let frames = [
        frame(0x1, FLAG_END_HEADERS, 1, &late),
        frame(0x0, FLAG_END_STREAM, 1, EMPTY_MESSAGE),
    ];
    assert_eq!(exchange(&s.socket, &frames, 1).await, Answer::Reset(1));
    // Two :authority fields.
    let mut twice = request(Some(b"a"), true);
    literal(&mut twice, 0x00, b":authority", b"b");
    let frames = [frame(0x1, FLAG_END_HEADERS | FLAG_END_STREAM, 1, &twice)];
    assert_eq!(exchange(&s.socket, &frames, 1).await, Answer::Reset(1));
    let _ = s.stop.send(());
}

#[tokio::test]
async fn ep_unix_undecodable_or_interrupted_header_blocks_close_the_connection() {
    let s = serve();
    // An index into an empty dynamic table.
    let frames = [frame(0x1, FLAG_END_HEADERS, 1, &[0x83, 0xbe])];
    assert_eq!(exchange(&s.socket, &frames, 1).await, Answer::Closed);
    // A header block interrupted by a DATA frame.
    let frames = [
        frame(0x1, 0, 1, &request(Some(b"x"), true)),
        frame(0x0, FLAG_END_STREAM, 1, EMPTY_MESSAGE),
    ];
    assert_eq!(exchange(&s.socket, &frames, 1).await, Answer::Closed);
    // A header block larger than the bound, in many CONTINUATION frames.
    let mut frames = vec![frame(0x1, 0, 1, &request(Some(b"x"), true))];
    for _ in 0..(MAX_HEADER_BLOCK / 16_000 + 1) {
        frames.push(frame(0x9, 0, 1, &[0u8; 16_000]));
    }
    assert_eq!(exchange(&s.socket, &frames, 1).await, Answer::Closed);
    let _ = s.stop.send(());
}

#[tokio::test]
async fn ep_tcp_keeps_h2s_authority_check() {
    // The rewrite is for Unix sockets only: on loopback TCP the same
    // bytes are refused by h2 itself, which is what Unix callers saw
    // before the rewrite.
    let provider = Arc::new(MemoryIdentityProvider::new());
    let server = WorkloadApiServer::new(provider, Arc::new(crate::UnixAttestor::new()));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(async move {
        let _ = server
            .serve_tcp(listener, async {
                let _ = stopped.await;
            })
            .await;
    });
    let mut io = tokio::net::TcpStream::connect(addr).await.unwrap();
    io.write_all(PREFACE).await.unwrap();
    io.write_all(&frame(0x4, 0, 0, &[])).await.unwrap();
    io.write_all(&frame(
        0x1,
        FLAG_END_HEADERS,
        1,
        &request(Some(b"tmp%2Fagent.sock"), true),
    ))
    .await
    .unwrap();
    let got = tokio::time::timeout(Duration::from_secs(10), answer(&mut io, 1))
        .await
        .unwrap();
    assert_eq!(got, Answer::Reset(1));
    let _ = stop.send(());
}

mod props {
    use proptest::prelude::*;

    use super::super::hpack::{self, Decoder, Field};
    use super::super::*;
    use super::{PREFACE, frame};

    proptest! {
        #[test]
        fn hpack_decoder_never_panics(blocks in proptest::collection::vec(
            proptest::collection::vec(any::<u8>(), 0..300), 1..8)) {
            let mut d = Decoder::new();
            for b in &blocks {
                let _ = d.decode(b, MAX_HEADER_BLOCK);
            }
        }

        #[test]
        fn encoded_fields_round_trip(fields in proptest::collection::vec(
            (proptest::collection::vec(any::<u8>(), 0..200),
             proptest::collection::vec(any::<u8>(), 0..400)), 0..20)) {
            let fields: Vec<Field> = fields;
            let mut out = Vec::new();
            hpack::encode(&fields, &mut out);
            prop_assert_eq!(Decoder::new().decode(&out, usize::MAX).unwrap(), fields);
        }

        #[test]
        fn the_rewrite_never_panics_on_arbitrary_frames(
            frames in proptest::collection::vec(
                (0u8..12, any::<u8>(), 0u32..6, proptest::collection::vec(any::<u8>(), 0..200)),
                0..20),
            split in 1usize..64,
        ) {
            let mut bytes = PREFACE.to_vec();
            for (kind, flags, stream, payload) in &frames {
                bytes.extend(frame(*kind, *flags, *stream, payload));
            }
            let mut rw = AuthorityRewrite::new(());
            for chunk in bytes.chunks(split) {
                rw.input.extend_from_slice(chunk);
                if rw.process().is_err() {
                    break;
                }
            }
        }
    }
}
