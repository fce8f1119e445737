//! `imgsearch bench embed`: images per second of the network alone (ours through `ort`,
//! beside ONNX Runtime's own Python API running the very same graph, in the same run) and
//! end-to-end (read + decode + resize + infer) over a directory of images, with 1 and 2
//! threads. Numbers depend on the machine and its load: quote them with both.

use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use serde_json::json;

use super::{list_images, repo_root, round1, round3, scratch_dir};
use crate::config::ModelConfig;
use crate::vision::copy_model::CopyModel;
use crate::vision::decode::DecodeLimits;
use crate::vision::embedder::{EmbeddingBatcher, Networks};
use crate::vision::model::{build_graph, top_k, EfficientNet, ModelOptions};
use crate::vision::pipeline::run_files_with;
use crate::vision::preprocess::INPUT_LEN;

#[derive(Debug, clap::Args)]
pub struct EmbedBench {
    /// Images for the end-to-end run (JPEG/PNG). File names starting with an ImageNet wnid
    /// also give top-1 accuracy.
    #[arg(long, default_value = "../shared/datasets/imagenet-samples")]
    dir: PathBuf,
    /// Thread counts to measure.
    #[arg(long, value_delimiter = ',', default_value = "1,2")]
    threads: Vec<usize>,
    /// Seconds per network-alone measurement.
    #[arg(long, default_value_t = 8.0)]
    seconds: f64,
    /// Python with `onnxruntime` for the peer figure (scripts/bench.sh sets one up).
    /// Default: .cache/bench-venv/bin/python when present.
    #[arg(long)]
    peer_python: Option<PathBuf>,
    /// Skip the ONNX Runtime peer.
    #[arg(long)]
    no_peer: bool,
}

pub fn run(config: &ModelConfig, b: EmbedBench) -> anyhow::Result<ExitCode> {
    let files = config.files()?;
    let graph = build_graph(&files.weights)?;
    let scratch = scratch_dir("embed", None)?;
    let graph_path = scratch.path().join("efficientnet-lite0.onnx");
    std::fs::write(&graph_path, &graph)?;
    let peer_python = if b.no_peer {
        None
    } else {
        let p = b
            .peer_python
            .clone()
            .unwrap_or_else(|| repo_root().join(".cache/bench-venv/bin/python"));
        if p.is_file() {
            Some(p)
        } else {
            eprintln!(
                "note: no ONNX Runtime peer ({} missing; run scripts/bench.sh)",
                p.display()
            );
            None
        }
    };
    let images = list_images(&b.dir)?;
    let copy_model = config.copy_model_file()?;
    let mut rows = Vec::new();
    for &t in &b.threads {
        // Network alone, batch 1, ONNX Runtime's default spinning on both sides.
        let mut model = EfficientNet::from_onnx(
            &files.onnxruntime,
            &graph,
            ModelOptions {
                intra_threads: t,
                spinning: true,
            },
        )?;
        let ours = network_alone(&mut model, b.seconds)?;
        drop(model);
        let peer = match &peer_python {
            Some(py) => Some(peer_network_alone(py, &graph_path, t, b.seconds)?),
            None => None,
        };
        // End to end with t cores' worth of threads, two ways to spend them on inference.
        let (e2e_one, top1) = end_to_end(config, &files.onnxruntime, &graph, &images, 1, t, None)?;
        let (e2e_many, _) = end_to_end(config, &files.onnxruntime, &graph, &images, t, 1, None)?;
        // What AddImage computes since copy detection: both networks from one decode, in
        // each session layout.
        let both = match &copy_model {
            Some(path) => {
                let lib = &files.onnxruntime;
                let one = end_to_end(config, lib, &graph, &images, 1, t, Some(path))?.0;
                let many = end_to_end(config, lib, &graph, &images, t, 1, Some(path))?.0;
                Some((one, many))
            }
            None => None,
        };
        let row = json!({
            "threads": t,
            "network_img_s": round1(ours),
            "onnxruntime_img_s": peer.map(round1),
            "ratio": peer.map(|p| (ours / p * 1000.0).round() / 1000.0),
            "end_to_end_1_session_img_s": round1(e2e_one),
            "end_to_end_sessions_img_s": round1(e2e_many),
            "end_to_end_both_1_session_img_s": both.map(|b| round1(b.0)),
            "end_to_end_both_sessions_img_s": both.map(|b| round1(b.1)),
            "both_vs_lite0_best": both.map(|b| round3(b.0.max(b.1) / e2e_one.max(e2e_many))),
            "end_to_end_images": images.len(),
            "top1": top1,
        });
        eprintln!("{row}");
        rows.push(row);
    }
    println!(
        "| threads | network alone (img/s) | ONNX Runtime (img/s) | ratio | end-to-end, 1 session × N threads (img/s) | end-to-end, N sessions × 1 thread (img/s) |"
    );
    println!("|---|---|---|---|---|---|");
    for r in &rows {
        println!(
            "| {} | {} | {} | {} | {} | {} |",
            r["threads"],
            r["network_img_s"],
            r["onnxruntime_img_s"],
            r["ratio"],
            r["end_to_end_1_session_img_s"],
            r["end_to_end_sessions_img_s"]
        );
    }
    println!("{}", json!({"bench": "embed", "rows": rows}));
    Ok(ExitCode::SUCCESS)
}

