//! Replay protection: remembers each (access key id, signature nonce) until the request
//! that carried it could no longer pass the timestamp check, in bounded memory.
//!
//! A nonce is stored with an expiry = request timestamp + window; past that, a replay is
//! refused by the timestamp check anyway, so the entry can go. Expired entries are evicted
//! on every call (amortised O(log n) via a min-heap). When a key has `per_key` live
//! entries, or the cache `capacity` in all, new requests of that key (of every key) are
//! refused with 503 `ServiceUnavailable` rather than forgetting a nonce, which would reopen
//! replay. The per-key quota keeps one busy or hostile tenant from locking out the others.
//!
//! A nonce is kept as a 128-bit digest, not its text: about 100 bytes per entry with the
//! map and heap, whatever the nonce's length (1M entries: ~100 MB).
//!
//! Persistence: [`NonceCache::open`] loads the snapshot [`NonceCache::save`] wrote at the
//! last clean shutdown plus the journal (`api::nonce_journal`) of every nonce accepted since
//! the last start, writes them as a fresh snapshot and starts an empty journal. So the live
//! nonces carry over a clean restart and `kill -9` alike (a power cut can lose the journal's
//! last unflushed appends: docs/security.md).
//!
//! Not here: signature checks. Call [`NonceCache::check_and_insert`] only after the
//! signature verified, or anyone could burn nonces.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::io::Write as _;
use std::path::Path;
use std::sync::{Arc, Mutex};

use sha2::{Digest, Sha256};
use thiserror::Error;

use super::error::ApiError;
use super::nonce_journal::{journal_paths, NonceJournal};
use crate::signing::{hex, unhex};

/// Why a nonce was refused.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum NonceError {
    #[error("signature nonce already used")]
    Used,
    #[error("this access key has {per_key} live nonces")]
    KeyFull { per_key: usize },
    #[error("nonce cache is full ({capacity} live entries)")]
    Full { capacity: usize },
}

impl From<NonceError> for ApiError {
    fn from(e: NonceError) -> Self {
        match e {
            NonceError::Used => ApiError::SignatureNonceUsed,
            NonceError::KeyFull { per_key } => ApiError::ServiceUnavailable(format!(
                "This AccessKeyId has sent more signed requests than the server remembers for \
                 replay protection per key ({per_key} within the timestamp window); retry later."
            )),
            NonceError::Full { capacity } => ApiError::ServiceUnavailable(format!(
                "The service is receiving more signed requests than it can remember for replay \
                 protection ({capacity} within the timestamp window); retry later."
            )),
        }
    }
}

/// A nonce as stored: the first 128 bits of its SHA-256.
type NonceDigest = u128;

fn digest(nonce: &str) -> NonceDigest {
    let d = Sha256::digest(nonce.as_bytes());
    let mut first = [0u8; 16];
    first.copy_from_slice(&d[..16]);
    u128::from_le_bytes(first)
}

/// One live entry: (access key id, nonce digest); key ids are shared, one `Arc` per key.
type Entry = (Arc<str>, NonceDigest);

#[derive(Default)]
struct Inner {
    /// Live nonces and their expiry (unix seconds).
    live: HashMap<Entry, i64>,
    /// The same entries ordered by expiry, soonest first, for cheap eviction.
    by_expiry: BinaryHeap<Reverse<(i64, Entry)>>,
    /// Live entries per access key (keys with none are removed).
    per_key: HashMap<Arc<str>, usize>,
    /// Where accepted nonces are appended (a cache made by [`NonceCache::open`]).
    journal: Option<NonceJournal>,
}

/// Thread-safe bounded nonce store. Share one per server (e.g. in an `Arc`).
pub struct NonceCache {
    inner: Mutex<Inner>,
    capacity: usize,
    per_key: usize,
}

impl NonceCache {
    /// Default cap on live entries, all keys together (~100 MB at most).
    pub const DEFAULT_CAPACITY: usize = 1_000_000;
    /// Default cap per access key: 200,000 requests within the window (over 100 per second
    /// sustained), so five keys at their cap still leave room.
    pub const DEFAULT_PER_KEY: usize = 200_000;

