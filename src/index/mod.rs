//! Vector search over one database's embeddings: exact here, HNSW in `ann`, the on-disk
//! snapshot of an HNSW index in `snapshot`.
//!
//! `ExactIndex` keeps every vector of a database in one contiguous `Vec<f32>` and scans it
//! per query: no allocation or copy per vector, only a top-k heap per query. It is exact
//! and fast enough for tens of thousands of images; `ann` serves larger databases. The
//! store stays the source of truth: the index is rebuilt from it at start-up and kept in
//! step by the service on every add and delete.

pub mod ann;
pub mod connected;
pub mod filtered;
pub mod hnsw;
pub mod snapshot;

use std::cmp::Ordering;
use std::collections::{BinaryHeap, HashMap};

use crate::embedding::dot;
use crate::store::DataId;

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum IndexError {
    #[error("vector has {got} dimensions, the index holds {want}")]
    Dimension { got: usize, want: usize },
}

/// One search result: the image and its cosine similarity to the query.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Hit {
    pub id: DataId,
    pub cosine: f32,
}

/// Brute-force cosine search over L2-normalised vectors (dot product = cosine).
#[derive(Debug, Clone)]
pub struct ExactIndex {
    dim: usize,
    ids: Vec<DataId>,
    vectors: Vec<f32>,
    slot_of: HashMap<DataId, usize>,
}

impl ExactIndex {
    pub fn new(dim: usize) -> Self {
        Self {
            dim,
            ids: Vec::new(),
            vectors: Vec::new(),
            slot_of: HashMap::new(),
        }
    }

    /// Builds from contiguous vectors (`ids.len() * dim` floats), as the store loads them.
    pub fn from_parts(dim: usize, ids: Vec<DataId>, vectors: Vec<f32>) -> Result<Self, IndexError> {
        if vectors.len() != ids.len() * dim {
            return Err(IndexError::Dimension {
                got: vectors.len() / ids.len().max(1),
                want: dim,
            });
        }
        let slot_of = ids.iter().enumerate().map(|(i, id)| (*id, i)).collect();
        Ok(Self {
            dim,
            ids,
            vectors,
            slot_of,
        })
    }

    pub fn dim(&self) -> usize {
        self.dim
    }

    pub fn len(&self) -> usize {
        self.ids.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }

    pub fn contains(&self, id: DataId) -> bool {
        self.slot_of.contains_key(&id)
    }

    /// The vector of `id`, if it is in the index.
    pub fn vector(&self, id: DataId) -> Option<&[f32]> {
        let slot = *self.slot_of.get(&id)?;
        self.vectors.get(slot * self.dim..(slot + 1) * self.dim)
    }

    /// Every (id, vector), in storage order.
    pub fn iter(&self) -> impl Iterator<Item = (DataId, &[f32])> {
        self.ids
            .iter()
            .copied()
            .zip(self.vectors.chunks_exact(self.dim))
    }

    /// Adds (or replaces) one vector.
    pub fn add(&mut self, id: DataId, vector: &[f32]) -> Result<(), IndexError> {
        if vector.len() != self.dim {
            return Err(IndexError::Dimension {
                got: vector.len(),
                want: self.dim,
            });
        }
        match self.slot_of.get(&id) {
            Some(&slot) => {
                self.vectors[slot * self.dim..(slot + 1) * self.dim].copy_from_slice(vector)
            }
            None => {
                self.slot_of.insert(id, self.ids.len());
                self.ids.push(id);
                self.vectors.extend_from_slice(vector);
            }
        }
        Ok(())
    }

    /// Removes vectors by id (unknown ids are ignored); O(1) each by moving the last
    /// vector into the freed slot.
    pub fn remove(&mut self, ids: &[DataId]) {
        for id in ids {
            let Some(slot) = self.slot_of.remove(id) else {
                continue;
            };
            let last = self.ids.len() - 1;
            if slot != last {
                let moved = self.ids[last];
                self.ids[slot] = moved;
                self.vectors
                    .copy_within(last * self.dim..(last + 1) * self.dim, slot * self.dim);
                self.slot_of.insert(moved, slot);
            }
            self.ids.pop();
            self.vectors.truncate(last * self.dim);
        }
    }

