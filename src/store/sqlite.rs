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

use std::path::{Path, PathBuf};
use std::sync::{mpsc, Arc, Mutex, MutexGuard, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rusqlite::types::Value;
use rusqlite::{
    params, params_from_iter, Connection, ErrorCode, OpenFlags, OptionalExtension, Row,
    TransactionBehavior,
};

use super::{
    is_valid_db_name, DataId, DbInfo, DbRef, EmbeddingSet, ImagePage, ImageRecord, ImageStore,
    ListQuery, NewImage, Order, StoreError, StoreOptions,
};

/// The database file inside the data directory.
pub const DB_FILE_NAME: &str = "imgsearch.db";

/// Marks the file as ours (`PRAGMA application_id`, "imgs"), so that pointing the server at
/// some other SQLite file fails clearly instead of migrating it.
const APPLICATION_ID: i64 = 0x696d_6773;

/// How long a connection waits on a lock before failing with "database is locked"; only
/// reachable when something outside this process holds the file.
const BUSY_TIMEOUT: Duration = Duration::from_secs(10);

/// Idle read connections kept; more are opened on demand under load and closed afterwards.
const MAX_IDLE_READERS: usize = 4;

/// Truncate the WAL back to this size after a checkpoint so that it does not stay at its
/// high-water mark forever.
const JOURNAL_SIZE_LIMIT: i64 = 64 << 20;

/// `store_meta` key of the highest `DataId` ever issued by a transaction that deleted images:
/// with `MAX(images.data_id)` it seeds the generator, so deleting the newest images and
/// restarting with the clock stepped back still never reissues an id.
const DATA_ID_FLOOR_KEY: &str = "data_id_floor";

/// Schema steps in order; step `i` brings `user_version` from `i` to `i + 1`. Append only:
/// never edit a released step, add a new one.
const MIGRATIONS: &[&str] = &[
    // 1: initial schema.
    "CREATE TABLE image_dbs (
        id          INTEGER PRIMARY KEY,
        tenant      TEXT NOT NULL,
        name        TEXT NOT NULL,
        created_at  INTEGER NOT NULL,
        image_count INTEGER NOT NULL DEFAULT 0,
        dim         INTEGER,
        UNIQUE (tenant, name)
    );
    CREATE TABLE images (
        data_id    INTEGER PRIMARY KEY,
        db_id      INTEGER NOT NULL REFERENCES image_dbs(id) ON DELETE CASCADE,
        entity_id  TEXT NOT NULL,
        extra_data TEXT NOT NULL,
        image_url  TEXT NOT NULL,
        created_at INTEGER NOT NULL,
        updated_at INTEGER NOT NULL
    );
    -- Listing a db in data_id order. data_id is the rowid, which every index entry ends
    -- with, so this is an index on (db_id, data_id).
    CREATE INDEX images_by_db ON images(db_id);
    -- Prefix filters, prefix counts and DeleteImage by entity; (db_id, entity_id, data_id).
    CREATE INDEX images_by_entity ON images(db_id, entity_id);
    CREATE TABLE image_vectors (
        data_id INTEGER PRIMARY KEY REFERENCES images(data_id) ON DELETE CASCADE,
        vec     BLOB NOT NULL
    );
    CREATE TABLE image_thumbnails (
        data_id INTEGER PRIMARY KEY REFERENCES images(data_id) ON DELETE CASCADE,
        jpeg    BLOB NOT NULL
    );
    CREATE TABLE store_meta (
        key   TEXT PRIMARY KEY,
        value INTEGER NOT NULL
    ) WITHOUT ROWID;",
];

const IMAGE_COLUMNS: &str = "data_id, entity_id, extra_data, image_url, created_at, updated_at";

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
            Some(
                ErrorCode::DiskFull
                | ErrorCode::SystemIoFailure
                | ErrorCode::CannotOpen
                | ErrorCode::PermissionDenied
                | ErrorCode::ReadOnly
                | ErrorCode::NoLargeFileSupport,
            ) => StoreError::Io(e.to_string()),
            _ => StoreError::Backend(e.to_string()),
        }
    }
}

