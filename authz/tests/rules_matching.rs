//! §4 value matching (M-*), §5 sources (F-*), §6 operations, §7 conditions,
//! §8 identity (I-*).

mod common;

use authz::{MeshConfig, Request};
use common::*;
use std::net::IpAddr;

fn allow(spec_rule: &str) -> authz::Engine {
    engine(&ap("foo", "a", &format!("rules:\n- {spec_rule}")))
}

fn ip(s: &str) -> IpAddr {
    s.parse().expect("test IP parses")
}

#[test]
fn m_1_string_patterns() {
    let e = allow("to: [{operation: {paths: [/exact, \"/pre*\", \"*.png\", \"/api/*/users\"]}}]");
    assert!(allowed(&e, &get("/exact")));
    assert!(!allowed(&e, &get("/exact/more")));
    assert!(allowed(&e, &get("/prefix/x")));
    assert!(allowed(&e, &get("/img/a.png")));
    assert!(allowed(&e, &get("/api/*/users")));
    assert!(!allowed(&e, &get("/api/v1/users")));
}

#[test]
fn m_2_presence_for_headers_hosts_vs_paths() {
    let e = allow("when: [{key: \"request.headers[x-empty]\", values: [\"*\"]}]");
    assert!(allowed(&e, &get("/").header("x-empty", "")));
    assert!(!allowed(&e, &get("/")));
    let e = allow("to: [{operation: {hosts: [\"*\"]}}]");
    assert!(allowed(&e, &get("/").host("")));
    assert!(!allowed(&e, &get("/")));
    // Identity presence needs a non-empty value: no mTLS, no match.
    let e = allow("from: [{source: {principals: [\"*\"]}}]");
    assert!(!allowed(&e, &get("/")));
    assert!(allowed(
        &e,
        &get_from("spiffe://cluster.local/ns/a/sa/b", "/")
    ));
}

#[test]
fn m_3_case_rules() {
    let e = allow("to: [{operation: {hosts: [Example.COM], paths: [/Admin]}}]");
    assert!(allowed(&e, &get("/Admin").host("example.com")));
    assert!(allowed(&e, &get("/Admin").host("EXAMPLE.com")));
    assert!(!allowed(&e, &get("/admin").host("example.com")));
    let e = allow("when: [{key: \"request.headers[X-Token]\", values: [Abc]}]");
    assert!(allowed(&e, &get("/").header("x-token", "Abc")));
    assert!(!allowed(&e, &get("/").header("X-TOKEN", "abc")));
    let e = allow("to: [{operation: {methods: [GET]}}]");
    assert!(!allowed(&e, &Request::http("get", "/")));
}

#[test]
fn m_4_exact_only_fields() {
    let e = allow("to: [{operation: {ports: [\"8080\"]}}]");
    assert!(allowed(&e, &get("/").port(8080)));
    assert!(!allowed(&e, &get("/").port(80)));
    let e = allow("from: [{source: {ipBlocks: [10.0.0.0/8, \"2001:db8::1\"]}}]");
    assert!(allowed(&e, &get("/").source_ip(ip("10.9.8.7"))));
    assert!(allowed(&e, &get("/").source_ip(ip("2001:db8::1"))));
    assert!(!allowed(&e, &get("/").source_ip(ip("2001:db8::2"))));
    assert!(!allowed(&e, &get("/").source_ip(ip("11.0.0.1"))));
    assert!(
        load_err(&ap(
            "foo",
            "a",
            "rules:\n- from: [{source: {serviceAccounts: [\"ns/*\"]}}]"
        ))
        .contains("wildcards")
    );
}

#[test]
fn m_5_missing_attribute_satisfies_negative() {
    let e = allow("when: [{key: \"request.headers[x-k]\", notValues: [bad]}]");
    assert!(allowed(&e, &get("/")));
    assert!(!allowed(&e, &get("/").header("x-k", "bad")));
    let e = allow("from: [{source: {notRequestPrincipals: [\"iss/sub\"]}}]");
    assert!(allowed(&e, &get("/")));
    let e = allow("when: [{key: connection.sni, notValues: [\"*\"]}]");
    assert!(allowed(&e, &get("/")));
    assert!(!allowed(&e, &get("/").sni("x.example")));
}

#[test]
fn m_6_hosts_include_the_port() {
    let e = allow("to: [{operation: {hosts: [example.com]}}]");
    assert!(allowed(&e, &get("/").host("example.com")));
    assert!(!allowed(&e, &get("/").host("example.com:8080")));
    let e = allow("to: [{operation: {hosts: [example.com, \"example.com:*\"]}}]");
    assert!(allowed(&e, &get("/").host("example.com:8080")));
}

