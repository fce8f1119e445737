//! `ImageService`: the API's operations on image databases — create, list, delete
//! databases; add, list, search and delete images — with no HTTP types in sight.
//!
//! It ties together the store (source of truth, durable), the search indexes (exact or
//! ANN per database, kept in step with the store by `service::db_index` and
//! `service::registry`), the image fetcher, image preparation (`service::prepare`) and the
//! batching embedder. Parameters arrive already checked against the API's
//! rules by the API layer; errors leave as `ServiceError` values that the edge maps to
//! codes once.
//!
//! Embeddings are the network's plain pooled features of the image with its uniform
//! margins trimmed (`vision::borders`): a photo pasted onto a plain canvas, letterboxed or
//! padded is found from its content (`imgsearch bench quality`, README "Search quality").
//! Vectors stored before trimming existed are the untrimmed embedding; so a query whose
//! margins were trimmed is also embedded untrimmed and each image keeps its better cosine
//! (one index scan, `ExactIndex::search_max`),
//! which keeps "the same file scores 10" true for old and new vectors alike.
//! With `Crop=true` (`Part::Subject`) the main subject's box is one more query vector, and
//! what a stored image embeds instead of the whole picture (`prepare`, `vision::subject`).

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::JoinHandle;

use super::db_index::{DbIndex, ImageVectors, IndexSettings, ScoredHit, WriteGuard};
use super::error::ServiceError;
use super::list_token::{ListScope, ListTokenKey};
use super::prepare::{prepare_with, PrepareOptions};
use super::registry::DbIndexes;
use super::uploads::UploadBucket;
use crate::attributes::{Attributes, Filter};
use crate::fetch::ImageFetcher;
use crate::rules::{ADD_IMAGE_MAX_BYTES, OFFSET_PAGING_LIMIT};
use crate::store::{
    DataId, DbDescriptors, DbInfo, DbRef, Descriptor, ImageRecord, ImageStore, ListQuery, NewImage,
    Order, StoreError,
};
use crate::vision::embedder::{EmbedInput, EmbeddingBatcher, Inference};
use crate::vision::region::Region;
use crate::vision::subject::{Subject, SubjectModel};
use duplicates::DuplicateReviews;
pub use duplicates::{DuplicateMember, DuplicateReview, ReviewRequest};

/// Where an image comes from: a URL to fetch, or bytes uploaded with the request.
#[derive(Debug, Clone)]
pub enum ImageSource {
    Url(String),
    Bytes(Vec<u8>),
}

/// What of a new image is embedded semantically (ours): all of it, a `Region`, or the
/// main subject the subject model finds (`Crop=true`; the whole image when it finds none).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Part {
    #[default]
    Whole,
    Region(Region),
    Subject,
}

impl Part {
    pub fn region(self) -> Option<Region> {
        match self {
            Part::Region(r) => Some(r),
            _ => None,
        }
    }
}

pub struct AddImage {
    pub db: String,
    pub entity_id: String,
    pub extra_data: String,
    pub source: ImageSource,
    pub attributes: Attributes,
    /// What is embedded (ours).
    pub part: Part,
}

/// A parsed `Filter` with its text (a list token is valid only for the same filter).
#[derive(Debug, Clone)]
pub struct AttrFilter {
    pub text: String,
    pub filter: Filter,
}

pub struct ListImages {
    pub db: String,
    pub offset: u64,
    pub limit: u32,
    pub token: Option<String>,
    pub order: Order,
    pub entity_id_prefix: Option<String>,
    pub filter: Option<AttrFilter>,
}

pub struct ImageList {
    pub images: Vec<ImageRecord>,
    pub token: Option<String>,
    pub total_count: u64,
}

/// What SearchImage looks for: a new image, or one already stored in the database (our
/// extension: its stored vectors are the query; nothing is fetched or embedded).
#[derive(Debug, Clone)]
pub enum SearchQuery {
    Image(ImageSource),
    Stored(StoredImage),
}

