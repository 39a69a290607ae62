//! The sidecar's first look at a connection and at a request's authority:
//! protocol detection decides once and sticks to it, and routing never
//! panics and names a service only with non-empty labels.
#![no_main]

use libfuzzer_sys::fuzz_target;
use mesh_sidecar::detect::classify;
use mesh_sidecar::endpoint::route;

fuzz_target!(|data: &[u8]| {
    // Once a prefix decides, every longer input decides the same way.
    let mut decided = None;
    for end in 0..=data.len().min(64) {
        match (decided, classify(&data[..end])) {
            (None, d) => decided = d,
            (Some(before), Some(now)) => assert_eq!(before, now, "detection changed its mind"),
            (Some(_), None) => panic!("a decided prefix became undecided"),
        }
    }
    if let Ok(text) = std::str::from_utf8(data)
        && let Some((key, _port)) = route(text, "default")
    {
        assert!(!key.name.is_empty() && !key.namespace.is_empty(), "{key:?}");
        assert!(
            !key.name.contains('.') && !key.name.contains(':'),
            "{key:?}"
        );
    }
});
