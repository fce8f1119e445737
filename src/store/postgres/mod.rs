//! The PostgreSQL backend of [`ImageStore`] (preview): every record, vector, thumbnail and
//! upload in one PostgreSQL database, so that several nodes can share one store.
//!
//! What lives here: opening the store (`postgres://…` URL, connection pool, schema
//! migrations), mapping the driver's errors to [`StoreError`]. The trait impl is in
//! `image_store`, row mapping in `rows`, the schema in `schema`, `Filter` as SQL in
//! `filter_sql`, uploads in `uploads`.
//!
//! What does not (yet): vector search in PostgreSQL (pgvector). This step stores vectors as
//! `bytea` (little-endian f32, the SQLite store's encoding): bit-exact, so the in-process
//! index built from [`ImageStore::for_each_embedding`] at start scores exactly as with the
//! SQLite store, and it needs no extension, so any PostgreSQL ≥ 13 works. A later step adds a
//! pgvector `halfvec` column with an HNSW index beside it. Also not here: sharing the nonce
//! cache, the access keys or the list-token key between nodes (each node still keeps those
//! in its data directory).
//!
//! # Durability and concurrency
//! Every mutating method is one transaction, acknowledged after `COMMIT` (PostgreSQL's WAL
//! flush; `synchronous_commit` is the server's). `DataId`s come from one counter row
//! (`store_meta`, key `data_id`), advanced inside the add's transaction to
//! `max(counter + 1, the server's clock in µs)`: its row lock is held until commit, so adds
//! are serialised store-wide (as with SQLite's one writer) and id order is commit order, also
//! across nodes: a keyset-paging reader never sees a new image appear behind its cursor.
//! Reads run on pooled connections, each in a `REPEATABLE READ` transaction where a page and
//! its count must come from one snapshot.
//!
//! # Connection failures
//! A server that cannot be reached, or drops the connection, is [`StoreError::Unavailable`]
//! (the API's 503 `ServiceUnavailable`); a broken connection is never put back in the pool,
//! and the next call connects anew, so the store recovers by itself when the server is back.

mod adds;
mod duplicate_marks;
mod filter_sql;
mod image_store;
mod rows;
mod schema;
mod uploads;

use std::error::Error as _;
use std::str::FromStr;
use std::sync::{Condvar, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use postgres::{Client, NoTls};

use super::{StoreError, StoreOptions};

/// The schema (namespace) the tables live in when the URL names none (`?schema=NAME`).
pub const DEFAULT_SCHEMA: &str = "imgsearch";

/// Connections open at once, idle or busy; a caller beyond it waits for one
/// ([`POOL_WAIT`]), so a burst of blocking tasks cannot exhaust the server's
/// `max_connections`.
const MAX_CONNECTIONS: usize = 16;
/// How long a caller waits for a free connection before `Unavailable`.
const POOL_WAIT: Duration = Duration::from_secs(10);
/// Applied when the URL sets no `connect_timeout`: an unreachable server answers 503 quickly.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);

/// Applied when the URL sets no `tcp_user_timeout`.
const TCP_USER_TIMEOUT: Duration = Duration::from_secs(30);

/// The PostgreSQL-backed store. `Send + Sync`; share it in an `Arc`.
pub struct PgStore {
    options: StoreOptions,
    schema: String,
    pool: Pool,
}

impl std::fmt::Debug for PgStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the URL: it may hold a password.
        f.debug_struct("PgStore")
            .field("schema", &self.schema)
            .field("options", &self.options)
            .finish_non_exhaustive()
    }
}

impl PgStore {
    /// Connects to `url` (`postgres://user[:password]@host[:port]/dbname[?…]`; a Unix
    /// socket as a percent-encoded path host, `%2Frun%2Fpostgresql`), creates the schema
    /// (default [`DEFAULT_SCHEMA`], or `?schema=NAME`) and runs the migrations. Fails with
    /// `Unavailable` when the server cannot be reached, `SchemaTooNew` when a newer imgsearch
    /// migrated the schema, `Invalid` for a malformed URL.
    pub fn open(url: &str, options: StoreOptions) -> Result<Self, StoreError> {
        let (config, schema) = parse_url(url)?;
        let store = PgStore {
            options,
            pool: Pool::new(config),
            schema,
        };
        store
            .pool
            .with(|conn| schema::migrate(conn, &store.schema))?;
        Ok(store)
    }

