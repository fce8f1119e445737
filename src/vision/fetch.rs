//! Downloading the image behind an `ImageUrl` (AddImage, SearchImage).
//!
//! [`ImageFetcher::fetch`] takes the URL exactly as the client sent it and returns the body
//! bytes, or a [`FetchError`] whose [`code`](FetchError::code) is the API error code the edge
//! sends back. It enforces the rules that belong to *getting* the bytes:
//!
//! * the URL: `http`/`https` only, ASCII only (spec: non-ASCII characters such as Chinese are
//!   refused; checked on the raw string before parsing would percent-encode them), no
//!   `user:pass@`;
//! * the size cap, given per call (2 MB for AddImage, 3 MB for SearchImage): a larger
//!   `Content-Length` is refused before the body is read, and a body without one stops being
//!   read as soon as it passes the cap;
//! * timeouts (connect, and total over every hop) and at most `max_redirects` redirects;
//! * the SSRF guard: unless `allow_private` is set, no connection is ever made to a
//!   loopback, private, link-local, multicast, documentation or otherwise special address.
//!
//! How the guard holds against DNS rebinding: there is no HTTP client here that resolves
//! names on its own. For every hop (the first URL and each redirect target, which this code
//! follows itself) the host is resolved once, the resulting addresses are filtered, and the
//! TCP connection is made to a filtered `SocketAddr` directly; the hostname is used only for
//! TLS SNI/certificate checks and the `Host` header. The peer address of the connected socket
//! is checked again before a byte is sent. A name that answers "public" to one lookup and
//! "private" to the next therefore gains nothing: the address that was checked is the
//! address that is connected to.
//!
//! Not here: content sniffing, format and resolution checks (`vision::decode::probe`), and
//! mapping errors to the wire (the edge calls [`FetchError::code`]). Connections are not
//! pooled: each hop is one connection, closed when the hop ends.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use http_body_util::{BodyExt, Empty};
use hyper::body::{Bytes, Incoming};
use hyper::header::{self, HeaderValue};
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio::task::JoinHandle;
use tokio_rustls::rustls::pki_types::ServerName;
use tokio_rustls::rustls::{self, ClientConfig, RootCertStore};
use tokio_rustls::TlsConnector;
use url::{Host, Position, Url};

/// Spec 4, AddImage: the image must be at most 2 MB.
pub const ADD_IMAGE_MAX_BYTES: usize = 2 * 1024 * 1024;
/// Spec 4, SearchImage: the query image must be at most 3 MB.
pub const SEARCH_IMAGE_MAX_BYTES: usize = 3 * 1024 * 1024;

/// Longest `ImageUrl` accepted. The spec sets none; this only keeps absurd input out of
/// logs and error messages.
pub const MAX_URL_LEN: usize = 4096;

/// How the fetcher behaves. [`Default`] gives the production settings.
#[derive(Debug, Clone)]
pub struct FetchConfig {
    /// Limit for each DNS lookup, each TCP connect attempt and each TLS handshake.
    pub connect_timeout: Duration,
    /// Limit for the whole fetch: every hop, headers and body together.
    pub total_timeout: Duration,
    /// Redirects followed; one more redirect answer is an error.
    pub max_redirects: usize,
    /// Lift the SSRF guard (the server's `--allow-private-urls`), for local object stores
    /// and tests.
    pub allow_private: bool,
    /// `User-Agent` sent with every request.
    pub user_agent: String,
}

impl Default for FetchConfig {
    fn default() -> Self {
        Self {
            connect_timeout: Duration::from_secs(5),
            total_timeout: Duration::from_secs(15),
            max_redirects: 3,
            allow_private: false,
            user_agent: concat!("imgsearch/", env!("CARGO_PKG_VERSION")).to_string(),
        }
    }
}