#[test]
fn m_7_paths_drop_query_and_prefix_is_plain() {
    let e = allow("to: [{operation: {paths: [\"/info*\", /q]}}]");
    assert!(allowed(&e, &get("/information")));
    assert!(allowed(&e, &get("/q?x=1#f")));
    let e = allow("to: [{operation: {paths: [\"*\"]}}]");
    assert!(allowed(&e, &get("/")));
}

#[test]
fn m_8_path_templates() {
    let e = allow(
        "to: [{operation: {paths: [\"/allow/admin/{**}\", \"/foo/{*}/bar/{**}\", \"/store/{**}/cart\"]}}]",
    );
    for ok in [
        "/allow/admin/",
        "/allow/admin/foo/temp.txt",
        "/foo/buzz/bar/bat",
        "/store//cart",
        "/store/a/b/cart",
    ] {
        assert!(allowed(&e, &get(ok)), "{ok}");
    }
    for no in ["/allow/admin", "/foo//bar/x", "/store/cart"] {
        assert!(!allowed(&e, &get(no)), "{no}");
    }
    let err = load_err(&ap(
        "foo",
        "a",
        "rules:\n- to: [{operation: {paths: [\"/foo/{*}.txt\"]}}]",
    ));
    assert!(
        err.contains("spec.rules[0].to[0].operation.paths[0]"),
        "{err}"
    );
}

#[test]
fn m_9_normalisation_before_matching() {
    let e = engine(&ap(
        "foo",
        "d",
        "action: DENY\nrules:\n- to: [{operation: {paths: [/admin]}}]",
    ));
    for sneaky in ["/public/../admin", "/%61dmin", "/./admin", "/admin?x=1"] {
        assert!(!allowed(&e, &get(sneaky)), "{sneaky}");
    }
    // Not normalised by default: %2F, // and case.
    assert!(allowed(&e, &get("//admin")));
    assert!(allowed(&e, &get("/ADMIN")));
    let d = e.check(&get("/a%00"));
    assert_eq!(d.response, authz::Response::Http(400));
    let d = e.check(&Request::http("get", "/"));
    assert_eq!(d.response, authz::Response::Http(400));
    let d = e.check(&get("/").header("bad name", "x"));
    assert_eq!(d.response, authz::Response::Http(400));
    // Repeated headers are joined with `,`.
    let e = allow("when: [{key: \"request.headers[x-k]\", values: [\"a,b\"]}]");
    assert!(allowed(&e, &get("/").header("x-k", "a").header("X-K", "b")));
}

#[test]
fn m_10_grpc_is_post_to_service_method() {
    let e = allow("to: [{operation: {methods: [POST], paths: [\"/pkg.Greeter/*\"]}}]");
    assert!(allowed(&e, &Request::http("POST", "/pkg.Greeter/SayHello")));
    assert!(!allowed(&e, &Request::http("POST", "/pkg.Other/SayHello")));
}

#[test]
fn f_1_service_accounts_rules() {
    let e = allow("from: [{source: {serviceAccounts: [bar/sleep, web]}}]");
    assert!(allowed(
        &e,
        &get_from("spiffe://any.td/ns/bar/sa/sleep", "/")
    ));
    // Bare `sa` means the policy's namespace (foo).
    assert!(allowed(
        &e,
        &get_from("spiffe://cluster.local/ns/foo/sa/web", "/")
    ));
    assert!(!allowed(
        &e,
        &get_from("spiffe://cluster.local/ns/bar/sa/web", "/")
    ));
    let err = load_err(&ap(
        "foo",
        "a",
        "rules:\n- from: [{source: {serviceAccounts: [a], principals: [b]}}]",
    ));
    assert!(err.contains("cannot be combined"), "{err}");
    let many: Vec<String> = (0..17).map(|i| format!("sa{i}")).collect();
    let err = load_err(&ap(
        "foo",
        "a",
        &format!(
            "rules:\n- from: [{{source: {{serviceAccounts: [{}]}}}}]",
            many.join(",")
        ),
    ));
    assert!(err.contains("at most 16"), "{err}");
    let long = "a".repeat(321);
    let err = load_err(&ap(
        "foo",
        "a",
        &format!("rules:\n- from: [{{source: {{serviceAccounts: [{long}]}}}}]"),
    ));
    assert!(err.contains("320"), "{err}");
}

