//! `SPIFFE_ENDPOINT_SOCKET` (EP-6), read in child processes so the test
//! process never changes its own environment.

mod common;

use std::sync::Arc;

use common::{World, serve};
use workload_api::{ENDPOINT_SOCKET_ENV, EndpointAddress, WorkloadApiClient};

/// Runs only as the child of the tests below: prints what `from_env` gives.
#[tokio::test]
#[ignore = "started as a child process by the from_env tests"]
async fn child_reads_env() {
    common::within(60, async move {
        println!("ADDRESS={:?};", EndpointAddress::from_env());
        if let Ok(mut client) = WorkloadApiClient::from_env().await
            && let Ok(ctx) = client.fetch_x509_context().await
        {
            println!("SPIFFE_ID={};", ctx.svids[0].svid.spiffe_id());
        }
    })
    .await;
}

async fn child(value: Option<&str>) -> String {
    let mut cmd = tokio::process::Command::new(std::env::current_exe().unwrap());
    cmd.args([
        "--ignored",
        "--exact",
        "child_reads_env",
        "--nocapture",
        "--test-threads=1",
    ]);
    match value {
        Some(v) => cmd.env(ENDPOINT_SOCKET_ENV, v),
        None => cmd.env_remove(ENDPOINT_SOCKET_ENV),
    };
    let out = cmd.output().await.unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn field<'a>(out: &'a str, name: &str) -> Option<&'a str> {
    out.split(&format!("{name}=")).nth(1)?.split(';').next()
}

#[tokio::test]
async fn ep_6_from_env_parses_the_variable() {
    common::within(60, async move {
        let cases = [
            (
                Some("unix:///run/agent.sock"),
                r#"Ok(Unix("/run/agent.sock"))"#,
            ),
            (
                Some("unix:/run/agent.sock"),
                r#"Ok(Unix("/run/agent.sock"))"#,
            ),
            (Some("tcp://127.0.0.1:8000"), "Ok(Tcp(127.0.0.1:8000))"),
            (Some("tcp://127.0.0.1:8000/foo"), "Err(TcpPath)"),
            (
                Some("unix://host/agent.sock"),
                r#"Err(UnixAuthority { authority: "host" })"#,
            ),
            (Some(""), "Err(Empty)"),
            (None, "Err(NotSet)"),
        ];
        for (value, expected) in cases {
            let out = child(value).await;
            assert_eq!(field(&out, "ADDRESS"), Some(expected), "{value:?}: {out}");
        }
    })
    .await;
}

#[tokio::test]
async fn ep_6_client_from_env_reaches_the_server() {
    common::within(60, async move {
        let World {
            dir: _dir,
            socket,
            domain: _,
            provider,
            entry: _,
        } = World::with_path("env", "/env");
        let _server = serve(Arc::clone(&provider), &socket);
        let out = child(Some(&format!("unix://{}", socket.display()))).await;
        assert_eq!(
            field(&out, "SPIFFE_ID"),
            Some("spiffe://example.org/env"),
            "{out}"
        );
    })
    .await;
}