    /// The `k` most similar vectors, best first (ties: older id first).
    pub fn search(&self, query: &[f32], k: usize) -> Result<Vec<Hit>, IndexError> {
        self.search_max(&[query], k)
    }

    /// [`search`](Self::search) for several query vectors at once, in one scan: each
    /// vector's similarity is its best cosine to any of them (e.g. a query embedded with
    /// and without its margins).
    pub fn search_max(&self, queries: &[&[f32]], k: usize) -> Result<Vec<Hit>, IndexError> {
        self.search_max_where(queries, k, &|_| true)
    }

    /// [`search_max`](Self::search_max) over only the vectors whose id `keep` accepts (an
    /// attribute filter): still exact, the others are skipped without a dot product.
    pub fn search_max_where(
        &self,
        queries: &[&[f32]],
        k: usize,
        keep: &dyn Fn(DataId) -> bool,
    ) -> Result<Vec<Hit>, IndexError> {
        if let Some(q) = queries.iter().find(|q| q.len() != self.dim) {
            return Err(IndexError::Dimension {
                got: q.len(),
                want: self.dim,
            });
        }
        if k == 0 || queries.is_empty() {
            return Ok(Vec::new());
        }
        // Min-heap of the best k so far: the root is the weakest kept hit.
        let mut heap: BinaryHeap<Weakest> = BinaryHeap::with_capacity(k + 1);
        for (slot, v) in self.vectors.chunks_exact(self.dim).enumerate() {
            if !keep(self.ids[slot]) {
                continue;
            }
            let cosine = queries
                .iter()
                .map(|q| dot(q, v))
                .fold(f32::NEG_INFINITY, f32::max);
            if heap.len() < k {
                heap.push(Weakest(Hit {
                    id: self.ids[slot],
                    cosine,
                }));
            } else if let Some(top) = heap.peek() {
                let cand = Hit {
                    id: self.ids[slot],
                    cosine,
                };
                if better(&cand, &top.0) {
                    heap.pop();
                    heap.push(Weakest(cand));
                }
            }
        }
        let mut hits: Vec<Hit> = heap.into_iter().map(|w| w.0).collect();
        hits.sort_by(|a, b| {
            if better(a, b) {
                Ordering::Less
            } else {
                Ordering::Greater
            }
        });
        Ok(hits)
    }
}

/// Re-ranks ANN candidates by their exact cosine (best over `queries`), best first, at
/// most `k`. `candidates` pairs each id with its full-precision vector.
pub fn rerank<'a>(
    queries: &[&[f32]],
    candidates: impl IntoIterator<Item = (DataId, &'a [f32])>,
    k: usize,
) -> Vec<Hit> {
    let mut hits: Vec<Hit> = candidates
        .into_iter()
        .filter(|(_, v)| queries.iter().all(|q| q.len() == v.len()))
        .map(|(id, v)| Hit {
            id,
            cosine: queries
                .iter()
                .map(|q| dot(q, v))
                .fold(f32::NEG_INFINITY, f32::max),
        })
        .collect();
    hits.sort_by(|a, b| {
        if better(a, b) {
            Ordering::Less
        } else {
            Ordering::Greater
        }
    });
    hits.dedup_by_key(|h| h.id);
    hits.truncate(k);
    hits
}

fn better(a: &Hit, b: &Hit) -> bool {
    match a.cosine.total_cmp(&b.cosine) {
        Ordering::Greater => true,
        Ordering::Less => false,
        Ordering::Equal => a.id < b.id,
    }
}

/// Heap entry ordered so that the weakest hit is the heap's maximum.
struct Weakest(Hit);

