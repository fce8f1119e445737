//! `AnnIndex`: approximate nearest-neighbour search (HNSW from the `usearch` library) over
//! 8-bit-quantized vectors, for databases too large to scan exactly.
//!
//! Cosine metric, so `cosine ≈ 1 − distance`. Vectors are held quantized to i8 (1 byte per
//! dimension) plus the graph; full-precision vectors stay in the store, and callers re-rank
//! the candidates with them (`index::rerank`) for exact order and scores. Persisted with
//! `save`/`load`. Keeping it in step with the store is the service's job (`service::db_index`).
//!
//! Exact duplicates (the same picture uploaded again: identical quantized vectors) share one
//! graph node and are listed beside it. Inserted as nodes of their own, HNSW's neighbour
//! heuristic links a duplicate only to its twin (every other candidate is "no closer than
//! the twin"), so dozens of copies form an island no search reaches — the SDK test with 40
//! copies per picture found none of them that way.
//!
//! We quantize ourselves ([`quantize`]): usearch's own f32→i8 cast scales the unit vector by
//! 127 and truncates, which leaves a 1280-d embedding (components ≈ 0.03) with ±3 levels and
//! capped recall@10 near 0.82 in `bench index`; scaling each vector so its largest component
//! is ±127 uses all 8 bits, and cosine does not care about a per-vector scale.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Condvar, Mutex, PoisonError, RwLock, RwLockReadGuard, RwLockWriteGuard};

use usearch::{Index, IndexOptions, MetricKind, ScalarKind};

use super::{Hit, IndexError};

mod filtered;
use crate::store::DataId;

/// HNSW parameters. Defaults from `bench index` at 1M × 1280 (README "ANN index"): M = 14,
/// ef_construction = 128, ef_search = 192: recall@10 0.974 with re-ranking, p50 1.7 ms, and
/// 1,481 B of RAM per vector (M = 16 needed 1,544 B).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AnnOptions {
    pub connectivity: usize,
    pub expansion_add: usize,
    pub expansion_search: usize,
    /// Calls (adds and searches) that may run at once; more wait for a free slot. usearch
    /// keeps one scratch context per slot and fails a call that finds none.
    pub threads: usize,
}

impl Default for AnnOptions {
    fn default() -> Self {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        Self {
            connectivity: 14,
            expansion_add: 128,
            expansion_search: 192,
            threads: (2 * cores).max(4),
        }
    }
}

/// A counting semaphore over usearch's per-thread contexts.
struct Slots {
    free: Mutex<usize>,
    freed: Condvar,
}

impl Slots {
    fn new(n: usize) -> Self {
        Self {
            free: Mutex::new(n.max(1)),
            freed: Condvar::new(),
        }
    }

    fn acquire(&self) -> SlotGuard<'_> {
        let mut free = self.free.lock().unwrap_or_else(PoisonError::into_inner);
        while *free == 0 {
            free = self
                .freed
                .wait(free)
                .unwrap_or_else(PoisonError::into_inner);
        }
        *free -= 1;
        SlotGuard(self)
    }
}

struct SlotGuard<'a>(&'a Slots);

impl Drop for SlotGuard<'_> {
    fn drop(&mut self) {
        *self.0.free.lock().unwrap_or_else(PoisonError::into_inner) += 1;
        self.0.freed.notify_one();
    }
}

