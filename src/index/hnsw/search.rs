//! Walking the graph: the greedy descent through the upper levels and the best-first
//! search of one level with a width `ef`, which both queries and insertions use.
//!
//! The walk prefetches all unvisited neighbours of a node before computing any of their
//! distances, so their memory loads overlap instead of stalling one after the other (the
//! cost that dominated usearch's walk on 1280-byte codes).

use std::cmp::{Ordering, Reverse};
use std::collections::BinaryHeap;

use super::codes::{distance, prefetch};
use super::Hnsw;

/// A distance and a slot, ordered by distance (then slot, for a total order).
#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) struct Near {
    pub dist: f32,
    pub slot: u32,
}

impl Eq for Near {}

impl PartialOrd for Near {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Near {
    fn cmp(&self, other: &Self) -> Ordering {
        self.dist
            .total_cmp(&other.dist)
            .then(self.slot.cmp(&other.slot))
    }
}

/// Which slots a walk has seen: a generation number per slot, so starting a walk costs
/// nothing (until the counter wraps, every 65,535 walks).
#[derive(Debug, Default)]
pub(super) struct Visited {
    marks: Vec<u16>,
    generation: u16,
}

impl Visited {
    pub fn fit(&mut self, slots: usize) {
        if self.marks.len() < slots {
            self.marks.resize(slots + slots / 8 + 64, 0);
        }
        self.generation = self.generation.wrapping_add(1);
        if self.generation == 0 {
            self.marks.iter_mut().for_each(|m| *m = 0);
            self.generation = 1;
        }
    }

    /// Marks `slot`; false when it was already marked in this walk.
    #[inline]
    pub fn insert(&mut self, slot: u32) -> bool {
        match self.marks.get_mut(slot as usize) {
            Some(m) if *m != self.generation => {
                *m = self.generation;
                true
            }
            _ => false,
        }
    }

    #[inline]
    pub fn contains(&self, slot: u32) -> bool {
        self.marks.get(slot as usize) == Some(&self.generation)
    }
}

impl Hnsw {
    #[inline]
    pub(super) fn dist_to(&self, q: &[i8], q_inv: f32, slot: u32) -> f32 {
        distance(q, q_inv, self.code(slot), self.inv_norms[slot as usize])
    }

    /// Greedy descent from the entry point to `down_to` (exclusive of levels below it):
    /// the closest node found on level `down_to`.
    pub(super) fn descend(&self, q: &[i8], q_inv: f32, down_to: u8) -> Option<Near> {
        let (entry, top) = self.entry?;
        let mut best = Near {
            dist: self.dist_to(q, q_inv, entry),
            slot: entry,
        };
        let mut level = top;
        while level > down_to {
            let mut moved = true;
            while moved {
                moved = false;
                for &n in self.links(best.slot, level) {
                    let d = self.dist_to(q, q_inv, n);
                    if d < best.dist {
                        best = Near { dist: d, slot: n };
                        moved = true;
                    }
                }
            }
            level -= 1;
        }
        Some(best)
    }

    /// Best-first search of `level` from `starts`, keeping the `ef` closest nodes that
    /// `keep` accepts (others still route the walk). Closest first.
    pub(super) fn search_level(
        &self,
        (q, q_inv): (&[i8], f32),
        starts: &[Near],
        level: u8,
        ef: usize,
        keep: &dyn Fn(u32) -> bool,
        visited: &mut Visited,
    ) -> Vec<Near> {
        let ef = ef.max(1);
        let mut frontier: BinaryHeap<Reverse<Near>> = BinaryHeap::with_capacity(ef * 2);
        let mut best: BinaryHeap<Near> = BinaryHeap::with_capacity(ef + 1);
        for s in starts {
            if visited.insert(s.slot) {
                frontier.push(Reverse(*s));
                if keep(s.slot) {
                    best.push(*s);
                    if best.len() > ef {
                        best.pop();
                    }
                }
            }
        }
        let mut fresh: Vec<u32> = Vec::with_capacity(2 * self.params.m);
        while let Some(Reverse(c)) = frontier.pop() {
            if best.len() >= ef && best.peek().is_some_and(|w| c.dist > w.dist) {
                break;
            }
            fresh.clear();
            for &n in self.links(c.slot, level) {
                if !visited.contains(n) {
                    prefetch(self.code(n));
                    fresh.push(n);
                }
            }
            for &n in &fresh {
                visited.insert(n);
                let d = self.dist_to(q, q_inv, n);
                let worst = best.peek().map_or(f32::INFINITY, |w| w.dist);
                if best.len() < ef || d < worst {
                    let near = Near { dist: d, slot: n };
                    frontier.push(Reverse(near));
                    if keep(n) {
                        best.push(near);
                        if best.len() > ef {
                            best.pop();
                        }
                    }
                }
            }
        }
        best.into_sorted_vec()
    }

    /// About the `k` live nodes closest to `q` that `keep` accepts (by key), closest first,
    /// searching level 0 with width `max(ef, k)`. Returns (key, distance = 1 − cosine).
    pub fn search(
        &self,
        q: &super::Query,
        k: usize,
        ef: usize,
        keep: &dyn Fn(u64) -> bool,
    ) -> Vec<(u64, f32)> {
        if k == 0 || self.is_empty() {
            return Vec::new();
        }
        let Some(start) = self.descend(&q.bytes, q.inv_norm, 0) else {
            return Vec::new();
        };
        let accept = |slot: u32| !self.deleted[slot as usize] && keep(self.keys[slot as usize]);
        let mut visited = self.take_visited();
        let found = self.search_level(
            (&q.bytes, q.inv_norm),
            &[start],
            0,
            ef.max(k),
            &accept,
            &mut visited,
        );
        self.give_visited(visited);
        found
            .into_iter()
            .take(k)
            .map(|n| (self.keys[n.slot as usize], n.dist))
            .collect()
    }
}