fn check_version(conn: &Connection) -> Result<(), StoreError> {
    let version: i64 = conn.query_row("PRAGMA user_version", [], |r| r.get(0))?;
    let supported = MIGRATIONS.len() as i64;
    if version > supported {
        return Err(StoreError::SchemaTooNew {
            found: version,
            supported,
        });
    }
    let app_id: i64 = conn.query_row("PRAGMA application_id", [], |r| r.get(0))?;
    let objects: i64 = conn.query_row("SELECT count(*) FROM sqlite_schema", [], |r| r.get(0))?;
    let ours = app_id == APPLICATION_ID || (app_id == 0 && version == 0 && objects == 0);
    if !ours {
        return Err(StoreError::Corrupt(
            "the database file exists but is not an imgsearch store".into(),
        ));
    }
    Ok(())
}

fn configure_writer(conn: &Connection) -> Result<(), StoreError> {
    let mode: String = conn.query_row("PRAGMA journal_mode=WAL", [], |r| r.get(0))?;
    if !mode.eq_ignore_ascii_case("wal") {
        return Err(StoreError::Backend(format!(
            "cannot put the store in WAL mode (it stays {mode:?}); is the data directory on a \
             local file system?"
        )));
    }
    conn.execute_batch(&format!(
        "PRAGMA synchronous=FULL; PRAGMA foreign_keys=ON; PRAGMA journal_size_limit={JOURNAL_SIZE_LIMIT};"
    ))?;
    // Both pragmas are silently ignored in some situations; durability and cascading deletes
    // depend on them, so check rather than trust.
    let sync: i64 = conn.query_row("PRAGMA synchronous", [], |r| r.get(0))?;
    let fk: i64 = conn.query_row("PRAGMA foreign_keys", [], |r| r.get(0))?;
    if sync != 2 || fk != 1 {
        return Err(StoreError::Backend(format!(
            "store settings did not apply (synchronous={sync}, foreign_keys={fk})"
        )));
    }
    Ok(())
}

fn migrate(conn: &mut Connection) -> Result<(), StoreError> {
    let supported = MIGRATIONS.len() as i64;
    let version: i64 = conn.query_row("PRAGMA user_version", [], |r| r.get(0))?;
    if version == supported {
        return Ok(());
    }
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    // Re-read under the write lock: another process may have migrated in between.
    let version: i64 = tx.query_row("PRAGMA user_version", [], |r| r.get(0))?;
    if version > supported {
        return Err(StoreError::SchemaTooNew {
            found: version,
            supported,
        });
    }
    let done = usize::try_from(version)
        .map_err(|_| StoreError::Corrupt(format!("negative schema version {version}")))?;
    for (step, sql) in MIGRATIONS.iter().enumerate().skip(done) {
        tx.execute_batch(sql)?;
        // user_version lives in the file header, which the transaction covers: a crash mid-
        // migration leaves the old version and none of the step.
        tx.pragma_update(None, "user_version", step as i64 + 1)?;
    }
    tx.pragma_update(None, "application_id", APPLICATION_ID)?;
    tx.commit()?;
    Ok(())
}

fn seed_data_id(conn: &Connection) -> Result<u64, StoreError> {
    let last: i64 = conn.query_row(
        "SELECT max(coalesce((SELECT max(data_id) FROM images), 0),
                    coalesce((SELECT value FROM store_meta WHERE key = ?1), 0))",
        [DATA_ID_FLOOR_KEY],
        |r| r.get(0),
    )?;
    u64::try_from(last).map_err(|_| StoreError::Corrupt(format!("negative data id {last}")))
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

/// `DataId` guarantees the value fits an i64.
fn sql_id(id: DataId) -> i64 {
    i64::try_from(id.as_u64()).unwrap_or(i64::MAX)
}

fn data_id_from_sql(v: i64) -> Result<DataId, StoreError> {
    u64::try_from(v)
        .ok()
        .and_then(DataId::from_u64)
        .ok_or_else(|| StoreError::Corrupt(format!("invalid stored data id {v}")))
}

fn count_from_sql(v: i64, what: &str) -> Result<u64, StoreError> {
    u64::try_from(v).map_err(|_| StoreError::Corrupt(format!("negative {what} {v}")))
}

