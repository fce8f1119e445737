//! `ImageService`: the API's operations on image databases — create, list, delete
//! databases; add, list, search and delete images — with no HTTP types in sight.
//!
//! It ties together the store (source of truth, durable), the in-memory search indexes
//! (rebuilt from the store at start-up, updated after each durable write), the image
//! fetcher and the batching embedder. Parameters arrive already checked against the API's
//! rules by the API layer; errors leave as `ServiceError` values that the edge maps to
//! codes once.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use crate::index::{score, ExactIndex};
use crate::service::list_token::{ListScope, ListTokenKey};
use crate::store::{
    DataId, DbInfo, DbRef, ImageRecord, ImageStore, ListQuery, NewImage, Order, StoreError,
};
use crate::vision::decode::{self, DecodeError, DecodeLimits};
use crate::vision::embedder::{EmbedError, EmbeddingBatcher};
use crate::vision::fetch::{FetchError, ImageFetcher};
use crate::vision::onnx::FEATURE_DIM;
use crate::vision::preprocess::{fit_within, resize, write_input_tensor, INPUT_LEN};

/// Size caps of the API: AddImage 2 MB, SearchImage 3 MB.
pub const ADD_IMAGE_MAX_BYTES: usize = 2 * 1024 * 1024;
pub const SEARCH_IMAGE_MAX_BYTES: usize = 3 * 1024 * 1024;
/// Each side must be strictly inside (128, 1024) pixels.
pub const MIN_SIDE_EXCLUSIVE: u32 = 128;
pub const MAX_SIDE_EXCLUSIVE: u32 = 1024;
/// Longest side of the stored thumbnail.
pub const THUMBNAIL_SIDE: u32 = 256;
/// Offset+Limit paging reaches only this many records; beyond, a Token is needed.
pub const OFFSET_PAGING_LIMIT: u64 = 2000;

#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    #[error("{0}")]
    InvalidParameter(String),
    #[error("image database \"{0}\" does not exist; create it with CreateImageDb first")]
    DbNotFound(String),
    #[error("image database \"{0}\" already exists")]
    DbExists(String),
    #[error("{0}")]
    ImageFetch(#[from] FetchError),
    #[error("{0}")]
    ImageFormat(String),
    #[error("{0}")]
    ImageResolution(String),
    #[error("{0}")]
    ImageSize(String),
    #[error("the server is busy: {0}")]
    Busy(String),
    #[error("the feature extractor failed: {0}")]
    Algo(String),
    #[error("internal error: {0}")]
    Internal(String),
}

impl From<StoreError> for ServiceError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::DbExists(name) => ServiceError::DbExists(name),
            StoreError::DbNotFound(name) => ServiceError::DbNotFound(name),
            StoreError::DbFull { .. }
            | StoreError::Invalid(_)
            | StoreError::DimensionMismatch { .. } => ServiceError::InvalidParameter(e.to_string()),
            other => ServiceError::Internal(other.to_string()),
        }
    }
}

impl From<EmbedError> for ServiceError {
    fn from(e: EmbedError) -> Self {
        match e {
            EmbedError::QueueFull { .. } => ServiceError::Busy(e.to_string()),
            other => ServiceError::Algo(other.to_string()),
        }
    }
}

impl From<DecodeError> for ServiceError {
    fn from(e: DecodeError) -> Self {
        match e {
            DecodeError::TooLarge { .. } => ServiceError::ImageResolution(e.to_string()),
            other => ServiceError::ImageFormat(other.to_string()),
        }
    }
}

/// Where an image comes from: a URL to fetch, or bytes uploaded with the request.
#[derive(Debug, Clone)]
pub enum ImageSource {
    Url(String),
    Bytes(Vec<u8>),
}

pub struct AddImage {
    pub db: String,
    pub entity_id: String,
    pub extra_data: String,
    pub source: ImageSource,
}

pub struct ListImages {
    pub db: String,
    pub offset: u64,
    pub limit: u32,
    pub token: Option<String>,
    pub order: Order,
    pub entity_id_prefix: Option<String>,
}

pub struct ImageList {
    pub images: Vec<ImageRecord>,
    pub token: Option<String>,
    pub total_count: u64,
}

pub struct SearchImage {
    pub db: String,
    pub source: ImageSource,
    pub limit: usize,
}

#[derive(Debug, Clone)]
pub struct Match {
    pub record: ImageRecord,
    pub score: f32,
}

type IndexKey = (String, String);

pub struct ImageService {
    store: Arc<dyn ImageStore>,
    fetcher: ImageFetcher,
    embedder: Arc<EmbeddingBatcher>,
    tokens: ListTokenKey,
    indexes: RwLock<HashMap<IndexKey, Arc<RwLock<ExactIndex>>>>,
}

