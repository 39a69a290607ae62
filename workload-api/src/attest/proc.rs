//! Reading `/proc/<pid>` and the local user and group databases.

use std::io::Read;
use std::path::{Path, PathBuf};

use super::AttestError;

pub(super) fn read(path: PathBuf) -> Result<String, AttestError> {
    std::fs::read_to_string(&path).map_err(|source| AttestError::Proc { path, source })
}

/// Field 22 of `/proc/<pid>/stat`: the start time in clock ticks since
/// boot. Together with the pid it names one process.
pub(super) fn start_time(proc_root: &Path, pid: i32) -> Result<u64, AttestError> {
    let path = proc_root.join(pid.to_string()).join("stat");
    let stat = read(path.clone())?;
    // `comm` (field 2) may contain spaces and parentheses: fields after the
    // last ')' are plain. Field 3 is the first one after it.
    stat.rsplit_once(')')
        .and_then(|(_, rest)| rest.split_whitespace().nth(19))
        .and_then(|f| f.parse().ok())
        .ok_or(AttestError::ProcFormat { path })
}

/// The effective uid and the supplementary gids from `/proc/<pid>/status`.
pub(super) fn status(proc_root: &Path, pid: i32) -> Result<(u32, Vec<u32>), AttestError> {
    let path = proc_root.join(pid.to_string()).join("status");
    let text = read(path.clone())?;
    let field = |name: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(name))
            .map(str::split_whitespace)
    };
    let uid = field("Uid:")
        .and_then(|mut f| f.nth(1))
        .and_then(|u| u.parse().ok())
        .ok_or_else(|| AttestError::ProcFormat { path: path.clone() })?;
    let groups = field("Groups:")
        .map(|f| f.map(str::parse).collect::<Result<Vec<u32>, _>>())
        .transpose()
        .map_err(|_| AttestError::ProcFormat { path: path.clone() })?
        .unwrap_or_default();
    Ok((uid, groups))
}

/// The target of `/proc/<pid>/exe`.
pub(super) fn exe_path(proc_root: &Path, pid: i32) -> Result<PathBuf, AttestError> {
    let path = proc_root.join(pid.to_string()).join("exe");
    std::fs::read_link(&path).map_err(|source| AttestError::Proc { path, source })
}

/// SHA-256 of the executable, read through `/proc/<pid>/exe` (which
/// reaches the file even when it was replaced on disk). A file larger than
/// `limit` bytes is refused before reading, and reading stops at `limit`
/// should it grow meanwhile.
pub(super) fn exe_sha256(proc_root: &Path, pid: i32, limit: u64) -> Result<String, AttestError> {
    let path = proc_root.join(pid.to_string()).join("exe");
    let io = |source| AttestError::Proc {
        path: path.clone(),
        source,
    };
    let file = std::fs::File::open(&path).map_err(io)?;
    let size = file.metadata().map_err(io)?.len();
    if size > limit {
        return Err(AttestError::ExecutableTooLarge { pid, size, limit });
    }
    let mut file = file.take(limit.saturating_add(1));
    let mut ctx = aws_lc_rs::digest::Context::new(&aws_lc_rs::digest::SHA256);
    let mut buf = vec![0u8; 64 * 1024];
    let mut total = 0u64;
    loop {
        let n = file.read(&mut buf).map_err(io)?;
        if n == 0 {
            break;
        }
        total += n as u64;
        if total > limit {
            return Err(AttestError::ExecutableTooLarge {
                pid,
                size: total,
                limit,
            });
        }
        ctx.update(buf.get(..n).unwrap_or_default());
    }
    Ok(ctx
        .finish()
        .as_ref()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect())
}

/// The name of `id` in a `passwd`- or `group`-format file (name first,
/// id third). Missing files and unknown ids give `None`.
pub(super) fn name_of(db: &Path, id: u32) -> Option<String> {
    let text = std::fs::read_to_string(db).ok()?;
    text.lines().find_map(|line| {
        let mut f = line.split(':');
        let name = f.next()?;
        let found: u32 = f.nth(1)?.parse().ok()?;
        (found == id && !name.is_empty()).then(|| name.to_owned())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn own_process_facts_are_readable() {
        let pid = i32::try_from(std::process::id()).unwrap();
        let root = Path::new("/proc");
        let t1 = start_time(root, pid).unwrap();
        assert_eq!(start_time(root, pid).unwrap(), t1);
        let (uid, _groups) = status(root, pid).unwrap();
        use std::os::unix::fs::MetadataExt;
        assert_eq!(uid, std::fs::metadata("/proc/self").unwrap().uid());
        assert_eq!(
            exe_path(root, pid).unwrap(),
            std::env::current_exe().unwrap()
        );
        assert_eq!(exe_sha256(root, pid, u64::MAX).unwrap().len(), 64);
    }

    #[test]
    fn stat_with_parentheses_in_comm_is_parsed() {
        let dir = std::env::temp_dir().join(format!("wl-proc-{}", std::process::id()));
        std::fs::create_dir_all(dir.join("7")).unwrap();
        let fields: Vec<String> = (3..=22).map(|i| i.to_string()).collect();
        std::fs::write(
            dir.join("7/stat"),
            format!("7 (a) b) (c) {}", fields.join(" ")),
        )
        .unwrap();
        assert_eq!(start_time(&dir, 7).unwrap(), 22);
        std::fs::write(dir.join("7/stat"), "7 (x) S 1").unwrap();
        assert!(matches!(
            start_time(&dir, 7),
            Err(AttestError::ProcFormat { .. })
        ));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn names_come_from_the_database_file() {
        let dir = std::env::temp_dir().join(format!("wl-db-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let db = dir.join("passwd");
        std::fs::write(
            &db,
            "root:x:0:0::/root:/bin/sh\nbad line\nweb:x:1000:1000::/:/bin/sh\n",
        )
        .unwrap();
        assert_eq!(name_of(&db, 1000).as_deref(), Some("web"));
        assert_eq!(name_of(&db, 0).as_deref(), Some("root"));
        assert_eq!(name_of(&db, 5), None);
        assert_eq!(name_of(&dir.join("missing"), 0), None);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
