//! Downloading the image behind an `ImageUrl` (AddImage, SearchImage).
//!
//! [`ImageFetcher::fetch`] takes the URL exactly as the client sent it and returns the body
//! bytes, or a [`FetchError`] whose [`kind`](FetchError::kind) says what went wrong (the
//! edge turns kinds into API codes). It enforces the rules that belong to *getting* the
//! bytes:
//!
//! * the URL: `http`/`https` only, ASCII only (spec: non-ASCII characters such as Chinese are
//!   refused; checked on the raw string before parsing would percent-encode them), no
//!   `user:pass@`;
//! * the size cap, given per call (`rules::ADD_IMAGE_MAX_BYTES`, `SEARCH_IMAGE_MAX_BYTES`):
//!   a larger `Content-Length` is refused before the body is read, and a body without one
//!   stops being read as soon as it passes the cap;
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
//! Files: `url.rs` (the URL rules), `guard.rs` (the address classifier), `error.rs`
//! ([`FetchError`] and its [`FetchErrorKind`]); the TLS configuration and the HTTP/1.1
//! exchange are `crate::http_client`'s, shared with the API client.
//!
//! Not here: content sniffing, format and resolution checks (`vision::decode::probe`), and
//! mapping errors to the wire (the API edge maps [`FetchErrorKind`] to codes). Connections
//! are not pooled: each hop is one connection, closed when the hop ends.

mod error;
mod guard;
mod url;

use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use ::url::{Host, Position, Url};
use http_body_util::{BodyExt, Empty};
use hyper::body::{Bytes, Incoming};
use hyper::header::{self, HeaderValue};
use hyper::{Request, Response, StatusCode};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio_rustls::rustls::pki_types::ServerName;
use tokio_rustls::rustls::RootCertStore;
use tokio_rustls::TlsConnector;

pub use error::{FetchError, FetchErrorKind};
pub use guard::{classify_ip, AddrClass};
pub use url::check_image_url;

use crate::http_client::{self, Connection};
use error::chain;
use url::{check_parsed, parse_image_url, UrlProblem};

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

/// One request/response on one connection; the connection lives as long as this.
struct Hop {
    response: Response<Incoming>,
    _conn: Connection<Empty<Bytes>>,
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
    /// Validate the configuration and build the TLS client (`http_client::tls_connector`:
    /// Mozilla roots, HTTP/1.1 only).
    pub fn new(cfg: FetchConfig) -> Result<Self, FetchError> {
        Self::with_roots(cfg, http_client::webpki_roots())
    }

    fn with_roots(cfg: FetchConfig, roots: RootCertStore) -> Result<Self, FetchError> {
        if cfg.connect_timeout.is_zero() || cfg.total_timeout.is_zero() {
            return Err(FetchError::Config(
                "timeouts must be greater than zero".into(),
            ));
        }
        let user_agent = HeaderValue::from_str(&cfg.user_agent)
            .map_err(|e| FetchError::Config(format!("user agent: {e}")))?;
        let tls = http_client::tls_connector(roots)
            .map_err(|e| FetchError::Config(format!("TLS: {e}")))?;
        Ok(Self {
            inner: Arc::new(Inner {
                cfg,
                user_agent,
                tls,
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
    /// (`rules::ADD_IMAGE_MAX_BYTES` or `rules::SEARCH_IMAGE_MAX_BYTES`). The bytes are not
    /// looked at.
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

/// HTTP/1.1 exchange over an established stream: the response head, connection kept.
async fn exchange<S>(io: S, req: Request<Empty<Bytes>>) -> Result<Hop, FetchError>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (response, conn) = http_client::exchange(io, req)
        .await
        .map_err(|e| FetchError::Http(chain(&e)))?;
    Ok(Hop {
        response,
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
    let Hop { response, _conn } = hop;
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