/// Why an address is refused by the SSRF guard. `Display` reads as a noun phrase
/// ("a loopback address") for use inside messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AddrClass {
    /// `0.0.0.0`, `::`.
    Unspecified,
    /// `0.0.0.0/8` other than `0.0.0.0`: "this network", reaches the local host on Linux.
    ThisNetwork,
    /// `127.0.0.0/8`, `::1`.
    Loopback,
    /// RFC 1918: `10/8`, `172.16/12`, `192.168/16`.
    Private,
    /// `fc00::/7`, the IPv6 counterpart of RFC 1918.
    UniqueLocal,
    /// `100.64.0.0/10`, carrier-grade NAT (RFC 6598).
    SharedAddressSpace,
    /// `169.254.0.0/16` (cloud metadata services live here), `fe80::/10`.
    LinkLocal,
    /// `224.0.0.0/4`, `ff00::/8`.
    Multicast,
    /// `255.255.255.255`.
    Broadcast,
    /// `192.0.2/24`, `198.51.100/24`, `203.0.113/24`, `2001:db8::/32`, `3fff::/20`.
    Documentation,
    /// `198.18.0.0/15`.
    Benchmarking,
    /// Any other special-purpose or unallocated range (`240/4`, `192.0.0/24`, IPv6 outside
    /// `2000::/3`, `2001::/23`, local-use NAT64, ...).
    Reserved,
}

impl fmt::Display for AddrClass {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Unspecified => "an unspecified address",
            Self::ThisNetwork => "a \"this network\" address (0.0.0.0/8)",
            Self::Loopback => "a loopback address",
            Self::Private => "a private address",
            Self::UniqueLocal => "a unique local address (fc00::/7)",
            Self::SharedAddressSpace => "a carrier-grade NAT address (100.64.0.0/10)",
            Self::LinkLocal => "a link-local address",
            Self::Multicast => "a multicast address",
            Self::Broadcast => "the broadcast address",
            Self::Documentation => "a documentation address",
            Self::Benchmarking => "a benchmarking address (198.18.0.0/15)",
            Self::Reserved => "a reserved special-purpose address",
        })
    }
}

/// The SSRF guard's verdict on one address: `None` when it is an ordinary public address,
/// otherwise why it is refused. IPv6 addresses that embed an IPv4 address and are routed to
/// it (IPv4-mapped `::ffff:a.b.c.d`, NAT64 `64:ff9b::/96`, 6to4 `2002::/16`) are judged by
/// the embedded address.
pub fn classify_ip(ip: IpAddr) -> Option<AddrClass> {
    match ip {
        IpAddr::V4(v4) => classify_v4(v4),
        IpAddr::V6(v6) => classify_v6(v6),
    }
}

/// Whether `n` lies in `net/len`.
fn in_v4(n: u32, net: [u8; 4], len: u32) -> bool {
    let mask = u32::MAX.checked_shl(32 - len).unwrap_or(0);
    n & mask == u32::from_be_bytes(net) & mask
}

fn in_v6(n: u128, net: Ipv6Addr, len: u32) -> bool {
    let mask = u128::MAX.checked_shl(128 - len).unwrap_or(0);
    n & mask == u128::from(net) & mask
}

fn classify_v4(ip: Ipv4Addr) -> Option<AddrClass> {
    use AddrClass::*;
    let n = u32::from(ip);
    // Most specific first: single addresses, then ranges inside larger ones.
    let class = if n == 0 {
        Unspecified
    } else if n == u32::MAX {
        Broadcast
    } else if in_v4(n, [0, 0, 0, 0], 8) {
        ThisNetwork
    } else if in_v4(n, [127, 0, 0, 0], 8) {
        Loopback
    } else if in_v4(n, [10, 0, 0, 0], 8)
        || in_v4(n, [172, 16, 0, 0], 12)
        || in_v4(n, [192, 168, 0, 0], 16)
    {
        Private
    } else if in_v4(n, [100, 64, 0, 0], 10) {
        SharedAddressSpace
    } else if in_v4(n, [169, 254, 0, 0], 16) {
        LinkLocal
    } else if in_v4(n, [224, 0, 0, 0], 4) {
        Multicast
    } else if in_v4(n, [192, 0, 2, 0], 24)
        || in_v4(n, [198, 51, 100, 0], 24)
        || in_v4(n, [203, 0, 113, 0], 24)
    {
        Documentation
    } else if in_v4(n, [198, 18, 0, 0], 15) {
        Benchmarking
    } else if in_v4(n, [240, 0, 0, 0], 4)
        // IETF protocol assignments (RFC 6890), deprecated 6to4 relay anycast (RFC 7526).
        || in_v4(n, [192, 0, 0, 0], 24)
        || in_v4(n, [192, 88, 99, 0], 24)
    {
        Reserved
    } else {
        return None;
    };
    Some(class)
}