/// The smallest string greater than every string that starts with `prefix`, or `None` when
/// there is none (all characters are `char::MAX`). SQLite compares TEXT bytewise and UTF-8
/// byte order is code point order, so `prefix <= s < successor` is exactly "s starts with
/// prefix", with no special meaning for `_` or `%` (unlike LIKE) and usable on the index.
fn prefix_successor(prefix: &str) -> Option<String> {
    let mut chars: Vec<char> = prefix.chars().collect();
    while let Some(last) = chars.pop() {
        let mut next = u32::from(last) + 1;
        if next == 0xD800 {
            next = 0xE000; // skip the surrogate range, which no char can hold
        }
        if let Some(c) = char::from_u32(next) {
            chars.push(c);
            return Some(chars.into_iter().collect());
        }
    }
    None
}

struct DbRow {
    id: i64,
    info: DbInfo,
}

fn db_row_from(row: &Row<'_>) -> rusqlite::Result<(i64, String, String, i64, i64, Option<i64>)> {
    Ok((
        row.get(0)?,
        row.get(1)?,
        row.get(2)?,
        row.get(3)?,
        row.get(4)?,
        row.get(5)?,
    ))
}

fn db_row_convert(raw: (i64, String, String, i64, i64, Option<i64>)) -> Result<DbRow, StoreError> {
    let (id, tenant, name, created_at, count, dim) = raw;
    let dim = dim
        .map(|d| {
            usize::try_from(d)
                .ok()
                .filter(|&d| d > 0)
                .ok_or_else(|| StoreError::Corrupt(format!("invalid dimension {d} of {name:?}")))
        })
        .transpose()?;
    Ok(DbRow {
        id,
        info: DbInfo {
            image_count: count_from_sql(count, "image count")?,
            tenant,
            name,
            created_at,
            dim,
        },
    })
}

const DB_COLUMNS: &str = "id, tenant, name, created_at, image_count, dim";

fn find_db(conn: &Connection, db: DbRef<'_>) -> Result<Option<DbRow>, StoreError> {
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT {DB_COLUMNS} FROM image_dbs WHERE tenant = ?1 AND name = ?2"
    ))?;
    let raw = stmt
        .query_row(params![db.tenant, db.name], db_row_from)
        .optional()?;
    raw.map(db_row_convert).transpose()
}

fn require_db(conn: &Connection, db: DbRef<'_>) -> Result<DbRow, StoreError> {
    find_db(conn, db)?.ok_or_else(|| StoreError::DbNotFound(db.name.to_owned()))
}

fn list_dbs_where(
    conn: &Connection,
    filter: &str,
    args: &[&dyn rusqlite::ToSql],
) -> Result<Vec<DbInfo>, StoreError> {
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT {DB_COLUMNS} FROM image_dbs {filter} ORDER BY tenant, name"
    ))?;
    let raws = stmt
        .query_map(args, db_row_from)?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    raws.into_iter()
        .map(|raw| db_row_convert(raw).map(|r| r.info))
        .collect()
}

type RawImage = (i64, String, String, String, i64, i64);

fn image_from(row: &Row<'_>) -> rusqlite::Result<RawImage> {
    Ok((
        row.get(0)?,
        row.get(1)?,
        row.get(2)?,
        row.get(3)?,
        row.get(4)?,
        row.get(5)?,
    ))
}

fn image_convert(raw: RawImage) -> Result<ImageRecord, StoreError> {
    let (data_id, entity_id, extra_data, image_url, created_at, updated_at) = raw;
    Ok(ImageRecord {
        data_id: data_id_from_sql(data_id)?,
        entity_id,
        extra_data,
        image_url,
        created_at,
        updated_at,
    })
}

/// Decodes a little-endian f32 blob into `out` (cleared first), checking its size.
fn decode_embedding(
    blob: &[u8],
    expected_dim: Option<usize>,
    out: &mut Vec<f32>,
) -> Result<(), String> {
    if blob.is_empty() || !blob.len().is_multiple_of(4) {
        return Err(format!(
            "embedding blob of {} bytes is not a whole number of f32s",
            blob.len()
        ));
    }
    let dim = blob.len() / 4;
    if let Some(expected) = expected_dim {
        if dim != expected {
            return Err(format!(
                "embedding has {dim} dimensions, the database {expected}"
            ));
        }
    }
    out.clear();
    out.extend(
        blob.chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])),
    );
    Ok(())
}

