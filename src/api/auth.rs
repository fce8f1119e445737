//! Request authentication for both signing styles the official SDKs use (spec 3):
//! V1 `Signature=` (HMAC-SHA1 over every parameter) and V3 `Authorization: ACS3-HMAC-SHA256`.
//!
//! [`authenticate`] runs every gateway check of spec 3.4, cheapest and least revealing
//! first: required parameters → signature method/version → API version → action name →
//! timestamp window → access key → (V3) body hash → signature → nonce. The nonce is
//! recorded only after the signature verified, so nobody without the secret can burn one.
//!
//! Not here: the signing arithmetic itself (`crate::signing`, shared with the API client),
//! parsing of the raw request (`params.rs`), key storage (`keys.rs`), the nonce store
//! (`nonce.rs`), or validating business parameters (the handlers).

use std::time::SystemTime;

use super::error::ApiError;
use super::keys::KeyStore;
use super::nonce::NonceCache;
use super::params::{ParamSource, Params};
use super::Headers;
use crate::rules::{is_known_action, is_served, API_VERSION, OPEN_PLATFORM_VERSION};
use crate::signing::SignatureStyle;
use crate::signing::{
    format_timestamp, parse_timestamp, sha256_hex, unix_seconds, v1_string_to_sign, v1_verify,
    v3_canonical_request, v3_string_to_sign, v3_verify, V1_METHOD, V3_ALGORITHM,
};

/// How far `Timestamp` / `x-acs-date` may be from server time, either direction.
pub const TIMESTAMP_WINDOW_SECS: i64 = 15 * 60;

/// Longest accepted nonce. The SDKs send 32 hex characters; the cap bounds the memory a key
/// holder can pin in the nonce cache.
pub const MAX_NONCE_LEN: usize = 256;

/// V1 common parameters, in the order a missing one is reported.
pub const V1_REQUIRED_PARAMS: [&str; 8] = [
    "Action",
    "Version",
    "AccessKeyId",
    "Signature",
    "SignatureMethod",
    "SignatureVersion",
    "SignatureNonce",
    "Timestamp",
];

/// V3 required headers, in the order a missing one is reported (after `authorization`).
/// Each must also be among the signed headers, or a replay could alter it.
pub const V3_REQUIRED_HEADERS: [&str; 5] = [
    "x-acs-action",
    "x-acs-version",
    "x-acs-date",
    "x-acs-signature-nonce",
    "x-acs-content-sha256",
];

/// What the gateway hands to the handlers.
#[derive(Debug, Clone)]
pub struct Authenticated {
    /// The verified key id; also the tenant id.
    pub access_key_id: String,
    /// One of [`KNOWN_ACTIONS`].
    pub action: String,
    /// [`API_VERSION`], or [`OPEN_PLATFORM_VERSION`] for AuthorizeFileUpload.
    pub version: String,
    pub style: SignatureStyle,
    /// All request parameters (query then form body), common ones included.
    pub params: Params,
}

impl Authenticated {
    /// The tenant whose data this request may touch (= the access key id).
    pub fn tenant_id(&self) -> &str {
        &self.access_key_id
    }
}

/// The parts of a request [`authenticate`] needs. The path is not included: the API has
/// the single path `/`, which is what both styles sign.
#[derive(Debug, Clone)]
pub struct RequestParts<'a> {
    /// As sent, e.g. `POST`.
    pub method: &'a str,
    pub headers: &'a Headers,
    /// Decoded with [`Params::from_request`]; moved into [`Authenticated`] on success.
    pub params: Params,
    /// The raw body (V3 hashes it whatever its type).
    pub body: &'a [u8],
}

/// Runs every gateway check (module doc) and returns who is calling what.
pub fn authenticate(
    req: RequestParts<'_>,
    keys: &KeyStore,
    nonces: &NonceCache,
    now: SystemTime,
) -> Result<Authenticated, ApiError> {
    let now = unix_seconds(now);
    match detect_style(req.headers, &req.params)? {
        SignatureStyle::V1 => authenticate_v1(req, keys, nonces, now),
        SignatureStyle::V3 => authenticate_v3(req, keys, nonces, now),
    }
}

/// `Ok` for a known action, else 404 `InvalidAction.NotFound`.
pub fn check_action(name: &str) -> Result<(), ApiError> {
    if is_known_action(name) {
        Ok(())
    } else {
        Err(ApiError::InvalidActionNotFound(name.to_owned()))
    }
}