#[derive(Debug, thiserror::Error)]
pub enum AnnError {
    #[error(transparent)]
    Dimension(#[from] IndexError),
    #[error("ANN index: {0}")]
    Backend(String),
}

impl From<cxx::Exception> for AnnError {
    fn from(e: cxx::Exception) -> Self {
        AnnError::Backend(e.what().to_string())
    }
}

pub struct AnnIndex {
    dim: usize,
    options: AnnOptions,
    inner: Index,
    slots: Slots,
    duplicates: RwLock<Duplicates>,
}

/// Ids whose vector equals a graph node's, by node key.
#[derive(Debug, Default, PartialEq)]
struct Duplicates {
    members: HashMap<u64, Vec<u64>>,
    node_of: HashMap<u64, u64>,
}

impl Duplicates {
    fn insert(&mut self, node: u64, member: u64) {
        self.members.entry(node).or_default().push(member);
        self.node_of.insert(member, node);
    }
}

impl AnnIndex {
    pub fn new(dim: usize, options: AnnOptions) -> Result<Self, AnnError> {
        let inner = Index::new(&IndexOptions {
            dimensions: dim,
            metric: MetricKind::Cos,
            quantization: ScalarKind::I8,
            connectivity: options.connectivity,
            expansion_add: options.expansion_add,
            expansion_search: options.expansion_search,
            multi: false,
        })?;
        inner.reserve_capacity_and_threads(1024, options.threads.max(1))?;
        Ok(Self {
            dim,
            options,
            inner,
            slots: Slots::new(options.threads),
            duplicates: RwLock::new(Duplicates::default()),
        })
    }

    /// Opens an index written by `save` (the graph file and its duplicates file).
    pub fn load(path: &Path, dim: usize, options: AnnOptions) -> Result<Self, AnnError> {
        let ix = Self::new(dim, options)?;
        ix.inner.load(&path.to_string_lossy())?;
        let bytes = std::fs::read(duplicates_path(path))
            .map_err(|e| AnnError::Backend(format!("duplicates file: {e}")))?;
        if !bytes.len().is_multiple_of(16) {
            return Err(AnnError::Backend("duplicates file: truncated".into()));
        }
        {
            let mut d = ix.dups();
            for pair in bytes.chunks_exact(16) {
                let word = |i: usize| {
                    let mut b = [0u8; 8];
                    b.copy_from_slice(&pair[i..i + 8]);
                    u64::from_le_bytes(b)
                };
                let (member, node) = (word(0), word(8));
                if !ix.inner.contains(node) || ix.inner.contains(member) {
                    return Err(AnnError::Backend(
                        "duplicates file does not match the graph".into(),
                    ));
                }
                d.insert(node, member);
            }
        }
        if ix.inner.dimensions() != dim {
            return Err(IndexError::Dimension {
                got: ix.inner.dimensions(),
                want: dim,
            }
            .into());
        }
        ix.inner.change_expansion_search(options.expansion_search);
        // Headroom for adds; kept small because capacity costs RAM per slot.
        ix.reserve(ix.inner.size() + 1024)?;
        Ok(ix)
    }

    /// Writes the graph to `path` and the duplicates next to it, both fsynced.
    pub fn save(&self, path: &Path) -> Result<(), AnnError> {
        let io = |e: std::io::Error| AnnError::Backend(format!("saving {}: {e}", path.display()));
        // Under the lock: `save` must not race an add (callers keep writers out anyway).
        let d = self.dups();
        self.inner.save(&path.to_string_lossy())?;
        std::fs::File::open(path)
            .and_then(|f| f.sync_all())
            .map_err(io)?;
        let mut bytes = Vec::with_capacity(d.node_of.len() * 16);
        for (member, node) in &d.node_of {
            bytes.extend_from_slice(&member.to_le_bytes());
            bytes.extend_from_slice(&node.to_le_bytes());
        }
        let dpath = duplicates_path(path);
        std::fs::write(&dpath, &bytes).map_err(io)?;
        std::fs::File::open(&dpath)
            .and_then(|f| f.sync_all())
            .map_err(io)
    }

    /// Vectors held, duplicates included.
    pub fn len(&self) -> usize {
        self.inner.size() + self.dups_read().node_of.len()
    }

    pub fn dim(&self) -> usize {
        self.dim
    }

