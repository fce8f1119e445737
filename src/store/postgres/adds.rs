//! The add path of the PostgreSQL store: the next `DataId`s from the counter row, the checks
//! made under its lock (database, dimension, quotas), then every row of the call in one
//! statement (multi-row inserts from arrays, `unnest`), so that an add costs a fixed number
//! of round trips whatever its size. Not here: the other writes (`image_store`).

use postgres::Transaction;

use super::image_store::WRITE_LOCK;
use super::now_millis;
use super::rows::{data_id_from_sql, encode_embedding, require_db};
use super::schema::DATA_ID_KEY;
use crate::store::{DbRef, ImageRecord, NewImage, StoreError, StoreOptions};

/// Inserts one call's images inside `tx`: takes the next ids from the counter (its row lock,
/// held until commit, serialises adds store-wide so that id order is commit order, on every
/// node), then checks the database (locked), its dimension and the quotas, then writes the
/// images, their vectors and thumbnails and the new count in one statement.
pub(super) fn insert_images(
    tx: &mut Transaction<'_>,
    options: &StoreOptions,
    db: DbRef<'_>,
    images: &[NewImage<'_>],
) -> Result<Vec<ImageRecord>, StoreError> {
    let added = images.len() as i64;
    // The first id is max(last + 1, the server's clock in µs), the others follow it: one
    // clock for every node.
    let last: i64 = tx
        .query_one(
            "UPDATE store_meta
             SET value = GREATEST(value + $1,
                 (extract(epoch FROM clock_timestamp()) * 1000000)::BIGINT + $1 - 1)
             WHERE key = $2 RETURNING value",
            &[&added, &DATA_ID_KEY],
        )?
        .try_get(0)?;
    let first = last - added + 1;
    // Read after the counter's lock was granted: sees every add committed before it.
    let row = require_db(tx, db, WRITE_LOCK)?;
    let dim = images.first().map_or(0, |i| i.embedding.len());
    if let Some(expected) = row.info.dim {
        if expected != dim {
            return Err(StoreError::DimensionMismatch {
                db: db.name.to_owned(),
                expected,
                got: dim,
            });
        }
    }
    let added_u = images.len() as u64;
    if let Some(limit) = options.max_images_per_db {
        if row.info.image_count.saturating_add(added_u) > limit {
            return Err(StoreError::DbFull {
                db: db.name.to_owned(),
                limit,
            });
        }
    }
    if let Some(limit) = options.max_images_per_tenant {
        let held: i64 = tx
            .query_one(
                "SELECT COALESCE(SUM(image_count), 0)::BIGINT FROM image_dbs WHERE tenant = $1",
                &[&db.tenant],
            )?
            .try_get(0)?;
        let held = u64::try_from(held).unwrap_or(0);
        if held.saturating_add(added_u) > limit {
            return Err(StoreError::TenantImageQuota { held, limit });
        }
    }

    let keys: Vec<i64> = (first..=last).collect();
    let created: Vec<i64> = images.iter().map(|_| now_millis()).collect();
    let column = |f: &dyn Fn(&NewImage<'_>) -> Option<i64>| -> Vec<Option<i64>> {
        images.iter().map(f).collect()
    };
    let (int1, int2, int3, int4) = (
        column(&|i| i.attributes.ints[0]),
        column(&|i| i.attributes.ints[1]),
        column(&|i| i.attributes.ints[2]),
        column(&|i| i.attributes.ints[3]),
    );
    let text = |f: &dyn Fn(&NewImage<'_>) -> Option<String>| -> Vec<Option<String>> {
        images.iter().map(f).collect()
    };
    let (str1, str2, str3, str4) = (
        text(&|i| i.attributes.strs[0].clone()),
        text(&|i| i.attributes.strs[1].clone()),
        text(&|i| i.attributes.strs[2].clone()),
        text(&|i| i.attributes.strs[3].clone()),
    );
    let entity: Vec<&str> = images.iter().map(|i| i.entity_id).collect();
    let extra: Vec<&str> = images.iter().map(|i| i.extra_data).collect();
    let url: Vec<&str> = images.iter().map(|i| i.image_url).collect();
    let vectors: Vec<Vec<u8>> = images.iter().map(|i| encoded(i.embedding)).collect();
    let (mut copy_keys, mut copies) = (Vec::new(), Vec::new());
    let (mut thumb_keys, mut thumbs): (Vec<i64>, Vec<&[u8]>) = (Vec::new(), Vec::new());
    for (&key, image) in keys.iter().zip(images) {
        if let Some(copy) = image.copy_embedding {
            copy_keys.push(key);
            copies.push(encoded(copy));
        }
        if let Some(jpeg) = image.thumbnail {
            thumb_keys.push(key);
            thumbs.push(jpeg);
        }
    }
    // One statement: foreign keys are checked at its end, when the images are there.
    tx.execute(
        "WITH new_images AS (
            INSERT INTO images(data_id, db_id, entity_id, extra_data, image_url,
                               created_at, updated_at,
                               int_attr, int_attr2, int_attr3, int_attr4,
                               str_attr, str_attr2, str_attr3, str_attr4)
            SELECT u.k, $1, u.e, u.x, u.url, u.c, u.c, u.i1, u.i2, u.i3, u.i4,
                   u.s1, u.s2, u.s3, u.s4
            FROM unnest($2::BIGINT[], $3::TEXT[], $4::TEXT[], $5::TEXT[], $6::BIGINT[],
                        $7::BIGINT[], $8::BIGINT[], $9::BIGINT[], $10::BIGINT[],
                        $11::TEXT[], $12::TEXT[], $13::TEXT[], $14::TEXT[])
                 AS u(k, e, x, url, c, i1, i2, i3, i4, s1, s2, s3, s4)
         ), new_vectors AS (
            INSERT INTO image_vectors(data_id, vec)
            SELECT * FROM unnest($2::BIGINT[], $15::BYTEA[])
         ), new_copies AS (
            INSERT INTO image_copy_vectors(data_id, vec)
            SELECT * FROM unnest($16::BIGINT[], $17::BYTEA[])
         ), new_thumbnails AS (
            INSERT INTO image_thumbnails(data_id, jpeg)
            SELECT * FROM unnest($18::BIGINT[], $19::BYTEA[])
         )
         UPDATE image_dbs SET image_count = image_count + $20, dim = $21 WHERE id = $1",
        &[
            &row.id,
            &keys,
            &entity,
            &extra,
            &url,
            &created,
            &int1,
            &int2,
            &int3,
            &int4,
            &str1,
            &str2,
            &str3,
            &str4,
            &vectors,
            &copy_keys,
            &copies,
            &thumb_keys,
            &thumbs,
            &added,
            &(dim as i64),
        ],
    )?;
    keys.iter()
        .zip(&created)
        .zip(images)
        .map(|((&key, &created_at), image)| {
            Ok(ImageRecord {
                data_id: data_id_from_sql(key)?,
                entity_id: image.entity_id.to_owned(),
                extra_data: image.extra_data.to_owned(),
                image_url: image.image_url.to_owned(),
                created_at,
                updated_at: created_at,
                attributes: image.attributes.clone(),
            })
        })
        .collect()
}

fn encoded(v: &[f32]) -> Vec<u8> {
    let mut out = Vec::new();
    encode_embedding(v, &mut out);
    out
}
