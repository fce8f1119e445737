//! `imgsearch serve`: opens the store, loads the network, builds the search indexes and
//! the nonce cache, and serves the API until SIGTERM/SIGINT; then drains in-flight requests
//! (for at most the grace period), saves the live nonces, writes the index snapshots and
//! closes.

use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use anyhow::Context;

use crate::api::admission::{Admission, AdmissionLimits};
use crate::api::connections::{serve, ConnectionLimits};
use crate::api::image_links::ImageLinks;
use crate::api::keys::{load_keys_from_env, KeySource};
use crate::api::server::{metrics_router, router, AppState};
use crate::api::upload_policy::UploadPolicies;
use crate::api::NonceCache;
use crate::config::{ModelConfig, ServeConfig};
use crate::fetch::{FetchConfig, ImageFetcher};
use crate::service::images::ImageService;
use crate::service::list_token::ListTokenKey;
use crate::service::uploads::UploadBucket;
use crate::service::IndexSettings;
use crate::signing::unix_seconds;
use crate::store::{ImageStore, PgStore, SqliteStore, StoreOptions};
use crate::vision::embedder::EmbeddingBatcher;

/// The live signature nonces (snapshot; `nonces.journal*` beside it since the last start).
pub const NONCE_FILE: &str = "nonces";

pub fn run(model: &ModelConfig, config: ServeConfig) -> anyhow::Result<ExitCode> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    runtime.block_on(run_async(model, config))
}

async fn run_async(model: &ModelConfig, config: ServeConfig) -> anyhow::Result<ExitCode> {
    std::fs::create_dir_all(&config.data)
        .with_context(|| format!("creating data directory {}", config.data.display()))?;
    let keys = load_keys_from_env(&config.data)?;
    for w in &keys.warnings {
        eprintln!("warning: {w}");
    }
    match (&keys.source, &keys.generated) {
        (KeySource::Generated(path), Some(pair)) => {
            eprintln!(
                "Generated an access key pair (stored in {}, shown only now):\n  AccessKeyId:     {}\n  AccessKeySecret: {}",
                path.display(),
                pair.access_key_id(),
                pair.secret()
            );
        }
        (KeySource::File(path), _) => eprintln!("access keys: {}", path.display()),
        _ => eprintln!("access keys: IMGSEARCH_ACCESS_KEYS"),
    }
    let store = open_store(&config).await?;
    let secret = ListTokenKey::load_or_create_secret(&config.data)?;
    let tokens = ListTokenKey::from_secret(&secret)?;
    let links = (config.image_link_secs > 0)
        .then(|| ImageLinks::new(&secret, config.image_link_secs, config.public_url.clone()))
        .flatten();
    let embedder = Arc::new(EmbeddingBatcher::start_many(
        model.load_models()?,
        model.batcher(config.queue),
    ));
    if embedder.has_copy_model() {
        eprintln!("copy detection: on (SSCD descriptor beside the semantic embedding)");
    } else {
        eprintln!(
            "copy detection: OFF, semantic search only ({}); databases created with \
             Descriptors=copy cannot take images",
            if model.no_copy_model {
                "--no-copy-model"
            } else {
                "the copy-detection model was not found; run scripts/setup.sh"
            }
        );
    }
    let fetcher = ImageFetcher::new(FetchConfig {
        allow_private: config.allow_private_urls,
        ..FetchConfig::default()
    })?;
    let index_settings = IndexSettings {
        ann_threshold: config.ann_threshold.max(1),
        snapshot_every: Duration::from_secs(config.index_snapshot_secs.max(1)),
        ..IndexSettings::in_data_dir(&config.data)
    };
    let upload_bucket = if config.upload_bucket.is_empty() {
        None
    } else {
        Some(UploadBucket::new(
            &config.upload_bucket,
            &config.upload_endpoint,
        )?)
    };
    let subject = model.load_subject_model()?.map(Arc::new);
    eprintln!(
        "Crop=true (subject detection): {}",
        if subject.is_some() {
            "on (U-2-Net small, runs only when a request asks)"
        } else {
            "OFF, the subject model was not found; run scripts/setup.sh"
        }
    );
    // On a blocking thread: it reads the store (the PostgreSQL driver must not run on an
    // async runtime's thread).
    let mut service = tokio::task::spawn_blocking(move || {
        ImageService::start(store, fetcher, embedder, tokens, index_settings)
    })
    .await
    .context("starting the service")??
    .with_subject_model(subject);
    if let Some(bucket) = upload_bucket {
        eprintln!(
            "uploads (SDK Advance calls): http://{}/ (through this server as HTTP proxy, or a \
             hosts/DNS entry)",
            bucket.host()
        );
        service = service.with_upload_bucket(bucket, config.upload_object_secs);
    }
    let service = Arc::new(service);
    let metrics_on_main = !config.no_metrics && config.metrics_listen.is_none();
    let nonce_file = config.data.join(NONCE_FILE);
    let nonces = NonceCache::open(
        &nonce_file,
        unix_seconds(SystemTime::now()),
        config.nonce_capacity,
        config.nonces_per_key,
    )
    .with_context(|| format!("reading {}", nonce_file.display()))?;
    let state = Arc::new(AppState {
        body_timeout: Duration::from_secs(config.body_timeout_secs.max(1)),
        nonces,
        admission: Admission::new(AdmissionLimits {
            max_in_flight: config.max_image_requests,
            max_in_flight_per_key: config.max_image_requests_per_key,
        }),
        links,
        upload_policies: UploadPolicies::new(&secret, config.upload_policy_secs),
        ..AppState::new(service.clone(), keys.store, metrics_on_main)
    });
    let limits = ConnectionLimits {
        max_connections: config.max_connections.max(1),
        header_timeout: Duration::from_secs(config.header_timeout_secs.max(1)),
        grace: Duration::from_secs(config.shutdown_grace_secs),
    };
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let metrics_task = match config.metrics_listen {
        Some(addr) => {
            let listener = tokio::net::TcpListener::bind(addr)
                .await
                .with_context(|| format!("binding the metrics address {addr}"))?;
            eprintln!(
                "imgsearch metrics on http://{}/metrics",
                listener.local_addr()?
            );
            let mut rx = stop_rx.clone();
            let app = metrics_router(state.clone());
            Some(tokio::spawn(async move {
                serve(listener, app, limits, async move {
                    let _ = rx.wait_for(|stop| *stop).await;
                })
                .await
            }))
        }
        None => None,
    };
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .with_context(|| format!("binding {}", config.listen))?;
    let addr = listener.local_addr()?;
    eprintln!(
        "imgsearch listening on http://{addr} (data in {})",
        config.data.display()
    );
    tracing::info!(%addr, data = %config.data.display(), "listening");
    serve(listener, router(state.clone()), limits, shutdown_signal()).await?;
    let _ = stop_tx.send(true);
    if let Some(task) = metrics_task {
        task.await.context("metrics listener")??;
    }
    eprintln!(
        "imgsearch: shutting down; in-flight requests finished or dropped; writing index snapshots"
    );
    // Live nonces carry over a restart (the journal covers a crash); the snapshot written
    // here lets the next start skip replaying the journal.
    if let Err(e) = state
        .nonces
        .save(&nonce_file, unix_seconds(SystemTime::now()))
    {
        tracing::error!(error = %e, file = %nonce_file.display(), "saving the nonce cache failed");
    }
    tokio::task::spawn_blocking(move || service.snapshot_indexes())
        .await
        .context("writing the index snapshots")?;
    drop(state); // closes the embedder (joins its threads) and the store
    Ok(ExitCode::SUCCESS)
}