    pub fn options(&self) -> AnnOptions {
        self.options
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Bytes the index holds in RAM (quantized vectors + graph + allocator slack).
    pub fn memory_usage(&self) -> usize {
        self.inner.memory_usage()
    }

    /// Makes room for `capacity` vectors. Not concurrently with other calls.
    pub fn reserve(&self, capacity: usize) -> Result<(), AnnError> {
        Ok(self
            .inner
            .reserve_capacity_and_threads(capacity, self.options.threads.max(1))?)
    }

    /// Adds one vector (replacing an existing one with the same id). Not concurrently with
    /// other adds: its duplicate check is a graph search, and a search racing an add can
    /// read a half-written node. Bulk loads use [`AnnIndex::add_fresh_parallel`]. A vector
    /// identical to a node's joins that node's duplicates instead of the graph.
    pub fn add(&self, id: DataId, vector: &[f32]) -> Result<(), AnnError> {
        self.check(vector.len())?;
        let key = id.as_u64();
        if self.contains(id) {
            self.remove(&[id])?;
        }
        let quantized = quantize(vector);
        if let Some(node) = self.identical_node(&quantized)? {
            self.dups().insert(node, key);
            return Ok(());
        }
        if self.inner.size() + 1 > self.inner.capacity() {
            // Grow by an eighth, not double: at a million images doubling would add ~60 B
            // per image of lookup tables; each growth copies O(n) pointers, every ~n/8 adds.
            let cap = self.inner.capacity();
            self.reserve(cap + cap / 8 + 1024)?;
        }
        let _slot = self.slots.acquire();
        Ok(self.inner.add(key, &quantized)?)
    }

    /// Adds vectors that are not in the index yet (a build or a promotion) from `threads`
    /// threads. usearch lets adds run concurrently, but a search racing them can read a node
    /// whose vector is not written yet (it crashed in `identical_node` during parallel
    /// builds), so no search runs here: duplicates are found by an exact hash of the
    /// quantized vector in `seen`, which the caller keeps across the batches of one build.
    pub fn add_fresh_parallel(
        &self,
        items: &[(DataId, &[f32])],
        threads: usize,
        seen: &mut HashMap<u64, u64>,
    ) -> Result<(), AnnError> {
        let mut quantized = Vec::with_capacity(items.len());
        for (_, v) in items {
            self.check(v.len())?;
            quantized.push(quantize(v));
        }
        // Sequentially: which items become nodes, which join a node's duplicates.
        let mut in_batch: HashMap<u64, usize> = HashMap::new(); // node key -> position here
        let mut fresh: Vec<usize> = Vec::with_capacity(items.len());
        for (i, (id, _)) in items.iter().enumerate() {
            let key = id.as_u64();
            let h = vector_hash(&quantized[i]);
            let twin = seen.get(&h).copied().filter(|&node| match in_batch.get(&node) {
                Some(&j) => quantized[j] == quantized[i],
                None => {
                    let mut stored = vec![0i8; self.dim];
                    matches!(self.inner.get(node, &mut stored), Ok(n) if n > 0 && stored == quantized[i])
                }
            });
            match twin {
                Some(node) => self.dups().insert(node, key),
                None => {
                    seen.entry(h).or_insert(key);
                    in_batch.insert(key, i);
                    fresh.push(i);
                }
            }
        }
        if self.inner.size() + fresh.len() > self.inner.capacity() {
            self.reserve(self.inner.size() + fresh.len() + 1024)?;
        }
        let add = |part: &[usize]| -> Result<(), AnnError> {
            for &i in part {
                let _slot = self.slots.acquire();
                self.inner.add(items[i].0.as_u64(), &quantized[i])?;
            }
            Ok(())
        };
        let threads = threads.max(1);
        if threads == 1 || fresh.len() < 64 {
            return add(&fresh);
        }
        let chunk = fresh.len().div_ceil(threads);
        std::thread::scope(|s| {
            let handles: Vec<_> = fresh
                .chunks(chunk)
                .map(|part| s.spawn(move || add(part)))
                .collect();
            handles.into_iter().try_for_each(|h| {
                h.join().unwrap_or_else(|_| {
                    Err(AnnError::Backend("an index builder thread panicked".into()))
                })
            })
        })
    }

    /// The graph node whose quantized vector is exactly `q`, if any.
    fn identical_node(&self, q: &[i8]) -> Result<Option<u64>, AnnError> {
        if self.inner.size() == 0 {
            return Ok(None);
        }
        let m = {
            let _slot = self.slots.acquire();
            self.inner.search(q, 1)?
        };
        let Some((&node, &d)) = m.keys.first().zip(m.distances.first()) else {
            return Ok(None);
        };
        if d > 1e-4 {
            return Ok(None);
        }
        let mut stored = vec![0i8; self.dim];
        let n = self.inner.get(node, &mut stored)?;
        Ok((n > 0 && stored == q).then_some(node))
    }

    /// Removes ids (unknown ones are ignored). A node that leaves with duplicates behind
    /// passes its place in the graph to one of them (same vector, so same links).
    pub fn remove(&self, ids: &[DataId]) -> Result<(), AnnError> {
        for id in ids {
            let key = id.as_u64();
            let mut d = self.dups();
            if let Some(node) = d.node_of.remove(&key) {
                if let Some(list) = d.members.get_mut(&node) {
                    list.retain(|m| *m != key);
                    if list.is_empty() {
                        d.members.remove(&node);
                    }
                }
                continue;
            }
            if let Some(mut list) = d.members.remove(&key) {
                if let Some(heir) = list.pop() {
                    d.node_of.remove(&heir);
                    for m in &list {
                        d.node_of.insert(*m, heir);
                    }
                    if !list.is_empty() {
                        d.members.insert(heir, list);
                    }
                    self.inner.rename(key, heir)?;
                    continue;
                }
            }
            drop(d);
            self.inner.remove(key)?;
        }
        Ok(())
    }

    fn dups(&self) -> RwLockWriteGuard<'_, Duplicates> {
        self.duplicates
            .write()
            .unwrap_or_else(PoisonError::into_inner)
    }

