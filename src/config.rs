//! Configuration as typed structs that clap fills from flags and environment variables,
//! after `--config FILE` (TOML, keys = long flag names) has been turned into environment:
//! `ModelConfig` (every command that runs the network) and `ServeConfig` (`serve`).
//! Defaults work out of the box on a set-up checkout.

use std::net::SocketAddr;
use std::path::PathBuf;

use crate::service::IndexSettings;
use crate::vision::copy_model::{CopyModel, COPY_MODEL_IN_CACHE};
use crate::vision::embedder::BatcherConfig;
use crate::vision::embedder::Networks;
use crate::vision::model::{
    build_graph, locate_copy_model, locate_subject_model, EfficientNet, ModelError, ModelFiles,
    ModelOptions, ONNXRUNTIME_IN_CACHE, WEIGHTS_IN_CACHE,
};
use crate::vision::subject::{SubjectModel, SUBJECT_MODEL_IN_CACHE};

/// Where the network's files are and how it runs.
#[derive(Debug, Clone, clap::Args)]
pub struct ModelConfig {
    /// EfficientNet-Lite0 weights (.pth). Default: the repo's .cache/ (scripts/setup.sh).
    #[arg(long, env = "IMGSEARCH_WEIGHTS", global = true)]
    pub weights: Option<PathBuf>,
    /// ONNX Runtime shared library. Default: the repo's .cache/ (scripts/setup.sh).
    #[arg(long, env = "IMGSEARCH_ONNXRUNTIME", global = true)]
    pub onnxruntime: Option<PathBuf>,
    /// The copy-detection model (SSCD, `sscd_distilled.onnx`). Default: the repo's .cache/
    /// (scripts/setup.sh); when it is not there the server runs semantic-only and says so.
    #[arg(long, env = "IMGSEARCH_COPY_MODEL", global = true)]
    pub copy_model: Option<PathBuf>,
    /// Directories laid out like the repo's `.cache/` (`model/…`, `onnxruntime/…`), searched
    /// for each model file before `.cache/` (':'-separated in the environment and the
    /// config file): a package's /usr/lib/imgsearch and what `imgsearch model fetch` fills.
    #[arg(
        long,
        env = "IMGSEARCH_MODEL_DIRS",
        value_delimiter = ':',
        global = true
    )]
    pub model_dirs: Vec<PathBuf>,
    /// Run without the copy-detection model (semantic search only), e.g. for a user who
    /// does not accept its licence terms.
    #[arg(long, env = "IMGSEARCH_NO_COPY_MODEL", global = true)]
    pub no_copy_model: bool,
    /// The subject model behind `Crop=true` (U-2-Net small, `u2netp.onnx`). Default: the
    /// repo's .cache/ (scripts/setup.sh); when it is not there the server runs and
    /// `Crop=true` gets 503 ServiceUnavailable saying so.
    #[arg(long, env = "IMGSEARCH_SUBJECT_MODEL", global = true)]
    pub subject_model: Option<PathBuf>,
    /// Inference sessions running in parallel (0 = one per core). One session using every
    /// core measured fastest end to end on 2 cores (README, `bench embed`), hence 1.
    #[arg(
        long,
        env = "IMGSEARCH_INFERENCE_WORKERS",
        default_value_t = 1,
        global = true
    )]
    pub inference_workers: usize,
    /// Intra-op threads per inference session (0 = one per core).
    #[arg(long, env = "IMGSEARCH_THREADS", default_value_t = 0, global = true)]
    pub threads: usize,
    /// Most images per inference batch.
    #[arg(long, env = "IMGSEARCH_MAX_BATCH", default_value_t = 8, global = true)]
    pub max_batch: usize,
    /// How long (ms) a request waits for others to share its inference batch.
    #[arg(
        long,
        env = "IMGSEARCH_BATCH_WINDOW_MS",
        default_value_t = 2,
        global = true
    )]
    pub batch_window_ms: u64,
}

impl ModelConfig {
    pub fn files(&self) -> Result<ModelFiles, ModelError> {
        ModelFiles::locate(
            self.weights
                .clone()
                .or_else(|| self.in_model_dirs(WEIGHTS_IN_CACHE)),
            self.onnxruntime
                .clone()
                .or_else(|| self.in_model_dirs(ONNXRUNTIME_IN_CACHE)),
        )
    }

    /// The first of [`Self::model_dirs`] holding `rel`.
    fn in_model_dirs(&self, rel: &str) -> Option<PathBuf> {
        self.model_dirs
            .iter()
            .map(|d| d.join(rel))
            .find(|p| p.is_file())
    }

