//! The ListImages continuation token (`Token` in the request, `Data.Token` in the reply).
//!
//! A token is keyset state: the last `DataId` returned, so the next page starts strictly after
//! it. Unlike an offset this never skips or repeats a record when images are added or deleted
//! between pages. The token is opaque to clients (base64url, no padding) and tamper-evident:
//! an HMAC-SHA256 with a per-installation secret binds the id to the request it continues,
//! i.e. the tenant, the database, `Order` and `EntityIdPrefix`. Those are not carried in the
//! token (nothing to leak, nothing to parse); [`ListTokenKey::resume`] recomputes the MAC
//! from the new request's values, so a token replayed against another tenant, database,
//! order or prefix fails exactly like an altered one.
//!
//! Not here: reading the request or building the reply (API layer), and paging itself
//! (`store::ListQuery::after`). Tokens do not expire; replacing the key file invalidates all.
//!
//! Layout before base64url: `version (1) | last data id, u64 big-endian (8) | tag (32)`.

use std::fmt;
use std::fs::{self, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

use crate::store::{DataId, Order};

/// The secret's file in the data directory (mode 0600).
pub const KEY_FILE_NAME: &str = "list-token.key";

/// Length of a generated secret (the SHA-256 block size would do no better).
const KEY_LEN: usize = 32;
/// Shorter secrets passed in are refused: they could be guessed.
const MIN_SECRET_LEN: usize = 16;

const VERSION: u8 = 1;
const TAG_LEN: usize = 32;
const TOKEN_LEN: usize = 1 + 8 + TAG_LEN;
/// Separates these MACs from any other use the same secret might ever get.
const DOMAIN: &[u8] = b"imgsearch ListImages token\0";

/// The request a token belongs to: a token only continues the same listing.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ListScope<'a> {
    /// The tenant (AccessKeyId).
    pub tenant: &'a str,
    pub db: &'a str,
    pub order: Order,
    /// `None` and `Some("")` are the same scope (no filter), as in `store::ListQuery`.
    pub entity_id_prefix: Option<&'a str>,
    /// The `Filter` text, as sent; `None` and `Some("")` are the same scope.
    pub filter: Option<&'a str>,
}

/// A token that cannot continue this request. The API answers 400 `InvalidParameter` with
/// this error's text as the message.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ListTokenError {
    #[error("Token is invalid for this request: it is not a token this server issued")]
    Malformed,
    #[error(
        "Token is invalid for this request: it was altered, or issued for another database, \
         Order or EntityIdPrefix"
    )]
    Mismatch,
}

/// Failure to set up the token secret (at start-up).
#[derive(Debug, thiserror::Error)]
pub enum TokenKeyError {
    #[error("list token key {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error(
        "list token key file {path} holds {len} bytes, expected {KEY_LEN}; delete it to make a \
         new one (outstanding ListImages tokens then become invalid)"
    )]
    BadKeyFile { path: PathBuf, len: usize },
    #[error("list token secret is {0} bytes long; at least {MIN_SECRET_LEN} are needed")]
    TooShort(usize),
    #[error("cannot get random bytes for a list token key: {0}")]
    Random(String),
}

/// The per-installation secret, keyed once; cheap to clone and share.
#[derive(Clone)]
pub struct ListTokenKey {
    mac: Hmac<Sha256>,
}

impl fmt::Debug for ListTokenKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never print the secret.
        f.write_str("ListTokenKey(..)")
    }
}

impl ListTokenKey {
    /// A key from a secret given by the operator (at least 16 bytes).
    pub fn from_secret(secret: &[u8]) -> Result<Self, TokenKeyError> {
        if secret.len() < MIN_SECRET_LEN {
            return Err(TokenKeyError::TooShort(secret.len()));
        }
        let mac = <Hmac<Sha256> as KeyInit>::new_from_slice(secret)
            .map_err(|_| TokenKeyError::TooShort(secret.len()))?;
        Ok(ListTokenKey { mac })
    }

    /// A fresh random key (tokens it issues die with the process).
    pub fn generate() -> Result<Self, TokenKeyError> {
        Self::from_secret(&random_secret()?)
    }

    /// Reads `<data_dir>/list-token.key`, creating it with a random secret and mode 0600 on
    /// first use, so tokens stay valid across restarts.
    pub fn load_or_create(data_dir: &Path) -> Result<Self, TokenKeyError> {
        Self::from_secret(&Self::load_or_create_secret(data_dir)?)
    }

