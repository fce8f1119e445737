//! Where the client commands find the server and the key pair. Each setting is taken from,
//! in order: its flag, its environment variable, the profile file, a default (endpoint
//! only: `http://127.0.0.1:8080`).
//!
//! The profile file is TOML, by default `$XDG_CONFIG_HOME/imgsearch/profile.toml` (else
//! `~/.config/imgsearch/profile.toml`), or `--profile PATH` / `IMGSEARCH_PROFILE`:
//! ```toml
//! endpoint = "http://127.0.0.1:8080"
//! access_key_id = "LTAI..."
//! access_key_secret = "..."
//! signature = "v3"        # optional: v3 (default) or v1
//! ```

use std::path::{Path, PathBuf};

use serde::Deserialize;

use super::client::{Client, ClientError, Endpoint};
use crate::signing::SignatureStyle;

pub const DEFAULT_ENDPOINT: &str = "http://127.0.0.1:8080";

/// Connection flags shared by the client commands.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct ConnectionArgs {
    /// Server address, e.g. http://127.0.0.1:8080 [default: profile, else http://127.0.0.1:8080]
    #[arg(long, env = "IMGSEARCH_ENDPOINT", global = true)]
    pub endpoint: Option<String>,
    /// Access key id [default: from the profile file]
    #[arg(long, env = "IMGSEARCH_ACCESS_KEY_ID", global = true)]
    pub access_key_id: Option<String>,
    /// Access key secret [default: from the profile file]
    #[arg(
        long,
        env = "IMGSEARCH_ACCESS_KEY_SECRET",
        hide_env_values = true,
        global = true
    )]
    pub access_key_secret: Option<String>,
    /// Profile file (TOML: endpoint, access_key_id, access_key_secret, signature)
    /// [default: ~/.config/imgsearch/profile.toml]
    #[arg(long, env = "IMGSEARCH_PROFILE", global = true)]
    pub profile: Option<PathBuf>,
    /// Request signing: v3 (ACS3-HMAC-SHA256, as the Tea SDK) or v1 (HMAC-SHA1)
    /// [default: profile, else v3]
    #[arg(long, value_parser = ["v1", "v3"], global = true)]
    pub signature: Option<String>,
    /// Print the server's JSON answer (import: a JSON summary) on stdout instead of text.
    #[arg(long, global = true)]
    pub json: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum ProfileError {
    #[error("reading the profile {path}: {reason}")]
    Read { path: PathBuf, reason: String },
    #[error("the profile {path} is not valid: {reason}")]
    Parse { path: PathBuf, reason: String },
    #[error(
        "no {what}: pass {flag}, set {env}, or put {key} = \"...\" in the profile file {path}"
    )]
    Missing {
        what: &'static str,
        flag: &'static str,
        env: &'static str,
        key: &'static str,
        path: String,
    },
    #[error("signature \"{0}\" is not v1 or v3")]
    BadSignature(String),
    #[error(transparent)]
    Client(#[from] ClientError),
}

/// The profile file's contents; every key optional.
#[derive(Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Profile {
    pub endpoint: Option<String>,
    pub access_key_id: Option<String>,
    pub access_key_secret: Option<String>,
    pub signature: Option<String>,
}

impl Profile {
    pub fn parse(text: &str, path: &Path) -> Result<Self, ProfileError> {
        toml::from_str(text).map_err(|e| ProfileError::Parse {
            path: path.to_path_buf(),
            reason: e.to_string(),
        })
    }
}

/// The default profile path (`None` when neither XDG_CONFIG_HOME nor HOME is set).
pub fn default_profile_path() -> Option<PathBuf> {
    let config = std::env::var_os("XDG_CONFIG_HOME")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .or_else(|| {
            std::env::var_os("HOME")
                .filter(|v| !v.is_empty())
                .map(|h| PathBuf::from(h).join(".config"))
        })?;
    Some(config.join("imgsearch").join("profile.toml"))
}

/// Everything a client needs, resolved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resolved {
    pub endpoint: String,
    pub access_key_id: String,
    pub access_key_secret: String,
    pub signature: SignatureStyle,
}

impl ConnectionArgs {
    /// Flag/env values first, then the profile file (an explicitly named one must exist;
    /// the default one may be absent).
    pub fn resolve(&self) -> Result<Resolved, ProfileError> {
        let (path, explicit) = match &self.profile {
            Some(p) => (Some(p.clone()), true),
            None => (default_profile_path(), false),
        };
        let profile = match &path {
            Some(p) => match std::fs::read_to_string(p) {
                Ok(text) => {
                    warn_if_readable_by_others(p);
                    Profile::parse(&text, p)?
                }
                Err(e) if e.kind() == std::io::ErrorKind::NotFound && !explicit => {
                    Profile::default()
                }
                Err(e) => {
                    return Err(ProfileError::Read {
                        path: p.clone(),
                        reason: e.to_string(),
                    })
                }
            },
            None => Profile::default(),
        };
        self.merge(profile, path.as_deref())
    }

