//! Policy algebra: adding DENY never allows more; order never matters;
//! the indexes never change a decision.

mod common;

use authz::{Engine, MeshConfig, PolicySet, Request};
use common::*;
use proptest::prelude::*;

const NAMESPACES: [&str; 3] = ["a", "b", "c"];
const PATHS: [&str; 4] = ["/x", "/y", "/api/z", "/admin"];

fn rule() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("{}".to_owned()),
        (0..3usize).prop_map(|i| format!(
            "{{from: [{{source: {{namespaces: [{}]}}}}]}}",
            NAMESPACES[i]
        )),
        (0..3usize).prop_map(|i| format!(
            "{{from: [{{source: {{notPrincipals: [\"cluster.local/ns/{0}/sa/{0}\"]}}}}]}}",
            NAMESPACES[i]
        )),
        (0..3usize).prop_map(|i| format!(
            "{{from: [{{source: {{principals: [\"cluster.local/ns/{0}/sa/{0}\"]}}}}]}}",
            NAMESPACES[i]
        )),
        (0..4usize).prop_map(|i| format!("{{to: [{{operation: {{paths: [\"{}\"]}}}}]}}", PATHS[i])),
        (0..4usize).prop_map(|i| format!(
            "{{to: [{{operation: {{notPaths: [\"{}\"], methods: [GET]}}}}]}}",
            PATHS[i]
        )),
        Just("{to: [{operation: {paths: [\"/api/*\"]}}]}".to_owned()),
        Just("{to: [{operation: {paths: [\"/x\", \"/ad*\"]}}, {operation: {paths: [\"/y*\"], methods: [POST]}}]}".to_owned()),
        Just("{from: [{source: {principals: [\"cluster.local/ns/a/sa/a\"]}}, {source: {namespaces: [b]}}]}".to_owned()),
        Just("{to: [{operation: {ports: [\"9000\"]}}]}".to_owned()),
    ]
}

fn policy() -> impl Strategy<Value = (String, Vec<String>)> {
    (
        prop_oneof![Just("ALLOW"), Just("DENY"), Just("AUDIT")],
        prop::collection::vec(rule(), 1..4),
    )
        .prop_map(|(action, rules)| (action.to_owned(), rules))
}

fn render(policies: &[(String, Vec<String>)], offset: usize) -> String {
    policies
        .iter()
        .enumerate()
        .map(|(i, (action, rules))| {
            let rules: String = rules.iter().map(|r| format!("- {r}\n")).collect();
            ap(
                "foo",
                &format!("p{}", i + offset),
                &format!("action: {action}\nrules:\n{rules}"),
            )
        })
        .collect()
}

fn requests() -> Vec<Request> {
    let mut out = Vec::new();
    for path in PATHS {
        for method in ["GET", "POST"] {
            out.push(Request::http(method, path).port(8080));
            for ns in NAMESPACES {
                out.push(
                    Request::http(method, path)
                        .port(9000)
                        .peer(id(&format!("spiffe://cluster.local/ns/{ns}/sa/{ns}"))),
                );
            }
        }
    }
    out.push(Request::tcp().port(9000));
    out.push(
        Request::tcp()
            .port(1)
            .peer(id("spiffe://cluster.local/ns/a/sa/a")),
    );
    out
}

fn build(yaml: &str) -> Engine {
    let set = PolicySet::from_yaml_str("prop.yaml", yaml).expect("generated policies are valid");
    Engine::new(web(), MeshConfig::default(), &set)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn adding_a_deny_never_turns_deny_into_allow(
        base in prop::collection::vec(policy(), 0..5),
        extra in prop::collection::vec(rule(), 1..3),
    ) {
        let before = build(&render(&base, 0));
        let deny = vec![("DENY".to_owned(), extra)];
        let after = build(&(render(&base, 0) + &render(&deny, 100)));
        for r in requests() {
            let (b, a) = (before.check(&r), after.check(&r));
            prop_assert!(b.allowed || !a.allowed, "{:?} became allowed", r);
        }
    }

    #[test]
    fn decisions_do_not_depend_on_policy_order(
        policies in prop::collection::vec(policy(), 0..6),
        seed in any::<u64>(),
    ) {
        let mut shuffled: Vec<(usize, (String, Vec<String>))> = policies.iter().cloned().enumerate().collect();
        // Deterministic shuffle: rotate and reverse by the seed; keep names with their policy.
        if !shuffled.is_empty() {
            let k = (seed as usize) % shuffled.len();
            shuffled.rotate_left(k);
            if seed % 2 == 0 { shuffled.reverse(); }
        }
        let ordered = build(&render(&policies, 0));
        let yaml: String = shuffled.iter().map(|(i, p)| render(std::slice::from_ref(p), *i)).collect();
        let reordered = build(&yaml);
        for r in requests() {
            let (x, y) = (ordered.check(&r), reordered.check(&r));
            prop_assert_eq!((x.allowed, x.response, x.audit), (y.allowed, y.response, y.audit));
        }
    }

    #[test]
    fn indexes_never_change_a_decision(policies in prop::collection::vec(policy(), 0..6)) {
        let e = build(&render(&policies, 0));
        for r in requests() {
            prop_assert_eq!(e.check(&r), e.check_unindexed(&r));
        }
    }
}
