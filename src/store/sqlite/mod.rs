//! The SQLite backend of [`ImageStore`]: one file, `imgsearch.db`, in the data directory.
//!
//! Not here: anything the API sees as SQLite. Callers hold an `Arc<dyn ImageStore>` (or a
//! `SqliteStore`) and speak only the types of `store`; errors arrive as [`StoreError`].
//!
//! # Durability (fsync policy)
//! The database runs in WAL mode with `synchronous=FULL`: every committed transaction is
//! appended to `imgsearch.db-wal` and the WAL is fsynced before `COMMIT` returns, so a write
//! that returned `Ok` survives `kill -9` and power loss (on a disk that honours flushes).
//! One fsync per transaction, and adds use group commit: a committer thread takes all adds
//! queued while the previous commit was being fsynced into one transaction, each in its own
//! savepoint (a failing add is undone alone), and answers the callers only after `COMMIT`.
//! An add that arrives alone is committed at once. `add_images` puts a whole batch in one
//! transaction too. Checkpoints (WAL → main file) run automatically every ~1000 pages and also
//! fsync. Opening after a crash runs no repair: SQLite replays or ignores the WAL tail itself.
//!
//! # Concurrency
//! One writer connection behind a mutex (SQLite allows one writer anyway; serialising in the
//! process avoids busy-waiting), used by the committer thread for adds and by the callers for
//! the other writes, and a small pool of read-only connections, which WAL lets read their own
//! consistent snapshot while a write is in progress. `DataId`s are generated while the writer
//! mutex is held, so id order is commit order: a keyset-paging reader never sees a new image
//! appear *behind* its cursor. One process per data directory: a second process would have its
//! own id generator (a clash fails the add on the primary key; nothing is lost).
//!
//! # Schema
//! Versioned with `PRAGMA user_version`; [`MIGRATIONS`] is applied in order in one transaction
//! at open. A file from a newer version is refused, untouched. Embeddings are little-endian f32
//! BLOBs in their own table, thumbnails in another, so listing reads neither.

pub mod backup;
pub(super) mod committer;
mod duplicate_marks;
mod filter_sql;
mod image_store;
pub(super) mod rows;
mod schema;
mod uploads;

use std::path::{Path, PathBuf};
use std::sync::{mpsc, Arc, Mutex, MutexGuard, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rusqlite::{Connection, ErrorCode, OpenFlags};

use super::{DataId, StoreError, StoreOptions};
use committer::{run_committer, PendingAdd};
use schema::{check_version, configure_writer, migrate, seed_data_id};

/// The database file inside the data directory.
pub const DB_FILE_NAME: &str = "imgsearch.db";

/// How long a connection waits on a lock before failing with "database is locked"; only
/// reachable when something outside this process holds the file.
const BUSY_TIMEOUT: Duration = Duration::from_secs(10);

/// Idle read connections kept; more are opened on demand under load and closed afterwards.
const MAX_IDLE_READERS: usize = 4;

/// The SQLite-backed store. `Send + Sync`; share it in an `Arc`.
pub struct SqliteStore {
    path: PathBuf,
    options: StoreOptions,
    /// Shared with the committer thread; every write runs under this lock.
    writer: Arc<Mutex<Writer>>,
    /// Queue of the committer thread (group commit, see `add_images`); `None` only in `drop`.
    adds: Option<mpsc::Sender<PendingAdd>>,
    committer: Option<JoinHandle<()>>,
    idle_readers: Mutex<Vec<Connection>>,
}

struct Writer {
    conn: Connection,
    ids: DataIdGen,
}

impl std::fmt::Debug for SqliteStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqliteStore")
            .field("path", &self.path)
            .field("options", &self.options)
            .finish_non_exhaustive()
    }
}

impl Drop for SqliteStore {
    fn drop(&mut self) {
        // Closing the queue ends the committer once it has answered everything queued; wait
        // for it so that the file is closed when the store is gone.
        self.adds = None;
        if let Some(committer) = self.committer.take() {
            let _ = committer.join();
        }
    }
}

impl SqliteStore {
    /// Opens (creating if needed) `<data_dir>/imgsearch.db` with default options.
    pub fn open(data_dir: &Path) -> Result<Self, StoreError> {
        Self::open_with(data_dir, StoreOptions::default())
    }

