//! The file's schema: its identity (`application_id`), the version check, the connection
//! settings of the writer, the migration steps, and where the `DataId` generator starts.
//! Not here: reading or writing rows (`rows`, the trait impl).

use super::DataIdGen;
use crate::store::StoreError;
use rusqlite::{params, Connection, TransactionBehavior};

/// Marks the file as ours (`PRAGMA application_id`, "imgs"), so that pointing the server at
/// some other SQLite file fails clearly instead of migrating it.
pub(super) const APPLICATION_ID: i64 = 0x696d_6773;
/// Truncate the WAL back to this size after a checkpoint so that it does not stay at its
/// high-water mark forever.
pub(super) const JOURNAL_SIZE_LIMIT: i64 = 64 << 20;

/// `store_meta` key of the highest `DataId` ever issued by a transaction that deleted images:
/// with `MAX(images.data_id)` it seeds the generator, so deleting the newest images and
/// restarting with the clock stepped back still never reissues an id.
pub(super) const DATA_ID_FLOOR_KEY: &str = "data_id_floor";

/// Schema steps in order; step `i` brings `user_version` from `i` to `i + 1`. Append only:
/// never edit a released step, add a new one.
pub(super) const MIGRATIONS: &[&str] = &[
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
    // 2: the copy-detection descriptor beside the semantic embedding (absent for images
    // stored before it existed), and what each database indexes (`DbDescriptors::code`).
    "CREATE TABLE image_copy_vectors (
        data_id INTEGER PRIMARY KEY REFERENCES images(data_id) ON DELETE CASCADE,
        vec     BLOB NOT NULL
    );
    ALTER TABLE image_dbs ADD COLUMN descriptors INTEGER NOT NULL DEFAULT 0;",
    // 3: attributes (IntAttr…4, StrAttr…4; NULL when unset). Adding nullable columns
    // rewrites nothing, so the step is instant on any size of store.
    "ALTER TABLE images ADD COLUMN int_attr INTEGER;
    ALTER TABLE images ADD COLUMN int_attr2 INTEGER;
    ALTER TABLE images ADD COLUMN int_attr3 INTEGER;
    ALTER TABLE images ADD COLUMN int_attr4 INTEGER;
    ALTER TABLE images ADD COLUMN str_attr TEXT;
    ALTER TABLE images ADD COLUMN str_attr2 TEXT;
    ALTER TABLE images ADD COLUMN str_attr3 TEXT;
    ALTER TABLE images ADD COLUMN str_attr4 TEXT;",
    // 4: files uploaded by the SDK's Advance calls, kept until they expire (`uploads`).
    "CREATE TABLE uploads (
        key        TEXT PRIMARY KEY,
        tenant     TEXT NOT NULL,
        bytes      BLOB NOT NULL,
        created_at INTEGER NOT NULL,
        expires_at INTEGER NOT NULL
    );
    CREATE INDEX uploads_by_expiry ON uploads(expires_at);
    CREATE INDEX uploads_by_tenant ON uploads(tenant);",
    // 5: pairs a person marked "not a duplicate" in duplicate review (`duplicate_marks`);
    // a < b. Each goes with either image.
    "CREATE TABLE not_duplicates (
        a         INTEGER NOT NULL REFERENCES images(data_id) ON DELETE CASCADE,
        b         INTEGER NOT NULL REFERENCES images(data_id) ON DELETE CASCADE,
        marked_at INTEGER NOT NULL,
        PRIMARY KEY (a, b)
    ) WITHOUT ROWID;
    CREATE INDEX not_duplicates_by_b ON not_duplicates(b);",
];
pub(super) fn check_version(conn: &Connection) -> Result<(), StoreError> {
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

pub(super) fn configure_writer(conn: &Connection) -> Result<(), StoreError> {
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

pub(super) fn migrate(conn: &mut Connection) -> Result<(), StoreError> {
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

pub(super) fn seed_data_id(conn: &Connection) -> Result<u64, StoreError> {
    let last: i64 = conn.query_row(
        "SELECT max(coalesce((SELECT max(data_id) FROM images), 0),
                    coalesce((SELECT value FROM store_meta WHERE key = ?1), 0))",
        [DATA_ID_FLOOR_KEY],
        |r| r.get(0),
    )?;
    u64::try_from(last).map_err(|_| StoreError::Corrupt(format!("negative data id {last}")))
}
/// Records the highest id issued so far as a floor for the generator after a restart; called
/// in transactions that delete images, which could otherwise remove the max stored id.
pub(super) fn raise_data_id_floor(conn: &Connection, ids: &DataIdGen) -> Result<(), StoreError> {
    let last = i64::try_from(ids.last).unwrap_or(i64::MAX);
    conn.prepare_cached(
        "INSERT INTO store_meta(key, value) VALUES (?1, ?2)
         ON CONFLICT(key) DO UPDATE SET value = max(value, excluded.value)",
    )?
    .execute(params![DATA_ID_FLOOR_KEY, last])?;
    Ok(())
}
