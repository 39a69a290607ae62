//! Hostile input never panics, and a reload swaps the whole set at once.

mod common;

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use authz::{PolicySet, PresentedToken, Request, TokenLocation};
use common::*;
use proptest::prelude::*;

fn loaded_engine() -> authz::Engine {
    let yaml = doc(
        "RequestAuthentication",
        "foo",
        "jwt",
        "jwtRules:\n- issuer: https://i\n  jwks: '{\"keys\": []}'",
    ) + &ap(
        "foo",
        "a",
        "rules:\n- to: [{operation: {paths: [\"/a/{*}/b/{**}\", \"/x*\"]}}]\n  when: [{key: \"request.headers[x]\", notValues: [\"*z\"]}]",
    ) + &ap(
        "foo",
        "d",
        "action: DENY\nrules:\n- from: [{source: {notNamespaces: [n]}}]\n  to: [{operation: {hosts: [\"*.evil\"]}}]",
    );
    engine(&yaml)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn loading_arbitrary_text_never_panics(text in ".{0,400}") {
        let _ = PolicySet::from_yaml_str("fuzz.yaml", &text);
    }

    #[test]
    fn loading_mutated_policies_never_panics(cut in 0usize..400, insert in "[\\[\\]{}:*/ \\-#\\n\"'%a-z0-9]{0,12}") {
        let base = ap("foo", "p", "action: DENY\nrules:\n- from: [{source: {principals: [\"a/*\"], ipBlocks: [10.0.0.0/8]}}]\n  to: [{operation: {paths: [\"/x/{**}\"], ports: [\"80\"]}}]\n  when: [{key: \"request.auth.claims[a][b]\", values: [v]}]");
        let at = (0..=cut.min(base.len())).rev().find(|i| base.is_char_boundary(*i)).unwrap_or(0);
        let mut text = base.clone();
        text.insert_str(at, &insert);
        let _ = PolicySet::from_yaml_str("fuzz.yaml", &text);
    }

    #[test]
    fn checking_arbitrary_requests_never_panics(
        method in "[A-Za-z]{0,8}",
        path in "[/%.\\\\?#a-zA-Z0-9{}*]{0,40}",
        header in "[ a-zA-Z-]{0,10}",
        value in ".{0,20}",
        token in ".{0,60}",
    ) {
        let e = loaded_engine();
        let req = Request::http(method, path)
            .header(header, value)
            .token(PresentedToken::raw(TokenLocation::bearer(), token));
        let _ = e.check(&req);
    }
}

#[test]
fn reload_swaps_the_whole_set_atomically() {
    // Set A denies /x through DENY; set B denies it through default-deny.
    // Only a half-swapped state (B's DENY group with A's ALLOW group) allows it.
    let a = set(&(ap(
        "foo",
        "deny-x",
        "action: DENY\nrules:\n- to: [{operation: {paths: [/x]}}]",
    ) + &ap("foo", "allow-all", "rules:\n- {}")));
    let b = set(&ap(
        "foo",
        "allow-y",
        "rules:\n- to: [{operation: {paths: [/y]}}]",
    ));
    let e = Arc::new(authz::Engine::new(web(), authz::MeshConfig::default(), &a));
    const READERS: usize = 2;
    // All threads start together, and the writer keeps reloading until
    // every reader has seen both sets, so reads really overlap reloads.
    let start = Arc::new(Barrier::new(READERS + 1));
    let done = Arc::new(AtomicBool::new(false));
    let saw_both = Arc::new(AtomicUsize::new(0));
    let readers: Vec<_> = (0..READERS)
        .map(|_| {
            let (e, start, done, saw_both) = (
                Arc::clone(&e),
                Arc::clone(&start),
                Arc::clone(&done),
                Arc::clone(&saw_both),
            );
            std::thread::spawn(move || {
                start.wait();
                let (mut seen_a, mut seen_b, mut never_allowed) = (false, false, true);
                while !done.load(Ordering::SeqCst) {
                    let d = e.check(&get("/x"));
                    never_allowed &= !d.allowed;
                    let before = seen_a && seen_b;
                    match d.reason {
                        authz::Reason::DenyMatched => seen_a = true,
                        authz::Reason::NoAllowMatched => seen_b = true,
                        _ => never_allowed = false,
                    }
                    if !before && seen_a && seen_b {
                        saw_both.fetch_add(1, Ordering::SeqCst);
                    }
                }
                (never_allowed, seen_a && seen_b)
            })
        })
        .collect();
    start.wait();
    // A guard against a hang, not a timing assertion.
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut i = 0u64;
    while saw_both.load(Ordering::SeqCst) < READERS && Instant::now() < deadline {
        e.reload(if i.is_multiple_of(2) { &b } else { &a });
        i += 1;
    }
    done.store(true, Ordering::SeqCst);
    for r in readers {
        let (never_allowed, overlapped) = r.join().expect("reader thread");
        assert!(never_allowed, "/x was allowed (or half-decided) mid-reload");
        assert!(
            overlapped,
            "a reader never saw both sets: no overlap with {i} reloads"
        );
    }
    e.reload(&b);
    assert!(allowed(&e, &get("/y")));
    assert_eq!(e.check(&get("/x")).reason, authz::Reason::NoAllowMatched);
    e.reload(&a);
    assert!(allowed(&e, &get("/y")));
    assert_eq!(e.check(&get("/x")).reason, authz::Reason::DenyMatched);
}
