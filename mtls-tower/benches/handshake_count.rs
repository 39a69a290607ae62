//! Instruction counts of full mTLS handshakes, for a comparison that the
//! noise of a shared machine does not blur. Runs `N` handshakes through one
//! config pair, chosen by the first argument (`ours` or `plain`), inside
//! `run_handshakes`; measure with
//! `valgrind --tool=callgrind --toggle-collect='*run_handshakes*' <binary> ours`.

mod common;

use std::sync::Arc;

use rustls::{ClientConfig, ServerConfig};

const N: usize = 200;

#[inline(never)]
fn run_handshakes(client: &Arc<ClientConfig>, server: &Arc<ServerConfig>) {
    for _ in 0..N {
        common::handshake(client, server);
    }
}

fn main() {
    let ((oc, os), (pc, ps)) = common::both();
    // Warm up both (lazy statics, allocator) outside the measured function.
    common::handshake(&oc, &os);
    common::handshake(&pc, &ps);
    match std::env::args().nth(1).as_deref() {
        Some("ours") => run_handshakes(&oc, &os),
        Some("plain") => run_handshakes(&pc, &ps),
        _ => eprintln!("usage: handshake_count ours|plain"),
    }
}
