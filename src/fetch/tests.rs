//! Tests for the fetcher. Every server here listens on 127.0.0.1 and nothing else is ever
//! contacted: the guard tests use addresses that refer to the local host, and the address
//! classifier is tested as a pure function for every other range.

use super::*;
use std::net::{Ipv4Addr, Ipv6Addr};

use super::error::human_size;
use crate::rules::{ADD_IMAGE_MAX_BYTES, IMAGE_URL_MAX_LEN, SEARCH_IMAGE_MAX_BYTES};
use tokio_rustls::rustls;

use std::future::Future;
use std::str::FromStr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::Instant;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::sync::oneshot;

// ---------------------------------------------------------------------------------------
// A tiny HTTP/1.1 server: reads one request head per connection and hands the connection
// to the test's handler, which writes whatever bytes it likes.

struct Conn {
    /// Request target of the request line.
    path: String,
    stream: TcpStream,
}

impl Conn {
    async fn send(&mut self, bytes: &[u8]) {
        let _ = self.stream.write_all(bytes).await;
    }

    async fn respond(&mut self, status: &str, headers: &[(&str, &str)], body: &[u8]) {
        let mut out = format!("HTTP/1.1 {status}\r\nContent-Length: {}\r\n", body.len());
        for (k, v) in headers {
            out.push_str(&format!("{k}: {v}\r\n"));
        }
        out.push_str("Connection: close\r\n\r\n");
        let mut bytes = out.into_bytes();
        bytes.extend_from_slice(body);
        self.send(&bytes).await;
    }

    async fn redirect(&mut self, status: &str, location: &str) {
        self.respond(status, &[("Location", location)], b"").await;
    }
}

struct TestServer {
    addr: SocketAddr,
    /// Connections accepted so far.
    accepted: Arc<AtomicUsize>,
    /// Request heads received, in order.
    requests: Arc<Mutex<Vec<String>>>,
}

impl TestServer {
    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }
    fn port(&self) -> u16 {
        self.addr.port()
    }
    fn accepted(&self) -> usize {
        self.accepted.load(Ordering::SeqCst)
    }
    fn requests(&self) -> Vec<String> {
        self.requests.lock().unwrap().clone()
    }
}

async fn serve<F, Fut>(handler: F) -> TestServer
where
    F: Fn(Conn) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = ()> + Send + 'static,
{
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let accepted = Arc::new(AtomicUsize::new(0));
    let requests = Arc::new(Mutex::new(Vec::new()));
    let handler = Arc::new(handler);
    let (acc, reqs) = (accepted.clone(), requests.clone());
    tokio::spawn(async move {
        loop {
            let Ok((mut stream, _)) = listener.accept().await else {
                return;
            };
            acc.fetch_add(1, Ordering::SeqCst);
            let (handler, reqs) = (handler.clone(), reqs.clone());
            tokio::spawn(async move {
                let mut head = Vec::new();
                let mut byte = [0u8; 1];
                while !head.ends_with(b"\r\n\r\n") {
                    match stream.read(&mut byte).await {
                        Ok(1) => head.push(byte[0]),
                        _ => return,
                    }
                }
                let head = String::from_utf8_lossy(&head).into_owned();
                let path = head.split(' ').nth(1).unwrap_or("").to_string();
                reqs.lock().unwrap().push(head);
                handler(Conn { path, stream }).await;
            });
        }
    });
    TestServer {
        addr,
        accepted,
        requests,
    }
}

fn cfg(allow_private: bool) -> FetchConfig {
    FetchConfig {
        connect_timeout: Duration::from_secs(2),
        total_timeout: Duration::from_secs(5),
        allow_private,
        ..FetchConfig::default()
    }
}

fn fetcher(allow_private: bool) -> ImageFetcher {
    ImageFetcher::new(cfg(allow_private)).unwrap()
}

/// Guard on, but these exact socket addresses count as "public".
fn fetcher_allowing(addrs: &[SocketAddr]) -> ImageFetcher {
    let f = fetcher(false);
    let mut inner = Arc::try_unwrap(f.inner).ok().unwrap();
    inner.test_allowed = addrs.to_vec();
    ImageFetcher {
        inner: Arc::new(inner),
    }
}

/// Some bytes that look like a PNG; nothing here decodes them.
fn image_bytes(n: usize) -> Vec<u8> {
    let mut v = b"\x89PNG\r\n\x1a\n".to_vec();
    v.extend((0..n.saturating_sub(8)).map(|i| (i % 251) as u8));
    v
}

async fn image_server(body: Vec<u8>) -> TestServer {
    let body = Arc::new(body);
    serve(move |mut c| {
        let body = body.clone();
        async move {
            c.respond("200 OK", &[("Content-Type", "image/png")], &body)
                .await
        }
    })
    .await
}

fn assert_loopback_refusal(err: &FetchError, addr: IpAddr) {
    match err {
        FetchError::ForbiddenAddress {
            addr: a,
            class: AddrClass::Loopback,
            ..
        } => assert_eq!(*a, addr),
        other => panic!("expected a loopback refusal of {addr}, got {other:?}"),
    }
    assert_eq!(err.kind(), FetchErrorKind::Forbidden);
}

// ---------------------------------------------------------------------------------------
// Success, request shape.

#[tokio::test]
async fn fetches_an_image_when_private_addresses_are_allowed() {
    let img = image_bytes(5000);
    let srv = image_server(img.clone()).await;
    let got = fetcher(true)
        .fetch(
            &srv.url("/a%20b/img.png?x=1&y=%2F#frag"),
            ADD_IMAGE_MAX_BYTES,
        )
        .await
        .unwrap();
    assert_eq!(got, img);

    let heads = srv.requests();
    assert_eq!(heads.len(), 1);
    let head = heads[0].to_ascii_lowercase();
    assert!(
        head.starts_with("get /a%20b/img.png?x=1&y=%2f http/1.1\r\n"),
        "{head}"
    );
    assert!(head.contains(&format!("\r\nhost: 127.0.0.1:{}\r\n", srv.port())));
    assert!(head.contains("\r\nuser-agent: imgsearch/"));
    assert!(head.contains("\r\naccept-encoding: identity\r\n"));
    assert!(!head.contains("frag"), "the fragment is never sent");
}

