//! Configuration shared by the subcommands, as typed structs that clap fills from flags
//! and environment variables. Defaults work out of the box on a set-up checkout.

use std::path::PathBuf;

use crate::vision::embedder::BatcherConfig;
use crate::vision::model::{build_graph, EfficientNet, ModelError, ModelFiles, ModelOptions};

/// Where the network's files are and how it runs.
#[derive(Debug, Clone, clap::Args)]
pub struct ModelConfig {
    /// EfficientNet-Lite0 weights (.pth). Default: the repo's .cache/ (scripts/setup.sh).
    #[arg(long, env = "IMGSEARCH_WEIGHTS", global = true)]
    pub weights: Option<PathBuf>,
    /// ONNX Runtime shared library. Default: the repo's .cache/ (scripts/setup.sh).
    #[arg(long, env = "IMGSEARCH_ONNXRUNTIME", global = true)]
    pub onnxruntime: Option<PathBuf>,
    /// Inference sessions running in parallel (0 = one per core).
    #[arg(
        long,
        env = "IMGSEARCH_INFERENCE_WORKERS",
        default_value_t = 0,
        global = true
    )]
    pub inference_workers: usize,
    /// Intra-op threads per inference session.
    #[arg(long, env = "IMGSEARCH_THREADS", default_value_t = 1, global = true)]
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

    /// Loads one network per inference worker (the graph is built once).
    pub fn load_models(&self) -> Result<Vec<EfficientNet>, ModelError> {
        let files = self.files()?;
        let graph = build_graph(&files.weights)?;
        let workers = if self.inference_workers == 0 {
            std::thread::available_parallelism().map_or(1, |n| n.get())
        } else {
            self.inference_workers
        };
        (0..workers)
            .map(|_| EfficientNet::from_onnx(&files.onnxruntime, &graph, self.options()))
            .collect()
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
