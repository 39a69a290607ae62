//! `mesh-node demo` is the end-to-end proof of the whole system: it runs
//! here as a test, and a step that misbehaves fails it.

mod common;

use std::process::{Command, Stdio};

#[test]
fn demo_runs_every_step_and_exits_zero() {
    let _limit = test_support::time_limit(180);
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(common::BIN)
        .args(["demo", "--data-dir"])
        .arg(dir.path().join("demo"))
        .stdin(Stdio::null())
        .output()
        .expect("run mesh-node demo");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "demo failed:\n{stdout}\n{stderr}");
    for want in [
        "ingress -> productpage -> {details, reviews -> ratings}: 200",
        "ratings (caller spiffe://cluster.local/ns/bookinfo/sa/reviews)",
        "matched ns[bookinfo]-policy[ratings-policy]-rule[0]",
        "no policy matched: ALLOW policies apply but no rule matched",
        "details -> ratings GET /ratings/0: 403",
        "reviews -> ratings POST /ratings/0: 403",
        "connection closed, nothing served",
        "refused in the handshake",
        "reviews -> ratings POST is 200 after",
        "0 failed",
        "ingress -> productpage",
        "all steps behaved as expected",
    ] {
        assert!(
            stdout.contains(want),
            "demo output lacks `{want}`:\n{stdout}"
        );
    }
}

#[test]
fn a_broken_policy_set_fails_the_demo_naming_the_step() {
    let _limit = test_support::time_limit(180);
    let dir = tempfile::tempdir().unwrap();
    // A policy set without the rule that lets reviews read ratings.
    let policies = dir.path().join("policies");
    std::fs::create_dir_all(&policies).unwrap();
    let src = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("demo/policies");
    for entry in std::fs::read_dir(src).unwrap() {
        let path = entry.unwrap().path();
        if path.file_name().unwrap() != "ratings-policy.yaml" {
            std::fs::copy(&path, policies.join(path.file_name().unwrap())).unwrap();
        }
    }
    let out = Command::new(common::BIN)
        .args(["demo", "--data-dir"])
        .arg(dir.path().join("demo"))
        .arg("--policies")
        .arg(&policies)
        .stdin(Stdio::null())
        .output()
        .expect("run mesh-node demo");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "demo passed without ratings-policy");
    assert!(
        stderr.contains("step productpage failed"),
        "the failing step is not named: {stderr}"
    );
}