impl PartialEq for Weakest {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}
impl Eq for Weakest {}
impl PartialOrd for Weakest {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Weakest {
    fn cmp(&self, other: &Self) -> Ordering {
        if better(&self.0, &other.0) {
            Ordering::Less
        } else if better(&other.0, &self.0) {
            Ordering::Greater
        } else {
            Ordering::Equal
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(n: u64) -> DataId {
        DataId::from_u64(n).unwrap()
    }

    fn unit(v: &[f32]) -> Vec<f32> {
        let n = v.iter().map(|x| x * x).sum::<f32>().sqrt();
        v.iter().map(|x| x / n).collect()
    }

    #[test]
    fn finds_nearest_first_and_respects_k() {
        let mut ix = ExactIndex::new(3);
        ix.add(id(1), &unit(&[1.0, 0.0, 0.0])).unwrap();
        ix.add(id(2), &unit(&[1.0, 1.0, 0.0])).unwrap();
        ix.add(id(3), &unit(&[0.0, 0.0, 1.0])).unwrap();
        let hits = ix.search(&unit(&[1.0, 0.1, 0.0]), 2).unwrap();
        assert_eq!(
            hits.iter().map(|h| h.id).collect::<Vec<_>>(),
            vec![id(1), id(2)]
        );
        assert!(hits[0].cosine > hits[1].cosine);
        assert_eq!(ix.search(&unit(&[1.0, 0.0, 0.0]), 10).unwrap().len(), 3);
    }

    #[test]
    fn remove_keeps_remaining_vectors_intact() {
        let mut ix = ExactIndex::new(2);
        for n in 1..=5 {
            ix.add(id(n), &unit(&[n as f32, 1.0])).unwrap();
        }
        ix.remove(&[id(2), id(5), id(42)]);
        assert_eq!(ix.len(), 3);
        for n in [1u64, 3, 4] {
            let hits = ix.search(&unit(&[n as f32, 1.0]), 1).unwrap();
            assert_eq!(hits[0].id, id(n));
            assert_eq!(crate::rules::score(hits[0].cosine), 10.0);
        }
        assert!(!ix.contains(id(2)));
    }

    #[test]
    fn matches_a_naive_scan() {
        let dim = 37;
        let mut ix = ExactIndex::new(dim);
        let mut all = Vec::new();
        let mut seed = 7u64;
        let mut rnd = || {
            seed = seed
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            ((seed >> 33) as f32 / (1u64 << 31) as f32) - 0.5
        };
        for n in 0..500u64 {
            let v = unit(&(0..dim).map(|_| rnd()).collect::<Vec<_>>());
            ix.add(id(n), &v).unwrap();
            all.push((id(n), v));
        }
        let q = unit(&(0..dim).map(|_| rnd()).collect::<Vec<_>>());
        let mut naive: Vec<Hit> = all
            .iter()
            .map(|(i, v)| Hit {
                id: *i,
                cosine: v.iter().zip(&q).map(|(a, b)| a * b).sum(),
            })
            .collect();
        naive.sort_by(|a, b| b.cosine.total_cmp(&a.cosine));
        let got = ix.search(&q, 10).unwrap();
        assert_eq!(
            got.iter().map(|h| h.id).collect::<Vec<_>>(),
            naive[..10].iter().map(|h| h.id).collect::<Vec<_>>()
        );
    }

    #[test]
    fn search_max_takes_the_best_query_per_vector() {
        let mut ix = ExactIndex::new(2);
        ix.add(id(1), &unit(&[1.0, 0.0])).unwrap();
        ix.add(id(2), &unit(&[0.0, 1.0])).unwrap();
        ix.add(id(3), &unit(&[1.0, 1.0])).unwrap();
        let a = unit(&[1.0, 0.1]);
        let b = unit(&[0.0, 1.0]);
        let hits = ix.search_max(&[&a, &b], 3).unwrap();
        assert_eq!(hits[0].id, id(2)); // exactly b
        assert!((hits[0].cosine - 1.0).abs() < 1e-6);
        assert_eq!(hits[1].id, id(1));
        assert_eq!(hits[2].id, id(3));
        // One query: the same as `search`.
        assert_eq!(ix.search_max(&[&a], 3).unwrap(), ix.search(&a, 3).unwrap());
        assert!(ix.search_max(&[&a, &[1.0; 3]], 3).is_err());
        assert!(ix.search_max(&[], 3).unwrap().is_empty());
    }

    #[test]
    fn wrong_dimension_is_an_error() {
        let mut ix = ExactIndex::new(4);
        assert!(ix.add(id(1), &[1.0; 3]).is_err());
        assert!(ix.search(&[1.0; 5], 1).is_err());
    }
}
