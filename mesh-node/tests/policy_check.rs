//! Runs the `mesh-node policy check` binary end to end.

use std::io::Write as _;
use std::path::PathBuf;
use std::process::{Command, Output, Stdio};

const POLICIES: &str = r#"
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: allow-sleep, namespace: foo}
spec:
  selector: {matchLabels: {app: web}}
  rules:
  - from: [{source: {principals: ["cluster.local/ns/sleep/sa/sleep"]}}]
    to: [{operation: {methods: ["GET"], paths: ["/api/*"]}}]
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: deny-admin, namespace: foo}
spec:
  action: DENY
  rules:
  - to: [{operation: {paths: ["/api/admin"]}}]
---
apiVersion: security.istio.io/v1
kind: RequestAuthentication
metadata: {name: jwt, namespace: foo}
spec:
  jwtRules:
  - issuer: https://issuer.example
    audiences: [shop]
"#;

struct Scratch(PathBuf);

impl Scratch {
    fn new(name: &str) -> Self {
        let dir = std::env::temp_dir().join(format!("mesh-node-{name}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("create scratch dir");
        std::fs::write(dir.join("policies.yaml"), POLICIES).expect("write policies");
        Scratch(dir)
    }

    fn file(&self, name: &str, body: &str) -> PathBuf {
        let p = self.0.join(name);
        std::fs::write(&p, body).expect("write file");
        p
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn run(s: &Scratch, request: &str, extra: &[&str]) -> Output {
    let req = s.file("request.json", request);
    Command::new(env!("CARGO_BIN_EXE_mesh-node"))
        .args(["policy", "check", "--policy"])
        .arg(s.0.join("policies.yaml"))
        .args([
            "--workload-namespace",
            "foo",
            "--workload-label",
            "app=web",
            "--request",
        ])
        .arg(req)
        .args(extra)
        .output()
        .expect("run mesh-node")
}

fn json(out: &Output) -> serde_json::Value {
    assert_eq!(
        out.status.code(),
        Some(0),
        "stderr: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("stdout is one JSON object")
}

#[test]
fn allowed_request_prints_matching_rule() {
    let s = Scratch::new("allow");
    let out = run(
        &s,
        r#"{"principal": "spiffe://cluster.local/ns/sleep/sa/sleep", "method": "GET", "path": "/api/items?x=1",
            "host": "web", "port": 8080, "headers": {}, "source_ip": "10.0.0.1", "jwt_claims": null, "protocol": "http"}"#,
        &[],
    );
    let v = json(&out);
    assert_eq!(v["decision"], "allow");
    assert_eq!(v["status"], 200);
    assert_eq!(v["policy"], "ns[foo]-policy[allow-sleep]-rule[0]");
    assert_eq!(v["audit"], false);
}

#[test]
fn denied_and_default_denied_requests() {
    let s = Scratch::new("deny");
    let out = run(
        &s,
        r#"{"principal": "spiffe://cluster.local/ns/sleep/sa/sleep", "method": "GET", "path": "/api/admin", "protocol": "http"}"#,
        &[],
    );
    let v = json(&out);
    assert_eq!(
        (v["decision"].as_str(), v["status"].as_u64()),
        (Some("deny"), Some(403))
    );
    assert_eq!(v["policy"], "ns[foo]-policy[deny-admin]-rule[0]");
    // Plaintext: no principal, no ALLOW match → default deny with null policy.
    let out = run(
        &s,
        "principal: null\nmethod: GET\npath: /api/items\nprotocol: http\n",
        &[],
    );
    let v = json(&out);
    assert_eq!(v["decision"], "deny");
    assert!(v["policy"].is_null());
    // Rejected before authorization (M-9): still a decision, status 400.
    let out = run(
        &s,
        r#"{"method": "get", "path": "/api/items", "protocol": "http"}"#,
        &[],
    );
    let v = json(&out);
    assert_eq!(
        (v["decision"].as_str(), v["status"].as_u64()),
        (Some("deny"), Some(400))
    );
}

#[test]
fn jwt_failures_and_tcp_statuses() {
    let s = Scratch::new("jwt");
    let out = run(
        &s,
        r#"{"principal": null, "method": "GET", "path": "/", "jwt_claims": {"iss": "https://issuer.example"}, "jwt_valid": false, "protocol": "http"}"#,
        &[],
    );
    assert_eq!(json(&out)["status"], 401);
    let out = run(
        &s,
        r#"{"principal": null, "method": "GET", "path": "/", "jwt_claims": {"iss": "https://issuer.example", "aud": "other"}, "protocol": "http"}"#,
        &[],
    );
    assert_eq!(json(&out)["status"], 403);
    let out = run(
        &s,
        r#"{"principal": null, "port": 5432, "protocol": "tcp"}"#,
        &[],
    );
    assert_eq!(json(&out)["status"], "connection_closed");
}

#[test]
fn trust_domain_flag_rewrites_cluster_local() {
    let s = Scratch::new("td");
    let req = r#"{"principal": "spiffe://new.td/ns/sleep/sa/sleep", "method": "GET", "path": "/api/x", "protocol": "http"}"#;
    assert_eq!(json(&run(&s, req, &[]))["decision"], "deny");
    assert_eq!(
        json(&run(&s, req, &["--trust-domain", "new.td"]))["decision"],
        "allow"
    );
}

#[test]
fn stdin_request() {
    let s = Scratch::new("stdin");
    let mut child = Command::new(env!("CARGO_BIN_EXE_mesh-node"))
        .args(["policy", "check", "--policy"])
        .arg(&s.0)
        .args(["--workload-namespace", "foo", "--request", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("spawn mesh-node");
    child
        .stdin
        .take()
        .expect("stdin is piped")
        .write_all(b"{\"protocol\": \"tcp\", \"port\": 1}")
        .expect("write stdin");
    let out = child.wait_with_output().expect("wait");
    // The path-only DENY becomes deny-all on TCP (T-3).
    assert_eq!(json(&out)["status"], "connection_closed");
}

#[test]
fn invalid_input_exits_2_with_a_message() {
    let s = Scratch::new("bad");
    let out = run(
        &s,
        r#"{"protocol": "http", "method": "GET", "path": "/", "principal": "not-an-id"}"#,
        &[],
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("principal"));
    let out = run(
        &s,
        r#"{"protocol": "http", "method": "GET", "path": "/", "colour": "red"}"#,
        &[],
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("colour"));
    let bad = s.file("bad.yaml", "apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata: {name: x, namespace: foo}\nspec: {action: DENY}\n");
    let out = Command::new(env!("CARGO_BIN_EXE_mesh-node"))
        .args(["policy", "check", "--policy"])
        .arg(&bad)
        .args(["--workload-namespace", "foo", "--request"])
        .arg(s.file("r.json", "{\"protocol\": \"tcp\"}"))
        .output()
        .expect("run mesh-node");
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("bad.yaml") && err.contains("document 0") && err.contains("spec.rules"),
        "{err}"
    );
    let out = run(
        &s,
        r#"{"protocol": "tcp"}"#,
        &["--trust-domain", "Bad Domain"],
    );
    assert_eq!(out.status.code(), Some(2));
}
