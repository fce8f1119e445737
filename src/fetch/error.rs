//! The fetcher's error: one variant per way a download can fail, each with a message for
//! the client that names `ImageUrl` and says what to change, and a [`FetchErrorKind`] that
//! the API edge maps to a wire code. No wire strings here.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use hyper::StatusCode;

use super::guard::AddrClass;

/// Everything that can go wrong. [`kind`](Self::kind) says which sort of failure it is
/// (the API edge maps kinds to codes); `Display` gives a message for the client that names
/// `ImageUrl` and says what to change.
#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    /// Empty, unparseable, wrong scheme, no host, too long.
    #[error("ImageUrl {0}")]
    InvalidUrl(String),

    /// Spec 4: ImageUrl must not contain non-ASCII characters.
    #[error("ImageUrl must not contain non-ASCII characters (found {ch:?} at byte {at}); percent-encode them in UTF-8, e.g. \"%E5%9B%BE\" for \"图\"")]
    NonAscii { ch: char, at: usize },

    /// `user:pass@` in the authority.
    #[error("ImageUrl must not contain a user name or password (\"user:pass@host\"); use a URL that needs no credentials, such as a pre-signed one")]
    Credentials,

    /// The SSRF guard refused the address the host resolves to.
    #[error("ImageUrl host \"{host}\" resolves to {addr}, {class}; the server refuses private and local addresses (start it with --allow-private-urls to permit them)")]
    ForbiddenAddress {
        host: String,
        addr: IpAddr,
        class: AddrClass,
    },

    /// The body (or its announced `Content-Length`) is over the cap of this call.
    #[error("The image at ImageUrl is larger than the {} limit ({limit} bytes); the image must be smaller", human_size(*.limit))]
    TooLarge { limit: usize },

    /// `connect_timeout` or `total_timeout` ran out.
    #[error("Downloading ImageUrl timed out: {what} took longer than {} ms", .after.as_millis())]
    Timeout { what: &'static str, after: Duration },

    /// Final answer was not 200 OK.
    #[error("Downloading ImageUrl failed: the server answered HTTP {}{}", .0, status_reason(*.0))]
    Status(u16),

    /// One redirect more than `max_redirects`.
    #[error("Downloading ImageUrl failed: more than {max} redirects")]
    TooManyRedirects { max: usize },

    /// A redirect without a usable `Location` (missing, unparseable, not http(s), with
    /// credentials).
    #[error("Downloading ImageUrl failed: bad redirect: {0}")]
    BadRedirect(String),

    /// The host name did not resolve.
    #[error("Downloading ImageUrl failed: cannot resolve host \"{host}\": {reason}")]
    Dns { host: String, reason: String },

    /// No TCP connection could be made.
    #[error("Downloading ImageUrl failed: cannot connect to {addr}: {reason}")]
    Connect { addr: SocketAddr, reason: String },

    /// TLS handshake or certificate failure.
    #[error("Downloading ImageUrl failed: TLS error with \"{host}\": {reason}")]
    Tls { host: String, reason: String },

    /// HTTP protocol error, connection reset, truncated body.
    #[error("Downloading ImageUrl failed: {0}")]
    Http(String),

    /// [`ImageFetcher::new`] was given an unusable configuration. Never per request.
    #[error("image fetcher configuration: {0}")]
    Config(String),
}

/// What sort of failure a [`FetchError`] is: what the caller (the API edge) needs to decide
/// how to answer, without looking at the variant's details.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FetchErrorKind {
    /// The URL itself breaks a rule (empty, unparseable, wrong scheme, non-ASCII,
    /// credentials, too long): the client must change it.
    InvalidUrl,
    /// The SSRF guard refused the address the host resolves or connects to.
    Forbidden,
    /// The image is over the size cap of the call.
    TooLarge,
    /// The download failed: DNS, connect, TLS, HTTP status, redirects, timeouts.
    Download,
    /// The fetcher was built with an unusable configuration (our fault, never per request).
    Config,
}

impl FetchError {
    pub fn kind(&self) -> FetchErrorKind {
        match self {
            Self::InvalidUrl(_) | Self::NonAscii { .. } | Self::Credentials => {
                FetchErrorKind::InvalidUrl
            }
            Self::ForbiddenAddress { .. } => FetchErrorKind::Forbidden,
            Self::TooLarge { .. } => FetchErrorKind::TooLarge,
            Self::Timeout { .. }
            | Self::Status(_)
            | Self::TooManyRedirects { .. }
            | Self::BadRedirect(_)
            | Self::Dns { .. }
            | Self::Connect { .. }
            | Self::Tls { .. }
            | Self::Http(_) => FetchErrorKind::Download,
            Self::Config(_) => FetchErrorKind::Config,
        }
    }
}

/// "2 MB" for whole mebibytes, else "N bytes".
pub(super) fn human_size(bytes: usize) -> String {
    const MB: usize = 1024 * 1024;
    if bytes >= MB && bytes.is_multiple_of(MB) {
        format!("{} MB", bytes / MB)
    } else if bytes >= 1024 && bytes.is_multiple_of(1024) {
        format!("{} KB", bytes / 1024)
    } else {
        format!("{bytes} bytes")
    }
}

fn status_reason(code: u16) -> String {
    StatusCode::from_u16(code)
        .ok()
        .and_then(|s| s.canonical_reason())
        .map(|r| format!(" {r}"))
        .unwrap_or_default()
}

/// An error and its sources, "outer: inner: innermost", for messages.
pub(crate) fn chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(inner) = cur {
        let t = inner.to_string();
        if !s.contains(&t) {
            s.push_str(": ");
            s.push_str(&t);
        }
        cur = inner.source();
    }
    s
}
