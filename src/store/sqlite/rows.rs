//! Mapping between SQLite rows and the store's types: column lists, id and count
//! conversions, database and image rows, embedding BLOBs. Not here: SQL that changes data.

use crate::embedding::DbDescriptors;
use crate::store::{Attributes, DataId, DbInfo, DbRef, ImageRecord, StoreError};
use rusqlite::{params, Connection, OptionalExtension, Row};

pub(super) const IMAGE_COLUMNS: &str =
    "data_id, entity_id, extra_data, image_url, created_at, updated_at, \
     int_attr, int_attr2, int_attr3, int_attr4, str_attr, str_attr2, str_attr3, str_attr4";
/// The attribute columns, in `Attributes` order (ints, then strings); they are named as the
/// `Filter` grammar names the attributes (`Slot::filter_name`).
pub(super) const ATTRIBUTE_COLUMNS: &str =
    "int_attr, int_attr2, int_attr3, int_attr4, str_attr, str_attr2, str_attr3, str_attr4";
/// `DataId` guarantees the value fits an i64.
pub(in crate::store) fn sql_id(id: DataId) -> i64 {
    i64::try_from(id.as_u64()).unwrap_or(i64::MAX)
}

pub(in crate::store) fn data_id_from_sql(v: i64) -> Result<DataId, StoreError> {
    u64::try_from(v)
        .ok()
        .and_then(DataId::from_u64)
        .ok_or_else(|| StoreError::Corrupt(format!("invalid stored data id {v}")))
}

pub(in crate::store) fn count_from_sql(v: i64, what: &str) -> Result<u64, StoreError> {
    u64::try_from(v).map_err(|_| StoreError::Corrupt(format!("negative {what} {v}")))
}

/// The smallest string greater than every string that starts with `prefix`, or `None` when
/// there is none (all characters are `char::MAX`). SQLite compares TEXT bytewise and UTF-8
/// byte order is code point order, so `prefix <= s < successor` is exactly "s starts with
/// prefix", with no special meaning for `_` or `%` (unlike LIKE) and usable on the index.
pub(in crate::store) fn prefix_successor(prefix: &str) -> Option<String> {
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

pub(in crate::store) struct DbRow {
    pub(in crate::store) id: i64,
    pub(in crate::store) info: DbInfo,
}

pub(super) fn db_row_from(row: &Row<'_>) -> rusqlite::Result<DbRaw> {
    Ok((
        row.get(0)?,
        row.get(1)?,
        row.get(2)?,
        row.get(3)?,
        row.get(4)?,
        row.get(5)?,
        row.get(6)?,
    ))
}

/// One `image_dbs` row as read, before checking (`DB_COLUMNS` order).
pub(in crate::store) type DbRaw = (i64, String, String, i64, i64, Option<i64>, i64);

pub(in crate::store) fn db_row_convert(raw: DbRaw) -> Result<DbRow, StoreError> {
    let (id, tenant, name, created_at, count, dim, descriptors) = raw;
    let descriptors = DbDescriptors::from_code(descriptors).ok_or_else(|| {
        StoreError::Corrupt(format!("unknown descriptor set {descriptors} of {name:?}"))
    })?;
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
            descriptors,
        },
    })
}

pub(super) const DB_COLUMNS: &str = "id, tenant, name, created_at, image_count, dim, descriptors";

pub(super) fn find_db(conn: &Connection, db: DbRef<'_>) -> Result<Option<DbRow>, StoreError> {
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT {DB_COLUMNS} FROM image_dbs WHERE tenant = ?1 AND name = ?2"
    ))?;
    let raw = stmt
        .query_row(params![db.tenant, db.name], db_row_from)
        .optional()?;
    raw.map(db_row_convert).transpose()
}

pub(super) fn require_db(conn: &Connection, db: DbRef<'_>) -> Result<DbRow, StoreError> {
    find_db(conn, db)?.ok_or_else(|| StoreError::DbNotFound(db.name.to_owned()))
}

pub(super) fn list_dbs_where(
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

pub(super) struct RawImage {
    data_id: i64,
    entity_id: String,
    extra_data: String,
    image_url: String,
    created_at: i64,
    updated_at: i64,
    attributes: Attributes,
}

pub(super) fn image_from(row: &Row<'_>) -> rusqlite::Result<RawImage> {
    Ok(RawImage {
        data_id: row.get(0)?,
        entity_id: row.get(1)?,
        extra_data: row.get(2)?,
        image_url: row.get(3)?,
        created_at: row.get(4)?,
        updated_at: row.get(5)?,
        attributes: attributes_from(row, 6)?,
    })
}

/// The eight attribute columns starting at column `first` ([`ATTRIBUTE_COLUMNS`] order).
pub(super) fn attributes_from(row: &Row<'_>, first: usize) -> rusqlite::Result<Attributes> {
    let mut a = Attributes::NONE;
    for (i, v) in a.ints.iter_mut().enumerate() {
        *v = row.get(first + i)?;
    }
    for (i, v) in a.strs.iter_mut().enumerate() {
        *v = row.get(first + 4 + i)?;
    }
    Ok(a)
}

pub(super) fn image_convert(raw: RawImage) -> Result<ImageRecord, StoreError> {
    Ok(ImageRecord {
        data_id: data_id_from_sql(raw.data_id)?,
        entity_id: raw.entity_id,
        extra_data: raw.extra_data,
        image_url: raw.image_url,
        created_at: raw.created_at,
        updated_at: raw.updated_at,
        attributes: raw.attributes,
    })
}

/// Decodes a little-endian f32 blob into `out` (cleared first), checking its size.
pub(in crate::store) fn decode_embedding(
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

pub(in crate::store) fn encode_embedding(v: &[f32], out: &mut Vec<u8>) {
    out.clear();
    out.reserve(v.len() * 4);
    for x in v {
        out.extend_from_slice(&x.to_le_bytes());
    }
}