    fn dups_read(&self) -> RwLockReadGuard<'_, Duplicates> {
        self.duplicates
            .read()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// About the `k` most similar vectors, best first; a hit's duplicates follow it (so
    /// there may be more than `k`).
    pub fn search(&self, query: &[f32], k: usize) -> Result<Vec<Hit>, AnnError> {
        self.check(query.len())?;
        if k == 0 || self.is_empty() {
            return Ok(Vec::new());
        }
        let quantized = quantize(query);
        let m = {
            let _slot = self.slots.acquire();
            self.inner.search(&quantized, k)?
        };
        let d = self.dups_read();
        let mut hits = Vec::with_capacity(m.keys.len());
        for (&key, &dist) in m.keys.iter().zip(&m.distances) {
            let cosine = 1.0 - dist;
            let same = d.members.get(&key).map(Vec::as_slice).unwrap_or(&[]);
            for k in std::iter::once(&key).chain(same) {
                if let Some(id) = DataId::from_u64(*k) {
                    hits.push(Hit { id, cosine });
                }
            }
        }
        Ok(hits)
    }

    /// Whether the index holds a vector under `id`.
    pub fn contains(&self, id: DataId) -> bool {
        let key = id.as_u64();
        self.inner.contains(key) || self.dups_read().node_of.contains_key(&key)
    }

    /// The search expansion (ef) used from now on; larger is slower and finds more.
    pub fn set_expansion_search(&self, ef: usize) {
        self.inner.change_expansion_search(ef.max(1));
    }

    /// Bytes the graph and the quantized vectors use, apart (for `bench index`).
    pub fn memory_breakdown(&self) -> (usize, usize) {
        let m = self.inner.memory_stats();
        (
            m.graph_allocated + m.graph_wasted + m.graph_reserved,
            m.vectors_allocated + m.vectors_wasted + m.vectors_reserved,
        )
    }

    fn check(&self, got: usize) -> Result<(), IndexError> {
        if got != self.dim {
            return Err(IndexError::Dimension {
                got,
                want: self.dim,
            });
        }
        Ok(())
    }
}

/// Where `save` puts the duplicates of the graph saved at `path`.
pub fn duplicates_path(path: &Path) -> PathBuf {
    let mut s = path.as_os_str().to_owned();
    s.push(".dups");
    PathBuf::from(s)
}

/// `v` scaled so that its largest-magnitude component is ±127, rounded to i8. A zero (or
/// non-finite) vector gives zeros.
/// A hash of a quantized vector, for finding exact duplicates without a graph search.
fn vector_hash(q: &[i8]) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    q.hash(&mut h);
    h.finish()
}

