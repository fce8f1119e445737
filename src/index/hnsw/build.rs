//! Inserting into the graph, in batches: `plan` finds each new node's neighbours on a
//! read-only graph (in parallel, one share of the batch per thread), `apply` writes the
//! nodes and their links, then the reverse links, whose over-full lists are re-chosen in
//! parallel (each thread owns whole lists) and written afterwards.
//!
//! Nodes of one batch do not see each other through the graph, so each also gets its
//! batch-mates as candidates, by exact distance. Batches grow with the graph (an eighth of
//! it, at most 256), so the first nodes go in one at a time. Neighbours are chosen with
//! HNSW's heuristic (a candidate is kept when it is closer to the node than to every
//! neighbour kept before it), as hnswlib and faiss do.

use std::collections::HashMap;

use super::codes::{distance, Code};
use super::search::Near;
use super::{Hnsw, MAX_LEVEL};

/// A vector to insert under a key the graph does not hold.
#[derive(Debug, Clone)]
pub struct NewNode {
    pub key: u64,
    pub code: Code,
}

/// The neighbours chosen for each node of a batch, per level (index 0 = level 0), for the
/// graph as it was at `base` slots.
pub struct Plan {
    base: u32,
    levels: Vec<u8>,
    links: Vec<Vec<Vec<u32>>>,
}

/// How many nodes to plan against the same graph, for a graph of `slots` nodes.
pub fn batch_size(slots: usize) -> usize {
    (slots / 8).clamp(1, 256)
}

impl Hnsw {
    /// Inserts `nodes` (their keys must not be live), `threads` at a time.
    pub fn insert(&mut self, nodes: &[NewNode], threads: usize) {
        let mut done = 0;
        while done < nodes.len() {
            let n = batch_size(self.slots()).min(nodes.len() - done);
            let batch = &nodes[done..done + n];
            let plan = self.plan(batch, threads);
            self.apply(batch, plan, threads);
            done += n;
        }
    }

    /// Chooses the links of `batch` (placed after the current slots) on this graph.
    pub fn plan(&self, batch: &[NewNode], threads: usize) -> Plan {
        let base = self.slots() as u32;
        let levels: Vec<u8> = batch
            .iter()
            .map(|n| level_of(n.key, self.params.m))
            .collect();
        let code_at = |slot: u32| -> (&[i8], f32) {
            match slot.checked_sub(base) {
                Some(i) => {
                    let c = &batch[i as usize].code;
                    (&c.bytes, c.inv_norm)
                }
                None => (self.code(slot), self.inv_norms[slot as usize]),
            }
        };
        let plan_one = |i: usize| -> Vec<Vec<u32>> {
            let node = &batch[i];
            let (q, q_inv) = (&node.code.bytes[..], node.code.inv_norm);
            let level = levels[i];
            let mut cands: Vec<Vec<Near>> = vec![Vec::new(); level as usize + 1];
            if let Some((_, top)) = self.entry {
                let from = level.min(top);
                if let Some(start) = self.descend(q, q_inv, from) {
                    let live = |slot: u32| !self.deleted[slot as usize];
                    let mut visited = self.take_visited();
                    let mut starts = vec![start];
                    for lc in (0..=from).rev() {
                        let found = self.search_level(
                            (q, q_inv),
                            &starts,
                            lc,
                            self.params.ef_construction,
                            &live,
                            &mut visited,
                        );
                        visited.fit(self.slots());
                        if !found.is_empty() {
                            starts.clone_from(&found);
                        }
                        cands[lc as usize] = found;
                    }
                    self.give_visited(visited);
                }
            }
            for (j, other) in batch.iter().enumerate() {
                if j == i {
                    continue;
                }
                let shared = levels[j].min(level);
                let d = distance(q, q_inv, &other.code.bytes, other.code.inv_norm);
                for c in cands.iter_mut().take(shared as usize + 1) {
                    c.push(Near {
                        dist: d,
                        slot: base + j as u32,
                    });
                }
            }
            cands
                .into_iter()
                .enumerate()
                .map(|(lc, mut c)| {
                    c.sort();
                    c.dedup_by_key(|n| n.slot);
                    c.truncate(self.params.ef_construction.max(self.max_links(lc as u8)));
                    select(&c, self.max_links(lc as u8), &code_at)
                })
                .collect()
        };
        let links = parallel_map(batch.len(), threads, &plan_one);
        Plan {
            base,
            levels,
            links,
        }
    }