fn encode_embedding(v: &[f32], out: &mut Vec<u8>) {
    out.clear();
    out.reserve(v.len() * 4);
    for x in v {
        out.extend_from_slice(&x.to_le_bytes());
    }
}

/// Records the highest id issued so far as a floor for the generator after a restart; called
/// in transactions that delete images, which could otherwise remove the max stored id.
fn raise_data_id_floor(conn: &Connection, ids: &DataIdGen) -> Result<(), StoreError> {
    let last = i64::try_from(ids.last).unwrap_or(i64::MAX);
    conn.prepare_cached(
        "INSERT INTO store_meta(key, value) VALUES (?1, ?2)
         ON CONFLICT(key) DO UPDATE SET value = max(value, excluded.value)",
    )?
    .execute(params![DATA_ID_FLOOR_KEY, last])?;
    Ok(())
}

/// Checks what needs no database: non-empty, finite vectors of one length.
fn check_embeddings(db: DbRef<'_>, images: &[NewImage<'_>]) -> Result<(), StoreError> {
    let dim = images.first().map_or(0, |i| i.embedding.len());
    for image in images {
        if image.embedding.is_empty() {
            return Err(StoreError::Invalid("an embedding is empty".into()));
        }
        if image.embedding.len() != dim {
            return Err(StoreError::DimensionMismatch {
                db: db.name.to_owned(),
                expected: dim,
                got: image.embedding.len(),
            });
        }
        if !image.embedding.iter().all(|x| x.is_finite()) {
            return Err(StoreError::Invalid(
                "an embedding holds a NaN or infinite value".into(),
            ));
        }
    }
    Ok(())
}

/// One caller's `add_images`, waiting in the group-commit queue. Owns copies of the images
/// (about 5 kB per 1280-d vector plus the thumbnail) because the committer thread, not the
/// caller, writes them.
struct PendingAdd {
    tenant: String,
    name: String,
    images: Vec<OwnedImage>,
    reply: mpsc::Sender<Result<Vec<ImageRecord>, StoreError>>,
}

struct OwnedImage {
    entity_id: String,
    extra_data: String,
    image_url: String,
    embedding: Vec<f32>,
    thumbnail: Option<Vec<u8>>,
}

impl From<&NewImage<'_>> for OwnedImage {
    fn from(i: &NewImage<'_>) -> Self {
        OwnedImage {
            entity_id: i.entity_id.to_owned(),
            extra_data: i.extra_data.to_owned(),
            image_url: i.image_url.to_owned(),
            embedding: i.embedding.to_vec(),
            thumbnail: i.thumbnail.map(<[u8]>::to_vec),
        }
    }
}

impl OwnedImage {
    fn as_new(&self) -> NewImage<'_> {
        NewImage {
            entity_id: &self.entity_id,
            extra_data: &self.extra_data,
            image_url: &self.image_url,
            embedding: &self.embedding,
            thumbnail: self.thumbnail.as_deref(),
        }
    }
}

/// Adds one group commits at most, bounding a transaction's size and a caller's wait.
const MAX_GROUP_IMAGES: usize = 256;

/// The committer thread: waits for an add, gathers whatever else is queued, commits the group.
/// Alone, an add is committed at once (no added latency); under load, the adds that arrive
/// during one fsync go together in the next.
fn run_committer(
    writer: &Mutex<Writer>,
    options: &StoreOptions,
    queue: &mpsc::Receiver<PendingAdd>,
) {
    while let Ok(first) = queue.recv() {
        let mut images = first.images.len();
        let mut group = vec![first];
        let mut writer = lock(writer);
        // Adds queued meanwhile, also those that came while we waited for the writer lock.
        while images < MAX_GROUP_IMAGES {
            let Ok(next) = queue.try_recv() else { break };
            images += next.images.len();
            group.push(next);
        }
        // A panic (a bug) must not stop all future adds: its group's callers get an error
        // (their reply senders are dropped) and the thread goes on.
        let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            commit_group(&mut writer, options, group)
        }));
    }
}

