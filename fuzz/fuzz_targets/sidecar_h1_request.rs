//! mesh-sidecar's HTTP/1.x request reader (`h1_server::parse_request`,
//! then `h1::Decoder` for the body) on what an application might send:
//! the first byte picks how many bytes each read brings; the rest is the
//! wire, read as a run of pipelined requests. The property: what is read
//! (each request's method, target, fields and body, or where it failed)
//! does not depend on how the bytes were split into reads.
#![no_main]

use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;

#[path = "common/split_reads.rs"]
mod split_reads;
use mesh_sidecar::h1::{Decoded, Decoder};
use mesh_sidecar::h1_server::{Parsed, parse_request};
use split_reads::Reads;

/// A small head limit, so that the fuzzer reaches it.
const MAX_HEAD: usize = 2048;

#[derive(Debug, PartialEq)]
enum Read {
    Request {
        method: String,
        target: String,
        fields: Vec<(String, Vec<u8>)>,
        keep_alive: bool,
        body: Vec<u8>,
        trailers: Vec<(String, Vec<u8>)>,
    },
    Connect,
    Refused(u16),
    BodyFailed,
    Incomplete,
}

fn read(wire: &[u8], step: usize) -> Vec<Read> {
    let mut buf = BytesMut::new();
    let mut reads = Reads::new(wire, step);
    let mut out = Vec::new();
    while out.len() < 8 {
        let head = match parse_request(&mut buf, MAX_HEAD) {
            Err(e) => {
                out.push(Read::Refused(e.status().as_u16()));
                return out;
            }
            Ok(Some(Parsed::Connect)) => {
                out.push(Read::Connect);
                return out;
            }
            Ok(Some(Parsed::Request(head))) => head,
            Ok(None) if reads.more(&mut buf) => continue,
            Ok(None) => {
                if !buf.is_empty() {
                    out.push(Read::Incomplete);
                }
                return out;
            }
        };
        let mut decoder = Decoder::new(head.framing);
        let mut body = Vec::new();
        let mut trailers = Vec::new();
        loop {
            match decoder.decode(&mut buf) {
                Err(_) => {
                    out.push(Read::BodyFailed);
                    return out;
                }
                Ok(Some(Decoded::Data(d))) => {
                    assert!(!d.is_empty(), "an empty data piece");
                    body.extend_from_slice(&d);
                }
                Ok(Some(Decoded::Trailers(t))) => {
                    trailers = t
                        .iter()
                        .map(|(n, v)| (n.as_str().to_owned(), v.as_bytes().to_vec()))
                        .collect();
                    break;
                }
                Ok(Some(Decoded::End)) => break,
                Ok(None) if reads.more(&mut buf) => {}
                Ok(None) => {
                    out.push(Read::Incomplete);
                    return out;
                }
            }
        }
        let req = head.request;
        out.push(Read::Request {
            method: req.method().as_str().to_owned(),
            target: req.uri().to_string(),
            fields: req
                .headers()
                .iter()
                .map(|(n, v)| (n.as_str().to_owned(), v.as_bytes().to_vec()))
                .collect(),
            keep_alive: head.keep_alive,
            body,
            trailers,
        });
    }
    out
}

fuzz_target!(|data: &[u8]| {
    let Some((&pick, wire)) = data.split_first() else {
        return;
    };
    let step = usize::from(pick).max(1);
    let whole = read(wire, wire.len().max(1));
    let split = read(wire, step);
    assert_eq!(whole, split, "step {step}");
});