#[test]
fn f_2_ip_blocks_are_the_direct_peer_remote_ip_blocks_the_client() {
    let e = allow("from: [{source: {remoteIpBlocks: [203.0.113.0/24]}}]");
    let via_lb = get("/")
        .source_ip(ip("10.0.0.1"))
        .remote_ip(ip("203.0.113.9"));
    assert!(allowed(&e, &via_lb));
    let e = allow("from: [{source: {ipBlocks: [203.0.113.0/24]}}]");
    assert!(!allowed(&e, &via_lb));
}

#[test]
fn f_2_remote_ip_blocks_fall_back_to_the_direct_peer() {
    // No PROXY protocol / trusted XFF value: remote.ip is the direct peer.
    let direct = get("/").source_ip(ip("203.0.113.9"));
    let e = engine(&ap(
        "foo",
        "d",
        "action: DENY\nrules:\n- from: [{source: {remoteIpBlocks: [203.0.113.0/24]}}]",
    ));
    assert!(
        !allowed(&e, &direct),
        "DENY remoteIpBlocks must catch direct clients"
    );
    let via_lb = get("/")
        .source_ip(ip("203.0.113.9"))
        .remote_ip(ip("198.51.100.1"));
    assert!(allowed(&e, &via_lb), "the supplied original client wins");
    let e = allow("from: [{source: {remoteIpBlocks: [203.0.113.0/24]}}]");
    assert!(allowed(&e, &direct));
    assert!(!allowed(&e, &get("/").source_ip(ip("198.51.100.1"))));
    let e = allow("from: [{source: {notRemoteIpBlocks: [203.0.113.0/24]}}]");
    assert!(!allowed(&e, &direct));
    assert!(allowed(&e, &get("/").source_ip(ip("198.51.100.1"))));
    let e = allow("when: [{key: remote.ip, values: [203.0.113.0/24]}]");
    assert!(allowed(&e, &direct));
    // With no address at all nothing positive matches.
    assert!(!allowed(&e, &get("/")));
}

#[test]
fn m_4_ipv4_mapped_ipv6_peers_match_ipv4_blocks() {
    let mapped = ip("::ffff:10.1.2.3");
    let e = allow("from: [{source: {ipBlocks: [10.0.0.0/8]}}]");
    assert!(allowed(&e, &get("/").source_ip(mapped)));
    assert!(!allowed(&e, &get("/").source_ip(ip("::ffff:11.1.2.3"))));
    let e = allow("from: [{source: {remoteIpBlocks: [10.0.0.0/8]}}]");
    assert!(allowed(
        &e,
        &get("/").source_ip(ip("192.0.2.1")).remote_ip(mapped)
    ));
    assert!(allowed(&e, &get("/").source_ip(mapped)));
    let e = allow("when: [{key: destination.ip, values: [10.1.2.3]}]");
    assert!(allowed(&e, &get("/").destination_ip(mapped)));
    let e = allow("when: [{key: source.ip, notValues: [10.0.0.0/8]}]");
    assert!(!allowed(&e, &get("/").source_ip(mapped)));
    let e = engine(&ap(
        "foo",
        "d",
        "action: DENY\nrules:\n- from: [{source: {ipBlocks: [10.0.0.0/8]}}]",
    ));
    assert!(!allowed(&e, &get("/").source_ip(mapped)));
}

#[test]
fn f_3_empty_source_is_rejected() {
    let err = load_err(&ap("foo", "a", "rules:\n- from: [{source: {}}]"));
    assert!(
        err.contains("spec.rules[0].from[0].source") && err.contains("must not be empty"),
        "{err}"
    );
    let err = load_err(&ap("foo", "a", "rules:\n- to: [{operation: {}}]"));
    assert!(err.contains("spec.rules[0].to[0].operation"), "{err}");
}