#[tokio::test]
async fn a_space_in_the_path_is_encoded_not_refused() {
    // Spec 3.3's vector carries `http://127.0.0.1:9/a b.png`: spaces are ASCII and allowed.
    let srv = image_server(image_bytes(100)).await;
    let got = fetcher(true)
        .fetch(&srv.url("/a b.png"), ADD_IMAGE_MAX_BYTES)
        .await
        .unwrap();
    assert_eq!(got.len(), 100);
    assert_eq!(srv.requests()[0].split(' ').nth(1), Some("/a%20b.png"));
}

#[tokio::test]
async fn urls_with_unusual_ascii_characters_reach_the_server() {
    // Characters the URL parser leaves unencoded must also pass hyper's stricter URI parser.
    let srv = image_server(image_bytes(10)).await;
    let f = fetcher(true);
    for path in [
        "/a|b^c[d]!$&'()*+,;=:@~x.png",
        "/q.png?a={b}|c^d`e\\f\"g'h<i>j",
        "/%zz%20%E5%9B%BE.png",
        "/a%2Fb/../c/./d.png",
        "/a\tb\nc.png",
    ] {
        let got = f.fetch(&srv.url(path), CAP).await;
        assert_eq!(got.map(|b| b.len()).ok(), Some(10), "{path}");
    }
}

#[tokio::test]
async fn an_empty_body_is_returned_as_is() {
    // Judging the content is the decoder's job.
    let srv = image_server(Vec::new()).await;
    let got = fetcher(true)
        .fetch(&srv.url("/"), ADD_IMAGE_MAX_BYTES)
        .await
        .unwrap();
    assert!(got.is_empty());
}

// ---------------------------------------------------------------------------------------
// The SSRF guard on the first hop.

#[tokio::test]
async fn the_guard_refuses_loopback_without_connecting() {
    let srv = image_server(image_bytes(100)).await;
    let err = fetcher(false)
        .fetch(&srv.url("/img.png"), ADD_IMAGE_MAX_BYTES)
        .await
        .unwrap_err();
    assert_loopback_refusal(&err, IpAddr::V4(Ipv4Addr::LOCALHOST));
    let msg = err.to_string();
    assert!(msg.contains("ImageUrl"), "{msg}");
    assert!(msg.contains("127.0.0.1, a loopback address"), "{msg}");
    assert!(msg.contains("--allow-private-urls"), "{msg}");
    assert_eq!(srv.accepted(), 0, "refused before any connection");
}

#[tokio::test]
async fn the_guard_sees_through_odd_ipv4_spellings() {
    let srv = image_server(image_bytes(100)).await;
    let p = srv.port();
    let f = fetcher(false);
    for spelling in [
        "2130706433",
        "0x7f000001",
        "0x7f.1",
        "0x7F.0.0.1",
        "017700000001",
        "0177.0.0.1",
        "127.1",
        "127.0.1",
        "127.0.0.1.",
        "127.000.000.001",
    ] {
        let url = format!("http://{spelling}:{p}/img.png");
        let err = f.fetch(&url, ADD_IMAGE_MAX_BYTES).await.unwrap_err();
        assert_loopback_refusal(&err, IpAddr::V4(Ipv4Addr::LOCALHOST));
    }
    // IPv6 spellings of the loopback, including the IPv4-mapped and -compatible forms.
    for (spelling, addr) in [
        ("[::1]", "::1"),
        ("[0:0:0:0:0:0:0:1]", "::1"),
        ("[::ffff:127.0.0.1]", "::ffff:127.0.0.1"),
        ("[::ffff:7f00:1]", "::ffff:127.0.0.1"),
        ("[::127.0.0.1]", "::127.0.0.1"),
        ("[64:ff9b::7f00:1]", "64:ff9b::7f00:1"),
        ("[2002:7f00:1::1]", "2002:7f00:1::1"),
    ] {
        let url = format!("http://{spelling}:{p}/img.png");
        let err = f.fetch(&url, ADD_IMAGE_MAX_BYTES).await.unwrap_err();
        assert_loopback_refusal(&err, IpAddr::from_str(addr).unwrap());
    }
    // `0` and `0.0.0.0` reach the local host on Linux.
    for spelling in ["0", "0.0.0.0", "0x0"] {
        let url = format!("http://{spelling}:{p}/img.png");
        let err = f.fetch(&url, ADD_IMAGE_MAX_BYTES).await.unwrap_err();
        assert!(
            matches!(
                err,
                FetchError::ForbiddenAddress {
                    class: AddrClass::Unspecified,
                    ..
                }
            ),
            "{spelling}: {err:?}"
        );
    }
    assert_eq!(srv.accepted(), 0);
}

#[tokio::test]
async fn odd_ipv4_spellings_reach_127_0_0_1_when_allowed() {
    // Proves the odd forms are normalised by the URL parser, not passed to a resolver that
    // might read them differently from the guard.
    let srv = image_server(image_bytes(100)).await;
    let p = srv.port();
    for spelling in ["2130706433", "0x7f.1", "017700000001", "127.1"] {
        let url = format!("http://{spelling}:{p}/img.png");
        let got = fetcher(true)
            .fetch(&url, ADD_IMAGE_MAX_BYTES)
            .await
            .unwrap();
        assert_eq!(got.len(), 100);
    }
    assert_eq!(srv.accepted(), 4);
    // The Host header carries the normalised address.
    let head = srv.requests()[0].to_ascii_lowercase();
    assert!(
        head.contains(&format!("\r\nhost: 127.0.0.1:{p}\r\n")),
        "{head}"
    );
}