    /// Opens (creating the directory and file if needed) and migrates the schema.
    /// Fails with `SchemaTooNew` for a file written by a newer version and `Corrupt` for a
    /// file that is not an imgsearch store.
    pub fn open_with(data_dir: &Path, options: StoreOptions) -> Result<Self, StoreError> {
        std::fs::create_dir_all(data_dir).map_err(|e| {
            StoreError::Io(format!(
                "cannot create data directory {}: {e}",
                data_dir.display()
            ))
        })?;
        let path = data_dir.join(DB_FILE_NAME);
        let mut conn = Connection::open_with_flags(
            &path,
            OpenFlags::SQLITE_OPEN_READ_WRITE
                | OpenFlags::SQLITE_OPEN_CREATE
                | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .map_err(|e| StoreError::Io(format!("cannot open {}: {e}", path.display())))?;
        conn.busy_timeout(BUSY_TIMEOUT)?;
        // Refuse a newer schema before changing anything in the file (even its journal mode).
        check_version(&conn)?;
        configure_writer(&conn)?;
        migrate(&mut conn)?;
        let last = seed_data_id(&conn)?;
        let writer = Arc::new(Mutex::new(Writer {
            conn,
            ids: DataIdGen { last },
        }));
        let (adds, queue) = mpsc::channel();
        let committer = {
            let writer = writer.clone();
            std::thread::Builder::new()
                .name("imgsearch-store-commit".into())
                .spawn(move || run_committer(&writer, &options, &queue))
                .map_err(|e| StoreError::Backend(format!("cannot start the commit thread: {e}")))?
        };
        Ok(SqliteStore {
            path,
            options,
            writer,
            adds: Some(adds),
            committer: Some(committer),
            idle_readers: Mutex::new(Vec::new()),
        })
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn writer(&self) -> MutexGuard<'_, Writer> {
        lock(&self.writer)
    }

    /// Runs `f` on a read-only connection from the pool (opening one when none is idle) and
    /// returns the connection to the pool afterwards.
    fn with_reader<T>(
        &self,
        f: impl FnOnce(&mut Connection) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let pooled = lock(&self.idle_readers).pop();
        let mut conn = match pooled {
            Some(conn) => conn,
            None => {
                let conn = Connection::open_with_flags(
                    &self.path,
                    OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
                )?;
                conn.busy_timeout(BUSY_TIMEOUT)?;
                conn
            }
        };
        let result = f(&mut conn);
        // A connection left inside a transaction (only after a bug) must not be reused.
        if conn.is_autocommit() {
            let mut idle = lock(&self.idle_readers);
            if idle.len() < MAX_IDLE_READERS {
                idle.push(conn);
            }
        }
        result
    }
}

/// Locks, ignoring poisoning: a panic while a lock was held left no half-done transaction
/// (rusqlite rolls back on drop) and no half-updated pool, so the data is good.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl From<rusqlite::Error> for StoreError {
    fn from(e: rusqlite::Error) -> Self {
        match e.sqlite_error_code() {
            Some(ErrorCode::DatabaseCorrupt | ErrorCode::NotADatabase) => {
                StoreError::Corrupt(e.to_string())
            }
            Some(ErrorCode::DiskFull) => StoreError::DiskFull(e.to_string()),
            Some(
                ErrorCode::SystemIoFailure
                | ErrorCode::CannotOpen
                | ErrorCode::PermissionDenied
                | ErrorCode::ReadOnly
                | ErrorCode::NoLargeFileSupport,
            ) => StoreError::Io(e.to_string()),
            _ => StoreError::Backend(e.to_string()),
        }
    }
}

/// Issues strictly increasing ids: the current time in microseconds, or one more than the
/// last id when the clock has not moved on (same microsecond) or went backwards.
#[derive(Debug)]
struct DataIdGen {
    last: u64,
}

impl DataIdGen {
    fn next(&mut self, now_micros: u64) -> Result<DataId, StoreError> {
        let candidate = now_micros.max(self.last.saturating_add(1));
        let id = DataId::from_u64(candidate)
            .ok_or_else(|| StoreError::Backend("the DataId space is exhausted".into()))?;
        self.last = candidate;
        Ok(id)
    }
}

fn now_micros() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_micros()).unwrap_or(u64::MAX))
}

fn now_millis() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

#[cfg(test)]
mod tests;
