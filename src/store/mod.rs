//! Persistence of the tenants' image databases, behind a narrow backend-neutral trait.
//!
//! What lives here: the [`ImageStore`] trait the service layer calls, the plain record types
//! it speaks in, the [`StoreError`] enum, and the one backend we ship today
//! ([`sqlite::SqliteStore`], the default) and the PostgreSQL one ([`postgres::PgStore`],
//! preview); nothing in this file names either, so the API and service layers never change.
//!
//! What does not live here: parameter validation with API error messages (the API layer owns
//! those; the store only re-checks invariants it relies on), image decoding and thumbnails
//! (the caller hands finished JPEG bytes in), vector search (the in-memory index is built from
//! [`ImageStore::for_each_embedding`] and kept in step by the service), and continuation
//! tokens (`service::list_token`; the store only understands a plain "after this data id").
//!
//! All methods are synchronous and may block on disk I/O (an `add_image` waits for an fsync):
//! async callers go through `tokio::task::spawn_blocking`.

pub mod postgres;
pub mod sqlite;

pub use postgres::PgStore;
pub use sqlite::SqliteStore;

use std::fmt;
use std::str::FromStr;

pub use crate::attributes::{Attributes, Filter};
pub use crate::embedding::{DbDescriptors, Descriptor};

/// Names one image database: databases are unique per tenant (access key id), not globally.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct DbRef<'a> {
    /// The tenant: the AccessKeyId the request was signed with.
    pub tenant: &'a str,
    /// The database name (`DbName` / `Name` in the API).
    pub name: &'a str,
}

impl<'a> DbRef<'a> {
    pub fn new(tenant: &'a str, name: &'a str) -> Self {
        DbRef { tenant, name }
    }
}

/// The server-generated id of one image, `DataId` in the API.
///
/// It is a microsecond timestamp (16 decimal digits today, like the public examples
/// `1585903814940000`), made strictly increasing by the store, so ordering by `DataId` is
/// ordering by creation. It is globally unique within one store, not just within a database.
/// Kept as an integer so the search index can hold ids without one allocation per vector;
/// `Display`/`FromStr` give the API's string form.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct DataId(u64);

impl DataId {
    /// The largest id any backend can store (SQLite INTEGER and PostgreSQL BIGINT are i64).
    pub const MAX: u64 = i64::MAX as u64;

    /// `None` for values above [`DataId::MAX`].
    pub fn from_u64(value: u64) -> Option<Self> {
        (value <= Self::MAX).then_some(DataId(value))
    }

    pub fn as_u64(self) -> u64 {
        self.0
    }
}

impl fmt::Display for DataId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Zero-padded so that string order equals numeric order for every id we generate.
        write!(f, "{:016}", self.0)
    }
}

/// A `DataId` string that is not one this server could have issued.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("not a valid DataId")]
pub struct ParseDataIdError;

impl FromStr for DataId {
    type Err = ParseDataIdError;

    /// Accepts only the canonical form `Display` produces, so one id has one spelling.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s.is_empty() || s.len() > 19 || !s.bytes().all(|b| b.is_ascii_digit()) {
            return Err(ParseDataIdError);
        }
        let value: u64 = s.parse().map_err(|_| ParseDataIdError)?;
        let id = DataId::from_u64(value).ok_or(ParseDataIdError)?;
        if id.to_string() != s {
            return Err(ParseDataIdError);
        }
        Ok(id)
    }
}

/// Which images a write names: one image, or every image of an entity.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ImageSelector<'a> {
    DataId(DataId),
    Entity(&'a str),
}

/// Listing order: by creation time, which is `DataId` order.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Order {
    Asc,
    Desc,
}

/// One image database as the store sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DbInfo {
    pub tenant: String,
    pub name: String,
    /// Epoch milliseconds.
    pub created_at: i64,
    /// Images currently stored (kept exact, transactionally, not estimated).
    pub image_count: u64,
    /// Dimension shared by every semantic embedding in the database; `None` while it is
    /// empty.
    pub dim: Option<usize>,
    /// What the database indexes (chosen at creation).
    pub descriptors: DbDescriptors,
}

/// What the caller supplies to add one image; the store assigns `data_id` and the times.
#[derive(Clone, Copy, Debug)]
pub struct NewImage<'a> {
    pub entity_id: &'a str,
    /// Free text, up to 512 characters (checked by the API layer), may be empty.
    pub extra_data: &'a str,
    pub image_url: &'a str,
    /// The feature vector; every vector in one database must have the same length.
    pub embedding: &'a [f32],
    /// The copy-detection descriptor (`COPY_DIM` floats), when it was computed.
    pub copy_embedding: Option<&'a [f32]>,
    /// A small JPEG made by the caller; stored apart from the record so that listing and
    /// searching never read it.
    pub thumbnail: Option<&'a [u8]>,
    /// `IntAttr…`/`StrAttr…` (checked by the API layer); [`Attributes::NONE`] when unset.
    pub attributes: &'a Attributes,
}