    /// The installation's secret itself (the key file, created on first use), for other MACs
    /// of the server's own (e.g. image links), each under a domain string of its own.
    pub fn load_or_create_secret(data_dir: &Path) -> Result<Vec<u8>, TokenKeyError> {
        let path = data_dir.join(KEY_FILE_NAME);
        match fs::read(&path) {
            Ok(secret) => Self::from_file_contents(&path, &secret),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Self::create(data_dir, &path),
            Err(source) => Err(TokenKeyError::Io { path, source }),
        }
    }

    fn from_file_contents(path: &Path, secret: &[u8]) -> Result<Vec<u8>, TokenKeyError> {
        if secret.len() != KEY_LEN {
            return Err(TokenKeyError::BadKeyFile {
                path: path.to_owned(),
                len: secret.len(),
            });
        }
        let io_err = |source| TokenKeyError::Io {
            path: path.to_owned(),
            source,
        };
        // Someone loosened the permissions (a copy, a restore): tighten them again.
        let mode = fs::metadata(path).map_err(io_err)?.permissions().mode();
        if mode & 0o077 != 0 {
            fs::set_permissions(path, fs::Permissions::from_mode(0o600)).map_err(io_err)?;
        }
        Ok(secret.to_vec())
    }

    fn create(data_dir: &Path, path: &Path) -> Result<Vec<u8>, TokenKeyError> {
        let io_err = |p: &Path| {
            let p = p.to_owned();
            move |source| TokenKeyError::Io { path: p, source }
        };
        fs::create_dir_all(data_dir).map_err(io_err(data_dir))?;
        let secret = random_secret()?;
        // Write a private temporary file, then publish it with a link, which (unlike rename)
        // never replaces a key another process created meanwhile.
        let tmp = data_dir.join(format!("{KEY_FILE_NAME}.{}.tmp", std::process::id()));
        let _ = fs::remove_file(&tmp); // left over from a crash of a process with our pid
        let written = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&tmp)
            .and_then(|mut f| {
                f.write_all(&secret)?;
                f.sync_all()
            });
        if let Err(e) = written {
            let _ = fs::remove_file(&tmp);
            return Err(io_err(&tmp)(e));
        }
        let linked = fs::hard_link(&tmp, path);
        let _ = fs::remove_file(&tmp);
        match linked {
            Ok(()) => {
                // Make the new directory entry durable too.
                fs::File::open(data_dir)
                    .and_then(|d| d.sync_all())
                    .map_err(io_err(data_dir))?;
                Ok(secret.to_vec())
            }
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                let theirs = fs::read(path).map_err(io_err(path))?;
                Self::from_file_contents(path, &theirs)
            }
            Err(e) => Err(io_err(path)(e)),
        }
    }

    /// The token continuing `scope` after `last`, the last id of the page just returned.
    pub fn issue(&self, scope: &ListScope<'_>, last: DataId) -> String {
        let id = last.as_u64().to_be_bytes();
        let tag = self.tag(scope, &id);
        let mut raw = Vec::with_capacity(TOKEN_LEN);
        raw.push(VERSION);
        raw.extend_from_slice(&id);
        raw.extend_from_slice(&tag);
        URL_SAFE_NO_PAD.encode(raw)
    }

    /// The id to continue after, if `token` was issued by this key for exactly `scope`.
    pub fn resume(&self, scope: &ListScope<'_>, token: &str) -> Result<DataId, ListTokenError> {
        let raw = URL_SAFE_NO_PAD
            .decode(token.as_bytes())
            .map_err(|_| ListTokenError::Malformed)?;
        if raw.len() != TOKEN_LEN || raw[0] != VERSION {
            return Err(ListTokenError::Malformed);
        }
        let mut id = [0u8; 8];
        id.copy_from_slice(&raw[1..9]);
        let mut mac = self.mac.clone();
        feed(&mut mac, scope, &id);
        mac.verify_slice(&raw[9..])
            .map_err(|_| ListTokenError::Mismatch)?;
        DataId::from_u64(u64::from_be_bytes(id)).ok_or(ListTokenError::Malformed)
    }

    fn tag(&self, scope: &ListScope<'_>, id: &[u8; 8]) -> Vec<u8> {
        let mut mac = self.mac.clone();
        feed(&mut mac, scope, id);
        mac.finalize().into_bytes().to_vec()
    }
}

