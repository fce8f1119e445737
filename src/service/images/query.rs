//! How SearchImage's query vectors are made: from a new image (decoded, trimmed, with
//! `Region` or `Crop=true` its part or subject, embedded) or from a stored image's own
//! vectors. Not here: the search itself and what it returns (`images`).

use std::sync::Arc;

use super::{ImageService, ImageSource, Part, StoredImage};
use crate::rules::SEARCH_IMAGE_MAX_BYTES;
use crate::service::db_index::{DbIndex, QueryVectors};
use crate::service::prepare::{prepare_with, PrepareOptions};
use crate::service::ServiceError;
use crate::store::{DbRef, Descriptor};
use crate::vision::embedder::EmbedInput;
use crate::vision::subject::{Subject, SubjectModel};

impl ImageService {
    /// The query vectors of a new image: fetched or uploaded, decoded, embedded.
    pub(super) async fn image_query(
        &self,
        tenant: &str,
        index: &DbIndex,
        source: ImageSource,
        part: Part,
    ) -> Result<(QueryVectors, Option<Subject>), ServiceError> {
        let want_copy = self.wants_copy(index)?;
        let subject_model = self.subject_model_for(part)?;
        let (bytes, _) = self
            .image_bytes(tenant, source, SEARCH_IMAGE_MAX_BYTES)
            .await?;
        let opts = PrepareOptions {
            stored: false,
            copy: want_copy,
            copy_from_thumbnail: true,
            region: part.region(),
            crop: part == Part::Subject,
        };
        let prepared = tokio::task::spawn_blocking(move || {
            prepare_with(&bytes, &opts, subject_model.as_deref())
        })
        .await
        .map_err(|e| ServiceError::Internal(e.to_string()))??;
        // Submit both before waiting so that they can share one inference batch.
        let trimmed = self.embedder.submit(EmbedInput {
            tensor: prepared.tensor,
            copy: prepared.copy,
        })?;
        let untrimmed = match prepared.untrimmed {
            Some(t) => Some(self.embedder.submit(t)?),
            None => None,
        };
        let subject = match prepared.subject_tensor {
            Some(t) => Some(self.embedder.submit(t)?),
            None => None,
        };
        let first = trimmed.wait_async().await?;
        let mut queries = QueryVectors {
            semantic: vec![first.embedding],
            copy: first.copy,
        };
        if let Some(t) = untrimmed {
            queries.semantic.push(t.wait_async().await?.embedding);
        }
        // The subject's box is one more query vector: each image keeps its best cosine,
        // so the whole picture still matches what it matched before.
        if let Some(t) = subject {
            queries.semantic.push(t.wait_async().await?.embedding);
        }
        Ok((queries, prepared.subject))
    }

    /// The query vectors of a stored image: its own stored descriptors (a copy descriptor
    /// only when it has one), so it finds itself at Score 10 like a re-submitted file.
    pub(super) async fn stored_query(
        &self,
        tenant: &str,
        db: &str,
        stored: StoredImage,
    ) -> Result<QueryVectors, ServiceError> {
        let (t, d) = (tenant.to_string(), db.to_string());
        let named = stored.clone();
        let found = self
            .blocking_store(move |s| {
                let db = DbRef::new(&t, &d);
                let id = match &named {
                    StoredImage::DataId(id) => *id,
                    StoredImage::Entity(entity) => match s.first_image_of_entity(db, entity)? {
                        Some(id) => id,
                        None => return Ok(None),
                    },
                };
                let semantic = s.get_embeddings(db, Descriptor::Semantic, &[id])?;
                let Some((_, vector)) = semantic.iter().next() else {
                    return Ok(None);
                };
                let semantic = vec![vector.to_vec()];
                let copy_set = s.get_embeddings(db, Descriptor::Copy, &[id])?;
                let copy = copy_set.iter().next().map(|(_, v)| v.to_vec());
                Ok(Some(QueryVectors { semantic, copy }))
            })
            .await?;
        found.ok_or_else(|| ServiceError::ImageNotFound(stored.not_found(db)))
    }

    /// The subject model when `part` asks for it: `SubjectModelMissing` without one.
    pub(super) fn subject_model_for(
        &self,
        part: Part,
    ) -> Result<Option<Arc<SubjectModel>>, ServiceError> {
        match part {
            Part::Subject => self
                .subject
                .clone()
                .map(Some)
                .ok_or(ServiceError::SubjectModelMissing),
            _ => Ok(None),
        }
    }
}