/// One stored image without its embedding and thumbnail.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ImageRecord {
    pub data_id: DataId,
    pub entity_id: String,
    pub extra_data: String,
    pub image_url: String,
    /// Epoch milliseconds.
    pub created_at: i64,
    /// Epoch milliseconds; equal to `created_at` until the image is updated.
    pub updated_at: i64,
    pub attributes: Attributes,
}

/// What an UpdateImage changes: ExtraData when given, and every attribute `attributes` sets
/// (the others keep their value).
#[derive(Clone, Copy, Debug)]
pub struct ImageUpdate<'a> {
    pub extra_data: Option<&'a str>,
    pub attributes: &'a Attributes,
}

/// A ListImages query. `after` (keyset paging) and `offset` combine: skip `offset` matching
/// records that come after `after` in `order`, then return up to `limit`.
#[derive(Clone, Copy, Debug)]
pub struct ListQuery<'a> {
    pub order: Order,
    /// Only entities whose id starts with this; `None` and `Some("")` both mean no filter.
    /// Matched literally (`_` and `%` are ordinary characters).
    pub entity_id_prefix: Option<&'a str>,
    /// Only records strictly after this id in `order` (the continuation point).
    pub after: Option<DataId>,
    /// Only records whose attributes pass this `Filter` (`total_count` counts those too).
    pub filter: Option<&'a Filter>,
    pub offset: u64,
    pub limit: u32,
}

/// One page of a ListImages query.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ImagePage {
    pub images: Vec<ImageRecord>,
    /// Records matching the prefix filter in the whole database (ignores `after`, `offset`
    /// and `limit`), read in the same snapshot as `images`.
    pub total_count: u64,
    /// Whether more matching records follow this page: the API issues a token only then.
    pub has_more: bool,
}

/// All embeddings of one database in one contiguous buffer: vector `i` is
/// `vectors[i * dim..(i + 1) * dim]` and belongs to `ids[i]`; ids ascend.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct EmbeddingSet {
    pub dim: usize,
    pub ids: Vec<DataId>,
    pub vectors: Vec<f32>,
}

impl EmbeddingSet {
    pub fn len(&self) -> usize {
        self.ids.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }

    /// Every (id, vector) pair, in order.
    pub fn iter(&self) -> impl Iterator<Item = (DataId, &[f32])> {
        self.ids
            .iter()
            .copied()
            .zip(self.vectors.chunks_exact(self.dim.max(1)))
    }

    /// The vector of `ids[i]`; `None` when `i` is out of range.
    pub fn vector(&self, i: usize) -> Option<&[f32]> {
        let start = i.checked_mul(self.dim)?;
        self.vectors.get(start..start.checked_add(self.dim)?)
    }
}

