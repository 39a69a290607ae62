//! §14 PeerAuthentication (PA-*).

mod common;

use authz::{Engine, MeshConfig, MtlsMode, Workload};
use common::*;

fn pa(ns: &str, name: &str, spec: &str) -> String {
    doc("PeerAuthentication", ns, name, spec)
}

fn mode(yaml: &str, port: u16) -> MtlsMode {
    engine(yaml).mtls_mode(port)
}

#[test]
fn pa_1_modes_and_unset_inherits() {
    assert_eq!(mode("", 80), MtlsMode::Permissive);
    assert_eq!(
        mode(&pa("foo", "a", "mtls: {mode: DISABLE}"), 80),
        MtlsMode::Disable
    );
    let yaml =
        pa("istio-system", "m", "mtls: {mode: STRICT}") + &pa("foo", "n", "mtls: {mode: UNSET}");
    assert_eq!(mode(&yaml, 80), MtlsMode::Strict);
    // DISABLE: no peer identity reaches authorization.
    let yaml = pa("foo", "a", "mtls: {mode: DISABLE}")
        + &ap(
            "foo",
            "p",
            "rules:\n- from: [{source: {principals: [\"*\"]}}]",
        );
    assert!(!allowed(
        &engine(&yaml),
        &get_from("spiffe://cluster.local/ns/a/sa/b", "/")
    ));
}

#[test]
fn pa_2_levels_and_root_selector_ignored() {
    let yaml = pa(
        "istio-system",
        "m",
        "selector: {matchLabels: {app: web}}\nmtls: {mode: STRICT}",
    );
    assert_eq!(mode(&yaml, 80), MtlsMode::Permissive);
    let yaml = pa(
        "istio-system",
        "m",
        "selector: {matchLabels: {}}\nmtls: {mode: STRICT}",
    );
    assert_eq!(mode(&yaml, 80), MtlsMode::Strict);
    let yaml = pa("bar", "other-ns", "mtls: {mode: STRICT}");
    assert_eq!(mode(&yaml, 80), MtlsMode::Permissive);
}

#[test]
fn pa_3_oldest_wins() {
    let yaml = doc("PeerAuthentication", "foo", "new", "mtls: {mode: DISABLE}").replace(
        "namespace: foo}",
        "namespace: foo, creationTimestamp: \"2024-05-01T00:00:00Z\"}",
    ) + &doc("PeerAuthentication", "foo", "old", "mtls: {mode: STRICT}").replace(
        "namespace: foo}",
        "namespace: foo, creationTimestamp: \"2023-01-01T00:00:00Z\"}",
    );
    assert_eq!(mode(&yaml, 80), MtlsMode::Strict);
}

#[test]
fn pa_4_narrowest_set_level_wins() {
    let yaml = pa("istio-system", "m", "mtls: {mode: STRICT}")
        + &pa("foo", "n", "mtls: {mode: DISABLE}")
        + &pa(
            "foo",
            "w",
            "selector: {matchLabels: {app: web}}\nmtls: {mode: PERMISSIVE}",
        );
    assert_eq!(mode(&yaml, 80), MtlsMode::Permissive);
    let e = Engine::new(
        Workload::new("foo").label("app", "db"),
        MeshConfig::default(),
        &set(&yaml),
    );
    assert_eq!(e.mtls_mode(80), MtlsMode::Disable);
}

#[test]
fn pa_5_port_level_on_workload_policies() {
    let yaml = pa("foo", "n", "mtls: {mode: STRICT}")
        + &pa(
            "foo",
            "w",
            "selector: {matchLabels: {app: web}}\nportLevelMtls:\n  8080: {mode: DISABLE}\n  9090: {mode: UNSET}",
        );
    assert_eq!(mode(&yaml, 8080), MtlsMode::Disable);
    assert_eq!(mode(&yaml, 9090), MtlsMode::Strict);
    assert_eq!(mode(&yaml, 80), MtlsMode::Strict);
    let err = load_err(&pa("foo", "n", "portLevelMtls:\n  8080: {mode: DISABLE}"));
    assert!(err.contains("spec.portLevelMtls"), "{err}");
    let err = load_err(&pa(
        "foo",
        "w",
        "selector: {matchLabels: {a: b}}\nportLevelMtls:\n  0: {mode: DISABLE}",
    ));
    assert!(err.contains("not a valid port"), "{err}");
}

#[test]
fn pa_6_strict_refuses_plaintext_before_authorization() {
    let yaml = pa("foo", "s", "mtls: {mode: STRICT}") + &ap("foo", "a", "rules:\n- {}");
    let e = engine(&yaml);
    assert_eq!(
        e.check(&get("/")).response,
        authz::Response::ConnectionReset
    );
    assert_eq!(
        e.check(&authz::Request::tcp()).response,
        authz::Response::ConnectionReset
    );
    // PERMISSIVE: plaintext reaches authorization with no identity.
    let e = engine(&ap("foo", "a", "rules:\n- {}"));
    assert!(allowed(&e, &get("/")));
}