    /// Loads the networks of each inference worker (the graph is built once): the semantic
    /// one, and the copy-detection one unless it is off or absent ([`Self::copy_model_file`]).
    pub fn load_models(&self) -> Result<Vec<Networks>, ModelError> {
        let files = self.files()?;
        let graph = build_graph(&files.weights)?;
        let copy = self.copy_model_file()?;
        let workers = if self.inference_workers == 0 {
            std::thread::available_parallelism().map_or(1, |n| n.get())
        } else {
            self.inference_workers
        };
        (0..workers)
            .map(|_| {
                Ok(Networks {
                    semantic: EfficientNet::from_onnx(&files.onnxruntime, &graph, self.options())?,
                    copy: match &copy {
                        Some(path) => {
                            Some(CopyModel::load(&files.onnxruntime, path, self.options())?)
                        }
                        None => None,
                    },
                })
            })
            .collect()
    }

    /// The copy-detection model to load: `None` with `--no-copy-model`, or (with a warning)
    /// when no path was given and the cache lacks it; an explicit path that is missing is
    /// an error.
    pub fn copy_model_file(&self) -> Result<Option<PathBuf>, ModelError> {
        if self.no_copy_model {
            return Ok(None);
        }
        if let Some(path) = self
            .copy_model
            .is_none()
            .then(|| self.in_model_dirs(COPY_MODEL_IN_CACHE))
            .flatten()
        {
            return Ok(Some(path));
        }
        match locate_copy_model(self.copy_model.clone()) {
            Ok(path) => Ok(Some(path)),
            Err(e) if self.copy_model.is_none() => {
                tracing::warn!("{e}; running without copy detection (semantic search only)");
                Ok(None)
            }
            Err(e) => Err(e),
        }
    }

    /// The subject model for `Crop=true`: `None` (with a warning) when no path was given
    /// and the cache lacks it; an explicit path that is missing is an error. One session
    /// for the whole server, with this config's threads: it runs only on request.
    pub fn load_subject_model(&self) -> Result<Option<SubjectModel>, ModelError> {
        let in_dirs = self
            .subject_model
            .is_none()
            .then(|| self.in_model_dirs(SUBJECT_MODEL_IN_CACHE))
            .flatten();
        let path =
            match in_dirs.map_or_else(|| locate_subject_model(self.subject_model.clone()), Ok) {
                Ok(path) => path,
                Err(e) if self.subject_model.is_none() => {
                    tracing::warn!("{e}; Crop=true is unavailable");
                    return Ok(None);
                }
                Err(e) => return Err(e),
            };
        let files = self.files()?;
        SubjectModel::load(&files.onnxruntime, &path, self.options()).map(Some)
    }

    pub fn options(&self) -> ModelOptions {
        ModelOptions {
            intra_threads: self.threads,
            spinning: false,
        }
    }

    pub fn batcher(&self, queue_capacity: usize) -> BatcherConfig {
        BatcherConfig {
            max_batch: self.max_batch,
            batch_window: std::time::Duration::from_millis(self.batch_window_ms),
            queue_capacity,
        }
    }
}