#[tokio::test]
async fn the_guard_checks_resolved_names() {
    // `localhost` resolves through /etc/hosts, no DNS traffic.
    let srv = image_server(image_bytes(100)).await;
    let url = format!("http://localhost:{}/img.png", srv.port());
    let err = fetcher(false)
        .fetch(&url, ADD_IMAGE_MAX_BYTES)
        .await
        .unwrap_err();
    match &err {
        FetchError::ForbiddenAddress {
            host,
            addr,
            class: AddrClass::Loopback,
        } => {
            assert_eq!(host, "localhost");
            assert!(addr.is_loopback());
        }
        other => panic!("{other:?}"),
    }
    assert!(err
        .to_string()
        .starts_with("ImageUrl host \"localhost\" resolves to "));
    assert_eq!(srv.accepted(), 0);

    // And the same name is fetched when the guard is lifted.
    let got = fetcher(true)
        .fetch(&url, ADD_IMAGE_MAX_BYTES)
        .await
        .unwrap();
    assert_eq!(got.len(), 100);
}

#[tokio::test]
async fn the_test_allow_list_stands_in_for_a_public_host() {
    // Sanity check of the hook the redirect tests rely on: exactly that socket address.
    let srv = image_server(image_bytes(100)).await;
    let f = fetcher_allowing(&[srv.addr]);
    assert_eq!(
        f.fetch(&srv.url("/"), ADD_IMAGE_MAX_BYTES)
            .await
            .unwrap()
            .len(),
        100
    );
    let other_port = SocketAddr::new(srv.addr.ip(), srv.port().wrapping_add(1));
    let err = f
        .fetch(&format!("http://{other_port}/"), ADD_IMAGE_MAX_BYTES)
        .await
        .unwrap_err();
    assert_loopback_refusal(&err, srv.addr.ip());
}

#[test]
fn filter_keeps_only_permitted_candidates() {
    let allowed: SocketAddr = "127.0.0.1:1000".parse().unwrap();
    let refused: SocketAddr = "127.0.0.1:2000".parse().unwrap();
    let refused6: SocketAddr = "[::1]:2000".parse().unwrap();
    let f = fetcher_allowing(&[allowed]);
    // A name answering with both private and "public" addresses is served from the public
    // ones only (a rebinding resolver cannot slip a private one in).
    assert_eq!(
        f.filter("mixed", vec![refused, allowed, refused6]).unwrap(),
        vec![allowed]
    );
    let err = f.filter("private", vec![refused6, refused]).unwrap_err();
    assert_loopback_refusal(&err, refused6.ip());
    assert!(matches!(
        f.filter("none", vec![]).unwrap_err(),
        FetchError::Dns { .. }
    ));
}

// ---------------------------------------------------------------------------------------
// Redirects.

/// `/r/N` redirects to `/r/N-1` (mixing codes and absolute/relative Locations); `/r/0` is
/// the image.
async fn redirect_chain_server() -> TestServer {
    let addr_cell: Arc<Mutex<Option<SocketAddr>>> = Arc::new(Mutex::new(None));
    let cell = addr_cell.clone();
    let srv = serve(move |mut c| {
        let cell = cell.clone();
        async move {
            let n: usize = c
                .path
                .strip_prefix("/r/")
                .and_then(|s| s.parse().ok())
                .unwrap_or(0);
            if n == 0 {
                c.respond("200 OK", &[], &image_bytes(64)).await;
                return;
            }
            let status = [
                "301 Moved Permanently",
                "302 Found",
                "303 See Other",
                "307 Temporary Redirect",
                "308 Permanent Redirect",
            ][n % 5];
            let location = if n.is_multiple_of(2) {
                let addr = cell.lock().unwrap().unwrap();
                format!("http://{addr}/r/{}", n - 1)
            } else {
                format!("{}", n - 1)
            };
            c.redirect(status, &location).await;
        }
    })
    .await;
    *addr_cell.lock().unwrap() = Some(srv.addr);
    srv
}

#[tokio::test]
async fn follows_up_to_three_redirects() {
    let srv = redirect_chain_server().await;
    let got = fetcher(true)
        .fetch(&srv.url("/r/3"), ADD_IMAGE_MAX_BYTES)
        .await
        .unwrap();
    assert_eq!(got.len(), 64);
    let paths: Vec<String> = srv
        .requests()
        .iter()
        .map(|h| h.split(' ').nth(1).unwrap().to_string())
        .collect();
    assert_eq!(paths, ["/r/3", "/r/2", "/r/1", "/r/0"]);
}

#[tokio::test]
async fn a_fourth_redirect_is_an_error() {
    let srv = redirect_chain_server().await;
    let err = fetcher(true)
        .fetch(&srv.url("/r/4"), ADD_IMAGE_MAX_BYTES)
        .await
        .unwrap_err();
    assert!(
        matches!(err, FetchError::TooManyRedirects { max: 3 }),
        "{err:?}"
    );
    assert_eq!(err.kind(), FetchErrorKind::Download);
    assert_eq!(
        srv.accepted(),
        4,
        "the fourth redirect target is not fetched"
    );
}

#[tokio::test]
async fn max_redirects_zero_refuses_any_redirect() {
    let srv = redirect_chain_server().await;
    let f = ImageFetcher::new(FetchConfig {
        max_redirects: 0,
        ..cfg(true)
    })
    .unwrap();
    assert!(f.fetch(&srv.url("/r/0"), 10_000).await.is_ok());
    assert!(matches!(
        f.fetch(&srv.url("/r/1"), 10_000).await.unwrap_err(),
        FetchError::TooManyRedirects { max: 0 }
    ));
}

