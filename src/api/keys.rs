//! Access key pairs: where they come from and how a request's key id finds its secret.
//! Each key pair is a tenant; the tenant id is the access key id.
//!
//! Sources, first that applies wins:
//! 1. env `IMGSEARCH_ACCESS_KEYS="id1:secret1,id2:secret2"` (set but blank counts as unset);
//! 2. the keys file `<data dir>/access-keys`: one `id:secret` per line, blank lines and
//!    lines starting with `#` ignored, surrounding whitespace trimmed;
//! 3. neither: a fresh pair is generated from the OS CSPRNG, written to the keys file with
//!    mode 0600 atomically (temp file, fsync, rename, fsync dir), and returned in
//!    [`LoadedKeys::generated`] so the caller can print it once.
//!
//! An id is visible ASCII without `:` or `,`; a secret is visible ASCII without `,` (so a
//! secret may contain `:`: the split is at the first one). Duplicate ids are an error.
//! Not here: signature verification (`auth.rs`), or any per-tenant data layout.

use std::collections::HashMap;
use std::fmt;
use std::io::Write;
use std::path::{Path, PathBuf};

use thiserror::Error;

/// Environment variable holding the key pairs.
pub const KEYS_ENV: &str = "IMGSEARCH_ACCESS_KEYS";
/// File name of the keys file inside the data directory.
pub const KEYS_FILE_NAME: &str = "access-keys";

/// Why keys could not be loaded or created. Startup errors: print and exit.
#[derive(Debug, Error)]
pub enum KeyError {
    #[error("{KEYS_ENV} entry {entry}: {reason} (expected \"id1:secret1,id2:secret2\")")]
    EnvEntry { entry: usize, reason: String },
    #[error("{KEYS_ENV} is not valid Unicode")]
    EnvNotUnicode,
    #[error("{path}, line {line}: {reason} (expected one \"id:secret\" per line)")]
    FileLine {
        path: PathBuf,
        line: usize,
        reason: String,
    },
    #[error("{0}: holds no key pair")]
    NoKeys(String),
    #[error("{origin}: access key id \"{id}\" appears more than once")]
    Duplicate { origin: String, id: String },
    #[error("invalid key pair: {0}")]
    Invalid(String),
    #[error("cannot {op} {path}: {source}")]
    Io {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("the OS random number generator failed: {0}")]
    Random(String),
}

/// One access key pair. `Debug` does not print the secret.
#[derive(Clone, PartialEq, Eq)]
pub struct KeyPair {
    access_key_id: String,
    secret: String,
}

impl KeyPair {
    /// Validates and builds a pair (rules in the module doc).
    pub fn new(access_key_id: &str, secret: &str) -> Result<Self, KeyError> {
        validate(access_key_id, secret).map_err(KeyError::Invalid)?;
        Ok(KeyPair {
            access_key_id: access_key_id.to_owned(),
            secret: secret.to_owned(),
        })
    }

    /// A new random pair: id `LTAI` + 20 alphanumerics, secret of 30 alphanumerics.
    pub fn generate() -> Result<Self, KeyError> {
        Ok(KeyPair {
            access_key_id: format!("LTAI{}", random_alphanumeric(20)?),
            secret: random_alphanumeric(30)?,
        })
    }

    pub fn access_key_id(&self) -> &str {
        &self.access_key_id
    }

    pub fn secret(&self) -> &str {
        &self.secret
    }

    /// The tenant this pair stands for (= its access key id).
    pub fn tenant_id(&self) -> &str {
        &self.access_key_id
    }
}

impl fmt::Debug for KeyPair {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyPair")
            .field("access_key_id", &self.access_key_id)
            .field("secret", &"<redacted>")
            .finish()
    }
}

/// The key pairs the server accepts, by access key id.
#[derive(Debug, Clone, Default)]
pub struct KeyStore {
    by_id: HashMap<String, KeyPair>,
}

impl KeyStore {
    /// From pairs; `origin` names where they came from for the duplicate-id error.
    pub fn from_pairs(
        pairs: impl IntoIterator<Item = KeyPair>,
        origin: &str,
    ) -> Result<Self, KeyError> {
        let mut by_id = HashMap::new();
        for pair in pairs {
            let id = pair.access_key_id.clone();
            if by_id.insert(id.clone(), pair).is_some() {
                return Err(KeyError::Duplicate {
                    origin: origin.to_owned(),
                    id,
                });
            }
        }
        if by_id.is_empty() {
            return Err(KeyError::NoKeys(origin.to_owned()));
        }
        Ok(KeyStore { by_id })
    }

