//! [`ImageStore`] for [`PgStore`]: each operation as one transaction (or one statement) on a
//! pooled connection. Not here: the schema (`schema`), row mapping (`rows`), the add path
//! (`adds`), uploads (`uploads`), duplicate review (`duplicate_marks`), connecting and errors
//! (`mod.rs`).

use std::collections::HashMap;

use postgres::fallible_iterator::FallibleIterator;
use postgres::{Client, IsolationLevel, Transaction};

use super::filter_sql::push_filter;
use super::rows::{
    attributes_from, count_from_sql, data_id_from_sql, decode_embedding, encode_embedding, find_db,
    image_from, list_dbs_where, prefix_successor, require_db, sql_id, sql_ids, Sql,
    ATTRIBUTE_COLUMNS, IMAGE_COLUMNS,
};
use super::schema::{lock_key, LOCK_CLASS};
use super::{now_millis, PgStore};
use crate::attributes::Slot;
use crate::rules::is_valid_db_name;
use crate::store::sqlite::committer::{check_copy_embedding, check_embeddings};
use crate::store::{
    Attributes, DataId, DbDescriptors, DbInfo, DbRef, Descriptor, EmbeddingSet, ImagePage,
    ImageRecord, ImageSelector, ImageStore, ImageUpdate, ListQuery, NewImage, NewUpload, Order,
    StoreError,
};

/// Row lock a writer takes on its database's row: serialises the writes that change the
/// image count, and waits for (or is refused by) a concurrent DeleteImageDb.
pub(super) const WRITE_LOCK: &str = "FOR NO KEY UPDATE";

/// A read-only transaction whose statements all see one snapshot.
fn snapshot(conn: &mut Client) -> Result<Transaction<'_>, StoreError> {
    Ok(conn
        .build_transaction()
        .isolation_level(IsolationLevel::RepeatableRead)
        .read_only(true)
        .start()?)
}

