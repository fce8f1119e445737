//! The HTTP server: one RPC endpoint at `/` (GET and POST) in front of `ImageService`,
//! plus the operational routes `/healthz`, `/readyz`, `/metrics` and the web console at
//! `/console` (static files embedded in the binary; it calls `/` like any client).
//!
//! A handler only moves bytes: it collects the request parts, authenticates them
//! (`auth`), dispatches the action (`actions`) and renders JSON or XML (`response`), with
//! a fresh RequestId on every answer. Each request is logged (one `tracing` event carrying
//! its RequestId, action, status, code and latency) and counted in `metrics`. Graceful
//! shutdown: on SIGTERM/SIGINT the listener stops accepting, in-flight requests finish,
//! then the service (embedder, store) closes.

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get};
use axum::Router;
use http_body_util::BodyExt;
use serde_json::{json, Value};
use tracing::Instrument as _;

use super::actions::dispatch;
use super::admission::{Admission, AdmissionLimits};
use super::auth::{authenticate, RequestParts};
use super::console;
use super::error::ApiError;
use super::image_links::{ImageLinks, LinkError, LINK_PATH};
use super::keys::KeyStore;
use super::metrics::{
    action_label, Gauges, Metrics, CONTENT_TYPE as METRICS_CONTENT_TYPE, POST_OBJECT_LABEL,
};
use super::nonce::NonceCache;
use super::params::{Headers, Params};
use super::response::{new_request_id, render_error, render_success, ResponseFormat};
use super::upload::{authorize_file_upload, is_upload_request, not_an_upload, post_object};
use super::upload_policy::UploadPolicies;
use crate::rules::AUTHORIZE_FILE_UPLOAD;
use crate::service::images::ImageService;

/// Largest request body accepted: a 3 MB SearchImage upload is about 4 MB as base64, a
/// little more once form-encoded. A larger body gets 413 `RequestTooLarge`.
pub const MAX_BODY_BYTES: usize = 8 * 1024 * 1024;

pub struct AppState {
    pub service: Arc<ImageService>,
    pub keys: KeyStore,
    pub nonces: NonceCache,
    pub metrics: Metrics,
    /// Whether the main router serves `/metrics` (off when disabled or served elsewhere).
    pub metrics_on_main: bool,
    /// How long a request body may stall (see [`read_body`]).
    pub body_timeout: Duration,
    /// Image work in progress, in total and per key.
    pub admission: Admission,
    /// Signed links to the thumbnails of matches uploaded as bytes; `None`: no links.
    pub links: Option<ImageLinks>,
    /// Signs the policies of file uploads (the SDK's Advance calls); `None`: uploads off.
    pub upload_policies: Option<UploadPolicies>,
}

impl AppState {
    pub fn new(service: Arc<ImageService>, keys: KeyStore, metrics_on_main: bool) -> Self {
        Self {
            service,
            keys,
            nonces: NonceCache::default(),
            metrics: Metrics::default(),
            metrics_on_main,
            body_timeout: Duration::from_secs(30),
            admission: Admission::new(AdmissionLimits::default()),
            links: None,
            upload_policies: None,
        }
    }
}

/// The slowest body upload accepted, on average, after the first `body_timeout`: 8 MB take
/// at most about two minutes. A client slower than this (or one that stops sending) is
/// answered 408 and its connection closed, instead of holding memory and a slot forever.
pub const MIN_BODY_BYTES_PER_SEC: u64 = 64 * 1024;

pub fn router(state: Arc<AppState>) -> Router {
    let mut r = Router::new()
        .route("/", any(rpc))
        .route("/healthz", get(healthz))
        .route(&format!("{LINK_PATH}{{token}}"), get(image_link))
        .route("/readyz", get(readyz))
        .route("/console", get(console::index))
        .route("/console/", get(console::index))
        .route("/console/{file}", get(console::asset));
    if state.metrics_on_main {
        r = r.route("/metrics", get(metrics));
    }
    r.fallback(not_found).with_state(state)
}