#[tokio::test]
async fn a_redirect_to_a_loopback_host_is_refused() {
    // `inner` is loopback and must never be reached; `outer` plays a public host.
    let inner = image_server(image_bytes(100)).await;
    let target = Arc::new(Mutex::new(String::new()));
    let t = target.clone();
    let outer = serve(move |mut c| {
        let t = t.clone();
        async move {
            let location = t.lock().unwrap().clone();
            c.redirect("302 Found", &location).await;
        }
    })
    .await;
    let f = fetcher_allowing(&[outer.addr]);

    for (location, host) in [
        (inner.url("/img.png"), "127.0.0.1".to_string()),
        (
            format!("http://localhost:{}/img.png", inner.port()),
            "localhost".into(),
        ),
        (
            format!("http://2130706433:{}/img.png", inner.port()),
            "127.0.0.1".into(),
        ),
        (
            format!("http://[::ffff:127.0.0.1]:{}/", inner.port()),
            "[::ffff:7f00:1]".into(),
        ),
    ] {
        *target.lock().unwrap() = location.clone();
        let err = f
            .fetch(&outer.url("/start"), ADD_IMAGE_MAX_BYTES)
            .await
            .unwrap_err();
        match &err {
            FetchError::ForbiddenAddress { host: h, class, .. } => {
                assert_eq!(h, &host, "{location}");
                assert_eq!(*class, AddrClass::Loopback);
            }
            other => panic!("{location}: {other:?}"),
        }
    }
    assert_eq!(
        inner.accepted(),
        0,
        "the private target was never contacted"
    );
    assert_eq!(outer.accepted(), 4);
}

#[tokio::test]
async fn bad_redirects_are_download_errors() {
    let srv = serve(|mut c| async move {
        match c.path.as_str() {
            "/none" => c.respond("302 Found", &[], b"").await,
            "/ftp" => {
                c.redirect("301 Moved Permanently", "ftp://127.0.0.1/x")
                    .await
            }
            "/file" => c.redirect("302 Found", "file:///etc/passwd").await,
            "/creds" => c.redirect("302 Found", "http://u:p@127.0.0.1/x").await,
            _ => c.respond("404 Not Found", &[], b"").await,
        }
    })
    .await;
    let f = fetcher(true);
    for path in ["/none", "/ftp", "/file", "/creds"] {
        let err = f
            .fetch(&srv.url(path), ADD_IMAGE_MAX_BYTES)
            .await
            .unwrap_err();
        assert!(matches!(err, FetchError::BadRedirect(_)), "{path}: {err:?}");
        assert_eq!(err.kind(), FetchErrorKind::Download);
    }
}

#[tokio::test]
async fn a_utf8_location_is_percent_encoded_and_followed() {
    // The ASCII rule is about the client's ImageUrl; servers do send raw UTF-8 Locations.
    let srv = serve(|mut c| async move {
        if c.path == "/start" {
            c.send(
                "HTTP/1.1 302 Found\r\nLocation: /图.png#x\r\nContent-Length: 0\r\n\r\n".as_bytes(),
            )
            .await;
        } else {
            c.respond("200 OK", &[], b"ok").await;
        }
    })
    .await;
    let got = fetcher(true)
        .fetch(&srv.url("/start"), ADD_IMAGE_MAX_BYTES)
        .await
        .unwrap();
    assert_eq!(got, b"ok");
    assert_eq!(srv.requests()[1].split(' ').nth(1), Some("/%E5%9B%BE.png"));
}

// ---------------------------------------------------------------------------------------
// Size caps.

const CAP: usize = 64 * 1024;

#[tokio::test]
async fn a_body_of_exactly_the_cap_is_accepted() {
    let srv = image_server(image_bytes(CAP)).await;
    let got = fetcher(true).fetch(&srv.url("/"), CAP).await.unwrap();
    assert_eq!(got.len(), CAP);
}

#[tokio::test]
async fn a_content_length_above_the_cap_is_refused_before_reading() {
    // Headers announce CAP+1 bytes, then the server stalls: only refusing on the header can
    // answer quickly.
    let srv = serve(|mut c| async move {
        c.send(format!("HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n", CAP + 1).as_bytes())
            .await;
        tokio::time::sleep(Duration::from_secs(30)).await;
    })
    .await;
    let start = Instant::now();
    let err = fetcher(true).fetch(&srv.url("/"), CAP).await.unwrap_err();
    assert!(
        matches!(err, FetchError::TooLarge { limit: CAP }),
        "{err:?}"
    );
    assert!(start.elapsed() < Duration::from_secs(2));
    assert_eq!(err.kind(), FetchErrorKind::TooLarge);
}

#[tokio::test]
async fn a_finite_body_without_length_over_the_cap_is_refused() {
    // Close-delimited body of CAP+1 bytes.
    let srv = serve(|mut c| async move {
        let mut bytes = b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n".to_vec();
        bytes.extend(image_bytes(CAP + 1));
        c.send(&bytes).await;
    })
    .await;
    let err = fetcher(true).fetch(&srv.url("/"), CAP).await.unwrap_err();
    assert!(matches!(err, FetchError::TooLarge { .. }), "{err:?}");
}

