//! Instruction counts of full mTLS handshakes, for a comparison that the
//! noise of a shared machine does not blur. Runs `N` handshakes through one
//! config pair, chosen by the first argument (`ours`, `uncached`: ours
//! without the verified-chain cache, or `plain`), inside
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
    let common::Configs {
        ours: (oc, os),
        uncached: (uc, us),
        plain: (pc, ps),
    } = common::configs();
    // Warm up each (lazy statics, allocator, the chain caches) outside the
    // measured function.
    common::handshake(&oc, &os);
    common::handshake(&uc, &us);
    common::handshake(&pc, &ps);
    match std::env::args().nth(1).as_deref() {
        Some("ours") => run_handshakes(&oc, &os),
        Some("uncached") => run_handshakes(&uc, &us),
        Some("plain") => run_handshakes(&pc, &ps),
        _ => eprintln!("usage: handshake_count ours|uncached|plain"),
    }
}
