//! Filtered search (SearchImage with a `Filter`): a database's attributes in memory
//! ([`AttrTable`]), and per query the choice between two ways to find the best images
//! the filter keeps, so that recall holds whether it keeps half the images or one in a
//! thousand:
//! - few kept images (estimated from a sample): list them and score each (`scan`), exact
//!   up to quantization, whatever the graph looks like;
//! - many: walk the HNSW graph collecting only kept images (`graph`); the walk lasts
//!   until it has found `ef` of them, so it costs more as the filter keeps fewer.
//!
//! The threshold between the two ([`SCAN_MAX`]) comes from `imgsearch bench filter`.
//! Exact (small) databases need neither: their scan skips what the filter drops.
//! Not here: the grammar (`attributes::filter`), keeping the table in step with the store
//! (`service::db_index`).

use std::collections::HashMap;

use super::ann::{AnnError, AnnIndex};
use super::Hit;
use crate::attributes::{Attributes, Filter};
use crate::store::DataId;

/// Scan the kept images rather than walk the graph when the filter is estimated to keep at
/// most this many (`bench filter`, README "Attribute filters").
pub const SCAN_MAX: usize = 20_000;

/// Rows sampled to estimate how many images a filter keeps.
const SAMPLE: usize = 2_048;

/// The attributes of one database's images that have any (the others have none), by id.
#[derive(Debug, Default)]
pub struct AttrTable {
    rows: HashMap<DataId, Attributes>,
}

/// How a filtered search of an ANN index runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FilterPlan {
    /// Score exactly these ids (every image the filter keeps).
    Scan(Vec<DataId>),
    /// Walk the graph, keeping only passing images.
    Graph,
}

impl AttrTable {
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets an image's attributes (an image without any leaves the table).
    pub fn set(&mut self, id: DataId, attributes: Attributes) {
        if attributes.is_empty() {
            self.rows.remove(&id);
        } else {
            self.rows.insert(id, attributes);
        }
    }

    pub fn remove(&mut self, ids: &[DataId]) {
        for id in ids {
            self.rows.remove(id);
        }
    }

    /// Images with at least one attribute.
    pub fn len(&self) -> usize {
        self.rows.len()
    }

    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    /// Whether the image passes `filter`.
    pub fn matches(&self, id: DataId, filter: &Filter) -> bool {
        filter.matches(self.rows.get(&id).unwrap_or(&Attributes::NONE))
    }

    /// About how many of `total` images pass `filter`: exact over the images with
    /// attributes when there are few, else from a sample of them; every image without
    /// attributes counts when the filter lets those through.
    pub fn estimate(&self, filter: &Filter, total: usize) -> usize {
        let unset = if filter.matches_unset() {
            total.saturating_sub(self.rows.len())
        } else {
            0
        };
        let sampled = self.rows.values().take(SAMPLE);
        let (mut seen, mut passed) = (0usize, 0usize);
        for a in sampled {
            seen += 1;
            passed += usize::from(filter.matches(a));
        }
        let set = if seen == 0 {
            0
        } else {
            // Rounded up: a filter seen to keep anything is not estimated at zero.
            (passed * self.rows.len()).div_ceil(seen)
        };
        unset + set
    }

    /// Every id with attributes that passes `filter`, ascending.
    pub fn matching_ids(&self, filter: &Filter) -> Vec<DataId> {
        let mut ids: Vec<DataId> = self
            .rows
            .iter()
            .filter(|(_, a)| filter.matches(a))
            .map(|(id, _)| *id)
            .collect();
        ids.sort_unstable();
        ids
    }

    /// How to search an ANN index of `total` images with `filter`: a scan when the kept
    /// images can be listed (the filter drops images without attributes) and are estimated
    /// at most `scan_max`, else the graph.
    pub fn plan(&self, filter: &Filter, total: usize, scan_max: usize) -> FilterPlan {
        if filter.matches_unset() || self.estimate(filter, total) > scan_max {
            return FilterPlan::Graph;
        }
        FilterPlan::Scan(self.matching_ids(filter))
    }
}

/// The about `want` best candidates of `ann` for `queries` (best cosine over them) among
/// the images `filter` keeps, following `plan`. Unordered between queries; callers re-rank.
pub fn ann_candidates(
    ann: &AnnIndex,
    attrs: &AttrTable,
    filter: &Filter,
    plan: &FilterPlan,
    queries: &[&[f32]],
    want: usize,
) -> Result<Vec<Hit>, AnnError> {
    match plan {
        FilterPlan::Scan(ids) => ann.scan_ids(queries, ids, want),
        FilterPlan::Graph => {
            let keep = |id: DataId| attrs.matches(id, filter);
            let mut hits = Vec::with_capacity(want * queries.len());
            for q in queries {
                hits.extend(ann.search_filtered(q, want, &keep)?);
            }
            Ok(hits)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(i: u64) -> DataId {
        DataId::from_u64(i).unwrap()
    }

    fn with_int(v: i64) -> Attributes {
        let mut a = Attributes::NONE;
        a.ints[0] = Some(v);
        a
    }

    #[test]
    fn estimates_and_plans() {
        let mut t = AttrTable::new();
        for i in 0..10_000 {
            t.set(id(i), with_int((i % 100) as i64));
        }
        t.set(id(5), Attributes::NONE);
        assert_eq!(t.len(), 9_999);
        let half = Filter::parse("int_attr < 50").unwrap();
        let est = t.estimate(&half, 20_000);
        assert!((4_000..6_000).contains(&est), "{est}");
        let rare = Filter::parse("int_attr = 7").unwrap();
        assert_eq!(
            t.plan(&rare, 20_000, 500),
            FilterPlan::Scan(t.matching_ids(&rare))
        );
        assert_eq!(t.matching_ids(&rare).len(), 100);
        assert_eq!(t.plan(&half, 20_000, 500), FilterPlan::Graph);
        // "not 7" keeps every image without attributes too: they cannot be listed.
        let not = Filter::parse("int_attr != 7").unwrap();
        assert_eq!(t.plan(&not, 20_000, usize::MAX), FilterPlan::Graph);
        assert!(t.estimate(&not, 20_000) > 19_000);
        assert!(t.matches(id(5), &not) && !t.matches(id(5), &rare));
        t.remove(&[id(7)]);
        assert_eq!(t.matching_ids(&rare).len(), 99);
    }
}
