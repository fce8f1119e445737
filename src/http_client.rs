//! HTTP/1.1 client plumbing shared by the image fetcher (`fetch`) and the API client
//! (`remote::client`): one rustls configuration (ring provider, Mozilla roots from
//! `webpki-roots`, ALPN `http/1.1`) and one request/response exchange over a stream the
//! caller connected.
//!
//! Not here: name resolution and the choice of address (the fetcher's SSRF guard owns that),
//! redirects, retries, body limits. One connection per exchange, no pooling: both callers
//! make few, heavy requests.

use std::sync::Arc;

use hyper::body::{Body, Incoming};
use hyper::client::conn::http1::SendRequest;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::task::JoinHandle;
use tokio_rustls::rustls::{self, ClientConfig, RootCertStore};
use tokio_rustls::TlsConnector;

/// Mozilla's root certificates (the `webpki-roots` crate): what both clients trust.
pub fn webpki_roots() -> RootCertStore {
    let mut roots = RootCertStore::empty();
    roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    roots
}

/// A TLS connector trusting `roots`, with the ring provider and safe default protocol
/// versions, announcing HTTP/1.1 only (so that servers do not pick h2).
pub fn tls_connector(roots: RootCertStore) -> Result<TlsConnector, rustls::Error> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(TlsConnector::from(Arc::new(config)))
}

/// Keeps one connection open while its response body is read. Dropping it aborts the task
/// driving the connection, which closes the socket: leaving early (size cap, timeout,
/// error) must not leave a download running behind it.
pub struct Connection<B> {
    /// Kept so hyper does not treat the connection as abandoned mid-body.
    _sender: SendRequest<B>,
    driver: JoinHandle<()>,
}

impl<B> Drop for Connection<B> {
    fn drop(&mut self) {
        self.driver.abort();
    }
}

/// HTTP/1.1 handshake over an established stream (TCP or TLS), send `req`, wait for the
/// response head. The body is read from the response while the [`Connection`] lives.
pub async fn exchange<S, B>(
    io: S,
    req: Request<B>,
) -> Result<(Response<Incoming>, Connection<B>), hyper::Error>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    B: Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(io)).await?;
    let driver = tokio::spawn(async move {
        // Its error, if any, surfaces through `send_request` or the body stream.
        let _ = conn.await;
    });
    match sender.send_request(req).await {
        Ok(response) => Ok((
            response,
            Connection {
                _sender: sender,
                driver,
            },
        )),
        Err(e) => {
            driver.abort();
            Err(e)
        }
    }
}
