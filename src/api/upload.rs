//! The Tea SDK's Advance calls at the HTTP edge (spec §6): `AuthorizeFileUpload` (product
//! `openplatform`, 2019-12-19) hands out a bucket, an object key and a signed policy; the
//! SDK then POSTs the file as an OSS `PostObject` form to `http://{Bucket}.{Endpoint}/`,
//! which this server answers when the request's Host names its bucket (clients reach it
//! with this server as their HTTP proxy, or a hosts/DNS entry); the action that follows
//! names the object in `ImageUrl` and the service reads it from the store.
//!
//! Upload answers speak OSS, not the RPC API: an XML `<PostResponse>` on success and an
//! XML `<Error>` with OSS's codes, which is what the SDK's OSS client parses.
//! Not here: the policy format (`upload_policy`), keeping objects (`service::uploads`).

use std::time::SystemTime;

use axum::body::Bytes;
use axum::http::{header, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use futures_util::stream;
use serde_json::{json, Value};

use super::error::ApiError;
use super::keys::KeyStore;
use super::params::Params;
use super::response::to_xml;
use super::upload_policy::{PolicyError, UploadPolicies};
use crate::rules::UPLOAD_MAX_BYTES;
use crate::service::images::ImageService;
use crate::service::uploads::new_object_key;
use crate::service::ServiceError;
use crate::signing::{sha256_hex, unix_seconds};

/// The product AuthorizeFileUpload is asked about (`Product`): the SDK sends `imgsearch`.
const PRODUCT: &str = "imgsearch";
/// Longest text field of the upload form read (the policy is the longest, ~400 bytes).
const MAX_FIELD_BYTES: usize = 8 * 1024;

/// `AuthorizeFileUpload`: the body's fields (at its root, as openplatform answers).
pub fn authorize_file_upload(
    service: &ImageService,
    policies: Option<&UploadPolicies>,
    tenant: &str,
    params: &Params,
) -> Result<Value, ApiError> {
    if let Some(product) = params.get_non_empty("Product") {
        if product != PRODUCT {
            return Err(ApiError::InvalidParameter(format!(
                "Product \"{product}\" is not served here; only \"{PRODUCT}\" uploads are"
            )));
        }
    }
    let (Some(bucket), Some(policies)) = (service.upload_bucket(), policies) else {
        return Err(ApiError::InvalidParameter(
            "file uploads are off on this server (--upload-bucket is empty); send ImageUrl \
             or ImageContent instead"
                .into(),
        ));
    };
    let key = new_object_key().map_err(super::actions::map_err)?;
    let now = unix_seconds(SystemTime::now());
    let issued = policies.issue(tenant, bucket.bucket(), &key, now);
    Ok(json!({
        "AccessKeyId": tenant,
        "Bucket": bucket.bucket(),
        "Endpoint": bucket.endpoint(),
        "ObjectKey": key,
        "EncodedPolicy": issued.encoded_policy,
        "Signature": issued.signature,
        "UseAccelerate": false,
    }))
}

/// Why an upload was refused, with OSS's codes.
#[derive(Debug, thiserror::Error)]
pub enum PostObjectError {
    #[error("{0}")]
    InvalidArgument(String),
    #[error("{0}")]
    Policy(#[from] PolicyError),
    #[error("{0}")]
    AccessDenied(String),
    #[error(
        "the file is {size} bytes; uploads may be at most {max} bytes ({} MB)",
        max / (1024 * 1024)
    )]
    EntityTooLarge { size: usize, max: u64 },
    #[error("{0}")]
    MethodNotAllowed(String),
    #[error("{0}")]
    Service(#[from] ServiceError),
}

impl PostObjectError {
    /// OSS's error code and the HTTP status.
    pub fn code_and_status(&self) -> (&'static str, StatusCode) {
        match self {
            Self::InvalidArgument(_) => ("InvalidArgument", StatusCode::BAD_REQUEST),
            Self::Policy(PolicyError::Forged) => ("SignatureDoesNotMatch", StatusCode::FORBIDDEN),
            Self::Policy(PolicyError::Malformed(_)) => {
                ("InvalidPolicyDocument", StatusCode::BAD_REQUEST)
            }
            Self::Policy(PolicyError::Expired(_)) | Self::AccessDenied(_) => {
                ("AccessDenied", StatusCode::FORBIDDEN)
            }
            Self::EntityTooLarge { .. } => ("EntityTooLarge", StatusCode::BAD_REQUEST),
            Self::MethodNotAllowed(_) => ("MethodNotAllowed", StatusCode::METHOD_NOT_ALLOWED),
            Self::Service(ServiceError::UploadQuota(_)) => ("QuotaExceeded", StatusCode::FORBIDDEN),
            Self::Service(ServiceError::StorageFull(_)) => {
                ("InsufficientStorage", StatusCode::INSUFFICIENT_STORAGE)
            }
            Self::Service(ServiceError::InvalidParameter(_)) => {
                ("InvalidArgument", StatusCode::BAD_REQUEST)
            }
            Self::Service(_) => ("InternalError", StatusCode::INTERNAL_SERVER_ERROR),
        }
    }
}

/// The upload form's fields.
#[derive(Default)]
struct PostForm {
    access_key_id: Option<String>,
    policy: Option<String>,
    signature: Option<String>,
    key: Option<String>,
    success_action_status: Option<String>,
    file: Option<Bytes>,
}

async fn read_form(content_type: &str, body: Bytes) -> Result<PostForm, PostObjectError> {
    let bad = |e: multer::Error| {
        PostObjectError::InvalidArgument(format!("the upload form could not be read: {e}"))
    };
    let boundary = multer::parse_boundary(content_type).map_err(bad)?;
    let body = stream::once(async move { Ok::<Bytes, std::convert::Infallible>(body) });
    let mut multipart = multer::Multipart::new(body, boundary);
    let mut form = PostForm::default();
    while let Some(field) = multipart.next_field().await.map_err(bad)? {
        let name = field.name().unwrap_or_default().to_ascii_lowercase();
        if name == "file" {
            form.file = Some(field.bytes().await.map_err(bad)?);
            // OSS ignores fields after the file.
            break;
        }
        let value = field.bytes().await.map_err(bad)?;
        if value.len() > MAX_FIELD_BYTES {
            return Err(PostObjectError::InvalidArgument(format!(
                "form field {name} is longer than {MAX_FIELD_BYTES} bytes"
            )));
        }
        let value = String::from_utf8_lossy(&value).into_owned();
        match name.as_str() {
            "ossaccesskeyid" => form.access_key_id = Some(value),
            "policy" => form.policy = Some(value),
            "signature" => form.signature = Some(value),
            "key" => form.key = Some(value),
            "success_action_status" => form.success_action_status = Some(value),
            _ => {} // x-oss-meta-*, Content-Type, …: not kept
        }
    }
    Ok(form)
}

/// `POST /` on the bucket host: checks the form against its policy and keeps the file.
/// Returns the response and, for the log, the error code (`""` on success).
pub async fn post_object(
    service: &ImageService,
    policies: Option<&UploadPolicies>,
    keys: &KeyStore,
    method: &Method,
    content_type: &str,
    body: Bytes,
    request_id: &str,
) -> (Response, &'static str) {
    match store_upload(service, policies, keys, method, content_type, body).await {
        Ok((status, key, etag)) => (uploaded(service, status, &key, &etag, request_id), ""),
        Err(e) => (oss_error(service, &e, request_id), e.code_and_status().0),
    }
}

/// Any request to the bucket host other than the upload form at `/`: 405, in OSS's form.
pub fn not_an_upload(service: &ImageService, method: &Method, path: &str) -> Response {
    let e = PostObjectError::MethodNotAllowed(format!(
        "{method} {path} is not served on the upload bucket: files are uploaded with a POST \
         form to / and read only by the action whose ImageUrl names them"
    ));
    oss_error(service, &e, &super::response::new_request_id())
}

fn oss_error(service: &ImageService, e: &PostObjectError, request_id: &str) -> Response {
    let (code, status) = e.code_and_status();
    let host = service
        .upload_bucket()
        .map(|b| b.host())
        .unwrap_or_default();
    let xml = to_xml(
        "Error",
        &json!({ "Code": code, "Message": e.to_string(), "RequestId": request_id,
                 "HostId": host }),
    );
    xml_response(status, xml, request_id)
}

async fn store_upload(
    service: &ImageService,
    policies: Option<&UploadPolicies>,
    keys: &KeyStore,
    method: &Method,
    content_type: &str,
    body: Bytes,
) -> Result<(StatusCode, String, String), PostObjectError> {
    if method != Method::POST {
        return Err(PostObjectError::MethodNotAllowed(format!(
            "{method} is not allowed on the upload bucket: files are uploaded with a POST form \
             and read only by the action whose ImageUrl names them"
        )));
    }
    let (Some(bucket), Some(policies)) = (service.upload_bucket(), policies) else {
        return Err(PostObjectError::AccessDenied("file uploads are off".into()));
    };
    let mime = content_type.to_ascii_lowercase();
    if !mime.starts_with("multipart/form-data") {
        return Err(PostObjectError::InvalidArgument(
            "an upload must be a multipart/form-data POST form (OSS PostObject)".into(),
        ));
    }
    let form = read_form(content_type, body).await?;
    let missing = |name: &str| {
        PostObjectError::InvalidArgument(format!(
            "the form field {name} is missing; use the values AuthorizeFileUpload returned"
        ))
    };
    let policy = form.policy.ok_or_else(|| missing("policy"))?;
    let signature = form.signature.ok_or_else(|| missing("Signature"))?;
    let key = form.key.ok_or_else(|| missing("key"))?;
    let access_key_id = form
        .access_key_id
        .ok_or_else(|| missing("OSSAccessKeyId"))?;
    let file = form.file.ok_or_else(|| missing("file"))?;
    let claims = policies.verify(&policy, &signature, unix_seconds(SystemTime::now()))?;
    if claims.bucket != bucket.bucket() {
        return Err(PostObjectError::AccessDenied(format!(
            "the policy is for bucket {:?}, not {:?}",
            claims.bucket,
            bucket.bucket()
        )));
    }
    if claims.key != key {
        return Err(PostObjectError::AccessDenied(format!(
            "the policy allows key {:?} only, not {key:?}",
            claims.key
        )));
    }
    if claims.owner != access_key_id || keys.secret(&access_key_id).is_none() {
        return Err(PostObjectError::AccessDenied(
            "OSSAccessKeyId is not the access key this policy was issued to".into(),
        ));
    }
    let max = claims.max_bytes.min(UPLOAD_MAX_BYTES as u64);
    if file.is_empty() {
        return Err(PostObjectError::InvalidArgument("the file is empty".into()));
    }
    if file.len() as u64 > max {
        return Err(PostObjectError::EntityTooLarge {
            size: file.len(),
            max,
        });
    }
    // OSS's ETag is the MD5 of the object; ours is a digest too (SHA-256, shortened).
    let etag = format!("\"{}\"", &sha256_hex(&file)[..32]);
    service
        .put_upload(&claims.owner, &key, file.to_vec())
        .await?;
    let status = match form.success_action_status.as_deref().map(str::trim) {
        Some("200") => StatusCode::OK,
        Some("201") => StatusCode::CREATED,
        _ => StatusCode::NO_CONTENT,
    };
    Ok((status, key, etag))
}

fn uploaded(
    service: &ImageService,
    status: StatusCode,
    key: &str,
    etag: &str,
    request_id: &str,
) -> Response {
    let host = service
        .upload_bucket()
        .map(|b| b.host())
        .unwrap_or_default();
    if status != StatusCode::CREATED {
        let mut r = status.into_response();
        set_oss_headers(&mut r, request_id);
        if let Ok(v) = HeaderValue::from_str(etag) {
            r.headers_mut().insert(header::ETAG, v);
        }
        return r;
    }
    let bucket = service
        .upload_bucket()
        .map(|b| b.bucket().to_owned())
        .unwrap_or_default();
    let xml = to_xml(
        "PostResponse",
        &json!({ "Bucket": bucket, "Location": format!("http://{host}/{key}"), "Key": key,
                 "ETag": etag }),
    );
    xml_response(status, xml, request_id)
}

fn xml_response(status: StatusCode, xml: String, request_id: &str) -> Response {
    let mut r = (status, xml).into_response();
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/xml"),
    );
    set_oss_headers(&mut r, request_id);
    r
}

fn set_oss_headers(r: &mut Response, request_id: &str) {
    if let Ok(v) = HeaderValue::from_str(request_id) {
        r.headers_mut().insert("x-oss-request-id", v);
    }
}

/// Whether a request is for the upload bucket: its Host names it.
pub fn is_upload_request(service: &ImageService, host: &str) -> bool {
    service.upload_bucket().is_some_and(|b| b.is_host(host))
}