impl ImageStore for PgStore {
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
        let created_at = now_millis();
        self.with(|conn| {
            let mut tx = conn.transaction()?;
            // One create per tenant at a time, on every node: the quota check below cannot
            // pass twice beside each other.
            tx.execute(
                "SELECT pg_advisory_xact_lock($1, $2)",
                &[&(LOCK_CLASS + 1), &lock_key(&self.schema, db.tenant)],
            )?;
            if let Some(limit) = self.options.max_databases_per_tenant {
                let held: i64 = tx
                    .query_one(
                        "SELECT count(*) FROM image_dbs WHERE tenant = $1",
                        &[&db.tenant],
                    )?
                    .get(0);
                let exists = find_db(&mut tx, db, "")?.is_some();
                if !exists && count_from_sql(held, "database count")? >= limit {
                    return Err(StoreError::TenantDatabaseQuota { limit });
                }
            }
            let inserted = tx.execute(
                "INSERT INTO image_dbs(tenant, name, created_at, descriptors)
                 VALUES ($1, $2, $3, $4) ON CONFLICT (tenant, name) DO NOTHING",
                &[&db.tenant, &db.name, &created_at, &descriptors.code()],
            )?;
            if inserted == 0 {
                return Err(StoreError::DbExists(db.name.to_owned()));
            }
            tx.commit()?;
            Ok(DbInfo {
                tenant: db.tenant.to_owned(),
                name: db.name.to_owned(),
                created_at,
                image_count: 0,
                dim: None,
                descriptors,
            })
        })
    }

    fn get_db(&self, db: DbRef<'_>) -> Result<Option<DbInfo>, StoreError> {
        self.with(|conn| Ok(find_db(conn, db, "")?.map(|row| row.info)))
    }

    fn list_dbs(&self, tenant: &str) -> Result<Vec<DbInfo>, StoreError> {
        self.with(|conn| list_dbs_where(conn, "WHERE tenant = $1", &[&tenant]))
    }

    fn list_all_dbs(&self) -> Result<Vec<DbInfo>, StoreError> {
        self.with(|conn| list_dbs_where(conn, "", &[]))
    }

    fn delete_db(&self, db: DbRef<'_>) -> Result<(), StoreError> {
        self.with(|conn| {
            // Images, vectors and thumbnails go by ON DELETE CASCADE, in this one statement.
            let deleted = conn.execute(
                "DELETE FROM image_dbs WHERE tenant = $1 AND name = $2",
                &[&db.tenant, &db.name],
            )?;
            if deleted == 0 {
                return Err(StoreError::DbNotFound(db.name.to_owned()));
            }
            Ok(())
        })
    }

    fn add_images(
        &self,
        db: DbRef<'_>,
        images: &[NewImage<'_>],
    ) -> Result<Vec<ImageRecord>, StoreError> {
        check_embeddings(db, images)?;
        if images.is_empty() {
            // Nothing to write; still answer DbNotFound for a missing database.
            return self.with(|conn| require_db(conn, db, "").map(|_| Vec::new()));
        }
        self.with(|conn| {
            let mut tx = conn.transaction()?;
            let records = super::adds::insert_images(&mut tx, &self.options, db, images)?;
            tx.commit()?;
            Ok(records)
        })
    }

    fn delete_entity(&self, db: DbRef<'_>, entity_id: &str) -> Result<Vec<DataId>, StoreError> {
        self.delete_where(db, "entity_id = $2", &entity_id)
    }

    fn delete_images(&self, db: DbRef<'_>, ids: &[DataId]) -> Result<Vec<DataId>, StoreError> {
        self.delete_where(db, "data_id = ANY($2)", &sql_ids(ids))
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
        self.with(|conn| {
            // One snapshot: the page and the count agree.
            let mut tx = snapshot(conn)?;
            let row = require_db(&mut tx, db, "")?;
            let mut sql = Sql::default();
            let p = sql.arg(row.id);
            sql.push(&format!("db_id = {p}"));
            let prefix = query.entity_id_prefix.filter(|p| !p.is_empty());
            if let Some(prefix) = prefix {
                // entity_id is COLLATE "C": bytewise, so this range is exactly the prefix.
                let p = sql.arg(prefix.to_owned());
                sql.push(&format!(" AND entity_id >= {p}"));
                if let Some(upper) = prefix_successor(prefix) {
                    let p = sql.arg(upper);
                    sql.push(&format!(" AND entity_id < {p}"));
                }
            }
            if let Some(f) = query.filter {
                sql.push(" AND ");
                push_filter(f, &mut sql);
            }
            let total_count = if prefix.is_some() || query.filter.is_some() {
                let n: i64 = tx
                    .query_one(
                        &format!("SELECT count(*) FROM images WHERE {}", sql.text),
                        &sql.args(),
                    )?
                    .try_get(0)?;
                count_from_sql(n, "count")?
            } else {
                row.info.image_count
            };
            let (cmp, dir) = match query.order {
                Order::Asc => (">", "ASC"),
                Order::Desc => ("<", "DESC"),
            };
            if let Some(after) = query.after {
                let p = sql.arg(sql_id(after));
                sql.push(&format!(" AND data_id {cmp} {p}"));
            }
            // One extra row tells whether another page follows.
            let want = usize::try_from(query.limit).unwrap_or(usize::MAX);
            let limit = sql.arg(i64::from(query.limit) + 1);
            let offset = sql.arg(i64::try_from(query.offset).unwrap_or(i64::MAX));
            let rows = tx.query(
                &format!(
                    "SELECT {IMAGE_COLUMNS} FROM images WHERE {}
                     ORDER BY data_id {dir} LIMIT {limit} OFFSET {offset}",
                    sql.text
                ),
                &sql.args(),
            )?;
            tx.commit()?;
            let has_more = rows.len() > want;
            let images = rows
                .iter()
                .take(want)
                .map(image_from)
                .collect::<Result<Vec<_>, _>>()?;
            Ok(ImagePage {
                images,
                total_count,
                has_more,
            })
        })
    }

    fn get_images(&self, db: DbRef<'_>, ids: &[DataId]) -> Result<Vec<ImageRecord>, StoreError> {
        self.with(|conn| {
            let mut tx = snapshot(conn)?;
            let row = require_db(&mut tx, db, "")?;
            let rows = tx.query(
                &format!(
                    "SELECT {IMAGE_COLUMNS} FROM images WHERE db_id = $1 AND data_id = ANY($2)"
                ),
                &[&row.id, &sql_ids(ids)],
            )?;
            tx.commit()?;
            let mut found: HashMap<DataId, ImageRecord> = HashMap::with_capacity(rows.len());
            for r in &rows {
                let record = image_from(r)?;
                found.insert(record.data_id, record);
            }
            // In the order given (an id given twice comes twice, as with SQLite).
            Ok(ids.iter().filter_map(|id| found.get(id).cloned()).collect())
        })
    }

    fn get_thumbnail(&self, db: DbRef<'_>, id: DataId) -> Result<Option<Vec<u8>>, StoreError> {
        self.with(|conn| {
            // The join keeps tenants apart: the id must belong to this tenant's database.
            let row = conn.query_opt(
                "SELECT t.jpeg FROM image_thumbnails t
                 JOIN images i ON i.data_id = t.data_id
                 JOIN image_dbs d ON d.id = i.db_id
                 WHERE t.data_id = $1 AND d.tenant = $2 AND d.name = $3",
                &[&sql_id(id), &db.tenant, &db.name],
            )?;
            if row.is_none() && find_db(conn, db, "")?.is_none() {
                return Err(StoreError::DbNotFound(db.name.to_owned()));
            }
            Ok(row.map(|r| r.try_get(0)).transpose()?)
        })
    }

    fn thumbnail_by_id(&self, id: DataId) -> Result<Option<Vec<u8>>, StoreError> {
        self.with(|conn| {
            Ok(conn
                .query_opt(
                    "SELECT jpeg FROM image_thumbnails WHERE data_id = $1",
                    &[&sql_id(id)],
                )?
                .map(|r| r.try_get(0))
                .transpose()?)
        })
    }

    fn update_images(
        &self,
        db: DbRef<'_>,
        which: ImageSelector<'_>,
        update: &ImageUpdate<'_>,
    ) -> Result<Vec<ImageRecord>, StoreError> {
        self.with(|conn| {
            let mut tx = conn.transaction()?;
            let row = require_db(&mut tx, db, "")?;
            let mut sql = Sql::default();
            let p = sql.arg(now_millis());
            sql.push(&format!("updated_at = {p}"));
            if let Some(extra) = update.extra_data {
                let p = sql.arg(extra.to_owned());
                sql.push(&format!(", extra_data = {p}"));
            }
            for (slot, v) in update.attributes.ints.iter().enumerate() {
                if let Some(v) = v {
                    let p = sql.arg(*v);
                    sql.push(&format!(", {} = {p}", Slot::Int(slot).filter_name()));
                }
            }
            for (slot, v) in update.attributes.strs.iter().enumerate() {
                if let Some(v) = v {
                    let p = sql.arg(v.clone());
                    sql.push(&format!(", {} = {p}", Slot::Str(slot).filter_name()));
                }
            }
            let scope = match which {
                ImageSelector::DataId(id) => format!("data_id = {}", sql.arg(sql_id(id))),
                ImageSelector::Entity(entity) => {
                    format!("entity_id = {}", sql.arg(entity.to_owned()))
                }
            };
            let db_id = sql.arg(row.id);
            let rows = tx.query(
                &format!(
                    "UPDATE images SET {} WHERE {scope} AND db_id = {db_id}
                     RETURNING {IMAGE_COLUMNS}",
                    sql.text
                ),
                &sql.args(),
            )?;
            let mut records = rows.iter().map(image_from).collect::<Result<Vec<_>, _>>()?;
            tx.commit()?;
            records.sort_by_key(|r| r.data_id);
            Ok(records)
        })
    }

    fn for_each_attributes(
        &self,
        db: DbRef<'_>,
        visit: &mut dyn FnMut(DataId, Attributes),
    ) -> Result<u64, StoreError> {
        self.with(|conn| {
            let mut tx = snapshot(conn)?;
            let row = require_db(&mut tx, db, "")?;
            let any_set = ATTRIBUTE_COLUMNS
                .split(", ")
                .map(|c| format!("{c} IS NOT NULL"))
                .collect::<Vec<_>>()
                .join(" OR ");
            let mut rows = tx.query_raw(
                &format!(
                    "SELECT data_id, {ATTRIBUTE_COLUMNS} FROM images
                     WHERE db_id = $1 AND ({any_set}) ORDER BY data_id"
                ),
                [row.id],
            )?;
            let mut n = 0;
            while let Some(r) = rows.next()? {
                visit(data_id_from_sql(r.try_get(0)?)?, attributes_from(&r, 1)?);
                n += 1;
            }
            drop(rows);
            tx.commit()?;
            Ok(n)
        })
    }

    fn first_image_of_entity(
        &self,
        db: DbRef<'_>,
        entity_id: &str,
    ) -> Result<Option<DataId>, StoreError> {
        self.with(|conn| {
            let mut tx = snapshot(conn)?;
            let row = require_db(&mut tx, db, "")?;
            let id: Option<i64> = tx
                .query_one(
                    "SELECT MIN(data_id) FROM images WHERE db_id = $1 AND entity_id = $2",
                    &[&row.id, &entity_id],
                )?
                .try_get(0)?;
            tx.commit()?;
            id.map(data_id_from_sql).transpose()
        })
    }

    fn list_ids(&self, db: DbRef<'_>, kind: Descriptor) -> Result<Vec<DataId>, StoreError> {
        self.with(|conn| {
            let mut tx = snapshot(conn)?;
            let row = require_db(&mut tx, db, "")?;
            let sql = match kind {
                Descriptor::Semantic => {
                    "SELECT data_id FROM images WHERE db_id = $1 ORDER BY data_id"
                }
                Descriptor::Copy => {
                    "SELECT i.data_id FROM images i
                     JOIN image_copy_vectors c ON c.data_id = i.data_id
                     WHERE i.db_id = $1 ORDER BY i.data_id"
                }
            };
            let mut out = Vec::with_capacity(usize::try_from(row.info.image_count).unwrap_or(0));
            let mut rows = tx.query_raw(sql, [row.id])?;
            while let Some(r) = rows.next()? {
                out.push(data_id_from_sql(r.try_get(0)?)?);
            }
            drop(rows);
            tx.commit()?;
            Ok(out)
        })
    }

    fn get_embeddings(
        &self,
        db: DbRef<'_>,
        kind: Descriptor,
        ids: &[DataId],
    ) -> Result<EmbeddingSet, StoreError> {
        self.with(|conn| {
            let mut tx = snapshot(conn)?;
            let row = require_db(&mut tx, db, "")?;
            let (table, want_dim) = vector_table(kind, row.info.dim);
            // The join keeps tenants apart: the id must belong to this tenant's database.
            let rows = tx.query(
                &format!(
                    "SELECT v.data_id, v.vec FROM {table} v JOIN images i ON i.data_id = v.data_id
                     WHERE i.db_id = $1 AND v.data_id = ANY($2)"
                ),
                &[&row.id, &sql_ids(ids)],
            )?;
            tx.commit()?;
            let mut found: HashMap<DataId, Vec<f32>> = HashMap::with_capacity(rows.len());
            for r in &rows {
                let id = data_id_from_sql(r.try_get(0)?)?;
                let blob: &[u8] = r.try_get(1)?;
                let mut v = Vec::new();
                decode_embedding(blob, want_dim, &mut v)
                    .map_err(|e| StoreError::Corrupt(format!("image {id}: {e}")))?;
                found.insert(id, v);
            }
            let dim = want_dim.unwrap_or(0);
            let mut set = EmbeddingSet {
                dim,
                ids: Vec::with_capacity(found.len()),
                vectors: Vec::with_capacity(found.len() * dim),
            };
            for &id in ids {
                if let Some(v) = found.get(&id) {
                    set.ids.push(id);
                    set.vectors.extend_from_slice(v);
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
        self.with(|conn| {
            let mut tx = snapshot(conn)?;
            let row = require_db(&mut tx, db, "")?;
            let (table, mut dim) = vector_table(kind, row.info.dim);
            // LEFT JOIN so that an image that lost its semantic vector is reported, not
            // silently skipped; images stored before copy descriptors existed have none.
            let join = match kind {
                Descriptor::Semantic => "LEFT JOIN",
                Descriptor::Copy => "JOIN",
            };
            // Streamed (query_raw): a large database is never held in memory as rows.
            let mut rows = tx.query_raw(
                &format!(
                    "SELECT i.data_id, v.vec FROM images i
                     {join} {table} v ON v.data_id = i.data_id
                     WHERE i.db_id = $1 ORDER BY i.data_id"
                ),
                [row.id],
            )?;
            let mut buf: Vec<f32> = Vec::with_capacity(dim.unwrap_or(0));
            let mut visited = 0u64;
            while let Some(r) = rows.next()? {
                let id = data_id_from_sql(r.try_get(0)?)?;
                let blob: Option<&[u8]> = r.try_get(1)?;
                let blob = blob
                    .ok_or_else(|| StoreError::Corrupt(format!("image {id} has no embedding")))?;
                decode_embedding(blob, dim, &mut buf)
                    .map_err(|e| StoreError::Corrupt(format!("image {id}: {e}")))?;
                // Without a recorded dimension, the first vector sets it for the rest.
                dim = Some(buf.len());
                visit(id, &buf);
                visited += 1;
            }
            drop(rows);
            tx.commit()?;
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
        self.with(|conn| {
            let mut tx = conn.transaction()?;
            let row = require_db(&mut tx, db, "")?;
            // Only images of this database, and never over a descriptor already there.
            let insert = tx.prepare(
                "INSERT INTO image_copy_vectors(data_id, vec)
                 SELECT data_id, $2 FROM images WHERE data_id = $1 AND db_id = $3
                 ON CONFLICT (data_id) DO NOTHING",
            )?;
            let mut stored = Vec::new();
            let mut blob = Vec::new();
            for (id, v) in vectors {
                encode_embedding(v, &mut blob);
                if tx.execute(&insert, &[&sql_id(*id), &blob, &row.id])? > 0 {
                    stored.push(*id);
                }
            }
            tx.commit()?;
            Ok(stored)
        })
    }

    fn ids_without_copy(
        &self,
        db: DbRef<'_>,
        after: Option<DataId>,
        limit: usize,
    ) -> Result<Vec<DataId>, StoreError> {
        self.with(|conn| {
            let mut tx = snapshot(conn)?;
            let row = require_db(&mut tx, db, "")?;
            let after = after.map_or(-1, sql_id);
            let limit = i64::try_from(limit).unwrap_or(i64::MAX);
            let rows = tx.query(
                "SELECT i.data_id FROM images i
                 WHERE i.db_id = $1 AND i.data_id > $2
                   AND NOT EXISTS (SELECT 1 FROM image_copy_vectors c WHERE c.data_id = i.data_id)
                 ORDER BY i.data_id LIMIT $3",
                &[&row.id, &after, &limit],
            )?;
            tx.commit()?;
            rows.iter()
                .map(|r| data_id_from_sql(r.try_get(0)?))
                .collect()
        })
    }

    fn put_upload(&self, upload: &NewUpload<'_>, tenant_max_bytes: u64) -> Result<(), StoreError> {
        self.put_upload_row(upload, tenant_max_bytes)
    }

    fn get_upload(&self, tenant: &str, key: &str, now: i64) -> Result<Option<Vec<u8>>, StoreError> {
        self.get_upload_row(tenant, key, now)
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
