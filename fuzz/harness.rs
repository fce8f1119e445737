//! What each fuzz target does with one input. Shared by the libFuzzer binaries
//! (`fuzz/fuzz_targets/*.rs`, run by `scripts/fuzz.sh`) and by the integration test
//! `tests/it/fuzz_corpus.rs`, which replays every committed corpus file on each test run, so
//! an input that once crashed stays fixed without a fuzzer on the machine.
//!
//! Each function must never panic on any input; where an input has a known right answer (a
//! correctly signed request, a token this key issued) it asserts that answer too.
//! Not here: the fuzzing engine, corpora (`fuzz/corpus/<target>/`).

use std::time::{Duration, SystemTime};

use imgsearch::api::{authenticate, Headers, KeyStore, NonceCache, Params, RequestParts};
use imgsearch::attributes::{Attributes, Filter};
use imgsearch::remote::client::{form_encode, sign_v1_request, sign_v3_request};
use imgsearch::service::list_token::{ListScope, ListTokenKey};
use imgsearch::signing::{format_timestamp, sha256_hex};
use imgsearch::store::{DataId, Order};
use imgsearch::vision::decode::{self, DecodeLimits};

/// The fuzz targets, by the name of their binary and corpus directory.
pub const TARGETS: [&str; 5] = ["params", "auth", "list_token", "decode", "filter"];

/// Runs the target called `name` on `data`.
pub fn run(name: &str, data: &[u8]) {
    match name {
        "params" => params(data),
        "auth" => auth(data),
        "list_token" => list_token(data),
        "decode" => decode_image(data),
        "filter" => filter(data),
        other => panic!("no fuzz target {other}"),
    }
}

const KEY_ID: &str = "FuzzKeyId";
const SECRET: &str = "fuzz-secret-0123456789";
/// A fixed clock, so a corpus file means the same request on every replay.
const NOW_UNIX: u64 = 1_780_000_000;

/// Splits `data` at the first 0xFF byte (the rest after it), or gives it all and nothing.
fn split_ff(data: &[u8]) -> (&[u8], &[u8]) {
    match data.iter().position(|&b| b == 0xFF) {
        Some(i) => (&data[..i], &data[i + 1..]),
        None => (data, &[]),
    }
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// `name: value` lines into headers (a line without `:` is a name with an empty value).
fn header_lines(bytes: &[u8]) -> Headers {
    let text = text(bytes);
    Headers::new(text.lines().map(|line| match line.split_once(':') {
        Some((n, v)) => (n.trim().to_owned(), v.trim().to_owned()),
        None => (line.trim().to_owned(), String::new()),
    }))
}

/// The parameter decoder: query string, headers and body from one input.
/// `query 0xFF header-lines 0xFF body`.
pub fn params(data: &[u8]) {
    let (query, rest) = split_ff(data);
    let (headers, body) = split_ff(rest);
    let headers = header_lines(headers);
    let query = text(query);
    if let Ok(params) = Params::from_request(&query, &headers, body) {
        // Whatever was decoded re-encodes and decodes to the same pairs.
        let pairs: Vec<(String, String)> = params
            .iter()
            .map(|p| (p.name.clone(), p.value.clone()))
            .collect();
        let borrowed: Vec<(&str, &str)> = pairs
            .iter()
            .map(|(n, v)| (n.as_str(), v.as_str()))
            .collect();
        let again = Params::parse(&form_encode(&borrowed), None);
        let again: Vec<(String, String)> = match again {
            Ok(p) => p
                .iter()
                .map(|p| (p.name.clone(), p.value.clone()))
                .collect(),
            Err(e) => panic!("re-encoded parameters refused: {e}"),
        };
        assert_eq!(again, pairs, "decode(encode(params)) differs");
    }
}

/// The gateway: byte 0 picks raw bytes (0), a correctly signed V1 request (1) or V3 (2) whose
/// business parameters come from the input; byte 1 > 0 flips one byte of the signed form.
pub fn auth(data: &[u8]) {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let keys = match KeyStore::parse_env(&format!("{KEY_ID}:{SECRET}")) {
        Ok(k) => k,
        Err(e) => panic!("fuzz key: {e}"),
    };
    let nonces = NonceCache::new(1000, 1000);
    let now = SystemTime::UNIX_EPOCH + Duration::from_secs(NOW_UNIX);
    match mode % 3 {
        0 => {
            let (query, rest) = split_ff(rest);
            let (headers, body) = split_ff(rest);
            let headers = header_lines(headers);
            let query = text(query);
            if let Ok(params) = Params::from_request(&query, &headers, body) {
                let parts = RequestParts {
                    method: "POST",
                    headers: &headers,
                    params,
                    body,
                };
                // A request nobody signed with SECRET must not pass.
                assert!(authenticate(parts, &keys, &nonces, now).is_err());
            }
        }
        style => {
            let Some((&flip, rest)) = rest.split_first() else {
                return;
            };
            let business = business_params(rest);
            let (headers, body) = signed(style, &business);
            let mut body = body.into_bytes();
            if flip > 0 && !body.is_empty() {
                let at = usize::from(flip) % body.len();
                body[at] ^= 0x01;
            }
            let headers = Headers::new(headers);
            let Ok(params) = Params::from_request("", &headers, &body) else {
                return;
            };
            let parts = RequestParts {
                method: "POST",
                headers: &headers,
                params,
                body: &body,
            };
            let result = authenticate(parts, &keys, &nonces, now);
            if flip == 0 {
                // Untouched, it must pass and carry every business parameter as signed.
                let auth = match result {
                    Ok(a) => a,
                    Err(e) => panic!("a correctly signed request was refused: {e}"),
                };
                for (name, value) in &business {
                    assert_eq!(auth.params.get(name), Some(value.as_str()), "{name}");
                }
            }
        }
    }
}

/// Business parameters from `name=value` segments split at NUL bytes: names are made to
/// stay clear of the common parameters (which the signer sets) and unique.
fn business_params(data: &[u8]) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = Vec::new();
    for (i, segment) in data.split(|&b| b == 0).take(20).enumerate() {
        let segment = text(segment);
        let (name, value) = segment.split_once('=').unwrap_or((&segment, ""));
        out.push((format!("X{i}_{name}"), value.to_owned()));
    }
    out
}