/// `imgsearch serve`: where to listen and keep data, limits, metrics, index settings.
#[derive(Debug, Clone, clap::Args)]
pub struct ServeConfig {
    /// Address to listen on (port 0 picks a free port; the chosen one is printed).
    #[arg(long, env = "IMGSEARCH_LISTEN", default_value = "127.0.0.1:8080")]
    pub listen: SocketAddr,
    /// Data directory: the database, the keys file, the token key.
    #[arg(long, env = "IMGSEARCH_DATA", default_value = "./data")]
    pub data: PathBuf,
    /// Where the images are stored: `sqlite` (default: the file imgsearch.db in the data
    /// directory) or a PostgreSQL database, `postgres://user[:password]@host[:port]/dbname`
    /// (preview; `?schema=NAME` picks the schema, default `imgsearch`). Keys, the list-token
    /// key, nonces and index snapshots stay in the data directory either way.
    #[arg(long, env = "IMGSEARCH_STORE", default_value = "sqlite")]
    pub store: String,
    /// Allow ImageUrl to reach loopback/private/link-local addresses (local object stores, tests).
    #[arg(long, env = "IMGSEARCH_ALLOW_PRIVATE_URLS")]
    pub allow_private_urls: bool,
    /// Images waiting for the network before new requests get 503 ServiceUnavailable.
    #[arg(long, env = "IMGSEARCH_QUEUE", default_value_t = 64)]
    pub queue: usize,
    /// Most images per database (the public service caps at 50,000); unlimited if unset.
    #[arg(long, env = "IMGSEARCH_MAX_IMAGES_PER_DB")]
    pub max_images_per_db: Option<u64>,
    /// Most image databases one access key may hold (0: no limit).
    #[arg(
        long,
        env = "IMGSEARCH_MAX_DATABASES_PER_TENANT",
        default_value_t = 1000
    )]
    pub max_databases_per_tenant: u64,
    /// Most images one access key may store, all its databases together (0: no limit).
    /// The default, 5 million, is about 11 GB of index RAM with both descriptors.
    #[arg(
        long,
        env = "IMGSEARCH_MAX_IMAGES_PER_TENANT",
        default_value_t = 5_000_000
    )]
    pub max_images_per_tenant: u64,
    /// Serve /metrics on this address instead of the main one (e.g. an internal interface).
    #[arg(long, env = "IMGSEARCH_METRICS_LISTEN", conflicts_with = "no_metrics")]
    pub metrics_listen: Option<SocketAddr>,
    /// Do not serve /metrics at all.
    #[arg(long, env = "IMGSEARCH_NO_METRICS")]
    pub no_metrics: bool,
    /// SearchImage matches uploaded as bytes get a signed link to their thumbnail that
    /// works this long (0: no links, ImageUrl stays empty).
    #[arg(long, env = "IMGSEARCH_IMAGE_LINK_SECS", default_value_t = 1800)]
    pub image_link_secs: u64,
    /// The server's address as clients see it, for image links (e.g. https://img.example.com
    /// behind a TLS proxy); default: http:// and the request's Host.
    #[arg(long, env = "IMGSEARCH_PUBLIC_URL")]
    pub public_url: Option<String>,
    /// The bucket the official SDK's Advance calls upload files to: they POST to
    /// `http://{bucket}.{endpoint}/`, reaching this server as their HTTP proxy or through a
    /// hosts/DNS entry (README, "Uploads from the SDK"). Empty: uploads off.
    #[arg(long, env = "IMGSEARCH_UPLOAD_BUCKET", default_value = crate::service::uploads::DEFAULT_UPLOAD_BUCKET)]
    pub upload_bucket: String,
    /// The endpoint (host name, optionally :port) of the upload bucket.
    #[arg(long, env = "IMGSEARCH_UPLOAD_ENDPOINT", default_value = crate::service::uploads::DEFAULT_UPLOAD_ENDPOINT)]
    pub upload_endpoint: String,
    /// Seconds an upload policy from AuthorizeFileUpload may be used.
    #[arg(long, env = "IMGSEARCH_UPLOAD_POLICY_SECS", default_value_t = crate::rules::UPLOAD_POLICY_SECS)]
    pub upload_policy_secs: i64,
    /// Seconds an uploaded file is kept for the action that names it (then deleted).
    #[arg(long, env = "IMGSEARCH_UPLOAD_OBJECT_SECS", default_value_t = crate::rules::UPLOAD_OBJECT_SECS)]
    pub upload_object_secs: i64,
    /// Connections open at once; more wait until one closes (keep it well under the
    /// process's file-descriptor limit, `ulimit -n`).
    #[arg(long, env = "IMGSEARCH_MAX_CONNECTIONS", default_value_t = 512)]
    pub max_connections: usize,
    /// Seconds a client has to send a request's headers; also how long an idle kept-alive
    /// connection stays open.
    #[arg(long, env = "IMGSEARCH_HEADER_TIMEOUT_SECS", default_value_t = 30)]
    pub header_timeout_secs: u64,
    /// Seconds a request body may stall before 408 (plus one second per 64 KiB received).
    #[arg(long, env = "IMGSEARCH_BODY_TIMEOUT_SECS", default_value_t = 30)]
    pub body_timeout_secs: u64,
    /// On SIGTERM/SIGINT, seconds in-flight requests get to finish before their
    /// connections are dropped (the index snapshot is written after either way).
    #[arg(long, env = "IMGSEARCH_SHUTDOWN_GRACE_SECS", default_value_t = 10)]
    pub shutdown_grace_secs: u64,
    /// Image requests (AddImage, SearchImage) in progress at once; more get 503 at once,
    /// uploads before their body is read. Bounds memory: about 20 MB each at worst.
    #[arg(long, env = "IMGSEARCH_MAX_IMAGE_REQUESTS", default_value_t = 16)]
    pub max_image_requests: usize,
    /// Image requests in progress for one access key (one tenant cannot take every slot).
    #[arg(
        long,
        env = "IMGSEARCH_MAX_IMAGE_REQUESTS_PER_KEY",
        default_value_t = 8
    )]
    pub max_image_requests_per_key: usize,
    /// Signature nonces remembered for replay protection, all access keys together (about
    /// 100 bytes each); beyond it signed requests get 503 until some expire.
    #[arg(long, env = "IMGSEARCH_NONCE_CAPACITY", default_value_t = crate::api::NonceCache::DEFAULT_CAPACITY)]
    pub nonce_capacity: usize,
    /// Signature nonces remembered per access key: one tenant at its quota gets 503, the
    /// others go on.
    #[arg(long, env = "IMGSEARCH_NONCES_PER_KEY", default_value_t = crate::api::NonceCache::DEFAULT_PER_KEY)]
    pub nonces_per_key: usize,
    /// Databases with at least this many images are searched with the ANN (HNSW) index,
    /// smaller ones exactly.
    #[arg(long, env = "IMGSEARCH_ANN_THRESHOLD", default_value_t = IndexSettings::DEFAULT_ANN_THRESHOLD)]
    pub ann_threshold: usize,
    /// Seconds between writing changed ANN indexes to disk (they are also written at
    /// shutdown; after a crash the store's changes since are replayed at start-up).
    #[arg(long, env = "IMGSEARCH_INDEX_SNAPSHOT_SECS", default_value_t = 300)]
    pub index_snapshot_secs: u64,
}

