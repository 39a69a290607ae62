//! A per-caller share of the server's stream limit, so that one user
//! cannot hold every stream.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};

use crate::attest::Caller;

/// Whose share a stream counts against: the Unix uid, or the TCP peer's
/// address.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum CallerKey {
    Uid(u32),
    Ip(IpAddr),
}

impl From<&Caller> for CallerKey {
    fn from(caller: &Caller) -> Self {
        match caller {
            Caller::Unix(peer) => CallerKey::Uid(peer.uid),
            Caller::Tcp { peer } => CallerKey::Ip(peer.ip()),
        }
    }
}

/// Open streams per caller, each at most `limit`.
#[derive(Debug)]
pub(crate) struct Shares {
    limit: usize,
    open: Arc<Mutex<HashMap<CallerKey, usize>>>,
}

/// One stream counted against a caller's share until dropped.
#[derive(Debug)]
pub(crate) struct Share {
    key: CallerKey,
    open: Arc<Mutex<HashMap<CallerKey, usize>>>,
}

impl Shares {
    pub(crate) fn new(limit: usize) -> Self {
        Shares {
            limit,
            open: Arc::default(),
        }
    }

    /// A share for `key`, or `None` when it already holds `limit` streams.
    pub(crate) fn acquire(&self, key: CallerKey) -> Option<Share> {
        let mut open = self.open.lock().unwrap_or_else(|p| p.into_inner());
        let n = open.entry(key).or_insert(0);
        if *n >= self.limit {
            return None;
        }
        *n += 1;
        Some(Share {
            key,
            open: Arc::clone(&self.open),
        })
    }
}

impl Drop for Share {
    fn drop(&mut self) {
        let mut open = self.open.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(n) = open.get_mut(&self.key) {
            *n -= 1;
            if *n == 0 {
                open.remove(&self.key);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_caller_gets_its_own_share() {
        let shares = Shares::new(2);
        let a1 = shares.acquire(CallerKey::Uid(1)).unwrap();
        let _a2 = shares.acquire(CallerKey::Uid(1)).unwrap();
        assert!(shares.acquire(CallerKey::Uid(1)).is_none());
        let _b = shares
            .acquire(CallerKey::Uid(2))
            .expect("another uid is unaffected");
        drop(a1);
        assert!(shares.acquire(CallerKey::Uid(1)).is_some());
        drop(_b);
        assert!(!shares.open.lock().unwrap().contains_key(&CallerKey::Uid(2)));
    }
}
