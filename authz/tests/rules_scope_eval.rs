//! §1 scope (S-*), §2 evaluation order (E-*), §3 boolean structure (B-*).

mod common;

use authz::{
    Engine, ExtAuthzVerdict, ExtensionProvider, MeshConfig, ProviderKind, Reason, Request,
    Response, Workload,
};
use common::*;
use std::time::SystemTime;

const DENY_ADMIN: &str = "action: DENY\nrules:\n- to: [{operation: {paths: [\"/admin\"]}}]";

#[test]
fn s_1_only_own_and_root_namespace_apply() {
    let yaml = ap("bar", "other", DENY_ADMIN);
    assert!(allowed(&engine(&yaml), &get("/admin")));
    let yaml = ap("foo", "own", DENY_ADMIN);
    assert!(!allowed(&engine(&yaml), &get("/admin")));
    let yaml = ap("istio-system", "root", DENY_ADMIN);
    assert!(!allowed(&engine(&yaml), &get("/admin")));
}

#[test]
fn s_2_selector_is_a_subset_test() {
    let spec = |labels: &str| format!("selector: {{matchLabels: {labels}}}\n{DENY_ADMIN}");
    assert!(!allowed(
        &engine(&ap("foo", "a", &spec("{app: web}"))),
        &get("/admin")
    ));
    assert!(allowed(
        &engine(&ap("foo", "a", &spec("{app: db}"))),
        &get("/admin")
    ));
    assert!(allowed(
        &engine(&ap("foo", "a", &spec("{app: web, v: \"2\"}"))),
        &get("/admin")
    ));
    // Empty matchLabels behaves like no selector.
    assert!(!allowed(
        &engine(&ap("foo", "a", &spec("{}"))),
        &get("/admin")
    ));
}

#[test]
fn s_3_root_namespace_selector_applies_in_every_namespace() {
    let spec = format!("selector: {{matchLabels: {{app: web}}}}\n{DENY_ADMIN}");
    let set = set(&ap("istio-system", "mesh", &spec));
    for ns in ["foo", "bar"] {
        let e = Engine::new(
            Workload::new(ns).label("app", "web"),
            MeshConfig::default(),
            &set,
        );
        assert!(!e.check(&get("/admin")).allowed, "namespace {ns}");
        let e = Engine::new(
            Workload::new(ns).label("app", "db"),
            MeshConfig::default(),
            &set,
        );
        assert!(e.check(&get("/admin")).allowed, "namespace {ns}");
    }
}

#[test]
fn s_4_sidecar_ignores_policies_with_target_refs() {
    let spec = format!(
        "targetRefs:\n- {{kind: Gateway, group: gateway.networking.k8s.io, name: gw}}\n{DENY_ADMIN}"
    );
    assert!(allowed(&engine(&ap("foo", "gw", &spec)), &get("/admin")));
    let e = load_err(&ap(
        "foo",
        "both",
        &format!("selector: {{matchLabels: {{app: web}}}}\n{spec}"),
    ));
    assert!(
        e.contains("spec.selector") && e.contains("targetRefs"),
        "{e}"
    );
}

#[test]
fn s_5_gateway_api_gateways_ignore_selector_policies() {
    let spec = format!("selector: {{matchLabels: {{app: gw}}}}\n{DENY_ADMIN}");
    let set = set(&ap("foo", "sel", &spec));
    let gw = Workload::new("foo")
        .label("app", "gw")
        .label("gateway.networking.k8s.io/gateway-name", "gw");
    let e = Engine::new(gw.clone(), MeshConfig::default(), &set);
    assert!(e.check(&get("/admin")).allowed);
    let mut mesh = MeshConfig::default();
    mesh.selector_policies_on_gateway_api = true;
    let e = Engine::new(gw, mesh, &set);
    assert!(!e.check(&get("/admin")).allowed);
}

#[test]
fn s_6_levels_combine_without_precedence() {
    // A namespace-wide ALLOW cannot override a workload DENY, nor vice versa.
    let yaml = ap("istio-system", "allow-all", "rules:\n- {}")
        + &ap(
            "foo",
            "deny",
            &format!("selector: {{matchLabels: {{app: web}}}}\n{DENY_ADMIN}"),
        );
    let e = engine(&yaml);
    assert!(!allowed(&e, &get("/admin")));
    assert!(allowed(&e, &get("/other")));
}

#[test]
fn s_7_rule_names_follow_istio() {
    let yaml = ap(
        "foo",
        "p",
        "action: DENY\nrules:\n- to: [{operation: {paths: [/a]}}]\n- to: [{operation: {paths: [/b]}}]",
    );
    let d = engine(&yaml).check(&get("/b"));
    assert_eq!(d.policy.as_deref(), Some("ns[foo]-policy[p]-rule[1]"));
}