#[test]
fn c_condition_keys() {
    let peer = "spiffe://cluster.local/ns/bar/sa/sleep";
    let cases = [
        (
            "{key: source.ip, values: [10.0.0.0/8]}",
            get("/").source_ip(ip("10.1.1.1")),
            get("/").source_ip(ip("11.1.1.1")),
        ),
        (
            "{key: remote.ip, values: [10.0.0.1]}",
            get("/").remote_ip(ip("10.0.0.1")),
            get("/").remote_ip(ip("10.0.0.2")),
        ),
        (
            "{key: destination.ip, values: [\"fd00::/8\"]}",
            get("/").destination_ip(ip("fd00::1")),
            get("/").destination_ip(ip("fe00::1")),
        ),
        (
            "{key: destination.port, values: [\"9000\"]}",
            get("/").port(9000),
            get("/").port(9001),
        ),
        (
            "{key: source.namespace, values: [bar]}",
            get_from(peer, "/"),
            get_from("spiffe://cluster.local/ns/baz/sa/sleep", "/"),
        ),
        (
            "{key: source.principal, values: [cluster.local/ns/bar/sa/sleep]}",
            get_from(peer, "/"),
            get("/"),
        ),
        (
            "{key: source.serviceAccount, values: [bar/sleep]}",
            get_from(peer, "/"),
            get_from("spiffe://cluster.local/ns/bar/sa/other", "/"),
        ),
        (
            "{key: source.trustDomain, values: [\"cluster.*\"]}",
            get_from(peer, "/"),
            get_from("spiffe://partner.example/ns/bar/sa/sleep", "/"),
        ),
        (
            "{key: connection.sni, values: [\"outbound_.8000_*\"]}",
            get("/").sni("outbound_.8000_._.httpbin"),
            get("/").sni("other"),
        ),
    ];
    for (cond, yes, no) in cases {
        let e = allow(&format!("when: [{cond}]"));
        assert!(allowed(&e, &yes), "{cond} should match");
        assert!(!allowed(&e, &no), "{cond} should not match");
    }
    for bad in [
        "destination.labels[app]",
        "destination.namespace",
        "unknown.key",
        "experimental.envoy.filters.x[y]",
        "request.headers[a",
    ] {
        let err = load_err(&ap(
            "foo",
            "a",
            &format!("rules:\n- when: [{{key: \"{bad}\", values: [x]}}]"),
        ));
        assert!(err.contains("spec.rules[0].when[0].key"), "{bad}: {err}");
    }
    let err = load_err(&ap("foo", "a", "rules:\n- when: [{key: source.ip}]"));
    assert!(err.contains("values"), "{err}");
}

#[test]
fn i_1_principals_are_written_without_scheme() {
    let e = allow(
        "from: [{source: {principals: [cluster.local/ns/a/sa/b, \"cluster.local/ns/p/*\", \"*/sa/suffix\"]}}]",
    );
    assert!(allowed(
        &e,
        &get_from("spiffe://cluster.local/ns/a/sa/b", "/")
    ));
    assert!(allowed(
        &e,
        &get_from("spiffe://cluster.local/ns/p/sa/x", "/")
    ));
    assert!(allowed(
        &e,
        &get_from("spiffe://other.td/ns/q/sa/suffix", "/")
    ));
    assert!(!allowed(
        &e,
        &get_from("spiffe://cluster.local/ns/a/sa/c", "/")
    ));
    // A value with the scheme never matches.
    let e = allow("from: [{source: {principals: [\"spiffe://cluster.local/ns/a/sa/b\"]}}]");
    assert!(!allowed(
        &e,
        &get_from("spiffe://cluster.local/ns/a/sa/b", "/")
    ));
}

#[test]
fn i_2_namespaces_ignore_the_trust_domain() {
    let e = allow("from: [{source: {namespaces: [sleep, \"te*\"]}}]");
    assert!(allowed(
        &e,
        &get_from("spiffe://partner.example/ns/sleep/sa/x", "/")
    ));
    assert!(allowed(
        &e,
        &get_from("spiffe://cluster.local/ns/test/sa/x", "/")
    ));
    assert!(!allowed(
        &e,
        &get_from("spiffe://cluster.local/sleep/x", "/")
    ));
    assert!(!allowed(
        &e,
        &get_from("spiffe://cluster.local/ns/sleepy/sa/x", "/")
    ));
}

#[test]
fn i_3_service_accounts_any_trust_domain() {
    let e = allow("from: [{source: {serviceAccounts: [bar/sleep]}}]");
    assert!(allowed(
        &e,
        &get_from("spiffe://x.td/ns/bar/extra/sa/sleep/more", "/")
    ));
    assert!(!allowed(
        &e,
        &get_from("spiffe://x.td/ns/bar/sa/sleeper", "/")
    ));
}

#[test]
fn i_4_trust_domains() {
    let e = allow("from: [{source: {trustDomains: [partner.example, \"*.corp\"]}}]");
    assert!(allowed(
        &e,
        &get_from("spiffe://partner.example/ns/a/sa/b", "/")
    ));
    assert!(allowed(&e, &get_from("spiffe://eu.corp/ns/a/sa/b", "/")));
    assert!(!allowed(
        &e,
        &get_from("spiffe://cluster.local/ns/a/sa/b", "/")
    ));
    // The mesh trust domain expands to its aliases.
    let mesh = MeshConfig::default()
        .with_trust_domain("new.td")
        .with_trust_domain_alias("old.td");
    let e = engine_with(
        mesh,
        &ap(
            "foo",
            "a",
            "rules:\n- from: [{source: {trustDomains: [new.td]}}]",
        ),
    );
    assert!(allowed(&e, &get_from("spiffe://old.td/ns/a/sa/b", "/")));
    for bad in ["a/b", "*a*", "a*b"] {
        let err = load_err(&ap(
            "foo",
            "a",
            &format!("rules:\n- from: [{{source: {{trustDomains: [\"{bad}\"]}}}}]"),
        ));
        assert!(err.contains("trustDomains[0]"), "{bad}: {err}");
    }
}

