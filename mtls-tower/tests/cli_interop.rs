//! Interop with the `curl` and `openssl` binaries (code we did not write)
//! against a test server. A missing binary fails the test under CI=true and is reported
//! `SKIPPED` elsewhere.

mod common;

use std::path::PathBuf;
use std::process::Stdio;

use common::*;
use mtls_tower::{AcceptError, ServerConfigBuilder, authorizer};
use test_support::{LeafSpec, TestCa};
use tokio::io::AsyncWriteExt;
use tokio::process::Command;

const TD: &str = "example.org";
const SERVER: &str = "spiffe://example.org/ns/default/sa/server";
const CLIENT: &str = "spiffe://example.org/ns/default/sa/curl";

struct Dir(PathBuf);

impl Drop for Dir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// The tool on PATH; missing, the test fails under CI=true and is reported
/// as skipped elsewhere.
fn binary(name: &str) -> Option<PathBuf> {
    test_support::require_binary("cli_interop", name)
}

/// A server whose SVID also carries the DNS SAN `localhost` (X509-2), since
/// these tools check the host name; the client PEM files in a temp dir.
async fn setup(name: &str) -> (Server, Dir) {
    setup_with(name, |b| b).await
}

/// [`setup`], with the server's builder adjusted by `adjust`.
async fn setup_with(
    name: &str,
    adjust: impl FnOnce(ServerConfigBuilder) -> ServerConfigBuilder,
) -> (Server, Dir) {
    let ca = TestCa::new(TD);
    let server = Workload::new(&ca, SERVER, TD);
    server.svids.set(svid(
        &ca.leaf_with(LeafSpec::new(SERVER).dns(&["localhost"])),
    ));
    let builder = ServerConfigBuilder::new(
        provider(),
        server.svids.clone(),
        server.bundles.clone(),
        authorizer::exact(CLIENT.parse().unwrap()),
    );
    let srv = start_server(adjust(builder).build().unwrap()).await;
    let dir = std::env::temp_dir().join(format!("mtls-tower-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let leaf = ca.leaf(CLIENT);
    std::fs::write(dir.join("client.pem"), leaf.chain_pem()).unwrap();
    std::fs::write(dir.join("client.key"), leaf.key_pem()).unwrap();
    std::fs::write(
        dir.join("ca.pem"),
        test_support::pem("CERTIFICATE", &ca.root_cert()),
    )
    .unwrap();
    (srv, Dir(dir))
}

/// `openssl s_client` to `srv`, trusting the test CA and presenting the
/// client SVID from `dir`.
fn s_client(openssl: &std::path::Path, srv: &Server, dir: &Dir) -> Command {
    let mut cmd = Command::new(openssl);
    cmd.arg("s_client")
        .arg("-connect")
        .arg(format!("127.0.0.1:{}", srv.addr.port()))
        .arg("-CAfile")
        .arg(dir.0.join("ca.pem"))
        .arg("-cert")
        .arg(dir.0.join("client.pem"))
        .arg("-key")
        .arg(dir.0.join("client.key"));
    cmd
}

#[tokio::test]
async fn curl_with_client_svid_is_served_and_identified() {
    test_support::within(60, async move {
        let Some(curl) = binary("curl") else { return };
        let (mut srv, dir) = setup("curl").await;
        let out = Command::new(&curl)
            .arg("--silent")
            .arg("--show-error")
            .arg("--cert")
            .arg(dir.0.join("client.pem"))
            .arg("--key")
            .arg(dir.0.join("client.key"))
            .arg("--cacert")
            .arg(dir.0.join("ca.pem"))
            .arg(format!("https://localhost:{}/", srv.addr.port()))
            .output()
            .await
            .unwrap();
        assert!(
            out.status.success(),
            "curl failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(String::from_utf8_lossy(&out.stdout), CLIENT);

        // Without a client certificate the handshake is refused.
        let out = Command::new(&curl)
            .arg("--silent")
            .arg("--cacert")
            .arg(dir.0.join("ca.pem"))
            .arg(format!("https://localhost:{}/", srv.addr.port()))
            .output()
            .await
            .unwrap();
        assert!(!out.status.success());
        let err = srv.errors.recv().await.unwrap();
        let AcceptError::Handshake { source, .. } = &err else {
            panic!("{err:?}")
        };
        assert_eq!(
            rustls_error(source),
            Some(&rustls::Error::NoCertificatesPresented)
        );
    })
    .await
}

#[tokio::test]
async fn openssl_s_client_verifies_server_and_is_identified() {
    test_support::within(60, async move {
        let Some(openssl) = binary("openssl") else {
            return;
        };
        let (srv, dir) = setup("openssl").await;
        let mut child = s_client(&openssl, &srv, &dir)
            .arg("-servername")
            .arg("localhost")
            .arg("-verify_return_error")
            .arg("-alpn")
            .arg("http/1.1")
            .arg("-ign_eof")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut stdin = child.stdin.take().unwrap();
        stdin
            .write_all(b"GET / HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
            .await
            .unwrap();
        drop(stdin);
        let out = child.wait_with_output().await.unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(stdout.contains("Verify return code: 0 (ok)"), "{stdout}");
        assert!(
            stdout.contains("Protocol: TLSv1.3") || stdout.contains("TLSv1.3"),
            "{stdout}"
        );
        assert!(
            stdout.contains(CLIENT),
            "the server saw the client's SPIFFE ID: {stdout}"
        );
    })
    .await
}

/// The suite `openssl s_client`, with its default preferences
/// (TLS_AES_256_GCM_SHA384 first), negotiates with a server set up by
/// `adjust`.
async fn suite_openssl_gets(
    name: &str,
    adjust: impl FnOnce(ServerConfigBuilder) -> ServerConfigBuilder,
) -> Option<String> {
    let openssl = binary("openssl")?;
    let (srv, dir) = setup_with(name, adjust).await;
    let out = s_client(&openssl, &srv, &dir)
        .stdin(Stdio::null())
        .output()
        .await
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let suite = stdout
        .lines()
        .find_map(|l| l.split_once("Cipher is ").map(|(_, s)| s.trim().to_owned()));
    Some(suite.unwrap_or_else(|| panic!("no cipher in the output: {stdout}")))
}

#[tokio::test]
async fn a_server_preferring_sha256_suites_overrides_openssls_order() {
    test_support::within(60, async move {
        let Some(default) = suite_openssl_gets("suite-default", |b| b).await else {
            return;
        };
        // Without the preference the client's first choice stands.
        assert_eq!(default, "TLS_AES_256_GCM_SHA384");
        let preferred = suite_openssl_gets("suite-sha256", |b| b.prefer_sha256_suites())
            .await
            .unwrap();
        assert_eq!(preferred, "TLS_AES_128_GCM_SHA256");
    })
    .await
}
