//! Filtered search (SearchImage with a `Filter`): a database's attributes in memory
//! ([`AttrTable`]), and per query the choice between two ways to find the best images
//! the filter keeps, so that recall holds whether it keeps half the images or one in a
//! thousand:
//! - few kept images (estimated from a sample): list them and score each (`scan`), exact
//!   up to quantization, whatever the graph looks like;
//! - many: walk the HNSW graph collecting only kept images (`graph`); the walk lasts
//!   until it has found `ef` of them, so it costs more as the filter keeps fewer.
//!
//! The threshold between the two ([`scan_limit`]) comes from `imgsearch bench filter`.
//! Exact (small) databases need neither: their scan skips what the filter drops.
//! Not here: the grammar (`attributes::filter`), keeping the table in step with the store
//! (`service::db_index`).

use std::collections::HashMap;

use super::ann::{AnnError, AnnIndex};
use super::Hit;
use crate::attributes::filter::AttributeRow;
use crate::attributes::{Attributes, Filter};
use crate::rules::{INT_ATTR_SLOTS, STR_ATTR_SLOTS};
use crate::store::DataId;

/// How many kept images a scan scores in the time of one unfiltered graph walk. A walk
/// that keeps a share `s` of `n` images costs about `1/s` unfiltered walks (it must meet
/// `ef` passing images), a scan `s·n` scored images; the two are equal at
/// `kept = sqrt(SCAN_COST_RATIO · n)`, below which the scan is cheaper (and exact).
/// Measured with `bench filter --study` on seed 1, 100k images (README "Attribute filters").
pub const SCAN_COST_RATIO: f64 = 2_500.0;

/// Below this share of the images kept, the filtered walk loses recall (on seed 1 at 1M:
/// recall@10 0.988 at 20% kept, 0.939 at 10%, 0.837 at 5%), so the kept images are
/// scanned even where the walk would be faster.
pub const WALK_MIN_SHARE: f64 = 0.10;

/// The most kept images a filtered search of `total` images scans rather than walking
/// the graph: the cheaper of the two (`ratio`, see [`SCAN_COST_RATIO`]), and every share
/// up to [`WALK_MIN_SHARE`] for recall.
pub fn scan_limit(total: usize, ratio: f64) -> usize {
    let by_cost = (ratio * total as f64).sqrt();
    let by_recall = WALK_MIN_SHARE * total as f64;
    by_cost.max(by_recall) as usize
}

/// Rows sampled to estimate how many images a filter keeps.
const SAMPLE: usize = 2_048;

/// An unset integer attribute in its column (attribute values are within ±2^53).
const UNSET_INT: i64 = i64::MIN;
/// An unset string attribute in its column (interned strings are numbered from 1).
const UNSET_STR: u32 = 0;

/// The attributes of one database's images that have any (the others have none), in
/// columns: a filter over a million images reads only the columns it names (8 bytes per
/// image for an integer), not every image's whole record. Strings are interned, so each
/// distinct value is held once; a value no image uses any more stays until the next
/// start.
#[derive(Debug, Default)]
pub struct AttrTable {
    ids: Vec<DataId>,
    row_of: HashMap<DataId, usize>,
    ints: [Vec<i64>; INT_ATTR_SLOTS],
    strs: [Vec<u32>; STR_ATTR_SLOTS],
    /// Interned strings; index 0 is the unset marker.
    strings: Vec<Box<str>>,
    string_ids: HashMap<Box<str>, u32>,
}

/// One row of the table, as a filter reads it.
struct Row<'a> {
    table: &'a AttrTable,
    row: usize,
}

impl AttributeRow for Row<'_> {
    fn int(&self, slot: usize) -> Option<i64> {
        let v = *self.table.ints.get(slot)?.get(self.row)?;
        (v != UNSET_INT).then_some(v)
    }

    fn str(&self, slot: usize) -> Option<&str> {
        let id = *self.table.strs.get(slot)?.get(self.row)?;
        if id == UNSET_STR {
            return None;
        }
        self.table.strings.get(id as usize).map(|s| &**s)
    }
}

/// One integer attribute alone, for judging a leaf condition column by column.
struct OneInt(usize, Option<i64>);

impl AttributeRow for OneInt {
    fn int(&self, slot: usize) -> Option<i64> {
        if slot == self.0 {
            self.1
        } else {
            None
        }
    }

    fn str(&self, _: usize) -> Option<&str> {
        None
    }
}

/// One string attribute alone (see [`OneInt`]).
struct OneStr<'a>(usize, Option<&'a str>);