/// A stored image named by the caller.
#[derive(Debug, Clone)]
pub enum StoredImage {
    DataId(DataId),
    /// The entity's first (oldest) image.
    Entity(String),
}

impl StoredImage {
    /// The message when the database has no such image.
    pub(super) fn not_found(&self, db: &str) -> String {
        match self {
            StoredImage::DataId(id) => format!(
                "image database \"{db}\" has no image with DataId {id}; use a DataId that \
                 AddImage or ListImages returned for this database"
            ),
            StoredImage::Entity(e) => format!(
                "image database \"{db}\" has no image with EntityId \"{e}\" (an exact match, \
                 not a prefix)"
            ),
        }
    }
}

pub struct SearchImage {
    pub db: String,
    pub query: SearchQuery,
    pub limit: usize,
    /// Drop matches whose score is below this (0–10).
    pub min_score: Option<f32>,
    /// Only the best match of each EntityId.
    pub distinct_entity: bool,
    /// Only images whose attributes pass it.
    pub filter: Option<Filter>,
    /// What of a new image is searched with (ours); with `Part::Subject` the whole image
    /// and its subject both are, each database image keeping its better score.
    pub part: Part,
}

/// What SearchImage keeps of the ranked hits.
#[derive(Debug, Clone, Copy)]
struct MatchFilter {
    limit: usize,
    min_score: Option<f32>,
    distinct_entity: bool,
}

#[derive(Debug, Clone)]
pub struct Match {
    pub record: ImageRecord,
    pub score: f32,
}

pub struct ImageService {
    store: Arc<dyn ImageStore>,
    fetcher: ImageFetcher,
    embedder: Arc<EmbeddingBatcher>,
    tokens: ListTokenKey,
    indexes: Arc<DbIndexes>,
    /// Asks background work (the copy-descriptor backfill) to stop.
    stop: Arc<AtomicBool>,
    backfill: Mutex<Option<JoinHandle<()>>>,
    /// The bucket the SDK's Advance calls upload to; `None`: uploads off.
    uploads: Option<UploadBucket>,
    /// How long an uploaded object is kept.
    upload_object_secs: i64,
    /// The salient-object model for `Crop=true` (`None`: not installed).
    subject: Option<Arc<SubjectModel>>,
    /// Duplicate review's links per database, kept between calls.
    reviews: DuplicateReviews,
}

/// DistinctEntity stops widening an ANN search at this many candidates.
const MAX_ANN_CANDIDATES: usize = 4096;

impl ImageService {
    /// Opens the service over `store`, opening every database's index (`DbIndexes::open`)
    /// and starting the periodic index snapshots. Blocking.
    pub fn start(
        store: Arc<dyn ImageStore>,
        fetcher: ImageFetcher,
        embedder: Arc<EmbeddingBatcher>,
        tokens: ListTokenKey,
        index_settings: IndexSettings,
    ) -> Result<Self, ServiceError> {
        let indexes = Arc::new(DbIndexes::open(store.clone(), index_settings)?);
        indexes.start_snapshotter();
        let stop = Arc::new(AtomicBool::new(false));
        let backfill = super::backfill::start(
            store.clone(),
            indexes.clone(),
            embedder.clone(),
            stop.clone(),
        );
        Ok(Self {
            store,
            fetcher,
            embedder,
            tokens,
            indexes,
            stop,
            backfill: Mutex::new(backfill),
            uploads: None,
            upload_object_secs: crate::rules::UPLOAD_OBJECT_SECS,
            subject: None,
            reviews: DuplicateReviews::default(),
        })
    }

    /// Answers uploads for `bucket`, keeps each `object_secs`, and reads them when an
    /// ImageUrl names one.
    pub fn with_upload_bucket(mut self, bucket: UploadBucket, object_secs: i64) -> Self {
        self.uploads = Some(bucket);
        self.upload_object_secs = object_secs.max(1);
        self
    }

    /// How long an uploaded object is kept, in seconds.
    pub fn upload_object_secs(&self) -> i64 {
        self.upload_object_secs
    }

