//! Duplicate review's side of the PostgreSQL store: deleting images (DeleteImage by
//! EntityId or DataId, one helper) and the "not a copy" marks in `not_duplicates` (one row per pair, smaller
//! DataId first, removed with either image by the foreign keys). Same rules as the SQLite
//! store's `duplicate_marks`.
//!
//! Not here: finding duplicates or applying the marks (`service::images::duplicates`).

use super::image_store::WRITE_LOCK;
use postgres::types::ToSql;

use super::rows::{data_id_from_sql, require_db, sql_id};
use super::PgStore;
use crate::store::{DataId, DbRef, StoreError};

impl PgStore {
    /// Deletes the images of `db` that `condition` (SQL on `images`, `$2` = `arg`) keeps,
    /// and keeps the database's count; the ids deleted, ascending. DeleteImage by EntityId
    /// and by DataId.
    pub(super) fn delete_where(
        &self,
        db: DbRef<'_>,
        condition: &str,
        arg: &(dyn ToSql + Sync),
    ) -> Result<Vec<DataId>, StoreError> {
        self.with(|conn| {
            let mut tx = conn.transaction()?;
            let row = require_db(&mut tx, db, WRITE_LOCK)?;
            let mut deleted = tx
                .query(
                    &format!(
                        "DELETE FROM images WHERE db_id = $1 AND {condition} RETURNING data_id"
                    ),
                    &[&row.id, arg],
                )?
                .iter()
                .map(|r| data_id_from_sql(r.try_get(0)?))
                .collect::<Result<Vec<_>, _>>()?;
            if deleted.is_empty() {
                return Ok(deleted);
            }
            deleted.sort_unstable();
            // An emptied database forgets its dimension, so a new model's vectors can go in.
            // (SET expressions read the row as it was.)
            tx.execute(
                "UPDATE image_dbs SET image_count = image_count - $1,
                        dim = CASE WHEN image_count - $1 = 0 THEN NULL ELSE dim END
                 WHERE id = $2",
                &[&(deleted.len() as i64), &row.id],
            )?;
            tx.commit()?;
            Ok(deleted)
        })
    }

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
        self.with(|conn| {
            let mut tx = conn.transaction()?;
            // Shared with writers of other rows, exclusive of DeleteImageDb.
            let row = require_db(&mut tx, db, "FOR KEY SHARE")?;
            let inserted = tx.execute(
                "INSERT INTO not_duplicates (a, b, marked_at)
                 SELECT $2, $3, $4
                 WHERE (SELECT COUNT(*) FROM images
                        WHERE db_id = $1 AND data_id IN ($2, $3)) = 2
                 ON CONFLICT (a, b) DO NOTHING",
                &[&row.id, &sql_id(lo), &sql_id(hi), &now],
            )?;
            let both: i64 = if inserted == 1 {
                2
            } else {
                tx.query_one(
                    "SELECT COUNT(*) FROM images WHERE db_id = $1 AND data_id IN ($2, $3)",
                    &[&row.id, &sql_id(lo), &sql_id(hi)],
                )?
                .get(0)
            };
            tx.commit()?;
            Ok(both == 2)
        })
    }

    pub(super) fn not_duplicate_rows(
        &self,
        db: DbRef<'_>,
    ) -> Result<Vec<(DataId, DataId)>, StoreError> {
        self.with(|conn| {
            let mut tx = conn.transaction()?;
            let row = require_db(&mut tx, db, "")?;
            let pairs = tx
                .query(
                    "SELECT n.a, n.b FROM not_duplicates n JOIN images i ON i.data_id = n.a
                     WHERE i.db_id = $1 ORDER BY n.a, n.b",
                    &[&row.id],
                )?
                .iter()
                .map(|r| {
                    Ok((
                        data_id_from_sql(r.try_get(0)?)?,
                        data_id_from_sql(r.try_get(1)?)?,
                    ))
                })
                .collect::<Result<Vec<_>, StoreError>>()?;
            tx.commit()?;
            Ok(pairs)
        })
    }
}