/// A router with `/metrics` only, for a separate (e.g. internal-only) listener.
pub fn metrics_router(state: Arc<AppState>) -> Router {
    Router::new()
        .route("/metrics", get(metrics))
        .fallback(not_found)
        .with_state(state)
}

/// Liveness: the process is up and answering.
/// Whether a Host header value is safe to put into a URL as it is (name or address and port).
fn is_plain_host(host: &str) -> bool {
    !host.is_empty()
        && host.len() <= 255
        && host
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-.:[]".contains(&b))
}

/// `GET /images/{token}.jpg`: the thumbnail an image link names (`api::image_links`).
async fn image_link(
    State(state): State<Arc<AppState>>,
    axum::extract::Path(token): axum::extract::Path<String>,
) -> Response {
    let text = |status: StatusCode, msg: String| {
        let mut r = (status, msg).into_response();
        r.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/plain; charset=utf-8"),
        );
        r
    };
    let Some(links) = &state.links else {
        return text(
            StatusCode::NOT_FOUND,
            "image links are off on this server\n".into(),
        );
    };
    let token = token.strip_suffix(".jpg").unwrap_or(&token);
    let now = crate::signing::unix_seconds(SystemTime::now());
    let id = match links.verify(token, now) {
        Ok(id) => id,
        Err(e @ (LinkError::Invalid | LinkError::Expired)) => {
            return text(StatusCode::FORBIDDEN, format!("{e}\n"))
        }
    };
    match state.service.thumbnail_by_id(id).await {
        Ok(Some(jpeg)) => {
            let mut r = (StatusCode::OK, jpeg).into_response();
            let h = r.headers_mut();
            h.insert(header::CONTENT_TYPE, HeaderValue::from_static("image/jpeg"));
            h.insert(
                header::CACHE_CONTROL,
                HeaderValue::from_static("private, max-age=300"),
            );
            r
        }
        Ok(None) => text(StatusCode::NOT_FOUND, "this image was deleted\n".into()),
        Err(e) => text(StatusCode::INTERNAL_SERVER_ERROR, format!("{e}\n")),
    }
}

async fn healthz() -> Response {
    json_response(StatusCode::OK, &json!({ "Status": "ok" }))
}

/// Readiness: the model is loaded (inference threads running) and the store answers.
async fn readyz(State(state): State<Arc<AppState>>) -> Response {
    let model = state.service.embedder().is_running();
    let store = state.service.check_store().await;
    let ready = model && store.is_ok();
    let body = json!({
        "Status": if ready { "ready" } else { "not ready" },
        "Model": if model { "loaded" } else { "not running" },
        "Store": match &store { Ok(()) => "open".to_string(), Err(e) => e.to_string() },
    });
    let status = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    json_response(status, &body)
}

async fn metrics(State(state): State<Arc<AppState>>) -> Response {
    let embedder = state.service.embedder();
    let text = state.metrics.render(&Gauges {
        queue_depth: embedder.queue_depth(),
        batcher: embedder.stats(),
        databases: state.service.database_sizes(),
    });
    let mut resp = (StatusCode::OK, text).into_response();
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(METRICS_CONTENT_TYPE),
    );
    resp
}

/// Any other path: a 404 in the API's error format, naming the paths that exist (on the
/// upload bucket's Host, OSS's 405 instead).
async fn not_found(
    State(state): State<Arc<AppState>>,
    method: Method,
    headers: HeaderMap,
    uri: Uri,
) -> Response {
    let host = headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .map(str::to_owned)
        .or_else(|| uri.authority().map(|a| a.to_string()))
        .unwrap_or_default();
    if is_upload_request(&state.service, &host) {
        return not_an_upload(&state.service, &method, uri.path());
    }
    if method == Method::CONNECT {
        // A client that has this server as its HTTPS proxy: it cannot answer for another
        // host's certificate, so say what works instead.
        let msg = format!(
            "CONNECT {host}: this server acts as an HTTP proxy for the SDK's upload calls, \
             not an HTTPS one; configure the SDK with protocol \"http\" (Config(protocol=\"http\")) \
             and HTTP_PROXY, or map the host names to this server (README, \"Uploads from the SDK\")\n"
        );
        return (StatusCode::METHOD_NOT_ALLOWED, msg).into_response();
    }
    let err = ApiError::PathNotFound(uri.path().to_string());
    error_response(&err, &new_request_id(), "", ResponseFormat::Json)
}