/// Commits a group of queued adds in one transaction and answers each caller. Each add of a
/// group of several runs inside its own savepoint, so one that fails (no such database,
/// wrong dimension, full) is undone alone and the others still commit. Replies are sent only
/// after the commit, so nobody hears `Ok` before the group is durable.
fn commit_group(writer: &mut Writer, options: &StoreOptions, group: Vec<PendingAdd>) {
    let Writer { conn, ids } = writer;
    let isolate = group.len() > 1;
    let outcome = (|| -> Result<Vec<Result<Vec<ImageRecord>, StoreError>>, StoreError> {
        let mut tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let mut results = Vec::with_capacity(group.len());
        for pending in &group {
            let db = DbRef::new(&pending.tenant, &pending.name);
            let images: Vec<NewImage<'_>> = pending.images.iter().map(OwnedImage::as_new).collect();
            if !isolate {
                // A group of one needs no savepoint: its error rolls back the transaction.
                results.push(Ok(insert_images(&tx, ids, options, db, &images)?));
                continue;
            }
            let sp = tx.savepoint()?;
            match insert_images(&sp, ids, options, db, &images) {
                Ok(records) => {
                    sp.commit()?;
                    results.push(Ok(records));
                }
                Err(e) => {
                    // Rolls back to the savepoint and releases it; if even that fails (the
                    // error aborted the whole transaction), the group fails as a whole.
                    sp.finish()?;
                    results.push(Err(e));
                }
            }
        }
        tx.commit()?;
        Ok(results)
    })();
    match outcome {
        Ok(results) => {
            for (pending, result) in group.into_iter().zip(results) {
                // A caller that gave up waiting is no error.
                let _ = pending.reply.send(result);
            }
        }
        Err(e) => {
            for pending in group {
                let _ = pending.reply.send(Err(e.clone()));
            }
        }
    }
}

/// Inserts one caller's images inside the current transaction or savepoint.
fn insert_images(
    conn: &Connection,
    ids: &mut DataIdGen,
    options: &StoreOptions,
    db: DbRef<'_>,
    images: &[NewImage<'_>],
) -> Result<Vec<ImageRecord>, StoreError> {
    let row = require_db(conn, db)?;
    let Some(first) = images.first() else {
        return Ok(Vec::new());
    };
    let dim = first.embedding.len();
    if let Some(expected) = row.info.dim {
        if expected != dim {
            return Err(StoreError::DimensionMismatch {
                db: db.name.to_owned(),
                expected,
                got: dim,
            });
        }
    }
    let added = images.len() as u64;
    if let Some(limit) = options.max_images_per_db {
        if row.info.image_count.saturating_add(added) > limit {
            return Err(StoreError::DbFull {
                db: db.name.to_owned(),
                limit,
            });
        }
    }
    let mut insert_image = conn.prepare_cached(
        "INSERT INTO images(data_id, db_id, entity_id, extra_data, image_url,
                            created_at, updated_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?6)",
    )?;
    let mut insert_vec =
        conn.prepare_cached("INSERT INTO image_vectors(data_id, vec) VALUES (?1, ?2)")?;
    let mut insert_thumb =
        conn.prepare_cached("INSERT INTO image_thumbnails(data_id, jpeg) VALUES (?1, ?2)")?;
    let mut records = Vec::with_capacity(images.len());
    let mut blob = Vec::new();
    for image in images {
        let data_id = ids.next(now_micros())?;
        let created_at = now_millis();
        let key = sql_id(data_id);
        insert_image.execute(params![
            key,
            row.id,
            image.entity_id,
            image.extra_data,
            image.image_url,
            created_at
        ])?;
        encode_embedding(image.embedding, &mut blob);
        insert_vec.execute(params![key, blob])?;
        if let Some(jpeg) = image.thumbnail {
            insert_thumb.execute(params![key, jpeg])?;
        }
        records.push(ImageRecord {
            data_id,
            entity_id: image.entity_id.to_owned(),
            extra_data: image.extra_data.to_owned(),
            image_url: image.image_url.to_owned(),
            created_at,
            updated_at: created_at,
        });
    }
    conn.prepare_cached(
        "UPDATE image_dbs SET image_count = image_count + ?1, dim = ?2 WHERE id = ?3",
    )?
    .execute(params![added as i64, dim as i64, row.id])?;
    Ok(records)
}

