//! Hand-written HTTP/2 for tests that must control every byte.

use tokio::io::AsyncReadExt;

/// The client connection preface.
pub const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// A header field as an HPACK literal without indexing, new name.
pub fn literal(out: &mut Vec<u8>, name: &str, value: &str) {
    out.push(0x00);
    out.push(u8::try_from(name.len()).unwrap());
    out.extend_from_slice(name.as_bytes());
    out.push(u8::try_from(value.len()).unwrap());
    out.extend_from_slice(value.as_bytes());
}

/// One frame.
pub fn frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
    let len = u32::try_from(payload.len()).unwrap().to_be_bytes();
    let mut f = vec![len[1], len[2], len[3], kind, flags];
    f.extend_from_slice(&stream.to_be_bytes());
    f.extend_from_slice(payload);
    f
}

/// HEADERS + DATA of a call to `method` (an empty request message).
pub fn call(method: &str, stream: u32) -> Vec<u8> {
    let mut block = Vec::new();
    literal(&mut block, ":method", "POST");
    literal(&mut block, ":scheme", "http");
    literal(&mut block, ":path", &format!("/SpiffeWorkloadAPI/{method}"));
    literal(&mut block, ":authority", "localhost");
    literal(&mut block, "content-type", "application/grpc");
    literal(&mut block, "te", "trailers");
    literal(&mut block, "workload.spiffe.io", "true");
    let mut out = frame(0x1, 0x4, stream, &block);
    out.extend(frame(0x0, 0x1, stream, &[0, 0, 0, 0, 0]));
    out
}

/// The preface, an empty SETTINGS frame and `call(method, 1)`.
pub fn open_with(method: &str) -> Vec<u8> {
    let mut out = PREFACE.to_vec();
    out.extend(frame(0x4, 0, 0, &[]));
    out.extend(call(method, 1));
    out
}

/// Reads one frame: (type, flags, stream, payload); `None` at EOF.
pub async fn read_frame(io: &mut (impl AsyncReadExt + Unpin)) -> Option<(u8, u8, u32, Vec<u8>)> {
    let mut h = [0u8; 9];
    io.read_exact(&mut h).await.ok()?;
    let len = usize::from(h[0]) << 16 | usize::from(h[1]) << 8 | usize::from(h[2]);
    let mut payload = vec![0u8; len];
    io.read_exact(&mut payload).await.ok()?;
    let stream = u32::from_be_bytes([h[5], h[6], h[7], h[8]]) & 0x7fff_ffff;
    Some((h[3], h[4], stream, payload))
}
