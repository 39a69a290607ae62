//! Transparent interception for real: the rules of `mesh_sidecar::intercept`
//! applied inside a network namespace, a stand-in proxy (root, the exempt
//! uid) on the outbound and inbound ports, and clients as root, as uid
//! 1000 and from a second namespace.
//!
//! ```text
//!   mint<pid>a (application + proxy)          mint<pid>p (peer)
//!   mint<pid>a0 10.200.0.1/24   ── veth ──    mint<pid>p0 10.200.0.2/24
//!               fd00:200::1/64                            fd00:200::2/64
//! ```
//!
//! Nothing listens on port 9080 anywhere, so a connection there either
//! reaches the proxy (redirected) or is refused (not redirected). No
//! namespace has a default route: traffic cannot leave them.
//!
//! Code runs inside a namespace by running this test binary again under
//! `ip netns exec` (and `setpriv` for uid 1000), selecting one of the
//! ignored `helper_*` tests with an environment variable.
//!
//! Needs root and the Debian packages iproute2, iptables and util-linux
//! (`setpriv`); without them the test says `SKIPPED` (and fails under
//! `CI=true`).

use std::io::{BufRead, BufReader, Read};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::time::Duration;

use mesh_sidecar::intercept::{InterceptConfig, Runner, original_dst};

/// Selects a helper in a re-run of this binary.
const HELPER: &str = "MESH_INTERCEPT_HELPER";
/// Where the connect helper connects.
const CONNECT_TO: &str = "MESH_INTERCEPT_CONNECT_TO";
/// The application's uid: not exempt, so its traffic is redirected.
const APP_UID: u32 = 1000;
use test_support::netns::{delete_netns, ip, stale_netns};

const PREFIX: &str = "mint";
const OUTBOUND: u16 = 15001;
const INBOUND: u16 = 15006;

/// Deletes namespaces a killed earlier run left (`mint<pid>a|p` whose pid
/// no longer runs).
fn delete_stale() {
    for ns in stale_netns(PREFIX, &["a", "p"]) {
        let _ = delete_netns(&ns);
    }
}

/// The two namespaces, deleted on drop.
struct Namespaces {
    app: String,
    peer: String,
    /// Whether the IPv6 addresses could be added.
    ipv6: bool,
}

impl Namespaces {
    fn create() -> Result<Namespaces, String> {
        delete_stale();
        let pid = std::process::id();
        let (app, peer) = (format!("{PREFIX}{pid}a"), format!("{PREFIX}{pid}p"));
        ip(&["netns", "add", &app])?;
        let mut made = Namespaces {
            app,
            peer,
            ipv6: false,
        };
        ip(&["netns", "add", &made.peer])?;
        let (a, p) = (made.app.clone(), made.peer.clone());
        let (a0, p0) = (format!("{a}0"), format!("{p}0"));
        ip(&["-n", &a, "link", "set", "lo", "up"])?;
        ip(&["-n", &p, "link", "set", "lo", "up"])?;
        // Both ends are made inside the namespaces: nothing of this test
        // ever exists in the root namespace.
        #[rustfmt::skip]
        ip(&["-n", &a, "link", "add", &a0, "type", "veth", "peer", "name", &p0, "netns", &p])?;
        ip(&["-n", &a, "addr", "add", "10.200.0.1/24", "dev", &a0])?;
        ip(&["-n", &p, "addr", "add", "10.200.0.2/24", "dev", &p0])?;
        // No duplicate address detection: the addresses work at once.
        made.ipv6 = ip(&[
            "-n",
            &a,
            "addr",
            "add",
            "fd00:200::1/64",
            "dev",
            &a0,
            "nodad",
        ])
        .and_then(|()| {
            ip(&[
                "-n",
                &p,
                "addr",
                "add",
                "fd00:200::2/64",
                "dev",
                &p0,
                "nodad",
            ])
        })
        .map_err(|e| test_support::skip("intercept_netns IPv6", &e))
        .is_ok();
        ip(&["-n", &a, "link", "set", &a0, "up"])?;
        ip(&["-n", &p, "link", "set", &p0, "up"])?;
        Ok(made)
    }
}