#[test]
fn e_1_action_defaults_to_allow() {
    let e = engine(&ap(
        "foo",
        "p",
        "rules:\n- to: [{operation: {paths: [/a]}}]",
    ));
    assert!(allowed(&e, &get("/a")));
    assert!(!allowed(&e, &get("/b")));
}

fn custom_mesh(kind: ProviderKind) -> MeshConfig {
    MeshConfig::default().with_extension_provider(ExtensionProvider::new("opa", kind))
}

const CUSTOM: &str =
    "action: CUSTOM\nprovider: {name: opa}\nrules:\n- to: [{operation: {paths: [/ext]}}]";

#[test]
fn e_2_custom_first_and_never_bypasses_deny() {
    let yaml = ap("foo", "c", CUSTOM)
        + &ap(
            "foo",
            "d",
            "action: DENY\nrules:\n- to: [{operation: {paths: [/ext]}}]",
        );
    let e = engine_with(custom_mesh(ProviderKind::Grpc), &yaml);
    let deny = |_: &str, _: &Request| ExtAuthzVerdict::Deny { status: 418 };
    let allow = |_: &str, _: &Request| ExtAuthzVerdict::Allow;
    let d = e.check_with(&get("/ext"), &deny, SystemTime::now());
    assert_eq!(d.response, Response::Http(418));
    assert_eq!(
        d.reason,
        Reason::ExtAuthzDenied {
            provider: "opa".into()
        }
    );
    // Provider allows: DENY still applies.
    let d = e.check_with(&get("/ext"), &allow, SystemTime::now());
    assert_eq!(d.reason, Reason::DenyMatched);
    // No CUSTOM rule matches: the provider is not called.
    let called = std::cell::Cell::new(false);
    let spy = |_: &str, _: &Request| {
        called.set(true);
        ExtAuthzVerdict::Deny { status: 403 }
    };
    assert!(
        e.check_with(&get("/other"), &spy, SystemTime::now())
            .allowed
    );
    assert!(!called.get());
}

#[test]
fn e_2_unknown_or_several_providers_fail_closed() {
    // Unknown provider → the CUSTOM rule becomes a DENY rule.
    let e = engine(&ap("foo", "c", CUSTOM));
    let allow = |_: &str, _: &Request| ExtAuthzVerdict::Allow;
    let d = e.check_with(&get("/ext"), &allow, SystemTime::now());
    assert_eq!(d.reason, Reason::DenyMatched);
    // Two providers without the flag → DENY too.
    let two = ap("foo", "c", CUSTOM)
        + &ap(
            "foo",
            "c2",
            "action: CUSTOM\nprovider: {name: other}\nrules:\n- to: [{operation: {paths: [/x]}}]",
        );
    let mesh = custom_mesh(ProviderKind::Grpc)
        .with_extension_provider(ExtensionProvider::new("other", ProviderKind::Grpc));
    let e = engine_with(mesh.clone(), &two);
    assert!(
        !e.check_with(&get("/ext"), &allow, SystemTime::now())
            .allowed
    );
    let mut flagged = mesh;
    flagged.allow_multiple_custom_providers = true;
    let e = engine_with(flagged, &two);
    assert!(
        e.check_with(&get("/ext"), &allow, SystemTime::now())
            .allowed
    );
    // Identity fields are rejected in CUSTOM rules.
    let err = load_err(&ap(
        "foo",
        "c",
        "action: CUSTOM\nprovider: {name: opa}\nrules:\n- from: [{source: {principals: [a]}}]",
    ));
    assert!(
        err.contains("spec.rules[0].from[0].source.principals"),
        "{err}"
    );
}

#[test]
fn e_3_deny_wins_over_allow() {
    let yaml = ap("foo", "a", "rules:\n- {}") + &ap("foo", "d", DENY_ADMIN);
    let d = engine(&yaml).check(&get("/admin"));
    assert!(!d.allowed);
    assert_eq!(d.response, Response::Http(403));
    assert_eq!(d.reason, Reason::DenyMatched);
}

#[test]
fn e_4_no_allow_policy_means_allow() {
    let d = engine("").check(&get("/x"));
    assert!(d.allowed);
    assert_eq!(d.reason, Reason::NoAllowPolicy);
    assert_eq!(d.response, Response::Http(200));
}

#[test]
fn e_5_allow_policy_flips_to_default_deny() {
    let e = engine(&ap(
        "foo",
        "a",
        "rules:\n- to: [{operation: {methods: [GET]}}]",
    ));
    assert!(allowed(&e, &get("/x")));
    let d = e.check(&Request::http("POST", "/x"));
    assert!(!d.allowed);
    assert_eq!(d.reason, Reason::NoAllowMatched);
    assert_eq!(d.policy, None);
}