/// Settings every backend honours.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct StoreOptions {
    /// Refuse adds beyond this many images per database (the public service caps at 50,000).
    /// Checked inside the add transaction, so concurrent adds cannot overshoot it.
    pub max_images_per_db: Option<u64>,
    /// Refuse CreateImageDb beyond this many databases per tenant.
    pub max_databases_per_tenant: Option<u64>,
    /// Refuse adds beyond this many images per tenant, all its databases together. Both
    /// tenant quotas are checked inside the write, like the per-database cap.
    pub max_images_per_tenant: Option<u64>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StoreError {
    #[error("image database {0:?} already exists")]
    DbExists(String),
    #[error("image database {0:?} does not exist")]
    DbNotFound(String),
    #[error("image database {db:?} is full: it holds {limit} images, the configured maximum")]
    DbFull { db: String, limit: u64 },
    #[error(
        "this access key already has {limit} image databases, the most one key may have; \
         delete one with DeleteImageDb, or ask the operator to raise --max-databases-per-tenant"
    )]
    TenantDatabaseQuota { limit: u64 },
    #[error(
        "this access key's image databases hold {held} images and this add would pass {limit}, \
         the most one key may store; delete images, or ask the operator to raise \
         --max-images-per-tenant"
    )]
    TenantImageQuota { held: u64, limit: u64 },
    #[error(
        "the embedding has {got} dimensions but image database {db:?} holds \
         {expected}-dimensional vectors"
    )]
    DimensionMismatch {
        db: String,
        expected: usize,
        got: usize,
    },
    /// An argument the API layer should already have rejected.
    #[error("invalid argument: {0}")]
    Invalid(String),
    /// The store was written by a newer imgsearch; opening it could damage it.
    #[error(
        "the store's schema version is {found} but this build of imgsearch supports at most \
         {supported}; upgrade imgsearch (the data was left untouched)"
    )]
    SchemaTooNew { found: i64, supported: i64 },
    /// Stored data that breaks an invariant: a bad embedding blob, a foreign file, etc.
    #[error("stored data is corrupt: {0}")]
    Corrupt(String),
    /// The disk is full: the write was not made (SQLite rolled its transaction back).
    #[error(
        "the server's disk is full: this write was not stored, and nothing stored before is \
         affected ({0}); the operator must free space"
    )]
    DiskFull(String),
    /// The tenant's unexpired uploads would pass their byte quota.
    #[error(
        "this access key's uploaded files waiting to be used hold {held} bytes and this one \
         would pass {limit}; they expire on their own, or are replaced when re-uploaded"
    )]
    TenantUploadQuota { held: u64, limit: u64 },
    /// The disk or file system failed (unwritable, unreadable).
    #[error("storage I/O error: {0}")]
    Io(String),
    /// The backend cannot be reached now (a database server down, restarting, or out of
    /// connections): nothing was written; the same call may succeed later.
    #[error("the storage backend is unavailable: {0}")]
    Unavailable(String),
    /// Any other failure of the backend.
    #[error("storage backend error: {0}")]
    Backend(String),
}

/// Persistence for image databases. Implementations are shared between threads and must make
/// every mutating method atomic: it happens entirely or not at all, also across a crash.
/// A method that returned `Ok` for a write has made it durable.
pub trait ImageStore: Send + Sync {
    /// Creates an empty database indexing `descriptors`. `DbExists` when the tenant already
    /// has one of that name, `Invalid` when the name breaks [`crate::rules::is_valid_db_name`].
    fn create_db_with(
        &self,
        db: DbRef<'_>,
        descriptors: DbDescriptors,
    ) -> Result<DbInfo, StoreError>;

    /// [`ImageStore::create_db_with`] the default descriptors (both).
    fn create_db(&self, db: DbRef<'_>) -> Result<DbInfo, StoreError> {
        self.create_db_with(db, DbDescriptors::default())
    }

