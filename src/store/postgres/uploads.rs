//! Uploaded files (the SDK's Advance calls) in the `uploads` table: put with the owner's
//! byte quota checked inside the write (under a per-tenant advisory lock, so two nodes
//! cannot both pass it), read by owner only, dropped when expired. Same rules as the SQLite
//! store's `uploads`.
//!
//! Not here: the upload policy or the HTTP form (`api::upload`), which objects a URL names
//! (`service::uploads`).

use super::schema::{lock_key, LOCK_CLASS};
use super::PgStore;
use crate::store::{NewUpload, StoreError};

impl PgStore {
    pub(super) fn put_upload_row(
        &self,
        upload: &NewUpload<'_>,
        tenant_max_bytes: u64,
    ) -> Result<(), StoreError> {
        self.with(|conn| {
            let mut tx = conn.transaction()?;
            tx.execute(
                "SELECT pg_advisory_xact_lock($1, $2)",
                &[
                    &(LOCK_CLASS + 2),
                    &lock_key(&self.schema, &format!("upload:{}", upload.tenant)),
                ],
            )?;
            // Expired objects go first, so that they never count against a quota.
            tx.execute("DELETE FROM uploads WHERE expires_at <= $1", &[&upload.now])?;
            let owner: Option<String> = tx
                .query_opt("SELECT tenant FROM uploads WHERE key = $1", &[&upload.key])?
                .map(|r| r.try_get(0))
                .transpose()?;
            if owner.as_deref().is_some_and(|o| o != upload.tenant) {
                return Err(in_use(upload.key));
            }
            // Bytes held by the owner's other objects (a re-upload replaces its own).
            let held: i64 = tx
                .query_one(
                    "SELECT COALESCE(SUM(octet_length(bytes)), 0)::BIGINT FROM uploads
                     WHERE tenant = $1 AND key <> $2",
                    &[&upload.tenant, &upload.key],
                )?
                .try_get(0)?;
            let held = u64::try_from(held).unwrap_or(0);
            if held + upload.bytes.len() as u64 > tenant_max_bytes {
                return Err(StoreError::TenantUploadQuota {
                    held,
                    limit: tenant_max_bytes,
                });
            }
            // The WHERE keeps another tenant's object that appeared meanwhile (its own lock
            // did not stop it) from being overwritten.
            let written = tx.execute(
                "INSERT INTO uploads (key, tenant, bytes, created_at, expires_at)
                 VALUES ($1, $2, $3, $4, $5)
                 ON CONFLICT (key) DO UPDATE SET
                   bytes = excluded.bytes, created_at = excluded.created_at,
                   expires_at = excluded.expires_at
                 WHERE uploads.tenant = excluded.tenant",
                &[
                    &upload.key,
                    &upload.tenant,
                    &upload.bytes,
                    &upload.now,
                    &upload.expires_at,
                ],
            )?;
            if written == 0 {
                return Err(in_use(upload.key));
            }
            tx.commit()?;
            Ok(())
        })
    }

    pub(super) fn get_upload_row(
        &self,
        tenant: &str,
        key: &str,
        now: i64,
    ) -> Result<Option<Vec<u8>>, StoreError> {
        self.with(|conn| {
            Ok(conn
                .query_opt(
                    "SELECT bytes FROM uploads WHERE key = $1 AND tenant = $2 AND expires_at > $3",
                    &[&key, &tenant, &now],
                )?
                .map(|r| r.try_get(0))
                .transpose()?)
        })
    }
}

fn in_use(key: &str) -> StoreError {
    StoreError::Invalid(format!("upload key {key:?} is in use"))
}
