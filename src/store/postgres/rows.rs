//! Mapping between PostgreSQL rows and the store's types: column lists, database and image
//! rows, a small builder for SQL with numbered parameters. The conversions and checks that
//! do not depend on the engine (id and count ranges, descriptor codes, embedding bytes) are
//! the SQLite store's (`store::sqlite::rows`), so both backends accept and refuse the same.
//! Not here: SQL that changes data.

use postgres::types::ToSql;
use postgres::{GenericClient, Row};

pub(super) use crate::store::sqlite::rows::{
    count_from_sql, data_id_from_sql, decode_embedding, encode_embedding, prefix_successor, sql_id,
    DbRow,
};
use crate::store::sqlite::rows::{db_row_convert, DbRaw};
use crate::store::{Attributes, DbInfo, DbRef, ImageRecord, StoreError};

pub(super) const IMAGE_COLUMNS: &str =
    "data_id, entity_id, extra_data, image_url, created_at, updated_at, \
     int_attr, int_attr2, int_attr3, int_attr4, str_attr, str_attr2, str_attr3, str_attr4";
/// The attribute columns, in `Attributes` order (ints, then strings), named as the `Filter`
/// grammar names them (`Slot::filter_name`).
pub(super) const ATTRIBUTE_COLUMNS: &str =
    "int_attr, int_attr2, int_attr3, int_attr4, str_attr, str_attr2, str_attr3, str_attr4";
const DB_COLUMNS: &str = "id, tenant, name, created_at, image_count, dim, descriptors";

/// SQL text with `$n` parameters and their values, built piece by piece.
#[derive(Default)]
pub(super) struct Sql {
    pub(super) text: String,
    args: Vec<Box<dyn ToSql + Sync + Send>>,
}

impl Sql {
    /// Binds `value` and returns its placeholder (`$n`).
    pub(super) fn arg(&mut self, value: impl ToSql + Sync + Send + 'static) -> String {
        self.args.push(Box::new(value));
        format!("${}", self.args.len())
    }

    pub(super) fn push(&mut self, text: &str) {
        self.text.push_str(text);
    }

    pub(super) fn args(&self) -> Vec<&(dyn ToSql + Sync)> {
        self.args
            .iter()
            .map(|a| a.as_ref() as &(dyn ToSql + Sync))
            .collect()
    }
}

fn db_row(row: &Row) -> Result<DbRow, StoreError> {
    let raw: DbRaw = (
        row.try_get(0)?,
        row.try_get(1)?,
        row.try_get(2)?,
        row.try_get(3)?,
        row.try_get(4)?,
        row.try_get(5)?,
        row.try_get(6)?,
    );
    db_row_convert(raw)
}

/// The database row, optionally locked (`lock`: "FOR NO KEY UPDATE" to serialise writers).
pub(super) fn find_db(
    conn: &mut impl GenericClient,
    db: DbRef<'_>,
    lock: &str,
) -> Result<Option<DbRow>, StoreError> {
    conn.query_opt(
        &format!("SELECT {DB_COLUMNS} FROM image_dbs WHERE tenant = $1 AND name = $2 {lock}"),
        &[&db.tenant, &db.name],
    )?
    .as_ref()
    .map(db_row)
    .transpose()
}

pub(super) fn require_db(
    conn: &mut impl GenericClient,
    db: DbRef<'_>,
    lock: &str,
) -> Result<DbRow, StoreError> {
    find_db(conn, db, lock)?.ok_or_else(|| StoreError::DbNotFound(db.name.to_owned()))
}

pub(super) fn list_dbs_where(
    conn: &mut impl GenericClient,
    filter: &str,
    args: &[&(dyn ToSql + Sync)],
) -> Result<Vec<DbInfo>, StoreError> {
    conn.query(
        &format!("SELECT {DB_COLUMNS} FROM image_dbs {filter} ORDER BY tenant, name"),
        args,
    )?
    .iter()
    .map(|r| db_row(r).map(|d| d.info))
    .collect()
}

/// One image from a row of [`IMAGE_COLUMNS`].
pub(super) fn image_from(row: &Row) -> Result<ImageRecord, StoreError> {
    Ok(ImageRecord {
        data_id: data_id_from_sql(row.try_get(0)?)?,
        entity_id: row.try_get(1)?,
        extra_data: row.try_get(2)?,
        image_url: row.try_get(3)?,
        created_at: row.try_get(4)?,
        updated_at: row.try_get(5)?,
        attributes: attributes_from(row, 6)?,
    })
}

/// The eight attribute columns starting at column `first` ([`ATTRIBUTE_COLUMNS`] order).
pub(super) fn attributes_from(row: &Row, first: usize) -> Result<Attributes, StoreError> {
    let mut a = Attributes::NONE;
    for (i, v) in a.ints.iter_mut().enumerate() {
        *v = row.try_get(first + i)?;
    }
    for (i, v) in a.strs.iter_mut().enumerate() {
        *v = row.try_get(first + 4 + i)?;
    }
    Ok(a)
}

/// `DataId`s as the `BIGINT[]` parameter of `= ANY($n)`.
pub(super) fn sql_ids(ids: &[crate::store::DataId]) -> Vec<i64> {
    ids.iter().map(|&id| sql_id(id)).collect()
}
