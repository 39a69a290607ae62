//! [`UnixAttestor`]: selectors from Unix peer credentials and `/proc`.

use std::path::PathBuf;

use super::{AttestError, Attestor, Caller, UnixPeer, proc};
use crate::{Selector, Selectors};

/// The built-in attestor for callers on the Unix socket.
///
/// Always yields `unix:uid:N` and `unix:gid:N`, `unix:user:NAME` and
/// `unix:group:NAME` when `/etc/passwd` and `/etc/group` know the ids, and,
/// when the kernel reports the pid, `unix:supplementary_gid:N` and
/// `unix:supplementary_group:NAME` for each supplementary group. Optionally
/// `unix:path:/abs/path` ([`UnixAttestor::with_path`]) and
/// `unix:sha256:HEX` ([`UnixAttestor::with_sha256`]) of the executable.
///
/// The process's start time is read before and after inspecting `/proc`,
/// and its uid is compared with the socket credentials: if the process
/// exited or its pid was recycled meanwhile, attestation fails rather than
/// attributing another process's facts to the caller.
///
/// TCP callers get no selectors (hence no identity).
#[derive(Debug, Clone)]
pub struct UnixAttestor {
    proc_root: PathBuf,
    passwd: PathBuf,
    group: PathBuf,
    path: bool,
    sha256: bool,
}

impl Default for UnixAttestor {
    fn default() -> Self {
        Self::new()
    }
}

impl UnixAttestor {
    /// Uid, gid, names and supplementary groups; no path or hash.
    pub fn new() -> Self {
        UnixAttestor {
            proc_root: PathBuf::from("/proc"),
            passwd: PathBuf::from("/etc/passwd"),
            group: PathBuf::from("/etc/group"),
            path: false,
            sha256: false,
        }
    }

    /// Also yield `unix:path:` of the caller's executable.
    pub fn with_path(mut self, enabled: bool) -> Self {
        self.path = enabled;
        self
    }

    /// Also yield `unix:sha256:` of the caller's executable (reads the
    /// whole binary on every call).
    pub fn with_sha256(mut self, enabled: bool) -> Self {
        self.sha256 = enabled;
        self
    }

    fn unix(&self, peer: &UnixPeer) -> Result<Selectors, AttestError> {
        let mut out = Selectors::new();
        let mut add = |value: String| {
            if let Ok(s) = Selector::new("unix", value) {
                out.insert(s);
            }
        };
        add(format!("uid:{}", peer.uid));
        add(format!("gid:{}", peer.gid));
        if let Some(name) = proc::name_of(&self.passwd, peer.uid) {
            add(format!("user:{name}"));
        }
        if let Some(name) = proc::name_of(&self.group, peer.gid) {
            add(format!("group:{name}"));
        }
        let Some(pid) = peer.pid.filter(|p| *p > 0) else {
            if self.path || self.sha256 {
                return Err(AttestError::NoPid);
            }
            return Ok(out);
        };
        let started = proc::start_time(&self.proc_root, pid)?;
        let (uid, groups) = proc::status(&self.proc_root, pid)?;
        let exe = self
            .path
            .then(|| proc::exe_path(&self.proc_root, pid))
            .transpose()?;
        let digest = self
            .sha256
            .then(|| proc::exe_sha256(&self.proc_root, pid))
            .transpose()?;
        // Re-check: the same process (pid and start time) still exists, so
        // everything above describes it and not a successor.
        if proc::start_time(&self.proc_root, pid).ok() != Some(started) {
            return Err(AttestError::ProcessChanged { pid });
        }
        if uid != peer.uid {
            return Err(AttestError::CredentialsChanged { pid, uid: peer.uid });
        }
        for gid in groups {
            add(format!("supplementary_gid:{gid}"));
            if let Some(name) = proc::name_of(&self.group, gid) {
                add(format!("supplementary_group:{name}"));
            }
        }
        if let Some(exe) = exe {
            add(format!("path:{}", exe.display()));
        }
        if let Some(digest) = digest {
            add(format!("sha256:{digest}"));
        }
        Ok(out)
    }
}

impl Attestor for UnixAttestor {
    fn attest(&self, caller: &Caller) -> Result<Selectors, AttestError> {
        match caller {
            Caller::Unix(peer) => self.unix(peer),
            Caller::Tcp { .. } => Ok(Selectors::new()),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::MetadataExt;

    use super::*;

    fn me() -> UnixPeer {
        let meta = std::fs::metadata("/proc/self").unwrap();
        UnixPeer {
            uid: meta.uid(),
            gid: meta.gid(),
            pid: Some(i32::try_from(std::process::id()).unwrap()),
        }
    }

    fn has(s: &Selectors, text: &str) -> bool {
        s.contains(&text.parse().unwrap())
    }

    #[test]
    fn own_process_yields_uid_gid_path_and_hash() {
        let peer = me();
        let s = UnixAttestor::new()
            .with_path(true)
            .with_sha256(true)
            .attest(&Caller::Unix(peer))
            .unwrap();
        assert!(has(&s, &format!("unix:uid:{}", peer.uid)));
        assert!(has(&s, &format!("unix:gid:{}", peer.gid)));
        let exe = std::env::current_exe().unwrap();
        assert!(has(&s, &format!("unix:path:{}", exe.display())));
        assert_eq!(
            s.iter()
                .filter(|x| x.value().starts_with("sha256:"))
                .count(),
            1
        );
        if peer.uid == 0 {
            assert!(has(&s, "unix:user:root"));
        }
    }

    #[test]
    fn path_and_hash_are_off_by_default() {
        let s = UnixAttestor::new().attest(&Caller::Unix(me())).unwrap();
        assert!(
            !s.iter()
                .any(|x| x.value().starts_with("path:") || x.value().starts_with("sha256:"))
        );
    }

    #[test]
    fn a_pid_running_as_another_uid_is_refused() {
        let mut peer = me();
        peer.uid = peer.uid.wrapping_add(4242);
        let err = UnixAttestor::new().attest(&Caller::Unix(peer)).unwrap_err();
        assert!(
            matches!(err, AttestError::CredentialsChanged { .. }),
            "{err}"
        );
    }

    #[test]
    fn a_vanished_pid_is_refused() {
        let mut peer = me();
        peer.pid = Some(i32::MAX - 1);
        let err = UnixAttestor::new().attest(&Caller::Unix(peer)).unwrap_err();
        assert!(matches!(err, AttestError::Proc { .. }), "{err}");
    }

    #[test]
    fn path_selector_without_pid_is_an_error() {
        let mut peer = me();
        peer.pid = None;
        assert!(matches!(
            UnixAttestor::new()
                .with_path(true)
                .attest(&Caller::Unix(peer)),
            Err(AttestError::NoPid)
        ));
        let s = UnixAttestor::new().attest(&Caller::Unix(peer)).unwrap();
        assert!(has(&s, &format!("unix:uid:{}", peer.uid)));
    }

    #[test]
    fn tcp_callers_get_no_selectors() {
        let s = UnixAttestor::new()
            .attest(&Caller::Tcp {
                peer: "127.0.0.1:1".parse().unwrap(),
            })
            .unwrap();
        assert!(s.is_empty());
    }
}