/// The IPv4 address in the low 32 bits.
fn low_v4(n: u128) -> Ipv4Addr {
    Ipv4Addr::from((n & 0xffff_ffff) as u32)
}

fn classify_v6(ip: Ipv6Addr) -> Option<AddrClass> {
    use AddrClass::*;
    let n = u128::from(ip);
    // Embeddings that the network routes to the embedded IPv4 address: judge that address.
    if let Some(v4) = ip.to_ipv4_mapped() {
        return classify_v4(v4);
    }
    if in_v6(n, Ipv6Addr::new(0x64, 0xff9b, 0, 0, 0, 0, 0, 0), 96) {
        return classify_v4(low_v4(n));
    }
    if in_v6(n, Ipv6Addr::new(0x2002, 0, 0, 0, 0, 0, 0, 0), 16) {
        // 6to4: bits 16..48 are the IPv4 address of the site.
        return classify_v4(Ipv4Addr::from(((n >> 80) & 0xffff_ffff) as u32));
    }
    let class = if ip.is_unspecified() {
        Unspecified
    } else if ip.is_loopback() {
        Loopback
    } else if in_v6(n, Ipv6Addr::UNSPECIFIED, 96) {
        // Deprecated IPv4-compatible `::a.b.c.d`: name the embedded address's class when it
        // has one, so the message is useful; refused either way.
        classify_v4(low_v4(n)).unwrap_or(Reserved)
    } else if in_v6(n, Ipv6Addr::new(0xfc00, 0, 0, 0, 0, 0, 0, 0), 7) {
        UniqueLocal
    } else if in_v6(n, Ipv6Addr::new(0xfe80, 0, 0, 0, 0, 0, 0, 0), 10) {
        LinkLocal
    } else if in_v6(n, Ipv6Addr::new(0xff00, 0, 0, 0, 0, 0, 0, 0), 8) {
        Multicast
    } else if in_v6(n, Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 0), 32)
        || in_v6(n, Ipv6Addr::new(0x3fff, 0, 0, 0, 0, 0, 0, 0), 20)
    {
        Documentation
    } else if !in_v6(n, Ipv6Addr::new(0x2000, 0, 0, 0, 0, 0, 0, 0), 3)
        // Only 2000::/3 is global unicast; everything else (site-local fec0::/10, discard
        // 100::/64, local-use NAT64 64:ff9b:1::/48, IPv4-translated ::ffff:0:0:0/96, ...)
        // is special or unallocated.
        // 2001::/23: IETF protocol assignments (Teredo, benchmarking 2001:2::/48, ORCHID).
        || in_v6(n, Ipv6Addr::new(0x2001, 0, 0, 0, 0, 0, 0, 0), 23)
    {
        Reserved
    } else {
        return None;
    };
    Some(class)
}

/// Everything that can go wrong. [`code`](Self::code) gives the API error code; `Display`
/// gives a message for the client that names `ImageUrl` and says what to change.
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

impl FetchError {
    /// The API error code (spec 5 plus our own `InvalidParameter.ImageUrlForbidden`). All of
    /// them are HTTP 400 except `InternalError`, which only [`ImageFetcher::new`] returns.
    pub fn code(&self) -> &'static str {
        match self {
            Self::InvalidUrl(_) | Self::NonAscii { .. } | Self::Credentials => "InvalidParameter",
            Self::ForbiddenAddress { .. } => "InvalidParameter.ImageUrlForbidden",
            Self::TooLarge { .. } => "InvalidImage.Size",
            Self::Timeout { .. }
            | Self::Status(_)
            | Self::TooManyRedirects { .. }
            | Self::BadRedirect(_)
            | Self::Dns { .. }
            | Self::Connect { .. }
            | Self::Tls { .. }
            | Self::Http(_) => "InvalidImage.Download",
            Self::Config(_) => "InternalError",
        }
    }
}

