//! Request signing of the imgsearch API, both schemes the official SDKs use (spec 3): V1
//! (`Signature` parameter, HMAC-SHA1 over the canonical query) and V3
//! (`Authorization: ACS3-HMAC-SHA256`, HMAC-SHA256 over a canonical request), with the
//! percent-encoding and timestamp format they share. Pure functions of strings.
//!
//! Used by the server's gateway (`api::auth`, which verifies) and by the API client
//! (`remote::client`, which signs), so both sides compute exactly the same strings.
//! Not here: any check of a request (required parameters, time window, keys, nonces).

use std::time::{SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use hmac::{Hmac, KeyInit, Mac};
use sha1::Sha1;
use sha2::{Digest, Sha256};

/// `SignatureMethod` of V1.
pub const V1_METHOD: &str = "HMAC-SHA1";
/// The algorithm of a V3 `Authorization` header.
pub const V3_ALGORITHM: &str = "ACS3-HMAC-SHA256";

/// Which signing scheme a request used.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SignatureStyle {
    /// `Signature` parameter, HMAC-SHA1 (`aliyun-python-sdk-core` and other classic SDKs).
    V1,
    /// `Authorization: ACS3-HMAC-SHA256` header (Tea SDKs).
    V3,
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
pub fn v1_string_to_sign<'a>(
    method: &str,
    params: impl IntoIterator<Item = (&'a str, &'a str)>,
) -> String {
    let canonical = canonical_query(params.into_iter().filter(|(n, _)| *n != "Signature"));
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

/// Whether `given` (base64, as sent) is the V1 signature of `string_to_sign`; constant time.
pub fn v1_verify(secret: &str, string_to_sign: &str, given: &str) -> bool {
    let given = base64::engine::general_purpose::STANDARD
        .decode(given)
        .unwrap_or_default();
    let mut mac = hmac_sha1(secret);
    mac.update(string_to_sign.as_bytes());
    mac.verify_slice(&given).is_ok()
}

/// V3 canonical request (spec 3.2) over the query parameters, the signed headers (their
/// values from `header_values`) and the body hash. `signed_headers` lower-case, sorted,
/// deduplicated (as the gateway parses them). A header sent more than once contributes its
/// trimmed values sorted and joined with `,`, as the Tea SDK computes it.
pub fn v3_canonical_request<'a>(
    method: &str,
    query: impl IntoIterator<Item = (&'a str, &'a str)>,
    header_values: impl Fn(&str) -> Vec<&'a str>,
    signed_headers: &[String],
    body_sha256_hex: &str,
) -> String {
    let query = canonical_query(query.into_iter());
    let mut out = format!("{method}\n/\n{query}\n");
    for name in signed_headers {
        let mut values: Vec<&str> = header_values(name).into_iter().map(str::trim).collect();
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

/// Whether `given` (hex, as sent) is the V3 signature of `string_to_sign`; constant time.
pub fn v3_verify(secret: &str, string_to_sign: &str, given: &str) -> bool {
    let given = unhex(given).unwrap_or_default();
    let mut mac = hmac_sha256(secret);
    mac.update(string_to_sign.as_bytes());
    mac.verify_slice(&given).is_ok()
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

/// Unix seconds of `t` (negative before 1970).
pub fn unix_seconds(t: SystemTime) -> i64 {
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

/// Lower-case hex of `bytes`.
pub fn hex(bytes: &[u8]) -> String {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for &b in bytes {
        out.push(HEX[usize::from(b >> 4)] as char);
        out.push(HEX[usize::from(b & 0xF)] as char);
    }
    out
}

/// The bytes of a hex string (either case); `None` when it is not hex.
pub fn unhex(s: &str) -> Option<Vec<u8>> {
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
mod tests {
    use super::*;

    #[test]
    fn percent_encoding_follows_rfc_3986() {
        assert_eq!(percent_encode("AZaz09-_.~"), "AZaz09-_.~");
        assert_eq!(percent_encode(" *+/:=&%"), "%20%2A%2B%2F%3A%3D%26%25");
        assert_eq!(percent_encode("风"), "%E9%A3%8E");
    }

    #[test]
    fn timestamps_parse_and_format() {
        assert_eq!(parse_timestamp("1970-01-01T00:00:00Z"), Some(0));
        assert_eq!(parse_timestamp("2000-02-29T12:00:00Z"), Some(951_825_600));
        assert_eq!(
            parse_timestamp("2026-11-24T19:05:22.123Z"),
            parse_timestamp("2026-11-24T19:05:22Z")
        );
        for bad in [
            "2026-02-29T00:00:00Z",
            "2026-11-24T24:00:00Z",
            "2026-11-24T19:05:22.Z",
            "2026-11-24T19:05:22+08:00",
            "",
        ] {
            assert_eq!(parse_timestamp(bad), None, "{bad}");
        }
        for secs in [
            0,
            951_825_600,
            parse_timestamp("2026-11-24T19:05:22Z").unwrap(),
            -86_401,
        ] {
            assert_eq!(parse_timestamp(&format_timestamp(secs)), Some(secs));
        }
        assert_eq!(
            format_timestamp(parse_timestamp("2026-11-24T19:05:22Z").unwrap()),
            "2026-11-24T19:05:22Z"
        );
    }

    #[test]
    fn block_key_hmac_equals_the_general_constructor_for_long_keys() {
        let long = "k".repeat(100);
        let mut a = hmac_sha256(&long);
        let mut b = Hmac::<Sha256>::new_from_slice(long.as_bytes()).unwrap();
        a.update(b"msg");
        b.update(b"msg");
        assert_eq!(a.finalize().into_bytes(), b.finalize().into_bytes());
        let mut a = hmac_sha1(&long);
        let mut b = Hmac::<Sha1>::new_from_slice(format!("{long}&").as_bytes()).unwrap();
        a.update(b"msg");
        b.update(b"msg");
        assert_eq!(a.finalize().into_bytes(), b.finalize().into_bytes());
    }
}
