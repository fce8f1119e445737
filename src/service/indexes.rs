//! `DbIndexes`: the search index of every image database, kept in step with the store.
//!
//! A database below `ann_threshold` images is searched exactly (`ExactIndex`, its vectors in
//! RAM). From the threshold on it is an HNSW graph over i8 vectors (`AnnIndex`, about 1.5 KB
//! per image), whose candidates are re-ranked with the full-precision vectors read from the
//! store, so order and scores are exact cosines as on the exact path.
//!
//! The store stays the source of truth. Every write goes to the store first, then to the
//! index, while holding the database's `gate` shared; a snapshot holds the gate exclusively,
//! so at that instant index and store agree, and it records the ids it holds next to the
//! graph. At start-up the snapshot is loaded and diffed against the store's ids: images added
//! since are inserted, images deleted since are removed. A missing, foreign or unreadable
//! snapshot means a rebuild from the store. Snapshots are taken when a database is promoted,
//! every `snapshot_every` while it has changes, and at shutdown.
//!
//! Not here: HTTP, the API's rules, choosing what to search for (see `service::images`).

use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, PoisonError, RwLock, Weak};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::index::ann::{AnnIndex, AnnOptions};
use crate::index::{rerank, ExactIndex, Hit};
use crate::service::images::ServiceError;
use crate::store::{DataId, DbInfo, DbRef, EmbeddingSet, ImageStore};
use crate::vision::onnx::FEATURE_DIM;

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

enum Searcher {
    Exact(ExactIndex),
    Ann(AnnIndex),
}

/// One database's index.
pub struct DbIndex {
    tenant: String,
    name: String,
    created_at: i64,
    dir: PathBuf,
    /// Writers hold it shared across "store, then index"; snapshots hold it exclusively.
    gate: tokio::sync::RwLock<()>,
    searcher: RwLock<Searcher>,
    /// Writes since the last snapshot.
    changes: AtomicU64,
    promoting: AtomicBool,
}

pub type WriteGuard<'a> = tokio::sync::RwLockReadGuard<'a, ()>;

impl DbIndex {
    fn new(info: &DbInfo, settings: &IndexSettings, searcher: Searcher) -> Self {
        Self {
            tenant: info.tenant.clone(),
            name: info.name.clone(),
            created_at: info.created_at,
            dir: snapshot_dir(&settings.dir, &info.tenant, &info.name),
            gate: tokio::sync::RwLock::new(()),
            searcher: RwLock::new(searcher),
            changes: AtomicU64::new(0),
            promoting: AtomicBool::new(false),
        }
    }