impl Drop for Namespaces {
    fn drop(&mut self) {
        for ns in [&self.app, &self.peer] {
            if let Err(e) = delete_netns(ns) {
                eprintln!("cleanup: {e}");
            }
        }
    }
}

/// `ip netns exec NS [setpriv …] THIS_TEST_BINARY` running helper `name`.
fn helper_command(ns: &str, uid: Option<u32>, name: &str) -> Command {
    let exe = std::env::current_exe().expect("the test binary has a path");
    let mut cmd = Command::new("ip");
    cmd.args(["netns", "exec", ns]);
    if let Some(uid) = uid {
        let id = uid.to_string();
        cmd.args(["setpriv", "--reuid", &id, "--regid", &id, "--clear-groups"]);
    }
    cmd.arg(exe)
        .args([
            "--exact",
            name,
            "--ignored",
            "--nocapture",
            "--test-threads",
            "1",
        ])
        .env(HELPER, name)
        .current_dir("/");
    cmd
}

/// A helper's report in a line of its output. The test harness may have
/// begun the line (`test helper_proxy ... `).
fn report(line: &str) -> Option<&str> {
    line.split_once("HELPER ").map(|(_, report)| report)
}

/// The stand-in proxy in the application's namespace, killed on drop.
struct Proxy {
    child: Child,
    lines: Receiver<String>,
}

