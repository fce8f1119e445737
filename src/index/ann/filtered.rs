//! Searches of an [`AnnIndex`] restricted to the images a predicate keeps (an attribute
//! `Filter`): the graph walk that only collects passing images, and a scan of a given set
//! of ids over the codes, for filters that keep few images (where a graph walk
//! would have to cross most of the graph to find enough of them).
//!
//! Not here: deciding which of the two to run (`index::filtered`).

use super::{AnnError, AnnIndex};
use crate::index::hnsw::codes::{distance, Code};
use crate::index::Hit;
use crate::store::DataId;

impl AnnIndex {
    /// About the `k` most similar vectors among those `keep` accepts, best first.
    ///
    /// The walk crosses every node but only passing ones enter the result list, so it goes
    /// on until `ef` passing nodes are found: the cost grows as the filter keeps fewer
    /// images. A node passes when it or one of its duplicates does; only the passing ones
    /// are returned.
    pub fn search_filtered(
        &self,
        query: &[f32],
        k: usize,
        keep: &(dyn Fn(DataId) -> bool + Sync),
    ) -> Result<Vec<Hit>, AnnError> {
        self.check(query.len())?;
        if k == 0 || self.is_empty() {
            return Ok(Vec::new());
        }
        let code = Code::of(query);
        let d = self.dups_read();
        let passes = |key: u64| DataId::from_u64(key).is_some_and(keep);
        let node_passes = |key: u64| {
            passes(key)
                || d.members
                    .get(&key)
                    .is_some_and(|ms| ms.iter().any(|m| passes(*m)))
        };
        let found = self.graph().search(&code, k, self.ef_for(k), &node_passes);
        let mut hits = Vec::with_capacity(found.len());
        for (key, dist) in found {
            let same = d.members.get(&key).map(Vec::as_slice).unwrap_or(&[]);
            for k in std::iter::once(&key).chain(same) {
                if let Some(id) = DataId::from_u64(*k).filter(|id| keep(*id)) {
                    hits.push(Hit {
                        id,
                        cosine: 1.0 - dist,
                    });
                }
            }
        }
        Ok(hits)
    }

    /// The `k` best of `ids` for the best of `queries`, by the cosine of their codes
    /// (close to the exact one; callers re-rank with full precision). Ids not in the index
    /// are skipped.
    pub fn scan_ids(
        &self,
        queries: &[&[f32]],
        ids: &[DataId],
        k: usize,
    ) -> Result<Vec<Hit>, AnnError> {
        for q in queries {
            self.check(q.len())?;
        }
        if k == 0 || queries.is_empty() {
            return Ok(Vec::new());
        }
        let codes: Vec<Code> = queries.iter().map(|q| Code::of(q)).collect();
        let d = self.dups_read();
        let g = self.graph();
        let mut hits = Vec::with_capacity(ids.len());
        for &id in ids {
            let key = id.as_u64();
            let node = d.node_of.get(&key).copied().unwrap_or(key);
            let Some((code, inv)) = g.code_of(node) else {
                continue;
            };
            let cosine = codes
                .iter()
                .map(|q| 1.0 - distance(&q.bytes, q.inv_norm, code, inv))
                .fold(f32::NEG_INFINITY, f32::max);
            hits.push(Hit { id, cosine });
        }
        hits.sort_by(|a, b| b.cosine.total_cmp(&a.cosine).then(a.id.cmp(&b.id)));
        hits.truncate(k);
        Ok(hits)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::index::ann::AnnOptions;

    fn unit(seed: u64, dim: usize) -> Vec<f32> {
        let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
        let mut v: Vec<f32> = (0..dim)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                (x % 2000) as f32 / 1000.0 - 1.0
            })
            .collect();
        crate::embedding::l2_normalize(&mut v);
        v
    }

    fn id(i: u64) -> DataId {
        DataId::from_u64(1_000 + i).unwrap()
    }

    #[test]
    fn filtered_search_and_scan_return_only_kept_ids() {
        let dim = 32;
        let ann = AnnIndex::new(dim, AnnOptions::default()).unwrap();
        ann.reserve(600).unwrap();
        for i in 0..500 {
            ann.add(id(i), &unit(i, dim)).unwrap();
        }
        // A duplicate of an odd node under an even id: found through its node.
        ann.add(id(1002), &unit(3, dim)).unwrap();
        let even = |d: DataId| d.as_u64().is_multiple_of(2);
        let q = unit(3, dim);
        let hits = ann.search_filtered(&q, 10, &even).unwrap();
        assert!(!hits.is_empty() && hits.iter().all(|h| even(h.id)));
        assert_eq!(
            hits[0].id,
            id(1002),
            "the even duplicate of the query's own vector"
        );

        let ids: Vec<DataId> = (0..500)
            .filter(|i| i % 50 == 0)
            .map(id)
            .chain([id(1002)])
            .collect();
        let scanned = ann.scan_ids(&[&q], &ids, 3).unwrap();
        assert_eq!(scanned.len(), 3);
        assert_eq!(scanned[0].id, id(1002));
        assert!(scanned[0].cosine > 0.99);
        assert!(scanned.windows(2).all(|w| w[0].cosine >= w[1].cosine));
    }
}
