//! §9 plaintext (P-*), §10 TCP (T-*), §11 responses (R-*), §12 dry-run (D-*).

mod common;

use authz::{
    Action, ExtAuthzVerdict, ExtensionProvider, JwtFailure, MeshConfig, PresentedToken,
    ProviderKind, Reason, Request, Response, TokenLocation,
};
use common::*;
use std::time::SystemTime;

#[test]
fn p_1_mtls_only_attributes_never_match_plaintext() {
    for field in [
        "principals: [\"*\"]",
        "namespaces: [\"*\"]",
        "serviceAccounts: [a/b]",
        "trustDomains: [\"*\"]",
    ] {
        let e = engine(&ap(
            "foo",
            "a",
            &format!("rules:\n- from: [{{source: {{{field}}}}}]"),
        ));
        assert!(!allowed(&e, &get("/")), "{field}");
    }
}

#[test]
fn p_2_deny_is_not_stricter_for_plaintext() {
    let e = engine(&ap(
        "foo",
        "d",
        "action: DENY\nrules:\n- from: [{source: {namespaces: [evil]}}]",
    ));
    assert!(allowed(&e, &get("/")));
    assert!(!allowed(
        &e,
        &get_from("spiffe://cluster.local/ns/evil/sa/x", "/")
    ));
    let e = engine(&ap(
        "foo",
        "a",
        "rules:\n- from: [{source: {notNamespaces: [evil]}}]",
    ));
    assert!(allowed(&e, &get("/")));
    // Remedy: DENY notPrincipals ["*"].
    let e = engine(&ap(
        "foo",
        "d",
        "action: DENY\nrules:\n- from: [{source: {notPrincipals: [\"*\"]}}]",
    ));
    assert!(!allowed(&e, &get("/")));
}

#[test]
fn p_3_only_protocol_inapplicable_fields_widen_deny() {
    let e = engine(&ap(
        "foo",
        "d",
        "action: DENY\nrules:\n- from: [{source: {principals: [a/b/c]}}]",
    ));
    assert!(allowed(&e, &Request::tcp().port(5432)));
    let e = engine(&ap(
        "foo",
        "d",
        "action: DENY\nrules:\n- to: [{operation: {methods: [GET]}}]",
    ));
    assert!(!allowed(&e, &Request::tcp().port(5432)));
}

#[test]
fn t_1_http_only_attributes_listed() {
    // TCP attributes keep working on TCP.
    let e = engine(&ap(
        "foo",
        "a",
        "rules:\n- to: [{operation: {ports: [\"5432\"]}}]\n  when: [{key: destination.port, values: [\"5432\"]}]",
    ));
    assert!(allowed(&e, &Request::tcp().port(5432)));
    assert!(!allowed(&e, &Request::tcp().port(5433)));
}

#[test]
fn t_2_allow_rule_with_http_attribute_is_dropped_on_tcp() {
    let e = engine(&ap(
        "foo",
        "a",
        "rules:\n- to: [{operation: {ports: [\"5432\"]}}, {operation: {methods: [GET]}}]",
    ));
    let d = e.check(&Request::tcp().port(5432));
    assert!(!d.allowed);
    assert_eq!(d.response, Response::ConnectionClosed);
    let e = engine(&ap(
        "foo",
        "a",
        "rules:\n- to: [{operation: {ports: [\"5432\"]}}]",
    ));
    assert_eq!(
        e.check(&Request::tcp().port(5432)).response,
        Response::Connected
    );
}

#[test]
fn t_3_deny_on_tcp_drops_only_http_parts() {
    let e = engine(&ap(
        "foo",
        "d",
        "action: DENY\nrules:\n- to: [{operation: {methods: [GET], ports: [\"9000\"]}}]",
    ));
    assert!(!allowed(&e, &Request::tcp().port(9000)));
    assert!(allowed(&e, &Request::tcp().port(9001)));
    let e = engine(&ap(
        "foo",
        "d",
        "action: DENY\nrules:\n- from: [{source: {notRequestPrincipals: [\"*\"]}}]",
    ));
    assert!(!allowed(&e, &Request::tcp().port(1)));
    let e = engine(&ap(
        "foo",
        "au",
        "action: AUDIT\nrules:\n- to: [{operation: {paths: [/x]}}]",
    ));
    assert!(e.check(&Request::tcp().port(1)).audit);
    // Validation warns about HTTP-only DENY rules.
    let s = set(&ap(
        "foo",
        "d",
        "action: DENY\nrules:\n- to: [{operation: {methods: [GET]}}]",
    ));
    assert!(s.warnings.iter().any(|w| w.message.contains("TCP")));
}