/// Opens the store `--store` names (SQLite in the data directory by default) and says which.
async fn open_store(config: &ServeConfig) -> anyhow::Result<Arc<dyn ImageStore>> {
    let options = StoreOptions {
        max_images_per_db: config.max_images_per_db,
        max_databases_per_tenant: (config.max_databases_per_tenant > 0)
            .then_some(config.max_databases_per_tenant),
        max_images_per_tenant: (config.max_images_per_tenant > 0)
            .then_some(config.max_images_per_tenant),
    };
    let store = config.store.trim();
    if store.is_empty() || store == "sqlite" {
        let store = SqliteStore::open_with(&config.data, options)?;
        eprintln!("store: SQLite, {}", store.path().display());
        return Ok(Arc::new(store));
    }
    if store.starts_with("postgres://") || store.starts_with("postgresql://") {
        let url = store.to_owned();
        let shown = redact_url(store);
        // The driver blocks: on a blocking thread, like every later call.
        let store = tokio::task::spawn_blocking(move || PgStore::open(&url, options))
            .await
            .context("opening the PostgreSQL store")?
            .with_context(|| format!("opening the PostgreSQL store {shown}"))?;
        eprintln!(
            "store: PostgreSQL (preview), {shown}, schema {}",
            store.schema()
        );
        return Ok(Arc::new(store));
    }
    anyhow::bail!("--store must be \"sqlite\" or a postgres:// URL, not {store:?}")
}

/// The URL without its password (in the user part or a `password=` parameter), for
/// messages.
fn redact_url(url: &str) -> String {
    let (base, query) = url.split_once('?').unwrap_or((url, ""));
    let base = match base.split_once("://") {
        Some((scheme, rest)) => match rest.split_once('@') {
            Some((user_info, host)) if user_info.contains(':') => {
                let user = user_info.split(':').next().unwrap_or("");
                format!("{scheme}://{user}:***@{host}")
            }
            _ => base.to_owned(),
        },
        None => base.to_owned(),
    };
    if query.is_empty() {
        return base;
    }
    let query: Vec<String> = query
        .split('&')
        .map(|p| match p.split_once('=') {
            Some(("password", _)) => "password=***".to_owned(),
            _ => p.to_owned(),
        })
        .collect();
    format!("{base}?{}", query.join("&"))
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
}

#[cfg(test)]
mod tests {
    use super::redact_url;

    #[test]
    fn store_urls_are_shown_without_passwords() {
        for (url, shown) in [
            (
                "postgres://u:secret@h:5432/db",
                "postgres://u:***@h:5432/db",
            ),
            ("postgres://u@h/db?schema=s", "postgres://u@h/db?schema=s"),
            (
                "postgres://u@h/db?password=secret&schema=s",
                "postgres://u@h/db?password=***&schema=s",
            ),
            (
                "postgres://u@%2Frun%2Fpostgresql/db",
                "postgres://u@%2Frun%2Fpostgresql/db",
            ),
        ] {
            assert_eq!(redact_url(url), shown);
        }
    }
}
