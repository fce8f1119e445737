//! The server under clients that misbehave at the connection level: slow or missing
//! headers, idle kept-alive connections, a stalled body, more connections than the cap,
//! and SIGTERM while a client stalls. Each limit is set small by its flag so the test runs
//! in seconds; the defaults are documented in the README.

use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use imgsearch::rules::API_VERSION;
use imgsearch::signing::{
    format_timestamp, percent_encode, unix_seconds, v1_signature, v1_string_to_sign,
};

use crate::common::{start_server, start_server_in, TEST_KEY};

fn connect(addr: &str) -> TcpStream {
    let s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s
}

/// Reads until the server closes the connection or `within` passes; returns what came and
/// whether it was closed.
fn read_until_closed(s: &mut TcpStream, within: Duration) -> (String, bool) {
    let deadline = Instant::now() + within;
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return (String::from_utf8_lossy(&got).into(), false);
        }
        s.set_read_timeout(Some(left)).unwrap();
        match s.read(&mut buf) {
            Ok(0) => return (String::from_utf8_lossy(&got).into(), true),
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                return (String::from_utf8_lossy(&got).into(), false)
            }
            Err(_) => return (String::from_utf8_lossy(&got).into(), true), // reset
        }
    }
}

const HEALTHZ: &[u8] = b"GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n";

#[test]
fn slow_headers_and_idle_keep_alive_connections_are_closed() {
    let server = start_server(&["--header-timeout-secs", "1"], None);
    // Headers that never finish.
    let mut slow = connect(&server.addr);
    slow.write_all(b"POST / HTTP/1.1\r\nHost: t\r\n").unwrap();
    // A kept-alive connection after one answered request.
    let mut idle = connect(&server.addr);
    idle.write_all(HEALTHZ).unwrap();
    let mut first = [0u8; 512];
    let n = idle.read(&mut first).unwrap();
    assert!(String::from_utf8_lossy(&first[..n]).starts_with("HTTP/1.1 200"));
    let started = Instant::now();
    let (_, slow_closed) = read_until_closed(&mut slow, Duration::from_secs(8));
    assert!(slow_closed, "slow headers still open after 8 s");
    let (_, idle_closed) = read_until_closed(&mut idle, Duration::from_secs(8));
    assert!(
        idle_closed,
        "idle keep-alive connection still open after 8 s"
    );
    assert!(started.elapsed() < Duration::from_secs(8));
    // The server still answers.
    let mut fresh = connect(&server.addr);
    fresh.write_all(HEALTHZ).unwrap();
    let n = fresh.read(&mut first).unwrap();
    assert!(String::from_utf8_lossy(&first[..n]).starts_with("HTTP/1.1 200"));
}

#[test]
fn a_stalled_body_is_answered_408_and_closed() {
    let server = start_server(&["--body-timeout-secs", "1"], None);
    let mut s = connect(&server.addr);
    s.write_all(
        b"POST / HTTP/1.1\r\nHost: t\r\nContent-Type: application/x-www-form-urlencoded\r\n\
          Content-Length: 100000\r\n\r\nAction=AddImage&",
    )
    .unwrap();
    let (answer, closed) = read_until_closed(&mut s, Duration::from_secs(10));
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(answer.contains("RequestTimeout"), "{answer}");
    assert!(closed, "connection kept open after a 408");
}

