//! The two backends the suite runs against: SQLite in a temporary directory, PostgreSQL in a
//! fresh schema (dropped afterwards) of the server `IMGSEARCH_TEST_PG_URL` names.
//! Not here: the cases (`cases`, `attributes`).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use super::Backend;
use crate::store::{ImageStore, PgStore, SqliteStore, StoreOptions};

/// The server the PostgreSQL tests use.
pub(crate) const PG_URL_ENV: &str = "IMGSEARCH_TEST_PG_URL";

struct Sqlite {
    dir: tempfile::TempDir,
}

impl Backend for Sqlite {
    fn open(&self, options: StoreOptions) -> Arc<dyn ImageStore> {
        Arc::new(SqliteStore::open_with(self.dir.path(), options).unwrap())
    }
}

pub(crate) fn sqlite() -> Option<Box<dyn Backend>> {
    Some(Box::new(Sqlite {
        dir: tempfile::tempdir().unwrap(),
    }))
}

/// The test server's URL; `None` (after saying so) when none is set outside CI. In CI a
/// missing server is a failure, never a silent pass.
pub(crate) fn pg_url() -> Option<String> {
    match std::env::var(PG_URL_ENV) {
        Ok(url) if !url.is_empty() => Some(url),
        _ => {
            assert!(
                std::env::var_os("CI").is_none(),
                "{PG_URL_ENV} is not set, and CI is: the PostgreSQL store's tests must run \
                 (scripts/test.sh starts a server with scripts/pg-test-server.sh)"
            );
            eprintln!(
                "{PG_URL_ENV} is not set: this PostgreSQL test did nothing (run \
                 scripts/test.sh, or export the URL `bash scripts/pg-test-server.sh start DIR` \
                 prints)"
            );
            None
        }
    }
}

/// A schema name no other test (or run) uses.
pub(crate) fn fresh_schema() -> String {
    static N: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    format!(
        "t{}_{}_{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed),
        nanos % 1_000_000_000
    )
}

/// `url` with `?schema=NAME` (or `&schema=NAME`) added.
pub(crate) fn with_schema(url: &str, schema: &str) -> String {
    let sep = if url.contains('?') { '&' } else { '?' };
    format!("{url}{sep}schema={schema}")
}

/// A fresh schema on the test server, dropped with everything in it at the end of the test.
pub(crate) struct PgSchema {
    pub(crate) url: String,
    pub(crate) schema: String,
}

impl PgSchema {
    pub(crate) fn new() -> Option<Self> {
        let url = pg_url()?;
        let schema = fresh_schema();
        Some(PgSchema {
            url: with_schema(&url, &schema),
            schema,
        })
    }

    /// A plain connection to the server (for what the trait cannot show).
    pub(crate) fn admin(&self) -> postgres::Client {
        let (config, _) = crate::store::postgres::parse_url(&self.url).unwrap();
        config.connect(postgres::NoTls).unwrap()
    }
}

impl Drop for PgSchema {
    fn drop(&mut self) {
        // Best effort: the test server is thrown away anyway.
        if let Ok((config, _)) = crate::store::postgres::parse_url(&self.url) {
            if let Ok(mut c) = config.connect(postgres::NoTls) {
                let _ = c.batch_execute(&format!("DROP SCHEMA IF EXISTS {} CASCADE", self.schema));
            }
        }
    }
}

impl Backend for PgSchema {
    fn open(&self, options: StoreOptions) -> Arc<dyn ImageStore> {
        Arc::new(PgStore::open(&self.url, options).unwrap())
    }
}

pub(crate) fn postgres() -> Option<Box<dyn Backend>> {
    Some(Box::new(PgSchema::new()?))
}