impl ImageService {
    /// Opens the service over `store`, building every database's index from it.
    pub fn start(
        store: Arc<dyn ImageStore>,
        fetcher: ImageFetcher,
        embedder: Arc<EmbeddingBatcher>,
        tokens: ListTokenKey,
    ) -> Result<Self, ServiceError> {
        let mut indexes = HashMap::new();
        for db in store.list_all_dbs()? {
            let set = store.load_embeddings(DbRef::new(&db.tenant, &db.name))?;
            let dim = if set.is_empty() { FEATURE_DIM } else { set.dim };
            let index = ExactIndex::from_parts(dim, set.ids, set.vectors)
                .map_err(|e| ServiceError::Internal(e.to_string()))?;
            indexes.insert((db.tenant, db.name), Arc::new(RwLock::new(index)));
        }
        Ok(Self {
            store,
            fetcher,
            embedder,
            tokens,
            indexes: RwLock::new(indexes),
        })
    }

    pub fn embedder(&self) -> &EmbeddingBatcher {
        &self.embedder
    }

    /// (tenant, database, image count) for every database, for metrics.
    pub fn database_sizes(&self) -> Vec<(String, String, usize)> {
        let map = self.indexes.read().unwrap_or_else(|p| p.into_inner());
        map.iter()
            .map(|((t, d), ix)| (t.clone(), d.clone(), ix.read().map_or(0, |ix| ix.len())))
            .collect()
    }

    /// Whether the store answers a query (for `/readyz`).
    pub async fn check_store(&self) -> Result<(), ServiceError> {
        self.blocking_store(|s| s.get_db(DbRef::new("", "readyz")).map(|_| ()))
            .await
    }

    pub async fn create_db(&self, tenant: &str, name: &str) -> Result<DbInfo, ServiceError> {
        let info = self
            .blocking_store({
                let (t, n) = (tenant.to_string(), name.to_string());
                move |s| s.create_db(DbRef::new(&t, &n))
            })
            .await?;
        self.write_indexes().insert(
            key(tenant, name),
            Arc::new(RwLock::new(ExactIndex::new(FEATURE_DIM))),
        );
        Ok(info)
    }

    pub async fn list_dbs(&self, tenant: &str) -> Result<Vec<DbInfo>, ServiceError> {
        let t = tenant.to_string();
        self.blocking_store(move |s| s.list_dbs(&t)).await
    }

    pub async fn delete_db(&self, tenant: &str, name: &str) -> Result<(), ServiceError> {
        let (t, n) = (tenant.to_string(), name.to_string());
        self.blocking_store(move |s| s.delete_db(DbRef::new(&t, &n)))
            .await?;
        self.write_indexes().remove(&key(tenant, name));
        Ok(())
    }

    pub async fn add_image(
        &self,
        tenant: &str,
        req: AddImage,
    ) -> Result<ImageRecord, ServiceError> {
        let index = self.index(tenant, &req.db)?;
        let (bytes, image_url) = self.image_bytes(req.source, ADD_IMAGE_MAX_BYTES).await?;
        let prepared = tokio::task::spawn_blocking(move || prepare(&bytes, true))
            .await
            .map_err(|e| ServiceError::Internal(e.to_string()))??;
        let embedding = self.embed(prepared.tensor).await?;
        let record = {
            let t = tenant.to_string();
            let embedding = embedding.clone();
            let thumbnail = prepared.thumbnail;
            self.blocking_store(move |s| {
                s.add_image(
                    DbRef::new(&t, &req.db),
                    &NewImage {
                        entity_id: &req.entity_id,
                        extra_data: &req.extra_data,
                        image_url: &image_url,
                        embedding: &embedding,
                        thumbnail: thumbnail.as_deref(),
                    },
                )
            })
            .await?
        };
        index
            .write()
            .map_err(|_| ServiceError::Internal("index lock poisoned".into()))?
            .add(record.data_id, &embedding)
            .map_err(|e| ServiceError::Internal(e.to_string()))?;
        Ok(record)
    }