impl ImageStore for SqliteStore {
    fn create_db(&self, db: DbRef<'_>) -> Result<DbInfo, StoreError> {
        if !is_valid_db_name(db.name) {
            return Err(StoreError::Invalid(format!(
                "database name {:?} must be 2-64 lower-case letters, digits or '_'",
                db.name
            )));
        }
        let w = self.writer();
        let created_at = now_millis();
        let inserted = w
            .conn
            .prepare_cached(
                "INSERT INTO image_dbs(tenant, name, created_at) VALUES (?1, ?2, ?3)
             ON CONFLICT(tenant, name) DO NOTHING",
            )?
            .execute(params![db.tenant, db.name, created_at])?;
        if inserted == 0 {
            return Err(StoreError::DbExists(db.name.to_owned()));
        }
        Ok(DbInfo {
            tenant: db.tenant.to_owned(),
            name: db.name.to_owned(),
            created_at,
            image_count: 0,
            dim: None,
        })
    }

    fn get_db(&self, db: DbRef<'_>) -> Result<Option<DbInfo>, StoreError> {
        self.with_reader(|conn| Ok(find_db(conn, db)?.map(|row| row.info)))
    }

    fn list_dbs(&self, tenant: &str) -> Result<Vec<DbInfo>, StoreError> {
        self.with_reader(|conn| list_dbs_where(conn, "WHERE tenant = ?1", &[&tenant]))
    }

    fn list_all_dbs(&self) -> Result<Vec<DbInfo>, StoreError> {
        self.with_reader(|conn| list_dbs_where(conn, "", &[]))
    }

    fn delete_db(&self, db: DbRef<'_>) -> Result<(), StoreError> {
        let mut guard = self.writer();
        let Writer { conn, ids } = &mut *guard;
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        // Images, vectors and thumbnails go by ON DELETE CASCADE, in this one transaction.
        let deleted = tx
            .prepare_cached("DELETE FROM image_dbs WHERE tenant = ?1 AND name = ?2")?
            .execute(params![db.tenant, db.name])?;
        if deleted == 0 {
            return Err(StoreError::DbNotFound(db.name.to_owned()));
        }
        raise_data_id_floor(&tx, ids)?;
        tx.commit()?;
        Ok(())
    }

