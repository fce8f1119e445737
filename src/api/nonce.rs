//! Replay protection: remembers each (access key id, signature nonce) until the request
//! that carried it could no longer pass the timestamp check, in bounded memory.
//!
//! A nonce is stored with an expiry = request timestamp + window; past that, a replay is
//! refused by the timestamp check anyway, so the entry can go. Expired entries are evicted
//! on every call (amortised O(log n) via a min-heap). When `capacity` live entries exist
//! and none has expired, new requests are refused with 503 `ServiceUnavailable` rather than
//! forgetting a nonce (which would reopen replay). The count is global, not per key.
//!
//! Not here: signature checks. Call [`NonceCache::check_and_insert`] only after the
//! signature verified, or anyone could burn nonces. Not persistent: after a restart a
//! request signed in the last window could be replayed once (documented limitation).

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::sync::{Arc, Mutex};

use thiserror::Error;

use super::error::ApiError;

/// Why a nonce was refused.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum NonceError {
    #[error("signature nonce already used")]
    Used,
    #[error("nonce cache is full ({capacity} live entries)")]
    Full { capacity: usize },
}

impl From<NonceError> for ApiError {
    fn from(e: NonceError) -> Self {
        match e {
            NonceError::Used => ApiError::SignatureNonceUsed,
            NonceError::Full { capacity } => ApiError::ServiceUnavailable(format!(
                "The service is receiving more signed requests than it can remember for replay \
                 protection ({capacity} within the timestamp window); retry later."
            )),
        }
    }
}

/// (access key id, nonce): nonces are scoped per key, so tenants cannot collide.
type Key = Arc<(String, String)>;

#[derive(Default)]
struct Inner {
    /// Live nonces and their expiry (unix seconds).
    live: HashMap<Key, i64>,
    /// The same entries ordered by expiry, soonest first, for cheap eviction.
    by_expiry: BinaryHeap<Reverse<(i64, Key)>>,
}

/// Thread-safe bounded nonce store. Share one per server (e.g. in an `Arc`).
pub struct NonceCache {
    inner: Mutex<Inner>,
    capacity: usize,
}

impl NonceCache {
    /// Default cap on live entries: ~1M nonces of 32 chars is on the order of 200 MB at worst.
    pub const DEFAULT_CAPACITY: usize = 1_000_000;

    /// A cache holding at most `capacity` live nonces (at least 1).
    pub fn new(capacity: usize) -> Self {
        NonceCache {
            inner: Mutex::new(Inner::default()),
            capacity: capacity.max(1),
        }
    }

    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// Live entries right now (including any not yet evicted).
    pub fn len(&self) -> usize {
        self.lock().live.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Records `nonce` for `access_key_id` until `expires_at` (unix seconds, inclusive),
    /// first evicting whatever expired before `now`. Fails if it is already live, or if the
    /// cache is full of live entries.
    pub fn check_and_insert(
        &self,
        access_key_id: &str,
        nonce: &str,
        expires_at: i64,
        now: i64,
    ) -> Result<(), NonceError> {
        let mut inner = self.lock();
        inner.evict_expired(now);
        let key: Key = Arc::new((access_key_id.to_owned(), nonce.to_owned()));
        if inner.live.contains_key(&key) {
            return Err(NonceError::Used);
        }
        if inner.live.len() >= self.capacity {
            return Err(NonceError::Full {
                capacity: self.capacity,
            });
        }
        inner.live.insert(Arc::clone(&key), expires_at);
        inner.by_expiry.push(Reverse((expires_at, key)));
        Ok(())
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        // A panic while holding the lock cannot leave the map and heap inconsistent in a way
        // that matters (worst case an entry lingers until its expiry), so keep serving.
        self.inner
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

impl Default for NonceCache {
    fn default() -> Self {
        Self::new(Self::DEFAULT_CAPACITY)
    }
}

impl Inner {
    fn evict_expired(&mut self, now: i64) {
        while let Some(Reverse((expiry, _))) = self.by_expiry.peek() {
            if *expiry >= now {
                break;
            }
            if let Some(Reverse((_, key))) = self.by_expiry.pop() {
                self.live.remove(&key);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replay_within_expiry_is_refused_and_allowed_after() {
        let c = NonceCache::new(10);
        assert_eq!(c.check_and_insert("AK", "n1", 100, 50), Ok(()));
        assert_eq!(
            c.check_and_insert("AK", "n1", 100, 60),
            Err(NonceError::Used)
        );
        // Still refused at the last second of validity (expiry is inclusive).
        assert_eq!(
            c.check_and_insert("AK", "n1", 100, 100),
            Err(NonceError::Used)
        );
        // Past expiry it was evicted, so the same nonce is new again.
        assert_eq!(c.check_and_insert("AK", "n1", 200, 101), Ok(()));
        assert_eq!(c.len(), 1);
    }

    #[test]
    fn nonces_are_scoped_per_access_key() {
        let c = NonceCache::new(10);
        assert_eq!(c.check_and_insert("AK1", "n", 100, 0), Ok(()));
        assert_eq!(c.check_and_insert("AK2", "n", 100, 0), Ok(()));
        assert_eq!(
            c.check_and_insert("AK1", "n", 100, 0),
            Err(NonceError::Used)
        );
    }

    #[test]
    fn eviction_removes_only_expired_entries_in_any_insertion_order() {
        let c = NonceCache::new(100);
        for (i, exp) in [50, 10, 40, 20, 30].iter().enumerate() {
            c.check_and_insert("AK", &format!("n{i}"), *exp, 0).unwrap();
        }
        assert_eq!(c.len(), 5);
        c.check_and_insert("AK", "probe", 1000, 25).unwrap(); // evicts 10 and 20
        assert_eq!(c.len(), 4);
        assert_eq!(
            c.check_and_insert("AK", "n2", 40, 26),
            Err(NonceError::Used)
        );
        assert_eq!(c.check_and_insert("AK", "n3", 40, 26), Ok(())); // n3 (20) had gone
    }

    #[test]
    fn full_cache_refuses_with_503_instead_of_forgetting() {
        let c = NonceCache::new(2);
        c.check_and_insert("AK", "a", 100, 0).unwrap();
        c.check_and_insert("AK", "b", 100, 0).unwrap();
        let err = c.check_and_insert("AK", "c", 100, 0).unwrap_err();
        assert_eq!(err, NonceError::Full { capacity: 2 });
        let api: ApiError = err.into();
        assert_eq!((api.code(), api.http_status()), ("ServiceUnavailable", 503));
        // The remembered ones are still remembered.
        assert_eq!(c.check_and_insert("AK", "a", 100, 0), Err(NonceError::Used));
        // Once something expires there is room again.
        assert_eq!(c.check_and_insert("AK", "c", 300, 101), Ok(()));
        assert_eq!(c.len(), 1);
    }

    #[test]
    fn concurrent_inserts_of_one_nonce_admit_exactly_one() {
        let c = Arc::new(NonceCache::new(1000));
        let handles: Vec<_> = (0..8)
            .map(|_| {
                let c = Arc::clone(&c);
                std::thread::spawn(move || c.check_and_insert("AK", "same", 100, 0).is_ok())
            })
            .collect();
        let ok = handles
            .into_iter()
            .map(|h| h.join().unwrap())
            .filter(|&ok| ok)
            .count();
        assert_eq!(ok, 1);
    }
}
