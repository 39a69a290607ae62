//! py-spiffe 0.3.2 (PyPI `spiffe`, on grpcio = gRPC C-core) as a client of
//! our server, unchanged and without an authority override: C-core sends
//! the percent-encoded socket path as `:authority`, which h2 alone
//! refuses (see `src/server/authority`).
//!
//! The test creates a virtualenv under the target dir when it is missing
//! (`python3 -m venv`, falling back to `virtualenv`, then
//! `pip install spiffe==0.3.2`). With `CI=true` a missing python, venv or
//! pip fails the test; elsewhere it prints `SKIPPED: reason` and returns.

mod common;

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use common::{Domain, World, entry_for, my_uid_selector, serve};
use serde_json::Value;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::process::Command;
use workload_api::IdentityProvider;

const PY_SPIFFE: &str = "spiffe==0.3.2";
const SETUP_TIMEOUT: Duration = Duration::from_secs(600);
const STEP_TIMEOUT: Duration = Duration::from_secs(30);

/// Fails in CI, reports a visible skip elsewhere.
fn unavailable(reason: &str) {
    common::skip("py-spiffe interop", reason);
}

async fn run(cmd: &mut Command) -> Result<(), String> {
    let out = tokio::time::timeout(SETUP_TIMEOUT, cmd.output())
        .await
        .map_err(|_| format!("{cmd:?} timed out"))?
        .map_err(|e| format!("{cmd:?}: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "{cmd:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        ))
    }
}

/// The venv's python with py-spiffe 0.3.2 installed, creating it if needed.
async fn venv() -> Result<PathBuf, String> {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("py-spiffe-venv");
    let python = dir.join("bin/python");
    let installed = |python: PathBuf| async move {
        run(Command::new(&python).args([
            "-c",
            "import importlib.metadata as m, spiffe; assert m.version('spiffe') == '0.3.2'",
        ]))
        .await
        .is_ok()
    };
    if installed(python.clone()).await {
        return Ok(python);
    }
    let _ = std::fs::remove_dir_all(&dir);
    if let Err(venv) = run(Command::new("python3").arg("-m").arg("venv").arg(&dir)).await {
        let _ = std::fs::remove_dir_all(&dir);
        run(Command::new("virtualenv").arg(&dir))
            .await
            .map_err(|e| format!("python3 -m venv ({venv}) or virtualenv ({e})"))?;
    }
    run(Command::new(&python).args(["-m", "pip", "install", "--quiet", PY_SPIFFE]))
        .await
        .map_err(|e| format!("pip install {PY_SPIFFE}: {e}"))?;
    if installed(python.clone()).await {
        Ok(python)
    } else {
        Err(format!("{PY_SPIFFE} importable after install"))
    }
}

struct Driver {
    lines: tokio::io::Lines<BufReader<tokio::process::ChildStdout>>,
    stdin: tokio::process::ChildStdin,
    child: tokio::process::Child,
}

impl Driver {
    async fn step(&mut self, name: &str) -> Value {
        let line = tokio::time::timeout(STEP_TIMEOUT, self.lines.next_line())
            .await
            .unwrap_or_else(|_| panic!("py-spiffe step {name} within {STEP_TIMEOUT:?}"))
            .unwrap()
            .unwrap_or_else(|| panic!("py-spiffe driver ended before step {name}"));
        let v: Value = serde_json::from_str(&line).unwrap_or_else(|e| panic!("{line}: {e}"));
        assert_eq!(v["step"], name, "{v}");
        v
    }
}

fn strings(v: &Value) -> Vec<String> {
    v.as_array()
        .unwrap_or_else(|| panic!("{v} is a list"))
        .iter()
        .map(|s| s.as_str().unwrap().to_owned())
        .collect()
}

