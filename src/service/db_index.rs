//! `DbIndex`: one image database's search indexes, kept in step with the store, and the
//! search that fuses them into one ranking.
//!
//! A database indexes its semantic embeddings ("looks alike"), its copy-detection
//! descriptors ("the same picture"), or both (the default), one `VectorIndex` each
//! (`service::vector_index`): exact below `ann_threshold` images, HNSW over i8 vectors from
//! it, whose candidates are re-ranked with the full-precision vectors read from the store.
//! A search takes each index's best candidates, completes every candidate's cosines under
//! both descriptors, and scores them with `rules::fused_score`.
//!
//! The store stays the source of truth. Every write goes to the store first, then to the
//! indexes, while holding the database's `gate` shared; a snapshot holds the gate
//! exclusively, so at that instant indexes and store agree, and it records the ids it holds
//! next to the graph (`index::snapshot`). At start-up ([`open_db`]) the snapshots are loaded
//! and diffed against the store's ids; a missing, foreign or unreadable snapshot means a
//! rebuild from the store.
//!
//! Not here: the map of all databases, promotion and snapshot scheduling
//! (`service::registry`), HTTP, the API's rules, choosing what to search for
//! (`service::images`).

use std::cmp::Ordering as CmpOrdering;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, PoisonError, RwLock};
use std::time::{Duration, Instant};

use super::error::ServiceError;
use super::vector_index::{Candidates, FilterScope, VectorIndex};
use crate::attributes::{Attributes, Filter};
use crate::embedding::{dot, DbDescriptors, Descriptor};
use crate::index::ann::AnnOptions;
use crate::index::filtered::{AttrTable, FilterPlan, SCAN_COST_RATIO};
use crate::index::snapshot;
use crate::rules::fused_score;
use crate::store::{DataId, DbInfo, DbRef, ImageStore};

/// How databases are indexed and where the ANN snapshots live.
#[derive(Debug, Clone)]
pub struct IndexSettings {
    /// Snapshot directory (`DATA/indexes`).
    pub dir: PathBuf,
    /// Databases with at least this many images use the ANN index; smaller ones are exact.
    pub ann_threshold: usize,
    pub ann: AnnOptions,
    /// Candidates taken from the graph and re-ranked exactly (at least the page size).
    pub rerank: usize,
    /// How often changed ANN indexes are written to disk (also at shutdown).
    pub snapshot_every: Duration,
}

impl IndexSettings {
    pub const DEFAULT_ANN_THRESHOLD: usize = 20_000;

    pub fn in_data_dir(data: &Path) -> Self {
        Self {
            dir: data.join("indexes"),
            ann_threshold: Self::DEFAULT_ANN_THRESHOLD,
            ann: AnnOptions::default(),
            rerank: 40,
            snapshot_every: Duration::from_secs(300),
        }
    }
}

/// One database's indexes.
pub struct DbIndex {
    pub(super) tenant: String,
    pub(super) name: String,
    created_at: i64,
    pub(super) descriptors: DbDescriptors,
    pub(super) dir: PathBuf,
    /// Writers hold it shared across "store, then index"; snapshots and DeleteImageDb hold
    /// it exclusively. Owned guards, so a write's guard moves into the blocking task that
    /// does the write and lives exactly as long as it, whatever happens to the request.
    gate: Arc<tokio::sync::RwLock<()>>,
    /// One per indexed descriptor, semantic first.
    indexes: Vec<VectorIndex>,
    /// The attributes of the images that have any, for filtered searches; kept in step
    /// with the store like the indexes.
    attrs: RwLock<AttrTable>,
    /// Writes since the last snapshot.
    pub(super) changes: AtomicU64,
    pub(super) promoting: AtomicBool,
}

/// A writer's share of the gate (see [`DbIndex::write_gate`]).
pub type WriteGuard = tokio::sync::OwnedRwLockReadGuard<()>;
/// The whole gate: no write is between its store and index steps (DeleteImageDb).
pub type ExclusiveGuard = tokio::sync::OwnedRwLockWriteGuard<()>;