    fn add_images(
        &self,
        db: DbRef<'_>,
        images: &[NewImage<'_>],
    ) -> Result<Vec<ImageRecord>, StoreError> {
        check_embeddings(db, images)?;
        if images.is_empty() {
            // Nothing to commit; still answer DbNotFound for a missing database.
            return self.with_reader(|conn| require_db(conn, db).map(|_| Vec::new()));
        }
        // Group commit: the committer thread takes every add queued while it was busy (with
        // the previous fsync) into one transaction, so concurrent adds share an fsync.
        let (reply, result) = mpsc::channel();
        let pending = PendingAdd {
            tenant: db.tenant.to_owned(),
            name: db.name.to_owned(),
            images: images.iter().map(OwnedImage::from).collect(),
            reply,
        };
        let stopped = || StoreError::Backend("the store's commit thread has stopped".into());
        self.adds
            .as_ref()
            .ok_or_else(stopped)?
            .send(pending)
            .map_err(|_| stopped())?;
        result.recv().map_err(|_| stopped())?
    }

    fn delete_entity(&self, db: DbRef<'_>, entity_id: &str) -> Result<Vec<DataId>, StoreError> {
        let mut guard = self.writer();
        let Writer { conn, ids } = &mut *guard;
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let row = require_db(&tx, db)?;
        let raw: Vec<i64> = tx
            .prepare_cached(
                "DELETE FROM images WHERE db_id = ?1 AND entity_id = ?2 RETURNING data_id",
            )?
            .query_map(params![row.id, entity_id], |r| r.get(0))?
            .collect::<rusqlite::Result<_>>()?;
        if raw.is_empty() {
            return Ok(Vec::new());
        }
        let mut deleted = raw
            .into_iter()
            .map(data_id_from_sql)
            .collect::<Result<Vec<_>, _>>()?;
        deleted.sort_unstable();
        // An emptied database forgets its dimension, so a new model's vectors can go in.
        tx.prepare_cached(
            "UPDATE image_dbs SET image_count = image_count - ?1,
                    dim = CASE WHEN image_count - ?1 = 0 THEN NULL ELSE dim END
             WHERE id = ?2",
        )?
        .execute(params![deleted.len() as i64, row.id])?;
        raise_data_id_floor(&tx, ids)?;
        tx.commit()?;
        Ok(deleted)
    }

    fn list_images(&self, db: DbRef<'_>, query: &ListQuery<'_>) -> Result<ImagePage, StoreError> {
        self.with_reader(|conn| {
            // One read transaction: the page and the count come from the same snapshot.
            let tx = conn.transaction()?;
            let row = require_db(&tx, db)?;

            let mut filter = String::from("db_id = ?");
            let mut args = vec![Value::Integer(row.id)];
            let prefix = query.entity_id_prefix.filter(|p| !p.is_empty());
            if let Some(p) = prefix {
                filter.push_str(" AND entity_id >= ?");
                args.push(Value::Text(p.to_owned()));
                if let Some(upper) = prefix_successor(p) {
                    filter.push_str(" AND entity_id < ?");
                    args.push(Value::Text(upper));
                }
            }
            let total_count = if prefix.is_some() {
                let n: i64 = tx
                    .prepare_cached(&format!("SELECT count(*) FROM images WHERE {filter}"))?
                    .query_row(params_from_iter(args.iter()), |r| r.get(0))?;
                count_from_sql(n, "count")?
            } else {
                row.info.image_count
            };

            let (cmp, dir) = match query.order {
                Order::Asc => (">", "ASC"),
                Order::Desc => ("<", "DESC"),
            };
            if let Some(after) = query.after {
                filter.push_str(&format!(" AND data_id {cmp} ?"));
                args.push(Value::Integer(sql_id(after)));
            }
            // One extra row tells whether another page follows.
            let want = usize::try_from(query.limit).unwrap_or(usize::MAX);
            args.push(Value::Integer(i64::from(query.limit) + 1));
            args.push(Value::Integer(
                i64::try_from(query.offset).unwrap_or(i64::MAX),
            ));
            let raws = tx
                .prepare_cached(&format!(
                    "SELECT {IMAGE_COLUMNS} FROM images WHERE {filter}
                     ORDER BY data_id {dir} LIMIT ? OFFSET ?"
                ))?
                .query_map(params_from_iter(args.iter()), image_from)?
                .collect::<rusqlite::Result<Vec<_>>>()?;
            let has_more = raws.len() > want;
            let images = raws
                .into_iter()
                .take(want)
                .map(image_convert)
                .collect::<Result<Vec<_>, _>>()?;
            Ok(ImagePage {
                images,
                total_count,
                has_more,
            })
        })
    }

    fn get_images(&self, db: DbRef<'_>, ids: &[DataId]) -> Result<Vec<ImageRecord>, StoreError> {
        self.with_reader(|conn| {
            let tx = conn.transaction()?;
            let row = require_db(&tx, db)?;
            let mut stmt = tx.prepare_cached(&format!(
                "SELECT {IMAGE_COLUMNS} FROM images WHERE data_id = ?1 AND db_id = ?2"
            ))?;
            let mut out = Vec::with_capacity(ids.len());
            for &id in ids {
                if let Some(raw) = stmt
                    .query_row(params![sql_id(id), row.id], image_from)
                    .optional()?
                {
                    out.push(image_convert(raw)?);
                }
            }
            Ok(out)
        })
    }

    fn get_thumbnail(&self, db: DbRef<'_>, id: DataId) -> Result<Option<Vec<u8>>, StoreError> {
        self.with_reader(|conn| {
            let tx = conn.transaction()?;
            let row = require_db(&tx, db)?;
            // The join keeps tenants apart: the id must belong to this tenant's database.
            let jpeg = tx
                .prepare_cached(
                    "SELECT t.jpeg FROM image_thumbnails t JOIN images i ON i.data_id = t.data_id
                     WHERE t.data_id = ?1 AND i.db_id = ?2",
                )?
                .query_row(params![sql_id(id), row.id], |r| r.get::<_, Vec<u8>>(0))
                .optional()?;
            Ok(jpeg)
        })
    }

    fn list_ids(&self, db: DbRef<'_>) -> Result<Vec<DataId>, StoreError> {
        self.with_reader(|conn| {
            let tx = conn.transaction()?;
            let row = require_db(&tx, db)?;
            let mut stmt =
                tx.prepare_cached("SELECT data_id FROM images WHERE db_id = ?1 ORDER BY data_id")?;
            let mut rows = stmt.query([row.id])?;
            let mut out = Vec::with_capacity(usize::try_from(row.info.image_count).unwrap_or(0));
            while let Some(r) = rows.next()? {
                out.push(data_id_from_sql(r.get(0)?)?);
            }
            Ok(out)
        })
    }

    fn get_embeddings(&self, db: DbRef<'_>, ids: &[DataId]) -> Result<EmbeddingSet, StoreError> {
        self.with_reader(|conn| {
            let tx = conn.transaction()?;
            let row = require_db(&tx, db)?;
            let dim = row.info.dim.unwrap_or(0);
            let mut set = EmbeddingSet {
                dim,
                ids: Vec::with_capacity(ids.len()),
                vectors: Vec::with_capacity(ids.len() * dim),
            };
            // The join keeps tenants apart: the id must belong to this tenant's database.
            let mut stmt = tx.prepare_cached(
                "SELECT v.vec FROM image_vectors v JOIN images i ON i.data_id = v.data_id
                 WHERE v.data_id = ?1 AND i.db_id = ?2",
            )?;
            let mut buf = Vec::with_capacity(dim);
            for &id in ids {
                let mut rows = stmt.query(params![sql_id(id), row.id])?;
                if let Some(r) = rows.next()? {
                    let blob = r
                        .get_ref(0)?
                        .as_blob()
                        .map_err(|e| StoreError::Corrupt(format!("embedding of {id}: {e}")))?;
                    decode_embedding(blob, row.info.dim, &mut buf)
                        .map_err(|e| StoreError::Corrupt(format!("image {id}: {e}")))?;
                    set.ids.push(id);
                    set.vectors.extend_from_slice(&buf);
                }
            }
            Ok(set)
        })
    }

    fn for_each_embedding(
        &self,
        db: DbRef<'_>,
        visit: &mut dyn FnMut(DataId, &[f32]),
    ) -> Result<u64, StoreError> {
        self.with_reader(|conn| {
            let tx = conn.transaction()?;
            let row = require_db(&tx, db)?;
            // LEFT JOIN so that an image that lost its vector is reported, not silently skipped.
            let mut stmt = tx.prepare_cached(
                "SELECT i.data_id, v.vec FROM images i
                 LEFT JOIN image_vectors v ON v.data_id = i.data_id
                 WHERE i.db_id = ?1 ORDER BY i.data_id",
            )?;
            let mut rows = stmt.query([row.id])?;
            let mut buf: Vec<f32> = Vec::with_capacity(row.info.dim.unwrap_or(0));
            let mut dim = row.info.dim;
            let mut visited = 0u64;
            while let Some(r) = rows.next()? {
                let id = data_id_from_sql(r.get(0)?)?;
                let blob = r
                    .get_ref(1)?
                    .as_blob_or_null()
                    .map_err(|e| StoreError::Corrupt(format!("embedding of {id}: {e}")))?
                    .ok_or_else(|| StoreError::Corrupt(format!("image {id} has no embedding")))?;
                decode_embedding(blob, dim, &mut buf)
                    .map_err(|e| StoreError::Corrupt(format!("image {id}: {e}")))?;
                // Without a recorded dimension, the first vector sets it for the rest.
                dim = Some(buf.len());
                visit(id, &buf);
                visited += 1;
            }
            Ok(visited)
        })
    }
}

#[cfg(test)]
mod tests;