/// Serves an endless body framed by `chunked` (or by connection close), and reports how
/// many body bytes it wrote before the client hung up.
async fn endless_server(chunked: bool) -> (TestServer, oneshot::Receiver<usize>) {
    let (tx, rx) = oneshot::channel();
    let tx = Arc::new(Mutex::new(Some(tx)));
    let srv = serve(move |mut c| {
        let tx = tx.clone();
        async move {
            let head: &[u8] = if chunked {
                b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
            } else {
                b"HTTP/1.1 200 OK\r\n\r\n"
            };
            if c.stream.write_all(head).await.is_err() {
                return;
            }
            let piece = vec![0x55u8; 16 * 1024];
            let mut framed = Vec::new();
            if chunked {
                framed.extend_from_slice(format!("{:x}\r\n", piece.len()).as_bytes());
            }
            framed.extend_from_slice(&piece);
            if chunked {
                framed.extend_from_slice(b"\r\n");
            }
            let mut written = 0usize;
            // Stop on the first write error (the client closed) or, as a backstop so a
            // broken client cannot hang the test, after 256 MB.
            while written < 256 * 1024 * 1024 {
                if c.stream.write_all(&framed).await.is_err() {
                    break;
                }
                written += piece.len();
            }
            if let Some(tx) = tx.lock().unwrap().take() {
                let _ = tx.send(written);
            }
        }
    })
    .await;
    (srv, rx)
}

async fn assert_stops_early(chunked: bool) {
    let (srv, written) = endless_server(chunked).await;
    let start = Instant::now();
    let err = fetcher(true).fetch(&srv.url("/"), CAP).await.unwrap_err();
    assert!(
        matches!(err, FetchError::TooLarge { limit: CAP }),
        "{err:?}"
    );
    assert!(start.elapsed() < Duration::from_secs(3));
    // The server notices the closed connection: its writes fail long before the backstop.
    // What it managed to write is the cap plus whatever the socket buffers absorbed.
    let written = tokio::time::timeout(Duration::from_secs(10), written)
        .await
        .expect("the server should see the connection closed")
        .unwrap();
    eprintln!("cap {CAP}: server wrote {written} body bytes before the client hung up");
    assert!(
        written < 32 * 1024 * 1024,
        "server wrote {written} bytes before the client hung up"
    );
}

#[tokio::test]
async fn a_chunked_body_over_the_cap_stops_the_download() {
    assert_stops_early(true).await;
}

#[tokio::test]
async fn a_close_delimited_body_over_the_cap_stops_the_download() {
    assert_stops_early(false).await;
}

#[test]
fn the_size_message_names_the_limit() {
    let msg = FetchError::TooLarge {
        limit: ADD_IMAGE_MAX_BYTES,
    }
    .to_string();
    assert!(msg.contains("2 MB"), "{msg}");
    assert!(msg.contains("2097152 bytes"), "{msg}");
    assert!(msg.contains("must be smaller"), "{msg}");
    let msg = FetchError::TooLarge {
        limit: SEARCH_IMAGE_MAX_BYTES,
    }
    .to_string();
    assert!(msg.contains("3 MB"), "{msg}");
    assert_eq!(human_size(1000), "1000 bytes");
    assert_eq!(human_size(CAP), "64 KB");
}

// ---------------------------------------------------------------------------------------
// Status, timeouts, network failures.

#[tokio::test]
async fn a_non_200_status_is_a_download_error() {
    let srv = serve(|mut c| async move {
        let status = match c.path.as_str() {
            "/404" => "404 Not Found",
            "/500" => "500 Internal Server Error",
            "/204" => "204 No Content",
            _ => "206 Partial Content",
        };
        c.respond(status, &[], b"").await;
    })
    .await;
    let f = fetcher(true);
    for (path, code) in [("/404", 404), ("/500", 500), ("/204", 204), ("/206", 206)] {
        let err = f.fetch(&srv.url(path), CAP).await.unwrap_err();
        match err {
            FetchError::Status(c) => assert_eq!(c, code),
            other => panic!("{path}: {other:?}"),
        }
        assert_eq!(err.kind(), FetchErrorKind::Download);
    }
    let msg = FetchError::Status(404).to_string();
    assert!(msg.contains("HTTP 404 Not Found"), "{msg}");
}

fn quick(allow_private: bool) -> ImageFetcher {
    ImageFetcher::new(FetchConfig {
        connect_timeout: Duration::from_millis(300),
        total_timeout: Duration::from_millis(300),
        allow_private,
        ..FetchConfig::default()
    })
    .unwrap()
}

#[tokio::test]
async fn a_server_that_never_answers_times_out() {
    let srv = serve(|c| async move {
        tokio::time::sleep(Duration::from_secs(30)).await;
        drop(c);
    })
    .await;
    let start = Instant::now();
    let err = quick(true).fetch(&srv.url("/"), CAP).await.unwrap_err();
    assert!(matches!(err, FetchError::Timeout { .. }), "{err:?}");
    assert_eq!(err.kind(), FetchErrorKind::Download);
    assert!(start.elapsed() < Duration::from_secs(2));
    assert!(err.to_string().contains("timed out"));
}