    /// The database with its image count, or `None` when the tenant has none of that name.
    fn get_db(&self, db: DbRef<'_>) -> Result<Option<DbInfo>, StoreError>;

    /// The tenant's databases, by name.
    fn list_dbs(&self, tenant: &str) -> Result<Vec<DbInfo>, StoreError>;

    /// Every database of every tenant, by tenant then name (for building indexes at start-up).
    fn list_all_dbs(&self) -> Result<Vec<DbInfo>, StoreError>;

    /// Deletes the database with all its images, embeddings and thumbnails, atomically and
    /// irreversibly. `DbNotFound` when there is none.
    fn delete_db(&self, db: DbRef<'_>) -> Result<(), StoreError>;

    /// Adds images in one transaction: all are stored or none is. Each gets a fresh `DataId`,
    /// increasing in slice order and greater than every id this store issued before.
    /// Errors: `DbNotFound`, `DimensionMismatch` (also between the images of one call),
    /// `DbFull`, `Invalid` (empty embedding).
    fn add_images(
        &self,
        db: DbRef<'_>,
        images: &[NewImage<'_>],
    ) -> Result<Vec<ImageRecord>, StoreError>;

    /// Adds one image with its thumbnail, atomically; see [`ImageStore::add_images`].
    fn add_image(&self, db: DbRef<'_>, image: &NewImage<'_>) -> Result<ImageRecord, StoreError> {
        self.add_images(db, std::slice::from_ref(image))?
            .pop()
            .ok_or_else(|| StoreError::Backend("add_images returned no record".into()))
    }

    /// Deletes every image of the entity and returns their ids, ascending (empty when the
    /// entity has none), so the caller can drop them from the search index.
    fn delete_entity(&self, db: DbRef<'_>, entity_id: &str) -> Result<Vec<DataId>, StoreError>;

    /// One page of records, with the total count, from one consistent snapshot.
    fn list_images(&self, db: DbRef<'_>, query: &ListQuery<'_>) -> Result<ImagePage, StoreError>;

    /// The records of these ids, in the order given; ids not in the database (deleted since,
    /// or never there) are left out.
    fn get_images(&self, db: DbRef<'_>, ids: &[DataId]) -> Result<Vec<ImageRecord>, StoreError>;

    /// The thumbnail of one image; `None` when the image is not in the database or has none.
    fn get_thumbnail(&self, db: DbRef<'_>, id: DataId) -> Result<Option<Vec<u8>>, StoreError>;

    /// The thumbnail of the image with this id, whatever its tenant and database (DataIds
    /// are unique in the store); for links the server signed. `None` when there is none.
    fn thumbnail_by_id(&self, id: DataId) -> Result<Option<Vec<u8>>, StoreError>;

    /// Applies `update` (and a new UpdatedAt) to the images `which` names, in one
    /// transaction; vectors are untouched. Returns the records as they are now, ascending
    /// (empty: none matched).
    fn update_images(
        &self,
        db: DbRef<'_>,
        which: ImageSelector<'_>,
        update: &ImageUpdate<'_>,
    ) -> Result<Vec<ImageRecord>, StoreError>;

    /// Calls `visit` with the id and attributes of every image of the database that has at
    /// least one attribute set, ascending (for the search index's attribute table).
    fn for_each_attributes(
        &self,
        db: DbRef<'_>,
        visit: &mut dyn FnMut(DataId, Attributes),
    ) -> Result<u64, StoreError>;

    /// The first (oldest) image of the entity, `None` when the database has no image of that
    /// exact EntityId.
    fn first_image_of_entity(
        &self,
        db: DbRef<'_>,
        entity_id: &str,
    ) -> Result<Option<DataId>, StoreError>;

    /// Calls `visit` with every (data id, vector of `kind`) of the database in ascending id
    /// order, from one snapshot, reusing one buffer (no allocation per vector). Returns the
    /// number visited. A stored vector of the wrong size is `Corrupt`; an image without a
    /// semantic embedding is `Corrupt`, one without a copy descriptor (stored before they
    /// existed) is skipped.
    fn for_each_embedding(
        &self,
        db: DbRef<'_>,
        kind: Descriptor,
        visit: &mut dyn FnMut(DataId, &[f32]),
    ) -> Result<u64, StoreError>;

    /// Every id of an image of the database that has a vector of `kind` (every image for
    /// the semantic one), ascending (for reconciling a persisted ANN index with the store).
    fn list_ids(&self, db: DbRef<'_>, kind: Descriptor) -> Result<Vec<DataId>, StoreError>;

    /// The vectors of `kind` of `ids` that are in the database (and have one), in the order
    /// given, in one contiguous buffer; missing ids are skipped. For re-ranking candidates.
    fn get_embeddings(
        &self,
        db: DbRef<'_>,
        kind: Descriptor,
        ids: &[DataId],
    ) -> Result<EmbeddingSet, StoreError>;

    /// Stores copy descriptors for images that lack one (computed later, e.g. from their
    /// thumbnails), in one transaction; ids not in the database, or that have one already,
    /// are ignored. Returns the ids stored, in the order given.
    fn set_copy_embeddings(
        &self,
        db: DbRef<'_>,
        vectors: &[(DataId, Vec<f32>)],
    ) -> Result<Vec<DataId>, StoreError>;

    /// Up to `limit` ids of images without a copy descriptor, ascending, after `after`.
    fn ids_without_copy(
        &self,
        db: DbRef<'_>,
        after: Option<DataId>,
        limit: usize,
    ) -> Result<Vec<DataId>, StoreError>;

    /// All vectors of `kind` in the database in one contiguous buffer (two allocations in
    /// total, sized from the image count up front).
    fn load_embeddings(&self, db: DbRef<'_>, kind: Descriptor) -> Result<EmbeddingSet, StoreError> {
        let info = self
            .get_db(db)?
            .ok_or_else(|| StoreError::DbNotFound(db.name.to_owned()))?;
        let count = usize::try_from(info.image_count).unwrap_or(0);
        let dim = match kind {
            Descriptor::Semantic => info.dim.unwrap_or(0),
            Descriptor::Copy => kind.dim(),
        };
        let mut set = EmbeddingSet {
            dim,
            ids: Vec::with_capacity(count),
            vectors: Vec::with_capacity(count.saturating_mul(dim)),
        };
        let mut mismatch = None;
        self.for_each_embedding(db, kind, &mut |id, v| {
            if set.ids.is_empty() {
                set.dim = v.len();
            }
            if v.len() != set.dim {
                mismatch.get_or_insert((id, v.len()));
                return;
            }
            set.ids.push(id);
            set.vectors.extend_from_slice(v);
        })?;
        if let Some((id, got)) = mismatch {
            return Err(StoreError::Corrupt(format!(
                "embedding of {id} has {got} dimensions, others have {}",
                set.dim
            )));
        }
        Ok(set)
    }

    /// Stores an uploaded file under `upload.key` (replacing an object of the same key and
    /// owner), first dropping every expired upload. `TenantUploadQuota` when the owner's
    /// unexpired uploads would pass `tenant_max_bytes`; `Invalid` when the key belongs to
    /// another tenant.
    fn put_upload(&self, upload: &NewUpload<'_>, tenant_max_bytes: u64) -> Result<(), StoreError>;

    /// The bytes of `tenant`'s upload `key` unless it expired by `now` (unix seconds).
    /// `None` for a key that is unknown, expired, or another tenant's.
    fn get_upload(&self, tenant: &str, key: &str, now: i64) -> Result<Option<Vec<u8>>, StoreError>;

    /// Deletes the images of `db` among `ids` (others are ignored) and returns those it
    /// deleted, in DataId order.
    fn delete_images(&self, db: DbRef<'_>, ids: &[DataId]) -> Result<Vec<DataId>, StoreError>;

    /// Records that a person judged `a` and `b` not to be copies of each other, so duplicate
    /// review no longer links them. `false` (nothing stored) unless both are images of `db`.
    /// The mark goes when either image is deleted.
    fn mark_not_duplicate(
        &self,
        db: DbRef<'_>,
        a: DataId,
        b: DataId,
        now: i64,
    ) -> Result<bool, StoreError>;

    /// Every pair of `db` marked by [`Self::mark_not_duplicate`], smaller DataId first.
    fn not_duplicate_pairs(&self, db: DbRef<'_>) -> Result<Vec<(DataId, DataId)>, StoreError>;
}

/// A file uploaded through the SDK's Advance flow, waiting for the action that reads it.
#[derive(Debug, Clone, Copy)]
pub struct NewUpload<'a> {
    pub tenant: &'a str,
    pub key: &'a str,
    pub bytes: &'a [u8],
    /// Unix seconds.
    pub now: i64,
    /// Unix seconds after which it is gone.
    pub expires_at: i64,
}

#[cfg(test)]
pub(crate) mod conformance;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn data_id_string_form_round_trips_and_is_canonical() {
        let id = DataId::from_u64(1_585_903_814_940_000).unwrap();
        assert_eq!(id.to_string(), "1585903814940000");
        assert_eq!("1585903814940000".parse::<DataId>(), Ok(id));
        let small = DataId::from_u64(42).unwrap();
        assert_eq!(small.to_string(), "0000000000000042");
        assert_eq!("0000000000000042".parse::<DataId>(), Ok(small));
        for bad in [
            "",
            "42",
            "+1585903814940000",
            " 1585903814940000",
            "1585903814940000x",
        ] {
            assert!(bad.parse::<DataId>().is_err(), "{bad:?} must not parse");
        }
        assert!(
            "9223372036854775808".parse::<DataId>().is_err(),
            "above i64::MAX"
        );
        assert!(DataId::from_u64(u64::MAX).is_none());
    }

    #[test]
    fn the_trait_is_usable_as_a_shared_object() {
        // The server holds the store as Arc<dyn ImageStore> and moves it into spawn_blocking.
        fn assert_send_sync_static<T: Send + Sync + 'static>() {}
        assert_send_sync_static::<std::sync::Arc<dyn ImageStore>>();
        assert_send_sync_static::<SqliteStore>();
    }

    #[test]
    fn embedding_set_vector_slices() {
        let set = EmbeddingSet {
            dim: 2,
            ids: vec![DataId(1), DataId(2)],
            vectors: vec![1.0, 2.0, 3.0, 4.0],
        };
        assert_eq!(set.vector(1), Some(&[3.0, 4.0][..]));
        assert_eq!(set.vector(2), None);
    }

    mod properties {
        use super::*;
        use proptest::prelude::*;

        proptest! {
            /// Every storable id has one spelling, and it parses back to the id.
            #[test]
            fn data_ids_round_trip_through_their_string(v in 0..=DataId::MAX) {
                let id = DataId::from_u64(v).unwrap();
                prop_assert_eq!(id.to_string().parse::<DataId>(), Ok(id));
            }

            /// A string that parses is exactly the spelling of what it parsed to.
            #[test]
            fn only_canonical_strings_parse(s in any::<String>(), digits in 0..u64::MAX) {
                for s in [s, digits.to_string(), format!("{digits:020}")] {
                    if let Ok(id) = s.parse::<DataId>() {
                        prop_assert_eq!(id.to_string(), s);
                    }
                }
            }
        }
    }
}