fn detect_style(headers: &Headers, params: &Params) -> Result<SignatureStyle, ApiError> {
    let has_v1_signature = params.get("Signature").is_some();
    match headers.get("authorization") {
        Some(a) if a.trim_start().starts_with("ACS3-") => Ok(SignatureStyle::V3),
        Some(_) if !has_v1_signature => Err(ApiError::IncompleteSignature(format!(
            "unsupported Authorization scheme; use {V3_ALGORITHM} or the V1 Signature parameter"
        ))),
        // A V3-looking request that forgot its Authorization header: say so, rather than
        // complaining about a missing V1 `Action` parameter.
        None if !has_v1_signature && headers.get("x-acs-signature-nonce").is_some() => {
            Ok(SignatureStyle::V3)
        }
        _ => Ok(SignatureStyle::V1),
    }
}

fn authenticate_v1(
    req: RequestParts<'_>,
    keys: &KeyStore,
    nonces: &NonceCache,
    now: i64,
) -> Result<Authenticated, ApiError> {
    let p = &req.params;
    for name in V1_REQUIRED_PARAMS {
        if p.get_non_empty(name).is_none() {
            return Err(ApiError::MissingParameter(name.to_owned()));
        }
    }
    // Present and non-empty: checked just above.
    let get = |name: &str| p.get(name).unwrap_or_default();

    let method = get("SignatureMethod");
    if method != V1_METHOD {
        return Err(ApiError::InvalidSignatureMethod {
            given: method.to_owned(),
            supported: V1_METHOD,
        });
    }
    let sig_version = get("SignatureVersion");
    if sig_version != "1.0" {
        return Err(ApiError::InvalidSignatureVersion(sig_version.to_owned()));
    }
    let version = get("Version");
    let action = get("Action");
    let nonce = get("SignatureNonce");
    let ts = check_common(version, action, nonce, get("Timestamp"), now)?;

    let access_key_id = get("AccessKeyId");
    let secret = keys
        .secret(access_key_id)
        .ok_or_else(|| ApiError::InvalidAccessKeyIdNotFound(access_key_id.to_owned()))?;

    let string_to_sign = v1_string_to_sign(req.method, all_pairs(p));
    if !v1_verify(secret, &string_to_sign, get("Signature")) {
        return Err(ApiError::SignatureDoesNotMatch { string_to_sign });
    }

    nonces.check_and_insert(access_key_id, nonce, ts + TIMESTAMP_WINDOW_SECS, now)?;
    let (access_key_id, action, version) = (
        access_key_id.to_owned(),
        action.to_owned(),
        version.to_owned(),
    );
    Ok(Authenticated {
        access_key_id,
        action,
        version,
        style: SignatureStyle::V1,
        params: req.params,
    })
}

fn authenticate_v3(
    req: RequestParts<'_>,
    keys: &KeyStore,
    nonces: &NonceCache,
    now: i64,
) -> Result<Authenticated, ApiError> {
    let h = req.headers;
    let get = |name: &str| {
        h.get(name)
            .map(str::trim)
            .filter(|v| !v.is_empty())
            .ok_or_else(|| ApiError::MissingParameter(name.to_owned()))
    };
    let authorization = parse_v3_authorization(get("authorization")?)?;
    let action = get("x-acs-action")?;
    let version = get("x-acs-version")?;
    let date = get("x-acs-date")?;
    let nonce = get("x-acs-signature-nonce")?;
    let content_sha256 = get("x-acs-content-sha256")?;
    for name in V3_REQUIRED_HEADERS {
        if !authorization.signed_headers.iter().any(|s| s == name) {
            return Err(ApiError::IncompleteSignature(format!(
                "header {name} must be listed in SignedHeaders"
            )));
        }
    }
    let ts = check_common(version, action, nonce, date, now)?;

    let access_key_id = authorization.credential.as_str();
    let secret = keys
        .secret(access_key_id)
        .ok_or_else(|| ApiError::InvalidAccessKeyIdNotFound(access_key_id.to_owned()))?;

    let body_hash = sha256_hex(req.body);
    if !content_sha256.eq_ignore_ascii_case(&body_hash) {
        return Err(ApiError::ContentSha256Mismatch {
            given: content_sha256.to_owned(),
            actual: body_hash,
        });
    }

    let canonical = v3_canonical_request(
        req.method,
        query_pairs(&req.params),
        |name| h.get_all(name).collect(),
        &authorization.signed_headers,
        &body_hash,
    );
    let string_to_sign = v3_string_to_sign(&canonical);
    if !v3_verify(secret, &string_to_sign, &authorization.signature) {
        return Err(ApiError::SignatureDoesNotMatch { string_to_sign });
    }

    nonces.check_and_insert(access_key_id, nonce, ts + TIMESTAMP_WINDOW_SECS, now)?;
    Ok(Authenticated {
        access_key_id: access_key_id.to_owned(),
        action: action.to_owned(),
        version: version.to_owned(),
        style: SignatureStyle::V3,
        params: req.params,
    })
}

