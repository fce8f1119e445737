//! An online copy of the store file, for `imgsearch backup`: `VACUUM INTO` a new file through
//! a connection of its own. In WAL mode that reads one consistent snapshot (a single read
//! transaction) while the server's writer goes on, and it needs no lock the server holds.
//! Not here: the rest of a data directory (keys, index snapshots) and restoring
//! (`crate::backup`).

use std::path::Path;

use rusqlite::{Connection, OpenFlags};

use super::schema::check_version;
use super::{BUSY_TIMEOUT, DB_FILE_NAME};
use crate::store::StoreError;

/// What a copy holds, read back from the copy itself.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct StoreCopySummary {
    pub schema_version: i64,
    pub databases: u64,
    pub images: u64,
}

/// Copies `<data_dir>/imgsearch.db` as one consistent snapshot into `dest` (a path that must
/// not exist), fsyncs it and checks the copy (`quick_check`, counts). A server may be
/// running on `data_dir` and writing meanwhile: its writes after the snapshot's start are
/// not in the copy, and it is not slowed beyond sharing the disk.
pub fn copy_store_file(data_dir: &Path, dest: &Path) -> Result<StoreCopySummary, StoreError> {
    let source = data_dir.join(DB_FILE_NAME);
    if !source.is_file() {
        return Err(StoreError::Io(format!(
            "{} does not exist: is {} an imgsearch data directory?",
            source.display(),
            data_dir.display()
        )));
    }
    if dest.exists() {
        return Err(StoreError::Invalid(format!(
            "{} already exists; a copy never overwrites a file",
            dest.display()
        )));
    }
    // Read-write without CREATE: a read-only connection to a WAL database needs the `-shm`
    // file writable anyway, and this one writes nothing to the source.
    let conn = Connection::open_with_flags(
        &source,
        OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(|e| StoreError::Io(format!("cannot open {}: {e}", source.display())))?;
    conn.busy_timeout(BUSY_TIMEOUT)?;
    check_version(&conn)?;
    let dest_text = dest
        .to_str()
        .ok_or_else(|| StoreError::Invalid(format!("{} is not a UTF-8 path", dest.display())))?;
    conn.execute("VACUUM INTO ?1", [dest_text])
        .map_err(|e| StoreError::Io(format!("cannot write {}: {e}", dest.display())))?;
    drop(conn);
    std::fs::File::open(dest)
        .and_then(|f| f.sync_all())
        .map_err(|e| StoreError::Io(format!("cannot fsync {}: {e}", dest.display())))?;
    summarize_store_file(dest)
}

/// Checks a store file that no server is using (`quick_check`, ours, not newer than this
/// build) and counts what it holds.
pub fn summarize_store_file(path: &Path) -> Result<StoreCopySummary, StoreError> {
    let conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(|e| StoreError::Io(format!("cannot open {}: {e}", path.display())))?;
    check_version(&conn)?;
    let check: String = conn.query_row("PRAGMA quick_check", [], |r| r.get(0))?;
    if check != "ok" {
        return Err(StoreError::Corrupt(format!(
            "{} fails SQLite's quick_check: {check}",
            path.display()
        )));
    }
    let schema_version: i64 = conn.query_row("PRAGMA user_version", [], |r| r.get(0))?;
    let count = |table: &str| -> Result<u64, StoreError> {
        let n: i64 = conn.query_row(&format!("SELECT count(*) FROM {table}"), [], |r| r.get(0))?;
        Ok(n.max(0) as u64)
    };
    let (databases, images) = if schema_version == 0 {
        (0, 0)
    } else {
        (count("image_dbs")?, count("images")?)
    };
    Ok(StoreCopySummary {
        schema_version,
        databases,
        images,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{DbRef, ImageStore, NewImage, SqliteStore};

    fn add(store: &SqliteStore, db: DbRef<'_>, entity: &str) {
        store
            .add_image(
                db,
                &NewImage {
                    entity_id: entity,
                    extra_data: "",
                    image_url: "",
                    embedding: &[0.5; 4],
                    copy_embedding: None,
                    thumbnail: Some(&[1, 2, 3]),
                    attributes: &crate::store::Attributes::NONE,
                },
            )
            .unwrap();
    }

    #[test]
    fn copies_a_store_in_use_and_reads_it_back() {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        let store = SqliteStore::open(&data).unwrap();
        let db = DbRef::new("AKID", "shop");
        store.create_db(db).unwrap();
        for i in 0..5 {
            add(&store, db, &format!("e{i}"));
        }
        // The server keeps its connections open while the copy is taken.
        let dest = dir.path().join("copy.db");
        let summary = copy_store_file(&data, &dest).unwrap();
        assert_eq!(
            summary,
            StoreCopySummary {
                schema_version: super::super::schema::MIGRATIONS.len() as i64,
                databases: 1,
                images: 5
            }
        );
        add(&store, db, "after");
        // The copy opens as a store (identity and version kept by VACUUM INTO).
        let copy_dir = dir.path().join("restored");
        std::fs::create_dir(&copy_dir).unwrap();
        std::fs::rename(&dest, copy_dir.join(DB_FILE_NAME)).unwrap();
        let restored = SqliteStore::open(&copy_dir).unwrap();
        assert_eq!(restored.list_dbs("AKID").unwrap().len(), 1);
        assert_eq!(
            restored
                .list_ids(db, crate::store::Descriptor::Semantic)
                .unwrap()
                .len(),
            5
        );
    }

    #[test]
    fn refuses_a_missing_source_an_existing_destination_and_a_foreign_file() {
        let dir = tempfile::tempdir().unwrap();
        let err = copy_store_file(&dir.path().join("nothing"), &dir.path().join("c.db"));
        assert!(matches!(err, Err(StoreError::Io(m)) if m.contains("data directory")));

        let data = dir.path().join("data");
        drop(SqliteStore::open(&data).unwrap());
        let taken = dir.path().join("taken.db");
        std::fs::write(&taken, b"x").unwrap();
        let err = copy_store_file(&data, &taken);
        assert!(matches!(err, Err(StoreError::Invalid(m)) if m.contains("never overwrites")));
        assert_eq!(std::fs::read(&taken).unwrap(), b"x");

        let foreign = dir.path().join("foreign.db");
        Connection::open(&foreign)
            .unwrap()
            .execute_batch("CREATE TABLE t(x)")
            .unwrap();
        assert!(matches!(
            summarize_store_file(&foreign),
            Err(StoreError::Corrupt(_))
        ));
    }
}
