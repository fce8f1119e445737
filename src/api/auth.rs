//! Request authentication for both signing styles the official SDKs use (spec 3):
//! V1 `Signature=` (HMAC-SHA1 over every parameter) and V3 `Authorization: ACS3-HMAC-SHA256`.
//!
//! [`authenticate`] runs every gateway check of spec 3.4, cheapest and least revealing
//! first: required parameters → signature method/version → API version → action name →
//! timestamp window → access key → (V3) body hash → signature → nonce. The nonce is
//! recorded only after the signature verified, so nobody without the secret can burn one.
//!
//! Not here: parsing of the raw request (`params.rs`), key storage (`keys.rs`), the nonce
//! store (`nonce.rs`), or validating business parameters (the handlers).

use std::time::{SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use hmac::{Hmac, KeyInit, Mac};
use sha1::Sha1;
use sha2::{Digest, Sha256};

use super::error::ApiError;
use super::keys::KeyStore;
use super::nonce::NonceCache;
use super::params::{ParamSource, Params};
use super::Headers;

/// The only API version served.
pub const API_VERSION: &str = "2020-03-20";

/// Every action of API version 2020-03-20 (spec 4).
pub const KNOWN_ACTIONS: [&str; 7] = [
    "CreateImageDb",
    "ListImageDbs",
    "DeleteImageDb",
    "AddImage",
    "ListImages",
    "SearchImage",
    "DeleteImage",
];

/// Actions of ours beyond the public API (see `actions.rs`); signed and checked like the others.
pub const EXTENSION_ACTIONS: [&str; 1] = ["GetThumbnail"];

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

const V1_METHOD: &str = "HMAC-SHA1";
const V3_ALGORITHM: &str = "ACS3-HMAC-SHA256";

/// Which signing scheme a request used.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SignatureStyle {
    /// `Signature` parameter, HMAC-SHA1 (`aliyun-python-sdk-core` and other classic SDKs).
    V1,
    /// `Authorization: ACS3-HMAC-SHA256` header (Tea SDKs).
    V3,
}

