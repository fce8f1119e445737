//! Files uploaded through the Tea SDK's Advance calls (`add_image_advance`,
//! `search_image_advance`; spec §6): the bucket this server poses as, the object keys it
//! hands out, storing an upload for its owner, and reading it back when an action's
//! `ImageUrl` names it — from the store, never through the network fetcher (so no request
//! leaves the server and the SSRF guard is not involved).
//!
//! An object belongs to the access key that uploaded it and lives `--upload-object-secs`
//! (default [`UPLOAD_OBJECT_SECS`](crate::rules::UPLOAD_OBJECT_SECS)); another key's ImageUrl naming it reads as "not found".
//!
//! Not here: the upload policy and the HTTP form (`api::upload`).

use std::time::SystemTime;

use super::error::ServiceError;
use super::images::ImageService;
use crate::rules::UPLOAD_TENANT_MAX_BYTES;
use crate::signing::unix_seconds;
use crate::store::NewUpload;

/// Default bucket name: `http://{bucket}.{endpoint}/` is where the SDK posts files.
pub const DEFAULT_UPLOAD_BUCKET: &str = "uploads";
/// Default endpoint. `.internal` is reserved for private use, so it never names a host on
/// the internet: clients reach it through this server as their HTTP proxy, or a hosts/DNS
/// entry the operator adds (README, "Uploads from the SDK").
pub const DEFAULT_UPLOAD_ENDPOINT: &str = "imgsearch.internal";

/// Object keys are `upload/` and 32 hex digits (128 random bits).
const KEY_PREFIX: &str = "upload/";

/// The bucket host (`{bucket}.{endpoint}`) this server answers uploads for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UploadBucket {
    bucket: String,
    endpoint: String,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum UploadBucketError {
    #[error("the upload bucket name {0:?} must be 3 to 63 lower-case letters, digits or '-'")]
    Bucket(String),
    #[error("the upload endpoint {0:?} must be a host name, optionally with :port")]
    Endpoint(String),
}

impl UploadBucket {
    pub fn new(bucket: &str, endpoint: &str) -> Result<Self, UploadBucketError> {
        let bucket_ok = (3..=63).contains(&bucket.len())
            && bucket
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
            && !bucket.starts_with('-')
            && !bucket.ends_with('-');
        if !bucket_ok {
            return Err(UploadBucketError::Bucket(bucket.to_owned()));
        }
        let endpoint = endpoint.to_ascii_lowercase();
        let (host, port) = match endpoint.rsplit_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (endpoint.as_str(), None),
        };
        let host_ok = !host.is_empty()
            && host.len() <= 200
            && host.split('.').all(|label| {
                !label.is_empty()
                    && label
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b == b'-')
            });
        let port_ok = port.is_none_or(|p| p.parse::<u16>().is_ok_and(|p| p > 0));
        if !host_ok || !port_ok {
            return Err(UploadBucketError::Endpoint(endpoint));
        }
        Ok(UploadBucket {
            bucket: bucket.to_owned(),
            endpoint,
        })
    }

    pub fn bucket(&self) -> &str {
        &self.bucket
    }

    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    /// `{bucket}.{endpoint}`: the Host of an upload, and of the URLs naming uploads.
    pub fn host(&self) -> String {
        format!("{}.{}", self.bucket, self.endpoint)
    }

    /// Whether a request's Host names this bucket (case-insensitive; `:80` implied).
    pub fn is_host(&self, host: &str) -> bool {
        let want = self.host();
        let host = host.trim();
        host.eq_ignore_ascii_case(&want)
            || host
                .strip_suffix(":80")
                .is_some_and(|h| h.eq_ignore_ascii_case(&want))
    }

    /// The key of the upload `url` names (`http://{bucket}.{endpoint}/{key}`, as the SDK
    /// builds it; https too), or `None` for any other URL.
    pub fn key_in_url<'a>(&self, url: &'a str) -> Option<&'a str> {
        let rest = url
            .strip_prefix("http://")
            .or_else(|| url.strip_prefix("https://"))?;
        let (host, path) = rest.split_once('/')?;
        (self.is_host(host) && is_object_key(path)).then_some(path)
    }
}