impl Proxy {
    fn start(ns: &str) -> Proxy {
        let mut child = helper_command(ns, None, "helper_proxy")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("starting the proxy helper");
        let stdout = child.stdout.take().expect("stdout is piped");
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if let Some(report) = report(&line)
                    && tx.send(report.to_owned()).is_err()
                {
                    break;
                }
            }
        });
        let proxy = Proxy { child, lines };
        assert_eq!(proxy.next(), "ready");
        proxy
    }

    /// The proxy's next report, waiting at most 10 s.
    fn next(&self) -> String {
        match self.lines.recv_timeout(Duration::from_secs(10)) {
            Ok(line) => line,
            Err(RecvTimeoutError::Timeout) => panic!("the proxy reported nothing for 10 s"),
            Err(RecvTimeoutError::Disconnected) => {
                panic!("the proxy helper ended (its stderr is above)")
            }
        }
    }

    /// The next report must be an accepted connection on `port` from
    /// `peer`, originally for `original`.
    fn expect_accepted(&self, port: u16, peer: SocketAddr, original: SocketAddr) {
        assert_eq!(
            self.next(),
            format!("accepted {port} {peer} {original}"),
            "what the proxy saw"
        );
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// How a connection attempt ended.
#[derive(Debug, PartialEq)]
enum Dial {
    /// Connected from `local`; the client saw `peer`.
    Connected { local: SocketAddr, peer: SocketAddr },
    /// Refused: nothing listens there.
    Refused,
}

/// Connects from inside `ns` as `uid` (root when `None`) to `to`.
fn dial(ns: &str, uid: Option<u32>, to: SocketAddr) -> Dial {
    let out = test_support::run_bounded(
        helper_command(ns, uid, "helper_connect").env(CONNECT_TO, to.to_string()),
        Duration::from_secs(20),
    )
    .unwrap_or_else(|e| panic!("connect helper: {e}"));
    let stdout = String::from_utf8_lossy(&out.stdout);
    let Some(report) = stdout.lines().find_map(report) else {
        panic!(
            "connect helper to {to} reported nothing ({}): {stdout}\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
    };
    let words: Vec<&str> = report.split(' ').collect();
    let want_uid = format!("uid={}", uid.unwrap_or(0));
    assert_eq!(words.last(), Some(&want_uid.as_str()), "{report}");
    match words[..] {
        ["connected", local, peer, _] => Dial::Connected {
            local: local.parse().unwrap(),
            peer: peer.parse().unwrap(),
        },
        ["refused", _] => Dial::Refused,
        _ => panic!("connect to {to} as {want_uid}: {report}"),
    }
}

/// Dials and expects the stand-in proxy to take the connection on `port`,
/// reporting `to` as the original destination.
fn dial_redirected(proxy: &Proxy, ns: &str, uid: Option<u32>, to: SocketAddr, port: u16) {
    match dial(ns, uid, to) {
        Dial::Connected { local, peer } => {
            // NAT is undone for the client: it believes it reached `to`.
            assert_eq!(peer, to);
            proxy.expect_accepted(port, local, to);
        }
        Dial::Refused => panic!("{to} as uid {uid:?} was refused, not redirected"),
    }
}

/// The rules as `iptables -t nat -S` lists them in `ns`.
fn nat_rules(ns: &str, program: &str) -> String {
    let out = test_support::run_bounded(
        Command::new("ip").args(["netns", "exec", ns, program, "-t", "nat", "-S"]),
        Duration::from_secs(30),
    )
    .unwrap();
    assert!(out.status.success(), "{program} -S: {out:?}");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The effective uid, from `/proc/self/status`.
fn euid() -> Option<u32> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("Uid:"))?;
    line.split_whitespace().nth(2)?.parse().ok()
}

/// Why another uid cannot run this test binary, if it cannot: every
/// directory above it must be searchable and the file executable by others.
fn unreachable_by_others(exe: &Path) -> Option<String> {
    use std::os::unix::fs::PermissionsExt;
    for path in exe.ancestors() {
        let mode = std::fs::metadata(path).ok()?.permissions().mode();
        if mode & 0o001 == 0 {
            return Some(format!(
                "uid {APP_UID} to run {} ({} is mode {:o})",
                exe.display(),
                path.display(),
                mode & 0o7777
            ));
        }
    }
    None
}

fn addr(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

#[test]
fn redirects_the_application_not_the_proxy_and_removal_undoes_it() {
    const TEST: &str = "intercept_netns";
    let _limit = test_support::time_limit(180);
    if euid() != Some(0) {
        return test_support::skip(TEST, "root (network namespaces and iptables)");
    }
    for program in ["ip", "iptables", "ip6tables", "setpriv"] {
        if test_support::require_binary(TEST, program).is_none() {
            return;
        }
    }
    let exe = std::env::current_exe().unwrap();
    if let Some(reason) = unreachable_by_others(&exe) {
        return test_support::skip(TEST, &reason);
    }
    // Declared first, dropped last: the proxy dies before its namespace.
    let ns = match Namespaces::create() {
        Ok(ns) => ns,
        Err(reason) => {
            return test_support::skip(TEST, &format!("network namespaces: {reason}"));
        }
    };
    let (app, peer) = (ns.app.as_str(), ns.peer.as_str());
    let mut config = InterceptConfig::new(0);
    if ns.ipv6 {
        config.ip6tables = Some("ip6tables".to_owned());
    }
    let runner = Runner::new().in_netns(app);
    runner.apply(&config).expect("applying the rules");
    // Applying again replaces the rules instead of adding a second set.
    runner.apply(&config).expect("applying the rules again");
    let rules = nat_rules(app, "iptables");
    assert_eq!(
        rules.matches("-A OUTPUT -p tcp -j MESH_OUTPUT").count(),
        1,
        "{rules}"
    );
    assert_eq!(
        rules
            .matches("-A PREROUTING -p tcp -j MESH_INBOUND")
            .count(),
        1,
        "{rules}"
    );

    let proxy = Proxy::start(app);
    let mut remotes = vec![addr("10.200.0.2:9080")];
    let mut locals = vec![addr("10.200.0.1:9080")];
    if ns.ipv6 {
        remotes.push(addr("[fd00:200::2]:9080"));
        locals.push(addr("[fd00:200::1]:9080"));
    }

    for &to in &remotes {
        // The application's outbound connection reaches the proxy, which
        // learns where it was going.
        dial_redirected(&proxy, app, Some(APP_UID), to, OUTBOUND);
        // The proxy's own (uid 0, exempt) goes where it was sent: to the
        // peer namespace, where nothing listens.
        assert_eq!(dial(app, None, to), Dial::Refused, "root to {to}");
    }
    for &to in &locals {
        // The application calling its own address leaves through `lo`:
        // not redirected (nothing listens on 9080).
        assert_eq!(dial(app, Some(APP_UID), to), Dial::Refused, "to self {to}");
        // Inbound from the peer is redirected to the inbound port.
        dial_redirected(&proxy, peer, None, to, INBOUND);
        // Excluded ports are not: the admin port (nothing listens) …
        let admin = SocketAddr::new(to.ip(), 15000);
        assert_eq!(dial(peer, None, admin), Dial::Refused, "{admin}");
        // … and the inbound port itself, dialled directly: for a connection
        // that was not redirected the original destination is the local
        // address.
        let direct = SocketAddr::new(to.ip(), INBOUND);
        dial_redirected(&proxy, peer, None, direct, INBOUND);
    }

    runner.remove(&config).expect("removing the rules");
    runner.remove(&config).expect("removing the rules twice");
    for program in std::iter::once("iptables").chain(config.ip6tables.as_deref()) {
        let rules = nat_rules(app, program);
        assert!(!rules.contains("MESH"), "{program} still has: {rules}");
    }
    for (&remote, &local) in remotes.iter().zip(&locals) {
        assert_eq!(dial(app, Some(APP_UID), remote), Dial::Refused, "{remote}");
        assert_eq!(dial(peer, None, local), Dial::Refused, "{local}");
    }
    drop(proxy);
}

/// The stand-in proxy, inside the application's namespace: listens on the
/// outbound and inbound ports (dual-stack) and reports every connection as
/// `accepted PORT PEER ORIGINAL_DST`, then closes it. Ends when its stdin
/// closes, or after two minutes.
#[test]
#[ignore = "a helper the netns test runs inside its namespace"]
fn helper_proxy() {
    if std::env::var(HELPER).as_deref() != Ok("helper_proxy") {
        return;
    }
    std::thread::spawn(|| {
        let _ = std::io::stdin().read_to_end(&mut Vec::new());
        std::process::exit(0);
    });
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let outbound = tokio::net::TcpListener::bind(("::", OUTBOUND))
            .await
            .unwrap();
        let inbound = tokio::net::TcpListener::bind(("::", INBOUND))
            .await
            .unwrap();
        println!("HELPER ready");
        let end = tokio::time::sleep(Duration::from_secs(120));
        tokio::pin!(end);
        loop {
            let (port, accepted) = tokio::select! {
                accepted = outbound.accept() => (OUTBOUND, accepted),
                accepted = inbound.accept() => (INBOUND, accepted),
                () = &mut end => return,
            };
            let (stream, peer) = accepted.unwrap();
            let peer = SocketAddr::new(peer.ip().to_canonical(), peer.port());
            let original = match original_dst(&stream) {
                Ok(original) => original.to_string(),
                Err(e) => format!("error:{e}"),
            };
            println!("HELPER accepted {port} {peer} {original}");
        }
    });
}

/// One connection attempt to `$MESH_INTERCEPT_CONNECT_TO`, reported as
/// `connected LOCAL PEER uid=N` (after reading until the proxy closes) or
/// `refused uid=N`.
#[test]
#[ignore = "a helper the netns test runs inside its namespace"]
fn helper_connect() {
    if std::env::var(HELPER).as_deref() != Ok("helper_connect") {
        return;
    }
    let to: SocketAddr = std::env::var(CONNECT_TO).unwrap().parse().unwrap();
    let uid = format!("uid={}", euid().unwrap());
    match std::net::TcpStream::connect_timeout(&to, Duration::from_secs(5)) {
        Ok(mut stream) => {
            let (local, peer) = (stream.local_addr().unwrap(), stream.peer_addr().unwrap());
            // The proxy closes once it has reported the connection.
            stream
                .set_read_timeout(Some(Duration::from_secs(5)))
                .unwrap();
            let _ = stream.read_to_end(&mut Vec::new());
            println!("HELPER connected {local} {peer} {uid}");
        }
        Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => {
            println!("HELPER refused {uid}");
        }
        Err(e) => println!("HELPER failed:{e} {uid}"),
    }
}