    /// The bucket uploads go to, when they are on.
    pub fn upload_bucket(&self) -> Option<&UploadBucket> {
        self.uploads.as_ref()
    }

    /// Gives the service the subject model that `Crop=true` needs.
    pub fn with_subject_model(mut self, model: Option<Arc<SubjectModel>>) -> Self {
        self.subject = model;
        self
    }

    /// Whether `Crop=true` can run.
    pub fn has_subject_model(&self) -> bool {
        self.subject.is_some()
    }

    /// Stops background work (after its current batch) and writes every changed ANN index
    /// to disk (at shutdown), so the next start loads it instead of repairing it. Blocking.
    pub fn snapshot_indexes(&self) {
        self.stop.store(true, Ordering::Relaxed);
        let backfill = self
            .backfill
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        if let Some(handle) = backfill {
            let _ = handle.join();
        }
        self.indexes.snapshot_all();
    }

    /// Whether the migration of images stored before copy descriptors is still running
    /// (for tests and `/readyz`-style reporting).
    pub fn backfill_running(&self) -> bool {
        self.backfill
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .as_ref()
            .is_some_and(|h| !h.is_finished())
    }

    pub fn embedder(&self) -> &EmbeddingBatcher {
        &self.embedder
    }

    /// (tenant, database, image count) for every database, for metrics.
    pub fn database_sizes(&self) -> Vec<(String, String, usize)> {
        self.indexes.sizes()
    }

    /// Whether the store answers a query (for `/readyz`).
    pub async fn check_store(&self) -> Result<(), ServiceError> {
        self.blocking_store(|s| s.get_db(DbRef::new("", "readyz")).map(|_| ()))
            .await
    }

    /// Creates a database indexing `descriptors`.
    pub async fn create_db(
        &self,
        tenant: &str,
        name: &str,
        descriptors: DbDescriptors,
    ) -> Result<DbInfo, ServiceError> {
        let (t, n) = (tenant.to_string(), name.to_string());
        self.write_through(move |store, indexes| {
            let info = store.create_db_with(DbRef::new(&t, &n), descriptors)?;
            indexes.created(&info);
            Ok(info)
        })
        .await
    }

    pub async fn list_dbs(&self, tenant: &str) -> Result<Vec<DbInfo>, ServiceError> {
        let t = tenant.to_string();
        self.blocking_store(move |s| s.list_dbs(&t)).await
    }

    /// Deletes the database once no write to it is between its store and index steps;
    /// writes that arrive meanwhile find it gone (or find its successor of the same name).
    pub async fn delete_db(&self, tenant: &str, name: &str) -> Result<(), ServiceError> {
        let gated = loop {
            let Some(index) = self.indexes.get(tenant, name) else {
                break None;
            };
            let gate = index.exclusive_gate().await;
            if self.indexes.is_current(&index) {
                break Some((index, gate));
            }
        };
        let (t, n) = (tenant.to_string(), name.to_string());
        self.write_through(move |store, indexes| {
            store.delete_db(DbRef::new(&t, &n))?;
            if let Some((index, _gate)) = gated {
                indexes.deleted(&index);
            }
            Ok(())
        })
        .await
    }