#[tokio::test]
async fn a_body_that_trickles_past_the_total_timeout_times_out() {
    let srv = serve(|mut c| async move {
        c.send(b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n")
            .await;
        for _ in 0..1000 {
            c.send(b"x").await;
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await;
    let start = Instant::now();
    let err = quick(true).fetch(&srv.url("/"), CAP).await.unwrap_err();
    assert!(matches!(err, FetchError::Timeout { .. }), "{err:?}");
    assert!(start.elapsed() < Duration::from_secs(2));
}

#[tokio::test]
async fn a_refused_connection_is_a_download_error() {
    // Bind, learn the port, close: nothing listens there now.
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    let err = fetcher(true)
        .fetch(&format!("http://{addr}/"), CAP)
        .await
        .unwrap_err();
    assert!(matches!(err, FetchError::Connect { .. }), "{err:?}");
    assert_eq!(err.kind(), FetchErrorKind::Download);
}

#[tokio::test]
async fn a_truncated_body_is_a_download_error() {
    let srv = serve(|mut c| async move {
        c.send(b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\nonly this")
            .await;
    })
    .await;
    let err = fetcher(true).fetch(&srv.url("/"), CAP).await.unwrap_err();
    assert!(matches!(err, FetchError::Http(_)), "{err:?}");
    assert_eq!(err.kind(), FetchErrorKind::Download);
}

#[tokio::test]
async fn garbage_instead_of_http_is_a_download_error() {
    let srv = serve(|mut c| async move {
        c.send(b"SSH-2.0-OpenSSH_9.6\r\n\r\n").await;
    })
    .await;
    let err = fetcher(true).fetch(&srv.url("/"), CAP).await.unwrap_err();
    assert!(matches!(err, FetchError::Http(_)), "{err:?}");
}

// ---------------------------------------------------------------------------------------
// TLS.

#[tokio::test]
async fn https_to_a_plain_http_server_is_a_tls_error() {
    // A plain HTTP server answers the ClientHello with an HTTP error, as real ones do.
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            let mut buf = [0u8; 512];
            let _ = s.read(&mut buf).await;
            let _ = s
                .write_all(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n")
                .await;
        }
    });
    let err = fetcher(true)
        .fetch(&format!("https://{addr}/"), CAP)
        .await
        .unwrap_err();
    assert!(matches!(err, FetchError::Tls { .. }), "{err:?}");
    assert_eq!(err.kind(), FetchErrorKind::Download);
}

/// An HTTPS server with a fresh self-signed certificate for `localhost` and `127.0.0.1`;
/// returns it with a root store that trusts it.
async fn https_server(body: &'static [u8]) -> (SocketAddr, RootCertStore) {
    use tokio_rustls::rustls::pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer};
    let key =
        rcgen::generate_simple_self_signed(vec!["localhost".into(), "127.0.0.1".into()]).unwrap();
    let cert = key.cert.der().clone();
    let pkcs8 = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.signing_key.serialize_der()));
    let server_cfg = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_no_client_auth()
    .with_single_cert(vec![cert.clone()], pkcs8)
    .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(server_cfg));
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                return;
            };
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let Ok(mut tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let mut head = Vec::new();
                let mut byte = [0u8; 1];
                while !head.ends_with(b"\r\n\r\n") {
                    match tls.read(&mut byte).await {
                        Ok(1) => head.push(byte[0]),
                        _ => return,
                    }
                }
                let mut out = format!("HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n", body.len())
                    .into_bytes();
                out.extend_from_slice(body);
                let _ = tls.write_all(&out).await;
                let _ = tls.shutdown().await;
            });
        }
    });
    let mut roots = RootCertStore::empty();
    roots.add(cert).unwrap();
    (addr, roots)
}

#[tokio::test]
async fn https_works_with_a_trusted_certificate_by_name_and_by_ip() {
    let (addr, roots) = https_server(b"secure image").await;
    let f = ImageFetcher::with_roots(cfg(true), roots).unwrap();
    for url in [
        format!("https://localhost:{}/img.png", addr.port()),
        format!("https://127.0.0.1:{}/img.png", addr.port()),
    ] {
        assert_eq!(f.fetch(&url, CAP).await.unwrap(), b"secure image", "{url}");
    }
}

#[tokio::test]
async fn https_refuses_an_untrusted_certificate() {
    let (addr, _) = https_server(b"x").await;
    // Production roots: the self-signed certificate is not trusted.
    let err = fetcher(true)
        .fetch(&format!("https://localhost:{}/", addr.port()), CAP)
        .await
        .unwrap_err();
    match &err {
        FetchError::Tls { host, reason } => {
            assert_eq!(host, "localhost");
            assert!(reason.to_lowercase().contains("certificate"), "{reason}");
        }
        other => panic!("{other:?}"),
    }
}

// ---------------------------------------------------------------------------------------
// URL rules.

#[tokio::test]
async fn non_ascii_urls_are_refused_before_parsing() {
    let f = fetcher(true);
    for (url, ch) in [
        ("http://127.0.0.1/图片.jpg", '图'),
        ("http://例子.测试/a.jpg", '例'),
        ("http://127.0.0.1/a.jpg?q=é", 'é'),
        ("http://127.0.0.1：80/a.jpg", '：'),
        ("http://127.0.0.1/a\u{a0}b.jpg", '\u{a0}'),
    ] {
        let err = f.fetch(url, CAP).await.unwrap_err();
        match &err {
            FetchError::NonAscii { ch: c, .. } => assert_eq!(*c, ch, "{url}"),
            other => panic!("{url}: {other:?}"),
        }
        assert_eq!(err.kind(), FetchErrorKind::InvalidUrl);
        let msg = err.to_string();
        assert!(
            msg.starts_with("ImageUrl must not contain non-ASCII"),
            "{msg}"
        );
    }
    // Percent-encoded UTF-8 is ASCII and fine.
    assert!(check_image_url("http://127.0.0.1/%E5%9B%BE.jpg").is_ok());
}

#[test]
fn only_http_and_https_urls_with_a_host_are_accepted() {
    for bad in [
        "",
        "   ",
        "ftp://127.0.0.1/x.jpg",
        "file:///etc/passwd",
        "gopher://127.0.0.1:70/",
        "javascript:alert(1)",
        "data:image/png;base64,AAAA",
        "not a url",
        "/relative/path.jpg",
        "//127.0.0.1/x.jpg",
        "http://",
        "http://[::1/x.jpg",
        "http://127.0.0.1:99999/x.jpg",
    ] {
        let err = check_image_url(bad).unwrap_err();
        assert!(matches!(err, FetchError::InvalidUrl(_)), "{bad:?}: {err:?}");
        assert_eq!(err.kind(), FetchErrorKind::InvalidUrl);
        assert!(err.to_string().starts_with("ImageUrl "), "{err}");
    }
    let long = format!("http://127.0.0.1/{}", "a".repeat(IMAGE_URL_MAX_LEN));
    assert!(matches!(
        check_image_url(&long).unwrap_err(),
        FetchError::InvalidUrl(_)
    ));
    for good in [
        "http://127.0.0.1/x.jpg",
        "HTTPS://Example.COM/x.jpg",
        "https://example.com:8443/a/b.png?x=1",
        "http://[2001:4860::8888]/x.png",
    ] {
        assert!(check_image_url(good).is_ok(), "{good}");
    }
    assert!(check_image_url("ftp://h/x")
        .unwrap_err()
        .to_string()
        .contains("http or https scheme, not \"ftp\""));
}

