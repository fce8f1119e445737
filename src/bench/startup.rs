//! `imgsearch bench startup`: how long the server's index start-up takes for a database of
//! N images — the path `serve` runs before it listens (`DbIndexes::open`): the first start
//! (no snapshot: rebuilt from the store, then saved), a clean restart (snapshot loaded and
//! diffed against the store's ids), and a restart after a "crash" that left 1,000 stored
//! images out of the snapshot. Vectors are synthetic (clustered, as in `bench index`) and
//! go through the real SQLite store on disk. Prints one JSON object. Model loading is not
//! included (measured by `bench embed`; about a second).

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Instant;

use anyhow::Context;
use serde_json::json;

use super::index::clustered;
use super::{resident_bytes, scratch_dir, vector_only};
use crate::embedding::EMBEDDING_DIM;
use crate::service::db_index::QueryVectors;
use crate::service::registry::DbIndexes;
use crate::service::IndexSettings;
use crate::store::{DbRef, ImageStore, NewImage, SqliteStore};

#[derive(Debug, clap::Args)]
pub struct StartupBench {
    /// Images in the database.
    #[arg(long, default_value_t = 100_000)]
    images: usize,
    /// Where to put the store (default: a new directory under the system temp dir, removed
    /// afterwards).
    #[arg(long)]
    dir: Option<PathBuf>,
}

pub fn run(b: StartupBench) -> anyhow::Result<ExitCode> {
    let result = match &b.dir {
        Some(dir) => measure(&b, dir),
        None => measure(&b, scratch_dir("startup", None)?.path()),
    };
    println!("{}", result?);
    Ok(ExitCode::SUCCESS)
}

fn fill(store: &SqliteStore, db: DbRef<'_>, from: usize, count: usize) -> anyhow::Result<()> {
    let entity = "startup";
    let mut done = 0;
    while done < count {
        let n = (count - done).min(1000);
        let vectors = clustered(n, EMBEDDING_DIM, (from + done) as u64 + 1);
        let batch: Vec<NewImage<'_>> = vectors
            .chunks_exact(EMBEDDING_DIM)
            .map(|v| vector_only(entity, v))
            .collect();
        store.add_images(db, &batch)?;
        done += n;
    }
    Ok(())
}

fn measure(b: &StartupBench, dir: &std::path::Path) -> anyhow::Result<serde_json::Value> {
    let store = Arc::new(SqliteStore::open(dir).context("opening the store")?);
    let db = DbRef::new("bench", "startup");
    if store.get_db(db)?.is_none() {
        store.create_db(db)?;
    }
    let have = store.get_db(db)?.map_or(0, |d| d.image_count as usize);
    let started = Instant::now();
    if have < b.images {
        fill(&store, db, have, b.images - have)?;
    }
    let fill_s = started.elapsed().as_secs_f64();
    let settings = IndexSettings::in_data_dir(dir);
    let _ = std::fs::remove_dir_all(&settings.dir);

    let open = |what: &str| -> anyhow::Result<(f64, Option<u64>, DbIndexes)> {
        let rss = resident_bytes();
        let t = Instant::now();
        let ix = DbIndexes::open(store.clone(), settings.clone())
            .map_err(|e| anyhow::anyhow!("{what}: {e}"))?;
        let secs = t.elapsed().as_secs_f64();
        let grew = resident_bytes().zip(rss).map(|(a, b)| a.saturating_sub(b));
        Ok((secs, grew, ix))
    };
    let (first_s, _, ix) = open("first start")?;
    drop(ix);
    let (clean_s, rss, ix) = open("clean restart")?;
    let query = clustered(1, EMBEDDING_DIM, 1);
    let t = Instant::now();
    let dbix = ix.get("bench", "startup").context("database missing")?;
    let hits = dbix
        .search(
            store.as_ref(),
            &QueryVectors {
                semantic: vec![query],
                copy: None,
            },
            10,
            settings.rerank,
            None,
        )
        .map_err(|e| anyhow::anyhow!("search: {e}"))?;
    let first_search_ms = t.elapsed().as_secs_f64() * 1000.0;
    let images = dbix.len();
    let ann = dbix.is_ann();
    drop((dbix, ix));
    // A crash after 1,000 more stored images: the snapshot lacks them.
    let before = store.get_db(db)?.map_or(0, |d| d.image_count as usize);
    fill(&store, db, before, 1000)?;
    let (crash_s, _, ix) = open("restart after a crash")?;
    let after = ix.get("bench", "startup").map_or(0, |d| d.len());
    Ok(json!({
        "bench": "startup",
        "images": images,
        "ann": ann,
        "store_fill_s": fill_s,
        "first_start_rebuild_s": first_s,
        "clean_restart_s": clean_s,
        "clean_restart_rss_bytes_per_image": rss.map(|r| r as f64 / images.max(1) as f64),
        "first_search_ms": first_search_ms,
        "first_search_hits": hits.0.len(),
        "restart_after_crash_s": crash_s,
        "replayed_after_crash": after.saturating_sub(images),
    }))
}
