//! Configuration shared by the subcommands, as typed structs that clap fills from flags
//! and environment variables. Defaults work out of the box on a set-up checkout.

use std::path::PathBuf;

use crate::vision::embedder::BatcherConfig;
use crate::vision::model::{ModelError, ModelFiles, ModelOptions};

/// Where the network's files are and how it runs.
#[derive(Debug, Clone, clap::Args)]
pub struct ModelConfig {
    /// EfficientNet-Lite0 weights (.pth). Default: the repo's .cache/ (scripts/setup.sh).
    #[arg(long, env = "IMGSEARCH_WEIGHTS", global = true)]
    pub weights: Option<PathBuf>,
    /// ONNX Runtime shared library. Default: the repo's .cache/ (scripts/setup.sh).
    #[arg(long, env = "IMGSEARCH_ONNXRUNTIME", global = true)]
    pub onnxruntime: Option<PathBuf>,
    /// Intra-op threads for inference (0 = one per core).
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
        ModelFiles::locate(self.weights.clone(), self.onnxruntime.clone())
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
