//! Benchmarks and research measurements: `imgsearch bench embed | quality | index | filter |
//! startup | store | preprocess | overload`. Each prints JSON (and a table where one helps)
//! to quote in the README or `docs/benchmarks.md` with the machine and its load.
//!
//! Not part of the server: nothing outside this module imports it, and it is compiled only
//! with the cargo feature `bench` (on by default), so `--no-default-features` builds the
//! service without the quality bench's edits, pHash (`image_hasher`) or the peers' drivers.
//! Helpers shared by several benches live here.

mod catalogue;
mod embed;
mod filter;
mod index;
mod overload;
mod preprocess;
mod quality;
mod startup;
mod store;

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{bail, Context};

use crate::config::ModelConfig;
use crate::store::NewImage;

#[derive(Debug, clap::Subcommand)]
pub enum BenchCommand {
    /// Embedding throughput: network alone vs ONNX Runtime, and end-to-end.
    Embed(embed::EmbedBench),
    /// Search quality on edited copies: recall@1 and mAP per edit, per method.
    Quality(quality::QualityBench),
    /// Copy detection on held-out pictures and random composed edits: recall@1, mAP,
    /// false matches, per method and edit family (choose settings on one seed, report another).
    Copies(quality::copies::CopiesBench),
    /// ANN index vs exact search: build time, recall@10, QPS, latency, RAM per vector.
    Index(index::IndexBench),
    /// Filtered search (SearchImage with a Filter) on an ANN index: recall@10 and latency
    /// for filters keeping 50%, 5%, 0.1% of the images.
    Filter(filter::FilterBench),
    /// Write a large synthetic database (thumbnails, both descriptors, planted near copies)
    /// into a data directory, for timing the console and `dedup` on a real server
    /// (scripts/bench-scale.sh).
    Catalogue(catalogue::CatalogueBench),
    /// Index start-up for a database of N images: first start, clean restart, after a crash.
    Startup(startup::StartupBench),
    /// Acknowledged adds per second of the SQLite store (synchronous=FULL, group commit).
    Store(store::StoreBench),
    /// Single-thread bytes → tensor speed (decode, resize, normalise) over a directory.
    Preprocess(preprocess::PreprocessBench),
    /// A running server under more image requests than it can serve: 503s, latency, RSS.
    Overload(overload::OverloadBench),
}

pub fn run(config: &ModelConfig, command: BenchCommand) -> anyhow::Result<ExitCode> {
    match command {
        BenchCommand::Embed(b) => embed::run(config, b),
        BenchCommand::Quality(b) => quality::run(config, b),
        BenchCommand::Copies(b) => quality::copies::run(config, b),
        BenchCommand::Index(b) => index::run(b),
        BenchCommand::Filter(b) => filter::run(b),
        BenchCommand::Startup(b) => startup::run(b),
        BenchCommand::Catalogue(b) => catalogue::run(b),
        BenchCommand::Store(b) => store::run(b),
        BenchCommand::Preprocess(b) => preprocess::run(b),
        BenchCommand::Overload(b) => overload::run(b),
    }
}

fn round1(x: f64) -> f64 {
    (x * 10.0).round() / 10.0
}

fn round3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

/// The checkout the benches were built from: peers' scripts and the bench venv live there.
fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The files of `dir`, sorted; an error when there are none.
fn list_images(dir: &Path) -> anyhow::Result<Vec<PathBuf>> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .with_context(|| format!("reading {}", dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_file())
        .collect();
    files.sort();
    if files.is_empty() {
        bail!("no images in {}", dir.display());
    }
    Ok(files)
}

/// A scratch directory for a bench, inside `parent` (else the system's temporary directory),
/// removed when dropped, also when the bench fails.
fn scratch_dir(name: &str, parent: Option<&Path>) -> anyhow::Result<tempfile::TempDir> {
    let parent = parent.map_or_else(std::env::temp_dir, Path::to_path_buf);
    tempfile::Builder::new()
        .prefix(&format!("imgsearch-bench-{name}-"))
        .tempdir_in(&parent)
        .with_context(|| format!("creating a scratch directory in {}", parent.display()))
}

/// The process's resident set size (Linux `/proc/self/statm`), `None` elsewhere.
fn resident_bytes() -> Option<u64> {
    let statm = std::fs::read_to_string("/proc/self/statm").ok()?;
    let pages: u64 = statm.split_whitespace().nth(1)?.parse().ok()?;
    Some(pages * 4096)
}

/// CPU seconds (user + system) of this process, every thread included, so a library that
/// quietly spawns helper threads cannot hide its cost. `None` off Linux.
fn cpu_seconds() -> Option<f64> {
    // utime and stime, in clock ticks (100 Hz on Linux), after the command name.
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    let after = stat.get(stat.rfind(')')? + 2..)?;
    let f: Vec<&str> = after.split(' ').collect();
    let ticks = f.get(11)?.parse::<f64>().ok()? + f.get(12)?.parse::<f64>().ok()?;
    Some(ticks / 100.0)
}

/// A stored image that is only a vector (no ExtraData, URL or thumbnail), as the index and
/// start-up benches fill stores with.
fn vector_only<'a>(entity_id: &'a str, embedding: &'a [f32]) -> NewImage<'a> {
    NewImage {
        entity_id,
        extra_data: "",
        image_url: "",
        embedding,
        copy_embedding: None,
        thumbnail: None,
        attributes: &crate::store::Attributes::NONE,
    }
}
