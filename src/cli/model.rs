//! `imgsearch model ...`: look at the network itself.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;

use crate::config::ModelConfig;
use crate::vision::model::build_graph;

#[derive(Debug, clap::Subcommand)]
pub enum ModelCommand {
    /// Write the EfficientNet-Lite0 ONNX graph (BatchNorm folded) to OUT, for inspection
    /// with any ONNX tool.
    ExportOnnx { out: PathBuf },
}

pub fn run(config: &ModelConfig, command: ModelCommand) -> anyhow::Result<ExitCode> {
    match command {
        ModelCommand::ExportOnnx { out } => {
            let files = config.files()?;
            let graph = build_graph(&files.weights)?;
            std::fs::write(&out, &graph).with_context(|| format!("writing {}", out.display()))?;
            eprintln!("wrote {} ({} bytes)", out.display(), graph.len());
            Ok(ExitCode::SUCCESS)
        }
    }
}
