//! imgsearch: a self-hosted image search service.
//!
//! Data flows `api` (HTTP, signatures) → `service` (operations) → `vision` (decode,
//! preprocess, embed), `index` (vector search) and `store` (persistence). `rules` states the
//! API's rules and limits for every layer; `fetch` downloads images by URL. `serve` wires
//! the server process together; `remote` is the API client and the commands that use it;
//! `offline` runs the models locally; `backup` copies a data directory (backup/restore); `bench` (cargo feature `bench`) measures. `cli` parses
//! arguments and dispatches. `docs/architecture.md` walks through it.

pub mod api;
pub mod attributes;
pub mod backup;
#[cfg(feature = "bench")]
pub mod bench;
pub mod cli;
pub mod config;
pub mod embedding;
pub mod fetch;
pub mod http_client;
pub mod index;
pub mod logging;
pub mod model_fetch;
pub mod offline;
pub mod remote;
pub mod rules;
pub mod serve;
pub mod service;
pub mod signing;
pub mod store;
pub mod vision;
