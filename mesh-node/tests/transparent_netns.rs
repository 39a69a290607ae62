//! Transparent interception end to end: an unmodified `curl` in one
//! network namespace calls an HTTP application in another by name, and
//! iptables rules put both `mesh-node sidecar`s in the path, with mTLS
//! between them.
//!
//! ```text
//!   mtp<pid>c "productpage"                  mtp<pid>s "reviews"
//!   mtp<pid>c0 10.200.0.1/24  ──── veth ────  mtp<pid>s0 10.200.0.2/24
//!   curl as uid 1000                          python3 app on 127.0.0.1:9080
//!   mesh-node sidecar (root)                  mesh-node sidecar (root)
//! ```
//!
//! In each namespace `mesh-node iptables --apply --proxy-uid 0` redirects
//! outbound TCP to 15001 and inbound TCP to 15006, exempting the sidecars'
//! own traffic (uid 0). `reviews.bookinfo` resolves to 10.200.0.2 through
//! `/etc/netns/<ns>/hosts`, which `ip netns exec` mounts over
//! `/etc/hosts`. The client's sidecar knows the service as a static
//! endpoint with the reviews SPIFFE ID; the server's sidecar enforces a
//! STRICT PeerAuthentication, so plaintext that bypasses the client's
//! sidecar (root is exempt from redirection) is refused.
//!
//! The server's host also runs a plain HTTP server outside the mesh on port
//! 9099, which its rules do not intercept: the client's sidecar refuses
//! it under the default REGISTRY_ONLY and passes it through under
//! ALLOW_ANY.
//!
//! No namespace has a default route: traffic cannot leave them. Needs
//! root and `ip`, `iptables`, `curl`, `setpriv` and `python3`; without
//! them the test prints `SKIPPED:` (and fails under `CI=true`).

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_mesh-node");
const TEST: &str = "transparent_netns";
use test_support::netns::ip;

const PREFIX: &str = "mtp";
/// The application's uid: not exempt, so its traffic is redirected.
const APP_UID: u32 = 1000;
const TD: &str = "example.org";
const PRODUCTPAGE_ID: &str = "spiffe://example.org/ns/bookinfo/sa/productpage";
const REVIEWS_ID: &str = "spiffe://example.org/ns/bookinfo/sa/reviews";
const CLIENT_IP: &str = "10.200.0.1";
const SERVER_IP: &str = "10.200.0.2";
/// A plain HTTP server on the server's host that is no mesh service.
const EXTERNAL_PORT: &str = "9099";

const STRICT: &str = r#"
apiVersion: security.istio.io/v1
kind: PeerAuthentication
metadata: {name: strict, namespace: bookinfo}
spec:
  mtls: {mode: STRICT}
"#;

/// The application: answers every GET with what it received.
const APP: &str = r#"
import http.server, sys

class Echo(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_GET(self):
        body = "path=%s\nhost=%s\nxfcc=%s\n" % (
            self.path,
            self.headers.get("host"),
            self.headers.get("x-forwarded-client-cert"),
        )
        body = body.encode()
        self.send_response(200)
        self.send_header("content-type", "text/plain")
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, fmt, *args):
        sys.stderr.write("app: " + (fmt % args) + "\n")
        sys.stderr.flush()

http.server.ThreadingHTTPServer(("127.0.0.1", 9080), Echo).serve_forever()
"#;

fn etc_dir(ns: &str) -> PathBuf {
    Path::new("/etc/netns").join(ns)
}

/// Kills what still runs in `ns` (only ever a namespace this test named),
/// deletes it and its `/etc/netns` directory.
fn delete_netns(ns: &str) -> Result<(), String> {
    let _ = std::fs::remove_dir_all(etc_dir(ns));
    test_support::netns::delete_netns(ns)
}

