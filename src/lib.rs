//! imgsearch: a self-hosted image search service.
//!
//! Data flows `api` (HTTP, signatures) → `service` (operations) → `vision` (decode,
//! preprocess, embed) and `index` (vector search) → `store` (persistence). `cli` holds the
//! subcommands that drive all of it.

pub mod api;
pub mod cli;
pub mod client;
pub mod config;
pub mod embedding;
pub mod fetch;
pub mod http_client;
pub mod index;
pub mod rules;
pub mod service;
pub mod signing;
pub mod store;
pub mod vision;