#[test]
fn credentials_in_the_url_are_refused() {
    for bad in [
        "http://user:pass@127.0.0.1/x.jpg",
        "http://user@127.0.0.1/x.jpg",
        "https://:secret@example.com/x.jpg",
        "http://a%40b:c@example.com/",
    ] {
        let err = check_image_url(bad).unwrap_err();
        assert!(matches!(err, FetchError::Credentials), "{bad}: {err:?}");
        assert_eq!(err.kind(), FetchErrorKind::InvalidUrl);
    }
}

#[test]
fn the_url_parser_normalises_odd_ipv4_forms() {
    // The guard relies on this: every spelling becomes a literal address, never a name that
    // a resolver would read in its own way.
    for spelling in [
        "2130706433",
        "0x7f000001",
        "0x7f.1",
        "017700000001",
        "0177.0.0.01",
        "127.1",
        "127.0.0.1.",
    ] {
        let url = parse_image_url(&format!("http://{spelling}/")).unwrap();
        assert_eq!(
            url.host(),
            Some(Host::Ipv4(Ipv4Addr::LOCALHOST)),
            "{spelling}"
        );
    }
    let url = parse_image_url("http://[::ffff:127.0.0.1]/").unwrap();
    assert_eq!(
        url.host(),
        Some(Host::Ipv6(Ipv6Addr::from_str("::ffff:7f00:1").unwrap()))
    );
}

// ---------------------------------------------------------------------------------------
// The address classifier.

#[test]
fn classifier_covers_every_special_ipv4_range() {
    use AddrClass::*;
    let cases: &[(&str, Option<AddrClass>)] = &[
        ("0.0.0.0", Some(Unspecified)),
        ("0.1.2.3", Some(ThisNetwork)),
        ("0.255.255.255", Some(ThisNetwork)),
        ("127.0.0.1", Some(Loopback)),
        ("127.255.255.254", Some(Loopback)),
        ("10.0.0.1", Some(Private)),
        ("10.255.255.255", Some(Private)),
        ("172.16.0.1", Some(Private)),
        ("172.31.255.255", Some(Private)),
        ("192.168.1.1", Some(Private)),
        ("100.64.0.1", Some(SharedAddressSpace)),
        ("100.127.255.255", Some(SharedAddressSpace)),
        ("169.254.169.254", Some(LinkLocal)),
        ("224.0.0.1", Some(Multicast)),
        ("239.255.255.250", Some(Multicast)),
        ("255.255.255.255", Some(Broadcast)),
        ("240.0.0.1", Some(Reserved)),
        ("255.255.255.254", Some(Reserved)),
        ("192.0.0.8", Some(Reserved)),
        ("192.88.99.1", Some(Reserved)),
        ("192.0.2.1", Some(Documentation)),
        ("198.51.100.7", Some(Documentation)),
        ("203.0.113.200", Some(Documentation)),
        ("198.18.0.1", Some(Benchmarking)),
        ("198.19.255.255", Some(Benchmarking)),
        // Public, including the neighbours of every range above.
        ("1.1.1.1", None),
        ("8.8.8.8", None),
        ("1.0.0.0", None),
        ("9.255.255.255", None),
        ("11.0.0.0", None),
        ("100.63.255.255", None),
        ("100.128.0.0", None),
        ("126.255.255.255", None),
        ("128.0.0.0", None),
        ("169.253.255.255", None),
        ("169.255.0.0", None),
        ("172.15.255.255", None),
        ("172.32.0.0", None),
        ("192.0.1.255", None),
        ("192.0.3.0", None),
        ("192.167.255.255", None),
        ("192.169.0.0", None),
        ("198.17.255.255", None),
        ("198.20.0.0", None),
        ("198.51.99.255", None),
        ("203.0.112.255", None),
        ("223.255.255.255", None),
    ];
    for (ip, want) in cases {
        let ip = IpAddr::from_str(ip).unwrap();
        assert_eq!(classify_ip(ip), *want, "{ip}");
    }
}

