//! `VectorIndex`: the index of one descriptor (semantic embedding or copy descriptor) of one
//! image database — exact below the ANN threshold, HNSW from it — with its start-up
//! reconciliation against the store, its snapshot and its rebuilds.
//!
//! A database's `DbIndex` (`service::db_index`) holds one per descriptor it indexes and
//! the write gate that keeps them in step with the store; this module never takes that
//! gate, its callers hold it.
//!
//! Not here: the gate, fusing the descriptors' similarities into one score
//! (`service::db_index`, `rules::fused_score`), the registry of databases.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{PoisonError, RwLock};
use std::time::Instant;

use super::db_index::IndexSettings;
use super::error::ServiceError;
use crate::attributes::Filter;
use crate::embedding::Descriptor;
use crate::index::ann::AnnIndex;
use crate::index::filtered::{ann_candidates, AttrTable, FilterPlan};
use crate::index::snapshot;
use crate::index::{ExactIndex, Hit};
use crate::store::{DataId, DbInfo, DbRef, EmbeddingSet, ImageStore};

pub(super) enum Searcher {
    Exact(ExactIndex),
    Ann(Box<AnnIndex>),
}

/// One descriptor's index of one database.
pub(super) struct VectorIndex {
    pub(super) kind: Descriptor,
    /// Its snapshot directory.
    pub(super) dir: PathBuf,
    searcher: RwLock<Searcher>,
}

/// What a search of one descriptor's index found.
pub(super) enum Candidates {
    /// Exact cosines, best first (an exact index).
    Scored(Vec<Hit>),
    /// Ids to re-rank with full-precision vectors (an ANN index).
    Ids(Vec<DataId>),
}

/// A search's `Filter` with the database's attributes and, for ANN indexes, how it runs.
pub(super) struct FilterScope<'a> {
    pub(super) attrs: &'a AttrTable,
    pub(super) filter: &'a Filter,
    pub(super) plan: FilterPlan,
}

/// Where a descriptor's snapshot lives inside the database's snapshot directory.
pub(super) fn descriptor_dir(db_dir: &Path, kind: Descriptor) -> PathBuf {
    match kind {
        Descriptor::Semantic => db_dir.to_path_buf(),
        Descriptor::Copy => db_dir.join("copy"),
    }
}

impl VectorIndex {
    /// An empty exact index.
    pub(super) fn empty(kind: Descriptor, db_dir: &Path) -> Self {
        Self::with(kind, db_dir, Searcher::Exact(ExactIndex::new(kind.dim())))
    }

    fn with(kind: Descriptor, db_dir: &Path, searcher: Searcher) -> Self {
        Self {
            kind,
            dir: descriptor_dir(db_dir, kind),
            searcher: RwLock::new(searcher),
        }
    }

    pub(super) fn len(&self) -> usize {
        match &*self.read() {
            Searcher::Exact(ix) => ix.len(),
            Searcher::Ann(ix) => ix.len(),
        }
    }

    pub(super) fn is_ann(&self) -> bool {
        matches!(&*self.read(), Searcher::Ann(_))
    }

    pub(super) fn add(&self, id: DataId, vector: &[f32]) -> Result<(), ServiceError> {
        if let Searcher::Ann(ix) = &*self.read() {
            // The graph locks itself: searches go on while an add chooses its links.
            return ix.add(id, vector).map_err(internal);
        }
        match &mut *self.write() {
            Searcher::Exact(ix) => ix.add(id, vector).map_err(internal),
            Searcher::Ann(ix) => ix.add(id, vector).map_err(internal),
        }
    }

    pub(super) fn remove(&self, ids: &[DataId]) -> Result<(), ServiceError> {
        if let Searcher::Ann(ix) = &*self.read() {
            return ix.remove(ids).map_err(internal);
        }
        match &mut *self.write() {
            Searcher::Exact(ix) => {
                ix.remove(ids);
                Ok(())
            }
            Searcher::Ann(ix) => ix.remove(ids).map_err(internal),
        }
    }