/// "2 MB" for whole mebibytes, else "N bytes".
fn human_size(bytes: usize) -> String {
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
fn chain(e: &(dyn std::error::Error + 'static)) -> String {
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

/// Check `ImageUrl` as the client sent it, without fetching: the same rules as
/// [`ImageFetcher::fetch`] applies first (scheme, ASCII, credentials, length). Lets a
/// handler refuse a bad request before doing anything else.
pub fn check_image_url(raw: &str) -> Result<(), FetchError> {
    parse_image_url(raw).map(|_| ())
}

fn parse_image_url(raw: &str) -> Result<Url, FetchError> {
    if raw.trim().is_empty() {
        return Err(FetchError::InvalidUrl("is empty".into()));
    }
    // Before parsing: `Url::parse` would percent-encode a path or punycode a host, and the
    // spec refuses the characters themselves.
    if let Some((at, ch)) = raw.char_indices().find(|(_, c)| !c.is_ascii()) {
        return Err(FetchError::NonAscii { ch, at });
    }
    if raw.len() > MAX_URL_LEN {
        return Err(FetchError::InvalidUrl(format!(
            "is {} characters long; at most {MAX_URL_LEN} are accepted",
            raw.len()
        )));
    }
    let url =
        Url::parse(raw).map_err(|e| FetchError::InvalidUrl(format!("is not a valid URL ({e})")))?;
    check_parsed(&url).map_err(|why| match why {
        UrlProblem::Credentials => FetchError::Credentials,
        UrlProblem::Other(m) => FetchError::InvalidUrl(m),
    })?;
    Ok(url)
}

enum UrlProblem {
    Credentials,
    Other(String),
}

/// Rules shared by the client's URL and redirect targets.
fn check_parsed(url: &Url) -> Result<(), UrlProblem> {
    match url.scheme() {
        "http" | "https" => {}
        other => {
            return Err(UrlProblem::Other(format!(
                "must use the http or https scheme, not \"{other}\""
            )))
        }
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(UrlProblem::Credentials);
    }
    match url.host() {
        None => Err(UrlProblem::Other("has no host".into())),
        Some(Host::Domain("")) => Err(UrlProblem::Other("has an empty host".into())),
        Some(_) => Ok(()),
    }
}

/// Aborts the task driving a connection when dropped, which closes the socket: leaving a
/// fetch early (size cap, timeout, error) must not leave a download running behind it.
struct AbortOnDrop(JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// One request/response on one connection. The connection lives until `_conn` is dropped;
/// `_sender` is kept so hyper does not treat the connection as abandoned mid-body.
struct Hop {
    response: Response<Incoming>,
    _sender: hyper::client::conn::http1::SendRequest<Empty<Bytes>>,
    _conn: AbortOnDrop,
}

struct Inner {
    cfg: FetchConfig,
    user_agent: HeaderValue,
    tls: TlsConnector,
    /// Tests only: socket addresses the guard lets through although they are loopback, to
    /// stand in for "a public host" without network access.
    #[cfg(test)]
    test_allowed: Vec<SocketAddr>,
}

/// Downloads images. Build once at startup and share: cloning is a reference-count bump.
#[derive(Clone)]
pub struct ImageFetcher {
    inner: Arc<Inner>,
}

impl fmt::Debug for ImageFetcher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ImageFetcher")
            .field("cfg", &self.inner.cfg)
            .finish_non_exhaustive()
    }
}

impl ImageFetcher {
    /// Validate the configuration and build the TLS client (ring provider, Mozilla roots
    /// from `webpki-roots`, HTTP/1.1 only).
    pub fn new(cfg: FetchConfig) -> Result<Self, FetchError> {
        let mut roots = RootCertStore::empty();
        roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
        Self::with_roots(cfg, roots)
    }

    fn with_roots(cfg: FetchConfig, roots: RootCertStore) -> Result<Self, FetchError> {
        if cfg.connect_timeout.is_zero() || cfg.total_timeout.is_zero() {
            return Err(FetchError::Config(
                "timeouts must be greater than zero".into(),
            ));
        }
        let user_agent = HeaderValue::from_str(&cfg.user_agent)
            .map_err(|e| FetchError::Config(format!("user agent: {e}")))?;
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut tls = ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| FetchError::Config(format!("TLS: {e}")))?
            .with_root_certificates(roots)
            .with_no_client_auth();
        // We speak HTTP/1.1 only; say so, so that servers do not pick h2.
        tls.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(Self {
            inner: Arc::new(Inner {
                cfg,
                user_agent,
                tls: TlsConnector::from(Arc::new(tls)),
                #[cfg(test)]
                test_allowed: Vec::new(),
            }),
        })
    }

    /// The configuration this fetcher was built with.
    pub fn config(&self) -> &FetchConfig {
        &self.inner.cfg
    }

    /// GET `url` (as the client sent it) and return the body, at most `max_bytes` long
    /// ([`ADD_IMAGE_MAX_BYTES`] or [`SEARCH_IMAGE_MAX_BYTES`]). The bytes are not looked at.
    pub async fn fetch(&self, url: &str, max_bytes: usize) -> Result<Vec<u8>, FetchError> {
        let url = parse_image_url(url)?;
        let total = self.inner.cfg.total_timeout;
        match tokio::time::timeout(total, self.fetch_parsed(url, max_bytes)).await {
            Ok(result) => result,
            Err(_) => Err(FetchError::Timeout {
                what: "the download",
                after: total,
            }),
        }
    }

    async fn fetch_parsed(&self, mut url: Url, max_bytes: usize) -> Result<Vec<u8>, FetchError> {
        let max_redirects = self.inner.cfg.max_redirects;
        let mut redirects = 0;
        loop {
            let hop = self.request(&url).await?;
            let status = hop.response.status();
            if is_redirect(status) {
                if redirects == max_redirects {
                    return Err(FetchError::TooManyRedirects { max: max_redirects });
                }
                redirects += 1;
                url = redirect_target(&url, &hop.response)?;
                // `hop` drops here: its connection closes before the next one opens.
                continue;
            }
            if status != StatusCode::OK {
                return Err(FetchError::Status(status.as_u16()));
            }
            return read_capped(hop, max_bytes).await;
        }
    }

    /// Resolve, filter, connect (TLS if https), send the GET, return the response head.
    async fn request(&self, url: &Url) -> Result<Hop, FetchError> {
        let host = url
            .host()
            .ok_or_else(|| FetchError::InvalidUrl("has no host".into()))?;
        let port = url
            .port_or_known_default()
            .ok_or_else(|| FetchError::InvalidUrl("has no port".into()))?;
        let host_str = host.to_string();
        let candidates: Vec<SocketAddr> = match host {
            Host::Ipv4(ip) => vec![SocketAddr::new(IpAddr::V4(ip), port)],
            Host::Ipv6(ip) => vec![SocketAddr::new(IpAddr::V6(ip), port)],
            Host::Domain(name) => self.resolve(name, port).await?,
        };
        let allowed = self.filter(&host_str, candidates)?;
        let tcp = self.connect(&host_str, &allowed).await?;

        let req = Request::get(&url[Position::BeforePath..Position::AfterQuery])
            .header(
                header::HOST,
                &url[Position::BeforeHost..Position::AfterPort],
            )
            .header(header::USER_AGENT, self.inner.user_agent.clone())
            .header(header::ACCEPT, "image/jpeg, image/png, */*;q=0.5")
            // No compression: the size cap is about the image, and we do not decode gzip.
            .header(header::ACCEPT_ENCODING, "identity")
            .header(header::CONNECTION, "close")
            .body(Empty::<Bytes>::new())
            .map_err(|e| FetchError::InvalidUrl(format!("cannot form a request: {e}")))?;

        if url.scheme() == "https" {
            let name = match host {
                Host::Ipv4(ip) => ServerName::IpAddress(IpAddr::V4(ip).into()),
                Host::Ipv6(ip) => ServerName::IpAddress(IpAddr::V6(ip).into()),
                Host::Domain(d) => {
                    ServerName::try_from(d.to_string()).map_err(|e| FetchError::Tls {
                        host: host_str.clone(),
                        reason: format!("not a valid TLS server name: {e}"),
                    })?
                }
            };
            let handshake = self.inner.tls.connect(name, tcp);
            let tls = match tokio::time::timeout(self.inner.cfg.connect_timeout, handshake).await {
                Ok(Ok(tls)) => tls,
                Ok(Err(e)) => {
                    return Err(FetchError::Tls {
                        host: host_str,
                        reason: chain(&e),
                    })
                }
                Err(_) => {
                    return Err(FetchError::Timeout {
                        what: "the TLS handshake",
                        after: self.inner.cfg.connect_timeout,
                    })
                }
            };
            exchange(tls, req).await
        } else {
            exchange(tcp, req).await
        }
    }

    async fn resolve(&self, name: &str, port: u16) -> Result<Vec<SocketAddr>, FetchError> {
        let timeout = self.inner.cfg.connect_timeout;
        let lookup = tokio::net::lookup_host((name, port));
        let addrs = match tokio::time::timeout(timeout, lookup).await {
            Ok(Ok(addrs)) => addrs.collect::<Vec<_>>(),
            Ok(Err(e)) => {
                return Err(FetchError::Dns {
                    host: name.to_string(),
                    reason: e.to_string(),
                })
            }
            Err(_) => {
                return Err(FetchError::Timeout {
                    what: "resolving the host name",
                    after: timeout,
                })
            }
        };
        if addrs.is_empty() {
            return Err(FetchError::Dns {
                host: name.to_string(),
                reason: "no addresses".into(),
            });
        }
        Ok(addrs)
    }

    /// The guard on one address. Applied to every candidate before connecting and to the
    /// connected socket's peer address.
    fn check_addr(&self, host: &str, addr: SocketAddr) -> Result<(), FetchError> {
        if self.inner.cfg.allow_private {
            return Ok(());
        }
        #[cfg(test)]
        if self.inner.test_allowed.contains(&addr) {
            return Ok(());
        }
        match classify_ip(addr.ip()) {
            None => Ok(()),
            Some(class) => Err(FetchError::ForbiddenAddress {
                host: host.to_string(),
                addr: addr.ip(),
                class,
            }),
        }
    }

    /// Keep the permitted candidates; if none is, refuse naming the first. A name with both
    /// public and private addresses is served from the public ones only.
    fn filter(
        &self,
        host: &str,
        candidates: Vec<SocketAddr>,
    ) -> Result<Vec<SocketAddr>, FetchError> {
        let mut first_refusal = None;
        let mut allowed = Vec::with_capacity(candidates.len());
        for addr in candidates {
            match self.check_addr(host, addr) {
                Ok(()) => allowed.push(addr),
                Err(e) => {
                    first_refusal.get_or_insert(e);
                }
            }
        }
        match (allowed.is_empty(), first_refusal) {
            (true, Some(e)) => Err(e),
            (true, None) => Err(FetchError::Dns {
                host: host.to_string(),
                reason: "no addresses".into(),
            }),
            (false, _) => Ok(allowed),
        }
    }

    /// Try the permitted addresses in order; return the first connection whose peer address
    /// passes the guard again.
    async fn connect(&self, host: &str, addrs: &[SocketAddr]) -> Result<TcpStream, FetchError> {
        let timeout = self.inner.cfg.connect_timeout;
        let mut last = None;
        for &addr in addrs {
            let stream = match tokio::time::timeout(timeout, TcpStream::connect(addr)).await {
                Ok(Ok(s)) => s,
                Ok(Err(e)) => {
                    last = Some(FetchError::Connect {
                        addr,
                        reason: e.to_string(),
                    });
                    continue;
                }
                Err(_) => {
                    last = Some(FetchError::Timeout {
                        what: "connecting",
                        after: timeout,
                    });
                    continue;
                }
            };
            // What we are actually talking to, as the kernel sees it. Equal to `addr` in
            // practice; checked anyway so the guard does not rest on that assumption.
            let peer = stream.peer_addr().map_err(|e| FetchError::Connect {
                addr,
                reason: e.to_string(),
            })?;
            self.check_addr(host, peer)?;
            let _ = stream.set_nodelay(true);
            return Ok(stream);
        }
        Err(last.unwrap_or_else(|| FetchError::Dns {
            host: host.to_string(),
            reason: "no addresses".into(),
        }))
    }
}

/// HTTP/1.1 handshake over an established stream, send `req`, wait for the response head.
async fn exchange<S>(io: S, req: Request<Empty<Bytes>>) -> Result<Hop, FetchError>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(io))
        .await
        .map_err(|e| FetchError::Http(chain(&e)))?;
    let conn = AbortOnDrop(tokio::spawn(async move {
        // Its error, if any, surfaces through `send_request` or the body stream.
        let _ = conn.await;
    }));
    let response = sender
        .send_request(req)
        .await
        .map_err(|e| FetchError::Http(chain(&e)))?;
    Ok(Hop {
        response,
        _sender: sender,
        _conn: conn,
    })
}