/// Deletes namespaces (and their `/etc/netns` directories) a killed earlier
/// run left: `mtp<pid>c|s` whose pid no longer runs.
fn delete_stale() {
    let stale = |name: &str| test_support::netns::is_stale(name, PREFIX, &["c", "s"]);
    for ns in test_support::netns::stale_netns(PREFIX, &["c", "s"]) {
        let _ = delete_netns(&ns);
    }
    if let Ok(dirs) = std::fs::read_dir("/etc/netns") {
        for dir in dirs.flatten() {
            if stale(&dir.file_name().to_string_lossy()) {
                let _ = std::fs::remove_dir_all(dir.path());
            }
        }
    }
}

/// The two namespaces, deleted on drop.
struct Namespaces {
    /// productpage's, 10.200.0.1.
    client: String,
    /// reviews', 10.200.0.2.
    server: String,
    /// Whether this test made `/etc/netns` (removed again if left empty).
    made_etc_netns: bool,
}

impl Namespaces {
    fn create() -> Result<Namespaces, String> {
        delete_stale();
        let pid = std::process::id();
        let (c, s) = (format!("{PREFIX}{pid}c"), format!("{PREFIX}{pid}s"));
        ip(&["netns", "add", &c])?;
        // From here on, a failure deletes what was made.
        let made = Namespaces {
            client: c.clone(),
            server: s.clone(),
            made_etc_netns: !Path::new("/etc/netns").exists(),
        };
        ip(&["netns", "add", &s])?;
        let (c0, s0) = (format!("{c}0"), format!("{s}0"));
        // Both ends are made inside the namespaces: nothing of this test
        // ever exists in the root namespace.
        #[rustfmt::skip]
        ip(&["-n", &c, "link", "add", &c0, "type", "veth", "peer", "name", &s0, "netns", &s])?;
        for (ns, dev, addr) in [(&c, &c0, CLIENT_IP), (&s, &s0, SERVER_IP)] {
            ip(&["-n", ns, "link", "set", "lo", "up"])?;
            ip(&["-n", ns, "addr", "add", &format!("{addr}/24"), "dev", dev])?;
            ip(&["-n", ns, "link", "set", dev, "up"])?;
            let etc = etc_dir(ns);
            std::fs::create_dir_all(&etc).map_err(|e| format!("{}: {e}", etc.display()))?;
            std::fs::write(
                etc.join("hosts"),
                format!("127.0.0.1 localhost\n{SERVER_IP} reviews.bookinfo\n"),
            )
            .map_err(|e| format!("{}/hosts: {e}", etc.display()))?;
        }
        Ok(made)
    }
}

impl Drop for Namespaces {
    fn drop(&mut self) {
        for ns in [&self.client, &self.server] {
            if let Err(e) = delete_netns(ns) {
                eprintln!("cleanup: {e}");
            }
        }
        if self.made_etc_netns {
            // Fails, as it should, if something else has put files there.
            let _ = std::fs::remove_dir("/etc/netns");
        }
    }
}

/// `ip netns exec NS [setpriv … uid] PROGRAM`.
fn in_netns(ns: &str, uid: Option<u32>, program: &str) -> Command {
    let mut cmd = Command::new("ip");
    cmd.args(["netns", "exec", ns]);
    if let Some(uid) = uid {
        let id = uid.to_string();
        cmd.args(["setpriv", "--reuid", &id, "--regid", &id, "--clear-groups"]);
    }
    cmd.arg(program).current_dir("/");
    for proxy in ["http_proxy", "HTTP_PROXY", "all_proxy", "ALL_PROXY"] {
        cmd.env_remove(proxy);
    }
    cmd
}

/// A process started by this test, its output in a file; killed by its
/// pid on drop, its output shown if the test is failing.
struct Proc {
    name: &'static str,
    child: Child,
    log: PathBuf,
}

impl Proc {
    fn start(name: &'static str, cmd: &mut Command, dir: &Path) -> Proc {
        let log = dir.join(format!("{name}.log"));
        let file = std::fs::File::create(&log).unwrap();
        let child = cmd
            .stdin(Stdio::null())
            .stdout(file.try_clone().unwrap())
            .stderr(file)
            .spawn()
            .unwrap_or_else(|e| panic!("starting {name}: {e}"));
        Proc { name, child, log }
    }