    /// Parses the env format `id1:secret1,id2:secret2` (whitespace around entries trimmed,
    /// empty entries such as a trailing comma skipped).
    pub fn parse_env(value: &str) -> Result<Self, KeyError> {
        let mut pairs = Vec::new();
        for (i, entry) in value.split(',').enumerate() {
            let entry = entry.trim();
            if entry.is_empty() {
                continue;
            }
            let pair = parse_pair(entry).map_err(|reason| KeyError::EnvEntry {
                entry: i + 1,
                reason,
            })?;
            pairs.push(pair);
        }
        Self::from_pairs(pairs, KEYS_ENV)
    }

    /// Parses the keys-file format; `path` is only for messages.
    pub fn parse_file(text: &str, path: &Path) -> Result<Self, KeyError> {
        let mut pairs = Vec::new();
        for (i, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let pair = parse_pair(line).map_err(|reason| KeyError::FileLine {
                path: path.to_owned(),
                line: i + 1,
                reason,
            })?;
            pairs.push(pair);
        }
        Self::from_pairs(pairs, &path.display().to_string())
    }

    /// The pair for `access_key_id`, if known.
    pub fn get(&self, access_key_id: &str) -> Option<&KeyPair> {
        self.by_id.get(access_key_id)
    }

    /// The secret for `access_key_id`, if known.
    pub fn secret(&self, access_key_id: &str) -> Option<&str> {
        self.get(access_key_id).map(KeyPair::secret)
    }

    /// Every tenant id (= access key id), in no particular order.
    pub fn tenant_ids(&self) -> impl Iterator<Item = &str> {
        self.by_id.keys().map(String::as_str)
    }

    pub fn len(&self) -> usize {
        self.by_id.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_id.is_empty()
    }
}

/// Where the keys came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeySource {
    Env,
    File(PathBuf),
    /// Generated on this start and written to this path.
    Generated(PathBuf),
}

/// Result of [`load_keys`].
#[derive(Debug)]
pub struct LoadedKeys {
    pub store: KeyStore,
    pub source: KeySource,
    /// The pair generated on this start, to be shown to the operator once. `None` otherwise.
    pub generated: Option<KeyPair>,
    /// Non-fatal findings to log, e.g. a keys file readable by others.
    pub warnings: Vec<String>,
}

