//! Uploaded files (the SDK's Advance calls) in the `uploads` table: put with the owner's
//! byte quota checked inside the write, read by owner only, dropped when expired.
//!
//! Not here: the upload policy or the HTTP form (`api::upload`), which objects a URL names
//! (`service::uploads`).

use rusqlite::{params, OptionalExtension, TransactionBehavior};

use super::SqliteStore;
use crate::store::{NewUpload, StoreError};

impl SqliteStore {
    pub(super) fn put_upload_row(
        &self,
        upload: &NewUpload<'_>,
        tenant_max_bytes: u64,
    ) -> Result<(), StoreError> {
        let mut guard = self.writer();
        let tx = guard
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        // Expired objects go first, so that they never count against a quota.
        tx.prepare_cached("DELETE FROM uploads WHERE expires_at <= ?1")?
            .execute(params![upload.now])?;
        let owner: Option<String> = tx
            .prepare_cached("SELECT tenant FROM uploads WHERE key = ?1")?
            .query_row(params![upload.key], |r| r.get(0))
            .optional()?;
        if owner.as_deref().is_some_and(|o| o != upload.tenant) {
            return Err(StoreError::Invalid(format!(
                "upload key {:?} is in use",
                upload.key
            )));
        }
        // Bytes held by the owner's other objects (a re-upload replaces its own).
        let held: i64 = tx
            .prepare_cached(
                "SELECT COALESCE(SUM(length(bytes)), 0) FROM uploads WHERE tenant = ?1 AND key != ?2",
            )?
            .query_row(params![upload.tenant, upload.key], |r| r.get(0))?;
        let held = u64::try_from(held).unwrap_or(0);
        if held + upload.bytes.len() as u64 > tenant_max_bytes {
            return Err(StoreError::TenantUploadQuota {
                held,
                limit: tenant_max_bytes,
            });
        }
        tx.prepare_cached(
            "INSERT INTO uploads (key, tenant, bytes, created_at, expires_at)
             VALUES (?1, ?2, ?3, ?4, ?5)
             ON CONFLICT (key) DO UPDATE SET
               bytes = excluded.bytes, created_at = excluded.created_at,
               expires_at = excluded.expires_at",
        )?
        .execute(params![
            upload.key,
            upload.tenant,
            upload.bytes,
            upload.now,
            upload.expires_at
        ])?;
        tx.commit()?;
        Ok(())
    }

    pub(super) fn get_upload_row(
        &self,
        tenant: &str,
        key: &str,
        now: i64,
    ) -> Result<Option<Vec<u8>>, StoreError> {
        self.with_reader(|conn| {
            Ok(conn
                .prepare_cached(
                    "SELECT bytes FROM uploads WHERE key = ?1 AND tenant = ?2 AND expires_at > ?3",
                )?
                .query_row(params![key, tenant, now], |r| r.get::<_, Vec<u8>>(0))
                .optional()?)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{ImageStore, StoreOptions};

    fn upload<'a>(tenant: &'a str, key: &'a str, bytes: &'a [u8], now: i64) -> NewUpload<'a> {
        NewUpload {
            tenant,
            key,
            bytes,
            now,
            expires_at: now + 100,
        }
    }

    #[test]
    fn the_byte_quota_counts_unexpired_uploads_of_the_owner_only() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open_with(dir.path(), StoreOptions::default()).unwrap();
        store
            .put_upload(&upload("a", "k1", &[0; 60], 1000), 100)
            .unwrap();
        store
            .put_upload(&upload("b", "k2", &[0; 60], 1000), 100)
            .unwrap();
        let e = store
            .put_upload(&upload("a", "k3", &[0; 60], 1000), 100)
            .unwrap_err();
        assert_eq!(
            e,
            StoreError::TenantUploadQuota {
                held: 60,
                limit: 100
            }
        );
        // Replacing one's own object does not count it twice.
        store
            .put_upload(&upload("a", "k1", &[0; 90], 1000), 100)
            .unwrap();
        // Once k1 expired (at 1100), its bytes no longer count and the row is gone.
        store
            .put_upload(&upload("a", "k3", &[0; 60], 1100), 100)
            .unwrap();
        let rows: i64 = store
            .with_reader(|c| Ok(c.query_row("SELECT count(*) FROM uploads", [], |r| r.get(0))?))
            .unwrap();
        assert_eq!(rows, 1, "expired uploads of every tenant are dropped");
    }
}