#[test]
fn connections_beyond_the_cap_wait_for_a_free_slot() {
    let server = start_server(&["--max-connections", "3"], None);
    let held: Vec<TcpStream> = (0..3).map(|_| connect(&server.addr)).collect();
    std::thread::sleep(Duration::from_millis(300)); // let the server accept them
    let mut waiting = connect(&server.addr); // queued in the listen backlog
    waiting.write_all(HEALTHZ).unwrap();
    let (early, _) = read_until_closed(&mut waiting, Duration::from_millis(1500));
    assert!(early.is_empty(), "answered beyond the cap: {early}");
    drop(held);
    let mut buf = [0u8; 512];
    waiting
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let n = waiting.read(&mut buf).unwrap();
    assert!(String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 200"));
}

#[test]
fn sigterm_with_a_stalled_client_exits_within_the_grace_period() {
    let mut server = start_server(
        &["--shutdown-grace-secs", "1", "--body-timeout-secs", "300"],
        None,
    );
    // A request in flight whose body never completes.
    let mut stalled = connect(&server.addr);
    stalled
        .write_all(b"POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 1000\r\n\r\nAction=")
        .unwrap();
    std::thread::sleep(Duration::from_millis(300));
    let started = Instant::now();
    server.stop(); // SIGTERM; asserts a successful exit
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "{:?}",
        started.elapsed()
    );
    // The stderr reader may lag the exit by a moment.
    let wrote = (0..40).any(|_| {
        std::thread::sleep(Duration::from_millis(50));
        server
            .log
            .lock()
            .unwrap()
            .contains("writing index snapshots")
    });
    assert!(wrote, "{}", server.log.lock().unwrap());
    drop(stalled);
}

/// A V1-signed `ListImageDbs` GET with a fixed nonce, as raw HTTP/1.1 bytes.
fn signed_list_request(nonce: &str) -> Vec<u8> {
    let timestamp = format_timestamp(unix_seconds(std::time::SystemTime::now()));
    let mut pairs = vec![
        ("Action", "ListImageDbs"),
        ("Version", API_VERSION),
        ("AccessKeyId", TEST_KEY.0),
        ("SignatureMethod", "HMAC-SHA1"),
        ("SignatureVersion", "1.0"),
        ("SignatureNonce", nonce),
        ("Timestamp", timestamp.as_str()),
        ("Format", "JSON"),
    ];
    let signature = v1_signature(TEST_KEY.1, &v1_string_to_sign("GET", pairs.iter().copied()));
    pairs.push(("Signature", &signature));
    let query: Vec<String> = pairs
        .iter()
        .map(|(k, v)| format!("{}={}", percent_encode(k), percent_encode(v)))
        .collect();
    format!(
        "GET /?{} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n",
        query.join("&")
    )
    .into_bytes()
}

fn send(addr: &str, request: &[u8]) -> String {
    let mut s = connect(addr);
    s.write_all(request).unwrap();
    read_until_closed(&mut s, Duration::from_secs(10)).0
}

#[test]
fn a_request_cannot_be_replayed_after_a_clean_restart() {
    let data = tempfile::tempdir().unwrap();
    let request = signed_list_request("replay-me-0123456789abcdef");
    let mut first = start_server_in(data.path(), &[], None);
    let answer = send(&first.addr, &request);
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    let replay = send(&first.addr, &request);
    assert!(replay.contains("SignatureNonceUsed"), "{replay}");
    first.stop();
    let second = start_server_in(data.path(), &[], None);
    let replay = send(&second.addr, &request);
    assert!(
        replay.contains("SignatureNonceUsed"),
        "replayed after a restart: {replay}"
    );
}

#[test]
fn a_saturated_server_refuses_an_upload_before_reading_its_body() {
    let server = start_server(&["--max-image-requests", "1"], None);
    let upload_headers =
        b"POST / HTTP/1.1\r\nHost: t\r\nContent-Type: application/x-www-form-urlencoded\r\n\
          Content-Length: 3000000\r\n\r\n";
    // The one slot, held by an upload whose body is still coming.
    let mut first = connect(&server.addr);
    first.write_all(upload_headers).unwrap();
    first.write_all(b"Action=AddImage&ImageContent=").unwrap();
    std::thread::sleep(Duration::from_millis(300));
    // The next upload is refused from its headers alone, at once.
    let started = Instant::now();
    let mut second = connect(&server.addr);
    second.write_all(upload_headers).unwrap();
    let (answer, _) = read_until_closed(&mut second, Duration::from_secs(5));
    assert!(answer.starts_with("HTTP/1.1 503"), "{answer}");
    assert!(answer.contains("ServiceUnavailable"), "{answer}");
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
    // Small requests are not image work and still go through.
    let mut health = connect(&server.addr);
    health.write_all(HEALTHZ).unwrap();
    let mut buf = [0u8; 256];
    let n = health.read(&mut buf).unwrap();
    assert!(String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 200"));
    drop(first);
}
