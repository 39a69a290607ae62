//! py-spiffe (PyPI `spiffe`, on grpcio = gRPC C-core) as a test peer: a
//! virtualenv made once under the target directory, and a way to run a
//! command with a deadline.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

/// The py-spiffe release the interop tests drive.
pub const PY_SPIFFE: &str = "spiffe==0.3.2";

const CHECK_INSTALLED: &str =
    "import importlib.metadata as m, spiffe; assert m.version('spiffe') == '0.3.2'";

/// Runs `cmd` to completion, killing it and failing after `limit`.
/// Stdout and stderr are captured; a non-zero exit is not an error here.
pub fn run_bounded(cmd: &mut Command, limit: Duration) -> Result<Output, String> {
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("{cmd:?}: {e}"))?;
    let drain = |pipe: Option<Box<dyn Read + Send>>| {
        std::thread::spawn(move || {
            let mut buf = Vec::new();
            if let Some(mut p) = pipe {
                let _ = p.read_to_end(&mut buf);
            }
            buf
        })
    };
    let out = drain(
        child
            .stdout
            .take()
            .map(|p| Box::new(p) as Box<dyn Read + Send>),
    );
    let err = drain(
        child
            .stderr
            .take()
            .map(|p| Box::new(p) as Box<dyn Read + Send>),
    );
    let end = Instant::now() + limit;
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break status,
            Ok(None) if Instant::now() < end => std::thread::sleep(Duration::from_millis(20)),
            Ok(None) => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!("{cmd:?} did not finish within {limit:?}"));
            }
            Err(e) => return Err(format!("{cmd:?}: {e}")),
        }
    };
    Ok(Output {
        status,
        stdout: out.join().unwrap_or_default(),
        stderr: err.join().unwrap_or_default(),
    })
}

fn run_ok(cmd: &mut Command, limit: Duration) -> Result<(), String> {
    let out = run_bounded(cmd, limit)?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "{cmd:?} failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

/// The python of the virtualenv in `dir` with [`PY_SPIFFE`] installed,
/// made from the interpreter `base` (`base -m venv`, then `pip install`)
/// when it is missing or broken. Each step is bounded by `step_limit`.
///
/// The error names the step that failed (no interpreter, no venv module,
/// no route to PyPI), for the caller to hand to [`crate::skip`].
pub fn py_spiffe_venv(dir: &Path, base: &Path, step_limit: Duration) -> Result<PathBuf, String> {
    let python = dir.join("bin/python");
    let installed = || {
        run_ok(
            Command::new(&python).args(["-c", CHECK_INSTALLED]),
            step_limit,
        )
        .is_ok()
    };
    if installed() {
        return Ok(python);
    }
    let _ = std::fs::remove_dir_all(dir);
    run_ok(
        Command::new(base).arg("-m").arg("venv").arg(dir),
        step_limit,
    )
    .map_err(|e| format!("a virtualenv from {}: {e}", base.display()))?;
    run_ok(
        Command::new(&python).args(["-m", "pip", "install", "--quiet", PY_SPIFFE]),
        step_limit,
    )
    .map_err(|e| format!("pip install {PY_SPIFFE}: {e}"))?;
    if installed() {
        Ok(python)
    } else {
        Err(format!("{PY_SPIFFE} importable after installing it"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_command_past_its_limit_is_killed_and_reported() {
        let started = Instant::now();
        let err = run_bounded(
            Command::new("sh").args(["-c", "sleep 5"]),
            Duration::from_millis(200),
        )
        .unwrap_err();
        assert!(err.contains("did not finish"), "{err}");
        assert!(started.elapsed() < Duration::from_secs(3));
        let out = run_bounded(
            Command::new("sh").args(["-c", "echo out; echo err >&2; exit 3"]),
            Duration::from_secs(10),
        )
        .unwrap();
        assert_eq!(out.status.code(), Some(3));
        assert_eq!(out.stdout, b"out\n");
        assert_eq!(out.stderr, b"err\n");
    }
}
