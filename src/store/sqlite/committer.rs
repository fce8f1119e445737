//! Group commit of adds: the committer thread takes the adds queued while the previous
//! commit was fsynced, commits them in one transaction (a savepoint each), then answers.
//! Not here: the other writes, which callers run on the writer connection directly.

use super::rows::{encode_embedding, require_db, sql_id};
use super::{lock, now_micros, now_millis, DataIdGen, Writer};
use crate::embedding::COPY_DIM;
use crate::store::{Attributes, DbRef, ImageRecord, NewImage, StoreError, StoreOptions};
use rusqlite::{params, Connection, TransactionBehavior};
use std::sync::{mpsc, Mutex};

/// Checks what needs no database: non-empty, finite vectors of one length.
pub(in crate::store) fn check_embeddings(
    db: DbRef<'_>,
    images: &[NewImage<'_>],
) -> Result<(), StoreError> {
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
        if let Some(copy) = image.copy_embedding {
            check_copy_embedding(copy)?;
        }
    }
    Ok(())
}

/// A copy descriptor must be `COPY_DIM` finite floats.
pub(in crate::store) fn check_copy_embedding(v: &[f32]) -> Result<(), StoreError> {
    if v.len() != COPY_DIM {
        return Err(StoreError::Invalid(format!(
            "a copy descriptor has {} dimensions, not {COPY_DIM}",
            v.len()
        )));
    }
    if !v.iter().all(|x| x.is_finite()) {
        return Err(StoreError::Invalid(
            "a copy descriptor holds a NaN or infinite value".into(),
        ));
    }
    Ok(())
}

/// One caller's `add_images`, waiting in the group-commit queue. Owns copies of the images
/// (about 5 kB per 1280-d vector plus the thumbnail) because the committer thread, not the
/// caller, writes them.
pub(super) struct PendingAdd {
    pub(super) tenant: String,
    pub(super) name: String,
    pub(super) images: Vec<OwnedImage>,
    pub(super) reply: mpsc::Sender<Result<Vec<ImageRecord>, StoreError>>,
}

pub(super) struct OwnedImage {
    pub(super) entity_id: String,
    pub(super) extra_data: String,
    pub(super) image_url: String,
    pub(super) embedding: Vec<f32>,
    pub(super) copy_embedding: Option<Vec<f32>>,
    pub(super) thumbnail: Option<Vec<u8>>,
    pub(super) attributes: Attributes,
}

impl From<&NewImage<'_>> for OwnedImage {
    fn from(i: &NewImage<'_>) -> Self {
        OwnedImage {
            entity_id: i.entity_id.to_owned(),
            extra_data: i.extra_data.to_owned(),
            image_url: i.image_url.to_owned(),
            embedding: i.embedding.to_vec(),
            copy_embedding: i.copy_embedding.map(<[f32]>::to_vec),
            thumbnail: i.thumbnail.map(<[u8]>::to_vec),
            attributes: i.attributes.clone(),
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
            copy_embedding: self.copy_embedding.as_deref(),
            thumbnail: self.thumbnail.as_deref(),
            attributes: &self.attributes,
        }
    }
}

/// Adds one group commits at most, bounding a transaction's size and a caller's wait.
pub(super) const MAX_GROUP_IMAGES: usize = 256;

/// The committer thread: waits for an add, gathers whatever else is queued, commits the group.
/// Alone, an add is committed at once (no added latency); under load, the adds that arrive
/// during one fsync go together in the next.
pub(super) fn run_committer(
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
pub(super) fn commit_group(writer: &mut Writer, options: &StoreOptions, group: Vec<PendingAdd>) {
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
pub(super) fn insert_images(
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
    if let Some(limit) = options.max_images_per_tenant {
        let held: i64 = conn
            .prepare_cached(
                "SELECT COALESCE(SUM(image_count), 0) FROM image_dbs WHERE tenant = ?1",
            )?
            .query_row(params![db.tenant], |r| r.get(0))?;
        let held = u64::try_from(held).unwrap_or(0);
        if held.saturating_add(added) > limit {
            return Err(StoreError::TenantImageQuota { held, limit });
        }
    }
    let mut insert_image = conn.prepare_cached(
        "INSERT INTO images(data_id, db_id, entity_id, extra_data, image_url,
                            created_at, updated_at,
                            int_attr, int_attr2, int_attr3, int_attr4,
                            str_attr, str_attr2, str_attr3, str_attr4)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14)",
    )?;
    let mut insert_vec =
        conn.prepare_cached("INSERT INTO image_vectors(data_id, vec) VALUES (?1, ?2)")?;
    let mut insert_copy =
        conn.prepare_cached("INSERT INTO image_copy_vectors(data_id, vec) VALUES (?1, ?2)")?;
    let mut insert_thumb =
        conn.prepare_cached("INSERT INTO image_thumbnails(data_id, jpeg) VALUES (?1, ?2)")?;
    let mut records = Vec::with_capacity(images.len());
    let mut blob = Vec::new();
    for image in images {
        let data_id = ids.next(now_micros())?;
        let created_at = now_millis();
        let key = sql_id(data_id);
        let (ints, strs) = (&image.attributes.ints, &image.attributes.strs);
        insert_image.execute(params![
            key,
            row.id,
            image.entity_id,
            image.extra_data,
            image.image_url,
            created_at,
            ints[0],
            ints[1],
            ints[2],
            ints[3],
            strs[0],
            strs[1],
            strs[2],
            strs[3],
        ])?;
        encode_embedding(image.embedding, &mut blob);
        insert_vec.execute(params![key, blob])?;
        if let Some(copy) = image.copy_embedding {
            encode_embedding(copy, &mut blob);
            insert_copy.execute(params![key, blob])?;
        }
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
            attributes: image.attributes.clone(),
        });
    }
    conn.prepare_cached(
        "UPDATE image_dbs SET image_count = image_count + ?1, dim = ?2 WHERE id = ?3",
    )?
    .execute(params![added as i64, dim as i64, row.id])?;
    Ok(records)
}
