//! Upload policies: what AuthorizeFileUpload hands the SDK (`EncodedPolicy`, `Signature`)
//! and the bucket checks when the file arrives. An OSS-style POST policy — base64 of
//! `{"expiration": …, "conditions": [{"bucket": B}, ["eq", "$key", K],
//! ["content-length-range", 1, MAX], ["eq", "$x-imgsearch-owner", AKID]]}` — signed by this
//! server (HMAC-SHA256 under the installation secret `list-token.key`, with a domain string
//! of its own), so it names exactly one object key, one owner and a size cap until it
//! expires, and nobody without the secret can make or alter one.
//!
//! Not here: the HTTP form (`api::upload`), keeping the object (`service::uploads`).

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use hmac::{Hmac, KeyInit, Mac};
use serde_json::{json, Value};
use sha2::Sha256;

use crate::rules::UPLOAD_MAX_BYTES;
use crate::signing::{format_timestamp, parse_timestamp};

const DOMAIN: &[u8] = b"imgsearch upload policy\0";
/// The policy condition that binds an upload to the access key that asked for it.
const OWNER_FIELD: &str = "$x-imgsearch-owner";
/// Longest encoded policy read (ours are ~300 bytes).
const MAX_POLICY_LEN: usize = 4096;

/// Signs and checks upload policies.
#[derive(Clone)]
pub struct UploadPolicies {
    mac: Hmac<Sha256>,
    /// How long an issued policy may be used.
    ttl_secs: i64,
}

/// A policy as issued: the two form fields the SDK sends back with the file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IssuedPolicy {
    pub encoded_policy: String,
    pub signature: String,
}

/// What a verified policy allows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicyClaims {
    pub bucket: String,
    pub key: String,
    pub owner: String,
    pub max_bytes: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PolicyError {
    #[error(
        "the policy's Signature does not match: the policy was not issued by this server's \
         AuthorizeFileUpload, or it was altered"
    )]
    Forged,
    #[error("the policy is not valid: {0}")]
    Malformed(String),
    #[error(
        "the policy expired at {0}; call AuthorizeFileUpload again (the SDK does this on \
         every Advance call)"
    )]
    Expired(String),
}

impl UploadPolicies {
    /// Policies valid `ttl_secs` (normally [`UPLOAD_POLICY_SECS`](crate::rules::UPLOAD_POLICY_SECS)).
    pub fn new(secret: &[u8], ttl_secs: i64) -> Option<Self> {
        Some(UploadPolicies {
            mac: <Hmac<Sha256> as KeyInit>::new_from_slice(secret).ok()?,
            ttl_secs: ttl_secs.max(1),
        })
    }

    fn mac_of(&self, encoded_policy: &str) -> Hmac<Sha256> {
        let mut mac = self.mac.clone();
        mac.update(DOMAIN);
        mac.update(encoded_policy.as_bytes());
        mac
    }

    /// A policy for `owner` to upload one object `key` to `bucket`, from `now` (unix s).
    pub fn issue(&self, owner: &str, bucket: &str, key: &str, now: i64) -> IssuedPolicy {
        let doc = json!({
            "expiration": format_timestamp(now.saturating_add(self.ttl_secs)),
            "conditions": [
                { "bucket": bucket },
                ["eq", "$key", key],
                ["content-length-range", 1, UPLOAD_MAX_BYTES],
                ["eq", OWNER_FIELD, owner],
            ],
        });
        let encoded_policy = STANDARD.encode(doc.to_string());
        let signature = STANDARD.encode(self.mac_of(&encoded_policy).finalize().into_bytes());
        IssuedPolicy {
            encoded_policy,
            signature,
        }
    }