    /// The `want` best images for `queries` (best cosine over them), among those `filter`
    /// keeps when there is one.
    pub(super) fn candidates(
        &self,
        queries: &[&[f32]],
        want: usize,
        filter: Option<&FilterScope<'_>>,
    ) -> Result<Candidates, ServiceError> {
        match (&*self.read(), filter) {
            (Searcher::Exact(ix), None) => Ok(Candidates::Scored(
                ix.search_max(queries, want).map_err(internal)?,
            )),
            (Searcher::Exact(ix), Some(f)) => {
                let keep = |id: DataId| f.attrs.matches(id, f.filter);
                Ok(Candidates::Scored(
                    ix.search_max_where(queries, want, &keep)
                        .map_err(internal)?,
                ))
            }
            (Searcher::Ann(ix), filter) => {
                let mut ids: Vec<DataId> = Vec::with_capacity(want * queries.len());
                match filter {
                    None => {
                        for q in queries {
                            ids.extend(ix.search(q, want).map_err(internal)?.iter().map(|h| h.id));
                        }
                    }
                    Some(f) => ids.extend(
                        ann_candidates(ix, f.attrs, f.filter, &f.plan, queries, want)
                            .map_err(internal)?
                            .iter()
                            .map(|h| h.id),
                    ),
                }
                ids.sort_unstable();
                ids.dedup();
                Ok(Candidates::Ids(ids))
            }
        }
    }

