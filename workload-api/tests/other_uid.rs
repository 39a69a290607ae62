//! A real child process running under another uid gets another identity
//! than the test process, through SO_PEERCRED and `/proc` attestation.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::sync::Arc;

use common::{
    Domain, TempDir, entry_for, my_uid_selector, provider_for, serve_attested, unix_address,
};
use workload_api::{EndpointAddress, Selector, UnixAttestor, WorkloadApiClient};

const CHILD_SOCKET: &str = "WORKLOAD_API_TEST_CHILD_SOCKET";
const NOBODY: u32 = 65534;

/// Runs only inside the child process started by
/// `child_of_another_uid_gets_its_own_identity`.
#[tokio::test]
#[ignore = "started as a child process of another uid by child_of_another_uid_gets_its_own_identity"]
async fn child_fetches_its_identity() {
    common::within(60, async move {
        let socket = std::env::var(CHILD_SOCKET).expect("the parent sets the socket");
        let address: EndpointAddress = socket.parse().unwrap();
        let mut client = WorkloadApiClient::connect(&address).await.unwrap();
        let ctx = client.fetch_x509_context().await.unwrap();
        println!("CHILD_SPIFFE_ID={}", ctx.svids[0].svid.spiffe_id());
    })
    .await;
}

#[tokio::test]
async fn child_of_another_uid_gets_its_own_identity() {
    common::within(60, async move {
        if std::fs::metadata("/proc/self")
            .map(|m| std::os::unix::fs::MetadataExt::uid(&m))
            .ok()
            != Some(0)
        {
            common::skip("other_uid", "root, to start a process of another uid");
            return;
        }
        let dir = TempDir::new("uid");
        std::fs::set_permissions(&dir.0, std::fs::Permissions::from_mode(0o755)).unwrap();
        let socket = dir.0.join("api.sock");
        let domain = Domain::new("example.org");
        let provider = provider_for(&domain);
        let exe = std::env::current_exe().unwrap();
        provider
            .add_entry(
                entry_for(domain.id("/root"), [my_uid_selector()]),
                domain.svid("/root"),
            )
            .unwrap();
        // The child's entry needs its uid *and* its executable's path.
        let child_selectors: Vec<Selector> = vec![
            Selector::new("unix", format!("uid:{NOBODY}")).unwrap(),
            Selector::new("unix", format!("path:{}", exe.display())).unwrap(),
        ];
        provider
            .add_entry(
                entry_for(domain.id("/nobody"), child_selectors),
                domain.svid("/nobody"),
            )
            .unwrap();
        let attestor = Arc::new(UnixAttestor::new().with_path(true).with_sha256(true));
        let _server = serve_attested(Arc::clone(&provider), &socket, attestor);
        std::fs::set_permissions(&socket, std::fs::Permissions::from_mode(0o777)).unwrap();

        let mut client = WorkloadApiClient::connect(&unix_address(&socket))
            .await
            .unwrap();
        let mine = client.fetch_x509_context().await.unwrap();
        assert_eq!(mine.svids.len(), 1);
        assert_eq!(
            mine.svids[0].svid.spiffe_id().to_string(),
            "spiffe://example.org/root"
        );

        let out = tokio::process::Command::new(&exe)
            .args([
                "--ignored",
                "--exact",
                "child_fetches_its_identity",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(CHILD_SOCKET, format!("unix://{}", socket.display()))
            .uid(NOBODY)
            .gid(NOBODY)
            .current_dir("/")
            .output()
            .await
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "child failed: {stdout}\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let child_id = stdout
            .split("CHILD_SPIFFE_ID=")
            .nth(1)
            .and_then(|rest| rest.split_whitespace().next())
            .unwrap_or_else(|| panic!("no identity line in child output: {stdout}"));
        assert_eq!(child_id, "spiffe://example.org/nobody");
    })
    .await;
}