/// What the gateway hands to the handlers.
#[derive(Debug, Clone)]
pub struct Authenticated {
    /// The verified key id; also the tenant id.
    pub access_key_id: String,
    /// One of [`KNOWN_ACTIONS`].
    pub action: String,
    /// Always [`API_VERSION`] today.
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

/// Whether `name` is an action of this API (or one of our [`EXTENSION_ACTIONS`]).
pub fn is_known_action(name: &str) -> bool {
    KNOWN_ACTIONS.contains(&name) || EXTENSION_ACTIONS.contains(&name)
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

    let string_to_sign = v1_string_to_sign(req.method, p);
    let given = base64::engine::general_purpose::STANDARD
        .decode(get("Signature"))
        .unwrap_or_default();
    let mut mac = hmac_sha1(secret);
    mac.update(string_to_sign.as_bytes());
    if mac.verify_slice(&given).is_err() {
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

    let body_hash = hex(&Sha256::digest(req.body));
    if !content_sha256.eq_ignore_ascii_case(&body_hash) {
        return Err(ApiError::ContentSha256Mismatch {
            given: content_sha256.to_owned(),
            actual: body_hash,
        });
    }

    let canonical = v3_canonical_request(
        req.method,
        &req.params,
        h,
        &authorization.signed_headers,
        &body_hash,
    );
    let string_to_sign = v3_string_to_sign(&canonical);
    let given = unhex(&authorization.signature).unwrap_or_default();
    let mut mac = hmac_sha256(secret);
    mac.update(string_to_sign.as_bytes());
    if mac.verify_slice(&given).is_err() {
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
    if version != API_VERSION {
        return Err(ApiError::InvalidVersion(version.to_owned()));
    }
    check_action(action)?;
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

/// RFC 3986 percent-encoding of UTF-8 text (spec 3.1): unreserved `A-Z a-z 0-9 - _ . ~`
/// stay, every other byte becomes `%XX` with upper-case hex.
pub fn percent_encode(s: &str) -> String {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    let mut out = String::with_capacity(s.len());
    for &b in s.as_bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            out.push('%');
            out.push(HEX[usize::from(b >> 4)] as char);
            out.push(HEX[usize::from(b & 0xF)] as char);
        }
    }
    out
}

/// Encodes each pair, sorts by encoded name then value, joins as `n=v&...`.
fn canonical_query<'a>(pairs: impl Iterator<Item = (&'a str, &'a str)>) -> String {
    let mut encoded: Vec<(String, String)> = pairs
        .map(|(n, v)| (percent_encode(n), percent_encode(v)))
        .collect();
    encoded.sort();
    let mut out = String::new();
    for (i, (n, v)) in encoded.iter().enumerate() {
        if i > 0 {
            out.push('&');
        }
        out.push_str(n);
        out.push('=');
        out.push_str(v);
    }
    out
}

/// V1 StringToSign (spec 3.1) over every parameter except `Signature`.
pub fn v1_string_to_sign(method: &str, params: &Params) -> String {
    let canonical = canonical_query(
        params
            .iter()
            .filter(|p| p.name != "Signature")
            .map(|p| (p.name.as_str(), p.value.as_str())),
    );
    format!(
        "{method}&{}&{}",
        percent_encode("/"),
        percent_encode(&canonical)
    )
}

/// V1 signature: base64(HMAC-SHA1(secret + "&", StringToSign)).
pub fn v1_signature(secret: &str, string_to_sign: &str) -> String {
    let mut mac = hmac_sha1(secret);
    mac.update(string_to_sign.as_bytes());
    base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
}

/// V3 canonical request (spec 3.2). `signed_headers` lower-case, sorted, deduplicated (as
/// [`parse_v3_authorization`] returns them). A header sent more than once contributes its
/// trimmed values sorted and joined with `,`, as the Tea SDK computes it.
pub fn v3_canonical_request(
    method: &str,
    params: &Params,
    headers: &Headers,
    signed_headers: &[String],
    body_sha256_hex: &str,
) -> String {
    let query = canonical_query(
        params
            .iter()
            .filter(|p| p.source == ParamSource::Query)
            .map(|p| (p.name.as_str(), p.value.as_str())),
    );
    let mut out = format!("{method}\n/\n{query}\n");
    for name in signed_headers {
        let mut values: Vec<&str> = headers.get_all(name).map(str::trim).collect();
        values.sort_unstable();
        out.push_str(name);
        out.push(':');
        out.push_str(&values.join(","));
        out.push('\n');
    }
    out.push('\n');
    out.push_str(&signed_headers.join(";"));
    out.push('\n');
    out.push_str(body_sha256_hex);
    out
}

/// V3 StringToSign: the algorithm line and the hex SHA-256 of the canonical request.
pub fn v3_string_to_sign(canonical_request: &str) -> String {
    format!(
        "{V3_ALGORITHM}\n{}",
        hex(&Sha256::digest(canonical_request.as_bytes()))
    )
}

/// V3 signature: hex(HMAC-SHA256(secret, StringToSign)).
pub fn v3_signature(secret: &str, string_to_sign: &str) -> String {
    let mut mac = hmac_sha256(secret);
    mac.update(string_to_sign.as_bytes());
    hex(&mac.finalize().into_bytes())
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

/// Parses UTC ISO-8601 `YYYY-MM-DDThh:mm:ssZ` (an optional `.fraction` before `Z` is
/// accepted and ignored) into unix seconds. `None` if malformed or out of range.
pub fn parse_timestamp(s: &str) -> Option<i64> {
    let b = s.as_bytes();
    let main = b.get(..19)?;
    let rest = b.get(19..)?;
    let num = |r: std::ops::Range<usize>| -> Option<i64> {
        let digits = main.get(r)?;
        if !digits.iter().all(u8::is_ascii_digit) {
            return None;
        }
        std::str::from_utf8(digits).ok()?.parse().ok()
    };
    let seps = [(4, b'-'), (7, b'-'), (10, b'T'), (13, b':'), (16, b':')];
    if seps.iter().any(|&(i, c)| main[i] != c) {
        return None;
    }
    let fraction_ok = match rest {
        [b'Z'] => true,
        [b'.', digits @ .., b'Z'] => !digits.is_empty() && digits.iter().all(u8::is_ascii_digit),
        _ => false,
    };
    if !fraction_ok {
        return None;
    }
    let (y, mo, d) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (h, mi, sec) = (num(11..13)?, num(14..16)?, num(17..19)?);
    if !(1..=12).contains(&mo) || d < 1 || d > days_in_month(y, mo) || h > 23 || mi > 59 || sec > 59
    {
        return None;
    }
    Some(days_from_civil(y, mo, d) * 86_400 + h * 3600 + mi * 60 + sec)
}

/// Formats unix seconds as `YYYY-MM-DDThh:mm:ssZ`.
pub fn format_timestamp(secs: i64) -> String {
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    let (y, m, d) = civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

fn unix_seconds(t: SystemTime) -> i64 {
    match t.duration_since(UNIX_EPOCH) {
        Ok(d) => i64::try_from(d.as_secs()).unwrap_or(i64::MAX),
        Err(e) => -i64::try_from(e.duration().as_secs()).unwrap_or(i64::MAX),
    }
}

fn days_in_month(y: i64, m: i64) -> i64 {
    match m {
        2 if (y % 4 == 0 && y % 100 != 0) || y % 400 == 0 => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

// Howard Hinnant's civil-date algorithms (proleptic Gregorian, days since 1970-01-01).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

fn civil_from_days(z: i64) -> (i64, i64, i64) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (
        if m <= 2 {
            yoe + era * 400 + 1
        } else {
            yoe + era * 400
        },
        m,
        d,
    )
}

fn hmac_sha1(secret: &str) -> Hmac<Sha1> {
    let key = format!("{secret}&");
    Hmac::<Sha1>::new(&hmac_block_key::<Sha1>(key.as_bytes()).into())
}

fn hmac_sha256(secret: &str) -> Hmac<Sha256> {
    Hmac::<Sha256>::new(&hmac_block_key::<Sha256>(secret.as_bytes()).into())
}

/// HMAC (RFC 2104) hashes a key longer than the 64-byte block of SHA-1/SHA-256 and
/// zero-pads a shorter one; doing that here gives the same MAC through the infallible
/// fixed-size constructor, so no error path exists that could never be taken.
fn hmac_block_key<D: Digest>(key: &[u8]) -> [u8; 64] {
    let mut block = [0u8; 64];
    if key.len() > block.len() {
        let digest = D::digest(key);
        block[..digest.len()].copy_from_slice(&digest);
    } else {
        block[..key.len()].copy_from_slice(key);
    }
    block
}

/// Lower-case hex SHA-256 of `bytes` (V3 `x-acs-content-sha256`).
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex(&Sha256::digest(bytes))
}

fn hex(bytes: &[u8]) -> String {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for &b in bytes {
        out.push(HEX[usize::from(b >> 4)] as char);
        out.push(HEX[usize::from(b & 0xF)] as char);
    }
    out
}

fn unhex(s: &str) -> Option<Vec<u8>> {
    if !s.len().is_multiple_of(2) {
        return None;
    }
    s.as_bytes()
        .chunks(2)
        .map(|pair| {
            let hi = char::from(pair[0]).to_digit(16)?;
            let lo = char::from(pair[1]).to_digit(16)?;
            u8::try_from(hi << 4 | lo).ok()
        })
        .collect()
}

#[cfg(test)]
mod tests;