    /// Stores the image; with `Part::Subject`, also what the subject model found.
    pub async fn add_image(
        &self,
        tenant: &str,
        req: AddImage,
    ) -> Result<(ImageRecord, Option<Subject>), ServiceError> {
        let index = self.index(tenant, &req.db)?;
        let want_copy = self.wants_copy(&index)?;
        let from_thumbnail = index.indexes(Descriptor::Semantic);
        let part = req.part;
        let subject_model = self.subject_model_for(part)?;
        let (bytes, image_url) = self
            .image_bytes(tenant, req.source, ADD_IMAGE_MAX_BYTES)
            .await?;
        let prepared = tokio::task::spawn_blocking(move || {
            prepare_with(
                &bytes,
                &PrepareOptions {
                    stored: true,
                    copy: want_copy,
                    copy_from_thumbnail: from_thumbnail,
                    region: part.region(),
                    crop: part == Part::Subject,
                },
                subject_model.as_deref(),
            )
        })
        .await
        .map_err(|e| ServiceError::Internal(e.to_string()))??;
        let Inference {
            embedding, copy, ..
        } = self.embed(prepared.tensor, prepared.copy).await?;
        let (index, gate) = self.gated_index(tenant, &req.db).await?;
        let record = {
            let (t, index) = (tenant.to_string(), index.clone());
            let thumbnail = prepared.thumbnail;
            self.write_through(move |store, _| {
                let _gate = gate;
                let record = store.add_image(
                    DbRef::new(&t, &req.db),
                    &NewImage {
                        entity_id: &req.entity_id,
                        extra_data: &req.extra_data,
                        image_url: &image_url,
                        embedding: &embedding,
                        copy_embedding: copy.as_deref(),
                        thumbnail: thumbnail.as_deref(),
                        attributes: &req.attributes,
                    },
                )?;
                index.add(
                    record.data_id,
                    ImageVectors {
                        semantic: &embedding,
                        copy: copy.as_deref(),
                    },
                    &record.attributes,
                )?;
                Ok(record)
            })
            .await?
        };
        self.indexes.promote_if_due(&index);
        Ok((record, prepared.subject))
    }

    pub async fn delete_entity(
        &self,
        tenant: &str,
        db: &str,
        entity_id: &str,
    ) -> Result<usize, ServiceError> {
        let (index, gate) = self.gated_index(tenant, db).await?;
        let (t, d, e) = (tenant.to_string(), db.to_string(), entity_id.to_string());
        self.write_through(move |store, _| {
            let _gate = gate;
            let removed = store.delete_entity(DbRef::new(&t, &d), &e)?;
            index.remove(&removed)?;
            Ok(removed.len())
        })
        .await
    }

    pub async fn list_images(
        &self,
        tenant: &str,
        req: ListImages,
    ) -> Result<ImageList, ServiceError> {
        self.index(tenant, &req.db)?; // DbNotFound before anything else
        let prefix = req.entity_id_prefix.filter(|p| !p.is_empty());
        let scope = ListScope {
            tenant,
            db: &req.db,
            order: req.order,
            entity_id_prefix: prefix.as_deref(),
            filter: req.filter.as_ref().map(|f| f.text.as_str()),
        };
        let after = match req.token.as_deref().filter(|t| !t.is_empty()) {
            Some(token) => {
                if req.offset > 0 {
                    return Err(ServiceError::InvalidParameter(
                        "Offset cannot be combined with Token: a Token already says where the next page starts".into(),
                    ));
                }
                Some(
                    self.tokens
                        .resume(&scope, token)
                        .map_err(|e| ServiceError::InvalidParameter(e.to_string()))?,
                )
            }
            None => {
                if req.offset + req.limit as u64 > OFFSET_PAGING_LIMIT {
                    return Err(ServiceError::InvalidParameter(format!(
                        "Offset+Limit paging reaches only the first {OFFSET_PAGING_LIMIT} records \
                         (Offset {} + Limit {} > {OFFSET_PAGING_LIMIT}); continue with the Token of the previous page",
                        req.offset, req.limit
                    )));
                }
                None
            }
        };
        let page = {
            let (t, d, p) = (tenant.to_string(), req.db.clone(), prefix.clone());
            let (order, offset, limit) = (req.order, req.offset, req.limit);
            let filter = req.filter.as_ref().map(|f| f.filter.clone());
            self.blocking_store(move |s| {
                s.list_images(
                    DbRef::new(&t, &d),
                    &ListQuery {
                        order,
                        entity_id_prefix: p.as_deref(),
                        after,
                        offset,
                        limit,
                        filter: filter.as_ref(),
                    },
                )
            })
            .await?
        };
        let token = match (page.has_more, page.images.last()) {
            (true, Some(last)) => Some(self.tokens.issue(&scope, last.data_id)),
            _ => None,
        };
        Ok(ImageList {
            images: page.images,
            token,
            total_count: page.total_count,
        })
    }

