//! Bounded replay cache: O(1) lookup by `(iss, jti)`, eviction in expiry
//! order (a min-heap), and refusal — not forgetting — when full.

use sha2::{Digest as _, Sha256};
use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::sync::Mutex;

use crate::IdentityError;

type Key = [u8; 32];

#[derive(Debug, Default)]
struct Inner {
    /// Key → the time after which it may be forgotten.
    seen: HashMap<Key, u64>,
    /// The same entries ordered by that time, soonest first.
    expiry: BinaryHeap<Reverse<(u64, Key)>>,
}

/// Remembers accepted `(iss, jti)` pairs until the token could no longer be
/// accepted anyway.
#[derive(Debug)]
pub struct ReplayCache {
    inner: Mutex<Inner>,
    capacity: usize,
}

impl ReplayCache {
    /// A cache holding at most `capacity` unexpired entries.
    #[must_use]
    pub fn new(capacity: usize) -> Self {
        ReplayCache {
            inner: Mutex::new(Inner::default()),
            capacity: capacity.max(1),
        }
    }

    /// Records `(iss, jti)` as used until `forget_after`; fails if it was
    /// already used, or if the cache is full of unexpired entries (fail
    /// closed: evicting a live entry would re-open a replay window).
    ///
    /// # Errors
    /// [`IdentityError::Replayed`], [`IdentityError::ReplayCacheFull`].
    pub fn check_and_insert(
        &self,
        iss: &str,
        jti: &str,
        forget_after: u64,
        now: u64,
    ) -> Result<(), IdentityError> {
        // Fixed-size key: the length prefix keeps ("ab","c") and ("a","bc") apart.
        let mut h = Sha256::new();
        h.update((iss.len() as u64).to_be_bytes());
        h.update(iss.as_bytes());
        h.update(jti.as_bytes());
        let key: Key = h.finalize().into();
        let mut inner = self
            .inner
            .lock()
            .map_err(|_| IdentityError::Internal("replay cache lock poisoned".into()))?;
        let Inner { seen, expiry } = &mut *inner;
        while let Some(Reverse((at, k))) = expiry.peek().copied() {
            if at >= now {
                break;
            }
            expiry.pop();
            if seen.get(&k) == Some(&at) {
                seen.remove(&k);
            }
        }
        if seen.contains_key(&key) {
            return Err(IdentityError::Replayed(
                crate::did::truncate(jti).to_owned(),
            ));
        }
        if seen.len() >= self.capacity {
            return Err(IdentityError::ReplayCacheFull(seen.len()));
        }
        seen.insert(key, forget_after);
        expiry.push(Reverse((forget_after, key)));
        Ok(())
    }

    /// Unexpired entries currently held.
    #[must_use]
    pub fn len(&self) -> usize {
        self.inner.lock().map_or(0, |i| i.seen.len())
    }

    /// Whether nothing is held.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn replay_and_expiry() {
        let c = ReplayCache::new(2);
        c.check_and_insert("a", "1", 100, 10).unwrap();
        assert!(matches!(
            c.check_and_insert("a", "1", 100, 11),
            Err(IdentityError::Replayed(_))
        ));
        // Same jti, other issuer: distinct.
        c.check_and_insert("b", "1", 50, 11).unwrap();
        // Full of live entries: refuse.
        assert!(matches!(
            c.check_and_insert("c", "1", 100, 12),
            Err(IdentityError::ReplayCacheFull(2))
        ));
        // After b/1 expires, room again; a/1 is still remembered.
        c.check_and_insert("c", "1", 100, 51).unwrap();
        assert!(matches!(
            c.check_and_insert("a", "1", 100, 52),
            Err(IdentityError::Replayed(_))
        ));
        assert_eq!(c.len(), 2);
        // Length-prefixed key: no ambiguity between splits.
        let d = ReplayCache::new(10);
        d.check_and_insert("ab", "c", 10, 0).unwrap();
        d.check_and_insert("a", "bc", 10, 0).unwrap();
    }

    #[test]
    fn concurrent_use_admits_exactly_once() {
        let c = std::sync::Arc::new(ReplayCache::new(1000));
        let handles: Vec<_> = (0..8)
            .map(|_| {
                let c = std::sync::Arc::clone(&c);
                std::thread::spawn(move || {
                    (0..100)
                        .filter(|i| c.check_and_insert("x", &i.to_string(), 1000, 0).is_ok())
                        .count()
                })
            })
            .collect();
        let admitted: usize = handles.into_iter().map(|h| h.join().unwrap()).sum();
        assert_eq!(admitted, 100);
    }
}