/// The MAC input: every variable-length field is length-prefixed, so no two different scopes
/// (say tenant "a", db "bc" and tenant "ab", db "c") produce the same bytes.
fn feed(mac: &mut Hmac<Sha256>, scope: &ListScope<'_>, id: &[u8; 8]) {
    mac.update(DOMAIN);
    mac.update(&[VERSION]);
    let prefix = scope.entity_id_prefix.unwrap_or("");
    for field in [scope.tenant, scope.db, prefix] {
        mac.update(&(field.len() as u64).to_be_bytes());
        mac.update(field.as_bytes());
    }
    mac.update(&[match scope.order {
        Order::Asc => b'a',
        Order::Desc => b'd',
    }]);
    // Only when there is one, so tokens issued before filters existed stay valid.
    if let Some(f) = scope.filter.filter(|f| !f.is_empty()) {
        mac.update(b"f");
        mac.update(&(f.len() as u64).to_be_bytes());
        mac.update(f.as_bytes());
    }
    mac.update(id);
}

fn random_secret() -> Result<[u8; KEY_LEN], TokenKeyError> {
    let mut secret = [0u8; KEY_LEN];
    getrandom::fill(&mut secret).map_err(|e| TokenKeyError::Random(e.to_string()))?;
    Ok(secret)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scope<'a>(
        tenant: &'a str,
        db: &'a str,
        order: Order,
        prefix: Option<&'a str>,
    ) -> ListScope<'a> {
        ListScope {
            tenant,
            db,
            order,
            entity_id_prefix: prefix,
            filter: None,
        }
    }

    fn id(v: u64) -> DataId {
        DataId::from_u64(v).unwrap()
    }

    #[test]
    fn token_round_trips_and_is_url_safe() {
        let key = ListTokenKey::generate().unwrap();
        let s = scope("AKID", "default", Order::Desc, Some("shoe_"));
        let token = key.issue(&s, id(1_585_903_814_940_000));
        assert!(token
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'));
        assert_eq!(key.resume(&s, &token), Ok(id(1_585_903_814_940_000)));
        // No filter spelled two ways is one scope.
        let none = scope("AKID", "default", Order::Asc, None);
        let empty = scope("AKID", "default", Order::Asc, Some(""));
        assert_eq!(key.resume(&empty, &key.issue(&none, id(7))), Ok(id(7)));
        // A Filter is part of the scope: its token does not continue another filter's list.
        let red = ListScope {
            filter: Some("str_attr = 'red'"),
            ..none
        };
        let blue = ListScope {
            filter: Some("str_attr = 'blue'"),
            ..none
        };
        let t = key.issue(&red, id(9));
        assert_eq!(key.resume(&red, &t), Ok(id(9)));
        assert!(key.resume(&blue, &t).is_err() && key.resume(&none, &t).is_err());
        assert_eq!(
            key.resume(
                &ListScope {
                    filter: Some(""),
                    ..none
                },
                &key.issue(&none, id(3))
            ),
            Ok(id(3))
        );
    }

    #[test]
    fn token_for_another_request_is_rejected() {
        let key = ListTokenKey::generate().unwrap();
        let issued = scope("AKID", "default", Order::Asc, Some("e1"));
        let token = key.issue(&issued, id(42));
        for other in [
            scope("AKID2", "default", Order::Asc, Some("e1")),
            scope("AKID", "other", Order::Asc, Some("e1")),
            scope("AKID", "default", Order::Desc, Some("e1")),
            scope("AKID", "default", Order::Asc, Some("e")),
            scope("AKID", "default", Order::Asc, Some("e1_")),
            scope("AKID", "default", Order::Asc, None),
        ] {
            assert_eq!(
                key.resume(&other, &token),
                Err(ListTokenError::Mismatch),
                "{other:?}"
            );
        }
        // Field boundaries are part of the MAC.
        let a = scope("a", "bc", Order::Asc, None);
        let b = scope("ab", "c", Order::Asc, None);
        assert_eq!(
            key.resume(&b, &key.issue(&a, id(1))),
            Err(ListTokenError::Mismatch)
        );
        // Another installation's key.
        let stranger = ListTokenKey::generate().unwrap();
        assert_eq!(
            stranger.resume(&issued, &token),
            Err(ListTokenError::Mismatch)
        );
    }

    #[test]
    fn every_single_bit_flip_is_detected() {
        let key = ListTokenKey::from_secret(&[7u8; 32]).unwrap();
        let s = scope("AKID", "default", Order::Asc, None);
        let token = key.issue(&s, id(1_700_000_000_000_000));
        let raw = URL_SAFE_NO_PAD.decode(&token).unwrap();
        for byte in 0..raw.len() {
            for bit in 0..8 {
                let mut t = raw.clone();
                t[byte] ^= 1 << bit;
                let forged = URL_SAFE_NO_PAD.encode(&t);
                assert!(key.resume(&s, &forged).is_err(), "byte {byte} bit {bit}");
            }
        }
        // Truncated, extended, re-padded, other alphabets, garbage.
        let padded = URL_SAFE_NO_PAD.encode(&raw) + "=";
        let standard = base64::engine::general_purpose::STANDARD.encode(&raw);
        for bad in [
            "",
            "x",
            &token[..token.len() - 1],
            &format!("{token}A"),
            &padded,
            "not a token!",
            "%%%%",
        ] {
            assert_eq!(
                key.resume(&s, bad),
                Err(ListTokenError::Malformed),
                "{bad:?}"
            );
        }
        if standard != token {
            assert!(key.resume(&s, &standard).is_err());
        }
    }

    #[test]
    fn error_messages_say_the_token_is_invalid_for_this_request() {
        for e in [ListTokenError::Malformed, ListTokenError::Mismatch] {
            assert!(e
                .to_string()
                .starts_with("Token is invalid for this request"));
        }
    }

    #[test]
    fn key_file_is_created_private_and_reused() {
        let dir = tempfile::tempdir().unwrap();
        let data_dir = dir.path().join("data");
        let first = ListTokenKey::load_or_create(&data_dir).unwrap();
        let path = data_dir.join(KEY_FILE_NAME);
        let meta = fs::metadata(&path).unwrap();
        assert_eq!(meta.len(), KEY_LEN as u64);
        assert_eq!(meta.permissions().mode() & 0o777, 0o600);
        // No temporary file is left behind.
        assert_eq!(fs::read_dir(&data_dir).unwrap().count(), 1);

        let s = scope("AKID", "default", Order::Asc, None);
        let token = first.issue(&s, id(99));
        let second = ListTokenKey::load_or_create(&data_dir).unwrap();
        assert_eq!(
            second.resume(&s, &token),
            Ok(id(99)),
            "same key after restart"
        );

        fs::set_permissions(&path, fs::Permissions::from_mode(0o644)).unwrap();
        ListTokenKey::load_or_create(&data_dir).unwrap();
        let mode = fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600, "loosened permissions are tightened");

        fs::write(&path, b"short").unwrap();
        assert!(matches!(
            ListTokenKey::load_or_create(&data_dir),
            Err(TokenKeyError::BadKeyFile { len: 5, .. })
        ));
    }

    #[test]
    fn short_secrets_are_refused() {
        assert!(matches!(
            ListTokenKey::from_secret(b"too short"),
            Err(TokenKeyError::TooShort(9))
        ));
        assert!(ListTokenKey::from_secret(&[1u8; 16]).is_ok());
        assert_eq!(
            format!("{:?}", ListTokenKey::from_secret(&[1u8; 16]).unwrap()),
            "ListTokenKey(..)"
        );
    }

    mod properties {
        use super::*;
        use proptest::prelude::*;

        fn order(desc: bool) -> Order {
            if desc {
                Order::Desc
            } else {
                Order::Asc
            }
        }

        proptest! {
            /// Any id, any scope: a token comes back as its id for that scope only.
            #[test]
            fn a_token_resumes_its_own_scope_and_no_other(
                tenant in any::<String>(), db in any::<String>(), prefix in any::<String>(),
                desc in any::<bool>(), last in 0..=DataId::MAX, other in any::<String>(),
                field in 0..4usize,
            ) {
                let key = ListTokenKey::from_secret(b"property test secret").unwrap();
                let s = scope(&tenant, &db, order(desc), Some(&prefix));
                let token = key.issue(&s, id(last));
                prop_assert_eq!(key.resume(&s, &token), Ok(id(last)));
                let mut changed = s;
                match field {
                    0 => changed.tenant = &other,
                    1 => changed.db = &other,
                    2 => changed.entity_id_prefix = Some(&other),
                    _ => changed.order = order(!desc),
                }
                if changed != s && !(field == 2 && other.is_empty() && prefix.is_empty()) {
                    prop_assert_eq!(key.resume(&changed, &token), Err(ListTokenError::Mismatch));
                }
            }

            /// Whatever string comes in as a token, resume answers without panicking, and
            /// only a token this key issued gives an id.
            #[test]
            fn arbitrary_tokens_are_refused(token in any::<String>()) {
                let key = ListTokenKey::from_secret(b"property test secret").unwrap();
                let s = scope("t", "db", Order::Asc, None);
                prop_assert!(key.resume(&s, &token).is_err());
            }
        }
    }
}
