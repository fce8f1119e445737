//! `AnnIndex`: approximate nearest-neighbour search over 8-bit codes, for databases too
//! large to scan exactly; the graph is our own HNSW (`index::hnsw`).
//!
//! Cosine metric, so `cosine ≈ 1 − distance`. Vectors are held as i8 codes (1 byte per
//! dimension, `hnsw::codes`) plus the graph; full-precision vectors stay in the store, and
//! callers re-rank the candidates with them (`index::rerank`) for exact order and scores.
//! Persisted with `save`/`load`. Keeping it in step with the store is the service's job
//! (`service::db_index`).
//!
//! Exact duplicates (the same picture uploaded again: identical codes) share one graph node
//! and are listed beside it. Inserted as nodes of their own, HNSW's neighbour heuristic
//! links a duplicate only to its twin (every other candidate is "no closer than the twin"),
//! so dozens of copies form an island no search reaches — the SDK test with 40 copies per
//! picture found none of them that way.
//!
//! How wide a search walks (ef) is chosen per call: [`AnnOptions::ef_for`] widens it with
//! the number of results asked for.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, PoisonError, RwLock, RwLockReadGuard, RwLockWriteGuard};

use super::hnsw::codes::Code;
use super::hnsw::{Hnsw, HnswParams, NewNode};
use super::{Hit, IndexError};

mod filtered;
pub use super::hnsw::codes::quantize;
use crate::store::DataId;

/// Search width per result asked for, above the floor.
pub const EF_PER_RESULT: usize = 2;
/// Widest walk chosen by `ef_for` (a request for more results than this walks `k`).
pub const EF_MAX: usize = 4096;

/// HNSW parameters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AnnOptions {
    pub connectivity: usize,
    pub expansion_add: usize,
    /// The narrowest search walk (ef); a request for more results walks wider
    /// ([`AnnOptions::ef_for`]).
    pub expansion_search: usize,
}

impl Default for AnnOptions {
    fn default() -> Self {
        Self {
            connectivity: 32,
            expansion_add: 96,
            expansion_search: 128,
        }
    }
}

impl AnnOptions {
    /// The search width (ef) for `k` results: `EF_PER_RESULT` × `k`, at least `floor` (the
    /// index's `expansion_search`), at most `EF_MAX` unless `k` itself is larger. So a
    /// request for more results (SearchImage's Start + Num, DistinctEntity's widening)
    /// walks proportionally further, and the default page walks `floor`.
    pub fn ef_for(&self, k: usize, floor: usize) -> usize {
        k.saturating_mul(EF_PER_RESULT)
            .max(floor)
            .min(EF_MAX)
            .max(k)
    }