/// One image's vectors, as the network made them.
#[derive(Debug, Clone, Copy)]
pub struct ImageVectors<'a> {
    pub semantic: &'a [f32],
    pub copy: Option<&'a [f32]>,
}

/// A query's vectors: one or more semantic ones (e.g. with and without trimmed margins;
/// an image's similarity is its best cosine to any) and the copy descriptor.
#[derive(Debug, Clone, Default)]
pub struct QueryVectors {
    pub semantic: Vec<Vec<f32>>,
    pub copy: Option<Vec<f32>>,
}

impl QueryVectors {
    fn of(&self, kind: Descriptor) -> Vec<&[f32]> {
        match kind {
            Descriptor::Semantic => self.semantic.iter().map(Vec::as_slice).collect(),
            Descriptor::Copy => self.copy.iter().map(Vec::as_slice).collect(),
        }
    }
}

/// One search result: the image, its cosines and its API score (0–10).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ScoredHit {
    pub id: DataId,
    pub semantic: Option<f32>,
    pub copy: Option<f32>,
    pub score: f32,
}

impl DbIndex {
    fn assemble(info: &DbInfo, settings: &IndexSettings, indexes: Vec<VectorIndex>) -> Self {
        Self {
            tenant: info.tenant.clone(),
            name: info.name.clone(),
            created_at: info.created_at,
            descriptors: info.descriptors,
            dir: snapshot::snapshot_dir(&settings.dir, &info.tenant, &info.name),
            gate: Arc::new(tokio::sync::RwLock::new(())),
            indexes,
            attrs: RwLock::new(AttrTable::new()),
            changes: AtomicU64::new(0),
            promoting: AtomicBool::new(false),
        }
    }

    /// The index of a database just created (empty, exact).
    pub(super) fn empty(info: &DbInfo, settings: &IndexSettings) -> Self {
        let dir = snapshot::snapshot_dir(&settings.dir, &info.tenant, &info.name);
        let indexes = indexed(info.descriptors)
            .map(|kind| VectorIndex::empty(kind, &dir))
            .collect();
        Self::assemble(info, settings, indexes)
    }