#[test]
fn e_6_audit_only_marks() {
    let yaml = ap(
        "foo",
        "au",
        "action: AUDIT\nrules:\n- to: [{operation: {paths: [/a]}}]",
    );
    let e = engine(&yaml);
    let d = e.check(&get("/a"));
    assert!(d.allowed && d.audit);
    let d = e.check(&get("/b"));
    assert!(d.allowed && !d.audit);
}

#[test]
fn e_7_missing_rules_never_match() {
    // `spec: {}` is allow-nothing.
    let e = engine(&ap("foo", "none", "{}"));
    assert!(!allowed(&e, &get("/")));
    // AUDIT without rules has no effect.
    let e = engine(&ap("foo", "au", "action: AUDIT"));
    assert!(!e.check(&get("/")).audit);
    // DENY and CUSTOM without rules are rejected.
    assert!(load_err(&ap("foo", "d", "action: DENY")).contains("meaningless"));
    assert!(
        load_err(&ap("foo", "c", "action: CUSTOM\nprovider: {name: x}")).contains("meaningless")
    );
}

#[test]
fn e_8_one_empty_rule_matches_everything() {
    let e = engine(&ap("foo", "d", "action: DENY\nrules:\n- {}"));
    assert!(!allowed(&e, &get("/")));
    assert!(!allowed(&e, &Request::tcp().port(5432)));
    let e = engine(&ap("foo", "a", "rules:\n- {}"));
    assert!(allowed(&e, &Request::tcp().port(5432)));
}

#[test]
fn e_9_null_rule_is_rejected() {
    let e = load_err(&ap("foo", "a", "rules:\n- null\n- {}"));
    assert!(e.contains("spec.rules[0]") && e.contains("null"), "{e}");
}

#[test]
fn b_1_any_rule_matches() {
    let e = engine(&ap(
        "foo",
        "a",
        "rules:\n- to: [{operation: {paths: [/a]}}]\n- to: [{operation: {paths: [/b]}}]",
    ));
    assert!(allowed(&e, &get("/a")) && allowed(&e, &get("/b")) && !allowed(&e, &get("/c")));
}

#[test]
fn b_2_from_to_when_all_hold() {
    let e = engine(&ap(
        "foo",
        "a",
        "rules:\n- from: [{source: {namespaces: [bar]}}]\n  to: [{operation: {methods: [GET]}}]\n  when: [{key: \"request.headers[x-k]\", values: [v]}]",
    ));
    let peer = "spiffe://cluster.local/ns/bar/sa/x";
    assert!(allowed(&e, &get_from(peer, "/").header("x-k", "v")));
    assert!(!allowed(&e, &get_from(peer, "/")));
    assert!(!allowed(&e, &get("/").header("x-k", "v")));
    assert!(!allowed(
        &e,
        &Request::http("PUT", "/").peer(id(peer)).header("x-k", "v")
    ));
}

#[test]
fn b_3_fields_in_one_operation_are_anded() {
    let e = engine(&ap(
        "foo",
        "a",
        "rules:\n- to: [{operation: {methods: [GET], paths: [/a]}}]",
    ));
    assert!(allowed(&e, &get("/a")));
    assert!(!allowed(&e, &get("/b")));
    assert!(!allowed(&e, &Request::http("POST", "/a")));
}

#[test]
fn b_4_positive_and_negative_lists() {
    let e = engine(&ap(
        "foo",
        "a",
        "rules:\n- to: [{operation: {paths: [\"/api/*\"], notPaths: [/api/secret]}}]\n  when: [{key: \"request.headers[x-k]\", values: [\"a*\"], notValues: [abad]}]",
    ));
    assert!(allowed(&e, &get("/api/x").header("x-k", "ab")));
    assert!(!allowed(&e, &get("/api/secret").header("x-k", "ab")));
    assert!(!allowed(&e, &get("/api/x").header("x-k", "abad")));
    assert!(!allowed(&e, &get("/api/x").header("x-k", "b")));
}

#[test]
fn b_5_no_mixing_across_rules() {
    let e = engine(&ap(
        "foo",
        "a",
        "rules:\n- to: [{operation: {methods: [GET], paths: [/a]}}]\n- to: [{operation: {methods: [POST], paths: [/b]}}]",
    ));
    assert!(allowed(&e, &get("/a")));
    assert!(allowed(&e, &Request::http("POST", "/b")));
    assert!(!allowed(&e, &Request::http("POST", "/a")));
}
