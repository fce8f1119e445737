//! Service operations between the API layer and the store, vision, fetch and index modules.
//! No HTTP types and no wire strings: parameters arrive checked by the API edge, errors
//! leave as [`ServiceError`].
//!
//! [`images`]: the operations ([`ImageService`]); [`prepare`]: decoding an image into the
//! network's input and a thumbnail; [`db_index`]: one database's index, in step with the
//! store; [`registry`]: every database's index, promotion and snapshot scheduling;
//! [`list_token`]: the ListImages continuation token; [`error`]: [`ServiceError`].

mod backfill;
pub mod db_index;
pub mod error;
pub mod images;
pub mod list_token;
pub mod prepare;
pub mod registry;
pub mod uploads;
mod vector_index;

pub use db_index::IndexSettings;
pub use error::ServiceError;
pub use images::ImageService;