    fn merge(&self, profile: Profile, path: Option<&Path>) -> Result<Resolved, ProfileError> {
        let shown = path.map_or_else(
            || "~/.config/imgsearch/profile.toml".to_string(),
            |p| p.display().to_string(),
        );
        let pick = |flag: &Option<String>, file: Option<String>| {
            flag.clone()
                .filter(|v| !v.is_empty())
                .or(file.filter(|v| !v.is_empty()))
        };
        let endpoint =
            pick(&self.endpoint, profile.endpoint).unwrap_or_else(|| DEFAULT_ENDPOINT.to_string());
        let access_key_id =
            pick(&self.access_key_id, profile.access_key_id).ok_or(ProfileError::Missing {
                what: "access key id",
                flag: "--access-key-id",
                env: "IMGSEARCH_ACCESS_KEY_ID",
                key: "access_key_id",
                path: shown.clone(),
            })?;
        let access_key_secret = pick(&self.access_key_secret, profile.access_key_secret).ok_or(
            ProfileError::Missing {
                what: "access key secret",
                flag: "--access-key-secret",
                env: "IMGSEARCH_ACCESS_KEY_SECRET",
                key: "access_key_secret",
                path: shown,
            },
        )?;
        let signature = match pick(&self.signature, profile.signature).as_deref() {
            None | Some("v3") | Some("V3") => SignatureStyle::V3,
            Some("v1") | Some("V1") => SignatureStyle::V1,
            Some(other) => return Err(ProfileError::BadSignature(other.to_string())),
        };
        Ok(Resolved {
            endpoint,
            access_key_id,
            access_key_secret,
            signature,
        })
    }

    /// A client for the resolved settings.
    pub fn client(&self) -> Result<Client, ProfileError> {
        let r = self.resolve()?;
        Ok(Client::new(
            Endpoint::parse(&r.endpoint)?,
            &r.access_key_id,
            &r.access_key_secret,
            r.signature,
        )?)
    }
}

#[cfg(unix)]
fn warn_if_readable_by_others(path: &Path) {
    use std::os::unix::fs::PermissionsExt as _;
    if let Ok(meta) = std::fs::metadata(path) {
        if meta.permissions().mode() & 0o077 != 0 {
            eprintln!(
                "warning: the profile {} holds a secret but others may read it; run chmod 600 on it",
                path.display()
            );
        }
    }
}

#[cfg(not(unix))]
fn warn_if_readable_by_others(_: &Path) {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_beat_the_profile_which_beats_defaults() {
        let file = Profile::parse(
            "endpoint = \"http://10.0.0.1:9000\"\naccess_key_id = \"FILEID\"\naccess_key_secret = \"filesecret\"\nsignature = \"v1\"\n",
            Path::new("p.toml"),
        )
        .unwrap();
        let args = ConnectionArgs {
            access_key_id: Some("FLAGID".into()),
            ..Default::default()
        };
        let r = args.merge(file, None).unwrap();
        assert_eq!(r.endpoint, "http://10.0.0.1:9000");
        assert_eq!(r.access_key_id, "FLAGID");
        assert_eq!(r.access_key_secret, "filesecret");
        assert_eq!(r.signature, SignatureStyle::V1);

        let args = ConnectionArgs {
            access_key_id: Some("A".into()),
            access_key_secret: Some("S".into()),
            ..Default::default()
        };
        let r = args.merge(Profile::default(), None).unwrap();
        assert_eq!(r.endpoint, DEFAULT_ENDPOINT);
        assert_eq!(r.signature, SignatureStyle::V3);
    }

    #[test]
    fn missing_keys_say_where_to_put_them() {
        let e = ConnectionArgs::default()
            .merge(Profile::default(), Some(Path::new("/x/profile.toml")))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("--access-key-id")
                && e.contains("IMGSEARCH_ACCESS_KEY_ID")
                && e.contains("/x/profile.toml"),
            "{e}"
        );
    }

    #[test]
    fn bad_profiles_are_rejected_with_the_path() {
        let e = Profile::parse("endpont = \"x\"", Path::new("/p.toml")).unwrap_err();
        assert!(e.to_string().contains("/p.toml"), "{e}");
        let explicit = ConnectionArgs {
            profile: Some(PathBuf::from("/nonexistent/profile.toml")),
            ..Default::default()
        };
        assert!(matches!(explicit.resolve(), Err(ProfileError::Read { .. })));
    }
}
