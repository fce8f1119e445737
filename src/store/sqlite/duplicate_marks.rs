//! Duplicate review's "not a duplicate" marks in the `not_duplicates` table: one row per
//! pair (smaller DataId first), removed with either image by the foreign keys.
//!
//! Not here: finding duplicates or applying the marks (`service::images::duplicates`); the
//! tests (`store::conformance::duplicates`, shared with PostgreSQL).

use rusqlite::params;

use super::rows::{data_id_from_sql, require_db, sql_id};
use super::SqliteStore;
use crate::store::{DataId, DbRef, StoreError};

impl SqliteStore {
    pub(super) fn mark_not_duplicate_row(
        &self,
        db: DbRef<'_>,
        a: DataId,
        b: DataId,
        now: i64,
    ) -> Result<bool, StoreError> {
        if a == b {
            return Ok(false);
        }
        let (lo, hi) = if a < b { (a, b) } else { (b, a) };
        let mut guard = self.writer();
        let tx = guard.conn.transaction()?;
        let row = require_db(&tx, db)?;
        let both: i64 = tx
            .prepare_cached("SELECT COUNT(*) FROM images WHERE db_id = ?1 AND data_id IN (?2, ?3)")?
            .query_row(params![row.id, sql_id(lo), sql_id(hi)], |r| r.get(0))?;
        if both != 2 {
            return Ok(false);
        }
        tx.prepare_cached(
            "INSERT INTO not_duplicates (a, b, marked_at) VALUES (?1, ?2, ?3)
             ON CONFLICT (a, b) DO NOTHING",
        )?
        .execute(params![sql_id(lo), sql_id(hi), now])?;
        tx.commit()?;
        Ok(true)
    }

    pub(super) fn not_duplicate_rows(
        &self,
        db: DbRef<'_>,
    ) -> Result<Vec<(DataId, DataId)>, StoreError> {
        self.with_reader(|conn| {
            let tx = conn.transaction()?;
            let row = require_db(&tx, db)?;
            let raw: Vec<(i64, i64)> = tx
                .prepare_cached(
                    "SELECT n.a, n.b FROM not_duplicates n JOIN images i ON i.data_id = n.a
                     WHERE i.db_id = ?1 ORDER BY n.a, n.b",
                )?
                .query_map(params![row.id], |r| Ok((r.get(0)?, r.get(1)?)))?
                .collect::<rusqlite::Result<_>>()?;
            raw.into_iter()
                .map(|(a, b)| Ok((data_id_from_sql(a)?, data_id_from_sql(b)?)))
                .collect()
        })
    }
}
