//! Network namespaces for tests that need several hosts: running `ip`,
//! deleting a namespace with what runs in it, and cleaning up after an
//! earlier run that was killed outright.

use std::process::Command;

/// Runs `ip ARGS`; its stderr on failure.
pub fn ip(args: &[&str]) -> Result<(), String> {
    let out = Command::new("ip")
        .args(args)
        .output()
        .map_err(|e| format!("ip {}: {e}", args.join(" ")))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "ip {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

/// Kills what still runs in `ns` (a namespace the caller named), then
/// deletes it.
pub fn delete_netns(ns: &str) -> Result<(), String> {
    if let Ok(out) = Command::new("ip").args(["netns", "pids", ns]).output() {
        let pids: Vec<String> = String::from_utf8_lossy(&out.stdout)
            .split_whitespace()
            .map(str::to_owned)
            .collect();
        if !pids.is_empty() {
            let _ = Command::new("kill").arg("-KILL").args(&pids).status();
        }
    }
    ip(&["netns", "del", ns])
}

/// Whether `name` is `PREFIX<pid><role>` for one of `roles`, made by a
/// test process that no longer runs.
pub fn is_stale(name: &str, prefix: &str, roles: &[&str]) -> bool {
    let Some(rest) = name.strip_prefix(prefix) else {
        return false;
    };
    let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
    !digits.is_empty()
        && roles.contains(&&rest[digits.len()..])
        && !std::path::Path::new("/proc").join(&digits).exists()
}

/// The namespaces that [`is_stale`] says an earlier, killed run left.
pub fn stale_netns(prefix: &str, roles: &[&str]) -> Vec<String> {
    let Ok(out) = Command::new("ip").args(["netns", "list"]).output() else {
        return Vec::new();
    };
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .filter(|name| is_stale(name, prefix, roles))
        .map(str::to_owned)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stale_names_are_prefix_dead_pid_and_role() {
        // pid 0 never has a /proc entry of its own.
        assert!(is_stale("mn0s", "mn", &["s", "a"]));
        assert!(!is_stale("mn0x", "mn", &["s", "a"]), "unknown role");
        assert!(!is_stale("mns", "mn", &["s"]), "no pid");
        assert!(!is_stale("other0s", "mn", &["s"]), "other prefix");
        let me = format!("mn{}s", std::process::id());
        assert!(!is_stale(&me, "mn", &["s"]), "a running pid is not stale");
    }
}