    /// Checks the signature first (nothing of an unsigned policy is read), then expiry,
    /// and returns what the policy allows.
    pub fn verify(
        &self,
        encoded_policy: &str,
        signature: &str,
        now: i64,
    ) -> Result<PolicyClaims, PolicyError> {
        if encoded_policy.len() > MAX_POLICY_LEN {
            return Err(PolicyError::Forged);
        }
        let given = STANDARD
            .decode(signature.trim())
            .map_err(|_| PolicyError::Forged)?;
        self.mac_of(encoded_policy)
            .verify_slice(&given)
            .map_err(|_| PolicyError::Forged)?;
        let bad = |why: &str| PolicyError::Malformed(why.to_owned());
        let raw = STANDARD
            .decode(encoded_policy)
            .map_err(|_| bad("not base64"))?;
        let doc: Value = serde_json::from_slice(&raw).map_err(|_| bad("not JSON"))?;
        let expiration = doc["expiration"]
            .as_str()
            .ok_or_else(|| bad("no expiration"))?;
        let expires = parse_timestamp(expiration).ok_or_else(|| bad("bad expiration"))?;
        if now >= expires {
            return Err(PolicyError::Expired(expiration.to_owned()));
        }
        let mut claims = PolicyClaims {
            bucket: String::new(),
            key: String::new(),
            owner: String::new(),
            max_bytes: 0,
        };
        for c in doc["conditions"]
            .as_array()
            .ok_or_else(|| bad("no conditions"))?
        {
            if let Some(b) = c.get("bucket").and_then(Value::as_str) {
                claims.bucket = b.to_owned();
                continue;
            }
            let Some(items) = c.as_array() else {
                return Err(bad("unknown condition"));
            };
            match (
                items.first().and_then(Value::as_str),
                items.get(1),
                items.get(2),
            ) {
                (Some("eq"), Some(Value::String(field)), Some(Value::String(v))) => {
                    match field.as_str() {
                        "$key" => claims.key = v.clone(),
                        OWNER_FIELD => claims.owner = v.clone(),
                        _ => return Err(bad("unknown field")),
                    }
                }
                (Some("content-length-range"), Some(_), Some(max)) => {
                    claims.max_bytes = max.as_u64().ok_or_else(|| bad("bad size range"))?;
                }
                _ => return Err(bad("unknown condition")),
            }
        }
        if claims.bucket.is_empty() || claims.key.is_empty() || claims.owner.is_empty() {
            return Err(bad("a condition is missing"));
        }
        Ok(claims)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rules::UPLOAD_POLICY_SECS;

    #[test]
    fn an_issued_policy_verifies_until_it_expires() {
        let p = UploadPolicies::new(b"secret", UPLOAD_POLICY_SECS).unwrap();
        let issued = p.issue("AKID", "uploads", "upload/ab", 1_000);
        let claims = p
            .verify(&issued.encoded_policy, &issued.signature, 1_000)
            .unwrap();
        assert_eq!(
            claims,
            PolicyClaims {
                bucket: "uploads".into(),
                key: "upload/ab".into(),
                owner: "AKID".into(),
                max_bytes: UPLOAD_MAX_BYTES as u64,
            }
        );
        let at = 1_000 + UPLOAD_POLICY_SECS;
        assert!(matches!(
            p.verify(&issued.encoded_policy, &issued.signature, at),
            Err(PolicyError::Expired(_))
        ));
    }

    #[test]
    fn forged_or_altered_policies_are_refused() {
        let p = UploadPolicies::new(b"secret", UPLOAD_POLICY_SECS).unwrap();
        let issued = p.issue("AKID", "uploads", "upload/ab", 1_000);
        // Another server's secret.
        let other = UploadPolicies::new(b"other", UPLOAD_POLICY_SECS).unwrap();
        assert_eq!(
            other.verify(&issued.encoded_policy, &issued.signature, 1_000),
            Err(PolicyError::Forged)
        );
        // The policy rewritten for another owner, signature kept.
        let doc = String::from_utf8(STANDARD.decode(&issued.encoded_policy).unwrap()).unwrap();
        let altered = STANDARD.encode(doc.replace("AKID", "OTHER"));
        assert_eq!(
            p.verify(&altered, &issued.signature, 1_000),
            Err(PolicyError::Forged)
        );
        assert_eq!(
            p.verify(&issued.encoded_policy, "not base64!", 1_000),
            Err(PolicyError::Forged)
        );
        assert_eq!(p.verify("", "", 1_000), Err(PolicyError::Forged));
    }
}
