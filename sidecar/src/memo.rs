//! One value a connection keeps with the key it was built for.

use std::sync::{Mutex, PoisonError};

/// One value kept with the key it was built for: a connection's requests
/// mostly ask for the same one again (labels, an `x-forwarded-client-cert`
/// value).
pub(crate) struct KeptFor<K, V> {
    last: Mutex<Option<(K, V)>>,
}

impl<K, V: Clone> KeptFor<K, V> {
    pub(crate) fn new() -> Self {
        KeptFor {
            last: Mutex::new(None),
        }
    }

    /// The kept value if `fresh` accepts the key it was built for;
    /// otherwise `build`'s, kept under `key`.
    pub(crate) fn get(
        &self,
        fresh: impl FnOnce(&K) -> bool,
        key: impl FnOnce() -> K,
        build: impl FnOnce() -> V,
    ) -> V {
        // An `Option` written whole stays consistent even if a panic
        // poisoned the lock.
        let mut last = self.last.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some((k, v)) = last.as_ref()
            && fresh(k)
        {
            return v.clone();
        }
        let v = build();
        *last = Some((key(), v.clone()));
        v
    }

    /// The key the kept value was built for, if one is kept.
    #[cfg(test)]
    pub(crate) fn key(&self) -> Option<K>
    where
        K: Clone,
    {
        let last = self.last.lock().unwrap_or_else(PoisonError::into_inner);
        last.as_ref().map(|(k, _)| k.clone())
    }
}