    /// Full-precision vectors of `ids` (those that have one): from RAM for an exact index,
    /// from the store for an ANN one.
    pub(super) fn vectors(
        &self,
        store: &dyn ImageStore,
        db: DbRef<'_>,
        ids: &[DataId],
    ) -> Result<EmbeddingSet, ServiceError> {
        if let Searcher::Exact(ix) = &*self.read() {
            let mut set = EmbeddingSet {
                dim: ix.dim(),
                ids: Vec::with_capacity(ids.len()),
                vectors: Vec::with_capacity(ids.len() * ix.dim()),
            };
            for &id in ids {
                if let Some(v) = ix.vector(id) {
                    set.ids.push(id);
                    set.vectors.extend_from_slice(v);
                }
            }
            return Ok(set);
        }
        Ok(store.get_embeddings(db, self.kind, ids)?)
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, Searcher> {
        self.searcher.read().unwrap_or_else(PoisonError::into_inner)
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, Searcher> {
        self.searcher
            .write()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// Writes the ANN index and its ids to disk (the caller holds the database's gate, so
    /// the store's ids are the index's ids); repairs an index that drifted from the store
    /// first. `Ok(false)` for an exact index.
    pub(super) fn snapshot(
        &self,
        store: &dyn ImageStore,
        db: DbRef<'_>,
        created_at: i64,
        settings: &IndexSettings,
    ) -> Result<bool, ServiceError> {
        let guard = self.read();
        let Searcher::Ann(ann) = &*guard else {
            return Ok(false);
        };
        let ids = store.list_ids(db, self.kind)?;
        let missing: Vec<DataId> = ids
            .iter()
            .copied()
            .filter(|id| !ann.contains(*id))
            .collect();
        if !missing.is_empty() {
            tracing::warn!(db = %db.name, kind = ?self.kind, missing = missing.len(), "index lacked stored images; adding them");
            add_from_store(ann, store, db, self.kind, &missing)?;
        }
        if ann.len() != ids.len() {
            // Stale ids we cannot name (a failed remove): rebuild rather than persist them.
            tracing::warn!(db = %db.name, kind = ?self.kind, index = ann.len(), store = ids.len(), "index holds deleted images; rebuilding");
            drop(guard);
            let fresh = build_from_store(store, db, self.kind, ids.len(), settings)?;
            snapshot::write_snapshot(&self.dir, created_at, &fresh, &ids).map_err(internal)?;
            *self.write() = Searcher::Ann(Box::new(fresh));
            return Ok(true);
        }
        snapshot::write_snapshot(&self.dir, created_at, ann, &ids).map_err(internal)?;
        Ok(true)
    }

    /// Replaces an exact index by an ANN index built from its vectors (the caller holds the
    /// gate). `false` when it already was one.
    pub(super) fn promote(&self, settings: &IndexSettings) -> Result<bool, ServiceError> {
        let fresh = {
            let guard = self.read();
            let Searcher::Exact(exact) = &*guard else {
                return Ok(false);
            };
            let ann = AnnIndex::new(exact.dim(), settings.ann).map_err(internal)?;
            ann.reserve(exact.len() + 1024).map_err(internal)?;
            let items: Vec<(DataId, &[f32])> = exact.iter().collect();
            add_parallel(&ann, &items, &mut HashMap::new())?;
            ann
        };
        *self.write() = Searcher::Ann(Box::new(fresh));
        Ok(true)
    }

    /// Opens the index of `kind` of the database `info` at start-up: exact from the store's
    /// vectors when `ann` is false; else its snapshot reconciled with the store, or a
    /// rebuild. Returns the index, how many changes its snapshot lacks, and whether it was
    /// rebuilt (then it should be snapshotted at once).
    pub(super) fn open(
        store: &dyn ImageStore,
        settings: &IndexSettings,
        info: &DbInfo,
        kind: Descriptor,
        db_dir: &Path,
        ann: bool,
    ) -> Result<(Self, u64, bool), ServiceError> {
        let db = DbRef::new(&info.tenant, &info.name);
        let dir = descriptor_dir(db_dir, kind);
        if !ann {
            let set = store.load_embeddings(db, kind)?;
            let dim = if set.is_empty() { kind.dim() } else { set.dim };
            let exact = ExactIndex::from_parts(dim, set.ids, set.vectors).map_err(internal)?;
            return Ok((Self::with(kind, db_dir, Searcher::Exact(exact)), 0, false));
        }
        let started = Instant::now();
        let ids = store.list_ids(db, kind)?;
        let loaded =
            snapshot::read_snapshot(&dir, info.created_at, settings.ann).and_then(|(ann, keys)| {
                if ann.dim() == kind.dim() {
                    Ok((ann, keys))
                } else {
                    Err(format!("the snapshot holds {}-d vectors", ann.dim()))
                }
            });
        match loaded {
            Ok((ann, keys)) => {
                let (added, removed) = reconcile(&ann, &keys, &ids, store, db, kind)?;
                tracing::info!(db = %info.name, ?kind, images = ids.len(), added, removed, secs = started.elapsed().as_secs_f64(), "ANN index loaded from its snapshot");
                let ix = Self::with(kind, db_dir, Searcher::Ann(Box::new(ann)));
                Ok((ix, (added + removed) as u64, false))
            }
            Err(why) => {
                tracing::warn!(db = %info.name, ?kind, %why, "no usable ANN snapshot; rebuilding from the store");
                let ann = build_from_store(store, db, kind, ids.len(), settings)?;
                tracing::info!(db = %info.name, ?kind, images = ann.len(), secs = started.elapsed().as_secs_f64(), "ANN index rebuilt");
                Ok((
                    Self::with(kind, db_dir, Searcher::Ann(Box::new(ann))),
                    1,
                    true,
                ))
            }
        }
    }
}

pub(super) fn internal(e: impl std::fmt::Display) -> ServiceError {
    ServiceError::Internal(e.to_string())
}

/// Brings a snapshot (`ann` holding `keys`, ascending) in line with the store's `ids`
/// (ascending). Returns (added, removed).
fn reconcile(
    ann: &AnnIndex,
    keys: &[DataId],
    ids: &[DataId],
    store: &dyn ImageStore,
    db: DbRef<'_>,
    kind: Descriptor,
) -> Result<(usize, usize), ServiceError> {
    let (mut added, mut gone) = (Vec::new(), Vec::new());
    let (mut i, mut j) = (0, 0);
    while i < ids.len() || j < keys.len() {
        match (ids.get(i), keys.get(j)) {
            (Some(a), Some(b)) if a == b => {
                i += 1;
                j += 1;
            }
            (Some(a), Some(b)) if a < b => {
                added.push(*a);
                i += 1;
            }
            (Some(a), None) => {
                added.push(*a);
                i += 1;
            }
            (_, Some(b)) => {
                gone.push(*b);
                j += 1;
            }
            (None, None) => break,
        }
    }
    ann.remove(&gone).map_err(internal)?;
    // Ids the snapshot lists but the graph lacks (a damaged pair of files) are re-added too.
    added.extend(ids.iter().copied().filter(|id| !ann.contains(*id)));
    added.sort_unstable();
    added.dedup();
    add_from_store(ann, store, db, kind, &added)?;
    Ok((added.len(), gone.len()))
}

/// Fetches `ids`' vectors from the store in batches and adds them.
fn add_from_store(
    ann: &AnnIndex,
    store: &dyn ImageStore,
    db: DbRef<'_>,
    kind: Descriptor,
    ids: &[DataId],
) -> Result<(), ServiceError> {
    ann.reserve(ann.len() + ids.len() + 1024)
        .map_err(internal)?;
    for chunk in ids.chunks(1024) {
        let set: EmbeddingSet = store.get_embeddings(db, kind, chunk)?;
        // One by one: each may duplicate a node already in the index, which only a search
        // finds, and searches must not race adds (see `AnnIndex::add_fresh_parallel`).
        for (id, v) in set.iter() {
            ann.add(id, v).map_err(internal)?;
        }
    }
    Ok(())
}

/// Builds a fresh ANN index from every vector of `kind` of the database, streaming them
/// from the store to one adding thread per core.
pub(super) fn build_from_store(
    store: &dyn ImageStore,
    db: DbRef<'_>,
    kind: Descriptor,
    expected: usize,
    settings: &IndexSettings,
) -> Result<AnnIndex, ServiceError> {
    let dim = kind.dim();
    let ann = AnnIndex::new(dim, settings.ann).map_err(internal)?;
    ann.reserve(expected + 1024).map_err(internal)?;
    let mut batch_ids = Vec::with_capacity(4096);
    let mut batch_vecs: Vec<f32> = Vec::with_capacity(4096 * dim);
    let mut failed = None;
    let mut seen = HashMap::new();
    let mut flush = |ids: &mut Vec<DataId>, vecs: &mut Vec<f32>, ann: &AnnIndex| {
        if ids.is_empty() {
            return;
        }
        let items: Vec<(DataId, &[f32])> =
            ids.iter().copied().zip(vecs.chunks_exact(dim)).collect();
        if let Err(e) = add_parallel(ann, &items, &mut seen) {
            failed.get_or_insert(e);
        }
        ids.clear();
        vecs.clear();
    };
    store.for_each_embedding(db, kind, &mut |id, v| {
        if v.len() != dim {
            return;
        }
        batch_ids.push(id);
        batch_vecs.extend_from_slice(v);
        if batch_ids.len() == 4096 {
            flush(&mut batch_ids, &mut batch_vecs, &ann);
        }
    })?;
    flush(&mut batch_ids, &mut batch_vecs, &ann);
    match failed {
        Some(e) => Err(e),
        None => Ok(ann),
    }
}

/// Adds vectors new to a fresh index (a build or a promotion) from one thread per core;
/// `seen` finds exact duplicates across the batches of one build (`AnnIndex::add_fresh_parallel`).
fn add_parallel(
    ann: &AnnIndex,
    items: &[(DataId, &[f32])],
    seen: &mut HashMap<u64, u64>,
) -> Result<(), ServiceError> {
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    ann.add_fresh_parallel(items, threads, seen)
        .map_err(internal)
}