#[test]
fn i_5_cluster_local_means_the_local_trust_domain() {
    let yaml = ap(
        "foo",
        "a",
        "rules:\n- from: [{source: {principals: [cluster.local/ns/a/sa/b]}}]",
    );
    let mesh = MeshConfig::default().with_trust_domain("new-td");
    let e = engine_with(mesh.clone(), &yaml);
    assert!(allowed(&e, &get_from("spiffe://new-td/ns/a/sa/b", "/")));
    assert!(!allowed(
        &e,
        &get_from("spiffe://cluster.local/ns/a/sa/b", "/")
    ));
    let e = engine_with(mesh.with_trust_domain_alias("cluster.local"), &yaml);
    assert!(allowed(
        &e,
        &get_from("spiffe://cluster.local/ns/a/sa/b", "/")
    ));
    // Values that are not 5 parts, or start with `*`, are left alone.
    let e = engine_with(
        MeshConfig::default().with_trust_domain("new-td"),
        &ap(
            "foo",
            "a",
            "rules:\n- from: [{source: {principals: [\"cluster.local/ns/a/*\"]}}]",
        ),
    );
    assert!(allowed(
        &e,
        &get_from("spiffe://cluster.local/ns/a/sa/x", "/")
    ));
    assert!(!allowed(&e, &get_from("spiffe://new-td/ns/a/sa/x", "/")));
    // source.principal gets the same treatment.
    let e = engine_with(
        MeshConfig::default().with_trust_domain("new-td"),
        &ap(
            "foo",
            "a",
            "rules:\n- when: [{key: source.principal, values: [cluster.local/ns/a/sa/b]}]",
        ),
    );
    assert!(allowed(&e, &get_from("spiffe://new-td/ns/a/sa/b", "/")));
}

#[test]
fn i_6_peer_and_request_identity_are_separate() {
    let e = allow("from: [{source: {requestPrincipals: [\"*\"]}}]");
    assert!(!allowed(
        &e,
        &get_from("spiffe://cluster.local/ns/a/sa/b", "/")
    ));
}

#[test]
fn i_5_the_engine_takes_its_trust_domain_from_the_workload_identity() {
    // A policy written Istio's way, for a workload whose SVID says example.org.
    let yaml = ap(
        "shop",
        "cart",
        "rules:\n- from: [{source: {principals: [cluster.local/ns/shop/sa/web]}}]",
    );
    let me = id("spiffe://example.org/ns/shop/sa/cart");
    let caller = get_from("spiffe://example.org/ns/shop/sa/web", "/");
    // With the default mesh config the local principal never matches.
    let default = authz::Engine::new(
        authz::Workload::new("shop"),
        MeshConfig::default(),
        &set(&yaml),
    );
    assert!(!allowed(&default, &caller));
    // Taken from the identity: trust domain example.org, namespace shop.
    let e = authz::Engine::for_identity(&me, &set(&yaml));
    assert!(allowed(&e, &caller));
    assert!(!allowed(
        &e,
        &get_from("spiffe://partner.org/ns/shop/sa/web", "/")
    ));
    assert!(!allowed(
        &e,
        &get_from("spiffe://example.org/ns/shop/sa/other", "/")
    ));
    // The namespace came from the ID too: the policy in `shop` does not
    // select a workload of namespace `billing`, which has no policy.
    let other =
        authz::Engine::for_identity(&id("spiffe://example.org/ns/billing/sa/x"), &set(&yaml));
    assert!(allowed(
        &other,
        &get_from("spiffe://example.org/ns/shop/sa/other", "/")
    ));
    // An ID not in Istio form lands in namespace `default`.
    let plain = authz::Engine::for_identity(
        &id("spiffe://example.org/cart"),
        &set(&ap(
            "default",
            "p",
            "rules:\n- from: [{source: {principals: [cluster.local/ns/shop/sa/web]}}]",
        )),
    );
    assert!(allowed(&plain, &caller));
    assert!(!allowed(
        &plain,
        &get_from("spiffe://example.org/ns/shop/sa/x", "/")
    ));
}