/// Environment variable naming a configuration file (same as `--config FILE`).
pub const CONFIG_ENV: &str = "IMGSEARCH_CONFIG";

#[derive(Debug, thiserror::Error)]
pub enum ConfigFileError {
    #[error("cannot read configuration file {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("configuration file {path} is not valid TOML: {reason}")]
    Parse { path: String, reason: String },
    #[error("configuration file {path}: key \"{key}\" must be a string, number or boolean")]
    Value { path: String, key: String },
}

/// Reads a TOML configuration file whose top-level keys are the long flag names
/// (`listen = "0.0.0.0:8080"`, `data = "/var/lib/imgsearch"`, `allow-private-urls = true`,
/// `threads = 2`, ...) and returns them as the matching `IMGSEARCH_*` environment
/// variables. Precedence is flag > environment > file > default: the caller sets only
/// variables that are not already set, before the command line is parsed.
pub fn config_file_env(path: &std::path::Path) -> Result<Vec<(String, String)>, ConfigFileError> {
    let shown = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|source| ConfigFileError::Read {
        path: shown.clone(),
        source,
    })?;
    let table: toml::Table = text
        .parse()
        .map_err(|e: toml::de::Error| ConfigFileError::Parse {
            path: shown.clone(),
            reason: e.to_string(),
        })?;
    let mut vars = Vec::new();
    for (key, value) in table {
        let value = match value {
            toml::Value::String(s) => s,
            toml::Value::Integer(i) => i.to_string(),
            toml::Value::Float(f) => f.to_string(),
            toml::Value::Boolean(b) => b.to_string(),
            _ => return Err(ConfigFileError::Value { path: shown, key }),
        };
        let name = match key.as_str() {
            // Flags whose environment variable is not simply IMGSEARCH_<FLAG>.
            "queue" => "IMGSEARCH_QUEUE".to_string(),
            "inference-workers" => "IMGSEARCH_INFERENCE_WORKERS".to_string(),
            other => format!("IMGSEARCH_{}", other.to_ascii_uppercase().replace('-', "_")),
        };
        vars.push((name, value));
    }
    Ok(vars)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_file_keys_become_env_vars() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("imgsearch.toml");
        std::fs::write(
            &path,
            "listen = \"0.0.0.0:9000\"\nallow-private-urls = true\nthreads = 2\n",
        )
        .unwrap();
        let mut vars = config_file_env(&path).unwrap();
        vars.sort();
        assert_eq!(
            vars,
            vec![
                ("IMGSEARCH_ALLOW_PRIVATE_URLS".into(), "true".into()),
                ("IMGSEARCH_LISTEN".into(), "0.0.0.0:9000".into()),
                ("IMGSEARCH_THREADS".into(), "2".into()),
            ]
        );
    }

    #[test]
    fn bad_config_files_are_clear_errors() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("bad.toml");
        std::fs::write(&path, "listen = [1, 2]").unwrap();
        assert!(config_file_env(&path)
            .unwrap_err()
            .to_string()
            .contains("listen"));
        std::fs::write(&path, "listen = ").unwrap();
        assert!(config_file_env(&path)
            .unwrap_err()
            .to_string()
            .contains("not valid TOML"));
        assert!(config_file_env(&dir.path().join("missing.toml")).is_err());
    }
}
