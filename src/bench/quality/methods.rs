//! The retrieval methods compared by `bench quality`: which descriptors a method stores for
//! a database image and which it computes for a query (similarity: the best dot product
//! over the query's vectors), and what each costs in network passes.

use super::{descriptor, Descs};

/// A retrieval method: the database vector and the query vectors (similarity is the best
/// dot product over the query vectors).
pub(super) struct Method {
    pub(super) name: &'static str,
    pub(super) db: &'static [&'static str],
    pub(super) query: &'static [&'static [&'static str]],
    /// Network passes per query and their input sizes, for the cost column.
    pub(super) cost: &'static str,
}

/// A descriptor made by summing (then normalising) the named parts.
pub(super) fn compose(d: &Descs, parts: &[&str]) -> Vec<f32> {
    let vs: Vec<&[f32]> = parts
        .iter()
        .filter_map(|p| d.get(p).map(Vec::as_slice))
        .collect();
    descriptor::combine(&vs)
}

pub(super) const METHODS: &[Method] = &[
    Method {
        name: "plain + border trim",
        db: &["mean224t"],
        query: &[&["mean224t"]],
        cost: "1×224",
    },
    Method {
        name: "plain + border trim, query also untrimmed (max)",
        db: &["mean224t"],
        query: &[&["mean224t"], &["mean224"]],
        cost: "1×224 (2× if trimmed)",
    },
    Method {
        name: "plain + border trim, query also untrimmed + subject crop (max of whole and crop)",
        db: &["mean224t"],
        query: &[&["mean224t"], &["mean224"], &["subject"]],
        cost: "subject model + 1–3×224",
    },
    Method {
        name: "plain, border trim on queries only",
        db: &["mean224"],
        query: &[&["mean224t"]],
        cost: "1×224",
    },
    Method {
        name: "GeM p3 224 + border trim",
        db: &["gem3_224t"],
        query: &[&["gem3_224t"]],
        cost: "1×224",
    },
    Method {
        name: "plain (mean pool 224)",
        db: &["mean224"],
        query: &[&["mean224"]],
        cost: "1×224",
    },
    Method {
        name: "MAC 224",
        db: &["mac224"],
        query: &[&["mac224"]],
        cost: "1×224",
    },
    Method {
        name: "GeM p3 224",
        db: &["gem3_224"],
        query: &[&["gem3_224"]],
        cost: "1×224",
    },
    Method {
        name: "GeM p4 224",
        db: &["gem4_224"],
        query: &[&["gem4_224"]],
        cost: "1×224",
    },
    Method {
        name: "R-MAC (GeM p3, 3 levels) 224",
        db: &["rmac224"],
        query: &[&["rmac224"]],
        cost: "1×224",
    },
    Method {
        name: "GeM p3 320",
        db: &["gem3_320"],
        query: &[&["gem3_320"]],
        cost: "1×320",
    },
    Method {
        name: "GeM p3 224+320",
        db: &["gem3_224", "gem3_320"],
        query: &[&["gem3_224", "gem3_320"]],
        cost: "224+320",
    },
    Method {
        name: "R-MAC 320",
        db: &["rmac320"],
        query: &[&["rmac320"]],
        cost: "1×320",
    },
    Method {
        name: "GeM p3 224, query flip max",
        db: &["gem3_224"],
        query: &[&["gem3_224"], &["gem3_224f"]],
        cost: "2×224",
    },
    Method {
        name: "GeM p3 224 + flip (both sides)",
        db: &["gem3_224", "gem3_224f"],
        query: &[&["gem3_224", "gem3_224f"]],
        cost: "2×224",
    },
    Method {
        name: "GeM p3 224+320 + flip (both sides)",
        db: &["gem3_224", "gem3_320", "gem3_224f"],
        query: &[&["gem3_224", "gem3_320", "gem3_224f"]],
        cost: "2×224+320",
    },
];
