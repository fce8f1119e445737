//! Service operations between the API layer and the store, vision and index modules.
//!
//! [`images`]: the operations; [`indexes`]: each database's search index, in step with the
//! store; [`list_token`]: the ListImages continuation token.

pub mod images;
pub mod indexes;
pub mod list_token;