#[test]
fn t_4_http_only_provider_not_applied_to_tcp() {
    let yaml = ap(
        "foo",
        "c",
        "action: CUSTOM\nprovider: {name: ext}\nrules:\n- to: [{operation: {ports: [\"1\"]}}]",
    );
    let deny = |_: &str, _: &Request| ExtAuthzVerdict::Deny { status: 403 };
    let http = engine_with(
        MeshConfig::default()
            .with_extension_provider(ExtensionProvider::new("ext", ProviderKind::Http)),
        &yaml,
    );
    assert!(
        http.check_with(&Request::tcp().port(1), &deny, SystemTime::now())
            .allowed
    );
    let grpc = engine_with(
        MeshConfig::default()
            .with_extension_provider(ExtensionProvider::new("ext", ProviderKind::Grpc)),
        &yaml,
    );
    assert!(
        !grpc
            .check_with(&Request::tcp().port(1), &deny, SystemTime::now())
            .allowed
    );
}

#[test]
fn t_5_permissive_passthrough_tls_follows_tcp_rules() {
    // An explicit PERMISSIVE PeerAuthentication (not the default), under a
    // STRICT mesh-wide one, so the workload's mode really comes from it.
    let pa = doc(
        "PeerAuthentication",
        "istio-system",
        "mesh",
        "mtls: {mode: STRICT}",
    ) + &doc(
        "PeerAuthentication",
        "foo",
        "permissive",
        "selector: {matchLabels: {app: web}}\nmtls: {mode: PERMISSIVE}",
    );
    let allow_mesh = pa.clone()
        + &ap(
            "foo",
            "a",
            "rules:\n- from: [{source: {principals: [\"*\"]}}]",
        );
    let e = engine(&allow_mesh);
    assert_eq!(e.mtls_mode(443), authz::MtlsMode::Permissive);
    // A client's own (non-Istio) TLS is passed through as opaque TCP: the
    // connection is TLS, but no verifier produced a PeerIdentity.
    let passthrough = facts(443).with_tls().with_sni("db.example.org");
    let d = e.check_connection(&passthrough);
    assert_eq!(
        (d.response, d.reason.clone()),
        (Response::ConnectionClosed, Reason::NoAllowMatched),
        "not reset (PERMISSIVE), closed by the TCP rules"
    );
    // Istio mTLS on the same port carries the verified identity.
    let peer = verified_peer("spiffe://cluster.local/ns/a/sa/b");
    assert_eq!(
        e.check_connection(&passthrough.clone().with_peer(peer.clone()))
            .response,
        Response::Connected
    );
    // TCP rules (ports, connection.sni) apply to the passthrough connection.
    let deny = pa.clone()
        + &ap(
            "foo",
            "d",
            "action: DENY\nrules:\n- to: [{operation: {ports: [\"443\"]}}]\n  when: [{key: connection.sni, values: [db.example.org]}]",
        );
    let e = engine(&deny);
    assert_eq!(
        e.check_connection(&passthrough).response,
        Response::ConnectionClosed
    );
    assert_eq!(
        e.check_connection(&facts(443).with_tls().with_sni("other.example"))
            .response,
        Response::Connected
    );
    // Without the PERMISSIVE policy the mesh's STRICT mode resets it.
    let strict = engine(&doc(
        "PeerAuthentication",
        "istio-system",
        "mesh",
        "mtls: {mode: STRICT}",
    ));
    assert_eq!(
        strict.check_connection(&passthrough).response,
        Response::ConnectionReset
    );
}

#[test]
fn t_6_denied_tcp_is_closed() {
    let e = engine(&ap("foo", "d", "action: DENY\nrules:\n- {}"));
    assert_eq!(
        e.check(&Request::tcp()).response,
        Response::ConnectionClosed
    );
}

#[test]
fn r_1_http_deny_is_403_with_matched_policy_or_none() {
    let e = engine(
        &(ap(
            "foo",
            "d",
            "action: DENY\nrules:\n- to: [{operation: {paths: [/x]}}]",
        ) + &ap("foo", "a", "rules:\n- to: [{operation: {paths: [/y]}}]")),
    );
    let d = e.check(&get("/x"));
    assert_eq!(
        (d.response, d.policy.as_deref()),
        (Response::Http(403), Some("ns[foo]-policy[d]-rule[0]"))
    );
    let d = e.check(&get("/z"));
    assert_eq!((d.response, d.policy), (Response::Http(403), None));
}

#[test]
fn r_2_jwt_failures_are_401_audience_403() {
    let ra = doc(
        "RequestAuthentication",
        "foo",
        "jwt",
        "jwtRules:\n- issuer: https://issuer\n  audiences: [api]",
    );
    let e = engine(&ra);
    let bad = get("/").token(PresentedToken::failed(
        TokenLocation::bearer(),
        JwtFailure::Expired,
    ));
    let d = e.check(&bad);
    assert_eq!(d.response, Response::Http(401));
    assert_eq!(
        d.reason.to_string(),
        "request authentication failed: Jwt is expired"
    );
    let mut claims = serde_json::Map::new();
    claims.insert("iss".into(), "https://issuer".into());
    claims.insert("aud".into(), "other".into());
    let d = e.check(&get("/").token(PresentedToken::verified(TokenLocation::bearer(), claims)));
    assert_eq!(d.response, Response::Http(403));
    assert_eq!(d.reason, Reason::Jwt(JwtFailure::AudienceNotAllowed));
}