    /// The matches; with `Part::Subject`, also what the subject model found.
    pub async fn search_image(
        &self,
        tenant: &str,
        req: SearchImage,
    ) -> Result<(Vec<Match>, Option<Subject>), ServiceError> {
        let index = self.index(tenant, &req.db)?;
        let filter = MatchFilter {
            limit: req.limit,
            min_score: req.min_score,
            distinct_entity: req.distinct_entity,
        };
        let (queries, subject) = match req.query {
            SearchQuery::Image(source) => {
                self.image_query(tenant, &index, source, req.part).await?
            }
            SearchQuery::Stored(stored) => {
                (self.stored_query(tenant, &req.db, stored).await?, None)
            }
        };
        // DistinctEntity needs more hits than it returns; fetch more until the page is
        // full or the database is exhausted.
        let mut k = if req.distinct_entity {
            req.limit.saturating_mul(4)
        } else {
            req.limit
        };
        loop {
            let (hits, total) = {
                let (index, store, queries) = (index.clone(), self.store.clone(), queries.clone());
                let rerank = self.indexes.settings().rerank;
                let attr_filter = req.filter.clone();
                tokio::task::spawn_blocking(move || {
                    index.search(store.as_ref(), &queries, k, rerank, attr_filter.as_ref())
                })
                .await
                .map_err(|e| ServiceError::Internal(e.to_string()))??
            };
            let ids: Vec<DataId> = hits.iter().map(|h| h.id).collect();
            let records = {
                let (t, d) = (tenant.to_string(), req.db.clone());
                self.blocking_store(move |s| s.get_images(DbRef::new(&t, &d), &ids))
                    .await?
            };
            // Hits come best first: once one scores below MinScore, so do all later ones.
            let below_min = hits
                .last()
                .is_some_and(|h| req.min_score.is_some_and(|min| h.score < min));
            let exhausted = hits.len() < k
                || k >= total
                || below_min
                || (k >= MAX_ANN_CANDIDATES && index.is_ann());
            let matches = select_matches(&hits, records, filter);
            if matches.len() >= req.limit || exhausted || !req.distinct_entity {
                return Ok((matches, subject));
            }
            k = k.saturating_mul(4).min(total);
        }
    }

    /// The thumbnail of any image by id (for a link the API layer signed and verified).
    pub async fn thumbnail_by_id(&self, id: DataId) -> Result<Option<Vec<u8>>, ServiceError> {
        self.blocking_store(move |s| s.thumbnail_by_id(id)).await
    }

    pub async fn thumbnail(
        &self,
        tenant: &str,
        db: &str,
        id: DataId,
    ) -> Result<Option<Vec<u8>>, ServiceError> {
        let (t, d) = (tenant.to_string(), db.to_string());
        self.blocking_store(move |s| s.get_thumbnail(DbRef::new(&t, &d), id))
            .await
    }

    async fn image_bytes(
        &self,
        tenant: &str,
        source: ImageSource,
        cap: usize,
    ) -> Result<(Vec<u8>, String), ServiceError> {
        let bytes = match source {
            ImageSource::Url(url) => match self.uploaded_image(tenant, &url).await? {
                // An upload's URL dies with it: stored like bytes (no ImageUrl), so that
                // SearchImage links its thumbnail instead.
                Some(bytes) => bytes,
                None => {
                    let bytes = self.fetcher.fetch(&url, cap).await?;
                    return Ok((bytes, url));
                }
            },
            ImageSource::Bytes(bytes) => bytes,
        };
        if bytes.len() > cap {
            return Err(ServiceError::ImageSize(format!(
                "the image is {} bytes; the limit is {} bytes ({} MB)",
                bytes.len(),
                cap,
                cap / (1024 * 1024)
            )));
        }
        Ok((bytes, String::new()))
    }