/// Checks shared by both styles that need no secret; returns the request time.
fn check_common(
    version: &str,
    action: &str,
    nonce: &str,
    timestamp: &str,
    now: i64,
) -> Result<i64, ApiError> {
    if version != API_VERSION && version != OPEN_PLATFORM_VERSION {
        return Err(ApiError::InvalidVersion(version.to_owned()));
    }
    if !is_served(version, action) {
        return Err(ApiError::InvalidActionNotFound(action.to_owned()));
    }
    if nonce.len() > MAX_NONCE_LEN {
        return Err(ApiError::InvalidParameter(format!(
            "The signature nonce is longer than {MAX_NONCE_LEN} bytes."
        )));
    }
    let ts = parse_timestamp(timestamp)
        .ok_or_else(|| ApiError::InvalidTimeStampFormat(timestamp.to_owned()))?;
    if (now - ts).abs() > TIMESTAMP_WINDOW_SECS {
        return Err(ApiError::InvalidTimeStampExpired {
            given: timestamp.to_owned(),
            server: format_timestamp(now),
            window_secs: TIMESTAMP_WINDOW_SECS,
        });
    }
    Ok(ts)
}

/// Every parameter (query, then form body), as (name, value) pairs for V1 signing.
fn all_pairs(p: &Params) -> impl Iterator<Item = (&str, &str)> {
    p.iter().map(|p| (p.name.as_str(), p.value.as_str()))
}

/// The query-string parameters only, as V3 signs them.
fn query_pairs(p: &Params) -> impl Iterator<Item = (&str, &str)> {
    p.iter()
        .filter(|p| p.source == ParamSource::Query)
        .map(|p| (p.name.as_str(), p.value.as_str()))
}

/// A parsed `Authorization: ACS3-HMAC-SHA256 Credential=..,SignedHeaders=..,Signature=..`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct V3Authorization {
    /// The access key id.
    pub credential: String,
    /// Lower-case, sorted, deduplicated.
    pub signed_headers: Vec<String>,
    /// Hex, as sent.
    pub signature: String,
}

/// Parses the V3 Authorization header value.
pub fn parse_v3_authorization(value: &str) -> Result<V3Authorization, ApiError> {
    let value = value.trim();
    let (algorithm, rest) = value.split_once(' ').unwrap_or((value, ""));
    if algorithm != V3_ALGORITHM {
        return Err(ApiError::InvalidSignatureMethod {
            given: algorithm.to_owned(),
            supported: V3_ALGORITHM,
        });
    }
    let (mut credential, mut signed, mut signature) = (None, None, None);
    for part in rest.split(',') {
        match part.trim().split_once('=') {
            Some(("Credential", v)) => credential = Some(v.trim()),
            Some(("SignedHeaders", v)) => signed = Some(v.trim()),
            Some(("Signature", v)) => signature = Some(v.trim()),
            _ => {}
        }
    }
    let missing =
        |what: &str| ApiError::IncompleteSignature(format!("Authorization has no {what}"));
    let credential = credential
        .filter(|v| !v.is_empty())
        .ok_or_else(|| missing("Credential"))?;
    let signed = signed
        .filter(|v| !v.is_empty())
        .ok_or_else(|| missing("SignedHeaders"))?;
    let signature = signature
        .filter(|v| !v.is_empty())
        .ok_or_else(|| missing("Signature"))?;
    let mut signed_headers: Vec<String> = signed
        .split(';')
        .map(|h| h.trim().to_ascii_lowercase())
        .filter(|h| !h.is_empty())
        .collect();
    signed_headers.sort();
    signed_headers.dedup();
    Ok(V3Authorization {
        credential: credential.to_owned(),
        signed_headers,
        signature: signature.to_owned(),
    })
}

#[cfg(test)]
mod tests;