    fn db(&self) -> DbRef<'_> {
        DbRef::new(&self.tenant, &self.name)
    }

    /// Held by a writer from its store write until its index update is done.
    pub async fn write_gate(&self) -> WriteGuard {
        self.gate.clone().read_owned().await
    }

    /// Waits until no write is in progress and keeps new ones out (DeleteImageDb).
    pub async fn exclusive_gate(&self) -> ExclusiveGuard {
        self.gate.clone().write_owned().await
    }

    /// The gate held exclusively from a blocking thread (the copy-descriptor backfill).
    pub(super) fn blocking_exclusive_gate(&self) -> tokio::sync::RwLockWriteGuard<'_, ()> {
        self.gate.blocking_write()
    }

    /// Adds copy descriptors the store has just stored for images already indexed
    /// semantically (the backfill; the caller holds the gate exclusively).
    pub(super) fn add_copies(&self, vectors: &[(DataId, &[f32])]) -> Result<(), ServiceError> {
        if let Some(ix) = self.indexes.iter().find(|ix| ix.kind == Descriptor::Copy) {
            for (id, v) in vectors {
                ix.add(*id, v)?;
            }
            self.changes
                .fetch_add(vectors.len() as u64, Ordering::Relaxed);
        }
        Ok(())
    }

    /// Whether the database indexes `kind`.
    pub fn indexes(&self, kind: Descriptor) -> bool {
        self.descriptors.includes(kind)
    }

    /// Images in the database (its largest index: images stored before copy descriptors
    /// existed have none).
    pub fn len(&self) -> usize {
        self.indexes.iter().map(VectorIndex::len).max().unwrap_or(0)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn is_ann(&self) -> bool {
        self.indexes.iter().any(VectorIndex::is_ann)
    }

    /// Adds the vectors (those the database indexes) and attributes of an image the store
    /// has just made durable.
    pub fn add(
        &self,
        id: DataId,
        vectors: ImageVectors<'_>,
        attributes: &Attributes,
    ) -> Result<(), ServiceError> {
        if !attributes.is_empty() {
            self.attrs_mut().set(id, attributes.clone());
        }
        for ix in &self.indexes {
            match (ix.kind, vectors.copy) {
                (Descriptor::Semantic, _) => ix.add(id, vectors.semantic)?,
                (Descriptor::Copy, Some(copy)) => ix.add(id, copy)?,
                (Descriptor::Copy, None) => {}
            }
        }
        self.changes.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }

    /// Sets the attributes of images the store has just updated.
    pub fn set_attributes<'a>(&self, rows: impl IntoIterator<Item = (DataId, &'a Attributes)>) {
        let mut attrs = self.attrs_mut();
        for (id, a) in rows {
            attrs.set(id, a.clone());
        }
    }

    fn attrs_mut(&self) -> std::sync::RwLockWriteGuard<'_, AttrTable> {
        self.attrs.write().unwrap_or_else(PoisonError::into_inner)
    }

    /// Removes images the store has just deleted.
    pub fn remove(&self, ids: &[DataId]) -> Result<(), ServiceError> {
        self.attrs_mut().remove(ids);
        for ix in &self.indexes {
            ix.remove(ids)?;
        }
        self.changes.fetch_add(ids.len() as u64, Ordering::Relaxed);
        Ok(())
    }

    /// The `k` best images for `query`, best first, and the database size. Each indexed
    /// descriptor with a query vector nominates its `max(k, rerank_candidates)` best; every
    /// nominee gets its exact cosines under every such descriptor, then
    /// `rules::fused_score`. With a `filter`, only images it keeps are nominated
    /// (`index::filtered`). Blocking: call from a blocking thread.
    pub fn search(
        &self,
        store: &dyn ImageStore,
        query: &QueryVectors,
        k: usize,
        rerank_candidates: usize,
        filter: Option<&Filter>,
    ) -> Result<(Vec<ScoredHit>, usize), ServiceError> {
        let want = k.max(rerank_candidates);
        let total = self.len();
        let attrs = self.attrs.read().unwrap_or_else(PoisonError::into_inner);
        let scope = filter.map(|filter| FilterScope {
            attrs: &attrs,
            filter,
            plan: if self.is_ann() {
                attrs.plan(filter, total, SCAN_COST_RATIO)
            } else {
                FilterPlan::Graph
            },
        });
        // id → (semantic cosine, copy cosine), filled in as they are known.
        let mut pool: HashMap<DataId, [Option<f32>; 2]> = HashMap::new();
        let used: Vec<(&VectorIndex, Vec<&[f32]>)> = self
            .indexes
            .iter()
            .map(|ix| (ix, query.of(ix.kind)))
            .filter(|(_, qs)| !qs.is_empty())
            .collect();
        for (ix, qs) in &used {
            match ix.candidates(qs, want, scope.as_ref())? {
                Candidates::Scored(hits) => {
                    for h in hits {
                        pool.entry(h.id).or_default()[slot(ix.kind)] = Some(h.cosine);
                    }
                }
                Candidates::Ids(ids) => {
                    for id in ids {
                        pool.entry(id).or_default();
                    }
                }
            }
        }
        for (ix, qs) in &used {
            let s = slot(ix.kind);
            let mut missing: Vec<DataId> = pool
                .iter()
                .filter(|(_, c)| c[s].is_none())
                .map(|(id, _)| *id)
                .collect();
            missing.sort_unstable();
            let set = ix.vectors(store, self.db(), &missing)?;
            for (id, v) in set.iter() {
                let best = qs
                    .iter()
                    .filter(|q| q.len() == v.len())
                    .map(|q| dot(q, v))
                    .fold(None, |m: Option<f32>, c| Some(m.map_or(c, |m| m.max(c))));
                if let (Some(c), Some(entry)) = (best, pool.get_mut(&id)) {
                    entry[s] = Some(c);
                }
            }
        }
        let mut hits: Vec<ScoredHit> = pool
            .into_iter()
            .filter(|(_, [s, c])| s.is_some() || c.is_some())
            .map(|(id, [semantic, copy])| ScoredHit {
                id,
                semantic,
                copy,
                score: fused_score(self.descriptors, semantic, copy),
            })
            .collect();
        hits.sort_by(|a, b| match b.score.total_cmp(&a.score) {
            CmpOrdering::Equal => a.id.cmp(&b.id),
            other => other,
        });
        hits.truncate(k);
        Ok((hits, total))
    }

    /// Writes the ANN indexes and their ids to disk if they changed since the last
    /// snapshot. Takes the gate exclusively: writers wait (searches go on). Blocking.
    pub(super) fn snapshot(
        &self,
        store: &dyn ImageStore,
        settings: &IndexSettings,
    ) -> Result<bool, ServiceError> {
        let _gate = self.gate.blocking_write();
        self.snapshot_gated(store, settings)
    }

    /// `snapshot` with the gate already held (or the index not yet shared).
    fn snapshot_gated(
        &self,
        store: &dyn ImageStore,
        settings: &IndexSettings,
    ) -> Result<bool, ServiceError> {
        let all_exist = self.indexes.iter().all(|ix| snapshot::exists(&ix.dir));
        if self.changes.load(Ordering::Relaxed) == 0 && all_exist {
            return Ok(false);
        }
        let mut wrote = false;
        for ix in &self.indexes {
            wrote |= ix.snapshot(store, self.db(), self.created_at, settings)?;
        }
        self.changes.store(0, Ordering::Relaxed);
        Ok(wrote)
    }

    /// Replaces the exact indexes by ANN indexes built from their vectors, then snapshots
    /// them. Writers wait for the build (searches go on, exactly). Blocking.
    pub(super) fn promote(
        &self,
        store: &dyn ImageStore,
        settings: &IndexSettings,
    ) -> Result<(), ServiceError> {
        let started = Instant::now();
        {
            let _gate = self.gate.blocking_write();
            if self.len() < settings.ann_threshold {
                return Ok(());
            }
            let mut promoted = false;
            for ix in &self.indexes {
                promoted |= ix.promote(settings)?;
            }
            if !promoted {
                return Ok(());
            }
            self.changes.store(1, Ordering::Relaxed);
        }
        let n = self.len();
        tracing::info!(db = %self.name, images = n, secs = started.elapsed().as_secs_f64(), "database promoted to the ANN index");
        self.snapshot(store, settings)?;
        Ok(())
    }
}

