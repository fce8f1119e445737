//! Image links (ours): SearchImage matches that were uploaded as bytes (`ImageContent`) have
//! no `ImageUrl` of their own, so a shop front-end would have nothing to show. They get a
//! link to the stored thumbnail instead, served by this server at `/images/{token}.jpg`,
//! signed and expiring (as the hosted service's links, 30 minutes by default).
//!
//! The token is base64url(`data id` u64 BE | `expires` i64 BE | tag), the tag the first 16
//! bytes of HMAC-SHA256 under the installation's secret (`list-token.key`) with a domain
//! string of its own. A link is a capability for one thumbnail until it expires: whoever
//! holds it may fetch that picture, nothing else (DataIds are unique in the store, so it
//! needs no tenant or database). Deleting the image ends it too.
//!
//! Not here: the route (`api::server`), the thumbnail lookup (`service`).

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use hmac::{Hmac, KeyInit, Mac};
use serde_json::Value;
use sha2::Sha256;

use crate::store::DataId;

const DOMAIN: &[u8] = b"imgsearch image link\0";
const TAG_LEN: usize = 16;
const TOKEN_LEN: usize = 8 + 8 + TAG_LEN;
/// The URL path prefix of image links.
pub const LINK_PATH: &str = "/images/";

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum LinkError {
    #[error("this image link is not one this server issued, or it was altered")]
    Invalid,
    #[error("this image link has expired; search again for a fresh one")]
    Expired,
}

/// Issues and checks image links.
#[derive(Clone)]
pub struct ImageLinks {
    mac: Hmac<Sha256>,
    /// How long a link works.
    ttl_secs: i64,
    /// `https://images.example.com` when set (behind a proxy); else links use the request's
    /// own Host, over http.
    public_url: Option<String>,
}

impl ImageLinks {
    pub fn new(secret: &[u8], ttl_secs: u64, public_url: Option<String>) -> Option<Self> {
        let mac = <Hmac<Sha256> as KeyInit>::new_from_slice(secret).ok()?;
        Some(ImageLinks {
            mac,
            ttl_secs: i64::try_from(ttl_secs).unwrap_or(i64::MAX),
            public_url: public_url.map(|u| u.trim_end_matches('/').to_string()),
        })
    }

    fn tag(&self, id: u64, expires: i64) -> [u8; TAG_LEN] {
        let mut mac = self.mac.clone();
        mac.update(DOMAIN);
        mac.update(&id.to_be_bytes());
        mac.update(&expires.to_be_bytes());
        let full = mac.finalize().into_bytes();
        let mut tag = [0u8; TAG_LEN];
        tag.copy_from_slice(&full[..TAG_LEN]);
        tag
    }

    /// The token of a link to `id` issued at `now` (unix seconds).
    pub fn token(&self, id: DataId, now: i64) -> String {
        let expires = now.saturating_add(self.ttl_secs);
        let mut raw = Vec::with_capacity(TOKEN_LEN);
        raw.extend_from_slice(&id.as_u64().to_be_bytes());
        raw.extend_from_slice(&expires.to_be_bytes());
        raw.extend_from_slice(&self.tag(id.as_u64(), expires));
        URL_SAFE_NO_PAD.encode(raw)
    }

    /// The image a token names, if this server issued it and it has not expired.
    pub fn verify(&self, token: &str, now: i64) -> Result<DataId, LinkError> {
        let raw = URL_SAFE_NO_PAD
            .decode(token.as_bytes())
            .map_err(|_| LinkError::Invalid)?;
        if raw.len() != TOKEN_LEN {
            return Err(LinkError::Invalid);
        }
        let id = u64::from_be_bytes(raw[..8].try_into().map_err(|_| LinkError::Invalid)?);
        let expires = i64::from_be_bytes(raw[8..16].try_into().map_err(|_| LinkError::Invalid)?);
        let mut mac = self.mac.clone();
        mac.update(DOMAIN);
        mac.update(&id.to_be_bytes());
        mac.update(&expires.to_be_bytes());
        mac.verify_truncated_left(&raw[16..])
            .map_err(|_| LinkError::Invalid)?;
        if now > expires {
            return Err(LinkError::Expired);
        }
        DataId::from_u64(id).ok_or(LinkError::Invalid)
    }

    /// Gives every SearchImage match without an `ImageUrl` a link to its thumbnail. `host`:
    /// the request's Host header, used when no public URL is configured.
    pub fn fill_matches(&self, data: &mut Value, host: Option<&str>, now: i64) {
        let base = match (&self.public_url, host) {
            (Some(url), _) => url.clone(),
            (None, Some(host)) => format!("http://{host}"),
            (None, None) => return,
        };
        let Some(Value::Array(matches)) = data.get_mut("MatchList") else {
            return;
        };
        for m in matches {
            let empty = m.get("ImageUrl").and_then(Value::as_str) == Some("");
            let id = m
                .get("DataId")
                .and_then(Value::as_str)
                .and_then(|s| s.parse::<DataId>().ok());
            if let (true, Some(id)) = (empty, id) {
                m["ImageUrl"] =
                    Value::String(format!("{base}{LINK_PATH}{}.jpg", self.token(id, now)));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn links() -> ImageLinks {
        ImageLinks::new(b"0123456789abcdef0123456789abcdef", 1800, None).unwrap()
    }

    #[test]
    fn a_link_works_until_it_expires_and_not_when_altered() {
        let l = links();
        let id = DataId::from_u64(1_585_903_814_940_000).unwrap();
        let t = l.token(id, 1000);
        assert_eq!(l.verify(&t, 1000), Ok(id));
        assert_eq!(l.verify(&t, 2800), Ok(id));
        assert_eq!(l.verify(&t, 2801), Err(LinkError::Expired));
        let mut raw = URL_SAFE_NO_PAD.decode(&t).unwrap();
        for i in 0..raw.len() {
            raw[i] ^= 1;
            assert_eq!(
                l.verify(&URL_SAFE_NO_PAD.encode(&raw), 1000),
                Err(LinkError::Invalid),
                "byte {i}"
            );
            raw[i] ^= 1;
        }
        assert_eq!(l.verify("", 0), Err(LinkError::Invalid));
        assert_eq!(l.verify("!!", 0), Err(LinkError::Invalid));
        let other = ImageLinks::new(b"another secret, another server!!", 1800, None).unwrap();
        assert_eq!(other.verify(&t, 1000), Err(LinkError::Invalid));
    }

    #[test]
    fn only_matches_without_a_url_get_a_link() {
        let l = ImageLinks::new(
            b"0123456789abcdef0123456789abcdef",
            60,
            Some("https://img.example/".into()),
        )
        .unwrap();
        let mut data = json!({"MatchList": [
            {"DataId": "1585903814940000", "ImageUrl": ""},
            {"DataId": "1585903814940001", "ImageUrl": "http://shop/x.jpg"},
        ]});
        l.fill_matches(&mut data, Some("127.0.0.1:8080"), 5);
        let url = data["MatchList"][0]["ImageUrl"].as_str().unwrap();
        assert!(
            url.starts_with("https://img.example/images/") && url.ends_with(".jpg"),
            "{url}"
        );
        let token = url
            .trim_start_matches("https://img.example/images/")
            .trim_end_matches(".jpg");
        assert_eq!(l.verify(token, 5).unwrap().as_u64(), 1_585_903_814_940_000);
        assert_eq!(data["MatchList"][1]["ImageUrl"], "http://shop/x.jpg");
    }
}
