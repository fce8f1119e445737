//! `DbIndexes`: the registry of every image database's index (`DbIndex`), by tenant and
//! name. Opens them all at start-up (sweeping snapshots of databases that no longer
//! exist), follows CreateImageDb/DeleteImageDb, promotes a database to the ANN index in the
//! background when it reaches the threshold, and writes changed snapshots every
//! `snapshot_every` and at shutdown.
//!
//! Not here: one index's reads, writes and start-up reconciliation (`service::db_index`).

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::{Arc, PoisonError, RwLock, Weak};
use std::time::{Duration, Instant};

use super::db_index::{open_db, DbIndex, IndexSettings};
use super::error::ServiceError;
use crate::index::snapshot;
use crate::store::{DbInfo, ImageStore};

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
            .map(|d| snapshot::snapshot_dir(&settings.dir, &d.tenant, &d.name))
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
        let ix = DbIndex::empty(info, &self.settings);
        let _ = std::fs::remove_dir_all(&ix.dir);
        let mut map = self.map.write().unwrap_or_else(PoisonError::into_inner);
        map.insert((info.tenant.clone(), info.name.clone()), Arc::new(ix));
    }

    /// Whether `ix` is still the index registered for its database (not deleted, not
    /// replaced by a database re-created under the same name).
    pub fn is_current(&self, ix: &Arc<DbIndex>) -> bool {
        self.get(&ix.tenant, &ix.name)
            .is_some_and(|current| Arc::ptr_eq(&current, ix))
    }

    /// Forgets the index of a database the store has just deleted, and its snapshot, unless
    /// a database of the same name was created meanwhile (then that one stays).
    pub fn deleted(&self, ix: &Arc<DbIndex>) {
        let removed = {
            let mut map = self.map.write().unwrap_or_else(PoisonError::into_inner);
            let key = (ix.tenant.clone(), ix.name.clone());
            match map.get(&key) {
                Some(current) if Arc::ptr_eq(current, ix) => map.remove(&key),
                _ => None,
            }
        };
        if let Some(ix) = removed {
            let _ = std::fs::remove_dir_all(&ix.dir);
        }
    }

    /// Every database's index.
    pub fn all(&self) -> Vec<Arc<DbIndex>> {
        let map = self.map.read().unwrap_or_else(PoisonError::into_inner);
        map.values().cloned().collect()
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

#[cfg(test)]
mod tests;