#[test]
fn r_3_strict_plaintext_is_reset() {
    let e = engine(&doc(
        "PeerAuthentication",
        "foo",
        "default",
        "mtls: {mode: STRICT}",
    ));
    let d = e.check(&get("/"));
    assert_eq!(d.response, Response::ConnectionReset);
    assert_eq!(d.reason, Reason::StrictMtlsPlaintext);
    assert!(
        e.check(&get_from("spiffe://cluster.local/ns/a/sa/b", "/"))
            .allowed
    );
}

#[test]
fn r_4_tcp_deny_closes() {
    let e = engine(&ap(
        "foo",
        "a",
        "rules:\n- to: [{operation: {ports: [\"1\"]}}]",
    ));
    assert_eq!(
        e.check(&Request::tcp().port(2)).response,
        Response::ConnectionClosed
    );
}

#[test]
fn r_5_shadow_results_reported_separately() {
    let mut yaml = ap("foo", "da", "rules:\n- to: [{operation: {paths: [/a]}}]");
    yaml = yaml.replace(
        "namespace: foo}",
        "namespace: foo, annotations: {istio.io/dry-run: \"true\"}}",
    );
    let mut dd = ap(
        "foo",
        "dd",
        "action: DENY\nrules:\n- to: [{operation: {paths: [/b]}}]",
    );
    dd = dd.replace(
        "namespace: foo}",
        "namespace: foo, annotations: {istio.io/dry-run: \"true\"}}",
    );
    let e = engine(&(yaml + &dd));
    let d = e.check(&get("/b"));
    assert!(d.allowed);
    assert_eq!(d.shadow.len(), 2);
    let allow = d.shadow.iter().find(|s| s.action == Action::Allow);
    let deny = d.shadow.iter().find(|s| s.action == Action::Deny);
    assert_eq!(allow.map(|s| s.allowed), Some(false));
    assert_eq!(
        deny.map(|s| (s.allowed, s.policy.as_deref())),
        Some((false, Some("ns[foo]-policy[dd]-rule[0]")))
    );
}

fn dry(value: &str, spec: &str) -> String {
    ap("foo", "p", spec).replace(
        "namespace: foo}",
        &format!("namespace: foo, annotations: {{istio.io/dry-run: \"{value}\"}}}}"),
    )
}

#[test]
fn d_1_dry_run_parses_like_go_parsebool() {
    let spec = "action: DENY\nrules:\n- {}";
    for t in ["1", "t", "T", "TRUE", "true", "True"] {
        assert!(allowed(&engine(&dry(t, spec)), &get("/")), "{t}");
    }
    for f in ["0", "f", "FALSE", "false", "False"] {
        assert!(!allowed(&engine(&dry(f, spec)), &get("/")), "{f}");
    }
    // Unparsable → enforced, with a warning.
    assert!(!allowed(&engine(&dry("yes", spec)), &get("/")));
    assert!(
        set(&dry("yes", spec))
            .warnings
            .iter()
            .any(|w| w.field.contains("istio.io/dry-run"))
    );
}

#[test]
fn d_2_dry_run_is_never_enforced() {
    let e = engine(&dry("true", "action: DENY\nrules:\n- {}"));
    let d = e.check(&get("/"));
    assert!(d.allowed);
    assert_eq!(
        d.shadow[0].policy.as_deref(),
        Some("ns[foo]-policy[p]-rule[0]")
    );
}

#[test]
fn d_3_dry_run_allow_does_not_count_for_default_deny() {
    let e = engine(&dry("true", "rules:\n- to: [{operation: {paths: [/a]}}]"));
    assert!(allowed(&e, &get("/b")));
    let yaml = dry("true", "rules:\n- to: [{operation: {paths: [/a]}}]")
        .replace("name: p,", "name: q,")
        + &ap(
            "foo",
            "enforced",
            "rules:\n- to: [{operation: {paths: [/b]}}]",
        );
    let e = engine(&yaml);
    assert!(!allowed(&e, &get("/a")));
    assert!(allowed(&e, &get("/b")));
}

#[test]
fn d_4_dry_run_custom_still_calls_the_provider() {
    let e = engine_with(
        MeshConfig::default()
            .with_extension_provider(ExtensionProvider::new("opa", ProviderKind::Grpc)),
        &dry(
            "true",
            "action: CUSTOM\nprovider: {name: opa}\nrules:\n- {}",
        ),
    );
    let called = std::cell::Cell::new(false);
    let spy = |_: &str, _: &Request| {
        called.set(true);
        ExtAuthzVerdict::Allow
    };
    assert!(e.check_with(&get("/"), &spy, SystemTime::now()).allowed);
    assert!(called.get());
}