    /// Fails the test if the process has ended.
    fn assert_running(&mut self) {
        if let Ok(Some(status)) = self.child.try_wait() {
            panic!(
                "{} exited ({status}):\n{}",
                self.name,
                std::fs::read_to_string(&self.log).unwrap_or_default()
            );
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            eprintln!(
                "---- {} output ----\n{}",
                self.name,
                std::fs::read_to_string(&self.log).unwrap_or_default()
            );
        }
    }
}

/// Runs a command to its end, at most `secs` seconds.
fn run(cmd: &mut Command, secs: u64) -> Output {
    test_support::run_bounded(cmd, Duration::from_secs(secs)).unwrap_or_else(|e| panic!("{e}"))
}

/// `curl -sS -D - --noproxy '*' URL` in `ns` as `uid` (root when `None`),
/// at most 10 s.
fn curl(ns: &str, uid: Option<u32>, url: &str) -> Output {
    run(
        in_netns(ns, uid, "curl").args([
            "-sS",
            "-D",
            "-",
            "--noproxy",
            "*",
            "--max-time",
            "10",
            url,
        ]),
        20,
    )
}

fn text(out: &Output) -> String {
    format!(
        "{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// Waits until `url` answers 2xx to root in `ns`, failing the test if one
/// of `procs` exits first or `secs` pass.
fn wait_http(ns: &str, url: &str, procs: &mut [&mut Proc], secs: u64) {
    let end = Instant::now() + Duration::from_secs(secs);
    loop {
        for p in procs.iter_mut() {
            p.assert_running();
        }
        let out = run(
            in_netns(ns, None, "curl").args(["-sf", "--noproxy", "*", "--max-time", "2", url]),
            10,
        );
        if out.status.success() {
            return;
        }
        assert!(
            Instant::now() < end,
            "{url} in {ns} did not answer within {secs} s: {}",
            text(&out)
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// `mesh-node iptables ARGS` inside `ns`; returns what it printed.
fn iptables_cli(ns: &str, args: &[&str]) -> String {
    let out = run(in_netns(ns, None, BIN).arg("iptables").args(args), 60);
    assert!(out.status.success(), "iptables {args:?}: {}", text(&out));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// `iptables -t nat -S` inside `ns`.
fn nat_rules(ns: &str) -> String {
    let out = run(in_netns(ns, None, "iptables").args(["-t", "nat", "-S"]), 30);
    assert!(out.status.success(), "iptables -S: {}", text(&out));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Writes one sidecar's identity and configuration into `dir`, `extra`
/// at the top level and `sources` in `[sources]`; returns the
/// configuration file.
fn sidecar_config(
    dir: &Path,
    ca: &test_support::TestCa,
    service: &str,
    extra: &str,
    sources: &str,
) -> PathBuf {
    let id = format!("spiffe://{TD}/ns/bookinfo/sa/{service}");
    let leaf = ca.leaf(&id);
    let dir = dir.join(service);
    std::fs::create_dir_all(&dir).unwrap();
    let cert = dir.join("cert.pem");
    let key = dir.join("key.pem");
    let bundle = dir.join("bundle.pem");
    std::fs::write(&cert, leaf.chain_pem()).unwrap();
    std::fs::write(&key, leaf.key_pem()).unwrap();
    std::fs::write(&bundle, test_support::pem("CERTIFICATE", &ca.root_cert())).unwrap();
    let config = dir.join("sidecar.toml");
    std::fs::write(
        &config,
        format!(
            r#"drain_ms = 0

[workload]
namespace = "bookinfo"
name = "{service}-v1"
service = "{service}"

[inbound]
listen = "0.0.0.0:15006"
transparent = true

[outbound]
listen = "127.0.0.1:15001"
transparent = true

[admin]
listen = "127.0.0.1:15000"

{extra}

[sources]
identity_files = {{ cert = "{}", key = "{}", bundle = "{}" }}
{sources}
"#,
            cert.display(),
            key.display(),
            bundle.display()
        ),
    )
    .unwrap();
    config
}

/// The lines of `metric` in a Prometheus text dump that carry every one
/// of `labels`.
fn series<'a>(dump: &'a str, metric: &str, labels: &[&str]) -> Vec<&'a str> {
    dump.lines()
        .filter(|l| l.starts_with(&format!("{metric}{{")))
        .filter(|l| labels.iter().all(|label| l.contains(label)))
        .collect()
}

/// The effective uid, from `/proc/self/status`.
fn euid() -> Option<u32> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("Uid:"))?;
    line.split_whitespace().nth(2)?.parse().ok()
}

#[test]
fn curl_by_name_goes_through_both_sidecars_with_mtls() {
    let _limit = test_support::time_limit(180);
    if euid() != Some(0) {
        return test_support::skip(TEST, "root (network namespaces and iptables)");
    }
    for program in ["ip", "iptables", "curl", "setpriv"] {
        if test_support::require_binary(TEST, program).is_none() {
            return;
        }
    }
    let Some(python) = Some(PathBuf::from("/usr/bin/python3"))
        .filter(|p| p.exists())
        .or_else(|| test_support::require_binary(TEST, "python3"))
    else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let ca = test_support::TestCa::new(TD);
    let client_config = sidecar_config(
        tmp.path(),
        &ca,
        "productpage",
        &format!(
            r#"[[static_endpoints."reviews.bookinfo"]]
address = "{SERVER_IP}:9080"
spiffe_id = "{REVIEWS_ID}""#
        ),
        "",
    );
    let policies = tmp.path().join("policies");
    std::fs::create_dir_all(&policies).unwrap();
    std::fs::write(policies.join("strict.yaml"), STRICT).unwrap();
    let server_config = sidecar_config(
        tmp.path(),
        &ca,
        "reviews",
        "",
        &format!("policy_dir = \"{}\"", policies.display()),
    );
    let app_script = tmp.path().join("app.py");
    std::fs::write(&app_script, APP).unwrap();

    // Declared before the processes, dropped after them: they die before
    // their namespaces are deleted.
    let ns = match Namespaces::create() {
        Ok(ns) => ns,
        Err(reason) => return test_support::skip(TEST, &format!("network namespaces: {reason}")),
    };
    let (client, server) = (ns.client.as_str(), ns.server.as_str());

    for ns in [client, server] {
        // The server's host also runs a service outside the mesh, on a
        // port its rules leave alone.
        let mut args = vec!["--apply", "--proxy-uid", "0"];
        if ns == server {
            args.extend(["--exclude-inbound-ports", EXTERNAL_PORT]);
        }
        let printed = iptables_cli(ns, &args);
        assert!(
            printed.contains("-A MESH_OUTPUT -m owner --uid-owner 0 -j RETURN"),
            "{printed}"
        );
        let rules = nat_rules(ns);
        for hook in [
            "-A OUTPUT -p tcp -j MESH_OUTPUT",
            "-A PREROUTING -p tcp -j MESH_INBOUND",
        ] {
            assert!(rules.contains(hook), "{ns}: no {hook:?} in\n{rules}");
        }
    }

    let mut app = Proc::start(
        "reviews app",
        in_netns(server, None, &python.to_string_lossy()).arg(&app_script),
        tmp.path(),
    );
    let site = tmp.path().join("site");
    std::fs::create_dir_all(&site).unwrap();
    std::fs::write(site.join("ext.txt"), "outside the mesh\n").unwrap();
    let mut external = Proc::start(
        "external server",
        in_netns(server, None, &python.to_string_lossy())
            .args([
                "-m",
                "http.server",
                EXTERNAL_PORT,
                "--bind",
                SERVER_IP,
                "--directory",
            ])
            .arg(&site),
        tmp.path(),
    );
    // One side on a single-threaded runtime, the other on two workers:
    // both runtime shapes `--concurrency` picks carry the same traffic.
    let sidecar = |ns: &str, config: &Path, name: &'static str, workers: &str| {
        Proc::start(
            name,
            in_netns(ns, None, BIN)
                .args(["sidecar", "--concurrency", workers, "--config"])
                .arg(config)
                .env("MESH_NODE_LOG", "info")
                .env("NO_COLOR", "1"),
            tmp.path(),
        )
    };
    let mut reviews = sidecar(server, &server_config, "reviews sidecar", "1");
    let mut productpage = sidecar(client, &client_config, "productpage sidecar", "2");
    let ready = "http://127.0.0.1:15000/healthz/ready";
    wait_http(server, "http://127.0.0.1:9080/ready", &mut [&mut app], 30);
    let external_url = format!("http://{SERVER_IP}:{EXTERNAL_PORT}/ext.txt");
    wait_http(server, &external_url, &mut [&mut external], 30);
    wait_http(server, ready, &mut [&mut reviews], 30);
    wait_http(client, ready, &mut [&mut productpage], 30);

    // The application, by name, as an ordinary user: redirected to the
    // client's sidecar, which routes by Host and originates mTLS; the
    // server's sidecar takes it from the redirect, verifies the client and
    // tells the application who it is.
    let out = curl(
        client,
        Some(APP_UID),
        "http://reviews.bookinfo:9080/reviews/1",
    );
    let got = text(&out);
    assert!(out.status.success(), "{got}");
    assert!(got.starts_with("HTTP/1.1 200"), "{got}");
    assert!(got.contains("path=/reviews/1\n"), "{got}");
    assert!(got.contains("host=reviews.bookinfo:9080\n"), "{got}");
    assert!(
        got.contains(&format!("xfcc=By={REVIEWS_ID};URI={PRODUCTPAGE_ID}\n")),
        "the application did not see the verified client: {got}"
    );

    // By address, too: the original destination names the endpoint.
    let out = curl(
        client,
        Some(APP_UID),
        &format!("http://{SERVER_IP}:9080/by-ip"),
    );
    let got = text(&out);
    assert!(got.starts_with("HTTP/1.1 200"), "{got}");
    assert!(got.contains(&format!("URI={PRODUCTPAGE_ID}\n")), "{got}");

    // Both sidecars counted the requests as mutual TLS between the two
    // identities.
    let stats = "http://127.0.0.1:15000/stats/prometheus";
    let server_stats = String::from_utf8_lossy(&curl(server, None, stats).stdout).into_owned();
    let seen = series(
        &server_stats,
        "istio_requests_total",
        &[
            "reporter=\"destination\"",
            "connection_security_policy=\"mutual_tls\"",
            &format!("source_principal=\"{PRODUCTPAGE_ID}\""),
            &format!("destination_principal=\"{REVIEWS_ID}\""),
            "response_code=\"200\"",
        ],
    );
    assert_eq!(seen.len(), 1, "{server_stats}");
    assert!(seen[0].ends_with(" 2"), "two requests: {}", seen[0]);
    let client_stats = String::from_utf8_lossy(&curl(client, None, stats).stdout).into_owned();
    let sent = series(
        &client_stats,
        "istio_requests_total",
        &[
            "reporter=\"source\"",
            "connection_security_policy=\"mutual_tls\"",
            &format!("destination_principal=\"{REVIEWS_ID}\""),
            "destination_service=\"reviews.bookinfo\"",
        ],
    );
    assert_eq!(sent.len(), 1, "{client_stats}");

    // Root is exempt from redirection: its plaintext bypasses the client's
    // sidecar, and the server's (STRICT) refuses it.
    let out = curl(client, None, &format!("http://{SERVER_IP}:9080/bypass"));
    let got = text(&out);
    assert!(!out.status.success(), "plaintext got through: {got}");
    assert!(!got.contains("HTTP/1.1 200"), "{got}");
    let server_stats = String::from_utf8_lossy(&curl(server, None, stats).stdout).into_owned();
    assert_eq!(
        series(
            &server_stats,
            "mesh_tls_handshake_failures_total",
            &["reason=\"plaintext_under_strict\""],
        )
        .len(),
        1,
        "{server_stats}"
    );

    // The application saw the two requests through the sidecars, never
    // the plaintext one.
    let app_log = std::fs::read_to_string(&app.log).unwrap();
    assert!(app_log.contains("GET /reviews/1 "), "{app_log}");
    assert!(app_log.contains("GET /by-ip "), "{app_log}");
    assert!(!app_log.contains("/bypass"), "{app_log}");

    // A destination outside the mesh under the default REGISTRY_ONLY: the
    // sidecar answers 503 naming the unknown service, at once, and
    // nothing reaches it.
    let out = curl(client, Some(APP_UID), &external_url);
    let got = text(&out);
    assert!(got.starts_with("HTTP/1.1 503"), "{got}");
    assert!(
        got.contains(&format!(
            "x-mesh-error: no mesh service named by {SERVER_IP}:{EXTERNAL_PORT}"
        )),
        "{got}"
    );
    let external_log = std::fs::read_to_string(&external.log).unwrap();
    assert!(
        !external_log.contains(&format!("{CLIENT_IP} - - ")),
        "{external_log}"
    );

    // Under ALLOW_ANY the same call passes through as plain TCP from the
    // sidecar (Istio's PassthroughCluster), while mesh traffic keeps mTLS.
    drop(productpage);
    let config = std::fs::read_to_string(&client_config).unwrap();
    let outbound = "[outbound]\nlisten = \"127.0.0.1:15001\"\ntransparent = true\n";
    assert!(config.contains(outbound), "{config}");
    let allow_any = tmp.path().join("allow-any.toml");
    std::fs::write(
        &allow_any,
        config.replace(
            outbound,
            &format!("{outbound}traffic_policy = \"ALLOW_ANY\"\n"),
        ),
    )
    .unwrap();
    let mut productpage = sidecar(client, &allow_any, "productpage sidecar (ALLOW_ANY)", "2");
    wait_http(client, ready, &mut [&mut productpage], 30);
    let out = curl(client, Some(APP_UID), &external_url);
    let got = text(&out);
    assert!(got.starts_with("HTTP/1.0 200"), "{got}");
    assert!(got.contains("outside the mesh"), "{got}");
    let external_log = std::fs::read_to_string(&external.log).unwrap();
    assert!(
        external_log.contains(&format!("{CLIENT_IP} - - ")),
        "the request came from the client's host: {external_log}"
    );
    let client_stats = String::from_utf8_lossy(&curl(client, None, stats).stdout).into_owned();
    let passed = series(
        &client_stats,
        "istio_tcp_connections_opened_total",
        &[
            "reporter=\"source\"",
            "destination_service=\"PassthroughCluster\"",
            &format!("source_principal=\"{PRODUCTPAGE_ID}\""),
        ],
    );
    assert_eq!(passed.len(), 1, "{client_stats}");
    let out = curl(client, Some(APP_UID), "http://reviews.bookinfo:9080/after");
    let got = text(&out);
    assert!(got.starts_with("HTTP/1.1 200"), "{got}");
    assert!(got.contains(&format!("URI={PRODUCTPAGE_ID}\n")), "{got}");

    // Without the client's rules the application's own request is that
    // same plaintext, and is refused too; the rules are gone.
    iptables_cli(client, &["--remove"]);
    let rules = nat_rules(client);
    assert!(!rules.contains("MESH"), "{rules}");
    let out = curl(client, Some(APP_UID), "http://reviews.bookinfo:9080/");
    assert!(!out.status.success(), "{}", text(&out));

    for p in [&mut app, &mut external, &mut reviews, &mut productpage] {
        p.assert_running();
    }
    drop((app, external, reviews, productpage));
}