/// Loads keys from `env_value` (the value of [`KEYS_ENV`], if set), else the keys file in
/// `data_dir`, else generates and stores a pair. Creates `data_dir` if needed.
pub fn load_keys(env_value: Option<&str>, data_dir: &Path) -> Result<LoadedKeys, KeyError> {
    if let Some(value) = env_value.filter(|v| !v.trim().is_empty()) {
        return Ok(LoadedKeys {
            store: KeyStore::parse_env(value)?,
            source: KeySource::Env,
            generated: None,
            warnings: Vec::new(),
        });
    }
    let path = data_dir.join(KEYS_FILE_NAME);
    match std::fs::read_to_string(&path) {
        Ok(text) => Ok(LoadedKeys {
            store: KeyStore::parse_file(&text, &path)?,
            warnings: permission_warnings(&path),
            source: KeySource::File(path),
            generated: None,
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let pair = KeyPair::generate()?;
            std::fs::create_dir_all(data_dir).map_err(io_err("create directory", data_dir))?;
            write_keys_file(&path, std::slice::from_ref(&pair))?;
            Ok(LoadedKeys {
                store: KeyStore::from_pairs([pair.clone()], &path.display().to_string())?,
                source: KeySource::Generated(path),
                generated: Some(pair),
                warnings: Vec::new(),
            })
        }
        Err(e) => Err(KeyError::Io {
            op: "read",
            path,
            source: e,
        }),
    }
}

/// [`load_keys`] with the value of [`KEYS_ENV`] read from the process environment.
pub fn load_keys_from_env(data_dir: &Path) -> Result<LoadedKeys, KeyError> {
    let value = match std::env::var(KEYS_ENV) {
        Ok(v) => Some(v),
        Err(std::env::VarError::NotPresent) => None,
        Err(std::env::VarError::NotUnicode(_)) => return Err(KeyError::EnvNotUnicode),
    };
    load_keys(value.as_deref(), data_dir)
}

/// Writes `pairs` to `path` in the keys-file format, mode 0600, atomically: a crash leaves
/// either no file or the whole file, never a partial one that would lock the operator out.
pub fn write_keys_file(path: &Path, pairs: &[KeyPair]) -> Result<(), KeyError> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let file_name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| KEYS_FILE_NAME.to_owned());
    let tmp = dir.join(format!(
        ".{file_name}.tmp-{}-{}",
        std::process::id(),
        random_alphanumeric(8)?
    ));

    let mut text = String::from(
        "# imgsearch access keys: one \"id:secret\" per line; lines starting with # are ignored.\n\
         # Keep this file private (mode 0600). Each key pair is a separate tenant.\n",
    );
    for p in pairs {
        text.push_str(&format!("{}:{}\n", p.access_key_id, p.secret));
    }

    let result = (|| {
        let mut opts = std::fs::OpenOptions::new();
        opts.write(true).create_new(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            // Set at creation so the secret is never readable by others, not even briefly.
            opts.mode(0o600);
        }
        let mut f = opts.open(&tmp).map_err(io_err("create", &tmp))?;
        f.write_all(text.as_bytes())
            .map_err(io_err("write", &tmp))?;
        f.sync_all().map_err(io_err("fsync", &tmp))?;
        drop(f);
        std::fs::rename(&tmp, path).map_err(io_err("rename into place", path))?;
        // Make the rename itself durable.
        #[cfg(unix)]
        std::fs::File::open(dir)
            .and_then(|d| d.sync_all())
            .map_err(io_err("fsync directory", dir))?;
        Ok(())
    })();
    if result.is_err() {
        // Best effort: do not leave a stray secret behind.
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

fn io_err(op: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> KeyError {
    let path = path.to_owned();
    move |source| KeyError::Io { op, path, source }
}

fn parse_pair(entry: &str) -> Result<KeyPair, String> {
    let (id, secret) = entry
        .split_once(':')
        .ok_or_else(|| "missing ':' between id and secret".to_owned())?;
    let (id, secret) = (id.trim(), secret.trim());
    validate(id, secret)?;
    Ok(KeyPair {
        access_key_id: id.to_owned(),
        secret: secret.to_owned(),
    })
}

fn validate(id: &str, secret: &str) -> Result<(), String> {
    if id.is_empty() {
        return Err("empty access key id".into());
    }
    if secret.is_empty() {
        return Err(format!("empty secret for access key id \"{id}\""));
    }
    if !id
        .bytes()
        .all(|b| b.is_ascii_graphic() && b != b':' && b != b',')
    {
        return Err(format!(
            "access key id \"{id}\" must be visible ASCII without ':' or ','"
        ));
    }
    if !secret.bytes().all(|b| b.is_ascii_graphic() && b != b',') {
        // Do not echo the secret.
        return Err(format!(
            "secret for access key id \"{id}\" must be visible ASCII without ','"
        ));
    }
    Ok(())
}

#[cfg(unix)]
fn permission_warnings(path: &Path) -> Vec<String> {
    use std::os::unix::fs::PermissionsExt;
    match std::fs::metadata(path) {
        Ok(m) if m.permissions().mode() & 0o077 != 0 => vec![format!(
            "{} is accessible to group/others (mode {:o}); run chmod 600 on it",
            path.display(),
            m.permissions().mode() & 0o777
        )],
        _ => Vec::new(),
    }
}

#[cfg(not(unix))]
fn permission_warnings(_path: &Path) -> Vec<String> {
    Vec::new()
}

/// `len` characters from `[A-Za-z0-9]`, uniformly, from the OS CSPRNG.
fn random_alphanumeric(len: usize) -> Result<String, KeyError> {
    const ALPHABET: &[u8; 62] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
    let mut out = String::with_capacity(len);
    let mut buf = [0u8; 64];
    while out.len() < len {
        getrandom::fill(&mut buf).map_err(|e| KeyError::Random(e.to_string()))?;
        // Rejection sampling: 248 = 4 * 62, so bytes below it map uniformly.
        for &b in buf.iter().filter(|&&b| b < 248) {
            if out.len() == len {
                break;
            }
            out.push(ALPHABET[usize::from(b % 62)] as char);
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp_dir(tag: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!(
            "imgsearch-keys-{tag}-{}-{}",
            std::process::id(),
            random_alphanumeric(8).unwrap()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    #[test]
    fn env_parses_pairs_and_trims() {
        let s = KeyStore::parse_env(" AK1:s1 , AK2:se:cret2,").unwrap();
        assert_eq!(s.len(), 2);
        assert_eq!(s.secret("AK1"), Some("s1"));
        assert_eq!(s.secret("AK2"), Some("se:cret2"));
        assert_eq!(s.secret("AK3"), None);
        let mut ids: Vec<_> = s.tenant_ids().collect();
        ids.sort();
        assert_eq!(ids, ["AK1", "AK2"]);
    }

    #[test]
    fn env_errors_are_clear() {
        let cases = [
            ("AK1", "entry 1: missing ':'"),
            ("AK1:s1,:s2", "entry 2: empty access key id"),
            ("AK1:", "entry 1: empty secret"),
            ("AK 1:s", "must be visible ASCII"),
            ("AK1:s1,AK1:s2", "\"AK1\" appears more than once"),
            (",,", "holds no key pair"),
        ];
        for (value, want) in cases {
            let err = KeyStore::parse_env(value).unwrap_err().to_string();
            assert!(err.contains(want), "{value:?}: {err}");
            assert!(err.contains(KEYS_ENV), "{value:?}: {err}");
        }
        // A secret is never echoed back in an error.
        let err = KeyStore::parse_env("AK1:sec ret").unwrap_err().to_string();
        assert!(!err.contains("sec ret"), "{err}");
    }

    #[test]
    fn file_format_allows_comments_and_reports_line_numbers() {
        let path = Path::new("/data/access-keys");
        let s = KeyStore::parse_file("# keys\n\nAK1:s1\n  # indented comment\n AK2:s2 \n", path)
            .unwrap();
        assert_eq!(s.secret("AK2"), Some("s2"));
        let err = KeyStore::parse_file("AK1:s1\n\nbroken\n", path)
            .unwrap_err()
            .to_string();
        assert!(err.contains("/data/access-keys, line 3"), "{err}");
        let err = KeyStore::parse_file("# nothing\n", path)
            .unwrap_err()
            .to_string();
        assert!(err.contains("holds no key pair"), "{err}");
    }

    #[test]
    fn generated_pairs_look_like_alibaba_keys_and_differ() {
        let a = KeyPair::generate().unwrap();
        let b = KeyPair::generate().unwrap();
        assert!(a.access_key_id().starts_with("LTAI"));
        assert_eq!(a.access_key_id().len(), 24);
        assert_eq!(a.secret().len(), 30);
        assert!(a.access_key_id().bytes().all(|c| c.is_ascii_alphanumeric()));
        assert!(a.secret().bytes().all(|c| c.is_ascii_alphanumeric()));
        assert_ne!(a, b);
        assert!(!format!("{a:?}").contains(a.secret()));
    }

    #[test]
    fn first_start_generates_a_0600_file_and_later_starts_reload_it() {
        let dir = temp_dir("gen").join("nested");
        let first = load_keys(None, &dir).unwrap();
        let pair = first.generated.clone().expect("a pair is generated");
        let path = dir.join(KEYS_FILE_NAME);
        assert_eq!(first.source, KeySource::Generated(path.clone()));
        assert_eq!(
            first.store.secret(pair.access_key_id()),
            Some(pair.secret())
        );
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, 0o600);
        }
        // No temp file left behind.
        let names: Vec<_> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, [KEYS_FILE_NAME]);

        let second = load_keys(Some("   "), &dir).unwrap();
        assert!(second.generated.is_none());
        assert_eq!(second.source, KeySource::File(path));
        assert!(second.warnings.is_empty(), "{:?}", second.warnings);
        assert_eq!(
            second.store.secret(pair.access_key_id()),
            Some(pair.secret())
        );
        assert_eq!(second.store.len(), 1);
        std::fs::remove_dir_all(dir.parent().unwrap()).unwrap();
    }

    #[test]
    fn env_wins_over_file_and_a_bad_file_is_an_error() {
        let dir = temp_dir("env");
        std::fs::write(dir.join(KEYS_FILE_NAME), "no colon here\n").unwrap();
        let loaded = load_keys(Some("AK:SECRET"), &dir).unwrap();
        assert_eq!(loaded.source, KeySource::Env);
        assert_eq!(loaded.store.secret("AK"), Some("SECRET"));
        let err = load_keys(None, &dir).unwrap_err().to_string();
        assert!(err.contains("line 1"), "{err}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[cfg(unix)]
    #[test]
    fn a_world_readable_keys_file_loads_with_a_warning() {
        use std::os::unix::fs::PermissionsExt;
        let dir = temp_dir("perm");
        let path = dir.join(KEYS_FILE_NAME);
        std::fs::write(&path, "AK:S\n").unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        let loaded = load_keys(None, &dir).unwrap();
        assert_eq!(loaded.warnings.len(), 1, "{:?}", loaded.warnings);
        assert!(loaded.warnings[0].contains("644"));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
