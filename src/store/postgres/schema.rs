//! The PostgreSQL schema: the migration steps, the version table, and running them at open
//! under an advisory lock so that two nodes starting at once migrate once.
//! Not here: reading or writing rows (`rows`, `image_store`).

use postgres::Client;

use crate::store::StoreError;

/// First key of every advisory lock this store takes ("imgs"); the second names what is
/// locked (see [`lock_key`]).
pub(super) const LOCK_CLASS: i32 = 0x696d_6773;

/// Schema steps in order; step `i` brings the version from `i` to `i + 1`. Append only:
/// never edit a released step, add a new one. Each runs in the migration's transaction
/// (PostgreSQL's DDL is transactional: a crash mid-migration leaves the old version and none
/// of the step).
///
/// The tables mirror the SQLite store's. Text that is compared or ordered (tenant, name,
/// EntityId, string attributes) is `COLLATE "C"`, bytewise like SQLite, whatever the
/// database's locale: prefix ranges and the order of ListImageDbs then match. Vectors and
/// thumbnails are `bytea` stored `EXTERNAL` (out of line, uncompressed: floats and JPEG do
/// not compress, trying costs CPU on every write).
pub(super) const MIGRATIONS: &[&str] = &[
    // 1: everything the SQLite store has at its version 4.
    r#"CREATE TABLE image_dbs (
        id          BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        tenant      TEXT COLLATE "C" NOT NULL,
        name        TEXT COLLATE "C" NOT NULL,
        created_at  BIGINT NOT NULL,
        image_count BIGINT NOT NULL DEFAULT 0,
        dim         BIGINT,
        descriptors BIGINT NOT NULL DEFAULT 0,
        UNIQUE (tenant, name)
    );
    CREATE TABLE images (
        data_id    BIGINT PRIMARY KEY,
        db_id      BIGINT NOT NULL REFERENCES image_dbs(id) ON DELETE CASCADE,
        entity_id  TEXT COLLATE "C" NOT NULL,
        extra_data TEXT NOT NULL,
        image_url  TEXT NOT NULL,
        created_at BIGINT NOT NULL,
        updated_at BIGINT NOT NULL,
        int_attr   BIGINT,
        int_attr2  BIGINT,
        int_attr3  BIGINT,
        int_attr4  BIGINT,
        str_attr   TEXT COLLATE "C",
        str_attr2  TEXT COLLATE "C",
        str_attr3  TEXT COLLATE "C",
        str_attr4  TEXT COLLATE "C"
    );
    CREATE INDEX images_by_db ON images(db_id, data_id);
    CREATE INDEX images_by_entity ON images(db_id, entity_id, data_id);
    CREATE TABLE image_vectors (
        data_id BIGINT PRIMARY KEY REFERENCES images(data_id) ON DELETE CASCADE,
        vec     BYTEA NOT NULL
    );
    ALTER TABLE image_vectors ALTER COLUMN vec SET STORAGE EXTERNAL;
    CREATE TABLE image_copy_vectors (
        data_id BIGINT PRIMARY KEY REFERENCES images(data_id) ON DELETE CASCADE,
        vec     BYTEA NOT NULL
    );
    ALTER TABLE image_copy_vectors ALTER COLUMN vec SET STORAGE EXTERNAL;
    CREATE TABLE image_thumbnails (
        data_id BIGINT PRIMARY KEY REFERENCES images(data_id) ON DELETE CASCADE,
        jpeg    BYTEA NOT NULL
    );
    ALTER TABLE image_thumbnails ALTER COLUMN jpeg SET STORAGE EXTERNAL;
    CREATE TABLE store_meta (
        key   TEXT PRIMARY KEY,
        value BIGINT NOT NULL
    );
    INSERT INTO store_meta(key, value) VALUES ('data_id', 0);
    CREATE TABLE uploads (
        key        TEXT PRIMARY KEY,
        tenant     TEXT NOT NULL,
        bytes      BYTEA NOT NULL,
        created_at BIGINT NOT NULL,
        expires_at BIGINT NOT NULL
    );
    ALTER TABLE uploads ALTER COLUMN bytes SET STORAGE EXTERNAL;
    CREATE INDEX uploads_by_expiry ON uploads(expires_at);
    CREATE INDEX uploads_by_tenant ON uploads(tenant);"#,
    // 2: duplicate review's "not a copy" marks (SQLite's step 5).
    r#"CREATE TABLE not_duplicates (
        a         BIGINT NOT NULL REFERENCES images(data_id) ON DELETE CASCADE,
        b         BIGINT NOT NULL REFERENCES images(data_id) ON DELETE CASCADE,
        marked_at BIGINT NOT NULL,
        PRIMARY KEY (a, b)
    );
    CREATE INDEX not_duplicates_by_b ON not_duplicates(b);"#,
];