pub fn quantize(v: &[f32]) -> Vec<i8> {
    let max = v.iter().fold(0f32, |m, x| m.max(x.abs()));
    if !(max > 0.0 && max.is_finite()) {
        return vec![0; v.len()];
    }
    let scale = 127.0 / max;
    v.iter()
        .map(|x| (x * scale).round().clamp(-127.0, 127.0) as i8)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::index::ExactIndex;

    fn id(n: u64) -> DataId {
        DataId::from_u64(n).unwrap()
    }

    /// Deterministic pseudo-random unit vectors.
    pub(crate) fn random_unit(n: usize, dim: usize, seed: u64) -> Vec<f32> {
        let mut s = seed;
        let mut v: Vec<f32> = (0..n * dim)
            .map(|_| {
                s = s
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                ((s >> 33) as f32 / (1u64 << 31) as f32) - 0.5
            })
            .collect();
        for row in v.chunks_exact_mut(dim) {
            crate::embedding::l2_normalize(row);
        }
        v
    }

    #[test]
    fn high_recall_against_exact_search() {
        let (n, dim) = (3000, 64);
        let base = random_unit(n, dim, 1);
        let ann = AnnIndex::new(dim, AnnOptions::default()).unwrap();
        ann.reserve(n).unwrap();
        let mut exact = ExactIndex::new(dim);
        for (i, v) in base.chunks_exact(dim).enumerate() {
            ann.add(id(i as u64 + 1), v).unwrap();
            exact.add(id(i as u64 + 1), v).unwrap();
        }
        let queries = random_unit(50, dim, 2);
        let mut found = 0;
        for q in queries.chunks_exact(dim) {
            let want: Vec<DataId> = exact.search(q, 10).unwrap().iter().map(|h| h.id).collect();
            let got = ann.search(q, 10).unwrap();
            found += got.iter().filter(|h| want.contains(&h.id)).count();
        }
        let recall = found as f64 / 500.0;
        assert!(recall >= 0.9, "recall@10 {recall}");
    }

    #[test]
    fn exact_copy_is_first_with_cosine_near_one_and_remove_works() {
        let dim = 32;
        let base = random_unit(200, dim, 3);
        let ann = AnnIndex::new(dim, AnnOptions::default()).unwrap();
        for (i, v) in base.chunks_exact(dim).enumerate() {
            ann.add(id(i as u64 + 1), v).unwrap();
        }
        let q = &base[5 * dim..6 * dim];
        let hits = ann.search(q, 3).unwrap();
        assert_eq!(hits[0].id, id(6));
        assert!(hits[0].cosine > 0.99, "{}", hits[0].cosine);
        ann.remove(&[id(6)]).unwrap();
        assert!(ann.search(q, 3).unwrap().iter().all(|h| h.id != id(6)));
        assert_eq!(ann.len(), 199);
        assert!(ann.search(&[0.0; 3], 1).is_err());
    }

    #[test]
    fn quantize_uses_the_full_range_and_keeps_cosine() {
        let v = random_unit(1, 1280, 9);
        let q = quantize(&v);
        assert_eq!(q.iter().map(|x| x.unsigned_abs()).max(), Some(127));
        let qf: Vec<f32> = q.iter().map(|&x| x as f32).collect();
        let norm = qf.iter().map(|x| x * x).sum::<f32>().sqrt();
        let cos = crate::embedding::dot(&v, &qf) / norm;
        assert!(cos > 0.999, "cosine to the original {cos}");
        assert_eq!(quantize(&[0.0, 0.0]), vec![0, 0]);
        assert_eq!(quantize(&[f32::NAN, 1.0]), vec![0, 127]);
        assert_eq!(quantize(&[f32::INFINITY, 1.0]), vec![0, 0]);
    }

    #[test]
    fn a_parallel_bulk_load_finds_duplicates_without_searching() {
        let dim = 64;
        let base = random_unit(400, dim, 9);
        let ann = AnnIndex::new(dim, AnnOptions::default()).unwrap();
        // 400 distinct vectors, then 50 copies of vector 7 spread over later batches and a
        // copy of vector 399 inside its own batch.
        let mut items: Vec<(DataId, Vec<f32>)> = (0..400)
            .map(|i| (id(i as u64 + 1), base[i * dim..(i + 1) * dim].to_vec()))
            .collect();
        for c in 0..50u64 {
            items.push((id(10_000 + c), base[7 * dim..8 * dim].to_vec()));
        }
        items.push((id(20_000), base[399 * dim..400 * dim].to_vec()));
        let mut seen = HashMap::new();
        for batch in items.chunks(128) {
            let refs: Vec<(DataId, &[f32])> =
                batch.iter().map(|(i, v)| (*i, v.as_slice())).collect();
            ann.add_fresh_parallel(&refs, 2, &mut seen).unwrap();
        }
        assert_eq!(ann.len(), 451);
        assert_eq!(ann.inner.size(), 400, "copies are not graph nodes");
        let hits = ann.search(&base[7 * dim..8 * dim], 60).unwrap();
        assert_eq!(hits.iter().filter(|h| h.cosine > 0.999).count(), 51);
    }

    #[test]
    fn duplicates_share_a_node_are_all_found_and_survive_removal_and_reload() {
        let dim = 64;
        let base = random_unit(300, dim, 5);
        let ann = AnnIndex::new(dim, AnnOptions::default()).unwrap();
        for (n, v) in (1u64..).zip(base.chunks_exact(dim)) {
            ann.add(id(n), v).unwrap();
        }
        // 60 copies of vector 10 (id 11).
        let copy = &base[10 * dim..11 * dim];
        let copies: Vec<u64> = (0..60).map(|i| 1000 + i).collect();
        for &c in &copies {
            ann.add(id(c), copy).unwrap();
        }
        assert_eq!(ann.len(), 360);
        assert_eq!(ann.inner.size(), 300, "copies are not graph nodes");
        let found = |ann: &AnnIndex| -> Vec<u64> {
            let mut v: Vec<u64> = ann
                .search(copy, 5)
                .unwrap()
                .iter()
                .filter(|h| h.cosine > 0.999)
                .map(|h| h.id.as_u64())
                .collect();
            v.sort_unstable();
            v
        };
        let mut all: Vec<u64> = copies.clone();
        all.insert(0, 11);
        assert_eq!(found(&ann), all);
        // Remove the node itself: a copy takes its place; remove a few copies too.
        ann.remove(&[id(11), id(1000), id(1059)]).unwrap();
        assert!(!ann.contains(id(11)) && ann.contains(id(1001)));
        let left: Vec<u64> = (1001..1059).collect();
        assert_eq!(found(&ann), left);
        assert_eq!(ann.len(), 357);
        // Re-adding an id replaces it.
        ann.add(id(1001), &base[..dim]).unwrap();
        assert_eq!(ann.len(), 357);
        assert!(!found(&ann).contains(&1001));

        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("g.usearch");
        ann.save(&path).unwrap();
        let back = AnnIndex::load(&path, dim, AnnOptions::default()).unwrap();
        assert_eq!(back.len(), 357);
        assert_eq!(back.dups().node_of, ann.dups().node_of);
        assert_eq!(found(&back), (1002..1059).collect::<Vec<_>>());
        std::fs::remove_file(duplicates_path(&path)).unwrap();
        assert!(AnnIndex::load(&path, dim, AnnOptions::default()).is_err());
    }

    #[test]
    fn save_and_load_round_trip() {
        let dim = 16;
        let base = random_unit(100, dim, 4);
        let ann = AnnIndex::new(dim, AnnOptions::default()).unwrap();
        for (i, v) in base.chunks_exact(dim).enumerate() {
            ann.add(id(i as u64 + 1), v).unwrap();
        }
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ix.usearch");
        ann.save(&path).unwrap();
        let back = AnnIndex::load(&path, dim, AnnOptions::default()).unwrap();
        assert_eq!(back.len(), 100);
        assert_eq!(back.search(&base[..dim], 1).unwrap()[0].id, id(1));
        assert!(AnnIndex::load(&path, dim + 1, AnnOptions::default()).is_err());
    }
}
