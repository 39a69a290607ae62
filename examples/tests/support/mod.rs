//! Shared pieces of the end-to-end tests.
#![allow(dead_code, unreachable_pub)]

pub mod agent;

use std::path::PathBuf;

/// A directory under the system temp dir, removed on drop.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> Self {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
        let p = std::env::temp_dir().join(format!("e2e-{tag}-{}-{nanos}", std::process::id()));
        std::fs::create_dir_all(&p).expect("the temp dir is writable");
        TempDir(p)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}
