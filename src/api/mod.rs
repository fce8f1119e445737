//! The API edge: everything between raw HTTP request parts and an authenticated call, and
//! the bodies that go back. Framework-independent: plain strings, bytes and values in and
//! out, so an axum (or any) handler can drive it and tests need no server.
//!
//! Typical handler flow:
//! 1. `let headers = Headers::new(..); let params = Params::from_request(query, &headers, body)?;`
//!    (V3 clients sign `host`: under HTTP/2 hyper keeps it in the URI authority, not the
//!    header map, so add a `host` entry from there when the map has none);
//! 2. `let format = ResponseFormat::from_params(&params);` (before auth, so errors honour it)
//! 3. `let auth = authenticate(RequestParts { method, headers: &headers, params, body }, &keys, &nonces, SystemTime::now())?;`
//! 4. dispatch on `auth.action` for tenant `auth.tenant_id()`;
//! 5. render with [`render_success`] / [`render_error`], status from [`ApiError::http_status`],
//!    content type from [`ResponseFormat::content_type`], a fresh [`new_request_id`] each time.
//!
//! Not here: routing, TLS, business parameter validation, storage, the model.

pub mod actions;
pub mod admission;
pub mod attributes;
pub mod auth;
pub mod connections;
pub mod console;
mod duplicates;
pub mod error;
pub mod image_links;
pub mod keys;
pub mod metrics;
pub mod nonce;
mod nonce_journal;
pub mod params;
pub mod response;
pub mod server;
pub mod upload;
pub mod upload_policy;

pub use auth::{authenticate, check_action, Authenticated, RequestParts, TIMESTAMP_WINDOW_SECS};
pub use error::ApiError;
pub use keys::{load_keys, load_keys_from_env, KeyPair, KeySource, KeyStore, LoadedKeys};
pub use nonce::NonceCache;
pub use params::{Headers, Param, ParamSource, Params, ParamsError};
pub use response::{new_request_id, render_error, render_success, ResponseFormat};
