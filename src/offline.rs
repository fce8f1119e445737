//! The models run locally, no server: `imgsearch embed` and `imgsearch classify` (one JSON
//! line per image, in argument order; a file that fails gives one line on stderr and a
//! non-zero exit, the rest still run) and `imgsearch model export-onnx`.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use serde_json::json;

use crate::config::ModelConfig;
use crate::vision::decode::DecodeLimits;
use crate::vision::embedder::EmbeddingBatcher;
use crate::vision::labels::label;
use crate::vision::model::{build_graph, top_k};
use crate::vision::pipeline::run_files;

pub enum Output {
    Embedding,
    Classes { top: usize },
}

pub fn run(config: &ModelConfig, images: &[PathBuf], output: Output) -> anyhow::Result<ExitCode> {
    let batcher = EmbeddingBatcher::start_many(config.load_models()?, config.batcher(64));
    let decode_threads = std::thread::available_parallelism().map_or(2, |n| n.get());
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    let mut failures = 0usize;
    let mut write_error = None;
    run_files(
        images,
        &batcher,
        decode_threads,
        &DecodeLimits::default(),
        |_, path, result| {
            let line = match result {
                Ok(inference) => match output {
                    Output::Embedding => json!({"file": path, "embedding": inference.embedding}),
                    Output::Classes { top } => {
                        let classes: Vec<_> = top_k(&inference.logits, top)
                        .into_iter()
                        .map(|(class, prob)| json!({"class": class, "label": label(class), "prob": prob}))
                        .collect();
                        json!({"file": path, "top5": classes})
                    }
                },
                Err(e) => {
                    failures += 1;
                    eprintln!("{}: {e}", path.display());
                    return;
                }
            };
            if let Err(e) = writeln!(out, "{line}") {
                write_error.get_or_insert(e);
            }
        },
    );
    out.flush()?;
    if let Some(e) = write_error {
        return Err(e.into());
    }
    Ok(if failures == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// Writes the EfficientNet-Lite0 ONNX graph (BatchNorm folded) to `out`.
pub fn export_onnx(config: &ModelConfig, out: &Path) -> anyhow::Result<ExitCode> {
    let files = config.files()?;
    let graph = build_graph(&files.weights)?;
    std::fs::write(out, &graph).with_context(|| format!("writing {}", out.display()))?;
    eprintln!("wrote {} ({} bytes)", out.display(), graph.len());
    Ok(ExitCode::SUCCESS)
}