    /// Writes `batch` with the links `plan` chose, and the reverse links. A plan made for
    /// another graph state is made again.
    pub fn apply(&mut self, batch: &[NewNode], plan: Plan, threads: usize) {
        let plan = if plan.base as usize == self.slots() && plan.links.len() == batch.len() {
            plan
        } else {
            self.plan(batch, threads)
        };
        let base = plan.base;
        for (node, &level) in batch.iter().zip(&plan.levels) {
            let slot = self.keys.len() as u32;
            self.codes.extend_from_slice(&node.code.bytes);
            self.inv_norms.push(node.code.inv_norm);
            self.keys.push(node.key);
            self.levels.push(level);
            self.deleted.push(false);
            self.links0.resize(self.links0.len() + self.stride0, 0);
            if let Some(old) = self.slot_of.insert(node.key, slot) {
                self.deleted[old as usize] = true;
            }
        }
        let mut incoming: HashMap<(u32, u8), Vec<u32>> = HashMap::new();
        for (i, per_level) in plan.links.iter().enumerate() {
            let slot = base + i as u32;
            for (lc, to) in per_level.iter().enumerate() {
                self.set_links(slot, lc as u8, to);
                for &t in to {
                    incoming.entry((t, lc as u8)).or_default().push(slot);
                }
            }
        }
        let work: Vec<((u32, u8), Vec<u32>)> = incoming.into_iter().collect();
        let this: &Hnsw = self;
        let code_at = |slot: u32| (this.code(slot), this.inv_norms[slot as usize]);
        let relink = |w: usize| -> Vec<u32> {
            let ((t, lc), from) = &work[w];
            let mut list: Vec<u32> = this.links(*t, *lc).to_vec();
            for f in from {
                if *f != *t && !list.contains(f) {
                    list.push(*f);
                }
            }
            let max = this.max_links(*lc);
            if list.len() <= max {
                return list;
            }
            let (tc, ti) = code_at(*t);
            let mut near: Vec<Near> = list
                .iter()
                .map(|&s| {
                    let (c, ci) = code_at(s);
                    Near {
                        dist: distance(tc, ti, c, ci),
                        slot: s,
                    }
                })
                .collect();
            near.sort();
            select(&near, max, &code_at)
        };
        let lists = parallel_map(work.len(), threads, &relink);
        for (((t, lc), _), list) in work.iter().zip(lists) {
            self.set_links(*t, *lc, &list);
        }
        for (i, &level) in plan.levels.iter().enumerate() {
            if self.entry.is_none_or(|(_, top)| level > top) {
                self.entry = Some((base + i as u32, level));
            }
        }
    }
}

/// HNSW's neighbour heuristic over `cands` (closest first): keep a candidate when it is
/// closer to the node than to every one kept so far, up to `max`.
fn select<'a>(cands: &[Near], max: usize, code_at: &dyn Fn(u32) -> (&'a [i8], f32)) -> Vec<u32> {
    if cands.len() <= max {
        return cands.iter().map(|n| n.slot).collect();
    }
    let mut kept: Vec<u32> = Vec::with_capacity(max);
    for c in cands {
        if kept.len() >= max {
            break;
        }
        let (cc, ci) = code_at(c.slot);
        let diverse = kept.iter().all(|&s| {
            let (sc, si) = code_at(s);
            distance(cc, ci, sc, si) >= c.dist
        });
        if diverse {
            kept.push(c.slot);
        }
    }
    kept
}

/// A node's top level: Geometric with ratio 1/m, from a hash of its key (so a rebuild of
/// the same keys gives the same levels).
fn level_of(key: u64, m: usize) -> u8 {
    let mut h = key.wrapping_add(0x9e37_79b9_7f4a_7c15);
    h = (h ^ (h >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    h = (h ^ (h >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    h ^= h >> 31;
    let u = ((h >> 11) as f64 + 1.0) / (1u64 << 53) as f64; // (0, 1]
    let level = (-u.ln() / (m as f64).ln()).floor();
    level.min(MAX_LEVEL as f64) as u8
}

/// `f(0..n)` on `threads` threads, in order.
fn parallel_map<T: Send>(n: usize, threads: usize, f: &(dyn Fn(usize) -> T + Sync)) -> Vec<T> {
    let threads = threads.clamp(1, n.max(1));
    if threads == 1 {
        return (0..n).map(f).collect();
    }
    let chunk = n.div_ceil(threads);
    std::thread::scope(|s| {
        let handles: Vec<_> = (0..threads)
            .map(|t| {
                s.spawn(move || {
                    (t * chunk..((t + 1) * chunk).min(n))
                        .map(f)
                        .collect::<Vec<T>>()
                })
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().unwrap_or_else(|p| std::panic::resume_unwind(p)))
            .collect::<Vec<T>>()
    })
}
