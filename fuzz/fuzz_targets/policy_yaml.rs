//! Istio policy YAML (AuthorizationPolicy, RequestAuthentication,
//! PeerAuthentication): load, and a loaded set builds an engine that
//! decides a request.
#![no_main]

use authz::{Engine, MeshConfig, PolicySet, Request, Workload};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(set) = PolicySet::from_yaml_str("fuzz.yaml", text) {
        let engine = Engine::new(
            Workload::new("foo").label("app", "web"),
            MeshConfig::default(),
            &set,
        );
        let request = Request::http("GET", "/api/v1/items").port(8080).peer(
            "spiffe://cluster.local/ns/foo/sa/web"
                .parse()
                .expect("fixed ID"),
        );
        let _ = engine.check(&request);
    }
});