    /// The schema the tables live in.
    pub fn schema(&self) -> &str {
        &self.schema
    }

    /// Runs `f` on a pooled connection.
    fn with<T>(
        &self,
        f: impl FnOnce(&mut Client) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        self.pool.with(f)
    }
}

/// Splits our own `schema` parameter off the URL (the driver refuses unknown parameters) and
/// parses the rest; the schema name must be a plain lower-case identifier, so it can be
/// written into SQL and the connection options unquoted.
pub(crate) fn parse_url(url: &str) -> Result<(postgres::Config, String), StoreError> {
    if !(url.starts_with("postgres://") || url.starts_with("postgresql://")) {
        return Err(StoreError::Invalid(
            "a PostgreSQL store is given as postgres://user@host/dbname".into(),
        ));
    }
    let (base, query) = url.split_once('?').unwrap_or((url, ""));
    let mut schema = DEFAULT_SCHEMA.to_owned();
    let mut rest = Vec::new();
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        match pair.split_once('=') {
            Some(("schema", name)) => schema = name.to_owned(),
            _ => rest.push(pair),
        }
    }
    if !is_valid_schema_name(&schema) {
        return Err(StoreError::Invalid(format!(
            "schema name {schema:?} must be 1-63 lower-case letters, digits or '_', not \
             starting with a digit"
        )));
    }
    let url = if rest.is_empty() {
        base.to_owned()
    } else {
        format!("{base}?{}", rest.join("&"))
    };
    // The driver's message never repeats the password.
    let mut config = postgres::Config::from_str(&url)
        .map_err(|e| StoreError::Invalid(format!("invalid PostgreSQL URL: {e}")))?;
    if config.get_connect_timeout().is_none() {
        config.connect_timeout(CONNECT_TIMEOUT);
    }
    // Over TCP, a server that vanished (host down, network cut) fails the calls waiting on it
    // within a minute instead of the kernel's ~15: unacknowledged data times out, and idle
    // pooled connections are probed.
    if config.get_tcp_user_timeout().is_none() {
        config.tcp_user_timeout(TCP_USER_TIMEOUT);
    }
    if config.get_keepalives_idle() == Duration::from_secs(2 * 60 * 60) {
        config.keepalives_idle(Duration::from_secs(30));
    }
    if config.get_application_name().is_none() {
        config.application_name("imgsearch");
    }
    // Every statement resolves table names in our schema only.
    let options = match config.get_options() {
        Some(o) => format!("{o} -c search_path={schema}"),
        None => format!("-c search_path={schema}"),
    };
    config.options(&options);
    Ok((config, schema))
}

pub(crate) fn is_valid_schema_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
        && !s.as_bytes()[0].is_ascii_digit()
}

/// A small pool: idle connections in a stack, at most [`MAX_CONNECTIONS`] open.
struct Pool {
    config: postgres::Config,
    state: Mutex<PoolState>,
    freed: Condvar,
}

struct PoolState {
    idle: Vec<Client>,
    /// Connections open now, idle or lent out.
    open: usize,
}

impl Pool {
    fn new(config: postgres::Config) -> Self {
        Pool {
            config,
            state: Mutex::new(PoolState {
                idle: Vec::new(),
                open: 0,
            }),
            freed: Condvar::new(),
        }
    }

