//! The on-disk format of an ANN index snapshot, one directory per database: generation n's
//! graph (`graph-n.hnsw` + its duplicates file) and ids (`ids-n.u64`, ascending
//! little-endian u64), made current by an atomic rename of `snapshot.json`
//! ([`SnapshotMeta`]). A crash at any point leaves the previous or the new generation
//! readable.
//!
//! Not here: when snapshots are taken, or reconciling one with the store at start-up
//! (`service::db_index`).

use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::ann::{AnnError, AnnIndex, AnnOptions};
use crate::store::DataId;

/// Why a snapshot could not be written.
#[derive(Debug, thiserror::Error)]
pub enum SnapshotError {
    #[error("{0}: {1}")]
    Io(&'static str, #[source] std::io::Error),
    #[error("saving the graph: {0}")]
    Graph(#[from] AnnError),
    #[error("encoding the snapshot meta file: {0}")]
    Meta(String),
}

/// Whether `dir` holds a current snapshot.
pub fn exists(dir: &Path) -> bool {
    dir.join(META_FILE).exists()
}

pub const META_FILE: &str = "snapshot.json";
const SNAPSHOT_FORMAT: u32 = 2;

/// What `snapshot.json` says about the graph and id files next to it.
#[derive(Debug, Serialize, Deserialize, PartialEq)]
pub struct SnapshotMeta {
    pub format: u32,
    pub generation: u64,
    /// The database's creation time: a snapshot of a deleted and re-created namesake is
    /// not this database's.
    pub db_created_at: i64,
    pub dim: usize,
    pub count: usize,
    pub connectivity: usize,
    pub expansion_add: usize,
}

/// One directory per database: hex of the tenant (any string) + the name ([a-z0-9_]).
pub fn snapshot_dir(root: &Path, tenant: &str, name: &str) -> PathBuf {
    let hex: String = tenant.bytes().map(|b| format!("{b:02x}")).collect();
    root.join(format!("{hex}.{name}"))
}

/// Writes generation n+1 (graph, ids, then the meta file by atomic rename, each fsynced),
/// then deletes older generations. A crash at any point leaves the previous generation
/// or the new one readable.
pub fn write_snapshot(
    dir: &Path,
    db_created_at: i64,
    ann: &AnnIndex,
    ids: &[DataId],
) -> Result<(), SnapshotError> {
    let io = |what: &'static str, e: std::io::Error| SnapshotError::Io(what, e);
    std::fs::create_dir_all(dir).map_err(|e| io("creating the snapshot directory", e))?;
    let generation = read_meta(dir).map_or(1, |m| m.generation + 1);
    let graph = dir.join(format!("graph-{generation}.hnsw"));
    let keys = dir.join(format!("ids-{generation}.u64"));
    ann.save(&graph)?;
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
    let json = serde_json::to_vec(&meta).map_err(|e| SnapshotError::Meta(e.to_string()))?;
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
                || name.starts_with(&format!("graph-{generation}.hnsw"))
                || name == format!("ids-{generation}.u64");
            if !current {
                let _ = std::fs::remove_file(e.path());
            }
        }
    }
    Ok(())
}

pub fn read_meta(dir: &Path) -> Result<SnapshotMeta, String> {
    let bytes = std::fs::read(dir.join(META_FILE)).map_err(|e| format!("{META_FILE}: {e}"))?;
    serde_json::from_slice(&bytes).map_err(|e| format!("{META_FILE}: {e}"))
}

/// Loads the current generation, checking that it belongs to the database created at
/// `db_created_at` and was built with `options`; the error says why it cannot be used.
pub fn read_snapshot(
    dir: &Path,
    db_created_at: i64,
    options: AnnOptions,
) -> Result<(AnnIndex, Vec<DataId>), String> {
    let meta = read_meta(dir)?;
    if meta.format != SNAPSHOT_FORMAT {
        return Err(format!(
            "snapshot format {} is not {SNAPSHOT_FORMAT}",
            meta.format
        ));
    }
    if meta.db_created_at != db_created_at {
        return Err("the snapshot is of an earlier database of the same name".into());
    }
    if meta.connectivity != options.connectivity || meta.expansion_add != options.expansion_add {
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
    let graph = dir.join(format!("graph-{}.hnsw", meta.generation));
    let ann = AnnIndex::load(&graph, meta.dim, options).map_err(|e| e.to_string())?;
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