    fn params(&self) -> HnswParams {
        HnswParams {
            m: self.connectivity,
            ef_construction: self.expansion_add,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum AnnError {
    #[error(transparent)]
    Dimension(#[from] IndexError),
    #[error("ANN index: {0}")]
    Backend(String),
}

pub struct AnnIndex {
    dim: usize,
    options: AnnOptions,
    graph: RwLock<Hnsw>,
    /// Adds one at a time: an add plans its links under the read lock (searches go on),
    /// then writes them under the write lock.
    writer: Mutex<()>,
    expansion_search: AtomicUsize,
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
        Ok(Self::with_graph(Hnsw::new(dim, options.params()), options))
    }

    fn with_graph(graph: Hnsw, options: AnnOptions) -> Self {
        let params = graph.params();
        Self {
            dim: graph.dim(),
            options: AnnOptions {
                connectivity: params.m,
                expansion_add: params.ef_construction,
                ..options
            },
            graph: RwLock::new(graph),
            writer: Mutex::new(()),
            expansion_search: AtomicUsize::new(options.expansion_search.max(1)),
            duplicates: RwLock::new(Duplicates::default()),
        }
    }

    /// Opens an index written by `save` (the graph file and its duplicates file). The
    /// graph keeps the shape it was built with; `options` gives the search width.
    pub fn load(path: &Path, dim: usize, options: AnnOptions) -> Result<Self, AnnError> {
        let graph = Hnsw::load(path)
            .map_err(|e| AnnError::Backend(format!("loading {}: {e}", path.display())))?;
        if graph.dim() != dim {
            return Err(IndexError::Dimension {
                got: graph.dim(),
                want: dim,
            }
            .into());
        }
        let ix = Self::with_graph(graph, options);
        let bytes = std::fs::read(duplicates_path(path))
            .map_err(|e| AnnError::Backend(format!("duplicates file: {e}")))?;
        if !bytes.len().is_multiple_of(16) {
            return Err(AnnError::Backend("duplicates file: truncated".into()));
        }
        {
            let g = ix.graph();
            let mut d = ix.dups();
            for pair in bytes.chunks_exact(16) {
                let word = |i: usize| {
                    let mut b = [0u8; 8];
                    b.copy_from_slice(&pair[i..i + 8]);
                    u64::from_le_bytes(b)
                };
                let (member, node) = (word(0), word(8));
                if !g.contains(node) || g.contains(member) {
                    return Err(AnnError::Backend(
                        "duplicates file does not match the graph".into(),
                    ));
                }
                d.insert(node, member);
            }
        }
        Ok(ix)
    }

    /// Writes the graph to `path` and the duplicates next to it, both fsynced.
    pub fn save(&self, path: &Path) -> Result<(), AnnError> {
        let io = |e: std::io::Error| AnnError::Backend(format!("saving {}: {e}", path.display()));
        // Writers wait: the graph and its duplicates are saved as one state.
        let _writer = self.writer.lock().unwrap_or_else(PoisonError::into_inner);
        let d = self.dups_read();
        self.graph().save(path).map_err(io)?;
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
        self.graph().len() + self.dups_read().node_of.len()
    }

    pub fn dim(&self) -> usize {
        self.dim
    }

    pub fn options(&self) -> AnnOptions {
        AnnOptions {
            expansion_search: self.expansion_search.load(Ordering::Relaxed),
            ..self.options
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Bytes the index holds in RAM (codes + graph + bookkeeping).
    pub fn memory_usage(&self) -> usize {
        self.graph().memory_usage()
    }

    /// Makes room for `capacity` vectors in all.
    pub fn reserve(&self, capacity: usize) -> Result<(), AnnError> {
        let mut g = self.graph_mut();
        let more = capacity.saturating_sub(g.slots());
        g.reserve(more);
        Ok(())
    }

    /// Adds one vector (replacing an existing one with the same id). A vector identical to
    /// a node's joins that node's duplicates instead of the graph.
    pub fn add(&self, id: DataId, vector: &[f32]) -> Result<(), AnnError> {
        self.check(vector.len())?;
        let key = id.as_u64();
        let _writer = self.writer.lock().unwrap_or_else(PoisonError::into_inner);
        if self.contains(id) {
            self.remove_locked(&[id]);
        }
        let code = Code::of(vector);
        if let Some(node) = self.identical_node(&code) {
            self.dups().insert(node, key);
            return Ok(());
        }
        let batch = [NewNode { key, code }];
        let plan = self.graph().plan(&batch, 1);
        self.graph_mut().apply(&batch, plan, 1);
        Ok(())
    }

    /// Adds vectors that are not in the index yet (a build or a promotion) from `threads`
    /// threads. Duplicates are found by an exact hash of the code in `seen`, which the
    /// caller keeps across the batches of one build.
    pub fn add_fresh_parallel(
        &self,
        items: &[(DataId, &[f32])],
        threads: usize,
        seen: &mut HashMap<u64, u64>,
    ) -> Result<(), AnnError> {
        let mut codes = Vec::with_capacity(items.len());
        for (_, v) in items {
            self.check(v.len())?;
            codes.push(Code::of(v));
        }
        let _writer = self.writer.lock().unwrap_or_else(PoisonError::into_inner);
        // Sequentially: which items become nodes, which join a node's duplicates.
        let mut in_batch: HashMap<u64, usize> = HashMap::new(); // node key -> position here
        let mut fresh: Vec<NewNode> = Vec::with_capacity(items.len());
        let mut twins: Vec<(u64, u64)> = Vec::new();
        {
            let g = self.graph();
            for (i, ((id, _), code)) in items.iter().zip(&codes).enumerate() {
                let key = id.as_u64();
                let h = vector_hash(&code.bytes);
                let twin = seen
                    .get(&h)
                    .copied()
                    .filter(|&node| match in_batch.get(&node) {
                        Some(&j) => codes[j].bytes == code.bytes,
                        None => g.code_of(node).is_some_and(|(c, _)| c == &code.bytes[..]),
                    });
                match twin {
                    Some(node) => twins.push((node, key)),
                    None => {
                        seen.entry(h).or_insert(key);
                        in_batch.insert(key, i);
                        fresh.push(NewNode {
                            key,
                            code: code.clone(),
                        });
                    }
                }
            }
        }
        {
            let mut d = self.dups();
            for (node, key) in twins {
                d.insert(node, key);
            }
        }
        self.graph_mut().insert(&fresh, threads.max(1));
        Ok(())
    }

    /// The graph node whose code is exactly `code`, if any.
    fn identical_node(&self, code: &Code) -> Option<u64> {
        let g = self.graph();
        let (node, dist) = *g.search(code, 1, 16, &|_| true).first()?;
        if dist > 1e-4 {
            return None;
        }
        g.code_of(node)
            .is_some_and(|(c, _)| c == &code.bytes[..])
            .then_some(node)
    }

    /// Removes ids (unknown ones are ignored). A node that leaves with duplicates behind
    /// passes its place in the graph to one of them (same vector, so same links).
    pub fn remove(&self, ids: &[DataId]) -> Result<(), AnnError> {
        let _writer = self.writer.lock().unwrap_or_else(PoisonError::into_inner);
        self.remove_locked(ids);
        Ok(())
    }

    fn remove_locked(&self, ids: &[DataId]) {
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
                    self.graph_mut().rename(key, heir);
                    continue;
                }
            }
            drop(d);
            self.graph_mut().remove(key);
        }
    }

    fn graph(&self) -> RwLockReadGuard<'_, Hnsw> {
        self.graph.read().unwrap_or_else(PoisonError::into_inner)
    }

    fn graph_mut(&self) -> RwLockWriteGuard<'_, Hnsw> {
        self.graph.write().unwrap_or_else(PoisonError::into_inner)
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
    /// there may be more than `k`). The walk's width follows `k` ([`AnnOptions::ef_for`]).
    pub fn search(&self, query: &[f32], k: usize) -> Result<Vec<Hit>, AnnError> {
        self.check(query.len())?;
        if k == 0 || self.is_empty() {
            return Ok(Vec::new());
        }
        let code = Code::of(query);
        let ef = self.ef_for(k);
        let found = self.graph().search(&code, k, ef, &|_| true);
        let d = self.dups_read();
        let mut hits = Vec::with_capacity(found.len());
        for (key, dist) in found {
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

    fn ef_for(&self, k: usize) -> usize {
        self.options
            .ef_for(k, self.expansion_search.load(Ordering::Relaxed))
    }

    /// Whether the index holds a vector under `id`.
    pub fn contains(&self, id: DataId) -> bool {
        let key = id.as_u64();
        self.graph().contains(key) || self.dups_read().node_of.contains_key(&key)
    }

    /// The narrowest search width (ef) from now on; larger is slower and finds more.
    pub fn set_expansion_search(&self, ef: usize) {
        self.expansion_search.store(ef.max(1), Ordering::Relaxed);
    }

    /// Bytes the graph and the codes use, apart (for `bench index`).
    pub fn memory_breakdown(&self) -> (usize, usize) {
        self.graph().memory_breakdown()
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

/// A hash of a quantized vector, for finding exact duplicates without a graph search.
fn vector_hash(q: &[i8]) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    q.hash(&mut h);
    h.finish()
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

    /// Non-negative clustered unit vectors (100 per centre), like `bench index
    /// --non-negative`: every cosine is high and close to the others, the hard case.
    fn non_negative_clustered(n: usize, dim: usize, seed: u64) -> Vec<f32> {
        let centres = random_unit(n / 100 + 1, dim, seed);
        let noise = random_unit(n, dim, seed + 1000);
        let mut v: Vec<f32> = (0..n * dim)
            .map(|i| {
                let c = (i / dim) % (n / 100 + 1);
                (centres[c * dim + i % dim] + 0.8 * noise[i]).abs()
            })
            .collect();
        for row in v.chunks_exact_mut(dim) {
            crate::embedding::l2_normalize(row);
        }
        v
    }

    #[test]
    fn recall_on_a_seeded_set_with_rerank_stays_above_its_floor() {
        // Default options; candidates re-ranked exactly as SearchImage does (40 for a page
        // of 10). Measured 2026-12-06: graph 0.974, a scan of the codes 1.000; the floors
        // are well under both (never a time).
        let (n, dim) = (20_000, 128);
        // Queries from the same clusters as the images (held out of the index).
        let all = non_negative_clustered(n + 200, dim, 11);
        let (base, queries) = all.split_at(n * dim);
        let base = base.to_vec();
        let ann = AnnIndex::new(dim, AnnOptions::default()).unwrap();
        let items: Vec<(DataId, &[f32])> = base
            .chunks_exact(dim)
            .enumerate()
            .map(|(i, v)| (id(i as u64 + 1), v))
            .collect();
        for batch in items.chunks(4096) {
            ann.add_fresh_parallel(batch, 2, &mut HashMap::new())
                .unwrap();
        }
        let exact =
            ExactIndex::from_parts(dim, (1..=n as u64).map(id).collect(), base.clone()).unwrap();
        let mut found = 0;
        let all: Vec<DataId> = (1..=n as u64).map(id).collect();
        let mut found_scan = 0;
        for q in queries.chunks_exact(dim) {
            let want: Vec<DataId> = exact.search(q, 10).unwrap().iter().map(|h| h.id).collect();
            let scan = ann.scan_ids(&[q], &all, 40).unwrap();
            found_scan += scan.iter().filter(|h| want.contains(&h.id)).count();
            let cands = ann.search(q, 40).unwrap();
            let got = crate::index::rerank(
                &[q],
                cands
                    .iter()
                    .filter_map(|h| exact.vector(h.id).map(|v| (h.id, v))),
                10,
            );
            found += got.iter().filter(|h| want.contains(&h.id)).count();
        }
        let recall = found as f64 / 2000.0;
        let scan = found_scan as f64 / 2000.0;
        eprintln!("recall@10 on the seeded set: graph {recall}, code scan {scan}");
        assert!(recall >= 0.90, "recall@10 {recall}");
        assert!(
            scan >= 0.98,
            "the codes' own top 40 holds {scan} of the true top 10"
        );
    }

    #[test]
    fn the_search_width_follows_the_number_of_results_asked_for() {
        let o = AnnOptions::default();
        let floor = o.expansion_search;
        assert_eq!(o.ef_for(1, floor), floor);
        assert_eq!(o.ef_for(40, floor), floor, "the default page re-ranks 40");
        assert_eq!(o.ef_for(100, floor), 200);
        assert_eq!(o.ef_for(3000, floor), EF_MAX);
        assert_eq!(o.ef_for(5000, floor), 5000, "never narrower than k");
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
        assert_eq!(ann.graph().len(), 400, "copies are not graph nodes");
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
        assert_eq!(ann.graph().len(), 300, "copies are not graph nodes");
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
        let path = dir.path().join("g.hnsw");
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
        let path = dir.path().join("ix.hnsw");
        ann.save(&path).unwrap();
        let back = AnnIndex::load(&path, dim, AnnOptions::default()).unwrap();
        assert_eq!(back.len(), 100);
        assert_eq!(back.search(&base[..dim], 1).unwrap()[0].id, id(1));
        assert!(AnnIndex::load(&path, dim + 1, AnnOptions::default()).is_err());
    }
}