/// Where a descriptor's cosine sits in the search's pool entries.
fn slot(kind: Descriptor) -> usize {
    match kind {
        Descriptor::Semantic => 0,
        Descriptor::Copy => 1,
    }
}

/// The descriptors a database of `descriptors` indexes, semantic first.
fn indexed(descriptors: DbDescriptors) -> impl Iterator<Item = Descriptor> {
    Descriptor::ALL
        .into_iter()
        .filter(move |&k| descriptors.includes(k))
}

pub(super) fn open_db(
    store: &dyn ImageStore,
    settings: &IndexSettings,
    info: &DbInfo,
) -> Result<DbIndex, ServiceError> {
    let dir = snapshot::snapshot_dir(&settings.dir, &info.tenant, &info.name);
    let ann = info.image_count as usize >= settings.ann_threshold;
    if !ann {
        let _ = std::fs::remove_dir_all(&dir);
    }
    let mut indexes = Vec::new();
    let (mut changes, mut rebuilt) = (0, false);
    for kind in indexed(info.descriptors) {
        let (ix, c, r) = VectorIndex::open(store, settings, info, kind, &dir, ann)?;
        changes += c;
        rebuilt |= r;
        indexes.push(ix);
    }
    let ix = DbIndex::assemble(info, settings, indexes);
    {
        let mut attrs = ix.attrs_mut();
        store.for_each_attributes(DbRef::new(&info.tenant, &info.name), &mut |id, a| {
            attrs.set(id, a)
        })?;
    }
    ix.changes.store(changes, Ordering::Relaxed);
    if rebuilt {
        ix.snapshot_gated(store, settings)?;
    }
    Ok(ix)
}
