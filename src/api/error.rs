//! The one error type of the API edge: every failure a client can see, with its wire
//! `Code`, HTTP status and message (spec 3.4 gateway rows and spec 5 business rows).
//!
//! Not here: rendering the error body (`response.rs`) or deciding *when* an error happens
//! (`auth.rs`, the handlers). Internal errors of other layers are converted into one of these
//! variants at the edge; their detail goes into the message, never a new code.

use thiserror::Error;

use crate::fetch::{FetchError, FetchErrorKind};
use crate::rules::ERROR_MESSAGE_MAX_CHARS;

/// Every error a client can receive. `code()` is the exact string the SDKs match on.
///
/// The messages mimic the public service's wording loosely; clients key on `Code`, people
/// read `Message`.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum ApiError {
    // ---- gateway (spec 3.4) ----
    /// A required common parameter (V1) or header (V3) is absent or empty. Holds its name.
    #[error("The input parameter \"{0}\" that is mandatory for processing this request is not supplied.")]
    MissingParameter(String),

    /// `SignatureMethod` (V1) or the Authorization algorithm (V3) is not one we verify.
    #[error("Specified signature method \"{given}\" is not supported; use {supported}.")]
    InvalidSignatureMethod {
        given: String,
        supported: &'static str,
    },

    /// `SignatureVersion` other than `1.0` (V1).
    #[error("Specified signature version \"{0}\" is not supported; use 1.0.")]
    InvalidSignatureVersion(String),

    /// The V3 Authorization header is malformed, or leaves a required header unsigned.
    #[error("The request signature does not conform to the ACS3 standard: {0}")]
    IncompleteSignature(String),

    /// `Version` / `x-acs-version` is not `2020-03-20`.
    #[error(
        "Specified parameter Version \"{0}\" is not valid; this service implements 2020-03-20."
    )]
    InvalidVersion(String),

    /// The action name is not one of [`crate::rules::KNOWN_ACTIONS`].
    #[error("Specified api \"{0}\" is not found, please check your url and method.")]
    InvalidActionNotFound(String),

    /// `Timestamp` / `x-acs-date` is not `YYYY-MM-DDThh:mm:ssZ`. Our own code: the public
    /// text folds this into `InvalidTimeStamp.Expired`, but a format slip deserves its own
    /// message.
    #[error("Specified timestamp \"{0}\" is not in the format YYYY-MM-DDThh:mm:ssZ (UTC).")]
    InvalidTimeStampFormat(String),

    /// `Timestamp` / `x-acs-date` more than the allowed window from server time.
    #[error("Specified time stamp or date value is expired: \"{given}\" differs from server time {server} by more than {window_secs} seconds.")]
    InvalidTimeStampExpired {
        given: String,
        server: String,
        window_secs: i64,
    },

    /// No key pair with this id.
    #[error("Specified access key \"{0}\" is not found.")]
    InvalidAccessKeyIdNotFound(String),

    /// Signature mismatch. The message must end in `is:` + StringToSign with no other `:`
    /// before it: the V1 SDK (`aliyun-python-sdk-core`) takes `message.split(':')[1]` and,
    /// when it equals its own StringToSign, reports a wrong secret instead of a signing bug.
    #[error("Specified signature does not match our calculation. server string to sign is:{string_to_sign}")]
    SignatureDoesNotMatch { string_to_sign: String },

    /// V3 `x-acs-content-sha256` differs from the SHA-256 of the body actually received.
    /// Our own code (the public text is silent); the body was altered or the client hashed
    /// something else.
    #[error("Header x-acs-content-sha256 \"{given}\" does not match the SHA-256 of the received body ({actual}).")]
    ContentSha256Mismatch { given: String, actual: String },

    /// The nonce was already used by this key within the timestamp window.
    #[error("Specified signature nonce was used already.")]
    SignatureNonceUsed,

    // ---- business (spec 5) ----
    /// A business parameter breaks its rule; the message says which and why.
    #[error("{0}")]
    InvalidParameter(String),

    /// The request as a whole is malformed (bad percent-encoding, not UTF-8, ...).
    #[error("{0}")]
    BadRequest(String),

    /// A `Filter` that is too long or does not parse; the message names the position and
    /// what was expected there. Our own code (our extension).
    #[error("{0}")]
    InvalidFilter(String),

    /// An `IntAttr…`/`StrAttr…` value that breaks its rule. Our own code.
    #[error("{0}")]
    InvalidAttribute(String),

    /// ImageUrl points at a loopback/private/link-local address (SSRF guard).
    #[error("{0}")]
    ImageUrlForbidden(String),

    #[error("{0}")]
    InvalidImageDownload(String),

    #[error("{0}")]
    InvalidImageFormat(String),

    #[error("{0}")]
    InvalidImageResolution(String),

    #[error("{0}")]
    InvalidImageSize(String),

    /// The feature extractor failed (HTTP 586, as the public service answers).
    #[error("{0}")]
    AlgoError(String),

    /// Back-pressure: queue full, nonce cache full. Retrying later may succeed.
    #[error("{0}")]
    ServiceUnavailable(String),

    /// The server's disk is full; the write was not made (HTTP 507; our own code).
    #[error("{0}")]
    InsufficientStorage(String),

    /// The access key holds as many image databases as the server allows it (HTTP 403;
    /// our own code: the public service has one fixed instance size instead).
    #[error("{0}")]
    DatabaseQuotaExceeded(String),

    /// The access key's databases hold as many images as the server allows it (HTTP 403;
    /// our own code).
    #[error("{0}")]
    ImageQuotaExceeded(String),

    /// The request body is larger than the server accepts (HTTP 413). Our own code.
    #[error("The request body is larger than {limit} bytes, the most this server accepts; images may be at most 2 MB (AddImage) or 3 MB (SearchImage) before base64.")]
    RequestTooLarge { limit: usize },

    /// The request body stopped coming, or came slower than the server accepts (HTTP 408).
    /// Our own code.
    #[error("The request body arrived too slowly: {received} bytes in {secs} s. Send the whole body without pausing; the connection is closed.")]
    RequestTimeout { received: u64, secs: u64 },

    /// A path other than the API's `/` and the documented extras (HTTP 404). Our own code.
    #[error("There is nothing at path \"{0}\": the API is served at \"/\"; see also /console, /healthz, /readyz, /metrics.")]
    PathNotFound(String),

    /// Anything else that is our fault.
    #[error("{0}")]
    Internal(String),
}