fn json_response(status: StatusCode, body: &Value) -> Response {
    let mut resp = (status, body.to_string()).into_response();
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json;charset=utf-8"),
    );
    resp
}

/// How much of an oversized body is read (and dropped) before answering 413: clients
/// that write the whole body before reading (most HTTP/1.1 clients) then see the answer
/// instead of a reset connection. Beyond this the connection is simply dropped.
pub const DRAIN_LIMIT_BYTES: u64 = 4 * MAX_BODY_BYTES as u64;

/// `Content-Length`, when given and a number.
fn declared_length(headers: &HeaderMap) -> Option<u64> {
    headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok())
}

fn is_chunked(headers: &HeaderMap) -> bool {
    headers
        .get(header::TRANSFER_ENCODING)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.to_ascii_lowercase().contains("chunked"))
}

/// Reads the body up to [`MAX_BODY_BYTES`]; a larger one is `RequestTooLarge`. The body
/// must keep coming: `stall` after the headers plus one second per
/// [`MIN_BODY_BYTES_PER_SEC`] received, else `RequestTimeout`.
async fn read_body(
    headers: &HeaderMap,
    mut body: Body,
    stall: Duration,
) -> Result<Bytes, ApiError> {
    let started = tokio::time::Instant::now();
    let declared = declared_length(headers);
    let mut over = declared.is_some_and(|n| n > MAX_BODY_BYTES as u64);
    let mut buf: Vec<u8> = Vec::with_capacity(
        declared
            .filter(|_| !over)
            .map_or(0, |n| usize::try_from(n).unwrap_or(0)),
    );
    let mut total: u64 = 0;
    loop {
        let deadline =
            started + stall + Duration::from_secs_f64(total as f64 / MIN_BODY_BYTES_PER_SEC as f64);
        let Ok(frame) = tokio::time::timeout_at(deadline, body.frame()).await else {
            return Err(ApiError::RequestTimeout {
                received: total,
                secs: started.elapsed().as_secs(),
            });
        };
        let Some(frame) = frame else {
            break;
        };
        let frame = frame.map_err(|e| {
            ApiError::BadRequest(format!("The request body could not be read: {e}."))
        })?;
        let Ok(data) = frame.into_data() else {
            continue; // trailers
        };
        total += data.len() as u64;
        if !over && total > MAX_BODY_BYTES as u64 {
            over = true;
            buf = Vec::new();
        }
        if over {
            if total > DRAIN_LIMIT_BYTES {
                break;
            }
            continue;
        }
        buf.extend_from_slice(&data);
    }
    if over {
        return Err(ApiError::RequestTooLarge {
            limit: MAX_BODY_BYTES,
        });
    }
    Ok(Bytes::from(buf))
}

async fn rpc(
    State(state): State<Arc<AppState>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let started = Instant::now();
    let request_id = new_request_id();
    let span = tracing::info_span!("request", request_id = %request_id);
    let (resp, action, code) = handle(&state, &request_id, method, uri, headers, body)
        .instrument(span.clone())
        .await;
    let elapsed = started.elapsed();
    let status = resp.status().as_u16();
    let action = action_label(action.as_deref());
    state.metrics.observe(action, status, elapsed);
    span.in_scope(|| {
        let ms = format!("{:.3}", elapsed.as_secs_f64() * 1000.0);
        if status >= 500 {
            tracing::warn!(action, status, code, %ms, "request failed");
        } else {
            tracing::info!(action, status, code, %ms, "request");
        }
    });
    resp
}

