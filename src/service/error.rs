//! `ServiceError`: every way a service operation fails, in terms of the operation (a
//! database missing, an image the network cannot read, the server busy), converted from the
//! store's, the decoder's, the embedder's and the fetcher's errors. The API edge maps each
//! variant to a wire code once (`api::actions`); no wire strings here.

use crate::fetch::FetchError;
use crate::store::StoreError;
use crate::vision::decode::DecodeError;
use crate::vision::embedder::EmbedError;

#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    #[error("{0}")]
    InvalidParameter(String),
    #[error("image database \"{0}\" does not exist; create it with CreateImageDb first")]
    DbNotFound(String),
    #[error("image database \"{0}\" already exists")]
    DbExists(String),
    /// The stored image a search names is not in the database.
    #[error("{0}")]
    ImageNotFound(String),
    #[error("{0}")]
    ImageFetch(#[from] FetchError),
    #[error("{0}")]
    ImageFormat(String),
    #[error("{0}")]
    ImageResolution(String),
    #[error("{0}")]
    ImageSize(String),
    /// The tenant holds as many databases as it may (`--max-databases-per-tenant`).
    #[error("{0}")]
    DatabaseQuota(String),
    /// The tenant's databases hold as many images as it may (`--max-images-per-tenant`).
    #[error("{0}")]
    ImageQuota(String),
    /// The server's disk is full; the write was not made.
    #[error("{0}")]
    StorageFull(String),
    /// An ImageUrl names an upload that is not there for this tenant.
    #[error("{0}")]
    UploadNotFound(String),
    /// The tenant's unexpired uploads hold as many bytes as they may.
    #[error("{0}")]
    UploadQuota(String),
    #[error("the server is busy: {0}")]
    Busy(String),
    /// The store cannot be reached now (its database server is down or restarting).
    #[error("{0}")]
    StoreUnavailable(String),
    #[error("the feature extractor failed: {0}")]
    Algo(String),
    /// The database indexes copy-detection descriptors only and this server runs without
    /// the copy model.
    #[error(
        "image database \"{0}\" indexes copy-detection descriptors only, and this server runs \
         without the copy-detection model (--no-copy-model, or the model file is absent: run \
         scripts/setup.sh); restart it with the model"
    )]
    CopyModelMissing(String),
    /// `Crop=true` on a server without the subject model.
    #[error(
        "Crop=true needs the subject model (U-2-Net small, u2netp.onnx), which this server \
         runs without (the file is absent: run scripts/setup.sh, or pass --subject-model); \
         send the request without Crop, or with a Region"
    )]
    SubjectModelMissing,
    #[error("internal error: {0}")]
    Internal(String),
}

impl From<StoreError> for ServiceError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::DbExists(name) => ServiceError::DbExists(name),
            StoreError::DbNotFound(name) => ServiceError::DbNotFound(name),
            StoreError::DiskFull(_) => ServiceError::StorageFull(e.to_string()),
            StoreError::TenantDatabaseQuota { .. } => ServiceError::DatabaseQuota(e.to_string()),
            StoreError::TenantImageQuota { .. } => ServiceError::ImageQuota(e.to_string()),
            StoreError::TenantUploadQuota { .. } => ServiceError::UploadQuota(e.to_string()),
            StoreError::Unavailable(_) => ServiceError::StoreUnavailable(e.to_string()),
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
