//! Test peers from outside the project (openssl, curl, python): finding
//! them, and the one rule for a test whose peer or privilege is missing.

use std::io::Write;
use std::path::PathBuf;

/// A peer or privilege the test needs is missing: under `CI=true` the test
/// fails (CI installs every peer, so a missing one is a broken CI, not a
/// pass); elsewhere a `SKIPPED:` line goes straight to stderr, past the test
/// harness's output capture, so it shows even for a test that returns.
pub fn skip(test: &str, reason: &str) {
    assert!(
        std::env::var("CI").as_deref() != Ok("true"),
        "{test} needs {reason} (CI=true)"
    );
    let _ = writeln!(std::io::stderr(), "SKIPPED: {test}: {reason}");
}

/// The executable `name` as the shell would find it on `PATH` (what
/// `.ci/run` checks with `command -v`).
pub fn find_binary(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(name))
        .find(|candidate| is_executable(candidate))
}

/// `find_binary`, or [`skip`] naming the test: `None` means return now.
pub fn require_binary(test: &str, name: &str) -> Option<PathBuf> {
    let found = find_binary(name);
    if found.is_none() {
        skip(test, &format!("the {name} binary on PATH"));
    }
    found
}

fn is_executable(path: &std::path::Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_sh_on_path_and_not_a_made_up_name() {
        assert!(find_binary("sh").is_some());
        assert!(find_binary("no-such-binary-e1b7").is_none());
    }
}