    async fn embed(
        &self,
        tensor: Vec<f32>,
        copy: Option<Vec<u8>>,
    ) -> Result<Inference, ServiceError> {
        let ticket = self.embedder.submit(EmbedInput { tensor, copy })?;
        Ok(ticket.wait_async().await?)
    }

    /// Whether images of `index`'s database get a copy descriptor: when it indexes them
    /// and the copy model is loaded. A copy-only database without the model cannot work.
    fn wants_copy(&self, index: &DbIndex) -> Result<bool, ServiceError> {
        let indexes_copy = index.indexes(Descriptor::Copy);
        let has_model = self.embedder.has_copy_model();
        if indexes_copy && !has_model && !index.indexes(Descriptor::Semantic) {
            return Err(ServiceError::CopyModelMissing(index.name.clone()));
        }
        Ok(indexes_copy && has_model)
    }

    /// Whether the copy-detection model is loaded (databases are searched semantic-only
    /// without it).
    pub fn has_copy_model(&self) -> bool {
        self.embedder.has_copy_model()
    }

    fn index(&self, tenant: &str, db: &str) -> Result<Arc<DbIndex>, ServiceError> {
        self.indexes
            .get(tenant, db)
            .ok_or_else(|| ServiceError::DbNotFound(db.to_string()))
    }

    /// The database's current index with a writer's share of its gate. A database deleted
    /// (or deleted and re-created) while the caller waited for the gate is looked up again,
    /// so a write never lands in the store of one database and the index of another.
    pub(super) async fn gated_index(
        &self,
        tenant: &str,
        db: &str,
    ) -> Result<(Arc<DbIndex>, WriteGuard), ServiceError> {
        loop {
            let index = self.index(tenant, db)?;
            let gate = index.write_gate().await;
            if self.indexes.is_current(&index) {
                return Ok((index, gate));
            }
        }
    }

    /// Runs a write — the store's step and the index's — as one blocking task. Once started
    /// it runs to the end even when the request is cancelled (a client that disconnects
    /// drops the handler's future, not a blocking task), so store and index never part.
    pub(super) async fn write_through<T, F>(&self, f: F) -> Result<T, ServiceError>
    where
        T: Send + 'static,
        F: FnOnce(&dyn ImageStore, &DbIndexes) -> Result<T, ServiceError> + Send + 'static,
    {
        let (store, indexes) = (self.store.clone(), self.indexes.clone());
        tokio::task::spawn_blocking(move || f(store.as_ref(), &indexes))
            .await
            .map_err(|e| ServiceError::Internal(e.to_string()))?
    }

    pub(super) async fn blocking_store<T, F>(&self, f: F) -> Result<T, ServiceError>
    where
        T: Send + 'static,
        F: FnOnce(&dyn ImageStore) -> Result<T, StoreError> + Send + 'static,
    {
        let store = self.store.clone();
        tokio::task::spawn_blocking(move || f(store.as_ref()))
            .await
            .map_err(|e| ServiceError::Internal(e.to_string()))?
            .map_err(ServiceError::from)
    }
}

/// Best-first hits + their records → the page SearchImage returns: hits without a record
/// (deleted meanwhile) dropped, then those scoring below `min_score`, then, with
/// `distinct_entity`, all but the best of each EntityId; at most `limit`.
fn select_matches(hits: &[ScoredHit], records: Vec<ImageRecord>, req: MatchFilter) -> Vec<Match> {
    let by_id: HashMap<DataId, ImageRecord> = records.into_iter().map(|r| (r.data_id, r)).collect();
    let mut seen_entities = std::collections::HashSet::new();
    hits.iter()
        .filter_map(|h| {
            by_id.get(&h.id).map(|r| Match {
                record: r.clone(),
                score: h.score,
            })
        })
        .filter(|m| req.min_score.is_none_or(|min| m.score >= min))
        .filter(|m| !req.distinct_entity || seen_entities.insert(m.record.entity_id.clone()))
        .take(req.limit)
        .collect()
}

impl Drop for ImageService {
    /// Background work stops after its current batch.
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

mod duplicates;
mod query;
#[cfg(test)]
mod tests;
mod update;