    /// Takes an idle connection, or opens one when fewer than [`MAX_CONNECTIONS`] are open
    /// (else waits up to [`POOL_WAIT`]). The caller must hand it back with `release`.
    fn take(&self) -> Result<Client, StoreError> {
        let mut state = lock(&self.state);
        let deadline = std::time::Instant::now() + POOL_WAIT;
        loop {
            while let Some(client) = state.idle.pop() {
                if !client.is_closed() {
                    return Ok(client);
                }
                // The server dropped it while it was idle (restart, idle timeout).
                state.open -= 1;
            }
            if state.open < MAX_CONNECTIONS {
                state.open += 1;
                break;
            }
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            if left.is_zero() {
                return Err(StoreError::Unavailable(format!(
                    "all {MAX_CONNECTIONS} connections to PostgreSQL stayed busy for {}s",
                    POOL_WAIT.as_secs()
                )));
            }
            state = self
                .freed
                .wait_timeout(state, left)
                .unwrap_or_else(PoisonError::into_inner)
                .0;
        }
        drop(state);
        // Connect outside the lock: it may take up to the connect timeout.
        self.config.connect(NoTls).map_err(|e| {
            self.release(None);
            StoreError::Unavailable(format!("cannot connect to PostgreSQL: {}", error_text(&e)))
        })
    }

    /// Returns a connection (or, with `None`, its slot) to the pool.
    fn release(&self, client: Option<Client>) {
        let mut state = lock(&self.state);
        match client {
            Some(c) if !c.is_closed() => state.idle.push(c),
            _ => state.open = state.open.saturating_sub(1),
        }
        drop(state);
        self.freed.notify_one();
    }

    /// Runs `f` on a pooled connection. A `postgres::Transaction` rolls back when dropped,
    /// so the connection always comes back outside any transaction; a broken one is closed.
    fn with<T>(
        &self,
        f: impl FnOnce(&mut Client) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let mut client = self.take()?;
        // Frees the slot if `f` panics (a bug); the connection itself is dropped then.
        let mut slot = Slot {
            pool: self,
            armed: true,
        };
        let result = f(&mut client);
        slot.armed = false;
        self.release(Some(client));
        result
    }
}

impl Drop for Pool {
    fn drop(&mut self) {
        // A `postgres::Client` drives its connection with a small runtime of its own, which
        // must not be closed on a thread of the server's async runtime (tokio panics): the
        // idle connections are closed on a thread of their own.
        let idle = std::mem::take(&mut lock(&self.state).idle);
        if idle.is_empty() {
            return;
        }
        if let Ok(closer) = std::thread::Builder::new()
            .name("imgsearch-pg-close".into())
            .spawn(move || drop(idle))
        {
            let _ = closer.join();
        }
    }
}

struct Slot<'a> {
    pool: &'a Pool,
    armed: bool,
}

impl Drop for Slot<'_> {
    fn drop(&mut self) {
        if self.armed {
            self.pool.release(None);
        }
    }
}

/// Locks, ignoring poisoning: the pool's state is a list and a counter, never half-updated.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The driver's message with its cause (the driver's own `Display` leaves both out: "db
/// error"): the server's message and SQLSTATE, or the I/O error.
fn error_text(e: &postgres::Error) -> String {
    if let Some(db) = e.as_db_error() {
        return format!("{db} (SQLSTATE {})", db.code().code());
    }
    match e.source() {
        Some(src) => format!("{e}: {src}"),
        None => e.to_string(),
    }
}

impl From<postgres::Error> for StoreError {
    fn from(e: postgres::Error) -> Self {
        let text = error_text(&e);
        if let Some(db) = e.as_db_error() {
            let code = db.code().code();
            return match code {
                "53100" => StoreError::DiskFull(text),
                "XX001" | "XX002" => StoreError::Corrupt(text),
                // Too many connections, the server shutting down or starting, a read-only
                // standby: the service is unavailable for now, not broken.
                "53300" | "57P01" | "57P02" | "57P03" | "25006" => StoreError::Unavailable(text),
                c if c.starts_with("08") => StoreError::Unavailable(text),
                _ => StoreError::Backend(text),
            };
        }
        let io = e
            .source()
            .is_some_and(|s| s.downcast_ref::<std::io::Error>().is_some());
        if e.is_closed() || io || text.starts_with("error connecting") || text.contains("timeout") {
            StoreError::Unavailable(text)
        } else {
            StoreError::Backend(text)
        }
    }
}

/// Epoch milliseconds of this node's clock (CreatedAt, UpdatedAt), as the SQLite store.
fn now_millis() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

#[cfg(test)]
mod tests;
