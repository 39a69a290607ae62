//! Shared helpers for the rule tests.
#![allow(dead_code, unreachable_pub)]

use std::net::SocketAddr;
use std::time::SystemTime;

use authz::{Decision, Engine, MeshConfig, PolicySet, Request, Response, Workload};
use spiffe_core::{ConnectionFacts, PeerIdentity, SpiffeId, X509Bundle};
use test_support::TestCa;

/// One AuthorizationPolicy document.
pub fn ap(ns: &str, name: &str, spec: &str) -> String {
    format!(
        "---\napiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata: {{name: {name}, namespace: {ns}}}\nspec:\n{}\n",
        indent(spec)
    )
}

/// One document of another kind.
pub fn doc(kind: &str, ns: &str, name: &str, spec: &str) -> String {
    format!(
        "---\napiVersion: security.istio.io/v1\nkind: {kind}\nmetadata: {{name: {name}, namespace: {ns}}}\nspec:\n{}\n",
        indent(spec)
    )
}

fn indent(s: &str) -> String {
    s.lines().map(|l| format!("  {l}\n")).collect()
}

pub fn set(yaml: &str) -> PolicySet {
    match PolicySet::from_yaml_str("test.yaml", yaml) {
        Ok(s) => s,
        Err(e) => panic!("test policies must load: {e}\n{yaml}"),
    }
}

pub fn load_err(yaml: &str) -> String {
    match PolicySet::from_yaml_str("test.yaml", yaml) {
        Ok(_) => panic!("expected a load error for:\n{yaml}"),
        Err(e) => e.to_string(),
    }
}

/// Engine for workload `foo` (labels app=web) with default mesh config.
pub fn engine(yaml: &str) -> Engine {
    Engine::new(web(), MeshConfig::default(), &set(yaml))
}

pub fn engine_with(mesh: MeshConfig, yaml: &str) -> Engine {
    Engine::new(web(), mesh, &set(yaml))
}

pub fn web() -> Workload {
    Workload::new("foo").label("app", "web")
}

pub fn id(s: &str) -> SpiffeId {
    s.parse().expect("test SPIFFE ID parses")
}

pub fn get(path: &str) -> Request {
    Request::http("GET", path).port(8080)
}

/// A GET from an mTLS peer.
pub fn get_from(peer: &str, path: &str) -> Request {
    get(path).peer(id(peer))
}

pub fn allowed(e: &Engine, r: &Request) -> bool {
    e.check(r).allowed
}

pub fn status(d: &Decision) -> Response {
    d.response
}

/// The facts of a plaintext loopback connection accepted on `port`.
pub fn facts(port: u16) -> ConnectionFacts {
    ConnectionFacts::new(
        SocketAddr::from(([127, 0, 0, 1], port)),
        SocketAddr::from(([127, 0, 0, 1], 50000)),
    )
}

/// A real proof of `spiffe_id`: an X509-SVID from a test CA of its trust
/// domain, verified by spiffe-core against that CA's bundle.
pub fn verified_peer(spiffe_id: &str) -> PeerIdentity {
    let sid = id(spiffe_id);
    let ca = TestCa::new(sid.trust_domain().as_str());
    let leaf = ca.leaf(spiffe_id);
    let bundle = X509Bundle::new(sid.trust_domain().clone(), vec![ca.root_cert()])
        .expect("the test CA makes a valid bundle");
    spiffe_core::x509::verify_x509_svid_full(&leaf.chain, &bundle, SystemTime::now())
        .expect("a test CA leaf verifies against its own bundle")
}
