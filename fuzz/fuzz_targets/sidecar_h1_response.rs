//! mesh-sidecar's HTTP/1.1 response reader (`h1::parse_head`,
//! `Head::framing`, `h1::Decoder`) on what an application might send: the
//! first byte picks the request method (HEAD or GET) and how many bytes
//! each read brings; the rest is the wire. The property: the outcome
//! (status, body bytes, trailers, or that it failed) does not depend on
//! how the bytes were split into reads.
#![no_main]

use bytes::BytesMut;
use http::Method;
use libfuzzer_sys::fuzz_target;

#[path = "common/split_reads.rs"]
mod split_reads;
use mesh_sidecar::h1::{Decoded, Decoder, parse_head};
use split_reads::Reads;

#[derive(Debug, PartialEq)]
enum Outcome {
    Failed,
    Response {
        status: u16,
        body: Vec<u8>,
        trailers: Vec<(String, Vec<u8>)>,
    },
}

fn read(wire: &[u8], method: &Method, step: usize) -> Outcome {
    let mut buf = BytesMut::new();
    let mut reads = Reads::new(wire, step);
    let mut head = loop {
        match parse_head(&mut buf) {
            Err(_) => return Outcome::Failed,
            Ok(Some(h)) if h.response.status().is_informational() => continue,
            Ok(Some(h)) => break h,
            Ok(None) if reads.more(&mut buf) => {}
            Ok(None) => return Outcome::Failed,
        }
    };
    let Ok(framing) = head.framing(method) else {
        return Outcome::Failed;
    };
    let status = head.response.status().as_u16();
    let mut decoder = Decoder::new(framing);
    let mut body = Vec::new();
    loop {
        let decoded = match decoder.decode(&mut buf) {
            Err(_) => return Outcome::Failed,
            Ok(Some(d)) => d,
            Ok(None) if reads.more(&mut buf) => continue,
            Ok(None) => match decoder.at_eof() {
                Ok(d) => d,
                Err(_) => return Outcome::Failed,
            },
        };
        match decoded {
            Decoded::Data(d) => {
                assert!(!d.is_empty(), "an empty data piece");
                body.extend_from_slice(&d);
            }
            Decoded::Trailers(t) => {
                let trailers = t
                    .iter()
                    .map(|(n, v)| (n.as_str().to_owned(), v.as_bytes().to_vec()))
                    .collect();
                return Outcome::Response {
                    status,
                    body,
                    trailers,
                };
            }
            Decoded::End => {
                return Outcome::Response {
                    status,
                    body,
                    trailers: Vec::new(),
                };
            }
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&pick, wire)) = data.split_first() else {
        return;
    };
    let method = if pick & 1 == 1 {
        Method::HEAD
    } else {
        Method::GET
    };
    let step = usize::from(pick >> 1).max(1);
    let whole = read(wire, &method, wire.len().max(1));
    let split = read(wire, &method, step);
    assert_eq!(whole, split, "step {step}");
});