impl AttributeRow for OneStr<'_> {
    fn int(&self, _: usize) -> Option<i64> {
        None
    }

    fn str(&self, slot: usize) -> Option<&str> {
        if slot == self.0 {
            self.1
        } else {
            None
        }
    }
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
        Self {
            strings: vec!["".into()],
            ..Self::default()
        }
    }

    fn intern(&mut self, s: &str) -> u32 {
        if let Some(&id) = self.string_ids.get(s) {
            return id;
        }
        let id = u32::try_from(self.strings.len()).unwrap_or(u32::MAX);
        self.strings.push(s.into());
        self.string_ids.insert(s.into(), id);
        id
    }

    /// Sets an image's attributes (an image without any leaves the table).
    pub fn set(&mut self, id: DataId, attributes: Attributes) {
        if attributes.is_empty() {
            self.remove(&[id]);
            return;
        }
        let strs = attributes
            .strs
            .each_ref()
            .map(|s| s.as_deref().map_or(UNSET_STR, |s| self.intern(s)));
        let ints = attributes.ints.map(|v| v.unwrap_or(UNSET_INT));
        match self.row_of.get(&id) {
            Some(&row) => {
                for (col, v) in self.ints.iter_mut().zip(ints) {
                    col[row] = v;
                }
                for (col, v) in self.strs.iter_mut().zip(strs) {
                    col[row] = v;
                }
            }
            None => {
                self.row_of.insert(id, self.ids.len());
                self.ids.push(id);
                for (col, v) in self.ints.iter_mut().zip(ints) {
                    col.push(v);
                }
                for (col, v) in self.strs.iter_mut().zip(strs) {
                    col.push(v);
                }
            }
        }
    }

    pub fn remove(&mut self, ids: &[DataId]) {
        for id in ids {
            let Some(row) = self.row_of.remove(id) else {
                continue;
            };
            self.ids.swap_remove(row);
            for col in &mut self.ints {
                col.swap_remove(row);
            }
            for col in &mut self.strs {
                col.swap_remove(row);
            }
            if let Some(&moved) = self.ids.get(row) {
                self.row_of.insert(moved, row);
            }
        }
    }

    /// Images with at least one attribute.
    pub fn len(&self) -> usize {
        self.ids.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }

    /// Whether the image passes `filter`.
    pub fn matches(&self, id: DataId, filter: &Filter) -> bool {
        match self.row_of.get(&id) {
            Some(&row) => filter.matches_row(&Row { table: self, row }),
            None => filter.matches_unset(),
        }
    }

    /// About how many of `total` images pass `filter`: exact over the images with
    /// attributes when there are few, else from an evenly spread sample of them; every
    /// image without attributes counts when the filter lets those through.
    pub fn estimate(&self, filter: &Filter, total: usize) -> usize {
        let unset = if filter.matches_unset() {
            total.saturating_sub(self.len())
        } else {
            0
        };
        let n = self.len();
        if n == 0 {
            return unset;
        }
        let step = n.div_ceil(SAMPLE).max(1);
        let (mut seen, mut passed) = (0usize, 0usize);
        for row in (0..n).step_by(step) {
            seen += 1;
            passed += usize::from(filter.matches_row(&Row { table: self, row }));
        }
        // Rounded up: a filter seen to keep anything is not estimated at zero.
        unset + (passed * n).div_ceil(seen)
    }

    /// Every id with attributes that passes `filter`, ascending.
    pub fn matching_ids(&self, filter: &Filter) -> Vec<DataId> {
        let mask = self.mask(filter);
        let mut ids: Vec<DataId> = mask
            .iter()
            .zip(&self.ids)
            .filter(|(keep, _)| **keep)
            .map(|(_, id)| *id)
            .collect();
        ids.sort_unstable();
        ids
    }

    /// `filter` on every row at once, a column at a time (a tight loop over one column per
    /// condition instead of a tree walk per row): the rows that pass.
    fn mask(&self, filter: &Filter) -> Vec<bool> {
        let n = self.len();
        match filter {
            Filter::And(parts) | Filter::Or(parts) => {
                let and = matches!(filter, Filter::And(_));
                let mut acc = vec![and; n];
                for part in parts {
                    for (a, p) in acc.iter_mut().zip(self.mask(part)) {
                        *a = if and { *a && p } else { *a || p };
                    }
                }
                acc
            }
            Filter::Int { slot, .. } => {
                let Some(col) = self.ints.get(*slot) else {
                    return vec![false; n];
                };
                col.iter()
                    .map(|&v| filter.matches_row(&OneInt(*slot, (v != UNSET_INT).then_some(v))))
                    .collect()
            }
            Filter::Str { slot, .. } => {
                let Some(col) = self.strs.get(*slot) else {
                    return vec![false; n];
                };
                // Each distinct interned value is judged once.
                let mut verdict: HashMap<u32, bool> = HashMap::new();
                col.iter()
                    .map(|&id| {
                        *verdict.entry(id).or_insert_with(|| {
                            let v = (id != UNSET_STR)
                                .then(|| self.strings.get(id as usize).map(|s| &**s))
                                .flatten();
                            filter.matches_row(&OneStr(*slot, v))
                        })
                    })
                    .collect()
            }
        }
    }

    /// How to search an ANN index of `total` images with `filter`: a scan when the kept
    /// images can be listed (the filter drops images without attributes) and are estimated
    /// at most [`scan_limit`]`(total, ratio)`, else the graph.
    pub fn plan(&self, filter: &Filter, total: usize, ratio: f64) -> FilterPlan {
        if filter.matches_unset() || self.estimate(filter, total) > scan_limit(total, ratio) {
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
        // sqrt(2,500 × 20,000) ≈ 7,071 kept images at most are scanned; at 1M, 10%.
        assert_eq!(scan_limit(20_000, SCAN_COST_RATIO), 7_071);
        assert_eq!(scan_limit(1_000_000, SCAN_COST_RATIO), 100_000);
        assert_eq!(
            t.plan(&rare, 20_000, SCAN_COST_RATIO),
            FilterPlan::Scan(t.matching_ids(&rare))
        );
        assert_eq!(t.matching_ids(&rare).len(), 100);
        assert_eq!(t.plan(&half, 20_000, 12.0), FilterPlan::Graph);
        // "not 7" keeps every image without attributes too: they cannot be listed.
        let not = Filter::parse("int_attr != 7").unwrap();
        assert_eq!(t.plan(&not, 20_000, 1e12), FilterPlan::Graph);
        assert!(t.estimate(&not, 20_000) > 19_000);
        assert!(t.matches(id(5), &not) && !t.matches(id(5), &rare));
        t.remove(&[id(7)]);
        assert_eq!(t.matching_ids(&rare).len(), 99);
        // The last row moved into the removed one's place and is still found.
        let last = Filter::parse("int_attr = 99").unwrap();
        assert!(t.matches(id(9_999), &last) && !t.matches(id(7), &rare));
        // Strings are interned; an update overwrites the row in place.
        let mut a = with_int(1);
        a.strs[2] = Some("red".into());
        t.set(id(9_999), a.clone());
        t.set(id(1), a);
        let red = Filter::parse("str_attr3 = 'red' AND int_attr = 1").unwrap();
        assert_eq!(t.matching_ids(&red), vec![id(1), id(9_999)]);
        assert_eq!(t.len(), 9_998);
    }

    #[test]
    fn column_masks_agree_with_row_by_row_evaluation() {
        let mut t = AttrTable::new();
        let colours = [Some("red"), None, Some("blue"), Some("风")];
        let mut all = Vec::new();
        for i in 0..500u64 {
            let mut a = Attributes::NONE;
            a.ints[0] = (i % 7 != 0).then_some((i % 50) as i64);
            a.ints[3] = Some(-(i as i64));
            a.strs[0] = colours[(i % 4) as usize].map(str::to_string);
            a.strs[1] = (i % 3 == 0).then(|| format!("s{}", i % 5));
            if i % 11 == 0 {
                a = Attributes::NONE;
            }
            t.set(id(i), a.clone());
            all.push((id(i), a));
        }
        for text in [
            "int_attr < 10",
            "int_attr != 3 AND str_attr = 'red'",
            "str_attr not in ('red', '风') OR int_attr4 >= -20",
            "(str_attr2 = 's1' OR str_attr2 in ('s2', 's9')) AND int_attr not in (1, 2)",
            "str_attr = 'never' OR str_attr3 != 'x'",
            "int_attr2 = 4",
        ] {
            let f = Filter::parse(text).unwrap();
            let want: Vec<DataId> = all
                .iter()
                .filter(|(_, a)| !a.is_empty() && f.matches(a))
                .map(|(i, _)| *i)
                .collect();
            assert_eq!(t.matching_ids(&f), want, "{text}");
            for (i, a) in &all {
                assert_eq!(t.matches(*i, &f), f.matches(a), "{text} {i:?}");
            }
        }
    }
}