fn nonce_of(params: &[(String, String)]) -> String {
    sha256_hex(format!("{params:?}").as_bytes())
}

/// Signed exactly as the project's client signs (`remote::client`), at the fixed clock.
fn signed(style: u8, business: &[(String, String)]) -> (Vec<(String, String)>, String) {
    let params: Vec<(&str, &str)> = business
        .iter()
        .map(|(n, v)| (n.as_str(), v.as_str()))
        .collect();
    let (timestamp, nonce) = (format_timestamp(NOW_UNIX as i64), nonce_of(business));
    let sign = if style == 1 {
        sign_v1_request
    } else {
        sign_v3_request
    };
    sign(
        "localhost",
        (KEY_ID, SECRET),
        "SearchImage",
        &params,
        (&timestamp, &nonce),
    )
}

/// The ListImages token: `tenant 0xFF db 0xFF prefix 0xFF token`; byte 0 of the tenant part
/// picks the order. Any token must be refused or give an id; a token issued for the same
/// scope must come back as its id, and not for another scope.
pub fn list_token(data: &[u8]) {
    let key = match ListTokenKey::from_secret(b"fuzz list token secret") {
        Ok(k) => k,
        Err(e) => panic!("fuzz key: {e}"),
    };
    let (tenant, rest) = split_ff(data);
    let (db, rest) = split_ff(rest);
    let (prefix, token) = split_ff(rest);
    let order = if tenant.first().is_some_and(|b| b % 2 == 1) {
        Order::Desc
    } else {
        Order::Asc
    };
    let (tenant, db, prefix, token) = (text(tenant), text(db), text(prefix), text(token));
    let scope = ListScope {
        tenant: &tenant,
        db: &db,
        order,
        entity_id_prefix: Some(&prefix),
        filter: None,
    };
    let _ = key.resume(&scope, &token);
    let id_bytes: [u8; 8] = std::array::from_fn(|i| *token.as_bytes().get(i).unwrap_or(&0));
    if let Some(last) = DataId::from_u64(u64::from_be_bytes(id_bytes)) {
        let issued = key.issue(&scope, last);
        assert_eq!(key.resume(&scope, &issued).ok(), Some(last));
        let other_db = format!("{db}x");
        let other = ListScope {
            db: &other_db,
            ..scope
        };
        assert!(key.resume(&other, &issued).is_err());
    }
}

/// The image decoders (format sniffing, JPEG, PNG, EXIF orientation), with limits small
/// enough that a fuzzer's claimed dimensions cannot exhaust memory.
pub fn decode_image(data: &[u8]) {
    let limits = DecodeLimits {
        max_side: 4096,
        max_pixels: 4_000_000,
    };
    if let Ok(image) = decode::decode(data, &limits) {
        let (w, h) = (image.width, image.height);
        assert!(w >= 1 && h >= 1 && w <= limits.max_side && h <= limits.max_side);
        assert!(u64::from(w) * u64::from(h) <= limits.max_pixels);
        assert_eq!(image.pixels.len() as u64, u64::from(w) * u64::from(h) * 3);
    }
}

/// The `Filter` parser: any text parses or fails with a position inside it (plus one, the
/// end); a filter that parses evaluates on images with and without attributes. `!=` and
/// `not in` tests hold for an image without the attribute; their positive forms do not.
fn filter(data: &[u8]) {
    let text = text(data);
    if text.chars().count() > imgsearch::rules::FILTER_MAX_CHARS {
        return;
    }
    match Filter::parse(&text) {
        Ok(f) => {
            let mut full = Attributes::NONE;
            full.ints = [Some(0), Some(-1), Some(i64::from(u32::MAX)), Some(7)];
            full.strs = [
                Some(String::new()),
                Some("red".into()),
                Some("风".into()),
                None,
            ];
            let _ = f.matches(&full);
            assert_eq!(f.matches(&Attributes::NONE), f.matches_unset());
        }
        Err(e) => assert!(e.at >= 1 && e.at <= text.chars().count() + 1, "{e}"),
    }
}
