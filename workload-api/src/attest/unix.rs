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
/// The server calls the attestor once per connection, when it accepts it,
/// so the selectors describe the process that connected as it was then.
///
/// Every selector is built by spiffe-core's [`Selector::new`], the rule
/// svid-ca applies to registration entries. A value that rule refuses (a
/// path with a control character, or longer than
/// [`MAX_SELECTOR_LEN`](crate::MAX_SELECTOR_LEN) bytes) is left out: no
/// valid entry can name it, so leaving it out changes no match.
///
/// TCP callers get no selectors (hence no identity).
#[derive(Debug, Clone)]
pub struct UnixAttestor {
    proc_root: PathBuf,
    passwd: PathBuf,
    group: PathBuf,
    path: bool,
    sha256: bool,
    max_executable_size: u64,
}

/// The default of [`UnixAttestor::with_max_executable_size`]: 256 MiB.
pub const DEFAULT_MAX_EXECUTABLE_SIZE: u64 = 256 * 1024 * 1024;

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
            max_executable_size: DEFAULT_MAX_EXECUTABLE_SIZE,
        }
    }

    /// Reads process facts under `root` instead of `/proc` (for an agent
    /// that sees the host's proc file system at another mount point).
    pub fn with_proc_root(mut self, root: impl Into<PathBuf>) -> Self {
        self.proc_root = root.into();
        self
    }

    /// The largest executable hashed for `unix:sha256:` (default
    /// [`DEFAULT_MAX_EXECUTABLE_SIZE`]); a larger one fails attestation
    /// with [`AttestError::ExecutableTooLarge`], so a caller cannot make
    /// the agent hash gigabytes per connection.
    pub fn with_max_executable_size(mut self, bytes: u64) -> Self {
        self.max_executable_size = bytes;
        self
    }

    /// Also yield `unix:path:` of the caller's executable.
    pub fn with_path(mut self, enabled: bool) -> Self {
        self.path = enabled;
        self
    }

    /// Also yield `unix:sha256:` of the caller's executable (reads the
    /// whole binary once per connection, up to
    /// [`UnixAttestor::with_max_executable_size`]).
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
            .then(|| proc::exe_sha256(&self.proc_root, pid, self.max_executable_size))
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

    /// A fake proc root with process 7 running as `uid`, started at
    /// `start`, whose `exe` links to `target`.
    struct FakeProc(PathBuf);

    impl FakeProc {
        fn new(tag: &str, uid: u32, start: u64) -> Self {
            let mut rnd = [0u8; 8];
            aws_lc_rs::rand::fill(&mut rnd).unwrap();
            let name: String = rnd.iter().map(|b| format!("{b:02x}")).collect();
            let root = std::env::temp_dir().join(format!("wl-fakeproc-{tag}-{name}"));
            std::fs::create_dir_all(root.join("7")).unwrap();
            let p = FakeProc(root);
            p.set_start(start);
            std::fs::write(
                p.0.join("7/status"),
                format!("Name:\tx\nUid:\t{uid}\t{uid}\t{uid}\t{uid}\nGroups:\t\n"),
            )
            .unwrap();
            p
        }

        fn set_start(&self, start: u64) {
            let fields: Vec<String> = (3..22).map(|i| i.to_string()).collect();
            std::fs::write(
                self.0.join("7/stat"),
                format!("7 (x) {} {start} 0 0", fields.join(" ")),
            )
            .unwrap();
        }

        fn link_exe(&self, target: &std::path::Path) {
            std::os::unix::fs::symlink(target, self.0.join("7/exe")).unwrap();
        }

        fn peer(&self) -> Caller {
            let meta = std::fs::metadata("/proc/self").unwrap();
            Caller::Unix(UnixPeer {
                uid: meta.uid(),
                gid: meta.gid(),
                pid: Some(7),
            })
        }
    }

    impl Drop for FakeProc {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    fn my_uid() -> u32 {
        std::fs::metadata("/proc/self").unwrap().uid()
    }

    #[test]
    fn the_proc_root_is_injectable_and_hashes_the_linked_file() {
        let p = FakeProc::new("hash", my_uid(), 100);
        let exe = p.0.join("binary");
        std::fs::write(&exe, b"abc").unwrap();
        p.link_exe(&exe);
        let s = UnixAttestor::new()
            .with_proc_root(&p.0)
            .with_path(true)
            .with_sha256(true)
            .attest(&p.peer())
            .unwrap();
        assert!(has(&s, &format!("unix:path:{}", exe.display())));
        assert!(has(
            &s,
            "unix:sha256:ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        ));
    }

    #[test]
    fn executables_above_the_size_bound_are_not_hashed() {
        let p = FakeProc::new("big", my_uid(), 100);
        let exe = p.0.join("big");
        // Sparse: no disk space, and no read happens before the refusal.
        std::fs::File::create(&exe)
            .unwrap()
            .set_len(DEFAULT_MAX_EXECUTABLE_SIZE + 1)
            .unwrap();
        p.link_exe(&exe);
        let err = UnixAttestor::new()
            .with_proc_root(&p.0)
            .with_sha256(true)
            .attest(&p.peer())
            .unwrap_err();
        assert!(
            matches!(err, AttestError::ExecutableTooLarge { pid: 7, size, limit }
                if size == DEFAULT_MAX_EXECUTABLE_SIZE + 1 && limit == DEFAULT_MAX_EXECUTABLE_SIZE),
            "{err}"
        );
        // A lowered bound applies too; path-only attestation reads nothing.
        std::fs::File::create(&exe).unwrap().set_len(11).unwrap();
        let err = UnixAttestor::new()
            .with_proc_root(&p.0)
            .with_sha256(true)
            .with_max_executable_size(10)
            .attest(&p.peer())
            .unwrap_err();
        assert!(
            matches!(
                err,
                AttestError::ExecutableTooLarge {
                    size: 11,
                    limit: 10,
                    ..
                }
            ),
            "{err}"
        );
        assert!(
            UnixAttestor::new()
                .with_proc_root(&p.0)
                .with_path(true)
                .with_max_executable_size(10)
                .attest(&p.peer())
                .is_ok()
        );
    }

    /// Every selector the attestor yields is valid under spiffe-core's
    /// one selector rule (kind `[a-z0-9_-]`, parts capped, no control
    /// characters): it prints and parses back to itself.
    #[test]
    fn attested_selectors_pass_spiffe_core_selector_rules() {
        let uid = my_uid();
        let p = FakeProc::new("rules", uid, 100);
        std::fs::write(
            p.0.join("7/status"),
            format!("Name:\tx\nUid:\t{uid}\t{uid}\t{uid}\t{uid}\nGroups:\t0 4 27\n"),
        )
        .unwrap();
        let exe = p.0.join("a b:c");
        std::fs::write(&exe, b"abc").unwrap();
        p.link_exe(&exe);
        let s = UnixAttestor::new()
            .with_proc_root(&p.0)
            .with_path(true)
            .with_sha256(true)
            .attest(&p.peer())
            .unwrap();
        for want in ["uid:", "gid:", "supplementary_gid:", "path:", "sha256:"] {
            assert!(
                s.iter().any(|x| x.value().starts_with(want)),
                "no unix:{want} in {s:?}"
            );
        }
        for x in &s {
            assert_eq!(x.kind(), "unix");
            let again: spiffe_core::Selector = x.to_string().parse().unwrap();
            assert_eq!(&again, x);
            assert_eq!(
                spiffe_core::Selector::new(x.kind(), x.value()).as_ref(),
                Ok(x)
            );
        }
    }

    #[test]
    fn a_path_longer_than_the_selector_cap_yields_no_path_selector() {
        let p = FakeProc::new("longpath", my_uid(), 100);
        // A dangling link is enough: path attestation only reads the link.
        let long = format!("/{}", "d/".repeat(crate::MAX_SELECTOR_LEN / 2));
        p.link_exe(std::path::Path::new(&long));
        let s = UnixAttestor::new()
            .with_proc_root(&p.0)
            .with_path(true)
            .attest(&p.peer())
            .unwrap();
        assert!(!s.iter().any(|x| x.value().starts_with("path:")), "{s:?}");
        assert!(has(&s, &format!("unix:uid:{}", my_uid())));
    }

    #[test]
    fn a_pid_recycled_during_attestation_is_refused() {
        // The executable is a FIFO: the attestor blocks hashing it while
        // the test replaces process 7 (a new start time), then the
        // attestor's second look at the start time must notice.
        let p = FakeProc::new("recycle", my_uid(), 100);
        let fifo = p.0.join("fifo");
        let made = std::process::Command::new("mkfifo").arg(&fifo).status();
        match made {
            Ok(s) if s.success() => {}
            other => panic!("mkfifo is needed for this test: {other:?}"),
        }
        p.link_exe(&fifo);
        let attestor = UnixAttestor::new().with_proc_root(&p.0).with_sha256(true);
        let peer = p.peer();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let _ = tx.send(attestor.attest(&peer));
        });
        // Opening for writing waits for the attestor to open for reading,
        // which it does after its first read of the start time.
        let mut writer = std::fs::OpenOptions::new().write(true).open(&fifo).unwrap();
        p.set_start(200);
        std::io::Write::write_all(&mut writer, b"another binary").unwrap();
        drop(writer);
        let got = rx
            .recv_timeout(std::time::Duration::from_secs(10))
            .expect("attestation ends within 10 s");
        assert!(
            matches!(got, Err(AttestError::ProcessChanged { pid: 7 })),
            "{got:?}"
        );
    }
}
