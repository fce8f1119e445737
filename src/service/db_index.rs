//! `DbIndex`: one image database's search index, kept in step with the store.
//!
//! A database below `ann_threshold` images is searched exactly (`ExactIndex`, its vectors in
//! RAM). From the threshold on it is an HNSW graph over i8 vectors (`AnnIndex`, about 1.5 KB
//! per image), whose candidates are re-ranked with the full-precision vectors read from the
//! store, so order and scores are exact cosines as on the exact path.
//!
//! The store stays the source of truth. Every write goes to the store first, then to the
//! index, while holding the database's `gate` shared; a snapshot holds the gate exclusively,
//! so at that instant index and store agree, and it records the ids it holds next to the
//! graph (`index::snapshot`). At start-up ([`open_db`]) the snapshot is loaded and diffed
//! against the store's ids: images added since are inserted, images deleted since are
//! removed. A missing, foreign or unreadable snapshot means a rebuild from the store.
//!
//! Not here: the map of all databases, promotion and snapshot scheduling
//! (`service::registry`), HTTP, the API's rules, choosing what to search for
//! (`service::images`).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, PoisonError, RwLock};
use std::time::{Duration, Instant};

use super::error::ServiceError;
use crate::embedding::EMBEDDING_DIM;
use crate::index::ann::{AnnIndex, AnnOptions};
use crate::index::snapshot;
use crate::index::{rerank, ExactIndex, Hit};
use crate::store::{DataId, DbInfo, DbRef, EmbeddingSet, ImageStore};

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

pub(super) enum Searcher {
    Exact(ExactIndex),
    Ann(AnnIndex),
}

/// One database's index.
pub struct DbIndex {
    pub(super) tenant: String,
    pub(super) name: String,
    created_at: i64,
    pub(super) dir: PathBuf,
    /// Writers hold it shared across "store, then index"; snapshots and DeleteImageDb hold
    /// it exclusively. Owned guards, so a write's guard moves into the blocking task that
    /// does the write and lives exactly as long as it, whatever happens to the request.
    gate: Arc<tokio::sync::RwLock<()>>,
    searcher: RwLock<Searcher>,
    /// Writes since the last snapshot.
    pub(super) changes: AtomicU64,
    pub(super) promoting: AtomicBool,
}

/// A writer's share of the gate (see [`DbIndex::write_gate`]).
pub type WriteGuard = tokio::sync::OwnedRwLockReadGuard<()>;
/// The whole gate: no write is between its store and index steps (DeleteImageDb).
pub type ExclusiveGuard = tokio::sync::OwnedRwLockWriteGuard<()>;