    pub async fn delete_entity(
        &self,
        tenant: &str,
        db: &str,
        entity_id: &str,
    ) -> Result<usize, ServiceError> {
        let index = self.index(tenant, db)?;
        let (t, d, e) = (tenant.to_string(), db.to_string(), entity_id.to_string());
        let removed = self
            .blocking_store(move |s| s.delete_entity(DbRef::new(&t, &d), &e))
            .await?;
        if let Ok(mut ix) = index.write() {
            ix.remove(&removed);
        }
        Ok(removed.len())
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
            self.blocking_store(move |s| {
                s.list_images(
                    DbRef::new(&t, &d),
                    &ListQuery {
                        order,
                        entity_id_prefix: p.as_deref(),
                        after,
                        offset,
                        limit,
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

    pub async fn search_image(
        &self,
        tenant: &str,
        req: SearchImage,
    ) -> Result<Vec<Match>, ServiceError> {
        let index = self.index(tenant, &req.db)?;
        let (bytes, _) = self.image_bytes(req.source, SEARCH_IMAGE_MAX_BYTES).await?;
        let prepared = tokio::task::spawn_blocking(move || prepare(&bytes, false))
            .await
            .map_err(|e| ServiceError::Internal(e.to_string()))??;
        let query = self.embed(prepared.tensor).await?;
        let hits = {
            let ix = index
                .read()
                .map_err(|_| ServiceError::Internal("index lock poisoned".into()))?;
            ix.search(&query, req.limit)
                .map_err(|e| ServiceError::Internal(e.to_string()))?
        };
        let ids: Vec<DataId> = hits.iter().map(|h| h.id).collect();
        let records = {
            let (t, d) = (tenant.to_string(), req.db.clone());
            self.blocking_store(move |s| s.get_images(DbRef::new(&t, &d), &ids))
                .await?
        };
        let by_id: HashMap<DataId, ImageRecord> =
            records.into_iter().map(|r| (r.data_id, r)).collect();
        Ok(hits
            .iter()
            .filter_map(|h| {
                by_id.get(&h.id).map(|r| Match {
                    record: r.clone(),
                    score: score(h.cosine),
                })
            })
            .collect())
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
        source: ImageSource,
        cap: usize,
    ) -> Result<(Vec<u8>, String), ServiceError> {
        match source {
            ImageSource::Url(url) => {
                let bytes = self.fetcher.fetch(&url, cap).await?;
                Ok((bytes, url))
            }
            ImageSource::Bytes(bytes) => {
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
        }
    }

    async fn embed(&self, tensor: Vec<f32>) -> Result<Vec<f32>, ServiceError> {
        let ticket = self.embedder.submit(tensor)?;
        Ok(ticket.wait_async().await?.embedding)
    }

    fn index(&self, tenant: &str, db: &str) -> Result<Arc<RwLock<ExactIndex>>, ServiceError> {
        let map = self.indexes.read().unwrap_or_else(|p| p.into_inner());
        map.get(&key(tenant, db))
            .cloned()
            .ok_or_else(|| ServiceError::DbNotFound(db.to_string()))
    }

    fn write_indexes(
        &self,
    ) -> std::sync::RwLockWriteGuard<'_, HashMap<IndexKey, Arc<RwLock<ExactIndex>>>> {
        self.indexes.write().unwrap_or_else(|p| p.into_inner())
    }

    async fn blocking_store<T, F>(&self, f: F) -> Result<T, ServiceError>
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

fn key(tenant: &str, db: &str) -> IndexKey {
    (tenant.to_string(), db.to_string())
}

struct Prepared {
    tensor: Vec<f32>,
    thumbnail: Option<Vec<u8>>,
}

/// Checks the API's image rules on the bytes, decodes them and makes the network input
/// (and, for stored images, a JPEG thumbnail). Runs on a blocking thread.
fn prepare(bytes: &[u8], with_thumbnail: bool) -> Result<Prepared, ServiceError> {
    let (_, width, height) = decode::probe(bytes)?;
    let ok = |side: u32| side > MIN_SIDE_EXCLUSIVE && side < MAX_SIDE_EXCLUSIVE;
    if !ok(width) || !ok(height) {
        return Err(ServiceError::ImageResolution(format!(
            "the image is {width}×{height} px; each side must be greater than {MIN_SIDE_EXCLUSIVE} \
             and less than {MAX_SIDE_EXCLUSIVE} px"
        )));
    }
    let image = decode::decode(bytes, &DecodeLimits::default())?;
    let mut tensor = vec![0f32; INPUT_LEN];
    write_input_tensor(&image, &mut tensor);
    let thumbnail = if with_thumbnail {
        let (w, h) = fit_within(image.width, image.height, THUMBNAIL_SIDE, THUMBNAIL_SIDE);
        let small = resize(&image, w, h).map_err(|e| ServiceError::Internal(e.to_string()))?;
        Some(encode_jpeg(&small)?)
    } else {
        None
    };
    Ok(Prepared { tensor, thumbnail })
}

fn encode_jpeg(img: &decode::RgbImage) -> Result<Vec<u8>, ServiceError> {
    let mut out = Vec::new();
    image::codecs::jpeg::JpegEncoder::new_with_quality(&mut out, 80)
        .encode(
            &img.pixels,
            img.width,
            img.height,
            image::ExtendedColorType::Rgb8,
        )
        .map_err(|e| ServiceError::Internal(format!("thumbnail encoding failed: {e}")))?;
    Ok(out)
}
