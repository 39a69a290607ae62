//! §13 validation (V-*) and loading errors.

mod common;

use authz::{LoadError, PolicySet};
use common::*;

fn rejects(spec: &str, field: &str) {
    let err = load_err(&ap("foo", "p", spec));
    assert!(err.contains(field), "expected `{field}` in: {err}");
}

#[test]
fn v_1_rejections() {
    rejects(
        "selector: {matchLabels: {a: b}}\ntargetRef: {kind: Gateway, name: g}\nrules:\n- {}",
        "spec.selector",
    );
    rejects("provider: {name: x}\nrules:\n- {}", "spec.provider");
    rejects("action: DENY", "spec.rules");
    rejects("action: CUSTOM\nrules:\n- {}", "spec.provider.name");
    rejects("rules:\n- from: []", "spec.rules[0].from");
    rejects("rules:\n- to: []", "spec.rules[0].to");
    rejects("rules:\n- from: null", "spec.rules[0].from");
    rejects("rules:\n- from: [null]", "spec.rules[0].from[0]");
    rejects(
        "rules:\n- to: [{operation: {}}]",
        "spec.rules[0].to[0].operation",
    );
    rejects(
        "rules:\n- to: [{operation: {paths: [\"\"]}}]",
        "spec.rules[0].to[0].operation.paths[0]",
    );
    rejects(
        "rules:\n- from: [{source: {ipBlocks: [300.0.0.1]}}]",
        "ipBlocks[0]",
    );
    rejects(
        "rules:\n- to: [{operation: {ports: [\"70000\"]}}]",
        "ports[0]",
    );
    rejects("rules:\n- to: [{operation: {ports: [http]}}]", "ports[0]");
    rejects(
        "rules:\n- when: [{values: [a]}]",
        "spec.rules[0].when[0].key",
    );
    rejects(
        "rules:\n- when: [{key: source.ip, values: [nope]}]",
        "spec.rules[0].when[0].values[0]",
    );
    rejects(
        "rules:\n- when: [{key: destination.port, values: [\"-1\"]}]",
        "values[0]",
    );
    rejects(
        "rules:\n- when: [{key: source.serviceAccount, values: [\"a/*\"]}]",
        "values[0]",
    );
    rejects(
        "rules:\n- when: [{key: source.trustDomain, values: [a/b]}]",
        "values[0]",
    );
    rejects("action: MAYBE\nrules:\n- {}", "spec.action");
    // Typos never silently weaken a policy.
    rejects(
        "action: DENY\nrules:\n- from: [{source: {notPrincipal: [\"*\"]}}]",
        "source.notPrincipal",
    );
}

#[test]
fn v_2_warnings_are_accepted() {
    let s = set(&ap("foo", "p", "selector: {}\nrules:\n- {}"));
    assert_eq!(s.authorization.len(), 1);
    assert!(s.warnings.iter().any(|w| w.field == "spec.selector"));
    let s = set(&ap(
        "foo",
        "p",
        "action: DENY\nrules:\n- from: [{source: {requestPrincipals: [\"*\"]}}]",
    ));
    assert!(s.warnings.iter().any(|w| w.field == "spec.rules[0]"));
}

#[test]
fn v_3_one_bad_document_rejects_the_whole_load() {
    let yaml = ap("foo", "good", "rules:\n- {}")
        + &ap("foo", "bad", "rules:\n- to: [{operation: {ports: [x]}}]");
    match PolicySet::from_yaml_str("set.yaml", &yaml) {
        Err(LoadError::Invalid {
            file,
            document,
            error,
        }) => {
            assert_eq!(file.to_str(), Some("set.yaml"));
            assert_eq!(document, 1);
            assert_eq!(error.field, "spec.rules[0].to[0].operation.ports[0]");
        }
        other => panic!("expected an invalid-document error, got {other:?}"),
    }
}

#[test]
fn malformed_yaml_names_file_and_document() {
    let yaml = ap("foo", "good", "rules:\n- {}") + "---\nkind: [oops\n";
    match PolicySet::from_yaml_str("x.yaml", &yaml) {
        Err(LoadError::Syntax { document, .. }) => assert_eq!(document, 1),
        other => panic!("expected a syntax error, got {other:?}"),
    }
    let err = load_err(
        "apiVersion: networking.istio.io/v1\nkind: AuthorizationPolicy\nmetadata: {name: a}\n",
    );
    assert!(err.contains("apiVersion"), "{err}");
    let err = load_err(
        "apiVersion: security.istio.io/v1beta1\nkind: Sidecar\nmetadata: {name: a, namespace: b}\n",
    );
    assert!(err.contains("kind"), "{err}");
    let err = load_err(
        "apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata: {namespace: b}\n",
    );
    assert!(err.contains("metadata.name"), "{err}");
}

#[test]
fn directories_load_all_or_nothing() {
    let dir = std::env::temp_dir().join(format!("authz-load-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    std::fs::write(dir.join("a.yaml"), ap("foo", "a", "rules:\n- {}")).expect("write");
    std::fs::write(
        dir.join("b.yml"),
        doc("PeerAuthentication", "foo", "pa", "mtls: {mode: STRICT}"),
    )
    .expect("write");
    std::fs::write(dir.join("ignored.txt"), "not yaml: [").expect("write");
    let s = PolicySet::load(&[&dir]).expect("directory loads");
    assert_eq!((s.authorization.len(), s.peer_authentication.len()), (1, 1));
    std::fs::write(dir.join("c.yaml"), ap("foo", "c", "action: DENY")).expect("write");
    let err = PolicySet::load(&[&dir])
        .map(|_| ())
        .expect_err("bad file fails the load");
    assert!(err.to_string().contains("c.yaml"), "{err}");
    let _ = std::fs::remove_dir_all(&dir);
}