impl DbIndex {
    pub(super) fn new(info: &DbInfo, settings: &IndexSettings, searcher: Searcher) -> Self {
        Self {
            tenant: info.tenant.clone(),
            name: info.name.clone(),
            created_at: info.created_at,
            dir: snapshot::snapshot_dir(&settings.dir, &info.tenant, &info.name),
            gate: Arc::new(tokio::sync::RwLock::new(())),
            searcher: RwLock::new(searcher),
            changes: AtomicU64::new(0),
            promoting: AtomicBool::new(false),
        }
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

    pub fn len(&self) -> usize {
        match &*self.read() {
            Searcher::Exact(ix) => ix.len(),
            Searcher::Ann(ix) => ix.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn is_ann(&self) -> bool {
        matches!(&*self.read(), Searcher::Ann(_))
    }

    /// Adds a vector the store has just made durable.
    pub fn add(&self, id: DataId, vector: &[f32]) -> Result<(), ServiceError> {
        match &mut *self.write() {
            Searcher::Exact(ix) => ix.add(id, vector).map_err(internal)?,
            // Exclusive even though usearch could add concurrently: growing the graph's
            // capacity must not race searches.
            Searcher::Ann(ix) => ix.add(id, vector).map_err(internal)?,
        }
        self.changes.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }

    /// Removes vectors the store has just deleted.
    pub fn remove(&self, ids: &[DataId]) -> Result<(), ServiceError> {
        match &mut *self.write() {
            Searcher::Exact(ix) => ix.remove(ids),
            Searcher::Ann(ix) => ix.remove(ids).map_err(internal)?,
        }
        self.changes.fetch_add(ids.len() as u64, Ordering::Relaxed);
        Ok(())
    }

    /// The `k` best images for `queries` (each image scored by its best cosine to any of
    /// them), best first, and the database size. ANN candidates are re-ranked with the
    /// store's full-precision vectors. Blocking: call from a blocking thread.
    pub fn search(
        &self,
        store: &dyn ImageStore,
        queries: &[&[f32]],
        k: usize,
        rerank_candidates: usize,
    ) -> Result<(Vec<Hit>, usize), ServiceError> {
        let candidates = {
            let guard = self.read();
            match &*guard {
                Searcher::Exact(ix) => {
                    let hits = ix.search_max(queries, k).map_err(internal)?;
                    return Ok((hits, ix.len()));
                }
                Searcher::Ann(ix) => {
                    let want = k.max(rerank_candidates);
                    let mut ids: Vec<DataId> = Vec::with_capacity(want * queries.len());
                    for q in queries {
                        ids.extend(ix.search(q, want).map_err(internal)?.iter().map(|h| h.id));
                    }
                    ids.sort_unstable();
                    ids.dedup();
                    (ids, ix.len())
                }
            }
        };
        let (ids, total) = candidates;
        let set = store.get_embeddings(self.db(), &ids)?;
        Ok((rerank(queries, set.iter(), k), total))
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, Searcher> {
        self.searcher.read().unwrap_or_else(PoisonError::into_inner)
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, Searcher> {
        self.searcher
            .write()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// Writes the ANN index and its ids to disk if it changed since the last snapshot.
    /// Takes the gate exclusively: writers wait (searches go on). Blocking.
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
        if self.changes.load(Ordering::Relaxed) == 0 && snapshot::exists(&self.dir) {
            return Ok(false);
        }
        let guard = self.read();
        let Searcher::Ann(ann) = &*guard else {
            return Ok(false);
        };
        // With the gate held, the store's ids are the index's ids. Check rather than trust:
        // an index write that failed after its store write shows up here and is repaired.
        let ids = store.list_ids(self.db())?;
        let missing: Vec<DataId> = ids
            .iter()
            .copied()
            .filter(|id| !ann.contains(*id))
            .collect();
        if !missing.is_empty() {
            tracing::warn!(db = %self.name, missing = missing.len(), "index lacked stored images; adding them");
            add_from_store(ann, store, self.db(), &missing)?;
        }
        if ann.len() != ids.len() {
            // Stale ids we cannot name (a failed remove): rebuild rather than persist them.
            tracing::warn!(db = %self.name, index = ann.len(), store = ids.len(), "index holds deleted images; rebuilding");
            drop(guard);
            let fresh = build_from_store(store, self.db(), ids.len(), settings)?;
            snapshot::write_snapshot(&self.dir, self.created_at, &fresh, &ids).map_err(internal)?;
            *self.write() = Searcher::Ann(fresh);
            self.changes.store(0, Ordering::Relaxed);
            return Ok(true);
        }
        snapshot::write_snapshot(&self.dir, self.created_at, ann, &ids).map_err(internal)?;
        self.changes.store(0, Ordering::Relaxed);
        Ok(true)
    }

    /// Replaces the exact index by an ANN index built from its vectors, then snapshots it.
    /// Writers wait for the build (searches go on, exactly). Blocking.
    pub(super) fn promote(
        &self,
        store: &dyn ImageStore,
        settings: &IndexSettings,
    ) -> Result<(), ServiceError> {
        let started = Instant::now();
        {
            let _gate = self.gate.blocking_write();
            let fresh = {
                let guard = self.read();
                let Searcher::Exact(exact) = &*guard else {
                    return Ok(());
                };
                if exact.len() < settings.ann_threshold {
                    return Ok(());
                }
                let ann = AnnIndex::new(exact.dim(), settings.ann).map_err(internal)?;
                ann.reserve(exact.len() + 1024).map_err(internal)?;
                let items: Vec<(DataId, &[f32])> = exact.iter().collect();
                add_parallel(&ann, &items, &mut HashMap::new())?;
                ann
            };
            *self.write() = Searcher::Ann(fresh);
            self.changes.store(1, Ordering::Relaxed);
        }
        let n = self.len();
        tracing::info!(db = %self.name, images = n, secs = started.elapsed().as_secs_f64(), "database promoted to the ANN index");
        self.snapshot(store, settings)?;
        Ok(())
    }
}

fn internal(e: impl std::fmt::Display) -> ServiceError {
    ServiceError::Internal(e.to_string())
}

pub(super) fn open_db(
    store: &dyn ImageStore,
    settings: &IndexSettings,
    info: &DbInfo,
) -> Result<DbIndex, ServiceError> {
    let db = DbRef::new(&info.tenant, &info.name);
    let dir = snapshot::snapshot_dir(&settings.dir, &info.tenant, &info.name);
    if (info.image_count as usize) < settings.ann_threshold {
        let set = store.load_embeddings(db)?;
        let dim = if set.is_empty() {
            EMBEDDING_DIM
        } else {
            set.dim
        };
        let exact = ExactIndex::from_parts(dim, set.ids, set.vectors).map_err(internal)?;
        let _ = std::fs::remove_dir_all(&dir);
        return Ok(DbIndex::new(info, settings, Searcher::Exact(exact)));
    }
    let started = Instant::now();
    let ids = store.list_ids(db)?;
    let ann = match snapshot::read_snapshot(&dir, info.created_at, settings.ann) {
        Ok((ann, keys)) => {
            let (added, removed) = reconcile(&ann, &keys, &ids, store, db)?;
            tracing::info!(db = %info.name, images = ids.len(), added, removed, secs = started.elapsed().as_secs_f64(), "ANN index loaded from its snapshot");
            let ix = DbIndex::new(info, settings, Searcher::Ann(ann));
            ix.changes
                .store((added + removed) as u64, Ordering::Relaxed);
            return Ok(ix);
        }
        Err(why) => {
            tracing::warn!(db = %info.name, %why, "no usable ANN snapshot; rebuilding from the store");
            build_from_store(store, db, ids.len(), settings)?
        }
    };
    tracing::info!(db = %info.name, images = ann.len(), secs = started.elapsed().as_secs_f64(), "ANN index rebuilt");
    let ix = DbIndex::new(info, settings, Searcher::Ann(ann));
    ix.changes.store(1, Ordering::Relaxed);
    ix.snapshot_gated(store, settings)?;
    Ok(ix)
}

/// Brings a snapshot (`ann` holding `keys`, ascending) in line with the store's `ids`
/// (ascending). Returns (added, removed).
fn reconcile(
    ann: &AnnIndex,
    keys: &[DataId],
    ids: &[DataId],
    store: &dyn ImageStore,
    db: DbRef<'_>,
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
    add_from_store(ann, store, db, &added)?;
    Ok((added.len(), gone.len()))
}

/// Fetches `ids`' vectors from the store in batches and adds them.
fn add_from_store(
    ann: &AnnIndex,
    store: &dyn ImageStore,
    db: DbRef<'_>,
    ids: &[DataId],
) -> Result<(), ServiceError> {
    ann.reserve(ann.len() + ids.len() + 1024)
        .map_err(internal)?;
    for chunk in ids.chunks(1024) {
        let set: EmbeddingSet = store.get_embeddings(db, chunk)?;
        // One by one: each may duplicate a node already in the index, which only a search
        // finds, and searches must not race adds (see `AnnIndex::add_fresh_parallel`).
        for (id, v) in set.iter() {
            ann.add(id, v).map_err(internal)?;
        }
    }
    Ok(())
}

/// Builds a fresh ANN index from every vector of the database, streaming them from the
/// store to one adding thread per core.
fn build_from_store(
    store: &dyn ImageStore,
    db: DbRef<'_>,
    expected: usize,
    settings: &IndexSettings,
) -> Result<AnnIndex, ServiceError> {
    let ann = AnnIndex::new(EMBEDDING_DIM, settings.ann).map_err(internal)?;
    ann.reserve(expected + 1024).map_err(internal)?;
    let mut batch_ids = Vec::with_capacity(4096);
    let mut batch_vecs: Vec<f32> = Vec::with_capacity(4096 * EMBEDDING_DIM);
    let mut failed = None;
    let mut seen = HashMap::new();
    let mut flush = |ids: &mut Vec<DataId>, vecs: &mut Vec<f32>, ann: &AnnIndex| {
        if ids.is_empty() {
            return;
        }
        let dim = vecs.len() / ids.len();
        let items: Vec<(DataId, &[f32])> =
            ids.iter().copied().zip(vecs.chunks_exact(dim)).collect();
        if let Err(e) = add_parallel(ann, &items, &mut seen) {
            failed.get_or_insert(e);
        }
        ids.clear();
        vecs.clear();
    };
    store.for_each_embedding(db, &mut |id, v| {
        if v.len() != EMBEDDING_DIM {
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
