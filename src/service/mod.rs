//! Service operations between the API layer and the store, vision and index modules.
//!
//! So far only the ListImages continuation token lives here ([`list_token`]); the operations
//! themselves are added by the API work.

pub mod images;
pub mod list_token;
