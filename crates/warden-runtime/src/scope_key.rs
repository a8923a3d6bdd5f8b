//! Scope keys: the 128-bit keys quota and ring counters are kept under, and
//! the maps and rate limiters keyed by them.

use governor::state::keyed::DefaultKeyedStateStore;
use governor::{Quota as GQuota, RateLimiter, clock::DefaultClock};
use std::hash::{BuildHasher, DefaultHasher, Hasher, RandomState};

/// Two random SipHash keys. A scope key is the pair of keyed digests of the
/// scope's identifying strings: 128 bits, so distinct agents (or sessions,
/// tools) do not share counters by collision, and unpredictable to callers,
/// who choose those strings.
#[derive(Clone)]
pub(crate) struct KeySeeds(RandomState, RandomState);

impl KeySeeds {
    pub(crate) fn new() -> Self {
        KeySeeds(RandomState::new(), RandomState::new())
    }

    /// The scope key of whatever `feed` writes into a hasher.
    pub(crate) fn key(&self, feed: impl Fn(&mut DefaultHasher)) -> u128 {
        let h = |seed: &RandomState| {
            let mut hasher = seed.build_hasher();
            feed(&mut hasher);
            hasher.finish()
        };
        (u128::from(h(&self.0)) << 64) | u128::from(h(&self.1))
    }
}

/// Hashes scope keys for the maps that hold their counters. Scope keys are
/// already keyed digests, uniform and unpredictable, so their bits are used
/// as they are rather than SipHashed a second time on every decision.
#[derive(Clone, Copy, Default)]
pub(crate) struct KeyHasher;

/// The [`Hasher`] of [`KeyHasher`].
pub(crate) struct KeyHash(u64);

impl BuildHasher for KeyHasher {
    type Hasher = KeyHash;
    fn build_hasher(&self) -> KeyHash {
        KeyHash(0)
    }
}

impl Hasher for KeyHash {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write_u128(&mut self, n: u128) {
        self.0 = self.0.rotate_left(23) ^ (n as u64) ^ ((n >> 64) as u64).rotate_left(32);
    }
    // Keys are `u128`s or small tuples of one and a tag byte; any other
    // bytes fold in all the same.
    fn write(&mut self, bytes: &[u8]) {
        for chunk in bytes.chunks(8) {
            let mut word = [0u8; 8];
            word[..chunk.len()].copy_from_slice(chunk);
            self.0 = self.0.rotate_left(23) ^ u64::from_le_bytes(word);
        }
    }
}

/// A GCRA rate limiter keyed by scope key.
pub(crate) type Limiter = RateLimiter<u128, DefaultKeyedStateStore<u128, KeyHasher>, DefaultClock>;

/// A [`Limiter`] enforcing `quota`.
pub(crate) fn limiter(quota: GQuota) -> Limiter {
    RateLimiter::dashmap_with_hasher(quota, KeyHasher)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::hash::Hash;

    #[test]
    fn keys_differ_by_input_and_by_seed_and_hash_apart() {
        let seeds = KeySeeds::new();
        let a = seeds.key(|h| "agent-a".hash(h));
        let b = seeds.key(|h| "agent-b".hash(h));
        assert_ne!(a, b);
        assert_eq!(a, seeds.key(|h| "agent-a".hash(h)));
        // Another book's seeds give another key for the same agent.
        assert_ne!(a, KeySeeds::new().key(|h| "agent-a".hash(h)));
        // Both halves of the key reach the map's hash.
        assert_ne!(KeyHasher.hash_one(a), KeyHasher.hash_one(b));
        assert_ne!(KeyHasher.hash_one(1u128), KeyHasher.hash_one(1u128 << 64));
        assert_ne!(KeyHasher.hash_one((0u8, a)), KeyHasher.hash_one((1u8, a)));
    }
}