/// A fresh object key: unguessable, so a URL is useless to anyone but its owner even
/// before the ownership check.
pub fn new_object_key() -> Result<String, ServiceError> {
    let mut raw = [0u8; 16];
    getrandom::fill(&mut raw).map_err(|e| ServiceError::Internal(format!("random: {e}")))?;
    let hex: String = raw.iter().map(|b| format!("{b:02x}")).collect();
    Ok(format!("{KEY_PREFIX}{hex}"))
}

/// Whether `key` has the form [`new_object_key`] makes.
pub fn is_object_key(key: &str) -> bool {
    key.strip_prefix(KEY_PREFIX).is_some_and(|hex| {
        hex.len() == 32
            && hex
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    })
}

impl ImageService {
    /// Stores `bytes` as `tenant`'s upload `key` until it expires. Durable when `Ok`.
    pub async fn put_upload(
        &self,
        tenant: &str,
        key: &str,
        bytes: Vec<u8>,
    ) -> Result<(), ServiceError> {
        if !is_object_key(key) {
            return Err(ServiceError::InvalidParameter(format!(
                "{key:?} is not an object key this server issued"
            )));
        }
        let (tenant, key) = (tenant.to_owned(), key.to_owned());
        let now = unix_seconds(SystemTime::now());
        let expires_at = now + self.upload_object_secs();
        self.blocking_store(move |s| {
            s.put_upload(
                &NewUpload {
                    tenant: &tenant,
                    key: &key,
                    bytes: &bytes,
                    now,
                    expires_at,
                },
                UPLOAD_TENANT_MAX_BYTES,
            )
        })
        .await
    }

    /// The bytes of the upload `url` names, when it names one of this server's uploads;
    /// `Ok(None)` for any other URL (which the fetcher then downloads).
    pub(crate) async fn uploaded_image(
        &self,
        tenant: &str,
        url: &str,
    ) -> Result<Option<Vec<u8>>, ServiceError> {
        let Some(bucket) = self.upload_bucket() else {
            return Ok(None);
        };
        let Some(key) = bucket.key_in_url(url) else {
            return Ok(None);
        };
        let (t, k) = (tenant.to_owned(), key.to_owned());
        let now = unix_seconds(SystemTime::now());
        match self
            .blocking_store(move |s| s.get_upload(&t, &k, now))
            .await?
        {
            Some(bytes) => Ok(Some(bytes)),
            None => Err(ServiceError::UploadNotFound(format!(
                "the uploaded file {url} is not available: it was never uploaded, it expired \
                 (uploads are kept {} s), or it was uploaded with another access key; \
                 upload it again",
                self.upload_object_secs()
            ))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bucket_names_and_endpoints_are_checked() {
        assert!(UploadBucket::new("uploads", "imgsearch.internal").is_ok());
        assert!(UploadBucket::new("up-1", "Example.COM:8080").is_ok());
        assert!(UploadBucket::new("Up", "x").is_err());
        assert!(UploadBucket::new("uploads", "a..b").is_err());
        assert!(UploadBucket::new("uploads", "a:0").is_err());
        assert!(UploadBucket::new("uploads", "a/b").is_err());
    }

    #[test]
    fn urls_name_an_upload_only_on_the_bucket_host_with_a_key_of_ours() {
        let b = UploadBucket::new("uploads", "imgsearch.internal:8080").unwrap();
        assert_eq!(b.host(), "uploads.imgsearch.internal:8080");
        let key = new_object_key().unwrap();
        assert!(is_object_key(&key));
        let url = format!("http://uploads.imgsearch.internal:8080/{key}");
        assert_eq!(b.key_in_url(&url), Some(key.as_str()));
        let https = format!("https://UPLOADS.imgsearch.internal:8080/{key}");
        assert_eq!(b.key_in_url(&https), Some(key.as_str()));
        for other in [
            format!("http://uploads.imgsearch.internal/{key}"),
            format!("http://other.imgsearch.internal:8080/{key}"),
            format!("http://uploads.imgsearch.internal:8080/{key}?x=1"),
            "http://uploads.imgsearch.internal:8080/upload/../etc".to_string(),
            format!("ftp://uploads.imgsearch.internal:8080/{key}"),
        ] {
            assert_eq!(b.key_in_url(&other), None, "{other}");
        }
        let plain = UploadBucket::new("uploads", "imgsearch.internal").unwrap();
        assert!(plain.is_host("uploads.imgsearch.internal:80"));
        assert!(!plain.is_host("uploads.imgsearch.internal:81"));
    }
}
