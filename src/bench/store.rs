//! `imgsearch bench store`: acknowledged adds per second of the SQLite store as the server
//! opens it (WAL, `synchronous=FULL`, group commit), one add per call from 1, 4 and 16
//! threads, then `add_images` batches, then how long loading every vector back takes. One
//! 1280-d vector and a 6 kB thumbnail per image, in a fresh store under `--dir`; with
//! `--store postgres://…`, the same in a fresh schema of that PostgreSQL database (dropped
//! afterwards).

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Instant;

use anyhow::Context;
use serde_json::json;

use super::{round1, scratch_dir, vector_only};
use crate::embedding::{Descriptor, EMBEDDING_DIM};
use crate::store::{DbRef, ImageStore, NewImage, PgStore, SqliteStore, StoreOptions};

#[derive(Debug, clap::Args)]
pub struct StoreBench {
    /// Where the scratch store goes (a temporary directory inside it, removed afterwards).
    /// Put it on the disk you want measured: the figure is mostly its fsync latency.
    #[arg(long)]
    dir: Option<PathBuf>,
    /// Adds per thread-count round.
    #[arg(long, default_value_t = 400)]
    adds: usize,
    /// Measure the PostgreSQL store on this database instead (`postgres://…`; a schema of its
    /// own, `bench_<pid>`, dropped at the end).
    #[arg(long)]
    store: Option<String>,
}

pub fn run(b: StoreBench) -> anyhow::Result<ExitCode> {
    let scratch = scratch_dir("store", b.dir.as_deref())?;
    println!("{}", measure(&b, scratch.path())?);
    Ok(ExitCode::SUCCESS)
}

fn image<'a>(entity_id: &'a str, embedding: &'a [f32], thumbnail: &'a [u8]) -> NewImage<'a> {
    NewImage {
        thumbnail: Some(thumbnail),
        attributes: &crate::store::Attributes::NONE,
        ..vector_only(entity_id, embedding)
    }
}

fn measure(b: &StoreBench, dir: &std::path::Path) -> anyhow::Result<serde_json::Value> {
    let (store, backend): (Arc<dyn ImageStore>, &str) = match &b.store {
        Some(url) => {
            let sep = if url.contains('?') { '&' } else { '?' };
            let url = format!("{url}{sep}schema=bench_{}", std::process::id());
            let store = PgStore::open(&url, StoreOptions::default())
                .context("opening the scratch PostgreSQL store")?;
            (Arc::new(store), "postgres")
        }
        None => (
            Arc::new(SqliteStore::open(dir).context("opening the scratch store")?),
            "sqlite",
        ),
    };
    let result = measure_on(b, &store);
    if let Some(url) = &b.store {
        drop_bench_schema(url);
    }
    let mut result = result?;
    result["backend"] = json!(backend);
    Ok(result)
}

/// Drops the scratch schema `measure` made (best effort; a message when it cannot).
fn drop_bench_schema(url: &str) {
    let dropped = crate::store::postgres::parse_url(url).and_then(|(config, _)| {
        let mut c = config
            .connect(postgres::NoTls)
            .map_err(crate::store::StoreError::from)?;
        c.batch_execute(&format!(
            "DROP SCHEMA IF EXISTS bench_{} CASCADE",
            std::process::id()
        ))
        .map_err(crate::store::StoreError::from)
    });
    if let Err(e) = dropped {
        eprintln!(
            "could not drop the scratch schema bench_{}: {e}",
            std::process::id()
        );
    }
}

fn measure_on(b: &StoreBench, store: &Arc<dyn ImageStore>) -> anyhow::Result<serde_json::Value> {
    let db = DbRef::new("bench", "bench");
    store.create_db(db)?;
    let vector: Arc<Vec<f32>> =
        Arc::new((0..EMBEDDING_DIM).map(|i| (i % 97) as f32 / 97.0).collect());
    let thumbnail: Arc<Vec<u8>> = Arc::new(vec![0x55; 6_000]);

    let mut single = Vec::new();
    for threads in [1usize, 4, 16] {
        let start = Instant::now();
        let workers: Vec<_> = (0..threads)
            .map(|t| {
                let (store, vector, thumbnail) = (store.clone(), vector.clone(), thumbnail.clone());
                let per_thread = b.adds / threads;
                std::thread::spawn(move || -> anyhow::Result<()> {
                    for i in 0..per_thread {
                        let entity = format!("t{threads}_{t}_{i}");
                        store.add_image(db, &image(&entity, &vector, &thumbnail))?;
                    }
                    Ok(())
                })
            })
            .collect();
        for w in workers {
            w.join()
                .map_err(|_| anyhow::anyhow!("an add thread panicked"))??;
        }
        let adds_per_s = (b.adds / threads * threads) as f64 / start.elapsed().as_secs_f64();
        eprintln!("{threads} thread(s): {adds_per_s:.0} adds/s");
        single.push(json!({"threads": threads, "adds_per_s": round1(adds_per_s)}));
    }

    let mut batches = Vec::new();
    for batch in [16usize, 64] {
        let entities: Vec<String> = (0..batch).map(|i| format!("b{batch}_{i}")).collect();
        let images: Vec<NewImage<'_>> = entities
            .iter()
            .map(|e| image(e, &vector, &thumbnail))
            .collect();
        let rounds = (b.adds * 2 / batch).max(1);
        let start = Instant::now();
        for _ in 0..rounds {
            store.add_images(db, &images)?;
        }
        let adds_per_s = (rounds * batch) as f64 / start.elapsed().as_secs_f64();
        eprintln!("add_images batches of {batch}: {adds_per_s:.0} adds/s");
        batches.push(json!({"batch": batch, "adds_per_s": round1(adds_per_s)}));
    }

    let start = Instant::now();
    let set = store.load_embeddings(db, Descriptor::Semantic)?;
    let load_ms = start.elapsed().as_secs_f64() * 1e3;
    Ok(json!({
        "bench": "store",
        "vector_dim": EMBEDDING_DIM,
        "thumbnail_bytes": thumbnail.len(),
        "add_image": single,
        "add_images": batches,
        "load_embeddings": {"vectors": set.len(), "ms": round1(load_ms)},
    }))
}
