//! The HTTP server: one RPC endpoint at `/` (GET and POST) in front of `ImageService`.
//!
//! A handler only moves bytes: it collects the request parts, authenticates them
//! (`auth`), dispatches the action (`actions`) and renders JSON or XML (`response`), with
//! a fresh RequestId on every answer. Graceful shutdown: on SIGTERM/SIGINT the listener
//! stops accepting, in-flight requests finish, then the service (embedder, store) closes.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::SystemTime;

use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::any;
use axum::Router;
use serde_json::{json, Value};

use super::actions::dispatch;
use super::auth::{authenticate, RequestParts};
use super::error::ApiError;
use super::keys::KeyStore;
use super::nonce::NonceCache;
use super::params::{Headers, Params};
use super::response::{new_request_id, render_error, render_success, ResponseFormat};
use crate::service::images::ImageService;

/// Largest request body accepted (form bodies are small; uploads come later and are
/// capped at 3 MB of image, about 4 MB as base64).
pub const MAX_BODY_BYTES: usize = 8 * 1024 * 1024;

pub struct AppState {
    pub service: Arc<ImageService>,
    pub keys: KeyStore,
    pub nonces: NonceCache,
}

pub fn router(state: Arc<AppState>) -> Router {
    Router::new()
        .route("/", any(rpc))
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .with_state(state)
}

/// Serves until `shutdown` resolves, then waits for in-flight requests.
pub async fn serve(
    listener: tokio::net::TcpListener,
    state: Arc<AppState>,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let app = router(state).into_make_service_with_connect_info::<SocketAddr>();
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown)
        .await
}

async fn rpc(
    State(state): State<Arc<AppState>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let request_id = new_request_id();
    let mut pairs: Vec<(String, String)> = headers
        .iter()
        .filter_map(|(k, v)| {
            v.to_str()
                .ok()
                .map(|v| (k.as_str().to_string(), v.to_string()))
        })
        .collect();
    // V3 clients sign `host`; under HTTP/2 it lives in the URI authority instead.
    if !headers.contains_key(header::HOST) {
        if let Some(authority) = uri.authority() {
            pairs.push(("host".into(), authority.to_string()));
        }
    }
    let host_id = pairs
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case("host"))
        .map(|(_, v)| v.clone())
        .unwrap_or_default();
    let headers = Headers::new(pairs);
    let query = uri.query().unwrap_or("");
    let params = match Params::from_request(query, &headers, &body) {
        Ok(p) => p,
        Err(e) => {
            return error_response(
                &ApiError::from(e),
                &request_id,
                &host_id,
                ResponseFormat::Json,
            )
        }
    };
    let format = ResponseFormat::from_params(&params);
    let auth = match authenticate(
        RequestParts {
            method: method.as_str(),
            headers: &headers,
            params,
            body: &body,
        },
        &state.keys,
        &state.nonces,
        SystemTime::now(),
    ) {
        Ok(a) => a,
        Err(e) => return error_response(&e, &request_id, &host_id, format),
    };
    match dispatch(&state.service, auth.tenant_id(), &auth.action, &auth.params).await {
        Ok(data) => {
            let mut body = json!({ "RequestId": request_id });
            if let Some(data) = data {
                body["Data"] = data;
            }
            respond(
                StatusCode::OK,
                render_success(&auth.action, &body, format),
                format,
            )
        }
        Err(e) => error_response(&e, &request_id, &host_id, format),
    }
}

fn error_response(
    err: &ApiError,
    request_id: &str,
    host_id: &str,
    format: ResponseFormat,
) -> Response {
    let status =
        StatusCode::from_u16(err.http_status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    respond(
        status,
        render_error(err, request_id, host_id, format),
        format,
    )
}

fn respond(status: StatusCode, body: String, format: ResponseFormat) -> Response {
    let mut resp = (status, body).into_response();
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(format.content_type()),
    );
    resp
}

/// The JSON `Data` of a response, for tests and the client commands.
pub fn data_of(body: &Value) -> Option<&Value> {
    body.get("Data")
}