impl ApiError {
    /// The wire `Code`.
    pub fn code(&self) -> &'static str {
        match self {
            Self::MissingParameter(_) => "MissingParameter",
            Self::InvalidSignatureMethod { .. } => "InvalidSignatureMethod",
            Self::InvalidSignatureVersion(_) => "InvalidSignatureVersion",
            Self::IncompleteSignature(_) => "IncompleteSignature",
            Self::InvalidVersion(_) => "InvalidVersion",
            Self::InvalidActionNotFound(_) => "InvalidAction.NotFound",
            Self::InvalidTimeStampFormat(_) => "InvalidTimeStamp.Format",
            Self::InvalidTimeStampExpired { .. } => "InvalidTimeStamp.Expired",
            Self::InvalidAccessKeyIdNotFound(_) => "InvalidAccessKeyId.NotFound",
            Self::SignatureDoesNotMatch { .. } => "SignatureDoesNotMatch",
            Self::ContentSha256Mismatch { .. } => "InvalidContentSha256",
            Self::SignatureNonceUsed => "SignatureNonceUsed",
            Self::InvalidParameter(_) => "InvalidParameter",
            Self::BadRequest(_) => "InvalidParameter.BadRequest",
            Self::InvalidFilter(_) => "InvalidParameter.Filter",
            Self::InvalidAttribute(_) => "InvalidParameter.Attribute",
            Self::ImageUrlForbidden(_) => "InvalidParameter.ImageUrlForbidden",
            Self::InvalidImageDownload(_) => "InvalidImage.Download",
            Self::InvalidImageFormat(_) => "InvalidImage.Format",
            Self::InvalidImageResolution(_) => "InvalidImage.Resolution",
            Self::InvalidImageSize(_) => "InvalidImage.Size",
            Self::AlgoError(_) => "InternalError.Algo",
            Self::ServiceUnavailable(_) => "ServiceUnavailable",
            Self::InsufficientStorage(_) => "InsufficientStorage",
            Self::DatabaseQuotaExceeded(_) => "QuotaExceeded.Databases",
            Self::ImageQuotaExceeded(_) => "QuotaExceeded.Images",
            Self::RequestTooLarge { .. } => "RequestTooLarge",
            Self::RequestTimeout { .. } => "RequestTimeout",
            Self::PathNotFound(_) => "InvalidPath.NotFound",
            Self::Internal(_) => "InternalError",
        }
    }

    /// The HTTP status. 586 is not a registered status but is what the public service
    /// sends for `InternalError.Algo`; `http::StatusCode::from_u16(586)` accepts it.
    pub fn http_status(&self) -> u16 {
        match self {
            Self::InvalidAccessKeyIdNotFound(_)
            | Self::InvalidActionNotFound(_)
            | Self::PathNotFound(_) => 404,
            Self::RequestTooLarge { .. } => 413,
            Self::DatabaseQuotaExceeded(_) | Self::ImageQuotaExceeded(_) => 403,
            Self::InsufficientStorage(_) => 507,
            Self::RequestTimeout { .. } => 408,
            Self::AlgoError(_) => 586,
            Self::ServiceUnavailable(_) => 503,
            Self::Internal(_) => 500,
            _ => 400,
        }
    }

    /// The API error for a failed ImageUrl download: the one place fetch failures get
    /// their wire codes.
    pub fn from_fetch(e: &FetchError) -> Self {
        let msg = e.to_string();
        match e.kind() {
            FetchErrorKind::InvalidUrl => Self::InvalidParameter(msg),
            FetchErrorKind::Forbidden => Self::ImageUrlForbidden(msg),
            FetchErrorKind::TooLarge => Self::InvalidImageSize(msg),
            FetchErrorKind::Download => Self::InvalidImageDownload(msg),
            FetchErrorKind::Config => Self::Internal(msg),
        }
    }

    /// The human-readable `Message`.
    /// The message for the response body, at most `ERROR_MESSAGE_MAX_CHARS` characters:
    /// a longer one (it quotes a huge parameter) is cut and says how much was left out.
    pub fn message(&self) -> String {
        let full = self.to_string();
        match full.char_indices().nth(ERROR_MESSAGE_MAX_CHARS) {
            None => full,
            Some((cut, _)) => format!(
                "{}... ({} more characters not shown)",
                &full[..cut],
                full[cut..].chars().count()
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_and_statuses_match_the_spec_tables() {
        let rows: Vec<(ApiError, &str, u16)> = vec![
            (
                ApiError::MissingParameter("Timestamp".into()),
                "MissingParameter",
                400,
            ),
            (
                ApiError::InvalidAccessKeyIdNotFound("x".into()),
                "InvalidAccessKeyId.NotFound",
                404,
            ),
            (
                ApiError::SignatureDoesNotMatch {
                    string_to_sign: "s".into(),
                },
                "SignatureDoesNotMatch",
                400,
            ),
            (ApiError::SignatureNonceUsed, "SignatureNonceUsed", 400),
            (
                ApiError::InvalidTimeStampExpired {
                    given: "a".into(),
                    server: "b".into(),
                    window_secs: 900,
                },
                "InvalidTimeStamp.Expired",
                400,
            ),
            (
                ApiError::InvalidActionNotFound("X".into()),
                "InvalidAction.NotFound",
                404,
            ),
            (ApiError::InvalidVersion("1".into()), "InvalidVersion", 400),
            (
                ApiError::InvalidParameter("p".into()),
                "InvalidParameter",
                400,
            ),
            (
                ApiError::BadRequest("b".into()),
                "InvalidParameter.BadRequest",
                400,
            ),
            (
                ApiError::InvalidImageDownload("d".into()),
                "InvalidImage.Download",
                400,
            ),
            (
                ApiError::InvalidImageFormat("f".into()),
                "InvalidImage.Format",
                400,
            ),
            (
                ApiError::InvalidImageResolution("r".into()),
                "InvalidImage.Resolution",
                400,
            ),
            (
                ApiError::InvalidImageSize("s".into()),
                "InvalidImage.Size",
                400,
            ),
            (ApiError::AlgoError("a".into()), "InternalError.Algo", 586),
            (
                ApiError::InsufficientStorage("full".into()),
                "InsufficientStorage",
                507,
            ),
            (
                ApiError::DatabaseQuotaExceeded("q".into()),
                "QuotaExceeded.Databases",
                403,
            ),
            (
                ApiError::ImageQuotaExceeded("q".into()),
                "QuotaExceeded.Images",
                403,
            ),
            (
                ApiError::ServiceUnavailable("busy".into()),
                "ServiceUnavailable",
                503,
            ),
            (ApiError::Internal("oops".into()), "InternalError", 500),
            (
                ApiError::RequestTooLarge { limit: 8 },
                "RequestTooLarge",
                413,
            ),
            (
                ApiError::RequestTimeout {
                    received: 16,
                    secs: 31,
                },
                "RequestTimeout",
                408,
            ),
            (
                ApiError::PathNotFound("/x".into()),
                "InvalidPath.NotFound",
                404,
            ),
        ];
        for (err, code, status) in rows {
            assert_eq!(err.code(), code, "{err:?}");
            assert_eq!(err.http_status(), status, "{err:?}");
            assert!(!err.message().is_empty());
        }
    }

    #[test]
    fn signature_mismatch_message_splits_like_the_v1_sdk_expects() {
        let sts = "POST&%2F&AccessKeyId%3DAKID";
        let err = ApiError::SignatureDoesNotMatch {
            string_to_sign: sts.into(),
        };
        // aliyun-python-sdk-core: `server_error_message.split(':')[1] == string_to_sign`
        let msg = err.message();
        let parts: Vec<&str> = msg.split(':').collect();
        assert_eq!(parts.len(), 2);
        assert_eq!(parts[1], sts);
    }

    #[test]
    fn a_huge_echo_is_cut_with_a_note() {
        // A V1 StringToSign quotes every parameter: megabytes for an 8 MB body.
        let sts = "P".repeat(29_000_000);
        let msg = ApiError::SignatureDoesNotMatch {
            string_to_sign: sts,
        }
        .message();
        assert!(
            msg.chars().count() < ERROR_MESSAGE_MAX_CHARS + 100,
            "{}",
            msg.len()
        );
        assert!(msg.starts_with("Specified signature does not match our calculation."));
        assert!(
            msg.ends_with("more characters not shown)"),
            "{}",
            &msg[msg.len() - 80..]
        );
        let key = ApiError::InvalidAccessKeyIdNotFound("k".repeat(5_000_000)).message();
        assert!(key.len() < ERROR_MESSAGE_MAX_CHARS + 100);
    }

    #[test]
    fn missing_parameter_message_names_it() {
        let msg = ApiError::MissingParameter("SignatureNonce".into()).message();
        assert!(msg.contains("\"SignatureNonce\""), "{msg}");
    }

    #[test]
    fn fetch_failures_get_their_codes() {
        use std::net::{IpAddr, Ipv4Addr};
        use std::time::Duration;

        use crate::fetch::AddrClass;
        let rows: Vec<(FetchError, &str)> = vec![
            (FetchError::InvalidUrl("x".into()), "InvalidParameter"),
            (FetchError::NonAscii { ch: '图', at: 0 }, "InvalidParameter"),
            (FetchError::Credentials, "InvalidParameter"),
            (
                FetchError::ForbiddenAddress {
                    host: "h".into(),
                    addr: IpAddr::V4(Ipv4Addr::LOCALHOST),
                    class: AddrClass::Loopback,
                },
                "InvalidParameter.ImageUrlForbidden",
            ),
            (FetchError::TooLarge { limit: 1 }, "InvalidImage.Size"),
            (
                FetchError::Timeout {
                    what: "x",
                    after: Duration::from_secs(1),
                },
                "InvalidImage.Download",
            ),
            (FetchError::Status(404), "InvalidImage.Download"),
            (
                FetchError::TooManyRedirects { max: 3 },
                "InvalidImage.Download",
            ),
            (FetchError::Http("x".into()), "InvalidImage.Download"),
            (FetchError::Config("x".into()), "InternalError"),
        ];
        for (err, code) in rows {
            let api = ApiError::from_fetch(&err);
            assert_eq!(api.code(), code, "{err:?}");
            assert_eq!(api.message(), err.to_string());
        }
    }
}