/// The RPC proper; returns the response, the action (when one could be read) and the
/// error code (`""` on success) for the log and the metrics.
async fn handle(
    state: &AppState,
    request_id: &str,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Body,
) -> (Response, Option<String>, &'static str) {
    let fail = |e: &ApiError, host_id: &str, format: ResponseFormat, action: Option<String>| {
        (
            error_response(e, request_id, host_id, format),
            action,
            e.code(),
        )
    };
    // An upload needs a slot before its body is read: refusing it costs nothing then.
    let upload = if Admission::is_upload(declared_length(&headers), is_chunked(&headers)) {
        match state.admission.admit_upload() {
            Ok(slot) => Some(slot),
            Err(e) => return fail(&e, "", ResponseFormat::Json, None),
        }
    } else {
        None
    };
    let body = match read_body(&headers, body, state.body_timeout).await {
        Ok(b) => b,
        Err(e) => return fail(&e, "", ResponseFormat::Json, None),
    };
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
    // A file posted to the upload bucket (the SDK's Advance calls): routed by Host, so that
    // it works through a proxy (absolute-form target) and through a DNS/hosts entry alike.
    if is_upload_request(&state.service, &host_id) {
        let content_type = pairs
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case("content-type"))
            .map(|(_, v)| v.as_str())
            .unwrap_or("");
        let (resp, code) = post_object(
            &state.service,
            state.upload_policies.as_ref(),
            &state.keys,
            &method,
            content_type,
            body,
            request_id,
        )
        .await;
        return (resp, Some(POST_OBJECT_LABEL.to_owned()), code);
    }
    let headers = Headers::new(pairs);
    let query = uri.query().unwrap_or("");
    let params = match Params::from_request(query, &headers, &body) {
        Ok(p) => p,
        Err(e) => return fail(&ApiError::from(e), &host_id, ResponseFormat::Json, None),
    };
    let format = ResponseFormat::from_params(&params);
    let claimed_action = params.action(&headers).map(str::to_string);
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
        Err(e) => return fail(&e, &host_id, format, claimed_action),
    };
    tracing::debug!(action = %auth.action, tenant = %auth.tenant_id(), "authenticated");
    let _ticket = if Admission::is_image_action(&auth.action) {
        match state.admission.admit(auth.tenant_id(), upload) {
            Ok(ticket) => Some(ticket),
            Err(e) => return fail(&e, &host_id, format, Some(auth.action)),
        }
    } else {
        drop(upload);
        None
    };
    if auth.action == AUTHORIZE_FILE_UPLOAD {
        // openplatform answers with its fields at the body's root, not under `Data`.
        return match authorize_file_upload(
            &state.service,
            state.upload_policies.as_ref(),
            auth.tenant_id(),
            &auth.params,
        ) {
            Ok(fields) => {
                let mut body = json!({ "RequestId": request_id });
                if let (Value::Object(root), Value::Object(fields)) = (&mut body, fields) {
                    root.extend(fields);
                }
                let resp = respond(
                    StatusCode::OK,
                    render_success(&auth.action, &body, format),
                    format,
                );
                (resp, Some(auth.action), "")
            }
            Err(e) => fail(&e, &host_id, format, Some(auth.action)),
        };
    }
    match dispatch(&state.service, auth.tenant_id(), &auth.action, &auth.params).await {
        Ok(mut data) => {
            if let (Some(links), Some(data), "SearchImage") =
                (&state.links, data.as_mut(), auth.action.as_str())
            {
                let host = is_plain_host(&host_id).then_some(host_id.as_str());
                links.fill_matches(data, host, crate::signing::unix_seconds(SystemTime::now()));
            }
            let mut body = json!({ "RequestId": request_id });
            if let Some(data) = data {
                body["Data"] = data;
            }
            let resp = respond(
                StatusCode::OK,
                render_success(&auth.action, &body, format),
                format,
            );
            (resp, Some(auth.action), "")
        }
        Err(e) => fail(&e, &host_id, format, Some(auth.action)),
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
