//! Duplicate review's "not a duplicate" marks in the `not_duplicates` table: one row per
//! pair (smaller DataId first), removed with either image by the foreign keys.
//!
//! Not here: finding duplicates or applying the marks (`service::duplicates`).

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

#[cfg(test)]
mod tests {
    use super::SqliteStore;
    use crate::store::{Attributes, DbRef, ImageStore, NewImage};

    fn sample_image(entity_id: &str) -> NewImage<'_> {
        NewImage {
            entity_id,
            extra_data: "",
            image_url: "",
            embedding: &[0.6, 0.8],
            copy_embedding: None,
            thumbnail: None,
            attributes: &Attributes::NONE,
        }
    }

    #[test]
    fn marks_need_both_images_of_the_db_and_go_with_either() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(dir.path()).unwrap();
        let db = DbRef::new("t", "shop");
        let other = DbRef::new("t", "other");
        store.create_db(db).unwrap();
        store.create_db(other).unwrap();
        let a = store.add_image(db, &sample_image("a")).unwrap().data_id;
        let b = store.add_image(db, &sample_image("b")).unwrap().data_id;
        let c = store.add_image(db, &sample_image("c")).unwrap().data_id;
        let x = store.add_image(other, &sample_image("x")).unwrap().data_id;
        assert!(store.mark_not_duplicate(db, b, a, 1).unwrap());
        assert!(
            store.mark_not_duplicate(db, a, b, 2).unwrap(),
            "twice is fine"
        );
        assert!(
            !store.mark_not_duplicate(db, a, x, 3).unwrap(),
            "x is another db's"
        );
        assert!(!store.mark_not_duplicate(db, a, a, 3).unwrap());
        assert!(store.mark_not_duplicate(db, c, b, 4).unwrap());
        assert_eq!(store.not_duplicate_pairs(db).unwrap(), vec![(a, b), (b, c)]);
        assert!(store.not_duplicate_pairs(other).unwrap().is_empty());
        // Deleting one image drops its marks, and only them.
        assert_eq!(store.delete_images(db, &[b, x]).unwrap(), vec![b]);
        assert!(store.not_duplicate_pairs(db).unwrap().is_empty());
        assert_eq!(store.get_db(db).unwrap().unwrap().image_count, 2);
        assert_eq!(store.get_db(other).unwrap().unwrap().image_count, 1);
    }
}
