//! `Hnsw`: our own hierarchical navigable small-world graph over i8 codes ([`codes`]), the
//! engine under `index::ann::AnnIndex`.
//!
//! Why our own (it replaced usearch): profiles of usearch's walk showed ~70% of search time
//! stalled on loading each candidate's vector, one after the other. Here a node's unvisited
//! neighbours are prefetched together before their distances are computed, so the loads
//! overlap; the search width (ef) is a per-call argument, so each request can choose it;
//! and builds insert in batches whose searches run in parallel on a read-only graph, with
//! no locks and no unsafe sharing (`build`).
//!
//! Layout, for a graph of n nodes with degree M (2M on level 0): codes n × dim i8 in one
//! block, level-0 links n × (2M + 1) u32 (a count, then slots) in one block, upper levels
//! (about 1 node in M has any) in a map. Nodes are slots; keys are the caller's u64 ids.
//! Removal marks a slot deleted: it still routes walks but never appears in results.
//!
//! Not here: duplicates, f32 → code conversion policy, re-ranking (`index::ann`).

mod build;
pub mod codes;
mod persist;
mod search;

use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};

pub use build::NewNode;
use codes::Code;
use search::Visited;

/// Graph shape. `m` links per node on upper levels, `2m` on level 0; `ef_construction`
/// candidates considered per insertion.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HnswParams {
    pub m: usize,
    pub ef_construction: usize,
}

/// Highest level a node may get (level ~ Geometric(1/M): 16 is never reached in practice).
const MAX_LEVEL: u8 = 16;

pub struct Hnsw {
    dim: usize,
    params: HnswParams,
    /// Level-0 list stride: count + 2m slots.
    stride0: usize,
    codes: Vec<i8>,
    inv_norms: Vec<f32>,
    keys: Vec<u64>,
    levels: Vec<u8>,
    deleted: Vec<bool>,
    links0: Vec<u32>,
    /// Lists of levels 1..=level for nodes above level 0, each `m + 1` long.
    upper: HashMap<u32, Vec<u32>>,
    slot_of: HashMap<u64, u32>,
    /// Entry node and its level.
    entry: Option<(u32, u8)>,
    visited: Mutex<Vec<Visited>>,
}

impl Hnsw {
    pub fn new(dim: usize, params: HnswParams) -> Self {
        let params = HnswParams {
            m: params.m.clamp(2, 256),
            ef_construction: params.ef_construction.max(1),
        };
        Self {
            dim,
            params,
            stride0: 2 * params.m + 1,
            codes: Vec::new(),
            inv_norms: Vec::new(),
            keys: Vec::new(),
            levels: Vec::new(),
            deleted: Vec::new(),
            links0: Vec::new(),
            upper: HashMap::new(),
            slot_of: HashMap::new(),
            entry: None,
            visited: Mutex::new(Vec::new()),
        }
    }

    pub fn dim(&self) -> usize {
        self.dim
    }

    pub fn params(&self) -> HnswParams {
        self.params
    }

    /// Live (not deleted) nodes.
    pub fn len(&self) -> usize {
        self.slot_of.len()
    }

    pub fn is_empty(&self) -> bool {
        self.slot_of.is_empty()
    }

    /// Slots, deleted ones included.
    pub fn slots(&self) -> usize {
        self.keys.len()
    }

    pub fn contains(&self, key: u64) -> bool {
        self.slot_of.contains_key(&key)
    }