/// The SHA-256 of the leaf's DER, as the driver prints it.
fn serial_hex(svid: &spiffe_core::X509Svid) -> String {
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, svid.leaf().as_ref());
    digest.as_ref().iter().map(|b| format!("{b:02x}")).collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn ep_wl_py_spiffe_0_3_2_works_unchanged() {
    let python = match venv().await {
        Ok(p) => p,
        Err(reason) => return unavailable(&reason),
    };
    let world = World::new("py");
    let partner = Domain::new("partner.test");
    let mut set = spiffe_core::BundleSet::new();
    set.insert(world.domain.bundle());
    set.insert(partner.bundle());
    world.provider.set_bundles(set);
    world.provider.remove_entry(&world.entry).unwrap();
    let first = world.domain.svid("/web");
    let entry = world
        .provider
        .add_entry(
            entry_for(first.spiffe_id().clone(), [my_uid_selector()])
                .with_federates_with(partner.td.clone()),
            first.clone(),
        )
        .unwrap();
    let _server = serve(world.provider.clone(), &world.socket);

    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/py_spiffe_driver.py");
    let mut child = Command::new(&python)
        .arg(&script)
        .arg(&world.socket)
        .arg("example.org")
        .arg("partner.test")
        .arg("spiffe://example.org/backend")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut d = Driver {
        lines: BufReader::new(child.stdout.take().unwrap()).lines(),
        stdin: child.stdin.take().unwrap(),
        child,
    };

    let v = d.step("x509_svid").await;
    assert_eq!(v["spiffe_id"], "spiffe://example.org/web");
    assert_eq!(v["serial"], serial_hex(&first));

    let v = d.step("x509_bundles").await;
    assert_eq!(
        strings(&v["trust_domains"]),
        ["example.org", "partner.test"]
    );
    assert_eq!(v["authorities"], 1);

    let v = d.step("x509_context").await;
    assert_eq!(strings(&v["spiffe_ids"]), ["spiffe://example.org/web"]);
    assert_eq!(v["default"], "spiffe://example.org/web");
    assert_eq!(
        strings(&v["trust_domains"]),
        ["example.org", "partner.test"]
    );

    let v = d.step("jwt_svid").await;
    assert_eq!(v["spiffe_id"], "spiffe://example.org/web");
    assert_eq!(strings(&v["audience"]), ["spiffe://example.org/backend"]);
    // The token py-spiffe got verifies with our own JWT bundle.
    let token = v["token"].as_str().unwrap().to_owned();
    let bundles = world
        .provider
        .identity(&[my_uid_selector()].into_iter().collect());
    let checked = spiffe_core::JwtSvid::validate(
        &token,
        &*bundles.bundles,
        "spiffe://example.org/backend",
        std::time::SystemTime::now(),
    )
    .unwrap();
    assert_eq!(checked.spiffe_id().to_string(), "spiffe://example.org/web");

    let v = d.step("validate_right_audience").await;
    assert_eq!(v["spiffe_id"], "spiffe://example.org/web");
    let v = d.step("validate_wrong_audience").await;
    assert_eq!(v["refused"], true, "{v}");
    assert!(
        v["error"].as_str().unwrap().contains("INVALID_ARGUMENT"),
        "{v}"
    );

    let v = d.step("jwt_bundles").await;
    assert_eq!(
        strings(&v["trust_domains"]),
        ["example.org", "partner.test"]
    );
    assert_eq!(strings(&v["key_ids"]), [world.domain.kid.as_str()]);
    assert_eq!(v["offline_spiffe_id"], "spiffe://example.org/web");

    let v = d.step("watching").await;
    assert_eq!(v["serial"], serial_hex(&first), "{v}");
    let second = world.domain.svid("/web");
    world.provider.rotate(&entry, second.clone()).unwrap();
    d.stdin.write_all(b"rotated\n").await.unwrap();
    d.stdin.flush().await.unwrap();
    let v = d.step("rotation").await;
    assert_eq!(v["changed"], true, "{v}");
    assert_eq!(
        strings(&v["serials"]).last().map(String::as_str),
        Some(serial_hex(&second).as_str()),
        "{v}"
    );

    let status = tokio::time::timeout(STEP_TIMEOUT, d.child.wait())
        .await
        .expect("the driver exits")
        .unwrap();
    assert!(status.success(), "{status}");
}
