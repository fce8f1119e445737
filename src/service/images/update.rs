//! UpdateImage (ours): new ExtraData and/or attributes for one image or every image of an
//! entity, without re-embedding; the attribute table filtered searches read follows at
//! once, under the database's write gate like every write.

use super::{ImageService, StoredImage};
use crate::attributes::Attributes;
use crate::service::ServiceError;
use crate::store::{DbRef, ImageSelector, ImageUpdate};

impl ImageService {
    /// Applies ExtraData (when given) and every attribute `attributes` sets. Returns how
    /// many images changed; none is `ImageNotFound`.
    pub async fn update_image(
        &self,
        tenant: &str,
        db: &str,
        which: StoredImage,
        extra_data: Option<String>,
        attributes: Attributes,
    ) -> Result<u64, ServiceError> {
        let (index, gate) = self.gated_index(tenant, db).await?;
        let (t, d, w) = (tenant.to_string(), db.to_string(), which.clone());
        let changed = self
            .write_through(move |store, _| {
                let _gate = gate;
                let selector = match &w {
                    StoredImage::DataId(id) => ImageSelector::DataId(*id),
                    StoredImage::Entity(e) => ImageSelector::Entity(e),
                };
                let records = store.update_images(
                    DbRef::new(&t, &d),
                    selector,
                    &ImageUpdate {
                        extra_data: extra_data.as_deref(),
                        attributes: &attributes,
                    },
                )?;
                index.set_attributes(records.iter().map(|r| (r.data_id, &r.attributes)));
                Ok(records.len() as u64)
            })
            .await?;
        if changed == 0 {
            return Err(ServiceError::ImageNotFound(which.not_found(db)));
        }
        Ok(changed)
    }
}