/// The `store_meta` key of the `DataId` counter: the highest id ever issued.
pub(super) const DATA_ID_KEY: &str = "data_id";

/// The second key of an advisory lock on `what` within `schema` (stores in different
/// schemas of one database never wait for each other).
pub(super) fn lock_key(schema: &str, what: &str) -> i32 {
    // FNV-1a folded to 32 bits: stable across builds and nodes (unlike std's hasher).
    let mut h: u32 = 0x811c_9dc5;
    for b in schema.bytes().chain([0]).chain(what.bytes()) {
        h ^= u32::from(b);
        h = h.wrapping_mul(0x0100_0193);
    }
    i32::from_ne_bytes(h.to_ne_bytes())
}

/// The schema version recorded in `schema`, 0 when it has no version table.
pub(super) fn current_version(conn: &mut impl postgres::GenericClient) -> Result<i64, StoreError> {
    let has_table: bool = conn
        .query_one(
            "SELECT EXISTS (SELECT 1 FROM pg_catalog.pg_tables
                            WHERE schemaname = current_schema() AND tablename = 'schema_version')",
            &[],
        )?
        .get(0);
    if !has_table {
        return Ok(0);
    }
    Ok(conn
        .query_one(
            "SELECT COALESCE(MAX(version), 0)::BIGINT FROM schema_version",
            &[],
        )?
        .get(0))
}

/// Creates the schema if needed and applies the missing steps, in one transaction, under an
/// advisory lock: a second node starting at the same time waits, then finds the work done.
/// A schema migrated by a newer imgsearch is refused untouched (`SchemaTooNew`); a schema
/// that holds tables but no version table is someone else's (`Corrupt`).
pub(super) fn migrate(conn: &mut Client, schema: &str) -> Result<(), StoreError> {
    let supported = MIGRATIONS.len() as i64;
    let mut tx = conn.transaction()?;
    tx.execute(
        "SELECT pg_advisory_xact_lock($1, $2)",
        &[&LOCK_CLASS, &lock_key(schema, "migrate")],
    )?;
    // The name was checked to be a plain identifier (`is_valid_schema_name`).
    tx.batch_execute(&format!("CREATE SCHEMA IF NOT EXISTS {schema}"))?;
    let version = current_version(&mut tx)?;
    if version > supported {
        return Err(StoreError::SchemaTooNew {
            found: version,
            supported,
        });
    }
    if version == 0 {
        let tables: i64 = tx
            .query_one(
                "SELECT count(*) FROM pg_catalog.pg_tables WHERE schemaname = $1",
                &[&schema],
            )?
            .get(0);
        if tables > 0 {
            return Err(StoreError::Corrupt(format!(
                "the PostgreSQL schema {schema:?} holds tables but is not an imgsearch store; \
                 name another with ?schema=NAME in the URL"
            )));
        }
        tx.batch_execute(
            "CREATE TABLE schema_version (
                version    BIGINT PRIMARY KEY,
                applied_at TIMESTAMPTZ NOT NULL DEFAULT now()
            )",
        )?;
    }
    let done = usize::try_from(version)
        .map_err(|_| StoreError::Corrupt(format!("negative schema version {version}")))?;
    for (step, sql) in MIGRATIONS.iter().enumerate().skip(done) {
        tx.batch_execute(sql)?;
        tx.execute(
            "INSERT INTO schema_version(version) VALUES ($1)",
            &[&(step as i64 + 1)],
        )?;
    }
    tx.commit()?;
    Ok(())
}