#[test]
fn classifier_covers_ipv6_and_ipv4_embeddings() {
    use AddrClass::*;
    let cases: &[(&str, Option<AddrClass>)] = &[
        ("::", Some(Unspecified)),
        ("::1", Some(Loopback)),
        // IPv4-mapped: judged by the embedded address.
        ("::ffff:127.0.0.1", Some(Loopback)),
        ("::ffff:10.1.2.3", Some(Private)),
        ("::ffff:169.254.169.254", Some(LinkLocal)),
        ("::ffff:0.0.0.0", Some(Unspecified)),
        ("::ffff:8.8.8.8", None),
        // IPv4-compatible (deprecated): always refused, named after the embedded address.
        ("::127.0.0.1", Some(Loopback)),
        ("::8.8.8.8", Some(Reserved)),
        // IPv4-translated (RFC 2765).
        ("::ffff:0:127.0.0.1", Some(Reserved)),
        // NAT64 well-known prefix.
        ("64:ff9b::127.0.0.1", Some(Loopback)),
        ("64:ff9b::10.0.0.1", Some(Private)),
        ("64:ff9b::192.168.0.1", Some(Private)),
        ("64:ff9b::169.254.169.254", Some(LinkLocal)),
        ("64:ff9b::8.8.8.8", None),
        // Local-use NAT64 (RFC 8215).
        ("64:ff9b:1::8.8.8.8", Some(Reserved)),
        // 6to4: bits 16..48.
        ("2002:7f00:0001::1", Some(Loopback)),
        ("2002:0a00:0001::1", Some(Private)),
        ("2002:c0a8:0101::1", Some(Private)),
        ("2002:a9fe:a9fe::1", Some(LinkLocal)),
        ("2002:6440:0001::1", Some(SharedAddressSpace)),
        ("2002:0808:0808::1", None),
        ("fc00::1", Some(UniqueLocal)),
        ("fd12:3456:789a::1", Some(UniqueLocal)),
        ("fe80::1", Some(LinkLocal)),
        ("febf:ffff::1", Some(LinkLocal)),
        ("fec0::1", Some(Reserved)),
        ("ff02::1", Some(Multicast)),
        ("ff0e::1", Some(Multicast)),
        ("2001:db8::1", Some(Documentation)),
        ("3fff::1", Some(Documentation)),
        ("3fff:fff::1", Some(Documentation)),
        ("100::1", Some(Reserved)),
        ("2001::1", Some(Reserved)),     // Teredo
        ("2001:2::1", Some(Reserved)),   // benchmarking
        ("2001:1ff::1", Some(Reserved)), // end of 2001::/23
        ("5f00::1", Some(Reserved)),     // SRv6 SIDs, outside 2000::/3
        ("4000::1", Some(Reserved)),
        ("1::1", Some(Reserved)),
        // Public.
        ("2001:200::1", None),
        ("2001:4860:4860::8888", None),
        ("2606:4700:4700::1111", None),
        ("2a00:1450:4001::1", None),
        ("3ffe::1", None),
        ("3fff:1000::1", None),
    ];
    for (ip, want) in cases {
        let ip = IpAddr::from_str(ip).unwrap();
        assert_eq!(classify_ip(ip), *want, "{ip}");
    }
}

#[test]
fn class_descriptions_read_inside_a_sentence() {
    let err = FetchError::ForbiddenAddress {
        host: "metadata.internal".into(),
        addr: IpAddr::from_str("169.254.169.254").unwrap(),
        class: AddrClass::LinkLocal,
    };
    assert_eq!(
        err.to_string(),
        "ImageUrl host \"metadata.internal\" resolves to 169.254.169.254, a link-local address; \
         the server refuses private and local addresses (start it with --allow-private-urls to \
         permit them)"
    );
}

// ---------------------------------------------------------------------------------------
// Configuration and the code table.

#[test]
fn bad_configurations_are_refused() {
    for bad in [
        FetchConfig {
            connect_timeout: Duration::ZERO,
            ..FetchConfig::default()
        },
        FetchConfig {
            total_timeout: Duration::ZERO,
            ..FetchConfig::default()
        },
        FetchConfig {
            user_agent: "bad\r\nX-Injected: 1".into(),
            ..FetchConfig::default()
        },
    ] {
        let err = ImageFetcher::new(bad).unwrap_err();
        assert!(matches!(err, FetchError::Config(_)), "{err:?}");
        assert_eq!(err.kind(), FetchErrorKind::Config);
    }
    let d = FetchConfig::default();
    assert_eq!(d.connect_timeout, Duration::from_secs(5));
    assert_eq!(d.total_timeout, Duration::from_secs(15));
    assert_eq!(d.max_redirects, 3);
    assert!(!d.allow_private);
}

#[test]
fn every_error_has_its_kind() {
    let rows: Vec<(FetchError, FetchErrorKind)> = vec![
        (
            FetchError::InvalidUrl("x".into()),
            FetchErrorKind::InvalidUrl,
        ),
        (
            FetchError::NonAscii { ch: '图', at: 0 },
            FetchErrorKind::InvalidUrl,
        ),
        (FetchError::Credentials, FetchErrorKind::InvalidUrl),
        (
            FetchError::ForbiddenAddress {
                host: "h".into(),
                addr: IpAddr::V4(Ipv4Addr::LOCALHOST),
                class: AddrClass::Loopback,
            },
            FetchErrorKind::Forbidden,
        ),
        (FetchError::TooLarge { limit: 1 }, FetchErrorKind::TooLarge),
        (
            FetchError::Timeout {
                what: "x",
                after: Duration::from_secs(1),
            },
            FetchErrorKind::Download,
        ),
        (FetchError::Status(404), FetchErrorKind::Download),
        (
            FetchError::TooManyRedirects { max: 3 },
            FetchErrorKind::Download,
        ),
        (
            FetchError::BadRedirect("x".into()),
            FetchErrorKind::Download,
        ),
        (
            FetchError::Dns {
                host: "h".into(),
                reason: "r".into(),
            },
            FetchErrorKind::Download,
        ),
        (
            FetchError::Connect {
                addr: "127.0.0.1:1".parse().unwrap(),
                reason: "r".into(),
            },
            FetchErrorKind::Download,
        ),
        (
            FetchError::Tls {
                host: "h".into(),
                reason: "r".into(),
            },
            FetchErrorKind::Download,
        ),
        (FetchError::Http("x".into()), FetchErrorKind::Download),
        (FetchError::Config("x".into()), FetchErrorKind::Config),
    ];
    for (err, kind) in rows {
        assert_eq!(err.kind(), kind, "{err:?}");
        assert!(err.to_string().len() > 3);
    }
}

#[test]
fn the_fetcher_is_cheap_to_share() {
    fn assert_send_sync_clone<T: Send + Sync + Clone>() {}
    assert_send_sync_clone::<ImageFetcher>();
    let f = fetcher(false);
    let g = f.clone();
    assert!(Arc::ptr_eq(&f.inner, &g.inner));
}