    /// A cache holding at most `capacity` live nonces, `per_key` of them for one access key
    /// (each at least 1, `per_key` at most `capacity`).
    pub fn new(capacity: usize, per_key: usize) -> Self {
        let capacity = capacity.max(1);
        NonceCache {
            inner: Mutex::new(Inner::default()),
            capacity,
            per_key: per_key.clamp(1, capacity),
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
    /// key's quota or the whole cache is full of live entries.
    pub fn check_and_insert(
        &self,
        access_key_id: &str,
        nonce: &str,
        expires_at: i64,
        now: i64,
    ) -> Result<(), NonceError> {
        let d = digest(nonce);
        let mut inner = self.lock();
        inner.evict_expired(now);
        let entry = (inner.shared_key(access_key_id), d);
        if inner.live.contains_key(&entry) {
            return Err(NonceError::Used);
        }
        if inner.per_key.get(access_key_id).copied().unwrap_or(0) >= self.per_key {
            return Err(NonceError::KeyFull {
                per_key: self.per_key,
            });
        }
        if inner.live.len() >= self.capacity {
            return Err(NonceError::Full {
                capacity: self.capacity,
            });
        }
        if let Some(journal) = inner.journal.as_mut() {
            journal.append(&entry_line(expires_at, d, access_key_id), expires_at, now);
        }
        inner.insert(entry, expires_at);
        Ok(())
    }

    /// Writes the live entries to `path` (atomically: a temporary file, fsynced, renamed),
    /// then empties the journal, which the file now covers.
    pub fn save(&self, path: &Path, now: i64) -> std::io::Result<usize> {
        let mut inner = self.lock();
        inner.evict_expired(now);
        let mut out = String::new();
        for ((key, d), expiry) in &inner.live {
            out.push_str(&entry_line(*expiry, *d, key));
        }
        let tmp = path.with_extension("part");
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(out.as_bytes())?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)?;
        if let Some(journal) = inner.journal.as_mut() {
            journal.clear(now)?;
        }
        Ok(inner.live.len())
    }

    /// A cache with the entries `save` wrote to `path` that are still live at `now` (an
    /// empty one when there is no file). Lines it cannot read are skipped: the file only
    /// ever makes the cache remember more. Keeps no journal.
    pub fn load(path: &Path, now: i64, capacity: usize, per_key: usize) -> std::io::Result<Self> {
        let cache = Self::new(capacity, per_key);
        cache.read_entries(path, now)?;
        Ok(cache)
    }

    /// The server's cache: the snapshot at `path` plus the journal of nonces accepted since
    /// (what a crash left), still live at `now`, compacted into a new snapshot; from now on
    /// every accepted nonce is journaled.
    pub fn open(path: &Path, now: i64, capacity: usize, per_key: usize) -> std::io::Result<Self> {
        let cache = Self::load(path, now, capacity, per_key)?;
        for journal in journal_paths(path) {
            cache.read_entries(&journal, now)?;
        }
        cache.save(path, now)?;
        cache.lock().journal = Some(NonceJournal::start(path, now)?);
        Ok(cache)
    }

    /// Adds the live entries of a snapshot or journal file (none if it does not exist).
    fn read_entries(&self, path: &Path, now: i64) -> std::io::Result<()> {
        let text = match std::fs::read(path) {
            Ok(t) => String::from_utf8_lossy(&t).into_owned(),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(e),
        };
        let mut inner = self.lock();
        for line in text.lines() {
            let mut f = line.split(' ');
            let (Some(expiry), Some(d), Some(key)) = (f.next(), f.next(), f.next()) else {
                continue;
            };
            let (Ok(expiry), Ok(d), Some(key)) = (
                expiry.parse::<i64>(),
                u128::from_str_radix(d, 16),
                unhex(key).and_then(|k| String::from_utf8(k).ok()),
            ) else {
                continue;
            };
            if expiry < now || inner.live.len() >= self.capacity {
                continue;
            }
            let key = inner.shared_key(&key);
            inner.insert((key, d), expiry);
        }
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

/// One entry as a snapshot or journal line: expiry, digest, hex of the key id.
fn entry_line(expiry: i64, d: NonceDigest, key: &str) -> String {
    format!("{expiry} {d:032x} {}\n", hex(key.as_bytes()))
}

impl Default for NonceCache {
    fn default() -> Self {
        Self::new(Self::DEFAULT_CAPACITY, Self::DEFAULT_PER_KEY)
    }
}

impl Inner {
    /// The key id as stored: the `Arc` its live entries share, or a new one.
    fn shared_key(&self, access_key_id: &str) -> Arc<str> {
        match self.per_key.get_key_value(access_key_id) {
            Some((k, _)) => k.clone(),
            None => Arc::from(access_key_id),
        }
    }

    fn insert(&mut self, entry: Entry, expires_at: i64) {
        if self.live.insert(entry.clone(), expires_at).is_none() {
            *self.per_key.entry(entry.0.clone()).or_insert(0) += 1;
        }
        self.by_expiry.push(Reverse((expires_at, entry)));
    }

    fn evict_expired(&mut self, now: i64) {
        while let Some(Reverse((expiry, _))) = self.by_expiry.peek() {
            if *expiry >= now {
                break;
            }
            let Some(Reverse((expiry, entry))) = self.by_expiry.pop() else {
                break;
            };
            // Only if the live entry is this one (not re-inserted with a later expiry).
            if self.live.get(&entry) == Some(&expiry) {
                self.live.remove(&entry);
                if let Some(n) = self.per_key.get_mut(&entry.0) {
                    *n -= 1;
                    if *n == 0 {
                        self.per_key.remove(&entry.0);
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replay_within_expiry_is_refused_and_allowed_after() {
        let c = NonceCache::new(10, 10);
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
        let c = NonceCache::new(10, 10);
        assert_eq!(c.check_and_insert("AK1", "n", 100, 0), Ok(()));
        assert_eq!(c.check_and_insert("AK2", "n", 100, 0), Ok(()));
        assert_eq!(
            c.check_and_insert("AK1", "n", 100, 0),
            Err(NonceError::Used)
        );
    }

    #[test]
    fn eviction_removes_only_expired_entries_in_any_insertion_order() {
        let c = NonceCache::new(100, 100);
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
        let c = NonceCache::new(2, 2);
        c.check_and_insert("AK", "a", 100, 0).unwrap();
        c.check_and_insert("AK2", "b", 100, 0).unwrap();
        let err = c.check_and_insert("AK3", "c", 100, 0).unwrap_err();
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
        let c = Arc::new(NonceCache::new(1000, 1000));
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

    #[test]
    fn one_key_at_its_quota_does_not_lock_out_the_others() {
        let c = NonceCache::new(100, 5);
        for i in 0..5 {
            c.check_and_insert("busy", &format!("n{i}"), 1000, 0)
                .unwrap();
        }
        assert_eq!(
            c.check_and_insert("busy", "n5", 1000, 0),
            Err(NonceError::KeyFull { per_key: 5 })
        );
        // A replay is still a replay, not "full".
        assert_eq!(
            c.check_and_insert("busy", "n0", 1000, 0),
            Err(NonceError::Used)
        );
        for i in 0..5 {
            c.check_and_insert("quiet", &format!("n{i}"), 1000, 0)
                .unwrap();
        }
        // The busy key's quota frees as its nonces expire.
        c.check_and_insert("busy", "late", 2000, 0).unwrap_err();
        assert_eq!(c.check_and_insert("busy", "late", 3000, 1001), Ok(()));
        assert_eq!(c.len(), 1);
        let api: ApiError = NonceError::KeyFull { per_key: 5 }.into();
        assert_eq!((api.code(), api.http_status()), ("ServiceUnavailable", 503));
    }

    #[test]
    fn long_nonces_cost_no_more_than_short_ones() {
        let c = NonceCache::new(10, 10);
        let long = "x".repeat(256);
        c.check_and_insert("AK", &long, 100, 0).unwrap();
        assert_eq!(
            c.check_and_insert("AK", &long, 100, 0),
            Err(NonceError::Used)
        );
        assert_eq!(c.check_and_insert("AK", &"x".repeat(255), 100, 0), Ok(()));
    }

    #[test]
    fn live_nonces_survive_a_save_and_load() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("nonces");
        let c = NonceCache::new(100, 100);
        c.check_and_insert("AK one", "n1", 1000, 0).unwrap();
        c.check_and_insert("AK2", "n2", 50, 0).unwrap(); // expired by load time
        assert_eq!(c.save(&path, 10).unwrap(), 2);
        let loaded = NonceCache::load(&path, 100, 100, 100).unwrap();
        assert_eq!(loaded.len(), 1);
        assert_eq!(
            loaded.check_and_insert("AK one", "n1", 1000, 100),
            Err(NonceError::Used)
        );
        assert_eq!(loaded.check_and_insert("AK2", "n2", 1000, 100), Ok(()));
        // No file: an empty cache; a damaged line is skipped.
        assert!(NonceCache::load(&dir.path().join("none"), 0, 10, 10)
            .unwrap()
            .is_empty());
        std::fs::write(&path, "garbage\n2000 zz 414b\n").unwrap();
        assert!(NonceCache::load(&path, 0, 10, 10).unwrap().is_empty());
    }

    #[test]
    fn journaled_nonces_survive_a_crash_and_are_compacted_at_start() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("nonces");
        let c = NonceCache::open(&path, 0, 100, 100).unwrap();
        c.check_and_insert("AK", "before-crash", 1000, 1).unwrap();
        c.check_and_insert("AK", "short", 5, 1).unwrap();
        drop(c); // no save: what kill -9 leaves
        let [_, journal] = journal_paths(&path);
        assert_eq!(
            std::fs::read_to_string(&journal).unwrap().lines().count(),
            2
        );

        let c = NonceCache::open(&path, 10, 100, 100).unwrap();
        assert_eq!(c.len(), 1, "the expired one is dropped");
        assert_eq!(
            c.check_and_insert("AK", "before-crash", 1000, 10),
            Err(NonceError::Used)
        );
        // Compacted: the snapshot holds it and the journal starts empty.
        assert_eq!(std::fs::read_to_string(&journal).unwrap(), "");
        assert!(std::fs::read_to_string(&path)
            .unwrap()
            .contains(&format!("{:032x}", digest("before-crash"))));
        c.check_and_insert("AK", "after-restart", 1000, 10).unwrap();
        assert_eq!(c.save(&path, 11).unwrap(), 2);
        assert_eq!(std::fs::read_to_string(&journal).unwrap(), "");
        let c = NonceCache::open(&path, 12, 100, 100).unwrap();
        assert_eq!(
            c.check_and_insert("AK", "after-restart", 1000, 12),
            Err(NonceError::Used)
        );
        // A torn last line (the crash mid-append) is skipped.
        std::fs::write(&journal, "1000 00ff 414b\n1000 12").unwrap();
        assert_eq!(NonceCache::open(&path, 13, 100, 100).unwrap().len(), 3);
    }
}
