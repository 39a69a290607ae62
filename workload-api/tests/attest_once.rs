//! Attestation happens once per connection, when it is accepted: every RPC
//! on the connection gets the selectors found then, even after the
//! connecting process `exec`s another binary.

mod common;

use std::path::Path;
use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use common::{TempDir, World, entry_for, raw, serve_attested, unix_address};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use workload_api::{Attestor, Caller, Selector, Selectors, UnixAttestor, WorkloadApiClient};

const STEP: Duration = Duration::from_secs(20);

fn sel(s: &str) -> Selector {
    s.parse().unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn attestation_happens_once_per_connection_at_accept() {
    let world = World::new("once");
    let a = world.domain.svid("/first");
    let b = world.domain.svid("/second");
    world
        .provider
        .add_entry(entry_for(a.spiffe_id().clone(), [sel("test:conn:0")]), a)
        .unwrap();
    world
        .provider
        .add_entry(entry_for(b.spiffe_id().clone(), [sel("test:conn:1")]), b)
        .unwrap();
    let calls = Arc::new(AtomicUsize::new(0));
    let counter = Arc::clone(&calls);
    let attestor = move |_: &Caller| {
        let n = counter.fetch_add(1, Ordering::SeqCst);
        Ok([sel(&format!("test:conn:{n}"))]
            .into_iter()
            .collect::<Selectors>())
    };
    let _server = serve_attested(world.provider.clone(), &world.socket, Arc::new(attestor));
    let addr = unix_address(&world.socket);

    let mut first = tokio::time::timeout(STEP, WorkloadApiClient::connect(&addr))
        .await
        .unwrap()
        .unwrap();
    for _ in 0..3 {
        let ctx = tokio::time::timeout(STEP, first.fetch_x509_context())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(ctx.svids[0].svid.spiffe_id().path(), "/first");
    }
    let jwt = tokio::time::timeout(STEP, first.fetch_jwt_svids(&["aud"], None))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(jwt[0].svid.spiffe_id().path(), "/first");
    assert_eq!(
        calls.load(Ordering::SeqCst),
        1,
        "one attestation for four RPCs"
    );

    let mut second = WorkloadApiClient::connect(&addr).await.unwrap();
    let ctx = tokio::time::timeout(STEP, second.fetch_x509_context())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(ctx.svids[0].svid.spiffe_id().path(), "/second");
    assert_eq!(calls.load(Ordering::SeqCst), 2);
}

#[tokio::test(flavor = "multi_thread")]
async fn exec_after_connect_keeps_the_connecting_binarys_identity() {
    let sh = match std::fs::canonicalize("/bin/sh") {
        Ok(p) => p,
        Err(e) => panic!("/bin/sh is needed: {e}"),
    };
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/exec_after_connect.py");
    let world = World::new("exec");
    let files = TempDir::new("exec-files");
    let first = files.0.join("first.bin");
    let second = files.0.join("second.bin");
    let response = files.0.join("response.bin");
    std::fs::write(&first, raw::open_with("FetchX509SVID")).unwrap();
    std::fs::write(&second, raw::call("FetchX509SVID", 3)).unwrap();

    let mut child = match tokio::process::Command::new("python3")
        .arg(&script)
        .arg(&world.socket)
        .arg(&first)
        .arg(&second)
        .arg(&response)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
    {
        Ok(c) => c,
        Err(e) => {
            common::skip("exec_after_connect", &format!("python3 ({e})"));
            return;
        }
    };
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let python = tokio::time::timeout(STEP, lines.next_line())
        .await
        .expect("the launcher prints its executable")
        .unwrap()
        .expect("a line");
    world
        .provider
        .add_entry(
            entry_for(
                world.domain.id("/launcher"),
                [sel(&format!("unix:path:{python}"))],
            ),
            world.domain.svid("/launcher"),
        )
        .unwrap();
    world
        .provider
        .add_entry(
            entry_for(
                world.domain.id("/privileged"),
                [sel(&format!("unix:path:{}", sh.display()))],
            ),
            world.domain.svid("/privileged"),
        )
        .unwrap();
    let attestor: Arc<dyn Attestor> = Arc::new(UnixAttestor::new().with_path(true));
    let _server = serve_attested(world.provider.clone(), &world.socket, attestor);
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(b"go\n").await.unwrap();
    stdin.flush().await.unwrap();
    let attested = tokio::time::timeout(STEP, lines.next_line())
        .await
        .expect("the launcher is answered")
        .unwrap();
    assert_eq!(attested.as_deref(), Some("attested"));
    let status = tokio::time::timeout(STEP, child.wait())
        .await
        .expect("the shell ends")
        .unwrap();
    assert!(status.success(), "{status}");
    let got = std::fs::read(&response).unwrap();
    let has = |id: &str| got.windows(id.len()).any(|w| w == id.as_bytes());
    assert!(
        !has("spiffe://example.org/privileged"),
        "the shell obtained the identity of /bin/sh"
    );
    assert!(
        has("spiffe://example.org/launcher"),
        "the second request is answered with the launcher's identity ({} bytes)",
        got.len()
    );
}