fn is_redirect(status: StatusCode) -> bool {
    matches!(status.as_u16(), 301 | 302 | 303 | 307 | 308)
}

/// The next URL from a redirect response, resolved against the current one.
fn redirect_target(current: &Url, response: &Response<Incoming>) -> Result<Url, FetchError> {
    let location = response
        .headers()
        .get(header::LOCATION)
        .ok_or_else(|| FetchError::BadRedirect("the response has no Location header".into()))?;
    // Servers do send raw UTF-8 here; `join` percent-encodes it. The ASCII rule is about
    // what the client wrote, not about where the server sends us.
    let location = std::str::from_utf8(location.as_bytes())
        .map_err(|_| FetchError::BadRedirect("the Location header is not UTF-8".into()))?;
    let mut next = current
        .join(location.trim())
        .map_err(|e| FetchError::BadRedirect(format!("Location {location:?}: {e}")))?;
    next.set_fragment(None);
    check_parsed(&next).map_err(|why| {
        FetchError::BadRedirect(match why {
            UrlProblem::Credentials => format!("Location {location:?} contains credentials"),
            UrlProblem::Other(m) => format!("Location {location:?} {m}"),
        })
    })?;
    Ok(next)
}

/// Read the body of a 200 response, refusing it as soon as it is known to exceed `max`.
async fn read_capped(hop: Hop, max: usize) -> Result<Vec<u8>, FetchError> {
    let too_large = FetchError::TooLarge { limit: max };
    let announced = match hop.response.headers().get(header::CONTENT_LENGTH) {
        // hyper has already rejected malformed or conflicting lengths.
        Some(v) => v.to_str().ok().and_then(|s| s.trim().parse::<u64>().ok()),
        None => None,
    };
    if announced.is_some_and(|n| n > max as u64) {
        return Err(too_large);
    }
    let Hop {
        response,
        _sender,
        _conn,
    } = hop;
    // Reserve what is announced (bounded by the cap), else a modest start.
    let initial = announced.map_or(64 * 1024, |n| n as usize).min(max);
    let mut buf = Vec::with_capacity(initial);
    let mut body = response.into_body();
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| FetchError::Http(chain(&e)))?;
        if let Ok(data) = frame.into_data() {
            if data.len() > max - buf.len() {
                // Returning drops `_conn`, which closes the socket mid-body.
                return Err(too_large);
            }
            buf.extend_from_slice(&data);
        }
    }
    Ok(buf)
}

#[cfg(test)]
mod tests;