/// Batch-1 inference on a fixed input for `seconds`, after a warm-up.
fn network_alone(model: &mut EfficientNet, seconds: f64) -> anyhow::Result<f64> {
    let input: Vec<f32> = (0..INPUT_LEN)
        .map(|i| ((i * 7919) % 255) as f32 / 128.0 - 1.0)
        .collect();
    for _ in 0..10 {
        model.run(&input, 1)?;
    }
    let start = Instant::now();
    let mut n = 0usize;
    while start.elapsed() < Duration::from_secs_f64(seconds) {
        model.run(&input, 1)?;
        n += 1;
    }
    Ok(n as f64 / start.elapsed().as_secs_f64())
}

fn peer_network_alone(
    python: &Path,
    graph: &Path,
    threads: usize,
    seconds: f64,
) -> anyhow::Result<f64> {
    let out = Command::new(python)
        .arg(repo_root().join("scripts/ort_peer.py"))
        .arg(graph)
        .arg(threads.to_string())
        .arg(seconds.to_string())
        .output()
        .with_context(|| format!("running {}", python.display()))?;
    if !out.status.success() {
        bail!(
            "ONNX Runtime peer failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).context("peer output")?;
    v["img_per_s"]
        .as_f64()
        .context("peer output lacks img_per_s")
}

/// All of `images` through decode threads + batcher (`sessions` inference sessions of
/// `intra` threads each, `sessions * intra` decode threads); returns (img/s, top-1
/// accuracy when file names carry wnids).
fn end_to_end(
    config: &ModelConfig,
    lib: &Path,
    graph: &[u8],
    images: &[PathBuf],
    sessions: usize,
    intra: usize,
    copy_model: Option<&Path>,
) -> anyhow::Result<(f64, Option<f64>)> {
    let options = ModelOptions {
        intra_threads: intra,
        spinning: false,
    };
    let models = (0..sessions)
        .map(|_| -> anyhow::Result<Networks> {
            Ok(Networks {
                semantic: EfficientNet::from_onnx(lib, graph, options)?,
                copy: copy_model
                    .map(|p| CopyModel::load(lib, p, options))
                    .transpose()?,
            })
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    let threads = sessions * intra;
    let batcher = EmbeddingBatcher::start_many(models, config.batcher(64));
    let wnids = wnid_ranks(images);
    let start = Instant::now();
    let (mut ok, mut correct, mut labelled) = (0usize, 0usize, 0usize);
    run_files_with(
        images,
        &batcher,
        threads,
        &DecodeLimits::default(),
        copy_model.is_some(),
        |i, path, r| match r {
            Ok(inf) => {
                ok += 1;
                if let Some(want) = wnids.get(i).copied().flatten() {
                    labelled += 1;
                    if top_k(&inf.logits, 1)[0].0 == want {
                        correct += 1;
                    }
                }
            }
            Err(e) => eprintln!("{}: {e}", path.display()),
        },
    );
    let rate = ok as f64 / start.elapsed().as_secs_f64();
    let top1 = (labelled == images.len()).then(|| correct as f64 / labelled as f64);
    Ok((rate, top1))
}

/// Class index of each file from its `nXXXXXXXX_` prefix: the rank among the sorted wnids.
fn wnid_ranks(images: &[PathBuf]) -> Vec<Option<usize>> {
    let wnid = |p: &PathBuf| {
        let name = p.file_name()?.to_str()?;
        let w = name.split('_').next()?;
        (w.len() == 9 && w.starts_with('n')).then(|| w.to_string())
    };
    let mut all: Vec<String> = images.iter().filter_map(wnid).collect();
    all.sort();
    all.dedup();
    if all.len() != 1000 {
        return vec![None; images.len()];
    }
    images
        .iter()
        .map(|p| wnid(p).and_then(|w| all.binary_search(&w).ok()))
        .collect()
}