    fn db(&self) -> DbRef<'_> {
        DbRef::new(&self.tenant, &self.name)
    }

    /// Held by a writer from its store write until its index update is done.
    pub async fn write_gate(&self) -> WriteGuard<'_> {
        self.gate.read().await
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
    fn snapshot(
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
        if self.changes.load(Ordering::Relaxed) == 0 && self.dir.join(META_FILE).exists() {
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
            write_snapshot(&self.dir, self.created_at, &fresh, &ids)?;
            *self.write() = Searcher::Ann(fresh);
            self.changes.store(0, Ordering::Relaxed);
            return Ok(true);
        }
        write_snapshot(&self.dir, self.created_at, ann, &ids)?;
        self.changes.store(0, Ordering::Relaxed);
        Ok(true)
    }

    /// Replaces the exact index by an ANN index built from its vectors, then snapshots it.
    /// Writers wait for the build (searches go on, exactly). Blocking.
    fn promote(
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
                add_parallel(&ann, &items)?;
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

/// Every database's index, by (tenant, name).
pub struct DbIndexes {
    store: Arc<dyn ImageStore>,
    settings: IndexSettings,
    map: RwLock<HashMap<(String, String), Arc<DbIndex>>>,
}

impl DbIndexes {
    /// Opens every database's index: exact ones from the store's vectors, ANN ones from
    /// their snapshot reconciled with the store (or rebuilt when there is none).
    pub fn open(store: Arc<dyn ImageStore>, settings: IndexSettings) -> Result<Self, ServiceError> {
        std::fs::create_dir_all(&settings.dir).map_err(|e| {
            ServiceError::Internal(format!("creating {}: {e}", settings.dir.display()))
        })?;
        let mut map = HashMap::new();
        let dbs = store.list_all_dbs()?;
        for info in &dbs {
            let ix = open_db(store.as_ref(), &settings, info)?;
            map.insert((info.tenant.clone(), info.name.clone()), Arc::new(ix));
        }
        // Snapshots of databases deleted while a snapshot was being written, or before a crash.
        let live: std::collections::HashSet<PathBuf> = dbs
            .iter()
            .map(|d| snapshot_dir(&settings.dir, &d.tenant, &d.name))
            .collect();
        if let Ok(entries) = std::fs::read_dir(&settings.dir) {
            for e in entries.flatten() {
                if !live.contains(&e.path()) {
                    let _ = std::fs::remove_dir_all(e.path());
                }
            }
        }
        Ok(Self {
            store,
            settings,
            map: RwLock::new(map),
        })
    }

    pub fn settings(&self) -> &IndexSettings {
        &self.settings
    }

    pub fn get(&self, tenant: &str, db: &str) -> Option<Arc<DbIndex>> {
        let map = self.map.read().unwrap_or_else(PoisonError::into_inner);
        map.get(&(tenant.to_string(), db.to_string())).cloned()
    }

    /// Registers a database the store has just created.
    pub fn created(&self, info: &DbInfo) {
        let ix = DbIndex::new(
            info,
            &self.settings,
            Searcher::Exact(ExactIndex::new(FEATURE_DIM)),
        );
        let _ = std::fs::remove_dir_all(&ix.dir);
        let mut map = self.map.write().unwrap_or_else(PoisonError::into_inner);
        map.insert((info.tenant.clone(), info.name.clone()), Arc::new(ix));
    }

    /// Forgets a database the store has just deleted, and its snapshot.
    pub fn deleted(&self, tenant: &str, db: &str) {
        let removed = {
            let mut map = self.map.write().unwrap_or_else(PoisonError::into_inner);
            map.remove(&(tenant.to_string(), db.to_string()))
        };
        if let Some(ix) = removed {
            let _ = std::fs::remove_dir_all(&ix.dir);
        }
    }

    /// (tenant, database, image count) for every database.
    pub fn sizes(&self) -> Vec<(String, String, usize)> {
        let map = self.map.read().unwrap_or_else(PoisonError::into_inner);
        map.iter()
            .map(|((t, d), ix)| (t.clone(), d.clone(), ix.len()))
            .collect()
    }

    /// Promotes `ix` to the ANN index in the background once it reaches the threshold.
    pub fn promote_if_due(self: &Arc<Self>, ix: &Arc<DbIndex>) {
        if ix.is_ann()
            || ix.len() < self.settings.ann_threshold
            || ix.promoting.swap(true, Ordering::AcqRel)
        {
            return;
        }
        let (me, ix) = (self.clone(), ix.clone());
        std::thread::spawn(move || {
            if let Err(e) = ix.promote(me.store.as_ref(), &me.settings) {
                tracing::error!(db = %ix.name, error = %e, "promoting to the ANN index failed; staying exact");
            }
            ix.promoting.store(false, Ordering::Release);
        });
    }

    /// Snapshots every ANN index that changed. Blocking; errors are logged.
    pub fn snapshot_all(&self) {
        let all: Vec<Arc<DbIndex>> = {
            let map = self.map.read().unwrap_or_else(PoisonError::into_inner);
            map.values().cloned().collect()
        };
        for ix in all {
            let started = Instant::now();
            match ix.snapshot(self.store.as_ref(), &self.settings) {
                Ok(true) => {
                    tracing::info!(db = %ix.name, images = ix.len(), secs = started.elapsed().as_secs_f64(), "index snapshot written")
                }
                Ok(false) => {}
                Err(e) => tracing::error!(db = %ix.name, error = %e, "index snapshot failed"),
            }
        }
    }

    /// Snapshots changed indexes every `settings.snapshot_every` on a background thread,
    /// until `self` is dropped.
    pub fn start_snapshotter(self: &Arc<Self>) {
        let weak: Weak<Self> = Arc::downgrade(self);
        let every = self.settings.snapshot_every;
        std::thread::spawn(move || loop {
            let due = Instant::now() + every;
            while Instant::now() < due {
                std::thread::sleep(Duration::from_millis(250).min(every));
                if weak.strong_count() == 0 {
                    return;
                }
            }
            match weak.upgrade() {
                Some(me) => me.snapshot_all(),
                None => return,
            }
        });
    }
}

fn internal(e: impl std::fmt::Display) -> ServiceError {
    ServiceError::Internal(e.to_string())
}

fn open_db(
    store: &dyn ImageStore,
    settings: &IndexSettings,
    info: &DbInfo,
) -> Result<DbIndex, ServiceError> {
    let db = DbRef::new(&info.tenant, &info.name);
    let dir = snapshot_dir(&settings.dir, &info.tenant, &info.name);
    if (info.image_count as usize) < settings.ann_threshold {
        let set = store.load_embeddings(db)?;
        let dim = if set.is_empty() { FEATURE_DIM } else { set.dim };
        let exact = ExactIndex::from_parts(dim, set.ids, set.vectors).map_err(internal)?;
        let _ = std::fs::remove_dir_all(&dir);
        return Ok(DbIndex::new(info, settings, Searcher::Exact(exact)));
    }
    let started = Instant::now();
    let ids = store.list_ids(db)?;
    let ann = match read_snapshot(&dir, info, settings) {
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
        let items: Vec<(DataId, &[f32])> = set.iter().collect();
        add_parallel(ann, &items)?;
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
    let ann = AnnIndex::new(FEATURE_DIM, settings.ann).map_err(internal)?;
    ann.reserve(expected + 1024).map_err(internal)?;
    let mut batch_ids = Vec::with_capacity(4096);
    let mut batch_vecs: Vec<f32> = Vec::with_capacity(4096 * FEATURE_DIM);
    let mut failed = None;
    let mut flush = |ids: &mut Vec<DataId>, vecs: &mut Vec<f32>, ann: &AnnIndex| {
        if ids.is_empty() {
            return;
        }
        let dim = vecs.len() / ids.len();
        let items: Vec<(DataId, &[f32])> =
            ids.iter().copied().zip(vecs.chunks_exact(dim)).collect();
        if let Err(e) = add_parallel(ann, &items) {
            failed.get_or_insert(e);
        }
        ids.clear();
        vecs.clear();
    };
    store.for_each_embedding(db, &mut |id, v| {
        if v.len() != FEATURE_DIM {
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

/// Adds `items` from one thread per core (capacity must be reserved).
fn add_parallel(ann: &AnnIndex, items: &[(DataId, &[f32])]) -> Result<(), ServiceError> {
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    if items.len() < 64 || threads == 1 {
        return items
            .iter()
            .try_for_each(|(id, v)| ann.add(*id, v).map_err(internal));
    }
    let chunk = items.len().div_ceil(threads);
    std::thread::scope(|s| {
        let handles: Vec<_> = items
            .chunks(chunk)
            .map(|part| {
                s.spawn(move || {
                    part.iter()
                        .try_for_each(|(id, v)| ann.add(*id, v).map_err(internal))
                })
            })
            .collect();
        handles.into_iter().try_for_each(|h| {
            h.join()
                .unwrap_or_else(|_| Err(ServiceError::Internal("index builder panicked".into())))
        })
    })
}

const META_FILE: &str = "snapshot.json";
const SNAPSHOT_FORMAT: u32 = 1;

/// What `snapshot.json` says about the graph and id files next to it.
#[derive(Debug, Serialize, Deserialize, PartialEq)]
struct SnapshotMeta {
    format: u32,
    generation: u64,
    /// The database's creation time: a snapshot of a deleted and re-created namesake is
    /// not this database's.
    db_created_at: i64,
    dim: usize,
    count: usize,
    connectivity: usize,
    expansion_add: usize,
}

/// One directory per database: hex of the tenant (any string) + the name ([a-z0-9_]).
fn snapshot_dir(root: &Path, tenant: &str, name: &str) -> PathBuf {
    let hex: String = tenant.bytes().map(|b| format!("{b:02x}")).collect();
    root.join(format!("{hex}.{name}"))
}

/// Writes generation n+1 (graph, ids, then the meta file by atomic rename, each fsynced),
/// then deletes older generations. A crash at any point leaves the previous generation
/// or the new one readable.
fn write_snapshot(
    dir: &Path,
    db_created_at: i64,
    ann: &AnnIndex,
    ids: &[DataId],
) -> Result<(), ServiceError> {
    let io = |what: &str, e: std::io::Error| ServiceError::Internal(format!("{what}: {e}"));
    std::fs::create_dir_all(dir).map_err(|e| io("creating the snapshot directory", e))?;
    let generation = read_meta(dir).map_or(1, |m| m.generation + 1);
    let graph = dir.join(format!("graph-{generation}.usearch"));
    let keys = dir.join(format!("ids-{generation}.u64"));
    ann.save(&graph).map_err(internal)?;
    let mut bytes = Vec::with_capacity(ids.len() * 8);
    for id in ids {
        bytes.extend_from_slice(&id.as_u64().to_le_bytes());
    }
    write_synced(&keys, &bytes).map_err(|e| io("writing the ids file", e))?;
    let meta = SnapshotMeta {
        format: SNAPSHOT_FORMAT,
        generation,
        db_created_at,
        dim: ann.dim(),
        count: ids.len(),
        connectivity: ann.options().connectivity,
        expansion_add: ann.options().expansion_add,
    };
    let tmp = dir.join(format!("{META_FILE}.tmp"));
    let json = serde_json::to_vec(&meta).map_err(internal)?;
    write_synced(&tmp, &json).map_err(|e| io("writing the snapshot meta file", e))?;
    std::fs::rename(&tmp, dir.join(META_FILE)).map_err(|e| io("renaming the meta file", e))?;
    if let Ok(d) = std::fs::File::open(dir) {
        let _ = d.sync_all();
    }
    // Older generations are garbage now.
    if let Ok(entries) = std::fs::read_dir(dir) {
        for e in entries.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            let current = name == META_FILE
                || name.starts_with(&format!("graph-{generation}.usearch"))
                || name == format!("ids-{generation}.u64");
            if !current {
                let _ = std::fs::remove_file(e.path());
            }
        }
    }
    Ok(())
}

fn read_meta(dir: &Path) -> Result<SnapshotMeta, String> {
    let bytes = std::fs::read(dir.join(META_FILE)).map_err(|e| format!("{META_FILE}: {e}"))?;
    serde_json::from_slice(&bytes).map_err(|e| format!("{META_FILE}: {e}"))
}

/// Loads the current generation, checking that it belongs to this database and matches
/// the settings; the error says why it cannot be used.
fn read_snapshot(
    dir: &Path,
    info: &DbInfo,
    settings: &IndexSettings,
) -> Result<(AnnIndex, Vec<DataId>), String> {
    let meta = read_meta(dir)?;
    if meta.format != SNAPSHOT_FORMAT {
        return Err(format!(
            "snapshot format {} is not {SNAPSHOT_FORMAT}",
            meta.format
        ));
    }
    if meta.db_created_at != info.created_at {
        return Err("the snapshot is of an earlier database of the same name".into());
    }
    if meta.connectivity != settings.ann.connectivity
        || meta.expansion_add != settings.ann.expansion_add
    {
        return Err("the snapshot was built with other HNSW parameters".into());
    }
    let bytes = std::fs::read(dir.join(format!("ids-{}.u64", meta.generation)))
        .map_err(|e| format!("ids file: {e}"))?;
    if bytes.len() != meta.count * 8 {
        return Err(format!(
            "ids file holds {} bytes, {} ids expected",
            bytes.len(),
            meta.count
        ));
    }
    let keys: Vec<DataId> = bytes
        .chunks_exact(8)
        .map(|c| {
            let mut b = [0u8; 8];
            b.copy_from_slice(c);
            DataId::from_u64(u64::from_le_bytes(b)).ok_or_else(|| "ids file: bad id".to_string())
        })
        .collect::<Result<_, _>>()?;
    if !keys.windows(2).all(|w| w[0] < w[1]) {
        return Err("ids file is not in ascending order".into());
    }
    let graph = dir.join(format!("graph-{}.usearch", meta.generation));
    let ann = AnnIndex::load(&graph, meta.dim, settings.ann).map_err(|e| e.to_string())?;
    if ann.len() != keys.len() {
        return Err(format!(
            "graph holds {} vectors, the ids file {}",
            ann.len(),
            keys.len()
        ));
    }
    Ok((ann, keys))
}

fn write_synced(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let mut f = std::fs::File::create(path)?;
    f.write_all(bytes)?;
    f.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{NewImage, SqliteStore};

    fn unit(seed: u64) -> Vec<f32> {
        let mut s = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
        let mut v: Vec<f32> = (0..FEATURE_DIM)
            .map(|_| {
                s ^= s << 13;
                s ^= s >> 7;
                s ^= s << 17;
                (s >> 40) as f32 / (1u64 << 24) as f32 - 0.5
            })
            .collect();
        crate::vision::model::l2_normalize(&mut v);
        v
    }

    fn settings(dir: &Path, threshold: usize) -> IndexSettings {
        IndexSettings {
            ann_threshold: threshold,
            ..IndexSettings::in_data_dir(dir)
        }
    }

    /// Adds images `seeds` to the store only (as if the process died before the index).
    fn store_add(store: &SqliteStore, db: DbRef<'_>, seeds: std::ops::Range<u64>) -> Vec<DataId> {
        seeds
            .map(|i| {
                let v = unit(i);
                let e = format!("e{i}");
                store
                    .add_image(
                        db,
                        &NewImage {
                            entity_id: &e,
                            extra_data: "",
                            image_url: "",
                            embedding: &v,
                            thumbnail: None,
                        },
                    )
                    .unwrap()
                    .data_id
            })
            .collect()
    }

    fn top(ix: &DbIndex, store: &dyn ImageStore, seed: u64) -> Hit {
        let q = unit(seed);
        ix.search(store, &[&q], 3, 40).unwrap().0[0]
    }

    #[test]
    fn promotes_at_the_threshold_and_reloads_the_snapshot_in_step_with_the_store() {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(SqliteStore::open(dir.path()).unwrap());
        let db = DbRef::new("tenant/x", "big");
        store.create_db(db).unwrap();
        let ids = store_add(&store, db, 0..120);

        // Below the threshold: exact. Add through the index as the service does.
        let indexes = Arc::new(DbIndexes::open(store.clone(), settings(dir.path(), 150)).unwrap());
        let ix = indexes.get("tenant/x", "big").unwrap();
        assert!(!ix.is_ann());
        for (i, id) in (120..160).zip(store_add(&store, db, 120..160)) {
            ix.add(id, &unit(i)).unwrap();
        }
        ix.promote(store.as_ref(), indexes.settings()).unwrap();
        assert!(ix.is_ann());
        assert_eq!(ix.len(), 160);
        let meta = read_meta(&ix.dir).unwrap();
        assert_eq!(meta.count, 160);
        // Re-ranked: the exact copy first, with the exact cosine (score 10).
        let hit = top(&ix, store.as_ref(), 7);
        assert_eq!(hit.id, ids[7]);
        assert_eq!(crate::index::score(hit.cosine), 10.0);

        // After the snapshot, the store moves on without the index (a crash): 10 adds,
        // one entity deleted.
        let later = store_add(&store, db, 160..170);
        let gone = store.delete_entity(db, "e3").unwrap();
        assert_eq!(gone, vec![ids[3]]);
        drop((ix, indexes));

        let indexes = DbIndexes::open(store.clone(), settings(dir.path(), 150)).unwrap();
        let ix = indexes.get("tenant/x", "big").unwrap();
        assert!(ix.is_ann());
        assert_eq!(ix.len(), 169);
        assert_eq!(top(&ix, store.as_ref(), 165).id, later[5]);
        assert_ne!(top(&ix, store.as_ref(), 3).id, ids[3]);
        // The next snapshot records the repaired state; a clean restart changes nothing.
        indexes.snapshot_all();
        assert_eq!(read_meta(&ix.dir).unwrap().count, 169);
        assert_eq!(read_meta(&ix.dir).unwrap().generation, 2);
        drop((ix, indexes));
        let indexes = DbIndexes::open(store.clone(), settings(dir.path(), 150)).unwrap();
        assert_eq!(indexes.get("tenant/x", "big").unwrap().len(), 169);
    }

    #[test]
    fn an_unusable_snapshot_is_rebuilt_from_the_store() {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(SqliteStore::open(dir.path()).unwrap());
        let db = DbRef::new("t", "big");
        store.create_db(db).unwrap();
        let ids = store_add(&store, db, 0..80);
        let open = || DbIndexes::open(store.clone(), settings(dir.path(), 50)).unwrap();
        let snap = {
            // No snapshot yet: built from the store and saved.
            let indexes = open();
            let ix = indexes.get("t", "big").unwrap();
            assert!(ix.is_ann());
            assert_eq!(ix.len(), 80);
            ix.dir.clone()
        };
        // A truncated graph file.
        let graph = snap.join("graph-1.usearch");
        let len = std::fs::metadata(&graph).unwrap().len();
        std::fs::OpenOptions::new()
            .write(true)
            .open(&graph)
            .unwrap()
            .set_len(len / 2)
            .unwrap();
        let indexes = open();
        let ix = indexes.get("t", "big").unwrap();
        assert_eq!(ix.len(), 80);
        assert_eq!(top(&ix, store.as_ref(), 11).id, ids[11]);
        assert_eq!(read_meta(&snap).unwrap().generation, 2);
        drop((ix, indexes));
        // Garbage in the meta file.
        std::fs::write(snap.join(META_FILE), b"{not json").unwrap();
        assert_eq!(open().get("t", "big").unwrap().len(), 80);
    }

    #[test]
    fn a_recreated_database_does_not_inherit_the_old_snapshot() {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(SqliteStore::open(dir.path()).unwrap());
        let db = DbRef::new("t", "big");
        store.create_db(db).unwrap();
        store_add(&store, db, 0..60);
        let stale = {
            let indexes = DbIndexes::open(store.clone(), settings(dir.path(), 50)).unwrap();
            let ix = indexes.get("t", "big").unwrap();
            assert!(ix.is_ann());
            ix.dir.clone()
        };
        let meta = std::fs::read(stale.join(META_FILE)).unwrap();
        store.delete_db(db).unwrap();
        std::thread::sleep(Duration::from_millis(5));
        store.create_db(db).unwrap();
        let ids = store_add(&store, db, 100..160);
        // The old snapshot put back, as a crash between the two could leave it.
        std::fs::create_dir_all(&stale).unwrap();
        std::fs::write(stale.join(META_FILE), meta).unwrap();
        let indexes = DbIndexes::open(store.clone(), settings(dir.path(), 50)).unwrap();
        let ix = indexes.get("t", "big").unwrap();
        assert_eq!(ix.len(), 60);
        assert_eq!(top(&ix, store.as_ref(), 100).id, ids[0]);
        // Deleting the database removes its snapshot; orphans are swept at open.
        indexes.deleted("t", "big");
        assert!(!stale.exists());
    }
}
