//! [`ImageStore`] for [`SqliteStore`]: each operation as SQL on the writer connection or a
//! pooled reader. Not here: the schema (`schema`), row mapping (`rows`), group commit
//! (`committer`).

use super::committer::{check_copy_embedding, check_embeddings, OwnedImage, PendingAdd};
use super::filter_sql::push_filter;
use super::rows::{
    attributes_from, count_from_sql, data_id_from_sql, decode_embedding, find_db, image_convert,
    image_from, list_dbs_where, prefix_successor, require_db, sql_id, ATTRIBUTE_COLUMNS,
    IMAGE_COLUMNS,
};
use super::schema::raise_data_id_floor;
use super::{now_millis, SqliteStore, Writer};
use crate::attributes::Slot;
use crate::rules::is_valid_db_name;
use crate::store::{
    Attributes, DataId, DbDescriptors, DbInfo, DbRef, Descriptor, EmbeddingSet, ImagePage,
    ImageRecord, ImageSelector, ImageStore, ImageUpdate, ListQuery, NewImage, NewUpload, Order,
    StoreError,
};
use rusqlite::types::Value;
use rusqlite::{params, params_from_iter, OptionalExtension, TransactionBehavior};
use std::sync::mpsc;

impl SqliteStore {
    /// Deletes the rows `delete` removes (given the transaction and the db's row id; it
    /// returns their raw ids) and keeps the db's count, dimension and the id floor right.
    fn delete_where(
        &self,
        db: DbRef<'_>,
        delete: impl FnOnce(&rusqlite::Transaction<'_>, i64) -> Result<Vec<i64>, StoreError>,
    ) -> Result<Vec<DataId>, StoreError> {
        let mut guard = self.writer();
        let Writer { conn, ids } = &mut *guard;
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let row = require_db(&tx, db)?;
        let raw = delete(&tx, row.id)?;
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
}

impl ImageStore for SqliteStore {
    fn create_db_with(
        &self,
        db: DbRef<'_>,
        descriptors: DbDescriptors,
    ) -> Result<DbInfo, StoreError> {
        if !is_valid_db_name(db.name) {
            return Err(StoreError::Invalid(format!(
                "database name {:?} must be 2-64 lower-case letters, digits or '_'",
                db.name
            )));
        }
        let w = self.writer();
        if let Some(limit) = self.options.max_databases_per_tenant {
            // Under the writer lock: no other create can pass the check beside this one.
            let held: i64 = w
                .conn
                .prepare_cached("SELECT COUNT(*) FROM image_dbs WHERE tenant = ?1")?
                .query_row(params![db.tenant], |r| r.get(0))?;
            let exists = find_db(&w.conn, db)?.is_some();
            if !exists && u64::try_from(held).unwrap_or(0) >= limit {
                return Err(StoreError::TenantDatabaseQuota { limit });
            }
        }
        let created_at = now_millis();
        let inserted = w
            .conn
            .prepare_cached(
                "INSERT INTO image_dbs(tenant, name, created_at, descriptors) VALUES (?1, ?2, ?3, ?4)
             ON CONFLICT(tenant, name) DO NOTHING",
            )?
            .execute(params![db.tenant, db.name, created_at, descriptors.code()])?;
        if inserted == 0 {
            return Err(StoreError::DbExists(db.name.to_owned()));
        }
        Ok(DbInfo {
            tenant: db.tenant.to_owned(),
            name: db.name.to_owned(),
            created_at,
            image_count: 0,
            dim: None,
            descriptors,
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
        self.delete_where(db, |tx, db_id| {
            Ok(tx
                .prepare_cached(
                    "DELETE FROM images WHERE db_id = ?1 AND entity_id = ?2 RETURNING data_id",
                )?
                .query_map(params![db_id, entity_id], |r| r.get(0))?
                .collect::<rusqlite::Result<_>>()?)
        })
    }

    fn delete_images(&self, db: DbRef<'_>, ids: &[DataId]) -> Result<Vec<DataId>, StoreError> {
        self.delete_where(db, |tx, db_id| {
            let mut stmt = tx.prepare_cached(
                "DELETE FROM images WHERE db_id = ?1 AND data_id = ?2 RETURNING data_id",
            )?;
            let mut raw = Vec::new();
            for id in ids {
                if let Some(v) = stmt
                    .query_row(params![db_id, sql_id(*id)], |r| r.get(0))
                    .optional()?
                {
                    raw.push(v);
                }
            }
            Ok(raw)
        })
    }

    fn mark_not_duplicate(
        &self,
        db: DbRef<'_>,
        a: DataId,
        b: DataId,
        now: i64,
    ) -> Result<bool, StoreError> {
        self.mark_not_duplicate_row(db, a, b, now)
    }

    fn not_duplicate_pairs(&self, db: DbRef<'_>) -> Result<Vec<(DataId, DataId)>, StoreError> {
        self.not_duplicate_rows(db)
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
            if let Some(f) = query.filter {
                filter.push_str(" AND ");
                push_filter(f, &mut filter, &mut args);
            }
            let total_count = if prefix.is_some() || query.filter.is_some() {
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

    fn put_upload(&self, upload: &NewUpload<'_>, tenant_max_bytes: u64) -> Result<(), StoreError> {
        self.put_upload_row(upload, tenant_max_bytes)
    }

    fn get_upload(&self, tenant: &str, key: &str, now: i64) -> Result<Option<Vec<u8>>, StoreError> {
        self.get_upload_row(tenant, key, now)
    }

    fn thumbnail_by_id(&self, id: DataId) -> Result<Option<Vec<u8>>, StoreError> {
        self.with_reader(|conn| {
            Ok(conn
                .prepare_cached("SELECT jpeg FROM image_thumbnails WHERE data_id = ?1")?
                .query_row(params![sql_id(id)], |r| r.get::<_, Vec<u8>>(0))
                .optional()?)
        })
    }

    fn update_images(
        &self,
        db: DbRef<'_>,
        which: ImageSelector<'_>,
        update: &ImageUpdate<'_>,
    ) -> Result<Vec<ImageRecord>, StoreError> {
        let mut guard = self.writer();
        let tx = guard
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        let row = require_db(&tx, db)?;
        let mut sets = String::from("updated_at = ?");
        let mut args = vec![Value::Integer(now_millis())];
        if let Some(extra) = update.extra_data {
            sets.push_str(", extra_data = ?");
            args.push(Value::Text(extra.to_owned()));
        }
        for (slot, v) in update.attributes.ints.iter().enumerate() {
            if let Some(v) = v {
                sets.push_str(&format!(", {} = ?", Slot::Int(slot).filter_name()));
                args.push(Value::Integer(*v));
            }
        }
        for (slot, v) in update.attributes.strs.iter().enumerate() {
            if let Some(v) = v {
                sets.push_str(&format!(", {} = ?", Slot::Str(slot).filter_name()));
                args.push(Value::Text(v.clone()));
            }
        }
        let scope = match which {
            ImageSelector::DataId(id) => {
                args.push(Value::Integer(sql_id(id)));
                "data_id = ?"
            }
            ImageSelector::Entity(entity) => {
                args.push(Value::Text(entity.to_owned()));
                "entity_id = ?"
            }
        };
        args.push(Value::Integer(row.id));
        let records = tx
            .prepare_cached(&format!(
                "UPDATE images SET {sets} WHERE {scope} AND db_id = ?
                 RETURNING {IMAGE_COLUMNS}"
            ))?
            .query_map(params_from_iter(args.iter()), image_from)?
            .collect::<rusqlite::Result<Vec<_>>>()?;
        let mut records = records
            .into_iter()
            .map(image_convert)
            .collect::<Result<Vec<_>, _>>()?;
        tx.commit()?;
        records.sort_by_key(|r| r.data_id);
        Ok(records)
    }

    fn for_each_attributes(
        &self,
        db: DbRef<'_>,
        visit: &mut dyn FnMut(DataId, Attributes),
    ) -> Result<u64, StoreError> {
        self.with_reader(|conn| {
            let tx = conn.transaction()?;
            let row = require_db(&tx, db)?;
            let any_set = ATTRIBUTE_COLUMNS
                .split(", ")
                .map(|c| format!("{c} IS NOT NULL"))
                .collect::<Vec<_>>()
                .join(" OR ");
            let mut stmt = tx.prepare_cached(&format!(
                "SELECT data_id, {ATTRIBUTE_COLUMNS} FROM images
                 WHERE db_id = ?1 AND ({any_set}) ORDER BY data_id"
            ))?;
            let mut rows = stmt.query(params![row.id])?;
            let mut n = 0;
            while let Some(r) = rows.next()? {
                let id = data_id_from_sql(r.get(0)?)?;
                visit(id, attributes_from(r, 1)?);
                n += 1;
            }
            Ok(n)
        })
    }

    fn first_image_of_entity(
        &self,
        db: DbRef<'_>,
        entity_id: &str,
    ) -> Result<Option<DataId>, StoreError> {
        self.with_reader(|conn| {
            let tx = conn.transaction()?;
            let row = require_db(&tx, db)?;
            let id = tx
                .prepare_cached(
                    "SELECT MIN(data_id) FROM images WHERE db_id = ?1 AND entity_id = ?2",
                )?
                .query_row(params![row.id, entity_id], |r| r.get::<_, Option<i64>>(0))?;
            id.map(data_id_from_sql).transpose()
        })
    }

    fn list_ids(&self, db: DbRef<'_>, kind: Descriptor) -> Result<Vec<DataId>, StoreError> {
        self.with_reader(|conn| {
            let tx = conn.transaction()?;
            let row = require_db(&tx, db)?;
            let mut stmt = tx.prepare_cached(match kind {
                Descriptor::Semantic => "SELECT data_id FROM images WHERE db_id = ?1 ORDER BY data_id",
                Descriptor::Copy => {
                    "SELECT i.data_id FROM images i JOIN image_copy_vectors c ON c.data_id = i.data_id
                     WHERE i.db_id = ?1 ORDER BY i.data_id"
                }
            })?;
            let mut rows = stmt.query([row.id])?;
            let mut out = Vec::with_capacity(usize::try_from(row.info.image_count).unwrap_or(0));
            while let Some(r) = rows.next()? {
                out.push(data_id_from_sql(r.get(0)?)?);
            }
            Ok(out)
        })
    }

    fn get_embeddings(
        &self,
        db: DbRef<'_>,
        kind: Descriptor,
        ids: &[DataId],
    ) -> Result<EmbeddingSet, StoreError> {
        self.with_reader(|conn| {
            let tx = conn.transaction()?;
            let row = require_db(&tx, db)?;
            let (table, want_dim) = vector_table(kind, row.info.dim);
            let dim = want_dim.unwrap_or(0);
            let mut set = EmbeddingSet {
                dim,
                ids: Vec::with_capacity(ids.len()),
                vectors: Vec::with_capacity(ids.len() * dim),
            };
            // The join keeps tenants apart: the id must belong to this tenant's database.
            let mut stmt = tx.prepare_cached(&format!(
                "SELECT v.vec FROM {table} v JOIN images i ON i.data_id = v.data_id
                 WHERE v.data_id = ?1 AND i.db_id = ?2"
            ))?;
            let mut buf = Vec::with_capacity(dim);
            for &id in ids {
                let mut rows = stmt.query(params![sql_id(id), row.id])?;
                if let Some(r) = rows.next()? {
                    let blob = r
                        .get_ref(0)?
                        .as_blob()
                        .map_err(|e| StoreError::Corrupt(format!("embedding of {id}: {e}")))?;
                    decode_embedding(blob, want_dim, &mut buf)
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
        kind: Descriptor,
        visit: &mut dyn FnMut(DataId, &[f32]),
    ) -> Result<u64, StoreError> {
        self.with_reader(|conn| {
            let tx = conn.transaction()?;
            let row = require_db(&tx, db)?;
            let (table, mut dim) = vector_table(kind, row.info.dim);
            // LEFT JOIN so that an image that lost its semantic vector is reported, not
            // silently skipped; images stored before copy descriptors existed have none.
            let join = match kind {
                Descriptor::Semantic => "LEFT JOIN",
                Descriptor::Copy => "JOIN",
            };
            let mut stmt = tx.prepare_cached(&format!(
                "SELECT i.data_id, v.vec FROM images i
                 {join} {table} v ON v.data_id = i.data_id
                 WHERE i.db_id = ?1 ORDER BY i.data_id"
            ))?;
            let mut rows = stmt.query([row.id])?;
            let mut buf: Vec<f32> = Vec::with_capacity(dim.unwrap_or(0));
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

    fn set_copy_embeddings(
        &self,
        db: DbRef<'_>,
        vectors: &[(DataId, Vec<f32>)],
    ) -> Result<Vec<DataId>, StoreError> {
        for (_, v) in vectors {
            check_copy_embedding(v)?;
        }
        let mut w = self.writer();
        let tx = w
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        let row = require_db(&tx, db)?;
        let mut stored = Vec::new();
        {
            // Only images of this database, and never over a descriptor already there.
            let mut insert = tx.prepare_cached(
                "INSERT INTO image_copy_vectors(data_id, vec)
                 SELECT data_id, ?2 FROM images WHERE data_id = ?1 AND db_id = ?3
                 ON CONFLICT(data_id) DO NOTHING",
            )?;
            let mut blob = Vec::new();
            for (id, v) in vectors {
                super::rows::encode_embedding(v, &mut blob);
                if insert.execute(params![sql_id(*id), blob, row.id])? > 0 {
                    stored.push(*id);
                }
            }
        }
        tx.commit()?;
        Ok(stored)
    }

    fn ids_without_copy(
        &self,
        db: DbRef<'_>,
        after: Option<DataId>,
        limit: usize,
    ) -> Result<Vec<DataId>, StoreError> {
        self.with_reader(|conn| {
            let tx = conn.transaction()?;
            let row = require_db(&tx, db)?;
            let mut stmt = tx.prepare_cached(
                "SELECT i.data_id FROM images i
                 WHERE i.db_id = ?1 AND i.data_id > ?2
                   AND NOT EXISTS (SELECT 1 FROM image_copy_vectors c WHERE c.data_id = i.data_id)
                 ORDER BY i.data_id LIMIT ?3",
            )?;
            let after = after.map_or(-1, sql_id);
            let limit = i64::try_from(limit).unwrap_or(i64::MAX);
            let mut rows = stmt.query(params![row.id, after, limit])?;
            let mut out = Vec::new();
            while let Some(r) = rows.next()? {
                out.push(data_id_from_sql(r.get(0)?)?);
            }
            Ok(out)
        })
    }
}

/// The table holding vectors of `kind` and their dimension (the database's recorded one
/// for semantic vectors, fixed for copy descriptors).
fn vector_table(kind: Descriptor, semantic_dim: Option<usize>) -> (&'static str, Option<usize>) {
    match kind {
        Descriptor::Semantic => ("image_vectors", semantic_dim),
        Descriptor::Copy => ("image_copy_vectors", Some(kind.dim())),
    }
}