    /// Live keys, in no particular order.
    pub fn keys(&self) -> impl Iterator<Item = u64> + '_ {
        self.slot_of.keys().copied()
    }

    /// The code of a live key.
    pub fn code_of(&self, key: u64) -> Option<(&[i8], f32)> {
        let slot = *self.slot_of.get(&key)?;
        Some((self.code(slot), self.inv_norms[slot as usize]))
    }

    pub fn reserve(&mut self, additional: usize) {
        self.codes.reserve(additional * self.dim);
        self.inv_norms.reserve(additional);
        self.keys.reserve(additional);
        self.levels.reserve(additional);
        self.deleted.reserve(additional);
        self.links0.reserve(additional * self.stride0);
        self.slot_of.reserve(additional);
    }

    /// Marks `key` deleted; false when it was not live.
    pub fn remove(&mut self, key: u64) -> bool {
        match self.slot_of.remove(&key) {
            Some(slot) => {
                self.deleted[slot as usize] = true;
                true
            }
            None => false,
        }
    }

    /// Gives `from`'s node to `to` (same vector, new owner); false when `from` is not live.
    pub fn rename(&mut self, from: u64, to: u64) -> bool {
        let Some(slot) = self.slot_of.remove(&from) else {
            return false;
        };
        if let Some(old) = self.slot_of.insert(to, slot) {
            self.deleted[old as usize] = true;
        }
        self.keys[slot as usize] = to;
        true
    }

    /// Bytes held: codes, links, keys and the key map (estimated from capacities).
    pub fn memory_usage(&self) -> usize {
        let (graph, vectors) = self.memory_breakdown();
        graph + vectors
    }

    /// (graph and bookkeeping, codes) in bytes.
    pub fn memory_breakdown(&self) -> (usize, usize) {
        let upper: usize = self.upper.values().map(|v| v.capacity() * 4 + 48).sum();
        let map = self.slot_of.capacity() * (8 + 4 + 1) + self.upper.capacity() * (4 + 24 + 1);
        let graph = self.links0.capacity() * 4
            + upper
            + map
            + self.keys.capacity() * 8
            + self.levels.capacity()
            + self.deleted.capacity();
        (graph, self.codes.capacity() + self.inv_norms.capacity() * 4)
    }

    fn code(&self, slot: u32) -> &[i8] {
        let s = slot as usize * self.dim;
        &self.codes[s..s + self.dim]
    }

    /// The links of `slot` on `level` (empty above the node's own level).
    fn links(&self, slot: u32, level: u8) -> &[u32] {
        if level == 0 {
            let s = slot as usize * self.stride0;
            let n = self.links0[s] as usize;
            return &self.links0[s + 1..s + 1 + n];
        }
        let Some(list) = self.upper.get(&slot) else {
            return &[];
        };
        let stride = self.params.m + 1;
        let s = (level as usize - 1) * stride;
        match list.get(s) {
            Some(&n) => &list[s + 1..s + 1 + n as usize],
            None => &[],
        }
    }

    fn set_links(&mut self, slot: u32, level: u8, to: &[u32]) {
        let cap = self.max_links(level);
        let to = &to[..to.len().min(cap)];
        if level == 0 {
            let s = slot as usize * self.stride0;
            self.links0[s] = to.len() as u32;
            self.links0[s + 1..s + 1 + to.len()].copy_from_slice(to);
            return;
        }
        let stride = self.params.m + 1;
        let top = self.levels[slot as usize] as usize;
        let list = self
            .upper
            .entry(slot)
            .or_insert_with(|| vec![0; top * stride]);
        let s = (level as usize - 1) * stride;
        if list.len() < s + stride {
            list.resize(s + stride, 0);
        }
        list[s] = to.len() as u32;
        list[s + 1..s + 1 + to.len()].copy_from_slice(to);
    }

    fn max_links(&self, level: u8) -> usize {
        if level == 0 {
            2 * self.params.m
        } else {
            self.params.m
        }
    }

    fn take_visited(&self) -> Visited {
        let mut pool = self.visited.lock().unwrap_or_else(PoisonError::into_inner);
        let mut v = pool.pop().unwrap_or_default();
        v.fit(self.keys.len());
        v
    }

    fn give_visited(&self, v: Visited) {
        self.visited
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(v);
    }
}

/// A query: its code.
pub type Query = Code;

#[cfg(test)]
mod tests;
